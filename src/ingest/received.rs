//! Mail received by local mailboxes, and what became of it there.
//!
//! Facts about a message sent *to* a local mailbox come from several
//! programs, each a row of [`MessageRow`] for that mailbox, kept as the line
//! said it and joined when a report is made (see [`crate::received`]):
//!
//! * Postfix: the final delivery (`lmtp`, `local`, `virtual`, `pipe`) with
//!   the LMTP session Dovecot named in its reply; a forward (`orig_to=` a
//!   local address, `to=` another); a refusal before queueing (`NOQUEUE:
//!   reject` naming the recipient) or at the end of the message
//!   (`milter-reject`); a message held or dropped by a site's rule (cleanup's
//!   `hold:`, `discard:`). These carry what the message's lifecycle knows:
//!   the client, envelope sender, Message-ID, size and, where a site logs it
//!   (`header_checks` `INFO`), the subject.
//! * Dovecot LMTP / LDA and Sieve: the folder a message was saved into, or
//!   the Sieve action taken instead (redirect, vacation, discard).
//! * Dovecot's `mail_log` plugin, under any protocol: `save`, `copy`,
//!   `expunge`, `delete` (flagged `\Deleted`), `undelete`, `flag_change`,
//!   folders created, deleted and renamed: where a message went afterwards.
//! * The spam filter's verdict: rspamd's task line, amavis's
//!   `Passed`/`Blocked` line, one row per local recipient.
//!
//! Every row belongs to the recipient's mailbox alone: the senders and
//! subjects in it are that owner's own mail.

use std::sync::LazyLock;

use memchr::memmem;
use serde::{Deserialize, Serialize};

use super::correlate::Text;

/// What a row of `message_rows` says; the stored integer is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum MsgKind {
    /// Postfix delivered it to the mailbox (`status=sent`).
    Delivered = 1,
    /// Postfix's delivery to the mailbox bounced.
    Bounced = 2,
    /// Postfix's delivery to the mailbox was deferred (it retries).
    Deferred = 3,
    /// Forwarded by an alias (`orig_to=`) to `other`, with that delivery's
    /// status.
    Forwarded = 4,
    /// Refused before it was queued, or at the end of the message.
    Refused = 5,
    /// Kept in Postfix's hold queue by a site's rule.
    Held = 6,
    /// Dropped by a site's rule (cleanup's `discard`).
    Dropped = 7,
    /// The spam filter's verdict (`status` the action, `reply` the score).
    Spam = 8,
    /// LMTP/LDA saved it into `folder` (Sieve's `fileinto` names its rule
    /// in `status`).
    Stored = 9,
    /// LMTP/LDA could not save it (`reply` says why).
    StoreFailed = 10,
    /// Sieve redirected it to `other`.
    Redirected = 11,
    /// Sieve sent a vacation reply to `other`.
    Vacation = 12,
    /// Sieve discarded it.
    Discarded = 13,
    /// The delivery of a Sieve redirect's copy to `other`.
    RedirectResult = 14,
    /// mail_log `save`: a message was stored into `folder`.
    Saved = 15,
    /// mail_log `copy`: copied from `other` into `folder`.
    Copied = 16,
    /// mail_log `expunge`: removed from `folder` for good.
    Expunged = 17,
    /// mail_log `delete`: flagged `\Deleted` in `folder`.
    FlaggedDeleted = 18,
    /// mail_log `undelete`: the `\Deleted` flag taken off.
    Undeleted = 19,
    /// mail_log `flag_change` (`status` the flags now).
    FlagsChanged = 20,
    /// A folder created.
    FolderCreated = 21,
    /// A folder deleted, with what was still in it.
    FolderDeleted = 22,
    /// A folder renamed from `folder` to `other`.
    FolderRenamed = 23,
    /// A Sieve action the others do not name (`reply` is Sieve's text).
    SieveOther = 24,
}

impl MsgKind {
    /// Postfix's own outcome for the recipient (delivered, bounced,
    /// deferred, forwarded, refused, held, dropped): a row that is an entry
    /// of the received mail; the others are joined to one.
    pub fn is_entry(self) -> bool {
        (self as i16) <= MsgKind::Dropped as i16
    }

