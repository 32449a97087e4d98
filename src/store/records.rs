//! Rows as they are stored: numbers, references to repeated text, and the
//! variable words of a remote reply apart from its constant pattern.
//!
//! The event tables (`smtp_rows`, `access_rows`; migrations 0009) keep
//! each row in a few dozen bytes: text that repeats from row to row (host
//! names, addresses, relays, protocols, status codes, Dovecot's reasons,
//! folders) is stored once in `texts` and referred to by id, and a remote
//! server's reply is split into its pattern, which repeats (`250 2.0.0 OK
//! \u{1} \u{1} - gsmtp`), and its variable words (the queue ID, a time
//! stamp), which do not. [`SmtpRecord`] and [`AccessRecord`] are rows in
//! that form, made by the writer once the batch's texts have ids
//! ([`Texts::resolve`]) and written by either backend's bulk path.

use std::borrow::Cow;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ingest::access::AccessRow;
use crate::ingest::correlate::Row;

/// Separates the variable words of a reply, and marks their places in its
/// pattern. A reply that holds this character itself is stored whole.
pub const MARK: char = '\u{1}';

/// How many hashes of a text are tried before it is stored without one
/// (see [`text_hash`]).
pub const PROBES: u64 = 8;

/// The `probe`th hash of a text: `texts.hash` is unique, so a text that
/// hashes like a different one already stored takes its next probe. One
/// that all probes send to other texts (only a text made to collide could)
/// is stored with no hash, as a row of its own.
pub fn text_hash(value: &str, probe: u64) -> i64 {
    xxh3_64_with_seed(value.as_bytes(), 0x6d61_696c_7472_6169 ^ probe) as i64
}

/// A word of a reply that varies from message to message: an address, a
/// word with a digit (queue IDs, times, sizes, addresses, message IDs) that
/// is not a reply code (`550`) or an enhanced status code (`5.1.1`), or
/// any word of 24 characters or more.
fn variable(word: &str) -> bool {
    let b = word.as_bytes();
    let code =
        (b.len() == 3 && matches!(b[0], b'2'..=b'5') && b[1..].iter().all(u8::is_ascii_digit))
            || (matches!(b.first(), Some(b'2' | b'4' | b'5'))
                && b.get(1) == Some(&b'.')
                && word[2..].split('.').count() == 2
                && word[2..]
                    .split('.')
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit())));
    word.contains('@') || (!code && b.iter().any(u8::is_ascii_digit)) || word.len() >= 24
}

/// Where words of a reply end.
fn delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '<' | '>' | '[' | ']' | '(' | ')' | '=' | ',' | ';' | ':' | '"' | '\''
        )
}

/// A reply split into its pattern (its variable words replaced by
/// [`MARK`]) and those words (joined by [`MARK`]): `(None, whole)` when the
/// reply holds [`MARK`] itself, `(Some(reply), None)` when no word varies.
pub fn split_reply(reply: &str) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    if reply.contains(MARK) {
        return (None, Some(Cow::Borrowed(reply)));
    }
    let mut pattern = String::new();
    let mut args = String::new();
    let mut last = 0;
    let mut start = None;
    let mut found = false;
    for (i, c) in reply
        .char_indices()
        .chain(std::iter::once((reply.len(), ' ')))
    {
        if delimiter(c) {
            if let Some(s) = start.take() {
                let word = &reply[s..i];
                if variable(word) {
                    pattern.push_str(&reply[last..s]);
                    pattern.push(MARK);
                    if found {
                        args.push(MARK);
                    }
                    args.push_str(word);
                    found = true;
                    last = i;
                }
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if !found {
        return (Some(Cow::Borrowed(reply)), None);
    }
    pattern.push_str(&reply[last..]);
    (Some(Cow::Owned(pattern)), Some(Cow::Owned(args)))
}

/// A row's reply as [`split_reply`] split it, kept with the row: the
/// ingest's parser thread splits the replies of a batch before sending it
/// (see [`ready_rows`]), so that the writer's thread, the slower of the
/// two, does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplySplit {
    /// No word varies: the pattern is the reply.
    Whole,
    /// The reply holds [`MARK`]: stored whole, as its words.
    Marked,
    /// The pattern and the variable words.
    Parts(String, String),
}

impl ReplySplit {
    pub fn of(reply: &str) -> ReplySplit {
        match split_reply(reply) {
            (None, _) => ReplySplit::Marked,
            (Some(_), None) => ReplySplit::Whole,
            (Some(p), Some(a)) => ReplySplit::Parts(p.into_owned(), a.into_owned()),
        }
    }
}

/// The pattern and variable words of a row's reply: as split already, or
/// split now (a row that did not come through [`ready_rows`]).
pub fn reply_parts(r: &Row) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    let Some(reply) = r.response.as_deref() else {
        return (None, None);
    };
    match &r.reply_split {
        Some(ReplySplit::Whole) => (Some(Cow::Borrowed(reply)), None),
        Some(ReplySplit::Marked) => (None, Some(Cow::Borrowed(reply))),
        Some(ReplySplit::Parts(p, a)) => (Some(Cow::Borrowed(p)), Some(Cow::Borrowed(a))),
        None => split_reply(reply),
    }
}

