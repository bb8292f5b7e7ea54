//! What is stuck, at a glance: the numbers `operationsOverview` answers and `/metrics`
//! carries, read in one place so the two never disagree. A handful of aggregate
//! statements along existing indexes; cheap enough to run per scrape and per query.

pub mod graphql;

use chrono::{DateTime, Duration, Utc};
use entity::{audit_chain_head, idempotency_key, outbox_entry, policy, request, webhook_delivery};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::error::AppError;
use crate::webhooks::deliveries::{DEAD, PENDING};

/// A request is at risk in the last tenth of its time to decide.
const AT_RISK_FRACTION: i32 = 10;
/// At-risk requests listed by name; the counts cover all of them.
const AT_RISK_LISTED: usize = 20;
/// Candidates read per overview, nearest deadline first: past this many, the at-risk
/// counts are lower bounds (an on-call page does not need more).
const AT_RISK_SCAN: u64 = 10_000;
/// How long one overview serves `/metrics` scrapes: several Prometheus servers (or a
/// scrape flood) cost one read per interval.
pub const OVERVIEW_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// One policy's open queue.
#[derive(Clone, Debug)]
pub struct PolicyQueue {
    pub policy: String,
    pub pending: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Pending requests in the last tenth of their time.
    pub at_risk: i64,
}

/// A pending request near its deadline.
#[derive(Clone, Debug)]
pub struct AtRisk {
    pub id: Uuid,
    pub policy: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default)]
pub struct Overview {
    pub queues: Vec<PolicyQueue>,
    /// Nearest deadline first, at most [`AT_RISK_LISTED`].
    pub at_risk: Vec<AtRisk>,
    pub expired_last_24h: i64,
    /// Outbox entries not yet dispatched to webhooks.
    pub outbox_undispatched: i64,
    pub webhook_pending: i64,
    pub oldest_webhook_pending_at: Option<DateTime<Utc>>,
    pub webhook_dead: i64,
    pub audit_head_sequence: i64,
    pub audit_head_hash: String,
    /// Idempotency keys past their replay window, waiting for the purge.
    pub idempotency_expired: i64,
}

pub async fn read<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<Overview, AppError> {
    let mut overview = Overview::default();
    let queues: Vec<(String, i64, Option<DateTime<Utc>>)> = request::Entity::find()
        .select_only()
        .column(request::Column::PolicyKey)
        .column_as(
            Expr::from(Func::count(Expr::col(request::Column::Id))),
            "pending",
        )
        .column_as(
            Expr::from(Func::min(Expr::col(request::Column::CreatedAt))),
            "oldest",
        )
        .filter(request::Column::Status.eq(PENDING))
        .group_by(request::Column::PolicyKey)
        .order_by_asc(request::Column::PolicyKey)
        .into_tuple()
        .all(db)
        .await?;
    overview.queues = queues
        .into_iter()
        .map(|(policy, pending, oldest_pending_at)| PolicyQueue {
            policy,
            pending,
            oldest_pending_at,
            at_risk: 0,
        })
        .collect();

    // Candidates along (status, expires_at): pending and due within the longest window any
    // policy version gives; each is then judged by its own window.
    let longest: Option<i64> = policy::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::max(Expr::col(policy::Column::ExpiresAfterSeconds))),
            "longest",
        )
        .into_tuple()
        .one(db)
        .await?
        .flatten();
    let horizon = now + Duration::seconds(longest.unwrap_or(0) / i64::from(AT_RISK_FRACTION) + 1);
    let candidates = request::Entity::find()
        .select_only()
        .columns([
            request::Column::Id,
            request::Column::PolicyKey,
            request::Column::Title,
            request::Column::CreatedAt,
            request::Column::ExpiresAt,
        ])
        .filter(request::Column::Status.eq(PENDING))
        .filter(request::Column::ExpiresAt.lte(horizon))
        .order_by_asc(request::Column::ExpiresAt)
        .limit(AT_RISK_SCAN)
        .into_tuple::<(Uuid, String, String, DateTime<Utc>, DateTime<Utc>)>()
        .all(db)
        .await?;
    for (id, policy, title, created_at, expires_at) in candidates {
        let window = (expires_at - created_at) / AT_RISK_FRACTION;
        if expires_at - now > window {
            continue;
        }
        if let Some(queue) = overview.queues.iter_mut().find(|q| q.policy == policy) {
            queue.at_risk += 1;
        }
        if overview.at_risk.len() < AT_RISK_LISTED {
            overview.at_risk.push(AtRisk {
                id,
                policy,
                title,
                created_at,
                expires_at,
            });
        }
    }

    // An expired request's deadline precedes its expiry, by at most a sweep or an outage:
    // the deadline bound keeps this on the (status, expires_at) index.
    let day_ago = now - Duration::hours(24);
    overview.expired_last_24h = to_i64(
        request::Entity::find()
            .filter(request::Column::Status.eq("EXPIRED"))
            .filter(request::Column::ExpiresAt.gte(day_ago - Duration::days(7)))
            .filter(request::Column::DecidedAt.gte(day_ago))
            .count(db)
            .await?,
    );
    overview.outbox_undispatched = to_i64(
        outbox_entry::Entity::find()
            .filter(outbox_entry::Column::State.eq(PENDING))
            .count(db)
            .await?,
    );
    let (pending, oldest): (i64, Option<DateTime<Utc>>) = webhook_delivery::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::count(Expr::col(webhook_delivery::Column::Id))),
            "pending",
        )
        .column_as(
            Expr::from(Func::min(Expr::col(webhook_delivery::Column::CreatedAt))),
            "oldest",
        )
        .filter(webhook_delivery::Column::State.eq(PENDING))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, None));
    overview.webhook_pending = pending;
    overview.oldest_webhook_pending_at = oldest;
    overview.webhook_dead = to_i64(
        webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::State.eq(DEAD))
            .count(db)
            .await?,
    );
    overview.idempotency_expired = to_i64(
        idempotency_key::Entity::find()
            .filter(idempotency_key::Column::ExpiresAt.lte(now))
            .count(db)
            .await?,
    );
    if let Some(head) = audit_chain_head::Entity::find_by_id(1).one(db).await? {
        overview.audit_head_sequence = head.sequence;
        overview.audit_head_hash = head.hash;
    }
    Ok(overview)
}

