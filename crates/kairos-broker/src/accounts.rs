//! Dynamic accounts: intent before action. A database grant is recorded `provisioning`
//! (with its account name and sealed password) before the connector creates the account;
//! it becomes active only once the account exists, or ends `aborted` through the one end
//! path, whose revocation removes anything half-created.

use kairos_config::{Catalog, Entitlement, Privileges as ConfigPrivileges};
use kairos_connectors::{AccountName, AccountRequest, ConnectionInfo, ConnectorError, Privileges};
use kairos_domain::{AuditDraft, AuditKind, EndReason, Grant, GrantState, Principal, Timestamp};
use kairos_store::EndSelector;
use secrecy::{ExposeSecret, SecretString};

use crate::{Broker, BrokerError, Result};

/// The account a grant will get, prepared before anything is written.
pub(crate) struct PreparedAccount {
    pub name: AccountName,
    pub password: SecretString,
    pub privileges: Privileges,
}

/// A credential shown to the workload once: a signed token, or an account.
#[derive(Clone)]
pub enum IssuedCredential {
    Token {
        access_token: String,
        expires_at: Timestamp,
        /// The key the token is bound to (`cnf`, a DPoP token), or None for a Bearer token.
        cnf: Option<kairos_crypto::dpop::Confirmation>,
    },
    Account {
        kind: &'static str,
        info: ConnectionInfo,
        password: SecretString,
        expires_at: Timestamp,
    },
    /// An OpenSSH user certificate for the public key sent with the request.
    Ssh(crate::SshCredential),
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token { expires_at, .. } => f
                .debug_struct("Token")
                .field("access_token", &"<redacted>")
                .field("expires_at", expires_at)
                .finish(),
            Self::Account {
                kind,
                info,
                expires_at,
                ..
            } => f
                .debug_struct("Account")
                .field("kind", kind)
                .field("info", info)
                .field("password", &"<redacted>")
                .field("expires_at", expires_at)
                .finish(),
            Self::Ssh(c) => f
                .debug_struct("Ssh")
                .field("serial", &c.serial)
                .field("valid_before", &c.valid_before)
                .finish_non_exhaustive(),
        }
    }
}

impl IssuedCredential {
    pub fn expires_at(&self) -> Timestamp {
        match self {
            Self::Token { expires_at, .. } | Self::Account { expires_at, .. } => *expires_at,
            Self::Ssh(c) => c.valid_before,
        }
    }

    /// The signed token, for token credentials.
    pub fn access_token(&self) -> Option<&str> {
        match self {
            Self::Token { access_token, .. } => Some(access_token),
            Self::Account { .. } | Self::Ssh(_) => None,
        }
    }
}

const SECRET_AAD: &[u8] = b"kairos-account-secret-v1";

/// The field of an account's `issued` record that names who was shown its password in
/// the answer that issued it.
const DELIVERED_TO: &str = "delivered_to";

pub(crate) fn target_error(e: ConnectorError) -> BrokerError {
    match e {
        ConnectorError::Unreachable { .. } => BrokerError::Target {
            unavailable: true,
            message: format!("{e}; nothing was created, try again when it is back"),
        },
        other => BrokerError::Target {
            unavailable: false,
            message: format!("{other}; nothing was created"),
        },
    }
}

