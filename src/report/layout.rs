//! The shape a report shows its rows in: one line per message with its
//! recipients' outcomes under it, and the daily table with runs of days
//! on which nothing happened said in one line.

use std::collections::HashMap;

use serde::Serialize;

use crate::access::DaySummary;
use crate::history::{DayRow, Detail};

/// One message: its submission (the SMTP login that handed it to the
/// site's server), when there is one, and what became of it.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    /// 1, 2, ...: the number a mailbox owner quotes to the helpdesk.
    pub n: usize,
    /// The time of its first row.
    pub time: &'a str,
    /// The site's own server that logged it.
    pub host: &'a str,
    pub sender_ip: Option<&'a str>,
    pub queue_id: Option<&'a str>,
    /// The message's own line: `accepted` (the server took it after an
    /// SMTP login), `refused` (refused before or after it was accepted),
    /// or `relayed` (no login row: the site's server sent it on).
    pub status: &'static str,
    /// Refused after the server had accepted it (a size limit, a content
    /// filter): a refusal, though an acceptance came first.
    pub refused_after_accept: bool,
    /// The submission row, when the message has one. Its facts are the
    /// message's own (time, host, sender IP), so templates do not read it.
    #[serde(skip)]
    pub submission: Option<&'a Detail>,
    /// The rows of its recipients (and its refusal), in time order.
    pub outcomes: Vec<&'a Detail>,
}

fn is_refusal(status: &str) -> bool {
    matches!(status, "auth_blk" | "blocked")
}

/// The details grouped by message (by queue ID; a row without one is a
/// message of its own), numbered in the order they began.
pub fn messages(details: &[Detail]) -> Vec<Message<'_>> {
    let mut out: Vec<Message<'_>> = Vec::new();
    let mut by_queue: HashMap<&str, usize> = HashMap::new();
    for d in details {
        let found = d.queue_id.as_deref().and_then(|q| by_queue.get(q).copied());
        let i = match found {
            Some(i) => i,
            None => {
                out.push(Message {
                    n: out.len() + 1,
                    time: &d.time,
                    host: &d.host,
                    sender_ip: d.sender_ip.as_deref(),
                    queue_id: d.queue_id.as_deref(),
                    status: "relayed",
                    refused_after_accept: false,
                    submission: None,
                    outcomes: Vec::new(),
                });
                if let Some(q) = d.queue_id.as_deref() {
                    by_queue.insert(q, out.len() - 1);
                }
                out.len() - 1
            }
        };
        let m = &mut out[i];
        if d.status == "auth_rcv" && m.submission.is_none() {
            m.submission = Some(d);
            m.sender_ip = m.sender_ip.or(d.sender_ip.as_deref());
        } else {
            m.outcomes.push(d);
        }
    }
    for m in &mut out {
        let refused = m.outcomes.iter().any(|d| is_refusal(d.status));
        m.refused_after_accept = refused && m.submission.is_some();
        m.status = if refused {
            "refused"
        } else if m.submission.is_some() {
            "accepted"
        } else {
            "relayed"
        };
    }
    out
}

/// A line of a daily table: one day, or a run of days with nothing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayLine {
    /// The day's index in the table's days (a run: its first day's).
    pub index: usize,
    /// A run of days on which nothing happened, said in one line.
    pub quiet: bool,
    /// The line's first and last day (the same for a single day).
    pub from: String,
    pub to: String,
}

fn lines(dates: &[&str], empty: impl Fn(usize) -> bool) -> Vec<DayLine> {
    let mut out: Vec<DayLine> = Vec::new();
    for (i, date) in dates.iter().enumerate() {
        let quiet = empty(i);
        if quiet
            && let Some(last) = out.last_mut()
            && last.quiet
        {
            last.to = (*date).to_owned();
            continue;
        }
        out.push(DayLine {
            index: i,
            quiet,
            from: (*date).to_owned(),
            to: (*date).to_owned(),
        });
    }
    out
}

/// The SMTP daily table's lines: days with no row at all collapse.
pub fn smtp_days(days: &[DayRow]) -> Vec<DayLine> {
    let dates: Vec<&str> = days.iter().map(|d| d.date.as_str()).collect();
    lines(&dates, |i| days[i].counts.sum == 0)
}

/// The access summary's lines: days with no login, failure, deletion or
/// download collapse.
pub fn access_days(days: &[DaySummary]) -> Vec<DayLine> {
    let dates: Vec<&str> = days.iter().map(|d| d.date.as_str()).collect();
    lines(&dates, |i| {
        let d = &days[i];
        d.logins.values().all(|n| *n == 0)
            && d.failed_logins == 0
            && d.messages_deleted == 0
            && d.addresses.is_empty()
            && d.master_users.is_empty()
    })
}

/// The received mail's lines: days with no mail collapse.
pub fn received_days(days: &[crate::received::DayCounts]) -> Vec<DayLine> {
    let dates: Vec<&str> = days.iter().map(|d| d.date.as_str()).collect();
    lines(&dates, |i| days[i].received == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(time: &str, q: Option<&str>, status: &'static str, rcpt: Option<&str>) -> Detail {
        Detail {
            time: time.into(),
            host: "smtp1".into(),
            sender_ip: (status == "auth_rcv").then(|| "140.114.1.2".into()),
            relay: None,
            queue_id: q.map(Into::into),
            recipient: rcpt.map(Into::into),
            status,
            response: None,
            dsn: None,
            category: None,
            category_label: None,
            explanation: None,
            advice: None,
        }
    }

    #[test]
    fn a_submission_is_its_message_line() {
        let rows = [
            d("t1", Some("A"), "auth_rcv", None),
            d("t2", None, "auth_blk", None),
            d("t3", Some("A"), "sent", Some("x@a")),
            d("t4", Some("A"), "bounced", Some("y@b")),
            d("t5", Some("B"), "sent", Some("z@c")),
        ];
        let m = messages(&rows);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].n, m[0].status, m[0].outcomes.len()),
            (1, "accepted", 2)
        );
        assert_eq!(m[0].sender_ip, Some("140.114.1.2"));
        assert_eq!((m[1].n, m[1].status), (2, "refused"));
        assert!(!m[1].refused_after_accept);
        assert_eq!((m[2].n, m[2].status), (3, "relayed"));
    }

    #[test]
    fn a_refusal_after_acceptance_is_a_refusal() {
        let rows = [
            d("t1", Some("A"), "auth_rcv", None),
            d("t2", Some("A"), "auth_blk", None),
        ];
        let m = messages(&rows);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].status, "refused");
        assert!(m[0].refused_after_accept);
    }

    #[test]
    fn quiet_days_collapse_into_runs() {
        let dates = ["d1", "d2", "d3", "d4", "d5"];
        let busy = [false, false, true, false, false];
        let l = lines(&dates, |i| !busy[i]);
        assert_eq!(l.len(), 3);
        assert_eq!(
            (l[0].quiet, l[0].from.as_str(), l[0].to.as_str()),
            (true, "d1", "d2")
        );
        assert_eq!((l[1].quiet, l[1].index), (false, 2));
        assert_eq!(
            (l[2].quiet, l[2].from.as_str(), l[2].to.as_str()),
            (true, "d4", "d5")
        );
    }
}
