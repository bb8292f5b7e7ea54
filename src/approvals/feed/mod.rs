//! The request feed: one reader of the audit log per replica, however many subscribers.
//!
//! A background task reads each committed batch of request events once (one statement:
//! the events with the requests they are about) and keeps the newest [`RING`] of them in
//! memory. It judges each batch once per audience ([`audience`]: subscribers with the same
//! roles and filter) and wakes only the subscribers an event is for; a woken subscriber
//! takes what is newer than its own cursor from the ring. Nothing is queued per
//! subscriber, so a slow one costs no memory: once it falls behind the ring it reads the
//! log itself, in pages, exactly as a subscriber resuming from an old cursor does.
//!
//! The task reads when the bus says the log grew (here or on another replica) and once a
//! [`TICK`], which covers a lost notification. Authorization runs in memory against a
//! snapshot of every role's grants, reloaded when the bus announces a grant change and on
//! the same tick: no statement per subscriber per event.
//!
//! Sequence order is commit order (an append holds the chain head's lock until it
//! commits), so reading "after the last sequence seen" never skips a late commit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{audit_event, decision, request, role_permission};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::{OnceCell, broadcast::error::RecvError, watch};
use uuid::Uuid;

pub mod audience;

use audience::Audiences;
pub use audience::{Interest, Listener};

use crate::access::{Grant, Grants, grant_of};
use crate::approvals::model::Status;
use crate::audit::service as audit_service;
use crate::error::AppError;
use crate::events::bus::{BusEvent, EventBus};

/// How many events the ring keeps: a subscriber further behind reads the log.
pub const RING: usize = 4096;
/// How many log rows one read takes.
pub const PAGE: u64 = 200;
/// The read (and grants reload) that covers a lost notification.
const TICK: Duration = Duration::from_secs(1);

/// What happened to a request.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestEventKind {
    Submitted,
    StageApproved,
    Approved,
    Rejected,
    Cancelled,
    Expired,
}

impl RequestEventKind {
    pub const ACTIONS: [(&'static str, RequestEventKind); 6] = [
        ("request.submitted", Self::Submitted),
        ("request.stage_approved", Self::StageApproved),
        ("request.approved", Self::Approved),
        ("request.rejected", Self::Rejected),
        ("request.cancelled", Self::Cancelled),
        ("request.expired", Self::Expired),
    ];

    /// The name the outbox and webhooks carry (`APPROVED`, …), as in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::StageApproved => "STAGE_APPROVED",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ACTIONS
            .iter()
            .map(|(_, kind)| *kind)
            .find(|kind| kind.as_str() == name)
    }

    fn of_action(action: &str) -> Option<Self> {
        Self::ACTIONS
            .iter()
            .find(|(name, _)| *name == action)
            .map(|(_, kind)| *kind)
    }
}

/// A payload resolved once for every subscriber who selected the same fields; `None` when
/// it cannot be shared (its resolution reported errors, which belong to one response).
pub type Shared = Arc<OnceCell<Option<async_graphql::Value>>>;

/// One change to a request, as the event left it.
pub struct FeedEvent {
    pub sequence: i64,
    pub kind: RequestEventKind,
    /// The request with the state the event recorded (status, stage, version), not
    /// whatever it has become since.
    pub request: request::Model,
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    /// Who had decided the request when the event was read: they keep seeing it
    /// (`access::requests::can_see`).
    pub deciders: Vec<String>,
    /// Payloads resolved for this event, by selection (`graphql::subscription`). They go
    /// when the event leaves the ring and its last subscriber: never reused for another.
    resolved: Mutex<HashMap<Arc<str>, Shared>>,
}

impl FeedEvent {
    /// The cell for the payload of `selection`, shared by every subscriber asking for it.
    pub fn resolution(&self, selection: &Arc<str>) -> Shared {
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        resolved.entry(selection.clone()).or_default().clone()
    }
}

/// Every role's grants, as read at one moment.
#[derive(Default)]
pub struct RoleGrants(HashMap<String, Vec<Grant>>);

impl RoleGrants {
    pub fn of(&self, roles: &[String]) -> Grants {
        Grants::new(
            roles
                .iter()
                .filter_map(|role| self.0.get(role))
                .flatten()
                .cloned(),
        )
    }
}

