//! Signed audit checkpoints against a store writer: the three rewrites an unkeyed chain
//! cannot see (cut the tail and fix the head; recompute every hash; edit a record and
//! recompute the hashes after it) pass `kairos audit verify`, and `kairos audit verify
//! --checkpoints FILE` names the checkpoint they break and why. Tampering is direct SQL
//! on the real server's SQLite store file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use kairos_domain::{AuditKind, AuditRecord, GENESIS_HASH, Timestamp};
use serde_json::{Value, json};

struct Setup {
    _dir: tempfile::TempDir,
    server: Server,
    api: Api,
    db: PathBuf,
    file: PathBuf,
    /// The on-demand checkpoints made, in order: (seq, line number in the file).
    made: Vec<(i64, usize)>,
}

fn checkpoint_lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A dev server with checkpoints in a file, some activity, and two checkpoints made on
/// demand with activity between them.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let file = dir.path().join("checkpoints.jsonl");
    let data = dir.path().join("data");
    let server = Server::start_with(
        &data,
        Some(&config),
        None,
        &["--audit-checkpoints", file.to_str().unwrap()],
    );
    let api = Api::new(&server);
    // The checkpointer signs the head it finds at start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpoint_lines(&file).is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint at start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut made = Vec::new();
    for _ in 0..2 {
        for _ in 0..3 {
            let (status, body) = api.exchange(
                &issuer.mint(SUBJECT, json!({})),
                "orders-api/read",
                Some("10m"),
            );
            assert_eq!(status, 200, "{body}");
        }
        let (status, cp) = api.post(ADMIN, "/v1/audit/checkpoints", json!({}));
        assert_eq!(status, 201, "{cp}");
        let lines = checkpoint_lines(&file);
        let at = lines
            .iter()
            .position(|l| l["checkpoint"] == cp["checkpoint"])
            .expect("the checkpoint is in the file");
        assert_eq!(lines[at]["seq"], cp["seq"]);
        made.push((cp["seq"].as_i64().unwrap(), at + 1));
    }
    assert!(made[0].0 < made[1].0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "checkpoint file mode {mode:o}");
    }
    Setup {
        db: data.join("kairos.db"),
        _dir: dir,
        server,
        api,
        file,
        made,
    }
}

