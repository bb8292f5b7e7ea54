//! The request lifecycle as a property: random sequences of submits, decisions by random
//! people, cancels, deadlines passing and a grant revoked and given back run against the
//! real server and against a pure model written here from the rules as the README states
//! them (not from the server's code), compared after every step: each call's outcome
//! (its `extensions.code`, or success) and every request's status and stage.
//!
//! Sequences come from proptest; a failing one is shrunk (each attempt on a fresh server)
//! and reported with the seed that reproduces it (`COUNTERSIGN_MODEL_SEED`). The number of
//! sequences per database is `COUNTERSIGN_MODEL_CASES` (default 8).

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::expiry::PAST_EVERY_DEADLINE;
use crate::helpers::{Backend, Persona, TestApp, eventually, spawn_app};
use crate::lifecycle_helpers::{access_grant, decide_mutation, refund, submit_with};

/// The people of the model: the demo's personas and a few more holders of the same roles,
/// so that N-of-M, "not your own request" and "one person one stage" all come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Alice,
    Sam,
    Bob,
    Erin,
    Carol,
    Dave,
    Olga,
    Frank,
    Grace,
}

const PEOPLE: [Who; 9] = [
    Who::Alice,
    Who::Sam,
    Who::Bob,
    Who::Erin,
    Who::Carol,
    Who::Dave,
    Who::Olga,
    Who::Frank,
    Who::Grace,
];

impl Who {
    fn subject(self) -> &'static str {
        match self {
            Self::Alice => "alice",
            Self::Sam => "sam",
            Self::Bob => "bob",
            Self::Erin => "erin",
            Self::Carol => "carol",
            Self::Dave => "dave",
            Self::Olga => "olga",
            Self::Frank => "frank",
            Self::Grace => "grace",
        }
    }

    fn roles(self) -> &'static [&'static str] {
        match self {
            Self::Alice => &["support"],
            // Files requests and approves other people's refunds.
            Self::Sam => &["support", "finance"],
            Self::Bob | Self::Erin => &["finance"],
            Self::Carol => &["finance_lead"],
            Self::Dave | Self::Olga => &["ops"],
            Self::Frank => &["auditor"],
            Self::Grace => &["admin"],
        }
    }

    fn holds(self, role: &str) -> bool {
        self.roles().contains(&role)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Under 1,000 EUR: one finance stage.
    SmallRefund,
    /// 1,000 EUR and over: finance, then a finance lead.
    LargeRefund,
    /// Two distinct ops approvals.
    AccessGrant,
}

