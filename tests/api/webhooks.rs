//! Webhooks through the outbox: signed, retried with backoff, dead-lettered after N
//! attempts, replayable, delivered once per event however many replicas relay, and never
//! to an internal address when the rules forbid it. The receivers are real HTTP servers
//! started by the test.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use countersign::webhooks::signature;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Persona, TestApp, eventually, spawn_app, spawn_app_with, spawn_replica_with,
};
use crate::lifecycle_helpers::*;

const SECRET: &str = "whsec_test_0123456789abcdef";
const CREATE: &str = "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhook { id url events enabled } } }";
const DELIVERIES: &str = "query($filter: WebhookDeliveryFilter) { webhookDeliveries(filter: $filter, first: 100) {
    edges { node { id webhookId eventId kind status attempts lastStatus lastError nextAttemptAt deliveredAt deadLetteredAt } } } }";

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    headers: HeaderMap,
    body: String,
    at: std::time::Instant,
}

#[derive(Clone, Default)]
struct Script {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Statuses for the first calls, in order; 200 after them unless `failing`. A 429
    /// comes with `Retry-After: 1`.
    statuses: Arc<Mutex<Vec<u16>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Answer this late (a receiver that hangs).
    delay: Arc<Mutex<Duration>>,
}

struct Receiver {
    url: String,
    script: Script,
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.script.hits.lock().unwrap().clone()
    }

    fn fail_always(&self, on: bool) {
        self.script
            .failing
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn receive(
    State(script): State<Script>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    script.hits.lock().unwrap().push(Hit {
        headers,
        body,
        at: std::time::Instant::now(),
    });
    let delay = *script.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let scripted = {
        let mut statuses = script.statuses.lock().unwrap();
        (!statuses.is_empty()).then(|| statuses.remove(0))
    };
    let status = match scripted {
        Some(status) => status,
        None if script.failing.load(std::sync::atomic::Ordering::SeqCst) => 500,
        None => 200,
    };
    let status = StatusCode::from_u16(status).unwrap();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [("retry-after", "1")]).into_response();
    }
    status.into_response()
}

/// A receiver on 127.0.0.1 answering `statuses` first, then 200.
async fn receiver(statuses: &[u16]) -> Receiver {
    let script = Script::default();
    *script.statuses.lock().unwrap() = statuses.to_vec();
    let router = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://localhost:{}/hook",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    Receiver { url, script }
}

async fn create_webhook(app: &TestApp, url: &str, events: Value) -> Value {
    let created = app
        .graphql_as(
            Persona::Grace,
            CREATE,
            json!({ "input": {
                "url": url, "events": events, "secret": SECRET,
            }}),
        )
        .await;
    created.expect_ok()["createWebhook"]["webhook"].clone()
}

