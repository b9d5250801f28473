//! `kairos-bench`: measures Kairos and regenerates `BENCHMARKS.md`. Every figure is
//! printed beside a floor measured in the same run on the same machine, so that the
//! ratio means something on a noisy, shared machine. No figure is asserted anywhere.
//!
//! ```sh
//! cargo build --release -p kairos && cargo run --release -p kairos-bench -- --quick
//! ```

mod cedar;
mod load;
mod machine;
mod noop;
mod report;
mod server;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::load::{LoadResult, MakeRequest};
use crate::report::Report;

/// Measures Kairos against same-run floors and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "kairos-bench")]
struct Args {
    /// Short phases: the whole run finishes in under two minutes.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: std::path::PathBuf,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

/// How long each phase runs.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    pub warmup: Duration,
    pub http: Duration,
    pub sign: Duration,
    pub cedar: Duration,
}

impl Durations {
    fn for_mode(quick: bool) -> Self {
        if quick {
            Self {
                warmup: Duration::from_secs(1),
                http: Duration::from_secs(8),
                sign: Duration::from_secs(2),
                cedar: Duration::from_secs(4),
            }
        } else {
            Self {
                warmup: Duration::from_secs(3),
                http: Duration::from_secs(30),
                sign: Duration::from_secs(5),
                cedar: Duration::from_secs(15),
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let durations = Durations::for_mode(args.quick);
    let started = Instant::now();
    let mut report = Report::new(args.quick, args.clients, durations);
    eprintln!(
        "kairos-bench: {} build, {} mode, {} clients",
        report.machine.profile,
        if args.quick { "quick" } else { "full" },
        args.clients
    );

    // Located first, so a missing server binary fails before anything is measured.
    let kairos = server::kairos_binary()?;

    eprintln!("ES256 signing floor...");
    report.es256_signs_per_sec = Some(es256_signs_per_sec(durations.sign)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    runtime.block_on(http_figures(&kairos, &args, durations, &mut report))?;
    drop(runtime);

    for count in [3, 1_000] {
        eprintln!("Cedar decisions with {count} policies...");
        report.cedar.push(cedar::measure(count, durations.cedar)?);
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

async fn http_figures(
    kairos: &std::path::Path,
    args: &Args,
    d: Durations,
    report: &mut Report,
) -> anyhow::Result<()> {
    let clients = args.clients;

    // Floor: the no-op handler, same body size as a token exchange.
    eprintln!("no-op HTTP floor...");
    let noop = noop::NoopServer::start()?;
    let http = load::client(clients)?;
    let issuer = server::Issuer::new()?;
    // Valid for the whole run and then some; the server checks exp on every exchange.
    let platform = issuer.mint(Duration::from_secs(3600))?;
    let form = server::exchange_form(&platform);
    let make: MakeRequest = {
        let (http, url, form) = (http.clone(), noop.url(), form.clone());
        Arc::new(move || http.post(&url).form(&form))
    };
    report.noop = Some(load::drive(clients, d.warmup, d.http, make).await);
    drop(http);
    drop(noop);

    // The real server, SQLite store in a fresh directory.
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let config = server::write_config(dir.path(), &issuer)?;
    let log = dir.path().join("server.log");
    let server = server::Server::start(kairos, &dir.path().join("data"), &config, &log)?;
    eprintln!("kairos server at {} ({})", server.addr, kairos.display());
    let http = load::client(clients)?;

    eprintln!("token grants...");
    let token_url = server.url("/v1/oauth/token");
    let first: serde_json::Value = http
        .post(&token_url)
        .form(&form)
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
    let make: MakeRequest = {
        let (http, url, form) = (http.clone(), token_url.clone(), form.clone());
        Arc::new(move || http.post(&url).form(&form))
    };
    report.grants = Some(load::drive(clients, d.warmup, d.http, make).await);

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
    let introspection: LoadResult = load::drive(clients, d.warmup, d.http, make).await;
    report.introspection = Some(introspection);
    report.server_log_tail = tail(&std::fs::read_to_string(&server.log).unwrap_or_default(), 5);
    drop(server);
    Ok(())
}

fn tail(text: &str, lines: usize) -> Vec<String> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}
