//! Kairos policy: compiles the operators' [Cedar](https://www.cedarpolicy.com) and
//! [Rego](https://www.openpolicyagent.org/docs/policy-language) policies and decides each
//! access request: **deny**, **grant now**, or **pending N approvals**. Policy files whose
//! names end in `.rego` are Rego (see "Policies in Rego" below), all others Cedar.
//!
//! Invariant: this crate does no IO. It gets policy *texts* and request *facts* and
//! returns decisions; reading files is the config crate's job.
//!
//! # The entity model policies are written against
//!
//! Every request is evaluated as one Cedar request
//! `(principal, Kairos::Action::"request", resource, context)`, and every renewal of a
//! grant as `(principal, Kairos::Action::"renew", resource, context)` with the same
//! principal, resource and context shape:
//!
//! | Cedar | Kairos | Attributes |
//! |---|---|---|
//! | `principal`: `Kairos::Identity::"<name>"` | the registered identity asking | `kind: String` (`ci-job`, `service`, ...), `owner: String` (team name), `issuer: String` (issuer name) |
//! | parent of the principal: `Kairos::Team::"<owner>"` | its owning team | none |
//! | `action`: `Kairos::Action::"request"` | asking for an entitlement | |
//! | `action`: `Kairos::Action::"renew"` | extending a grant of it | |
//! | `resource`: `Kairos::Entitlement::"<target>/<role>"` | the entitlement asked for | `target: String`, `role: String`, `tier: String` (`low`, `medium`, `high`, `critical`), `max_ttl_secs: Long` (the entitlement's effective cap) |
//! | parent of the resource: `Kairos::Target::"<target>"` | the downstream system | none |
//! | `context` | the task | `ttl_secs: Long` (TTL asked for), `task_kind: String` (`change`, `incident`, `maintenance`, `job`), `task_ref: String` (`CHG-1234`), `reason: String`, `requester: String` (`workload:<name>` or `user:<name>`), `requester_kind: String` (`workload` or `user`), `renewal: Bool` (true for `renew`), `break_glass: Bool` (the entitlement is break-glass), `open_reviews: Long` (the identity's after-action reviews not yet filed), `source_ip: ipaddr` (optional: the caller's address when known; test with `context has source_ip`) |
//!
//! For `renew`, `ttl_secs` is the grant's whole lifetime after the renewal (from its issue
//! time to its new end), the task fields are the grant's, and `requester` is who renews
//! (the workload itself, or an operator as `user:<name>`). So a policy written for
//! `action == Kairos::Action::"request"` says nothing about renewals (no policy permits
//! one, so it is denied), and a policy with an unconstrained `action` bounds a renewed
//! grant's lifetime as it bounds a new one's.
//!
//! The same model as a Cedar schema is [`SCHEMA`]; every policy is validated against it
//! (strict mode) when compiled, so a misspelt attribute (`resource.teir`), an unknown
//! entity type or a comparison of a `Long` with a `String` is a compile error, not a
//! surprise at request time.
//!
//! # Annotations
//!
//! - `@id("allow-ci-read")`: the policy's id, shown in decisions and the audit log. Must
//!   be unique across all files. Without it the id is `<file-stem>:<index>`, e.g.
//!   `base:0` for the first statement of `policies/base.cedar`.
//! - `@approvals("N")` (permit only, `0` to `10`): a request this policy permits needs N
//!   distinct approvals before it is granted. When several permits apply, the largest
//!   N wins. Missing means 0: grant at once.
//! - `@reason("...")`: the sentence shown to the requester when this policy decides.
//! - `@description("...")`: for humans; ignored.
//!
//! Any other annotation is an error, so that a misspelt `@approval("2")` cannot quietly
//! become an auto-grant.
//!
//! # Decisions
//!
//! Cedar's usual rules apply: nothing permits → deny; any applicable `forbid` → deny
//! (listing the forbid policies); otherwise the request is permitted, and the largest
//! `@approvals` over the permitting policies says whether it is granted at once
//! (`0`) or waits for approvals. A policy whose evaluation fails (which validation makes
//! rare) is skipped, as Cedar does, and the failure is named in the decision's reason.
//!
//! # How a decision is made fast (and why it is the same decision)
//!
//! Cedar's authorizer evaluates every policy it is given, so handing it the whole set
//! makes every decision cost in proportion to the number of policies. Instead, when a
//! set is compiled, each policy is filed under the id its scope names: its resource
//! constraint's entitlement or target if it has one, else its principal constraint's
//! identity or team, else under "unscoped". A decision looks up the request's
//! identity, team, entitlement and target, keeps from those entries and the unscoped
//! ones the policies whose principal *and* resource constraints the request satisfies,
//! and authorizes against just those, in their order in the whole set.
//!
//! This is sound because of how Cedar evaluates a policy: its scope is checked first
//! and, when it fails, the policy is not satisfied, is not determining and cannot fail
//! to evaluate, so it has no effect on the response. Whether a scope can hold is
//! known from the request's four ids alone, because every request has the same
//! entities: the principal `Kairos::Identity` whose only ancestor is its
//! `Kairos::Team`, the resource `Kairos::Entitlement` whose only ancestor is its
//! `Kairos::Target`. A constraint naming another type (`resource == Kairos::Target::"x"`,
//! `principal is Kairos::Team`) can never hold and is left out everywhere. Unconstrained
//! scopes and `is` the request's own type are kept for every request. Action
//! constraints are not used to slice (keeping a policy is always safe). Keeping the
//! whole set's order keeps evaluation errors in the same order in the reason. So the
//! effect, determining policies, `@approvals`, `@reason` and errors are those of
//! authorizing against the whole set; the crate's tests compare the two over generated
//! policy sets of every scope form.
//!
//! The request's entities (the same for every request from one identity for one
//! entitlement, and costly to build because Cedar computes their hierarchy's closure)
//! are kept in a small bounded cache per policy set, keyed by every fact they are
//! built from. Entity type names are parsed once per process. Policies with
//! unconstrained principal and resource scopes are evaluated for every request, so
//! they still cost in proportion to their number.
//!
//! ```cedar
//! @id("ci-read-low")
//! @reason("CI jobs may read low-risk systems for an hour")
//! permit (principal, action == Kairos::Action::"request", resource)
//! when { principal.kind == "ci-job" && resource.tier == "low" && context.ttl_secs <= 3600 };
//!
//! @id("payments-prod-write")
//! @approvals("2")
//! permit (principal in Kairos::Team::"payments", action, resource in Kairos::Target::"orders-db")
//! when { resource.role == "write" };
//!
//! @id("no-critical-for-bots")
//! forbid (principal, action, resource)
//! when { principal.kind == "bot" && resource.tier == "critical" };
//! ```

