//! Policies: saving a new version (`upsertPolicy`), and reading them.

use std::collections::HashMap;
use std::sync::Arc;

use entity::{policy, policy_stage};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, Set, SqlErr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{StageRule, Thresholds, validate_description};
use crate::access::requests::stage_roles;
use crate::access::{Action, Grants};
use crate::command::{Attempt, Command, Effect, Requirement, stored_id};
use crate::error::AppError;
use crate::kernel::{CommandContext, Viewer};

/// A policy version with its stages in order. Shared, not copied: every request of a page
/// names one of a handful of versions, and a policy carries its payload schema.
#[derive(Clone, Debug)]
pub struct PolicyVersion {
    pub policy: Arc<policy::Model>,
    pub stages: Arc<Vec<policy_stage::Model>>,
}

pub struct StageInput {
    pub name: String,
    pub approver_roles: Vec<String>,
    pub required_approvals: i32,
    /// (amount, currency) pairs, as entered.
    pub min_amounts: Vec<(String, String)>,
}

/// A validated stage of a policy being saved.
struct StageDefinition {
    position: i32,
    required_approvals: i32,
    thresholds: Thresholds,
}

/// A new version of a policy, as an admin enters it.
pub struct UpsertPolicyInput {
    pub key: String,
    pub name: String,
    pub description: String,
    pub expires_after_seconds: i64,
    pub payload_schema: Option<Value>,
    pub allow_same_approver_across_stages: bool,
    pub stages: Vec<StageInput>,
    /// The version the edit was made on (0: none yet), when the editor says.
    pub expected_version: Option<i32>,
}

const MAX_STAGES: usize = 10;
const MAX_REQUIRED_APPROVALS: i32 = 20;
// Any positive deadline: the sweeper runs every second by default, so two seconds work.
const MIN_EXPIRY_SECONDS: i64 = 1;
const MAX_EXPIRY_SECONDS: i64 = 366 * 24 * 3600;

fn validate_policy(input: &UpsertPolicyInput) -> Result<Vec<StageDefinition>, AppError> {
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
        super::model::validate_json("payloadSchema", schema)?;
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
        let thresholds = Thresholds::parse(
            stage
                .min_amounts
                .iter()
                .map(|(amount, currency)| (amount.as_str(), currency.as_str())),
        )?;
        rules.push(StageDefinition {
            position,
            required_approvals: stage.required_approvals,
            thresholds,
        });
    }
    Ok(rules)
}

/// Saves the next version of a policy (or its first). Admins (`policy.manage`) only;
/// audited with the version before and after.
pub struct UpsertPolicy {
    input: UpsertPolicyInput,
    rules: Vec<StageDefinition>,
}

impl UpsertPolicy {
    pub fn new(input: UpsertPolicyInput) -> Result<Self, AppError> {
        let rules = validate_policy(&input)?;
        Ok(Self { input, rules })
    }
}

impl Command for UpsertPolicy {
    type Output = PolicyVersion;

    fn operation(&self) -> &'static str {
        "upsertPolicy"
    }

    fn fingerprint(&self) -> Value {
        let input = &self.input;
        json!({
            "key": input.key, "name": input.name, "description": input.description,
            "expiresAfterSeconds": input.expires_after_seconds,
            "payloadSchema": input.payload_schema,
            "allowSameApproverAcrossStages": input.allow_same_approver_across_stages,
            "expectedVersion": input.expected_version,
            "stages": input.stages.iter().map(|s| json!({
                "name": s.name, "approverRoles": s.approver_roles,
                "requiredApprovals": s.required_approvals, "minAmounts": s.min_amounts,
            })).collect::<Vec<_>>(),
        })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: "policy.upsert",
            subject_type: "policy",
            subject_id: self.input.key.clone(),
            request_id: None,
        }
    }

    fn requires(&self) -> Requirement {
        Requirement::Grant(Action::PolicyManage, Some(self.input.key.clone()))
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        _grants: &Grants,
    ) -> Result<Effect<PolicyVersion>, AppError> {
        let previous = current_policy(txn, &self.input.key).await?;
        let current = previous.as_ref().map_or(0, |p| p.policy.version);
        if let Some(expected) = self.input.expected_version
            && expected != current
        {
            return Err(AppError::Conflict(format!(
                "policy {} is at version {current}, not {expected}: someone saved it since; \
                 read it again",
                self.input.key
            )));
        }
        let version = current + 1;
        let policy_id = Uuid::now_v7();
        let created = policy::ActiveModel {
            id: Set(policy_id),
            key: Set(self.input.key.clone()),
            version: Set(version),
            name: Set(self.input.name.trim().to_owned()),
            description: Set(self.input.description.clone()),
            expires_after_seconds: Set(self.input.expires_after_seconds),
            payload_schema: Set(self.input.payload_schema.clone()),
            allow_same_approver_across_stages: Set(self.input.allow_same_approver_across_stages),
            created_by: Set(ctx.actor.subject.clone()),
            created_at: Set(ctx.now()),
        }
        .insert(txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                AppError::Conflict("the policy changed concurrently; read it again".into())
            }
            _ => err.into(),
        })?;
        let mut stages = Vec::with_capacity(self.rules.len());
        for (rule, stage) in self.rules.iter().zip(&self.input.stages) {
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
                    min_amount: Set(None),
                    min_amounts: Set(rule.thresholds.to_stored()),
                }
                .insert(txn)
                .await?,
            );
        }
        let version_now = PolicyVersion {
            policy: Arc::new(created),
            stages: Arc::new(stages),
        };
        let summary = format!(
            "{} saved policy {} as version {version}",
            ctx.actor.subject, self.input.key
        );
        let event = ctx
            .event("policy.upserted", "policy", self.input.key.clone(), summary)
            .before(previous.as_ref().map(policy_snapshot))
            .after(policy_snapshot(&version_now));
        Ok(Effect::audited(
            version_now,
            json!({ "policyId": policy_id }),
            event,
        ))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        stored: &Value,
    ) -> Result<PolicyVersion, AppError> {
        load_policy_version(txn, stored_id(stored, "policyId")?).await
    }
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
            "minAmounts": s.min_amounts,
        })).collect::<Vec<_>>(),
    })
}

