//! `submitRequest`, `approveRequest`, `rejectRequest`, `cancelRequest`, `upsertPolicy`.
//! Each builds its command and runs it through the pipeline (`command::run`).

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use entity::request;
use serde_json::Value;

use super::types::{Decimal, PolicyNode, RequestNode};
use crate::approvals::cancel::Cancel;
use crate::approvals::decide::{Decide, DecideInput};
use crate::approvals::model::Verdict;
use crate::approvals::policies::{self, UpsertPolicy};
use crate::approvals::submit::{self, Submit};
use crate::command::{self, Command, Ran};
use crate::error;
use crate::kernel::resolver::command_context;

#[derive(InputObject)]
pub struct SubmitRequestInput {
    /// Policy key, e.g. `refund`.
    policy: String,
    title: String,
    description: Option<String>,
    amount: Decimal,
    /// ISO 4217, e.g. `EUR`.
    currency: String,
    payload: Option<Json<Value>>,
    /// Same key and input within 24 h replays the outcome instead of acting twice.
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct SubmitRequestPayload {
    request: RequestNode,
    /// True when this answer replays an earlier call with the same idempotency key.
    replayed: bool,
}

#[derive(InputObject)]
pub struct DecideRequestInput {
    id: ID,
    /// The version you saw; a stale one is CONFLICT.
    expected_version: Option<i32>,
    /// Required to reject.
    comment: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct DecideRequestPayload {
    request: RequestNode,
    replayed: bool,
}

#[derive(InputObject)]
pub struct CancelRequestInput {
    id: ID,
    reason: String,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct CancelRequestPayload {
    request: RequestNode,
    replayed: bool,
}

#[derive(InputObject)]
pub struct StageInput {
    name: String,
    approver_roles: Vec<String>,
    required_approvals: i32,
    /// Per currency, the amount from which the stage applies. A request in a currency
    /// not listed here gets the stage whatever its amount (fail closed); with no
    /// thresholds at all the stage applies to every request.
    min_amounts: Option<Vec<MoneyInput>>,
}

/// An amount in a currency.
#[derive(InputObject)]
pub struct MoneyInput {
    amount: Decimal,
    /// ISO 4217, e.g. `EUR`.
    currency: String,
}

#[derive(InputObject)]
pub struct UpsertPolicyInput {
    key: String,
    name: String,
    description: Option<String>,
    expires_after_seconds: i64,
    payload_schema: Option<Json<Value>>,
    /// Defaults to false: one person approves at most one stage of a request.
    allow_same_approver_across_stages: Option<bool>,
    stages: Vec<StageInput>,
    /// The version you edited (0 for a new policy); if it is no longer the newest the
    /// save is CONFLICT, so an edit never silently undoes someone else's.
    expected_version: Option<i32>,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpsertPolicyPayload {
    policy: PolicyNode,
}

#[derive(Default)]
pub struct ApprovalsMutation;

/// Runs a request command (the pipeline tells the subscribers after commit).
async fn run_request_command<C>(
    ctx: &Context<'_>,
    key: Option<String>,
    command: C,
) -> error::Result<(RequestNode, bool)>
where
    C: Command<Output = request::Model>,
{
    let context = command_context(ctx, key)?;
    let Ran { output, replayed } = command::run_for(ctx, &context, &command).await?;
    Ok((RequestNode::new(output), replayed))
}

async fn decide(
    ctx: &Context<'_>,
    verdict: Verdict,
    input: DecideRequestInput,
) -> error::Result<DecideRequestPayload> {
    let command = Decide::new(
        verdict,
        DecideInput {
            id: input.id.0,
            expected_version: input.expected_version,
            comment: input.comment,
        },
    )?;
    let (request, replayed) = run_request_command(ctx, input.idempotency_key, command).await?;
    Ok(DecideRequestPayload { request, replayed })
}

#[Object]
impl ApprovalsMutation {
    /// File a request under a policy.
    async fn submit_request(
        &self,
        ctx: &Context<'_>,
        input: SubmitRequestInput,
    ) -> error::Result<SubmitRequestPayload> {
        let command = Submit::new(submit::SubmitRequestInput {
            policy: input.policy,
            title: input.title,
            description: input.description,
            amount: input.amount.0,
            currency: input.currency,
            payload: input.payload.map(|p| p.0),
        })?;
        let (request, replayed) = run_request_command(ctx, input.idempotency_key, command).await?;
        Ok(SubmitRequestPayload { request, replayed })
    }

    /// Approve the request's current stage.
    async fn approve_request(
        &self,
        ctx: &Context<'_>,
        input: DecideRequestInput,
    ) -> error::Result<DecideRequestPayload> {
        decide(ctx, Verdict::Approve, input).await
    }

    /// Reject the request (a comment is required).
    async fn reject_request(
        &self,
        ctx: &Context<'_>,
        input: DecideRequestInput,
    ) -> error::Result<DecideRequestPayload> {
        decide(ctx, Verdict::Reject, input).await
    }

    /// Cancel a pending request: its requester, or an admin of its policy.
    async fn cancel_request(
        &self,
        ctx: &Context<'_>,
        input: CancelRequestInput,
    ) -> error::Result<CancelRequestPayload> {
        let command = Cancel::new(input.id.0, Some(input.reason))?;
        let (request, replayed) = run_request_command(ctx, input.idempotency_key, command).await?;
        Ok(CancelRequestPayload { request, replayed })
    }

    /// Save a new version of a policy (or its first). Admins only.
    async fn upsert_policy(
        &self,
        ctx: &Context<'_>,
        input: UpsertPolicyInput,
    ) -> error::Result<UpsertPolicyPayload> {
        let context = command_context(ctx, input.idempotency_key)?;
        let command = UpsertPolicy::new(policies::UpsertPolicyInput {
            expected_version: input.expected_version,
            key: input.key,
            name: input.name,
            description: input.description.unwrap_or_default(),
            expires_after_seconds: input.expires_after_seconds,
            payload_schema: input.payload_schema.map(|s| s.0),
            allow_same_approver_across_stages: input
                .allow_same_approver_across_stages
                .unwrap_or(false),
            stages: input
                .stages
                .into_iter()
                .map(|s| policies::StageInput {
                    name: s.name,
                    approver_roles: s.approver_roles,
                    required_approvals: s.required_approvals,
                    min_amounts: s
                        .min_amounts
                        .unwrap_or_default()
                        .into_iter()
                        .map(|m| (m.amount.0, m.currency))
                        .collect(),
                })
                .collect(),
        })?;
        let ran = command::run_for(ctx, &context, &command).await?;
        Ok(UpsertPolicyPayload {
            policy: PolicyNode(ran.output),
        })
    }
}
