//! What the CLI does before (or instead of) reaching a server: bad addresses, missing
//! tokens, a server that is not running. Talking to a real server is tested with the binary.

// A test crate: a panic is how a test fails.
#![allow(clippy::panic)]

use clap::Parser;
use kairos_cli::{Command, Exit, GlobalOpts};

#[derive(Debug, Parser)]
#[command(name = "kairos")]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

struct Outcome {
    exit: Exit,
    stdout: String,
    stderr: String,
}

async fn kairos(args: &[&str]) -> Outcome {
    let argv = std::iter::once("kairos").chain(args.iter().copied());
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => panic!("{args:?} does not parse: {e}"),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = kairos_cli::run_with(
        reqwest::Client::new(),
        &cli.global,
        cli.command,
        &mut out,
        &mut err,
    )
    .await;
    Outcome {
        exit,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// An address where nothing listens: bind a port, then let it go.
fn dead_addr() -> String {
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("cannot bind: {e}"),
    };
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn unreachable_server_is_named_without_leaking_the_token() {
    let addr = dead_addr();
    let o = kairos(&["--addr", &addr, "--token", "s3cret-token", "grants"]).await;
    assert_eq!(o.exit, Exit::Failure);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.starts_with(&format!(
            "error: cannot reach Kairos at {addr}: is the server running? (set KAIROS_ADDR)\n"
        )),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("s3cret-token"), "{}", o.stderr);
}

#[tokio::test]
async fn missing_token_is_a_usage_error() {
    let o = kairos(&["--addr", &dead_addr(), "--token", "", "grants"]).await;
    assert_eq!(o.exit, Exit::Usage);
    assert_eq!(
        o.stderr,
        "error: no API token: set KAIROS_TOKEN or pass --token\n"
    );
}

#[tokio::test]
async fn health_needs_no_token() {
    let o = kairos(&["--addr", &dead_addr(), "--token", "", "health"]).await;
    assert!(
        o.stderr.starts_with("error: cannot reach Kairos"),
        "{}",
        o.stderr
    );
}

#[tokio::test]
async fn bad_address_is_a_usage_error() {
    let o = kairos(&["--addr", "localhost:8740", "--token", "t", "grants"]).await;
    assert_eq!(o.exit, Exit::Usage);
    assert_eq!(
        o.stderr,
        "error: --addr \"localhost:8740\" is not an http(s) URL such as http://127.0.0.1:8740\n"
    );
}

#[tokio::test]
async fn bad_since_is_refused_before_calling() {
    let o = kairos(&[
        "--addr",
        &dead_addr(),
        "--token",
        "t",
        "audit",
        "--since",
        "yesterday",
    ])
    .await;
    assert_eq!(o.exit, Exit::Usage);
    assert!(
        o.stderr
            .starts_with("error: --since \"yesterday\" is neither"),
        "{}",
        o.stderr
    );
}

#[tokio::test]
async fn dot_dot_ids_are_refused() {
    let o = kairos(&["--addr", &dead_addr(), "--token", "t", "grant", ".."]).await;
    assert_eq!(o.exit, Exit::Usage);
    assert_eq!(o.stderr, "error: \"..\" is not a valid name or id\n");
}

#[tokio::test]
async fn apply_reports_local_problems_without_calling() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kairos-cli-apply");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    let missing = dir.join("missing.toml");
    let o = kairos(&[
        "--addr",
        &dead_addr(),
        "--token",
        "t",
        "apply",
        &missing.to_string_lossy(),
    ])
    .await;
    assert_eq!(o.exit, Exit::Usage);
    assert!(
        o.stderr.starts_with("error: missing.toml: cannot read"),
        "{}",
        o.stderr
    );

    let broken = dir.join("broken.toml");
    if let Err(e) = std::fs::write(&broken, "[[team]]\nname = \n") {
        panic!("cannot write {}: {e}", broken.display());
    }
    let o = kairos(&[
        "--addr",
        &dead_addr(),
        "--token",
        "t",
        "apply",
        &broken.to_string_lossy(),
    ])
    .await;
    assert_eq!(o.exit, Exit::Usage);
    assert!(o.stderr.starts_with("error: broken.toml:"), "{}", o.stderr);
    assert!(!o.stderr.contains("cannot reach"), "{}", o.stderr);
}
