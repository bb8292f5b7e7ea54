//! The approvals API: output types, queries, mutations and the `requestEvents`
//! subscription. Resolvers are thin: no SQL here; they hand over to `queries`, the
//! commands and the loaders. A page's rows are answered from what its prefetch loaded
//! (`plain.rs`), the rest by the derived resolvers in `types.rs`, which define the schema.

pub mod mutations;
mod plain;
pub mod queries;
pub mod subscription;
pub mod types;

pub use mutations::ApprovalsMutation;
pub use queries::ApprovalsQuery;
pub use subscription::ApprovalsSubscription;
