//! Typed configuration, read once at start-up from the environment (the README lists it).
//!
//! Everything the server needs to know about its surroundings is decided here, so the
//! rest of the code never reads the environment. Secrets live in [`Secret`], whose
//! `Debug` is redacted: a `Config` can be logged whole without leaking them.
//!
//! Longer than most files on purpose: one reader for every variable keeps their defaults
//! and production refusals side by side; a quarter of it is the unit tests of those.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod console;
mod operations;

pub use console::OidcConfig;
pub use operations::{JobsConfig, LimitsConfig, WebhookConfig};

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, DecodingKey};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://countersign.db?mode=rwc";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_ISSUER: &str = "countersign";
pub const DEFAULT_AUDIENCE: &str = "countersign";

/// Where the development secret is kept when the database is not a SQLite file.
const DEV_SECRET_FALLBACK_FILE: &str = "countersign-dev.jwt-secret";
/// HS256 wants at least as many key bytes as the hash output.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Listen address; port 0 picks a free port (tests rely on it).
    pub bind: String,
    /// Development is forgiving (generated secret, demo data); production is not.
    pub environment: Environment,
    /// How bearer tokens are verified and dev tokens signed.
    pub jwt: JwtConfig,
    /// Whether to seed the demo policies and permissions.
    pub demo: DemoMode,
    /// Origins (scheme://host[:port]) whose pages may open WebSockets, besides the server's
    /// own. `*` allows any, and is refused in production.
    pub allowed_origins: Vec<String>,
    /// How often each replica looks for pending requests past their expiry.
    pub expiry_sweep: Duration,
    /// Whether the background work runs: the expiry sweeper and the event bus's periodic
    /// checks. Always on from the environment; tests switch it off to count statements
    /// or to see a request past its deadline before any sweep.
    pub background_jobs: bool,
    /// The most aliased fields one operation may have (`COUNTERSIGN_MAX_ALIASES`).
    pub max_aliases: usize,
    /// The most fields one operation may select, fragments included
    /// (`COUNTERSIGN_MAX_FIELDS`).
    pub max_fields: usize,
    /// How long a WebSocket client may leave a full outbox unread before it is
    /// disconnected with 4420 (`COUNTERSIGN_WS_SEND_TIMEOUT`).
    pub ws_send_timeout: Duration,
    /// Webhook delivery (`COUNTERSIGN_WEBHOOK_*`).
    pub webhooks: WebhookConfig,
    /// The background jobs' cadence and retentions.
    pub jobs: JobsConfig,
    /// Rate limits, the request timeout, connection caps, introspection.
    pub limits: LimitsConfig,
    /// The console's sign-in through an OpenID Connect provider, if configured.
    pub oidc: Option<OidcConfig>,
    /// Whether traces are exported over OTLP: the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The exporter reads the rest of
    /// the standard `OTEL_*` variables itself.
    pub traces: bool,
}

/// Generous for the console and GraphiQL's introspection (no aliases, ~60 fields); far
/// below what it takes to multiply one expensive field by hundreds.
pub const DEFAULT_MAX_ALIASES: usize = 64;
pub const DEFAULT_MAX_FIELDS: usize = 512;
/// Long enough for a console on a slow link to catch up; short enough that a client
/// that stopped reading does not hold its messages for long.
pub const DEFAULT_WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoMode {
    /// Seed when the database has no policies yet, in development only.
    OnEmptyDatabase,
    /// `COUNTERSIGN_DEMO=1`: seed whatever is missing of the demo.
    On,
    /// `COUNTERSIGN_DEMO=0`: never seed.
    Off,
}