impl Kind {
    fn policy(self) -> &'static str {
        match self {
            Self::SmallRefund | Self::LargeRefund => "refund",
            Self::AccessGrant => "access_grant",
        }
    }

    fn input(self) -> Value {
        match self {
            Self::SmallRefund => refund("250.00"),
            Self::LargeRefund => refund("5000.00"),
            Self::AccessGrant => access_grant(),
        }
    }

    /// Each stage's approver roles and the approvals it needs, in order.
    fn stages(self) -> &'static [(&'static [&'static str], usize)] {
        match self {
            Self::SmallRefund => &[(&["finance", "finance_lead"], 1)],
            Self::LargeRefund => &[(&["finance", "finance_lead"], 1), (&["finance_lead"], 1)],
            Self::AccessGrant => &[(&["ops"], 2)],
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Submit {
        by: Who,
        kind: Kind,
    },
    Approve {
        request: Index,
        by: Who,
    },
    Reject {
        request: Index,
        by: Who,
    },
    Cancel {
        request: Index,
        by: Who,
    },
    /// The clock moves past every deadline; the sweeper expires what is pending.
    PassEveryDeadline,
    /// An admin grants (true) or revokes (false) finance's sight of refunds.
    FinanceSeesRefunds(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let who = proptest::sample::select(PEOPLE.to_vec());
    let kind = prop_oneof![
        Just(Kind::SmallRefund),
        Just(Kind::LargeRefund),
        Just(Kind::AccessGrant)
    ];
    let filer = prop_oneof![Just(Who::Alice), Just(Who::Sam)];
    prop_oneof![
        4 => (filer, kind).prop_map(|(by, kind)| Op::Submit { by, kind }),
        6 => (any::<Index>(), who.clone()).prop_map(|(request, by)| Op::Approve { request, by }),
        1 => (any::<Index>(), who.clone()).prop_map(|(request, by)| Op::Reject { request, by }),
        1 => (any::<Index>(), who).prop_map(|(request, by)| Op::Cancel { request, by }),
        1 => Just(Op::PassEveryDeadline),
        1 => any::<bool>().prop_map(Op::FinanceSeesRefunds),
    ]
}

/// A request as the model knows it.
#[derive(Clone, Debug)]
struct Modelled {
    id: Value,
    kind: Kind,
    requester: Who,
    status: &'static str,
    stage: usize,
    /// (stage, approver), in order.
    approvals: Vec<(usize, Who)>,
    /// Who decided it (approvals and the rejection), who keep read-only sight.
    deciders: Vec<Who>,
}

struct Model {
    requests: Vec<Modelled>,
    finance_sees_refunds: bool,
}

impl Model {
    /// `request.view` on the request's policy, from the demo grants.
    fn grant_sees(&self, who: Who, kind: Kind) -> bool {
        let refund = kind.policy() == "refund";
        who.holds("auditor")
            || who.holds("admin")
            || (refund && who.holds("finance_lead"))
            || (refund && who.holds("finance") && self.finance_sees_refunds)
            || (!refund && who.holds("ops"))
    }

    fn sees(&self, who: Who, r: &Modelled) -> bool {
        r.requester == who || self.grant_sees(who, r.kind) || r.deciders.contains(&who)
    }

    /// What deciding should answer, applied to the model when it succeeds.
    fn decide(&mut self, index: usize, by: Who, approve: bool) -> Option<&'static str> {
        let r = &self.requests[index];
        if !self.sees(by, r) {
            return Some("NOT_FOUND");
        }
        if r.status != "PENDING" {
            return Some("INVALID_TRANSITION");
        }
        let (roles, required) = r.kind.stages()[r.stage - 1];
        let refused = !self.grant_sees(by, r.kind)
            || !roles.iter().any(|role| by.holds(role))
            || r.requester == by
            || r.deciders.contains(&by);
        if refused {
            return Some("FORBIDDEN");
        }
        let r = &mut self.requests[index];
        r.deciders.push(by);
        if !approve {
            r.status = "REJECTED";
            return None;
        }
        r.approvals.push((r.stage, by));
        let here = r.approvals.iter().filter(|(s, _)| *s == r.stage).count();
        if here >= required {
            if r.stage < r.kind.stages().len() {
                r.stage += 1;
            } else {
                r.status = "APPROVED";
            }
        }
        None
    }

    fn cancel(&mut self, index: usize, by: Who) -> Option<&'static str> {
        let r = &self.requests[index];
        if !self.sees(by, r) {
            return Some("NOT_FOUND");
        }
        if r.requester != by && !by.holds("admin") {
            return Some("FORBIDDEN");
        }
        if r.status != "PENDING" {
            return Some("INVALID_TRANSITION");
        }
        self.requests[index].status = "CANCELLED";
        None
    }
}

fn token(app: &TestApp, who: Who) -> String {
    let roles: Vec<String> = who.roles().iter().map(|r| (*r).to_owned()).collect();
    app.token(who.subject(), &roles)
}

const REQUESTS: &str = "{ requests(first: 100) { edges { node { id status currentStage } } } }";
const CANCEL: &str =
    "mutation($input: CancelRequestInput!) { cancelRequest(input: $input) { request { id } } }";
const GRANT: &str =
    "mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role } }";
const REVOKE: &str =
    "mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role } }";

/// What the server holds: each request's status and stage, by id.
async fn server_state(app: &TestApp) -> HashMap<String, (String, i64)> {
    let listed = app.graphql_as(Persona::Grace, REQUESTS, json!({})).await;
    listed.expect_ok()["requests"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            let node = &e["node"];
            let id = node["id"].as_str().expect("an id").to_owned();
            let status = node["status"].as_str().expect("a status").to_owned();
            (id, (status, node["currentStage"].as_i64().unwrap_or(0)))
        })
        .collect()
}

