//! The real Postfix capture, checked against what its driver sent.

use serde_json::Value;

use crate::support::{TestDb, fixture};

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap()
}

/// The counts of every mailbox in the manifest, checked against `history`.
async fn assert_counts_match_manifest(db: &TestDb) {
    let m = manifest();
    let expected = m["expected"].as_object().unwrap();
    assert!(!expected.is_empty());
    for (mailbox, want) in expected {
        let h = db.history(mailbox).await;
        let t = &h.total.counts;
        let got = [
            ("auth_rcv", t.auth_rcv),
            ("auth_blk", t.auth_blk),
            ("sent", t.sent),
            ("bounced", t.bounced),
            ("expired", t.expired),
        ];
        for (k, v) in got {
            assert_eq!(Some(v), want[k].as_i64(), "{mailbox} {k}");
        }
        match (want.get("deferred"), want.get("deferred_at_least")) {
            (Some(d), _) => assert_eq!(Some(t.deferred), d.as_i64(), "{mailbox} deferred"),
            (None, Some(min)) => assert!(
                t.deferred >= min.as_i64().unwrap(),
                "{mailbox} deferred {} < {min}",
                t.deferred
            ),
            (None, None) => panic!("manifest has no deferred figure for {mailbox}"),
        }
        assert_eq!(
            t.sum,
            t.auth_blk + t.auth_rcv + t.bounced + t.deferred + t.expired + t.sent
        );
        // The daily rows add up to the total.
        let day_sum: i64 = h.days.iter().map(|d| d.counts.sum).sum();
        assert_eq!(day_sum, t.sum, "{mailbox}");
        // Details are the same events, in time order.
        assert_eq!(h.details.len() as i64, t.sum, "{mailbox}");
        assert!(h.details.windows(2).all(|w| w[0].time <= w[1].time));
    }
}

#[tokio::test]
async fn classic_syslog_capture_matches_what_was_sent() {
    let db = TestDb::new().await;
    let r = db.ingest(&[fixture("mail.log")]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{:?}", r.stats.examples);
    assert_counts_match_manifest(&db).await;
}

#[tokio::test]
async fn rfc3339_capture_matches_what_was_sent() {
    let db = TestDb::new().await;
    let r = db.ingest(&[fixture("mail-rfc3339.log")]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{:?}", r.stats.examples);
    assert_counts_match_manifest(&db).await;
}

#[tokio::test]
async fn short_iso_capture_matches_what_was_sent() {
    let db = TestDb::new().await;
    let r = db.ingest(&[fixture("mail-shortiso.log")]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{:?}", r.stats.examples);
    assert_counts_match_manifest(&db).await;
}

#[tokio::test]
async fn the_three_envelopes_store_the_same_rows() {
    let a = TestDb::new().await;
    a.ingest(&[fixture("mail.log")]).await.unwrap();
    let b = TestDb::new().await;
    b.ingest(&[fixture("mail-rfc3339.log")]).await.unwrap();
    let c = TestDb::new().await;
    c.ingest(&[fixture("mail-shortiso.log")]).await.unwrap();
    let (da, dc) = (a.dump().await, c.dump().await);
    assert!(!da.is_empty());
    assert_eq!(
        da, dc,
        "classic and short-iso stamps are both whole seconds"
    );
    // RFC 3339 stamps carry microseconds the classic ones do not; keys use
    // whole seconds, so everything else is the same.
    assert_eq!(a.dump_rows(false).await, b.dump_rows(false).await);
    // All three in one database: every line is stored once.
    a.ingest(&[fixture("mail-rfc3339.log"), fixture("mail-shortiso.log")])
        .await
        .unwrap();
    assert_eq!(a.dump().await, da);
}

#[tokio::test]
async fn remote_responses_are_kept_whole() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let m = manifest();
    let mut checked = 0;
    for s in m["submissions"].as_array().unwrap() {
        for r in s["recipients"].as_array().unwrap() {
            if r["expect"] != "bounced" {
                continue;
            }
            let sender = s["sender"].as_str().unwrap();
            let addr = r["address"].as_str().unwrap();
            let reply = r["remote_reply"].as_str().unwrap();
            let h = db.history(sender).await;
            let d = h
                .details
                .iter()
                .find(|d| d.status == "bounced" && d.recipient.as_deref() == Some(addr))
                .unwrap_or_else(|| panic!("no bounce of {addr} for {sender}"));
            let resp = d.response.as_deref().unwrap();
            assert!(resp.contains(reply), "{resp:?} lacks {reply:?}");
            assert!(resp.ends_with("(in reply to RCPT TO command)"), "{resp}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "the capture has bounces from two senders");
}

#[tokio::test]
async fn null_sender_notices_count_for_nobody() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let log = std::fs::read_to_string(fixture("mail.log")).unwrap();
    // Notices exist in the capture, and are delivered locally...
    assert!(log.contains("sender non-delivery notification"));
    // ...but no mailbox has a row for a delivery of a message with from=<>.
    let m = manifest();
    let expected_sent: i64 = m["expected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["sent"].as_i64().unwrap())
        .sum();
    let mut stored_sent = 0;
    for mb in m["expected"].as_object().unwrap().keys() {
        stored_sent += db.history(mb).await.total.counts.sent;
    }
    assert_eq!(stored_sent, expected_sent);
}
