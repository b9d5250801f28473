//! Revocation told to resource servers that verify tokens offline: for every end of a
//! token grant, one signed Security Event Token (RFC 8417, the OpenID CAEP
//! `session-revoked` event) per `[[set_receiver]]` whose resource server covers the
//! grant's target, pushed (RFC 8935) or fetched by poll (RFC 8936).
//!
//! The revocation job is the durable event: the revocation worker writes a grant's SETs
//! (signed once, the body fixed, one row per receiver whatever the retries) before it
//! writes the receipt, and keeps the grant `ending` until every receiver acknowledged,
//! refused it, or let its `ack_timeout` pass; the receipt names each. With no receivers
//! nothing changes. A receiver that never answers delays only the receipts of its own
//! grants, and never makes a grant active again (it is `ending` already).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_config::{SecretRef, SetDelivery, SetReceiver};
use kairos_crypto::issuer::SessionRevoked;
use kairos_domain::{EndReason, Grant, GrantId, GrantState, Timestamp};
use kairos_store::{
    NewSet, PollAcks, PollBatch, Role, SetBacklog, SetDeliveryMode, SetOutcome, SetRecord, SetState,
};

use crate::metrics::{ReceiverLabel, SetDeliveryLabels};
use crate::{Broker, BrokerError, Caller, Result};

/// A push SET still unacknowledged this long after it was written is given up (`dead`).
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Push SETs one delivery pass claims.
const CLAIM_PER_PASS: u32 = 200;
/// Receivers served at once by a delivery pass (each one's SETs one after another).
const RECEIVERS_AT_ONCE: usize = 8;
/// A grant waiting for acknowledgements is looked at again at least this often (an ack
/// also makes it due at once).
const RECHECK_WAITING: Duration = Duration::from_secs(5);
/// The longest a poll without `returnImmediately` waits for a SET.
pub const LONG_POLL_MAX: Duration = Duration::from_secs(20);
/// The most SETs one poll returns.
pub const POLL_MAX_EVENTS: u32 = 100;

/// Where a grant's SETs stand for its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetStatus {
    /// Some receiver may still acknowledge: look again by `until`.
    Waiting { until: Timestamp },
    /// Every receiver answered or ran out of time: the receipt's words.
    Done {
        all_acknowledged: bool,
        evidence: String,
    },
}

/// The pure rule: a grant's receipt waits while a receiver has neither acknowledged nor
/// refused its SET and its `ack_timeout` (`wait_until`) has not passed; then the evidence
/// names who acknowledged (and when) and who did not (and why).
pub fn set_status(rows: &[SetRecord], now: Timestamp) -> SetStatus {
    let waiting = rows
        .iter()
        .filter(|r| r.state == SetState::Pending && now < r.wait_until)
        .map(|r| r.wait_until)
        .min();
    if let Some(until) = waiting {
        return SetStatus::Waiting { until };
    }
    let mut acked = Vec::new();
    let mut not = Vec::new();
    for r in rows {
        match (r.state, r.acked_at) {
            (SetState::Acked, Some(at)) => {
                acked.push(format!("{} at {}", r.receiver, at.to_rfc3339()))
            }
            (SetState::Failed, at) => not.push(format!(
                "{} (refused it{}: {})",
                r.receiver,
                at.map(|a| format!(" at {}", a.to_rfc3339()))
                    .unwrap_or_default(),
                r.last_error.as_deref().unwrap_or("no reason given")
            )),
            _ => not.push(format!(
                "{} (no acknowledgement within its ack_timeout{})",
                r.receiver,
                r.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            )),
        }
    }
    let mut evidence = String::new();
    if !acked.is_empty() {
        evidence.push_str(&format!("SET acknowledged by {}", acked.join(", ")));
    }
    if !not.is_empty() {
        if !evidence.is_empty() {
            evidence.push_str("; ");
        }
        evidence.push_str(&format!("SET NOT acknowledged by {}", not.join(", ")));
    }
    SetStatus::Done {
        all_acknowledged: not.is_empty(),
        evidence,
    }
}

