//! A stage's amount threshold names its currency: `policy_stages.min_amounts` holds
//! `{"EUR": "1000.00", "USD": "1000.00"}`, and a threshold is only ever compared with an
//! amount in the same currency. A request in a currency the stage names no threshold for
//! gets the stage (fail closed).
//!
//! The old `min_amount` column is left in place and no longer read: it never said which
//! currency it meant, so no conversion could be right. Stages that had one now apply to
//! every amount until an admin saves the policy again with per-currency thresholds —
//! stricter than before, never looser.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::json_binary_null;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000003_stage_thresholds_per_currency"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PolicyStages::Table)
                    .add_column(json_binary_null(PolicyStages::MinAmounts))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PolicyStages::Table)
                    .drop_column(PolicyStages::MinAmounts)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum PolicyStages {
    Table,
    MinAmounts,
}
