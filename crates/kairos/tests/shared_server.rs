//! Targets that reach one server: PostgreSQL roles are cluster-wide, so two targets on two
//! databases of one server (two admin URL variables) share them. Through the real server:
//! with prefixes that do not overlap both targets' accounts survive many reconcile passes;
//! overlapping prefixes are refused at apply naming both targets; a live grant of any target
//! (here one renamed away) keeps its account from being taken for residue; missing admin
//! URL variables are reported all at once; MariaDB's event scheduler being off is a warning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pg::{SHARED_PG, SharedDb, managed_roles, psql};
use common::*;
use serde_json::{Value, json};
use sqlx::Connection;

struct Pg<'a> {
    name: &'a str,
    env: &'a str,
    db: &'a str,
    prefix: &'a str,
}

/// The common configuration plus one postgres target (and a readonly entitlement) each.
fn write_targets(dir: &Path, issuer: &TestIssuer, targets: &[Pg<'_>], extra: &str) -> PathBuf {
    let path = write_config(dir, issuer, "");
    let mut blocks = String::new();
    let mut policy = String::new();
    for t in targets {
        blocks.push_str(&format!(
            r#"
[[target]]
name = "{name}"
kind = "postgres"
admin_url_env = "{env}"
managed_prefix = "{prefix}"
reconcile_interval = "1s"

[[entitlement]]
name = "{name}/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {db} TO {{{{role}}}}", "GRANT SELECT ON orders TO {{{{role}}}}"]
"#,
            name = t.name,
            env = t.env,
            prefix = t.prefix,
            db = t.db,
        ));
        policy.push_str(&format!(
            "@id(\"{name}-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"{name}\");\n",
            name = t.name
        ));
    }
    blocks.push_str(extra);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[policy]", &format!("{blocks}\n[policy]"));
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("policies/db.cedar"), policy).unwrap();
    path
}

struct Account {
    grant: String,
    user: String,
    url: String,
}

fn issue(api: &Api, platform: &str, entitlement: &str) -> Account {
    let (status, body) = api.post(
        platform,
        "/v1/requests",
        json!({
            "entitlement": entitlement, "ttl": "20m",
            "task": {"kind": "job", "ref": "run-9", "reason": "nightly export"}
        }),
    );
    assert_eq!(status, 201, "{body}");
    let c = &body["credential"];
    let user = c["username"].as_str().unwrap().to_owned();
    Account {
        grant: body["grant"]["id"].as_str().unwrap().to_owned(),
        url: format!(
            "postgres://{user}:{}@{}:{}/{}",
            c["password"].as_str().unwrap(),
            c["host"].as_str().unwrap(),
            c["port"],
            c["database"].as_str().unwrap()
        ),
        user,
    }
}

/// The account logs in and reads what it was granted.
fn works(rt: &tokio::runtime::Runtime, account: &Account) {
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&account.url)
            .await
            .unwrap_or_else(|e| panic!("{} cannot log in: {e}", account.user));
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
    });
}

