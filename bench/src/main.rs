//! `countersign-bench`: seeds a dataset straight into a database (once per backend, then
//! copied for every run), starts real Countersign servers from their binaries on copies,
//! drives each workload at each concurrency, runs each workload's floor (the statements the
//! server issued, captured and replayed) right after it, and prints one JSON line per
//! workload and concurrency. With `--compare OTHER` it runs two binaries interleaved
//! (A B, B A, …) and reports the median of the per-pair ratios B/A. See BENCHMARKS.md.

mod call;
mod explain;
mod fanout;
mod fixtures;
mod floor;
mod load;
mod peer;
mod seed;
mod server;
mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::json;

use fixtures::Fixtures;
use load::Stats;
use server::{Backend, Server, Template};

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
    /// Requests written into the database before the servers start (all statuses, with
    /// decisions and a valid audit chain).
    #[arg(long, default_value_t = 100_000)]
    dataset: usize,
    /// How deep the `_deep` workloads page before measuring (or as deep as the list goes).
    #[arg(long, default_value_t = 100_000)]
    depth: usize,
    /// Skip the floors.
    #[arg(long)]
    no_floor: bool,
    /// Skip the peers (PostGraphile 4 and 5, on PostgreSQL, when Node.js is installed).
    #[arg(long)]
    no_peer: bool,
    /// Instead of measuring: EXPLAIN (ANALYZE, BUFFERS) every statement behind the read
    /// workloads on PostgreSQL, failing on a sequential scan of a large table.
    #[arg(long)]
    explain: bool,
    /// Pending requests filed for each approve run; the run ends early if it uses them up.
    #[arg(long, default_value_t = 3000)]
    approve_pool: usize,
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// About a minute: one pair, c = 4, 2 s per workload, a small dataset, no floors.
    #[arg(long)]
    quick: bool,
    /// Instead of the workloads: live updates with this many subscribers, comma-separated
    /// (idle memory, fan-out latency and loss, churn, decisions with them ÷ without).
    #[arg(long, value_delimiter = ',')]
    fanout: Vec<usize>,
}

const ALL: [&str; 15] = [
    "healthz",
    "typename_anonymous",
    "typename_token",
    "list",
    "list_all",
    "list_deep",
    "my_queue",
    "my_queue_deep",
    "my_queue_deadline",
    "audit",
    "audit_deep",
    "request",
    "replay",
    "submit",
    "approve",
];

/// One pair's measurements of one workload at one concurrency by one binary.
#[derive(Clone)]
struct Run {
    api: Stats,
    floor: Option<Stats>,
    /// The list page as one hand-written statement.
    one_statement: Option<Stats>,
    /// The list page from PostGraphile 4 and from PostGraphile 5 on the same database.
    peer: Option<Stats>,
    peer5: Option<Stats>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.concurrency = vec![4];
        args.duration = 2;
        args.pairs = 1;
        args.dataset = 2_000;
        args.depth = 1_000;
        args.approve_pool = 800;
        args.no_floor = true;
        args.no_peer = true;
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
        let started = std::time::Instant::now();
        let (template, seeded) =
            Template::create(&binaries[0], backend, &args.postgres_url, args.dataset).await?;
        eprintln!(
            "{}: seeded {} requests, {} decisions, {} audit events in {:.0} s {:?}",
            backend.name(),
            seeded.requests,
            seeded.decisions,
            seeded.events,
            started.elapsed().as_secs_f64(),
            seeded.by_status
        );
        if args.explain {
            let outcome = explain::run(&binaries[0], backend, &args, &template, &selected).await;
            template.drop().await;
            outcome?;
            continue;
        }
        if !args.fanout.is_empty() {
            let outcome = fanout::run(fanout::FanoutArgs {
                binary: &binaries[0],
                backend,
                postgres_url: &args.postgres_url,
                template: &template,
                sizes: &args.fanout,
                pairs: args.pairs,
                duration: Duration::from_secs(args.duration),
            })
            .await;
            template.drop().await;
            outcome?;
            continue;
        }
        let outcome = measure(&args, backend, &binaries, &template, &selected).await;
        template.drop().await;
        outcome?;
    }
    Ok(())
}

