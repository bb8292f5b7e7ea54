//! The demo: three policies, the role permissions, and the personas whose tokens are
//! printed on start in development.
//!
//! Seeding only ever inserts what is missing, in one transaction, and never runs in
//! production (configuration refuses it).

use anyhow::Context;
use entity::{policy, policy_stage, role_permission};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    Set, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::approvals::model::Thresholds;
use crate::audit;
use crate::config::{Config, DemoMode, Environment};
use crate::kernel::{Clock, CommandContext, SYSTEM};

/// Recorded as the author of seeded rows.
const SEEDER: &str = SYSTEM;

/// A demo persona: the subject, the display name, and the roles their token carries.
pub struct Persona {
    pub subject: &'static str,
    pub name: &'static str,
    pub roles: &'static [&'static str],
}

/// How long the demo personas' tokens last.
pub const PERSONA_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Whether anyone may be handed a demo persona's token: development with the demo on. With
/// `COUNTERSIGN_DEMO=0` there are no demo people to be, and an admin's token for the asking
/// would be a way in.
pub fn personas_offered(config: &Config) -> bool {
    !config.is_production() && config.demo != DemoMode::Off
}

/// A dev token for each demo persona, signed with the configured secret (development only:
/// callers check, with [`personas_offered`] where a stranger asks). `None` when there is no
/// secret to sign with.
pub fn persona_tokens(
    jwt: &crate::config::JwtConfig,
) -> anyhow::Result<Option<Vec<(&'static Persona, String)>>> {
    if jwt.secret.is_none() {
        return Ok(None);
    }
    let mut tokens = Vec::new();
    for persona in &PERSONAS {
        let roles: Vec<String> = persona.roles.iter().map(|r| (*r).to_owned()).collect();
        let token = crate::auth::mint_token(
            jwt,
            persona.subject,
            &roles,
            PERSONA_TOKEN_TTL,
            crate::auth::service::TokenProfile {
                name: Some(persona.name.to_owned()),
                email: Some(format!("{}@example.com", persona.subject)),
            },
        )?;
        tokens.push((persona, token));
    }
    Ok(Some(tokens))
}

pub const PERSONAS: [Persona; 6] = [
    Persona {
        subject: "alice",
        name: "Alice Support",
        roles: &["support"],
    },
    Persona {
        subject: "bob",
        name: "Bob Finance",
        roles: &["finance"],
    },
    Persona {
        subject: "carol",
        name: "Carol Finance Lead",
        roles: &["finance_lead"],
    },
    Persona {
        subject: "dave",
        name: "Dave Ops",
        roles: &["ops"],
    },
    Persona {
        subject: "frank",
        name: "Frank Auditor",
        roles: &["auditor"],
    },
    Persona {
        subject: "grace",
        name: "Grace Admin",
        roles: &["admin"],
    },
];

struct DemoStage {
    name: &'static str,
    roles: &'static [&'static str],
    required: i32,
    /// (amount, currency); other currencies get the stage whatever the amount.
    min_amounts: &'static [(&'static str, &'static str)],
}

struct DemoPolicy {
    key: &'static str,
    name: &'static str,
    description: &'static str,
    expires_after_hours: i64,
    payload_schema: fn() -> serde_json::Value,
    stages: &'static [DemoStage],
}

/// The demo policies' payload schemas, by key (the payload fuzz target checks against them).
pub fn payload_schemas() -> Vec<(&'static str, serde_json::Value)> {
    POLICIES
        .iter()
        .map(|policy| (policy.key, (policy.payload_schema)()))
        .collect()
}

const POLICIES: [DemoPolicy; 3] = [
    DemoPolicy {
        key: "refund",
        name: "Refund",
        description: "Money back to a customer for an order.",
        expires_after_hours: 72,
        payload_schema: || {
            json!({
                "type": "object",
                "required": ["orderId"],
                "properties": {
                    "orderId": { "type": "string", "minLength": 1 },
                    "customerId": { "type": "string" },
                    "reason": { "type": "string" }
                }
            })
        },
        stages: &[
            DemoStage {
                name: "Finance review",
                roles: &["finance", "finance_lead"],
                required: 1,
                min_amounts: &[],
            },
            DemoStage {
                name: "Finance lead sign-off",
                roles: &["finance_lead"],
                required: 1,
                min_amounts: &[("1000.00", "EUR"), ("1000.00", "USD"), ("1000.00", "GBP")],
            },
        ],
    },
    DemoPolicy {
        key: "account_change",
        name: "Account change",
        description: "A change to a customer's account: owner, plan, limits.",
        expires_after_hours: 24,
        payload_schema: || {
            json!({
                "type": "object",
                "properties": {
                    "accountId": { "type": "string" },
                    "change": { "type": "string" }
                }
            })
        },
        stages: &[DemoStage {
            name: "Ops review",
            roles: &["ops"],
            required: 1,
            min_amounts: &[],
        }],
    },
    DemoPolicy {
        key: "access_grant",
        name: "Access grant",
        description: "Access for a person to a system, with a level.",
        expires_after_hours: 24,
        payload_schema: || {
            json!({
                "type": "object",
                "required": ["system", "grantee"],
                "properties": {
                    "system": { "type": "string", "minLength": 1 },
                    "grantee": { "type": "string", "minLength": 1 },
                    "level": { "type": "string" }
                }
            })
        },
        stages: &[DemoStage {
            name: "Two ops approvals",
            roles: &["ops"],
            required: 2,
            min_amounts: &[],
        }],
    },
];

