//! Who is calling: a workload proving itself with a platform JWT, or a person with an
//! API token.

use kairos_config::Catalog;
use kairos_crypto::api_token::{self, TokenHash, TokenSecret};
use kairos_crypto::spiffe::{self, CertificateDer, SvidVerifier, TrustBundle};
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
            spiffe_trust_domain: i.spiffe_trust_domain.clone(),
        })
        .collect()
}

/// The X.509-SVID verifier for a catalog's `[[trust_domain]]`s. Their bundles were checked
/// when the catalog loaded; one that does not parse now is left out (and logged), so its
/// SVIDs are refused as of an undeclared trust domain.
pub(crate) fn svid_verifier(catalog: &Catalog) -> SvidVerifier {
    let bundles: Vec<(&str, TrustBundle)> = catalog
        .trust_domains()
        .filter_map(|td| match TrustBundle::parse(&td.bundle) {
            Ok(b) => Some((td.name.as_str(), b)),
            Err(e) => {
                tracing::error!(trust_domain = %td.name, problem = %e, "trust bundle unusable; its SVIDs are refused");
                None
            }
        })
        .collect();
    SvidVerifier::new(bundles.iter().map(|(n, b)| (*n, b))).unwrap_or_else(|e| {
        tracing::error!(problem = %e, "trust bundles unusable; every X.509-SVID is refused");
        SvidVerifier::default()
    })
}

/// Who called, and the client certificate they called over, if any.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    /// RFC 8705 `x5t#S256` of the verified client certificate the request came over:
    /// tokens issued to it are bound to that certificate.
    pub client_cert: Option<String>,
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
            .map_err(|e| match e {
                // The store being down says nothing about the token.
                e @ BrokerError::StoreUnavailable(_) => e,
                _ => BrokerError::Unauthenticated(
                    "the bearer token is neither a platform JWT nor a Kairos API token".into(),
                ),
            })
    }

    /// Authenticates a request by its bearer credential and/or the client certificate
    /// chain the TLS listener verified (leaf first). A certificate whose URI SAN is a
    /// `spiffe://` ID is an X.509-SVID: it must verify against its trust domain's bundle
    /// at the broker's time and map to an identity by its SPIFFE ID, and then it
    /// authenticates the workload without a bearer; with a bearer too, both must name the
    /// same identity. Any other client certificate authenticates nobody, but must be
    /// inside its validity; tokens issued over either are bound to it. Errors never
    /// repeat a credential.
    pub async fn authenticate_request(
        &self,
        bearer: Option<&str>,
        peer: Option<&[CertificateDer<'_>]>,
    ) -> Result<Authenticated> {
        let peer = peer.filter(|chain| !chain.is_empty());
        let mut by_svid = None;
        let mut client_cert = None;
        if let Some(chain) = peer {
            let now = self.now().as_secs();
            let refused = |e: spiffe::SvidError| {
                BrokerError::Unauthenticated(format!("client certificate refused: {e}"))
            };
            let facts = spiffe::leaf_facts(&chain[0]).map_err(refused)?;
            if spiffe::claims_spiffe_id(&facts) {
                let svid = self.svids().verify(chain, now).map_err(|e| {
                    BrokerError::Unauthenticated(format!("X.509-SVID refused: {e}"))
                })?;
                let id = svid.spiffe_id.to_string();
                let identity = self
                    .catalog()
                    .identity_by_spiffe_id(&id)
                    .map(|i| i.name.clone())
                    .ok_or_else(|| {
                        BrokerError::Unauthenticated(format!(
                            "no identity is registered for SPIFFE ID {id:?}; add an [[identity]] with spiffe_id = {id:?}"
                        ))
                    })?;
                by_svid = Some(identity);
                client_cert = Some(svid.x5t_s256);
            } else {
                spiffe::check_validity(&facts, now).map_err(refused)?;
                client_cert = Some(spiffe::x5t_s256(&chain[0]));
            }
        }
        let caller = match (bearer, by_svid) {
            (Some(bearer), None) => self.authenticate(bearer).await?,
            (None, Some(identity)) => Caller::Workload { identity },
            (Some(bearer), Some(identity)) => match self.authenticate(bearer).await? {
                Caller::Workload { identity: other } if other == identity => {
                    Caller::Workload { identity }
                }
                Caller::Workload { identity: other } => {
                    return Err(BrokerError::Unauthenticated(format!(
                        "the bearer token is identity {other} but the X.509-SVID is identity {identity}; send one credential, or two for the same identity"
                    )));
                }
                Caller::User(u) => {
                    return Err(BrokerError::Unauthenticated(format!(
                        "the bearer token is user {} but the X.509-SVID is identity {identity}; a person does not call over a workload's SVID",
                        u.name
                    )));
                }
            },
            (None, None) => {
                return Err(BrokerError::Unauthenticated(
                    "missing `Authorization: Bearer <token>`; send a platform JWT (workloads) or an API token (people), or call over mTLS with an X.509-SVID (workloads)".into(),
                ));
            }
        };
        Ok(Authenticated {
            caller,
            client_cert,
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
        // A JWT-SVID maps by (issuer, sub) like any platform token, or by its SPIFFE ID.
        let spiffe_issuer = catalog
            .issuer(&issuer)
            .is_some_and(|i| i.spiffe_trust_domain.is_some());
        let identity = catalog
            .identity_by_subject(&issuer, &claims.sub)
            .or_else(|| {
                spiffe_issuer
                    .then(|| catalog.identity_by_spiffe_id(&claims.sub))
                    .flatten()
            })
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
