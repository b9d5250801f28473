//! `kairos-bench`: measures Kairos and regenerates `BENCHMARKS.md`. Every figure is
//! printed beside a floor measured in the same run on the same machine, so that the
//! ratio means something on a noisy, shared machine. No figure is asserted anywhere.
//!
//! ```sh
//! cargo build --release -p kairos && cargo run --release -p kairos-bench -- --quick
//! ```
//!
//! Needs the machine's PostgreSQL at 127.0.0.1:5432 (user `postgres`, trust
//! authentication) and `pgbench`/`psql` on PATH for the PostgreSQL figures; everything the
//! run creates there (databases, roles) and elsewhere (processes, scratch directories) is
//! removed at the end, on failure, and on Ctrl-C.

mod accounts;
mod api;
mod cedar;
mod console;
mod cpu;
mod expiry;
mod guard;
mod load;
mod machine;
mod mtls;
mod noop;
mod pg;
mod pgbench;
mod rabbitmq;
mod rego;
mod replicas;
mod report;
mod restart;
mod server;
mod stats;
mod usage_cost;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::guard::ScratchDir;
use crate::load::MakeRequest;
use crate::report::Report;

/// Measures Kairos against same-run floors and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "kairos-bench")]
struct Args {
    /// Short phases and smaller sizes: the whole run finishes in under two minutes.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: std::path::PathBuf,
    /// Concurrent HTTP clients (and pgbench clients for the PostgreSQL floors).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Run only these sections (comma-separated): http, accounts, expiry, restart, cedar,
    /// rego (with Cedar's 3-policy floor beside it), console, mtls (token grants over TLS
    /// and over mutual TLS with an X.509-SVID), replicas (token grants on 1, 2 and 3
    /// replicas over one PostgreSQL database), rabbitmq (RabbitMQ users issued and
    /// revoked, beside the management API's own create and delete).
    /// The report then says which figures were not run.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// Active grants in the restart figure's store (default: 100,000 quick, 1,000,000 full).
    #[arg(long)]
    restart_grants: Option<u64>,
    /// Queued revocations in the restart figure's store (default: 10,000 quick, 100,000
    /// full); the floor revokes as many (at most 20,000) on a live server.
    #[arg(long)]
    restart_queued: Option<u64>,
    /// Accounts provisioned and then revoked at once (default: 1,000 quick, 5,000 full).
    #[arg(long)]
    accounts: Option<usize>,
    /// Grants issued, and so expiring, per second in the expiry figure (default: 5,000,
    /// the target's rate): a lower rate shows how lateness grows with load.
    #[arg(long)]
    expiry_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Http,
    Accounts,
    Expiry,
    Restart,
    Cedar,
    Rego,
    Console,
    Mtls,
    Replicas,
    Rabbitmq,
}

/// Lengths and sizes of every phase, by mode.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    pub clients: usize,
    pub warmup: Duration,
    pub http: Duration,
    pub sign: Duration,
    pub cedar: Duration,
    pub accounts: usize,
    pub revoke_timeout: Duration,
    pub expiry_rate: f64,
    pub expiry_issue_for: Duration,
    pub expiry_ttl_secs: u64,
    pub restart_grants: u64,
    pub restart_queued: u64,
    pub restart_runs: usize,
    pub console_grants: u64,
    pub console_audit_rounds: usize,
    pub console_samples: usize,
    pub console_page_budget: Duration,
}

