//! The approvals API's output types: requests, policies, stages, decisions, users.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, ID, InputValueError, InputValueResult, Json, Object, OutputType,
    Positioned, Scalar, ScalarType, ServerResult, SimpleObject, Value as GqlValue,
};
use entity::{decision, policy, policy_stage, request, user};
use serde_json::Value;

use crate::access::operation_grants;
use crate::access::requests::stage_roles;
use crate::approvals::loader::{Loaders, Related, loader_error};
use crate::approvals::model::{
    StageState, StageTally, Status, Verdict, stage_state, stored_decimal,
};
use crate::approvals::policies::{PolicyVersion, stage_rule, thresholds};
use crate::approvals::queries::{Page, eligible_approvers, viewer_may_cancel, viewer_may_decide};
use crate::audit::graphql::AuditEventNode;
use crate::error::{self, AppError};
use crate::kernel::Timestamp;
use crate::kernel::plain;
use crate::kernel::resolver::{clock, require_viewer};

pub(super) fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    // Inserted into every operation by `graphql::PerOperationLoaders`.
    ctx.data_unchecked::<Arc<Loaders>>()
}

/// An exact decimal carried as a string (`"1250.00"`); numbers are refused so that no
/// amount ever passes through a float.
pub struct Decimal(pub String);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    // Checked in validation too, so a number is refused before execution starts.
    fn is_valid(value: &GqlValue) -> bool {
        matches!(value, GqlValue::String(_))
    }

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
    fn from_row(subject: &str, row: Option<&user::Model>) -> Self {
        Self {
            subject: subject.to_owned(),
            name: row.and_then(|u| u.name.clone()),
            email: row.and_then(|u| u.email.clone()),
        }
    }
}

pub async fn load_user(ctx: &Context<'_>, subject: &str) -> error::Result<UserNode> {
    let row = loaders(ctx)
        .users
        .load_one(subject.to_owned())
        .await
        .map_err(loader_error)?;
    Ok(UserNode::from_row(subject, row.flatten().as_deref()))
}

/// One version of an approval policy.
pub struct PolicyNode(pub PolicyVersion);

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
    async fn stages(&self) -> error::Result<Vec<PolicyStage>> {
        self.0.stages.iter().map(PolicyStage::try_from).collect()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.policy.created_at)
    }
    async fn created_by(&self) -> &str {
        &self.0.policy.created_by
    }
}

/// A stage of a policy.
#[derive(SimpleObject)]
pub struct PolicyStage {
    /// 1-based order.
    pub(super) position: i32,
    pub(super) name: String,
    /// Roles that may decide this stage.
    pub(super) approver_roles: Vec<String>,
    /// Distinct approvals needed to complete the stage.
    pub(super) required_approvals: i32,
    /// For a request in one of these currencies, the stage applies only when its amount is
    /// at least that currency's threshold. In any other currency it always applies:
    /// thresholds are never compared across currencies.
    pub(super) min_amounts: Vec<Money>,
}

/// An amount in a currency.
#[derive(SimpleObject)]
pub struct Money {
    pub(super) amount: Decimal,
    /// ISO 4217.
    pub(super) currency: String,
}

impl TryFrom<&policy_stage::Model> for PolicyStage {
    type Error = AppError;

    fn try_from(stage: &policy_stage::Model) -> Result<Self, AppError> {
        Ok(Self {
            position: stage.position,
            name: stage.name.clone(),
            approver_roles: stage_roles(stage),
            required_approvals: stage.required_approvals,
            min_amounts: thresholds(stage)?
                .iter()
                .map(|(currency, min)| Money {
                    amount: Decimal(min.to_string()),
                    currency: currency.to_owned(),
                })
                .collect(),
        })
    }
}

/// A stage as it applies to one request.
#[derive(SimpleObject)]
pub struct RequestStage {
    pub(super) position: i32,
    pub(super) name: String,
    pub(super) approver_roles: Vec<String>,
    pub(super) required_approvals: i32,
    /// The stage's threshold in this request's currency, if it names one.
    pub(super) min_amount: Option<Decimal>,
    pub(super) state: StageState,
    /// Approvals given at this stage so far.
    pub(super) approvals: i32,
    pub(super) decisions: Vec<DecisionNode>,
}

