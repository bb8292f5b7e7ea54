//! The bottom layer: what every domain may use and what uses none of them.
//!
//! - [`clock`]: the one source of "now" (microsecond precision, injectable in tests).
//! - [`identity`]: who is calling ([`Viewer`], [`Identity`]) and the `system` actor.
//! - [`context`]: the [`CommandContext`] a command runs under (actor, correlation id,
//!   idempotency key, clock) and the constructor of the audit event it records.
//! - [`plain`]: the fast path for fields answered from rows already in memory.
//! - [`resolver`]: what every resolver reads from the GraphQL context.
//! - [`timestamp`]: the API's `DateTime` scalar, checked when an operation is validated.
//!
//! `docs/ARCHITECTURE.md` lists the layers; `tests/api/layers.rs` keeps them honest.

pub mod clock;
pub mod context;
pub mod identity;
pub mod page;
pub mod plain;
pub mod resolver;
pub mod timestamp;

pub use clock::Clock;
pub use context::{CommandContext, KeyRetention, NewEvent};
pub use identity::{Identity, SYSTEM, Viewer};
pub use timestamp::Timestamp;
