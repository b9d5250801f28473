//! Notifications: the dispatcher turns audit records into outbox rows, the deliverer sends
//! them. Formats and routing are `kairos-notify`'s (pure); this module gathers the facts,
//! writes through the store and speaks HTTP to the channels.
//!
//! The audit record is the durable event (written in the transaction of the change it
//! describes), so the grant path is untouched: the dispatcher reads records after the
//! stored watermark and, in one store transaction, writes their outbox rows and moves the
//! watermark by compare-and-set from the value it read — with several replicas each
//! record is dispatched once, and the loser writes nothing. Delivery claims due rows with
//! a lease, so a crashed replica's rows are taken over; each row carries its idempotency
//! key (`webhook-id`), the same on every attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_config::{Catalog, NotifyChannel, SecretRef, UrlRef};
use kairos_crypto::webhook::WebhookSecret;
use kairos_domain::{AuditKind, AuditRecord, EntitlementName, GrantId, IdentityName, RequestId};
use kairos_notify::{ChannelKind, Event, EventKind, Facts, Message, Route};
use kairos_store::{
    AttemptOutcome, AuditFilter, NewNotification, Notification, NotificationFilter, Role,
};

use crate::auth::Caller;
use crate::metrics::ChannelLabel;
use crate::{Broker, BrokerError, Result};

/// Audit records one dispatcher pass reads, at most.
const RECORDS_PER_PASS: u32 = 500;
/// Notifications one delivery pass claims, at most.
const CLAIM_PER_PASS: u32 = 20;
/// Channels one delivery pass serves at the same time, at most (one attempt in flight
/// per channel, so also the most attempts in flight).
const CHANNELS_AT_ONCE: usize = 8;
/// How long a claimed notification is held before another replica may take it over (a
/// crashed deliverer's rows): twice the attempt's timeout and this.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Wait before the next attempt after `attempts` failures: `unit`, doubling, capped,
/// plus up to a quarter at random so that many failed rows do not retry in step.
pub fn notify_backoff(unit: Duration, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let base = unit.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    let quarter = u64::try_from(base.as_millis() / 4).unwrap_or(0);
    let jitter = if quarter == 0 {
        0
    } else {
        let r = uuid::Uuid::new_v4().as_u128();
        u64::try_from(r % u128::from(quarter)).unwrap_or(0)
    };
    base + Duration::from_millis(jitter)
}

impl Broker {
    /// One dispatcher pass: audit records after the watermark become outbox rows for the
    /// channels whose routes take them. Returns how many rows it wrote (0 when another
    /// replica dispatched the same records first). With no channel configured it reads no
    /// record: the watermark moves to the chain's end.
    pub async fn dispatch_notifications(&self) -> Result<usize> {
        let from = self.store.notify_watermark().await?;
        let catalog = self.catalog();
        let routes: Vec<Route> = catalog
            .notify_channels()
            .iter()
            .map(|c| c.route.clone())
            .collect();
        if routes.is_empty() {
            // No channel would take anything: the watermark moves to the chain's end
            // without reading the records, so a channel added later starts from there.
            let to = self.store.audit_last_seq().await?;
            if to > from {
                self.store
                    .dispatch_notifications(from, to, Vec::new(), self.now())
                    .await?;
            }
            return Ok(0);
        }
        let page = self.store.audit_page(from, RECORDS_PER_PASS).await?;
        let Some(last) = page.last() else {
            return Ok(0);
        };
        let to = last.seq;
        let mut rows = Vec::new();
        for record in &page {
            let Some(kind) = kairos_notify::candidate(record, self.settings.revocation_alarm_after)
            else {
                continue;
            };
            if !routes.iter().any(|r| r.events.contains(&kind)) {
                continue;
            }
            let facts = self.notify_facts(&catalog, record, kind).await?;
            let Some(event) = Event::build(record, kind, &facts, &self.settings.issuer_url) else {
                continue;
            };
            for route in kairos_notify::routes_for(&event, &routes) {
                rows.push(NewNotification {
                    id: kairos_notify::message_id(record.seq, &route.channel),
                    channel: route.channel.clone(),
                    event: kind.as_str().to_owned(),
                    audit_seq: record.seq,
                    body: kairos_notify::body_for(route.kind, &event),
                });
            }
        }
        let n = rows.len();
        let won = self
            .store
            .dispatch_notifications(from, to, rows, self.now())
            .await?;
        Ok(if won { n } else { 0 })
    }

