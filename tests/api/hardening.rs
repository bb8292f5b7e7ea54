//! The promises that must hold against an attacker or a careless client (one test per
//! defect found in the hardening review).

use serde_json::json;

use crate::helpers::{Backend, Persona, spawn_app};
use crate::lifecycle_helpers::{approve_with, refund, submit};

backend_tests!(a_threshold_never_compares_across_currencies);

/// A threshold is never compared with an amount in another currency: 999.999 KWD
/// (≈ 3,250 USD) and 999.9999 CLF (≈ 40,000 USD) keep the sign-off stage, because the
/// refund policy names no threshold for them; EUR and USD behave as before.
async fn a_threshold_never_compares_across_currencies(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.token_for(Persona::Bob);
    for (amount, currency, lead_stage, after_one) in [
        ("999.999", "KWD", "WAITING", "PENDING"),
        ("999.9999", "CLF", "WAITING", "PENDING"),
        ("1000.00", "EUR", "WAITING", "PENDING"),
        ("1000.00", "USD", "WAITING", "PENDING"),
        ("999.99", "EUR", "SKIPPED", "APPROVED"),
        ("999.99", "USD", "SKIPPED", "APPROVED"),
    ] {
        let mut input = refund(amount);
        input["currency"] = json!(currency);
        let request = submit(&app, Persona::Alice, input).await;
        assert_eq!(
            request["stages"][1]["state"], lead_stage,
            "{amount} {currency}"
        );
        let approved = approve_with(&app, &bob, &request["id"]).await;
        let status = &approved.expect_ok()["approveRequest"]["request"]["status"];
        assert_eq!(
            status, after_one,
            "{amount} {currency} after one finance approval"
        );
    }

    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { version } } }";
    let stage = |min_amounts| {
        json!({ "input": {
            "key": "refund", "name": "Refund", "expiresAfterSeconds": 3600,
            "stages": [{ "name": "Lead", "approverRoles": ["finance_lead"], "requiredApprovals": 1,
                         "minAmounts": min_amounts }],
        }})
    };
    for bad in [
        json!([{ "amount": "10", "currency": "EUR" }, { "amount": "20.00", "currency": "EUR" }]),
        json!([{ "amount": "10.001", "currency": "EUR" }]),
        json!([{ "amount": "-1", "currency": "EUR" }]),
        json!([{ "amount": "10", "currency": "XXX" }]),
    ] {
        let refused = app
            .graphql_as(Persona::Grace, upsert, stage(bad.clone()))
            .await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{bad}");
        assert_eq!(
            refused.body["errors"][0]["extensions"]["field"],
            "stages.minAmounts"
        );
    }
    let bare = app
        .graphql_as(
            Persona::Grace,
            upsert,
            json!({ "input": {
                "key": "refund", "name": "Refund", "expiresAfterSeconds": 3600,
                "stages": [{ "name": "Lead", "approverRoles": ["finance_lead"],
                             "requiredApprovals": 1, "minAmount": "1000" }],
            }}),
        )
        .await;
    assert_eq!(
        bare.error_code(),
        Some("BAD_USER_INPUT"),
        "a threshold without a currency"
    );
}

/// Runs SQL against the app's database behind its back, as an operator (or a fault) would.
async fn behind_the_back(app: &crate::helpers::TestApp, sql: &str) {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(&app.database_url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.unwrap();
}

backend_tests!(
    a_socket_is_refused_when_standing_cannot_be_read,
    an_operation_is_refused_when_standing_cannot_be_read,
    every_operation_on_a_socket_rechecks_standing
);

/// The standing check fails closed: when it cannot be read, `connection_init` is refused
/// with 1013 (try again later) instead of acknowledged.
async fn a_socket_is_refused_when_standing_cannot_be_read(backend: Backend) {
    use crate::websocket::{CLOSES_WITHIN, close_code, connect, send};
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    app.graphql(Some(&alice), "{ viewer { subject } }", json!({}))
        .await
        .expect_ok();
    behind_the_back(&app, "ALTER TABLE users RENAME TO users_elsewhere").await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {alice}") } });
    send(&mut socket, init).await;
    assert_eq!(close_code(&mut socket, CLOSES_WITHIN).await, Some(1013));
}

/// The per-operation check fails closed too: standing that cannot be read closes the
/// socket (1013, which clients retry) rather than running the operation.
async fn an_operation_is_refused_when_standing_cannot_be_read(backend: Backend) {
    use crate::websocket::{CLOSES_WITHIN, close_code, connect_as, send};
    let app =
        crate::helpers::spawn_app_with(backend, |config| config.background_jobs = false).await;
    let alice = app.token_for(Persona::Alice);
    let mut socket = connect_as(&app, &alice).await;
    behind_the_back(&app, "ALTER TABLE users RENAME TO users_elsewhere").await;
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ viewer { subject } }" } });
    send(&mut socket, subscribe).await;
    assert_eq!(close_code(&mut socket, CLOSES_WITHIN).await, Some(1013));
}

