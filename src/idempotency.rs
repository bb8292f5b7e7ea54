//! Exactly-once commands: Stripe-style idempotency keys, scoped per actor.
//!
//! The key row is inserted at the start of the command's transaction and completed at its
//! end, so it commits exactly when the effect does: a crash between commit and response is
//! safe to retry. A concurrent duplicate blocks on the key's unique index (PostgreSQL) or
//! on the write lock (SQLite) until the first commits, then replays its outcome.

use chrono::{DateTime, Duration, Utc};
use entity::idempotency_key;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::AppError;

const MAX_KEY_CHARS: usize = 255;

/// An idempotency key as presented with one command.
#[derive(Clone, Debug)]
pub struct CommandKey {
    pub actor: String,
    pub key: String,
    /// The command's name: the same key on another command is a reuse.
    pub operation: &'static str,
    /// SHA-256 of the command's canonical input.
    pub request_hash: String,
}

impl CommandKey {
    /// `None` when the command came without a key. `input` must not contain the key itself.
    pub fn parse(
        actor: &str,
        key: Option<&str>,
        operation: &'static str,
        input: &Value,
    ) -> Result<Option<Self>, AppError> {
        let Some(key) = key else { return Ok(None) };
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_KEY_CHARS || key.trim() != key {
            return Err(AppError::bad_input(
                "idempotencyKey",
                format!(
                    "an idempotency key is 1 to {MAX_KEY_CHARS} characters without surrounding spaces"
                ),
            ));
        }
        // serde_json sorts object keys, so this form is canonical.
        let canonical = format!("{operation}\n{input}");
        Ok(Some(Self {
            actor: actor.to_owned(),
            key: key.to_owned(),
            operation,
            request_hash: hex::encode(Sha256::digest(canonical.as_bytes())),
        }))
    }
}

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: run the command, then [`complete`].
    Fresh,
    /// Already done: answer with this stored outcome and change nothing.
    Replay(Value),
}

/// Claims `key` inside the command's transaction. A new key, the common case, is one
/// statement: the insert, which does nothing if the key exists (a replay, a reuse, a
/// concurrent duplicate, or an expired key), and only then is the row read.
pub async fn claim(
    txn: &DatabaseTransaction,
    key: &CommandKey,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<Claim, AppError> {
    if insert_new(txn, key, now, retention).await? {
        return Ok(Claim::Fresh);
    }
    let existing = idempotency_key::Entity::find_by_id((key.actor.clone(), key.key.clone()))
        .one(txn)
        .await?;
    let Some(row) = existing else {
        // The row that stopped the insert was deleted since (purged, or freed by a
        // concurrent claim of the expired key): the caller retries.
        return Err(AppError::IdempotencyKeyInUse);
    };
    if row.expires_at > now {
        if row.operation != key.operation || row.request_hash != key.request_hash {
            return Err(AppError::IdempotencyKeyReused);
        }
        return match (row.state.as_str(), row.response) {
            ("COMPLETED", Some(response)) => Ok(Claim::Replay(response)),
            _ => Err(AppError::IdempotencyKeyInUse),
        };
    }
    // Past its retention: the key is free again. Only the expired row: a concurrent claim
    // may have replaced it since it was read, and that one's effect must stand.
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::ActorSubject.eq(&key.actor))
        .filter(idempotency_key::Column::Key.eq(&key.key))
        .filter(idempotency_key::Column::ExpiresAt.lte(now))
        .exec(txn)
        .await?;
    if insert_new(txn, key, now, retention).await? {
        Ok(Claim::Fresh)
    } else {
        Err(AppError::IdempotencyKeyInUse)
    }
}

/// Inserts `key` as in progress unless a row for it exists (waiting, on PostgreSQL, for a
/// concurrent insert of the same key to commit or roll back); whether it did.
async fn insert_new(
    txn: &DatabaseTransaction,
    key: &CommandKey,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<bool, AppError> {
    let row = idempotency_key::ActiveModel {
        actor_subject: Set(key.actor.clone()),
        key: Set(key.key.clone()),
        operation: Set(key.operation.to_owned()),
        request_hash: Set(key.request_hash.clone()),
        state: Set("IN_PROGRESS".into()),
        response: Set(None),
        created_at: Set(now),
        expires_at: Set(now + retention),
    };
    let inserted = idempotency_key::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                idempotency_key::Column::ActorSubject,
                idempotency_key::Column::Key,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted == 1)
}

/// Records the outcome to replay, in the same transaction as the effect.
pub async fn complete(
    txn: &DatabaseTransaction,
    key: &CommandKey,
    response: Value,
) -> Result<(), AppError> {
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::State, "COMPLETED".into())
        .col_expr(idempotency_key::Column::Response, response.into())
        .filter(idempotency_key::Column::ActorSubject.eq(&key.actor))
        .filter(idempotency_key::Column::Key.eq(&key.key))
        .exec(txn)
        .await?;
    Ok(())
}