/// What a subscriber at some cursor gets from the ring.
pub enum Since {
    /// Every event after the cursor (possibly none yet).
    Events(Vec<Arc<FeedEvent>>),
    /// The ring no longer reaches back to the cursor: read the log up to `from`.
    Behind { from: i64 },
}

/// Events after `from`, up to `to`, all of them.
struct Ring {
    from: i64,
    to: i64,
    events: VecDeque<Arc<FeedEvent>>,
}

pub struct RequestFeed {
    /// When the log was last read through (Unix milliseconds): the feed reads at least
    /// once a second, so an old value means this replica hears of nothing.
    last_read: std::sync::atomic::AtomicI64,
    db: DatabaseConnection,
    ring: RwLock<Ring>,
    grants: RwLock<Arc<RoleGrants>>,
    audiences: Arc<Audiences>,
}

impl RequestFeed {
    /// Reads the log's head and every role's grants, then follows the log in the
    /// background until the bus stops.
    pub async fn start(db: DatabaseConnection, bus: &Arc<EventBus>) -> Result<Arc<Self>, AppError> {
        let (head, _) = audit_service::head(&db).await?;
        let grants = load_grants(&db).await?;
        let feed = Arc::new(Self {
            last_read: std::sync::atomic::AtomicI64::new(chrono::Utc::now().timestamp_millis()),
            db,
            ring: RwLock::new(Ring {
                from: head,
                to: head,
                events: VecDeque::with_capacity(RING),
            }),
            grants: RwLock::new(Arc::new(grants)),
            audiences: Arc::default(),
        });
        let news = bus.subscribe();
        let stopping = bus.stopping();
        tokio::spawn(follow(feed.clone(), news, stopping));
        Ok(feed)
    }

    /// Joins the audience for `interest`: the feed wakes the listener when it reads an
    /// event for it. Join before looking at the ring, so nothing read meanwhile is missed.
    pub fn listen(&self, subject: &str, interest: Interest) -> Listener {
        let read_through = self
            .ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .to;
        self.audiences.join(subject, interest, read_through)
    }

    /// The last audit sequence this replica's feed has read: behind the chain head for
    /// long means it is not hearing of new events (`/metrics`: `countersign_feed_sequence`).
    pub fn sequence(&self) -> i64 {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .to
    }

    /// When the feed last read the log through, in Unix seconds (`/metrics`:
    /// `countersign_feed_last_read_timestamp_seconds`).
    pub fn last_read(&self) -> f64 {
        self.last_read.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0
    }

    /// How many distinct audiences are listening.
    pub fn audiences(&self) -> usize {
        self.audiences.len()
    }

    pub fn since(&self, cursor: i64) -> Since {
        let ring = self
            .ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cursor < ring.from {
            return Since::Behind { from: ring.from };
        }
        let start = ring.events.partition_point(|e| e.sequence <= cursor);
        Since::Events(ring.events.range(start..).cloned().collect())
    }

