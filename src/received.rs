//! Mail received by a mailbox, and where a message is now, as text, JSON
//! or CSV.
//!
//! The rows ([`crate::ingest::received`]) are facts as each program logged
//! them; here they are joined into one entry per message and recipient:
//! Postfix's delivery with Dovecot's outcome (by the LMTP session Dovecot
//! named in its reply, or by Message-ID), the spam filter's verdict (by
//! queue ID, or Message-ID), a Sieve redirect with its copy's delivery
//! (by Message-ID). [`locate`] follows one Message-ID through the
//! mailbox's `mail_log` events: saved, copied, moved, flagged, expunged,
//! downloaded and deleted by POP3, its folder deleted or renamed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use chrono_tz::Tz;
use serde::Serialize;

use crate::access::safe;
use crate::domain::{DateRange, Day, Mailbox};
use crate::history::{Format, csv_cell, format_time, to_json};
use crate::ingest::received::{MessageRow, MsgKind, msgid_key};
use crate::store::Store;
use crate::visible::visible;

/// Most entries a `received` answer lists (the newest are kept); the day
/// counts always count all.
pub const MAX_ENTRIES: usize = 20_000;

/// One message received for the mailbox, with exactly the keys of the JSON
/// output.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Received {
    /// When its fate was logged.
    pub time: String,
    /// `delivered`, `forwarded`, `auto_replied`, `discarded`, `refused`,
    /// `held`, `dropped`, `bounced`, `deferred`, `not_saved`.
    pub outcome: &'static str,
    /// The envelope sender; empty for the null sender (a bounce notice).
    pub sender: Option<String>,
    /// A non-delivery or delay notice (null sender).
    pub bounce_notice: bool,
    /// The sending server's name and address, `NAME[ADDR]`.
    pub server: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: Option<i64>,
    pub queue_id: Option<String>,
    /// The folder it was saved into.
    pub folder: Option<String>,
    /// What decided its fate beyond plain delivery: `sieve fileinto`,
    /// `sieve redirect`, `sieve vacation`, `sieve discard`, `virtual
    /// alias`, `header_checks`, the spam filter.
    pub rule: Option<String>,
    /// Forwarded to, or the vacation reply sent to.
    pub forwarded_to: Option<String>,
    /// The forward's delivery: `sent`, `bounced`, `deferred`.
    pub forward_status: Option<String>,
    pub forward_reply: Option<String>,
    /// A refusal's stage (`RCPT`, `END-OF-MESSAGE`...).
    pub stage: Option<String>,
    /// A refusal's or a hold's category (see [`category`]).
    pub reason: Option<&'static str>,
    /// The reason in plain words.
    pub explanation: Option<String>,
    /// The reply given, or the rule's text.
    pub reply: Option<String>,
    /// The spam filter's verdict: its action and score.
    pub spam_action: Option<String>,
    pub spam_score: Option<String>,
    /// Delivery attempts deferred before this outcome.
    pub deferrals: u32,
}

/// Received mail of one day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayCounts {
    pub date: String,
    /// Every message sent to the mailbox, whatever became of it.
    pub received: u64,
    /// Saved into a folder of the mailbox (auto-replies included).
    pub delivered: u64,
    pub refused: u64,
    /// Held or quarantined.
    pub held: u64,
    pub forwarded: u64,
}

/// The `received` answer, in the shape of the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedMail {
    pub mailbox: String,
    pub from: String,
    pub to: String,
    pub days: Vec<DayCounts>,
    pub messages: Vec<Received>,
    /// Entries left out beyond [`MAX_ENTRIES`] (the oldest).
    pub omitted: usize,
    /// The instants of `messages`, for renderings in another zone or
    /// language. Not part of the JSON output.
    #[serde(skip)]
    pub times_us: Vec<i64>,
}

/// The category of a refusal or hold, from its reply and the program's
/// action. Keys are stable (JSON, reports translate them).
pub fn category(action: &str, reply: &str) -> &'static str {
    let r = reply.to_ascii_lowercase();
    let has = |s: &str| r.contains(s);
    if action == "quarantine" {
        return "quarantined";
    }
    if action.ends_with("hold") {
        return "held_by_rule";
    }
    if action.ends_with("discard") {
        return "dropped_by_rule";
    }
    if action == "milter-reject" {
        return "spam";
    }
    if has("greylist") || has("graylist") || has("try again later") && has("4.2.0") {
        return "greylisted";
    }
    if has("client host rejected")
        || has("blocked using")
        || has("listed")
        || has("blocklist")
        || has("blacklist")
        || has("dnsbl")
        || action == "postscreen"
    {
        return "blocklisted_client";
    }
    if has("user unknown")
        || has("unknown user")
        || has("no such user")
        || has("mailbox unavailable")
        || has("recipient address rejected: undeliverable")
        || has("5.1.1")
    {
        return "unknown_user";
    }
    if has("spam") || has("gtube") || has("5.7.1 content") {
        return "spam";
    }
    if has("sender address rejected") {
        return "sender_rejected";
    }
    if has("helo command rejected") {
        return "helo_rejected";
    }
    if has("quota") || has("mailbox full") || has("over quota") || has("5.2.2") {
        return "mailbox_full";
    }
    if has("relay access denied") {
        return "relay_denied";
    }
    "policy"
}

