//! Background jobs every replica runs. Each is safe with several replicas at once (work is
//! claimed by guarded updates or `SKIP LOCKED`), so two replicas never do the same thing
//! twice, and each stops at a safe point on shutdown: between two rounds, never inside a
//! transaction.
//!
//! - expiry: pending requests past `expires_at` become EXPIRED (actor `system`).
//! - webhooks: the relay (`webhooks::relay`) dispatches the outbox and delivers.
//! - audit-verify: the whole hash chain re-verified, `countersign_audit_chain_ok` set.
//! - purges: expired idempotency keys; successful webhook deliveries past the retention,
//!   then the outbox entries none refers to (dead letters stay until replayed).

mod purge;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::approvals::expire::{due_for_expiry, expire};
use crate::config::Config;
use crate::error::AppError;
use crate::events::bus::{BusEvent, EventBus};
use crate::kernel::Clock;
use crate::telemetry::Metrics;
use crate::webhooks::relay::Relay;

/// The shortest time between two rounds started by commits (the relay's): a webhook
/// waits at most this long, and a busy server pays one round per gap, not per commit.
const WAKE_GAP: Duration = Duration::from_millis(50);

/// Requests expired per sweep at most; the next sweep takes the rest.
const EXPIRY_BATCH: u64 = 100;

/// The running jobs of one replica.
pub struct Jobs {
    stop: watch::Sender<bool>,
    handles: Vec<(&'static str, JoinHandle<()>)>,
    metrics: Arc<Metrics>,
}

impl Jobs {
    pub fn start(
        db: &DatabaseConnection,
        bus: &Arc<EventBus>,
        clock: &Clock,
        config: &Config,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let (stop, _) = watch::channel(false);
        let mut jobs = Self {
            stop,
            handles: Vec::new(),
            metrics: metrics.clone(),
        };
        let (db2, bus2, clock2) = (db.clone(), bus.clone(), clock.clone());
        jobs.every("expiry", config.expiry_sweep, None, move || {
            sweep_expired(db2.clone(), bus2.clone(), clock2.clone())
        });
        let relay = Arc::new(Relay::new(
            db.clone(),
            clock.clone(),
            config.webhooks.clone(),
            metrics.clone(),
            jobs.stop.subscribe(),
        )?);
        jobs.every("webhooks", config.jobs.webhook_poll, Some(bus), move || {
            let relay = relay.clone();
            async move { relay.run_once().await.map(|_| ()) }
        });
        let (db3, clock3) = (db.clone(), clock.clone());
        let retention = config.jobs.outbox_retention;
        jobs.every("purge", config.jobs.purge_every, None, move || {
            purge::run(db3.clone(), clock3.clone(), retention)
        });
        let (db4, metrics4) = (db.clone(), metrics.clone());
        jobs.every(
            "audit-verify",
            config.jobs.audit_verify_every,
            None,
            move || verify_audit_chain(db4.clone(), metrics4.clone()),
        );
        Ok(jobs)
    }

    /// Runs `round` every `period`, and at once when `wake_on` announces new audit events.
    fn every<F, Fut>(
        &mut self,
        name: &'static str,
        period: Duration,
        wake_on: Option<&Arc<EventBus>>,
        round: F,
    ) where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), AppError>> + Send,
    {
        let mut stop = self.stop.subscribe();
        let metrics = self.metrics.clone();
        let mut wake = wake_on.map(|bus| bus.subscribe());
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_round = tokio::time::Instant::now();
            loop {
                let by_bus = tokio::select! {
                    _ = stop.changed() => break,
                    _ = ticker.tick() => false,
                    Some(()) = woken(&mut wake) => true,
                };
                if by_bus {
                    // Under load every commit announces itself: one round covers all of
                    // them, at most every WAKE_GAP, instead of a round per commit.
                    let rest = WAKE_GAP.saturating_sub(last_round.elapsed());
                    tokio::select! {
                        _ = stop.changed() => break,
                        () = tokio::time::sleep(rest) => {}
                    }
                    if let Some(receiver) = wake.as_mut() {
                        while !matches!(
                            receiver.try_recv(),
                            Err(tokio::sync::broadcast::error::TryRecvError::Empty
                                | tokio::sync::broadcast::error::TryRecvError::Closed)
                        ) {}
                    }
                }
                last_round = tokio::time::Instant::now();
                match round().await {
                    Ok(()) => {
                        metrics.increment(
                            "countersign_job_runs_total",
                            &[("job", name), ("outcome", "ok")],
                        );
                        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                        metrics.set(
                            "countersign_job_last_success_timestamp_seconds",
                            &[("job", name)],
                            now,
                        );
                    }
                    Err(err) => {
                        metrics.increment(
                            "countersign_job_runs_total",
                            &[("job", name), ("outcome", "failed")],
                        );
                        tracing::warn!(
                            job = name,
                            code = err.code(),
                            "background job round failed"
                        );
                        err.log_if_internal();
                    }
                }
            }
        });
        self.handles.push((name, handle));
    }

    /// Asks every job to stop after its current round and waits up to `grace` for them;
    /// a job still busy then is aborted (a webhook attempt cut short is retried once its
    /// claim's lease runs out).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut handle) in self.handles {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                tracing::warn!(job = name, "job still busy at shutdown; aborted");
                handle.abort();
            }
        }
    }
}

/// The next announcement of new audit events, or never when not listening.
async fn woken(wake: &mut Option<tokio::sync::broadcast::Receiver<BusEvent>>) -> Option<()> {
    let Some(receiver) = wake else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(BusEvent::AuditAppended) => return Some(()),
            Ok(_) => {}
            // Missed some: something happened, so run.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return Some(()),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return std::future::pending().await;
            }
        }
    }
}

/// Re-computes the whole chain and says on `/metrics` whether it holds: the alert for a
/// tampered log must not wait for someone to ask `verifyAuditChain`.
async fn verify_audit_chain(db: DatabaseConnection, metrics: Arc<Metrics>) -> Result<(), AppError> {
    let report = crate::audit::service::verify_chain(&db, None).await?;
    metrics.set(
        "countersign_audit_chain_ok",
        &[],
        if report.ok { 1.0 } else { 0.0 },
    );
    if !report.ok {
        tracing::error!(
            first_broken_sequence = report.first_broken_sequence,
            checked = report.checked,
            "the audit chain does not verify: history was edited, deleted or reordered"
        );
    }
    Ok(())
}

async fn sweep_expired(
    db: DatabaseConnection,
    bus: Arc<EventBus>,
    clock: Clock,
) -> Result<(), AppError> {
    let due = due_for_expiry(&db, clock.now(), EXPIRY_BATCH).await?;
    let mut expired = 0;
    for id in due {
        match expire(&db, &bus, &clock, id).await {
            Ok(Some(_)) => expired += 1,
            Ok(None) => {}
            Err(err) => err.log_if_internal(),
        }
    }
    if expired > 0 {
        tracing::info!(expired, "expired pending requests");
    }
    Ok(())
}
