//! Closes SQLite's `INSERT OR REPLACE` hole in the append-only audit log: REPLACE deletes
//! the conflicting row without firing DELETE triggers (unless `recursive_triggers` is on),
//! so an event could be overwritten in place. A BEFORE INSERT trigger refuses any insert
//! whose id or sequence is already taken, before conflict resolution runs. PostgreSQL has
//! no REPLACE (`ON CONFLICT DO UPDATE` fires the UPDATE trigger), so nothing changes there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000004_audit_no_replace"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared(
                "CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events \
                 WHEN EXISTS (SELECT 1 FROM audit_events \
                              WHERE id = NEW.id OR sequence = NEW.sequence) \
                 BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("DROP TRIGGER IF EXISTS audit_events_no_replace")
                .await?;
        }
        Ok(())
    }
}
