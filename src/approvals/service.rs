//! Policies and requests: the commands (each one write transaction) and the queue queries.
//!
//! Every command follows one shape, in this order, inside `db::write_transaction`:
//! claim the idempotency key → read and check (authorization and data rules, here, in the
//! transaction) → guarded write on `version` → complete the key → append the audit event
//! (it locks the chain head, so it comes last) → enqueue the outbox entry.
//! Nothing is published from inside the transaction.

use chrono::{DateTime, SubsecRound, Utc};
use entity::{decision, policy, policy_stage, request};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{
    AfterApproval, Money, StageRule, Status, Verdict, after_approval, next_applicable_stage,
    stored_decimal, validate_comment, validate_description, validate_payload, validate_title,
};
use crate::audit::{self, NewEvent};
use crate::auth::Viewer;
use crate::error::AppError;
use crate::events::outbox;
use crate::idempotency::{self, Claim, CommandKey};
use crate::permissions::service::{authorize, grants_for};
use crate::permissions::{Action, Grants, Scope};

/// Timestamps are kept to the microsecond: what both databases store exactly, so a
/// timestamp read back (or carried in a cursor) compares equal to the one written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Where a command came from, for the audit log.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    /// The HTTP request id.
    pub correlation_id: Option<String>,
}

/// A request after a command, and whether this answer replays an earlier one.
#[derive(Debug)]
pub struct Outcome {
    pub request: request::Model,
    pub replayed: bool,
}

/// A policy version with its stages in order.
#[derive(Clone, Debug)]
pub struct PolicyVersion {
    pub policy: policy::Model,
    pub stages: Vec<policy_stage::Model>,
}

// ---------------------------------------------------------------------------------------
// Policies

pub struct StageInput {
    pub name: String,
    pub approver_roles: Vec<String>,
    pub required_approvals: i32,
    pub min_amount: Option<String>,
}

pub struct UpsertPolicyInput {
    pub key: String,
    pub name: String,
    pub description: String,
    pub expires_after_seconds: i64,
    pub payload_schema: Option<Value>,
    pub allow_same_approver_across_stages: bool,
    pub stages: Vec<StageInput>,
    pub idempotency_key: Option<String>,
}

const MAX_STAGES: usize = 10;
const MAX_REQUIRED_APPROVALS: i32 = 20;
const MIN_EXPIRY_SECONDS: i64 = 60;
const MAX_EXPIRY_SECONDS: i64 = 366 * 24 * 3600;

fn validate_policy(input: &UpsertPolicyInput) -> Result<Vec<StageRule>, AppError> {
    let key_ok = !input.key.is_empty()
        && input.key.len() <= 64
        && input.key.starts_with(|c: char| c.is_ascii_lowercase())
        && input
            .key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !key_ok {
        return Err(AppError::bad_input(
            "key",
            "a policy key is 1 to 64 characters of a-z, 0-9 and _, starting with a letter",
        ));
    }
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::bad_input(
            "name",
            "name must be 1 to 200 characters",
        ));
    }
    validate_description(&input.description)?;
    if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&input.expires_after_seconds) {
        return Err(AppError::bad_input(
            "expiresAfterSeconds",
            format!(
                "expiresAfterSeconds must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}"
            ),
        ));
    }
    if let Some(schema) = &input.payload_schema {
        if let Err(err) = jsonschema::validator_for(schema) {
            return Err(AppError::bad_input(
                "payloadSchema",
                format!("payloadSchema is not a valid JSON Schema: {err}"),
            ));
        }
    }
    if input.stages.is_empty() || input.stages.len() > MAX_STAGES {
        return Err(AppError::bad_input(
            "stages",
            format!("a policy has 1 to {MAX_STAGES} stages"),
        ));
    }
    let mut rules = Vec::with_capacity(input.stages.len());
    for (position, stage) in (1..).zip(&input.stages) {
        let name = stage.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AppError::bad_input(
                "stages.name",
                "a stage name is 1 to 200 characters",
            ));
        }
        if stage.approver_roles.is_empty()
            || stage
                .approver_roles
                .iter()
                .any(|r| r.trim().is_empty() || r.len() > 64)
        {
            return Err(AppError::bad_input(
                "stages.approverRoles",
                "a stage names at least one approver role",
            ));
        }
        if !(1..=MAX_REQUIRED_APPROVALS).contains(&stage.required_approvals) {
            return Err(AppError::bad_input(
                "stages.requiredApprovals",
                format!("requiredApprovals is 1 to {MAX_REQUIRED_APPROVALS}"),
            ));
        }
        let min_amount = match &stage.min_amount {
            None => None,
            Some(raw) => match super::model::parse_decimal(raw) {
                Some(min) if min >= Decimal::ZERO => Some(min),
                _ => {
                    return Err(AppError::bad_input(
                        "stages.minAmount",
                        "minAmount must be a decimal string of at least zero",
                    ));
                }
            },
        };
        rules.push(StageRule {
            position,
            required_approvals: stage.required_approvals,
            min_amount,
        });
    }
    Ok(rules)
}

