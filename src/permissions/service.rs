//! Reading grants from the database and the `authorize` check everything calls.

use entity::{policy, role_permission};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::model::{Action, Grant, Grants};
use crate::approvals::service::{CommandContext, now};
use crate::audit::{self, NewEvent};
use crate::auth::Viewer;
use crate::error::AppError;
use crate::idempotency::{self, Claim, CommandKey};

/// The viewer's effective grants, read now. Pass the command's transaction when deciding
/// inside one, so the check and the effect see the same state.
pub async fn grants_for<C: ConnectionTrait>(db: &C, viewer: &Viewer) -> Result<Grants, AppError> {
    if viewer.roles.is_empty() {
        return Ok(Grants::default());
    }
    let rows = role_permission::Entity::find()
        .filter(role_permission::Column::Role.is_in(viewer.roles.iter().cloned()))
        .all(db)
        .await?;
    Ok(Grants::new(rows.into_iter().filter_map(|row| {
        Some(Grant {
            action: Action::parse(&row.action)?,
            policy: row.policy_key,
        })
    })))
}

/// FORBIDDEN unless the viewer may do `action` on `policy` (or on everything, for `None`).
pub async fn authorize<C: ConnectionTrait>(
    db: &C,
    viewer: &Viewer,
    action: Action,
    policy: Option<&str>,
) -> Result<Grants, AppError> {
    let grants = grants_for(db, viewer).await?;
    if grants.allows(action, policy) {
        Ok(grants)
    } else {
        Err(AppError::Forbidden(format!(
            "you may not {}{}",
            action.as_str(),
            policy.map(|p| format!(" on {p}")).unwrap_or_default()
        )))
    }
}

/// The grants of one role, ordered for display.
pub async fn role_grants<C: ConnectionTrait>(
    db: &C,
    role: &str,
) -> Result<Vec<role_permission::Model>, AppError> {
    Ok(role_permission::Entity::find()
        .filter(role_permission::Column::Role.eq(role))
        .order_by_asc(role_permission::Column::Action)
        .order_by_asc(role_permission::Column::PolicyKey)
        .all(db)
        .await?)
}

/// Grant or revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantChange {
    Grant,
    Revoke,
}

/// Grants or revokes `action` (on `policy`, or on every policy) for `role`. Admins
/// (`access.manage`) only; audited with the role's grants before and after. Takes effect on
/// the next request everywhere: grants are read from the database on every check.
#[allow(clippy::too_many_arguments)]
pub async fn change_grant(
    db: &DatabaseConnection,
    viewer: &Viewer,
    context: &CommandContext,
    change: GrantChange,
    role: &str,
    action: Action,
    policy: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<Vec<role_permission::Model>, AppError> {
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
    let policy = policy.map(str::trim).filter(|p| !p.is_empty());
    let operation = match change {
        GrantChange::Grant => "grantPermission",
        GrantChange::Revoke => "revokePermission",
    };
    let key = CommandKey::parse(
        &viewer.subject,
        idempotency_key,
        operation,
        &json!({ "role": role, "action": action.as_str(), "policy": policy }),
    )?;

    let result = crate::write_transaction!(db, |txn| {
        if let Some(key) = &key {
            if let Claim::Replay(_) = idempotency::claim(txn, key).await? {
                return role_grants(txn, role).await;
            }
        }
        authorize(txn, viewer, Action::AccessManage, None).await?;
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
        match (change, existing) {
            (GrantChange::Grant, Some(_)) => {
                // Already granted: nothing changes, so nothing is audited.
                if let Some(key) = &key {
                    idempotency::complete(txn, key, json!({ "role": role })).await?;
                }
                return Ok(before);
            }
            (GrantChange::Grant, None) => {
                role_permission::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    role: Set(role.to_owned()),
                    action: Set(action.as_str().to_owned()),
                    policy_key: Set(policy.map(str::to_owned)),
                    granted_by: Set(viewer.subject.clone()),
                    granted_at: Set(now()),
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
        if let Some(key) = &key {
            idempotency::complete(txn, key, json!({ "role": role })).await?;
        }
        let what = format!(
            "{}{}",
            action.as_str(),
            policy
                .map(|p| format!(" on {p}"))
                .unwrap_or_else(|| " on every policy".into())
        );
        audit::service::append(
            txn,
            NewEvent {
                actor_subject: viewer.subject.clone(),
                actor_roles: viewer.roles.clone(),
                action: match change {
                    GrantChange::Grant => "permission.granted".into(),
                    GrantChange::Revoke => "permission.revoked".into(),
                },
                subject_type: "role".into(),
                subject_id: role.to_owned(),
                request_id: None,
                before: Some(grants_snapshot(&before)),
                after: Some(grants_snapshot(&after)),
                reason: None,
                correlation_id: context.correlation_id.clone(),
                idempotency_key: key.as_ref().map(|k| k.key.clone()),
                summary: match change {
                    GrantChange::Grant => format!("{} granted {role} {what}", viewer.subject),
                    GrantChange::Revoke => format!("{} revoked {what} from {role}", viewer.subject),
                },
            },
        )
        .await?;
        Ok(after)
    });
    let attempted = match change {
        GrantChange::Grant => "permission.grant",
        GrantChange::Revoke => "permission.revoke",
    };
    audit::service::audit_refusal(result, db, viewer, context, attempted, "role", role, None).await
}

fn grants_snapshot(grants: &[role_permission::Model]) -> serde_json::Value {
    json!(
        grants
            .iter()
            .map(|g| json!({ "action": g.action, "policy": g.policy_key }))
            .collect::<Vec<_>>()
    )
}
