//! Who may see a request, and who may decide it now.
//!
//! Each rule is written here once, in two forms where reads need it: as Rust, for a row
//! already in hand (`viewerCanApprove`, `eligibleApprovers`, the decide command, the
//! subscription), and as SQL, for rows filtered in the database (`requests`, `request`,
//! the rows the decide and cancel commands load, `myQueue`). The API tests
//! `visibility_agrees_…`, `my_queue_agrees_…` and `hostile::a_decider_…` check on the
//! same rows that the two forms agree.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{decision, policy, policy_stage, request};
use sea_orm::sea_query::{Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use super::model::{Action, Grants, Scope};

/// The stored status of a request still being decided (`approvals::model::Status::Pending`;
/// a unit test there keeps the two equal).
pub const PENDING: &str = "PENDING";

/// Who is asking: a subject and the roles their token carries, with their grants.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    pub subject: &'a str,
    pub roles: &'a [String],
    pub grants: &'a Grants,
}

/// What the decide rule needs to know of a request's policy version.
#[derive(Clone, Copy)]
pub struct PolicyFacts<'a> {
    pub stages: &'a [policy_stage::Model],
    pub allow_same_approver_across_stages: bool,
}

// ---------------------------------------------------------------------------------------
// Visibility

/// May `asker` see `request`: their own, one their `request.view` grants reach, or one
/// they decided (`deciders` are the subjects who did). A decider keeps sight of what they
/// decided in every status, even after losing the grant, so a late or repeated decision
/// is told what happened rather than "no such request"; that sight is read-only, since
/// deciding needs the grant ([`may_decide_now`]).
pub fn can_see(asker: Asker<'_>, request: &request::Model, deciders: &[String]) -> bool {
    request.requester_subject == asker.subject
        || grants_see(asker.grants, request)
        || deciders.iter().any(|d| d == asker.subject)
}

/// The half of [`can_see`] that holds for everyone with these grants, whoever they are.
pub fn grants_see(grants: &Grants, request: &request::Model) -> bool {
    grants.allows(Action::RequestView, Some(&request.policy_key))
}

/// [`can_see`] as SQL.
pub fn visible(asker: Asker<'_>) -> Condition {
    match asker.grants.scope(Action::RequestView) {
        Scope::All => Condition::all(),
        Scope::Only(keys) => {
            let mut any = Condition::any()
                .add(request::Column::RequesterSubject.eq(asker.subject))
                .add(Expr::exists(decided_by(asker.subject)));
            if !keys.is_empty() {
                any = any.add(request::Column::PolicyKey.is_in(keys));
            }
            any
        }
    }
}

/// The decisions `subject` made on the outer query's request, as a subquery for `EXISTS`
/// (in [`visible`] and [`decidable_now`]).
fn decided_by(subject: &str) -> SelectStatement {
    let mut query = Query::select();
    query
        .expr(Expr::val(1))
        .from(decision::Entity)
        .and_where(
            Expr::col((decision::Entity, decision::Column::RequestId))
                .equals((request::Entity, request::Column::Id)),
        )
        .and_where(Expr::col((decision::Entity, decision::Column::ApproverSubject)).eq(subject));
    query
}

// ---------------------------------------------------------------------------------------
// Cancelling

/// Who may cancel a request they can see: its requester, or whoever manages its policy
/// (`policy.manage`). Whether it can still be cancelled (pending, before its deadline) is
/// the state machine's question (`approvals::model::check_actionable`).
pub fn may_cancel(asker: Asker<'_>, request: &request::Model) -> bool {
    request.requester_subject == asker.subject
        || asker
            .grants
            .allows(Action::PolicyManage, Some(&request.policy_key))
}

/// Why [`may_cancel`] said no, for the client.
pub const NOT_CANCELLER: &str = "only the requester or an admin may cancel a request";

// ---------------------------------------------------------------------------------------
// Deciding

/// The roles that may decide a stage.
pub fn stage_roles(stage: &policy_stage::Model) -> Vec<String> {
    serde_json::from_value(stage.approver_roles.clone()).unwrap_or_default()
}

fn holds_stage_role(roles: &[String], stage: &policy_stage::Model) -> bool {
    stage_roles(stage).iter().any(|r| roles.contains(r))
}

/// Why someone may not decide a stage they can see. Each is FORBIDDEN to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotDecider {
    /// They see the request only as a past decider: their grants no longer reach its policy.
    NoGrant,
    /// They hold none of the stage's approver roles.
    NotStageRole,
    /// Nobody decides their own request.
    OwnRequest,
    /// They already decided this stage.
    DecidedStage,
    /// They decided another stage, and the policy wants a different person per stage.
    DecidedOtherStage,
}

