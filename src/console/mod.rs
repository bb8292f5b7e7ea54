//! The ops console, served by the binary: `console/` is embedded at compile time (no Node,
//! no network, no CDN at run time), `/` is its page and `/console/…` its files; GraphiQL's
//! page (`GET /graphql`) is served from here too. Every one of these responses carries a
//! strict Content-Security-Policy: scripts only from here, plus the console page's one
//! inline script — the import map — allowed by its SHA-256, which is computed from the
//! embedded page itself so the two cannot drift.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::demo;
use crate::graphql::{AppState, graphiql as graphiql_page};

#[derive(rust_embed::Embed)]
#[folder = "console/"]
#[exclude = "vendor.sh"]
struct Assets;

/// Where the console's files are served.
pub const PATH: &str = "/console";

const IMPORT_MAP_OPEN: &str = "<script type=\"importmap\">";

/// The import map's hash, for the policy.
static IMPORT_MAP_HASH: LazyLock<String> = LazyLock::new(|| {
    let import_map = Assets::get("index.html")
        .and_then(|page| {
            let page = String::from_utf8(page.data.into_owned()).ok()?;
            let (_, from_map) = page.split_once(IMPORT_MAP_OPEN)?;
            let (import_map, _) = from_map.split_once("</script>")?;
            Some(import_map.to_owned())
        })
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map))
});

/// The policy for every console response, GraphiQL's page included. The page talks to this
/// server only — and, when sign-in goes through an OpenID provider, fetches its discovery
/// document and token endpoint (the jump to its login page is a navigation, which the
/// policy does not govern). GraphiQL's stylesheet carries its fonts as `data:` URLs.
fn policy(config: &Config) -> String {
    let hash = &*IMPORT_MAP_HASH;
    let provider = config
        .oidc
        .as_ref()
        .map(|oidc| format!(" {}", oidc.issuer_origin()))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'sha256-{hash}'; style-src 'self'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'{provider}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `GET /console/config`: what the page needs to know before anyone signs in — whether
/// sign-in goes through an OpenID provider, and whether demo people may be picked.
pub async fn settings(State(state): State<AppState>) -> Response {
    let oidc = state.config.oidc.as_ref().map(|oidc| {
        serde_json::json!({
            "issuer": oidc.issuer,
            "clientId": oidc.client_id,
            "redirectUri": oidc.redirect_uri,
            "scope": oidc.scope,
            "resource": oidc.resource,
        })
    });
    with_headers(
        axum::Json(serde_json::json!({
            "oidc": oidc,
            "personas": demo::personas_offered(&state.config),
        }))
        .into_response(),
        &state.config,
    )
}

/// `GET /console/personas`: in development with the demo on, the demo personas with a token
/// each, for the sign-in screen's picker (the same kind of tokens `countersign serve`
/// prints). Production, or the demo turned off, has no such thing: 404. Never stored by a
/// cache: the answer is bearer tokens.
pub async fn personas(State(state): State<AppState>) -> Response {
    let mut response = persona_list(&state.config);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_headers(response, &state.config)
}

fn persona_list(config: &Config) -> Response {
    if !demo::personas_offered(config) {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    }
    match demo::persona_tokens(&config.jwt) {
        Ok(Some(tokens)) => axum::Json(
            tokens
                .into_iter()
                .map(|(persona, token)| {
                    serde_json::json!({
                        "subject": persona.subject,
                        "name": persona.name,
                        "roles": persona.roles,
                        "token": token,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Ok(None) => axum::Json(serde_json::json!([])).into_response(),
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "minting the demo personas' tokens");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// `GET /graphql`: GraphiQL's page, under the console's policy (its scripts and style are
/// console files).
pub async fn graphiql(State(state): State<AppState>) -> Response {
    let response = (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(graphiql_page::page()),
    )
        .into_response();
    with_headers(response, &state.config)
}

/// `GET /`: the console's page.
pub async fn page(State(state): State<AppState>) -> Response {
    asset("index.html", &state.config)
}

/// `GET /console/{*path}`: one of its files.
pub async fn file(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    asset(&path, &state.config)
}

fn asset(path: &str, config: &Config) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let mime = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("md") | Some("txt") => "text/plain; charset=utf-8",
        _ if path.contains("LICENSE")
            || path.ends_with("VERSIONS")
            || path.ends_with("SHA256SUMS") =>
        {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    };
    let response = (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        file.data.into_owned(),
    )
        .into_response();
    with_headers(response, config)
}

fn with_headers(mut response: Response, config: &Config) -> Response {
    let Ok(policy) = HeaderValue::from_str(&policy(config)) else {
        // Never a console page without its policy (configuration refuses such an issuer).
        tracing::error!("the console's Content-Security-Policy is not a valid header value");
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::graphiql;

    #[test]
    fn graphiqls_embedded_files_match_their_pinned_hashes() {
        for (file, integrity) in graphiql::ASSETS {
            let path = format!("vendor/graphiql/{file}");
            let embedded = Assets::get(&path).unwrap_or_else(|| panic!("{path} is embedded"));
            let digest = base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha384::digest(&embedded.data));
            assert_eq!(format!("sha384-{digest}"), integrity, "{path}");
            assert!(graphiql::ASSETS_PATH.ends_with("/vendor/graphiql"));
        }
    }
}