//!
//! # Policies in Rego
//!
//! A `.rego` file is evaluated in process (`regorus`) on one `input` document that holds
//! the same facts, under the same names, as Cedar's principal, resource and context:
//!
//! ```json
//! {
//!   "action": "request",
//!   "principal": {"name": "nightly-backup", "kind": "ci-job", "owner": "payments", "issuer": "ci"},
//!   "resource": {"name": "orders-api/read", "target": "orders-api", "role": "read",
//!                "tier": "low", "max_ttl_secs": 3600},
//!   "context": {"ttl_secs": 900, "task_kind": "job", "task_ref": "run-42",
//!               "reason": "nightly backup", "requester": "workload:nightly-backup",
//!               "requester_kind": "workload", "renewal": false, "break_glass": false,
//!               "open_reviews": 0, "source_ip": "10.0.0.7"}
//! }
//! ```
//!
//! `action` is `request` or `renew` (for a renewal, `ttl_secs` is the grant's whole
//! lifetime after it, as for Cedar); `source_ip` is absent when unknown. Kairos reads two
//! rules of the file's package (any package name), both partial objects keyed by a rule
//! id of the author's choosing:
//!
//! - `deny[id] := reason`: any entry denies, with its reason;
//! - `allow[id] := reason`, or `allow[id] := {"approvals": N, "reason": reason}` (N from
//!   0 to 10): any entry permits; the largest N over the entries says whether the
//!   request is granted at once (0) or waits for N approvals.
//!
//! Nothing allowed means deny, as with Cedar. A rule is named in decisions and the audit
//! log as `<file name>:<id>` (`base.rego:no-incident-admin`). Each file stands alone (it
//! is compiled with Kairos's reader of its `deny` and `allow`, and does not see the other
//! files' packages); its id in the set is its file name, which must be unique. An
//! evaluation error (a conflict between two entries with one key, an entry of the wrong
//! shape) denies the request and names the file.
//!
//! ```rego
//! package kairos
//!
//! deny["no-incident-admin"] := "incident tasks may not use admin entitlements" if {
//!     input.context.task_kind == "incident"
//!     input.resource.role == "admin"
//! }
//!
//! allow["high-needs-one"] := {"approvals": 1, "reason": "high-tier access needs one approver"} if {
//!     input.resource.tier == "high"
//! }
//!
//! allow["ci-jobs"] := "CI jobs may have the rest" if input.principal.kind == "ci-job"
//! ```
//!
//! Checked at load, each problem with its file, line and column: syntax; unsafe variables
//! and unknown functions (by regorus, and by one evaluation on a sample request); `deny`
//! and `allow` written as anything but partial object rules (`deny contains ...`,
//! `allow if ...`); and every dotted `input.…` reference, which must name a field of the
//! document above (`input.context.tsk_kind` is an error, not a rule that never applies).
//! Brackets nested deeper than [`MAX_REGO_NESTING`] are refused before regorus parses
//! the file, whose parsing time doubles with each level. One file's evaluation may take
//! at most [`REGO_EVALUATION_LIMIT`]: past it, the evaluation stops and the request is
//! denied, as for any evaluation error (at load, the sample evaluation fails the file).
//!
//! # Cedar and Rego together
//!
//! Each engine in use decides on its own (Cedar is in use when a Cedar file is
//! configured, or no policy file at all; Rego when a `.rego` file is), then: any deny
//! wins, with the rules and reasons of every engine that denied; otherwise, if either
//! asks for approvals, pending with the larger N and both engines' rules and reasons;
//! otherwise granted. So a request is granted only when every engine in use grants it.

