//! Tracing set-up: human-readable logs in development, JSON lines in production.
//!
//! Split in two small functions (build, install) so tests can route logs to a sink.
//! Nothing here may log configuration values that hold secrets.

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