    /// What the catalog and the store know about a record's subject.
    async fn notify_facts(
        &self,
        catalog: &Catalog,
        record: &AuditRecord,
        kind: EventKind,
    ) -> Result<Facts> {
        let mut facts = Facts::default();
        let mut entitlement: Option<String> = None;
        if let Some(id) = record.request_id.as_deref().and_then(RequestId::parse)
            && let Some(request) = self.store.get_request(&id).await?
        {
            entitlement = Some(request.entitlement.to_string());
            facts.reason = Some(request.task.reason.clone());
        } else if let Some(id) = record.grant_id.as_deref().and_then(GrantId::parse)
            && let Some(grant) = self.store.get_grant(&id).await?
        {
            entitlement = Some(grant.entitlement.to_string());
            facts.reason = Some(grant.task.reason.clone());
        }
        if let Some(e) = entitlement
            .as_deref()
            .and_then(|e| EntitlementName::parse(e).ok())
            .and_then(|e| catalog.entitlement(&e))
        {
            facts.tier = Some(e.tier.as_str().to_owned());
            facts.approval_team = e.approval_team.as_ref().map(ToString::to_string);
        }
        facts.entitlement = entitlement;
        if let Some(identity) = record
            .identity
            .as_deref()
            .and_then(|i| IdentityName::parse(i).ok())
            .and_then(|i| catalog.identity(&i))
        {
            facts.owner_team = Some(identity.owner.to_string());
        }
        if kind == EventKind::RevocationRecovered
            && let Some(grant) = &record.grant_id
        {
            let alarm = u64::from(self.settings.revocation_alarm_after);
            let records = self
                .store
                .list_audit(&AuditFilter {
                    grant_id: Some(grant.clone()),
                    ..AuditFilter::default()
                })
                .await?;
            facts.had_alarmed = records.iter().any(|r| {
                r.kind == AuditKind::RevocationFailed
                    && serde_json::from_str::<serde_json::Value>(&r.data)
                        .ok()
                        .and_then(|d| d.get("attempts").and_then(serde_json::Value::as_u64))
                        .is_some_and(|a| a >= alarm)
            });
        }
        Ok(facts)
    }

    /// One delivery pass: claims due notifications and sends each once. Channels are
    /// served concurrently (at most [`CHANNELS_AT_ONCE`] at a time), each channel's messages
    /// one after another, oldest first, so a receiver that stalls until the timeout holds
    /// up only its own channel. An attempt that could outlast the claim's lease is not
    /// started (the row is due again when the lease ends), so a message is never sent by
    /// this replica after another may have taken it over. Returns how many it attempted.
    pub async fn deliver_notifications(
        self: &Arc<Self>,
        client: &reqwest::Client,
    ) -> Result<usize> {
        let settings = &self.settings.notify;
        let claim = uuid::Uuid::new_v4().simple().to_string();
        let lease = settings.timeout.saturating_mul(2) + LEASE_MARGIN;
        let claimed = self
            .store
            .claim_notifications(
                self.now(),
                CLAIM_PER_PASS,
                i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                &claim,
            )
            .await?;
        // Claimed oldest due first; grouping keeps that order within a channel.
        let mut by_channel: BTreeMap<String, Vec<Notification>> = BTreeMap::new();
        for n in claimed {
            by_channel.entry(n.channel.clone()).or_default().push(n);
        }
        let claim: Arc<str> = Arc::from(claim);
        crate::fanout::per_destination(by_channel, CHANNELS_AT_ONCE, |messages| {
            let (broker, client, claim) = (Arc::clone(self), client.clone(), Arc::clone(&claim));
            async move { broker.deliver_channel(&client, messages, &claim).await }
        })
        .await
    }

    /// One channel's share of a delivery pass, in order. Returns how many it attempted.
    async fn deliver_channel(
        &self,
        client: &reqwest::Client,
        messages: Vec<Notification>,
        claim: &str,
    ) -> Result<usize> {
        let settings = &self.settings.notify;
        let mut attempted = 0;
        for n in &messages {
            // The lease ends at next_at (set by the claim); an attempt takes up to the timeout.
            if self.now().plus(settings.timeout) > n.next_at {
                tracing::debug!(notification = %n.id, "not enough of the lease left for an attempt; due again when it ends");
                continue;
            }
            attempted += 1;
            let catalog = self.catalog();
            let channel = catalog
                .notify_channels()
                .iter()
                .find(|c| c.route.channel == n.channel);
            let sent = match channel {
                Some(c) => send(client, c, n, self.now().as_millis() / 1000).await,
                None => Err(format!(
                    "channel {} is no longer in the configuration",
                    n.channel
                )),
            };
            let now = self.now();
            let label = ChannelLabel {
                channel: n.channel.clone(),
            };
            let outcome = match sent {
                Ok(()) => {
                    self.metrics
                        .notifications_delivered
                        .get_or_create(&label)
                        .inc();
                    AttemptOutcome::Delivered
                }
                Err(error) => {
                    self.metrics
                        .notifications_failed
                        .get_or_create(&label)
                        .inc();
                    if now.since(n.created_at) >= settings.dead_after {
                        self.metrics
                            .notifications_dead_total
                            .get_or_create(&label)
                            .inc();
                        tracing::error!(notification = %n.id, channel = %n.channel, %error,
                            "notification dead-lettered: undelivered for longer than dead_after");
                        AttemptOutcome::Dead { error }
                    } else {
                        let wait = notify_backoff(settings.backoff_unit, n.attempts + 1);
                        tracing::warn!(notification = %n.id, channel = %n.channel, %error,
                            retry_in_ms = wait.as_millis() as u64, "notification delivery failed; will retry");
                        AttemptOutcome::Retry {
                            error,
                            retry_at: now.plus(wait),
                        }
                    }
                }
            };
            if !self
                .store
                .finish_notification(&n.id, claim, &outcome, now)
                .await?
            {
                tracing::warn!(notification = %n.id, "notification's lease ended during its attempt; another replica holds it now");
            }
        }
        Ok(attempted)
    }

