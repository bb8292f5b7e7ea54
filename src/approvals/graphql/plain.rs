//! A page of requests answered from the rows loaded for it (`kernel::plain`): every field
//! whose data the page's prefetch holds, with no future per field. What needs more I/O
//! (`auditTrail`, `eligibleApprovers`), or a row the prefetch did not load, goes to the
//! derived resolvers in `types.rs`, which define the schema.

use async_graphql::{Context, ScalarType, Value};
use chrono::{DateTime, Utc};
use entity::user;

use super::types::{
    DecisionNode, Money, PolicyStage, RequestFields, RequestStage, request_stages, stored_status,
    stored_verdict,
};
use crate::approvals::loader::Related;
use crate::approvals::policies::PolicyVersion;
use crate::approvals::queries::{viewer_may_cancel, viewer_may_decide};
use crate::error::AppError;
use crate::kernel::Timestamp;
use crate::kernel::plain::{self, Answer, Errors, Plain, scalar};
use crate::kernel::resolver::require_viewer;

impl Related {
    /// The user as the page loaded them; `None` when the page did not load the subject.
    fn user<'a>(&'a self, subject: &'a str) -> Option<UserRef<'a>> {
        let row = self.users.get(subject)?;
        Some(UserRef {
            subject,
            row: row.as_deref(),
        })
    }
}

fn text(value: &str) -> Answer {
    Some(Ok(Value::String(value.to_owned())))
}

fn time(value: DateTime<Utc>) -> Answer {
    Some(Ok(Timestamp(value).to_value()))
}

fn json(value: &serde_json::Value) -> Answer {
    // As `Json<T>` writes itself: the JSON value, not a string of it.
    Some(Ok(async_graphql::to_value(value).unwrap_or_default()))
}

impl Plain<Related> for RequestFields {
    const TYPE_NAME: &'static str = "ApprovalRequest";

    fn field(&self, env: &Related, ctx: &Context<'_>, errors: &mut Errors) -> Answer {
        let row = &self.0;
        match ctx.item.node.name.node.as_str() {
            "id" => text(&row.id.to_string()),
            "status" => Some(stored_status(row).map(|s| async_graphql::InputType::to_value(&s))),
            "currentStage" => scalar(&row.current_stage),
            "version" => scalar(&row.version),
            "title" => text(&row.title),
            "description" => text(&row.description),
            "amount" => text(&row.amount),
            "currency" => text(&row.currency),
            "payload" => json(&row.payload),
            "createdAt" => time(row.created_at),
            "updatedAt" => time(row.updated_at),
            "expiresAt" => time(row.expires_at),
            "decidedAt" => match row.decided_at {
                Some(at) => time(at),
                None => Some(Ok(Value::Null)),
            },
            "requester" => {
                plain::object(env, &env.user(&row.requester_subject)?, ctx, errors).map(Ok)
            }
            "policy" => {
                let policy = env.policy(row.policy_id)?;
                plain::object(env, &PolicyRef(&policy), ctx, errors).map(Ok)
            }
            "decisions" => {
                let decisions = env.decisions.get(&row.id)?;
                let nodes: Vec<DecisionNode> =
                    decisions.iter().cloned().map(DecisionNode).collect();
                plain::list(env, &nodes, ctx, errors).map(Ok)
            }
            "stages" => {
                let policy = env.policy(row.policy_id)?;
                let decisions = env.decisions.get(&row.id)?;
                match request_stages(row, &policy, decisions) {
                    Ok(stages) => plain::list(env, &stages, ctx, errors).map(Ok),
                    Err(err) => Some(Err(err)),
                }
            }
            "viewerCanCancel" => {
                let viewer = require_viewer(ctx);
                Some(viewer.map(|viewer| {
                    Value::Boolean(viewer_may_cancel(viewer, &env.grants, row, env.now))
                }))
            }
            "viewerCanApprove" => {
                let policy = env.policy(row.policy_id)?;
                let decisions = env.decisions.get(&row.id)?;
                let viewer = require_viewer(ctx);
                Some(viewer.map(|viewer| {
                    Value::Boolean(viewer_may_decide(
                        viewer,
                        &env.grants,
                        row,
                        &policy,
                        decisions,
                        env.now,
                    ))
                }))
            }
            _ => None,
        }
    }
}

