//! People, their API tokens, the declarative configuration and the audit log.

use kairos_config::{Catalog, ConfigBundle, ConfigDiff};
use kairos_crypto::api_token::{self, TokenHash, TokenSecret};
use kairos_domain::{
    AuditDraft, AuditKind, AuditRecord, ChainVerifier, Principal, TargetName, TeamName, UserName,
};
use kairos_store::{AuditFilter, Role, StoredToken, User};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::BOOTSTRAP_TOKEN_ID;
use crate::{Broker, BrokerError, Caller, Result};

/// A token shown once to the person it was made for.
pub struct NewUserToken {
    pub user: User,
    pub token: SecretString,
}

impl std::fmt::Debug for NewUserToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserToken")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The outcome of walking the audit chain.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub records: u64,
    /// The first broken record and what is wrong with it.
    pub broken: Option<kairos_domain::ChainError>,
}

/// A resource server is bound to one or more token targets and to no team; people are
/// bound to no target.
fn check_user_targets(
    catalog: &Catalog,
    role: Role,
    teams: &[TeamName],
    targets: &[TargetName],
) -> Result<()> {
    if role != Role::ResourceServer {
        if targets.is_empty() {
            return Ok(());
        }
        return Err(BrokerError::invalid(
            "bad_target",
            format!(
                "only a resource-server is bound to targets; a user with role {} takes none",
                role.as_str()
            ),
        ));
    }
    if targets.is_empty() {
        return Err(BrokerError::invalid(
            "bad_target",
            "a resource-server needs at least one token target whose tokens it checks (`--target <target>`)",
        ));
    }
    if !teams.is_empty() {
        return Err(BrokerError::invalid(
            "bad_team",
            "a resource-server belongs to no team; give it only targets",
        ));
    }
    for target in targets {
        match catalog.target(target) {
            None => {
                return Err(BrokerError::NotFound(format!(
                    "target {target} is not defined in the configuration; add a [[target]] first"
                )));
            }
            Some(t) if t.kind.db().is_some() => {
                return Err(BrokerError::invalid(
                    "bad_target",
                    format!(
                        "target {target} is a {} target and issues accounts, not tokens; a resource-server checks tokens of `kind = \"token\"` targets",
                        t.kind.as_str()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Broker {
    /// Creates a person with a role and teams, or a resource server (role
    /// `resource-server`) bound to token targets; the token is returned once.
    pub async fn add_user(
        &self,
        caller: &Caller,
        name: UserName,
        role: Role,
        teams: Vec<TeamName>,
        targets: Vec<TargetName>,
    ) -> Result<NewUserToken> {
        caller.require_role(&[], "add users")?;
        let catalog = self.catalog();
        if let Some(unknown) = teams.iter().find(|t| catalog.team(t).is_none()) {
            return Err(BrokerError::NotFound(format!(
                "team {unknown} is not defined in the configuration; add a [[team]] first"
            )));
        }
        check_user_targets(&catalog, role, &teams, &targets)?;
        let now = self.now();
        let api_token::NewApiToken {
            token: plain,
            id,
            hash,
        } = api_token::generate().map_err(BrokerError::internal)?;
        let user = User {
            name: name.clone(),
            role,
            teams: teams.clone(),
            targets: targets.clone(),
            created_at: now,
        };
        let token = StoredToken {
            id: id.as_str().to_owned(),
            user: name.clone(),
            secret_hash: hash.to_hex(),
            created_at: now,
            revoked_at: None,
        };
        let audit = AuditDraft::new(AuditKind::UserCreated, caller.principal()).data(
            if targets.is_empty() {
                serde_json::json!({ "user": name, "role": role.as_str(), "teams": teams })
            } else {
                serde_json::json!({ "user": name, "role": role.as_str(), "targets": targets })
            },
        );
        self.store.create_user(&user, &token, audit).await?;
        Ok(NewUserToken {
            user,
            token: SecretString::from(plain.expose_secret().to_owned()),
        })
    }

    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<User>> {
        caller.require_role(&[Role::Auditor], "list users")?;
        Ok(self.store.list_users().await?)
    }

    /// Revokes every API token of a person.
    pub async fn revoke_user(&self, caller: &Caller, name: &UserName) -> Result<u64> {
        caller.require_role(&[], "revoke user tokens")?;
        let audit = AuditDraft::new(AuditKind::UserTokenRevoked, caller.principal())
            .data(serde_json::json!({ "user": name }));
        let n = self
            .store
            .revoke_user_tokens(name, self.now(), audit)
            .await?;
        if n == 0 {
            return Err(BrokerError::NotFound(format!(
                "user {name} has no live tokens"
            )));
        }
        Ok(n)
    }

    /// Installs the bootstrap admin token (dev mode's printed token, or
    /// `KAIROS_ADMIN_TOKEN`), replacing any earlier one.
    pub async fn install_bootstrap_token(&self, token: &SecretString) -> Result<()> {
        let now = self.now();
        let user = User {
            name: UserName::parse("admin").map_err(BrokerError::internal)?,
            role: Role::Admin,
            teams: Vec::new(),
            targets: Vec::new(),
            created_at: now,
        };
        let stored = StoredToken {
            id: BOOTSTRAP_TOKEN_ID.into(),
            user: user.name.clone(),
            secret_hash: TokenHash::of(&TokenSecret::whole(token.expose_secret())).to_hex(),
            created_at: now,
            revoked_at: None,
        };
        let audit = AuditDraft::new(AuditKind::UserCreated, Principal::System("bootstrap"))
            .data(serde_json::json!({ "user": "admin", "role": "admin", "bootstrap": true }));
        self.store
            .put_bootstrap_token(&user, &stored, audit)
            .await?;
        Ok(())
    }

    /// Validates and applies a configuration bundle; all or nothing.
    pub async fn apply_config(&self, by: &Principal, bundle: ConfigBundle) -> Result<ConfigDiff> {
        let catalog = Catalog::from_bundle(&bundle)
            .map_err(|errors| BrokerError::invalid("invalid_config", errors.to_string()))?;
        let verifier = Self::verifier_for(&catalog)?;
        let targets = crate::targets::Targets::from_catalog(&catalog)?;
        let diff = Catalog::diff(&self.catalog(), &catalog);
        let json = serde_json::to_string(&bundle).map_err(BrokerError::internal)?;
        let audit = AuditDraft::new(AuditKind::ConfigApplied, by).data(serde_json::json!({
            "file": bundle.main_path,
            "created": diff.created,
            "changed": diff.changed,
            "removed": diff.removed,
        }));
        if !diff.is_empty() || self.store.current_config().await?.is_none() {
            self.store.save_config(&json, self.now(), audit).await?;
        }
        self.swap_catalog(catalog, verifier, targets);
        Ok(diff)
    }

    /// Applies a configuration by a person (admin).
    pub async fn apply_config_as(
        &self,
        caller: &Caller,
        bundle: ConfigBundle,
    ) -> Result<ConfigDiff> {
        caller.require_role(&[], "apply configuration")?;
        self.apply_config(&caller.principal(), bundle).await
    }

    pub async fn audit(&self, caller: &Caller, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        caller.require_role(&[Role::Auditor, Role::Operator], "read the audit log")?;
        // The store gives the newest `limit` records; tell the story oldest first.
        let mut records = self.store.list_audit(filter).await?;
        records.reverse();
        Ok(records)
    }

    /// Walks the whole chain and names the first bad record.
    pub async fn verify_audit(&self, caller: &Caller) -> Result<ChainReport> {
        caller.require_role(&[Role::Auditor, Role::Operator], "verify the audit log")?;
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = self.store.audit_page(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if let Err(e) = verifier.push(r) {
                    return Ok(ChainReport {
                        records: verifier.checked,
                        broken: Some(e),
                    });
                }
            }
        }
        // A deleted tail is caught by the head row the store keeps.
        if let Some(problem) = self.store.audit_head_mismatch(after).await? {
            return Ok(ChainReport {
                records: verifier.checked,
                broken: Some(kairos_domain::ChainError {
                    seq: after + 1,
                    problem,
                }),
            });
        }
        Ok(ChainReport {
            records: verifier.checked,
            broken: None,
        })
    }
}
