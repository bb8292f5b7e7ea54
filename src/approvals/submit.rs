//! `submitRequest`: file a request under the current version of a policy.

use entity::request;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{Money, submission, validate_description, validate_payload, validate_title};
use super::policies::{current_policy, in_view, stage_rule};
use super::store::{replay_request, transition_effect};
use crate::access::{Action, Grants, require};
use crate::command::{Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::kernel::CommandContext;

pub struct SubmitRequestInput {
    pub policy: String,
    pub title: String,
    pub description: Option<String>,
    pub amount: String,
    pub currency: String,
    pub payload: Option<Value>,
}

/// A request as filed, checked as far as it can be without the database.
pub struct Submit {
    input: SubmitRequestInput,
    title: String,
    description: String,
    money: Money,
    payload: Value,
}

impl Submit {
    pub fn new(input: SubmitRequestInput) -> Result<Self, AppError> {
        let title = validate_title(&input.title)?;
        let description = validate_description(input.description.as_deref().unwrap_or_default())?;
        let money = Money::parse(&input.amount, &input.currency)?;
        let payload = input.payload.clone().unwrap_or_else(|| json!({}));
        validate_payload(&payload)?;
        Ok(Self {
            input,
            title,
            description,
            money,
            payload,
        })
    }
}

impl Command for Submit {
    type Output = request::Model;

    fn operation(&self) -> &'static str {
        "submitRequest"
    }

    fn fingerprint(&self) -> Value {
        let input = &self.input;
        json!({
            "policy": input.policy, "title": input.title, "description": input.description,
            "amount": input.amount, "currency": input.currency, "payload": input.payload,
        })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: "request.submit",
            subject_type: "policy",
            subject_id: self.input.policy.clone(),
            request_id: None,
        }
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
        let no_such_policy = || {
            AppError::bad_input(
                "policy",
                format!("there is no policy {:?}", self.input.policy),
            )
        };
        // A missing policy is recorded as a refusal too, like a hidden one: the two cost
        // the same statements, so `x-sql-statements` cannot tell them apart.
        let concealed = |reason: String| AppError::Concealed {
            reason,
            answer: Box::new(no_such_policy()),
        };
        let Some(policy) = current_policy(txn, &self.input.policy).await? else {
            return Err(concealed(format!(
                "{} named policy {:?}, which does not exist",
                ctx.actor.subject, self.input.policy
            )));
        };
        if !in_view(grants, &ctx.actor, &policy) {
            return Err(concealed(format!(
                "{} has nothing to do with policy {}",
                ctx.actor.subject, policy.policy.key
            )));
        }
        require(grants, Action::RequestSubmit, Some(&policy.policy.key))?;
        if let Some(schema) = &policy.policy.payload_schema {
            check_payload_schema(schema, &self.payload)?;
        }
        let rules = policy
            .stages
            .iter()
            .map(|stage| stage_rule(stage, &self.money.currency))
            .collect::<Result<Vec<_>, _>>()?;
        let plan = submission(&rules, self.money.amount);
        let now = ctx.now();
        let created = request::ActiveModel {
            id: Set(Uuid::now_v7()),
            policy_id: Set(policy.policy.id),
            policy_key: Set(policy.policy.key.clone()),
            policy_version: Set(policy.policy.version),
            title: Set(self.title.clone()),
            description: Set(self.description.clone()),
            payload: Set(self.payload.clone()),
            amount: Set(self.money.amount.to_string()),
            currency: Set(self.money.currency.clone()),
            requester_subject: Set(ctx.actor.subject.clone()),
            status: Set(plan.status.as_str().into()),
            current_stage: Set(plan.stage),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            expires_at: Set(now + chrono::Duration::seconds(policy.policy.expires_after_seconds)),
            decided_at: Set(plan.status.is_terminal().then_some(now)),
        }
        .insert(txn)
        .await?;
        let summary = format!(
            "{} submitted {} {:?} for {} {}",
            ctx.actor.subject, created.policy_key, created.title, created.amount, created.currency
        );
        Ok(transition_effect(ctx, plan, None, created, None, summary))
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

/// BAD_USER_INPUT, naming the property (`payload.orderId`), when `payload` breaks the
/// policy's schema.
pub fn check_payload_schema(schema: &Value, payload: &Value) -> Result<(), AppError> {
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
            &payload_field(&error),
            format!("payload does not match the policy's schema{at}: {error}"),
        ));
    }
    Ok(())
}

/// Where in the payload the error is, as a dotted `field` (`payload.orderId`), so a form
/// can show it on the input it belongs to. A missing required property is named too,
/// though the schema reports it on the object that lacks it.
fn payload_field(error: &jsonschema::ValidationError<'_>) -> String {
    let mut field = String::from("payload");
    let pointer = error.instance_path().to_string();
    for segment in pointer.split('/').skip(1) {
        field.push('.');
        field.push_str(&segment.replace("~1", "/").replace("~0", "~"));
    }
    if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind() {
        if let Some(name) = property.as_str() {
            field.push('.');
            field.push_str(name);
        }
    }
    field
}
