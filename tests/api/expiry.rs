//! The expiry sweeper: a pending request past its deadline becomes EXPIRED exactly once,
//! audited as `system` and announced to subscribers.

use std::time::Duration;

use entity::request;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, Persona, TestApp, spawn_app, spawn_replica};
use crate::lifecycle_helpers::*;

/// Moves the request's deadline into the past, as if its policy's expiry had elapsed.
async fn time_travel(app: &TestApp, id: &Value) {
    let db = Database::connect(app.database_url.clone())
        .await
        .expect("a direct connection");
    let id = uuid::Uuid::parse_str(id.as_str().expect("an id")).expect("a uuid");
    request::Entity::update_many()
        .col_expr(
            request::Column::ExpiresAt,
            (chrono::Utc::now() - chrono::Duration::hours(1)).into(),
        )
        .filter(request::Column::Id.eq(id))
        .exec(&db)
        .await
        .expect("moving the deadline");
}

async fn wait_for_status(app: &TestApp, id: &Value, status: &str) -> Value {
    let alice = app.token_for(Persona::Alice);
    for _ in 0..50 {
        let seen = request_as(app, &alice, id).await;
        if seen["status"] == status {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never became {status}");
}

backend_tests! {
    async fn a_pending_request_past_its_deadline_expires_once_as_system(backend) {
        let app = spawn_app(backend).await;
        let request = submit(&app, Persona::Alice, refund("250.00")).await;
        let other = submit(&app, Persona::Alice, refund("260.00")).await;
        time_travel(&app, &request["id"]).await;
        let expired = wait_for_status(&app, &request["id"], "EXPIRED").await;
        assert!(expired["decidedAt"].is_string());
        let last = expired["auditTrail"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["action"], "request.expired");
        assert_eq!(last["actor"], "system");
        let late = approve_with(&app, &app.token_for(Persona::Bob), &request["id"]).await;
        assert_eq!(late.error_code(), Some("INVALID_TRANSITION"));
        // The other request, still within its deadline, is untouched.
        assert_eq!(request_as(&app, &app.token_for(Persona::Alice), &other["id"]).await["status"], "PENDING");
    }
}

/// Two replicas sweep the same PostgreSQL database: the request expires exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_expire_a_request_exactly_once_on_postgres() {
    if !crate::helpers::postgres_ready().await {
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let _b = spawn_replica(&a).await;
    let request = submit(&a, Persona::Alice, refund("250.00")).await;
    time_travel(&a, &request["id"]).await;
    let expired = wait_for_status(&a, &request["id"], "EXPIRED").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let trail =
        request_as(&a, &a.token_for(Persona::Alice), &request["id"]).await["auditTrail"].clone();
    let expiries = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "request.expired")
        .count();
    assert_eq!(expiries, 1, "{expired}");
}