    pub fn from_i64(v: i64) -> Option<MsgKind> {
        use MsgKind::*;
        Some(match v {
            1 => Delivered,
            2 => Bounced,
            3 => Deferred,
            4 => Forwarded,
            5 => Refused,
            6 => Held,
            7 => Dropped,
            8 => Spam,
            9 => Stored,
            10 => StoreFailed,
            11 => Redirected,
            12 => Vacation,
            13 => Discarded,
            14 => RedirectResult,
            15 => Saved,
            16 => Copied,
            17 => Expunged,
            18 => FlaggedDeleted,
            19 => Undeleted,
            20 => FlagsChanged,
            21 => FolderCreated,
            22 => FolderDeleted,
            23 => FolderRenamed,
            24 => SieveOther,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        use MsgKind::*;
        match self {
            Delivered => "delivered",
            Bounced => "bounced",
            Deferred => "deferred",
            Forwarded => "forwarded",
            Refused => "refused",
            Held => "held",
            Dropped => "dropped",
            Spam => "spam_verdict",
            Stored => "stored",
            StoreFailed => "store_failed",
            Redirected => "redirected",
            Vacation => "vacation",
            Discarded => "discarded",
            RedirectResult => "redirect_result",
            Saved => "saved",
            Copied => "copied",
            Expunged => "expunged",
            FlaggedDeleted => "flagged_deleted",
            Undeleted => "undeleted",
            FlagsChanged => "flags_changed",
            FolderCreated => "folder_created",
            FolderDeleted => "folder_deleted",
            FolderRenamed => "folder_renamed",
            SieveOther => "sieve",
        }
    }
}

/// One stored fact about a message received by, or kept in, one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// Identity of the source line (and the mailbox's role in it).
    pub key: i64,
    pub time_us: i64,
    pub day: i32,
    pub mailbox: Text,
    #[serde(skip)]
    pub mailbox_no: Option<u32>,
    /// The hash the row is found by, once it joins a batch
    /// ([`crate::store::records::ready_rows`]); 0 before.
    #[serde(skip)]
    pub msgid_hash: i64,
    pub kind: i16,
    pub host: Text,
    pub queue_id: Option<Text>,
    /// Dovecot's session (LMTP's also in Postfix's reply).
    pub session: Option<Text>,
    /// `lmtp`, `lda`, `imap`, `pop3` (Dovecot); Postfix's delivery agent.
    pub protocol: Option<Text>,
    pub message_id: Option<String>,
    /// The envelope sender (Postfix), or mail_log's `from=` (the header).
    pub sender: Option<String>,
    pub subject: Option<String>,
    /// The sending server, `NAME[ADDR]`.
    pub client: Option<String>,
    pub folder: Option<String>,
    /// Forwarded or redirected to, the vacation reply's recipient, the
    /// folder copied from, a folder's new name.
    pub other: Option<String>,
    pub size: Option<i64>,
    pub uid: Option<i64>,
    /// The DSN, the spam filter's action, the refusal's stage, the flags,
    /// the Sieve rule.
    pub status: Option<Text>,
    /// The reply, the reason, the score.
    pub reply: Option<String>,
}

impl MessageRow {
    pub fn kind(&self) -> Option<MsgKind> {
        MsgKind::from_i64(self.kind as i64)
    }
}

/// The Message-ID's hash that rows are found by (`locate`): of the ID as
/// logged, angle brackets included, ASCII case folded. Never 0 (rows
/// without a Message-ID have 0).
pub fn msgid_hash(id: &str) -> i64 {
    let h = xxhash_rust::xxh3::xxh3_64(msgid_key(id).as_bytes()) as i64;
    if h == 0 { 1 } else { h }
}

/// A Message-ID as rows are compared by: without its angle brackets and
/// surrounding space, ASCII case folded.
pub fn msgid_key(id: &str) -> String {
    let t = id.trim();
    let t = t.strip_prefix('<').unwrap_or(t);
    t.strip_suffix('>').unwrap_or(t).to_ascii_lowercase()
}

/// A Dovecot line about a message or a folder of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotFact<'a> {
    /// `lmtp`, `lda`, `imap`, `pop3`...
    pub protocol: &'a [u8],
    pub user: &'a [u8],
    pub session: Option<&'a [u8]>,
    pub kind: MsgKind,
    pub message_id: Option<&'a [u8]>,
    pub folder: Option<&'a [u8]>,
    pub other: Option<&'a [u8]>,
    pub uid: Option<i64>,
    pub size: Option<i64>,
    pub from: Option<&'a [u8]>,
    pub subject: Option<&'a [u8]>,
    pub status: Option<&'a [u8]>,
    pub reply: Option<&'a [u8]>,
}

