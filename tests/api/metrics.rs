//! `/metrics` moves with traffic: HTTP requests by route and status with latency
//! histograms, GraphQL operations by type and name, errors by code, WebSockets and their
//! operations, events delivered, the database pool.

use serde_json::json;

use crate::helpers::{Backend, Persona, spawn_app};
use crate::lifecycle_helpers::*;
use crate::websocket::{connect_as, receive, send};

backend_tests!(metrics_count_requests_operations_errors_and_sockets);

async fn metrics_count_requests_operations_errors_and_sockets(backend: Backend) {
    let app = spawn_app(backend).await;
    app.graphql_as(
        Persona::Bob,
        "query WhoAmI { viewer { subject } }",
        json!({}),
    )
    .await
    .expect_ok();
    let refused = app.graphql_as(Persona::Alice, "mutation Grant { grantPermission(input: { role: \"support\", action: AUDIT_READ }) { role } }", json!({})).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    let bad = app
        .graphql(Some("not-a-token"), "{ viewer { subject } }", json!({}))
        .await;
    assert_eq!(bad.status, 401);

    assert_eq!(
        app.metric(
            "countersign_graphql_operations_total",
            &["type=\"query\"", "name=\"WhoAmI\""]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric(
            "countersign_graphql_operations_total",
            &["type=\"mutation\"", "name=\"Grant\""]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("countersign_graphql_errors_total", &["code=\"FORBIDDEN\""])
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric(
            "countersign_graphql_errors_total",
            &["code=\"UNAUTHENTICATED\""]
        )
        .await,
        Some(1.0)
    );
    assert!(
        app.metric(
            "countersign_http_requests_total",
            &["route=\"/graphql\"", "method=\"POST\"", "status=\"200\""]
        )
        .await
            >= Some(2.0)
    );
    assert_eq!(
        app.metric(
            "countersign_http_requests_total",
            &["route=\"/graphql\"", "status=\"401\""]
        )
        .await,
        Some(1.0)
    );
    assert!(
        app.metric(
            "countersign_http_request_duration_seconds_bucket",
            &["route=\"/graphql\"", "le=\"+Inf\""]
        )
        .await
            >= Some(3.0)
    );
    assert!(app.metric("countersign_db_pool_connections", &[]).await >= Some(1.0));
    assert!(
        app.metric("countersign_db_pool_in_use", &[])
            .await
            .is_some()
    );

    let mut socket = connect_as(&app, &app.token_for(Persona::Frank)).await;
    send(
        &mut socket,
        json!({ "id": "events", "type": "subscribe", "payload": {
        "query": "subscription Live { requestEvents(after: \"0\") { cursor } }" } }),
    )
    .await;
    submit(&app, Persona::Alice, refund("10.00")).await;
    assert_eq!(receive(&mut socket).await.unwrap()["type"], "next");
    assert_eq!(
        app.metric("countersign_websocket_connections", &[]).await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("countersign_websocket_operations", &[]).await,
        Some(1.0)
    );
    assert_eq!(
        app.metric(
            "countersign_graphql_operations_total",
            &["type=\"subscription\"", "name=\"Live\""]
        )
        .await,
        Some(1.0)
    );
    assert!(
        app.metric("countersign_subscription_events_delivered_total", &[])
            .await
            >= Some(1.0)
    );
    drop(socket);
    crate::helpers::eventually("a closed socket is no longer counted", || async {
        (app.metric("countersign_websocket_connections", &[]).await == Some(0.0)).then_some(())
    })
    .await;
}