/// The last overview read for `/metrics`, shared by scrapes for [`OVERVIEW_MAX_AGE`].
#[derive(Default)]
pub struct OverviewCache(
    tokio::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<Overview>)>>,
);

impl OverviewCache {
    /// The cached overview if young enough, else a fresh read (one at a time).
    pub async fn get<C: ConnectionTrait>(
        &self,
        db: &C,
        now: DateTime<Utc>,
    ) -> Result<std::sync::Arc<Overview>, AppError> {
        let mut slot = self.0.lock().await;
        if let Some((at, overview)) = slot.as_ref() {
            if at.elapsed() < OVERVIEW_MAX_AGE {
                return Ok(overview.clone());
            }
        }
        let overview = std::sync::Arc::new(read(db, now).await?);
        *slot = Some((std::time::Instant::now(), overview.clone()));
        Ok(overview)
    }
}

fn to_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Sets `/metrics`' gauges from an overview, just before a scrape renders them.
pub fn export(overview: &Overview, metrics: &crate::telemetry::Metrics, now: DateTime<Utc>) {
    let by_policy = |value: &dyn Fn(&PolicyQueue) -> f64| -> Vec<(String, f64)> {
        overview
            .queues
            .iter()
            .map(|q| (q.policy.clone(), value(q)))
            .collect()
    };
    let seconds = |at: Option<DateTime<Utc>>| {
        at.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        })
    };
    metrics.gauges_by(
        "countersign_queue_pending",
        "policy",
        &by_policy(&|q| q.pending as f64),
    );
    metrics.gauges_by(
        "countersign_queue_oldest_pending_age_seconds",
        "policy",
        &by_policy(&|q| seconds(q.oldest_pending_at)),
    );
    metrics.gauges_by(
        "countersign_queue_near_deadline",
        "policy",
        &by_policy(&|q| q.at_risk as f64),
    );
    metrics.gauge(
        "countersign_requests_expired_last_24h",
        overview.expired_last_24h as f64,
    );
    metrics.gauge(
        "countersign_outbox_undispatched",
        overview.outbox_undispatched as f64,
    );
    metrics.gauge(
        "countersign_webhook_backlog",
        overview.webhook_pending as f64,
    );
    metrics.gauge(
        "countersign_webhook_oldest_pending_age_seconds",
        seconds(overview.oldest_webhook_pending_at),
    );
    metrics.gauge(
        "countersign_webhook_dead_letters",
        overview.webhook_dead as f64,
    );
    metrics.gauge(
        "countersign_audit_chain_head_sequence",
        overview.audit_head_sequence as f64,
    );
    metrics.gauge(
        "countersign_idempotency_keys_expired",
        overview.idempotency_expired as f64,
    );
}