    pub fn grants(&self) -> Arc<RoleGrants> {
        self.grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Reads everything committed after the ring's end, page by page.
    async fn read_through(&self) -> Result<(), AppError> {
        loop {
            let to = self
                .ring
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .to;
            let page = read_after(&self.db, to, PAGE).await?;
            let full = page.len() as u64 == PAGE;
            let Some(last) = page.last().map(|e| e.sequence) else {
                self.last_read.store(
                    chrono::Utc::now().timestamp_millis(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                return Ok(());
            };
            let page: Vec<Arc<FeedEvent>> = page.into_iter().map(Arc::new).collect();
            {
                let mut ring = self
                    .ring
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for event in &page {
                    if ring.events.len() == RING {
                        if let Some(old) = ring.events.pop_front() {
                            ring.from = old.sequence;
                        }
                    }
                    ring.events.push_back(event.clone());
                }
                ring.to = last;
            }
            // After the ring holds the batch, so whoever is woken finds it there.
            self.audiences.judge(&page, &self.grants());
            if !full {
                self.last_read.store(
                    chrono::Utc::now().timestamp_millis(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                return Ok(());
            }
        }
    }

    async fn reload_grants(&self) -> Result<(), AppError> {
        let grants = Arc::new(load_grants(&self.db).await?);
        *self
            .grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = grants;
        Ok(())
    }
}

async fn follow(
    feed: Arc<RequestFeed>,
    mut news: tokio::sync::broadcast::Receiver<BusEvent>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        let (read, reload) = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => return,
            news = news.recv() => match news {
                Ok(event) => wants(&event),
                Err(RecvError::Lagged(_)) => (true, true),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => (true, true),
        };
        // Every commit announces itself, and they queue up while a read runs: one read
        // covers them all (under load, most reads would otherwise find nothing new).
        let (read, reload) = match drain(&mut news, read, reload) {
            Some(wanted) => wanted,
            None => return,
        };
        if reload {
            if let Err(err) = feed.reload_grants().await {
                err.log_if_internal();
            }
        }
        if read {
            if let Err(err) = feed.read_through().await {
                // The next notice or tick tries again from the same place.
                err.log_if_internal();
            }
        }
    }
}

/// What a notice asks of the feed: `(read the log, reload grants)`. Grants are reloaded
/// before the read, so an event committed after a revocation is never judged by the grants
/// from before it.
fn wants(event: &BusEvent) -> (bool, bool) {
    match event {
        BusEvent::AuditAppended => (true, false),
        BusEvent::GrantsChanged => (false, true),
        BusEvent::UserAccessChanged { .. } => (false, false),
    }
}

/// Folds the notices already queued into one `(read, reload)`; `None` once the bus closed.
fn drain(
    news: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    mut read: bool,
    mut reload: bool,
) -> Option<(bool, bool)> {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match news.try_recv() {
            Ok(event) => {
                let (more_read, more_reload) = wants(&event);
                read |= more_read;
                reload |= more_reload;
            }
            Err(TryRecvError::Lagged(_)) => (read, reload) = (true, true),
            Err(TryRecvError::Empty) => return Some((read, reload)),
            Err(TryRecvError::Closed) => return None,
        }
    }
}

/// Request events after `cursor`, in sequence order, each with the request as it left it:
/// one statement.
pub async fn read_after(
    db: &DatabaseConnection,
    cursor: i64,
    limit: u64,
) -> Result<Vec<FeedEvent>, AppError> {
    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::Sequence.gt(cursor))
        .filter(audit_event::Column::SubjectType.eq("request"))
        .filter(
            audit_event::Column::Action
                .is_in(RequestEventKind::ACTIONS.iter().map(|(action, _)| *action)),
        )
        .find_also_related(request::Entity)
        .order_by_asc(audit_event::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?;
    let deciders = deciders_of(db, rows.iter().map(|(event, _)| &event.subject_id)).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(event, row)| {
            let kind = RequestEventKind::of_action(&event.action)?;
            let request = as_of_event(row?, &event);
            Some(FeedEvent {
                sequence: event.sequence,
                kind,
                deciders: deciders.get(&request.id).cloned().unwrap_or_default(),
                request,
                actor: event.actor_subject,
                occurred_at: event.occurred_at,
                resolved: Mutex::default(),
            })
        })
        .collect())
}

/// The subjects who decided each of these requests, in one statement for a page.
async fn deciders_of<'a>(
    db: &DatabaseConnection,
    ids: impl Iterator<Item = &'a String>,
) -> Result<HashMap<Uuid, Vec<String>>, AppError> {
    let mut ids: Vec<Uuid> = ids.filter_map(|id| Uuid::parse_str(id).ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut by_request: HashMap<Uuid, Vec<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_request);
    }
    let rows = decision::Entity::find()
        .select_only()
        .column(decision::Column::RequestId)
        .column(decision::Column::ApproverSubject)
        .filter(decision::Column::RequestId.is_in(ids))
        .into_tuple::<(Uuid, String)>()
        .all(db)
        .await?;
    for (request, subject) in rows {
        by_request.entry(request).or_default().push(subject);
    }
    Ok(by_request)
}

async fn load_grants(db: &DatabaseConnection) -> Result<RoleGrants, AppError> {
    let mut by_role: HashMap<String, Vec<Grant>> = HashMap::new();
    for row in role_permission::Entity::find().all(db).await? {
        if let Some(grant) = grant_of(&row.action, row.policy_key) {
            by_role.entry(row.role).or_default().push(grant);
        }
    }
    Ok(RoleGrants(by_role))
}

fn as_of_event(mut as_of: request::Model, event: &audit_event::Model) -> request::Model {
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
