//! What an owner reads in a report: one line per message with its
//! recipients under it, plain times with the zone said once, quiet days in
//! one line, NTHU's column names in zh-TW, POP3 counted as NTHU counts
//! it, and the help contact, the channel and the records' freshness; an
//! empty report says only that nothing happened.

use chrono::Utc;
use mail_parser::MessageParser;
use mailtrail::config::{Config, Lang};
use mailtrail::domain::Mailbox;
use mailtrail::report::{self, Channel, Data, Kind, Limits, Notes, Report, Requester, Spec};

use crate::support::{TestDb, dovecot, fixture, month};

fn spec(mailbox: &str, kind: Kind, lang: Lang, channel: Channel) -> Spec {
    Spec {
        mailbox: Mailbox::parse(mailbox, "example.edu").unwrap(),
        kind,
        range: month(),
        lang,
        requester: Requester {
            channel,
            client_ip: if channel == Channel::Web {
                "192.0.2.7".into()
            } else {
                "127.0.0.1".into()
            },
            at: 1_795_398_077,
        },
    }
}

fn notes(ingested_us: Option<i64>) -> Notes {
    Notes {
        help_address: Some("help@example.edu".into()),
        help_url: Some("https://help.example.edu/mail".into()),
        ingested_us,
    }
}

async fn render(db: &TestDb, s: Spec, notes: &Notes) -> Report {
    let tz = db.config.tz().unwrap();
    let data = Data::load(&db.store, &s, tz).await.unwrap();
    report::render_noted(
        s,
        &data,
        Limits::from_config(&db.config),
        tz,
        Utc::now(),
        notes,
    )
    .unwrap()
}

/// The attachment's HTML with minijinja's escaped `/` read back.
fn page(r: &Report) -> String {
    String::from_utf8(r.attachment.bytes.clone())
        .unwrap()
        .replace("&#x2f;", "/")
}

#[tokio::test]
async fn each_message_is_one_numbered_line_with_its_recipients_under_it() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let h = db.history("alice@example.edu").await;
    let r = render(
        &db,
        spec("alice@example.edu", Kind::Smtp, Lang::En, Channel::Web),
        &notes(None),
    )
    .await;
    let html = page(&r);
    // Messages numbered from 1, as many as distinct queue IDs (and
    // refusals without one).
    let mut queues: Vec<&str> = h
        .details
        .iter()
        .filter_map(|d| d.queue_id.as_deref())
        .collect();
    queues.sort();
    queues.dedup();
    let loose = h.details.iter().filter(|d| d.queue_id.is_none()).count();
    let lines = html.matches("<tr class=\"mline ").count();
    assert_eq!(lines, queues.len() + loose);
    for n in [1, lines] {
        assert!(html.contains(&format!("\">{n}. 20")), "message {n}");
    }
    // Times as 2026/11/23 10:07:11, the zone said once, in the header.
    let first = &h.details[0].time;
    let shown = format!("{} {}", first[..10].replace('-', "/"), &first[11..19]);
    assert!(html.contains(&shown), "{shown}");
    assert!(!html.contains(first.as_str()), "no RFC 3339 time: {first}");
    assert_eq!(html.matches("Asia/Taipei (UTC+08:00)").count(), 1);
    // The site's own server in its own column: the capture's host.
    assert!(html.contains(&format!(">{}</td>", h.details[0].host)));
    // The receiving server beside the reply, as a person reads it: the
    // capture's `127.0.0.2[127.0.0.2]:2525` is 127.0.0.2, and `none` (no
    // connection made; the reply says why) is not shown.
    assert!(
        h.details
            .iter()
            .any(|d| d.relay.as_deref() == Some("127.0.0.2[127.0.0.2]:2525")),
        "the capture delivers to 127.0.0.2"
    );
    assert!(html.contains("Receiving server: 127.0.0.2</div>"), "{html}");
    assert!(!html.contains("Receiving server: none"), "{html}");
    assert!(!html.contains(":2525</div>"), "{html}");
    // 30 days, one with mail: the quiet ones in one line.
    let busy = h.days.iter().filter(|d| d.counts.sum > 0).count();
    assert!(busy < h.days.len());
    assert!(html.contains("nothing sent"));
    // A line per busy day in each of the two daily tables (what was
    // submitted, what became of the deliveries).
    let day_rows = html.matches("<tr><td data-label=\"Date\">").count();
    assert_eq!(day_rows, 2 * busy);
}

