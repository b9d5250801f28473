//! SPIFFE workload identity and certificate-bound tokens through the real binary, with
//! curl as the client and X.509-SVIDs made by openssl under one test CA per trust domain:
//! an SVID over mTLS authenticates its identity without a bearer token (and is audited as
//! it); expired SVIDs, SVIDs of another trust domain's CA, of an undeclared trust domain or
//! of no identity are refused with a clear 401 and write nothing; JWT-SVIDs are accepted
//! without `iss` by their trust domain's issuer; tokens issued over mTLS carry
//! `cnf.x5t#S256`, which the resource server's introspection check enforces; and
//! `require_binding = "mtls"` / `[tiers.require_binding]` refuse unbound requests.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use kairos_testkit::Certificates;
use serde_json::{Value, json};

const PROD: &str = "prod.example.org";
const OTHER: &str = "other.example.org";
const DEPLOYER_ID: &str = "spiffe://prod.example.org/ns/ci/sa/deployer";
const WORKER_ID: &str = "spiffe://other.example.org/worker";
const SVID_EXT: &str = "keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    prod: Certificates,
    other: Certificates,
    /// The key of the other trust domain's JWT-SVIDs (a `jwt-svid` key of its bundle).
    jwt_svids: TestIssuer,
    platform: TestIssuer,
    server: Server,
    rs: String,
}

/// A certificate and its key.
struct Cert {
    crt: PathBuf,
    key: PathBuf,
}

impl Cert {
    /// RFC 8705 `x5t#S256`: base64url SHA-256 of the certificate's DER.
    fn thumbprint(&self) -> String {
        let pem = std::fs::read_to_string(&self.crt).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref())
    }
}

fn svid(ca: &Certificates, name: &str, uri: &str) -> Cert {
    let (crt, key) = ca.issue(
        name,
        name,
        &format!("subjectAltName = URI:{uri}\n{SVID_EXT}"),
    );
    Cert { crt, key }
}

/// The DER of a PEM certificate, standard base64 (for a SPIFFE bundle's `x5c`).
fn der_b64(pem: &Path) -> String {
    let pem = std::fs::read_to_string(pem).unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let prod = Certificates::make(&mk(dir.path(), "prod"));
    let other = Certificates::make(&mk(dir.path(), "other"));
    let platform = TestIssuer::new("k1");
    let jwt_svids = TestIssuer::new("spire-1");
    let cfg = dir.path().join("cfg");
    let config = write_config(&cfg, &platform, "");
    // prod: PEM; other: the SPIFFE bundle format (x509-svid + jwt-svid keys).
    std::fs::copy(&prod.ca, cfg.join("prod-bundle.pem")).unwrap();
    let mut jwt_key = jwt_svids.jwks["keys"][0].clone();
    jwt_key["use"] = json!("jwt-svid");
    let bundle = json!({
        "spiffe_sequence": 1,
        "keys": [
            {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [der_b64(&other.ca)]},
            jwt_key,
        ],
    });
    std::fs::write(cfg.join("other-bundle.json"), bundle.to_string()).unwrap();
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        r#"
[tiers.require_binding]
critical = "any"

[[trust_domain]]
name = "{PROD}"
bundle_file = "prod-bundle.pem"

[[trust_domain]]
name = "{OTHER}"
bundle_file = "other-bundle.json"

[[issuer]]
name = "spire-other"
spiffe_trust_domain = "{OTHER}"
audience = "{AUDIENCE}"

[[identity]]
name = "svid-deployer"
owner = "payments"
kind = "service"
spiffe_id = "{DEPLOYER_ID}"

[[identity]]
name = "jwt-svid-worker"
owner = "payments"
kind = "service"
spiffe_id = "{WORKER_ID}"

[[entitlement]]
name = "orders-api/bound"
target = "orders-api"
tier = "low"
max_ttl = "1h"
scopes = ["orders:bound"]
require_binding = "mtls"

[[entitlement]]
name = "orders-api/critical"
target = "orders-api"
tier = "critical"
max_ttl = "15m"
scopes = ["orders:critical"]
"#
    ));
    std::fs::write(&config, toml).unwrap();
    std::fs::write(
        cfg.join("policies/spiffe.cedar"),
        r#"
@id("bound-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/bound");
@id("critical-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/critical");
"#,
    )
    .unwrap();
    // The listener asks for client certificates (optional) from both trust domains' CAs.
    let clients = dir.path().join("client-cas.pem");
    let both = [&prod.ca, &other.ca]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    std::fs::write(&clients, both).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[
            "--tls-cert-file",
            s(&prod.cert),
            "--tls-key-file",
            s(&prod.key),
            "--tls-client-ca-file",
            s(&clients),
            "--tls-client-auth",
            "optional",
        ],
    );
    let (status, rs) = curl(
        &prod,
        None,
        Some(ADMIN),
        "POST",
        &server.url("/v1/users"),
        Some(json!({"name": "orders-rs", "role": "resource-server", "targets": ["orders-api"]})),
    );
    assert_eq!(status, 201, "{rs}");
    let rs = rs["token"].as_str().unwrap().to_owned();
    Setup {
        dir,
        prod,
        other,
        jwt_svids,
        platform,
        server,
        rs,
    }
}

