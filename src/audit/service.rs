//! Appending to and reading the audit log.

use chrono::{SubsecRound, Utc};
use entity::{audit_chain_head, audit_event};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QuerySelect, Set, sea_query::LockType,
};
use serde_json::json;
use uuid::Uuid;

use super::model::{NewEvent, canonical, chain_hash};
use crate::error::AppError;

/// Appends `event` to the chain and returns its sequence number.
///
/// Call this as the last write of the transaction: it locks the chain head until commit,
/// and every other appender waits for it.
pub async fn append(txn: &DatabaseTransaction, event: NewEvent) -> Result<i64, AppError> {
    let mut head_query = audit_chain_head::Entity::find_by_id(1);
    if txn.get_database_backend() == DbBackend::Postgres {
        // SQLite needs no row lock: the immediate transaction already holds the write lock.
        head_query = head_query.lock(LockType::Update);
    }
    let head = head_query
        .one(txn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit chain head row is missing"))?;

    let sequence = head.sequence + 1;
    let id = Uuid::now_v7();
    // Microseconds: what both databases store exactly, so the hash can be recomputed.
    let occurred_at = Utc::now().trunc_subsecs(6);
    let hash = chain_hash(&head.hash, &canonical(&event, sequence, id, occurred_at));

    audit_event::ActiveModel {
        sequence: Set(sequence),
        id: Set(id),
        occurred_at: Set(occurred_at),
        actor_subject: Set(event.actor_subject),
        actor_roles: Set(json!(event.actor_roles)),
        action: Set(event.action),
        subject_type: Set(event.subject_type),
        subject_id: Set(event.subject_id),
        request_id: Set(event.request_id),
        before: Set(event.before),
        after: Set(event.after),
        reason: Set(event.reason),
        correlation_id: Set(event.correlation_id),
        idempotency_key: Set(event.idempotency_key),
        summary: Set(event.summary),
        prev_hash: Set(head.hash),
        hash: Set(hash.clone()),
    }
    .insert(txn)
    .await?;

    let updated = audit_chain_head::Entity::update_many()
        .col_expr(audit_chain_head::Column::Sequence, sequence.into())
        .col_expr(audit_chain_head::Column::Hash, hash.into())
        .filter(audit_chain_head::Column::Id.eq(1))
        .filter(audit_chain_head::Column::Sequence.eq(head.sequence))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(anyhow::anyhow!("the audit chain head moved during an append").into());
    }
    Ok(sequence)
}