#[tokio::test]
async fn a_message_refused_after_it_was_accepted_reads_as_refused() {
    let db = TestDb::new().await;
    let day = month().to.to_string();
    let log = db.dir.path().join("refused.log");
    std::fs::write(
        &log,
        format!(
            "{day}T10:05:51+08:00 mail postfix/submission/smtpd[27017]: 9B1A8B6981: client=pc[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu\n\
             {day}T10:05:52+08:00 mail postfix/cleanup[27022]: 9B1A8B6981: milter-reject: END-OF-MESSAGE from pc[192.0.2.7]: 5.3.4 Message size exceeds the limit of this site; from=<alice@example.edu> to=<bob@elsewhere.test> proto=ESMTP helo=<pc>\n"
        ),
    )
    .unwrap();
    db.ingest(&[log]).await.unwrap();
    let h = db.history("alice@example.edu").await;
    let statuses: Vec<&str> = h.details.iter().map(|d| d.status).collect();
    assert!(statuses.contains(&"auth_rcv"), "{statuses:?}");
    assert!(
        statuses.iter().any(|s| *s == "auth_blk" || *s == "blocked"),
        "{statuses:?}"
    );
    for lang in [Lang::En, Lang::ZhTw] {
        let r = render(
            &db,
            spec("alice@example.edu", Kind::Smtp, lang, Channel::Web),
            &notes(None),
        )
        .await;
        let html = page(&r);
        assert_eq!(html.matches("<tr class=\"mline ").count(), 1, "one message");
        assert!(html.contains("<tr class=\"mline refused\">"), "{html}");
        assert!(!html.contains("<tr class=\"mline accepted\">"));
        let said = match lang {
            Lang::En => "then refused by our server: it was never sent",
            Lang::ZhTw => "之後遭本校伺服器拒絕：並未寄出",
        };
        assert!(html.contains(said), "{lang:?}");
        assert!(html.contains("Message size exceeds the limit"));
    }
}

#[tokio::test]
async fn zh_tw_reports_use_nthu_column_names_and_translate_dovecot() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log"), dovecot("mail.log")])
        .await
        .unwrap();
    let smtp = page(
        &render(
            &db,
            spec("alice@example.edu", Kind::Smtp, Lang::ZhTw, Channel::Web),
            &notes(None),
        )
        .await,
    );
    for col in [
        "總和 Sum",
        "退信 Bounced",
        "延遲 Deferred",
        "逾期 Expired",
        "成功寄出 Sent",
        "拒絕寄送 Auth_blk",
        "登入寄件 Auth_rcv",
    ] {
        assert!(smtp.contains(&format!(">{col}</th>")), "{col}");
    }
    assert!(!smtp.contains(">Sum</th>"));
    let access = page(
        &render(
            &db,
            spec("alice@example.edu", Kind::Access, Lang::ZhTw, Channel::Web),
            &notes(None),
        )
        .await,
    );
    // Dovecot's `Logged out`, translated, the original in a tooltip.
    assert!(access.contains("<abbr title=\"Logged out\">已登出</abbr>"));
    assert!(!access.contains(">Logged out<"));
}

