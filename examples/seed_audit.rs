//! Appends N synthetic events to the audit log of `DATABASE_URL`, through the same code the
//! server uses, for the export benchmark (`bench/audit-export.sh`).

use countersign::audit::service::append;
use countersign::db;
use countersign::kernel::{Clock, CommandContext};
use sea_orm::TransactionTrait;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let url = std::env::var("DATABASE_URL")?;
    let conn = db::connect(&url).await?;
    db::migrate_up(&conn).await?;
    let ctx = CommandContext {
        actor: countersign::kernel::Viewer {
            roles: vec!["support".into()],
            ..countersign::kernel::Viewer::system()
        },
        ..CommandContext::system(Clock::system())
    };
    let mut done = 0;
    while done < count {
        let txn = conn.begin().await?;
        for _ in 0..1_000.min(count - done) {
            done += 1;
            let mut event = ctx
                .event(
                    "request.submitted",
                    "request",
                    format!("r{done}"),
                    format!("bench submitted refund \"Refund {done}\" for 10.00 EUR"),
                )
                .after(json!({ "status": "PENDING", "title": format!("Refund {done}") }))
                .reason(Some(
                    "a reason of ordinary length for an ordinary request".into(),
                ));
            event.actor_subject = "bench".into();
            append(&txn, event)
                .await
                .map_err(|err| anyhow::anyhow!("{}", err.client_message()))?;
        }
        txn.commit().await?;
    }
    println!("appended {done} events");
    Ok(())
}
