//! Access requests: decide, record, approve, deny, wait.

use std::time::{Duration, Instant};

use kairos_config::{Binding, Catalog, Entitlement, OverCap};
use kairos_crypto::dpop::Confirmation;
use kairos_crypto::issuer::{AccessClaims, TaskClaim};
use kairos_domain::{
    Approval, ApprovalProgress, AuditDraft, AuditKind, Decision, DecisionOutcome, EntitlementName,
    Grant, GrantId, GrantState, IdentityName, Principal, Request, RequestId, RequestState, Task,
    Timestamp, Ttl,
};
use kairos_policy::{PolicyAction, PolicyInput};
use kairos_store::{RequestChange, RequestFilter, Role};

use crate::governance::reviews::break_glass_alert;
use crate::{Broker, BrokerError, Caller, Result};

/// A request as the caller made it, already parsed.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Required when a person requests on behalf of an identity; a workload may omit it.
    pub identity: Option<IdentityName>,
    pub entitlement: EntitlementName,
    pub ttl: Option<Ttl>,
    pub task: Task,
    /// The address the request came from, when known (recorded on the request, seen by
    /// policy as `context.source_ip`, checked against the identity's `allowed_sources`).
    pub source: Option<std::net::IpAddr>,
    /// A checked DPoP proof that came with the request ([`Broker::check_dpop_proof`]):
    /// its `jti` is claimed with the request, and the grant's tokens are bound to its key.
    pub proof: Option<kairos_crypto::dpop::VerifiedProof>,
    /// RFC 8705 `x5t#S256` of the verified client certificate the request came over
    /// ([`crate::Authenticated::client_cert`]): the grant's tokens are bound to it.
    pub client_cert: Option<String>,
    /// The workload's SSH public key, already parsed and checked: required for an
    /// entitlement on an ssh target (its certificate certifies this key), refused for
    /// any other.
    pub public_key: Option<kairos_ssh::PublicKey>,
}

pub use crate::accounts::IssuedCredential;

/// What became of a request.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    pub request: Request,
    pub grant: Option<Grant>,
    pub credential: Option<IssuedCredential>,
    /// True when the TTL was lowered to the entitlement's cap (`over_cap = "cap"`).
    pub ttl_capped: bool,
    /// The after-action review a break-glass grant opened.
    pub review: Option<kairos_domain::ReviewId>,
}

pub(crate) fn build_grant(catalog: &Catalog, request: &Request, now: Timestamp) -> Result<Grant> {
    let entitlement = catalog.entitlement(&request.entitlement).ok_or_else(|| {
        BrokerError::Conflict(format!(
            "entitlement {} was removed from the configuration since the request was made",
            request.entitlement
        ))
    })?;
    let target = catalog.target(&entitlement.target).ok_or_else(|| {
        BrokerError::Conflict(format!("target {} is not configured", entitlement.target))
    })?;
    let cap = catalog.effective_cap(entitlement);
    Ok(Grant {
        id: GrantId::generate(),
        request_id: request.id.clone(),
        identity: request.identity.clone(),
        entitlement: request.entitlement.clone(),
        target: entitlement.target.clone(),
        audience: target
            .audience()
            .map_or_else(|| target.name.to_string(), str::to_owned),
        scopes: entitlement.scopes.clone(),
        task: request.task.clone(),
        issued_at: now,
        expires_at: now.plus(request.ttl.as_duration()),
        max_expires_at: now.plus(cap.as_duration()),
        account: None,
        sealed_secret: None,
        state: GrantState::Active,
    })
}

fn issued_audit(grant: &Grant, by: &Principal) -> AuditDraft {
    AuditDraft::new(AuditKind::Issued, by)
        .identity(&grant.identity)
        .request(&grant.request_id)
        .grant(&grant.id)
        .task_ref(&grant.task.reference)
        .data(issued_data(grant))
}

fn issued_data(grant: &Grant) -> serde_json::Value {
    serde_json::json!({
        "entitlement": grant.entitlement,
        "target": grant.target,
        "audience": grant.audience,
        "scopes": grant.scopes,
        "issued_at": grant.issued_at.to_rfc3339(),
        "expires_at": grant.expires_at.to_rfc3339(),
    })
}

