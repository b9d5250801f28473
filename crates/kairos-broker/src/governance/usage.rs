//! Usage monitoring on the broker: recording uses (introspections, database sessions,
//! requests and their addresses), flushing them to the store, and the detectors' pass.
//! The rules are `kairos_governance::usage`; this file loads facts, calls them, writes
//! through the store and raises alerts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kairos_connectors::Connector;
use kairos_domain::{Grant, GrantId, IdentityName, TargetName, Timestamp};
use kairos_governance::usage as rules;
use kairos_store::{GrantFilter, GrantStateFilter, GrantUse};

use super::recorder::{Recorded, UseClient};
use crate::ending::ErrorChain;
use crate::{Broker, Caller, Result};

/// The detectors' thresholds (`[governance]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageLimits {
    pub shared_max_sources: u64,
    pub shared_max_tasks: u64,
    pub shared_window: Duration,
    pub dormant_after: Duration,
    pub held_past_use_share: rules::Share,
}

impl Default for UsageLimits {
    fn default() -> Self {
        Self {
            shared_max_sources: 3,
            shared_max_tasks: 5,
            shared_window: Duration::from_secs(3600),
            dormant_after: Duration::from_secs(30 * 86_400),
            held_past_use_share: rules::Share::DEFAULT,
        }
    }
}

/// What one detectors' pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagePassReport {
    /// Identities newly found dormant (alerted).
    pub dormant: Vec<IdentityName>,
    /// Identities dormant before that requested again (their alert resolved).
    pub awake: Vec<IdentityName>,
    /// Identities newly found shared (alerted).
    pub shared: Vec<IdentityName>,
    /// Grants newly found held past their use (alerted).
    pub held: Vec<GrantId>,
}

/// Alert kinds raised here.
pub mod kinds {
    pub const USE_AFTER_END: &str = "use_after_end";
    pub const UNEXPECTED_SOURCE: &str = "unexpected_source";
    pub const SHARED_IDENTITY: &str = "shared_identity";
    pub const DORMANT_IDENTITY: &str = "dormant_identity";
    pub const HELD_PAST_USE: &str = "held_past_use";
}

/// Grants a detectors' pass looks at for `held_past_use`, at most.
const HELD_PER_PASS: u32 = 1_000;

/// Grants whose use after end this replica already alerted (a replayed token must not
/// cost a store write per attempt), at most.
const AFTER_END_REMEMBERED: usize = 10_000;

impl Broker {
    /// The caller's address from its TCP peer and the trusted proxy header's values (see
    /// [`rules::client_address`] and [`crate::SourceSettings`]).
    pub fn client_address(&self, peer: IpAddr, header_values: &[&str]) -> IpAddr {
        rules::client_address(peer, header_values, &self.settings.sources.trusted_proxies)
    }

    /// Records one use of a grant by `caller` (an introspection that answered active).
    pub(crate) fn note_use(
        &self,
        grant: &GrantId,
        at: Timestamp,
        source: Option<IpAddr>,
        caller: &Caller,
    ) {
        self.record_one(grant, at, source, UseClient::Caller(caller));
    }

    fn record_one(&self, grant: &GrantId, at: Timestamp, source: Option<IpAddr>, c: UseClient) {
        match self.usage.record_use(grant, at, source, c) {
            Recorded::Kept => self.metrics.usage_recorded.inc(),
            Recorded::Dropped => self.metrics.usage_dropped.inc(),
        };
    }

    /// A token of `grant` was presented at `now` though the grant is no longer live:
    /// counted every time, alerted once per grant (`use_after_end`). Never fails the
    /// introspection that found it: a failure to alert is logged.
    pub(crate) async fn note_use_after_end(
        &self,
        grant: &Grant,
        now: Timestamp,
        source: Option<IpAddr>,
        caller: &Caller,
    ) {
        let Some(why) = rules::use_after_end(grant, now) else {
            return;
        };
        self.metrics.use_after_end.inc();
        {
            let mut seen = self
                .after_end_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.contains(&grant.id) {
                return;
            }
            if seen.len() >= AFTER_END_REMEMBERED {
                seen.clear();
            }
            seen.insert(grant.id.clone());
        }
        let message = format!(
            "the token of grant {} ({} for {}) was presented by {} after its grant {why}",
            grant.id,
            grant.entitlement,
            grant.identity,
            caller.principal()
        );
        let data = serde_json::json!({
            "grant": grant.id,
            "identity": grant.identity,
            "entitlement": grant.entitlement,
            "state": why,
            "presented_by": caller.principal().to_string(),
            "source": source.map(|s| kairos_domain::canonical_ip(s).to_string()),
            "at": now.to_rfc3339(),
        });
        if let Err(e) = self
            .usage_alert(
                kinds::USE_AFTER_END,
                &grant.id.to_string(),
                Some(&grant.identity),
                Some(&grant.id),
                message,
                data,
            )
            .await
        {
            tracing::error!(grant = %grant.id, error = %ErrorChain(&e), "use after end seen but its alert could not be raised");
        }
    }

