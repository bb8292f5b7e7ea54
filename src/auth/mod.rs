//! Who is calling: bearer-token verification, the [`Viewer`], and dev token minting.
//!
//! This module answers "who", never "may they": authorization lives in `access`, and the
//! admin commands that change a user's standing in `admin`.
//! A token that is present but not valid is always refused (HTTP 401); it must never
//! degrade into anonymous access.

pub mod admission;
pub mod graphql;
pub mod model;
pub mod service;
pub mod users;

pub use crate::kernel::{Identity, Viewer};
pub use service::{AuthError, JwtVerifier, mint_token};
