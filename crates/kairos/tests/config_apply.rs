//! Applying a configuration through the real server and CLI: a catalog that removes what a
//! live grant stands on ends it through the one end path (`target_removed`) and it is
//! verified gone on the removed target; `--dry-run` shows it and changes nothing; an
//! empty catalog needs `--allow-remove-all`. Also the CLI around it: `config show`,
//! `entitlements --mine`, `request-status` printing the credential it claims,
//! `--token-only` naming the grant on stderr, and bidi controls shown escaped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::pg::{SHARED_PG, SharedDb, managed_roles};
use common::*;
use serde_json::{Value, json};

/// The common test catalog plus a PostgreSQL target whose entitlement needs one approval.
fn write_db_config(dir: &std::path::Path, issuer: &TestIssuer, db: &str, prefix: &str) {
    let path = write_config(dir, issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
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
grants = ["GRANT CONNECT ON DATABASE {db} TO {{{{role}}}}"]

[policy]"#
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.join("policies/db.cedar"),
        "@id(\"db-needs-one\") @approvals(\"1\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"orders-db\");\n",
    )
    .unwrap();
}

fn role_exists(role: &str) -> bool {
    managed_roles(SHARED_PG, role).iter().any(|r| r == role)
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "CLI failed: {}\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[test]
fn removing_a_target_ends_its_grants_verified_and_an_empty_catalog_needs_a_flag() {
    let shared = SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let with_db = dir.path().join("with-db");
    write_db_config(&with_db, &issuer, &shared.name, &shared.prefix);
    let without_db = dir.path().join("without-db");
    write_config(&without_db, &issuer, "");
    let admin_url = shared.admin_url();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&with_db.join("kairos.toml")),
        None,
        &[],
        &[("KAIROS_IT_PG_ADMIN", admin_url.as_str())],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // A database request approved by alice; its workload reads it with plain
    // `request-status` (table form), which claims the one-time password: it must print it.
    let alice = ok(&server.cli(
        ADMIN,
        &[
            "--json", "user", "add", "alice", "--role", "approver", "--team", "payments",
        ],
    ));
    let alice: Value = serde_json::from_str(&alice).unwrap();
    let alice = alice["token"].as_str().unwrap().to_owned();
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-db/readonly", "ttl": "10m",
               "task": {"kind": "job", "ref": "run-9", "reason": "export"}}),
    );
    assert_eq!(status, 202, "{body}");
    let req = body["request"]["id"].as_str().unwrap().to_owned();
    ok(&server.cli(&alice, &["approve", &req, "--reason", "ok"]));
    let shown = ok(&server.cli(&platform, &["request-status", &req]));
    assert!(shown.contains("password shown once"), "{shown}");
    let secret_line = shown.lines().last().unwrap();
    assert!(
        secret_line.starts_with("postgres://") && secret_line.contains('@'),
        "{shown}"
    );
    let (_, again) = api.get(&platform, &format!("/v1/requests/{req}"));
    assert!(again["credential"].is_null(), "shown once: {again}");
    let grant = again["request"]["grant_id"].as_str().unwrap().to_owned();
    let g = api.get(ADMIN, &format!("/v1/grants/{grant}")).1;
    assert_eq!(g["state"], "active", "{g}");
    let role = g["account"].as_str().map(str::to_owned).unwrap_or_else(|| {
        secret_line["postgres://".len()..]
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    });
    assert!(role_exists(&role), "{role} should exist");

    // Dry run: lists the removals and the grant that would end; changes nothing.
    let new_file = without_db.join("kairos.toml");
    let new_path = new_file.to_str().unwrap();
    let dry = ok(&server.cli(ADMIN, &["apply", "--dry-run", new_path]));
    assert!(dry.contains("dry run"), "{dry}");
    assert!(dry.contains("target orders-db"), "{dry}");
    assert!(dry.contains("would end 1 live grant"), "{dry}");
    assert!(dry.contains(&grant), "{dry}");
    assert!(dry.contains("target orders-db removed"), "{dry}");
    let g = api.get(ADMIN, &format!("/v1/grants/{grant}")).1;
    assert_eq!(g["state"], "active", "a dry run changes nothing: {g}");
    assert!(role_exists(&role));
    let (_, cfg) = api.get(ADMIN, "/v1/config");
    assert!(
        cfg["targets"].to_string().contains("orders-db"),
        "the old catalog is still in force: {cfg}"
    );

    // Apply: the grant ends as target_removed and is verified gone on the removed target.
    let applied = ok(&server.cli(ADMIN, &["--json", "apply", new_path]));
    let applied: Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(applied["dry_run"], false);
    assert_eq!(applied["grants_ending"][0]["grant_id"], grant.as_str());
    let ended = api.wait_grant(ADMIN, &grant, Duration::from_secs(30), |g| {
        g["state"] == "ended"
    });
    assert_eq!(ended["receipt"]["reason"], "target_removed", "{ended}");
    assert_eq!(applied["grants_ending"][0]["reason"], "target_removed");
    assert!(ended["receipt"]["verified_at"].is_string(), "{ended}");
    assert!(!role_exists(&role), "{role} must be gone");
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "config_removed"),
        "{audit}"
    );

    // An empty catalog over a non-empty one is refused without the flag; nothing changes.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let refused = server.cli(ADMIN, &["apply", empty.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--allow-remove-all"),
        "{}",
        stderr(&refused)
    );
    let (_, cfg) = api.get(ADMIN, "/v1/config");
    assert!(
        cfg["identities"].to_string().contains("nightly-backup"),
        "{cfg}"
    );
    ok(&server.cli(
        ADMIN,
        &["apply", "--allow-remove-all", empty.to_str().unwrap()],
    ));
    let (_, cfg) = api.get(ADMIN, "/v1/config");
    assert_eq!(cfg["identities"], json!([]), "{cfg}");
}

