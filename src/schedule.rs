//! The nightly job, level-triggered.
//!
//! A tick does not ask "is it 00:30?" but "which complete local days are
//! not yet aggregated and alerted?", and does them in order. A day is
//! complete `alerts.settle_minutes` after the local midnight that ends it,
//! computed in the configured zone for that very date, so a 23- or 25-hour
//! day around a daylight-saving change ends when its own midnight comes.
//! A service that was down over midnight catches up when it starts; days
//! older than `alerts.catch_up_days` are aggregated but not warned about
//! (a warning days late helps nobody). Each tick then purges what is
//! older than `retention_days`, in small batches.
//!
//! tokio-cron-scheduler fires the tick every minute, in UTC; all the
//! calendar logic is here, against the database, so the scheduler's own
//! time zone handling and missed runs do not matter.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::domain::Day;
use crate::store::Store;

/// The instant a local day begins: its first valid local time at or after
/// midnight (a zone may skip midnight itself).
pub fn start_of(day: Day, tz: Tz) -> DateTime<Utc> {
    let date = day.date();
    let mut t = NaiveTime::MIN;
    for _ in 0..48 {
        if let Some(dt) = tz.from_local_datetime(&date.and_time(t)).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(30);
    }
    // No zone skips a whole day of half hours; fall back to UTC midnight.
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// The local day an instant falls on.
pub fn day_of(t: DateTime<Utc>, tz: Tz) -> Day {
    Day::from_date(t.with_timezone(&tz).date_naive())
}

/// The last day that is complete at `now`: its end (the next day's start)
/// plus the settle time has passed.
pub fn last_complete(now: DateTime<Utc>, tz: Tz, settle_minutes: u32) -> Day {
    let today = day_of(now, tz);
    if now >= start_of(today, tz) + chrono::Duration::minutes(i64::from(settle_minutes)) {
        today.pred()
    } else {
        today.pred().pred()
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    pub aggregated: Vec<Day>,
    pub alerted: Vec<Day>,
    /// Days aggregated but too old to warn about.
    pub not_warned: Vec<Day>,
    pub warnings: usize,
    /// Days whose rows were laid out in key order (PostgreSQL).
    pub clustered: Vec<Day>,
    /// Days whose plain access rows were packed ([`Store::pack_day`]).
    pub packed: Vec<Day>,
    pub purged: u64,
}

/// Job name in `job_runs` of laying a complete day's rows out in key
/// order ([`Store::cluster_day`]).
pub const CLUSTER_JOB: &str = "cluster";

/// Does what is due at `now`.
pub async fn tick(store: &Store, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Tick> {
    let tz = config.tz()?;
    let mut out = Tick::default();
    let last = last_complete(now, tz, config.alerts.settle_minutes);
    let today = day_of(now, tz);
    let keep_from = config.retention_start(today);
    // Warn only about the last catch_up_days complete days.
    let warn_from = last.minus(config.alerts.catch_up_days.max(1) - 1);
    if let Some(first) = store.first_event_day().await?.and_then(Day::from_key) {
        let first = first.max(keep_from);
        let done = store.jobs_since(first.key()).await?;
        let is_done = |d: Day, job: &str| done.iter().any(|(day, j)| *day == d.key() && j == job);
        let mut d = first;
        while d <= last {
            let t = now.timestamp();
            if !is_done(d, crate::aggregate::JOB) {
                crate::aggregate::run(store, d, t).await?;
                out.aggregated.push(d);
            }
            if !is_done(d, crate::alerts::JOB) {
                if d >= warn_from {
                    let o = crate::alerts::run(store, config, d, false, t).await?;
                    store
                        .record_job(
                            d.key(),
                            crate::alerts::JOB,
                            &format!("{} warned", o.warnings.len()),
                            t,
                        )
                        .await?;
                    out.warnings += o.warnings.len();
                    out.alerted.push(d);
                } else {
                    store
                        .record_job(
                            d.key(),
                            crate::alerts::JOB,
                            "not warned: older than alerts.catch_up_days",
                            t,
                        )
                        .await?;
                    out.not_warned.push(d);
                }
            }
            // A complete day's access rows, and any that reached a packed
            // day later, into the day's packs. Not a failure of the tick
            // either: the rows stay plain (and read as such) until the next.
            if store.has_plain_access(d.key()).await? {
                match store.pack_day(d.key()).await {
                    Ok(p) => {
                        tracing::info!(%d, rows = p.rows, packs = p.packs, "access rows packed");
                        out.packed.push(d);
                    }
                    Err(e) => {
                        tracing::warn!(%d, "the day's access rows stay unpacked for now: {e:#}")
                    }
                }
            }
            if store.is_postgres() && !is_done(d, CLUSTER_JOB) {
                // Not a failure of the tick: tried again at the next.
                match store.cluster_day(d.key()).await {
                    Ok(any) => {
                        let what = if any { "rows in key order" } else { "no rows" };
                        store.record_job(d.key(), CLUSTER_JOB, what, t).await?;
                        out.clustered.push(d);
                    }
                    Err(e) => {
                        tracing::warn!(%d, "the day's rows stay in arrival order for now: {e:#}")
                    }
                }
            }
            d = d.succ();
        }
    }
    out.purged = purge(store, config, keep_from).await?;
    store.purge_challenges(now.timestamp()).await?;
    Ok(out)
}

/// Deletes everything before `keep_from`, a batch per short transaction,
/// pausing between batches so ingest's transactions get their turn.
pub async fn purge(store: &Store, config: &Config, keep_from: Day) -> anyhow::Result<u64> {
    let tz = config.tz()?;
    let cutoff_unix = start_of(keep_from, tz).timestamp();
    let mut total = 0;
    loop {
        let n = store
            .purge_batch(
                keep_from.key(),
                cutoff_unix,
                i64::from(config.alerts.purge_batch),
            )
            .await?;
        if n == 0 {
            break;
        }
        total += n;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if total > 0 {
        tracing::info!(before = %keep_from, rows = total, "purged");
    }
    Ok(total)
}

/// The running scheduler: shut it down, or learn that it gave up.
pub struct Nightly {
    sched: tokio_cron_scheduler::JobScheduler,
    gave_up: tokio::sync::watch::Receiver<Option<String>>,
}

impl Nightly {
    /// Resolves when ticks have failed for `database_retry_secs` in a row
    /// (the database is full, gone or unreadable): the error to end the
    /// process with, so that its service manager restarts it. Never
    /// resolves while ticks succeed.
    pub async fn gave_up(&mut self) -> anyhow::Error {
        let why = self
            .gave_up
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|why| why.clone());
        match why {
            Some(why) => anyhow::anyhow!("{why}"),
            // The job is gone with the scheduler: nothing more will fail.
            None => std::future::pending().await,
        }
    }

    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        self.sched.shutdown().await.map_err(anyhow::Error::from)
    }
}

/// Starts ticking every minute (on the minute, UTC) until the returned
/// scheduler is shut down. A tick that is still running when the next is
/// due makes that one a no-op. A failing tick is tried again at the next
/// minute; after `database_retry_secs` of failures in a row the scheduler
/// gives up (see [`Nightly::gave_up`]).
pub async fn start(store: Store, config: Arc<Config>) -> anyhow::Result<Nightly> {
    start_with(store, config, "0 * * * * *").await
}

/// [`start`] with another cron expression (six fields, seconds first).
pub async fn start_with(store: Store, config: Arc<Config>, cron: &str) -> anyhow::Result<Nightly> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let sched = JobScheduler::new().await?;
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    let budget = Duration::from_secs(config.database_retry_secs);
    let retry = Arc::new(std::sync::Mutex::new(crate::health::Retry::new(budget)));
    let (gave_up_tx, gave_up) = tokio::sync::watch::channel(None);
    let gave_up_tx = Arc::new(gave_up_tx);
    let job = Job::new_async(cron, move |_id, _l| {
        let (store, config, busy) = (store.clone(), config.clone(), busy.clone());
        let (retry, gave_up_tx) = (retry.clone(), gave_up_tx.clone());
        Box::pin(async move {
            let Ok(_guard) = busy.try_lock() else {
                return;
            };
            let result = tick(&store, &config, Utc::now()).await;
            // The lock is never held across an await, nor by a panicking
            // holder: its data cannot be left half-changed.
            let mut retry = retry.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(t) => {
                    if retry.succeeded() {
                        tracing::info!("nightly tick recovered");
                    }
                    if !t.aggregated.is_empty() || !t.alerted.is_empty() {
                        tracing::info!(?t, "nightly work done")
                    }
                }
                Err(e) => {
                    let first = retry.attempts() == 0;
                    match retry.failed() {
                        // Logged when it starts failing; the next minute's
                        // tick tries again.
                        Ok(_) if first => tracing::error!("nightly tick failed: {e:#}"),
                        Ok(_) => tracing::debug!("nightly tick failed again: {e:#}"),
                        Err(spent) => {
                            let why = format!(
                                "the nightly job stopped: ticks {spent} (the last failed with: \
                                 {e:#}); exiting so that the service manager restarts mailtrail"
                            );
                            let _ = gave_up_tx.send(Some(why));
                        }
                    }
                }
            }
        })
    })?;
    sched.add(job).await?;
    sched.start().await?;
    Ok(Nightly { sched, gave_up })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    #[test]
    fn days_end_at_their_own_midnight_across_dst() {
        let tz = chrono_tz::Europe::Berlin;
        // 2026-10-25 has 25 hours in Berlin; 2026-03-29 has 23.
        let long = start_of(day("2026-10-26"), tz) - start_of(day("2026-10-25"), tz);
        assert_eq!(long.num_hours(), 25);
        let short = start_of(day("2026-03-30"), tz) - start_of(day("2026-03-29"), tz);
        assert_eq!(short.num_hours(), 23);
        // 00:29 local on the 26th (CET, UTC+1): the 25th is not settled.
        let t = Utc.with_ymd_and_hms(2026, 10, 25, 23, 29, 0).unwrap();
        assert_eq!(last_complete(t, tz, 30), day("2026-10-24"));
        let t = Utc.with_ymd_and_hms(2026, 10, 25, 23, 30, 0).unwrap();
        assert_eq!(last_complete(t, tz, 30), day("2026-10-25"));
    }

    #[test]
    fn a_zone_that_skips_midnight_starts_the_day_after_the_gap() {
        // Chile moves its clocks at 24:00: 2026-09-06 00:00 does not exist
        // in America/Santiago; the day begins at 01:00.
        let tz = chrono_tz::America::Santiago;
        let s = start_of(day("2026-09-06"), tz).with_timezone(&tz);
        assert_eq!(s.format("%H:%M").to_string(), "01:00");
    }
}