async fn deliveries(app: &TestApp, filter: Value) -> Vec<Value> {
    let listed = app
        .graphql_as(Persona::Frank, DELIVERIES, json!({ "filter": filter }))
        .await;
    listed.expect_ok()["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// Polls until `done` holds of the deliveries, or panics with the last ones seen.
async fn wait_for(app: &TestApp, filter: Value, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let (filter, done) = (&filter, &done);
    eventually("the deliveries get there", || async move {
        let seen = deliveries(app, filter.clone()).await;
        done(&seen).then_some(seen)
    })
    .await
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn signed(hit: &Hit) -> bool {
    let timestamp: i64 = header(hit, "countersign-timestamp")
        .parse()
        .unwrap_or_default();
    signature::verify(
        SECRET,
        timestamp,
        hit.body.as_bytes(),
        header(hit, "countersign-signature"),
    )
}

backend_tests!(
    a_receiver_failing_three_times_gets_four_signed_deliveries_of_one_event,
    a_receiver_that_always_fails_is_dead_lettered_and_a_replay_delivers_it,
    webhooks_are_managed_by_admins_audited_without_their_secret_and_validated,
    internal_addresses_are_refused_when_saved_and_when_delivered
);

async fn a_receiver_failing_three_times_gets_four_signed_deliveries_of_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = receiver(&[500, 500, 500]).await;
    let webhook = create_webhook(&app, &hook.url, json!(["SUBMITTED"])).await;
    assert_eq!(webhook["events"], json!(["SUBMITTED"]));
    let request = submit(&app, Persona::Alice, refund("75.00")).await;

    let done = wait_for(&app, json!({ "status": "DELIVERED" }), |d| d.len() == 1).await;
    assert_eq!(done[0]["attempts"], 4);
    assert_eq!(done[0]["lastStatus"], 200);
    assert_eq!(done[0]["webhookId"], webhook["id"]);
    assert!(done[0]["nextAttemptAt"].is_null());
    // Nothing more arrives once it is delivered: the relay has run since, and sent nothing.
    app.job_rounds_pass("webhooks").await;
    let hits = hook.hits();
    assert_eq!(hits.len(), 4, "{hits:#?}");
    let ids: HashSet<&str> = hits
        .iter()
        .map(|h| header(h, "countersign-event-id"))
        .collect();
    assert_eq!(ids.len(), 1, "one event id on every attempt");
    assert_eq!(
        ids.into_iter().next().unwrap(),
        done[0]["eventId"].as_str().unwrap()
    );
    for (n, hit) in hits.iter().enumerate() {
        assert!(signed(hit), "attempt {} carries a valid signature", n + 1);
        assert_eq!(
            header(hit, "countersign-delivery-attempt"),
            (n + 1).to_string()
        );
        assert_eq!(hit.body, hits[0].body, "the same body every time");
    }
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["kind"], "SUBMITTED");
    assert_eq!(body["request"]["id"], request["id"]);
    assert_eq!(body["actor"], "alice");
    assert_eq!(
        app.metric(
            "countersign_webhook_attempts_total",
            &["outcome=\"failed\""]
        )
        .await
        .unwrap_or(0.0),
        3.0
    );
    assert_eq!(
        app.metric(
            "countersign_webhook_attempts_total",
            &["outcome=\"delivered\""]
        )
        .await
        .unwrap_or(0.0),
        1.0
    );
}

async fn a_receiver_that_always_fails_is_dead_lettered_and_a_replay_delivers_it(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.webhooks.max_attempts = 3).await;
    let hook = receiver(&[]).await;
    hook.fail_always(true);
    create_webhook(&app, &hook.url, json!(["SUBMITTED", "APPROVED"])).await;
    submit(&app, Persona::Alice, refund("80.00")).await;

    let dead = wait_for(&app, json!({ "status": "DEAD" }), |d| d.len() == 1).await;
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["lastStatus"], 500);
    assert!(
        dead[0]["lastError"].as_str().unwrap().contains("500"),
        "{}",
        dead[0]
    );
    assert!(dead[0]["deadLetteredAt"].is_string());
    assert_eq!(hook.hits().len(), 3);
    assert_eq!(
        app.metric(
            "countersign_webhook_attempts_total",
            &["outcome=\"dead_lettered\""]
        )
        .await
        .unwrap_or(0.0),
        1.0
    );
    assert_eq!(
        app.metric("countersign_webhook_dead_letters", &[])
            .await
            .unwrap_or(0.0),
        1.0
    );
    let overview = app.graphql_as(Persona::Frank, "{ operationsOverview { webhooks { pending deadLetters undispatched } queues { policy pending } } }", json!({})).await;
    let overview = &overview.expect_ok()["operationsOverview"];
    assert_eq!(
        overview["webhooks"],
        json!({ "pending": 0, "deadLetters": 1, "undispatched": 0 })
    );
    assert_eq!(
        overview["queues"],
        json!([{ "policy": "refund", "pending": 1 }])
    );
    let clerk = app
        .graphql_as(
            Persona::Alice,
            "{ operationsOverview { expiredLast24h } }",
            json!({}),
        )
        .await;
    assert_eq!(clerk.error_code(), Some("FORBIDDEN"));

    let replay = "mutation($input: ReplayWebhookDeliveryInput!) { replayWebhookDelivery(input: $input) { delivery { status attempts } } }";
    let input = json!({ "input": { "id": dead[0]["id"] } });
    let refused = app.graphql_as(Persona::Frank, replay, input.clone()).await;
    assert_eq!(
        refused.error_code(),
        Some("FORBIDDEN"),
        "auditors look, admins act: {}",
        refused.body
    );
    hook.fail_always(false);
    let replayed = app.graphql_as(Persona::Grace, replay, input).await;
    assert_eq!(
        replayed.expect_ok()["replayWebhookDelivery"]["delivery"]["status"],
        "PENDING"
    );
    let done = wait_for(&app, json!({ "status": "DELIVERED" }), |d| d.len() == 1).await;
    assert_eq!(done[0]["id"], dead[0]["id"]);
    assert_eq!(done[0]["attempts"], 1);
    let hits = hook.hits();
    assert_eq!(hits.len(), 4);
    assert!(hits.iter().all(signed));
    assert_eq!(
        header(&hits[3], "countersign-event-id"),
        header(&hits[0], "countersign-event-id")
    );

    let audit = app.graphql_as(Persona::Frank, "{ auditEvents(filter: { action: \"webhook.delivery.replayed\" }) { edges { node { actor subjectId } } } }", json!({})).await;
    let audit = audit.expect_ok()["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["node"]["actor"], "grace");
    assert_eq!(audit[0]["node"]["subjectId"], dead[0]["id"]);
}

