//! `--explain`: the plan of every statement behind the workloads, on the seeded dataset.
//! Reads run under `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL (`EXPLAIN QUERY PLAN` on
//! SQLite); a command's writes are planned, not run. A sequential scan of `requests`,
//! `decisions` or `audit_events` fails the run: at a million rows that is the page that
//! gets slower every day.

use std::path::Path;

use anyhow::bail;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::json;

use crate::Args;
use crate::fixtures::Fixtures;
use crate::server::{Backend, Server, Template};

const LARGE: [&str; 3] = ["requests", "decisions", "audit_events"];
/// Statements slower than this have their plan printed on stderr.
const SLOW_MS: f64 = 5.0;

pub async fn run(
    binary: &Path,
    backend: Backend,
    args: &Args,
    template: &Template,
    selected: &[&str],
) -> anyhow::Result<()> {
    let server = Server::start(binary, backend, &args.postgres_url, Some(template), true).await?;
    let fixtures = Fixtures::prepare(&server.url, args, selected).await?;
    let captured = fixtures.capture(&server, selected).await?;
    let database = server.halt().await;
    let db = Database::connect(database.url.as_str()).await?;
    let db_backend = db.get_database_backend();
    if db_backend == DbBackend::Postgres {
        // Fresh statistics, as autovacuum would have by the time a table holds a million.
        db.execute_unprepared("ANALYZE").await?;
    }
    let mut failures = Vec::new();
    for (workload, (statements, substitution)) in &captured {
        for statement in statements {
            let writes = substitution.is_some() && !statement.sql.starts_with("SELECT");
            let prefix = match (db_backend, writes) {
                (DbBackend::Postgres, false) => "EXPLAIN (ANALYZE, BUFFERS) ",
                (DbBackend::Postgres, true) => "EXPLAIN ",
                _ => "EXPLAIN QUERY PLAN ",
            };
            let explained = Statement::from_sql_and_values(
                db_backend,
                format!("{prefix}{}", statement.sql),
                statement.values.clone(),
            );
            let rows = db.query_all_raw(explained).await?;
            let plan: Vec<String> = rows
                .iter()
                .map(|row| match db_backend {
                    DbBackend::Postgres => row.try_get_by_index::<String>(0),
                    _ => row.try_get::<String>("", "detail"),
                })
                .collect::<Result<_, _>>()?;
            let scans: Vec<&str> = LARGE
                .iter()
                .copied()
                .filter(|table| plan.iter().any(|line| sequential(db_backend, line, table)))
                .collect();
            let execution_ms = plan
                .iter()
                .find_map(|line| line.trim().strip_prefix("Execution Time: "))
                .and_then(|t| t.trim_end_matches(" ms").parse::<f64>().ok());
            println!(
                "{}",
                json!({
                    "backend": backend.name(),
                    "dataset": args.dataset,
                    "workload": workload,
                    "statement": statement.sql.chars().take(120).collect::<String>(),
                    "execution_ms": execution_ms,
                    "sequential_scans": scans,
                })
            );
            // A slow plan is worth reading even without a sequential scan.
            if scans.is_empty() && execution_ms.is_some_and(|ms| ms > SLOW_MS) {
                eprintln!("{workload}: {}\n{}", statement.sql, plan.join("\n"));
            }
            if !scans.is_empty() {
                eprintln!("{workload}: {}\n{}", statement.sql, plan.join("\n"));
                failures.push(format!("{workload}: {scans:?}"));
            }
        }
    }
    db.close().await?;
    database.drop().await;
    if !failures.is_empty() {
        bail!("sequential scans of large tables: {failures:?}");
    }
    Ok(())
}

fn sequential(backend: DbBackend, line: &str, table: &str) -> bool {
    match backend {
        DbBackend::Postgres => line.contains(&format!("Seq Scan on {table}")),
        // `SCAN requests USING INDEX …` walks an index in order; a bare `SCAN requests`
        // reads the table.
        _ => {
            let line = line.trim();
            line == format!("SCAN {table}") || line.starts_with(&format!("SCAN {table} AS"))
        }
    }
}
