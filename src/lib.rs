//! Countersign: the approval queue operations teams trust with money and access.
//!
//! A tour of the crate, outside in:
//! - [`cli`]: the `countersign` commands (serve, migrate, schema, token, audit).
//! - [`config`]: typed configuration from the environment; secrets are never logged.
//! - [`telemetry`]: tracing set-up and the Prometheus metrics on `/metrics`.
//! - [`app`]: binds the listener, assembles the router, serves until shutdown.
//! - [`db`]: connecting (SQLite tuned for concurrent writers), migrating, write
//!   transactions.
//! - [`console`]: the ops console's page and files, embedded, under a strict CSP.
//! - [`graphql`]: schema assembly, limits, the HTTP handlers, the WebSocket protocols,
//!   GraphiQL.
//! - [`approvals`]: policies, requests, decisions, the state machine, the queue queries,
//!   the `requestEvents` subscription.
//! - [`admin`]: the admin commands that change grants and users' standing.
//! - [`auth`]: JWT verification (who is calling), dev token minting, user standing.
//! - [`command`]: the one pipeline every state change runs through.
//! - [`events`]: the transactional outbox and the event bus (in-process and
//!   LISTEN/NOTIFY).
//! - [`audit`]: the append-only, hash-chained audit log.
//! - [`access`]: the one place that decides who may see, decide or change what.
//! - [`idempotency`]: exactly-once commands with per-actor idempotency keys.
//! - [`jobs`]: background work every replica runs (expiry, the webhook relay, purges).
//! - [`webhooks`]: endpoints, the delivery ledger, the relay, signatures, where webhooks
//!   may go.
//! - [`operations`]: what is stuck, at a glance (`operationsOverview`, the same numbers
//!   on `/metrics`).
//! - [`demo`]: the demo policies, permissions and personas.
//! - [`kernel`]: the bottom layer — clock, identity, command context.
//! - [`error`]: the one `AppError` the API speaks, mapped to `extensions.code`.
//!
//! `docs/ARCHITECTURE.md` is the map: the layers, what each may use, and the life of a
//! command and of an event.

pub mod access;
pub mod admin;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod command;
pub mod config;
pub mod console;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod graphql;
pub mod idempotency;
pub mod jobs;
pub mod kernel;
pub mod operations;
pub mod telemetry;
pub mod webhooks;
