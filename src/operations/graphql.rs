//! `operationsOverview`: for admins and auditors, the on-call view of what is stuck.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{Overview, read};
use crate::access::authorize_oversight;
use crate::error;
use crate::kernel::Timestamp;
use crate::kernel::resolver::{clock, db, require_viewer};

fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<i64> {
    since.map(|at| (now - at).num_seconds().max(0))
}

/// One policy's open queue.
#[derive(SimpleObject)]
pub struct PolicyQueue {
    policy: String,
    pending: i64,
    /// Seconds since the oldest pending request was filed.
    oldest_pending_age_seconds: Option<i64>,
    /// Pending requests in the last tenth of their time to decide.
    near_deadline: i64,
}

/// A pending request in the last tenth of its time.
#[derive(SimpleObject)]
pub struct RequestNearDeadline {
    request_id: ID,
    policy: String,
    title: String,
    expires_at: Timestamp,
    seconds_left: i64,
}

#[derive(SimpleObject)]
pub struct WebhookBacklog {
    /// Outbox entries not yet turned into deliveries.
    undispatched: i64,
    /// Deliveries waiting for an attempt (or in one).
    pending: i64,
    oldest_pending_age_seconds: Option<i64>,
    /// Dead letters waiting for `replayWebhookDelivery`.
    dead_letters: i64,
}

#[derive(SimpleObject)]
pub struct AuditChainHead {
    sequence: i64,
    hash: String,
}

#[derive(SimpleObject)]
pub struct OperationsOverview {
    as_of: Timestamp,
    /// Policies with pending requests.
    queues: Vec<PolicyQueue>,
    /// The nearest 20 deadlines among requests in the last tenth of their time.
    near_deadline: Vec<RequestNearDeadline>,
    /// Requests that expired undecided in the last 24 hours.
    #[graphql(name = "expiredLast24h")]
    expired_last_24h: i64,
    webhooks: WebhookBacklog,
    audit_chain_head: AuditChainHead,
}

impl OperationsOverview {
    fn new(overview: Overview, now: DateTime<Utc>) -> Self {
        Self {
            as_of: Timestamp(now),
            queues: overview
                .queues
                .into_iter()
                .map(|q| PolicyQueue {
                    oldest_pending_age_seconds: age(q.oldest_pending_at, now),
                    policy: q.policy,
                    pending: q.pending,
                    near_deadline: q.at_risk,
                })
                .collect(),
            near_deadline: overview
                .at_risk
                .into_iter()
                .map(|r| RequestNearDeadline {
                    request_id: ID(r.id.to_string()),
                    policy: r.policy,
                    title: r.title,
                    seconds_left: (r.expires_at - now).num_seconds().max(0),
                    expires_at: Timestamp(r.expires_at),
                })
                .collect(),
            expired_last_24h: overview.expired_last_24h,
            webhooks: WebhookBacklog {
                undispatched: overview.outbox_undispatched,
                pending: overview.webhook_pending,
                oldest_pending_age_seconds: age(overview.oldest_webhook_pending_at, now),
                dead_letters: overview.webhook_dead,
            },
            audit_chain_head: AuditChainHead {
                sequence: overview.audit_head_sequence,
                hash: overview.audit_head_hash,
            },
        }
    }
}

#[derive(Default)]
pub struct OperationsQuery;

#[Object]
impl OperationsQuery {
    /// What is stuck and why: queues per policy, deadlines at risk, expiries, the webhook
    /// backlog and dead letters, the audit chain head. The same numbers `/metrics`
    /// carries. Admins and auditors.
    async fn operations_overview(&self, ctx: &Context<'_>) -> error::Result<OperationsOverview> {
        authorize_oversight(ctx, require_viewer(ctx)?).await?;
        let now = clock(ctx).now();
        Ok(OperationsOverview::new(read(db(ctx), now).await?, now))
    }
}
