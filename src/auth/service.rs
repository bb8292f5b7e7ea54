//! Token verification and minting.
//!
//! The algorithm comes from configuration, never from the token's header: the header only
//! picks among the pinned algorithms, so a token cannot talk us into `none` or into
//! treating a public key as an HMAC secret. Keys come from configuration too (a secret, a
//! PEM public key, a local JWKS file), never from a URL in the token (`jku`, `x5u`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};

use super::model::{Claims, LEEWAY_SECONDS};
use crate::config::JwtConfig;
use crate::kernel::{Identity, Viewer};

/// Why a presented token was refused. The client only ever sees UNAUTHENTICATED; the
/// variant is for logs.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    #[error("the token is invalid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("the token's algorithm {0:?} is not accepted here")]
    AlgorithmNotAllowed(Algorithm),
    #[error("the token's kid is malformed")]
    MalformedKid,
    #[error("no key is known for the token's kid")]
    UnknownKid,
    #[error("no configured key verifies {0:?} tokens without a kid")]
    NoKey(Algorithm),
    #[error("the token lives longer than the maximum lifetime")]
    LifetimeTooLong,
    #[error("the token was issued in the future")]
    IssuedInTheFuture,
    #[error("the token has an empty subject")]
    EmptySubject,
    #[error("the token's roles claim is not a list of strings")]
    MalformedRoles,
    #[error("the token was refused: {0}")]
    Refused(#[from] super::users::Refusal),
}

impl AuthError {
    /// What the client is told. Deliberately vague: details help attackers, not users.
    pub fn client_message(&self) -> &'static str {
        match self {
            Self::NotBearer => "the Authorization header must be `Bearer <token>`",
            Self::Invalid(err)
                if matches!(
                    err.kind(),
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature
                ) =>
            {
                "the token has expired"
            }
            Self::Refused(super::users::Refusal::Disabled) => "the user is disabled",
            Self::Refused(super::users::Refusal::SessionRevoked) => {
                "the session was revoked; sign in again"
            }
            _ => "the token is invalid",
        }
    }
}

/// Verifies bearer tokens against the configured keys, issuer and audience.
pub struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    public_key: Option<(DecodingKey, Algorithm)>,
    jwks: Option<Jwks>,
    issuer: String,
    audience: String,
    max_lifetime: Duration,
    roles_claim: Vec<String>,
}

impl JwtVerifier {
    /// Fails when a configured key cannot be read: better not to start than to refuse
    /// everyone later.
    pub fn new(config: &JwtConfig) -> anyhow::Result<Self> {
        let public_key = match &config.public_key_pem {
            None => None,
            Some(pem) => Some(
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map(|key| (key, Algorithm::RS256))
                    .or_else(|_| {
                        DecodingKey::from_ec_pem(pem.as_bytes()).map(|key| (key, Algorithm::ES256))
                    })?,
            ),
        };
        let jwks = match &config.jwks_file {
            None => None,
            Some(path) => Some(Jwks::load(path.clone(), config.jwks_refresh)?),
        };
        Ok(Self {
            algorithms: config.algorithms.clone(),
            secret: config
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
            public_key,
            jwks,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            max_lifetime: config.max_lifetime,
            roles_claim: config.roles_claim.clone(),
        })
    }

