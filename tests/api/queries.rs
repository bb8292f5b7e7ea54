//! The list queries: keyset pagination that neither repeats nor skips, filters, limits.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, spawn_app};
use crate::lifecycle_helpers::*;

async fn submit_many(app: &TestApp, count: usize, prefix: &str) -> Vec<String> {
    let alice = app.token_for(Persona::Alice);
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let responses = join_all(chunk.iter().map(|i| {
            let mut input = refund("10.00");
            input["title"] = json!(format!("{prefix} {i}"));
            submit_with(app, &alice, input)
        }))
        .await;
        for r in responses {
            ids.push(
                r.expect_ok()["submitRequest"]["request"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    ids
}

async fn walk(app: &TestApp, order: &str) -> Vec<String> {
    let grace = app.token_for(Persona::Grace);
    let query = "query($after: String, $order: RequestOrder) {
        requests(first: 100, after: $after, orderBy: $order) {
            edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .graphql(
                Some(&grace),
                query,
                json!({ "after": after, "order": order }),
            )
            .await;
        let page = page.expect_ok()["requests"].clone();
        for edge in page["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            return seen;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

backend_tests!(
    walking_a_thousand_requests_by_cursor_while_more_arrive_has_no_duplicate_or_gap,
    filters_narrow_the_list,
    page_size_and_cursor_are_validated
);

async fn walking_a_thousand_requests_by_cursor_while_more_arrive_has_no_duplicate_or_gap(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let initial = submit_many(&app, 1000, "Initial").await;
    for order in ["CREATED_AT_ASC", "CREATED_AT_DESC", "EXPIRES_AT_ASC"] {
        let (walked, _) = tokio::join!(walk(&app, order), submit_many(&app, 100, order));
        let unique: HashSet<&String> = walked.iter().collect();
        assert_eq!(
            unique.len(),
            walked.len(),
            "{order}: no request appears twice"
        );
        for id in &initial {
            assert!(
                unique.contains(id),
                "{order}: every request that existed is seen"
            );
        }
    }
}

async fn filters_narrow_the_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let small = submit(&app, Persona::Alice, refund("250.00")).await;
    let grant = submit(&app, Persona::Alice, access_grant()).await;
    approve_with(&app, &app.token_for(Persona::Bob), &small["id"])
        .await
        .expect_ok();
    let ids = |filter: Value| {
        let app = &app;
        async move {
            let response = app.graphql_as(Persona::Grace,
                "query($filter: RequestFilter) { requests(filter: $filter) { edges { node { id } } } }",
                json!({ "filter": filter })).await;
            response.expect_ok()["requests"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(json!({ "status": "APPROVED" })).await,
        [small["id"].clone()]
    );
    assert_eq!(
        ids(json!({ "policy": "access_grant" })).await,
        [grant["id"].clone()]
    );
    assert_eq!(
        ids(json!({ "search": "DATABASE" })).await,
        [grant["id"].clone()]
    );
    assert_eq!(ids(json!({ "search": "100%_" })).await, Vec::<Value>::new());
    assert_eq!(ids(json!({ "requester": "alice" })).await.len(), 2);
    assert_eq!(ids(json!({ "requester": "nobody" })).await.len(), 0);
}

async fn page_size_and_cursor_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_many = app
        .graphql_as(
            Persona::Grace,
            "{ requests(first: 101) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(too_many.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(too_many.body["errors"][0]["extensions"]["field"], "first");
    let garbage = app
        .graphql_as(
            Persona::Grace,
            "{ requests(after: \"garbage\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(garbage.error_code(), Some("BAD_USER_INPUT"));
    let anonymous = app
        .graphql(None, "{ requests { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

backend_tests!(a_page_costs_the_same_statements_whatever_its_size);

async fn a_page_costs_the_same_statements_whatever_its_size(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let bob = app.token_for(Persona::Bob);
    let created = join_all((0..60).map(|i| {
        let mut input = refund("5000.00");
        input["title"] = json!(format!("Large refund {i}"));
        submit_with(&app, &alice, input)
    }))
    .await;
    for (i, response) in created.iter().enumerate() {
        if i % 2 == 0 {
            let id = &response.expect_ok()["submitRequest"]["request"]["id"];
            approve_with(&app, &bob, id).await.expect_ok();
        }
    }
    let grace = app.token_for(Persona::Grace);
    let query = "query($first: Int) { requests(first: $first) { edges { node {
        id title requester { subject name } policy { key version }
        stages { position state decisions { verdict approver { subject } } }
        decisions { verdict comment approver { subject email } }
    } } } }";
    // The first call records grace as a known user, and reads the policy versions, which
    // the server then keeps (they never change); measure after it.
    app.graphql(Some(&grace), query, json!({ "first": 1 }))
        .await
        .expect_ok();

    // Counted per operation by the server, so background jobs never add to it.
    let mut costs = Vec::new();
    for first in [10, 50] {
        let page = app
            .graphql(Some(&grace), query, json!({ "first": first }))
            .await;
        let edges = page.expect_ok()["requests"]["edges"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(edges, first);
        costs.push(page.statements());
    }
    // The page, and one each for decisions and users (admission is counted apart): fewer
    // would mean the loaders' own statements went uncounted.
    assert!(
        costs[0] >= 3,
        "the loaders' statements are counted too: {costs:?}"
    );
    assert_eq!(
        costs[0], costs[1],
        "statements for 10 rows vs 50 rows: {costs:?}"
    );
    assert!(
        costs[1] <= 10,
        "a page is a handful of statements, not one per row: {costs:?}"
    );
}

backend_tests!(my_queue_costs_the_same_statements_under_concurrency);

/// `myQueue` costs the same statements alone and with 15 others running at once, for a
/// short page and a long one: nothing depends on how the executor times its batches.
async fn my_queue_costs_the_same_statements_under_concurrency(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    join_all((0..30).map(|i| {
        let mut input = refund("75.00");
        input["title"] = json!(format!("Queue refund {i}"));
        submit_with(&app, &alice, input)
    }))
    .await;
    let bob = app.token_for(Persona::Bob);
    let query = "query($first: Int) { myQueue(first: $first) { edges { node {
        id title amount currency expiresAt requester { subject name } policy { key version }
        stages { position state decisions { verdict approver { subject } } }
        viewerCanApprove } } } }";
    app.graphql(Some(&bob), query, json!({ "first": 1 }))
        .await
        .expect_ok();
    let alone = app.graphql(Some(&bob), query, json!({ "first": 5 })).await;
    assert_eq!(
        alone.expect_ok()["myQueue"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let baseline = alone.statements();
    for first in [5, 30] {
        let together =
            join_all((0..16).map(|_| app.graphql(Some(&bob), query, json!({ "first": first }))))
                .await;
        for response in &together {
            assert_eq!(
                response.expect_ok()["myQueue"]["edges"]
                    .as_array()
                    .unwrap()
                    .len(),
                first
            );
            assert_eq!(response.statements(), baseline, "first {first}, 16 at once");
        }
    }
}

backend_tests!(a_page_naming_unknown_people_costs_the_same_statements_under_concurrency);

/// People the server has never seen (imported history, a service's subject) are an
/// answer too: a page naming them costs the same statements alone and 16 at once, not
/// a second look-up per field that the executor happens to batch one way or another.
async fn a_page_naming_unknown_people_costs_the_same_statements_under_concurrency(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    submit_many(&app, 40, "Imported refund").await;
    let grace = app.token_for(Persona::Grace);
    let query = "query($first: Int) { requests(first: $first) { edges { node {
        id requester { subject name } decisions { approver { subject } } } } } }";
    app.graphql(Some(&grace), query, json!({ "first": 1 }))
        .await
        .expect_ok();
    let known = app
        .graphql(Some(&grace), query, json!({ "first": 40 }))
        .await
        .statements();

    let db = sea_orm::Database::connect(app.database_url.clone())
        .await
        .expect("a direct connection");
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        "UPDATE requests SET requester_subject = 'imported-' || substr(title, 17)",
    )
    .await
    .expect("renaming requesters to people never seen");
    db.close().await.expect("closing");
    let alone = app
        .graphql(Some(&grace), query, json!({ "first": 40 }))
        .await;
    let edges = alone.expect_ok()["requests"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(edges.len(), 40);
    assert!(edges.iter().all(|e| {
        e["node"]["requester"]["subject"]
            .as_str()
            .unwrap()
            .starts_with("imported-")
            && e["node"]["requester"]["name"].is_null()
    }));
    let baseline = alone.statements();
    assert_eq!(baseline, known, "unknown people cost what known ones do");
    let together =
        join_all((0..16).map(|_| app.graphql(Some(&grace), query, json!({ "first": 40 })))).await;
    for response in &together {
        assert_eq!(
            response.expect_ok()["requests"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            40
        );
        assert_eq!(response.statements(), baseline, "16 at once vs alone");
    }
}

backend_tests!(my_queue_puts_the_nearest_deadline_first_when_asked_page_by_page);

async fn my_queue_puts_the_nearest_deadline_first_when_asked_page_by_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let early_filed = submit(&app, Persona::Alice, refund("10.00")).await;
    // Requests filed from now on have an hour, not three days.
    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { version } } }";
    app.graphql_as(Persona::Grace, upsert, json!({ "input": {
        "key": "refund", "name": "Refund", "expiresAfterSeconds": 3600,
        "stages": [{ "name": "Finance review", "approverRoles": ["finance"], "requiredApprovals": 1 }],
    }})).await.expect_ok();
    let late_filed = submit(&app, Persona::Alice, refund("20.00")).await;
    let query = "query($order: RequestOrder, $after: String) { myQueue(first: 1, after: $after, orderBy: $order) {
        edges { node { id } } pageInfo { endCursor hasNextPage } } }";
    let walk = |order: Value| {
        let app = &app;
        async move {
            let mut ids = Vec::new();
            let mut after = Value::Null;
            loop {
                let response = app
                    .graphql_as(
                        Persona::Bob,
                        query,
                        json!({ "order": order, "after": after }),
                    )
                    .await;
                let page = response.expect_ok()["myQueue"].clone();
                ids.extend(
                    page["edges"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["node"]["id"].clone()),
                );
                if page["pageInfo"]["hasNextPage"] != true {
                    return ids;
                }
                after = page["pageInfo"]["endCursor"].clone();
            }
        }
    };
    assert_eq!(
        walk(Value::Null).await,
        [early_filed["id"].clone(), late_filed["id"].clone()],
        "oldest first"
    );
    assert_eq!(
        walk(json!("EXPIRES_AT_ASC")).await,
        [late_filed["id"].clone(), early_filed["id"].clone()],
        "nearest deadline first"
    );
}

