//! The nightly job: the daily table, warnings exactly once, the scheduler
//! across a daylight-saving change and after downtime, retention.

use chrono::{DateTime, Duration, TimeZone, Utc};
use mail_parser::MessageParser;
use mailtrail::config::Config;
use mailtrail::domain::Day;
use mailtrail::schedule;

use crate::smtp_server::SmtpServer;
use crate::support::{Capture, TestDb, fixture, sample_day};

fn day(s: &str) -> Day {
    Day::parse(s).unwrap()
}

/// The test database's config with other `[alerts]`, `timezone` and a relay.
fn config(db: &TestDb, tz: &str, alerts: &str, port: u16) -> Config {
    let text = db.config_text().replace("Asia/Taipei", tz);
    Config::from_toml(&format!(
        "{text}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"mailtrail@example.edu\"\n[report]\ndefault_language = \"en\"\n{alerts}"
    ))
    .unwrap()
}

#[tokio::test]
async fn the_daily_table_matches_the_fixture_and_takes_late_lines() {
    let db = TestDb::new().await;
    // The first half of the capture, as if the rest had not arrived yet.
    let all = std::fs::read_to_string(fixture("mail.log")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let early = db.dir.path().join("early.log");
    std::fs::write(&early, lines[..lines.len() / 2].join("\n") + "\n").unwrap();
    Capture::Postfix.date(&early);
    db.ingest(&[early]).await.unwrap();
    let d = sample_day();
    mailtrail::aggregate::run(&db.store, d, 0).await.unwrap();
    let before = db.store.day_table(d.key()).await.unwrap();
    // Again: the same table.
    mailtrail::aggregate::run(&db.store, d, 0).await.unwrap();
    assert_eq!(db.store.day_table(d.key()).await.unwrap(), before);

    // The whole capture (the late lines), then again: the fixture's counts.
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    mailtrail::aggregate::run(&db.store, d, 0).await.unwrap();
    let after = db.store.day_table(d.key()).await.unwrap();
    assert_ne!(after, before, "late lines are counted");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap();
    let expected = manifest["expected"].as_object().unwrap();
    assert_eq!(after.len(), expected.len());
    for row in &after {
        let want = &expected[&row.mailbox];
        let [sum, auth_blk, auth_rcv, bounced, deferred, expired, sent] = row.counts;
        assert_eq!(
            auth_blk,
            want["auth_blk"].as_i64().unwrap(),
            "{}",
            row.mailbox
        );
        assert_eq!(
            auth_rcv,
            want["auth_rcv"].as_i64().unwrap(),
            "{}",
            row.mailbox
        );
        assert_eq!(
            bounced,
            want["bounced"].as_i64().unwrap(),
            "{}",
            row.mailbox
        );
        assert_eq!(
            expired,
            want["expired"].as_i64().unwrap(),
            "{}",
            row.mailbox
        );
        assert_eq!(sent, want["sent"].as_i64().unwrap(), "{}", row.mailbox);
        match want.get("deferred_at_least") {
            Some(n) => assert!(deferred >= n.as_i64().unwrap(), "{}", row.mailbox),
            None => assert_eq!(
                deferred,
                want["deferred"].as_i64().unwrap(),
                "{}",
                row.mailbox
            ),
        }
        assert_eq!(
            sum,
            auth_blk + auth_rcv + bounced + deferred + expired + sent
        );
    }
}

const LOW_RULES: &str = r#"
[alerts]
admin_digest = "postmaster@example.edu"
[[alerts.rules]]
metric = "sent"
threshold = 4
[[alerts.rules]]
metric = "auth_rcv"
threshold = 3
overrides = [{ mailbox = "carol", exempt = true }]
[[alerts.rules]]
metric = "bounced"
threshold = 1
"#;

#[tokio::test]
async fn each_mailbox_is_warned_once_a_day_whatever_the_rules_and_runs() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let c = config(&db, "Asia/Taipei", LOW_RULES, server.port);
    let d = sample_day();

    // Who crosses which rule, from the fixture's manifest.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap();
    let mut want: Vec<String> = Vec::new();
    for (mailbox, w) in manifest["expected"].as_object().unwrap() {
        let crossed = w["sent"].as_i64().unwrap() >= 4
            || (w["auth_rcv"].as_i64().unwrap() >= 3 && !mailbox.starts_with("carol@"))
            || w["bounced"].as_i64().unwrap() >= 1;
        if crossed {
            want.push(mailbox.clone());
        }
    }
    assert!(want.len() >= 2, "{want:?}");

    let dry = mailtrail::alerts::run(&db.store, &c, d, true, 1)
        .await
        .unwrap();
    let got: Vec<String> = dry.warnings.iter().map(|w| w.mailbox.to_string()).collect();
    assert_eq!(got, want);
    assert!(dry.queued.is_empty());
    assert!(
        db.store.outbox().await.unwrap().is_empty(),
        "a dry run queues nothing"
    );

    for _ in 0..3 {
        mailtrail::alerts::run(&db.store, &c, d, false, 2)
            .await
            .unwrap();
    }
    let outbox = db.store.outbox().await.unwrap();
    assert_eq!(
        outbox.len(),
        want.len() + 1,
        "one per mailbox, plus the digest"
    );
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    let got = server.received();
    let mut rcpts: Vec<String> = got.iter().map(|r| r.rcpt_to[0].clone()).collect();
    rcpts.sort();
    let mut expect = want.clone();
    expect.push("postmaster@example.edu".into());
    expect.sort();
    assert_eq!(rcpts, expect);

    for r in got
        .iter()
        .filter(|r| r.rcpt_to[0] != "postmaster@example.edu")
    {
        let m = MessageParser::default().parse(&r.data).unwrap();
        assert_eq!(
            m.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated")
        );
        let text = m.body_text(0).unwrap();
        assert!(text.contains("Thresholds reached"), "{text}");
        // The channel named, and no address that is nobody's.
        assert!(
            text.contains("sent automatically (nightly warning)"),
            "{text}"
        );
        assert!(!text.contains("127.0.0.1"), "{text}");
        assert!(text.contains("Change your password"), "{text}");
        // The day's SMTP report is attached.
        let att = m.attachments().next().expect("the day's report");
        let html = String::from_utf8_lossy(att.contents());
        assert!(html.contains(&r.rcpt_to[0]));
        let shown = d.to_string().replace('-', "/");
        assert!(
            html.replace("&#x2f;", "/")
                .contains(&format!("{shown} to {shown}"))
        );
    }
    let digest = got
        .iter()
        .find(|r| r.rcpt_to[0] == "postmaster@example.edu")
        .unwrap();
    let dtext = MessageParser::default()
        .parse(&digest.data)
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    for w in &want {
        assert!(dtext.contains(w.as_str()), "{w} in the digest");
    }
}

