//! Live updates at the scale of an ops floor (`--fanout 100,1000,10000`): a WebSocket
//! client that holds thousands of `requestEvents` subscriptions against one server, and
//! what it measures —
//!
//! - **idle memory**: the server's RSS before and after the sockets open, per subscription;
//! - **fan-out**: refunds filed at a steady rate; for every subscriber and every event,
//!   the time from sending the mutation to receiving the event (so it includes the
//!   mutation's own time), events lost or duplicated (must be 0), and deliveries per
//!   second of server CPU;
//! - **churn**: the sockets opened and closed three times, and the RSS after each round;
//! - **decisions under load**: `approveRequest` at c = 16 with no subscribers, with `n`
//!   clerks' consoles open (events judged for each, delivered to none), and with `n`
//!   auditors (every event delivered to each), spread over this server and a second
//!   replica on the same database, interleaved; the ratios to "none".
//!
//! Fan-out subscribers are auditors (they see every request) and select what the console
//! shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::load;
use crate::server::{Backend, Server, Template};
use crate::workloads::{Workload, submit_many, token};

/// The console's subscription: what changed, and the request as it now stands.
const EVENTS: &str = "subscription { requestEvents { cursor kind occurredAt actor { subject name }
    request { id status version title amount currency requester { subject name } } } }";

/// Refunds filed per fan-out run, and how fast.
const EVENTS_PER_RUN: usize = 100;
const FILE_EVERY: Duration = Duration::from_millis(50);

/// What each subscriber saw: request id → when each of its events arrived.
type Seen = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

struct Subscriber {
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

/// Opens `n` subscriptions on `url` (200 handshakes at a time) and returns once every one
/// is acknowledged and subscribed.
async fn open(url: &str, n: usize, token: &str) -> anyhow::Result<Vec<Subscriber>> {
    let ws_url = format!("{}/graphql/ws", url.replacen("http", "ws", 1));
    let mut subscribers = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let opened =
            futures_util::future::join_all(chunk.iter().map(|_| subscribe(&ws_url, token))).await;
        for subscriber in opened {
            subscribers.push(subscriber?);
        }
    }
    Ok(subscribers)
}

async fn subscribe(ws_url: &str, token: &str) -> anyhow::Result<Subscriber> {
    let mut request = ws_url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    // Small buffers: ten thousand of these live in this process too.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("connection_ack") => break,
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("no connection_ack: {other:?}"),
        }
    }
    let subscribe = json!({ "id": "events", "type": "subscribe", "payload": { "query": EVENTS } });
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    let seen: Seen = Arc::default();
    let mine = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if message["type"] != "next" {
                continue;
            }
            let event = &message["payload"]["data"]["requestEvents"];
            if let Some(id) = event["request"]["id"].as_str() {
                if let Ok(mut seen) = mine.lock() {
                    seen.entry(id.to_owned()).or_default().push(Instant::now());
                }
            }
        }
    });
    Ok(Subscriber { seen, task })
}

fn close(subscribers: Vec<Subscriber>) {
    for subscriber in subscribers {
        subscriber.task.abort();
    }
}

/// Resident memory of a process, in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Waits for the server's RSS to settle, and reads it. Allocators give freed memory back
/// lazily, if at all, so a reading is taken only once the RSS has stayed within 1 % for
/// three seconds (at most 30 s): a reading in the middle of a purge says nothing.
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    const STEP: Duration = Duration::from_millis(500);
    const STEADY_STEPS: usize = 6;
    let mut window = vec![rss_kib(pid).context("reading the server's RSS")?];
    for _ in 0..60 {
        tokio::time::sleep(STEP).await;
        window.push(rss_kib(pid).context("reading the server's RSS")?);
        if window.len() > STEADY_STEPS {
            window.remove(0);
            let (low, high) = window
                .iter()
                .fold((u64::MAX, 0), |(low, high), &v| (low.min(v), high.max(v)));
            if (high - low) * 100 <= high {
                return Ok(high);
            }
        }
    }
    Ok(window.last().copied().unwrap_or_default())
}

pub struct FanoutArgs<'a> {
    pub binary: &'a std::path::Path,
    pub backend: Backend,
    pub postgres_url: &'a str,
    pub template: &'a Template,
    pub sizes: &'a [usize],
    pub pairs: usize,
    pub duration: Duration,
}

pub async fn run(args: FanoutArgs<'_>) -> anyhow::Result<()> {
    let auditor = token("frank", &["auditor"])?;
    for &n in args.sizes {
        let server = Server::start(
            args.binary,
            args.backend,
            args.postgres_url,
            Some(args.template),
            false,
        )
        .await?;
        let outcome = match fan_out(&server, n, &auditor).await {
            Ok(mut line) => decisions(&args, &server, n, &auditor)
                .await
                .map(|decisions| {
                    line["decisions"] = decisions;
                    line
                }),
            Err(err) => Err(err),
        };
        server.stop().await;
        let mut line = outcome?;
        line["backend"] = json!(args.backend.name());
        println!("{line}");
    }
    Ok(())
}

