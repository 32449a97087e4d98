//! PostgreSQL's bulk path on a real server: day partitions made on demand
//! by writers at once, rows stored through binary COPY exactly as given
//! and once only, and retention dropping whole days.

use std::borrow::Cow;

use mailtrail::store::Store;
use mailtrail::store::pg_hooks::{drop_days_before, ensure_days, forget, write_access, write_smtp};
use mailtrail::store::records::{AccessRecord, SmtpRecord};
use sqlx::PgPool;

use crate::support::{fresh_postgres, postgres_server};

/// A pool on a new, migrated database.
async fn pool() -> PgPool {
    let server = postgres_server().expect("MAILTRAIL_TEST_POSTGRES is set");
    match Store::open(&fresh_postgres(&server)).await.unwrap() {
        Store::Postgres(p) => p,
        Store::Sqlite(_) => unreachable!("a PostgreSQL URL"),
    }
}

/// The partitions of `parent` and their bounds, as PostgreSQL shows them.
async fn partitions(pool: &PgPool, parent: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1",
    )
    .bind(parent)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn bound(day: i32) -> String {
    format!("FOR VALUES FROM ({day}) TO ({})", day + 1)
}

/// An SMTP row of `day`, with key `key` and nothing optional.
fn smtp(day: i32, key: i64) -> SmtpRecord<'static> {
    SmtpRecord {
        day,
        mailbox_id: 1,
        sec: 1_767_744_000 + key,
        key,
        usec: 5,
        kind: 2,
        host: 1,
        queue_id: None,
        sender_ip: None,
        relay: None,
        recipient: None,
        dsn: None,
        reply: None,
        reply_args: None,
    }
}

