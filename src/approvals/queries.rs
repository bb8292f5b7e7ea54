//! The queue's reads: one request, the list, `myQueue`, and who could decide a request.
//! Every rule about who sees or decides what comes from `access::requests`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{decision, policy, policy_stage, request, user};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, SimpleExpr};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::loader::{Loaders, loader_error};
use super::model::Status;
use super::policies::PolicyVersion;
use crate::access::Grants;
use crate::access::requests::{
    Asker, PolicyFacts, decidable_now, may_cancel, may_decide_now, open_at, stage_roles, visible,
};
use crate::error::AppError;
use crate::kernel::Viewer;
use crate::kernel::page::{contains_pattern, page_size, split_page};

fn asker<'a>(viewer: &'a Viewer, grants: &'a Grants) -> Asker<'a> {
    Asker {
        subject: &viewer.subject,
        roles: &viewer.roles,
        grants,
    }
}

/// The request `id`, if it exists and the viewer may see it.
pub async fn find_visible(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grants: &Grants,
    id: &str,
) -> Result<Option<request::Model>, AppError> {
    let Ok(id) = Uuid::parse_str(id.trim()) else {
        return Ok(None);
    };
    // The rule in SQL: a hidden request costs the same one statement as an absent one.
    Ok(request::Entity::find_by_id(id)
        .filter(visible(asker(viewer, grants)))
        .one(db)
        .await?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, async_graphql::Enum)]
#[graphql(name = "RequestOrder")]
pub enum Order {
    CreatedAtAsc,
    #[default]
    CreatedAtDesc,
    ExpiresAtAsc,
}

#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub status: Option<Status>,
    pub policy: Option<String>,
    pub requester: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub search: Option<String>,
}

/// One page of a keyset-paginated list.
pub struct Page {
    pub rows: Vec<(String, request::Model)>,
    pub has_next_page: bool,
}

/// Rows after the cursor `(at, id)` in the list's order, as one row comparison
/// `(sort, id) > (at, id)`: PostgreSQL answers it from the `(…, sort, id)` indexes as an
/// index condition, where the equivalent `sort > at OR (sort = at AND id > id)` was a
/// filter over every row before the cursor (page 2,000 took 96 ms instead of 0.08).
fn after_key(column: request::Column, ascending: bool, at: DateTime<Utc>, id: Uuid) -> SimpleExpr {
    let row = Expr::tuple([
        Expr::col((request::Entity, column)),
        Expr::col((request::Entity, request::Column::Id)),
    ]);
    let cursor = Expr::tuple([Expr::val(at), Expr::val(id)]);
    if ascending {
        row.gt(cursor)
    } else {
        row.lt(cursor)
    }
}

