//! Reports and the outbox, against an SMTP server on loopback: what the
//! owner receives (MIME parts, the attachment, the rows in it), retries,
//! idempotence, escaping of log text, and that nothing but the owner's
//! mailbox is ever a recipient.

use std::io::Read;

use mail_parser::{MessageParser, MimeHeaders};
use mailtrail::config::{Config, Lang};
use mailtrail::domain::{DateRange, Day, Mailbox};
use mailtrail::report::{self, Channel, Data, Kind, Limits, Requester, Spec};
use mailtrail::store::Store;

use crate::smtp_server::{SmtpServer, closed_port};
use crate::support::{Capture, TestDb, dovecot as dovecot_fixture, fixture};

/// The month the captures are in (see [`crate::support::month`]).
fn range() -> DateRange {
    crate::support::month()
}

fn spec(mailbox: &str, kind: Kind, lang: Lang) -> Spec {
    Spec {
        mailbox: Mailbox::parse(mailbox, "example.edu").unwrap(),
        kind,
        range: range(),
        lang,
        requester: Requester {
            channel: Channel::Web,
            client_ip: "192.0.2.7".into(),
            at: 1_795_398_077,
        },
    }
}

/// The test database's config, mailing through `port`.
fn with_relay(c: &Config, port: u16) -> Config {
    let mut c = c.clone();
    c.smtp.host = "127.0.0.1".into();
    c.smtp.port = port;
    c.smtp.from = "mailtrail@example.edu".into();
    c.smtp.timeout_secs = 10;
    c.smtp.retry_initial_secs = 60;
    c.smtp.max_attempts = 3;
    c
}

async fn queue(store: &Store, c: &Config, s: &Spec, key: Option<&str>) -> i64 {
    let id = mailtrail::requests::submit(store, s, key).await.unwrap();
    let row = store.request(id).await.unwrap().unwrap();
    mailtrail::requests::process(store, c, &row).await.unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The parts of a received message: (content type, file name, body bytes).
fn parts(data: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let m = MessageParser::default().parse(data).unwrap();
    m.parts
        .iter()
        .filter(|p| !p.is_multipart())
        .map(|p| {
            let ct = p
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_default();
            (
                ct,
                p.attachment_name().map(str::to_owned),
                p.contents().to_vec(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_requested_report_reaches_the_owner_with_its_rows() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let c = with_relay(&db.config, server.port);
    let s = spec("alice@example.edu", Kind::Smtp, Lang::En);
    let id = queue(&db.store, &c, &s, None).await;

    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    let pass = mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    assert_eq!(pass.sent, 1);
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["alice@example.edu".to_owned()]);
    assert_eq!(got[0].mail_from, "mailtrail@example.edu");
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 1));

    let msg = MessageParser::default().parse(&got[0].data).unwrap();
    let to: Vec<_> = msg
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address())
        .collect();
    assert_eq!(to, ["alice@example.edu"]);
    assert!(msg.subject().unwrap().contains("alice@example.edu"));
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    let p = parts(&got[0].data);
    let kinds: Vec<&str> = p.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(kinds, ["text/plain", "text/html", "text/html"], "{p:?}");
    let attachment = &p[2];
    assert!(attachment.1.as_deref().unwrap().ends_with(".html"));
    let html = String::from_utf8(attachment.2.clone()).unwrap();

    // The rows in the attachment are the mailbox's deliveries, as the
    // fixture's manifest records them.
    let manifest = Capture::Postfix.manifest();
    let want = &manifest["expected"]["alice@example.edu"];
    let h = db.history("alice@example.edu").await;
    // One line per message, its submission (the SMTP login) the
    // message's own line, and one row per delivery under it.
    let logins = h.details.iter().filter(|d| d.status == "auth_rcv").count();
    let messages = html.matches("<tr class=\"mline ").count();
    assert!(messages > 0 && messages <= h.details.len());
    assert_eq!(
        html.matches("<tr class=\"st-").count() + logins,
        h.details.len(),
        "one row per delivery, submissions on their message's line"
    );
    // Each login is the line of a message it handed over: accepted, or
    // refused after it was accepted.
    assert_eq!(
        html.matches("<tr class=\"mline accepted\">").count()
            + html
                .matches("with an SMTP login and accepted, then refused")
                .count(),
        logins,
        "each login is its message's line"
    );
    let rows = |status: &str| {
        let row = html.matches(&format!("<tr class=\"st-{status}\">")).count() as i64;
        if status == "auth_rcv" {
            logins as i64
        } else {
            row
        }
    };
    for status in ["sent", "bounced", "expired", "auth_rcv"] {
        assert_eq!(
            rows(status),
            want[status].as_i64().unwrap(),
            "{status} rows"
        );
    }
    // Auth_blk counts refusals of both kinds: before the queue, and by the
    // content filter after it (each a row of its own, `blocked`).
    let blocked = manifest["filter_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            let who = |k: &str| b[k].as_str() == Some("alice@example.edu");
            who("sender") || who("auth_user")
        })
        .count() as i64;
    assert!(blocked > 0, "the capture has filter refusals for alice");
    assert_eq!(rows("blocked"), blocked, "blocked rows");
    assert_eq!(
        rows("auth_blk") + rows("blocked"),
        want["auth_blk"].as_i64().unwrap(),
        "auth_blk rows"
    );
    assert!(rows("deferred") >= want["deferred_at_least"].as_i64().unwrap());
    // The header says who asked, from where, and the range.
    let r = range();
    for needle in [
        "192.0.2.7",
        "web form",
        &format!("{} to {}", r.from, r.to).replace('-', "/"),
        "English",
    ] {
        // (minijinja's escaping writes `/` as `&#x2f;`)
        assert!(
            html.replace("&#x2f;", "/").contains(needle),
            "{needle} in the header"
        );
    }
    // The text part has the Total row with the day's sum.
    let text = String::from_utf8(p[0].2.clone()).unwrap();
    let total_line = text.lines().find(|l| l.starts_with("Total")).unwrap();
    let sum: i64 = total_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sum, h.total.counts.sum);
    assert!(text.contains(attachment.1.as_deref().unwrap()));
}

