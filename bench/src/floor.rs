//! The floor: the very statements the server issued for one request of a workload,
//! captured from its `countersign::sql` trace, replayed through the same driver (SeaORM
//! over sqlx, a pool of the server's size) with nothing around them. A mutation's
//! statements replay in one transaction; fresh ids keep its inserts from colliding (see
//! [`Substitution`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Value as V;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use serde_json::Value;
use uuid::Uuid;

/// One captured statement.
#[derive(Clone, Debug)]
pub struct Captured {
    pub sql: String,
    pub values: Vec<V>,
}

/// Reads the statements that ran inside operations from a server's trace, from byte
/// `from` of its log on. The server must run with `RUST_LOG=…,countersign::sql=trace`.
pub fn read_log(log: &Path, from: u64) -> anyhow::Result<Vec<Captured>> {
    let text = std::fs::read(log)?;
    let text = String::from_utf8_lossy(&text[from as usize..]);
    let mut statements = Vec::new();
    for line in text.lines() {
        if !line.contains("countersign::sql") || !line.contains("in_operation=true") {
            continue;
        }
        let Some((_, json)) = line.split_once("statement=") else {
            continue;
        };
        let json: Value = serde_json::from_str(json.trim())
            .with_context(|| format!("a statement in the trace: {line}"))?;
        let sql = json["sql"].as_str().context("sql")?.to_owned();
        let values = json["values"]
            .as_array()
            .context("values")?
            .iter()
            .map(value)
            .collect::<anyhow::Result<_>>()?;
        statements.push(Captured { sql, values });
    }
    Ok(statements)
}

/// A typed value from `telemetry::typed_values`.
fn value(typed: &Value) -> anyhow::Result<V> {
    let (kind, v) = typed
        .as_object()
        .and_then(|o| o.iter().next())
        .context("a typed value")?;
    let text = || v.as_str().map(str::to_owned);
    Ok(match kind.as_str() {
        "bool" => V::Bool(v.as_bool()),
        "int" => V::Int(v.as_i64().map(|n| n as i32)),
        "bigint" => V::BigInt(v.as_i64()),
        "unsigned" => V::Unsigned(v.as_u64().map(|n| n as u32)),
        "bigunsigned" => V::BigUnsigned(v.as_u64()),
        "string" => V::String(text()),
        "json" => V::Json((!v.is_null()).then(|| Box::new(v.clone()))),
        "timestamp" => V::ChronoDateTimeUtc(match text() {
            Some(t) => Some(t.parse::<DateTime<Utc>>()?),
            None => None,
        }),
        "uuid" => V::Uuid(match text() {
            Some(t) => Some(Uuid::parse_str(&t)?),
            None => None,
        }),
        other => bail!("a statement bound a value the replay cannot rebuild: {other} {v}"),
    })
}

/// What changes between one replay of a mutation and the next, so each does the same
/// work on rows of its own: the request it acts on (another pending one each time), every
/// id its inserts create (fresh), and the audit sequence, which follows the chain head
/// the replay itself reads.
#[derive(Clone, Copy, Debug)]
pub struct Substitution {
    /// The request the captured command acted on, if it acted on one that existed; each
    /// replay names the pending request to act on instead.
    pub request: Option<Uuid>,
}

