//! Appends N synthetic events to the audit log of `DATABASE_URL`, through the same code the
//! server uses, for the export benchmark (`bench/audit-export.sh`).

use countersign::audit::NewEvent;
use countersign::audit::service::append;
use countersign::db;
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
    let mut done = 0;
    while done < count {
        let txn = conn.begin().await?;
        for _ in 0..1_000.min(count - done) {
            done += 1;
            append(
                &txn,
                NewEvent {
                    actor_subject: "bench".into(),
                    actor_roles: vec!["support".into()],
                    action: "request.submitted".into(),
                    subject_type: "request".into(),
                    subject_id: format!("r{done}"),
                    request_id: None,
                    before: None,
                    after: Some(json!({ "status": "PENDING", "title": format!("Refund {done}") })),
                    reason: Some("a reason of ordinary length for an ordinary request".into()),
                    correlation_id: None,
                    idempotency_key: None,
                    summary: format!("bench submitted refund \"Refund {done}\" for 10.00 EUR"),
                },
            )
            .await
            .map_err(|err| anyhow::anyhow!("{}", err.client_message()))?;
        }
        txn.commit().await?;
    }
    println!("appended {done} events");
    Ok(())
}
