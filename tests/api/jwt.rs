//! Production JWT: RS256 and ES256 from a PEM key or a JWKS file, pinned algorithms, key
//! rotation without a restart, a maximum lifetime, and the classic attacks refused.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TEST_AUDIENCE, TEST_ISSUER, TestApp, spawn_app_with};

const VIEWER: &str = "{ viewer { subject } }";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("a test key")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "sub": "svc-payments", "roles": ["support"], "iss": TEST_ISSUER, "aud": TEST_AUDIENCE,
        "iat": now(), "exp": now() + 600,
    })
}

fn signing_key(algorithm: Algorithm, private: &str) -> EncodingKey {
    let pem = fixture(private);
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA key"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).expect("an EC key"),
        _ => unreachable!("only asymmetric keys here"),
    }
}

fn sign(algorithm: Algorithm, private: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &signing_key(algorithm, private)).expect("signing")
}

/// A JWKS document with the public halves of the given private keys.
fn jwks(keys: &[(Algorithm, &str, &str)]) -> String {
    let keys = keys
        .iter()
        .map(|(algorithm, private, kid)| {
            let mut jwk = Jwk::from_encoding_key(&signing_key(*algorithm, private), *algorithm)
                .expect("a JWK");
            jwk.common.key_id = Some((*kid).to_owned());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).expect("JSON")
}

async fn with_public_key(backend: Backend, public: &str, algorithm: Algorithm) -> TestApp {
    let pem = fixture(public);
    spawn_app_with(backend, move |config| {
        config.jwt.public_key_pem = Some(pem);
        config.jwt.algorithms = vec![algorithm];
    })
    .await
}

fn jwks_file(contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cs-jwks-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&path, contents).expect("writing the JWKS file");
    path
}

async fn with_jwks(backend: Backend, path: PathBuf, refresh: Duration) -> TestApp {
    spawn_app_with(backend, move |config| {
        config.jwt.jwks_file = Some(path);
        config.jwt.jwks_refresh = refresh;
        config.jwt.algorithms = vec![Algorithm::RS256, Algorithm::ES256];
    })
    .await
}

async fn accepted(app: &TestApp, token: &str) -> bool {
    let response = app.graphql(Some(token), VIEWER, json!({})).await;
    match response.status {
        200 => {
            assert_eq!(response.expect_ok()["viewer"]["subject"], "svc-payments");
            true
        }
        401 => {
            assert_eq!(response.error_code(), Some("UNAUTHENTICATED"));
            false
        }
        other => panic!("unexpected HTTP {other}: {}", response.body),
    }
}

backend_tests!(
    rs256_tokens_verify_from_a_pem_public_key,
    es256_tokens_verify_from_a_pem_public_key,
    an_rs_public_key_used_as_an_hs256_secret_is_refused,
    jwks_keys_verify_by_kid_and_odd_kids_are_refused,
    a_rotated_key_is_accepted_after_the_jwks_file_changes,
    unknown_kids_reread_the_jwks_file_at_most_once_per_interval,
    a_key_removed_from_the_jwks_file_is_refused_and_a_broken_file_is_survived,
    keys_are_never_fetched_from_jku_or_x5u,
    tokens_beyond_the_maximum_lifetime_are_refused,
    roles_come_from_the_configured_claim_path_and_audiences_may_be_lists
);

async fn rs256_tokens_verify_from_a_pem_public_key(backend: Backend) {
    let app = with_public_key(backend, "rsa-a.pub.pem", Algorithm::RS256).await;
    assert!(
        accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-a.key.pem", None, &claims())
        )
        .await
    );
    assert!(
        !accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-b.key.pem", None, &claims())
        )
        .await,
        "another key"
    );
    assert!(
        !accepted(
            &app,
            &sign(Algorithm::ES256, "ec-a.key.pem", None, &claims())
        )
        .await,
        "an algorithm not pinned"
    );
}

async fn es256_tokens_verify_from_a_pem_public_key(backend: Backend) {
    let app = with_public_key(backend, "ec-a.pub.pem", Algorithm::ES256).await;
    assert!(
        accepted(
            &app,
            &sign(Algorithm::ES256, "ec-a.key.pem", None, &claims())
        )
        .await
    );
    assert!(
        !accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-a.key.pem", None, &claims())
        )
        .await
    );
}

