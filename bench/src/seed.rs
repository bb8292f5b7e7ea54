//! A realistic dataset, written straight into the database: requests across the demo
//! policies in every status, with the decisions that got them there and the audit events
//! each transition records, chained exactly as the server chains them (so
//! `verifyAuditChain` passes). Filing a million requests through the API would take
//! hours; rows in batches take a minute or two.
//!
//! Transitions come from the server's own rules (`approvals::model`), so a seeded request
//! is one the server could have produced. Run it against a migrated, demo-seeded database
//! with no server running (the chain head is read once and written back per batch).

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use countersign::approvals::model::{
    StageRule, Status, Transition, Verdict, cancellation, decision, expiry, submission,
};
use countersign::approvals::policies::stage_rule;
use countersign::approvals::store::{snapshot, transitioned};
use countersign::audit::model::{GENESIS_HASH, link};
use countersign::kernel::NewEvent;
use entity::{
    audit_chain_head, audit_event, decision as decision_row, policy, policy_stage, request,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, TransactionTrait,
};
use serde_json::{Value, json};
use uuid::{Timestamp, Uuid};

/// Requests per transaction; the chain head is written at the end of each.
const BATCH: usize = 2_000;
/// Rows per INSERT statement (SQLite allows 32,766 bound values; 18 columns × 500 fit).
const ROWS_PER_INSERT: usize = 500;

/// What was written.
#[derive(Debug, Default)]
pub struct Seeded {
    pub requests: usize,
    pub decisions: usize,
    pub events: usize,
    pub by_status: HashMap<&'static str, usize>,
}

struct Policy {
    row: policy::Model,
    stages: Vec<policy_stage::Model>,
}

/// Writes `count` requests, spread over the last 180 days (pending ones recent enough
/// to be open now), deterministically from `seed`.
pub async fn seed(
    db: &DatabaseConnection,
    count: usize,
    now: DateTime<Utc>,
    seed: u64,
) -> anyhow::Result<Seeded> {
    let policies = load_policies(db).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let head = audit_chain_head::Entity::find_by_id(1)
        .one(db)
        .await?
        .context("the audit chain head row is missing: migrate first")?;
    let mut chain = Chain {
        sequence: head.sequence,
        hash: if head.sequence == 0 {
            GENESIS_HASH.to_owned()
        } else {
            head.hash
        },
    };
    let mut seeded = Seeded::default();
    // Oldest first, so the log's sequence follows time as it would in production.
    let span = Duration::days(180);
    let start = now - span;
    let step = span.num_milliseconds() / count.max(1) as i64;
    let mut n = 0;
    while n < count {
        let mut batch = Batch::default();
        for i in n..(n + BATCH).min(count) {
            let created = start + Duration::milliseconds(step * i as i64);
            let policy = pick_policy(&policies, &mut rng);
            let status = pick_status(&mut rng, created, now, policy);
            file(
                &mut batch, &mut chain, &mut rng, policy, created, status, now,
            )?;
            *seeded.by_status.entry(status.as_str()).or_default() += 1;
        }
        n += BATCH;
        seeded.requests += batch.requests.len();
        seeded.decisions += batch.decisions.len();
        seeded.events += batch.events.len();
        write(db, batch, &chain).await?;
    }
    Ok(seeded)
}

async fn load_policies(db: &DatabaseConnection) -> anyhow::Result<Vec<Policy>> {
    let mut policies = Vec::new();
    for key in ["refund", "account_change", "access_grant"] {
        let row = policy::Entity::find()
            .filter(policy::Column::Key.eq(key))
            .order_by_desc(policy::Column::Version)
            .one(db)
            .await?
            .with_context(|| format!("no {key} policy: seed the demo first"))?;
        let stages = policy_stage::Entity::find()
            .filter(policy_stage::Column::PolicyId.eq(row.id))
            .order_by_asc(policy_stage::Column::Position)
            .all(db)
            .await?;
        policies.push(Policy { row, stages });
    }
    Ok(policies)
}

