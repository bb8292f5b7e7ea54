//! Permissions you can trust: grants as data, admin-only changes, and revocation that
//! takes effect on the very next request — on other replicas within a second.

use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, mint_issued_at, spawn_app, spawn_replica};
use crate::lifecycle_helpers::*;

const GRANT: &str = "mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role permissions { action policy } } }";
const REVOKE: &str = "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role permissions { action policy } } }";
const DISABLE: &str = "mutation($input: DisableUserInput!) { disableUser(input: $input) { user { subject disabledAt disabledReason } } }";
const ENABLE: &str = "mutation($input: EnableUserInput!) { enableUser(input: $input) { user { subject disabledAt } } }";
const REVOKE_SESSIONS: &str = "mutation($input: RevokeSessionsInput!) { revokeSessions(input: $input) { user { subject sessionsRevokedAt } } }";
const VIEWER: &str = "{ viewer { subject } }";

async fn visible_ids(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .graphql(
            Some(token),
            "{ requests { edges { node { id } } } }",
            json!({}),
        )
        .await;
    response.expect_ok()["requests"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect()
}

backend_tests!(
    revoking_request_view_hides_requests_on_the_next_query,
    only_admins_change_permissions_and_a_denial_changes_nothing,
    grants_are_validated_and_the_last_access_manager_stays,
    viewer_lists_its_permissions,
    a_disabled_user_is_refused_from_the_next_request_until_enabled,
    an_admin_cannot_disable_themselves,
    revoked_sessions_refuse_older_tokens_and_those_stamped_ahead_within_the_skew,
    tokens_issued_past_the_skew_after_a_revocation_pass,
    a_user_can_be_disabled_before_their_first_request,
    admins_list_accounts_by_subject_with_search_and_standing,
    every_command_is_allowed_exactly_where_the_permission_table_says
);

async fn revoking_request_view_hides_requests_on_the_next_query(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let frank = app.token_for(Persona::Frank);
    assert_eq!(visible_ids(&app, &frank).await, [request["id"].clone()]);

    let revoked = app
        .graphql_as(
            Persona::Grace,
            REVOKE,
            json!({ "input": { "role": "auditor", "action": "REQUEST_VIEW" } }),
        )
        .await;
    assert_eq!(
        revoked.expect_ok()["revokePermission"]["permissions"],
        json!([{ "action": "AUDIT_READ", "policy": null }])
    );
    assert!(visible_ids(&app, &frank).await.is_empty());
    let one = app
        .graphql(
            Some(&frank),
            "query($id: ID!) { request(id: $id) { id } }",
            json!({ "id": request["id"] }),
        )
        .await;
    assert_eq!(one.expect_ok()["request"], Value::Null);

    app.graphql_as(
        Persona::Grace,
        GRANT,
        json!({ "input": { "role": "auditor", "action": "REQUEST_VIEW", "policy": "refund" } }),
    )
    .await
    .expect_ok();
    assert_eq!(visible_ids(&app, &frank).await, [request["id"].clone()]);
}

async fn only_admins_change_permissions_and_a_denial_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    for persona in [
        Persona::Alice,
        Persona::Bob,
        Persona::Carol,
        Persona::Dave,
        Persona::Frank,
    ] {
        let grant = app
            .graphql_as(
                persona,
                GRANT,
                json!({ "input": { "role": "support", "action": "ACCESS_MANAGE" } }),
            )
            .await;
        assert_eq!(grant.error_code(), Some("FORBIDDEN"), "{persona:?}");
        let revoke = app
            .graphql_as(
                persona,
                REVOKE,
                json!({ "input": { "role": "support", "action": "REQUEST_SUBMIT" } }),
            )
            .await;
        assert_eq!(revoke.error_code(), Some("FORBIDDEN"), "{persona:?}");
        let read = app
            .graphql_as(
                persona,
                "{ rolePermissions(role: \"support\") { action } }",
                json!({}),
            )
            .await;
        assert_eq!(read.error_code(), Some("FORBIDDEN"), "{persona:?}");
    }
    let support = app
        .graphql_as(
            Persona::Grace,
            "{ rolePermissions(role: \"support\") { action policy grantedBy } }",
            json!({}),
        )
        .await;
    assert_eq!(
        support.expect_ok()["rolePermissions"],
        json!([{ "action": "REQUEST_SUBMIT", "policy": null, "grantedBy": "system" }])
    );
}