#[tokio::test]
async fn access_rows_count_as_nthu_does_and_match_the_summary() {
    let db = TestDb::new().await;
    db.ingest(&[dovecot("mail.log")]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let s = spec("alice@example.edu", Kind::Access, Lang::En, Channel::Web);
    let Data::Access(h) = Data::load(&db.store, &s, tz).await.unwrap() else {
        unreachable!()
    };
    let html = page(&render(&db, s, &notes(None)).await);
    // POP3: of the messages there before deletion, how many went and how
    // many are left; the mailbox's size in KB or MB.
    let pop = h
        .events
        .iter()
        .find(|e| e.kind == "logout" && e.protocol == Some("pop3") && e.retained.is_some())
        .expect("a POP3 logout with its counts");
    let (del, left) = (pop.deleted.unwrap(), pop.retained.unwrap());
    assert!(html.contains(&format!(
        "{del} of {} messages deleted, {left} left",
        del + left
    )));
    let size = pop.size_bytes.unwrap();
    assert!(size >= 1024, "the capture's POP3 mailbox is over 1 KB");
    assert!(html.contains(&format!(
        "mailbox {:.1} KB before deletion",
        size as f64 / 1024.0
    )));
    assert!(!html.contains(&format!("{size} B")));
    // IMAP: removed (expunged) and marked deleted told apart.
    assert!(html.contains("messages removed (expunged)"));
    assert!(html.contains("marked deleted (still there until removed)"));
    // The summary's failed login attempts are the rows' attempts.
    let attempts: i64 = h
        .facts
        .iter()
        .zip(&h.events)
        .filter(|(_, e)| e.kind == "auth_failed")
        .map(|(f, _)| f.attempts.unwrap_or(1))
        .sum();
    let summed: i64 = h.days.iter().map(|d| d.failed_logins).sum();
    assert!(attempts > 0);
    assert_eq!(summed, attempts);
    assert!(html.contains(">Failed login attempts</th>"));
    // The session ID is a tooltip, not a column.
    let session = h.events.iter().find_map(|e| e.session.clone()).unwrap();
    assert!(html.contains(&format!("title=\"Session {session}\"")));
    assert!(!html.contains(">Session</th>"));
}

#[tokio::test]
async fn reports_name_the_help_contact_the_channel_and_how_fresh_they_are() {
    let db = TestDb::new().await;
    let before = Utc::now().timestamp_micros();
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let after = Utc::now().timestamp_micros();
    // The store knows when the ingest last committed.
    let mut c: Config = db.config.clone();
    c.help.address = Some("help@example.edu".into());
    c.help.url = Some("https://help.example.edu/mail".into());
    let loaded = Notes::load(&db.store, &c).await.unwrap();
    let at = loaded.ingested_us.expect("the ingest committed");
    assert!(
        (before..=after).contains(&at),
        "{before} <= {at} <= {after}"
    );
    assert_eq!(loaded.help_address.as_deref(), Some("help@example.edu"));

    // Seven minutes and a little ago: "up to 8 min behind".
    let stale = Utc::now().timestamp_micros() - 7 * 60_000_000 - 5_000_000;
    for (channel, said, not) in [
        (Channel::Web, "on the web form from 192.0.2.7", None),
        (
            Channel::Mail,
            "by a request mailed from this mailbox",
            Some("127.0.0.1"),
        ),
        (Channel::Cli, "staff at the server", Some("127.0.0.1")),
        (Channel::Automatic, "sent automatically", Some("127.0.0.1")),
    ] {
        let r = render(
            &db,
            spec("alice@example.edu", Kind::Smtp, Lang::En, channel),
            &notes(Some(stale)),
        )
        .await;
        // (The mail's parts have no rows, whose addresses could be any.)
        let parts = [r.text.clone(), r.html.replace("&#x2f;", "/")];
        for part in [page(&r), parts[0].clone(), parts[1].clone()] {
            assert!(part.contains(said), "{channel:?}: {said}");
            assert!(part.contains("help@example.edu"));
            assert!(part.contains("https://help.example.edu/mail"));
            assert!(part.contains("please do not reply to it"));
            assert!(part.contains("Up to 8 min behind"), "{part}");
        }
        if let Some(not) = not {
            for part in &parts {
                assert!(!part.contains(not), "{channel:?} names {not}");
            }
        }
        // A reply to the mail reaches the help contact.
        let mail = mailtrail::mail::message::compose(&r, "mailtrail@example.edu", "k", 0).unwrap();
        let m = MessageParser::default().parse(&mail.message).unwrap();
        let reply_to: Vec<_> = m
            .reply_to()
            .unwrap()
            .iter()
            .filter_map(|a| a.address())
            .collect();
        assert_eq!(reply_to, ["help@example.edu"]);
    }
    // Never ingested: it says so, with no number.
    let r = render(
        &db,
        spec("alice@example.edu", Kind::Smtp, Lang::ZhTw, Channel::Web),
        &notes(None),
    )
    .await;
    assert!(page(&r).contains("尚未讀取郵件伺服器的日誌"));
}

#[tokio::test]
async fn an_empty_report_says_only_that_nothing_happened() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log"), dovecot("mail.log")])
        .await
        .unwrap();
    for (kind, said) in [
        (Kind::Smtp, "Nothing was sent from this mailbox"),
        (Kind::Access, "Nobody logged in to this mailbox"),
    ] {
        let r = render(
            &db,
            spec("nobody@example.edu", kind, Lang::En, Channel::Web),
            &notes(None),
        )
        .await;
        for part in [page(&r), r.text.clone()] {
            assert!(part.contains(said), "{kind:?}");
            assert!(!part.contains("change your password"), "{kind:?}: {part}");
            assert!(!part.contains("Legend"));
        }
    }
    // With records, the advice is there.
    let r = render(
        &db,
        spec("alice@example.edu", Kind::Access, Lang::En, Channel::Web),
        &notes(None),
    )
    .await;
    assert!(page(&r).contains("change your password"));
}

