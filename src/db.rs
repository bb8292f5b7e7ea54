//! Connecting to the database and applying migrations.
//!
//! SQLite is tuned here for many concurrent writers: WAL (readers never block the writer),
//! a busy timeout (a writer waits for the lock instead of failing with "database is
//! locked"), and foreign keys on (SQLite leaves them off by default).

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::AppError;

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn connect(database_url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(16)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged decision survives a power cut. NORMAL in WAL mode
                // can lose the last commits, which "never lost" does not allow.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    let db = Database::connect(options)
        .await
        .context("connecting to the database")?;
    Ok(db)
}

pub async fn migrate_up(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("applying migrations")
}

/// Applies pending migrations at start-up, and touches nothing when there are none. So the
/// server can run as a role that may not change the schema (nor disable the audit log's
/// triggers) once its owner has run `countersign migrate up` — see the README.
pub async fn migrate_on_start(db: &DatabaseConnection) -> anyhow::Result<()> {
    if pending_migrations(db).await?.is_empty() {
        return Ok(());
    }
    migrate_up(db).await.context(
        "the server applies pending migrations at start; if its database role may not \
         change the schema, run `countersign migrate up` as the schema's owner first",
    )
}

/// Names of migrations not yet applied; empty means the schema is current. Read only (it
/// never creates the migrations table), so a role without DDL rights can ask.
pub async fn pending_migrations(db: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    let pending = Migrator::get_pending_migrations_read_only(db)
        .await
        .context("reading migration status")?;
    Ok(pending.iter().map(|m| m.name().to_owned()).collect())
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        _ => "other",
    }
}

/// How often a command is re-run after losing an idempotency-key race before answering
/// IDEMPOTENCY_KEY_IN_USE.
const KEY_RACE_RETRIES: u32 = 5;

/// SQLite takes one writer at a time. This process's writers queue here, first come first
/// served, for their turn, instead of polling SQLite's busy timeout: polling backs off up
/// to 100 ms between tries, which put approve p99 at 1–2 s at 16 concurrent writers while
/// the machine idled. The busy timeout still covers writers in other processes (the CLI).
/// One queue per process: test processes run several SQLite apps, which then share it.
static SQLITE_WRITER: Semaphore = Semaphore::const_new(1);

/// A write transaction, holding the process's SQLite writer turn (if any) until it ends.
pub struct WriteTransaction {
    txn: DatabaseTransaction,
    _turn: Option<SemaphorePermit<'static>>,
}

impl std::ops::Deref for WriteTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// Begins a transaction that will write.
///
/// On SQLite it waits for this process's writer turn ([`SQLITE_WRITER`]) and then runs
/// `BEGIN IMMEDIATE`: the write lock is taken up front, so two writers never both read and
/// then fail to upgrade ("database is locked"). On PostgreSQL a bounded lock wait turns a
/// stuck row lock into a retryable error instead of a hung request.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTransaction, DbErr> {
    begin_write_with(db, AuthorityLock::None).await
}

/// How a write transaction stands towards changes of authority (who may do what).
///
/// On PostgreSQL every command takes one transaction-scoped advisory lock before it reads
/// the grants it acts on: shared by the commands that use authority, exclusive by the ones
/// that change it (`grantPermission`, `revokePermission`). So a command
/// either commits before a change of grants begins or reads the grants it left, and two
/// changes never both act on authority the other removes. An advisory lock writes no row
/// (row locks on the grants read would dirty them on every approval) and is taken in the
/// same round trip as the transaction's settings. SQLite needs none: its writers run one
/// at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityLock {
    None,
    Shared,
    Exclusive,
}

/// The advisory lock's key: "authorit" in ASCII, so it is recognisable in `pg_locks`.
pub const AUTHORITY_LOCK_KEY: i64 = 0x6175_7468_6f72_6974;

/// [`begin_write`] with the authority lock `lock` taken first (see [`AuthorityLock`]).
pub async fn begin_write_with(
    db: &DatabaseConnection,
    lock: AuthorityLock,
) -> Result<WriteTransaction, DbErr> {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let turn = SQLITE_WRITER
                .acquire()
                .await
                .map_err(|err| DbErr::Custom(format!("the SQLite writer queue closed: {err}")))?;
            let txn = db
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?;
            Ok(WriteTransaction {
                txn,
                _turn: Some(turn),
            })
        }
        _ => {
            let txn = db.begin().await?;
            let settings = "SET LOCAL lock_timeout = '10s'";
            let statement = match lock {
                AuthorityLock::None => settings.to_owned(),
                AuthorityLock::Shared => {
                    format!("{settings}; SELECT pg_advisory_xact_lock_shared({AUTHORITY_LOCK_KEY})")
                }
                AuthorityLock::Exclusive => {
                    format!("{settings}; SELECT pg_advisory_xact_lock({AUTHORITY_LOCK_KEY})")
                }
            };
            txn.execute_unprepared(&statement).await?;
            Ok(WriteTransaction { txn, _turn: None })
        }
    }
}

/// Commits `result`'s transaction, or rolls it back. Returns `None` when the command lost a
/// race for its idempotency key and should run again (by then the winner has usually
/// committed, and the key replays); [`write_transaction!`] does the looping.
pub async fn settle<T>(
    owned: WriteTransaction,
    result: Result<T, AppError>,
    attempt: &mut u32,
) -> Option<Result<T, AppError>> {
    // The writer turn is given up as soon as the transaction ends, never across a retry's
    // sleep.
    let WriteTransaction { txn, _turn: turn } = owned;
    match result {
        Ok(value) => {
            let committed = txn.commit().await;
            drop(turn);
            Some(committed.map(|()| value).map_err(AppError::from))
        }
        Err(err) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            drop(turn);
            match err {
                AppError::IdempotencyKeyInUse if *attempt < KEY_RACE_RETRIES => {
                    *attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(*attempt))).await;
                    None
                }
                err => Some(Err(err)),
            }
        }
    }
}

/// Runs the body in one write transaction (see [`begin_write`]; with a lock argument,
/// [`begin_write_with`]) bound to `$txn`, commits
/// it on `Ok` and rolls it back on `Err`; re-runs it after a lost idempotency-key race.
///
/// Inside the body, use the transaction for every statement — never the pool: on SQLite a
/// second connection would wait for the write lock this transaction holds.
///
/// A macro rather than a function taking a closure: the body borrows the caller's locals
/// across awaits, which async closures cannot yet express for `Send` futures.
#[macro_export]
macro_rules! write_transaction {
    ($db:expr, |$txn:ident| $body:block) => {
        $crate::write_transaction!($db, $crate::db::AuthorityLock::None, |$txn| $body)
    };
    ($db:expr, $lock:expr, |$txn:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            let owned = $crate::db::begin_write_with($db, $lock).await?;
            let result: ::std::result::Result<_, $crate::error::AppError> = {
                let $txn: &::sea_orm::DatabaseTransaction = &owned;
                async { $body }.await
            };
            if let Some(done) = $crate::db::settle(owned, result, &mut attempt).await {
                break done;
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    #[tokio::test]
    async fn sqlite_commits_are_durable() {
        let dir = std::env::temp_dir().join(format!("cs-db-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let db = super::connect(&url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "PRAGMA synchronous",
            ))
            .await
            .unwrap()
            .unwrap();
        let level: i32 = row.try_get_by_index(0).unwrap();
        assert_eq!(level, 2, "synchronous=FULL");
        db.close().await.unwrap();
        std::fs::remove_dir_all(dir).ok();
    }
}