impl NotDecider {
    pub fn message(&self, stage: &policy_stage::Model) -> String {
        match self {
            Self::NoGrant => "you decided this request before, but may no longer decide \
                              requests under its policy"
                .into(),
            Self::NotStageRole => format!(
                "stage {} ({}) is decided by {}",
                stage.position,
                stage.name,
                stage_roles(stage).join(" or ")
            ),
            Self::OwnRequest => "nobody may decide their own request".into(),
            Self::DecidedStage => "you already decided this stage".into(),
            Self::DecidedOtherStage => "one person may approve only one stage of a request".into(),
        }
    }
}

/// The decide rule for a stage the asker can see: their grants reach the request (sight as a
/// past decider is read-only), they hold one of its approver roles, the request is not theirs, and they have not decided this stage (nor, unless the policy
/// allows it, any other stage of the request).
pub fn check_decider(
    asker: Asker<'_>,
    request: &request::Model,
    stage: &policy_stage::Model,
    policy: PolicyFacts<'_>,
    decisions: &[decision::Model],
) -> Result<(), NotDecider> {
    if !grants_see(asker.grants, request) {
        return Err(NotDecider::NoGrant);
    }
    if !holds_stage_role(asker.roles, stage) {
        return Err(NotDecider::NotStageRole);
    }
    if request.requester_subject == asker.subject {
        return Err(NotDecider::OwnRequest);
    }
    let mine = decisions
        .iter()
        .filter(|d| d.approver_subject == asker.subject);
    let mut decided_other = false;
    for decision in mine {
        if decision.stage_position == stage.position {
            return Err(NotDecider::DecidedStage);
        }
        decided_other = true;
    }
    if decided_other && !policy.allow_same_approver_across_stages {
        return Err(NotDecider::DecidedOtherStage);
    }
    Ok(())
}

/// Whether the request is still open to decisions at `now`: pending and not past its
/// deadline (the sweeper may not have marked it EXPIRED yet).
pub fn open_at(request: &request::Model, now: DateTime<Utc>) -> bool {
    request.status == PENDING && request.expires_at > now
}

/// "May decide now", the whole of it: the request is open and the decide rule lets the
/// asker decide its current stage.
pub fn may_decide_now(
    asker: Asker<'_>,
    request: &request::Model,
    policy: PolicyFacts<'_>,
    decisions: &[decision::Model],
    now: DateTime<Utc>,
) -> bool {
    let Some(stage) = request
        .current_stage
        .and_then(|pos| policy.stages.iter().find(|s| s.position == pos))
    else {
        return false;
    };
    open_at(request, now) && check_decider(asker, request, stage, policy, decisions).is_ok()
}

/// [`may_decide_now`] as SQL, for `myQueue`. `stages` are the stage definitions to
/// consider (those whose roles the asker holds suffice) and `policies` the policy versions
/// they belong to. `None` when no stage is the asker's: the queue is empty without asking
/// the database.
///
/// Visibility is applied by leaving out the stages of policies the asker may not view:
/// a request they did not file is visible exactly when its policy is, so this is
/// [`visible`] without its `OR`, which the planner would misjudge (see [`open_at_opaque`]).
pub fn decidable_now(
    asker: Asker<'_>,
    stages: &[policy_stage::Model],
    policies: &HashMap<Uuid, policy::Model>,
    now: DateTime<Utc>,
) -> Option<Condition> {
    let mut any_stage = Condition::any();
    let mut found = false;
    let viewable = asker.grants.scope(Action::RequestView);
    for stage in stages.iter().filter(|s| holds_stage_role(asker.roles, s)) {
        let Some(policy) = policies
            .get(&stage.policy_id)
            .filter(|p| viewable.covers(&p.key))
        else {
            continue;
        };
        found = true;
        let across = policy.allow_same_approver_across_stages;
        let mut decided_by_asker = decided_by(asker.subject);
        if across {
            decided_by_asker.and_where(
                Expr::col((decision::Entity, decision::Column::StagePosition)).eq(stage.position),
            );
        }
        any_stage = any_stage.add(
            Condition::all()
                .add(request::Column::PolicyId.eq(stage.policy_id))
                .add(request::Column::CurrentStage.eq(stage.position))
                .add(Expr::exists(decided_by_asker).not()),
        );
    }
    found.then(|| {
        Condition::all()
            .add(request::Column::Status.eq(PENDING))
            .add(open_at_opaque(now))
            .add(request::Column::RequesterSubject.ne(asker.subject))
            .add(any_stage)
    })
}

