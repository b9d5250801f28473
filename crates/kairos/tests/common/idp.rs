//! A real OpenID Connect provider for single sign-on tests: `oidc-provider` from npm,
//! run by `tests/idp/idp.mjs` on a free loopback port.

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::node::node_deps;

/// The client the IdP registers for Kairos (see [`Idp::start`]).
pub const CLIENT_ID: &str = "kairos-console";
/// Its secret: the broker reads it from this environment variable.
pub const CLIENT_SECRET: &str = "idp-test-client-secret-0123456789";
pub const SECRET_ENV: &str = "KAIROS_TEST_OIDC_SECRET";

/// A running IdP, killed on drop.
pub struct Idp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub issuer: String,
}

fn reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let lines: Lines<BufReader<ChildStdout>> = BufReader::new(stdout).lines();
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Idp {
    /// Starts the IdP with these accounts (`{"alice": {"preferred_username": "alice",
    /// "groups": [..]}}`) and the client [`CLIENT_ID`]; call [`Idp::register`] with the
    /// broker's callback before signing in.
    pub fn start(accounts: Value) -> Self {
        let deps = node_deps(
            "idp",
            "KAIROS_IDP_DEPS",
            "idp-tests",
            &["idp.mjs"],
            "oidc-provider",
        );
        let config = serde_json::json!({
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
            "accounts": accounts,
        });
        let mut child = Command::new("node")
            .arg(deps.join("idp.mjs"))
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is needed for the single sign-on tests");
        let stdin = child.stdin.take();
        let lines = reader(child.stdout.take().unwrap());
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the IdP did not start");
        let issuer = first
            .strip_prefix("issuer ")
            .unwrap_or_else(|| panic!("unexpected first line from the IdP: {first}"))
            .to_owned();
        Self {
            child,
            stdin,
            lines,
            issuer,
        }
    }

    /// Registers the broker's callback as the client's redirect URI; the IdP then serves.
    pub fn register(&mut self, redirect_uri: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{redirect_uri}").unwrap();
        stdin.flush().unwrap();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the IdP did not get ready");
            if line == "ready" {
                return;
            }
        }
    }

    /// The `[console]` section for a broker that signs people in with this IdP.
    pub fn console_toml(&self, extra: &str) -> String {
        format!(
            "[console]\noidc_issuer = \"{}\"\noidc_name = \"Test IdP\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"{SECRET_ENV}\"\n{extra}\n",
            self.issuer
        )
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
