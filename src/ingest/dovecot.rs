//! Dovecot lines.
//!
//! The ingest uses the auth process's verdicts on a password, which name the
//! user that Postfix before 3.9 leaves out of its own `SASL ...
//! authentication failed` line when Dovecot is its SASL server.
//!
//! [`parse`] also reads the lines of mailbox access (logins, failed logins,
//! logouts with their counters, `mail_log` deletions, IMAP ID) of IMAP,
//! POP3, submission and ManageSieve, in the shapes of Dovecot 1.x to 2.4,
//! and [`master_login`] the auth process's line on a master user's login;
//! the access history is built on them.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Substring searches, each built once: `memmem::find` builds its searcher
/// again on every call, which cost more than the search on lines this short.
macro_rules! needles {
    ($($name:ident = $text:literal;)*) => {
        $(static $name: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new($text));)*
    };
}

needles! {
    NEXT_PASSDB = b"trying the next passdb";
    GIVEN_PASSWORD = b"(given password";
    MASTER_LOGIN = b"Master user logging in as ";
    MISMATCH = b"assword mismatch";
    INVALID_CREDENTIALS = b"nvalid credentials";
    PAM_FAILED = b"pam_authenticate() failed";
    UNKNOWN_USER = b"unknown user";
    ALLOW_NETS = b"allow_nets";
    NOT_ALLOWED = b"not in allowed networks";
    DISABLED = b"disabled";
    NOLOGIN = b"nologin";
    CLOSE_REASON = b"): ";
    AUTH_FAILED = b"auth failed";
    AUTHZ_FAILED = b"authorization failed";
    USER_DISABLED = b"user disabled";
    PASSWORD_EXPIRED = b"password expired";
    ATTEMPTS = b" attempts";
    MAX_CONNECTIONS = b"Maximum number of connections";
    BOX_KEY = b"box=";
    UID_KEY = b"uid=";
    NAME_KEY = b"name=";
    MSGID_KEY = b"msgid=";
}

/// True when `needle` occurs in `hay`.
fn has(hay: &[u8], needle: &Finder<'_>) -> bool {
    needle.find(hay).is_some()
}

/// A login refused for too many connections from the user and address.
pub(crate) fn is_too_many_connections(msg: &[u8]) -> bool {
    has(msg, &MAX_CONNECTIONS)
}

/// A failed login's detail that says the account is disabled.
pub(crate) fn is_user_disabled(detail: &[u8]) -> bool {
    has(detail, &USER_DISABLED)
}

/// True when the program of a line is Dovecot's: `dovecot` through syslog, or
/// one of its processes (`auth`, `imap-login`, `submission-login`, ...) in
/// its own log file.
pub fn is_dovecot(program: &[u8], host: &[u8]) -> bool {
    program == b"dovecot"
        || (host.is_empty()
            && [
                &b"auth"[..],
                b"imap",
                b"pop3",
                b"IMAP",
                b"POP3",
                b"submission",
                b"managesieve",
                b"lmtp",
                b"master",
            ]
            .iter()
            .any(|p| program.starts_with(p)))
}

/// A refused password check, as the auth process logs it with
/// `auth_verbose = yes` (2.3 and 2.4 shapes):
///
/// `auth: passwd-file(carol@example.edu,127.0.0.5): Password mismatch`
/// `auth-worker(304): pam(username,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)`
/// `auth: sql(admin@example.ru,192.168.144.226,<6rXunFtu493AqJDi>): Password mismatch`
/// `auth-worker(57065): Info: conn unix:auth-worker (uid=143): auth-worker<225622>: sql(u@d,192.0.2.7,<sess>): Password mismatch`
/// `auth(info@example.com,192.0.2.110,sasl:login)<CvN+E95Uf4e7eEnj>: Info: sql: Password mismatch (given password: ...)`
/// `auth-worker(jose.basanta,138.255.206.154)<1489164><8oNSumM3A8mK/86a>: request [393]: unix_user: pam_authenticate() failed: ...`
///
/// Nothing after the reason (such as a logged password) is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure<'a> {
    pub user: &'a [u8],
    pub ip: &'a [u8],
    /// The login session it belongs to, when logged.
    pub session: Option<&'a [u8]>,
    /// `password mismatch`, `unknown user`, `disabled user` or
    /// `address not allowed`.
    pub reason: &'static str,
}

/// Classifies the text of an auth verdict; `None` when it is not a refusal.
fn auth_reason(text: &[u8]) -> Option<&'static str> {
    // With several passdbs, a miss in one is not the verdict.
    if has(text, &NEXT_PASSDB) {
        return None;
    }
    // A password Dovecot logged is no part of the reason, and must not be
    // read as one (`(given password: disabled)`).
    let text = &text[..GIVEN_PASSWORD.find(text).unwrap_or(text.len())];
    let has = |n: &Finder<'_>| has(text, n);
    if has(&MISMATCH) || has(&PAM_FAILED) || has(&INVALID_CREDENTIALS) {
        Some("password mismatch")
    } else if has(&UNKNOWN_USER) {
        Some("unknown user")
    } else if has(&ALLOW_NETS) || has(&NOT_ALLOWED) {
        Some("address not allowed")
    } else if has(&DISABLED) || has(&NOLOGIN) {
        Some("disabled user")
    } else {
        None
    }
}

/// Who an auth line is about, from its `(user,ip,...)` group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AuthSubject<'a> {
    user: &'a [u8],
    ip: &'a [u8],
    session: Option<&'a [u8]>,
}

/// `user,ip[,more]` (2.3 puts `master` and `<session>` among the more,
/// 2.4 `sasl:plain` and `master`; LDAP leaves an empty one: `u,ip,`).
fn subject(inside: &[u8]) -> Option<AuthSubject<'_>> {
    let mut parts = inside.split(|&b| b == b',');
    let user = parts.next().filter(|u| !u.is_empty() && *u != b"?")?;
    let ip = parts.next().filter(|i| !i.is_empty())?;
    let session = parts.find_map(|p| p.strip_prefix(b"<").and_then(|p| p.strip_suffix(b">")));
    Some(AuthSubject { user, ip, session })
}

/// Splits an auth process's line into who it is about and what it says
/// (the text after the subject, severity word dropped). `program` and
/// `msg` are as the envelope split them.
fn auth_line<'a>(program: &'a [u8], msg: &'a [u8]) -> Option<(AuthSubject<'a>, &'a [u8])> {
    // The process prefix: `auth`, `auth-worker(304)`, 2.4's
    // `auth(user,ip,sasl:login)<session>`; from syslog it leads the message.
    let (prefix, m) = if program == b"dovecot" {
        if !msg.starts_with(b"auth") {
            return None;
        }
        let c = super::postfix::find_pair(msg, b':', b' ')?;
        (&msg[..c], &msg[c + 2..])
    } else if program.starts_with(b"auth") {
        (program, msg)
    } else {
        return None;
    };
    let m = m.strip_prefix(b"Info: ").unwrap_or(m);
    // 2.4: the user and address are in the process prefix, then
    // `<session>` (auth) or `<pid><session>` (auth-worker).
    let worker = prefix.starts_with(b"auth-worker(");
    if let Some(inner) = prefix
        .strip_prefix(b"auth(")
        .or_else(|| prefix.strip_prefix(b"auth-worker("))
        && let Some(close) = memchr::memchr(b')', inner)
        && memchr::memchr(b',', &inner[..close]).is_some()
    {
        let mut s = subject(&inner[..close])?;
        let mut groups = angle_groups(&inner[close + 1..]);
        if worker {
            groups.next();
        }
        s.session = s.session.or(groups.next());
        return Some((s, m));
    }
    // 2.3: `driver(user,ip[,master][,<session>]): text`, after the auth
    // worker's connection and request (`conn unix:auth-worker (uid=143):
    // auth-worker<225622>: `) when it comes from one.
    let mut m = m;
    if m.starts_with(b"conn ") {
        m = &m[CLOSE_REASON.find(m)? + 3..];
    }
    if m.starts_with(b"auth-worker<") {
        m = &m[find_byte(b'>', m)? + 1..];
        m = m.strip_prefix(b": ")?;
    }
    let open = memchr::memchr(b'(', m)?;
    if open == 0
        || open > 20
        || !m[..open]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return None;
    }
    let close = open + CLOSE_REASON.find(&m[open..])?;
    Some((subject(&m[open + 1..close])?, &m[close + 3..]))
}