static SQLITE_WRITER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Runs `statements` once, as the server did (in a transaction for a mutation, on
/// `target` instead of the captured request).
pub async fn replay(
    db: &DatabaseConnection,
    statements: &[Captured],
    substitution: Option<Substitution>,
    target: Option<Uuid>,
) -> anyhow::Result<()> {
    let Some(sub) = substitution else {
        for statement in statements {
            db.query_all_raw(build(db.get_database_backend(), statement, &[]))
                .await?;
        }
        return Ok(());
    };
    let mut uuids: HashMap<Uuid, Uuid> = HashMap::new();
    if let Some(request) = sub.request {
        uuids.insert(
            request,
            target.context("a replay on a request needs a target")?,
        );
    }
    // The captured head sequence is one below the sequence its event inserted.
    let captured_head = statements
        .iter()
        .find(|s| s.sql.contains("INSERT INTO \"audit_events\""))
        .and_then(|s| match s.values.first() {
            Some(V::BigInt(Some(sequence))) => Some(sequence - 1),
            _ => None,
        });
    let mut shift = 0i64;
    // An id an INSERT binds as the new row's own `id`, that no earlier statement
    // mentioned, was made by the command (a new request, decision, event, outbox entry):
    // each replay makes its own, and every later mention follows it. Any other id (a
    // policy the command looked up by key, a request) names an existing row and stays.
    let mut seen: HashSet<Uuid> = HashSet::new();
    // SQLite has one writer: take turns in-process, as the server's writer queue does,
    // rather than fail on a lock upgrade.
    let _turn = match db.get_database_backend() {
        DbBackend::Sqlite => Some(SQLITE_WRITER.acquire().await?),
        _ => None,
    };
    // And take the write lock up front, as the server does: the server's own connections
    // (jobs, sightings) write to the same file, and a deferred transaction that read first
    // fails its upgrade with "database is locked" without waiting.
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    for statement in statements {
        let own_id = inserted_id_position(&statement.sql);
        let values: Vec<V> = statement
            .values
            .iter()
            .enumerate()
            .map(|(position, value)| match value {
                V::Uuid(Some(id)) => V::Uuid(Some(match uuids.get(id) {
                    Some(mapped) => *mapped,
                    None if own_id == Some(position) && !seen.contains(id) => {
                        *uuids.entry(*id).or_insert_with(Uuid::now_v7)
                    }
                    None => *id,
                })),
                V::BigInt(Some(n)) if captured_head.is_some_and(|h| *n == h || *n == h + 1) => {
                    V::BigInt(Some(n + shift))
                }
                other => other.clone(),
            })
            .collect();
        let rows = txn
            .query_all_raw(build(txn.get_database_backend(), statement, &values))
            .await?;
        seen.extend(statement.values.iter().filter_map(|v| match v {
            V::Uuid(Some(id)) => Some(*id),
            _ => None,
        }));
        if statement.sql.contains("FROM \"audit_chain_head\"") {
            if let (Some(row), Some(captured)) = (rows.first(), captured_head) {
                let head: i64 = row.try_get("", "sequence")?;
                shift = head - captured;
            }
        }
    }
    txn.commit().await?;
    Ok(())
}

/// Where an `INSERT INTO "t" ("a", "id", …) VALUES (…)` binds its row's `id`.
fn inserted_id_position(sql: &str) -> Option<usize> {
    let (_, columns) = sql.strip_prefix("INSERT INTO ")?.split_once('(')?;
    let (columns, _) = columns.split_once(')')?;
    columns
        .split(',')
        .position(|c| c.trim().trim_matches('"') == "id")
}

fn build(backend: DbBackend, statement: &Captured, values: &[V]) -> Statement {
    let values = if values.is_empty() {
        statement.values.clone()
    } else {
        values.to_vec()
    };
    Statement::from_sql_and_values(backend, statement.sql.clone(), values)
}

/// The list page as ONE hand-written statement: the 50 newest pending requests with
/// requester, policy, stages and decisions, aggregated to JSON by the database.
pub fn one_statement_list(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            "SELECT coalesce(json_agg(page ORDER BY page.created_at DESC, page.id DESC), '[]')
             FROM (
               SELECT r.id, r.title, r.status, r.amount, r.currency, r.created_at, r.expires_at,
                      r.version,
                      json_build_object('subject', r.requester_subject, 'name', u.name) AS requester,
                      json_build_object('key', p.key, 'version', p.version) AS policy,
                      (SELECT json_agg(json_build_object('position', s.position, 'name', s.name)
                                       ORDER BY s.position)
                         FROM policy_stages s WHERE s.policy_id = r.policy_id) AS stages,
                      (SELECT json_agg(json_build_object('verdict', d.verdict, 'comment', d.comment,
                                       'approver', d.approver_subject) ORDER BY d.created_at)
                         FROM decisions d WHERE d.request_id = r.id) AS decisions
                 FROM requests r
                 JOIN policies p ON p.id = r.policy_id
                 LEFT JOIN users u ON u.subject = r.requester_subject
                WHERE r.status = 'PENDING'
                ORDER BY r.created_at DESC, r.id DESC
                LIMIT 50
             ) page"
        }
        _ => {
            "SELECT coalesce(json_group_array(json(page.row)), '[]') FROM (
               SELECT json_object(
                        'id', lower(hex(r.id)), 'title', r.title, 'status', r.status, 'amount', r.amount,
                        'currency', r.currency, 'createdAt', r.created_at,
                        'expiresAt', r.expires_at, 'version', r.version,
                        'requester', json_object('subject', r.requester_subject, 'name', u.name),
                        'policy', json_object('key', p.key, 'version', p.version),
                        'stages', (SELECT json_group_array(json_object('position', s.position,
                                          'name', s.name))
                                     FROM policy_stages s WHERE s.policy_id = r.policy_id),
                        'decisions', (SELECT json_group_array(json_object('verdict', d.verdict,
                                          'comment', d.comment, 'approver', d.approver_subject))
                                        FROM decisions d WHERE d.request_id = r.id)
                      ) AS row
                 FROM requests r
                 JOIN policies p ON p.id = r.policy_id
                 LEFT JOIN users u ON u.subject = r.requester_subject
                WHERE r.status = 'PENDING'
                ORDER BY r.created_at DESC, r.id DESC
                LIMIT 50
             ) page"
        }
    }
}