async fn grants_are_validated_and_the_last_access_manager_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown_policy = app
        .graphql_as(
            Persona::Grace,
            GRANT,
            json!({ "input": { "role": "ops", "action": "REQUEST_VIEW", "policy": "nope" } }),
        )
        .await;
    assert_eq!(unknown_policy.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(
        unknown_policy.body["errors"][0]["extensions"]["field"],
        "policy"
    );
    let bad_role = app
        .graphql_as(
            Persona::Grace,
            GRANT,
            json!({ "input": { "role": "a b", "action": "REQUEST_VIEW" } }),
        )
        .await;
    assert_eq!(bad_role.error_code(), Some("BAD_USER_INPUT"));
    let absent = app
        .graphql_as(
            Persona::Grace,
            REVOKE,
            json!({ "input": { "role": "ops", "action": "AUDIT_READ" } }),
        )
        .await;
    assert_eq!(absent.error_code(), Some("NOT_FOUND"));
    let lockout = app
        .graphql_as(
            Persona::Grace,
            REVOKE,
            json!({ "input": { "role": "admin", "action": "ACCESS_MANAGE" } }),
        )
        .await;
    assert_eq!(lockout.error_code(), Some("BAD_USER_INPUT"));
    let still = app
        .graphql_as(
            Persona::Grace,
            "{ rolePermissions(role: \"admin\") { action } }",
            json!({}),
        )
        .await;
    assert!(
        still.expect_ok()["rolePermissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["action"] == "ACCESS_MANAGE")
    );
}

async fn viewer_lists_its_permissions(backend: Backend) {
    let app = spawn_app(backend).await;
    let query = "{ viewer { permissions { action policy } } }";
    let alice = app.graphql_as(Persona::Alice, query, json!({})).await;
    assert_eq!(
        alice.expect_ok()["viewer"]["permissions"],
        json!([{ "action": "REQUEST_SUBMIT", "policy": null }])
    );
    let dave = app.graphql_as(Persona::Dave, query, json!({})).await;
    assert_eq!(
        dave.expect_ok()["viewer"]["permissions"],
        json!([
            { "action": "REQUEST_VIEW", "policy": "access_grant" },
            { "action": "REQUEST_VIEW", "policy": "account_change" },
        ])
    );
}

async fn a_disabled_user_is_refused_from_the_next_request_until_enabled(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.token_for(Persona::Bob);
    app.graphql(Some(&bob), VIEWER, json!({})).await.expect_ok();

    let no_reason = app
        .graphql_as(
            Persona::Grace,
            DISABLE,
            json!({ "input": { "subject": "bob", "reason": " " } }),
        )
        .await;
    assert_eq!(no_reason.error_code(), Some("BAD_USER_INPUT"));
    let by_bob = app
        .graphql(
            Some(&bob),
            DISABLE,
            json!({ "input": { "subject": "carol", "reason": "x" } }),
        )
        .await;
    assert_eq!(by_bob.error_code(), Some("FORBIDDEN"));

    let disabled = app
        .graphql_as(
            Persona::Grace,
            DISABLE,
            json!({ "input": { "subject": "bob", "reason": "left the company" } }),
        )
        .await;
    assert_eq!(
        disabled.expect_ok()["disableUser"]["user"]["disabledReason"],
        "left the company"
    );
    let refused = app.graphql(Some(&bob), VIEWER, json!({})).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), Some("UNAUTHENTICATED"));
    // A fresh token does not help a disabled user.
    let fresh = app.token_for(Persona::Bob);
    assert_eq!(
        app.graphql(Some(&fresh), VIEWER, json!({})).await.status,
        401
    );

    app.graphql_as(
        Persona::Grace,
        ENABLE,
        json!({ "input": { "subject": "bob" } }),
    )
    .await
    .expect_ok();
    app.graphql(Some(&bob), VIEWER, json!({})).await.expect_ok();
}

async fn an_admin_cannot_disable_themselves(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .graphql_as(
            Persona::Grace,
            DISABLE,
            json!({ "input": { "subject": "grace", "reason": "oops" } }),
        )
        .await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
}

