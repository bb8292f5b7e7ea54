//! `requestEvents`: what happened to requests, read from the audit log in sequence order —
//! first what the subscriber missed (`after: cursor`), then live, with no gap and no
//! duplicate. The log is the source; the bus only says "there is more to read". Every
//! event is authorized for its receiver when it is delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, InputObject, Object, Subscription};
use chrono::{DateTime, Utc};
use entity::{audit_event, request};
use futures_util::Stream;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::types::{RequestNode, UserNode, load_user};
use crate::access::requests::{Asker, can_see};
use crate::access::{OperationGrants, grants_for};
use crate::approvals::loader::Loaders;
use crate::approvals::model::Status;
use crate::audit::service as audit_service;
use crate::error::{self, AppError};
use crate::events::bus::EventBus;
use crate::kernel::Timestamp;
use crate::kernel::Viewer;
use crate::kernel::resolver::require_viewer;

/// How many log rows one read takes.
const BATCH: u64 = 200;
/// The longest a subscriber waits without any news before reading the log anyway.
const IDLE_READ: Duration = Duration::from_secs(5);

/// What happened to a request.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestEventKind {
    Submitted,
    StageApproved,
    Approved,
    Rejected,
    Cancelled,
    Expired,
}

impl RequestEventKind {
    const ACTIONS: [(&'static str, RequestEventKind); 6] = [
        ("request.submitted", Self::Submitted),
        ("request.stage_approved", Self::StageApproved),
        ("request.approved", Self::Approved),
        ("request.rejected", Self::Rejected),
        ("request.cancelled", Self::Cancelled),
        ("request.expired", Self::Expired),
    ];

    fn of_action(action: &str) -> Option<Self> {
        Self::ACTIONS
            .iter()
            .find(|(name, _)| *name == action)
            .map(|(_, kind)| *kind)
    }
}

#[derive(InputObject, Default, Clone)]
pub struct RequestEventFilter {
    /// Only requests under this policy key.
    policy: Option<String>,
    /// Only events that left the request in this status.
    status: Option<Status>,
    request_id: Option<async_graphql::ID>,
}

/// One change to a request.
pub struct RequestEvent {
    sequence: i64,
    kind: RequestEventKind,
    request: request::Model,
    actor: String,
    occurred_at: DateTime<Utc>,
}

#[Object]
impl RequestEvent {
    /// Pass as `after` to resume right after this event.
    async fn cursor(&self) -> String {
        self.sequence.to_string()
    }
    async fn kind(&self) -> RequestEventKind {
        self.kind
    }
    /// The request as this event left it.
    async fn request(&self) -> RequestNode {
        RequestNode(self.request.clone())
    }
    async fn actor(&self, ctx: &Context<'_>) -> error::Result<UserNode> {
        load_user(ctx, &self.actor).await
    }
    async fn occurred_at(&self) -> Timestamp {
        Timestamp(self.occurred_at)
    }
}

#[derive(Default)]
pub struct ApprovalsSubscription;

#[Subscription]
impl ApprovalsSubscription {
    /// Changes to the requests the viewer may see, in commit order. With `after` (a
    /// cursor from an earlier event) it first replays what was missed, then goes live.
    async fn request_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<RequestEventFilter>,
        after: Option<String>,
    ) -> error::Result<impl Stream<Item = RequestEvent> + use<>> {
        let viewer = require_viewer(ctx)?.clone();
        let db = ctx.data_unchecked::<DatabaseConnection>().clone();
        let bus = ctx.data_unchecked::<Arc<EventBus>>().clone();
        // The operation's loaders serve every event; each event starts them empty.
        let loaders = ctx.data_unchecked::<Arc<Loaders>>().clone();
        let grants = ctx.data_opt::<Arc<OperationGrants>>().cloned();
        let filter = filter.unwrap_or_default();
        let request_id = match &filter.request_id {
            None => None,
            Some(id) => Some(
                Uuid::parse_str(id)
                    .map_err(|_| AppError::bad_input("filter.requestId", "not a request id"))?,
            ),
        };
        // Subscribe before reading the head, so nothing committed in between is missed.
        let mut news = bus.subscribe();
        let mut cursor = match after {
            Some(cursor) => cursor
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| {
                    AppError::bad_input("after", "not a cursor from this subscription")
                })?,
            None => audit_service::head(&db).await?.0,
        };
        Ok(async_stream::stream! {
            loop {
                let batch = match read_after(&db, cursor).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        err.log_if_internal();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        news = news.recv() => {
                            if let Err(RecvError::Closed) = news {
                                break;
                            }
                        }
                        () = tokio::time::sleep(IDLE_READ) => {}
                    }
                    continue;
                }
                let deliverable = match authorize(&db, &viewer, &batch, &filter, request_id).await {
                    Ok(events) => events,
                    Err(err) => {
                        err.log_if_internal();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Some(last) = batch.last() {
                    cursor = last.sequence;
                }
                for event in deliverable {
                    loaders.clear().await;
                    if let Some(grants) = &grants {
                        grants.forget().await;
                    }
                    yield event;
                }
            }
        })
    }
}

