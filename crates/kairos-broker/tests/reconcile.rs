//! The reconciler against a real Redis (127.0.0.1:6379): a grant that turns active while a
//! pass runs, between its listing of the accounts and its read of the active grants, is
//! not reported `account_missing`; a grant whose account really is gone still is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use kairos_connectors::{AccountName, Connector};
use kairos_domain::{AuditKind, GrantId, TargetName};
use kairos_store::AuditFilter;
use support::{Fixture, Hooked, ask, redis_catalog, workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_activating_during_a_pass_is_not_reported_missing() {
    let prefix = format!("kr{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().unwrap();
    let (toml, policies) = redis_catalog(dir.path(), &prefix);
    let f = Fixture::with(&toml, &policies).await;
    let target = TargetName::parse("cache").unwrap();
    let inner = Arc::clone(f.broker.targets().get(&target).unwrap());

    // A grant of the target activates right after the pass listed the accounts, as a
    // request on another task would.
    let activated: Arc<Mutex<Option<(GrantId, String)>>> = Arc::default();
    let after_list_managed: support::Hook = {
        let (broker, activated) = (Arc::clone(&f.broker), Arc::clone(&activated));
        Box::new(move || {
            let (broker, activated) = (Arc::clone(&broker), Arc::clone(&activated));
            Box::pin(async move {
                let out = broker
                    .request(&workload("job"), ask("cache/read", "10m"))
                    .await
                    .unwrap();
                let grant = out.grant.unwrap();
                assert_eq!(grant.state, kairos_domain::GrantState::Active, "{grant:?}");
                *activated.lock().unwrap() = Some((grant.id.clone(), grant.account.unwrap()));
            })
        })
    };
    let racing = Arc::new(Hooked {
        inner: Arc::clone(&inner),
        after_list_managed: Some(after_list_managed),
        before_revoke_many: None,
    });
    let report = f
        .broker
        .reconcile(&target, Arc::clone(&racing) as Arc<dyn Connector>)
        .await
        .unwrap();
    let (grant, account) = activated.lock().unwrap().clone().unwrap();
    assert!(
        report.missing_accounts.is_empty(),
        "a grant that activated during the pass is reported missing: {report:?}"
    );
    assert!(report.residue_removed.is_empty(), "{report:?}");
    let audited = |grant: &GrantId| {
        let s = Arc::clone(f.broker.store());
        let grant = grant.to_string();
        async move {
            s.list_audit(&AuditFilter {
                grant_id: Some(grant),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
            .iter()
            .any(|r| r.kind == AuditKind::AccountMissing)
        }
    };
    assert!(!audited(&grant).await);

    // The next pass sees the account: nothing missing.
    let report = f
        .broker
        .reconcile(&target, Arc::clone(&inner))
        .await
        .unwrap();
    assert!(report.missing_accounts.is_empty(), "{report:?}");

    // Its account dropped by hand: now it is missing, reported and audited.
    inner
        .revoke(&AccountName::parse(&account).unwrap())
        .await
        .unwrap();
    let report = f
        .broker
        .reconcile(&target, Arc::clone(&inner))
        .await
        .unwrap();
    assert_eq!(report.missing_accounts, vec![account.clone()], "{report:?}");
    assert!(audited(&grant).await);

    for a in inner.list_managed().await.unwrap() {
        inner.revoke(&a).await.unwrap();
    }
}
