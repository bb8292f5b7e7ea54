//! Hostile and careless input, round three: documents built to crash or hold a worker,
//! input one database holds and the other cannot, cursors that lie. Each is refused with
//! a code and leaves nothing written.

use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, spawn_app};
use crate::lifecycle_helpers::{refund, submit, submit_with};
use crate::websocket::{connect_as, receive, send};

/// A value literal nested `depth` deep, as a list or as an object.
fn nested_literal(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", "{a:".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// 651 bytes or so that spread into a million `__typename`s: six levels of ten spreads.
fn fragment_bomb() -> String {
    let mut query = String::from("query { ...F0 }");
    for level in 0..6 {
        let spreads = format!("...F{} ", level + 1).repeat(10);
        query += &format!(" fragment F{level} on Query {{ {spreads}}}");
    }
    query + " fragment F6 on Query { __typename }"
}

/// What the server answers `query` with over a socket: the first message for the operation.
async fn over_a_socket(app: &TestApp, query: &str, variables: Value) -> Value {
    let mut socket = connect_as(app, &app.token_for(Persona::Alice)).await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    receive(&mut socket).await.expect("an answer on the socket")
}

fn socket_error_code(message: &Value) -> Option<&str> {
    message["payload"][0]["extensions"]["code"].as_str()
}

/// How many requests exist, as the auditor (who sees them all) counts them.
async fn requests_filed(app: &TestApp) -> usize {
    let listed = app
        .graphql_as(
            Persona::Frank,
            "{ requests(first: 100) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    listed.expect_ok()["requests"]["edges"]
        .as_array()
        .unwrap()
        .len()
}

backend_tests!(
    a_value_literal_nested_thousands_deep_is_refused_before_it_is_parsed,
    fragments_that_multiply_are_counted_expanded_and_refused,
    a_payload_nested_too_deep_is_bad_input_and_nothing_is_written,
    a_search_past_its_limit_is_bad_input,
    nul_in_any_string_is_bad_input_on_both_databases,
    date_times_outside_the_years_both_databases_hold_are_bad_input,
    a_cursor_past_the_end_of_the_log_is_refused,
    a_hidden_policy_and_a_missing_one_cost_the_same_statements
);

async fn a_value_literal_nested_thousands_deep_is_refused_before_it_is_parsed(backend: Backend) {
    let app = spawn_app(backend).await;
    for object in [false, true] {
        let query = format!(
            "{{ request(id: {}) {{ id }} }}",
            nested_literal(5000, object)
        );
        let anonymous = app.graphql(None, &query, json!({})).await;
        assert_eq!(
            anonymous.error_code(),
            Some("QUERY_REJECTED"),
            "{}",
            anonymous.body
        );
        let answer = over_a_socket(&app, &query, json!({})).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(
            socket_error_code(&answer),
            Some("QUERY_REJECTED"),
            "{answer}"
        );
    }
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process is still serving"
    );
}

async fn fragments_that_multiply_are_counted_expanded_and_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let bomb = fragment_bomb();
    assert!(bomb.len() < 700, "{} bytes", bomb.len());
    let started = std::time::Instant::now();
    let anonymous = app.graphql(None, &bomb, json!({})).await;
    assert_eq!(
        anonymous.error_code(),
        Some("QUERY_REJECTED"),
        "{}",
        anonymous.body
    );
    assert_eq!(anonymous.data(), &Value::Null, "no field ran");
    let answer = over_a_socket(&app, &bomb, json!({})).await;
    assert_eq!(
        socket_error_code(&answer),
        Some("QUERY_REJECTED"),
        "{answer}"
    );
    // Not a benchmark: a walk of the million fields takes seconds; the refusal none.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A cycle is refused as well (the library's own walk would go 32 levels deep).
    let cycle = "{ ...A } fragment A on Query { ...B __typename } fragment B on Query { ...A }";
    assert!(app.graphql(None, cycle, json!({})).await.body["errors"].is_array());
    // A document past the size limit never reaches the parser.
    let padded = format!("{{ __typename }} #{}", "x".repeat(70_000));
    assert_eq!(
        app.graphql(None, &padded, json!({})).await.error_code(),
        Some("QUERY_REJECTED")
    );
    app.graphql(None, "{ __typename }", json!({}))
        .await
        .expect_ok();
}

async fn a_payload_nested_too_deep_is_bad_input_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = requests_filed(&app).await;
    let mut payload = json!("bottom");
    for _ in 0..40 {
        payload = json!({ "a": payload });
    }
    let mut input = refund("10.00");
    input["payload"] = payload;
    let refused = submit_with(&app, &app.token_for(Persona::Alice), input).await;
    assert_eq!(
        refused.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["errors"][0]["extensions"]["field"], "payload");
    assert_eq!(requests_filed(&app).await, before);
    // The same nesting as a literal in the document.
    let literal = format!(
        "mutation {{ submitRequest(input: {{ policy: \"refund\", title: \"Deep\", amount: \"1.00\", currency: \"EUR\", payload: {} }}) {{ replayed }} }}",
        nested_literal(40, true)
    );
    let refused = app.graphql_as(Persona::Alice, &literal, json!({})).await;
    assert_eq!(
        refused.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        refused.body
    );
    assert_eq!(requests_filed(&app).await, before);
}

