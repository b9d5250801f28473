//! Signing keys, people and their API tokens, declarative configuration versions.

use kairos_domain::{AuditDraft, Timestamp, UserName};
use sqlx::Row;

use super::codec::Columns;
use super::db::{Db, RunIn};

use super::codec::{key_from_row, to_json, token_from_row, user_from_row};
use super::writer::Ctx;
use super::{SqlStore, audit, conflict};
use crate::{BootstrapOutcome, Result, StoreError, StoredConfig, StoredKey, StoredToken, User};

const KEY_COLUMNS: &str = "kid, alg, sealed_private, created_at, retire_until";
const USER_COLUMNS: &str = "name, role, teams, targets, created_at";

/// The current key first, then retired keys newest first.
pub(super) async fn signing_keys(store: &SqlStore) -> Result<Vec<StoredKey>> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM signing_keys \
         ORDER BY CASE WHEN retire_until IS NULL THEN 0 ELSE 1 END, created_at DESC, kid"
    ))
    .fetch_all(&store.reads)
    .await?;
    rows.iter().map(key_from_row).collect()
}

/// The unique index on the current key decides between replicas racing here.
pub(super) async fn insert_first_key(store: &SqlStore, key: &StoredKey) -> Result<bool> {
    let key = key.clone();
    store
        .write(move |conn, _| {
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, sealed_private, created_at) \
                     SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM signing_keys) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(key.kid)
                .bind(key.alg)
                .bind(key.sealed_private)
                .bind(key.created_at.as_millis())
                .execute_in(conn)
                .await?;
                Ok(inserted == 1)
            })
        })
        .await
}

pub(super) async fn rotate_key(
    store: &SqlStore,
    key: &StoredKey,
    retire_until: Timestamp,
    draft: AuditDraft,
) -> Result<()> {
    let key = key.clone();
    store
        .write(move |tx, cx| {
            Box::pin(async move { rotate_key_in(tx, &cx, &key, retire_until, draft).await })
        })
        .await
}

async fn rotate_key_in(
    tx: &mut Db,
    cx: &Ctx,
    key: &StoredKey,
    retire_until: Timestamp,
    draft: AuditDraft,
) -> Result<()> {
    sqlx::query("UPDATE signing_keys SET retire_until = $1 WHERE retire_until IS NULL")
        .bind(retire_until.as_millis())
        .execute_in(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, sealed_private, created_at, retire_until) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(key.kid.clone())
    .bind(key.alg.clone())
    .bind(key.sealed_private.clone())
    .bind(key.created_at.as_millis())
    .execute_in(&mut *tx)
    .await
    .map_err(|e| {
        conflict(e, || {
            format!(
                "signing key {} already exists or another rotation ran at the same time; \
                 rotate again with a new key",
                key.kid
            )
        })
    })?;
    cx.audit(vec![draft], key.created_at);
    Ok(())
}

pub(super) async fn prune_keys(store: &SqlStore, now: Timestamp) -> Result<u64> {
    store
        .write(move |conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM signing_keys WHERE retire_until IS NOT NULL AND retire_until <= $1",
                )
                .bind(now.as_millis())
                .execute_in(conn)
                .await
            })
        })
        .await
}

pub(super) async fn create_user(
    store: &SqlStore,
    user: &User,
    token: &StoredToken,
    draft: AuditDraft,
) -> Result<()> {
    write_user(store, user, token, draft, Existing::Conflict).await
}

/// Installs the bootstrap admin token only while no enabled admin has a live token, and
/// never a secret that was revoked:
/// creates the bootstrap user or makes it an admin again, and stores its token (replacing,
/// and un-revoking, an earlier token with the same id). The look and the write are one
/// transaction, so replicas starting together cannot both install one.
pub(super) async fn put_bootstrap_token(
    store: &SqlStore,
    user: &User,
    token: &StoredToken,
    draft: AuditDraft,
) -> Result<BootstrapOutcome> {
    check_owner(user, token)?;
    let (user, token) = (user.clone(), token.clone());
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let live = sqlx::query(&format!(
                    "SELECT u.name AS name, t.id AS id, t.secret_hash AS secret_hash \
                     FROM users u JOIN api_tokens t ON t.user_name = u.name \
                     WHERE u.role = 'admin' AND u.disabled_at IS NULL AND t.revoked_at IS NULL \
                     ORDER BY u.name, t.id{}",
                    cx.backend.lock_clause()
                ))
                .fetch_all_in(&mut *tx)
                .await?;
                if live.is_empty() {
                    // A revoked secret stays revoked: recovery takes a new one.
                    let earlier =
                        sqlx::query("SELECT secret_hash, revoked_at FROM api_tokens WHERE id = $1")
                            .bind(token.id.clone())
                            .fetch_optional_in(&mut *tx)
                            .await?;
                    if let Some(row) = earlier
                        && row.text("secret_hash")? == token.secret_hash
                        && let Some(at) = row.opt_int("revoked_at")?
                    {
                        return Ok(BootstrapOutcome::Revoked {
                            at: Timestamp::from_millis(at),
                        });
                    }
                    write_user_in(tx, &cx, &user, &token, draft, Existing::Replace).await?;
                    return Ok(BootstrapOutcome::Installed);
                }
                let mut admins = Vec::with_capacity(live.len());
                for row in &live {
                    let (name, id, hash) =
                        (row.text("name")?, row.text("id")?, row.text("secret_hash")?);
                    if id == token.id && hash == token.secret_hash && name == user.name.as_str() {
                        return Ok(BootstrapOutcome::AlreadyInstalled);
                    }
                    let name = UserName::parse(name).map_err(|e| StoreError::Corrupt {
                        id: "user".into(),
                        problem: e.to_string(),
                    })?;
                    if !admins.contains(&name) {
                        admins.push(name);
                    }
                }
                Ok(BootstrapOutcome::AdminExists { admins })
            })
        })
        .await
}

