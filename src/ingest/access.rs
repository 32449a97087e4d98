//! Mailbox access: Dovecot's lines joined into per-mailbox access events.
//!
//! Dovecot names each login with a session ID (`session=<UXdX/9u52oxbQgr8>`)
//! that its later lines carry (`imap(user)<pid><UXdX/9u52oxbQgr8>: ...`),
//! and so do the auth process's verdicts, its master-user lines and the
//! pre-login IMAP ID line. Lines are joined by (host, session), never by
//! order:
//!
//! * a login (IMAP, POP3, submission, ManageSieve) is one `login` event,
//!   with the remote and local address, TLS, the client name from IMAP ID,
//!   and the master user when an administrator's account opened the
//!   mailbox;
//! * the session's mail_log lines are `message_deleted` (expunge),
//!   `message_marked_deleted` (the \Deleted flag) and `mailbox_deleted`,
//!   and carry the session's remote address;
//! * its end is one `logout` event with what the session did: POP3's
//!   `del=D/M` is D deleted and M-D retained (Dovecot 2.3 and older; in 2.4
//!   M means bytes, so retained is unknown), IMAP's bytes in/out and
//!   deleted/expunged/trashed counts;
//! * a failed login is one `auth_failed` event, with the attempts and the
//!   reason from the auth process's verdict on the same session (or, when
//!   either names no session, the same user and address up to two minutes
//!   before).
//!
//! Lines of one host reach the log a second or two out of order (several
//! processes, relays, multi-host syslog), and logs are read twice. So every
//! row waits ([`HOLD_US`]) before it is given out, and while it waits the
//! lines it needs may still come: a late login gives its session's rows
//! their address, client and mailbox (and a POP3 logout its retained
//! count), a late IMAP ID the client, a late verdict a failed login's
//! reason, a late master-user line the login's master user. What a row
//! holds is worked out from everything known of its session, not from
//! what happened to come first, so any order of lines a few seconds apart,
//! and any line read twice, make the same rows. The waiting rows are part
//! of the saved state, and leave in the order they were made.
//!
//! Nothing of an auth line but the classified reason is kept: Dovecot can
//! log the password that was tried, and that never leaves this module.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::correlate::{Phrases, Text, lossy as string, lossy_text as text};
use super::dovecot::{self, Access, AuthFailure, MasterLogin, Proto, SessionEvent};
#[cfg(doc)]
use super::mailboxes::Mailboxes;
use crate::domain::{LocalDomains, normalize_logged_address, normalize_logged_address_into};

/// How long a row waits, by its host's clock from when its line was read,
/// for the lines that may complete it. A host's lines arrive up to a few
/// seconds out of order; ten seconds covers that with room for what relays
/// add, and costs a report nothing (reports are of whole days).
pub const HOLD_US: i64 = 10 * 1_000_000;
/// How long before a refused login (by the lines' own stamps) a verdict
/// that names no session may be its own, and a master-user line naming no
/// session a login's: a client may take a while to give up after a
/// refusal.
const VERDICT_WINDOW_US: i64 = 120 * 1_000_000;
/// Sessions with no line for this long are forgotten (IMAP IDLE sessions
/// last hours, so be generous).
const SESSION_STALE_US: i64 = 3 * 86_400 * 1_000_000;
/// All sessions are looked over (and forgotten when done) at one sweep in
/// this many; those that ended are forgotten sooner, by the order they
/// ended in. The correlator sweeps every ten seconds of a host's log, and
/// forgetting a session that never ended five minutes late costs only its
/// memory.
const SESSION_SWEEPS: u32 = 30;
/// How far apart (by their stamps) a bare master-user line and the login
/// it belongs to may be: the auth process answers the login process within
/// the same moment, and the two are logged together.
const BARE_MASTER_US: i64 = 2 * 1_000_000;

/// What an access row records; the stored integer is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AccessKind {
    Login = 1,
    Logout = 2,
    AuthFailed = 3,
    MessageDeleted = 4,
    MessageMarkedDeleted = 5,
    MailboxDeleted = 6,
}

impl AccessKind {
    /// Where an event of this kind comes among a session's events of the
    /// same instant: login, failures, a message marked deleted before it
    /// is expunged, a folder deleted, logout.
    pub fn order(self) -> u8 {
        match self {
            AccessKind::Login => 0,
            AccessKind::AuthFailed => 1,
            AccessKind::MessageMarkedDeleted => 2,
            AccessKind::MessageDeleted => 3,
            AccessKind::MailboxDeleted => 4,
            AccessKind::Logout => 5,
        }
    }

    pub fn from_i64(v: i64) -> Option<AccessKind> {
        Some(match v {
            1 => AccessKind::Login,
            2 => AccessKind::Logout,
            3 => AccessKind::AuthFailed,
            4 => AccessKind::MessageDeleted,
            5 => AccessKind::MessageMarkedDeleted,
            6 => AccessKind::MailboxDeleted,
            _ => return None,
        })
    }

    /// The `type` users see.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::Login => "login",
            AccessKind::Logout => "logout",
            AccessKind::AuthFailed => "auth_failed",
            AccessKind::MessageDeleted => "message_deleted",
            AccessKind::MessageMarkedDeleted => "message_marked_deleted",
            AccessKind::MailboxDeleted => "mailbox_deleted",
        }
    }
}

/// One stored access fact about one mailbox. (Serialised only while it
/// waits in [`AccessState`].)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRow {
    /// Identity of the source line: the store keeps one row per key.
    pub key: i64,
    pub time_us: i64,
    pub day: i32,
    pub mailbox: Text,
    /// The mailbox's number among the ingest's mailboxes, by which the
    /// writer finds its database id: given when the row joins a batch
    /// ([`Mailboxes::prepare`]); `None` before, and in rows read back from
    /// the store.
    #[serde(skip)]
    pub mailbox_no: Option<u32>,
    pub kind: Option<AccessKind>,
    pub host: Text,
    /// `imap`, `pop3`, `submission` or `managesieve` ([`Proto::as_str`]).
    #[serde(with = "protocol")]
    pub protocol: ProtocolName,
    pub remote_ip: Option<Text>,
    pub local_ip: Option<Text>,
    pub tls: Option<bool>,
    pub session: Option<Text>,
    /// The IMAP ID name, and `webmail` for the webmail front end.
    pub client: Option<Text>,
    pub deleted: Option<i64>,
    pub retained: Option<i64>,
    pub size_bytes: Option<i64>,
    pub in_bytes: Option<i64>,
    pub out_bytes: Option<i64>,
    pub expunged: Option<i64>,
    pub trashed: Option<i64>,
    /// Messages the session downloaded (POP3 RETR, IMAP body fetches).
    pub downloaded: Option<i64>,
    /// Attempts in a refused login session.
    pub attempts: Option<i64>,
    pub uid: Option<i64>,
    pub message_id: Option<String>,
    pub folder: Option<Text>,
    pub reason: Option<Text>,
    /// Login: the master user (an administrator's account, say) that
    /// opened this mailbox, as Dovecot logged it, when it is not the
    /// mailbox's own user.
    pub master_user: Option<Text>,
}

