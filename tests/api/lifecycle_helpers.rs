//! Shared GraphQL operations for the approval lifecycle tests.

use serde_json::{Value, json};

use crate::helpers::{GraphqlResponse, Persona, TestApp};

pub const REQUEST_FIELDS: &str = "id status currentStage version title amount currency decidedAt
    requester { subject }
    policy { key version }
    stages { position name state approvals requiredApprovals }
    decisions { stage verdict comment approver { subject } }";

pub fn submit_mutation() -> String {
    format!(
        "mutation($input: SubmitRequestInput!) {{
            submitRequest(input: $input) {{ replayed request {{ {REQUEST_FIELDS} }} }}
        }}"
    )
}

pub fn decide_mutation(field: &str) -> String {
    format!(
        "mutation($input: DecideRequestInput!) {{
            {field}(input: $input) {{ replayed request {{ {REQUEST_FIELDS} }} }}
        }}"
    )
}

pub fn refund(amount: &str) -> Value {
    json!({
        "policy": "refund",
        "title": format!("Refund of {amount} for order o-1"),
        "amount": amount,
        "currency": "EUR",
        "payload": { "orderId": "o-1" },
    })
}

pub fn access_grant() -> Value {
    json!({
        "policy": "access_grant",
        "title": "Production database read access",
        "amount": "1",
        "currency": "EUR",
        "payload": { "system": "prod-db", "grantee": "erin" },
    })
}

/// Submits as `token`; returns the whole response.
pub async fn submit_with(app: &TestApp, token: &str, input: Value) -> GraphqlResponse {
    app.graphql(Some(token), &submit_mutation(), json!({ "input": input }))
        .await
}

/// Submits as a persona and returns the created request.
pub async fn submit(app: &TestApp, persona: Persona, input: Value) -> Value {
    let token = app.token_for(persona);
    let response = submit_with(app, &token, input).await;
    response.expect_ok()["submitRequest"]["request"].clone()
}

pub async fn approve_with(app: &TestApp, token: &str, id: &Value) -> GraphqlResponse {
    app.graphql(
        Some(token),
        &decide_mutation("approveRequest"),
        json!({ "input": { "id": id, "comment": "looks right" } }),
    )
    .await
}

/// A token for someone who is not a demo persona.
pub fn token_as(app: &TestApp, subject: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    app.token(subject, &roles)
}

pub async fn request_as(app: &TestApp, token: &str, id: &Value) -> Value {
    let response = app
        .graphql(
            Some(token),
            &format!("query($id: ID!) {{ request(id: $id) {{ {REQUEST_FIELDS} auditTrail {{ action summary actor }} }} }}"),
            json!({ "id": id }),
        )
        .await;
    response.expect_ok()["request"].clone()
}
