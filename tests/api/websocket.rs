//! The WebSocket endpoint: graphql-transport-ws (and legacy graphql-ws) handshakes, with the
//! token in `connection_init`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{Backend, Persona, TestApp, spawn_app, spawn_replica};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(app: &TestApp, protocol: &str) -> Socket {
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("a WebSocket request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        protocol.parse().expect("a header value"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

pub async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("sending a frame");
}

/// Waits for the server to close the socket and returns the close code.
/// How long a test waits for a close that must come (revocation, expiry). Generous: how
/// fast it comes is the benchmarks' business, not a timed test's.
pub const CLOSES_WITHIN: Duration = Duration::from_secs(10);

pub async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?;
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => return Some(frame.code.into()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Some(1005),
            Some(Ok(_)) => continue,
        }
    }
}

/// Opens a graphql-transport-ws connection acknowledged for `token`.
pub async fn connect_as(app: &TestApp, token: &str) -> Socket {
    let mut socket = connect(app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );
    socket
}

const DISABLE: &str =
    "mutation($input: DisableUserInput!) { disableUser(input: $input) { user { subject } } }";

/// The next JSON message, or `None` once the server closes the socket.
pub async fn receive(socket: &mut Socket) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the server answers within 5 s");
        match frame {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(&text).expect("JSON frames"));
            }
            Some(Ok(_)) => continue,
        }
    }
}

backend_tests!(
    graphql_transport_ws_acknowledges_a_valid_token_and_knows_the_viewer,
    graphql_transport_ws_refuses_an_invalid_token,
    the_legacy_graphql_ws_protocol_handshakes_too
);

async fn graphql_transport_ws_acknowledges_a_valid_token_and_knows_the_viewer(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    let token = app.token_for(Persona::Dave);
    send(
        &mut socket,
        json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );

    send(
        &mut socket,
        json!({
            "id": "1",
            "type": "subscribe",
            "payload": { "query": "{ viewer { subject roles } }" },
        }),
    )
    .await;
    let next = receive(&mut socket).await.expect("a result");
    assert_eq!(next["type"], "next");
    assert_eq!(next["payload"]["data"]["viewer"]["subject"], "dave");
    assert_eq!(
        receive(&mut socket).await.expect("complete")["type"],
        "complete"
    );
}

async fn graphql_transport_ws_refuses_an_invalid_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({
            "type": "connection_init",
            "payload": { "Authorization": "Bearer not-a-token" },
        }),
    )
    .await;
    assert_eq!(receive(&mut socket).await, None, "closed without an ack");
}

async fn the_legacy_graphql_ws_protocol_handshakes_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-ws").await;
    let token = app.token_for(Persona::Alice);
    send(
        &mut socket,
        json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );
}

backend_tests!(
    a_disabled_users_socket_closes,
    revoking_sessions_closes_open_sockets,
    a_socket_closes_when_its_token_expires,
    other_users_sockets_stay_open,
    a_disabled_user_cannot_open_a_socket
);

async fn a_disabled_users_socket_closes(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Bob)).await;
    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "bob", "reason": "incident" } }),
    )
    .await
    .expect_ok();
    assert_eq!(close_code(&mut socket, CLOSES_WITHIN).await, Some(4403));
}

async fn revoking_sessions_closes_open_sockets(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Bob)).await;
    app.graphql_as(
        Persona::Grace,
        "mutation { revokeSessions(input: { subject: \"bob\", reason: \"laptop stolen\" }) { user { subject } } }",
        json!({}),
    )
    .await
    .expect_ok();
    assert_eq!(close_code(&mut socket, CLOSES_WITHIN).await, Some(4403));
}

async fn a_socket_closes_when_its_token_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = crate::helpers::mint_with_ttl("bob", &["finance"], Duration::from_secs(3));
    let mut socket = connect_as(&app, &token).await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(4)).await,
        Some(4403)
    );
}

async fn other_users_sockets_stay_open(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut carol = connect_as(&app, &app.token_for(Persona::Carol)).await;
    let mut bob = connect_as(&app, &app.token_for(Persona::Bob)).await;
    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "bob", "reason": "incident" } }),
    )
    .await
    .expect_ok();
    // A fence: bob's socket closing shows the change has reached the sockets.
    assert_eq!(close_code(&mut bob, CLOSES_WITHIN).await, Some(4403));
    send(&mut carol, json!({ "id": "after", "type": "subscribe", "payload": { "query": "{ viewer { subject } }" } })).await;
    let answer = receive(&mut carol).await.expect("carol is still served");
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(answer["payload"]["data"]["viewer"]["subject"], "carol");
}