impl Plan {
    fn for_args(args: &Args) -> Self {
        let base = if args.quick {
            Self {
                quick: true,
                clients: args.clients,
                warmup: Duration::from_secs(1),
                http: Duration::from_secs(5),
                sign: Duration::from_secs(2),
                cedar: Duration::from_secs(3),
                accounts: 1_000,
                revoke_timeout: Duration::from_secs(60),
                expiry_rate: 5_000.0,
                expiry_issue_for: Duration::from_secs(8),
                expiry_ttl_secs: 3,
                restart_grants: 100_000,
                restart_queued: 10_000,
                restart_runs: 1,
                console_grants: 20_000,
                console_audit_rounds: 4,
                console_samples: 50,
                console_page_budget: Duration::from_secs(5),
            }
        } else {
            Self {
                quick: false,
                clients: args.clients,
                warmup: Duration::from_secs(3),
                http: Duration::from_secs(30),
                sign: Duration::from_secs(5),
                cedar: Duration::from_secs(15),
                accounts: 5_000,
                revoke_timeout: Duration::from_secs(600),
                expiry_rate: 5_000.0,
                expiry_issue_for: Duration::from_secs(60),
                expiry_ttl_secs: 10,
                restart_grants: 1_000_000,
                restart_queued: 100_000,
                restart_runs: 3,
                console_grants: 100_000,
                console_audit_rounds: 10,
                console_samples: 200,
                console_page_budget: Duration::from_secs(20),
            }
        };
        Self {
            accounts: args.accounts.unwrap_or(base.accounts).max(1),
            expiry_rate: args.expiry_rate.unwrap_or(base.expiry_rate).max(1.0),
            restart_grants: args.restart_grants.unwrap_or(base.restart_grants).max(1),
            restart_queued: args.restart_queued.unwrap_or(base.restart_queued).max(1),
            ..base
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    guard::install_signal_handler()?;
    let plan = Plan::for_args(&args);
    let runs = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let started = Instant::now();
    let mut report = Report::new(plan, args.only.clone());
    eprintln!(
        "kairos-bench: {} build, {} mode, {} clients",
        report.machine.profile,
        if plan.quick { "quick" } else { "full" },
        plan.clients
    );

    // Located first, so a missing server binary fails before anything is measured.
    let kairos = server::kairos_binary()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    report.postgres = runtime.block_on(report::PostgresInfo::detect());
    report.pgbench = pgbench::version().map_err(|e| format!("{e:#}"));

    let issuer = Arc::new(server::Issuer::new()?);
    // Valid for the whole run and then some; the server checks exp on every exchange.
    let platform = issuer.mint(Duration::from_secs(6 * 3600))?;

    if runs(Section::Http) {
        eprintln!("ES256 signing and fdatasync floors...");
        report.es256_signs_per_sec = Some(es256_signs_per_sec(plan.sign)?);
        report.fsync_per_sec = Some(fsync_per_sec(plan.sign)?);
        report.sqlite_commits_per_sec = Some(runtime.block_on(sqlite_commits_per_sec(plan.sign))?);
        runtime.block_on(http_figures(&kairos, &issuer, &platform, plan, &mut report));
    }

    if runs(Section::Mtls) {
        eprintln!("token grants over TLS and mutual TLS...");
        let form = server::exchange_form(&platform, "bench-run", "30m");
        report.grants_mtls = Some(
            runtime
                .block_on(mtls::measure(&kairos, &issuer, &form, plan))
                .map_err(|e| format!("{e:#}")),
        );
    }

    if runs(Section::Replicas) {
        if report.noop.is_none() {
            eprintln!("no-op HTTP floor (for the replicas' figures)...");
            let form = server::exchange_form(&platform, "bench-run", "30m");
            match runtime.block_on(noop_floor(&form, plan)) {
                Ok(r) => report.noop = Some(r),
                Err(e) => report.errors.push(format!("no-op floor: {e:#}")),
            }
        }
        let form = server::exchange_form(&platform, "bench-run", "30m");
        report.replicas = Some(runtime.block_on(replicas::measure(&kairos, &issuer, &form, plan)));
    }

    if runs(Section::Accounts) {
        eprintln!("PostgreSQL accounts: issuance and revocation...");
        let settings = accounts::Settings {
            clients: plan.clients,
            warmup: plan.warmup,
            duration: plan.http,
            population: plan.accounts,
            revoke_timeout: plan.revoke_timeout,
        };
        report.accounts = Some(
            runtime
                .block_on(accounts::measure(&kairos, &issuer, &platform, settings))
                .map_err(|e| format!("{e:#}")),
        );
    }

    if runs(Section::Rabbitmq) {
        eprintln!("RabbitMQ users: issuance and revocation...");
        report.rabbitmq = Some(
            runtime
                .block_on(rabbitmq::measure(&kairos, &issuer, &platform, plan))
                .map_err(|e| format!("{e:#}")),
        );
    }

    if runs(Section::Expiry) {
        eprintln!(
            "expiry lateness at {}/s for {:?}...",
            plan.expiry_rate, plan.expiry_issue_for
        );
        report.expiry = Some(
            runtime
                .block_on(expiry_figure(&kairos, &issuer, &platform, plan))
                .map_err(|e| format!("{e:#}")),
        );
    }

    if runs(Section::Restart) {
        eprintln!(
            "restart with {} active grants and {} queued revocations...",
            plan.restart_grants, plan.restart_queued
        );
        let settings = restart::Settings {
            grants: plan.restart_grants,
            queued: plan.restart_queued,
            runs: plan.restart_runs,
            settle: Duration::from_secs(1),
            drain_timeout: plan.revoke_timeout,
            clients: plan.clients,
        };
        report.restart = Some(
            runtime
                .block_on(restart::measure(&kairos, &issuer, &platform, settings))
                .map_err(|e| format!("{e:#}")),
        );
    }
    if runs(Section::Console) {
        eprintln!("console pages over {} grants...", plan.console_grants);
        let settings = console::Settings {
            grants: plan.console_grants,
            audit_rounds: plan.console_audit_rounds,
            samples: plan.console_samples,
            page_budget: plan.console_page_budget,
        };
        report.console = Some(
            runtime
                .block_on(console::measure(&kairos, &issuer, &platform, settings))
                .map_err(|e| format!("{e:#}")),
        );
    }
    drop(runtime);

    if runs(Section::Cedar) {
        for count in [3, 1_000, 10_000] {
            eprintln!("Cedar decisions with {count} policies...");
            report.cedar.push(cedar::measure(count, plan.cedar)?);
        }
    }
    if runs(Section::Rego) {
        if !report.cedar.iter().any(|c| c.policies == 3) {
            eprintln!("Cedar decisions with 3 policies (Rego's floor)...");
            report.cedar.push(cedar::measure(3, plan.cedar)?);
        }
        eprintln!("Rego decisions with the same 3 policies...");
        report.rego = Some(rego::measure(plan.cedar).map_err(|e| format!("{e:#}")));
    }

    report.total = started.elapsed();
    let text = report.render();
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{text}");
    eprintln!(
        "kairos-bench: wrote {} in {:.0?}",
        args.out.display(),
        report.total
    );
    Ok(())
}

/// ES256 signatures per second with `ring`, one thread: the cost floor of issuing a
/// signed token.
fn es256_signs_per_sec(duration: Duration) -> anyhow::Result<f64> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("loading the P-256 key failed"))?;
    // About the size of a Kairos access token's header and claims.
    let message = [b'x'; 420];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let sig = key
            .sign(&rng, &message)
            .map_err(|_| anyhow::anyhow!("ES256 signing failed"))?;
        std::hint::black_box(sig);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `fdatasync` calls per second after appending 4 KiB each, one thread, in a scratch
/// directory on the filesystem the SQLite stores use: what one durable commit at a time
/// can reach here.
fn fsync_per_sec(duration: Duration) -> anyhow::Result<f64> {
    use std::io::Write;
    let dir = ScratchDir::new("fsync")?;
    let mut file = std::fs::File::create(dir.path().join("append"))?;
    let block = [0u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Durable SQLite commits per second, one at a time: a 2.5 KB row inserted and committed
/// in a WAL database with `synchronous = FULL` (the store's settings), on the filesystem
/// the SQLite stores use. What one writer batch pays at least, whatever it carries: the
/// WAL frames' writes and the `fdatasync`.
async fn sqlite_commits_per_sec(duration: Duration) -> anyhow::Result<f64> {
    use sqlx::Connection as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let dir = ScratchDir::new("sqlite-commit")?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("floor.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&mut conn)
        .await?;
    let body = vec![b'x'; 2_500];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        sqlx::query("INSERT INTO floor (body) VALUES (?)")
            .bind(&body)
            .execute(&mut conn)
            .await?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    conn.close().await?;
    Ok(rate)
}

/// Requests that each POST `form` to `url`.
fn form_posts(http: &reqwest::Client, url: String, form: &[(&'static str, String)]) -> MakeRequest {
    let (http, form) = (http.clone(), form.to_vec());
    Arc::new(move || http.post(&url).form(&form))
}

/// The no-op handler's rate for `form` posts: the floor of every HTTP figure.
async fn noop_floor(
    form: &[(&'static str, String)],
    plan: Plan,
) -> anyhow::Result<load::LoadResult> {
    let noop = noop::NoopServer::start()?;
    let http = load::client(plan.clients)?;
    let make = form_posts(&http, noop.url(), form);
    Ok(load::drive(plan.clients, plan.warmup, plan.http, None, make).await)
}

/// The no-op floor, then token grants and introspection on the SQLite store, then token
/// grants on the PostgreSQL store. A failing part is recorded and the rest still runs.
async fn http_figures(
    kairos: &std::path::Path,
    issuer: &Arc<server::Issuer>,
    platform: &str,
    plan: Plan,
    report: &mut Report,
) {
    let clients = plan.clients;
    let form = server::exchange_form(platform, "bench-run", "30m");

    // Floor: the no-op handler, same body size as a token exchange.
    eprintln!("no-op HTTP floor...");
    match noop_floor(&form, plan).await {
        Ok(r) => report.noop = Some(r),
        Err(e) => report.errors.push(format!("no-op floor: {e:#}")),
    }

    // The real server, SQLite store in a fresh directory.
    if let Err(e) = sqlite_http(kairos, issuer, &form, plan, report).await {
        report
            .errors
            .push(format!("SQLite-store HTTP figures: {e:#}"));
    }

    // The same token grants with the PostgreSQL store, on a fresh database.
    eprintln!("token grants, PostgreSQL store...");
    let pg = async {
        let db = pg::ScratchDb::create().await?;
        let dir = ScratchDir::new("pg-store")?;
        let config = server::write_config(&dir.path().join("cfg"), issuer, &Default::default())?;
        let server = server::Server::start(
            kairos,
            &server::ServerOptions {
                data: dir.path().join("data"),
                config,
                log: dir.path().join("server.log"),
                store: Some(db.url()),
                envs: Vec::new(),
                args: Vec::new(),
            },
        )?;
        let http = load::client(clients)?;
        let token_url = server.url("/v1/oauth/token");
        http.post(&token_url)
            .form(&form)
            .send()
            .await?
            .error_for_status()
            .context(
                "the first token exchange on the PostgreSQL store failed; see the server log",
            )?;
        let make = form_posts(&http, token_url, &form);
        let r = load::drive(clients, plan.warmup, plan.http, Some(server.pid()), make).await;
        let tail = server.log_tail(5);
        drop(server);
        drop(db);
        anyhow::Ok((r, tail))
    };
    report.pg_grants = Some(match pg.await {
        Ok((r, tail)) => {
            report
                .server_logs
                .push(("PostgreSQL-store server".into(), tail));
            Ok(r)
        }
        Err(e) => Err(format!("{e:#}")),
    });
}

async fn sqlite_http(
    kairos: &std::path::Path,
    issuer: &Arc<server::Issuer>,
    form: &[(&'static str, String)],
    plan: Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    let clients = plan.clients;
    let dir = ScratchDir::new("sqlite")?;
    let config = server::write_config(&dir.path().join("cfg"), issuer, &Default::default())?;
    let server = server::Server::start(
        kairos,
        &server::ServerOptions {
            data: dir.path().join("data"),
            config,
            log: dir.path().join("server.log"),
            store: None,
            envs: Vec::new(),
            args: Vec::new(),
        },
    )?;
    eprintln!("kairos server at {} ({})", server.addr, kairos.display());
    let http = load::client(clients)?;

    eprintln!("token grants, SQLite store...");
    let token_url = server.url("/v1/oauth/token");
    let first: serde_json::Value = http
        .post(&token_url)
        .form(form)
        .send()
        .await?
        .error_for_status()
        .context("the first token exchange failed; see the server log")?
        .json()
        .await?;
    let access_token = first["access_token"]
        .as_str()
        .context("the token exchange answered no access_token")?
        .to_owned();
    let make = form_posts(&http, token_url.clone(), form);
    report.grants =
        Some(load::drive(clients, plan.warmup, plan.http, Some(server.pid()), make).await);

    // A workload that fetches a new platform token for every exchange (a CI job's OIDC
    // token): each exchange's signature is verified, none is remembered from before.
    eprintln!("token grants, SQLite store, a new platform token each...");
    let make: MakeRequest = {
        let (http, url, issuer) = (http.clone(), token_url.clone(), Arc::clone(issuer));
        Arc::new(move || {
            // A failed mint sends an empty token, which the server refuses: a failure
            // the phase reports, not a crash.
            let platform = issuer.mint(Duration::from_secs(3600)).unwrap_or_default();
            http.post(&url)
                .form(&server::exchange_form(&platform, "bench-run", "30m"))
        })
    };
    report.grants_fresh =
        Some(load::drive(clients, plan.warmup, plan.http, Some(server.pid()), make).await);

    // The same grants bound to a DPoP key (RFC 9449): each exchange carries a fresh proof
    // (its own jti) that the server checks and claims in the store before the grant.
    eprintln!("token grants, SQLite store, DPoP-bound...");
    let key =
        Arc::new(kairos_crypto::dpop::ProofKey::generate().context("making the bench's DPoP key")?);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let make: MakeRequest = {
        let (http, url, form) = (http.clone(), token_url.clone(), form.to_vec());
        Arc::new(move || {
            let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let iat = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            // A failed signature sends an empty proof, which the server refuses: a
            // failure the phase reports, not a crash.
            let proof = key
                .proof("POST", &url, iat, &format!("bench-{n}"))
                .unwrap_or_default();
            http.post(&url).header("DPoP", proof).form(&form)
        })
    };
    report.grants_dpop =
        Some(load::drive(clients, plan.warmup, plan.http, Some(server.pid()), make).await);

    let wide = clients * accounts::WIDE;
    eprintln!("token grants, SQLite store, {wide} clients...");
    let make = form_posts(&load::client(wide)?, token_url.clone(), form);
    let r = load::drive(wide, plan.warmup, plan.http, Some(server.pid()), make).await;
    report.grants_wide = Some((wide, r));

    eprintln!("introspection...");
    let introspect_url = server.url("/v1/oauth/introspect");
    let check: serde_json::Value = http
        .post(&introspect_url)
        .bearer_auth(server::ADMIN_TOKEN)
        .form(&[("token", access_token.as_str())])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if check["active"] != true {
        bail!("introspection of a fresh grant's token is not active: {check}");
    }
    let make: MakeRequest = {
        let (http, url, token) = (http.clone(), introspect_url, access_token);
        Arc::new(move || {
            http.post(&url)
                .bearer_auth(server::ADMIN_TOKEN)
                .form(&[("token", token.as_str())])
        })
    };
    report.introspection =
        Some(load::drive(clients, plan.warmup, plan.http, Some(server.pid()), make).await);
    eprintln!("usage recording, the recorder driven directly...");
    report.recording = Some(usage_cost::measure(plan.cedar).map_err(|e| format!("{e:#}")));
    report
        .server_logs
        .push(("SQLite-store server".into(), server.log_tail(5)));
    Ok(())
}

/// Expiry lateness on a fresh SQLite-store server.
async fn expiry_figure(
    kairos: &std::path::Path,
    issuer: &server::Issuer,
    platform: &str,
    plan: Plan,
) -> anyhow::Result<expiry::ExpiryResult> {
    let dir = ScratchDir::new("expiry")?;
    let config = server::write_config(&dir.path().join("cfg"), issuer, &Default::default())?;
    let server = server::Server::start(
        kairos,
        &server::ServerOptions {
            data: dir.path().join("data"),
            config,
            log: dir.path().join("server.log"),
            store: None,
            envs: Vec::new(),
            args: Vec::new(),
        },
    )?;
    let settings = expiry::Settings {
        rate: plan.expiry_rate,
        issue_for: plan.expiry_issue_for,
        ttl_secs: plan.expiry_ttl_secs,
        max_in_flight: 256,
        drain_timeout: if plan.quick {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(300)
        },
    };
    expiry::measure(&server, platform, settings).await
}
