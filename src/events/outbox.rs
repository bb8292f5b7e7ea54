//! The transactional outbox: one row per transition, written in the same transaction, so
//! an event exists exactly when its change committed.

use chrono::{DateTime, Utc};
use entity::outbox_entry;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, Set};
use serde_json::Value;
use uuid::Uuid;

use crate::error::AppError;

/// An entry to enqueue with a command's audit event.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub kind: &'static str,
    pub subject_id: String,
    pub payload: Value,
}

pub async fn enqueue(
    txn: &DatabaseTransaction,
    entry: &Outgoing,
    audit_sequence: i64,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    outbox_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        audit_sequence: Set(Some(audit_sequence)),
        kind: Set(entry.kind.to_owned()),
        subject_id: Set(entry.subject_id.clone()),
        payload: Set(entry.payload.clone()),
        state: Set("PENDING".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
        dead_lettered_at: Set(None),
    }
    .insert(txn)
    .await?;
    Ok(())
}