fn mk(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    d
}

/// curl with the server's CA, optionally a client certificate and a bearer token; the
/// status and the JSON body.
fn curl(
    ca: &Certificates,
    cert: Option<&Cert>,
    bearer: Option<&str>,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    // HTTP/1.1: curl reports an HTTP/2 stream that the server answers before reading its
    // body (a 401 from authentication) as error 92 instead of the answer.
    cmd.args([
        "-sS",
        "--http1.1",
        "--max-time",
        "30",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .args(["--cacert", s(&ca.ca)]);
    if let Some(c) = cert {
        cmd.args(["--cert", s(&c.crt), "--key", s(&c.key)]);
    }
    if let Some(b) = bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {b}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or_else(|| {
        panic!(
            "curl gave no status: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let status = status.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_ne!(
        status,
        0,
        "curl could not talk to the server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

impl Setup {
    fn request(
        &self,
        cert: Option<&Cert>,
        bearer: Option<&str>,
        entitlement: &str,
    ) -> (u16, Value) {
        curl(
            &self.prod,
            cert,
            bearer,
            "POST",
            &self.server.url("/v1/requests"),
            Some(json!({
                "entitlement": entitlement,
                "task": {"kind": "job", "ref": "run-8", "reason": "deploy"},
                "ttl": "10m",
            })),
        )
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = curl(
            &self.prod,
            None,
            Some(ADMIN),
            "GET",
            &self.server.url(path),
            None,
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    fn grants(&self) -> usize {
        self.get("/v1/grants")["grants"].as_array().unwrap().len()
    }

    /// Introspection by the resource server with extra form fields.
    fn introspect(&self, token: &str, extra: &[&str]) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "--cacert", s(&self.prod.ca)])
            .args(["-u", &format!("orders-rs:{}", self.rs)])
            .args(["--data-urlencode", &format!("token={token}")]);
        for e in extra {
            cmd.args(["--data-urlencode", e]);
        }
        let out = cmd
            .arg(self.server.url("/v1/oauth/introspect"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
    }
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_svid_authenticates_the_workload_and_binds_its_token() {
    let t = setup();
    let deployer = svid(&t.prod, "deployer", DEPLOYER_ID);

    let (status, body) = t.request(Some(&deployer), None, "orders-api/read");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["identity"], "svid-deployer", "{body}");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert_eq!(body["credential"]["token_type"], "Bearer", "{body}");
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "svid-deployer");
    assert_eq!(claims["spiffe_id"], DEPLOYER_ID);
    assert_eq!(claims["cnf"]["x5t#S256"], deployer.thumbprint(), "{claims}");

    // Audited as the mapped identity.
    let audit = t.get("/v1/audit?identity=svid-deployer");
    let records = audit["records"].as_array().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["actor"] == "workload:svid-deployer"),
        "{audit}"
    );

    // Introspection shows the binding and the SPIFFE ID.
    let seen = t.introspect(token, &[]);
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["cnf"]["x5t#S256"], deployer.thumbprint(), "{seen}");
    assert_eq!(seen["spiffe_id"], DEPLOYER_ID, "{seen}");
    // The resource server's check: the certificate it saw must be the token's.
    let right = format!("client_cert_thumbprint={}", deployer.thumbprint());
    assert_eq!(t.introspect(token, &[&right])["active"], true);
    let other = svid(&t.prod, "someone", "spiffe://prod.example.org/someone");
    let wrong = format!("client_cert_thumbprint={}", other.thumbprint());
    assert_eq!(t.introspect(token, &[&wrong]), json!({"active": false}));
    // A copied token presented without any certificate.
    assert_eq!(
        t.introspect(token, &["client_cert_thumbprint="]),
        json!({"active": false})
    );
    assert_eq!(
        t.introspect(token, &["htm=GET", "htu=https://orders.internal/x"]),
        json!({"active": false})
    );

    // Read again over mTLS: minted anew, still bound to the certificate of the request.
    let id = body["request"]["id"].as_str().unwrap();
    let (status, again) = curl(
        &t.prod,
        Some(&deployer),
        None,
        "GET",
        &t.server.url(&format!("/v1/requests/{id}")),
        None,
    );
    assert_eq!(status, 200, "{again}");
    let token = again["credential"]["access_token"].as_str().unwrap();
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], deployer.thumbprint());

    // A bearer token of another identity over the SVID: refused.
    let platform = t.platform.mint(SUBJECT, json!({}));
    let (status, body) = t.request(Some(&deployer), Some(&platform), "orders-api/read");
    assert_eq!(status, 401, "{body}");
    assert!(
        message(&body)
            .contains("is identity nightly-backup but the X.509-SVID is identity svid-deployer"),
        "{body}"
    );

    // A client certificate that is not an SVID authenticates nobody by itself, but binds
    // the token of the platform JWT it came with.
    let (crt, key) = t
        .prod
        .issue("plain", "plain client", "extendedKeyUsage = clientAuth");
    let plain = Cert { crt, key };
    let (status, body) = t.request(Some(&plain), None, "orders-api/read");
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("X.509-SVID"), "{body}");
    let (status, body) = t.request(Some(&plain), Some(&platform), "orders-api/read");
    assert_eq!(status, 201, "{body}");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], plain.thumbprint());
    assert!(claims_of(token).get("spiffe_id").is_none());
    // Without mTLS: a plain Bearer token, no cnf.
    let (status, body) = t.request(None, Some(&platform), "orders-api/read");
    assert_eq!(status, 201, "{body}");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert!(claims_of(token).get("cnf").is_none());
}