mod combine;
mod compile;
mod decide;
mod error;
mod input;
mod rego;
mod slice;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::{PolicyError, PolicyErrorKind, PolicyErrors, SourceLocation};
pub use input::{Circumstances, EntitlementFacts, IdentityFacts, PolicyAction, PolicyInput, Tier};
pub use rego::{MAX_REGO_NESTING, REGO_EVALUATION_LIMIT};

/// The most approvals a policy may ask for.
pub const MAX_APPROVALS: u32 = 10;

/// The Kairos entity model as a Cedar schema (see the crate docs). Operators can feed it
/// to `cedar validate` to check policies before committing them.
pub const SCHEMA: &str = r#"namespace Kairos {
  entity Team;
  entity Identity in [Team] = {
    kind: String,
    owner: String,
    issuer: String,
  };
  entity Target;
  entity Entitlement in [Target] = {
    target: String,
    role: String,
    tier: String,
    max_ttl_secs: Long,
  };
  type Context = {
    ttl_secs: Long,
    task_kind: String,
    task_ref: String,
    reason: String,
    requester: String,
    requester_kind: String,
    renewal: Bool,
    break_glass: Bool,
    open_reviews: Long,
    source_ip?: ipaddr,
  };
  action "request" appliesTo {
    principal: [Identity],
    resource: [Entitlement],
    context: Context
  };
  action "renew" appliesTo {
    principal: [Identity],
    resource: [Entitlement],
    context: Context
  };
}
"#;

/// One policy file's text and the path it is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub path: String,
    pub text: String,
}

/// Whether a policy permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEffect {
    Permit,
    Forbid,
    /// A Rego file: its `deny` and `allow` rules forbid and permit.
    Rego,
}

/// The language a policy file is written in, by its name: `.rego` files are Rego, every
/// other file (`.cedar`) Cedar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyLanguage {
    Cedar,
    Rego,
}

impl PolicyLanguage {
    pub fn of(path: &str) -> Self {
        if path.ends_with(".rego") {
            Self::Rego
        } else {
            Self::Cedar
        }
    }
}

/// One compiled policy and what Kairos read from its annotations; for Rego, one file
/// (its id is the file's name, e.g. `base.rego`, and its text the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub id: String,
    /// Where the policy starts (its first annotation, or `permit`/`forbid`).
    pub location: SourceLocation,
    pub effect: PolicyEffect,
    /// From `@approvals`; 0 when absent.
    pub approvals: u32,
    /// From `@reason`.
    pub reason: Option<String>,
    /// From `@description`.
    pub description: Option<String>,
    /// The policy's source text, annotations included.
    pub text: String,
}