async fn a_search_past_its_limit_is_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = "refund ".repeat(9000);
    let requests = app
        .graphql_as(
            Persona::Frank,
            "query($s: String) { requests(filter: { search: $s }) { edges { node { id } } } }",
            json!({ "s": long }),
        )
        .await;
    assert_eq!(
        requests.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        requests.body
    );
    assert_eq!(requests.body["errors"][0]["extensions"]["field"], "search");
    let users = app
        .graphql_as(
            Persona::Grace,
            "query($s: String) { users(filter: { search: $s }) { edges { node { subject } } } }",
            json!({ "s": long }),
        )
        .await;
    assert_eq!(users.error_code(), Some("BAD_USER_INPUT"), "{}", users.body);
    // At the limit it is an ordinary search.
    let at_limit = "x".repeat(200);
    app.graphql_as(
        Persona::Frank,
        "query($s: String) { requests(filter: { search: $s }) { edges { node { id } } } }",
        json!({ "s": at_limit }),
    )
    .await
    .expect_ok();
}

async fn nul_in_any_string_is_bad_input_on_both_databases(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let before = requests_filed(&app).await;
    let mut in_title = refund("10.00");
    in_title["title"] = json!("Refund\u{0}");
    let mut in_payload = refund("10.00");
    in_payload["payload"] = json!({ "orderId": "o-1", "lines": [{ "note": "a\u{0}b" }] });
    let mut in_a_key = refund("10.00");
    in_a_key["payload"] = json!({ "order\u{0}Id": "o-1" });
    for input in [in_title, in_payload, in_a_key] {
        let refused = submit_with(&app, &alice, input.clone()).await;
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{input}: {}",
            refused.body
        );
    }
    let literal = r#"mutation { submitRequest(input: { policy: "refund", title: "Refund\u0000", amount: "1.00", currency: "EUR", payload: { orderId: "o-1" } }) { replayed } }"#;
    let refused = app.graphql(Some(&alice), literal, json!({})).await;
    assert_eq!(
        refused.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        refused.body
    );
    assert_eq!(requests_filed(&app).await, before, "nothing was filed");

    let request = submit(&app, Persona::Alice, refund("10.00")).await;
    let comment = app
        .graphql_as(Persona::Bob, "mutation($input: DecideRequestInput!) { approveRequest(input: $input) { request { status } } }",
            json!({ "input": { "id": request["id"], "comment": "ok\u{0}" } }))
        .await;
    assert_eq!(
        comment.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        comment.body
    );
    let after = crate::lifecycle_helpers::request_as(&app, &alice, &request["id"]).await;
    assert_eq!(after["status"], "PENDING", "the approval was not recorded");
}

async fn date_times_outside_the_years_both_databases_hold_are_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let query = "query($at: DateTime) { requests(filter: { createdAfter: $at }) { edges { node { id } } } }";
    for at in [
        "9999-12-31T23:59:59-05:00",
        "0000-06-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
    ] {
        let response = app
            .graphql_as(Persona::Frank, query, json!({ "at": at }))
            .await;
        assert_eq!(
            response.error_code(),
            Some("BAD_USER_INPUT"),
            "{at}: {}",
            response.body
        );
    }
    for at in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
        app.graphql_as(Persona::Frank, query, json!({ "at": at }))
            .await
            .expect_ok();
    }
}

