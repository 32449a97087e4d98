//! The real Dovecot capture, checked against what its driver did.

use std::collections::{BTreeMap, BTreeSet};

use mailtrail::access::{self, AccessHistory};
use mailtrail::config::Config;
use mailtrail::domain::{DateRange, Day, Mailbox};
use mailtrail::history::Format;
use serde_json::Value;

use crate::support::{Capture, TestDb, dovecot as fixture};

fn manifest() -> Value {
    Capture::Dovecot.manifest()
}

/// The manifest's record of the run that wrote `log`.
fn run_of(log: &str) -> Value {
    manifest()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["log"].as_str().is_some_and(|l| l.ends_with(log)))
        .unwrap_or_else(|| panic!("no run wrote {log}"))
        .clone()
}

async fn db_with(webmail: &str) -> TestDb {
    let db = TestDb::new().await;
    let text = db.config_text().replace(
        "[ingest]",
        &format!("webmail_networks = [{webmail}]\n[ingest]"),
    );
    TestDb {
        config: Config::from_toml(&text).unwrap(),
        ..db
    }
}

async fn history(db: &TestDb, mailbox: &str) -> AccessHistory {
    access::load(
        &db.store,
        &Mailbox::parse(mailbox, "example.edu").unwrap(),
        crate::support::range(),
        db.config.tz().unwrap(),
    )
    .await
    .unwrap()
}

/// Packs every day of [`crate::support::range`] that has plain access
/// rows, as the nightly job does once a day is complete; returns the rows
/// moved, after checking that no plain row is left.
async fn pack_all(db: &TestDb) -> u64 {
    let mut moved = 0;
    for day in crate::support::range().days() {
        let day = day.key();
        if db.store.has_plain_access(day).await.unwrap() {
            moved += db.store.pack_day(day).await.unwrap().rows;
            assert!(!db.store.has_plain_access(day).await.unwrap(), "{day}");
        }
    }
    moved
}