async fn webhooks_are_managed_by_admins_audited_without_their_secret_and_validated(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let hook = receiver(&[]).await;
    let input = |url: &str, events: Value, secret: &str| json!({ "input": { "url": url, "events": events, "secret": secret } });
    let refused = app
        .graphql_as(
            Persona::Alice,
            CREATE,
            input(&hook.url, json!(["APPROVED"]), SECRET),
        )
        .await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    let auditor = app
        .graphql_as(
            Persona::Frank,
            CREATE,
            input(&hook.url, json!(["APPROVED"]), SECRET),
        )
        .await;
    assert_eq!(auditor.error_code(), Some("FORBIDDEN"));
    for (bad, field) in [
        (
            input("ftp://example.com/x", json!(["APPROVED"]), SECRET),
            "url",
        ),
        (input("not a url", json!(["APPROVED"]), SECRET), "url"),
        (input(&hook.url, json!([]), SECRET), "events"),
        (input(&hook.url, json!(["APPROVED"]), "short"), "secret"),
    ] {
        let answer = app.graphql_as(Persona::Grace, CREATE, bad).await;
        assert_eq!(
            answer.error_code(),
            Some("BAD_USER_INPUT"),
            "{}",
            answer.body
        );
        assert_eq!(answer.body["errors"][0]["extensions"]["field"], field);
    }
    let webhook = create_webhook(&app, &hook.url, json!(["APPROVED"])).await;
    let listed = app
        .graphql_as(
            Persona::Frank,
            "{ webhooks { id url events enabled } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.expect_ok()["webhooks"], json!([webhook]));
    let audit = app.graphql_as(Persona::Frank, "{ auditEvents(filter: { subjectType: \"webhook\" }) { edges { node { action actor after } } } }", json!({})).await;
    let text = audit.body.to_string();
    assert!(text.contains("webhook.created"), "{text}");
    assert!(
        !text.contains(SECRET),
        "the secret stays out of the audit log"
    );

    let disable = "mutation($input: DisableWebhookInput!) { disableWebhook(input: $input) { webhook { enabled disabledAt } } }";
    let disabled = app
        .graphql_as(
            Persona::Grace,
            disable,
            json!({ "input": { "id": webhook["id"], "reason": "receiver retired" } }),
        )
        .await;
    assert_eq!(
        disabled.expect_ok()["disableWebhook"]["webhook"]["enabled"],
        false
    );
    // An approval after that is delivered nowhere.
    let request = submit(&app, Persona::Alice, refund("30.00")).await;
    approve_with(&app, &app.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    app.job_rounds_pass("webhooks").await;
    assert!(hook.hits().is_empty());
    assert!(deliveries(&app, json!(null)).await.is_empty());
}

async fn internal_addresses_are_refused_when_saved_and_when_delivered(backend: Backend) {
    // A permissive replica (development rules) saves a URL on localhost and relays
    // nothing; a strict one relays, and refuses to connect there.
    let app = spawn_app_with(backend, |config| config.background_jobs = false).await;
    let strict = spawn_replica_with(&app, |config| config.webhooks.allow_private = false).await;
    let hook = receiver(&[]).await;
    let refused = strict.graphql_as(Persona::Grace, CREATE, json!({ "input": {
        "url": hook.url.replace("localhost", "127.0.0.1"), "events": ["SUBMITTED"], "secret": SECRET,
    }})).await;
    assert_eq!(
        refused.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        refused.body
    );
    let by_name = strict
        .graphql_as(
            Persona::Grace,
            CREATE,
            json!({ "input": {
                "url": hook.url, "events": ["SUBMITTED"], "secret": SECRET,
            }}),
        )
        .await;
    assert_eq!(
        by_name.error_code(),
        Some("BAD_USER_INPUT"),
        "localhost resolves to loopback"
    );

    create_webhook(&app, &hook.url, json!(["SUBMITTED"])).await;
    submit(&app, Persona::Alice, refund("40.00")).await;
    let failing = wait_for(&strict, json!(null), |d| {
        d.len() == 1 && d[0]["attempts"].as_i64() >= Some(1) && d[0]["lastError"].is_string()
    })
    .await;
    let error = failing[0]["lastError"].as_str().unwrap();
    assert!(error.contains("loopback"), "{error}");
    // Auditors read lastError: the kind of address, never the address itself.
    for address in ["127.0.0.1", "::1"] {
        assert!(!error.contains(address), "{error}");
    }
    assert!(failing[0]["lastStatus"].is_null());
    assert!(
        hook.hits().is_empty(),
        "nothing reached the internal receiver"
    );
}

postgres_tests!(two_replicas_relaying_one_postgres_deliver_each_event_once);

/// Two replicas relay one PostgreSQL database: every event reaches the receiver once.
async fn two_replicas_relaying_one_postgres_deliver_each_event_once() {
    let app = spawn_app(Backend::Postgres).await;
    let other = crate::helpers::spawn_replica(&app).await;
    let hook = receiver(&[]).await;
    create_webhook(&app, &hook.url, json!(["SUBMITTED"])).await;
    let alice = app.token_for(Persona::Alice);
    let mut filed = Vec::new();
    for n in 0..30 {
        let on = if n % 2 == 0 { &app } else { &other };
        let response = submit_with(on, &alice, refund(&format!("{}.00", 10 + n))).await;
        filed.push(response.expect_ok()["submitRequest"]["request"]["id"].clone());
    }
    wait_for(&app, json!({ "status": "DELIVERED" }), |d| d.len() == 30).await;
    // Both relays have run since: a second POST of any event would have been made.
    app.job_rounds_pass("webhooks").await;
    other.job_rounds_pass("webhooks").await;
    let hits = hook.hits();
    let ids: HashSet<&str> = hits
        .iter()
        .map(|h| header(h, "countersign-event-id"))
        .collect();
    assert_eq!(hits.len(), 30, "one POST per event");
    assert_eq!(ids.len(), 30);
    let requests: HashSet<String> = hits
        .iter()
        .map(|h| {
            let body: Value = serde_json::from_str(&h.body).unwrap();
            body["request"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(requests.len(), filed.len());
}

backend_tests!(
    the_purge_removes_expired_idempotency_keys_and_old_delivered_events_but_keeps_dead_letters
);

async fn the_purge_removes_expired_idempotency_keys_and_old_delivered_events_but_keeps_dead_letters(
    backend: Backend,
) {
    // This replica purges only at start-up (then hourly), so what it sees before a
    // purge stays put; a second replica, started later, purges.
    let app = spawn_app_with(backend, |config| {
        config.jobs.purge_every = Duration::from_secs(3600);
        config.webhooks.max_attempts = 1;
    })
    .await;
    let good = receiver(&[]).await;
    let bad = receiver(&[]).await;
    bad.fail_always(true);
    create_webhook(&app, &good.url, json!(["SUBMITTED"])).await;
    create_webhook(&app, &bad.url, json!(["SUBMITTED"])).await;
    let mut input = refund("15.00");
    input["idempotencyKey"] = json!("purge-me");
    submit(&app, Persona::Alice, input).await;
    wait_for(&app, json!(null), |d| {
        d.len() == 2 && d.iter().all(|d| d["status"] != "PENDING")
    })
    .await;

    // Past the key's replay window and the outbox retention (7 days by default).
    app.clock.advance(chrono::Duration::days(8));
    assert_eq!(
        app.metric("countersign_idempotency_keys_expired", &[])
            .await
            .unwrap_or(0.0),
        1.0
    );
    assert_eq!(deliveries(&app, json!(null)).await.len(), 2);

    let _purger = spawn_replica_with(&app, |config| {
        config.jobs.purge_every = Duration::from_millis(100)
    })
    .await;
    let left = wait_for(&app, json!(null), |d| d.len() == 1).await;
    assert_eq!(
        left[0]["status"], "DEAD",
        "a dead letter stays until replayed"
    );
    eventually("the expired idempotency key is purged", || async {
        let expired = app
            .metric("countersign_idempotency_keys_expired", &[])
            .await;
        (expired.unwrap_or(0.0) == 0.0).then_some(())
    })
    .await;
}

backend_tests!(
    a_receivers_retry_after_is_honoured_and_a_hanging_one_times_out,
    only_admins_get_a_url_resolved
);

async fn a_receivers_retry_after_is_honoured_and_a_hanging_one_times_out(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.webhooks.backoff_max = Duration::from_secs(5);
        config.webhooks.timeout = Duration::from_millis(300);
        config.webhooks.max_attempts = 2;
    })
    .await;
    let busy = receiver(&[429]).await;
    let hanging = receiver(&[]).await;
    *hanging.script.delay.lock().unwrap() = Duration::from_secs(3);
    create_webhook(&app, &busy.url, json!(["SUBMITTED"])).await;
    let slow = create_webhook(&app, &hanging.url, json!(["SUBMITTED"])).await;
    submit(&app, Persona::Alice, refund("33.00")).await;

    wait_for(&app, json!({ "status": "DELIVERED" }), |d| d.len() == 1).await;
    let hits = busy.hits();
    assert_eq!(hits.len(), 2);
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 waited only {waited:?}"
    );

    let dead = wait_for(
        &app,
        json!({ "status": "DEAD", "endpoint": slow["id"] }),
        |d| d.len() == 1,
    )
    .await;
    assert_eq!(dead[0]["attempts"], 2);
    assert!(
        dead[0]["lastError"].as_str().unwrap().contains("timed out"),
        "{}",
        dead[0]
    );
    assert!(dead[0]["lastStatus"].is_null());
}

async fn only_admins_get_a_url_resolved(backend: Backend) {
    // A strict replica resolves names when an admin saves a URL; for anyone else it
    // refuses before any lookup, and records the refusal.
    let app = spawn_app_with(backend, |config| config.webhooks.allow_private = false).await;
    let input = json!({ "input": { "url": "http://localhost:9/hook", "events": ["SUBMITTED"], "secret": SECRET } });
    let stranger = app.graphql_as(Persona::Alice, CREATE, input.clone()).await;
    assert_eq!(
        stranger.error_code(),
        Some("FORBIDDEN"),
        "{}",
        stranger.body
    );
    assert!(
        !stranger.body.to_string().contains("loopback"),
        "{}",
        stranger.body
    );
    let admin = app.graphql_as(Persona::Grace, CREATE, input).await;
    assert_eq!(admin.error_code(), Some("BAD_USER_INPUT"));
    let text = admin.body.to_string();
    assert!(
        text.contains("loopback") && !text.contains("127.0.0.1"),
        "the reason, not the address: {text}"
    );
    let denied = app.graphql_as(Persona::Frank, "{ auditEvents(filter: { action: \"webhook.create.denied\" }) { edges { node { actor } } } }", json!({})).await;
    assert_eq!(
        denied.expect_ok()["auditEvents"]["edges"][0]["node"]["actor"],
        "alice"
    );
}