#[test]
fn cli_shows_config_entitlements_grant_ids_and_escapes_bidi() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // `config show`: for admins, operators and auditors; a workload gets 403.
    let shown = ok(&server.cli(ADMIN, &["config", "show"]));
    for needle in [
        "nightly-backup",
        "orders-api/read",
        "ci-read-auto",
        "payments",
    ] {
        assert!(shown.contains(needle), "{needle} missing: {shown}");
    }
    let (status, body) = api.get(&platform, "/v1/config");
    assert_eq!(status, 403, "{body}");
    let auditor = ok(&server.cli(
        ADMIN,
        &["--json", "user", "add", "ann", "--role", "approver"],
    ));
    let auditor: Value = serde_json::from_str(&auditor).unwrap();
    let (status, body) = api.get(auditor["token"].as_str().unwrap(), "/v1/config");
    assert_eq!(status, 403, "an approver is not entitled to it: {body}");

    // The entitlements are for callers Kairos knows: an unknown token gets 401 and no list.
    let (status, body) = api.get("not-a-known-token-0123456789", "/v1/entitlements");
    assert_eq!(status, 401, "{body}");
    assert!(body.get("entitlements").is_none(), "{body}");

    // `entitlements --mine` as the workload.
    let mine = ok(&server.cli(&platform, &["entitlements", "--mine"]));
    assert!(mine.contains("orders-api/read"), "{mine}");
    assert!(
        mine.contains("payments"),
        "approved by its owner team: {mine}"
    );

    // `--token-only`: the token alone on stdout, the grant id on stderr.
    let o = server.cli(
        &platform,
        &[
            "request",
            "orders-api/read",
            "--task-kind",
            "job",
            "--task-ref",
            "run-1",
            "--reason",
            "nightly",
            "--token-only",
        ],
    );
    let out = ok(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("eyJ"), "{out}");
    let err = stderr(&o);
    let grant = err
        .lines()
        .find_map(|l| l.strip_prefix("grant: "))
        .unwrap_or_else(|| panic!("no grant id on stderr: {err}"))
        .to_owned();
    assert!(grant.starts_with("grt_"), "{err}");
    ok(&server.cli(&platform, &["release", &grant]));

    // A reason with a right-to-left override is shown escaped, never raw.
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-api/read", "ttl": "5m",
               "task": {"kind": "job", "ref": "run-2", "reason": "fix \u{202e}txt.exe"}}),
    );
    assert_eq!(status, 201, "{body}");
    let grant = body["grant"]["id"].as_str().unwrap();
    for args in [
        vec!["grant", grant],
        vec!["request-status", body["request"]["id"].as_str().unwrap()],
    ] {
        let text = ok(&server.cli(ADMIN, &args));
        assert!(
            !text.contains('\u{202e}'),
            "raw bidi control in {args:?}: {text}"
        );
        assert!(text.contains("\\u{202e}"), "{args:?}: {text}");
    }
}

/// Every option line of these commands' `--help` says what it is for; `server` shows no
/// client-only options (and refuses them); completions print a script.
#[test]
fn help_is_complete_server_has_only_server_options_and_completions_print() {
    let run = |args: &[&str]| {
        std::process::Command::new(kairos_bin())
            .args(args)
            .env_remove("KAIROS_ADDR")
            .env_remove("KAIROS_TOKEN")
            .output()
            .unwrap()
    };
    for cmd in [
        vec!["server"],
        vec!["dev-issuer", "init"],
        vec!["dev-issuer", "mint"],
        vec!["completions"],
        vec!["apply"],
        vec!["request-status"],
        vec!["keys", "rotate"],
        vec!["user", "add"],
        vec!["mcp"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let help = ok(&run(&args));
        let lines: Vec<&str> = help.lines().collect();
        for (i, raw) in lines.iter().enumerate() {
            let line = raw.trim_start();
            if line.starts_with('-') {
                // Described on the same line, or (clap's long form) on the next, indented deeper.
                let same = line.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
                let indent = raw.len() - line.len();
                let next = lines.get(i + 1).is_some_and(|n| {
                    let t = n.trim_start();
                    !t.is_empty() && !t.starts_with('-') && n.len() - t.len() > indent
                });
                assert!(same || next, "{cmd:?}: no help for `{line}`\n{help}");
            }
        }
        if cmd == ["server"] {
            for client_only in ["--addr", "--token", "--json"] {
                assert!(
                    !help.contains(client_only),
                    "server shows {client_only}:\n{help}"
                );
            }
        }
    }
    let refused = run(&["server", "--addr", "http://x"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--listen"),
        "{}",
        stderr(&refused)
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&run(&["completions", shell]));
        assert!(
            script.contains("kairos") && script.contains("request-status"),
            "{shell}: {script}"
        );
    }
    // The client still takes its options anywhere.
    let o = run(&["--addr", "http://127.0.0.1:9", "health", "--json"]);
    assert!(!o.status.success(), "nothing listens on port 9");
    assert!(!stderr(&o).contains("client option"), "{}", stderr(&o));
}
