//! `kairos dev-issuer`: a stand-in for a CI system's OIDC provider, so a newcomer can mint
//! platform JWTs for a local workload. For development only: its private key sits in a
//! plain file (mode 0600) in the directory you choose.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kairos_crypto::issuer::{SigningAlg, SigningKey};
use kairos_domain::Ttl;
use secrecy::ExposeSecret;

const KEY_FILE: &str = "dev-issuer.key";
const JWKS_FILE: &str = "dev-issuer-jwks.json";

#[derive(Debug, clap::Subcommand)]
pub enum DevIssuer {
    /// Create a signing key (dev-issuer.key) and its JWKS (dev-issuer-jwks.json) in DIR.
    Init {
        /// Directory for the key and the JWKS (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print a platform JWT for a workload, signed by the dev issuer in DIR.
    Mint {
        /// The `sub` claim: what the platform says the workload is.
        #[arg(long)]
        sub: String,
        /// Directory holding the dev issuer's key (from `dev-issuer init`).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The `iss` claim; must match the [[issuer]] in the Kairos configuration.
        #[arg(long, default_value = "https://ci.example.com")]
        iss: String,
        /// The `aud` claim; must match the issuer's `audience`.
        #[arg(long, default_value = "kairos")]
        aud: String,
        /// Lifetime of the platform token.
        #[arg(long, default_value = "10m")]
        ttl: Ttl,
    },
}

pub fn run(cmd: DevIssuer) -> anyhow::Result<()> {
    match cmd {
        DevIssuer::Init { dir } => init(&dir),
        DevIssuer::Mint {
            sub,
            dir,
            iss,
            aud,
            ttl,
        } => {
            let key = load(&dir)?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let claims = serde_json::json!({
                "iss": iss, "aud": aud, "sub": sub,
                "iat": now, "nbf": now, "exp": now + ttl.as_secs(),
            });
            println!("{}", key.sign_jwt(&claims)?);
            Ok(())
        }
    }
}

fn init(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = SigningKey::generate(SigningAlg::Es256)?;
    let stored = serde_json::json!({
        "kid": key.kid(),
        "alg": key.alg().to_string(),
        "pkcs8": STANDARD.encode(key.pkcs8_der().expose_secret()),
    });
    let key_path = dir.join(KEY_FILE);
    crate::server::write_private(&key_path, stored.to_string().as_bytes()).with_context(|| {
        format!(
            "{} exists already? remove it to start over",
            key_path.display()
        )
    })?;
    let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
    let jwks_path = dir.join(JWKS_FILE);
    std::fs::write(&jwks_path, serde_json::to_string_pretty(&jwks)?)?;
    println!("dev issuer key:  {}", key_path.display());
    println!(
        "dev issuer JWKS: {} (point an [[issuer]] jwks_file at it)",
        jwks_path.display()
    );
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<SigningKey> {
    let path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; run `kairos dev-issuer init --dir {}` first",
            path.display(),
            dir.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} lacks {k}", path.display()))
    };
    let der = STANDARD.decode(field("pkcs8")?)?;
    let alg: SigningAlg = field("alg")?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad alg in {}", path.display()))?;
    Ok(SigningKey::from_pkcs8(field("kid")?, alg, &der)?)
}
