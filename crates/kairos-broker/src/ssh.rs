//! SSH targets: each target's certificate authority (an Ed25519 key made at start or apply,
//! sealed in the store, rotated with overlap), the user certificate a grant's credential
//! is, and the target's key revocation list (served, and written to `krl_file`).
//!
//! Certificates and KRLs are built by the pure `kairos-ssh` crate; the CA key signs
//! through `kairos-crypto`; this module only orchestrates and keeps the store in step.
//!
//! The revocation worker ends an ssh grant through the one end path
//! ([`Broker::propagate_ssh`], called from `ending.rs` where token grants are handled):
//! its serial is marked revoked in the store, the KRL is rebuilt from the store, written
//! to `krl_file` (temp file + rename) and read back, and the receipt says what was seen.
//! The `Connector` trait (accounts: provision, revoke, list) does not fit a certificate,
//! which exists only in the hands of its holder: there is nothing to drop or list.

use std::path::Path;

use kairos_config::{Privileges, SshPrivileges};
use kairos_crypto::ssh_ca::{SshCaKey, random_nonce, random_serial};
use kairos_domain::{AuditDraft, AuditKind, Grant, Principal, TargetName, Timestamp};
use kairos_ssh::{Krl, KrlSection, PublicKey, UserCertificate};
use kairos_store::{SshCert, StoredSshCa};
use secrecy::ExposeSecret;

use crate::{Broker, BrokerError, Result};

/// How far before the grant's start a certificate is valid: hosts whose clocks run a
/// little behind Kairos's accept it at once. Its end is the grant's end, to the second.
const VALID_AFTER_SKEW_SECS: u64 = 60;

/// A grant's credential on an ssh target.
#[derive(Debug, Clone)]
pub struct SshCredential {
    /// OpenSSH one-line form (`ssh-ed25519-cert-v01@openssh.com AAAA… key-id`).
    pub certificate: String,
    pub serial: u64,
    pub principals: Vec<String>,
    /// The certificate's `valid_before`.
    pub valid_before: Timestamp,
}

fn aad(id: &str) -> Vec<u8> {
    format!("kairos-ssh-ca-v1:{id}").into_bytes()
}

fn parse_target(target: &str) -> Result<TargetName> {
    TargetName::parse(target).map_err(|_| {
        BrokerError::NotFound(format!(
            "{:?} is not a target name",
            target.chars().take(64).collect::<String>()
        ))
    })
}

impl Broker {
    /// The target if it is an ssh target of the catalog; 404 otherwise (its name alone
    /// says nothing secret, so the message names the kind).
    fn ssh_target(&self, target: &str) -> Result<(TargetName, Option<String>)> {
        let name = parse_target(target)?;
        let catalog = self.catalog();
        match catalog.target(&name) {
            Some(t) => match t.kind.ssh() {
                Some(ssh) => Ok((name, ssh.krl_file.clone())),
                None => Err(BrokerError::NotFound(format!(
                    "target {name} is a {} target, not an ssh target; it has no SSH CA or KRL",
                    t.kind.as_str()
                ))),
            },
            None => Err(BrokerError::NotFound(format!(
                "target {name} is not configured"
            ))),
        }
    }

    fn seal_ca(&self, target: &TargetName, key: &SshCaKey, now: Timestamp) -> Result<StoredSshCa> {
        let id = format!("sshca_{}", &kairos_crypto::sha256_hex(key.public())[..16]);
        Ok(StoredSshCa {
            public_key: kairos_ssh::ed25519_public_line(
                key.public(),
                &format!("kairos-ca:{target}:{id}"),
            ),
            sealed_private: self
                .master
                .seal(key.pkcs8_der().expose_secret(), &aad(&id))
                .map_err(BrokerError::internal)?,
            id,
            target: target.to_string(),
            created_at: now,
            retire_until: None,
        })
    }

    fn unseal_ca(&self, stored: &StoredSshCa) -> Result<SshCaKey> {
        let der = self
            .master
            .open(&stored.sealed_private, &aad(&stored.id))
            .map_err(|e| {
                BrokerError::Internal(
                    format!(
                        "SSH CA key {} of target {} cannot be unsealed ({e}); is this the master key the store was created with?",
                        stored.id, stored.target
                    )
                    .into(),
                )
            })?;
        SshCaKey::from_pkcs8(der.expose_secret()).map_err(BrokerError::internal)
    }

