//! Tricks against "mailed only to the owner", kept as regression tests:
//! addresses a relay would route elsewhere (`alice%evil.test@`,
//! `evil.test!alice@`, source routes, quoted local parts) on every channel
//! where an address enters (the form over HTTP, the command line, the
//! sender of a mail request, the addresses in the logs that warnings go
//! to, the outbox itself); plus addresses that would multiply a mailbox's
//! limit; and a flood of forged requests by mail that would make the
//! service mail a stranger's words.

use std::path::PathBuf;

use mail_parser::MessageParser;
use mailtrail::config::Config;
use mailtrail::domain::Day;
use mailtrail::report::{Channel, Kind, Requester, Spec};
use mailtrail::requests::mail::{Outcome, intake};
use mailtrail::store::{MailCap, NewMail, Store};

use crate::smtp_server::SmtpServer;
use crate::support::TestDb;
use crate::web::{Service, config, filled_form, free_port, message, post, today, wait_for};

/// Addresses that name a local domain but that a relay with Postfix's
/// defaults would deliver to someone else, or that are no plain mailbox.
const ROUTED: [&str; 7] = [
    "alice%evil.test@example.edu",
    "evil.test!alice@example.edu",
    "alice%evil.test",
    "@relay.evil.test:alice@example.edu",
    "@a.evil.test,@b.evil.test:alice@example.edu",
    "\"alice@evil.test\"@example.edu",
    "\"alice\"@example.edu",
];

fn with_relay(db: &TestDb, port: u16, extra: &str) -> Config {
    Config::from_toml(&format!(
        "{}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"mailtrail@example.edu\"\ntimeout_secs = 10\n{extra}\n",
        db.config_text()
    ))
    .unwrap()
}

