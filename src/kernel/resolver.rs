//! What every resolver reads from the GraphQL context: the database, the clock, the
//! caller, and the command context for a mutation.

use async_graphql::Context;
use sea_orm::DatabaseConnection;

use super::clock::Clock;
use super::context::{CommandContext, KeyRetention};
use super::identity::{Identity, Viewer};
use crate::error::AppError;

/// The HTTP request id of this operation (`X-Request-Id`), put in the request data by the
/// HTTP handler.
#[derive(Clone, Debug, Default)]
pub struct Correlation(pub Option<String>);

pub fn db<'a>(ctx: &Context<'a>) -> &'a DatabaseConnection {
    // Put into the schema data by `graphql::build_schema`.
    ctx.data_unchecked::<DatabaseConnection>()
}

pub fn clock(ctx: &Context<'_>) -> Clock {
    ctx.data_opt::<Clock>().cloned().unwrap_or_default()
}

/// The authenticated viewer of this operation, or UNAUTHENTICATED.
pub fn require_viewer<'a>(ctx: &Context<'a>) -> Result<&'a Viewer, AppError> {
    ctx.data_opt::<Identity>()
        .and_then(Identity::viewer)
        .ok_or(AppError::Unauthenticated(
            "authentication required: send `Authorization: Bearer <token>`",
        ))
}

/// The context a mutation runs its command under: the viewer, this operation's request id,
/// the client's idempotency key, the clock.
pub fn command_context(
    ctx: &Context<'_>,
    idempotency_key: Option<String>,
) -> Result<CommandContext, AppError> {
    Ok(CommandContext {
        actor: require_viewer(ctx)?.clone(),
        correlation_id: ctx.data_opt::<Correlation>().and_then(|c| c.0.clone()),
        idempotency_key,
        clock: clock(ctx),
        key_retention: ctx.data_opt::<KeyRetention>().copied().unwrap_or_default(),
    })
}

/// The complexity of a paginated list field: its children counted once per row it may
/// return, so a large page costs what it reads. `first` defaults to 20 and is at most 100
/// (the resolvers refuse anything else).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first.unwrap_or(20).clamp(1, 100);
    usize::try_from(rows)
        .unwrap_or(100)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}
