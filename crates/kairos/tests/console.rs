//! The web console through the real server: sign-in with an API token, sessions, CSRF,
//! the inbox and its approve/deny forms (the broker's rules, audited as the person), the
//! grant page, audit search and export, escaping, and who may not sign in. On SQLite and
//! on the machine's PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

fn add_user(api: &Api, body: Value) -> String {
    let (status, r) = api.post(ADMIN, "/v1/users", body);
    assert_eq!(status, 201, "{r}");
    r["token"].as_str().unwrap().to_owned()
}

/// A browser without JavaScript: forms, a cookie it keeps by hand, no redirects followed.
struct Browser {
    http: Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(server: &Server) -> Self {
        Self {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: server.addr.clone(),
            cookie: None,
        }
    }

    fn with_cookie(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header(COOKIE, format!("kairos_session={c}")),
            None => req,
        }
    }

    fn get(&self, path: &str) -> Response {
        self.with_cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .unwrap()
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.with_cookie(self.http.post(format!("{}{path}", self.base)).form(form))
            .send()
            .unwrap()
    }

    /// Signs in with an API token; the session cookie is kept.
    fn sign_in(&mut self, token: &str) -> Response {
        let resp = self.post("/ui/login", &[("token", token)]);
        if let Some(set) = resp.headers().get(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let value = set
                .strip_prefix("kairos_session=")
                .and_then(|rest| rest.split(';').next())
                .unwrap();
            self.cookie = Some(value.to_owned());
        }
        resp
    }

    /// A page's HTML, asserting 200 and the console's headers.
    fn page(&self, path: &str) -> String {
        let resp = self.get(path);
        assert_eq!(resp.status(), 200, "{path}");
        assert_console_headers(&resp);
        resp.text().unwrap()
    }
}

