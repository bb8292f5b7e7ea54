//! DataLoaders for the nested fields of a page of requests: one query per kind of thing,
//! however many rows the page has.
//!
//! A fresh set is made for every GraphQL operation (see `graphql::PerOperationLoaders`), so
//! their caches never outlive the operation and never serve another request stale data.
//! List resolvers [`prefetch`] a page's related rows in one round, so the statement count
//! does not depend on how the executor happens to time its batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use chrono::{DateTime, Utc};
use entity::{audit_event, decision, policy, policy_stage, request, user};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::access::grants::grants_by_role;
use crate::access::{Grant, Grants};
use crate::approvals::policies::PolicyVersion;
use crate::error::AppError;
use crate::kernel::page::escape_like;
use crate::telemetry;

/// Every loader of one operation.
pub struct Loaders {
    pub policies: DataLoader<PolicyLoader, HashMapCache>,
    pub stages: DataLoader<StagesLoader, HashMapCache>,
    pub decisions: DataLoader<DecisionsLoader, HashMapCache>,
    pub users: DataLoader<UserLoader, HashMapCache>,
    pub audit_trails: DataLoader<AuditTrailLoader, HashMapCache>,
    /// Known, enabled users whose last token carried the role.
    pub role_holders: DataLoader<RoleHoldersLoader, HashMapCache>,
    /// What the role may do.
    pub role_grants: DataLoader<RoleGrantsLoader, HashMapCache>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection) -> Self {
        fn cached<T>(loader: T) -> DataLoader<T, HashMapCache>
        where
            T: Send + Sync + 'static,
        {
            // In the operation's span too, so a batch's SQL shows beneath it in traces.
            let spawn = |batch| {
                tokio::spawn(tracing::Instrument::in_current_span(
                    telemetry::in_current_operation(batch),
                ))
            };
            DataLoader::with_cache(loader, spawn, HashMapCache::default())
        }
        Self {
            policies: cached(PolicyLoader(db.clone())),
            stages: cached(StagesLoader(db.clone())),
            decisions: cached(DecisionsLoader(db.clone())),
            users: cached(UserLoader(db.clone())),
            audit_trails: cached(AuditTrailLoader(db.clone())),
            role_holders: cached(RoleHoldersLoader(db.clone())),
            role_grants: cached(RoleGrantsLoader(db.clone())),
        }
    }

    /// Forgets everything loaded so far. A subscription calls it before each event, so
    /// every event is resolved against the database as it is then (and the caches do not
    /// grow for the life of the subscription).
    pub async fn clear(&self) {
        self.policies.clear::<Uuid>();
        self.stages.clear::<Uuid>();
        self.decisions.clear::<Uuid>();
        self.users.clear::<String>();
        self.audit_trails.clear::<Uuid>();
        self.role_holders.clear::<String>();
        self.role_grants.clear::<String>();
    }
}

/// What a page's prefetch loaded, by key; a key that is absent was not loaded. The page's
/// fields are answered from it in memory (`graphql/plain.rs`).
pub struct Related {
    pub policies: HashMap<Uuid, Arc<policy::Model>>,
    pub stages: HashMap<Uuid, Arc<Vec<policy_stage::Model>>>,
    pub decisions: HashMap<Uuid, Arc<Vec<decision::Model>>>,
    pub users: HashMap<String, Option<Arc<user::Model>>>,
    /// The viewer's grants for this operation, and the moment the page was read.
    pub grants: Arc<Grants>,
    pub now: DateTime<Utc>,
}

impl Related {
    pub fn policy(&self, id: Uuid) -> Option<PolicyVersion> {
        Some(PolicyVersion {
            policy: self.policies.get(&id)?.clone(),
            stages: self.stages.get(&id)?.clone(),
        })
    }
}

/// Policy versions this server has read, by id. A version never changes once written (an
/// edit is a new version; triggers refuse UPDATE and DELETE, migration
/// `…000007_policy_versions_immutable`), so what was read stays true: a page reads only the
/// versions it has not seen, and usually none.
#[derive(Default)]
pub struct PolicyVersions(std::sync::Mutex<HashMap<Uuid, PolicyVersion>>);

impl PolicyVersions {
    /// Versions are few (one per policy edit); this only bounds a pathological database.
    const MAX: usize = 10_000;

    fn known(&self, ids: &[Uuid]) -> (Vec<PolicyVersion>, Vec<Uuid>) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut known = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match map.get(id) {
                Some(version) => known.push(version.clone()),
                None => missing.push(*id),
            }
        }
        (known, missing)
    }

    fn remember(&self, versions: &[PolicyVersion]) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() + versions.len() > Self::MAX {
            map.clear();
        }
        for version in versions {
            map.insert(version.policy.id, version.clone());
        }
    }
}