/// (role, action, policy): `None` means every policy.
const PERMISSIONS: [(&str, &str, Option<&str>); 11] = [
    ("support", "request.submit", None),
    ("finance", "request.view", Some("refund")),
    ("finance_lead", "request.view", Some("refund")),
    ("ops", "request.view", Some("account_change")),
    ("ops", "request.view", Some("access_grant")),
    ("auditor", "request.view", None),
    ("auditor", "audit.read", None),
    ("admin", "request.view", None),
    ("admin", "audit.read", None),
    ("admin", "policy.manage", None),
    ("admin", "access.manage", None),
];

/// What seeding did.
#[derive(Debug, PartialEq, Eq)]
pub enum Seeded {
    Nothing,
    Inserted { policies: usize, permissions: usize },
}

/// Seeds the demo when the mode and environment call for it.
pub async fn seed(
    db: &DatabaseConnection,
    clock: &Clock,
    mode: DemoMode,
    environment: Environment,
) -> anyhow::Result<Seeded> {
    let wanted = match (environment, mode) {
        (Environment::Production, _) | (_, DemoMode::Off) => false,
        (Environment::Development, DemoMode::On) => true,
        (Environment::Development, DemoMode::OnEmptyDatabase) => {
            policy::Entity::find().count(db).await? == 0
        }
    };
    if !wanted {
        return Ok(Seeded::Nothing);
    }
    let txn = db.begin().await.context("starting the demo seed")?;
    let ctx = CommandContext::system(clock.clone());
    let now = ctx.now();
    let mut policies = 0;
    for demo in &POLICIES {
        let exists = policy::Entity::find()
            .filter(policy::Column::Key.eq(demo.key))
            .count(&txn)
            .await?
            > 0;
        if exists {
            continue;
        }
        let policy_id = Uuid::now_v7();
        policy::ActiveModel {
            id: Set(policy_id),
            key: Set(demo.key.into()),
            version: Set(1),
            name: Set(demo.name.into()),
            description: Set(demo.description.into()),
            expires_after_seconds: Set(demo.expires_after_hours * 3600),
            payload_schema: Set(Some((demo.payload_schema)())),
            allow_same_approver_across_stages: Set(false),
            created_by: Set(SEEDER.into()),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        for (position, stage) in (1..).zip(demo.stages) {
            policy_stage::ActiveModel {
                id: Set(Uuid::now_v7()),
                policy_id: Set(policy_id),
                position: Set(position),
                name: Set(stage.name.into()),
                approver_roles: Set(json!(stage.roles)),
                required_approvals: Set(stage.required),
                min_amount: Set(None),
                min_amounts: Set(Thresholds::parse(stage.min_amounts.iter().copied())
                    .map_err(|err| anyhow::anyhow!("demo thresholds: {}", err.client_message()))?
                    .to_stored()),
            }
            .insert(&txn)
            .await?;
        }
        policies += 1;
    }
    let mut permissions = 0;
    for (role, action, policy_key) in PERMISSIONS {
        let scope = match policy_key {
            Some(key) => role_permission::Column::PolicyKey.eq(key),
            None => role_permission::Column::PolicyKey.is_null(),
        };
        let exists = role_permission::Entity::find()
            .filter(role_permission::Column::Role.eq(role))
            .filter(role_permission::Column::Action.eq(action))
            .filter(scope)
            .count(&txn)
            .await?
            > 0;
        if exists {
            continue;
        }
        role_permission::ActiveModel {
            id: Set(Uuid::now_v7()),
            role: Set(role.into()),
            action: Set(action.into()),
            policy_key: Set(policy_key.map(Into::into)),
            granted_by: Set(SEEDER.into()),
            granted_at: Set(now),
        }
        .insert(&txn)
        .await?;
        permissions += 1;
    }
    if policies + permissions > 0 {
        let summary =
            format!("system seeded the demo: {policies} policies, {permissions} permissions");
        let event = ctx
            .event("demo.seeded", "system", "demo", summary)
            .after(json!({ "policies": policies, "permissions": permissions }));
        audit::service::append(&txn, event)
            .await
            .map_err(|err| anyhow::anyhow!("recording the demo seed: {}", err.client_message()))?;
    }
    txn.commit().await.context("committing the demo seed")?;
    Ok(Seeded::Inserted {
        policies,
        permissions,
    })
}
