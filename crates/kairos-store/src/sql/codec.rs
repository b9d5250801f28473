//! Domain objects to and from rows. Every column the schema has is read and written here,
//! so a field added to a domain type needs one change in this file (and a migration).

use kairos_domain::{
    AuditKind, AuditRecord, EndReason, EntitlementName, Grant, GrantEnd, GrantId, GrantState,
    IdentityName, Principal, Receipt, Request, RequestId, RequestState, TargetName, Task, TaskKind,
    TaskRef, TeamName, Timestamp, Ttl, UserName,
};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::{Result, Role, StoreError, StoredKey, StoredToken, User};

pub(super) type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// Encoding a domain value as JSON text; only fails on a bug in a `Serialize` impl.
pub(super) fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(sqlx::Error::Encode(Box::new(e))))
}

/// A stored row's columns by name: a sqlx row, or a rusqlite row on SQLite's direct read
/// path (see [`super::direct`]). The decoders below take either.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
}

impl Columns for AnyRow {
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get::<String, _>(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get::<Option<String>, _>(column)?)
    }

    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get::<i64, _>(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get::<Option<i64>, _>(column)?)
    }
}

/// A rusqlite row with its statement's column names, read once per statement. rusqlite's
/// own lookup by name asks SQLite for every column's name and compares them, for every
/// value read: a grant's 25 columns made that a few percent of an introspection's CPU.
pub(super) struct NamedRow<'r, 's> {
    pub row: &'r rusqlite::Row<'s>,
    pub names: &'r [String],
}

impl NamedRow<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T> {
        let index = self
            .names
            .iter()
            .position(|n| n == column)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_owned()))?;
        Ok(self.row.get::<_, T>(index)?)
    }
}

impl Columns for NamedRow<'_, '_> {
    fn text(&self, column: &str) -> Result<String> {
        self.get(column)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.get(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }
}

/// Reads the columns of one stored record, naming the record in every error.
struct Reader<'r, R: Columns> {
    row: &'r R,
    id: String,
}

impl<'r, R: Columns> Reader<'r, R> {
    fn new(row: &'r R, id_column: &str) -> Result<Self> {
        let id = row.text(id_column)?;
        Ok(Self { row, id })
    }

    fn corrupt(&self, column: &str, problem: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            id: self.id.clone(),
            problem: format!("column {column}: {problem}"),
        }
    }

    fn text(&self, column: &str) -> Result<String> {
        self.row.text(column)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.row.opt_text(column)
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.row.int(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.row.opt_int(column)
    }

    fn time(&self, column: &str) -> Result<Timestamp> {
        self.int(column).map(Timestamp::from_millis)
    }

    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>> {
        Ok(self.opt_int(column)?.map(Timestamp::from_millis))
    }

    /// A column that must be set in this record's state.
    fn required<T>(&self, column: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| self.corrupt(column, "is empty but the record's state needs it"))
    }

    /// A text column parsed with `parse`.
    fn parsed<T, E: std::fmt::Display>(
        &self,
        column: &str,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Result<T> {
        parse(self.text(column)?).map_err(|e| self.corrupt(column, e))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T> {
        self.parsed(column, |s| serde_json::from_str(&s))
    }

    fn opt_json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<Option<T>> {
        match self.opt_text(column)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| self.corrupt(column, e)),
        }
    }

    fn task(&self) -> Result<Task> {
        Ok(Task {
            kind: self.parsed("task_kind", |s| s.parse::<TaskKind>())?,
            reference: self.parsed("task_ref", TaskRef::parse)?,
            reason: self.text("task_reason")?,
        })
    }
}

fn known<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("not a valid {what}"))
}

// ---- requests ------------------------------------------------------------------------

pub(super) const REQUEST_COLUMNS: &str = "id, identity, entitlement, ttl_secs, task_kind, \
     task_ref, task_reason, requester, decision, state, approvals, denial, created_at, \
     pending_until, grant_id, renews, source_ip";

/// `INSERT` with every column of [`REQUEST_COLUMNS`] as `$1…$17`.
pub(super) const INSERT_REQUEST: &str = "INSERT INTO requests (id, identity, entitlement, \
     ttl_secs, task_kind, task_ref, task_reason, requester, decision, state, approvals, denial, \
     created_at, pending_until, grant_id, renews, source_ip) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

