//! Mail received by local mailboxes (`received`) and where a message is
//! now (`locate`), against the real capture under
//! `tests/fixtures/received/` (Postfix 3.7, Dovecot LMTP/Sieve/mail_log,
//! rspamd, postgrey). Every expected value comes from its manifest: what
//! the driver sent, what the servers answered, what the remote sites and
//! the maildirs held; never from this program's output.
//!
//! Both of its logs are read: `mail.log` (classic year-less stamps, dated
//! by [`Capture::file`]) and `mail-rfc3339.log` (the same lines with RFC
//! 3339 stamps).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, FixedOffset};
use mailtrail::domain::{DateRange, Mailbox};
use mailtrail::history::Format;
use mailtrail::received::{self, ReceivedMail};
use mailtrail::visible::visible;
use serde_json::{Value, json};

use crate::support::{Capture, TestDb, config_text, database_url};

/// The capture's two logs: the same lines, classic and RFC 3339 stamps.
const LOGS: [&str; 2] = ["mail.log", "mail-rfc3339.log"];

fn manifest() -> Value {
    Capture::Received.manifest()
}

/// A log of the capture, as a copy dated like the capture.
fn log(name: &str) -> PathBuf {
    Capture::Received.file(name)
}

/// The capture's day with the days either side: a line that lands on a
/// wrong day shows in their counts.
fn days() -> DateRange {
    let d = Capture::Received.day();
    DateRange::new(d.pred(), d.succ()).unwrap()
}

fn mailbox(address: &str) -> Mailbox {
    Mailbox::parse(address, "example.edu").unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s(v)).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// `<id>` and `id` alike, ASCII case folded.
fn norm_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

fn is_local(address: &str) -> bool {
    address.to_ascii_lowercase().ends_with("@example.edu")
}

/// Every local mailbox the capture's mail was addressed to.
fn local_mailboxes(m: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in m["envelopes"].as_array().unwrap() {
        for r in e["recipients"].as_array().unwrap() {
            let a = s(&r["address"]);
            if is_local(a) {
                out.insert(a.to_owned());
            }
        }
    }
    for b in m["bounce_notices"].as_array().unwrap() {
        out.insert(s(&b["to"]).to_owned());
    }
    out
}

/// How an expected entry is found among a mailbox's entries.
#[derive(Debug)]
enum Find {
    /// By its Message-ID (Postfix read it: the message was queued, or
    /// refused at its end).
    MessageId(String),
    /// A refusal at RCPT (no Message-ID was ever sent): by its envelope
    /// sender, its time within the SMTP session, and its reply.
    Refusal {
        sender: String,
        from: DateTime<FixedOffset>,
        to: DateTime<FixedOffset>,
        reply: String,
    },
}

/// What one field of an entry must be.
#[derive(Debug)]
enum Check {
    Is(Value),
    Contains(String),
    /// A Postfix queue ID, none of `others` (the queue IDs the clients
    /// were told of other envelopes).
    QueueIdNotOf(Vec<String>),
}

