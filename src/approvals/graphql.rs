//! The approvals API: `request`, `requests`, `myQueue`, `policies` and the commands.
//! Resolvers are thin: they check who is calling and hand over to the service.

use std::sync::Arc;

use async_graphql::{
    Context, Enum, ID, InputObject, InputValueError, InputValueResult, Json, Object, Scalar,
    ScalarType, SimpleObject, Value as GqlValue,
};
use chrono::{DateTime, Utc};
use entity::{decision, policy, policy_stage, request, user};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::Value;

use super::loader::{Loaders, loader_error, prefetch};
use super::model::{Status, Verdict, stored_decimal};
use super::service::{
    self, DecideInput, Order, Outcome, Page, PolicyVersion, RequestFilter, stage_roles, stage_rule,
};
use crate::audit::graphql::AuditEventNode;
use crate::auth::Viewer;
use crate::auth::graphql::{command_context, require_viewer};
use crate::error::AppError;
use crate::events::bus::EventBus;

/// An exact decimal carried as a string (`"1250.00"`); numbers are refused so that no
/// amount ever passes through a float.
pub struct Decimal(pub String);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        match value {
            GqlValue::String(s) => Ok(Self(s)),
            _ => Err(InputValueError::custom(
                "a Decimal is a string such as \"1250.00\", never a number",
            )),
        }
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(self.0.clone())
    }
}

fn db<'a>(ctx: &Context<'a>) -> &'a DatabaseConnection {
    ctx.data_unchecked::<DatabaseConnection>()
}

fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    // Inserted into every operation by `graphql::PerOperationLoaders`.
    ctx.data_unchecked::<Loaders>()
}

// ---------------------------------------------------------------------------------------
// Output types

/// A person or service known from a verified token.
#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct UserNode {
    subject: String,
    name: Option<String>,
    email: Option<String>,
}

impl UserNode {
    fn from_row(subject: &str, row: Option<user::Model>) -> Self {
        Self {
            subject: subject.to_owned(),
            name: row.as_ref().and_then(|u| u.name.clone()),
            email: row.and_then(|u| u.email),
        }
    }
}

pub async fn load_user(ctx: &Context<'_>, subject: &str) -> async_graphql::Result<UserNode> {
    let row = loaders(ctx)
        .users
        .load_one(subject.to_owned())
        .await
        .map_err(loader_error)?;
    Ok(UserNode::from_row(subject, row))
}

/// One version of an approval policy.
pub struct PolicyNode(PolicyVersion);

#[Object(name = "Policy")]
impl PolicyNode {
    async fn key(&self) -> &str {
        &self.0.policy.key
    }
    /// Increments on every edit; requests keep the version they were submitted under.
    async fn version(&self) -> i32 {
        self.0.policy.version
    }
    async fn name(&self) -> &str {
        &self.0.policy.name
    }
    async fn description(&self) -> &str {
        &self.0.policy.description
    }
    /// How long a request may stay pending before it expires.
    async fn expires_after_seconds(&self) -> i64 {
        self.0.policy.expires_after_seconds
    }
    /// JSON Schema every request payload must satisfy, if any.
    async fn payload_schema(&self) -> Option<Json<Value>> {
        self.0.policy.payload_schema.clone().map(Json)
    }
    /// Whether one person may approve more than one stage of the same request.
    async fn allow_same_approver_across_stages(&self) -> bool {
        self.0.policy.allow_same_approver_across_stages
    }
    async fn stages(&self) -> Vec<PolicyStage> {
        self.0.stages.iter().map(PolicyStage::from).collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.policy.created_at
    }
    async fn created_by(&self) -> &str {
        &self.0.policy.created_by
    }
}

/// A stage of a policy.
#[derive(SimpleObject)]
pub struct PolicyStage {
    /// 1-based order.
    position: i32,
    name: String,
    /// Roles that may decide this stage.
    approver_roles: Vec<String>,
    /// Distinct approvals needed to complete the stage.
    required_approvals: i32,
    /// The stage applies only when the amount is at least this.
    min_amount: Option<Decimal>,
}

