//! Bad input is counted and skipped; it stops nothing and loses nothing.

use mailtrail::ingest::source::MAX_LINE;

use crate::support::{Capture, TestDb, fixture, generated_log};

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

/// A stranger's text in an over-long line (a logged header, a remote
/// server's reply) must not become a line of its own: here its tail, from
/// byte `MAX_LINE` on (where a reader that cut long lines into pieces
/// would start a new one), is a delivery of a local sender's message.
#[tokio::test]
async fn the_tail_of_an_over_long_line_forges_no_row() {
    let head: &[u8] = b"Nov 23 10:00:00 mail postfix/smtpd[1]: ABCDEF1234: client=laptop.example.net[192.0.2.7]\n\
        Nov 23 10:00:00 mail postfix/qmgr[2]: ABCDEF1234: from=<alice@example.edu>, size=1, nrcpt=1 (queue active)\n";
    let forged: &[u8] = b"Nov 23 10:00:00 mail postfix/smtp[1]: ABCDEF1234: to=<x@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)";
    let removed: &[u8] = b"Nov 23 10:00:01 mail postfix/qmgr[2]: ABCDEF1234: removed\n";

    // Control: the same delivery as a line of its own is alice's.
    let control = TestDb::new().await;
    let path = control.dir.path().join("control.log");
    std::fs::write(&path, [head, forged, b"\n", removed].concat()).unwrap();
    control.ingest(&[path]).await.unwrap();
    assert_eq!(
        control.history("alice@example.edu").await.total.counts.sent,
        1
    );

    let db = TestDb::new().await;
    let mut long =
        b"Nov 23 10:00:00 mail postfix/cleanup[3]: ABCDEF1234: warning: header Subject: ".to_vec();
    long.resize(MAX_LINE, b'A');
    long.extend_from_slice(forged);
    long.push(b'\n');
    assert!(long.len() > MAX_LINE + 100);
    let path = db.dir.path().join("long.log");
    std::fs::write(&path, [head, &long, removed].concat()).unwrap();
    let r = db.ingest(&[path]).await.unwrap();
    assert_eq!(db.history("alice@example.edu").await.total.counts.sent, 0);
    assert!(db.dump().await.is_empty(), "{:?}", db.dump().await);
    assert_eq!(r.stats.lines_read, 4);
    assert_eq!(r.stats.lines_too_long, 1);
    assert_eq!(r.stats.lines_unrecognised, 0);
    let text = r.render();
    let counted = text
        .lines()
        .find_map(|l| l.strip_prefix("lines too long"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(counted.trim_start().starts_with("1 "), "{text}");
}

/// A truncated `.gz` first, a good log after it: the good log is read, the
/// lines before the damage are stored, the report names the damaged file,
/// and a second run stores nothing twice.
#[tokio::test]
async fn a_damaged_file_is_named_and_the_next_one_is_read() {
    let db = TestDb::new().await;
    let good = generated_log(db.dir.path(), 2_000, 5);
    let alone = TestDb::new().await;
    alone.ingest(std::slice::from_ref(&good)).await.unwrap();
    let good_rows = alone.dump().await;
    assert!(!good_rows.is_empty());

    let gz = std::fs::read(fixture("mail.log.gz")).unwrap();
    let truncated = db.dir.path().join("mail.log.2.gz");
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    let paths = [truncated.clone(), good.clone()];
    let r = db.ingest(&paths).await.unwrap();

    let damaged: Vec<_> = r.damaged().collect();
    assert_eq!(damaged.len(), 1, "{r:?}");
    let (name, damage) = damaged[0];
    assert_eq!(name, truncated.display().to_string());
    assert!(damage.error.contains("truncated"), "{damage:?}");
    // Some of it was read, up to the damage.
    let read = &r.sources[0];
    assert!(
        read.ended_at > 0 && read.ended_at <= damage.reached,
        "{r:?}"
    );
    assert_eq!(damage.reached, read.ended_at + damage.cut);
    assert_eq!(r.stats.lines_too_long, u64::from(damage.cut > 0));
    let text = r.render();
    assert!(
        text.contains(&format!("{name}: gzip data: the data ends too soon")),
        "{text}"
    );
    assert!(
        text.contains(&format!("read to uncompressed byte {}", damage.reached)),
        "{text}"
    );
    // The good log was read whole.
    assert_eq!(r.sources[1].damage, None);
    assert_eq!(
        r.sources[1].ended_at,
        std::fs::metadata(&good).unwrap().len()
    );

    let rows = db.dump().await;
    for row in &good_rows {
        assert!(rows.contains(row), "missing {row}");
    }
    // The lines read from the damaged file gave rows of their own.
    assert!(rows.len() > good_rows.len());

    let again = db.ingest(&paths).await.unwrap();
    assert_eq!(again.rows_new, 0);
    assert_eq!(again.damaged().count(), 1, "still damaged, still said");
    assert_eq!(db.dump().await, rows);
}

/// `mail.log` compressed by the real tools (`compress.sh`) stores exactly
/// the rows of `mail.log` itself.
#[tokio::test]
async fn compressed_rotations_store_the_rows_of_the_plain_file() {
    let plain = TestDb::new().await;
    let r = plain.ingest(&[fixture("mail.log")]).await.unwrap();
    let want = plain.dump().await;
    assert!(!want.is_empty());
    for name in [
        "mail.log.gz",
        "mail.log.bz2",
        "mail.log.xz",
        "mail.log.zst",
        "mail.log.pzstd.zst",
        "mail.log.multi.gz",
        "mail.log.multi.bz2",
        "mail.log.multi.xz",
        "mail.log.multi.zst",
    ] {
        let db = TestDb::new().await;
        let got = db.ingest(&[fixture(name)]).await.unwrap();
        assert_eq!(db.dump().await, want, "{name}");
        assert_eq!(got.stats.lines_read, r.stats.lines_read, "{name}");
        assert_eq!(got.sources[0].ended_at, r.sources[0].ended_at, "{name}");
        assert_eq!(got.sources[0].damage, None, "{name}");
    }
}
