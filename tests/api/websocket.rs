//! The WebSocket endpoint: graphql-transport-ws (and legacy graphql-ws) handshakes, with the
//! token in `connection_init`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::backend_tests;
use crate::helpers::{Persona, TestApp, spawn_app};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, protocol: &str) -> Socket {
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

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("sending a frame");
}

/// The next JSON message, or `None` once the server closes the socket.
async fn receive(socket: &mut Socket) -> Option<Value> {
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

backend_tests! {
    async fn graphql_transport_ws_acknowledges_a_valid_token_and_knows_the_viewer(backend) {
        let app = spawn_app(backend).await;
        let mut socket = connect(&app, "graphql-transport-ws").await;
        let token = app.token_for(Persona::Dave);
        send(&mut socket, json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        })).await;
        assert_eq!(receive(&mut socket).await.expect("an ack")["type"], "connection_ack");

        send(&mut socket, json!({
            "id": "1",
            "type": "subscribe",
            "payload": { "query": "{ viewer { subject roles } }" },
        })).await;
        let next = receive(&mut socket).await.expect("a result");
        assert_eq!(next["type"], "next");
        assert_eq!(next["payload"]["data"]["viewer"]["subject"], "dave");
        assert_eq!(receive(&mut socket).await.expect("complete")["type"], "complete");
    }

    async fn graphql_transport_ws_refuses_an_invalid_token(backend) {
        let app = spawn_app(backend).await;
        let mut socket = connect(&app, "graphql-transport-ws").await;
        send(&mut socket, json!({
            "type": "connection_init",
            "payload": { "Authorization": "Bearer not-a-token" },
        })).await;
        assert_eq!(receive(&mut socket).await, None, "closed without an ack");
    }

    async fn the_legacy_graphql_ws_protocol_handshakes_too(backend) {
        let app = spawn_app(backend).await;
        let mut socket = connect(&app, "graphql-ws").await;
        let token = app.token_for(Persona::Alice);
        send(&mut socket, json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        })).await;
        assert_eq!(receive(&mut socket).await.expect("an ack")["type"], "connection_ack");
    }
}
