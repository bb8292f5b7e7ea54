//! Countersign: the approval queue operations teams trust with money and access.
//!
//! A tour of the crate, outside in:
//! - [`cli`]: the `countersign` commands (serve, migrate, schema, token, audit).
//! - [`config`]: typed configuration from the environment; secrets are never logged.
//! - [`telemetry`]: tracing set-up and the Prometheus metrics on `/metrics`.
//! - [`app`]: binds the listener, assembles the router, serves until shutdown.
//! - [`db`]: connecting (SQLite tuned for concurrent writers) and migrating.
//! - [`graphql`]: schema assembly, limits, the HTTP handlers, the WebSocket protocols,
//!   GraphiQL.
//! - [`auth`]: JWT verification, the `Viewer` (who is calling), dev token minting, users.
//! - [`permissions`]: the one place that decides what a viewer may do.
//! - [`approvals`]: policies, requests, decisions, the state machine, the queue queries.
//! - [`audit`]: the append-only, hash-chained audit log.
//! - [`events`]: the transactional outbox, the event bus (in-process and LISTEN/NOTIFY)
//!   and the `requestEvents` subscription read from the audit log.
//! - [`jobs`]: background work every replica runs (the expiry sweeper).
//! - [`idempotency`]: exactly-once commands with per-actor idempotency keys.
//! - [`demo`]: the demo policies, permissions and personas of DESIGN §8.
//! - [`error`]: the one `AppError` the API speaks, mapped to `extensions.code`.

pub mod app;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod graphql;
pub mod idempotency;
pub mod jobs;
pub mod permissions;
pub mod telemetry;
