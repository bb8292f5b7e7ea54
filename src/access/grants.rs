//! Reading grants from the database, and the `require` check everything calls.

use std::sync::Arc;

use async_graphql::Context;
use entity::role_permission;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::model::{Action, Grant, Grants};
use crate::error::AppError;
use crate::kernel::Viewer;
use crate::kernel::resolver::db;

/// The viewer's grants for one operation: admission's (`auth::admission`, read in the
/// same statement as the user's standing and kept at most a second while the bus vouches
/// for it), or read on first use when the operation was let in without them. A
/// subscription replaces them before each event with the request feed's snapshot.
#[derive(Default)]
pub struct OperationGrants(tokio::sync::Mutex<Option<Arc<Grants>>>);

impl OperationGrants {
    pub fn admitted(grants: Grants) -> Self {
        Self(tokio::sync::Mutex::new(Some(Arc::new(grants))))
    }

    pub async fn get<C: ConnectionTrait>(
        &self,
        db: &C,
        viewer: &Viewer,
    ) -> Result<Arc<Grants>, AppError> {
        // Held across the read, so the rows of a page that ask at once share one query.
        let mut slot = self.0.lock().await;
        if let Some(grants) = &*slot {
            return Ok(grants.clone());
        }
        let grants = Arc::new(grants_for(db, viewer).await?);
        *slot = Some(grants.clone());
        Ok(grants)
    }

    /// From now on the operation judges by these (a subscription, before each event,
    /// with the request feed's snapshot).
    pub async fn replace(&self, grants: Arc<Grants>) {
        *self.0.lock().await = Some(grants);
    }
}

/// The viewer's grants for the operation `ctx` belongs to (see [`OperationGrants`]). For
/// reads; a command's grants come from the pipeline, read inside its transaction.
pub async fn operation_grants(ctx: &Context<'_>, viewer: &Viewer) -> Result<Arc<Grants>, AppError> {
    match ctx.data_opt::<Arc<OperationGrants>>() {
        Some(slot) => slot.get(db(ctx), viewer).await,
        None => Ok(Arc::new(grants_for(db(ctx), viewer).await?)),
    }
}

/// [`require`] for a read, against the operation's grants.
pub async fn authorize_read(
    ctx: &Context<'_>,
    viewer: &Viewer,
    action: Action,
    policy: Option<&str>,
) -> Result<Arc<Grants>, AppError> {
    let grants = operation_grants(ctx, viewer).await?;
    require(&grants, action, policy)?;
    Ok(grants)
}

/// Operations oversight (webhooks and their deliveries, `operationsOverview`): admins
/// (`access.manage`) and auditors (`audit.read`) may look; neither grant alone is needed.
pub async fn authorize_oversight(ctx: &Context<'_>, viewer: &Viewer) -> Result<(), AppError> {
    let grants = operation_grants(ctx, viewer).await?;
    if grants.allows(Action::AccessManage, None) || grants.allows(Action::AuditRead, None) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "operations oversight is for admins (access.manage) and auditors (audit.read)".into(),
        ))
    }
}

/// One grant from its stored form; `None` for an action this version does not know.
pub fn grant_of(action: &str, policy: Option<String>) -> Option<Grant> {
    Some(Grant {
        action: Action::parse(action)?,
        policy,
    })
}

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
    Ok(Grants::new(
        rows.into_iter()
            .filter_map(|row| grant_of(&row.action, row.policy_key)),
    ))
}

/// FORBIDDEN unless `grants` allow `action` on `policy` (or on everything, for `None`).
/// Commands get their grants from the pipeline (`command::run`), read inside their
/// transaction; reads use [`authorize_read`].
pub fn require(grants: &Grants, action: Action, policy: Option<&str>) -> Result<(), AppError> {
    if grants.allows(action, policy) {
        Ok(())
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
        .filter_map(|row| Some((row.role, grant_of(&row.action, row.policy_key)?)))
        .collect())
}