fn location(resp: &Response) -> &str {
    resp.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn assert_console_headers(resp: &Response) {
    let h = resp.headers();
    let csp = h.get(CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
}

/// The CSRF token the page's forms carry.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn approvals(api: &Api, req: &str) -> Vec<Value> {
    let (status, r) = api.get(ADMIN, &format!("/v1/requests/{req}"));
    assert_eq!(status, 200, "{r}");
    r["request"]["approvals"].as_array().unwrap().clone()
}

fn console_end_to_end(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let alice = add_user(&api, json!({"name": "alice", "role": "approver"}));
    let bob = add_user(
        &api,
        json!({"name": "bob", "role": "approver", "teams": ["payments"]}),
    );
    let dave = add_user(&api, json!({"name": "dave", "role": "approver"}));
    let rs = add_user(
        &api,
        json!({"name": "orders-rs", "role": "resource-server", "targets": ["orders-api"]}),
    );
    let platform = issuer.mint(SUBJECT, json!({}));

    // A workload asks for an entitlement that needs two approvals.
    let (status, body) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400, "{body}");
    let req = body["request_id"].as_str().unwrap().to_owned();
    // Another, whose reason tries markup and a bidi override.
    let other = issuer.mint(OTHER_SUBJECT, json!({}));
    let (status, body) = api.form(
        None,
        "/v1/oauth/token",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &other),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("scope", "orders-api/admin"),
            ("task_kind", "change"),
            ("task_ref", "CHG-7"),
            (
                "task_reason",
                "<script>alert(1)</script> deploy \u{202e}gnp.exe",
            ),
        ],
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let other_req = body["request_id"].as_str().unwrap().to_owned();

    let mut browser = Browser::new(&server);
    // Not signed in: every page sends to the sign-in page.
    let resp = browser.get("/ui/inbox");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/ui/login");
    let login = browser.page("/ui/login");
    assert!(login.contains("name=\"token\""), "{login}");
    // A wrong token: 401 and no session.
    let resp = browser.sign_in("kairos_pat_not-a-real-token");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(browser.cookie.is_none());
    // Workloads and resource servers do not sign in to the console.
    for token in [&platform, &rs] {
        let resp = browser.sign_in(token);
        assert_eq!(resp.status(), 403);
        assert!(resp.headers().get(SET_COOKIE).is_none());
        assert!(resp.text().unwrap().contains("The console is for people"));
    }

    // Alice signs in: a session cookie with the right flags.
    let resp = browser.sign_in(&alice);
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/ui/inbox");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/ui"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(
        !set.contains(&alice),
        "the cookie never carries the API token"
    );
    let alice_cookie = browser.cookie.clone().unwrap();

    // Her inbox holds both requests, with what she needs to decide.
    let inbox = browser.page("/ui/inbox");
    for needle in [
        req.as_str(),
        "nightly-backup",
        "payments",
        "orders-api/admin",
        "high",
        "run-42",
        "nightly backup",
        "admin-two-approvals",
        "0 of 2",
    ] {
        assert!(inbox.contains(needle), "inbox lacks {needle}: {inbox}");
    }
    // Caller text is escaped, bidi controls shown as escapes.
    assert!(!inbox.contains("<script>alert"), "{inbox}");
    assert!(
        inbox.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{inbox}"
    );
    assert!(inbox.contains("\\u{202e}gnp.exe"), "{inbox}");
    assert!(!inbox.contains('\u{202e}'));
    let token = csrf(&inbox);

    // A form without its CSRF token, or with another, is refused and changes nothing.
    let path = format!("/ui/requests/{req}/approve");
    let resp = browser.post(&path, &[("reason", "looks fine")]);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("CSRF"));
    let resp = browser.post(&path, &[("reason", "looks fine"), ("csrf", "forged")]);
    assert_eq!(resp.status(), 403);
    assert!(approvals(&api, &req).is_empty());
    // A form posted from another site is refused too.
    let resp = browser
        .with_cookie(
            browser
                .http
                .post(format!("{}{path}", browser.base))
                .header("origin", "https://evil.example")
                .form(&[("reason", "x"), ("csrf", token.as_str())]),
        )
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(approvals(&api, &req).is_empty());
    // No reason: 400, nothing changes.
    let resp = browser.post(&path, &[("csrf", &token), ("reason", " ")]);
    assert_eq!(resp.status(), 400);
    assert!(approvals(&api, &req).is_empty());

    // The workload waits for its credential while people decide.
    let waiter = {
        let base = api.base.clone();
        let platform = platform.clone();
        let req = req.clone();
        std::thread::spawn(move || {
            let http = Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap();
            http.get(format!("{base}/v1/requests/{req}?wait=60s"))
                .bearer_auth(&platform)
                .send()
                .unwrap()
                .json::<Value>()
                .unwrap()
        })
    };

    // Alice approves: redirected to the request's page, audited as her.
    let resp = browser.post(&path, &[("csrf", &token), ("reason", "CHG reviewed")]);
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("/ui/requests/{req}"));
    let a = approvals(&api, &req);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["approver"], "alice");
    let page = browser.page(&format!("/ui/requests/{req}"));
    assert!(
        page.contains("CHG reviewed") && page.contains("pending"),
        "{page}"
    );
    // Approving twice is refused by the broker's rule.
    let resp = browser.post(&path, &[("csrf", &token), ("reason", "again")]);
    assert_eq!(resp.status(), 403);
    assert!(!browser.page("/ui/inbox").contains(&req));
    // Alice denies the other request with a reason: it is denied, as her.
    let resp = browser.post(
        &format!("/ui/requests/{other_req}/deny"),
        &[("csrf", &token), ("reason", "no change ticket")],
    );
    assert_eq!(resp.status(), 303);
    let (_, r) = api.get(ADMIN, &format!("/v1/requests/{other_req}"));
    assert_eq!(r["request"]["state"], "denied", "{r}");
    assert_eq!(r["request"]["denial"]["approver"], "alice", "{r}");

    // Dave is an approver, but not of the payments team: nothing waits for him, and his
    // approval is refused with a clear page.
    let mut dave_browser = Browser::new(&server);
    assert_eq!(dave_browser.sign_in(&dave).status(), 303);
    let dave_inbox = dave_browser.page("/ui/inbox");
    assert!(!dave_inbox.contains(&req), "{dave_inbox}");
    let resp = dave_browser.post(&path, &[("csrf", &csrf(&dave_inbox)), ("reason", "ok")]);
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .unwrap()
            .contains("not an approver of team payments")
    );
    assert_eq!(approvals(&api, &req).len(), 1);
    // Another session's CSRF token does not work in this one.
    let resp = dave_browser.post(&path, &[("csrf", &token), ("reason", "ok")]);
    assert_eq!(resp.status(), 403);

    // Bob's approval is the second: the grant is issued and the waiting workload gets it.
    let mut bob_browser = Browser::new(&server);
    assert_eq!(bob_browser.sign_in(&bob).status(), 303);
    let bob_inbox = bob_browser.page("/ui/inbox");
    assert!(bob_inbox.contains(&req));
    let resp = bob_browser.post(
        &path,
        &[("csrf", &csrf(&bob_inbox)), ("reason", "ok by me")],
    );
    assert_eq!(resp.status(), 303);
    let waited = waiter.join().unwrap();
    assert_eq!(waited["request"]["state"], "granted", "{waited}");
    let access = waited["credential"]["access_token"].as_str().unwrap();
    assert_eq!(api.introspect(ADMIN, access)["active"], true);
    let grant = waited["grant"]["id"].as_str().unwrap().to_owned();

    // The approvals are audited as the people who gave them.
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?request={req}"));
    let approvers: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "approved")
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(approvers.len(), 2, "{audit}");
    assert!(approvers.contains(&"user:alice") && approvers.contains(&"user:bob"));

    // An approver sees the grant, but not the audit timeline (that is for auditors).
    let page = browser.page(&format!("/ui/grants/{grant}"));
    assert!(
        page.contains("active") && page.contains("orders-api"),
        "{page}"
    );
    assert!(!page.contains("Revoke this grant"));
    let grants = browser.page("/ui/grants?identity=nightly-backup");
    assert!(grants.contains(&grant), "{grants}");
    assert!(
        !grants.contains("/revoke"),
        "no revoke form for an approver: {grants}"
    );
    let resp = browser.get("/ui/audit");
    assert_eq!(resp.status(), 403);
    // Nor may an approver revoke: the broker refuses, nothing ends.
    let resp = browser.post(
        &format!("/ui/grants/{grant}/revoke"),
        &[("csrf", &token), ("reason", "not mine to end")],
    );
    assert_eq!(resp.status(), 403);
    assert_eq!(api.introspect(ADMIN, access)["active"], true);

    // The admin sees the timeline, revokes, and the receipt shows it verified gone.
    let mut admin = Browser::new(&server);
    assert_eq!(admin.sign_in(ADMIN).status(), 303);
    let page = admin.page(&format!("/ui/grants/{grant}"));
    for kind in ["requested", "decided", "approved", "issued"] {
        assert!(
            page.contains(&format!("kind-{kind}")),
            "timeline lacks {kind}: {page}"
        );
    }
    // A revocation needs a reason: without one, 400 and nothing ends.
    let resp = admin.post(
        &format!("/ui/grants/{grant}/revoke"),
        &[("csrf", &csrf(&page)), ("reason", "  ")],
    );
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .unwrap()
            .contains("a reason of 1 to 1000 characters")
    );
    assert_eq!(api.introspect(ADMIN, access)["active"], true);
    // The live grants list has a revoke form per live grant: revoked from there.
    let list = admin.page("/ui/grants?identity=nightly-backup");
    assert!(
        list.contains(&format!("action=\"/ui/grants/{grant}/revoke\"")),
        "{list}"
    );
    let resp = admin.post(
        &format!("/ui/grants/{grant}/revoke"),
        &[
            ("csrf", &csrf(&list)),
            ("reason", "backup window closed early"),
        ],
    );
    assert_eq!(resp.status(), 303);
    api.wait_grant(ADMIN, &grant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    assert_eq!(api.introspect(ADMIN, access)["active"], false);
    let page = admin.page(&format!("/ui/grants/{grant}"));
    assert!(
        page.contains("Verified gone") && page.contains("revoked by user:admin"),
        "{page}"
    );
    // The reason is in the revocation's audit record, shown on the timeline.
    assert!(page.contains("backup window closed early"), "{page}");
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    let revoked = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "revoked")
        .unwrap_or_else(|| panic!("no revoked record: {audit}"));
    assert_eq!(
        revoked["data"]["note"], "backup window closed early",
        "{revoked}"
    );
    assert_eq!(revoked["data"]["reason"], "revoked", "{revoked}");
    assert!(page.contains("verified"), "{page}");

    // Audit search, keyset pages, exports, chain status.
    let audit_page = admin.page("/ui/audit?identity=nightly-backup");
    assert!(audit_page.contains("approved") && audit_page.contains("user:alice"));
    let resp = admin.get("/ui/audit/export?format=jsonl&identity=nightly-backup");
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|r| r["kind"] == "approved" && r["actor"] == "user:bob")
    );
    let seqs: Vec<i64> = lines.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    // Exports tell the story oldest first.
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let resp = admin.get("/ui/audit/export?format=csv");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().unwrap().starts_with("seq,at,kind,actor,"));
    let all = lines.len();
    assert!(all > 3);
    // Keyset pages: `before` keeps only older records.
    let last = seqs[all - 2];
    let resp = admin.get(&format!(
        "/ui/audit/export?format=jsonl&identity=nightly-backup&before={last}"
    ));
    let older: Vec<Value> = resp
        .text()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(older.len(), all - 2);
    assert!(older.iter().all(|r| r["seq"].as_i64().unwrap() < last));
    let status = admin.page("/ui/audit/verify");
    assert!(
        status.contains("link and hash correctly, the whole chain as of"),
        "{status}"
    );
    assert!(
        admin
            .page("/ui/audit/verify?full=1")
            .contains("The whole chain was walked just now")
    );
    assert!(admin.page("/ui/identities").contains("nightly-backup"));
    let resp = admin.get("/ui/audit?since=yesterday");
    assert_eq!(resp.status(), 400);

    // A forged cookie is sent to the sign-in page, and so is anything unknown.
    let mut forged = Browser::new(&server);
    forged.cookie = Some("forged-session-id".into());
    let resp = forged.get("/ui/inbox");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/ui/login");

    // Sign-out needs the CSRF token, deletes the session, and is audited.
    let resp = browser.post("/ui/logout", &[]);
    assert_eq!(resp.status(), 403);
    let resp = browser.post("/ui/logout", &[("csrf", &token)]);
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/ui/login");
    browser.cookie = Some(alice_cookie);
    let resp = browser.get("/ui/inbox");
    assert_eq!(resp.status(), 303, "a signed-out session is gone");
    let (_, audit) = api.get(ADMIN, "/v1/audit?limit=500");
    let kinds: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&("console_signed_in", "user:alice")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("console_signed_out", "user:alice")),
        "{kinds:?}"
    );

    // Revoking a person's API token ends the console sessions it opened.
    assert_eq!(bob_browser.get("/ui/inbox").status(), 200);
    let (status, r) = api.post(ADMIN, "/v1/users/bob/revoke", json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(bob_browser.get("/ui/inbox").status(), 303);
}

