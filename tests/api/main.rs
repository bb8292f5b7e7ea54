//! The one integration-test binary: every test starts the real server through the harness
//! in `helpers` and talks to it over HTTP or WebSocket only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::string_slice,
    reason = "in a test, a panic is a failed test, which is what we want"
)]

#[macro_use]
mod harness;
mod helpers;

mod audit;
mod authority;
mod lifecycle_helpers;

mod access;
mod auth;
mod cli;
mod console;
mod errors;
mod exactly_once;
mod expiry;
mod graphiql;
mod hardening;
mod health;
mod hostile;
mod jwt;
mod layers;
mod lifecycle;
mod limits;
mod metrics;
mod model;
mod permissions;
mod queries;
mod runbook;
mod schema;
mod shutdown;
mod subscriptions;
mod traces;
mod webhooks;
mod websocket;

fn main() -> std::process::ExitCode {
    harness::main()
}
