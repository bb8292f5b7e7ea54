//! The relay every replica runs: dispatch the outbox into deliveries, claim the due ones,
//! POST each, record what happened. Wakes when this replica's bus hears of new audit
//! events (a transition committed) and on a short poll, which covers other replicas'
//! commits, retries coming due and a lost wake-up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{outbox_entry, webhook_delivery, webhook_endpoint};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::json;

use super::deliveries::{self, Next, Outcome};
use super::guard::Destinations;
use super::signature;
use crate::config::WebhookConfig;
use crate::error::AppError;
use crate::kernel::Clock;
use crate::telemetry::Metrics;

/// How much longer than the attempt's timeout a claim holds a delivery.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// The longest error text kept per attempt.
const MAX_ERROR_CHARS: usize = 500;

pub struct Relay {
    db: DatabaseConnection,
    clock: Clock,
    config: WebhookConfig,
    destinations: Destinations,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Becomes true on shutdown: no new claim after that.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Relay {
    pub fn new(
        db: DatabaseConnection,
        clock: Clock,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let destinations = Destinations::new(&config);
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect could lead where the URL check never looked.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy the resolver would see only the proxy's name, and the
            // address check would never run.
            .no_proxy()
            .dns_resolver(destinations.resolver())
            .build()?;
        Ok(Self {
            db,
            clock,
            config,
            destinations,
            client,
            metrics,
            stop,
        })
    }

    /// One round: dispatch what the outbox holds, then attempt every due delivery, a
    /// claim of `concurrency` at a time. Returns the deliveries attempted.
    pub async fn run_once(&self) -> Result<usize, AppError> {
        deliveries::dispatch(&self.db, self.clock.now()).await?;
        let mut attempted = 0;
        loop {
            if *self.stop.borrow() {
                // Shutting down: what is still due waits for the next replica or start.
                return Ok(attempted);
            }
            let now = self.clock.now();
            let lease = chrono::Duration::from_std(self.config.timeout + LEASE_MARGIN)
                .unwrap_or_else(|_| chrono::Duration::minutes(5));
            let batch = u64::try_from(self.config.concurrency).unwrap_or(8);
            let claimed = deliveries::claim(&self.db, now, now + lease, batch).await?;
            if claimed.is_empty() {
                return Ok(attempted);
            }
            attempted += claimed.len();
            let mut running: FuturesUnordered<_> =
                claimed.iter().map(|d| self.attempt(d)).collect();
            while let Some(result) = running.next().await {
                if let Err(err) = result {
                    err.log_if_internal();
                }
            }
        }
    }

    async fn attempt(&self, claimed: &webhook_delivery::Model) -> Result<(), AppError> {
        let endpoint = webhook_endpoint::Entity::find_by_id(claimed.endpoint_id)
            .one(&self.db)
            .await?;
        let entry = outbox_entry::Entity::find()
            .filter(outbox_entry::Column::Id.eq(claimed.outbox_id))
            .one(&self.db)
            .await?;
        let outcome = match (endpoint, entry) {
            (Some(endpoint), Some(entry)) if endpoint.disabled_at.is_none() => {
                self.post(&endpoint, &entry, claimed.attempts).await
            }
            (Some(_), Some(_)) => Outcome::Failed {
                status: None,
                error: "the webhook is disabled".into(),
                retry_after: None,
            },
            _ => Outcome::Failed {
                status: None,
                error: "the event or the webhook no longer exists".into(),
                retry_after: None,
            },
        };
        let now = self.clock.now();
        let next = match &outcome {
            Outcome::Delivered { .. } => None,
            Outcome::Failed { retry_after, .. } => {
                Some(self.next_after_failure(claimed.attempts, *retry_after, now))
            }
        };
        let written = deliveries::record(&self.db, claimed, &outcome, next, now).await?;
        if written {
            self.count(&outcome, next.as_ref());
            match (&outcome, &next) {
                (Outcome::Failed { error, .. }, Some(Next::DeadLetter)) => tracing::warn!(
                    delivery = %claimed.id,
                    webhook = %claimed.endpoint_id,
                    event = %claimed.outbox_id,
                    attempts = claimed.attempts,
                    error = %error,
                    "webhook delivery dead-lettered"
                ),
                (Outcome::Failed { error, .. }, _) => tracing::info!(
                    delivery = %claimed.id,
                    attempt = claimed.attempts,
                    error = %error,
                    "webhook delivery failed; will retry"
                ),
                _ => {}
            }
        }
        Ok(())
    }

    fn count(&self, outcome: &Outcome, next: Option<&Next>) {
        let outcome = match (outcome, next) {
            (Outcome::Delivered { .. }, _) => "delivered",
            (Outcome::Failed { .. }, Some(Next::DeadLetter)) => "dead_lettered",
            (Outcome::Failed { .. }, _) => "failed",
        };
        self.metrics.webhook_attempt(outcome);
    }

    /// Exponential backoff with jitter (half fixed, half random, so a receiver that comes
    /// back is not hit by every replica's retries at once), at least what the receiver's
    /// `Retry-After` asked for, at most `backoff_max`; dead after `max_attempts`.
    fn next_after_failure(
        &self,
        attempts: i32,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Next {
        if attempts >= i32::try_from(self.config.max_attempts).unwrap_or(i32::MAX) {
            return Next::DeadLetter;
        }
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let full = self
            .config
            .backoff
            .saturating_mul(1u32 << doublings)
            .min(self.config.backoff_max);
        let half = full / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        let wait = (half + Duration::from_millis(jitter))
            .max(retry_after.unwrap_or_default())
            .min(self.config.backoff_max);
        Next::Retry(now + chrono::Duration::from_std(wait).unwrap_or_default())
    }

    async fn post(
        &self,
        endpoint: &webhook_endpoint::Model,
        entry: &outbox_entry::Model,
        attempt: i32,
    ) -> Outcome {
        let failed = |error: String| Outcome::Failed {
            status: None,
            error: truncate(error),
            retry_after: None,
        };
        // Checked again on every attempt: the rules may have tightened since it was saved.
        let url = match self.destinations.parse(&endpoint.url) {
            Ok(url) => url,
            Err(err) => return failed(err.client_message()),
        };
        let body = event_body(entry);
        let timestamp = self.clock.now().timestamp();
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        put(signature::EVENT_ID, entry.id.to_string());
        put(signature::EVENT_KIND, entry.kind.clone());
        put(signature::TIMESTAMP, timestamp.to_string());
        put(
            signature::SIGNATURE,
            signature::sign(&endpoint.secret, timestamp, &body),
        );
        put(signature::ATTEMPT, attempt.to_string());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static("Countersign-Webhooks/1"),
        );
        match self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => Outcome::Delivered {
                status: response.status().as_u16(),
            },
            Ok(response) => Outcome::Failed {
                status: Some(response.status().as_u16()),
                error: format!("the receiver answered HTTP {}", response.status()),
                retry_after: retry_after(response.headers(), self.clock.now()),
            },
            Err(err) => failed(describe(&err)),
        }
    }
}

/// The body every attempt of one event carries, byte for byte.
pub fn event_body(entry: &outbox_entry::Model) -> Vec<u8> {
    json!({
        "id": entry.id,
        // The audit log's sequence: retries and concurrency can reorder deliveries.
        "sequence": entry.audit_sequence,
        "kind": entry.kind,
        "occurredAt": entry.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "request": entry.payload.get("request"),
        "actor": entry.payload.get("actor"),
    })
    .to_string()
    .into_bytes()
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// A transport error with its causes (the resolver's refusal is in there), for
/// `lastError`.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate(text)
}

fn truncate(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(at);
    }
    text
}
