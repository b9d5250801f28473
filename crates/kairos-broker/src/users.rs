//! People, their API tokens, the declarative configuration and the audit log.

use kairos_config::{Catalog, ConfigBundle};
use kairos_crypto::api_token::{self, TokenHash, TokenSecret};
use kairos_domain::{
    AuditDraft, AuditKind, AuditRecord, Principal, TargetName, TeamName, UserName,
};
use kairos_store::{AuditFilter, BootstrapOutcome, Role, StoredToken, User};
use secrecy::{ExposeSecret, SecretString};

use crate::apply::{ApplyOptions, ApplyReport};
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
        // A team's owner may have just become a person who can act.
        self.orphan_pass_now("user added").await;
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
        // Their teams' identities may have just lost their last active owner.
        self.orphan_pass_now("user tokens revoked").await;
        Ok(n)
    }

    /// Installs the bootstrap admin token (dev mode's token, or `KAIROS_ADMIN_TOKEN`), but
    /// only into a store where no admin has a live token, and never a secret that was
    /// revoked. Says in the log what it did and, when it did nothing, why.
    pub async fn install_bootstrap_token(&self, token: &SecretString) -> Result<BootstrapOutcome> {
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
        let outcome = self
            .store
            .put_bootstrap_token(&user, &stored, audit)
            .await?;
        match &outcome {
            BootstrapOutcome::Installed => tracing::info!(
                "bootstrap admin token installed for user admin: the store had no admin with a live token"
            ),
            BootstrapOutcome::AlreadyInstalled => {
                tracing::info!("bootstrap admin token already installed; nothing to do")
            }
            BootstrapOutcome::AdminExists { admins } => {
                let admins: Vec<&str> = admins.iter().map(UserName::as_str).collect();
                tracing::warn!(
                    admins = %admins.join(", "),
                    "the admin token given at start was ignored: the store already has an admin with a live token; \
                     create more people with `kairos user add` instead"
                );
            }
            BootstrapOutcome::Revoked { at } => tracing::warn!(
                revoked_at = %at.to_rfc3339(),
                "the admin token given at start was ignored: it was revoked and stays revoked; \
                 to recover a store with no admin, start once with a new KAIROS_ADMIN_TOKEN"
            ),
        }
        Ok(outcome)
    }

    /// True when some enabled admin has a live API token.
    pub async fn has_live_admin(&self) -> Result<bool> {
        Ok(self.store.has_live_admin().await?)
    }

    /// Validates and applies a configuration bundle; all or nothing. Grants whose
    /// identity, team, target or entitlement it removes end as `identity_removed`,
    /// `team_removed`, `target_removed` or `entitlement_removed`, those its policies now
    /// deny as `policy_changed`; a bundle
    /// that removes every identity or every target is refused (see
    /// [`Broker::apply_config_with`] for a dry run or to allow that).
    pub async fn apply_config(&self, by: &Principal, bundle: ConfigBundle) -> Result<ApplyReport> {
        self.apply_config_with(by, bundle, ApplyOptions::default())
            .await
    }

    /// Applies a configuration by a person (admin).
    pub async fn apply_config_as(
        &self,
        caller: &Caller,
        bundle: ConfigBundle,
        options: ApplyOptions,
    ) -> Result<ApplyReport> {
        caller.require_role(&[], "apply configuration")?;
        self.apply_config_with(&caller.principal(), bundle, options)
            .await
    }

    pub async fn audit(&self, caller: &Caller, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        caller.require_role(&[Role::Auditor, Role::Operator], "read the audit log")?;
        // The store gives the newest `limit` records; tell the story oldest first.
        let mut records = self.store.list_audit(filter).await?;
        records.reverse();
        Ok(records)
    }
}
