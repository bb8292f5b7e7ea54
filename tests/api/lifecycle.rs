//! The approval lifecycle through the public API: stages, separation of duties, terminal
//! states, stale versions and bad input.

use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, spawn_app};
use crate::lifecycle_helpers::*;

backend_tests!(
    a_small_refund_is_approved_by_one_finance_user,
    a_large_refund_needs_finance_and_then_a_different_finance_lead,
    finance_cannot_approve_the_finance_lead_stage,
    an_access_grant_needs_two_distinct_ops_approvals,
    a_requester_holding_finance_cannot_approve_their_own_refund,
    ops_cannot_see_refunds,
    a_rejection_needs_a_comment_and_ends_the_request,
    the_requester_or_an_admin_may_cancel_but_nobody_else,
    a_stale_expected_version_is_a_retryable_conflict,
    bad_input_is_refused_with_its_field_and_nothing_is_stored,
    an_edit_of_a_stale_version_is_a_conflict_and_every_version_stays_readable,
    a_policy_edit_is_a_new_version_and_pending_requests_keep_theirs,
    policies_lists_what_the_viewer_may_use,
    my_queue_holds_what_the_viewer_may_decide_now
);

async fn a_small_refund_is_approved_by_one_finance_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    assert_eq!(request["status"], "PENDING");
    assert_eq!(request["currentStage"], 1);
    assert_eq!(request["amount"], "250.00");
    assert_eq!(request["stages"][0]["state"], "ACTIVE");
    assert_eq!(request["stages"][1]["state"], "SKIPPED");

    let response = approve_with(&app, &app.token_for(Persona::Bob), &request["id"]).await;
    let approved = &response.expect_ok()["approveRequest"]["request"];
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["version"], 2);
    assert!(approved["decidedAt"].is_string());
    assert_eq!(approved["decisions"][0]["approver"]["subject"], "bob");

    let seen = request_as(&app, &app.token_for(Persona::Alice), &request["id"]).await;
    let actions: Vec<&str> = seen["auditTrail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["request.submitted", "request.approved"]);
    assert!(
        seen["auditTrail"][1]["summary"]
            .as_str()
            .unwrap()
            .contains("bob approved stage 1 (Finance review)")
    );
}

async fn a_large_refund_needs_finance_and_then_a_different_finance_lead(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("5000.00")).await;
    assert_eq!(request["stages"][1]["state"], "WAITING");

    let carol = app.token_for(Persona::Carol);
    let after_first = approve_with(&app, &carol, &request["id"]).await;
    let after_first = &after_first.expect_ok()["approveRequest"]["request"];
    assert_eq!(after_first["status"], "PENDING");
    assert_eq!(after_first["currentStage"], 2);

    // Carol approved stage 1, so she may not approve stage 2 as well.
    let again = approve_with(&app, &carol, &request["id"]).await;
    assert_eq!(again.error_code(), Some("FORBIDDEN"));

    let lead = token_as(&app, "lena", &["finance_lead"]);
    let done = approve_with(&app, &lead, &request["id"]).await;
    assert_eq!(
        done.expect_ok()["approveRequest"]["request"]["status"],
        "APPROVED"
    );
}

async fn finance_cannot_approve_the_finance_lead_stage(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("5000.00")).await;
    approve_with(&app, &app.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    let other_finance = token_as(&app, "bert", &["finance"]);
    let response = approve_with(&app, &other_finance, &request["id"]).await;
    assert_eq!(response.error_code(), Some("FORBIDDEN"));
    assert_eq!(
        response.body["errors"][0]["extensions"]["retryable"],
        json!(false)
    );
    let seen = request_as(&app, &app.token_for(Persona::Alice), &request["id"]).await;
    assert_eq!(seen["version"], 2, "the refused approval changed nothing");
    assert_eq!(seen["decisions"].as_array().unwrap().len(), 1);
}

async fn an_access_grant_needs_two_distinct_ops_approvals(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, access_grant()).await;
    let dave = app.token_for(Persona::Dave);
    let first = approve_with(&app, &dave, &request["id"]).await;
    let first = &first.expect_ok()["approveRequest"]["request"];
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["stages"][0]["approvals"], 1);

    assert_eq!(
        approve_with(&app, &dave, &request["id"]).await.error_code(),
        Some("FORBIDDEN")
    );

    let olivia = token_as(&app, "olivia", &["ops"]);
    let second = approve_with(&app, &olivia, &request["id"]).await;
    assert_eq!(
        second.expect_ok()["approveRequest"]["request"]["status"],
        "APPROVED"
    );
}

