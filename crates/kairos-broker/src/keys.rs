//! Kairos's own signing keys: created on first start, sealed in the store with the master
//! key, rotated with overlap.

use std::time::Duration;

use kairos_crypto::issuer::{KeyRing, SigningAlg, SigningKey};
use kairos_crypto::seal::MasterKey;
use kairos_domain::{AuditDraft, AuditKind, Clock, Principal, Timestamp};
use kairos_store::{Store, StoredKey};
use secrecy::ExposeSecret;

use crate::{Broker, BrokerError, BrokerSettings, Result};

const KEY_AAD: &[u8] = b"kairos-signing-key-v1";

fn seal(master: &MasterKey, key: &SigningKey, now: Timestamp) -> Result<StoredKey> {
    Ok(StoredKey {
        kid: key.kid().to_owned(),
        alg: key.alg().to_string(),
        sealed_private: master
            .seal(key.pkcs8_der().expose_secret(), KEY_AAD)
            .map_err(BrokerError::internal)?,
        created_at: now,
        retire_until: None,
    })
}

fn unseal(master: &MasterKey, stored: &StoredKey) -> Result<SigningKey> {
    let der = master.open(&stored.sealed_private, KEY_AAD).map_err(|e| {
        BrokerError::Internal(
            format!(
                "signing key {} cannot be unsealed ({e}); is this the master key the store was created with?",
                stored.kid
            )
            .into(),
        )
    })?;
    let alg: SigningAlg = stored.alg.parse().map_err(|_| {
        BrokerError::Internal(format!("stored key {} has unknown alg", stored.kid).into())
    })?;
    SigningKey::from_pkcs8(stored.kid.clone(), alg, der.expose_secret())
        .map_err(BrokerError::internal)
}

/// Builds the key ring from the store, creating the first key when there is none.
pub(crate) async fn load_or_create(
    store: &dyn Store,
    clock: &dyn Clock,
    master: &MasterKey,
    settings: &BrokerSettings,
) -> Result<KeyRing> {
    let mut stored = store.signing_keys().await?;
    if !stored.iter().any(|k| k.retire_until.is_none()) {
        let key = SigningKey::generate(settings.signing_alg).map_err(BrokerError::internal)?;
        store
            .insert_first_key(&seal(master, &key, clock.now())?)
            .await?;
        stored = store.signing_keys().await?;
    }
    ring_from(&stored, master, &settings.issuer_url)
}

fn ring_from(stored: &[StoredKey], master: &MasterKey, issuer: &str) -> Result<KeyRing> {
    let current = stored
        .iter()
        .filter(|k| k.retire_until.is_none())
        .max_by_key(|k| k.created_at)
        .ok_or_else(|| BrokerError::Internal("no current signing key".into()))?;
    let mut ring = KeyRing::new(issuer.to_owned(), unseal(master, current)?);
    for k in stored.iter().filter(|k| k.retire_until.is_some()) {
        let until = k.retire_until.map(Timestamp::as_secs).unwrap_or_default();
        ring.insert_retired(unseal(master, k)?.verifying_key().clone(), until);
    }
    Ok(ring)
}

impl Broker {
    /// The longest a Kairos token can live: the longest cap of any entitlement.
    fn max_token_lifetime(&self) -> Duration {
        self.catalog()
            .entitlements()
            .map(|e| self.catalog().effective_cap(e).as_duration())
            .max()
            .unwrap_or(Duration::from_secs(24 * 3600))
    }

    /// Rotates the signing key. The old key stays in the JWKS until every token it can
    /// have signed has expired.
    pub async fn rotate_keys(&self, by: &Principal, alg: Option<SigningAlg>) -> Result<String> {
        let now = self.now();
        let alg = alg.unwrap_or(self.settings.signing_alg);
        let key = SigningKey::generate(alg).map_err(BrokerError::internal)?;
        let old = self.key_ring().current_kid().to_owned();
        let retire_until = now.plus(self.max_token_lifetime());
        let audit = AuditDraft::new(AuditKind::KeyRotated, by).data(serde_json::json!({
            "new_kid": key.kid(),
            "alg": alg.to_string(),
            "old_kid": old,
            "old_key_in_jwks_until": retire_until.to_rfc3339(),
        }));
        self.store
            .rotate_key(&seal(&self.master, &key, now)?, retire_until, audit)
            .await?;
        self.reload_keys().await?;
        Ok(key.kid().to_owned())
    }

    /// Drops retired keys past their time and reloads the ring from the store (which
    /// also picks up a rotation done by another replica).
    pub async fn reload_keys(&self) -> Result<()> {
        self.store.prune_keys(self.now()).await?;
        self.reload_key_ring().await
    }

    /// Reloads the ring from the store without pruning (a read only): how a replica
    /// picks up another's rotation (see [`crate::sync`]).
    pub(crate) async fn reload_key_ring(&self) -> Result<()> {
        let stored = self.store.signing_keys().await?;
        let ring = ring_from(&stored, &self.master, &self.settings.issuer_url)?;
        self.set_keys(ring);
        Ok(())
    }
}
