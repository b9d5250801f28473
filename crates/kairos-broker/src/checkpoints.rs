//! Signed audit checkpoints: tamper evidence against someone who can write the store.
//!
//! The chain's hashes are unkeyed, so a store writer can cut the tail and fix the head
//! row, or rewrite every hash, and the chain still verifies. A checkpoint is the broker's
//! signature (its current signing key, verifiable with its JWKS) over the head (`seq`,
//! `hash`, `at`), made at an interval when the head moved and on demand, and published
//! outside the store: one JSON line appended to a file (opened O_APPEND, created 0600)
//! and the log. Verification proves the chain still extends every checkpoint.
//! The checkpointer signs only a head it has verified itself, walking the chain from
//! where it last looked, so a chain rewritten under it is not blessed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kairos_crypto::issuer::{CheckpointClaims, CheckpointError};
use kairos_domain::{ChainError, ChainVerifier, Timestamp, checkpoint_problem};
use kairos_store::Role;

use crate::users::ChainReport;
use crate::{Broker, BrokerError, Caller, Result};

/// Records read per page while walking the chain.
const PAGE: u32 = 1000;

/// A signed checkpoint of the chain's head.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: Timestamp,
    /// The key that signed it.
    pub kid: String,
    /// The compact JWS over `{iss, seq, hash, at}`.
    pub jws: String,
}

impl Checkpoint {
    /// The line published in the checkpoint file and the log.
    pub fn line(&self) -> String {
        serde_json::json!({
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at.to_rfc3339(),
            "kid": self.kid,
            "checkpoint": self.jws,
        })
        .to_string()
    }
}

/// How one checkpoint fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// Signed by this broker, and the chain still extends it.
    Extended,
    /// Signed by this broker, and the chain no longer extends it: the store was rewritten.
    NotExtended,
    /// Names a key of this broker but its signature does not verify.
    Forged,
    /// Names a key this broker no longer has (retired and pruned): cannot be checked.
    KeyGone,
    /// Not a checkpoint at all, or signed for another broker.
    Malformed,
}

impl CheckpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extended => "extended",
            Self::NotExtended => "not_extended",
            Self::Forged => "forged",
            Self::KeyGone => "key_gone",
            Self::Malformed => "malformed",
        }
    }
}

/// The finding for the checkpoint at `index` (0-based, in the order given).
#[derive(Debug, Clone)]
pub struct CheckpointFinding {
    pub index: usize,
    pub seq: Option<i64>,
    pub kid: Option<String>,
    pub status: CheckpointStatus,
    /// What is wrong, unless `Extended`.
    pub problem: Option<String>,
}

/// The chain's own verdict and each checkpoint's.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    pub chain: ChainReport,
    pub checkpoints: Vec<CheckpointFinding>,
}

impl CheckpointReport {
    pub fn ok(&self) -> bool {
        self.chain.broken.is_none()
            && self
                .checkpoints
                .iter()
                .all(|c| c.status == CheckpointStatus::Extended)
    }
}

/// At most this many checkpoints in one verification.
pub const MAX_CHECKPOINTS: usize = 10_000;

/// Where checkpoints go, and the head the checkpointer has verified so far.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    file: Option<PathBuf>,
    state: tokio::sync::Mutex<Verified>,
    /// What the walk has verified, readable while a walk holds `state`.
    seen: std::sync::Mutex<ChainStatus>,
}

#[derive(Debug, Default)]
struct Verified {
    chain: ChainVerifier,
    /// The `seq` of the last checkpoint published by this process.
    published: i64,
    /// Where the walk found the chain broken; it does not go past it.
    broken: Option<ChainError>,
}

impl Checkpointer {
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            state: tokio::sync::Mutex::new(Verified::default()),
            seen: std::sync::Mutex::new(ChainStatus::default()),
        }
    }

    fn snapshot(&self) -> ChainStatus {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn record(&self, state: &Verified, caught_up: bool, at: Timestamp) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = ChainStatus {
                verified_through: state.chain.head().0,
                broken: state.broken.clone(),
                caught_up,
                checked_at: Some(at),
                published: state.published,
            };
        }
    }
}

