//! Ending (and restoring) a user's access: disable, enable, revoke their sessions.

use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, EntityTrait, Set};
use serde_json::{Value, json};

use crate::access::{Action, Grants};
use crate::command::{Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::events::bus::BusEvent;
use crate::kernel::CommandContext;

/// What an admin does to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange {
    Disable,
    Enable,
    RevokeSessions,
}

impl UserChange {
    fn action(self) -> &'static str {
        match self {
            Self::Disable => "user.disabled",
            Self::Enable => "user.enabled",
            Self::RevokeSessions => "user.sessions_revoked",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Disable => "disabled",
            Self::Enable => "enabled",
            Self::RevokeSessions => "revoked the sessions of",
        }
    }
}

/// Disables, enables or revokes the sessions of `subject`, audited with the reason. A
/// subject never seen before gets a row, so an account can be shut before its first
/// request. The output is the user's row after it.
pub struct ChangeUser {
    change: UserChange,
    subject: String,
    reason: String,
}

impl ChangeUser {
    pub fn new(
        ctx: &CommandContext,
        change: UserChange,
        subject: &str,
        reason: Option<&str>,
    ) -> Result<Self, AppError> {
        let subject = subject.trim();
        if subject.is_empty() || subject.len() > 255 {
            return Err(AppError::bad_input(
                "subject",
                "subject must be 1 to 255 characters",
            ));
        }
        let reason = reason.map(str::trim).unwrap_or_default().to_owned();
        if change != UserChange::Enable && reason.is_empty() {
            return Err(AppError::bad_input(
                "reason",
                "say why: reason must not be empty",
            ));
        }
        if change != UserChange::Enable && subject == ctx.actor.subject {
            return Err(AppError::bad_input(
                "subject",
                "you cannot lock yourself out; ask another admin",
            ));
        }
        Ok(Self {
            change,
            subject: subject.to_owned(),
            reason,
        })
    }
}

impl Command for ChangeUser {
    type Output = user::Model;

    fn operation(&self) -> &'static str {
        match self.change {
            UserChange::Disable => "disableUser",
            UserChange::Enable => "enableUser",
            UserChange::RevokeSessions => "revokeSessions",
        }
    }

    fn fingerprint(&self) -> Value {
        json!({ "subject": self.subject, "reason": self.reason })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: match self.change {
                UserChange::Disable => "user.disable",
                UserChange::Enable => "user.enable",
                UserChange::RevokeSessions => "user.revoke_sessions",
            },
            subject_type: "user",
            subject_id: self.subject.clone(),
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
        let before = user::Entity::find_by_id(self.subject.clone())
            .one(txn)
            .await?;
        let now = ctx.now();
        let after = match before.clone() {
            Some(row) => {
                let mut active: user::ActiveModel = row.into();
                apply(&mut active, self.change, &self.reason, now);
                active.update(txn).await?
            }
            None => {
                let mut active = user::ActiveModel {
                    subject: Set(self.subject.clone()),
                    name: Set(None),
                    email: Set(None),
                    roles: Set(json!([])),
                    first_seen_at: Set(now),
                    last_seen_at: Set(now),
                    disabled_at: Set(None),
                    disabled_reason: Set(None),
                    sessions_revoked_at: Set(None),
                };
                apply(&mut active, self.change, &self.reason, now);
                active.insert(txn).await?
            }
        };
        let because = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", self.reason)
        };
        let summary = format!(
            "{} {} {}{because}",
            ctx.actor.subject,
            self.change.verb(),
            self.subject
        );
        let event = ctx
            .event(self.change.action(), "user", self.subject.clone(), summary)
            .before(before.as_ref().map(user_snapshot))
            .after(user_snapshot(&after))
            .reason(Some(self.reason.clone()));
        // Committed, open connections (here and on other replicas) re-check this user.
        let changed = BusEvent::UserAccessChanged {
            subject: self.subject.clone(),
        };
        Ok(Effect::audited(after, json!({ "subject": self.subject }), event).announcing(changed))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        _stored: &Value,
    ) -> Result<Self::Output, AppError> {
        user::Entity::find_by_id(self.subject.clone())
            .one(txn)
            .await?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("replayed user {} vanished", self.subject))
            })
    }
}

fn apply(active: &mut user::ActiveModel, change: UserChange, reason: &str, now: DateTime<Utc>) {
    match change {
        UserChange::Disable => {
            active.disabled_at = Set(Some(now));
            active.disabled_reason = Set(Some(reason.to_owned()));
        }
        UserChange::Enable => {
            active.disabled_at = Set(None);
            active.disabled_reason = Set(None);
        }
        UserChange::RevokeSessions => {
            active.sessions_revoked_at = Set(Some(now));
        }
    }
}

fn user_snapshot(row: &user::Model) -> Value {
    json!({
        "subject": row.subject,
        "disabledAt": row.disabled_at,
        "disabledReason": row.disabled_reason,
        "sessionsRevokedAt": row.sessions_revoked_at,
    })
}