/// Standing is read again for each operation: a user disabled without any notice
/// reaching this replica (background checks off) cannot start one more.
async fn every_operation_on_a_socket_rechecks_standing(backend: Backend) {
    use crate::websocket::{CLOSES_WITHIN, close_code, connect_as, send};
    let app =
        crate::helpers::spawn_app_with(backend, |config| config.background_jobs = false).await;
    let alice = app.token_for(Persona::Alice);
    let mut socket = connect_as(&app, &alice).await;
    behind_the_back(&app, "UPDATE users SET disabled_at = '2026-01-01T00:00:00+00:00', disabled_reason = 'test' WHERE subject = 'alice'").await;
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ viewer { subject } }" } });
    send(&mut socket, subscribe).await;
    assert_eq!(close_code(&mut socket, CLOSES_WITHIN).await, Some(4403));
}

backend_tests!(verifying_the_chain_during_writes_is_always_ok);

/// Verifying while others write checks the prefix up to the head it read first, so it
/// never reports the appends it raced with as tampering.
async fn verifying_the_chain_during_writes_is_always_ok(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let writes = async {
        for i in 0..40 {
            let mut input = refund("12.00");
            input["title"] = json!(format!("Concurrent refund {i}"));
            crate::lifecycle_helpers::submit_with(&app, &alice, input)
                .await
                .expect_ok();
        }
    };
    let checks = async {
        let mut reports = Vec::new();
        for _ in 0..25 {
            let report = app
                .graphql_as(
                    Persona::Frank,
                    "{ verifyAuditChain { ok checked firstBrokenSequence } }",
                    json!({}),
                )
                .await;
            reports.push(report.expect_ok()["verifyAuditChain"].clone());
        }
        reports
    };
    let ((), reports) = tokio::join!(writes, checks);
    for report in &reports {
        assert_eq!(report["ok"], true, "{reports:?}");
    }
    let grew = reports.first().unwrap()["checked"] != reports.last().unwrap()["checked"];
    assert!(grew, "the checks ran while the log grew: {reports:?}");
}

backend_tests!(each_subscription_event_is_resolved_fresh);

/// Each delivered event is resolved against fresh data: the APPROVED event carries the
/// approving decision and the stage it completed, not what the SUBMITTED event cached.
async fn each_subscription_event_is_resolved_fresh(backend: Backend) {
    use crate::subscriptions::{WITHIN, next_event};
    use crate::websocket::{connect_as, send};
    let app = spawn_app(backend).await;
    let bob = app.token_for(Persona::Bob);
    let mut socket = connect_as(&app, &bob).await;
    let query = "subscription { requestEvents(after: \"0\") { kind request { id
        decisions { verdict approver { subject } } stages { position state } viewerCanApprove } } }";
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let submitted = next_event(&mut socket, WITHIN).await.expect("SUBMITTED");
    assert_eq!(submitted["request"]["decisions"], json!([]));
    assert_eq!(submitted["request"]["viewerCanApprove"], true);
    approve_with(&app, &bob, &request["id"]).await.expect_ok();
    let approved = next_event(&mut socket, WITHIN).await.expect("APPROVED");
    assert_eq!(approved["kind"], "APPROVED");
    assert_eq!(
        approved["request"]["decisions"],
        json!([{ "verdict": "APPROVE", "approver": { "subject": "bob" } }])
    );
    assert_eq!(approved["request"]["stages"][0]["state"], "APPROVED");
    assert_eq!(approved["request"]["viewerCanApprove"], false);
}

backend_tests!(
    eligible_approvers_are_batched_exclude_the_disabled_and_lists_cost_per_row,
    aliases_and_fields_per_operation_are_limited
);

