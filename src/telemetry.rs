//! Tracing set-up (human-readable logs in development, JSON lines in production) and the
//! Prometheus metrics served on `/metrics`.
//!
//! Split in two small functions (build, install) so tests can route logs to a sink.
//! Nothing here may log configuration values that hold secrets.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt};

use crate::config::Environment;

const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

/// Builds the subscriber; `RUST_LOG` overrides the default filter.
pub fn subscriber<W>(environment: Environment, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    match environment {
        Environment::Production => Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
        ),
        Environment::Development => {
            Box::new(registry.with(fmt::layer().compact().with_writer(writer)))
        }
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
    _recorder: PrometheusRecorder,
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let db_statements = metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                "countersign_db_statements_total",
                "SQL statements executed, transactions included"
            );
            metrics::counter!("countersign_db_statements_total")
        });
        Self {
            handle,
            db_statements,
            _recorder: recorder,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
