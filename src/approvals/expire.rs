//! Expiry: a pending request past its deadline becomes EXPIRED, as `system`, exactly once
//! however many replicas sweep (the guarded update lets one win).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::request;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use super::model::expiry;
use super::store::{guarded_update, parse_status, transition_effect};
use crate::access::Grants;
use crate::command::{self, Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::events::bus::EventBus;
use crate::kernel::{Clock, CommandContext};

struct Expire(Uuid);

impl Command for Expire {
    type Output = Option<request::Model>;

    fn operation(&self) -> &'static str {
        "expire"
    }

    fn fingerprint(&self) -> Value {
        Value::Null
    }

    fn attempt(&self) -> Attempt {
        Attempt::on_request("request.expire", self.0)
    }

    fn requires(&self) -> Requirement {
        Requirement::Nothing
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        _grants: &Grants,
    ) -> Result<Effect<Self::Output>, AppError> {
        let nothing = || Effect::unchanged(None, Value::Null);
        let Some(current) = request::Entity::find_by_id(self.0).one(txn).await? else {
            return Ok(nothing());
        };
        let now = ctx.now();
        let status = parse_status(&current.status)?;
        let Some(to) = expiry(status, current.expires_at, current.current_stage, now) else {
            return Ok(nothing());
        };
        let updated = guarded_update(txn, &current, to, now).await?;
        let summary = format!(
            "system expired {} {:?}: its deadline {} passed while it was pending",
            current.policy_key,
            current.title,
            current
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let effect = transition_effect(ctx, to, Some(&current), updated, None, summary);
        Ok(Effect {
            output: Some(effect.output),
            response: effect.response,
            event: effect.event,
            outgoing: effect.outgoing,
            announce: None,
        })
    }

    async fn replay(
        &self,
        _txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        _stored: &Value,
    ) -> Result<Self::Output, AppError> {
        // The system sends no idempotency key, so nothing is ever replayed.
        Ok(None)
    }
}

/// Expires one request if it is due. `None` when there was nothing to do: it was decided
/// meanwhile, or another replica expired it first.
pub async fn expire(
    db: &DatabaseConnection,
    bus: &Arc<EventBus>,
    clock: &Clock,
    id: Uuid,
) -> Result<Option<request::Model>, AppError> {
    let system = CommandContext::system(clock.clone());
    match command::run(db, Some(bus), &system, &Expire(id)).await {
        Ok(ran) => Ok(ran.output),
        Err(AppError::Conflict(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Ids of pending requests past their deadline at `now`, oldest deadline first.
pub async fn due_for_expiry(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, AppError> {
    Ok(request::Entity::find()
        .select_only()
        .column(request::Column::Id)
        .filter(request::Column::Status.eq(super::model::Status::Pending.as_str()))
        .filter(request::Column::ExpiresAt.lte(now))
        .order_by_asc(request::Column::ExpiresAt)
        .limit(limit)
        .into_tuple::<Uuid>()
        .all(db)
        .await?)
}