impl Broker {
    /// For a database target: names the account, makes its password, seals it into the
    /// grant and marks the grant `provisioning`. Token grants are left as they are.
    pub(crate) fn prepare_account(
        &self,
        catalog: &Catalog,
        entitlement: &Entitlement,
        grant: &mut Grant,
    ) -> Result<Option<PreparedAccount>> {
        let Some(db) = catalog
            .target(&entitlement.target)
            .and_then(|t| t.kind.db())
        else {
            return Ok(None);
        };
        let name = AccountName::for_grant(&db.managed_prefix, &grant.id)
            .map_err(|e| BrokerError::Internal(e.to_string().into()))?;
        let password = kairos_crypto::random_secret(24).map_err(BrokerError::internal)?;
        let sealed = self
            .master
            .seal(password.expose_secret().as_bytes(), &secret_aad(grant))
            .map_err(BrokerError::internal)?;
        let privileges = match &entitlement.privileges {
            ConfigPrivileges::Sql(t) => Privileges::Sql(t.clone()),
            ConfigPrivileges::RedisAcl(r) => Privileges::RedisAcl(r.clone()),
            ConfigPrivileges::RabbitMq(p) => {
                Privileges::RabbitMq(kairos_connectors::RabbitMqPermissions {
                    vhost: p.vhost.clone(),
                    configure: p.configure.clone(),
                    write: p.write.clone(),
                    read: p.read.clone(),
                    topic: p.topic.as_ref().map(|t| kairos_connectors::RabbitMqTopic {
                        exchange: t.exchange.clone(),
                        write: t.write.clone(),
                        read: t.read.clone(),
                    }),
                })
            }
            ConfigPrivileges::Scopes(_) | ConfigPrivileges::Ssh(_) => {
                return Err(BrokerError::Internal(
                    "a database entitlement with scopes".into(),
                ));
            }
        };
        grant.account = Some(name.to_string());
        grant.sealed_secret = Some(sealed);
        grant.state = GrantState::Provisioning;
        Ok(Some(PreparedAccount {
            name,
            password,
            privileges,
        }))
    }

    /// The account's password, unsealed, for verifying that a login with it is refused.
    pub(crate) fn unseal_secret(&self, grant: &Grant) -> Option<SecretString> {
        let sealed = grant.sealed_secret.as_ref()?;
        let bytes = self.master.open(sealed, &secret_aad(grant)).ok()?;
        String::from_utf8(bytes.expose_secret().to_vec())
            .ok()
            .map(SecretString::from)
    }