async fn revoked_sessions_refuse_older_tokens_and_those_stamped_ahead_within_the_skew(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let now = chrono::Utc::now().timestamp();
    let old = app.token_for(Persona::Bob);
    // Clock skew: a token may say it was issued up to 30 s from now, and is accepted.
    let ahead = mint_issued_at("bob", &["finance"], now + 20);
    app.graphql(Some(&old), VIEWER, json!({})).await.expect_ok();
    app.graphql(Some(&ahead), VIEWER, json!({}))
        .await
        .expect_ok();
    app.graphql_as(
        Persona::Grace,
        REVOKE_SESSIONS,
        json!({ "input": { "subject": "bob", "reason": "laptop stolen" } }),
    )
    .await
    .expect_ok();
    assert_eq!(
        app.graphql(Some(&old), VIEWER, json!({}))
            .await
            .error_code(),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        app.graphql(Some(&ahead), VIEWER, json!({}))
            .await
            .error_code(),
        Some("UNAUTHENTICATED")
    );
}

async fn tokens_issued_past_the_skew_after_a_revocation_pass(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = chrono::Utc::now().timestamp();
    // The revocation is stamped by the domain clock: set 40 s back, it lets a token
    // issued now count as 40 s newer without the test waiting that long.
    app.clock.advance(chrono::Duration::seconds(-40));
    app.graphql_as(
        Persona::Grace,
        REVOKE_SESSIONS,
        json!({ "input": { "subject": "bob", "reason": "laptop stolen" } }),
    )
    .await
    .expect_ok();
    let within = mint_issued_at("bob", &["finance"], now - 15);
    assert_eq!(
        app.graphql(Some(&within), VIEWER, json!({}))
            .await
            .error_code(),
        Some("UNAUTHENTICATED")
    );
    let past = mint_issued_at("bob", &["finance"], now - 5);
    app.graphql(Some(&past), VIEWER, json!({}))
        .await
        .expect_ok();
}

async fn a_user_can_be_disabled_before_their_first_request(backend: Backend) {
    let app = spawn_app(backend).await;
    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "mallory", "reason": "known bad actor" } }),
    )
    .await
    .expect_ok();
    let token = token_as(&app, "mallory", &["admin"]);
    assert_eq!(
        app.graphql(Some(&token), VIEWER, json!({}))
            .await
            .error_code(),
        Some("UNAUTHENTICATED")
    );
}