    /// A request of `identity` from `source` at `at`: recorded, and checked against the
    /// identity's `allowed_sources` (outside → `unexpected_source`, once per identity and
    /// address). Failing to alert is logged; the request stands.
    pub(crate) async fn note_request(
        &self,
        identity: &kairos_config::Identity,
        at: Timestamp,
        source: Option<IpAddr>,
    ) {
        self.usage.record_request(&identity.name, at, source);
        self.check_source(identity, source, "a request", at).await;
    }

    async fn check_source(
        &self,
        identity: &kairos_config::Identity,
        source: Option<IpAddr>,
        what: &str,
        at: Timestamp,
    ) {
        if !rules::outside_allowed(&identity.allowed_sources, source) {
            return;
        }
        let Some(ip) = source.map(kairos_domain::canonical_ip) else {
            return;
        };
        let allowed: Vec<String> = identity
            .allowed_sources
            .iter()
            .map(ToString::to_string)
            .collect();
        let subject = format!("{}@{ip}", identity.name);
        let message = format!(
            "{what} of identity {} came from {ip}, outside its allowed_sources ({})",
            identity.name,
            allowed.join(", ")
        );
        let data = serde_json::json!({
            "identity": identity.name,
            "source": ip.to_string(),
            "allowed_sources": allowed,
            "seen_in": what,
            "at": at.to_rfc3339(),
        });
        if let Err(e) = self
            .usage_alert(
                kinds::UNEXPECTED_SOURCE,
                &subject,
                Some(&identity.name),
                None,
                message,
                data,
            )
            .await
        {
            tracing::error!(identity = %identity.name, error = %ErrorChain(&e), "unexpected source seen but its alert could not be raised");
        }
    }

    /// How `caller` may see a grant's usage: as it may see the grant.
    pub async fn grant_usage(&self, caller: &Caller, id: &GrantId) -> Result<Option<GrantUse>> {
        self.get_grant(caller, id).await?;
        Ok(self.store.grant_usage(id).await?)
    }

    /// Writes what the recorder holds, in one store write. Returns how many grants it
    /// wrote usage for. On failure the batch goes back into the recorder for the next try.
    pub async fn usage_flush_pass(&self) -> Result<usize> {
        let batch = self.usage.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let grants = batch.grants.len();
        match self.store.record_usage(batch.clone()).await {
            Ok(()) => Ok(grants),
            Err(e) => {
                let dropped = self.usage.put_back(batch);
                self.metrics.usage_dropped.inc_by(dropped);
                Err(e.into())
            }
        }
    }

    /// The sessions of a database target's managed accounts, recorded as uses of the
    /// grants the accounts back (source: the session's client address) and checked
    /// against their identities' `allowed_sources`. Returns how many sessions matched a
    /// live grant.
    pub(crate) async fn record_sessions(
        &self,
        target: &TargetName,
        connector: &Arc<dyn Connector>,
    ) -> Result<usize> {
        let sessions = connector
            .list_sessions()
            .await
            .map_err(crate::accounts::target_error)?;
        if sessions.is_empty() {
            return Ok(0);
        }
        let live = self
            .store
            .list_grants(&GrantFilter {
                state: Some(GrantStateFilter::Active),
                target: Some(target.clone()),
                ..GrantFilter::default()
            })
            .await?;
        let by_account: std::collections::HashMap<&str, &Grant> = live
            .iter()
            .filter_map(|g| g.account.as_deref().map(|a| (a, g)))
            .collect();
        let now = self.now();
        let catalog = self.catalog();
        let mut matched = 0;
        for session in &sessions {
            let Some(grant) = by_account.get(session.account.as_str()) else {
                continue;
            };
            matched += 1;
            self.record_one(
                &grant.id,
                now,
                session.client_addr,
                UseClient::Session(target.as_str()),
            );
            if let Some(ip) = session.client_addr {
                self.usage.record_source(&grant.identity, ip, now);
            }
            if let Some(identity) = catalog.identity(&grant.identity) {
                let what = format!("a session of account {} on {target}", session.account);
                self.check_source(identity, session.client_addr, &what, now)
                    .await;
            }
        }
        Ok(matched)
    }

