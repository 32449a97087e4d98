//! A mailbox's access history: who logged in, from where, and what was
//! deleted, with a per-day summary, as text, JSON or CSV.
//!
//! The summary answers the questions users come with: "my mail
//! disappears" (when more than one address deleted mail by POP3 on one
//! day, it says so in plain words) and "who else reads it" (a login by a
//! master user, such as an administrator's account, is named on its event
//! and in the day's summary).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::{DateRange, Day, Mailbox};
use crate::history::{Format, csv_cell, format_time, to_json};
use crate::ingest::access::{AccessKind, AccessRow};
use crate::ingest::dovecot::Proto;
use crate::store::Store;
use crate::visible::visible;

/// One event, with exactly the keys of the JSON output.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub time: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub protocol: Option<&'static str>,
    pub remote_ip: Option<String>,
    pub session: Option<String>,
    pub client: Option<String>,
    pub deleted: Option<i64>,
    pub retained: Option<i64>,
    pub size_bytes: Option<i64>,
    pub in_bytes: Option<i64>,
    pub out_bytes: Option<i64>,
    pub expunged: Option<i64>,
    pub trashed: Option<i64>,
    pub message_id: Option<String>,
    pub folder: Option<String>,
    pub reason: Option<String>,
    /// Login: the master user (an administrator's account, say) that
    /// opened the mailbox, when it was not the mailbox's own user.
    pub master_user: Option<String>,
}

/// What an event's `reason` was built from, for renderings that word it
/// in another language. Not part of the JSON output.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EventFacts {
    /// Login: the authentication method (`PLAIN`, ...).
    pub method: Option<String>,
    /// Login: whether the connection was encrypted.
    pub tls: Option<bool>,
    /// Login: the server address the client reached.
    pub local_ip: Option<String>,
    /// Failed login: attempts in the session.
    pub attempts: Option<i64>,
    /// Failed login: the reason as classified (`password mismatch`, ...).
    pub failure: Option<String>,
    /// Logout: the reason Dovecot gave, as a key the report translates
    /// (`logged_out`, `connection_closed`, ...); `None` for one it does
    /// not know, shown as logged.
    pub reason_key: Option<&'static str>,
}

/// The translatable key of a session's end as Dovecot words it.
pub fn logout_reason_key(reason: &str) -> Option<&'static str> {
    let r = reason.strip_prefix("Disconnected: ").unwrap_or(reason);
    const KEYS: &[(&str, &str)] = &[
        ("Logged out", "logged_out"),
        ("Connection closed", "connection_closed"),
        ("Disconnected for inactivity", "inactivity"),
        ("Inactivity", "inactivity"),
        ("Disconnected in IDLE", "closed_in_idle"),
        ("Disconnected in APPEND", "closed_in_append"),
        ("Disconnected by server", "by_server"),
        ("Disconnected by client", "by_client"),
        ("Server shutting down", "server_shutdown"),
        ("Too many invalid", "too_many_invalid"),
        ("Internal error", "internal_error"),
    ];
    KEYS.iter()
        .find(|(prefix, _)| r.starts_with(prefix))
        .map(|(_, k)| *k)
}

/// One day of the summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DaySummary {
    pub date: String,
    /// Successful logins per protocol: `imap` and `pop3`, and
    /// `submission` and `managesieve` when the range has any of theirs
    /// (every day of a range has the same protocols).
    pub logins: BTreeMap<&'static str, i64>,
    /// Failed login attempts.
    pub failed_logins: i64,
    pub messages_deleted: i64,
    /// Remote addresses that downloaded or deleted mail that day.
    pub addresses: Vec<String>,
    /// Addresses that deleted mail by POP3 that day: more than one is the
    /// "my mail disappears" story.
    pub pop3_deleting_addresses: Vec<String>,
    /// The plain-words warning, when several addresses deleted mail by POP3.
    pub note: Option<String>,
    /// Master users that logged in to the mailbox that day.
    pub master_users: Vec<String>,
}

/// The whole answer, in the shape of the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct AccessHistory {
    pub mailbox: String,
    pub from: String,
    pub to: String,
    pub days: Vec<DaySummary>,
    pub events: Vec<Event>,
    /// One per event, in the same order.
    #[serde(skip)]
    pub facts: Vec<EventFacts>,
}

