//! The append-only, hash-chained audit log (`docs/ARCHITECTURE.md`, "Invariants").
//!
//! Every state change appends exactly one event inside its own transaction. Appending takes
//! the chain head (one row) as the last step before commit, which makes sequence numbers
//! gapless and commit-ordered. Nothing here may ever update or delete an event.

pub mod graphql;
pub mod model;
pub mod service;

pub use crate::kernel::NewEvent;