/// The plain-words explanation of a category, in English.
pub fn explain(category: &str) -> &'static str {
    match category {
        "greylisted" => {
            "Temporarily refused by greylisting: a sending server that tries again a few minutes later is let through; most do, so the message usually arrives a little later."
        }
        "spam" => {
            "Refused as spam by the spam filter: the sender was told; the message never reached your mailbox."
        }
        "blocklisted_client" => {
            "Refused because the sending server is on a blocklist (of spam sources); the sender was told and may ask their mail provider to fix it."
        }
        "unknown_user" => {
            "Refused because this address does not exist on the mail service; the sender was told."
        }
        "sender_rejected" => {
            "Refused because of the sender's address (for example its domain does not exist)."
        }
        "helo_rejected" => {
            "Refused because the sending server introduced itself with an invalid name."
        }
        "mailbox_full" => "Not delivered because the mailbox is full: delete or archive some mail.",
        "relay_denied" => "Refused: the mail service does not pass mail on for this address.",
        "held_by_rule" => {
            "Held by a rule of the mail service for an administrator to look at; it is delivered only if they release it."
        }
        "dropped_by_rule" => "Dropped by a rule of the mail service.",
        "quarantined" => {
            "Put in quarantine by the spam or virus filter; ask the mail service's administrators if you expected it."
        }
        _ => "Refused by a policy of the mail service; the reply says which.",
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `?q?`) of UTF-8,
/// US-ASCII and ISO-8859-1; other charsets are left as they are. Postfix
/// logs a folded header's line break as `?` between words: those go too.
pub fn decode_subject(s: &str) -> String {
    if !s.contains("=?") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let between_words =
            last_was_word && before.chars().all(|c| c == ' ' || c == '\t' || c == '?');
        if !between_words {
            out.push_str(before);
        }
        let word = &rest[start + 2..];
        match decode_word(word) {
            Some((text, used)) => {
                out.push_str(&text);
                rest = &word[used..];
                // A folded line's break, which Postfix logs as `?`.
                if rest.starts_with("? ") || rest.starts_with("?\t") {
                    rest = &rest[1..];
                }
                last_was_word = true;
            }
            None => {
                if between_words {
                    out.push_str(before);
                }
                out.push_str("=?");
                rest = word;
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `CHARSET?E?TEXT?=` → (decoded, bytes used).
fn decode_word(w: &str) -> Option<(String, usize)> {
    let q1 = w.find('?')?;
    let charset = w[..q1].to_ascii_lowercase();
    let charset = charset.split('*').next().unwrap_or_default().to_owned();
    let enc = w.get(q1 + 1..q1 + 2)?.to_ascii_lowercase();
    if w.get(q1 + 2..q1 + 3)? != "?" {
        return None;
    }
    let body_start = q1 + 3;
    let end = body_start + w[body_start..].find("?=")?;
    let body = &w[body_start..end];
    let bytes = match enc.as_str() {
        "b" => base64_decode(body)?,
        "q" => q_decode(body)?,
        _ => return None,
    };
    let text = match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| b as char).collect(),
        _ => return None,
    };
    Some((text, end + 2))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn q_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// Whether a Dovecot row was written by delivery (LMTP, LDA) rather than
/// a mail client's session.
fn by_delivery(r: &MessageRow) -> bool {
    matches!(r.protocol.as_deref(), Some("lmtp" | "lda" | "deliver"))
}

fn kind(r: &MessageRow) -> Option<MsgKind> {
    r.kind()
}

/// Joins a mailbox's rows (in time order) into one entry per message and
/// recipient, each with its row's instant.
pub fn join(rows: &[MessageRow]) -> Vec<(i64, i32, Received)> {
    // Dovecot's delivery rows by LMTP session, and by Message-ID.
    let mut by_session: HashMap<&str, Vec<&MessageRow>> = HashMap::new();
    let mut by_msgid: HashMap<String, Vec<&MessageRow>> = HashMap::new();
    let mut spam_by_qid: HashMap<(&str, &str), &MessageRow> = HashMap::new();
    let mut spam_by_msgid: HashMap<String, &MessageRow> = HashMap::new();
    let mut redirect_results: HashMap<(String, String), &MessageRow> = HashMap::new();
    for r in rows {
        match kind(r) {
            Some(MsgKind::Spam) => {
                if let Some(q) = &r.queue_id {
                    spam_by_qid
                        .entry((r.host.as_str(), q.as_str()))
                        .or_insert(r);
                }
                if let Some(m) = &r.message_id {
                    spam_by_msgid.entry(m.to_ascii_lowercase()).or_insert(r);
                }
            }
            Some(MsgKind::RedirectResult) => {
                if let (Some(m), Some(to)) = (&r.message_id, &r.other) {
                    // The latest result wins (a deferral, then sent).
                    redirect_results.insert((m.to_ascii_lowercase(), to.to_ascii_lowercase()), r);
                }
            }
            Some(
                MsgKind::Stored
                | MsgKind::StoreFailed
                | MsgKind::Redirected
                | MsgKind::Vacation
                | MsgKind::Discarded
                | MsgKind::SieveOther
                | MsgKind::Saved,
            ) if by_delivery(r) => {
                if let Some(s) = &r.session {
                    by_session.entry(s.as_str()).or_default().push(r);
                }
                if let Some(m) = &r.message_id {
                    by_msgid.entry(m.to_ascii_lowercase()).or_default().push(r);
                }
            }
            _ => {}
        }
    }
    let mut used_spam: HashSet<*const MessageRow> = HashSet::new();
    // The verdict on the message of a forward or a hold, which the
    // filter scanned before the alias or the rule took it.
    let verdict_of = |r: &MessageRow| -> Option<&MessageRow> {
        let q = r.queue_id.as_ref()?;
        spam_by_qid
            .get(&(r.host.as_str(), q.as_str()))
            .copied()
            .or_else(|| {
                r.message_id
                    .as_ref()
                    .and_then(|m| spam_by_msgid.get(&m.to_ascii_lowercase()).copied())
            })
    };
    let mut deferrals: HashMap<(&str, &str), u32> = HashMap::new();
    let mut out: Vec<(i64, i32, Received)> = Vec::new();
    // A deferred delivery is one entry, replaced by its final outcome.
    let mut open_deferred: HashMap<(&str, &str), usize> = HashMap::new();
    for r in rows {
        let Some(k) = kind(r) else { continue };
        let mut e = Received {
            sender: r.sender.clone(),
            bounce_notice: r.sender.as_deref() == Some(""),
            server: r.client.clone(),
            message_id: r.message_id.clone(),
            subject: r.subject.as_deref().map(decode_subject),
            size: r.size,
            queue_id: r.queue_id.as_deref().map(str::to_owned),
            ..Received::default()
        };
        match k {
            MsgKind::Delivered | MsgKind::Bounced | MsgKind::Deferred => {
                e.outcome = match k {
                    MsgKind::Delivered => "delivered",
                    MsgKind::Bounced => "not_saved",
                    _ => "deferred",
                };
                e.reply = r.reply.clone();
                if k != MsgKind::Delivered {
                    e.reason = Some(category("", r.reply.as_deref().unwrap_or_default()));
                    e.explanation = e.reason.map(explain).map(str::to_owned);
                }
                if k == MsgKind::Delivered {
                    e.reply = None;
                    let joined: Vec<&MessageRow> = match &r.session {
                        Some(s) => by_session.get(s.as_str()).cloned().unwrap_or_default(),
                        None => r
                            .message_id
                            .as_ref()
                            .and_then(|m| by_msgid.get(&m.to_ascii_lowercase()))
                            .map(|v| {
                                v.iter()
                                    .filter(|d| (d.time_us - r.time_us).abs() <= 300_000_000)
                                    .copied()
                                    .collect()
                            })
                            .unwrap_or_default(),
                    };
                    // Postfix's own delivery agents say where: local(8)
                    // `delivered to mailbox` / `maildir` / `file: PATH`,
                    // virtual(8) `delivered to maildir`.
                    if let Some(to) = r
                        .reply
                        .as_deref()
                        .and_then(|x| x.strip_prefix("delivered to "))
                    {
                        e.folder = match to {
                            "mailbox" | "maildir" => Some("INBOX".to_owned()),
                            t => t.strip_prefix("file: ").map(str::to_owned),
                        };
                        if let Some(c) = to.strip_prefix("command: ") {
                            e.rule = Some(format!("command {c}"));
                        }
                    }
                    apply_delivery(&mut e, &joined, &redirect_results);
                }
                if let Some(q) = &r.queue_id {
                    let key = (r.host.as_str(), q.as_str());
                    let spam = spam_by_qid.get(&key).copied().or_else(|| {
                        r.message_id
                            .as_ref()
                            .and_then(|m| spam_by_msgid.get(&m.to_ascii_lowercase()).copied())
                    });
                    if let Some(s) = spam {
                        used_spam.insert(s as *const _);
                        e.spam_action = s.status.as_deref().map(str::to_owned);
                        e.spam_score = s.reply.clone();
                    }
                    if k == MsgKind::Deferred {
                        *deferrals.entry(key).or_insert(0) += 1;
                        if let Some(&i) = open_deferred.get(&key) {
                            e.deferrals = deferrals[&key];
                            out[i] = (r.time_us, r.day, e);
                            continue;
                        }
                        e.deferrals = deferrals[&key];
                        open_deferred.insert(key, out.len());
                        out.push((r.time_us, r.day, e));
                        continue;
                    }
                    e.deferrals = deferrals.get(&key).copied().unwrap_or(0);
                    if let Some(i) = open_deferred.remove(&key) {
                        out[i] = (r.time_us, r.day, e);
                        continue;
                    }
                }
            }
            MsgKind::Forwarded => {
                e.outcome = "forwarded";
                e.rule = Some("alias".into());
                e.forwarded_to = r.other.clone();
                e.forward_status = r.status.as_deref().map(str::to_owned);
                e.forward_reply = r.reply.clone();
                if let Some(s) = verdict_of(r) {
                    used_spam.insert(s as *const _);
                    e.spam_action = s.status.as_deref().map(str::to_owned);
                    e.spam_score = s.reply.clone();
                }
            }
            MsgKind::Refused => {
                e.outcome = "refused";
                e.stage = r.status.as_deref().map(str::to_owned);
                e.reply = r.reply.clone();
                let cat = category(
                    r.protocol.as_deref().unwrap_or_default(),
                    r.reply.as_deref().unwrap_or_default(),
                );
                e.reason = Some(cat);
                e.explanation = Some(explain(cat).to_owned());
                let spam = r
                    .queue_id
                    .as_ref()
                    .and_then(|q| spam_by_qid.get(&(r.host.as_str(), q.as_str())).copied());
                if let Some(s) = spam {
                    used_spam.insert(s as *const _);
                    e.spam_action = s.status.as_deref().map(str::to_owned);
                    e.spam_score = s.reply.clone();
                }
            }
            MsgKind::Held | MsgKind::Dropped => {
                e.outcome = if k == MsgKind::Held {
                    "held"
                } else {
                    "dropped"
                };
                let action = r
                    .status
                    .as_deref()
                    .unwrap_or(r.protocol.as_deref().unwrap_or_default());
                let cat = category(action, r.reply.as_deref().unwrap_or_default());
                e.reason = Some(cat);
                e.explanation = Some(explain(cat).to_owned());
                e.rule = Some(match action {
                    "quarantine" => r.protocol.as_deref().unwrap_or("spam filter").to_owned(),
                    _ => "header_checks".to_owned(),
                });
                if e.subject.is_none() {
                    e.subject = r
                        .other
                        .as_deref()
                        .and_then(|m| m.strip_prefix("header Subject: "))
                        .map(decode_subject);
                }
                e.reply = match (&r.other, &r.reply) {
                    (Some(m), Some(why)) if action != "quarantine" => Some(format!("{m}: {why}")),
                    (_, Some(why)) => Some(why.clone()),
                    (Some(m), None) => Some(m.clone()),
                    (None, None) => None,
                };
                if action == "quarantine" {
                    e.spam_action = r.reply.clone();
                    e.queue_id = r.queue_id.as_deref().map(str::to_owned);
                    // The filter's verdict line is this entry's: not an
                    // entry of its own below.
                    if let Some(s) = verdict_of(r) {
                        used_spam.insert(s as *const _);
                        e.spam_score = s.reply.clone();
                    }
                } else if let Some(s) = verdict_of(r) {
                    used_spam.insert(s as *const _);
                    e.spam_action = s.status.as_deref().map(str::to_owned);
                    e.spam_score = s.reply.clone();
                }
            }
            _ => continue,
        }
        out.push((r.time_us, r.day, e));
    }
    // A spam filter that blocked a message nobody else logged a fate for
    // (amavis discarding it): an entry of its own.
    for r in rows {
        if kind(r) == Some(MsgKind::Spam)
            && !used_spam.contains(&(r as *const _))
            && r.status
                .as_deref()
                .is_some_and(|a| a.starts_with("Blocked"))
        {
            out.push((
                r.time_us,
                r.day,
                Received {
                    outcome: "dropped",
                    sender: r.sender.clone(),
                    server: r.client.clone(),
                    message_id: r.message_id.clone(),
                    queue_id: r.queue_id.as_deref().map(str::to_owned),
                    rule: r.protocol.as_deref().map(str::to_owned),
                    reason: Some("spam"),
                    explanation: Some(explain("spam").to_owned()),
                    spam_action: r.status.as_deref().map(str::to_owned),
                    spam_score: r.reply.clone(),
                    ..Received::default()
                },
            ));
        }
    }
    out.sort_by_key(|(t, _, _)| *t);
    out
}

/// Dovecot's outcome of a delivery, from its rows of the same session.
fn apply_delivery(
    e: &mut Received,
    joined: &[&MessageRow],
    redirects: &HashMap<(String, String), &MessageRow>,
) {
    for d in joined {
        match kind(d) {
            Some(MsgKind::Saved) => {
                e.folder
                    .get_or_insert_with(|| d.folder.clone().unwrap_or_default());
                // Dovecot's subject is decoded; Postfix's may be encoded.
                if let Some(s) = &d.subject {
                    e.subject = Some(s.clone());
                }
            }
            Some(MsgKind::Stored) => {
                if let Some(f) = &d.folder {
                    e.folder = Some(f.clone());
                }
                if d.status.as_deref() == Some("fileinto") {
                    e.rule = Some("sieve fileinto".into());
                }
            }
            Some(MsgKind::StoreFailed) => {
                e.outcome = "not_saved";
                e.reply = d.reply.clone();
                let cat = category("", d.reply.as_deref().unwrap_or_default());
                e.reason = Some(cat);
                e.explanation = Some(explain(cat).to_owned());
            }
            _ => {}
        }
    }
    for d in joined {
        match kind(d) {
            Some(MsgKind::Redirected) => {
                e.outcome = "forwarded";
                e.rule = Some("sieve redirect".into());
                e.forwarded_to = d.other.clone();
                let result = d
                    .message_id
                    .as_ref()
                    .zip(d.other.as_ref())
                    .and_then(|(m, to)| {
                        redirects.get(&(m.to_ascii_lowercase(), to.to_ascii_lowercase()))
                    });
                if let Some(r) = result {
                    e.forward_status = r.status.as_deref().map(str::to_owned);
                    e.forward_reply = r.reply.clone();
                }
            }
            Some(MsgKind::Vacation) if e.outcome == "delivered" => {
                e.outcome = "auto_replied";
                e.rule = Some("sieve vacation".into());
                e.forwarded_to = d.other.clone();
            }
            Some(MsgKind::Discarded) => {
                e.outcome = "discarded";
                e.rule = Some("sieve discard".into());
                e.folder = None;
            }
            _ => {}
        }
    }
}

/// Counts per day of the entries.
fn day_counts(range: DateRange, entries: &[(i64, i32, Received)]) -> Vec<DayCounts> {
    let mut by_day: BTreeMap<i32, DayCounts> = range
        .days()
        .map(|d| {
            (
                d.key(),
                DayCounts {
                    date: d.to_string(),
                    received: 0,
                    delivered: 0,
                    refused: 0,
                    held: 0,
                    forwarded: 0,
                },
            )
        })
        .collect();
    for (_, day, e) in entries {
        let Some(c) = by_day.get_mut(day) else {
            continue;
        };
        c.received += 1;
        match e.outcome {
            "delivered" | "auto_replied" => c.delivered += 1,
            "refused" => c.refused += 1,
            "held" => c.held += 1,
            "forwarded" => c.forwarded += 1,
            _ => {}
        }
    }
    by_day.into_values().collect()
}

/// Reads a mailbox's received mail for a range of days: the newest days'
/// rows until they hold [`MAX_ENTRIES`] entries; older days are counted
/// from their stored rows without being read (see [`counts_of`]).
pub async fn load(
    store: &Store,
    mailbox: &Mailbox,
    range: DateRange,
    tz: Tz,
) -> anyhow::Result<ReceivedMail> {
    load_limited(store, mailbox, range, tz, MAX_ENTRIES).await
}

/// [`load`], listing at most `max_entries` entries.
pub async fn load_limited(
    store: &Store,
    mailbox: &Mailbox,
    range: DateRange,
    tz: Tz,
    max_entries: usize,
) -> anyhow::Result<ReceivedMail> {
    let (rows, counted) = store
        .message_rows_newest(
            mailbox.as_str(),
            range.from.key(),
            range.to.key(),
            max_entries.min(MAX_ENTRIES),
        )
        .await?;
    let mut r = build_limited(mailbox, range, tz, &rows, max_entries.min(MAX_ENTRIES));
    for (day, kinds) in counted {
        let c = counts_of(&kinds);
        r.omitted += c.received as usize;
        if let Some(d) = r
            .days
            .iter_mut()
            .find(|d| Day::parse(&d.date).is_ok_and(|x| x.key() == day))
        {
            *d = DayCounts {
                date: d.date.clone(),
                ..c
            };
        }
    }
    Ok(r)
}

/// A day's counts from its rows counted by kind, for a day whose rows were
/// not read: the entries a join would make, but for a delivery that Sieve
/// redirected or discarded (counted delivered here) and a quarantine
/// (counted held and, as amavis's verdict, not again).
pub fn counts_of(kinds: &[(i32, i64)]) -> DayCounts {
    let n = |k: MsgKind| {
        kinds
            .iter()
            .filter(|(x, _)| *x == k as i32)
            .map(|(_, c)| *c as u64)
            .sum::<u64>()
    };
    let delivered = n(MsgKind::Delivered);
    let forwarded = n(MsgKind::Forwarded) + n(MsgKind::Redirected);
    let refused = n(MsgKind::Refused);
    let held = n(MsgKind::Held);
    DayCounts {
        date: String::new(),
        received: delivered
            + n(MsgKind::Bounced)
            + n(MsgKind::Forwarded)
            + refused
            + held
            + n(MsgKind::Dropped),
        delivered: delivered.saturating_sub(n(MsgKind::Redirected) + n(MsgKind::Discarded)),
        refused,
        held,
        forwarded,
    }
}

/// The answer from a mailbox's rows.
pub fn build(mailbox: &Mailbox, range: DateRange, tz: Tz, rows: &[MessageRow]) -> ReceivedMail {
    build_limited(mailbox, range, tz, rows, MAX_ENTRIES)
}

fn build_limited(
    mailbox: &Mailbox,
    range: DateRange,
    tz: Tz,
    rows: &[MessageRow],
    max_entries: usize,
) -> ReceivedMail {
    let entries = join(rows);
    let days = day_counts(range, &entries);
    let omitted = entries.len().saturating_sub(max_entries);
    let kept = &entries[omitted..];
    let mut messages = Vec::with_capacity(kept.len());
    let mut times_us = Vec::with_capacity(kept.len());
    for (t, _, e) in kept {
        let mut e = e.clone();
        e.time = format_time(*t, tz);
        messages.push(e);
        times_us.push(*t);
    }
    ReceivedMail {
        mailbox: mailbox.to_string(),
        from: range.from.to_string(),
        to: range.to.to_string(),
        days,
        messages,
        omitted,
        times_us,
    }
}

/// What a mailbox knows of where one message is now.
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    pub mailbox: String,
    pub message_id: String,
    /// Whether the mailbox's rows name this Message-ID at all.
    pub found: bool,
    /// How it arrived: the received entries of this Message-ID.
    pub received: Vec<Received>,
    /// The folder delivery saved it into.
    pub saved_to: Option<String>,
    /// `still_in_folder`, `copied`, `moved`, `flagged_deleted`,
    /// `expunged`, `pop3_deleted`, `folder_deleted`, `discarded`,
    /// `forwarded`, `refused`, `held`, `not_delivered`, `unknown`.
    pub state: &'static str,
    /// The folders it is in now, as far as the logs tell.
    pub folders_now: Vec<String>,
    /// Everything that happened to it after it arrived, in order.
    pub steps: Vec<Step>,
    /// What the logs cannot tell, in plain words.
    pub note: Option<String>,
}

/// One thing that happened to the message in the mailbox.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    pub time: String,
    /// `saved`, `copy`, `move`, `flag`, `flag_deleted`, `undelete`,
    /// `expunge`, `pop3_deleted`, `delete_folder`, `rename_folder`.
    pub action: &'static str,
    pub folder: Option<String>,
    pub to_folder: Option<String>,
    /// `imap`, `pop3`, `lmtp`...
    pub protocol: Option<String>,
    pub session: Option<String>,
    /// The address the session logged in from, and its client (IMAP ID),
    /// from the mailbox's access history.
    pub client_ip: Option<String>,
    pub client: Option<String>,
    /// The flags after a change.
    pub flags: Option<String>,
}

