//! Webhooks: decisions delivered, signed, to the systems that act on them — at least once,
//! with one event id per event so receivers make it exactly once.
//!
//! - [`endpoints`]: registering, changing, disabling endpoints (admin commands, audited).
//! - [`deliveries`]: the ledger — outbox entries fanned out into one delivery per
//!   endpoint, claimed, recorded, dead-lettered, replayed, listed.
//! - [`relay`]: the job every replica runs, and the HTTP attempt itself.
//! - [`guard`]: where webhooks may go (https, no internal addresses, DNS rebinding).
//! - [`signature`]: the HMAC-SHA256 signature receivers verify.
//! - [`graphql`]: the API.
//!
//! The outbox rows are written by the command pipeline in each transition's transaction;
//! this module only reads them.

pub mod deliveries;
pub mod endpoints;
pub mod graphql;
pub mod guard;
pub mod relay;
pub mod signature;
