//! `kairos server`: dev mode (embedded SQLite, generated keys, printed admin token) and
//! the production form (`--config kairos.toml`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kairos_broker::{Broker, BrokerSettings};
use kairos_config::{
    Catalog, ClientCertificates, ConfigBundle, SecretRef, ServerTls, StoreLocation,
};
use kairos_crypto::seal::MasterKey;
use kairos_domain::{Principal, SystemClock};
use kairos_store::{BootstrapOutcome, SqlStore};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Development mode: embedded SQLite under --data, generated master key and signing
    /// keys, and an admin token printed at start. Nothing else to install.
    #[arg(long)]
    dev: bool,
    /// Data directory for dev mode (SQLite store and master key).
    #[arg(long, default_value = ".kairos")]
    data: PathBuf,
    /// Fix the dev-mode admin token instead of generating one.
    #[arg(long, env = "KAIROS_DEV_ADMIN_TOKEN", hide_env_values = true)]
    dev_admin_token: Option<String>,
    /// Address to listen on (port 0 picks a free port). Default: 127.0.0.1:8740.
    #[arg(long)]
    listen: Option<String>,
    /// Declarative configuration (TOML), applied at start.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://USER@HOST/DB. Dev default: sqlite under --data.
    #[arg(long, env = "KAIROS_STORE")]
    store: Option<String>,
    /// Serve HTTPS with this certificate (PEM; the leaf first, then intermediates).
    /// Overrides [server] tls_cert_file. The file is read again when it changes.
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM). Overrides [server] tls_key_file.
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<PathBuf>,
    /// Ask clients for a certificate signed by one of these CAs (PEM bundle).
    /// Overrides [server] tls_client_ca_file.
    #[arg(long, value_name = "FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Whether a client without a verified certificate is served (`optional`, the default
    /// with a client CA) or refused at the handshake (`required`). Overrides
    /// [server] tls_client_auth.
    #[arg(long, value_enum, value_name = "MODE")]
    tls_client_auth: Option<ClientAuthMode>,
    /// Public base URL of this broker (the `iss` of its tokens). Default: http://LISTEN,
    /// or https://LISTEN with native TLS.
    #[arg(long, env = "KAIROS_ISSUER_URL")]
    issuer_url: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Append signed audit checkpoints to this file (created 0600, append-only), besides
    /// the log. Overrides [server] audit_checkpoint_file. Keep it where the store's
    /// writers cannot rewrite it; check with `kairos audit verify --checkpoints FILE`.
    #[arg(long, value_name = "FILE")]
    audit_checkpoints: Option<PathBuf>,
    /// Abort a provisioning grant left `provisioning` this long (an interrupted issuance).
    #[arg(long, default_value = "60s", hide = true)]
    provisioning_grace: kairos_domain::Ttl,
    /// How long a claimed revocation job is held before another worker may retry it.
    #[arg(long, default_value = "30s", hide = true)]
    revocation_lease: kairos_domain::Ttl,
    /// Failed attempts of one revocation after which the alarm metric and log fire.
    #[arg(long, default_value_t = 5, hide = true, value_parser = clap::value_parser!(u32).range(1..))]
    revocation_alarm_after: u32,
    /// Wait before the first retry of a failed revocation, in ms (doubles per failure).
    #[arg(long, default_value_t = 1000, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    revocation_backoff_ms: u64,
    /// How often a target with failing revocations is probed, in ms.
    #[arg(long, default_value_t = 2000, hide = true, value_parser = clap::value_parser!(u64).range(100..))]
    outage_probe_ms: u64,
    /// How often the usage detectors look (dormant, shared, held past use), in ms.
    #[arg(long, default_value_t = 30_000, hide = true, value_parser = clap::value_parser!(u64).range(100..))]
    usage_pass_ms: u64,
    /// A console session unused this long ends (e.g. `30m`).
    #[arg(long, default_value = "30m", value_name = "TTL")]
    console_idle_timeout: kairos_domain::Ttl,
    /// A console session ends this long after sign-in, however busy (e.g. `12h`).
    #[arg(long, default_value = "12h", value_name = "TTL")]
    console_session_max: kairos_domain::Ttl,
    /// How often the recertification pass runs, in ms.
    #[arg(long, default_value_t = 5000, hide = true, value_parser = clap::value_parser!(u64).range(100..))]
    recert_pass_ms: u64,
    /// A notification still undelivered this long after it was written is dead-lettered
    /// (`GET /v1/notifications?state=dead`; `POST /v1/notifications/{id}/retry` sends it again).
    #[arg(long, default_value = "24h", env = "KAIROS_NOTIFY_DEAD_AFTER")]
    notify_dead_after: kairos_domain::Ttl,
    /// Wait before the first retry of a failed notification, in ms (doubles per failure, capped at 5 min).
    #[arg(long, default_value_t = 1000, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    notify_backoff_ms: u64,
    /// How long one notification delivery attempt may take, in ms.
    #[arg(long, default_value_t = 10_000, hide = true, value_parser = clap::value_parser!(u64).range(100..))]
    notify_timeout_ms: u64,
}

