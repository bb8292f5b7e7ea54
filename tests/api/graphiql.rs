//! GraphiQL on GET /graphql: its scripts served by the binary itself (no CDN), pinned by
//! hash, and never a blank page when something is missing.

use serde_json::json;

use crate::helpers::{Backend, Persona, spawn_app};

backend_tests!(graphiql_loads_its_scripts_from_this_server);

async fn graphiql_loads_its_scripts_from_this_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/graphql").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = response.text().await.expect("text");
    assert!(!html.contains("unpkg.com"), "nothing from a CDN");
    assert!(
        html.contains("Authorization"),
        "the page prepares the header"
    );
    assert!(
        html.contains("GraphiQL could not load"),
        "and can say what failed"
    );
    for file in [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
    ] {
        let path = format!("/console/vendor/graphiql/{file}");
        assert!(html.contains(&path), "{path} is referenced");
        let asset = app.get(&path).await;
        assert_eq!(asset.status(), 200, "{path}");
        assert!(
            asset.bytes().await.expect("body").len() > 1000,
            "{path} is the real file"
        );
    }
}

backend_tests!(graphiqls_own_introspection_query_is_answered);

async fn graphiqls_own_introspection_query_is_answered(backend: Backend) {
    // The query graphql-js 16 (what GraphiQL runs) sends on load; it nests deeper than
    // most operations, and the depth limit must leave room for it.
    let query = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/introspection.graphql"
    ))
    .expect("the introspection query");
    let app = spawn_app(backend).await;
    for response in [
        app.graphql(None, &query, json!({})).await,
        app.graphql_as(Persona::Alice, &query, json!({})).await,
    ] {
        let data = response.expect_ok();
        assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    }
}
