//! The connectors of the configured database targets, built when a catalog is applied.
//! Admin URLs are read here, from the environment or a file the configuration names, and
//! go straight into the connector as secrets.
//!
//! Accounts are server-wide (PostgreSQL roles, MariaDB users, Redis ACL users, RabbitMQ
//! users), so two
//! targets reaching one server through different admin URLs share them. Each target's
//! server is asked who it is ([`Connector::server_facts`]) at apply, at start and before the
//! reconciler removes anything; two targets of one kind on one server whose managed
//! prefixes overlap would each take the other's accounts for residue ([`overlaps`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use kairos_config::{Catalog, DbTarget, SecretRef, TargetKind};
use kairos_connector_mariadb::{MariaDbConnector, MariaDbSettings};
use kairos_connector_postgres::{PostgresConnector, PostgresSettings};
use kairos_connector_rabbitmq::{RabbitMqConnector, RabbitMqSettings};
use kairos_connector_redis::{RedisConnector, RedisSettings};
use kairos_connectors::{Connector, ServerIdentity};
use kairos_domain::TargetName;
use secrecy::SecretString;

use crate::{BrokerError, Result};

/// Connectors by target name, and the servers they were found to reach: the catalog's
/// database targets, and removed ones kept until every grant on them is verified gone (the
/// revocation worker needs them; the reconciler does not list or remove accounts on them).
#[derive(Debug, Default, Clone)]
pub struct Targets {
    by_name: BTreeMap<TargetName, Arc<dyn Connector>>,
    retired: BTreeMap<TargetName, Arc<dyn Connector>>,
    /// Each target's server, once it answered (shared by clones; a target that could not
    /// be asked is asked again next time).
    servers: Arc<Mutex<BTreeMap<TargetName, ServerIdentity>>>,
}

/// One target as the overlap check sees it.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    pub name: TargetName,
    pub kind: &'static str,
    pub managed_prefix: String,
    pub server: ServerIdentity,
}

/// Two targets of one kind on one server with overlapping managed prefixes: each
/// reconciler would remove the other's live accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub first: TargetName,
    pub second: TargetName,
    pub kind: &'static str,
    pub first_prefix: String,
    pub second_prefix: String,
    /// The facts that identify the server, as the first target saw them.
    pub server: String,
}

impl Overlap {
    pub fn involves(&self, target: &TargetName) -> bool {
        &self.first == target || &self.second == target
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefixes = if self.first_prefix == self.second_prefix {
            format!("the same managed prefix {:?}", self.first_prefix)
        } else {
            format!(
                "overlapping managed prefixes {:?} and {:?}",
                self.first_prefix, self.second_prefix
            )
        };
        write!(
            f,
            "targets {} and {} reach the same {} server ({}) with {prefixes}; accounts are \
             server-wide, so each target's reconciler would remove the other's accounts: give \
             each target a managed_prefix that does not start with the other's (e.g. \
             \"kairos_{}_\")",
            self.first, self.second, self.kind, self.server, self.second
        )
    }
}

/// Every pair of targets of one kind on one server whose managed prefixes are equal or one
/// starts with the other, in the order given.
pub fn overlaps(targets: &[ServerTarget]) -> Vec<Overlap> {
    let mut out = Vec::new();
    for (i, a) in targets.iter().enumerate() {
        for b in &targets[i + 1..] {
            if a.kind == b.kind
                && a.server.same_server(&b.server)
                && (a.managed_prefix.starts_with(&b.managed_prefix)
                    || b.managed_prefix.starts_with(&a.managed_prefix))
            {
                out.push(Overlap {
                    first: a.name.clone(),
                    second: b.name.clone(),
                    kind: a.kind,
                    first_prefix: a.managed_prefix.clone(),
                    second_prefix: b.managed_prefix.clone(),
                    server: a.server.to_string(),
                });
            }
        }
    }
    out
}

