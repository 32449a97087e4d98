//! The per-mailbox daily table: Sum, Auth_blk, Auth_rcv, Bounced,
//! Deferred, Expired, Sent for every mailbox with events on one local day.
//!
//! Rebuilt whole from the stored events each time, in one transaction, so
//! running it again gives the same table and includes lines that arrived
//! late.

use crate::domain::Day;
use crate::store::Store;

/// Job name in `job_runs`.
pub const JOB: &str = "aggregate";

/// Builds the table of `day` and records the job; returns the number of
/// mailboxes in it.
pub async fn run(store: &Store, day: Day, now: i64) -> anyhow::Result<u64> {
    let n = store.aggregate_day(day.key()).await?;
    store
        .record_job(day.key(), JOB, &format!("{n} mailboxes"), now)
        .await?;
    tracing::info!(%day, mailboxes = n, "aggregated");
    Ok(n)
}