async fn check_run(log: &str, packed: bool) {
    let db = db_with("").await;
    let r = db.ingest(&[fixture(log)]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{:?}", r.stats.examples);
    if packed {
        assert!(pack_all(&db).await > 0, "nothing was packed");
    }
    let run = run_of(log);
    for (user, want) in run["users"].as_object().unwrap() {
        let h = history(&db, user).await;
        let ev = |t: &'static str| h.events.iter().filter(move |e| e.kind == t);

        // Logins per protocol, from the summary and from the events.
        let mut logins = BTreeMap::new();
        for d in &h.days {
            for (p, n) in &d.logins {
                *logins.entry(p.to_string()).or_insert(0) += n;
            }
        }
        for (p, n) in want["logins_ok"].as_object().unwrap() {
            assert_eq!(
                logins.get(p).copied().unwrap_or(0),
                n.as_i64().unwrap(),
                "{user} {p} logins"
            );
        }
        assert_eq!(
            ev("login").count() as i64,
            want["logins_ok"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_i64().unwrap())
                .sum::<i64>()
        );

        // A login says how it was made: method, TLS or not, server address.
        for l in ev("login") {
            let how = l.reason.as_deref().unwrap();
            assert!(
                how.starts_with("method PLAIN, no TLS, to 127.0.0.1"),
                "{how}"
            );
            assert!(l.session.is_some() && l.remote_ip.is_some());
        }

        // Failed logins: one event per refused session, with its reason
        // and attempts; the summary counts attempts.
        let failed: Vec<_> = ev("auth_failed").collect();
        let want_failed = want["logins_failed"].as_array().unwrap();
        assert_eq!(failed.len(), want_failed.len(), "{user} failed logins");
        for (got, w) in failed.iter().zip(want_failed) {
            let reason = got.reason.as_deref().unwrap();
            let want_reason = w["reason"].as_str().unwrap();
            assert!(
                reason.starts_with(want_reason),
                "{user}: {reason} / {want_reason}"
            );
            let n = w["attempts"].as_i64().unwrap();
            assert!(reason.contains(&format!("({n} attempt")), "{reason}");
            assert_eq!(got.remote_ip.as_deref(), w["client_ip"].as_str());
            assert_eq!(got.protocol, w["protocol"].as_str());
        }
        let summary_failed: i64 = h.days.iter().map(|d| d.failed_logins).sum();
        assert_eq!(
            summary_failed,
            want["logins_failed_total"].as_i64().unwrap(),
            "{user}"
        );

        // POP3 sessions: deleted and retained per client address.
        for s in want["pop3_mailbox"].as_array().unwrap() {
            let ip = s["client_ip"].as_str().unwrap();
            let out = ev("logout")
                .find(|e| e.protocol == Some("pop3") && e.remote_ip.as_deref() == Some(ip))
                .unwrap_or_else(|| panic!("{user}: no POP3 logout from {ip}"));
            assert_eq!(out.deleted, s["deleted"].as_i64(), "{user} {ip}");
            assert_eq!(out.retained, s["retained"].as_i64(), "{user} {ip}");
        }

        // Message-IDs deleted by POP3, per address.
        let mut by_ip: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in ev("message_deleted").filter(|e| e.protocol == Some("pop3")) {
            by_ip
                .entry(e.remote_ip.clone().unwrap())
                .or_default()
                .insert(e.message_id.clone().unwrap());
        }
        let want_by_ip: BTreeMap<String, BTreeSet<String>> = want["pop3_deleted_by_ip"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(ip, ids)| {
                (
                    ip.clone(),
                    ids.as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap().to_owned())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(by_ip, want_by_ip, "{user}");

        // IMAP: expunged, only flagged, folders deleted, client names.
        let set = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect()
        };
        let expunged: BTreeSet<String> = ev("message_deleted")
            .filter(|e| e.protocol == Some("imap"))
            .filter_map(|e| e.message_id.clone())
            .collect();
        assert_eq!(expunged, set(&want["imap_expunged"]), "{user}");
        let flagged: BTreeSet<String> = ev("message_marked_deleted")
            .filter_map(|e| e.message_id.clone())
            .collect();
        for only in set(&want["imap_flagged_deleted_only"]) {
            assert!(
                flagged.contains(&only) && !expunged.contains(&only),
                "{user} {only}"
            );
        }
        let folders: BTreeSet<String> = ev("mailbox_deleted")
            .filter_map(|e| e.folder.clone())
            .collect();
        assert_eq!(folders, set(&want["folders_deleted"]), "{user}");
        let clients: BTreeSet<String> = h.events.iter().filter_map(|e| e.client.clone()).collect();
        for name in set(&want["imap_id_names"]) {
            assert!(clients.contains(&name), "{user}: {clients:?} lacks {name}");
        }

        // The plain-words note when two addresses deleted mail by POP3.
        let noted = h.days.iter().any(|d| d.note.is_some());
        assert_eq!(noted, want_by_ip.len() > 1, "{user}");
        assert!(h.events.windows(2).all(|w| w[0].time <= w[1].time));
    }
}

#[tokio::test]
async fn syslog_capture_matches_what_the_clients_did() {
    check_run("mail.log", false).await;
}

#[tokio::test]
async fn dovecot_own_log_file_matches_what_the_clients_did() {
    check_run("dovecot.log", false).await;
}

#[tokio::test]
async fn packed_days_match_what_the_clients_did() {
    check_run("mail.log", true).await;
    check_run("dovecot.log", true).await;
}

/// Every user's whole access history, as the JSON output holds it.
async fn every_history(db: &TestDb) -> Vec<Value> {
    let mut out = Vec::new();
    for run in manifest()["runs"].as_array().unwrap() {
        for user in run["users"].as_object().unwrap().keys() {
            out.push(serde_json::to_value(history(db, user).await).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn packing_keeps_every_row_and_a_line_read_again_is_stored_once() {
    let db = db_with("").await;
    let log = std::fs::read_to_string(fixture("mail.log")).unwrap();
    let first = db.ingest(&[fixture("mail.log")]).await.unwrap();
    let before = every_history(&db).await;
    assert!(
        before
            .iter()
            .any(|h| !h["events"].as_array().unwrap().is_empty()),
        "the capture gave no access events"
    );
    let stored = db.dump_access().await;
    let moved = pack_all(&db).await;
    assert!(moved > 0);
    assert_eq!(
        every_history(&db).await,
        before,
        "packing changed a history"
    );
    assert_eq!(db.dump_access().await, stored, "packing changed a row");
    // Packing again finds nothing to move.
    assert_eq!(pack_all(&db).await, 0);

    // The second half of the log again, as another file (a rotated copy
    // read by another agent): its access rows are in the packs already.
    let lines: Vec<&str> = log.lines().collect();
    let half = lines[lines.len() / 2..].join("\n") + "\n";
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.log");
    std::fs::write(&again, &half).unwrap();
    let r = db.ingest(std::slice::from_ref(&again)).await.unwrap();
    for day in crate::support::range().days() {
        assert!(
            !db.store.has_plain_access(day.key()).await.unwrap(),
            "a row of {day} the packs hold was stored again"
        );
    }
    assert_eq!(
        every_history(&db).await,
        before,
        "reading lines again changed a history"
    );

    // The same half into an unpacked database stores exactly as many rows
    // anew: packs hold back what rows held back, no more, no less.
    let plain = db_with("").await;
    plain.ingest(&[fixture("mail.log")]).await.unwrap();
    let r_plain = plain.ingest(std::slice::from_ref(&again)).await.unwrap();
    assert_eq!(r.rows_new, r_plain.rows_new);
    assert!(first.rows_new > r.rows_new);

    // A line the packs do not hold, for a packed day (a log read late): a
    // plain row, read with the day's pack, and packed by the next packing.
    let login = lines
        .iter()
        .find(|l| l.contains("imap-login: Login: user=<"))
        .expect("an IMAP login in the capture");
    let user = login
        .split("user=<")
        .nth(1)
        .and_then(|r| r.split('>').next())
        .unwrap()
        .to_owned();
    let late = login.replace("session=<", "session=<late");
    let late_file = dir.path().join("late.log");
    std::fs::write(&late_file, format!("{late}\n")).unwrap();
    let logins = |h: &AccessHistory| h.events.iter().filter(|e| e.kind == "login").count();
    let had = logins(&history(&db, &user).await);
    let r = db.ingest(std::slice::from_ref(&late_file)).await.unwrap();
    assert_eq!(r.rows_new, 1, "{:?}", r.stats);
    assert_eq!(logins(&history(&db, &user).await), had + 1);
    let with_late = every_history(&db).await;
    assert_eq!(pack_all(&db).await, 1);
    assert_eq!(
        every_history(&db).await,
        with_late,
        "packing the late row changed a history"
    );
}

#[tokio::test]
async fn passwords_never_reach_the_database_or_any_output() {
    let secrets: Vec<String> = manifest()["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert!(!secrets.is_empty());
    // The capture does hold them: Dovecot logged what was tried.
    let mut logged = String::new();
    for log in ["mail.log", "dovecot.log"] {
        logged.push_str(&std::fs::read_to_string(fixture(log)).unwrap());
    }
    assert!(secrets.iter().any(|s| logged.contains(s.as_str())));

    let db = db_with("").await;
    let report = db
        .ingest(&[fixture("mail.log"), fixture("dovecot.log")])
        .await
        .unwrap();
    let mut seen = report.render();
    for user in manifest()["runs"][0]["users"].as_object().unwrap().keys() {
        let h = history(&db, user).await;
        for f in [Format::Text, Format::Json, Format::Csv] {
            seen.push_str(&h.render(f));
        }
    }
    let mut bytes = Vec::new();
    if let mailtrail::store::Store::Postgres(p) = &db.store {
        // Every row of every table as text, and the binary columns raw.
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(p)
        .await
        .unwrap();
        assert!(tables.len() > 5, "{tables:?}");
        for t in tables {
            let sql = format!("SELECT CAST(t AS TEXT) FROM \"{t}\" t");
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await
                .unwrap();
            bytes.extend(rows.concat().into_bytes());
        }
        let state: Vec<Vec<u8>> = sqlx::query_scalar("SELECT state FROM ingest_state")
            .fetch_all(p)
            .await
            .unwrap();
        assert!(!state.is_empty());
        bytes.extend(state.concat());
    }
    db.store.close().await;
    for entry in std::fs::read_dir(db.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for s in &secrets {
        assert!(!seen.contains(s.as_str()), "{s} in output");
        assert!(
            memchr::memmem::find(&bytes, s.as_bytes()).is_none(),
            "{s} in the database files"
        );
    }
}

#[tokio::test]
async fn webmail_logins_are_labelled() {
    let db = db_with("\"127.0.0.7/32\"").await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let h = history(&db, "alice@example.edu").await;
    let logins: Vec<_> = h.events.iter().filter(|e| e.kind == "login").collect();
    assert!(!logins.is_empty());
    for l in logins {
        let webmail = l
            .client
            .as_deref()
            .is_some_and(|c| c.starts_with("webmail"));
        assert_eq!(
            webmail,
            l.remote_ip.as_deref() == Some("127.0.0.7"),
            "{l:?}"
        );
    }
}

/// A session's events often share one second (classic syslog stamps have
/// no fraction), so the report orders them by time and then in the order
/// things happen in a session, whatever order the writer inserts a batch's
/// rows in: each session opens with its login and ends with its logout, and
/// a message is marked deleted before it is expunged.
#[tokio::test]
async fn events_within_one_second_keep_the_order_of_the_log() {
    let db = db_with("").await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let run = run_of("mail.log");
    let mut sessions_checked = 0;
    let mut same_second = 0;
    for user in run["users"].as_object().unwrap().keys() {
        let h = history(&db, user).await;
        let mut by_session: BTreeMap<&str, Vec<&access::Event>> = BTreeMap::new();
        for e in &h.events {
            if let Some(s) = e.session.as_deref() {
                by_session.entry(s).or_default().push(e);
            }
        }
        for (session, events) in by_session {
            let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
            if !kinds.contains(&"login") || !kinds.contains(&"logout") {
                continue;
            }
            sessions_checked += 1;
            if events.first().map(|e| &e.time) == events.last().map(|e| &e.time) {
                same_second += 1;
            }
            assert_eq!(kinds.first(), Some(&"login"), "{user} {session}: {kinds:?}");
            assert_eq!(kinds.last(), Some(&"logout"), "{user} {session}: {kinds:?}");
            for (i, e) in events.iter().enumerate() {
                if e.kind == "message_deleted" {
                    assert!(
                        !events[i..]
                            .iter()
                            .any(|l| l.kind == "message_marked_deleted"
                                && l.message_id == e.message_id),
                        "{user} {session}: expunged before marked: {kinds:?}"
                    );
                }
            }
        }
    }
    assert!(
        same_second > 0,
        "the capture has sessions within one second ({sessions_checked} checked)"
    );
}

// ------------------------------------------------------------------
// Lines out of order, read twice, and ingests stopped at any line.

use mailtrail::ingest::access::{AccessRow, HOLD_US};
use mailtrail::ingest::correlate::{Correlator, Rows, Settings};
use mailtrail::ingest::envelope::Clock;

/// How often the correlator sweeps, in log time (its `SWEEP_EVERY_US`).
const SWEEP_US: i64 = 10 * 1_000_000;

fn settings() -> Settings {
    let c = Config::from_toml(&crate::support::config_text("sqlite::memory:", 1000)).unwrap();
    Settings::from_config(&c).unwrap()
}

fn clock() -> Clock {
    Clock::new(
        chrono_tz::Asia::Taipei,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        None,
    )
}

fn capture(log: &str) -> Vec<String> {
    std::fs::read_to_string(fixture(log))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The access rows of `lines` read in this order to the end, and for
/// each the log time (the latest stamp read) when it was given out.
fn ingest_lines(lines: &[String], restore_every_line: bool) -> Vec<(AccessRow, i64)> {
    let mut c = Correlator::new(settings());
    let mut clk = clock();
    let mut out = Rows::default();
    let mut got = Vec::new();
    let mut now = i64::MIN;
    for l in lines {
        c.feed(&mut clk, l.as_bytes(), &mut out);
        if let Ok(e) = clock().split(l.as_bytes()) {
            now = now.max(e.time_us);
        }
        // What is final leaves, as a batch would.
        c.seal(&mut out);
        got.extend(out.access.drain(..).map(|r| (r, now)));
        if restore_every_line {
            let saved = c.snapshot();
            c = Correlator::restore(settings(), &saved).unwrap();
            let year = clk.year;
            clk = Clock::new(
                chrono_tz::Asia::Taipei,
                chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
                year,
            );
        }
    }
    c.finish(&mut out);
    got.extend(out.access.drain(..).map(|r| (r, i64::MAX)));
    got
}

fn rows_of(lines: &[String]) -> Vec<AccessRow> {
    ingest_lines(lines, false)
        .into_iter()
        .map(|(r, _)| r)
        .collect()
}

/// Rows in one order whatever order they were made in, each once as the
/// store keeps it (a line read twice makes its row twice; both must be the
/// same).
fn sorted(mut rows: Vec<AccessRow>) -> Vec<AccessRow> {
    rows.sort_by_key(|r| (r.time_us, r.key));
    rows.dedup();
    rows
}

/// A small deterministic generator (the shuffles must be the same on
/// every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `lines` in another order, each moved by less than `window_us` of log
/// time from where its stamp puts it (so any two lines that trade places
/// are within that much of each other), some read twice.
fn shuffled(lines: &[String], window_us: i64, seed: u64, repeats: usize) -> Vec<String> {
    let mut g = Lcg(seed);
    let stamp = |l: &String| clock().split(l.as_bytes()).map(|e| e.time_us).unwrap_or(0);
    let mut keyed: Vec<(i64, &String)> = Vec::new();
    for l in lines {
        keyed.push((stamp(l) + (g.next() as i64 % window_us), l));
    }
    for _ in 0..repeats {
        let l = &lines[g.next() as usize % lines.len()];
        keyed.push((stamp(l) + (g.next() as i64 % window_us), l));
    }
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, l)| l.clone()).collect()
}

#[test]
fn the_captures_in_any_order_within_three_seconds_make_the_same_rows() {
    for log in ["mail.log", "dovecot.log"] {
        let lines = capture(log);
        let want = rows_of(&lines);
        assert!(want.len() > 20, "{log}: {}", want.len());
        // What depends on other lines is there to lose.
        assert!(want.iter().any(|r| r.retained.is_some()));
        assert!(want.iter().any(|r| r.client.is_some()));
        assert!(
            want.iter()
                .any(|r| r.reason.as_deref() == Some("address not allowed"))
        );
        let want = sorted(want);
        let mut reordered = 0;
        for seed in 1..=12 {
            let v = shuffled(&lines, 3_000_000, seed, 0);
            reordered += usize::from(v != lines);
            assert_eq!(sorted(rows_of(&v)), want, "{log}, seed {seed}:\n{v:#?}");
            let v = shuffled(&lines, 3_000_000, seed, 8);
            assert_eq!(v.len(), lines.len() + 8);
            assert_eq!(
                sorted(rows_of(&v)),
                want,
                "{log}, seed {seed}, lines read twice:\n{v:#?}"
            );
        }
        assert!(reordered >= 10, "{log}: the shuffles shuffled");
    }
}

#[test]
fn a_state_saved_at_every_line_gives_the_same_rows() {
    for log in ["mail.log", "dovecot.log"] {
        for lines in [capture(log), shuffled(&capture(log), 3_000_000, 7, 5)] {
            let want: Vec<AccessRow> = rows_of(&lines);
            let got: Vec<AccessRow> = ingest_lines(&lines, true)
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            assert_eq!(got, want, "{log}");
        }
    }
}

#[test]
fn rows_wait_no_longer_than_the_hold_time_and_one_sweep() {
    // The capture's POP3 session s1, again every 3 seconds for ten
    // minutes, each its own session.
    let s1: Vec<&str> = [
        "pop3-login: Login: user=<alice@example.edu>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=23214, secured, session=<R6eQHOlgS5t/AA{n}>",
        "pop3(alice@example.edu)<23214><R6eQHOlgS5t/AA{n}>: expunge: box=INBOX, uid=1, msgid=<mt-1@example.edu>, size=248",
        "pop3(alice@example.edu)<23214><R6eQHOlgS5t/AA{n}>: Disconnected: Logged out top=2/474, retr=2/546, del=2/5, size=1285",
    ]
    .to_vec();
    let mut lines = Vec::new();
    for n in 0..200 {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(11, 0, 0)
            .unwrap()
            + chrono::Duration::seconds(3 * n);
        for l in &s1 {
            lines.push(format!(
                "{} mail dovecot: {}",
                t.format("%b %d %H:%M:%S"),
                l.replace("{n}", &format!("{n:02}"))
            ));
        }
    }
    let got = ingest_lines(&lines, false);
    assert_eq!(got.len(), 600);
    let mut before_the_end = 0;
    for (r, out_at) in &got {
        if *out_at == i64::MAX {
            continue;
        }
        before_the_end += 1;
        let waited = out_at - r.time_us;
        assert!(
            (HOLD_US..=HOLD_US + SWEEP_US).contains(&waited),
            "{} waited {waited} µs",
            r.key
        );
        assert_eq!(
            r.retained,
            Some(3).filter(|_| r.kind.map(|k| k.as_str()) == Some("logout"))
        );
    }
    assert!(before_the_end > 550, "{before_the_end}");
    // In the order they were made: login, expunge, logout, session by session.
    let kinds: Vec<&str> = got.iter().map(|(r, _)| r.kind.unwrap().as_str()).collect();
    for (i, k) in kinds.iter().enumerate() {
        assert_eq!(*k, ["login", "message_deleted", "logout"][i % 3], "row {i}");
    }
}

/// Lines of the services other than IMAP and POP3, of older Dovecots'
/// logouts, of auth workers' verdicts and of master users, as the
/// reference gives them (concrete names and addresses in place of its
/// placeholders) and as Dovecot's source writes them.
const MORE: &str = "\
2026-11-23T12:00:00+08:00 mail dovecot: submission-login: Login: user=<bob@example.edu>, method=PLAIN, rip=192.0.2.20, lip=192.0.2.1, mpid=4711, TLS, session=<Q7mTbWFwuOvAqAIJ>
2026-11-23T12:00:05+08:00 mail dovecot: submission(bob@example.edu)<4711><Q7mTbWFwuOvAqAIJ>: Disconnect from 192.0.2.20: Client has quit the connection in=1200 out=560 (state=READY)
2026-11-23T12:01:02+08:00 mail dovecot: submission-login: Client has quit the connection (auth failed, 1 attempts in 2 secs): user=<bob@example.edu>, method=LOGIN, rip=192.0.2.21, lip=192.0.2.1, session=<kRz5bWFwuOvAqAIV>
2026-11-23T12:01:00+08:00 mail dovecot: auth-worker(57065): Info: conn unix:auth-worker (uid=143): auth-worker<225622>: sql(bob@example.edu,192.0.2.21,<kRz5bWFwuOvAqAIV>): Password mismatch (given password: Wr0ng-Secret-9)
2026-11-23T12:02:10+08:00 mail dovecot: managesieve-login: Login aborted: Logged out (auth failed, 1 attempts in 10 secs) (auth_failed): user=<bob@example.edu>, method=PLAIN, rip=192.0.2.22, lip=192.0.2.1, session=<hOZlh0X7hqvAqAIW>
2026-11-23T12:02:01+08:00 mail dovecot: auth: ldap(bob@example.edu,192.0.2.22,): invalid credentials
2026-11-23T12:03:00+08:00 mail dovecot: managesieve-login: Login: user=<bob@example.edu>, method=PLAIN, rip=192.0.2.23, lip=192.0.2.1, mpid=4712, TLS, session=<hOZlh0X7hqvAqAIX>
2026-11-23T12:03:01+08:00 mail dovecot: managesieve(bob@example.edu)<4712><hOZlh0X7hqvAqAIX>: Disconnected: Logged out bytes=143/517
2026-11-23T12:04:00+08:00 mail dovecot: IMAP(bob): Disconnected: Logged out bytes=748/17264
2026-11-23T12:05:00+08:00 mail dovecot: imap-login: Login: user=<bob@example.edu>, method=PLAIN, rip=192.0.2.24, lip=192.0.2.1, mpid=4713, TLS, session=<m4sTeRLoGiNAqAIY>
2026-11-23T12:04:59+08:00 mail dovecot: auth: passwd-file(admin<b>x</b>,192.0.2.24,master,<m4sTeRLoGiNAqAIY>): Master user logging in as bob@example.edu
2026-11-23T12:05:01+08:00 mail dovecot: imap(bob@example.edu)<4713><m4sTeRLoGiNAqAIY>: expunge: box=INBOX, uid=9, msgid=<gone@example.edu>, size=100
2026-11-23T12:05:02+08:00 mail dovecot: imap(bob@example.edu)<4713><m4sTeRLoGiNAqAIY>: Disconnected: Logged out
";

async fn more_db() -> (TestDb, AccessHistory) {
    let db = db_with("").await;
    let log = db.dir.path().join("more.log");
    std::fs::write(&log, MORE).unwrap();
    let r = db.ingest(&[log]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{:?}", r.stats.examples);
    assert_eq!(r.stats.lines_noise, 0);
    let h = history(&db, "bob@example.edu").await;
    for f in [Format::Text, Format::Json, Format::Csv] {
        assert!(!h.render(f).contains("Wr0ng-Secret-9"));
    }
    (db, h)
}

#[tokio::test]
async fn submission_and_managesieve_are_protocols_of_their_own() {
    let (_db, h) = more_db().await;
    let day = h.days.iter().find(|d| d.date == "2026-11-23").unwrap();
    assert_eq!(
        day.logins.iter().map(|(p, n)| (*p, *n)).collect::<Vec<_>>(),
        [
            ("imap", 1),
            ("managesieve", 1),
            ("pop3", 0),
            ("submission", 1)
        ]
    );
    assert_eq!(day.failed_logins, 2);
    let failed: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.kind == "auth_failed")
        .map(|e| (e.protocol, e.reason.as_deref(), e.remote_ip.as_deref()))
        .collect();
    assert_eq!(
        failed,
        [
            (
                Some("submission"),
                Some("password mismatch (1 attempt)"),
                Some("192.0.2.21")
            ),
            (
                Some("managesieve"),
                Some("password mismatch (1 attempt)"),
                Some("192.0.2.22")
            ),
        ]
    );
    let logouts: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.kind == "logout")
        .map(|e| {
            (
                e.protocol,
                e.in_bytes,
                e.out_bytes,
                e.reason.as_deref(),
                e.remote_ip.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        logouts,
        [
            (
                Some("submission"),
                Some(1200),
                Some(560),
                Some("Client has quit the connection"),
                Some("192.0.2.20")
            ),
            (
                Some("managesieve"),
                Some(143),
                Some(517),
                Some("Logged out"),
                Some("192.0.2.23")
            ),
            (
                Some("imap"),
                Some(748),
                Some(17264),
                Some("Logged out"),
                None
            ),
            (
                Some("imap"),
                None,
                None,
                Some("Logged out"),
                Some("192.0.2.24")
            ),
        ]
    );
    let text = h.render(Format::Text);
    assert!(
        text.contains(
            "Date       IMAP logins POP3 logins Submission logins ManageSieve logins Failed logins"
        ),
        "{text}"
    );
    let csv = h.render(Format::Csv);
    assert!(
        csv.starts_with(
            "Date,IMAP logins,POP3 logins,Submission logins,ManageSieve logins,Failed logins,"
        ),
        "{csv}"
    );
    assert!(csv.contains("\r\n2026-11-23,1,0,1,1,2,"), "{csv}");
    // A mailbox that used neither keeps two protocols in its summary:
    // carol, in the capture (alice and bob failed a ManageSieve and a
    // submission login there).
    let db = db_with("").await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let h = history(&db, "carol@example.edu").await;
    assert!(!h.days.is_empty());
    assert!(h.days.iter().all(|d| d.logins.len() == 2));
    let h = history(&db, "alice@example.edu").await;
    assert!(h.days.iter().any(|d| d.logins.contains_key("managesieve")));
}

#[tokio::test]
async fn a_master_users_login_is_marked_everywhere_it_is_shown() {
    let (db, h) = more_db().await;
    let logins: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.kind == "login")
        .map(|e| (e.protocol, e.master_user.as_deref()))
        .collect();
    assert_eq!(
        logins,
        [
            (Some("submission"), None),
            (Some("managesieve"), None),
            (Some("imap"), Some("admin<b>x</b>")),
        ]
    );
    // Only the login: the session's other rows are the session's.
    assert_eq!(
        h.events.iter().filter(|e| e.master_user.is_some()).count(),
        1
    );
    let day = h.days.iter().find(|d| d.date == "2026-11-23").unwrap();
    assert_eq!(day.master_users, ["admin<b>x</b>"]);
    assert!(
        h.days
            .iter()
            .all(|d| d.date == day.date || d.master_users.is_empty())
    );
    let text = h.render(Format::Text);
    assert!(
        text.contains("-- opened by the administrator account admin<b>x</b>"),
        "{text}"
    );
    assert!(
        text.contains("Note: On 2026-11-23, this mailbox was opened by the administrator account admin<b>x</b>"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&h.render(Format::Json)).unwrap();
    let with_master: Vec<&Value> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["master_user"].is_null())
        .collect();
    assert_eq!(with_master.len(), 1);
    assert_eq!(with_master[0]["type"], "login");
    assert!(
        json["events"][0]
            .as_object()
            .unwrap()
            .contains_key("master_user")
    );
    let csv = h.render(Format::Csv);
    assert!(csv.contains(",Reason,Master user\r\n"), "{csv}");
    assert!(
        csv.contains("this mailbox was opened by the administrator account admin<b>x</b>"),
        "the day's note: {csv}"
    );
    assert!(csv.contains(",admin<b>x</b>\r\n"), "{csv}");

    // The report, in both languages: marked, and the name shown as text.
    use mailtrail::config::Lang;
    use mailtrail::report::{self, Channel, Data, Kind, Limits, Requester, Spec};
    let tz = db.config.tz().unwrap();
    for (lang, words) in [
        (
            Lang::En,
            "Opened by the administrator account admin&lt;b&gt;x&lt;&#x2f;b&gt;",
        ),
        (
            Lang::ZhTw,
            "由管理者帳號 admin&lt;b&gt;x&lt;&#x2f;b&gt; 開啟",
        ),
    ] {
        let spec = Spec {
            mailbox: Mailbox::parse("bob", "example.edu").unwrap(),
            kind: Kind::Access,
            range: DateRange::new(
                Day::parse("2026-11-23").unwrap(),
                Day::parse("2026-11-23").unwrap(),
            )
            .unwrap(),
            lang,
            requester: Requester {
                channel: Channel::Cli,
                client_ip: "127.0.0.1".into(),
                at: 1_795_398_077,
            },
        };
        let data = Data::load(&db.store, &spec, tz).await.unwrap();
        let r = report::render(
            spec,
            &data,
            Limits::from_config(&db.config),
            tz,
            chrono::Utc::now(),
        )
        .unwrap();
        let html = String::from_utf8(r.attachment.bytes.clone()).unwrap();
        assert!(html.contains(words), "{lang:?}:\n{html}");
        assert!(html.contains("class=\"ev-login master\""), "{html}");
        assert!(!html.contains("<b>x"), "{html}");
        for part in [&r.html, &r.text] {
            assert!(
                part.contains("admin&lt;b&gt;x")
                    || part.contains("admin<b>x</b>") && part == &r.text,
                "{lang:?}: the summary names the account:\n{part}"
            );
        }
        let column = match lang {
            Lang::En => "ManageSieve logins",
            Lang::ZhTw => "篩選規則（ManageSieve）登入",
        };
        assert!(r.text.contains(column), "{}", r.text);
        assert!(html.contains(column), "{html}");
    }
}

/// The real captures' master-user login (s11: `alice@example.edu*admin`
/// from 127.0.0.8): Dovecot 2.3.19 logs only `auth: Master user logging in
/// as alice@example.edu`, naming no master user, address or session; the
/// file run's `login_log_format_elements` adds `auth_user=<%{auth_user}>`,
/// which names it. Either way the login is marked, and nothing else is.
#[tokio::test]
async fn the_captures_master_user_login_is_marked() {
    let manifest = Capture::Dovecot.manifest();
    for run in manifest["runs"].as_array().unwrap() {
        let log = run["log"].as_str().unwrap();
        let named = run["login_log_format_elements"]
            .as_str()
            .is_some_and(|f| f.contains("%{auth_user}"));
        let db = db_with("").await;
        db.ingest(&[fixture(log)]).await.unwrap();
        for (user, facts) in run["users"].as_object().unwrap() {
            let Ok(h) = Mailbox::parse(user, "example.edu") else {
                continue;
            };
            let h = history(&db, h.as_str()).await;
            let want: Vec<(String, String)> = facts["logins_by_master_user"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|l| {
                            let master = if named {
                                l["master_user"].as_str().unwrap().to_owned()
                            } else {
                                String::new()
                            };
                            (l["client_ip"].as_str().unwrap().to_owned(), master)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let got: Vec<(String, String)> = h
                .events
                .iter()
                .filter_map(|e| {
                    let m = e.master_user.clone()?;
                    assert_eq!(e.kind, "login", "{log} {user}: only the login is marked");
                    Some((e.remote_ip.clone().unwrap_or_default(), m))
                })
                .collect();
            assert_eq!(got, want, "{log} {user}");
        }
    }
    assert!(
        manifest["runs"][0]["users"]["alice@example.edu"]["logins_by_master_user"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "the capture has a master-user login"
    );
}

#[tokio::test]
async fn the_nightly_job_packs_a_day_once_it_is_complete() {
    let db = db_with("").await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let before = every_history(&db).await;
    let tz = db.config.tz().unwrap();
    let day = Capture::Dovecot.day();
    assert!(db.store.has_plain_access(day.key()).await.unwrap());
    // During the day: not complete, nothing packed.
    let during = mailtrail::schedule::start_of(day, tz) + chrono::Duration::hours(23);
    let t = mailtrail::schedule::tick(&db.store, &db.config, during)
        .await
        .unwrap();
    assert!(!t.packed.contains(&day));
    assert!(db.store.has_plain_access(day.key()).await.unwrap());
    // Once complete: packed, and every history as it was.
    let after = mailtrail::schedule::start_of(day.succ(), tz) + chrono::Duration::hours(1);
    let t = mailtrail::schedule::tick(&db.store, &db.config, after)
        .await
        .unwrap();
    assert!(t.packed.contains(&day), "{:?}", t.packed);
    assert!(!db.store.has_plain_access(day.key()).await.unwrap());
    assert_eq!(every_history(&db).await, before);
    // The next tick finds nothing left to pack.
    let t = mailtrail::schedule::tick(&db.store, &db.config, after + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(t.packed.is_empty(), "{:?}", t.packed);
}
