//! The audit log: complete events, append-only storage, a hash chain that shows tampering,
//! search for auditors, and the CLI's verify / checkpoint / export.

use std::process::Output;

use entity::{audit_chain_head, audit_event};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, Persona, TestApp, spawn_app};
use crate::lifecycle_helpers::*;

const EVENTS: &str = "query($filter: AuditEventFilter, $first: Int, $after: String) {
    auditEvents(filter: $filter, first: $first, after: $after) {
        edges { cursor node { sequence occurredAt actor actorRoles action subjectType subjectId
            requestId summary reason correlationId idempotencyKey before after hash prevHash } }
        pageInfo { hasNextPage endCursor } } }";
const VERIFY: &str =
    "{ verifyAuditChain { ok checked firstBrokenSequence headSequence headHash } }";

async fn events(app: &TestApp, filter: Value) -> Vec<Value> {
    let response = app
        .graphql_as(
            Persona::Frank,
            EVENTS,
            json!({ "filter": filter, "first": 100 }),
        )
        .await;
    response.expect_ok()["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn verify(app: &TestApp) -> Value {
    app.graphql_as(Persona::Frank, VERIFY, json!({}))
        .await
        .expect_ok()["verifyAuditChain"]
        .clone()
}

async fn connect(app: &TestApp) -> DatabaseConnection {
    Database::connect(app.database_url.clone())
        .await
        .expect("a direct connection")
}

/// What a database superuser would do first: take the append-only triggers away.
async fn drop_triggers(db: &DatabaseConnection) {
    let statements: &[&str] = match db.get_database_backend() {
        DbBackend::Sqlite => &[
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ],
        _ => &["DROP TRIGGER audit_events_no_change ON audit_events"],
    };
    for statement in statements {
        db.execute_unprepared(statement)
            .await
            .expect("dropping a trigger as superuser");
    }
}

async fn some_history(app: &TestApp) {
    for _ in 0..3 {
        let request = submit(app, Persona::Alice, refund("250.00")).await;
        approve_with(app, &app.token_for(Persona::Bob), &request["id"])
            .await
            .expect_ok();
    }
}

async fn cli(app: &TestApp, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("COUNTERSIGN_JWT_SECRET", crate::helpers::TEST_SECRET)
        .output()
        .await
        .expect("running countersign")
}

backend_tests!(
    every_state_change_writes_one_complete_event,
    a_failed_command_writes_no_event_and_a_refused_one_is_recorded_as_denied,
    only_auditors_search_the_log_newest_first_page_by_page,
    updates_and_deletes_of_audit_events_fail,
    an_edited_event_is_found_by_the_api_and_the_cli,
    a_deleted_event_is_found,
    two_swapped_events_are_found,
    a_rewrite_after_a_checkpoint_is_caught_by_verify_with_the_checkpoint,
    a_truncated_history_is_caught_by_verify_with_a_checkpoint,
    the_log_exports_as_ndjson_and_csv
);

async fn every_state_change_writes_one_complete_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token_for(Persona::Alice);
    let mut input = refund("250.00");
    input["idempotencyKey"] = json!("refund-o-1");
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&alice)
        .header("x-request-id", "ticket-4711")
        .json(&json!({ "query": submit_mutation(), "variables": { "input": input } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "ticket-4711");
    let body: Value = response.json().await.unwrap();
    let id = body["data"]["submitRequest"]["request"]["id"].clone();
    approve_with(&app, &app.token_for(Persona::Bob), &id)
        .await
        .expect_ok();

    let trail = events(&app, json!({ "requestId": id })).await;
    assert_eq!(trail.len(), 2, "one event per change");
    let (approved, submitted) = (&trail[0], &trail[1]);
    assert_eq!(submitted["action"], "request.submitted");
    assert_eq!(submitted["actor"], "alice");
    assert_eq!(submitted["actorRoles"], json!(["support"]));
    assert_eq!(submitted["subjectType"], "request");
    assert_eq!(submitted["subjectId"], id);
    assert_eq!(submitted["requestId"], id);
    assert_eq!(submitted["correlationId"], "ticket-4711");
    assert_eq!(submitted["idempotencyKey"], "refund-o-1");
    assert_eq!(submitted["before"], Value::Null);
    assert_eq!(submitted["after"]["status"], "PENDING");
    assert!(
        submitted["summary"]
            .as_str()
            .unwrap()
            .starts_with("alice submitted refund")
    );
    assert!(submitted["occurredAt"].is_string());

    assert_eq!(approved["action"], "request.approved");
    assert_eq!(
        approved["sequence"].as_i64().unwrap(),
        submitted["sequence"].as_i64().unwrap() + 1
    );
    assert_eq!(approved["prevHash"], submitted["hash"]);
    assert_eq!(approved["before"]["status"], "PENDING");
    assert_eq!(approved["after"]["status"], "APPROVED");
    assert_eq!(approved["reason"], "looks right");
    assert!(
        approved["summary"]
            .as_str()
            .unwrap()
            .contains("bob approved stage 1 (Finance review) of refund")
    );
    assert!(
        approved["correlationId"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "generated when absent"
    );

    // Administration is audited too, with before and after.
    app.graphql_as(
        Persona::Grace,
        "mutation { grantPermission(input: { role: \"ops\", action: AUDIT_READ }) { role } }",
        json!({}),
    )
    .await
    .expect_ok();
    app.graphql_as(Persona::Grace, "mutation { disableUser(input: { subject: \"bob\", reason: \"left\" }) { user { subject } } }", json!({})).await.expect_ok();
    let granted = events(&app, json!({ "action": "permission.granted" })).await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["subjectType"], "role");
    assert_eq!(
        granted[0]["before"],
        json!([{ "action": "request.view", "policy": "access_grant" }, { "action": "request.view", "policy": "account_change" }])
    );
    let disabled = events(&app, json!({ "subjectType": "user", "subjectId": "bob" })).await;
    assert_eq!(disabled[0]["action"], "user.disabled");
    assert_eq!(disabled[0]["reason"], "left");
}

async fn a_failed_command_writes_no_event_and_a_refused_one_is_recorded_as_denied(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let request = submit(&app, Persona::Alice, refund("250.00")).await;
    let before = events(&app, json!({})).await.len();
    let bad = submit_with(
        &app,
        &app.token_for(Persona::Alice),
        json!({ "policy": "refund", "title": "", "amount": "1", "currency": "EUR" }),
    )
    .await;
    assert_eq!(bad.error_code(), Some("BAD_USER_INPUT"));
    let stale = app
        .graphql_as(
            Persona::Bob,
            &decide_mutation("approveRequest"),
            json!({ "input": { "id": request["id"], "expectedVersion": 7 } }),
        )
        .await;
    assert_eq!(stale.error_code(), Some("CONFLICT"));
    assert_eq!(
        events(&app, json!({})).await.len(),
        before,
        "rolled back: nothing written"
    );

    let refused = approve_with(&app, &app.token_for(Persona::Frank), &request["id"]).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    let denied = events(&app, json!({ "action": "request.approve.denied" })).await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["actor"], "frank");
    assert_eq!(denied[0]["requestId"], request["id"]);
    assert!(denied[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

async fn only_auditors_search_the_log_newest_first_page_by_page(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    for persona in [Persona::Alice, Persona::Bob, Persona::Dave] {
        let response = app.graphql_as(persona, EVENTS, json!({})).await;
        assert_eq!(response.error_code(), Some("FORBIDDEN"), "{persona:?}");
        assert_eq!(
            app.graphql_as(persona, VERIFY, json!({}))
                .await
                .error_code(),
            Some("FORBIDDEN")
        );
    }
    let mut sequences = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .graphql_as(
                Persona::Grace,
                EVENTS,
                json!({ "first": 2, "after": after }),
            )
            .await;
        let page = page.expect_ok()["auditEvents"].clone();
        sequences.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["sequence"].as_i64().unwrap()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(sequences, (1..=7).rev().collect::<Vec<i64>>());
    assert_eq!(events(&app, json!({ "actor": "bob" })).await.len(), 3);
}

async fn updates_and_deletes_of_audit_events_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    let db = connect(&app).await;
    assert!(
        db.execute_unprepared("UPDATE audit_events SET summary = 'nothing happened'")
            .await
            .is_err()
    );
    assert!(
        db.execute_unprepared("DELETE FROM audit_events WHERE sequence = 1")
            .await
            .is_err()
    );
    if backend == Backend::Postgres {
        assert!(
            db.execute_unprepared("TRUNCATE audit_events")
                .await
                .is_err()
        );
    }
    assert_eq!(verify(&app).await["ok"], true);
}

async fn an_edited_event_is_found_by_the_api_and_the_cli(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    assert_eq!(
        verify(&app).await,
        json!({ "ok": true, "checked": 7, "firstBrokenSequence": null, "headSequence": 7, "headHash": verify(&app).await["headHash"] })
    );
    let db = connect(&app).await;
    drop_triggers(&db).await;
    let mut event = audit_event::Entity::find_by_id(4)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    event.reason = Set(Some("rubber-stamped".into()));
    event.update(&db).await.unwrap();

    let report = verify(&app).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["firstBrokenSequence"], 4);
    let output = cli(&app, &["audit", "verify"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("broken at sequence 4"));
}

async fn a_deleted_event_is_found(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    let db = connect(&app).await;
    drop_triggers(&db).await;
    audit_event::Entity::delete_by_id(3)
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(verify(&app).await["firstBrokenSequence"], 3);
}

async fn two_swapped_events_are_found(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    let db = connect(&app).await;
    drop_triggers(&db).await;
    let two = audit_event::Entity::find_by_id(2)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let three = audit_event::Entity::find_by_id(3)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    // Swap everything but the sequence numbers.
    for (target, source) in [(2, three.clone()), (3, two.clone())] {
        audit_event::Entity::delete_by_id(target)
            .exec(&db)
            .await
            .unwrap();
        let mut moved = source;
        moved.sequence = target;
        moved.id = uuid::Uuid::now_v7();
        moved
            .into_active_model()
            .reset_all()
            .insert(&db)
            .await
            .unwrap();
    }
    assert_eq!(verify(&app).await["firstBrokenSequence"], 2);
}

async fn a_rewrite_after_a_checkpoint_is_caught_by_verify_with_the_checkpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    let checkpoint = cli(&app, &["audit", "checkpoint"]).await;
    assert!(checkpoint.status.success());
    let checkpoint = String::from_utf8(checkpoint.stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert!(checkpoint.starts_with("7:"));
    assert!(
        cli(&app, &["audit", "verify", "--checkpoint", &checkpoint])
            .await
            .status
            .success()
    );

    // A careful attacker edits event 5 and re-hashes everything after it, head included.
    let db = connect(&app).await;
    drop_triggers(&db).await;
    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::Sequence.gte(5))
        .order_by_asc(audit_event::Column::Sequence)
        .all(&db)
        .await
        .unwrap();
    let mut prev = audit_event::Entity::find_by_id(4)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .hash;
    for mut row in rows {
        if row.sequence == 5 {
            row.reason = Some("never happened".into());
        }
        row.prev_hash = prev.clone();
        row.hash = countersign::audit::model::chain_hash(
            &prev,
            &countersign::audit::model::canonical(&row),
        );
        prev = row.hash.clone();
        let mut active = row.clone().into_active_model();
        active.reason = Set(row.reason.clone());
        active.prev_hash = Set(row.prev_hash.clone());
        active.hash = Set(row.hash.clone());
        active.update(&db).await.unwrap();
    }
    let mut head = audit_chain_head::Entity::find_by_id(1)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    head.hash = Set(prev);
    head.update(&db).await.unwrap();

    assert_eq!(
        verify(&app).await["ok"],
        true,
        "self-consistent: only a checkpoint can tell"
    );
    let caught = cli(&app, &["audit", "verify", "--checkpoint", &checkpoint]).await;
    assert!(!caught.status.success());
    assert!(String::from_utf8_lossy(&caught.stderr).contains("broken at sequence 7"));
}

async fn a_truncated_history_is_caught_by_verify_with_a_checkpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    let checkpoint = String::from_utf8(cli(&app, &["audit", "checkpoint"]).await.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let db = connect(&app).await;
    drop_triggers(&db).await;
    let six = audit_event::Entity::find_by_id(6)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    audit_event::Entity::delete_by_id(7)
        .exec(&db)
        .await
        .unwrap();
    let mut head = audit_chain_head::Entity::find_by_id(1)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    head.sequence = Set(6);
    head.hash = Set(six.hash);
    head.update(&db).await.unwrap();
    assert_eq!(verify(&app).await["ok"], true);
    assert!(
        !cli(&app, &["audit", "verify", "--checkpoint", &checkpoint])
            .await
            .status
            .success()
    );
}

async fn the_log_exports_as_ndjson_and_csv(backend: Backend) {
    let app = spawn_app(backend).await;
    some_history(&app).await;
    let ndjson = cli(&app, &["audit", "export", "--format", "ndjson"]).await;
    assert!(
        ndjson.status.success(),
        "{}",
        String::from_utf8_lossy(&ndjson.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(ndjson.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["action"], "demo.seeded");
    assert_eq!(lines[0]["sequence"], "1");
    assert_eq!(lines[6]["action"], "request.approved");

    let csv = cli(&app, &["audit", "export", "--format", "csv"]).await;
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap().get(0), Some("sequence"));
    assert_eq!(reader.records().count(), 7);

    let future = cli(&app, &["audit", "export", "--from", "2999-01-01T00:00:00Z"]).await;
    assert!(future.stdout.is_empty());
}

backend_tests!(a_tampered_log_turns_the_chain_gauge_to_zero_without_anyone_asking);

async fn a_tampered_log_turns_the_chain_gauge_to_zero_without_anyone_asking(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |config| {
        config.jobs.audit_verify_every = std::time::Duration::from_millis(200);
    })
    .await;
    some_history(&app).await;
    let chain_ok = || app.metric("countersign_audit_chain_ok", &[]);
    let ok =
        crate::helpers::eventually("the chain gauge is set", || async { chain_ok().await }).await;
    assert_eq!(ok, 1.0);
    let db = connect(&app).await;
    drop_triggers(&db).await;
    db.execute_unprepared(
        "UPDATE audit_events SET summary = 'nothing happened' WHERE sequence = 2",
    )
    .await
    .unwrap();
    crate::helpers::eventually("the verify job notices the edit", || async {
        (chain_ok().await == Some(0.0)).then_some(())
    })
    .await;
}
