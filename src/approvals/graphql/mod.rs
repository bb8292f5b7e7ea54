//! The approvals API: output types, queries, mutations and the `requestEvents`
//! subscription. Resolvers are thin: no SQL here; they hand over to `queries`, the
//! commands and the loaders.

pub mod mutations;
pub mod queries;
pub mod subscription;
pub mod types;

pub use mutations::ApprovalsMutation;
pub use queries::ApprovalsQuery;
pub use subscription::ApprovalsSubscription;
