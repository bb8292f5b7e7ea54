use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "policy_stages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub policy_id: Uuid,
    /// 1-based order of the stage within its policy version.
    pub position: i32,
    pub name: String,
    /// JSON array of role names.
    pub approver_roles: Json,
    pub required_approvals: i32,
    /// Canonical decimal string; the stage applies only when amount >= this.
    pub min_amount: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