/// The page's policy versions: those this server knows, and the rest read (policies and
/// their stages, one statement each) and remembered. Both go into the loaders' caches for
/// the fields answered by the derived resolvers.
async fn policy_versions(
    ctx: &Context<'_>,
    loaders: &Loaders,
    ids: &[Uuid],
) -> Result<Vec<PolicyVersion>, AppError> {
    let memory = ctx.data_opt::<Arc<PolicyVersions>>();
    let (mut versions, missing) = match memory {
        Some(memory) => memory.known(ids),
        None => (Vec::new(), ids.to_vec()),
    };
    loaders
        .policies
        .feed_many(versions.iter().map(|v| (v.policy.id, v.policy.clone())))
        .await;
    loaders
        .stages
        .feed_many(versions.iter().map(|v| (v.policy.id, v.stages.clone())))
        .await;
    if !missing.is_empty() {
        let (policies, stages) = tokio::join!(
            load_now(&loaders.policies, &missing),
            load_now(&loaders.stages, &missing)
        );
        let (policies, mut stages) = (policies?, stages?);
        let read: Vec<PolicyVersion> = policies
            .into_values()
            .map(|policy| PolicyVersion {
                stages: stages.remove(&policy.id).unwrap_or_default(),
                policy,
            })
            .collect();
        if let Some(memory) = memory {
            memory.remember(&read);
        }
        versions.extend(read);
    }
    Ok(versions)
}

/// Loads what the selected fields of a page of requests will need, one statement per kind,
/// before the fields resolve; they are then answered from what it returns, or from the
/// loaders' caches, which it fills too.
pub async fn prefetch(
    ctx: &Context<'_>,
    rows: &[&request::Model],
    grants: Arc<Grants>,
    now: DateTime<Utc>,
) -> Result<Option<Arc<Related>>, AppError> {
    let Some(loaders) = ctx.data_opt::<Arc<Loaders>>() else {
        return Ok(None);
    };
    let mut related = Related {
        policies: HashMap::new(),
        stages: HashMap::new(),
        decisions: HashMap::new(),
        users: HashMap::new(),
        grants,
        now,
    };
    if rows.is_empty() {
        return Ok(Some(Arc::new(related)));
    }
    let node = ctx.look_ahead().field("edges").field("node");
    let wants = |fields: &[&str]| fields.iter().any(|f| node.field(f).exists());
    let needs_policy = wants(&["policy", "stages", "viewerCanApprove", "eligibleApprovers"]);
    let needs_decisions = wants(&[
        "decisions",
        "stages",
        "viewerCanApprove",
        "eligibleApprovers",
    ]);
    let needs_users = wants(&["requester", "decisions", "stages"]);
    let needs_trail = wants(&["auditTrail"]);

    let policy_ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.policy_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let request_ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let (versions, decisions, trails) = tokio::join!(
        async {
            if needs_policy {
                policy_versions(ctx, loaders, &policy_ids).await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if needs_decisions || needs_users {
                load_now(&loaders.decisions, &request_ids).await
            } else {
                Ok(HashMap::new())
            }
        },
        async {
            if needs_trail {
                loaders
                    .audit_trails
                    .load_many(request_ids.clone())
                    .await
                    .map(drop)
            } else {
                Ok(())
            }
        },
    );
    for version in versions? {
        related.stages.insert(version.policy.id, version.stages);
        related.policies.insert(version.policy.id, version.policy);
    }
    related.decisions = decisions?;
    trails.map_err(loader_error)?;
    if needs_users {
        let mut subjects: HashSet<String> =
            rows.iter().map(|r| r.requester_subject.clone()).collect();
        subjects.extend(
            related
                .decisions
                .values()
                .flat_map(|d| d.iter())
                .map(|d| d.approver_subject.clone()),
        );
        let subjects: Vec<String> = subjects.into_iter().collect();
        related.users = load_now(&loaders.users, &subjects).await?;
    }
    Ok(Some(Arc::new(related)))
}

/// Loads `keys` at once rather than after the loader's batching delay (a page asks for all
/// of its keys together, so there is nothing to wait for), and leaves them in the loader's
/// cache for the fields answered by the derived resolvers.
async fn load_now<K, T>(
    loader: &DataLoader<T, HashMapCache>,
    keys: &[K],
) -> Result<HashMap<K, T::Value>, AppError>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    T: Loader<K, Error = Arc<DbErr>>,
{
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let values = loader.loader().load(keys).await.map_err(loader_error)?;
    loader.feed_many(values.clone()).await;
    Ok(values)
}

/// A loader failure as the API reports it (masked, logged).
pub fn loader_error(err: Arc<DbErr>) -> AppError {
    AppError::Internal(anyhow::anyhow!("loading related rows: {err}"))
}

pub struct PolicyLoader(DatabaseConnection);

impl Loader<Uuid> for PolicyLoader {
    type Value = Arc<policy::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = policy::Entity::find()
            .filter(policy::Column::Id.is_in(ids.iter().copied()))
            .all(&self.0)
            .await?;
        Ok(rows.into_iter().map(|p| (p.id, Arc::new(p))).collect())
    }
}

