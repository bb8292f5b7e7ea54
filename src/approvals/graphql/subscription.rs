//! `requestEvents`: what happened to requests, read from the audit log in sequence order —
//! first what the subscriber missed (`after: cursor`), then live, with no gap and no
//! duplicate. The log is the source, read once per replica by the request feed
//! (`approvals::feed`); every event is authorized for its receiver, in memory, when it is
//! delivered, and resolved once for all receivers who selected the same fields.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use async_graphql::context::SelectionField;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, InputObject, Object, OutputType, Positioned, ServerResult,
    Subscription, Value as GqlValue,
};
use futures_util::Stream;
use uuid::Uuid;

use super::types::{RequestNode, UserNode, load_user};
use crate::access::requests::{Asker, can_see};
use crate::access::{Grants, OperationGrants};
use crate::approvals::feed::{self, FeedEvent, Interest, RequestEventKind, RequestFeed, Since};
use crate::approvals::loader::Loaders;
use crate::approvals::model::Status;
use crate::audit::service as audit_service;
use crate::error::{self, AppError};
use crate::kernel::Timestamp;
use crate::kernel::Viewer;
use crate::kernel::resolver::require_viewer;

#[derive(InputObject, Default, Clone)]
pub struct RequestEventFilter {
    /// Only requests under this policy key.
    policy: Option<String>,
    /// Only events that left the request in this status.
    status: Option<Status>,
    request_id: Option<async_graphql::ID>,
}

/// One change to a request.
pub struct RequestEvent(Arc<FeedEvent>);

#[Object]
impl RequestEvent {
    /// Pass as `after` to resume right after this event.
    async fn cursor(&self) -> String {
        self.0.sequence.to_string()
    }
    async fn kind(&self) -> RequestEventKind {
        self.0.kind
    }
    /// The request as this event left it.
    async fn request(&self) -> RequestNode {
        RequestNode::new(self.0.request.clone())
    }
    async fn actor(&self, ctx: &Context<'_>) -> error::Result<UserNode> {
        load_user(ctx, &self.0.actor).await
    }
    async fn occurred_at(&self) -> Timestamp {
        Timestamp(self.0.occurred_at)
    }
}

/// What the stream yields: an event, resolved once for every subscriber whose selection
/// renders to the same key (the GraphQL type is `RequestEvent`).
pub struct Delivery {
    event: Arc<FeedEvent>,
    selection: Arc<str>,
}

impl OutputType for Delivery {
    fn type_name() -> Cow<'static, str> {
        RequestEvent::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        RequestEvent::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<GqlValue> {
        let node = RequestEvent(self.event.clone());
        let cell = self.event.resolution(&self.selection);
        let shared = cell
            .get_or_init(|| async {
                // A resolution that reported errors is not shared: its errors go to the
                // subscriber who met them (the executor collects them per response), and
                // everyone else resolves for themselves.
                let errors_before = reported_errors(ctx);
                match node.resolve(ctx, field).await {
                    Ok(value) if reported_errors(ctx) == errors_before => Some(value),
                    _ => None,
                }
            })
            .await;
        match shared {
            Some(value) => Ok(value.clone()),
            None => RequestEvent(self.event.clone()).resolve(ctx, field).await,
        }
    }
}

