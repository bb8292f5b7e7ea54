//! Shutdown and crashes, through the real binary: SIGTERM lets what is in flight finish,
//! closes sockets with 1001 and exits 0; `kill -9` in the middle of a burst of approvals
//! loses nothing that was acknowledged, and the same idempotency keys replay afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{Backend, TestDatabase};
use crate::lifecycle_helpers::{decide_mutation, refund, submit_mutation};

/// A `countersign serve` child and what its banner said.
pub struct Served {
    pub child: tokio::process::Child,
    pub address: String,
    pub tokens: HashMap<String, String>,
}

async fn serve(database_url: &str, cwd: &PathBuf) -> Served {
    serve_with(database_url, cwd, &[]).await
}

/// `countersign serve` on `database_url` from `cwd`, with `env` added to an empty
/// environment, once its banner has printed the address and the demo tokens.
pub async fn serve_with(database_url: &str, cwd: &PathBuf, env: &[(&str, &str)]) -> Served {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(cwd)
        .kill_on_drop(true)
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("COUNTERSIGN_BIND", "127.0.0.1:0")
        .env("COUNTERSIGN_RATE_LIMIT", "100000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting countersign serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut address, mut tokens) = (None, HashMap::new());
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("reading stdout") {
            if let Some(rest) = line.strip_prefix("Countersign listening on ") {
                address = Some(rest.trim().to_owned());
            } else if line.starts_with("  ") {
                let fields: Vec<&str> = line.split_whitespace().collect();
                tokens.insert(fields[0].to_owned(), fields[2].to_owned());
            } else if line.starts_with("Open GraphiQL as") {
                break;
            }
        }
    })
    .await
    .expect("serve prints its banner within 60 s");
    // Keep reading so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served {
        child,
        address: address.expect("the listening address"),
        tokens,
    }
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cs-stop-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

