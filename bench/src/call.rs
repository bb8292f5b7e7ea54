//! One request the bench sends (over HTTP, or straight to the database for a floor) and
//! the check every answer passes before it counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::floor::{Captured, Substitution};

/// One request to send.
pub enum Call {
    Get(&'static str),
    Graphql {
        token: Option<String>,
        body: Value,
    },
    /// Straight to the database: a floor, on a target request when it acts on one.
    Sql(Arc<Floor>, Option<uuid::Uuid>),
}

/// A workload's floor: statements to run as one unit of work.
pub struct Floor {
    pub db: sea_orm::DatabaseConnection,
    pub statements: Vec<Captured>,
    pub substitution: Option<Substitution>,
}

/// Sends one call; fails the run on any error, so a fast wrong answer never counts.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    call: &Call,
) -> anyhow::Result<(Duration, u64, Value)> {
    let started = Instant::now();
    let response = match call {
        Call::Sql(floor, target) => {
            crate::floor::replay(&floor.db, &floor.statements, floor.substitution, *target).await?;
            return Ok((
                started.elapsed(),
                floor.statements.len() as u64,
                Value::Null,
            ));
        }
        Call::Get(path) => client.get(format!("{url}{path}")).send().await?,
        Call::Graphql { token, body } => {
            let mut request = client.post(format!("{url}/graphql")).json(body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await?
        }
    };
    let status = response.status();
    // What the request cost the database: the operation's statements and admission's.
    let header = |name: &str| -> u64 {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0)
    };
    let statements = header("x-sql-statements") + header("x-sql-admission-statements");
    let text = response.text().await?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!("HTTP {status}: {text}");
    }
    let mut body = Value::Null;
    if matches!(call, Call::Graphql { .. }) {
        body = serde_json::from_str(&text)?;
        if body.get("errors").is_some() {
            bail!("GraphQL errors: {text}");
        }
    }
    Ok((elapsed, statements, body))
}
