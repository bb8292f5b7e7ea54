//! Audit events as pure data, and the hash that chains them.

use chrono::SecondsFormat;
use entity::audit_event;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::kernel::NewEvent;

/// `event` as the row that follows `prev_hash` at `sequence`, hashed: the one way an event
/// joins the chain (the appender and the bench's seeder both build rows with it).
pub fn link(event: NewEvent, sequence: i64, id: Uuid, prev_hash: &str) -> audit_event::Model {
    let mut row = audit_event::Model {
        sequence,
        id,
        occurred_at: event.occurred_at,
        actor_subject: event.actor_subject,
        actor_roles: json!(event.actor_roles),
        action: event.action,
        subject_type: event.subject_type,
        subject_id: event.subject_id,
        request_id: event.request_id,
        before: event.before,
        after: event.after,
        reason: event.reason,
        correlation_id: event.correlation_id,
        idempotency_key: event.idempotency_key,
        summary: event.summary,
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    row.hash = chain_hash(prev_hash, &canonical(&row));
    row
}

/// The exact bytes hashed for an event: every recorded field except the hashes, in a fixed
/// order, as JSON with object keys sorted (so a database that reorders JSON keys, as
/// PostgreSQL's jsonb does, reads back the same bytes). Changing this breaks every
/// existing chain.
pub fn canonical(event: &audit_event::Model) -> String {
    sorted(&json!([
        event.sequence,
        event.id.to_string(),
        event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
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
    ]))
    .to_string()
}

/// `value` with every object's keys in sorted order, whatever serde_json's map type.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// `SHA-256(prev_hash || canonical event)`, hex-encoded.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// The `prev_hash` of the first audit event: 64 zeros, the width of a SHA-256 hex digest.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event() -> audit_event::Model {
        audit_event::Model {
            sequence: 1,
            id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            actor_subject: "bob".into(),
            actor_roles: json!(["finance"]),
            action: "request.approved".into(),
            subject_type: "request".into(),
            subject_id: "r1".into(),
            request_id: None,
            before: None,
            after: Some(json!({"status": "APPROVED", "amount": "1.00"})),
            reason: Some("ok".into()),
            correlation_id: None,
            idempotency_key: None,
            summary: "bob approved".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn the_hash_depends_on_the_previous_hash_and_every_field() {
        let event = event();
        let a = chain_hash("00", &canonical(&event));
        assert_eq!(a, chain_hash("00", &canonical(&event)));
        assert_ne!(a, chain_hash("01", &canonical(&event)));
        let mut edited = event.clone();
        edited.reason = Some("ok!".into());
        assert_ne!(a, chain_hash("00", &canonical(&edited)));
        let mut renumbered = event.clone();
        renumbered.sequence = 2;
        assert_ne!(a, chain_hash("00", &canonical(&renumbered)));
    }

    #[test]
    fn key_order_inside_json_does_not_change_the_hash() {
        let mut one = event();
        let mut two = event();
        one.after = Some(serde_json::from_str(r#"{"a":1,"b":{"y":2,"x":1}}"#).unwrap());
        two.after = Some(serde_json::from_str(r#"{"b":{"x":1,"y":2},"a":1}"#).unwrap());
        two.id = one.id;
        two.occurred_at = one.occurred_at;
        assert_eq!(canonical(&one), canonical(&two));
    }
}
