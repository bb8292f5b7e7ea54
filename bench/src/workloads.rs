//! The workloads: what one request of each looks like, and the rows they need.

use std::sync::{Arc, Mutex};

use countersign::auth::mint_token;
use countersign::auth::service::TokenProfile;
use countersign::config::{
    DEFAULT_JWKS_REFRESH, DEFAULT_MAX_TOKEN_LIFETIME, JwtConfig, Secret, SecretSource,
};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::call::{Call, Floor, send};
use crate::server::SECRET;

/// The page an ops console asks for: requests with requester, policy, stages, decisions.
pub const PAGE_FIELDS: &str = "edges { cursor node { id title status amount currency createdAt
    expiresAt version requester { subject name } policy { key version }
    stages { position name state } decisions { verdict comment approver { subject } } } }";

pub enum Workload {
    /// One fixed GraphQL request: the list and queue pages (at a cursor, for depth), the
    /// audit log.
    Page { token: String, body: Value },
    /// `request(id)` with its audit trail, round robin over known ids.
    Request { token: String, ids: Vec<String> },
    /// `submitRequest`, a new refund each time.
    Submit { token: String },
    /// `approveRequest` of pending single-stage refunds, each approved once.
    Approve {
        token: String,
        pending: Mutex<Vec<String>>,
    },
    /// The same `approveRequest` with the same idempotency key: a replay every time.
    Replay {
        token: String,
        id: String,
        key: String,
    },
    /// `{ __typename }` with a token (admission) or without.
    Typename { token: Option<String> },
    /// `GET /healthz`: the HTTP floor.
    Healthz,
    /// One fixed GraphQL request without a token: the peer's list page.
    Anonymous { body: Value },
    /// The statements behind another workload, straight to the database; a command's
    /// replays each act on one of `pending`.
    Floor {
        floor: Arc<Floor>,
        pending: Option<Mutex<Vec<uuid::Uuid>>>,
    },
}

/// `requests(status: PENDING, first: 50)` with the console's fields.
pub fn pending_page() -> Value {
    json!({ "query": format!("{{ requests(filter: {{ status: PENDING }}, first: 50) {{ {PAGE_FIELDS} }} }}") })
}

/// `requests(first: 50, after: $after)`, all statuses, newest first.
pub fn list_page(after: Option<&str>) -> Value {
    json!({
        "query": format!("query($after: String) {{ requests(first: 50, after: $after) {{ {PAGE_FIELDS} }} }}"),
        "variables": { "after": after },
    })
}

/// `myQueue(first: 50, after: $after)`.
pub fn queue_page(after: Option<&str>) -> Value {
    json!({
        "query": format!("query($after: String) {{ myQueue(first: 50, after: $after) {{ {PAGE_FIELDS} }} }}"),
        "variables": { "after": after },
    })
}

/// `myQueue(first: 50, orderBy: EXPIRES_AT_ASC)`: the console's "nearest deadline first".
pub fn queue_deadline_page() -> Value {
    json!({
        "query": format!("{{ myQueue(first: 50, orderBy: EXPIRES_AT_ASC) {{ {PAGE_FIELDS} }} }}"),
    })
}

/// `auditEvents(first: 50, after: $after)`.
pub fn audit_page(after: Option<&str>) -> Value {
    json!({
        "query": "query($after: String) { auditEvents(first: 50, after: $after) { edges { cursor node { sequence action actor summary occurredAt } } } }",
        "variables": { "after": after },
    })
}

/// The cursor `depth` rows into a list (or as deep as it goes, less a page), found by
/// paging through it with the API, and the depth reached.
pub async fn cursor_at(
    url: &str,
    token: &str,
    field: &str,
    page: fn(Option<&str>) -> Value,
    depth: usize,
) -> anyhow::Result<(Option<String>, usize)> {
    let client = reqwest::Client::new();
    let mut cursor: Option<String> = None;
    let mut previous: Option<String> = None;
    let mut reached = 0;
    while reached < depth {
        let mut body = page(cursor.as_deref());
        // Pages of 100 on the way down; the measured page is 50.
        let query = body["query"]
            .as_str()
            .unwrap_or_default()
            .replace("first: 50", "first: 100");
        body["query"] = json!(query);
        let call = Call::Graphql {
            token: Some(token.to_owned()),
            body,
        };
        let (_, _, answer) = send(&client, url, &call).await?;
        let edges = answer["data"][field]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if edges.len() < 100 {
            // The end is near: keep the measured page a full one.
            if edges.len() < 50 && reached >= 100 {
                cursor = previous;
                reached -= 100;
            }
            break;
        }
        previous = cursor;
        cursor = edges
            .last()
            .and_then(|e| e["cursor"].as_str())
            .map(str::to_owned);
        reached += edges.len();
    }
    Ok((cursor, reached))
}