async fn admins_list_accounts_by_subject_with_search_and_standing(backend: Backend) {
    let app = spawn_app(backend).await;
    for persona in [Persona::Alice, Persona::Bob, Persona::Carol] {
        app.graphql_as(persona, VIEWER, json!({})).await.expect_ok();
    }
    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "carol", "reason": "on leave" } }),
    )
    .await
    .expect_ok();
    const USERS: &str = "query($filter: UserAccountFilter, $after: String, $first: Int) { users(filter: $filter, first: $first, after: $after) { edges { cursor node { subject name disabledReason } } pageInfo { hasNextPage endCursor } } }";
    let subjects = |data: &Value| -> Vec<String> {
        data["users"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = app
        .graphql_as(Persona::Grace, USERS, json!({ "first": 2 }))
        .await
        .expect_ok()
        .clone();
    assert_eq!(subjects(&first), ["alice", "bob"]);
    assert_eq!(first["users"]["pageInfo"]["hasNextPage"], true);
    let next = app
        .graphql_as(
            Persona::Grace,
            USERS,
            json!({ "first": 2, "after": first["users"]["pageInfo"]["endCursor"] }),
        )
        .await
        .expect_ok()
        .clone();
    assert_eq!(subjects(&next), ["carol", "grace"]);
    let found = app
        .graphql_as(
            Persona::Grace,
            USERS,
            json!({ "filter": { "search": "ALI" } }),
        )
        .await
        .expect_ok()
        .clone();
    assert_eq!(subjects(&found), ["alice"]);
    let literal = app
        .graphql_as(
            Persona::Grace,
            USERS,
            json!({ "filter": { "search": "%" } }),
        )
        .await
        .expect_ok()
        .clone();
    assert_eq!(
        subjects(&literal),
        Vec::<String>::new(),
        "% matches only itself"
    );
    let disabled = app
        .graphql_as(
            Persona::Grace,
            USERS,
            json!({ "filter": { "disabled": true } }),
        )
        .await
        .expect_ok()
        .clone();
    assert_eq!(
        disabled["users"]["edges"][0]["node"],
        json!({ "subject": "carol", "name": "carol (test)", "disabledReason": "on leave" })
    );
    assert_eq!(
        app.graphql_as(Persona::Bob, USERS, json!({}))
            .await
            .error_code(),
        Some("FORBIDDEN")
    );
    assert_eq!(
        app.graphql_as(Persona::Grace, USERS, json!({ "first": 101 }))
            .await
            .error_code(),
        Some("BAD_USER_INPUT")
    );
}

async fn every_command_is_allowed_exactly_where_the_permission_table_says(backend: Backend) {
    let app = spawn_app(backend).await;
    // (persona, may submit, may upsert policies, may manage access)
    let table = [
        (Persona::Alice, true, false, false),
        (Persona::Bob, false, false, false),
        (Persona::Carol, false, false, false),
        (Persona::Dave, false, false, false),
        (Persona::Frank, false, false, false),
        (Persona::Grace, false, true, true),
    ];
    let inputs = [
        refund("250.00"),
        json!({
        "policy": "account_change", "title": "Raise limit", "amount": "1", "currency": "EUR",
        "payload": { "accountId": "a-1" } }),
        access_grant(),
    ];
    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { version } } }";
    for (persona, submits, manages_policies, manages_access) in table {
        for input in &inputs {
            let response = submit_with(&app, &app.token_for(persona), input.clone()).await;
            assert_eq!(
                response.error_code().is_none(),
                submits,
                "{persona:?} submit {}: {}",
                input["policy"],
                response.body
            );
            if !submits {
                // FORBIDDEN where the persona has something to do with the policy; a
                // policy they have nothing to do with answers like a missing one.
                let sees = matches!(
                    (persona, input["policy"].as_str().unwrap()),
                    (Persona::Bob | Persona::Carol, "refund")
                        | (Persona::Dave, "account_change" | "access_grant")
                        | (Persona::Frank | Persona::Grace, _)
                );
                let expected = if sees { "FORBIDDEN" } else { "BAD_USER_INPUT" };
                assert_eq!(
                    response.error_code(),
                    Some(expected),
                    "{persona:?} {}",
                    input["policy"]
                );
            }
        }
        for key in ["refund", "account_change", "access_grant"] {
            let response = app.graphql_as(persona, upsert, json!({ "input": {
                "key": key, "name": key, "expiresAfterSeconds": 86400,
                "stages": [{ "name": "Review", "approverRoles": ["ops"], "requiredApprovals": 1 }] } })).await;
            assert_eq!(
                response.error_code().is_none(),
                manages_policies,
                "{persona:?} upsert {key}"
            );
            if !manages_policies {
                assert_eq!(response.error_code(), Some("FORBIDDEN"));
            }
        }
        let grant = app
            .graphql_as(
                persona,
                GRANT,
                json!({ "input": { "role": "intern", "action": "REQUEST_SUBMIT" } }),
            )
            .await;
        assert_eq!(
            grant.error_code().is_none(),
            manages_access,
            "{persona:?} grant"
        );
        let disable = app
            .graphql_as(
                persona,
                DISABLE,
                json!({ "input": { "subject": "someone", "reason": "test" } }),
            )
            .await;
        assert_eq!(
            disable.error_code().is_none(),
            manages_access,
            "{persona:?} disable"
        );
        let enable = app
            .graphql_as(
                persona,
                ENABLE,
                json!({ "input": { "subject": "someone" } }),
            )
            .await;
        assert_eq!(
            enable.error_code().is_none(),
            manages_access,
            "{persona:?} enable"
        );
        let revoke = app
            .graphql_as(
                persona,
                REVOKE_SESSIONS,
                json!({ "input": { "subject": "someone", "reason": "test" } }),
            )
            .await;
        assert_eq!(
            revoke.error_code().is_none(),
            manages_access,
            "{persona:?} revoke sessions"
        );
    }
}

postgres_tests!(disabling_on_one_replica_refuses_the_next_request_on_another_on_postgres);

