//! The recertification part of the store ([`RecertStore`]), in the store suite's style:
//! every behaviour is one `async fn` over a fresh database, run once on SQLite (a
//! temporary file) and once on PostgreSQL (a database of its own, dropped after).
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{AuditDraft, AuditKind, ExceptionName, Timestamp, verify_chain};
use kairos_store::{
    Attestation, ExceptionRotation, GovernanceStore, NewRecertification, NoticeClaim, RecertNotice,
    RecertPageQuery, RecertStore, SqlStore, Store, SubjectKind,
};

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
    subjects_are_added_once_and_keep_their_first_sight,
    an_attestation_restarts_the_cycle_with_its_audit_record,
    due_dates_move_only_when_they_differ,
    a_notice_is_claimed_once_with_its_audit_record,
    replicas_claim_each_notice_once,
    rotations_are_recorded_with_their_audit_record,
    pages_come_due_soonest_first_and_narrow_by_kind_and_due_date,
);

// ---- fixtures ---------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn new(kind: SubjectKind, subject: &str, due: i64) -> NewRecertification {
    NewRecertification {
        kind,
        subject: subject.into(),
        due_at: at(due),
    }
}

async fn audit_kinds(s: &SqlStore) -> Vec<AuditKind> {
    let records = s.audit_page(0, u32::MAX).await.unwrap();
    assert_eq!(verify_chain(&records).unwrap(), records.len() as u64);
    records.iter().map(|r| r.kind).collect()
}

// ---- cases ------------------------------------------------------------------------------