/// Reads a mailbox's access history for a range of days.
pub async fn load(
    store: &Store,
    mailbox: &Mailbox,
    range: DateRange,
    tz: Tz,
) -> anyhow::Result<AccessHistory> {
    let rows = store
        .access_events(mailbox.as_str(), range.from.key(), range.to.key())
        .await?;
    let protocols = protocols(&rows);
    let days = range
        .days()
        .map(|d| summarize(d, &rows, &protocols))
        .collect();
    let known: Vec<&AccessRow> = rows.iter().filter(|r| r.kind.is_some()).collect();
    let facts = known
        .iter()
        .map(|r| match r.kind {
            Some(AccessKind::Login) => EventFacts {
                method: r
                    .reason
                    .as_deref()
                    .and_then(|m| m.strip_prefix("method "))
                    .map(str::to_owned),
                tls: r.tls,
                local_ip: r.local_ip.as_deref().map(str::to_owned),
                ..EventFacts::default()
            },
            Some(AccessKind::AuthFailed) => EventFacts {
                attempts: r.attempts,
                failure: r.reason.as_deref().map(str::to_owned),
                ..EventFacts::default()
            },
            Some(AccessKind::Logout) => EventFacts {
                reason_key: r.reason.as_deref().and_then(logout_reason_key),
                ..EventFacts::default()
            },
            _ => EventFacts::default(),
        })
        .collect();
    let events = known
        .iter()
        .filter_map(|r| {
            Some(Event {
                time: format_time(r.time_us, tz),
                kind: r.kind?.as_str(),
                protocol: r.protocol,
                remote_ip: r.remote_ip.as_deref().map(str::to_owned),
                session: r.session.as_deref().map(str::to_owned),
                client: r.client.as_deref().map(str::to_owned),
                deleted: r.deleted,
                retained: r.retained,
                size_bytes: r.size_bytes,
                in_bytes: r.in_bytes,
                out_bytes: r.out_bytes,
                expunged: r.expunged,
                trashed: r.trashed,
                message_id: r.message_id.clone(),
                folder: r.folder.as_deref().map(str::to_owned),
                master_user: r.master_user.as_deref().map(str::to_owned),
                reason: match (r.kind, r.attempts) {
                    (Some(AccessKind::AuthFailed), Some(n)) => Some(format!(
                        "{} ({n} attempt{})",
                        r.reason.as_deref().unwrap_or("auth failed"),
                        if n == 1 { "" } else { "s" }
                    )),
                    // How the login was made: method, TLS, the server address.
                    (Some(AccessKind::Login), _) => Some(
                        [
                            r.reason.as_deref().map(str::to_owned),
                            r.tls.map(|t| if t { "TLS" } else { "no TLS" }.to_owned()),
                            r.local_ip.as_deref().map(|l| format!("to {l}")),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                    ),
                    _ => r.reason.as_deref().map(str::to_owned),
                },
            })
        })
        .collect();
    Ok(AccessHistory {
        mailbox: mailbox.to_string(),
        from: range.from.to_string(),
        to: range.to.to_string(),
        days,
        events,
        facts,
    })
}

/// The protocols the summary counts logins of, in the order it shows them:
/// IMAP and POP3 always, submission and ManageSieve when the rows have
/// any.
fn protocols(rows: &[AccessRow]) -> Vec<&'static str> {
    Proto::ALL
        .iter()
        .map(|p| p.as_str())
        .filter(|p| ["imap", "pop3"].contains(p) || rows.iter().any(|r| r.protocol == Some(*p)))
        .collect()
}