/// Where the message `message_id` of `mailbox` is now.
pub async fn locate(
    store: &Store,
    mailbox: &Mailbox,
    message_id: &str,
    tz: Tz,
) -> anyhow::Result<Located> {
    let rows = store.message_trail(mailbox.as_str(), message_id).await?;
    let want = msgid_key(message_id);
    let rows: Vec<MessageRow> = rows
        .into_iter()
        .filter(|r| match &r.message_id {
            Some(m) => msgid_key(m) == want,
            None => true,
        })
        .collect();
    let sessions: Vec<String> = rows
        .iter()
        .filter(|r| !by_delivery(r))
        .filter_map(|r| r.session.as_deref().map(str::to_owned))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // The days of the sessions that touched the message: where their
    // logins are looked for.
    let mut session_days: Vec<i32> = rows
        .iter()
        .filter(|r| !by_delivery(r) && r.session.is_some())
        .map(|r| r.day)
        .collect();
    session_days.sort_unstable();
    session_days.dedup();
    let logins = store
        .session_logins(mailbox.as_str(), &sessions, &session_days)
        .await?;
    // Whether mail_log speaks of this message at all. (Whether the mailbox
    // logs mail_log events on other messages is not asked: for a mailbox
    // that gets tens of thousands of messages a day and logs none, that
    // meant reading a whole day of its rows.)
    let mail_log = rows.iter().any(|r| {
        matches!(
            kind(r),
            Some(
                MsgKind::Saved
                    | MsgKind::Copied
                    | MsgKind::Expunged
                    | MsgKind::FlaggedDeleted
                    | MsgKind::Undeleted
                    | MsgKind::FlagsChanged
            )
        )
    });
    Ok(follow(mailbox, message_id, &rows, &logins, mail_log, tz))
}

