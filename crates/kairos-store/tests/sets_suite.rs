//! Security Event Tokens in the store (`set_outbox`): every case runs on SQLite (a
//! temporary file) and on PostgreSQL (a database of its own, dropped after), with
//! kairos-testkit's harness.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{EndReason, GrantEnd, GrantId, GrantState, Principal, Timestamp};
use kairos_store::{
    EndSelector, NewSet, PollAcks, SetDeliveryMode, SetOutcome, SetRecord, SetState, SetStore,
    SqlStore, Store, StoreError,
};

use kairos_testkit::StoreDb as Db;

mod common;

async fn open(db: &Db) -> SqlStore {
    SqlStore::connect(db.url()).await.unwrap()
}

kairos_testkit::store_suite!(
    one_set_per_grant_and_receiver_and_its_first_body_stays,
    a_push_claim_holds_until_its_lease_ends_and_only_its_holder_finishes,
    a_failed_push_is_due_again_and_a_refusal_is_final,
    poll_acks_are_all_or_nothing_and_only_the_receivers_own,
    an_answer_makes_the_grants_waiting_revocation_due_now,
);

// ---- fixtures --------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;
const LEASE: i64 = 11_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn set(grant: &GrantId, receiver: &str, delivery: SetDeliveryMode) -> NewSet {
    NewSet {
        jti: uuid::Uuid::new_v4().simple().to_string(),
        grant: grant.clone(),
        receiver: receiver.into(),
        delivery,
        body: format!("eyJ.{receiver}.sig"),
        wait_until: at(300_000),
    }
}

async fn sets_of(s: &SqlStore, grant: &GrantId) -> Vec<SetRecord> {
    s.grant_sets(grant).await.unwrap()
}

// ---- cases -----------------------------------------------------------------------------

async fn one_set_per_grant_and_receiver_and_its_first_body_stays(db: Arc<Db>) {
    let s = open(&db).await;
    let grant = GrantId::generate();
    let first = set(&grant, "orders", SetDeliveryMode::Push);
    s.enqueue_sets(
        vec![first.clone(), set(&grant, "billing", SetDeliveryMode::Poll)],
        at(0),
    )
    .await
    .unwrap();
    // A retried revocation job signs again: the row written first stays, body and all.
    let mut again = set(&grant, "orders", SetDeliveryMode::Push);
    again.body = "another.body.sig".into();
    s.enqueue_sets(vec![again], at(10)).await.unwrap();
    let rows = sets_of(&s, &grant).await;
    assert_eq!(rows.len(), 2);
    let orders = rows.iter().find(|r| r.receiver == "orders").unwrap();
    assert_eq!(orders.jti, first.jti);
    assert_eq!(orders.body, first.body);
    assert_eq!(orders.state, SetState::Pending);
    assert_eq!(orders.created_at, at(0));
    assert_eq!(orders.wait_until, at(300_000));
    let backlog = s.set_backlog().await.unwrap();
    assert_eq!(backlog.len(), 2);
    assert!(backlog.iter().all(|b| b.pending == 1 && b.acked == 0));
}

async fn a_push_claim_holds_until_its_lease_ends_and_only_its_holder_finishes(db: Arc<Db>) {
    let s = open(&db).await;
    let grant = GrantId::generate();
    s.enqueue_sets(
        vec![
            set(&grant, "orders", SetDeliveryMode::Push),
            // Poll SETs are never claimed for push.
            set(&grant, "billing", SetDeliveryMode::Poll),
        ],
        at(0),
    )
    .await
    .unwrap();
    let claimed = s.claim_push_sets(at(5), 10, LEASE, "c1").await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].receiver, "orders");
    assert!(
        s.claim_push_sets(at(6), 10, LEASE, "c2")
            .await
            .unwrap()
            .is_empty()
    );
    let jti = claimed[0].jti.clone();
    // Another claimer cannot finish it.
    assert!(
        !s.finish_set(&jti, "c2", &SetOutcome::Acked, at(7))
            .await
            .unwrap()
    );
    // After the lease it is taken over; the first holder can no longer finish it.
    let taken = s
        .claim_push_sets(at(5 + LEASE), 10, LEASE, "c2")
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        !s.finish_set(&jti, "c1", &SetOutcome::Acked, at(5 + LEASE))
            .await
            .unwrap()
    );
    assert!(
        s.finish_set(&jti, "c2", &SetOutcome::Acked, at(5 + LEASE + 1))
            .await
            .unwrap()
    );
    let row = sets_of(&s, &grant)
        .await
        .into_iter()
        .find(|r| r.jti == jti)
        .unwrap();
    assert_eq!(row.state, SetState::Acked);
    assert_eq!(row.acked_at, Some(at(5 + LEASE + 1)));
    let backlog = s.set_backlog().await.unwrap();
    let orders = backlog.iter().find(|b| b.receiver == "orders").unwrap();
    assert_eq!((orders.pending, orders.acked), (0, 1));
    assert_eq!(orders.last_acked_at, Some(at(5 + LEASE + 1)));
}