/// The summary of one day from the rows of the range.
fn summarize(day: Day, rows: &[AccessRow], protocols: &[&'static str]) -> DaySummary {
    let today: Vec<&AccessRow> = rows.iter().filter(|r| r.day == day.key()).collect();
    let mut logins: BTreeMap<&'static str, i64> = protocols.iter().map(|p| (*p, 0)).collect();
    let mut masters = BTreeSet::new();
    let mut failed = 0;
    let mut expunged_rows = 0;
    let mut logout_deleted = 0;
    let mut addresses = BTreeSet::new();
    let mut pop3_deleters = BTreeSet::new();
    for r in &today {
        let ip = r.remote_ip.as_deref().map(str::to_owned);
        match r.kind {
            Some(AccessKind::Login) => {
                *logins.entry(r.protocol.unwrap_or("?")).or_insert(0) += 1;
                if let Some(m) = &r.master_user {
                    masters.insert(m.to_string());
                }
            }
            Some(AccessKind::AuthFailed) => failed += r.attempts.unwrap_or(1),
            Some(AccessKind::MessageDeleted) => {
                expunged_rows += 1;
                if let Some(ip) = &ip {
                    addresses.insert(ip.clone());
                    if r.protocol == Some("pop3") {
                        pop3_deleters.insert(ip.clone());
                    }
                }
            }
            Some(AccessKind::Logout) => {
                let deleted = match r.protocol {
                    Some("pop3") => r.deleted.unwrap_or(0),
                    _ => r.expunged.unwrap_or(0),
                };
                logout_deleted += deleted;
                if let Some(ip) = &ip {
                    if deleted > 0 || r.downloaded.unwrap_or(0) > 0 {
                        addresses.insert(ip.clone());
                    }
                    if r.protocol == Some("pop3") && deleted > 0 {
                        pop3_deleters.insert(ip.clone());
                    }
                }
            }
            _ => {}
        }
    }
    // With mail_log each deletion has its own line; without it only the
    // logout counts tell. Take whichever saw more, never both.
    let messages_deleted = expunged_rows.max(logout_deleted);
    let note = (pop3_deleters.len() > 1).then(|| {
        format!(
            "On {day}, mail in this mailbox was downloaded and deleted by POP3 from {} different addresses ({}). \
             If you read your mail on one device only, another device, an old computer, or another person \
             is taking your mail: check the mail programs that have this mailbox set up, and change your password if you do not recognise an address.",
            pop3_deleters.len(),
            pop3_deleters.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    });
    DaySummary {
        date: day.to_string(),
        logins,
        failed_logins: failed,
        messages_deleted,
        addresses: addresses.into_iter().collect(),
        pop3_deleting_addresses: pop3_deleters.into_iter().collect(),
        note,
        master_users: masters.into_iter().collect(),
    }
}

/// A master user's name as shown: Dovecot 2.3 may log that one logged in
/// without naming it (stored as an empty name).
fn master_name(m: &str) -> &str {
    if m.is_empty() {
        "(its name is not in the log)"
    } else {
        m
    }
}

/// The plain-words note of a day when master users opened the mailbox.
fn master_note(d: &DaySummary) -> Option<String> {
    (!d.master_users.is_empty()).then(|| {
        format!(
            "On {}, this mailbox was opened by the administrator account {} \
             (a master user, which can open any mailbox without its password). \
             If you do not know why, ask the mail service's administrators.",
            d.date,
            d.master_users
                .iter()
                .map(|m| master_name(m))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The summary's column of a protocol's logins.
fn logins_column(protocol: &str) -> &'static str {
    match protocol {
        "imap" => "IMAP logins",
        "pop3" => "POP3 logins",
        "submission" => "Submission logins",
        "managesieve" => "ManageSieve logins",
        _ => "Other logins",
    }
}

/// A value for the text output: `-` when absent, control characters and
/// bidirectional controls shown as their code points, so log text cannot
/// drive the terminal or reorder the line.
pub(crate) fn safe(s: Option<&str>) -> String {
    visible(s.unwrap_or("-")).into_owned()
}

fn num(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

impl AccessHistory {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The protocols the summary has logins of, in their order.
    fn protocols(&self) -> Vec<&'static str> {
        Proto::ALL
            .iter()
            .map(|p| p.as_str())
            .filter(|p| self.days.first().is_some_and(|d| d.logins.contains_key(p)))
            .collect()
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.to_text(),
            Format::Json => to_json(self),
            Format::Csv => self.to_csv(),
        }
    }

    fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Mailbox access history of {} from {} to {}\n",
            self.mailbox, self.from, self.to
        );
        let protocols = self.protocols();
        let _ = write!(o, "{:<10}", "Date");
        for p in &protocols {
            let _ = write!(o, " {}", logins_column(p));
        }
        let _ = writeln!(
            o,
            " {:>13} {:>8}  Addresses that downloaded or deleted mail",
            "Failed logins", "Deleted"
        );
        for d in &self.days {
            let _ = write!(o, "{:<10}", d.date);
            for p in &protocols {
                let n = d.logins.get(p).copied().unwrap_or(0);
                let _ = write!(o, " {n:>w$}", w = logins_column(p).len());
            }
            let _ = writeln!(
                o,
                " {:>13} {:>8}  {}",
                d.failed_logins,
                d.messages_deleted,
                visible(&d.addresses.join(", "))
            );
        }
        for d in &self.days {
            if let Some(n) = &d.note {
                let _ = writeln!(o, "\nNote: {}", visible(n));
            }
            if let Some(n) = master_note(d) {
                let _ = writeln!(o, "\nNote: {}", visible(&n));
            }
        }
        if self.is_empty() {
            let _ = writeln!(
                o,
                "\nNo records for {} from {} to {}.",
                self.mailbox, self.from, self.to
            );
            return o;
        }
        let _ = writeln!(o, "\nEvents ({}):", self.events.len());
        for e in &self.events {
            let mut what = String::new();
            match e.kind {
                "logout" => {
                    for (k, v) in [
                        ("deleted", e.deleted),
                        ("retained", e.retained),
                        ("size", e.size_bytes),
                        ("in", e.in_bytes),
                        ("out", e.out_bytes),
                        ("expunged", e.expunged),
                        ("trashed", e.trashed),
                    ] {
                        if v.is_some() {
                            let _ = write!(what, "{k}={} ", num(v));
                        }
                    }
                    let _ = write!(what, "({})", safe(e.reason.as_deref()));
                }
                "message_deleted" | "message_marked_deleted" => {
                    let _ = write!(
                        what,
                        "{} in {}",
                        safe(e.message_id.as_deref()),
                        safe(e.folder.as_deref())
                    );
                }
                "mailbox_deleted" => what.push_str(&safe(e.folder.as_deref())),
                _ => what.push_str(&safe(e.reason.as_deref())),
            }
            if let Some(m) = &e.master_user {
                let _ = write!(
                    what,
                    " -- opened by the administrator account {}",
                    safe(Some(master_name(m)))
                );
            }
            let _ = writeln!(
                o,
                "{:<25} {:<22} {:<11} {:<15} {:<16} {:<14} {}",
                e.time,
                e.kind,
                e.protocol.unwrap_or("-"),
                safe(e.remote_ip.as_deref()),
                safe(e.client.as_deref()),
                safe(e.session.as_deref()),
                what
            );
        }
        o
    }

    /// Two sections, each with its header row: the daily summary, an empty
    /// line, the events.
    fn to_csv(&self) -> String {
        let protocols = self.protocols();
        let mut o = String::from("Date,");
        for p in &protocols {
            o.push_str(logins_column(p));
            o.push(',');
        }
        o.push_str("Failed logins,Messages deleted,Addresses,Note\r\n");
        for d in &self.days {
            let _ = write!(o, "{},", d.date);
            for p in &protocols {
                let _ = write!(o, "{},", d.logins.get(p).copied().unwrap_or(0));
            }
            let _ = write!(o, "{},{},", d.failed_logins, d.messages_deleted);
            o.push_str(&csv_cell(&d.addresses.join(" ")));
            o.push(',');
            let notes: Vec<String> = d.note.iter().cloned().chain(master_note(d)).collect();
            o.push_str(&csv_cell(&notes.join(" ")));
            o.push_str("\r\n");
        }
        o.push_str("\r\nTime,Type,Protocol,Remote IP,Session,Client,Deleted,Retained,Size bytes,In bytes,Out bytes,Expunged,Trashed,Message-ID,Folder,Reason,Master user\r\n");
        for e in &self.events {
            let n = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
            let cells = [
                e.time.clone(),
                e.kind.to_owned(),
                e.protocol.unwrap_or("").to_owned(),
                e.remote_ip.clone().unwrap_or_default(),
                e.session.clone().unwrap_or_default(),
                e.client.clone().unwrap_or_default(),
                n(e.deleted),
                n(e.retained),
                n(e.size_bytes),
                n(e.in_bytes),
                n(e.out_bytes),
                n(e.expunged),
                n(e.trashed),
                e.message_id.clone().unwrap_or_default(),
                e.folder.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.master_user.clone().unwrap_or_default(),
            ];
            let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            o.push_str(&row.join(","));
            o.push_str("\r\n");
        }
        o
    }
}
