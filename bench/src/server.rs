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
    child: Child,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

impl Server {
    /// Starts `binary` on a new database of `backend` (PostgreSQL at `postgres_url`).
    pub async fn start(
        binary: &Path,
        backend: Backend,
        postgres_url: &str,
    ) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let (database_url, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("countersign-bench-{id}"));
                std::fs::create_dir_all(&dir)?;
                let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
                (url, Cleanup::Dir(dir))
            }
            Backend::Postgres => {
                let name = format!("countersign_bench_{id}");
                let admin = Database::connect(postgres_url)
                    .await
                    .context("connecting to PostgreSQL")?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
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
                (
                    url,
                    Cleanup::Database {
                        admin_url: postgres_url.to_owned(),
                        name,
                    },
                )
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &database_url)
            .env("COUNTERSIGN_BIND", format!("127.0.0.1:{port}"))
            .env("COUNTERSIGN_JWT_SECRET", SECRET)
            .env("COUNTERSIGN_DEMO", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            cleanup,
        };
        server.wait_ready().await?;
        Ok(server)
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
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
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
        }
    }
}
