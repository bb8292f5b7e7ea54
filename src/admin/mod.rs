//! Access administration: the admin commands that change who may do what — role grants
//! (`grantPermission`, `revokePermission`) and a user's standing (`disableUser`,
//! `enableUser`, `revokeSessions`). Admins (`access.manage`) only; every change audited.
//!
//! The rules these change are read by `access` (grants) and `auth` (standing).

pub mod accounts;
pub mod grants;
pub mod graphql;
pub mod users;
