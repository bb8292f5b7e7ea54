//! The ops console is served by the binary: its page at `/`, its files under
//! `/console/`, nothing from elsewhere, under a strict Content-Security-Policy whose one
//! inline-script allowance is the page's import map.

use base64::Engine;
use sha2::{Digest, Sha256};

use serde_json::json;

use crate::helpers::{Backend, spawn_app, spawn_app_with};

backend_tests!(the_console_page_and_its_files_are_served_under_a_strict_policy);

async fn the_console_page_and_its_files_are_served_under_a_strict_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    for directive in [
        "default-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{policy}"
    );

    // The import map is the only inline script, and the policy allows exactly it.
    let open = "<script type=\"importmap\">";
    let start = html.find(open).unwrap() + open.len();
    let map = &html[start..start + html[start..].find("</script>").unwrap()];
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map.as_bytes()));
    assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
    assert_eq!(
        html.matches("<script").count(),
        2,
        "the import map and one module"
    );

    // Everything the page names is here, from this server; nothing from a CDN.
    let imports: serde_json::Value = serde_json::from_str(map).unwrap();
    let mut paths: Vec<String> = imports["imports"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    paths.extend([
        "/console/app.js".to_owned(),
        "/console/console.css".to_owned(),
    ]);
    for path in &paths {
        assert!(path.starts_with("/console/"), "{path}");
        let file = app.get(path).await;
        assert_eq!(file.status(), 200, "{path}");
        assert!(file.headers().contains_key("content-security-policy"));
        let body = file.text().await.unwrap();
        assert!(
            !body.contains("https://unpkg.com") && !body.contains("cdn."),
            "{path} loads nothing from a CDN"
        );
    }
    assert_eq!(
        app.get("/console/app.js").await.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(app.get("/console/no-such.js").await.status(), 404);
    assert_eq!(
        app.get("/console/vendor.sh").await.status(),
        404,
        "the refresh script is not served"
    );
    assert_eq!(app.get("/console/%2e%2e/Cargo.toml").await.status(), 404);
}

backend_tests!(development_offers_the_demo_personas_and_production_does_not);

async fn development_offers_the_demo_personas_and_production_does_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let personas: serde_json::Value = app.get("/console/personas").await.json().await.unwrap();
    let personas = personas.as_array().unwrap();
    assert_eq!(personas.len(), 6);
    for persona in personas {
        let token = persona["token"].as_str().unwrap();
        let viewer = app
            .graphql(Some(token), "{ viewer { subject roles } }", json!({}))
            .await;
        assert_eq!(viewer.expect_ok()["viewer"]["subject"], persona["subject"]);
        assert_eq!(viewer.expect_ok()["viewer"]["roles"], persona["roles"]);
    }
    let production = spawn_app_with(backend, |config| {
        config.environment = countersign::config::Environment::Production;
        config.demo = countersign::config::DemoMode::Off;
    })
    .await;
    assert_eq!(production.get("/console/personas").await.status(), 404);
}
