//! The usage recorder: uses of grants and requests of identities, aggregated in memory and
//! written to the store in one batch about once a second (and at shutdown).
//!
//! Introspection is the hottest read Kairos serves, so recording a use there costs one
//! short lock of one of [`SHARDS`] maps and, for a grant already in it, no allocation:
//! first and last use, a count, the last address and the last client, per grant. The maps
//! are bounded ([`MAX_GRANTS`] grants between two flushes); past that a use is dropped and
//! counted (`kairos_usage_dropped_total`) and the flusher is woken early.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use kairos_domain::{GrantId, IdentityName, Timestamp, canonical_ip};
use kairos_store::{GrantUse, IdentityRequests, IdentitySource, UsageBatch};

use crate::Caller;

/// Independent maps, so that concurrent introspections rarely wait for one another.
const SHARDS: usize = 16;

/// Grants remembered between two flushes, at most (all shards together).
pub(crate) const MAX_GRANTS: usize = 200_000;

/// Identities (and identity–address pairs) remembered between two flushes, at most.
const MAX_IDENTITIES: usize = 100_000;

/// Who used a grant, as recorded in `last_client`.
#[derive(Debug, Clone, Copy)]
pub enum UseClient<'a> {
    /// The caller that introspected its token.
    Caller(&'a Caller),
    /// A session of its account, seen on this target at reconcile.
    Session(&'a str),
}

impl UseClient<'_> {
    fn matches(&self, recorded: &str) -> bool {
        match self {
            Self::Caller(Caller::User(u)) => recorded
                .strip_prefix("user:")
                .is_some_and(|n| n == u.name.as_str()),
            Self::Caller(Caller::Workload { identity }) => recorded
                .strip_prefix("workload:")
                .is_some_and(|n| n == identity.as_str()),
            Self::Session(target) => recorded
                .strip_prefix("session@")
                .is_some_and(|t| t == *target),
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Caller(c) => c.principal().to_string(),
            Self::Session(target) => format!("session@{target}"),
        }
    }
}

#[derive(Debug)]
struct GrantAgg {
    first_at: Timestamp,
    last_at: Timestamp,
    uses: u64,
    last_source: Option<IpAddr>,
    last_client: Option<String>,
}

#[derive(Debug, Default)]
struct Identities {
    requests: HashMap<IdentityName, (Timestamp, Timestamp, Option<IpAddr>)>,
    sources: HashMap<(IdentityName, IpAddr), (Timestamp, Timestamp)>,
}

/// The in-memory side of usage monitoring (see the module docs).
#[derive(Debug)]
pub struct UsageRecorder {
    grants: Vec<Mutex<HashMap<GrantId, GrantAgg>>>,
    identities: Mutex<Identities>,
    /// Woken when a map fills up, so the flusher does not wait for its next tick.
    pub(crate) full: tokio::sync::Notify,
}

/// What [`UsageRecorder::record_use`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// The map was full: the use was not recorded.
    Dropped,
}

