//! Users as seen through verified tokens: their standing, and the sighting record.
//!
//! The user's row and the grants of the token's roles are read in one statement
//! ([`standing_and_grants`]), which admission (`super::admission`) keeps in memory only
//! as long as the bus vouches for it. The sighting (name, email, roles, last seen) is
//! recorded at most once a minute; that record only feeds "who could approve this" and
//! never authorizes anything.

use chrono::{DateTime, Duration, Utc};
use entity::{role_permission, user};
use sea_orm::sea_query::{Alias, Expr, JoinType, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, Iden, Iterable,
    Set,
};
use serde_json::json;

use crate::access::{Grants, grant_of};
use crate::error::AppError;
use crate::kernel::Viewer;

/// How stale `last_seen_at` may get before a request refreshes it.
pub(super) const SIGHTING_REFRESH: Duration = Duration::seconds(60);

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
        // Tokens carry whole seconds, and an `iat` up to the leeway ahead of our clock is
        // accepted: a token stamped that far ahead of the revocation may have been issued
        // before it, so it is refused too (signing in again waits out the leeway). When in
        // doubt, the revocation wins.
        match issued_at {
            Some(iat) if iat > revoked_at + super::model::LEEWAY => {}
            _ => return Err(Refusal::SessionRevoked),
        }
    }
    Ok(())
}

/// The user's row (if they were seen before) and the grants of the token's roles, in one
/// statement: one row per grant (at least one), the user's columns on each.
pub(super) async fn standing_and_grants(
    db: &DatabaseConnection,
    viewer: &Viewer,
) -> Result<(Option<user::Model>, Grants), AppError> {
    const USER: &str = "u_";
    let mut query = Query::select();
    for column in user::Column::iter() {
        query.expr_as(
            Expr::col((user::Entity, column)),
            Alias::new(format!("{USER}{}", column.to_string())),
        );
    }
    query
        .column((role_permission::Entity, role_permission::Column::Action))
        .column((role_permission::Entity, role_permission::Column::PolicyKey))
        .from_subquery(
            Query::select().expr(Expr::val(1)).to_owned(),
            Alias::new("one"),
        )
        .join(
            JoinType::LeftJoin,
            user::Entity,
            user::Column::Subject.eq(viewer.subject.clone()),
        )
        .join(
            JoinType::LeftJoin,
            role_permission::Entity,
            role_permission::Column::Role.is_in(viewer.roles.iter().cloned()),
        );
    let rows = db
        .query_all_raw(db.get_database_backend().build(&query))
        .await?;
    let mut user = None;
    let mut grants = Vec::new();
    for row in &rows {
        // Decoded strictly: a row that cannot be read is an error, never "no such user".
        let subject: Option<String> = row.try_get("", &format!("{USER}subject"))?;
        if user.is_none() && subject.is_some() {
            user = Some(user::Model::from_query_result(row, USER)?);
        }
        let action: Option<String> = row.try_get("", "action")?;
        let policy: Option<String> = row.try_get("", "policy_key")?;
        grants.extend(action.and_then(|action| grant_of(&action, policy)));
    }
    Ok((user, Grants::new(grants)))
}

pub(super) async fn record_sighting(
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
        // Stamped ahead of the revocation by less than the accepted skew.
        assert_eq!(
            standing(&user, Some(revoked + Duration::seconds(20))),
            Err(Refusal::SessionRevoked)
        );
        assert_eq!(
            standing(&user, Some(revoked + Duration::seconds(31))),
            Ok(())
        );
    }
}