    /// The target's CA keys still trusted at `now` (the signer and retired keys whose
    /// certificates may not have expired yet), making the first key if there is none.
    async fn ssh_cas(&self, target: &TargetName) -> Result<Vec<StoredSshCa>> {
        let now = self.now();
        let mut keys = self.store.ssh_ca_keys(target.as_str()).await?;
        if !keys.iter().any(|k| k.retire_until.is_none()) {
            let key = SshCaKey::generate().map_err(BrokerError::internal)?;
            // Another replica may make it first; then its key is the one.
            self.store
                .insert_first_ssh_ca(&self.seal_ca(target, &key, now)?)
                .await?;
            keys = self.store.ssh_ca_keys(target.as_str()).await?;
        }
        keys.retain(|k| k.retire_until.is_none_or(|until| until > now));
        Ok(keys)
    }

    /// `GET /v1/targets/{target}/ssh/ca`: the public keys sshd's `TrustedUserCAKeys`
    /// should hold for this target, one per line (the signer last). Reads only: the
    /// target's first key is made at start or by the apply that declares the target (see
    /// [`Broker::prepare_ssh_targets`]), never by this unauthenticated read.
    pub async fn ssh_ca_public_keys(&self, target: &str) -> Result<String> {
        let (name, _) = self.ssh_target(target)?;
        let now = self.now();
        let mut keys = self.store.ssh_ca_keys(name.as_str()).await?;
        keys.retain(|k| k.retire_until.is_none_or(|until| until > now));
        keys.sort_by_key(|k| (k.retire_until.is_none(), k.created_at));
        let mut lines = String::new();
        for k in &keys {
            lines.push_str(&k.public_key);
            lines.push('\n');
        }
        Ok(lines)
    }

    /// The target's KRL as of now: every revoked certificate that has not expired, by
    /// the CA key that signed it.
    async fn build_krl(&self, target: &TargetName) -> Result<Krl> {
        let now = self.now();
        let cas = self.store.ssh_ca_keys(target.as_str()).await?;
        let serials = self.store.revoked_ssh_serials(target.as_str(), now).await?;
        let mut sections = Vec::new();
        for ca in &cas {
            let listed: Vec<u64> = serials
                .iter()
                .filter(|s| s.ca_key_id == ca.id)
                .map(|s| s.serial)
                .collect();
            if listed.is_empty() {
                continue;
            }
            let key = PublicKey::parse_openssh(&ca.public_key).map_err(|e| {
                BrokerError::Internal(
                    format!("stored SSH CA key {} is unreadable: {e}", ca.id).into(),
                )
            })?;
            sections.push(KrlSection {
                ca_key: key.blob().to_vec(),
                serials: listed,
                ranges: Vec::new(),
            });
        }
        // The same revocations give the same bytes on every replica.
        let version = serials
            .iter()
            .map(|s| s.revoked_at.as_millis())
            .max()
            .unwrap_or(0);
        let version = u64::try_from(version).unwrap_or(0);
        Ok(Krl {
            version,
            generated: version / 1000,
            comment: format!("kairos target {target}"),
            sections,
        })
    }

    /// `GET /v1/targets/{target}/ssh/krl`: the binary KRL for sshd's `RevokedKeys`.
    pub async fn ssh_krl(&self, target: &str) -> Result<Vec<u8>> {
        let (name, _) = self.ssh_target(target)?;
        Ok(self.build_krl(&name).await?.encode())
    }

    /// Rewrites `krl_file` from the store (temp file in the same directory, then rename,
    /// so sshd never reads half a file) and reads it back. Returns the KRL as re-read.
    async fn write_krl_file(&self, target: &TargetName, path: &str) -> Result<Krl> {
        let bytes = self.build_krl(target).await?.encode();
        let path = Path::new(path).to_owned();
        let read_back = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(BrokerError::internal)?
            .map_err(|e| BrokerError::Internal(e.into()))?;
        Krl::parse(&read_back).map_err(BrokerError::internal)
    }

    /// Makes sure every ssh target of the catalog has a CA key (another replica may make
    /// it first; then its key is the one), and writes the KRL file of every ssh target
    /// that names one, so that sshd finds one before the first grant ends (sshd refuses
    /// every key while it cannot read it). At start and after every apply.
    pub async fn prepare_ssh_targets(&self) -> Result<()> {
        let catalog = self.catalog();
        for t in catalog.targets() {
            let Some(ssh) = t.kind.ssh() else { continue };
            self.ssh_cas(&t.name).await?;
            if let Some(path) = ssh.krl_file.as_deref() {
                self.write_krl_file(&t.name, path).await?;
            }
        }
        Ok(())
    }

