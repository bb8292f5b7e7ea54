//! A Countersign server started from a binary for one run, on a fresh database, with a
//! known token secret; stopped (and its database dropped) when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};
use tokio::process::{Child, Command};

pub const SECRET: &str = "countersign-bench-secret-0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

pub struct Server {
    pub url: String,
    pub database: RunDatabase,
    /// The server's stderr, when it was started to capture its SQL.
    pub log: Option<PathBuf>,
    child: Child,
}

/// A database made for one run, dropped (or deleted) with it.
pub struct RunDatabase {
    pub url: String,
    pub backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database {
        admin_url: String,
        name: String,
    },
    /// Another server's database: left to that one.
    Shared,
}

/// A seeded database that each run copies (`CREATE DATABASE … TEMPLATE`, or the SQLite
/// file), so a million rows are written once per backend, not once per run.
pub struct Template(RunDatabase);

impl RunDatabase {
    /// A new, empty database; a copy of `template` when given.
    pub async fn create(
        backend: Backend,
        postgres_url: &str,
        template: Option<&Template>,
    ) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        Ok(match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("countersign-bench-{id}"));
                std::fs::create_dir_all(&dir)?;
                let file = dir.join("bench.db");
                if let Some(Template(source)) = template {
                    let Cleanup::Dir(from) = &source.cleanup else {
                        bail!("a SQLite template is a directory");
                    };
                    std::fs::copy(from.join("bench.db"), &file)?;
                }
                Self {
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    backend,
                    cleanup: Cleanup::Dir(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("countersign_bench_{id}");
                let admin = Database::connect(postgres_url)
                    .await
                    .context("connecting to PostgreSQL")?;
                let from = match template {
                    Some(Template(RunDatabase {
                        cleanup: Cleanup::Database { name, .. },
                        ..
                    })) => format!(" TEMPLATE \"{name}\""),
                    _ => String::new(),
                };
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\"{from}"))
                    .await?;
                admin.close().await?;
                // Same server and options (e.g. `?sslmode=disable`), the new database.
                let (base, options) = postgres_url.split_once('?').unwrap_or((postgres_url, ""));
                let (server, _) = base
                    .rsplit_once('/')
                    .context("a PostgreSQL URL with a path")?;
                let url = if options.is_empty() {
                    format!("{server}/{name}")
                } else {
                    format!("{server}/{name}?{options}")
                };
                Self {
                    url,
                    backend,
                    cleanup: Cleanup::Database {
                        admin_url: postgres_url.to_owned(),
                        name,
                    },
                }
            }
        })
    }

    pub async fn drop(self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            }
            Cleanup::Shared => {}
        }
    }
}

impl Template {
    /// Migrates and demo-seeds a new database with `binary` (started, then stopped), then
    /// writes `requests` requests into it (`seed`).
    pub async fn create(
        binary: &Path,
        backend: Backend,
        postgres_url: &str,
        requests: usize,
    ) -> anyhow::Result<(Self, crate::seed::Seeded)> {
        let server = Server::start(binary, backend, postgres_url, None, false).await?;
        let database = server.halt().await;
        let db = Database::connect(database.url.as_str()).await?;
        let seeded = crate::seed::seed(&db, requests, chrono::Utc::now(), 11).await?;
        if backend == Backend::Postgres {
            // Statistics, as autovacuum gathers them in production long before a table
            // holds this many rows. Without them every copy starts planning blind (and
            // the copies are made before autovacuum reaches the template).
            db.execute_unprepared("ANALYZE").await?;
        }
        if backend == Backend::Sqlite {
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        db.close().await?;
        Ok((Self(database), seeded))
    }

    pub async fn drop(self) {
        self.0.drop().await;
    }
}

impl Server {
    /// Starts `binary` on a new database of `backend` (PostgreSQL at `postgres_url`), a
    /// copy of `template` when given. With `capture`, the server traces every SQL
    /// statement to a log file ([`crate::floor::read_log`]).
    pub async fn start(
        binary: &Path,
        backend: Backend,
        postgres_url: &str,
        template: Option<&Template>,
        capture: bool,
    ) -> anyhow::Result<Self> {
        let database = RunDatabase::create(backend, postgres_url, template).await?;
        Self::launch(binary, database, capture).await
    }

    /// Starts `binary` on a database another server left.
    pub async fn start_on(binary: &Path, database: RunDatabase) -> anyhow::Result<Self> {
        Self::launch(binary, database, false).await
    }

    /// Starts a second replica of `binary` on the database a running server uses; stopping
    /// it leaves the database alone.
    pub async fn replica(binary: &Path, database: &RunDatabase) -> anyhow::Result<Self> {
        let shared = RunDatabase {
            url: database.url.clone(),
            backend: database.backend,
            cleanup: Cleanup::Shared,
        };
        Self::launch(binary, shared, false).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn launch(binary: &Path, database: RunDatabase, capture: bool) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let (log, stderr) = if capture {
            let file = std::env::temp_dir().join(format!(
                "countersign-bench-{}.log",
                uuid::Uuid::now_v7().simple()
            ));
            let stderr = Stdio::from(std::fs::File::create(&file)?);
            (Some(file), stderr)
        } else {
            (None, Stdio::inherit())
        };
        let filter = if capture {
            "warn,countersign::sql=trace"
        } else {
            "warn"
        };
        let mut command = Command::new(binary);
        command.arg("serve").env_clear();
        // Allocator tuning passes through, so its effect can be measured.
        for (key, value) in std::env::vars().filter(|(key, _)| key.starts_with("MIMALLOC_")) {
            command.env(key, value);
        }
        let child = command
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // One token drives thousands of requests a second here; the per-subject limit
            // protects production from exactly that.
            .env("COUNTERSIGN_RATE_LIMIT", "1000000")
            .env("COUNTERSIGN_ANONYMOUS_RATE_LIMIT", "1000000")
            // The fan-out holds 10,000 sockets for one clerk's token.
            .env("COUNTERSIGN_MAX_CONNECTIONS_PER_SUBJECT", "1000000")
            .env("DATABASE_URL", &database.url)
            .env("COUNTERSIGN_BIND", format!("127.0.0.1:{port}"))
            .env("COUNTERSIGN_JWT_SECRET", SECRET)
            .env("COUNTERSIGN_DEMO", "1")
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            database,
            log,
            child,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// How far the capture log has got: statements after this belong to what comes next.
    pub fn log_position(&self) -> u64 {
        self.log
            .as_ref()
            .and_then(|log| std::fs::metadata(log).ok())
            .map_or(0, |m| m.len())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the server at {} did not become ready within 60 s",
            self.url
        )
    }

    /// CPU seconds the server process has used so far (Linux `/proc`).
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.child.id()?)
    }

    /// Stops the server and keeps its database.
    pub async fn halt(mut self) -> RunDatabase {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
        self.database
    }

    /// Stops the server and drops its database.
    pub async fn stop(self) {
        self.halt().await.drop().await;
    }
}

/// User and system CPU seconds a process has used (`/proc/<pid>/stat`, in ticks of 1/100 s).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
