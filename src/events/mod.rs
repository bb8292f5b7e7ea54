//! Events leaving the transaction: the outbox, and the bus (in-process broadcast,
//! PostgreSQL LISTEN/NOTIFY across replicas) that tells live connections what changed.
//! The `requestEvents` subscription that reads the audit log is an approvals feature:
//! `approvals::graphql::subscription`.
//!
//! Nothing here may publish from inside a business transaction; the outbox row is written
//! in it, and delivery happens after commit.

pub mod bus;
pub mod outbox;
