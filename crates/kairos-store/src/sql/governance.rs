//! Identity states and alerts (see [`crate::GovernanceStore`]).

use kairos_domain::{AuditDraft, Grant, IdentityName, Timestamp};
use kairos_governance::{Alert, AlertDraft, AlertKind, AlertState, IdentityState, IdentityStatus};
use sqlx::Row;

use super::codec::{
    ALERT_COLUMNS, Columns, IDENTITY_STATE_COLUMNS, alert_from_row, identity_status_from_row,
};
use super::db::{Db, RunIn};
use super::filter::Filter;
use super::writer::Ctx;
use super::{SqlStore, grants};
use crate::{AlertFilter, AlertWrite, EndSelector, Raised, Result, StateChange, StoreError};

pub(super) async fn identity_states(store: &SqlStore) -> Result<Vec<IdentityStatus>> {
    let rows = sqlx::query(&format!(
        "SELECT {IDENTITY_STATE_COLUMNS} FROM identity_states ORDER BY identity"
    ))
    .fetch_all(&store.reads)
    .await?;
    rows.iter().map(identity_status_from_row).collect()
}

pub(super) async fn identity_states_of(
    store: &SqlStore,
    identities: &[IdentityName],
) -> Result<Vec<IdentityStatus>> {
    let keys: Vec<&str> = identities.iter().map(IdentityName::as_str).collect();
    let select = format!("SELECT {IDENTITY_STATE_COLUMNS} FROM identity_states WHERE");
    let rows =
        super::bulk::rows_keyed(&store.reads, store.backend, &select, "identity", &keys).await?;
    let mut states = rows
        .iter()
        .map(identity_status_from_row)
        .collect::<Result<Vec<_>>>()?;
    states.sort_by(|a, b| a.identity.cmp(&b.identity));
    Ok(states)
}

pub(super) async fn identity_state(
    store: &SqlStore,
    identity: &IdentityName,
) -> Result<Option<IdentityStatus>> {
    let row = sqlx::query(&format!(
        "SELECT {IDENTITY_STATE_COLUMNS} FROM identity_states WHERE identity = $1"
    ))
    .bind(identity.as_str())
    .fetch_optional(&store.reads)
    .await?;
    row.as_ref().map(identity_status_from_row).transpose()
}

pub(super) async fn change_identity_state(
    store: &SqlStore,
    change: StateChange,
) -> Result<Option<Vec<Grant>>> {
    store
        .write(move |tx, cx| {
            Box::pin(async move { change_identity_state_in(tx, &cx, change).await })
        })
        .await
}

async fn change_identity_state_in(
    tx: &mut Db,
    cx: &Ctx,
    change: StateChange,
) -> Result<Option<Vec<Grant>>> {
    let StateChange {
        to,
        from,
        end,
        audit,
        alert,
    } = change;
    let current = sqlx::query(&format!(
        "SELECT state FROM identity_states WHERE identity = $1{}",
        cx.backend.lock_clause()
    ))
    .bind(to.identity.as_str())
    .fetch_optional_in(&mut *tx)
    .await?;
    let state = match current {
        None => IdentityState::Active,
        Some(row) => {
            let s = row.text("state")?;
            IdentityState::parse(&s).ok_or_else(|| StoreError::Corrupt {
                id: to.identity.to_string(),
                problem: format!("column state: {s:?} is not a valid identity state"),
            })?
        }
    };
    if !from.contains(&state) {
        return Ok(None);
    }
    // The upsert also decides between replicas inserting the first row at once: one of
    // them waits for the other's commit and then updates it (the precondition read above
    // cannot lock a row that does not exist yet), so a conflicting change is caught by
    // comparing the state it finds, which the `WHERE` does.
    let from_list = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let written = sqlx::query(&format!(
        "INSERT INTO identity_states (identity, state, cause, reason, by_whom, since) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (identity) DO UPDATE SET state = excluded.state, cause = excluded.cause, \
         reason = excluded.reason, by_whom = excluded.by_whom, since = excluded.since \
         WHERE identity_states.state IN ({from_list})"
    ))
    .bind(to.identity.as_str())
    .bind(to.state.as_str())
    .bind(to.cause.map(|c| c.as_str()))
    .bind(to.reason.clone())
    .bind(to.by.clone())
    .bind(to.since.as_millis())
    .execute_in(&mut *tx)
    .await?;
    if written != 1 {
        return Ok(None);
    }
    let ended = match &end {
        Some(end) => {
            grants::end_in(tx, cx, &EndSelector::Identity(to.identity.clone()), end).await?
        }
        None => Vec::new(),
    };
    cx.audit(audit, to.since);
    raise_alerts_in(tx, cx, alert.map(|a| a(&ended))).await?;
    Ok(Some(ended))
}

pub(super) async fn raise_alert(
    store: &SqlStore,
    id: &str,
    draft: &AlertDraft,
    now: Timestamp,
    audit: AuditDraft,
) -> Result<Raised> {
    let (id, draft) = (id.to_owned(), draft.clone());
    store
        .write(move |tx, cx| {
            Box::pin(async move { raise_alert_in(tx, &cx, &id, &draft, now, audit).await })
        })
        .await
}