/// How far this process has verified the chain, following it forward as it grows (the
/// checkpointer's walk: from the first record at start, then each new record once).
///
/// It does not re-read records it has already verified: a rewrite of an older record is
/// found by a full walk ([`Broker::verify_audit`], `kairos audit verify`) or by the walk at
/// the next start.
#[derive(Debug, Clone, Default)]
pub struct ChainStatus {
    /// Records 1 to this one link and hash correctly.
    pub verified_through: i64,
    /// Where the chain is broken, if the walk found it so.
    pub broken: Option<ChainError>,
    /// Whether the last walk reached the head it then saw (false while a long chain is
    /// still being walked, e.g. just after a start).
    pub caught_up: bool,
    /// When the walk last moved; None before the first.
    pub checked_at: Option<Timestamp>,
    /// The `seq` of the last checkpoint this process signed (0: none yet).
    pub published: i64,
}

/// The most records a status read walks itself before answering; a longer tail is left
/// to the checkpointer's walk, and the status says it is not caught up.
const STATUS_WALK: u64 = 20_000;

/// Whether a checkpoint is made when the head has not moved since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unmoved {
    Skip,
    SignAgain,
}

/// What a walk of the whole chain found.
struct Walk {
    report: ChainReport,
    /// The hash at each wanted `seq` that the chain has.
    found: BTreeMap<i64, String>,
    /// The last record's `seq` (0 for an empty chain).
    last: i64,
}

impl Broker {
    /// Makes a checkpoint of the head now (admin, operator, auditor: it is a read and a
    /// signature, and it only adds evidence).
    pub async fn checkpoint(&self, caller: &Caller) -> Result<Checkpoint> {
        caller.require_role(&[Role::Operator, Role::Auditor], "make an audit checkpoint")?;
        self.publish_checkpoint(Unmoved::SignAgain)
            .await?
            .ok_or_else(|| BrokerError::Conflict("the audit log is empty".into()))
    }

    /// Verifies the chain's head and signs it, then appends the line to the checkpoint
    /// file and logs it. None when the chain is empty, or when it has not moved since
    /// this process's last checkpoint and `unmoved` says skip.
    pub(crate) async fn publish_checkpoint(&self, unmoved: Unmoved) -> Result<Option<Checkpoint>> {
        let mut state = self.checkpointer.state.lock().await;
        self.walk_forward(&mut state, None).await?;
        let (seq, hash) = state.chain.head();
        if seq == 0 || (unmoved == Unmoved::Skip && seq == state.published) {
            return Ok(None);
        }
        let ring = self.key_ring();
        let at = self.now();
        let claims = CheckpointClaims {
            iss: ring.issuer().to_owned(),
            seq,
            hash: hash.to_owned(),
            at: at.to_rfc3339(),
        };
        let jws = ring
            .sign_checkpoint(&claims)
            .map_err(BrokerError::internal)?;
        let checkpoint = Checkpoint {
            seq,
            hash: claims.hash,
            at,
            kid: ring.current_kid().to_owned(),
            jws,
        };
        let line = checkpoint.line();
        if let Some(path) = self.checkpointer.file.clone() {
            let text = format!("{line}\n");
            tokio::task::spawn_blocking(move || append_line(&path, text.as_bytes()))
                .await
                .map_err(BrokerError::internal)?
                .map_err(BrokerError::internal)?;
        }
        tracing::info!(seq, checkpoint = %line, "audit checkpoint");
        state.published = seq;
        self.checkpointer.record(&state, true, at);
        Ok(Some(checkpoint))
    }

    /// Verifies the records past the walk's head, at most `budget` of them (None: up to
    /// the head); true when it reached the head. A break is kept, and refuses every later
    /// walk.
    async fn walk_forward(&self, state: &mut Verified, budget: Option<u64>) -> Result<bool> {
        let refuse = |e: &ChainError| {
            BrokerError::Conflict(format!(
                "no checkpoint signed: {e}; run `kairos audit verify` and investigate"
            ))
        };
        if let Some(e) = &state.broken {
            return Err(refuse(e));
        }
        let mut walked = 0u64;
        let caught_up = loop {
            if budget.is_some_and(|b| walked >= b) {
                break false;
            }
            let (after, _) = state.chain.head();
            let page = self.store.audit_page(after, PAGE).await?;
            if page.is_empty() {
                break true;
            }
            for r in &page {
                if let Err(e) = state.chain.push(r) {
                    state.broken = Some(e.clone());
                    self.checkpointer.record(state, false, self.now());
                    return Err(refuse(&e));
                }
            }
            walked += page.len() as u64;
            self.checkpointer.record(state, false, self.now());
        };
        self.checkpointer.record(state, caught_up, self.now());
        Ok(caught_up)
    }

