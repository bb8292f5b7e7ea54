//! The `countersign` binary as an operator uses it: serve, token, migrate, schema, --help.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{Backend, TEST_SECRET, TestDatabase, spawn_app};

/// The binary with an empty environment, so nothing leaks in from the developer's shell.
fn countersign(cwd: &PathBuf) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    command.env_clear().current_dir(cwd).kill_on_drop(true);
    command
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cs-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

async fn graphql(address: &str, token: &str, query: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("POST /graphql");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

backend_tests!(
    serve_on_a_fresh_database_prints_working_tokens_and_stops_cleanly_on_sigterm,
    the_token_command_prints_a_token_the_server_accepts,
    migrate_lists_applies_and_rolls_back_migrations
);

async fn serve_on_a_fresh_database_prints_working_tokens_and_stops_cleanly_on_sigterm(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let cwd = scratch_dir();
    let mut child = countersign(&cwd)
        .arg("serve")
        .env("DATABASE_URL", &database.url)
        .env("COUNTERSIGN_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting countersign serve");

    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut address, mut tokens, mut graphiql) = (None, Vec::new(), None);
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("reading stdout") {
            if let Some(rest) = line.strip_prefix("Countersign listening on ") {
                address = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("GraphiQL: ") {
                graphiql = Some(rest.trim().to_owned());
            } else if line.starts_with("  ") {
                let fields: Vec<&str> = line.split_whitespace().collect();
                tokens.push((fields[0].to_owned(), fields[2].to_owned()));
            } else if line.starts_with("Open GraphiQL as") {
                break;
            }
        }
    })
    .await
    .expect("serve prints its banner within 60 s");

    let address = address.expect("the listening address");
    let subjects: Vec<&str> = tokens.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        ["alice", "bob", "carol", "dave", "frank", "grace"]
    );
    for (subject, token) in &tokens {
        let (status, body) = graphql(&address, token, "{ viewer { subject roles } }").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["viewer"]["subject"], subject.as_str());
    }
    let page = reqwest::get(graphiql.expect("the GraphiQL URL"))
        .await
        .expect("GET /graphql");
    assert_eq!(page.status(), 200);

    let pid = child.id().expect("a running child").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.expect("kill").success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    std::fs::remove_dir_all(cwd).ok();
}

async fn the_token_command_prints_a_token_the_server_accepts(backend: Backend) {
    let app = spawn_app(backend).await;
    let cwd = scratch_dir();
    let output = countersign(&cwd)
        .args([
            "token", "--sub", "newbie", "--role", "support", "--role", "finance", "--ttl", "10m",
        ])
        .env("COUNTERSIGN_JWT_SECRET", TEST_SECRET)
        .output()
        .await
        .expect("running countersign token");
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let response = app
        .graphql(
            Some(token.trim()),
            "{ viewer { subject roles } }",
            json!({}),
        )
        .await;
    let viewer = &response.expect_ok()["viewer"];
    assert_eq!(viewer["subject"], "newbie");
    assert_eq!(viewer["roles"], json!(["support", "finance"]));
    std::fs::remove_dir_all(cwd).ok();
}

async fn migrate_lists_applies_and_rolls_back_migrations(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let cwd = scratch_dir();
    let run = |args: &'static [&'static str]| {
        let mut command = countersign(&cwd);
        command.args(args).env("DATABASE_URL", &database.url);
        async move {
            let output = command.output().await.expect("running countersign migrate");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).expect("utf-8")
        }
    };
    assert!(
        run(&["migrate", "status"])
            .await
            .contains("pending  m20261123_000001_domain_model")
    );
    run(&["migrate", "up"]).await;
    let applied = run(&["migrate", "status"]).await;
    assert!(applied.contains("applied  m20261123_000001_domain_model"));
    assert!(!applied.contains("pending "), "{applied}");
    let steps = applied
        .lines()
        .filter(|l| l.contains("applied "))
        .count()
        .to_string();
    let mut down = countersign(&cwd);
    down.args(["migrate", "down", "--steps", &steps])
        .env("DATABASE_URL", &database.url);
    assert!(down.output().await.unwrap().status.success());
    let status = run(&["migrate", "status"]).await;
    assert!(!status.contains("applied "), "{status}");
    // And up again: the down migration left nothing behind that blocks a re-run.
    run(&["migrate", "up"]).await;
    std::fs::remove_dir_all(cwd).ok();
}

plain_tests!(production_refuses_to_start_without_jwt_configuration);

async fn production_refuses_to_start_without_jwt_configuration() {
    let cwd = scratch_dir();
    let output = countersign(&cwd)
        .arg("serve")
        .env("COUNTERSIGN_ENV", "production")
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .await
        .expect("running countersign serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("COUNTERSIGN_JWT_SECRET"), "{stderr}");
    assert!(
        std::fs::read_dir(&cwd).expect("ls").next().is_none(),
        "nothing written: no database, no generated secret"
    );
    std::fs::remove_dir_all(cwd).ok();
}

plain_tests!(every_command_explains_itself_with_help);

async fn every_command_explains_itself_with_help() {
    let cwd = scratch_dir();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["migrate", "up", "--help"],
        &["migrate", "down", "--help"],
        &["migrate", "status", "--help"],
        &["schema", "--help"],
        &["token", "--help"],
        &["audit", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "checkpoint", "--help"],
        &["audit", "export", "--help"],
    ] {
        let output = countersign(&cwd)
            .args(args)
            .output()
            .await
            .expect("running --help");
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    std::fs::remove_dir_all(cwd).ok();
}

plain_tests!(the_schema_command_prints_the_checked_in_contract);

async fn the_schema_command_prints_the_checked_in_contract() {
    let cwd = scratch_dir();
    let output = countersign(&cwd)
        .arg("schema")
        .output()
        .await
        .expect("running schema");
    assert!(output.status.success());
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("schema.graphql");
    assert_eq!(String::from_utf8(output.stdout).expect("utf-8"), checked_in);
    std::fs::remove_dir_all(cwd).ok();
}