/// Idle memory, fan-out latency and loss, churn.
async fn fan_out(server: &Server, n: usize, auditor: &str) -> anyhow::Result<Value> {
    let pid = server.pid().context("the server's pid")?;
    let rss_before = settled_rss(pid).await?;
    let subscribers = open(&server.url, n, auditor).await?;
    let rss_idle = settled_rss(pid).await?;
    let per_subscription_kib = (rss_idle.saturating_sub(rss_before)) as f64 / n as f64;

    // Refunds filed one at a time, at a steady pace; each one's send time.
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    for k in 0..EVENTS_PER_RUN {
        let at = Instant::now();
        let ids = submit_many(&server.url, 1, 900_000 + k).await?;
        for id in ids {
            sent.insert(id, at);
        }
        tokio::time::sleep_until((at + FILE_EVERY).into()).await;
    }
    // Wait for every subscriber to have every event, or give up after 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = subscribers.iter().all(|s| {
            s.seen
                .lock()
                .map(|seen| sent.keys().all(|id| seen.contains_key(id)))
                .unwrap_or(false)
        });
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let mut latencies = Vec::with_capacity(n * EVENTS_PER_RUN);
    let (mut lost, mut duplicated) = (0usize, 0usize);
    for subscriber in &subscribers {
        let seen = subscriber
            .seen
            .lock()
            .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
        for (id, at) in &sent {
            match seen.get(id).map(Vec::as_slice) {
                None | Some([]) => lost += 1,
                Some([first, rest @ ..]) => {
                    duplicated += rest.len();
                    latencies.push(first.saturating_duration_since(*at));
                }
            }
        }
    }
    let delivered = latencies.len();
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| round(d.as_secs_f64() * 1000.0))
    };
    let (p50, p99) = (at(0.5), at(0.99));
    close(subscribers);

    // Churn: open and close them all three times.
    let rss_start = settled_rss(pid).await?;
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let opened = open(&server.url, n, auditor).await?;
        close(opened);
        rounds.push(settled_rss(pid).await?);
    }
    // Whether what is kept is given back later, idle or once the process works again
    // (allocators reclaim some freed memory only on their next allocations).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_later = settled_rss(pid).await?;
    submit_many(&server.url, 16, 990_000).await?;
    let after_work = settled_rss(pid).await?;
    Ok(json!({
        "workload": "fanout",
        "subscribers": n,
        "rss_kib_before": rss_before,
        "rss_kib_idle": rss_idle,
        "rss_kib_per_idle_subscription": round(per_subscription_kib),
        "events": EVENTS_PER_RUN,
        "commit_to_receipt_ms": { "p50": p50, "p99": p99 },
        "lost": lost,
        "duplicated": duplicated,
        "deliveries_per_cpu_second": cpu.filter(|c| *c > 0.0).map(|c| round(delivered as f64 / c)),
        "seconds": round(wall),
        // Against the RSS before any socket opened: what the process keeps once they all
        // closed (`start` is after the fan-out's sockets closed).
        "churn_rss_kib": {
            "before_sockets": rss_before,
            "start": rss_start,
            "after_rounds": rounds,
            "idle_10_s_later": idle_later,
            "after_16_submits": after_work,
        },
    }))
}

/// Decisions at c = 16 with no subscribers, with `n` clerks' consoles open (support
/// users: the refunds being approved are not theirs, so each event is judged for each of
/// them and delivered to none — the ops floor's common case), and with `n` auditors (every
/// event delivered to every one). Subscribers are spread over this server and a replica on
/// PostgreSQL. Interleaved per pair; the medians of the per-pair ratios to "none".
async fn decisions(
    args: &FanoutArgs<'_>,
    server: &Server,
    n: usize,
    auditor: &str,
) -> anyhow::Result<Value> {
    // Two replicas listening, on PostgreSQL (SQLite is one process's database).
    let replica = match args.backend {
        Backend::Postgres => Some(Server::replica(args.binary, &server.database).await?),
        Backend::Sqlite => None,
    };
    let bob = token("bob", &["finance"])?;
    let clerk = token("clerk", &["support"])?;
    let variants = [
        ("none", None),
        ("clerks", Some(&clerk)),
        ("auditors", Some(&auditor.to_owned())),
    ];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut runs = Vec::new();
    for pair in 0..args.pairs {
        let mut stats = Vec::new();
        for (k, (_, viewer)) in variants.iter().enumerate() {
            let pool = submit_many(&server.url, 2_000, 800_000 + pair * 10 + k).await?;
            let subscribers = match (viewer, &replica) {
                (None, _) => Vec::new(),
                (Some(viewer), Some(replica)) => {
                    let mut here = open(&server.url, n / 2, viewer).await?;
                    here.extend(open(&replica.url, n - n / 2, viewer).await?);
                    here
                }
                (Some(viewer), None) => open(&server.url, n, viewer).await?,
            };
            let workload = Arc::new(Workload::Approve {
                token: bob.clone(),
                pending: Mutex::new(pool),
            });
            let cpu = || server.cpu_seconds();
            let ran = load::run(&server.url, workload, 16, args.duration, cpu).await;
            close(subscribers);
            stats.push(ran?);
        }
        for (k, s) in stats.iter().enumerate() {
            ratios[k].push(s.per_second / stats[0].per_second);
        }
        let run: serde_json::Map<String, Value> = variants
            .iter()
            .zip(&stats)
            .map(|((name, _), s)| ((*name).to_owned(), s.to_json()))
            .collect();
        runs.push(Value::Object(run));
    }
    if let Some(replica) = replica {
        replica.stop().await;
    }
    let median = |mut r: Vec<f64>| {
        r.sort_by(f64::total_cmp);
        json!({ "median": round(r[r.len() / 2]), "pairs": r.iter().map(|x| round(*x)).collect::<Vec<_>>() })
    };
    Ok(json!({
        "concurrency": 16,
        "clerks_over_none": median(ratios[1].clone()),
        "auditors_over_none": median(ratios[2].clone()),
        "runs": runs,
    }))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