/// A keyset cursor: the sort value and the id of the last row seen. Opaque to clients.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    use base64::Engine;
    let raw = format!(
        "{}|{id}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), AppError> {
    use base64::Engine;
    let bad = || AppError::bad_input("after", "not a cursor from this list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, id))
}

pub async fn list(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grants: &Grants,
    filter: RequestFilter,
    order: Order,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Page, AppError> {
    let limit = page_size(first)?;
    let mut query = request::Entity::find().filter(visible(asker(viewer, grants)));
    if let Some(status) = filter.status {
        query = query.filter(request::Column::Status.eq(status.as_str()));
    }
    if let Some(policy) = filter.policy {
        query = query.filter(request::Column::PolicyKey.eq(policy));
    }
    if let Some(requester) = filter.requester {
        query = query.filter(request::Column::RequesterSubject.eq(requester));
    }
    if let Some(after) = filter.created_after {
        query = query.filter(request::Column::CreatedAt.gte(after));
    }
    if let Some(before) = filter.created_before {
        query = query.filter(request::Column::CreatedAt.lt(before));
    }
    if let Some(search) = filter.search.filter(|s| !s.trim().is_empty()) {
        let pattern = contains_pattern(&search)?;
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(request::Column::Title)))
                .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    let rows = ordered_page(query, order, after)?
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(into_page(rows, limit, |r| order.sort_value(r)))
}

impl Order {
    fn sort_value(self, row: &request::Model) -> DateTime<Utc> {
        match self {
            Order::ExpiresAtAsc => row.expires_at,
            _ => row.created_at,
        }
    }
}

/// `query` in `order` (the id breaking ties), after the `after` cursor's row.
fn ordered_page(
    mut query: sea_orm::Select<request::Entity>,
    order: Order,
    after: Option<String>,
) -> Result<sea_orm::Select<request::Entity>, AppError> {
    let (sort_column, ascending) = match order {
        Order::CreatedAtAsc => (request::Column::CreatedAt, true),
        Order::CreatedAtDesc => (request::Column::CreatedAt, false),
        Order::ExpiresAtAsc => (request::Column::ExpiresAt, true),
    };
    if let Some(cursor) = after {
        let (at, id) = decode_cursor(&cursor)?;
        query = query.filter(after_key(sort_column, ascending, at, id));
    }
    Ok(if ascending {
        query
            .order_by_asc(sort_column)
            .order_by_asc(request::Column::Id)
    } else {
        query
            .order_by_desc(sort_column)
            .order_by_desc(request::Column::Id)
    })
}

fn into_page(
    rows: Vec<request::Model>,
    limit: u64,
    sort_value: impl Fn(&request::Model) -> DateTime<Utc>,
) -> Page {
    let (rows, has_next_page) = split_page(rows, limit);
    Page {
        rows: rows
            .into_iter()
            .map(|r| (encode_cursor(sort_value(&r), r.id), r))
            .collect(),
        has_next_page,
    }
}

/// What the viewer may see and decide now — pending, before its deadline, at a stage
/// whose role they hold, not theirs and not already decided by them — in `order`.
pub async fn my_queue(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grants: &Grants,
    now: DateTime<Utc>,
    order: Order,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Page, AppError> {
    let limit = page_size(first)?;
    let empty = Page {
        rows: Vec::new(),
        has_next_page: false,
    };
    if viewer.roles.is_empty() {
        return Ok(empty);
    }
    // Stage definitions are few; the ones the viewer decides are picked here, and the
    // requests are then filtered in SQL.
    let stages = policy_stage::Entity::find().all(db).await?;
    let policies: HashMap<Uuid, policy::Model> = policy::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let Some(decidable) = decidable_now(asker(viewer, grants), &stages, &policies, now) else {
        return Ok(empty);
    };
    let query = request::Entity::find().filter(decidable);
    let rows = ordered_page(query, order, after)?
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(into_page(rows, limit, |r| order.sort_value(r)))
}

/// Whether the viewer may decide `request` now (its policy version and decisions given).
pub fn viewer_may_decide(
    viewer: &Viewer,
    grants: &Grants,
    request: &request::Model,
    policy: &PolicyVersion,
    decisions: &[decision::Model],
    now: DateTime<Utc>,
) -> bool {
    may_decide_now(
        asker(viewer, grants),
        request,
        facts(policy),
        decisions,
        now,
    )
}

/// Whether the viewer may cancel `request` now: [`may_cancel`] on a request still open.
pub fn viewer_may_cancel(
    viewer: &Viewer,
    grants: &Grants,
    request: &request::Model,
    now: DateTime<Utc>,
) -> bool {
    open_at(request, now) && may_cancel(asker(viewer, grants), request)
}

fn facts(policy: &PolicyVersion) -> PolicyFacts<'_> {
    PolicyFacts {
        stages: &policy.stages,
        allow_same_approver_across_stages: policy.policy.allow_same_approver_across_stages,
    }
}

/// Who could decide the request's current stage: its roles, and the known, enabled people
/// holding one of them who may decide it now (the same rule as `viewerCanApprove`, with
/// each person's own grants). Empty once the request is terminal.
///
/// Holders and their grants come through the operation's loaders, so a page of requests
/// costs two statements for all of its nodes, not two per node.
pub async fn eligible_approvers(
    loaders: &Loaders,
    request: &request::Model,
    policy: &PolicyVersion,
    decisions: &[decision::Model],
    now: DateTime<Utc>,
) -> Result<(Vec<String>, Vec<user::Model>), AppError> {
    let stage = request
        .current_stage
        .filter(|_| request.status == Status::Pending.as_str())
        .and_then(|pos| policy.stages.iter().find(|s| s.position == pos));
    let Some(stage) = stage else {
        return Ok((Vec::new(), Vec::new()));
    };
    let roles = stage_roles(stage);
    let mut holders: Vec<user::Model> = loaders
        .role_holders
        .load_many(roles.iter().cloned())
        .await
        .map_err(loader_error)?
        .into_values()
        .flatten()
        .collect();
    holders.sort_by(|a, b| a.subject.cmp(&b.subject));
    holders.dedup_by(|a, b| a.subject == b.subject);
    let held: Vec<Vec<String>> = holders
        .iter()
        .map(|u| serde_json::from_value(u.roles.clone()).unwrap_or_default())
        .collect();
    let grants_of_role = loaders
        .role_grants
        .load_many(held.iter().flatten().cloned())
        .await
        .map_err(loader_error)?;
    let mut eligible = Vec::new();
    for (holder, their_roles) in holders.into_iter().zip(&held) {
        let grants = Grants::new(
            their_roles
                .iter()
                .filter_map(|role| grants_of_role.get(role))
                .flatten()
                .cloned(),
        );
        let asker = Asker {
            subject: &holder.subject,
            roles: their_roles,
            grants: &grants,
        };
        if may_decide_now(asker, request, facts(policy), decisions, now) {
            eligible.push(holder);
        }
    }
    Ok((roles, eligible))
}
