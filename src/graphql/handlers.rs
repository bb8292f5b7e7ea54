//! HTTP and WebSocket entry points of the GraphQL API.
//!
//! Authentication happens here, before execution: a present but invalid token is answered
//! with HTTP 401 and UNAUTHENTICATED and never reaches a resolver.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, ErrorExtensions};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, watch};

use super::{graphiql, transport_ws};
use crate::app::AppState;
use crate::approvals::service::CommandContext;
use crate::auth::{AuthError, Identity, Viewer, users};
use crate::error::AppError;
use crate::events::bus::BusEvent;

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
///
/// The connection lives only as long as the viewer's right to it: it closes with 4403 when
/// the token expires, and as soon as the bus says the user was disabled or their sessions
/// revoked (on this replica or another).
pub async fn graphql_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
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
    let upgrade = upgrade
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES);
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if offered
        .split(',')
        .any(|p| p.trim() == transport_ws::PROTOCOL)
    {
        return upgrade
            .protocols([transport_ws::PROTOCOL])
            .on_upgrade(move |socket| transport_ws::serve(state, socket));
    }
    // The legacy graphql-ws (subscriptions-transport-ws) protocol.
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(state, protocol, socket))
}

async fn serve_socket(state: AppState, protocol: GraphQLProtocol, socket: WebSocket) {
    let (mut sink, stream) = socket.split();
    // async-graphql writes into this channel; we forward to the socket, which leaves us
    // free to send our own close frame.
    let (out_tx, mut out_rx) = futures_channel::mpsc::channel::<Message>(64);
    let (viewer_tx, viewer_rx) = watch::channel::<Option<Viewer>>(None);
    // Subscribed before the handshake, so no change in between is missed.
    let events = state.bus.subscribe();

    let verifier = state.verifier.clone();
    let db = state.db.clone();
    let production = state.config.is_production();
    let graphql = GraphQLWebSocket::new_with_pair(out_tx, stream, state.schema.clone(), protocol)
        .on_connection_init(move |payload| async move {
            let authorization = payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(|value| value.as_str());
            let identity = verifier
                .authenticate(authorization)
                .map_err(|err| refuse(&err))?;
            if production && identity == Identity::Anonymous {
                // POST disables introspection for anonymous callers in production; a socket
                // cannot be limited per operation, so it needs a token there.
                return Err(async_graphql::Error::new("a token is required")
                    .extend_with(|_, ext| ext.set("code", "UNAUTHENTICATED")));
            }
            if let Identity::Authenticated(viewer) = &identity {
                match users::admit(&db, viewer).await {
                    Ok(Ok(())) => {}
                    Ok(Err(refusal)) => return Err(refuse(&AuthError::Refused(refusal))),
                    Err(err) => return Err(err.to_graphql_error()),
                }
                let _ = viewer_tx.send(Some(viewer.clone()));
            }
            let mut data = Data::default();
            data.insert(identity);
            Ok(data)
        })
        .serve();
    tokio::pin!(graphql);
    let watch = standing_lost(viewer_rx, events, state.db.clone());
    tokio::pin!(watch);

    let close = loop {
        tokio::select! {
            () = &mut graphql => break None,
            Some(message) = out_rx.next() => {
                if sink.send(message).await.is_err() {
                    break None;
                }
            }
            reason = &mut watch => break Some(reason),
        }
    };
    while let Ok(message) = out_rx.try_recv() {
        if sink.send(message).await.is_err() {
            return;
        }
    }
    if let Some(reason) = close {
        tracing::info!(reason, "closing a WebSocket: the viewer lost access");
        let frame = CloseFrame {
            code: CLOSE_FORBIDDEN,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
}

/// The largest WebSocket message accepted; larger ones close the connection.
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

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

/// graphql-ws close code for "Forbidden".
const CLOSE_FORBIDDEN: u16 = 4403;

fn refuse(err: &AuthError) -> async_graphql::Error {
    tracing::info!(reason = %err, "refused a WebSocket token");
    async_graphql::Error::new(err.client_message())
        .extend_with(|_, ext| ext.set("code", "UNAUTHENTICATED"))
}

/// Resolves with a reason once the connection's viewer may no longer hold it open: their
/// token expired, or the bus reported a change to their account that refuses them now.
/// Never resolves for an anonymous connection.
async fn standing_lost(
    mut viewer: watch::Receiver<Option<Viewer>>,
    mut events: broadcast::Receiver<BusEvent>,
    db: sea_orm::DatabaseConnection,
) -> &'static str {
    let viewer = match viewer.wait_for(Option::is_some).await {
        Ok(viewer) => viewer.clone(),
        Err(_) => None,
    };
    let Some(viewer) = viewer else {
        return std::future::pending().await;
    };
    let left = (viewer.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let expiry = tokio::time::sleep(left);
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            () = &mut expiry => return "the token has expired",
            event = events.recv() => match event {
                Ok(BusEvent::UserAccessChanged { subject }) if subject == viewer.subject => {}
                Ok(_) => continue,
                // Missed some events: re-check, in case one was ours.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            },
        }
        match users::admit(&db, &viewer).await {
            Ok(Err(refusal)) => return AuthError::Refused(refusal).client_message(),
            Ok(Ok(())) => {}
            Err(err) => {
                err.log_if_internal();
            }
        }
    }
}

fn error_code(error: &async_graphql::ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

/// HTTP 500 with a GraphQL-shaped INTERNAL error; the cause is logged, never sent.
fn internal(err: &AppError) -> Response {
    err.log_if_internal();
    let body = serde_json::json!({
        "data": null,
        "errors": [{
            "message": err.client_message(),
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
