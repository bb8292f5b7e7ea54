//! `request`, `requests`, `myQueue`, `policies`.

use async_graphql::{Context, ID, InputObject, Object};

use super::types::{PolicyNode, RequestConnection, RequestNode};
use crate::access::operation_grants;
use crate::approvals::loader::prefetch;
use crate::approvals::model::Status;
use crate::approvals::policies;
use crate::approvals::queries::{self, Order, RequestFilter};
use crate::error;
use crate::kernel::Timestamp;
use crate::kernel::resolver::{clock, db, page_cost, require_viewer};

#[derive(InputObject, Default)]
#[graphql(name = "RequestFilter")]
pub struct RequestFilterInput {
    status: Option<Status>,
    /// Policy key.
    policy: Option<String>,
    /// Requester subject.
    requester: Option<String>,
    created_after: Option<Timestamp>,
    created_before: Option<Timestamp>,
    /// Case-insensitive text in the title.
    search: Option<String>,
}

#[derive(Default)]
pub struct ApprovalsQuery;

#[Object]
impl ApprovalsQuery {
    /// A request by id; null when it does not exist or the viewer may not see it.
    async fn request(&self, ctx: &Context<'_>, id: ID) -> error::Result<Option<RequestNode>> {
        let viewer = require_viewer(ctx)?;
        let grants = operation_grants(ctx, viewer).await?;
        Ok(queries::find_visible(db(ctx), viewer, &grants, &id)
            .await?
            .map(RequestNode::new))
    }

    /// Requests the viewer may see, newest first by default. Keyset-paginated; `first` ≤ 100.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn requests(
        &self,
        ctx: &Context<'_>,
        filter: Option<RequestFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        order_by: Option<Order>,
    ) -> error::Result<RequestConnection> {
        let viewer = require_viewer(ctx)?;
        let filter = filter.unwrap_or_default();
        let grants = operation_grants(ctx, viewer).await?;
        let page = queries::list(
            db(ctx),
            viewer,
            &grants,
            RequestFilter {
                status: filter.status,
                policy: filter.policy,
                requester: filter.requester,
                created_after: filter.created_after.map(|t| t.0),
                created_before: filter.created_before.map(|t| t.0),
                search: filter.search,
            },
            order_by.unwrap_or_default(),
            first,
            after,
        )
        .await?;
        let rows: Vec<_> = page.rows.iter().map(|(_, r)| r).collect();
        let related = prefetch(ctx, &rows, grants, clock(ctx).now()).await?;
        Ok(RequestConnection::new(page, related))
    }

    /// Pending requests the viewer may decide now: oldest first by default,
    /// `EXPIRES_AT_ASC` for the nearest deadline first.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn my_queue(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        order_by: Option<Order>,
    ) -> error::Result<RequestConnection> {
        let viewer = require_viewer(ctx)?;
        let grants = operation_grants(ctx, viewer).await?;
        let now = clock(ctx).now();
        let order = order_by.unwrap_or(Order::CreatedAtAsc);
        let page = queries::my_queue(db(ctx), viewer, &grants, now, order, first, after).await?;
        let rows: Vec<_> = page.rows.iter().map(|(_, r)| r).collect();
        let related = prefetch(ctx, &rows, grants, now).await?;
        Ok(RequestConnection::new(page, related))
    }

    /// Where the request feed stands now. Pass it as `after` to `requestEvents` to get every
    /// change committed after this moment: read it before loading a list, subscribe with
    /// it, and nothing that happens in between is missed.
    async fn request_events_cursor(&self, ctx: &Context<'_>) -> error::Result<String> {
        require_viewer(ctx)?;
        Ok(crate::audit::service::head(db(ctx)).await?.0.to_string())
    }

    /// Every version of a policy, newest first (requests keep the version they were filed
    /// under); empty when the viewer may not see the policy.
    async fn policy_versions(
        &self,
        ctx: &Context<'_>,
        key: String,
    ) -> error::Result<Vec<PolicyNode>> {
        let viewer = require_viewer(ctx)?;
        let grants = operation_grants(ctx, viewer).await?;
        Ok(
            policies::policy_history(db(ctx), viewer, &grants, key.trim())
                .await?
                .into_iter()
                .map(PolicyNode)
                .collect(),
        )
    }

    /// The current version of every policy the viewer may use, decide or manage.
    async fn policies(&self, ctx: &Context<'_>) -> error::Result<Vec<PolicyNode>> {
        let viewer = require_viewer(ctx)?;
        let grants = operation_grants(ctx, viewer).await?;
        Ok(policies::visible_policies(db(ctx), viewer, &grants)
            .await?
            .into_iter()
            .map(PolicyNode)
            .collect())
    }
}
