//! What a command runs under, and the audit event it records.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::clock::Clock;
use super::identity::Viewer;

/// Who runs a command, where it came from, and the clock it reads.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub actor: Viewer,
    /// The HTTP request id (`X-Request-Id`), for the audit log.
    pub correlation_id: Option<String>,
    /// The client's idempotency key, as sent; the command pipeline scopes and checks it.
    pub idempotency_key: Option<String>,
    pub clock: Clock,
    /// How long the key replays this command's outcome.
    pub key_retention: KeyRetention,
}

/// How long an idempotency key replays its outcome (`COUNTERSIGN_IDEMPOTENCY_RETENTION`);
/// the purge job deletes keys past it. Schema data, so every mutation reads the same.
#[derive(Clone, Copy, Debug)]
pub struct KeyRetention(pub chrono::Duration);

impl Default for KeyRetention {
    fn default() -> Self {
        Self(chrono::Duration::hours(24))
    }
}

impl CommandContext {
    /// What the system does on its own: no correlation id, no key.
    pub fn system(clock: Clock) -> Self {
        Self {
            actor: Viewer::system(),
            correlation_id: None,
            idempotency_key: None,
            clock,
            key_retention: KeyRetention::default(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The audit event for `action` on a subject, attributed to this context's actor, with
    /// its correlation id and idempotency key. Fill in before/after/reason as needed.
    pub fn event(
        &self,
        action: impl Into<String>,
        subject_type: &str,
        subject_id: impl Into<String>,
        summary: String,
    ) -> NewEvent {
        NewEvent {
            occurred_at: self.now(),
            actor_subject: self.actor.subject.clone(),
            actor_roles: self.actor.roles.clone(),
            action: action.into(),
            subject_type: subject_type.to_owned(),
            subject_id: subject_id.into(),
            request_id: None,
            before: None,
            after: None,
            reason: None,
            correlation_id: self.correlation_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
            summary,
        }
    }
}

/// What a state change records, before the audit chain assigns its sequence and hash.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub occurred_at: DateTime<Utc>,
    pub actor_subject: String,
    /// The roles the actor held when acting.
    pub actor_roles: Vec<String>,
    /// e.g. `request.submitted`, `request.approved`, `policy.upserted`.
    pub action: String,
    /// `request`, `policy`, `role`, `user`, `system`.
    pub subject_type: String,
    pub subject_id: String,
    /// Set for events about a request, so its trail is one index lookup.
    pub request_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The comment or reason given, if any.
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// One line a support agent can read.
    pub summary: String,
}

impl NewEvent {
    pub fn about_request(mut self, id: Uuid) -> Self {
        self.request_id = Some(id);
        self
    }

    pub fn before(mut self, before: Option<Value>) -> Self {
        self.before = before;
        self
    }

    pub fn after(mut self, after: Value) -> Self {
        self.after = Some(after);
        self
    }

    pub fn reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason.filter(|r| !r.is_empty());
        self
    }
}
