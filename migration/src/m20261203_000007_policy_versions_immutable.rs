//! A policy version never changes once written: an edit is a new version (a new row, with
//! its own stages), and requests keep the version they were filed under. Triggers now
//! refuse UPDATE and DELETE of policies and policy stages (and TRUNCATE on PostgreSQL), so
//! a server may keep a version it has read for as long as it runs (the list pages'
//! prefetch does: `approvals/loader.rs::PolicyVersions`). On SQLite, `INSERT OR REPLACE`
//! deletes a conflicting row without firing DELETE triggers, so a BEFORE INSERT trigger
//! refuses any insert whose unique keys are taken, as `…000004_audit_no_replace` does for
//! audit events. (A stage added to an old version by hand is not caught: the server's own
//! code writes a version's stages only in the transaction that creates it.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000007_policy_versions_immutable"
    }
}

const TABLES: [&str; 2] = ["policies", "policy_stages"];

/// SQLite: what a REPLACE would overwrite, per table.
const TAKEN: [(&str, &str); 2] = [
    (
        "policies",
        "id = NEW.id OR (key = NEW.key AND version = NEW.version)",
    ),
    (
        "policy_stages",
        "id = NEW.id OR (policy_id = NEW.policy_id AND position = NEW.position)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                for table in TABLES {
                    for event in ["UPDATE", "DELETE"] {
                        db.execute_unprepared(&format!(
                            "CREATE TRIGGER {table}_no_{} BEFORE {event} ON {table} \
                             BEGIN SELECT RAISE(ABORT, 'policy versions never change: \
                             an edit is a new version'); END",
                            event.to_lowercase()
                        ))
                        .await?;
                    }
                }
                for (table, taken) in TAKEN {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} \
                         WHEN EXISTS (SELECT 1 FROM {table} WHERE {taken}) \
                         BEGIN SELECT RAISE(ABORT, 'policy versions never change: \
                         an edit is a new version'); END"
                    ))
                    .await?;
                }
            }
            _ => {
                db.execute_unprepared(
                    "CREATE FUNCTION countersign_policy_versions_immutable() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     RAISE EXCEPTION 'policy versions never change: an edit is a new version'; \
                     END $$",
                )
                .await?;
                for table in TABLES {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} \
                         FOR EACH ROW EXECUTE FUNCTION countersign_policy_versions_immutable()"
                    ))
                    .await?;
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} \
                         FOR EACH STATEMENT EXECUTE FUNCTION countersign_policy_versions_immutable()"
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                for table in TABLES {
                    for event in ["update", "delete", "replace"] {
                        db.execute_unprepared(&format!(
                            "DROP TRIGGER IF EXISTS {table}_no_{event}"
                        ))
                        .await?;
                    }
                }
            }
            _ => {
                for table in TABLES {
                    for trigger in ["no_change", "no_truncate"] {
                        db.execute_unprepared(&format!(
                            "DROP TRIGGER IF EXISTS {table}_{trigger} ON {table}"
                        ))
                        .await?;
                    }
                }
                db.execute_unprepared(
                    "DROP FUNCTION IF EXISTS countersign_policy_versions_immutable()",
                )
                .await?;
            }
        }
        Ok(())
    }
}