/// Creates the next version of a policy (or its first). Admins only; audited.
pub async fn upsert_policy(
    db: &DatabaseConnection,
    viewer: &Viewer,
    context: &CommandContext,
    input: UpsertPolicyInput,
) -> Result<PolicyVersion, AppError> {
    let rules = validate_policy(&input)?;
    let key = CommandKey::parse(
        &viewer.subject,
        input.idempotency_key.as_deref(),
        "upsertPolicy",
        &json!({
            "key": input.key, "name": input.name, "description": input.description,
            "expiresAfterSeconds": input.expires_after_seconds,
            "payloadSchema": input.payload_schema,
            "allowSameApproverAcrossStages": input.allow_same_approver_across_stages,
            "stages": input.stages.iter().map(|s| json!({
                "name": s.name, "approverRoles": s.approver_roles,
                "requiredApprovals": s.required_approvals, "minAmount": s.min_amount,
            })).collect::<Vec<_>>(),
        }),
    )?;

    let result = crate::write_transaction!(db, |txn| {
        if let Some(key) = &key {
            if let Claim::Replay(response) = idempotency::claim(txn, key).await? {
                let id = response_id(&response, "policyId")?;
                return load_policy_version(txn, id).await;
            }
        }
        authorize(txn, viewer, Action::PolicyManage, Some(&input.key)).await?;
        let previous = current_policy(txn, &input.key).await?;
        let version = previous.as_ref().map_or(1, |p| p.policy.version + 1);
        let policy_id = Uuid::now_v7();
        let created = policy::ActiveModel {
            id: Set(policy_id),
            key: Set(input.key.clone()),
            version: Set(version),
            name: Set(input.name.trim().to_owned()),
            description: Set(input.description.clone()),
            expires_after_seconds: Set(input.expires_after_seconds),
            payload_schema: Set(input.payload_schema.clone()),
            allow_same_approver_across_stages: Set(input.allow_same_approver_across_stages),
            created_by: Set(viewer.subject.clone()),
            created_at: Set(now()),
        }
        .insert(txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                AppError::Conflict("the policy changed concurrently; read it again".into())
            }
            _ => err.into(),
        })?;
        let mut stages = Vec::with_capacity(rules.len());
        for (rule, stage) in rules.iter().zip(&input.stages) {
            let mut roles: Vec<String> = stage
                .approver_roles
                .iter()
                .map(|r| r.trim().to_owned())
                .collect();
            roles.dedup();
            stages.push(
                policy_stage::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    policy_id: Set(policy_id),
                    position: Set(rule.position),
                    name: Set(stage.name.trim().to_owned()),
                    approver_roles: Set(json!(roles)),
                    required_approvals: Set(rule.required_approvals),
                    min_amount: Set(rule.min_amount.map(|m| m.normalize().to_string())),
                }
                .insert(txn)
                .await?,
            );
        }
        let version_now = PolicyVersion {
            policy: created,
            stages,
        };
        if let Some(key) = &key {
            idempotency::complete(txn, key, json!({ "policyId": policy_id })).await?;
        }
        audit::service::append(
            txn,
            NewEvent {
                actor_subject: viewer.subject.clone(),
                actor_roles: viewer.roles.clone(),
                action: "policy.upserted".into(),
                subject_type: "policy".into(),
                subject_id: input.key.clone(),
                request_id: None,
                before: previous.as_ref().map(policy_snapshot),
                after: Some(policy_snapshot(&version_now)),
                reason: None,
                correlation_id: context.correlation_id.clone(),
                idempotency_key: key.as_ref().map(|k| k.key.clone()),
                summary: format!(
                    "{} saved policy {} as version {version}",
                    viewer.subject, input.key
                ),
            },
        )
        .await?;
        Ok(version_now)
    });
    audit::service::audit_refusal(
        result,
        db,
        viewer,
        context,
        "policy.upsert",
        "policy",
        &input.key,
        None,
    )
    .await
}

fn policy_snapshot(version: &PolicyVersion) -> Value {
    json!({
        "key": version.policy.key,
        "version": version.policy.version,
        "name": version.policy.name,
        "description": version.policy.description,
        "expiresAfterSeconds": version.policy.expires_after_seconds,
        "payloadSchema": version.policy.payload_schema,
        "allowSameApproverAcrossStages": version.policy.allow_same_approver_across_stages,
        "stages": version.stages.iter().map(|s| json!({
            "position": s.position,
            "name": s.name,
            "approverRoles": s.approver_roles,
            "requiredApprovals": s.required_approvals,
            "minAmount": s.min_amount,
        })).collect::<Vec<_>>(),
    })
}

