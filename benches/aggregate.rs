//! Nightly aggregation speed.
//!
//! `cargo bench --bench aggregate` fills a fresh SQLite database with one
//! day of 1,000,000 deliveries from 50,000 senders, and the same again on
//! the day before and the day after (so the day has to be found, not just
//! read whole), then times `aggregate` of the middle day, three times
//! (each rebuilds the day's table). The target is under 5 s. The rows are
//! stored by SQL, as the ingest stores them: in `smtp_rows` (a recipient
//! of its own each), their repeated text in `texts`.

#[path = "support/stored.rs"]
mod stored;

use std::time::Instant;

use mailtrail::domain::Day;
use mailtrail::store::Store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SENDERS: i64 = 50_000;
const PER_DAY: i64 = 1_000_000;
/// Number of the first recipient (`rcptN@example.com`), each a new one.
const RECIPIENTS: i64 = 1000;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("agg.db").display());
    let store = Store::open(&url).await.unwrap();
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let t = Instant::now();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO mailboxes (id, address) SELECT i, 'user' || i || '@example.edu' FROM n",
    )
    .bind(SENDERS)
    .execute(pool)
    .await
    .unwrap();
    // The texts the rows refer to, as the ingest stores them.
    let host = stored::text(pool, "mx1").await;
    let sender_ip = stored::text(pool, "140.114.1.2").await;
    let relay = stored::text(pool, "mx.example.com[203.0.113.9]:25").await;
    let dsn = stored::text(pool, "2.0.0").await;
    let (reply, reply_args) = stored::reply(pool, "250 2.0.0 Ok: queued as 4jXq6n5r2kz5cX2").await;
    let days = [20261122, 20261123, 20261124];
    for (d, day) in days.iter().enumerate() {
        // Senders in a skewed mix (a few send a lot), kinds in the
        // proportions of a real day: mostly sent, some deferred and
        // bounced, one Auth_rcv per three deliveries.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $2 - 1) \
             INSERT INTO smtp_rows (day, mailbox_id, sec, key, usec, kind, host, queue_id, sender_ip, relay, recipient, dsn, reply, reply_args) \
             SELECT $1, 1 + ((i * 7919) % $3) * ((i % 3) + 1) % $3, 1795398077 + (i * 86400) / 1000000, i + $4, (i * 86400) % 1000000, \
               CASE WHEN i % 10 < 6 THEN 1 WHEN i % 10 = 6 THEN 3 WHEN i % 10 = 7 THEN 2 ELSE 5 END, \
               $5, printf('4jXq6n%09d', i), $6, $7, 'rcpt' || ($8 + i) || '@example.com', $9, $10, $11 FROM n",
        )
        .bind(*day)
        .bind(PER_DAY)
        .bind(SENDERS)
        .bind(d as i64 * PER_DAY)
        .bind(host)
        .bind(sender_ip)
        .bind(relay)
        .bind(RECIPIENTS)
        .bind(dsn)
        .bind(reply)
        .bind(reply_args.as_deref())
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    println!(
        "filled {} days x {PER_DAY} deliveries from {SENDERS} senders in {:.1} s",
        days.len(),
        t.elapsed().as_secs_f64()
    );
    let day = Day::from_key(days[1]).unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let n = mailtrail::aggregate::run(&store, day, 0).await.unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert!(n > 0);
    }
    let rows = store.day_table(days[1]).await.unwrap();
    let total: i64 = rows.iter().map(|r| r.counts[0]).sum();
    assert_eq!(total, PER_DAY);
    times.sort_by(f64::total_cmp);
    println!(
        "aggregate {day}: {} senders, {total} deliveries: median {:.2} s (runs: {:.2?}) (target: < 5 s)",
        rows.len(),
        times[1],
        times
    );
    store.close().await;
}