impl<'a> DovecotFact<'a> {
    fn new(protocol: &'a [u8], user: &'a [u8], session: Option<&'a [u8]>, kind: MsgKind) -> Self {
        DovecotFact {
            protocol,
            user,
            session,
            kind,
            message_id: None,
            folder: None,
            other: None,
            uid: None,
            size: None,
            from: None,
            subject: None,
            status: None,
            reply: None,
        }
    }
}

/// `Info: ` and the like before a Dovecot message.
fn strip_severity(s: &[u8]) -> &[u8] {
    for p in [&b"Info: "[..], b"Warning: ", b"Error: ", b"Debug: "] {
        if let Some(r) = s.strip_prefix(p) {
            return r;
        }
    }
    s
}

/// A Dovecot session line's parts: protocol, user, session, the rest.
type SessionLine<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>, &'a [u8]);

/// `PROTO(USER)<PID><SESSION>: REST` (2.3; the session part may be absent).
fn session_prefix(s: &[u8]) -> Option<SessionLine<'_>> {
    let open = memchr::memchr(b'(', s.get(..12.min(s.len()))?)?;
    let proto = &s[..open];
    if !matches!(
        proto,
        b"lmtp"
            | b"lda"
            | b"deliver"
            | b"imap"
            | b"pop3"
            | b"submission"
            | b"doveadm"
            | b"indexer-worker"
    ) {
        return None;
    }
    let rest = &s[open + 1..];
    let close = memmem::find(rest, b")")?;
    let user = &rest[..close];
    if user.is_empty() || user.iter().all(u8::is_ascii_digit) {
        // `lmtp(21620): Connect from local`: a process, no user yet.
        return None;
    }
    let mut rest = &rest[close + 1..];
    let mut session = None;
    // `<PID><SESSION>`: the last group is the session.
    while let Some(r) = rest.strip_prefix(b"<") {
        let end = memchr::memchr(b'>', r)?;
        session = Some(&r[..end]);
        rest = &r[end + 1..];
    }
    let session = session.filter(|s| !s.iter().all(u8::is_ascii_digit));
    let rest = rest.strip_prefix(b": ")?;
    Some((proto, user, session, rest))
}

