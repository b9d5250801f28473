//! Backup and restore of both stores while the server keeps granting, with the real
//! binary: `kairos backup` (SQLite online copy) and `pg_dump -Fc` / `pg_restore`
//! (PostgreSQL) into a fresh store, a fresh server started on it with the same master key:
//! the grants of before are there and their tokens introspect active, the audit chain
//! verifies, grants made after the copy are not there, and the restored broker grants
//! again. Bad input: an existing output (without `--force`), a missing store, a
//! PostgreSQL URL; the copy never holds the master key, and without it the copy does not
//! serve.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::pg::{SHARED_PG, with_scratch_db};
use common::*;
use serde_json::json;

/// Both servers of a test: the broker's public URL is the `iss` of its tokens, so a
/// restored broker answers for the tokens of before only under the same URL.
const PUBLIC_URL: &str = "https://kairos.backup.test";

fn start(data: &Path, config: &Path, store: Option<&str>) -> Server {
    Server::start_with(data, Some(config), store, &["--issuer-url", PUBLIC_URL])
}

/// A grant's id (the token's `jti`) and its token.
#[derive(Debug, Clone)]
struct Issued {
    grant: String,
    token: String,
}

fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

fn grant(api: &Api, platform: &str) -> Issued {
    let (status, body) = api.exchange(platform, "orders-api/read", Some("30m"));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    Issued {
        grant: jti(&token),
        token,
    }
}

/// Grants in a loop on another thread until stopped; each with the moments its request
/// was sent and its answer read.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<(Instant, Instant, Issued)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server, platform: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(Mutex::new(Vec::new()));
        let api = Api::new(server);
        let (s, d) = (Arc::clone(&stop), Arc::clone(&done));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let issued = grant(&api, &platform);
                d.lock().unwrap().push((sent, Instant::now(), issued));
            }
        });
        Self {
            stop,
            done,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.done.lock().unwrap().len()
    }

    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < n {
            assert!(Instant::now() < deadline, "the load made too few grants");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Vec<(Instant, Instant, Issued)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.done.lock().unwrap())
    }
}

/// Grants made while `copy` ran: those answered before it began must be in the copy,
/// those sent after it ended must not. Returns (before, after).
fn under_load(server: &Server, platform: &str, copy: impl FnOnce()) -> (Vec<Issued>, Vec<Issued>) {
    let load = Load::start(server, platform.to_owned());
    load.wait_for(15);
    let began = Instant::now();
    copy();
    let ended = Instant::now();
    let until = load.count() + 15;
    load.wait_for(until);
    let all = load.finish();
    let before: Vec<Issued> = all
        .iter()
        .filter(|(_, answered, _)| *answered < began)
        .map(|(_, _, i)| i.clone())
        .collect();
    let after: Vec<Issued> = all
        .iter()
        .filter(|(sent, _, _)| *sent > ended)
        .map(|(_, _, i)| i.clone())
        .collect();
    assert!(
        before.len() >= 10 && after.len() >= 10,
        "requests kept arriving around the copy"
    );
    (before, after)
}

/// The restored broker: the grants of before are active and their tokens introspect
/// active; those made after the copy are unknown; the chain verifies; it grants again.
fn check_restored(server: &Server, platform: &str, before: &[Issued], after: &[Issued]) {
    let api = Api::new(server);
    for i in before {
        let (status, g) = api.get(ADMIN, &format!("/v1/grants/{}", i.grant));
        assert_eq!(status, 200, "{g}");
        assert_eq!(g["state"], "active", "{g}");
        let answer = api.introspect(ADMIN, &i.token);
        assert_eq!(answer["active"], true, "{answer}");
    }
    for i in after {
        let (status, g) = api.get(ADMIN, &format!("/v1/grants/{}", i.grant));
        assert_eq!(status, 404, "a grant made after the copy is in it: {g}");
        let answer = api.introspect(ADMIN, &i.token);
        assert_eq!(answer["active"], false, "{answer}");
    }
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("intact"), "{}", stdout(&out));
    // Its signing keys opened with the master key: it signs new tokens.
    let fresh = grant(&api, platform);
    assert_eq!(api.introspect(ADMIN, &fresh.token)["active"], true);
}

fn kairos(args: &[&str]) -> Output {
    Command::new(kairos_bin())
        .args(args)
        .env_remove("KAIROS_STORE")
        .output()
        .unwrap()
}

