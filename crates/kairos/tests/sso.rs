//! Single sign-on to the console through a real OpenID Connect provider (`oidc-provider`
//! from npm, `tests/idp/`), driven with an HTTP client through the IdP's own login form,
//! against the real `kairos` binary: the whole code flow, the session it opens, approvals
//! as the person (with the IdP narrowing their teams), and every refusal: IdP-side denial,
//! a tampered `state`, a missing or replayed flow cookie, an unknown user, a resource
//! server, an unreachable IdP, and bad `[console]` configuration at start. On SQLite and
//! on the machine's PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::idp::{CLIENT_SECRET, Idp, SECRET_ENV};
use common::*;
use reqwest::blocking::{Client, Response};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

fn add_user(api: &Api, body: Value) -> String {
    let (status, r) = api.post(ADMIN, "/v1/users", body);
    assert_eq!(status, 201, "{r}");
    r["token"].as_str().unwrap().to_owned()
}

/// Cookies of one site, kept by hand (names are distinct enough here to ignore paths).
#[derive(Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, resp: &Response) {
        for set in resp.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let gone = value.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0");
            if gone {
                self.0.remove(name.trim());
            } else {
                self.0
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What a person does at the IdP's login page.
#[derive(Clone, Copy)]
enum AtIdp<'a> {
    SignIn(&'a str),
    Cancel,
}

/// A browser without JavaScript: its own cookies for Kairos and for the IdP, no
/// redirects followed.
struct Browser {
    http: Client,
    base: String,
    issuer: String,
    kairos: Jar,
    idp: Jar,
}

impl Browser {
    fn new(server: &Server, idp: &Idp) -> Self {
        Self {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: server.addr.clone(),
            issuer: idp.issuer.clone(),
            kairos: Jar::default(),
            idp: Jar::default(),
        }
    }

    fn get(&mut self, path_or_url: &str) -> Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let resp = self
            .http
            .get(&url)
            .header(COOKIE, self.kairos.header())
            .send()
            .unwrap();
        self.kairos.take(&resp);
        resp
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.kairos.header())
            .form(form)
            .send()
            .unwrap();
        self.kairos.take(&resp);
        resp
    }

    fn at_idp(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> Response {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.issuer)
        } else {
            url.to_owned()
        };
        let req = match form {
            Some(f) => self.http.post(&url).form(f),
            None => self.http.get(&url),
        };
        let resp = req.header(COOKIE, self.idp.header()).send().unwrap();
        self.idp.take(&resp);
        resp
    }

    /// From `/ui/sso/start` through the IdP's login form to the URL the IdP sends the
    /// browser back to (the broker's callback, not yet followed).
    fn through_idp(&mut self, what: AtIdp<'_>) -> String {
        let resp = self.get("/ui/sso/start");
        assert_eq!(resp.status(), 303, "{}", resp.text().unwrap());
        let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        for flag in [
            "kairos_sso=",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/ui",
            "Max-Age=600",
        ] {
            assert!(set.contains(flag), "{set}");
        }
        let mut next = location(&resp).to_owned();
        assert!(next.starts_with(&self.issuer), "{next}");
        for param in [
            "response_type=code",
            "client_id=kairos-console",
            "code_challenge_method=S256",
            "code_challenge=",
            "nonce=",
            "state=",
            "scope=openid+profile+email",
        ] {
            assert!(next.contains(param), "{param} missing from {next}");
        }
        let mut acted = false;
        for _ in 0..12 {
            if next.starts_with(&self.base) {
                return next;
            }
            let resp = self.at_idp(&next, None);
            if resp.status() == 303 || resp.status() == 302 {
                next = location(&resp).to_owned();
                continue;
            }
            assert_eq!(resp.status(), 200, "{next}");
            assert!(!acted, "the IdP asked twice: {}", resp.text().unwrap());
            let html = resp.text().unwrap();
            acted = true;
            let resp = match what {
                AtIdp::SignIn(login) => {
                    let action = attr_after(&html, "<form", "action=\"");
                    self.at_idp(
                        &action,
                        Some(&[("prompt", "login"), ("login", login), ("password", "any")]),
                    )
                }
                AtIdp::Cancel => {
                    let href = abort_href(&html).expect("the IdP's cancel link");
                    self.at_idp(&href, None)
                }
            };
            assert!(resp.status().is_redirection(), "{}", resp.status());
            next = location(&resp).to_owned();
        }
        panic!("the IdP never sent the browser back: {next}");
    }

    /// Signs in through the IdP; returns the callback's answer.
    fn sign_in(&mut self, login: &str) -> Response {
        let back = self.through_idp(AtIdp::SignIn(login));
        self.get(&back)
    }

    fn session(&self) -> Option<&String> {
        self.kairos.0.get("kairos_session")
    }
}

