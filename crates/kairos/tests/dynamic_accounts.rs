//! Dynamic accounts end to end through the real server: a PostgreSQL role and a Redis ACL
//! user are issued, used with real clients, released, their live sessions killed, their
//! logins refused, their receipts verified; the reconciler removes a hand-made residue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::pg::{SHARED_PG, SharedDb, managed_roles, psql};
use common::*;
use serde_json::{Value, json};
use sqlx::Connection;

/// Whether a role of exactly this name exists on the shared server.
fn role_exists(role: &str) -> bool {
    managed_roles(SHARED_PG, role).iter().any(|r| r == role)
}

fn write_db_config(
    dir: &std::path::Path,
    issuer: &TestIssuer,
    db: &str,
    prefix: &str,
) -> std::path::PathBuf {
    let path = write_config(dir, issuer, "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("[policy]", &format!(r#"
[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_PG_ADMIN"
managed_prefix = "{prefix}"
reconcile_interval = "1s"

[[entitlement]]
name = "orders-db/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {db} TO {{{{role}}}}", "GRANT SELECT ON orders TO {{{{role}}}}"]

[[target]]
name = "cache"
kind = "redis"
admin_url_env = "KAIROS_IT_REDIS_ADMIN"
managed_prefix = "{prefix}"
reconcile_interval = "1s"

[[entitlement]]
name = "cache/sessions-read"
tier = "low"
max_ttl = "15m"
acl = ["~sessions:*", "+get"]

[[entitlement]]
name = "cache/breakglass"
tier = "high"
max_ttl = "15m"
acl = ["~sessions:*", "+get"]
break_glass = true

[policy]"#));
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.join("policies/db.cedar"),
        "@id(\"db-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"orders-db\") when { context.task_kind == \"job\" };\n\
         @id(\"cache-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"cache\");\n",
    )
    .unwrap();
    path
}

fn request(api: &Api, platform: &str, entitlement: &str) -> (u16, Value) {
    api.post(
        platform,
        "/v1/requests",
        json!({
            "entitlement": entitlement, "ttl": "10m",
            "task": {"kind": "job", "ref": "run-7", "reason": "nightly export"}
        }),
    )
}

/// A request's audit records, oldest first, and their kinds.
fn request_audit(api: &Api, request: &str) -> (Vec<Value>, Vec<String>) {
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?request={request}"));
    let mut records = audit["records"].as_array().unwrap().clone();
    records.sort_by_key(|r| r["seq"].as_i64());
    let kinds = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    (records, kinds)
}

