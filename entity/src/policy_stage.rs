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
    /// No longer read: it never said which currency it meant (see migration 000003).
    pub min_amount: Option<String>,
    /// `{"EUR": "1000.00", …}`: for a request in one of these currencies the stage applies
    /// only when its amount is at least the threshold; in any other currency it applies.
    pub min_amounts: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