/// What asking the targets' servers found.
#[derive(Debug, Default, Clone)]
pub struct ServerCheck {
    /// Targets that share a server with overlapping prefixes (among those that answered).
    pub overlaps: Vec<Overlap>,
    /// What an operator should know: the servers' own warnings (e.g. MariaDB's event
    /// scheduler is off) and targets that could not be asked, each naming its target.
    pub warnings: Vec<String>,
    /// Targets that could not be asked, with why.
    pub unanswered: BTreeMap<TargetName, String>,
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
                scram_iterations: db
                    .scram_iterations
                    .and_then(std::num::NonZeroU32::new)
                    .unwrap_or(kairos_connector_postgres::SCRAM_ITERATIONS),
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
        TargetKind::RabbitMq(_) => {
            let mut settings = RabbitMqSettings::new(target, admin_url);
            settings.managed_prefix.clone_from(&db.managed_prefix);
            settings.amqp_host.clone_from(&db.connect_host);
            if let Some(port) = db.amqp_port {
                settings.amqp_port = port;
            }
            Arc::new(RabbitMqConnector::new(settings).map_err(refused)?)
        }
        TargetKind::Token { .. } | TargetKind::Ssh(_) => {
            return Err(BrokerError::Internal(
                "token and ssh targets have no connector".into(),
            ));
        }
    })
}

