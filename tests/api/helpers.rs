//! The test harness: the real server, in-process, on port 0, against a fresh database per
//! test — a new SQLite file, or a new PostgreSQL database created and dropped here.
//!
//! PostgreSQL is found at `COUNTERSIGN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the PostgreSQL half
//! of each test is reported as ignored, unless `COUNTERSIGN_REQUIRE_POSTGRES=1` (CI), where
//! it fails (see `harness`).

use std::path::PathBuf;
use std::time::Duration;

use countersign::app::App;
use countersign::auth::mint_token;
use countersign::auth::service::TokenProfile;
use countersign::config::{Config, DemoMode, Environment, JwtConfig, Secret, SecretSource};
use countersign::kernel::Clock;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use serde_json::{Value, json};
use uuid::Uuid;

pub const TEST_SECRET: &str = "countersign-test-secret-0123456789abcdef";
pub const TEST_ISSUER: &str = "countersign";
pub const TEST_AUDIENCE: &str = "countersign";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn postgres_base_url() -> String {
    std::env::var("COUNTERSIGN_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

fn postgres_required() -> bool {
    std::env::var("COUNTERSIGN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Why the PostgreSQL halves cannot run, and whether that fails the run.
#[derive(Debug)]
pub struct Unreachable {
    pub required: bool,
    cause: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.required {
            write!(
                f,
                "required (COUNTERSIGN_REQUIRE_POSTGRES=1) but unreachable: {}",
                self.cause
            )
        } else {
            write!(f, "ignored, PostgreSQL is unreachable: {}", self.cause)
        }
    }
}

/// Whether PostgreSQL answers, asked once before any test runs.
pub fn postgres_probe() -> Result<(), Unreachable> {
    let unreachable = |cause: String| Unreachable {
        required: postgres_required(),
        cause,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| unreachable(err.to_string()))?;
    runtime.block_on(async {
        let mut options = ConnectOptions::new(postgres_base_url());
        options
            .connect_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let _ = db.close().await;
        Ok(())
    })
}

/// A fresh, empty database; dropped (PostgreSQL) or deleted (SQLite) with this value.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteDir(PathBuf),
    PostgresDatabase(String),
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let id = Uuid::now_v7().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("countersign-test-{id}"));
                std::fs::create_dir_all(&dir).expect("creating the SQLite test directory");
                Self {
                    url: format!("sqlite://{}?mode=rwc", dir.join("countersign.db").display()),
                    cleanup: Cleanup::SqliteDir(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("countersign_test_{id}");
                let admin = Database::connect(postgres_base_url())
                    .await
                    .expect("connecting to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("creating the test database");
                admin.close().await.expect("closing the admin connection");
                let base = postgres_base_url();
                let (server, _) = base.rsplit_once('/').expect("a PostgreSQL URL with a path");
                Self {
                    url: format!("{server}/{name}"),
                    cleanup: Cleanup::PostgresDatabase(name),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PostgresDatabase(name) => {
                let name = name.clone();
                // Drop runs inside the test's runtime; a separate thread gets its own.
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the cleanup");
                    runtime.block_on(async move {
                        let admin = Database::connect(postgres_base_url()).await?;
                        admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await?;
                        admin.close().await
                    })
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("could not drop a test database: {dropped:?}");
                }
            }
        }
    }
}

pub fn test_jwt_config() -> JwtConfig {
    JwtConfig {
        secret: Some(Secret::new(TEST_SECRET)),
        secret_source: Some(SecretSource::Environment),
        public_key_pem: None,
        jwks_file: None,
        algorithms: vec![jsonwebtoken::Algorithm::HS256],
        issuer: TEST_ISSUER.into(),
        audience: TEST_AUDIENCE.into(),
        max_lifetime: countersign::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks_refresh: countersign::config::DEFAULT_JWKS_REFRESH,
        roles_claim: vec!["roles".into()],
    }
}

/// The configuration every test app starts from: development, demo seeded, port 0.
pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0".into(),
        environment: Environment::Development,
        jwt: test_jwt_config(),
        demo: DemoMode::OnEmptyDatabase,
        allowed_origins: Vec::new(),
        expiry_sweep: std::time::Duration::from_millis(200),
        background_jobs: true,
        max_aliases: countersign::config::DEFAULT_MAX_ALIASES,
        max_fields: countersign::config::DEFAULT_MAX_FIELDS,
        ws_send_timeout: countersign::config::DEFAULT_WS_SEND_TIMEOUT,
        // Retries within a test's patience.
        webhooks: countersign::config::WebhookConfig {
            backoff: std::time::Duration::from_millis(50),
            backoff_max: std::time::Duration::from_millis(400),
            timeout: std::time::Duration::from_secs(3),
            ..countersign::config::WebhookConfig::defaults(Environment::Development)
        },
        traces: false,
        oidc: None,
        // Tests fire requests faster than any person; the rate-limit tests set their own.
        limits: countersign::config::LimitsConfig {
            rate_per_second: 100_000,
            burst: 100_000,
            anonymous_rate_per_second: 100_000,
            // Some tests hold a thousand sockets for one persona.
            max_connections_per_subject: 100_000,
            ..countersign::config::LimitsConfig::defaults(Environment::Development)
        },
        jobs: countersign::config::JobsConfig {
            webhook_poll: std::time::Duration::from_millis(100),
            ..Default::default()
        },
    }
}

