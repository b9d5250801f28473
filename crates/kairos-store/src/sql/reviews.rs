//! After-action reviews ([`ReviewStore`] on SQLite and PostgreSQL): rows, reads, filing
//! and the once-only escalation of overdue reviews.

use async_trait::async_trait;
use kairos_domain::{
    AuditDraft, EntitlementName, Filing, Grant, GrantId, IdentityName, Principal, Request, Review,
    ReviewId, ReviewState, TaskRef, Timestamp, UserName,
};

use super::codec::{AnyQuery, Columns};
use super::db::{Db, RunIn};
use super::filter::Filter;
use super::writer::Ctx;
use super::{SqlStore, conflict, count, requests};
use crate::{
    AlertWrite, EscalationAlert, EscalationAudit, Result, ReviewFilter, ReviewStateFilter,
    ReviewStore, ReviewUpdate, StoreError,
};

const REVIEW_COLUMNS: &str = "id, grant_id, request_id, identity, entitlement, requester, \
     task_ref, opened_at, due_at, escalated_at, state, filed_by, filed_at, summary";

/// `INSERT` with every column of [`REVIEW_COLUMNS`] as `$1…$14`.
const INSERT_REVIEW: &str = "INSERT INTO reviews (id, grant_id, request_id, identity, \
     entitlement, requester, task_ref, opened_at, due_at, escalated_at, state, filed_by, \
     filed_at, summary) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// What may change in a review: its escalation and its filing (`$1` is the id).
const UPDATE_REVIEW: &str = "UPDATE reviews SET escalated_at = $2, state = $3, filed_by = $4, \
     filed_at = $5, summary = $6 WHERE id = $1";

fn filing(r: &Review) -> Option<&Filing> {
    match &r.state {
        ReviewState::Open => None,
        ReviewState::Filed(f) => Some(f),
    }
}

fn bind_insert<'q>(q: AnyQuery<'q>, r: &Review) -> AnyQuery<'q> {
    let f = filing(r);
    q.bind(r.id.as_str().to_owned())
        .bind(r.grant_id.as_str().to_owned())
        .bind(r.request_id.as_str().to_owned())
        .bind(r.identity.as_str().to_owned())
        .bind(r.entitlement.as_str().to_owned())
        .bind(r.requester.to_string())
        .bind(r.task_ref.as_str().to_owned())
        .bind(r.opened_at.as_millis())
        .bind(r.due_at.as_millis())
        .bind(r.escalated_at.map(Timestamp::as_millis))
        .bind(r.state.as_str())
        .bind(f.map(|f| f.by.as_str().to_owned()))
        .bind(f.map(|f| f.at.as_millis()))
        .bind(f.map(|f| f.summary.clone()))
}

fn bind_update<'q>(q: AnyQuery<'q>, id: &ReviewId, r: &Review) -> AnyQuery<'q> {
    let f = filing(r);
    q.bind(id.as_str().to_owned())
        .bind(r.escalated_at.map(Timestamp::as_millis))
        .bind(r.state.as_str())
        .bind(f.map(|f| f.by.as_str().to_owned()))
        .bind(f.map(|f| f.at.as_millis()))
        .bind(f.map(|f| f.summary.clone()))
}

fn corrupt(id: &str, column: &str, problem: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        problem: format!("column {column}: {problem}"),
    }
}

/// A column parsed by a parser that knows only its own shape (`None` for anything else).
fn known<T>(id: &str, column: &str, what: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| corrupt(id, column, format!("not a valid {what}")))
}

fn review_from_row(row: &impl Columns) -> Result<Review> {
    let id_text = row.text("id")?;
    let at = id_text.as_str();
    let id = known(at, "id", "review id", ReviewId::parse(at))?;
    let grant_id = known(
        at,
        "grant_id",
        "grant id",
        GrantId::parse(&row.text("grant_id")?),
    )?;
    let request_id = known(
        at,
        "request_id",
        "request id",
        kairos_domain::RequestId::parse(&row.text("request_id")?),
    )?;
    let identity =
        IdentityName::parse(row.text("identity")?).map_err(|e| corrupt(at, "identity", e))?;
    let entitlement = EntitlementName::parse(row.text("entitlement")?)
        .map_err(|e| corrupt(at, "entitlement", e))?;
    let requester = known(
        at,
        "requester",
        "principal",
        Principal::parse(&row.text("requester")?),
    )?;
    let task_ref = TaskRef::parse(row.text("task_ref")?).map_err(|e| corrupt(at, "task_ref", e))?;
    let filed = |column: &str| corrupt(at, column, "is empty but the review is filed");
    let state = match row.text("state")?.as_str() {
        "open" => ReviewState::Open,
        "filed" => {
            let by = row.opt_text("filed_by")?.ok_or_else(|| filed("filed_by"))?;
            ReviewState::Filed(Filing {
                by: UserName::parse(by).map_err(|e| corrupt(at, "filed_by", e))?,
                at: Timestamp::from_millis(
                    row.opt_int("filed_at")?.ok_or_else(|| filed("filed_at"))?,
                ),
                summary: row.opt_text("summary")?.ok_or_else(|| filed("summary"))?,
            })
        }
        other => return Err(corrupt(at, "state", format!("unknown state {other:?}"))),
    };
    Ok(Review {
        id,
        grant_id,
        request_id,
        identity,
        entitlement,
        requester,
        task_ref,
        opened_at: Timestamp::from_millis(row.int("opened_at")?),
        due_at: Timestamp::from_millis(row.int("due_at")?),
        escalated_at: row.opt_int("escalated_at")?.map(Timestamp::from_millis),
        state,
    })
}