#[test]
fn console_sign_in_approve_and_audit_on_sqlite() {
    console_end_to_end(None);
}

#[test]
fn console_sign_in_approve_and_audit_on_postgres() {
    common::pg::with_scratch_db("kairos_console", |url| console_end_to_end(Some(url)));
}

#[test]
fn an_idle_console_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&config),
        None,
        &["--console-idle-timeout", "1s"],
    );
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(ADMIN).status(), 303);
    assert_eq!(browser.get("/ui/inbox").status(), 200);
    // The idle limit is the point of this test: let it pass unused.
    std::thread::sleep(Duration::from_millis(1300));
    let resp = browser.get("/ui/inbox");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/ui/login");
    // The ended session stays ended.
    assert_eq!(browser.get("/ui/grants").status(), 303);
}

#[test]
fn the_chain_status_follows_the_chain_and_a_full_walk_rereads_it() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config), None);
    let api = Api::new(&server);
    let mut admin = Browser::new(&server);
    assert_eq!(admin.sign_in(ADMIN).status(), 303);
    // Just after the start the checkpointer may still be walking: the page says so, and
    // says the whole chain once the walk has reached the head.
    let status = wait_until("the chain status to catch up", || {
        let status = admin.page("/ui/audit/verify");
        status.contains("the whole chain as of").then_some(status)
    });
    let walked: i64 = status
        .split("Records 1 to ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();

    let db = rusqlite::Connection::open(data.join("kairos.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    // A record the walk has passed, changed: the running status does not re-read it; a
    // full walk does.
    db.execute(
        "UPDATE audit SET actor = 'user:mallory' WHERE seq = ?1",
        [walked],
    )
    .unwrap();
    assert!(
        admin
            .page("/ui/audit/verify")
            .contains("link and hash correctly")
    );
    let full = admin.page("/ui/audit/verify?full=1");
    assert!(
        full.contains(&format!("The chain is broken at record {walked}")),
        "{full}"
    );

    // A record past the walk's head, changed: the next status read finds it, and keeps
    // saying so.
    add_user(&api, json!({"name": "dave", "role": "auditor"}));
    let newest: i64 = db
        .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(newest > walked);
    db.execute(
        "UPDATE audit SET actor = 'user:mallory' WHERE seq = ?1",
        [newest],
    )
    .unwrap();
    for _ in 0..2 {
        let status = admin.page("/ui/audit/verify");
        assert!(
            status.contains(&format!("The chain is broken at record {newest}")),
            "{status}"
        );
    }
    // Auditors may read it; approvers may not (the same rule as the API).
    let approver = add_user(&api, json!({"name": "erin", "role": "approver"}));
    let mut erin = Browser::new(&server);
    assert_eq!(erin.sign_in(&approver).status(), 303);
    let resp = erin.get("/ui/audit/verify");
    assert_eq!(resp.status(), 403);
    assert!(!resp.text().unwrap().contains("Records 1 to"));
}

#[test]
fn the_identities_page_filters_and_pages_a_large_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let many: String = (0..105)
        .map(|i| {
            format!(
                "\n[[identity]]\nname = \"bulk-{i:03}\"\nowner = \"payments\"\nkind = \"service\"\nissuer = \"ci\"\nsubject = \"bulk:{i}\"\n"
            )
        })
        .collect();
    let config = write_config(&dir.path().join("cfg"), &issuer, &many);
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let mut admin = Browser::new(&server);
    assert_eq!(admin.sign_in(ADMIN).status(), 303);

    // 105 bulk identities and the configuration's own: a page of 100, then the rest.
    let first = admin.page("/ui/identities");
    assert!(
        first.contains("bulk-000") && first.contains("bulk-099"),
        "{first}"
    );
    assert!(!first.contains("bulk-100"), "{first}");
    let next = first
        .split("<a href=\"")
        .filter_map(|p| p.split('"').next())
        .find(|h| h.starts_with("/ui/identities?"))
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = admin.page(&next);
    assert!(
        second.contains("bulk-104") && second.contains("nightly-backup"),
        "{second}"
    );
    assert!(!second.contains("bulk-099"), "{second}");
    assert!(!second.contains("Next identities"), "{second}");

    // Filters: part of a name (any case), and the owner team.
    let some = admin.page("/ui/identities?name=BULK-10");
    assert!(some.contains("5 identities match"), "{some}");
    assert!(
        some.contains("bulk-100") && some.contains("bulk-104"),
        "{some}"
    );
    assert!(!some.contains("nightly-backup"));
    let none = admin.page("/ui/identities?team=nobody");
    assert!(none.contains("No identities match"), "{none}");
    // A team that cannot be a team name is a clear 400, not an empty page.
    let resp = admin.get("/ui/identities?team=no%20such%20team");
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("team"));

    // Recertifications come a page at a time too, due soonest first, once the
    // recertification pass has recorded every identity.
    let next_link = |page: &str| {
        page.split("<a href=\"")
            .filter_map(|p| p.split('"').next())
            .find(|h| h.starts_with("/ui/recertifications?"))
            .map(|h| h.replace("&#38;", "&").replace("&amp;", "&"))
    };
    let first = wait_until("every identity's recertification", || {
        let page = admin.page("/ui/recertifications");
        next_link(&page).is_some().then_some(page)
    });
    let mut seen = first.matches("<td>identity <strong>").count();
    assert_eq!(seen, 100, "{first}");
    let mut link = next_link(&first);
    let mut pages = 1;
    while let Some(next) = link {
        let page = admin.page(&next);
        seen += page.matches("<td>identity <strong>").count();
        link = next_link(&page);
        pages += 1;
        assert!(pages < 5, "the pages do not end: {page}");
    }
    // The 105 bulk identities and the configuration's own, each once.
    let (_, all) = api_identities(&server);
    assert_eq!(seen, all, "every identity on exactly one page");
    assert_eq!(
        admin.get("/ui/recertifications?after=garbage").status(),
        400
    );

    // The posture page shows the report kept for it (the same one on each view) until
    // someone asks for a fresh one.
    let computed = |page: &str| {
        page.split("Computed ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap()
            .to_owned()
    };
    let kept = computed(&admin.page("/ui/posture"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(computed(&admin.page("/ui/posture")), kept);
    let fresh = admin.page("/ui/posture?fresh=1");
    assert_ne!(computed(&fresh), kept, "a fresh report has its own time");
    assert_eq!(computed(&admin.page("/ui/posture")), computed(&fresh));
    assert_eq!(admin.get("/ui/posture?fresh=yes").status(), 400);
}

/// How many identities the catalog has, by the API.
fn api_identities(server: &Server) -> (u16, usize) {
    let api = Api::new(server);
    let (status, list) = api.get(ADMIN, "/v1/identities");
    (status, list["identities"].as_array().unwrap().len())
}

// ---- governance pages ------------------------------------------------------------------

const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The test configuration plus a break-glass entitlement and its policy, recertification
/// every 10 days for `nightly-backup` under a 14-day notice (due at once), a standing
/// exception whose secret is due for rotation every 2 s, and a webhook channel for pending
/// requests whose receiver (`port`) never answers.
fn write_governance_config(
    dir: &std::path::Path,
    issuer: &TestIssuer,
    port: u16,
) -> std::path::PathBuf {
    let path = write_config(dir, issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        &format!("subject = \"{SUBJECT}\"\n"),
        &format!("subject = \"{SUBJECT}\"\nrecertify_every = \"10d\"\n"),
        1,
    );
    let ends = kairos_domain::Timestamp::from_millis(now_secs() * 1000)
        .plus(Duration::from_secs(30 * 86_400))
        .to_rfc3339();
    let text = format!(
        r#"{text}
[[entitlement]]
name = "orders-api/breakglass"
target = "orders-api"
tier = "high"
max_ttl = "30m"
scopes = ["orders:admin"]
break_glass = true

[[exception]]
name = "legacy-billing"
identity = "deployer"
owner = "payments"
system = "billing-db (legacy)"
secret_ref = "vault:kv/legacy/billing"
reason = "the vendor client cannot take short-lived accounts yet"
rotate_every = "2s"
ends = "{ends}"
allowed_sources = ["10.20.0.0/16"]
scope_note = "read-only on the invoices schema"

[[notify]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]

[governance]
recertify_every = "30d"
recert_notice = "14d"
"#
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.join("policies/breakglass.cedar"),
        r#"
@id("break-glass-for-incidents")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/breakglass")
when { context.break_glass && context.task_kind == "incident" };
"#,
    )
    .unwrap();
    path
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signed_in(server: &Server, token: &str) -> Browser {
    let mut b = Browser::new(server);
    assert_eq!(b.sign_in(token).status(), 303);
    b
}

/// Posts a form with the page's CSRF token (taken from `page`) and `fields`.
fn post_with_csrf(b: &Browser, page: &str, path: &str, fields: &[(&str, &str)]) -> Response {
    let token = csrf(&b.page(page));
    let mut form = vec![("csrf", token.as_str())];
    form.extend_from_slice(fields);
    b.post(path, &form)
}

fn recert<'a>(list: &'a Value, kind: &str, subject: &str) -> &'a Value {
    list["recertifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["subject"] == subject)
        .unwrap_or_else(|| panic!("{kind} {subject} not listed: {list}"))
}

fn governance_pages(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_governance_config(&dir.path().join("cfg"), &issuer, port);
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        store,
        &[
            "--recert-pass-ms",
            "200",
            "--notify-backoff-ms",
            "100",
            "--notify-dead-after",
            "1s",
        ],
        &[("TEST_HOOK_SECRET", HOOK_SECRET)],
    );
    let api = Api::new(&server);
    // carol owns payments (config); alice approves for it without owning it.
    let carol = add_user(
        &api,
        json!({"name": "carol", "role": "approver", "teams": ["payments"]}),
    );
    let alice = add_user(
        &api,
        json!({"name": "alice", "role": "approver", "teams": ["payments"]}),
    );
    let dave = add_user(&api, json!({"name": "dave", "role": "approver"}));
    let olga = add_user(&api, json!({"name": "olga", "role": "operator"}));
    let ann = add_user(&api, json!({"name": "ann", "role": "auditor"}));
    let platform = issuer.mint(SUBJECT, json!({}));

    // A break-glass grant: an alert and an after-action review open with it.
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({
            "entitlement": "orders-api/breakglass",
            "ttl": "10m",
            "task": {"kind": "incident", "ref": "INC-42", "reason": "orders are failing"},
        }),
    );
    assert_eq!(status, 201, "{body}");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let review = body["review_id"].as_str().unwrap().to_owned();
    // A pending request: its notification cannot be delivered and goes dead.
    let (status, _) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400);

    let ann_b = signed_in(&server, &ann);
    let dave_b = signed_in(&server, &dave);
    let carol_b = signed_in(&server, &carol);
    let alice_b = signed_in(&server, &alice);
    let olga_b = signed_in(&server, &olga);

    // The navigation shows each person only the pages they may read.
    let nav = ann_b.page("/ui/inbox");
    for link in [
        "/ui/alerts",
        "/ui/reviews",
        "/ui/recertifications",
        "/ui/exceptions",
        "/ui/posture",
        "/ui/notifications",
        "/ui/audit",
    ] {
        assert!(nav.contains(&format!("href=\"{link}\"")), "{link}: {nav}");
    }
    let nav = dave_b.page("/ui/inbox");
    assert!(nav.contains("href=\"/ui/alerts\"") && nav.contains("href=\"/ui/reviews\""));
    for link in ["/ui/posture", "/ui/notifications", "/ui/audit"] {
        assert!(!nav.contains(&format!("href=\"{link}\"")), "{link}: {nav}");
    }

    // ---- alerts
    let (_, alerts) = api.get(ADMIN, "/v1/alerts?kind=break_glass");
    let alert = alerts["alerts"][0]["id"].as_str().unwrap().to_owned();
    let alert_path = format!("/ui/alerts/{alert}");
    let page = ann_b.page("/ui/alerts");
    for needle in [alert.as_str(), "break_glass", "nightly-backup", "NHI5"] {
        assert!(page.contains(needle), "alerts lack {needle}: {page}");
    }
    let page = ann_b.page(&alert_path);
    assert!(page.contains("PR.AA-05") && page.contains("open"), "{page}");
    // An auditor reads but does not handle: no form, and a post is refused by the broker.
    assert!(!page.contains("/resolve"), "{page}");
    let resp = ann_b.post(
        &format!("{alert_path}/resolve"),
        &[("csrf", &csrf(&page)), ("note", "looked at it")],
    );
    assert_eq!(resp.status(), 403);
    let alert_state = || api.get(ADMIN, &format!("/v1/alerts/{alert}")).1;
    assert_eq!(alert_state()["state"], "open");
    // An approver outside the identity's team sees none of it: not listed, and 404.
    let page = dave_b.page("/ui/alerts");
    assert!(
        !page.contains(&alert) && page.contains("No alerts match"),
        "{page}"
    );
    let resp = dave_b.get(&alert_path);
    assert_eq!(resp.status(), 404);
    assert!(!resp.text().unwrap().contains("nightly-backup"));
    // An approver of the team acknowledges: CSRF and a note are required.
    let page = carol_b.page(&alert_path);
    assert!(
        page.contains("/acknowledge") && page.contains("/resolve"),
        "{page}"
    );
    let resp = carol_b.post(&format!("{alert_path}/acknowledge"), &[("note", "on it")]);
    assert_eq!(resp.status(), 403);
    let resp = post_with_csrf(
        &carol_b,
        &alert_path,
        &format!("{alert_path}/acknowledge"),
        &[("note", " ")],
    );
    assert_eq!(resp.status(), 400);
    assert_eq!(alert_state()["state"], "open");
    let resp = post_with_csrf(
        &carol_b,
        &alert_path,
        &format!("{alert_path}/acknowledge"),
        &[("note", "carol is on INC-42")],
    );
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), alert_path);
    let a = alert_state();
    assert_eq!(a["state"], "acknowledged", "{a}");
    assert_eq!(a["updated_by"], "user:carol");
    let page = carol_b.page(&alert_path);
    assert!(page.contains("carol is on INC-42") && page.contains("acknowledged"));
    // An operator resolves it; the default list (unresolved) no longer shows it.
    let resp = post_with_csrf(
        &olga_b,
        &alert_path,
        &format!("{alert_path}/resolve"),
        &[("note", "incident closed")],
    );
    assert_eq!(resp.status(), 303);
    assert_eq!(alert_state()["state"], "resolved");
    assert!(!ann_b.page("/ui/alerts").contains(&alert));
    assert!(ann_b.page("/ui/alerts?state=resolved").contains(&alert));
    assert!(
        ann_b
            .page("/ui/alerts?kind=break_glass&state=all")
            .contains(&alert)
    );
    assert!(
        !ann_b
            .page("/ui/alerts?kind=orphaned&state=all")
            .contains(&alert)
    );
    for bad in [
        "/ui/alerts?state=closed",
        "/ui/alerts?kind=bogus",
        "/ui/alerts?identity=Not%20A%20Name",
    ] {
        assert_eq!(ann_b.get(bad).status(), 400, "{bad}");
    }
    assert_eq!(ann_b.get("/ui/alerts/not-an-alert").status(), 404);

    // ---- after-action reviews
    let review_path = format!("/ui/reviews/{review}");
    let page = ann_b.page("/ui/reviews");
    assert!(
        page.contains(&review) && page.contains(&format!("/ui/grants/{grant}")),
        "{page}"
    );
    let page = ann_b.page(&review_path);
    for needle in [grant.as_str(), "INC-42", "orders-api/breakglass", "open"] {
        assert!(page.contains(needle), "review lacks {needle}: {page}");
    }
    assert!(
        !page.contains("/file\""),
        "an auditor is not an owner: {page}"
    );
    // An operator who is not an owner is refused; the review stays open.
    assert!(!olga_b.page(&review_path).contains("/file\""));
    let resp = post_with_csrf(
        &olga_b,
        &review_path,
        &format!("{review_path}/file"),
        &[("summary", "fine")],
    );
    assert_eq!(resp.status(), 403);
    let review_state = || api.get(ADMIN, &format!("/v1/reviews/{review}")).1["state"].clone();
    assert_eq!(review_state(), "open");
    // The owner files it (a blank summary is refused first).
    assert!(
        carol_b
            .page(&review_path)
            .contains(&format!("{review_path}/file"))
    );
    let resp = post_with_csrf(
        &carol_b,
        &review_path,
        &format!("{review_path}/file"),
        &[("summary", "")],
    );
    assert_eq!(resp.status(), 400);
    assert_eq!(review_state(), "open");
    let resp = post_with_csrf(
        &carol_b,
        &review_path,
        &format!("{review_path}/file"),
        &[("summary", "restarted the orders pods; access unused after")],
    );
    assert_eq!(resp.status(), 303);
    assert_eq!(review_state(), "filed");
    let page = ann_b.page(&review_path);
    assert!(
        page.contains("restarted the orders pods") && page.contains("by carol"),
        "{page}"
    );
    assert!(ann_b.page("/ui/reviews?state=filed").contains(&review));
    assert!(!ann_b.page("/ui/reviews?state=open").contains(&review));
    assert_eq!(ann_b.get("/ui/reviews?state=late").status(), 400);
    assert_eq!(ann_b.get("/ui/reviews/rev_nope").status(), 404);

    // ---- recertifications
    wait_until("the recertification pass", || {
        let (_, due) = api.get(ADMIN, "/v1/recertifications?state=due");
        due["recertifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "nightly-backup")
            .then_some(())
    });
    let page = ann_b.page("/ui/recertifications?state=due");
    assert!(
        page.contains("nightly-backup") && !page.contains("deployer"),
        "{page}"
    );
    assert!(!page.contains("/attest"), "an auditor owns nothing: {page}");
    assert!(!alice_b.page("/ui/recertifications").contains("/attest"));
    let page = carol_b.page("/ui/recertifications");
    for form in [
        "/ui/recertifications/identity/nightly-backup/attest",
        "/ui/recertifications/exception/legacy-billing/attest",
        "/ui/recertifications/identity/nightly-backup/retire",
    ] {
        assert!(page.contains(form), "{form}: {page}");
    }
    let attest = "/ui/recertifications/identity/nightly-backup/attest";
    let recerts = || api.get(ADMIN, "/v1/recertifications").1;
    // Not an owner: refused by the broker, nothing attested.
    let resp = post_with_csrf(
        &alice_b,
        "/ui/recertifications",
        attest,
        &[("reason", "still needed")],
    );
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("owner"));
    assert!(recert(&recerts(), "identity", "nightly-backup")["attested_by"].is_null());
    let resp = post_with_csrf(&carol_b, "/ui/recertifications", attest, &[("reason", "")]);
    assert_eq!(resp.status(), 400);
    let resp = post_with_csrf(
        &carol_b,
        "/ui/recertifications",
        attest,
        &[("reason", "still backs up the orders database")],
    );
    assert_eq!(resp.status(), 303);
    // A new cycle starts now (the 10-day cycle is inside the 14-day notice, so it is
    // due again at once, with a later due date).
    let e = recerts();
    let e = recert(&e, "identity", "nightly-backup");
    assert_eq!(e["attested_by"], "user:carol", "{e}");
    assert_eq!(e["reason"], "still backs up the orders database");
    assert!(
        carol_b
            .page("/ui/recertifications")
            .contains("still backs up the orders database")
    );
    // An operator who is no owner may not retire; the identity stays active.
    let resp = post_with_csrf(
        &olga_b,
        "/ui/recertifications",
        "/ui/recertifications/identity/nightly-backup/retire",
        &[("reason", "gone")],
    );
    assert_eq!(resp.status(), 403);
    let (_, identity) = api.get(ADMIN, "/v1/identities/nightly-backup");
    assert_eq!(identity["status"]["state"], "active", "{identity}");
    assert_eq!(ann_b.get("/ui/recertifications?state=soon").status(), 400);

    // ---- standing exceptions
    wait_until("the rotation to fall overdue", || {
        let (_, list) = api.get(ADMIN, "/v1/exceptions");
        (list["exceptions"][0]["findings"].as_array().unwrap().iter())
            .any(|f| f["finding"] == "rotation_overdue")
            .then_some(())
    });
    let page = ann_b.page("/ui/exceptions");
    for needle in [
        "legacy-billing",
        "rotation overdue",
        "vault:kv/legacy/billing",
        "10.20.0.0/16",
        "read-only on the invoices schema",
    ] {
        assert!(page.contains(needle), "exceptions lack {needle}: {page}");
    }
    assert!(
        !page.contains("/rotated"),
        "an auditor records no rotation: {page}"
    );
    let rotated = "/ui/exceptions/legacy-billing/rotated";
    let resp = post_with_csrf(&dave_b, "/ui/exceptions", rotated, &[("note", "done")]);
    assert_eq!(resp.status(), 403);
    let last_rotated =
        || api.get(ADMIN, "/v1/exceptions").1["exceptions"][0]["last_rotated_at"].clone();
    assert!(last_rotated().is_null());
    assert!(carol_b.page("/ui/exceptions").contains(rotated));
    let resp = post_with_csrf(
        &carol_b,
        "/ui/exceptions",
        rotated,
        &[("note", "rotated in CHG-9")],
    );
    assert_eq!(resp.status(), 303);
    assert!(last_rotated().is_string());
    let (_, list) = api.get(ADMIN, "/v1/exceptions");
    assert_eq!(list["exceptions"][0]["rotated_by"], "user:carol");
    assert!(carol_b.page("/ui/exceptions").contains("rotated in CHG-9"));

    // ---- posture
    let page = ann_b.page("/ui/posture");
    for needle in [
        "standing_privilege",
        "revocation_latency",
        "reviews_open",
        "NHI5",
        "PR.AA-05",
        "GV.RR-02",
        "<svg",
        "<title id=\"chart-hours-title\">Grant-hours per UTC day</title>",
        "<title id=\"chart-latency-title\">",
        "<details>",
        "≤ 10 ms",
        "&#62; 1 h",
    ] {
        assert!(page.contains(needle), "posture lacks {needle}: {page}");
    }
    // A bar per day of the 30-day window and per latency bucket.
    assert_eq!(
        page.matches("<rect class=\"bar\"").count(),
        30 + 15,
        "{page}"
    );
    assert!(!page.contains("style="), "no inline style: {page}");
    let (status, posture) = api.get(&ann, "/v1/posture");
    assert_eq!(status, 200, "{posture}");
    let days = posture["grant_hours_by_day"].as_array().unwrap();
    assert_eq!(days.len(), 30, "{posture}");
    let today = kairos_domain::Timestamp::from_millis(now_secs() * 1000).to_rfc3339();
    assert_eq!(days[29]["day"].as_str().unwrap(), &today[..10]);
    assert_eq!(posture["revocation_latency"].as_array().unwrap().len(), 15);
    assert!(posture["revocation_latency"][14]["at_most_ms"].is_null());
    // Approvers do not read the estate-wide report.
    let resp = dave_b.get("/ui/posture");
    assert_eq!(resp.status(), 403);
    assert!(!resp.text().unwrap().contains("standing_privilege"));
    // Nor have one computed for them.
    let resp = dave_b.get("/ui/posture?fresh=1");
    assert_eq!(resp.status(), 403);
    assert!(!resp.text().unwrap().contains("standing_privilege"));

    // ---- notifications
    let dead = wait_until("the dead letter", || {
        let (_, list) = api.get(ADMIN, "/v1/notifications?state=dead");
        list["notifications"].as_array().unwrap().first().cloned()
    });
    let id = dead["id"].as_str().unwrap().to_owned();
    let page = ann_b.page("/ui/notifications");
    assert!(
        page.contains(&id) && page.contains("request_pending") && page.contains("dead"),
        "{page}"
    );
    assert!(
        !page.contains("Send again"),
        "auditors do not retry: {page}"
    );
    assert!(ann_b.page("/ui/notifications?state=dead").contains(&id));
    assert!(
        !ann_b
            .page("/ui/notifications?state=delivered")
            .contains(&id)
    );
    assert_eq!(ann_b.get("/ui/notifications?state=lost").status(), 400);
    let retry = format!("/ui/notifications/{id}/retry");
    let created = || {
        let (_, list) = api.get(ADMIN, "/v1/notifications");
        list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id.as_str())
            .unwrap()["created_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = created();
    let resp = post_with_csrf(&ann_b, "/ui/notifications", &retry, &[]);
    assert_eq!(resp.status(), 403);
    assert_eq!(created(), before, "an auditor's post changed nothing");
    let resp = dave_b.get("/ui/notifications");
    assert_eq!(resp.status(), 403);
    assert!(!resp.text().unwrap().contains(&id));
    let page = olga_b.page("/ui/notifications");
    assert!(page.contains("Send again"), "{page}");
    let resp = olga_b.post(&retry, &[]);
    assert_eq!(resp.status(), 403, "no CSRF token");
    assert_eq!(created(), before);
    let resp = post_with_csrf(&olga_b, "/ui/notifications", &retry, &[]);
    assert_eq!(resp.status(), 303);
    assert_ne!(created(), before, "sent again: queued afresh");
}

#[test]
fn governance_pages_on_sqlite() {
    governance_pages(None);
}

#[test]
fn governance_pages_on_postgres() {
    common::pg::with_scratch_db("kairos_console_gov", |url| governance_pages(Some(url)));
}
