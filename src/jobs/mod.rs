//! Background jobs every replica runs. Each is safe with several replicas at once: work is
//! claimed by guarded updates, so two replicas never do the same thing twice.
//!
//! - expiry: pending requests past `expires_at` become EXPIRED (actor `system`).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use crate::approvals::expire::{due_for_expiry, expire};
use crate::events::bus::EventBus;
use crate::kernel::Clock;

/// Requests expired per sweep at most; the next sweep takes the rest.
const EXPIRY_BATCH: u64 = 100;

/// Starts the expiry sweeper; abort the handle to stop it.
pub fn start_expiry(
    db: DatabaseConnection,
    bus: Arc<EventBus>,
    clock: Clock,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let due = match due_for_expiry(&db, clock.now(), EXPIRY_BATCH).await {
                Ok(due) => due,
                Err(err) => {
                    err.log_if_internal();
                    continue;
                }
            };
            let mut expired = 0;
            for id in due {
                match expire(&db, &clock, id).await {
                    Ok(Some(_)) => expired += 1,
                    Ok(None) => {}
                    Err(err) => err.log_if_internal(),
                }
            }
            if expired > 0 {
                tracing::info!(expired, "expired pending requests");
                bus.audit_appended();
            }
        }
    })
}