    /// Turns an `Authorization` header value (or its absence) into an identity.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        let Some(header) = authorization else {
            return Ok(Identity::Anonymous);
        };
        let token = bearer_token(header).ok_or(AuthError::NotBearer)?;
        self.verify(token).map(Identity::Authenticated)
    }

    pub fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        // Parsing the header refuses `alg: none` outright (it is not an Algorithm).
        let header = decode_header(token)?;
        let algorithm = header.alg;
        if !self.algorithms.contains(&algorithm) {
            return Err(AuthError::AlgorithmNotAllowed(algorithm));
        }
        let key = self.key_for(algorithm, header.kid.as_deref())?;

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        let claims = decode::<Claims>(token, &key, &validation)?.claims;

        let iat = claims.iat.ok_or(AuthError::LifetimeTooLong)?;
        let now = Utc::now().timestamp();
        if iat > now.saturating_add(LEEWAY_SECONDS as i64) {
            return Err(AuthError::IssuedInTheFuture);
        }
        let lifetime = claims.exp.saturating_sub(iat);
        if lifetime < 0 || lifetime as u64 > self.max_lifetime.as_secs() {
            return Err(AuthError::LifetimeTooLong);
        }
        if claims.sub.trim().is_empty() {
            return Err(AuthError::EmptySubject);
        }
        let roles = claims
            .roles_at(&self.roles_claim)
            .map_err(|_| AuthError::MalformedRoles)?;
        Ok(Viewer {
            subject: claims.sub,
            name: claims.name,
            email: claims.email,
            roles,
            issued_at: DateTime::from_timestamp(iat, 0),
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
        })
    }

    fn key_for(&self, algorithm: Algorithm, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        if algorithm == Algorithm::HS256 {
            return self.secret.clone().ok_or(AuthError::NoKey(algorithm));
        }
        match kid {
            Some(kid) => {
                if !valid_kid(kid) {
                    return Err(AuthError::MalformedKid);
                }
                let jwks = self.jwks.as_ref().ok_or(AuthError::UnknownKid)?;
                jwks.key(kid, algorithm).ok_or(AuthError::UnknownKid)
            }
            None => match &self.public_key {
                Some((key, for_algorithm)) if *for_algorithm == algorithm => Ok(key.clone()),
                _ => Err(AuthError::NoKey(algorithm)),
            },
        }
    }
}

/// A `kid` is an opaque name, nothing more: letters, digits, `.`, `_`, `-`. Anything that
/// looks like a path or SQL is refused before it is used as a lookup key.
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        && !kid.contains("..")
}

/// Keys from a local JWKS file, by `kid`. The file is re-read when the set in memory is
/// older than `refresh` and a token needs a key, whether its `kid` is known or not: a key
/// removed from the file is refused within one interval, a rotated one accepted, and a
/// flood of made-up kids is at most one read per interval. A file that cannot be read or
/// parsed keeps the last good set in service (and is logged).
struct Jwks {
    path: PathBuf,
    refresh: Duration,
    state: RwLock<JwksState>,
}

struct JwksState {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    read_at: Instant,
    /// When the file last read and parsed.
    good_at: Instant,
}

/// How long the last good keys stay in service while the file cannot be read: long enough
/// to ride out a rewrite, short enough that deleting or breaking the file to revoke every
/// key takes effect.
fn stale_limit(refresh: Duration) -> Duration {
    (refresh * 10).max(Duration::from_secs(300))
}

impl Jwks {
    fn load(path: PathBuf, refresh: Duration) -> anyhow::Result<Self> {
        let keys = read_jwks(&path)?;
        Ok(Self {
            path,
            refresh,
            state: RwLock::new(JwksState {
                keys,
                read_at: Instant::now(),
                good_at: Instant::now(),
            }),
        })
    }

    fn key(&self, kid: &str, algorithm: Algorithm) -> Option<DecodingKey> {
        let lookup = |state: &JwksState| {
            state
                .keys
                .get(kid)
                .filter(|(_, alg)| *alg == algorithm)
                .map(|(key, _)| key.clone())
        };
        {
            let state = self.state.read().ok()?;
            if state.read_at.elapsed() < self.refresh {
                return lookup(&state);
            }
        }
        let mut state = self.state.write().ok()?;
        if state.read_at.elapsed() >= self.refresh {
            state.read_at = Instant::now();
            match read_jwks(&self.path) {
                Ok(keys) => {
                    state.keys = keys;
                    state.good_at = state.read_at;
                }
                Err(err) if state.good_at.elapsed() > stale_limit(self.refresh) => {
                    tracing::error!(error = %format!("{err:#}"), "the JWKS file has been unreadable too long; refusing every token until it is fixed");
                    state.keys.clear();
                }
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "re-reading the JWKS file failed; keeping the last good keys for now");
                }
            }
        }
        lookup(&state)
    }
}