/// Writes a new review in the caller's transaction (after its grant).
pub(super) async fn insert_in(tx: &mut Db, review: &Review) -> Result<()> {
    bind_insert(sqlx::query(INSERT_REVIEW), review)
        .execute_in(tx)
        .await
        .map_err(|e| {
            conflict(e, || {
                format!(
                    "grant {} already has an after-action review (or review {} exists)",
                    review.grant_id, review.id
                )
            })
        })?;
    Ok(())
}

/// Open reviews due at `$1` or before that have not escalated, oldest due first, at most
/// `$2`. Reads only the partial index of open reviews.
fn overdue_unescalated(backend: super::Backend) -> String {
    format!(
        "SELECT {REVIEW_COLUMNS} FROM reviews \
         WHERE state = 'open' AND due_at <= $1 AND escalated_at IS NULL \
         ORDER BY due_at, id LIMIT $2{}",
        backend.skip_locked_clause()
    )
}

async fn escalate_in(
    tx: &mut Db,
    cx: &Ctx,
    now: Timestamp,
    limit: u32,
    audit: &EscalationAudit,
    alert: Option<&EscalationAlert>,
) -> Result<Vec<Review>> {
    let rows = sqlx::query(&overdue_unescalated(cx.backend))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all_in(&mut *tx)
        .await?;
    let mut escalated = Vec::with_capacity(rows.len());
    let mut drafts = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut review = review_from_row(row)?;
        // Conditional: a review another writer escalated (or filed) since the read is
        // left alone, so each escalates once whatever runs at the same time.
        let changed = sqlx::query(
            "UPDATE reviews SET escalated_at = $2 \
             WHERE id = $1 AND state = 'open' AND escalated_at IS NULL",
        )
        .bind(review.id.as_str().to_owned())
        .bind(now.as_millis())
        .execute_in(&mut *tx)
        .await?;
        if changed != 1 {
            continue;
        }
        review.escalated_at = Some(now);
        drafts.push(audit(&review));
        escalated.push(review);
    }
    cx.audit(drafts, now);
    if let Some(alert) = alert {
        super::governance::raise_alerts_in(tx, cx, escalated.iter().map(alert)).await?;
    }
    Ok(escalated)
}

#[async_trait]
impl ReviewStore for SqlStore {
    async fn insert_request_with_review(
        &self,
        request: &Request,
        grant: &Grant,
        review: &Review,
        audit: Vec<AuditDraft>,
        alert: Option<AlertWrite>,
    ) -> Result<()> {
        let (request, grant, review) = (request.clone(), grant.clone(), review.clone());
        self.write(move |tx, cx| {
            Box::pin(async move {
                requests::insert_one(tx, &request, Some(&grant)).await?;
                insert_in(tx, &review).await?;
                cx.audit(audit, request.created_at);
                super::governance::raise_alerts_in(tx, &cx, alert).await?;
                Ok(())
            })
        })
        .await
    }

    async fn get_review(&self, id: &ReviewId) -> Result<Option<Review>> {
        let row = sqlx::query(&format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(review_from_row).transpose()
    }

    async fn review_of_grant(&self, grant: &GrantId) -> Result<Option<Review>> {
        let row = sqlx::query(&format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews WHERE grant_id = $1"
        ))
        .bind(grant.as_str())
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(review_from_row).transpose()
    }

    async fn list_reviews(&self, f: &ReviewFilter) -> Result<Vec<Review>> {
        let mut filter = Filter::default();
        match f.state {
            None => {}
            Some(ReviewStateFilter::Open) => {
                filter.text("state =", Some("open"));
            }
            Some(ReviewStateFilter::Overdue { now }) => {
                filter
                    .text("state =", Some("open"))
                    .int("due_at <=", Some(now.as_millis()));
            }
            Some(ReviewStateFilter::Filed) => {
                filter.text("state =", Some("filed"));
            }
        }
        filter.text("identity =", f.identity.as_ref());
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews{}",
            filter.tail("opened_at DESC, id DESC", f.limit)
        );
        let rows = filter
            .bind(sqlx::query(&sql))
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(review_from_row).collect()
    }

    async fn count_open_reviews(&self, identity: &IdentityName) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reviews WHERE state = 'open' AND identity = $1",
        )
        .bind(identity.as_str())
        .fetch_one(&self.reads)
        .await?;
        Ok(count(n))
    }

    async fn update_review(&self, id: &ReviewId, update: ReviewUpdate) -> Result<Review> {
        let id = id.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1{}",
                    cx.backend.lock_clause()
                ))
                .bind(id.as_str().to_owned())
                .fetch_optional_in(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("review {id}")))?;
                let mut review = review_from_row(&row)?;
                let drafts = update(&mut review)?;
                // Addressed by the id it was loaded with; the closure cannot move it.
                bind_update(sqlx::query(UPDATE_REVIEW), &id, &review)
                    .execute_in(&mut *tx)
                    .await?;
                cx.audit(drafts, cx.clock.now());
                review.id = id;
                Ok(review)
            })
        })
        .await
    }

    async fn escalate_overdue_reviews(
        &self,
        now: Timestamp,
        limit: u32,
        audit: EscalationAudit,
        alert: Option<EscalationAlert>,
    ) -> Result<Vec<Review>> {
        // A read decides; the write (a transaction) happens only when something is due.
        let due = sqlx::query(
            "SELECT id FROM reviews \
             WHERE state = 'open' AND due_at <= $1 AND escalated_at IS NULL LIMIT 1",
        )
        .bind(now.as_millis())
        .fetch_optional(&self.reads)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        self.write(move |tx, cx| {
            Box::pin(async move { escalate_in(tx, &cx, now, limit, &audit, alert.as_ref()).await })
        })
        .await
    }
}