async fn an_rs_public_key_used_as_an_hs256_secret_is_refused(backend: Backend) {
    let public = fixture("rsa-a.pub.pem");
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .expect("signing");
    let pinned = with_public_key(backend, "rsa-a.pub.pem", Algorithm::RS256).await;
    assert!(!accepted(&pinned, &forged).await);
    // Even with HS256 allowed beside RS256, HS256 verifies with the secret, never the key.
    let both = spawn_app_with(backend, move |config| {
        config.jwt.public_key_pem = Some(public);
        config.jwt.algorithms = vec![Algorithm::HS256, Algorithm::RS256];
    })
    .await;
    assert!(!accepted(&both, &forged).await);
}

async fn jwks_keys_verify_by_kid_and_odd_kids_are_refused(backend: Backend) {
    let path = jwks_file(&jwks(&[
        (Algorithm::RS256, "rsa-a.key.pem", "rsa-2026"),
        (Algorithm::ES256, "ec-a.key.pem", "ec-2026"),
    ]));
    let app = with_jwks(backend, path.clone(), Duration::from_secs(30)).await;
    assert!(
        accepted(
            &app,
            &sign(
                Algorithm::RS256,
                "rsa-a.key.pem",
                Some("rsa-2026"),
                &claims()
            )
        )
        .await
    );
    assert!(
        accepted(
            &app,
            &sign(Algorithm::ES256, "ec-a.key.pem", Some("ec-2026"), &claims())
        )
        .await
    );
    // The right kid with the wrong algorithm, or the wrong key under a known kid.
    assert!(
        !accepted(
            &app,
            &sign(
                Algorithm::RS256,
                "rsa-b.key.pem",
                Some("rsa-2026"),
                &claims()
            )
        )
        .await
    );
    for kid in ["unknown", "../../../etc/passwd", "x' OR '1'='1", "a/b", ""] {
        assert!(
            !accepted(
                &app,
                &sign(Algorithm::RS256, "rsa-a.key.pem", Some(kid), &claims())
            )
            .await,
            "{kid:?}"
        );
    }
    std::fs::remove_file(path).ok();
}

async fn a_rotated_key_is_accepted_after_the_jwks_file_changes(backend: Backend) {
    let path = jwks_file(&jwks(&[(Algorithm::RS256, "rsa-a.key.pem", "old")]));
    let app = with_jwks(backend, path.clone(), Duration::ZERO).await;
    let new_token = sign(Algorithm::RS256, "rsa-b.key.pem", Some("new"), &claims());
    assert!(!accepted(&app, &new_token).await, "not published yet");
    std::fs::write(
        &path,
        jwks(&[
            (Algorithm::RS256, "rsa-a.key.pem", "old"),
            (Algorithm::RS256, "rsa-b.key.pem", "new"),
        ]),
    )
    .expect("rotate");
    assert!(
        accepted(&app, &new_token).await,
        "picked up without a restart"
    );
    assert!(
        accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-a.key.pem", Some("old"), &claims())
        )
        .await
    );
    std::fs::remove_file(path).ok();
}

async fn unknown_kids_reread_the_jwks_file_at_most_once_per_interval(backend: Backend) {
    let path = jwks_file(&jwks(&[(Algorithm::RS256, "rsa-a.key.pem", "old")]));
    let app = with_jwks(backend, path.clone(), Duration::from_secs(30)).await;
    let new_token = sign(Algorithm::RS256, "rsa-b.key.pem", Some("new"), &claims());
    std::fs::write(&path, jwks(&[(Algorithm::RS256, "rsa-b.key.pem", "new")])).expect("rotate");
    assert!(
        !accepted(&app, &new_token).await,
        "the file was read at start-up, less than 30 s ago"
    );
    std::fs::remove_file(path).ok();
}

