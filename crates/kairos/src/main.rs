//! `kairos`: the server (`kairos server`) and the CLI for everything else.
//! This crate only wires the library crates together.

mod dev_issuer;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    #[command(flatten)]
    Client(kairos_cli::Command),
}

/// mimalloc: per-thread free lists instead of glibc's locked arenas, for a server that
/// allocates a little per request and per store row on every thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
