//! Per-caller limits: a rate per subject (HTTP operations and WebSocket subscribes
//! together), a rate per IP address for callers without a valid token (failed attempts
//! included, so guessing tokens is slow), and a cap on one subject's open WebSockets.
//!
//! Checked before anything touches the database, so a flood costs no statements and, as
//! nothing runs, writes nothing to the audit log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;

/// Forget idle callers' buckets after this many checks, so the maps stay small.
const SWEEP_EVERY: u64 = 10_000;

pub struct Throttle {
    subjects: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
    max_connections: usize,
    connections: Mutex<HashMap<String, usize>>,
}

/// Refused: try again after this long.
#[derive(Clone, Copy, Debug)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, for the `Retry-After` header.
    pub fn seconds(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Throttle {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            subjects: RateLimiter::keyed(quota(config.rate_per_second, config.burst)),
            addresses: RateLimiter::keyed(quota(
                config.anonymous_rate_per_second,
                config.anonymous_rate_per_second.saturating_mul(2),
            )),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            max_connections: config.max_connections_per_subject,
            connections: Mutex::default(),
        }
    }

    /// One more operation by `subject`.
    pub fn subject(&self, subject: &str) -> Result<(), RetryAfter> {
        self.sweep();
        self.subjects
            .check_key(&subject.to_owned())
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// One more request without a valid token from `address`.
    pub fn address(&self, address: IpAddr) -> Result<(), RetryAfter> {
        self.sweep();
        self.addresses
            .check_key(&address)
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.subjects.retain_recent();
            self.addresses.retain_recent();
            self.subjects.shrink_to_fit();
            self.addresses.shrink_to_fit();
        }
    }

    /// A slot for one more WebSocket of `subject`, held until dropped; `None` at the cap.
    pub fn connection(self: &Arc<Self>, subject: &str) -> Option<ConnectionSlot> {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(subject.to_owned()).or_default();
        if *count >= self.max_connections {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            throttle: self.clone(),
            subject: subject.to_owned(),
        })
    }
}

/// One open WebSocket counted against its subject's cap.
pub struct ConnectionSlot {
    throttle: Arc<Throttle>,
    subject: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .throttle
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.subject) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32, connections: usize) -> LimitsConfig {
        LimitsConfig {
            rate_per_second: rate,
            burst,
            anonymous_rate_per_second: rate,
            max_connections_per_subject: connections,
            ..LimitsConfig::defaults(crate::config::Environment::Development)
        }
    }

    #[test]
    fn a_subject_gets_its_burst_then_waits_and_others_are_unaffected() {
        let throttle = Throttle::new(&limits(1, 3, 1));
        for _ in 0..3 {
            assert!(throttle.subject("alice").is_ok());
        }
        let refused = throttle.subject("alice").unwrap_err();
        assert!(refused.seconds() >= 1);
        assert!(throttle.subject("bob").is_ok());
    }

    #[test]
    fn a_subject_holds_at_most_its_connections_until_one_closes() {
        let throttle = Arc::new(Throttle::new(&limits(1, 1, 2)));
        let first = throttle.connection("carol").unwrap();
        let _second = throttle.connection("carol").unwrap();
        assert!(throttle.connection("carol").is_none());
        assert!(throttle.connection("dave").is_some());
        drop(first);
        assert!(throttle.connection("carol").is_some());
    }
}