    /// The detectors' thresholds in force.
    pub fn usage_limits(&self) -> UsageLimits {
        let catalog = self.catalog();
        let g = catalog.governance();
        UsageLimits {
            shared_max_sources: g.shared_max_sources,
            shared_max_tasks: g.shared_max_tasks,
            shared_window: g.shared_window.as_duration(),
            dormant_after: g.dormant_after.as_duration(),
            held_past_use_share: g.held_past_use_share,
        }
    }

    /// One pass of the usage detectors (idempotent; safe on several replicas at once: each
    /// finding is flagged in the store by a conditional insert, and only the replica that
    /// set the flag raises the alert): dormant identities (and those that woke up),
    /// shared identities, grants held past their use.
    pub async fn usage_pass(&self) -> Result<UsagePassReport> {
        let limits = self.usage_limits();
        let now = self.now();
        let catalog = self.catalog();
        let mut report = UsagePassReport::default();

        // Dormant: no request for dormant_after (from the first time the identity was seen).
        let names: Vec<IdentityName> = catalog.identities().map(|i| i.name.clone()).collect();
        self.store.note_identities(&names, now).await?;
        let flagged: std::collections::BTreeMap<String, Timestamp> = self
            .store
            .flags(kinds::DORMANT_IDENTITY)
            .await?
            .into_iter()
            .map(|f| (f.subject, f.flagged_at))
            .collect();
        for activity in self.store.identity_activity().await? {
            if catalog.identity(&activity.identity).is_none() {
                continue;
            }
            let since = rules::dormant_since(
                activity.first_seen_at,
                activity.last_request_at,
                now,
                limits.dormant_after,
            );
            let subject = activity.identity.to_string();
            match (since, flagged.get(&subject)) {
                (Some(since), None) => {
                    let first = self
                        .store
                        .flag_once(kinds::DORMANT_IDENTITY, &subject, now)
                        .await?;
                    if first {
                        let message = format!(
                            "identity {} has not requested access since {} (dormant after {}); retire it if it is no longer needed",
                            activity.identity,
                            since.to_rfc3339(),
                            rules::humanize(limits.dormant_after)
                        );
                        self.usage_alert(
                            kinds::DORMANT_IDENTITY,
                            &subject,
                            Some(&activity.identity),
                            None,
                            message,
                            serde_json::json!({
                                "identity": activity.identity,
                                "last_request_at": activity.last_request_at.map(Timestamp::to_rfc3339),
                                "first_seen_at": activity.first_seen_at.to_rfc3339(),
                                "dormant_after_secs": limits.dormant_after.as_secs(),
                            }),
                        )
                        .await?;
                        report.dormant.push(activity.identity.clone());
                    }
                }
                (None, Some(_)) => {
                    let first = self.store.unflag(kinds::DORMANT_IDENTITY, &subject).await?;
                    if first {
                        self.usage_resolve(
                            kinds::DORMANT_IDENTITY,
                            &subject,
                            format!(
                                "identity {} requested access again at {}",
                                activity.identity,
                                activity
                                    .last_request_at
                                    .map_or_else(String::new, Timestamp::to_rfc3339)
                            ),
                        )
                        .await?;
                        report.awake.push(activity.identity.clone());
                    }
                }
                _ => {}
            }
        }

        // Shared: many addresses within the window, or many concurrent tasks.
        let window_start = Timestamp::from_millis(
            now.as_millis() - i64::try_from(limits.shared_window.as_millis()).unwrap_or(i64::MAX),
        );
        let shared_limits = rules::SharedLimits {
            max_sources: limits.shared_max_sources,
            max_tasks: limits.shared_max_tasks,
        };
        let mut counts: std::collections::BTreeMap<IdentityName, (u64, u64)> =
            std::collections::BTreeMap::new();
        for (identity, n) in self
            .store
            .identity_source_counts(window_start, limits.shared_max_sources)
            .await?
        {
            counts.entry(identity).or_default().0 = n;
        }
        for (identity, n) in self.store.live_task_counts(limits.shared_max_tasks).await? {
            counts.entry(identity).or_default().1 = n;
        }
        for (identity, (sources, tasks)) in counts {
            let Some(finding) = rules::shared_identity(sources, tasks, shared_limits) else {
                continue;
            };
            // Once per identity and window: a later window may alert again.
            let window_no = now.as_millis()
                / i64::try_from(limits.shared_window.as_millis().max(1)).unwrap_or(i64::MAX);
            let flag = format!("{identity}#{window_no}");
            if !self
                .store
                .flag_once(kinds::SHARED_IDENTITY, &flag, now)
                .await?
            {
                continue;
            }
            let message = format!(
                "identity {identity} looks shared: {}",
                finding.describe(shared_limits, limits.shared_window)
            );
            self.usage_alert(
                kinds::SHARED_IDENTITY,
                identity.as_str(),
                Some(&identity),
                None,
                message,
                serde_json::json!({
                    "identity": identity,
                    "distinct_sources": finding.sources,
                    "concurrent_tasks": finding.tasks,
                    "window_secs": limits.shared_window.as_secs(),
                }),
            )
            .await?;
            report.shared.push(identity);
        }
        self.store
            .prune_identity_sources(Timestamp::from_millis(
                window_start.as_millis().min(now.as_millis() - 86_400_000),
            ))
            .await?;

        // Held past use: an active grant unused for a share of its TTL.
        let share = limits.held_past_use_share;
        for held in self
            .store
            .held_candidates(now, share.permille(), HELD_PER_PASS)
            .await?
        {
            if !rules::held_past_use(
                held.issued_at,
                held.expires_at,
                held.last_used_at,
                now,
                share,
            ) {
                continue;
            }
            let subject = held.grant.to_string();
            if !self
                .store
                .flag_once(kinds::HELD_PAST_USE, &subject, now)
                .await?
            {
                continue;
            }
            let message = format!(
                "grant {} of identity {} (task {}) has not been used since {} — {} of its TTL — and is still held; release it when its task is done",
                held.grant,
                held.identity,
                held.task_ref,
                held.last_used_at
                    .map_or_else(|| "it was issued".to_owned(), Timestamp::to_rfc3339),
                format_share(share)
            );
            self.usage_alert(
                kinds::HELD_PAST_USE,
                &subject,
                Some(&held.identity),
                Some(&held.grant),
                message,
                serde_json::json!({
                    "grant": held.grant,
                    "identity": held.identity,
                    "task_ref": held.task_ref,
                    "issued_at": held.issued_at.to_rfc3339(),
                    "expires_at": held.expires_at.to_rfc3339(),
                    "last_used_at": held.last_used_at.map(Timestamp::to_rfc3339),
                    "share": format_share(share),
                }),
            )
            .await?;
            report.held.push(held.grant);
        }
        Ok(report)
    }

