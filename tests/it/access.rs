//! The real Dovecot capture, checked against what its driver did.

use std::collections::{BTreeMap, BTreeSet};

use mailtrail::access::{self, AccessHistory};
use mailtrail::config::Config;
use mailtrail::domain::Mailbox;
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

async fn check_run(log: &str) {
    let db = db_with("").await;
    let r = db.ingest(&[fixture(log)]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{:?}", r.stats.examples);
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
    check_run("mail.log").await;
}

#[tokio::test]
async fn dovecot_own_log_file_matches_what_the_clients_did() {
    check_run("dovecot.log").await;
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
/// no fraction), so the report orders them by time and then by the order
/// they were stored in: that order must be the log's, whatever order the
/// writer inserts a batch's rows in. Each session opens with its login and
/// ends with its logout, and a message is marked deleted before it is
/// expunged.
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