/// The first `href` that ends in `/abort`.
fn abort_href(html: &str) -> Option<String> {
    let at = html.find("/abort\"")?;
    let start = html[..at].rfind('"')? + 1;
    Some(html[start..at + "/abort".len()].to_owned())
}

/// The value of attribute `attr` (e.g. `action="`) after the first `marker`.
fn attr_after(html: &str, marker: &str, attr: &str) -> String {
    let from = html.find(marker).unwrap_or(0);
    let rest = &html[from..];
    let at = rest.find(attr).expect("attribute") + attr.len();
    rest[at..at + rest[at..].find('"').unwrap()].replace("&amp;", "&")
}

fn location(resp: &Response) -> &str {
    resp.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

/// The CSRF token the page's forms carry.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn query_param(url: &str, name: &str) -> String {
    let q = url.split_once('?').unwrap().1;
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

/// The IdP's accounts: who they say they are and which groups they are in.
fn accounts() -> Value {
    json!({
        "bob": {"preferred_username": "bob", "groups": ["payments", "unrelated"]},
        "dave": {"preferred_username": "dave", "groups": ["idp-payments"]},
        // Alice is on the payments team in Kairos (and listed as its approver by name),
        // but the IdP does not put her in its payments group.
        "alice": {"preferred_username": "alice", "groups": ["marketing"]},
        "rs": {"preferred_username": "orders-rs", "groups": []},
        "mallory": {"preferred_username": "mallory", "groups": ["payments"]},
    })
}

/// An IdP, a broker configured for it (`console_extra` appended to `[console]`), and the
/// IdP told the broker's callback.
fn start(dir: &Path, store: Option<&str>, console_extra: &str) -> (Idp, Server, TestIssuer) {
    let mut idp = Idp::start(accounts());
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.join("cfg"), &issuer, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&idp.console_toml(console_extra));
    std::fs::write(&config, text).unwrap();
    let server = Server::start_env(
        &dir.join("data"),
        Some(&config),
        store,
        &[],
        &[(SECRET_ENV, CLIENT_SECRET)],
    );
    idp.register(&server.url("/ui/sso/callback"));
    (idp, server, issuer)
}

const NARROWING: &str = "groups_claim = \"groups\"\n\n[console.team_groups]\n# dave's IdP calls the payments team idp-payments\n";

