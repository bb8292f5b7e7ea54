//! SeaORM entities for Countersign: the shape of each table and nothing else.
//!
//! These types never reach the API and carry no business rules; behaviour lives in the
//! domain modules of the server crate. Keep this crate regenerable from the migrations.

pub mod audit_chain_head;
pub mod audit_event;
pub mod decision;
pub mod idempotency_key;
pub mod outbox_entry;
pub mod policy;
pub mod policy_stage;
pub mod request;
pub mod role_permission;
pub mod user;
pub mod webhook_delivery;
pub mod webhook_endpoint;
