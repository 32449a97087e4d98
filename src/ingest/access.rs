//! Mailbox access: Dovecot's lines joined into per-mailbox access events.
//!
//! Dovecot names each login with a session ID (`session=<UXdX/9u52oxbQgr8>`)
//! that its later lines carry (`imap(user)<pid><UXdX/9u52oxbQgr8>: ...`),
//! and so do the auth process's verdicts and the pre-login IMAP ID line.
//! Lines are joined by (host, session), never by order:
//!
//! * a login is one `login` event, with the remote and local address, TLS,
//!   and the client name when IMAP ID gave one before it;
//! * the session's mail_log lines are `message_deleted` (expunge),
//!   `message_marked_deleted` (the \Deleted flag) and `mailbox_deleted`,
//!   and carry the session's remote address;
//! * its end is one `logout` event with what the session did: POP3's
//!   `del=D/M` is D deleted and M-D retained (Dovecot 2.3 and older; in 2.4
//!   M means bytes, so retained is unknown), IMAP's bytes in/out and
//!   deleted/expunged/trashed counts;
//! * a failed login is one `auth_failed` event, with the attempts and the
//!   reason from the auth process's verdict on the same session (or, when
//!   the verdict names no session, the same user and address just before).
//!
//! Nothing of an auth line but the classified reason is kept: Dovecot can
//! log the password that was tried, and that never leaves this module.

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::correlate::{Phrases, Text, lossy as string, lossy_text as text};
use super::dovecot::{self, Access, AuthFailure, Proto, SessionEvent};
#[cfg(doc)]
use super::mailboxes::Mailboxes;
use crate::domain::{LocalDomains, normalize_logged_address_into};

/// How long a verdict waits for its login-process line: a client may take
/// a while to give up after a refusal.
const VERDICT_WINDOW_US: i64 = 120 * 1_000_000;
/// Sessions with no line for this long are forgotten (IMAP IDLE sessions
/// last hours, so be generous).
const SESSION_STALE_US: i64 = 3 * 86_400 * 1_000_000;

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

/// One stored access fact about one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    pub mailbox_no: Option<u32>,
    pub kind: Option<AccessKind>,
    pub host: Text,
    pub protocol: Option<&'static str>,
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
}

/// Settings the access correlation needs.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub local: LocalDomains,
    pub webmail_networks: Vec<IpNet>,
}

/// A logged-in session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    user: Text,
    rip: Option<Text>,
    /// Logged by Dovecot 2.4 (`Logged in:`): POP3's `del=D/B` is then
    /// count/bytes, not count/messages.
    v24: bool,
    client: Option<Text>,
    last_us: i64,
    /// The session ID as the rows show it, made once at login (a restored
    /// session makes it again from its lines).
    #[serde(skip)]
    id: Option<Text>,
}

/// An auth verdict waiting for its login-process line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verdict {
    host: u32,
    session: Option<Text>,
    user: Text,
    ip: Text,
    reason: String,
    time_us: i64,
}

/// Everything remembered between Dovecot lines; part of the saved state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessState {
    /// (host, session ID) → session, stored as a list of pairs.
    #[serde(with = "pairs")]
    sessions: FxHashMap<(u32, SessId), Session>,
    /// Client names from pre-login IMAP ID lines, by (host, session).
    #[serde(with = "pairs")]
    ids: FxHashMap<(u32, SessId), (Text, i64)>,
    verdicts: Vec<Verdict>,
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

/// A session ID, inline so map lookups need no allocation. Dovecot's are
/// 16 to 22 characters; longer ones are cut (still unique enough to join).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SessId {
    len: u8,
    bytes: [u8; SessId::MAX],
}

impl SessId {
    /// Longest ID kept whole.
    const MAX: usize = 31;

    fn new(s: &[u8]) -> SessId {
        let mut bytes = [0u8; Self::MAX];
        let n = s.len().min(Self::MAX);
        bytes[..n].copy_from_slice(&s[..n]);
        SessId {
            len: n as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl Serialize for SessId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for SessId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SessId, D::Error> {
        Ok(SessId::new(String::deserialize(d)?.as_bytes()))
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
        ip.and_then(|ip| std::str::from_utf8(ip).ok())
            .map(|s| s.trim_start_matches("::ffff:"))
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| cfg.webmail_networks.iter().any(|n| n.contains(&ip)))
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
        }
    }

