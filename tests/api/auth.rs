//! Identity: verified tokens become a viewer; anything else presented is refused with
//! HTTP 401 and UNAUTHENTICATED, never downgraded to anonymous access.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Persona, TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET, TestApp, spawn_app,
};

const VIEWER: &str = "{ viewer { subject name email roles } }";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims that would be accepted, for tests to spoil one at a time.
fn valid_claims() -> Value {
    json!({
        "sub": "mallory",
        "roles": ["admin"],
        "iss": TEST_ISSUER,
        "aud": TEST_AUDIENCE,
        "iat": now(),
        "exp": now() + 3600,
    })
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing")
}

async fn assert_refused(app: &TestApp, authorization: &str) {
    let response = app
        .graphql_with_authorization(Some(authorization), VIEWER, json!({}))
        .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(
        response.error_code(),
        Some("UNAUTHENTICATED"),
        "{}",
        response.body
    );
    assert_eq!(
        response.body["errors"][0]["extensions"]["retryable"],
        json!(false)
    );
    assert_eq!(response.data(), &Value::Null);
}

backend_tests!(
    a_persona_token_answers_viewer,
    every_persona_token_carries_the_personas_roles,
    a_token_with_several_roles_lists_them_all,
    anonymous_callers_may_introspect_but_see_no_data,
    an_expired_token_is_refused,
    a_token_signed_with_another_secret_is_refused,
    an_unsigned_alg_none_token_is_refused,
    a_token_for_another_audience_is_refused,
    a_token_from_another_issuer_is_refused,
    a_string_typed_exp_is_refused,
    a_token_missing_a_required_claim_is_refused,
    a_token_not_yet_valid_is_refused,
    garbage_is_refused
);

async fn a_persona_token_answers_viewer(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.graphql_as(Persona::Alice, VIEWER, json!({})).await;
    let viewer = &response.expect_ok()["viewer"];
    assert_eq!(viewer["subject"], "alice");
    assert_eq!(viewer["roles"], json!(["support"]));
    assert_eq!(viewer["email"], "alice@example.com");
}

async fn every_persona_token_carries_the_personas_roles(backend: Backend) {
    let app = spawn_app(backend).await;
    for persona in Persona::ALL {
        let response = app.graphql_as(persona, VIEWER, json!({})).await;
        let viewer = &response.expect_ok()["viewer"];
        assert_eq!(viewer["subject"], persona.subject());
        assert_eq!(viewer["roles"], json!(persona.roles()));
    }
}

async fn a_token_with_several_roles_lists_them_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token("erin", &["support".into(), "finance".into()]);
    let response = app.graphql(Some(&token), VIEWER, json!({})).await;
    assert_eq!(
        response.expect_ok()["viewer"]["roles"],
        json!(["support", "finance"])
    );
}

async fn anonymous_callers_may_introspect_but_see_no_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let schema = app
        .graphql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(schema.expect_ok()["__schema"]["queryType"]["name"], "Query");

    let viewer = app.graphql(None, VIEWER, json!({})).await;
    assert_eq!(viewer.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(viewer.status, 401);
    assert_eq!(viewer.data(), &Value::Null);
}

async fn an_expired_token_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    // Well past the 30 s leeway.
    let mut claims = valid_claims();
    claims["exp"] = json!(now() - 120);
    claims["iat"] = json!(now() - 3600);
    assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
}

async fn a_token_signed_with_another_secret_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = sign(
        &valid_claims(),
        "some-other-secret-that-is-long-enough-1234",
    );
    assert_refused(&app, &format!("Bearer {token}")).await;
}

async fn an_unsigned_alg_none_token_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(valid_claims().to_string());
    assert_refused(&app, &format!("Bearer {header}.{payload}.")).await;
    // Even with a signature-shaped tail, `none` is never honoured.
    let forged = URL_SAFE_NO_PAD.encode(b"sig");
    assert_refused(&app, &format!("Bearer {header}.{payload}.{forged}")).await;
}

async fn a_token_for_another_audience_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut claims = valid_claims();
    claims["aud"] = json!("some-other-service");
    assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
}

async fn a_token_from_another_issuer_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut claims = valid_claims();
    claims["iss"] = json!("https://evil.example.com");
    assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
}

async fn a_string_typed_exp_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut claims = valid_claims();
    claims["exp"] = json!((now() + 3600).to_string());
    assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
}

async fn a_token_missing_a_required_claim_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for claim in ["exp", "iat", "sub", "iss", "aud"] {
        let mut claims = valid_claims();
        claims.as_object_mut().expect("an object").remove(claim);
        assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
    }
    let mut claims = valid_claims();
    claims["sub"] = json!("");
    assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
}

async fn a_token_not_yet_valid_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut claims = valid_claims();
    claims["nbf"] = json!(now() + 600);
    assert_refused(&app, &format!("Bearer {}", sign(&claims, TEST_SECRET))).await;
}

async fn garbage_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for garbage in [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ",
        "Basic YWxpY2U6cGFzcw==",
        "eyJhbGciOi",
    ] {
        assert_refused(&app, garbage).await;
    }
}
