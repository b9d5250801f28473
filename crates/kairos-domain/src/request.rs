use std::fmt;

use crate::grant::{GrantId, TransitionError};
use crate::{EntitlementName, IdentityName, Task, Timestamp, Ttl, UserName};

/// Identifier of an access request: `req_` + a time-ordered UUID.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    pub fn generate() -> Self {
        Self(format!("req_{}", uuid::Uuid::now_v7().simple()))
    }
    /// Accepts only the shape Kairos generates, so a stray string never reaches the store.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("req_")?;
        (rest.len() == 32 && rest.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who did something: a workload (by its registered identity), a person, or Kairos itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Workload(IdentityName),
    User(UserName),
    /// Kairos acting on its own (the expirer, the revocation worker, the bootstrap).
    System(&'static str),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Workload(i) => write!(f, "workload:{i}"),
            Self::User(u) => write!(f, "user:{u}"),
            Self::System(s) => write!(f, "system:{s}"),
        }
    }
}

impl Principal {
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        match kind {
            "workload" => IdentityName::parse(name).ok().map(Self::Workload),
            "user" => UserName::parse(name).ok().map(Self::User),
            "system" => match name {
                "expirer" => Some(Self::System("expirer")),
                "revoker" => Some(Self::System("revoker")),
                "reconciler" => Some(Self::System("reconciler")),
                "bootstrap" => Some(Self::System("bootstrap")),
                "broker" => Some(Self::System("broker")),
                "governance" => Some(Self::System("governance")),
                "recert" => Some(Self::System("recert")),
                _ => Some(Self::System("unknown")),
            },
            _ => None,
        }
    }
}

impl serde::Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What policy said about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DecisionOutcome {
    Deny,
    Grant,
    Pending { approvals: u32 },
}

/// A policy decision with the policies that determined it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    #[serde(flatten)]
    pub outcome: DecisionOutcome,
    /// Ids of the Cedar policies that determined the outcome.
    pub policies: Vec<String>,
    /// Human-readable explanation.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Granted,
    Denied,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Granted, Self::Denied, Self::Expired]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    pub approver: UserName,
    pub at: Timestamp,
    pub reason: String,
}

/// An access request and its life: pending → granted | denied | expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub identity: IdentityName,
    pub entitlement: EntitlementName,
    /// The TTL the grant will have once issued (already capped by tier and entitlement).
    pub ttl: Ttl,
    pub task: Task,
    pub requester: Principal,
    pub decision: Decision,
    pub state: RequestState,
    pub approvals: Vec<Approval>,
    /// Who denied it and why, when a person did.
    pub denial: Option<Approval>,
    pub created_at: Timestamp,
    /// A pending request expires at this time.
    pub pending_until: Option<Timestamp>,
    pub grant_id: Option<GrantId>,
    /// For a renewal that waits for approvals: the grant it extends. Its `ttl` is then
    /// the grant's whole lifetime after the renewal (from the grant's issue time), and
    /// once approved `grant_id` is that grant, extended rather than issued.
    pub renews: Option<GrantId>,
    /// The address the request came from, when known (the caller's peer address, or the
    /// right-most untrusted hop of the trusted proxy header).
    pub source_ip: Option<std::net::IpAddr>,
}

/// What an approval did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalProgress {
    /// More approvals are still needed.
    NeedMore { have: u32, need: u32 },
    /// This was the last one: issue the grant.
    Complete,
}

impl Request {
    pub fn approvals_needed(&self) -> u32 {
        match self.decision.outcome {
            DecisionOutcome::Pending { approvals } => approvals,
            _ => 0,
        }
    }

    fn check_pending(&self, now: Timestamp) -> Result<(), TransitionError> {
        if self.state != RequestState::Pending {
            return Err(TransitionError::RequestNotPending(self.state));
        }
        if self.pending_until.is_some_and(|until| now >= until) {
            return Err(TransitionError::RequestExpired);
        }
        Ok(())
    }

    /// Records one approval. The requester never approves, nor does anyone twice.
    ///
    /// An approver whose approval is already recorded hears so whatever state the request
    /// is in now: a retried approval (its answer lost) learns that it counted, even when it
    /// was the one that completed the request.
    pub fn approve(&mut self, approval: Approval) -> Result<ApprovalProgress, TransitionError> {
        if self
            .approvals
            .iter()
            .any(|a| a.approver == approval.approver)
        {
            return Err(TransitionError::AlreadyApproved(approval.approver));
        }
        self.check_pending(approval.at)?;
        if self.requester == Principal::User(approval.approver.clone()) {
            return Err(TransitionError::SelfApproval);
        }
        self.approvals.push(approval);
        let need = self.approvals_needed();
        let have = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        if have >= need {
            Ok(ApprovalProgress::Complete)
        } else {
            Ok(ApprovalProgress::NeedMore { have, need })
        }
    }

    /// Marks an approved request granted with its grant.
    pub fn mark_granted(&mut self, grant: GrantId) -> Result<(), TransitionError> {
        match self.state {
            RequestState::Pending => {
                self.state = RequestState::Granted;
                self.grant_id = Some(grant);
                Ok(())
            }
            other => Err(TransitionError::RequestNotPending(other)),
        }
    }

    pub fn deny(&mut self, denial: Approval) -> Result<(), TransitionError> {
        self.check_pending(denial.at)?;
        self.state = RequestState::Denied;
        self.denial = Some(denial);
        Ok(())
    }

    /// Ends a pending renewal whose grant ended before it was approved: it can no longer
    /// extend anything.
    pub fn lapse(&mut self) -> Result<(), TransitionError> {
        if self.state != RequestState::Pending {
            return Err(TransitionError::RequestNotPending(self.state));
        }
        self.state = RequestState::Expired;
        Ok(())
    }

    /// Expires a pending request whose time is up.
    pub fn expire(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        if self.state != RequestState::Pending {
            return Err(TransitionError::RequestNotPending(self.state));
        }
        if self.pending_until.is_none_or(|until| now < until) {
            return Err(TransitionError::NotDue);
        }
        self.state = RequestState::Expired;
        Ok(())
    }
}
