//! The whole domain model of DESIGN §3 in one first migration: policies and their stages,
//! requests, decisions, the audit log and its chain head, users, role permissions,
//! idempotency keys, the outbox and webhook endpoints.
//!
//! Two storage choices hold for every table and must not be "simplified" away:
//! - Money (`amount`, `min_amount`) is TEXT holding the canonical decimal string.
//!   SeaORM reads SQLite decimals through `f64`, which would silently lose cents; a string
//!   round-trips exactly on both databases, and amounts are compared in Rust, never in SQL.
//! - Status-like columns are TEXT with a CHECK constraint rather than a native enum, so the
//!   constraint means the same on SQLite and PostgreSQL.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_domain_model"
    }
}

const REQUEST_STATUSES: [&str; 5] = ["PENDING", "APPROVED", "REJECTED", "CANCELLED", "EXPIRED"];
const VERDICTS: [&str; 2] = ["APPROVE", "REJECT"];
const PERMISSION_ACTIONS: [&str; 5] = [
    "request.submit",
    "request.view",
    "audit.read",
    "policy.manage",
    "access.manage",
];
const IDEMPOTENCY_STATES: [&str; 2] = ["IN_PROGRESS", "COMPLETED"];
const OUTBOX_STATES: [&str; 3] = ["PENDING", "DELIVERED", "DEAD"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_users(manager).await?;
        create_policies(manager).await?;
        create_requests(manager).await?;
        create_audit_log(manager).await?;
        create_role_permissions(manager).await?;
        create_idempotency_keys(manager).await?;
        create_outbox_and_webhooks(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children before parents, so foreign keys never block the drop.
        for table in [
            Alias::new("webhook_endpoints"),
            Alias::new("outbox_entries"),
            Alias::new("idempotency_keys"),
            Alias::new("role_permissions"),
            Alias::new("audit_chain_head"),
            Alias::new("audit_events"),
            Alias::new("decisions"),
            Alias::new("requests"),
            Alias::new("policy_stages"),
            Alias::new("policies"),
            Alias::new("users"),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// A CHECK that the column holds one of the listed values.
fn one_of(column: impl IntoIden, values: &[&str]) -> SimpleExpr {
    Expr::col(column.into_iden()).is_in(values.iter().copied())
}

async fn create_users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Users::Table)
                .col(string(Users::Subject).primary_key())
                .col(text_null(Users::Name))
                .col(text_null(Users::Email))
                // The roles the user's last verified token carried: lets the API name known
                // people who could approve a stage. Never used to authorize anything.
                .col(json_binary(Users::Roles))
                .col(timestamp_with_time_zone(Users::FirstSeenAt))
                .col(timestamp_with_time_zone(Users::LastSeenAt))
                .col(timestamp_with_time_zone_null(Users::DisabledAt))
                .col(text_null(Users::DisabledReason))
                .col(timestamp_with_time_zone_null(Users::SessionsRevokedAt))
                .to_owned(),
        )
        .await
}

async fn create_policies(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Policies::Table)
                .col(pk_uuid(Policies::Id))
                .col(string(Policies::Key))
                .col(integer(Policies::Version).check(Expr::col(Policies::Version).gte(1)))
                .col(text(Policies::Name))
                .col(text(Policies::Description))
                .col(
                    big_integer(Policies::ExpiresAfterSeconds)
                        .check(Expr::col(Policies::ExpiresAfterSeconds).gt(0)),
                )
                .col(json_binary_null(Policies::PayloadSchema))
                .col(boolean(Policies::AllowSameApproverAcrossStages).default(false))
                .col(string(Policies::CreatedBy))
                .col(timestamp_with_time_zone(Policies::CreatedAt))
                .to_owned(),
        )
        .await?;
    // A request pins (key, version); an edit is a new row, never an update.
    manager
        .create_index(
            Index::create()
                .name("ux_policies_key_version")
                .table(Policies::Table)
                .col(Policies::Key)
                .col(Policies::Version)
                .unique()
                .to_owned(),
        )
        .await?;

    manager
        .create_table(
            Table::create()
                .table(PolicyStages::Table)
                .col(pk_uuid(PolicyStages::Id))
                .col(uuid(PolicyStages::PolicyId))
                .col(
                    integer(PolicyStages::Position).check(Expr::col(PolicyStages::Position).gte(1)),
                )
                .col(text(PolicyStages::Name))
                .col(json_binary(PolicyStages::ApproverRoles))
                .col(
                    integer(PolicyStages::RequiredApprovals)
                        .check(Expr::col(PolicyStages::RequiredApprovals).gte(1)),
                )
                .col(text_null(PolicyStages::MinAmount))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_policy_stages_policy")
                        .from(PolicyStages::Table, PolicyStages::PolicyId)
                        .to(Policies::Table, Policies::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ux_policy_stages_position")
                .table(PolicyStages::Table)
                .col(PolicyStages::PolicyId)
                .col(PolicyStages::Position)
                .unique()
                .to_owned(),
        )
        .await
}

