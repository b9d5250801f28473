//! Governance around the core loop: each capability in its own file, thin over the pure
//! rules of `kairos_governance` and the store's tables.

pub mod reviews;
