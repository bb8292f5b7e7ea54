//! The workloads: what one request of each looks like, and the rows they need.

use std::sync::Mutex;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::load::send;
use crate::server::SECRET;

/// One request to send.
pub enum Call {
    Get(&'static str),
    Graphql { token: Option<String>, body: Value },
}

/// The page an ops console asks for: requests with requester, policy, stages, decisions.
pub const PAGE_FIELDS: &str = "edges { cursor node { id title status amount currency createdAt
    expiresAt version requester { subject name } policy { key version }
    stages { position name state } decisions { verdict comment approver { subject } } } }";

pub enum Workload {
    /// `requests(status: PENDING, first: 50)` with the console's fields, as an admin.
    List { token: String },
    /// `myQueue(first: 50)` as a finance approver.
    MyQueue { token: String },
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
}

impl Workload {
    /// The `n`th request of `worker`, or `None` when the workload has run out of rows.
    pub fn next(&self, worker: usize, n: usize) -> Option<Call> {
        let graphql = |token: &String, query: &str, variables: Value| Call::Graphql {
            token: Some(token.clone()),
            body: json!({ "query": query, "variables": variables }),
        };
        Some(match self {
            Self::List { token } => graphql(
                token,
                &format!(
                    "{{ requests(filter: {{ status: PENDING }}, first: 50) {{ {PAGE_FIELDS} }} }}"
                ),
                json!({}),
            ),
            Self::MyQueue { token } => graphql(
                token,
                &format!("{{ myQueue(first: 50) {{ {PAGE_FIELDS} }} }}"),
                json!({}),
            ),
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

/// A demo persona's token, signed with the bench server's secret.
pub fn token(subject: &str, roles: &[&str]) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = json!({
        "sub": subject, "iat": now, "exp": now + 6 * 3600,
        "iss": "countersign", "aud": "countersign", "roles": roles,
        "name": subject, "email": format!("{subject}@example.com"),
    });
    Ok(jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
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