/// Parses a Dovecot line about a message or a folder; `None` for any other.
pub fn dovecot_fact(msg: &[u8]) -> Option<DovecotFact<'_>> {
    let (proto, user, session, rest) = session_prefix(strip_severity(msg))?;
    let rest = strip_severity(rest);
    let f = |kind| DovecotFact::new(proto, user, session, kind);
    // LMTP / LDA: `msgid=<ID>: saved mail to FOLDER`,
    // `sieve: msgid=<ID>: [fileinto action: ]stored mail into mailbox 'F'`.
    let (sieve, body) = match rest.strip_prefix(b"sieve: ") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if let Some(r) = body.strip_prefix(b"msgid=") {
        let (id, text) = match r.strip_prefix(b"<") {
            Some(inner) => {
                let end = memmem::find(inner, b">: ")?;
                (&r[..end + 2], &inner[end + 3..])
            }
            None => {
                let end = memmem::find(r, b": ")?;
                (&r[..end], &r[end + 2..])
            }
        };
        let id = (id != b"<>" && id != b"unspecified").then_some(id);
        let mut fact = f(MsgKind::SieveOther);
        fact.message_id = id;
        if let Some(folder) = text.strip_prefix(b"saved mail to ") {
            fact.kind = MsgKind::Stored;
            fact.folder = Some(unquote(folder));
        } else if let Some(t) = memmem::find(text, b"stored mail into mailbox ") {
            fact.kind = MsgKind::Stored;
            fact.folder = Some(unquote(&text[t + 25..]));
            if text.starts_with(b"fileinto action") {
                fact.status = Some(b"fileinto");
            }
        } else if let Some(t) = memmem::find(text, b"forwarded to ") {
            fact.kind = MsgKind::Redirected;
            fact.other = Some(unangle(&text[t + 13..]));
        } else if let Some(t) = memmem::find(text, b"sent vacation response to ") {
            fact.kind = MsgKind::Vacation;
            fact.other = Some(unangle(&text[t + 26..]));
        } else if text.starts_with(b"discard action") || text.starts_with(b"discarded") {
            fact.kind = MsgKind::Discarded;
            fact.reply = Some(text);
        } else if let Some(t) = text.strip_prefix(b"save failed to ") {
            // `save failed to INBOX: Quota exceeded (mailbox for user is full)`
            fact.kind = MsgKind::StoreFailed;
            let colon = memmem::find(t, b": ").unwrap_or(t.len());
            fact.folder = Some(unquote(&t[..colon]));
            fact.reply = t.get(colon + 2..);
        } else if sieve || text.starts_with(b"rejected") {
            fact.reply = Some(text);
        } else {
            return None;
        }
        return Some(fact);
    }
    if sieve {
        return None;
    }
    if let Some(name) = rest.strip_prefix(b"Mailbox created: ") {
        let mut fact = f(MsgKind::FolderCreated);
        fact.folder = Some(name);
        return Some(fact);
    }
    if let Some(name) = rest.strip_prefix(b"Mailbox deleted: ") {
        let mut fact = f(MsgKind::FolderDeleted);
        fact.folder = Some(name);
        return Some(fact);
    }
    if let Some(r) = rest.strip_prefix(b"Mailbox renamed: ") {
        let arrow = memmem::find(r, b" -> ")?;
        let mut fact = f(MsgKind::FolderRenamed);
        fact.folder = Some(&r[..arrow]);
        fact.other = Some(&r[arrow + 4..]);
        return Some(fact);
    }
    // mail_log: `EVENT: box=B, uid=N, msgid=<ID>, size=N, vsize=N, from=F, subject=S, flags=(...)`;
    // 2.4 puts the folder first: `Mailbox B: EVENT: uid=N, ...`.
    let (box_first, rest) = match rest.strip_prefix(b"Mailbox ") {
        Some(r) => {
            let colon = memmem::find(r, b": ")?;
            (Some(&r[..colon]), &r[colon + 2..])
        }
        None => (None, rest),
    };
    let colon = memmem::find(rest.get(..24.min(rest.len()))?, b": ")?;
    let event = &rest[..colon];
    let fields = &rest[colon + 2..];
    let (kind, copied_from) = match event {
        b"save" => (MsgKind::Saved, None),
        b"expunge" | b"autoexpunge" => (MsgKind::Expunged, None),
        b"delete" => (MsgKind::FlaggedDeleted, None),
        b"undelete" => (MsgKind::Undeleted, None),
        b"flag_change" => (MsgKind::FlagsChanged, None),
        b"copy" => (MsgKind::Copied, None),
        e if e.starts_with(b"copy from ") => (MsgKind::Copied, Some(&e[10..])),
        _ => return None,
    };
    let mut fact = f(kind);
    fact.other = copied_from;
    fact.folder = box_first;
    mail_log_fields(fields, &mut fact);
    Some(fact)
}

/// Searchers for the fields of a mail_log line, made once: one made for
/// each search cost as much as the search.
static FLAGS: LazyLock<memmem::FinderRev<'static>> =
    LazyLock::new(|| memmem::FinderRev::new(b"flags=("));
static SUBJECT: LazyLock<memmem::FinderRev<'static>> =
    LazyLock::new(|| memmem::FinderRev::new(b"subject="));
static FROM: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"from="));
static MSGID: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"msgid=<"));

