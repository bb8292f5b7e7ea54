//! Who may do what: the one place that decides "may this viewer see, decide or change
//! that". Nothing else in the crate writes an access rule; resolvers, commands, the
//! subscription and jobs call these.
//!
//! - [`model`]: grants as data — what a set of role grants allows (pure).
//! - [`grants`]: reading a viewer's grants and the `require` check. Reads use the
//!   grants read with the user's standing when the operation was admitted; commands get
//!   them from the pipeline, read again inside their transaction under the authority
//!   lock. Admission keeps what it read for at most a second (`auth::admission`), so a
//!   revoked permission is gone from reads on the next request on this replica and within
//!   a second on every other, and from commands at once everywhere. The one exception is
//!   the request feed (`approvals::feed`), which judges live events against a snapshot of
//!   every role's grants that the bus's `GrantsChanged` (and a one-second tick) renews.
//! - [`requests`]: who may see a request and who may decide it now, each written once —
//!   as Rust for a loaded row, and as SQL for lists (tests check the two agree).
//!
//! Changing grants and user standing are admin commands: see `admin`.

pub mod grants;
pub mod model;
pub mod requests;

pub use grants::{
    OperationGrants, authorize_oversight, authorize_read, grant_of, grants_for, operation_grants,
    require,
};
pub use model::{Action, Grant, Grants, Scope};
