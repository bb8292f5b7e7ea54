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
    /// RATE_LIMITED: too many requests for this identity. Retry after `retry_after` whole
    /// seconds (`extensions.retryAfter`, over HTTP and WebSocket alike; HTTP also sends
    /// the `Retry-After` header).
    RateLimited { retry_after: u64 },
    /// TIMEOUT: the operation ran past `COUNTERSIGN_REQUEST_TIMEOUT` and was stopped (a
    /// command's transaction rolled back unless it had committed). Retry with the same
    /// idempotency key: a command that did commit replays instead of running twice.
    Timeout,
    /// QUERY_REJECTED: the operation exceeds a limit (depth, complexity, size).
    QueryRejected(String),
    /// INTERNAL: anything else. Logged with its cause chain, masked for the client.
    Internal(anyhow::Error),
    /// A refusal the client must not be able to tell from `answer` (a policy they have
    /// nothing to do with answers like a missing one). The client sees only `answer`; the
    /// command pipeline records the refusal, with `reason`, like a FORBIDDEN one.
    Concealed {
        reason: String,
        answer: Box<AppError>,
    },
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
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Timeout => "TIMEOUT",
            Self::QueryRejected(_) => "QUERY_REJECTED",
            Self::Internal(_) => "INTERNAL",
            Self::Concealed { answer, .. } => answer.code(),
        }
    }

    /// The value of `extensions.retryable`: whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        if let Self::Concealed { answer, .. } = self {
            return answer.retryable();
        }
        matches!(
            self,
            Self::Conflict(_)
                | Self::IdempotencyKeyInUse
                | Self::RateLimited { .. }
                | Self::Timeout
                | Self::Internal(_)
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
            Self::RateLimited { .. } => "too many requests; slow down and retry".into(),
            Self::Timeout => {
                "the operation ran past the server's time limit and was stopped; retry with the same idempotency key".into()
            }
            Self::Internal(_) => "internal error".into(),
            Self::Concealed { answer, .. } => answer.client_message(),
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
        if let Self::Concealed { answer, .. } = self {
            return answer.to_graphql_error();
        }
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
            if let Self::RateLimited { retry_after } = self {
                ext.set("retryAfter", *retry_after);
            }
        })
    }
}

impl AppError {
    /// The error as it goes into a response on its own (HTTP 401 and 500 bodies, and the
    /// errors `ensure_code` codes): no location, no path.
    pub fn to_server_error(&self) -> async_graphql::ServerError {
        let error = self.to_graphql_error();
        let mut server = async_graphql::ServerError::new(error.message, None);
        server.extensions = error.extensions;
        server
    }

    /// A whole GraphQL response carrying only this error.
    pub fn to_response(&self) -> async_graphql::Response {
        async_graphql::Response::from_errors(vec![self.to_server_error()])
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

/// Gives errors that async-graphql itself raises a code too, so every error a client sees
/// carries `extensions.code` and `extensions.retryable`. Ours always have one already.
///
/// A codeless error is classified by the phase that raised it, which its `path` tells:
/// - no path: the operation was refused before it ran (parse, validation, limits) — the
///   caller's to fix, BAD_USER_INPUT, or QUERY_REJECTED when a limit refused it. Inputs are
///   checked in this phase too: every input scalar implements `is_valid`
///   (`kernel::Timestamp`, `approvals::model::Amount`'s Decimal check).
/// - a path: a field failed while running, and every resolver of ours returns a coded
///   [`AppError`], so this is a fault in the server. INTERNAL: logged, masked.
pub fn ensure_code(error: async_graphql::ServerError) -> async_graphql::ServerError {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some());
    if has_code {
        return error;
    }
    if !error.path.is_empty() {
        let fault = AppError::Internal(anyhow::anyhow!(
            "uncoded error at {:?}: {}",
            error.path,
            error.message
        ));
        let mut masked = fault.to_server_error();
        masked.locations = error.locations;
        masked.path = error.path;
        return masked;
    }
    let refused = if is_limit(&error.message) {
        AppError::QueryRejected(error.message)
    } else {
        AppError::BadUserInput {
            message: error.message,
            field: None,
        }
    };
    let mut coded = refused.to_server_error();
    coded.locations = error.locations;
    coded
}

/// The limits set on the schema (`graphql::MAX_*`) refuse an operation with these messages;
/// async-graphql gives them no code of their own.
fn is_limit(message: &str) -> bool {
    [
        "Query is nested too deep",
        "Query is too complex",
        "recursion limit exceeded",
        "The number of directives on the field",
    ]
    .iter()
    .any(|limit| message.contains(limit))
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
            (
                AppError::RateLimited { retry_after: 1 },
                "RATE_LIMITED",
                true,
            ),
            (AppError::Timeout, "TIMEOUT", true),
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

    fn codeless(message: &str, path: bool) -> async_graphql::ServerError {
        let mut error = async_graphql::ServerError::new(message, None);
        if path {
            error.path = vec![async_graphql::PathSegment::Field("requests".into())];
        }
        error
    }

    fn code_of(error: &async_graphql::ServerError) -> Option<&async_graphql::Value> {
        error.extensions.as_ref()?.get("code")
    }

    #[test]
    fn a_codeless_error_while_running_is_internal_and_masked() {
        let coded = ensure_code(codeless("connection reset; password=hunter2", true));
        assert_eq!(
            code_of(&coded),
            Some(&async_graphql::Value::from("INTERNAL"))
        );
        assert_eq!(coded.message, "internal error");
        assert_eq!(coded.path.len(), 1);
    }

    #[test]
    fn a_codeless_refusal_before_running_is_the_callers() {
        let unknown = ensure_code(codeless("Unknown field \"x\" on type \"Query\".", false));
        assert_eq!(
            code_of(&unknown),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert!(unknown.message.contains("Unknown field"));
        let deep = ensure_code(codeless("Query is nested too deep.", false));
        assert_eq!(
            code_of(&deep),
            Some(&async_graphql::Value::from("QUERY_REJECTED"))
        );
    }

    #[test]
    fn a_coded_error_is_left_alone() {
        let forbidden = AppError::Forbidden("no".into()).to_server_error();
        assert_eq!(ensure_code(forbidden.clone()), forbidden);
    }
}
