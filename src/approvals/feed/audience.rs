//! Who listens to the feed, grouped so each event is judged once per audience (subscribers
//! with the same roles and filter), not once per subscriber, and only the subscribers an
//! event is for are woken.
//!
//! An audience sees an event whole when its roles' grants reach the request's policy;
//! otherwise only its members who filed or decided the request see it, found by subject.
//! A member the feed never wakes costs nothing per event: when it next wakes it skips, on
//! the feed's word, everything its audience had judged not for it.
//!
//! The word is kept in two numbers. `Audience::judged`: every event up to it has been
//! judged for every member that had joined when it was read into the ring (published
//! after that batch's wakes). `Member::owed`: the earliest event judged for the member
//! since it last woke. A member that waited with its cursor at the ring's end joined
//! before anything newer was read, so on waking it may move its cursor to just before
//! `owed`, and never past `judged`: what lies between was judged, and not for it. The
//! member still judges what it receives itself, against the newest grants, before
//! delivering anything; the feed's judgement only decides whom to wake.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use uuid::Uuid;

use super::{FeedEvent, RoleGrants};
use crate::access::Grants;
use crate::access::requests::grants_see;

/// What a subscriber asked for, beyond what their grants allow.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct Interest {
    /// The viewer's roles, sorted and without repeats: equal sets are one audience.
    roles: Vec<String>,
    pub policy: Option<String>,
    pub status: Option<&'static str>,
    pub request_id: Option<Uuid>,
}

impl Interest {
    pub fn new(
        roles: &[String],
        policy: Option<String>,
        status: Option<&'static str>,
        request_id: Option<Uuid>,
    ) -> Self {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        Self {
            roles,
            policy,
            status,
            request_id,
        }
    }

    /// Whether the filter lets `event` through (who may see it is another question).
    pub fn wants(&self, event: &FeedEvent) -> bool {
        let request = &event.request;
        self.request_id.is_none_or(|id| id == request.id)
            && self
                .policy
                .as_ref()
                .is_none_or(|p| *p == request.policy_key)
            && self.status.is_none_or(|s| s == request.status)
    }
}

struct Member {
    subject: String,
    owed: AtomicI64,
    wake: Notify,
}

impl Member {
    fn owe(&self, sequence: i64) {
        self.owed.fetch_min(sequence, Ordering::AcqRel);
        self.wake.notify_one();
    }
}

#[derive(Default)]
struct Members {
    all: HashMap<u64, Arc<Member>>,
    by_subject: HashMap<String, Vec<Arc<Member>>>,
}

struct Audience {
    interest: Interest,
    judged: AtomicI64,
    members: Mutex<Members>,
    /// The grants of `interest.roles` under the snapshot they were worked out from; only
    /// the feed's task uses it.
    grants: Mutex<Option<(Arc<RoleGrants>, Grants)>>,
}

impl Audience {
    fn judge(&self, events: &[Arc<FeedEvent>], role_grants: &Arc<RoleGrants>) {
        let Some(last) = events.last().map(|e| e.sequence) else {
            return;
        };
        let mut cached = lock(&self.grants);
        if !cached
            .as_ref()
            .is_some_and(|(of, _)| Arc::ptr_eq(of, role_grants))
        {
            *cached = Some((role_grants.clone(), role_grants.of(&self.interest.roles)));
        }
        let grants = cached.as_ref().map(|(_, grants)| grants);
        let members = lock(&self.members);
        let mut first_for_all = None;
        for event in events.iter().filter(|e| self.interest.wants(e)) {
            if grants.is_some_and(|grants| grants_see(grants, &event.request)) {
                first_for_all.get_or_insert(event.sequence);
            } else {
                // Those who see it as themselves: its requester and its deciders.
                let subjects =
                    std::iter::once(&event.request.requester_subject).chain(&event.deciders);
                for subject in subjects {
                    if let Some(them) = members.by_subject.get(subject) {
                        them.iter().for_each(|m| m.owe(event.sequence));
                    }
                }
            }
        }
        if let Some(first) = first_for_all {
            members.all.values().for_each(|m| m.owe(first));
        }
        drop(members);
        self.judged.fetch_max(last, Ordering::AcqRel);
    }
}

