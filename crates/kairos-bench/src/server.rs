//! The real `kairos server` process under test, a platform-token issuer the bench controls
//! (like a CI system's OIDC provider), and a configuration whose Cedar policy auto-grants
//! `orders-api/read` to CI jobs — the same setup as the integration tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const ISSUER: &str = "https://ci.bench.example";
const AUDIENCE: &str = "kairos";
pub const SUBJECT: &str = "repo:acme/backup:ref:refs/heads/main";

/// Signs platform JWTs with a fresh P-256 key; its JWKS goes into the server's config.
pub struct Issuer {
    kid: String,
    pkcs8: Vec<u8>,
    jwks: Value,
}

impl Issuer {
    pub fn new() -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?
            .as_ref()
            .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| anyhow::anyhow!("loading the generated P-256 key failed"))?;
        let public = pair.public_key().as_ref(); // 0x04 || x || y
        let kid = "bench-1".to_owned();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        }]});
        Ok(Self { kid, pkcs8, jwks })
    }

    /// A platform JWT for [`SUBJECT`], valid for `lifetime`.
    pub fn mint(&self, lifetime: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT,
            "iat": now, "nbf": now - 5, "exp": now + lifetime.as_secs() as i64,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8);
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }
}

/// Writes `kairos.toml`, the issuer's JWKS and the Cedar policy into `dir`.
pub fn write_config(dir: &Path, issuer: &Issuer) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(dir.join("ci-jwks.json"), issuer.jwks.to_string())?;
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

[policy]
files = ["policies/*.cedar"]
"#
    );
    let path = dir.join("kairos.toml");
    std::fs::write(&path, toml)?;
    std::fs::write(
        dir.join("policies/base.cedar"),
        r#"
@id("ci-read-auto")
@reason("CI jobs may read orders without approval")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/read")
when { context.task_kind == "job" };
"#,
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

/// A running `kairos server --dev` on port 0; killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(bin: &Path, data: &Path, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(["server", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--dev-admin-token", ADMIN_TOKEN])
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(config)
            // Per-request info logs would measure the terminal, not the broker; the audit
            // log (in the store) is unaffected by this.
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
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
            log: log.to_owned(),
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => server.addr = addr,
            Err(_) => bail!(
                "the server did not start; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr.trim_end_matches('/'))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The RFC 8693 token-exchange form for one auto-granted `orders-api/read` grant.
pub fn exchange_form(platform_jwt: &str) -> Vec<(&'static str, String)> {
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
        ("task_ref", "bench-run".into()),
        ("task_reason", "benchmark".into()),
        ("ttl", "30m".into()),
    ]
}
