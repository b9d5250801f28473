//! Test harness: a real `kairos server --dev` process on port 0, a test workload issuer
//! whose keys the test makes, and helpers to call the API and the CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod idp;
pub mod node;
pub mod pg;
pub mod private;
pub mod python;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token-0123456789";
pub const ISSUER: &str = "https://ci.test.example";
pub const AUDIENCE: &str = "kairos";

/// A platform-token issuer the test controls (like a CI system's OIDC provider).
pub struct TestIssuer {
    pub kid: String,
    pkcs8: Vec<u8>,
    pub jwks: Value,
}

impl TestIssuer {
    pub fn new(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let public = pair.public_key().as_ref(); // 0x04 || x || y
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        }]});
        Self {
            kid: kid.into(),
            pkcs8,
            jwks,
        }
    }

    /// Mints a platform JWT with these claims merged over sane defaults.
    pub fn mint(&self, sub: &str, overrides: Value) -> String {
        let now = now_secs();
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
            "iat": now, "nbf": now - 5, "exp": now + 300,
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub const SUBJECT: &str = "repo:acme/backup:ref:refs/heads/main";
pub const OTHER_SUBJECT: &str = "repo:acme/deploy:ref:refs/heads/main";

/// Writes a configuration directory: kairos.toml, the issuer's JWKS, Cedar policies.
pub fn write_config(dir: &Path, issuer: &TestIssuer, extra_server: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("ci-jwks.json"), issuer.jwks.to_string()).unwrap();
    let toml = format!(
        r#"
[server]
{extra_server}

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

[[identity]]
name = "deployer"
owner = "payments"
kind = "ci-job"
issuer = "ci"
subject = "{OTHER_SUBJECT}"

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

[[entitlement]]
name = "orders-api/admin"
target = "orders-api"
tier = "high"
max_ttl = "30m"
scopes = ["orders:admin"]

[[entitlement]]
name = "orders-api/write"
target = "orders-api"
tier = "medium"
max_ttl = "1h"
scopes = ["orders:write"]
over_cap = "cap"

[policy]
files = ["policies/*.cedar"]
"#
    );
    std::fs::write(dir.join("kairos.toml"), toml).unwrap();
    std::fs::write(
        dir.join("policies/base.cedar"),
        r#"
@id("ci-read-auto")
@reason("CI jobs may read orders without approval")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/read")
when { context.task_kind == "job" };

@id("write-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/write");

@id("admin-two-approvals")
@approvals("2")
permit (principal in Kairos::Team::"payments", action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/admin");

@id("no-deployer-reads")
forbid (principal == Kairos::Identity::"deployer", action, resource == Kairos::Entitlement::"orders-api/read");
"#,
    )
    .unwrap();
    dir.join("kairos.toml")
}

pub fn kairos_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kairos")
}

/// A running `kairos server` process, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Server {
    pub fn start(data: &Path, config: Option<&Path>, store: Option<&str>) -> Self {
        Self::start_with(data, config, store, &[])
    }

    /// Like [`Server::start`] with extra `kairos server` arguments.
    pub fn start_with(
        data: &Path,
        config: Option<&Path>,
        store: Option<&str>,
        extra: &[&str],
    ) -> Self {
        Self::start_env(data, config, store, extra, &[])
    }

    /// Like [`Server::start_with`] with extra environment variables for the server.
    pub fn start_env(
        data: &Path,
        config: Option<&Path>,
        store: Option<&str>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let log = data.with_extension("log");
        let mut cmd = Command::new(kairos_bin());
        cmd.args([
            "server",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--dev-admin-token",
            ADMIN,
        ])
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        if let Some(s) = store {
            cmd.args(["--store", s]);
        }
        cmd.args(extra);
        cmd.envs(envs.iter().copied());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("kairos: listening on ") {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Self {
            child,
            addr,
            data: data.to_owned(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr)
    }

    /// SIGTERM and wait (graceful stop).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }

    /// Runs the real CLI against this server.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(kairos_bin())
            .args(args)
            .env("KAIROS_ADDR", &self.addr)
            .env("KAIROS_TOKEN", token)
            .output()
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with helpers that return (status, JSON body).
pub struct Api {
    pub http: reqwest::blocking::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &Server) -> Self {
        Self {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            base: server.addr.clone(),
        }
    }

    fn finish(resp: reqwest::blocking::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub fn get(&self, token: &str, path: &str) -> (u16, Value) {
        Self::finish(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token)
                .send()
                .unwrap(),
        )
    }

    pub fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        Self::finish(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(&body)
                .send()
                .unwrap(),
        )
    }

    pub fn form(&self, token: Option<&str>, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::finish(req.send().unwrap())
    }

    pub fn exchange(
        &self,
        platform_jwt: &str,
        entitlement: &str,
        ttl: Option<&str>,
    ) -> (u16, Value) {
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", platform_jwt),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("scope", entitlement),
            ("task_kind", "job"),
            ("task_ref", "run-42"),
            ("task_reason", "nightly backup"),
        ];
        if let Some(t) = ttl {
            form.push(("ttl", t));
        }
        self.form(None, "/v1/oauth/token", &form)
    }

    pub fn introspect(&self, caller: &str, token: &str) -> Value {
        let (status, body) = self.form(Some(caller), "/v1/oauth/introspect", &[("token", token)]);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls a grant until `pred` holds (or fails after `timeout`).
    pub fn wait_grant(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, g) = self.get(token, &format!("/v1/grants/{id}"));
            assert_eq!(status, 200, "{g}");
            if pred(&g) {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "grant never reached the expected state: {g}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