/// A real token with a chosen lifetime.
pub fn mint_with_ttl(subject: &str, roles: &[&str], ttl: Duration) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    mint_token(
        &test_jwt_config(),
        subject,
        &roles,
        ttl,
        TokenProfile::default(),
    )
    .expect("minting a test token")
}

/// A real HS256 token issued at `iat` (seconds since the epoch), valid for an hour after.
pub fn mint_issued_at(subject: &str, roles: &[&str], iat: i64) -> String {
    let claims = json!({
        "sub": subject, "roles": roles, "iat": iat, "exp": iat + 3600,
        "iss": TEST_ISSUER, "aud": TEST_AUDIENCE,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .expect("minting a test token")
}

/// The demo personas.
#[derive(Clone, Copy, Debug)]
pub enum Persona {
    Alice,
    Bob,
    Carol,
    Dave,
    Frank,
    Grace,
}

impl Persona {
    pub const ALL: [Persona; 6] = [
        Self::Alice,
        Self::Bob,
        Self::Carol,
        Self::Dave,
        Self::Frank,
        Self::Grace,
    ];

    pub fn subject(self) -> &'static str {
        match self {
            Self::Alice => "alice",
            Self::Bob => "bob",
            Self::Carol => "carol",
            Self::Dave => "dave",
            Self::Frank => "frank",
            Self::Grace => "grace",
        }
    }

    pub fn roles(self) -> Vec<String> {
        countersign::demo::PERSONAS
            .iter()
            .find(|p| p.subject == self.subject())
            .expect("every persona is in the demo")
            .roles
            .iter()
            .map(|r| (*r).to_owned())
            .collect()
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub client: reqwest::Client,
    /// The database this app (and any replica of it) uses.
    pub database_url: String,
    /// The app's clock, shared with its replicas: `clock.advance(…)` lets deadlines pass.
    pub clock: Clock,
    /// Dropped with the app, which asks its server (and jobs) to stop as the database goes
    /// (nothing waits for it): a server left running against a dropped database would
    /// retry it until the test process ends.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Held so the database outlives the app; dropped (and deleted) with it. `None` for a
    /// replica, which shares the first app's database.
    _database: Option<TestDatabase>,
}

/// A GraphQL answer: the HTTP status and the JSON body.
#[derive(Debug)]
pub struct GraphqlResponse {
    pub status: u16,
    pub body: Value,
    /// `x-sql-statements`: what this operation cost the database, counted by the server.
    statements: Option<u64>,
    /// `x-sql-admission-statements`: what letting the caller in cost.
    admission: Option<u64>,
}

impl GraphqlResponse {
    /// `extensions.code` of the first error, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// Panics with the whole body when there are errors.
    pub fn expect_ok(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none() && self.status == 200,
            "expected success, got HTTP {}: {}",
            self.status,
            self.body
        );
        self.data()
    }

    /// The SQL statements the server ran for this operation alone.
    pub fn statements(&self) -> u64 {
        self.statements.expect("an x-sql-statements header")
    }

    /// The SQL statements letting the caller in ran (0 when answered from memory).
    pub fn admission_statements(&self) -> u64 {
        self.admission
            .expect("an x-sql-admission-statements header")
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app with a test configuration adjusted by `configure`.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_test_logs();
    let database = TestDatabase::create(backend).await;
    let mut config = test_config(&database.url);
    configure(&mut config);
    let database_url = config.database_url.clone();
    let clock = Clock::system();
    let (address, stop) = start(config, clock.clone()).await;
    TestApp {
        address,
        client: reqwest::Client::new(),
        database_url,
        clock,
        _stop: stop,
        _database: Some(database),
    }
}

/// A second server on the same database: another replica, as behind a load balancer.
pub async fn spawn_replica(of: &TestApp) -> TestApp {
    spawn_replica_at(of, &of.database_url).await
}

/// A replica with its own configuration, adjusted by `configure`.
pub async fn spawn_replica_with(of: &TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&of.database_url);
    configure(&mut config);
    let (address, stop) = start(config, of.clock.clone()).await;
    TestApp {
        address,
        client: reqwest::Client::new(),
        database_url: of.database_url.clone(),
        clock: of.clock.clone(),
        _stop: stop,
        _database: None,
    }
}

/// A replica reaching the same database through another URL (another role, say).
pub async fn spawn_replica_at(of: &TestApp, database_url: &str) -> TestApp {
    let config = test_config(database_url);
    let (address, stop) = start(config, of.clock.clone()).await;
    TestApp {
        address,
        client: reqwest::Client::new(),
        database_url: of.database_url.clone(),
        clock: of.clock.clone(),
        _stop: stop,
        _database: None,
    }
}

/// Starts a server; it runs until the returned sender is dropped.
async fn start(config: Config, clock: Clock) -> (String, tokio::sync::oneshot::Sender<()>) {
    let app = App::build_with_clock(config, clock)
        .await
        .expect("building the app");
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    (address, stop)
}

/// `TEST_LOG=1 cargo test` shows the server's logs; otherwise tests stay quiet.
fn init_test_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        countersign::telemetry::install(countersign::telemetry::subscriber(
            Environment::Development,
            std::io::stdout,
            None,
        ));
    }
}

