//! The event bus: an in-process broadcast on one node, PostgreSQL LISTEN/NOTIFY across
//! replicas, and a periodic check of the database that covers a lost notification.
//!
//! Publish only after the change committed, never from inside a transaction: a NOTIFY in
//! the business transaction serialises every commit behind one lock. One
//! LISTEN connection per replica, never one per subscriber.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

/// The PostgreSQL channel every replica listens on.
const CHANNEL: &str = "countersign_events";
/// How far back the fallback check looks, and how often it runs.
const FALLBACK_EVERY: Duration = Duration::from_secs(2);
const LOCAL_BUFFER: usize = 1024;

/// Something other parts of this process (and other replicas) must hear about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum BusEvent {
    /// A user was disabled, enabled or had their sessions revoked: open connections of
    /// theirs must re-check their standing now.
    UserAccessChanged { subject: String },
    /// New audit events committed: the request feed reads the log from where it is.
    /// Carries no sequence on purpose — it is coalesced, and the log is the truth.
    AuditAppended,
    /// A role was granted or lost a permission: whatever holds grants in memory (the
    /// request feed) reads them again before it judges another event.
    GrantsChanged,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The replica that published it, so it does not hear itself twice.
    origin: Uuid,
    event: BusEvent,
}

pub struct EventBus {
    /// Audit appends and grant changes: the request feed and the jobs follow these.
    local: broadcast::Sender<BusEvent>,
    /// The subjects whose access changed. Every open socket follows this channel and
    /// nothing else on the bus, so a decision wakes none of them.
    access: broadcast::Sender<String>,
    replica: Uuid,
    db: DatabaseConnection,
    /// Set on shutdown; the background tasks stop.
    stopping: watch::Sender<bool>,
    /// Wakes the task that tells other replicas about new audit events; many wake-ups
    /// between two runs of it become one NOTIFY.
    appended: Notify,
    /// Bumped before every word that authority changed (a user's access, a role's grants)
    /// reaches this process's followers, and whenever LISTEN connects or drops: what was
    /// read at an older value may be out of date ([`EventBus::authority_epoch`]).
    epoch: AtomicU64,
    /// Whether this replica hears the others (its LISTEN connection is up).
    listening: AtomicBool,
}

impl EventBus {
    pub fn new(db: DatabaseConnection) -> Arc<Self> {
        let (local, _) = broadcast::channel(LOCAL_BUFFER);
        let (access, _) = broadcast::channel(LOCAL_BUFFER);
        let (stopping, _) = watch::channel(false);
        Arc::new(Self {
            local,
            access,
            replica: Uuid::now_v7(),
            db,
            stopping,
            appended: Notify::new(),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        })
    }

    /// Every event but [`BusEvent::UserAccessChanged`] (see [`EventBus::access_changes`]).
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.local.subscribe()
    }

    /// The subjects of [`BusEvent::UserAccessChanged`], here and from other replicas.
    pub fn access_changes(&self) -> broadcast::Receiver<String> {
        self.access.subscribe()
    }

    /// Becomes `true` on shutdown: background work that follows the bus stops then.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Hands `event` to this process's followers of its kind.
    fn deliver(&self, event: BusEvent) {
        match event {
            BusEvent::UserAccessChanged { subject } => {
                self.epoch.fetch_add(1, Ordering::SeqCst);
                let _ = self.access.send(subject);
            }
            BusEvent::GrantsChanged => {
                self.epoch.fetch_add(1, Ordering::SeqCst);
                let _ = self.local.send(BusEvent::GrantsChanged);
            }
            BusEvent::AuditAppended => {
                let _ = self.local.send(BusEvent::AuditAppended);
            }
        }
    }

    /// Changes whenever authority may have changed since: compare the value read before a
    /// read of standing or grants with the value now to know whether that read may be
    /// kept. It changes on every `UserAccessChanged` and `GrantsChanged` (here or from
    /// another replica) and when this replica's LISTEN connection comes up or goes down.
    pub fn authority_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether news from other replicas reaches this one now (always false on SQLite,
    /// which has no channel between processes): only then may a read of authority be
    /// kept in memory at all.
    pub fn hears_replicas(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Tells this process and, on PostgreSQL, every other replica; call it after the
    /// commit. This process hears it before anything else happens, and this returns once
    /// the NOTIFY is sent: the caller's next request, here or on another replica, is judged
    /// by the news. The NOTIFY runs in a task of its own, so a request timeout that drops
    /// this future cannot cancel it. A failed NOTIFY is logged: the fallback check still
    /// delivers the news, and admission keeps nothing it read for more than a second.
    pub async fn announce(self: &Arc<Self>, event: BusEvent) {
        self.deliver(event.clone());
        let bus = Arc::clone(self);
        let sent = tokio::spawn(async move { bus.notify_replicas(event).await });
        if let Err(err) = sent.await {
            tracing::warn!(error = %err, "the NOTIFY task failed");
        }
    }

    /// New audit events committed. Subscribers here hear it at once; other replicas hear
    /// a coalesced NOTIFY from a background task, so a burst of commits costs one.
    pub fn audit_appended(&self) {
        let _ = self.local.send(BusEvent::AuditAppended);
        self.appended.notify_one();
    }

    async fn notify_replicas(&self, event: BusEvent) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let payload = match serde_json::to_string(&Envelope {
            origin: self.replica,
            event,
        }) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode a bus event");
                return;
            }
        };
        let notify = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), payload.into()],
        );
        if let Err(err) = self.db.execute_raw(notify).await {
            tracing::warn!(error = %err, "NOTIFY failed; the periodic check will cover it");
        }
    }

    /// Starts the background work: the LISTEN loop (PostgreSQL) and, with `periodic`, the
    /// checks that cover a lost notification. Returns once this replica listens, so
    /// nothing published after start-up is missed; if LISTEN cannot be set up now, it
    /// keeps trying in the background.
    pub async fn start(self: &Arc<Self>, database_url: &str, periodic: bool) {
        if self.db.get_database_backend() == DbBackend::Postgres {
            let first = match subscribe(database_url).await {
                Ok(listener) => Some(listener),
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN failed at start-up; retrying in the background");
                    None
                }
            };
            tokio::spawn(until_stopped(
                self.stopping.subscribe(),
                listen(self.clone(), database_url.to_owned(), first),
            ));
        }
        if periodic {
            tokio::spawn(until_stopped(
                self.stopping.subscribe(),
                fallback_check(self.clone()),
            ));
        }
        if self.db.get_database_backend() == DbBackend::Postgres {
            tokio::spawn(until_stopped(
                self.stopping.subscribe(),
                announce_appends(self.clone()),
            ));
        }
    }

    /// Stops the background work (before the database pool closes).
    pub fn stop(&self) {
        self.set_listening(false);
        let _ = self.stopping.send(true);
    }
}

