//! The notification outbox in the store: every case runs on SQLite (a temporary file) and
//! on PostgreSQL (a database of its own, dropped after), with kairos-testkit's harness.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use kairos_domain::Timestamp;
use kairos_store::{
    AttemptOutcome, NewNotification, Notification, NotificationFilter, NotificationState,
    NotifyStore, SqlStore, StoreError,
};

// ---- harness (kairos-testkit's store suite) ---------------------------------------------

use kairos_testkit::StoreDb as Db;

async fn open(db: &Db) -> SqlStore {
    SqlStore::connect(db.url()).await.unwrap()
}

kairos_testkit::store_suite!(
    the_watermark_moves_by_compare_and_set_and_a_loser_writes_nothing,
    racing_dispatchers_write_each_message_once,
    a_claim_holds_until_its_lease_ends_and_only_its_holder_finishes,
    racing_claimers_never_share_a_message,
    a_failed_attempt_is_due_again_at_its_backoff,
    dead_messages_wait_for_a_retry,
    listings_filter_by_state_and_channel_newest_first,
);

// ---- fixtures --------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;
const LEASE: i64 = 21_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn row(seq: i64, channel: &str) -> NewNotification {
    NewNotification {
        id: format!("kairos-{seq}-{channel}"),
        channel: channel.into(),
        event: "request_pending".into(),
        audit_seq: seq,
        body: format!("{{\"seq\":{seq}}}"),
    }
}

async fn all(s: &SqlStore) -> Vec<Notification> {
    list(s, None, None, 1000).await
}

async fn list(
    s: &SqlStore,
    state: Option<NotificationState>,
    channel: Option<&str>,
    limit: u32,
) -> Vec<Notification> {
    s.list_notifications(&NotificationFilter {
        state,
        channel: channel.map(str::to_owned),
        limit,
    })
    .await
    .unwrap()
}

fn ids(list: &[Notification]) -> Vec<&str> {
    list.iter().map(|n| n.id.as_str()).collect()
}

async fn get(s: &SqlStore, id: &str) -> Notification {
    s.get_notification(id).await.unwrap().unwrap()
}

/// Puts `rows` in the outbox at `now` past the current watermark.
async fn dispatch(s: &SqlStore, rows: Vec<NewNotification>, now: Timestamp) {
    let from = s.notify_watermark().await.unwrap();
    let to = rows.iter().map(|r| r.audit_seq).max().unwrap_or(from);
    assert!(s.dispatch_notifications(from, to, rows, now).await.unwrap());
}

async fn claim(s: &SqlStore, now: Timestamp, limit: u32, claim: &str) -> Vec<Notification> {
    s.claim_notifications(now, limit, LEASE, claim)
        .await
        .unwrap()
}

// ---- cases -----------------------------------------------------------------------------

async fn the_watermark_moves_by_compare_and_set_and_a_loser_writes_nothing(db: Arc<Db>) {
    let s = open(&db).await;
    let w0 = s.notify_watermark().await.unwrap();
    // Two dispatchers read the same watermark and built rows for the same records.
    assert!(
        s.dispatch_notifications(
            w0,
            w0 + 2,
            vec![row(w0 + 1, "ops"), row(w0 + 2, "ops")],
            at(0)
        )
        .await
        .unwrap()
    );
    assert!(
        !s.dispatch_notifications(
            w0,
            w0 + 3,
            vec![row(w0 + 1, "chat"), row(w0 + 3, "ops")],
            at(1)
        )
        .await
        .unwrap(),
        "the second read a stale watermark"
    );
    assert_eq!(s.notify_watermark().await.unwrap(), w0 + 2);
    assert_eq!(
        ids(&all(&s).await),
        [
            format!("kairos-{}-ops", w0 + 2),
            format!("kairos-{}-ops", w0 + 1)
        ],
        "the loser wrote nothing"
    );
    // A row whose id exists is skipped; the rest is written and the watermark moves.
    let mut again = row(w0 + 2, "ops");
    again.body = "{\"changed\":true}".into();
    assert!(
        s.dispatch_notifications(w0 + 2, w0 + 3, vec![again, row(w0 + 3, "ops")], at(2))
            .await
            .unwrap()
    );
    assert_eq!(s.notify_watermark().await.unwrap(), w0 + 3);
    let kept = get(&s, &format!("kairos-{}-ops", w0 + 2)).await;
    assert_eq!(
        kept.body,
        format!("{{\"seq\":{}}}", w0 + 2),
        "first body kept"
    );
    assert_eq!(kept.created_at, at(0));
    let new = get(&s, &format!("kairos-{}-ops", w0 + 3)).await;
    assert_eq!(
        (new.state, new.attempts, new.created_at, new.next_at),
        (NotificationState::Pending, 0, at(2), at(2)),
        "due at once"
    );
    assert_eq!(s.notification_backlog().await.unwrap(), (3, 0));
}