backend_tests!(a_page_answers_every_field_as_the_request_query_does);

/// A page's rows are answered from memory (`kernel/plain.rs`), a single request by the
/// derived resolvers: both must write the same response for the same selection, with
/// fragments, aliases, `__typename`, repeated fields and the fields that need more I/O.
async fn a_page_answers_every_field_as_the_request_query_does(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.token_for(Persona::Bob);
    let two_stage = submit(&app, Persona::Alice, refund("5000.00")).await;
    approve_with(&app, &bob, &two_stage["id"]).await.expect_ok();
    let rejected = submit(&app, Persona::Alice, refund("20.00")).await;
    app.graphql(
        Some(&bob),
        &decide_mutation("rejectRequest"),
        json!({ "input": { "id": rejected["id"], "comment": "duplicate" } }),
    )
    .await
    .expect_ok();
    submit(&app, Persona::Alice, access_grant()).await;
    submit(&app, Persona::Alice, refund("7.50")).await;

    let fragments = "
        fragment Who on User { __typename subject name email }
        fragment Req on ApprovalRequest {
            __typename id status currentStage version title description amount currency
            payload createdAt updatedAt expiresAt decidedAt
            requester { ...Who } requester { subject } who: requester { name }
            policy { key version name description expiresAfterSeconds payloadSchema
                allowSameApproverAcrossStages createdAt createdBy
                stages { position name approverRoles requiredApprovals
                    minAmounts { __typename amount currency } } }
            stages { __typename position name approverRoles requiredApprovals minAmount
                state approvals decisions { id verdict approver { ...Who } } }
            decisions { id stage verdict comment createdAt approver { subject name } }
            ... on ApprovalRequest { viewerCanApprove viewerCanCancel }
            ... { headline: title }
            eligibleApprovers { roles users { subject } }
            auditTrail { action actor }
        }";
    for persona in [Persona::Bob, Persona::Grace, Persona::Alice] {
        let page = app
            .graphql_as(
                persona,
                &format!(
                    "{{ requests(first: 50) {{ edges {{ node {{ ...Req }} }} }} }} {fragments}"
                ),
                json!({}),
            )
            .await;
        let edges = page.expect_ok()["requests"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        assert!(!edges.is_empty(), "{persona:?} sees requests");
        for edge in edges {
            let one = app
                .graphql_as(
                    persona,
                    &format!("query($id: ID!) {{ request(id: $id) {{ ...Req }} }} {fragments}"),
                    json!({ "id": edge["node"]["id"] }),
                )
                .await;
            assert_eq!(
                edge["node"],
                one.expect_ok()["request"],
                "{persona:?}: the page and the request query agree"
            );
        }
    }
}

backend_tests!(a_policy_version_is_read_once_and_never_changes);

/// The server keeps the policy versions a page reads, because a version is never changed:
/// the database refuses to update or delete one, and an edit is a new version that the
/// next page reads (requests filed under the old one still show the old one).
async fn a_policy_version_is_read_once_and_never_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let old = submit(&app, Persona::Alice, refund("12.00")).await;
    let query = "{ requests(first: 50) { edges { node { id policy { version name } } } } }";
    let cold = app.graphql_as(Persona::Grace, query, json!({})).await;
    let warm = app.graphql_as(Persona::Grace, query, json!({})).await;
    assert_eq!(cold.expect_ok(), warm.expect_ok());
    assert_eq!(
        cold.statements() - warm.statements(),
        2,
        "the second page does not read policies or their stages again"
    );

    let db = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let mut statements = vec![
        "UPDATE policies SET name = 'changed'".to_owned(),
        "UPDATE policy_stages SET required_approvals = 2".to_owned(),
        "DELETE FROM policy_stages".to_owned(),
        "DELETE FROM policies".to_owned(),
    ];
    match backend {
        Backend::Sqlite => statements.extend([
            "INSERT OR REPLACE INTO policies SELECT * FROM policies".to_owned(),
            "INSERT OR REPLACE INTO policy_stages SELECT * FROM policy_stages".to_owned(),
        ]),
        Backend::Postgres => statements.push("TRUNCATE policy_stages".to_owned()),
    }
    for statement in &statements {
        let refused = sea_orm::ConnectionTrait::execute_unprepared(&db, statement.as_str()).await;
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("policy versions never change"),
            "{statement} is refused"
        );
    }

    let edit = app
        .graphql_as(
            Persona::Grace,
            "{ policyVersions(key: \"refund\") { version name description expiresAfterSeconds
                allowSameApproverAcrossStages payloadSchema
                stages { name approverRoles requiredApprovals minAmounts { amount currency } } } }",
            json!({}),
        )
        .await;
    let current = edit.expect_ok()["policyVersions"][0].clone();
    let stages: Vec<Value> = current["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({
                "name": s["name"], "approverRoles": s["approverRoles"],
                "requiredApprovals": s["requiredApprovals"], "minAmounts": s["minAmounts"],
            })
        })
        .collect();
    app.graphql_as(
        Persona::Grace,
        "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { version } } }",
        json!({ "input": {
            "key": "refund", "name": "Refunds, renamed", "description": current["description"],
            "expectedVersion": current["version"],
            "expiresAfterSeconds": current["expiresAfterSeconds"],
            "allowSameApproverAcrossStages": current["allowSameApproverAcrossStages"],
            "payloadSchema": current["payloadSchema"], "stages": stages,
        } }),
    )
    .await
    .expect_ok();
    let new = submit(&app, Persona::Alice, refund("13.00")).await;
    let page = app.graphql_as(Persona::Grace, query, json!({})).await;
    let edges = page.expect_ok()["requests"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    let policy_of = |id: &Value| {
        edges
            .iter()
            .find(|e| &e["node"]["id"] == id)
            .map(|e| e["node"]["policy"].clone())
            .unwrap()
    };
    assert_eq!(policy_of(&old["id"])["version"], 1);
    assert_ne!(policy_of(&old["id"])["name"], "Refunds, renamed");
    assert_eq!(policy_of(&new["id"])["version"], 2);
    assert_eq!(policy_of(&new["id"])["name"], "Refunds, renamed");
}