/// `UPDATE` of every column but the id (`$1`), numbered as in [`INSERT_REQUEST`].
pub(super) const UPDATE_REQUEST: &str = "UPDATE requests SET identity = $2, entitlement = $3, \
     ttl_secs = $4, task_kind = $5, task_ref = $6, task_reason = $7, requester = $8, \
     decision = $9, state = $10, approvals = $11, denial = $12, created_at = $13, \
     pending_until = $14, grant_id = $15, renews = $16, source_ip = $17 WHERE id = $1";

/// Binds a request as `$1…$17` of [`INSERT_REQUEST`] / [`UPDATE_REQUEST`], with `id` as `$1`.
pub(super) fn bind_request<'q>(
    q: AnyQuery<'q>,
    id: &RequestId,
    r: &Request,
) -> Result<AnyQuery<'q>> {
    let denial = r.denial.as_ref().map(to_json).transpose()?;
    Ok(q.bind(id.as_str().to_owned())
        .bind(r.identity.as_str().to_owned())
        .bind(r.entitlement.as_str().to_owned())
        .bind(i64::try_from(r.ttl.as_secs()).unwrap_or(i64::MAX))
        .bind(r.task.kind.as_str())
        .bind(r.task.reference.as_str().to_owned())
        .bind(r.task.reason.clone())
        .bind(r.requester.to_string())
        .bind(to_json(&r.decision)?)
        .bind(r.state.as_str())
        .bind(to_json(&r.approvals)?)
        .bind(denial)
        .bind(r.created_at.as_millis())
        .bind(r.pending_until.map(Timestamp::as_millis))
        .bind(r.grant_id.as_ref().map(|g| g.as_str().to_owned()))
        .bind(r.renews.as_ref().map(|g| g.as_str().to_owned()))
        .bind(r.source_ip.map(|ip| ip.to_string())))
}

pub(super) fn request_from_row(row: &impl Columns) -> Result<Request> {
    let r = Reader::new(row, "id")?;
    let ttl_secs = r.int("ttl_secs")?;
    Ok(Request {
        id: r.parsed("id", |s| known(RequestId::parse(&s), "request id"))?,
        identity: r.parsed("identity", IdentityName::parse)?,
        entitlement: r.parsed("entitlement", EntitlementName::parse)?,
        ttl: u64::try_from(ttl_secs)
            .map_err(|e| r.corrupt("ttl_secs", e))
            .and_then(|s| Ttl::from_secs(s).map_err(|e| r.corrupt("ttl_secs", e)))?,
        task: r.task()?,
        requester: r.parsed("requester", |s| known(Principal::parse(&s), "principal"))?,
        decision: r.json("decision")?,
        state: r.parsed("state", |s| known(RequestState::parse(&s), "request state"))?,
        approvals: r.json("approvals")?,
        denial: r.opt_json("denial")?,
        created_at: r.time("created_at")?,
        pending_until: r.opt_time("pending_until")?,
        grant_id: match r.opt_text("grant_id")? {
            None => None,
            Some(g) => {
                Some(known(GrantId::parse(&g), "grant id").map_err(|e| r.corrupt("grant_id", e))?)
            }
        },
        renews: match r.opt_text("renews")? {
            None => None,
            Some(g) => {
                Some(known(GrantId::parse(&g), "grant id").map_err(|e| r.corrupt("renews", e))?)
            }
        },
        source_ip: match r.opt_text("source_ip")? {
            None => None,
            Some(ip) => Some(ip.parse().map_err(|e| r.corrupt("source_ip", e))?),
        },
    })
}

// ---- grants --------------------------------------------------------------------------

pub(super) const GRANT_COLUMNS: &str = "id, request_id, identity, entitlement, target, \
     audience, scopes, task_kind, task_ref, task_reason, issued_at, expires_at, max_expires_at, \
     state, end_reason, ended_by, ended_at, attempts, last_error, revoked_at, verified_at, \
     verify_method, evidence, account, sealed_secret";

/// `INSERT` with every column of [`GRANT_COLUMNS`] as `$1…$25`. An ended grant carries no
/// attempt count in the domain; it is stored as 0.
pub(super) const INSERT_GRANT: &str = "INSERT INTO grants (id, request_id, identity, \
     entitlement, target, audience, scopes, task_kind, task_ref, task_reason, issued_at, \
     expires_at, max_expires_at, state, end_reason, ended_by, ended_at, attempts, last_error, \
     revoked_at, verified_at, verify_method, evidence, account, sealed_secret) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     COALESCE($18, 0), $19, $20, $21, $22, $23, $24, $25)";