async fn subjects_are_added_once_and_keep_their_first_sight(db: Arc<Db>) {
    let s = db.open().await;
    let added = s
        .add_recertifications(
            &[
                new(SubjectKind::Identity, "nightly-backup", 90 * DAY),
                new(SubjectKind::Exception, "legacy-billing", 30 * DAY),
            ],
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(added, 2);
    // Seen again (another replica, a later pass): nothing changes, not even the due date.
    let again = s
        .add_recertifications(
            &[
                new(SubjectKind::Identity, "nightly-backup", 95 * DAY),
                new(SubjectKind::Identity, "deployer", 91 * DAY),
            ],
            at(DAY),
        )
        .await
        .unwrap();
    assert_eq!(again, 1);
    assert_eq!(s.add_recertifications(&[], at(DAY)).await.unwrap(), 0);

    let all = s.list_recertifications().await.unwrap();
    let names: Vec<(SubjectKind, &str)> =
        all.iter().map(|r| (r.kind, r.subject.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (SubjectKind::Exception, "legacy-billing"),
            (SubjectKind::Identity, "deployer"),
            (SubjectKind::Identity, "nightly-backup"),
        ]
    );
    let backup = s
        .get_recertification(SubjectKind::Identity, "nightly-backup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(backup.first_seen_at, at(0));
    assert_eq!(backup.due_at, at(90 * DAY));
    assert_eq!(backup.last_attested_at, None);
    assert_eq!(backup.attested_by, None);
    // The same name as another kind is another subject.
    assert!(
        s.get_recertification(SubjectKind::Exception, "nightly-backup")
            .await
            .unwrap()
            .is_none()
    );
    // Bookkeeping, not a governance action: no audit record.
    assert!(audit_kinds(&s).await.is_empty());
}

async fn an_attestation_restarts_the_cycle_with_its_audit_record(db: Arc<Db>) {
    let s = db.open().await;
    s.add_recertifications(
        &[new(SubjectKind::Identity, "nightly-backup", 90 * DAY)],
        at(0),
    )
    .await
    .unwrap();
    let attestation = Attestation {
        kind: SubjectKind::Identity,
        subject: "nightly-backup".into(),
        at: at(80 * DAY),
        by: "user:carol".into(),
        reason: "still backs up the orders database".into(),
        due_at: at(170 * DAY),
    };
    let audit = AuditDraft::new(AuditKind::RecertAttested, "user:carol").identity("nightly-backup");
    let r = s.attest(&attestation, audit).await.unwrap();
    assert_eq!(r.first_seen_at, at(0), "first sight is kept");
    assert_eq!(r.last_attested_at, Some(at(80 * DAY)));
    assert_eq!(r.attested_by.as_deref(), Some("user:carol"));
    assert_eq!(
        r.reason.as_deref(),
        Some("still backs up the orders database")
    );
    assert_eq!(r.due_at, at(170 * DAY));
    assert_eq!(
        s.get_recertification(SubjectKind::Identity, "nightly-backup")
            .await
            .unwrap(),
        Some(r)
    );

    // Attesting what the pass has not seen yet makes its record, first seen now.
    let exception = Attestation {
        kind: SubjectKind::Exception,
        subject: "legacy-billing".into(),
        at: at(5 * DAY),
        by: "user:dave".into(),
        reason: "migration planned for Q3".into(),
        due_at: at(95 * DAY),
    };
    let r = s
        .attest(
            &exception,
            AuditDraft::new(AuditKind::RecertAttested, "user:dave"),
        )
        .await
        .unwrap();
    assert_eq!(r.first_seen_at, at(5 * DAY));
    assert_eq!(r.last_attested_at, Some(at(5 * DAY)));
    assert_eq!(
        audit_kinds(&s).await,
        vec![AuditKind::RecertAttested, AuditKind::RecertAttested]
    );
}

async fn due_dates_move_only_when_they_differ(db: Arc<Db>) {
    let s = db.open().await;
    s.add_recertifications(
        &[
            new(SubjectKind::Identity, "a", 90 * DAY),
            new(SubjectKind::Identity, "b", 90 * DAY),
        ],
        at(0),
    )
    .await
    .unwrap();
    let moved = s
        .move_recert_due(&[
            (SubjectKind::Identity, "a".into(), at(30 * DAY)),
            (SubjectKind::Identity, "b".into(), at(90 * DAY)),
            (SubjectKind::Identity, "unknown".into(), at(1)),
        ])
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let due = |name: &'static str| {
        let s = s.clone();
        async move {
            s.get_recertification(SubjectKind::Identity, name)
                .await
                .unwrap()
                .unwrap()
                .due_at
        }
    };
    assert_eq!(due("a").await, at(30 * DAY));
    assert_eq!(due("b").await, at(90 * DAY));
    assert!(
        s.get_recertification(SubjectKind::Identity, "unknown")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.move_recert_due(&[]).await.unwrap(), 0);
}

fn claim(notice: RecertNotice, cycle: i64) -> NoticeClaim {
    NoticeClaim {
        kind: SubjectKind::Identity,
        subject: "nightly-backup".into(),
        notice,
        cycle_at: at(cycle),
    }
}

async fn a_notice_is_claimed_once_with_its_audit_record(db: Arc<Db>) {
    let s = db.open().await;
    let due = claim(RecertNotice::RecertDue, 90 * DAY);
    assert!(!s.recert_notice_claimed(&due).await.unwrap());
    let draft =
        || AuditDraft::new(AuditKind::RecertDue, "system:recert").identity("nightly-backup");
    // The claim's alert commits with it; a refused claim raises nothing.
    let alert = |id: &str, key: &str| kairos_store::AlertWrite {
        id: id.into(),
        draft: kairos_governance::AlertDraft::new(
            kairos_governance::AlertKind::RecertOverdue,
            "identity nightly-backup",
            "overdue",
        )
        .dedupe_key(key),
        at: at(76 * DAY),
        audit: AuditDraft::new(AuditKind::AlertRaised, "system:governance"),
    };
    assert!(
        s.claim_recert_notice(
            &due,
            at(76 * DAY),
            vec![draft()],
            Some(alert("alr_1", "k1"))
        )
        .await
        .unwrap()
    );
    assert!(s.recert_notice_claimed(&due).await.unwrap());
    assert!(s.get_alert("alr_1").await.unwrap().is_some());
    // Claimed again (a later pass): refused, and no second audit record nor alert.
    assert!(
        !s.claim_recert_notice(
            &due,
            at(77 * DAY),
            vec![draft()],
            Some(alert("alr_2", "k2"))
        )
        .await
        .unwrap()
    );
    assert_eq!(s.get_alert("alr_2").await.unwrap(), None);
    // Another notice of the same cycle, and the same notice of the next cycle, are new.
    assert!(
        s.claim_recert_notice(
            &claim(RecertNotice::RecertOverdue, 90 * DAY),
            at(90 * DAY),
            vec![AuditDraft::new(AuditKind::RecertOverdue, "system:recert")],
            None,
        )
        .await
        .unwrap()
    );
    assert!(
        s.claim_recert_notice(
            &claim(RecertNotice::RecertDue, 180 * DAY),
            at(166 * DAY),
            vec![draft()],
            None,
        )
        .await
        .unwrap()
    );
    assert_eq!(
        audit_kinds(&s).await,
        vec![
            AuditKind::RecertDue,
            AuditKind::AlertRaised,
            AuditKind::RecertOverdue,
            AuditKind::RecertDue
        ]
    );
    let records = s.audit_page(0, 10).await.unwrap();
    assert_eq!(records[0].at, at(76 * DAY));
    assert_eq!(records[0].identity.as_deref(), Some("nightly-backup"));
}

/// Two stores on one database (replicas) claim the same notices at once: each is won by
/// exactly one of them, with exactly one audit record.
async fn replicas_claim_each_notice_once(db: Arc<Db>) {
    let (a, b) = (db.open().await, db.open().await);
    let mut tasks = Vec::new();
    for (i, s) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for cycle in 0..10 {
                let c = claim(RecertNotice::RecertOverdue, cycle * DAY);
                let audit = vec![
                    AuditDraft::new(AuditKind::RecertOverdue, format!("system:replica{i}"))
                        .identity("nightly-backup"),
                ];
                if s.claim_recert_notice(&c, at(cycle * DAY), audit, None)
                    .await
                    .unwrap()
                {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 10, "each of the 10 cycles is claimed exactly once");
    assert_eq!(audit_kinds(&a).await, vec![AuditKind::RecertOverdue; 10]);
    b.close().await;
}

async fn rotations_are_recorded_with_their_audit_record(db: Arc<Db>) {
    let s = db.open().await;
    assert!(s.exception_rotations().await.unwrap().is_empty());
    let billing = ExceptionName::parse("legacy-billing").unwrap();
    let first = ExceptionRotation {
        exception: billing.clone(),
        last_rotated_at: at(DAY),
        rotated_by: "user:carol".into(),
        note: Some("rotated in vault, ticket SEC-12".into()),
    };
    s.record_rotation(
        &first,
        AuditDraft::new(AuditKind::ExceptionRotated, "user:carol"),
    )
    .await
    .unwrap();
    let second = ExceptionRotation {
        exception: billing.clone(),
        last_rotated_at: at(31 * DAY),
        rotated_by: "user:dave".into(),
        note: None,
    };
    s.record_rotation(
        &second,
        AuditDraft::new(AuditKind::ExceptionRotated, "user:dave"),
    )
    .await
    .unwrap();
    let other = ExceptionRotation {
        exception: ExceptionName::parse("ftp-upload").unwrap(),
        last_rotated_at: at(2 * DAY),
        rotated_by: "user:carol".into(),
        note: None,
    };
    s.record_rotation(
        &other,
        AuditDraft::new(AuditKind::ExceptionRotated, "user:carol"),
    )
    .await
    .unwrap();
    // The last rotation of each, by name.
    assert_eq!(s.exception_rotations().await.unwrap(), vec![other, second]);
    assert_eq!(audit_kinds(&s).await, vec![AuditKind::ExceptionRotated; 3]);
    let records = s.audit_page(0, 10).await.unwrap();
    assert_eq!(records[1].at, at(31 * DAY));
}

async fn pages_come_due_soonest_first_and_narrow_by_kind_and_due_date(db: Arc<Db>) {
    let s = db.open().await;
    // Three identities share a due date (a bulk import); ties go by kind, then subject.
    s.add_recertifications(
        &[
            new(SubjectKind::Identity, "c-job", 10 * DAY),
            new(SubjectKind::Identity, "a-job", 10 * DAY),
            new(SubjectKind::Exception, "z-legacy", 10 * DAY),
            new(SubjectKind::Identity, "b-job", 10 * DAY),
            new(SubjectKind::Identity, "early", 2 * DAY),
            new(SubjectKind::Exception, "late-legacy", 40 * DAY),
        ],
        at(0),
    )
    .await
    .unwrap();
    let page = |q: RecertPageQuery| {
        let s = &s;
        async move {
            s.recertification_page(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.subject)
                .collect::<Vec<_>>()
        }
    };
    let everything = page(RecertPageQuery::default()).await;
    assert_eq!(
        everything,
        [
            "early",
            "z-legacy",
            "a-job",
            "b-job",
            "c-job",
            "late-legacy"
        ]
    );
    // Keyset pages of two, each after the last row of the one before, add up to it all.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let rows = s
            .recertification_page(&RecertPageQuery {
                after: after.clone(),
                limit: Some(2),
                ..RecertPageQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = rows.last() else { break };
        after = Some((last.due_at, last.kind, last.subject.clone()));
        walked.extend(rows.into_iter().map(|r| r.subject));
    }
    assert_eq!(walked, everything);
    // By kind, and by due date: after is exclusive, until inclusive.
    assert_eq!(
        page(RecertPageQuery {
            kind: Some(SubjectKind::Exception),
            ..RecertPageQuery::default()
        })
        .await,
        ["z-legacy", "late-legacy"]
    );
    assert_eq!(
        page(RecertPageQuery {
            due_after: Some(at(2 * DAY)),
            due_until: Some(at(10 * DAY)),
            ..RecertPageQuery::default()
        })
        .await,
        ["z-legacy", "a-job", "b-job", "c-job"]
    );
    assert_eq!(
        page(RecertPageQuery {
            due_until: Some(at(2 * DAY)),
            ..RecertPageQuery::default()
        })
        .await,
        ["early"]
    );
}