/// One entry a mailbox's `received` must hold.
#[derive(Debug)]
struct Expect {
    label: String,
    mailbox: String,
    find: Find,
    /// The entry's time lies in this window (the SMTP session, up to the
    /// end of the capture).
    window: (DateTime<FixedOffset>, DateTime<FixedOffset>),
    checks: Vec<(&'static str, Check)>,
    /// Bytes sent: what Postfix counts of the queued message is at least
    /// this (it adds its own headers).
    min_size: Option<i64>,
}

/// rspamd's `SCORE/REQUIRED` as its task line has it.
fn rspamd_score(v: &Value) -> String {
    format!(
        "{:.2}/{:.2}",
        v["score"].as_f64().unwrap(),
        v["required_score"].as_f64().unwrap()
    )
}

/// The part of an SMTP reply from its enhanced status code on (Postfix
/// logs a milter's reply without the basic code).
fn from_enhanced(reply: &str, enhanced: &str) -> String {
    let at = reply
        .find(enhanced)
        .unwrap_or_else(|| panic!("{enhanced} not in {reply}"));
    reply[at..].to_owned()
}

/// Every entry the manifest says its mailboxes' `received` holds.
fn expected(m: &Value) -> Vec<Expect> {
    let generated = time(&m["generated"]);
    let told: Vec<String> = m["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["queue_id"].as_str().map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for e in m["envelopes"].as_array().unwrap() {
        let id = s(&e["id"]);
        let sender = s(&e["sender"]);
        let server = format!("{}[{}]", s(&e["client_name"]), s(&e["client_ip"]));
        let spam = &e["spam_verdict"];
        let attempts = e["attempts"].as_array().unwrap();
        for r in e["recipients"].as_array().unwrap() {
            let address = s(&r["address"]);
            if !is_local(address) {
                continue;
            }
            // The session whose RCPT got `reply`.
            let session = |reply: &str| {
                attempts
                    .iter()
                    .find(|a| a["rcpt_replies"][address].as_str() == Some(reply))
                    .unwrap_or_else(|| panic!("{id}: no attempt answered {reply}"))
            };
            let refusal_at_rcpt = |reply: &str, enhanced: &str, category: &str| {
                let a = session(reply);
                let (from, to) = (time(&a["started"]), time(&a["ended"]));
                let window = (
                    from - chrono::Duration::seconds(1),
                    to + chrono::Duration::seconds(1),
                );
                Expect {
                    label: format!("{id} to {address}, refused at RCPT ({reply})"),
                    mailbox: address.to_owned(),
                    find: Find::Refusal {
                        sender: sender.to_owned(),
                        from: window.0,
                        to: window.1,
                        reply: from_enhanced(reply, enhanced),
                    },
                    window,
                    checks: vec![
                        ("outcome", Check::Is(json!("refused"))),
                        ("sender", Check::Is(json!(sender))),
                        ("bounce_notice", Check::Is(json!(false))),
                        ("server", Check::Is(json!(server))),
                        ("stage", Check::Is(json!("RCPT"))),
                        ("reason", Check::Is(json!(category))),
                        ("reply", Check::Contains(from_enhanced(reply, enhanced))),
                        // Refused before DATA: nothing of the message
                        // itself was ever sent.
                        ("message_id", Check::Is(Value::Null)),
                        ("subject", Check::Is(Value::Null)),
                        ("queue_id", Check::Is(Value::Null)),
                        ("folder", Check::Is(Value::Null)),
                        ("forwarded_to", Check::Is(Value::Null)),
                        ("spam_action", Check::Is(Value::Null)),
                        ("spam_score", Check::Is(Value::Null)),
                    ],
                    min_size: None,
                }
            };
            if let Some(first) = r.get("first_attempt") {
                // Greylisted, then let through on the retry: the refusal
                // is an entry of its own, before the delivery's.
                out.push(refusal_at_rcpt(
                    s(&first["reply"]),
                    s(&first["enhanced_code"]),
                    "greylisted",
                ));
            }
            let expect = s(&r["expect"]);
            if expect == "refused" && s(&r["stage"]) == "RCPT" {
                out.push(refusal_at_rcpt(
                    s(&r["reply"]),
                    s(&r["enhanced_code"]),
                    s(&r["category"]),
                ));
                continue;
            }
            let queued = session_of_queue(attempts, e);
            let mut checks: Vec<(&'static str, Check)> = vec![
                ("sender", Check::Is(json!(sender))),
                ("bounce_notice", Check::Is(json!(false))),
                ("server", Check::Is(json!(server))),
                ("message_id", Check::Is(e["message_id"].clone())),
                ("subject", Check::Is(e["subject"].clone())),
            ];
            if spam.is_object() {
                checks.push(("spam_action", Check::Is(spam["action"].clone())));
                checks.push(("spam_score", Check::Is(json!(rspamd_score(spam)))));
            } else {
                checks.push(("spam_action", Check::Is(Value::Null)));
                checks.push(("spam_score", Check::Is(Value::Null)));
            }
            let rule_of = |rule: &Value, word: &str, ours: &str| match rule.as_str() {
                Some(t) if t.contains(word) => json!(ours),
                _ => Value::Null,
            };
            let mut min_size = Some(e["size"].as_i64().unwrap());
            match expect {
                "delivered" => {
                    checks.extend([
                        ("outcome", Check::Is(json!("delivered"))),
                        ("folder", Check::Is(r["saved_to"].clone())),
                        (
                            "rule",
                            Check::Is(rule_of(&r["rule"], "fileinto", "sieve fileinto")),
                        ),
                        ("queue_id", Check::Is(e["queue_id"].clone())),
                        ("forwarded_to", Check::Is(Value::Null)),
                        ("reason", Check::Is(Value::Null)),
                        ("stage", Check::Is(Value::Null)),
                    ]);
                }
                "forwarded" => {
                    let result = &r["forward_result"][0];
                    let status = match s(&result["event"]) {
                        "accepted" => "sent",
                        "rcpt_refused" => "bounced",
                        other => panic!("{id}: forward result {other}"),
                    };
                    let rule = match s(&r["by"]) {
                        "sieve redirect" => "sieve redirect",
                        "virtual alias" => "alias",
                        other => panic!("{id}: forwarded by {other}"),
                    };
                    checks.extend([
                        ("outcome", Check::Is(json!("forwarded"))),
                        ("forwarded_to", Check::Is(r["to"].clone())),
                        ("forward_status", Check::Is(json!(status))),
                        (
                            "forward_reply",
                            Check::Contains(s(&result["reply"]).to_owned()),
                        ),
                        ("rule", Check::Is(json!(rule))),
                        ("folder", Check::Is(Value::Null)),
                        ("queue_id", Check::Is(e["queue_id"].clone())),
                    ]);
                }
                "auto_replied" => {
                    let reply = &r["vacation_reply"][0];
                    assert_eq!(
                        reply["from"], "",
                        "{id}: a vacation reply has the null sender"
                    );
                    checks.extend([
                        ("outcome", Check::Is(json!("auto_replied"))),
                        ("folder", Check::Is(r["saved_to"].clone())),
                        ("forwarded_to", Check::Is(reply["to"][0].clone())),
                        (
                            "rule",
                            Check::Is(rule_of(&r["rule"], "vacation", "sieve vacation")),
                        ),
                        ("queue_id", Check::Is(e["queue_id"].clone())),
                    ]);
                }
                "discarded" => {
                    assert_eq!(r["in_mailbox"], false);
                    checks.extend([
                        ("outcome", Check::Is(json!("discarded"))),
                        (
                            "rule",
                            Check::Is(rule_of(&r["rule"], "discard", "sieve discard")),
                        ),
                        ("folder", Check::Is(Value::Null)),
                        ("forwarded_to", Check::Is(Value::Null)),
                        ("queue_id", Check::Is(e["queue_id"].clone())),
                    ]);
                }
                "refused" => {
                    // At the end of the message: Postfix had read it (its
                    // Message-ID and subject) but never told the client
                    // its queue ID, so the manifest has none for it.
                    assert_eq!(s(&r["stage"]), "END-OF-MESSAGE");
                    assert!(e["queue_id"].is_null());
                    let part = from_enhanced(s(&r["reply"]), s(&r["enhanced_code"]));
                    checks.extend([
                        ("outcome", Check::Is(json!("refused"))),
                        ("stage", Check::Is(r["stage"].clone())),
                        ("reason", Check::Is(r["category"].clone())),
                        ("reply", Check::Contains(part)),
                        ("queue_id", Check::QueueIdNotOf(told.clone())),
                        ("folder", Check::Is(Value::Null)),
                    ]);
                    min_size = None;
                }
                "held" => {
                    // `header_checks: /RE/ HOLD TEXT`: the text is logged.
                    let why = s(&r["reason"])
                        .split_once(" HOLD ")
                        .map(|(_, t)| t.to_owned())
                        .unwrap();
                    assert_eq!(r["in_hold_queue"], true);
                    checks.extend([
                        ("outcome", Check::Is(json!("held"))),
                        ("reason", Check::Is(json!("held_by_rule"))),
                        ("rule", Check::Is(json!("header_checks"))),
                        ("reply", Check::Contains(why)),
                        ("queue_id", Check::Is(r["queue_id"].clone())),
                        ("folder", Check::Is(Value::Null)),
                    ]);
                    // Held before qmgr ever saw it: no size logged.
                    min_size = None;
                }
                other => panic!("{id}: expect {other}"),
            }
            out.push(Expect {
                label: format!("{id} to {address}, {expect}"),
                mailbox: address.to_owned(),
                find: Find::MessageId(s(&e["message_id"]).to_owned()),
                window: (
                    time(&queued["started"]) - chrono::Duration::seconds(1),
                    generated,
                ),
                checks,
                min_size,
            });
        }
    }
    for b in m["bounce_notices"].as_array().unwrap() {
        let of = s(&b["for"]);
        let returned = m["envelopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == of)
            .unwrap();
        assert_eq!(b["sender"], "");
        assert_eq!(b["outcome"], "bounce_notice");
        // rspamd scanned what came in by SMTP; the notice Postfix made
        // itself it never saw.
        let scanned = m["rspamd_history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| norm_id(s(&h["id"])) == norm_id(s(&b["message_id"])));
        assert!(!scanned);
        out.push(Expect {
            label: format!("bounce notice for {of} to {}", s(&b["to"])),
            mailbox: s(&b["to"]).to_owned(),
            find: Find::MessageId(s(&b["message_id"]).to_owned()),
            window: (
                time(&returned["sent_at"]) - chrono::Duration::seconds(1),
                generated,
            ),
            checks: vec![
                ("outcome", Check::Is(json!("delivered"))),
                ("bounce_notice", Check::Is(json!(true))),
                ("sender", Check::Is(json!(""))),
                ("folder", Check::Is(b["folder"].clone())),
                ("subject", Check::Is(b["subject"].clone())),
                ("message_id", Check::Is(b["message_id"].clone())),
                // Made by Postfix itself: no sending server.
                ("server", Check::Is(Value::Null)),
                ("spam_action", Check::Is(Value::Null)),
                ("spam_score", Check::Is(Value::Null)),
                ("rule", Check::Is(Value::Null)),
            ],
            min_size: None,
        });
    }
    out
}

/// The SMTP session that got the envelope's queue ID (the last one, after
/// a greylisting), or its last for one refused at the end.
fn session_of_queue<'a>(attempts: &'a [Value], e: &Value) -> &'a Value {
    attempts
        .iter()
        .find(|a| !e["queue_id"].is_null() && a["queue_id"] == e["queue_id"])
        .or(attempts.last())
        .unwrap()
}

/// The entries of `entries` (JSON, as `received --format json` has them)
/// that `find` names.
fn matching<'a>(entries: &'a [Value], find: &Find) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|x| match find {
            Find::MessageId(id) => x["message_id"]
                .as_str()
                .is_some_and(|m| norm_id(m) == norm_id(id)),
            Find::Refusal {
                sender,
                from,
                to,
                reply,
            } => {
                x["sender"].as_str() == Some(sender.as_str())
                    && x["reply"].as_str().is_some_and(|r| r.contains(reply))
                    && x["time"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t >= *from && t <= *to)
            }
        })
        .collect()
}

