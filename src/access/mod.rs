//! Who may do what: the one place that decides "may this viewer see, decide or change
//! that". Nothing else in the crate writes an access rule; resolvers, commands, the
//! subscription and jobs call these.
//!
//! - [`model`]: grants as data — what a set of role grants allows (pure).
//! - [`grants`]: reading a viewer's grants and the `authorize` check. Grants are read from
//!   the database on every call and never cached, so a revoked permission is gone on the
//!   very next request on every replica.
//! - [`requests`]: who may see a request and who may decide it now, each written once —
//!   as Rust for a loaded row, and as SQL for lists (tests check the two agree).
//!
//! Changing grants and user standing are admin commands: see `admin`.

pub mod grants;
pub mod model;
pub mod requests;

pub use grants::{authorize, grants_for};
pub use model::{Action, Grant, Grants, Scope};