/// The newest version of the policy `key`.
pub async fn current_policy<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<PolicyVersion>, AppError> {
    let Some(policy) = policy::Entity::find()
        .filter(policy::Column::Key.eq(key))
        .order_by_desc(policy::Column::Version)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let stages = stages_of(db, policy.id).await?;
    Ok(Some(PolicyVersion { policy, stages }))
}

async fn load_policy_version<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<PolicyVersion, AppError> {
    let policy = policy::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("policy {id} vanished"))?;
    let stages = stages_of(db, id).await?;
    Ok(PolicyVersion { policy, stages })
}

async fn stages_of<C: ConnectionTrait>(
    db: &C,
    policy_id: Uuid,
) -> Result<Vec<policy_stage::Model>, AppError> {
    Ok(policy_stage::Entity::find()
        .filter(policy_stage::Column::PolicyId.eq(policy_id))
        .order_by_asc(policy_stage::Column::Position)
        .all(db)
        .await?)
}

/// The current version of every policy the viewer may submit to, view, or manage.
pub async fn visible_policies(
    db: &DatabaseConnection,
    viewer: &Viewer,
) -> Result<Vec<PolicyVersion>, AppError> {
    let grants = grants_for(db, viewer).await?;
    let all = policy::Entity::find()
        .order_by_asc(policy::Column::Key)
        .order_by_desc(policy::Column::Version)
        .all(db)
        .await?;
    let mut current: Vec<policy::Model> = Vec::new();
    for policy in all {
        if current.last().is_some_and(|p| p.key == policy.key) {
            continue; // an older version
        }
        let key = Some(policy.key.as_str());
        if grants.allows(Action::PolicyManage, key)
            || grants.allows(Action::RequestSubmit, key)
            || grants.allows(Action::RequestView, key)
            || decides_policy(db, viewer, policy.id).await?
        {
            current.push(policy);
        }
    }
    let mut versions = Vec::with_capacity(current.len());
    for policy in current {
        let stages = stages_of(db, policy.id).await?;
        versions.push(PolicyVersion { policy, stages });
    }
    Ok(versions)
}

async fn decides_policy<C: ConnectionTrait>(
    db: &C,
    viewer: &Viewer,
    policy_id: Uuid,
) -> Result<bool, AppError> {
    Ok(stages_of(db, policy_id)
        .await?
        .iter()
        .any(|stage| stage_roles(stage).iter().any(|r| viewer.has_role(r))))
}

pub fn stage_roles(stage: &policy_stage::Model) -> Vec<String> {
    serde_json::from_value(stage.approver_roles.clone()).unwrap_or_default()
}

pub fn stage_rule(stage: &policy_stage::Model) -> Result<StageRule, AppError> {
    Ok(StageRule {
        position: stage.position,
        required_approvals: stage.required_approvals,
        min_amount: stage
            .min_amount
            .as_deref()
            .map(stored_decimal)
            .transpose()?,
    })
}

// ---------------------------------------------------------------------------------------
// Commands on requests

pub struct SubmitRequestInput {
    pub policy: String,
    pub title: String,
    pub description: Option<String>,
    pub amount: String,
    pub currency: String,
    pub payload: Option<Value>,
    pub idempotency_key: Option<String>,
}

pub async fn submit(
    db: &DatabaseConnection,
    viewer: &Viewer,
    context: &CommandContext,
    input: SubmitRequestInput,
) -> Result<Outcome, AppError> {
    let key = CommandKey::parse(
        &viewer.subject,
        input.idempotency_key.as_deref(),
        "submitRequest",
        &json!({
            "policy": input.policy, "title": input.title, "description": input.description,
            "amount": input.amount, "currency": input.currency, "payload": input.payload,
        }),
    )?;
    // Everything that needs no database is checked before the transaction.
    let title = validate_title(&input.title)?;
    let description = validate_description(input.description.as_deref().unwrap_or_default())?;
    let money = Money::parse(&input.amount, &input.currency)?;
    let payload = input.payload.clone().unwrap_or_else(|| json!({}));
    validate_payload(&payload)?;

    let result = crate::write_transaction!(db, |txn| {
        if let Some(replayed) = claim_or_replay(txn, key.as_ref()).await? {
            return Ok(replayed);
        }
        let policy = current_policy(txn, &input.policy).await?.ok_or_else(|| {
            AppError::bad_input("policy", format!("there is no policy {:?}", input.policy))
        })?;
        authorize(txn, viewer, Action::RequestSubmit, Some(&policy.policy.key)).await?;
        if let Some(schema) = &policy.policy.payload_schema {
            check_payload_schema(schema, &payload)?;
        }
        let rules = policy
            .stages
            .iter()
            .map(stage_rule)
            .collect::<Result<Vec<_>, _>>()?;
        let first_stage = next_applicable_stage(&rules, money.amount, 1);
        let now = now();
        let status = if first_stage.is_some() {
            Status::Pending
        } else {
            Status::Approved
        };
        let created = request::ActiveModel {
            id: Set(Uuid::now_v7()),
            policy_id: Set(policy.policy.id),
            policy_key: Set(policy.policy.key.clone()),
            policy_version: Set(policy.policy.version),
            title: Set(title.clone()),
            description: Set(description.clone()),
            payload: Set(payload.clone()),
            amount: Set(money.amount.to_string()),
            currency: Set(money.currency.clone()),
            requester_subject: Set(viewer.subject.clone()),
            status: Set(status.as_str().into()),
            current_stage: Set(first_stage),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            expires_at: Set(now + chrono::Duration::seconds(policy.policy.expires_after_seconds)),
            decided_at: Set(status.is_terminal().then_some(now)),
        }
        .insert(txn)
        .await?;
        if let Some(key) = &key {
            idempotency::complete(txn, key, json!({ "requestId": created.id })).await?;
        }
        let summary = format!(
            "{} submitted {} {:?} for {} {}",
            viewer.subject, created.policy_key, created.title, created.amount, created.currency
        );
        record_transition(
            txn,
            viewer,
            context,
            key.as_ref(),
            &created,
            None,
            "request.submitted",
            "SUBMITTED",
            None,
            summary,
        )
        .await?;
        Ok(Outcome {
            request: created,
            replayed: false,
        })
    });
    audit::service::audit_refusal(
        result,
        db,
        viewer,
        context,
        "request.submit",
        "policy",
        &input.policy,
        None,
    )
    .await
}