/// `expires_at > now`, written so the planner neither estimates it from `expires_at`'s
/// histogram nor answers it from the `(status, expires_at)` index. Pending requests are
/// the young ones, nearly all still open, but the planner multiplies "pending" by "not yet
/// expired" as if they were independent, expects fewer rows than a page, and so reads and
/// sorts every open pending request to return 50 (64 ms on a million requests) instead of
/// walking `(status, policy_id, current_stage, created_at, id)` in order and stopping at a
/// page. An `<>` on an opaque expression is estimated as nearly always true, which is the
/// truth here.
fn open_at_opaque(now: DateTime<Utc>) -> Expr {
    Expr::expr(Expr::case(request::Column::ExpiresAt.gt(now), 1).finally(0)).ne(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Grant;
    use serde_json::json;

    fn request(requester: &str, stage: i32) -> request::Model {
        let now = Utc::now();
        request::Model {
            id: Uuid::now_v7(),
            policy_id: Uuid::nil(),
            policy_key: "refund".into(),
            policy_version: 1,
            title: "t".into(),
            description: String::new(),
            payload: json!({}),
            amount: "1.00".into(),
            currency: "EUR".into(),
            requester_subject: requester.into(),
            status: PENDING.into(),
            current_stage: Some(stage),
            version: 1,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::hours(1),
            decided_at: None,
        }
    }

    fn stage(position: i32, roles: &[&str]) -> policy_stage::Model {
        policy_stage::Model {
            id: Uuid::now_v7(),
            policy_id: Uuid::nil(),
            position,
            name: format!("stage {position}"),
            approver_roles: json!(roles),
            required_approvals: 1,
            min_amount: None,
            min_amounts: None,
        }
    }

    fn decision(by: &str, stage: i32) -> decision::Model {
        decision::Model {
            id: Uuid::now_v7(),
            request_id: Uuid::nil(),
            stage_position: stage,
            approver_subject: by.into(),
            verdict: "APPROVE".into(),
            comment: String::new(),
            created_at: Utc::now(),
        }
    }

    fn view_refunds() -> Grants {
        Grants::new([Grant {
            action: Action::RequestView,
            policy: Some("refund".into()),
        }])
    }

    #[test]
    fn the_decide_rule() {
        let stages = [stage(1, &["finance"]), stage(2, &["finance_lead"])];
        let policy = PolicyFacts {
            stages: &stages,
            allow_same_approver_across_stages: false,
        };
        let grants = view_refunds();
        let finance = vec!["finance".to_string()];
        let bob = Asker {
            subject: "bob",
            roles: &finance,
            grants: &grants,
        };
        let at_one = request("alice", 1);
        assert_eq!(check_decider(bob, &at_one, &stages[0], policy, &[]), Ok(()));
        assert_eq!(
            check_decider(bob, &at_one, &stages[1], policy, &[]),
            Err(NotDecider::NotStageRole)
        );
        assert_eq!(
            check_decider(bob, &request("bob", 1), &stages[0], policy, &[]),
            Err(NotDecider::OwnRequest)
        );
        assert_eq!(
            check_decider(bob, &at_one, &stages[0], policy, &[decision("bob", 1)]),
            Err(NotDecider::DecidedStage)
        );
        let both = vec!["finance".to_string(), "finance_lead".to_string()];
        let carol = Asker {
            subject: "carol",
            roles: &both,
            grants: &grants,
        };
        let at_two = request("alice", 2);
        assert_eq!(
            check_decider(carol, &at_two, &stages[1], policy, &[decision("carol", 1)]),
            Err(NotDecider::DecidedOtherStage)
        );
        let lenient = PolicyFacts {
            allow_same_approver_across_stages: true,
            ..policy
        };
        assert_eq!(
            check_decider(carol, &at_two, &stages[1], lenient, &[decision("carol", 1)]),
            Ok(())
        );
    }

    #[test]
    fn may_decide_now_needs_sight_an_open_request_and_the_rule() {
        let stages = [stage(1, &["finance"])];
        let policy = PolicyFacts {
            stages: &stages,
            allow_same_approver_across_stages: false,
        };
        let finance = vec!["finance".to_string()];
        let grants = view_refunds();
        let bob = Asker {
            subject: "bob",
            roles: &finance,
            grants: &grants,
        };
        let open = request("alice", 1);
        let now = Utc::now();
        assert!(may_decide_now(bob, &open, policy, &[], now));
        assert!(!may_decide_now(bob, &open, policy, &[], open.expires_at));
        let no_grants = Grants::default();
        let blind = Asker {
            grants: &no_grants,
            ..bob
        };
        assert!(!may_decide_now(blind, &open, policy, &[], now));
        assert_eq!(
            check_decider(blind, &open, &stages[0], policy, &[]),
            Err(NotDecider::NoGrant)
        );
        let mut decided = open.clone();
        decided.status = "APPROVED".into();
        assert!(!may_decide_now(bob, &decided, policy, &[], now));
    }

    #[test]
    fn a_decider_keeps_sight_without_the_grant() {
        let no_grants = Grants::default();
        let roles = vec!["finance".to_string()];
        let bob = Asker {
            subject: "bob",
            roles: &roles,
            grants: &no_grants,
        };
        let decided = request("alice", 2);
        assert!(!can_see(bob, &decided, &[]));
        assert!(!can_see(bob, &decided, &["carol".into()]));
        assert!(can_see(bob, &decided, &["carol".into(), "bob".into()]));
        assert!(can_see(bob, &request("bob", 1), &[]));
    }
}
