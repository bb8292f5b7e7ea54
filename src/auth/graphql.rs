//! `viewer`: who the API thinks is calling.

use async_graphql::{Context, Object, SimpleObject};

use super::model::{Identity, Viewer};
use crate::error::AppError;

#[derive(Default)]
pub struct AuthQuery;

/// The authenticated caller.
#[derive(SimpleObject)]
#[graphql(name = "Viewer")]
pub struct ViewerObject {
    /// The token's subject: the stable identifier of the person or service.
    subject: String,
    name: Option<String>,
    email: Option<String>,
    /// Roles from the token's `roles` claim.
    roles: Vec<String>,
}

impl From<&Viewer> for ViewerObject {
    fn from(viewer: &Viewer) -> Self {
        Self {
            subject: viewer.subject.clone(),
            name: viewer.name.clone(),
            email: viewer.email.clone(),
            roles: viewer.roles.clone(),
        }
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