fn sso_end_to_end(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    // The payments team's IdP group is called idp-payments.
    let (idp, server, issuer) = start(
        dir.path(),
        store,
        &format!("{NARROWING}payments = \"idp-payments\"\n"),
    );
    let api = Api::new(&server);
    for name in ["bob", "dave", "alice"] {
        add_user(
            &api,
            json!({"name": name, "role": "approver", "teams": ["payments"]}),
        );
    }
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let req = body["request_id"].as_str().unwrap().to_owned();

    // The sign-in page offers the IdP.
    let mut dave = Browser::new(&server, &idp);
    let login = dave.get("/ui/login");
    assert_eq!(login.status(), 200);
    let login = login.text().unwrap();
    assert!(login.contains("href=\"/ui/sso/start\""), "{login}");
    assert!(login.contains("Sign in with Test IdP"), "{login}");
    assert!(
        login.contains("name=\"token\""),
        "token sign-in stays on by default"
    );

    // Dave signs in at the IdP and lands in his inbox with a session cookie.
    let resp = dave.sign_in("dave");
    assert_eq!(resp.status(), 303, "{}", resp.text().unwrap());
    assert_eq!(location(&resp), "/ui/inbox");
    let sets: Vec<String> = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session_set = sets
        .iter()
        .find(|s| s.starts_with("kairos_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/ui"] {
        assert!(session_set.contains(flag), "{session_set}");
    }
    assert!(
        sets.iter()
            .any(|s| s.starts_with("kairos_sso=;") && s.contains("Max-Age=0")),
        "the flow cookie is cleared: {sets:?}"
    );
    assert!(!dave.kairos.0.contains_key("kairos_sso"));
    assert!(dave.session().is_some());
    let inbox = dave.get("/ui/inbox");
    assert_eq!(inbox.status(), 200);
    let inbox = inbox.text().unwrap();
    assert!(inbox.contains(&req), "{inbox}");
    assert!(inbox.contains("dave (approver)"), "{inbox}");
    let token = csrf(&inbox);
    let resp = dave.post(
        &format!("/ui/requests/{req}/approve"),
        &[("csrf", &token), ("reason", "change CHG-1 checked")],
    );
    assert_eq!(resp.status(), 303, "{}", resp.text().unwrap());
    let (_, r) = api.get(ADMIN, &format!("/v1/requests/{req}"));
    let approvals = r["request"]["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{r}");
    assert_eq!(approvals[0]["approver"], "dave", "{r}");

    // Alice is in payments in Kairos and listed as its approver, but her IdP groups do not
    // include it: this session does not act for payments.
    let mut alice = Browser::new(&server, &idp);
    let resp = alice.sign_in("alice");
    assert_eq!(resp.status(), 303, "{}", resp.text().unwrap());
    let inbox = alice.get("/ui/inbox").text().unwrap();
    assert!(!inbox.contains(&req), "not in her inbox: {inbox}");
    let page = alice.get(&format!("/ui/requests/{req}")).text().unwrap();
    let token = csrf(&page);
    assert!(
        !page.contains("/approve\""),
        "no approve form for her: {page}"
    );
    let resp = alice.post(
        &format!("/ui/requests/{req}/approve"),
        &[("csrf", &token), ("reason", "trying")],
    );
    assert_eq!(resp.status(), 403);
    let text = resp.text().unwrap();
    assert!(text.contains("did not assert team payments"), "{text}");
    let (_, r) = api.get(ADMIN, &format!("/v1/requests/{req}"));
    assert_eq!(
        r["request"]["approvals"].as_array().unwrap().len(),
        1,
        "{r}"
    );
    // Signing out ends the session.
    let resp = alice.post("/ui/logout", &[("csrf", &token)]);
    assert_eq!(resp.status(), 303);
    assert_eq!(alice.get("/ui/inbox").status(), 303);

    // A tampered narrowing (the teams part of the cookie) is not a session.
    let cookie = dave.session().unwrap().clone();
    let (secret, _teams) = cookie.split_once('.').expect("a narrowed session id");
    let forged = format!(
        "{secret}.{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            "payments,ops"
        )
    );
    let mut forger = Browser::new(&server, &idp);
    forger.kairos.0.insert("kairos_session".into(), forged);
    assert_eq!(forger.get("/ui/inbox").status(), 303);

    // Bob's IdP group is called "payments", but this configuration maps the team to the
    // IdP group idp-payments: he signs in and does not act for payments.
    let mut bob = Browser::new(&server, &idp);
    assert_eq!(bob.sign_in("bob").status(), 303);
    let inbox = bob.get("/ui/inbox").text().unwrap();
    assert!(!inbox.contains(&req), "{inbox}");

    // The audit trail: signed in as the person, method oidc, the IdP subject; no tokens.
    let (_, audit) = api.get(ADMIN, "/v1/audit?limit=500");
    let records = audit["records"].as_array().unwrap();
    let dave_in = records
        .iter()
        .find(|r| r["kind"] == "console_signed_in" && r["actor"] == "user:dave")
        .unwrap_or_else(|| panic!("{audit}"));
    let data = &dave_in["data"];
    assert_eq!(data["method"], "oidc", "{dave_in}");
    assert_eq!(data["subject"], "dave", "{dave_in}");
    assert_eq!(data["teams"], json!(["payments"]), "{dave_in}");
    let alice_in = records
        .iter()
        .find(|r| r["kind"] == "console_signed_in" && r["actor"] == "user:alice")
        .unwrap();
    assert_eq!(alice_in["data"]["teams"], json!([]), "{alice_in}");
    let text = audit.to_string();
    for secret in [CLIENT_SECRET, "id_token", "eyJ"] {
        assert!(!text.contains(secret), "the audit holds {secret}");
    }
    assert!(
        records
            .iter()
            .any(|r| r["actor"] == "user:dave" && r["kind"].as_str().unwrap().contains("approv")),
        "the approval is audited as dave: {audit}"
    );
    let log = server.log_text();
    assert!(
        !log.contains(CLIENT_SECRET),
        "the log holds the client secret"
    );
    // (The broker's signed audit checkpoints are JWTs too, and public.)
    let jwt_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("eyJ") && !l.contains("audit checkpoint"))
        .collect();
    assert!(jwt_lines.is_empty(), "the log holds a JWT: {jwt_lines:?}");
}

