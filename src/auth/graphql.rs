//! `viewer` (who the API thinks is calling, and what they may do) and the admin commands
//! that end a user's access: `disableUser`, `enableUser`, `revokeSessions`.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::DatabaseConnection;

use super::model::{Identity, Viewer};
use super::users::{UserChange, change_user};
use crate::approvals::service::CommandContext;
use crate::error::AppError;
use crate::events::bus::{BusEvent, EventBus};
use crate::permissions::Action;
use crate::permissions::service::grants_for;

#[derive(Default)]
pub struct AuthQuery;

/// The authenticated caller.
#[derive(SimpleObject)]
#[graphql(name = "Viewer", complex)]
pub struct ViewerObject {
    /// The token's subject: the stable identifier of the person or service.
    subject: String,
    name: Option<String>,
    email: Option<String>,
    /// Roles from the token's `roles` claim.
    roles: Vec<String>,
    #[graphql(skip)]
    viewer: Viewer,
}

/// An action the viewer may take, on one policy or (policy null) on all.
#[derive(SimpleObject)]
pub struct Permission {
    action: Action,
    policy: Option<String>,
}

impl From<&Viewer> for ViewerObject {
    fn from(viewer: &Viewer) -> Self {
        Self {
            subject: viewer.subject.clone(),
            name: viewer.name.clone(),
            email: viewer.email.clone(),
            roles: viewer.roles.clone(),
            viewer: viewer.clone(),
        }
    }
}

#[ComplexObject]
impl ViewerObject {
    /// What the viewer's roles allow right now, so a console can show and hide actions.
    /// Deciding requests comes from policy stages, not from here.
    async fn permissions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Permission>> {
        let grants = grants_for(ctx.data_unchecked::<DatabaseConnection>(), &self.viewer).await?;
        Ok(grants
            .iter()
            .map(|g| Permission {
                action: g.action,
                policy: g.policy.clone(),
            })
            .collect())
    }
}

#[Object]
impl AuthQuery {
    /// Who am I. Anonymous callers get UNAUTHENTICATED.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<ViewerObject> {
        Ok(require_viewer(ctx)?.into())
    }
}

/// The authenticated viewer of this operation, or UNAUTHENTICATED.
pub fn require_viewer<'a>(ctx: &Context<'a>) -> Result<&'a Viewer, AppError> {
    ctx.data_opt::<Identity>()
        .and_then(Identity::viewer)
        .ok_or(AppError::Unauthenticated(
            "authentication required: send `Authorization: Bearer <token>`",
        ))
}

/// Where this operation came from (the HTTP request id), for the audit log.
pub fn command_context(ctx: &Context<'_>) -> CommandContext {
    ctx.data_opt::<CommandContext>()
        .cloned()
        .unwrap_or_default()
}

/// A user's account as an admin sees it.
#[derive(SimpleObject)]
pub struct UserAccount {
    subject: String,
    name: Option<String>,
    email: Option<String>,
    /// The roles their last token carried.
    roles: Vec<String>,
    last_seen_at: DateTime<Utc>,
    /// Set while the user is disabled; every request they make is refused.
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
    /// Tokens issued before this are refused.
    sessions_revoked_at: Option<DateTime<Utc>>,
}

impl From<user::Model> for UserAccount {
    fn from(row: user::Model) -> Self {
        Self {
            roles: serde_json::from_value(row.roles).unwrap_or_default(),
            subject: row.subject,
            name: row.name,
            email: row.email,
            last_seen_at: row.last_seen_at,
            disabled_at: row.disabled_at,
            disabled_reason: row.disabled_reason,
            sessions_revoked_at: row.sessions_revoked_at,
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
pub struct UsersMutation;

async fn change(
    ctx: &Context<'_>,
    change: UserChange,
    subject: &str,
    reason: Option<&str>,
    key: Option<&str>,
) -> async_graphql::Result<UserAccount> {
    let viewer = require_viewer(ctx)?;
    let row = change_user(
        ctx.data_unchecked::<DatabaseConnection>(),
        viewer,
        &command_context(ctx),
        change,
        subject,
        reason,
        key,
    )
    .await?;
    // Committed: now tell open connections (here and on other replicas) to re-check.
    if let Some(bus) = ctx.data_opt::<Arc<EventBus>>() {
        bus.publish(BusEvent::UserAccessChanged {
            subject: row.subject.clone(),
        })
        .await;
    }
    Ok(row.into())
}

#[Object]
impl UsersMutation {
    /// Refuse every request the user makes, from the next one on, on every replica.
    /// Admins only; audited.
    async fn disable_user(
        &self,
        ctx: &Context<'_>,
        input: DisableUserInput,
    ) -> async_graphql::Result<DisableUserPayload> {
        let user = change(
            ctx,
            UserChange::Disable,
            &input.subject,
            Some(&input.reason),
            input.idempotency_key.as_deref(),
        )
        .await?;
        Ok(DisableUserPayload { user })
    }

    /// Let a disabled user back in. Admins only; audited.
    async fn enable_user(
        &self,
        ctx: &Context<'_>,
        input: EnableUserInput,
    ) -> async_graphql::Result<EnableUserPayload> {
        let user = change(
            ctx,
            UserChange::Enable,
            &input.subject,
            input.reason.as_deref(),
            input.idempotency_key.as_deref(),
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
    ) -> async_graphql::Result<RevokeSessionsPayload> {
        let user = change(
            ctx,
            UserChange::RevokeSessions,
            &input.subject,
            Some(&input.reason),
            input.idempotency_key.as_deref(),
        )
        .await?;
        Ok(RevokeSessionsPayload { user })
    }
}