#[tokio::test]
async fn a_zipped_report_holds_html_and_csv_of_the_same_rows() {
    let db = TestDb::new().await;
    db.ingest(&[dovecot_fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let mut c = with_relay(&db.config, server.port);
    c.report.always_zip = true;
    let s = spec("alice@example.edu", Kind::Access, Lang::ZhTw);
    queue(&db.store, &c, &s, None).await;
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    let p = parts(&got[0].data);
    let zip_part = p.iter().find(|x| x.0 == "application/zip").expect("a zip");
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_part.2.clone())).unwrap();
    let names: Vec<String> = z.file_names().map(|n| n.unwrap().into_owned()).collect();
    let html_name = names.iter().find(|n| n.ends_with(".html")).unwrap().clone();
    let csv_name = names.iter().find(|n| n.ends_with(".csv")).unwrap().clone();
    let mut html = String::new();
    z.by_name(&html_name)
        .unwrap()
        .read_to_string(&mut html)
        .unwrap();
    let mut csv = String::new();
    z.by_name(&csv_name)
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();

    // What the driving script did to alice, from the fixture's manifest.
    let manifest = Capture::Dovecot.manifest();
    let run = manifest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["log"] == "mail.log")
        .unwrap();
    let want = &run["users"]["alice@example.edu"];
    let want_logins: i64 = want["logins_ok"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    // A master user's login is a login too, marked (`ev-login master`).
    assert_eq!(
        html.matches("<tr class=\"ev-login").count() as i64,
        want_logins
    );
    assert_eq!(
        html.matches("<tr class=\"ev-login master\">").count(),
        want["logins_by_master_user"].as_array().map_or(0, Vec::len)
    );
    let csv_logins = csv
        .lines()
        .filter(|l| l.split(',').nth(1) == Some("login"))
        .count();
    assert_eq!(csv_logins as i64, want_logins);
    let events_html = html.matches("<tr class=\"ev-").count();
    let events_csv = csv
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .count();
    assert_eq!(events_html, events_csv, "the CSV holds the same rows");
    // In Traditional Chinese, with the POP3 note the manifest calls for.
    assert!(html.contains("<html lang=\"zh-TW\">"));
    assert!(html.contains("信箱存取紀錄"));
    let text = String::from_utf8(p[0].2.clone()).unwrap();
    assert!(text.contains("以 POP3 下載並刪除"), "{text}");
    assert!(text.contains("因檔案較大而壓縮") || text.contains("壓縮"));
}

