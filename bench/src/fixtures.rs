//! What the workloads need in a run's database, made through the API before measuring:
//! request ids to read, pending refunds to approve (for the API and for the floor), an
//! approval to replay, the cursors of the deep pages; and the statements behind one
//! request of each workload, captured from a tracing server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Args;
use crate::call::{Call, Floor, send};
use crate::floor::{Captured, Substitution, one_statement_list, read_log};
use crate::server::{Backend, RunDatabase, Server};
use crate::workloads::{
    Workload, audit_page, cursor_at, list_page, pending_page, queue_deadline_page, queue_page,
    submit_many, token,
};

pub struct Fixtures {
    grace: String,
    bob: String,
    alice: String,
    ids: Vec<String>,
    replay: (String, String),
    /// Pending single-stage refunds, by concurrency: for the API run, the floor run, and
    /// (key 0) the capture.
    approve: Mutex<HashMap<usize, Vec<String>>>,
    approve_floor: Mutex<HashMap<usize, Vec<String>>>,
    /// `after` cursors of the deep pages, and the depth reached.
    deep: HashMap<&'static str, (Option<String>, usize)>,
    floor_db: tokio::sync::OnceCell<DatabaseConnection>,
}

/// The workloads that have a floor: every one that reaches the database.
fn has_floor(name: &str) -> bool {
    !matches!(name, "healthz" | "typename_anonymous")
}

