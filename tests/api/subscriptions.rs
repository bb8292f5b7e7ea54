//! `requestEvents`: committed changes, live and resumable by cursor, only for those who
//! may see them, on every replica.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Backend, Persona, TestApp, spawn_app, spawn_app_with, spawn_replica};
use crate::lifecycle_helpers::*;
use crate::websocket::{Socket, connect_as, send};

const GRANT: &str =
    "mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role } }";
const REVOKE: &str =
    "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role } }";

/// SQL statements the server has run so far (`/metrics`).
async fn db_statements(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix("countersign_db_statements_total "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map(|n| n as u64)
        .expect("countersign_db_statements_total")
}

const EVENTS: &str = "subscription($after: String, $filter: RequestEventFilter) {
    requestEvents(after: $after, filter: $filter) {
        cursor kind occurredAt actor { subject } request { id status version title } } }";

pub async fn subscribe(app: &TestApp, token: &str, after: Option<&str>, filter: Value) -> Socket {
    let mut socket = connect_as(app, token).await;
    send(
        &mut socket,
        json!({
            "id": "events", "type": "subscribe",
            "payload": { "query": EVENTS, "variables": { "after": after, "filter": filter } },
        }),
    )
    .await;
    socket
}

/// The next event within `within`, or `None`.
pub async fn next_event(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match frame {
            Ok(Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).expect("JSON");
                match message["type"].as_str() {
                    Some("next") => {
                        assert!(message["payload"]["errors"].is_null(), "{message}");
                        return Some(message["payload"]["data"]["requestEvents"].clone());
                    }
                    Some("ping") | Some("pong") => continue,
                    _ => panic!("unexpected {message}"),
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// How long a test waits for an event that must come. Generous: a shared machine can be
/// slow, and how fast events arrive is measured by the benchmarks, not asserted here.
pub const WITHIN: Duration = Duration::from_secs(10);

backend_tests!(
    a_committed_change_reaches_a_subscriber_who_may_see_it,
    resuming_after_a_cursor_delivers_exactly_what_was_missed_in_order,
    the_feed_cursor_read_before_a_list_lets_a_later_subscription_miss_nothing,
    a_support_user_never_receives_other_peoples_refunds,
    filters_narrow_the_events
);

async fn a_committed_change_reaches_a_subscriber_who_may_see_it(backend: Backend) {
    let app = spawn_app(backend).await;
    // From the start of the (fresh) log: deterministic, whenever the subscription starts.
    let mut bob = subscribe(&app, &app.token_for(Persona::Bob), Some("0"), json!(null)).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let event = next_event(&mut bob, WITHIN).await.expect("SUBMITTED");
    assert_eq!(event["kind"], "SUBMITTED");
    assert_eq!(event["request"]["id"], request["id"]);
    assert_eq!(event["request"]["status"], "PENDING");
    assert_eq!(event["actor"]["subject"], "alice");

    approve_with(&app, &app.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    let event = next_event(&mut bob, WITHIN).await.expect("APPROVED");
    assert_eq!(event["kind"], "APPROVED");
    assert_eq!(event["request"]["status"], "APPROVED");
    assert_eq!(event["request"]["version"], 2);
}

async fn resuming_after_a_cursor_delivers_exactly_what_was_missed_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob_token = app.token_for(Persona::Bob);
    let mut bob = subscribe(&app, &bob_token, Some("0"), json!(null)).await;
    let first = submit(&app, Persona::Alice, refund("250.00")).await;
    let seen = next_event(&mut bob, WITHIN).await.expect("the first event");
    drop(bob);

    let second = submit(&app, Persona::Alice, refund("260.00")).await;
    let third = submit(&app, Persona::Alice, refund("270.00")).await;
    approve_with(&app, &app.token_for(Persona::Carol), &first["id"])
        .await
        .expect_ok();

    let cursor = seen["cursor"].as_str().expect("a cursor").to_owned();
    let mut resumed = subscribe(&app, &bob_token, Some(&cursor), json!(null)).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut resumed, WITHIN)
            .await
            .expect("a missed event");
        got.push((
            event["kind"].as_str().unwrap().to_owned(),
            event["request"]["id"].clone(),
        ));
    }
    assert_eq!(
        got,
        [
            ("SUBMITTED".to_owned(), second["id"].clone()),
            ("SUBMITTED".to_owned(), third["id"].clone()),
            ("APPROVED".to_owned(), first["id"].clone()),
        ]
    );
    // Events arrive in order: the next one after a later change is that change, not a
    // duplicate of what came before.
    let fourth = submit(&app, Persona::Alice, refund("280.00")).await;
    let next = next_event(&mut resumed, WITHIN)
        .await
        .expect("the later change");
    assert_eq!(next["request"]["id"], fourth["id"], "no duplicate");
}

async fn the_feed_cursor_read_before_a_list_lets_a_later_subscription_miss_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let bob_token = app.token_for(Persona::Bob);
    submit(&app, Persona::Alice, refund("10.00")).await;
    let read = app
        .graphql(Some(&bob_token), "{ requestEventsCursor }", json!({}))
        .await;
    let cursor = read.expect_ok()["requestEventsCursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    // Committed after the read, before anyone subscribed.
    let between = submit(&app, Persona::Alice, refund("20.00")).await;
    let mut bob = subscribe(&app, &bob_token, Some(&cursor), json!(null)).await;
    let event = next_event(&mut bob, WITHIN)
        .await
        .expect("the change in between");
    assert_eq!(event["request"]["id"], between["id"]);
    let later = submit(&app, Persona::Alice, refund("30.00")).await;
    let next = next_event(&mut bob, WITHIN)
        .await
        .expect("the later change");
    assert_eq!(next["request"]["id"], later["id"], "nothing older");
    let anonymous = app
        .graphql(None, "{ requestEventsCursor }", json!({}))
        .await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

async fn a_support_user_never_receives_other_peoples_refunds(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut alice = subscribe(&app, &app.token_for(Persona::Alice), Some("0"), json!(null)).await;
    let sam = token_as(&app, "sam", &["support"]);
    let theirs = submit_with(&app, &sam, refund("250.00")).await;
    theirs.expect_ok();
    let mine = submit(&app, Persona::Alice, refund("99.00")).await;
    let event = next_event(&mut alice, WITHIN).await.expect("her own event");
    assert_eq!(
        event["request"]["id"], mine["id"],
        "the first event she gets is her own"
    );
}

async fn filters_narrow_the_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let frank = app.token_for(Persona::Frank);
    let mut approved_only =
        subscribe(&app, &frank, Some("0"), json!({ "status": "APPROVED" })).await;
    let mut this_one = subscribe(
        &app,
        &frank,
        Some("0"),
        json!({ "requestId": request["id"] }),
    )
    .await;
    submit(&app, Persona::Alice, access_grant()).await;
    approve_with(&app, &app.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    let event = next_event(&mut approved_only, WITHIN)
        .await
        .expect("the approval");
    assert_eq!(event["kind"], "APPROVED");
    let kinds: Vec<Value> = vec![
        next_event(&mut this_one, WITHIN).await.expect("submitted")["kind"].clone(),
        next_event(&mut this_one, WITHIN).await.expect("approved")["kind"].clone(),
    ];
    assert_eq!(kinds, [json!("SUBMITTED"), json!("APPROVED")]);
}

postgres_tests!(an_approval_on_one_replica_reaches_a_subscriber_on_another_on_postgres);

/// Replicas share one database only on PostgreSQL.
async fn an_approval_on_one_replica_reaches_a_subscriber_on_another_on_postgres() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_replica(&a).await;
    let request = submit(&b, Persona::Alice, refund("250.00")).await;
    let mut on_a = subscribe(&a, &a.token_for(Persona::Frank), Some("0"), json!(null)).await;
    assert_eq!(
        next_event(&mut on_a, WITHIN).await.expect("the submission")["kind"],
        "SUBMITTED"
    );
    approve_with(&b, &b.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    let event = next_event(&mut on_a, WITHIN)
        .await
        .expect("the approval, within a second");
    assert_eq!(event["kind"], "APPROVED");
}

backend_tests!(
    a_revoked_permission_stops_deliveries_without_a_reconnect,
    subscribers_with_the_same_selection_share_one_resolution_per_event
);

async fn a_revoked_permission_stops_deliveries_without_a_reconnect(backend: Backend) {
    let app = spawn_app(backend).await;
    let frank = app.token_for(Persona::Frank);
    let mut auditor = subscribe(&app, &frank, Some("0"), json!(null)).await;
    let seen = submit(&app, Persona::Alice, refund("250.00")).await;
    let event = next_event(&mut auditor, WITHIN)
        .await
        .expect("seen while granted");
    assert_eq!(event["request"]["id"], seen["id"]);

    let view_all = json!({ "input": { "role": "auditor", "action": "REQUEST_VIEW" } });
    app.graphql_as(Persona::Grace, REVOKE, view_all.clone())
        .await
        .expect_ok();
    submit(&app, Persona::Alice, refund("260.00")).await;

    // Events arrive in order, so the first one seen after the grant is back proves the
    // one submitted while revoked was never sent.
    app.graphql_as(Persona::Grace, GRANT, view_all)
        .await
        .expect_ok();
    let later = submit(&app, Persona::Alice, refund("270.00")).await;
    let event = next_event(&mut auditor, WITHIN)
        .await
        .expect("seen once granted again");
    assert_eq!(
        event["request"]["id"], later["id"],
        "nothing after the revocation"
    );
}

async fn subscribers_with_the_same_selection_share_one_resolution_per_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let frank = app.token_for(Persona::Frank);
    let mut sockets = futures_util::future::join_all(
        (0..60).map(|_| subscribe(&app, &frank, Some("0"), json!(null))),
    )
    .await;
    // Each has caught up (the submission), so the server is quiet again.
    for socket in &mut sockets {
        let event = next_event(socket, WITHIN).await.expect("the submission");
        assert_eq!(event["kind"], "SUBMITTED");
    }
    let before = db_statements(&app).await;
    approve_with(&app, &app.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    for socket in &mut sockets {
        let event = next_event(socket, WITHIN).await.expect("the approval");
        assert_eq!(event["kind"], "APPROVED");
        assert_eq!(event["actor"]["subject"], "bob");
    }
    let spent = db_statements(&app).await - before;
    // The approval, the feed's read, one resolution (the actor's row) and the periodic
    // checks: a statement per subscriber would be 60 more.
    assert!(
        spent < 40,
        "{spent} statements for one event to 60 subscribers"
    );
}

backend_tests!(a_thousand_subscribers_on_one_node_all_receive_an_event);

async fn a_thousand_subscribers_on_one_node_all_receive_an_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for(Persona::Frank);
    let mut sockets = Vec::with_capacity(1000);
    for chunk in 0..10 {
        let opened = futures_util::future::join_all(
            (0..100).map(|_| subscribe(&app, &token, Some("0"), json!(null))),
        )
        .await;
        sockets.extend(opened);
        assert_eq!(sockets.len(), (chunk + 1) * 100);
    }
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let received = futures_util::future::join_all(sockets.iter_mut().map(|socket| {
        let id = request["id"].clone();
        async move {
            next_event(socket, Duration::from_secs(60))
                .await
                .is_some_and(|event| event["request"]["id"] == id)
        }
    }))
    .await;
    let count = received.iter().filter(|got| **got).count();
    assert_eq!(count, 1000, "every subscriber received the event");
}

backend_tests!(an_expiry_reaches_subscribers);

async fn an_expiry_reaches_subscribers(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut frank = subscribe(&app, &app.token_for(Persona::Frank), Some("0"), json!(null)).await;
    submit(&app, Persona::Alice, refund("250.00")).await;
    assert_eq!(
        next_event(&mut frank, WITHIN).await.expect("submitted")["kind"],
        "SUBMITTED"
    );
    app.clock.advance(crate::expiry::PAST_EVERY_DEADLINE);
    let event = next_event(&mut frank, WITHIN).await.expect("the expiry");
    assert_eq!(event["kind"], "EXPIRED");
    assert_eq!(event["actor"]["subject"], "system");
    assert_eq!(event["request"]["status"], "EXPIRED");
}

/// A subscriber whose socket has a small receive buffer and who reads nothing until told.
async fn connect_without_reading(
    app: &TestApp,
    token: &str,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let address: std::net::SocketAddr = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("the app's address");
    let tcp = tokio::net::TcpSocket::new_v4().expect("a socket");
    tcp.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = tcp.connect(address).await.expect("connect");
    let mut request = format!("ws://{address}/graphql/ws")
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket upgrade");
    for message in [
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
        json!({ "id": "events", "type": "subscribe", "payload": { "query": query, "variables": { "after": "0" } } }),
    ] {
        futures_util::SinkExt::send(&mut socket, Message::Text(message.to_string().into()))
            .await
            .expect("sending a frame");
    }
    socket
}

backend_tests!(a_subscriber_who_stops_reading_is_disconnected_instead_of_buffered_for);

async fn a_subscriber_who_stops_reading_is_disconnected_instead_of_buffered_for(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.ws_send_timeout = Duration::from_millis(500);
    })
    .await;
    // Each event renders its 10,000-character description 50 times: ~500 KB a message.
    let copies: String = (0..50)
        .map(|i| format!("d{i}: request {{ description }} "))
        .collect();
    let query = format!(
        "subscription($after: String) {{ requestEvents(after: $after) {{ cursor {copies} }} }}"
    );
    let mut frank = connect_without_reading(&app, &app.token_for(Persona::Frank), &query).await;
    const EVENTS: usize = 30;
    for _ in 0..EVENTS {
        let mut input = refund("10.00");
        input["description"] = json!("x".repeat(10_000));
        submit(&app, Persona::Alice, input).await;
    }
    // ~15 MB to send: more than the socket's buffers and the 1 MiB outbox hold. The
    // server gives up after the send timeout; once it no longer counts the socket, read
    // whatever it did send.
    crate::helpers::eventually("the server drops the unread socket", || async {
        (app.metric("countersign_websocket_connections", &[]).await == Some(0.0)).then_some(())
    })
    .await;
    let mut delivered = 0;
    let ended = loop {
        match tokio::time::timeout(WITHIN, frank.next()).await {
            Err(_) => break None,
            Ok(Some(Ok(Message::Text(text)))) => {
                if text.contains("\"next\"") {
                    delivered += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                break Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
            // Closed without a frame: it never got past the unread messages.
            Ok(None) | Ok(Some(Err(_))) => break Some(1006),
        }
    };
    assert!(
        matches!(ended, Some(4420 | 1006)),
        "the server must end the connection (4420, or without a frame the client could not read), got {ended:?} after {delivered} events"
    );
    assert!(
        delivered < EVENTS,
        "all {delivered} events were held for a client that did not read"
    );
}