/// A protocol's name ([`Proto::as_str`]). (Named, so that serde's derive
/// does not take the `&'static str` for text borrowed from the input.)
pub type ProtocolName = Option<&'static str>;

/// [`AccessRow::protocol`] by name, back to the one static name.
mod protocol {
    use super::Proto;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<&'static str>, s: S) -> Result<S::Ok, S::Error> {
        p.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        Ok(name
            .as_deref()
            .and_then(Proto::from_name)
            .map(Proto::as_str))
    }
}

/// Settings the access correlation needs.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub local: LocalDomains,
    pub webmail_networks: Vec<IpNet>,
}

/// What a session's login line said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LoginInfo {
    mailbox: Text,
    rip: Option<Text>,
    /// Logged by Dovecot 2.4 (`Logged in:`): POP3's `del=D/B` is then
    /// count/bytes, not count/messages.
    v24: bool,
    /// From one of `webmail_networks`.
    webmail: bool,
}

/// The name an IMAP ID line gave a session. When a session has several,
/// the one sent after login wins, then the later, then the greater name:
/// a rule that does not depend on which line was read first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct ClientName {
    after_login: bool,
    time_us: i64,
    name: Text,
}

/// What is known of one (host, session ID): its login, once read, and
/// what other lines said about it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Session {
    login: Option<LoginInfo>,
    client: Option<ClientName>,
    /// From the auth process's `Master user logging in as` line (the
    /// greater name, should there be two).
    master: Option<Text>,
    /// The host's clock at the session's latest line.
    last_us: i64,
    /// The host's clock when its logout was read.
    ended_us: Option<i64>,
}

/// An auth verdict, kept for the failed logins it may explain.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verdict {
    host: u32,
    session: Option<SessId>,
    user: Text,
    ip: Text,
    reason: Text,
    time_us: i64,
    /// The host's clock when it was read.
    read_us: i64,
}

/// A master-user line that named no session (Dovecot before 2.2), kept
/// for the login of the same mailbox from the same address; or one that
/// named nothing but the mailbox (Dovecot 2.3's bare `auth: Master user
/// logging in as alice`: `ip` and `master` empty), for that mailbox's login
/// logged with it, within [`BARE_MASTER_US`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MasterLine {
    host: u32,
    user: Text,
    ip: Text,
    master: Text,
    time_us: i64,
    read_us: i64,
}

/// How lines read later may still complete a waiting row. (What its own
/// line said is in the row already: the mailbox and address of a login,
/// the master user its own line named, the mailbox a session line's
/// `imap(user)` prefix names, a refusal's own reason; completing replaces
/// it only with what other lines say.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Fill {
    /// Nothing can.
    Done,
    /// A login: an IMAP ID line (client) or a master-user line.
    Login {
        session: Option<SessId>,
        /// From one of `webmail_networks`.
        webmail: bool,
    },
    /// Another line of a session: its login gives the mailbox, address,
    /// client (and to a POP3 logout its retained count).
    Session {
        session: SessId,
        /// POP3 logout: `del=D/M`.
        del: Option<(u64, Option<u64>)>,
    },
    /// A refused login: the verdict that explains it.
    Refused { session: Option<SessId> },
}

/// A row waiting for the lines that may complete it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    host: u32,
    /// The host's clock when the row's line was read: the wait is measured
    /// from it, never from the line's own stamp.
    read_us: i64,
    fill: Fill,
    /// Where the row is, unless it is kept (see [`AccessState::kept`]):
    /// its index in the caller's rows.
    at: usize,
}

/// Everything remembered between Dovecot lines; part of the saved state.
/// (A state saved by an older version, with other fields, loads as an
/// empty one: `default`.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessState {
    /// (host, session ID) → session, stored as a list of pairs.
    #[serde(with = "pairs")]
    by_session: FxHashMap<(u32, SessId), Box<Session>>,
    /// Auth verdicts of the last minutes.
    refusals: Vec<Verdict>,
    /// Master-user lines without a session.
    master_lines: Vec<MasterLine>,
    /// Rows waiting, by host, each host's in the order they were made
    /// (which is the order of that host's clock, so the first is always
    /// the first to be due).
    waiting: Vec<VecDeque<Held>>,
    /// The waiting rows that were sealed out of the caller's rows (see
    /// [`AccessState::seal`]): those of the first `kept[h].len()` entries
    /// of `waiting[h]`. The others are in the caller's rows already, where
    /// they are completed in place: a row is large, and is then never
    /// moved for waiting.
    kept: Vec<VecDeque<AccessRow>>,
    /// Rows made final since the correlator last looked (for its count).
    #[serde(skip)]
    given: u64,
    /// Rows made final without a mailbox (a session of another domain),
    /// among the caller's rows, to be dropped by [`AccessState::seal`].
    #[serde(skip)]
    unnamed: usize,
    /// Sessions that ended (their logout was read), by host, in the order
    /// of the host's clock when they did: each is forgotten once its rows
    /// can no longer wait (see [`AccessState::sweep`]).
    ended: Vec<VecDeque<(i64, SessId)>>,
    /// Sweeps made, for looking sessions over at one in
    /// [`SESSION_SWEEPS`] (saved, so a resumed ingest looks them over when
    /// an uninterrupted one would).
    sweeps: u32,
    /// Texts that recur on many rows, made once; not part of the state.
    #[serde(skip)]
    phrases: Phrases,
    /// `method PLAIN` and the like, by method; not part of the state.
    #[serde(skip)]
    methods: Phrases,
    /// Room for normalising a user name without allocating.
    #[serde(skip)]
    scratch: String,
}

