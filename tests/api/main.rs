//! The one integration-test binary: every test starts the real server through the harness
//! in `helpers` and talks to it over HTTP or WebSocket only.

mod helpers;

mod auth;
mod cli;
mod graphiql;
mod health;
mod schema;
mod websocket;
