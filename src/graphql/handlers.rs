//! HTTP and WebSocket entry points of the GraphQL API.
//!
//! Authentication happens here, before execution: a present but invalid token is answered
//! with HTTP 401 and UNAUTHENTICATED and never reaches a resolver.

use std::net::SocketAddr;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Extension;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::throttle::RetryAfter;
use super::transport_ws::{self, Dialect};
use crate::auth::{AuthError, Identity};
use crate::error::AppError;
use crate::kernel::resolver::Correlation;
use crate::telemetry;

/// `POST /graphql`. The answer says in `x-sql-statements` how many SQL statements the
/// operation cost, and in `x-sql-admission-statements` how many letting the caller in did
/// (0 when answered from memory); `/metrics` keeps the operation's as a histogram.
pub async fn graphql_post(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let metrics = state.metrics.clone();
    let peer = peer.map(|Extension(ConnectInfo(address))| address);
    let (mut response, statements) =
        telemetry::count_statements(answer(state, peer, headers, request)).await;
    #[allow(
        clippy::cast_precision_loss,
        reason = "a histogram takes floats; statement counts are small"
    )]
    metrics.operation_statements.record(statements as f64);
    response
        .headers_mut()
        .insert("x-sql-statements", HeaderValue::from(statements));
    response
}

async fn answer(
    state: AppState,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    // Without a valid token, the caller is known by address only.
    let by_address = |state: &AppState| match peer {
        Some(peer) => state.throttle.address(peer.ip()),
        None => Ok(()),
    };
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(value) => Some(value),
            Err(_) => return unauthenticated(&state, &AuthError::NotBearer),
        },
    };
    let identity = match state.verifier.authenticate(authorization) {
        Ok(identity) => identity,
        Err(err) => {
            if let Err(wait) = by_address(&state) {
                return rate_limited(&state, "address", wait);
            }
            return unauthenticated(&state, &err);
        }
    };
    let allowed = match &identity {
        Identity::Authenticated(viewer) => state
            .throttle
            .subject(&viewer.subject)
            .map_err(|wait| ("subject", wait)),
        Identity::Anonymous => by_address(&state).map_err(|wait| ("address", wait)),
    };
    if let Err((scope, wait)) = allowed {
        // Debug only: a flood must not become a flood of log lines.
        if let Identity::Authenticated(viewer) = &identity {
            tracing::debug!(subject = %viewer.subject, "rate limited");
        }
        return rate_limited(&state, scope, wait);
    }
    let mut grants = None;
    let mut admission_statements = 0;
    if let Identity::Authenticated(viewer) = &identity {
        // Counted apart: admission is answered from memory most of the time, and what an
        // operation costs must not depend on whether it was.
        let (admitted, statements) =
            telemetry::count_statements(state.admission.admit(&state.clock, viewer)).await;
        admission_statements = statements;
        match admitted {
            Ok(Ok(admitted)) => grants = Some(admitted),
            Ok(Err(refusal)) => return unauthenticated(&state, &AuthError::Refused(refusal)),
            Err(err) => return internal(&state, &err),
        }
    }

    let correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut request = request.into_inner().data(Correlation(correlation_id));
    let hidden = !state.config.limits.introspection
        || (state.config.is_production() && identity == Identity::Anonymous);
    if hidden {
        // Production shows nobody the schema unless COUNTERSIGN_INTROSPECTION=1, and
        // never anonymous callers.
        request = request.disable_introspection();
    }
    let authenticated = matches!(identity, Identity::Authenticated(_));
    let response = match super::prepare(&state, request, identity, grants) {
        Ok(mut request) => {
            let (kind, name) = super::operation_of(&mut request);
            // Only signed-in callers' names become labels: strangers could fill the
            // bounded set with junk.
            let counted = if authenticated { name.as_deref() } else { None };
            state.metrics.graphql_operation(kind, counted);
            let span = super::operation_span(kind, name.as_deref());
            let limit = state.config.limits.request_timeout;
            let running = tracing::Instrument::instrument(state.schema.execute(request), span);
            match tokio::time::timeout(limit, running).await {
                Ok(response) => super::finish(response),
                Err(_) => {
                    tracing::warn!(limit = ?limit, "an operation ran past the request timeout");
                    state.metrics.graphql_error("TIMEOUT");
                    let mut response = (
                        StatusCode::SERVICE_UNAVAILABLE,
                        GraphQLResponse::from(AppError::Timeout.to_response()),
                    )
                        .into_response();
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(1));
                    return response;
                }
            }
        }
        Err(refused) => *refused,
    };
    for error in &response.errors {
        state
            .metrics
            .graphql_error(error_code(error).unwrap_or("INTERNAL"));
    }
    let status = if response
        .errors
        .iter()
        .any(|e| error_code(e) == Some("UNAUTHENTICATED"))
    {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut response = (status, GraphQLResponse::from(response)).into_response();
    response.headers_mut().insert(
        "x-sql-admission-statements",
        HeaderValue::from(admission_statements),
    );
    response
}

