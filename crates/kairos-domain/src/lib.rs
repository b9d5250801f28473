//! The Kairos domain: what a request, a decision, a grant and an audit record *are*,
//! and which transitions between grant states exist.
//!
//! Invariant: this crate does no IO (no files, no network, no SQL, no clock reads except
//! through [`Clock`]). Everything here is parsed at the edge and then trusted.

mod audit;
mod clock;
mod grant;
mod names;
mod request;
mod review;
mod source;
mod task;
pub mod text;
mod ttl;

pub use audit::{
    AuditDraft, AuditKind, AuditRecord, ChainError, ChainVerifier, GENESIS_HASH,
    checkpoint_problem, verify_chain,
};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use grant::{
    EndReason, Grant, GrantEnd, GrantId, GrantState, Receipt, TransitionError, audit_of,
};
pub use names::{
    EntitlementName, ExceptionName, IdentityName, NameError, TargetName, TeamName, UserName,
};
pub use request::{
    Approval, ApprovalProgress, Decision, DecisionOutcome, Principal, Request, RequestId,
    RequestState,
};
pub use review::{Filing, Review, ReviewError, ReviewId, ReviewState};
pub use source::{SourceRange, canonical_ip};
pub use task::{Task, TaskError, TaskKind, TaskRef};
pub use ttl::{MAX_TTL_SECS, Period, Ttl, TtlError};
