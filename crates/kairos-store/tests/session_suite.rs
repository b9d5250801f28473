//! Console sessions in the store: every case runs on SQLite (a temporary file) and on
//! PostgreSQL (a database of its own, dropped after), as the main store suite does.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{AuditDraft, AuditKind, Principal, Timestamp, UserName, verify_chain};
use kairos_store::{AuditFilter, ConsoleSession, SessionStore, SqlStore, Store};

// ---- harness (kairos-testkit's store suite) ---------------------------------------------

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
    a_session_is_stored_by_its_hash_touched_forward_and_deleted_once,
    ended_sessions_are_swept,
);

fn session(hash: &str, created: i64, expires: i64) -> ConsoleSession {
    ConsoleSession {
        id_hash: hash.to_owned(),
        user: UserName::parse("alice".to_owned()).unwrap(),
        token_id: Some("tok1".into()),
        csrf_secret: "csrf-secret".into(),
        created_at: Timestamp::from_millis(created),
        expires_at: Timestamp::from_millis(expires),
        last_seen_at: Timestamp::from_millis(created),
    }
}

fn actor() -> Principal {
    Principal::User(UserName::parse("alice".to_owned()).unwrap())
}

async fn kinds(store: &SqlStore) -> Vec<String> {
    store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.kind.as_str().to_owned())
        .collect()
}

async fn a_session_is_stored_by_its_hash_touched_forward_and_deleted_once(db: Arc<Db>) {
    let store = db.open().await;
    let s = session("h1", 1_000, 100_000);
    store
        .insert_session(
            &s,
            vec![AuditDraft::new(AuditKind::ConsoleSignedIn, actor())],
        )
        .await
        .unwrap();
    assert_eq!(store.get_session("h1").await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_session("h2").await.unwrap(), None);
    // A second session with the same hash is refused; nothing of it is written.
    assert!(store.insert_session(&s, vec![]).await.is_err());
    store
        .touch_session("h1", Timestamp::from_millis(5_000))
        .await
        .unwrap();
    store
        .touch_session("h1", Timestamp::from_millis(3_000))
        .await
        .unwrap();
    let seen = store.get_session("h1").await.unwrap().unwrap().last_seen_at;
    assert_eq!(
        seen,
        Timestamp::from_millis(5_000),
        "last seen never moves back"
    );
    let out = vec![AuditDraft::new(AuditKind::ConsoleSignedOut, actor())];
    assert!(store.delete_session("h1", out.clone()).await.unwrap());
    assert!(!store.delete_session("h1", out).await.unwrap());
    assert_eq!(store.get_session("h1").await.unwrap(), None);
    // One sign-in and one sign-out on the chain: the second delete wrote nothing.
    let kinds = kinds(&store).await;
    assert_eq!(
        kinds,
        ["console_signed_out", "console_signed_in"],
        "newest first"
    );
    let records = store.audit_page(0, 100).await.unwrap();
    assert!(verify_chain(&records).is_ok());
}

async fn ended_sessions_are_swept(db: Arc<Db>) {
    let store = db.open().await;
    store
        .insert_session(&session("live", 1_000, 100_000), vec![])
        .await
        .unwrap();
    store
        .insert_session(&session("expired", 1_000, 9_000), vec![])
        .await
        .unwrap();
    store
        .insert_session(&session("idle", 1_000, 100_000), vec![])
        .await
        .unwrap();
    store
        .touch_session("live", Timestamp::from_millis(8_000))
        .await
        .unwrap();
    let swept = store
        .delete_ended_sessions(
            Timestamp::from_millis(10_000),
            Timestamp::from_millis(5_000),
        )
        .await
        .unwrap();
    assert_eq!(swept, 2);
    assert!(store.get_session("live").await.unwrap().is_some());
    assert!(store.get_session("expired").await.unwrap().is_none());
    assert!(store.get_session("idle").await.unwrap().is_none());
    // Nothing more has ended: nothing is written.
    let swept = store
        .delete_ended_sessions(
            Timestamp::from_millis(10_000),
            Timestamp::from_millis(5_000),
        )
        .await
        .unwrap();
    assert_eq!(swept, 0);
}
