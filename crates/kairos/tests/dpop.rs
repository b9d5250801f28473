//! Sender-constrained tokens (DPoP, RFC 9449) through the real binary, with keys and
//! proofs made by panva's `dpop` client library under Node (`tests/dpop/proof.mjs`):
//! a proof binds the issued token (`cnf.jkt`, `token_type: DPoP`) at `POST /v1/requests`
//! and at the token endpoint; introspection shows `cnf`; a replayed proof, a proof for
//! another URL or method, and a stale one are refused and change nothing; the server
//! nonce flow; an entitlement that requires binding refuses (and audits) a request
//! without a proof; and a resource server that introspects with the proof it received
//! gets `active: false` for a copied token presented without its key.
//!
//! Needs `node`/`npm`; the npm package is installed from the committed lock file into a
//! cache outside the repository (`KAIROS_DPOP_DEPS`, default `~/.cache/kairos/dpop-tests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// The helper script and its npm dependency, installed (once per lock file).
fn deps() -> PathBuf {
    common::node::node_deps(
        "dpop",
        "KAIROS_DPOP_DEPS",
        "dpop-tests",
        &["proof.mjs"],
        "dpop",
    )
}

/// A DPoP key pair made by the library, kept in a file of the test's temp dir.
struct Key {
    deps: PathBuf,
    file: PathBuf,
    public: Value,
}

impl Key {
    fn new(deps: &Path, dir: &Path, alg: &str) -> Self {
        let file = dir.join(format!("key-{}.json", uuid::Uuid::new_v4().simple()));
        let out = node(deps, &["keygen", alg, file.to_str().unwrap()]);
        Self {
            deps: deps.to_owned(),
            file,
            public: serde_json::from_str(&out).unwrap(),
        }
    }

    /// A proof for `method` at `url`; `extra` are the script's options (`--nonce N`,
    /// `--token T`, `--skew S`).
    fn proof(&self, method: &str, url: &str, extra: &[&str]) -> String {
        let mut args = vec!["proof", self.file.to_str().unwrap(), method, url];
        args.extend_from_slice(extra);
        node(&self.deps, &args)
    }

    /// RFC 7638 thumbprint, computed here independently of both the library and Kairos.
    fn thumbprint(&self) -> String {
        use base64::Engine as _;
        let j = &self.public;
        let canonical = match j["kty"].as_str().unwrap() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                j["crv"].as_str().unwrap(),
                j["x"].as_str().unwrap(),
                j["y"].as_str().unwrap()
            ),
            "OKP" => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                j["crv"].as_str().unwrap(),
                j["x"].as_str().unwrap()
            ),
            "RSA" => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                j["e"].as_str().unwrap(),
                j["n"].as_str().unwrap()
            ),
            other => panic!("unexpected kty {other}"),
        };
        let digest = ring_digest(canonical.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }
}

fn ring_digest(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn node(deps: &Path, args: &[&str]) -> String {
    let out = Command::new("node")
        .arg(deps.join("proof.mjs"))
        .args(args)
        .current_dir(deps)
        .output()
        .expect("node is needed for these tests");
    assert!(
        out.status.success(),
        "node proof.mjs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts the broker on the test configuration plus `extra` TOML (appended at the end)
/// and `policy` (a Cedar file beside the others), with a resource server for
/// `orders-api`. Returns the server, the workload's platform token and the resource
/// server's API token.
fn start(dir: &Path, extra: &str, policy: &str) -> (Server, String, String) {
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.join("cfg"), &issuer, "");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(extra);
    std::fs::write(&config, toml).unwrap();
    std::fs::write(dir.join("cfg/policies/extra.cedar"), policy).unwrap();
    let server = Server::start(&dir.join("data"), Some(&config), None);
    let api = Api::new(&server);
    let (status, rs) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": "orders-rs", "role": "resource-server", "targets": ["orders-api"]}),
    );
    assert_eq!(status, 201, "{rs}");
    let platform = issuer.mint(SUBJECT, json!({}));
    (server, platform, rs["token"].as_str().unwrap().to_owned())
}

/// `POST /v1/requests` as the workload, with a `DPoP` header when `proof` is given.
fn request(
    api: &Api,
    platform: &str,
    proof: Option<&str>,
    entitlement: &str,
) -> (u16, Value, Option<String>) {
    let mut req = api
        .http
        .post(format!("{}/v1/requests", api.base))
        .bearer_auth(platform)
        .json(&json!({
            "entitlement": entitlement,
            "task": {"kind": "job", "ref": "run-7", "reason": "nightly backup"},
            "ttl": "10m",
        }));
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().unwrap(), nonce)
}

fn grants_count(api: &Api) -> usize {
    let (status, body) = api.get(ADMIN, "/v1/grants");
    assert_eq!(status, 200, "{body}");
    body["grants"].as_array().unwrap().len()
}

fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Introspection by the resource server, saying how it received the token: `htm`,
/// `htu`, and the proof that came with it, if any.
fn introspect_presented(api: &Api, rs: &str, token: &str, url: &str, proof: Option<&str>) -> Value {
    let mut form = vec![("token", token), ("htm", "GET"), ("htu", url)];
    if let Some(p) = proof {
        form.push(("dpop_proof", p));
    }
    let resp = api
        .http
        .post(format!("{}/v1/oauth/introspect", api.base))
        .basic_auth("orders-rs", Some(rs))
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().unwrap()
}

#[test]
fn a_proof_binds_the_token_and_introspection_shows_the_key() {
    let deps = deps();
    let dir = tempfile::tempdir().unwrap();
    let (server, platform, rs) = start(dir.path(), "", "");
    let api = Api::new(&server);
    let url = server.url("/v1/requests");

    for alg in ["ES256", "EdDSA", "RS256"] {
        let key = Key::new(&deps, dir.path(), alg);
        let proof = key.proof("POST", &url, &[]);
        let (status, body, _) = request(&api, &platform, Some(&proof), "orders-api/read");
        assert_eq!(status, 201, "{alg}: {body}");
        let credential = &body["credential"];
        assert_eq!(credential["token_type"], "DPoP", "{body}");
        let token = credential["access_token"].as_str().unwrap();
        assert_eq!(claims_of(token)["cnf"]["jkt"], key.thumbprint(), "{alg}");

        let seen = api.introspect(&rs, token);
        assert_eq!(seen["active"], true, "{seen}");
        assert_eq!(seen["token_type"], "DPoP", "{seen}");
        assert_eq!(seen["cnf"]["jkt"], key.thumbprint(), "{seen}");

        // Read again by its workload: minted anew, still bound to the same key.
        let id = body["request"]["id"].as_str().unwrap();
        let (status, again) = api.get(&platform, &format!("/v1/requests/{id}"));
        assert_eq!(status, 200, "{again}");
        let token = again["credential"]["access_token"].as_str().unwrap();
        assert_eq!(claims_of(token)["cnf"]["jkt"], key.thumbprint());
        assert_eq!(again["credential"]["token_type"], "DPoP");
    }

    // Without a proof nothing changes: a Bearer token without `cnf`.
    let (status, body, _) = request(&api, &platform, None, "orders-api/read");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["credential"]["token_type"], "Bearer");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert!(claims_of(token).get("cnf").is_none());
    let seen = api.introspect(&rs, token);
    assert_eq!(seen["token_type"], "Bearer");
    assert!(seen.get("cnf").is_none(), "{seen}");
}

#[test]
fn bad_proofs_are_refused_and_change_nothing() {
    let deps = deps();
    let dir = tempfile::tempdir().unwrap();
    let (server, platform, _rs) = start(dir.path(), "", "");
    let api = Api::new(&server);
    let url = server.url("/v1/requests");
    let key = Key::new(&deps, dir.path(), "ES256");

    let proof = key.proof("POST", &url, &[]);
    let (status, body, _) = request(&api, &platform, Some(&proof), "orders-api/read");
    assert_eq!(status, 201, "{body}");
    let before = grants_count(&api);

    let refused = |proof: &str, words: &str| {
        let (status, body, _) = request(&api, &platform, Some(proof), "orders-api/read");
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_dpop_proof", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
        assert_eq!(
            grants_count(&api),
            before,
            "a refused proof created a grant"
        );
    };
    // The same proof again.
    refused(&proof, "already used");
    // A proof for another URL, and for another method.
    refused(
        &key.proof("POST", &server.url("/v1/grants"), &[]),
        "is for URL",
    );
    refused(&key.proof("GET", &url, &[]), "is for method");
    // Made five minutes ago (the window is 60 s), or five minutes ahead.
    refused(
        &key.proof("POST", &url, &["--skew", "-300"]),
        "make a fresh one",
    );
    refused(
        &key.proof("POST", &url, &["--skew", "300"]),
        "make a fresh one",
    );
    // Not a proof at all.
    refused("not-a-jwt", "malformed");

    // The token endpoint answers in RFC 9449's shape.
    let token_url = server.url("/v1/oauth/token");
    let exchange = |proof: &str| {
        api.http
            .post(&token_url)
            .header("DPoP", proof)
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", platform.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("scope", "orders-api/read"),
                ("task_kind", "job"),
                ("task_ref", "run-8"),
                ("task_reason", "nightly backup"),
            ])
            .send()
            .unwrap()
    };
    let good = key.proof("POST", &token_url, &[]);
    let resp = exchange(&good);
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.thumbprint()
    );
    let after_exchange = grants_count(&api);
    for (proof, words) in [
        (good.clone(), "already used"),
        (key.proof("POST", &url, &[]), "is for URL"),
    ] {
        let resp = exchange(&proof);
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
        assert!(
            body["error_description"].as_str().unwrap().contains(words),
            "{body}"
        );
    }
    assert_eq!(grants_count(&api), after_exchange);
}

