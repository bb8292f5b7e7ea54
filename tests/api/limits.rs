//! Limits that protect the service from one caller: a rate per subject (HTTP and
//! WebSocket operations together), a rate per address for callers without a valid token,
//! a cap on one subject's sockets, and a timeout per operation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, eventually, spawn_app_with, spawn_replica};
use crate::lifecycle_helpers::*;
use crate::websocket::{CLOSES_WITHIN, close_code, connect, connect_as, receive, send};

const VIEWER: &str = "{ viewer { subject } }";

/// POSTs `VIEWER` with `authorization`; the status, `Retry-After` and the error code
/// (checking that a RATE_LIMITED body says the header's wait as `extensions.retryAfter`).
async fn post(
    app: &TestApp,
    authorization: Option<String>,
) -> (u16, Option<String>, Option<String>) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": VIEWER }));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.expect("a JSON body");
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned);
    if code.as_deref() == Some("RATE_LIMITED") {
        let said = body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .map(|s| s.to_string());
        assert_eq!(said, retry_after, "the body says the header's wait: {body}");
    }
    (status, retry_after, code)
}

backend_tests!(
    a_subjects_excess_gets_429_and_rate_limited_while_others_are_unaffected,
    callers_without_a_valid_token_are_limited_by_address,
    websocket_subscribes_count_against_the_rate_and_sockets_are_capped,
    an_operation_past_the_timeout_is_stopped_with_timeout_and_nothing_half_written
);

async fn a_subjects_excess_gets_429_and_rate_limited_while_others_are_unaffected(backend: Backend) {
    // The shipped defaults (20 a second, bursts of 40), not the tests' lifted ones.
    let app = spawn_app_with(backend, |config| {
        config.limits = countersign::config::LimitsConfig::defaults(config.environment);
    })
    .await;
    let alice = format!("Bearer {}", app.token_for(Persona::Alice));
    let answers =
        futures_util::future::join_all((0..100).map(|_| post(&app, Some(alice.clone())))).await;
    let ok = answers.iter().filter(|(status, ..)| *status == 200).count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    assert_eq!(ok + limited.len(), 100, "{answers:?}");
    assert!(
        (40..=60).contains(&ok),
        "the burst and what refilled meanwhile: {ok}"
    );
    for (_, retry_after, code) in &limited {
        assert_eq!(code.as_deref(), Some("RATE_LIMITED"));
        assert!(
            retry_after
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s >= 1)
        );
    }
    // Bob has his own allowance.
    let bob = format!("Bearer {}", app.token_for(Persona::Bob));
    for _ in 0..10 {
        assert_eq!(post(&app, Some(bob.clone())).await.0, 200);
    }
    let rejected = app
        .metric("countersign_rate_limited_total", &["scope=\"subject\""])
        .await
        .unwrap_or(0.0);
    assert_eq!(rejected as usize, limited.len());
    // Nothing ran for the refused ones, so nothing was audited for them.
    let audit = app
        .graphql_as(
            Persona::Frank,
            "{ auditEvents(first: 100) { edges { node { action } } } }",
            json!({}),
        )
        .await;
    assert!(!audit.body.to_string().contains("denied"), "{}", audit.body);
}

async fn callers_without_a_valid_token_are_limited_by_address(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.limits.anonymous_rate_per_second = 5
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(post(&app, Some("Bearer not-a-token".into())).await.0);
    }
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "guessing tokens is slowed down: {statuses:?}"
    );
    let anonymous = post(&app, None).await;
    assert_eq!(anonymous.0, 429, "the same address, now without a token");
    // A signed-in caller from the same address is judged by their own allowance.
    assert_eq!(
        post(
            &app,
            Some(format!("Bearer {}", app.token_for(Persona::Bob)))
        )
        .await
        .0,
        200
    );
    assert!(
        app.metric("countersign_rate_limited_total", &["scope=\"address\""])
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
}

async fn websocket_subscribes_count_against_the_rate_and_sockets_are_capped(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.limits.rate_per_second = 1;
        config.limits.burst = 2;
        config.limits.max_connections_per_subject = 2;
    })
    .await;
    let token = app.token_for(Persona::Bob);
    let mut socket = connect_as(&app, &token).await;
    for id in ["a", "b", "c"] {
        send(
            &mut socket,
            json!({ "id": id, "type": "subscribe", "payload": { "query": VIEWER } }),
        )
        .await;
    }
    let mut limited = None;
    for _ in 0..8 {
        let message = receive(&mut socket).await.expect("a message");
        if message["type"] == "error" {
            limited = Some(message);
            break;
        }
    }
    let limited = limited.expect("the third subscribe is refused");
    assert_eq!(limited["id"], "c");
    assert_eq!(limited["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    assert!(
        limited["payload"][0]["extensions"]["retryAfter"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{limited}"
    );

    let _second = connect_as(&app, &token).await;
    let mut third = connect(&app, "graphql-transport-ws").await;
    send(&mut third, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    assert_eq!(close_code(&mut third, CLOSES_WITHIN).await, Some(4430));
    // Closing one makes room again.
    drop(socket);
    // The server counts a socket until it has given its slot back.
    eventually("the closed socket is no longer counted", || async {
        (app.metric("countersign_websocket_connections", &[]).await == Some(1.0)).then_some(())
    })
    .await;
    let mut again = connect(&app, "graphql-transport-ws").await;
    send(&mut again, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    let answer = receive(&mut again).await;
    assert_eq!(
        answer.map(|m| m["type"].clone()),
        Some(json!("connection_ack")),
        "a closed socket gives its slot back"
    );
}

async fn an_operation_past_the_timeout_is_stopped_with_timeout_and_nothing_half_written(
    backend: Backend,
) {
    // A millisecond is shorter than any command's transaction on this machine.
    let app = spawn_app_with(backend, |config| {
        config.limits.request_timeout = Duration::from_millis(1);
    })
    .await;
    let alice = app.token_for(Persona::Alice);
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("Authorization", format!("Bearer {alice}"))
        .json(
            &json!({ "query": submit_mutation(), "variables": { "input": {
            "idempotencyKey": "slow-1", "policy": "refund", "title": "Refund", "amount": "12.00",
            "currency": "EUR", "payload": { "orderId": "o-1" } } } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryable"], true);

    // Another replica, without the tiny limit: the command either committed whole or
    // left nothing, and the log still verifies. The stopped command's COMMIT may still be
    // landing, so the two reads are taken again until they agree; a half-written command
    // would never agree.
    let replica = spawn_replica(&app).await;
    let both = "{ requests { edges { node { id } } } auditEvents(filter: { action: \"request.submitted\" }) { edges { node { id } } } verifyAuditChain { ok } }";
    let (stored, verified) = eventually("requests and their audit events agree", || async {
        let answer = replica.graphql_as(Persona::Grace, both, json!({})).await;
        let data = answer.expect_ok();
        let stored = data["requests"]["edges"].as_array().unwrap().len();
        let audited = data["auditEvents"]["edges"].as_array().unwrap().len();
        (stored == audited).then(|| (stored, data["verifyAuditChain"]["ok"].clone()))
    })
    .await;
    assert_eq!(verified, true);
    assert!(stored <= 1);
}
