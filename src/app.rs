//! The application: `App::build(config)` connects, migrates, seeds the demo and binds the
//! listener (port 0 works); `run_until(shutdown)` serves until the shutdown future resolves.
//! [`router`] is separate so tests and tools can build the same routes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::approvals::feed::RequestFeed;
use crate::auth::JwtVerifier;
use crate::config::Config;
use crate::db;
use crate::demo::{self, Seeded};
use crate::events::bus::EventBus;
pub use crate::graphql::AppState;
use crate::graphql::{self, handlers};
use crate::jobs::Jobs;
use crate::kernel::Clock;
use crate::telemetry::{self, Metrics};

/// The largest request body accepted: a 64 KiB payload plus the rest of an operation.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long open connections (WebSockets included) get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long background jobs get to finish their current round after that, beyond one
/// webhook attempt's timeout (an attempt in flight is let finish).
const JOBS_GRACE: Duration = Duration::from_secs(2);
/// How long open WebSockets get to send their 1001 close once HTTP has drained.
const SOCKETS_GRACE: Duration = Duration::from_secs(5);

pub struct App {
    listener: TcpListener,
    jobs_grace: Duration,
    /// Open WebSockets: axum stops tracking a connection once it is upgraded, so shutdown
    /// waits on this to let each send its close frame.
    sockets: Arc<std::sync::atomic::AtomicUsize>,
    draining: tokio::sync::watch::Sender<bool>,
    router: Router,
    bus: Arc<EventBus>,
    jobs: Option<Jobs>,
    db: DatabaseConnection,
    local_addr: SocketAddr,
    seeded: Seeded,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// [`App::build`] with a given clock: tests share one between replicas and move it.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let mut db = db::connect(&config.database_url).await?;
        let metrics = Arc::new(Metrics::new());
        let statements = metrics.db_statements.clone();
        db.set_metric_callback(move |info| {
            statements.increment(1);
            let in_operation = telemetry::statement_executed();
            // The benchmark tool replays these (`countersign::sql=trace`); `statement` last,
            // as one JSON value, so a line ends with it.
            // Webhook endpoints hold signing secrets: their values never reach a log.
            let values = if info.statement.sql.contains("webhook_endpoints") {
                serde_json::json!("redacted")
            } else {
                telemetry::typed_values(info.statement.values.as_ref())
            };
            tracing::trace!(
                target: "countersign::sql",
                failed = info.failed,
                in_operation,
                statement = %serde_json::json!({ "sql": info.statement.sql, "values": values }),
            );
        });
        db::migrate_on_start(&db).await?;
        let seeded = demo::seed(&db, &clock, config.demo, config.environment).await?;

        let listener = TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;

        let background_jobs = config.background_jobs;
        let bus = EventBus::new(db.clone());
        bus.start(&config.database_url, background_jobs).await;
        let feed = RequestFeed::start(db.clone(), &bus)
            .await
            .map_err(|err| anyhow::anyhow!("starting the request feed: {err:?}"))?;
        let jobs = if background_jobs {
            Some(Jobs::start(&db, &bus, &clock, &config, &metrics)?)
        } else {
            None
        };
        let (draining, draining_rx) = tokio::sync::watch::channel(false);
        let jobs_grace = config.webhooks.timeout + JOBS_GRACE;
        let sockets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = AppState {
            throttle: Arc::new(crate::graphql::throttle::Throttle::new(&config.limits)),
            draining: draining_rx,
            sockets: sockets.clone(),
            overview: Arc::default(),
            feed: feed.clone(),
            schema: graphql::build_schema(
                db.clone(),
                bus.clone(),
                feed.clone(),
                clock.clone(),
                &config,
            ),
            clock: clock.clone(),
            admission: Arc::new(crate::auth::admission::Admission::new(
                db.clone(),
                bus.clone(),
            )),
            bus: bus.clone(),
            verifier: Arc::new(JwtVerifier::new(&config.jwt).context("loading JWT keys")?),
            config: Arc::new(config),
            metrics,
            db: db.clone(),
        };
        Ok(Self {
            listener,
            jobs_grace,
            sockets,
            draining,
            router: router(state),
            jobs,
            bus,
            db,
            local_addr,
            seeded,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The whole HTTP surface, to drive without a socket (the fuzz targets in `fuzz/` do).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// What the demo seeding did at start-up.
    pub fn seeded(&self) -> &Seeded {
        &self.seeded
    }

    /// Serves until `shutdown` resolves, then lets open connections finish for a bounded
    /// grace period and closes the database pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let draining = self.draining;
        let server = axum::serve(self.listener, service)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .into_future();
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result.context("serving HTTP")?,
            () = shutdown => {
                tracing::info!("shutting down");
                // Stop accepting; open WebSockets close with 1001 and in-flight requests
                // finish, within the grace period.
                let _ = draining.send(true);
                let _ = stop_tx.send(true);
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(result) => result.context("serving HTTP")?,
                    Err(_) => tracing::warn!("connections still open after the grace period; closing them"),
                }
            }
        }
        let deadline = tokio::time::Instant::now() + SOCKETS_GRACE;
        while self.sockets.load(std::sync::atomic::Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(jobs) = self.jobs {
            jobs.stop(self.jobs_grace).await;
        }
        self.bus.stop();
        self.db.close().await.context("closing the database pool")?;
        Ok(())
    }
}

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route(
            "/graphql",
            get(crate::console::graphiql).post(handlers::graphql_post),
        )
        .route("/graphql/ws", get(handlers::graphql_ws))
        .route("/", get(crate::console::page))
        .route("/console/personas", get(crate::console::personas))
        .route("/console/config", get(crate::console::settings))
        .route("/console/{*path}", get(crate::console::file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let metrics = state.metrics.clone();
    router
        .route_layer(axum::middleware::from_fn_with_state(metrics, track))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::new())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .extensions()
                    .get::<RequestId>()
                    .and_then(|id| id.header_value().to_str().ok())
                    .unwrap_or_default();
                let span = tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                );
                // In traces, every span of the request carries its id (a no-op when
                // traces are not exported).
                let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
                    &span,
                    crate::telemetry::traces::request_context(request_id),
                );
                span
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(RequestIdV7))
}