#[test]
fn postgres_and_redis_accounts_are_issued_used_released_and_verified_gone() {
    let shared = SharedDb::new();
    let (db, prefix) = (shared.name.clone(), shared.prefix.clone());

    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_db_config(&dir.path().join("cfg"), &issuer, &db, &prefix);
    let admin = shared.admin_url();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[
            ("KAIROS_IT_PG_ADMIN", admin.as_str()),
            ("KAIROS_IT_REDIS_ADMIN", "redis://127.0.0.1:6379"),
        ],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // PostgreSQL: issue, then log in with a real client and use exactly the granted privileges.
    let (status, body) = request(&api, &platform, "orders-db/readonly");
    assert_eq!(status, 201, "{body}");
    let cred = &body["credential"];
    assert_eq!(cred["kind"], "postgres");
    let user = cred["username"].as_str().unwrap().to_owned();
    let password = cred["password"].as_str().unwrap().to_owned();
    assert!(user.starts_with(&prefix));
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["grant"]["state"], "active");
    // Shown once: reading the request again shows no password.
    let req = body["request"]["id"].as_str().unwrap();
    let (_, again) = api.get(&platform, &format!("/v1/requests/{req}"));
    assert!(again["credential"].is_null(), "{again}");
    // Two records: the intent's `decided` (with what was asked) and the `issued` that
    // names who was shown the password; both found by request, identity and task.
    let (records, kinds) = request_audit(&api, req);
    assert_eq!(kinds, ["decided", "issued"], "{records:?}");
    let (decided, issued) = (&records[0], &records[1]);
    assert_eq!(decided["actor"], "workload:nightly-backup", "{decided}");
    assert_eq!(decided["data"]["decision"]["outcome"], "grant", "{decided}");
    assert!(decided["data"]["catalog_version"].is_number(), "{decided}");
    let asked = &decided["data"]["request"];
    assert_eq!(asked["entitlement"], "orders-db/readonly", "{decided}");
    assert_eq!(asked["task"]["ref"], "run-7", "{decided}");
    assert!(asked["ttl"].is_string(), "{decided}");
    assert_eq!(issued["grant_id"], grant.as_str(), "{issued}");
    assert_eq!(issued["data"]["account"], user.as_str(), "{issued}");
    assert_eq!(
        issued["data"]["delivered_to"], "workload:nightly-backup",
        "{issued}"
    );
    for filter in [
        "identity=nightly-backup".to_owned(),
        "task_ref=run-7".to_owned(),
        format!("grant={grant}"),
    ] {
        let (_, found) = api.get(ADMIN, &format!("/v1/audit?{filter}"));
        let found = found["records"].as_array().unwrap();
        assert!(
            found.iter().any(|r| r["seq"] == issued["seq"]),
            "{filter} misses the issued record"
        );
        assert!(
            found.iter().all(|r| r["kind"] != "credential_delivered"),
            "{filter}: {found:?}"
        );
    }
    let url = format!(
        "postgres://{user}:{password}@{}:{}/{}",
        cred["host"].as_str().unwrap(),
        cred["port"],
        cred["database"].as_str().unwrap()
    );
    let mut session = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
        let refused = sqlx::query("INSERT INTO orders VALUES (2)")
            .execute(&mut c)
            .await;
        assert!(refused.is_err(), "insert must be refused");
        c
    });
    // The password is stored only sealed: it is not in the store file in plain text.
    let db_bytes = std::fs::read(dir.path().join("data/kairos.db")).unwrap();
    assert!(
        !db_bytes
            .windows(password.len())
            .any(|w| w == password.as_bytes())
    );

    // Release: the open session is killed, a new login fails, the receipt is verified.
    let (status, g) = api.post(&platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200, "{g}");
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["method"], "pg_roles+login", "{g}");
    assert!(g["receipt"]["verified_at"].is_string());
    rt.block_on(async {
        let still = sqlx::query("SELECT 1").execute(&mut session).await;
        assert!(still.is_err(), "the open session must be terminated");
        assert!(
            sqlx::PgConnection::connect(&url).await.is_err(),
            "a new login must fail"
        );
    });
    assert!(!role_exists(&user));

    // Redis: issue, AUTH works and GET is allowed only on the granted keys; release; AUTH fails.
    let (status, body) = request(&api, &platform, "cache/sessions-read");
    assert_eq!(status, 201, "{body}");
    let rc = &body["credential"];
    assert_eq!(rc["kind"], "redis");
    let rgrant = body["grant"]["id"].as_str().unwrap().to_owned();
    let rurl = format!(
        "redis://{}:{}@127.0.0.1:6379",
        rc["username"].as_str().unwrap(),
        rc["password"].as_str().unwrap()
    );
    rt.block_on(async {
        let client = redis::Client::open(rurl.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let v: Option<String> = redis::cmd("GET")
            .arg("sessions:1")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(v, None);
        let denied: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg("other:1").query_async(&mut con).await;
        assert!(denied.is_err());
    });
    let (status, _) = api.post(
        &platform,
        &format!("/v1/grants/{rgrant}/release"),
        json!({}),
    );
    assert_eq!(status, 200);
    let g = api.wait_grant(ADMIN, &rgrant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["method"], "acl+auth", "{g}");
    rt.block_on(async {
        let client = redis::Client::open(rurl.as_str()).unwrap();
        assert!(
            client.get_multiplexed_async_connection().await.is_err(),
            "AUTH must fail"
        );
    });

    // A break-glass account: granted at once with its review; its intent's one record
    // carries what was asked and the decision, beside the review.
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({
            "entitlement": "cache/breakglass", "ttl": "10m",
            "task": {"kind": "incident", "ref": "INC-9", "reason": "sessions are failing"}
        }),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["credential"]["kind"], "redis", "{body}");
    let (breq, bgrant) = (
        body["request"]["id"].as_str().unwrap().to_owned(),
        body["grant"]["id"].as_str().unwrap().to_owned(),
    );
    let (records, kinds) = request_audit(&api, &breq);
    assert_eq!(kinds, ["decided", "review_opened", "issued"], "{records:?}");
    assert_eq!(
        records[0]["data"]["decision"]["outcome"], "grant",
        "{}",
        records[0]
    );
    assert_eq!(
        records[0]["data"]["request"]["task"]["kind"], "incident",
        "{}",
        records[0]
    );
    let (status, _) = api.post(
        &platform,
        &format!("/v1/grants/{bgrant}/release"),
        json!({}),
    );
    assert_eq!(status, 200);
    api.wait_grant(ADMIN, &bgrant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });

    // The reconciler finds a hand-made account with the managed prefix and removes it.
    let handmade = format!("{prefix}handmade");
    psql(SHARED_PG, &db, &format!("CREATE ROLE {handmade} LOGIN"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while role_exists(&handmade) {
        assert!(
            Instant::now() < deadline,
            "the reconciler never removed {handmade}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, audit) = api.get(ADMIN, "/v1/audit?limit=200");
    let residue = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "residue_removed")
        .expect("residue audited");
    assert_eq!(residue["data"]["account"], handmade.as_str());
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Passwords never reach the log.
    assert!(!server.log_text().contains(&password));
}

#[test]
fn a_target_down_at_issuance_gets_a_clear_error_and_nothing_half_created() {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("kit{}_", &hex[..8]);
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_db_config(&dir.path().join("cfg"), &issuer, "nowhere", &prefix);
    // Nothing listens on port 9 (discard) on this machine.
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[
            (
                "KAIROS_IT_PG_ADMIN",
                "postgres://postgres@127.0.0.1:9/nowhere",
            ),
            ("KAIROS_IT_REDIS_ADMIN", "redis://127.0.0.1:9"),
        ],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = request(&api, &platform, "orders-db/readonly");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "target_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was created")
    );
    // The grant never became active: it was aborted through the end path.
    let (_, grants) = api.get(ADMIN, "/v1/grants?state=active");
    assert_eq!(grants["grants"].as_array().unwrap().len(), 0, "{grants}");
    let (_, all) = api.get(ADMIN, "/v1/grants");
    let g = &all["grants"][0];
    assert!(g["state"] == "revoking" || g["state"] == "ended", "{g}");
    assert_eq!(g["receipt"]["reason"], "aborted");
}