    /// Creates the recorded account downstream, then activates the grant; on failure
    /// aborts it (its revocation cleans up whatever was half-created) and says why.
    ///
    /// `delivered_to`: the caller this answer shows the password to, now; its delivery is
    /// recorded in the same write that activates the grant. `None` when the password is
    /// shown later (an approved request's workload reads it once).
    /// Returns the credential and the activated grant.
    pub(crate) async fn provision(
        &self,
        grant: &Grant,
        account: PreparedAccount,
        delivered_to: Option<&crate::Caller>,
    ) -> Result<(IssuedCredential, Grant)> {
        let targets = self.targets();
        let Some(connector) = targets.get(&grant.target).cloned() else {
            self.abort(grant).await;
            return Err(BrokerError::Target {
                unavailable: true,
                message: format!(
                    "target {} is not configured; nothing was created",
                    grant.target
                ),
            });
        };
        let result = connector
            .provision(&AccountRequest {
                account: &account.name,
                password: &account.password,
                valid_until: grant.expires_at,
                privileges: &account.privileges,
            })
            .await;
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(grant = %grant.id, target = %grant.target, error = %e, "provisioning failed; aborting the grant");
                self.abort(grant).await;
                return Err(target_error(e));
            }
        };
        self.crash_point(crate::CrashPoint::AfterProvision);
        let kind = connector.kind();
        let revocability = connector.revocability();
        let connection = info.clone();
        let delivered_by = delivered_to.map(crate::Caller::principal);
        let activated = self
            .store
            .update_grant(
                &grant.id,
                Box::new(move |g: &mut Grant| {
                    g.activate()?;
                    let mut data = serde_json::json!({
                        "entitlement": g.entitlement,
                        "target": g.target,
                        "account": g.account,
                        "issued_at": g.issued_at.to_rfc3339(),
                        "expires_at": g.expires_at.to_rfc3339(),
                        "kind": kind,
                        "connection": connection,
                        "revocability": revocability,
                    });
                    // Shown in this answer: the issued record says to whom, in place of a
                    // `credential_delivered` record of its own.
                    if let (Some(by), serde_json::Value::Object(fields)) =
                        (&delivered_by, &mut data)
                    {
                        fields.insert(DELIVERED_TO.into(), by.to_string().into());
                    }
                    Ok(vec![
                        AuditDraft::new(AuditKind::Issued, Principal::System("broker"))
                            .identity(&g.identity)
                            .request(&g.request_id)
                            .grant(&g.id)
                            .task_ref(&g.task.reference)
                            .data(data),
                    ])
                }),
            )
            .await;
        // An error: ended meanwhile (e.g. revoked by an operator); its revocation removes
        // the account.
        let activated = activated?;
        self.metrics.grants_issued.inc();
        self.metrics.active_grants.inc();
        self.expiry_added(grant.expires_at);
        let credential = IssuedCredential::Account {
            kind,
            info,
            password: account.password,
            expires_at: grant.expires_at,
        };
        Ok((credential, activated))
    }

    /// The password of an account issued after approval, shown to its workload once: the
    /// delivery is audited, and a second read finds that record and shows nothing.
    pub(crate) async fn deliver_account_once(
        &self,
        grant: &Grant,
        caller: &crate::Caller,
    ) -> Result<Option<IssuedCredential>> {
        let records = self
            .store
            .list_audit(&kairos_store::AuditFilter {
                grant_id: Some(grant.id.to_string()),
                ..kairos_store::AuditFilter::default()
            })
            .await?;
        if records
            .iter()
            .any(|r| r.kind == AuditKind::CredentialDelivered)
        {
            return Ok(None);
        }
        // Where to connect was recorded (no secret in it) when the account was issued;
        // `delivered_to` there: it was shown in the answer that issued it.
        let Some(data) = records
            .iter()
            .find(|r| r.kind == AuditKind::Issued)
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.data).ok())
        else {
            return Ok(None);
        };
        if data.get(DELIVERED_TO).is_some() {
            return Ok(None);
        }
        let issued = data["kind"].as_str().map(str::to_owned).and_then(|kind| {
            let info =
                serde_json::from_value::<ConnectionInfoRecord>(data["connection"].clone()).ok()?;
            Some((kind, info))
        });
        let (Some(password), Some(_), Some((kind, info))) =
            (self.unseal_secret(grant), grant.account.as_ref(), issued)
        else {
            return Ok(None);
        };
        let kind = match kind.as_str() {
            "postgres" => "postgres",
            "mariadb" => "mariadb",
            "redis" => "redis",
            "rabbitmq" => "rabbitmq",
            _ => return Ok(None),
        };
        let info = ConnectionInfo {
            host: info.host,
            port: info.port,
            database: info.database,
            username: info.username,
        };
        // Of concurrent first reads (here or on another replica), one claims the delivery.
        let audit = delivery_audit(grant, &caller.principal());
        if !self
            .store
            .claim_delivery(&grant.id, self.now(), audit)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(IssuedCredential::Account {
            kind,
            info,
            password,
            expires_at: grant.expires_at,
        }))
    }

    async fn abort(&self, grant: &Grant) {
        let end = kairos_domain::GrantEnd {
            reason: EndReason::Aborted,
            by: Principal::System("broker"),
            at: self.now(),
        };
        match self
            .store
            .end_grants(&EndSelector::One(grant.id.clone()), &end)
            .await
        {
            Ok(ended) if !ended.is_empty() => {
                self.metrics.revoking_grants.inc();
                self.metrics.ended(EndReason::Aborted.as_str());
                self.revoke_work.notify_one();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(grant = %grant.id, error = %e, "aborting a grant failed; the reconciler will find it");
            }
        }
    }
}

/// [`ConnectionInfo`] as recorded in the `issued` audit record.
#[derive(serde::Deserialize)]
struct ConnectionInfoRecord {
    host: String,
    port: u16,
    database: Option<String>,
    username: String,
}

fn secret_aad(grant: &Grant) -> Vec<u8> {
    let mut aad = SECRET_AAD.to_vec();
    aad.extend_from_slice(grant.id.as_str().as_bytes());
    aad
}

/// The record that an account's password was shown, and to whom.
fn delivery_audit(grant: &Grant, to: &Principal) -> AuditDraft {
    AuditDraft::new(AuditKind::CredentialDelivered, to)
        .identity(&grant.identity)
        .request(&grant.request_id)
        .grant(&grant.id)
        .task_ref(&grant.task.reference)
        .data(serde_json::json!({ "account": grant.account }))
}