mod pairs {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<V: Serialize, S: Serializer>(
        m: &FxHashMap<(u32, SessId), V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&(u32, SessId), &V)> = m.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.serialize(s)
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FxHashMap<(u32, SessId), V>, D::Error> {
        let v: Vec<((u32, SessId), V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// The line being handled.
pub(crate) struct Line<'a> {
    pub host_id: u32,
    pub host: &'a Text,
    pub key: i64,
    /// The line's own instant: what its row records.
    pub time_us: i64,
    /// The host's clock when the line was read (see the correlator's
    /// per-host clocks): what waiting and forgetting are measured by, so
    /// that a line stamped far off moves no deadline.
    pub now_us: i64,
    pub day: i32,
}

/// A session ID, inline so map lookups need no allocation. Compared and
/// hashed as machine words (the bytes past `len` are always zero): a
/// session is looked up for nearly every Dovecot line.
#[derive(Debug, Clone, Copy, PartialOrd, Ord)]
struct SessId {
    len: u8,
    bytes: [u8; SessId::MAX],
}

impl SessId {
    /// The longest session ID Dovecot writes, and a little more: a login
    /// process's ID is the base64 of a 48-bit time, the client's port and
    /// its address, 16 characters for IPv4 and 32 for IPv6
    /// (`client_get_session_id`), and a mail process may add `:N` to it.
    const MAX: usize = 40;
    const _WORDS: () = assert!(Self::MAX.is_multiple_of(8));

    /// `None` for what cannot be one of Dovecot's IDs (empty, or longer):
    /// such a line is handled as having no session rather than joined to
    /// others by a part of its text.
    fn new(s: &[u8]) -> Option<SessId> {
        if s.is_empty() || s.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        bytes[..s.len()].copy_from_slice(s);
        Some(SessId {
            len: s.len() as u8,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The bytes as words, the used ones first.
    fn word(&self, i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.bytes[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    }
}

impl PartialEq for SessId {
    fn eq(&self, other: &SessId) -> bool {
        self.len == other.len
            && (0..Self::MAX / 8).fold(0, |d, i| d | (self.word(i) ^ other.word(i))) == 0
    }
}

impl Eq for SessId {}

impl std::hash::Hash for SessId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Equal IDs have equal lengths and words; only the used words are
        // hashed.
        h.write_u8(self.len);
        for i in 0..(self.len as usize).div_ceil(8) {
            h.write_u64(self.word(i));
        }
    }
}

impl Serialize for SessId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for SessId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SessId, D::Error> {
        let s = String::deserialize(d)?;
        SessId::new(s.as_bytes())
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a session ID")))
    }
}

/// The client a session's rows show: the IMAP ID name, marked as webmail
/// for a login from the webmail front end.
fn client_label(webmail: bool, name: Option<&Text>) -> Option<Text> {
    match (webmail, name) {
        (true, Some(c)) => Some(Text::from(format!("webmail ({c})"))),
        (true, None) => Some(Text::from("webmail")),
        (false, c) => c.cloned(),
    }
}

/// Whether a verdict may explain a refused login on `host`: the same
/// session when both name one; otherwise the same user and address, at
/// most [`VERDICT_WINDOW_US`] before the refusal.
fn explains(
    v: &Verdict,
    host: u32,
    session: Option<SessId>,
    user: &Text,
    ip: Option<&Text>,
    time_us: i64,
) -> bool {
    v.host == host
        && match (v.session, session) {
            (Some(a), Some(b)) => a == b,
            _ => {
                v.user == *user
                    && Some(&v.ip) == ip
                    && v.time_us <= time_us
                    && v.time_us >= time_us - VERDICT_WINDOW_US
            }
        }
}

/// What lines read so far say, for completing waiting rows.
struct Known<'a> {
    by_session: &'a FxHashMap<(u32, SessId), Box<Session>>,
    refusals: &'a [Verdict],
    master_lines: &'a [MasterLine],
}

impl Known<'_> {
    /// Completes the waiting row `r` of `h` from everything known now.
    fn complete(&self, h: &Held, r: &mut AccessRow) {
        let session = |id: &SessId| self.by_session.get(&(h.host, *id));
        match &h.fill {
            Fill::Done => {}
            Fill::Login {
                session: id,
                webmail,
            } => {
                let s = id.as_ref().and_then(session);
                // The master user its own line named, else another line's.
                if r.master_user.is_none() {
                    r.master_user = s
                        .and_then(|s| s.master.clone())
                        .or_else(|| self.master_of(h.host, r));
                }
                r.client =
                    client_label(*webmail, s.and_then(|s| s.client.as_ref()).map(|c| &c.name));
            }
            Fill::Session { session: id, del } => {
                let s = session(id);
                let login = s.and_then(|s| s.login.as_ref());
                if let Some(l) = login {
                    r.mailbox = l.mailbox.clone();
                    r.remote_ip = l.rip.clone();
                }
                r.client = client_label(
                    login.is_some_and(|l| l.webmail),
                    s.and_then(|s| s.client.as_ref()).map(|c| &c.name),
                );
                if r.kind == Some(AccessKind::Logout) && r.protocol == Some("pop3") {
                    // Known only when the session's login showed the
                    // version (2.3 and older: `del=D/M` with M messages).
                    r.retained = match (del, login) {
                        (Some((d, Some(m))), Some(l)) if !l.v24 => {
                            i64::try_from(m.saturating_sub(*d)).ok()
                        }
                        _ => None,
                    };
                }
            }
            Fill::Refused { session } => {
                // The latest verdict counts (then the greater reason, for
                // two in one instant), whichever was read first.
                let found = self
                    .refusals
                    .iter()
                    .filter(|v| {
                        explains(
                            v,
                            h.host,
                            *session,
                            &r.mailbox,
                            r.remote_ip.as_ref(),
                            r.time_us,
                        )
                    })
                    .map(|v| (v.time_us, &v.reason))
                    .max();
                if let Some((_, reason)) = found {
                    r.reason = Some(reason.clone());
                }
            }
        }
    }

    /// The master user a session-less master-user line names for the
    /// login row `login` on `host` (the greater name, should there be two).
    fn master_of(&self, host: u32, login: &AccessRow) -> Option<Text> {
        let t = login.time_us;
        self.master_lines
            .iter()
            .filter(|m| {
                m.host == host
                    && m.user == login.mailbox
                    && if m.ip.is_empty() {
                        (m.time_us - t).abs() <= BARE_MASTER_US
                    } else {
                        Some(&m.ip) == login.remote_ip.as_ref()
                            && m.time_us <= t
                            && m.time_us >= t - VERDICT_WINDOW_US
                    }
            })
            .map(|m| &m.master)
            .max()
            .cloned()
    }
}

impl AccessState {
    /// The local mailbox a logged user name stands for, if any.
    fn mailbox(&mut self, cfg: &AccessSettings, user: &[u8]) -> Option<Text> {
        let m = &mut self.scratch;
        (normalize_logged_address_into(user, &cfg.local.default_domain, m)
            && cfg.local.is_local_address(m))
        .then(|| Text::from(m.as_str()))
    }

    fn is_webmail(cfg: &AccessSettings, ip: Option<&[u8]>) -> bool {
        if cfg.webmail_networks.is_empty() {
            return false;
        }
        ip.and_then(crate::net::parse_canonical)
            .is_some_and(|ip| crate::net::in_networks(&cfg.webmail_networks, ip))
    }

    /// The master user a login line names, when it is someone else than
    /// the user: `%{auth_user}` is the user itself (or the name as the
    /// client typed it, which `%{original_user}` shows when logged) unless
    /// a master user logged in.
    fn own_master(cfg: &AccessSettings, fields: &dovecot::LoginFields<'_>) -> Option<Text> {
        let auth = fields.auth_user.filter(|a| !a.is_empty())?;
        let norm = |u: &[u8]| normalize_logged_address(u, &cfg.local.default_domain);
        let a = norm(auth);
        let same = |u: &[u8]| a.is_some() && norm(u) == a;
        (!same(fields.user) && !fields.orig_user.is_some_and(same)).then(|| text(auth))
    }