fn open(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn records(c: &rusqlite::Connection) -> Vec<AuditRecord> {
    let mut st = c
        .prepare(
            "SELECT seq, at, kind, actor, identity, request_id, grant_id, task_ref, data, \
             prev_hash, hash FROM audit ORDER BY seq",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok(AuditRecord {
            seq: r.get(0)?,
            at: Timestamp::from_millis(r.get(1)?),
            kind: AuditKind::parse(&r.get::<_, String>(2)?).unwrap(),
            actor: r.get(3)?,
            identity: r.get(4)?,
            request_id: r.get(5)?,
            grant_id: r.get(6)?,
            task_ref: r.get(7)?,
            data: r.get(8)?,
            prev_hash: r.get(9)?,
            hash: r.get(10)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// What a writer who knows the hash function does: recomputes every record's links and
/// hash from `from` on, writes them back, and moves the head row to match.
fn rehash_from(c: &rusqlite::Connection, from: i64) {
    let mut prev = GENESIS_HASH.to_owned();
    let tx = c.unchecked_transaction().unwrap();
    for mut r in records(c) {
        if r.seq >= from {
            r.prev_hash = prev.clone();
            r.hash = r.compute_hash();
            tx.execute(
                "UPDATE audit SET actor = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                rusqlite::params![r.actor, r.prev_hash, r.hash, r.seq],
            )
            .unwrap();
        }
        prev = r.hash.clone();
        tx.execute(
            "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
            rusqlite::params![r.seq, r.hash],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn verify_plain(s: &Setup) -> (bool, String) {
    let out = s.server.cli(ADMIN, &["audit", "verify"]);
    (out.status.success(), stdout(&out) + &stderr(&out))
}

fn verify_with_checkpoints(s: &Setup) -> (i32, String, String) {
    let out = s.server.cli(
        ADMIN,
        &["audit", "verify", "--checkpoints", s.file.to_str().unwrap()],
    );
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

#[test]
fn an_untouched_chain_extends_every_checkpoint() {
    let s = setup();
    let (code, out, err) = verify_with_checkpoints(&s);
    assert_eq!(code, 0, "{out}{err}");
    let n = checkpoint_lines(&s.file).len();
    assert!(
        out.contains(&format!("extends all {n} checkpoints")),
        "{out}"
    );

    // The CLI makes one on demand and prints the line the file got.
    let made = s.server.cli(ADMIN, &["audit", "checkpoint"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let printed: Value = serde_json::from_str(stdout(&made).trim()).unwrap();
    let lines = checkpoint_lines(&s.file);
    assert_eq!(lines.len(), n + 1);
    assert_eq!(lines[n], printed);

    // Who may make one: admin, operator, auditor; an approver may not.
    for (name, role, status) in [
        ("olga", "operator", 201),
        ("aude", "auditor", 201),
        ("apu", "approver", 403),
    ] {
        let (st, body) = s.api.post(
            ADMIN,
            "/v1/users",
            json!({"name": name, "role": role, "teams": []}),
        );
        assert_eq!(st, 201, "{body}");
        let token = body["token"].as_str().unwrap();
        let (st, body) = s.api.post(token, "/v1/audit/checkpoints", json!({}));
        assert_eq!(st, status, "{role}: {body}");
        if status == 403 {
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
            // Nor verify them: the answer says nothing of the chain.
            let (st, body) = s.api.post(
                token,
                "/v1/audit/verify",
                json!({"checkpoints": [printed["checkpoint"].clone()]}),
            );
            assert_eq!(st, 403, "{role}: {body}");
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
            assert!(
                body.get("records").is_none() && body.get("ok").is_none(),
                "{body}"
            );
        }
    }
    // Malformed bodies are 400 with a JSON error.
    for bad in [
        json!({}),
        json!({"checkpoints": "x"}),
        json!({"checkpoints": [], "extra": 1}),
    ] {
        let (st, body) = s.api.post(ADMIN, "/v1/audit/verify", bad.clone());
        assert_eq!(st, 400, "{bad}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

#[test]
fn cutting_the_tail_and_fixing_the_head_is_caught() {
    let s = setup();
    let (first, second) = (s.made[0], s.made[1]);
    let c = open(&s.db);
    let keep = first.0 + 1;
    let kept_hash: String = c
        .query_row("SELECT hash FROM audit WHERE seq = ?1", [keep], |r| {
            r.get(0)
        })
        .unwrap();
    c.execute("DELETE FROM audit WHERE seq > ?1", [keep])
        .unwrap();
    c.execute(
        "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
        rusqlite::params![keep, kept_hash],
    )
    .unwrap();

    let (ok, text) = verify_plain(&s);
    assert!(ok, "the chain alone cannot see it: {text}");
    assert!(text.contains("audit chain intact"), "{text}");

    let (code, _out, err) = verify_with_checkpoints(&s);
    assert_eq!(code, 1, "{err}");
    let place = format!("{}:{}", s.file.display(), second.1);
    assert!(
        err.contains(&format!(
            "checkpoint {place} (record {}): CHAIN DOES NOT EXTEND IT",
            second.0
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("the chain ends at record {keep}")),
        "{err}"
    );
    assert!(err.contains("deleted from the end"), "{err}");
    let first_place = format!("{}:{} ", s.file.display(), first.1);
    assert!(
        !err.contains(&first_place),
        "the earlier checkpoint still holds: {err}"
    );
}

#[test]
fn rewriting_every_hash_is_caught() {
    let s = setup();
    let c = open(&s.db);
    c.execute("UPDATE audit SET actor = 'user:mallory' WHERE seq = 1", [])
        .unwrap();
    rehash_from(&c, 1);

    let (ok, text) = verify_plain(&s);
    assert!(ok, "the chain alone cannot see it: {text}");

    let (code, _out, err) = verify_with_checkpoints(&s);
    assert_eq!(code, 1, "{err}");
    for (seq, line) in &s.made {
        let place = format!("{}:{line}", s.file.display());
        assert!(
            err.contains(&format!(
                "checkpoint {place} (record {seq}): CHAIN DOES NOT EXTEND IT"
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "the chain was rewritten at or before record {seq}"
            )),
            "{err}"
        );
    }
}

#[test]
fn editing_a_record_and_recomputing_the_hashes_after_it_is_caught() {
    let s = setup();
    let (first, second) = (s.made[0], s.made[1]);
    let c = open(&s.db);
    // A record after the first checkpoint and before the second one.
    let edited = first.0 + 1;
    assert!(edited <= second.0);
    c.execute(
        "UPDATE audit SET actor = 'user:mallory' WHERE seq = ?1",
        [edited],
    )
    .unwrap();
    rehash_from(&c, edited);

    let (ok, text) = verify_plain(&s);
    assert!(ok, "the chain alone cannot see it: {text}");

    let (code, _out, err) = verify_with_checkpoints(&s);
    assert_eq!(code, 1, "{err}");
    let place = format!("{}:{}", s.file.display(), second.1);
    assert!(
        err.contains(&format!(
            "checkpoint {place} (record {}): CHAIN DOES NOT EXTEND IT",
            second.0
        )),
        "{err}"
    );
    let first_place = format!("{}:{} ", s.file.display(), first.1);
    assert!(
        !err.contains(&first_place),
        "the earlier checkpoint still holds: {err}"
    );
}

#[test]
fn a_forged_checkpoint_is_reported_as_forged_and_an_unknown_key_as_gone() {
    let s = setup();
    let lines = checkpoint_lines(&s.file);
    let real = lines.last().unwrap()["checkpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = real.split('.').collect();
    // The signed claims edited to name a later record, the signature kept.
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["seq"] = json!(claims["seq"].as_i64().unwrap() + 1000);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    // A header naming a key this broker never had.
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut gone_header = header.clone();
    gone_header["kid"] = json!("retired-long-ago");
    let gone = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&gone_header).unwrap()),
        parts[1],
        parts[2]
    );
    let mut text = std::fs::read_to_string(&s.file).unwrap();
    text.push_str(&format!("{}\n", json!({"checkpoint": forged})));
    text.push_str(&format!("{}\n", json!({"checkpoint": gone})));
    std::fs::write(&s.file, text).unwrap();
    let n = lines.len();

    let (code, _out, err) = verify_with_checkpoints(&s);
    assert_eq!(code, 1, "{err}");
    let forged_place = format!("{}:{}", s.file.display(), n + 1);
    let gone_place = format!("{}:{}", s.file.display(), n + 2);
    assert!(
        err.contains(&format!("checkpoint {forged_place}: FORGED: forged:")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "checkpoint {gone_place}: UNVERIFIABLE (key gone): unverifiable: key gone"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{n} of {} checkpoints extended", n + 2)),
        "{err}"
    );

    // The API says the same, per checkpoint.
    let (st, body) = s.api.post(
        ADMIN,
        "/v1/audit/verify",
        json!({"checkpoints": [real, forged, gone, "junk"]}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["ok"], false);
    let statuses: Vec<&str> = body["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["extended", "forged", "key_gone", "malformed"]);
}
