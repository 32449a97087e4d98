//! PostgreSQL's day partitions of the event tables: made before the
//! ingest writes a day's first row, dropped whole at retention.
//!
//! `smtp_rows`, `access_rows`, `message_rows` (0010) and `access_packs` (0011) are
//! partitioned by range of `day`
//! (migrations/postgres/0009), one partition per day, named
//! `smtp_rows_YYYYMMDD` and `access_rows_YYYYMMDD`, holding the rows with
//! `day` from YYYYMMDD up to YYYYMMDD + 1. There is no DEFAULT partition:
//! with one, every new partition would have to scan it for rows it should
//! now hold.
//!
//! Making a partition takes the parent table's ACCESS EXCLUSIVE lock, which
//! waits for every transaction writing to the table and holds off every
//! other until it commits. So each missing day is made in a short
//! transaction of its own, before the ingest opens its transaction (an
//! ingest that held its transaction open on one connection while another
//! made a partition would wait for itself); and [`LOCK_WAIT`] bounds the
//! wait, so that a transaction left open elsewhere gives an error instead
//! of a hang. Several processes may write into one database: they take
//! turns at a day through an advisory lock keyed by the day, and
//! `CREATE TABLE IF NOT EXISTS` lets the second find the first's table.
//!
//! The days this process knows to exist are remembered, per database, so
//! that a batch of a day seen before costs no query. A day dropped here is
//! forgotten at once; one dropped by another process is not known here,
//! and a write into it fails until [`forget`] is called.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Context;
use chrono::{Datelike, NaiveDate};
use sqlx::PgPool;

/// The partitioned tables, each with a partition per day.
const PARENTS: [&str; 4] = ["smtp_rows", "access_rows", "message_rows", "access_packs"];

/// The first key of the advisory lock of a day's partitions (the second is
/// the day), so that no other use of advisory locks meets it: "mtpd".
const LOCK_CLASS: i32 = 0x6d74_7064;

/// How long making or dropping a partition waits for the tables' lock.
/// Ingest transactions on PostgreSQL last a batch (well under a second);
/// a wait this long means a transaction was left open.
const LOCK_WAIT: &str = "SET LOCAL lock_timeout = '30s'";

/// Days remembered per database before the memory starts again (a year of
/// retention is 366; what is forgotten is asked again).
const MAX_KNOWN: usize = 4096;

/// The days known to have their partitions, by database.
static KNOWN: Mutex<BTreeMap<String, BTreeSet<i32>>> = Mutex::new(BTreeMap::new());

/// A day of the partitions' names and bounds, checked to be a real date
/// with a four-digit year, so that it can go into DDL text (which takes no
/// parameters) and names exactly one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Day(i32);

impl Day {
    fn parse(day: i32) -> anyhow::Result<Day> {
        let date =
            NaiveDate::from_ymd_opt(day / 10_000, (day / 100 % 100) as u32, (day % 100) as u32)
                .filter(|d| (1000..=9999).contains(&d.year()))
                .with_context(|| format!("{day} is not a day (YYYYMMDD, a real date)"))?;
        Ok(Day(date.year() * 10_000
            + date.month() as i32 * 100
            + date.day() as i32))
    }

    /// The day of a partition's name (`PARENT_YYYYMMDD`), if it is one.
    fn of_name(parent: &str, name: &str) -> Option<Day> {
        let digits = name.strip_prefix(parent)?.strip_prefix('_')?;
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Day::parse(digits.parse().ok()?).ok()
    }

    fn name(self, parent: &str) -> String {
        format!("{parent}_{}", self.0)
    }
}

/// Which database a pool reaches, as the key of [`KNOWN`].
fn database(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or_default()
    )
}

fn known() -> std::sync::MutexGuard<'static, BTreeMap<String, BTreeSet<i32>>> {
    // The map is whole after any panic (each change is one call).
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

fn remember(db: &str, day: i32) {
    let mut known = known();
    let days = known.entry(db.to_owned()).or_default();
    if days.len() >= MAX_KNOWN {
        days.clear();
    }
    days.insert(day);
}

fn unremember(db: &str, day: i32) {
    if let Some(days) = known().get_mut(db) {
        days.remove(&day);
    }
}

