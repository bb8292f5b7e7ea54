//! Appending to, verifying and reading the audit log.

use chrono::{DateTime, Utc};
use entity::{audit_chain_head, audit_event};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Statement, sea_query::LockType,
};
use uuid::Uuid;

use super::model::{GENESIS_HASH, canonical, chain_hash, link};
use crate::error::AppError;
use crate::kernel::{CommandContext, NewEvent};

/// Appends `event` to the chain and returns its sequence number.
///
/// Call this as the last write of the transaction: it locks the chain head until commit,
/// and every other appender waits for it. That wait is what makes sequence numbers gapless
/// and commit-ordered.
pub async fn append(txn: &DatabaseTransaction, event: NewEvent) -> Result<i64, AppError> {
    let mut head_query = audit_chain_head::Entity::find_by_id(1);
    if txn.get_database_backend() == DbBackend::Postgres {
        // SQLite needs no row lock: the immediate transaction already holds the write lock.
        head_query = head_query.lock(LockType::Update);
    }
    let head = head_query
        .one(txn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit chain head row is missing"))?;

    // The id is v7 from the wall clock; `occurred_at` comes from the command's clock, in
    // microseconds, what both databases store exactly, so the hash can be recomputed.
    let row = link(event, head.sequence + 1, Uuid::now_v7(), &head.hash);
    let sequence = row.sequence;
    let hash = row.hash.clone();
    row.into_active_model().reset_all().insert(txn).await?;

    let updated = audit_chain_head::Entity::update_many()
        .col_expr(audit_chain_head::Column::Sequence, sequence.into())
        .col_expr(audit_chain_head::Column::Hash, hash.into())
        .filter(audit_chain_head::Column::Id.eq(1))
        .filter(audit_chain_head::Column::Sequence.eq(head.sequence))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(anyhow::anyhow!("the audit chain head moved during an append").into());
    }
    Ok(sequence)
}

/// What a refused command attempted, for its record.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// e.g. `request.approve`; the refusal is recorded as `request.approve.denied`.
    pub action: &'static str,
    pub subject_type: &'static str,
    pub subject_id: String,
    pub request_id: Option<Uuid>,
}

impl Attempt {
    /// An attempt at `action` on the request `id`.
    pub fn on_request(action: &'static str, id: Uuid) -> Self {
        Self {
            action,
            subject_type: "request",
            subject_id: id.to_string(),
            request_id: Some(id),
        }
    }
}

/// Records a refused command (FORBIDDEN) in its own transaction, after the command's own
/// transaction rolled back: who tried what, on what, and why it was refused.
pub async fn record_denied(
    db: &DatabaseConnection,
    ctx: &CommandContext,
    attempt: &Attempt,
    why: &str,
) {
    let mut event = ctx.event(
        format!("{}.denied", attempt.action),
        attempt.subject_type,
        attempt.subject_id.clone(),
        format!(
            "{} was refused {} on {} {}: {why}",
            ctx.actor.subject, attempt.action, attempt.subject_type, attempt.subject_id
        ),
    );
    event.request_id = attempt.request_id;
    event.reason = Some(why.into());
    // The key belongs to the refused command, which had no effect.
    event.idempotency_key = None;
    let result: Result<i64, AppError> =
        async { crate::write_transaction!(db, |txn| { append(txn, event.clone()).await }) }.await;
    if let Err(err) = result {
        // The refusal stands either way; losing its record is logged, not raised.
        err.log_if_internal();
    }
}

/// What `verifyAuditChain` and `countersign audit verify` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    pub ok: bool,
    /// Events read.
    pub checked: i64,
    /// The first sequence number where the stored history stops matching its hashes.
    pub first_broken_sequence: Option<i64>,
    pub head_sequence: i64,
    pub head_hash: String,
}

const VERIFY_BATCH: u64 = 1_000;

