//! The delivery ledger: fanning outbox entries out into one delivery per interested
//! endpoint, claiming due deliveries, recording each attempt's outcome, replaying a dead
//! letter, and listing them.
//!
//! Safe with several replicas: an outbox entry is dispatched under a row lock taken with
//! `SKIP LOCKED` (PostgreSQL) or the write lock (SQLite), and marked in the same
//! transaction; a delivery is claimed by one `UPDATE … RETURNING` that pushes its
//! `next_attempt_at` past the attempt's timeout (the lease) and bumps `attempts`, and its
//! outcome is written only if `attempts` is still the one claimed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{outbox_entry, webhook_delivery, webhook_endpoint};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::endpoints::wants;
use crate::access::{Action, Grants};
use crate::command::{Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::kernel::CommandContext;

pub const PENDING: &str = "PENDING";
pub const DELIVERED: &str = "DELIVERED";
pub const DEAD: &str = "DEAD";

/// Outbox entries dispatched per transaction.
const DISPATCH_BATCH: u64 = 200;

/// Turns pending outbox entries into deliveries, one per enabled endpoint that wants the
/// event's kind, and marks the entries dispatched (`DELIVERED`). Returns how many entries
/// it dispatched.
pub async fn dispatch(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<usize, AppError> {
    // A read first, so an idle relay never takes SQLite's write lock.
    let any = outbox_entry::Entity::find()
        .select_only()
        .column(outbox_entry::Column::Id)
        .filter(outbox_entry::Column::State.eq(PENDING))
        .limit(1)
        .into_tuple::<Uuid>()
        .one(db)
        .await?;
    if any.is_none() {
        return Ok(0);
    }
    crate::write_transaction!(db, |txn| {
        let mut pending = outbox_entry::Entity::find()
            .filter(outbox_entry::Column::State.eq(PENDING))
            .order_by_asc(outbox_entry::Column::CreatedAt)
            .order_by_asc(outbox_entry::Column::Id)
            .limit(DISPATCH_BATCH);
        if txn.get_database_backend() == DbBackend::Postgres {
            pending = pending.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let entries = pending.all(txn).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let endpoints = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::DisabledAt.is_null())
            .all(txn)
            .await?;
        let mut owed = Vec::new();
        for entry in &entries {
            for endpoint in endpoints.iter().filter(|e| wants(e, &entry.kind)) {
                owed.push(webhook_delivery::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    outbox_id: Set(entry.id),
                    endpoint_id: Set(endpoint.id),
                    kind: Set(entry.kind.clone()),
                    state: Set(PENDING.into()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    last_status: Set(None),
                    last_error: Set(None),
                    last_attempt_at: Set(None),
                    created_at: Set(now),
                    delivered_at: Set(None),
                    dead_lettered_at: Set(None),
                });
            }
        }
        for chunk in owed.chunks(100) {
            webhook_delivery::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(txn)
                .await?;
        }
        let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
        outbox_entry::Entity::update_many()
            .col_expr(outbox_entry::Column::State, Expr::value(DELIVERED))
            .col_expr(outbox_entry::Column::DeliveredAt, Expr::value(now))
            .filter(outbox_entry::Column::Id.is_in(ids))
            .filter(outbox_entry::Column::State.eq(PENDING))
            .exec(txn)
            .await?;
        Ok(entries.len())
    })
}

/// Claims up to `limit` due deliveries for one attempt each: `attempts` goes up by one and
/// `next_attempt_at` moves to `lease_until`, so nobody else takes them meanwhile and a
/// replica that dies mid-attempt leaves them due again once the lease ends.
pub async fn claim(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<webhook_delivery::Model>, AppError> {
    let any = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(webhook_delivery::Column::State.eq(PENDING))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .limit(1)
        .into_tuple::<Uuid>()
        .one(db)
        .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(100);
    crate::write_transaction!(db, |txn| {
        let backend = txn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1, \
                 last_attempt_at = $2 WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE state = 'PENDING' AND next_attempt_at <= $2 ORDER BY next_attempt_at \
                 LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING *"
            }
            _ => {
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?, \
                 last_attempt_at = ? WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE state = 'PENDING' AND next_attempt_at <= ? ORDER BY next_attempt_at \
                 LIMIT ?) RETURNING *"
            }
        };
        let values: Vec<sea_orm::Value> = match backend {
            DbBackend::Postgres => vec![lease_until.into(), now.into(), limit.into()],
            _ => vec![lease_until.into(), now.into(), now.into(), limit.into()],
        };
        Ok(webhook_delivery::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
            .all(txn)
            .await?)
    })
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Failed; retry no sooner than `retry_after` when the receiver asked for it.
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// Where a failed delivery goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Retry(DateTime<Utc>),
    DeadLetter,
}