/// Day counts as the entries imply them: each entry is a message received,
/// counted once more by its outcome.
fn expected_days(expects: &[&Expect], range: DateRange) -> Value {
    let mut days: BTreeMap<String, [u64; 5]> =
        range.days().map(|d| (d.to_string(), [0; 5])).collect();
    for x in expects {
        let outcome = x
            .checks
            .iter()
            .find_map(|(k, c)| match (k, c) {
                (&"outcome", Check::Is(v)) => v.as_str(),
                _ => None,
            })
            .unwrap();
        let day = x.window.0.date_naive().to_string();
        let c = days.get_mut(&day).unwrap();
        c[0] += 1;
        match outcome {
            "delivered" | "auto_replied" => c[1] += 1,
            "refused" => c[2] += 1,
            "held" => c[3] += 1,
            "forwarded" => c[4] += 1,
            _ => {}
        }
    }
    Value::Array(
        days.into_iter()
            .map(|(date, c)| {
                json!({"date": date, "received": c[0], "delivered": c[1], "refused": c[2],
                       "held": c[3], "forwarded": c[4]})
            })
            .collect(),
    )
}

/// Each mailbox's `received` answer as its JSON output.
async fn received_json(db: &TestDb, mailboxes: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let tz = db.config.tz().unwrap();
    let mut out = BTreeMap::new();
    for a in mailboxes {
        let r = received::load(&db.store, &mailbox(a), days(), tz)
            .await
            .unwrap();
        out.insert(a.clone(), json_of(&r));
    }
    out
}