/// Where a row goes among the rows of the same instant: arrival first,
/// then copies, flag changes, expunges, and the folder renamed or deleted.
fn same_stamp_rank(r: &MessageRow) -> u8 {
    match kind(r) {
        Some(MsgKind::Copied) => 1,
        Some(MsgKind::FlagsChanged | MsgKind::FlaggedDeleted) => 2,
        Some(MsgKind::Undeleted) => 3,
        Some(MsgKind::Expunged) => 4,
        Some(MsgKind::FolderRenamed) => 5,
        Some(MsgKind::FolderDeleted) => 6,
        _ => 0,
    }
}

/// Follows the message through its rows (and its folders' events), in time
/// order.
pub fn follow(
    mailbox: &Mailbox,
    message_id: &str,
    rows: &[MessageRow],
    logins: &[(String, Option<String>, Option<String>)],
    mail_log_enabled: bool,
    tz: Tz,
) -> Located {
    // Rows of one stamp come by key, not in the order of their lines (a
    // classic syslog stamp has whole seconds): put them in the order
    // Dovecot logs one message's events in, so that a move's copy comes
    // before its expunge and a folder's last expunge before its deletion.
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (r.time_us, same_stamp_rank(r)));
    let rows = &rows[..];
    let own: Vec<&MessageRow> = rows.iter().filter(|r| r.message_id.is_some()).collect();
    let found = !own.is_empty();
    let received: Vec<Received> = join(rows)
        .into_iter()
        .map(|(t, _, mut e)| {
            e.time = format_time(t, tz);
            e
        })
        .collect();
    let login = |s: &Option<crate::ingest::correlate::Text>| {
        s.as_ref()
            .and_then(|s| logins.iter().find(|(id, _, _)| id == s.as_str()))
            .map(|(_, ip, c)| (ip.clone(), c.clone()))
            .unwrap_or_default()
    };
    // Where it is: (folder, uid, flagged \Deleted).
    let mut places: Vec<(String, Option<i64>, bool)> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut saved_to: Option<String> = None;
    let mut moved = false;
    let mut copied = false;
    let mut last_removal: Option<&'static str> = None;
    let sessions_with_save: HashSet<&str> = rows
        .iter()
        .filter(|r| kind(r) == Some(MsgKind::Saved) && by_delivery(r))
        .filter_map(|r| r.session.as_deref())
        .collect();
    let first_us = own.first().map_or(i64::MAX, |r| r.time_us);
    for (i, r) in rows.iter().enumerate() {
        let Some(k) = kind(r) else { continue };
        let is_folder_event = matches!(
            k,
            MsgKind::FolderDeleted | MsgKind::FolderRenamed | MsgKind::FolderCreated
        );
        if is_folder_event && r.time_us < first_us {
            continue;
        }
        let (client_ip, client) = login(&r.session);
        let mut step = Step {
            time: format_time(r.time_us, tz),
            action: "saved",
            folder: r.folder.clone(),
            to_folder: None,
            protocol: r.protocol.as_deref().map(str::to_owned),
            session: r.session.as_deref().map(str::to_owned),
            client_ip,
            client,
            flags: None,
        };
        match k {
            MsgKind::Saved | MsgKind::Stored => {
                if k == MsgKind::Stored
                    && r.session
                        .as_deref()
                        .is_some_and(|s| sessions_with_save.contains(s))
                {
                    continue;
                }
                let folder = r.folder.clone().unwrap_or_else(|| "INBOX".into());
                if by_delivery(r) && saved_to.is_none() {
                    saved_to = Some(folder.clone());
                }
                places.push((folder, r.uid, false));
            }
            MsgKind::Copied => {
                let to = r.folder.clone().unwrap_or_default();
                step.folder = r.other.clone();
                step.to_folder = Some(to.clone());
                // A move is a copy and the source's expunge in the same
                // session (IMAP MOVE, or a client's copy and delete).
                let source_expunged = r.other.as_ref().and_then(|src| {
                    rows[i + 1..].iter().position(|x| {
                        kind(x) == Some(MsgKind::Expunged)
                            && x.session == r.session
                            && x.folder.as_ref() == Some(src)
                            && x.time_us - r.time_us <= 10_000_000
                    })
                });
                if source_expunged.is_some() {
                    step.action = "move";
                    moved = true;
                } else {
                    step.action = "copy";
                    copied = true;
                }
                places.push((to, r.uid, false));
            }
            MsgKind::Expunged => {
                let folder = r.folder.clone().unwrap_or_default();
                let pos = places
                    .iter()
                    .position(|(f, u, _)| {
                        *f == folder && (r.uid.is_none() || u.is_none() || *u == r.uid)
                    })
                    .or_else(|| places.iter().position(|(f, _, _)| *f == folder));
                if let Some(p) = pos {
                    places.remove(p);
                }
                // The expunge half of a move is part of the move step.
                let part_of_move = rows[..i].iter().rev().any(|x| {
                    kind(x) == Some(MsgKind::Copied)
                        && x.session == r.session
                        && x.other.as_ref() == r.folder.as_ref()
                        && r.time_us - x.time_us <= 10_000_000
                });
                if part_of_move {
                    continue;
                }
                let folder_deleted_after = rows[i + 1..].iter().any(|x| {
                    kind(x) == Some(MsgKind::FolderDeleted)
                        && x.session == r.session
                        && x.folder.as_ref() == r.folder.as_ref()
                        && x.time_us - r.time_us <= 10_000_000
                });
                if r.protocol.as_deref() == Some("pop3") {
                    step.action = "pop3_deleted";
                    last_removal = Some("pop3_deleted");
                } else if folder_deleted_after {
                    // Reported as the folder's deletion below.
                    last_removal = Some("folder_deleted");
                    continue;
                } else {
                    step.action = "expunge";
                    last_removal = Some("expunged");
                }
            }
            MsgKind::FlaggedDeleted => {
                step.action = "flag_deleted";
                for p in places
                    .iter_mut()
                    .filter(|p| Some(&p.0) == r.folder.as_ref())
                {
                    p.2 = true;
                }
            }
            MsgKind::Undeleted => {
                step.action = "undelete";
                for p in places
                    .iter_mut()
                    .filter(|p| Some(&p.0) == r.folder.as_ref())
                {
                    p.2 = false;
                }
            }
            MsgKind::FlagsChanged => {
                step.action = "flag";
                step.flags = r.status.as_deref().map(str::to_owned);
            }
            MsgKind::FolderDeleted => {
                let folder = r.folder.clone().unwrap_or_default();
                let held = places.iter().any(|p| p.0 == folder);
                let expunged_here = last_removal == Some("folder_deleted")
                    && steps
                        .iter()
                        .all(|s| s.action != "delete_folder" || s.folder.as_ref() != Some(&folder));
                if !held && !expunged_here {
                    continue;
                }
                places.retain(|p| p.0 != folder);
                step.action = "delete_folder";
                last_removal = Some("folder_deleted");
            }
            MsgKind::FolderRenamed => {
                let (from, to) = (
                    r.folder.clone().unwrap_or_default(),
                    r.other.clone().unwrap_or_default(),
                );
                let sub = format!("{from}/");
                let mut touched = false;
                for p in places.iter_mut() {
                    if p.0 == from {
                        p.0 = to.clone();
                        touched = true;
                    } else if let Some(rest) = p.0.strip_prefix(&sub) {
                        p.0 = format!("{to}/{rest}");
                        touched = true;
                    }
                }
                if !touched {
                    continue;
                }
                step.action = "rename_folder";
                step.to_folder = Some(to);
            }
            _ => continue,
        }
        steps.push(step);
    }
    let fate = received.last().map(|e| e.outcome);
    let state: &'static str = if !places.is_empty() {
        if places.iter().all(|p| p.2) {
            "flagged_deleted"
        } else if moved {
            "moved"
        } else if copied && places.len() > 1 {
            "copied"
        } else {
            "still_in_folder"
        }
    } else if let Some(r) = last_removal {
        r
    } else {
        match fate {
            Some("discarded") => "discarded",
            Some("forwarded") => "forwarded",
            Some("refused") => "refused",
            Some("held") => "held",
            Some("not_saved" | "deferred" | "dropped") => "not_delivered",
            _ => "unknown",
        }
    };
    let mut folders_now: Vec<String> = places.iter().map(|p| p.0.clone()).collect();
    folders_now.dedup();
    let note = if !found {
        Some("No record in this mailbox names this Message-ID in the days kept.".to_owned())
    } else if !mail_log_enabled && matches!(state, "still_in_folder" | "unknown") {
        Some(
            "No Dovecot mail_log event names this message. Where the mail service does not \
             log them (the mail_log plugin with its save, copy, expunge and flag_change \
             events), the logs cannot tell whether it was moved or deleted after delivery."
                .to_owned(),
        )
    } else {
        None
    };
    Located {
        mailbox: mailbox.to_string(),
        message_id: message_id.to_owned(),
        found,
        received,
        saved_to,
        state,
        folders_now,
        steps,
        note,
    }
}