/// The one record of a request that policy granted and the broker issued in the same
/// commit (a token or an ssh certificate grant): the issued record's fields, by the
/// requester, with what was asked (`request`) and the decision (`decision`,
/// `catalog_version`) that the `requested` and `decided` records would otherwise carry.
fn auto_issued_audit(
    grant: &Grant,
    requester: &Principal,
    asked: serde_json::Value,
    decided: serde_json::Value,
) -> AuditDraft {
    let mut data = issued_data(grant);
    if let (serde_json::Value::Object(fields), serde_json::Value::Object(decided)) =
        (&mut data, decided)
    {
        // The entitlement is the issued record's own field already.
        let mut asked = asked;
        if let serde_json::Value::Object(a) = &mut asked {
            a.remove("entitlement");
        }
        fields.insert("request".into(), asked);
        fields.extend(decided);
    }
    issued_audit(grant, requester).data(data)
}

/// The one record of an account request that policy granted, written with its intent
/// (the account is issued later, once it exists): the `decided` record's fields
/// (`decision`, `catalog_version`) with what was asked (`request`), which a `requested`
/// record would otherwise carry.
fn auto_decided_data(asked: serde_json::Value, decided: serde_json::Value) -> serde_json::Value {
    let mut data = decided;
    if let serde_json::Value::Object(fields) = &mut data {
        fields.insert("request".into(), asked);
    }
    data
}

impl Broker {
    /// Signs the token credential of an active grant; with `cnf`, a token bound to that
    /// key (RFC 9449) and/or client certificate (RFC 8705). It carries the identity's
    /// SPIFFE ID (`spiffe_id`) when the catalog gives it one.
    pub fn mint(&self, grant: &Grant, cnf: Option<Confirmation>) -> Result<IssuedCredential> {
        let spiffe_id = self
            .catalog()
            .identity(&grant.identity)
            .and_then(|i| i.spiffe_id.clone());
        let claims = AccessClaims {
            iss: self.settings.issuer_url.clone(),
            sub: grant.identity.to_string(),
            client_id: grant.identity.to_string(),
            aud: grant.audience.clone(),
            exp: grant.expires_at.as_secs(),
            iat: grant.issued_at.as_secs(),
            nbf: grant.issued_at.as_secs(),
            jti: grant.id.to_string(),
            scope: grant.scopes.join(" "),
            entitlement: grant.entitlement.to_string(),
            task: TaskClaim {
                kind: grant.task.kind.to_string(),
                reference: grant.task.reference.to_string(),
                reason: grant.task.reason.clone(),
            },
            cnf: cnf.clone(),
            spiffe_id,
        };
        let access_token = self
            .key_ring()
            .sign(&claims)
            .map_err(BrokerError::internal)?;
        Ok(IssuedCredential::Token {
            access_token,
            expires_at: grant.expires_at,
            cnf,
        })
    }

    fn resolve_identity(
        &self,
        caller: &Caller,
        asked: Option<&IdentityName>,
    ) -> Result<IdentityName> {
        match caller {
            Caller::Workload { identity } => match asked {
                Some(other) if other != identity => Err(BrokerError::Forbidden(format!(
                    "workload {identity} cannot request access for identity {other}"
                ))),
                _ => Ok(identity.clone()),
            },
            Caller::User(_) => {
                caller
                    .require_role(&[Role::Operator], "request access on behalf of an identity")?;
                asked.cloned().ok_or_else(|| {
                    BrokerError::invalid(
                        "identity_required",
                        "a person requesting access must name the identity it is for (`identity`)",
                    )
                })
            }
        }
    }

    fn capped_ttl(
        &self,
        catalog: &Catalog,
        e: &Entitlement,
        asked: Option<Ttl>,
    ) -> Result<(Ttl, bool)> {
        let cap = catalog.effective_cap(e);
        let asked = match asked {
            Some(t) => t,
            None => {
                let default = Ttl::from_secs(self.settings.default_ttl.as_secs())
                    .map_err(|err| BrokerError::invalid("bad_ttl", err.to_string()))?;
                return Ok((default.min(cap), false));
            }
        };
        if asked <= cap {
            return Ok((asked, false));
        }
        match e.over_cap {
            OverCap::Cap => Ok((cap, true)),
            OverCap::Refuse => Err(BrokerError::invalid(
                "ttl_over_cap",
                format!(
                    "ttl {asked} is longer than {} allows ({cap}, from its max_ttl and its {} tier); ask for {cap} or less",
                    e.name, e.tier
                ),
            )),
        }
    }