/// The newest version of the policy `key`.
/// The newest version of the policy `key`, with its stages. The same two statements
/// whether it exists or not, so what a lookup costs (`x-sql-statements`) says nothing
/// about which keys exist.
pub async fn current_policy<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<PolicyVersion>, AppError> {
    let newest = sea_orm::sea_query::Query::select()
        .column(policy::Column::Id)
        .from(policy::Entity)
        .and_where(policy::Column::Key.eq(key))
        .order_by(policy::Column::Version, sea_orm::Order::Desc)
        .limit(1)
        .to_owned();
    let mut stages = policy_stage::Entity::find()
        .filter(policy_stage::Column::PolicyId.in_subquery(newest))
        .order_by_asc(policy_stage::Column::Position)
        .all(db)
        .await?;
    let Some(policy) = policy::Entity::find()
        .filter(policy::Column::Key.eq(key))
        .order_by_desc(policy::Column::Version)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    // A version saved between the two reads: read the stages of the one we have.
    if stages.iter().any(|stage| stage.policy_id != policy.id) || stages.is_empty() {
        stages = stages_of(db, policy.id).await?;
    }
    Ok(Some(PolicyVersion {
        policy: Arc::new(policy),
        stages: Arc::new(stages),
    }))
}

pub async fn load_policy_version<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<PolicyVersion, AppError> {
    let policy = policy::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("policy {id} vanished"))?;
    let stages = stages_of(db, id).await?;
    Ok(PolicyVersion {
        policy: Arc::new(policy),
        stages: Arc::new(stages),
    })
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

/// Whether the viewer has anything to do with the policy: manage it, submit or view under
/// it, or decide one of its stages. One they have nothing to do with is answered exactly
/// like one that does not exist, so policy keys cannot be enumerated.
pub fn in_view(grants: &Grants, viewer: &Viewer, version: &PolicyVersion) -> bool {
    let key = Some(version.policy.key.as_str());
    grants.allows(Action::PolicyManage, key)
        || grants.allows(Action::RequestSubmit, key)
        || grants.allows(Action::RequestView, key)
        || version
            .stages
            .iter()
            .any(|s| stage_roles(s).iter().any(|r| viewer.has_role(r)))
}

/// Every version of `key`, newest first, for those who may see its current version.
pub async fn policy_history(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grants: &Grants,
    key: &str,
) -> Result<Vec<PolicyVersion>, AppError> {
    match current_policy(db, key).await? {
        Some(current) if in_view(grants, viewer, &current) => {}
        _ => return Ok(Vec::new()),
    }
    let versions = policy::Entity::find()
        .filter(policy::Column::Key.eq(key))
        .order_by_desc(policy::Column::Version)
        .all(db)
        .await?;
    with_stages(db, versions).await
}

/// The policies with their stages, read in one statement, in the order given.
async fn with_stages(
    db: &DatabaseConnection,
    policies: Vec<policy::Model>,
) -> Result<Vec<PolicyVersion>, AppError> {
    let mut stages: HashMap<Uuid, Vec<policy_stage::Model>> = HashMap::new();
    for stage in policy_stage::Entity::find()
        .filter(policy_stage::Column::PolicyId.is_in(policies.iter().map(|p| p.id)))
        .order_by_asc(policy_stage::Column::Position)
        .all(db)
        .await?
    {
        stages.entry(stage.policy_id).or_default().push(stage);
    }
    Ok(policies
        .into_iter()
        .map(|policy| PolicyVersion {
            stages: Arc::new(stages.remove(&policy.id).unwrap_or_default()),
            policy: Arc::new(policy),
        })
        .collect())
}

/// The current version of every policy the viewer has something to do with ([`in_view`]).
/// Only current versions: a policy whose newest version leaves the viewer out is not
/// listed at all, never as an older version.
pub async fn visible_policies(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grants: &Grants,
) -> Result<Vec<PolicyVersion>, AppError> {
    let all = policy::Entity::find()
        .order_by_asc(policy::Column::Key)
        .order_by_desc(policy::Column::Version)
        .all(db)
        .await?;
    let mut newest: Vec<policy::Model> = Vec::new();
    for policy in all {
        if newest.last().is_none_or(|p| p.key != policy.key) {
            newest.push(policy);
        }
    }
    Ok(with_stages(db, newest)
        .await?
        .into_iter()
        .filter(|version| in_view(grants, viewer, version))
        .collect())
}

/// The stage as it applies to a request in `currency`: its threshold in that currency only.
pub fn stage_rule(stage: &policy_stage::Model, currency: &str) -> Result<StageRule, AppError> {
    Ok(StageRule {
        position: stage.position,
        required_approvals: stage.required_approvals,
        min_amount: thresholds(stage)?.for_currency(currency),
    })
}

pub fn thresholds(stage: &policy_stage::Model) -> Result<Thresholds, AppError> {
    Thresholds::from_stored(stage.min_amounts.as_ref())
}