async fn a_cursor_past_the_end_of_the_log_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let head: i64 = app
        .graphql_as(Persona::Frank, "{ requestEventsCursor }", json!({}))
        .await
        .expect_ok()["requestEventsCursor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let query = "subscription($after: String) { requestEvents(after: $after) { cursor } }";
    let beyond = over_a_socket(&app, query, json!({ "after": (head + 1000).to_string() })).await;
    assert_eq!(beyond["type"], "error", "{beyond}");
    assert_eq!(
        socket_error_code(&beyond),
        Some("BAD_USER_INPUT"),
        "{beyond}"
    );
    assert_eq!(beyond["payload"][0]["extensions"]["field"], "after");
    // The head itself is a cursor like any other: the next event arrives.
    let mut socket = connect_as(&app, &app.token_for(Persona::Frank)).await;
    send(&mut socket, json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": { "after": head.to_string() } } })).await;
    submit(&app, Persona::Alice, refund("10.00")).await;
    let event = receive(&mut socket).await.expect("the next event");
    assert_eq!(event["type"], "next", "{event}");
}

async fn a_hidden_policy_and_a_missing_one_cost_the_same_statements(backend: Backend) {
    let app = spawn_app(backend).await;
    // Dave (ops) works on account changes and access grants, and has nothing to do
    // with refunds.
    let dave = app.token_for(Persona::Dave);
    // His first request records that he was seen; the two compared come after it.
    app.graphql(Some(&dave), "{ viewer { subject } }", json!({}))
        .await
        .expect_ok();
    let hidden = refund("10.00");
    let mut missing = refund("10.00");
    missing["policy"] = json!("no_such_policy");
    let hidden = submit_with(&app, &dave, hidden).await;
    let missing = submit_with(&app, &dave, missing).await;
    assert_eq!(
        hidden.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        hidden.body
    );
    assert_eq!(
        missing.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        missing.body
    );
    assert_eq!(hidden.statements(), missing.statements());
    assert_eq!(
        hidden.body["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("refund", "")),
        missing.body["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("no_such_policy", "")),
    );
}

backend_tests!(a_stream_of_hostile_documents_leaves_everyone_else_served);

/// A steady anonymous stream of both kinds of document (five a second) while others
/// use the service: every `{ __typename }` and `/healthz` is answered, and the process
/// stays up. The latencies are printed for the record, not judged here (BENCHMARKS.md
/// is where targets live); the bound is only "answered at all, within a second".
async fn a_stream_of_hostile_documents_leaves_everyone_else_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let deep = format!(
        "{{ request(id: {}) {{ id }} }}",
        nested_literal(5000, false)
    );
    let bomb = fragment_bomb();
    let attacker = async {
        for i in 0..20 {
            let query = if i % 2 == 0 { &deep } else { &bomb };
            let refused = app.graphql(None, query, json!({})).await;
            assert_eq!(refused.error_code(), Some("QUERY_REJECTED"));
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let others = async {
        let mut took = Vec::new();
        for i in 0..200 {
            let started = std::time::Instant::now();
            if i % 2 == 0 {
                assert_eq!(app.get("/healthz").await.status(), 200);
            } else {
                app.graphql(None, "{ __typename }", json!({}))
                    .await
                    .expect_ok();
            }
            took.push(started.elapsed());
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        took
    };
    let ((), mut took) = tokio::join!(attacker, others);
    took.sort();
    let p99 = took[took.len() * 99 / 100 - 1];
    println!(
        "{backend:?}: others answered with p50 {:?}, p99 {p99:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(
        took[took.len() - 1] < std::time::Duration::from_secs(1),
        "{took:?}"
    );
}

backend_tests!(a_late_decision_is_told_when_the_request_expired_and_still_sees_it);

/// An approver with the page still open decides after the request expired: they are
/// told it expired, and when, and still see it, read-only.
async fn a_late_decision_is_told_when_the_request_expired_and_still_sees_it(backend: Backend) {
    let app =
        crate::helpers::spawn_app_with(backend, |config| config.background_jobs = false).await;
    let request = submit(&app, Persona::Alice, refund("10.00")).await;
    let bob = app.token_for(Persona::Bob);
    app.clock.advance(crate::expiry::PAST_EVERY_DEADLINE);
    let late = crate::lifecycle_helpers::approve_with(&app, &bob, &request["id"]).await;
    assert_eq!(
        late.error_code(),
        Some("INVALID_TRANSITION"),
        "{}",
        late.body
    );
    let message = late.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("this request expired at "), "{message}");
    let seen = crate::lifecycle_helpers::request_as(&app, &bob, &request["id"]).await;
    assert_eq!(seen["id"], request["id"]);
}

backend_tests!(a_missing_or_misshapen_variable_is_bad_input);

/// Found by the `graphql` fuzz target: variables the library only trips over while
/// running were answered INTERNAL.
async fn a_missing_or_misshapen_variable_is_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let submit = crate::lifecycle_helpers::submit_mutation();
    for variables in [json!({}), json!({ "input": "x" }), json!({ "input": [1] })] {
        let refused = app.graphql(Some(&alice), &submit, variables.clone()).await;
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{variables}: {}",
            refused.body
        );
        assert_eq!(refused.body["errors"][0]["extensions"]["field"], "input");
    }
    let upsert =
        "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { key } } }";
    let nested =
        json!({ "input": { "key": "k", "name": "K", "expiresAfterSeconds": 60, "stages": ["x"] } });
    let refused = app.graphql_as(Persona::Grace, upsert, nested).await;
    assert_eq!(
        refused.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["errors"][0]["extensions"]["field"],
        "input.stages.0"
    );
}

backend_tests!(a_decider_keeps_seeing_what_they_decided_read_only);

/// Issue 24, item 8: a decider who loses `request.view` keeps seeing what they decided,
/// in the list, by id and live, read-only; someone with the same role who did not decide
/// it sees nothing.
async fn a_decider_keeps_seeing_what_they_decided_read_only(backend: Backend) {
    use crate::subscriptions::{WITHIN, next_event, subscribe};
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("5000.00")).await;
    let bob = app.token_for(Persona::Bob);
    crate::lifecycle_helpers::approve_with(&app, &bob, &request["id"])
        .await
        .expect_ok();
    let revoke =
        "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role } }";
    app.graphql_as(
        Persona::Grace,
        revoke,
        json!({ "input": { "role": "finance", "action": "REQUEST_VIEW", "policy": "refund" } }),
    )
    .await
    .expect_ok();

    let one = "query($id: ID!) { request(id: $id) { id status currentStage viewerCanApprove } }";
    let seen = app
        .graphql(Some(&bob), one, json!({ "id": request["id"] }))
        .await;
    let seen = &seen.expect_ok()["request"];
    assert_eq!(seen["id"], request["id"]);
    assert_eq!(seen["currentStage"], 2);
    assert_eq!(
        seen["viewerCanApprove"], false,
        "sight as a decider is read-only"
    );
    let list = "{ requests(first: 50) { edges { node { id } } } }";
    let listed = app.graphql(Some(&bob), list, json!({})).await;
    let listed = listed.expect_ok()["requests"]["edges"].to_string();
    assert!(
        listed.contains(request["id"].as_str().unwrap()),
        "the list agrees: {listed}"
    );
    let again = crate::lifecycle_helpers::approve_with(&app, &bob, &request["id"]).await;
    assert_eq!(again.error_code(), Some("FORBIDDEN"), "{}", again.body);

    let erin = crate::lifecycle_helpers::token_as(&app, "erin", &["finance"]);
    let hidden = app
        .graphql(Some(&erin), one, json!({ "id": request["id"] }))
        .await;
    assert!(hidden.expect_ok()["request"].is_null(), "{}", hidden.body);
    let not_listed = app.graphql(Some(&erin), list, json!({})).await;
    assert_eq!(not_listed.expect_ok()["requests"]["edges"], json!([]));
    let refused = crate::lifecycle_helpers::approve_with(&app, &erin, &request["id"]).await;
    assert_eq!(refused.error_code(), Some("NOT_FOUND"));

    // Live: the lead's sign-off reaches bob's open page, not erin's. Both subscribe from
    // a cursor read now, so neither can miss what follows.
    let cursor = app
        .graphql(Some(&bob), "{ requestEventsCursor }", json!({}))
        .await;
    let cursor = cursor.expect_ok()["requestEventsCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bobs = subscribe(
        &app,
        &bob,
        Some(&cursor),
        json!({ "requestId": request["id"] }),
    )
    .await;
    let mut erins = subscribe(&app, &erin, Some(&cursor), json!(null)).await;
    let carol = app.token_for(Persona::Carol);
    crate::lifecycle_helpers::approve_with(&app, &carol, &request["id"])
        .await
        .expect_ok();
    let event = next_event(&mut bobs, WITHIN)
        .await
        .expect("the approval, live");
    assert_eq!(event["kind"], "APPROVED");
    assert_eq!(event["request"]["id"], request["id"]);
    // A fence: something erin may see, filed after the approval. Events arrive in order,
    // so if it is the first thing she is sent, the approval never was.
    let grant =
        "mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role } }";
    let view_grants = json!({ "input": { "role": "finance", "action": "REQUEST_VIEW", "policy": "access_grant" } });
    app.graphql_as(Persona::Grace, grant, view_grants)
        .await
        .expect_ok();
    let fence = crate::lifecycle_helpers::submit(
        &app,
        Persona::Alice,
        crate::lifecycle_helpers::access_grant(),
    )
    .await;
    let first = next_event(&mut erins, WITHIN).await.expect("the fence");
    assert_eq!(
        first["request"]["id"], fence["id"],
        "erin is sent nothing before it: {first}"
    );
    let after = app
        .graphql(Some(&bob), one, json!({ "id": request["id"] }))
        .await;
    assert_eq!(
        after.expect_ok()["request"]["status"],
        "APPROVED",
        "and in every status"
    );
}
