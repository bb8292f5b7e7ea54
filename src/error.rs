//! The one error type the API speaks.
//!
//! Each variant documents what the client sees: its `extensions.code` and whether a retry
//! can help (`extensions.retryable`). Domain modules keep their own error enums and convert
//! into `AppError` at the boundary. `Internal` is the only variant that carries a cause; the
//! cause is logged with its whole chain and never sent to the client.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql converts any
//! `Display` type into an error with a bare message, and that conversion would silently
//! win over ours and drop `extensions.code`.

use async_graphql::ErrorExtensions;

/// What resolvers and services return. Resolvers use it too, so an error raised with `?`
/// in a resolver (a database error, say) is an [`AppError`]: coded, logged and masked.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum AppError {
    /// UNAUTHENTICATED: no valid identity (missing, invalid, expired or revoked token).
    Unauthenticated(&'static str),
    /// FORBIDDEN: authenticated but not allowed, self-approval included.
    Forbidden(String),
    /// NOT_FOUND: does not exist, or is hidden from this viewer (indistinguishable).
    NotFound(String),
    /// BAD_USER_INPUT: validation failed; `field` names the offending input field.
    BadUserInput {
        message: String,
        field: Option<String>,
    },
    /// CONFLICT: `expectedVersion` is stale or a concurrent change won. Retry after re-reading.
    Conflict(String),
    /// INVALID_TRANSITION: the request is already terminal.
    InvalidTransition(String),
    /// IDEMPOTENCY_KEY_REUSED: the same key was used with a different input.
    IdempotencyKeyReused,
    /// IDEMPOTENCY_KEY_IN_USE: the same key is still executing. Retry shortly.
    IdempotencyKeyInUse,
    /// RATE_LIMITED: too many requests for this identity. Retry later.
    RateLimited,
    /// QUERY_REJECTED: the operation exceeds a limit (depth, complexity, size).
    QueryRejected(String),
    /// INTERNAL: anything else. Logged with its cause chain, masked for the client.
    Internal(anyhow::Error),
}

impl AppError {
    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// The value of `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::InvalidTransition(_) => "INVALID_TRANSITION",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            Self::RateLimited => "RATE_LIMITED",
            Self::QueryRejected(_) => "QUERY_REJECTED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// The value of `extensions.retryable`: whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Conflict(_) | Self::IdempotencyKeyInUse | Self::RateLimited | Self::Internal(_)
        )
    }

    /// The message the client sees.
    pub fn client_message(&self) -> String {
        match self {
            Self::Unauthenticated(why) => (*why).to_owned(),
            Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::InvalidTransition(m)
            | Self::QueryRejected(m) => m.clone(),
            Self::BadUserInput { message, .. } => message.clone(),
            Self::IdempotencyKeyReused => {
                "this idempotency key was already used with a different input".into()
            }
            Self::IdempotencyKeyInUse => {
                "a command with this idempotency key is still executing".into()
            }
            Self::RateLimited => "too many requests; slow down and retry".into(),
            Self::Internal(_) => "internal error".into(),
        }
    }

    /// Logs an internal error with its cause chain; other errors are the client's business.
    pub fn log_if_internal(&self) {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
    }

    /// The GraphQL error for this value. Internal causes are logged here, exactly once.
    pub fn to_graphql_error(&self) -> async_graphql::Error {
        self.log_if_internal();
        async_graphql::Error::new(self.client_message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            ext.set("retryable", self.retryable());
            if let Self::BadUserInput {
                field: Some(field), ..
            } = self
            {
                ext.set("field", field.as_str());
            }
        })
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.to_graphql_error()
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(anyhow::Error::new(err).context("database"))
    }
}

/// Gives errors that async-graphql itself raises (parse, validation, limits) a code too,
/// so every error a client sees carries `extensions.code` and `extensions.retryable`.
pub fn ensure_code(mut error: async_graphql::ServerError) -> async_graphql::ServerError {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some());
    if !has_code {
        let code = if error.message.contains("nested too deep")
            || error.message.contains("too complex")
            || error.message.contains("too many")
        {
            "QUERY_REJECTED"
        } else {
            "BAD_USER_INPUT"
        };
        let ext = error.extensions.get_or_insert_with(Default::default);
        ext.set("code", code);
        ext.set("retryable", false);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(err: AppError) -> (String, async_graphql::Value, async_graphql::Value) {
        let gql = err.to_graphql_error();
        let ext = gql.extensions.expect("extensions are always set");
        let code = ext.get("code").cloned().expect("code");
        let retryable = ext.get("retryable").cloned().expect("retryable");
        (gql.message, code, retryable)
    }

    #[test]
    fn internal_errors_are_masked_and_retryable() {
        let cause = anyhow::anyhow!("connection refused").context("password=hunter2 in dsn");
        let (message, code, retryable) = extensions(AppError::Internal(cause));
        assert_eq!(message, "internal error");
        assert_eq!(code, async_graphql::Value::from("INTERNAL"));
        assert_eq!(retryable, async_graphql::Value::from(true));
    }

    #[test]
    fn every_code_matches_the_design_table() {
        let table = [
            (AppError::Unauthenticated("x"), "UNAUTHENTICATED", false),
            (AppError::Forbidden("x".into()), "FORBIDDEN", false),
            (AppError::NotFound("x".into()), "NOT_FOUND", false),
            (AppError::bad_input("amount", "x"), "BAD_USER_INPUT", false),
            (AppError::Conflict("x".into()), "CONFLICT", true),
            (
                AppError::InvalidTransition("x".into()),
                "INVALID_TRANSITION",
                false,
            ),
            (
                AppError::IdempotencyKeyReused,
                "IDEMPOTENCY_KEY_REUSED",
                false,
            ),
            (
                AppError::IdempotencyKeyInUse,
                "IDEMPOTENCY_KEY_IN_USE",
                true,
            ),
            (AppError::RateLimited, "RATE_LIMITED", true),
            (AppError::QueryRejected("x".into()), "QUERY_REJECTED", false),
        ];
        for (err, code, retryable) in table {
            let (_, got_code, got_retryable) = extensions(err);
            assert_eq!(got_code, async_graphql::Value::from(code));
            assert_eq!(
                got_retryable,
                async_graphql::Value::from(retryable),
                "{code}"
            );
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let gql = AppError::bad_input("amount", "must be positive").to_graphql_error();
        let ext = gql.extensions.expect("extensions");
        assert_eq!(
            ext.get("field"),
            Some(&async_graphql::Value::from("amount"))
        );
    }
}
