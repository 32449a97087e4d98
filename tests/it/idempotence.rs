//! Reading the same lines twice stores nothing twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::{Capture, TestDb, fixture};

/// Writes a gzip copy of `src`, a log of the Postfix capture, to `dst`, as
/// logrotate's `compress` does, dated like the capture.
fn gzip_copy(src: &Path, dst: &Path) -> PathBuf {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(dst).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(src).unwrap()).unwrap();
    enc.finish().unwrap();
    Capture::Postfix.date(dst);
    dst.to_owned()
}

#[tokio::test]
async fn same_file_twice() {
    let db = TestDb::new().await;
    let first = db.ingest(&[fixture("mail.log")]).await.unwrap();
    assert!(first.rows_new > 0);
    let before = db.dump().await;
    let second = db.ingest(&[fixture("mail.log")]).await.unwrap();
    assert_eq!(second.rows_new, 0);
    // The checkpoint says the file was read to its end: nothing is re-read.
    assert_eq!(second.stats.lines_read, 0);
    assert_eq!(second.sources[0].resumed_at, first.sources[0].ended_at);
    assert_eq!(db.dump().await, before);
}

#[tokio::test]
async fn rotated_file_overlapping_its_successor() {
    let log = std::fs::read(fixture("mail.log")).unwrap();
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    assert!(lines.len() > 100);
    let whole = TestDb::new().await;
    whole.ingest(&[fixture("mail.log")]).await.unwrap();

    // mail.log.1 holds the first two thirds, mail.log the last two thirds:
    // the middle third is in both.
    let db = TestDb::new().await;
    let (a, b) = (lines.len() * 2 / 3, lines.len() / 3);
    let older = db.dir.path().join("mail.log.1");
    let newer = db.dir.path().join("mail.log");
    std::fs::write(&older, lines[..a].concat()).unwrap();
    std::fs::write(&newer, lines[b..].concat()).unwrap();
    Capture::Postfix.date(&older);
    Capture::Postfix.date(&newer);
    db.ingest(&[older, newer]).await.unwrap();
    assert_eq!(db.dump().await, whole.dump().await);
    let received = whole.dump_messages().await;
    assert!(
        !received.is_empty(),
        "the capture has mail to local mailboxes"
    );
    assert_eq!(db.dump_messages().await, received);
}

#[tokio::test]
async fn compressed_copy_of_a_read_file_is_not_read_again() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let before = db.dump().await;
    let gz = gzip_copy(&fixture("mail.log"), &db.dir.path().join("mail.log.2.gz"));
    let r = db.ingest(&[gz]).await.unwrap();
    assert_eq!(r.stats.lines_read, 0, "same first line: same source");
    assert_eq!(db.dump().await, before);
}

#[tokio::test]
async fn gzip_alone_reads_like_plain() {
    let plain = TestDb::new().await;
    plain.ingest(&[fixture("mail.log")]).await.unwrap();
    let db = TestDb::new().await;
    let gz = gzip_copy(&fixture("mail.log"), &db.dir.path().join("mail.log.1.gz"));
    db.ingest(&[gz]).await.unwrap();
    assert_eq!(db.dump().await, plain.dump().await);
}

#[tokio::test]
async fn growing_file_is_read_on_from_its_checkpoint() {
    let log = std::fs::read(fixture("mail.log")).unwrap();
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let whole = TestDb::new().await;
    whole.ingest(&[fixture("mail.log")]).await.unwrap();

    let db = TestDb::new().await;
    let live = db.dir.path().join("mail.log");
    let mut first_read = 0;
    for end in [lines.len() / 4, lines.len() / 2, lines.len()] {
        std::fs::write(&live, lines[..end].concat()).unwrap();
        Capture::Postfix.date(&live);
        let r = db.ingest(std::slice::from_ref(&live)).await.unwrap();
        if first_read == 0 {
            first_read = r.stats.lines_read;
        } else {
            assert!(r.sources[0].resumed_at > 0);
        }
    }
    assert_eq!(first_read as usize, lines.len() / 4);
    // Pending hand-offs are settled at the end of each run, so growth in
    // steps stores what one run stores.
    assert_eq!(db.dump().await, whole.dump().await);
}

#[tokio::test]
async fn same_file_twice_in_one_run() {
    let once = TestDb::new().await;
    once.ingest(&[fixture("mail.log")]).await.unwrap();
    let db = TestDb::new().await;
    let r = db
        .ingest(&[fixture("mail.log"), fixture("mail.log")])
        .await
        .unwrap();
    // The second mention finds the first one's checkpoint at the end.
    assert_eq!(r.sources[1].resumed_at, r.sources[0].ended_at);
    assert_eq!(db.dump().await, once.dump().await);
}