/// Writes `rows` in a transaction of their own; returns how many were new.
async fn write(pool: &PgPool, rows: &[SmtpRecord<'_>]) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let n = write_smtp(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(n)
}

type SmtpTuple = (
    i64,
    i64,
    i32,
    i32,
    i32,
    i32,
    Option<i32>,
    Option<i32>,
    Option<String>,
    Option<i32>,
    Option<i32>,
    i16,
    Option<String>,
    Option<String>,
);

/// Every stored SMTP row, in key order, as records.
async fn stored_smtp(pool: &PgPool) -> Vec<SmtpRecord<'static>> {
    let rows: Vec<SmtpTuple> = sqlx::query_as(
        "SELECT sec, key, day, mailbox_id, usec, host, sender_ip, relay, recipient, dsn, reply, kind, queue_id, reply_args \
         FROM smtp_rows ORDER BY key",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let leak = |s: Option<String>| s.map(|s| &*String::leak(s));
    rows.into_iter()
        .map(|r| SmtpRecord {
            sec: r.0,
            key: r.1,
            day: r.2,
            mailbox_id: r.3.into(),
            usec: r.4,
            host: r.5.into(),
            sender_ip: r.6.map(Into::into),
            relay: r.7.map(Into::into),
            recipient: leak(r.8),
            dsn: r.9.map(Into::into),
            reply: r.10.map(Into::into),
            kind: r.11,
            queue_id: leak(r.12),
            reply_args: r.13.map(Cow::Owned),
        })
        .collect()
}

/// Texts that are hard to carry: other scripts, a character outside the
/// basic plane, bidi and control characters, quotes and COPY's own
/// markers, and long ones (together more than the encoder's chunk).
fn hard_texts() -> Vec<String> {
    vec![
        String::new(),
        "郵件已退回 ✉".to_owned(),
        "😀 \u{202e}evil\u{202c} \u{1}\u{7f}".to_owned(),
        "tab\tnewline\nreturn\r back\\slash \\N quote' \"".to_owned(),
        "PGCOPY\n\u{ff}\r\n".to_owned(),
        "長".repeat(150_000),
        "x".repeat(700_000),
    ]
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn rows_come_back_from_copy_as_they_were_given() {
    let pool = pool().await;
    let texts = hard_texts();
    let day = 20260107;
    ensure_days(&pool, &[day]).await.unwrap();
    // Every pattern of NULLs among the seven optional columns, with the
    // extremes of every integer.
    let mut rows = Vec::new();
    for mask in 0u32..128 {
        let key = i64::from(mask);
        let on = |bit: u32| mask & (1 << bit) != 0;
        let id = |bit: u32, v: i64| on(bit).then_some(v);
        rows.push(SmtpRecord {
            day,
            mailbox_id: if mask % 2 == 0 {
                i64::from(i32::MAX)
            } else {
                1
            },
            sec: [i64::MIN, i64::MAX, 0, -1][mask as usize % 4],
            key: if mask == 127 { i64::MIN } else { key },
            usec: [0, 999_999, i32::MAX, i32::MIN][mask as usize / 4 % 4],
            kind: [i16::MIN, i16::MAX, 0, 7][mask as usize / 16 % 4],
            host: i64::from(i32::MIN) + key,
            sender_ip: id(0, 1),
            relay: id(1, i64::from(i32::MAX)),
            recipient: on(2).then(|| &*texts[(mask as usize + 5) % texts.len()]),
            dsn: id(3, 0),
            reply: id(4, i64::from(i32::MIN)),
            queue_id: on(5).then(|| &*texts[mask as usize % texts.len()]),
            reply_args: on(6).then(|| Cow::Borrowed(&*texts[(mask as usize + 3) % texts.len()])),
        });
    }
    // Half of them straight into the table, then all of them, which takes
    // the way through the staging table since half are stored already.
    assert_eq!(write(&pool, &rows[..64]).await.unwrap(), 64);
    assert_eq!(write(&pool, &rows).await.unwrap(), 64);
    let mut want = rows.clone();
    want.sort_by_key(|r| r.key);
    assert!(stored_smtp(&pool).await == want, "SMTP rows differ");

    // Access rows: all NULL, all set, and each optional column alone NULL
    // and alone set.
    let full = |key: i64| AccessRecord {
        day,
        mailbox_id: 3,
        sec: 1_767_744_000,
        key,
        usec: 1,
        kind: 4,
        host: 2,
        protocol: Some(3),
        remote_ip: Some(4),
        local_ip: Some(5),
        tls: Some(key % 2 == 0),
        session: Some(&texts[1]),
        client: Some(6),
        deleted: Some(i64::MAX),
        retained: Some(i64::MIN),
        size_bytes: Some(1 << 40),
        in_bytes: Some(0),
        out_bytes: Some(-1),
        expunged: Some(9),
        trashed: Some(10),
        downloaded: Some(11),
        attempts: Some(12),
        uid: Some(13),
        message_id: Some(&texts[2]),
        folder: Some(i64::from(i32::MAX)),
        reason: Some(i64::from(i32::MIN)),
        reason_args: Some("0.241\u{1}129".into()),
        master_user: Some(16),
    };
    fn set_null(r: &mut AccessRecord<'_>, field: usize) {
        match field {
            0 => r.protocol = None,
            1 => r.remote_ip = None,
            2 => r.local_ip = None,
            3 => r.tls = None,
            4 => r.session = None,
            5 => r.client = None,
            6 => r.deleted = None,
            7 => r.retained = None,
            8 => r.size_bytes = None,
            9 => r.in_bytes = None,
            10 => r.out_bytes = None,
            11 => r.expunged = None,
            12 => r.trashed = None,
            13 => r.downloaded = None,
            14 => r.attempts = None,
            15 => r.uid = None,
            16 => r.message_id = None,
            17 => r.folder = None,
            18 => r.reason = None,
            19 => r.master_user = None,
            _ => unreachable!(),
        }
    }
    const OPTIONAL: usize = 20;
    let mut access = vec![full(0)];
    let mut none = full(1);
    (0..OPTIONAL).for_each(|f| set_null(&mut none, f));
    access.push(none);
    for f in 0..OPTIONAL {
        let mut one_null = full(10 + f as i64);
        set_null(&mut one_null, f);
        access.push(one_null);
        let mut one_set = full(100 + f as i64);
        (0..OPTIONAL)
            .filter(|g| *g != f)
            .for_each(|g| set_null(&mut one_set, g));
        access.push(one_set);
    }
    let half = access.len() / 2;
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        write_access(&mut tx, &access[..half]).await.unwrap(),
        half as u64
    );
    assert_eq!(
        write_access(&mut tx, &access).await.unwrap(),
        (access.len() - half) as u64
    );
    tx.commit().await.unwrap();
    let back: Vec<(i64, String)> = sqlx::query_as(
        "SELECT key, row(sec, key, day, mailbox_id, usec, kind, host, protocol, remote_ip, local_ip, tls, session, client, \
         deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, \
         folder, reason, master_user)::text FROM access_rows ORDER BY key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The same rows through a plain INSERT with bound parameters, in a
    // table of the same columns: PostgreSQL's own text of each must be
    // the same.
    sqlx::query("CREATE TABLE plain (LIKE access_rows)")
        .execute(&pool)
        .await
        .unwrap();
    for r in &access {
        sqlx::query(
            "INSERT INTO plain (sec, key, day, mailbox_id, usec, kind, host, protocol, remote_ip, local_ip, tls, session, client, \
             deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, \
             folder, reason, master_user) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)",
        )
        .bind(r.sec)
        .bind(r.key)
        .bind(r.day)
        .bind(r.mailbox_id as i32)
        .bind(r.usec)
        .bind(r.kind)
        .bind(r.host as i32)
        .bind(r.protocol.map(|v| v as i32))
        .bind(r.remote_ip.map(|v| v as i32))
        .bind(r.local_ip.map(|v| v as i32))
        .bind(r.tls)
        .bind(r.session)
        .bind(r.client.map(|v| v as i32))
        .bind(r.deleted)
        .bind(r.retained)
        .bind(r.size_bytes)
        .bind(r.in_bytes)
        .bind(r.out_bytes)
        .bind(r.expunged)
        .bind(r.trashed)
        .bind(r.downloaded)
        .bind(r.attempts)
        .bind(r.uid)
        .bind(r.message_id)
        .bind(r.folder.map(|v| v as i32))
        .bind(r.reason.map(|v| v as i32))
        .bind(r.master_user.map(|v| v as i32))
        .execute(&pool)
        .await
        .unwrap();
    }
    let plain: Vec<(i64, String)> = sqlx::query_as(
        "SELECT key, row(sec, key, day, mailbox_id, usec, kind, host, protocol, remote_ip, local_ip, tls, session, client, \
         deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, \
         folder, reason, master_user)::text FROM plain ORDER BY key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(back.len(), access.len());
    assert!(back == plain, "access rows differ");
    // Not vacuous: the NULLs are where they were put.
    let nulls: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT key, num_nulls(protocol, remote_ip, local_ip, tls, session, client, deleted, retained, size_bytes, \
         in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, folder, reason, master_user) \
         FROM access_rows ORDER BY key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (key, n) in nulls {
        let want = match key {
            0 => 0,
            1 => OPTIONAL as i32,
            10..100 => 1,
            _ => OPTIONAL as i32 - 1,
        };
        assert_eq!(n, want, "row {key}");
    }
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn rows_written_twice_are_stored_once() {
    let pool = pool().await;
    ensure_days(&pool, &[20260107, 20260108]).await.unwrap();
    let rows: Vec<_> = (0..1000)
        .map(|k| smtp(20260107 + (k % 2) as i32, k))
        .collect();
    assert_eq!(write(&pool, &rows).await.unwrap(), 1000);
    assert_eq!(write(&pool, &rows).await.unwrap(), 0, "a log read again");
    // Half old, half new, and a key twice in one batch (another row of
    // the same key: the first one stays).
    let mut more: Vec<_> = (500..1500)
        .map(|k| smtp(20260107 + (k % 2) as i32, k))
        .collect();
    let mut again = smtp(20260107, 1500);
    again.usec = 77;
    more.insert(0, smtp(20260107, 1500));
    more.push(again);
    assert_eq!(write(&pool, &more).await.unwrap(), 501);
    let stored = stored_smtp(&pool).await;
    assert_eq!(stored.len(), 1501);
    assert_eq!(stored.last().unwrap().usec, 5);
    // Twice in one transaction, as a writer that takes several batches
    // per transaction does.
    let mut tx = pool.begin().await.unwrap();
    let last = [smtp(20260108, 1501)];
    assert_eq!(write_smtp(&mut tx, &last).await.unwrap(), 1);
    assert_eq!(write_smtp(&mut tx, &last).await.unwrap(), 0);
    assert_eq!(write_smtp(&mut tx, &rows[..10]).await.unwrap(), 0);
    tx.commit().await.unwrap();
    // A rolled-back transaction stores nothing, and leaves the next one
    // to store everything.
    let late = [smtp(20260108, 1503), smtp(20260107, 1502)];
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(write_smtp(&mut tx, &late).await.unwrap(), 2);
    tx.rollback().await.unwrap();
    assert_eq!(stored_smtp(&pool).await.len(), 1502);
    assert_eq!(write(&pool, &late).await.unwrap(), 2);
    let by_day: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM smtp_rows GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        by_day,
        [
            ("smtp_rows_20260107".to_owned(), 752),
            ("smtp_rows_20260108".to_owned(), 752)
        ]
    );
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn rows_are_written_only_in_a_transaction() {
    let pool = pool().await;
    ensure_days(&pool, &[20260107]).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let err = write_smtp(&mut conn, &[smtp(20260107, 1)])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("transaction"), "{err:#}");
    assert!(stored_smtp(&pool).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn partitions_are_made_on_demand_once_by_writers_at_once() {
    let pool = pool().await;
    assert!(partitions(&pool, "smtp_rows").await.is_empty());
    let err = write(&pool, &[smtp(20260301, 1)]).await.unwrap_err();
    assert!(format!("{err:#}").contains("partition"), "{err:#}");
    // Rounds of two writers, each with a pool of its own, asking for the
    // same days (and repeats) at the same moment.
    let url = pool.connect_options();
    let mut days = Vec::new();
    for round in 0..6 {
        let asked: Vec<i32> = (1..=5).map(|d| 20260300 + round * 5 + d).collect();
        days.extend(&asked);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for w in 0..2 {
            let (start, opts) = (start.clone(), (*url).clone());
            let mut asked = asked.clone();
            if w == 1 {
                asked.reverse();
                asked.push(asked[0]);
            }
            tasks.push(tokio::spawn(async move {
                let pool = PgPool::connect_with(opts).await.unwrap();
                start.wait().await;
                ensure_days(&pool, &asked).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
    for parent in ["smtp_rows", "access_rows"] {
        let want: Vec<_> = days
            .iter()
            .map(|d| (format!("{parent}_{d}"), bound(*d)))
            .collect();
        assert_eq!(partitions(&pool, parent).await, want);
    }
    // Known days again, here and after forgetting them: nothing changes.
    ensure_days(&pool, &days).await.unwrap();
    forget(&pool);
    ensure_days(&pool, &days).await.unwrap();
    assert_eq!(partitions(&pool, "smtp_rows").await.len(), days.len());
    let rows: Vec<_> = days.iter().map(|d| smtp(*d, i64::from(*d))).collect();
    assert_eq!(write(&pool, &rows).await.unwrap(), days.len() as u64);
    // A number that is not a day makes nothing, and says which it was.
    for bad in [20260230, 2026031, 0] {
        let err = ensure_days(&pool, &[20260401, bad]).await.unwrap_err();
        assert!(err.to_string().contains(&bad.to_string()), "{err:#}");
    }
    assert_eq!(partitions(&pool, "smtp_rows").await.len(), days.len());
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn a_dropped_day_is_gone_and_the_others_stay() {
    let pool = pool().await;
    let days = [20251230, 20251231, 20260101, 20260102];
    ensure_days(&pool, &days).await.unwrap();
    let mut rows = Vec::new();
    for (i, day) in days.iter().enumerate() {
        rows.extend((0..(10 * (i as i64 + 1))).map(|k| smtp(*day, k)));
    }
    assert_eq!(write(&pool, &rows).await.unwrap(), 100);
    let mut tx = pool.begin().await.unwrap();
    let mut a = AccessRecord {
        day: 20251231,
        mailbox_id: 1,
        sec: 1,
        key: 1,
        usec: 0,
        kind: 1,
        host: 1,
        protocol: None,
        remote_ip: None,
        local_ip: None,
        tls: None,
        session: None,
        client: None,
        deleted: None,
        retained: None,
        size_bytes: None,
        in_bytes: None,
        out_bytes: None,
        expunged: None,
        trashed: None,
        downloaded: None,
        attempts: None,
        uid: None,
        message_id: None,
        folder: None,
        reason: None,
        reason_args: None,
        master_user: None,
    };
    write_access(&mut tx, std::slice::from_ref(&a))
        .await
        .unwrap();
    a.day = 20260101;
    write_access(&mut tx, &[a]).await.unwrap();
    tx.commit().await.unwrap();

    assert!(drop_days_before(&pool, 20261332).await.is_err());
    // The two days of 2025: 10 + 20 SMTP rows and one access row.
    assert_eq!(drop_days_before(&pool, 20260101).await.unwrap(), 31);
    assert_eq!(
        partitions(&pool, "smtp_rows").await,
        [
            ("smtp_rows_20260101".to_owned(), bound(20260101)),
            ("smtp_rows_20260102".to_owned(), bound(20260102))
        ]
    );
    assert_eq!(partitions(&pool, "access_rows").await.len(), 2);
    let left = stored_smtp(&pool).await;
    assert_eq!(left.len(), 70);
    assert!(left.iter().all(|r| r.day >= 20260101));
    let access_left: Vec<i32> = sqlx::query_scalar("SELECT day FROM access_rows")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(access_left, [20260101]);
    // Nothing more before that day.
    assert_eq!(drop_days_before(&pool, 20260101).await.unwrap(), 0);

    // A dropped day written again (its logs read once more) is made again.
    ensure_days(&pool, &[20251231]).await.unwrap();
    assert_eq!(write(&pool, &[smtp(20251231, 5)]).await.unwrap(), 1);
    assert_eq!(stored_smtp(&pool).await.len(), 71);

    // A day dropped by another process is not known here until forgotten.
    sqlx::raw_sql("DROP TABLE smtp_rows_20260102, access_rows_20260102")
        .execute(&pool)
        .await
        .unwrap();
    ensure_days(&pool, &[20260102]).await.unwrap();
    let err = write(&pool, &[smtp(20260102, 99)]).await.unwrap_err();
    assert!(format!("{err:#}").contains("partition"), "{err:#}");
    forget(&pool);
    ensure_days(&pool, &[20260102]).await.unwrap();
    assert_eq!(write(&pool, &[smtp(20260102, 99)]).await.unwrap(), 1);
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn new_rows_go_straight_into_the_table_and_stored_ones_through_staging() {
    use sqlx::Connection as _;
    let pool = pool().await;
    ensure_days(&pool, &[20260107]).await.unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    async fn staged(conn: &mut sqlx::PgConnection) -> bool {
        sqlx::query_scalar("SELECT to_regclass('pg_temp.mt_smtp_stage') IS NOT NULL")
            .fetch_one(conn)
            .await
            .unwrap()
    }
    let rows: Vec<_> = (0..100).map(|k| smtp(20260107, k)).collect();
    let mut tx = conn.begin().await.unwrap();
    assert_eq!(write_smtp(&mut tx, &rows[..50]).await.unwrap(), 50);
    assert!(!staged(&mut tx).await, "new rows took the long way");
    assert_eq!(write_smtp(&mut tx, &rows).await.unwrap(), 50);
    assert!(staged(&mut tx).await);
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_temp.mt_smtp_stage")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0, "the commit empties the staging table");
    assert_eq!(stored_smtp(&pool).await.len(), 100);
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn a_complete_day_is_laid_out_in_key_order_with_every_row_kept() {
    let pool = pool().await;
    let store = Store::Postgres(pool.clone());
    let day = 20260107;
    ensure_days(&pool, &[day, day + 1]).await.unwrap();
    // Rows as lines come: mailboxes interleaved, so that each mailbox's
    // rows lie apart in the partition.
    let mut rows: Vec<SmtpRecord<'static>> = (0..3000)
        .map(|i| SmtpRecord {
            mailbox_id: 1 + (i * 7919) % 50,
            ..smtp(day, i)
        })
        .collect();
    rows.push(smtp(day + 1, 99_999));
    assert_eq!(write(&pool, &rows).await.unwrap(), 3001);
    let physical = || async {
        sqlx::query_as::<_, (i32, i64, i64)>(
            "SELECT mailbox_id, sec, key FROM smtp_rows_20260107 ORDER BY ctid",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = physical().await;
    let mut sorted = before.clone();
    sorted.sort();
    assert_ne!(before, sorted, "the rows were written in key order already");
    let stored = stored_smtp(&pool).await;

    assert!(store.cluster_day(day).await.unwrap());
    assert_eq!(physical().await, sorted, "not in key order");
    assert!(stored_smtp(&pool).await == stored, "rows changed");
    // A day without partitions has nothing to lay out; rows written to
    // a clustered day later are kept as any.
    assert!(!store.cluster_day(day + 5).await.unwrap());
    assert_eq!(write(&pool, &[smtp(day, 5_000_000)]).await.unwrap(), 1);
    assert_eq!(stored_smtp(&pool).await.len(), 3002);
}