/// The next request events of the log after `cursor`, in sequence order.
async fn read_after(
    db: &DatabaseConnection,
    cursor: i64,
) -> Result<Vec<audit_event::Model>, AppError> {
    Ok(audit_event::Entity::find()
        .filter(audit_event::Column::Sequence.gt(cursor))
        .filter(audit_event::Column::SubjectType.eq("request"))
        .filter(
            audit_event::Column::Action
                .is_in(RequestEventKind::ACTIONS.iter().map(|(action, _)| *action)),
        )
        .order_by_asc(audit_event::Column::Sequence)
        .limit(BATCH)
        .all(db)
        .await?)
}

/// The events of `batch` this viewer may receive now, as they left each request. Grants
/// are read at delivery, so a revoked permission stops the very next batch.
async fn authorize(
    db: &DatabaseConnection,
    viewer: &Viewer,
    batch: &[audit_event::Model],
    filter: &RequestEventFilter,
    request_id: Option<Uuid>,
) -> Result<Vec<RequestEvent>, AppError> {
    let grants = grants_for(db, viewer).await?;
    let asker = Asker {
        subject: &viewer.subject,
        roles: &viewer.roles,
        grants: &grants,
    };
    let ids: Vec<Uuid> = batch.iter().filter_map(|e| e.request_id).collect();
    let rows: HashMap<Uuid, request::Model> = request::Entity::find()
        .filter(request::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut events = Vec::new();
    for event in batch {
        let (Some(kind), Some(id)) = (RequestEventKind::of_action(&event.action), event.request_id)
        else {
            continue;
        };
        let Some(row) = rows.get(&id) else { continue };
        let as_of = as_of_event(row, event);
        if !can_see(asker, &as_of)
            || request_id.is_some_and(|wanted| wanted != id)
            || filter
                .policy
                .as_ref()
                .is_some_and(|p| *p != as_of.policy_key)
            || filter.status.is_some_and(|s| s.as_str() != as_of.status)
        {
            continue;
        }
        events.push(RequestEvent {
            sequence: event.sequence,
            kind,
            request: as_of,
            actor: event.actor_subject.clone(),
            occurred_at: event.occurred_at,
        });
    }
    Ok(events)
}

/// The request with the state the event recorded (status, stage, version), not whatever it
/// has become since.
fn as_of_event(row: &request::Model, event: &audit_event::Model) -> request::Model {
    let mut as_of = row.clone();
    if let Some(after) = &event.after {
        if let Some(status) = after["status"].as_str() {
            as_of.status = status.to_owned();
        }
        as_of.current_stage = after["currentStage"]
            .as_i64()
            .and_then(|s| i32::try_from(s).ok());
        if let Some(version) = after["version"]
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
        {
            as_of.version = version;
        }
        as_of.updated_at = event.occurred_at;
        as_of.decided_at = Status::parse(&as_of.status)
            .filter(|s| s.is_terminal())
            .map(|_| event.occurred_at);
    }
    as_of
}
