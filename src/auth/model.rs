//! Identity types: pure data, no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An authenticated caller, as established by a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// The token's `sub`: the stable identifier of the person or service.
    pub subject: String,
    /// Display name from the `name` claim, when the identity provider sends one.
    pub name: Option<String>,
    /// From the `email` claim, when present.
    pub email: Option<String>,
    /// The `roles` claim: what groups the identity provider says the caller is in.
    pub roles: Vec<String>,
    /// `iat`, when present; session revocation compares against it.
    pub issued_at: Option<DateTime<Utc>>,
    /// `exp`: live connections close when it passes.
    pub expires_at: DateTime<Utc>,
}

impl Viewer {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The caller of one HTTP request or WebSocket connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No token at all: may introspect in development, sees no data.
    Anonymous,
    Authenticated(Viewer),
}

impl Identity {
    pub fn viewer(&self) -> Option<&Viewer> {
        match self {
            Self::Anonymous => None,
            Self::Authenticated(viewer) => Some(viewer),
        }
    }
}

/// The claims Countersign reads from a token. `iss` and `aud` are checked by the verifier
/// itself and are not needed afterwards.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Seconds since the epoch. A string here fails deserialisation: never coerce it.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}
