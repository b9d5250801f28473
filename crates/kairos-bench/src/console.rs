//! The console's pages over a large store: a SQLite store filled with 100,000 active grants
//! (each with several rounds of its audit records, about 1,200,000 records in the chain),
//! 10,000 identities in the catalog, and every console page timed as a signed-in admin sees
//! it, one request at a time, beside the same server's stylesheet (no store read, the same
//! middleware) and sign-in page (a template, no store read) as floors.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

use crate::guard::ScratchDir;
use crate::restart::{self, Fill};
use crate::server::{self, Issuer, Server, ServerOptions};
use crate::stats::Latencies;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Active grants in the filled store.
    pub grants: u64,
    /// Rounds of each grant's audit records (three records a round).
    pub audit_rounds: usize,
    /// Timed requests per page (fewer when a page is slow: see `page_budget`).
    pub samples: usize,
    /// The most time spent timing one page.
    pub page_budget: Duration,
}

/// One page's timings.
#[derive(Debug, Clone)]
pub struct PageTiming {
    pub label: &'static str,
    pub path: String,
    pub latencies: Latencies,
    pub samples: usize,
    /// Why the page was not timed (it did not answer 200).
    pub failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConsoleResult {
    pub fill: Fill,
    pub audit_records: u64,
    pub pages: Vec<PageTiming>,
    /// The stylesheet and the sign-in page, timed the same way.
    pub floors: Vec<PageTiming>,
}

/// Pages timed, with the query strings a person would use. `{grant}`, `{request}`,
/// `{identity}` and `{seq}` are filled from the store.
const PAGES: &[(&str, &str)] = &[
    ("inbox", "/ui/inbox"),
    ("requests", "/ui/requests"),
    ("a request", "/ui/requests/{request}"),
    ("live grants", "/ui/grants"),
    (
        "live grants of one identity",
        "/ui/grants?identity={identity}",
    ),
    ("a grant (timeline)", "/ui/grants/{grant}"),
    ("audit search, newest", "/ui/audit"),
    ("audit search by identity", "/ui/audit?identity={identity}"),
    (
        "audit search, a page in the middle",
        "/ui/audit?before={seq}",
    ),
    (
        "audit export (CSV) of one identity",
        "/ui/audit/export?format=csv&identity={identity}",
    ),
    ("audit chain status", "/ui/audit/verify"),
    ("identities and owners", "/ui/identities"),
    ("alerts", "/ui/alerts"),
    ("after-action reviews", "/ui/reviews"),
    ("recertifications", "/ui/recertifications"),
    ("exceptions", "/ui/exceptions"),
    ("posture", "/ui/posture"),
    ("notifications", "/ui/notifications"),
];

pub async fn measure(
    kairos: &Path,
    issuer: &Issuer,
    platform: &str,
    s: Settings,
) -> anyhow::Result<ConsoleResult> {
    let dir = ScratchDir::new("console")?;
    let config = server::write_config(
        &dir.path().join("cfg"),
        issuer,
        &restart::clone_identities(),
    )?;
    let opts = ServerOptions {
        data: dir.path().join("data"),
        config,
        log: dir.path().join("server.log"),
        store: None,
        envs: Vec::new(),
        args: Vec::new(),
    };
    let server = Server::start(kairos, &opts)?;
    let http = client()?;
    http.post(server.url("/v1/oauth/token"))
        .form(&server::exchange_form(platform, "bench-console", "1h"))
        .send()
        .await?
        .error_for_status()
        .context("issuing the template grant")?;
    server.stop(Duration::from_secs(10));

    let db = opts.data.join("kairos.db");
    eprintln!(
        "  filling the store with {} grants, {} rounds of audit records each...",
        s.grants, s.audit_rounds
    );
    let fill = restart::fill(&db, s.grants, s.audit_rounds).await?;
    let sample = Sample::read(&db).await?;
    eprintln!(
        "  filled in {:.1?} ({} audit records); timing the pages...",
        fill.elapsed, sample.audit_records
    );

    let server = Server::start(kairos, &opts)?;
    let cookie = sign_in(&http, &server).await?;
    let mut floors = Vec::new();
    for (label, path) in [
        ("stylesheet (no store read)", "/ui/static/console.css"),
        ("sign-in page (a template, no store read)", "/ui/login"),
    ] {
        floors.push(time_page(&http, &server, None, label, path.to_owned(), s).await);
    }
    let mut pages = Vec::new();
    for (label, path) in PAGES {
        let path = sample.fill_in(path);
        pages.push(time_page(&http, &server, Some(&cookie), label, path, s).await);
    }
    server.stop(Duration::from_secs(10));
    Ok(ConsoleResult {
        fill,
        audit_records: sample.audit_records,
        pages,
        floors,
    })
}

/// A client that keeps redirects as answers (a page that redirects to the sign-in page
/// has refused the session, which the bench must see).
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .build()?)
}