fn json_of(r: &ReceivedMail) -> Value {
    serde_json::from_str(&r.render(Format::Json)).unwrap()
}

/// Checks each mailbox's `received` against the manifest; returns what
/// differs, one line per field.
fn compare(answers: &BTreeMap<String, Value>, m: &Value) -> Vec<String> {
    let expects = expected(m);
    let mut problems = Vec::new();
    for (a, answer) in answers {
        let entries = answer["messages"].as_array().unwrap();
        let mine: Vec<&Expect> = expects.iter().filter(|x| &x.mailbox == a).collect();
        for x in &mine {
            let found = matching(entries, &x.find);
            let [entry] = found.as_slice() else {
                problems.push(format!(
                    "{}: {} matching entries in {a}'s received: {found:#?}",
                    x.label,
                    found.len()
                ));
                continue;
            };
            for (key, check) in &x.checks {
                let got = &entry[*key];
                let ok = match check {
                    Check::Is(want) => got == want,
                    Check::Contains(part) => {
                        got.as_str().is_some_and(|g| g.contains(part.as_str()))
                    }
                    Check::QueueIdNotOf(others) => got
                        .as_str()
                        .is_some_and(|q| q.len() >= 6 && !others.iter().any(|o| o == q)),
                };
                if !ok {
                    problems.push(format!("{}: {key} is {got}, expected {check:?}", x.label));
                }
            }
            let t = DateTime::parse_from_rfc3339(entry["time"].as_str().unwrap()).unwrap();
            if t < x.window.0 || t > x.window.1 {
                problems.push(format!(
                    "{}: time {t} outside {} .. {}",
                    x.label, x.window.0, x.window.1
                ));
            }
            // The time is shown in the configured zone, the capture's.
            if t.offset().local_minus_utc() != 8 * 3600 {
                problems.push(format!("{}: time {t} not in +08:00", x.label));
            }
            if let Some(min) = x.min_size {
                let size = entry["size"].as_i64();
                if size.is_none_or(|n| n < min) {
                    problems.push(format!(
                        "{}: size {size:?}, expected at least the {min} bytes sent",
                        x.label
                    ));
                }
            }
        }
        if entries.len() != mine.len() {
            problems.push(format!(
                "{a}: {} entries, the manifest has {}",
                entries.len(),
                mine.len()
            ));
        }
        let want_days = expected_days(&mine, days());
        if answer["days"] != want_days {
            problems.push(format!(
                "{a}: days {}, expected {want_days}",
                answer["days"]
            ));
        }
    }
    problems
}

async fn ingested(name: &str) -> TestDb {
    let db = TestDb::new().await;
    db.ingest(&[log(name)]).await.unwrap();
    db
}