#[tokio::test]
async fn a_warning_names_the_help_contact_and_says_it_is_automatic() {
    for (lang, auto, ask, page, fresh) in [
        (
            "en",
            "This mail was sent automatically; please do not reply to it.",
            "Questions about it: write to help@example.edu",
            "Help pages: https://help.example.edu/mail",
            "min behind the mail servers",
        ),
        (
            "zh-TW",
            "本信由系統自動寄出，請勿直接回覆。",
            "有疑問請寫信至 help@example.edu",
            "說明網頁： https://help.example.edu/mail",
            "最多落後郵件伺服器日誌",
        ),
    ] {
        let db = TestDb::new().await;
        db.ingest(&[fixture("mail.log")]).await.unwrap();
        let server = SmtpServer::start(None).await;
        let mut c = config(&db, "Asia/Taipei", LOW_RULES, server.port);
        c.report.default_language = lang.parse().unwrap();
        c.help.address = Some("help@example.edu".into());
        c.help.url = Some("https://help.example.edu/mail".into());
        mailtrail::alerts::run(&db.store, &c, sample_day(), false, 1)
            .await
            .unwrap();
        let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
        mailtrail::mail::run_once(&db.store, &c, &mailer)
            .await
            .unwrap();
        let warnings: Vec<_> = server
            .received()
            .into_iter()
            .filter(|r| r.rcpt_to[0] != "postmaster@example.edu")
            .collect();
        assert!(!warnings.is_empty(), "{lang}: a warning");
        for r in &warnings {
            let m = MessageParser::default().parse(&r.data).unwrap();
            let text = m.body_text(0).unwrap().into_owned();
            let html = m.body_html(0).unwrap().replace("&#x2f;", "/");
            // The HTML part's help paragraph, its lines without their tags.
            let help = html
                .split("<p class=\"help\">")
                .nth(1)
                .and_then(|h| h.split("</p>").next())
                .expect("the help paragraph")
                .split("<br>")
                .map(|l| {
                    let mut out = String::new();
                    let mut rest = l;
                    while let Some(i) = rest.find('<') {
                        out.push_str(&rest[..i]);
                        rest = rest[i..].split_once('>').map_or("", |(_, r)| r);
                    }
                    out + rest
                })
                .collect::<Vec<_>>();
            assert_eq!(help, [auto, ask, page], "{lang}: {html}");
            assert!(html.contains("href=\"mailto:help@example.edu\""), "{lang}");
            assert!(html.contains(fresh), "{lang}: {html}");
            for line in [auto, ask, page, fresh] {
                assert!(text.contains(line), "{lang}: {line:?} in\n{text}");
            }
            // A reply reaches the help contact.
            let reply_to: Vec<_> = m
                .reply_to()
                .expect("a Reply-To")
                .iter()
                .filter_map(|a| a.address())
                .collect();
            assert_eq!(reply_to, ["help@example.edu"], "{lang}");
        }
    }
}