/// Readies a batch's rows for the store where they are made, on the
/// parser's thread: SMTP replies split ([`ReplySplit`]) and received-mail
/// rows given the hash they are found by
/// ([`crate::store::messages::row_hash`]). The writer would do the same
/// for rows that come without.
pub fn ready_rows(rows: &mut crate::ingest::correlate::Rows) {
    for r in &mut rows.smtp {
        if r.reply_split.is_none()
            && let Some(reply) = r.response.as_deref()
        {
            r.reply_split = Some(ReplySplit::of(reply));
        }
    }
    for r in &mut rows.messages {
        r.msgid_hash = super::messages::row_hash(r);
    }
}

/// The reply [`split_reply`] split, whole again.
pub fn join_reply(pattern: Option<&str>, args: Option<&str>) -> Option<String> {
    match (pattern, args) {
        (None, args) => args.map(str::to_owned),
        (Some(p), None) => Some(p.to_owned()),
        (Some(p), Some(a)) => {
            let mut out = String::with_capacity(p.len() + a.len());
            let mut words = a.split(MARK);
            let mut pieces = p.split(MARK);
            if let Some(first) = pieces.next() {
                out.push_str(first);
            }
            for piece in pieces {
                out.push_str(words.next().unwrap_or(""));
                out.push_str(piece);
            }
            Some(out)
        }
    }
}

/// Ids of texts, as far as this process has seen them. Bounded: past
/// [`Texts::MAX`] entries it starts again (what it forgets is looked up
/// again when next needed).
#[derive(Default)]
pub struct Texts {
    ids: foldhash::HashMap<Box<str>, i64>,
}

impl Texts {
    pub const MAX: usize = 1 << 20;

    pub fn get(&self, value: &str) -> Option<i64> {
        self.ids.get(value).copied()
    }

    pub(crate) fn insert(&mut self, value: &str, id: i64) {
        if self.ids.len() >= Self::MAX {
            self.ids.clear();
        }
        self.ids.insert(value.into(), id);
    }

    /// The texts of `values` that have no id here, each once.
    pub fn missing<'a>(&self, values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut seen = foldhash::HashSet::default();
        values
            .filter(|v| !self.ids.contains_key(*v) && seen.insert(*v))
            .collect()
    }

    /// Forgets everything (after a transaction that made ids rolled back).
    pub fn clear(&mut self) {
        self.ids.clear();
    }
}

/// Every text of an SMTP row that `texts` holds by id, but its reply's
/// pattern.
pub fn smtp_texts(r: &Row) -> impl Iterator<Item = &str> {
    [
        Some(&*r.host),
        r.sender_ip.as_deref(),
        r.relay.as_deref(),
        r.dsn.as_deref(),
    ]
    .into_iter()
    .flatten()
}

/// Every text of an access row that `texts` holds by id, but its reason's
/// pattern.
pub fn access_texts(r: &AccessRow) -> impl Iterator<Item = &str> {
    [
        Some(&*r.host),
        r.protocol,
        r.remote_ip.as_deref(),
        r.local_ip.as_deref(),
        r.client.as_deref(),
        r.folder.as_deref(),
        r.master_user.as_deref(),
    ]
    .into_iter()
    .flatten()
}

/// An SMTP row as stored (`smtp_rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRecord<'a> {
    pub day: i32,
    pub mailbox_id: i64,
    pub sec: i64,
    pub key: i64,
    pub usec: i32,
    pub kind: i16,
    pub host: i64,
    pub queue_id: Option<&'a str>,
    pub sender_ip: Option<i64>,
    pub relay: Option<i64>,
    /// The address itself (see migrations/sqlite/0009_clustered.sql).
    pub recipient: Option<&'a str>,
    pub dsn: Option<i64>,
    pub reply: Option<i64>,
    pub reply_args: Option<Cow<'a, str>>,
}

