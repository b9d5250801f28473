//! How a MariaDB target is configured.

use secrecy::SecretString;

/// The managed prefix used when none is configured.
pub const DEFAULT_MANAGED_PREFIX: &str = "kairos_";

/// The account host used when none is configured: any host.
pub const DEFAULT_ACCOUNT_HOST: &str = "%";

/// One MariaDB (or MySQL-compatible) target. `Debug` shows no secret: `admin_url` is a
/// `SecretString`.
#[derive(Debug, Clone)]
pub struct MariaDbSettings {
    /// The target's name in the catalog; it appears in errors.
    pub target: String,
    /// `mysql://user:password@host:port/database`. The admin account needs `CREATE USER`,
    /// the privileges it hands out `WITH GRANT OPTION`, `CONNECTION ADMIN` (or `SUPER`) to
    /// kill sessions, `PROCESS` to see them, `SELECT` on `mysql.user`, and `EVENT` on
    /// `database` when the event scheduler is on. The database is required: expiry events
    /// live there and workloads are told to use it.
    pub admin_url: SecretString,
    /// Every account Kairos creates here starts with it; it must be `[a-z0-9_]+`.
    pub managed_prefix: String,
    /// The host workloads connect to, when it differs from the admin URL's (e.g. a public
    /// name vs. a private address).
    pub connect_host: Option<String>,
    /// The host part of every account (`'name'@'<account_host>'`): `%` for any host, or
    /// an address, name, pattern or `ip/netmask` to restrict where workloads may connect
    /// from. Letters, digits and `. % _ : - /` only.
    pub account_host: String,
}

impl MariaDbSettings {
    /// Settings with the default prefix (`kairos_`), account host (`%`) and no separate
    /// connect host.
    pub fn new(target: impl Into<String>, admin_url: SecretString) -> Self {
        Self {
            target: target.into(),
            admin_url,
            managed_prefix: DEFAULT_MANAGED_PREFIX.to_owned(),
            connect_host: None,
            account_host: DEFAULT_ACCOUNT_HOST.to_owned(),
        }
    }
}
