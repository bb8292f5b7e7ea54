//! One rule for who may see and who may decide, everywhere it applies: `request`,
//! `requests`, `myQueue`, `viewerCanApprove`, the commands — and their replays.

use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, spawn_app};
use crate::lifecycle_helpers::*;

const REVOKE: &str =
    "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role } }";
const NODE: &str = "id title payload auditTrail { action }";

async fn ids(app: &TestApp, token: &str, query: &str, field: &str) -> Vec<Value> {
    let response = app.graphql(Some(token), query, json!({})).await;
    response.expect_ok()[field]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect()
}

/// A little of everything: pending at each stage, decided, cancelled, several policies.
async fn mixed_requests(app: &TestApp) -> Vec<Value> {
    let bob = app.token_for(Persona::Bob);
    let mut all = Vec::new();
    for amount in ["250.00", "5000.00", "7000.00", "90.00"] {
        all.push(submit(app, Persona::Alice, refund(amount)).await["id"].clone());
    }
    approve_with(app, &bob, &all[1]).await.expect_ok(); // now at the lead stage
    approve_with(app, &bob, &all[3]).await.expect_ok(); // approved
    all.push(submit(app, Persona::Alice, access_grant()).await["id"].clone());
    let erin = token_as(app, "erin", &["support", "finance"]);
    let own = submit_with(app, &erin, refund("300.00")).await;
    all.push(own.expect_ok()["submitRequest"]["request"]["id"].clone());
    all
}

backend_tests!(
    a_stage_approver_without_request_view_sees_in_my_queue_exactly_what_request_shows,
    a_replay_after_losing_request_view_still_answers_the_decider,
    visibility_agrees_between_the_list_and_a_single_request,
    my_queue_agrees_with_viewer_can_approve,
    viewer_can_cancel_agrees_with_cancel_request
);

async fn a_stage_approver_without_request_view_sees_in_my_queue_exactly_what_request_shows(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let pending = submit(&app, Persona::Alice, refund("250.00")).await;
    let bob = app.token_for(Persona::Bob);
    let one = format!("query($id: ID!) {{ request(id: $id) {{ {NODE} }} }}");
    let queue = format!("{{ myQueue {{ edges {{ node {{ {NODE} }} }} }} }}");

    let seen = app
        .graphql(Some(&bob), &one, json!({ "id": pending["id"] }))
        .await;
    let in_queue = app.graphql(Some(&bob), &queue, json!({})).await;
    assert_eq!(
        in_queue.expect_ok()["myQueue"]["edges"][0]["node"],
        seen.expect_ok()["request"]
    );

    app.graphql_as(
        Persona::Grace,
        REVOKE,
        json!({ "input": { "role": "finance", "action": "REQUEST_VIEW", "policy": "refund" } }),
    )
    .await
    .expect_ok();
    // Bob still holds the finance stage role, but may no longer see refunds.
    let seen = app
        .graphql(Some(&bob), &one, json!({ "id": pending["id"] }))
        .await;
    assert_eq!(seen.expect_ok()["request"], Value::Null);
    let in_queue = app.graphql(Some(&bob), &queue, json!({})).await;
    assert_eq!(
        in_queue.expect_ok()["myQueue"]["edges"],
        json!([]),
        "no payload or trail through myQueue either"
    );
    let approve = approve_with(&app, &bob, &pending["id"]).await;
    assert_eq!(approve.error_code(), Some("NOT_FOUND"));
}

async fn a_replay_after_losing_request_view_still_answers_the_decider(backend: Backend) {
    // A decider keeps read-only sight of what they decided (issue 24, item 8); anyone
    // else who lost the grant is told what a stranger is told.
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("5000.00")).await;
    let bob = app.token_for(Persona::Bob);
    let approve = json!({ "input": { "id": request["id"], "comment": "ok", "idempotencyKey": "bob-approves-1" } });
    let first = app
        .graphql(
            Some(&bob),
            &decide_mutation("approveRequest"),
            approve.clone(),
        )
        .await;
    assert_eq!(first.expect_ok()["approveRequest"]["replayed"], false);

    app.graphql_as(
        Persona::Grace,
        REVOKE,
        json!({ "input": { "role": "finance", "action": "REQUEST_VIEW", "policy": "refund" } }),
    )
    .await
    .expect_ok();
    let replay = app
        .graphql(Some(&bob), &decide_mutation("approveRequest"), approve)
        .await;
    assert_eq!(
        replay.expect_ok()["approveRequest"]["replayed"],
        true,
        "{}",
        replay.body
    );
    assert_eq!(
        replay.expect_ok()["approveRequest"]["request"]["id"],
        request["id"]
    );

    let erin = token_as(&app, "erin", &["finance"]);
    let stranger = app
        .graphql(
            Some(&erin),
            &decide_mutation("approveRequest"),
            json!({ "input": { "id": request["id"], "comment": "ok" } }),
        )
        .await;
    assert_eq!(
        stranger.error_code(),
        Some("NOT_FOUND"),
        "{}",
        stranger.body
    );
    assert_eq!(stranger.body["data"], Value::Null);
    let text = stranger.body.to_string();
    assert!(
        !text.contains("5000") && !text.contains("Refund"),
        "nothing of the request leaks: {text}"
    );
    // Indistinguishable from a request that does not exist.
    let absent = approve_with(&app, &erin, &json!(uuid::Uuid::now_v7().to_string())).await;
    assert_eq!(
        absent.body["errors"][0]["message"],
        stranger.body["errors"][0]["message"]
    );
}

