//! `kairos backup`: an online copy of a SQLite store, consistent while the server runs.
//! The copy itself is `kairos_store::backup`; this is its command line.

use std::path::PathBuf;

use anyhow::{Context, bail};
use kairos_config::{Catalog, ConfigBundle, StoreLocation};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The store to copy, as the server names it: sqlite://PATH. Default: the
    /// [server] store of --config.
    #[arg(long, env = "KAIROS_STORE")]
    store: Option<String>,
    /// Read the store from this configuration's [server] store / store_env.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the copy (a new file, created 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let store = match (&args.store, &args.config) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => {
            let bundle = ConfigBundle::read_from_disk(path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("reading {}", path.display()))?;
            let catalog = Catalog::from_bundle(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
            match catalog.server().cloned().unwrap_or_default().store {
                StoreLocation::Url(url) => url,
                StoreLocation::Env(var) => std::env::var(&var)
                    .with_context(|| format!("[server] store_env names {var}, which is not set"))?,
            }
        }
        (None, None) => bail!(
            "give the store to copy: --store sqlite://PATH (or KAIROS_STORE), or --config kairos.toml"
        ),
    };
    let source = kairos_store::backup::sqlite_path(&store)?;
    let summary = kairos_store::backup::backup_sqlite(&source, &args.out, args.force)?;
    println!(
        "kairos: backed up {} to {} ({} bytes, {} grants, audit chain up to #{}); keep the master key separately, the copy cannot be opened without it",
        source.display(),
        summary.out.display(),
        summary.bytes,
        summary.grants,
        summary.audit_seq
    );
    Ok(())
}