fn mariadb(sql: &str) {
    let out = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

struct MariaDbGuard(String);

impl Drop for MariaDbGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                "3306",
                "-u",
                "root",
                "-e",
                &format!("DROP DATABASE IF EXISTS {}", self.0),
            ])
            .output();
    }
}

#[test]
fn an_approved_mariadb_account_is_shown_once_and_verified_gone() {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("kairos_it_{}", &hex[..12]);
    let prefix = format!("kit{}_", &hex[..8]);
    mariadb(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.orders (id INT); INSERT INTO {db}.orders VALUES (1);"
    ));
    let _guard = MariaDbGuard(db.clone());

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let issuer = TestIssuer::new("k1");
    let path = write_config(&cfg, &issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "shop-db"
kind = "mariadb"
admin_url_env = "KAIROS_IT_MARIADB_ADMIN"
managed_prefix = "{prefix}"

[[entitlement]]
name = "shop-db/read"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT SELECT ON {db}.orders TO {{{{role}}}}"]

[policy]"#
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        cfg.join("policies/shop.cedar"),
        "@id(\"shop-one-approval\") @approvals(\"1\") permit (principal in Kairos::Team::\"payments\", action, resource == Kairos::Entitlement::\"shop-db/read\");\n",
    )
    .unwrap();
    let admin = format!("mysql://root@127.0.0.1:3306/{db}");
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&path),
        None,
        &[],
        &[("KAIROS_IT_MARIADB_ADMIN", admin.as_str())],
    );
    let api = Api::new(&server);
    let (_, alice) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": "alice", "role": "approver", "teams": ["payments"]}),
    );
    let alice = alice["token"].as_str().unwrap().to_owned();
    let platform = issuer.mint(SUBJECT, json!({}));

    let (status, body) = request(&api, &platform, "shop-db/read");
    assert_eq!(status, 202, "{body}");
    let req = body["request"]["id"].as_str().unwrap().to_owned();
    let (status, r) = api.post(
        &alice,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "export reviewed"}),
    );
    assert_eq!(status, 200, "{r}");
    assert!(
        r["credential"].is_null(),
        "the approver never sees the password: {r}"
    );
    let grant = r["grant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["grant"]["state"], "active", "{r}");

    // The workload reads its request, eight times at once: the password, once.
    let path = format!("/v1/requests/{req}");
    let reads: Vec<Value> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| api.get(&platform, &path)))
            .collect();
        readers
            .into_iter()
            .map(|r| {
                let (status, body) = r.join().unwrap();
                assert_eq!(status, 200, "{body}");
                body
            })
            .collect()
    });
    let shown: Vec<&Value> = reads
        .iter()
        .filter(|r| !r["credential"].is_null())
        .collect();
    assert_eq!(shown.len(), 1, "shown once: {reads:?}");
    let cred = shown[0]["credential"].clone();
    assert_eq!(cred["kind"], "mariadb", "{cred}");
    let (_, later) = api.get(&platform, &path);
    assert!(later["credential"].is_null(), "shown once: {later}");

    let url = format!(
        "mysql://{}:{}@127.0.0.1:{}/{}",
        cred["username"].as_str().unwrap(),
        cred["password"].as_str().unwrap(),
        cred["port"],
        cred["database"].as_str().unwrap()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut session = rt.block_on(async {
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {db}.orders"))
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(
            sqlx::query(&format!("INSERT INTO {db}.orders VALUES (2)"))
                .execute(&mut c)
                .await
                .is_err()
        );
        c
    });

    let (status, _) = api.post(&platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200);
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["method"], "mysql.user+login", "{g}");
    rt.block_on(async {
        assert!(
            sqlx::query("SELECT 1").execute(&mut session).await.is_err(),
            "the open session must be killed"
        );
        assert!(
            sqlx::MySqlConnection::connect(&url).await.is_err(),
            "a new login must fail"
        );
    });
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for k in ["issued", "credential_delivered", "released", "verified"] {
        assert!(kinds.contains(&k), "{kinds:?} lacks {k}");
    }
}