impl TestApp {
    pub fn token_for(&self, persona: Persona) -> String {
        self.token(persona.subject(), &persona.roles())
    }

    /// A real token for any subject and roles, signed like a dev token.
    pub fn token(&self, subject: &str, roles: &[String]) -> String {
        mint_token(
            &test_jwt_config(),
            subject,
            roles,
            Duration::from_secs(3600),
            TokenProfile {
                name: Some(format!("{subject} (test)")),
                email: Some(format!("{subject}@example.com")),
            },
        )
        .expect("minting a test token")
    }

    pub async fn graphql_as(
        &self,
        persona: Persona,
        query: &str,
        variables: Value,
    ) -> GraphqlResponse {
        let token = self.token_for(persona);
        self.graphql(Some(&token), query, variables).await
    }

    /// POST /graphql, with `Authorization: Bearer <token>` when a token is given.
    pub async fn graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> GraphqlResponse {
        let authorization = token.map(|t| format!("Bearer {t}"));
        self.graphql_with_authorization(authorization.as_deref(), query, variables)
            .await
    }

    /// POST /graphql with a raw Authorization header value.
    pub async fn graphql_with_authorization(
        &self,
        authorization: Option<&str>,
        query: &str,
        variables: Value,
    ) -> GraphqlResponse {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.expect("POST /graphql");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        };
        let statements = header("x-sql-statements");
        let admission = header("x-sql-admission-statements");
        let body = response.json().await.expect("a JSON body");
        GraphqlResponse {
            status,
            body,
            statements,
            admission,
        }
    }

    /// The value of the `/metrics` sample `name` whose labels include every one of
    /// `labels` (written `key="value"`); `None` when there is none.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.expect("metrics");
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET")
    }
}

/// How long [`eventually`] waits before it fails a test: long enough for a loaded CI
/// machine, short enough that a hang is reported with its reason rather than killed.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls `probe` every 25 ms until it returns `Some`, and fails the test, naming `what`,
/// after [`EVENTUALLY`]. The one way a test waits for something that happens on its own.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {EVENTUALLY:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl TestApp {
    /// Rounds of the background job `job` this replica has finished successfully (a failed
    /// round looked at nothing, so it proves nothing).
    pub async fn job_rounds(&self, job: &str) -> f64 {
        let label = format!("job=\"{job}\"");
        self.metric("countersign_job_runs_total", &[&label, "outcome=\"ok\""])
            .await
            .unwrap_or(0.0)
    }

    /// A fence: returns once `job` has finished two more good rounds than when called. The second
    /// of them started after the call, so it has seen everything committed before it; what
    /// it did not do by then, it will not do. Tests assert "nothing happened" after this,
    /// never after a sleep.
    pub async fn job_rounds_pass(&self, job: &str) {
        let from = self.job_rounds(job).await;
        eventually(&format!("two rounds of {job}"), || async move {
            (self.job_rounds(job).await >= from + 2.0).then_some(())
        })
        .await;
    }
}