async fn a_disabled_user_cannot_open_a_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "bob", "reason": "incident" } }),
    )
    .await
    .expect_ok();
    let mut socket = connect(&app, "graphql-transport-ws").await;
    let token = app.token_for(Persona::Bob);
    send(
        &mut socket,
        json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        }),
    )
    .await;
    assert_eq!(receive(&mut socket).await, None, "closed without an ack");
}

postgres_tests!(disabling_on_one_replica_closes_the_users_socket_on_another_on_postgres);

/// Replicas share one database only on PostgreSQL.
async fn disabling_on_one_replica_closes_the_users_socket_on_another_on_postgres() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_replica(&a).await;
    let mut on_b = connect_as(&b, &b.token_for(Persona::Bob)).await;
    let mut on_a = connect_as(&a, &a.token_for(Persona::Bob)).await;
    a.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "bob", "reason": "incident" } }),
    )
    .await
    .expect_ok();
    assert_eq!(
        close_code(&mut on_b, CLOSES_WITHIN).await,
        Some(4403),
        "replica B"
    );
    assert_eq!(
        close_code(&mut on_a, CLOSES_WITHIN).await,
        Some(4403),
        "replica A"
    );
}

backend_tests!(
    production_refuses_anonymous_sockets,
    production_hides_the_schema_unless_introspection_is_enabled_and_never_from_anonymous_callers
);

async fn production_refuses_anonymous_sockets(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |config| {
        config.environment = countersign::config::Environment::Production;
        config.demo = countersign::config::DemoMode::Off;
    })
    .await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": {} }),
    )
    .await;
    assert_eq!(receive(&mut socket).await, None, "closed without an ack");

    let mut socket = connect(&app, "graphql-transport-ws").await;
    let token = app.token_for(Persona::Bob);
    send(
        &mut socket,
        json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );
}

async fn production_hides_the_schema_unless_introspection_is_enabled_and_never_from_anonymous_callers(
    backend: Backend,
) {
    let production = |introspection: bool| {
        move |config: &mut countersign::config::Config| {
            config.environment = countersign::config::Environment::Production;
            config.demo = countersign::config::DemoMode::Off;
            config.limits.introspection = introspection;
        }
    };
    let app = crate::helpers::spawn_app_with(backend, production(false)).await;
    for token in [None, Some(app.token_for(Persona::Bob))] {
        let hidden = app
            .graphql(
                token.as_deref(),
                "{ __schema { queryType { name } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            hidden.data()["__schema"],
            serde_json::Value::Null,
            "{}",
            hidden.body
        );
    }
    // No "did you mean" either: it would spell the schema out field by field.
    let typo = app
        .graphql_as(Persona::Bob, "{ viewr { subject } }", json!({}))
        .await;
    assert!(
        !typo.body.to_string().contains("Did you mean"),
        "{}",
        typo.body
    );

    let app = crate::helpers::spawn_app_with(backend, production(true)).await;
    let anonymous = app
        .graphql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(
        anonymous.data()["__schema"],
        serde_json::Value::Null,
        "{}",
        anonymous.body
    );
    let signed_in = app
        .graphql_as(
            Persona::Bob,
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        signed_in.expect_ok()["__schema"]["queryType"]["name"],
        "Query"
    );
}

async fn upgrade_status(app: &TestApp, origin: Option<&str>) -> u16 {
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("a WebSocket request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected {other}"),
    }
}

backend_tests!(
    sockets_from_other_origins_are_refused_unless_allowed,
    an_oversized_frame_closes_the_socket
);

async fn sockets_from_other_origins_are_refused_unless_allowed(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |config| {
        config.allowed_origins = vec!["https://console.example.com".into()];
    })
    .await;
    let own = app.address.clone();
    assert_eq!(
        upgrade_status(&app, None).await,
        101,
        "no Origin: not a browser"
    );
    assert_eq!(upgrade_status(&app, Some(&own)).await, 101, "same origin");
    assert_eq!(
        upgrade_status(&app, Some("https://console.example.com")).await,
        101
    );
    assert_eq!(
        upgrade_status(&app, Some("https://evil.example.net")).await,
        403
    );
}

async fn an_oversized_frame_closes_the_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Bob)).await;
    let huge =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "x".repeat(70 * 1024) } });
    let _ = socket.send(Message::Text(huge.to_string().into())).await;
    assert!(
        close_code(&mut socket, Duration::from_secs(2))
            .await
            .is_some(),
        "closed"
    );
}

backend_tests!(
    an_invalid_token_closes_with_4403,
    no_connection_init_within_ten_seconds_closes_with_4408,
    a_second_connection_init_closes_with_4429,
    subscribing_before_the_ack_closes_with_4401,
    a_duplicate_subscription_id_closes_with_4409,
    garbage_closes_with_4400_and_ping_gets_pong,
    at_most_twenty_operations_run_per_connection,
    a_bad_operation_gets_an_error_message_with_a_code
);

