//! Governance of the identity lifecycle, as pure rules.
//!
//! Who is orphaned, what is due or overdue, which use looks wrong, and what the posture
//! report finds: each is a function of facts and a time, with no IO. The store keeps the
//! facts (identity states, alerts, attestations, reviews, usage), the broker gathers them,
//! calls these rules, and writes what they decide.
//!
//! Invariant: this crate does no IO and reads no clock; every time is an argument.

pub mod alert;
pub mod breakglass;
pub mod mapping;
pub mod owners;
pub mod posture;
pub mod state;
pub mod usage;

pub use alert::{Alert, AlertDraft, AlertKind, AlertState};
pub use mapping::{CsfSubcategory, NhiRisk, RiskMapping};
pub use state::{IdentityState, IdentityStatus, SuspensionCause};

/// Recertification: when a subject is due (its owners' review open) or overdue.
pub mod recert;

/// Standing exceptions: when a secret's rotation is overdue, when an exception has ended.
pub mod exceptions;