/// A user as the `User` type shows them: `row` is `None` for a subject never seen.
pub struct UserRef<'a> {
    subject: &'a str,
    row: Option<&'a user::Model>,
}

impl<E> Plain<E> for UserRef<'_> {
    const TYPE_NAME: &'static str = "User";

    fn field(&self, _: &E, ctx: &Context<'_>, _: &mut Errors) -> Answer {
        match ctx.item.node.name.node.as_str() {
            "subject" => text(self.subject),
            "name" => scalar(&self.row.and_then(|u| u.name.clone())),
            "email" => scalar(&self.row.and_then(|u| u.email.clone())),
            _ => None,
        }
    }
}

struct PolicyRef<'a>(&'a PolicyVersion);

impl<E> Plain<E> for PolicyRef<'_> {
    const TYPE_NAME: &'static str = "Policy";

    fn field(&self, env: &E, ctx: &Context<'_>, errors: &mut Errors) -> Answer {
        let policy = &self.0.policy;
        match ctx.item.node.name.node.as_str() {
            "key" => text(&policy.key),
            "version" => scalar(&policy.version),
            "name" => text(&policy.name),
            "description" => text(&policy.description),
            "expiresAfterSeconds" => scalar(&policy.expires_after_seconds),
            "payloadSchema" => match &policy.payload_schema {
                Some(schema) => json(schema),
                None => Some(Ok(Value::Null)),
            },
            "allowSameApproverAcrossStages" => scalar(&policy.allow_same_approver_across_stages),
            "stages" => {
                let stages: Result<Vec<PolicyStage>, AppError> =
                    self.0.stages.iter().map(PolicyStage::try_from).collect();
                match stages {
                    Ok(stages) => plain::list(env, &stages, ctx, errors).map(Ok),
                    Err(err) => Some(Err(err)),
                }
            }
            "createdAt" => time(policy.created_at),
            "createdBy" => text(&policy.created_by),
            _ => None,
        }
    }
}

impl<E> Plain<E> for PolicyStage {
    const TYPE_NAME: &'static str = "PolicyStage";

    fn field(&self, env: &E, ctx: &Context<'_>, errors: &mut Errors) -> Answer {
        match ctx.item.node.name.node.as_str() {
            "position" => scalar(&self.position),
            "name" => text(&self.name),
            "approverRoles" => scalar(&self.approver_roles),
            "requiredApprovals" => scalar(&self.required_approvals),
            "minAmounts" => plain::list(env, &self.min_amounts, ctx, errors).map(Ok),
            _ => None,
        }
    }
}

impl<E> Plain<E> for Money {
    const TYPE_NAME: &'static str = "Money";

    fn field(&self, _: &E, ctx: &Context<'_>, _: &mut Errors) -> Answer {
        match ctx.item.node.name.node.as_str() {
            "amount" => text(&self.amount.0),
            "currency" => text(&self.currency),
            _ => None,
        }
    }
}

impl Plain<Related> for RequestStage {
    const TYPE_NAME: &'static str = "RequestStage";

    fn field(&self, env: &Related, ctx: &Context<'_>, errors: &mut Errors) -> Answer {
        match ctx.item.node.name.node.as_str() {
            "position" => scalar(&self.position),
            "name" => text(&self.name),
            "approverRoles" => scalar(&self.approver_roles),
            "requiredApprovals" => scalar(&self.required_approvals),
            "minAmount" => match &self.min_amount {
                Some(min) => text(&min.0),
                None => Some(Ok(Value::Null)),
            },
            "state" => scalar(&self.state),
            "approvals" => scalar(&self.approvals),
            "decisions" => plain::list(env, &self.decisions, ctx, errors).map(Ok),
            _ => None,
        }
    }
}

impl Plain<Related> for DecisionNode {
    const TYPE_NAME: &'static str = "Decision";

    fn field(&self, env: &Related, ctx: &Context<'_>, errors: &mut Errors) -> Answer {
        let row = &self.0;
        match ctx.item.node.name.node.as_str() {
            "id" => text(&row.id.to_string()),
            "stage" => scalar(&row.stage_position),
            "approver" => {
                plain::object(env, &env.user(&row.approver_subject)?, ctx, errors).map(Ok)
            }
            "verdict" => Some(stored_verdict(row).map(|v| async_graphql::InputType::to_value(&v))),
            "comment" => text(&row.comment),
            "createdAt" => time(row.created_at),
            _ => None,
        }
    }
}
