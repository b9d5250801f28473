//! The posture report's figures over time (see [`crate::GovernanceStore::posture_figures`]).
//!
//! Reading every grant of a 30-day window does not scale (a million grants took more than
//! a second, most of it sorting them by identity), so the figures come from three parts,
//! read in one snapshot:
//! - **folded days**: grants verified gone, folded per UTC day by [`fold`] (grant-hours
//!   per identity and day, latencies per day and bucket), which follows the audit chain's
//!   `verified` records up to a watermark;
//! - **the tail**: grants verified after the watermark, added the same way;
//! - **live grants** (active or ending), read in identity order from an index that holds
//!   every column the sum needs.

use std::collections::BTreeMap;

use kairos_domain::Timestamp;
use kairos_governance::posture::{
    DAY_MS, DayLedger, LATENCY_BUCKETS_MS, VerifiedGrant, day_of, spread_spans,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::codec::AnyQuery;
use super::db::RunIn;
use super::usage::upsert;
use super::{Backend, SqlStore, count};
use crate::Result;

/// The grants verified by the `verified` records after `after` (up to `upto`, when
/// given), each as the posture counts it.
pub(super) const VERIFIED_SINCE: &str = "SELECT g.identity, g.issued_at, g.ended_at, g.verified_at, \
     g.end_reason FROM audit a JOIN grants g ON g.id = a.grant_id \
     WHERE a.kind = 'verified' AND a.seq > $1";

/// Live grants' access within `[$4, $1)` by identity. The subquery reads only the
/// `grants_live_identity` index, in identity order, so the sum needs no sort; SQLite's
/// planner, without statistics, would take the (state, issued_at) index and sort a
/// million rows, so it is told.
pub(super) fn live_ms(backend: Backend) -> String {
    let hint = match backend {
        Backend::Sqlite => " INDEXED BY grants_live_identity",
        Backend::Postgres => "",
    };
    format!(
        "SELECT identity, CAST(SUM(CASE WHEN e > s THEN e - s ELSE 0 END) AS BIGINT) AS ms \
         FROM (SELECT identity, \
             CASE WHEN COALESCE(ended_at, expires_at) < $1 THEN COALESCE(ended_at, expires_at) ELSE $2 END AS e, \
             CASE WHEN issued_at > $3 THEN issued_at ELSE $4 END AS s \
           FROM grants{hint} WHERE state IN ('active', 'ending')) live \
         GROUP BY identity"
    )
}

/// The access within `[$4, $1)` of live grants issued before `$5` (today's midnight) per
/// (first day, last day): how many, their sum, and the sums of their starts' and ends'
/// offsets into their days, which `kairos_governance::posture::spread_spans` spreads over
/// the days between. A grant issued today lies wholly within today, so those need no
/// spreading: today gets the rest of [`live_ms`]'s total. That keeps the sort this
/// grouping needs (SQLite sorts every row it groups) to the grants older than today; the
/// scan is the covering index's, as [`live_ms`]'s is, and a 30-day window has a few
/// hundred groups at most.
pub(super) fn live_days(backend: Backend) -> String {
    let hint = match backend {
        Backend::Sqlite => " INDEXED BY grants_live_identity",
        Backend::Postgres => "",
    };
    format!(
        "SELECT s / {DAY_MS} AS first_day, e / {DAY_MS} AS last_day, COUNT(*) AS n, \
             CAST(SUM(e - s) AS BIGINT) AS ms, \
             CAST(SUM(s % {DAY_MS}) AS BIGINT) AS s_in_day, \
             CAST(SUM(e % {DAY_MS}) AS BIGINT) AS e_in_day \
         FROM (SELECT \
             CASE WHEN COALESCE(ended_at, expires_at) < $1 THEN COALESCE(ended_at, expires_at) ELSE $2 END AS e, \
             CASE WHEN issued_at > $3 THEN issued_at ELSE $4 END AS s \
           FROM grants{hint} WHERE state IN ('active', 'ending') AND issued_at < $5) live \
         WHERE e > s GROUP BY s / {DAY_MS}, e / {DAY_MS}"
    )
}

const UPSERT_GRANT_DAY: &str =
    "INSERT INTO posture_grant_days (identity, day, ms) VALUES ($1, $2, $3)";
const MERGE_GRANT_DAY: &str =
    " ON CONFLICT (identity, day) DO UPDATE SET ms = posture_grant_days.ms + excluded.ms";
const UPSERT_LATENCY_DAY: &str =
    "INSERT INTO posture_latency_days (day, bucket, n, ms) VALUES ($1, $2, $3, $4)";
const MERGE_LATENCY_DAY: &str = " ON CONFLICT (day, bucket) DO UPDATE SET \
     n = posture_latency_days.n + excluded.n, ms = posture_latency_days.ms + excluded.ms";

fn verified_grant(row: &AnyRow) -> Result<VerifiedGrant> {
    let reason: Option<String> = row.try_get("end_reason")?;
    Ok(VerifiedGrant {
        identity: row.try_get("identity")?,
        issued_at: row.try_get("issued_at")?,
        ended_at: row.try_get("ended_at")?,
        verified_at: row.try_get("verified_at")?,
        aborted: reason.as_deref() == Some("aborted"),
    })
}

async fn watermark(tx: &mut Transaction<'_, Any>) -> Result<(i64, i64)> {
    let row = sqlx::query("SELECT seq, kept_from_day FROM posture_fold WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok((row.try_get("seq")?, row.try_get("kept_from_day")?))
}

/// A read transaction that sees one snapshot for all its statements (SQLite's read
/// transactions do; PostgreSQL's default, read committed, does not).
async fn snapshot(store: &SqlStore) -> Result<Transaction<'_, Any>> {
    let mut tx = store.reads.begin().await?;
    if store.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

pub(super) async fn posture_figures(
    store: &SqlStore,
    since: Timestamp,
    now: Timestamp,
) -> Result<crate::PostureFigures> {
    let (since, now) = (since.as_millis(), now.as_millis());
    let since_day = day_of(since);
    let mut tx = snapshot(store).await?;
    let mut figures = crate::PostureFigures::default();

    // Folded days.
    let (folded, _) = watermark(&mut tx).await?;
    let rows = sqlx::query(
        "SELECT identity, CAST(SUM(ms) AS BIGINT) AS ms FROM posture_grant_days \
         WHERE day >= $1 GROUP BY identity",
    )
    .bind(since_day)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let ms: i64 = row.try_get("ms")?;
        *figures
            .grant_ms
            .entry(row.try_get("identity")?)
            .or_insert(0) += ms;
    }
    let rows = sqlx::query(
        "SELECT day, CAST(SUM(ms) AS BIGINT) AS ms FROM posture_grant_days \
         WHERE day >= $1 GROUP BY day",
    )
    .bind(since_day)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let ms: i64 = row.try_get("ms")?;
        *figures
            .grant_ms_by_day
            .entry(row.try_get("day")?)
            .or_insert(0) += ms;
    }
    let mut latency: BTreeMap<usize, (u64, i64)> = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT bucket, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(ms) AS BIGINT) AS ms \
         FROM posture_latency_days WHERE day >= $1 GROUP BY bucket",
    )
    .bind(since_day)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let bucket: i64 = row.try_get("bucket")?;
        let slot = latency
            .entry(usize::try_from(bucket).unwrap_or(LATENCY_BUCKETS_MS.len()))
            .or_insert((0, 0));
        slot.0 += count(row.try_get("n")?);
        slot.1 += row.try_get::<i64, _>("ms")?;
    }

    // The tail: verified after the last fold.
    let mut tail = DayLedger::default();
    for row in sqlx::query(VERIFIED_SINCE)
        .bind(folded)
        .fetch_all(&mut *tx)
        .await?
    {
        // The window starts at midnight: leaving out the days before it clips each
        // grant's access to the window, as the folded days are.
        tail.add(&verified_grant(&row)?, since_day);
    }
    for ((identity, day), ms) in tail.grant_ms {
        *figures.grant_ms.entry(identity).or_insert(0) += ms;
        *figures.grant_ms_by_day.entry(day).or_insert(0) += ms;
    }
    for ((_, bucket), (n, ms)) in tail.latency {
        let slot = latency.entry(bucket).or_insert((0, 0));
        slot.0 += n;
        slot.1 += ms;
    }

    // Live grants.
    let mut live_total = 0;
    for row in sqlx::query(&live_ms(store.backend))
        .bind(now)
        .bind(now)
        .bind(since)
        .bind(since)
        .fetch_all(&mut *tx)
        .await?
    {
        let ms: i64 = row.try_get("ms")?;
        if ms > 0 {
            live_total += ms;
            *figures
                .grant_ms
                .entry(row.try_get("identity")?)
                .or_insert(0) += ms;
        }
    }

    let today = day_of(now);
    let mut issued_today = live_total;
    for row in sqlx::query(&live_days(store.backend))
        .bind(now)
        .bind(now)
        .bind(since)
        .bind(since)
        .bind(today * DAY_MS)
        .fetch_all(&mut *tx)
        .await?
    {
        let ms: i64 = row.try_get("ms")?;
        issued_today -= ms;
        spread_spans(
            &mut figures.grant_ms_by_day,
            row.try_get("first_day")?,
            row.try_get("last_day")?,
            row.try_get("n")?,
            row.try_get("s_in_day")?,
            row.try_get("e_in_day")?,
        );
    }
    *figures.grant_ms_by_day.entry(today).or_insert(0) += issued_today;
    figures.grant_ms_by_day.retain(|_, ms| *ms > 0);

    figures.latency_counts = (0..=LATENCY_BUCKETS_MS.len())
        .map(|b| latency.get(&b).map_or(0, |(n, _)| *n))
        .collect();
    figures.verified = latency.values().map(|(n, _)| n).sum();
    figures.verified_ms_total = latency.values().map(|(_, ms)| ms).sum();

    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit WHERE kind = 'residue_removed' AND at >= $1 AND at < $2",
    )
    .bind(since)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    figures.residue_removed = count(row.try_get("n")?);
    tx.commit().await?;
    Ok(figures)
}

