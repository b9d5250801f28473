//! SSH targets in the store (`ssh_ca_keys`, `ssh_request_keys`, `ssh_certs`): every case
//! runs on SQLite (a temporary file) and on PostgreSQL (a database of its own, dropped
//! after), with kairos-testkit's harness.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{
    AuditDraft, AuditKind, EndReason, GrantEnd, GrantId, Principal, RequestId, Timestamp,
};
use kairos_store::{EndSelector, SqlStore, SshCert, SshStore, Store, StoredSshCa};

use kairos_testkit::StoreDb as Db;

mod common;

async fn open(db: &Db) -> SqlStore {
    SqlStore::connect(db.url()).await.unwrap()
}

kairos_testkit::store_suite!(
    a_targets_first_ca_key_is_made_once_and_rotation_retires_it,
    a_certificate_is_recorded_once_and_only_while_its_grant_is_active,
    the_krl_lists_revoked_certificates_until_they_expire,
    a_requests_public_key_is_kept_for_its_certificate,
);

// ---- fixtures --------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;
/// The largest serial Kairos draws (`1..=i64::MAX`): it must survive a BIGINT column.
const TOP_SERIAL: u64 = i64::MAX as u64;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn ca(target: &str, id: &str, offset_ms: i64) -> StoredSshCa {
    StoredSshCa {
        id: id.into(),
        target: target.into(),
        public_key: format!("ssh-ed25519 AAAA{id} kairos-ca:{target}:{id}"),
        sealed_private: format!("sealed-{id}"),
        created_at: at(offset_ms),
        retire_until: None,
    }
}

fn cert(grant: &GrantId, ca_key_id: &str, serial: u64, valid_before: Timestamp) -> SshCert {
    SshCert {
        grant_id: grant.clone(),
        target: "bastion".into(),
        ca_key_id: ca_key_id.into(),
        serial,
        certificate: format!("ssh-ed25519-cert-v01@openssh.com AAAA{serial}"),
        valid_before,
        revoked_at: None,
    }
}

fn issued(grant: &GrantId) -> AuditDraft {
    AuditDraft::new(AuditKind::CredentialDelivered, "system:broker").grant(grant)
}