impl Located {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => to_json(self),
            Format::Text => self.to_text(),
            Format::Csv => self.to_csv(),
        }
    }

    fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Where is {} in {}?\n",
            visible(&self.message_id),
            self.mailbox
        );
        for e in &self.received {
            let _ = writeln!(
                o,
                "Arrived {} from {} via {}: {}{}",
                e.time,
                safe(
                    e.sender
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .or(e.bounce_notice.then_some("<> (bounce notice)"))
                ),
                safe(e.server.as_deref()),
                e.outcome,
                e.folder
                    .as_deref()
                    .map(|f| format!(" into {}", visible(f)))
                    .unwrap_or_default()
            );
        }
        if let Some(s) = &self.saved_to {
            let _ = writeln!(o, "Saved to: {}", visible(s));
        }
        let _ = writeln!(o, "Now: {}", self.state);
        if !self.folders_now.is_empty() {
            let _ = writeln!(o, "In folders: {}", visible(&self.folders_now.join(", ")));
        }
        if !self.steps.is_empty() {
            let _ = writeln!(o, "\nWhat happened ({}):", self.steps.len());
            for s in &self.steps {
                let _ = writeln!(
                    o,
                    "{}  {:<13} {}{}  {} {} {}{}",
                    s.time,
                    s.action,
                    safe(s.folder.as_deref()),
                    s.to_folder
                        .as_deref()
                        .map(|t| format!(" -> {}", visible(t)))
                        .unwrap_or_default(),
                    safe(s.protocol.as_deref()),
                    safe(s.client_ip.as_deref()),
                    safe(s.client.as_deref()),
                    s.flags
                        .as_deref()
                        .map(|f| format!("  flags {}", visible(f)))
                        .unwrap_or_default(),
                );
            }
        }
        if let Some(n) = &self.note {
            let _ = writeln!(o, "\nNote: {n}");
        }
        o
    }

    fn to_csv(&self) -> String {
        let mut o = String::from(
            "time,action,folder,to_folder,protocol,session,client_ip,client,flags\r\n",
        );
        for s in &self.steps {
            let cells = [
                s.time.as_str(),
                s.action,
                s.folder.as_deref().unwrap_or(""),
                s.to_folder.as_deref().unwrap_or(""),
                s.protocol.as_deref().unwrap_or(""),
                s.session.as_deref().unwrap_or(""),
                s.client_ip.as_deref().unwrap_or(""),
                s.client.as_deref().unwrap_or(""),
                s.flags.as_deref().unwrap_or(""),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            o.push_str(&line.join(","));
            o.push_str("\r\n");
        }
        o
    }
}