/// Every audience listening to one feed.
#[derive(Default)]
pub struct Audiences {
    next_id: AtomicU64,
    by_interest: Mutex<HashMap<Interest, Arc<Audience>>>,
}

impl Audiences {
    /// Joins `subject` to the audience for `interest`. `read_through` is the newest
    /// sequence in the ring now: a new audience has judged nothing after it.
    pub fn join(
        self: &Arc<Self>,
        subject: &str,
        interest: Interest,
        read_through: i64,
    ) -> Listener {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Arc::new(Member {
            subject: subject.to_owned(),
            owed: AtomicI64::new(i64::MAX),
            wake: Notify::new(),
        });
        let audience = {
            let mut by_interest = lock(&self.by_interest);
            let audience = by_interest
                .entry(interest.clone())
                .or_insert_with(|| {
                    Arc::new(Audience {
                        interest,
                        judged: AtomicI64::new(read_through),
                        members: Mutex::default(),
                        grants: Mutex::default(),
                    })
                })
                .clone();
            // Added while the map is held, so the audience is never removed as empty
            // between being found and being joined.
            let mut members = lock(&audience.members);
            members.all.insert(id, member.clone());
            members
                .by_subject
                .entry(member.subject.clone())
                .or_default()
                .push(member.clone());
            drop(members);
            audience
        };
        Listener {
            audiences: self.clone(),
            audience,
            member,
            id,
        }
    }

    /// Judges a batch just read into the ring for every audience, waking the members it is
    /// for.
    pub fn judge(&self, events: &[Arc<FeedEvent>], grants: &Arc<RoleGrants>) {
        let audiences: Vec<Arc<Audience>> = lock(&self.by_interest).values().cloned().collect();
        for audience in audiences {
            audience.judge(events, grants);
        }
    }

    /// How many audiences there are (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.by_interest).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn leave(&self, audience: &Arc<Audience>, id: u64, member: &Arc<Member>) {
        let mut by_interest = lock(&self.by_interest);
        let mut members = lock(&audience.members);
        members.all.remove(&id);
        if let Some(same) = members.by_subject.get_mut(&member.subject) {
            same.retain(|m| !Arc::ptr_eq(m, member));
            if same.is_empty() {
                members.by_subject.remove(&member.subject);
            }
        }
        let empty = members.all.is_empty();
        drop(members);
        if empty {
            by_interest.remove(&audience.interest);
        }
    }
}

/// One subscriber's place in its audience; leaves it when dropped.
pub struct Listener {
    audiences: Arc<Audiences>,
    audience: Arc<Audience>,
    member: Arc<Member>,
    id: u64,
}

impl Listener {
    /// Waits until the feed has judged an event to be for this subscriber (or returns at
    /// once if it did so since the last call).
    pub async fn woken(&self) {
        self.member.wake.notified().await;
    }