#[tokio::test]
async fn a_451_is_retried_once_and_delivered_once() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    server.refuse_next(1);
    let c = with_relay(&db.config, server.port);
    let id = queue(&db.store, &c, &spec("alice", Kind::Smtp, Lang::En), None).await;
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();

    let t0 = now();
    let p1 = mailtrail::mail::send_due(&db.store, &mailer, &c, t0)
        .await
        .unwrap();
    assert_eq!((p1.sent, p1.retrying), (0, 1));
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert_eq!(row.state, "queued");
    assert!(
        row.last_error.as_deref().unwrap().contains("451"),
        "{row:?}"
    );
    assert_eq!(
        row.next_attempt_at,
        t0 + 60,
        "first wait: retry_initial_secs"
    );

    // Not due yet: nothing is sent.
    let p = mailtrail::mail::send_due(&db.store, &mailer, &c, t0 + 59)
        .await
        .unwrap();
    assert_eq!(p, mailtrail::mail::Pass::default());
    let p2 = mailtrail::mail::send_due(&db.store, &mailer, &c, t0 + 60)
        .await
        .unwrap();
    assert_eq!(p2.sent, 1);
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));
    assert_eq!(server.received().len(), 1, "one delivery");
    assert_eq!(
        server.data_ends(),
        2,
        "two attempts reached the end of DATA"
    );
}

#[tokio::test]
async fn a_relay_that_is_down_is_retried_with_backoff_then_failed_and_nothing_is_lost() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let c = with_relay(&db.config, closed_port().await);
    let id = queue(&db.store, &c, &spec("alice", Kind::Smtp, Lang::En), None).await;
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    let mut t = now();
    let mut waits = Vec::new();
    for attempt in 1..=3 {
        let p = mailtrail::mail::send_due(&db.store, &mailer, &c, t)
            .await
            .unwrap();
        let row = db.store.outbox_mail(id).await.unwrap().unwrap();
        assert_eq!(row.attempts, attempt);
        assert!(row.last_error.is_some());
        if attempt < 3 {
            assert_eq!((p.retrying, row.state.as_str()), (1, "queued"));
            waits.push(row.next_attempt_at - t);
            t = row.next_attempt_at;
        } else {
            assert_eq!((p.failed, row.state.as_str()), (1, "failed"));
        }
    }
    assert_eq!(waits, [60, 120], "the wait doubles");
    // The failed mail is still there, whole, with its recipient.
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert_eq!(row.recipient, "alice@example.edu");
    assert!(MessageParser::default().parse(&row.message).is_some());
    // And it is not tried again.
    let p = mailtrail::mail::send_due(&db.store, &mailer, &c, t + 1_000_000)
        .await
        .unwrap();
    assert_eq!(p, mailtrail::mail::Pass::default());
}

