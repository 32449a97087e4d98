//! A mailbox's SMTP sending history: the daily table and the details, as
//! text, JSON or CSV.
//!
//! Everything in the details came from a log line, which an attacker can
//! shape (a remote server's reply, an address): text and CSV output show
//! control characters and bidirectional controls as their code points
//! ([`crate::visible`]), so nothing reaches the terminal as an escape
//! sequence or reorders what is read, and CSV output neutralises cells a
//! spreadsheet would run as a formula.

use std::fmt::Write as _;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::Lang;
use crate::domain::{DateRange, Day, Mailbox};
use crate::ingest::correlate::Kind;
use crate::replies::{Classifier, Explainer};
use crate::store::{EventRow, Store};
use crate::visible::visible;

/// One line of the daily table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sum: i64,
    pub auth_blk: i64,
    pub auth_rcv: i64,
    pub bounced: i64,
    pub deferred: i64,
    pub expired: i64,
    pub sent: i64,
}

impl Counts {
    fn add(&mut self, kind: Kind, n: i64) {
        match kind {
            // A content filter's refusal is a refusal like the others.
            Kind::AuthBlk | Kind::Blocked => self.auth_blk += n,
            Kind::AuthRcv => self.auth_rcv += n,
            Kind::Bounced => self.bounced += n,
            Kind::Deferred => self.deferred += n,
            Kind::Expired => self.expired += n,
            Kind::Sent => self.sent += n,
        }
        self.sum += n;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DayRow {
    pub date: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct TotalRow {
    /// Always null: the total covers the whole range. Present so the total
    /// has the same keys as a day.
    pub date: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Detail {
    pub time: String,
    /// The site's own server that logged the row (the log line's host).
    pub host: String,
    pub sender_ip: Option<String>,
    pub relay: Option<String>,
    pub queue_id: Option<String>,
    pub recipient: Option<String>,
    pub status: &'static str,
    pub response: Option<String>,
    /// Postfix's `dsn=`: the enhanced status code when the reply has none
    /// of its own (a connection refused). Used to explain the row; not
    /// shown.
    #[serde(skip)]
    pub dsn: Option<String>,
    /// What the reply means ([`crate::replies`]): the category's key,
    /// name, sentence and advice in the language asked for; null for
    /// deliveries that did not fail, and until [`History::explain`].
    pub category: Option<&'static str>,
    pub category_label: Option<Arc<str>>,
    pub explanation: Option<Arc<str>>,
    pub advice: Option<Arc<str>>,
}

/// The whole answer, in the shape of the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub mailbox: String,
    pub from: String,
    pub to: String,
    pub days: Vec<DayRow>,
    pub total: TotalRow,
    pub details: Vec<Detail>,
}

/// Output formats of `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// Pretty JSON with a final newline.
pub fn to_json<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("plain data serialises");
    s.push('\n');
    s
}

/// An instant as RFC 3339 in the configured zone.
pub fn format_time(time_us: i64, tz: Tz) -> String {
    DateTime::from_timestamp_micros(time_us)
        .map(|t| {
            t.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        })
        .unwrap_or_default()
}

/// Reads a mailbox's history for a range of days.
pub async fn load(
    store: &Store,
    mailbox: &Mailbox,
    range: DateRange,
    tz: Tz,
) -> anyhow::Result<History> {
    load_limited(store, mailbox, range, tz, None).await
}

/// Like [`load`], with at most `limit` detail rows (the first by time);
/// the daily table and the total always count every row.
pub async fn load_limited(
    store: &Store,
    mailbox: &Mailbox,
    range: DateRange,
    tz: Tz,
    limit: Option<usize>,
) -> anyhow::Result<History> {
    let (from, to) = (range.from.key(), range.to.key());
    let counts = store.daily_counts(mailbox.as_str(), from, to).await?;
    let mut days: Vec<DayRow> = range
        .days()
        .map(|d| DayRow {
            date: d.to_string(),
            counts: Counts::default(),
        })
        .collect();
    let mut total = Counts::default();
    for (day, kind, n) in counts {
        if let Some(d) = Day::from_key(day)
            && let Some(row) = days.iter_mut().find(|r| r.date == d.to_string())
        {
            row.counts.add(kind, n);
        }
        total.add(kind, n);
    }
    let details = store
        .events(mailbox.as_str(), from, to, limit)
        .await?
        .into_iter()
        .map(|e: EventRow| Detail {
            time: format_time(e.time_us, tz),
            host: e.host,
            sender_ip: e.sender_ip,
            relay: e.relay,
            queue_id: e.queue_id,
            recipient: e.recipient,
            status: e.kind.as_str(),
            response: e.response,
            dsn: e.dsn,
            category: None,
            category_label: None,
            explanation: None,
            advice: None,
        })
        .collect();
    Ok(History {
        mailbox: mailbox.to_string(),
        from: range.from.to_string(),
        to: range.to.to_string(),
        days,
        total: TotalRow {
            date: None,
            counts: total,
        },
        details,
    })
}

const COLUMNS: [&str; 8] = [
    "Date", "Sum", "Auth_blk", "Auth_rcv", "Bounced", "Deferred", "Expired", "Sent",
];

fn count_cells(c: &Counts) -> [i64; 7] {
    [
        c.sum, c.auth_blk, c.auth_rcv, c.bounced, c.deferred, c.expired, c.sent,
    ]
}

impl History {
    pub fn is_empty(&self) -> bool {
        self.total.counts.sum == 0 && self.details.is_empty()
    }

    /// Gives every bounce, deferral, expiry and refusal its category and
    /// words in `lang`. Each distinct reply is classified once.
    pub fn explain(&mut self, classifier: &Classifier, lang: Lang) {
        let mut ex = Explainer::new(classifier, lang);
        let mut words: std::collections::HashMap<&'static str, [Arc<str>; 3]> =
            std::collections::HashMap::new();
        for d in &mut self.details {
            let Some(e) = ex.explain(
                d.status,
                d.relay.as_deref(),
                d.dsn.as_deref(),
                d.response.as_deref().unwrap_or(""),
            ) else {
                continue;
            };
            let [label, says, advice] = words
                .entry(e.category)
                .or_insert_with(|| {
                    [
                        Arc::from(e.category_label.as_str()),
                        Arc::from(e.explanation.as_str()),
                        Arc::from(e.advice.as_str()),
                    ]
                })
                .clone();
            d.category = Some(e.category);
            d.category_label = Some(label);
            d.explanation = Some(says);
            d.advice = Some(advice);
        }
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
            "SMTP sending history of {} from {} to {}\n",
            self.mailbox, self.from, self.to
        );
        let _ = writeln!(
            o,
            "{:<10} {:>7} {:>9} {:>9} {:>8} {:>9} {:>8} {:>7}",
            COLUMNS[0],
            COLUMNS[1],
            COLUMNS[2],
            COLUMNS[3],
            COLUMNS[4],
            COLUMNS[5],
            COLUMNS[6],
            COLUMNS[7]
        );
        let line = |o: &mut String, label: &str, c: &Counts| {
            let v = count_cells(c);
            let _ = writeln!(
                o,
                "{:<10} {:>7} {:>9} {:>9} {:>8} {:>9} {:>8} {:>7}",
                label, v[0], v[1], v[2], v[3], v[4], v[5], v[6]
            );
        };
        for d in &self.days {
            line(&mut o, &d.date, &d.counts);
        }
        line(&mut o, "Total", &self.total.counts);
        if self.is_empty() {
            let _ = writeln!(
                o,
                "\nNo records for {} from {} to {}.",
                self.mailbox, self.from, self.to
            );
            return o;
        }
        let _ = writeln!(o, "\nDetails ({}):", self.details.len());
        let _ = writeln!(
            o,
            "{:<25} {:<16} {:<15} {:<9} {:<16} {:<30} {:<36} Response",
            "Time", "Host", "Sender IP", "Status", "Queue ID", "Recipient", "Relay"
        );
        for d in &self.details {
            let _ = writeln!(
                o,
                "{:<25} {:<16} {:<15} {:<9} {:<16} {:<30} {:<36} {}",
                d.time,
                visible(&d.host),
                visible(d.sender_ip.as_deref().unwrap_or("-")),
                d.status,
                visible(d.queue_id.as_deref().unwrap_or("-")),
                visible(d.recipient.as_deref().unwrap_or("-")),
                visible(d.relay.as_deref().unwrap_or("-")),
                visible(d.response.as_deref().unwrap_or("")),
            );
            if let (Some(label), Some(says), Some(advice)) =
                (&d.category_label, &d.explanation, &d.advice)
            {
                let _ = writeln!(o, "{:<25} -> {label}: {says} {advice}", "");
            }
        }
        o
    }

    /// Two sections, each with its header row: the daily table (with the
    /// Total row), an empty line, then the details.
    fn to_csv(&self) -> String {
        let mut o = String::new();
        o.push_str(&COLUMNS.join(","));
        o.push_str("\r\n");
        let line = |o: &mut String, label: &str, c: &Counts| {
            o.push_str(label);
            for v in count_cells(c) {
                let _ = write!(o, ",{v}");
            }
            o.push_str("\r\n");
        };
        for d in &self.days {
            line(&mut o, &d.date, &d.counts);
        }
        line(&mut o, "Total", &self.total.counts);
        o.push_str("\r\n");
        o.push_str("Time,Host,Sender IP,Relay,Queue ID,Recipient,Status,Response,Category,Category label,Explanation,Advice\r\n");
        for d in &self.details {
            let cells = [
                d.time.as_str(),
                d.host.as_str(),
                d.sender_ip.as_deref().unwrap_or(""),
                d.relay.as_deref().unwrap_or(""),
                d.queue_id.as_deref().unwrap_or(""),
                d.recipient.as_deref().unwrap_or(""),
                d.status,
                d.response.as_deref().unwrap_or(""),
                d.category.unwrap_or(""),
                d.category_label.as_deref().unwrap_or(""),
                d.explanation.as_deref().unwrap_or(""),
                d.advice.as_deref().unwrap_or(""),
            ];
            let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            o.push_str(&row.join(","));
            o.push_str("\r\n");
        }
        o
    }
}

/// One CSV cell: control characters and bidirectional controls shown as
/// their code points ([`visible`]), quoted when needed, and with a leading
/// `'` when a spreadsheet would take it for a formula.
pub fn csv_cell(s: &str) -> String {
    let s = visible(s);
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.into_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_safe() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
    }

    #[test]
    fn csv_cells_show_control_characters() {
        assert_eq!(csv_cell("a\0b\x1bc"), "a<U+0000>b<U+001B>c");
        assert_eq!(csv_cell("x@\u{202E}moc.live"), "x@<U+202E>moc.live");
        // A tab or CR first is shown, so it no longer hides a formula.
        assert_eq!(csv_cell("\t=1+1"), "<U+0009>=1+1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a\r\nb"), "a<U+000D><U+000A>b");
    }

    #[test]
    fn times_use_the_configured_zone() {
        assert_eq!(
            format_time(1_795_398_077_000_000, chrono_tz::Asia::Taipei),
            "2026-11-23T09:41:17+08:00"
        );
    }
}