/// The fields of a mail_log line. Values end at the next `, KEY=` of the
/// fields mail_log writes, in its order; `from` and `subject` may hold
/// anything, so the ones after them are looked for from the end.
fn mail_log_fields<'a>(s: &'a [u8], fact: &mut DovecotFact<'a>) {
    let mut s = s;
    // `flags=(...)` is last when logged.
    if s.ends_with(b")")
        && let Some(i) = FLAGS.rfind(s)
        && (i == 0 || s[..i].ends_with(b", "))
    {
        let flags = &s[i + 7..s.len() - 1];
        if fact.kind == MsgKind::FlagsChanged {
            fact.status = Some(flags);
        }
        s = &s[..i.saturating_sub(2)];
    }
    // `subject=` then `from=` (from the end: the subject may hold `, from=`).
    if let Some(i) = SUBJECT.rfind(s)
        && (i == 0 || s[..i].ends_with(b", "))
    {
        fact.subject = Some(&s[i + 8..]);
        s = &s[..i.saturating_sub(2)];
    }
    if let Some(i) = FROM.find(s)
        && (i == 0 || s[..i].ends_with(b", "))
    {
        fact.from = Some(&s[i + 5..]);
        s = &s[..i.saturating_sub(2)];
    }
    for field in s.split(|&b| b == b',') {
        let field = field.trim_ascii_start();
        let Some(eq) = memchr::memchr(b'=', field) else {
            continue;
        };
        let (k, v) = (&field[..eq], &field[eq + 1..]);
        match k {
            b"box" => fact.folder = Some(v),
            b"uid" => fact.uid = num(v),
            b"msgid" => {
                // mail_log cuts long IDs at 80 characters and adds `...`.
                fact.message_id = (!v.is_empty() && v != b"<>").then_some(v);
            }
            b"size" => fact.size = num(v),
            _ => {}
        }
    }
    // A Message-ID with a comma in it was split above: take it whole.
    if let Some(i) = MSGID.find(s) {
        let v = &s[i + 6..];
        if let Some(e) = memchr::memchr(b'>', v) {
            fact.message_id = Some(&v[..e + 1]);
        }
    }
}

fn num(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// `'Name'` → `Name`; `"Name"` → `Name`.
fn unquote(s: &[u8]) -> &[u8] {
    let s = s.trim_ascii();
    for q in [b'\'', b'"'] {
        if s.len() >= 2 && s[0] == q && s[s.len() - 1] == q {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// `<a@b>` or `<a@b> ...` → `a@b`.
fn unangle(s: &[u8]) -> &[u8] {
    match s.strip_prefix(b"<") {
        Some(r) => &r[..memchr::memchr(b'>', r).unwrap_or(r.len())],
        None => &s[..memchr::memchr(b' ', s).unwrap_or(s.len())],
    }
}

/// A spam filter's verdict on one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<'a> {
    pub queue_id: Option<&'a [u8]>,
    pub message_id: Option<&'a [u8]>,
    pub client_ip: Option<&'a [u8]>,
    pub from: Option<&'a [u8]>,
    pub recipients: Vec<&'a [u8]>,
    /// `no action`, `add header`, `rewrite subject`, `greylist`,
    /// `soft reject`, `reject` (rspamd); `CLEAN`, `SPAM`, `SPAMMY`,
    /// `INFECTED`, `BANNED`... (amavis, after `Passed`/`Blocked`).
    pub action: String,
    /// `SCORE/REQUIRED` (rspamd), `Hits: N` (amavis).
    pub score: Option<String>,
    /// amavis quarantined it (`Quarantined` among its actions).
    pub quarantined: bool,
}

/// rspamd's task line (`rspamd_task_write_log: id: <ID>, qid: <QID>, ip:
/// A, from: <S>, (default: F (no action): [0.00/15.00] [...]), ..., rcpts:
/// <R>,...`) or amavis's (`(12345-01) Passed CLEAN {RelayedInbound},
/// [A]:P [A] <S> -> <R>,<R>, Queue-ID: QID, Message-ID: <ID>, ..., Hits:
/// 1.2, ...`).
pub fn filter_verdict<'a>(program: &[u8], msg: &'a [u8]) -> Option<Verdict<'a>> {
    if program.starts_with(b"rspamd") {
        rspamd(msg)
    } else if program.starts_with(b"amavis") {
        amavis(msg)
    } else {
        None
    }
}

fn field<'a>(s: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memmem::find(s, key)? + key.len();
    let v = &s[at..];
    let end = memmem::find(v, b", ").unwrap_or(v.len());
    Some(&v[..end])
}

fn angle_list(v: &[u8]) -> Vec<&[u8]> {
    v.split(|&b| b == b',')
        .map(|a| unangle(a.trim_ascii()))
        .filter(|a| !a.is_empty())
        .collect()
}