fn check_payload_schema(schema: &Value, payload: &Value) -> Result<(), AppError> {
    let validator = jsonschema::validator_for(schema).map_err(|err| {
        AppError::Internal(anyhow::anyhow!("stored payload schema is invalid: {err}"))
    })?;
    if let Some(error) = validator.iter_errors(payload).next() {
        let at = error.instance_path().to_string();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" at {at}")
        };
        return Err(AppError::bad_input(
            "payload",
            format!("payload does not match the policy's schema{at}: {error}"),
        ));
    }
    Ok(())
}

pub struct DecideInput {
    pub id: String,
    pub expected_version: Option<i32>,
    pub comment: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Approve or reject the request's current stage.
pub async fn decide(
    db: &DatabaseConnection,
    viewer: &Viewer,
    context: &CommandContext,
    verdict: Verdict,
    input: DecideInput,
) -> Result<Outcome, AppError> {
    let operation = match verdict {
        Verdict::Approve => "approveRequest",
        Verdict::Reject => "rejectRequest",
    };
    let key = CommandKey::parse(
        &viewer.subject,
        input.idempotency_key.as_deref(),
        operation,
        &json!({ "id": input.id, "expectedVersion": input.expected_version, "comment": input.comment }),
    )?;
    let comment = validate_comment(
        "comment",
        input.comment.as_deref(),
        verdict == Verdict::Reject,
    )?;
    let id = parse_request_id(&input.id)?;

    let result = crate::write_transaction!(db, |txn| {
        if let Some(replayed) = claim_or_replay(txn, key.as_ref()).await? {
            return Ok(replayed);
        }
        let grants = grants_for(txn, viewer).await?;
        let current = request::Entity::find_by_id(id)
            .one(txn)
            .await?
            .ok_or_else(not_found)?;
        let policy = load_policy_version(txn, current.policy_id).await?;
        let status = parse_status(&current.status)?;
        let stage = current
            .current_stage
            .and_then(|pos| policy.stages.iter().find(|s| s.position == pos));
        let may_decide_some_stage = policy
            .stages
            .iter()
            .any(|s| stage_roles(s).iter().any(|r| viewer.has_role(r)));
        if !can_see(viewer, &grants, &current) && !may_decide_some_stage {
            // Hidden requests are indistinguishable from absent ones.
            return Err(not_found());
        }
        check_pending(status, &current, expected_version(&input))?;
        let stage =
            stage.ok_or_else(|| anyhow::anyhow!("pending request {id} has no current stage"))?;
        let roles = stage_roles(stage);
        if !roles.iter().any(|r| viewer.has_role(r)) {
            return Err(AppError::Forbidden(format!(
                "stage {} ({}) is decided by {}",
                stage.position,
                stage.name,
                roles.join(" or ")
            )));
        }
        if current.requester_subject == viewer.subject {
            return Err(AppError::Forbidden(
                "nobody may decide their own request".into(),
            ));
        }
        let decisions = decision::Entity::find()
            .filter(decision::Column::RequestId.eq(id))
            .all(txn)
            .await?;
        if decisions
            .iter()
            .any(|d| d.approver_subject == viewer.subject && d.stage_position == stage.position)
        {
            return Err(AppError::Forbidden("you already decided this stage".into()));
        }
        if !policy.policy.allow_same_approver_across_stages
            && decisions
                .iter()
                .any(|d| d.approver_subject == viewer.subject)
        {
            return Err(AppError::Forbidden(
                "one person may approve only one stage of a request".into(),
            ));
        }

        let amount = stored_decimal(&current.amount)?;
        let rules = policy
            .stages
            .iter()
            .map(stage_rule)
            .collect::<Result<Vec<_>, _>>()?;
        let (next_status, next_stage, action, kind) = match verdict {
            Verdict::Reject => (
                Status::Rejected,
                current.current_stage,
                "request.rejected",
                "REJECTED",
            ),
            Verdict::Approve => {
                let approvals = decisions
                    .iter()
                    .filter(|d| {
                        d.stage_position == stage.position && d.verdict == Verdict::Approve.as_str()
                    })
                    .count();
                let approvals_after = i32::try_from(approvals).unwrap_or(i32::MAX - 1) + 1;
                match after_approval(&rules, amount, stage.position, approvals_after) {
                    AfterApproval::StageOpen { .. } => (
                        Status::Pending,
                        Some(stage.position),
                        "request.approval_recorded",
                        "APPROVAL_RECORDED",
                    ),
                    AfterApproval::NextStage(next) => (
                        Status::Pending,
                        Some(next),
                        "request.stage_approved",
                        "STAGE_APPROVED",
                    ),
                    AfterApproval::Approved => (
                        Status::Approved,
                        current.current_stage,
                        "request.approved",
                        "APPROVED",
                    ),
                }
            }
        };
        let now = now();
        let updated = guarded_update(txn, &current, next_status, next_stage, now).await?;
        decision::ActiveModel {
            id: Set(Uuid::now_v7()),
            request_id: Set(id),
            stage_position: Set(stage.position),
            approver_subject: Set(viewer.subject.clone()),
            verdict: Set(verdict.as_str().into()),
            comment: Set(comment.clone()),
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
        if let Some(key) = &key {
            idempotency::complete(txn, key, json!({ "requestId": id })).await?;
        }
        let verb = match verdict {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        };
        let summary = format!(
            "{} {verb} stage {} ({}) of {} {:?}{}",
            viewer.subject,
            stage.position,
            stage.name,
            current.policy_key,
            current.title,
            if comment.is_empty() {
                String::new()
            } else {
                format!(": {comment}")
            }
        );
        let reason = (!comment.is_empty()).then(|| comment.clone());
        record_transition(
            txn,
            viewer,
            context,
            key.as_ref(),
            &updated,
            Some(&current),
            action,
            kind,
            reason,
            summary,
        )
        .await?;
        Ok(Outcome {
            request: updated,
            replayed: false,
        })
    });
    let attempted = match verdict {
        Verdict::Approve => "request.approve",
        Verdict::Reject => "request.reject",
    };
    audit::service::audit_refusal(
        result,
        db,
        viewer,
        context,
        attempted,
        "request",
        &id.to_string(),
        Some(id),
    )
    .await
}

pub struct CancelInput {
    pub id: String,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Cancel a pending request: its requester, or someone who manages its policy.
pub async fn cancel(
    db: &DatabaseConnection,
    viewer: &Viewer,
    context: &CommandContext,
    input: CancelInput,
) -> Result<Outcome, AppError> {
    let key = CommandKey::parse(
        &viewer.subject,
        input.idempotency_key.as_deref(),
        "cancelRequest",
        &json!({ "id": input.id, "reason": input.reason }),
    )?;
    let reason = validate_comment("reason", input.reason.as_deref(), true)?;
    let id = parse_request_id(&input.id)?;

    let result = crate::write_transaction!(db, |txn| {
        if let Some(replayed) = claim_or_replay(txn, key.as_ref()).await? {
            return Ok(replayed);
        }
        let grants = grants_for(txn, viewer).await?;
        let current = request::Entity::find_by_id(id)
            .one(txn)
            .await?
            .filter(|r| can_see(viewer, &grants, r))
            .ok_or_else(not_found)?;
        let is_requester = current.requester_subject == viewer.subject;
        if !is_requester && !grants.allows(Action::PolicyManage, Some(&current.policy_key)) {
            return Err(AppError::Forbidden(
                "only the requester or an admin may cancel a request".into(),
            ));
        }
        check_pending(parse_status(&current.status)?, &current, None)?;
        let updated = guarded_update(
            txn,
            &current,
            Status::Cancelled,
            current.current_stage,
            now(),
        )
        .await?;
        if let Some(key) = &key {
            idempotency::complete(txn, key, json!({ "requestId": id })).await?;
        }
        let summary = format!(
            "{} cancelled {} {:?}: {reason}",
            viewer.subject, current.policy_key, current.title
        );
        record_transition(
            txn,
            viewer,
            context,
            key.as_ref(),
            &updated,
            Some(&current),
            "request.cancelled",
            "CANCELLED",
            Some(reason.clone()),
            summary,
        )
        .await?;
        Ok(Outcome {
            request: updated,
            replayed: false,
        })
    });
    audit::service::audit_refusal(
        result,
        db,
        viewer,
        context,
        "request.cancel",
        "request",
        &id.to_string(),
        Some(id),
    )
    .await
}

/// The actor recorded for what the system does on its own (expiry).
fn system_actor() -> Viewer {
    Viewer {
        subject: "system".into(),
        name: None,
        email: None,
        roles: Vec::new(),
        issued_at: None,
        expires_at: DateTime::<Utc>::MAX_UTC,
    }
}

/// Expires one pending request whose `expires_at` has passed. `None` when there was nothing
/// to do: it was decided meanwhile, or another replica expired it first (the guarded update
/// lets exactly one win).
pub async fn expire(db: &DatabaseConnection, id: Uuid) -> Result<Option<Outcome>, AppError> {
    let system = system_actor();
    let context = CommandContext::default();
    let result = crate::write_transaction!(db, |txn| {
        let Some(current) = request::Entity::find_by_id(id).one(txn).await? else {
            return Ok(None);
        };
        if parse_status(&current.status)? != Status::Pending || current.expires_at > Utc::now() {
            return Ok(None);
        }
        let updated =
            guarded_update(txn, &current, Status::Expired, current.current_stage, now()).await?;
        let summary = format!(
            "system expired {} {:?}: its deadline {} passed while it was pending",
            current.policy_key,
            current.title,
            current
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        record_transition(
            txn,
            &system,
            &context,
            None,
            &updated,
            Some(&current),
            "request.expired",
            "EXPIRED",
            None,
            summary,
        )
        .await?;
        Ok(Some(Outcome {
            request: updated,
            replayed: false,
        }))
    });
    match result {
        Err(AppError::Conflict(_)) => Ok(None),
        other => other,
    }
}

/// Ids of pending requests past their expiry, oldest deadline first.
pub async fn due_for_expiry(db: &DatabaseConnection, limit: u64) -> Result<Vec<Uuid>, AppError> {
    Ok(request::Entity::find()
        .select_only()
        .column(request::Column::Id)
        .filter(request::Column::Status.eq(Status::Pending.as_str()))
        .filter(request::Column::ExpiresAt.lte(Utc::now()))
        .order_by_asc(request::Column::ExpiresAt)
        .limit(limit)
        .into_tuple::<Uuid>()
        .all(db)
        .await?)
}

fn expected_version(input: &DecideInput) -> Option<i32> {
    input.expected_version
}

fn parse_status(value: &str) -> Result<Status, AppError> {
    Status::parse(value)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown stored status {value:?}")))
}

/// A command may act only on a pending, unexpired request at the version it read.
fn check_pending(
    status: Status,
    current: &request::Model,
    expected: Option<i32>,
) -> Result<(), AppError> {
    if status.is_terminal() {
        return Err(AppError::InvalidTransition(format!(
            "the request is already {}",
            status.as_str()
        )));
    }
    if current.expires_at <= Utc::now() {
        return Err(AppError::InvalidTransition(
            "the request has expired".into(),
        ));
    }
    if let Some(expected) = expected {
        if expected != current.version {
            return Err(AppError::Conflict(format!(
                "the request is at version {}, not {expected}; read it again",
                current.version
            )));
        }
    }
    Ok(())
}

/// `UPDATE … WHERE id = ? AND version = ?`: the write that makes a transition happen at
/// most once. Zero rows means a concurrent command won.
async fn guarded_update(
    txn: &DatabaseTransaction,
    current: &request::Model,
    status: Status,
    stage: Option<i32>,
    now: DateTime<Utc>,
) -> Result<request::Model, AppError> {
    let result = request::Entity::update_many()
        .col_expr(request::Column::Status, status.as_str().into())
        .col_expr(request::Column::CurrentStage, stage.into())
        .col_expr(request::Column::Version, (current.version + 1).into())
        .col_expr(request::Column::UpdatedAt, now.into())
        .col_expr(
            request::Column::DecidedAt,
            status.is_terminal().then_some(now).into(),
        )
        .filter(request::Column::Id.eq(current.id))
        .filter(request::Column::Version.eq(current.version))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        return Err(AppError::Conflict(
            "a concurrent change won; read the request again".into(),
        ));
    }
    Ok(request::Model {
        status: status.as_str().into(),
        current_stage: stage,
        version: current.version + 1,
        updated_at: now,
        decided_at: status.is_terminal().then_some(now),
        ..current.clone()
    })
}

/// One audit event and one outbox entry for a request transition.
#[allow(clippy::too_many_arguments)]
async fn record_transition(
    txn: &DatabaseTransaction,
    viewer: &Viewer,
    context: &CommandContext,
    key: Option<&CommandKey>,
    after: &request::Model,
    before: Option<&request::Model>,
    action: &str,
    kind: &str,
    reason: Option<String>,
    summary: String,
) -> Result<(), AppError> {
    let sequence = audit::service::append(
        txn,
        NewEvent {
            actor_subject: viewer.subject.clone(),
            actor_roles: viewer.roles.clone(),
            action: action.into(),
            subject_type: "request".into(),
            subject_id: after.id.to_string(),
            request_id: Some(after.id),
            before: before.map(request_snapshot),
            after: Some(request_snapshot(after)),
            reason,
            correlation_id: context.correlation_id.clone(),
            idempotency_key: key.map(|k| k.key.clone()),
            summary,
        },
    )
    .await?;
    outbox::enqueue(
        txn,
        kind,
        &after.id.to_string(),
        sequence,
        json!({ "kind": kind, "request": request_snapshot(after), "actor": viewer.subject }),
    )
    .await
}

fn request_snapshot(request: &request::Model) -> Value {
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

/// Claims the command's idempotency key; `Some` is the earlier outcome to answer with.
async fn claim_or_replay(
    txn: &DatabaseTransaction,
    key: Option<&CommandKey>,
) -> Result<Option<Outcome>, AppError> {
    let Some(key) = key else { return Ok(None) };
    match idempotency::claim(txn, key).await? {
        Claim::Fresh => Ok(None),
        Claim::Replay(response) => replay(txn, &response).await.map(Some),
    }
}

async fn replay(txn: &DatabaseTransaction, response: &Value) -> Result<Outcome, AppError> {
    let id = response_id(response, "requestId")?;
    let request = request::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("replayed request {id} vanished"))?;
    Ok(Outcome {
        request,
        replayed: true,
    })
}

fn response_id(response: &Value, field: &str) -> Result<Uuid, AppError> {
    response[field]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("stored idempotent response lacks {field}"))
        })
}