/// Signs in with the admin's API token; the session cookie's `name=value`.
async fn sign_in(http: &reqwest::Client, server: &Server) -> anyhow::Result<String> {
    let answer = http
        .post(server.url("/ui/login"))
        .form(&[("token", server::ADMIN_TOKEN)])
        .send()
        .await?;
    if !answer.status().is_redirection() {
        bail!("signing in to the console answered {}", answer.status());
    }
    answer
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kairos_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("signing in to the console set no session cookie")
}

async fn time_page(
    http: &reqwest::Client,
    server: &Server,
    cookie: Option<&str>,
    label: &'static str,
    path: String,
    s: Settings,
) -> PageTiming {
    let get = || {
        let r = http.get(server.url(&path));
        match cookie {
            Some(c) => r.header(reqwest::header::COOKIE, c),
            None => r,
        }
    };
    let one = || async {
        let started = Instant::now();
        let answer = get().send().await.map_err(|e| e.to_string())?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|e| e.to_string())?;
        let took = started.elapsed();
        if status != reqwest::StatusCode::OK {
            return Err(format!("answered {status}"));
        }
        std::hint::black_box(body);
        Ok(took)
    };
    let mut failure = None;
    // Warm-up: the first answers fill SQLite's page cache and the templates' buffers.
    for _ in 0..3 {
        if let Err(e) = one().await {
            failure = Some(e);
            break;
        }
    }
    let mut samples = Vec::with_capacity(s.samples);
    if failure.is_none() {
        let started = Instant::now();
        while samples.len() < s.samples && (samples.len() < 20 || started.elapsed() < s.page_budget)
        {
            match one().await {
                Ok(took) => samples.push(took),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let n = samples.len();
    PageTiming {
        label,
        path,
        latencies: Latencies::new(samples),
        samples: n,
        failure,
    }
}

/// Ids from the filled store for the pages that show one thing.
struct Sample {
    grant: String,
    request: String,
    identity: String,
    /// A sequence number in the middle of the chain.
    mid_seq: i64,
    audit_records: u64,
}

impl Sample {
    async fn read(db: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?;
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
            .fetch_one(&mut conn)
            .await?;
        let row =
            sqlx::query("SELECT id, request_id, identity FROM grants ORDER BY id LIMIT 1 OFFSET ?")
                .bind(total / 2)
                .fetch_one(&mut conn)
                .await?;
        let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&mut conn)
            .await?;
        let records: i64 = sqlx::query_scalar("SELECT count(*) FROM audit")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Self {
            grant: row.try_get("id")?,
            request: row.try_get("request_id")?,
            identity: row.try_get("identity")?,
            mid_seq: head / 2,
            audit_records: u64::try_from(records).unwrap_or(0),
        })
    }

    fn fill_in(&self, path: &str) -> String {
        path.replace("{grant}", &self.grant)
            .replace("{request}", &self.request)
            .replace("{identity}", &self.identity)
            .replace("{seq}", &self.mid_seq.to_string())
    }
}
