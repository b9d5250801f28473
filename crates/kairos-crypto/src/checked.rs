//! Tokens whose signature has already been verified, by SHA-256 of the whole token.
//!
//! A signature check is a pure function of the token's bytes and the key that checks
//! it, and the costliest step of accepting a token (an ECDSA verification is tens of µs).
//! The same token is presented again and again: a resource server introspects one access
//! token per call it serves, and a workload exchanges its platform token (a Kubernetes
//! service-account token lives for an hour) for every job. So a successful check is
//! remembered with what it concluded; everything that can change with time (`exp`,
//! `nbf`, whether a grant is still active) is still checked by the caller on every use.
//! Failed checks are never remembered.
//!
//! Bounded: when full, entries whose token has expired are dropped, and if that is not
//! enough it starts over (a cold cache costs only the signature checks it saves).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The SHA-256 of a token: the key it is remembered by.
pub(crate) type Digest = [u8; 32];

/// What each remembered check concluded (`V`), with the unix time after which the token
/// is expired anyway.
#[derive(Debug)]
pub(crate) struct Checked<V> {
    entries: Mutex<HashMap<Digest, (V, i64)>>,
    capacity: usize,
}

impl<V: Clone> Checked<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn digest(token: &str) -> Digest {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0_u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Digest, (V, i64)>> {
        // Every critical section is a single map operation: a panic elsewhere cannot
        // leave the map half-changed.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the check of the token with `digest` concluded, if it is remembered.
    pub(crate) fn get(&self, digest: &Digest) -> Option<V> {
        self.entries().get(digest).map(|(value, _)| value.clone())
    }

    /// Remembers a successful check of a token that is expired from `expires` on.
    pub(crate) fn insert(&self, digest: Digest, value: V, expires: i64, now_unix_secs: i64) {
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, expires)| *expires > now_unix_secs);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(digest, (value, expires));
    }

    pub(crate) fn clear(&self) {
        self.entries().clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = Checked<&'static str>;

    #[test]
    fn remembers_by_the_whole_token() {
        let cache = Cache::new(4);
        cache.insert(Cache::digest("a.b.c"), "abc", 100, 0);
        assert_eq!(cache.get(&Cache::digest("a.b.c")), Some("abc"));
        assert_eq!(cache.get(&Cache::digest("a.b.d")), None);
        assert_eq!(cache.get(&Cache::digest("a.b.c ")), None);
        cache.clear();
        assert_eq!(cache.get(&Cache::digest("a.b.c")), None);
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first_then_starts_over() {
        let cache = Cache::new(3);
        cache.insert(Cache::digest("old"), "old", 10, 0);
        cache.insert(Cache::digest("live-1"), "live-1", 100, 0);
        cache.insert(Cache::digest("live-2"), "live-2", 100, 0);
        // Full at 50: only the expired entry goes.
        cache.insert(Cache::digest("new"), "new", 100, 50);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&Cache::digest("old")), None);
        assert_eq!(cache.get(&Cache::digest("live-1")), Some("live-1"));
        assert_eq!(cache.get(&Cache::digest("new")), Some("new"));
        // Full of live entries: it starts over with the new one.
        cache.insert(Cache::digest("newer"), "newer", 100, 60);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&Cache::digest("newer")), Some("newer"));
    }
}
