//! The expiry sweeper: a pending request past its deadline becomes EXPIRED exactly once,
//! audited as `system` and announced to subscribers. Time moves through the app's clock
//! (`TestApp::clock`), never by editing rows.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Persona, TestApp, eventually, spawn_app, spawn_app_with, spawn_replica,
};
use crate::lifecycle_helpers::*;

/// Further than any policy's expiry (at most 366 days).
pub const PAST_EVERY_DEADLINE: chrono::Duration = chrono::Duration::days(367);

async fn wait_for_status(app: &TestApp, id: &Value, status: &str) -> Value {
    let alice = &app.token_for(Persona::Alice);
    eventually(&format!("{id} becomes {status}"), || async move {
        let seen = request_as(app, alice, id).await;
        (seen["status"] == status).then_some(seen)
    })
    .await
}

const QUEUE: &str = "{ myQueue { edges { node { id } } } }";

fn queue_ids(response: &crate::helpers::GraphqlResponse) -> Vec<Value> {
    response.expect_ok()["myQueue"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect()
}

backend_tests!(
    a_pending_request_past_its_deadline_expires_once_as_system,
    an_expired_request_not_yet_swept_is_in_nobodys_queue_and_cannot_be_decided
);

async fn a_pending_request_past_its_deadline_expires_once_as_system(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    app.clock.advance(PAST_EVERY_DEADLINE);
    // Filed after the jump: its deadline is still ahead.
    let other = submit(&app, Persona::Alice, refund("260.00")).await;
    let expired = wait_for_status(&app, &request["id"], "EXPIRED").await;
    assert!(expired["decidedAt"].is_string());
    let last = expired["auditTrail"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "request.expired");
    assert_eq!(last["actor"], "system");
    let late = approve_with(&app, &app.token_for(Persona::Bob), &request["id"]).await;
    assert_eq!(late.error_code(), Some("INVALID_TRANSITION"));
    // The other request, still within its deadline, is untouched.
    assert_eq!(
        request_as(&app, &app.token_for(Persona::Alice), &other["id"]).await["status"],
        "PENDING"
    );
}

async fn an_expired_request_not_yet_swept_is_in_nobodys_queue_and_cannot_be_decided(
    backend: Backend,
) {
    // No sweeper: the request stays PENDING in the database past its deadline.
    let app = spawn_app_with(backend, |config| config.background_jobs = false).await;
    let request = submit(&app, Persona::Alice, refund("5000.00")).await;
    let bob = app.token_for(Persona::Bob);
    assert_eq!(
        queue_ids(&app.graphql(Some(&bob), QUEUE, json!({})).await),
        [request["id"].clone()]
    );

    app.clock.advance(PAST_EVERY_DEADLINE);
    for persona in [Persona::Bob, Persona::Carol, Persona::Grace] {
        let queue = app.graphql_as(persona, QUEUE, json!({})).await;
        assert!(queue_ids(&queue).is_empty(), "{persona:?}: {}", queue.body);
    }
    let seen = app.graphql(Some(&bob), "query($id: ID!) { request(id: $id) { status viewerCanApprove eligibleApprovers { users { subject } } } }", json!({ "id": request["id"] })).await;
    let seen = &seen.expect_ok()["request"];
    assert_eq!(seen["status"], "PENDING", "not swept");
    assert_eq!(seen["viewerCanApprove"], false);
    assert_eq!(seen["eligibleApprovers"]["users"], json!([]));
    let late = approve_with(&app, &bob, &request["id"]).await;
    assert_eq!(late.error_code(), Some("INVALID_TRANSITION"));
}

postgres_tests!(two_replicas_expire_a_request_exactly_once_on_postgres);

/// Two replicas sweep the same PostgreSQL database: the request expires exactly once.
async fn two_replicas_expire_a_request_exactly_once_on_postgres() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_replica(&a).await;
    let request = submit(&a, Persona::Alice, refund("250.00")).await;
    a.clock.advance(PAST_EVERY_DEADLINE);
    let expired = wait_for_status(&a, &request["id"], "EXPIRED").await;
    // Both replicas have swept since: a second expiry would be there by now.
    a.job_rounds_pass("expiry").await;
    b.job_rounds_pass("expiry").await;
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

backend_tests!(a_policy_with_a_two_second_expiry_expires_its_request_and_announces_it);

async fn a_policy_with_a_two_second_expiry_expires_its_request_and_announces_it(backend: Backend) {
    // The default sweep (one second), not the tests' faster one: what production does.
    let app = spawn_app_with(backend, |config| {
        config.expiry_sweep = countersign::config::DEFAULT_EXPIRY_SWEEP;
    })
    .await;
    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { expiresAfterSeconds } } }";
    let saved = app.graphql_as(Persona::Grace, upsert, json!({ "input": {
        "key": "refund", "name": "Refund", "expiresAfterSeconds": 2,
        "stages": [{ "name": "Finance review", "approverRoles": ["finance"], "requiredApprovals": 1 }],
    }})).await;
    assert_eq!(
        saved.expect_ok()["upsertPolicy"]["policy"]["expiresAfterSeconds"],
        2
    );
    let mut frank = crate::subscriptions::subscribe(
        &app,
        &app.token_for(Persona::Frank),
        Some("0"),
        json!(null),
    )
    .await;
    let request = submit(&app, Persona::Alice, refund("20.00")).await;
    let filed = std::time::Instant::now();

    let pushed = loop {
        let event = crate::subscriptions::next_event(&mut frank, crate::subscriptions::WITHIN)
            .await
            .expect("the expiry is pushed");
        if event["kind"] == "EXPIRED" {
            break event;
        }
    };
    assert_eq!(pushed["request"]["id"], request["id"]);
    assert_eq!(pushed["actor"]["subject"], "system");
    // Two seconds, plus at most one sweep, plus a busy machine's slack.
    assert!(
        filed.elapsed() < Duration::from_secs(8),
        "expired after {:?}",
        filed.elapsed()
    );
    let seen = request_as(&app, &app.token_for(Persona::Alice), &request["id"]).await;
    assert_eq!(seen["status"], "EXPIRED");
    let trail = seen["auditTrail"].as_array().unwrap();
    assert_eq!(trail.last().unwrap()["action"], "request.expired");
    let late = approve_with(&app, &app.token_for(Persona::Bob), &request["id"]).await;
    assert_eq!(late.error_code(), Some("INVALID_TRANSITION"));
}

