//! Authority is checked where the change is made: inside the command's transaction, under
//! the authority lock, so a change of grants and a command using them never overlap
//! (issue 25). Races need two writers at once, which only PostgreSQL has.

use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, spawn_app};
use crate::lifecycle_helpers::{approve_with, refund, submit, token_as};

const GRANT: &str =
    "mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role } }";
const REVOKE: &str =
    "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role } }";

fn manage(role: &str) -> Value {
    json!({ "input": { "role": role, "action": "ACCESS_MANAGE" } })
}

async fn holds_access_manage(app: &TestApp, role: &str) -> bool {
    let query = "query($role: String!) { rolePermissions(role: $role) { action policy } }";
    let response = app
        .graphql_as(Persona::Grace, query, json!({ "role": role }))
        .await;
    response.expect_ok()["rolePermissions"]
        .as_array()
        .expect("a list")
        .iter()
        .any(|g| g["action"] == "ACCESS_MANAGE" && g["policy"].is_null())
}

/// The audit events with `action`: their request and sequence.
async fn sequences(app: &TestApp, action: &str) -> Vec<(Option<String>, i64)> {
    let query = "query($filter: AuditEventFilter) { auditEvents(first: 100, filter: $filter) { edges { node { sequence requestId } } } }";
    let response = app
        .graphql_as(
            Persona::Grace,
            query,
            json!({ "filter": { "action": action } }),
        )
        .await;
    response.expect_ok()["auditEvents"]["edges"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let node = &e["node"];
            let sequence = node["sequence"].as_i64().expect("a sequence");
            (node["requestId"].as_str().map(str::to_owned), sequence)
        })
        .collect()
}

postgres_tests!(
    two_managers_revoking_each_other_never_both_commit,
    an_approval_in_flight_commits_before_its_approvers_revocation_or_not_at_all
);

async fn two_managers_revoking_each_other_never_both_commit() {
    let app = spawn_app(Backend::Postgres).await;
    let anna = token_as(&app, "anna", &["manager_a"]);
    let ben = token_as(&app, "ben", &["manager_b"]);
    for round in 0..50 {
        for role in ["manager_a", "manager_b"] {
            app.graphql_as(Persona::Grace, GRANT, manage(role))
                .await
                .expect_ok();
        }
        let (a, b) = tokio::join!(
            app.graphql(Some(&anna), REVOKE, manage("manager_b")),
            app.graphql(Some(&ben), REVOKE, manage("manager_a")),
        );
        let won: Vec<bool> = [&a, &b]
            .iter()
            .map(|r| r.body["errors"].is_null())
            .collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: exactly one commits: {} / {}",
            a.body,
            b.body
        );
        let loser = if won[0] { &b } else { &a };
        assert_eq!(
            loser.error_code(),
            Some("FORBIDDEN"),
            "round {round}: {}",
            loser.body
        );
        let (winner_role, loser_role) = if won[0] {
            ("manager_a", "manager_b")
        } else {
            ("manager_b", "manager_a")
        };
        assert!(
            holds_access_manage(&app, winner_role).await,
            "round {round}: the winner still manages"
        );
        assert!(
            !holds_access_manage(&app, loser_role).await,
            "round {round}"
        );
    }
}

async fn an_approval_in_flight_commits_before_its_approvers_revocation_or_not_at_all() {
    let app = spawn_app(Backend::Postgres).await;
    let mut ids = Vec::new();
    for _ in 0..24 {
        ids.push(submit(&app, Persona::Alice, refund("10.00")).await["id"].clone());
    }
    let bob = app.token_for(Persona::Bob);
    // First requests record sightings; get them out of the race's way.
    for persona in [Persona::Bob, Persona::Grace] {
        app.graphql_as(persona, "{ viewer { subject } }", json!({}))
            .await
            .expect_ok();
    }
    let approvals = futures_util::future::join_all(ids.iter().enumerate().map(|(i, id)| {
        let bob = &bob;
        let app = &app;
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(20 * i as u64)).await;
            approve_with(app, bob, id).await
        }
    }));
    let revocation = async {
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        let revoke =
            json!({ "input": { "role": "finance", "action": "REQUEST_VIEW", "policy": "refund" } });
        app.graphql_as(Persona::Grace, REVOKE, revoke)
            .await
            .expect_ok();
    };
    let (answers, ()) = tokio::join!(approvals, revocation);
    let mut approved = 0;
    for response in answers {
        if response.body["errors"].is_null() {
            approved += 1;
        } else {
            assert_eq!(
                response.error_code(),
                Some("NOT_FOUND"),
                "refused, as to a stranger: {}",
                response.body
            );
        }
    }
    assert!(
        approved > 0 && approved < ids.len(),
        "the revocation fell among the approvals ({approved} of {})",
        ids.len()
    );
    let revoked_at = sequences(&app, "permission.revoked").await;
    let revoked_at = revoked_at
        .iter()
        .map(|(_, s)| *s)
        .max()
        .expect("the revocation is audited");
    let decided = sequences(&app, "request.approved").await;
    assert_eq!(
        decided.len(),
        approved,
        "every answered approval is audited, and only those"
    );
    for (request, sequence) in decided {
        assert!(
            sequence < revoked_at,
            "{request:?} was approved at {sequence}, after the revocation at {revoked_at}"
        );
    }
}
