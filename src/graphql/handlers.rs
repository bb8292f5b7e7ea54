//! HTTP and WebSocket entry points of the GraphQL API.
//!
//! Authentication happens here, before execution: a present but invalid token is answered
//! with HTTP 401 and UNAUTHENTICATED and never reaches a resolver.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, ErrorExtensions};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::graphiql;
use crate::app::AppState;
use crate::approvals::service::CommandContext;
use crate::auth::{AuthError, Identity, users};
use crate::error::AppError;

/// `POST /graphql`.
pub async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(value) => Some(value),
            Err(_) => return unauthenticated(&AuthError::NotBearer),
        },
    };
    let identity = match state.verifier.authenticate(authorization) {
        Ok(identity) => identity,
        Err(err) => return unauthenticated(&err),
    };
    if let Identity::Authenticated(viewer) = &identity {
        match users::admit(&state.db, viewer).await {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => return unauthenticated(&AuthError::Refused(refusal)),
            Err(err) => return internal(&err),
        }
    }

    let correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut request = request.into_inner().data(CommandContext { correlation_id });
    if state.config.is_production() && identity == Identity::Anonymous {
        // Anonymous callers may explore the schema in development only.
        request = request.disable_introspection();
    }
    let response = state.schema.execute(request.data(identity)).await;
    let status = if response
        .errors
        .iter()
        .any(|e| error_code(e) == Some("UNAUTHENTICATED"))
    {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, GraphQLResponse::from(response)).into_response()
}

/// `GET /graphql`: the GraphiQL page.
pub async fn graphiql(State(state): State<AppState>) -> Html<String> {
    Html(graphiql::page(state.config.graphiql_assets.as_deref()))
}

/// `GET /graphql/ws`: graphql-transport-ws (and the legacy graphql-ws). The token travels
/// in the `connection_init` payload, as browsers cannot set headers on a WebSocket.
pub async fn graphql_ws(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            let verifier = state.verifier.clone();
            let db = state.db.clone();
            GraphQLWebSocket::new(stream, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let authorization = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|value| value.as_str());
                    let identity = verifier.authenticate(authorization).map_err(|err| {
                        tracing::info!(reason = %err, "refused a WebSocket token");
                        async_graphql::Error::new(err.client_message())
                            .extend_with(|_, ext| ext.set("code", "UNAUTHENTICATED"))
                    })?;
                    if let Identity::Authenticated(viewer) = &identity {
                        let refused = match users::admit(&db, viewer).await {
                            Ok(Ok(())) => None,
                            Ok(Err(refusal)) => Some(AuthError::Refused(refusal).client_message()),
                            Err(err) => {
                                err.to_graphql_error();
                                Some("internal error")
                            }
                        };
                        if let Some(message) = refused {
                            return Err(async_graphql::Error::new(message)
                                .extend_with(|_, ext| ext.set("code", "UNAUTHENTICATED")));
                        }
                    }
                    let mut data = Data::default();
                    data.insert(identity);
                    Ok(data)
                })
                .serve()
        })
}

fn error_code(error: &async_graphql::ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

/// HTTP 500 with a GraphQL-shaped INTERNAL error; the cause is logged, never sent.
fn internal(err: &AppError) -> Response {
    let error = err.to_graphql_error();
    let body = serde_json::json!({
        "data": null,
        "errors": [{
            "message": error.message,
            "extensions": { "code": err.code(), "retryable": err.retryable() },
        }],
    });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// HTTP 401 with a GraphQL-shaped body, so clients handle it like any other error.
fn unauthenticated(err: &AuthError) -> Response {
    tracing::info!(reason = %err, "refused a bearer token");
    let body = serde_json::json!({
        "data": null,
        "errors": [{
            "message": err.client_message(),
            "extensions": { "code": "UNAUTHENTICATED", "retryable": false },
        }],
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}