fn rspamd(msg: &[u8]) -> Option<Verdict<'_>> {
    let at = memmem::find(msg, b"rspamd_task_write_log: ")?;
    let s = &msg[at + 23..];
    let id = field(s, b"id: ")
        .map(|v| v.trim_ascii())
        .filter(|v| *v != b"<undef>");
    let qid = field(s, b"qid: ")
        .map(unangle)
        .filter(|q| !q.is_empty() && *q != b"undef");
    // `(default: F (no action): [0.00/15.00] [...])`
    let m = memmem::find(s, b"(default: ")? + 10;
    let d = &s[m..];
    let open = memchr::memchr(b'(', d)?;
    let close = open + memchr::memchr(b')', &d[open..])?;
    let action = String::from_utf8_lossy(&d[open + 1..close]).into_owned();
    let score = d[close..].strip_prefix(b"): [").and_then(|r| {
        let e = memchr::memchr(b']', r)?;
        Some(String::from_utf8_lossy(&r[..e]).into_owned())
    });
    let rcpts = field(s, b", rcpts: ").map(angle_list).unwrap_or_default();
    Some(Verdict {
        queue_id: qid,
        message_id: id,
        client_ip: field(s, b", ip: "),
        from: field(s, b", from: ").map(unangle),
        recipients: rcpts,
        action,
        score,
        quarantined: false,
    })
}

fn amavis(msg: &[u8]) -> Option<Verdict<'_>> {
    // `(ID) Passed CLEAN {...}, ...` or `(ID) Blocked SPAM {...}, ...`.
    let s = msg.strip_prefix(b"(")?;
    let s = &s[memmem::find(s, b") ")? + 2..];
    let (_, rest) = if let Some(r) = s.strip_prefix(b"Passed ") {
        (true, r)
    } else if let Some(r) = s.strip_prefix(b"Blocked ") {
        (false, r)
    } else {
        return None;
    };
    let word_end = rest
        .iter()
        .position(|&b| b == b' ' || b == b',')
        .unwrap_or(rest.len());
    let verdict = &rest[..word_end];
    let tags = rest[word_end..]
        .trim_ascii_start()
        .strip_prefix(b"{")
        .and_then(|t| memchr::memchr(b'}', t).map(|e| &t[..e]))
        .unwrap_or_default();
    let blocked = s.starts_with(b"Blocked");
    let action = format!(
        "{} {}",
        if blocked { "Blocked" } else { "Passed" },
        String::from_utf8_lossy(verdict)
    );
    let arrow = memmem::find(rest, b" -> ")?;
    let before = &rest[..arrow];
    let from = memchr::memrchr(b'<', before).map(|i| unangle(&before[i..]));
    let after = &rest[arrow + 4..];
    let list_end = memmem::find(after, b", ").unwrap_or(after.len());
    // The recipients `<a>,<b>` end where a field `, Key: ` begins.
    let mut list = &after[..list_end];
    let mut tail = &after[list_end..];
    while let Some(t) = tail.strip_prefix(b", <") {
        let e = memchr::memchr(b'>', t).map_or(t.len(), |e| e + 1);
        list = &after[..after.len() - tail.len() + 2 + e];
        tail = &t[e..];
    }
    let ip = memchr::memchr(b'[', before).and_then(|o| {
        let e = memchr::memchr(b']', &before[o..])?;
        Some(&before[o + 1..o + e])
    });
    Some(Verdict {
        queue_id: field(msg, b"Queue-ID: "),
        message_id: field(msg, b"Message-ID: "),
        client_ip: ip,
        from,
        recipients: angle_list(list),
        action,
        score: field(msg, b"Hits: ").map(|h| String::from_utf8_lossy(h).into_owned()),
        quarantined: memmem::find(tags, b"Quarantined").is_some(),
    })
}