/// A key taken out of the JWKS file is refused at the next check after one refresh
/// interval (zero here), even though its `kid` is known; a broken file keeps the last
/// good set in service.
async fn a_key_removed_from_the_jwks_file_is_refused_and_a_broken_file_is_survived(
    backend: Backend,
) {
    let path = jwks_file(&jwks(&[
        (Algorithm::RS256, "rsa-a.key.pem", "old"),
        (Algorithm::RS256, "rsa-b.key.pem", "new"),
    ]));
    let app = with_jwks(backend, path.clone(), Duration::ZERO).await;
    let old_token = sign(Algorithm::RS256, "rsa-a.key.pem", Some("old"), &claims());
    let new_token = sign(Algorithm::RS256, "rsa-b.key.pem", Some("new"), &claims());
    assert!(accepted(&app, &old_token).await);
    std::fs::write(&path, jwks(&[(Algorithm::RS256, "rsa-b.key.pem", "new")])).expect("remove old");
    assert!(
        !accepted(&app, &old_token).await,
        "a removed key is refused"
    );
    assert!(accepted(&app, &new_token).await);
    std::fs::write(&path, "{ not json").expect("break the file");
    assert!(
        accepted(&app, &new_token).await,
        "the last good set stays in service"
    );
    assert!(!accepted(&app, &old_token).await);
    std::fs::remove_file(path).ok();
}

async fn keys_are_never_fetched_from_jku_or_x5u(backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let path = jwks_file(&jwks(&[(Algorithm::RS256, "rsa-a.key.pem", "known")]));
    let app = with_jwks(backend, path.clone(), Duration::ZERO).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker".into());
    header.jku = Some(url.clone());
    header.x5u = Some(url);
    let token = encode(
        &header,
        &claims(),
        &signing_key(Algorithm::RS256, "rsa-b.key.pem"),
    )
    .expect("signing");
    assert!(!accepted(&app, &token).await);
    let fetched = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        fetched.is_err(),
        "the server must not call the URL in the token"
    );
    std::fs::remove_file(path).ok();
}

async fn tokens_beyond_the_maximum_lifetime_are_refused(backend: Backend) {
    let app = with_public_key(backend, "rsa-a.pub.pem", Algorithm::RS256).await;
    let mut long = claims();
    long["exp"] = json!(now() + 13 * 3600);
    assert!(!accepted(&app, &sign(Algorithm::RS256, "rsa-a.key.pem", None, &long)).await);
    let mut fine = claims();
    fine["exp"] = json!(now() + 11 * 3600);
    assert!(accepted(&app, &sign(Algorithm::RS256, "rsa-a.key.pem", None, &fine)).await);
    let mut no_iat = claims();
    no_iat.as_object_mut().expect("object").remove("iat");
    assert!(
        !accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-a.key.pem", None, &no_iat)
        )
        .await
    );
    let mut future = claims();
    future["iat"] = json!(now() + 600);
    future["exp"] = json!(now() + 900);
    assert!(
        !accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-a.key.pem", None, &future)
        )
        .await
    );
    let mut string_nbf = claims();
    string_nbf["nbf"] = json!(now().to_string());
    assert!(
        !accepted(
            &app,
            &sign(Algorithm::RS256, "rsa-a.key.pem", None, &string_nbf)
        )
        .await
    );
}

async fn roles_come_from_the_configured_claim_path_and_audiences_may_be_lists(backend: Backend) {
    let pem = fixture("rsa-a.pub.pem");
    let app = spawn_app_with(backend, move |config| {
        config.jwt.public_key_pem = Some(pem);
        config.jwt.algorithms = vec![Algorithm::RS256];
        config.jwt.roles_claim = vec!["realm_access".into(), "roles".into()];
    })
    .await;
    let roles_of = |claims: Value| {
        let token = sign(Algorithm::RS256, "rsa-a.key.pem", None, &claims);
        let app = &app;
        async move {
            let response = app
                .graphql(Some(&token), "{ viewer { roles } }", json!({}))
                .await;
            match response.status {
                200 => Some(response.expect_ok()["viewer"]["roles"].clone()),
                _ => {
                    assert_eq!(response.error_code(), Some("UNAUTHENTICATED"));
                    None
                }
            }
        }
    };
    let mut keycloak = claims();
    keycloak["realm_access"] = json!({ "roles": ["finance", "offline_access"] });
    keycloak["aud"] = json!([TEST_AUDIENCE, "account"]);
    assert_eq!(
        roles_of(keycloak).await,
        Some(json!(["finance", "offline_access"]))
    );
    // The top-level `roles` is not where this deployment's provider puts them.
    assert_eq!(roles_of(claims()).await, Some(json!([])));
    let mut malformed = claims();
    malformed["realm_access"] = json!({ "roles": "admin" });
    assert_eq!(roles_of(malformed).await, None);
    let mut other_audience = claims();
    other_audience["aud"] = json!(["account"]);
    assert_eq!(roles_of(other_audience).await, None);
}