fn pick_policy<'a>(policies: &'a [Policy], rng: &mut StdRng) -> &'a Policy {
    match rng.random_range(0..100) {
        0..60 => &policies[0],
        60..85 => &policies[1],
        _ => &policies[2],
    }
}

/// Most requests are long decided; the ones still open are those younger than their
/// policy's deadline (some of which are pending, the rest decided quickly).
fn pick_status(rng: &mut StdRng, created: DateTime<Utc>, now: DateTime<Utc>, p: &Policy) -> Status {
    let open = created + Duration::seconds(p.row.expires_after_seconds) > now;
    let roll = rng.random_range(0..100);
    match (open, roll) {
        (true, 0..70) => Status::Pending,
        (_, 0..60) | (true, 70..85) => Status::Approved,
        (_, 60..78) => Status::Rejected,
        (_, 78..88) | (true, _) => Status::Cancelled,
        _ => Status::Expired,
    }
}

#[derive(Default)]
struct Batch {
    requests: Vec<request::Model>,
    decisions: Vec<decision_row::Model>,
    events: Vec<audit_event::Model>,
}

struct Chain {
    sequence: i64,
    hash: String,
}

/// Who decides for a role: distinct people, so a stage needing two approvals gets two.
fn approvers(role: &str) -> &'static [&'static str] {
    match role {
        "finance" => &["bob", "finance-2", "finance-3"],
        "finance_lead" => &["carol", "finance-lead-2"],
        "ops" => &["dave", "ops-2", "ops-3"],
        _ => &["grace"],
    }
}