async fn a_requester_holding_finance_cannot_approve_their_own_refund(backend: Backend) {
    let app = spawn_app(backend).await;
    let erin = token_as(&app, "erin", &["support", "finance"]);
    let request = submit_with(&app, &erin, refund("250.00")).await;
    let id = request.expect_ok()["submitRequest"]["request"]["id"].clone();
    let response = approve_with(&app, &erin, &id).await;
    assert_eq!(response.error_code(), Some("FORBIDDEN"));
    let seen = request_as(&app, &erin, &id).await;
    assert_eq!(seen["status"], "PENDING");
    assert_eq!(seen["version"], 1);
}

async fn ops_cannot_see_refunds(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let dave = app.token_for(Persona::Dave);
    let seen = app
        .graphql(
            Some(&dave),
            "query($id: ID!) { request(id: $id) { id } }",
            json!({ "id": request["id"] }),
        )
        .await;
    assert_eq!(seen.expect_ok()["request"], Value::Null);
    let list = app
        .graphql(
            Some(&dave),
            "{ requests { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list.expect_ok()["requests"]["edges"], json!([]));
    let approve = approve_with(&app, &dave, &request["id"]).await;
    assert_eq!(approve.error_code(), Some("NOT_FOUND"));
    // Indistinguishable from a request that does not exist.
    let absent = approve_with(&app, &dave, &json!(uuid::Uuid::now_v7().to_string())).await;
    assert_eq!(absent.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        absent.body["errors"][0]["message"],
        approve.body["errors"][0]["message"]
    );
}

async fn a_rejection_needs_a_comment_and_ends_the_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let bob = app.token_for(Persona::Bob);
    let reject = decide_mutation("rejectRequest");
    let blank = app
        .graphql(
            Some(&bob),
            &reject,
            json!({ "input": { "id": request["id"], "comment": "  " } }),
        )
        .await;
    assert_eq!(blank.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(blank.body["errors"][0]["extensions"]["field"], "comment");

    let rejected = app
        .graphql(
            Some(&bob),
            &reject,
            json!({ "input": { "id": request["id"], "comment": "duplicate of o-0" } }),
        )
        .await;
    let rejected = &rejected.expect_ok()["rejectRequest"]["request"];
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["stages"][0]["state"], "REJECTED");

    let late = approve_with(&app, &token_as(&app, "bert", &["finance"]), &request["id"]).await;
    assert_eq!(late.error_code(), Some("INVALID_TRANSITION"));
}

async fn the_requester_or_an_admin_may_cancel_but_nobody_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let cancel = "mutation($input: CancelRequestInput!) { cancelRequest(input: $input) { request { status version } } }";
    let first = submit(&app, Persona::Alice, refund("250.00")).await;
    let by_bob = app
        .graphql_as(
            Persona::Bob,
            cancel,
            json!({ "input": { "id": first["id"], "reason": "no" } }),
        )
        .await;
    assert_eq!(by_bob.error_code(), Some("FORBIDDEN"));
    let no_reason = app
        .graphql_as(
            Persona::Alice,
            cancel,
            json!({ "input": { "id": first["id"], "reason": "" } }),
        )
        .await;
    assert_eq!(no_reason.error_code(), Some("BAD_USER_INPUT"));
    let by_alice = app
        .graphql_as(
            Persona::Alice,
            cancel,
            json!({ "input": { "id": first["id"], "reason": "customer withdrew" } }),
        )
        .await;
    assert_eq!(
        by_alice.expect_ok()["cancelRequest"]["request"]["status"],
        "CANCELLED"
    );
    let twice = app
        .graphql_as(
            Persona::Alice,
            cancel,
            json!({ "input": { "id": first["id"], "reason": "again" } }),
        )
        .await;
    assert_eq!(twice.error_code(), Some("INVALID_TRANSITION"));

    let second = submit(&app, Persona::Alice, refund("250.00")).await;
    let by_grace = app
        .graphql_as(
            Persona::Grace,
            cancel,
            json!({ "input": { "id": second["id"], "reason": "opened in error" } }),
        )
        .await;
    assert_eq!(
        by_grace.expect_ok()["cancelRequest"]["request"]["status"],
        "CANCELLED"
    );
}