async fn create_requests(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Requests::Table)
                .col(pk_uuid(Requests::Id))
                .col(uuid(Requests::PolicyId))
                .col(string(Requests::PolicyKey))
                .col(integer(Requests::PolicyVersion))
                .col(text(Requests::Title))
                .col(text(Requests::Description))
                .col(json_binary(Requests::Payload))
                .col(text(Requests::Amount))
                .col(
                    char_len(Requests::Currency, 3)
                        .check(Expr::cust("length(currency) = 3")),
                )
                .col(string(Requests::RequesterSubject))
                .col(string(Requests::Status).check(one_of(Requests::Status, &REQUEST_STATUSES)))
                .col(integer_null(Requests::CurrentStage))
                .col(integer(Requests::Version).check(Expr::col(Requests::Version).gte(1)))
                .col(timestamp_with_time_zone(Requests::CreatedAt))
                .col(timestamp_with_time_zone(Requests::UpdatedAt))
                .col(timestamp_with_time_zone(Requests::ExpiresAt))
                .col(timestamp_with_time_zone_null(Requests::DecidedAt))
                // A terminal request has a decision time; a pending one does not.
                .check(Expr::cust(
                    "(status = 'PENDING' AND decided_at IS NULL) \
                     OR (status <> 'PENDING' AND decided_at IS NOT NULL)",
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_requests_policy")
                        .from(Requests::Table, Requests::PolicyId)
                        .to(Policies::Table, Policies::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
    // The queue queries: keyset pages ordered by (created_at, id) within a filter.
    for (name, cols) in [
        (
            "ix_requests_status_created",
            vec![Requests::Status, Requests::CreatedAt, Requests::Id],
        ),
        (
            "ix_requests_requester_created",
            vec![
                Requests::RequesterSubject,
                Requests::CreatedAt,
                Requests::Id,
            ],
        ),
        (
            "ix_requests_policy_status_created",
            vec![
                Requests::PolicyKey,
                Requests::Status,
                Requests::CreatedAt,
                Requests::Id,
            ],
        ),
        (
            "ix_requests_status_expires",
            vec![Requests::Status, Requests::ExpiresAt, Requests::Id],
        ),
        (
            "ix_requests_created",
            vec![Requests::CreatedAt, Requests::Id],
        ),
    ] {
        let mut index = Index::create();
        index.name(name).table(Requests::Table);
        for col in cols {
            index.col(col);
        }
        manager.create_index(index.to_owned()).await?;
    }

    manager
        .create_table(
            Table::create()
                .table(Decisions::Table)
                .col(pk_uuid(Decisions::Id))
                .col(uuid(Decisions::RequestId))
                .col(integer(Decisions::StagePosition))
                .col(string(Decisions::ApproverSubject))
                .col(string(Decisions::Verdict).check(one_of(Decisions::Verdict, &VERDICTS)))
                .col(text(Decisions::Comment))
                .col(timestamp_with_time_zone(Decisions::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_decisions_request")
                        .from(Decisions::Table, Decisions::RequestId)
                        .to(Requests::Table, Requests::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
    // The invariant "one decision per approver per stage" lives here, not only in code.
    manager
        .create_index(
            Index::create()
                .name("ux_decisions_request_stage_approver")
                .table(Decisions::Table)
                .col(Decisions::RequestId)
                .col(Decisions::StagePosition)
                .col(Decisions::ApproverSubject)
                .unique()
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_decisions_approver")
                .table(Decisions::Table)
                .col(Decisions::ApproverSubject)
                .col(Decisions::RequestId)
                .to_owned(),
        )
        .await
}

async fn create_audit_log(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(AuditEvents::Table)
                // Assigned from the chain head inside the appending transaction, never by the
                // database: sequences must be gapless and commit-ordered (DESIGN §7).
                .col(big_integer(AuditEvents::Sequence).primary_key())
                .col(uuid_uniq(AuditEvents::Id))
                .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                .col(string(AuditEvents::ActorSubject))
                .col(json_binary(AuditEvents::ActorRoles))
                .col(string(AuditEvents::Action))
                .col(string(AuditEvents::SubjectType))
                .col(string(AuditEvents::SubjectId))
                .col(uuid_null(AuditEvents::RequestId))
                .col(json_binary_null(AuditEvents::Before))
                .col(json_binary_null(AuditEvents::After))
                .col(text_null(AuditEvents::Reason))
                .col(string_null(AuditEvents::CorrelationId))
                .col(string_null(AuditEvents::IdempotencyKey))
                .col(text(AuditEvents::Summary))
                .col(string(AuditEvents::PrevHash))
                .col(string(AuditEvents::Hash))
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        (
            "ix_audit_events_request",
            vec![AuditEvents::RequestId, AuditEvents::Sequence],
        ),
        (
            "ix_audit_events_subject",
            vec![
                AuditEvents::SubjectType,
                AuditEvents::SubjectId,
                AuditEvents::Sequence,
            ],
        ),
        (
            "ix_audit_events_actor",
            vec![AuditEvents::ActorSubject, AuditEvents::Sequence],
        ),
        (
            "ix_audit_events_occurred",
            vec![AuditEvents::OccurredAt, AuditEvents::Sequence],
        ),
    ] {
        let mut index = Index::create();
        index.name(name).table(AuditEvents::Table);
        for col in cols {
            index.col(col);
        }
        manager.create_index(index.to_owned()).await?;
    }

    // Exactly one row: the last appended sequence and hash. Appenders lock it last, just
    // before commit, which is what serialises the chain.
    manager
        .create_table(
            Table::create()
                .table(AuditChainHead::Table)
                .col(
                    integer(AuditChainHead::Id)
                        .primary_key()
                        .check(Expr::col(AuditChainHead::Id).eq(1)),
                )
                .col(big_integer(AuditChainHead::Sequence))
                .col(string(AuditChainHead::Hash))
                .to_owned(),
        )
        .await?;
    manager
        .exec_stmt(
            Query::insert()
                .into_table(AuditChainHead::Table)
                .columns([
                    AuditChainHead::Id,
                    AuditChainHead::Sequence,
                    AuditChainHead::Hash,
                ])
                .values_panic([1.into(), 0i64.into(), GENESIS_HASH.into()])
                .to_owned(),
        )
        .await
}

/// The `prev_hash` of the first audit event: 64 zeros, the width of a SHA-256 hex digest.
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

async fn create_role_permissions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(RolePermissions::Table)
                .col(pk_uuid(RolePermissions::Id))
                .col(string(RolePermissions::Role))
                .col(
                    string(RolePermissions::Action)
                        .check(one_of(RolePermissions::Action, &PERMISSION_ACTIONS)),
                )
                // NULL means "on every policy".
                .col(string_null(RolePermissions::PolicyKey))
                .col(string(RolePermissions::GrantedBy))
                .col(timestamp_with_time_zone(RolePermissions::GrantedAt))
                .to_owned(),
        )
        .await?;
    // NULLs are distinct in a plain unique index, so the unscoped and the scoped grants each
    // get their own partial index. The syntax is shared by SQLite and PostgreSQL.
    let db = manager.get_connection();
    db.execute_unprepared(
        "CREATE UNIQUE INDEX ux_role_permissions_unscoped \
         ON role_permissions (role, action) WHERE policy_key IS NULL",
    )
    .await?;
    db.execute_unprepared(
        "CREATE UNIQUE INDEX ux_role_permissions_scoped \
         ON role_permissions (role, action, policy_key) WHERE policy_key IS NOT NULL",
    )
    .await?;
    Ok(())
}

async fn create_idempotency_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(string(IdempotencyKeys::ActorSubject))
                .col(string(IdempotencyKeys::Key))
                .col(string(IdempotencyKeys::Operation))
                // SHA-256 of the canonical input: same key + different input is detectable
                // without keeping the input itself.
                .col(string(IdempotencyKeys::RequestHash))
                .col(
                    string(IdempotencyKeys::State)
                        .check(one_of(IdempotencyKeys::State, &IDEMPOTENCY_STATES)),
                )
                .col(json_binary_null(IdempotencyKeys::Response))
                .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                .col(timestamp_with_time_zone(IdempotencyKeys::ExpiresAt))
                .primary_key(
                    Index::create()
                        .col(IdempotencyKeys::ActorSubject)
                        .col(IdempotencyKeys::Key),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_idempotency_keys_expires")
                .table(IdempotencyKeys::Table)
                .col(IdempotencyKeys::ExpiresAt)
                .to_owned(),
        )
        .await
}

async fn create_outbox_and_webhooks(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(WebhookEndpoints::Table)
                .col(pk_uuid(WebhookEndpoints::Id))
                .col(text(WebhookEndpoints::Url))
                .col(json_binary(WebhookEndpoints::Events))
                .col(text(WebhookEndpoints::Secret))
                .col(string(WebhookEndpoints::CreatedBy))
                .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                .col(timestamp_with_time_zone_null(WebhookEndpoints::DisabledAt))
                .to_owned(),
        )
        .await?;

    manager
        .create_table(
            Table::create()
                .table(OutboxEntries::Table)
                .col(pk_uuid(OutboxEntries::Id))
                .col(big_integer_null(OutboxEntries::AuditSequence))
                .col(string(OutboxEntries::Kind))
                .col(string(OutboxEntries::SubjectId))
                .col(json_binary(OutboxEntries::Payload))
                .col(
                    string(OutboxEntries::State)
                        .check(one_of(OutboxEntries::State, &OUTBOX_STATES)),
                )
                .col(integer(OutboxEntries::Attempts).default(0))
                .col(timestamp_with_time_zone(OutboxEntries::NextAttemptAt))
                .col(text_null(OutboxEntries::LastError))
                .col(timestamp_with_time_zone(OutboxEntries::CreatedAt))
                .col(timestamp_with_time_zone_null(OutboxEntries::DeliveredAt))
                .col(timestamp_with_time_zone_null(OutboxEntries::DeadLetteredAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_outbox_entries_due")
                .table(OutboxEntries::Table)
                .col(OutboxEntries::State)
                .col(OutboxEntries::NextAttemptAt)
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Subject,
    Name,
    Email,
    Roles,
    FirstSeenAt,
    LastSeenAt,
    DisabledAt,
    DisabledReason,
    SessionsRevokedAt,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    Id,
    Key,
    Version,
    Name,
    Description,
    ExpiresAfterSeconds,
    PayloadSchema,
    AllowSameApproverAcrossStages,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PolicyStages {
    Table,
    Id,
    PolicyId,
    Position,
    Name,
    ApproverRoles,
    RequiredApprovals,
    MinAmount,
}

#[derive(DeriveIden)]
enum Requests {
    Table,
    Id,
    PolicyId,
    PolicyKey,
    PolicyVersion,
    Title,
    Description,
    Payload,
    Amount,
    Currency,
    RequesterSubject,
    Status,
    CurrentStage,
    Version,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    DecidedAt,
}

#[derive(DeriveIden)]
enum Decisions {
    Table,
    Id,
    RequestId,
    StagePosition,
    ApproverSubject,
    Verdict,
    Comment,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Sequence,
    Id,
    OccurredAt,
    ActorSubject,
    ActorRoles,
    Action,
    SubjectType,
    SubjectId,
    RequestId,
    Before,
    After,
    Reason,
    CorrelationId,
    IdempotencyKey,
    Summary,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditChainHead {
    Table,
    Id,
    Sequence,
    Hash,
}

#[derive(DeriveIden)]
enum RolePermissions {
    Table,
    Id,
    Role,
    Action,
    PolicyKey,
    GrantedBy,
    GrantedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ActorSubject,
    Key,
    Operation,
    RequestHash,
    State,
    Response,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum OutboxEntries {
    Table,
    Id,
    AuditSequence,
    Kind,
    SubjectId,
    Payload,
    State,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
    DeliveredAt,
    DeadLetteredAt,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    Url,
    Events,
    Secret,
    CreatedBy,
    CreatedAt,
    DisabledAt,
}