#[test]
fn single_sign_on_approves_as_the_person_on_sqlite() {
    sso_end_to_end(None);
}

#[test]
fn single_sign_on_approves_as_the_person_on_postgres() {
    common::pg::with_scratch_db("kairos_sso", |url| sso_end_to_end(Some(url)));
}

/// A refusal: the sign-in page with `status`, saying `needle`, no session, and nothing of
/// the IdP's answer echoed.
fn assert_refused(resp: Response, status: u16, needle: &str, not_echoed: &[&str]) {
    assert_eq!(resp.status(), status);
    let sets: Vec<String> = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        !sets
            .iter()
            .any(|s| s.starts_with("kairos_session=") && !s.starts_with("kairos_session=;")),
        "no session on a refusal: {sets:?}"
    );
    let html = resp.text().unwrap();
    assert!(
        html.contains("<h1>Sign in</h1>"),
        "the sign-in page: {html}"
    );
    assert!(html.contains(needle), "{needle:?} not in {html}");
    for secret in not_echoed.iter().filter(|s| !s.is_empty()) {
        assert!(!html.contains(secret), "{secret:?} echoed in {html}");
    }
}

#[test]
fn single_sign_on_refusals_are_clear_and_reveal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, server, _) = start(dir.path(), None, "");
    let api = Api::new(&server);
    add_user(
        &api,
        json!({"name": "bob", "role": "approver", "teams": ["payments"]}),
    );
    add_user(
        &api,
        json!({"name": "orders-rs", "role": "resource-server", "targets": ["orders-api"]}),
    );

    // The person cancels at the IdP: it answers access_denied.
    let mut b = Browser::new(&server, &idp);
    let back = b.through_idp(AtIdp::Cancel);
    assert!(back.contains("error=access_denied"), "{back}");
    assert_refused(
        b.get(&back),
        403,
        "did not sign you in (access_denied)",
        &[],
    );
    assert!(
        !b.kairos.0.contains_key("kairos_sso"),
        "the flow cookie is cleared"
    );

    // A crafted link cannot put its own words on the page: only an OAuth error code shows.
    let mut b = Browser::new(&server, &idp);
    assert_refused(
        b.get("/ui/sso/callback?error=Call+us+at+555-0100"),
        403,
        "did not sign you in (an unrecognised error)",
        &["555-0100"],
    );

    // A tampered state.
    let mut b = Browser::new(&server, &idp);
    let back = b.through_idp(AtIdp::SignIn("bob"));
    let state = query_param(&back, "state");
    let code = query_param(&back, "code");
    assert!(!state.is_empty() && !code.is_empty(), "{back}");
    // One character changed (to one it is not already).
    let last = if state.ends_with('A') { 'B' } else { 'A' };
    let tampered = back.replace(&state, &format!("{}{last}", &state[..state.len() - 1]));
    assert_ne!(tampered, back);
    assert_refused(
        b.get(&tampered),
        400,
        "does not belong to the sign-in this browser started",
        &[&code, &state],
    );
    // The flow cookie was cleared with the refusal: the genuine answer no longer works
    // either (one flow, one try).
    assert_refused(b.get(&back), 400, "did not start here", &[&code]);

    // The IdP's answer in a browser that did not start the flow (no cookie).
    let mut b = Browser::new(&server, &idp);
    let back = b.through_idp(AtIdp::SignIn("bob"));
    let mut other = Browser::new(&server, &idp);
    let code = query_param(&back, "code");
    assert_refused(other.get(&back), 400, "did not start here", &[&code]);
    // ... nor with another flow's cookie.
    let _ = other.get("/ui/sso/start");
    assert!(other.kairos.0.contains_key("kairos_sso"));
    assert_refused(other.get(&back), 400, "does not belong", &[&code]);
    // The browser that started it signs in.
    let resp = b.get(&back);
    assert_eq!(resp.status(), 303, "{}", resp.text().unwrap());
    assert!(b.session().is_some());
    assert_eq!(b.get("/ui/inbox").status(), 200);
    // The same answer replayed: the flow is over.
    let mut again = b.clone_without_session();
    assert_refused(again.get(&back), 400, "did not start here", &[&code]);

    // Someone the IdP knows but Kairos does not.
    let mut b = Browser::new(&server, &idp);
    assert_refused(b.sign_in("mallory"), 403, "is not a Kairos user", &[]);
    // A resource server's name.
    let mut b = Browser::new(&server, &idp);
    assert_refused(b.sign_in("rs"), 403, "orders-rs is a resource server", &[]);
    // No code in the answer.
    let mut b = Browser::new(&server, &idp);
    let _ = b.get("/ui/sso/start");
    assert_refused(b.get("/ui/sso/callback"), 400, "does not belong", &[]);

    let log = server.log_text();
    assert!(
        log.contains("single sign-on refused"),
        "refusals are logged"
    );
    assert!(!log.contains(CLIENT_SECRET));
    assert!(
        !log.lines()
            .any(|l| l.contains("eyJ") && !l.contains("audit checkpoint")),
        "no JWT in the log"
    );
    let (_, audit) = api.get(ADMIN, "/v1/audit?limit=500");
    let signed_in: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "console_signed_in")
        .collect();
    assert_eq!(signed_in.len(), 1, "only bob signed in: {signed_in:?}");
    assert_eq!(
        signed_in[0]["data"]["teams"],
        Value::Null,
        "no groups_claim: no narrowing"
    );
}

