//! Kairos governance rules: what is due, what is overdue, who may do what, as plain
//! functions over plain data.
//!
//! Invariant: this crate does no IO. Time comes in as a [`kairos_domain::Timestamp`]
//! argument; the broker loads, calls these rules, and writes through the store.

pub mod breakglass;