/// `eligibleApprovers` is batched across the page (the same statements for 5 rows as
/// for 12), lists nobody disabled, and the cost of a list scales with `first`.
async fn eligible_approvers_are_batched_exclude_the_disabled_and_lists_cost_per_row(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let erin = app.token("erin", &["finance".to_owned()]);
    app.graphql(Some(&erin), "{ viewer { subject } }", json!({}))
        .await
        .expect_ok();
    let disable =
        "mutation($input: DisableUserInput!) { disableUser(input: $input) { user { subject } } }";
    app.graphql_as(
        Persona::Grace,
        disable,
        json!({ "input": { "subject": "erin", "reason": "left" } }),
    )
    .await
    .expect_ok();
    for persona in [Persona::Bob, Persona::Carol] {
        app.graphql_as(persona, "{ viewer { subject } }", json!({}))
            .await
            .expect_ok();
    }
    for i in 0..12 {
        let mut input = refund("20.00");
        input["title"] = json!(format!("Refund {i}"));
        submit(&app, Persona::Alice, input).await;
    }
    let query = "query($first: Int) { requests(first: $first) { edges { node {
        eligibleApprovers { roles users { subject } } } } } }";
    let grace = app.token_for(Persona::Grace);
    // The first page reads the policy versions, which the server then keeps (they never
    // change); measure after it.
    app.graphql(Some(&grace), query, json!({ "first": 1 }))
        .await
        .expect_ok();
    let mut costs = Vec::new();
    for first in [5, 12] {
        let page = app
            .graphql(Some(&grace), query, json!({ "first": first }))
            .await;
        let edges = page.expect_ok()["requests"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(edges.len(), first);
        for edge in &edges {
            assert_eq!(
                edge["node"]["eligibleApprovers"]["users"],
                json!([{ "subject": "bob" }, { "subject": "carol" }])
            );
        }
        costs.push(page.statements());
    }
    assert_eq!(
        costs[0], costs[1],
        "statements for 5 rows vs 12 rows: {costs:?}"
    );

    let heavy = "query($first: Int) { requests(first: $first) { edges { node {
        id title status amount currency createdAt updatedAt expiresAt version
        requester { subject name email } policy { key name version stages { name approverRoles } }
        stages { position name state approvals decisions { verdict comment approver { subject } } }
        decisions { verdict comment createdAt approver { subject name } }
        auditTrail { action summary actor occurredAt sequence hash }
        eligibleApprovers { roles users { subject name } } viewerCanApprove } } } }";
    app.graphql(Some(&grace), heavy, json!({ "first": 10 }))
        .await
        .expect_ok();
    let refused = app
        .graphql(Some(&grace), heavy, json!({ "first": 100 }))
        .await;
    assert_eq!(
        refused.error_code(),
        Some("QUERY_REJECTED"),
        "{}",
        refused.body
    );

    let frank = app.token_for(Persona::Frank);
    app.graphql(Some(&frank), "{ verifyAuditChain { ok } }", json!({}))
        .await
        .expect_ok();
    let twice = app
        .graphql(
            Some(&frank),
            "{ a: verifyAuditChain { ok } b: verifyAuditChain { ok } }",
            json!({}),
        )
        .await;
    assert_eq!(twice.error_code(), Some("QUERY_REJECTED"), "{}", twice.body);
}

/// Hundreds of aliases (or fields) in one operation are refused before anything runs.
async fn aliases_and_fields_per_operation_are_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let many = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| format!("v{i}: viewer {{ subject }}"))
            .collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let fine = app.graphql_as(Persona::Alice, &many(10), json!({})).await;
    assert_eq!(fine.expect_ok()["v9"]["subject"], "alice");
    let refused = app.graphql_as(Persona::Alice, &many(500), json!({})).await;
    assert_eq!(
        refused.error_code(),
        Some("QUERY_REJECTED"),
        "{}",
        refused.body
    );
    assert!(refused.body["data"].is_null());
    let wide: Vec<String> = (0..600).map(|_| "subject".to_owned()).collect();
    let wide = format!("{{ viewer {{ {} }} }}", wide.join(" "));
    let refused = app.graphql_as(Persona::Alice, &wide, json!({})).await;
    assert_eq!(
        refused.error_code(),
        Some("QUERY_REJECTED"),
        "{}",
        refused.body
    );
}

backend_tests!(an_audit_event_cannot_be_replaced);