/// Replicas share one database only on PostgreSQL, so this runs there alone.
async fn disabling_on_one_replica_refuses_the_next_request_on_another_on_postgres() {
    {
        let a = spawn_app(Backend::Postgres).await;
        let b = spawn_replica(&a).await;
        let bob = a.token_for(Persona::Bob);
        b.graphql(Some(&bob), VIEWER, json!({})).await.expect_ok();
        a.graphql_as(
            Persona::Grace,
            DISABLE,
            json!({ "input": { "subject": "bob", "reason": "incident 7" } }),
        )
        .await
        .expect_ok();
        let on_b = b.graphql(Some(&bob), VIEWER, json!({})).await;
        assert_eq!(on_b.status, 401);
        assert_eq!(on_b.error_code(), Some("UNAUTHENTICATED"));

        let frank = a.token_for(Persona::Frank);
        let request = submit(&b, Persona::Alice, refund("250.00")).await;
        assert_eq!(visible_ids(&b, &frank).await, [request["id"].clone()]);
        a.graphql_as(
            Persona::Grace,
            REVOKE,
            json!({ "input": { "role": "auditor", "action": "REQUEST_VIEW" } }),
        )
        .await
        .expect_ok();
        assert!(
            visible_ids(&b, &frank).await.is_empty(),
            "the revocation on A holds on B at once"
        );
    }
}

postgres_tests!(a_disable_reaches_a_replica_that_remembers_the_user_within_a_second);

