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
use crate::auth::mint_token;
use crate::auth::service::TokenProfile;
use crate::config::{Config, SecretSource};
use crate::demo::PERSONAS;
use crate::{db, graphql, telemetry};

/// How long the tokens printed for the demo personas live.
const PERSONA_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

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
                telemetry::install(telemetry::subscriber(config.environment, std::io::stderr));
                runtime()?.block_on(migrate(config, action))
            }
            Command::Serve => {
                let config = Config::from_env()?;
                telemetry::install(telemetry::subscriber(config.environment, std::io::stderr));
                runtime()?.block_on(serve(config))
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
    println!("GraphiQL: http://{addr}/graphql");
    if !config.is_production() {
        print_persona_tokens(&config, addr)?;
    }
    app.run_until(shutdown_signal()).await
}

fn print_persona_tokens(config: &Config, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if config.jwt.secret.is_none() {
        return Ok(());
    }
    if let Some(SecretSource::DevelopmentFile(path)) = &config.jwt.secret_source {
        println!(
            "Dev tokens are signed with the secret kept in {}",
            path.display()
        );
    }
    println!("Dev tokens (valid 12 h); send them as `Authorization: Bearer <token>`:");
    let mut admin_token = None;
    for persona in &PERSONAS {
        let roles: Vec<String> = persona.roles.iter().map(|r| (*r).to_owned()).collect();
        let token = mint_token(
            &config.jwt,
            persona.subject,
            &roles,
            PERSONA_TOKEN_TTL,
            TokenProfile {
                name: Some(persona.name.to_owned()),
                email: Some(format!("{}@example.com", persona.subject)),
            },
        )?;
        println!("  {:<6} {:<13} {token}", persona.subject, roles.join(","));
        if persona.subject == "grace" {
            admin_token = Some(token);
        }
    }
    if let Some(token) = admin_token {
        println!("Open GraphiQL as grace (admin): http://{addr}/graphql#token={token}");
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