/// CAEP `initiating_entity` for an end reason.
fn initiating_entity(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Released => "user",
        EndReason::Revoked => "admin",
        EndReason::Expired | EndReason::Aborted => "system",
        EndReason::ConfigRemoved
        | EndReason::Suspended
        | EndReason::Retired
        | EndReason::IdentityRemoved
        | EndReason::TeamRemoved
        | EndReason::TargetRemoved
        | EndReason::EntitlementRemoved
        | EndReason::PolicyChanged => "policy",
    }
}

/// What a token grant's SETs mean for its revocation job.
pub(crate) enum SetStage {
    /// No receiver covers its target: the receipt as before.
    NoReceivers,
    /// Waiting for acknowledgements; the job was deferred.
    Deferred,
    /// Done: add this to the receipt.
    Done {
        all_acknowledged: bool,
        evidence: String,
    },
}

/// A poll request (RFC 8936 §2.4), parsed.
#[derive(Debug, Clone, Default)]
pub struct SetPoll {
    pub acks: PollAcks,
    /// At most this many SETs (capped at [`POLL_MAX_EVENTS`]; 0: only acknowledge).
    pub max_events: Option<u32>,
    /// Answer at once even when nothing is waiting (default true, as RFC 8936 says).
    pub return_immediately: bool,
}

/// One receiver as operators see it.
#[derive(Debug, Clone)]
pub struct ReceiverStatus {
    pub name: String,
    pub delivery: &'static str,
    pub resource_server: String,
    pub audience: String,
    pub backlog: SetBacklog,
}