#[test]
fn a_help_contact_that_is_not_plain_is_refused_at_load() {
    let base = crate::support::config_text("sqlite::memory:", 1000);
    for (extra, said) in [
        (
            "[help]\naddress = \"help desk@example.edu\"\n",
            "help.address",
        ),
        ("[help]\naddress = \"<x>@example.edu\"\n", "help.address"),
        ("[help]\nurl = \"javascript:alert(1)\"\n", "help.url"),
        (
            "[help]\nurl = \"https://a.example/\\\"onmouseover=x\"\n",
            "help.url",
        ),
    ] {
        let e = Config::from_toml(&format!("{base}\n{extra}")).unwrap_err();
        assert!(format!("{e:#}").contains(said), "{extra}: {e:#}");
    }
    let ok = Config::from_toml(&format!(
        "{base}\n[help]\naddress = \"help@example.edu\"\nurl = \"https://help.example.edu/mail?lang=zh-TW\"\n"
    ))
    .unwrap();
    assert_eq!(ok.help.address.as_deref(), Some("help@example.edu"));
}

#[tokio::test]
async fn the_form_names_the_help_contact() {
    use crate::web::{Service, config, free_port};
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cfg = config(
        &db,
        &log,
        free_port().await,
        free_port().await,
        "[help]\naddress = \"help@example.edu\"\nurl = \"https://help.example.edu/mail\"",
    );
    let svc = Service::start(cfg, db.store.clone()).await;
    for (lang, said) in [
        ("en", "Questions about your records"),
        ("zh-TW", "對紀錄或報表有疑問"),
    ] {
        let page = reqwest::get(format!("{}/?lang={lang}", svc.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .replace("&#x2f;", "/");
        assert!(page.contains(said), "{lang}");
        assert!(page.contains("href=\"mailto:help@example.edu\""), "{lang}");
        assert!(
            page.contains("href=\"https://help.example.edu/mail\""),
            "{lang}"
        );
    }
    svc.stop().await;
}

#[test]
fn every_mail_mailtrail_sends_replies_to_the_help_contact() {
    let base = crate::support::config_text("sqlite::memory:", 1000);
    let c =
        Config::from_toml(&format!("{base}\n[help]\naddress = \"help@example.edu\"\n")).unwrap();
    let to = Mailbox::parse("alice@example.edu", "example.edu").unwrap();
    let help = mailtrail::mail::message::compose_text(&c, &to, "help", "body", "k1", 0).unwrap();
    let day = month().to;
    let digest =
        mailtrail::mail::message::compose_digest(&c, "postmaster@example.edu", day, &[], 0)
            .unwrap();
    for mail in [help, digest] {
        let m = MessageParser::default().parse(&mail.message).unwrap();
        let reply_to: Vec<_> = m
            .reply_to()
            .expect("a Reply-To")
            .iter()
            .filter_map(|a| a.address())
            .collect();
        assert_eq!(reply_to, ["help@example.edu"], "{}", mail.subject);
    }
    // Without a help contact, no Reply-To.
    let plain = Config::from_toml(&base).unwrap();
    let mail =
        mailtrail::mail::message::compose_text(&plain, &to, "help", "body", "k2", 0).unwrap();
    let m = MessageParser::default().parse(&mail.message).unwrap();
    assert!(m.reply_to().is_none());
}
