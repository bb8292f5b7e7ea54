//! `webhooks`, `webhookDeliveries`; `createWebhook`, `updateWebhook`, `disableWebhook`,
//! `replayWebhookDelivery`. Changes are for admins (`access.manage`) and audited; admins
//! and auditors may look.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use entity::{webhook_delivery, webhook_endpoint};
use uuid::Uuid;

use super::deliveries::{self, ReplayDelivery};
use super::endpoints::{self, CreateWebhook, UpdateWebhook, event_kinds};
use super::guard::Destinations;
use crate::access::{Action, authorize_oversight, operation_grants};
use crate::approvals::feed::RequestEventKind;
use crate::command;
use crate::error::{self, AppError};
use crate::kernel::Timestamp;
use crate::kernel::resolver::{command_context, db, page_cost, require_viewer};

/// Where the decisions go: an endpoint that receives signed events of the kinds it chose.
#[derive(SimpleObject)]
pub struct Webhook {
    id: ID,
    url: String,
    events: Vec<RequestEventKind>,
    /// False once disabled: nothing more is delivered to it.
    enabled: bool,
    created_by: String,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    disabled_at: Option<Timestamp>,
}

impl From<webhook_endpoint::Model> for Webhook {
    fn from(row: webhook_endpoint::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            events: event_kinds(&row),
            enabled: row.disabled_at.is_none(),
            url: row.url,
            created_by: row.created_by,
            created_at: Timestamp(row.created_at),
            updated_at: row.updated_at.map(Timestamp),
            disabled_at: row.disabled_at.map(Timestamp),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum WebhookDeliveryStatus {
    /// Waiting for its next attempt (or in one).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; it waits for `replayWebhookDelivery`.
    Dead,
}

impl WebhookDeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => deliveries::PENDING,
            Self::Delivered => deliveries::DELIVERED,
            Self::Dead => deliveries::DEAD,
        }
    }

    fn parse(value: &str) -> Self {
        match value {
            deliveries::DELIVERED => Self::Delivered,
            deliveries::DEAD => Self::Dead,
            _ => Self::Pending,
        }
    }
}

/// One event owed to one webhook, and how delivering it went.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    id: ID,
    webhook_id: ID,
    /// The event's id, sent as `Countersign-Event-Id`: the same on every attempt.
    event_id: ID,
    kind: Option<RequestEventKind>,
    status: WebhookDeliveryStatus,
    attempts: i32,
    /// The HTTP status of the last attempt, when it got an answer.
    last_status: Option<i32>,
    last_error: Option<String>,
    last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due (pending only).
    next_attempt_at: Option<Timestamp>,
    created_at: Timestamp,
    delivered_at: Option<Timestamp>,
    dead_lettered_at: Option<Timestamp>,
}

impl From<webhook_delivery::Model> for WebhookDelivery {
    fn from(row: webhook_delivery::Model) -> Self {
        let status = WebhookDeliveryStatus::parse(&row.state);
        Self {
            id: ID(row.id.to_string()),
            webhook_id: ID(row.endpoint_id.to_string()),
            event_id: ID(row.outbox_id.to_string()),
            kind: RequestEventKind::parse(&row.kind),
            status,
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            last_attempt_at: row.last_attempt_at.map(Timestamp),
            next_attempt_at: (status == WebhookDeliveryStatus::Pending)
                .then_some(Timestamp(row.next_attempt_at)),
            created_at: Timestamp(row.created_at),
            delivered_at: row.delivered_at.map(Timestamp),
            dead_lettered_at: row.dead_lettered_at.map(Timestamp),
        }
    }
}

#[derive(InputObject, Default)]
pub struct WebhookDeliveryFilter {
    status: Option<WebhookDeliveryStatus>,
    /// A webhook's id.
    endpoint: Option<ID>,
}

#[derive(SimpleObject)]
pub struct WebhookDeliveryConnection {
    edges: Vec<WebhookDeliveryEdge>,
    page_info: WebhookDeliveryPageInfo,
}

#[derive(SimpleObject)]
pub struct WebhookDeliveryEdge {
    cursor: String,
    node: WebhookDelivery,
}

#[derive(SimpleObject)]
pub struct WebhookDeliveryPageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

fn parse_id(field: &str, id: &str, what: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.trim()).map_err(|_| AppError::bad_input(field, format!("not a {what} id")))
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// Every registered webhook, enabled or not, oldest first. Admins and auditors.
    async fn webhooks(&self, ctx: &Context<'_>) -> error::Result<Vec<Webhook>> {
        authorize_oversight(ctx, require_viewer(ctx)?).await?;
        Ok(endpoints::list(db(ctx))
            .await?
            .into_iter()
            .map(Webhook::from)
            .collect())
    }

    /// Deliveries, newest first, keyset-paginated; `first` ≤ 100. Admins and auditors.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        filter: Option<WebhookDeliveryFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> error::Result<WebhookDeliveryConnection> {
        authorize_oversight(ctx, require_viewer(ctx)?).await?;
        let limit = crate::kernel::page::page_size(first)?;
        let before = match after {
            None => None,
            Some(cursor) => Some(
                Uuid::parse_str(&cursor)
                    .map_err(|_| AppError::bad_input("after", "not a cursor from this list"))?,
            ),
        };
        let filter = filter.unwrap_or_default();
        let endpoint = match filter.endpoint {
            None => None,
            Some(id) => Some(parse_id("filter.endpoint", &id, "webhook")?),
        };
        let (rows, more) = deliveries::list(
            db(ctx),
            filter.status.map(WebhookDeliveryStatus::as_str),
            endpoint,
            limit,
            before,
        )
        .await?;
        let end_cursor = rows.last().map(|r| r.id.to_string());
        Ok(WebhookDeliveryConnection {
            edges: rows
                .into_iter()
                .map(|row| WebhookDeliveryEdge {
                    cursor: row.id.to_string(),
                    node: row.into(),
                })
                .collect(),
            page_info: WebhookDeliveryPageInfo {
                has_next_page: more,
                end_cursor,
            },
        })
    }
}

