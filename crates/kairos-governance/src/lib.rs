//! Governance rules of Kairos: what is due, dormant, shared, held too long, used after its
//! end — plain functions over plain data, tested without IO.
//!
//! Invariant: no IO, no clock reads (times are parameters), no SQL, no HTTP. The broker
//! loads the facts, calls these rules, and writes what they conclude through the store.

pub mod usage;