    /// Raises a usage alert of `kind` about `subject` (its dedupe key is
    /// `<kind>:<subject>`, so a repeat while it is unresolved only counts).
    async fn usage_alert(
        &self,
        kind: &str,
        subject: &str,
        identity: Option<&IdentityName>,
        grant: Option<&GrantId>,
        message: String,
        data: serde_json::Value,
    ) -> Result<()> {
        let Some(alert_kind) = kairos_governance::AlertKind::parse(kind) else {
            tracing::error!(kind, subject, %message, "unknown usage alert kind; not raised");
            return Ok(());
        };
        tracing::warn!(kind, subject, grant = ?grant, %message, "usage alert");
        let mut draft =
            kairos_governance::AlertDraft::new(alert_kind, subject, message).detail(data);
        if let Some(identity) = identity {
            draft = draft.identity(identity);
        }
        self.raise_alert(draft).await?;
        Ok(())
    }

    /// Resolves the open usage alert of `kind` about `subject`, saying why.
    async fn usage_resolve(&self, kind: &str, subject: &str, why: String) -> Result<()> {
        if self
            .resolve_alert_key(&format!("{kind}:{subject}"), &why)
            .await?
            .is_some()
        {
            tracing::info!(kind, subject, %why, "usage alert resolved");
        }
        Ok(())
    }
}

fn format_share(share: rules::Share) -> String {
    format!("{}%", f64::from(share.permille()) / 10.0)
}