/// One request, from submission to `target`, with its decisions and events.
fn file(
    batch: &mut Batch,
    chain: &mut Chain,
    rng: &mut StdRng,
    policy: &Policy,
    created: DateTime<Utc>,
    target: Status,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (amount, currency, payload) = amount_and_payload(rng, &policy.row.key);
    let rules: Vec<StageRule> = policy
        .stages
        .iter()
        .map(|s| stage_rule(s, currency))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("stage rule: {}", e.client_message()))?;
    let requester = match rng.random_range(0..4) {
        0 => "alice".to_owned(),
        _ => format!("support-{}", rng.random_range(2..40)),
    };
    let id = Uuid::new_v7(timestamp(created));
    let mut row = request::Model {
        id,
        policy_id: policy.row.id,
        policy_key: policy.row.key.clone(),
        policy_version: policy.row.version,
        // The id's last 12 hex digits: its random part, short enough for a title.
        title: format!(
            "{} {}",
            policy.row.name,
            id.simple().to_string().split_off(20)
        ),
        description: String::new(),
        payload,
        amount: amount.to_string(),
        currency: currency.to_owned(),
        requester_subject: requester.clone(),
        status: String::new(),
        current_stage: None,
        version: 0,
        created_at: created,
        updated_at: created,
        expires_at: created + Duration::seconds(policy.row.expires_after_seconds),
        decided_at: None,
    };
    let mut at = created;
    let submitted = submission(&rules, amount);
    let summary = format!(
        "{requester} submitted {} {:?} for {amount} {currency}",
        row.policy_key, row.title
    );
    let mut before = None;
    step(
        batch,
        chain,
        &mut row,
        &mut before,
        submitted,
        at,
        (&requester, "support"),
        summary,
        None,
    );
    let mut approvals_in_stage = 0;
    let mut used: Vec<&str> = Vec::new();
    while Status::parse(&row.status) == Some(Status::Pending) {
        let stage_no = row.current_stage.unwrap_or(1);
        let stage = &policy.stages[(stage_no - 1) as usize];
        let role = stage.approver_roles[0].as_str().unwrap_or("ops").to_owned();
        // Decided within hours, never in the future.
        at = (at + Duration::minutes(rng.random_range(5..600)))
            .min(now)
            .max(at);
        let to = match target {
            Status::Pending => {
                // Leave it open, sometimes part-way through its stages.
                if rng.random_bool(0.7) {
                    break;
                }
                let t = decision(
                    Verdict::Approve,
                    &rules,
                    amount,
                    stage_no,
                    approvals_in_stage,
                );
                if t.status != Status::Pending {
                    break;
                }
                t
            }
            Status::Approved => decision(
                Verdict::Approve,
                &rules,
                amount,
                stage_no,
                approvals_in_stage,
            ),
            Status::Rejected => decision(
                Verdict::Reject,
                &rules,
                amount,
                stage_no,
                approvals_in_stage,
            ),
            Status::Cancelled => {
                let summary = format!("{requester} cancelled the request: no longer needed");
                let reason = Some("no longer needed".to_owned());
                let to = cancellation(row.current_stage);
                step(
                    batch,
                    chain,
                    &mut row,
                    &mut before,
                    to,
                    at,
                    (&requester, "support"),
                    summary,
                    reason,
                );
                break;
            }
            Status::Expired => {
                let to = expiry(
                    Status::Pending,
                    row.expires_at,
                    row.current_stage,
                    row.expires_at + Duration::seconds(5),
                )
                .context("an expired request is past its deadline")?;
                let summary = "system expired the request: its deadline passed".to_owned();
                let deadline = row.expires_at;
                step(
                    batch,
                    chain,
                    &mut row,
                    &mut before,
                    to,
                    deadline,
                    ("system", "system"),
                    summary,
                    None,
                );
                break;
            }
        };
        let approver = *approvers(&role)
            .iter()
            .find(|a| !used.contains(a))
            .context("more approvals than demo approvers")?;
        used.push(approver);
        let (verdict, comment) = match to.status {
            Status::Rejected => ("REJECT", "does not match the order"),
            _ => ("APPROVE", ""),
        };
        batch.decisions.push(decision_row::Model {
            id: Uuid::new_v7(timestamp(at)),
            request_id: id,
            stage_position: stage_no,
            approver_subject: approver.to_owned(),
            verdict: verdict.to_owned(),
            comment: comment.to_owned(),
            created_at: at,
        });
        approvals_in_stage = if to.stage == Some(stage_no) {
            approvals_in_stage + 1
        } else {
            0
        };
        let summary = format!(
            "{approver} {} the request at stage {stage_no}",
            verdict.to_lowercase()
        );
        let reason = (!comment.is_empty()).then(|| comment.to_owned());
        step(
            batch,
            chain,
            &mut row,
            &mut before,
            to,
            at,
            (approver, &role),
            summary,
            reason,
        );
    }
    debug_assert!(row.status != "PENDING" || row.expires_at > now);
    batch.requests.push(row);
    Ok(())
}

/// Applies `to` to `row` and records its audit event at `at`.
#[allow(
    clippy::too_many_arguments,
    reason = "one step of the seeder: the row, its audit chain and what to record"
)]
fn step(
    batch: &mut Batch,
    chain: &mut Chain,
    row: &mut request::Model,
    before: &mut Option<Value>,
    to: Transition,
    at: DateTime<Utc>,
    (actor, role): (&str, &str),
    summary: String,
    reason: Option<String>,
) {
    *row = transitioned(row, to, at);
    let after = snapshot(row);
    chain.sequence += 1;
    let event = NewEvent {
        occurred_at: at,
        actor_subject: actor.to_owned(),
        actor_roles: vec![role.to_owned()],
        action: to.action.to_owned(),
        subject_type: "request".to_owned(),
        subject_id: row.id.to_string(),
        request_id: Some(row.id),
        before: before.replace(after.clone()),
        after: Some(after),
        reason,
        correlation_id: None,
        idempotency_key: None,
        summary,
    };
    let event = link(
        event,
        chain.sequence,
        Uuid::new_v7(timestamp(at)),
        &chain.hash,
    );
    chain.hash = event.hash.clone();
    batch.events.push(event);
}