/// Re-computes the chain from the first event and compares it with what is stored: every
/// event's sequence (gapless from 1), `prev_hash`, and `hash`, and finally the chain head.
/// With a `checkpoint` (sequence and hash recorded earlier, elsewhere), the event at that
/// sequence must still carry that hash: a history rewritten or truncated after it is caught
/// even if the rewrite re-hashed everything.
pub async fn verify_chain<C: ConnectionTrait>(
    db: &C,
    checkpoint: Option<(i64, String)>,
) -> Result<ChainReport, AppError> {
    let head = audit_chain_head::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit chain head row is missing"))?;
    let mut expected_sequence = 1;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut checked = 0;
    let mut broken = None;
    let mut checkpoint_seen = false;
    'batches: loop {
        // Only the prefix up to the head read above: events appended while this runs
        // belong to a later check, not to this one.
        let batch = audit_event::Entity::find()
            .filter(audit_event::Column::Sequence.gte(expected_sequence))
            .filter(audit_event::Column::Sequence.lte(head.sequence))
            .order_by_asc(audit_event::Column::Sequence)
            .limit(VERIFY_BATCH)
            .all(db)
            .await?;
        if batch.is_empty() {
            break;
        }
        for event in batch {
            checked += 1;
            let intact = event.sequence == expected_sequence
                && event.prev_hash == prev_hash
                && event.hash == chain_hash(&prev_hash, &canonical(&event));
            if !intact {
                broken = Some(expected_sequence);
                break 'batches;
            }
            if let Some((sequence, hash)) = &checkpoint {
                if event.sequence == *sequence {
                    checkpoint_seen = true;
                    if event.hash != *hash {
                        broken = Some(*sequence);
                        break 'batches;
                    }
                }
            }
            prev_hash = event.hash;
            expected_sequence += 1;
        }
    }
    let last = expected_sequence - 1;
    if broken.is_none() && (head.sequence != last || head.hash != prev_hash) {
        // Events missing at the end.
        broken = Some(last.min(head.sequence) + 1);
    }
    if broken.is_none() && events_beyond_head(db).await? {
        // Rows past the head that no append wrote: an append moves both in one commit.
        broken = Some(head.sequence + 1);
    }
    if broken.is_none() {
        if let Some((sequence, _)) = &checkpoint {
            if !checkpoint_seen {
                broken = Some(*sequence);
            }
        }
    }
    Ok(ChainReport {
        ok: broken.is_none(),
        checked,
        first_broken_sequence: broken,
        head_sequence: head.sequence,
        head_hash: head.hash,
    })
}

/// Whether the log holds events past its head. Both are read in one statement, so one
/// snapshot: an append commits its event and the new head together, and is never half seen.
async fn events_beyond_head<C: ConnectionTrait>(db: &C) -> Result<bool, AppError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT h.sequence AS head, (SELECT MAX(e.sequence) FROM audit_events e) AS last \
             FROM audit_chain_head h WHERE h.id = 1",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit chain head row is missing"))?;
    let head: i64 = row.try_get("", "head")?;
    let last: Option<i64> = row.try_get("", "last")?;
    Ok(last.is_some_and(|last| last > head))
}

/// The current chain head, to record elsewhere as a checkpoint.
pub async fn head<C: ConnectionTrait>(db: &C) -> Result<(i64, String), AppError> {
    let head = audit_chain_head::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit chain head row is missing"))?;
    Ok((head.sequence, head.hash))
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<String>,
    pub request_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn condition(&self) -> Condition {
        let mut all = Condition::all();
        if let Some(actor) = &self.actor {
            all = all.add(audit_event::Column::ActorSubject.eq(actor.clone()));
        }
        if let Some(action) = &self.action {
            all = all.add(audit_event::Column::Action.eq(action.clone()));
        }
        if let Some(subject_type) = &self.subject_type {
            all = all.add(audit_event::Column::SubjectType.eq(subject_type.clone()));
        }
        if let Some(subject_id) = &self.subject_id {
            all = all.add(audit_event::Column::SubjectId.eq(subject_id.clone()));
        }
        if let Some(request_id) = self.request_id {
            all = all.add(audit_event::Column::RequestId.eq(request_id));
        }
        if let Some(from) = self.from {
            all = all.add(audit_event::Column::OccurredAt.gte(from));
        }
        if let Some(to) = self.to {
            all = all.add(audit_event::Column::OccurredAt.lt(to));
        }
        all
    }
}

/// A page of events, newest first, after the event with sequence `before` (exclusive).
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &AuditFilter,
    limit: u64,
    before: Option<i64>,
) -> Result<(Vec<audit_event::Model>, bool), AppError> {
    let mut query = audit_event::Entity::find().filter(filter.condition());
    if let Some(before) = before {
        query = query.filter(audit_event::Column::Sequence.lt(before));
    }
    let rows = query
        .order_by_desc(audit_event::Column::Sequence)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(crate::kernel::page::split_page(rows, limit))
}

/// Events in sequence order from `after` (exclusive), a batch at a time: for exports that
/// must not hold the whole log in memory.
pub async fn batch_after<C: ConnectionTrait>(
    db: &C,
    filter: &AuditFilter,
    after: i64,
    limit: u64,
) -> Result<Vec<audit_event::Model>, AppError> {
    Ok(audit_event::Entity::find()
        .filter(filter.condition())
        .filter(audit_event::Column::Sequence.gt(after))
        .order_by_asc(audit_event::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?)
}