backend_tests!(the_overview_names_requests_near_their_deadline_and_counts_what_expired);

async fn the_overview_names_requests_near_their_deadline_and_counts_what_expired(backend: Backend) {
    let app = spawn_app(backend).await;
    let old = submit(&app, Persona::Alice, refund("40.00")).await;
    let times = app
        .graphql_as(
            Persona::Alice,
            "query($id: ID!) { request(id: $id) { createdAt expiresAt } }",
            json!({ "id": old["id"] }),
        )
        .await;
    let times = &times.expect_ok()["request"];
    let at =
        |field: &str| chrono::DateTime::parse_from_rfc3339(times[field].as_str().unwrap()).unwrap();
    let lifetime = at("expiresAt") - at("createdAt");
    let overview = "{ operationsOverview { expiredLast24h queues { policy pending nearDeadline oldestPendingAgeSeconds } nearDeadline { requestId policy secondsLeft } auditChainHead { sequence } } }";
    // 95 % of the way to its deadline: in the last tenth.
    app.clock.advance(lifetime * 95 / 100);
    let fresh = submit(&app, Persona::Alice, refund("41.00")).await;
    let seen = app.graphql_as(Persona::Frank, overview, json!({})).await;
    let seen = &seen.expect_ok()["operationsOverview"];
    assert_eq!(seen["queues"][0]["policy"], "refund");
    assert_eq!(seen["queues"][0]["pending"], 2);
    assert_eq!(seen["queues"][0]["nearDeadline"], 1, "{seen}");
    assert!(
        seen["queues"][0]["oldestPendingAgeSeconds"]
            .as_i64()
            .unwrap()
            >= lifetime.num_seconds() * 94 / 100
    );
    assert_eq!(seen["nearDeadline"][0]["requestId"], old["id"]);
    assert_ne!(seen["nearDeadline"][0]["requestId"], fresh["id"]);
    assert!(seen["auditChainHead"]["sequence"].as_i64().unwrap() >= 2);
    assert_eq!(seen["expiredLast24h"], 0);

    app.clock.advance(lifetime / 10);
    wait_for_status(&app, &old["id"], "EXPIRED").await;
    let seen = app.graphql_as(Persona::Grace, overview, json!({})).await;
    let seen = &seen.expect_ok()["operationsOverview"];
    assert_eq!(seen["expiredLast24h"], 1);
    assert_eq!(seen["queues"][0]["pending"], 1);
}