/// One approver's verdict on one stage.
#[derive(Clone)]
pub struct DecisionNode(pub(super) decision::Model);

#[Object(name = "Decision")]
impl DecisionNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The stage position decided.
    async fn stage(&self) -> i32 {
        self.0.stage_position
    }
    async fn approver(&self, ctx: &Context<'_>) -> error::Result<UserNode> {
        load_user(ctx, &self.0.approver_subject).await
    }
    async fn verdict(&self) -> error::Result<Verdict> {
        stored_verdict(&self.0)
    }
    async fn comment(&self) -> &str {
        &self.0.comment
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
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

/// A request for approval. Its fields are answered from the rows loaded with its page
/// where they can be (`plain.rs`), by [`RequestFields`] otherwise.
pub struct RequestNode {
    fields: RequestFields,
    related: Option<Arc<Related>>,
}

impl RequestNode {
    pub fn new(row: request::Model) -> Self {
        Self {
            fields: RequestFields(row),
            related: None,
        }
    }

    /// A row of a page whose related rows were loaded into `related`.
    pub fn in_page(row: request::Model, related: Option<Arc<Related>>) -> Self {
        Self {
            fields: RequestFields(row),
            related,
        }
    }
}

impl OutputType for RequestNode {
    fn type_name() -> Cow<'static, str> {
        RequestFields::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        RequestFields::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<GqlValue> {
        match &self.related {
            Some(related) => {
                plain::resolve(related.as_ref(), &self.fields, &self.fields, ctx).await
            }
            None => self.fields.resolve(ctx, field).await,
        }
    }
}

/// The `ApprovalRequest` type's resolvers, each on its own: the schema, and the answer for
/// any field the page's rows do not hold.
pub struct RequestFields(pub request::Model);

pub(super) fn stored_verdict(row: &decision::Model) -> Result<Verdict, AppError> {
    Verdict::parse(&row.verdict)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("stored verdict {:?}", row.verdict)))
}

pub(super) fn stored_status(row: &request::Model) -> Result<Status, AppError> {
    Status::parse(&row.status)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("stored status {:?}", row.status)))
}

/// The stages of `policy` as they apply to `row`, given its decisions.
pub(super) fn request_stages(
    row: &request::Model,
    policy: &PolicyVersion,
    decisions: &[decision::Model],
) -> error::Result<Vec<RequestStage>> {
    let amount = stored_decimal(&row.amount)?;
    let status = stored_status(row)?;
    let mut stages = Vec::with_capacity(policy.stages.len());
    for stage in policy.stages.iter() {
        // Parsed once per stage: the definition's JSON is read for the threshold only.
        let rule = stage_rule(stage, &row.currency)?;
        let here: Vec<&decision::Model> = decisions
            .iter()
            .filter(|d| d.stage_position == stage.position)
            .collect();
        let tally = StageTally::of(here.iter().map(|d| d.verdict.as_str()));
        let state = stage_state(
            status,
            row.current_stage.unwrap_or(0),
            stage.position,
            stage.required_approvals,
            rule.applies_to(amount),
            tally,
        );
        stages.push(RequestStage {
            position: stage.position,
            name: stage.name.clone(),
            approver_roles: stage_roles(stage),
            required_approvals: stage.required_approvals,
            min_amount: rule.min_amount.map(|min| Decimal(min.to_string())),
            state,
            approvals: tally.approvals,
            decisions: here.into_iter().cloned().map(DecisionNode).collect(),
        });
    }
    Ok(stages)
}