async fn received_matches_the_manifest(name: &str) {
    let m = manifest();
    let db = ingested(name).await;
    // The tests' config fits this capture: its zone, its domain local,
    // and every remote site's not.
    assert_eq!(db.config.tz().unwrap().name(), s(&m["timezone"]));
    let locals = local_mailboxes(&m);
    let domains = db.config.local_domains();
    for e in m["envelopes"].as_array().unwrap() {
        for r in e["recipients"].as_array().unwrap() {
            let a = s(&r["address"]);
            assert_eq!(domains.is_local_address(a), locals.contains(a), "{a}");
        }
        assert_eq!(
            domains.is_local_address(s(&e["sender"])),
            is_local(s(&e["sender"]))
        );
    }
    let answers = received_json(&db, &locals).await;
    let problems = compare(&answers, &m);
    assert!(
        problems.is_empty(),
        "{name}: {} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn received_matches_the_manifest_classic_stamps() {
    received_matches_the_manifest("mail.log").await;
}

#[tokio::test]
async fn received_matches_the_manifest_rfc3339_stamps() {
    received_matches_the_manifest("mail-rfc3339.log").await;
}

/// The hostile subject comes back exactly as it was written, in the JSON
/// as a program reads it.
#[tokio::test]
async fn hostile_subject_is_exact_in_json() {
    let m = manifest();
    let r4 = m["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "r4")
        .unwrap();
    let subject = s(&r4["subject"]);
    assert!(subject.contains('\u{202e}') && subject.contains("<script>"));
    for name in LOGS {
        let db = ingested(name).await;
        let tz = db.config.tz().unwrap();
        let r = received::load(&db.store, &mailbox("alice@example.edu"), days(), tz)
            .await
            .unwrap();
        let text = r.render(Format::Json);
        let v: Value = serde_json::from_str(&text).unwrap();
        let entry = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["message_id"].as_str().map(norm_id) == Some(norm_id(s(&r4["message_id"]))))
            .unwrap_or_else(|| panic!("{name}: no r4 in {text}"));
        assert_eq!(
            entry["subject"].as_str().unwrap().as_bytes(),
            subject.as_bytes()
        );
        assert_eq!(entry["sender"], r4["sender"]);
        let located = received::locate(
            &db.store,
            &mailbox("alice@example.edu"),
            s(&r4["message_id"]),
            tz,
        )
        .await
        .unwrap();
        let v: Value = serde_json::from_str(&located.render(Format::Json)).unwrap();
        assert_eq!(
            v["received"][0]["subject"].as_str(),
            Some(subject),
            "{name}"
        );
    }
}

/// Our step for one of the manifest's actions; `None` for the half of a
/// pair that is one step of ours (POP3's RETR before its DELE).
fn our_action(manifest_action: &str) -> Option<&'static str> {
    Some(match manifest_action {
        "pop3_retr" => return None,
        "pop3_dele" => "pop3_deleted",
        "copy" => "copy",
        "move" => "move",
        "flag" => "flag",
        "flag_deleted" => "flag_deleted",
        "expunge" => "expunge",
        "undelete" => "undelete",
        "delete_folder" => "delete_folder",
        "rename_folder" => "rename_folder",
        other => panic!("manifest action {other}"),
    })
}

/// Checks `locate` for every message of the manifest's `locate` list;
/// returns what differs.
async fn compare_locate(db: &TestDb, m: &Value) -> Vec<String> {
    let tz = db.config.tz().unwrap();
    let mut problems = Vec::new();
    for l in m["locate"].as_array().unwrap() {
        let label = format!("{} in {}", s(&l["envelope"]), s(&l["mailbox"]));
        let got = received::locate(
            &db.store,
            &mailbox(s(&l["mailbox"])),
            s(&l["message_id"]),
            tz,
        )
        .await
        .unwrap();
        let v: Value = serde_json::from_str(&got.render(Format::Json)).unwrap();
        let mut bad = |what: &str, got: &Value, want: &Value| {
            if got != want {
                problems.push(format!("{label}: {what} is {got}, expected {want}"));
            }
        };
        bad("found", &v["found"], &json!(true));
        bad("state", &v["state"], &l["state"]);
        bad("saved_to", &v["saved_to"], &l["saved_to"]);
        let set = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|f| s(f).to_owned())
                .collect()
        };
        if set(&v["folders_now"]) != set(&l["folders_now"]) {
            problems.push(format!(
                "{label}: folders_now {}, expected {}",
                v["folders_now"], l["folders_now"]
            ));
        }
        let steps = v["steps"].as_array().unwrap();
        if steps.first().map(|x| &x["action"]) != Some(&json!("saved")) {
            problems.push(format!("{label}: the first step is not `saved`: {steps:?}"));
        }
        let want: Vec<(&str, &Value)> = l["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| our_action(s(&a["action"])).map(|ours| (ours, a)))
            .collect();
        let after: Vec<&Value> = steps.iter().skip(1).collect();
        let names: Vec<&str> = after.iter().map(|x| s(&x["action"])).collect();
        let want_names: Vec<&str> = want.iter().map(|(n, _)| *n).collect();
        if names != want_names {
            problems.push(format!(
                "{label}: steps after saved {names:?}, expected {want_names:?}"
            ));
            continue;
        }
        for (step, (name, a)) in after.iter().zip(&want) {
            for key in ["client_ip", "protocol"] {
                if step[key] != a[key] {
                    problems.push(format!(
                        "{label}: {name}'s {key} is {}, expected {}",
                        step[key], a[key]
                    ));
                }
            }
        }
        // How it arrived: the delivery of this Message-ID to this mailbox.
        let arrived = v["received"].as_array().unwrap();
        if arrived.is_empty()
            || arrived.iter().any(|e| {
                e["message_id"].as_str().map(norm_id) != Some(norm_id(s(&l["message_id"])))
            })
        {
            problems.push(format!("{label}: received {arrived:?}"));
        }
    }
    problems
}