    /// Where a subscriber that waited with `cursor` at the ring's end, and has just woken,
    /// may resume: past every event judged not for it since.
    pub fn resume_from(&self, cursor: i64) -> i64 {
        let judged = self.audience.judged.load(Ordering::Acquire);
        let owed = self.member.owed.swap(i64::MAX, Ordering::AcqRel);
        let skip_to = if owed == i64::MAX {
            judged
        } else {
            judged.min(owed - 1)
        };
        cursor.max(skip_to)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.audiences.leave(&self.audience, self.id, &self.member);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use entity::request;

    use super::*;
    use crate::access::{Action, Grant};
    use crate::approvals::feed::RequestEventKind;

    fn event(sequence: i64, policy: &str, requester: &str) -> Arc<FeedEvent> {
        let now = Utc::now();
        Arc::new(FeedEvent {
            sequence,
            kind: RequestEventKind::Submitted,
            request: request::Model {
                id: Uuid::now_v7(),
                policy_id: Uuid::now_v7(),
                policy_key: policy.to_owned(),
                policy_version: 1,
                title: "t".to_owned(),
                description: String::new(),
                payload: serde_json::json!({}),
                amount: "1.00".to_owned(),
                currency: "EUR".to_owned(),
                requester_subject: requester.to_owned(),
                status: "PENDING".to_owned(),
                current_stage: Some(0),
                version: 1,
                created_at: now,
                updated_at: now,
                expires_at: now,
                decided_at: None,
            },
            actor: requester.to_owned(),
            occurred_at: now,
            deciders: Vec::new(),
            resolved: Mutex::default(),
        })
    }

    /// Finance sees refunds; support sees only what it filed.
    fn grants() -> Arc<RoleGrants> {
        let view = |policy: &str| Grant {
            action: Action::RequestView,
            policy: Some(policy.to_owned()),
        };
        Arc::new(RoleGrants(HashMap::from([
            ("finance".to_owned(), vec![view("refund")]),
            ("support".to_owned(), vec![]),
        ])))
    }

    async fn was_woken(listener: &Listener) -> bool {
        tokio::time::timeout(Duration::from_millis(20), listener.woken())
            .await
            .is_ok()
    }

    fn interest(role: &str) -> Interest {
        Interest::new(&[role.to_owned()], None, None, None)
    }

    #[tokio::test]
    async fn only_the_members_an_event_is_for_are_woken_and_the_rest_skip_it() {
        let audiences = Arc::new(Audiences::default());
        let finance = audiences.join("bob", interest("finance"), 10);
        let clerk = audiences.join("alice", interest("support"), 10);
        let other_clerk = audiences.join("dave", interest("support"), 10);
        assert_eq!(audiences.len(), 2, "same roles and filter: one audience");

        let batch = [
            event(11, "payout", "erin"),
            event(12, "refund", "erin"),
            event(13, "refund", "alice"),
        ];
        audiences.judge(&batch, &grants());

        assert!(was_woken(&finance).await);
        assert_eq!(
            finance.resume_from(10),
            11,
            "resumes just before the first for it"
        );
        assert!(was_woken(&clerk).await, "alice filed 13");
        assert_eq!(clerk.resume_from(10), 12);
        assert!(!was_woken(&other_clerk).await, "nothing was for dave");
        assert_eq!(
            other_clerk.resume_from(10),
            13,
            "skips what was judged not for him"
        );

        audiences.judge(&[event(14, "payout", "erin")], &grants());
        assert!(!was_woken(&finance).await);
        assert_eq!(finance.resume_from(13), 14);
    }

    #[tokio::test]
    async fn a_member_never_skips_past_what_its_audience_has_judged() {
        let audiences = Arc::new(Audiences::default());
        let clerk = audiences.join("alice", interest("support"), 10);
        // Owed an event from a batch whose judgement has not been published yet.
        clerk.member.owe(30);
        assert_eq!(clerk.resume_from(10), 10);
        // A cursor already past the owed event stays where it is.
        clerk.member.owe(12);
        assert_eq!(clerk.resume_from(20), 20);
    }

    #[tokio::test]
    async fn filters_are_part_of_the_audience_and_the_last_to_leave_removes_it() {
        let audiences = Arc::new(Audiences::default());
        let roles = ["finance".to_owned()];
        let payouts = audiences.join(
            "bob",
            Interest::new(&roles, Some("payout".to_owned()), None, None),
            0,
        );
        let all = audiences.join("carol", Interest::new(&roles, None, None, None), 0);
        assert_eq!(audiences.len(), 2);
        audiences.judge(&[event(1, "refund", "erin")], &grants());
        assert!(was_woken(&all).await);
        assert!(!was_woken(&payouts).await, "filtered to payouts");
        drop(all);
        assert_eq!(audiences.len(), 1);
        drop(payouts);
        assert!(audiences.is_empty());
    }
}
