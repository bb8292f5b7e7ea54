use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    #[sea_orm(unique)]
    pub id: Uuid,
    pub occurred_at: DateTimeUtc,
    pub actor_subject: String,
    pub actor_roles: Json,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    pub request_id: Option<Uuid>,
    pub before: Option<Json>,
    pub after: Option<Json>,
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub summary: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The request an event is about (no foreign key in the schema): the request feed
    /// reads both in one statement.
    #[sea_orm(
        belongs_to = "super::request::Entity",
        from = "Column::RequestId",
        to = "super::request::Column::Id"
    )]
    Request,
}

impl Related<super::request::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Request.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
