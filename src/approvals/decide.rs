//! `approveRequest` and `rejectRequest`: a verdict on the request's current stage.

use entity::{decision, request};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set, SqlErr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{
    StageTally, Verdict, check_actionable, decision as decide, stored_decimal, validate_comment,
};
use super::policies::{load_policy_version, stage_rule};
use super::store::{
    guarded_update, load_visible, parse_request_id, parse_status, replay_request, transition_effect,
};
use crate::access::Grants;
use crate::access::requests::{Asker, PolicyFacts, check_decider};
use crate::command::{Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::kernel::CommandContext;

pub struct DecideInput {
    pub id: String,
    pub expected_version: Option<i32>,
    pub comment: Option<String>,
}

pub struct Decide {
    verdict: Verdict,
    input: DecideInput,
    id: Uuid,
    comment: String,
}

impl Decide {
    pub fn new(verdict: Verdict, input: DecideInput) -> Result<Self, AppError> {
        let comment = validate_comment(
            "comment",
            input.comment.as_deref(),
            verdict == Verdict::Reject,
        )?;
        let id = parse_request_id(&input.id)?;
        Ok(Self {
            verdict,
            input,
            id,
            comment,
        })
    }
}

impl Command for Decide {
    type Output = request::Model;

    fn operation(&self) -> &'static str {
        match self.verdict {
            Verdict::Approve => "approveRequest",
            Verdict::Reject => "rejectRequest",
        }
    }

    fn fingerprint(&self) -> Value {
        let input = &self.input;
        json!({ "id": input.id, "expectedVersion": input.expected_version, "comment": input.comment })
    }

    fn attempt(&self) -> Attempt {
        let action = match self.verdict {
            Verdict::Approve => "request.approve",
            Verdict::Reject => "request.reject",
        };
        Attempt::on_request(action, self.id)
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
        let policy = load_policy_version(txn, current.policy_id).await?;
        let now = ctx.now();
        check_actionable(
            parse_status(&current.status)?,
            current.expires_at,
            current.version,
            self.input.expected_version,
            now,
        )?;
        let stage = current
            .current_stage
            .and_then(|pos| policy.stages.iter().find(|s| s.position == pos))
            .ok_or_else(|| anyhow::anyhow!("pending request {} has no current stage", self.id))?;
        let decisions = decision::Entity::find()
            .filter(decision::Column::RequestId.eq(self.id))
            .all(txn)
            .await?;
        let asker = Asker {
            subject: &ctx.actor.subject,
            roles: &ctx.actor.roles,
            grants,
        };
        let facts = PolicyFacts {
            stages: &policy.stages,
            allow_same_approver_across_stages: policy.policy.allow_same_approver_across_stages,
        };
        check_decider(asker, &current, stage, facts, &decisions)
            .map_err(|why| AppError::Forbidden(why.message(stage)))?;

        let rules = policy
            .stages
            .iter()
            .map(|stage| stage_rule(stage, &current.currency))
            .collect::<Result<Vec<_>, _>>()?;
        let here = StageTally::of(
            decisions
                .iter()
                .filter(|d| d.stage_position == stage.position)
                .map(|d| d.verdict.as_str()),
        );
        let to = decide(
            self.verdict,
            &rules,
            stored_decimal(&current.amount)?,
            stage.position,
            here.approvals,
        );
        let updated = guarded_update(txn, &current, to, now).await?;
        decision::ActiveModel {
            id: Set(Uuid::now_v7()),
            request_id: Set(self.id),
            stage_position: Set(stage.position),
            approver_subject: Set(ctx.actor.subject.clone()),
            verdict: Set(self.verdict.as_str().into()),
            comment: Set(self.comment.clone()),
            created_at: Set(now),
        }
        .insert(txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                AppError::Conflict("a concurrent decision won; read the request again".into())
            }
            _ => err.into(),
        })?;
        let verb = match self.verdict {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        };
        let comment = if self.comment.is_empty() {
            String::new()
        } else {
            format!(": {}", self.comment)
        };
        let summary = format!(
            "{} {verb} stage {} ({}) of {} {:?}{comment}",
            ctx.actor.subject, stage.position, stage.name, current.policy_key, current.title,
        );
        Ok(transition_effect(
            ctx,
            to,
            Some(&current),
            updated,
            Some(self.comment.clone()),
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
