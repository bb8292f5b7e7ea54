//! Exactly-once commands: idempotency keys per actor, and races that must produce one
//! effect.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, spawn_app};
use crate::lifecycle_helpers::*;

fn with_key(mut input: Value, key: &str) -> Value {
    input["idempotencyKey"] = json!(key);
    input
}

backend_tests!(
    the_same_key_twice_replays_without_a_second_effect,
    the_same_key_with_another_input_is_refused,
    another_user_with_the_same_key_is_independent,
    sixteen_concurrent_submits_with_one_key_make_one_request,
    an_approval_with_a_key_replays_instead_of_deciding_twice,
    thirty_two_concurrent_approvals_of_a_one_approval_request_decide_once,
    two_hundred_concurrent_commands_on_distinct_requests_all_succeed
);

async fn the_same_key_twice_replays_without_a_second_effect(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let input = with_key(refund("250.00"), "refund-o-1");
    let first = submit_with(&app, &alice, input.clone()).await;
    let first = &first.expect_ok()["submitRequest"];
    assert_eq!(first["replayed"], false);
    let second = submit_with(&app, &alice, input).await;
    let second = &second.expect_ok()["submitRequest"];
    assert_eq!(second["replayed"], true);
    assert_eq!(second["request"]["id"], first["request"]["id"]);

    let seen = request_as(&app, &alice, &first["request"]["id"]).await;
    assert_eq!(
        seen["auditTrail"].as_array().unwrap().len(),
        1,
        "one audit event"
    );
    let all = app
        .graphql_as(
            Persona::Grace,
            "{ requests { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        all.expect_ok()["requests"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn the_same_key_with_another_input_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    submit_with(&app, &alice, with_key(refund("250.00"), "k-1"))
        .await
        .expect_ok();
    let mut changed = with_key(refund("250.00"), "k-1");
    changed["title"] = json!("Another title");
    let response = submit_with(&app, &alice, changed).await;
    assert_eq!(response.error_code(), Some("IDEMPOTENCY_KEY_REUSED"));
    assert_eq!(
        response.body["errors"][0]["extensions"]["retryable"],
        json!(false)
    );
}

async fn another_user_with_the_same_key_is_independent(backend: Backend) {
    let app = spawn_app(backend).await;
    let input = with_key(refund("250.00"), "shared-key");
    let by_alice = submit(&app, Persona::Alice, input.clone()).await;
    let other = token_as(&app, "sam", &["support"]);
    let by_sam = submit_with(&app, &other, input).await;
    let by_sam = &by_sam.expect_ok()["submitRequest"];
    assert_eq!(by_sam["replayed"], false);
    assert_ne!(by_sam["request"]["id"], by_alice["id"]);
}

async fn sixteen_concurrent_submits_with_one_key_make_one_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let input = with_key(refund("250.00"), "double-click");
    let responses = join_all((0..16).map(|_| submit_with(&app, &alice, input.clone()))).await;
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for response in &responses {
        let payload = &response.expect_ok()["submitRequest"];
        ids.insert(payload["request"]["id"].as_str().unwrap().to_owned());
        if payload["replayed"] == false {
            fresh += 1;
        }
    }
    assert_eq!(ids.len(), 1, "every answer names the same request");
    assert_eq!(fresh, 1, "exactly one answer is not a replay");
    let all = app
        .graphql_as(
            Persona::Grace,
            "{ requests { edges { node { id auditTrail { action } } } } }",
            json!({}),
        )
        .await;
    let edges = all.expect_ok()["requests"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["auditTrail"].as_array().unwrap().len(), 1);
}

async fn an_approval_with_a_key_replays_instead_of_deciding_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, access_grant()).await;
    let dave = app.token_for(Persona::Dave);
    let approve = decide_mutation("approveRequest");
    let input = json!({ "input": { "id": request["id"], "idempotencyKey": "approve-1" } });
    let first = app.graphql(Some(&dave), &approve, input.clone()).await;
    assert_eq!(first.expect_ok()["approveRequest"]["replayed"], false);
    let again = app.graphql(Some(&dave), &approve, input).await;
    let again = &again.expect_ok()["approveRequest"];
    assert_eq!(again["replayed"], true);
    assert_eq!(again["request"]["decisions"].as_array().unwrap().len(), 1);
    assert_eq!(again["request"]["version"], 2);
}