/// Recognises [`AuthFailure`] in a Dovecot line (program and message as the
/// envelope split them).
pub fn auth_failure<'a>(program: &'a [u8], msg: &'a [u8]) -> Option<AuthFailure<'a>> {
    let (s, text) = auth_line(program, msg)?;
    // The target of a master login is no verdict, whatever its name holds.
    if has(text, &MASTER_LOGIN) {
        return None;
    }
    Some(AuthFailure {
        user: s.user,
        ip: s.ip,
        session: s.session,
        reason: auth_reason(text)?,
    })
}

/// A master user's login to someone else's mailbox, as the auth process
/// logs it with `auth_verbose = yes` (`auth-request.c`,
/// `auth_request_master_user_login_finish`): the prefix names the master
/// user (and `master`), the text the mailbox it opens:
///
/// `auth: passwd-file(admin@example.edu,192.0.2.7,master,<S2wRH+lgK6F/AAAB>): Master user logging in as alice@example.edu`
/// (2.2: `passdb(_mwi-master,127.0.0.1,master,<qR6mho3OtgBMv/lE>): Master user logging in as augie`;
/// 2.4: `auth(admin,192.0.2.7,sasl:plain,master)<S>: passwd-file: Master user logging in as alice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterLogin<'a> {
    /// The master user, who authenticated.
    pub master: &'a [u8],
    /// The mailbox opened.
    pub user: &'a [u8],
    pub ip: &'a [u8],
    pub session: Option<&'a [u8]>,
}

/// Recognises [`MasterLogin`] in a Dovecot line. Dovecot 2.3 (seen with
/// 2.3.19 and a passwd-file master passdb) may log the line with no
/// prefix at all, naming neither the master user, nor the address, nor the
/// session: `auth: Master user logging in as alice@example.edu`; then
/// `master` and `ip` are empty.
pub fn master_login<'a>(program: &'a [u8], msg: &'a [u8]) -> Option<MasterLogin<'a>> {
    if let Some(user) = bare_master_login(program, msg) {
        return Some(MasterLogin {
            master: b"",
            user,
            ip: b"",
            session: None,
        });
    }
    let (s, text) = auth_line(program, msg)?;
    let at = MASTER_LOGIN.find(text)? + MASTER_LOGIN.needle().len();
    let user = &text[at..];
    let user = &user[..find_byte(b' ', user).unwrap_or(user.len())];
    (!user.is_empty()).then_some(MasterLogin {
        master: s.user,
        user,
        ip: s.ip,
        session: s.session,
    })
}

/// The mailbox of `auth: Master user logging in as USER` with nothing
/// before it (Dovecot 2.3's `auth: Info: ...` in its own file).
fn bare_master_login<'a>(program: &'a [u8], msg: &'a [u8]) -> Option<&'a [u8]> {
    let text = if program == b"dovecot" {
        msg.strip_prefix(b"auth: ")?
    } else if program == b"auth" {
        msg
    } else {
        return None;
    };
    let text = text.strip_prefix(b"Info: ").unwrap_or(text);
    let user = text.strip_prefix(b"Master user logging in as ")?;
    let user = &user[..find_byte(b' ', user).unwrap_or(user.len())];
    (!user.is_empty()).then_some(user)
}

/// The service a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Imap,
    Pop3,
    /// Dovecot's SMTP submission service.
    Submission,
    /// Sieve filter scripts, managed over ManageSieve.
    ManageSieve,
}

impl Proto {
    /// Every service, in the order views show them.
    pub const ALL: [Proto; 4] = [
        Proto::Imap,
        Proto::Pop3,
        Proto::Submission,
        Proto::ManageSieve,
    ];

    fn from_prefix(s: &[u8]) -> Option<Proto> {
        match s {
            b"imap" | b"imap-login" | b"IMAP" => Some(Proto::Imap),
            b"pop3" | b"pop3-login" | b"POP3" => Some(Proto::Pop3),
            b"submission" | b"submission-login" => Some(Proto::Submission),
            b"managesieve" | b"managesieve-login" => Some(Proto::ManageSieve),
            _ => None,
        }
    }

    /// The protocol as stored and shown (`imap`, `pop3`, `submission`,
    /// `managesieve`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Imap => "imap",
            Proto::Pop3 => "pop3",
            Proto::Submission => "submission",
            Proto::ManageSieve => "managesieve",
        }
    }

    /// The protocol [`Proto::as_str`] names.
    pub fn from_name(s: &str) -> Option<Proto> {
        Proto::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The `key=value` elements of a login-process line, by name (the admin
/// chooses which appear, and in what order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginFields<'a> {
    /// `user=<...>`; empty when the client never named one.
    pub user: &'a [u8],
    pub method: Option<&'a [u8]>,
    pub rip: Option<&'a [u8]>,
    pub lip: Option<&'a [u8]>,
    pub session: Option<&'a [u8]>,
    /// `TLS` (possibly with detail) or `secured` was among the elements.
    pub tls: bool,
    pub secured: bool,
    /// The user who authenticated, when the admin logs it: Dovecot's
    /// `%{auth_user}` (the master user of a master login; otherwise the
    /// user, or the name as the client gave it), in an element named
    /// `auth_user`, `master_user` or `master`.
    pub auth_user: Option<&'a [u8]>,
    /// `%{original_user}`, in an element named `orig_user` or
    /// `original_user`: the name as the client gave it.
    pub orig_user: Option<&'a [u8]>,
}

/// One access-related Dovecot line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access<'a> {
    /// `imap-login: Login: user=<a@b>, method=PLAIN, rip=1.2.3.4, lip=5.6.7.8, mpid=21711, TLS, session=<UXdX/9u52oxbQgr8>`
    /// (2.4: `Logged in:`).
    Login {
        proto: Proto,
        fields: LoginFields<'a>,
        /// Logged by Dovecot 2.4 (`Logged in:`).
        v24: bool,
    },
    /// `pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<ivo>, ...`,
    /// `Aborted login (...)`, 2.4 `Login aborted: ... (auth failed, 3 attempts in 16 secs) (auth_failed): ...`,
    /// `Maximum number of connections from user+IP exceeded (...): user=<...>`.
    LoginFailed {
        proto: Proto,
        fields: LoginFields<'a>,
        /// From `N attempts`, when given.
        attempts: Option<u32>,
        /// The words Dovecot gave, such as `auth failed, 2 attempts in 30 secs`.
        detail: &'a [u8],
    },
    /// `imap-login: ID sent: name=Thunderbird, version=115.0: user=<>, rip=..., session=<S>`
    /// or, after login, `imap(u)<pid><S>: ID sent: name=...`.
    ClientId {
        session: Option<&'a [u8]>,
        name: Option<&'a [u8]>,
        /// Sent after login (the mail process's line), not before.
        after_login: bool,
    },
    /// A line of a logged-in session: `imap(USER)<PID><SESSION>: REST`.
    Session {
        proto: Proto,
        user: &'a [u8],
        session: Option<&'a [u8]>,
        event: SessionEvent<'a>,
    },
}

