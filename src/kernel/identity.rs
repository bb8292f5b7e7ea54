//! Identity types: pure data, no I/O. `auth` establishes them from tokens.

use chrono::{DateTime, Utc};

/// The actor recorded for what the system does on its own (expiry, demo seeding).
pub const SYSTEM: &str = "system";

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

    /// The `system` actor: holds no role and no grant; its commands authorize nothing.
    pub fn system() -> Self {
        Self {
            subject: SYSTEM.into(),
            name: None,
            email: None,
            roles: Vec::new(),
            issued_at: None,
            expires_at: DateTime::<Utc>::MAX_UTC,
        }
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