fn parse_request_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.trim()).map_err(|_| not_found())
}

fn not_found() -> AppError {
    AppError::NotFound("no such request".into())
}

// ---------------------------------------------------------------------------------------
// Visibility and queries

/// Whether the viewer may see the request: their own, or one their grants reach.
pub fn can_see(viewer: &Viewer, grants: &Grants, request: &request::Model) -> bool {
    request.requester_subject == viewer.subject
        || grants.allows(Action::RequestView, Some(&request.policy_key))
}

/// The same rule as [`can_see`], as SQL, so lists are filtered in the database.
pub fn visibility(viewer: &Viewer, grants: &Grants) -> Condition {
    match grants.scope(Action::RequestView) {
        Scope::All => Condition::all(),
        Scope::Only(keys) => {
            let mut any =
                Condition::any().add(request::Column::RequesterSubject.eq(viewer.subject.clone()));
            if !keys.is_empty() {
                any = any.add(request::Column::PolicyKey.is_in(keys));
            }
            any
        }
    }
}

pub async fn find_visible(
    db: &DatabaseConnection,
    viewer: &Viewer,
    id: &str,
) -> Result<Option<request::Model>, AppError> {
    let Ok(id) = Uuid::parse_str(id.trim()) else {
        return Ok(None);
    };
    let grants = grants_for(db, viewer).await?;
    Ok(request::Entity::find_by_id(id)
        .filter(visibility(viewer, &grants))
        .one(db)
        .await?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, async_graphql::Enum)]
