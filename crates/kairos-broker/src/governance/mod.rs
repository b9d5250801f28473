//! Governance around the core loop. Each capability has its own file; the rules they
//! apply are pure functions in `kairos-governance`.

pub(crate) mod recorder;
pub mod usage;