#[test]
fn the_server_nonce_is_asked_for_and_then_accepted() {
    let deps = deps();
    let dir = tempfile::tempdir().unwrap();
    let (server, platform, _rs) = start(dir.path(), "\n[dpop]\nnonce = true\n", "");
    let api = Api::new(&server);
    let url = server.url("/v1/requests");
    let key = Key::new(&deps, dir.path(), "EdDSA");

    let (status, body, nonce) = request(
        &api,
        &platform,
        Some(&key.proof("POST", &url, &[])),
        "orders-api/read",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "use_dpop_nonce", "{body}");
    let nonce = nonce.expect("a use_dpop_nonce answer carries DPoP-Nonce");
    assert_eq!(grants_count(&api), 0);

    let (status, body, _) = request(
        &api,
        &platform,
        Some(&key.proof("POST", &url, &["--nonce", "not-the-nonce"])),
        "orders-api/read",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "use_dpop_nonce", "{body}");

    let (status, body, _) = request(
        &api,
        &platform,
        Some(&key.proof("POST", &url, &["--nonce", &nonce])),
        "orders-api/read",
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["credential"]["token_type"], "DPoP");
}

#[test]
fn an_entitlement_that_requires_binding_refuses_a_request_without_a_proof() {
    let deps = deps();
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
[[entitlement]]
name = "orders-api/export"
target = "orders-api"
tier = "low"
max_ttl = "1h"
scopes = ["orders:export"]
require_binding = "dpop"
"#;
    let policy = r#"
@id("export-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/export");
"#;
    let (server, platform, _rs) = start(dir.path(), extra, policy);
    let api = Api::new(&server);

    let (status, body, _) = request(&api, &platform, None, "orders-api/export");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "dpop_proof_required", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requires a DPoP-bound token"),
        "{body}"
    );
    assert_eq!(grants_count(&api), 0);
    let (status, audit) = api.get(ADMIN, "/v1/audit?identity=nightly-backup");
    assert_eq!(status, 200, "{audit}");
    let refusal = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["data"]["refused"]["code"] == "dpop_proof_required")
        .unwrap_or_else(|| panic!("no audited refusal in {audit}"));
    assert_eq!(refusal["identity"], "nightly-backup", "{refusal}");

    let key = Key::new(&deps, dir.path(), "ES256");
    let proof = key.proof("POST", &server.url("/v1/requests"), &[]);
    let (status, body, _) = request(&api, &platform, Some(&proof), "orders-api/export");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["credential"]["token_type"], "DPoP");
}

#[test]
fn a_copied_token_without_its_key_is_refused_by_the_resource_server_check() {
    let deps = deps();
    let dir = tempfile::tempdir().unwrap();
    let (server, platform, rs) = start(dir.path(), "", "");
    let api = Api::new(&server);
    let key = Key::new(&deps, dir.path(), "ES256");
    let proof = key.proof("POST", &server.url("/v1/requests"), &[]);
    let (status, body, _) = request(&api, &platform, Some(&proof), "orders-api/read");
    assert_eq!(status, 201, "{body}");
    let token = body["credential"]["access_token"].as_str().unwrap();

    // The resource server's own URL: the proof is for the request it received.
    let resource = "https://orders.internal/orders/42";
    let holder = key.proof("GET", resource, &["--token", token]);
    let seen = introspect_presented(&api, &rs, token, resource, Some(&holder));
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["cnf"]["jkt"], key.thumbprint());

    // Someone who copied the token: no proof, or a proof of their own key.
    let thief = Key::new(&deps, dir.path(), "ES256");
    for proof in [
        None,
        Some(thief.proof("GET", resource, &["--token", token])),
        // The holder's proof again (replayed), and one made for another token.
        Some(holder.clone()),
        Some(key.proof("GET", resource, &["--token", "another-token"])),
        // The holder's proof for another URL.
        Some(key.proof(
            "GET",
            "https://orders.internal/orders/43",
            &["--token", token],
        )),
    ] {
        let seen = introspect_presented(&api, &rs, token, resource, proof.as_deref());
        assert_eq!(seen, json!({"active": false}), "{proof:?}");
    }

    // A Bearer token is not affected by how it was presented.
    let (status, body, _) = request(&api, &platform, None, "orders-api/read");
    assert_eq!(status, 201, "{body}");
    let bearer = body["credential"]["access_token"].as_str().unwrap();
    let seen = introspect_presented(&api, &rs, bearer, resource, None);
    assert_eq!(seen["active"], true, "{seen}");
}