async fn graphql(
    address: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, reqwest::Error> {
    // A connection per request: no idle keep-alive connection for shutdown to close under us.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let response = client
        .post(format!("{address}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?;
    response.json().await
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("a running child").to_string();
    let sent = std::process::Command::new("kill")
        .args([name, &pid])
        .status();
    assert!(sent.expect("kill").success());
}

/// An HTTP/1.1 POST whose body arrives in two halves: the server is in the middle of it
/// until the second half is written.
struct SlowRequest {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

async fn start_slow_request(address: &str, token: &str, body: &Value) -> SlowRequest {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let body = body.to_string().into_bytes();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).await.expect("half a body");
    SlowRequest {
        stream,
        rest: rest.to_vec(),
    }
}

impl SlowRequest {
    /// Sends the rest and reads the whole answer: its status line and JSON body.
    async fn finish(mut self) -> (String, Value) {
        self.stream
            .write_all(&self.rest)
            .await
            .expect("the rest of the body");
        let mut answer = Vec::new();
        self.stream
            .read_to_end(&mut answer)
            .await
            .expect("an answer");
        let answer = String::from_utf8(answer).expect("utf-8");
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        // Chunked or not, the JSON object is the part between the outer braces.
        let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }
}

backend_tests!(
    sigterm_lets_in_flight_requests_finish_closes_sockets_with_1001_and_exits_0,
    kill_9_during_approvals_loses_nothing_acknowledged_and_keys_replay_after_restart
);

async fn sigterm_lets_in_flight_requests_finish_closes_sockets_with_1001_and_exits_0(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let cwd = scratch_dir();
    let mut served = serve(&database.url, &cwd).await;
    let (alice, frank) = (
        served.tokens["alice"].clone(),
        served.tokens["frank"].clone(),
    );

    let url = format!("{}/graphql/ws", served.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    socket.send(Message::Text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {frank}") } }).to_string().into())).await.unwrap();
    assert!(
        matches!(socket.next().await, Some(Ok(Message::Text(_)))),
        "an ack"
    );

    // Load from other clients while the in-flight requests wait for their bodies.
    let load = (0..4)
        .map(|n| {
            let (address, alice) = (served.address.clone(), alice.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                for i in 0.. {
                    let mut input = refund("12.00");
                    input["idempotencyKey"] = json!(format!("load-{n}-{i}"));
                    match graphql(
                        &address,
                        &alice,
                        &submit_mutation(),
                        json!({ "input": input }),
                    )
                    .await
                    {
                        Ok(body) => {
                            assert!(body["errors"].is_null(), "{body}");
                            answered += 1;
                        }
                        // Refused or cut before the server took the request: the listener
                        // is closed. Nothing it accepted is lost (checked below).
                        Err(_) => return answered,
                    }
                }
                answered
            })
        })
        .collect::<Vec<_>>();
    let mut in_flight = Vec::new();
    for n in 0..3 {
        let mut input = refund("30.00");
        input["idempotencyKey"] = json!(format!("in-flight-{n}"));
        let body = json!({ "query": submit_mutation(), "variables": { "input": input } });
        in_flight.push(start_slow_request(&served.address, &alice, &body).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&served.child, "-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;

    for request in in_flight {
        let (status, body) = request.finish().await;
        assert!(
            status.contains("200"),
            "an in-flight request is answered after SIGTERM: {status} {body}"
        );
        assert_eq!(
            body["data"]["submitRequest"]["request"]["status"], "PENDING",
            "{body}"
        );
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(frame)) = frame {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the socket closes within 10 s");
    assert_eq!(closed, Some(1001));
    let exit = tokio::time::timeout(Duration::from_secs(30), served.child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(exit.success(), "exit 0 after SIGTERM, got {exit}");
    let mut answered = 0;
    for worker in load {
        answered += worker.await.unwrap();
    }
    assert!(answered > 0, "the load ran");

    // Everything acknowledged is there after a restart.
    let served = serve(&database.url, &cwd).await;
    let listed = graphql(
        &served.address,
        &served.tokens["grace"],
        "{ requests(first: 100) { edges { node { id } } } verifyAuditChain { ok } }",
        json!({}),
    )
    .await
    .unwrap();
    let stored = listed["data"]["requests"]["edges"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        stored >= answered + 3,
        "{stored} stored, {answered} + 3 acknowledged"
    );
    assert_eq!(listed["data"]["verifyAuditChain"]["ok"], true);
    std::fs::remove_dir_all(cwd).ok();
}

async fn kill_9_during_approvals_loses_nothing_acknowledged_and_keys_replay_after_restart(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let cwd = scratch_dir();
    let mut served = serve(&database.url, &cwd).await;
    let (alice, bob) = (served.tokens["alice"].clone(), served.tokens["bob"].clone());
    let mut ids = Vec::new();
    for n in 0..40 {
        let body = graphql(
            &served.address,
            &alice,
            &submit_mutation(),
            json!({ "input": refund(&format!("{}.00", 20 + n)) }),
        )
        .await
        .unwrap();
        ids.push(
            body["data"]["submitRequest"]["request"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let approve = decide_mutation("approveRequest");
    let workers = ids.chunks(5).map(|chunk| {
        let (address, bob, approve, chunk) = (served.address.clone(), bob.clone(), approve.clone(), chunk.to_vec());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for id in chunk {
                let input = json!({ "input": { "id": id, "comment": "ok", "idempotencyKey": format!("approve-{id}") } });
                match graphql(&address, &bob, &approve, input).await {
                    Ok(body) if body["errors"].is_null() => acknowledged.push(id),
                    _ => return acknowledged,
                }
            }
            acknowledged
        })
    }).collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_millis(150)).await;
    signal(&served.child, "-KILL");
    let _ = served.child.wait().await;
    let mut acknowledged = Vec::new();
    for worker in workers {
        acknowledged.extend(worker.await.unwrap());
    }
    eprintln!(
        "kill -9 after {} of {} approvals were acknowledged",
        acknowledged.len(),
        ids.len()
    );

    let served = serve(&database.url, &cwd).await;
    let bob = served.tokens["bob"].clone();
    let status =
        "query($id: ID!) { request(id: $id) { status decisions { approver { subject } } } }";
    for id in &acknowledged {
        let seen = graphql(&served.address, &bob, status, json!({ "id": id }))
            .await
            .unwrap();
        assert_eq!(
            seen["data"]["request"]["status"], "APPROVED",
            "acknowledged {id} survived: {seen}"
        );
    }
    // Every key again: the acknowledged replay; the rest run now or replay what
    // committed just before the kill. Either way each request is decided once.
    for id in &ids {
        let input = json!({ "input": { "id": id, "comment": "ok", "idempotencyKey": format!("approve-{id}") } });
        let again = graphql(&served.address, &bob, &approve, input)
            .await
            .unwrap();
        assert!(again["errors"].is_null(), "{again}");
        if acknowledged.contains(id) {
            assert_eq!(again["data"]["approveRequest"]["replayed"], true, "{again}");
        }
        let seen = graphql(&served.address, &bob, status, json!({ "id": id }))
            .await
            .unwrap();
        assert_eq!(
            seen["data"]["request"]["decisions"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{seen}"
        );
    }
    let chain = graphql(
        &served.address,
        &served.tokens["frank"],
        "{ verifyAuditChain { ok checked } }",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(chain["data"]["verifyAuditChain"]["ok"], true, "{chain}");
    std::fs::remove_dir_all(cwd).ok();
}
