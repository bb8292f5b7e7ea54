//! The WebSocket protocols, written out here so every rule of the protocol and of ours is
//! enforced the same way for both: graphql-transport-ws (the `graphql-ws` npm client's)
//! and the legacy graphql-ws (subscriptions-transport-ws), which differ only in the names
//! of their messages ([`Dialect`]). Close codes:
//!
//! | code | when |
//! |---|---|
//! | 4400 | a message that is not valid JSON of a known type |
//! | 4401 | `subscribe` before the connection was acknowledged |
//! | 4403 | an invalid token in `connection_init`; later, the token expired or the user was disabled or their sessions revoked |
//! | 4408 | no `connection_init` within 10 s |
//! | 4409 | a second `subscribe` with an id still in use |
//! | 4429 | a second `connection_init` |
//! | 4430 | the user already holds `COUNTERSIGN_MAX_CONNECTIONS_PER_SUBJECT` sockets |
//! | 1001 | the server is shutting down: reconnect (to another replica) and resume by cursor |
//! | 4420 | the client reads too slowly: its outbox ([`OUTBOX_BYTES`]) stayed full, or one message was not taken by the socket, for the send timeout (`COUNTERSIGN_WS_SEND_TIMEOUT`) |
//!
//! At most [`MAX_SUBSCRIPTIONS`] operations run at once per connection; the server pings
//! every [`KEEP_ALIVE`] so idle proxies keep the connection. Each `subscribe` counts
//! against the subject's rate limit (`COUNTERSIGN_RATE_LIMIT`); one over it is answered
//! with an `error` message (RATE_LIMITED) and the connection stays open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Data, Request};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio::task::JoinHandle;

use super::AppState;
use crate::access::Grants;
use crate::auth::{AuthError, Identity, Viewer, users};
use crate::error::AppError;
use crate::events::bus::BusEvent;

/// Which of the two protocols a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `graphql-transport-ws`: subscribe / next / complete, ping / pong.
    TransportWs,
    /// `graphql-ws` (subscriptions-transport-ws): start / data / stop, server `ka`.
    Legacy,
}

impl Dialect {
    /// The dialect for a `Sec-WebSocket-Protocol` offer, preferring the current one.
    pub fn negotiate(offered: &str) -> Option<Self> {
        let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
        if offered.contains(&"graphql-transport-ws") {
            Some(Self::TransportWs)
        } else if offered.contains(&"graphql-ws") {
            Some(Self::Legacy)
        } else {
            None
        }
    }

    pub fn protocol(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::Legacy => "graphql-ws",
        }
    }

    fn result(self) -> &'static str {
        match self {
            Self::TransportWs => "next",
            Self::Legacy => "data",
        }
    }
}
/// Operations one connection may run at once.
pub const MAX_SUBSCRIPTIONS: usize = 20;
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Bytes of messages a connection may hold for its socket. An operation whose message
/// does not fit waits; if no room is made within the send timeout the connection is
/// closed (4420) rather than holding memory for a client that does not read. Counted in
/// bytes, not messages, so large payloads cannot multiply it; a message larger than the
/// whole outbox waits for it to empty and goes alone.
pub const OUTBOX_BYTES: usize = 1024 * 1024;

/// A client message as received: its meaning depends on the dialect.
#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
}

/// Why the server closes: a code from the table above and a short reason.
struct Close(u16, String);