/// `GET /graphql/ws`: graphql-transport-ws (and the legacy graphql-ws). The token travels
/// in the `connection_init` payload, as browsers cannot set headers on a WebSocket.
///
/// The connection lives only as long as the viewer's right to it: it closes with 4403 when
/// the token expires, and as soon as the bus says the user was disabled or their sessions
/// revoked (on this replica or another). See `transport_ws` for the protocol.
pub async fn graphql_ws(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.config.allowed_origins) {
        // A page from another site must not ride a logged-in browser's socket.
        return (
            StatusCode::FORBIDDEN,
            "this Origin may not open a WebSocket here",
        )
            .into_response();
    }
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some(dialect) = Dialect::negotiate(offered) else {
        return (
            StatusCode::BAD_REQUEST,
            "offer the graphql-transport-ws (or graphql-ws) subprotocol",
        )
            .into_response();
    };
    upgrade
        // An idle console holds a socket all day: small buffers that grow when a message
        // needs it (the defaults reserve 128 KiB each), and a bound on what may pile up
        // unsent.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER_BYTES)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .protocols([dialect.protocol()])
        .on_upgrade(move |socket| {
            let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
            transport_ws::serve(state, dialect, socket, peer)
        })
}

/// The largest WebSocket message accepted; larger ones close the connection.
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Not a budget (the outbox is, `transport_ws::OUTBOX_BYTES`): tungstenite refuses any one
/// message larger than this, and a page of large payloads can exceed a few MiB.
const WS_MAX_WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// No Origin (not a browser), the server's own origin, or one configured as allowed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    let same_origin = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, origin_host)| origin_host.eq_ignore_ascii_case(host))
        });
    same_origin
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

fn error_code(error: &async_graphql::ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

/// HTTP 500 with a GraphQL-shaped INTERNAL error; the cause is logged, never sent.
fn internal(state: &AppState, err: &AppError) -> Response {
    state.metrics.graphql_error(err.code());
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        GraphQLResponse::from(err.to_response()),
    )
        .into_response()
}

/// HTTP 429 with `Retry-After` and a GraphQL-shaped RATE_LIMITED body. Nothing ran, so
/// nothing is audited: a flood cannot grow the audit log.
fn rate_limited(state: &AppState, scope: &'static str, wait: RetryAfter) -> Response {
    state.metrics.graphql_error("RATE_LIMITED");
    state
        .metrics
        .increment("countersign_rate_limited_total", &[("scope", scope)]);
    let retry_after = wait.seconds().max(1);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        GraphQLResponse::from(AppError::RateLimited { retry_after }.to_response()),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// HTTP 401 with a GraphQL-shaped body, so clients handle it like any other error.
fn unauthenticated(state: &AppState, err: &AuthError) -> Response {
    state.metrics.graphql_error("UNAUTHENTICATED");
    tracing::info!(reason = %err, "refused a bearer token");
    let body = AppError::Unauthenticated(err.client_message()).to_response();
    let mut response = (StatusCode::UNAUTHORIZED, GraphQLResponse::from(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}