fn private_copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn sqlite_backup_while_granting_restores_into_a_fresh_server() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let data = dir.path().join("data");
    let server = start(&data, &config, None);
    let platform = issuer.mint(SUBJECT, json!({"exp": now_secs() + 600}));
    let store = format!("sqlite://{}", data.join("kairos.db").display());
    let out = dir.path().join("backup.db");
    let out_s = out.to_str().unwrap().to_owned();

    let (before, after) = under_load(&server, &platform, || {
        let o = kairos(&["backup", "--store", &store, "--out", &out_s]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("master key"), "{}", stdout(&o));
    });

    // The copy is private and holds no master key, in either spelling.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let key_text = std::fs::read_to_string(data.join("master.key")).unwrap();
    let key_text = key_text.trim();
    let key_raw = base64::engine::general_purpose::STANDARD
        .decode(key_text)
        .unwrap();
    assert_eq!(key_raw.len(), 32);
    let copy = std::fs::read(&out).unwrap();
    let holds = |needle: &[u8]| copy.windows(needle.len()).any(|w| w == needle);
    assert!(
        !holds(key_text.as_bytes()),
        "the backup holds the master key"
    );
    assert!(!holds(&key_raw), "the backup holds the raw master key");
    // No partial file is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");

    // Bad input.
    let before_bytes = std::fs::read(&out).unwrap();
    let o = kairos(&["backup", "--store", &store, "--out", &out_s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("already exists") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before_bytes,
        "refused, yet changed"
    );
    // --force replaces an existing file (another one: `out` is restored below).
    let forced = dir.path().join("forced.db");
    std::fs::write(&forced, b"yesterday").unwrap();
    let o = kairos(&[
        "backup",
        "--store",
        &store,
        "--out",
        forced.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&forced)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
    let missing = dir.path().join("nope").join("kairos.db");
    let o = kairos(&[
        "backup",
        "--store",
        &format!("sqlite://{}", missing.display()),
        "--out",
        dir.path().join("x.db").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = kairos(&[
        "backup",
        "--store",
        "postgres://kairos:s3cret-pw@db.internal/kairos",
        "--out",
        dir.path().join("x.db").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pg_dump -Fc"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("s3cret-pw"), "{}", stderr(&o));
    let o = kairos(&[
        "backup",
        "--store",
        &format!("sqlite://{}", config.display()),
        "--out",
        dir.path().join("x.db").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a Kairos store"), "{}", stderr(&o));
    assert!(!dir.path().join("x.db").exists());
    server.stop();

    // Without the master key the copy does not serve: its signing keys stay sealed.
    let stranger = dir.path().join("stranger");
    let restored_db = dir.path().join("restored.db");
    private_copy(&out, &restored_db);
    let o = Command::new(kairos_bin())
        .args(["server", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(&stranger)
        .arg("--store")
        .arg(format!("sqlite://{}", restored_db.display()))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("master key"), "{}", stderr(&o));

    // Restore: a fresh data directory, the copy as its store, the same master key.
    let data2 = dir.path().join("data2");
    std::fs::create_dir(&data2).unwrap();
    private_copy(&out, &data2.join("kairos.db"));
    private_copy(&data.join("master.key"), &data2.join("master.key"));
    let restored = start(&data2, &config, None);
    check_restored(&restored, &platform, &before, &after);
}

fn pg_restore(dump: &Path, url: &str) {
    let o = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "-d", url])
        .arg(dump)
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_restore: {}", stderr(&o));
}

#[test]
fn postgres_dump_while_granting_restores_into_a_new_database() {
    with_scratch_db("kairos_backup_src", |source| {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TestIssuer::new("k1");
        let config = write_config(&dir.path().join("cfg"), &issuer, "");
        let data = dir.path().join("data");
        let server = start(&data, &config, Some(source));
        let platform = issuer.mint(SUBJECT, json!({"exp": now_secs() + 600}));
        let dump: PathBuf = dir.path().join("kairos.dump");

        let (before, after) = under_load(&server, &platform, || {
            let o = Command::new("pg_dump")
                .args(["-Fc", "-f"])
                .arg(&dump)
                .arg(source)
                .output()
                .unwrap();
            assert!(o.status.success(), "pg_dump: {}", stderr(&o));
        });
        server.stop();
        // The dump holds no master key either.
        let key_text = std::fs::read_to_string(data.join("master.key")).unwrap();
        let bytes = std::fs::read(&dump).unwrap();
        assert!(
            !bytes
                .windows(key_text.trim().len())
                .any(|w| w == key_text.trim().as_bytes()),
            "the dump holds the master key"
        );

        with_scratch_db("kairos_backup_dst", |target| {
            assert!(target.starts_with(SHARED_PG));
            pg_restore(&dump, target);
            let data2 = dir.path().join("data2");
            std::fs::create_dir(&data2).unwrap();
            private_copy(&data.join("master.key"), &data2.join("master.key"));
            let restored = start(&data2, &config, Some(target));
            check_restored(&restored, &platform, &before, &after);
            restored.stop();
        });
    });
}
