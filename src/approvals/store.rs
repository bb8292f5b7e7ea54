//! What the request commands share: loading a request as the caller may see it, the
//! guarded write, and the effect (audit event, outbox entry, replay record) of a
//! transition.

use chrono::{DateTime, Utc};
use entity::request;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{Status, Transition};
use crate::access::Grants;
use crate::access::requests::{Asker, visible};
use crate::command::{Effect, stored_id};
use crate::error::AppError;
use crate::events::outbox::Outgoing;
use crate::kernel::CommandContext;

/// What the caller of a hidden or absent request is told: the two are indistinguishable.
pub fn not_found() -> AppError {
    AppError::NotFound("no such request".into())
}

/// A request id from the API; a malformed one is as absent as any other.
pub fn parse_request_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.trim()).map_err(|_| not_found())
}

pub fn parse_status(value: &str) -> Result<Status, AppError> {
    Status::parse(value)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown stored status {value:?}")))
}

/// The request `id`, read in the command's transaction as the actor (with `grants`, the
/// pipeline's) may see it; NOT_FOUND when it does not exist or they may not see it.
pub async fn load_visible(
    txn: &DatabaseTransaction,
    ctx: &CommandContext,
    grants: &Grants,
    id: Uuid,
) -> Result<request::Model, AppError> {
    let asker = Asker {
        subject: &ctx.actor.subject,
        roles: &ctx.actor.roles,
        grants,
    };
    request::Entity::find_by_id(id)
        .filter(visible(asker))
        .one(txn)
        .await?
        .ok_or_else(not_found)
}

/// A replayed request command answers with the request as it is now — if the caller may
/// still see it. Otherwise NOT_FOUND, as for any stranger.
pub async fn replay_request(
    txn: &DatabaseTransaction,
    ctx: &CommandContext,
    grants: &Grants,
    stored: &Value,
) -> Result<request::Model, AppError> {
    let id = stored_id(stored, "requestId")?;
    load_visible(txn, ctx, grants, id).await
}

/// The row `to` leaves `current` as, at `now`: the one definition of a transition's
/// write, used by `guarded_update` and by the bench's seeder.
pub fn transitioned(
    current: &request::Model,
    to: Transition,
    now: DateTime<Utc>,
) -> request::Model {
    request::Model {
        status: to.status.as_str().into(),
        current_stage: to.stage,
        version: current.version + 1,
        updated_at: now,
        decided_at: to.status.is_terminal().then_some(now),
        ..current.clone()
    }
}

/// `UPDATE … WHERE id = ? AND version = ?`: the write that makes a transition happen at
/// most once. Zero rows means a concurrent command won.
pub async fn guarded_update(
    txn: &DatabaseTransaction,
    current: &request::Model,
    to: Transition,
    now: DateTime<Utc>,
) -> Result<request::Model, AppError> {
    let after = transitioned(current, to, now);
    let result = request::Entity::update_many()
        .col_expr(request::Column::Status, after.status.clone().into())
        .col_expr(request::Column::CurrentStage, after.current_stage.into())
        .col_expr(request::Column::Version, after.version.into())
        .col_expr(request::Column::UpdatedAt, after.updated_at.into())
        .col_expr(request::Column::DecidedAt, after.decided_at.into())
        .filter(request::Column::Id.eq(current.id))
        .filter(request::Column::Version.eq(current.version))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        return Err(AppError::Conflict(
            "a concurrent change won; read the request again".into(),
        ));
    }
    Ok(after)
}

/// The effect of a transition that left the request as `after`: one audit event, one
/// outbox entry, and the request id to replay.
pub fn transition_effect(
    ctx: &CommandContext,
    to: Transition,
    before: Option<&request::Model>,
    after: request::Model,
    reason: Option<String>,
    summary: String,
) -> Effect<request::Model> {
    let event = ctx
        .event(to.action, "request", after.id.to_string(), summary)
        .about_request(after.id)
        .before(before.map(snapshot))
        .after(snapshot(&after))
        .reason(reason);
    let outgoing = Outgoing {
        kind: to.kind,
        subject_id: after.id.to_string(),
        payload: json!({ "kind": to.kind, "request": snapshot(&after), "actor": ctx.actor.subject }),
    };
    Effect {
        response: json!({ "requestId": after.id }),
        output: after,
        event: Some(event),
        outgoing: Some(outgoing),
        announce: None,
    }
}

/// What the audit log and the outbox record of a request.
pub fn snapshot(request: &request::Model) -> Value {
    json!({
        "id": request.id,
        "policy": request.policy_key,
        "policyVersion": request.policy_version,
        "title": request.title,
        "amount": request.amount,
        "currency": request.currency,
        "requester": request.requester_subject,
        "status": request.status,
        "currentStage": request.current_stage,
        "version": request.version,
    })
}
