//! Users as seen through verified tokens: their standing, and the sighting record.
//!
//! Every authenticated request and WebSocket connection reads the user's row ([`admit`]):
//! nothing about a user's standing is cached, so `disableUser` and `revokeSessions` take
//! effect on the very next request on every replica. The same read records the sighting
//! (name, email, roles, last seen) at most once a minute; that record only feeds "who could
//! approve this" and never authorizes anything.

use chrono::{DateTime, Duration, Utc};
use entity::user;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Set};
use serde_json::json;

use crate::error::AppError;
use crate::kernel::{Clock, Viewer};

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
    clock: &Clock,
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
        row.last_seen_at + SIGHTING_REFRESH < clock.now()
            || row.name != viewer.name
            || row.email != viewer.email
            || row.roles != json!(viewer.roles)
    });
    if stale {
        record_sighting(db, clock.now(), viewer).await?;
    }
    Ok(Ok(()))
}

async fn record_sighting(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    viewer: &Viewer,
) -> Result<(), AppError> {
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
