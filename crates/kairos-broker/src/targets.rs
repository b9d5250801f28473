//! The connectors of the configured database targets, built when a catalog is applied.
//! Admin URLs are read here, from the environment or a file the configuration names, and
//! go straight into the connector as secrets.

use std::collections::BTreeMap;
use std::sync::Arc;

use kairos_config::{Catalog, DbTarget, SecretRef, TargetKind};
use kairos_connector_mariadb::{MariaDbConnector, MariaDbSettings};
use kairos_connector_postgres::{PostgresConnector, PostgresSettings};
use kairos_connector_redis::{RedisConnector, RedisSettings};
use kairos_connectors::Connector;
use kairos_domain::TargetName;
use secrecy::SecretString;

use crate::{BrokerError, Result};

/// Connectors by target name: the catalog's database targets, and removed ones kept until
/// every grant on them is verified gone (the revocation worker needs them; the reconciler
/// does not list or remove accounts on them).
#[derive(Debug, Default, Clone)]
pub struct Targets {
    by_name: BTreeMap<TargetName, Arc<dyn Connector>>,
    retired: BTreeMap<TargetName, Arc<dyn Connector>>,
}

fn read_secret(target: &TargetName, r: &SecretRef) -> Result<SecretString> {
    let invalid =
        |m: String| BrokerError::invalid("invalid_config", format!("target {target}: {m}"));
    match r {
        SecretRef::Env(var) => std::env::var(var)
            .map(|v| SecretString::from(v.trim().to_owned()))
            .map_err(|_| {
                invalid(format!(
                    "admin URL variable {var} is not set in the server's environment"
                ))
            }),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| SecretString::from(v.trim().to_owned()))
            .map_err(|e| invalid(format!("cannot read admin URL file {path}: {e}"))),
    }
}

fn connector(name: &TargetName, kind: &TargetKind, db: &DbTarget) -> Result<Arc<dyn Connector>> {
    let admin_url = read_secret(name, &db.admin_url)?;
    let refused = |e: kairos_connectors::ConnectorError| {
        BrokerError::invalid("invalid_config", format!("target {name}: {e}"))
    };
    let target = name.to_string();
    Ok(match kind {
        TargetKind::Postgres(_) => Arc::new(
            PostgresConnector::new(PostgresSettings {
                target,
                admin_url,
                managed_prefix: db.managed_prefix.clone(),
                connect_host: db.connect_host.clone(),
            })
            .map_err(refused)?,
        ),
        TargetKind::MariaDb(_) => {
            let mut settings = MariaDbSettings::new(target, admin_url);
            settings.managed_prefix.clone_from(&db.managed_prefix);
            settings.connect_host.clone_from(&db.connect_host);
            if let Some(host) = &db.account_host {
                settings.account_host.clone_from(host);
            }
            Arc::new(MariaDbConnector::new(settings).map_err(refused)?)
        }
        TargetKind::Redis(_) => {
            let mut settings = RedisSettings::new(target, admin_url);
            settings.managed_prefix.clone_from(&db.managed_prefix);
            settings.connect_host.clone_from(&db.connect_host);
            Arc::new(RedisConnector::new(settings).map_err(refused)?)
        }
        TargetKind::Token { .. } => {
            return Err(BrokerError::Internal(
                "token targets have no connector".into(),
            ));
        }
    })
}

impl Targets {
    /// Builds a connector for every database target of the catalog. Fails, naming the
    /// target, when an admin URL cannot be read; nothing connects yet (connections are lazy).
    pub fn from_catalog(catalog: &Catalog) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for t in catalog.targets() {
            if let Some(db) = t.kind.db() {
                by_name.insert(t.name.clone(), connector(&t.name, &t.kind, db)?);
            }
        }
        Ok(Self {
            by_name,
            retired: BTreeMap::new(),
        })
    }

    /// These connectors, with `retired` kept for targets the catalog no longer has.
    pub fn with_retired(mut self, retired: BTreeMap<TargetName, Arc<dyn Connector>>) -> Self {
        self.retired = retired
            .into_iter()
            .filter(|(name, _)| !self.by_name.contains_key(name))
            .collect();
        self
    }

    /// These connectors without the retired ones named.
    pub fn without_retired(&self, names: &[TargetName]) -> Self {
        let mut out = self.clone();
        for n in names {
            out.retired.remove(n);
        }
        out
    }

    /// The connector of a configured target, or of a removed one still ending grants.
    pub fn get(&self, name: &TargetName) -> Option<&Arc<dyn Connector>> {
        self.by_name.get(name).or_else(|| self.retired.get(name))
    }

    /// The configured targets' connectors (what the reconciler walks).
    pub fn iter(&self) -> impl Iterator<Item = (&TargetName, &Arc<dyn Connector>)> {
        self.by_name.iter()
    }

    /// Configured and retired connectors.
    pub fn all(&self) -> impl Iterator<Item = (&TargetName, &Arc<dyn Connector>)> {
        self.by_name.iter().chain(self.retired.iter())
    }

    /// Removed targets whose connectors are kept for their ending grants.
    pub fn retired_names(&self) -> impl Iterator<Item = &TargetName> {
        self.retired.keys()
    }
}