/// An access row as stored (`access_rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    pub day: i32,
    pub mailbox_id: i64,
    pub sec: i64,
    pub key: i64,
    pub usec: i32,
    pub kind: i16,
    pub host: i64,
    pub protocol: Option<i64>,
    pub remote_ip: Option<i64>,
    pub local_ip: Option<i64>,
    pub tls: Option<bool>,
    pub session: Option<&'a str>,
    pub client: Option<i64>,
    pub deleted: Option<i64>,
    pub retained: Option<i64>,
    pub size_bytes: Option<i64>,
    pub in_bytes: Option<i64>,
    pub out_bytes: Option<i64>,
    pub expunged: Option<i64>,
    pub trashed: Option<i64>,
    pub downloaded: Option<i64>,
    pub attempts: Option<i64>,
    pub uid: Option<i64>,
    pub message_id: Option<&'a str>,
    pub folder: Option<i64>,
    pub reason: Option<i64>,
    pub reason_args: Option<Cow<'a, str>>,
    pub master_user: Option<i64>,
}

/// `records` emptied, as room for records of any lifetime: its memory is
/// kept (collecting an emptied vector into one of a type of the same size
/// reuses its allocation).
pub fn emptied<'a, T: Reborrow<'a>>(mut records: Vec<T>) -> Vec<T::Static> {
    records.clear();
    records
        .into_iter()
        .map(|_| unreachable!("emptied"))
        .collect()
}

/// A record type whose borrowed text may be of any lifetime.
pub trait Reborrow<'a> {
    type Static;
}

impl<'a> Reborrow<'a> for SmtpRecord<'a> {
    type Static = SmtpRecord<'static>;
}

impl<'a> Reborrow<'a> for AccessRecord<'a> {
    type Static = AccessRecord<'static>;
}

/// Splits an instant in µs into Unix seconds and the µs within them.
pub fn split_time(time_us: i64) -> (i64, i32) {
    (
        time_us.div_euclid(1_000_000),
        time_us.rem_euclid(1_000_000) as i32,
    )
}

fn id_of(texts: &Texts, value: &str) -> anyhow::Result<i64> {
    texts
        .get(value)
        .ok_or_else(|| anyhow::anyhow!("a text of a row to store has no id"))
}

fn opt_id(texts: &Texts, value: Option<&str>) -> anyhow::Result<Option<i64>> {
    value.map(|v| id_of(texts, v)).transpose()
}

impl<'a> SmtpRecord<'a> {
    /// `r` as stored, with its reply already split ([`split_reply`]), its
    /// texts' ids taken from `texts` (which must hold every text
    /// [`smtp_texts`] gives).
    pub fn new(
        r: &'a Row,
        mailbox_id: i64,
        reply: (Option<&str>, Option<Cow<'a, str>>),
        texts: &Texts,
    ) -> anyhow::Result<SmtpRecord<'a>> {
        let (sec, usec) = split_time(r.time_us);
        let (pattern, reply_args) = reply;
        Ok(SmtpRecord {
            day: r.day,
            mailbox_id,
            sec,
            key: r.key,
            usec,
            kind: r.kind as i16,
            host: id_of(texts, &r.host)?,
            queue_id: r.queue_id.as_deref(),
            sender_ip: opt_id(texts, r.sender_ip.as_deref())?,
            relay: opt_id(texts, r.relay.as_deref())?,
            recipient: r.recipient.as_deref(),
            dsn: opt_id(texts, r.dsn.as_deref())?,
            reply: opt_id(texts, pattern)?,
            reply_args,
        })
    }
}

