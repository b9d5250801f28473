//! The Kairos command-line client.
//!
//! The `kairos` binary flattens [`GlobalOpts`] and [`Command`] next to its own `server`
//! command and calls [`run`]. Every command talks to a Kairos server over its HTTP API
//! (this crate knows the JSON shapes it prints, not the server's types) and prints an
//! aligned table, or the server's JSON with `--json`.
//!
//! Exit codes: 0 success, 1 the server refused or could not be reached (or a check such as
//! `audit verify` failed), 2 usage or local errors, 3 denied by policy.
//!
//! Invariant: tokens are held as [`secrecy::SecretString`] and are printed only where the
//! user asked for them (an issued credential, a new user's token), never in errors.

mod api;
mod bundle;
mod cli;
mod commands;
mod governance;
mod identity;
mod mcp;
mod notifications;
mod render;
mod reviews;
mod time;
mod wire;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub use api::Exit;
pub use cli::{
    AuditArgs, AuditCommand, AuditFilterArgs, Command, DecideArgs, ExchangeArgs, GlobalOpts,
    GrantStateArg, GrantsArgs, KeyAlg, KeysArgs, KeysCommand, McpArgs, RenewArgs, RequestArgs,
    RequestStateArg, RequestsArgs, RevokeArgs, TaskArgs, UserCommand, UserRole,
};
pub use commands::recert::{AttestArgs, ExceptionCommand, RecertCommand, RecertListArgs};
pub use governance::{AlertsArgs, AlertsCommand};
pub use identity::IdentityCommand;
pub use notifications::{NotificationStateArg, NotificationsArgs, NotificationsCommand};
pub use reviews::ReviewCommand;

/// Runs one client command against the server at `global.addr`, printing to the process's
/// stdout and stderr.
pub async fn run(global: GlobalOpts, command: Command) -> anyhow::Result<ExitCode> {
    let client = http_client(&global)?;
    if let Command::Mcp(args) = command {
        return mcp::serve_stdio(client, &global, args).await;
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let exit = run_with(client, &global, command, &mut out, &mut err).await;
    Ok(exit.into())
}

/// The HTTP client [`run`] uses: TLS by rustls; with `--ca-file` (`KAIROS_CA_FILE`), the
/// certificates of that PEM file are the only roots trusted; with `--cert-file` and
/// `--key-file`, that client certificate is shown to a server that asks for one.
pub fn http_client(global: &GlobalOpts) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("kairos-cli/", env!("CARGO_PKG_VERSION")));
    if let (Some(cert), Some(key)) = (&global.cert_file, &global.key_file) {
        let read = |path: &Path, flag: &str| {
            std::fs::read(path).with_context(|| format!("cannot read {} ({flag})", path.display()))
        };
        let mut pem = read(cert, "--cert-file")?;
        pem.push(b'\n');
        pem.extend(read(key, "--key-file")?);
        let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
            format!(
                "{} (--cert-file) and {} (--key-file) are not a PEM certificate and its private key",
                cert.display(),
                key.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    if let Some(path) = &global.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {} (--ca-file)", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "the CA file {} (--ca-file) is not PEM certificates (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            )
        })?;
        if roots.is_empty() {
            anyhow::bail!(
                "the CA file {} (--ca-file) holds no certificate (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            );
        }
        builder = roots
            .into_iter()
            .fold(builder.tls_built_in_root_certs(false), |b, root| {
                b.add_root_certificate(root)
            });
    }
    builder.build().context("cannot set up the HTTP client")
}

/// [`run`] with the client and output streams passed in, for tests. Errors are written to
/// `err` as `error: …`; the return value says how the process should exit.
pub async fn run_with(
    client: reqwest::Client,
    global: &GlobalOpts,
    command: Command,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Exit {
    let result = match api::Api::new(client, &global.addr, global.token.clone()) {
        Ok(api) => {
            let mut io = commands::Io {
                out: &mut *out,
                err: &mut *err,
                format: if global.json {
                    commands::Format::Json
                } else {
                    commands::Format::Table
                },
            };
            commands::dispatch(&api, command, &mut io).await
        }
        Err(e) => Err(e),
    };
    let exit = match result {
        Ok(exit) => exit,
        // Someone closed our stdout (e.g. `| head`): nothing left to say.
        Err(api::CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Exit::Failure
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            e.exit()
        }
    };
    let _ = out.flush();
    let _ = err.flush();
    exit
}