/// Writes an attempt's outcome, unless the delivery moved on meanwhile (a replay, or a
/// lease that ran out and another replica's attempt). Whether it was written.
pub async fn record(
    db: &DatabaseConnection,
    claimed: &webhook_delivery::Model,
    outcome: &Outcome,
    next: Option<Next>,
    now: DateTime<Utc>,
) -> Result<bool, AppError> {
    let mut update = webhook_delivery::Entity::update_many();
    match (outcome, next) {
        (Outcome::Delivered { status }, _) => {
            update = update
                .col_expr(webhook_delivery::Column::State, Expr::value(DELIVERED))
                .col_expr(
                    webhook_delivery::Column::LastStatus,
                    Expr::value(i32::from(*status)),
                )
                .col_expr(
                    webhook_delivery::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(now));
        }
        (Outcome::Failed { status, error, .. }, next) => {
            update = update
                .col_expr(
                    webhook_delivery::Column::LastStatus,
                    Expr::value(status.map(i32::from)),
                )
                .col_expr(
                    webhook_delivery::Column::LastError,
                    Expr::value(error.clone()),
                );
            update = match next {
                Some(Next::Retry(at)) => {
                    update.col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(at))
                }
                _ => update
                    .col_expr(webhook_delivery::Column::State, Expr::value(DEAD))
                    .col_expr(webhook_delivery::Column::DeadLetteredAt, Expr::value(now)),
            };
        }
    }
    let written = crate::write_transaction!(db, |txn| {
        Ok(update
            .clone()
            .filter(webhook_delivery::Column::Id.eq(claimed.id))
            .filter(webhook_delivery::Column::Attempts.eq(claimed.attempts))
            .filter(webhook_delivery::Column::State.eq(PENDING))
            .exec(txn)
            .await?
            .rows_affected)
    })?;
    Ok(written == 1)
}

/// Requeues one delivery, dead or not, for a fresh round of attempts. Admins only;
/// audited.
pub struct ReplayDelivery(pub Uuid);

impl Command for ReplayDelivery {
    type Output = webhook_delivery::Model;

    fn operation(&self) -> &'static str {
        "replayWebhookDelivery"
    }

    fn fingerprint(&self) -> Value {
        json!({ "id": self.0 })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: "webhook.delivery.replay",
            subject_type: "webhook_delivery",
            subject_id: self.0.to_string(),
            request_id: None,
        }
    }

    fn requires(&self) -> Requirement {
        Requirement::Grant(Action::AccessManage, None)
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        _grants: &Grants,
    ) -> Result<Effect<Self::Output>, AppError> {
        let current = load(txn, self.0).await?;
        if current.state == PENDING {
            return Err(AppError::InvalidTransition(
                "this delivery is still being attempted; replay it once it is delivered or dead"
                    .into(),
            ));
        }
        let before = json!({ "state": current.state, "attempts": current.attempts,
            "lastStatus": current.last_status, "lastError": current.last_error });
        // Guarded like a transition: of two replays at once, one requeues, the other
        // finds it pending.
        let requeued = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::State, Expr::value(PENDING))
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(0))
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                Expr::value(ctx.now()),
            )
            .col_expr(
                webhook_delivery::Column::DeliveredAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                webhook_delivery::Column::DeadLetteredAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_delivery::Column::Id.eq(current.id))
            .filter(webhook_delivery::Column::State.eq(current.state.clone()))
            .exec(txn)
            .await?
            .rows_affected;
        if requeued != 1 {
            return Err(AppError::Conflict(
                "the delivery changed meanwhile; look at it again".into(),
            ));
        }
        let updated = load(txn, current.id).await?;
        let event = ctx
            .event(
                "webhook.delivery.replayed",
                "webhook_delivery",
                updated.id.to_string(),
                format!(
                    "{} replayed the {} {} delivery of event {} to webhook {}",
                    ctx.actor.subject,
                    current.state.to_lowercase(),
                    current.kind,
                    current.outbox_id,
                    current.endpoint_id
                ),
            )
            .before(Some(before))
            .after(json!({ "state": PENDING, "attempts": 0 }));
        Ok(Effect::audited(
            updated.clone(),
            json!({ "deliveryId": updated.id }),
            event,
        ))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        _stored: &Value,
    ) -> Result<Self::Output, AppError> {
        load(txn, self.0).await
    }
}

async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<webhook_delivery::Model, AppError> {
    webhook_delivery::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("no such webhook delivery".into()))
}

/// A page of deliveries, newest first, after the one with id `before` (exclusive).
pub async fn list<C: ConnectionTrait>(
    db: &C,
    state: Option<&str>,
    endpoint: Option<Uuid>,
    limit: u64,
    before: Option<Uuid>,
) -> Result<(Vec<webhook_delivery::Model>, bool), AppError> {
    let mut query = webhook_delivery::Entity::find();
    if let Some(state) = state {
        query = query.filter(webhook_delivery::Column::State.eq(state));
    }
    if let Some(endpoint) = endpoint {
        query = query.filter(webhook_delivery::Column::EndpointId.eq(endpoint));
    }
    if let Some(before) = before {
        query = query.filter(webhook_delivery::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(crate::kernel::page::split_page(rows, limit))
}
