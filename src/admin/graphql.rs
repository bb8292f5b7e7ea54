//! `rolePermissions`, `users`, `grantPermission`, `revokePermission`, `disableUser`,
//! `enableUser`, `revokeSessions`: access administration, for admins.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use entity::{role_permission, user};

use super::accounts::{self, AccountFilter};
use super::grants::{ChangeGrant, GrantChange};
use super::users::{ChangeUser, UserChange};
use crate::access::grants::role_grants;
use crate::access::{Action, authorize_read};
use crate::command;
use crate::error::{self, AppError};
use crate::kernel::Timestamp;
use crate::kernel::resolver::{command_context, db, page_cost, require_viewer};

/// One grant of an action to a role.
#[derive(SimpleObject)]
pub struct RolePermission {
    role: String,
    action: Action,
    /// The policy it is limited to; null means every policy.
    policy: Option<String>,
    granted_by: String,
    granted_at: Timestamp,
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
            granted_at: Timestamp(row.granted_at),
        })
    }
}

fn convert(rows: Vec<role_permission::Model>) -> Result<Vec<RolePermission>, AppError> {
    rows.into_iter().map(RolePermission::try_from).collect()
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// What `role` may do. Admins only.
    async fn role_permissions(
        &self,
        ctx: &Context<'_>,
        role: String,
    ) -> error::Result<Vec<RolePermission>> {
        let viewer = require_viewer(ctx)?;
        authorize_read(ctx, viewer, Action::AccessManage, None).await?;
        convert(role_grants(db(ctx), role.trim()).await?)
    }

    /// The accounts seen so far (anyone who has made a request, or been disabled before
    /// they did), by subject, keyset-paginated; `first` ≤ 100. Admins only.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        filter: Option<UserAccountFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> error::Result<UserAccountConnection> {
        let viewer = require_viewer(ctx)?;
        authorize_read(ctx, viewer, Action::AccessManage, None).await?;
        let filter = filter.unwrap_or_default();
        let filter = AccountFilter {
            search: filter.search,
            disabled: filter.disabled,
        };
        let (rows, has_next_page) = accounts::list(db(ctx), filter, first, after).await?;
        let end_cursor = rows.last().map(|row| row.subject.clone());
        Ok(UserAccountConnection {
            edges: rows
                .into_iter()
                .map(|row| UserAccountEdge {
                    cursor: row.subject.clone(),
                    node: row.into(),
                })
                .collect(),
            page_info: UserAccountPageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }
}

#[derive(InputObject, Default)]
pub struct UserAccountFilter {
    /// Case-insensitive text in the subject, name or email.
    search: Option<String>,
    /// Only disabled (true) or only enabled (false) accounts.
    disabled: Option<bool>,
}

#[derive(SimpleObject)]
pub struct UserAccountConnection {
    edges: Vec<UserAccountEdge>,
    page_info: UserAccountPageInfo,
}

#[derive(SimpleObject)]
pub struct UserAccountEdge {
    /// Pass as `after` to continue after this account.
    cursor: String,
    node: UserAccount,
}

#[derive(SimpleObject)]
pub struct UserAccountPageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
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

/// A user's account as an admin sees it.
#[derive(SimpleObject)]
pub struct UserAccount {
    subject: String,
    name: Option<String>,
    email: Option<String>,
    /// The roles their last token carried.
    roles: Vec<String>,
    last_seen_at: Timestamp,
    /// Set while the user is disabled; every request they make is refused.
    disabled_at: Option<Timestamp>,
    disabled_reason: Option<String>,
    /// Tokens issued before this are refused.
    sessions_revoked_at: Option<Timestamp>,
}

impl From<user::Model> for UserAccount {
    fn from(row: user::Model) -> Self {
        Self {
            roles: serde_json::from_value(row.roles).unwrap_or_default(),
            subject: row.subject,
            name: row.name,
            email: row.email,
            last_seen_at: Timestamp(row.last_seen_at),
            disabled_at: row.disabled_at.map(Timestamp),
            disabled_reason: row.disabled_reason,
            sessions_revoked_at: row.sessions_revoked_at.map(Timestamp),
        }
    }
}

#[derive(InputObject)]
pub struct DisableUserInput {
    subject: String,
    /// Why; recorded in the audit log.
    reason: String,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct EnableUserInput {
    subject: String,
    reason: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RevokeSessionsInput {
    subject: String,
    /// Why; recorded in the audit log.
    reason: String,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct DisableUserPayload {
    user: UserAccount,
}

#[derive(SimpleObject)]
pub struct EnableUserPayload {
    user: UserAccount,
}

#[derive(SimpleObject)]
pub struct RevokeSessionsPayload {
    user: UserAccount,
}

#[derive(Default)]
pub struct AdminMutation;

async fn change_grant(
    ctx: &Context<'_>,
    change: GrantChange,
    role: &str,
    action: Action,
    policy: Option<&str>,
    key: Option<String>,
) -> error::Result<(String, Vec<RolePermission>)> {
    let context = command_context(ctx, key)?;
    let command = ChangeGrant::new(change, role, action, policy)?;
    let ran = command::run_for(ctx, &context, &command).await?;
    Ok((command.role().to_owned(), convert(ran.output)?))
}

async fn change_user(
    ctx: &Context<'_>,
    change: UserChange,
    subject: &str,
    reason: Option<&str>,
    key: Option<String>,
) -> error::Result<UserAccount> {
    let context = command_context(ctx, key)?;
    let command = ChangeUser::new(&context, change, subject, reason)?;
    let ran = command::run_for(ctx, &context, &command).await?;
    Ok(ran.output.into())
}

#[Object]
impl AdminMutation {
    /// Let a role do something, on one policy or all. Admins only; audited.
    async fn grant_permission(
        &self,
        ctx: &Context<'_>,
        input: GrantPermissionInput,
    ) -> error::Result<GrantPermissionPayload> {
        let (role, permissions) = change_grant(
            ctx,
            GrantChange::Grant,
            &input.role,
            input.action,
            input.policy.as_deref(),
            input.idempotency_key,
        )
        .await?;
        Ok(GrantPermissionPayload { role, permissions })
    }

    /// Take a grant away: commands everywhere see it at once, reads on the next request
    /// (within a second on other replicas). Admins only; audited.
    async fn revoke_permission(
        &self,
        ctx: &Context<'_>,
        input: RevokePermissionInput,
    ) -> error::Result<RevokePermissionPayload> {
        let (role, permissions) = change_grant(
            ctx,
            GrantChange::Revoke,
            &input.role,
            input.action,
            input.policy.as_deref(),
            input.idempotency_key,
        )
        .await?;
        Ok(RevokePermissionPayload { role, permissions })
    }

    /// Refuse every request the user makes, from the next one on (within a second on
    /// other replicas). Admins only; audited.
    async fn disable_user(
        &self,
        ctx: &Context<'_>,
        input: DisableUserInput,
    ) -> error::Result<DisableUserPayload> {
        let user = change_user(
            ctx,
            UserChange::Disable,
            &input.subject,
            Some(&input.reason),
            input.idempotency_key,
        )
        .await?;
        Ok(DisableUserPayload { user })
    }

    /// Let a disabled user back in. Admins only; audited.
    async fn enable_user(
        &self,
        ctx: &Context<'_>,
        input: EnableUserInput,
    ) -> error::Result<EnableUserPayload> {
        let user = change_user(
            ctx,
            UserChange::Enable,
            &input.subject,
            input.reason.as_deref(),
            input.idempotency_key,
        )
        .await?;
        Ok(EnableUserPayload { user })
    }

    /// Refuse every token issued to the user until now; they must sign in again.
    /// Admins only; audited.
    async fn revoke_sessions(
        &self,
        ctx: &Context<'_>,
        input: RevokeSessionsInput,
    ) -> error::Result<RevokeSessionsPayload> {
        let user = change_user(
            ctx,
            UserChange::RevokeSessions,
            &input.subject,
            Some(&input.reason),
            input.idempotency_key,
        )
        .await?;
        Ok(RevokeSessionsPayload { user })
    }
}
