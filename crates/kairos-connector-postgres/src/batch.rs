//! Batched provisioning: concurrent `provision` calls on one target are taken together by
//! one worker and created in **one** transaction (one advisory lock, one round trip for all
//! the `CREATE ROLE`s, one commit), which is what lets one target issue thousands of
//! accounts a second. A batch that fails is retried one account at a time, so one bad
//! account (a template the server refuses) fails alone and its error names it.
//!
//! The role statements joined into one simple-protocol message are generated here (quoted
//! identifiers, quoted literals Kairos produced). A privilege template from the
//! configuration runs as one prepared statement (extended protocol), where the server
//! refuses a text of more than one command, until it has once succeeded that way: from
//! then on it is known to be one command, and rendering changes only the role, a quoted
//! identifier of `[a-z0-9_]`, so its renderings join the simple-protocol message too, each
//! after a line break (which ends a trailing `--` comment) and a `;`. One round trip per
//! batch instead of one per template per account. A batch that fails is retried one
//! account at a time, all templates as prepared statements again.
//!
//! Round trips: the worker keeps one connection of its own between batches (taken out of
//! the pool, so it is neither pinged when taken nor when given back), and a batch is two
//! simple-protocol messages: `BEGIN`, the advisory lock and the lookup of existing roles;
//! then the role statements, the proven templates and `COMMIT`. A batch that fails on a
//! held connection (its server may have restarted meanwhile) is tried once more on a new
//! one; any failure drops the connection, and its transaction with it.

use std::collections::HashSet;
use std::sync::Arc;

use kairos_connectors::{AccountName, ConnectorError};
use sqlx::{PgConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::connector::{Core, DDL_LOCK_KEY, execute, execute_generated, unreachable_again};
use crate::sql::quote_literal;

/// The most accounts created in one transaction.
const MAX_BATCH: usize = 256;

/// Provisioning requests waiting for the worker.
const QUEUE: usize = 4_096;

/// One account to create, prepared by `provision` (validated, rendered, verifier computed).
pub(crate) struct Provision {
    pub(crate) account: AccountName,
    /// The account as a quoted identifier.
    pub(crate) role: String,
    /// `LOGIN PASSWORD '<SCRAM verifier>' VALID UNTIL '<end>'`.
    pub(crate) credentials: String,
    /// The rendered privilege statements.
    pub(crate) grants: Vec<String>,
    /// The templates they were rendered from, in the same order.
    pub(crate) templates: Vec<String>,
    /// Whether the role existed already (a converged retry), or why it failed.
    pub(crate) reply: oneshot::Sender<Result<bool, ConnectorError>>,
}

/// Starts the worker; it stops when the connector (the last sender) is dropped.
pub(crate) fn start_provisioner(core: Arc<Core>) -> mpsc::Sender<Provision> {
    let (queue, jobs) = mpsc::channel(QUEUE);
    tokio::spawn(run(core, jobs));
    queue
}

async fn run(core: Arc<Core>, mut jobs: mpsc::Receiver<Provision>) {
    // The worker's own connection, kept between batches.
    let mut held: Option<PgConnection> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        provision_batch(&core, &mut held, batch).await;
    }
}

async fn provision_batch(core: &Core, held: &mut Option<PgConnection>, batch: Vec<Provision>) {
    if batch.len() > 1 {
        let started = std::time::Instant::now();
        match create_together(core, held, &batch).await {
            Ok(existed) => {
                tracing::trace!(target_name = %core.target, accounts = batch.len(),
                    micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "provisioned a batch");
                for job in batch {
                    let answer = Ok(existed.contains(job.account.as_str()));
                    let _ = job.reply.send(answer);
                }
                return;
            }
            // Down, or refusing Kairos: every account would get the same answer, each after
            // its own connect timeout.
            Err(e) if unreachable_again(&e).is_some() => {
                for job in batch {
                    let answer =
                        unreachable_again(&e).unwrap_or_else(|| core.failed(e.to_string()));
                    let _ = job.reply.send(Err(answer));
                }
                return;
            }
            Err(e) => {
                // The transaction rolled back whole: nothing of the batch exists. One at a
                // time, the failure lands on the account that causes it.
                tracing::debug!(target_name = %core.target, accounts = batch.len(), error = %e,
                    "batched provisioning failed; provisioning one account at a time");
            }
        }
    }
    for job in batch {
        let answer = core.provision_one(&job).await;
        let _ = job.reply.send(answer);
    }
}