    /// Files a request: policy decides at once; a grant is issued now, later (after
    /// approvals), or never.
    pub async fn request(&self, caller: &Caller, input: NewRequest) -> Result<RequestOutcome> {
        let arrived = Instant::now();
        let (catalog, catalog_version) = self.decision_catalog().await?;
        let identity_name = self.resolve_identity(caller, input.identity.as_ref())?;
        let identity = catalog.identity(&identity_name).ok_or_else(|| {
            BrokerError::NotFound(format!(
                "identity {identity_name} is not registered; add it to the configuration"
            ))
        })?;
        self.refuse_if_inactive(&identity_name)?;
        let entitlement = catalog.entitlement(&input.entitlement).ok_or_else(|| {
            BrokerError::NotFound(format!(
                "entitlement {} is not defined; check the name (`target/role`) against the configuration",
                input.entitlement
            ))
        })?;
        self.check_break_glass(entitlement, &input.task)?;
        let is_ssh = catalog
            .target(&entitlement.target)
            .is_some_and(|t| t.kind.ssh().is_some());
        match (is_ssh, &input.public_key) {
            (true, None) => {
                return Err(BrokerError::invalid(
                    "public_key_required",
                    format!(
                        "{} is on ssh target {}: send the SSH public key to certify as `public_key` (the one line of your `.pub` file, e.g. `ssh-ed25519 AAAA…`; with the CLI: --public-key-file ~/.ssh/id_ed25519.pub)",
                        entitlement.name, entitlement.target
                    ),
                ));
            }
            (false, Some(_)) => {
                return Err(BrokerError::invalid(
                    "public_key_not_applicable",
                    format!(
                        "`public_key` is only for entitlements on ssh targets; {} is on target {}, which is not one: leave `public_key` out",
                        entitlement.name, entitlement.target
                    ),
                ));
            }
            _ => {}
        }
        let requester = caller.principal();
        let unmet = catalog
            .binding_requirements(entitlement)
            .into_iter()
            .find(|(b, _)| !b.satisfied(input.proof.is_some(), input.client_cert.is_some()));
        if let Some((binding, by)) = unmet {
            let (code, message) = match binding {
                Binding::Dpop => (
                    "dpop_proof_required",
                    format!(
                        "{by} requires a DPoP-bound token: send a DPoP proof (RFC 9449) of a key you hold in the `DPoP` header"
                    ),
                ),
                Binding::Mtls => (
                    "mtls_required",
                    format!(
                        "{by} requires a certificate-bound token (RFC 8705): call over mutual TLS with your client certificate or X.509-SVID"
                    ),
                ),
                Binding::Any => (
                    "binding_required",
                    format!(
                        "{by} requires a sender-constrained token: send a DPoP proof (RFC 9449) in the `DPoP` header, or call over mutual TLS with your client certificate (RFC 8705)"
                    ),
                ),
            };
            self.store
                .append_audit(vec![
                    AuditDraft::new(AuditKind::Requested, &requester)
                        .identity(&identity_name)
                        .task_ref(&input.task.reference)
                        .data(serde_json::json!({
                            "entitlement": input.entitlement,
                            "task": input.task,
                            "refused": { "code": code, "message": message },
                        })),
                ])
                .await?;
            return Err(BrokerError::invalid(code, message));
        }
        let (ttl, ttl_capped) = self.capped_ttl(&catalog, entitlement, input.ttl)?;
        // `::ffff:10.1.2.3` is 10.1.2.3 to policy, the record and the detectors.
        let source = input.source.map(kairos_domain::canonical_ip);
        let open_reviews = self
            .open_reviews_for_policy(&catalog, &identity_name)
            .await?;

        let started = Instant::now();
        let decision = catalog
            .policies()
            .decide(&PolicyInput {
                action: PolicyAction::Request,
                identity: catalog.identity_facts(identity),
                entitlement: catalog.entitlement_facts(entitlement),
                ttl,
                task: input.task.clone(),
                requester: requester.clone(),
                circumstances: kairos_policy::Circumstances {
                    source_ip: source,
                    break_glass: entitlement.break_glass,
                    open_reviews,
                },
            })
            .map_err(BrokerError::internal)?;
        self.metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        let outcome_label = match decision.outcome {
            DecisionOutcome::Deny => "deny",
            DecisionOutcome::Grant => "grant",
            DecisionOutcome::Pending { .. } => "pending",
        };
        self.metrics
            .decisions
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: outcome_label.into(),
            })
            .inc();

        let now = self.now();
        let mut request = Request {
            id: RequestId::generate(),
            identity: identity_name.clone(),
            entitlement: input.entitlement.clone(),
            ttl,
            task: input.task.clone(),
            requester: requester.clone(),
            decision: decision.clone(),
            state: RequestState::Pending,
            approvals: Vec::new(),
            denial: None,
            created_at: now,
            pending_until: None,
            grant_id: None,
            renews: None,
            source_ip: source,
        };
        let base = |kind| {
            AuditDraft::new(kind, &requester)
                .identity(&identity_name)
                .request(&request.id)
                .task_ref(&input.task.reference)
        };
        let mut asked = serde_json::json!({
            "entitlement": input.entitlement,
            "ttl": ttl.to_string(),
            "ttl_capped": ttl_capped,
            "task": input.task,
        });
        let decided = || {
            serde_json::json!({
                "decision": decision,
                "catalog_version": catalog_version,
            })
        };
        let mut audit = Vec::with_capacity(2);
        let mut grant = None;
        let mut account = None;
        let mut review = None;
        match decision.outcome {
            DecisionOutcome::Deny => request.state = RequestState::Denied,
            DecisionOutcome::Pending { .. } => {
                request.pending_until = Some(now.plus(self.settings.pending_timeout));
            }
            DecisionOutcome::Grant => {
                let mut g = build_grant(&catalog, &request, now)?;
                account = self.prepare_account(&catalog, entitlement, &mut g)?;
                request.state = RequestState::Granted;
                request.grant_id = Some(g.id.clone());
                if account.is_none() {
                    // Auto-granted and issued in one commit: one record carries the
                    // request, its decision and the issuance.
                    audit.push(auto_issued_audit(
                        &g,
                        &requester,
                        std::mem::take(&mut asked),
                        decided(),
                    ));
                } else {
                    // An account is issued once it exists, in a later write: the intent's
                    // one record carries the request and its decision.
                    audit.push(
                        base(AuditKind::Decided)
                            .data(auto_decided_data(std::mem::take(&mut asked), decided())),
                    );
                }
                if entitlement.break_glass {
                    let (opened, record) =
                        self.open_review(&catalog, &request, &g, &Principal::System("broker"));
                    audit.push(record);
                    review = Some(opened);
                }
                grant = Some(g);
            }
        }
        if audit.is_empty() {
            audit.push(base(AuditKind::Requested).data(asked));
            audit.push(base(AuditKind::Decided).data(decided()));
        }
        // A DPoP proof is used once, on any replica: claimed (with the request's key
        // binding) before anything of the request is written; a replay writes nothing.
        let jkt = match &input.proof {
            Some(proof) => {
                self.claim_dpop_proof(proof, Some(&request.id)).await?;
                Some(proof.jkt.clone())
            }
            None => None,
        };
        // RFC 8705: bound to the client certificate the request came over, remembered
        // before the request is written so a token minted again for it is bound too.
        if let Some(x5t) = &input.client_cert {
            self.store.bind_certificate(&request.id, x5t).await?;
        }
        // The key to certify, remembered before the request like a binding, so the
        // certificate can be signed whenever the grant is issued (now or on approval).
        if let Some(key) = &input.public_key {
            self.store
                .bind_ssh_key(&request.id, &key.to_openssh())
                .await?;
        }
        let cnf = Confirmation::of(jkt, input.client_cert.clone());
        // Tokens: sign before committing, so a grant is never recorded without a
        // credential. Accounts: record the intent first, then create the account.
        let mut credential = match (&grant, &account) {
            (Some(g), None) if !is_ssh => Some(self.mint(g, cnf)?),
            _ => None,
        };
        match (&grant, &review) {
            // A break-glass grant, its review and its alert commit together, or none does.
            (Some(g), Some(r)) => {
                let alert = break_glass_alert(r, g, now);
                let alert_id = alert.id.clone();
                self.store
                    .insert_request_with_review(&request, g, r, audit, Some(alert))
                    .await?;
                self.break_glass_granted(r, g, &alert_id).await;
            }
            _ => {
                self.store
                    .insert_request(&request, grant.as_ref(), audit)
                    .await?
            }
        }
        self.note_request(identity, now, source).await;
        if let (Some(g), Some(acc)) = (&grant, account) {
            self.notify_requests();
            // Shown now, in this answer, and never again: the delivery is recorded with
            // the activation.
            let (issued, activated) = self.provision(g, acc, Some(caller)).await?;
            credential = Some(issued);
            grant = Some(activated);
            self.metrics
                .issuance_seconds
                .observe(arrived.elapsed().as_secs_f64());
        } else if let Some(g) = &grant {
            // A certificate is recorded only while its grant is active, so it is signed
            // after the grant's commit (in a write that checks that); a failure here
            // leaves an active grant whose certificate its workload gets by reading the
            // request again.
            if is_ssh {
                credential = Some(IssuedCredential::Ssh(self.ssh_credential(g).await?));
            }
            self.metrics
                .issuance_seconds
                .observe(arrived.elapsed().as_secs_f64());
            self.metrics.grants_issued.inc();
            self.metrics.active_grants.inc();
            self.expiry_added(g.expires_at);
        } else if matches!(decision.outcome, DecisionOutcome::Pending { .. }) {
            self.metrics.pending_requests.inc();
        }
        self.notify_requests();
        if let DecisionOutcome::Deny = decision.outcome {
            return Err(BrokerError::Denied(decision_with_request(
                decision, &request,
            )));
        }
        Ok(RequestOutcome {
            request,
            grant,
            credential,
            ttl_capped,
            review: review.map(|r| r.id),
        })
    }

    /// Reads a request. The workload it is for, its requester, and people with a
    /// reading role may see it; its requester gets the credential once granted.
    /// With `wait`, long-polls until it leaves `pending` or the wait runs out.
    pub async fn get_request(
        &self,
        caller: &Caller,
        id: &RequestId,
        wait: Option<Duration>,
    ) -> Result<RequestOutcome> {
        let deadline = wait.map(|w| Instant::now() + w.min(Duration::from_secs(60)));
        let mut events = self.request_events.subscribe();
        loop {
            let request = self
                .store
                .get_request(id)
                .await?
                .ok_or_else(|| BrokerError::NotFound(format!("request {id} not found")))?;
            self.check_may_read_request(caller, &request)?;
            let pending = request.state == RequestState::Pending;
            match deadline {
                Some(deadline) if pending && Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Wake on a local change, or poll (another replica may have approved).
                    let _ =
                        tokio::time::timeout(left.min(Duration::from_secs(1)), events.changed())
                            .await;
                    continue;
                }
                _ => {}
            }
            let grant = match &request.grant_id {
                Some(gid) => self.store.get_grant(gid).await?,
                None => None,
            };
            // A token can be minted again for its workload; an account's password is
            // shown once: at issuance, or after approval to the first read that claims it.
            let credential = match (&grant, caller) {
                (Some(g), Caller::Workload { identity })
                    if *identity == g.identity
                        && g.is_active_at(self.now())
                        && g.account.is_none()
                        && self.is_ssh_grant(g) =>
                {
                    Some(IssuedCredential::Ssh(self.ssh_credential(g).await?))
                }
                (Some(g), Caller::Workload { identity })
                    if *identity == g.identity
                        && g.is_active_at(self.now())
                        && g.account.is_none() =>
                {
                    // Bound to the key the request was made with, if it was.
                    Some(self.mint(g, self.confirmation_of(g).await?)?)
                }
                (Some(g), Caller::Workload { identity })
                    if *identity == g.identity && g.is_active_at(self.now()) =>
                {
                    self.deliver_account_once(g, caller).await?
                }
                _ => None,
            };
            let review = self.review_id_of(&self.catalog(), &request).await?;
            return Ok(RequestOutcome {
                request,
                grant,
                credential,
                ttl_capped: false,
                review,
            });
        }
    }

    fn check_may_read_request(&self, caller: &Caller, request: &Request) -> Result<()> {
        match caller {
            Caller::Workload { identity } if *identity == request.identity => Ok(()),
            // Another identity's request is answered as an unknown one: the caller learns
            // neither that it exists nor whose it is.
            Caller::Workload { .. } => Err(BrokerError::NotFound(format!(
                "request {} not found",
                request.id
            ))),
            Caller::User(u) if request.requester == Principal::User(u.name.clone()) => Ok(()),
            Caller::User(_) => caller
                .require_role(
                    &[Role::Operator, Role::Approver, Role::Auditor],
                    "read requests",
                )
                .map(|_| ()),
        }
    }

    pub async fn list_requests(
        &self,
        caller: &Caller,
        filter: &RequestFilter,
    ) -> Result<Vec<Request>> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "list requests",
        )?;
        Ok(self.store.list_requests(filter).await?)
    }

    /// The team whose approvers decide a request for `entitlement` by `identity`.
    fn approving_team(
        &self,
        catalog: &Catalog,
        request: &Request,
    ) -> Option<kairos_domain::TeamName> {
        let entitlement = catalog.entitlement(&request.entitlement)?;
        let identity = catalog.identity(&request.identity)?;
        Some(catalog.approval_team(entitlement, identity).clone())
    }

    /// The team whose approvers decide `request` (None when its identity or entitlement
    /// is no longer configured). The console uses it to hold a single sign-on session to
    /// the teams its IdP asserted.
    pub fn approving_team_of(&self, request: &Request) -> Option<kairos_domain::TeamName> {
        self.approving_team(&self.catalog(), request)
    }

    fn check_may_approve(
        &self,
        caller: &Caller,
        request: &Request,
    ) -> Result<kairos_domain::UserName> {
        let user = caller.require_role(&[Role::Approver], "approve or deny requests")?;
        let catalog = self.catalog();
        let team = self.approving_team(&catalog, request).ok_or_else(|| {
            BrokerError::Conflict("the request's identity is no longer configured".into())
        })?;
        let listed = catalog
            .team(&team)
            .is_some_and(|t| t.approvers.contains(&user.name));
        // Only the team's approvers count, whatever their role: an admin who is not one
        // would otherwise be a second approval nobody on the team gave.
        if !(listed || user.teams.contains(&team)) {
            return Err(BrokerError::Forbidden(format!(
                "{} is not an approver of team {team}, which approves this request; only the team's approvers count (admins included): list {} in the team's `approvers` in the configuration, or give the user the team",
                user.name, user.name
            )));
        }
        Ok(user.name.clone())
    }

    /// Whether `request` waits for `caller`'s decision: it is pending, and `caller` passes
    /// the check [`Broker::approve`] and [`Broker::deny`] make (an approver of the approving
    /// team), is not its requester and has not approved it yet. For inboxes; the decision
    /// itself is checked again, under the row lock, when it is made.
    pub fn awaits_decision_of(&self, caller: &Caller, request: &Request) -> bool {
        if request.state != RequestState::Pending {
            return false;
        }
        let Ok(name) = self.check_may_approve(caller, request) else {
            return false;
        };
        request.requester != Principal::User(name.clone())
            && !request.approvals.iter().any(|a| a.approver == name)
    }

    /// Adds an approval; the last one issues the grant.
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &RequestId,
        reason: String,
    ) -> Result<RequestOutcome> {
        let current = self
            .store
            .get_request(id)
            .await?
            .ok_or_else(|| BrokerError::NotFound(format!("request {id} not found")))?;
        let approver = self.check_may_approve(caller, &current)?;
        // An approval must not hand access to an identity suspended after it asked.
        self.refuse_if_inactive(&current.identity)?;
        if let Some(grant) = current.renews.clone() {
            return self
                .approve_renewal(caller, current, grant, approver, reason)
                .await;
        }
        let (catalog, catalog_version) = self.decision_catalog().await?;
        let now = self.now();
        let by = caller.principal();
        // The grant the last approval would issue, prepared outside the lock (a request's
        // identity, entitlement, TTL and task never change). Database grants start
        // `provisioning`; their account is created after the commit.
        let mut next_grant = build_grant(&catalog, &current, now)?;
        let entitlement = catalog.entitlement(&current.entitlement).ok_or_else(|| {
            BrokerError::Conflict(format!("entitlement {} was removed", current.entitlement))
        })?;
        let account = self.prepare_account(&catalog, entitlement, &mut next_grant)?;
        let is_token = account.is_none();
        // A break-glass request that policy sent to approvals: the grant the last approval
        // issues opens its review in the same transaction.
        let next_review = entitlement
            .break_glass
            .then(|| self.open_review(&catalog, &current, &next_grant, &by));
        let opened_review = next_review.as_ref().map(|(r, _)| r.clone());
        let next_alert = next_review
            .as_ref()
            .map(|(r, _)| break_glass_alert(r, &next_grant, now));
        let alert_id = next_alert.as_ref().map(|a| a.id.clone());
        let updated = self
            .store
            .update_request(
                id,
                Box::new(move |req: &mut Request| {
                    let progress = req.approve(Approval {
                        approver: approver.clone(),
                        at: now,
                        reason: reason.clone(),
                    })?;
                    let base = |kind| {
                        AuditDraft::new(kind, &by)
                            .identity(&req.identity)
                            .request(&req.id)
                            .task_ref(&req.task.reference)
                    };
                    let mut change = RequestChange::default();
                    match progress {
                        ApprovalProgress::NeedMore { have, need } => {
                            change
                                .audit
                                .push(base(AuditKind::Approved).data(serde_json::json!({
                                    "reason": reason, "approvals": have, "needed": need,
                                })));
                        }
                        ApprovalProgress::Complete => {
                            let need = req.approvals_needed();
                            change
                                .audit
                                .push(base(AuditKind::Approved).data(serde_json::json!({
                                    "reason": reason, "approvals": need, "needed": need,
                                    "catalog_version": catalog_version,
                                })));
                            let grant = next_grant;
                            req.mark_granted(grant.id.clone())?;
                            if is_token {
                                change.audit.push(issued_audit(&grant, &by));
                            }
                            if let Some((review, record)) = next_review {
                                change.audit.push(record);
                                change.review = Some(review);
                                change.alert = next_alert;
                            }
                            change.grant = Some(grant);
                        }
                    }
                    Ok(change)
                }),
            )
            .await?;
        let review = match (&updated.grant_id, opened_review) {
            (Some(_), Some(review)) => Some(review),
            _ => None,
        };
        let grant = match &updated.grant_id {
            Some(gid) => {
                self.metrics.pending_requests.dec();
                let stored = self.store.get_grant(gid).await?;
                match (stored, account) {
                    // The password reaches the workload once, when it reads its request.
                    (Some(g), Some(acc)) => {
                        self.notify_requests();
                        self.provision(&g, acc, None).await?;
                    }
                    (Some(g), None) => {
                        self.metrics.grants_issued.inc();
                        self.metrics.active_grants.inc();
                        self.expiry_added(g.expires_at);
                    }
                    (None, _) => {}
                }
                self.store.get_grant(gid).await?
            }
            None => None,
        };
        if let (Some(r), Some(g), Some(alert)) = (&review, &grant, &alert_id) {
            self.break_glass_granted(r, g, alert).await;
        }
        self.notify_requests();
        Ok(RequestOutcome {
            request: updated,
            grant,
            credential: None,
            ttl_capped: false,
            review: review.map(|r| r.id),
        })
    }

    pub async fn deny(&self, caller: &Caller, id: &RequestId, reason: String) -> Result<Request> {
        let current = self
            .store
            .get_request(id)
            .await?
            .ok_or_else(|| BrokerError::NotFound(format!("request {id} not found")))?;
        let approver = self.check_may_approve(caller, &current)?;
        let now = self.now();
        let by = caller.principal();
        let updated = self
            .store
            .update_request(
                id,
                Box::new(move |req: &mut Request| {
                    req.deny(Approval {
                        approver,
                        at: now,
                        reason: reason.clone(),
                    })?;
                    Ok(RequestChange {
                        grant: None,
                        renewal: None,
                        review: None,
                        alert: None,
                        audit: vec![
                            AuditDraft::new(AuditKind::Denied, &by)
                                .identity(&req.identity)
                                .request(&req.id)
                                .task_ref(&req.task.reference)
                                .data(serde_json::json!({ "reason": reason })),
                        ],
                    })
                }),
            )
            .await?;
        self.metrics.pending_requests.dec();
        self.notify_requests();
        Ok(updated)
    }

    /// Expires pending requests whose approval window has passed. Returns how many.
    pub async fn expire_pending(&self) -> Result<usize> {
        let expired = self.store.expire_pending_requests(self.now(), 500).await?;
        if !expired.is_empty() {
            self.metrics
                .pending_requests
                .dec_by(i64::try_from(expired.len()).unwrap_or(i64::MAX));
            self.notify_requests();
        }
        Ok(expired.len())
    }
}

fn decision_with_request(mut decision: Decision, request: &Request) -> Decision {
    decision.reason = format!("{} (request {})", decision.reason, request.id);
    decision
}
