//! Users as first seen through verified tokens: subject, name, email, roles, last seen.
//!
//! Recording a sighting is best effort and throttled to once a minute per subject per
//! process: it feeds "who could approve this", never an authorization decision, so a
//! missed update costs nothing but freshness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use entity::user;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use serde_json::json;

use super::Viewer;
use crate::approvals::service::now;

const REFRESH_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Sightings {
    last: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl Sightings {
    pub async fn record(&self, db: &DatabaseConnection, viewer: &Viewer) {
        {
            let Ok(mut last) = self.last.lock() else {
                return;
            };
            if let Some((at, roles)) = last.get(&viewer.subject) {
                if at.elapsed() < REFRESH_EVERY && roles == &viewer.roles {
                    return;
                }
            }
            last.insert(
                viewer.subject.clone(),
                (Instant::now(), viewer.roles.clone()),
            );
        }
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
        let upsert = user::Entity::insert(row)
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
            .await;
        if let Err(err) = upsert {
            tracing::warn!(error = %err, "could not record a user sighting");
        }
    }
}
