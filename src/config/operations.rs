//! What the operations issue added to the configuration: webhook delivery, the background
//! jobs' retentions and cadence.

use std::time::Duration;

use anyhow::{Context, bail};

use super::Environment;

/// How the webhook relay delivers, and where it may deliver to.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Attempts before a delivery is dead-lettered (`COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles per failure, with jitter
    /// (`COUNTERSIGN_WEBHOOK_BACKOFF`).
    pub backoff: Duration,
    /// The longest wait between two attempts, `Retry-After` included
    /// (`COUNTERSIGN_WEBHOOK_BACKOFF_MAX`).
    pub backoff_max: Duration,
    /// One attempt's limit, connecting included (`COUNTERSIGN_WEBHOOK_TIMEOUT`).
    pub timeout: Duration,
    /// Deliveries one replica attempts at once (`COUNTERSIGN_WEBHOOK_CONCURRENCY`).
    pub concurrency: usize,
    /// Only `https://` URLs (production).
    pub require_https: bool,
    /// Whether URLs may reach loopback, private, link-local or metadata addresses
    /// (`COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE`; on in development, off in production).
    pub allow_private: bool,
    /// Hosts exempt from the address check, as written in the URL
    /// (`COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS`, comma-separated).
    pub allowed_hosts: Vec<String>,
}

pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 10;
pub const DEFAULT_WEBHOOK_BACKOFF: Duration = Duration::from_secs(10);
pub const DEFAULT_WEBHOOK_BACKOFF_MAX: Duration = Duration::from_secs(3600);
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 8;

/// The cadence and retentions of the background jobs.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// How often each replica looks for due webhook deliveries when nothing wakes it
    /// sooner (`COUNTERSIGN_WEBHOOK_POLL`).
    pub webhook_poll: Duration,
    /// How long an idempotency key replays its outcome before it is purged
    /// (`COUNTERSIGN_IDEMPOTENCY_RETENTION`).
    pub idempotency_retention: Duration,
    /// How long a dispatched outbox entry, and its delivered webhooks, are kept
    /// (`COUNTERSIGN_OUTBOX_RETENTION`). Dead letters are kept until replayed.
    pub outbox_retention: Duration,
    /// How often the purges run (`COUNTERSIGN_PURGE_EVERY`).
    pub purge_every: Duration,
    /// How often each replica re-verifies the whole audit chain and reports it as
    /// `countersign_audit_chain_ok` (`COUNTERSIGN_AUDIT_VERIFY_EVERY`).
    pub audit_verify_every: Duration,
}

pub const DEFAULT_WEBHOOK_POLL: Duration = Duration::from_secs(1);
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_PURGE_EVERY: Duration = Duration::from_secs(600);
pub const DEFAULT_AUDIT_VERIFY_EVERY: Duration = Duration::from_secs(3600);