    /// A row with the line's identity filled in and nothing else. (Built
    /// field by field: `..Default::default()` would make two texts only to
    /// drop them.)
    fn row(line: &Line<'_>, mailbox: Text, kind: AccessKind, proto: Proto) -> AccessRow {
        AccessRow {
            key: line.key,
            time_us: line.time_us,
            day: line.day,
            mailbox,
            mailbox_no: None,
            kind: Some(kind),
            host: line.host.clone(),
            protocol: Some(proto.as_str()),
            remote_ip: None,
            local_ip: None,
            tls: None,
            session: None,
            client: None,
            deleted: None,
            retained: None,
            size_bytes: None,
            in_bytes: None,
            out_bytes: None,
            expunged: None,
            trashed: None,
            downloaded: None,
            attempts: None,
            uid: None,
            message_id: None,
            folder: None,
            reason: None,
            master_user: None,
        }
    }

    /// The session record of (host, ID), made if new; its clock is moved to
    /// the line's.
    fn session(&mut self, line: &Line<'_>, id: SessId) -> &mut Session {
        let s = self.by_session.entry((line.host_id, id)).or_default();
        s.last_us = s.last_us.max(line.now_us);
        s
    }

    /// Makes room for the waiting rows of `host`.
    fn queue(&mut self, host: u32) {
        let h = host as usize;
        if self.waiting.len() <= h {
            self.waiting.resize_with(h + 1, VecDeque::new);
            self.kept.resize_with(h + 1, VecDeque::new);
            self.ended.resize_with(h + 1, VecDeque::new);
        }
    }

    /// Puts a new row in the queue. It is completed once, when it leaves
    /// (see [`AccessState::release_due`]), from everything known then: so
    /// its content does not depend on which lines came first. (A line read
    /// twice makes its row twice, completed alike; the store keeps one row
    /// per key.)
    fn hold(&mut self, line: &Line<'_>, row: AccessRow, fill: Fill, out: &mut Vec<AccessRow>) {
        // (Its session's clock was moved to the line's by the caller: the
        // session is kept as long as its rows may wait, see `sweep`.)
        let host = line.host_id;
        self.queue(host);
        out.push(row);
        self.waiting[host as usize].push_back(Held {
            host,
            read_us: line.now_us,
            fill,
            at: out.len() - 1,
        });
    }

    /// An auth verdict: kept for the failed logins it may explain (those
    /// waiting already included: they are completed when they leave).
    pub(crate) fn verdict(&mut self, cfg: &AccessSettings, line: &Line<'_>, f: &AuthFailure<'_>) {
        let Some(user) = self.mailbox(cfg, f.user) else {
            return;
        };
        let v = Verdict {
            host: line.host_id,
            session: f.session.and_then(SessId::new),
            user,
            ip: text(f.ip),
            reason: Text::from(f.reason),
            time_us: line.time_us,
            read_us: line.now_us,
        };
        self.refusals.push(v);
    }

    /// A master user's login: for the login row of its session (or, with
    /// none named, of the same mailbox and address).
    fn master_login(&mut self, cfg: &AccessSettings, line: &Line<'_>, m: &MasterLogin<'_>) {
        let Some(user) = self.mailbox(cfg, m.user) else {
            return;
        };
        let master = text(m.master);
        match m.session.and_then(SessId::new) {
            Some(id) => {
                let s = self.session(line, id);
                if s.master.as_ref().is_none_or(|old| master > *old) {
                    s.master = Some(master);
                }
            }
            None => {
                self.master_lines.push(MasterLine {
                    host: line.host_id,
                    user,
                    ip: text(m.ip),
                    master,
                    time_us: line.time_us,
                    read_us: line.now_us,
                });
            }
        }
    }

    /// Handles one Dovecot access line; returns false when it was none.
    /// Its row, if any, waits in the queue. Rows at the head of the queue
    /// whose wait on this line's host is over go to `out`; the others
    /// leave by [`AccessState::sweep`].
    pub(crate) fn feed(
        &mut self,
        cfg: &AccessSettings,
        line: &Line<'_>,
        program: &[u8],
        msg: &[u8],
        out: &mut Vec<AccessRow>,
    ) -> bool {
        self.release_due(line.host_id, line.now_us, out);
        if let Some(m) = dovecot::master_login(program, msg) {
            self.master_login(cfg, line, &m);
            return true;
        }
        let Some(a) = dovecot::parse(program, msg) else {
            return false;
        };
        match a {
            Access::Login { proto, fields, v24 } => {
                let Some(mailbox) = self.mailbox(cfg, fields.user) else {
                    return true;
                };
                let id = fields.session.and_then(SessId::new);
                let login = LoginInfo {
                    mailbox: mailbox.clone(),
                    rip: fields.rip.map(text),
                    v24,
                    webmail: Self::is_webmail(cfg, fields.rip),
                };
                let mut r = Self::row(line, mailbox, AccessKind::Login, proto);
                r.remote_ip = login.rip.clone();
                r.local_ip = fields.lip.map(|l| self.phrases.get(l));
                r.tls = Some(fields.tls);
                r.session = id.and(fields.session).map(text);
                r.reason = fields.method.map(|m| {
                    self.methods
                        .get_with(m, || Text::from(format!("method {}", string(m))))
                });
                r.master_user = Self::own_master(cfg, &fields);
                let webmail = login.webmail;
                if let Some(id) = id {
                    self.session(line, id).login = Some(login);
                }
                self.hold(
                    line,
                    r,
                    Fill::Login {
                        session: id,
                        webmail,
                    },
                    out,
                );
            }
            Access::LoginFailed {
                proto,
                fields,
                attempts,
                detail,
            } => {
                let Some(mailbox) = self.mailbox(cfg, fields.user) else {
                    return true;
                };
                let id = fields.session.and_then(SessId::new);
                let mut r = Self::row(line, mailbox, AccessKind::AuthFailed, proto);
                r.attempts = attempts.map(i64::from);
                r.remote_ip = fields.rip.map(text);
                r.local_ip = fields.lip.map(|l| self.phrases.get(l));
                r.tls = Some(fields.tls);
                r.session = id.and(fields.session).map(text);
                // Its own reason, unless a verdict of the auth process
                // explains it (see `Known::complete`).
                let fill = if dovecot::is_too_many_connections(msg) {
                    r.reason = Some(Text::from("too many connections"));
                    Fill::Done
                } else {
                    r.reason = Some(if dovecot::is_user_disabled(detail) {
                        Text::from("disabled user")
                    } else {
                        text(detail)
                    });
                    Fill::Refused { session: id }
                };
                self.hold(line, r, fill, out);
            }
            Access::ClientId {
                session,
                name,
                after_login,
            } => {
                let (Some(id), Some(n)) = (session.and_then(SessId::new), name) else {
                    return true;
                };
                let name = ClientName {
                    after_login,
                    time_us: line.time_us,
                    name: self.phrases.get(n),
                };
                let s = self.session(line, id);
                if s.client.as_ref().is_none_or(|old| name > *old) {
                    s.client = Some(name);
                }
            }
            Access::Session {
                proto,
                user,
                session,
                event,
            } => self.session_line(cfg, line, (proto, user, session), event, out),
        }
        true
    }