#[tokio::test]
async fn a_crash_between_queueing_and_recording_the_job_sends_no_second_warning() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let c = config(&db, "Asia/Taipei", LOW_RULES, server.port);
    let d = sample_day();
    // The run queues its warnings and dies before the job is recorded.
    let first = mailtrail::alerts::run(&db.store, &c, d, false, 1)
        .await
        .unwrap();
    assert!(!first.queued.is_empty());
    assert!(
        !db.store
            .job_runs()
            .await
            .unwrap()
            .iter()
            .any(|j| j.1 == "alerts"),
        "not recorded"
    );
    // After restart, the scheduler finds the day not alerted and does it.
    let now = schedule::start_of(d.succ(), c.tz().unwrap()) + Duration::hours(1);
    let t = schedule::tick(&db.store, &c, now).await.unwrap();
    assert_eq!(t.alerted, [d]);
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    assert_eq!(
        server.received().len(),
        first.queued.len() + 1,
        "once each, and the digest"
    );
    // And again later: nothing more.
    schedule::tick(&db.store, &c, now + Duration::hours(5))
        .await
        .unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    assert_eq!(server.received().len(), first.queued.len() + 1);
}

/// NOQUEUE rejects of alice (each an Auth_blk) at local times in Berlin:
/// (local stamp with offset, how many).
const BERLIN: &[(&str, usize)] = &[
    ("2026-10-24T00:10:00+02:00", 1),
    ("2026-10-24T23:50:00+02:00", 2),
    // 2026-10-25: 02:00-03:00 happens twice (CEST, then CET).
    ("2026-10-25T00:10:00+02:00", 1),
    ("2026-10-25T02:30:00+02:00", 2),
    ("2026-10-25T02:30:00+01:00", 3),
    ("2026-10-25T23:59:00+01:00", 1),
    ("2026-10-26T00:01:00+01:00", 4),
    ("2026-10-27T12:00:00+01:00", 5),
];

fn berlin_log() -> String {
    let mut out = String::new();
    for (i, (stamp, n)) in BERLIN.iter().enumerate() {
        for k in 0..*n {
            out.push_str(&format!(
                "{stamp} mail postfix/smtpd[{}]: NOQUEUE: reject: RCPT from unknown[192.0.2.{}]: 554 5.7.1 <r{k}@remote.test>: Relay access denied; from=<alice@example.edu> to=<r{k}@remote.test> proto=ESMTP helo=<h>\n",
                1000 + i * 10 + k,
                k + 1
            ));
        }
    }
    out
}

/// Rejects of each local day, from the table above: the stamp's local date
/// is its own first ten characters.
fn berlin_per_day() -> Vec<(Day, i64)> {
    let mut v: Vec<(Day, i64)> = Vec::new();
    for (stamp, n) in BERLIN {
        let d = day(&stamp[..10]);
        match v.iter_mut().find(|(x, _)| *x == d) {
            Some(e) => e.1 += *n as i64,
            None => v.push((d, *n as i64)),
        }
    }
    v
}

