//! Governance around the core loop, one capability per file: each loads what it needs,
//! calls the pure rules of `kairos_governance`, and writes through the store.

pub mod recert;