    /// How far the chain is verified, without a walk of the whole chain: the
    /// checkpointer's walk, moved up to the head first when the tail is short and no
    /// other walk is under way (admin, operator, auditor).
    pub async fn chain_status(&self, caller: &Caller) -> Result<ChainStatus> {
        caller.require_role(&[Role::Auditor, Role::Operator], "verify the audit log")?;
        // While the checkpointer walks (at start, or its periodic walk of the newest
        // records) the status is the state it has reached, which says it is still walking:
        // a page never waits for a walk of a long chain.
        if let Ok(mut state) = self.checkpointer.state.try_lock() {
            match self.walk_forward(&mut state, Some(STATUS_WALK)).await {
                // A break is in the status.
                Ok(_) | Err(BrokerError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.checkpointer.snapshot())
    }

    /// Walks the chain and checks each checkpoint (compact JWS) against it: signed by
    /// this broker (a key in its JWKS), and the chain's record at its `seq` has exactly
    /// its hash, the chain reaching at least that far.
    pub async fn verify_checkpoints(
        &self,
        caller: &Caller,
        checkpoints: &[String],
    ) -> Result<CheckpointReport> {
        caller.require_role(&[Role::Auditor, Role::Operator], "verify the audit log")?;
        if checkpoints.len() > MAX_CHECKPOINTS {
            return Err(BrokerError::invalid(
                "too_many_checkpoints",
                format!(
                    "{} checkpoints given; verify at most {MAX_CHECKPOINTS} at once (the latest ones prove the most)",
                    checkpoints.len()
                ),
            ));
        }
        let ring = self.key_ring();
        let signed: Vec<_> = checkpoints
            .iter()
            .map(|c| ring.verify_checkpoint(c))
            .collect();
        let wanted: BTreeSet<i64> = signed
            .iter()
            .filter_map(|s| s.as_ref().ok().map(|(c, _)| c.seq))
            .collect();
        let walk = self.walk_chain(&wanted).await?;
        let findings = signed
            .into_iter()
            .enumerate()
            .map(|(index, signed)| match signed {
                Ok((claims, kid)) => {
                    let problem = checkpoint_problem(
                        claims.seq,
                        &claims.hash,
                        walk.found.get(&claims.seq).map(String::as_str),
                        walk.last,
                    );
                    CheckpointFinding {
                        index,
                        seq: Some(claims.seq),
                        kid: Some(kid),
                        status: if problem.is_none() {
                            CheckpointStatus::Extended
                        } else {
                            CheckpointStatus::NotExtended
                        },
                        problem,
                    }
                }
                Err(e) => CheckpointFinding {
                    index,
                    seq: None,
                    kid: match &e {
                        CheckpointError::Forged { kid } => Some(kid.clone()),
                        _ => None,
                    },
                    status: match &e {
                        CheckpointError::Forged { .. } => CheckpointStatus::Forged,
                        CheckpointError::KeyGone(_) => CheckpointStatus::KeyGone,
                        _ => CheckpointStatus::Malformed,
                    },
                    problem: Some(e.to_string()),
                },
            })
            .collect();
        Ok(CheckpointReport {
            chain: walk.report,
            checkpoints: findings,
        })
    }

    /// Walks the whole chain and names the first bad record.
    pub async fn verify_audit(&self, caller: &Caller) -> Result<ChainReport> {
        caller.require_role(&[Role::Auditor, Role::Operator], "verify the audit log")?;
        Ok(self.walk_chain(&BTreeSet::new()).await?.report)
    }

    /// One walk of the chain: its verdict, the hashes at `wanted`, its last `seq`.
    async fn walk_chain(&self, wanted: &BTreeSet<i64>) -> Result<Walk> {
        let mut verifier = ChainVerifier::default();
        let mut broken = None;
        let mut found = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = self.store.audit_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if wanted.contains(&r.seq) {
                    found.insert(r.seq, r.hash.clone());
                }
                if broken.is_none() {
                    broken = verifier.push(r).err();
                }
            }
            if broken.is_some() && wanted.range(after + 1..).next().is_none() {
                break;
            }
        }
        // A deleted tail is caught by the head row the store keeps.
        if broken.is_none()
            && let Some(problem) = self.store.audit_head_mismatch(after).await?
        {
            broken = Some(kairos_domain::ChainError {
                seq: after + 1,
                problem,
            });
        }
        Ok(Walk {
            report: ChainReport {
                records: verifier.checked,
                broken,
            },
            found,
            last: after,
        })
    }
}

/// Appends one line to the checkpoint file: O_APPEND, created 0600, synced.
fn append_line(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot open the audit checkpoint file {}: {e}",
                path.display()
            ),
        )
    })?;
    file.write_all(bytes)?;
    file.sync_data()
}