/// `UPDATE` of every column but the id (`$1`), numbered as in [`INSERT_GRANT`]. An ended
/// grant keeps the attempt count it had while ending.
pub(super) const UPDATE_GRANT: &str = "UPDATE grants SET request_id = $2, identity = $3, \
     entitlement = $4, target = $5, audience = $6, scopes = $7, task_kind = $8, task_ref = $9, \
     task_reason = $10, issued_at = $11, expires_at = $12, max_expires_at = $13, state = $14, \
     end_reason = $15, ended_by = $16, ended_at = $17, attempts = COALESCE($18, attempts), \
     last_error = $19, revoked_at = $20, verified_at = $21, verify_method = $22, \
     evidence = $23, account = $24, sealed_secret = $25 WHERE id = $1";

/// The `state` column of a grant state.
pub(super) fn grant_state_column(state: &GrantState) -> &'static str {
    match state {
        GrantState::Provisioning => "provisioning",
        GrantState::Active => "active",
        GrantState::Ending { .. } => "ending",
        GrantState::Ended { .. } => "ended",
    }
}

/// Binds a grant as `$1…$25` of [`INSERT_GRANT`] / [`UPDATE_GRANT`], with `id` as `$1`.
pub(super) fn bind_grant<'q>(q: AnyQuery<'q>, id: &GrantId, g: &Grant) -> Result<AnyQuery<'q>> {
    let q = q
        .bind(id.as_str().to_owned())
        .bind(g.request_id.as_str().to_owned())
        .bind(g.identity.as_str().to_owned())
        .bind(g.entitlement.as_str().to_owned())
        .bind(g.target.as_str().to_owned())
        .bind(g.audience.clone())
        .bind(to_json(&g.scopes)?)
        .bind(g.task.kind.as_str())
        .bind(g.task.reference.as_str().to_owned())
        .bind(g.task.reason.clone())
        .bind(g.issued_at.as_millis())
        .bind(g.expires_at.as_millis())
        .bind(g.max_expires_at.as_millis());
    Ok(bind_grant_state(q, g)
        .bind(g.account.clone())
        .bind(g.sealed_secret.clone()))
}

/// The columns a grant's state change writes, in [`GRANT_COLUMNS`]'s order (the 14th to
/// the 23rd): what ending, failing and verifying a grant change besides `sealed_secret`.
pub(super) const GRANT_STATE_COLUMNS: &str = "state, end_reason, ended_by, ended_at, \
     attempts, last_error, revoked_at, verified_at, verify_method, evidence";

/// Binds [`GRANT_STATE_COLUMNS`]. An ended grant binds no attempt count (NULL).
pub(super) fn bind_grant_state<'q>(q: AnyQuery<'q>, g: &Grant) -> AnyQuery<'q> {
    let end = g.state.end();
    let (attempts, last_error) = match &g.state {
        GrantState::Provisioning | GrantState::Active => (Some(0), None),
        GrantState::Ending {
            attempts,
            last_error,
            ..
        } => (Some(i64::from(*attempts)), last_error.clone()),
        GrantState::Ended { .. } => (None, None),
    };
    let receipt = match &g.state {
        GrantState::Ended { receipt, .. } => Some(receipt),
        _ => None,
    };
    q.bind(grant_state_column(&g.state))
        .bind(end.map(|e| e.reason.as_str()))
        .bind(end.map(|e| e.by.to_string()))
        .bind(end.map(|e| e.at.as_millis()))
        .bind(attempts)
        .bind(last_error)
        .bind(receipt.map(|r| r.revoked_at.as_millis()))
        .bind(receipt.map(|r| r.verified_at.as_millis()))
        .bind(receipt.map(|r| r.method.clone()))
        .bind(receipt.map(|r| r.evidence.clone()))
}

/// One grant by id (`$1`): introspection's read, on either read path.
pub(super) static GRANT_BY_ID: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"));