fn read_jwks(path: &PathBuf) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the JWKS file {}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .with_context(|| format!("parsing the JWKS file {}", path.display()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone().filter(|k| valid_kid(k)) else {
            tracing::warn!("skipping a JWKS key without a usable kid");
            continue;
        };
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (_, Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (_, Some(KeyAlgorithm::ES256)) => Algorithm::ES256,
            (_, Some(_)) => {
                tracing::warn!(kid, "skipping a JWKS key with an unsupported alg");
                continue;
            }
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(_), None) => Algorithm::ES256,
            _ => {
                tracing::warn!(kid, "skipping a JWKS key that is neither RSA nor EC");
                continue;
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, (key, algorithm));
            }
            Err(err) => tracing::warn!(kid, error = %err, "skipping an unreadable JWKS key"),
        }
    }
    Ok(keys)
}

/// `Bearer <token>`, with the scheme matched case-insensitively as RFC 6750 allows.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What to put in a minted token besides the subject and roles.
#[derive(Clone, Debug, Default)]
pub struct TokenProfile {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// `roles` placed at the configured claim path, so a dev token reads back the same way.
fn roles_claim(path: &[String], roles: &[String]) -> serde_json::Map<String, serde_json::Value> {
    let mut value = serde_json::Value::from(roles.to_vec());
    for segment in path.iter().rev() {
        let mut object = serde_json::Map::new();
        object.insert(segment.clone(), value);
        value = serde_json::Value::Object(object);
    }
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// Signs an HS256 token with the configured secret: for development, the demo personas
/// and tests. Production identity providers mint their own.
pub fn mint_token(
    config: &JwtConfig,
    subject: &str,
    roles: &[String],
    ttl: Duration,
    profile: TokenProfile,
) -> anyhow::Result<String> {
    let now = Utc::now().timestamp();
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let claims = Claims {
        sub: subject.to_owned(),
        exp: now.saturating_add(ttl),
        iat: Some(now),
        nbf: None,
        iss: Some(config.issuer.clone()),
        aud: Some(config.audience.clone().into()),
        name: profile.name,
        email: profile.email,
        other: roles_claim(&config.roles_claim, roles),
    };
    let secret = config.secret.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "no HS256 secret is configured (COUNTERSIGN_JWT_SECRET); dev tokens need one"
        )
    })?;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretSource};

    fn config() -> JwtConfig {
        JwtConfig {
            secret: Some(Secret::new("an-hs256-secret-of-at-least-32-bytes!")),
            secret_source: Some(SecretSource::Environment),
            public_key_pem: None,
            jwks_file: None,
            algorithms: vec![Algorithm::HS256],
            issuer: "countersign".into(),
            audience: "countersign".into(),
            max_lifetime: Duration::from_secs(12 * 3600),
            jwks_refresh: Duration::from_secs(30),
            roles_claim: vec!["roles".into()],
        }
    }

    #[test]
    fn kids_that_look_like_paths_or_sql_are_malformed() {
        assert!(valid_kid("2026-11-key.1"));
        for bad in [
            "../../etc/passwd",
            "a/b",
            "k' OR 1=1 --",
            "",
            "a b",
            "k;drop",
            "..",
            "x".repeat(129).as_str(),
        ] {
            assert!(!valid_kid(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let config = config();
        let token = mint_token(
            &config,
            "alice",
            &["support".into()],
            Duration::from_secs(60),
            TokenProfile {
                name: Some("Alice".into()),
                email: None,
            },
        )
        .unwrap();
        let viewer = JwtVerifier::new(&config).unwrap().verify(&token).unwrap();
        assert_eq!(viewer.subject, "alice");
        assert_eq!(viewer.roles, vec!["support".to_string()]);
        assert_eq!(viewer.name.as_deref(), Some("Alice"));
    }

    #[test]
    fn bearer_scheme_is_required() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