/// Grants that end together are revoked together: one revoke by task reference ends ten
/// PostgreSQL accounts, the connector drops them in one batch, kills the live sessions,
/// and every grant gets its own verified receipt.
#[test]
fn accounts_ending_together_are_revoked_in_one_batch_and_each_verified() {
    const N: usize = 10;
    let shared = SharedDb::new();
    let (db, prefix) = (shared.name.clone(), shared.prefix.clone());
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_db_config(&dir.path().join("cfg"), &issuer, &db, &prefix);
    let admin = shared.admin_url();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[
            ("KAIROS_IT_PG_ADMIN", admin.as_str()),
            ("KAIROS_IT_REDIS_ADMIN", "redis://127.0.0.1:6379"),
        ],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut issued = Vec::new();
    for _ in 0..N {
        let (status, body) = request(&api, &platform, "orders-db/readonly");
        assert_eq!(status, 201, "{body}");
        let c = &body["credential"];
        let url = format!(
            "postgres://{}:{}@{}:{}/{}",
            c["username"].as_str().unwrap(),
            c["password"].as_str().unwrap(),
            c["host"].as_str().unwrap(),
            c["port"],
            c["database"].as_str().unwrap()
        );
        let grant = body["grant"]["id"].as_str().unwrap().to_owned();
        issued.push((grant, c["username"].as_str().unwrap().to_owned(), url));
    }
    // Live sessions on two of them.
    let mut sessions = rt.block_on(async {
        let mut v = Vec::new();
        for (_, _, url) in &issued[..2] {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("SELECT count(*) FROM orders")
                .execute(&mut c)
                .await
                .unwrap();
            v.push(c);
        }
        v
    });

    let out = server.cli(ADMIN, &["revoke", "--task-ref", "run-7"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut probed = 0;
    let mut sessions_killed = 0;
    for (grant, user, _) in &issued {
        let g = api.wait_grant(ADMIN, grant, Duration::from_secs(30), |g| {
            g["state"] == "ended"
        });
        let receipt = &g["receipt"];
        assert!(receipt["verified_at"].is_string(), "{g}");
        let evidence = receipt["evidence"].as_str().unwrap();
        assert!(
            evidence.contains(user.as_str()) && evidence.contains("absent from pg_roles"),
            "{evidence}"
        );
        match receipt["method"].as_str().unwrap() {
            "pg_roles+login" => probed += 1,
            "pg_roles" => assert!(evidence.contains("login probe"), "{evidence}"),
            other => panic!("unexpected method {other}"),
        }
        sessions_killed += usize::from(evidence.contains("1 live session(s) terminated"));
        assert!(!role_exists(user));
    }
    assert!(
        probed >= 2,
        "at least the batch's sample logs in ({probed})"
    );
    assert_eq!(sessions_killed, 2);
    rt.block_on(async {
        for s in &mut sessions {
            assert!(sqlx::query("SELECT 1").execute(&mut *s).await.is_err());
        }
        for (_, _, url) in &issued {
            assert!(sqlx::PgConnection::connect(url).await.is_err());
        }
    });
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