/// An event cannot be overwritten in place: SQLite's INSERT OR REPLACE (which skips
/// DELETE triggers) and PostgreSQL's ON CONFLICT DO UPDATE are both refused.
async fn an_audit_event_cannot_be_replaced(backend: Backend) {
    // No background jobs: on SQLite, a relay's write between the forger's read and its
    // write would make the forger's lock upgrade fail (busy), not the trigger.
    let app =
        crate::helpers::spawn_app_with(backend, |config| config.background_jobs = false).await;
    submit(&app, Persona::Alice, refund("25.00")).await;
    let copy = "CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE sequence = 1; \
                UPDATE forged SET summary = 'nothing happened';";
    let replace = match backend {
        crate::helpers::Backend::Sqlite => {
            "INSERT OR REPLACE INTO audit_events SELECT * FROM forged"
        }
        crate::helpers::Backend::Postgres => {
            "INSERT INTO audit_events SELECT * FROM forged \
            ON CONFLICT (id) DO UPDATE SET summary = EXCLUDED.summary"
        }
    };
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    let db = Database::connect(&app.database_url).await.unwrap();
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(copy).await.expect("the forged copy");
    let refused = txn
        .execute_unprepared(replace)
        .await
        .expect_err("the replace must fail");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    txn.rollback().await.unwrap();
    let report = app
        .graphql_as(Persona::Frank, "{ verifyAuditChain { ok } }", json!({}))
        .await;
    assert_eq!(report.expect_ok()["verifyAuditChain"]["ok"], true);
    let trail = app
        .graphql_as(
            Persona::Frank,
            "{ auditEvents(first: 100) { edges { node { summary } } } }",
            json!({}),
        )
        .await;
    assert!(!trail.body.to_string().contains("nothing happened"));
}

backend_tests!(graphiql_does_not_persist_the_token);

/// GraphiQL never keeps the bearer token in localStorage, clears what an older page
/// left there, and loads only scripts whose hash it names.
async fn graphiql_does_not_persist_the_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/graphql").await;
    // Under the console's policy: no inline script could run, so the page's own script
    // (in-memory storage, the token by postMessage) is a file of its own.
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("<script src=\"/console/graphiql-page.js\">"),
        "{page}"
    );
    let script = app
        .get("/console/graphiql-page.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        script.contains("storage: memoryStorage()")
            && script.contains("shouldPersistHeaders: false")
    );
    // Every vendored script and stylesheet is pinned by its hash.
    assert_eq!(page.matches("integrity=\"sha384-").count(), 4, "{page}");
}

postgres_tests!(the_last_access_manager_cannot_be_revoked_by_a_race);

/// Two concurrent revocations of `access.manage` from the only two roles holding it:
/// one is refused every time, so somebody can always still administer.
async fn the_last_access_manager_cannot_be_revoked_by_a_race() {
    let app = spawn_app(crate::helpers::Backend::Postgres).await;
    let grace = app.token_for(Persona::Grace);
    let sam = app.token("sam", &["security".to_owned()]);
    let grant =
        "mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role } }";
    let revoke =
        "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role } }";
    let input = |role: &str| json!({ "input": { "role": role, "action": "ACCESS_MANAGE" } });
    app.graphql(Some(&grace), grant, input("security"))
        .await
        .expect_ok();
    for round in 0..20 {
        let (by_grace, by_sam) = tokio::join!(
            app.graphql(Some(&grace), revoke, input("security")),
            app.graphql(Some(&sam), revoke, input("admin")),
        );
        let revoked_security = by_grace.body.get("errors").is_none();
        let revoked_admin = by_sam.body.get("errors").is_none();
        assert!(
            !(revoked_security && revoked_admin),
            "round {round}: both revocations committed"
        );
        assert!(
            revoked_security || revoked_admin,
            "round {round}: one of them may go: {} {}",
            by_grace.body,
            by_sam.body
        );
        if revoked_security {
            app.graphql(Some(&grace), grant, input("security"))
                .await
                .expect_ok();
        } else {
            app.graphql(Some(&sam), grant, input("admin"))
                .await
                .expect_ok();
        }
    }
}

backend_tests!(policies_show_only_current_versions_and_cannot_be_enumerated);

