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
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Data, Request};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use super::AppState;
use super::throttle::ConnectionSlot;
use crate::access::Grants;
use crate::auth::{AuthError, Identity, Viewer};
use crate::error::AppError;

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

/// What a handler tells the loop: go on, or end the connection (with a close frame, or
/// without one when the socket is already gone).
type Step = ControlFlow<Option<Close>>;

fn close(code: u16, reason: impl Into<String>) -> Step {
    ControlFlow::Break(Some(Close(code, reason.into())))
}

fn invalid() -> Step {
    close(4400, "Invalid message received")
}

/// Serves one socket until either side ends it. The loop only waits; each thing that can
/// happen is one method of [`Connection`].
pub async fn serve(
    state: AppState,
    dialect: Dialect,
    socket: WebSocket,
    peer: Option<std::net::IpAddr>,
) {
    let (sink, mut stream) = socket.split();
    let (messages, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (overflow, mut slow_rx) = mpsc::channel::<()>(1);
    let mut news = state.bus.access_changes();
    let mut draining = state.draining.clone();
    let _open = state.metrics.in_gauge("countersign_websocket_connections");
    let _counted = OpenSocket::new(&state.sockets);
    let outbox = Outbox {
        messages,
        room: Arc::new(Semaphore::new(OUTBOX_BYTES)),
        timeout: state.config.ws_send_timeout,
        overflow,
    };
    let mut conn = Connection::new(state, dialect, peer, sink, outbox);
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.tick().await;

    let ended = loop {
        let step = tokio::select! {
            () = &mut init_deadline, if !conn.init_seen => {
                close(4408, "Connection initialisation timeout")
            }
            () = &mut conn.expiry, if conn.identity.is_some() => {
                close(4403, "the token has expired")
            }
            changed = draining.changed() => {
                if changed.is_err() || *draining.borrow_and_update() {
                    close(1001, "the server is shutting down; reconnect")
                } else {
                    ControlFlow::Continue(())
                }
            }
            _ = keep_alive.tick() => conn.keep_alive().await,
            Some(outgoing) = out_rx.recv() => conn.deliver(outgoing).await,
            Some(()) = slow_rx.recv() => ControlFlow::Break(Some(too_slow())),
            event = news.recv() => conn.on_bus(event).await,
            incoming = stream.next() => conn.on_frame(incoming).await,
        };
        if let ControlFlow::Break(ended) = step {
            break ended;
        }
    };
    conn.end(ended).await;
}

/// One socket's state: who it speaks for (once `connection_init` admitted them), the
/// operations it runs, and where their messages go.
struct Connection {
    state: AppState,
    dialect: Dialect,
    peer: Option<std::net::IpAddr>,
    sink: SplitSink<WebSocket, Message>,
    outbox: Outbox,
    init_seen: bool,
    identity: Option<Identity>,
    /// Held while open: the subject's share of `COUNTERSIGN_MAX_CONNECTIONS_PER_SUBJECT`.
    slot: Option<ConnectionSlot>,
    operations: HashMap<String, JoinHandle<()>>,
    /// When the token expires; far away until a token is admitted.
    expiry: Pin<Box<Sleep>>,
}

impl Connection {
    fn new(
        state: AppState,
        dialect: Dialect,
        peer: Option<std::net::IpAddr>,
        sink: SplitSink<WebSocket, Message>,
        outbox: Outbox,
    ) -> Self {
        Self {
            state,
            dialect,
            peer,
            sink,
            outbox,
            init_seen: false,
            identity: None,
            slot: None,
            operations: HashMap::new(),
            expiry: Box::pin(tokio::time::sleep(Duration::from_secs(u64::from(u32::MAX)))),
        }
    }

    /// Sends one protocol message straight to the socket; a failed send ends the
    /// connection (the client is gone).
    async fn send(&mut self, message: Value) -> Step {
        match self
            .sink
            .send(Message::Text(message.to_string().into()))
            .await
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(None),
        }
    }

    async fn keep_alive(&mut self) -> Step {
        let ping = match self.dialect {
            Dialect::TransportWs => json!({ "type": "ping" }),
            Dialect::Legacy => json!({ "type": "ka" }),
        };
        self.send(ping).await
    }

    /// Passes an operation's message to the socket, freeing its room in the outbox.
    async fn deliver(&mut self, Outgoing { text, room }: Outgoing) -> Step {
        let message = Message::Text(text.into());
        let sent = tokio::time::timeout(self.outbox.timeout, self.sink.send(message)).await;
        drop(room);
        match sent {
            Ok(Ok(())) => ControlFlow::Continue(()),
            Ok(Err(_)) => ControlFlow::Break(None),
            Err(_) => ControlFlow::Break(Some(too_slow())),
        }
    }

    /// A change to someone's access: if it may be this socket's user (or the bus lagged
    /// and cannot say), their standing is read again.
    async fn on_bus(&mut self, changed: Result<String, broadcast::error::RecvError>) -> Step {
        let subject = match changed {
            Ok(subject) => Some(subject),
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            // The bus outlives every connection; were it gone, wait rather than spin.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        };
        let Some(Identity::Authenticated(viewer)) = &self.identity else {
            return ControlFlow::Continue(());
        };
        if subject.is_some_and(|s| s != viewer.subject) {
            return ControlFlow::Continue(());
        }
        match check_standing(&self.state, viewer).await {
            Ok(_) => ControlFlow::Continue(()),
            Err(refused) => ControlFlow::Break(Some(refused)),
        }
    }

    /// A frame from the client, dispatched by message kind.
    async fn on_frame(&mut self, incoming: Option<Result<Message, axum::Error>>) -> Step {
        let text = match incoming {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return ControlFlow::Continue(()),
            Some(Ok(Message::Binary(_))) => {
                return close(4400, "binary messages are not part of the protocol");
            }
            // The client left, or sent more than the message limit allows.
            Some(Ok(Message::Close(_)) | Err(_)) | None => return ControlFlow::Break(None),
        };
        let Ok(ClientMessage { kind, id, payload }) = serde_json::from_str(&text) else {
            return invalid();
        };
        match (self.dialect, kind.as_str()) {
            (_, "connection_init") => self.on_init(payload).await,
            (Dialect::TransportWs, "ping") => self.on_ping(payload).await,
            (Dialect::TransportWs, "pong") => ControlFlow::Continue(()),
            (Dialect::TransportWs, "subscribe") | (Dialect::Legacy, "start") => {
                self.on_subscribe(id, payload).await
            }
            (Dialect::TransportWs, "complete") | (Dialect::Legacy, "stop") => self.on_complete(id),
            (Dialect::Legacy, "connection_terminate") => ControlFlow::Break(None),
            _ => invalid(),
        }
    }

    async fn on_init(&mut self, payload: Option<Value>) -> Step {
        if self.init_seen {
            return close(4429, "Too many initialisation requests");
        }
        self.init_seen = true;
        let admitted = match admit(&self.state, payload.as_ref()).await {
            Ok(admitted) => admitted,
            Err(refused) => return self.refuse_init(refused).await,
        };
        if let Identity::Authenticated(viewer) = &admitted {
            self.slot = self.state.throttle.connection(&viewer.subject);
            if self.slot.is_none() {
                return close(4430, "too many open connections for this user");
            }
            let left = (viewer.expires_at - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            self.expiry = Box::pin(tokio::time::sleep(left));
        }
        self.identity = Some(admitted);
        self.send(json!({ "type": "connection_ack" })).await
    }

    async fn refuse_init(&mut self, mut refused: Close) -> Step {
        // A refused token counts against the address, as over HTTP.
        let limited = refused.0 == 4403
            && self
                .peer
                .is_some_and(|ip| self.state.throttle.address(ip).is_err());
        if limited {
            self.state
                .metrics
                .increment("countersign_rate_limited_total", &[("scope", "address")]);
            refused = Close(4429, "Too many requests".into());
        }
        if self.dialect == Dialect::Legacy {
            let error = json!({ "type": "connection_error", "payload": { "message": refused.1 } });
            // The close frame follows whether or not this arrives.
            let _ = self.send(error).await;
        }
        ControlFlow::Break(Some(refused))
    }

    async fn on_ping(&mut self, payload: Option<Value>) -> Step {
        let mut pong = json!({ "type": "pong" });
        if let Some(payload) = payload {
            pong["payload"] = payload;
        }
        self.send(pong).await
    }

    async fn on_subscribe(&mut self, id: Option<String>, payload: Option<Value>) -> Step {
        let Some(identity) = self.identity.clone() else {
            return close(4401, "Unauthorized");
        };
        // Standing is read again for every operation, not only at init: a user disabled
        // since then gets nothing more from this socket.
        let mut grants = None;
        if let Identity::Authenticated(viewer) = &identity {
            match check_standing(&self.state, viewer).await {
                Ok(admitted) => grants = Some(admitted),
                Err(refused) => return ControlFlow::Break(Some(refused)),
            }
        }
        let (Some(id), Some(payload)) = (id, payload) else {
            return invalid();
        };
        if let Identity::Authenticated(viewer) = &identity {
            if let Err(wait) = self.state.throttle.subject(&viewer.subject) {
                self.state
                    .metrics
                    .increment("countersign_rate_limited_total", &[("scope", "subject")]);
                let refused = AppError::RateLimited {
                    retry_after: wait.seconds().max(1),
                };
                return self.refuse_operation(&id, refused).await;
            }
        }
        let Ok(request) = serde_json::from_value::<Request>(payload) else {
            return invalid();
        };
        self.operations.retain(|_, task| !task.is_finished());
        if self.operations.contains_key(&id) {
            return close(4409, format!("Subscriber for {id} already exists"));
        }
        if self.operations.len() >= MAX_SUBSCRIPTIONS {
            let refused = AppError::QueryRejected(format!(
                "at most {MAX_SUBSCRIPTIONS} operations per connection"
            ));
            return self.refuse_operation(&id, refused).await;
        }
        let out = self.outbox.clone();
        let task = run_operation(
            &self.state,
            self.dialect,
            identity,
            grants,
            id.clone(),
            request,
            out,
        );
        self.operations.insert(id, task);
        ControlFlow::Continue(())
    }

    /// Answers one operation with an `error` message; the connection stays open.
    async fn refuse_operation(&mut self, id: &str, refused: AppError) -> Step {
        let error = json!({ "id": id, "type": "error", "payload": [refused.to_server_error()] });
        self.send(error).await
    }

    fn on_complete(&mut self, id: Option<String>) -> Step {
        if let Some(task) = id.and_then(|id| self.operations.remove(&id)) {
            task.abort();
        }
        ControlFlow::Continue(())
    }

    /// Stops every operation, gives back the subject's slot and closes the socket.
    async fn end(mut self, ended: Option<Close>) {
        for task in self.operations.values() {
            task.abort();
        }
        drop(self.slot.take());
        let timeout = self.outbox.timeout;
        if let Some(Close(code, reason)) = ended {
            tracing::info!(code, reason, "closing a WebSocket");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            // A client too slow to read may not take the close frame either.
            let _ =
                tokio::time::timeout(timeout, self.sink.send(Message::Close(Some(frame)))).await;
        }
        let _ = tokio::time::timeout(timeout, self.sink.close()).await;
    }
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
#[derive(Clone)]
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
    match state.admission.admit(&state.clock, viewer).await {
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