/// Counts every request by its route (the pattern, never the raw path: bounded labels),
/// method and status, and times it.
async fn track(
    State(metrics): State<Arc<Metrics>>,
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = route.map_or_else(|| "unmatched".to_owned(), |r| r.as_str().to_owned());
    // Any token is a method to HTTP; only the ones served here become labels.
    let method = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Request ids are UUID v7, like every other id here, so they sort by time in logs.
#[derive(Clone, Copy)]
struct RequestIdV7;

impl MakeRequestId for RequestIdV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7()
            .to_string()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// Prometheus text exposition of this process's metrics. The queue and backlog gauges
/// are read at scrape time (`operations::read`): a failed read leaves them as they were
/// and is logged, so the counters are still served.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = match state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = state.db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => {
            let pool = state.db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
    };
    let in_use = f64::from(size) - idle as f64;
    state
        .metrics
        .gauge("countersign_db_pool_connections", f64::from(size));
    state.metrics.gauge("countersign_db_pool_idle", idle as f64);
    state
        .metrics
        .gauge("countersign_db_pool_in_use", in_use.max(0.0));
    #[allow(
        clippy::cast_precision_loss,
        reason = "a gauge is a float; sequences stay far below 2^52"
    )]
    let feed = state.feed.sequence() as f64;
    state.metrics.gauge("countersign_feed_sequence", feed);
    state.metrics.gauge(
        "countersign_feed_last_read_timestamp_seconds",
        state.feed.last_read(),
    );
    let now = state.clock.now();
    match state.overview.get(&state.db, now).await {
        Ok(overview) => {
            crate::operations::export(&overview, &state.metrics, now);
            state.metrics.gauge("countersign_database_up", 1.0);
        }
        Err(err) => {
            state.metrics.gauge("countersign_database_up", 0.0);
            tracing::warn!(
                code = err.code(),
                "metrics: could not read the operations overview"
            );
            err.log_if_internal();
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Alive: the process answers. Says nothing about the database on purpose, so an
/// orchestrator does not restart every replica when the database blips.
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "alive" }))
}

/// Ready: the database answers and every migration is applied.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let backend = db::backend_name(&state.db);
    if let Err(err) = state.db.ping().await {
        tracing::warn!(error = %err, "readiness: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                serde_json::json!({ "status": "unready", "reason": "database unreachable" }),
            ),
        );
    }
    match db::pending_migrations(&state.db).await {
        Ok(pending) if pending.is_empty() => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready", "database": backend })),
        ),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "unready",
                "reason": "migrations pending",
                "pending": pending,
            })),
        ),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "readiness: migration status unknown");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({ "status": "unready", "reason": "migration status unknown" }),
                ),
            )
        }
    }
}