impl From<&policy_stage::Model> for PolicyStage {
    fn from(stage: &policy_stage::Model) -> Self {
        Self {
            position: stage.position,
            name: stage.name.clone(),
            approver_roles: stage_roles(stage),
            required_approvals: stage.required_approvals,
            min_amount: stage.min_amount.clone().map(Decimal),
        }
    }
}

/// Where a stage of one request stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Not reached yet.
    Waiting,
    /// Being decided now.
    Active,
    Approved,
    Rejected,
    /// Does not apply to this request's amount.
    Skipped,
    /// The request ended before this stage was completed.
    Closed,
}

/// A stage as it applies to one request.
#[derive(SimpleObject)]
pub struct RequestStage {
    position: i32,
    name: String,
    approver_roles: Vec<String>,
    required_approvals: i32,
    min_amount: Option<Decimal>,
    state: StageState,
    /// Approvals given at this stage so far.
    approvals: i32,
    decisions: Vec<DecisionNode>,
}

/// One approver's verdict on one stage.
#[derive(Clone)]
pub struct DecisionNode(decision::Model);

#[Object(name = "Decision")]
impl DecisionNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The stage position decided.
    async fn stage(&self) -> i32 {
        self.0.stage_position
    }
    async fn approver(&self, ctx: &Context<'_>) -> async_graphql::Result<UserNode> {
        load_user(ctx, &self.0.approver_subject).await
    }
    async fn verdict(&self) -> async_graphql::Result<Verdict> {
        Ok(Verdict::parse(&self.0.verdict).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("stored verdict {:?}", self.0.verdict))
        })?)
    }
    async fn comment(&self) -> &str {
        &self.0.comment
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Who could decide the request's current stage.
#[derive(SimpleObject)]
pub struct EligibleApprovers {
    /// The roles that may decide it.
    roles: Vec<String>,
    /// Known people holding one of them who may decide it now.
    users: Vec<UserNode>,
}

/// A request for approval.
pub struct RequestNode(pub request::Model);

impl RequestNode {
    async fn policy_version(&self, ctx: &Context<'_>) -> async_graphql::Result<PolicyVersion> {
        let l = loaders(ctx);
        let (policy, stages) = futures_join(
            l.policies.load_one(self.0.policy_id),
            l.stages.load_one(self.0.policy_id),
        )
        .await;
        let policy: policy::Model = policy.map_err(loader_error)?.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("policy of {} missing", self.0.id))
        })?;
        Ok(PolicyVersion {
            policy,
            stages: stages.map_err(loader_error)?.unwrap_or_default(),
        })
    }

    async fn all_decisions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<decision::Model>> {
        Ok(loaders(ctx)
            .decisions
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default())
    }

    fn status_value(&self) -> Result<Status, AppError> {
        Status::parse(&self.0.status)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("stored status {:?}", self.0.status)))
    }

    /// Whether `viewer` may decide the current stage now (the service re-checks all of it
    /// inside the decision's transaction).
    fn may_decide(
        &self,
        subject: &str,
        roles: &[String],
        policy: &PolicyVersion,
        decisions: &[decision::Model],
    ) -> bool {
        if self.0.status != Status::Pending.as_str()
            || self.0.expires_at <= Utc::now()
            || self.0.requester_subject == subject
        {
            return false;
        }
        let Some(stage) = self
            .0
            .current_stage
            .and_then(|pos| policy.stages.iter().find(|s| s.position == pos))
        else {
            return false;
        };
        if !stage_roles(stage).iter().any(|r| roles.contains(r)) {
            return false;
        }
        let decided_here = decisions
            .iter()
            .any(|d| d.approver_subject == subject && d.stage_position == stage.position);
        let decided_any = decisions.iter().any(|d| d.approver_subject == subject);
        !(decided_here || (!policy.policy.allow_same_approver_across_stages && decided_any))
    }
}