    /// Rotates an ssh target's CA key: the new key signs from now on; the old one stays
    /// listed by `GET …/ssh/ca` until every certificate it signed has expired (the
    /// longest cap of the target's entitlements).
    pub async fn rotate_ssh_ca(&self, by: &Principal, target: &str) -> Result<String> {
        let (name, _) = self.ssh_target(target)?;
        let old = self.ssh_cas(&name).await?;
        let now = self.now();
        let catalog = self.catalog();
        let longest = catalog
            .entitlements()
            .filter(|e| e.target == name)
            .map(|e| catalog.effective_cap(e).as_duration())
            .max()
            .unwrap_or_default();
        let retire_until = now.plus(longest);
        let key = SshCaKey::generate().map_err(BrokerError::internal)?;
        let stored = self.seal_ca(&name, &key, now)?;
        let old_ids: Vec<&str> = old
            .iter()
            .filter(|k| k.retire_until.is_none())
            .map(|k| k.id.as_str())
            .collect();
        let audit = AuditDraft::new(AuditKind::KeyRotated, by).data(serde_json::json!({
            "ssh_target": name,
            "new_ca_key": stored.id,
            "old_ca_keys": old_ids,
            "old_ca_trusted_until": retire_until.to_rfc3339(),
        }));
        self.store
            .rotate_ssh_ca(&stored, retire_until, audit)
            .await?;
        Ok(stored.id)
    }

    /// The certificate of an active ssh grant: the one recorded for it, or a new one
    /// (signed by the target's current CA key and recorded only if the grant is still
    /// active, with its audit record, in one write).
    pub(crate) async fn ssh_credential(&self, grant: &Grant) -> Result<SshCredential> {
        if let Some(cert) = self.store.ssh_cert(&grant.id).await? {
            return Ok(self.credential_of(grant, cert));
        }
        let line = self
            .store
            .ssh_key_of(&grant.request_id)
            .await?
            .ok_or_else(|| {
                BrokerError::Internal(
                    format!(
                        "grant {} on an ssh target has no public key recorded",
                        grant.id
                    )
                    .into(),
                )
            })?;
        let key = PublicKey::parse_openssh(&line).map_err(BrokerError::internal)?;
        let catalog = self.catalog();
        let privileges = match catalog
            .entitlement(&grant.entitlement)
            .map(|e| &e.privileges)
        {
            Some(Privileges::Ssh(p)) => p.clone(),
            _ => {
                return Err(BrokerError::Conflict(format!(
                    "entitlement {} is no longer an ssh entitlement in the configuration",
                    grant.entitlement
                )));
            }
        };
        let cas = self.ssh_cas(&grant.target).await?;
        let signer = cas
            .iter()
            .find(|k| k.retire_until.is_none())
            .ok_or_else(|| BrokerError::Internal("no current SSH CA key".into()))?;
        let ca = self.unseal_ca(signer)?;
        let serial = random_serial().map_err(BrokerError::internal)?;
        let valid_before = u64::try_from(grant.expires_at.as_secs()).unwrap_or(0);
        let valid_after = u64::try_from(grant.issued_at.as_secs())
            .unwrap_or(0)
            .saturating_sub(VALID_AFTER_SKEW_SECS);
        let key_id = format!("kairos:{}:{}", grant.id, grant.identity);
        let SshPrivileges {
            principals,
            force_command,
            source_address,
            extensions,
        } = privileges;
        let spec = UserCertificate {
            key: &key,
            nonce: random_nonce().map_err(BrokerError::internal)?,
            serial,
            key_id: key_id.clone(),
            principals: principals.clone(),
            valid_after,
            valid_before,
            force_command,
            source_address,
            extensions,
        };
        let body = spec.body(ca.public());
        let signature = ca.sign(body.signed_data());
        let certificate = body.finish(&signature, &key_id).to_openssh().to_owned();
        let cert = SshCert {
            grant_id: grant.id.clone(),
            target: grant.target.to_string(),
            ca_key_id: signer.id.clone(),
            serial,
            certificate,
            valid_before: Timestamp::from_millis(grant.expires_at.as_secs().saturating_mul(1000)),
            revoked_at: None,
        };
        let audit = AuditDraft::new(AuditKind::CredentialDelivered, Principal::System("broker"))
            .identity(&grant.identity)
            .request(&grant.request_id)
            .grant(&grant.id)
            .task_ref(&grant.task.reference)
            .data(serde_json::json!({
                "ssh_certificate": {
                    "serial": serial,
                    "ca_key": signer.id,
                    "key_id": key_id,
                    "principals": principals,
                    "public_key": key.to_openssh(),
                    "valid_before": grant.expires_at.to_rfc3339(),
                },
            }));
        match self.store.record_ssh_cert(&cert, self.now(), audit).await? {
            Some(recorded) => Ok(self.credential_of(grant, recorded)),
            None => Err(BrokerError::Conflict(format!(
                "grant {} is no longer active; no certificate was issued",
                grant.id
            ))),
        }
    }

