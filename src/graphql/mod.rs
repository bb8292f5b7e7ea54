//! Schema assembly: the domain parts merged into one schema, plus the limits every
//! operation runs under. The schema is built apart from the HTTP layer so the SDL can be
//! printed (`countersign schema`) without a database.
//!
//! Nothing here resolves data; each domain's `graphql` module does.

pub mod graphiql;
pub mod handlers;
mod limits;
pub mod throttle;
pub mod transport_ws;
mod variables;

use std::sync::Arc;

use async_graphql::Request;
use async_graphql::{MergedObject, MergedSubscription, Response, SDLExportOptions, Schema};
use sea_orm::DatabaseConnection;

use crate::access::{Grants, OperationGrants};
use crate::admin::graphql::{AdminMutation, AdminQuery};
use crate::approvals::feed::RequestFeed;
use crate::approvals::graphql::{ApprovalsMutation, ApprovalsQuery, ApprovalsSubscription};
use crate::approvals::loader::{Loaders, PolicyVersions};
use crate::audit::graphql::AuditQuery;
use crate::auth::JwtVerifier;
use crate::auth::graphql::AuthQuery;
use crate::config::Config;
use crate::error::ensure_code;
use crate::events::bus::EventBus;
use crate::kernel::{Clock, Identity, KeyRetention};
use crate::operations::graphql::OperationsQuery;
use crate::telemetry::Metrics;
use crate::webhooks::graphql::{WebhooksMutation, WebhooksQuery};
use crate::webhooks::guard::Destinations;

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
pub struct Query(
    AuthQuery,
    ApprovalsQuery,
    AdminQuery,
    AuditQuery,
    WebhooksQuery,
    OperationsQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(ApprovalsMutation, AdminMutation, WebhooksMutation);

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
    /// Who is let in: standing and grants, from memory while the bus vouches for it.
    pub admission: Arc<crate::auth::admission::Admission>,
    pub clock: Clock,
    pub throttle: Arc<throttle::Throttle>,
    /// This replica's request feed, for `/metrics` (how far it has read).
    pub feed: Arc<RequestFeed>,
    /// Becomes true when the server starts shutting down: WebSockets close with 1001.
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// The overview `/metrics` exports, read at most every few seconds.
    pub overview: Arc<crate::operations::OverviewCache>,
    /// Open WebSockets, which shutdown waits for (see `App::run_until`).
    pub sockets: Arc<std::sync::atomic::AtomicUsize>,
}

/// The schema with its runtime data: the database handle, the event bus, the request
/// feed, the clock.
///
/// No async-graphql extension is registered: with any at all, every field of every row
/// pays for the extension chain (about a third of a list page's CPU). What extensions
/// would do is done around execution instead, in [`prepare`] and [`finish`].
pub fn build_schema(
    db: DatabaseConnection,
    bus: Arc<EventBus>,
    feed: Arc<RequestFeed>,
    clock: Clock,
    config: &Config,
) -> CountersignSchema {
    let mut builder = schema_builder();
    if !config.limits.introspection {
        // "Did you mean …?" leaks the schema as surely as introspection does.
        builder = builder.disable_suggestions();
    }
    if config.traces {
        // A span per resolver: only when traces are exported, as any extension costs
        // every field of every row. Fields a page answers from memory (`kernel/plain.rs`)
        // run no resolver and get no span.
        builder = builder.extension(async_graphql::extensions::Tracing);
    }
    builder
        .data(db)
        .data(bus)
        .data(feed)
        .data(clock)
        .data(Arc::new(PolicyVersions::default()))
        .data(Destinations::new(&config.webhooks))
        .data(KeyRetention(
            chrono::Duration::from_std(config.jobs.idempotency_retention)
                .unwrap_or_else(|_| KeyRetention::default().0),
        ))
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
}

/// What every operation gets before it runs, over HTTP or a WebSocket: parsed once and
/// held to the shape limits (`graphql/limits.rs`), its own DataLoaders (so their caches
/// live exactly as long as the operation), the caller's identity, and the grants read at
/// admission (`access::OperationGrants`). An operation that fails here is answered with
/// the response to send instead.
pub fn prepare(
    state: &AppState,
    mut request: Request,
    identity: Identity,
    grants: Option<Grants>,
) -> Result<Request, Box<Response>> {
    let limits = limits::Limits {
        max_aliases: state.config.max_aliases,
        max_fields: state.config.max_fields,
    };
    if let Err(refused) = limits.check(&mut request) {
        return Err(Box::new(Response::from_errors(vec![ensure_code(refused)])));
    }
    let grants = grants.map(OperationGrants::admitted).unwrap_or_default();
    Ok(request
        .data(Arc::new(Loaders::new(&state.db)))
        .data(Arc::new(grants))
        .data(identity))
}

/// The operation's type (`query`, `mutation`, `subscription`) and name, for metrics; the
/// parse is kept in the request, so execution does not parse again.
pub fn operation_of(request: &mut Request) -> (&'static str, Option<String>) {
    use async_graphql::parser::types::OperationType;
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return ("invalid", None);
    };
    document
        .operations
        .iter()
        .find(|(name, _)| wanted.is_none() || name.map(|n| n.as_str()) == wanted.as_deref())
        .map(|(name, operation)| {
            let kind = match operation.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            (kind, name.map(|n| n.to_string()))
        })
        .unwrap_or(("invalid", None))
}

/// The span an operation runs in, named after it (`otel.name`): in traces, its resolvers
/// and SQL statements sit beneath it, inside the HTTP request's span (which carries the
/// request id).
pub fn operation_span(kind: &'static str, name: Option<&str>) -> tracing::Span {
    let name = name.unwrap_or("anonymous");
    tracing::info_span!(
        "graphql",
        otel.name = %format!("{kind} {name}"),
        graphql.operation.type = kind,
        graphql.operation.name = name,
    )
}

/// Every error leaving the schema, async-graphql's own included, carries
/// `extensions.code` and `extensions.retryable` (`error::ensure_code`).
pub fn finish(mut response: Response) -> Response {
    response.errors = response.errors.into_iter().map(ensure_code).collect();
    response
}