async fn futures_join<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    tokio::join!(a, b)
}

#[Object(name = "ApprovalRequest")]
impl RequestNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The policy version this request was submitted under.
    async fn policy(&self, ctx: &Context<'_>) -> async_graphql::Result<PolicyNode> {
        Ok(PolicyNode(self.policy_version(ctx).await?))
    }
    async fn status(&self) -> async_graphql::Result<Status> {
        Ok(self.status_value()?)
    }
    /// Position of the stage being decided (or last decided, once terminal).
    async fn current_stage(&self) -> Option<i32> {
        self.0.current_stage
    }
    /// Increments on every change; pass it as `expectedVersion` to act on what you saw.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn amount(&self) -> Decimal {
        Decimal(self.0.amount.clone())
    }
    /// ISO 4217.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn payload(&self) -> Json<Value> {
        Json(self.0.payload.clone())
    }
    async fn requester(&self, ctx: &Context<'_>) -> async_graphql::Result<UserNode> {
        load_user(ctx, &self.0.requester_subject).await
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn decided_at(&self) -> Option<DateTime<Utc>> {
        self.0.decided_at
    }
    /// Every decision, oldest first.
    async fn decisions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DecisionNode>> {
        Ok(self
            .all_decisions(ctx)
            .await?
            .into_iter()
            .map(DecisionNode)
            .collect())
    }
    /// The policy's stages as they apply to this request.
    async fn stages(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RequestStage>> {
        let policy = self.policy_version(ctx).await?;
        let decisions = self.all_decisions(ctx).await?;
        let amount = stored_decimal(&self.0.amount)?;
        let status = self.status_value()?;
        let mut stages = Vec::with_capacity(policy.stages.len());
        for stage in &policy.stages {
            let rule = stage_rule(stage)?;
            let here: Vec<decision::Model> = decisions
                .iter()
                .filter(|d| d.stage_position == stage.position)
                .cloned()
                .collect();
            let approvals = here
                .iter()
                .filter(|d| d.verdict == Verdict::Approve.as_str())
                .count();
            let approvals = i32::try_from(approvals).unwrap_or(i32::MAX);
            let current = self.0.current_stage.unwrap_or(0);
            let state = if !rule.applies_to(amount) {
                StageState::Skipped
            } else if here.iter().any(|d| d.verdict == Verdict::Reject.as_str()) {
                StageState::Rejected
            } else if approvals >= stage.required_approvals {
                StageState::Approved
            } else if status == Status::Pending && stage.position == current {
                StageState::Active
            } else if status == Status::Pending && stage.position > current {
                StageState::Waiting
            } else {
                StageState::Closed
            };
            let definition = PolicyStage::from(stage);
            stages.push(RequestStage {
                position: definition.position,
                name: definition.name,
                approver_roles: definition.approver_roles,
                required_approvals: definition.required_approvals,
                min_amount: definition.min_amount,
                state,
                approvals,
                decisions: here.into_iter().map(DecisionNode).collect(),
            });
        }
        Ok(stages)
    }
    /// What happened to this request, oldest first.
    async fn audit_trail(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AuditEventNode>> {
        let events = loaders(ctx)
            .audit_trails
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        Ok(events.into_iter().map(AuditEventNode::from).collect())
    }
    /// Who could decide the current stage; empty once the request is terminal.
    async fn eligible_approvers(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<EligibleApprovers> {
        let policy = self.policy_version(ctx).await?;
        let stage = self
            .0
            .current_stage
            .filter(|_| self.0.status == Status::Pending.as_str())
            .and_then(|pos| policy.stages.iter().find(|s| s.position == pos));
        let Some(stage) = stage else {
            return Ok(EligibleApprovers {
                roles: Vec::new(),
                users: Vec::new(),
            });
        };
        let roles = stage_roles(stage);
        let decisions = self.all_decisions(ctx).await?;
        let mut holders = user::Entity::find()
            .filter(role_holders(&roles))
            .all(db(ctx))
            .await?;
        holders.sort_by(|a, b| a.subject.cmp(&b.subject));
        let users = holders
            .into_iter()
            .filter(|u| {
                let their_roles: Vec<String> =
                    serde_json::from_value(u.roles.clone()).unwrap_or_default();
                self.may_decide(&u.subject, &their_roles, &policy, &decisions)
            })
            .map(|u| UserNode::from_row(&u.subject.clone(), Some(u)))
            .collect();
        Ok(EligibleApprovers { roles, users })
    }
    /// Whether the viewer may approve or reject the current stage now.
    async fn viewer_can_approve(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let viewer = require_viewer(ctx)?;
        let policy = self.policy_version(ctx).await?;
        let decisions = self.all_decisions(ctx).await?;
        Ok(self.may_decide(&viewer.subject, &viewer.roles, &policy, &decisions))
    }
}

/// Users whose last token carried any of `roles`: a coarse text match in SQL, made exact
/// in Rust by `may_decide`.
fn role_holders(roles: &[String]) -> sea_orm::Condition {
    let mut any = sea_orm::Condition::any();
    for role in roles {
        let pattern = format!(
            "%\"{}\"%",
            role.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        any = any.add(
            Expr::expr(Func::cast_as(
                Expr::col(user::Column::Roles),
                Alias::new("TEXT"),
            ))
            .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    any.add(user::Column::DisabledAt.is_null())
}

/// A page of requests.
#[derive(SimpleObject)]
pub struct RequestConnection {
    edges: Vec<RequestEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct RequestEdge {
    /// Pass as `after` to continue after this row.
    cursor: String,
    node: RequestNode,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

impl From<Page> for RequestConnection {
    fn from(page: Page) -> Self {
        let end_cursor = page.rows.last().map(|(cursor, _)| cursor.clone());
        Self {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, row)| RequestEdge {
                    cursor,
                    node: RequestNode(row),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queries

#[derive(InputObject, Default)]
#[graphql(name = "RequestFilter")]
pub struct RequestFilterInput {
    status: Option<Status>,
    /// Policy key.
    policy: Option<String>,
    /// Requester subject.
    requester: Option<String>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    /// Case-insensitive text in the title.
    search: Option<String>,
}

#[derive(Default)]
pub struct ApprovalsQuery;

#[Object]
impl ApprovalsQuery {
    /// A request by id; null when it does not exist or the viewer may not see it.
    async fn request(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<RequestNode>> {
        let viewer = require_viewer(ctx)?;
        Ok(service::find_visible(db(ctx), viewer, &id)
            .await?
            .map(RequestNode))
    }

    /// Requests the viewer may see, newest first by default. Keyset-paginated; `first` ≤ 100.
    async fn requests(
        &self,
        ctx: &Context<'_>,
        filter: Option<RequestFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        order_by: Option<Order>,
    ) -> async_graphql::Result<RequestConnection> {
        let viewer = require_viewer(ctx)?;
        let filter = filter.unwrap_or_default();
        let page = service::list(
            db(ctx),
            viewer,
            RequestFilter {
                status: filter.status,
                policy: filter.policy,
                requester: filter.requester,
                created_after: filter.created_after,
                created_before: filter.created_before,
                search: filter.search,
            },
            order_by.unwrap_or_default(),
            first,
            after,
        )
        .await?;
        prefetch(ctx, &page.rows.iter().map(|(_, r)| r).collect::<Vec<_>>()).await?;
        Ok(page.into())
    }

    /// Pending requests the viewer may decide now, oldest first.
    async fn my_queue(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RequestConnection> {
        let viewer = require_viewer(ctx)?;
        Ok(service::my_queue(db(ctx), viewer, first, after)
            .await?
            .into())
    }

    /// The current version of every policy the viewer may use, decide or manage.
    async fn policies(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PolicyNode>> {
        let viewer = require_viewer(ctx)?;
        Ok(service::visible_policies(db(ctx), viewer)
            .await?
            .into_iter()
            .map(PolicyNode)
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// Commands

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
    min_amount: Option<Decimal>,
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
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpsertPolicyPayload {
    policy: PolicyNode,
}

#[derive(Default)]
pub struct ApprovalsMutation;

/// The payload parts of a command's outcome. A fresh (not replayed) outcome appended to the
/// audit log after commit: tell the subscribers.
fn payload_of(ctx: &Context<'_>, outcome: Outcome) -> (RequestNode, bool) {
    if !outcome.replayed {
        if let Some(bus) = ctx.data_opt::<Arc<EventBus>>() {
            bus.audit_appended();
        }
    }
    (RequestNode(outcome.request), outcome.replayed)
}

async fn decide(
    ctx: &Context<'_>,
    verdict: Verdict,
    input: DecideRequestInput,
) -> async_graphql::Result<DecideRequestPayload> {
    let viewer: &Viewer = require_viewer(ctx)?;
    let outcome = service::decide(
        db(ctx),
        viewer,
        &command_context(ctx),
        verdict,
        DecideInput {
            id: input.id.0,
            expected_version: input.expected_version,
            comment: input.comment,
            idempotency_key: input.idempotency_key,
        },
    )
    .await?;
    let (request, replayed) = payload_of(ctx, outcome);
    Ok(DecideRequestPayload { request, replayed })
}

#[Object]
impl ApprovalsMutation {
    /// File a request under a policy.
    async fn submit_request(
        &self,
        ctx: &Context<'_>,
        input: SubmitRequestInput,
    ) -> async_graphql::Result<SubmitRequestPayload> {
        let viewer = require_viewer(ctx)?;
        let outcome = service::submit(
            db(ctx),
            viewer,
            &command_context(ctx),
            service::SubmitRequestInput {
                policy: input.policy,
                title: input.title,
                description: input.description,
                amount: input.amount.0,
                currency: input.currency,
                payload: input.payload.map(|p| p.0),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        let (request, replayed) = payload_of(ctx, outcome);
        Ok(SubmitRequestPayload { request, replayed })
    }

    /// Approve the request's current stage.
    async fn approve_request(
        &self,
        ctx: &Context<'_>,
        input: DecideRequestInput,
    ) -> async_graphql::Result<DecideRequestPayload> {
        decide(ctx, Verdict::Approve, input).await
    }

    /// Reject the request (a comment is required).
    async fn reject_request(
        &self,
        ctx: &Context<'_>,
        input: DecideRequestInput,
    ) -> async_graphql::Result<DecideRequestPayload> {
        decide(ctx, Verdict::Reject, input).await
    }

    /// Cancel a pending request: its requester, or an admin of its policy.
    async fn cancel_request(
        &self,
        ctx: &Context<'_>,
        input: CancelRequestInput,
    ) -> async_graphql::Result<CancelRequestPayload> {
        let viewer = require_viewer(ctx)?;
        let outcome = service::cancel(
            db(ctx),
            viewer,
            &command_context(ctx),
            service::CancelInput {
                id: input.id.0,
                reason: Some(input.reason),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        let (request, replayed) = payload_of(ctx, outcome);
        Ok(CancelRequestPayload { request, replayed })
    }

    /// Save a new version of a policy (or its first). Admins only.
    async fn upsert_policy(
        &self,
        ctx: &Context<'_>,
        input: UpsertPolicyInput,
    ) -> async_graphql::Result<UpsertPolicyPayload> {
        let viewer = require_viewer(ctx)?;
        let version = service::upsert_policy(
            db(ctx),
            viewer,
            &command_context(ctx),
            service::UpsertPolicyInput {
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
                    .map(|s| service::StageInput {
                        name: s.name,
                        approver_roles: s.approver_roles,
                        required_approvals: s.required_approvals,
                        min_amount: s.min_amount.map(|m| m.0),
                    })
                    .collect(),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(UpsertPolicyPayload {
            policy: PolicyNode(version),
        })
    }
}
