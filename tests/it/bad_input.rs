//! Bad input is counted and skipped; it stops nothing and loses nothing.

use crate::support::{Capture, TestDb, fixture};

#[tokio::test]
async fn garbage_between_real_lines_loses_nothing() {
    let clean = TestDb::new().await;
    clean.ingest(&[fixture("mail.log")]).await.unwrap();

    let log = std::fs::read(fixture("mail.log")).unwrap();
    let db = TestDb::new().await;
    let mut mixed = Vec::new();
    let junk: [&[u8]; 8] = [
        b"\x00\x01\x02\x03\xff\xfe\xfd binary garbage \x1b[2J\n",
        // Invalid UTF-8 inside a Postfix-shaped line.
        b"Nov 23 09:55:01 mail postfix/smtpd[1]: \xc3\x28 \xa0\xa1 not a shape\n",
        // A status line cut before its status (Postfix cuts at 2000 bytes).
        b"Nov 23 09:55:01 mail postfix/smtp[2]: ABCDE12345: to=<x@accept.test>, relay=none, del\n",
        // Another program writing queue-ID-like prefixes.
        b"Nov 23 09:55:01 mail opendkim[289]: D8376B6981: DKIM-Signature field added (s=mail, d=example.edu)\n",
        b"Nov 23 09:55:01 mail amavis[1234]: (01234-01) Passed CLEAN, Queue-ID: D8376B6981, queued_as: 0000000001\n",
        // Junk under a Postfix tag.
        b"Nov 23 09:55:01 mail postfix/qmgr[2226]: STATISTICS1: x=1\n",
        b"\n",
        b"not a log line at all\n",
    ];
    for (i, l) in log.split_inclusive(|&b| b == b'\n').enumerate() {
        mixed.extend_from_slice(l);
        mixed.extend_from_slice(junk[i % junk.len()]);
    }
    // A 10,000-byte line with no envelope, and a last line cut off without
    // its newline.
    mixed.extend(std::iter::repeat_n(b'x', 10_000));
    mixed.push(b'\n');
    mixed.extend_from_slice(b"Nov 23 09:59:59 mail postfix/smtp[9]: FFFFF99999: to=<y@accept.test>, relay=127.0.0.2[127.0.0.2]:2525, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok");
    let path = db.dir.path().join("mixed.log");
    std::fs::write(&path, &mixed).unwrap();
    Capture::Postfix.date(&path);
    let r = db.ingest(&[path]).await.unwrap();
    let real_lines = log.split_inclusive(|&b| b == b'\n').count() as u64;
    assert_eq!(r.stats.lines_read, real_lines * 2 + 2);
    assert!(
        r.stats.lines_unrecognised >= real_lines / 2,
        "{:?}",
        r.stats
    );
    assert!(r.stats.examples.len() <= 5 && !r.stats.examples.is_empty());
    // Every real row is there, nothing more.
    assert_eq!(db.dump().await, clean.dump().await);
}

#[tokio::test]
async fn missing_paren_and_truncated_multibyte() {
    let db = TestDb::new().await;
    let path = db.dir.path().join("cut.log");
    // A bounce whose response was cut mid-character and lost its `)`.
    let mut text = b"Nov 23 10:00:00 mail postfix/qmgr[2]: AB12CD34EF: from=<alice@example.edu>, size=1, nrcpt=1 (queue active)\n".to_vec();
    text.extend_from_slice(b"Nov 23 10:00:01 mail postfix/smtp[3]: AB12CD34EF: to=<z@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host r.test[192.0.2.1] said: 550 5.7.1 \xe4\xb8\n");
    text.extend_from_slice(b"Nov 23 10:00:01 mail postfix/qmgr[2]: AB12CD34EF: removed\n");
    std::fs::write(&path, &text).unwrap();
    // Dated like the capture, so that its November 23 falls in the days
    // `history` covers, whatever today is.
    Capture::Postfix.date(&path);
    let r = db.ingest(&[path]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0);
    let h = db.history("alice@example.edu").await;
    assert_eq!(h.total.counts.bounced, 1);
    let resp = h.details[0].response.as_deref().unwrap();
    assert!(
        resp.starts_with("host r.test[192.0.2.1] said: 550 5.7.1 "),
        "{resp}"
    );
}

#[tokio::test]
async fn empty_file() {
    let db = TestDb::new().await;
    let path = db.dir.path().join("empty.log");
    std::fs::write(&path, b"").unwrap();
    let r = db.ingest(&[path]).await.unwrap();
    assert_eq!(r.stats.lines_read, 0);
    assert!(db.dump().await.is_empty());
}

#[tokio::test]
async fn missing_path_is_named_and_nothing_is_written() {
    let db = TestDb::new().await;
    let missing = db.dir.path().join("no-such-mail.log");
    let err = db
        .ingest(&[fixture("mail.log"), missing.clone()])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no-such-mail.log"), "{err:#}");
    assert!(
        db.dump().await.is_empty(),
        "the good file before it was not read either"
    );
}