/// `policies` lists only current versions (not an older one that still named the
/// viewer), and a policy the viewer has nothing to do with answers like a missing one.
async fn policies_show_only_current_versions_and_cannot_be_enumerated(backend: Backend) {
    let app = spawn_app(backend).await;
    let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { version } } }";
    let payout = |role: &str| {
        json!({ "input": {
            "key": "payout", "name": "Payout", "expiresAfterSeconds": 3600,
            "stages": [{ "name": "Treasury", "approverRoles": [role], "requiredApprovals": 1 }],
        }})
    };
    let tara = app.token("tara", &["treasury".to_owned()]);
    let listed = |token: String| {
        let app = &app;
        async move {
            let response = app
                .graphql(Some(&token), "{ policies { key version } }", json!({}))
                .await;
            response.expect_ok()["policies"].clone()
        }
    };
    app.graphql_as(Persona::Grace, upsert, payout("treasury"))
        .await
        .expect_ok();
    assert_eq!(
        listed(tara.clone()).await,
        json!([{ "key": "payout", "version": 1 }])
    );
    app.graphql_as(Persona::Grace, upsert, payout("security"))
        .await
        .expect_ok();
    let history = app
        .graphql(
            Some(&tara),
            "{ policyVersions(key: \"payout\") { version } }",
            json!({}),
        )
        .await;
    assert_eq!(
        history.expect_ok()["policyVersions"],
        json!([]),
        "nor its history"
    );
    assert_eq!(
        listed(tara).await,
        json!([]),
        "version 1 is not current any more"
    );

    let dave = app.token_for(Persona::Dave);
    let try_policy = |key: &str| {
        let mut input = refund("10.00");
        input["policy"] = json!(key);
        crate::lifecycle_helpers::submit_with(&app, &dave, input)
    };
    let (hidden, missing) = (try_policy("payout").await, try_policy("nope").await);
    assert_eq!(
        hidden.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        hidden.body
    );
    assert_eq!(missing.error_code(), Some("BAD_USER_INPUT"));
    let strip = |body: &serde_json::Value| {
        body.to_string()
            .replace("payout", "KEY")
            .replace("nope", "KEY")
    };
    assert_eq!(
        strip(&hidden.body),
        strip(&missing.body),
        "identical answers"
    );
    // Both probes are on record for the auditors (a missing policy is recorded too, so
    // the statements each cost cannot tell them apart either).
    let denied = app
        .graphql_as(Persona::Frank, r#"{ auditEvents(filter: { action: "request.submit.denied" }) { edges { node { actor subjectId } } } }"#, json!({}))
        .await;
    assert_eq!(
        denied.expect_ok()["auditEvents"]["edges"],
        json!([
            { "node": { "actor": "dave", "subjectId": "nope" } },
            { "node": { "actor": "dave", "subjectId": "payout" } },
        ])
    );
}

postgres_tests!(the_server_runs_as_a_role_that_may_only_append_the_audit_log);

/// The server runs as a role that may only read and append the audit log (the grants
/// in docs/postgres-app-role.sql): requests are filed, decided and verified, while that
/// role can neither edit an event nor disable the log's triggers.
async fn the_server_runs_as_a_role_that_may_only_append_the_audit_log() {
    use sea_orm::{ConnectionTrait, Database};
    let owner = spawn_app(crate::helpers::Backend::Postgres).await;
    let role = format!("cs_app_{}", uuid::Uuid::now_v7().simple());
    let grants = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/postgres-app-role.sql"
    ))
    .unwrap()
    .replace("countersign_app", &role);
    let as_owner = Database::connect(&owner.database_url).await.unwrap();
    as_owner
        .execute_unprepared(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    as_owner.execute_unprepared(&grants).await.unwrap();
    let (server, database) = owner.database_url.rsplit_once('/').unwrap();
    let (scheme, host) = server.split_once("://").unwrap();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let restricted_url = format!("{scheme}://{role}@{host}/{database}");

    let app = crate::helpers::spawn_replica_at(&owner, &restricted_url).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let request = submit(&app, Persona::Alice, refund("300.00")).await;
    approve_with(&app, &app.token_for(Persona::Bob), &request["id"])
        .await
        .expect_ok();
    let report = app
        .graphql_as(
            Persona::Frank,
            "{ verifyAuditChain { ok checked } }",
            json!({}),
        )
        .await;
    assert_eq!(report.expect_ok()["verifyAuditChain"]["ok"], true);

    let as_app = Database::connect(&restricted_url).await.unwrap();
    for forbidden in [
        "UPDATE audit_events SET summary = 'x'",
        "DELETE FROM audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_events_no_change ON audit_events",
    ] {
        let refused = as_app
            .execute_unprepared(forbidden)
            .await
            .expect_err(forbidden);
        let text = refused.to_string();
        assert!(
            text.contains("permission denied") || text.contains("must be owner"),
            "{forbidden}: {text}"
        );
    }
    as_app.close().await.unwrap();
    // Roles live in the cluster, not the test database: best effort, so runs do not pile up.
    as_owner
        .execute_unprepared(&format!("DROP OWNED BY {role}"))
        .await
        .ok();
    as_owner
        .execute_unprepared(&format!("DROP ROLE {role}"))
        .await
        .ok();
    as_owner.close().await.unwrap();
}