/// Runs the built binary with `args`, and `stdin`, off the async threads.
async fn mailtrail(args: Vec<String>, stdin: Vec<u8>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn config_file(db: &TestDb, smtp_port: u16) -> PathBuf {
    let path = db.dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"mailtrail@example.edu\"\ntimeout_secs = 10\n",
            db.config_text()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_form_refuses_routed_addresses_and_counts_plus_addresses_for_their_owner() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let server = SmtpServer::start(None).await;
    let cfg = config(
        &db,
        &log,
        free_port().await,
        server.port,
        "max_per_mailbox_per_day = 5\nmax_per_client_per_hour = 100\n",
    );
    let day = today(&cfg).to_string();
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();
    let fields = |mailbox: &str, id: &str, code: &str| {
        [
            ("mailbox", mailbox.to_owned()),
            ("kind", "smtp".to_owned()),
            ("from", day.clone()),
            ("lang", "en".to_owned()),
            ("challenge", id.to_owned()),
            ("code", code.to_owned()),
        ]
    };
    for routed in ROUTED {
        let (id, code) = filled_form(&c, &svc.base, &db.store).await;
        let f = fields(routed, &id, &code);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = post(&c, &svc.base, &f).await;
        assert_eq!(status, 422, "{routed}: {page}");
        assert!(
            page.contains("is not a plain mailbox address"),
            "{routed}: {page}"
        );
    }
    assert!(
        db.store.pending_requests(100).await.unwrap().is_empty()
            && db.store.outbox().await.unwrap().is_empty(),
        "no routed address made a request"
    );

    // judy+0 .. judy+11 are all judy: her five requests a day, no more,
    // each a report of judy's mailed to judy.
    let mut accepted = 0;
    for i in 0..12 {
        let (id, code) = filled_form(&c, &svc.base, &db.store).await;
        let f = fields(&format!("judy+{i}@example.edu"), &id, &code);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = post(&c, &svc.base, &f).await;
        match status {
            200 => {
                assert!(
                    page.contains("will be mailed to judy@example.edu"),
                    "{page}"
                );
                accepted += 1;
            }
            429 => assert!(page.contains("judy@example.edu"), "{page}"),
            other => panic!("{other}: {page}"),
        }
    }
    assert_eq!(accepted, 5);
    wait_for("judy's five reports", || server.received().len() >= 5).await;
    svc.stop().await;
    let got = server.received();
    assert_eq!(got.len(), 5);
    assert!(
        got.iter()
            .all(|m| m.rcpt_to == ["judy@example.edu".to_owned()]),
        "{:?}",
        got.iter().map(|m| &m.rcpt_to).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_command_line_refuses_routed_addresses_and_reads_plus_as_the_owner() {
    let db = TestDb::new().await;
    let server = SmtpServer::start(None).await;
    let cfg = config_file(&db, server.port).display().to_string();
    for routed in ROUTED {
        for cmd in ["report", "history", "access"] {
            let mut args = vec!["--config".into(), cfg.clone(), cmd.into()];
            args.extend(["--mailbox".to_owned(), routed.to_owned()]);
            if cmd == "report" {
                args.extend(["--kind".to_owned(), "smtp".to_owned()]);
            }
            let (code, out, err) = mailtrail(args, Vec::new()).await;
            assert_eq!(code, 2, "{cmd} {routed}: {out} {err}");
            assert!(err.contains("not a plain mailbox"), "{cmd} {routed}: {err}");
        }
    }
    let args = [
        "--config",
        &cfg,
        "report",
        "--mailbox",
        "Judy+Anything",
        "--kind",
        "smtp",
    ];
    let (code, out, err) = mailtrail(args.map(str::to_owned).to_vec(), Vec::new()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("for judy@example.edu"), "{out}");
    let mail = db.store.outbox().await.unwrap();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].recipient, "judy@example.edu");
    let row = db.store.request(1).await.unwrap().unwrap();
    assert_eq!(row.request.mailbox, "judy@example.edu");
}

#[tokio::test]
async fn mail_requests_from_routed_senders_are_ignored() {
    let db = TestDb::new().await;
    let now = chrono::Utc::now().timestamp();
    for routed in ROUTED {
        // A readable request and an unreadable one: neither a report nor a
        // help reply.
        for subject in ["smtp", "gibberish"] {
            let m = message(routed, subject, "", "");
            let got = intake(&db.store, &db.config, routed, &m, now)
                .await
                .unwrap();
            let Outcome::Ignored(why) = got else {
                panic!("{routed}: {got:?}")
            };
            assert!(why.contains("not a plain mailbox"), "{why}");
        }
    }
    assert!(db.store.pending_requests(100).await.unwrap().is_empty());
    assert!(db.store.outbox().await.unwrap().is_empty());

    // The same through `mailtrail request`, as Postfix's pipe runs it.
    let cfg = config_file(&db, 1).display().to_string();
    let m = message(ROUTED[0], "smtp", "", "");
    let args = ["--config", &cfg, "request", "--sender", ROUTED[0]];
    let (code, out, err) = mailtrail(args.map(str::to_owned).to_vec(), m).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ignored") && out.contains("not a plain mailbox"),
        "{out}"
    );
    assert!(db.store.outbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn plus_addresses_share_their_owners_limit_for_mail_requests() {
    let db = TestDb::new().await;
    let now = chrono::Utc::now().timestamp();
    let mut requested = Vec::new();
    for i in 0..12 {
        let sender = format!("judy+{i}@example.edu");
        let m = message(&sender, "smtp", "", "");
        match intake(&db.store, &db.config, &sender, &m, now)
            .await
            .unwrap()
        {
            Outcome::Requested(id) => requested.push(id),
            Outcome::Limited(why) => assert!(why.contains("judy@example.edu"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        requested.len(),
        db.config.web.max_per_mailbox_per_day as usize
    );
    for id in requested {
        let r = db.store.request(id).await.unwrap().unwrap().request;
        assert_eq!(r.mailbox, "judy@example.edu");
    }
}

#[tokio::test]
async fn a_flood_of_forged_requests_gets_a_few_help_replies_that_echo_nothing() {
    let db = TestDb::new().await;
    let server = SmtpServer::start(None).await;
    let c = with_relay(
        &db,
        server.port,
        "max_help_replies_per_recipient_per_day = 2",
    );
    let now = chrono::Utc::now().timestamp();
    let word = "Zq7CallMeAt555";
    let (mut helped, mut limited) = (0, 0);
    for i in 0..30 {
        // Forged: each its own Message-ID, some from plus addresses.
        let sender = if i % 2 == 0 {
            "judy@example.edu".to_owned()
        } else {
            format!("judy+{i}@example.edu")
        };
        let m = message(&sender, &format!("{word} {i}"), &format!("{word} body"), "");
        match intake(&db.store, &c, &sender, &m, now).await.unwrap() {
            Outcome::Helped(_) => helped += 1,
            Outcome::Limited(why) => {
                assert!(
                    why.contains("max_help_replies_per_recipient_per_day"),
                    "{why}"
                );
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((helped, limited), (2, 28));
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    let pass = mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    assert_eq!(pass.sent, 2);
    let got = server.received();
    assert_eq!(got.len(), 2);
    for m in &got {
        assert_eq!(m.rcpt_to, ["judy@example.edu".to_owned()]);
        let parsed = MessageParser::default().parse(&m.data).unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(
            body.contains("smtp 2026-11-01 2026-11-20"),
            "the help: {body}"
        );
        let raw = String::from_utf8_lossy(&m.data);
        assert!(!raw.contains("Zq7"), "a stranger's word echoed: {raw}");
    }
    // A stranger cannot aim the flood at another site either.
    for routed in ROUTED {
        let m = message(routed, word, "", "");
        assert!(matches!(
            intake(&db.store, &c, routed, &m, now).await.unwrap(),
            Outcome::Ignored(_)
        ));
    }
    assert_eq!(db.store.outbox().await.unwrap().len(), 2);
}

fn report_spec(mailbox: &str, day: Day) -> Spec {
    Spec {
        mailbox: mailtrail::domain::Mailbox::parse(mailbox, "example.edu").unwrap(),
        kind: Kind::Smtp,
        range: mailtrail::domain::DateRange::new(day, day).unwrap(),
        lang: mailtrail::config::Lang::En,
        requester: Requester {
            channel: Channel::Cli,
            client_ip: "127.0.0.1".into(),
            at: chrono::Utc::now().timestamp(),
        },
    }
}

#[tokio::test]
async fn every_mail_to_one_mailbox_is_limited_per_day_in_the_database() {
    let db = TestDb::new().await;
    let c = with_relay(&db, 1, "max_mails_per_recipient_per_day = 3");
    let day = today(&c);
    for _ in 0..5 {
        mailtrail::requests::submit(&db.store, &report_spec("kim", day), None)
            .await
            .unwrap();
    }
    let queued = mailtrail::requests::process_pending(&db.store, &c, None)
        .await
        .unwrap();
    assert_eq!(queued, 3);
    let mut failed = Vec::new();
    for id in 1..=5 {
        let r = db.store.request(id).await.unwrap().unwrap();
        if r.state == "failed" {
            failed.push(r.error.unwrap_or_default());
        }
    }
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].contains("max_mails_per_recipient_per_day"),
        "{failed:?}"
    );
    // Durable: another process, with its own connection, counts the same.
    let other = Store::open(&db.url).await.unwrap();
    let id = mailtrail::requests::submit(&other, &report_spec("kim+x", day), None)
        .await
        .unwrap();
    let row = other.request(id).await.unwrap().unwrap();
    let e = mailtrail::requests::process(&other, &c, &row)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("kim@example.edu"), "{e}");
    // Another mailbox is not held up, and a day later kim may have mail
    // again.
    let id = mailtrail::requests::submit(&other, &report_spec("lee", day), None)
        .await
        .unwrap();
    let row = other.request(id).await.unwrap().unwrap();
    mailtrail::requests::process(&other, &c, &row)
        .await
        .unwrap();
    let mail = |key: &str| NewMail {
        idem_key: key.into(),
        recipient: "kim@example.edu".into(),
        sender: "mailtrail@example.edu".into(),
        subject: "s".into(),
        message: b"Subject: s\r\n\r\nx\r\n".to_vec(),
    };
    let now = chrono::Utc::now().timestamp();
    assert!(
        mailtrail::mail::queue(&other, &c, &mail("later-1"), None, now)
            .await
            .is_err()
    );
    mailtrail::mail::queue(&other, &c, &mail("later-2"), None, now + 86_401)
        .await
        .unwrap();
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mails_queued_at_the_same_moment_cannot_pass_the_limit_together() {
    let db = TestDb::new().await;
    let c = with_relay(&db, 1, "max_mails_per_recipient_per_day = 4");
    let now = chrono::Utc::now().timestamp();
    // Open the pool's connections first, so that the queueing below runs
    // on several at once.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.outbox().await.unwrap() })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, c, start) = (db.store.clone(), c.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mail = NewMail {
                    idem_key: format!("together:{i}"),
                    recipient: "kim@example.edu".into(),
                    sender: "mailtrail@example.edu".into(),
                    subject: "s".into(),
                    message: b"Subject: s\r\n\r\nx\r\n".to_vec(),
                };
                mailtrail::mail::queue(&store, &c, &mail, None, now)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut queued = 0;
    for t in tasks {
        queued += usize::from(t.await.unwrap());
    }
    assert_eq!(queued, 4);
    assert_eq!(db.store.outbox().await.unwrap().len(), 4);
}

#[tokio::test]
async fn the_worker_sends_nothing_to_a_recipient_that_is_not_a_plain_local_mailbox() {
    let db = TestDb::new().await;
    let server = SmtpServer::start(None).await;
    let c = with_relay(&db, server.port, "");
    let now = chrono::Utc::now().timestamp();
    // Rows as an older version, or a hand, could have left them.
    let cap = MailCap {
        since: now - 86_400,
        all: 100,
        same_kind: None,
    };
    let mut recipients: Vec<&str> = ROUTED
        .iter()
        .copied()
        .filter(|r| r.contains('@') && !r.starts_with('@'))
        .collect();
    recipients.extend(["judy+x@example.edu", "bob@evil.test", "Carol@example.edu"]);
    recipients.push("carol@example.edu");
    for (i, to) in recipients.iter().enumerate() {
        let mail = NewMail {
            idem_key: format!("hand:{i}"),
            recipient: (*to).to_owned(),
            sender: "mailtrail@example.edu".into(),
            subject: "s".into(),
            message: format!("To: carol@example.edu\r\nSubject: s\r\n\r\n{i}\r\n").into_bytes(),
        };
        db.store.queue_mail(&mail, None, now, &cap).await.unwrap();
    }
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    let pass = mailtrail::mail::send_due(&db.store, &mailer, &c, now)
        .await
        .unwrap();
    assert_eq!((pass.sent, pass.refused), (1, recipients.len() - 1));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["carol@example.edu".to_owned()]);
    for row in db.store.outbox().await.unwrap() {
        if row.recipient != "carol@example.edu" {
            assert_eq!(row.state, "failed", "{}", row.recipient);
            assert!(
                row.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("not a plain mailbox")),
                "{row:?}"
            );
        }
    }
    // And `mail::queue` will not queue such a mail at all.
    for to in [
        "alice%evil.test@example.edu",
        "judy+x@example.edu",
        "x@evil.test",
    ] {
        let mail = NewMail {
            idem_key: format!("again:{to}"),
            recipient: to.into(),
            sender: "mailtrail@example.edu".into(),
            subject: "s".into(),
            message: b"Subject: s\r\n\r\nx\r\n".to_vec(),
        };
        let e = mailtrail::mail::queue(&db.store, &c, &mail, None, now)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a plain mailbox"), "{e}");
    }
}

#[tokio::test]
async fn warnings_go_only_to_plain_local_mailboxes_and_plus_senders_count_for_their_owner() {
    let db = TestDb::new().await;
    let c = Config::from_toml(&format!(
        "{}\n[[alerts.rules]]\nmetric = \"auth_blk\"\nthreshold = 2\n",
        db.config_text()
    ))
    .unwrap();
    // Two refused submissions each (Auth_blk) on one day, as Postfix logs
    // them; the senders are what a stranger chooses.
    let senders = [
        "alice%evil.test@example.edu",
        "evil.test!alice@example.edu",
        "\"alice@evil.test\"@example.edu",
        "carol@example.edu",
        "judy+tag@example.edu",
        "judy@example.edu",
    ];
    let mut log = String::new();
    for (i, s) in senders.iter().enumerate() {
        for j in 0..2 {
            log.push_str(&format!(
                "2026-11-20T10:{i:02}:{j:02}Z mail postfix/smtpd[{}]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 <x@far.test>: Relay access denied; from=<{s}> to=<x@far.test> proto=ESMTP helo=<h>\n",
                100 + i
            ));
        }
    }
    let path = db.dir.path().join("mail.log");
    std::fs::write(&path, log).unwrap();
    db.ingest(&[path]).await.unwrap();
    // judy+tag's refusals are judy's: four of them.
    let day = Day::parse("2026-11-20").unwrap();
    let judy = mailtrail::history::load(
        &db.store,
        &mailtrail::domain::Mailbox::parse("judy", "example.edu").unwrap(),
        mailtrail::domain::DateRange::new(day, day).unwrap(),
        c.tz().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(judy.details.len(), 4);

    let now = chrono::Utc::now().timestamp();
    let o = mailtrail::alerts::run(&db.store, &c, day, false, now)
        .await
        .unwrap();
    let warned: Vec<&str> = o.warnings.iter().map(|w| w.mailbox.as_str()).collect();
    assert_eq!(warned, ["carol@example.edu", "judy@example.edu"]);
    let mut refused: Vec<&str> = o.refused.iter().map(|r| r.address.as_str()).collect();
    refused.sort_unstable();
    assert_eq!(
        refused,
        [
            "\"alice@evil.test\"@example.edu",
            "alice%evil.test@example.edu",
            "evil.test!alice@example.edu",
        ]
    );
    let mut to: Vec<String> = db
        .store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.recipient)
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["carol@example.edu", "judy@example.edu"]);
}