async fn visibility_agrees_between_the_list_and_a_single_request(backend: Backend) {
    // `requests` filters with the SQL form of the rule, `request(id)` with the Rust form.
    let app = spawn_app(backend).await;
    let all = mixed_requests(&app).await;
    let erin = token_as(&app, "erin", &["support", "finance"]);
    let mut tokens: Vec<String> = Persona::ALL.iter().map(|p| app.token_for(*p)).collect();
    tokens.push(erin);
    for token in &tokens {
        let listed = ids(
            &app,
            token,
            "{ requests(first: 100) { edges { node { id } } } }",
            "requests",
        )
        .await;
        for id in &all {
            let one = app
                .graphql(
                    Some(token),
                    "query($id: ID!) { request(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await;
            let seen = !one.expect_ok()["request"].is_null();
            assert_eq!(
                seen,
                listed.contains(id),
                "{id}: request(id) and requests disagree"
            );
        }
    }
}

async fn my_queue_agrees_with_viewer_can_approve(backend: Backend) {
    // `myQueue` filters with the SQL form of the decide rule, `viewerCanApprove` with the
    // Rust form.
    let app = spawn_app(backend).await;
    mixed_requests(&app).await;
    let mut tokens: Vec<String> = Persona::ALL.iter().map(|p| app.token_for(*p)).collect();
    tokens.push(token_as(&app, "erin", &["support", "finance"]));
    tokens.push(token_as(&app, "olivia", &["ops"]));
    let grace = app.token_for(Persona::Grace);
    let everything = ids(
        &app,
        &grace,
        "{ requests(first: 100) { edges { node { id } } } }",
        "requests",
    )
    .await;
    for token in &tokens {
        let queue = ids(
            &app,
            token,
            "{ myQueue(first: 100) { edges { node { id } } } }",
            "myQueue",
        )
        .await;
        let mut may = Vec::new();
        for id in &everything {
            let one = app
                .graphql(
                    Some(token),
                    "query($id: ID!) { request(id: $id) { viewerCanApprove } }",
                    json!({ "id": id }),
                )
                .await;
            if one.expect_ok()["request"]["viewerCanApprove"] == true {
                may.push(id.clone());
            }
        }
        let mut queue_sorted = queue.clone();
        queue_sorted.sort_by_key(Value::to_string);
        may.sort_by_key(Value::to_string);
        assert_eq!(queue_sorted, may, "myQueue and viewerCanApprove disagree");
    }
}

async fn viewer_can_cancel_agrees_with_cancel_request(backend: Backend) {
    // The console shows Cancel by `viewerCanCancel`; the command judges by the same
    // rule (`access::requests::may_cancel`).
    let app = spawn_app(backend).await;
    let cancel = "mutation($input: CancelRequestInput!) { cancelRequest(input: $input) { request { status } } }";
    let mut tokens: Vec<String> = Persona::ALL.iter().map(|p| app.token_for(*p)).collect();
    tokens.push(token_as(&app, "erin", &["support", "finance"]));
    let mut allowed = 0;
    for token in &tokens {
        let request = submit(&app, Persona::Alice, refund("250.00")).await;
        let one = app
            .graphql(
                Some(token),
                "query($id: ID!) { request(id: $id) { viewerCanCancel } }",
                json!({ "id": request["id"] }),
            )
            .await;
        let may = one.expect_ok()["request"]["viewerCanCancel"] == true;
        let tried = app
            .graphql(
                Some(token),
                cancel,
                json!({ "input": { "id": request["id"], "reason": "testing" } }),
            )
            .await;
        assert_eq!(
            tried.body["errors"].is_null(),
            may,
            "viewerCanCancel {may}, cancelRequest: {}",
            tried.body
        );
        allowed += usize::from(may);
        if may {
            let after = app
                .graphql(
                    Some(token),
                    "query($id: ID!) { request(id: $id) { viewerCanCancel } }",
                    json!({ "id": request["id"] }),
                )
                .await;
            assert_eq!(
                after.expect_ok()["request"]["viewerCanCancel"],
                false,
                "a cancelled request cannot be cancelled again"
            );
        }
    }
    assert_eq!(allowed, 2, "alice (her own) and grace (policy.manage)");
}
