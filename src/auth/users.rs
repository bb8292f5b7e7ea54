//! Users as seen through verified tokens, and the admin commands that end their access.
//!
//! Every authenticated request and WebSocket connection reads the user's row ([`admit`]):
//! nothing about a user's standing is cached, so `disableUser` and `revokeSessions` take
//! effect on the very next request on every replica. The same read records the sighting
//! (name, email, roles, last seen) at most once a minute; that record only feeds "who could
//! approve this" and never authorizes anything.

use chrono::{DateTime, Duration, Utc};
use entity::user;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, Set,
};
use serde_json::{Value, json};

use super::Viewer;
use crate::approvals::service::{CommandContext, now};
use crate::audit::{self, NewEvent};
use crate::error::AppError;
use crate::idempotency::{self, Claim, CommandKey};
use crate::permissions::Action;
use crate::permissions::service::authorize;

/// How stale `last_seen_at` may get before a request refreshes it.
const SIGHTING_REFRESH: Duration = Duration::seconds(60);

/// Why a verified token is nevertheless refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the user is disabled")]
    Disabled,
    #[error("the token was issued before the user's sessions were revoked")]
    SessionRevoked,
}

/// Whether `row` still lets a token issued at `issued_at` in.
pub fn standing(row: &user::Model, issued_at: Option<DateTime<Utc>>) -> Result<(), Refusal> {
    if row.disabled_at.is_some() {
        return Err(Refusal::Disabled);
    }
    if let Some(revoked_at) = row.sessions_revoked_at {
        // Tokens carry whole seconds; a token from the same second as the revocation is
        // refused too, on purpose: when in doubt, the revocation wins.
        match issued_at {
            Some(iat) if iat > revoked_at => {}
            _ => return Err(Refusal::SessionRevoked),
        }
    }
    Ok(())
}

/// Lets a verified viewer in, or refuses them; records the sighting when it is stale.
/// A database failure here is an internal error, never a silent admission.
pub async fn admit(
    db: &DatabaseConnection,
    viewer: &Viewer,
) -> Result<Result<(), Refusal>, AppError> {
    let row = user::Entity::find_by_id(viewer.subject.clone())
        .one(db)
        .await?;
    if let Some(row) = &row {
        if let Err(refusal) = standing(row, viewer.issued_at) {
            return Ok(Err(refusal));
        }
    }
    let stale = row.as_ref().is_none_or(|row| {
        row.last_seen_at + SIGHTING_REFRESH < Utc::now()
            || row.name != viewer.name
            || row.email != viewer.email
            || row.roles != json!(viewer.roles)
    });
    if stale {
        record_sighting(db, viewer).await?;
    }
    Ok(Ok(()))
}