/// What a logged-in session's line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent<'a> {
    /// The session ended: `Disconnected: Logged out in=469 out=2105 deleted=0 expunged=0 trashed=0 ...`
    /// or `Logged out top=0/0, retr=1/10014, del=1/8, size=55676`.
    Logout {
        /// `Logged out`, `Connection closed (...)`, `Disconnected for inactivity`...
        reason: &'a [u8],
        /// The `key=value` counters that followed.
        counters: &'a [u8],
    },
    /// mail_log: `expunge: box=INBOX, uid=216970, msgid=<MsdID>, size=271290`.
    Expunge {
        folder: Option<&'a [u8]>,
        uid: Option<&'a [u8]>,
        msgid: Option<&'a [u8]>,
    },
    /// mail_log: `delete: box=...` (the \Deleted flag was set).
    MarkDeleted {
        folder: Option<&'a [u8]>,
        uid: Option<&'a [u8]>,
        msgid: Option<&'a [u8]>,
    },
    /// mail_log: `Mailbox deleted: Old`.
    MailboxDeleted { folder: &'a [u8] },
    /// Anything else a session logs.
    Other,
}

/// Reads an access line. `program` and `msg` are as the envelope split
/// them: `dovecot` + `imap-login: Login: ...` through syslog, or
/// `imap-login` + `Info: Login: ...` from Dovecot's own file.
pub fn parse<'a>(program: &'a [u8], msg: &'a [u8]) -> Option<Access<'a>> {
    let (prefix, rest) = if program == b"dovecot" {
        let colon = super::postfix::find_pair(msg, b':', b' ')?;
        (&msg[..colon], &msg[colon + 2..])
    } else {
        (program, msg)
    };
    let rest = strip_severity(rest);
    if let Some(service) = prefix.strip_suffix(b"-login") {
        let proto = Proto::from_prefix(service)?;
        return login_line(proto, rest);
    }
    // `imap(user)<pid><session>` / `imap(user)` / `IMAP(user)`.
    let open = memchr::memchr(b'(', prefix)?;
    let proto = Proto::from_prefix(&prefix[..open])?;
    let close = open + memchr::memchr(b')', &prefix[open..])?;
    let user = &prefix[open + 1..close];
    let session = angle_groups(&prefix[close + 1..]).nth(1);
    if let Some(id) = rest.strip_prefix(b"ID sent: ") {
        return Some(Access::ClientId {
            session,
            name: comma_value(id, &NAME_KEY),
            after_login: true,
        });
    }
    Some(Access::Session {
        proto,
        user,
        session,
        event: session_event(rest),
    })
}

/// Drops `Info: ` and the like, which Dovecot's own file (and stderr
/// logging) put after the process prefix.
fn strip_severity(s: &[u8]) -> &[u8] {
    for sev in [
        &b"Info: "[..],
        b"Warning: ",
        b"Error: ",
        b"Debug: ",
        b"Fatal: ",
        b"Panic: ",
    ] {
        if let Some(r) = s.strip_prefix(sev) {
            return r;
        }
    }
    s
}

/// The `<...>` groups at the start of `s`: `<pid><session>`.
fn angle_groups(mut s: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let inner = s.strip_prefix(b"<")?;
        let end = memchr::memchr(b'>', inner)?;
        s = &inner[end + 1..];
        Some(&inner[..end])
    })
}

/// The value of `key` in a `k=v, k=v` list (up to the next `, ` or `:`).
fn comma_value<'a>(s: &'a [u8], key: &Finder<'_>) -> Option<&'a [u8]> {
    let at = key.find(s)? + key.needle().len();
    let v = &s[at..];
    let end = v
        .iter()
        .position(|&b| b == b',' || b == b':')
        .unwrap_or(v.len());
    Some(&v[..end])
}

/// A login-process line after `imap-login: `.
fn login_line(proto: Proto, s: &[u8]) -> Option<Access<'_>> {
    // The elements follow the last `: user=<` or `: rip=` (failed logins
    // before a user name have none); the text before is what happened.
    let split = elements_start(s)?;
    let (what, elements) = (&s[..split], &s[split + 2..]);
    let fields = login_fields(elements);
    if what == b"Login" || what == b"Logged in" {
        return Some(Access::Login {
            proto,
            fields,
            v24: what == b"Logged in",
        });
    }
    if let Some(id) = what.strip_prefix(b"ID sent: ") {
        return Some(Access::ClientId {
            session: fields.session,
            name: comma_value(id, &NAME_KEY),
            after_login: false,
        });
    }
    // A failed login has no session of its own in the user's sense; it
    // counts when a user was named and Dovecot says auth failed or refused.
    let detail = paren_detail(what);
    let failed = has(what, &AUTH_FAILED)
        || has(what, &AUTHZ_FAILED)
        || has(what, &USER_DISABLED)
        || has(what, &PASSWORD_EXPIRED)
        || what.starts_with(b"Maximum number of connections");
    if !failed {
        return None;
    }
    let attempts = ATTEMPTS.find(detail).and_then(|i| {
        let digits = &detail[..i];
        let start = digits
            .iter()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |p| p + 1);
        std::str::from_utf8(&digits[start..]).ok()?.parse().ok()
    });
    Some(Access::LoginFailed {
        proto,
        fields,
        attempts,
        detail,
    })
}

/// Where the elements of a login-process line start: the last `: user=<`,
/// else the last `: rip=`, else (an admin's order of elements that puts
/// neither first) the first `: ` before a `key=`. One backward pass over
/// the colons.
fn elements_start(s: &[u8]) -> Option<usize> {
    let mut rip = None;
    let mut first_key = None;
    for at in memchr::memrchr_iter(b':', s) {
        let after = &s[at + 1..];
        if after.starts_with(b" user=<") {
            return Some(at);
        }
        if rip.is_none() && after.starts_with(b" rip=") {
            rip = Some(at);
        }
        if let Some(k) = after.strip_prefix(b" ") {
            let key = k
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                .count();
            if key > 0 && k.get(key) == Some(&b'=') {
                first_key = Some(at);
            }
        }
    }
    rip.or(first_key)
}

/// The words inside the parenthesis that holds the reason: the one with
/// `auth failed` (2.4 adds a second one with the event reason), else the
/// first one, else the whole text.
fn paren_detail(what: &[u8]) -> &[u8] {
    let mut first = None;
    let mut at = 0;
    while let Some(open) = memchr::memchr(b'(', &what[at..]) {
        let start = at + open + 1;
        let Some(len) = memchr::memchr(b')', &what[start..]) else {
            break;
        };
        let group = &what[start..start + len];
        if has(group, &AUTH_FAILED) {
            return group;
        }
        first.get_or_insert(group);
        at = start + len + 1;
    }
    first.unwrap_or(what)
}