async fn until_stopped(mut stopping: watch::Receiver<bool>, work: impl Future<Output = ()>) {
    tokio::select! {
        _ = stopping.wait_for(|stop| *stop) => {}
        () = work => {}
    }
}

async fn subscribe(database_url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.listen(CHANNEL).await?;
    tracing::debug!(channel = CHANNEL, "listening for other replicas");
    Ok(listener)
}

async fn listen(bus: Arc<EventBus>, database_url: String, mut listener: Option<PgListener>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let current = match listener.take() {
            Some(current) => current,
            None => match subscribe(&database_url).await {
                Ok(current) => current,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot LISTEN; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(200);
        bus.set_listening(true);
        let Err(err) = relay(&bus, current).await;
        bus.set_listening(false);
        tracing::warn!(error = %err, "LISTEN connection lost; reconnecting");
    }
}

/// Hands every notification from another replica to this process's subscribers.
async fn relay(
    bus: &EventBus,
    mut listener: PgListener,
) -> Result<std::convert::Infallible, sea_orm::sqlx::Error> {
    loop {
        // `try_recv`, not `recv`: `recv` reconnects a dropped connection silently, and
        // whatever was notified meanwhile is lost; `None` says so, and the epoch moves.
        let Some(notification) = listener.try_recv().await? else {
            tracing::warn!("LISTEN connection dropped; reconnecting");
            bus.set_listening(false);
            bus.set_listening(true);
            continue;
        };
        match serde_json::from_str::<Envelope>(notification.payload()) {
            Ok(envelope) if envelope.origin == bus.replica => {}
            Ok(envelope) => {
                bus.deliver(envelope.event);
            }
            Err(err) => tracing::warn!(error = %err, "ignoring an unreadable notification"),
        }
    }
}

/// Sends at most one "audit events appended" NOTIFY per short interval, however many
/// commits woke it.
async fn announce_appends(bus: Arc<EventBus>) {
    const COALESCE: Duration = Duration::from_millis(5);
    loop {
        bus.appended.notified().await;
        bus.notify_replicas(BusEvent::AuditAppended).await;
        tokio::time::sleep(COALESCE).await;
    }
}

/// Re-announces users whose access changed since the last check, in case a notification
/// was lost (a replica restarting, a dropped LISTEN connection).
///
/// It compares the set of users disabled or session-revoked in the last day with the
/// previous read rather than looking only at the seconds since the last tick: a change
/// committed late (a long transaction) or stamped by a skewed clock is still seen on the
/// next tick.
async fn fallback_check(bus: Arc<EventBus>) {
    let mut known: Option<HashMap<String, Standing>> = None;
    let mut ticker = tokio::time::interval(FALLBACK_EVERY);
    loop {
        ticker.tick().await;
        // A day back covers any commit however late or skewed, and keeps the read small
        // however many users were ever disabled.
        let recent = Utc::now() - chrono::Duration::days(1);
        let current = user::Entity::find()
            .select_only()
            .column(user::Column::Subject)
            .column(user::Column::DisabledAt)
            .column(user::Column::SessionsRevokedAt)
            .filter(
                Condition::any()
                    .add(user::Column::DisabledAt.gt(recent))
                    .add(user::Column::SessionsRevokedAt.gt(recent)),
            )
            .into_tuple::<(String, Option<DateTime<Utc>>, Option<DateTime<Utc>>)>()
            .all(&bus.db)
            .await;
        let current: HashMap<String, Standing> = match current {
            Ok(rows) => rows
                .into_iter()
                .map(|(subject, disabled, revoked)| (subject, (disabled, revoked)))
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "the fallback access check failed");
                continue;
            }
        };
        if let Some(known) = &known {
            // New or changed entries only: one leaving the window, or a user enabled again,
            // closes nothing.
            let changed = current
                .iter()
                .filter(|(subject, standing)| known.get(*subject) != Some(standing))
                .map(|(subject, _)| subject);
            for subject in changed {
                let subject = subject.clone();
                bus.deliver(BusEvent::UserAccessChanged { subject });
            }
        }
        known = Some(current);
    }
}

/// When a user was disabled and when their sessions were last revoked.
type Standing = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
