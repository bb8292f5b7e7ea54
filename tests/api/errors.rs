//! One error path: a database failure inside a resolver reaches the client as INTERNAL,
//! with nothing of the database in it, and reaches the log with its cause.

use std::process::Stdio;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{Backend, TestDatabase};

backend_tests!(a_database_failure_in_a_resolver_is_internal_masked_and_logged);

async fn a_database_failure_in_a_resolver_is_internal_masked_and_logged(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let cwd = std::env::temp_dir().join(format!("cs-errors-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&cwd).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .env_clear()
        .current_dir(&cwd)
        .kill_on_drop(true)
        .arg("serve")
        .env("DATABASE_URL", &database.url)
        .env("COUNTERSIGN_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting countersign serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut address, mut grace) = (None, None);
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Countersign listening on ") {
                address = Some(rest.trim().to_owned());
            } else if line.trim_start().starts_with("grace ") {
                grace = line.split_whitespace().nth(2).map(str::to_owned);
            } else if line.starts_with("Open GraphiQL as") {
                break;
            }
        }
    })
    .await
    .expect("the banner");
    let (address, grace) = (address.unwrap(), grace.unwrap());

    // Break what `viewer.permissions` reads, behind the server's back.
    let direct = Database::connect(database.url.clone()).await.unwrap();
    direct
        .execute_unprepared("ALTER TABLE role_permissions RENAME TO role_permissions_gone")
        .await
        .unwrap();

    let response = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .bearer_auth(&grace)
        .json(&json!({ "query": "{ viewer { subject permissions { action } } }" }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "INTERNAL", "{body}");
    assert_eq!(error["extensions"]["retryable"], true);
    assert_eq!(error["message"], "internal error");
    let text = body.to_string().to_lowercase();
    for leak in [
        "role_permissions",
        "no such table",
        "does not exist",
        "relation",
        "sql",
        "database",
    ] {
        assert!(!text.contains(leak), "{leak:?} reached the client: {body}");
    }

    // The cause is in the log.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let logged = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("internal error") && line.contains("role_permissions") {
                return line;
            }
        }
        panic!("the log ended without the cause");
    })
    .await
    .expect("the cause is logged");
    assert!(logged.contains("ERROR"), "{logged}");
    child.kill().await.ok();
    std::fs::remove_dir_all(cwd).ok();
}

backend_tests!(a_malformed_date_time_is_refused_before_execution);

/// A malformed date-time is refused while the operation is validated, before anything
/// runs: BAD_USER_INPUT with no `path`, as a literal and as a variable.
async fn a_malformed_date_time_is_refused_before_execution(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let grace = app.token_for(crate::helpers::Persona::Grace);
    let literal = app
        .graphql(
            Some(&grace),
            r#"{ requests(filter: { createdAfter: "nope" }) { edges { cursor } } }"#,
            json!({}),
        )
        .await;
    let variable = app
        .graphql(
            Some(&grace),
            "query($from: DateTime) { auditEvents(filter: { from: $from }) { edges { cursor } } }",
            json!({ "from": "2026-13-45" }),
        )
        .await;
    for refused in [literal, variable] {
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{}",
            refused.body
        );
        assert!(
            refused.body["errors"][0].get("path").is_none(),
            "{}",
            refused.body
        );
        assert!(refused.body["data"].is_null(), "{}", refused.body);
    }
    let fine = app
        .graphql(
            Some(&grace),
            "query($from: DateTime) { auditEvents(filter: { from: $from }) { edges { node { occurredAt } } } }",
            json!({ "from": "2020-01-01T00:00:00Z" }),
        )
        .await;
    let occurred = fine.expect_ok()["auditEvents"]["edges"][0]["node"]["occurredAt"].clone();
    let occurred: chrono::DateTime<chrono::Utc> = occurred.as_str().unwrap().parse().unwrap();
    assert!(occurred.timestamp() > 1_577_836_800);
}