/// The LMTP session Dovecot named in its reply to Postfix:
/// `250 2.0.0 <user@x> SESSION Saved` → `SESSION`.
pub fn lmtp_session(reply: &[u8]) -> Option<&[u8]> {
    let r = reply.strip_prefix(b"250 2.0.0 <")?;
    let r = &r[memchr::memchr(b'>', r)? + 1..];
    let r = r.strip_prefix(b" ")?;
    let end = memchr::memchr(b' ', r)?;
    let (sess, tail) = (&r[..end], &r[end + 1..]);
    (tail.starts_with(b"Saved") && !sess.is_empty()).then_some(sess)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(msg: &str) -> DovecotFact<'_> {
        dovecot_fact(msg.as_bytes()).unwrap_or_else(|| panic!("no fact in {msg}"))
    }

    #[test]
    fn lmtp_and_sieve_outcomes() {
        let f = fact(
            "lmtp(erin@example.edu)<21620><oGzaIk61Fmt0VAAAg+zDdQ>: msgid=<r9.1dd7a629182d@bank.test>: saved mail to INBOX",
        );
        assert_eq!(f.kind, MsgKind::Stored);
        assert_eq!(f.user, b"erin@example.edu");
        assert_eq!(f.session, Some(&b"oGzaIk61Fmt0VAAAg+zDdQ"[..]));
        assert_eq!(f.folder, Some(&b"INBOX"[..]));
        assert_eq!(f.message_id, Some(&b"<r9.1dd7a629182d@bank.test>"[..]));
        let f = fact(
            "lmtp(alice@example.edu)<21620><CH81KkO1Fmt0VAAAg+zDdQ>: sieve: msgid=<r2.45feda805401@news.test>: fileinto action: stored mail into mailbox 'Newsletters'",
        );
        assert_eq!(
            (f.kind, f.folder, f.status),
            (
                MsgKind::Stored,
                Some(&b"Newsletters"[..]),
                Some(&b"fileinto"[..])
            )
        );
        let f = fact(
            "lmtp(bob@example.edu)<21620><oB8gFkW1Fmt0VAAAg+zDdQ>: sieve: msgid=<r5.90bea11395b2@partner.test>: redirect action: forwarded to <bob@home.test>",
        );
        assert_eq!(
            (f.kind, f.other),
            (MsgKind::Redirected, Some(&b"bob@home.test"[..]))
        );
        let f = fact(
            "lmtp(carol@example.edu)<21620><kHXXNkW1Fmt0VAAAg+zDdQ>: sieve: msgid=<r6.0c484fe75765@registrar.test>: vacation action: sent vacation response to <support@registrar.test>",
        );
        assert_eq!(
            (f.kind, f.other),
            (MsgKind::Vacation, Some(&b"support@registrar.test"[..]))
        );
        let f = fact(
            "lmtp(dave@example.edu)<21620><qPc5HEa1Fmt0VAAAg+zDdQ>: sieve: msgid=<r7.3da18baaf049@lotto.test>: discard action: Marked message to be discarded if not explicitly delivered (discard action)",
        );
        assert_eq!(f.kind, MsgKind::Discarded);
        let f = fact(
            "lmtp(dave@example.edu)<21620><SN87AUe1Fmt0VAAAg+zDdQ:R2>: sieve: msgid=<r8.189fbdd8d57c@univ.test>: stored mail into mailbox 'INBOX'",
        );
        assert_eq!(f.session, Some(&b"SN87AUe1Fmt0VAAAg+zDdQ:R2"[..]));
        let f = fact(
            "lda(u@x.test)<5><abc>: msgid=<q@x>: save failed to INBOX: Quota exceeded (mailbox for user is full)",
        );
        assert_eq!(f.kind, MsgKind::StoreFailed);
        assert_eq!(
            f.reply,
            Some(&b"Quota exceeded (mailbox for user is full)"[..])
        );
        assert!(dovecot_fact(b"lmtp(21620): Connect from local").is_none());
        assert!(dovecot_fact(b"imap-login: Login: user=<a@b>, method=PLAIN").is_none());
    }

    #[test]
    fn mail_log_events() {
        let f = fact(
            "imap(alice@example.edu)<21732><R+JwQAti7dp/AAAB>: copy from INBOX: box=Archive, uid=1, msgid=<r1.3c77a75900e4@registrar.test>, size=1058, vsize=1089, from=noreply@registrar.test, subject=Your domain example.edu renews on 2027-01-15, flags=()",
        );
        assert_eq!(f.kind, MsgKind::Copied);
        assert_eq!(f.other, Some(&b"INBOX"[..]));
        assert_eq!(f.folder, Some(&b"Archive"[..]));
        assert_eq!(f.uid, Some(1));
        assert_eq!(f.size, Some(1058));
        assert_eq!(
            f.subject,
            Some(&b"Your domain example.edu renews on 2027-01-15"[..])
        );
        // A subject made to look like more fields stays the subject.
        let f = fact(
            "imap(a@x)<1><S>: save: box=INBOX, uid=3, msgid=<m@x>, size=10, vsize=11, from=Evil, subject=x, uid=99, box=Trash, flags=(\\Seen), flags=()",
        );
        assert_eq!((f.kind, f.uid), (MsgKind::Saved, Some(3)));
        assert_eq!(f.folder, Some(&b"INBOX"[..]));
        assert_eq!(
            f.subject,
            Some(&b"x, uid=99, box=Trash, flags=(\\Seen)"[..])
        );
        let f = fact(
            "imap(alice@example.edu)<1><S>: flag_change: box=INBOX, uid=4, msgid=<r8@u>, size=969, vsize=999, from=friend@univ.test, subject=Dinner on Friday?, flags=(\\Flagged \\Seen \\Recent)",
        );
        assert_eq!(f.status, Some(&b"\\Flagged \\Seen \\Recent"[..]));
        let f = fact("imap(a@x)<1><S>: Mailbox renamed: Archive -> Archive-2026");
        assert_eq!(
            (f.kind, f.folder, f.other),
            (
                MsgKind::FolderRenamed,
                Some(&b"Archive"[..]),
                Some(&b"Archive-2026"[..])
            )
        );
        let f = fact("imap(u@x)<1><S>: Mailbox INBOX: expunge: uid=5, msgid=<a@b>, size=123");
        assert_eq!(
            (f.kind, f.folder, f.uid),
            (MsgKind::Expunged, Some(&b"INBOX"[..]), Some(5))
        );
        assert!(dovecot_fact(b"imap(a@x)<1><S>: Disconnected: Logged out in=1 out=2").is_none());
    }

    #[test]
    fn spam_filter_verdicts() {
        let v = filter_verdict(b"rspamd", b"<5622fd>; proxy; rspamd_task_write_log: id: <r10.604eb2729e96@odd.test>, qid: <15446C6601>, ip: 127.0.0.34, from: <promo@odd.test>, (default: S (reject): [15.00/15.00] [GTUBE(0.00){}]), len: 318, time: 1.2ms, dns req: 0, digest: <x>, rcpts: <alice@example.edu>,<bob@example.edu>, mime_rcpts: <alice@example.edu>, forced: reject \"Gtube pattern\"; score=15.00 (set by GTUBE)").unwrap();
        assert_eq!(v.queue_id, Some(&b"15446C6601"[..]));
        assert_eq!(v.message_id, Some(&b"<r10.604eb2729e96@odd.test>"[..]));
        assert_eq!(v.action, "reject");
        assert_eq!(v.score.as_deref(), Some("15.00/15.00"));
        assert_eq!(
            v.recipients,
            vec![&b"alice@example.edu"[..], &b"bob@example.edu"[..]]
        );
        let v = filter_verdict(b"amavis", b"(12345-01) Blocked SPAM {DiscardedInbound,Quarantined}, [192.0.2.7]:4321 [192.0.2.7] <spam@bad.test> -> <a@example.edu>,<b@example.edu>, Queue-ID: 3F2A1C0042, Message-ID: <x1@bad.test>, mail_id: abc, Hits: 12.3, size: 4567, 840 ms").unwrap();
        assert_eq!(v.action, "Blocked SPAM");
        assert!(v.quarantined);
        assert_eq!(v.queue_id, Some(&b"3F2A1C0042"[..]));
        assert_eq!(
            v.recipients,
            vec![&b"a@example.edu"[..], &b"b@example.edu"[..]]
        );
        assert_eq!(v.score.as_deref(), Some("12.3"));
        assert_eq!(v.client_ip, Some(&b"192.0.2.7"[..]));
        assert_eq!(v.from, Some(&b"spam@bad.test"[..]));
    }

    #[test]
    fn lmtp_sessions_in_replies() {
        assert_eq!(
            lmtp_session(b"250 2.0.0 <dave@example.edu> SN87AUe1Fmt0VAAAg+zDdQ:R2 Saved"),
            Some(&b"SN87AUe1Fmt0VAAAg+zDdQ:R2"[..])
        );
        assert_eq!(lmtp_session(b"250 2.0.0 Ok: queued as 71355A9EE0"), None);
    }

    #[test]
    fn message_ids_hash_alike_however_written() {
        assert_eq!(msgid_hash("<Ab@X.test>"), msgid_hash("ab@x.test"));
        assert_ne!(msgid_hash("<a@x>"), msgid_hash("<b@x>"));
    }
}