async fn a_stale_expected_version_is_a_retryable_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, access_grant()).await;
    app.graphql_as(
        Persona::Dave,
        &decide_mutation("approveRequest"),
        json!({ "input": { "id": request["id"], "expectedVersion": 1 } }),
    )
    .await
    .expect_ok();
    let stale = app
        .graphql(
            Some(&token_as(&app, "olivia", &["ops"])),
            &decide_mutation("approveRequest"),
            json!({ "input": { "id": request["id"], "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(stale.error_code(), Some("CONFLICT"));
    assert_eq!(
        stale.body["errors"][0]["extensions"]["retryable"],
        json!(true)
    );
}

async fn bad_input_is_refused_with_its_field_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let cases = [
        (json!({ "amount": "-5.00" }), "amount"),
        (json!({ "amount": "abc" }), "amount"),
        (json!({ "amount": "1e400" }), "amount"),
        (json!({ "amount": "1.001" }), "amount"),
        (json!({ "amount": "1000000000000000.01" }), "amount"),
        (json!({ "currency": "euro" }), "currency"),
        (json!({ "policy": "no_such_policy" }), "policy"),
        (json!({ "title": "x".repeat(100_000) }), "title"),
        (json!({ "title": "" }), "title"),
        (json!({ "description": "x".repeat(10_001) }), "description"),
        (
            json!({ "payload": { "customerId": "c-1" } }),
            "payload.orderId",
        ),
        (json!({ "payload": { "orderId": 42 } }), "payload.orderId"),
        (
            json!({ "payload": { "orderId": "o", "blob": "x".repeat(70_000) } }),
            "payload",
        ),
        (json!({ "idempotencyKey": "" }), "idempotencyKey"),
    ];
    for (change, field) in cases {
        let mut input = refund("250.00");
        for (k, v) in change.as_object().unwrap() {
            input[k] = v.clone();
        }
        let response = submit_with(&app, &alice, input).await;
        assert_eq!(
            response.error_code(),
            Some("BAD_USER_INPUT"),
            "{change}: {}",
            response.body
        );
        assert_eq!(
            response.body["errors"][0]["extensions"]["field"], field,
            "{change}"
        );
    }
    // A number where a Decimal string belongs is refused before it can become a float.
    let mut numeric = refund("1");
    numeric["amount"] = json!(250.5);
    assert_eq!(
        submit_with(&app, &alice, numeric).await.error_code(),
        Some("BAD_USER_INPUT")
    );

    let all = app
        .graphql_as(
            Persona::Grace,
            "{ requests { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        all.expect_ok()["requests"]["edges"],
        json!([]),
        "nothing was stored"
    );
}

async fn an_edit_of_a_stale_version_is_a_conflict_and_every_version_stays_readable(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { version } } }";
    let edit = |expected: i64, stage: &str| {
        json!({ "input": {
            "key": "refund", "name": "Refund", "expiresAfterSeconds": 3600, "expectedVersion": expected,
            "stages": [{ "name": stage, "approverRoles": ["finance"], "requiredApprovals": 1 }],
        }})
    };
    let first = app
        .graphql_as(Persona::Grace, upsert, edit(1, "Second edit"))
        .await;
    assert_eq!(first.expect_ok()["upsertPolicy"]["policy"]["version"], 2);
    // Another admin's editor was opened on version 1 too.
    let stale = app
        .graphql_as(Persona::Grace, upsert, edit(1, "Stale edit"))
        .await;
    assert_eq!(stale.error_code(), Some("CONFLICT"), "{}", stale.body);
    let history = "{ policyVersions(key: \"refund\") { version createdBy stages { name } } }";
    let versions = app.graphql_as(Persona::Alice, history, json!({})).await;
    let versions = versions.expect_ok()["policyVersions"].clone();
    assert_eq!(
        versions
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(1)]
    );
    assert_eq!(
        versions[0]["stages"],
        json!([{ "name": "Second edit" }]),
        "the stale edit wrote nothing"
    );
    assert_eq!(versions[1]["stages"][1]["name"], "Finance lead sign-off");
    let outsider = app.graphql_as(Persona::Dave, history, json!({})).await;
    assert_eq!(
        outsider.expect_ok()["policyVersions"],
        json!([]),
        "ops has nothing to do with refunds"
    );
}

