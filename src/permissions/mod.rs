//! The one place that decides "may this viewer do this to that" (DESIGN §5).
//!
//! Grants are read from the database on every call and never cached, so a revoked
//! permission is gone on the very next request on every replica. Resolvers, services,
//! subscriptions and jobs all call [`service::authorize`] or read [`Grants`] from it;
//! none of them decide on their own. Deciding a request comes from the stages' roles and
//! is checked by the approvals service inside the decision's transaction.

pub mod graphql;
pub mod model;
pub mod service;

pub use model::{Action, Grants, Scope};
