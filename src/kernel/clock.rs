//! The clock every domain timestamp comes from.
//!
//! Timestamps are kept to the microsecond: what both databases store exactly, so a
//! timestamp read back (or carried in a cursor, or hashed into the audit chain) compares
//! equal to the one written. Token times (`exp`, `iat`) are not domain time: they are
//! checked against the real clock by the JWT verifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// The real time plus an offset that only tests move ([`Clock::advance`]). Cloning shares
/// the offset, so every part of one app (and a replica built with the same clock) agrees.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    /// The real time.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        let offset = Duration::microseconds(self.offset_micros.load(Ordering::Relaxed));
        (Utc::now() + offset).trunc_subsecs(6)
    }

    /// Moves this clock (and its clones) forward: the seam tests use to let deadlines
    /// pass without editing rows. Nothing in the server calls it.
    pub fn advance(&self, by: Duration) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_microsecond_precise_and_advance_moves_every_clone() {
        let clock = Clock::system();
        let shared = clock.clone();
        assert_eq!(clock.now().timestamp_subsec_nanos() % 1_000, 0);
        let before = shared.now();
        clock.advance(Duration::hours(2));
        assert!(shared.now() - before >= Duration::hours(2));
    }
}