/// What writing a user and its token does to a user or token id that exists already.
#[derive(Clone, Copy)]
enum Existing {
    /// Refused as a conflict (a new user).
    Conflict,
    /// The user made active with the new role, the token replaced (the bootstrap admin).
    Replace,
}

const INSERT_USER: &str =
    "INSERT INTO users (name, role, teams, targets, created_at) VALUES ($1, $2, $3, $4, $5)";

const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, user_name, secret_hash, created_at, \
     revoked_at) VALUES ($1, $2, $3, $4, $5)";

async fn write_user(
    store: &SqlStore,
    user: &User,
    token: &StoredToken,
    draft: AuditDraft,
    existing: Existing,
) -> Result<()> {
    check_owner(user, token)?;
    let (user, token) = (user.clone(), token.clone());
    store
        .write(move |tx, cx| {
            Box::pin(async move { write_user_in(tx, &cx, &user, &token, draft, existing).await })
        })
        .await
}

async fn write_user_in(
    tx: &mut Db,
    cx: &Ctx,
    user: &User,
    token: &StoredToken,
    draft: AuditDraft,
    existing: Existing,
) -> Result<()> {
    let (insert_user, insert_token) = match existing {
        Existing::Conflict => (INSERT_USER.to_owned(), INSERT_TOKEN.to_owned()),
        Existing::Replace => (
            format!(
                "{INSERT_USER} ON CONFLICT (name) DO UPDATE SET role = excluded.role, \
                 targets = excluded.targets, disabled_at = NULL"
            ),
            format!(
                "{INSERT_TOKEN} ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, \
                 secret_hash = excluded.secret_hash, created_at = excluded.created_at, \
                 revoked_at = excluded.revoked_at"
            ),
        ),
    };
    sqlx::query(&insert_user)
        .bind(user.name.as_str().to_owned())
        .bind(user.role.as_str())
        .bind(to_json(&user.teams)?)
        .bind(to_json(&user.targets)?)
        .bind(user.created_at.as_millis())
        .execute_in(&mut *tx)
        .await
        .map_err(|e| conflict(e, || format!("user {} already exists", user.name)))?;
    sqlx::query(&insert_token)
        .bind(token.id.clone())
        .bind(user.name.as_str().to_owned())
        .bind(token.secret_hash.clone())
        .bind(token.created_at.as_millis())
        .bind(token.revoked_at.map(Timestamp::as_millis))
        .execute_in(&mut *tx)
        .await
        .map_err(|e| conflict(e, || format!("token id {} is already taken", token.id)))?;
    cx.audit(vec![draft], user.created_at);
    Ok(())
}

/// A token is stored under the user it is created with.
fn check_owner(user: &User, token: &StoredToken) -> Result<()> {
    if token.user == user.name {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "token {} belongs to {}, not to user {}",
        token.id, token.user, user.name
    )))
}

pub(super) async fn get_user(store: &SqlStore, name: &UserName) -> Result<Option<User>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(&store.reads)
        .await?;
    row.as_ref().map(|r| user_from_row(r, "")).transpose()
}

pub(super) async fn has_live_admin(store: &SqlStore) -> Result<bool> {
    let row = sqlx::query(
        "SELECT u.name FROM users u JOIN api_tokens t ON t.user_name = u.name \
         WHERE u.role = 'admin' AND u.disabled_at IS NULL AND t.revoked_at IS NULL LIMIT 1",
    )
    .fetch_optional(&store.reads)
    .await?;
    Ok(row.is_some())
}

pub(super) async fn list_users(store: &SqlStore) -> Result<Vec<User>> {
    let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
        .fetch_all(&store.reads)
        .await?;
    rows.iter().map(|r| user_from_row(r, "")).collect()
}

