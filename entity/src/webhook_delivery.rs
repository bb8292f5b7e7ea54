use sea_orm::entity::prelude::*;

/// One event (an outbox entry) owed to one webhook endpoint.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub outbox_id: Uuid,
    pub endpoint_id: Uuid,
    /// The event's kind (`APPROVED`, …), copied so listing needs no join.
    pub kind: String,
    /// `PENDING`, `DELIVERED` or `DEAD`.
    pub state: String,
    pub attempts: i32,
    /// When it is due; while an attempt runs, the end of that attempt's lease.
    pub next_attempt_at: DateTimeUtc,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
    pub dead_lettered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
