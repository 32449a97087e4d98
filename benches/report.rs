//! Report rendering speed.
//!
//! `cargo bench --bench report` renders a 30-day SMTP report of 10,000
//! deliveries (and an access report of 10,000 events, and a received-mail
//! report of 10,000 messages joined from their stored rows inside the
//! timed part) as mailtrail mails it: the HTML attachment, the text and HTML parts, and the ZIP of the
//! HTML and CSV, then composes the MIME message. Failed deliveries are
//! explained ([`mailtrail::replies`]) inside the timed part. Prints the median and the
//! worst of 21 runs. The target is under 200 ms for the zipped SMTP report.
//! With a font with Chinese installed it renders them again with the PDF
//! of the same rows; the target there is under 1 s.
//! `MAILTRAIL_REPORT_ROWS` sets the rows of each report (10,000);
//! `MAILTRAIL_REPORT_ONLY` runs only the reports whose name holds it
//! (`access`, `SMTP report, zipped when`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use mailtrail::access::{AccessHistory, DaySummary, Event, EventFacts};
use mailtrail::config::Lang;
use mailtrail::domain::{DateRange, Day, Mailbox};
use mailtrail::history::{Counts, DayRow, Detail, History, TotalRow};
use mailtrail::ingest::received::MessageRow;
use mailtrail::report::pdf::PdfFont;
use mailtrail::report::{self, Channel, Data, Kind, Limits, Requester, Spec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows of each report: 10,000, or `MAILTRAIL_REPORT_ROWS`.
fn rows() -> usize {
    std::env::var("MAILTRAIL_REPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}
const MAILBOX: &str = "alice@example.edu";

fn range() -> DateRange {
    DateRange::new(
        Day::parse("2026-10-25").unwrap(),
        Day::parse("2026-11-23").unwrap(),
    )
    .unwrap()
}

fn time(i: usize) -> String {
    let day = 25 + i * 30 / rows();
    let (m, d) = if day > 31 { (11, day - 31) } else { (10, day) };
    format!(
        "2026-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00",
        i % 24,
        i % 60,
        (i * 7) % 60
    )
}

/// Deliveries with the lengths real ones have: a relay with its address,
/// a long queue ID, and a remote reply of 60 to 200 characters.
fn smtp() -> History {
    let statuses = [
        "sent", "sent", "sent", "sent", "deferred", "bounced", "auth_rcv",
    ];
    let details: Vec<Detail> = (0..rows())
        .map(|i| {
            let status = statuses[i % statuses.len()];
            Detail {
                time: time(i),
                host: format!("smtp{}.example.edu", i % 2),
                sender_ip: Some(format!("140.114.{}.{}", i % 250, (i * 13) % 250)),
                relay: Some(format!(
                    "mx{}.mail.example{}.com[203.0.113.{}]:25",
                    i % 5,
                    i % 97,
                    i % 250
                )),
                queue_id: Some(format!("4jXq6n5r{:07}z5cX2", i)),
                recipient: Some(format!("user{}@example{}.com", i * 31 % 9973, i % 97)),
                status,
                response: Some(match status {
                    "sent" => format!("250 2.0.0 OK  1763861234 d{i:x}si1234567pfa.42 - gsmtp"),
                    "deferred" => "connect to mx.example.com[203.0.113.9]:25: Connection timed out".into(),
                    "bounced" => format!("host mx.example.com[203.0.113.9] said: 550 5.1.1 <user{i}@example.com>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)"),
                    _ => String::new(),
                }),
                dsn: match status {
                    "sent" => Some("2.0.0".into()),
                    "deferred" => Some("4.4.1".into()),
                    "bounced" => Some("5.1.1".into()),
                    _ => None,
                },
                category: None,
                category_label: None,
                explanation: None,
                advice: None,
            }
        })
        .collect();
    let days: Vec<DayRow> = range()
        .days()
        .map(|d| DayRow {
            date: d.to_string(),
            counts: Counts {
                sum: 333,
                sent: 190,
                deferred: 48,
                bounced: 47,
                auth_rcv: 48,
                ..Counts::default()
            },
        })
        .collect();
    History {
        mailbox: MAILBOX.into(),
        from: range().from.to_string(),
        to: range().to.to_string(),
        days,
        total: TotalRow {
            date: None,
            counts: Counts {
                sum: 10_000,
                ..Counts::default()
            },
        },
        details,
    }
}

fn access() -> AccessHistory {
    let kinds = ["login", "logout", "message_deleted", "auth_failed"];
    let events: Vec<Event> = (0..rows())
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            Event {
                time: time(i),
                kind,
                protocol: Some(if i % 3 == 0 { "imap" } else { "pop3" }),
                remote_ip: Some(format!("140.114.{}.{}", i % 250, (i * 13) % 250)),
                session: Some(format!("R6eQHOlg{i:08}")),
                client: (i % 5 == 0).then(|| "Thunderbird 128.4".to_owned()),
                deleted: (kind == "logout").then_some(3),
                retained: (kind == "logout").then_some(12),
                size_bytes: (kind == "logout").then_some(1_234_567),
                in_bytes: None,
                out_bytes: None,
                expunged: None,
                trashed: None,
                message_id: (kind == "message_deleted")
                    .then(|| format!("<CAF{i:012}x@mail.gmail.com>")),
                folder: (kind == "message_deleted").then(|| "INBOX".to_owned()),
                reason: (kind == "auth_failed").then(|| "password mismatch (1 attempt)".to_owned()),
                master_user: None,
            }
        })
        .collect();
    let days = range()
        .days()
        .map(|d| DaySummary {
            date: d.to_string(),
            logins: [("imap", 30), ("pop3", 53)].into_iter().collect(),
            failed_logins: 83,
            messages_deleted: 83,
            addresses: vec!["140.114.1.2".into(), "140.114.3.4".into()],
            pop3_deleting_addresses: vec!["140.114.1.2".into(), "140.114.3.4".into()],
            note: None,
            master_users: vec![],
        })
        .collect();
    let facts = events
        .iter()
        .map(|e: &Event| EventFacts {
            method: (e.kind == "login").then(|| "PLAIN".to_owned()),
            tls: (e.kind == "login").then_some(true),
            local_ip: (e.kind == "login").then(|| "140.114.63.10".to_owned()),
            attempts: (e.kind == "auth_failed").then_some(1),
            failure: (e.kind == "auth_failed").then(|| "password mismatch".to_owned()),
            reason_key: (e.kind == "logout").then_some("logged_out"),
        })
        .collect();
    AccessHistory {
        mailbox: MAILBOX.into(),
        from: range().from.to_string(),
        to: range().to.to_string(),
        days,
        events,
        facts,
    }
}

/// The stored rows of 10,000 messages received by the mailbox, as the
/// ingest writes them for a site with Dovecot LMTP, Sieve, `mail_log` and
/// rspamd: Postfix's delivery, Dovecot's save and Sieve lines and the spam
/// verdict for most; a refusal, a forward or a hold for the others.
fn received_rows() -> Vec<MessageRow> {
    use mailtrail::ingest::received::MsgKind;
    let mut out = Vec::new();
    for i in 0..rows() {
        let t = chrono::DateTime::parse_from_rfc3339(&time(i))
            .unwrap()
            .timestamp_micros();
        let day = {
            let d = chrono::DateTime::from_timestamp_micros(t)
                .unwrap()
                .with_timezone(&chrono_tz::Asia::Taipei);
            Day::from_date(d.date_naive()).key()
        };
        let qid = format!("4jXq6n5r{i:07}");
        let msgid = format!("<CAF{i:012}x@mail.gmail.com>");
        let session = format!("hAE2CUO1Fmt0{i:010}");
        let base = MessageRow {
            time_us: t,
            day,
            mailbox: MAILBOX.into(),
            host: "mail1".into(),
            ..MessageRow::default()
        };
        let row = |key: i64, kind: MsgKind| MessageRow {
            key: (i as i64) << 8 | key,
            kind: kind as i16,
            ..base.clone()
        };
        match i % 10 {
            // Refused before it was queued.
            8 => out.push(MessageRow {
                client: Some(format!("spam{i}.example.net[203.0.113.{}]", i % 250)),
                sender: Some(format!("offers{i}@example.net")),
                status: Some("RCPT".into()),
                protocol: Some("reject".into()),
                reply: Some(format!("554 5.7.1 <spam{i}.example.net[203.0.113.{}]>: Client host rejected: listed in zen.spamhaus.org", i % 250)),
                ..row(1, MsgKind::Refused)
            }),
            // Forwarded by an alias.
            9 => out.push(MessageRow {
                queue_id: Some(qid.as_str().into()),
                message_id: Some(msgid.clone()),
                sender: Some(format!("prof{i}@univ.example.org")),
                client: Some(format!("mx{}.univ.example.org[198.51.100.{}]", i % 3, i % 250)),
                other: Some("alice.home@example.net".into()),
                status: Some("sent".into()),
                size: Some(4096 + i as i64),
                reply: Some(format!("250 2.0.0 OK  1763861234 d{i:x}si1234567pfa.42 - gsmtp")),
                ..row(2, MsgKind::Forwarded)
            }),
            _ => {
                out.push(MessageRow {
                    queue_id: Some(qid.as_str().into()),
                    message_id: Some(msgid.clone()),
                    session: Some(session.as_str().into()),
                    protocol: Some("lmtp".into()),
                    sender: Some(format!("newsletter{}@news.example.com", i % 97)),
                    client: Some(format!("out{}.news.example.com[192.0.2.{}]", i % 7, i % 250)),
                    size: Some(8192 + i as i64),
                    subject: Some(format!("=?utf-8?b?5pel56iL6KGo?= weekly issue {i}")),
                    other: Some("mail.example.edu[private/dovecot-lmtp]".into()),
                    status: Some("2.0.0".into()),
                    reply: Some(format!("250 2.0.0 <alice@example.edu> {session} Saved")),
                    ..row(3, MsgKind::Delivered)
                });
                out.push(MessageRow {
                    session: Some(session.as_str().into()),
                    protocol: Some("lmtp".into()),
                    message_id: Some(msgid.clone()),
                    folder: Some(if i % 3 == 0 { "Newsletters" } else { "INBOX" }.into()),
                    uid: Some(i as i64),
                    size: Some(9000 + i as i64),
                    sender: Some(format!("Weekly News <newsletter{}@news.example.com>", i % 97)),
                    subject: Some(format!("日程表 weekly issue {i}")),
                    ..row(4, MsgKind::Saved)
                });
                out.push(MessageRow {
                    session: Some(session.as_str().into()),
                    protocol: Some("lmtp".into()),
                    message_id: Some(msgid.clone()),
                    folder: Some(if i % 3 == 0 { "Newsletters" } else { "INBOX" }.into()),
                    status: (i % 3 == 0).then(|| "fileinto".into()),
                    ..row(5, MsgKind::Stored)
                });
                out.push(MessageRow {
                    queue_id: Some(qid.as_str().into()),
                    message_id: Some(msgid.clone()),
                    protocol: Some("rspamd".into()),
                    status: Some("no action".into()),
                    reply: Some(format!("{}.{:02}/15.00", i % 5, i % 100)),
                    ..row(6, MsgKind::Spam)
                });
            }
        }
    }
    out
}

fn run(name: &str, kind: Kind, data: &Data, always_zip: bool, pdf: Option<&PdfFont>) {
    run_rows(name, kind, data, None, always_zip, pdf)
}

/// [`run`]; with `rows`, the received-mail report is joined from them
/// inside the timed part, as a mailed report is after its rows are read.
fn run_rows(
    name: &str,
    kind: Kind,
    data: &Data,
    rows: Option<&[MessageRow]>,
    always_zip: bool,
    pdf: Option<&PdfFont>,
) {
    if let Ok(only) = std::env::var("MAILTRAIL_REPORT_ONLY")
        && !name.contains(only.as_str())
    {
        return;
    }
    let spec = Spec {
        mailbox: Mailbox::parse(MAILBOX, "example.edu").unwrap(),
        kind,
        range: range(),
        lang: Lang::ZhTw,
        requester: Requester {
            channel: Channel::Web,
            client_ip: "140.114.1.2".into(),
            at: 1_795_398_077,
        },
    };
    let limits = Limits {
        zip_over_bytes: 1 << 20,
        always_zip,
        max_message_bytes: 10_240_000,
    };
    let tz = chrono_tz::Asia::Taipei;
    let mut times: Vec<Duration> = Vec::new();
    let mut size = (0, 0);
    let classifier =
        mailtrail::replies::Classifier::shared(&mailtrail::replies::RepliesConfig::default())
            .unwrap();
    for _ in 0..21 {
        // The rows as read from the database; explaining them is part of
        // rendering.
        let mut data = data.clone();
        let t = Instant::now();
        if let Some(rows) = rows {
            data = Data::Received(mailtrail::received::build(
                &spec.mailbox,
                spec.range,
                tz,
                rows,
            ));
        }
        data.explain(&classifier, spec.lang);
        let r = match pdf {
            Some(font) => {
                report::render_with_pdf(spec.clone(), &data, limits, tz, chrono::Utc::now(), font)
            }
            None => report::render(spec.clone(), &data, limits, tz, chrono::Utc::now()),
        }
        .unwrap();
        let mail =
            mailtrail::mail::message::compose(&r, "mailtrail@example.edu", "bench", 0).unwrap();
        times.push(t.elapsed());
        size = (
            r.attachment.bytes.len() + r.pdf.as_ref().map_or(0, |p| p.bytes.len()),
            mail.message.len(),
        );
        black_box(mail);
    }
    times.sort();
    println!(
        "{name:<44} median {:>6.1} ms, worst {:>6.1} ms; attachment {} bytes, mail {} bytes",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        size.0,
        size.1
    );
}

fn main() {
    let smtp = Data::Smtp(smtp());
    let access = Data::Access(access());
    println!(
        "render + zip + compose, {} rows over 30 days (target: < 200 ms for 10,000)",
        rows()
    );
    run(
        "SMTP report, zipped (HTML + CSV)",
        Kind::Smtp,
        &smtp,
        true,
        None,
    );
    run(
        "SMTP report, zipped when over 1 MiB",
        Kind::Smtp,
        &smtp,
        false,
        None,
    );
    run(
        "access report, zipped (HTML + CSV)",
        Kind::Access,
        &access,
        true,
        None,
    );
    let received = received_rows();
    let mailbox = Mailbox::parse(MAILBOX, "example.edu").unwrap();
    let joined = Data::Received(mailtrail::received::build(
        &mailbox,
        range(),
        chrono_tz::Asia::Taipei,
        &received,
    ));
    if let Data::Received(h) = &joined {
        // One entry per message, up to what a received report lists.
        assert_eq!(
            h.messages.len(),
            rows().min(mailtrail::received::MAX_ENTRIES),
            "one entry per message"
        );
    }
    run_rows(
        "received report, joined, zipped (HTML + CSV)",
        Kind::Received,
        &joined,
        Some(&received),
        true,
        None,
    );
    // The PDF needs a font with Chinese (Debian: fonts-wqy-zenhei).
    let path = mailtrail::config::ReportConfig::default().pdf_font;
    match PdfFont::cached(&path) {
        Ok(font) => {
            println!("the same with the PDF (target: < 1 s)");
            run(
                "SMTP report, zipped, and PDF",
                Kind::Smtp,
                &smtp,
                true,
                Some(&font),
            );
            run(
                "access report, zipped, and PDF",
                Kind::Access,
                &access,
                true,
                Some(&font),
            );
        }
        Err(e) => println!("with the PDF: not measured: {e:#}"),
    }
}