/// The first `needle` in `s`, for spans of a few bytes, where a plain loop
/// beats `memchr`'s setup.
fn find_byte(needle: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == needle)
}

/// `user=<U>, method=M, rip=R, lip=L, mpid=P, TLS, session=<S>`.
///
/// One pass over the elements: a key is read up to its `=` (or to a `,`,
/// for a bare word), a value up to the next `, `.
fn login_fields(s: &[u8]) -> LoginFields<'_> {
    let mut f = LoginFields::default();
    let mut rest = s;
    while !rest.is_empty() {
        let stop = rest.iter().position(|&b| b == b'=' || b == b',');
        // `<...>` values may hold `, `; take them whole.
        let end = match stop {
            Some(eq) if rest[eq] == b'=' && rest.get(eq + 1) == Some(&b'<') => {
                find_byte(b'>', &rest[eq..]).map_or(rest.len(), |g| eq + g + 1)
            }
            _ => {
                let from = stop.unwrap_or(rest.len());
                super::postfix::find_pair(&rest[from..], b',', b' ')
                    .map_or(rest.len(), |p| from + p)
            }
        };
        let item = &rest[..end];
        rest = rest[end..].strip_prefix(b", ").unwrap_or(&rest[end..]);
        // No `=` comes before `stop`.
        let eq = match stop {
            Some(i) if item.get(i) == Some(&b'=') => Some(i),
            Some(_) => find_byte(b'=', item),
            None => None,
        };
        match eq {
            Some(eq) => {
                let (k, v) = (&item[..eq], &item[eq + 1..]);
                match k {
                    b"user" => f.user = unangle(v),
                    b"method" => f.method = Some(v),
                    b"rip" => f.rip = Some(v),
                    b"lip" => f.lip = Some(v),
                    b"session" => f.session = Some(unangle(v)),
                    b"auth_user" | b"master_user" | b"master" => f.auth_user = Some(unangle(v)),
                    b"orig_user" | b"original_user" => f.orig_user = Some(unangle(v)),
                    _ => {}
                }
            }
            None if item.starts_with(b"TLS") => f.tls = true,
            None if item == b"secured" => f.secured = true,
            None => {}
        }
    }
    f
}

/// `<v>` → `v`.
fn unangle(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"<")
        .and_then(|v| v.strip_suffix(b">"))
        .unwrap_or(v)
}

/// The folder, uid and Message-ID of a mail_log line.
#[allow(clippy::type_complexity)]
fn mail_log(s: &[u8]) -> (Option<&[u8]>, Option<&[u8]>, Option<&[u8]>) {
    (comma_value(s, &BOX_KEY), comma_value(s, &UID_KEY), msgid(s))
}

/// The rest of a logged-in session's line.
fn session_event(s: &[u8]) -> SessionEvent<'_> {
    if let Some(r) = s
        .strip_prefix(b"expunge: ")
        .or_else(|| s.strip_prefix(b"autoexpunge: "))
    {
        let (folder, uid, msgid) = mail_log(r);
        return SessionEvent::Expunge { folder, uid, msgid };
    }
    if let Some(r) = s.strip_prefix(b"delete: ") {
        let (folder, uid, msgid) = mail_log(r);
        return SessionEvent::MarkDeleted { folder, uid, msgid };
    }
    if let Some(r) = s.strip_prefix(b"Mailbox deleted: ") {
        return SessionEvent::MailboxDeleted { folder: r };
    }
    // 2.4 puts the mailbox first: `Mailbox INBOX: expunge: uid=5, ...`.
    if let Some(r) = s.strip_prefix(b"Mailbox ")
        && let Some(c) = super::postfix::find_pair(r, b':', b' ')
    {
        let folder = &r[..c];
        let tail = &r[c + 2..];
        if let Some(t) = tail.strip_prefix(b"expunge: ") {
            return SessionEvent::Expunge {
                folder: Some(folder),
                uid: comma_value(t, &UID_KEY),
                msgid: msgid(t),
            };
        }
        if let Some(t) = tail.strip_prefix(b"delete: ") {
            return SessionEvent::MarkDeleted {
                folder: Some(folder),
                uid: comma_value(t, &UID_KEY),
                msgid: msgid(t),
            };
        }
        if tail.starts_with(b"Mailbox deleted") {
            return SessionEvent::MailboxDeleted { folder };
        }
    }
    match logout(s) {
        Some((reason, counters)) => SessionEvent::Logout { reason, counters },
        None => SessionEvent::Other,
    }
}

/// The end of a session: the reason Dovecot gave, and the counters of
/// `imap_logout_format` (or POP3's, submission's, ManageSieve's) after it,
/// in any of the versions' and sites' shapes:
///
/// `Disconnected: Logged out in=469 out=2105 deleted=0 ...` (2.3.15 and later),
/// `Logged out in=313 out=11985 ...`, `Connection closed (IDLE running for 0.001 + ...) in=276 ...`,
/// `Disconnected for inactivity in=154 ...` (2.2.20 to 2.3.14),
/// `Disconnected: Logged out bytes=748/17264`, `Disconnected in IDLE bytes=...` (1.x),
/// `Disconnected: Logged out` (no counters), `Logged out in=93, out=1020, bytes=93/1020` (a custom format),
/// `Disconnect from 192.0.2.7: Client has quit the connection in=120 out=560 (state=READY)` (submission).
fn logout(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let (s, said) = if let Some(r) = s.strip_prefix(b"Disconnected: ") {
        (r, true)
    } else if let Some(r) = s.strip_prefix(b"Disconnect from ") {
        (&r[super::postfix::find_pair(r, b':', b' ')? + 2..], true)
    } else {
        (s, false)
    };
    let ends = said
        || [
            &b"Logged out"[..],
            b"Connection closed",
            b"Disconnected",
            b"Server shutting down",
        ]
        .iter()
        .any(|w| s.starts_with(w));
    if !ends {
        return None;
    }
    let at = counters_start(s);
    Some((s[..at].trim_ascii_end(), &s[at..]))
}

/// Where the counters of a logout line start: the first word outside
/// parentheses that is a lowercase key, `=` and a digit (the reason's
/// parenthesis may hold `state=wait-input` and numbers).
fn counters_start(s: &[u8]) -> usize {
    let mut depth = 0u32;
    let mut word_start = true;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && word_start && is_counter(&s[i..]) {
            return i;
        }
        word_start = b == b' ';
    }
    s.len()
}

/// `key=N...` at the start of `s`.
fn is_counter(s: &[u8]) -> bool {
    let key = s
        .iter()
        .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
        .count();
    key > 0 && s.get(key) == Some(&b'=') && s.get(key + 1).is_some_and(u8::is_ascii_digit)
}

/// `msgid=<...>` (mail_log cuts it at 80 characters and adds `...`).
fn msgid(s: &[u8]) -> Option<&[u8]> {
    let at = MSGID_KEY.find(s)? + 6;
    let v = &s[at..];
    let end = if v.starts_with(b"<") {
        memchr::memchr(b'>', v).map_or_else(|| find_comma(v), |e| e + 1)
    } else {
        find_comma(v)
    };
    Some(&v[..end])
}

