//! `rolePermissions`, `grantPermission`, `revokePermission`: roles as data, for admins.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::role_permission;
use sea_orm::DatabaseConnection;

use super::Action;
use super::service::{GrantChange, authorize, change_grant, role_grants};
use crate::auth::graphql::{command_context, require_viewer};
use crate::error::AppError;

/// One grant of an action to a role.
#[derive(SimpleObject)]
pub struct RolePermission {
    role: String,
    action: Action,
    /// The policy it is limited to; null means every policy.
    policy: Option<String>,
    granted_by: String,
    granted_at: DateTime<Utc>,
}

impl TryFrom<role_permission::Model> for RolePermission {
    type Error = AppError;

    fn try_from(row: role_permission::Model) -> Result<Self, AppError> {
        Ok(Self {
            action: Action::parse(&row.action).ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("stored action {:?}", row.action))
            })?,
            role: row.role,
            policy: row.policy_key,
            granted_by: row.granted_by,
            granted_at: row.granted_at,
        })
    }
}

fn convert(rows: Vec<role_permission::Model>) -> Result<Vec<RolePermission>, AppError> {
    rows.into_iter().map(RolePermission::try_from).collect()
}

#[derive(Default)]
pub struct PermissionsQuery;

#[Object]
impl PermissionsQuery {
    /// What `role` may do. Admins only.
    async fn role_permissions(
        &self,
        ctx: &Context<'_>,
        role: String,
    ) -> async_graphql::Result<Vec<RolePermission>> {
        let viewer = require_viewer(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        authorize(db, viewer, Action::AccessManage, None).await?;
        Ok(convert(role_grants(db, role.trim()).await?)?)
    }
}

#[derive(InputObject)]
pub struct GrantPermissionInput {
    role: String,
    action: Action,
    /// Limit the grant to one policy; omit for every policy.
    policy: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RevokePermissionInput {
    role: String,
    action: Action,
    policy: Option<String>,
    idempotency_key: Option<String>,
}

/// The role's grants after the change.
#[derive(SimpleObject)]
pub struct GrantPermissionPayload {
    role: String,
    permissions: Vec<RolePermission>,
}

#[derive(SimpleObject)]
pub struct RevokePermissionPayload {
    role: String,
    permissions: Vec<RolePermission>,
}

#[derive(Default)]
pub struct PermissionsMutation;

async fn change(
    ctx: &Context<'_>,
    change: GrantChange,
    role: &str,
    action: Action,
    policy: Option<&str>,
    idempotency_key: Option<&str>,
) -> async_graphql::Result<Vec<RolePermission>> {
    let viewer = require_viewer(ctx)?;
    let rows = change_grant(
        ctx.data_unchecked::<DatabaseConnection>(),
        viewer,
        &command_context(ctx),
        change,
        role,
        action,
        policy,
        idempotency_key,
    )
    .await?;
    Ok(convert(rows)?)
}

#[Object]
impl PermissionsMutation {
    /// Let a role do something, on one policy or all. Admins only; audited.
    async fn grant_permission(
        &self,
        ctx: &Context<'_>,
        input: GrantPermissionInput,
    ) -> async_graphql::Result<GrantPermissionPayload> {
        let permissions = change(
            ctx,
            GrantChange::Grant,
            &input.role,
            input.action,
            input.policy.as_deref(),
            input.idempotency_key.as_deref(),
        )
        .await?;
        Ok(GrantPermissionPayload {
            role: input.role.trim().to_owned(),
            permissions,
        })
    }

    /// Take a grant away; effective on the next request on every replica. Admins only;
    /// audited.
    async fn revoke_permission(
        &self,
        ctx: &Context<'_>,
        input: RevokePermissionInput,
    ) -> async_graphql::Result<RevokePermissionPayload> {
        let permissions = change(
            ctx,
            GrantChange::Revoke,
            &input.role,
            input.action,
            input.policy.as_deref(),
            input.idempotency_key.as_deref(),
        )
        .await?;
        Ok(RevokePermissionPayload {
            role: input.role.trim().to_owned(),
            permissions,
        })
    }
}