/// Forgets every day known for `pool`'s database, so that the next
/// [`ensure_days`] asks the database again: for a writer whose write
/// failed, since another process may have dropped a day known here.
pub(crate) fn forget(pool: &PgPool) {
    known().remove(&database(pool));
}

/// The partitions of the event tables: (parent, partition) names, of the
/// partitions named `names`, or of all when `names` is `None`.
async fn partitions(
    conn: &mut sqlx::PgConnection,
    names: Option<&[String]>,
) -> anyhow::Result<Vec<(String, String)>> {
    const SQL: &str = "SELECT p.relname::text, c.relname::text FROM pg_inherits i \
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
        WHERE i.inhparent IN ('smtp_rows'::regclass, 'access_rows'::regclass, 'message_rows'::regclass, 'access_packs'::regclass) \
        AND ($1::text[] IS NULL OR c.relname = ANY($1))";
    sqlx::query_as(SQL)
        .bind(names)
        .fetch_all(conn)
        .await
        .context("listing the partitions of the event tables")
}

/// Makes sure both tables have a partition for each of `days` (YYYYMMDD;
/// repeats allowed). Call it before the transaction that writes their
/// rows, not inside it: each missing day is made in a transaction of its
/// own. Fails, with the day, for a number that is not a real date.
pub(crate) async fn ensure_days(pool: &PgPool, days: &[i32]) -> anyhow::Result<()> {
    let db = database(pool);
    let mut wanted: Vec<i32> = {
        let known = known();
        let have = known.get(&db);
        days.iter()
            .copied()
            .filter(|d| !have.is_some_and(|h| h.contains(d)))
            .collect()
    };
    if wanted.is_empty() {
        return Ok(());
    }
    wanted.sort_unstable();
    wanted.dedup();
    let wanted = wanted
        .into_iter()
        .map(Day::parse)
        .collect::<anyhow::Result<Vec<Day>>>()?;
    let names: Vec<String> = wanted
        .iter()
        .flat_map(|d| PARENTS.map(|p| d.name(p)))
        .collect();
    let mut conn = pool.acquire().await?;
    let found: BTreeSet<String> = partitions(&mut conn, Some(&names))
        .await?
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    for day in wanted {
        if !PARENTS.iter().all(|p| found.contains(&day.name(p))) {
            make(&mut conn, day).await?;
        }
        remember(&db, day.0);
    }
    Ok(())
}

