//! Letting a verified viewer in: their standing (disabled? sessions revoked?) and the
//! grants of their roles, answered from memory when the bus vouches for it.
//!
//! A read of the user's row and their roles' grants (one statement, [`users`]) is kept
//! for at most [`FRESH`], and only while this replica hears the others (its LISTEN
//! connection is up) and the bus has carried no word of changed authority since the read
//! began ([`EventBus::authority_epoch`]). `disableUser`, `revokeSessions` and the grant
//! commands announce after COMMIT; this replica hears its own announcement before the
//! command answers, so the caller's next request is judged afresh, and other replicas
//! hear the NOTIFY within milliseconds. A lost NOTIFY is covered by [`FRESH`]: nothing
//! read is used for longer. Without LISTEN (SQLite; PostgreSQL while the connection is
//! down) every admission reads the database, and a failed read refuses: access is never
//! granted because the database or the bus could not say no.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use entity::user;
use sea_orm::DatabaseConnection;
use serde_json::json;

use super::users::{self, Refusal, SIGHTING_REFRESH};
use crate::access::Grants;
use crate::error::AppError;
use crate::events::bus::EventBus;
use crate::kernel::{Clock, Viewer};

/// The longest a read of standing and grants is used: the bound on how late a revocation
/// takes effect when its notification is lost.
pub const FRESH: Duration = Duration::from_secs(1);
/// Beyond this many remembered viewers, the stale ones are forgotten.
const MAX_KNOWN: usize = 10_000;

/// One viewer's standing and grants, as read at `epoch`.
struct Known {
    roles: Vec<String>,
    row: Option<user::Model>,
    grants: Grants,
    epoch: u64,
    read_at: Instant,
}

pub struct Admission {
    db: DatabaseConnection,
    bus: Arc<EventBus>,
    known: Mutex<HashMap<String, Known>>,
    /// When a full memory was last swept: at most once a [`FRESH`], so a crowd of fresh
    /// callers costs one sweep, not one per miss.
    swept_at: Mutex<Option<Instant>>,
}

impl Admission {
    pub fn new(db: DatabaseConnection, bus: Arc<EventBus>) -> Self {
        Self {
            db,
            bus,
            known: Mutex::default(),
            swept_at: Mutex::default(),
        }
    }

    /// Lets a verified viewer in with the grants of their roles, or refuses them; records
    /// the sighting when it is stale. A database failure is an internal error, never a
    /// silent admission.
    pub async fn admit(
        &self,
        clock: &Clock,
        viewer: &Viewer,
    ) -> Result<Result<Grants, Refusal>, AppError> {
        let (row, grants) = match self.recall(viewer) {
            Some(known) => known,
            None => {
                // Read before the statement: a change announced while it runs makes the
                // result unusable beyond this one admission.
                let (epoch, read_at) = (self.bus.authority_epoch(), Instant::now());
                let (row, grants) = users::standing_and_grants(&self.db, viewer).await?;
                self.remember(viewer, (epoch, read_at), &row, &grants);
                (row, grants)
            }
        };
        if let Some(row) = &row {
            if let Err(refusal) = users::standing(row, viewer.issued_at) {
                return Ok(Err(refusal));
            }
        }
        let stale = row.as_ref().is_none_or(|row| {
            row.last_seen_at + SIGHTING_REFRESH < clock.now()
                || row.name != viewer.name
                || row.email != viewer.email
                || row.roles != json!(viewer.roles)
        });
        if stale {
            users::record_sighting(&self.db, clock.now(), viewer).await?;
            // The next admission reads the row it wrote, rather than recording it again.
            self.lock().remove(&viewer.subject);
        }
        Ok(Ok(grants))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn usable(&self, known: &Known, epoch: u64) -> bool {
        known.epoch == epoch && known.read_at.elapsed() < FRESH
    }

    fn recall(&self, viewer: &Viewer) -> Option<(Option<user::Model>, Grants)> {
        if !self.bus.hears_replicas() {
            return None;
        }
        let epoch = self.bus.authority_epoch();
        let known = self.lock();
        let entry = known.get(&viewer.subject)?;
        (entry.roles == viewer.roles && self.usable(entry, epoch))
            .then(|| (entry.row.clone(), entry.grants.clone()))
    }

    fn remember(
        &self,
        viewer: &Viewer,
        (epoch, read_at): (u64, Instant),
        row: &Option<user::Model>,
        grants: &Grants,
    ) {
        if !self.bus.hears_replicas() {
            return;
        }
        let mut known = self.lock();
        if known.len() >= MAX_KNOWN && !known.contains_key(&viewer.subject) {
            let mut swept_at = self.swept_at.lock().unwrap_or_else(PoisonError::into_inner);
            if swept_at.is_none_or(|at| at.elapsed() >= FRESH) {
                *swept_at = Some(Instant::now());
                let now = self.bus.authority_epoch();
                known.retain(|_, entry| self.usable(entry, now));
            }
            // Still full of fresh callers: this one is read again next time.
            if known.len() >= MAX_KNOWN {
                return;
            }
        }
        known.insert(
            viewer.subject.clone(),
            Known {
                roles: viewer.roles.clone(),
                row: row.clone(),
                grants: grants.clone(),
                epoch,
                read_at,
            },
        );
    }
}
