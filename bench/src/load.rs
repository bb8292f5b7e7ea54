//! The load driver: `c` workers send one workload's requests back to back for a while;
//! every answer is checked (HTTP 200 and, for GraphQL, no `errors` in the body — GraphQL
//! errors come back as HTTP 200), its latency recorded, and its statements
//! (`x-sql-statements` and `x-sql-admission-statements`) summed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::call::send;
use crate::workloads::Workload;

/// What one run of one workload at one concurrency measured.
#[derive(Clone, Debug)]
pub struct Stats {
    pub requests: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub statements: f64,
    pub cpu_ms: Option<f64>,
}

impl Stats {
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "per_second": round(self.per_second),
            "p50_ms": round(self.p50_ms),
            "p99_ms": round(self.p99_ms),
            "statements_per_request": round(self.statements),
            "server_cpu_ms_per_request": self.cpu_ms.map(round),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs `workload` with `concurrency` workers for `duration` against `url`.
/// `cpu` reads the server's CPU seconds, to report CPU per request.
pub async fn run(
    url: &str,
    workload: Arc<Workload>,
    concurrency: usize,
    duration: Duration,
    cpu: impl Fn() -> Option<f64>,
) -> anyhow::Result<Stats> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let cpu_before = cpu();
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..concurrency).map(|worker| {
        let client = client.clone();
        let workload = workload.clone();
        let url = url.to_owned();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statements = 0u64;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let Some(call) = workload.next(worker, n) else {
                    break; // a consumable workload ran out of rows
                };
                let (elapsed, cost, _) = send(&client, &url, &call).await?;
                latencies.push(elapsed);
                statements += cost;
                n += 1;
            }
            anyhow::Ok((latencies, statements))
        })
    });
    let mut latencies = Vec::new();
    let mut statements = 0u64;
    for worker in futures_util::future::join_all(workers).await {
        let (mine, cost) = worker??;
        latencies.extend(mine);
        statements += cost;
    }
    let elapsed = started.elapsed().min(duration).as_secs_f64();
    let cpu_ms = match (cpu_before, cpu()) {
        (Some(before), Some(after)) if !latencies.is_empty() => {
            Some((after - before) * 1000.0 / latencies.len() as f64)
        }
        _ => None,
    };
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Stats {
        requests: latencies.len(),
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        statements: statements as f64 / latencies.len().max(1) as f64,
        cpu_ms,
    })
}
