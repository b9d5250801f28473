//! The real `kairos server` process under test, a platform-token issuer the bench controls
//! (like a CI system's OIDC provider), and a configuration whose Cedar policy auto-grants
//! `orders-api/read` to CI jobs — the same setup as the integration tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::guard;

pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const ISSUER: &str = "https://ci.bench.example";
const AUDIENCE: &str = "kairos";
pub const SUBJECT: &str = "repo:acme/backup:ref:refs/heads/main";

/// Signs platform JWTs with a fresh P-256 key; its JWKS goes into the server's config.
pub struct Issuer {
    kid: String,
    pair: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    jwks: Value,
    /// Numbers each token's `jti`, so no two tokens are alike.
    minted: AtomicU64,
}

impl Issuer {
    pub fn new() -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("loading the generated P-256 key failed"))?;
        let public = pair.public_key().as_ref(); // 0x04 || x || y
        let kid = "bench-1".to_owned();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        }]});
        Ok(Self {
            kid,
            pair,
            rng,
            jwks,
            minted: AtomicU64::new(0),
        })
    }

    /// A new platform JWT for [`SUBJECT`], valid for `lifetime`: ES256, made here with ring
    /// (one signature, so minting one per request costs the bench little).
    pub fn mint(&self, lifetime: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let jti = self.minted.fetch_add(1, Ordering::Relaxed);
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "jti": format!("bench-{jti}"),
            "iat": now, "nbf": now - 5, "exp": now + lifetime.as_secs() as i64,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing a platform token failed"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// What a configuration adds to the base one: more TOML (targets, entitlements) and more
/// Cedar policies.
#[derive(Debug, Clone, Default)]
pub struct ConfigExtras {
    pub toml: String,
    pub cedar: String,
}

/// Writes `kairos.toml`, the issuer's JWKS and the Cedar policy into `dir`.
pub fn write_config(dir: &Path, issuer: &Issuer, extras: &ConfigExtras) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(dir.join("ci-jwks.json"), issuer.jwks.to_string())?;
    let extra_toml = &extras.toml;
    let toml = format!(
        r#"
[[issuer]]
name = "ci"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "ci-jwks.json"

[[team]]
name = "payments"
owners = ["carol"]
approvers = ["alice", "bob", "carol"]

[[identity]]
name = "nightly-backup"
owner = "payments"
kind = "ci-job"
issuer = "ci"
subject = "{SUBJECT}"

[[target]]
name = "orders-api"
kind = "token"
audience = "https://orders.internal"

[[entitlement]]
name = "orders-api/read"
target = "orders-api"
tier = "low"
max_ttl = "1h"
scopes = ["orders:read"]
{extra_toml}
[policy]
files = ["policies/*.cedar"]
"#
    );
    let path = dir.join("kairos.toml");
    std::fs::write(&path, toml)?;
    std::fs::write(
        dir.join("policies/base.cedar"),
        format!(
            r#"
@id("ci-read-auto")
@reason("CI jobs may read orders without approval")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/read")
when {{ context.task_kind == "job" }};
{}
"#,
            extras.cedar
        ),
    )?;
    Ok(path)
}

/// The `kairos` binary built with the same profile as this bench: it sits next to it.
pub fn kairos_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating the bench executable")?;
    let dir = me
        .parent()
        .context("the bench executable has no parent directory")?;
    let bin = dir.join(format!("kairos{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        let flag = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        bail!(
            "the server binary {} is missing; build it first with `cargo build{flag} -p kairos`",
            bin.display()
        );
    }
    Ok(bin)
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--data`: the dev-mode data directory (master key; the SQLite store unless `store`).
    pub data: PathBuf,
    pub config: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// `--store`, e.g. `postgres://postgres@127.0.0.1:5432/db`; default SQLite under `data`.
    pub store: Option<String>,
    /// Extra environment (target admin URLs).
    pub envs: Vec<(String, String)>,
    /// Extra `kairos server` arguments (the TLS listener's files).
    pub args: Vec<String>,
}

/// A running `kairos server --dev` on port 0; killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
    /// When the process was spawned.
    pub spawned: Instant,
    /// From spawning the process until it printed that it is listening.
    pub until_listening: Duration,
}

impl Server {
    pub fn start(bin: &Path, opts: &ServerOptions) -> anyhow::Result<Self> {
        let spawned = Instant::now();
        let mut cmd = Command::new(bin);
        cmd.args(["server", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--dev-admin-token", ADMIN_TOKEN])
            .arg("--data")
            .arg(&opts.data)
            .arg("--config")
            .arg(&opts.config)
            // Per-request info logs would measure the terminal, not the broker; the audit
            // log (in the store) is unaffected by this. KAIROS_BENCH_SERVER_LOG overrides
            // it when diagnosing a phase (the figures are then not comparable).
            .env(
                "RUST_LOG",
                std::env::var("KAIROS_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&opts.log)?);
        if let Some(store) = &opts.store {
            cmd.arg("--store").arg(store);
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.envs {
            cmd.env(k, v);
        }
        let mut child = guard::spawn_tracked(&mut cmd)
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout from the server")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining stdout for the server's whole life, so it never blocks on a pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("kairos: listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            addr: String::new(),
            log: opts.log.clone(),
            spawned,
            until_listening: Duration::ZERO,
        };
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(addr) => {
                server.addr = addr;
                server.until_listening = spawned.elapsed();
            }
            Err(_) => bail!(
                "the server did not start; its log:\n{}",
                std::fs::read_to_string(&opts.log).unwrap_or_default()
            ),
        }
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr.trim_end_matches('/'))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` of the listener.
    pub fn host_port(&self) -> &str {
        self.addr
            .trim_start_matches("http://")
            .trim_end_matches('/')
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// SIGTERM, then wait for a graceful exit (SIGKILL after `patience`).
    pub fn stop(mut self, patience: Duration) {
        guard::kill_pid(self.child.id(), "-TERM");
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        guard::untrack_pid(self.child.id());
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes, from `/proc/PID/status`.
pub fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed /proc status line")?
            .parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// One `GET path` over a fresh connection; the status code (0 if none could be read).
pub fn http_get_status(host_port: &str, path: &str, timeout: Duration) -> u16 {
    use std::io::{Read, Write};
    let Ok(addr) = host_port.parse::<std::net::SocketAddr>() else {
        return 0;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The RFC 8693 token-exchange form for one auto-granted `orders-api/read` grant.
pub fn exchange_form(platform_jwt: &str, task_ref: &str, ttl: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        ),
        ("subject_token", platform_jwt.into()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:jwt".into(),
        ),
        ("scope", "orders-api/read".into()),
        ("task_kind", "job".into()),
        ("task_ref", task_ref.into()),
        ("task_reason", "benchmark".into()),
        ("ttl", ttl.into()),
    ]
}