fn shard_of(id: &GrantId) -> usize {
    // Grant ids end in random hex digits.
    id.as_str()
        .as_bytes()
        .last()
        .map_or(0, |b| usize::from(*b) % SHARDS)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for UsageRecorder {
    fn default() -> Self {
        Self {
            grants: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            identities: Mutex::new(Identities::default()),
            full: tokio::sync::Notify::new(),
        }
    }
}

impl UsageRecorder {
    /// One use of a grant at `at`, from `source`, by `client`.
    pub fn record_use(
        &self,
        grant: &GrantId,
        at: Timestamp,
        source: Option<IpAddr>,
        client: UseClient<'_>,
    ) -> Recorded {
        let source = source.map(canonical_ip);
        let mut map = lock(&self.grants[shard_of(grant)]);
        if let Some(agg) = map.get_mut(grant) {
            agg.uses = agg.uses.saturating_add(1);
            if at < agg.first_at {
                agg.first_at = at;
            }
            if at >= agg.last_at {
                agg.last_at = at;
                if source.is_some() {
                    agg.last_source = source;
                }
                if !agg
                    .last_client
                    .as_deref()
                    .is_some_and(|c| client.matches(c))
                {
                    agg.last_client = Some(client.text());
                }
            }
            return Recorded::Kept;
        }
        if map.len() >= MAX_GRANTS / SHARDS {
            drop(map);
            self.full.notify_one();
            return Recorded::Dropped;
        }
        map.insert(
            grant.clone(),
            GrantAgg {
                first_at: at,
                last_at: at,
                uses: 1,
                last_source: source,
                last_client: Some(client.text()),
            },
        );
        Recorded::Kept
    }

    /// A request of `identity` at `at` from `source`.
    pub(crate) fn record_request(
        &self,
        identity: &IdentityName,
        at: Timestamp,
        source: Option<IpAddr>,
    ) {
        let source = source.map(canonical_ip);
        let mut ids = lock(&self.identities);
        let full = ids.requests.len() >= MAX_IDENTITIES;
        match ids.requests.get_mut(identity) {
            Some((first, last, last_source)) => {
                *first = (*first).min(at);
                if at >= *last {
                    *last = at;
                    *last_source = source.or(*last_source);
                }
            }
            None if !full => {
                ids.requests.insert(identity.clone(), (at, at, source));
            }
            None => self.full.notify_one(),
        }
        if let Some(ip) = source {
            Self::seen_in(&mut ids, identity, ip, at, &self.full);
        }
    }

    /// `identity` seen at `source` at `at` (a session of one of its accounts).
    pub(crate) fn record_source(&self, identity: &IdentityName, source: IpAddr, at: Timestamp) {
        let mut ids = lock(&self.identities);
        Self::seen_in(&mut ids, identity, canonical_ip(source), at, &self.full);
    }

    fn seen_in(
        ids: &mut Identities,
        identity: &IdentityName,
        ip: IpAddr,
        at: Timestamp,
        full: &tokio::sync::Notify,
    ) {
        let key = (identity.clone(), ip);
        if let Some((first, last)) = ids.sources.get_mut(&key) {
            *first = (*first).min(at);
            *last = (*last).max(at);
        } else if ids.sources.len() < MAX_IDENTITIES {
            ids.sources.insert(key, (at, at));
        } else {
            full.notify_one();
        }
    }

    /// Everything recorded since the last take, as one batch; the maps are left empty.
    pub(crate) fn take(&self) -> UsageBatch {
        let mut batch = UsageBatch::default();
        for shard in &self.grants {
            let taken = std::mem::take(&mut *lock(shard));
            batch
                .grants
                .extend(taken.into_iter().map(|(grant, a)| GrantUse {
                    grant,
                    first_at: a.first_at,
                    last_at: a.last_at,
                    uses: a.uses,
                    last_source: a.last_source,
                    last_client: a.last_client,
                }));
        }
        let ids = std::mem::take(&mut *lock(&self.identities));
        batch.requests = ids
            .requests
            .into_iter()
            .map(
                |(identity, (first_at, last_at, last_source))| IdentityRequests {
                    identity,
                    first_at,
                    last_at,
                    last_source,
                },
            )
            .collect();
        batch.sources = ids
            .sources
            .into_iter()
            .map(|((identity, source), (first_at, last_at))| IdentitySource {
                identity,
                source,
                first_at,
                last_at,
            })
            .collect();
        batch
    }

    /// Puts back a batch that could not be written, merged with what arrived since (within
    /// the bounds; the rest is dropped and the count returned).
    pub(crate) fn put_back(&self, batch: UsageBatch) -> u64 {
        let mut dropped = 0u64;
        for u in batch.grants {
            let mut map = lock(&self.grants[shard_of(&u.grant)]);
            let room = map.len() < MAX_GRANTS / SHARDS;
            match map.get_mut(&u.grant) {
                Some(agg) => {
                    agg.uses = agg.uses.saturating_add(u.uses);
                    agg.first_at = agg.first_at.min(u.first_at);
                    if u.last_at > agg.last_at {
                        agg.last_at = u.last_at;
                        agg.last_source = u.last_source.or(agg.last_source);
                        agg.last_client = u.last_client.or(agg.last_client.take());
                    }
                }
                None if room => {
                    map.insert(
                        u.grant,
                        GrantAgg {
                            first_at: u.first_at,
                            last_at: u.last_at,
                            uses: u.uses,
                            last_source: u.last_source,
                            last_client: u.last_client,
                        },
                    );
                }
                None => dropped = dropped.saturating_add(u.uses),
            }
        }
        for r in batch.requests {
            self.record_request(&r.identity, r.first_at, None);
            self.record_request(&r.identity, r.last_at, r.last_source);
        }
        for s in batch.sources {
            self.record_source(&s.identity, s.source, s.first_at);
            self.record_source(&s.identity, s.source, s.last_at);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn workload() -> Caller {
        Caller::Workload {
            identity: IdentityName::parse("job").unwrap(),
        }
    }

    #[test]
    fn uses_of_a_grant_aggregate_into_one_row() {
        let r = UsageRecorder::default();
        let g = GrantId::generate();
        let w = workload();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(
            r.record_use(&g, t(20), Some(a), UseClient::Caller(&w)),
            Recorded::Kept
        );
        r.record_use(&g, t(10), None, UseClient::Caller(&w));
        r.record_use(&g, t(30), Some(b), UseClient::Session("db"));
        let batch = r.take();
        assert_eq!(batch.grants.len(), 1);
        let u = &batch.grants[0];
        assert_eq!((u.first_at, u.last_at, u.uses), (t(10), t(30), 3));
        assert_eq!(u.last_source, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(u.last_client.as_deref(), Some("session@db"));
        assert!(r.take().is_empty(), "take empties the maps");
    }

    #[test]
    fn requests_and_sources_per_identity() {
        let r = UsageRecorder::default();
        let job = IdentityName::parse("job").unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        r.record_request(&job, t(5), Some(a));
        r.record_request(&job, t(7), None);
        r.record_source(&job, "10.0.0.9".parse().unwrap(), t(6));
        let batch = r.take();
        assert_eq!(batch.requests.len(), 1);
        let req = &batch.requests[0];
        assert_eq!(
            (req.first_at, req.last_at, req.last_source),
            (t(5), t(7), Some(a))
        );
        assert_eq!(batch.sources.len(), 2);
    }

    #[test]
    fn a_failed_flush_is_put_back_and_merged() {
        let r = UsageRecorder::default();
        let g = GrantId::generate();
        let w = workload();
        r.record_use(&g, t(10), None, UseClient::Caller(&w));
        let batch = r.take();
        r.record_use(&g, t(20), None, UseClient::Caller(&w));
        assert_eq!(r.put_back(batch), 0);
        let merged = r.take();
        assert_eq!(merged.grants.len(), 1);
        assert_eq!(
            (
                merged.grants[0].first_at,
                merged.grants[0].last_at,
                merged.grants[0].uses
            ),
            (t(10), t(20), 2)
        );
    }
}
