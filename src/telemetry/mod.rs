//! Tracing set-up (human-readable logs in development, JSON lines in production) and the
//! Prometheus metrics served on `/metrics`.
//!
//! Split in two small functions (build, install) so tests can route logs to a sink.
//! Nothing here may log configuration values that hold secrets.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt};

use crate::config::Environment;

pub mod traces;

/// Resolver and statement spans are for traces, not for the log.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,async_graphql=warn";

/// Builds the subscriber; `RUST_LOG` overrides the log's default filter. With a tracer
/// (OTLP export configured), spans also go to OpenTelemetry, under their own filter: the
/// operation's, its resolvers' and its SQL statements'.
pub fn subscriber<W>(
    environment: Environment,
    writer: W,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let otel = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("sqlx", LevelFilter::WARN)
                    .with_target("sea_orm_migration", LevelFilter::WARN)
                    .with_target("countersign::sql", LevelFilter::OFF),
            )
    });
    let registry = tracing_subscriber::registry().with(otel);
    match environment {
        Environment::Production => Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    // Every enclosing span: the request's (`http`, with its request id)
                    // is then on every line, however deep the line is logged.
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_writer(writer)
                    .with_filter(filter),
            ),
        ),
        Environment::Development => Box::new(
            registry.with(
                fmt::layer()
                    .compact()
                    .with_writer(writer)
                    .with_filter(filter),
            ),
        ),
    }
}

