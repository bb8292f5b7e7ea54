//! `cancelRequest`: the requester, or someone who manages the policy, withdraws a pending
//! request.

use entity::request;
use sea_orm::DatabaseTransaction;
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{cancellation, check_actionable, validate_comment};
use super::store::{
    guarded_update, load_visible, parse_request_id, parse_status, replay_request, transition_effect,
};
use crate::access::Grants;
use crate::access::requests::{Asker, NOT_CANCELLER, may_cancel};
use crate::command::{Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::kernel::CommandContext;

pub struct Cancel {
    raw_id: String,
    raw_reason: Option<String>,
    id: Uuid,
    reason: String,
}

impl Cancel {
    pub fn new(id: String, reason: Option<String>) -> Result<Self, AppError> {
        Ok(Self {
            reason: validate_comment("reason", reason.as_deref(), true)?,
            id: parse_request_id(&id)?,
            raw_id: id,
            raw_reason: reason,
        })
    }
}

impl Command for Cancel {
    type Output = request::Model;

    fn operation(&self) -> &'static str {
        "cancelRequest"
    }

    fn fingerprint(&self) -> Value {
        json!({ "id": self.raw_id, "reason": self.raw_reason })
    }

    fn attempt(&self) -> Attempt {
        Attempt::on_request("request.cancel", self.id)
    }

    fn requires(&self) -> Requirement {
        Requirement::OwnRule
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        grants: &Grants,
    ) -> Result<Effect<request::Model>, AppError> {
        let current = load_visible(txn, ctx, grants, self.id).await?;
        let asker = Asker {
            subject: &ctx.actor.subject,
            roles: &ctx.actor.roles,
            grants,
        };
        if !may_cancel(asker, &current) {
            return Err(AppError::Forbidden(NOT_CANCELLER.into()));
        }
        let now = ctx.now();
        check_actionable(
            parse_status(&current.status)?,
            current.expires_at,
            current.version,
            None,
            now,
        )?;
        let to = cancellation(current.current_stage);
        let updated = guarded_update(txn, &current, to, now).await?;
        let summary = format!(
            "{} cancelled {} {:?}: {}",
            ctx.actor.subject, current.policy_key, current.title, self.reason
        );
        Ok(transition_effect(
            ctx,
            to,
            Some(&current),
            updated,
            Some(self.reason.clone()),
            summary,
        ))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        grants: &Grants,
        stored: &Value,
    ) -> Result<request::Model, AppError> {
        replay_request(txn, ctx, grants, stored).await
    }
}