async fn record_sighting(db: &DatabaseConnection, viewer: &Viewer) -> Result<(), AppError> {
    let now = now();
    let row = user::ActiveModel {
        subject: Set(viewer.subject.clone()),
        name: Set(viewer.name.clone()),
        email: Set(viewer.email.clone()),
        roles: Set(json!(viewer.roles)),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
        disabled_at: Set(None),
        disabled_reason: Set(None),
        sessions_revoked_at: Set(None),
    };
    // Only the profile columns: a sighting must never clear a disable or a revocation.
    user::Entity::insert(row)
        .on_conflict(
            OnConflict::column(user::Column::Subject)
                .update_columns([
                    user::Column::Name,
                    user::Column::Email,
                    user::Column::Roles,
                    user::Column::LastSeenAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// What an admin does to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange {
    Disable,
    Enable,
    RevokeSessions,
}

impl UserChange {
    fn operation(self) -> &'static str {
        match self {
            Self::Disable => "disableUser",
            Self::Enable => "enableUser",
            Self::RevokeSessions => "revokeSessions",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::Disable => "user.disabled",
            Self::Enable => "user.enabled",
            Self::RevokeSessions => "user.sessions_revoked",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Disable => "disabled",
            Self::Enable => "enabled",
            Self::RevokeSessions => "revoked the sessions of",
        }
    }
}

/// Disables, enables or revokes the sessions of `subject`. Admins (`access.manage`) only;
/// audited with the reason. A subject never seen before gets a row, so an account can be
/// shut before its first request.
pub async fn change_user(
    db: &DatabaseConnection,
    viewer: &Viewer,
    context: &CommandContext,
    change: UserChange,
    subject: &str,
    reason: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<user::Model, AppError> {
    let subject = subject.trim();
    if subject.is_empty() || subject.len() > 255 {
        return Err(AppError::bad_input(
            "subject",
            "subject must be 1 to 255 characters",
        ));
    }
    let reason = reason.map(str::trim).unwrap_or_default().to_owned();
    if change != UserChange::Enable && reason.is_empty() {
        return Err(AppError::bad_input(
            "reason",
            "say why: reason must not be empty",
        ));
    }
    if change != UserChange::Enable && subject == viewer.subject {
        return Err(AppError::bad_input(
            "subject",
            "you cannot lock yourself out; ask another admin",
        ));
    }
    let key = CommandKey::parse(
        &viewer.subject,
        idempotency_key,
        change.operation(),
        &json!({ "subject": subject, "reason": reason }),
    )?;

    let result = crate::write_transaction!(db, |txn| {
        if let Some(key) = &key {
            if let Claim::Replay(_) = idempotency::claim(txn, key).await? {
                return find_user(txn, subject).await;
            }
        }
        authorize(txn, viewer, Action::AccessManage, None).await?;
        let before = user::Entity::find_by_id(subject.to_owned())
            .one(txn)
            .await?;
        let now = now();
        let after = match before.clone() {
            Some(row) => {
                let mut active: user::ActiveModel = row.into();
                apply(&mut active, change, &reason, now);
                active.update(txn).await?
            }
            None => {
                let mut active = user::ActiveModel {
                    subject: Set(subject.to_owned()),
                    name: Set(None),
                    email: Set(None),
                    roles: Set(json!([])),
                    first_seen_at: Set(now),
                    last_seen_at: Set(now),
                    disabled_at: Set(None),
                    disabled_reason: Set(None),
                    sessions_revoked_at: Set(None),
                };
                apply(&mut active, change, &reason, now);
                active.insert(txn).await?
            }
        };
        if let Some(key) = &key {
            idempotency::complete(txn, key, json!({ "subject": subject })).await?;
        }
        audit::service::append(
            txn,
            NewEvent {
                actor_subject: viewer.subject.clone(),
                actor_roles: viewer.roles.clone(),
                action: change.action().into(),
                subject_type: "user".into(),
                subject_id: subject.to_owned(),
                request_id: None,
                before: before.as_ref().map(user_snapshot),
                after: Some(user_snapshot(&after)),
                reason: (!reason.is_empty()).then(|| reason.clone()),
                correlation_id: context.correlation_id.clone(),
                idempotency_key: key.as_ref().map(|k| k.key.clone()),
                summary: format!(
                    "{} {} {subject}{}",
                    viewer.subject,
                    change.verb(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                ),
            },
        )
        .await?;
        Ok(after)
    });
    let attempted = match change {
        UserChange::Disable => "user.disable",
        UserChange::Enable => "user.enable",
        UserChange::RevokeSessions => "user.revoke_sessions",
    };
    audit::service::audit_refusal(
        result, db, viewer, context, attempted, "user", subject, None,
    )
    .await
}

fn apply(active: &mut user::ActiveModel, change: UserChange, reason: &str, now: DateTime<Utc>) {
    match change {
        UserChange::Disable => {
            active.disabled_at = Set(Some(now));
            active.disabled_reason = Set(Some(reason.to_owned()));
        }
        UserChange::Enable => {
            active.disabled_at = Set(None);
            active.disabled_reason = Set(None);
        }
        UserChange::RevokeSessions => {
            active.sessions_revoked_at = Set(Some(now));
        }
    }
}

async fn find_user(txn: &DatabaseTransaction, subject: &str) -> Result<user::Model, AppError> {
    user::Entity::find_by_id(subject.to_owned())
        .one(txn)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("replayed user {subject} vanished")))
}

pub fn user_snapshot(row: &user::Model) -> Value {
    json!({
        "subject": row.subject,
        "disabledAt": row.disabled_at,
        "disabledReason": row.disabled_reason,
        "sessionsRevokedAt": row.sessions_revoked_at,
    })
}

/// The user row, for the API.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    subject: &str,
) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find_by_id(subject.to_owned()).one(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> user::Model {
        let now = Utc::now();
        user::Model {
            subject: "bob".into(),
            name: None,
            email: None,
            roles: json!([]),
            first_seen_at: now,
            last_seen_at: now,
            disabled_at: None,
            disabled_reason: None,
            sessions_revoked_at: None,
        }
    }

    #[test]
    fn a_disabled_user_is_refused() {
        let mut user = row();
        user.disabled_at = Some(Utc::now());
        assert_eq!(standing(&user, Some(Utc::now())), Err(Refusal::Disabled));
    }

    #[test]
    fn only_tokens_issued_after_a_revocation_pass() {
        let mut user = row();
        let revoked = Utc::now();
        user.sessions_revoked_at = Some(revoked);
        assert_eq!(
            standing(&user, Some(revoked - Duration::seconds(5))),
            Err(Refusal::SessionRevoked)
        );
        assert_eq!(standing(&user, Some(revoked)), Err(Refusal::SessionRevoked));
        assert_eq!(standing(&user, None), Err(Refusal::SessionRevoked));
        assert_eq!(
            standing(&user, Some(revoked + Duration::seconds(1))),
            Ok(())
        );
    }
}