impl Browser {
    /// The same IdP session and no Kairos cookies: another tab after sign-out.
    fn clone_without_session(&self) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            issuer: self.issuer.clone(),
            kairos: Jar::default(),
            idp: self.idp.clone(),
        }
    }
}

#[test]
fn an_unreachable_idp_and_token_sign_in_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    // Nothing listens on port 9.
    text.push_str(
        "[console]\noidc_issuer = \"http://127.0.0.1:9\"\nclient_id = \"k\"\nclient_secret_env = \"KAIROS_TEST_OIDC_SECRET\"\napi_token_sign_in = false\n",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(server.url("/ui/sso/start")).send().unwrap();
    assert_eq!(resp.status(), 502);
    let html = resp.text().unwrap();
    assert!(html.contains("could not be reached"), "{html}");
    assert!(html.contains("Sign in with single sign-on"), "{html}");
    // Token sign-in is off: no form, and posting one is refused.
    let login = http
        .get(server.url("/ui/login"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!login.contains("name=\"token\""), "{login}");
    let resp = http
        .post(server.url("/ui/login"))
        .form(&[("token", ADMIN)])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(resp.text().unwrap().contains("api_token_sign_in = false"));
    // The API itself is not the console: tokens still work there.
    let (status, _) = Api::new(&server).get(ADMIN, "/v1/requests");
    assert_eq!(status, 200);
}

/// `kairos server --config` with a bad `[console]`: it does not start, and says where.
#[test]
fn a_bad_console_section_stops_the_server_naming_file_line_and_key() {
    let cases = [
        (
            "[console]\noidc_issuer = \"http://idp.example.com\"\nclient_id = \"k\"\nclient_secret_env = \"S\"\n",
            "console.oidc_issuer",
            "https://",
        ),
        (
            "[console]\noidc_issuer = \"https://idp.example.com\"\nclient_id = \"k\"\nclient_secret = \"hunter2-hunter2\"\n",
            "console.client_secret",
            "client_secret_env",
        ),
        (
            "[console]\noidc_issuer = \"https://idp.example.com\"\nclient_id = \"k\"\nclient_secret_env = \"S\"\ngroups_claim = \"groups\"\n\n[console.team_groups]\nnobody = \"g\"\n",
            "console.team_groups.nobody",
            "not defined",
        ),
    ];
    for (section, key, words) in cases {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TestIssuer::new("k1");
        let config = write_config(&dir.path().join("cfg"), &issuer, "");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(section);
        let name = key.rsplit('.').next().unwrap();
        let line = text.lines().position(|l| l.starts_with(name)).unwrap() + 1;
        std::fs::write(&config, &text).unwrap();
        let out = Command::new(kairos_bin())
            .args([
                "server",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--dev-admin-token",
                ADMIN,
            ])
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with {section}");
        let err = stderr(&out);
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains(words), "{words}: {err}");
        assert!(
            err.contains(&format!("kairos.toml:{line}")),
            "line {line}: {err}"
        );
        assert!(!err.contains("hunter2"), "the secret is not echoed: {err}");
    }
}