impl<'a> AccessRecord<'a> {
    /// `r` as stored, with its reason already split ([`split_reply`]), its
    /// texts' ids taken from `texts` (which must hold every text
    /// [`access_texts`] gives, and the reason's pattern).
    pub fn new(
        r: &'a AccessRow,
        mailbox_id: i64,
        reason: (Option<&str>, Option<Cow<'a, str>>),
        texts: &Texts,
    ) -> anyhow::Result<AccessRecord<'a>> {
        let (sec, usec) = split_time(r.time_us);
        Ok(AccessRecord {
            day: r.day,
            mailbox_id,
            sec,
            key: r.key,
            usec,
            kind: r
                .kind
                .map(|k| k as i16)
                .ok_or_else(|| anyhow::anyhow!("an access row to store has no kind"))?,
            host: id_of(texts, &r.host)?,
            protocol: opt_id(texts, r.protocol)?,
            remote_ip: opt_id(texts, r.remote_ip.as_deref())?,
            local_ip: opt_id(texts, r.local_ip.as_deref())?,
            tls: r.tls,
            session: r.session.as_deref(),
            client: opt_id(texts, r.client.as_deref())?,
            deleted: r.deleted,
            retained: r.retained,
            size_bytes: r.size_bytes,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            expunged: r.expunged,
            trashed: r.trashed,
            downloaded: r.downloaded,
            attempts: r.attempts,
            uid: r.uid,
            message_id: r.message_id.as_deref(),
            folder: opt_id(texts, r.folder.as_deref())?,
            reason: opt_id(texts, reason.0)?,
            reason_args: reason.1,
            master_user: opt_id(texts, r.master_user.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(s: &str) -> String {
        let (p, a) = split_reply(s);
        join_reply(p.as_deref(), a.as_deref()).unwrap()
    }

    #[test]
    fn replies_split_into_a_pattern_and_their_variable_words() {
        let gmail = "250 2.0.0 OK  1700000000 d2e1a72fcca58-6b8c1a8e2c1si123456pfe.12 - gsmtp";
        let (p, a) = split_reply(gmail);
        assert_eq!(p.as_deref(), Some("250 2.0.0 OK  \u{1} \u{1} - gsmtp"));
        assert_eq!(
            a.as_deref(),
            Some("1700000000\u{1}d2e1a72fcca58-6b8c1a8e2c1si123456pfe.12")
        );
        let other = "250 2.0.0 OK  1700000999 x8e1a72fcca58-6b8c1a8e2c1si999999pfe.77 - gsmtp";
        assert_eq!(split_reply(other).0, p, "one pattern for both");
        let (p, a) = split_reply("550 5.1.1 <bob@example.org>: Recipient address rejected");
        assert_eq!(
            p.as_deref(),
            Some("550 5.1.1 <\u{1}>: Recipient address rejected")
        );
        assert_eq!(a.as_deref(), Some("bob@example.org"));
        let (p, a) = split_reply("delivered to mailbox");
        assert_eq!(p.as_deref(), Some("delivered to mailbox"));
        assert_eq!(a, None);
    }

    #[test]
    fn every_reply_is_whole_again() {
        for s in [
            "",
            " ",
            "250 ok",
            "250 2.0.0 Ok: queued as 4F1A22C0B3",
            "  leading and trailing 1234567  ",
            "a\u{1}b 123456",
            "\u{1}",
            "host mx.example.org[192.0.2.1] said: 550 5.7.1 <a@b> blocked (in reply to RCPT TO command)",
            "tab\tseparated\t9999999\t",
            "unicode 郵件 1234567 ü@x",
            "123456",
            "x@y",
            "<<>>[[]]((==,,;;::\"\"''",
            "abcdefghijklmnopqrstuvwxyz0123 end",
        ] {
            assert_eq!(round(s), s, "{s:?}");
            // Split ahead on the parser's thread, the same parts.
            let row = Row {
                response: Some(s.to_owned()),
                reply_split: Some(ReplySplit::of(s)),
                ..blank_row()
            };
            assert_eq!(reply_parts(&row), split_reply(s), "{s:?}");
        }
    }

    fn blank_row() -> Row {
        Row {
            key: 0,
            time_us: 0,
            day: 0,
            mailbox: "a@example.edu".into(),
            mailbox_no: None,
            kind: crate::ingest::correlate::Kind::Sent,
            host: "mx".into(),
            queue_id: None,
            sender_ip: None,
            relay: None,
            recipient: None,
            dsn: None,
            response: None,
            reply_split: None,
        }
    }

    #[test]
    fn reply_codes_stay_in_the_pattern_and_numbers_do_not() {
        let (p, a) = split_reply("452 4.2.2 Mailbox full, 12 messages over quota");
        assert_eq!(
            p.as_deref(),
            Some("452 4.2.2 Mailbox full, \u{1} messages over quota")
        );
        assert_eq!(a.as_deref(), Some("12"));
        let (p, a) = split_reply(
            "Connection closed (IDLE running for 0.241 + waiting input for 129.966 secs, 4 B in + 24 B out, state=wait-input)",
        );
        assert_eq!(
            p.as_deref(),
            Some(
                "Connection closed (IDLE running for \u{1} + waiting input for \u{1} secs, \u{1} B in + \u{1} B out, state=wait-input)"
            )
        );
        assert_eq!(a.as_deref(), Some("0.241\u{1}129.966\u{1}4\u{1}24"));
    }

    #[test]
    fn hashes_differ_by_probe() {
        assert_ne!(text_hash("x", 0), text_hash("x", 1));
        assert_eq!(text_hash("x", 3), text_hash("x", 3));
    }
}