/// Stages of a policy version, in order, keyed by policy id.
pub struct StagesLoader(DatabaseConnection);

impl Loader<Uuid> for StagesLoader {
    type Value = Arc<Vec<policy_stage::Model>>;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = policy_stage::Entity::find()
            .filter(policy_stage::Column::PolicyId.is_in(ids.iter().copied()))
            .order_by_asc(policy_stage::Column::Position)
            .all(&self.0)
            .await?;
        let mut by_policy: HashMap<Uuid, Vec<policy_stage::Model>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for row in rows {
            by_policy.entry(row.policy_id).or_default().push(row);
        }
        Ok(by_policy
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect())
    }
}

/// Decisions on a request, oldest first, keyed by request id.
pub struct DecisionsLoader(DatabaseConnection);

impl Loader<Uuid> for DecisionsLoader {
    type Value = Arc<Vec<decision::Model>>;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = decision::Entity::find()
            .filter(decision::Column::RequestId.is_in(ids.iter().copied()))
            .order_by_asc(decision::Column::CreatedAt)
            .order_by_asc(decision::Column::Id)
            .all(&self.0)
            .await?;
        let mut by_request: HashMap<Uuid, Vec<decision::Model>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for row in rows {
            by_request.entry(row.request_id).or_default().push(row);
        }
        Ok(by_request
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect())
    }
}

/// Users by subject; `None` for a subject never seen. The absence is an answer too: a key
/// missing from the result is not cached, so every field naming an unknown subject would
/// ask again, in batches that split differently under load.
pub struct UserLoader(DatabaseConnection);

impl Loader<String> for UserLoader {
    type Value = Option<Arc<user::Model>>;
    type Error = Arc<DbErr>;

    async fn load(&self, subjects: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let rows = user::Entity::find()
            .filter(user::Column::Subject.is_in(subjects.iter().cloned()))
            .all(&self.0)
            .await?;
        let mut by_subject: HashMap<String, Self::Value> =
            subjects.iter().map(|s| (s.clone(), None)).collect();
        for row in rows {
            by_subject.insert(row.subject.clone(), Some(Arc::new(row)));
        }
        Ok(by_subject)
    }
}

/// Audit events about a request, oldest first, keyed by request id.
pub struct AuditTrailLoader(DatabaseConnection);

impl Loader<Uuid> for AuditTrailLoader {
    type Value = Vec<audit_event::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::RequestId.is_in(ids.iter().copied()))
            .order_by_asc(audit_event::Column::Sequence)
            .all(&self.0)
            .await?;
        let mut by_request: HashMap<Uuid, Self::Value> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for row in rows {
            if let Some(id) = row.request_id {
                by_request.entry(id).or_default().push(row);
            }
        }
        Ok(by_request)
    }
}

pub struct RoleHoldersLoader(DatabaseConnection);

impl Loader<String> for RoleHoldersLoader {
    type Value = Vec<user::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, roles: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let holders = user::Entity::find()
            .filter(role_holders(roles))
            .order_by_asc(user::Column::Subject)
            .all(&self.0)
            .await?;
        let mut by_role: HashMap<String, Self::Value> =
            roles.iter().map(|r| (r.clone(), Vec::new())).collect();
        for holder in holders {
            // The SQL match is coarse (text in JSON); this is the exact one.
            let theirs: Vec<String> =
                serde_json::from_value(holder.roles.clone()).unwrap_or_default();
            for role in theirs {
                if let Some(list) = by_role.get_mut(&role) {
                    list.push(holder.clone());
                }
            }
        }
        Ok(by_role)
    }
}

pub struct RoleGrantsLoader(DatabaseConnection);

impl Loader<String> for RoleGrantsLoader {
    type Value = Vec<Grant>;
    type Error = Arc<DbErr>;

    async fn load(&self, roles: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let pairs = grants_by_role(&self.0, roles.iter().cloned()).await?;
        let mut by_role: HashMap<String, Self::Value> =
            roles.iter().map(|r| (r.clone(), Vec::new())).collect();
        for (role, grant) in pairs {
            by_role.entry(role).or_default().push(grant);
        }
        Ok(by_role)
    }
}

/// Users whose last token carried any of `roles`: a coarse text match in SQL, made exact
/// in Rust by the decide rule.
fn role_holders(roles: &[String]) -> Condition {
    let mut any = Condition::any();
    for role in roles {
        let pattern = format!("%\"{}\"%", escape_like(role));
        any = any.add(
            Expr::expr(Func::cast_as(
                Expr::col(user::Column::Roles),
                Alias::new("TEXT"),
            ))
            .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    Condition::all()
        .add(any)
        .add(user::Column::DisabledAt.is_null())
}