impl RequestFields {
    async fn policy_version(&self, ctx: &Context<'_>) -> error::Result<PolicyVersion> {
        let l = loaders(ctx);
        let (policy, stages) = futures_join(
            l.policies.load_one(self.0.policy_id),
            l.stages.load_one(self.0.policy_id),
        )
        .await;
        let policy: Arc<policy::Model> = policy.map_err(loader_error)?.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("policy of {} missing", self.0.id))
        })?;
        Ok(PolicyVersion {
            policy,
            stages: stages.map_err(loader_error)?.unwrap_or_default(),
        })
    }

    async fn all_decisions(&self, ctx: &Context<'_>) -> error::Result<Arc<Vec<decision::Model>>> {
        Ok(loaders(ctx)
            .decisions
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default())
    }

    fn status_value(&self) -> Result<Status, AppError> {
        stored_status(&self.0)
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
impl RequestFields {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The policy version this request was submitted under.
    async fn policy(&self, ctx: &Context<'_>) -> error::Result<PolicyNode> {
        Ok(PolicyNode(self.policy_version(ctx).await?))
    }
    async fn status(&self) -> error::Result<Status> {
        self.status_value()
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
    async fn requester(&self, ctx: &Context<'_>) -> error::Result<UserNode> {
        load_user(ctx, &self.0.requester_subject).await
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }
    async fn expires_at(&self) -> Timestamp {
        Timestamp(self.0.expires_at)
    }
    async fn decided_at(&self) -> Option<Timestamp> {
        self.0.decided_at.map(Timestamp)
    }
    /// Every decision, oldest first.
    async fn decisions(&self, ctx: &Context<'_>) -> error::Result<Vec<DecisionNode>> {
        Ok(self
            .all_decisions(ctx)
            .await?
            .iter()
            .cloned()
            .map(DecisionNode)
            .collect())
    }
    /// The policy's stages as they apply to this request.
    async fn stages(&self, ctx: &Context<'_>) -> error::Result<Vec<RequestStage>> {
        let policy = self.policy_version(ctx).await?;
        let decisions = self.all_decisions(ctx).await?;
        request_stages(&self.0, &policy, &decisions)
    }
    /// What happened to this request, oldest first.
    async fn audit_trail(&self, ctx: &Context<'_>) -> error::Result<Vec<AuditEventNode>> {
        let events = loaders(ctx)
            .audit_trails
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        Ok(events.into_iter().map(AuditEventNode::from).collect())
    }
    /// Who could decide the current stage; empty once the request is terminal.
    async fn eligible_approvers(&self, ctx: &Context<'_>) -> error::Result<EligibleApprovers> {
        let policy = self.policy_version(ctx).await?;
        let decisions = self.all_decisions(ctx).await?;
        let (roles, users) =
            eligible_approvers(loaders(ctx), &self.0, &policy, &decisions, clock(ctx).now())
                .await?;
        Ok(EligibleApprovers {
            roles,
            users: users
                .into_iter()
                .map(|u| UserNode::from_row(&u.subject, Some(&u)))
                .collect(),
        })
    }
    /// Whether the viewer may cancel the request now: theirs or under a policy they manage,
    /// and still pending before its deadline. The console shows Cancel by it.
    async fn viewer_can_cancel(&self, ctx: &Context<'_>) -> error::Result<bool> {
        let viewer = require_viewer(ctx)?;
        let grants = operation_grants(ctx, viewer).await?;
        Ok(viewer_may_cancel(
            viewer,
            &grants,
            &self.0,
            clock(ctx).now(),
        ))
    }
    /// Whether the viewer may approve or reject the current stage now.
    async fn viewer_can_approve(&self, ctx: &Context<'_>) -> error::Result<bool> {
        let viewer = require_viewer(ctx)?;
        let policy = self.policy_version(ctx).await?;
        let decisions = self.all_decisions(ctx).await?;
        let grants = operation_grants(ctx, viewer).await?;
        Ok(viewer_may_decide(
            viewer,
            &grants,
            &self.0,
            &policy,
            &decisions,
            clock(ctx).now(),
        ))
    }
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

impl RequestConnection {
    /// A page whose related rows were prefetched into `related`.
    pub fn new(page: Page, related: Option<Arc<Related>>) -> Self {
        let end_cursor = page.rows.last().map(|(cursor, _)| cursor.clone());
        Self {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, row)| RequestEdge {
                    cursor,
                    node: RequestNode::in_page(row, related.clone()),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
        }
    }
}
