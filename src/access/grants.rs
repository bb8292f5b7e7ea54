//! Reading grants from the database, and the `authorize` check everything calls.

use entity::role_permission;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::model::{Action, Grant, Grants};
use crate::error::AppError;
use crate::kernel::Viewer;

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

/// The grants of several people at once, by role, for "who could decide this": one read
/// for every role named.
pub async fn grants_by_role<C: ConnectionTrait>(
    db: &C,
    roles: impl IntoIterator<Item = String>,
) -> Result<Vec<(String, Grant)>, sea_orm::DbErr> {
    let rows = role_permission::Entity::find()
        .filter(role_permission::Column::Role.is_in(roles))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let grant = Grant {
                action: Action::parse(&row.action)?,
                policy: row.policy_key,
            };
            Some((row.role, grant))
        })
        .collect())
}