/// The same, with B's admission answering bob from memory when A disables him: B refuses
/// him within a second (admission's bound), in practice at once.
async fn a_disable_reaches_a_replica_that_remembers_the_user_within_a_second() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_replica(&a).await;
    let bob = a.token_for(Persona::Bob);
    // The first request records bob's sighting; a later one is answered from memory.
    crate::helpers::eventually("B remembers bob", || async {
        let answer = b.graphql(Some(&bob), VIEWER, json!({})).await;
        answer.expect_ok();
        (answer.admission_statements() == 0).then_some(())
    })
    .await;
    a.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "bob", "reason": "incident 8" } }),
    )
    .await
    .expect_ok();
    // B read bob before the disable, so a request sent a second after it cannot be let in
    // from memory, however long the machine then takes to answer.
    let disabled = std::time::Instant::now();
    loop {
        let sent = disabled.elapsed();
        let on_b = b.graphql(Some(&bob), VIEWER, json!({})).await;
        if on_b.status == 401 {
            assert_eq!(on_b.error_code(), Some("UNAUTHENTICATED"));
            break;
        }
        on_b.expect_ok();
        assert!(
            sent < std::time::Duration::from_secs(1),
            "B let bob in from a request sent {sent:?} after the disable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What a persona gets when deciding or cancelling someone else's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Forbidden,
    /// The request is hidden from them: indistinguishable from one that does not exist.
    Hidden,
}

fn outcome(response: &crate::helpers::GraphqlResponse) -> Expect {
    match response.error_code() {
        None => Expect::Allowed,
        Some("FORBIDDEN") => Expect::Forbidden,
        Some("NOT_FOUND") => Expect::Hidden,
        other => panic!("unexpected {other:?}: {}", response.body),
    }
}

backend_tests!(deciding_and_cancelling_are_allowed_exactly_where_stages_and_grants_say);

async fn deciding_and_cancelling_are_allowed_exactly_where_stages_and_grants_say(backend: Backend) {
    use Expect::{Allowed, Forbidden, Hidden};
    let app = spawn_app(backend).await;
    let account_change = json!({
        "policy": "account_change", "title": "Raise limit", "amount": "1", "currency": "EUR",
        "payload": { "accountId": "a-1" } });
    let policies = [
        ("refund", refund("250.00")),
        ("account_change", account_change),
        ("access_grant", access_grant()),
    ];
    // persona → (approve/reject on refund, on account_change, on access_grant)
    let decide_table = [
        (Persona::Alice, [Forbidden, Forbidden, Forbidden]), // their own requests
        (Persona::Bob, [Allowed, Hidden, Hidden]),
        (Persona::Carol, [Allowed, Hidden, Hidden]),
        (Persona::Dave, [Hidden, Allowed, Allowed]),
        (Persona::Frank, [Forbidden, Forbidden, Forbidden]), // sees all, decides none
        (Persona::Grace, [Forbidden, Forbidden, Forbidden]),
    ];
    let cancel_table = [
        (Persona::Alice, [Allowed, Allowed, Allowed]),
        (Persona::Bob, [Forbidden, Hidden, Hidden]),
        (Persona::Carol, [Forbidden, Hidden, Hidden]),
        (Persona::Dave, [Hidden, Forbidden, Forbidden]),
        (Persona::Frank, [Forbidden, Forbidden, Forbidden]),
        (Persona::Grace, [Allowed, Allowed, Allowed]),
    ];
    let reject = decide_mutation("rejectRequest");
    let cancel = "mutation($input: CancelRequestInput!) { cancelRequest(input: $input) { request { status } } }";
    let alice = app.token_for(Persona::Alice);
    for (persona, expected) in decide_table {
        for ((policy, input), want) in policies.iter().zip(expected) {
            for verb in ["approve", "reject"] {
                let request = submit(&app, Persona::Alice, input.clone()).await;
                let token = app.token_for(persona);
                let response = if verb == "approve" {
                    approve_with(&app, &token, &request["id"]).await
                } else {
                    app.graphql(
                        Some(&token),
                        &reject,
                        json!({ "input": { "id": request["id"], "comment": "no" } }),
                    )
                    .await
                };
                assert_eq!(outcome(&response), want, "{persona:?} {verb} {policy}");
                if want != Allowed {
                    let after = request_as(&app, &alice, &request["id"]).await;
                    assert_eq!(after["version"], 1, "a denial leaves nothing behind");
                    assert_eq!(after["decisions"], json!([]));
                }
            }
        }
    }
    for (persona, expected) in cancel_table {
        for ((policy, input), want) in policies.iter().zip(expected) {
            let request = submit(&app, Persona::Alice, input.clone()).await;
            let response = app
                .graphql_as(
                    persona,
                    cancel,
                    json!({ "input": { "id": request["id"], "reason": "test" } }),
                )
                .await;
            assert_eq!(outcome(&response), want, "{persona:?} cancel {policy}");
            if want != Allowed {
                assert_eq!(
                    request_as(&app, &alice, &request["id"]).await["status"],
                    "PENDING"
                );
            }
        }
    }
}

backend_tests!(standing_and_grants_are_one_statement_and_a_change_shows_on_the_next_request);

/// Admission reads the user's standing and their roles' grants in one statement, and the
/// operation's reads use those grants: a signed-in `viewer { permissions }` costs the
/// operation nothing. On PostgreSQL, while the replica hears the others, the next
/// admission comes from memory; on SQLite it reads again. Either way a revocation and a
/// disable each show on the very next request.
async fn standing_and_grants_are_one_statement_and_a_change_shows_on_the_next_request(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let frank = app.token_for(Persona::Frank);
    let query = "{ viewer { subject permissions { action policy } } }";
    // The first request records frank's sighting (a write); measure after it.
    app.graphql(Some(&frank), query, json!({}))
        .await
        .expect_ok();
    let before = app.graphql(Some(&frank), query, json!({})).await;
    assert_eq!(
        before.statements(),
        0,
        "the operation uses admission's grants"
    );
    assert!(
        before.admission_statements() <= 1,
        "standing and grants in one read"
    );
    assert_eq!(
        before.expect_ok()["viewer"]["permissions"],
        json!([{ "action": "REQUEST_VIEW", "policy": null }, { "action": "AUDIT_READ", "policy": null }])
    );
    // A few tries, as a stalled machine may let the second of two requests come later
    // than the memory lasts.
    let mut admissions = Vec::new();
    for _ in 0..5 {
        let typename = app.graphql(Some(&frank), "{ __typename }", json!({})).await;
        typename.expect_ok();
        admissions.push(typename.admission_statements());
    }
    match backend {
        Backend::Postgres => assert!(admissions.contains(&0), "{admissions:?}"),
        Backend::Sqlite => assert_eq!(admissions, [1; 5]),
    }

    app.graphql_as(
        Persona::Grace,
        REVOKE,
        json!({ "input": { "role": "auditor", "action": "AUDIT_READ" } }),
    )
    .await
    .expect_ok();
    let after = app.graphql(Some(&frank), query, json!({})).await;
    assert_eq!(
        after.expect_ok()["viewer"]["permissions"],
        json!([{ "action": "REQUEST_VIEW", "policy": null }])
    );
    let audit = app
        .graphql(
            Some(&frank),
            "{ auditEvents(first: 1) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(audit.error_code(), Some("FORBIDDEN"));

    app.graphql_as(
        Persona::Grace,
        DISABLE,
        json!({ "input": { "subject": "frank", "reason": "left" } }),
    )
    .await
    .expect_ok();
    let refused = app.graphql(Some(&frank), "{ __typename }", json!({})).await;
    assert_eq!(refused.error_code(), Some("UNAUTHENTICATED"));
}