/// Installs the subscriber for the whole process. Call once, at start-up.
pub fn install(subscriber: Box<dyn Subscriber + Send + Sync>) {
    // A second install (tests that start several apps) is harmless; ignore it.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// This process's Prometheus metrics, served on `/metrics`.
///
/// Each `App` owns its own recorder rather than installing a global one, so several apps in
/// one process (the tests) never mix their numbers.
pub struct Metrics {
    handle: PrometheusHandle,
    /// SQL statements executed, transactions included.
    pub db_statements: metrics::Counter,
    /// SQL statements per GraphQL operation over HTTP (admission check included).
    pub operation_statements: metrics::Histogram,
    /// Webhook attempts by outcome: delivered, failed (will retry), dead_lettered.
    webhook_attempts: [(&'static str, metrics::Counter); 3],
    /// Operation names seen so far (bounded; see [`Metrics::graphql_operation`]).
    operation_names: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Label values a per-scrape gauge has carried, so one that disappears reads 0.
    seen_labels: std::sync::Mutex<std::collections::BTreeSet<(&'static str, String)>>,
    recorder: PrometheusRecorder,
}

/// Distinct operation names kept as label values.
pub const MAX_OPERATION_NAMES: usize = 200;

impl Metrics {
    pub fn new() -> Self {
        // Latencies as histograms with buckets (a summary cannot be aggregated across
        // replicas).
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        ) {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new(),
        };
        let builder = match builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("countersign_operation_statements".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        ) {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let (db_statements, operation_statements, webhook_attempts) =
            metrics::with_local_recorder(&recorder, || {
                metrics::describe_counter!(
                    "countersign_db_statements_total",
                    "SQL statements executed, transactions included"
                );
                metrics::describe_histogram!(
                    "countersign_operation_statements",
                    "SQL statements per GraphQL operation over HTTP"
                );
                metrics::describe_counter!(
                    "countersign_webhook_attempts_total",
                    "Webhook delivery attempts by outcome (delivered, failed, dead_lettered)"
                );
                let attempts = ["delivered", "failed", "dead_lettered"].map(|outcome| {
                (
                    outcome,
                    metrics::counter!("countersign_webhook_attempts_total", "outcome" => outcome),
                )
            });
                (
                    metrics::counter!("countersign_db_statements_total"),
                    metrics::histogram!("countersign_operation_statements"),
                    attempts,
                )
            });
        Self {
            handle,
            db_statements,
            operation_statements,
            webhook_attempts,
            seen_labels: std::sync::Mutex::default(),
            operation_names: std::sync::Mutex::default(),
            recorder,
        }
    }

    /// One webhook attempt ended this way.
    pub fn webhook_attempt(&self, outcome: &str) {
        if let Some((_, counter)) = self.webhook_attempts.iter().find(|(o, _)| *o == outcome) {
            counter.increment(1);
        }
    }

    /// One HTTP request answered, on a route of the router (never a raw path).
    pub fn http_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let (route, method) = (route.to_owned(), method.to_owned());
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("countersign_http_requests_total",
                "route" => route.clone(), "method" => method, "status" => status.to_string())
            .increment(1);
            metrics::histogram!("countersign_http_request_duration_seconds", "route" => route)
                .record(elapsed.as_secs_f64());
        });
    }

    /// One GraphQL operation started. Names are the clients' own, so only the first
    /// [`MAX_OPERATION_NAMES`] distinct well-formed ones are kept as labels; the rest
    /// count as `other`.
    pub fn graphql_operation(&self, kind: &'static str, name: Option<&str>) {
        let name = match name {
            None => "anonymous".to_owned(),
            Some(name) => self.bounded_name(name),
        };
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("countersign_graphql_operations_total", "type" => kind, "name" => name)
                .increment(1);
        });
    }

    fn bounded_name(&self, name: &str) -> String {
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return "other".into();
        }
        let mut names = self
            .operation_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if names.contains(name) || names.len() < MAX_OPERATION_NAMES {
            names.insert(name.to_owned());
            name.to_owned()
        } else {
            "other".into()
        }
    }

    /// One error answered, by its `extensions.code` (a closed set).
    pub fn graphql_error(&self, code: &str) {
        let code = code.to_owned();
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("countersign_graphql_errors_total", "code" => code).increment(1);
        });
    }

    /// Adds one to a counter whose labels are bounded (job names, outcomes).
    pub fn increment(&self, name: &'static str, labels: &[(&'static str, &'static str)]) {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, *value))
            .collect();
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(name, labels).increment(1)
        });
    }

    /// A counter handle, for a hot path to increment without a lookup each time.
    pub fn counter(&self, name: &'static str) -> metrics::Counter {
        metrics::with_local_recorder(&self.recorder, || metrics::counter!(name))
    }

    /// Adds one to a gauge until the returned guard drops (open connections, running
    /// operations).
    pub fn in_gauge(&self, name: &'static str) -> GaugeGuard {
        let gauge = metrics::with_local_recorder(&self.recorder, || metrics::gauge!(name));
        gauge.increment(1.0);
        GaugeGuard(gauge)
    }

    /// Sets a gauge with bounded labels to `value`.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &'static str)], value: f64) {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, *value))
            .collect();
        metrics::with_local_recorder(&self.recorder, || metrics::gauge!(name, labels).set(value));
    }

    /// Sets a gauge computed at scrape time.
    pub fn gauge(&self, name: &'static str, value: f64) {
        metrics::with_local_recorder(&self.recorder, || metrics::gauge!(name).set(value));
    }

    /// Sets a gauge per value of `label` (bounded: policy keys, say) at scrape time; a
    /// value set before and absent now reads 0.
    pub fn gauges_by(&self, name: &'static str, label: &'static str, values: &[(String, f64)]) {
        let mut seen = self
            .seen_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        metrics::with_local_recorder(&self.recorder, || {
            for (_, key) in seen.iter().filter(|(n, _)| *n == name) {
                if !values.iter().any(|(v, _)| v == key) {
                    metrics::gauge!(name, label => key.clone()).set(0.0);
                }
            }
            for (key, value) in values {
                metrics::gauge!(name, label => key.clone()).set(*value);
            }
        });
        seen.extend(values.iter().map(|(key, _)| (name, key.clone())));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// One unit of a gauge, given back on drop.
pub struct GaugeGuard(metrics::Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

tokio::task_local! {
    static OPERATION_STATEMENTS: Arc<AtomicU64>;
}

/// Runs one operation and counts the SQL statements it issues, including those of tasks it
/// spawns through [`in_current_operation`] (the DataLoaders). Background jobs and other
/// operations running at the same time are not counted.
pub async fn count_statements<F: Future>(operation: F) -> (F::Output, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let output = OPERATION_STATEMENTS.scope(count.clone(), operation).await;
    (output, count.load(Ordering::Relaxed))
}

/// Called by the database's statement callback: one more for the current operation, if
/// any. Whether there was one (statements of background jobs are not).
pub fn statement_executed() -> bool {
    OPERATION_STATEMENTS
        .try_with(|count| count.fetch_add(1, Ordering::Relaxed))
        .is_ok()
}

/// A statement's bound values as typed JSON (`[{"uuid": "…"}, {"int": 3}, …]`), for the
/// `countersign::sql` trace: enough for the benchmark tool to replay exactly what ran.
pub fn typed_values(values: Option<&sea_orm::sea_query::Values>) -> serde_json::Value {
    use sea_orm::sea_query::Value as V;
    use serde_json::json;
    let one = |value: &V| match value {
        V::Bool(v) => json!({ "bool": v }),
        V::TinyInt(v) => json!({ "int": v }),
        V::SmallInt(v) => json!({ "int": v }),
        V::Int(v) => json!({ "int": v }),
        V::BigInt(v) => json!({ "bigint": v }),
        V::Unsigned(v) => json!({ "unsigned": v }),
        V::BigUnsigned(v) => json!({ "bigunsigned": v }),
        V::String(v) => json!({ "string": v }),
        V::Json(v) => json!({ "json": v }),
        V::ChronoDateTimeUtc(v) => json!({ "timestamp": v }),
        V::Uuid(v) => json!({ "uuid": v }),
        other => json!({ "unsupported": format!("{other:?}") }),
    };
    values.map_or_else(|| json!([]), |values| values.0.iter().map(one).collect())
}

/// A task spawned on behalf of the current operation keeps counting towards it.
pub fn in_current_operation<F: Future>(task: F) -> impl Future<Output = F::Output> {
    let count = OPERATION_STATEMENTS
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::new(AtomicU64::new(0)));
    OPERATION_STATEMENTS.scope(count, task)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn production_logs_carry_the_request_id_however_deep_the_line() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = subscriber(Environment::Production, move || writer.clone(), None);
        tracing::subscriber::with_default(subscriber, || {
            let http = tracing::info_span!("http", request_id = "01-request");
            let _http = http.enter();
            let operation = tracing::info_span!("graphql", graphql.operation.name = "WhoAmI");
            let _operation = operation.enter();
            tracing::info!("inside the operation");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(line["fields"]["message"], "inside the operation");
        let spans = line["spans"].as_array().unwrap();
        assert!(
            spans.iter().any(|s| s["request_id"] == "01-request"),
            "{line}"
        );
    }
}