async fn measure(
    args: &Args,
    backend: Backend,
    binaries: &[PathBuf],
    template: &Template,
    selected: &[&str],
) -> anyhow::Result<()> {
    let with_peer = backend == Backend::Postgres
        && selected.contains(&"list")
        && !args.no_peer
        && peer::ready()?;
    // results[(workload, c)][binary] = one Run per pair
    let mut results: BTreeMap<(usize, usize), Vec<Vec<Run>>> = BTreeMap::new();
    for pair in 0..args.pairs {
        let mut order: Vec<usize> = (0..binaries.len()).collect();
        if pair % 2 == 1 {
            order.reverse();
        }
        for which in order {
            let binary = &binaries[which];
            // Fixtures and captures through a server that traces its SQL, then the
            // measured server, without the trace, on the same database.
            let capture =
                Server::start(binary, backend, &args.postgres_url, Some(template), true).await?;
            let fixtures = Fixtures::prepare(&capture.url, args, selected).await?;
            let captured = if args.no_floor {
                BTreeMap::new()
            } else {
                fixtures.capture(&capture, selected).await?
            };
            let database = capture.halt().await;
            let server = Server::start_on(binary, database).await?;
            let mut peers: Vec<peer::Peer> = Vec::new();
            for (w, name) in selected.iter().enumerate() {
                for (ci, &c) in args.concurrency.iter().enumerate() {
                    let duration = Duration::from_secs(args.duration);
                    let cpu = || server.cpu_seconds();
                    let workload = Arc::new(fixtures.workload(name, c)?);
                    let api = load::run(&server.url, workload.clone(), c, duration, cpu).await?;
                    let mut run = Run {
                        api,
                        floor: None,
                        one_statement: None,
                        peer: None,
                        peer5: None,
                    };
                    if let Some(statements) = captured.get(*name) {
                        let floor = fixtures
                            .floor(name, c, &server.database, statements.clone())
                            .await?;
                        run.floor = Some(
                            load::run(&server.url, Arc::new(floor), c, duration, || None).await?,
                        );
                    }
                    if *name == "list" && !args.no_floor {
                        let floor = fixtures.one_statement(&server.database).await?;
                        run.one_statement = Some(
                            load::run(&server.url, Arc::new(floor), c, duration, || None).await?,
                        );
                    }
                    if *name == "list" && with_peer {
                        if peers.is_empty() {
                            for version in peer::Version::ALL {
                                let started =
                                    peer::Peer::start(version, &server.database.url).await?;
                                peer::check_same_page(&server.url, &workload, &started).await?;
                                peers.push(started);
                            }
                        }
                        for peer in &peers {
                            let page = Arc::new(workloads::Workload::Anonymous {
                                body: peer::list_page(peer.version),
                            });
                            let cpu = || peer.cpu_seconds();
                            let stats = load::run(&peer.url, page, c, duration, cpu).await?;
                            match peer.version {
                                peer::Version::V4 => run.peer = Some(stats),
                                peer::Version::V5 => run.peer5 = Some(stats),
                            }
                        }
                    }
                    results
                        .entry((w, ci))
                        .or_insert_with(|| vec![Vec::new(); binaries.len()])[which]
                        .push(run);
                }
            }
            for peer in peers {
                peer.stop().await;
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
            "dataset": args.dataset,
        });
        report(&mut line, "a", &by_binary[0]);
        if let Some(b) = by_binary.get(1) {
            report(&mut line, "b", b);
            let ratios = by_binary[0]
                .iter()
                .zip(b)
                .map(|(a, b)| b.api.per_second / a.api.per_second);
            let (median, all) = median_ratio(ratios);
            line["ratio_b_over_a"] = json!(median);
            line["ratios"] = json!(all);
        }
        println!("{line}");
    }
    Ok(())
}

/// The median run of one binary, and its ratios to the floors, per pair.
fn report(line: &mut serde_json::Value, key: &str, runs: &[Run]) {
    line[key] = median(&runs.iter().map(|r| r.api.clone()).collect::<Vec<_>>()).to_json();
    for (name, pick) in [
        (
            "floor",
            (|r: &Run| r.floor.clone()) as fn(&Run) -> Option<Stats>,
        ),
        ("one_statement", |r: &Run| r.one_statement.clone()),
        ("peer", |r: &Run| r.peer.clone()),
        ("peer5", |r: &Run| r.peer5.clone()),
    ] {
        let floors: Vec<Stats> = runs.iter().filter_map(pick).collect();
        if floors.len() != runs.len() || floors.is_empty() {
            continue;
        }
        line[format!("{key}_{name}")] = median(&floors).to_json();
        let (ratio, all) = median_ratio(
            runs.iter()
                .zip(&floors)
                .map(|(r, f)| r.api.per_second / f.per_second),
        );
        line[format!("{key}_over_{name}")] = json!(ratio);
        line[format!("{key}_over_{name}_pairs")] = json!(all);
    }
}

fn median_ratio(ratios: impl Iterator<Item = f64>) -> (f64, Vec<f64>) {
    let mut ratios: Vec<f64> = ratios.map(|r| (r * 100.0).round() / 100.0).collect();
    ratios.sort_by(f64::total_cmp);
    (ratios[ratios.len() / 2], ratios)
}

/// The run with the median throughput.
fn median(runs: &[Stats]) -> Stats {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    sorted[sorted.len() / 2].clone()
}