/// Runs `ops` on a fresh server and the model; the first disagreement, if any.
async fn disagreement(backend: Backend, ops: &[Op]) -> Option<String> {
    let app = spawn_app(backend).await;
    let mut model = Model {
        requests: Vec::new(),
        finance_sees_refunds: true,
    };
    for (step, op) in ops.iter().enumerate() {
        let (expected, answer) = match op.clone() {
            Op::Submit { by, kind } => {
                let answer = submit_with(&app, &token(&app, by), kind.input()).await;
                if let Some(request) = answer.data().get("submitRequest") {
                    model.requests.push(Modelled {
                        id: request["request"]["id"].clone(),
                        kind,
                        requester: by,
                        status: "PENDING",
                        stage: 1,
                        approvals: Vec::new(),
                        deciders: Vec::new(),
                    });
                }
                (None, Some(answer))
            }
            Op::Approve { request, by } | Op::Reject { request, by } => {
                if model.requests.is_empty() {
                    continue;
                }
                let index = request.index(model.requests.len());
                let approve = matches!(op, Op::Approve { .. });
                let field = if approve {
                    "approveRequest"
                } else {
                    "rejectRequest"
                };
                let input = json!({ "id": model.requests[index].id, "comment": "checked" });
                let answer = app
                    .graphql(
                        Some(&token(&app, by)),
                        &decide_mutation(field),
                        json!({ "input": input }),
                    )
                    .await;
                (model.decide(index, by, approve), Some(answer))
            }
            Op::Cancel { request, by } => {
                if model.requests.is_empty() {
                    continue;
                }
                let index = request.index(model.requests.len());
                let input = json!({ "id": model.requests[index].id, "reason": "not needed" });
                let answer = app
                    .graphql(Some(&token(&app, by)), CANCEL, json!({ "input": input }))
                    .await;
                (model.cancel(index, by), Some(answer))
            }
            Op::PassEveryDeadline => {
                app.clock.advance(PAST_EVERY_DEADLINE);
                for r in &mut model.requests {
                    if r.status == "PENDING" {
                        r.status = "EXPIRED";
                    }
                }
                let pending = model
                    .requests
                    .iter()
                    .filter(|r| r.status == "EXPIRED")
                    .count();
                eventually("the sweeper expires what was pending", || async {
                    let state = server_state(&app).await;
                    let expired = state.values().filter(|(s, _)| s == "EXPIRED").count();
                    (expired == pending).then_some(())
                })
                .await;
                (None, None)
            }
            Op::FinanceSeesRefunds(on) => {
                if model.finance_sees_refunds == on {
                    continue;
                }
                model.finance_sees_refunds = on;
                let grant = json!({ "input": { "role": "finance", "action": "REQUEST_VIEW", "policy": "refund" } });
                let answer = app
                    .graphql_as(Persona::Grace, if on { GRANT } else { REVOKE }, grant)
                    .await;
                (None, Some(answer))
            }
        };
        if let Some(answer) = answer.filter(|a| a.error_code() != expected) {
            return Some(format!(
                "step {step}, {op:?}: the model expected {expected:?}, the server said {}",
                answer.body
            ));
        }
        let state = server_state(&app).await;
        for r in &model.requests {
            let id = r.id.as_str().unwrap_or_default();
            let modelled = (r.status.to_owned(), r.stage as i64);
            if state.get(id) != Some(&modelled) {
                return Some(format!(
                    "step {step}, {op:?}: request {id} is {:?} on the server, {modelled:?} in the model",
                    state.get(id)
                ));
            }
        }
        if state.len() != model.requests.len() {
            return Some(format!(
                "step {step}: the server holds {} requests",
                state.len()
            ));
        }
    }
    None
}

backend_tests!(the_request_lifecycle_agrees_with_its_model);

async fn the_request_lifecycle_agrees_with_its_model(backend: Backend) {
    let cases: u32 = std::env::var("COUNTERSIGN_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("COUNTERSIGN_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| d.as_nanos() as u64)
        });
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let sequences = proptest::collection::vec(op(), 1..30);
    println!("{backend:?}: {cases} sequences from COUNTERSIGN_MODEL_SEED={seed}");
    for case in 0..cases {
        let mut tree = sequences.new_tree(&mut runner).expect("a sequence");
        let Some(mut failure) = disagreement(backend, &tree.current()).await else {
            continue;
        };
        // Shrink: simplify while it still fails, as proptest's own runner does.
        let mut smallest = tree.current();
        for _ in 0..64 {
            if !tree.simplify() {
                break;
            }
            match disagreement(backend, &tree.current()).await {
                Some(found) => {
                    failure = found;
                    smallest = tree.current();
                }
                None => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
        panic!(
            "case {case} (COUNTERSIGN_MODEL_SEED={seed}): {failure}\nsmallest sequence: {smallest:#?}"
        );
    }
}
