//! An ingest killed half-way and run again stores exactly what one clean
//! run stores.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestDb, config_text, database_url, generated_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_resumes_exactly() {
    let clean = TestDb::with_batch(2_000).await;
    let log = generated_log(clean.dir.path(), 300_000, 7);
    clean.ingest(std::slice::from_ref(&log)).await.unwrap();
    let want = clean.dump().await;
    assert!(want.len() > 10_000, "{} rows", want.len());
    let want_received = clean.dump_messages().await;
    assert!(
        want_received.len() > 1_000,
        "{} received-mail rows",
        want_received.len()
    );

    // The same ingest as a separate process, killed with SIGKILL once it
    // has committed some batches but before it is done.
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path(), "killed");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&db, 2_000)).unwrap();
    let bin = env!("CARGO_BIN_EXE_mailtrail");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .arg(&log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let total = std::fs::metadata(&log).unwrap().len() as i64;
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(120) {
        if let Some(off) = read_offset(&db).await
            && off > 0
            && off < total / 2
        {
            child.kill().unwrap();
            killed_at = Some(off);
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    let killed_at = killed_at.expect("the ingest was stopped before it finished");
    assert!(!status.success(), "it was killed, not finished");
    let after_kill = read_offset(&db).await.unwrap();
    assert!(
        after_kill >= killed_at && after_kill < total,
        "{after_kill} of {total}"
    );

    // Run it again to the end.
    let out = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("resumed from checkpoint"), "{text}");

    let resumed = TestDb {
        config: mailtrail::config::Config::from_toml(&config_text(&db, 2_000)).unwrap(),
        store: mailtrail::store::Store::open(&db).await.unwrap(),
        url: db,
        dir,
    };
    let got = resumed.dump().await;
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    // Received mail too: the rows a killed batch had made, and those
    // waiting in the saved state for their message's other lines.
    let got = resumed.dump_messages().await;
    assert_eq!(got.len(), want_received.len());
    assert_eq!(got, want_received);
}

/// The committed offset of the (only) source, if any batch is committed
/// (and the schema exists yet).
async fn read_offset(url: &str) -> Option<i64> {
    let url = match url.strip_suffix("?mode=rwc") {
        // Reading must not create the file before the ingest does.
        Some(file) => {
            if !std::path::Path::new(file.trim_start_matches("sqlite://")).exists() {
                return None;
            }
            format!("{file}?mode=ro")
        }
        None => url.to_owned(),
    };
    let store = mailtrail::store::Store::connect(&url).await.ok()?;
    let v: Option<i64> = crate::on_any_pool!(&store, p => sqlx::query_scalar("SELECT MAX(offset_bytes) FROM ingest_sources")
        .fetch_one(p)
        .await
        .ok()
        .flatten());
    store.close().await;
    v
}

/// A row of `mailbox` numbered `no` (the writer resolves the number).
fn row(key: i64, mailbox: &str, no: u32) -> mailtrail::ingest::correlate::Row {
    use mailtrail::ingest::correlate::{Kind, Row, Text};
    Row {
        key,
        time_us: 1_795_000_000_000_000 + key,
        day: 20261119,
        mailbox: Text::from(mailbox),
        mailbox_no: Some(no),
        kind: Kind::Sent,
        host: Text::from("mx1"),
        queue_id: None,
        sender_ip: None,
        relay: None,
        recipient: None,
        dsn: None,
        response: None,
        reply_split: None,
    }
}

/// A batch of `rows`, whose new mailboxes are `new` from number `first`.
fn batch(
    rows: Vec<mailtrail::ingest::correlate::Row>,
    first: u32,
    new: &[&str],
) -> mailtrail::store::Batch {
    use mailtrail::ingest::correlate::{Rows, Text};
    use mailtrail::ingest::mailboxes::NewMailboxes;
    mailtrail::store::Batch {
        rows: Rows {
            smtp: rows,
            ..Rows::default()
        },
        mailboxes: NewMailboxes {
            first,
            names: new.iter().map(|m| Text::from(*m)).collect(),
        },
        checkpoint: None,
        state: None,
    }
}

#[tokio::test]
async fn batches_that_share_a_transaction_are_stored_or_lost_together() {
    use crate::support::on_postgres;
    let db = TestDb::new().await;
    let mut w = mailtrail::store::Writer::new(&db.store, "default")
        .await
        .unwrap();
    // A transaction that takes batches for an hour: only a flush (or an
    // error) ends it. (PostgreSQL commits every batch.)
    w.commit_after(Duration::from_secs(3600));
    let _numbering = w.lend_mailboxes();
    w.write(batch(
        vec![row(1, "a@example.edu", 0)],
        0,
        &["a@example.edu"],
    ))
    .await
    .unwrap();
    w.write(batch(
        vec![row(2, "b@example.edu", 1)],
        1,
        &["b@example.edu"],
    ))
    .await
    .unwrap();
    w.flush().await.unwrap();
    assert_eq!(db.dump().await.len(), 2);

    // Two more batches, the second naming a mailbox number no batch gave:
    // it fails, and takes the one before it along (on SQLite).
    w.write(batch(
        vec![row(3, "c@example.edu", 2)],
        2,
        &["c@example.edu"],
    ))
    .await
    .unwrap();
    let err = w
        .write(batch(vec![row(4, "a@example.edu", 7)], 3, &[]))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("mailbox number"), "{err:#}");
    w.flush().await.unwrap();
    let stored = db.dump().await;
    let mailboxes: i64 = crate::on_any_pool!(&db.store, p => sqlx::query_scalar("SELECT COUNT(*) FROM mailboxes")
        .fetch_one(p)
        .await
        .unwrap());
    if on_postgres() {
        assert_eq!((stored.len(), mailboxes), (3, 3));
    } else {
        assert_eq!((stored.len(), mailboxes), (2, 2));
        // The numbers of what was rolled back are given again.
        let err = w
            .write(batch(
                vec![row(5, "d@example.edu", 3)],
                3,
                &["d@example.edu"],
            ))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("out of step"), "{err:#}");
        w.write(batch(
            vec![row(5, "d@example.edu", 2)],
            2,
            &["d@example.edu"],
        ))
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert_eq!(db.dump().await.len(), 3);
    }
}
