//! Token verification and minting.
//!
//! The algorithm comes from configuration, never from the token's header, so a token
//! cannot talk us into `none` or into treating a public key as an HMAC secret.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};

use super::model::{Claims, Identity, Viewer};
use crate::config::JwtConfig;

/// Clock skew tolerated on `exp` and `nbf`. Kept small: a generous leeway extends every
/// token's life, revoked or not.
const LEEWAY_SECONDS: u64 = 30;

/// Why a presented token was refused. The client only ever sees UNAUTHENTICATED; the
/// variant is for logs.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    #[error("the token is invalid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("the token has an empty subject")]
    EmptySubject,
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
            Self::Invalid(_) | Self::EmptySubject => "the token is invalid",
            Self::Refused(super::users::Refusal::Disabled) => "the user is disabled",
            Self::Refused(super::users::Refusal::SessionRevoked) => {
                "the session was revoked; sign in again"
            }
        }
    }
}

/// Verifies bearer tokens against the configured key, issuer and audience.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            key: DecodingKey::from_secret(config.secret.expose().as_bytes()),
            validation,
        }
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
        let data = decode::<Claims>(token, &self.key, &self.validation)?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(AuthError::EmptySubject);
        }
        Ok(Viewer {
            subject: claims.sub,
            name: claims.name,
            email: claims.email,
            roles: claims.roles,
            issued_at: claims.iat.and_then(|t| DateTime::from_timestamp(t, 0)),
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
        })
    }
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
        aud: Some(config.audience.clone()),
        name: profile.name,
        email: profile.email,
        roles: roles.to_vec(),
    };
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(config.secret.expose().as_bytes()),
    )?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretSource};

    fn config() -> JwtConfig {
        JwtConfig {
            secret: Secret::new("an-hs256-secret-of-at-least-32-bytes!"),
            secret_source: SecretSource::Environment,
            issuer: "countersign".into(),
            audience: "countersign".into(),
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
        let viewer = JwtVerifier::new(&config).verify(&token).unwrap();
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