    /// Refreshes the backlog and dead gauges from the store.
    pub async fn refresh_notification_gauges(&self) -> Result<()> {
        let (pending, dead) = self.store.notification_backlog().await?;
        self.metrics
            .notifications_backlog
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.metrics
            .notifications_dead
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Notifications for admins, operators and auditors, newest first.
    pub async fn notifications(
        &self,
        caller: &Caller,
        filter: &NotificationFilter,
    ) -> Result<Vec<Notification>> {
        caller.require_role(&[Role::Operator, Role::Auditor], "read notifications")?;
        Ok(self.store.list_notifications(filter).await?)
    }

    /// Sends a dead notification again (admins and operators).
    pub async fn retry_notification(&self, caller: &Caller, id: &str) -> Result<Notification> {
        caller.require_role(&[Role::Operator], "retry notifications")?;
        let n = self.store.retry_notification(id, self.now()).await?;
        tracing::info!(notification = %n.id, by = %caller.principal(), "dead notification queued again");
        Ok(n)
    }
}

/// Reads a secret or address reference of the server.
fn read_ref(
    what: &str,
    env: Option<&str>,
    file: Option<&str>,
) -> std::result::Result<String, String> {
    match (env, file) {
        (Some(var), _) => {
            std::env::var(var).map_err(|_| format!("{what}: environment variable {var} is not set"))
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("{what}: cannot read {path}: {}", e.kind())),
        (None, None) => Err(format!("{what}: nothing configured")),
    }
}

/// One attempt; the error says what failed without the address (it may be a secret) or
/// any secret.
async fn send(
    client: &reqwest::Client,
    channel: &NotifyChannel,
    n: &Notification,
    timestamp: i64,
) -> std::result::Result<(), String> {
    let url = match &channel.url {
        UrlRef::Url(u) => u.clone(),
        UrlRef::Env(v) => read_ref("channel URL", Some(v), None)?,
        UrlRef::File(f) => read_ref("channel URL", None, Some(f))?,
    };
    kairos_config::check_channel_url(&url).map_err(|e| format!("{e} (as configured)"))?;
    let message = Message {
        id: n.id.clone(),
        body: n.body.clone(),
    };
    let mut request = client.post(&url).header("content-type", "application/json");
    if channel.route.kind == ChannelKind::Webhook {
        let text = match &channel.secret {
            Some(SecretRef::Env(v)) => read_ref("webhook secret", Some(v), None)?,
            Some(SecretRef::File(f)) => read_ref("webhook secret", None, Some(f))?,
            None => return Err("the webhook channel has no secret".into()),
        };
        let secret = WebhookSecret::parse(&text).map_err(|e| e.to_string())?;
        for (name, value) in kairos_notify::webhook_headers(&message, timestamp, Some(&secret)) {
            request = request.header(name, value);
        }
    } else {
        // Slack ignores them; a proxy in between may still use the idempotency key.
        for (name, value) in kairos_notify::webhook_headers(&message, timestamp, None) {
            request = request.header(name, value);
        }
    }
    let response = request.body(message.body).send().await.map_err(|e| {
        if e.is_timeout() {
            "the receiver did not answer in time".to_owned()
        } else {
            format!("cannot reach the receiver: {}", e.without_url())
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

/// The client deliveries use: `timeout` per attempt, no redirects (a webhook that
/// redirects is misconfigured, and following one could leak the body elsewhere).
pub fn http_client(timeout: Duration) -> std::result::Result<reqwest::Client, BrokerError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(BrokerError::internal)
}