/// `--tls-client-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientAuthMode {
    Optional,
    Required,
}

/// The listener's TLS settings from the flags and `[server]` (a flag wins over its key),
/// each file labelled with where it was named; `None`: plain HTTP.
fn tls_settings(
    args: &ServerArgs,
    config: Option<&ServerTls>,
) -> anyhow::Result<Option<kairos_tls::TlsSettings>> {
    use kairos_tls::{ClientAuth, PemFile};
    let key_in_config = |key: &str| match &args.config {
        Some(file) => format!("[server] {key} in {}", file.display()),
        None => format!("[server] {key}"),
    };
    let pick = |flag: &Option<PathBuf>, flag_name: &str, key: &str, value: Option<&String>| match (
        flag, value,
    ) {
        (Some(path), _) => Some(PemFile::new(path, flag_name)),
        (None, Some(path)) => Some(PemFile::new(path, key_in_config(key))),
        (None, None) => None,
    };
    let cert = pick(
        &args.tls_cert_file,
        "--tls-cert-file",
        "tls_cert_file",
        config.map(|t| &t.cert_file),
    );
    let key = pick(
        &args.tls_key_file,
        "--tls-key-file",
        "tls_key_file",
        config.map(|t| &t.key_file),
    );
    let (config_ca, config_mode) = match config.map(|t| &t.client_certificates) {
        None | Some(ClientCertificates::NotRequested) => (None, None),
        Some(ClientCertificates::Optional { ca_file }) => {
            (Some(ca_file), Some(ClientAuthMode::Optional))
        }
        Some(ClientCertificates::Required { ca_file }) => {
            (Some(ca_file), Some(ClientAuthMode::Required))
        }
    };
    let ca = pick(
        &args.tls_client_ca_file,
        "--tls-client-ca-file",
        "tls_client_ca_file",
        config_ca,
    );
    let client_auth = match (ca, args.tls_client_auth.or(config_mode)) {
        (None, None) => ClientAuth::NotRequested,
        (Some(ca), None | Some(ClientAuthMode::Optional)) => ClientAuth::Optional(ca),
        (Some(ca), Some(ClientAuthMode::Required)) => ClientAuth::Required(ca),
        (None, Some(_)) => bail!(
            "--tls-client-auth needs --tls-client-ca-file (or [server] tls_client_ca_file): the CA certificates (PEM) that sign the clients' certificates"
        ),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(kairos_tls::TlsSettings {
            cert,
            key,
            client_auth,
        })),
        (None, None) if client_auth == ClientAuth::NotRequested => Ok(None),
        (None, None) => bail!(
            "client certificates need native TLS: give --tls-cert-file and --tls-key-file (or [server] tls_cert_file and tls_key_file)"
        ),
        (Some(cert), None) => bail!(
            "the certificate {cert} needs its private key: give --tls-key-file (or [server] tls_key_file)"
        ),
        (None, Some(key)) => bail!(
            "the private key {key} needs its certificate: give --tls-cert-file (or [server] tls_cert_file)"
        ),
    }
}

