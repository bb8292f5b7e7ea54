//! Schema assembly: the domain parts merged into one schema, plus the limits every
//! operation runs under. The schema is built apart from the HTTP layer so the SDL can be
//! printed (`countersign schema`) without a database.
//!
//! Nothing here resolves data; each domain's `graphql` module does.

pub mod graphiql;
pub mod handlers;
mod limits;
pub mod transport_ws;

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextRequest,
};
use async_graphql::{MergedObject, MergedSubscription, Response, SDLExportOptions, Schema};
use async_graphql::{Request, ServerResult};
use sea_orm::DatabaseConnection;

use crate::admin::graphql::{AdminMutation, AdminQuery};
use crate::approvals::graphql::{ApprovalsMutation, ApprovalsQuery, ApprovalsSubscription};
use crate::approvals::loader::Loaders;
use crate::audit::graphql::AuditQuery;
use crate::auth::JwtVerifier;
use crate::auth::graphql::AuthQuery;
use crate::config::Config;
use crate::error::ensure_code;
use crate::events::bus::EventBus;
use crate::kernel::Clock;
use crate::telemetry::Metrics;

/// Operation limits: generous for the console, bounded for everyone.
/// The depth leaves one level above what GraphiQL's own introspection query needs (15);
/// lower, and GraphiQL loads without a schema.
pub const MAX_DEPTH: usize = 16;
pub const MAX_COMPLEXITY: usize = 5_000;
pub const MAX_RECURSIVE_DEPTH: usize = 32;
pub const MAX_DIRECTIVES: usize = 16;

// `verifyAuditChain` reads the whole log; its cost makes a second one in the same
// operation exceed the complexity limit.
const _: () = assert!(2 * crate::audit::graphql::VERIFY_CHAIN_COST > MAX_COMPLEXITY);

#[derive(MergedObject, Default)]
pub struct Query(AuthQuery, ApprovalsQuery, AdminQuery, AuditQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(ApprovalsMutation, AdminMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(ApprovalsSubscription);

pub type CountersignSchema = Schema<Query, Mutation, Subscription>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub schema: CountersignSchema,
    pub verifier: Arc<JwtVerifier>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub bus: Arc<EventBus>,
    pub clock: Clock,
}

/// The schema with its runtime data: the database handle, the event bus, the clock, and
/// fresh DataLoaders for every operation.
pub fn build_schema(
    config: &Config,
    db: DatabaseConnection,
    bus: Arc<EventBus>,
    clock: Clock,
) -> CountersignSchema {
    schema_builder()
        .extension(limits::OperationLimits {
            max_aliases: config.max_aliases,
            max_fields: config.max_fields,
        })
        .extension(PerOperationLoaders(db.clone()))
        .data(db)
        .data(bus)
        .data(clock)
        .finish()
}

/// The SDL, with types, fields, arguments and enum items sorted so the output is stable.
pub fn sdl() -> String {
    schema_builder().finish().sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
    .limit_directives(MAX_DIRECTIVES)
    .extension(ErrorCodes)
}

/// Makes sure every error leaving the schema, including async-graphql's own parse and
/// validation errors, carries `extensions.code` and `extensions.retryable`.
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        response.errors = response.errors.into_iter().map(ensure_code).collect();
        response
    }
}

/// Gives every operation (HTTP or WebSocket) its own DataLoaders, so their caches live
/// exactly as long as the operation.
struct PerOperationLoaders(DatabaseConnection);

impl ExtensionFactory for PerOperationLoaders {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerOperationLoaders(self.0.clone()))
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for PerOperationLoaders {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, request.data(Arc::new(Loaders::new(&self.0))))
            .await
    }
}
