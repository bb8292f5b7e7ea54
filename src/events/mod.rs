//! Events leaving the transaction: the outbox now; the in-process bus, PostgreSQL
//! LISTEN/NOTIFY and subscriptions later (DESIGN §7).
//!
//! Nothing here may publish from inside a business transaction; the outbox row is written
//! in it, and delivery happens after commit.

pub mod outbox;