    /// A line of a logged-in session: `imap(USER)<PID><SESSION>: REST`,
    /// given with its protocol, user name and session ID.
    fn session_line(
        &mut self,
        cfg: &AccessSettings,
        line: &Line<'_>,
        (proto, user, session): (Proto, &[u8], Option<&[u8]>),
        event: SessionEvent<'_>,
        out: &mut Vec<AccessRow>,
    ) {
        let id = session.and_then(SessId::new);
        let kind = match event {
            SessionEvent::Logout { .. } => AccessKind::Logout,
            SessionEvent::Expunge { .. } => AccessKind::MessageDeleted,
            SessionEvent::MarkDeleted { .. } => AccessKind::MessageMarkedDeleted,
            SessionEvent::MailboxDeleted { .. } => AccessKind::MailboxDeleted,
            SessionEvent::Other => {
                if let Some(s) = id.and_then(|id| self.by_session.get_mut(&(line.host_id, id))) {
                    s.last_us = s.last_us.max(line.now_us);
                }
                return;
            }
        };
        // The session's clock moves to the line's (it is kept as long as
        // its rows may wait, see `sweep`); a logout marks its end, and it
        // is kept a little longer: lines of the session may still come, a
        // second or two behind.
        let session_rec = match id {
            Some(id) if kind == AccessKind::Logout => {
                self.queue(line.host_id);
                self.ended[line.host_id as usize].push_back((line.now_us, id));
                let s = self.session(line, id);
                s.ended_us = Some(s.ended_us.map_or(line.now_us, |e| e.min(line.now_us)));
                Some(s)
            }
            Some(id) => self.by_session.get_mut(&(line.host_id, id)).map(|s| {
                s.last_us = s.last_us.max(line.now_us);
                &mut **s
            }),
            None => None,
        };
        // The row's mailbox: its session's login's, when read already
        // (the session outlives the row's wait, so it is the one the row
        // leaves with); else the one the line's own user name stands for,
        // until a login read later gives the session's. Without either, and
        // with no session to find a login by, the row is of another domain.
        let mailbox = match session_rec.and_then(|s| s.login.as_ref()) {
            Some(l) => l.mailbox.clone(),
            None => match (self.mailbox(cfg, user), id) {
                (Some(m), _) => m,
                (None, Some(_)) => Text::default(),
                (None, None) => return,
            },
        };
        let mut r = Self::row(line, mailbox, kind, proto);
        r.session = id.and(session).map(text);
        let mut del = None;
        match event {
            SessionEvent::Logout { reason, counters } => {
                // Reasons with numbers in them (`IDLE running for 0.001 +
                // waiting input for 82.885 secs...`) seldom recur.
                r.reason = Some(if reason.iter().any(u8::is_ascii_digit) {
                    text(reason)
                } else {
                    self.phrases.get(reason)
                });
                let num = |v: u64| i64::try_from(v).ok();
                for (k, n, m) in dovecot::counters(counters) {
                    match (proto, k) {
                        (_, b"in") => r.in_bytes = num(n),
                        (_, b"out") => r.out_bytes = num(n),
                        // 1.x and ManageSieve: `bytes=IN/OUT`.
                        (_, b"bytes") => {
                            r.in_bytes = r.in_bytes.or(num(n));
                            r.out_bytes = r.out_bytes.or(m.and_then(num));
                        }
                        (Proto::Pop3, b"del") => {
                            r.deleted = num(n);
                            del = Some((n, m));
                        }
                        (Proto::Pop3, b"size") => r.size_bytes = num(n),
                        (Proto::Pop3, b"retr") => r.downloaded = num(n),
                        (Proto::Imap, b"deleted") => r.deleted = num(n),
                        (Proto::Imap, b"expunged") => r.expunged = num(n),
                        (Proto::Imap, b"trashed") => r.trashed = num(n),
                        (Proto::Imap, b"body_count") => r.downloaded = num(n),
                        _ => {}
                    }
                }
            }
            SessionEvent::Expunge { folder, uid, msgid }
            | SessionEvent::MarkDeleted { folder, uid, msgid } => {
                r.folder = folder.map(|f| self.phrases.get(f));
                r.uid = uid
                    .and_then(|u| std::str::from_utf8(u).ok())
                    .and_then(|u| u.parse().ok());
                r.message_id = msgid.map(string);
            }
            SessionEvent::MailboxDeleted { folder } => {
                r.folder = Some(self.phrases.get(folder));
            }
            SessionEvent::Other => {}
        }
        let fill = match id {
            Some(id) => Fill::Session { session: id, del },
            None => Fill::Done,
        };
        self.hold(line, r, fill, out);
    }

    /// Gives out the rows whose wait is over (all of them when `all`, the
    /// end of a one-shot ingest), in the order they were made, and forgets
    /// what waited too long; each host by its own clock (`now_of(host)`).
    /// Rows that never found a mailbox (a session of another domain) are
    /// dropped.
    pub(crate) fn sweep(
        &mut self,
        now_of: impl Fn(u32) -> i64,
        all: bool,
        out: &mut Vec<AccessRow>,
    ) {
        for host in 0..self.waiting.len() as u32 {
            let now = if all { i64::MAX } else { now_of(host) };
            self.release_due(host, now, out);
        }
        let keep = VERDICT_WINDOW_US + HOLD_US;
        self.refusals.retain(|v| v.read_us + keep > now_of(v.host));
        self.master_lines
            .retain(|m| m.read_us + keep > now_of(m.host));
        // Sessions that ended are forgotten once their rows can no longer
        // wait: none is read after the session's latest line.
        for (h, q) in self.ended.iter_mut().enumerate() {
            let now = now_of(h as u32);
            while let Some(&(t, id)) = q.front() {
                if t.saturating_add(HOLD_US) > now {
                    break;
                }
                q.pop_front();
                let Entry::Occupied(s) = self.by_session.entry((h as u32, id)) else {
                    continue;
                };
                let Some(ended) = s.get().ended_us else {
                    continue;
                };
                let last = ended.max(s.get().last_us);
                if last.saturating_add(HOLD_US) <= now {
                    s.remove();
                } else {
                    // A line of it came since: looked at again later.
                    q.push_back((last, id));
                }
            }
        }
        // Sessions are many and long-lived (IMAP IDLE): all are looked over
        // once in a while, not at every sweep.
        self.sweeps = self.sweeps.wrapping_add(1);
        if !all && !self.sweeps.is_multiple_of(SESSION_SWEEPS) {
            return;
        }
        self.by_session.retain(|(h, _), s| {
            let now = now_of(*h);
            match (s.ended_us, &s.login) {
                // Kept while its rows may still wait: none is read after
                // the session's latest line.
                (Some(e), _) => e.max(s.last_us) + HOLD_US > now,
                (None, Some(_)) => s.last_us + SESSION_STALE_US > now,
                // An IMAP ID or master-user line waiting for its login.
                (None, None) => s.last_us + keep > now,
            }
        });
    }

