//! Many rows a statement. The writer's cost is statements, not rows: on PostgreSQL each
//! one is a round trip, on SQLite a pass through the parser's cache and the VDBE. So work
//! that touches many rows (a batch of issued grants, thousands of grants ended at once,
//! a pass of receipts) writes them with multi-row `VALUES` lists, a chunk a statement.
//!
//! The statements are prepared and cached like any other (sqlx's per-connection cache on
//! PostgreSQL, rusqlite's on SQLite, both bounded and least-recently-used). A text differs
//! only by its row count, and under steady load the same counts recur; uncached, every
//! statement cost PostgreSQL a parse and a plan and sqlx an extra round trip to describe it.
//!
//! The row templates are the single-row statements' own (`INSERT_GRANT`, …), renumbered,
//! so a column added there is added here too.

use std::collections::HashMap;

use super::db::{Db, RunIn};
use kairos_domain::{AuditRecord, Grant, GrantId, Request, Timestamp};

use super::Backend;
use super::audit::Head;
use super::codec::{
    AUDIT_COLUMNS, AnyQuery, GRANT_COLUMNS, GRANT_STATE_COLUMNS, INSERT_AUDIT, INSERT_GRANT,
    INSERT_REQUEST, REQUEST_COLUMNS, bind_audit, bind_grant, bind_grant_state, bind_request,
    grant_from_row,
};
use crate::{Result, StoreError};

/// Rows a statement: 250 rows of the widest table (grants, 25 columns) bind 6,250
/// values, well under SQLite's (32,766) and PostgreSQL's (65,535) limits.
pub(super) const CHUNK: usize = 250;

/// Fewer rows than this go in one statement as they are.
const EXACT: usize = 8;

/// `items` cut into the pieces a multi-row statement takes, in order: fewer than [`EXACT`]
/// as they are, at most [`CHUNK`] a piece, and in between the largest power of two that
/// fits (8 to 128). Each row count is a statement text of its own, and the writer's
/// statement cache holds a bounded number of texts: with every count from 1 to 250 in use
/// (the expirer ends whatever is due, so its batches take any size) the cache held few of
/// them and SQLite parsed most of those statements afresh, a tenth of the writer's time in
/// the expiry phase. Cut this way, a kind of statement has at most 13 texts (1 to 7, the
/// five powers, and [`CHUNK`]), at the cost of a few more statements for a large batch.
pub(super) fn pieces<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let n = rest.len();
        let take = match n {
            0 => return None,
            n if n < EXACT => n,
            n if n >= CHUNK => CHUNK,
            n => 1 << n.ilog2(),
        };
        let (piece, tail) = rest.split_at(take);
        rest = tail;
        Some(piece)
    })
}

/// `template` (one row, `$1…$k`) repeated `rows` times, numbered on from the first.
///
/// On SQLite the placeholders become plain `?`, bound in the order they appear (every
/// template numbers its placeholders in order; a test checks). SQLite keeps `$NNN` and
/// `?NNN` in a list it searches linearly — while parsing, and again for each parameter
/// when sqlx asks its name to bind it — so a statement of n of them costs O(n²): hundreds
/// of milliseconds for a few thousand. Plain `?` has no name and costs nothing.
pub(super) fn values(backend: Backend, template: &str, columns: usize, rows: usize) -> String {
    values_after(backend, template, columns, rows, 0)
}

/// As [`values`], numbered on from parameter `offset + 1`: for a second list in the same
/// statement.
pub(super) fn values_after(
    backend: Backend,
    template: &str,
    columns: usize,
    rows: usize,
    offset: usize,
) -> String {
    let mut out = String::with_capacity((template.len() + 2) * rows);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        renumber(backend, template, offset + row * columns, &mut out);
    }
    out
}

