//! `viewer`: who the API thinks is calling, and what they may do.

use async_graphql::{ComplexObject, Context, Object, SimpleObject};

use crate::access::{Action, operation_grants};
use crate::error;
use crate::kernel::Viewer;
use crate::kernel::resolver::require_viewer;

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
    async fn permissions(&self, ctx: &Context<'_>) -> error::Result<Vec<Permission>> {
        let grants = operation_grants(ctx, &self.viewer).await?;
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
    async fn viewer(&self, ctx: &Context<'_>) -> error::Result<ViewerObject> {
        Ok(require_viewer(ctx)?.into())
    }
}
