//! Who is calling: a workload proving itself with a platform JWT, or a person with an
//! API token.

use kairos_config::Catalog;
use kairos_crypto::api_token::{self, TokenHash, TokenSecret};
use kairos_crypto::workload::{IssuerTrust, JwksSource};
use kairos_domain::{IdentityName, Principal};
use kairos_store::{Role, User};

use crate::{Broker, BrokerError, Result};

/// The authenticated caller of an operation.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A workload whose platform token mapped to exactly one registered identity.
    Workload { identity: IdentityName },
    /// A person with a valid API token.
    User(User),
}

impl Caller {
    pub fn principal(&self) -> Principal {
        match self {
            Self::Workload { identity } => Principal::Workload(identity.clone()),
            Self::User(u) => Principal::User(u.name.clone()),
        }
    }

    /// The user, if they hold one of `roles` (admin always qualifies).
    pub fn require_role(&self, roles: &[Role], action: &str) -> Result<&User> {
        match self {
            Self::User(u) if u.role == Role::Admin || roles.contains(&u.role) => Ok(u),
            Self::User(u) => Err(BrokerError::Forbidden(format!(
                "user {} has role {}; {action} needs one of: admin{}",
                u.name,
                u.role.as_str(),
                roles
                    .iter()
                    .map(|r| format!(", {}", r.as_str()))
                    .collect::<String>()
            ))),
            Self::Workload { identity } => Err(BrokerError::Forbidden(format!(
                "workload {identity} cannot {action}; it needs a person's API token"
            ))),
        }
    }
}

pub(crate) fn issuer_trusts(catalog: &Catalog) -> Vec<IssuerTrust> {
    catalog
        .issuers()
        .map(|i| IssuerTrust {
            name: i.name.to_string(),
            issuer: i.issuer.clone(),
            audience: i.audience.clone(),
            jwks: match &i.jwks {
                kairos_config::JwksRef::Inline { jwks, .. } => JwksSource::Inline(jwks.clone()),
                kairos_config::JwksRef::Url(u) => JwksSource::Url(u.clone()),
            },
            max_token_age: i.max_token_age.as_duration(),
        })
        .collect()
}

/// The id under which the bootstrap admin token (`--dev-admin-token`, `KAIROS_ADMIN_TOKEN`)
/// is stored. Its hash covers the whole token, which may have any shape.
pub(crate) const BOOTSTRAP_TOKEN_ID: &str = "bootstrap";

/// The id of the API token a person's bearer credential names: the one
/// [`Broker::authenticate`] looks up (the bootstrap token has a fixed id). None for a
/// platform JWT or a malformed token. Not secret; a console session keeps it so that
/// revoking the token ends the session.
pub fn api_token_id(bearer: &str) -> Option<String> {
    let bearer = bearer.trim();
    if bearer.starts_with("kairos_pat_") {
        return api_token::parse(bearer)
            .ok()
            .map(|(id, _)| id.as_str().to_owned());
    }
    (!bearer.is_empty() && bearer.split('.').count() != 3).then(|| BOOTSTRAP_TOKEN_ID.to_owned())
}

impl Broker {
    /// Authenticates a bearer credential. The error never repeats the credential.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller> {
        let bearer = bearer.trim();
        if bearer.is_empty() {
            return Err(BrokerError::Unauthenticated(
                "empty bearer token; send `Authorization: Bearer <token>`".into(),
            ));
        }
        if bearer.starts_with("kairos_pat_") {
            let (id, secret) = api_token::parse(bearer).map_err(|_| {
                BrokerError::Unauthenticated(
                    "malformed API token; copy the whole token `kairos user add` printed".into(),
                )
            })?;
            return self.user_by_token(id.as_str(), &secret).await;
        }
        if bearer.split('.').count() == 3 {
            return self.authenticate_workload(bearer).await;
        }
        // Anything else can only be the bootstrap admin token.
        self.user_by_token(BOOTSTRAP_TOKEN_ID, &TokenSecret::whole(bearer))
            .await
            .map_err(|_| {
                BrokerError::Unauthenticated(
                    "the bearer token is neither a platform JWT nor a Kairos API token".into(),
                )
            })
    }

    async fn user_by_token(&self, id: &str, secret: &TokenSecret) -> Result<Caller> {
        let refused = || {
            BrokerError::Unauthenticated(
                "unknown or revoked API token; ask an admin for a new one".into(),
            )
        };
        let (token, user) = self.store.find_token(id).await?.ok_or_else(refused)?;
        if token.revoked_at.is_some() {
            return Err(refused());
        }
        let stored = TokenHash::from_hex(&token.secret_hash).map_err(BrokerError::internal)?;
        if !api_token::verify(secret, &stored) {
            return Err(refused());
        }
        Ok(Caller::User(user))
    }

    async fn authenticate_workload(&self, jwt: &str) -> Result<Caller> {
        let verifier = self.verifier();
        let claims = verifier
            .verify(jwt, self.now().as_secs())
            .await
            .map_err(|e| BrokerError::Unauthenticated(format!("platform token refused: {e}")))?;
        let catalog = self.catalog();
        let issuer = kairos_config::IssuerName::parse(claims.issuer_name.clone())
            .map_err(|e| BrokerError::Unauthenticated(format!("platform token refused: {e}")))?;
        let identity = catalog
            .identity_by_subject(&issuer, &claims.sub)
            .ok_or_else(|| {
                BrokerError::Unauthenticated(format!(
                    "no identity is registered for subject {:?} of issuer {}; add an [[identity]] with this issuer and subject",
                    claims.sub.chars().take(200).collect::<String>(),
                    claims.issuer_name
                ))
            })?;
        Ok(Caller::Workload {
            identity: identity.name.clone(),
        })
    }
}
