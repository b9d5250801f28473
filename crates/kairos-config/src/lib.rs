//! Kairos catalog: the declarative TOML file (kept in Git) that registers issuers, teams,
//! non-human identities, targets, entitlements and Cedar policies, validated all or
//! nothing.
//!
//! - [`ConfigBundle::read_from_disk`] reads the main file and the JWKS and policy files it
//!   names into one serializable value (the CLI ships it to the server). It is the only
//!   function here that touches the filesystem.
//! - [`Catalog::from_bundle`] parses and validates the bundle, reporting *every* problem
//!   as a [`ConfigError`] with file, line and key path, e.g.
//!   `kairos.toml:14: identity[1].owner: team "paymnts" is not defined; defined teams: payments`.
//! - [`Catalog`] then answers lookups (identity by name or by token issuer and subject,
//!   entitlement by name, effective TTL caps) and holds the compiled
//!   [`kairos_policy::PolicySet`]. [`Catalog::diff`] says what applying a new catalog
//!   would create, change and remove.
//!
//! Invariants: secrets never sit in the catalog (a secret-looking key with an inline
//! value is an error, and errors never echo values of such keys); a [`Catalog`] exists
//! only fully validated.
//!
//! # Format
//!
#![doc = include_str!("../README.md")]

mod bundle;
mod catalog;
mod error;
mod load;
mod tree;

pub use bundle::ConfigBundle;
pub use catalog::{
    Binding, Catalog, ClientCertificates, ConfigDiff, ConsoleSettings, DbTarget, DpopSettings,
    Entitlement, Exception, GovernanceSettings, Identity, Issuer, IssuerName, JwksRef,
    NotifyChannel, OidcSettings, OrphanAction, OverCap, Privileges, RabbitMqPermissions,
    RabbitMqTopic, RecertSettings, SecretRef, ServerSettings, ServerTls, SetDelivery, SetReceiver,
    SshPrivileges, SshTarget, StoreLocation, Target, TargetKind, Team, TierCaps, TrustDomain,
    UrlRef,
};
pub use error::{ConfigError, ConfigErrors};
pub use kairos_policy::Tier;

/// Checks a notification channel's address (`http://` or `https://`), as configuration
/// does for `url`; the server checks a `url_env`/`url_file` value with it at delivery.
pub fn check_channel_url(s: &str) -> Result<String, String> {
    load::check_channel_url(s)
}
