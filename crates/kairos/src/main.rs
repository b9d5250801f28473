//! `kairos`: the server (`kairos server`) and the CLI for everything else.
//! This crate only wires the library crates together.

mod backup;
mod dev_issuer;
mod memory;
mod server;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kairos",
    version,
    about = "Just-in-time access for non-human identities: time-bound, task-bound, revocable, verified gone."
)]
struct Cli {
    #[command(flatten)]
    global: kairos_cli::GlobalOpts,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the broker (`--dev` for an embedded store with nothing to install).
    Server(server::ServerArgs),
    /// A development stand-in for a CI/OIDC provider: mint platform JWTs locally.
    #[command(subcommand)]
    DevIssuer(dev_issuer::DevIssuer),
    /// Copy a SQLite store while the server runs (an online, consistent backup). For
    /// PostgreSQL use `pg_dump -Fc`. The master key is not in the copy: keep it apart.
    Backup(backup::BackupArgs),
    /// Print a shell completion script: `kairos completions bash > /etc/bash_completion.d/kairos`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(kairos_cli::Command),
}

/// The client options (`--addr`, `--token`, `--json`, `--ca-file`, `--cert-file`, `--key-file`) are global to the client commands
/// but mean nothing to `kairos server`: it gets hidden options of the same ids, so they are
/// not shown in its help and are refused with a pointer to what the server takes instead.
fn command() -> clap::Command {
    const CLIENT_ONLY: [(&str, &str, &str); 6] = [
        (
            "addr",
            "addr",
            "--addr is a client option; the server listens on --listen",
        ),
        (
            "token",
            "token",
            "--token is a client option; the server's admin token is KAIROS_ADMIN_TOKEN or --dev-admin-token",
        ),
        (
            "json",
            "json",
            "--json is a client option; the server logs JSON with --log-json",
        ),
        (
            "ca_file",
            "ca-file",
            "--ca-file is a client option; the server's TLS files are --tls-cert-file, --tls-key-file and --tls-client-ca-file",
        ),
        (
            "cert_file",
            "cert-file",
            "--cert-file is a client option; the server's certificate is --tls-cert-file",
        ),
        (
            "key_file",
            "key-file",
            "--key-file is a client option; the server's key is --tls-key-file",
        ),
    ];
    Cli::command().mut_subcommand("server", |server| {
        CLIENT_ONLY
            .into_iter()
            .fold(server, |server, (id, long, why)| {
                server.arg(
                    clap::Arg::new(id)
                        .long(long)
                        .hide(true)
                        .num_args(0..=1)
                        .default_missing_value("")
                        .value_parser(move |_: &str| Err::<String, _>(why)),
                )
            })
    })
}

/// mimalloc: per-thread free lists instead of glibc's locked arenas, for a server that
/// allocates a little per request and per store row on every thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut matches = command().get_matches();
    let cli = match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut command()).exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Top::Server(args) => match server::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            },
            Top::DevIssuer(cmd) => match dev_issuer::run(cmd) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            },
            Top::Backup(args) => match backup::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            },
            Top::Completions { shell } => {
                clap_complete::generate(shell, &mut command(), "kairos", &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            Top::Client(cmd) => match kairos_cli::run(cli.global, cmd).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            },
        }
    })
}