#[tokio::test]
async fn the_scheduler_does_each_local_day_once_in_order_across_dst_and_downtime() {
    let db = TestDb::new().await;
    let server = SmtpServer::start(None).await;
    let rules = "[alerts]\nsettle_minutes = 30\ncatch_up_days = 2\n[[alerts.rules]]\nmetric = \"auth_blk\"\nthreshold = 1\n";
    let c = config(&db, "Europe/Berlin", rules, server.port);
    let log = db.dir.path().join("berlin.log");
    std::fs::write(&log, berlin_log()).unwrap();
    let specs = vec![mailtrail::ingest::source::SourceSpec::File(log)];
    mailtrail::ingest::run(
        &db.store,
        mailtrail::ingest::correlate::Settings::from_config(&c).unwrap(),
        &specs,
        mailtrail::ingest::Batching::from_config(&c.ingest),
    )
    .await
    .unwrap();

    // Tick every 10 minutes from Oct 24 to Oct 26 18:00 UTC.
    let mut now: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap();
    let mut done_at: Vec<(Day, DateTime<Utc>)> = Vec::new();
    while now < Utc.with_ymd_and_hms(2026, 10, 26, 18, 0, 0).unwrap() {
        let t = schedule::tick(&db.store, &c, now).await.unwrap();
        assert_eq!(t.aggregated, t.alerted, "aggregated and alerted together");
        for d in t.aggregated {
            done_at.push((d, now));
        }
        now += Duration::minutes(10);
    }
    let days: Vec<Day> = done_at.iter().map(|x| x.0).collect();
    assert_eq!(
        days,
        [day("2026-10-24"), day("2026-10-25")],
        "in order, once"
    );
    // Each was done on the first tick at or after its own midnight plus the
    // settle time. The 25th has 25 hours: its end is 2026-10-25T23:00Z.
    assert_eq!(
        done_at[0].1,
        Utc.with_ymd_and_hms(2026, 10, 24, 22, 30, 0).unwrap()
    );
    assert_eq!(
        done_at[1].1,
        Utc.with_ymd_and_hms(2026, 10, 25, 23, 30, 0).unwrap()
    );
    for (d, _) in &done_at {
        let table = db.store.day_table(d.key()).await.unwrap();
        let want = berlin_per_day().iter().find(|x| x.0 == *d).unwrap().1;
        assert_eq!(table[0].counts[1], want, "Auth_blk of {d}");
    }
    assert_eq!(
        db.store.day_table(day("2026-10-25").key()).await.unwrap()[0].counts[1],
        7,
        "the repeated hour counts both times, on the 25th"
    );

    // Down from Oct 26 18:00 to Oct 30 12:00 UTC: the next tick catches up
    // the 26th..29th in order; only the last two are warned.
    let back = Utc.with_ymd_and_hms(2026, 10, 30, 12, 0, 0).unwrap();
    let t = schedule::tick(&db.store, &c, back).await.unwrap();
    assert_eq!(
        t.aggregated,
        [
            day("2026-10-26"),
            day("2026-10-27"),
            day("2026-10-28"),
            day("2026-10-29")
        ]
    );
    assert_eq!(t.not_warned, [day("2026-10-26"), day("2026-10-27")]);
    assert_eq!(t.alerted, [day("2026-10-28"), day("2026-10-29")]);
    // Nothing twice.
    let t = schedule::tick(&db.store, &c, back + Duration::hours(1))
        .await
        .unwrap();
    assert!(t.aggregated.is_empty() && t.alerted.is_empty());
    // Warnings: the 24th and the 25th (alice crossed auth_blk >= 1); the
    // 26th and 27th were too old when the service came back.
    let keys: Vec<String> = db
        .store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.idem_key)
        .collect();
    assert_eq!(
        keys,
        [
            "alert:2026-10-24:alice@example.edu",
            "alert:2026-10-25:alice@example.edu"
        ]
    );
}