async fn locate_matches_the_manifest(name: &str) {
    let m = manifest();
    let db = ingested(name).await;
    let problems = compare_locate(&db, &m).await;
    assert!(
        problems.is_empty(),
        "{name}: {} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // A Message-ID the mailbox never received: r5 was bob's, not alice's.
    let tz = db.config.tz().unwrap();
    let r5 = m["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "r5")
        .unwrap();
    assert!(
        !r5["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == "alice@example.edu")
    );
    for id in [s(&r5["message_id"]), "<no-such-message@example.edu>"] {
        let l = received::locate(&db.store, &mailbox("alice@example.edu"), id, tz)
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&l.render(Format::Json)).unwrap();
        assert_eq!(v["found"], false, "{name}: {id}: {v}");
        assert_eq!(v["received"], json!([]), "{name}: {id}: {v}");
        assert_eq!(v["steps"], json!([]), "{name}: {id}: {v}");
    }
}

#[tokio::test]
async fn locate_matches_the_manifest_classic_stamps() {
    locate_matches_the_manifest("mail.log").await;
}

#[tokio::test]
async fn locate_matches_the_manifest_rfc3339_stamps() {
    locate_matches_the_manifest("mail-rfc3339.log").await;
}

/// Runs the built binary with `config` and `args`; its standard output
/// and error.
fn run(config: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// What the capture's envelopes say of their mail: senders, subjects (as
/// written and as sent), Message-IDs, From headers.
fn private_words(e: &Value) -> Vec<String> {
    let mut out = vec![
        s(&e["sender"]).to_owned(),
        s(&e["subject"]).to_owned(),
        s(&e["message_id"]).to_owned(),
    ];
    out.push(s(&e["subject_header"]).replace('\n', "?"));
    if let Some(f) = e["from_header"].as_str() {
        out.push(f.to_owned());
    }
    out
}

/// Whether an envelope is `mailbox`'s: sent to it, or by it.
fn involves(e: &Value, mailbox: &str) -> bool {
    s(&e["sender"]).eq_ignore_ascii_case(mailbox)
        || e["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| s(&r["address"]).eq_ignore_ascii_case(mailbox))
}

#[test]
fn each_mailbox_sees_only_its_own_mail() {
    let m = manifest();
    let dir = tempfile::tempdir().unwrap();
    let day = Capture::Received.day().to_string();
    for name in LOGS {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, config_text(&database_url(dir.path(), name), 1000)).unwrap();
        let (summary, stderr) = run(&config, &["ingest", log(name).to_str().unwrap()]);
        assert!(summary.contains("rows stored"), "{summary}");
        // The summary is for the operator: no word of anyone's mail.
        for e in m["envelopes"].as_array().unwrap() {
            for w in private_words(e) {
                for shown in [w.as_str(), &visible(&w)] {
                    assert!(
                        !summary.contains(shown) && !stderr.contains(shown),
                        "{name}: the ingest's summary shows {shown:?}:\n{summary}\n{stderr}"
                    );
                }
            }
        }
        for a in local_mailboxes(&m) {
            let envelopes = m["envelopes"].as_array().unwrap();
            let mut own: BTreeSet<String> = envelopes
                .iter()
                .filter(|e| involves(e, &a))
                .flat_map(private_words)
                .collect();
            for b in m["bounce_notices"].as_array().unwrap() {
                if s(&b["to"]) == a {
                    own.insert(s(&b["subject"]).to_owned());
                    own.insert(s(&b["message_id"]).to_owned());
                }
            }
            // Another mailbox's mail, less what is also this one's (the
            // same newsletter sender, the same subject).
            let others: BTreeSet<String> = envelopes
                .iter()
                .filter(|e| !involves(e, &a))
                .flat_map(private_words)
                .filter(|w| !own.contains(w))
                .collect();
            // Message-IDs are the envelopes' own: every other mailbox's is
            // among the words looked for.
            for e in envelopes.iter().filter(|e| !involves(e, &a)) {
                assert!(others.contains(s(&e["message_id"])), "{a}: {}", e["id"]);
            }
            let json = run(
                &config,
                &[
                    "received",
                    "--mailbox",
                    &a,
                    "--from",
                    &day,
                    "--to",
                    &day,
                    "--format",
                    "json",
                ],
            )
            .0;
            let mut texts = Vec::new();
            strings(&serde_json::from_str(&json).unwrap(), &mut texts);
            assert!(!texts.is_empty());
            let text = run(
                &config,
                &["received", "--mailbox", &a, "--from", &day, "--to", &day],
            )
            .0;
            let csv = run(
                &config,
                &[
                    "received",
                    "--mailbox",
                    &a,
                    "--from",
                    &day,
                    "--to",
                    &day,
                    "--format",
                    "csv",
                ],
            )
            .0;
            for w in &others {
                for t in &texts {
                    assert!(
                        !t.contains(w.as_str()),
                        "{name}: {a}'s JSON shows {w:?}: {t:?}"
                    );
                }
                for (format, out) in [("text", &text), ("CSV", &csv)] {
                    for shown in [w.as_str(), &visible(w)] {
                        assert!(
                            !out.contains(shown),
                            "{name}: {a}'s {format} shows {shown:?}:\n{out}"
                        );
                    }
                }
            }
        }
    }
}

/// What each local mailbox's `received` says, and `locate` of each
/// message of the manifest's list, as JSON: two databases that agree on
/// these hold the same received mail.
async fn answers(db: &TestDb, m: &Value) -> BTreeMap<String, Value> {
    let mut out = received_json(db, &local_mailboxes(m)).await;
    let tz = db.config.tz().unwrap();
    for l in m["locate"].as_array().unwrap() {
        let got = received::locate(
            &db.store,
            &mailbox(s(&l["mailbox"])),
            s(&l["message_id"]),
            tz,
        )
        .await
        .unwrap();
        out.insert(
            format!("locate {} {}", s(&l["mailbox"]), s(&l["message_id"])),
            serde_json::from_str(&got.render(Format::Json)).unwrap(),
        );
    }
    out
}

/// Where two JSON values differ: one line per path, with both values.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (p, q) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{k}"), p, q, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} / {b}")),
        _ => {}
    }
}

/// Answers with the entries of each in one order: entries of the same
/// second are listed in no particular order (a classic stamp has whole
/// seconds), so two answers hold the same entries when they are the same
/// as sets.
fn entry_sets(answers: &BTreeMap<String, Value>) -> Value {
    let mut v = serde_json::to_value(answers).unwrap();
    for a in v.as_object_mut().unwrap().values_mut() {
        for key in ["messages", "received"] {
            if let Some(Value::Array(entries)) = a.get_mut(key) {
                entries.sort_by_key(|e| (e["time"].as_str().map(str::to_owned), e.to_string()));
            }
        }
    }
    v
}

/// Asserts that two sets of answers hold the same entries, naming what
/// differs.
fn assert_same(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, what: &str) {
    let mut out = Vec::new();
    differences("", &entry_sets(got), &entry_sets(want), &mut out);
    assert!(out.is_empty(), "{what}:\n{}", out.join("\n"));
}

#[tokio::test]
async fn reading_the_same_lines_again_stores_nothing_new() {
    let m = manifest();
    for name in LOGS {
        let db = ingested(name).await;
        let before = answers(&db, &m).await;
        // Again from its checkpoint: nothing to read.
        db.ingest(&[log(name)]).await.unwrap();
        assert_same(
            &answers(&db, &m).await,
            &before,
            &format!("{name} read twice"),
        );
        // A copy without its first line is another file to the ingest,
        // read from its start: every line again, each with its key.
        let text = std::fs::read(log(name)).unwrap();
        let from = text.iter().position(|&b| b == b'\n').unwrap() + 1;
        let copy = db.dir.path().join(format!("again-{name}"));
        std::fs::write(&copy, &text[from..]).unwrap();
        Capture::Received.date(&copy);
        let r = db.ingest(&[copy]).await.unwrap();
        assert!(r.stats.lines_read > 0, "{name}: the copy was not read");
        assert_eq!(r.rows_new, 0, "{name}: the copy's lines stored rows again");
        assert_same(
            &answers(&db, &m).await,
            &before,
            &format!("{name} read again as a copy"),
        );
    }
}

#[tokio::test]
async fn classic_then_rfc3339_is_the_same_as_one_of_them() {
    let m = manifest();
    let classic = ingested("mail.log").await;
    let want = answers(&classic, &m).await;
    let rfc = ingested("mail-rfc3339.log").await;
    assert_same(
        &answers(&rfc, &m).await,
        &want,
        "the RFC 3339 log alone / the classic one",
    );
    let r = classic.ingest(&[log("mail-rfc3339.log")]).await.unwrap();
    assert!(r.stats.lines_read > 0);
    assert_eq!(
        r.rows_new, 0,
        "the same lines with other stamps stored rows again"
    );
    assert_same(
        &answers(&classic, &m).await,
        &want,
        "the classic log, then the RFC 3339 one / the classic one",
    );
}

/// syslog may write lines of the same second in another order than the
/// programs logged them: with neighbouring lines of one second swapped
/// (pairs from the first line of a second on, or from its second line on),
/// the answers are the same, and still the manifest's.
#[tokio::test]
async fn lines_of_one_second_in_another_order() {
    let m = manifest();
    // `Dec  7 21:31:47`, `2026-12-07T21:31:47`: up to the second.
    for (name, second) in [("mail.log", 15), ("mail-rfc3339.log", 19)] {
        let want = answers(&ingested(name).await, &m).await;
        let original = std::fs::read(log(name)).unwrap();
        for phase in [0, 1] {
            let mut lines: Vec<&[u8]> = original.split_inclusive(|&b| b == b'\n').collect();
            let mut swapped = 0;
            let mut i = 0;
            while i + 1 < lines.len() {
                let same = lines[i][..second] == lines[i + 1][..second];
                let first_of_second = i == 0 || lines[i - 1][..second] != lines[i][..second];
                if same && (phase == 0 || !first_of_second) {
                    lines.swap(i, i + 1);
                    swapped += 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            assert!(swapped > 100, "{name}: {swapped}");
            let db = TestDb::new().await;
            let path = db.dir.path().join(name);
            std::fs::write(&path, lines.concat()).unwrap();
            Capture::Received.date(&path);
            db.ingest(&[path]).await.unwrap();
            let what = format!("{name}, lines reordered (phase {phase}) / in order");
            assert_same(&answers(&db, &m).await, &want, &what);
            let problems = compare(&received_json(&db, &local_mailboxes(&m)).await, &m);
            assert!(problems.is_empty(), "{what}: {}", problems.join("\n"));
        }
    }
}

/// Parses CSV as RFC 4180 has it (quoted cells, doubled quotes).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                (true, '"') => quoted = false,
                (false, '"') if cell.is_empty() => quoted = true,
                (false, ',') => cells.push(std::mem::take(&mut cell)),
                (_, c) => cell.push(c),
            }
        }
        assert!(!quoted, "an unclosed quote in {line:?}");
        cells.push(cell);
        rows.push(cells);
    }
    rows
}