async fn racing_dispatchers_write_each_message_once(db: Arc<Db>) {
    let s = Arc::new(open(&db).await);
    let w0 = s.notify_watermark().await.unwrap();
    let mut handles = Vec::new();
    for d in 0..6 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            // Each read the same watermark; each built the same ten rows.
            let rows = (1..=10).map(|i| row(w0 + i, "ops")).collect();
            s.dispatch_notifications(w0, w0 + 10, rows, at(d))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for h in handles {
        won += usize::from(h.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one compare-and-set succeeds");
    assert_eq!(s.notify_watermark().await.unwrap(), w0 + 10);
    let rows = all(&s).await;
    assert_eq!(rows.len(), 10);
    // All ten from the one winner: one creation time.
    let created: BTreeSet<i64> = rows.iter().map(|n| n.created_at.as_millis()).collect();
    assert_eq!(created.len(), 1, "{created:?}");
}

async fn a_claim_holds_until_its_lease_ends_and_only_its_holder_finishes(db: Arc<Db>) {
    let s = open(&db).await;
    dispatch(
        &s,
        vec![row(1, "ops"), row(2, "ops"), row(3, "chat")],
        at(0),
    )
    .await;
    // Not due before its time.
    assert!(claim(&s, at(-1), 10, "early").await.is_empty());
    let first = claim(&s, at(0), 2, "a").await;
    assert_eq!(first.len(), 2, "the limit holds");
    assert!(first.iter().all(|n| n.next_at == at(LEASE)));
    let rest = claim(&s, at(10), 10, "b").await;
    assert_eq!(rest.len(), 1, "only the unclaimed one");
    assert!(
        claim(&s, at(LEASE - 1), 10, "c").await.is_empty(),
        "held until the lease ends"
    );
    // The first holder crashed: at the end of its lease its rows are taken over.
    let taken = claim(&s, at(LEASE), 10, "d").await;
    assert_eq!(
        ids(&taken).into_iter().collect::<BTreeSet<_>>(),
        ids(&first).into_iter().collect::<BTreeSet<_>>()
    );
    // The old holder's late result is refused; the new holder's is recorded.
    let id = first[0].id.clone();
    let done = AttemptOutcome::Delivered;
    assert!(
        !s.finish_notification(&id, "a", &done, at(LEASE + 5))
            .await
            .unwrap()
    );
    assert_eq!(get(&s, &id).await.state, NotificationState::Pending);
    assert!(
        s.finish_notification(&id, "d", &done, at(LEASE + 6))
            .await
            .unwrap()
    );
    let n = get(&s, &id).await;
    assert_eq!(n.state, NotificationState::Delivered);
    assert_eq!(n.delivered_at, Some(at(LEASE + 6)));
    // Finished is final: the same claim cannot finish it twice, and it is never due again.
    assert!(
        !s.finish_notification(&id, "d", &done, at(LEASE + 7))
            .await
            .unwrap()
    );
    let later = claim(&s, at(10 * LEASE), 10, "e").await;
    assert!(!ids(&later).contains(&id.as_str()), "{:?}", ids(&later));
}

async fn racing_claimers_never_share_a_message(db: Arc<Db>) {
    let s = Arc::new(open(&db).await);
    let rows: Vec<NewNotification> = (1..=40).map(|i| row(i, "ops")).collect();
    dispatch(&s, rows, at(0)).await;
    let mut handles = Vec::new();
    for c in 0..4 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            s.claim_notifications(at(0), 15, LEASE, &format!("claim-{c}"))
                .await
                .unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for h in handles {
        for n in h.await.unwrap() {
            total += 1;
            assert!(seen.insert(n.id.clone()), "{} claimed twice", n.id);
        }
    }
    // Whatever the interleaving, nothing is claimed twice, and everything due that a
    // claimer could take was taken (4 × 15 ≥ 40).
    assert_eq!(total, seen.len());
    let left = claim(&s, at(1), 100, "after").await;
    assert_eq!(total + left.len(), 40);
}

async fn a_failed_attempt_is_due_again_at_its_backoff(db: Arc<Db>) {
    let s = open(&db).await;
    dispatch(&s, vec![row(1, "ops")], at(0)).await;
    let n = claim(&s, at(0), 10, "a").await.remove(0);
    let failed = AttemptOutcome::Retry {
        error: "the receiver answered HTTP 500".into(),
        retry_at: at(5_000),
    };
    assert!(
        s.finish_notification(&n.id, "a", &failed, at(100))
            .await
            .unwrap()
    );
    let n = get(&s, &n.id).await;
    assert_eq!(n.state, NotificationState::Pending);
    assert_eq!(n.attempts, 1);
    assert_eq!(n.next_at, at(5_000));
    assert_eq!(
        n.last_error.as_deref(),
        Some("the receiver answered HTTP 500")
    );
    // Not before the backoff, even though its lease would have ended.
    assert!(claim(&s, at(4_999), 10, "b").await.is_empty());
    let again = claim(&s, at(5_000), 10, "c").await;
    assert_eq!(ids(&again), [n.id.as_str()]);
    assert_eq!(again[0].attempts, 1);
    // A second failure counts; success clears the error and keeps the count.
    let failed = AttemptOutcome::Retry {
        error: "the receiver did not answer in time".into(),
        retry_at: at(15_000),
    };
    assert!(
        s.finish_notification(&n.id, "c", &failed, at(5_100))
            .await
            .unwrap()
    );
    let n = claim(&s, at(15_000), 10, "d").await.remove(0);
    assert_eq!(n.attempts, 2);
    assert!(
        s.finish_notification(&n.id, "d", &AttemptOutcome::Delivered, at(15_050))
            .await
            .unwrap()
    );
    let n = get(&s, &n.id).await;
    assert_eq!(
        (n.state, n.attempts, n.last_error),
        (NotificationState::Delivered, 2, None)
    );
    assert_eq!(s.notification_backlog().await.unwrap(), (0, 0));
}

async fn dead_messages_wait_for_a_retry(db: Arc<Db>) {
    let s = open(&db).await;
    dispatch(&s, vec![row(1, "ops"), row(2, "ops")], at(0)).await;
    let claimed = claim(&s, at(0), 10, "a").await;
    let (dead, delivered) = (&claimed[0].id, &claimed[1].id);
    let outcome = AttemptOutcome::Dead {
        error: "cannot reach the receiver: connection refused".into(),
    };
    assert!(
        s.finish_notification(dead, "a", &outcome, at(90_000))
            .await
            .unwrap()
    );
    assert!(
        s.finish_notification(delivered, "a", &AttemptOutcome::Delivered, at(90_000))
            .await
            .unwrap()
    );
    let n = get(&s, dead).await;
    assert_eq!(n.state, NotificationState::Dead);
    assert_eq!(n.attempts, 1);
    assert_eq!(s.notification_backlog().await.unwrap(), (0, 1));
    // A dead message is never due on its own.
    assert!(claim(&s, at(100 * LEASE), 10, "b").await.is_empty());

    // Retry: pending at once, with a fresh creation time (its dead_after starts again).
    let retried = s.retry_notification(dead, at(200_000)).await.unwrap();
    assert_eq!(retried.state, NotificationState::Pending);
    assert_eq!(
        (retried.created_at, retried.next_at),
        (at(200_000), at(200_000))
    );
    assert_eq!(get(&s, dead).await, retried);
    assert_eq!(s.notification_backlog().await.unwrap(), (1, 0));
    let again = claim(&s, at(200_000), 10, "c").await;
    assert_eq!(ids(&again), [dead.as_str()]);
    assert_eq!(again[0].attempts, 1, "its history is kept");

    // Only a dead one can be retried, and an unknown one is not found.
    for id in [dead, delivered] {
        match s.retry_notification(id, at(200_001)).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("only a dead one"), "{m}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(matches!(
        s.retry_notification("kairos-999-ops", at(200_001)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(get(&s, delivered).await.state, NotificationState::Delivered);
}

async fn listings_filter_by_state_and_channel_newest_first(db: Arc<Db>) {
    let s = open(&db).await;
    dispatch(&s, vec![row(1, "ops"), row(1, "chat")], at(0)).await;
    dispatch(&s, vec![row(2, "ops")], at(1_000)).await;
    dispatch(&s, vec![row(3, "chat")], at(2_000)).await;
    // Deliver kairos-1-ops; kairos-1-chat dies.
    for n in claim(&s, at(0), 10, "a").await {
        let outcome = if n.channel == "ops" {
            AttemptOutcome::Delivered
        } else {
            AttemptOutcome::Dead {
                error: "the receiver answered HTTP 404".into(),
            }
        };
        assert!(
            s.finish_notification(&n.id, "a", &outcome, at(10))
                .await
                .unwrap()
        );
    }
    assert_eq!(
        ids(&all(&s).await),
        [
            "kairos-3-chat",
            "kairos-2-ops",
            "kairos-1-ops",
            "kairos-1-chat"
        ]
    );
    assert_eq!(
        ids(&list(&s, Some(NotificationState::Pending), None, 100).await),
        ["kairos-3-chat", "kairos-2-ops"]
    );
    assert_eq!(
        ids(&list(&s, Some(NotificationState::Delivered), None, 100).await),
        ["kairos-1-ops"]
    );
    assert_eq!(
        ids(&list(&s, Some(NotificationState::Dead), None, 100).await),
        ["kairos-1-chat"]
    );
    assert_eq!(
        ids(&list(&s, None, Some("ops"), 100).await),
        ["kairos-2-ops", "kairos-1-ops"]
    );
    assert_eq!(
        ids(&list(&s, Some(NotificationState::Dead), Some("chat"), 100).await),
        ["kairos-1-chat"]
    );
    assert!(
        list(&s, Some(NotificationState::Dead), Some("ops"), 100)
            .await
            .is_empty()
    );
    assert!(list(&s, None, Some("nobody"), 100).await.is_empty());
    assert_eq!(
        ids(&list(&s, None, None, 2).await),
        ["kairos-3-chat", "kairos-2-ops"]
    );
    assert!(list(&s, None, None, 0).await.is_empty());
}
