//! GraphiQL on GET /graphql: from the CDN by default, from a local copy when configured,
//! and never a blank page when something is missing.

use serde_json::json;

use crate::helpers::{Persona, spawn_app, spawn_app_with};

backend_tests! {
    async fn graphiql_loads_from_the_cdn_by_default(backend) {
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
        assert!(html.contains("https://unpkg.com/graphiql@"));
        assert!(html.contains("Authorization"), "the page prepares the header");
        assert!(html.contains("GraphiQL could not load"), "and can say what failed");
    }

    async fn graphiql_serves_a_local_copy_and_names_missing_files(backend) {
        let dir = std::env::temp_dir().join(format!("cs-assets-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("graphiql.min.js"), "window.GraphiQL = {};").expect("write");
        std::fs::write(dir.join("graphiql.min.css"), "body {}").expect("write");
        let assets = dir.clone();
        let app = spawn_app_with(backend, move |config| config.graphiql_assets = Some(assets)).await;

        let html = app.get("/graphql").await.text().await.expect("text");
        assert!(html.contains("/graphiql/assets/graphiql.min.js"));
        assert!(!html.contains("unpkg.com/graphiql@3.8.3/graphiql.min.js\""));
        assert!(html.contains("Missing from the local GraphiQL assets"));
        assert!(html.contains("react.production.min.js, react-dom.production.min.js"));

        let script = app.get("/graphiql/assets/graphiql.min.js").await;
        assert_eq!(script.status(), 200);
        assert_eq!(script.text().await.expect("text"), "window.GraphiQL = {};");
        assert_eq!(app.get("/graphiql/assets/react.production.min.js").await.status(), 404);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}

backend_tests! {
    async fn graphiqls_own_introspection_query_is_answered(backend) {
        // The query graphql-js 16 (what GraphiQL runs) sends on load; it nests deeper than
        // most operations, and the depth limit must leave room for it.
        let query = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/introspection.graphql"))
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
}