    /// An auth verdict: remembered for the failed login it explains.
    pub(crate) fn verdict(&mut self, cfg: &AccessSettings, line: &Line<'_>, f: &AuthFailure<'_>) {
        let Some(user) = self.mailbox(cfg, f.user) else {
            return;
        };
        self.verdicts.push(Verdict {
            host: line.host_id,
            session: f.session.map(text),
            user,
            ip: text(f.ip),
            reason: f.reason.to_owned(),
            time_us: line.time_us,
        });
    }

    /// Handles one Dovecot access line; returns false when it was none.
    pub(crate) fn feed(
        &mut self,
        cfg: &AccessSettings,
        line: &Line<'_>,
        program: &[u8],
        msg: &[u8],
        out: &mut Vec<AccessRow>,
    ) -> bool {
        let Some(a) = dovecot::parse(program, msg) else {
            return false;
        };
        match a {
            Access::Login { proto, fields, v24 } => {
                let Some(mailbox) = self.mailbox(cfg, fields.user) else {
                    return true;
                };
                let mut client = fields
                    .session
                    .and_then(|s| self.ids.remove(&(line.host_id, SessId::new(s))))
                    .map(|(c, _)| c);
                if Self::is_webmail(cfg, fields.rip) {
                    client = Some(Text::from(match client {
                        Some(c) => format!("webmail ({c})"),
                        None => "webmail".to_owned(),
                    }));
                }
                let rip = fields.rip.map(text);
                let session = fields.session.map(text);
                if let Some(s) = fields.session {
                    self.sessions.insert(
                        (line.host_id, SessId::new(s)),
                        Session {
                            user: mailbox.clone(),
                            rip: rip.clone(),
                            v24,
                            client: client.clone(),
                            last_us: line.now_us,
                            id: session.clone(),
                        },
                    );
                }
                let mut r = Self::row(line, mailbox, AccessKind::Login, proto);
                r.remote_ip = rip;
                r.local_ip = fields.lip.map(|l| self.phrases.get(l));
                r.tls = Some(fields.tls);
                r.session = session;
                r.client = client;
                r.reason = fields.method.map(|m| {
                    self.methods
                        .get_with(m, || Text::from(format!("method {}", string(m))))
                });
                out.push(r);
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
                let session = fields.session.map(text);
                let rip = fields.rip.map(text);
                // The latest verdict is the one that counted.
                let found = self.verdicts.iter().rposition(|v| {
                    v.host == line.host_id
                        && match (&v.session, &session) {
                            (Some(a), Some(b)) => a == b,
                            _ => {
                                v.user == mailbox
                                    && Some(&v.ip) == rip.as_ref()
                                    && v.time_us >= line.time_us - VERDICT_WINDOW_US
                            }
                        }
                });
                let verdict = found.map(|i| self.verdicts.remove(i).reason);
                if let Some(s) = &session {
                    self.verdicts
                        .retain(|v| !(v.host == line.host_id && v.session.as_ref() == Some(s)));
                }
                let reason = if dovecot::is_too_many_connections(msg) {
                    Text::from("too many connections")
                } else if let Some(v) = verdict {
                    Text::from(v)
                } else if dovecot::is_user_disabled(detail) {
                    Text::from("disabled user")
                } else {
                    text(detail)
                };
                let mut r = Self::row(line, mailbox, AccessKind::AuthFailed, proto);
                r.attempts = attempts.map(i64::from);
                r.remote_ip = rip;
                r.local_ip = fields.lip.map(|l| self.phrases.get(l));
                r.tls = Some(fields.tls);
                r.session = session;
                r.reason = Some(reason);
                out.push(r);
            }
            Access::ClientId { session, name } => {
                let (Some(s), Some(n)) = (session, name) else {
                    return true;
                };
                let key = (line.host_id, SessId::new(s));
                let name = self.phrases.get(n);
                match self.sessions.get_mut(&key) {
                    Some(sess) => sess.client = Some(name),
                    None => {
                        self.ids.insert(key, (name, line.time_us));
                    }
                }
            }
            Access::Session {
                proto,
                user,
                session,
                event,
            } => {
                let key = session.map(|s| (line.host_id, SessId::new(s)));
                let kind = match event {
                    SessionEvent::Logout { .. } => AccessKind::Logout,
                    SessionEvent::Expunge { .. } => AccessKind::MessageDeleted,
                    SessionEvent::MarkDeleted { .. } => AccessKind::MessageMarkedDeleted,
                    SessionEvent::MailboxDeleted { .. } => AccessKind::MailboxDeleted,
                    SessionEvent::Other => {
                        if let Some(v) = key.and_then(|k| self.sessions.get_mut(&k)) {
                            v.last_us = line.now_us;
                        }
                        return true;
                    }
                };
                // The session's login, if it was read: its logout ends it.
                let sess = match key {
                    Some(k) if kind == AccessKind::Logout => self.sessions.remove(&k),
                    Some(k) => self.sessions.get_mut(&k).map(|v| {
                        v.last_us = line.now_us;
                        v.clone()
                    }),
                    None => None,
                };
                let (mailbox, rip, client, v24, id) = match sess {
                    Some(s) => (s.user, s.rip, s.client, Some(s.v24), s.id),
                    None => match self.mailbox(cfg, user) {
                        Some(m) => (m, None, None, None, None),
                        None => return true,
                    },
                };
                let mut r = Self::row(line, mailbox, kind, proto);
                r.remote_ip = rip;
                // The session was found by this line's ID, so its text is
                // the line's, unless the ID is longer than a `SessId` holds
                // (such IDs share a key).
                r.session = id
                    .filter(|i| session.is_some_and(|s| s.len() < SessId::MAX || i.as_bytes() == s))
                    .or_else(|| session.map(text));
                r.client = client;
                match event {
                    SessionEvent::Logout { reason, counters } => {
                        // Reasons with numbers in them (`IDLE running for
                        // 0.001 + waiting input for 82.885 secs...`) seldom
                        // recur.
                        r.reason = Some(if reason.iter().any(u8::is_ascii_digit) {
                            text(reason)
                        } else {
                            self.phrases.get(reason)
                        });
                        let num = |v: u64| i64::try_from(v).ok();
                        // Known only when the session's login showed the
                        // version (2.3 and older: `del=D/M` with M messages).
                        let retained_known = v24 == Some(false);
                        for (k, n, m) in dovecot::counters(counters) {
                            match (proto, k) {
                                (_, b"in") => r.in_bytes = num(n),
                                (_, b"out") => r.out_bytes = num(n),
                                (Proto::Pop3, b"del") => {
                                    r.deleted = num(n);
                                    if retained_known {
                                        r.retained = m.and_then(|m| num(m.saturating_sub(n)));
                                    }
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
                out.push(r);
            }
        }
        true
    }

    /// Forgets what waited too long, each host by its own clock
    /// (`now_of(host)`). `all` is the end of a one-shot ingest: whatever
    /// rows are still held are given out. Rows go to `out`.
    pub(crate) fn sweep(
        &mut self,
        now_of: impl Fn(u32) -> i64,
        all: bool,
        out: &mut Vec<AccessRow>,
    ) {
        let _ = (all, out);
        self.verdicts
            .retain(|v| v.time_us + VERDICT_WINDOW_US > now_of(v.host));
        self.ids
            .retain(|(h, _), (_, t)| *t + VERDICT_WINDOW_US > now_of(*h));
        self.sessions
            .retain(|(h, _), s| s.last_us + SESSION_STALE_US > now_of(*h));
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::correlate::{Correlator, Rows, Settings};
    use crate::ingest::envelope::Clock;

    fn run(lines: &str) -> Vec<AccessRow> {
        let mut c = Correlator::new(Settings {
            local: LocalDomains::new(&[".example.edu".into()], "example.edu"),
            internal_relays: vec![],
            tz: chrono_tz::Asia::Taipei,
            webmail_networks: vec!["10.0.0.0/24".parse().unwrap()],
            agent: "default".into(),
        });
        let mut clock = Clock::new(
            chrono_tz::Asia::Taipei,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            None,
        );
        let mut out = Rows::default();
        for l in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            c.feed(&mut clock, l.as_bytes(), &mut out);
        }
        c.finish(&mut out);
        assert!(out.smtp.is_empty());
        out.access
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
