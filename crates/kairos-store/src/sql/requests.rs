//! Access requests.

use super::db::{Db, RunIn};
use kairos_domain::{AuditDraft, AuditKind, Grant, Principal, Request, RequestId, Timestamp};

use super::codec::{
    INSERT_GRANT, INSERT_REQUEST, REQUEST_COLUMNS, UPDATE_REQUEST, bind_grant, bind_request,
    request_from_row,
};
use super::filter::Filter;
use super::writer::{Ctx, Insertion};
use super::{SqlStore, bulk, conflict};
use crate::{RequestFilter, RequestUpdate, Result, StoreError};

pub(super) async fn insert(
    store: &SqlStore,
    request: &Request,
    grant: Option<&Grant>,
    drafts: Vec<AuditDraft>,
) -> Result<()> {
    store
        .writer
        .insert(Insertion {
            request: request.clone(),
            grant: grant.cloned(),
            drafts,
        })
        .await
}

/// One new request and its grant (the writer's path for an insertion on its own).
pub(super) async fn insert_one(
    conn: &mut Db,
    request: &Request,
    grant: Option<&Grant>,
) -> Result<()> {
    bind_request(sqlx::query(INSERT_REQUEST), &request.id, request)?
        .execute_in(&mut *conn)
        .await
        .map_err(|e| conflict(e, || format!("request {} already exists", request.id)))?;
    if let Some(grant) = grant {
        insert_grant(conn, grant).await?;
    }
    Ok(())
}

/// Many new requests and their grants, a multi-row insert per table. Any conflict fails
/// them all (the writer then retries each with [`insert_one`]).
pub(super) async fn insert_many(
    conn: &mut Db,
    backend: super::Backend,
    rows: &[&Insertion],
) -> Result<()> {
    let requests: Vec<&Request> = rows.iter().map(|i| &i.request).collect();
    let grants: Vec<&Grant> = rows.iter().filter_map(|i| i.grant.as_ref()).collect();
    bulk::insert_requests_and_grants(conn, backend, &requests, &grants).await
}

pub(super) async fn insert_grant(conn: &mut Db, grant: &Grant) -> Result<()> {
    bind_grant(sqlx::query(INSERT_GRANT), &grant.id, grant)?
        .execute_in(conn)
        .await
        .map_err(|e| conflict(e, || format!("grant {} already exists", grant.id)))?;
    Ok(())
}

pub(super) async fn get(store: &SqlStore, id: &RequestId) -> Result<Option<Request>> {
    let row = sqlx::query(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(&store.reads)
    .await?;
    row.as_ref().map(request_from_row).transpose()
}

/// Newest first.
pub(super) async fn list(store: &SqlStore, f: &RequestFilter) -> Result<Vec<Request>> {
    let mut filter = Filter::default();
    filter
        .text("state =", f.state.map(|s| s.as_str()))
        .text("identity =", f.identity.as_ref());
    // One identity's requests come from its (identity, created_at) index in order. Without
    // one, newest first is the primary key read backwards (ids are UUIDv7, made in order):
    // no index on `created_at` to write with every request, and no sort of the whole table.
    let order = if f.identity.is_some() {
        "created_at DESC, id DESC"
    } else {
        "id DESC"
    };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests{}",
        filter.tail(order, f.limit)
    );
    let rows = filter
        .bind(sqlx::query(&sql))
        .fetch_all(&store.reads)
        .await?;
    rows.iter().map(request_from_row).collect()
}

pub(super) async fn update(
    store: &SqlStore,
    id: &RequestId,
    update: RequestUpdate,
) -> Result<Request> {
    let id = id.clone();
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1{}",
                    cx.backend.lock_clause()
                ))
                .bind(id.as_str())
                .fetch_optional_in(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("request {id}")))?;
                let mut request = request_from_row(&row)?;
                let change = update(&mut request)?;
                // The row is addressed by the id it was loaded with; the closure cannot move it.
                bind_request(sqlx::query(UPDATE_REQUEST), &id, &request)?
                    .execute_in(&mut *tx)
                    .await?;
                if let Some(grant) = &change.grant {
                    insert_grant(tx, grant).await?;
                }
                if let Some(review) = &change.review {
                    super::reviews::insert_in(tx, review).await?;
                }
                let at = cx.clock.now();
                cx.audit(change.audit, at);
                if let Some(renewal) = change.renewal {
                    super::grants::update_one(tx, &cx, renewal.grant, renewal.update, at).await?;
                }
                super::governance::raise_alerts_in(tx, &cx, change.alert).await?;
                request.id = id;
                Ok(request)
            })
        })
        .await
}

/// The oldest due pending requests, expired with one `request_expired` record each.
pub(super) async fn expire_pending(
    store: &SqlStore,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<Request>> {
    store
        .write(move |tx, cx| Box::pin(async move { expire_pending_in(tx, &cx, now, limit).await }))
        .await
}

/// Pending requests whose time to be decided is up (`$1`: now), oldest deadline first, at
/// most `$2`. Reads only the partial index of pending requests.
pub(super) fn pending_due(backend: super::Backend) -> String {
    format!(
        "SELECT {REQUEST_COLUMNS} FROM requests \
         WHERE state = 'pending' AND pending_until <= $1 \
         ORDER BY pending_until, id LIMIT $2{}",
        backend.skip_locked_clause()
    )
}

async fn expire_pending_in(
    tx: &mut Db,
    cx: &Ctx,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<Request>> {
    let rows = sqlx::query(&pending_due(cx.backend))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all_in(&mut *tx)
        .await?;
    let mut expired = Vec::with_capacity(rows.len());
    let mut drafts = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut request = request_from_row(row)?;
        request.expire(now)?;
        bind_request(sqlx::query(UPDATE_REQUEST), &request.id, &request)?
            .execute_in(&mut *tx)
            .await?;
        drafts.push(expired_audit(&request));
        expired.push(request);
    }
    cx.audit(drafts, now);
    Ok(expired)
}

/// The domain's `audit_of` has no record for an expired request yet; this is it.
fn expired_audit(r: &Request) -> AuditDraft {
    AuditDraft::new(AuditKind::RequestExpired, Principal::System("expirer"))
        .identity(&r.identity)
        .request(&r.id)
        .task_ref(&r.task.reference)
        .data(serde_json::json!({
            "entitlement": r.entitlement,
            "pending_until": r.pending_until.map(Timestamp::to_rfc3339),
            "approvals": r.approvals.len(),
        }))
}