#[test]
fn bad_svids_are_refused_clearly_and_write_nothing() {
    let t = setup();
    let audit_before = t.get("/v1/audit")["records"].as_array().unwrap().len();
    let check = |cert: &Cert, expected: &str| {
        let (status, body) = t.request(Some(cert), None, "orders-api/read");
        assert_eq!(status, 401, "{expected}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
        assert!(message(&body).contains(expected), "{expected}: {body}");
    };
    // Signed by the other trust domain's CA, claiming a prod SPIFFE ID.
    let forged = svid(&t.other, "forged", DEPLOYER_ID);
    check(
        &forged,
        "does not chain to the trust bundle of trust domain \"prod.example.org\"",
    );
    // A trust domain nobody declared.
    let stranger = svid(&t.prod, "stranger", "spiffe://unknown.example.org/x");
    check(
        &stranger,
        "trust domain \"unknown.example.org\" is not declared",
    );
    // A valid SVID of no identity.
    let nobody = svid(
        &t.prod,
        "nobody",
        "spiffe://prod.example.org/ns/ci/sa/nobody",
    );
    check(
        &nobody,
        "no identity is registered for SPIFFE ID \"spiffe://prod.example.org/ns/ci/sa/nobody\"",
    );
    // Two URI SANs.
    let (crt, key) = t.prod.issue(
        "twice",
        "twice",
        &format!("subjectAltName = URI:{DEPLOYER_ID}, URI:spiffe://prod.example.org/b\n{SVID_EXT}"),
    );
    check(&Cert { crt, key }, "exactly one URI SAN");
    // A leaf that may sign certificates. (One without digitalSignature never reaches the
    // server: the TLS client refuses to sign the handshake with it.)
    let (crt, key) = t.prod.issue(
        "signer",
        "signer",
        &format!(
            "subjectAltName = URI:{DEPLOYER_ID}\nkeyUsage = critical, digitalSignature, keyCertSign"
        ),
    );
    check(&Cert { crt, key }, "keyCertSign");
    // Expired: valid for no time at all (openssl -days 0), used once the second passed.
    let expired = expiring_svid(&t.prod, "expired", DEPLOYER_ID);
    let until = now_secs() + 2;
    while now_secs() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    check(&expired, "the client certificate expired at unix time");

    assert_eq!(t.grants(), 0);
    let audit_after = t.get("/v1/audit")["records"].as_array().unwrap().len();
    assert_eq!(
        audit_before, audit_after,
        "a refused SVID wrote an audit record"
    );
}

/// An SVID signed by `ca` whose validity ends the moment it is made.
fn expiring_svid(ca: &Certificates, name: &str, uri: &str) -> Cert {
    let dir = ca.ca.parent().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName = URI:{uri}\n{SVID_EXT}\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "0",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ]);
    Cert {
        crt: dir.join(crt),
        key: dir.join(key),
    }
}

