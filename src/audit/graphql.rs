//! `auditEvents` and `verifyAuditChain`, for holders of `audit.read`; the per-request trail
//! is `ApprovalRequest.auditTrail`, for anyone who may see the request.

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use entity::audit_event;
use serde_json::Value;
use uuid::Uuid;

use super::service::{self, AuditFilter};
use crate::access::{Action, authorize_read};
use crate::error::{self, AppError};
use crate::kernel::Timestamp;
use crate::kernel::resolver::{db, page_cost, require_viewer};

/// The complexity of `verifyAuditChain`: over half the limit, so an operation holds one.
pub const VERIFY_CHAIN_COST: usize = 2_501;

/// One entry of the audit log.
pub struct AuditEventNode(audit_event::Model);

impl From<audit_event::Model> for AuditEventNode {
    fn from(row: audit_event::Model) -> Self {
        Self(row)
    }
}

#[Object(name = "AuditEvent")]
impl AuditEventNode {
    /// Gapless and commit-ordered.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn occurred_at(&self) -> Timestamp {
        Timestamp(self.0.occurred_at)
    }
    /// The subject who acted, or `system`.
    async fn actor(&self) -> &str {
        &self.0.actor_subject
    }
    /// The roles the actor held when acting.
    async fn actor_roles(&self) -> Vec<String> {
        serde_json::from_value(self.0.actor_roles.clone()).unwrap_or_default()
    }
    /// e.g. `request.approved`, `permission.revoked`, `request.approve.denied`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    /// `request`, `policy`, `role` or `user`.
    async fn subject_type(&self) -> &str {
        &self.0.subject_type
    }
    async fn subject_id(&self) -> &str {
        &self.0.subject_id
    }
    async fn request_id(&self) -> Option<ID> {
        self.0.request_id.map(|id| ID(id.to_string()))
    }
    /// One line a person can read.
    async fn summary(&self) -> &str {
        &self.0.summary
    }
    /// The comment or reason given.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// The `X-Request-Id` of the HTTP request that caused it.
    async fn correlation_id(&self) -> Option<&str> {
        self.0.correlation_id.as_deref()
    }
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }
    async fn before(&self) -> Option<Json<Value>> {
        self.0.before.clone().map(Json)
    }
    async fn after(&self) -> Option<Json<Value>> {
        self.0.after.clone().map(Json)
    }
    /// SHA-256 of the previous event's hash and this event.
    async fn hash(&self) -> &str {
        &self.0.hash
    }
    async fn prev_hash(&self) -> &str {
        &self.0.prev_hash
    }
}

#[derive(InputObject, Default)]
pub struct AuditEventFilter {
    actor: Option<String>,
    action: Option<String>,
    subject_type: Option<String>,
    subject_id: Option<String>,
    request_id: Option<ID>,
    /// Inclusive.
    from: Option<Timestamp>,
    /// Exclusive.
    to: Option<Timestamp>,
}

#[derive(SimpleObject)]
pub struct AuditEventConnection {
    edges: Vec<AuditEventEdge>,
    page_info: AuditPageInfo,
}

#[derive(SimpleObject)]
pub struct AuditEventEdge {
    cursor: String,
    node: AuditEventNode,
}

#[derive(SimpleObject)]
#[graphql(name = "AuditPageInfo")]
pub struct AuditPageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

/// What `verifyAuditChain` found.
#[derive(SimpleObject)]
pub struct AuditChainReport {
    /// True when every event matches its hash and the chain head.
    ok: bool,
    /// Events checked.
    checked: i64,
    /// The first sequence where the stored history was edited, deleted, inserted or
    /// reordered.
    first_broken_sequence: Option<i64>,
    head_sequence: i64,
    head_hash: String,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The audit log, newest first, keyset-paginated; `first` ≤ 100. Needs `audit.read`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditEventFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> error::Result<AuditEventConnection> {
        let viewer = require_viewer(ctx)?;
        authorize_read(ctx, viewer, Action::AuditRead, None).await?;
        let db = db(ctx);
        let limit = crate::kernel::page::page_size(first)?;
        let before = match after {
            None => None,
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| AppError::bad_input("after", "not a cursor from this list"))?,
            ),
        };
        let filter = filter.unwrap_or_default();
        let request_id = match filter.request_id {
            None => None,
            Some(id) => Some(
                Uuid::parse_str(&id)
                    .map_err(|_| AppError::bad_input("filter.requestId", "not a request id"))?,
            ),
        };
        let filter = AuditFilter {
            actor: filter.actor,
            action: filter.action,
            subject_type: filter.subject_type,
            subject_id: filter.subject_id,
            request_id,
            from: filter.from.map(|t| t.0),
            to: filter.to.map(|t| t.0),
        };
        let (rows, more) = service::list(db, &filter, limit, before).await?;
        let end_cursor = rows.last().map(|r| r.sequence.to_string());
        Ok(AuditEventConnection {
            edges: rows
                .into_iter()
                .map(|row| AuditEventEdge {
                    cursor: row.sequence.to_string(),
                    node: AuditEventNode(row),
                })
                .collect(),
            page_info: AuditPageInfo {
                has_next_page: more,
                end_cursor,
            },
        })
    }

    /// Re-computes the hash chain over the whole log. Needs `audit.read`. At most once per
    /// operation.
    #[graphql(complexity = "VERIFY_CHAIN_COST")]
    async fn verify_audit_chain(&self, ctx: &Context<'_>) -> error::Result<AuditChainReport> {
        let viewer = require_viewer(ctx)?;
        authorize_read(ctx, viewer, Action::AuditRead, None).await?;
        let db = db(ctx);
        let report = service::verify_chain(db, None).await?;
        Ok(AuditChainReport {
            ok: report.ok,
            checked: report.checked,
            first_broken_sequence: report.first_broken_sequence,
            head_sequence: report.head_sequence,
            head_hash: report.head_hash,
        })
    }
}
