//! DPoP (RFC 9449) in the broker: a proof is checked against the catalog's `[dpop]`
//! settings and this broker's public URL (the issuer URL, so a proxy in front changes
//! nothing), its `jti` claimed across replicas in the store, and a request's key binding
//! found again when its token is minted anew.

use kairos_crypto::dpop::{self, Confirmation, NonceKey, ProofCheck, ProofError, VerifiedProof};
use kairos_domain::{Grant, RequestId, Timestamp};

use crate::{Broker, BrokerError, Result};

/// The error code of a refused proof (RFC 9449 §7.1 `invalid_dpop_proof`).
pub const INVALID_DPOP_PROOF: &str = "invalid_dpop_proof";
/// The error code asking for a proof with the server's nonce (RFC 9449 §8).
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";

fn refusal(e: ProofError) -> BrokerError {
    let code = match e {
        ProofError::UseNonce => USE_DPOP_NONCE,
        _ => INVALID_DPOP_PROOF,
    };
    BrokerError::invalid(code, e.to_string())
}

impl Broker {
    /// Checks a DPoP proof that came to this broker with `method` at `path` (e.g.
    /// `/v1/requests`): `htu` must be the public URL of that path. Refused as
    /// `invalid_dpop_proof`, or `use_dpop_nonce` when `[dpop] nonce = true` and the proof
    /// lacks a current nonce ([`Broker::dpop_nonce`]). The `jti` is not claimed here: the
    /// request that carries it claims it ([`Broker::request`]).
    pub fn check_dpop_proof(&self, proof: &str, method: &str, path: &str) -> Result<VerifiedProof> {
        let url = format!("{}{}", self.settings.issuer_url.trim_end_matches('/'), path);
        self.check_proof_for(proof, method, &url, None, self.nonce_required())
    }

    /// The nonce a client must put in its next proof (the `DPoP-Nonce` header).
    pub fn dpop_nonce(&self) -> String {
        NonceKey::derive(&self.master).current(self.now().as_secs())
    }

    fn nonce_required(&self) -> bool {
        self.catalog().dpop().nonce
    }

    fn check_proof_for(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: bool,
    ) -> Result<VerifiedProof> {
        let key = NonceKey::derive(&self.master);
        let max_age = self.catalog().dpop().proof_max_age.as_secs();
        dpop::verify_proof(
            proof,
            &ProofCheck {
                method,
                url,
                access_token,
                nonce: nonce.then_some(&key),
                max_age_secs: i64::try_from(max_age).unwrap_or(600),
                now: self.now().as_secs(),
            },
        )
        .map_err(refusal)
    }

    /// Claims a proof's `jti` (once, across replicas); with `binding`, records that the
    /// request's tokens are bound to the proof's key in the same write.
    pub(crate) async fn claim_dpop_proof(
        &self,
        proof: &VerifiedProof,
        binding: Option<&RequestId>,
    ) -> Result<()> {
        let until = Timestamp::from_millis(proof.replay_until().saturating_mul(1000));
        let claimed = self
            .store
            .claim_dpop_proof(
                &proof.replay_key(),
                until,
                binding.map(|r| (r, proof.jkt.as_str())),
            )
            .await?;
        if claimed {
            Ok(())
        } else {
            Err(refusal(ProofError::Replayed))
        }
    }

    /// The confirmation a grant's tokens carry (the DPoP key and/or client certificate of
    /// the request that issued it), if any.
    pub(crate) async fn confirmation_of(&self, grant: &Grant) -> Result<Option<Confirmation>> {
        let jkt = self.store.dpop_binding(&grant.request_id).await?;
        let x5t = self.store.certificate_binding(&grant.request_id).await?;
        Ok(Confirmation::of(jkt, x5t))
    }

    /// A resource server's check of the DPoP proof it received with a bound token: the
    /// proof must be for `method` and `url` (the resource server's own request), carry
    /// `ath` of `token`, be signed by the key `cnf` names, and not have been seen before.
    /// No server nonce is asked for (the nonce is this broker's, not the resource
    /// server's).
    pub(crate) async fn check_presented_proof(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        token: &str,
        cnf: &Confirmation,
    ) -> Result<()> {
        let verified = self.check_proof_for(proof, method, url, Some(token), false)?;
        if !dpop::key_matches(&verified, cnf) {
            return Err(refusal(ProofError::WrongKey));
        }
        self.claim_dpop_proof(&verified, None).await
    }

    /// Forgets proofs whose window has passed (a replayed one is refused by its `iat`
    /// alone then). Returns how many.
    pub async fn prune_dpop_proofs(&self) -> Result<u64> {
        Ok(self.store.prune_dpop_proofs(self.now()).await?)
    }
}