fn amount_and_payload(rng: &mut StdRng, policy: &str) -> (Decimal, &'static str, Value) {
    let currency = ["EUR", "EUR", "USD", "GBP"][rng.random_range(0..4)];
    match policy {
        "refund" => {
            // Mostly small; about one in eight above the 1,000 lead sign-off threshold.
            let cents = if rng.random_bool(0.125) {
                rng.random_range(100_000..500_000)
            } else {
                rng.random_range(500..99_999)
            };
            let order = format!("o-{}", rng.random_range(100_000..999_999));
            (
                Decimal::new(cents, 2),
                currency,
                json!({ "orderId": order, "reason": "damaged" }),
            )
        }
        "account_change" => (
            Decimal::new(rng.random_range(0..50_000), 2),
            currency,
            json!({ "accountId": format!("acc-{}", rng.random_range(1_000..9_999)), "change": "plan" }),
        ),
        _ => (
            Decimal::new(0, 2),
            "EUR",
            json!({ "system": "billing", "grantee": format!("user-{}", rng.random_range(1..500)), "level": "read" }),
        ),
    }
}

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    let nanos = at.timestamp_subsec_nanos();
    Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, nanos)
}

/// One transaction: the rows, then the chain head moved to the batch's last event.
async fn write(db: &DatabaseConnection, batch: Batch, chain: &Chain) -> anyhow::Result<()> {
    let txn = db.begin().await?;
    for rows in batch.requests.chunks(ROWS_PER_INSERT) {
        request::Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model))
            .exec_without_returning(&txn)
            .await?;
    }
    for rows in batch.decisions.chunks(ROWS_PER_INSERT) {
        decision_row::Entity::insert_many(
            rows.iter().cloned().map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    for rows in batch.events.chunks(ROWS_PER_INSERT) {
        audit_event::Entity::insert_many(
            rows.iter().cloned().map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    let mut head = audit_chain_head::Entity::find_by_id(1)
        .one(&txn)
        .await?
        .context("the audit chain head row is missing")?
        .into_active_model();
    head.sequence = sea_orm::Set(chain.sequence);
    head.hash = sea_orm::Set(chain.hash.clone());
    head.update(&txn).await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign::config::{DemoMode, Environment};
    use countersign::kernel::Clock;
    use sea_orm::{ConnectionTrait, PaginatorTrait};

    /// The dataset is one the server accepts: its audit chain verifies, every request
    /// has its events, and nothing pending is past its deadline.
    #[tokio::test]
    async fn a_seeded_dataset_has_a_valid_chain_and_consistent_requests() {
        let dir = std::env::temp_dir().join(format!("countersign-seed-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("seed.db").display());
        let db = countersign::db::connect(&url).await.unwrap();
        countersign::db::migrate_on_start(&db).await.unwrap();
        let clock = Clock::system();
        countersign::demo::seed(&db, &clock, DemoMode::On, Environment::Development)
            .await
            .unwrap();
        let now = Utc::now();
        let seeded = seed(&db, 5_000, now, 7).await.unwrap();
        assert_eq!(seeded.requests, 5_000);
        for status in ["PENDING", "APPROVED", "REJECTED", "CANCELLED", "EXPIRED"] {
            assert!(
                seeded.by_status.get(status).copied().unwrap_or(0) > 0,
                "{status}"
            );
        }

        let report = countersign::audit::service::verify_chain(&db, None)
            .await
            .unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(
            report.checked as usize,
            seeded.events + 1,
            "the demo's event and ours"
        );
        assert_eq!(request::Entity::find().count(&db).await.unwrap(), 5_000);
        let overdue = request::Entity::find()
            .filter(request::Column::Status.eq("PENDING"))
            .filter(request::Column::ExpiresAt.lte(now))
            .count(&db)
            .await
            .unwrap();
        assert_eq!(overdue, 0);
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS n FROM requests r WHERE NOT EXISTS \
                 (SELECT 1 FROM audit_events e WHERE e.request_id = r.id)",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get::<i64>("", "n").unwrap(),
            0,
            "a request without events"
        );
        db.close().await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
