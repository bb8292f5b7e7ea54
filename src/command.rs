//! The one command pipeline every state change runs through.
//!
//! In one write transaction ([`crate::write_transaction!`]): claim the idempotency key →
//! the command's own `execute` (authorize → load → check → guarded write) → complete the
//! key → append the audit event (it locks the chain head, so it comes last) → enqueue the
//! outbox entry. A refusal (FORBIDDEN) is recorded afterwards, in its own transaction, as
//! a `….denied` event. Nothing is published from inside the transaction.
//!
//! A replay (the same key and input again within the retention) never re-runs `execute`;
//! it runs the command's `replay`, which authorizes again, so a caller who has lost access
//! since gets what any stranger would.

use std::future::Future;

use sea_orm::{DatabaseConnection, DatabaseTransaction};
use serde_json::Value;
use uuid::Uuid;

use crate::audit;
pub use crate::audit::service::Attempt;
use crate::error::AppError;
use crate::events::outbox::{self, Outgoing};
use crate::idempotency::{self, Claim, CommandKey};
use crate::kernel::{CommandContext, NewEvent};

/// What a command's `execute` did.
pub struct Effect<T> {
    pub output: T,
    /// Stored with the idempotency key, and handed to `replay`.
    pub response: Value,
    /// `None` when nothing changed (nothing to audit, nothing to announce).
    pub event: Option<NewEvent>,
    pub outgoing: Option<Outgoing>,
}

impl<T> Effect<T> {
    /// A change that is audited but announces nothing outside (no outbox entry).
    pub fn audited(output: T, response: Value, event: NewEvent) -> Self {
        Self {
            output,
            response,
            event: Some(event),
            outgoing: None,
        }
    }
}

/// A command's answer, and whether it replays an earlier one.
#[derive(Debug)]
pub struct Ran<T> {
    pub output: T,
    pub replayed: bool,
}

/// One kind of command: what it is called, what it hashes, and its own steps.
pub trait Command: Sync {
    type Output: Send;

    /// The mutation's name: the same key on another operation is a reuse.
    fn operation(&self) -> &'static str;

    /// The command's canonical input, without the idempotency key.
    fn fingerprint(&self) -> Value;

    /// What a refusal is recorded against.
    fn attempt(&self) -> Attempt;

    /// Authorize, load, check and write, inside the pipeline's transaction.
    fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
    ) -> impl Future<Output = Result<Effect<Self::Output>, AppError>> + Send;

    /// The answer to a replay of `stored` (what `execute` stored), authorized again.
    fn replay(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        stored: &Value,
    ) -> impl Future<Output = Result<Self::Output, AppError>> + Send;
}

/// Runs `command` under `ctx` through the pipeline.
pub async fn run<C: Command>(
    db: &DatabaseConnection,
    ctx: &CommandContext,
    command: &C,
) -> Result<Ran<C::Output>, AppError> {
    let key = CommandKey::parse(
        &ctx.actor.subject,
        ctx.idempotency_key.as_deref(),
        command.operation(),
        &command.fingerprint(),
    )?;
    let result = crate::write_transaction!(db, |txn| {
        if let Some(key) = &key {
            if let Claim::Replay(stored) =
                idempotency::claim(txn, key, ctx.now(), ctx.key_retention.0).await?
            {
                let output = command.replay(txn, ctx, &stored).await?;
                return Ok(Ran {
                    output,
                    replayed: true,
                });
            }
        }
        let effect = command.execute(txn, ctx).await?;
        if let Some(key) = &key {
            idempotency::complete(txn, key, effect.response).await?;
        }
        if let Some(event) = effect.event {
            let sequence = audit::service::append(txn, event).await?;
            if let Some(out) = effect.outgoing {
                outbox::enqueue(txn, &out, sequence, ctx.now()).await?;
            }
        }
        Ok(Ran {
            output: effect.output,
            replayed: false,
        })
    });
    if let Err(AppError::Forbidden(why) | AppError::Concealed { reason: why, .. }) = &result {
        audit::service::record_denied(db, ctx, &command.attempt(), why).await;
    }
    result
}

/// The id a command stored for its replay under `field`.
pub fn stored_id(stored: &Value, field: &str) -> Result<Uuid, AppError> {
    stored[field]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("stored idempotent response lacks {field}"))
        })
}
