//! Countersign's schema, as an ordered list of migrations.
//!
//! One migration per change. A migration that has landed on main is never edited:
//! databases in the field have already applied it, so a fix is always a new migration.
//! Every migration must mean the same thing on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_domain_model;
mod m20261123_000002_audit_append_only;
mod m20261123_000003_stage_thresholds_per_currency;
mod m20261123_000004_audit_no_replace;
mod m20261123_000005_queue_index;
mod m20261201_000006_webhook_deliveries;
mod m20261203_000007_policy_versions_immutable;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_domain_model::Migration),
            Box::new(m20261123_000002_audit_append_only::Migration),
            Box::new(m20261123_000003_stage_thresholds_per_currency::Migration),
            Box::new(m20261123_000004_audit_no_replace::Migration),
            Box::new(m20261123_000005_queue_index::Migration),
            Box::new(m20261201_000006_webhook_deliveries::Migration),
            Box::new(m20261203_000007_policy_versions_immutable::Migration),
        ]
    }
}