/// A reconcile pass has run on each of these targets since now: a hand-made role with
/// each prefix is created, and the pass that removes it listed every account of its prefix.
fn wait_reconcile_pass(db: &str, prefixes: &[&str], round: &str) {
    let handmade: Vec<String> = prefixes
        .iter()
        .map(|p| format!("{p}handmade_{round}"))
        .collect();
    for role in &handmade {
        psql(SHARED_PG, db, &format!("CREATE ROLE {role} LOGIN"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for role in &handmade {
        while managed_roles(SHARED_PG, role).iter().any(|r| r == role) {
            assert!(
                Instant::now() < deadline,
                "no reconcile pass removed {role}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn audit_kinds(api: &Api) -> Vec<Value> {
    let (status, audit) = api.get(ADMIN, "/v1/audit?limit=1000");
    assert_eq!(status, 200, "{audit}");
    audit["records"].as_array().unwrap().clone()
}

fn assert_active(api: &Api, account: &Account) {
    let (status, g) = api.get(ADMIN, &format!("/v1/grants/{}", account.grant));
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["state"], "active", "{g}");
}

#[test]
fn two_targets_on_one_server_keep_each_others_accounts() {
    let (one, two) = (SharedDb::new(), SharedDb::new());
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let targets = |second_name: &'static str, second_prefix: &str| {
        write_targets(
            &cfg,
            &issuer,
            &[
                Pg {
                    name: "orders-db",
                    env: "KAIROS_IT_PG_ORDERS",
                    db: &one.name,
                    prefix: &one.prefix,
                },
                Pg {
                    name: second_name,
                    env: "KAIROS_IT_PG_BILLING",
                    db: &two.name,
                    prefix: second_prefix,
                },
            ],
            "",
        )
    };
    let config = targets("billing-db", &two.prefix);
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[
            ("KAIROS_IT_PG_ORDERS", one.admin_url().as_str()),
            ("KAIROS_IT_PG_BILLING", two.admin_url().as_str()),
        ],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();

    let orders = issue(&api, &platform, "orders-db/readonly");
    let billing = issue(&api, &platform, "billing-db/readonly");
    assert!(orders.user.starts_with(&one.prefix), "{}", orders.user);
    assert!(billing.user.starts_with(&two.prefix), "{}", billing.user);

    // Three reconcile passes on each target: both accounts stay and work.
    for round in ["1", "2", "3"] {
        wait_reconcile_pass(&one.name, &[&one.prefix, &two.prefix], round);
    }
    for account in [&orders, &billing] {
        works(&rt, account);
        assert_active(&api, account);
    }
    let records = audit_kinds(&api);
    assert!(
        !records.iter().any(|r| r["kind"] == "account_missing"),
        "{records:?}"
    );
    let removed: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "residue_removed")
        .map(|r| &r["data"]["account"])
        .collect();
    assert_eq!(removed.len(), 6, "only the hand-made roles: {removed:?}");
    assert!(
        removed
            .iter()
            .all(|a| a.as_str().unwrap().contains("handmade")),
        "{removed:?}"
    );

    // The same targets with overlapping prefixes (one starts with the other): refused at
    // apply, naming both targets; nothing applied.
    let overlapping = targets("billing-db", &format!("{}x_", one.prefix));
    let out = server.cli(ADMIN, &["apply", overlapping.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    for part in [
        "orders-db",
        "billing-db",
        "same postgres server",
        "managed_prefix",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    let (status, body) = api.post(
        ADMIN,
        "/v1/config/apply",
        json!({"main_path": "kairos.toml", "files": bundle_files(&cfg)}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    // Still the first configuration: a new billing account carries the old prefix.
    let later = issue(&api, &platform, "billing-db/readonly");
    assert!(later.user.starts_with(&two.prefix), "{}", later.user);

    // billing-db renamed (same server, same prefix): the catalog no longer knows the target
    // its live grants stand on, so they end as `target_removed` through the one end path
    // and their accounts are verified gone; the renamed target's reconciler takes nothing
    // of orders-db's, and orders-db's account keeps working through three more passes.
    let renamed = targets("ledger-db", &two.prefix);
    let out = server.cli(ADMIN, &["apply", renamed.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for round in ["4", "5", "6"] {
        wait_reconcile_pass(&one.name, &[&one.prefix, &two.prefix], round);
    }
    works(&rt, &orders);
    assert_active(&api, &orders);
    for account in [&billing, &later] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, g) = api.get(ADMIN, &format!("/v1/grants/{}", account.grant));
            assert_eq!(status, 200, "{g}");
            if g["state"] == "ended" {
                assert_eq!(g["receipt"]["reason"], "target_removed", "{g}");
                assert!(g["receipt"]["verified_at"].is_string(), "{g}");
                break;
            }
            assert!(Instant::now() < deadline, "not verified gone: {g}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !managed_roles(SHARED_PG, &account.user).contains(&account.user),
            "{} is still there",
            account.user
        );
    }
    let records = audit_kinds(&api);
    assert!(
        !records.iter().any(|r| r["kind"] == "residue_removed"
            && !r["data"]["account"].as_str().unwrap().contains("handmade")),
        "{records:?}"
    );
    assert!(!records.iter().any(|r| r["kind"] == "account_missing"));
}

/// The configuration bundle of a directory as the apply endpoint takes it.
fn bundle_files(cfg: &Path) -> Value {
    let mut files = serde_json::Map::new();
    for rel in [
        "kairos.toml",
        "ci-jwks.json",
        "policies/base.cedar",
        "policies/db.cedar",
    ] {
        files.insert(
            rel.to_owned(),
            Value::String(std::fs::read_to_string(cfg.join(rel)).unwrap()),
        );
    }
    Value::Object(files)
}

#[test]
fn every_missing_admin_url_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_config(&cfg, &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let unset = write_targets(
        &cfg,
        &issuer,
        &[
            Pg {
                name: "orders-db",
                env: "KAIROS_IT_UNSET_ORDERS_7f3a",
                db: "orders",
                prefix: "kairos_o_",
            },
            Pg {
                name: "billing-db",
                env: "KAIROS_IT_UNSET_BILLING_7f3a",
                db: "billing",
                prefix: "kairos_b_",
            },
        ],
        "",
    );
    let out = server.cli(ADMIN, &["apply", unset.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    for part in [
        "orders-db",
        "KAIROS_IT_UNSET_ORDERS_7f3a",
        "billing-db",
        "KAIROS_IT_UNSET_BILLING_7f3a",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
}

#[test]
fn mariadb_with_the_event_scheduler_off_is_a_warning_at_apply() {
    let out = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-e",
            "SELECT @@event_scheduler",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let scheduler_on = stdout(&out).trim().eq_ignore_ascii_case("ON");

    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_config(&cfg, &issuer, "");
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[(
            "KAIROS_IT_MARIADB_ADMIN",
            "mysql://root@127.0.0.1:3306/test",
        )],
    );
    let maria = write_targets(
        &cfg,
        &issuer,
        &[],
        r#"
[[target]]
name = "reports-db"
kind = "mariadb"
admin_url_env = "KAIROS_IT_MARIADB_ADMIN"
managed_prefix = "kit_ev_"
"#,
    );
    let out = server.cli(ADMIN, &["apply", maria.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let warned =
        text.contains("warning: target reports-db") && text.contains("event scheduler is off");
    assert_eq!(warned, !scheduler_on, "{text}");
    if warned {
        assert!(
            server.log_text().contains("event scheduler is off"),
            "the warning is logged too"
        );
    }
}