    /// Gives out, in order, the rows of `host` whose wait is over at `now`
    /// on that host's clock, each completed from everything known now.
    /// Rows that never found a mailbox (a session of another domain) are
    /// dropped.
    #[inline]
    fn release_due(&mut self, host: u32, now: i64, out: &mut Vec<AccessRow>) {
        // Called for every Dovecot line: mostly nothing is due.
        let first = self.waiting.get(host as usize).and_then(VecDeque::front);
        if first.is_some_and(|h| now >= h.read_us.saturating_add(HOLD_US)) {
            self.release(host, now, out);
        }
    }

    fn release(&mut self, host: u32, now: i64, out: &mut Vec<AccessRow>) {
        let Some(q) = self.waiting.get_mut(host as usize) else {
            return;
        };
        let known = Known {
            by_session: &self.by_session,
            refusals: &self.refusals,
            master_lines: &self.master_lines,
        };
        let kept = &mut self.kept[host as usize];
        while let Some(h) = q.front() {
            if now < h.read_us.saturating_add(HOLD_US) {
                break;
            }
            let row = match kept.front_mut() {
                Some(r) => r,
                None => &mut out[h.at],
            };
            known.complete(h, row);
            if row.mailbox.is_empty() {
                self.unnamed += 1;
            } else {
                self.given += 1;
            }
            q.pop_front();
            // A kept row joins the caller's now; the others are there
            // already.
            if let Some(r) = kept.pop_front() {
                out.push(r);
            }
        }
    }

    /// Makes the caller's rows final, before it takes them: rows still
    /// waiting are taken out of them and kept (part of the saved state),
    /// and rows that never found a mailbox (a session of another domain)
    /// are dropped. Call it before the rows leave, and before the state is
    /// saved.
    pub(crate) fn seal(&mut self, out: &mut Vec<AccessRow>) {
        // The entries whose rows are in `out`: each host's after its kept.
        let mut at: Vec<(usize, u32)> = Vec::new();
        for (h, q) in self.waiting.iter().enumerate() {
            let k = self.kept.get(h).map_or(0, VecDeque::len);
            at.extend(q.iter().skip(k).map(|w| (w.at, h as u32)));
        }
        if let Some(first) = at.iter().map(|a| a.0).min() {
            at.sort_unstable();
            let tail = out.split_off(first);
            let mut waiting = at.iter().peekable();
            for (i, row) in tail.into_iter().enumerate() {
                match waiting.peek() {
                    Some(&&(a, h)) if a == first + i => {
                        waiting.next();
                        self.kept[h as usize].push_back(row);
                    }
                    _ => out.push(row),
                }
            }
        }
        if self.unnamed > 0 {
            out.retain(|r| !r.mailbox.is_empty());
            self.unnamed = 0;
        }
    }

    /// Sessions and rows in memory now.
    pub(crate) fn in_flight(&self) -> usize {
        self.by_session.len() + self.rows_waiting()
    }

    /// Rows made final (and given a mailbox) since this was last asked.
    pub(crate) fn take_given(&mut self) -> u64 {
        std::mem::take(&mut self.given)
    }

