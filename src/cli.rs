//! The `countersign` command line: `serve` (the default), `migrate`, `schema`, `token`.
//!
//! Commands print their results to stdout and their failures to stderr with a non-zero
//! exit code. Only `serve` prints tokens, and only in development.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

use crate::app::App;
use crate::audit::service as audit_service;
use crate::auth::mint_token;
use crate::auth::service::TokenProfile;
use crate::config::{Config, SecretSource};
use crate::demo;
use crate::{db, graphql, telemetry};

/// How long the tokens printed for the demo personas live.

#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    about = "Countersign: the approval queue operations teams trust with money and access",
    long_about = "Countersign serves a GraphQL API for filing and deciding refunds, payouts, \
                  account changes and access grants. Configuration comes from the environment \
                  (DATABASE_URL, COUNTERSIGN_BIND, COUNTERSIGN_ENV, COUNTERSIGN_JWT_*, \
                  COUNTERSIGN_DEMO); see the README."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default): applies pending migrations, seeds the demo in
    /// development, prints dev tokens and the GraphiQL URL.
    Serve,
    /// Apply, roll back or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the GraphQL schema (SDL), sorted and stable; `schema.graphql` is its output.
    Schema,
    /// Verify, checkpoint or export the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Print a token signed with the configured HS256 secret, for development.
    Token {
        /// The subject (`sub` claim).
        #[arg(long)]
        sub: String,
        /// A role for the `roles` claim; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// How long the token lives, e.g. 30m, 1h, 12h.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Display name (`name` claim).
        #[arg(long)]
        name: Option<String>,
        /// Email (`email` claim).
        #[arg(long)]
        email: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Re-compute the hash chain; exits non-zero and names the first broken sequence when
    /// the stored history was edited, deleted, inserted or reordered.
    Verify {
        /// A checkpoint printed earlier by `audit checkpoint` (SEQ:HASH): also fails when
        /// the history after it was rewritten or truncated.
        #[arg(long, value_parser = parse_checkpoint)]
        checkpoint: Option<(i64, String)>,
    },
    /// Print the chain head as SEQ:HASH, to store somewhere the database's admins cannot
    /// write.
    Checkpoint,
    /// Stream events in sequence order, in constant memory.
    Export {
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormat {
    Ndjson,
    Csv,
}

fn parse_checkpoint(value: &str) -> Result<(i64, String), String> {
    let (sequence, hash) = value
        .split_once(':')
        .ok_or_else(|| "a checkpoint is SEQ:HASH".to_owned())?;
    let sequence = sequence
        .parse::<i64>()
        .map_err(|_| "SEQ must be a number".to_owned())?;
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("HASH must be 64 hex digits".into());
    }
    Ok((sequence, hash.to_ascii_lowercase()))
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the most recent migrations.
    Down {
        /// How many migrations to roll back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.execute() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn execute(self) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Schema => {
                print!("{}", graphql::sdl());
                Ok(())
            }
            Command::Token {
                sub,
                roles,
                ttl,
                name,
                email,
            } => {
                let config = Config::from_env()?;
                let token =
                    mint_token(&config.jwt, &sub, &roles, ttl, TokenProfile { name, email })?;
                println!("{token}");
                Ok(())
            }
            Command::Migrate { action } => {
                let config = Config::from_env()?;
                telemetry::install(telemetry::subscriber(
                    config.environment,
                    std::io::stderr,
                    None,
                ));
                runtime()?.block_on(migrate(config, action))
            }
            Command::Audit { action } => {
                let config = Config::from_env()?;
                telemetry::install(telemetry::subscriber(
                    config.environment,
                    std::io::stderr,
                    None,
                ));
                runtime()?.block_on(audit(config, action))
            }
            Command::Serve => {
                let config = Config::from_env()?;
                let runtime = runtime()?;
                let traces = telemetry::traces::provider(config.traces, runtime.handle().clone())
                    .context("setting up OTLP trace export")?;
                let tracer = traces.as_ref().map(|provider| {
                    opentelemetry::trace::TracerProvider::tracer(provider, "countersign")
                });
                telemetry::install(telemetry::subscriber(
                    config.environment,
                    std::io::stderr,
                    tracer,
                ));
                let served = runtime.block_on(serve(config));
                if let Some(provider) = traces {
                    // Sends what is still batched; blocks, so outside the runtime's tasks.
                    if let Err(err) = provider.shutdown() {
                        eprintln!("flushing traces at exit: {err}");
                    }
                }
                served
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn migrate(config: Config, action: MigrateAction) -> anyhow::Result<()> {
    let db = db::connect(&config.database_url).await?;
    match action {
        MigrateAction::Up => {
            Migrator::up(&db, None)
                .await
                .context("applying migrations")?;
            println!("migrations applied");
        }
        MigrateAction::Down { steps } => {
            Migrator::down(&db, Some(steps))
                .await
                .context("rolling back migrations")?;
            println!("rolled back {steps} migration(s)");
        }
        MigrateAction::Status => {
            for m in Migrator::get_applied_migrations(&db).await? {
                println!("applied  {}", m.name());
            }
            for m in Migrator::get_pending_migrations(&db).await? {
                println!("pending  {}", m.name());
            }
        }
    }
    db.close().await?;
    Ok(())
}

async fn audit(config: Config, action: AuditAction) -> anyhow::Result<()> {
    let db = db::connect(&config.database_url).await?;
    let outcome = match action {
        AuditAction::Checkpoint => {
            let (sequence, hash) = audit_service::head(&db).await.map_err(app_error)?;
            println!("{sequence}:{hash}");
            Ok(())
        }
        AuditAction::Verify { checkpoint } => {
            let report = audit_service::verify_chain(&db, checkpoint)
                .await
                .map_err(app_error)?;
            match report.first_broken_sequence {
                None => {
                    println!(
                        "ok: {} events, head {}:{}",
                        report.checked, report.head_sequence, report.head_hash
                    );
                    Ok(())
                }
                Some(sequence) => Err(anyhow::anyhow!(
                    "the audit chain is broken at sequence {sequence} ({} events checked)",
                    report.checked
                )),
            }
        }
        AuditAction::Export { from, to, format } => export(&db, from, to, format).await,
    };
    db.close().await?;
    outcome
}

fn app_error(err: crate::error::AppError) -> anyhow::Error {
    match err {
        crate::error::AppError::Internal(cause) => cause,
        other => anyhow::anyhow!(other.client_message()),
    }
}

/// Writes events a batch at a time, so memory stays flat however long the log is.
async fn export(
    db: &sea_orm::DatabaseConnection,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    format: ExportFormat,
) -> anyhow::Result<()> {
    const BATCH: u64 = 1_000;
    let filter = audit_service::AuditFilter {
        from,
        to,
        ..Default::default()
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(EXPORT_COLUMNS)?;
            ExportSink::Csv(Box::new(writer))
        }
        ExportFormat::Ndjson => ExportSink::Ndjson(out),
    };
    let mut after = 0;
    loop {
        let batch = audit_service::batch_after(db, &filter, after, BATCH)
            .await
            .map_err(app_error)?;
        let Some(last) = batch.last() else { break };
        after = last.sequence;
        for event in &batch {
            sink.write(export_record(event))?;
        }
    }
    sink.flush()
}

enum ExportSink<W: std::io::Write> {
    Csv(Box<csv::Writer<W>>),
    Ndjson(W),
}

impl<W: std::io::Write> ExportSink<W> {
    fn write(&mut self, record: Vec<(&'static str, String)>) -> anyhow::Result<()> {
        match self {
            Self::Csv(writer) => writer.write_record(record.iter().map(|(_, value)| value))?,
            Self::Ndjson(out) => {
                let object: serde_json::Map<String, serde_json::Value> = record
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), serde_json::Value::String(value)))
                    .collect();
                serde_json::to_writer(&mut *out, &object)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Csv(writer) => writer.flush()?,
            Self::Ndjson(out) => out.flush()?,
        }
        Ok(())
    }
}

const EXPORT_COLUMNS: [&str; 17] = [
    "sequence",
    "id",
    "occurred_at",
    "actor",
    "actor_roles",
    "action",
    "subject_type",
    "subject_id",
    "request_id",
    "before",
    "after",
    "reason",
    "correlation_id",
    "idempotency_key",
    "summary",
    "prev_hash",
    "hash",
];

fn export_record(event: &entity::audit_event::Model) -> Vec<(&'static str, String)> {
    let json = |value: &Option<serde_json::Value>| {
        value.as_ref().map(|v| v.to_string()).unwrap_or_default()
    };
    let values = [
        event.sequence.to_string(),
        event.id.to_string(),
        event
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        event.actor_subject.clone(),
        event.actor_roles.to_string(),
        event.action.clone(),
        event.subject_type.clone(),
        event.subject_id.clone(),
        event
            .request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        json(&event.before),
        json(&event.after),
        event.reason.clone().unwrap_or_default(),
        event.correlation_id.clone().unwrap_or_default(),
        event.idempotency_key.clone().unwrap_or_default(),
        event.summary.clone(),
        event.prev_hash.clone(),
        event.hash.clone(),
    ];
    EXPORT_COLUMNS.into_iter().zip(values).collect()
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        database = %config.database_url_redacted(),
        environment = ?config.environment,
        "starting"
    );
    let app = App::build(config.clone()).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, seeded = ?app.seeded(), "listening");

    println!("Countersign listening on http://{addr}");
    println!("Ops console: http://{addr}/");
    println!("GraphiQL: http://{addr}/graphql");
    if demo::personas_offered(&config) {
        print_persona_tokens(&config, addr)?;
    } else if !config.is_production() {
        println!("The demo is off: no demo tokens are printed; mint one with `countersign token`");
    }
    app.run_until(shutdown_signal()).await
}

fn print_persona_tokens(config: &Config, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let Some(tokens) = demo::persona_tokens(&config.jwt)? else {
        return Ok(());
    };
    if let Some(SecretSource::DevelopmentFile(path)) = &config.jwt.secret_source {
        println!(
            "Dev tokens are signed with the secret kept in {}",
            path.display()
        );
    }
    println!("Dev tokens (valid 12 h); send them as `Authorization: Bearer <token>`:");
    let mut admin_token = None;
    for (persona, token) in tokens {
        println!(
            "  {:<6} {:<13} {token}",
            persona.subject,
            persona.roles.join(",")
        );
        if persona.subject == "grace" {
            admin_token = Some(token);
        }
    }
    if admin_token.is_some() {
        println!(
            "Open GraphiQL as grace (admin): sign in to http://{addr}/ as Grace, then follow its GraphiQL link"
        );
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
