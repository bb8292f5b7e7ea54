//! Purges: what has served its purpose goes, in small batches so no transaction holds
//! locks for long. Several replicas may purge at once; a row deleted twice is deleted
//! once.

use std::time::Duration;

use entity::{outbox_entry, webhook_delivery};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement,
};
use uuid::Uuid;

use crate::error::AppError;
use crate::kernel::Clock;
use crate::webhooks::deliveries::{DELIVERED, PENDING};

const BATCH: u64 = 1000;

pub async fn run(
    db: DatabaseConnection,
    clock: Clock,
    outbox_retention: Duration,
) -> Result<(), AppError> {
    let keys = idempotency_keys(&db, &clock).await?;
    let entries = outbox(&db, &clock, outbox_retention).await?;
    if keys + entries > 0 {
        tracing::info!(idempotency_keys = keys, outbox_entries = entries, "purged");
    }
    Ok(())
}

/// Keys past their replay window: a retry with one of them now runs as new. In batches
/// along the `expires_at` index, so no transaction holds SQLite's writer for long.
async fn idempotency_keys(db: &DatabaseConnection, clock: &Clock) -> Result<u64, AppError> {
    let now = clock.now();
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "DELETE FROM idempotency_keys WHERE (actor_subject, key) IN \
             (SELECT actor_subject, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)"
        }
        _ => {
            "DELETE FROM idempotency_keys WHERE (actor_subject, key) IN \
             (SELECT actor_subject, key FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)"
        }
    };
    let mut purged = 0;
    loop {
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [now.into(), i64::try_from(BATCH).unwrap_or(1000).into()],
        );
        let deleted = crate::write_transaction!(db, |txn| {
            Ok(txn.execute_raw(statement.clone()).await?.rows_affected())
        })?;
        purged += deleted;
        if deleted < BATCH {
            return Ok(purged);
        }
    }
}

/// Deliveries that succeeded longer ago than the retention, then outbox entries
/// dispatched longer ago that no delivery refers to any more. A pending or dead delivery
/// keeps its event (a replay needs it).
async fn outbox(
    db: &DatabaseConnection,
    clock: &Clock,
    retention: Duration,
) -> Result<u64, AppError> {
    let cutoff = clock.now() - chrono::Duration::from_std(retention).unwrap_or_default();
    loop {
        let found = crate::write_transaction!(db, |txn| {
            let done: Vec<Uuid> = webhook_delivery::Entity::find()
                .select_only()
                .column(webhook_delivery::Column::Id)
                .filter(webhook_delivery::Column::State.eq(DELIVERED))
                .filter(webhook_delivery::Column::DeliveredAt.lt(cutoff))
                .limit(BATCH)
                .into_tuple()
                .all(txn)
                .await?;
            webhook_delivery::Entity::delete_many()
                .filter(webhook_delivery::Column::Id.is_in(done.clone()))
                .filter(webhook_delivery::Column::State.eq(DELIVERED))
                .exec(txn)
                .await?;
            Ok(done.len() as u64)
        })?;
        if found < BATCH {
            break;
        }
    }
    let mut purged = 0;
    loop {
        let (found, deleted) = crate::write_transaction!(db, |txn| {
            let old: Vec<Uuid> = outbox_entry::Entity::find()
                .select_only()
                .column(outbox_entry::Column::Id)
                .filter(outbox_entry::Column::State.eq(DELIVERED))
                .filter(outbox_entry::Column::CreatedAt.lt(cutoff))
                // NOT EXISTS, not NOT IN: PostgreSQL turns it into an anti-join on the
                // deliveries' (outbox_id, endpoint_id) index.
                .filter(Expr::exists(
                    Query::select()
                        .expr(Expr::val(1))
                        .from(webhook_delivery::Entity)
                        .and_where(
                            Expr::col((webhook_delivery::Entity, webhook_delivery::Column::OutboxId))
                                .equals((outbox_entry::Entity, outbox_entry::Column::Id)),
                        )
                        .to_owned(),
                ).not())
                .limit(BATCH)
                .into_tuple()
                .all(txn)
                .await?;
            let deleted = outbox_entry::Entity::delete_many()
                .filter(outbox_entry::Column::Id.is_in(old.clone()))
                .filter(outbox_entry::Column::State.ne(PENDING))
                .exec(txn)
                .await?
                .rows_affected;
            Ok((old.len() as u64, deleted))
        })?;
        purged += deleted;
        if found < BATCH {
            return Ok(purged);
        }
    }
}
