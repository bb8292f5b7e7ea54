//! Granting and revoking a role's permissions.

use entity::{policy, role_permission};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access::grants::role_grants;
use crate::access::{Action, Grants};
use crate::command::{Attempt, Command, Effect, Requirement};
use crate::error::AppError;
use crate::events::bus::BusEvent;
use crate::kernel::CommandContext;

/// Grant or revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantChange {
    Grant,
    Revoke,
}

/// Grants or revokes `action` (on `policy`, or on every policy) for `role`, audited with the
/// role's grants before and after. Commands everywhere see it at once (they read grants in
/// their transaction); reads on the next request on this replica and within a second on
/// every other (admission's memory). The output is the role's grants after it.
pub struct ChangeGrant {
    change: GrantChange,
    role: String,
    action: Action,
    policy: Option<String>,
}

impl ChangeGrant {
    pub fn new(
        change: GrantChange,
        role: &str,
        action: Action,
        policy: Option<&str>,
    ) -> Result<Self, AppError> {
        let role = role.trim();
        let role_ok = !role.is_empty()
            && role.len() <= 64
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !role_ok {
            return Err(AppError::bad_input(
                "role",
                "a role is 1 to 64 characters of letters, digits, _, - and .",
            ));
        }
        Ok(Self {
            change,
            role: role.to_owned(),
            action,
            policy: policy
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        })
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    fn what(&self) -> String {
        format!(
            "{}{}",
            self.action.as_str(),
            self.policy
                .as_deref()
                .map(|p| format!(" on {p}"))
                .unwrap_or_else(|| " on every policy".into())
        )
    }
}

impl Command for ChangeGrant {
    type Output = Vec<role_permission::Model>;

    fn operation(&self) -> &'static str {
        match self.change {
            GrantChange::Grant => "grantPermission",
            GrantChange::Revoke => "revokePermission",
        }
    }

    fn fingerprint(&self) -> Value {
        json!({ "role": self.role, "action": self.action.as_str(), "policy": self.policy })
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            action: match self.change {
                GrantChange::Grant => "permission.grant",
                GrantChange::Revoke => "permission.revoke",
            },
            subject_type: "role",
            subject_id: self.role.clone(),
            request_id: None,
        }
    }

    fn requires(&self) -> Requirement {
        Requirement::Grant(Action::AccessManage, None)
    }

    fn changes_authority(&self) -> bool {
        true
    }

    async fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        _grants: &Grants,
    ) -> Result<Effect<Self::Output>, AppError> {
        let (role, action, policy) = (self.role.as_str(), self.action, self.policy.as_deref());
        if let Some(policy) = policy {
            let exists = policy::Entity::find()
                .filter(policy::Column::Key.eq(policy))
                .one(txn)
                .await?
                .is_some();
            if !exists {
                return Err(AppError::bad_input(
                    "policy",
                    format!("there is no policy {policy:?}"),
                ));
            }
        }
        let before = role_grants(txn, role).await?;
        let existing = before
            .iter()
            .find(|g| g.action == action.as_str() && g.policy_key.as_deref() == policy)
            .cloned();
        match (self.change, existing) {
            (GrantChange::Grant, Some(_)) => {
                // Already granted: nothing changes, so nothing is audited.
                return Ok(Effect::unchanged(before, json!({ "role": role })));
            }
            (GrantChange::Grant, None) => {
                role_permission::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    role: Set(role.to_owned()),
                    action: Set(action.as_str().to_owned()),
                    policy_key: Set(policy.map(str::to_owned)),
                    granted_by: Set(ctx.actor.subject.clone()),
                    granted_at: Set(ctx.now()),
                }
                .insert(txn)
                .await?;
            }
            (GrantChange::Revoke, None) => {
                return Err(AppError::NotFound(format!(
                    "{role} has no {} grant{}",
                    action.as_str(),
                    policy.map(|p| format!(" on {p}")).unwrap_or_default()
                )));
            }
            (GrantChange::Revoke, Some(grant)) => {
                // The "somebody can still manage access" count below cannot be raced:
                // the pipeline runs a change of authority alone (the exclusive authority
                // lock on PostgreSQL, one writer at a time on SQLite).
                role_permission::Entity::delete_by_id(grant.id)
                    .exec(txn)
                    .await?;
                if action == Action::AccessManage && policy.is_none() {
                    let left = role_permission::Entity::find()
                        .filter(role_permission::Column::Action.eq(Action::AccessManage.as_str()))
                        .filter(role_permission::Column::PolicyKey.is_null())
                        .count(txn)
                        .await?;
                    if left == 0 {
                        return Err(AppError::bad_input(
                            "action",
                            "this would leave no role able to manage access",
                        ));
                    }
                }
            }
        }
        let after = role_grants(txn, role).await?;
        let (action_name, summary) = match self.change {
            GrantChange::Grant => (
                "permission.granted",
                format!("{} granted {role} {}", ctx.actor.subject, self.what()),
            ),
            GrantChange::Revoke => (
                "permission.revoked",
                format!("{} revoked {} from {role}", ctx.actor.subject, self.what()),
            ),
        };
        let event = ctx
            .event(action_name, "role", role, summary)
            .before(Some(grants_snapshot(&before)))
            .after(grants_snapshot(&after));
        // Committed, what judges events in memory (the request feed) reads grants again.
        Ok(Effect::audited(after, json!({ "role": role }), event)
            .announcing(BusEvent::GrantsChanged))
    }

    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        _ctx: &CommandContext,
        _grants: &Grants,
        _stored: &Value,
    ) -> Result<Self::Output, AppError> {
        role_grants(txn, &self.role).await
    }
}

fn grants_snapshot(grants: &[role_permission::Model]) -> Value {
    json!(
        grants
            .iter()
            .map(|g| json!({ "action": g.action, "policy": g.policy_key }))
            .collect::<Vec<_>>()
    )
}