pub(super) fn grant_from_row(row: &impl Columns) -> Result<Grant> {
    let r = Reader::new(row, "id")?;
    let end = || -> Result<GrantEnd> {
        Ok(GrantEnd {
            reason: r.required(
                "end_reason",
                r.opt_text("end_reason")?
                    .as_deref()
                    .and_then(EndReason::parse),
            )?,
            by: r.required(
                "ended_by",
                r.opt_text("ended_by")?
                    .as_deref()
                    .and_then(Principal::parse),
            )?,
            at: r.required("ended_at", r.opt_time("ended_at")?)?,
        })
    };
    let state = match r.text("state")?.as_str() {
        "provisioning" => GrantState::Provisioning,
        "active" => GrantState::Active,
        "ending" => GrantState::Ending {
            end: end()?,
            attempts: u32::try_from(r.int("attempts")?).map_err(|e| r.corrupt("attempts", e))?,
            last_error: r.opt_text("last_error")?,
        },
        "ended" => GrantState::Ended {
            end: end()?,
            receipt: Receipt {
                revoked_at: r.required("revoked_at", r.opt_time("revoked_at")?)?,
                verified_at: r.required("verified_at", r.opt_time("verified_at")?)?,
                method: r.required("verify_method", r.opt_text("verify_method")?)?,
                evidence: r.required("evidence", r.opt_text("evidence")?)?,
            },
        },
        other => return Err(r.corrupt("state", format!("unknown grant state {other:?}"))),
    };
    Ok(Grant {
        id: r.parsed("id", |s| known(GrantId::parse(&s), "grant id"))?,
        request_id: r.parsed("request_id", |s| known(RequestId::parse(&s), "request id"))?,
        identity: r.parsed("identity", IdentityName::parse)?,
        entitlement: r.parsed("entitlement", EntitlementName::parse)?,
        target: r.parsed("target", TargetName::parse)?,
        audience: r.text("audience")?,
        scopes: r.json("scopes")?,
        task: r.task()?,
        issued_at: r.time("issued_at")?,
        expires_at: r.time("expires_at")?,
        max_expires_at: r.time("max_expires_at")?,
        account: r.opt_text("account")?,
        sealed_secret: r.opt_text("sealed_secret")?,
        state,
    })
}

// ---- audit ---------------------------------------------------------------------------

pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, kind, actor, identity, request_id, grant_id, task_ref, data, prev_hash, hash";

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit (seq, at, kind, actor, identity, \
     request_id, grant_id, task_ref, data, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(super) fn bind_audit(q: AnyQuery<'_>, a: AuditRecord) -> AnyQuery<'_> {
    q.bind(a.seq)
        .bind(a.at.as_millis())
        .bind(a.kind.as_str())
        .bind(a.actor)
        .bind(a.identity)
        .bind(a.request_id)
        .bind(a.grant_id)
        .bind(a.task_ref)
        .bind(a.data)
        .bind(a.prev_hash)
        .bind(a.hash)
}

/// Reads a record as stored, without checking its hash: that is the verifier's job, and
/// a tampered record must reach it unchanged.
pub(super) fn audit_from_row(row: &impl Columns) -> Result<AuditRecord> {
    let seq = row.int("seq")?;
    let r = Reader {
        row,
        id: format!("audit #{seq}"),
    };
    Ok(AuditRecord {
        seq,
        at: r.time("at")?,
        kind: r.parsed("kind", |s| known(AuditKind::parse(&s), "audit kind"))?,
        actor: r.text("actor")?,
        identity: r.opt_text("identity")?,
        request_id: r.opt_text("request_id")?,
        grant_id: r.opt_text("grant_id")?,
        task_ref: r.opt_text("task_ref")?,
        data: r.text("data")?,
        prev_hash: r.text("prev_hash")?,
        hash: r.text("hash")?,
    })
}

// ---- keys, users, tokens ---------------------------------------------------------------

pub(super) fn key_from_row(row: &impl Columns) -> Result<StoredKey> {
    let r = Reader::new(row, "kid")?;
    Ok(StoredKey {
        kid: r.text("kid")?,
        alg: r.text("alg")?,
        sealed_private: r.text("sealed_private")?,
        created_at: r.time("created_at")?,
        retire_until: r.opt_time("retire_until")?,
    })
}

/// Reads a user from columns `name`, `role`, `teams`, `targets`, `created_at` under `prefix`.
pub(super) fn user_from_row(row: &impl Columns, prefix: &str) -> Result<User> {
    let col = |c: &str| format!("{prefix}{c}");
    let r = Reader::new(row, &col("name"))?;
    Ok(User {
        name: r.parsed(&col("name"), UserName::parse)?,
        role: r.parsed(&col("role"), |s| known(Role::parse(&s), "role"))?,
        teams: r.json::<Vec<TeamName>>(&col("teams"))?,
        targets: r.json::<Vec<TargetName>>(&col("targets"))?,
        created_at: r.time(&col("created_at"))?,
    })
}

pub(super) fn token_from_row(row: &impl Columns) -> Result<StoredToken> {
    let r = Reader::new(row, "id")?;
    Ok(StoredToken {
        id: r.text("id")?,
        user: r.parsed("user_name", UserName::parse)?,
        secret_hash: r.text("secret_hash")?,
        created_at: r.time("created_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

// ---- governance ----------------------------------------------------------------------

pub(super) const IDENTITY_STATE_COLUMNS: &str = "identity, state, cause, reason, by_whom, since";

pub(super) fn identity_status_from_row(
    row: &impl Columns,
) -> Result<kairos_governance::IdentityStatus> {
    use kairos_governance::{IdentityState, SuspensionCause};
    let r = Reader::new(row, "identity")?;
    let cause = match r.opt_text("cause")? {
        None => None,
        Some(c) => Some(
            SuspensionCause::parse(&c)
                .ok_or_else(|| r.corrupt("cause", "not a valid suspension cause"))?,
        ),
    };
    Ok(kairos_governance::IdentityStatus {
        identity: r.parsed("identity", kairos_domain::IdentityName::parse)?,
        state: r.parsed("state", |s| {
            known(IdentityState::parse(&s), "identity state")
        })?,
        cause,
        reason: r.text("reason")?,
        by: r.text("by_whom")?,
        since: r.time("since")?,
    })
}

pub(super) const ALERT_COLUMNS: &str = "id, kind, subject, identity, dedupe_key, state, \
     message, detail, opened_at, last_seen_at, occurrences, updated_at, updated_by, note";

pub(super) fn alert_from_row(row: &impl Columns) -> Result<kairos_governance::Alert> {
    use kairos_governance::{AlertKind, AlertState};
    let r = Reader::new(row, "id")?;
    let identity = match r.opt_text("identity")? {
        None => None,
        Some(i) => {
            Some(kairos_domain::IdentityName::parse(i).map_err(|e| r.corrupt("identity", e))?)
        }
    };
    Ok(kairos_governance::Alert {
        id: r.text("id")?,
        kind: r.parsed("kind", |s| known(AlertKind::parse(&s), "alert kind"))?,
        subject: r.text("subject")?,
        identity,
        dedupe_key: r.text("dedupe_key")?,
        state: r.parsed("state", |s| known(AlertState::parse(&s), "alert state"))?,
        message: r.text("message")?,
        detail: r.json("detail")?,
        opened_at: r.time("opened_at")?,
        last_seen_at: r.time("last_seen_at")?,
        occurrences: u64::try_from(r.int("occurrences")?).unwrap_or(0),
        updated_at: r.time("updated_at")?,
        updated_by: r.opt_text("updated_by")?,
        note: r.opt_text("note")?,
    })
}

// ---- identity lifecycle ----------------------------------------------------------------

/// A live grant joined with its request (`requester`, `ttl_secs`).
pub(super) fn live_grant_from_row(row: &impl Columns) -> Result<crate::LiveGrant> {
    let r = Reader::new(row, "id")?;
    let ttl_secs = r.int("ttl_secs")?;
    Ok(crate::LiveGrant {
        grant: r.parsed("id", |s| known(GrantId::parse(&s), "grant id"))?,
        identity: r.parsed("identity", IdentityName::parse)?,
        entitlement: r.parsed("entitlement", EntitlementName::parse)?,
        target: r.parsed("target", TargetName::parse)?,
        task: r.task()?,
        issued_at: r.time("issued_at")?,
        expires_at: r.time("expires_at")?,
        requester: r.parsed("requester", |s| known(Principal::parse(&s), "principal"))?,
        request_ttl: u64::try_from(ttl_secs)
            .map_err(|e| r.corrupt("ttl_secs", e))
            .and_then(|s| Ttl::from_secs(s).map_err(|e| r.corrupt("ttl_secs", e)))?,
        source_ip: match r.opt_text("source_ip")? {
            None => None,
            Some(ip) => Some(ip.parse().map_err(|e| r.corrupt("source_ip", e))?),
        },
        own_review_open: r.int("own_open_reviews")? > 0,
    })
}

/// A user with `disabled_at` and the count of its unrevoked tokens (`live_tokens`).
pub(super) fn person_from_row(row: &impl Columns) -> Result<crate::Person> {
    let r = Reader::new(row, "name")?;
    Ok(crate::Person {
        name: r.parsed("name", UserName::parse)?,
        role: r.parsed("role", |s| known(Role::parse(&s), "role"))?,
        can_act: r.opt_int("disabled_at")?.is_none() && r.int("live_tokens")? > 0,
    })
}

pub(super) fn orphan_from_row(row: &impl Columns) -> Result<crate::OrphanRecord> {
    let r = Reader::new(row, "identity")?;
    Ok(crate::OrphanRecord {
        identity: r.parsed("identity", IdentityName::parse)?,
        team: r.parsed("team", TeamName::parse)?,
        detected_at: r.time("detected_at")?,
        suspended_at: r.opt_time("suspended_at")?,
    })
}