/// The CSV header of `received`'s messages: the JSON keys, as words.
pub const CSV_COLUMNS: [&str; 21] = [
    "Time",
    "Outcome",
    "Sender",
    "Bounce notice",
    "Server",
    "Message-ID",
    "Subject",
    "Size",
    "Queue ID",
    "Folder",
    "Rule",
    "Forwarded to",
    "Forward status",
    "Forward reply",
    "Stage",
    "Reason",
    "Explanation",
    "Reply",
    "Spam action",
    "Spam score",
    "Deferrals",
];

impl ReceivedMail {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
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
            "Mail received by {} from {} to {}\n",
            self.mailbox, self.from, self.to
        );
        let _ = writeln!(
            o,
            "{:<10} {:>8} {:>9} {:>7} {:>4} {:>9}",
            "Date", "Received", "Delivered", "Refused", "Held", "Forwarded"
        );
        for d in &self.days {
            let _ = writeln!(
                o,
                "{:<10} {:>8} {:>9} {:>7} {:>4} {:>9}",
                d.date, d.received, d.delivered, d.refused, d.held, d.forwarded
            );
        }
        if self.is_empty() {
            let _ = writeln!(
                o,
                "\nNo mail received by {} from {} to {}.",
                self.mailbox, self.from, self.to
            );
            return o;
        }
        let _ = writeln!(o, "\nMessages ({}):", self.messages.len());
        if self.omitted > 0 {
            let _ = writeln!(o, "({} older messages not listed)", self.omitted);
        }
        for e in &self.messages {
            let from = if e.bounce_notice {
                "<> (bounce notice)".to_owned()
            } else {
                safe(e.sender.as_deref())
            };
            let _ = writeln!(
                o,
                "{}  {:<12} from {} via {}",
                e.time,
                e.outcome,
                from,
                safe(e.server.as_deref())
            );
            let _ = writeln!(
                o,
                "    Message-ID {}  subject {}  size {}",
                safe(e.message_id.as_deref()),
                safe(e.subject.as_deref()),
                e.size.map_or_else(|| "-".to_owned(), |s| s.to_string())
            );
            let mut detail = Vec::new();
            if let Some(f) = &e.folder {
                detail.push(format!("folder {}", visible(f)));
            }
            if let Some(r) = &e.rule {
                detail.push(format!("by {}", visible(r)));
            }
            if let Some(t) = &e.forwarded_to {
                detail.push(format!(
                    "to {}{}",
                    visible(t),
                    e.forward_status
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                ));
            }
            if let (Some(a), s) = (&e.spam_action, &e.spam_score) {
                detail.push(format!(
                    "spam filter: {} {}",
                    visible(a),
                    safe(s.as_deref())
                ));
            }
            if !detail.is_empty() {
                let _ = writeln!(o, "    {}", detail.join("; "));
            }
            if let Some(x) = &e.explanation {
                let _ = writeln!(o, "    {x}");
            }
            if let Some(r) = e.reply.as_deref().or(e.forward_reply.as_deref()) {
                let _ = writeln!(o, "    reply: {}", visible(r));
            }
        }
        o
    }

    /// Two sections, as the other histories' CSV: the days (and their
    /// total), then the messages.
    fn to_csv(&self) -> String {
        let mut o = String::from("Date,Received,Delivered,Refused,Held,Forwarded\r\n");
        let mut total = [0u64; 5];
        for d in &self.days {
            let n = [d.received, d.delivered, d.refused, d.held, d.forwarded];
            for (t, v) in total.iter_mut().zip(n) {
                *t += v;
            }
            let _ = write!(
                o,
                "{},{},{},{},{},{}\r\n",
                d.date, n[0], n[1], n[2], n[3], n[4]
            );
        }
        let _ = write!(
            o,
            "Total,{},{},{},{},{}\r\n",
            total[0], total[1], total[2], total[3], total[4]
        );
        o.push_str("\r\n");
        o.push_str(&CSV_COLUMNS.join(","));
        o.push_str("\r\n");
        for e in &self.messages {
            let cells: Vec<String> = vec![
                e.time.clone(),
                e.outcome.to_owned(),
                e.sender.clone().unwrap_or_default(),
                e.bounce_notice.to_string(),
                e.server.clone().unwrap_or_default(),
                e.message_id.clone().unwrap_or_default(),
                e.subject.clone().unwrap_or_default(),
                e.size.map(|s| s.to_string()).unwrap_or_default(),
                e.queue_id.clone().unwrap_or_default(),
                e.folder.clone().unwrap_or_default(),
                e.rule.clone().unwrap_or_default(),
                e.forwarded_to.clone().unwrap_or_default(),
                e.forward_status.clone().unwrap_or_default(),
                e.forward_reply.clone().unwrap_or_default(),
                e.stage.clone().unwrap_or_default(),
                e.reason.unwrap_or_default().to_owned(),
                e.explanation.clone().unwrap_or_default(),
                e.reply.clone().unwrap_or_default(),
                e.spam_action.clone().unwrap_or_default(),
                e.spam_score.clone().unwrap_or_default(),
                e.deferrals.to_string(),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            o.push_str(&line.join(","));
            o.push_str("\r\n");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_subjects_are_decoded() {
        assert_eq!(
            decode_subject(
                "=?utf-8?b?UHLDvGZ1bmdzdGVybWluZSBmw7xyIErDpG5uZXIg4oCTIOaXpeeoiw==?=? =?utf-8?b?6KGo?="
            ),
            "Prüfungstermine für Jänner – 日程表"
        );
        assert_eq!(
            decode_subject("Invoice =?utf-8?q?=E2=80=AEfdp=2Eexe?=? \"quoted\""),
            "Invoice \u{202e}fdp.exe \"quoted\""
        );
        assert_eq!(decode_subject("=?iso-8859-1?q?caf=E9?="), "café");
        assert_eq!(decode_subject("plain ?= text =?"), "plain ?= text =?");
        assert_eq!(decode_subject("=?koi8-r?b?5dTP?="), "=?koi8-r?b?5dTP?=");
    }

    /// Rows of one whole-second stamp, in the order their keys put them
    /// (the reverse of their lines'), as `locate` reads them from a classic
    /// syslog file.
    #[test]
    fn rows_of_one_second_are_followed_in_the_order_dovecot_logs_them() {
        let row = |t: i64, kind: MsgKind, protocol: &str, folder: &str| MessageRow {
            time_us: t * 1_000_000,
            kind: kind as i16,
            session: Some(if protocol == "lmtp" { "L" } else { "S" }.into()),
            protocol: Some(protocol.into()),
            message_id: (kind != MsgKind::FolderDeleted).then(|| "<m@x.test>".to_owned()),
            folder: Some(folder.to_owned()),
            ..MessageRow::default()
        };
        let mailbox = Mailbox::parse("alice@example.edu", "example.edu").unwrap();
        let tz = chrono_tz::Asia::Taipei;
        // `copy from INBOX: box=Projects`, then `expunge: box=INBOX`.
        let mut copy = row(20, MsgKind::Copied, "imap", "Projects");
        copy.other = Some("INBOX".to_owned());
        let rows = [
            row(10, MsgKind::Saved, "lmtp", "INBOX"),
            row(20, MsgKind::Expunged, "imap", "INBOX"),
            copy,
        ];
        let l = follow(&mailbox, "<m@x.test>", &rows, &[], true, tz);
        let steps: Vec<&str> = l.steps.iter().map(|s| s.action).collect();
        assert_eq!((l.state, steps), ("moved", vec!["saved", "move"]));
        assert_eq!(l.folders_now, ["Projects"]);
        // `expunge: box=News`, then `Mailbox deleted: News`.
        let rows = [
            row(10, MsgKind::Saved, "lmtp", "News"),
            row(20, MsgKind::FolderDeleted, "imap", "News"),
            row(20, MsgKind::Expunged, "imap", "News"),
        ];
        let l = follow(&mailbox, "<m@x.test>", &rows, &[], true, tz);
        let steps: Vec<&str> = l.steps.iter().map(|s| s.action).collect();
        assert_eq!(
            (l.state, steps),
            ("folder_deleted", vec!["saved", "delete_folder"])
        );
    }

    #[test]
    fn postfix_local_and_virtual_deliveries_name_their_folder() {
        let row = |agent: &str, reply: &str| MessageRow {
            key: 1,
            time_us: 1_796_650_000_000_000,
            day: 20261207,
            mailbox: "alice@example.edu".into(),
            kind: MsgKind::Delivered as i16,
            host: "mx1".into(),
            protocol: Some(agent.into()),
            reply: Some(reply.into()),
            ..MessageRow::default()
        };
        let one = |r: MessageRow| join(&[r]).remove(0).2;
        assert_eq!(
            one(row("local", "delivered to mailbox")).folder.as_deref(),
            Some("INBOX")
        );
        assert_eq!(
            one(row("virtual", "delivered to maildir"))
                .folder
                .as_deref(),
            Some("INBOX")
        );
        assert_eq!(
            one(row("local", "delivered to file: /home/alice/archive"))
                .folder
                .as_deref(),
            Some("/home/alice/archive")
        );
        let e = one(row(
            "local",
            "delivered to command: procmail -a \"$EXTENSION\"",
        ));
        assert_eq!(
            (e.folder, e.rule.as_deref()),
            (None, Some("command procmail -a \"$EXTENSION\""))
        );
    }

    #[test]
    fn a_quarantined_message_is_one_entry() {
        // amavis's `Blocked SPAM {DiscardedInbound,Quarantined}` line gives
        // a verdict row and a quarantine row (ingest::received).
        let row = |kind: MsgKind, status: &str, reply: &str| MessageRow {
            key: kind as i64,
            time_us: 1_796_650_000_000_000,
            day: 20261207,
            mailbox: "alice@example.edu".into(),
            kind: kind as i16,
            host: "mx1".into(),
            queue_id: Some("3F2A1C0042".into()),
            message_id: Some("<x1@bad.test>".into()),
            protocol: Some("amavis".into()),
            status: Some(status.into()),
            reply: Some(reply.into()),
            ..MessageRow::default()
        };
        let rows = [
            row(MsgKind::Held, "quarantine", "Blocked SPAM"),
            row(MsgKind::Spam, "Blocked SPAM", "12.3"),
        ];
        let entries = join(&rows);
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = &entries[0].2;
        assert_eq!((e.outcome, e.reason), ("held", Some("quarantined")));
        assert_eq!(e.spam_score.as_deref(), Some("12.3"));
        // Blocked and not quarantined: dropped by the filter, one entry.
        let entries = join(&rows[1..]);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].2.outcome, "dropped");
    }

    #[test]
    fn refusals_are_categorised() {
        assert_eq!(
            category(
                "reject",
                "450 4.2.0 <erin@example.edu>: Recipient address rejected: Greylisted, see http://x"
            ),
            "greylisted"
        );
        assert_eq!(category("milter-reject", "5.7.1 Gtube pattern"), "spam");
        assert_eq!(
            category(
                "reject",
                "554 5.7.1 <x[1.2.3.4]>: Client host rejected: client listed in the local blocklist"
            ),
            "blocklisted_client"
        );
        assert_eq!(
            category(
                "reject",
                "550 5.1.1 <nosuch@example.edu>: Recipient address rejected: User unknown in virtual mailbox table"
            ),
            "unknown_user"
        );
        assert_eq!(category("hold", "held for review"), "held_by_rule");
    }
}