pub async fn serve(
    state: AppState,
    dialect: Dialect,
    socket: WebSocket,
    peer: Option<std::net::IpAddr>,
) {
    let (mut sink, mut stream) = socket.split();
    let send_timeout = state.config.ws_send_timeout;
    let room = Arc::new(Semaphore::new(OUTBOX_BYTES));
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (slow_tx, mut slow_rx) = mpsc::channel::<()>(1);
    let mut news = state.bus.subscribe();
    let mut draining = state.draining.clone();
    let _open = state.metrics.in_gauge("countersign_websocket_connections");
    let _counted = OpenSocket::new(&state.sockets);
    let mut slot = None;
    let mut identity: Option<Identity> = None;
    let mut init_seen = false;
    let mut operations: HashMap<String, JoinHandle<()>> = HashMap::new();
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.tick().await;
    let mut expiry: std::pin::Pin<Box<tokio::time::Sleep>> =
        Box::pin(tokio::time::sleep(Duration::from_secs(u64::from(u32::MAX))));

    let close = loop {
        tokio::select! {
            () = &mut init_deadline, if !init_seen => {
                break Some(Close(4408, "Connection initialisation timeout".into()));
            }
            () = &mut expiry, if identity.is_some() => {
                break Some(Close(4403, "the token has expired".into()));
            }
            changed = draining.changed() => {
                let stopping = changed.is_err() || *draining.borrow_and_update();
                if stopping {
                    break Some(Close(1001, "the server is shutting down; reconnect".into()));
                }
            }
            _ = keep_alive.tick() => {
                let ping = match dialect {
                    Dialect::TransportWs => json!({ "type": "ping" }),
                    Dialect::Legacy => json!({ "type": "ka" }),
                };
                if send(&mut sink, ping).await.is_err() {
                    break None;
                }
            }
            Some(Outgoing { text, room }) = out_rx.recv() => {
                let sent = tokio::time::timeout(send_timeout, sink.send(Message::Text(text.into()))).await;
                drop(room);
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => break Some(too_slow()),
                }
            }
            Some(()) = slow_rx.recv() => break Some(too_slow()),
            event = news.recv() => {
                let subject = match &event {
                    Ok(BusEvent::UserAccessChanged { subject }) => Some(subject.clone()),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    _ => continue,
                };
                if let Some(Identity::Authenticated(viewer)) = &identity {
                    if subject.is_none_or(|s| s == viewer.subject) {
                        if let Err(close) = check_standing(&state, viewer).await {
                            break Some(close);
                        }
                    }
                }
            }
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        break Some(Close(4400, "binary messages are not part of the protocol".into()));
                    }
                    // The client left, or sent more than the message limit allows.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                };
                let message = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(message) => message,
                    Err(_) => break Some(Close(4400, "Invalid message received".into())),
                };
                let ClientMessage { kind, id, payload } = message;
                match (dialect, kind.as_str()) {
                    (_, "connection_init") => {
                        if init_seen {
                            break Some(Close(4429, "Too many initialisation requests".into()));
                        }
                        init_seen = true;
                        match admit(&state, payload.as_ref()).await {
                            Ok(admitted) => {
                                if let Identity::Authenticated(viewer) = &admitted {
                                    slot = state.throttle.connection(&viewer.subject);
                                    if slot.is_none() {
                                        break Some(Close(4430, "too many open connections for this user".into()));
                                    }
                                    let left = (viewer.expires_at - chrono::Utc::now())
                                        .to_std()
                                        .unwrap_or_default();
                                    expiry = Box::pin(tokio::time::sleep(left));
                                }
                                identity = Some(admitted);
                                if send(&mut sink, json!({ "type": "connection_ack" })).await.is_err() {
                                    break None;
                                }
                            }
                            Err(mut close) => {
                                // A refused token counts against the address, as over HTTP.
                                let limited = close.0 == 4403
                                    && peer.is_some_and(|ip| state.throttle.address(ip).is_err());
                                if limited {
                                    state.metrics.increment("countersign_rate_limited_total", &[("scope", "address")]);
                                    close = Close(4429, "Too many requests".into());
                                }
                                if dialect == Dialect::Legacy {
                                    let error = json!({ "type": "connection_error", "payload": { "message": close.1 } });
                                    let _ = send(&mut sink, error).await;
                                }
                                break Some(close);
                            }
                        }
                    }
                    (Dialect::TransportWs, "ping") => {
                        let mut pong = json!({ "type": "pong" });
                        if let Some(payload) = payload {
                            pong["payload"] = payload;
                        }
                        if send(&mut sink, pong).await.is_err() {
                            break None;
                        }
                    }
                    (Dialect::TransportWs, "pong") => {}
                    (Dialect::TransportWs, "subscribe") | (Dialect::Legacy, "start") => {
                        let Some(identity) = &identity else {
                            break Some(Close(4401, "Unauthorized".into()));
                        };
                        // Standing is read again for every operation, not only at init: a
                        // user disabled since then gets nothing more from this socket.
                        let mut grants = None;
                        if let Identity::Authenticated(viewer) = identity {
                            match check_standing(&state, viewer).await {
                                Ok(admitted) => grants = Some(admitted),
                                Err(close) => break Some(close),
                            }
                        }
                        let (Some(id), Some(payload)) = (id, payload) else {
                            break Some(Close(4400, "Invalid message received".into()));
                        };
                        if let Identity::Authenticated(viewer) = identity {
                            if let Err(wait) = state.throttle.subject(&viewer.subject) {
                                state.metrics.increment("countersign_rate_limited_total", &[("scope", "subject")]);
                                let refused = AppError::RateLimited { retry_after: wait.seconds().max(1) };
                                let error = json!({
                                    "id": id,
                                    "type": "error",
                                    "payload": [refused.to_server_error()],
                                });
                                if send(&mut sink, error).await.is_err() {
                                    break None;
                                }
                                continue;
                            }
                        }
                        let Ok(request) = serde_json::from_value::<Request>(payload) else {
                            break Some(Close(4400, "Invalid message received".into()));
                        };
                        operations.retain(|_, task| !task.is_finished());
                        if operations.contains_key(&id) {
                            break Some(Close(4409, format!("Subscriber for {id} already exists")));
                        }
                        if operations.len() >= MAX_SUBSCRIPTIONS {
                            let error = json!({
                                "id": id,
                                "type": "error",
                                "payload": [{
                                    "message": format!("at most {MAX_SUBSCRIPTIONS} operations per connection"),
                                    "extensions": { "code": "QUERY_REJECTED", "retryable": false },
                                }],
                            });
                            if send(&mut sink, error).await.is_err() {
                                break None;
                            }
                            continue;
                        }
                        let out = Outbox {
                            messages: out_tx.clone(),
                            room: room.clone(),
                            timeout: send_timeout,
                            overflow: slow_tx.clone(),
                        };
                        let task = run_operation(&state, dialect, identity.clone(), grants, id.clone(), request, out);
                        operations.insert(id, task);
                    }
                    (Dialect::TransportWs, "complete") | (Dialect::Legacy, "stop") => {
                        if let Some(task) = id.and_then(|id| operations.remove(&id)) {
                            task.abort();
                        }
                    }
                    (Dialect::Legacy, "connection_terminate") => break None,
                    _ => break Some(Close(4400, "Invalid message received".into())),
                }
            }
        }
    };

    for task in operations.values() {
        task.abort();
    }
    drop(slot);
    if let Some(Close(code, reason)) = close {
        tracing::info!(code, reason, "closing a WebSocket");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // A client too slow to read may not take the close frame either.
        let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = tokio::time::timeout(send_timeout, sink.close()).await;
}