#[graphql(name = "RequestOrder")]
pub enum Order {
    CreatedAtAsc,
    #[default]
    CreatedAtDesc,
    ExpiresAtAsc,
}

#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub status: Option<Status>,
    pub policy: Option<String>,
    pub requester: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub search: Option<String>,
}

/// One page of a keyset-paginated list.
pub struct Page {
    pub rows: Vec<(String, request::Model)>,
    pub has_next_page: bool,
}

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

pub fn page_size(first: Option<i32>) -> Result<u64, AppError> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(AppError::bad_input(
            "first",
            format!("first must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(u64::try_from(first).unwrap_or(20))
}

/// A keyset cursor: the sort value and the id of the last row seen. Opaque to clients.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    use base64::Engine;
    let raw = format!(
        "{}|{id}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), AppError> {
    use base64::Engine;
    let bad = || AppError::bad_input("after", "not a cursor from this list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, id))
}

pub async fn list(
    db: &DatabaseConnection,
    viewer: &Viewer,
    filter: RequestFilter,
    order: Order,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Page, AppError> {
    let limit = page_size(first)?;
    let grants = grants_for(db, viewer).await?;
    let mut query = request::Entity::find().filter(visibility(viewer, &grants));
    if let Some(status) = filter.status {
        query = query.filter(request::Column::Status.eq(status.as_str()));
    }
    if let Some(policy) = filter.policy {
        query = query.filter(request::Column::PolicyKey.eq(policy));
    }
    if let Some(requester) = filter.requester {
        query = query.filter(request::Column::RequesterSubject.eq(requester));
    }
    if let Some(after) = filter.created_after {
        query = query.filter(request::Column::CreatedAt.gte(after));
    }
    if let Some(before) = filter.created_before {
        query = query.filter(request::Column::CreatedAt.lt(before));
    }
    if let Some(search) = filter.search.filter(|s| !s.trim().is_empty()) {
        let pattern = format!("%{}%", escape_like(&search.trim().to_lowercase()));
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(request::Column::Title)))
                .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
        );
    }
    let (sort_column, ascending) = match order {
        Order::CreatedAtAsc => (request::Column::CreatedAt, true),
        Order::CreatedAtDesc => (request::Column::CreatedAt, false),
        Order::ExpiresAtAsc => (request::Column::ExpiresAt, true),
    };
    if let Some(cursor) = after {
        let (at, id) = decode_cursor(&cursor)?;
        let after_key = if ascending {
            Condition::any().add(sort_column.gt(at)).add(
                Condition::all()
                    .add(sort_column.eq(at))
                    .add(request::Column::Id.gt(id)),
            )
        } else {
            Condition::any().add(sort_column.lt(at)).add(
                Condition::all()
                    .add(sort_column.eq(at))
                    .add(request::Column::Id.lt(id)),
            )
        };
        query = query.filter(after_key);
    }
    query = if ascending {
        query
            .order_by_asc(sort_column)
            .order_by_asc(request::Column::Id)
    } else {
        query
            .order_by_desc(sort_column)
            .order_by_desc(request::Column::Id)
    };
    let rows = query.limit(limit + 1).all(db).await?;
    Ok(into_page(rows, limit, |r| match order {
        Order::ExpiresAtAsc => r.expires_at,
        _ => r.created_at,
    }))
}

fn into_page(
    mut rows: Vec<request::Model>,
    limit: u64,
    sort_value: impl Fn(&request::Model) -> DateTime<Utc>,
) -> Page {
    let has_next_page = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Page {
        rows: rows
            .into_iter()
            .map(|r| (encode_cursor(sort_value(&r), r.id), r))
            .collect(),
        has_next_page,
    }
}

fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Pending requests at a stage the viewer may decide now, not theirs and not already
/// decided by them, oldest first.
pub async fn my_queue(
    db: &DatabaseConnection,
    viewer: &Viewer,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Page, AppError> {
    let limit = page_size(first)?;
    // Stage definitions are few; which (policy version, stage) pairs the viewer decides is
    // worked out here, and the requests are then filtered in SQL.
    let stages = policy_stage::Entity::find().all(db).await?;
    let policies: std::collections::HashMap<Uuid, bool> = policy::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p.allow_same_approver_across_stages))
        .collect();
    let mut decidable = Condition::any();
    let mut any_stage = false;
    for stage in stages
        .iter()
        .filter(|s| stage_roles(s).iter().any(|r| viewer.has_role(r)))
    {
        any_stage = true;
        let allow_across = policies.get(&stage.policy_id).copied().unwrap_or(false);
        let mut decided_by_viewer = Query::select();
        decided_by_viewer
            .expr(Expr::val(1))
            .from(decision::Entity)
            .and_where(
                Expr::col((decision::Entity, decision::Column::RequestId))
                    .equals((request::Entity, request::Column::Id)),
            )
            .and_where(
                Expr::col((decision::Entity, decision::Column::ApproverSubject))
                    .eq(viewer.subject.clone()),
            );
        if allow_across {
            decided_by_viewer.and_where(
                Expr::col((decision::Entity, decision::Column::StagePosition)).eq(stage.position),
            );
        }
        decidable = decidable.add(
            Condition::all()
                .add(request::Column::PolicyId.eq(stage.policy_id))
                .add(request::Column::CurrentStage.eq(stage.position))
                .add(Expr::exists(decided_by_viewer).not()),
        );
    }
    if !any_stage {
        return Ok(Page {
            rows: Vec::new(),
            has_next_page: false,
        });
    }
    let mut query = request::Entity::find()
        .filter(request::Column::Status.eq(Status::Pending.as_str()))
        .filter(request::Column::RequesterSubject.ne(viewer.subject.clone()))
        .filter(decidable);
    if let Some(cursor) = after {
        let (at, id) = decode_cursor(&cursor)?;
        query = query.filter(
            Condition::any().add(request::Column::CreatedAt.gt(at)).add(
                Condition::all()
                    .add(request::Column::CreatedAt.eq(at))
                    .add(request::Column::Id.gt(id)),
            ),
        );
    }
    let rows = query
        .order_by_asc(request::Column::CreatedAt)
        .order_by_asc(request::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(into_page(rows, limit, |r| r.created_at))
}