#[derive(InputObject)]
pub struct CreateWebhookInput {
    /// Where events are POSTed. https only in production, and never to an internal
    /// address unless allow-listed.
    url: String,
    events: Vec<RequestEventKind>,
    /// Signs every delivery (HMAC-SHA256); 16 to 256 characters. Never shown again.
    secret: String,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateWebhookInput {
    id: ID,
    url: Option<String>,
    events: Option<Vec<RequestEventKind>>,
    /// A new signing secret (rotation); deliveries from now on use it.
    secret: Option<String>,
    enabled: Option<bool>,
    /// Why; recorded in the audit log.
    reason: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct DisableWebhookInput {
    id: ID,
    /// Why; recorded in the audit log.
    reason: String,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ReplayWebhookDeliveryInput {
    id: ID,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct CreateWebhookPayload {
    webhook: Webhook,
}

#[derive(SimpleObject)]
pub struct UpdateWebhookPayload {
    webhook: Webhook,
}

#[derive(SimpleObject)]
pub struct DisableWebhookPayload {
    webhook: Webhook,
}

#[derive(SimpleObject)]
pub struct ReplayWebhookDeliveryPayload {
    delivery: WebhookDelivery,
}

#[derive(Default)]
pub struct WebhooksMutation;

fn destinations<'a>(ctx: &Context<'a>) -> Result<&'a Destinations, AppError> {
    ctx.data_opt::<Destinations>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("webhook destinations not configured")))
}

/// The URL as the destination rules see it. Names are resolved for admins only: for
/// anyone else the command refuses (and records the refusal) before it matters, and
/// resolving names on their behalf would let them map the network.
async fn checked_url(ctx: &Context<'_>, text: &str) -> Result<url::Url, AppError> {
    let grants = operation_grants(ctx, require_viewer(ctx)?).await?;
    let rules = destinations(ctx)?;
    if grants.allows(Action::AccessManage, None) {
        rules.check_new(text).await
    } else {
        rules.parse(text)
    }
}

async fn update(
    ctx: &Context<'_>,
    command: UpdateWebhook,
    key: Option<String>,
) -> error::Result<Webhook> {
    let context = command_context(ctx, key)?;
    Ok(command::run_for(ctx, &context, &command)
        .await?
        .output
        .into())
}

#[Object]
impl WebhooksMutation {
    /// Registers a webhook. Admins only; audited (without the secret).
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookInput,
    ) -> error::Result<CreateWebhookPayload> {
        let url = checked_url(ctx, &input.url).await?;
        let context = command_context(ctx, input.idempotency_key)?;
        let command = CreateWebhook {
            url: url.to_string(),
            events: input.events,
            secret: input.secret,
        };
        let ran = command::run_for(ctx, &context, &command).await?;
        Ok(CreateWebhookPayload {
            webhook: ran.output.into(),
        })
    }

    /// Changes a webhook's URL, events or secret, or enables / disables it. Admins only;
    /// audited.
    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookInput,
    ) -> error::Result<UpdateWebhookPayload> {
        let url = match &input.url {
            Some(url) => Some(checked_url(ctx, url).await?.to_string()),
            None => None,
        };
        let command = UpdateWebhook {
            id: parse_id("id", &input.id, "webhook")?,
            url,
            events: input.events,
            secret: input.secret,
            enabled: input.enabled,
            reason: input.reason,
        };
        Ok(UpdateWebhookPayload {
            webhook: update(ctx, command, input.idempotency_key).await?,
        })
    }

    /// Stops deliveries to a webhook; what is still pending for it is dead-lettered on
    /// its next attempt. Admins only; audited.
    async fn disable_webhook(
        &self,
        ctx: &Context<'_>,
        input: DisableWebhookInput,
    ) -> error::Result<DisableWebhookPayload> {
        if input.reason.trim().is_empty() {
            return Err(AppError::bad_input("reason", "say why it is disabled"));
        }
        let command = UpdateWebhook {
            id: parse_id("id", &input.id, "webhook")?,
            url: None,
            events: None,
            secret: None,
            enabled: Some(false),
            reason: Some(input.reason.trim().to_owned()),
        };
        Ok(DisableWebhookPayload {
            webhook: update(ctx, command, input.idempotency_key).await?,
        })
    }

    /// Requeues a delivered or dead delivery for a fresh round of attempts (the event id
    /// stays the same, so a receiver that has it already can ignore it). Admins only;
    /// audited.
    async fn replay_webhook_delivery(
        &self,
        ctx: &Context<'_>,
        input: ReplayWebhookDeliveryInput,
    ) -> error::Result<ReplayWebhookDeliveryPayload> {
        let id = parse_id("id", &input.id, "delivery")?;
        let context = command_context(ctx, input.idempotency_key)?;
        // The pipeline's "the audit log grew" wakes this replica's relay now.
        let ran = command::run_for(ctx, &context, &ReplayDelivery(id)).await?;
        Ok(ReplayWebhookDeliveryPayload {
            delivery: ran.output.into(),
        })
    }
}
