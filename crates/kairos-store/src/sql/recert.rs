//! Recertifications, exception rotations and the notices acted on once per cycle.

use async_trait::async_trait;
use kairos_domain::{AuditDraft, ExceptionName, Timestamp};

use super::SqlStore;
use super::codec::Columns;
use super::db::RunIn;
use super::filter::{Arg, Filter};
use crate::recert::{
    Attestation, ExceptionRotation, NewRecertification, NoticeClaim, RecertPageQuery, RecertStore,
    Recertification, SubjectKind,
};
use crate::{Result, StoreError};

const COLUMNS: &str =
    "subject_kind, subject, first_seen_at, last_attested_at, attested_by, reason, due_at";

fn from_row(row: &impl Columns) -> Result<Recertification> {
    let kind = row.text("subject_kind")?;
    let subject = row.text("subject")?;
    let kind = SubjectKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
        id: format!("recertification {subject}"),
        problem: format!("unknown subject kind {kind:?}"),
    })?;
    Ok(Recertification {
        kind,
        subject,
        first_seen_at: Timestamp::from_millis(row.int("first_seen_at")?),
        last_attested_at: row.opt_int("last_attested_at")?.map(Timestamp::from_millis),
        attested_by: row.opt_text("attested_by")?,
        reason: row.opt_text("reason")?,
        due_at: Timestamp::from_millis(row.int("due_at")?),
    })
}

fn rotation_from_row(row: &impl Columns) -> Result<ExceptionRotation> {
    let name = row.text("exception")?;
    let exception = ExceptionName::parse(name.clone()).map_err(|e| StoreError::Corrupt {
        id: format!("exception rotation {name}"),
        problem: e.to_string(),
    })?;
    Ok(ExceptionRotation {
        exception,
        last_rotated_at: Timestamp::from_millis(row.int("last_rotated_at")?),
        rotated_by: row.text("rotated_by")?,
        note: row.opt_text("note")?,
    })
}

#[async_trait]
impl RecertStore for SqlStore {
    async fn add_recertifications(
        &self,
        subjects: &[NewRecertification],
        now: Timestamp,
    ) -> Result<u64> {
        if subjects.is_empty() {
            return Ok(0);
        }
        let subjects = subjects.to_vec();
        self.write(move |tx, _| {
            Box::pin(async move {
                let mut added = 0;
                for s in subjects {
                    added += sqlx::query(
                        "INSERT INTO recertifications (subject_kind, subject, first_seen_at, due_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (subject_kind, subject) DO NOTHING",
                    )
                    .bind(s.kind.as_str())
                    .bind(s.subject)
                    .bind(now.as_millis())
                    .bind(s.due_at.as_millis())
                    .execute_in(&mut *tx)
                    .await?;
                }
                Ok(added)
            })
        })
        .await
    }