#[tokio::test]
async fn the_same_key_queued_twice_is_sent_once() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let c = with_relay(&db.config, server.port);
    let s = spec("alice", Kind::Smtp, Lang::En);
    let a = queue(&db.store, &c, &s, Some("monthly:2026-11:alice")).await;
    let b = queue(&db.store, &c, &s, Some("monthly:2026-11:alice")).await;
    assert_eq!(a, b);
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    // Queued again after it was sent: still one.
    let c2 = queue(&db.store, &c, &s, Some("monthly:2026-11:alice")).await;
    assert_eq!(c2, a);
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    assert_eq!(server.received().len(), 1);
    assert_eq!(db.store.outbox().await.unwrap().len(), 1);
    // Without a key, each request is its own mail.
    queue(&db.store, &c, &s, None).await;
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn smtp_auth_is_used_and_the_password_is_kept_out_of_every_record() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(Some(("relayuser", "s3cret-Pa55"))).await;
    let mut c = with_relay(&db.config, server.port);
    c.smtp.username = Some("relayuser".into());
    c.smtp.password = Some("s3cret-Pa55".into());
    let id = queue(&db.store, &c, &spec("alice", Kind::Smtp, Lang::En), None).await;
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].auth_user.as_deref(), Some("relayuser"));
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&row.message).contains("s3cret"));
    assert!(!format!("{:?}", c.smtp).contains("s3cret"));
    assert!(!format!("{mailer:?}").contains("s3cret"));

    // A wrong password is a permanent refusal: failed, with the server's
    // answer and not the password.
    c.smtp.password = Some("wrong-Pa55".into());
    let id = queue(&db.store, &c, &spec("alice", Kind::Smtp, Lang::En), None).await;
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    let err = row.last_error.unwrap();
    assert!(err.contains("535"), "{err}");
    assert!(!err.contains("wrong-Pa55"));
}

/// Postfix and Dovecot lines in real shapes whose attacker-controlled
/// parts (a remote server's reply, a Message-ID, a folder name, a client
/// name) carry markup. Stamped `{day}`, the day of the report's range,
/// with the year, so that they fall in it whatever the date of the file.
const HOSTILE: &str = r#"{day}T10:05:51+08:00 mail postfix/submission/smtpd[27017]: 9B1A8B6981: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice@example.edu
{day}T10:05:51+08:00 mail postfix/cleanup[27022]: 9B1A8B6981: message-id=<"><script>alert(1)</script>@evil.test>
{day}T10:05:51+08:00 mail postfix/qmgr[27002]: 9B1A8B6981: from=<alice@example.edu>, size=493, nrcpt=1 (queue active)
{day}T10:05:51+08:00 mail postfix/smtp[27028]: 9B1A8B6981: to=<nobody@reject.test>, relay=127.0.0.3[127.0.0.3]:2525, delay=0.13, delays=0/0.02/0.04/0.06, dsn=5.1.1, status=bounced (host 127.0.0.3[127.0.0.3] said: 550 5.1.1 <script>alert("owned")</script> <img src=x onerror='alert(2)'> & "quotes" (in reply to RCPT TO command))
{day}T10:05:51+08:00 mail postfix/qmgr[27002]: 9B1A8B6981: removed
{day}T11:23:03+08:00 mail dovecot: imap-login: Login: user=<alice@example.edu>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=23214, secured, session=<R6eQHOlgS5t/AAAB>
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: ID sent: name=<b onmouseover=alert(3)>Evil</b>, version=1
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: expunge: box=<i>INBOX</i>, uid=1, msgid=<"><script>alert(4)</script>@evil.test>, size=248, from=<script>x</script>, subject=<script>alert(5)</script>, flags=(\Recent)
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: Mailbox deleted: <svg onload=alert(6)>
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: Disconnected: Logged out in=100 out=200 deleted=0 expunged=1 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0
{day}T11:23:04+08:00 mail postfix/smtpd[300]: 9A1B2C3D4E: client=evil.test[192.0.2.9]
{day}T11:23:04+08:00 mail postfix/cleanup[301]: 9A1B2C3D4E: info: header Subject: <script>alert(7)</script> from evil.test[192.0.2.9]; from=<x@evil.test> to=<alice@example.edu> proto=ESMTP helo=<evil.test>
{day}T11:23:04+08:00 mail postfix/cleanup[301]: 9A1B2C3D4E: message-id=<"><img src=x onerror='alert(8)'>@evil.test>
{day}T11:23:04+08:00 mail postfix/qmgr[302]: 9A1B2C3D4E: from=<x@evil.test>, size=500, nrcpt=1 (queue active)
{day}T11:23:04+08:00 mail postfix/lmtp[303]: 9A1B2C3D4E: to=<alice@example.edu>, relay=mail.example.edu[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <alice@example.edu> AbCdEfGh Saved)
{day}T11:23:04+08:00 mail dovecot: lmtp(alice@example.edu)<304><AbCdEfGh>: sieve: msgid=<x@evil.test>: fileinto action: stored mail into mailbox '<b onclick=alert(10)>Box</b>'
{day}T11:23:05+08:00 mail postfix/smtpd[300]: NOQUEUE: reject: RCPT from evil.test[192.0.2.9]: 554 5.7.1 <alice@example.edu>: Recipient address rejected: <svg onload=alert(11)>; from=<x@evil.test> to=<alice@example.edu> proto=ESMTP helo=<evil.test>
"#;