/// Reads one variable at a time; empty counts as unset.
pub(super) struct Vars<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// A positive duration such as `30s` or `12h`.
    pub fn duration(&self, name: &str, default: Duration) -> anyhow::Result<Duration> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        let value = humantime::parse_duration(text.trim())
            .with_context(|| format!("{name} must be a duration such as 12h or 30s"))?;
        if value.is_zero() {
            bail!("{name} must be longer than zero");
        }
        Ok(value)
    }

    /// A whole number above zero.
    pub fn count(&self, name: &str, default: usize) -> anyhow::Result<usize> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{name} must be a whole number above zero")),
        }
    }

    fn flag(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("1" | "true" | "on") => Ok(true),
            Some("0" | "false" | "off") => Ok(false),
            Some(other) => bail!("{name} must be 1 or 0, not `{other}`"),
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|list| {
                list.split(',')
                    .map(|item| item.trim().to_ascii_lowercase())
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub(super) fn webhooks(vars: &Vars<'_>, environment: Environment) -> anyhow::Result<WebhookConfig> {
    let production = environment == Environment::Production;
    let max_attempts = vars.count(
        "COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS",
        DEFAULT_WEBHOOK_MAX_ATTEMPTS as usize,
    )?;
    let backoff = vars.duration("COUNTERSIGN_WEBHOOK_BACKOFF", DEFAULT_WEBHOOK_BACKOFF)?;
    let backoff_max = vars.duration(
        "COUNTERSIGN_WEBHOOK_BACKOFF_MAX",
        DEFAULT_WEBHOOK_BACKOFF_MAX,
    )?;
    if backoff_max < backoff {
        bail!("COUNTERSIGN_WEBHOOK_BACKOFF_MAX must be at least COUNTERSIGN_WEBHOOK_BACKOFF");
    }
    Ok(WebhookConfig {
        max_attempts: u32::try_from(max_attempts)
            .context("COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS is too large")?,
        backoff,
        backoff_max,
        timeout: vars.duration("COUNTERSIGN_WEBHOOK_TIMEOUT", DEFAULT_WEBHOOK_TIMEOUT)?,
        concurrency: vars.count(
            "COUNTERSIGN_WEBHOOK_CONCURRENCY",
            DEFAULT_WEBHOOK_CONCURRENCY,
        )?,
        require_https: production,
        allow_private: vars.flag("COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE", !production)?,
        allowed_hosts: vars.list("COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS"),
    })
}

pub(super) fn jobs(vars: &Vars<'_>) -> anyhow::Result<JobsConfig> {
    Ok(JobsConfig {
        webhook_poll: vars.duration("COUNTERSIGN_WEBHOOK_POLL", DEFAULT_WEBHOOK_POLL)?,
        idempotency_retention: vars.duration(
            "COUNTERSIGN_IDEMPOTENCY_RETENTION",
            DEFAULT_IDEMPOTENCY_RETENTION,
        )?,
        outbox_retention: vars
            .duration("COUNTERSIGN_OUTBOX_RETENTION", DEFAULT_OUTBOX_RETENTION)?,
        purge_every: vars.duration("COUNTERSIGN_PURGE_EVERY", DEFAULT_PURGE_EVERY)?,
        audit_verify_every: vars
            .duration("COUNTERSIGN_AUDIT_VERIFY_EVERY", DEFAULT_AUDIT_VERIFY_EVERY)?,
    })
}

impl WebhookConfig {
    /// What an unset environment gives.
    pub fn defaults(environment: Environment) -> Self {
        let production = environment == Environment::Production;
        Self {
            max_attempts: DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            backoff: DEFAULT_WEBHOOK_BACKOFF,
            backoff_max: DEFAULT_WEBHOOK_BACKOFF_MAX,
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            concurrency: DEFAULT_WEBHOOK_CONCURRENCY,
            require_https: production,
            allow_private: !production,
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            webhook_poll: DEFAULT_WEBHOOK_POLL,
            idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
            outbox_retention: DEFAULT_OUTBOX_RETENTION,
            purge_every: DEFAULT_PURGE_EVERY,
            audit_verify_every: DEFAULT_AUDIT_VERIFY_EVERY,
        }
    }
}

/// Limits that protect the service from one caller (`COUNTERSIGN_RATE_LIMIT`, …).
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// GraphQL operations per second one subject may run, over HTTP and WebSocket
    /// together (`COUNTERSIGN_RATE_LIMIT`).
    pub rate_per_second: u32,
    /// How many may come at once before the rate applies (`COUNTERSIGN_RATE_LIMIT_BURST`).
    pub burst: u32,
    /// Requests per second one IP address may make without a valid token, failed
    /// attempts included (`COUNTERSIGN_ANONYMOUS_RATE_LIMIT`); the burst is twice it.
    pub anonymous_rate_per_second: u32,
    /// The longest one GraphQL operation over HTTP may run (`COUNTERSIGN_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// WebSocket connections one subject may hold open
    /// (`COUNTERSIGN_MAX_CONNECTIONS_PER_SUBJECT`).
    pub max_connections_per_subject: usize,
    /// Whether introspection and "did you mean" suggestions are on
    /// (`COUNTERSIGN_INTROSPECTION`; on in development, off in production).
    pub introspection: bool,
}

/// A person at a console makes a few operations a second; a backend service that needs
/// more gets its own limit.
pub const DEFAULT_RATE_LIMIT: u32 = 20;
pub const DEFAULT_ANONYMOUS_RATE_LIMIT: u32 = 10;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS_PER_SUBJECT: usize = 20;

impl LimitsConfig {
    pub fn defaults(environment: Environment) -> Self {
        Self {
            rate_per_second: DEFAULT_RATE_LIMIT,
            burst: 2 * DEFAULT_RATE_LIMIT,
            anonymous_rate_per_second: DEFAULT_ANONYMOUS_RATE_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections_per_subject: DEFAULT_MAX_CONNECTIONS_PER_SUBJECT,
            introspection: environment == Environment::Development,
        }
    }
}

pub(super) fn limits(vars: &Vars<'_>, environment: Environment) -> anyhow::Result<LimitsConfig> {
    let per_second = |name: &str, default: u32| -> anyhow::Result<u32> {
        u32::try_from(vars.count(name, default as usize)?)
            .with_context(|| format!("{name} is too large"))
    };
    let rate_per_second = per_second("COUNTERSIGN_RATE_LIMIT", DEFAULT_RATE_LIMIT)?;
    Ok(LimitsConfig {
        rate_per_second,
        burst: per_second(
            "COUNTERSIGN_RATE_LIMIT_BURST",
            rate_per_second.saturating_mul(2),
        )?,
        anonymous_rate_per_second: per_second(
            "COUNTERSIGN_ANONYMOUS_RATE_LIMIT",
            DEFAULT_ANONYMOUS_RATE_LIMIT,
        )?,
        request_timeout: vars.duration("COUNTERSIGN_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)?,
        max_connections_per_subject: vars.count(
            "COUNTERSIGN_MAX_CONNECTIONS_PER_SUBJECT",
            DEFAULT_MAX_CONNECTIONS_PER_SUBJECT,
        )?,
        introspection: vars.flag(
            "COUNTERSIGN_INTROSPECTION",
            environment == Environment::Development,
        )?,
    })
}