    async fn list_recertifications(&self) -> Result<Vec<Recertification>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recertifications ORDER BY subject_kind, subject"
        ))
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn recertification_page(&self, query: &RecertPageQuery) -> Result<Vec<Recertification>> {
        let mut f = Filter::default();
        f.text("subject_kind =", query.kind.map(SubjectKind::as_str))
            .int("due_at >", query.due_after.map(Timestamp::as_millis))
            .int("due_at <=", query.due_until.map(Timestamp::as_millis));
        if let Some((due, kind, subject)) = &query.after {
            f.row_after(
                "(due_at, subject_kind, subject)",
                vec![
                    Arg::Int(due.as_millis()),
                    Arg::Text(kind.as_str().to_owned()),
                    Arg::Text(subject.clone()),
                ],
            );
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM recertifications{}",
            f.tail("due_at, subject_kind, subject", query.limit)
        );
        let rows = f.bind(sqlx::query(&sql)).fetch_all(&self.reads).await?;
        rows.iter().map(from_row).collect()
    }

    async fn get_recertification(
        &self,
        kind: SubjectKind,
        subject: &str,
    ) -> Result<Option<Recertification>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recertifications WHERE subject_kind = $1 AND subject = $2"
        ))
        .bind(kind.as_str())
        .bind(subject)
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn move_recert_due(&self, due: &[(SubjectKind, String, Timestamp)]) -> Result<u64> {
        if due.is_empty() {
            return Ok(0);
        }
        let due = due.to_vec();
        self.write(move |tx, _| {
            Box::pin(async move {
                let mut moved = 0;
                for (kind, subject, at) in due {
                    moved += sqlx::query(
                        "UPDATE recertifications SET due_at = $1 \
                         WHERE subject_kind = $2 AND subject = $3 AND due_at <> $1",
                    )
                    .bind(at.as_millis())
                    .bind(kind.as_str())
                    .bind(subject)
                    .execute_in(&mut *tx)
                    .await?;
                }
                Ok(moved)
            })
        })
        .await
    }

    async fn attest(
        &self,
        attestation: &Attestation,
        audit: AuditDraft,
    ) -> Result<Recertification> {
        let a = attestation.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO recertifications (subject_kind, subject, first_seen_at, \
                     last_attested_at, attested_by, reason, due_at) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6) \
                     ON CONFLICT (subject_kind, subject) DO UPDATE SET \
                     last_attested_at = excluded.last_attested_at, \
                     attested_by = excluded.attested_by, reason = excluded.reason, \
                     due_at = excluded.due_at",
                )
                .bind(a.kind.as_str())
                .bind(a.subject.clone())
                .bind(a.at.as_millis())
                .bind(a.by.clone())
                .bind(a.reason.clone())
                .bind(a.due_at.as_millis())
                .execute_in(&mut *tx)
                .await?;
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM recertifications \
                     WHERE subject_kind = $1 AND subject = $2"
                ))
                .bind(a.kind.as_str())
                .bind(a.subject.clone())
                .fetch_one_in(&mut *tx)
                .await?;
                cx.audit(vec![audit], a.at);
                from_row(&row)
            })
        })
        .await
    }

    async fn claim_recert_notice(
        &self,
        claim: &NoticeClaim,
        now: Timestamp,
        audit: Vec<AuditDraft>,
        alert: Option<crate::AlertWrite>,
    ) -> Result<bool> {
        let c = claim.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO recert_notices (subject_kind, subject, notice, cycle_at, noticed_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (subject_kind, subject, notice, cycle_at) DO NOTHING",
                )
                .bind(c.kind.as_str())
                .bind(c.subject)
                .bind(c.notice.as_str())
                .bind(c.cycle_at.as_millis())
                .bind(now.as_millis())
                .execute_in(&mut *tx)
                .await?;
                if inserted == 1 {
                    cx.audit(audit, now);
                    super::governance::raise_alerts_in(tx, &cx, alert).await?;
                }
                Ok(inserted == 1)
            })
        })
        .await
    }

    async fn recert_notice_claimed(&self, claim: &NoticeClaim) -> Result<bool> {
        let row = sqlx::query(
            "SELECT noticed_at FROM recert_notices WHERE subject_kind = $1 AND subject = $2 \
             AND notice = $3 AND cycle_at = $4",
        )
        .bind(claim.kind.as_str())
        .bind(claim.subject.clone())
        .bind(claim.notice.as_str())
        .bind(claim.cycle_at.as_millis())
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.is_some())
    }

    async fn record_rotation(&self, rotation: &ExceptionRotation, audit: AuditDraft) -> Result<()> {
        let r = rotation.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO exception_rotations (exception, last_rotated_at, rotated_by, note) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (exception) DO UPDATE SET \
                     last_rotated_at = excluded.last_rotated_at, \
                     rotated_by = excluded.rotated_by, note = excluded.note",
                )
                .bind(r.exception.as_str().to_owned())
                .bind(r.last_rotated_at.as_millis())
                .bind(r.rotated_by)
                .bind(r.note)
                .execute_in(&mut *tx)
                .await?;
                cx.audit(vec![audit], r.last_rotated_at);
                Ok(())
            })
        })
        .await
    }

    async fn exception_rotations(&self) -> Result<Vec<ExceptionRotation>> {
        let rows = sqlx::query(
            "SELECT exception, last_rotated_at, rotated_by, note FROM exception_rotations \
             ORDER BY exception",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(rotation_from_row).collect()
    }
}