async fn a_failed_push_is_due_again_and_a_refusal_is_final(db: Arc<Db>) {
    let s = open(&db).await;
    let grant = GrantId::generate();
    s.enqueue_sets(vec![set(&grant, "orders", SetDeliveryMode::Push)], at(0))
        .await
        .unwrap();
    let c = s.claim_push_sets(at(0), 10, LEASE, "c1").await.unwrap();
    let retry = SetOutcome::Retry {
        error: "cannot reach the receiver".into(),
        retry_at: at(2_000),
    };
    assert!(s.finish_set(&c[0].jti, "c1", &retry, at(1)).await.unwrap());
    assert!(
        s.claim_push_sets(at(1_999), 10, LEASE, "c2")
            .await
            .unwrap()
            .is_empty()
    );
    let c = s.claim_push_sets(at(2_000), 10, LEASE, "c2").await.unwrap();
    assert_eq!(c[0].attempts, 1);
    assert_eq!(
        c[0].last_error.as_deref(),
        Some("cannot reach the receiver")
    );
    let refused = SetOutcome::Refused {
        error: "invalid_audience: not ours".into(),
    };
    assert!(
        s.finish_set(&c[0].jti, "c2", &refused, at(2_001))
            .await
            .unwrap()
    );
    let row = &sets_of(&s, &grant).await[0];
    assert_eq!(row.state, SetState::Failed);
    assert_eq!(row.acked_at, Some(at(2_001)));
    assert_eq!(
        row.last_error.as_deref(),
        Some("invalid_audience: not ours")
    );
    // Never sent again.
    assert!(
        s.claim_push_sets(at(999_999), 10, LEASE, "c3")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn poll_acks_are_all_or_nothing_and_only_the_receivers_own(db: Arc<Db>) {
    let s = open(&db).await;
    let (g1, g2, g3) = (
        GrantId::generate(),
        GrantId::generate(),
        GrantId::generate(),
    );
    let mine = [
        set(&g1, "billing", SetDeliveryMode::Poll),
        set(&g2, "billing", SetDeliveryMode::Poll),
        set(&g3, "billing", SetDeliveryMode::Poll),
    ];
    let theirs = set(&g1, "payroll", SetDeliveryMode::Poll);
    s.enqueue_sets(mine.to_vec(), at(0)).await.unwrap();
    s.enqueue_sets(vec![theirs.clone()], at(1)).await.unwrap();

    let batch = s
        .poll_sets("billing", &PollAcks::default(), 2, at(10))
        .await
        .unwrap();
    assert_eq!(batch.sets.len(), 2);
    assert!(batch.more);
    assert!(batch.sets.iter().all(|(j, _)| *j != theirs.jti));

    // Acknowledging another receiver's SET (or an unknown one) records nothing at all.
    let bad = PollAcks {
        acks: vec![mine[0].jti.clone(), theirs.jti.clone()],
        errors: vec![],
    };
    match s.poll_sets("billing", &bad, 10, at(20)).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("not a SET of receiver billing"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        sets_of(&s, &g1)
            .await
            .iter()
            .filter(|r| r.state == SetState::Pending)
            .count(),
        2
    );

    let good = PollAcks {
        acks: vec![mine[0].jti.clone()],
        errors: vec![(mine[1].jti.clone(), "jwt_aud: wrong audience".into())],
    };
    let batch = s.poll_sets("billing", &good, 10, at(30)).await.unwrap();
    assert_eq!(
        batch.sets,
        vec![(mine[2].jti.clone(), mine[2].body.clone())]
    );
    assert!(!batch.more);
    let r1 = sets_of(&s, &g1).await;
    let billing = r1.iter().find(|r| r.receiver == "billing").unwrap();
    assert_eq!(
        (billing.state, billing.acked_at),
        (SetState::Acked, Some(at(30)))
    );
    let r2 = &sets_of(&s, &g2).await[0];
    assert_eq!(r2.state, SetState::Failed);
    assert_eq!(r2.last_error.as_deref(), Some("jwt_aud: wrong audience"));
    // An ack sent again (a lost answer) is harmless.
    s.poll_sets("billing", &good, 0, at(40)).await.unwrap();
    let again = sets_of(&s, &g1).await;
    let billing = again.iter().find(|r| r.receiver == "billing").unwrap();
    assert_eq!(billing.acked_at, Some(at(30)));
    // The other receiver's SET is untouched.
    let payroll = again.iter().find(|r| r.receiver == "payroll").unwrap();
    assert_eq!(payroll.state, SetState::Pending);
}

async fn an_answer_makes_the_grants_waiting_revocation_due_now(db: Arc<Db>) {
    let s = open(&db).await;
    let grant = common::insert_active_grant(&s, at(0)).await;
    let end = GrantEnd {
        reason: EndReason::Released,
        by: Principal::Workload(grant.identity.clone()),
        at: at(100),
    };
    s.end_grants(&EndSelector::One(grant.id.clone()), &end)
        .await
        .unwrap();
    assert_eq!(
        s.claim_revocations(at(100), 10, 1_000).await.unwrap().len(),
        1
    );
    let poll = set(&grant.id, "billing", SetDeliveryMode::Poll);
    s.enqueue_sets(vec![poll.clone()], at(110)).await.unwrap();
    // Waiting for the receiver: not due, not counted as a failure.
    s.defer_revocation(&grant.id, at(60_000)).await.unwrap();
    assert!(
        s.claim_revocations(at(200), 10, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let g = s.get_grant(&grant.id).await.unwrap().unwrap();
    assert!(
        matches!(g.state, GrantState::Ending { attempts: 0, .. }),
        "{:?}",
        g.state
    );
    // The receiver acknowledges: the job is due at once.
    let acks = PollAcks {
        acks: vec![poll.jti.clone()],
        errors: vec![],
    };
    s.poll_sets("billing", &acks, 10, at(300)).await.unwrap();
    let due = s.claim_revocations(at(300), 10, 1_000).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, grant.id);
}