fn reported_errors(ctx: &ContextSelectionSet<'_>) -> usize {
    ctx.query_env
        .errors
        .lock()
        .map_or(usize::MAX, |errors| errors.len())
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
    ) -> error::Result<impl Stream<Item = Delivery> + use<>> {
        let viewer = require_viewer(ctx)?.clone();
        let feed = ctx.data_unchecked::<Arc<RequestFeed>>().clone();
        // The operation's loaders serve every event; each event starts them empty.
        let loaders = ctx.data_unchecked::<Arc<Loaders>>().clone();
        let operation_grants = ctx.data_opt::<Arc<OperationGrants>>().cloned();
        let filter = filter.unwrap_or_default();
        let request_id = match &filter.request_id {
            None => None,
            Some(id) => Some(
                Uuid::parse_str(id)
                    .map_err(|_| AppError::bad_input("filter.requestId", "not a request id"))?,
            ),
        };
        let selection: Arc<str> = selection_key(ctx.field(), &viewer).into();
        let resuming = after.is_some();
        let mut cursor = match after {
            Some(cursor) => cursor
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| {
                    AppError::bad_input("after", "not a cursor from this subscription")
                })?,
            // Events committed from now on (one read per subscription, not per event).
            None => audit_service::head(feed.db()).await?.0,
        };
        // A cursor past the log's end (a typo, or a client that outlived a restore from
        // backup) would silently skip every event up to it. The feed may not have read the
        // newest commits yet, so the log's head decides.
        if resuming && cursor > feed.sequence() {
            let head = audit_service::head(feed.db()).await?.0;
            if cursor > head {
                return Err(AppError::bad_input(
                    "after",
                    format!(
                        "the cursor {cursor} is past the end of the log ({head}); subscribe \
                         without `after` or with requestEventsCursor"
                    ),
                ));
            }
        }
        let interest = Interest::new(
            &viewer.roles,
            filter.policy.clone(),
            filter.status.map(Status::as_str),
            request_id,
        );
        // Joined before the first look at the ring, so an event read after that look wakes
        // this subscriber if it is for them.
        let listener = feed.listen(&viewer.subject, interest.clone());
        Ok(async_stream::stream! {
            loop {
                let events = match feed.since(cursor) {
                    Since::Events(events) => events,
                    Since::Behind { from } => match catch_up(&feed, cursor, from).await {
                        Ok((events, reached)) => {
                            if events.is_empty() {
                                cursor = reached;
                                continue;
                            }
                            events
                        }
                        Err(err) => {
                            err.log_if_internal();
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            continue;
                        }
                    },
                };
                if events.is_empty() {
                    listener.woken().await;
                    cursor = listener.resume_from(cursor);
                    continue;
                }
                let grants = Arc::new(feed.grants().of(&viewer.roles));
                for event in events {
                    cursor = event.sequence;
                    if !deliverable(&viewer, &grants, &event, &interest) {
                        continue;
                    }
                    loaders.clear().await;
                    if let Some(operation_grants) = &operation_grants {
                        operation_grants.replace(grants.clone()).await;
                    }
                    yield Delivery { event, selection: selection.clone() };
                }
            }
        })
    }
}

/// A subscriber behind the ring reads the log itself, a page at a time: the events after
/// `cursor`, and how far that page reached (up to `from` once the log has nothing more
/// before it, where the ring takes over).
async fn catch_up(
    feed: &RequestFeed,
    cursor: i64,
    from: i64,
) -> Result<(Vec<Arc<FeedEvent>>, i64), AppError> {
    let page = feed::read_after(feed.db(), cursor, feed::PAGE).await?;
    let complete = (page.len() as u64) < feed::PAGE;
    let last = page.last().map_or(cursor, |e| e.sequence);
    let reached = if complete { last.max(from) } else { last };
    Ok((page.into_iter().map(Arc::new).collect(), reached))
}

/// Whether this viewer may receive the event now, and wants it. In memory: the grants
/// are the feed's snapshot, which follows every announced change.
fn deliverable(viewer: &Viewer, grants: &Grants, event: &FeedEvent, interest: &Interest) -> bool {
    let asker = Asker {
        subject: &viewer.subject,
        roles: &viewer.roles,
        grants,
    };
    interest.wants(event) && can_see(asker, &event.request, &event.deciders)
}

/// The subscriber's selection under `requestEvents`, written out with arguments and
/// directives resolved (fragments inlined), so equal keys mean equal payloads. A selection
/// that asks what the viewer may do is keyed by the viewer too.
fn selection_key(root: SelectionField<'_>, viewer: &Viewer) -> String {
    fn write(out: &mut String, field: SelectionField<'_>, personal: &mut bool) {
        if field.name() == "viewerCanApprove" {
            *personal = true;
        }
        let _ = write!(
            out,
            "{}:{}",
            field.alias().unwrap_or_default(),
            field.name()
        );
        if let Ok(arguments) = field.arguments() {
            for (name, value) in arguments {
                let _ = write!(out, "({name}:{value})");
            }
        }
        if let Ok(directives) = field.directives() {
            for directive in directives {
                let _ = write!(out, "@{}", directive.name.node);
                for (name, value) in &directive.arguments {
                    let _ = write!(out, "({}:{})", name.node, value.node);
                }
            }
        }
        out.push('{');
        for child in field.selection_set() {
            write(out, child, personal);
            out.push(' ');
        }
        out.push('}');
    }
    let mut key = String::new();
    let mut personal = false;
    for field in root.selection_set() {
        write(&mut key, field, &mut personal);
    }
    if personal {
        let _ = write!(key, "#{}{:?}", viewer.subject, viewer.roles);
    }
    key
}
