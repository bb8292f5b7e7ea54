//! `countersign-bench`: starts real Countersign servers from their binaries, seeds them
//! through the API, drives each workload at each concurrency, and prints one JSON line per
//! workload and concurrency. With `--compare OTHER` it runs two binaries interleaved
//! (A B, B A, …) and reports the median of the per-pair ratios B/A. See BENCHMARKS.md.

mod load;
mod server;
mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::json;

use load::Stats;
use server::{Backend, Server};
use workloads::{Workload, submit_many, token};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The server binary to measure (A).
    #[arg(long, default_value = "target/release/countersign")]
    server: PathBuf,
    /// A second binary (B), run interleaved with A; ratios are B / A.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// `sqlite`, `postgres` or `both`.
    #[arg(long, default_value = "both")]
    backend: String,
    /// PostgreSQL to create bench databases in. Say `sslmode=disable` to measure without TLS.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Seconds each workload runs at each concurrency.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Interleaved repetitions (pairs, with --compare); the median is reported.
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// Requests filed before measuring (the list and queue read these).
    #[arg(long, default_value_t = 2000)]
    seed: usize,
    /// Pending requests filed for each approve run; the run ends early if it uses them up.
    #[arg(long, default_value_t = 3000)]
    approve_pool: usize,
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// About a minute: one pair, c = 4, 2 s per workload, a small seed.
    #[arg(long)]
    quick: bool,
}

const ALL: [&str; 9] = [
    "healthz",
    "typename_anonymous",
    "typename_token",
    "list",
    "my_queue",
    "request",
    "replay",
    "submit",
    "approve",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.concurrency = vec![4];
        args.duration = 2;
        args.pairs = 1;
        args.seed = 300;
        args.approve_pool = 800;
    }
    let selected: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|w| args.workloads.is_empty() || args.workloads.iter().any(|s| s == w))
        .collect();
    let backends = match args.backend.as_str() {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut binaries = vec![args.server.clone()];
    binaries.extend(args.compare.clone());
    for backend in backends {
        // results[(workload, c)][binary] = one Stats per pair
        let mut results: BTreeMap<(usize, usize), Vec<Vec<Stats>>> = BTreeMap::new();
        for pair in 0..args.pairs {
            let mut order: Vec<usize> = (0..binaries.len()).collect();
            if pair % 2 == 1 {
                order.reverse();
            }
            for which in order {
                let server = Server::start(&binaries[which], backend, &args.postgres_url).await?;
                let ids = submit_many(&server.url, args.seed, usize::MAX - pair).await?;
                for (w, name) in selected.iter().enumerate() {
                    for (ci, &c) in args.concurrency.iter().enumerate() {
                        let workload = Arc::new(prepare(name, &server.url, &ids, &args, c).await?);
                        let duration = Duration::from_secs(args.duration);
                        let stats =
                            load::run(&server.url, workload, c, duration, || server.cpu_seconds())
                                .await?;
                        let slot = results
                            .entry((w, ci))
                            .or_insert_with(|| vec![Vec::new(); binaries.len()]);
                        slot[which].push(stats);
                    }
                }
                server.stop().await;
            }
        }
        for ((w, ci), by_binary) in results {
            let mut line = json!({
                "backend": backend.name(),
                "workload": selected[w],
                "concurrency": args.concurrency[ci],
                "pairs": args.pairs,
                "a": median(&by_binary[0]).to_json(),
            });
            if let Some(b) = by_binary.get(1) {
                let mut ratios: Vec<f64> = by_binary[0]
                    .iter()
                    .zip(b)
                    .map(|(a, b)| b.per_second / a.per_second)
                    .collect();
                ratios.sort_by(f64::total_cmp);
                line["b"] = median(b).to_json();
                line["ratio_b_over_a"] = json!((ratios[ratios.len() / 2] * 100.0).round() / 100.0);
                line["ratios"] = json!(
                    ratios
                        .iter()
                        .map(|r| (r * 100.0).round() / 100.0)
                        .collect::<Vec<_>>()
                );
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// The run with the median throughput.
fn median(runs: &[Stats]) -> Stats {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    sorted[sorted.len() / 2].clone()
}

async fn prepare(
    name: &str,
    url: &str,
    ids: &[String],
    args: &Args,
    c: usize,
) -> anyhow::Result<Workload> {
    let grace = token("grace", &["admin"])?;
    let bob = token("bob", &["finance"])?;
    let alice = token("alice", &["support"])?;
    Ok(match name {
        "healthz" => Workload::Healthz,
        "typename_anonymous" => Workload::Typename { token: None },
        "typename_token" => Workload::Typename { token: Some(grace) },
        "list" => Workload::List { token: grace },
        "my_queue" => Workload::MyQueue { token: bob },
        "request" => Workload::Request {
            token: grace,
            ids: ids.to_vec(),
        },
        "submit" => Workload::Submit { token: alice },
        "replay" => {
            let id = submit_many(url, 1, c).await?.remove(0);
            let key = format!("bench-replay-{}", uuid::Uuid::now_v7());
            let first = Workload::Replay {
                token: bob.clone(),
                id: id.clone(),
                key: key.clone(),
            };
            if let Some(call) = first.next(0, 0) {
                load::send(&reqwest::Client::new(), url, &call).await?;
            }
            Workload::Replay {
                token: bob,
                id,
                key,
            }
        }
        "approve" => Workload::Approve {
            token: bob,
            pending: Mutex::new(submit_many(url, args.approve_pool, 1_000_000 + c).await?),
        },
        other => anyhow::bail!("unknown workload {other}"),
    })
}