/// Copies `template`, adding `offset` to every `$n` placeholder.
fn renumber(backend: Backend, template: &str, offset: usize, out: &mut String) {
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some(&(j, d)) = chars.peek() {
            if !d.is_ascii_digit() {
                break;
            }
            end = j + 1;
            chars.next();
        }
        match template[start..end].parse::<usize>() {
            Ok(n) => out.push_str(&backend.placeholder(n + offset)),
            Err(_) => {
                out.push('$');
                out.push_str(&template[start..end]);
            }
        }
    }
}

/// `$first, …` (`?, …` on SQLite; see [`values`]): `n` placeholders.
pub(super) fn list(backend: Backend, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| backend.placeholder(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of `select` (a `SELECT … FROM … WHERE` head, without its condition) whose
/// text column `column` is one of `keys`, a chunk of [`CHUNK`] keys a statement, in no
/// particular order: reads for a page of names instead of a whole table.
pub(super) async fn rows_keyed(
    reads: &sqlx::AnyPool,
    backend: Backend,
    select: &str,
    column: &str,
    keys: &[&str],
) -> Result<Vec<sqlx::any::AnyRow>> {
    let mut rows = Vec::new();
    for chunk in pieces(keys) {
        let sql = format!("{select} {column} IN ({})", list(backend, 1, chunk.len()));
        let mut q = sqlx::query(&sql);
        for key in chunk {
            q = q.bind((*key).to_owned());
        }
        rows.extend(q.fetch_all(reads).await?);
    }
    Ok(rows)
}

/// Splits a single-row `INSERT … VALUES (…)` into its head and its row template.
pub(super) fn split_insert(insert: &'static str) -> (&'static str, &'static str) {
    insert.split_once(" VALUES ").unwrap_or((insert, ""))
}

fn column_count(columns: &str) -> usize {
    columns.split(',').count()
}

/// Inserts `rows` with the single-row statement `insert` (`INSERT … VALUES ($1, …)`,
/// `columns` wide), a chunk a statement; `bind` binds one row's values in order. A
/// conflict fails the whole statement.
pub(super) async fn insert_rows<T: Sync>(
    conn: &mut Db,
    backend: Backend,
    insert: &'static str,
    columns: &str,
    rows: &[T],
    bind: for<'q> fn(AnyQuery<'q>, &T) -> Result<AnyQuery<'q>>,
) -> Result<()> {
    let (head, row) = split_insert(insert);
    let columns = column_count(columns);
    for chunk in pieces(rows) {
        let sql = format!(
            "{head} VALUES {}",
            values(backend, row, columns, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = bind(q, r)?;
        }
        q.execute_in(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts requests, a chunk a statement. A duplicate id fails the whole statement.
pub(super) async fn insert_requests(
    conn: &mut Db,
    backend: Backend,
    requests: &[&Request],
) -> Result<()> {
    insert_rows(
        conn,
        backend,
        INSERT_REQUEST,
        REQUEST_COLUMNS,
        requests,
        |q, r: &&Request| bind_request(q, &r.id, r),
    )
    .await
}

/// Inserts new requests and their grants. On PostgreSQL, when both fit in a chunk, in one
/// statement (the requests in a data-modifying `WITH`, which the grants' foreign key sees):
/// one round trip instead of two. A duplicate id fails the whole statement.
pub(super) async fn insert_requests_and_grants(
    conn: &mut Db,
    backend: Backend,
    requests: &[&Request],
    grants: &[&Grant],
) -> Result<()> {
    if backend != Backend::Postgres
        || grants.is_empty()
        || requests.len() > CHUNK
        || grants.len() > CHUNK
    {
        insert_requests(conn, backend, requests).await?;
        return insert_grants(conn, backend, grants).await;
    }
    let (request_head, request_row) = split_insert(INSERT_REQUEST);
    let (grant_head, grant_row) = split_insert(INSERT_GRANT);
    let request_columns = column_count(REQUEST_COLUMNS);
    let sql = format!(
        "WITH new_requests AS ({request_head} VALUES {}) {grant_head} VALUES {}",
        values(backend, request_row, request_columns, requests.len()),
        values_after(
            backend,
            grant_row,
            column_count(GRANT_COLUMNS),
            grants.len(),
            request_columns * requests.len()
        ),
    );
    let mut q = sqlx::query(&sql);
    for r in requests {
        q = bind_request(q, &r.id, r)?;
    }
    for g in grants {
        q = bind_grant(q, &g.id, g)?;
    }
    q.execute_in(&mut *conn).await?;
    Ok(())
}

/// PostgreSQL: new requests, their grants and their audit records (sealed after the
/// chain's head `known`, ending at `head`) in **one** statement. Outside a transaction it
/// commits itself: one round trip instead of four (begin, insert, seal, commit). Inside
/// one (the seal of the writer's usual path, with no requests or grants) it is the head's
/// compare-and-set and the records' insert in one round trip. Every row goes in only if
/// the head row was still `known`, and the head moves with them; `Ok(false)`, with nothing
/// written, when it had moved. A duplicate id fails the whole statement, which also writes
/// nothing. Each list must fit in a chunk, and there must be records (their count is how
/// success is read).
pub(super) async fn insert_sealed(
    conn: &mut Db,
    requests: &[&Request],
    grants: &[&Grant],
    records: Vec<AuditRecord>,
    head: &Head,
    known: &Head,
) -> Result<bool> {
    let count = records.len() as u64;
    let backend = Backend::Postgres;
    let (request_head, request_row) = split_insert(INSERT_REQUEST);
    let (grant_head, grant_row) = split_insert(INSERT_GRANT);
    let (audit_head, audit_row) = split_insert(INSERT_AUDIT);
    let (request_columns, grant_columns) =
        (column_count(REQUEST_COLUMNS), column_count(GRANT_COLUMNS));
    let swapped = "WHERE EXISTS (SELECT 1 FROM swapped)";
    let mut offset = 4;
    let mut sql = "WITH swapped AS (UPDATE audit_head SET seq = $1, hash = $2 \
         WHERE id = 1 AND seq = $3 AND hash = $4 RETURNING 1) "
        .to_owned();
    if !requests.is_empty() {
        sql.push_str(&format!(
            ", new_requests AS ({request_head} SELECT * FROM (VALUES {}) AS v {swapped}) ",
            values_after(
                backend,
                request_row,
                request_columns,
                requests.len(),
                offset
            )
        ));
        offset += request_columns * requests.len();
    }
    if !grants.is_empty() {
        sql.push_str(&format!(
            ", new_grants AS ({grant_head} SELECT * FROM (VALUES {}) AS v {swapped}) ",
            values_after(backend, grant_row, grant_columns, grants.len(), offset)
        ));
        offset += grant_columns * grants.len();
    }
    sql.push_str(&format!(
        "{audit_head} SELECT * FROM (VALUES {}) AS v {swapped}",
        values_after(
            backend,
            audit_row,
            column_count(AUDIT_COLUMNS),
            records.len(),
            offset
        )
    ));
    let mut q = sqlx::query(&sql)
        .bind(head.0)
        .bind(head.1.clone())
        .bind(known.0)
        .bind(known.1.clone());
    for r in requests {
        q = bind_request(q, &r.id, r)?;
    }
    for g in grants {
        q = bind_grant(q, &g.id, g)?;
    }
    for r in records {
        q = bind_audit(q, r);
    }
    Ok(q.execute_in(&mut *conn).await? == count)
}

/// Inserts grants, a chunk a statement. A duplicate id fails the whole statement.
pub(super) async fn insert_grants(
    conn: &mut Db,
    backend: Backend,
    grants: &[&Grant],
) -> Result<()> {
    insert_rows(
        conn,
        backend,
        INSERT_GRANT,
        GRANT_COLUMNS,
        grants,
        |q, g: &&Grant| bind_grant(q, &g.id, g),
    )
    .await
}

/// Writes the state of existing grants — [`GRANT_STATE_COLUMNS`] and `sealed_secret`, all
/// that ending, failing or verifying a grant changes — a chunk a statement. Only these
/// columns are set, so SQLite touches only the indexes over them (setting every column
/// rewrote every index entry of every row).
pub(super) async fn update_grant_states(
    conn: &mut Db,
    backend: Backend,
    grants: &[&Grant],
) -> Result<()> {
    let mut columns: Vec<&str> = vec!["id"];
    columns.extend(GRANT_STATE_COLUMNS.split(',').map(str::trim));
    columns.push("sealed_secret");
    update_by_id(conn, backend, grants, &columns, |q, g| {
        Ok(bind_grant_state(q.bind(g.id.as_str().to_owned()), g).bind(g.sealed_secret.clone()))
    })
    .await
}

/// Writes every column of existing grants (what a read-modify-write may change), a chunk
/// a statement. Each grant must appear once.
pub(super) async fn update_grants(
    conn: &mut Db,
    backend: Backend,
    grants: &[&Grant],
) -> Result<()> {
    let columns: Vec<&str> = GRANT_COLUMNS.split(',').map(str::trim).collect();
    update_by_id(conn, backend, grants, &columns, |q, g| {
        bind_grant(q, &g.id, g)
    })
    .await
}

/// `columns` (the id first) of existing grants, a chunk a statement: the new values go in
/// as a `VALUES` list and update their rows by id. `bind` binds one grant's `columns` in
/// order. An ended grant (no attempt count) keeps the count it had while ending.
async fn update_by_id(
    conn: &mut Db,
    backend: Backend,
    grants: &[&Grant],
    columns: &[&str],
    bind: for<'q> fn(AnyQuery<'q>, &Grant) -> Result<AnyQuery<'q>>,
) -> Result<()> {
    let row = format!("({})", list(Backend::Postgres, 1, columns.len()));
    let set = columns
        .iter()
        .filter(|c| **c != "id")
        .map(|c| match *c {
            "attempts" => "attempts = COALESCE(v.attempts, grants.attempts)".to_owned(),
            c => format!("{c} = v.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let names = columns.join(", ");
    for chunk in pieces(grants) {
        let sql = format!(
            "WITH v ({names}) AS (VALUES {}) UPDATE grants SET {set} FROM v WHERE grants.id = v.id",
            values(backend, &row, columns.len(), chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for g in chunk {
            q = bind(q, g)?;
        }
        q.execute_in(&mut *conn).await?;
    }
    Ok(())
}

/// Queues (or re-queues) revocation jobs, each unclaimed or claimed until the time it
/// carries, a chunk a statement.
pub(super) async fn enqueue(
    conn: &mut Db,
    backend: Backend,
    jobs: &[(&GrantId, Timestamp, Option<Timestamp>)],
) -> Result<()> {
    for chunk in pieces(jobs) {
        // A job queued claimed counts that claim in `attempts`, as a claim by a worker does.
        let sql = format!(
            "INSERT INTO revocations (grant_id, due_at, claimed_until, attempts) VALUES {} \
             ON CONFLICT (grant_id) DO UPDATE SET due_at = excluded.due_at, \
             claimed_until = excluded.claimed_until, \
             attempts = revocations.attempts + excluded.attempts",
            values(backend, "($1, $2, $3, $4)", 4, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (id, due_at, claimed_until) in chunk {
            q = q
                .bind(id.as_str().to_owned())
                .bind(due_at.as_millis())
                .bind(claimed_until.map(Timestamp::as_millis))
                .bind(i64::from(claimed_until.is_some()));
        }
        q.execute_in(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes the revocation jobs of these grants, a chunk a statement.
pub(super) async fn delete_jobs(conn: &mut Db, backend: Backend, ids: &[&GrantId]) -> Result<()> {
    for chunk in pieces(ids) {
        let sql = format!(
            "DELETE FROM revocations WHERE grant_id IN ({})",
            list(backend, 1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str().to_owned());
        }
        q.execute_in(&mut *conn).await?;
    }
    Ok(())
}

/// Loads grants by id under row locks (taken in id order, so two lockers never deadlock).
/// Ids with no grant are absent from the map.
pub(super) async fn lock_grants(
    conn: &mut Db,
    backend: Backend,
    ids: &[&GrantId],
) -> Result<HashMap<String, Grant>> {
    let mut sorted: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut found = HashMap::with_capacity(sorted.len());
    for chunk in pieces(&sorted) {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE id IN ({}) ORDER BY id{}",
            list(backend, 1, chunk.len()),
            backend.lock_clause()
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind((*id).to_owned());
        }
        for row in q.fetch_all_in(&mut *conn).await? {
            let grant = grant_from_row(&row)?;
            found.insert(grant.id.as_str().to_owned(), grant);
        }
    }
    Ok(found)
}

/// A grant the caller asked for that [`lock_grants`] did not find.
pub(super) fn missing(id: &GrantId) -> StoreError {
    StoreError::NotFound(format!("grant {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_every_item_in_order_with_few_sizes() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in 0..=1_000usize {
            let items: Vec<usize> = (0..n).collect();
            let cut: Vec<&[usize]> = pieces(&items).collect();
            assert_eq!(cut.concat(), items, "n = {n}");
            assert!(
                cut.iter().all(|p| !p.is_empty() && p.len() <= CHUNK),
                "n = {n}"
            );
            // A batch that fits a statement is one statement when small, a few otherwise.
            if n < EXACT {
                assert_eq!(cut.len(), usize::from(n > 0), "n = {n}");
            }
            if n <= CHUNK {
                assert!(cut.len() <= 6, "n = {n}: {} pieces", cut.len());
            }
            sizes.extend(cut.iter().map(|p| p.len()));
        }
        let expected: std::collections::BTreeSet<usize> =
            [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, CHUNK].into();
        assert_eq!(sizes, expected);
    }

    #[test]
    fn rows_are_numbered_on() {
        let pg = Backend::Postgres;
        assert_eq!(
            values(pg, "($1, COALESCE($2, 0))", 2, 3),
            "($1, COALESCE($2, 0)), ($3, COALESCE($4, 0)), ($5, COALESCE($6, 0))"
        );
        assert_eq!(values(pg, "($1, $10)", 10, 2), "($1, $10), ($11, $20)");
        assert_eq!(list(pg, 2, 3), "$2, $3, $4");
        let lite = Backend::Sqlite;
        assert_eq!(values(lite, "($1, 'a$')", 1, 2), "(?, 'a$'), (?, 'a$')");
        assert_eq!(list(lite, 1, 2), "?, ?");
    }

    /// Plain `?` on SQLite binds in order of appearance, so every template must number
    /// its placeholders 1, 2, 3, … in the order they appear.
    #[test]
    fn templates_number_placeholders_in_order() {
        for template in [
            INSERT_GRANT,
            INSERT_REQUEST,
            super::super::codec::INSERT_AUDIT,
        ] {
            let (_, row) = split_insert(template);
            let numbers: Vec<usize> = row
                .split('$')
                .skip(1)
                .map(|t| {
                    t.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(
                numbers,
                (1..=numbers.len()).collect::<Vec<_>>(),
                "{template}"
            );
        }
    }

    /// `bind_grant` binds the state columns in the middle of the row: they must sit there,
    /// in order, in `GRANT_COLUMNS` too.
    #[test]
    fn state_columns_are_a_run_of_grant_columns() {
        let all: Vec<&str> = GRANT_COLUMNS.split(',').map(str::trim).collect();
        let state: Vec<&str> = GRANT_STATE_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(all[13..23], state[..]);
        assert_eq!(all[24], "sealed_secret");
    }

    #[test]
    fn insert_templates_split() {
        let (head, row) = split_insert(INSERT_GRANT);
        assert!(head.starts_with("INSERT INTO grants ("));
        assert!(row.starts_with('(') && row.ends_with(')'));
        assert_eq!(row.matches('$').count(), column_count(GRANT_COLUMNS));
        let (_, row) = split_insert(INSERT_REQUEST);
        assert_eq!(row.matches('$').count(), column_count(REQUEST_COLUMNS));
    }
}