#[tokio::test]
async fn markup_from_log_lines_shows_as_text_in_every_html() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("hostile.log");
    let day = range().to.to_string();
    std::fs::write(&log, HOSTILE.replace("{day}", &day)).unwrap();
    db.ingest(&[log]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let limits = Limits::from_config(&db.config);
    for kind in [Kind::Smtp, Kind::Access, Kind::Received] {
        for lang in [Lang::En, Lang::ZhTw] {
            let s = spec("alice", kind, lang);
            let data = Data::load(&db.store, &s, tz).await.unwrap();
            let r = report::render(s, &data, limits, tz, chrono::Utc::now()).unwrap();
            let attachment = String::from_utf8(r.attachment.bytes.clone()).unwrap();
            for html in [&attachment, &r.html] {
                for bad in [
                    "<script",
                    "<img",
                    "<svg onload",
                    "<b ",
                    "<i>",
                    "onerror='",
                    "\"><s",
                ] {
                    assert!(!html.contains(bad), "{kind:?} {lang:?}: {bad} in\n{html}");
                }
            }
            // The text is there, escaped.
            let want = match kind {
                Kind::Smtp => "&lt;script&gt;alert(&quot;owned&quot;)&lt;&#x2f;script&gt;",
                Kind::Access => "&lt;svg onload=alert(6)&gt;",
                Kind::Received => "&lt;script&gt;alert(7)&lt;&#x2f;script&gt;",
            };
            assert!(
                attachment.contains(want),
                "{kind:?}: {want} in\n{attachment}"
            );
            if kind == Kind::Received {
                // The folder, the Message-ID and the refusal's reply too.
                for want in [
                    "&lt;b onclick=alert(10)&gt;Box&lt;&#x2f;b&gt;",
                    "onerror=&#x27;alert(8)&#x27;",
                    "&lt;svg onload=alert(11)&gt;",
                ] {
                    assert!(attachment.contains(want), "{want} in\n{attachment}");
                }
            }
        }
    }
}