    /// Rows made but still waiting for lines that may change them.
    pub(crate) fn rows_waiting(&self) -> usize {
        self.waiting.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::correlate::{Correlator, Rows, Settings};
    use crate::ingest::envelope::Clock;

    fn settings() -> Settings {
        Settings {
            local: LocalDomains::new(&[".example.edu".into()], "example.edu"),
            internal_relays: vec![],
            tz: chrono_tz::Asia::Taipei,
            webmail_networks: vec!["10.0.0.0/24".parse().unwrap()],
            agent: "default".into(),
        }
    }

    fn clock() -> Clock {
        Clock::new(
            chrono_tz::Asia::Taipei,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            None,
        )
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The access rows of `lines`, read in this order, to the end.
    fn run_lines(lines: &[&str]) -> Vec<AccessRow> {
        let mut c = Correlator::new(settings());
        let mut clock = clock();
        let mut out = Rows::default();
        for l in lines {
            c.feed(&mut clock, l.as_bytes(), &mut out);
        }
        c.finish(&mut out);
        assert!(out.smtp.is_empty());
        out.access
    }

    fn run(text: &str) -> Vec<AccessRow> {
        run_lines(&lines(text))
    }

    /// Rows in one order whatever order they left in (lines read out of
    /// order make their rows out of order too).
    /// Rows by time and key, as the store keeps them: a row made twice
    /// (a line read twice) once, if both are the same.
    fn by_key(mut rows: Vec<AccessRow>) -> Vec<AccessRow> {
        rows.sort_by_key(|r| (r.time_us, r.key));
        rows.dedup();
        rows
    }

    /// A small deterministic generator for shuffles.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    /// Every permutation of `v` (Heap's algorithm).
    fn permutations<T: Clone>(v: &[T]) -> Vec<Vec<T>> {
        fn go<T: Clone>(k: usize, v: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(v.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, v, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                v.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        go(v.len(), &mut v.to_vec(), &mut out);
        out
    }

    /// Sessions whose lines depend on each other, within two seconds.
    const TANGLED: &str = "
        Nov 23 10:00:00 mail dovecot: imap-login: ID sent: name=Thunderbird, version=115.0: user=<>, rip=10.0.0.5, lip=192.0.2.9, session=<IDS>
        Nov 23 10:00:00 mail dovecot: imap-login: Login: user=<a@example.edu>, method=PLAIN, rip=10.0.0.5, lip=192.0.2.9, mpid=7, TLS, session=<IDS>
        Nov 23 10:00:01 mail dovecot: imap(a@example.edu)<7><IDS>: expunge: box=INBOX, uid=3, msgid=<m3@x>, size=10
        Nov 23 10:00:01 mail dovecot: pop3-login: Login: user=<b@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, mpid=8, session=<POP>
        Nov 23 10:00:02 mail dovecot: pop3(b@example.edu)<8><POP>: Disconnected: Logged out top=0/0, retr=1/10, del=1/5, size=30
        Nov 23 10:00:01 mail dovecot: auth: passwd-file(c@example.edu,192.0.2.3,<BAD>): Password mismatch (given password: hunter2)
        Nov 23 10:00:02 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<c@example.edu>, method=PLAIN, rip=192.0.2.3, lip=192.0.2.9, session=<BAD>
        Nov 23 10:00:02 mail dovecot: imap(a@example.edu)<7><IDS>: Disconnected: Logged out in=10 out=20 deleted=1 expunged=1 trashed=0
    ";

    #[test]
    fn any_order_within_seconds_makes_the_same_rows() {
        let all = lines(TANGLED);
        let want = run_lines(&all);
        // What each late line would have taken away.
        let client: Vec<_> = want.iter().map(|r| r.client.as_deref()).collect();
        assert_eq!(
            client,
            [Some("webmail (Thunderbird)"); 6]
                .into_iter()
                .enumerate()
                .map(|(i, c)| [0, 1, 5].contains(&i).then_some(c).flatten())
                .collect::<Vec<_>>()
        );
        let logout = |rows: &[AccessRow], m: &str| {
            rows.iter()
                .find(|r| r.kind == Some(AccessKind::Logout) && r.mailbox == m)
                .cloned()
                .unwrap()
        };
        let pop = logout(&want, "b@example.edu");
        assert_eq!(
            (pop.remote_ip.as_deref(), pop.deleted, pop.retained),
            (Some("192.0.2.1"), Some(1), Some(4))
        );
        let failed = want
            .iter()
            .find(|r| r.kind == Some(AccessKind::AuthFailed))
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("password mismatch"));
        let want = by_key(want);
        // The two sessions' lines, each order of them (the rest in place).
        let imap: Vec<&str> = [0, 1, 2, 7].iter().map(|&i| all[i]).collect();
        for p in permutations(&imap) {
            let mut v = p.clone();
            v.extend([3, 4, 5, 6].iter().map(|&i| all[i]));
            assert_eq!(by_key(run_lines(&v)), want, "{p:#?}");
        }
        let rest: Vec<&str> = [3, 4, 5, 6].iter().map(|&i| all[i]).collect();
        for p in permutations(&rest) {
            let mut v: Vec<&str> = [0, 1, 2, 7].iter().map(|&i| all[i]).collect();
            v.extend(p.iter().copied());
            assert_eq!(by_key(run_lines(&v)), want, "{p:#?}");
        }
        // And shuffles of the whole, with lines read twice.
        let mut g = Lcg(42);
        for _ in 0..300 {
            let mut v = all.clone();
            for _ in 0..g.below(4) {
                let i = g.below(v.len());
                v.insert(g.below(v.len()), v[i]);
            }
            for i in (1..v.len()).rev() {
                v.swap(i, g.below(i + 1));
            }
            assert_eq!(by_key(run_lines(&v)), want, "{v:#?}");
        }
    }

    #[test]
    fn a_line_read_twice_makes_the_same_row_twice() {
        let all = lines(TANGLED);
        let want = run_lines(&all);
        let twice: Vec<&str> = all.iter().flat_map(|l| [*l, *l]).collect();
        let got = run_lines(&twice);
        assert_eq!(got.len(), 2 * want.len());
        assert_eq!(by_key(got), by_key(want));
    }

    #[test]
    fn master_users_are_named_on_their_logins() {
        let rows = run("
            Nov 23 10:00:00 mail dovecot: imap-login: Login: user=<a@example.edu>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.9, mpid=7, auth_user=<admin@example.edu>, session=<M1>
            Nov 23 10:00:01 mail dovecot: imap-login: Login: user=<a@example.edu>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.9, mpid=8, auth_user=<A>, session=<M2>
            Nov 23 10:00:02 mail dovecot: imap-login: Login: user=<a@example.edu>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.9, mpid=9, auth_user=<s1234>, orig_user=<s1234>, session=<M3>
            Nov 23 10:00:03 mail dovecot: pop3-login: Login: user=<b@example.edu>, method=PLAIN, rip=192.0.2.8, lip=192.0.2.9, mpid=10, session=<M4>
            Nov 23 10:00:03 mail dovecot: auth: passwd-file(root@example.edu,192.0.2.8,master,<M4>): Master user logging in as b@example.edu
            Nov 23 10:00:04 mail dovecot: auth: passwd-file(root@example.edu,192.0.2.9,master,<M5>): Master user logging in as c@example.edu
            Nov 23 10:00:04 mail dovecot: imap-login: Login: user=<c@example.edu>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.9, mpid=11, session=<M5>
            Nov 23 10:00:05 mail dovecot: auth: passdb(root,192.0.2.10,master): Master user logging in as d
            Nov 23 10:00:05 mail dovecot: imap-login: Login: user=<d>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.9
            Nov 23 10:00:06 mail dovecot: imap-login: Login: user=<d>, method=PLAIN, rip=192.0.2.11, lip=192.0.2.9
            Nov 23 10:00:07 mail dovecot: imap(c@example.edu)<11><M5>: Disconnected: Logged out in=1 out=2
        ");
        let masters: Vec<_> = rows
            .iter()
            .map(|r| (r.mailbox.as_str(), r.master_user.as_deref()))
            .collect();
        assert_eq!(
            masters,
            [
                ("a@example.edu", Some("admin@example.edu")),
                // The user itself, by another spelling or its login name.
                ("a@example.edu", None),
                ("a@example.edu", None),
                // Named by the auth process, before or after the login.
                ("b@example.edu", Some("root@example.edu")),
                ("c@example.edu", Some("root@example.edu")),
                // Without a session: the same mailbox and address.
                ("d@example.edu", Some("root")),
                ("d@example.edu", None),
                // Only the login says so.
                ("c@example.edu", None),
            ]
        );
    }

    #[test]
    fn an_id_longer_than_dovecot_writes_joins_nothing() {
        // Two IDs alike in their first 40 bytes: cut to fit, they would be
        // one session.
        let long = "A".repeat(40);
        let text = format!("
            Nov 23 10:00:00 mail dovecot: pop3-login: Login: user=<a@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, mpid=7, session=<{long}1>
            Nov 23 10:00:01 mail dovecot: pop3(b@example.edu)<8><{long}2>: Disconnected: Logged out top=0/0, retr=1/10, del=1/5, size=30
            Nov 23 10:00:02 mail dovecot: imap-login: Login: user=<a@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, mpid=9, session=<Ioa5KGROsLUqAQT4DBcBRgAAAAAAAAAC>
            Nov 23 10:00:03 mail dovecot: imap(a@example.edu)<9><Ioa5KGROsLUqAQT4DBcBRgAAAAAAAAAC>: Disconnected: Logged out in=1 out=2
        ");
        let rows = run(&text);
        let seen: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.mailbox.as_str(),
                    r.session.as_deref(),
                    r.remote_ip.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a@example.edu", None, Some("192.0.2.1")),
                ("b@example.edu", None, None),
                // An IPv6 client's ID (32 characters) is one.
                (
                    "a@example.edu",
                    Some("Ioa5KGROsLUqAQT4DBcBRgAAAAAAAAAC"),
                    Some("192.0.2.1")
                ),
                (
                    "a@example.edu",
                    Some("Ioa5KGROsLUqAQT4DBcBRgAAAAAAAAAC"),
                    Some("192.0.2.1")
                ),
            ]
        );
    }

    #[test]
    fn a_state_saved_before_the_queue_loads_empty() {
        let old = r#"{"sessions":[[[0,"R6eQHOlgS5t/AAAB"],{"user":"a@example.edu","rip":"192.0.2.1","v24":false,"client":null,"last_us":5}]],"ids":[],"verdicts":[{"host":0,"session":null,"user":"a@example.edu","ip":"192.0.2.1","reason":"unknown user","time_us":3}]}"#;
        let st: AccessState = serde_json::from_str(old).unwrap();
        assert_eq!(st.in_flight(), 0);
        assert!(st.refusals.is_empty());
    }

    #[test]
    fn rows_wait_the_hold_time_by_their_hosts_clock() {
        let cfg = AccessSettings {
            local: LocalDomains::new(&[".example.edu".into()], "example.edu"),
            webmail_networks: vec![],
        };
        let host = Text::from("mail");
        let mut st = AccessState::default();
        let mut out = Vec::new();
        let sweep_every = 7 * 1_000_000;
        let mut last_sweep = 0;
        // A login a second, each with its logout; one line stamped a
        // month ahead changes nothing.
        for i in 0..120i64 {
            let t = i * 1_000_000;
            for (k, msg) in [
                format!("pop3-login: Login: user=<u{i}@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, session=<S{i}>"),
                format!("pop3(u{i}@example.edu)<1><S{i}>: Disconnected: Logged out top=0/0, retr=0/0, del=0/1, size=1"),
            ]
            .iter()
            .enumerate()
            {
                let line = Line {
                    host_id: 0,
                    host: &host,
                    key: i * 2 + k as i64,
                    time_us: if i == 50 { t + 30 * 86_400 * 1_000_000 } else { t },
                    now_us: t,
                    day: 20261123,
                };
                let before = out.len();
                st.feed(&cfg, &line, b"dovecot", msg.as_bytes(), &mut out);
                if t - last_sweep >= sweep_every {
                    last_sweep = t;
                    st.sweep(|_| t, false, &mut out);
                }
                // What is final leaves; what waits is taken back.
                st.seal(&mut out);
                for r in &out[before..] {
                    let made = (r.key / 2) * 1_000_000;
                    assert!(t - made >= HOLD_US, "{} left after {} µs", r.key, t - made);
                    assert!(t - made <= HOLD_US + sweep_every, "{} left after {} µs", r.key, t - made);
                }
            }
        }
        // In the order they were made.
        let keys: Vec<i64> = out.iter().map(|r| r.key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.len() > 200);
        st.sweep(|_| 0, true, &mut out);
        st.seal(&mut out);
        assert_eq!(out.len(), 240);
    }

    #[test]
    fn retained_is_unknown_for_dovecot_2_4_and_for_unseen_logins() {
        // 2.4: `Logged in:`, and del=D/B counts bytes.
        let rows = run("
            Nov 23 10:00:00 mail dovecot: pop3-login: Logged in: user=<a@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, mpid=7, TLS, session=<S24>
            Nov 23 10:00:05 mail dovecot: pop3(a@example.edu)<7><S24>: Disconnected: Logged out top=0/0, retr=2/500, del=2/500, size=9000
            Nov 23 10:01:05 mail dovecot: pop3(b@example.edu)<8><NOLOGIN>: Disconnected: Logged out top=0/0, retr=1/100, del=1/4, size=100
        ");
        let logouts: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == Some(AccessKind::Logout))
            .collect();
        assert_eq!(logouts.len(), 2);
        assert_eq!((logouts[0].deleted, logouts[0].retained), (Some(2), None));
        assert_eq!(logouts[0].remote_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!((logouts[1].deleted, logouts[1].retained), (Some(1), None));
        assert_eq!(&*logouts[1].mailbox, "b@example.edu");
    }

    #[test]
    fn sessions_are_joined_by_id_not_by_order() {
        // Two sessions of one user interleaved, from two addresses.
        let rows = run("
            Nov 23 10:00:00 mail dovecot: pop3-login: Login: user=<a@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, mpid=7, session=<AAA>
            Nov 23 10:00:00 mail dovecot: pop3-login: Login: user=<a@example.edu>, method=PLAIN, rip=10.0.0.5, lip=192.0.2.9, mpid=8, session=<BBB>
            Nov 23 10:00:01 mail dovecot: pop3(a@example.edu)<8><BBB>: expunge: box=INBOX, uid=2, msgid=<two@x>, size=10
            Nov 23 10:00:01 mail dovecot: pop3(a@example.edu)<7><AAA>: expunge: box=INBOX, uid=1, msgid=<one@x>, size=10
            Nov 23 10:00:02 mail dovecot: pop3(a@example.edu)<7><AAA>: Disconnected: Logged out top=0/0, retr=1/10, del=1/3, size=30
            Nov 23 10:00:02 mail dovecot: pop3(a@example.edu)<8><BBB>: Disconnected: Logged out top=0/0, retr=1/10, del=1/2, size=20
            Nov 23 10:00:03 other dovecot: pop3(a@example.edu)<7><AAA>: expunge: box=INBOX, uid=9, msgid=<elsewhere@x>, size=10
        ");
        let del: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == Some(AccessKind::MessageDeleted))
            .map(|r| {
                (
                    r.message_id.clone().unwrap(),
                    r.remote_ip.as_deref().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            del,
            [
                ("<two@x>".to_owned(), Some("10.0.0.5".to_owned())),
                ("<one@x>".to_owned(), Some("192.0.2.1".to_owned())),
                // Same session ID on another host: not that session.
                ("<elsewhere@x>".to_owned(), None),
            ]
        );
        let retained: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == Some(AccessKind::Logout))
            .map(|r| r.retained)
            .collect();
        assert_eq!(retained, [Some(2), Some(1)]);
        // The webmail network labels its session.
        assert!(rows.iter().any(|r| r.client.as_deref() == Some("webmail")
            && r.remote_ip.as_deref() == Some("10.0.0.5")));
    }

    #[test]
    fn failed_login_takes_the_final_verdict_of_its_session() {
        let rows = run("
            Nov 23 10:00:00 mail dovecot: auth: passwd-file(a@example.edu,192.0.2.1,<S1>): unknown user (given password: hunter2) - trying the next passdb
            Nov 23 10:00:00 mail dovecot: auth: sql(a@example.edu,192.0.2.1,<S1>): Password mismatch (given password: hunter2)
            Nov 23 10:00:01 mail dovecot: auth: passwd-file(z@example.edu,192.0.2.2,<S2>): unknown user
            Nov 23 10:00:03 mail dovecot: imap-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 3 secs): user=<a@example.edu>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.9, session=<S1>
            Nov 23 10:00:04 mail dovecot: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 3 secs): user=<z@example.edu>, method=PLAIN, rip=192.0.2.2, lip=192.0.2.9, session=<S2>
            Nov 23 10:00:05 mail dovecot: imap-login: Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10): user=<a@example.edu>, method=PLAIN, rip=192.0.2.3, lip=192.0.2.9, session=<S3>
            Nov 23 10:00:06 mail dovecot: pop3-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=192.0.2.4, lip=192.0.2.9, session=<S4>
        ");
        let failed: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.mailbox.to_string(),
                    r.reason.as_deref().unwrap().to_owned(),
                    r.attempts,
                )
            })
            .collect();
        assert_eq!(
            failed,
            [
                (
                    "a@example.edu".to_owned(),
                    "password mismatch".to_owned(),
                    Some(1)
                ),
                (
                    "z@example.edu".to_owned(),
                    "unknown user".to_owned(),
                    Some(1)
                ),
                (
                    "a@example.edu".to_owned(),
                    "too many connections".to_owned(),
                    None
                ),
            ]
        );
        assert!(rows.iter().all(|r| r.kind == Some(AccessKind::AuthFailed)));
    }
}