impl Broker {
    /// The receivers whose resource server (a user of role `resource-server`) covers the
    /// grant's target.
    async fn receivers_for(&self, grant: &Grant) -> Result<Vec<SetReceiver>> {
        let catalog = self.catalog();
        let mut out = Vec::new();
        for r in catalog.set_receivers() {
            if let Some(user) = self.store.get_user(&r.resource_server).await?
                && user.role == Role::ResourceServer
                && user.targets.contains(&grant.target)
            {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// For a token grant whose token is verified inactive: writes its SETs if not yet
    /// written (signed once; a retry finds them), then says whether the receipt may be
    /// written (and with what) or must wait for acknowledgements (the job is deferred).
    pub(crate) async fn set_stage(&self, grant: &Grant) -> Result<SetStage> {
        let GrantState::Ending { end, .. } = &grant.state else {
            return Ok(SetStage::NoReceivers);
        };
        if self.catalog().set_receivers().is_empty() {
            // No store read on the revocation path when no receiver is configured.
            return Ok(SetStage::NoReceivers);
        }
        let mut rows = self.store.grant_sets(&grant.id).await?;
        let receivers = self.receivers_for(grant).await?;
        if receivers.is_empty() && rows.is_empty() {
            return Ok(SetStage::NoReceivers);
        }
        let missing: Vec<&SetReceiver> = receivers
            .iter()
            .filter(|r| !rows.iter().any(|row| row.receiver == r.name))
            .collect();
        if !missing.is_empty() {
            let now = self.now();
            let ring = self.key_ring();
            let mut new = Vec::with_capacity(missing.len());
            for r in missing {
                let jti = uuid::Uuid::new_v4().simple().to_string();
                let body = ring
                    .sign_session_revoked(&SessionRevoked {
                        jti: jti.clone(),
                        audience: r.audience.clone(),
                        issued_at: now.as_millis() / 1000,
                        token_jti: grant.id.to_string(),
                        event_timestamp: end.at.as_millis() / 1000,
                        initiating_entity: initiating_entity(end.reason),
                        reason: format!("{}: token grant {} ended", end.reason, grant.id),
                    })
                    .map_err(BrokerError::internal)?;
                new.push(NewSet {
                    jti,
                    grant: grant.id.clone(),
                    receiver: r.name.clone(),
                    delivery: match r.delivery {
                        SetDelivery::Push { .. } => SetDeliveryMode::Push,
                        SetDelivery::Poll => SetDeliveryMode::Poll,
                    },
                    body,
                    wait_until: now.plus(r.ack_timeout.as_duration()),
                });
            }
            self.store.enqueue_sets(new, now).await?;
            self.set_events.send_modify(|v| *v = v.wrapping_add(1));
            rows = self.store.grant_sets(&grant.id).await?;
        }
        let now = self.now();
        match set_status(&rows, now) {
            SetStatus::Waiting { until } => {
                let due = until.min(now.plus(RECHECK_WAITING));
                self.store.defer_revocation(&grant.id, due).await?;
                Ok(SetStage::Deferred)
            }
            SetStatus::Done {
                all_acknowledged,
                evidence,
            } => Ok(SetStage::Done {
                all_acknowledged,
                evidence,
            }),
        }
    }

    /// The SETs of a grant (for its receipt), for whoever may read the grant.
    pub async fn grant_sets(&self, caller: &Caller, id: &GrantId) -> Result<Vec<SetRecord>> {
        self.get_grant(caller, id).await?;
        Ok(self.store.grant_sets(id).await?)
    }

    /// One push delivery pass: claims due push SETs and POSTs each once (RFC 8935).
    /// Receivers are served concurrently, each one's SETs oldest first. Returns how many
    /// it attempted.
    pub async fn deliver_sets(self: &Arc<Self>, client: &reqwest::Client) -> Result<usize> {
        let timeout = self.settings.notify.timeout;
        let claim = uuid::Uuid::new_v4().simple().to_string();
        let lease = timeout.saturating_mul(2) + Duration::from_secs(1);
        let claimed = self
            .store
            .claim_push_sets(
                self.now(),
                CLAIM_PER_PASS,
                i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                &claim,
            )
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut by_receiver: BTreeMap<String, Vec<SetRecord>> = BTreeMap::new();
        for s in claimed {
            by_receiver.entry(s.receiver.clone()).or_default().push(s);
        }
        let claim: Arc<str> = Arc::from(claim);
        let attempted = crate::fanout::per_destination(by_receiver, RECEIVERS_AT_ONCE, |sets| {
            let (b, client, claim) = (Arc::clone(self), client.clone(), Arc::clone(&claim));
            async move { b.push_receiver(&client, sets, &claim).await }
        })
        .await;
        self.revoke_work.notify_one();
        attempted
    }

    async fn push_receiver(
        &self,
        client: &reqwest::Client,
        sets: Vec<SetRecord>,
        claim: &str,
    ) -> Result<usize> {
        let timeout = self.settings.notify.timeout;
        let mut attempted = 0;
        for s in &sets {
            if self.now().plus(timeout) > s.next_at {
                continue;
            }
            attempted += 1;
            let catalog = self.catalog();
            let receiver = catalog
                .set_receivers()
                .iter()
                .find(|r| r.name == s.receiver);
            let sent = match receiver.map(|r| &r.delivery) {
                Some(SetDelivery::Push {
                    endpoint_url,
                    auth_header,
                }) => push(client, endpoint_url, auth_header.as_ref(), &s.body).await,
                _ => Err(Push::Retry(format!(
                    "push receiver {} is no longer in the configuration",
                    s.receiver
                ))),
            };
            let now = self.now();
            let outcome = match sent {
                Ok(()) => SetOutcome::Acked,
                Err(Push::Refused(error)) => {
                    tracing::warn!(set = %s.jti, receiver = %s.receiver, grant = %s.grant, %error,
                        "the receiver refused a SET");
                    SetOutcome::Refused { error }
                }
                Err(Push::Retry(error)) if now.since(s.created_at) >= GIVE_UP_AFTER => {
                    tracing::error!(set = %s.jti, receiver = %s.receiver, %error,
                        "SET given up: undelivered for a day");
                    SetOutcome::Dead { error }
                }
                Err(Push::Retry(error)) => {
                    let wait = crate::ending::backoff(s.attempts.saturating_add(1));
                    tracing::warn!(set = %s.jti, receiver = %s.receiver, %error,
                        retry_in_ms = wait.as_millis() as u64, "SET delivery failed; will retry");
                    SetOutcome::Retry {
                        error,
                        retry_at: now.plus(wait),
                    }
                }
            };
            self.metrics
                .set_deliveries
                .get_or_create(&SetDeliveryLabels {
                    receiver: s.receiver.clone(),
                    outcome: outcome_name(&outcome),
                })
                .inc();
            if !self.store.finish_set(&s.jti, claim, &outcome, now).await? {
                tracing::warn!(set = %s.jti, "SET's lease ended during its attempt; another replica holds it now");
            }
        }
        Ok(attempted)
    }

    /// RFC 8936 poll by `caller` for receiver `name`: records its acknowledgements and
    /// errors, then returns its pending SETs. Only the receiver's own resource server may
    /// poll; anyone else is refused with the same answer whether or not the receiver
    /// exists, and learns nothing about any SET.
    pub async fn poll_sets(&self, caller: &Caller, name: &str, poll: SetPoll) -> Result<PollBatch> {
        let refused = || {
            BrokerError::Forbidden(format!(
                "you are not the resource server of a poll receiver named {:?}",
                name.chars().take(64).collect::<String>()
            ))
        };
        let Caller::User(user) = caller else {
            return Err(refused());
        };
        let catalog = self.catalog();
        let Some(receiver) = catalog
            .set_receivers()
            .iter()
            .find(|r| r.name == name && r.delivery == SetDelivery::Poll)
        else {
            return Err(refused());
        };
        if user.role != Role::ResourceServer || user.name != receiver.resource_server {
            return Err(refused());
        }
        let max = poll
            .max_events
            .unwrap_or(POLL_MAX_EVENTS)
            .min(POLL_MAX_EVENTS);
        let answered = poll.acks.acks.len() + poll.acks.errors.len();
        let mut events = self.set_events.subscribe();
        let mut batch = self
            .store
            .poll_sets(&receiver.name, &poll.acks, max, self.now())
            .await
            .map_err(|e| match e {
                kairos_store::StoreError::Conflict(m) => BrokerError::invalid(
                    "invalid_request",
                    format!(
                        "{m}: acknowledge only SETs this receiver was given; nothing was recorded"
                    ),
                ),
                other => other.into(),
            })?;
        if answered > 0 {
            let label = |outcome| SetDeliveryLabels {
                receiver: receiver.name.clone(),
                outcome,
            };
            self.metrics
                .set_deliveries
                .get_or_create(&label("acked"))
                .inc_by(poll.acks.acks.len() as u64);
            self.metrics
                .set_deliveries
                .get_or_create(&label("refused"))
                .inc_by(poll.acks.errors.len() as u64);
            self.revoke_work.notify_one();
        }
        if poll.return_immediately || max == 0 || !batch.sets.is_empty() {
            return Ok(batch);
        }
        // Long poll: until a SET comes, or the bound. Another replica's SETs are seen by
        // looking again every second.
        let deadline = tokio::time::Instant::now() + LONG_POLL_MAX;
        while batch.sets.is_empty() && tokio::time::Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_secs(1));
            let _ = tokio::time::timeout(wait, events.changed()).await;
            batch = self
                .store
                .poll_sets(&receiver.name, &PollAcks::default(), max, self.now())
                .await?;
        }
        Ok(batch)
    }

    /// Every receiver with its backlog (admins, operators and auditors).
    pub async fn set_receivers(&self, caller: &Caller) -> Result<Vec<ReceiverStatus>> {
        caller.require_role(&[Role::Operator, Role::Auditor], "read SET receivers")?;
        let backlog = self.store.set_backlog().await?;
        let catalog = self.catalog();
        Ok(catalog
            .set_receivers()
            .iter()
            .map(|r| ReceiverStatus {
                name: r.name.clone(),
                delivery: match r.delivery {
                    SetDelivery::Push { .. } => "push",
                    SetDelivery::Poll => "poll",
                },
                resource_server: r.resource_server.to_string(),
                audience: r.audience.clone(),
                backlog: backlog
                    .iter()
                    .find(|b| b.receiver == r.name)
                    .cloned()
                    .unwrap_or_else(|| SetBacklog {
                        receiver: r.name.clone(),
                        ..SetBacklog::default()
                    }),
            })
            .collect())
    }

    /// Refreshes `kairos_set_pending{receiver}` from the store.
    pub async fn refresh_set_gauges(&self) -> Result<()> {
        for b in self.store.set_backlog().await? {
            self.metrics
                .set_pending
                .get_or_create(&ReceiverLabel {
                    receiver: b.receiver,
                })
                .set(i64::try_from(b.pending).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}

fn outcome_name(o: &SetOutcome) -> &'static str {
    match o {
        SetOutcome::Acked => "acked",
        SetOutcome::Refused { .. } => "refused",
        SetOutcome::Retry { .. } => "retry",
        SetOutcome::Dead { .. } => "dead",
    }
}

enum Push {
    /// The receiver refused this SET (400 with an RFC 8935 error).
    Refused(String),
    Retry(String),
}

/// A receiver's words, made safe to keep: at most 200 characters, no control characters.
fn tame(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// One RFC 8935 attempt. Errors never contain the endpoint or the auth header.
async fn push(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&SecretRef>,
    body: &str,
) -> std::result::Result<(), Push> {
    let mut request = client
        .post(url)
        .header("content-type", "application/secevent+jwt")
        .header("accept", "application/json");
    if let Some(auth) = auth {
        let value = match auth {
            SecretRef::Env(v) => std::env::var(v).map_err(|_| {
                Push::Retry(format!("auth header: environment variable {v} is not set"))
            })?,
            SecretRef::File(f) => std::fs::read_to_string(f)
                .map(|s| s.trim().to_owned())
                .map_err(|e| Push::Retry(format!("auth header: cannot read {f}: {}", e.kind())))?,
        };
        request = request.header("authorization", value);
    }
    let response = request.body(body.to_owned()).send().await.map_err(|e| {
        Push::Retry(if e.is_timeout() {
            "the receiver did not answer in time".to_owned()
        } else {
            format!("cannot reach the receiver: {}", e.without_url())
        })
    })?;
    let status = response.status().as_u16();
    if status == 202 {
        return Ok(());
    }
    if status == 400 {
        let text = response.text().await.unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(err) = v.get("err").and_then(serde_json::Value::as_str)
        {
            let description = v
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            return Err(Push::Refused(tame(&format!("{err}: {description}"))));
        }
        return Err(Push::Retry(
            "the receiver answered HTTP 400 without an RFC 8935 error".into(),
        ));
    }
    Err(Push::Retry(format!(
        "the receiver answered HTTP {status}, not 202 Accepted"
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(receiver: &str, state: SetState, acked_at: Option<i64>, wait_until: i64) -> SetRecord {
        SetRecord {
            jti: format!("j-{receiver}"),
            grant: GrantId::generate(),
            receiver: receiver.into(),
            delivery: SetDeliveryMode::Push,
            body: String::new(),
            state,
            attempts: 0,
            created_at: Timestamp::from_millis(0),
            wait_until: Timestamp::from_millis(wait_until),
            next_at: Timestamp::from_millis(0),
            acked_at: acked_at.map(Timestamp::from_millis),
            last_error: (state == SetState::Failed).then(|| "invalid_audience: no".into()),
        }
    }

    #[test]
    fn waits_while_a_receiver_may_still_answer() {
        let now = Timestamp::from_millis(1_000);
        let rows = [
            row("a", SetState::Acked, Some(500), 5_000),
            row("b", SetState::Pending, None, 5_000),
        ];
        assert_eq!(
            set_status(&rows, now),
            SetStatus::Waiting {
                until: Timestamp::from_millis(5_000)
            }
        );
    }

    #[test]
    fn all_acknowledged() {
        let rows = [row("a", SetState::Acked, Some(500), 5_000)];
        let SetStatus::Done {
            all_acknowledged,
            evidence,
        } = set_status(&rows, Timestamp::from_millis(1_000))
        else {
            unreachable!()
        };
        assert!(all_acknowledged);
        assert!(
            evidence.starts_with("SET acknowledged by a at "),
            "{evidence}"
        );
    }

    #[test]
    fn names_who_did_not_acknowledge_after_the_bound_or_refused() {
        let rows = [
            row("a", SetState::Acked, Some(500), 5_000),
            row("b", SetState::Pending, None, 5_000),
            row("c", SetState::Failed, Some(700), 5_000),
        ];
        let SetStatus::Done {
            all_acknowledged,
            evidence,
        } = set_status(&rows, Timestamp::from_millis(5_000))
        else {
            unreachable!()
        };
        assert!(!all_acknowledged);
        assert!(
            evidence
                .contains("SET NOT acknowledged by b (no acknowledgement within its ack_timeout)"),
            "{evidence}"
        );
        assert!(evidence.contains("c (refused it at "), "{evidence}");
        assert!(evidence.contains("invalid_audience: no"), "{evidence}");
    }
}
