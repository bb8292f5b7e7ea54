//! Audit events as pure data, and the hash that chains them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a state change records, before the chain assigns its sequence and hash.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub actor_subject: String,
    /// The roles the actor held when acting.
    pub actor_roles: Vec<String>,
    /// e.g. `request.submitted`, `request.approved`, `policy.upserted`.
    pub action: String,
    /// `request`, `policy`, `role`, `user`, `webhook`.
    pub subject_type: String,
    pub subject_id: String,
    /// Set for events about a request, so its trail is one index lookup.
    pub request_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The comment or reason given, if any.
    pub reason: Option<String>,
    /// The HTTP request id (`X-Request-Id`).
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// One line a support agent can read.
    pub summary: String,
}

/// The exact bytes hashed for an event: every recorded field, in a fixed order, as JSON.
/// Changing this breaks every existing chain; it needs a migration of its own.
pub fn canonical(event: &NewEvent, sequence: i64, id: Uuid, occurred_at: DateTime<Utc>) -> String {
    json!([
        sequence,
        id.to_string(),
        occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        event.actor_subject,
        event.actor_roles,
        event.action,
        event.subject_type,
        event.subject_id,
        event.request_id.map(|id| id.to_string()),
        event.before,
        event.after,
        event.reason,
        event.correlation_id,
        event.idempotency_key,
        event.summary,
    ])
    .to_string()
}

/// `SHA-256(prev_hash || canonical event)`, hex-encoded.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_the_previous_hash_and_every_field() {
        let event = NewEvent {
            actor_subject: "bob".into(),
            actor_roles: vec!["finance".into()],
            action: "request.approved".into(),
            subject_type: "request".into(),
            subject_id: "r1".into(),
            request_id: None,
            before: None,
            after: Some(json!({"status": "APPROVED"})),
            reason: Some("ok".into()),
            correlation_id: None,
            idempotency_key: None,
            summary: "bob approved".into(),
        };
        let id = Uuid::now_v7();
        let at = Utc::now();
        let a = chain_hash("00", &canonical(&event, 1, id, at));
        assert_eq!(a, chain_hash("00", &canonical(&event, 1, id, at)));
        assert_ne!(a, chain_hash("01", &canonical(&event, 1, id, at)));
        let mut edited = event.clone();
        edited.reason = Some("ok!".into());
        assert_ne!(a, chain_hash("00", &canonical(&edited, 1, id, at)));
    }
}
