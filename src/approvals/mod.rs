//! Policies, requests, decisions: the approval state machine and the queue.
//!
//! - [`model`]: the rules and every transition, as pure functions.
//! - [`policies`]: `upsertPolicy` and reading policy versions.
//! - one file per request command — [`submit`], [`decide`], [`cancel`], [`expire`] — each
//!   a `command::Command` run by the one pipeline; [`store`] holds what they share.
//! - [`queries`]: every read of requests (`request`, `requests`, `myQueue`, eligible
//!   approvers). Who may see or decide what is `access::requests`, not here.
//! - [`feed`]: one reader of the audit log per replica, fanning request events out to
//!   every `requestEvents` subscriber in memory.
//! - [`loader`]: the DataLoaders that keep nested fields from issuing a query per row.
//! - [`graphql`]: the API surface, including the `requestEvents` subscription.

pub mod cancel;
pub mod decide;
pub mod expire;
pub mod feed;
pub mod graphql;
pub mod loader;
pub mod model;
pub mod policies;
pub mod queries;
pub mod store;
pub mod submit;