#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The HS256 secret that verifies tokens and signs dev tokens. `None` in production
    /// when only public keys are configured.
    pub secret: Option<Secret>,
    /// Where the secret came from, so start-up can say so without printing it.
    pub secret_source: Option<SecretSource>,
    /// A PEM public key (RSA or P-256) for RS256 / ES256 tokens without a `kid`.
    pub public_key_pem: Option<String>,
    /// A JWKS file holding keys by `kid`; re-read on an unknown `kid`, so keys rotate
    /// without a restart.
    pub jwks_file: Option<PathBuf>,
    /// The algorithms accepted. Pinned here; a token's header never widens it.
    pub algorithms: Vec<Algorithm>,
    /// The required `iss` claim.
    pub issuer: String,
    /// The required `aud` claim.
    pub audience: String,
    /// The longest `exp - iat` accepted.
    pub max_lifetime: Duration,
    /// How often, at most, the JWKS file is re-read for an unknown `kid`.
    pub jwks_refresh: Duration,
    /// Where in the token the roles are: the path's segments, e.g. `["realm_access",
    /// "roles"]` for Keycloak's `realm_access.roles`.
    pub roles_claim: Vec<String>,
}

pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// `COUNTERSIGN_JWT_ROLES_CLAIM`: a dotted path of claim names, none empty.
pub fn parse_roles_claim(path: &str) -> anyhow::Result<Vec<String>> {
    let segments: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
    if segments
        .iter()
        .any(|s| s.trim().is_empty() || s.trim() != s)
    {
        bail!(
            "COUNTERSIGN_JWT_ROLES_CLAIM must be a dotted path of claim names such as \
             `roles`, `groups` or `realm_access.roles`, not `{path}`"
        );
    }
    Ok(segments)
}

pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(30);
pub const DEFAULT_EXPIRY_SWEEP: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Environment,
    /// Generated for development and kept in this file so dev tokens survive restarts.
    DevelopmentFile(PathBuf),
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to read the value; grep for it when auditing secret handling.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url_redacted())
            .field("bind", &self.bind)
            .field("environment", &self.environment)
            .field("jwt", &self.jwt)
            .field("demo", &self.demo)
            .field("allowed_origins", &self.allowed_origins)
            .field("expiry_sweep", &self.expiry_sweep)
            .field("background_jobs", &self.background_jobs)
            .field("max_aliases", &self.max_aliases)
            .field("max_fields", &self.max_fields)
            .field("ws_send_timeout", &self.ws_send_timeout)
            .field("webhooks", &self.webhooks)
            .field("jobs", &self.jobs)
            .field("limits", &self.limits)
            .field("traces", &self.traces)
            .field("oidc", &self.oidc)
            .finish()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup`, so tests can supply their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |key: &str| lookup(key).filter(|value| !value.trim().is_empty());

        let environment = match var("COUNTERSIGN_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                bail!("COUNTERSIGN_ENV must be `development` or `production`, not `{other}`")
            }
        };
        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            bail!("DATABASE_URL must start with `sqlite:` or `postgres://`");
        }
        let bind = var("COUNTERSIGN_BIND").unwrap_or_else(|| DEFAULT_BIND.into());

        let demo = match var("COUNTERSIGN_DEMO").as_deref() {
            None => DemoMode::OnEmptyDatabase,
            Some("1") | Some("true") | Some("on") => DemoMode::On,
            Some("0") | Some("false") | Some("off") => DemoMode::Off,
            Some(other) => bail!("COUNTERSIGN_DEMO must be 1 or 0, not `{other}`"),
        };

        let issuer = var("COUNTERSIGN_JWT_ISSUER");
        let audience = var("COUNTERSIGN_JWT_AUDIENCE");
        let secret = var("COUNTERSIGN_JWT_SECRET");
        let public_key = var("COUNTERSIGN_JWT_PUBLIC_KEY");
        let jwks_file = var("COUNTERSIGN_JWT_JWKS_FILE").map(PathBuf::from);

        if environment == Environment::Production {
            // Production must be configured on purpose: a generated secret or a default
            // issuer would quietly accept tokens minted for some other deployment.
            let mut missing = Vec::new();
            if secret.is_none() && public_key.is_none() && jwks_file.is_none() {
                missing.push(
                    "COUNTERSIGN_JWT_SECRET (or COUNTERSIGN_JWT_PUBLIC_KEY / COUNTERSIGN_JWT_JWKS_FILE)",
                );
            }
            for (name, value) in [
                ("COUNTERSIGN_JWT_ISSUER", &issuer),
                ("COUNTERSIGN_JWT_AUDIENCE", &audience),
            ] {
                if value.is_none() {
                    missing.push(name);
                }
            }
            if !missing.is_empty() {
                bail!(
                    "production refuses to start without explicit JWT configuration: set {}",
                    missing.join(", ")
                );
            }
            if demo == DemoMode::On {
                bail!("production never seeds demo data: unset COUNTERSIGN_DEMO");
            }
        }

        let (secret, secret_source) = match (secret, environment) {
            (Some(secret), _) => (Some(Secret::new(secret)), Some(SecretSource::Environment)),
            (None, Environment::Development) => {
                let path = dev_secret_path(&database_url);
                let secret = load_or_create_dev_secret(&path)?;
                (Some(secret), Some(SecretSource::DevelopmentFile(path)))
            }
            (None, Environment::Production) => (None, None),
        };
        if secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < MIN_SECRET_BYTES)
        {
            bail!("COUNTERSIGN_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long");
        }
        let public_key_pem = match public_key {
            None => None,
            Some(inline) if inline.trim_start().starts_with("-----BEGIN") => Some(inline),
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading COUNTERSIGN_JWT_PUBLIC_KEY from {path}"))?,
            ),
        };
        let public_key_algorithm = match &public_key_pem {
            None => None,
            Some(pem) => Some(pem_algorithm(pem)?),
        };
        let algorithms = match var("COUNTERSIGN_JWT_ALGORITHMS") {
            Some(list) => {
                let mut algorithms = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let algorithm = match name {
                        "HS256" => Algorithm::HS256,
                        "RS256" => Algorithm::RS256,
                        "ES256" => Algorithm::ES256,
                        other => bail!(
                            "COUNTERSIGN_JWT_ALGORITHMS: {other} is not supported (HS256, RS256, ES256)"
                        ),
                    };
                    algorithms.push(algorithm);
                }
                algorithms
            }
            None => {
                let mut algorithms = Vec::new();
                if secret.is_some() {
                    algorithms.push(Algorithm::HS256);
                }
                if let Some(algorithm) = public_key_algorithm {
                    algorithms.push(algorithm);
                }
                if jwks_file.is_some() {
                    algorithms.extend([Algorithm::RS256, Algorithm::ES256]);
                }
                algorithms.dedup();
                algorithms
            }
        };
        if algorithms.is_empty() {
            bail!("COUNTERSIGN_JWT_ALGORITHMS names no algorithm");
        }
        if algorithms.contains(&Algorithm::HS256) && secret.is_none() {
            bail!("HS256 is allowed but COUNTERSIGN_JWT_SECRET is not set");
        }
        for asymmetric in [Algorithm::RS256, Algorithm::ES256] {
            let has_key = jwks_file.is_some() || public_key_algorithm == Some(asymmetric);
            if algorithms.contains(&asymmetric) && !has_key {
                bail!(
                    "{asymmetric:?} is allowed but no key for it is configured \
                     (COUNTERSIGN_JWT_PUBLIC_KEY or COUNTERSIGN_JWT_JWKS_FILE)"
                );
            }
        }
        let vars = operations::Vars(&var);
        let duration = |name: &str, default: Duration| vars.duration(name, default);
        let max_lifetime = duration("COUNTERSIGN_JWT_MAX_LIFETIME", DEFAULT_MAX_TOKEN_LIFETIME)?;
        let jwks_refresh = duration("COUNTERSIGN_JWT_JWKS_REFRESH", DEFAULT_JWKS_REFRESH)?;
        let roles_claim = parse_roles_claim(
            var("COUNTERSIGN_JWT_ROLES_CLAIM")
                .as_deref()
                .unwrap_or(DEFAULT_ROLES_CLAIM),
        )?;
        let expiry_sweep = duration("COUNTERSIGN_EXPIRY_SWEEP", DEFAULT_EXPIRY_SWEEP)?;
        let ws_send_timeout = duration("COUNTERSIGN_WS_SEND_TIMEOUT", DEFAULT_WS_SEND_TIMEOUT)?;

        let count = |name: &str, default: usize| vars.count(name, default);
        let max_aliases = count("COUNTERSIGN_MAX_ALIASES", DEFAULT_MAX_ALIASES)?;
        let max_fields = count("COUNTERSIGN_MAX_FIELDS", DEFAULT_MAX_FIELDS)?;

        let allowed_origins: Vec<String> = var("COUNTERSIGN_ALLOWED_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if environment == Environment::Production && allowed_origins.iter().any(|o| o == "*") {
            bail!("production refuses a wildcard in COUNTERSIGN_ALLOWED_ORIGINS");
        }

        Ok(Self {
            database_url,
            bind,
            environment,
            jwt: JwtConfig {
                secret,
                secret_source,
                public_key_pem,
                jwks_file,
                algorithms,
                issuer: issuer.unwrap_or_else(|| DEFAULT_ISSUER.into()),
                audience: audience.unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
                max_lifetime,
                jwks_refresh,
                roles_claim,
            },
            demo: match environment {
                Environment::Production => DemoMode::Off,
                Environment::Development => demo,
            },
            allowed_origins,
            expiry_sweep,
            background_jobs: true,
            max_aliases,
            max_fields,
            ws_send_timeout,
            webhooks: operations::webhooks(&vars, environment)?,
            jobs: operations::jobs(&vars)?,
            limits: operations::limits(&vars, environment)?,
            oidc: console::oidc(&vars, environment)?,
            traces: var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some(),
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// The database URL with any password replaced, for logs and start-up messages.
    pub fn database_url_redacted(&self) -> String {
        redact_url_password(&self.database_url)
    }
}

/// Which algorithm a PEM public key verifies: RS256 for RSA, ES256 for P-256.
fn pem_algorithm(pem: &str) -> anyhow::Result<Algorithm> {
    if DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok() {
        Ok(Algorithm::RS256)
    } else if DecodingKey::from_ec_pem(pem.as_bytes()).is_ok() {
        Ok(Algorithm::ES256)
    } else {
        bail!("COUNTERSIGN_JWT_PUBLIC_KEY is neither an RSA nor an EC public key in PEM form")
    }
}

/// `sqlite://countersign.db?mode=rwc` keeps its secret in `countersign.db.jwt-secret`;
/// in-memory SQLite and PostgreSQL fall back to a file in the working directory.
fn dev_secret_path(database_url: &str) -> PathBuf {
    sqlite_file_path(database_url)
        .map(|db| {
            let mut name = db.as_os_str().to_owned();
            name.push(".jwt-secret");
            PathBuf::from(name)
        })
        .unwrap_or_else(|| PathBuf::from(DEV_SECRET_FALLBACK_FILE))
}

/// The file behind a SQLite URL, or `None` for an in-memory database or another backend.
pub fn sqlite_file_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

fn load_or_create_dev_secret(path: &Path) -> anyhow::Result<Secret> {
    match std::fs::read_to_string(path) {
        Ok(existing) if existing.trim().len() >= MIN_SECRET_BYTES => {
            return Ok(Secret::new(existing.trim()));
        }
        Ok(_) => bail!(
            "the development JWT secret in {} is too short; delete the file to regenerate it",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("reading {}", path.display()));
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private_file(path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: two processes starting at once must not overwrite each other's secret.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|key| vars.get(key).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn production_refuses_to_start_without_explicit_jwt_configuration() {
        let err = config_from(&[("COUNTERSIGN_ENV", "production")]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("COUNTERSIGN_JWT_SECRET"), "{message}");
        assert!(message.contains("COUNTERSIGN_JWT_ISSUER"), "{message}");

        let err = config_from(&[
            ("COUNTERSIGN_ENV", "production"),
            ("COUNTERSIGN_JWT_SECRET", SECRET),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("COUNTERSIGN_JWT_AUDIENCE"));
    }

    #[test]
    fn production_may_verify_with_a_public_key_alone_and_pins_its_algorithm() {
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa-a.pub.pem");
        let config = config_from(&[
            ("COUNTERSIGN_ENV", "production"),
            ("COUNTERSIGN_JWT_PUBLIC_KEY", pem),
            ("COUNTERSIGN_JWT_ISSUER", "https://id.example.com"),
            ("COUNTERSIGN_JWT_AUDIENCE", "countersign"),
        ])
        .unwrap();
        assert_eq!(config.jwt.algorithms, vec![Algorithm::RS256]);
        assert!(config.jwt.secret.is_none());

        let err = config_from(&[
            ("COUNTERSIGN_ENV", "production"),
            ("COUNTERSIGN_JWT_PUBLIC_KEY", pem),
            ("COUNTERSIGN_JWT_ALGORITHMS", "HS256"),
            ("COUNTERSIGN_JWT_ISSUER", "https://id.example.com"),
            ("COUNTERSIGN_JWT_AUDIENCE", "countersign"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("HS256"));
    }

    #[test]
    fn production_refuses_demo_data() {
        let err = config_from(&[
            ("COUNTERSIGN_ENV", "production"),
            ("COUNTERSIGN_JWT_SECRET", SECRET),
            ("COUNTERSIGN_JWT_ISSUER", "https://id.example.com"),
            ("COUNTERSIGN_JWT_AUDIENCE", "countersign"),
            ("COUNTERSIGN_DEMO", "1"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("demo"));
    }

    #[test]
    fn production_never_seeds_on_an_empty_database() {
        let config = config_from(&[
            ("COUNTERSIGN_ENV", "production"),
            ("COUNTERSIGN_JWT_SECRET", SECRET),
            ("COUNTERSIGN_JWT_ISSUER", "https://id.example.com"),
            ("COUNTERSIGN_JWT_AUDIENCE", "countersign"),
        ])
        .unwrap();
        assert_eq!(config.demo, DemoMode::Off);
    }

    #[test]
    fn production_refuses_wildcard_origins() {
        let err = config_from(&[
            ("COUNTERSIGN_ENV", "production"),
            ("COUNTERSIGN_JWT_SECRET", SECRET),
            ("COUNTERSIGN_JWT_ISSUER", "https://id.example.com"),
            ("COUNTERSIGN_JWT_AUDIENCE", "countersign"),
            (
                "COUNTERSIGN_ALLOWED_ORIGINS",
                "https://console.example.com, *",
            ),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("wildcard"));
        let dev = config_from(&[
            ("COUNTERSIGN_JWT_SECRET", SECRET),
            ("COUNTERSIGN_ALLOWED_ORIGINS", "https://a.example/ ,*"),
        ])
        .unwrap();
        assert_eq!(
            dev.allowed_origins,
            vec!["https://a.example".to_string(), "*".to_string()]
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = config_from(&[("COUNTERSIGN_JWT_SECRET", "short")]).unwrap_err();
        assert!(err.to_string().contains("at least"));
    }

    #[test]
    fn development_generates_a_secret_beside_the_sqlite_file_and_reuses_it() {
        let dir = std::env::temp_dir().join(format!("cs-config-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/queue.db?mode=rwc", dir.display());
        let first = config_from(&[("DATABASE_URL", &url)]).unwrap();
        let second = config_from(&[("DATABASE_URL", &url)]).unwrap();
        let secret = |c: &Config| c.jwt.secret.as_ref().unwrap().expose().to_owned();
        assert_eq!(secret(&first), secret(&second));
        assert_eq!(
            first.jwt.secret_source,
            Some(SecretSource::DevelopmentFile(
                dir.join("queue.db.jwt-secret")
            ))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_and_passwords_never_show_in_debug_output() {
        let config = config_from(&[
            ("COUNTERSIGN_JWT_SECRET", SECRET),
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/cs"),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file_path("sqlite://countersign.db?mode=rwc"),
            Some(PathBuf::from("countersign.db"))
        );
        assert_eq!(sqlite_file_path("sqlite::memory:"), None);
        assert_eq!(sqlite_file_path("postgres://localhost/cs"), None);
    }
}
