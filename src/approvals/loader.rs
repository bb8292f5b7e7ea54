//! DataLoaders for the nested fields of a page of requests: one query per kind of thing,
//! however many rows the page has. A fresh set is made for every GraphQL operation, so
//! nothing is cached across requests.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{decision, policy, policy_stage, user};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::error::AppError;

/// Every loader of one operation.
pub struct Loaders {
    pub policies: DataLoader<PolicyLoader>,
    pub stages: DataLoader<StagesLoader>,
    pub decisions: DataLoader<DecisionsLoader>,
    pub users: DataLoader<UserLoader>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection) -> Self {
        Self {
            policies: DataLoader::new(PolicyLoader(db.clone()), tokio::spawn),
            stages: DataLoader::new(StagesLoader(db.clone()), tokio::spawn),
            decisions: DataLoader::new(DecisionsLoader(db.clone()), tokio::spawn),
            users: DataLoader::new(UserLoader(db.clone()), tokio::spawn),
        }
    }
}

/// A loader failure as the API reports it (masked, logged).
pub fn loader_error(err: Arc<DbErr>) -> AppError {
    AppError::Internal(anyhow::anyhow!("loading related rows: {err}"))
}

pub struct PolicyLoader(DatabaseConnection);

impl Loader<Uuid> for PolicyLoader {
    type Value = policy::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = policy::Entity::find()
            .filter(policy::Column::Id.is_in(ids.iter().copied()))
            .all(&self.0)
            .await?;
        Ok(rows.into_iter().map(|p| (p.id, p)).collect())
    }
}

/// Stages of a policy version, in order, keyed by policy id.
pub struct StagesLoader(DatabaseConnection);

impl Loader<Uuid> for StagesLoader {
    type Value = Vec<policy_stage::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = policy_stage::Entity::find()
            .filter(policy_stage::Column::PolicyId.is_in(ids.iter().copied()))
            .order_by_asc(policy_stage::Column::Position)
            .all(&self.0)
            .await?;
        let mut by_policy: HashMap<Uuid, Self::Value> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for row in rows {
            by_policy.entry(row.policy_id).or_default().push(row);
        }
        Ok(by_policy)
    }
}

/// Decisions on a request, oldest first, keyed by request id.
pub struct DecisionsLoader(DatabaseConnection);

impl Loader<Uuid> for DecisionsLoader {
    type Value = Vec<decision::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = decision::Entity::find()
            .filter(decision::Column::RequestId.is_in(ids.iter().copied()))
            .order_by_asc(decision::Column::CreatedAt)
            .order_by_asc(decision::Column::Id)
            .all(&self.0)
            .await?;
        let mut by_request: HashMap<Uuid, Self::Value> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for row in rows {
            by_request.entry(row.request_id).or_default().push(row);
        }
        Ok(by_request)
    }
}

/// Known users by subject.
pub struct UserLoader(DatabaseConnection);

impl Loader<String> for UserLoader {
    type Value = user::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, subjects: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let rows = user::Entity::find()
            .filter(user::Column::Subject.is_in(subjects.iter().cloned()))
            .all(&self.0)
            .await?;
        Ok(rows.into_iter().map(|u| (u.subject.clone(), u)).collect())
    }
}