/// Makes a day's partitions (those missing) in a transaction of its own.
async fn make(conn: &mut sqlx::PgConnection, day: Day) -> anyhow::Result<()> {
    let what = || format!("making the partitions of day {}", day.0);
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .with_context(what)?;
    sqlx::query(LOCK_WAIT).execute(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(day.0)
        .execute(&mut *tx)
        .await
        .with_context(what)?;
    for parent in PARENTS {
        // `day` is a checked date: the text holds digits only.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {parent} FOR VALUES FROM ({from}) TO ({to})",
            name = day.name(parent),
            from = day.0,
            to = day.0 + 1,
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .with_context(what)?;
    }
    // A table of the name that is not the partition (made by hand, or
    // detached) was left alone by IF NOT EXISTS; rows of the day would
    // find no partition.
    let names = PARENTS.map(|p| day.name(p));
    let found = partitions(&mut tx, Some(&names)).await?;
    for name in names {
        if !found.iter().any(|(_, n)| *n == name) {
            anyhow::bail!(
                "{}: a table {name} exists but is not a partition of {}; rename or drop it",
                what(),
                name.rsplit_once('_').map_or("", |(p, _)| p)
            );
        }
    }
    tx.commit().await.with_context(what)?;
    Ok(())
}

/// Drops the partitions of both tables for the days before `before_day`
/// (YYYYMMDD), each day in a transaction of its own, and returns how many
/// rows they held: counted just before each drop, in its transaction (a
/// row another process writes into a day between its count and its drop
/// is dropped uncounted). Partitions whose names are not
/// `PARENT_YYYYMMDD` are left alone. Fails at the first day it cannot
/// drop, the days before it dropped; a second call goes on from there.
pub(crate) async fn drop_days_before(pool: &PgPool, before_day: i32) -> anyhow::Result<u64> {
    let before = Day::parse(before_day)?;
    let db = database(pool);
    let mut conn = pool.acquire().await?;
    let mut old: BTreeMap<Day, Vec<String>> = BTreeMap::new();
    for (parent, name) in partitions(&mut conn, None).await? {
        match Day::of_name(&parent, &name) {
            Some(day) if day < before => old.entry(day).or_default().push(name),
            Some(_) => {}
            None => tracing::warn!("partition {name} of {parent} is not named by a day: kept"),
        }
    }
    let mut rows = 0u64;
    for (day, names) in old {
        // Forgotten before the drop, so that a day made again here after
        // it is made in the database; and after, in case it was
        // remembered meanwhile.
        unremember(&db, day.0);
        rows += drop_day(&mut conn, day, &names).await?;
        unremember(&db, day.0);
    }
    Ok(rows)
}

/// Drops the partitions `names` of `day`; returns the rows they held.
async fn drop_day(
    conn: &mut sqlx::PgConnection,
    day: Day,
    names: &[String],
) -> anyhow::Result<u64> {
    let what = || format!("dropping the partitions of day {}", day.0);
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .with_context(what)?;
    sqlx::query(LOCK_WAIT).execute(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(day.0)
        .execute(&mut *tx)
        .await
        .with_context(what)?;
    let mut rows = 0u64;
    for name in names {
        // `name` was checked by `Day::of_name`: a table name and digits.
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
                .fetch_one(&mut *tx)
                .await
                .with_context(what)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
            .execute(&mut *tx)
            .await
            .with_context(what)?;
        rows += count as u64;
    }
    tx.commit().await.with_context(what)?;
    Ok(rows)
}

/// Rewrites the partitions of `day` in the order of their primary key
/// (`CLUSTER`), so that each mailbox's rows of the day lie on a few
/// pages. The ingest appends rows in the order lines come, so a mailbox's
/// rows of a day lie one to a page across the whole partition: a report
/// read cold from disk fetches a page per row (a median mailbox's 30 days,
/// some 800 rows, took about 50 ms cold). Run once the day is complete
/// (rows that come later are appended after, as before).
///
/// `CLUSTER` holds the partition alone while it runs (seconds for a day of
/// a large site): readers of that day wait. It waits `lock_wait` for the
/// partition, and then gives up (with an error) rather than queue the
/// readers that come after it behind a long report. Returns whether the
/// day had partitions.
pub(crate) async fn cluster_day(
    pool: &PgPool,
    day: i32,
    lock_wait: std::time::Duration,
) -> anyhow::Result<bool> {
    let day = Day::parse(day)?;
    let what = || format!("clustering the partitions of day {}", day.0);
    let mut any = false;
    // Packs are written in key order, a mailbox's day at once.
    for parent in PARENTS.into_iter().filter(|p| *p != "access_packs") {
        let name = day.name(parent);
        let mut tx = pool.begin().await.with_context(what)?;
        // `name` is a table name and digits (`Day::name`).
        let exists: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass($1) AS TEXT)")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await
            .with_context(what)?;
        if exists.is_none() {
            continue;
        }
        any = true;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{}ms'",
            lock_wait.as_millis()
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CLUSTER {name} USING {name}_pkey"
        )))
        .execute(&mut *tx)
        .await
        .with_context(what)?;
        tx.commit().await.with_context(what)?;
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_dates_are_days() {
        for ok in [20260101, 20241231, 20240229, 10000101, 99991231] {
            assert_eq!(Day::parse(ok).unwrap(), Day(ok));
        }
        for bad in [
            0,
            -20260101,
            20261301,
            20260132,
            20230229,
            20260100,
            20260001,
            9991231,
            100000101,
            i32::MAX,
            i32::MIN,
        ] {
            let e = Day::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()), "{e}");
        }
    }

    #[test]
    fn partition_names_give_their_day() {
        assert_eq!(
            Day::of_name("smtp_rows", "smtp_rows_20260107"),
            Some(Day(20260107))
        );
        assert_eq!(Day(20260107).name("access_rows"), "access_rows_20260107");
        for other in [
            "smtp_rows",
            "smtp_rows_",
            "smtp_rows_2026010",
            "smtp_rows_202601070",
            "smtp_rows_20261399",
            "smtp_rows_+2026010",
            "smtp_rows_2026 107",
            "smtp_rowsx20260107",
            "access_rows_20260107",
            "smtp_rows_old",
        ] {
            assert_eq!(Day::of_name("smtp_rows", other), None, "{other}");
        }
    }
}