#[test]
fn jwt_svids_are_accepted_without_iss_in_their_trust_domain_only() {
    let t = setup();
    // No `iss`: found by the trust domain of its SPIFFE ID `sub`.
    let jwt = t.jwt_svids.mint(WORKER_ID, json!({"iss": null}));
    let (status, body) = t.request(None, Some(&jwt), "orders-api/read");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["identity"], "jwt-svid-worker", "{body}");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert_eq!(claims_of(token)["spiffe_id"], WORKER_ID);

    // Signed by the other trust domain's key, but its subject is in prod: no JWT-SVID
    // issuer for prod, so refused.
    let jwt = t.jwt_svids.mint(DEPLOYER_ID, json!({"iss": null}));
    let (status, body) = t.request(None, Some(&jwt), "orders-api/read");
    assert_eq!(status, 401, "{body}");
    // A subject that is no SPIFFE ID.
    let jwt = t.jwt_svids.mint("worker", json!({"iss": null}));
    let (status, body) = t.request(None, Some(&jwt), "orders-api/read");
    assert_eq!(status, 401, "{body}");
    // `aud` is still checked.
    let jwt = t
        .jwt_svids
        .mint(WORKER_ID, json!({"iss": null, "aud": "someone-else"}));
    let (status, body) = t.request(None, Some(&jwt), "orders-api/read");
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("audience"), "{body}");
    // Signed by another key (the platform issuer's), claiming the worker: refused.
    let jwt = t.platform.mint(WORKER_ID, json!({"iss": null}));
    let (status, body) = t.request(None, Some(&jwt), "orders-api/read");
    assert_eq!(status, 401, "{body}");
    assert_eq!(t.grants(), 1);
}

#[test]
fn entitlements_and_tiers_that_require_binding_refuse_unbound_requests() {
    let t = setup();
    let platform = t.platform.mint(SUBJECT, json!({}));
    let deployer = svid(&t.prod, "deployer", DEPLOYER_ID);

    // require_binding = "mtls" on the entitlement.
    let (status, body) = t.request(None, Some(&platform), "orders-api/bound");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "mtls_required", "{body}");
    assert!(
        message(&body).contains("entitlement orders-api/bound requires a certificate-bound token"),
        "{body}"
    );
    let (status, body) = t.request(Some(&deployer), None, "orders-api/bound");
    assert_eq!(status, 201, "{body}");

    // [tiers.require_binding] critical = "any".
    let (status, body) = t.request(None, Some(&platform), "orders-api/critical");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "binding_required", "{body}");
    assert!(
        message(&body).contains("the critical tier requires"),
        "{body}"
    );
    let (status, body) = t.request(Some(&deployer), None, "orders-api/critical");
    assert_eq!(status, 201, "{body}");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], deployer.thumbprint());

    // The refusals were audited; only the two bound requests were granted.
    let audit = t.get("/v1/audit?identity=nightly-backup");
    let refused: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["data"]["refused"].is_null())
        .collect();
    assert_eq!(refused.len(), 2, "{audit}");
    assert_eq!(t.grants(), 2);

    // The token endpoint over mTLS binds too; without it, the tier refuses.
    let exchange = |cert: Option<&Cert>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "--cacert", s(&t.prod.ca)]);
        if let Some(c) = cert {
            cmd.args(["--cert", s(&c.crt), "--key", s(&c.key)]);
        }
        for kv in [
            "grant_type=urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            format!("subject_token={platform}"),
            "subject_token_type=urn:ietf:params:oauth:token-type:jwt".to_owned(),
            "scope=orders-api/critical".to_owned(),
            "task_kind=job".to_owned(),
            "task_ref=run-9".to_owned(),
            "task_reason=deploy".to_owned(),
        ] {
            cmd.args(["--data-urlencode", &kv]);
        }
        let out = cmd.arg(t.server.url("/v1/oauth/token")).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let refused = exchange(None);
    assert_eq!(refused["error"], "invalid_request", "{refused}");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("the critical tier requires a sender-constrained token"),
        "{refused}"
    );
    let (crt, key) = t
        .prod
        .issue("plain", "plain client", "extendedKeyUsage = clientAuth");
    let plain = Cert { crt, key };
    let granted = exchange(Some(&plain));
    let token = granted["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{granted}"));
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], plain.thumbprint());
    let _ = &t.dir;
}