    fn credential_of(&self, grant: &Grant, cert: SshCert) -> SshCredential {
        let principals = match self
            .catalog()
            .entitlement(&grant.entitlement)
            .map(|e| &e.privileges)
        {
            Some(Privileges::Ssh(p)) => p.principals.clone(),
            _ => Vec::new(),
        };
        SshCredential {
            certificate: cert.certificate,
            serial: cert.serial,
            principals,
            valid_before: cert.valid_before,
        }
    }

    /// Whether a grant's target is an ssh target (the revocation worker asks).
    pub(crate) fn is_ssh_grant(&self, grant: &Grant) -> bool {
        self.catalog()
            .target(&grant.target)
            .is_some_and(|t| t.kind.ssh().is_some())
    }

    /// The end of an ssh grant: its serial marked revoked, the KRL rebuilt (and
    /// `krl_file` rewritten and read back), the listing checked. Returns (revoked at,
    /// method, evidence) for the receipt.
    pub(crate) async fn propagate_ssh(
        &self,
        grant: &Grant,
    ) -> std::result::Result<(Timestamp, String, String), String> {
        let revoked_at = self.now();
        let had_cert = self
            .store
            .revoke_ssh_cert(&grant.id, revoked_at)
            .await
            .map_err(|e| format!("marking the certificate revoked failed: {e}"))?;
        if !had_cert {
            return Ok((
                revoked_at,
                "ssh-no-certificate".into(),
                format!(
                    "no certificate was issued for grant {} (none can be now: a certificate is recorded only while its grant is active)",
                    grant.id
                ),
            ));
        }
        let cert = self
            .store
            .ssh_cert(&grant.id)
            .await
            .map_err(|e| format!("reading the certificate failed: {e}"))?
            .ok_or_else(|| "the certificate vanished from the store".to_owned())?;
        let ca_blob = self
            .store
            .ssh_ca_keys(grant.target.as_str())
            .await
            .map_err(|e| format!("reading the CA keys failed: {e}"))?
            .into_iter()
            .find(|k| k.id == cert.ca_key_id)
            .and_then(|k| PublicKey::parse_openssh(&k.public_key).ok())
            .map(|k| k.blob().to_vec());
        let expiry = format!(
            "certificate valid_before {} (sshd refuses it from then on by itself)",
            cert.valid_before.to_rfc3339()
        );
        if cert.valid_before <= self.now() {
            return Ok((
                revoked_at,
                "ssh-certificate-expired".into(),
                format!(
                    "serial {} needs no KRL entry: {expiry} has passed",
                    cert.serial
                ),
            ));
        }
        let Some(ca_blob) = ca_blob else {
            return Err(format!(
                "the CA key {} that signed serial {} is missing from the store",
                cert.ca_key_id, cert.serial
            ));
        };
        let krl_file = self
            .catalog()
            .target(&grant.target)
            .and_then(|t| t.kind.ssh())
            .and_then(|s| s.krl_file.clone());
        let (krl, whence) = match &krl_file {
            Some(path) => (
                self.write_krl_file(&grant.target, path)
                    .await
                    .map_err(|e| format!("writing krl_file {path} failed: {e}"))?,
                format!("re-read from krl_file {path}"),
            ),
            None => (
                self.build_krl(&grant.target)
                    .await
                    .map_err(|e| format!("building the KRL failed: {e}"))?,
                format!(
                    "as served at GET /v1/targets/{}/ssh/krl; no krl_file",
                    grant.target
                ),
            ),
        };
        if !krl.revokes(&ca_blob, cert.serial) {
            return Err(format!(
                "serial {} is not listed in the KRL (version {}) just built; retrying",
                cert.serial, krl.version
            ));
        }
        Ok((
            revoked_at,
            if krl_file.is_some() {
                "ssh-krl-file"
            } else {
                "ssh-krl"
            }
            .into(),
            format!(
                "serial {} of CA key {} listed in KRL version {} ({whence}); {expiry}; live sessions are not ended by sshd",
                cert.serial, cert.ca_key_id, krl.version
            ),
        ))
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path`
/// (0644: sshd reads it, and it holds nothing secret), and reads `path` back.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(tmp, path)?;
        std::fs::read(path)
    }
    write_then_rename(&tmp, path, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}