#[tokio::test]
async fn text_and_csv_are_inert() {
    let m = manifest();
    let r1 = &m["envelopes"][0];
    assert_eq!(r1["id"], "r1");
    let r4 = m["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "r4")
        .unwrap();
    let (subject1, subject4) = (s(&r1["subject"]), s(&r4["subject"]));
    // The capture's lines with r1's subject, and the folder it was copied
    // into, made to start as a spreadsheet formula would: what a sender
    // (the subject) or a mail client (the folder) can choose.
    let hostile_subject = format!("=HYPERLINK(\"http://x.test\") {subject1}");
    let original = std::fs::read_to_string(log("mail.log")).unwrap();
    let edited = original
        .replace(subject1, &hostile_subject)
        .replace("Archive", "@Archive");
    assert!(edited.contains("box=@Archive") && edited.contains("=HYPERLINK"));
    let db = TestDb::new().await;
    let path = db.dir.path().join("mail.log");
    std::fs::write(&path, edited).unwrap();
    Capture::Received.date(&path);
    db.ingest(&[path]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let alice = mailbox("alice@example.edu");
    let got = received::load(&db.store, &alice, days(), tz).await.unwrap();

    let text = got.render(Format::Text);
    let shown4 = subject4.replace('\u{202e}', "<U+202E>");
    assert!(text.contains(&shown4), "{text}");
    let csv = got.render(Format::Csv);
    for out in [&text, &csv] {
        assert!(
            !out.chars()
                .any(|c| c == '\u{202e}' || (c.is_control() && c != '\n' && c != '\r')),
            "{out}"
        );
    }
    // Two sections, as every history's CSV: the days, then the messages.
    let (days_csv, messages_csv) = csv.split_once("\r\n\r\n").expect("two CSV sections");
    assert!(days_csv.starts_with("Date,Received,"), "{csv}");
    let rows = csv_rows(messages_csv);
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (subject_col, id_col) = (col("Subject"), col("Message-ID"));
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{row:?}");
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {cell:?}"
            );
        }
    }
    let subject_of = |id: &Value| {
        rows.iter()
            .find(|r| norm_id(&r[id_col]) == norm_id(s(id)))
            .map(|r| r[subject_col].clone())
    };
    assert_eq!(
        subject_of(&r1["message_id"]),
        Some(format!("'{hostile_subject}"))
    );
    assert_eq!(subject_of(&r4["message_id"]), Some(shown4.clone()));

    // `locate` of r1: copied into the folder now named `@Archive-2026`.
    let l = received::locate(&db.store, &alice, s(&r1["message_id"]), tz)
        .await
        .unwrap();
    assert!(
        l.folders_now.iter().any(|f| f == "@Archive-2026"),
        "{:?}",
        l.folders_now
    );
    let text = l.render(Format::Text);
    assert!(text.contains("@Archive-2026"), "{text}");
    let csv = l.render(Format::Csv);
    let rows = csv_rows(&csv);
    assert!(rows.len() > 2, "{csv}");
    for row in &rows {
        assert_eq!(row.len(), rows[0].len(), "{row:?}");
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {cell:?}"
            );
        }
    }
    assert!(
        rows.iter()
            .flatten()
            .any(|c| c == "'@Archive-2026" || c == "'@Archive"),
        "{csv}"
    );
    // r4's text output of `locate` shows the override as a code point.
    let l = received::locate(&db.store, &alice, s(&r4["message_id"]), tz)
        .await
        .unwrap();
    let text = l.render(Format::Text);
    assert!(!text.contains('\u{202e}'), "{text}");
}