impl Fixtures {
    pub async fn prepare(url: &str, args: &Args, selected: &[&str]) -> anyhow::Result<Self> {
        let grace = token("grace", &["admin"])?;
        let bob = token("bob", &["finance"])?;
        let alice = token("alice", &["support"])?;
        let wants = |name: &str| selected.contains(&name);
        let client = reqwest::Client::new();

        let call = Call::Graphql {
            token: Some(grace.clone()),
            body: json!({ "query": "{ requests(first: 100) { edges { node { id } } } }" }),
        };
        let (_, _, listed) = send(&client, url, &call).await?;
        let ids: Vec<String> = listed["data"]["requests"]["edges"]
            .as_array()
            .context("requests")?
            .iter()
            .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned))
            .collect();

        let mut approve = HashMap::new();
        let mut approve_floor = HashMap::new();
        if wants("approve") {
            approve.insert(0, submit_many(url, 2, 0).await?);
            for &c in &args.concurrency {
                approve.insert(c, submit_many(url, args.approve_pool, 1_000 + c).await?);
                if !args.no_floor {
                    let pool = submit_many(url, args.approve_pool, 2_000 + c).await?;
                    approve_floor.insert(c, pool);
                }
            }
        }
        let mut replay = (String::new(), String::new());
        if wants("replay") {
            let id = submit_many(url, 1, 3_000).await?.remove(0);
            let key = format!("bench-replay-{}", Uuid::now_v7());
            let first = Workload::Replay {
                token: bob.clone(),
                id: id.clone(),
                key: key.clone(),
            };
            if let Some(call) = first.next(0, 0) {
                send(&client, url, &call).await?;
            }
            replay = (id, key);
        }
        let mut deep = HashMap::new();
        for (name, field, page, who) in [
            (
                "list_deep",
                "requests",
                list_page as fn(Option<&str>) -> Value,
                &grace,
            ),
            ("my_queue_deep", "myQueue", queue_page, &bob),
            ("audit_deep", "auditEvents", audit_page, &grace),
        ] {
            if wants(name) {
                let found = cursor_at(url, who, field, page, args.depth).await?;
                eprintln!("{name}: measured {} rows deep", found.1);
                deep.insert(name, found);
            }
        }
        Ok(Self {
            grace,
            bob,
            alice,
            ids,
            replay,
            approve: Mutex::new(approve),
            approve_floor: Mutex::new(approve_floor),
            deep,
            floor_db: tokio::sync::OnceCell::new(),
        })
    }

    /// The workload `name` at concurrency `c` (0: the capture's).
    pub fn workload(&self, name: &str, c: usize) -> anyhow::Result<Workload> {
        let page = |token: &String, body: Value| Workload::Page {
            token: token.clone(),
            body,
        };
        let deep = |name: &str| self.deep.get(name).and_then(|(cursor, _)| cursor.clone());
        Ok(match name {
            "healthz" => Workload::Healthz,
            "typename_anonymous" => Workload::Typename { token: None },
            "typename_token" => Workload::Typename {
                token: Some(self.grace.clone()),
            },
            "list" => page(&self.grace, pending_page()),
            "list_all" => page(&self.grace, list_page(None)),
            "list_deep" => page(&self.grace, list_page(deep(name).as_deref())),
            "my_queue" => page(&self.bob, queue_page(None)),
            "my_queue_deep" => page(&self.bob, queue_page(deep(name).as_deref())),
            "my_queue_deadline" => page(&self.bob, queue_deadline_page()),
            "audit" => page(&self.grace, audit_page(None)),
            "audit_deep" => page(&self.grace, audit_page(deep(name).as_deref())),
            "request" => Workload::Request {
                token: self.grace.clone(),
                ids: self.ids.clone(),
            },
            "submit" => Workload::Submit {
                token: self.alice.clone(),
            },
            "replay" => Workload::Replay {
                token: self.bob.clone(),
                id: self.replay.0.clone(),
                key: self.replay.1.clone(),
            },
            "approve" => Workload::Approve {
                token: self.bob.clone(),
                pending: Mutex::new(take(&self.approve, c)),
            },
            other => anyhow::bail!("unknown workload {other}"),
        })
    }

    /// The statements one request of each selected workload made `server` run: the second
    /// of two, so a once-a-minute sighting write is not among them.
    pub async fn capture(
        &self,
        server: &Server,
        selected: &[&str],
    ) -> anyhow::Result<BTreeMap<String, (Vec<Captured>, Option<Substitution>)>> {
        let client = reqwest::Client::new();
        let log = server.log.as_ref().context("a capturing server")?;
        let mut captured = BTreeMap::new();
        for name in selected.iter().filter(|n| has_floor(n)) {
            let workload = self.workload(name, 0)?;
            let first = workload.next(0, 0).context("a first request")?;
            send(&client, &server.url, &first).await?;
            let second = workload.next(0, 1).context("a second request")?;
            let from = server.log_position();
            send(&client, &server.url, &second).await?;
            let statements = read_log(log, from)?;
            if statements.is_empty() {
                // Answered from memory (`{ __typename }` with a token, while admission
                // remembers the caller): there is no SQL to be the floor.
                anyhow::ensure!(*name == "typename_token", "{name}: no statements captured");
                continue;
            }
            let substitution = match (*name, &second) {
                ("approve", Call::Graphql { body, .. }) => Some(Substitution {
                    request: Some(Uuid::parse_str(
                        body["variables"]["input"]["id"].as_str().context("an id")?,
                    )?),
                }),
                ("submit", _) => Some(Substitution { request: None }),
                _ => None,
            };
            captured.insert((*name).to_owned(), (statements, substitution));
        }
        Ok(captured)
    }

    /// The floor of `name` at concurrency `c`: its captured statements, straight to the
    /// run's database.
    pub async fn floor(
        &self,
        name: &str,
        c: usize,
        database: &RunDatabase,
        (statements, substitution): (Vec<Captured>, Option<Substitution>),
    ) -> anyhow::Result<Workload> {
        let pending = match substitution {
            Some(Substitution {
                request: Some(_), ..
            }) => Some(Mutex::new(
                take(&self.approve_floor, c)
                    .iter()
                    .map(|id| Uuid::parse_str(id))
                    .collect::<Result<_, _>>()?,
            )),
            _ => None,
        };
        let _ = name;
        Ok(Workload::Floor {
            floor: Arc::new(Floor {
                db: self.floor_db(database).await?.clone(),
                statements,
                substitution,
            }),
            pending,
        })
    }

    /// The list page as one hand-written statement.
    pub async fn one_statement(&self, database: &RunDatabase) -> anyhow::Result<Workload> {
        let db = self.floor_db(database).await?.clone();
        let backend = match database.backend {
            Backend::Sqlite => sea_orm::DbBackend::Sqlite,
            Backend::Postgres => sea_orm::DbBackend::Postgres,
        };
        Ok(Workload::Floor {
            floor: Arc::new(Floor {
                db,
                statements: vec![Captured {
                    sql: one_statement_list(backend).to_owned(),
                    values: Vec::new(),
                }],
                substitution: None,
            }),
            pending: None,
        })
    }

    /// A pool the size of the server's (16 connections).
    async fn floor_db(&self, database: &RunDatabase) -> anyhow::Result<&DatabaseConnection> {
        self.floor_db
            .get_or_try_init(|| async {
                let mut options = ConnectOptions::new(database.url.clone());
                options.max_connections(16).sqlx_logging(false);
                Ok(Database::connect(options).await?)
            })
            .await
    }
}

fn take(pools: &Mutex<HashMap<usize, Vec<String>>>, c: usize) -> Vec<String> {
    pools
        .lock()
        .map(|mut p| p.remove(&c).unwrap_or_default())
        .unwrap_or_default()
}
