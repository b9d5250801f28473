//! DPoP proofs and bindings in the store: every case runs on SQLite (a temporary file)
//! and on PostgreSQL (a database of its own, dropped after), as the main store suite does.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{RequestId, Timestamp};
use kairos_store::{DpopStore, SqlStore};

use kairos_testkit::StoreDb as Db;

/// Opens the case's store.
trait Open {
    async fn open(&self) -> SqlStore;
}

impl Open for Db {
    async fn open(&self) -> SqlStore {
        SqlStore::connect(self.url()).await.unwrap()
    }
}

kairos_testkit::store_suite!(
    a_proof_is_claimed_once_with_its_binding,
    concurrent_claims_of_one_proof_let_exactly_one_through,
    expired_proofs_are_pruned,
);

async fn a_proof_is_claimed_once_with_its_binding(db: Arc<Db>) {
    let store = db.open().await;
    let request = RequestId::generate();
    let until = Timestamp::from_millis(1_000_000);
    assert!(
        store
            .claim_dpop_proof("key-1", until, Some((&request, "jkt-1")))
            .await
            .unwrap()
    );
    assert_eq!(
        store.dpop_binding(&request).await.unwrap().as_deref(),
        Some("jkt-1")
    );
    // The same proof again, for another request: refused, and nothing written.
    let other = RequestId::generate();
    assert!(
        !store
            .claim_dpop_proof("key-1", until, Some((&other, "jkt-2")))
            .await
            .unwrap()
    );
    assert_eq!(store.dpop_binding(&other).await.unwrap(), None);
    // Another proof without a binding.
    assert!(store.claim_dpop_proof("key-2", until, None).await.unwrap());
}

async fn concurrent_claims_of_one_proof_let_exactly_one_through(db: Arc<Db>) {
    let store = Arc::new(db.open().await);
    let until = Timestamp::from_millis(1_000_000);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim_dpop_proof("raced", until, None).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

async fn expired_proofs_are_pruned(db: Arc<Db>) {
    let store = db.open().await;
    store
        .claim_dpop_proof("old", Timestamp::from_millis(1_000), None)
        .await
        .unwrap();
    store
        .claim_dpop_proof("new", Timestamp::from_millis(5_000), None)
        .await
        .unwrap();
    assert_eq!(
        store
            .prune_dpop_proofs(Timestamp::from_millis(500))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_dpop_proofs(Timestamp::from_millis(1_000))
            .await
            .unwrap(),
        1
    );
    // The pruned proof may be claimed again (its iat is out of the window by then, which
    // the proof check refuses on its own); the kept one may not.
    assert!(
        store
            .claim_dpop_proof("old", Timestamp::from_millis(9_000), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_dpop_proof("new", Timestamp::from_millis(9_000), None)
            .await
            .unwrap()
    );
}