/// Creates (or converges) every account of the batch in one transaction, on the held
/// connection (or a new one). Returns the accounts that existed already.
async fn create_together(
    core: &Core,
    held: &mut Option<PgConnection>,
    batch: &[Provision],
) -> Result<HashSet<String>, ConnectorError> {
    let (mut conn, reused) = match held.take() {
        Some(conn) => (conn, true),
        None => (connect(core).await?, false),
    };
    let mut created = create_on(core, &mut conn, batch).await;
    if reused && created.is_err() {
        // Its server may have restarted since the last batch (the connection then fails as
        // unreachable, or with the server's shutdown error): once more on a new connection.
        // Every step converges, so a batch half-sent before is safe to repeat.
        conn = connect(core).await?;
        created = create_on(core, &mut conn, batch).await;
    }
    // A failed batch's connection is dropped, and its open transaction with it.
    if created.is_ok() {
        *held = Some(conn);
    }
    created
}

/// A connection of the worker's own, taken out of the pool.
async fn connect(core: &Core) -> Result<PgConnection, ConnectorError> {
    let conn = core
        .pool
        .acquire()
        .await
        .map_err(|e| core.err("connecting", &e))?;
    Ok(conn.detach())
}

async fn create_on(
    core: &Core,
    conn: &mut PgConnection,
    batch: &[Provision],
) -> Result<HashSet<String>, ConnectorError> {
    let names: Vec<String> = batch
        .iter()
        .map(|j| quote_literal(j.account.as_str()))
        .collect();
    let opening = format!(
        "BEGIN;\nSELECT pg_advisory_xact_lock({DDL_LOCK_KEY});\n\
         SELECT rolname::text AS existing FROM pg_roles WHERE rolname IN ({});",
        names.join(", ")
    );
    // Without bind arguments sqlx sends the text as one simple-protocol query.
    let existed: HashSet<String> = sqlx::Executor::fetch_all(&mut *conn, opening.as_str())
        .await
        .map_err(|e| core.err("taking Kairos's DDL lock and looking up roles", &e))?
        .iter()
        // The lock's row has no `existing` column.
        .filter_map(|row| row.try_get::<String, _>("existing").ok())
        .collect();
    let mut statements = String::new();
    for job in batch {
        let verb = if existed.contains(job.account.as_str()) {
            "ALTER"
        } else {
            "CREATE"
        };
        statements.push_str(&format!(
            "{verb} ROLE {} WITH {};\n",
            job.role, job.credentials
        ));
    }
    // (template index, template, rendered) of the templates not yet proven one command.
    let mut unproven = Vec::new();
    {
        let proven = core.proven.lock().ok();
        for job in batch {
            for (i, (grant, template)) in job.grants.iter().zip(&job.templates).enumerate() {
                if proven.as_ref().is_some_and(|p| p.contains(template)) {
                    statements.push_str(grant);
                    statements.push_str("\n;\n");
                } else {
                    unproven.push((i, template, grant));
                }
            }
        }
    }
    if unproven.is_empty() {
        // The commit rides in the same message; an error before it leaves it unsent.
        statements.push_str("COMMIT;\n");
        execute_generated(conn, &statements).await.map_err(|e| {
            core.err(
                &format!("creating and committing {} roles", batch.len()),
                &e,
            )
        })?;
    } else {
        execute_generated(conn, &statements)
            .await
            .map_err(|e| core.err(&format!("creating {} roles", batch.len()), &e))?;
        for (i, _, grant) in &unproven {
            execute(conn, grant)
                .await
                .map_err(|e| core.template_error(*i, &e))?;
        }
        execute_generated(conn, "COMMIT")
            .await
            .map_err(|e| core.err(&format!("committing {} roles", batch.len()), &e))?;
    }
    if !unproven.is_empty()
        && let Ok(mut proven) = core.proven.lock()
    {
        proven.extend(unproven.into_iter().map(|(_, t, _)| t.clone()));
    }
    Ok(existed)
}