async fn a_policy_edit_is_a_new_version_and_pending_requests_keep_theirs(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = submit(&app, Persona::Alice, refund("5000.00")).await;
    assert_eq!(before["policy"]["version"], 1);
    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { key version stages { name minAmounts { amount currency } } } } }";
    let input = json!({ "input": {
        "key": "refund", "name": "Refund", "description": "One finance approval only",
        "expiresAfterSeconds": 3600,
        "stages": [{ "name": "Finance review", "approverRoles": ["finance"], "requiredApprovals": 1 }],
    }});
    let refused = app.graphql_as(Persona::Alice, upsert, input.clone()).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    let saved = app.graphql_as(Persona::Grace, upsert, input).await;
    assert_eq!(saved.expect_ok()["upsertPolicy"]["policy"]["version"], 2);

    let after = submit(&app, Persona::Alice, refund("5000.00")).await;
    assert_eq!(after["policy"]["version"], 2);
    assert_eq!(after["stages"].as_array().unwrap().len(), 1);
    let old = request_as(&app, &app.token_for(Persona::Alice), &before["id"]).await;
    assert_eq!(old["policy"]["version"], 1);
    assert_eq!(
        old["stages"].as_array().unwrap().len(),
        2,
        "the old request keeps its two stages"
    );

    let bad_schema = app.graphql_as(Persona::Grace, upsert, json!({ "input": {
        "key": "payout", "name": "Payout", "expiresAfterSeconds": 3600,
        "payloadSchema": { "type": "no-such-type" },
        "stages": [{ "name": "Review", "approverRoles": ["finance"], "requiredApprovals": 1 }],
    }})).await;
    assert_eq!(bad_schema.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(
        bad_schema.body["errors"][0]["extensions"]["field"],
        "payloadSchema"
    );
}

async fn policies_lists_what_the_viewer_may_use(backend: Backend) {
    let app = spawn_app(backend).await;
    let keys = |persona| {
        let app = &app;
        async move {
            let response = app.graphql_as(persona, "{ policies { key version stages { name approverRoles requiredApprovals minAmounts { amount currency } } } }", json!({})).await;
            response.expect_ok()["policies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["key"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys(Persona::Alice).await,
        ["access_grant", "account_change", "refund"]
    );
    assert_eq!(keys(Persona::Bob).await, ["refund"]);
    assert_eq!(
        keys(Persona::Dave).await,
        ["access_grant", "account_change"]
    );
    let refund = app.graphql_as(Persona::Grace, "{ policies { key stages { name approverRoles requiredApprovals minAmounts { amount currency } } } }", json!({})).await;
    let refund = refund.expect_ok()["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "refund")
        .unwrap()
        .clone();
    assert_eq!(
        refund["stages"][1],
        json!({
            "name": "Finance lead sign-off", "approverRoles": ["finance_lead"],
            "requiredApprovals": 1, "minAmounts": [
                { "amount": "1000.00", "currency": "EUR" },
                { "amount": "1000.00", "currency": "GBP" },
                { "amount": "1000.00", "currency": "USD" },
            ],
        })
    );
}

async fn my_queue_holds_what_the_viewer_may_decide_now(backend: Backend) {
    let app = spawn_app(backend).await;
    let queue = "{ myQueue { edges { node { id } } } }";
    let ids = |response: crate::helpers::GraphqlResponse| -> Vec<Value> {
        response.expect_ok()["myQueue"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].clone())
            .collect()
    };
    let small = submit(&app, Persona::Alice, refund("250.00")).await;
    let large = submit(&app, Persona::Alice, refund("5000.00")).await;
    let grant = submit(&app, Persona::Alice, access_grant()).await;

    assert_eq!(
        ids(app.graphql_as(Persona::Bob, queue, json!({})).await),
        [small["id"].clone(), large["id"].clone()]
    );
    assert_eq!(
        ids(app.graphql_as(Persona::Dave, queue, json!({})).await),
        [grant["id"].clone()]
    );
    assert!(ids(app.graphql_as(Persona::Alice, queue, json!({})).await).is_empty());

    approve_with(&app, &app.token_for(Persona::Bob), &large["id"])
        .await
        .expect_ok();
    assert_eq!(
        ids(app.graphql_as(Persona::Bob, queue, json!({})).await),
        [small["id"].clone()]
    );
    assert_eq!(
        ids(app.graphql_as(Persona::Carol, queue, json!({})).await),
        [small["id"].clone(), large["id"].clone()]
    );

    let seen = app.graphql_as(Persona::Carol, "query($id: ID!) { request(id: $id) { viewerCanApprove eligibleApprovers { roles users { subject } } } }", json!({ "id": large["id"] })).await;
    let seen = &seen.expect_ok()["request"];
    assert_eq!(seen["viewerCanApprove"], true);
    assert_eq!(seen["eligibleApprovers"]["roles"], json!(["finance_lead"]));
    // Carol is known (she has called the API) and holds finance_lead.
    assert_eq!(
        seen["eligibleApprovers"]["users"],
        json!([{ "subject": "carol" }])
    );
    let by_bob = app
        .graphql_as(
            Persona::Bob,
            "query($id: ID!) { request(id: $id) { viewerCanApprove } }",
            json!({ "id": large["id"] }),
        )
        .await;
    assert_eq!(by_bob.expect_ok()["request"]["viewerCanApprove"], false);
}