#[tokio::test]
async fn reports_go_to_their_mailbox_and_nowhere_else() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let c = with_relay(&db.config, server.port);
    // Requests for several mailboxes: each mail goes to its own mailbox.
    for who in ["alice", "bob@example.edu", "dave@cs.example.edu"] {
        queue(&db.store, &c, &spec(who, Kind::Smtp, Lang::En), None).await;
    }
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    let got = server.received();
    let rcpts: Vec<Vec<String>> = got.iter().map(|r| r.rcpt_to.clone()).collect();
    assert_eq!(
        rcpts,
        [
            vec!["alice@example.edu".to_owned()],
            vec!["bob@example.edu".to_owned()],
            vec!["dave@cs.example.edu".to_owned()]
        ]
    );
    for r in &got {
        let m = MessageParser::default().parse(&r.data).unwrap();
        assert!(m.cc().is_none() && m.bcc().is_none() && m.reply_to().is_none());
        let to: Vec<_> = m.to().unwrap().iter().filter_map(|a| a.address()).collect();
        assert_eq!(to, [r.rcpt_to[0].as_str()]);
    }
    // Nothing on the wire but one RCPT per message.
    let rcpt_lines = server
        .transcript()
        .into_iter()
        .filter(|l| l.to_ascii_uppercase().starts_with("RCPT"))
        .count();
    assert_eq!(rcpt_lines, 3);

    // Addresses that try to smuggle a second recipient or a header are
    // refused before anything is written.
    for evil in [
        "alice@example.edu, mallory@evil.test",
        "alice@example.edu\r\nBcc: mallory@evil.test",
        "alice@example.edu>\r\nRCPT TO:<mallory@evil.test",
        "\"alice\"@example.edu",
        "alice@example.edu mallory@evil.test",
    ] {
        assert!(Mailbox::parse(evil, "example.edu").is_err(), "{evil:?}");
    }

    // Rows of one mailbox are never rendered for another.
    let tz = db.config.tz().unwrap();
    let alice = spec("alice", Kind::Smtp, Lang::En);
    let data = Data::load(&db.store, &alice, tz).await.unwrap();
    let bob = spec("bob", Kind::Smtp, Lang::En);
    let err =
        report::render(bob, &data, Limits::from_config(&c), tz, chrono::Utc::now()).unwrap_err();
    assert!(format!("{err}").contains("not of bob@example.edu"), "{err}");
}

