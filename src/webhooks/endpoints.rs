//! Registering, changing and disabling webhook endpoints: admin commands (`access.manage`),
//! each audited like any other change. The secret is write-only: it signs deliveries and
//! is never shown again, nor written to the audit log.

use chrono::{DateTime, Utc};
use entity::webhook_endpoint;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QueryOrder, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access::{Action, Grants};
use crate::approvals::feed::RequestEventKind;
use crate::command::{Attempt, Command, Effect, Requirement, stored_id};
use crate::error::AppError;
use crate::kernel::CommandContext;

const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_CHARS: usize = 256;

/// Every endpoint, enabled or not, oldest first.
pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<webhook_endpoint::Model>, AppError> {
    Ok(webhook_endpoint::Entity::find()
        .order_by_asc(webhook_endpoint::Column::CreatedAt)
        .all(db)
        .await?)
}

/// The event kinds an endpoint receives, as stored.
pub fn event_kinds(row: &webhook_endpoint::Model) -> Vec<RequestEventKind> {
    row.events
        .as_array()
        .map(|kinds| {
            kinds
                .iter()
                .filter_map(|k| k.as_str().and_then(RequestEventKind::parse))
                .collect()
        })
        .unwrap_or_default()
}

pub fn wants(row: &webhook_endpoint::Model, kind: &str) -> bool {
    row.disabled_at.is_none() && event_kinds(row).iter().any(|k| k.as_str() == kind)
}

fn kinds_value(events: &[RequestEventKind]) -> Result<Value, AppError> {
    if events.is_empty() {
        return Err(AppError::bad_input(
            "events",
            "name at least one event kind",
        ));
    }
    let mut names: Vec<&str> = events.iter().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(json!(names))
}

fn check_secret(secret: &str) -> Result<String, AppError> {
    let chars = secret.chars().count();
    if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) || secret.trim() != secret {
        return Err(AppError::bad_input(
            "secret",
            format!(
                "a signing secret is {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters without surrounding spaces"
            ),
        ));
    }
    Ok(secret.to_owned())
}

/// What the audit log records of an endpoint: everything but the secret.
fn snapshot(row: &webhook_endpoint::Model) -> Value {
    json!({
        "url": row.url,
        "events": row.events,
        "enabled": row.disabled_at.is_none(),
    })
}

/// Registers an endpoint. `url` has been checked against the destination rules.
pub struct CreateWebhook {
    pub url: String,
    pub events: Vec<RequestEventKind>,
    pub secret: String,
}

impl Command for CreateWebhook {
    type Output = webhook_endpoint::Model;

    fn operation(&self) -> &'static str {
        "createWebhook"
    }

    fn fingerprint(&self) -> Value {
        // The secret's hash, not the secret: the fingerprint is stored with the key.
        let secret = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            self.secret.as_bytes(),
        ));
        json!({ "url": self.url, "events": kinds_value(&self.events).ok(), "secret": secret })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: "webhook.create",
            subject_type: "webhook",
            subject_id: self.url.clone(),
            request_id: None,
        }
    }

    fn requires(&self) -> Requirement {
        Requirement::Grant(Action::AccessManage, None)
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        _grants: &Grants,
    ) -> Result<Effect<Self::Output>, AppError> {
        let now = ctx.now();
        let row = webhook_endpoint::ActiveModel {
            id: Set(Uuid::now_v7()),
            url: Set(self.url.clone()),
            events: Set(kinds_value(&self.events)?),
            secret: Set(check_secret(&self.secret)?),
            created_by: Set(ctx.actor.subject.clone()),
            created_at: Set(now),
            disabled_at: Set(None),
            updated_at: Set(Some(now)),
        }
        .insert(txn)
        .await?;
        let event = ctx
            .event(
                "webhook.created",
                "webhook",
                row.id.to_string(),
                format!("{} registered a webhook to {}", ctx.actor.subject, row.url),
            )
            .after(snapshot(&row));
        Ok(Effect::audited(
            row.clone(),
            json!({ "webhookId": row.id }),
            event,
        ))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        stored: &Value,
    ) -> Result<Self::Output, AppError> {
        load(txn, stored_id(stored, "webhookId")?).await
    }
}

async fn load(txn: &DatabaseTransaction, id: Uuid) -> Result<webhook_endpoint::Model, AppError> {
    webhook_endpoint::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::NotFound("no such webhook".into()))
}

/// Changes an endpoint: any of its URL, events and secret, and whether it is enabled.
pub struct UpdateWebhook {
    pub id: Uuid,
    pub url: Option<String>,
    pub events: Option<Vec<RequestEventKind>>,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
    /// Why (kept in the audit log); asked for when disabling.
    pub reason: Option<String>,
}

impl UpdateWebhook {
    fn apply(
        &self,
        mut row: webhook_endpoint::ActiveModel,
        now: DateTime<Utc>,
        was_enabled: bool,
    ) -> Result<webhook_endpoint::ActiveModel, AppError> {
        if let Some(url) = &self.url {
            row.url = Set(url.clone());
        }
        if let Some(events) = &self.events {
            row.events = Set(kinds_value(events)?);
        }
        if let Some(secret) = &self.secret {
            row.secret = Set(check_secret(secret)?);
        }
        match self.enabled {
            Some(false) if was_enabled => row.disabled_at = Set(Some(now)),
            Some(true) if !was_enabled => row.disabled_at = Set(None),
            _ => {}
        }
        row.updated_at = Set(Some(now));
        Ok(row)
    }
}

impl Command for UpdateWebhook {
    type Output = webhook_endpoint::Model;

    fn operation(&self) -> &'static str {
        "updateWebhook"
    }

    fn fingerprint(&self) -> Value {
        let secret = self
            .secret
            .as_ref()
            .map(|s| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes())));
        json!({
            "id": self.id,
            "url": self.url,
            "events": self.events.as_deref().map(kinds_value).and_then(Result::ok),
            "secret": secret,
            "enabled": self.enabled,
            "reason": self.reason,
        })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: "webhook.update",
            subject_type: "webhook",
            subject_id: self.id.to_string(),
            request_id: None,
        }
    }

    fn requires(&self) -> Requirement {
        Requirement::Grant(Action::AccessManage, None)
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        _grants: &Grants,
    ) -> Result<Effect<Self::Output>, AppError> {
        let current = load(txn, self.id).await?;
        let was_enabled = current.disabled_at.is_none();
        let before = snapshot(&current);
        let updated = self
            .apply(current.into_active_model(), ctx.now(), was_enabled)?
            .update(txn)
            .await?;
        let verb = match (was_enabled, updated.disabled_at.is_none()) {
            (true, false) => "disabled",
            (false, true) => "enabled",
            _ => "changed",
        };
        let mut event = ctx
            .event(
                format!("webhook.{verb}"),
                "webhook",
                updated.id.to_string(),
                format!(
                    "{} {verb} the webhook to {}",
                    ctx.actor.subject, updated.url
                ),
            )
            .before(Some(before))
            .after(snapshot(&updated))
            .reason(self.reason.clone());
        if self.secret.is_some() {
            // Record that it rotated, never what it became.
            event.summary.push_str(" (new signing secret)");
        }
        Ok(Effect::audited(
            updated.clone(),
            json!({ "webhookId": updated.id }),
            event,
        ))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        _stored: &Value,
    ) -> Result<Self::Output, AppError> {
        load(txn, self.id).await
    }
}