async fn thirty_two_concurrent_approvals_of_a_one_approval_request_decide_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let tokens: Vec<String> = (0..32)
        .map(|i| token_as(&app, &format!("fin{i}"), &["finance"]))
        .collect();
    let responses = join_all(tokens.iter().map(|t| approve_with(&app, t, &request["id"]))).await;
    let mut successes = 0;
    for response in &responses {
        match response.error_code() {
            None => successes += 1,
            Some("CONFLICT") | Some("INVALID_TRANSITION") => {}
            other => panic!("unexpected {other:?}: {}", response.body),
        }
    }
    assert_eq!(successes, 1);
    let seen = request_as(&app, &app.token_for(Persona::Alice), &request["id"]).await;
    assert_eq!(seen["status"], "APPROVED");
    assert_eq!(seen["decisions"].as_array().unwrap().len(), 1);
    let approvals = seen["auditTrail"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "request.approved")
        .count();
    assert_eq!(approvals, 1);
}

async fn two_hundred_concurrent_commands_on_distinct_requests_all_succeed(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let submitted = join_all((0..200).map(|i| {
        let mut input = refund("250.00");
        input["title"] = json!(format!("Refund {i}"));
        submit_with(&app, &alice, input)
    }))
    .await;
    let ids: Vec<Value> = submitted
        .iter()
        .map(|r| r.expect_ok()["submitRequest"]["request"]["id"].clone())
        .collect();
    let bob = app.token_for(Persona::Bob);
    let approved = join_all(ids.iter().map(|id| approve_with(&app, &bob, id))).await;
    for response in &approved {
        assert_eq!(
            response.expect_ok()["approveRequest"]["request"]["status"],
            "APPROVED"
        );
    }
}

backend_tests!(a_new_key_costs_two_statements_its_claim_and_its_completion);

/// A key is claimed by one insert that does nothing if the key exists (not a read, then an
/// insert), and completed by one update: a keyed command runs two statements more than the
/// same command without a key, and its replay answers the same.
async fn a_new_key_costs_two_statements_its_claim_and_its_completion(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    // Warm: the first submit reads the policy versions the next ones find in memory.
    submit_with(&app, &alice, refund("10.00")).await.expect_ok();
    // The fewest of three: a cache refilled now and then adds a statement to a count.
    let (mut without, mut keyed) = (u64::MAX, u64::MAX);
    for n in 0..3 {
        let plain = submit_with(&app, &alice, refund(&format!("1{n}.00"))).await;
        plain.expect_ok();
        without = without.min(plain.statements());
        let input = with_key(refund(&format!("2{n}.00")), &format!("claim-{n}"));
        let with = submit_with(&app, &alice, input).await;
        with.expect_ok();
        keyed = keyed.min(with.statements());
    }
    assert_eq!(
        keyed,
        without + 2,
        "a keyed submit runs its claim and its completion on top of the keyless one"
    );
    let first = submit_with(&app, &alice, with_key(refund("30.00"), "claim-x")).await;
    let replay = submit_with(&app, &alice, with_key(refund("30.00"), "claim-x")).await;
    assert_eq!(replay.expect_ok()["submitRequest"]["replayed"], true);
    assert_eq!(
        replay.expect_ok()["submitRequest"]["request"]["id"],
        first.expect_ok()["submitRequest"]["request"]["id"]
    );
}

backend_tests!(a_key_past_its_retention_is_free_again);

/// After the retention (24 h by default) the same key runs the command anew: the expired
/// row is replaced, not replayed.
async fn a_key_past_its_retention_is_free_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let input = with_key(refund("40.00"), "retained-1");
    let first = submit_with(&app, &alice, input.clone()).await;
    let first = first.expect_ok()["submitRequest"].clone();
    app.clock.advance(chrono::Duration::hours(25));
    let alice = app.token_for(Persona::Alice);
    let again = submit_with(&app, &alice, input.clone()).await;
    let again = again.expect_ok()["submitRequest"].clone();
    assert_eq!(again["replayed"], false, "an expired key is not replayed");
    assert_ne!(again["request"]["id"], first["request"]["id"]);
    // And it is a live key again from now on.
    let replay = submit_with(&app, &alice, input).await;
    let replay = &replay.expect_ok()["submitRequest"];
    assert_eq!(replay["replayed"], true);
    assert_eq!(replay["request"]["id"], again["request"]["id"]);
}