fn init_logging(json: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Reads the master key from a file, creating it (0600) in dev mode.
fn master_key_from_file(path: &Path, create: bool) -> anyhow::Result<MasterKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::from_base64(text.trim())
            .with_context(|| format!("{} does not hold a valid master key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = MasterKey::generate()?;
            write_private(path, key.to_base64().expose_secret().as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read master key {}", path.display())),
    }
}

/// Creates missing directories as 0700 (before the umask).
fn dir_builder() -> std::fs::DirBuilder {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b
}

/// The dev data directory (store, master key) is its owner's alone (0700), whatever the
/// umask it was created under or the mode an earlier run left it with.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("cannot read data directory {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || {
                    format!(
                        "cannot make data directory {} private (mode 0700)",
                        dir.display()
                    )
                },
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    if let Err(e) = crate::memory::no_transparent_huge_pages() {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off for this process; bulk store writes will be slower");
    }

    // The configuration file, if any: its [server] section and its catalog.
    let bundle = match &args.config {
        Some(path) => Some(
            ConfigBundle::read_from_disk(path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let catalog = match &bundle {
        Some(b) => Some(Catalog::from_bundle(b).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let server_settings = catalog
        .as_ref()
        .and_then(|c| c.server().cloned())
        .unwrap_or_default();

    if !args.dev && args.config.is_none() {
        bail!("give --dev for a self-contained development broker, or --config kairos.toml");
    }

    // TLS files are read before anything is opened: a bad file changes nothing.
    let tls = match tls_settings(&args, server_settings.tls.as_ref())? {
        Some(settings) => {
            let cert =
                kairos_tls::ReloadingCert::load(settings.cert.clone(), settings.key.clone())?;
            Some(Arc::new(kairos_tls::server_config(
                &settings,
                Arc::new(cert),
            )?))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };

    // Store, master key and listen address. Dev mode keeps everything under --data and
    // ignores [server] store/listen; production reads them from [server] (flags win).
    let (store_url, master, listen) = if args.dev {
        dir_builder()
            .create(&args.data)
            .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
        private_dir(&args.data)?;
        let url = args
            .store
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", args.data.join("kairos.db").display()));
        let master = master_key_from_file(&args.data.join("master.key"), true)?;
        let listen = args
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:8740".into());
        (url, master, listen)
    } else {
        let url = match (&args.store, &server_settings.store) {
            (Some(url), _) => url.clone(),
            (None, StoreLocation::Url(url)) => url.clone(),
            (None, StoreLocation::Env(var)) => std::env::var(var)
                .with_context(|| format!("[server] store_env names {var}, which is not set"))?,
        };
        let master = match &server_settings.master_key {
            Some(SecretRef::Env(var)) => {
                let v = std::env::var(var).with_context(|| {
                    format!("[server] master_key_env names {var}, which is not set")
                })?;
                MasterKey::from_base64(v.trim())
                    .with_context(|| format!("{var} does not hold a valid master key"))?
            }
            Some(SecretRef::File(path)) => master_key_from_file(Path::new(path), false)?,
            None => match std::env::var("KAIROS_MASTER_KEY") {
                Ok(v) => MasterKey::from_base64(v.trim())
                    .context("KAIROS_MASTER_KEY does not hold a valid master key")?,
                Err(_) => bail!(
                    "no master key: set [server] master_key_file or master_key_env, or KAIROS_MASTER_KEY (make one with `openssl rand -base64 32`)"
                ),
            },
        };
        let listen = args
            .listen
            .clone()
            .unwrap_or_else(|| server_settings.listen.to_string());
        (url, master, listen)
    };

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr: SocketAddr = listener.local_addr()?;

    let store = SqlStore::connect(&store_url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(&store_url)))?;
    let settings = BrokerSettings {
        issuer_url: args
            .issuer_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}")),
        pending_timeout: server_settings.pending_timeout.as_duration(),
        provisioning_grace: args.provisioning_grace.as_duration(),
        revocation_lease: args.revocation_lease.as_duration(),
        revocation_alarm_after: args.revocation_alarm_after,
        revocation_backoff_unit: Duration::from_millis(args.revocation_backoff_ms),
        outage_probe_interval: Duration::from_millis(args.outage_probe_ms),
        recert_pass_interval: Duration::from_millis(args.recert_pass_ms),
        // Crash tests only: a risky switch that says so in its name.
        danger_crash_at: std::env::var("KAIROS_DANGER_CRASH_AT")
            .ok()
            .and_then(|v| kairos_broker::CrashPoint::parse(&v)),
        audit_checkpoint_file: args.audit_checkpoints.clone().or_else(|| {
            server_settings
                .audit_checkpoint_file
                .as_ref()
                .map(PathBuf::from)
        }),
        audit_checkpoint_interval: server_settings.audit_checkpoint_interval.as_duration(),
        usage_pass_interval: Duration::from_millis(args.usage_pass_ms),
        notify: kairos_broker::NotifySettings {
            dead_after: args.notify_dead_after.as_duration(),
            backoff_unit: Duration::from_millis(args.notify_backoff_ms),
            timeout: Duration::from_millis(args.notify_timeout_ms),
        },
        sources: kairos_broker::SourceSettings {
            trusted_proxy_header: server_settings.trusted_proxy_header.clone(),
            trusted_proxies: server_settings.trusted_proxies.clone(),
        },
        ..BrokerSettings::default()
    };
    let broker = Broker::start(Arc::new(store), Arc::new(SystemClock), master, settings)
        .await
        .context("starting the broker")?;

    if let Some(bundle) = bundle {
        let diff = broker
            .apply_config(&Principal::System("bootstrap"), bundle)
            .await
            .context("applying the configuration")?
            .diff;
        tracing::info!(
            created = diff.created.len(),
            changed = diff.changed.len(),
            removed = diff.removed.len(),
            "configuration applied"
        );
    }

    // The bootstrap admin token.
    let admin_token = if args.dev {
        Some(match &args.dev_admin_token {
            Some(t) => SecretString::from(t.clone()),
            None => kairos_crypto::random_secret(32)?,
        })
    } else {
        std::env::var("KAIROS_ADMIN_TOKEN")
            .ok()
            .map(SecretString::from)
    };
    let mut dev_token_installed = false;
    if let Some(token) = &admin_token {
        if token.expose_secret().len() < 16 {
            bail!("the admin token must be at least 16 characters");
        }
        dev_token_installed = matches!(
            broker.install_bootstrap_token(token).await?,
            BootstrapOutcome::Installed
        );
    } else if !broker.has_live_admin().await? {
        tracing::warn!(
            "the store has no admin with a live token, so nobody can administer this broker: \
             start it once with KAIROS_ADMIN_TOKEN set to a secret of at least 16 characters \
             (e.g. `openssl rand -base64 32`); that creates the user admin with that token"
        );
    }

    println!(
        "kairos: listening on {scheme}://{addr} (store: {})",
        broker.store().backend()
    );
    if args.dev {
        match (&args.dev_admin_token, &admin_token) {
            (None, Some(token)) if dev_token_installed => println!(
                "kairos: dev admin token (shown once): {}",
                token.expose_secret()
            ),
            (None, Some(_)) => println!(
                "kairos: the store already has an admin; use the token printed at its first start"
            ),
            _ => {}
        }
        println!("kairos: export KAIROS_ADDR={scheme}://{addr}");
    }
    tracing::info!(%addr, store = broker.store().backend(), dev = args.dev, "kairos serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(Arc::clone(&broker).run_background(stop_rx));
    // The console's session cookie is `Secure` when people reach the broker over TLS (its
    // public URL is https, whether or not a proxy in front terminates the TLS).
    let console = kairos_console::ConsoleSettings {
        limits: kairos_console::SessionLimits {
            idle: args.console_idle_timeout.as_duration(),
            absolute: args.console_session_max.as_duration(),
        },
        transport: if broker.settings().issuer_url.starts_with("https://") {
            kairos_console::CookieTransport::Tls
        } else {
            kairos_console::CookieTransport::PlainHttp
        },
    };
    let app = kairos_api::router(Arc::clone(&broker))
        .merge(kairos_console::router(Arc::clone(&broker), console));
    // Peer addresses reach the handlers (usage monitoring records where requests and
    // introspections come from); over TLS, so do verified client certificates.
    match tls {
        Some(config) => kairos_tls::serve(listener, config, app, shutdown_signal()).await,
        None => axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?,
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), background).await;
    tracing::info!("kairos stopped");
    Ok(())
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