async fn an_invalid_token_closes_with_4403(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer nope" } }),
    )
    .await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4403)
    );
}

async fn no_connection_init_within_ten_seconds_closes_with_4408(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(9)).await,
        None,
        "not before 10 s"
    );
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(3)).await,
        Some(4408)
    );
}

async fn a_second_connection_init_closes_with_4429(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for(Persona::Bob);
    let mut socket = connect_as(&app, &token).await;
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4429)
    );
}

async fn subscribing_before_the_ack_closes_with_4401(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ viewer { subject } }" } }),
    )
    .await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4401)
    );
}

async fn a_duplicate_subscription_id_closes_with_4409(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Frank)).await;
    let subscribe = json!({ "id": "same", "type": "subscribe", "payload": { "query": "subscription { requestEvents { cursor } }" } });
    send(&mut socket, subscribe.clone()).await;
    send(&mut socket, subscribe).await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4409)
    );
}

async fn garbage_closes_with_4400_and_ping_gets_pong(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Bob)).await;
    send(
        &mut socket,
        json!({ "type": "ping", "payload": { "n": 1 } }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.expect("a pong"),
        json!({ "type": "pong", "payload": { "n": 1 } })
    );
    socket
        .send(Message::Text("not json".into()))
        .await
        .expect("send");
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4400)
    );
}

async fn at_most_twenty_operations_run_per_connection(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Frank)).await;
    for i in 0..20 {
        send(&mut socket, json!({ "id": format!("s{i}"), "type": "subscribe", "payload": { "query": "subscription { requestEvents { cursor } }" } })).await;
    }
    send(&mut socket, json!({ "id": "s20", "type": "subscribe", "payload": { "query": "subscription { requestEvents { cursor } }" } })).await;
    let refused = receive(&mut socket).await.expect("an error for the 21st");
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "s20");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "QUERY_REJECTED"
    );
    // Completing one frees a place.
    send(&mut socket, json!({ "id": "s0", "type": "complete" })).await;
    // The server reads a socket's messages in order: once the ping is answered, the
    // complete has been handled.
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(receive(&mut socket).await.expect("a pong")["type"], "pong");
    send(&mut socket, json!({ "id": "s21", "type": "subscribe", "payload": { "query": "{ viewer { subject } }" } })).await;
    let next = receive(&mut socket).await.expect("a result");
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "s21");
}

async fn a_bad_operation_gets_an_error_message_with_a_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect_as(&app, &app.token_for(Persona::Frank)).await;
    send(&mut socket, json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { noSuchField }" } })).await;
    let error = receive(&mut socket).await.expect("an error");
    assert_eq!(error["type"], "error");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

backend_tests!(
    the_legacy_protocol_runs_operations_under_the_same_rules,
    the_legacy_protocol_refuses_a_bad_token_with_a_connection_error,
    the_legacy_protocol_closes_a_disabled_users_socket
);

async fn the_legacy_protocol_runs_operations_under_the_same_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-ws").await;
    let token = app.token_for(Persona::Frank);
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    assert_eq!(
        receive(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );

    send(
        &mut socket,
        json!({ "id": "q", "type": "start", "payload": { "query": "{ viewer { subject } }" } }),
    )
    .await;
    let data = receive(&mut socket).await.expect("data");
    assert_eq!(data["type"], "data");
    assert_eq!(data["payload"]["data"]["viewer"]["subject"], "frank");
    assert_eq!(
        receive(&mut socket).await.expect("complete")["type"],
        "complete"
    );

    for i in 0..20 {
        send(&mut socket, json!({ "id": format!("s{i}"), "type": "start", "payload": { "query": "subscription { requestEvents { cursor } }" } })).await;
    }
    send(&mut socket, json!({ "id": "s20", "type": "start", "payload": { "query": "subscription { requestEvents { cursor } }" } })).await;
    let refused = receive(&mut socket).await.expect("an error for the 21st");
    assert_eq!(refused["type"], "error");
    send(&mut socket, json!({ "id": "s1", "type": "start", "payload": { "query": "subscription { requestEvents { cursor } }" } })).await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4409)
    );
}

async fn the_legacy_protocol_refuses_a_bad_token_with_a_connection_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer nope" } }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.expect("a connection_error")["type"],
        "connection_error"
    );
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(2)).await,
        Some(4403)
    );
}

async fn the_legacy_protocol_closes_a_disabled_users_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = connect(&app, "graphql-ws").await;
    let token = app.token_for(Persona::Bob);
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    assert_eq!(
        receive(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );
    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "bob", "reason": "incident" } }),
    )
    .await
    .expect_ok();
    assert_eq!(close_code(&mut socket, CLOSES_WITHIN).await, Some(4403));
}