fn find_comma(v: &[u8]) -> usize {
    super::postfix::find_pair(v, b',', b' ').unwrap_or(v.len())
}

/// Every `key=N[/M]` counter of a logout line, in one pass: (key, N, M).
/// Items are separated by spaces and commas; an item whose value is not a
/// number (or two, with `/`) is skipped.
pub fn counters(s: &[u8]) -> impl Iterator<Item = (&[u8], u64, Option<u64>)> {
    let is_sep = |b: u8| b == b' ' || b == b',';
    let mut rest = s;
    std::iter::from_fn(move || {
        loop {
            let start = rest.iter().position(|&b| !is_sep(b))?;
            let item = &rest[start..];
            let end = item.iter().position(|&b| is_sep(b)).unwrap_or(item.len());
            let item = &item[..end];
            rest = &rest[start + end..];
            if let Some(c) = counter(item) {
                return Some(c);
            }
        }
    })
}

/// One `key=N[/M]` item.
fn counter(item: &[u8]) -> Option<(&[u8], u64, Option<u64>)> {
    let eq = find_byte(b'=', item)?;
    let (k, v) = (&item[..eq], &item[eq + 1..]);
    let num = |d: &[u8]| -> Option<u64> {
        if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(d.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0')))
    };
    match find_byte(b'/', v) {
        Some(sl) => Some((k, num(&v[..sl])?, num(&v[sl + 1..]))),
        None => Some((k, num(v)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One counter of a logout line, looked up through [`counters`].
    fn counter(s: &[u8], key: &[u8]) -> Option<(u64, Option<u64>)> {
        counters(s)
            .find(|(k, _, _)| *k == key)
            .map(|(_, n, m)| (n, m))
    }

    #[test]
    fn auth_failures() {
        assert_eq!(
            auth_failure(
                b"dovecot",
                b"auth: passwd-file(carol@example.edu,127.0.0.5): Password mismatch"
            ),
            Some(AuthFailure {
                user: b"carol@example.edu",
                ip: b"127.0.0.5",
                session: None,
                reason: "password mismatch"
            })
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth-worker(304): pam(username,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)"),
            Some(AuthFailure { user: b"username", ip: b"1.2.3.4", session: None, reason: "password mismatch" })
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth: sql(admin@example.ru,192.168.144.226,<6rXunFtu493AqJDi>): Password mismatch"),
            Some(AuthFailure { user: b"admin@example.ru", ip: b"192.168.144.226", session: Some(b"6rXunFtu493AqJDi"), reason: "password mismatch" })
        );
        assert_eq!(
            auth_failure(
                b"auth-worker(22401)",
                b"Info: sql(admin@example.de,192.0.2.5,<n4JLdHNVngZGpV2j>): unknown user"
            ),
            Some(AuthFailure {
                user: b"admin@example.de",
                ip: b"192.0.2.5",
                session: Some(b"n4JLdHNVngZGpV2j"),
                reason: "unknown user"
            })
        );
        assert_eq!(
            auth_failure(b"dovecot", b"imap-login: Login: user=<a>, method=PLAIN"),
            None
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth: passwd-file(a,1.2.3.4): unknown"),
            None
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth: passwd-file(alice@example.edu,127.0.0.1,<FveXEelgCd9/AAAB>): unknown user (given password: x) - trying the next passdb"),
            None
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth(info@example.com,192.0.2.110,sasl:login)<CvN+E95Uf4e7eEnj>: Info: sql: Password mismatch (given password: XxxxXXxx123)"),
            Some(AuthFailure { user: b"info@example.com", ip: b"192.0.2.110", session: Some(b"CvN+E95Uf4e7eEnj"), reason: "password mismatch" })
        );
    }

    fn access(line_program: &str, msg: &str) -> Access<'static> {
        let p: &'static [u8] = Box::leak(line_program.as_bytes().to_vec().into_boxed_slice());
        let m: &'static [u8] = Box::leak(msg.as_bytes().to_vec().into_boxed_slice());
        parse(p, m).unwrap_or_else(|| panic!("{msg}"))
    }

    #[test]
    fn logins_of_both_versions_and_both_files() {
        for (prog, msg) in [
            (
                "dovecot",
                "imap-login: Login: user=<h-304@h-ffeb17e38996c.com>, method=LOGIN, rip=224.165.23.115, lip=170.45.1.1, mpid=21711, TLS, session=<UXdX/9u52oxbQgr8>",
            ),
            (
                "dovecot",
                "imap-login: Logged in: user=<h-304@h-ffeb17e38996c.com>, method=LOGIN, rip=224.165.23.115, lip=170.45.1.1, mpid=21711, TLS, session=<UXdX/9u52oxbQgr8>",
            ),
            (
                "imap-login",
                "Info: Login: user=<h-304@h-ffeb17e38996c.com>, method=LOGIN, rip=224.165.23.115, lip=170.45.1.1, mpid=21711, TLS, session=<UXdX/9u52oxbQgr8>",
            ),
        ] {
            let Access::Login { proto, fields, v24 } = access(prog, msg) else {
                panic!("{msg}")
            };
            assert_eq!(v24, msg.contains("Logged in:"));
            assert_eq!(proto, Proto::Imap);
            assert_eq!(fields.user, b"h-304@h-ffeb17e38996c.com");
            assert_eq!(fields.rip, Some(&b"224.165.23.115"[..]));
            assert_eq!(fields.lip, Some(&b"170.45.1.1"[..]));
            assert_eq!(fields.session, Some(&b"UXdX/9u52oxbQgr8"[..]));
            assert!(fields.tls);
        }
        let Access::Login { proto, fields, .. } = access(
            "dovecot",
            "pop3-login: Login: user=<freddie@example.ca>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=18731, secured, session=<5zVFvKxEnAB/AAAB>",
        ) else {
            panic!()
        };
        assert_eq!(proto, Proto::Pop3);
        assert!(fields.secured && !fields.tls);
    }

    #[test]
    fn failed_logins() {
        let cases = [
            (
                "pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<ivo>, method=PLAIN, rip=1.2.3.4, lip=1.1.2.2, TLS: Disconnected, session=<q454Xu/vMwBZApgg>",
                Some(1),
                &b"ivo"[..],
            ),
            (
                "imap-login: Disconnected (auth failed, 2 attempts): user=<username.bob>, method=PLAIN, rip=49.176.98.87, lip=113.212.99.194, TLS",
                Some(2),
                b"username.bob",
            ),
            (
                "imap-login: Login aborted: Connection closed (auth failed, 3 attempts in 16 secs) (auth_failed): user=<test>, method=PLAIN, rip=192.0.2.241, lip=203.0.113.104, TLS, session=<9ZHq02g3J8S60fan>",
                Some(3),
                b"test",
            ),
            (
                "imap-login: Disconnected: Connection closed: read(size=1003) failed: Connection reset by peer (auth failed, 1 attempts in 0 secs): user=<test@example.com>, rip=192.0.2.4, lip=127.0.0.19, session=<Lsz0Oo7WXti3b7xe>",
                Some(1),
                b"test@example.com",
            ),
            (
                "imap-login: Maximum number of connections from user+IP exceeded (mail_max_userip_connections): user=<oviraptor>, PID=12150, method=PLAIN, rip=10.0.0.18, lip=192.168.190.13, TLS",
                None,
                b"oviraptor",
            ),
        ];
        for (msg, attempts, user) in cases {
            let Access::LoginFailed {
                fields,
                attempts: a,
                ..
            } = access("dovecot", msg)
            else {
                panic!("{msg}")
            };
            assert_eq!(a, attempts, "{msg}");
            assert_eq!(fields.user, user, "{msg}");
            assert!(fields.rip.is_some());
        }
        let Access::LoginFailed { detail, .. } = access("dovecot", cases[2].0) else {
            panic!()
        };
        assert_eq!(detail, b"auth failed, 3 attempts in 16 secs");
        // Not a failed login for anyone: no user, TLS trouble.
        assert_eq!(
            parse(b"dovecot", b"imap-login: Disconnected (disconnected before auth was ready, waited 0 secs): user=<>, rip=112.247.97.110, lip=170.45.1.1, TLS handshaking: SSL_accept() failed: error:1408F09C:SSL routines:ssl3_get_record:http request, session=<8aCKAt65etAuZSeU>"),
            None
        );
    }

    #[test]
    fn session_lines() {
        let Access::Session {
            proto,
            user,
            session,
            event,
        } = access(
            "dovecot",
            "imap(nguyen3@project2.nguyenhv.id.vn)<836><e5MLrgYvcMZ/AAAB>: Disconnected: Logged out in=469 out=2105 deleted=0 expunged=2 trashed=0 hdr_count=1 hdr_bytes=391 body_count=1 body_bytes=31",
        )
        else {
            panic!()
        };
        assert_eq!(
            (proto, user, session),
            (
                Proto::Imap,
                &b"nguyen3@project2.nguyenhv.id.vn"[..],
                Some(&b"e5MLrgYvcMZ/AAAB"[..])
            )
        );
        let SessionEvent::Logout { reason, counters } = event else {
            panic!()
        };
        assert_eq!(reason, b"Logged out");
        assert_eq!(counter(counters, b"in"), Some((469, None)));
        assert_eq!(counter(counters, b"expunged"), Some((2, None)));
        assert_eq!(counter(counters, b"deleted"), Some((0, None)));

        let Access::Session { event, .. } = access(
            "dovecot",
            "pop3(h-e8fcfa624@h-ffeb17e38996c.com)<22754><QnUBR+a59otNC7am>: Disconnected: Logged out top=0/0, retr=1/10014, del=1/8, size=55676",
        ) else {
            panic!()
        };
        let SessionEvent::Logout { counters, .. } = event else {
            panic!()
        };
        assert_eq!(counter(counters, b"del"), Some((1, Some(8))));
        assert_eq!(counter(counters, b"size"), Some((55676, None)));

        let Access::Session { event, .. } = access(
            "dovecot",
            "imap(h-aaf4c@h-ffeb17e38996c.com)<18192><0Dq3h925jvG8pNgK>: Connection closed (IDLE running for 0.001 + waiting input for 82.885 secs, 2 B in + 10 B out, state=wait-input) in=276 out=1068 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
        ) else {
            panic!()
        };
        assert!(
            matches!(event, SessionEvent::Logout { reason, .. } if reason.starts_with(b"Connection closed (IDLE"))
        );

        let Access::Session { event, .. } = access(
            "dovecot",
            "pop3(user@test.ro)<16586><fffff>: expunge: box=INBOX, uid=216970, msgid=<MsdID>, size=271290",
        ) else {
            panic!()
        };
        assert_eq!(
            event,
            SessionEvent::Expunge {
                folder: Some(b"INBOX"),
                uid: Some(b"216970"),
                msgid: Some(b"<MsdID>")
            }
        );
        let Access::Session { event, .. } = access(
            "dovecot",
            "imap(user@test.ro)<51452><fffff>: delete: box=Drafts, uid=2942, msgid=<MsgID>, size=3122",
        ) else {
            panic!()
        };
        assert_eq!(
            event,
            SessionEvent::MarkDeleted {
                folder: Some(b"Drafts"),
                uid: Some(b"2942"),
                msgid: Some(b"<MsgID>")
            }
        );
        let Access::Session { event, .. } =
            access("dovecot", "imap(u@x)<1><S>: Mailbox deleted: Old")
        else {
            panic!()
        };
        assert_eq!(event, SessionEvent::MailboxDeleted { folder: b"Old" });
        let Access::Session { event, .. } = access(
            "dovecot",
            "imap(u@x)<1><S>: Mailbox INBOX: expunge: uid=5, msgid=<a@b>, size=123",
        ) else {
            panic!()
        };
        assert_eq!(
            event,
            SessionEvent::Expunge {
                folder: Some(b"INBOX"),
                uid: Some(b"5"),
                msgid: Some(b"<a@b>")
            }
        );
        // A Message-ID cut at 80 characters keeps what is there.
        let Access::Session { event, .. } = access(
            "dovecot",
            "imap(me@w.name): expunge: box=INBOX, uid=100, msgid=<1916378978.228657.1422669964925.JavaMail.s605113@s605113nj3cu23.uspswy6.savv..., size=3846",
        ) else {
            panic!()
        };
        assert!(
            matches!(event, SessionEvent::Expunge { msgid: Some(m), .. } if m.ends_with(b"savv..."))
        );
    }

    #[test]
    fn client_ids() {
        assert_eq!(
            access(
                "dovecot",
                "imap-login: ID sent: name=Thunderbird, version=115.0: user=<>, rip=1.2.3.4, lip=5.6.7.8, session=<abc>"
            ),
            Access::ClientId {
                session: Some(b"abc"),
                name: Some(b"Thunderbird"),
                after_login: false,
            }
        );
        assert_eq!(
            access(
                "dovecot",
                "imap(a@b)<7><xyz>: ID sent: name=K-9 Mail, version=6.4"
            ),
            Access::ClientId {
                session: Some(b"xyz"),
                name: Some(b"K-9 Mail"),
                after_login: true,
            }
        );
    }

    #[test]
    fn verdicts_of_auth_workers_and_other_passdbs() {
        let v = |program: &str, msg: &str| {
            auth_failure(program.as_bytes(), msg.as_bytes()).map(|f| {
                (
                    String::from_utf8_lossy(f.user).into_owned(),
                    String::from_utf8_lossy(f.ip).into_owned(),
                    f.session.map(|s| String::from_utf8_lossy(s).into_owned()),
                    f.reason,
                )
            })
        };
        let own = |u: &str, ip: &str, s: Option<&str>, r: &'static str| {
            Some((u.to_owned(), ip.to_owned(), s.map(str::to_owned), r))
        };
        // 2.3 auth workers name their connection and request first
        // (crowdsec hub PR #714; groupoffice issue #1020, Dovecot's own file).
        assert_eq!(
            v(
                "dovecot",
                "auth-worker(63712): conn unix:auth-worker (pid=58074,uid=109): auth-worker<4>: sql(contact,220.169.110.101): unknown user"
            ),
            own("contact", "220.169.110.101", None, "unknown user")
        );
        assert_eq!(
            v(
                "auth-worker(847249)",
                "Info: conn unix:auth-worker (pid=847248,uid=115): auth-worker<65>: sql(exampl@example.com,127.0.0.1,<3dGjXWn/4ox/AAAB>): Password mismatch (given password: {GOCRYPT2}def5020078)"
            ),
            own(
                "exampl@example.com",
                "127.0.0.1",
                Some("3dGjXWn/4ox/AAAB"),
                "password mismatch"
            )
        );
        // The reference (section 1.3), with the password logged.
        assert_eq!(
            v(
                "dovecot",
                "auth-worker(10377): conn unix:auth-worker (pid=919,uid=112): auth-worker<1>: sql(testing@example.com,192.168.1.1): unknown user (given password: Password123$)"
            ),
            own("testing@example.com", "192.168.1.1", None, "unknown user")
        );
        // 2.4: user, address and session in the process prefix; the
        // worker's has its pid before the session (reference 3.4).
        assert_eq!(
            v(
                "dovecot",
                "auth-worker(jose.basanta,138.255.206.154)<1489164><8oNSumM3A8mK/86a>: request [393]: unix_user: pam_authenticate() failed: Authentication failure (Password mismatch?)"
            ),
            own(
                "jose.basanta",
                "138.255.206.154",
                Some("8oNSumM3A8mK/86a"),
                "password mismatch"
            )
        );
        // LDAP binds say "invalid credentials" for a wrong password
        // (passdb-ldap; the shape of reference section 6, with an empty
        // third element).
        assert_eq!(
            v(
                "dovecot",
                "auth: ldap(alice,192.0.2.7,): invalid credentials"
            ),
            own("alice", "192.0.2.7", None, "password mismatch")
        );
        assert_eq!(
            v(
                "dovecot",
                "auth-worker(1668): pam(bob,192.0.2.8): unknown user"
            ),
            own("bob", "192.0.2.8", None, "unknown user")
        );
        // A password is never read as a reason.
        assert_eq!(
            v(
                "dovecot",
                "auth: passwd-file(a@example.edu,192.0.2.1,<S1>): Invalid password in passdb (given password: account disabled)"
            ),
            None
        );
        // An IPv6 client's session ID is 32 characters (froxlor issue #435).
        assert_eq!(
            v(
                "dovecot",
                "auth-worker(12274): sql(willy@example.de,2a01:4f8:c17:146::2,<Ioa5KGROsLUqAQT4DBcBRgAAAAAAAAAC>): Password mismatch"
            ),
            own(
                "willy@example.de",
                "2a01:4f8:c17:146::2",
                Some("Ioa5KGROsLUqAQT4DBcBRgAAAAAAAAAC"),
                "password mismatch"
            )
        );
    }

    #[test]
    fn master_user_logins() {
        // A real 2.2 line (the grok patterns' test of a public site's log).
        let m = master_login(
            b"dovecot",
            b"auth: passdb(_mwi-master,127.0.0.1,master,<qR6mho3OtgBMv/lE>): Master user logging in as augie",
        );
        assert_eq!(
            m,
            Some(MasterLogin {
                master: b"_mwi-master",
                user: b"augie",
                ip: b"127.0.0.1",
                session: Some(b"qR6mho3OtgBMv/lE"),
            })
        );
        // 2.3 names the passdb (auth-request.c, get_log_prefix), 2.4 puts
        // the subject in the process prefix; Dovecot's own file as well.
        for (program, msg) in [
            (
                "dovecot",
                "auth: passwd-file(admin@example.edu,192.0.2.7,master,<S2wRH+lgK6F/AAAB>): Master user logging in as alice@example.edu",
            ),
            (
                "auth",
                "Info: passwd-file(admin@example.edu,192.0.2.7,master,<S2wRH+lgK6F/AAAB>): Master user logging in as alice@example.edu",
            ),
            (
                "dovecot",
                "auth(admin@example.edu,192.0.2.7,sasl:plain,master)<S2wRH+lgK6F/AAAB>: Info: passwd-file: Master user logging in as alice@example.edu",
            ),
        ] {
            let m =
                master_login(program.as_bytes(), msg.as_bytes()).unwrap_or_else(|| panic!("{msg}"));
            assert_eq!(
                (m.master, m.user, m.ip, m.session),
                (
                    &b"admin@example.edu"[..],
                    &b"alice@example.edu"[..],
                    &b"192.0.2.7"[..],
                    Some(&b"S2wRH+lgK6F/AAAB"[..])
                ),
                "{msg}"
            );
            // Not a refusal, whatever the names hold.
            assert_eq!(auth_failure(program.as_bytes(), msg.as_bytes()), None);
        }
        assert_eq!(
            auth_failure(
                b"dovecot",
                b"auth: passwd-file(admin,192.0.2.7,master,<S>): Master user logging in as nologin.disabled"
            ),
            None
        );
        assert_eq!(
            master_login(
                b"dovecot",
                b"auth: passwd-file(alice@example.edu,127.0.0.1,<pW7eHOlgX4R/AAAB>): Password mismatch"
            ),
            None
        );
    }

    #[test]
    fn submission_and_managesieve() {
        assert!(is_dovecot(b"submission-login", b""));
        assert!(is_dovecot(b"managesieve-login", b""));
        assert!(!is_dovecot(b"submission-login", b"mail"));
        let cases = [
            (
                "submission-login: Client has quit the connection (auth failed, 1 attempts in 2 secs): user=<carol@example.edu>, method=LOGIN, rip=192.0.2.9, lip=192.0.2.1, session=<Q7mTbWFwuOvAqAIJ>",
                Proto::Submission,
                Some(1),
            ),
            (
                "managesieve-login: Login aborted: Logged out (auth failed, 1 attempts in 10 secs) (auth_failed): user=<carol@example.edu>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, session=<hOZlh0X7hqvAqAIJ>",
                Proto::ManageSieve,
                Some(1),
            ),
        ];
        for (msg, want, n) in cases {
            let Access::LoginFailed {
                proto,
                fields,
                attempts,
                ..
            } = access("dovecot", msg)
            else {
                panic!("{msg}")
            };
            assert_eq!((proto, attempts), (want, n), "{msg}");
            assert_eq!(fields.user, b"carol@example.edu");
        }
        let Access::Login { proto, .. } = access(
            "managesieve-login",
            "Info: Login: user=<carol@example.edu>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, mpid=4711, TLS, session=<hOZlh0X7hqvAqAIJ>",
        ) else {
            panic!()
        };
        assert_eq!(proto, Proto::ManageSieve);
        assert_eq!(Proto::from_name("submission"), Some(Proto::Submission));
        assert_eq!(Proto::from_name("smtp"), None);
    }

    /// A counter of a logout line: (key, N, M).
    type Counter = (String, u64, Option<u64>);

    /// (reason, counters) of a session line that ends its session.
    fn logout_of(msg: &str) -> Option<(String, Vec<Counter>)> {
        let Access::Session { event, .. } = access("dovecot", msg) else {
            panic!("{msg}")
        };
        match event {
            SessionEvent::Logout { reason, counters } => Some((
                String::from_utf8_lossy(reason).into_owned(),
                super::counters(counters)
                    .map(|(k, n, m)| (String::from_utf8_lossy(k).into_owned(), n, m))
                    .collect(),
            )),
            _ => None,
        }
    }

    #[test]
    fn logouts_of_every_version() {
        let c = |k: &str, n: u64, m: Option<u64>| (k.to_owned(), n, m);
        let cases = [
            // 1.x (lograptor; reference 3.5, 3.6).
            (
                "IMAP(trex): Disconnected: Logged out bytes=748/17264",
                "Logged out",
                vec![c("bytes", 748, Some(17264))],
            ),
            (
                "POP3(uuuuu): Disconnected: Logged out top=0/0, retr=1/10014, del=1/8, size=55676",
                "Logged out",
                vec![
                    c("top", 0, Some(0)),
                    c("retr", 1, Some(10014)),
                    c("del", 1, Some(8)),
                    c("size", 55676, None),
                ],
            ),
            (
                "imap(u@example.edu): Disconnected in IDLE bytes=1250/8811",
                "Disconnected in IDLE",
                vec![c("bytes", 1250, Some(8811))],
            ),
            // 2.0 to 2.2.19.
            (
                "imap(administrator): Disconnected: Logged out in=613 out=471",
                "Logged out",
                vec![c("in", 613, None), c("out", 471, None)],
            ),
            (
                "pop3(archaeopteryx): Connection closed top=0/0, retr=0/0, del=0/1074, size=294785727",
                "Connection closed",
                vec![
                    c("top", 0, Some(0)),
                    c("retr", 0, Some(0)),
                    c("del", 0, Some(1074)),
                    c("size", 294785727, None),
                ],
            ),
            // 2.2.20 to 2.3.14: no `Disconnected: `.
            (
                "imap(h-71fa3d@h-ffeb17e38996c.com)<23303><44zQzN25SOFEt9oI>: Logged out in=313 out=11985 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
                "Logged out",
                vec![
                    c("in", 313, None),
                    c("out", 11985, None),
                    c("deleted", 0, None),
                    c("expunged", 0, None),
                    c("trashed", 0, None),
                    c("hdr_count", 0, None),
                    c("hdr_bytes", 0, None),
                    c("body_count", 0, None),
                    c("body_bytes", 0, None),
                ],
            ),
            (
                "imap(h-aaf4c@h-ffeb17e38996c.com)<24599><nDvn9OK5qmouciOz>: Connection closed (UID FETCH finished 237.454 secs ago) in=206 out=2587 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
                "Connection closed (UID FETCH finished 237.454 secs ago)",
                vec![],
            ),
            (
                "imap(h-304@h-ffeb17e38996c.com)<21711><UXdX/9u52oxbQgr8>: Disconnected for inactivity in=154 out=1817 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
                "Disconnected for inactivity",
                vec![],
            ),
            // A custom format, and one with no counters at all.
            (
                "imap(john@example.com): Logged out in=93, out=1020, bytes=93/1020",
                "Logged out",
                vec![
                    c("in", 93, None),
                    c("out", 1020, None),
                    c("bytes", 93, Some(1020)),
                ],
            ),
            (
                "imap(u@example.edu): Disconnected: Logged out",
                "Logged out",
                vec![],
            ),
            // The submission service (submission/main.c, client_disconnect).
            (
                "submission(carol@example.edu)<4711><Q7mTbWFwuOvAqAIJ>: Disconnect from 192.0.2.9: Client has quit the connection in=120 out=560 (state=READY)",
                "Client has quit the connection",
                vec![c("in", 120, None), c("out", 560, None)],
            ),
            (
                "managesieve(carol@example.edu)<4711><hOZlh0X7hqvAqAIJ>: Disconnected: Logged out bytes=143/517",
                "Logged out",
                vec![c("bytes", 143, Some(517))],
            ),
        ];
        for (msg, reason, counters) in cases {
            let (r, got) = logout_of(msg).unwrap_or_else(|| panic!("not a logout: {msg}"));
            assert_eq!(r, reason, "{msg}");
            if !counters.is_empty() {
                assert_eq!(got, counters, "{msg}");
            } else if msg.contains(" in=") {
                assert_eq!(got.first().map(|g| g.0.as_str()), Some("in"), "{msg}");
            }
        }
        // Other lines of a session are not its end.
        for msg in [
            "pop3(bob@example.edu)<23235><2cCvHOlgRap/AAAB>: flag_change: box=INBOX, uid=1, msgid=<mt-6@example.edu>, size=244, flags=(\\Seen \\Recent)",
            "imap(ip@ncom-ufa.ru): Info: copy from INBOX: box=INBOX.office, uid=2374, msgid=<415077387.20140521143458@rbbf.ru>, size=117275",
            "imap(u@example.edu)<1><S>: Error: Mailbox INBOX: Broken file",
        ] {
            assert_eq!(logout_of(msg), None, "{msg}");
        }
    }

    #[test]
    fn the_authenticating_user_by_its_element() {
        // login_log_format_elements = "user=<%u> auth_user=<%{auth_user}> ...";
        // elements are found by name, wherever the admin put them.
        let Access::Login { fields, .. } = access(
            "dovecot",
            "imap-login: Login: user=<alice@example.edu>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, mpid=4711, auth_user=<admin@example.edu>, TLS, session=<S2wRH+lgK6F/AAAB>",
        ) else {
            panic!()
        };
        assert_eq!(fields.user, b"alice@example.edu");
        assert_eq!(fields.auth_user, Some(&b"admin@example.edu"[..]));
        assert_eq!(fields.session, Some(&b"S2wRH+lgK6F/AAAB"[..]));
        assert!(fields.tls);
        let Access::Login { fields, .. } = access(
            "dovecot",
            "pop3-login: Login: master_user=<admin>, orig_user=<Alice>, user=<alice@example.edu>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, mpid=4712, session=<S2wRH+lgK6F/AAAC>",
        ) else {
            panic!()
        };
        assert_eq!(
            (fields.auth_user, fields.orig_user),
            (Some(&b"admin"[..]), Some(&b"Alice"[..]))
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        let lines = [
            "imap-login: Login aborted: Connection closed (auth failed, 3 attempts in 16 secs) (auth_failed): user=<test>, method=PLAIN, rip=192.0.2.241, lip=203.0.113.104, TLS, session=<9ZHq02g3J8S60fan>",
            "pop3(h@x)<22754><QnUBR+a59otNC7am>: Disconnected: Logged out top=0/0, retr=1/10014, del=1/8, size=55676",
            "imap(u@x)<1><S>: Mailbox INBOX: expunge: uid=5, msgid=<a@b>, size=123",
            "auth-worker(10377): conn unix:auth-worker (pid=919,uid=112): auth-worker<1>: sql(testing@example.com,192.168.1.1): unknown user (given password: Password123$)",
            "auth: passdb(_mwi-master,127.0.0.1,master,<qR6mho3OtgBMv/lE>): Master user logging in as augie",
            "auth-worker(jose.basanta,138.255.206.154)<1489164><8oNSumM3A8mK/86a>: request [393]: unix_user: pam_authenticate() failed: Authentication failure (Password mismatch?)",
            "submission(u@x)<7><S>: Disconnect from 192.0.2.7: Client has quit the connection in=120 out=560 (state=READY)",
        ];
        for l in lines {
            for cut in 0..=l.len() {
                let _ = auth_failure(b"dovecot", &l.as_bytes()[..cut]);
                let _ = master_login(b"dovecot", &l.as_bytes()[..cut]);
                let _ = parse(b"dovecot", &l.as_bytes()[..cut]);
                let _ = counter(&l.as_bytes()[..cut], b"del");
            }
        }
    }
}