fn bind_grant_day<'q>(q: AnyQuery<'q>, row: &((String, i64), i64)) -> AnyQuery<'q> {
    let ((identity, day), ms) = row;
    q.bind(identity.clone()).bind(*day).bind(*ms)
}

fn bind_latency_day<'q>(q: AnyQuery<'q>, row: &((i64, usize), (u64, i64))) -> AnyQuery<'q> {
    let ((day, bucket), (n, ms)) = row;
    q.bind(*day)
        .bind(i64::try_from(*bucket).unwrap_or(i64::MAX))
        .bind(i64::try_from(*n).unwrap_or(i64::MAX))
        .bind(*ms)
}

/// Folds the grants verified by the next audit records (at most `span` sequence numbers
/// past the watermark) into the per-day rows, leaving out days before `keep_from_day`
/// (and deleting them once a day has passed). The watermark moves by compare-and-set in
/// the same transaction as the rows, so with several replicas each record is folded once:
/// a replica that lost the race writes nothing. Answers how many grants it folded.
pub(super) async fn fold(store: &SqlStore, keep_from: Timestamp, span: u64) -> Result<u64> {
    let keep_from_day = day_of(keep_from.as_millis());
    let mut tx = snapshot(store).await?;
    let (from, kept_from_day) = watermark(&mut tx).await?;
    let head: Option<i64> = sqlx::query("SELECT MAX(seq) AS seq FROM audit")
        .fetch_one(&mut *tx)
        .await?
        .try_get("seq")?;
    let upto = head
        .unwrap_or(0)
        .min(from.saturating_add(i64::try_from(span).unwrap_or(i64::MAX)));
    let prune = keep_from_day > kept_from_day;
    if upto <= from && !prune {
        tx.commit().await?;
        return Ok(0);
    }
    let rows = sqlx::query(&format!("{VERIFIED_SINCE} AND a.seq <= $2"))
        .bind(from)
        .bind(upto)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut ledger = DayLedger::default();
    for row in &rows {
        ledger.add(&verified_grant(row)?, keep_from_day);
    }
    let folded = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    let kept = keep_from_day.max(kept_from_day);
    store
        .write(move |conn, cx| {
            Box::pin(async move {
                let moved = sqlx::query(
                    "UPDATE posture_fold SET seq = $1, kept_from_day = $2 \
                     WHERE id = 1 AND seq = $3 AND kept_from_day = $4",
                )
                .bind(upto.max(from))
                .bind(kept)
                .bind(from)
                .bind(kept_from_day)
                .execute_in(&mut *conn)
                .await?;
                if moved == 0 {
                    return Ok(0);
                }
                let grant_days: Vec<_> = ledger.grant_ms.into_iter().collect();
                let latency_days: Vec<_> = ledger.latency.into_iter().collect();
                upsert(
                    conn,
                    cx.backend,
                    UPSERT_GRANT_DAY,
                    MERGE_GRANT_DAY,
                    3,
                    &grant_days,
                    bind_grant_day,
                )
                .await?;
                upsert(
                    conn,
                    cx.backend,
                    UPSERT_LATENCY_DAY,
                    MERGE_LATENCY_DAY,
                    4,
                    &latency_days,
                    bind_latency_day,
                )
                .await?;
                if prune {
                    for table in ["posture_grant_days", "posture_latency_days"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE day < $1"))
                            .bind(kept)
                            .execute_in(&mut *conn)
                            .await?;
                    }
                }
                Ok(folded)
            })
        })
        .await
}