#[test]
fn the_report_command_has_no_way_to_name_another_recipient() {
    for flag in [
        "--recipient",
        "--rcpt",
        "--cc",
        "--bcc",
        "--send-to",
        "--email",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .args([
                "report",
                "--mailbox",
                "alice",
                "--kind",
                "smtp",
                flag,
                "x@evil.test",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unexpected argument"), "{flag}: {err}");
    }
}

#[tokio::test]
async fn a_report_too_large_even_zipped_is_truncated_visibly_and_fits() {
    let db = TestDb::new().await;
    let log = crate::support::generated_log(db.dir.path(), 300_000, 7);
    db.ingest(&[log]).await.unwrap();
    // The busiest sender of the generated log.
    let (busiest, n, first, last): (String, i64, i32, i32) = crate::on_any_pool!(&db.store, pool => sqlx::query_as(
        "SELECT m.address, COUNT(*) c, MIN(e.day), MAX(e.day) FROM smtp_rows e JOIN mailboxes m ON m.id = e.mailbox_id GROUP BY m.address ORDER BY c DESC, m.address LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert!(n > 2000, "{busiest} has {n} rows");
    let tz = db.config.tz().unwrap();
    let s = Spec {
        range: DateRange::new(Day::from_key(first).unwrap(), Day::from_key(last).unwrap()).unwrap(),
        ..spec(&busiest, Kind::Smtp, Lang::En)
    };
    let data = Data::load(&db.store, &s, tz).await.unwrap();
    let whole = report::render(
        s.clone(),
        &data,
        Limits::from_config(&db.config),
        tz,
        chrono::Utc::now(),
    )
    .unwrap();
    assert!(whole.truncated.is_none());
    let limit = 65_536;
    assert!(whole.estimated_mail_bytes() > limit);

    let limits = Limits {
        max_message_bytes: limit,
        ..Limits::from_config(&db.config)
    };
    let s2 = s.clone();
    let r = report::render(s, &data, limits, tz, chrono::Utc::now()).unwrap();
    let t = r.truncated.clone().expect("truncated");
    assert_eq!(t.total as i64, n);
    assert!(t.shown > 0 && t.shown < t.total);
    assert_eq!(r.attachment.content_type, "application/zip");
    // The composed mail fits the limit.
    let mail = mailtrail::mail::message::compose(&r, "mailtrail@example.edu", "k", now()).unwrap();
    assert!(
        mail.message.len() as u64 <= limit,
        "{} bytes",
        mail.message.len()
    );
    // It says so in the mail and in the report, with the numbers.
    let says = format!("the first {} of {} rows", t.shown, t.total);
    assert!(r.text.contains(&says), "{}", r.text);
    assert!(r.html.contains(&says));
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(r.attachment.bytes.clone())).unwrap();
    let name = z
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .find(|n| n.ends_with(".html"))
        .unwrap();
    let mut html = String::new();
    z.by_name(&name).unwrap().read_to_string(&mut html).unwrap();
    assert!(html.contains(&says));
    assert_eq!(html.matches("<tr class=\"st-").count(), t.shown);

    // Rows that could never fit are not even read: at most max_rows (and
    // one more, to say where the rest start), whatever the mailbox holds.
    let cap = limits.max_rows();
    assert!(cap < n as usize, "{cap} of {n}");
    let capped = Data::load_within(&db.store, &s2, tz, limits).await.unwrap();
    let Data::Smtp(h) = &capped else {
        unreachable!()
    };
    assert_eq!(h.details.len(), cap + 1);
    assert_eq!(h.total.counts.sum, n, "the table still counts every row");
    let r = report::render(s2, &capped, limits, tz, chrono::Utc::now()).unwrap();
    let t = r.truncated.clone().expect("truncated");
    assert_eq!(t.total as i64, n);
    assert!(t.shown <= cap);
    let Data::Smtp(all) = &data else {
        unreachable!()
    };
    assert_eq!(
        t.next, all.details[t.shown].time,
        "where the rows left out start"
    );
    let mail = mailtrail::mail::message::compose(&r, "mailtrail@example.edu", "k", now()).unwrap();
    assert!(mail.message.len() as u64 <= limit);
    assert!(
        r.text
            .contains(&format!("the first {} of {} rows", t.shown, t.total))
    );
}

/// Runs the `mailtrail` binary off the async threads, so the test's SMTP
/// server keeps answering.
async fn mailtrail(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn report_and_worker_commands_queue_send_and_write_files() {
    let server = SmtpServer::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"mailtrail@example.edu\"\ntimeout_secs = 10\n[report]\ndefault_language = \"en\"\n",
            crate::support::config_text(&crate::support::database_url(dir.path(), "t"), 1000),
            server.port
        ),
    )
    .unwrap();
    let c = config.display().to_string();
    let base = |rest: &[&str]| {
        let mut v = vec!["--config".to_owned(), c.clone()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let (code, _, err) = mailtrail(base(&["ingest", fixture("mail.log").to_str().unwrap()])).await;
    assert_eq!(code, 0, "{err}");

    let (from, to) = (range().from.to_string(), range().to.to_string());
    let range = ["--from", &from, "--to", &to];
    let out_file = dir.path().join("alice.html");
    let mut args = base(&["report", "--mailbox", "alice", "--kind", "smtp", "--out"]);
    args.push(out_file.display().to_string());
    args.extend(range.iter().map(|s| s.to_string()));
    let (code, out, err) = mailtrail(args).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("HTML"), "{out}");
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        written.contains("<html lang=\"en\">"),
        "the configured default language"
    );
    assert!(server.received().is_empty(), "--out mails nothing");

    let mut args = base(&["report", "--mailbox", "alice", "--kind", "smtp"]);
    args.extend(range.iter().map(|s| s.to_string()));
    let (code, out, err) = mailtrail(args).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("queued outbox 1 for alice@example.edu"),
        "{out}"
    );
    assert!(server.received().is_empty(), "queued, not sent yet");

    let (code, out, err) = mailtrail(base(&["worker", "--once"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sent 1"), "{out}");
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["alice@example.edu"]);
    // The mailed attachment has the rows the --out file has.
    let p = parts(&got[0].data);
    let mailed = String::from_utf8(p[2].2.clone()).unwrap();
    assert_eq!(
        mailed.matches("<tr class=\"st-").count(),
        written.matches("<tr class=\"st-").count()
    );
    assert!(
        mailed.contains("command line"),
        "the channel is in the header"
    );

    // A mailbox outside local_domains, and a bad language, are refused.
    let (code, _, err) = mailtrail(base(&[
        "report",
        "--mailbox",
        "x@gmail.com",
        "--kind",
        "smtp",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not in a local domain"), "{err}");
    let (code, _, err) = mailtrail(base(&[
        "report",
        "--mailbox",
        "alice",
        "--kind",
        "smtp",
        "--lang",
        "fr",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("zh-TW or en"), "{err}");
}

#[tokio::test]
async fn an_attempt_cut_off_by_a_crash_is_retried_after_its_lease_once() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let c = with_relay(&db.config, server.port);
    let id = queue(&db.store, &c, &spec("alice", Kind::Smtp, Lang::En), None).await;
    // A worker takes the mail and dies before recording anything.
    let t0 = now();
    let lease = t0 + 120;
    let taken = db.store.claim_mail(t0, lease).await.unwrap().unwrap();
    assert_eq!(taken.id, id);
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    // Another worker leaves it alone while the lease runs...
    let p = mailtrail::mail::send_due(&db.store, &mailer, &c, lease - 1)
        .await
        .unwrap();
    assert_eq!(p.sent, 0);
    // ...and sends it once the lease is over, once.
    let p = mailtrail::mail::send_due(&db.store, &mailer, &c, lease)
        .await
        .unwrap();
    assert_eq!(p.sent, 1);
    let p = mailtrail::mail::send_due(&db.store, &mailer, &c, lease + 100_000)
        .await
        .unwrap();
    assert_eq!(p.sent, 0);
    assert_eq!(server.received().len(), 1);
    let row = db.store.outbox_mail(id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));
}

#[tokio::test]
async fn a_request_that_cannot_be_rendered_is_marked_failed_and_queues_nothing() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    // A warning for a day on which no threshold was recorded for alice:
    // there is nothing to warn about, so nothing may be mailed.
    let s = spec("alice@example.edu", Kind::Smtp, Lang::En);
    let id =
        mailtrail::requests::submit_as(&db.store, &s, None, mailtrail::requests::Purpose::Warning)
            .await
            .unwrap();
    let row = db.store.request(id).await.unwrap().unwrap();
    let err = mailtrail::requests::process(&db.store, &db.config, &row)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no threshold"), "{err:#}");
    let row = db.store.request(id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert!(row.error.unwrap().contains("no threshold"));
    assert_eq!(row.outbox_id, None);
    assert!(db.store.pending_requests(10).await.unwrap().is_empty());
    let queued: i64 = crate::on_any_pool!(&db.store, p => sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(p)
        .await
        .unwrap());
    assert_eq!(queued, 0);
}

/// A report larger than `report.zip_over_bytes` is attached zipped, the
/// page in the ZIP the very page a smaller limit would have attached, and
/// the mail says why; one under it is the page itself.
#[tokio::test]
async fn a_report_over_the_zip_limit_is_zipped_and_says_so() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let s = spec("alice@example.edu", Kind::Smtp, Lang::En);
    let data = Data::load(&db.store, &s, tz).await.unwrap();
    let now = chrono::Utc::now();
    let base = Limits::from_config(&db.config);
    let plain = Limits {
        always_zip: false,
        zip_over_bytes: 10_000_000,
        ..base
    };
    let page = report::render(s.clone(), &data, plain, tz, now).unwrap();
    assert_eq!(page.attachment.content_type, "text/html; charset=utf-8");
    assert!(!page.text.contains("zipped because it is large"));
    let small = Limits {
        zip_over_bytes: page.attachment.bytes.len() as u64 - 1,
        ..plain
    };
    let r = report::render(s, &data, small, tz, now).unwrap();
    assert_eq!(r.attachment.content_type, "application/zip");
    assert!(r.attachment.filename.ends_with(".zip"));
    assert!(r.text.contains("zipped because it is large"), "{}", r.text);
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(r.attachment.bytes.clone())).unwrap();
    let name = page.attachment.filename.clone();
    let mut html = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut html).unwrap();
    assert_eq!(html, page.attachment.bytes);
}