async fn audit_kinds(s: &SqlStore) -> Vec<AuditKind> {
    s.audit_page(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect()
}

// ---- cases -----------------------------------------------------------------------------

async fn a_targets_first_ca_key_is_made_once_and_rotation_retires_it(db: Arc<Db>) {
    let s = open(&db).await;
    assert!(s.ssh_ca_keys("bastion").await.unwrap().is_empty());
    assert!(
        s.insert_first_ssh_ca(&ca("bastion", "k1", 0))
            .await
            .unwrap()
    );
    // Another replica's first key comes too late: nothing is written.
    assert!(
        !s.insert_first_ssh_ca(&ca("bastion", "k2", 5))
            .await
            .unwrap()
    );
    // Another target has keys of its own.
    assert!(s.insert_first_ssh_ca(&ca("jump", "j1", 5)).await.unwrap());
    assert_eq!(
        s.ssh_ca_keys("bastion").await.unwrap(),
        vec![ca("bastion", "k1", 0)]
    );

    let audit = AuditDraft::new(AuditKind::KeyRotated, "user:alice");
    s.rotate_ssh_ca(&ca("bastion", "k3", 100), at(3_700_000), audit)
        .await
        .unwrap();
    let keys = s.ssh_ca_keys("bastion").await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    // Oldest first: the retired key, trusted until its certificates have expired.
    assert_eq!(keys[0].id, "k1");
    assert_eq!(keys[0].retire_until, Some(at(3_700_000)));
    assert_eq!(keys[0].sealed_private, "sealed-k1");
    assert_eq!(keys[1], ca("bastion", "k3", 100));
    assert!(audit_kinds(&s).await.contains(&AuditKind::KeyRotated));
    // The other target's key is untouched.
    let jump = s.ssh_ca_keys("jump").await.unwrap();
    assert_eq!(jump.len(), 1);
    assert_eq!(jump[0].retire_until, None);
}

async fn a_certificate_is_recorded_once_and_only_while_its_grant_is_active(db: Arc<Db>) {
    let s = open(&db).await;
    let grant = common::insert_active_grant(&s, at(0)).await;
    let first = cert(&grant.id, "k1", TOP_SERIAL, at(3_600_000));
    let recorded = s
        .record_ssh_cert(&first, at(10), issued(&grant.id))
        .await
        .unwrap();
    assert_eq!(recorded.as_ref(), Some(&first));
    assert_eq!(s.ssh_cert(&grant.id).await.unwrap(), Some(first.clone()));
    // A second delivery of the same grant gets the certificate recorded first, and no
    // second audit record.
    let again = s
        .record_ssh_cert(
            &cert(&grant.id, "k1", 7, at(3_600_000)),
            at(20),
            issued(&grant.id),
        )
        .await
        .unwrap();
    assert_eq!(again, Some(first));
    let delivered = audit_kinds(&s)
        .await
        .into_iter()
        .filter(|k| *k == AuditKind::CredentialDelivered)
        .count();
    assert_eq!(delivered, 1);

    // An ended grant gets none, and nothing is written.
    let ended = common::insert_active_grant(&s, at(0)).await;
    s.end_grants(
        &EndSelector::One(ended.id.clone()),
        &GrantEnd {
            reason: EndReason::Released,
            by: Principal::Workload(ended.identity.clone()),
            at: at(50),
        },
    )
    .await
    .unwrap();
    let none = s
        .record_ssh_cert(
            &cert(&ended.id, "k1", 8, at(3_600_000)),
            at(60),
            issued(&ended.id),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(s.ssh_cert(&ended.id).await.unwrap(), None);
    // So is a grant that does not exist.
    let unknown = GrantId::generate();
    let none = s
        .record_ssh_cert(
            &cert(&unknown, "k1", 9, at(3_600_000)),
            at(60),
            issued(&unknown),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
}

async fn the_krl_lists_revoked_certificates_until_they_expire(db: Arc<Db>) {
    let s = open(&db).await;
    let long = common::insert_active_grant(&s, at(0)).await;
    let short = common::insert_active_grant(&s, at(0)).await;
    let live = common::insert_active_grant(&s, at(0)).await;
    for (g, serial, valid_before) in [
        (&long, TOP_SERIAL, at(3_600_000)),
        (&short, 2, at(60_000)),
        (&live, 3, at(3_600_000)),
    ] {
        s.record_ssh_cert(
            &cert(&g.id, "k1", serial, valid_before),
            at(1),
            issued(&g.id),
        )
        .await
        .unwrap();
    }
    assert!(
        s.revoked_ssh_serials("bastion", at(10))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(s.revoke_ssh_cert(&long.id, at(100)).await.unwrap());
    assert!(s.revoke_ssh_cert(&short.id, at(200)).await.unwrap());
    // Revoked again (a retried revocation job): the first time stays.
    assert!(s.revoke_ssh_cert(&long.id, at(300)).await.unwrap());
    // A grant without a certificate: false, nothing listed.
    assert!(
        !s.revoke_ssh_cert(&GrantId::generate(), at(300))
            .await
            .unwrap()
    );
    assert_eq!(
        s.ssh_cert(&long.id).await.unwrap().unwrap().revoked_at,
        Some(at(100))
    );

    let listed = s.revoked_ssh_serials("bastion", at(1_000)).await.unwrap();
    let serials: Vec<(u64, Timestamp)> = listed.iter().map(|r| (r.serial, r.revoked_at)).collect();
    assert_eq!(serials, vec![(2, at(200)), (TOP_SERIAL, at(100))]);
    assert!(listed.iter().all(|r| r.ca_key_id == "k1"));
    // Once the short certificate has expired it needs no listing; the live one never did.
    let later = s.revoked_ssh_serials("bastion", at(60_000)).await.unwrap();
    assert_eq!(
        later.iter().map(|r| r.serial).collect::<Vec<_>>(),
        vec![TOP_SERIAL]
    );
    assert!(
        s.revoked_ssh_serials("jump", at(1_000))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_requests_public_key_is_kept_for_its_certificate(db: Arc<Db>) {
    let s = open(&db).await;
    let request = RequestId::generate();
    assert_eq!(s.ssh_key_of(&request).await.unwrap(), None);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKairosTestKey workload@ci";
    s.bind_ssh_key(&request, key).await.unwrap();
    assert_eq!(s.ssh_key_of(&request).await.unwrap().as_deref(), Some(key));
    assert_eq!(s.ssh_key_of(&RequestId::generate()).await.unwrap(), None);
}