impl Workload {
    /// The `n`th request of `worker`, or `None` when the workload has run out of rows.
    pub fn next(&self, worker: usize, n: usize) -> Option<Call> {
        let graphql = |token: &String, query: &str, variables: Value| Call::Graphql {
            token: Some(token.clone()),
            body: json!({ "query": query, "variables": variables }),
        };
        Some(match self {
            Self::Page { token, body } => Call::Graphql {
                token: Some(token.clone()),
                body: body.clone(),
            },
            Self::Request { token, ids } => graphql(
                token,
                "query($id: ID!) { request(id: $id) { id status title auditTrail { sequence action actor summary occurredAt } } }",
                json!({ "id": ids[(worker * 7919 + n) % ids.len()] }),
            ),
            Self::Submit { token } => graphql(token, SUBMIT, json!({ "input": refund(worker, n) })),
            Self::Approve { token, pending } => {
                let id = pending.lock().ok()?.pop()?;
                graphql(
                    token,
                    APPROVE,
                    json!({ "input": { "id": id, "comment": "bench" } }),
                )
            }
            Self::Replay { token, id, key } => graphql(
                token,
                APPROVE,
                json!({ "input": { "id": id, "comment": "bench", "idempotencyKey": key } }),
            ),
            Self::Typename { token } => Call::Graphql {
                token: token.clone(),
                body: json!({ "query": "{ __typename }" }),
            },
            Self::Healthz => Call::Get("/healthz"),
            Self::Anonymous { body } => Call::Graphql {
                token: None,
                body: body.clone(),
            },
            Self::Floor { floor, pending } => {
                let target = match pending {
                    Some(pending) => Some(pending.lock().ok()?.pop()?),
                    None => None,
                };
                Call::Sql(floor.clone(), target)
            }
        })
    }
}

pub const SUBMIT: &str =
    "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } } }";
pub const APPROVE: &str = "mutation($input: DecideRequestInput!) { approveRequest(input: $input) { request { id status } } }";

/// A refund under the single-stage threshold, so one finance approval settles it.
pub fn refund(worker: usize, n: usize) -> Value {
    json!({
        "policy": "refund", "title": format!("Bench refund {worker}-{n}"),
        "amount": "120.00", "currency": "EUR", "payload": { "orderId": format!("o-{worker}-{n}") },
    })
}

/// A demo persona's token, signed with the bench server's secret by the crate's own
/// minting (`countersign token` uses the same), so the claims never drift from the server's.
pub fn token(subject: &str, roles: &[&str]) -> anyhow::Result<String> {
    let config = JwtConfig {
        secret: Some(Secret::new(SECRET)),
        secret_source: Some(SecretSource::Environment),
        public_key_pem: None,
        jwks_file: None,
        algorithms: vec![Algorithm::HS256],
        issuer: "countersign".into(),
        audience: "countersign".into(),
        max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
        jwks_refresh: DEFAULT_JWKS_REFRESH,
        roles_claim: vec!["roles".into()],
    };
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let profile = TokenProfile {
        name: Some(subject.to_owned()),
        email: Some(format!("{subject}@example.com")),
    };
    mint_token(
        &config,
        subject,
        &roles,
        std::time::Duration::from_secs(6 * 3600),
        profile,
    )
}

/// Files `count` refunds as alice, 16 at a time, and returns their ids.
pub async fn submit_many(url: &str, count: usize, tag: usize) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::new();
    let alice = token("alice", &["support"])?;
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|n| {
            let call = Call::Graphql {
                token: Some(alice.clone()),
                body: json!({ "query": SUBMIT, "variables": { "input": refund(tag, *n) } }),
            };
            let client = client.clone();
            async move { submit_one(&client, url, &call).await }
        });
        for id in futures_util::future::join_all(calls).await {
            ids.push(id?);
        }
    }
    Ok(ids)
}

async fn submit_one(client: &reqwest::Client, url: &str, call: &Call) -> anyhow::Result<String> {
    let (_, _, body) = send(client, url, call).await?;
    body["data"]["submitRequest"]["request"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no id in {body}"))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[test]
    fn a_bench_token_carries_what_the_bench_server_requires() {
        let token = super::token("bob", &["finance"]).expect("a token");
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&["countersign"]);
        validation.set_audience(&["countersign"]);
        let claims = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(crate::server::SECRET.as_bytes()),
            &validation,
        )
        .expect("valid for the bench server")
        .claims;
        assert_eq!(claims["sub"], "bob");
        assert_eq!(claims["roles"], serde_json::json!(["finance"]));
        assert_eq!(claims["email"], "bob@example.com");
    }
}
