//! Kairos governance rules: pure functions over plain data, tested without IO.
//!
//! The broker loads what it needs (the catalog, the store's rows, the clock's time),
//! calls a rule here, and writes what it decides through the store. Nothing here reads a
//! clock, a file, a socket or a database.
//!
//! - [`recert`]: when an identity's or a standing exception's recertification is due,
//!   and whether it is due (its owners' review task open) or overdue.
//! - [`exceptions`]: when a standing exception's secret must be rotated next, and
//!   whether its rotation is overdue or its end date has passed.

pub mod exceptions;
pub mod recert;