/// Raises each alert in the transaction `tx` (after the event's own audit records).
pub(super) async fn raise_alerts_in(
    tx: &mut Db,
    cx: &Ctx,
    alerts: impl IntoIterator<Item = AlertWrite>,
) -> Result<Vec<Raised>> {
    let mut raised = Vec::new();
    for a in alerts {
        raised.push(raise_alert_in(tx, cx, &a.id, &a.draft, a.at, a.audit).await?);
    }
    Ok(raised)
}

async fn raise_alert_in(
    tx: &mut Db,
    cx: &Ctx,
    id: &str,
    draft: &AlertDraft,
    now: Timestamp,
    audit: AuditDraft,
) -> Result<Raised> {
    // One statement, so that replicas raising the same alert at once neither both insert
    // (the partial unique index would refuse the second) nor both count it as new: the
    // row that comes back is ours only if it was inserted.
    let row = sqlx::query(&format!(
        "INSERT INTO alerts ({ALERT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, 1, $10, NULL, NULL) \
         ON CONFLICT (dedupe_key) WHERE state <> 'resolved' \
         DO UPDATE SET occurrences = alerts.occurrences + 1, last_seen_at = excluded.last_seen_at \
         RETURNING {ALERT_COLUMNS}"
    ))
    .bind(id.to_owned())
    .bind(draft.kind.as_str())
    .bind(draft.subject.clone())
    .bind(draft.identity.as_ref().map(|i| i.to_string()))
    .bind(draft.dedupe_key.clone())
    .bind(draft.message.clone())
    .bind(draft.detail.to_string())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .fetch_one_in(&mut *tx)
    .await?;
    let alert = alert_from_row(&row)?;
    if alert.id != id {
        return Ok(Raised::Repeated(alert));
    }
    cx.audit(vec![audit], now);
    Ok(Raised::Opened(alert))
}

pub(super) async fn get_alert(store: &SqlStore, id: &str) -> Result<Option<Alert>> {
    let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
        .bind(id.to_owned())
        .fetch_optional(&store.reads)
        .await?;
    row.as_ref().map(alert_from_row).transpose()
}

pub(super) async fn list_alerts(store: &SqlStore, f: &AlertFilter) -> Result<Vec<Alert>> {
    let mut filter = Filter::default();
    if f.unresolved {
        filter.text("state <>", Some(AlertState::Resolved.as_str()));
    } else {
        filter.text("state =", f.state.map(AlertState::as_str));
    }
    filter
        .text("kind =", f.kind.map(AlertKind::as_str))
        .text("identity =", f.identity.as_ref());
    let tail = filter.tail("opened_at DESC, id DESC", f.limit);
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts{tail}");
    let rows = filter
        .bind(sqlx::query(&sql))
        .fetch_all(&store.reads)
        .await?;
    rows.iter().map(alert_from_row).collect()
}

pub(super) async fn update_alert(
    store: &SqlStore,
    id: &str,
    to: AlertState,
    by: &str,
    note: &str,
    now: Timestamp,
    audit: AuditDraft,
) -> Result<Alert> {
    let (id, by, note) = (id.to_owned(), by.to_owned(), note.to_owned());
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1{}",
                    cx.backend.lock_clause()
                ))
                .bind(id.clone())
                .fetch_optional_in(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::NotFound(format!("alert {id}")));
                };
                let alert = alert_from_row(&row)?;
                if !alert.state.may_become(to) {
                    return Err(StoreError::Conflict(format!(
                        "alert {id} is {} and cannot become {to}",
                        alert.state
                    )));
                }
                let row = set_state_in(tx, &id, to, &by, &note, now).await?;
                cx.audit(vec![audit], now);
                alert_from_row(&row)
            })
        })
        .await
}

async fn set_state_in(
    tx: &mut Db,
    id: &str,
    to: AlertState,
    by: &str,
    note: &str,
    now: Timestamp,
) -> Result<super::db::DbRow> {
    sqlx::query(&format!(
        "UPDATE alerts SET state = $1, updated_at = $2, updated_by = $3, note = $4 \
         WHERE id = $5 RETURNING {ALERT_COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(now.as_millis())
    .bind(by.to_owned())
    .bind(note.to_owned())
    .bind(id.to_owned())
    .fetch_one_in(&mut *tx)
    .await
}

pub(super) async fn resolve_alert_by_key(
    store: &SqlStore,
    key: &str,
    by: &str,
    note: &str,
    now: Timestamp,
    audit: AuditDraft,
) -> Result<Option<Alert>> {
    let (key, by, note) = (key.to_owned(), by.to_owned(), note.to_owned());
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT id FROM alerts WHERE dedupe_key = $1 AND state <> 'resolved'{}",
                    cx.backend.lock_clause()
                ))
                .bind(key)
                .fetch_optional_in(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let id = row.text("id")?;
                let row = set_state_in(tx, &id, AlertState::Resolved, &by, &note, now).await?;
                let alert = alert_from_row(&row)?;
                let mut audit = audit;
                if let Some(data) = audit.data.as_object_mut() {
                    data.insert("alert".into(), alert.id.clone().into());
                }
                cx.audit(vec![audit], now);
                Ok(Some(alert))
            })
        })
        .await
}

pub(super) async fn unresolved_alert_counts(store: &SqlStore) -> Result<Vec<(AlertKind, u64)>> {
    let rows = sqlx::query(
        "SELECT kind, COUNT(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&store.reads)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let n: i64 = row.try_get("n")?;
        if let Some(kind) = AlertKind::parse(&kind) {
            out.push((kind, u64::try_from(n).unwrap_or(0)));
        }
    }
    Ok(out)
}
