//! Connectors propagate a grant's end to the systems that honour its credential, and
//! verify that access is gone. They receive an already-decided grant and never see policy.
//!
//! The token connector lives here because its "consumer" is Kairos's own introspection
//! state; database connectors (PostgreSQL, MariaDB, Redis) implement the same trait.

use std::sync::Arc;

use async_trait::async_trait;
use kairos_domain::{Clock, Grant};
use kairos_store::Store;

/// What a connector can and cannot do about access that should end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Revocability {
    /// Revocation takes effect for new uses.
    pub revocable: bool,
    /// Live sessions opened with the credential are terminated at revoke.
    pub kills_sessions: bool,
    /// The downstream system ends access by itself at the grant's end even if Kairos is
    /// down (e.g. PostgreSQL `VALID UNTIL`), described in a sentence; None if it has none.
    pub native_expiry: Option<String>,
}

/// The evidence a verification gathered.
#[derive(Debug, Clone)]
pub struct Verification {
    pub method: String,
    pub evidence: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectorError(pub String);

#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The target kind it serves (`token`, `postgres`, …).
    fn kind(&self) -> &'static str;

    fn revocability(&self) -> Revocability;

    /// Tells the consumers that the grant has ended. Idempotent.
    async fn revoke(&self, grant: &Grant) -> Result<(), ConnectorError>;

    /// Checks that access is really gone; `Err` if it is not (yet).
    async fn verify_gone(&self, grant: &Grant) -> Result<Verification, ConnectorError>;
}

/// Tokens are honoured by resource servers that check introspection, so propagation is
/// the grant's state in the store, and verification asks that state what introspection
/// would answer now.
#[derive(Debug)]
pub struct TokenConnector {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl TokenConnector {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl Connector for TokenConnector {
    fn kind(&self) -> &'static str {
        "token"
    }

    fn revocability(&self) -> Revocability {
        Revocability {
            revocable: true,
            kills_sessions: false,
            native_expiry: Some(
                "the token's `exp` is never later than the grant's end; resource servers that only check the signature honour it until then".into(),
            ),
        }
    }

    async fn revoke(&self, _grant: &Grant) -> Result<(), ConnectorError> {
        // The grant left the `active` state in the same transaction that ended it:
        // introspection already answers inactive. Nothing else to tell.
        Ok(())
    }

    async fn verify_gone(&self, grant: &Grant) -> Result<Verification, ConnectorError> {
        let now = self.clock.now();
        let stored = self
            .store
            .get_grant(&grant.id)
            .await
            .map_err(|e| ConnectorError(format!("reading the grant failed: {e}")))?
            .ok_or_else(|| ConnectorError("the grant vanished from the store".into()))?;
        if stored.is_active_at(now) {
            return Err(ConnectorError(
                "introspection still answers active for this grant".into(),
            ));
        }
        Ok(Verification {
            method: "introspection".into(),
            evidence: format!(
                "introspection of jti {} answers active=false (state {})",
                grant.id,
                stored.state.name()
            ),
        })
    }
}
