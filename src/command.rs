//! The one command pipeline every state change runs through.
//!
//! In one write transaction ([`crate::write_transaction!`]), under the authority lock
//! ([`crate::db::AuthorityLock`]: shared, or exclusive for a command that changes
//! authority): read the actor's grants and check what the command declares it requires
//! ([`Command::requires`]) → claim the idempotency key → the command's own `execute`
//! (load → check its own rule with those grants → guarded write) → complete the key →
//! append the audit event (it locks the chain head, so it comes last) → enqueue the outbox
//! entry. A refusal (FORBIDDEN) is recorded afterwards, in its own transaction, as a
//! `….denied` event. Nothing is published from inside the transaction: after COMMIT the
//! pipeline tells the bus (the audit log grew; and what the command announces, such as
//! `GrantsChanged`), so no resolver or job talks to the bus about a command.
//!
//! A replay (the same key and input again within the retention) never re-runs `execute`;
//! it is checked against the same requirement and runs the command's `replay`, so a caller
//! who has lost access since gets what any stranger would.

use std::future::Future;
use std::sync::Arc;

use sea_orm::{DatabaseConnection, DatabaseTransaction};
use serde_json::Value;
use uuid::Uuid;

use crate::access::{Action, Grants, grants_for, require};
use crate::audit;
pub use crate::audit::service::Attempt;
use crate::db::AuthorityLock;
use crate::error::AppError;
use crate::events::bus::{BusEvent, EventBus};
use crate::events::outbox::{self, Outgoing};
use crate::idempotency::{self, Claim, CommandKey};
use crate::kernel::resolver::db;
use crate::kernel::{CommandContext, NewEvent};

/// What a command's `execute` did.
pub struct Effect<T> {
    pub output: T,
    /// Stored with the idempotency key, and handed to `replay`.
    pub response: Value,
    /// `None` when nothing changed (nothing to audit, nothing to announce).
    pub event: Option<NewEvent>,
    pub outgoing: Option<Outgoing>,
    /// What the bus says after commit besides "the audit log grew" (which [`run`] says for
    /// every audited change): who must re-check what.
    pub announce: Option<BusEvent>,
}

impl<T> Effect<T> {
    /// A change that is audited but sends nothing outside (no outbox entry).
    pub fn audited(output: T, response: Value, event: NewEvent) -> Self {
        Self {
            output,
            response,
            event: Some(event),
            outgoing: None,
            announce: None,
        }
    }

    /// Nothing changed: nothing to audit, send or announce.
    pub fn unchanged(output: T, response: Value) -> Self {
        Self {
            output,
            response,
            event: None,
            outgoing: None,
            announce: None,
        }
    }

    /// Announce `event` on the bus after commit too.
    pub fn announcing(mut self, event: BusEvent) -> Self {
        self.announce = Some(event);
        self
    }
}

/// A command's answer, and whether it replays an earlier one.
#[derive(Debug)]
pub struct Ran<T> {
    pub output: T,
    pub replayed: bool,
}

/// What a command needs before it may run, checked by [`run`] inside its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// The grant of `action` on a policy (or on every policy, for `None`).
    Grant(Action, Option<String>),
    /// The command's own rule on what it loads (a request's policy, its requester), judged
    /// with the grants the pipeline hands it: deciding and cancelling.
    OwnRule,
    /// Nothing: work the system does (expiry).
    Nothing,
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

    /// What the actor needs; the pipeline checks it for `execute` and `replay` alike.
    fn requires(&self) -> Requirement;

    /// Whether the command changes who may do what (a grant): it then runs alone, with the
    /// authority lock exclusive.
    fn changes_authority(&self) -> bool {
        false
    }

    /// Load, check and write, inside the pipeline's transaction. `grants` are the actor's,
    /// read in it under the authority lock, and already meet [`Command::requires`].
    fn execute(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        grants: &Grants,
    ) -> impl Future<Output = Result<Effect<Self::Output>, AppError>> + Send;

    /// The answer to a replay of `stored` (what `execute` stored), with `grants` read as
    /// for `execute`.
    fn replay(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CommandContext,
        grants: &Grants,
        stored: &Value,
    ) -> impl Future<Output = Result<Self::Output, AppError>> + Send;
}

/// [`run`] from a resolver, with the database and the bus of the GraphQL context.
pub async fn run_for<C: Command>(
    gql: &async_graphql::Context<'_>,
    ctx: &CommandContext,
    command: &C,
) -> Result<Ran<C::Output>, AppError> {
    let bus = gql.data_opt::<Arc<EventBus>>();
    run(db(gql), bus, ctx, command).await
}

/// Runs `command` under `ctx` through the pipeline, and after COMMIT (never on rollback,
/// never for a replay) tells `bus` that the audit log grew and what the command announces.
pub async fn run<C: Command>(
    db: &DatabaseConnection,
    bus: Option<&Arc<EventBus>>,
    ctx: &CommandContext,
    command: &C,
) -> Result<Ran<C::Output>, AppError> {
    let key = CommandKey::parse(
        &ctx.actor.subject,
        ctx.idempotency_key.as_deref(),
        command.operation(),
        &command.fingerprint(),
    )?;
    let lock = if command.changes_authority() {
        AuthorityLock::Exclusive
    } else {
        AuthorityLock::Shared
    };
    let requirement = command.requires();
    let result = crate::write_transaction!(db, lock, |txn| {
        let grants = match &requirement {
            Requirement::Nothing => Grants::default(),
            Requirement::OwnRule => grants_for(txn, &ctx.actor).await?,
            Requirement::Grant(action, policy) => {
                let grants = grants_for(txn, &ctx.actor).await?;
                require(&grants, *action, policy.as_deref())?;
                grants
            }
        };
        if let Some(key) = &key {
            if let Claim::Replay(stored) =
                idempotency::claim(txn, key, ctx.now(), ctx.key_retention.0).await?
            {
                let output = command.replay(txn, ctx, &grants, &stored).await?;
                let ran = Ran {
                    output,
                    replayed: true,
                };
                return Ok((ran, false, None));
            }
        }
        let effect = command.execute(txn, ctx, &grants).await?;
        if let Some(key) = &key {
            idempotency::complete(txn, key, effect.response).await?;
        }
        let appended = effect.event.is_some();
        if let Some(event) = effect.event {
            let sequence = audit::service::append(txn, event).await?;
            if let Some(out) = effect.outgoing {
                outbox::enqueue(txn, &out, sequence, ctx.now()).await?;
            }
        }
        let ran = Ran {
            output: effect.output,
            replayed: false,
        };
        Ok((ran, appended, effect.announce))
    });
    match result {
        Ok((ran, appended, announce)) => {
            if let Some(bus) = bus {
                // The announcement first: the feed must reload grants before it reads an
                // event committed after a revocation.
                if let Some(event) = announce {
                    bus.announce(event).await;
                }
                if appended {
                    bus.audit_appended();
                }
            }
            Ok(ran)
        }
        Err(err) => {
            if let AppError::Forbidden(why) | AppError::Concealed { reason: why, .. } = &err {
                audit::service::record_denied(db, ctx, &command.attempt(), why).await;
            }
            Err(err)
        }
    }
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