/// The token whatever its revocation (the caller checks `revoked_at`), with its user
/// unless the user is disabled.
/// An API token by id with its (enabled) user, the user's columns prefixed `u_`.
pub(super) const FIND_TOKEN: &str = "SELECT t.id, t.user_name, t.secret_hash, t.created_at, \
     t.revoked_at, u.name AS u_name, u.role AS u_role, u.teams AS u_teams, \
     u.targets AS u_targets, u.created_at AS u_created_at \
     FROM api_tokens t JOIN users u ON u.name = t.user_name \
     WHERE t.id = $1 AND u.disabled_at IS NULL";

pub(super) async fn find_token(
    store: &SqlStore,
    token_id: &str,
) -> Result<Option<(StoredToken, User)>> {
    if let Some(direct) = &store.direct {
        return direct.token(token_id);
    }
    let row = sqlx::query(FIND_TOKEN)
        .bind(token_id)
        .fetch_optional(&store.reads)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((token_from_row(&row)?, user_from_row(&row, "u_")?)))
}

pub(super) async fn revoke_user_tokens(
    store: &SqlStore,
    name: &UserName,
    now: Timestamp,
    draft: AuditDraft,
) -> Result<u64> {
    let name = name.clone();
    store
        .write(move |tx, cx| {
            Box::pin(async move { revoke_user_tokens_in(tx, &cx, &name, now, draft).await })
        })
        .await
}

async fn revoke_user_tokens_in(
    tx: &mut Db,
    cx: &Ctx,
    name: &UserName,
    now: Timestamp,
    draft: AuditDraft,
) -> Result<u64> {
    let exists = sqlx::query(&format!(
        "SELECT name FROM users WHERE name = $1{}",
        cx.backend.lock_clause()
    ))
    .bind(name.as_str())
    .fetch_optional_in(&mut *tx)
    .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("user {name}")));
    }
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(name.as_str())
    .execute_in(&mut *tx)
    .await?;
    cx.audit(vec![draft], now);
    Ok(revoked)
}

pub(super) async fn catalog_stamp(store: &SqlStore) -> Result<crate::CatalogStamp> {
    let row = sqlx::query(
        "SELECT (SELECT COALESCE(MAX(version), 0) FROM config_versions) AS v, \
                (SELECT COUNT(*) FROM signing_keys) AS n, \
                (SELECT COALESCE(MAX(created_at), 0) FROM signing_keys) AS k",
    )
    .fetch_one(&store.reads)
    .await?;
    Ok(crate::CatalogStamp {
        config_version: row.try_get("v")?,
        keys: row.try_get("n")?,
        newest_key_at: row.try_get("k")?,
    })
}

pub(super) async fn readiness(
    store: &SqlStore,
    migrator: &sqlx::migrate::Migrator,
) -> Result<crate::StoreReadiness> {
    let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
        .fetch_all(&store.reads)
        .await?;
    let mut applied = std::collections::BTreeSet::new();
    for row in rows {
        applied.insert(row.try_get::<i64, _>("version")?);
    }
    Ok(crate::StoreReadiness {
        pending_migrations: migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect(),
    })
}

pub(super) async fn current_config(store: &SqlStore) -> Result<Option<StoredConfig>> {
    let row = sqlx::query(
        "SELECT version, bundle, applied_at FROM config_versions ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(&store.reads)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredConfig {
        version: row.try_get("version")?,
        bundle_json: row.try_get("bundle")?,
        applied_at: Timestamp::from_millis(row.try_get("applied_at")?),
    }))
}

pub(super) async fn save_config(
    store: &SqlStore,
    bundle_json: &str,
    now: Timestamp,
    draft: AuditDraft,
) -> Result<i64> {
    let bundle_json = bundle_json.to_owned();
    store
        .write(move |tx, cx| {
            Box::pin(async move { save_config_in(tx, &cx, &bundle_json, now, draft).await })
        })
        .await
}

pub(super) async fn save_config_in(
    tx: &mut Db,
    cx: &Ctx,
    bundle_json: &str,
    now: Timestamp,
    draft: AuditDraft,
) -> Result<i64> {
    // The audit head is locked first here, so concurrent saves also serialize on it and
    // each reads the version the previous one wrote.
    audit::lock_head(tx, cx.backend).await?;
    cx.audit(vec![draft], now);
    let latest = sqlx::query("SELECT version FROM config_versions ORDER BY version DESC LIMIT 1")
        .fetch_optional_in(&mut *tx)
        .await?;
    let version = match latest {
        Some(row) => row.int("version")?.saturating_add(1),
        None => 1,
    };
    sqlx::query("INSERT INTO config_versions (version, bundle, applied_at) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(bundle_json)
        .bind(now.as_millis())
        .execute_in(&mut *tx)
        .await
        .map_err(|e| {
            conflict(e, || {
                "another configuration was saved at the same time; apply again".to_owned()
            })
        })?;
    Ok(version)
}