impl Targets {
    /// Builds a connector for every database target of the catalog. Fails, naming the
    /// target, when an admin URL cannot be read; nothing connects yet (connections are lazy).
    /// Every target that fails is reported, in one error.
    pub fn from_catalog(catalog: &Catalog) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        let mut failures = Vec::new();
        for t in catalog.targets() {
            if let Some(db) = t.kind.db() {
                match connector(&t.name, &t.kind, db) {
                    Ok(c) => {
                        by_name.insert(t.name.clone(), c);
                    }
                    Err(e) => failures.push(e),
                }
            }
        }
        if failures.len() > 1 {
            let all: Vec<String> = failures.iter().map(ToString::to_string).collect();
            return Err(BrokerError::invalid(
                "invalid_config",
                format!("{} targets cannot be used: {}", all.len(), all.join("; ")),
            ));
        }
        if let Some(e) = failures.pop() {
            return Err(e);
        }
        Ok(Self {
            by_name,
            retired: BTreeMap::new(),
            servers: Arc::default(),
        })
    }

    fn known_servers(&self) -> BTreeMap<TargetName, ServerIdentity> {
        match self.servers.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn remember(&self, target: TargetName, server: ServerIdentity) {
        match self.servers.lock() {
            Ok(mut s) => s.insert(target, server),
            Err(poisoned) => poisoned.into_inner().insert(target, server),
        };
    }

    /// Asks every target whose server is not known yet (all at once), remembers the
    /// answers, and finds overlapping prefixes among every target whose server is known.
    /// A target that cannot be reached is listed in `unanswered` and asked again next time.
    pub async fn check_servers(&self) -> ServerCheck {
        let known = self.known_servers();
        let mut asking = tokio::task::JoinSet::new();
        for (name, connector) in &self.by_name {
            if !known.contains_key(name) {
                let (name, connector) = (name.clone(), Arc::clone(connector));
                asking.spawn(async move { (name, connector.server_facts().await) });
            }
        }
        let mut check = ServerCheck::default();
        while let Some(answer) = asking.join_next().await {
            match answer {
                Ok((name, Ok(facts))) => {
                    check.warnings.extend(facts.warnings);
                    self.remember(name, facts.identity);
                }
                Ok((name, Err(e))) => {
                    check.warnings.push(format!(
                        "target {name}: its server could not be asked which server it is ({e}); \
                         it is checked for overlapping managed prefixes before the reconciler \
                         removes anything there"
                    ));
                    check.unanswered.insert(name, e.to_string());
                }
                Err(e) => {
                    tracing::error!(error = %e, "asking a target's server failed");
                }
            }
        }
        check.warnings.sort();
        let known = self.known_servers();
        let listed: Vec<ServerTarget> = self
            .by_name
            .iter()
            .filter_map(|(name, connector)| {
                Some(ServerTarget {
                    name: name.clone(),
                    kind: connector.kind(),
                    managed_prefix: connector.managed_prefix().to_owned(),
                    server: known.get(name)?.clone(),
                })
            })
            .collect();
        check.overlaps = overlaps(&listed);
        check
    }

    /// Whether the reconciler may remove residue on `target`: its server is known and no
    /// other target of its kind on that server has an overlapping managed prefix. The
    /// error says why not.
    pub async fn removal_allowed(&self, target: &TargetName) -> std::result::Result<(), String> {
        let check = self.check_servers().await;
        for w in &check.warnings {
            tracing::warn!(warning = %w, "target check");
        }
        if let Some(reason) = check.unanswered.get(target) {
            return Err(format!(
                "its server could not be identified ({reason}), so it cannot be told apart from other targets'"
            ));
        }
        match check.overlaps.iter().find(|o| o.involves(target)) {
            Some(o) => Err(o.to_string()),
            None => Ok(()),
        }
    }

    /// These connectors, with `retired` kept for targets the catalog no longer has.
    pub fn with_retired(mut self, retired: BTreeMap<TargetName, Arc<dyn Connector>>) -> Self {
        self.retired = retired
            .into_iter()
            .filter(|(name, _)| !self.by_name.contains_key(name))
            .collect();
        self
    }

    /// These connectors with `target`'s replaced by what `wrap` makes of it (for tests
    /// that slow a target down or watch what it is asked); unchanged when it has none.
    #[must_use]
    pub fn wrapping(
        &self,
        target: &TargetName,
        wrap: impl FnOnce(Arc<dyn Connector>) -> Arc<dyn Connector>,
    ) -> Self {
        let mut out = self.clone();
        if let Some(c) = out.by_name.remove(target) {
            out.by_name.insert(target.clone(), wrap(c));
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, kind: &'static str, prefix: &str, facts: &[&str]) -> ServerTarget {
        ServerTarget {
            name: TargetName::parse(name).unwrap(),
            kind,
            managed_prefix: prefix.to_owned(),
            server: ServerIdentity::new(facts.iter().map(|f| (*f).to_owned())),
        }
    }

    fn check(targets: &[ServerTarget], expected: &[(&str, &str)]) {
        let got: Vec<(String, String)> = overlaps(targets)
            .iter()
            .map(|o| (o.first.to_string(), o.second.to_string()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(got, expected);
    }

    /// The configuration's default and the connector's are two constants (the connector
    /// does not depend on the configuration crate): they must not drift apart.
    #[test]
    fn the_default_scram_iteration_count_is_one_number() {
        assert_eq!(
            kairos_config::DbTarget::DEFAULT_SCRAM_ITERATIONS,
            kairos_connector_postgres::SCRAM_ITERATIONS.get()
        );
    }

    #[test]
    fn overlapping_prefixes_on_one_server() {
        let (pg, maria) = ("postgres", "mariadb");
        // Same server, same prefix.
        check(
            &[
                target("a", pg, "kairos_", &["sys 1"]),
                target("b", pg, "kairos_", &["sys 1"]),
            ],
            &[("a", "b")],
        );
        // One prefix starts with the other.
        check(
            &[
                target("a", pg, "kairos_", &["sys 1"]),
                target("b", pg, "kairos_b_", &["sys 1", "started 5"]),
            ],
            &[("a", "b")],
        );
        // Disjoint prefixes, another server, another kind: no overlap.
        check(
            &[
                target("a", pg, "kairos_a_", &["sys 1"]),
                target("b", pg, "kairos_b_", &["sys 1"]),
                target("c", pg, "kairos_", &["sys 2"]),
                target("d", maria, "kairos_", &["sys 1"]),
            ],
            &[],
        );
        // Matched through a shared fact only (an admin that reads fewer facts).
        check(
            &[
                target("a", pg, "kairos_", &["sys 1", "started 5"]),
                target("b", pg, "kairos_", &["started 5"]),
            ],
            &[("a", "b")],
        );
    }

    #[test]
    fn the_overlap_message_names_both_targets_and_the_server() {
        let o = &overlaps(&[
            target(
                "orders",
                "postgres",
                "kairos_",
                &["postgres system_identifier 7"],
            ),
            target(
                "billing",
                "postgres",
                "kairos_",
                &["postgres system_identifier 7"],
            ),
        ])[0];
        let text = o.to_string();
        for part in [
            "orders",
            "billing",
            "system_identifier 7",
            "same managed prefix",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
