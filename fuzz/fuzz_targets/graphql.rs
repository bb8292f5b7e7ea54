//! The GraphQL entry, as a client reaches it: `POST /graphql` through the server's own
//! router (body parsing → token → limits → parse → validation → execution on the real
//! schema, over a real SQLite database). The first byte chooses how the rest is sent: as
//! the raw body, as the query of a JSON body, or that query with an auditor's token.
//!
//! A crash, a stack overflow, a hang (libFuzzer's `-timeout`) or an `INTERNAL` answer is a
//! finding: careless input must get a code of its own.

#![no_main]

mod common;

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    auditor: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let file = std::env::temp_dir().join(format!("countersign-fuzz-{}.db", std::process::id()));
        let config = common::config(&format!("sqlite://{}?mode=rwc", file.display()));
        let auditor = countersign::auth::mint_token(
            &config.jwt,
            "frank",
            &["auditor".to_owned()],
            std::time::Duration::from_secs(12 * 3600),
            Default::default(),
        )
        .expect("a token");
        let app = runtime
            .block_on(countersign::app::App::build(config))
            .expect("the server starts");
        let router = app.router();
        // The app's listener and tasks live as long as the process.
        std::mem::forget(app);
        Server {
            runtime,
            router,
            auditor,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let server = server();
    let text = String::from_utf8_lossy(rest);
    let body = match mode % 3 {
        0 => rest.to_vec(),
        _ => serde_json::json!({ "query": text })
            .to_string()
            .into_bytes(),
    };
    let mut request = Request::post("/graphql").header("content-type", "application/json");
    if mode % 3 == 2 {
        request = request.header("authorization", format!("Bearer {}", server.auditor));
    }
    let request = request.body(Body::from(body)).expect("a request");
    let (status, answer) = server.runtime.block_on(async {
        let response = server
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body");
        (status, bytes)
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&answer) {
        for error in answer["errors"].as_array().into_iter().flatten() {
            assert_ne!(error["extensions"]["code"], "INTERNAL", "{answer}");
        }
    }
});