/// A day whose rows a report does not read (beyond the entries it can
/// list) is counted from its rows by kind: those counts are the ones the
/// joined entries give, for every mailbox of the capture.
#[tokio::test]
async fn days_counted_unread_agree_with_days_joined() {
    let m = manifest();
    let db = ingested("mail-rfc3339.log").await;
    let tz = db.config.tz().unwrap();
    for address in local_mailboxes(&m) {
        let mb = mailbox(&address);
        let joined = received::load(&db.store, &mb, days(), tz).await.unwrap();
        // The same day with no entry listed: counted, not joined.
        let day = Capture::Received.day();
        let one = DateRange::new(day, day).unwrap();
        let counted = received::load_limited(&db.store, &mb, one, tz, 0)
            .await
            .unwrap();
        let want = joined
            .days
            .iter()
            .find(|d| d.date == day.to_string())
            .unwrap();
        // With no room for entries the newest day is still read whole
        // (nothing older is left to count), so compare the counts of
        // the rows by kind instead.
        assert_eq!(&counted.days[0], want, "{address}");
        let rows = db
            .store
            .message_rows_newest(mb.as_str(), day.key(), day.key(), usize::MAX)
            .await
            .unwrap()
            .0;
        let mut kinds: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &rows {
            *kinds.entry(i32::from(r.kind)).or_default() += 1;
        }
        let kinds: Vec<(i32, i64)> = kinds.into_iter().collect();
        let c = received::counts_of(&kinds);
        assert_eq!(
            (c.received, c.delivered, c.refused, c.held, c.forwarded),
            (
                want.received,
                want.delivered,
                want.refused,
                want.held,
                want.forwarded
            ),
            "{address}: counted by kind {kinds:?}"
        );
    }
}
