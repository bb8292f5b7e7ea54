//! Webhook deliveries: one row per (outbox entry, endpoint), the unit the relay claims,
//! retries and dead-letters. The outbox entry says "this event happened"; a delivery says
//! "this endpoint has (not yet) received it". `next_attempt_at` doubles as the claim's
//! lease: a claimed delivery is pushed past its attempt's timeout, so a replica that dies
//! mid-attempt leaves it due again, never stuck.
//!
//! Endpoints learn `updated_at` (the API shows when one last changed).

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000006_webhook_deliveries"
    }
}

const DELIVERY_STATES: [&str; 3] = ["PENDING", "DELIVERED", "DEAD"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(pk_uuid(WebhookDeliveries::Id))
                    .col(uuid(WebhookDeliveries::OutboxId))
                    .col(uuid(WebhookDeliveries::EndpointId))
                    .col(string(WebhookDeliveries::Kind))
                    .col(
                        string(WebhookDeliveries::State)
                            .check(Expr::col(WebhookDeliveries::State).is_in(DELIVERY_STATES)),
                    )
                    .col(integer(WebhookDeliveries::Attempts).default(0))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(integer_null(WebhookDeliveries::LastStatus))
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::LastAttemptAt,
                    ))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::DeliveredAt,
                    ))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::DeadLetteredAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::OutboxId)
                            .to(OutboxEntries::Table, OutboxEntries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_webhook_deliveries_event_endpoint")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::OutboxId)
                    .col(WebhookDeliveries::EndpointId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The relay's claim: due pending deliveries, soonest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::State)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // `webhookDeliveries(filter: {endpoint})`, newest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_endpoint")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EndpointId)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        // The purges: delivered outbox rows and expired idempotency keys by age.
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_entries_created")
                    .table(OutboxEntries::Table)
                    .col(OutboxEntries::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEndpoints::Table)
                    .add_column(timestamp_with_time_zone_null(WebhookEndpoints::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEndpoints::Table)
                    .drop_column(WebhookEndpoints::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_entries_created")
                    .table(OutboxEntries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    OutboxId,
    EndpointId,
    Kind,
    State,
    Attempts,
    NextAttemptAt,
    LastStatus,
    LastError,
    LastAttemptAt,
    CreatedAt,
    DeliveredAt,
    DeadLetteredAt,
}

#[derive(DeriveIden)]
enum OutboxEntries {
    Table,
    Id,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    UpdatedAt,
}