/// A compiled, validated set of policies, ready to decide requests without parsing.
#[derive(Debug, Clone)]
pub struct PolicySet {
    cedar: cedar_policy::PolicySet,
    authorizer: cedar_policy::Authorizer,
    policies: BTreeMap<String, CompiledPolicy>,
    /// `cedar`'s policies filed by the ids their scopes name (see `slice`).
    slicer: slice::Slicer,
    /// Shared by clones: entities do not depend on the policies.
    entities: Arc<decide::EntityCache>,
    /// Whether Cedar decides: some Cedar file was given, or no file at all (so that no
    /// policies still means deny).
    cedar_in_use: bool,
    /// The `.rego` files, each compiled; empty when Rego is not in use.
    rego: Vec<rego::RegoModule>,
}

impl PolicySet {
    /// Parses and validates every file. Reports all problems found, each with its file,
    /// line and column.
    /// Files ending in `.rego` are Rego, the others Cedar.
    pub fn compile(files: &[PolicySource]) -> Result<PolicySet, PolicyErrors> {
        let compiled = compile::compile(files)?;
        let cedar_in_use = files.is_empty()
            || files
                .iter()
                .any(|f| PolicyLanguage::of(&f.path) == PolicyLanguage::Cedar);
        let mut set = Self::from_compiled(compiled.cedar, compiled.policies);
        set.cedar_in_use = cedar_in_use;
        set.rego = compiled.rego;
        Ok(set)
    }

    /// No policies: every request is denied.
    pub fn empty() -> Self {
        Self::from_compiled(cedar_policy::PolicySet::new(), BTreeMap::new())
    }

    fn from_compiled(
        cedar: cedar_policy::PolicySet,
        policies: BTreeMap<String, CompiledPolicy>,
    ) -> Self {
        let slicer = slice::Slicer::new(
            &cedar,
            decide::Model::get().ok().map(decide::Model::types).as_ref(),
        );
        Self {
            cedar,
            authorizer: cedar_policy::Authorizer::new(),
            policies,
            slicer,
            entities: Arc::default(),
            cedar_in_use: true,
            rego: Vec::new(),
        }
    }

    /// The engines that decide: Cedar, Rego, or both.
    pub fn languages(&self) -> Vec<PolicyLanguage> {
        let mut in_use = Vec::new();
        if self.cedar_in_use {
            in_use.push(PolicyLanguage::Cedar);
        }
        if !self.rego.is_empty() {
            in_use.push(PolicyLanguage::Rego);
        }
        in_use
    }

    /// Policy ids, sorted.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// The policies, sorted by id.
    pub fn policies(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.policies.values()
    }

    pub fn get(&self, id: &str) -> Option<&CompiledPolicy> {
        self.policies.get(id)
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// True when some policy may read `context.open_reviews`, so that a request must
    /// count the identity's open after-action reviews before it is decided (a store read
    /// that requests skip while no policy needs it). Conservative: any mention of
    /// `open_reviews` in a policy's text counts, comments included.
    pub fn reads_open_reviews(&self) -> bool {
        self.policies
            .values()
            .any(|p| p.text.contains("open_reviews"))
    }

    /// Decides one request: each engine in use decides, then deny wins, then the
    /// largest number of approvals (see the crate docs, "Cedar and Rego together").
    /// Errors only if the facts cannot be expressed as Cedar entities; policy evaluation
    /// errors end up in the decision's reason.
    pub fn decide(&self, input: &PolicyInput) -> Result<kairos_domain::Decision, PolicyError> {
        let mut decisions = Vec::with_capacity(2);
        if self.cedar_in_use {
            decisions.push(decide::decide(self, input)?);
        }
        if !self.rego.is_empty() {
            decisions.push(rego::decide(&self.rego, input));
        }
        Ok(combine::combine(&decisions))
    }

    /// The Rego engine's decision alone (deny when no `.rego` file is in the set).
    pub fn decide_rego(&self, input: &PolicyInput) -> kairos_domain::Decision {
        rego::decide(&self.rego, input)
    }
}