/// One open socket in `AppState::sockets`, until dropped.
struct OpenSocket(Arc<std::sync::atomic::AtomicUsize>);

impl OpenSocket {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn too_slow() -> Close {
    Close(4420, "Too slow: messages were not read in time".into())
}

/// A message on its way to the socket, holding its room in the outbox until sent.
struct Outgoing {
    /// Serialized already: straight from the response, without a `serde_json::Value` of
    /// it in between (per delivery, that copy cost as much as the rest of the send).
    text: String,
    room: OwnedSemaphorePermit,
}

/// Where an operation's messages go: the connection's outbox, bounded in bytes; when it
/// stays full the operation stops and asks for the connection to be closed.
struct Outbox {
    messages: mpsc::UnboundedSender<Outgoing>,
    room: Arc<Semaphore>,
    timeout: Duration,
    overflow: mpsc::Sender<()>,
}

impl Outbox {
    /// False when the operation should stop: the connection is gone or too far behind.
    async fn send<P: Serialize>(&self, id: &str, kind: &str, payload: Option<P>) -> bool {
        let message = OperationMessage { id, kind, payload };
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode an operation message");
                return false;
            }
        };
        let bytes = u32::try_from(text.len().clamp(1, OUTBOX_BYTES)).unwrap_or(u32::MAX);
        let room = self.room.clone().acquire_many_owned(bytes);
        match tokio::time::timeout(self.timeout, room).await {
            Ok(Ok(room)) => self.messages.send(Outgoing { text, room }).is_ok(),
            Ok(Err(_)) => false,
            Err(_) => {
                let _ = self.overflow.try_send(());
                false
            }
        }
    }
}