#[tokio::test]
async fn the_real_scheduler_ticks_and_stops() {
    let db = TestDb::new().await;
    let c = std::sync::Arc::new(config(&db, "Europe/Berlin", "", 1));
    let tz = c.tz().unwrap();
    // Rejects at noon, Berlin time, on the two days before today.
    let today = schedule::day_of(Utc::now(), tz);
    let days = [today.pred().pred(), today.pred()];
    let mut log = String::new();
    for (i, d) in days.iter().enumerate() {
        let noon = tz
            .from_local_datetime(&d.date().and_hms_opt(12, 0, 0).unwrap())
            .earliest()
            .unwrap();
        log.push_str(&format!(
            "{} mail postfix/smtpd[{}]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <r@remote.test>: Relay access denied; from=<alice@example.edu> to=<r@remote.test> proto=ESMTP helo=<h>\n",
            noon.to_rfc3339(),
            100 + i
        ));
    }
    let path = db.dir.path().join("recent.log");
    std::fs::write(&path, log).unwrap();
    let specs = vec![mailtrail::ingest::source::SourceSpec::File(path)];
    let settings = mailtrail::ingest::correlate::Settings::from_config(&c).unwrap();
    mailtrail::ingest::run(
        &db.store,
        settings,
        &specs,
        mailtrail::ingest::Batching::from_config(&c.ingest),
    )
    .await
    .unwrap();

    // tokio-cron-scheduler on the real clock, ticking every second here
    // (every minute in service). The day before yesterday is complete
    // whatever the time of day; yesterday is once the settle time passed.
    let mut sched = schedule::start_with(db.store.clone(), c, "* * * * * *")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let want = days[0].key();
    loop {
        let runs = db.store.job_runs().await.unwrap();
        if runs.iter().any(|r| r.0 == want && r.1 == "alerts") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tick within 20 s: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sched.shutdown().await.unwrap();
    let table = db.store.day_table(want).await.unwrap();
    assert_eq!(table[0].counts[1], 1, "the reject of {}", days[0]);
}

#[tokio::test]
async fn retention_purges_old_days_in_batches() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log"), crate::support::dovecot("mail.log")])
        .await
        .unwrap();
    let mut c = config(&db, "Asia/Taipei", "[alerts]\npurge_batch = 7\n", 1);
    c.retention_days = 31;
    let tz = c.tz().unwrap();
    let (a, b) = (Capture::Postfix.day(), Capture::Dovecot.day());
    let (first, last) = (a.min(b), a.max(b));
    // Noon, local time, `n` days after `d`: the clock of a tick.
    let noon_after = |d: Day, n: u32| {
        let mut d = d;
        for _ in 0..n {
            d = d.succ();
        }
        schedule::start_of(d, tz) + Duration::hours(12)
    };
    // Keep everything while the captures' days are inside the window: 27
    // days after the first, the window (31 days ending today) starts
    // before it.
    let inside = noon_after(first, 27);
    let t = schedule::tick(&db.store, &c, inside).await.unwrap();
    assert_eq!(t.purged, 0);
    assert!(!db.history("alice").await.details.is_empty());
    // 32 days after the last: the window starts 2 days after it, so all
    // of it is gone, 7 rows at a time.
    let after = noon_after(last, 32);
    let keep_from = last.succ().succ();
    let t = schedule::tick(&db.store, &c, after).await.unwrap();
    assert!(t.purged > 7);
    assert!(db.history("alice").await.details.is_empty());
    for table in ["smtp_rows", "access_rows", "daily_counts", "alerts"] {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE day < {}",
            keep_from.key()
        );
        let n: i64 = crate::on_any_pool!(&db.store, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap());
        assert_eq!(n, 0, "{table}");
    }
}

/// A nightly job whose ticks keep failing (here: the database closed under
/// it) gives up once they have failed for `database_retry_secs`, so that
/// `serve` or `nightly` ends with the error and is restarted, instead of
/// logging the same failure every minute for ever.
#[tokio::test]
async fn a_nightly_job_whose_ticks_keep_failing_gives_up() {
    let db = TestDb::new().await;
    let mut c = config(&db, "Asia/Taipei", "", 1);
    c.database_retry_secs = 2;
    let mut sched = schedule::start_with(db.store.clone(), std::sync::Arc::new(c), "* * * * * *")
        .await
        .unwrap();
    db.store.close().await;
    let e = tokio::time::timeout(std::time::Duration::from_secs(20), sched.gave_up())
        .await
        .expect("the job did not give up within 20 s of failing ticks");
    let why = format!("{e:#}");
    assert!(why.contains("nightly job stopped"), "{why}");
    assert!(why.contains("restarts"), "{why}");
    sched.shutdown().await.unwrap();
}
