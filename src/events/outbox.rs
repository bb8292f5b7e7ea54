//! The transactional outbox: one row per transition, written in the same transaction, so
//! an event exists exactly when its change committed.

use chrono::Utc;
use entity::outbox_entry;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, Set};
use serde_json::Value;
use uuid::Uuid;

use crate::error::AppError;

pub async fn enqueue(
    txn: &DatabaseTransaction,
    kind: &str,
    subject_id: &str,
    audit_sequence: i64,
    payload: Value,
) -> Result<(), AppError> {
    let now = Utc::now();
    outbox_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        audit_sequence: Set(Some(audit_sequence)),
        kind: Set(kind.to_owned()),
        subject_id: Set(subject_id.to_owned()),
        payload: Set(payload),
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
