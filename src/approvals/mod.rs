//! Policies, requests, decisions: the state machine of DESIGN §3 and the queue queries.
//!
//! `model` holds the pure rules, `service` the transactions, `graphql` the API surface and
//! `loader` the DataLoaders that keep nested fields from issuing a query per row.

pub mod graphql;
pub mod loader;
pub mod model;
pub mod service;
