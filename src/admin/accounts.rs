//! `users`: the accounts Countersign has seen, for the admin screen that disables them,
//! lets them back in and ends their sessions.

use entity::user;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::error::AppError;
use crate::kernel::page::{contains_pattern, page_size, split_page};

/// Which accounts to list.
#[derive(Default)]
pub struct AccountFilter {
    /// Case-insensitive text in the subject, name or email.
    pub search: Option<String>,
    /// Only disabled (true) or only enabled (false) accounts.
    pub disabled: Option<bool>,
}

/// A page of accounts by subject, after `after` (a subject), and whether more follow.
pub async fn list(
    db: &DatabaseConnection,
    filter: AccountFilter,
    first: Option<i32>,
    after: Option<String>,
) -> Result<(Vec<user::Model>, bool), AppError> {
    let limit = page_size(first)?;
    let mut query = user::Entity::find();
    if let Some(search) = filter.search.filter(|s| !s.trim().is_empty()) {
        let pattern = contains_pattern(&search)?;
        let like = |column: user::Column| {
            Expr::expr(Func::lower(Expr::col(column)))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        query = query.filter(
            Condition::any()
                .add(like(user::Column::Subject))
                .add(like(user::Column::Name))
                .add(like(user::Column::Email)),
        );
    }
    match filter.disabled {
        Some(true) => query = query.filter(user::Column::DisabledAt.is_not_null()),
        Some(false) => query = query.filter(user::Column::DisabledAt.is_null()),
        None => {}
    }
    if let Some(after) = after {
        query = query.filter(user::Column::Subject.gt(after));
    }
    let rows = query
        .order_by_asc(user::Column::Subject)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(split_page(rows, limit))
}