/// `{"id", "type", "payload"}`: what an operation sends.
#[derive(Serialize)]
struct OperationMessage<'a, P> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<P>,
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: Value,
) -> Result<(), axum::Error> {
    sink.send(Message::Text(message.to_string().into())).await
}

/// Authenticates the `connection_init` payload: `{"Authorization": "Bearer …"}`.
async fn admit(state: &AppState, payload: Option<&Value>) -> Result<Identity, Close> {
    let authorization = payload
        .and_then(|p| p.get("Authorization").or_else(|| p.get("authorization")))
        .and_then(Value::as_str);
    let identity = state.verifier.authenticate(authorization).map_err(|err| {
        tracing::info!(reason = %err, "refused a WebSocket token");
        Close(4403, err.client_message().into())
    })?;
    match &identity {
        Identity::Anonymous if state.config.is_production() => {
            // POST hides introspection from anonymous callers in production; a socket
            // cannot be limited per operation, so it needs a token there.
            Err(Close(4403, "a token is required".into()))
        }
        Identity::Anonymous => Ok(identity),
        Identity::Authenticated(viewer) => {
            check_standing(state, viewer).await?;
            Ok(identity)
        }
    }
}

/// Whether the viewer may still hold the connection. A check that fails refuses, exactly
/// as HTTP answers 500 rather than letting the request through: access is never granted
/// because the database could not say no.
async fn check_standing(state: &AppState, viewer: &Viewer) -> Result<Grants, Close> {
    match users::admit(&state.db, &state.clock, viewer).await {
        Ok(Ok(grants)) => Ok(grants),
        Ok(Err(refusal)) => Err(Close(
            4403,
            AuthError::Refused(refusal).client_message().into(),
        )),
        Err(err) => {
            err.log_if_internal();
            // 1013 "try again later", not 4500: graphql-ws clients treat 4500 as fatal and
            // would never come back after a database blip.
            Err(Close(
                1013,
                "could not check your access; reconnect shortly".into(),
            ))
        }
    }
}

/// Runs one operation, forwarding its results as `next` (or `error` when it fails before
/// producing data) and a final `complete`.
fn run_operation(
    state: &AppState,
    dialect: Dialect,
    identity: Identity,
    grants: Option<Grants>,
    id: String,
    request: Request,
    out: Outbox,
) -> JoinHandle<()> {
    let schema = state.schema.clone();
    // Whatever data the client's payload carried is dropped: only ours goes in.
    let mut request = request;
    request.data = Data::default();
    if !state.config.limits.introspection {
        request = request.disable_introspection();
    }
    let authenticated = matches!(identity, Identity::Authenticated(_));
    // Prepared before anything reads the document: the limits on its text come before the
    // parser.
    let mut prepared = super::prepare(state, request, identity, grants);
    let (kind, name) = match &mut prepared {
        Ok(request) => super::operation_of(request),
        Err(_) => ("invalid", None),
    };
    let counted = if authenticated { name.as_deref() } else { None };
    state.metrics.graphql_operation(kind, counted);
    let active = state.metrics.in_gauge("countersign_websocket_operations");
    let span = super::operation_span(kind, name.as_deref());
    let delivered = state
        .metrics
        .counter("countersign_subscription_events_delivered_total");
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _active = active;
            let mut responses = match prepared {
                Ok(request) => schema.execute_stream(request),
                Err(refused) => futures_util::stream::once(async move { *refused }).boxed(),
            };
            let mut first = true;
            while let Some(response) = responses.next().await {
                let response = super::finish(response);
                let failed_early =
                    first && response.data == async_graphql::Value::Null && response.is_err();
                first = false;
                let sent = if failed_early {
                    out.send(&id, "error", Some(&response.errors)).await
                } else {
                    let sent = out.send(&id, dialect.result(), Some(&response)).await;
                    if sent {
                        delivered.increment(1);
                    }
                    sent
                };
                if !sent || failed_early {
                    return;
                }
            }
            out.send(&id, "complete", None::<()>).await;
        },
        span,
    ))
}
