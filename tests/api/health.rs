//! Liveness, readiness and the request id every response carries.

use crate::helpers::{Backend, spawn_app};

backend_tests!(
    healthz_says_alive,
    readyz_says_ready_once_migrations_are_applied,
    every_response_carries_a_request_id_and_echoes_the_callers
);

async fn healthz_says_alive(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "alive");
}

async fn readyz_says_ready_once_migrations_are_applied(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ready");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
}

async fn every_response_carries_a_request_id_and_echoes_the_callers(backend: Backend) {
    let app = spawn_app(backend).await;
    let generated = app.get("/healthz").await;
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a generated x-request-id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let echoed = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "support-ticket-4711")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(echoed.headers()["x-request-id"], "support-ticket-4711");
}
