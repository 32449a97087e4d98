//! Postfix message shapes: one function per daemon, each naming the lines it
//! handles. Parsing is on bytes and total: a line of an unknown shape is
//! [`Parsed::Unknown`], never an error or a panic, and nothing here allocates.
//!
//! The shapes are Postfix's own format strings (`log_adhoc.c`, `smtpd.c`,
//! `smtpd_check.c`, `qmgr_active.c`, `opened.c`, `cleanup_message.c`).

use memchr::memmem;

/// A queue ID as it appears in the log: short (hex) or long
/// (`enable_long_queue_ids`, base-52 time + `z` + inode).
pub type QidBytes<'a> = &'a [u8];

/// What one Postfix line says, in the terms correlation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A line that matters for correlation or counting.
    Event(Event<'a>),
    /// A known shape that carries nothing we count (connect, TLS, ...).
    Noise,
    /// A Postfix line of a shape we do not know.
    Unknown,
}

/// Per-recipient delivery status, from `status=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Bounced,
    /// `deferred`, and `SOFTBOUNCE` (soft_bounce = yes), which behaves like it.
    Deferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// smtpd accepted a message:
    /// `4AA091855DA0: client=some.domain.name[1.2.3.4], sasl_method=PLAIN, sasl_username=user@sender.com`
    /// `ED01244770: client=localhost[127.0.0.1], orig_queue_id=4F5C64474F, orig_client=unknown[28.55.140.112]`
    Client {
        qid: QidBytes<'a>,
        /// The client's name as Postfix resolved it (`unknown` when it
        /// did not).
        client_name: &'a [u8],
        client_ip: &'a [u8],
        sasl_user: Option<&'a [u8]>,
        orig_queue_id: Option<&'a [u8]>,
        /// XFORWARD's `orig_client=NAME[ADDR]`: the address of the client
        /// that submitted the original, for a content filter's copy.
        orig_client_ip: Option<&'a [u8]>,
    },
    /// pickup took a message from sendmail(1):
    /// `69EADD0808B: uid=300 from=<triceratops@dinos.test>`
    Pickup {
        qid: QidBytes<'a>,
        uid: &'a [u8],
        from: &'a [u8],
    },
    /// cleanup read the message's header: what a content filter's copy
    /// shares with the original when no queue ID links them:
    /// `4AA091855DA0: message-id=<ca10035e-2951-bfd5-ec7e-1a5773fce1cd@mail.sender.com>`
    MessageId {
        qid: QidBytes<'a>,
        /// As logged, angle brackets included; may be empty or cut short.
        id: &'a [u8],
    },
    /// qmgr put a message in the active queue (again on every retry):
    /// `4AA091855DA0: from=<user@sender.com>, size=391, nrcpt=1 (queue active)`
    QueueActive {
        qid: QidBytes<'a>,
        from: &'a [u8],
        /// `size=`: the message's size in bytes as queued.
        size: Option<u64>,
    },
    /// qmgr gave up on what is left of a message:
    /// `23EBE3D5C0: from=<h-498b@h-5e67.com>, status=expired, returned to sender`
    Expired { qid: QidBytes<'a>, from: &'a [u8] },
    /// The queue file is gone: qmgr (done) or postsuper (deleted by the admin):
    /// `4AA091855DA0: removed`
    Removed { qid: QidBytes<'a> },
    /// A delivery agent's verdict on one recipient:
    /// `776E41855DB2: to=<invalid.email@example.com>, relay=mx.example.com[11.22.33.44]:25, delay=1.9, delays=0/0/1.5/0.37, dsn=5.1.1, status=bounced (host mx.example.com[11.22.33.44] said: 550 5.1.1 ... (in reply to RCPT TO command))`
    Delivery {
        qid: QidBytes<'a>,
        to: &'a [u8],
        /// `orig_to=`: the address the recipient had before an alias or a
        /// forward rewrote it.
        orig_to: Option<&'a [u8]>,
        relay: &'a [u8],
        dsn: &'a [u8],
        status: Status,
        /// The text in parentheses, whole; without the closing `)` when the
        /// line was cut short.
        response: &'a [u8],
    },
    /// A refused submission (smtpd, postscreen, cleanup):
    /// `NOQUEUE: reject: RCPT from x[1.2.3.4]: 554 5.7.1 <a@b>: Relay access denied; from=<john@example.com> to=<a@b> proto=SMTP helo=<x>`
    Reject {
        qid: Option<QidBytes<'a>>,
        /// `reject`, `milter-reject` or `proxy-reject`.
        action: &'a [u8],
        /// `RCPT`, `DATA`, `END-OF-MESSAGE`, `CONNECT`... (empty when not
        /// logged).
        stage: &'a [u8],
        client_name: Option<&'a [u8]>,
        client_ip: Option<&'a [u8]>,
        reply: &'a [u8],
        from: Option<&'a [u8]>,
        to: Option<&'a [u8]>,
        sasl_user: Option<&'a [u8]>,
    },
    /// cleanup kept the message out of the active queue or dropped it by a
    /// site's rule (`header_checks`, `body_checks`, a milter):
    /// `9C1B8C6611: hold: header Subject: X from n[1.2.3.4]; from=<S> to=<R> proto=ESMTP helo=<h>: REASON`
    Kept {
        qid: QidBytes<'a>,
        /// `hold`, `milter-hold`, `discard`, `milter-discard`.
        action: &'a [u8],
        /// What matched (`header Subject: ...`), and the rule's text after
        /// the envelope (empty when it gave none).
        matched: &'a [u8],
        reason: &'a [u8],
        from: Option<&'a [u8]>,
        to: Option<&'a [u8]>,
    },
    /// A `header_checks` `INFO` rule on the Subject:
    /// `071A1C6A93: info: header Subject: TEXT from n[1.2.3.4]; from=<S> to=<R> proto=ESMTP helo=<h>`
    Subject {
        qid: QidBytes<'a>,
        subject: &'a [u8],
    },
    /// A failed SMTP AUTH; the user name only from Postfix 3.9 on:
    /// `warning: unknown[192.0.2.152]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin`
    SaslFailed {
        client_ip: &'a [u8],
        /// `SASL LOGIN authentication failed: REASON`, as logged.
        what: &'a [u8],
        sasl_user: Option<&'a [u8]>,
    },
}

/// True for a queue ID: short IDs are uppercase hex; long IDs use an
/// alphabet without vowels and hold a `z` between time and inode.
pub fn is_qid(s: &[u8]) -> bool {
    if s.len() < 5 || s.len() > 24 {
        return false;
    }
    if s.iter()
        .all(|&b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return true;
    }
    // Long IDs: 10 characters of time (seconds in base 52, which includes
    // `z`, then microseconds), then `z`, then the inode in base 51 (no `z`).
    // So the separator is the first `z` from the eleventh character on.
    let no_vowel = |b: u8| b.is_ascii_alphanumeric() && !b"AEIOUaeiou".contains(&b);
    match s
        .get(10..)
        .and_then(|t| memchr::memchr(b'z', t))
        .map(|i| i + 10)
    {
        Some(z) if z + 1 < s.len() => {
            s[..z].iter().all(|&b| no_vowel(b))
                && s[z + 1..].iter().all(|&b| no_vowel(b) && b != b'z')
        }
        _ => false,
    }
}

/// Position of the two-byte separator `a b` (such as `", "` or `": "`).
/// Faster than a general substring search for the short separators of log
/// lines: it is one `memchr` per candidate.
#[inline]
pub fn find_pair(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(a, &hay[from..]) {
        let at = from + i;
        match hay.get(at + 1) {
            Some(&c) if c == b => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

/// Splits `QID: rest`; `None` when the line does not start with a queue ID.
#[inline]
fn qid_prefix(msg: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', msg.get(..25.min(msg.len()))?)?;
    let (qid, rest) = (&msg[..colon], &msg[colon..]);
    (rest.get(1) == Some(&b' ') && is_qid(qid)).then(|| (qid, &rest[2..]))
}

/// A line that starts like `QID: ` with something that is not a queue ID
/// (anonymised `7E1AEC2C388XXXX`, a hand-edited or damaged ID): one of a
/// message's lines whose message cannot be known. It is unrecognised,
/// never noise, so that the summary shows it. Words such as `warning:`
/// have no digit, and Postfix's other prefixes are not alphanumeric.
fn damaged_qid(msg: &[u8]) -> bool {
    let Some(colon) = msg
        .get(..41.min(msg.len()))
        .and_then(|h| find_pair(h, b':', b' '))
    else {
        return false;
    };
    let id = &msg[..colon];
    id.len() >= 6
        && id.iter().all(u8::is_ascii_alphanumeric)
        && id.iter().any(u8::is_ascii_digit)
        && !is_qid(id)
}

/// What a line of a queue-ID daemon that does not start with a queue ID is:
/// unrecognised if it looks like one with a damaged ID, else `other`.
fn without_qid<'a>(msg: &'a [u8], other: Parsed<'a>) -> Parsed<'a> {
    if damaged_qid(msg) {
        Parsed::Unknown
    } else {
        other
    }
}

/// The daemon of a Postfix tag (`postfix/submission/smtpd` → `smtpd`), or
/// `None` when the program is not Postfix.
#[inline]
pub fn daemon(program: &[u8]) -> Option<&[u8]> {
    if !program.starts_with(b"postfix") {
        return None;
    }
    Some(match memchr::memrchr(b'/', program) {
        Some(i) => &program[i + 1..],
        None => program,
    })
}

/// Parses the message of a line whose program is a Postfix daemon.
pub fn parse<'a>(daemon: &[u8], msg: &'a [u8]) -> Parsed<'a> {
    match daemon {
        b"smtpd" => smtpd(msg),
        b"qmgr" => qmgr(msg),
        b"smtp" | b"lmtp" | b"local" | b"virtual" | b"pipe" | b"error" | b"retry" | b"discard" => {
            agent(msg)
        }
        b"cleanup" => cleanup(msg),
        b"pickup" => pickup(msg),
        b"postscreen" => postscreen(msg),
        b"postsuper" => postsuper(msg),
        b"bounce" | b"master" | b"anvil" | b"dnsblog" | b"tlsmgr" | b"tlsproxy" | b"scache"
        | b"trivial-rewrite" | b"verify" | b"postfix-script" | b"sendmail" | b"postdrop"
        | b"postlogd" | b"proxymap" | b"showq" | b"flush" | b"spawn" | b"oqmgr" | b"postqueue"
        | b"postmap" | b"postconf" | b"postalias" | b"postlog" => Parsed::Noise,
        _ => Parsed::Unknown,
    }
}

/// A severity prefix marks a diagnostic, which we do not count (except the
/// SASL failure, handled before this check).
#[inline]
fn is_diagnostic(msg: &[u8]) -> bool {
    msg.starts_with(b"warning: ")
        || msg.starts_with(b"error: ")
        || msg.starts_with(b"fatal: ")
        || msg.starts_with(b"panic: ")
        || msg.starts_with(b"statistics: ")
}

/// smtpd: `client=`, rejects, SASL failures; connection chatter is noise.
fn smtpd(msg: &[u8]) -> Parsed<'_> {
    if let Some((qid, rest)) = qid_prefix(msg) {
        if let Some(v) = rest.strip_prefix(b"client=") {
            return client(qid, v);
        }
        if let Some(p) = reject(Some(qid), rest) {
            return p;
        }
        return Parsed::Noise;
    }
    if let Some(rest) = msg.strip_prefix(b"NOQUEUE: ") {
        return reject(None, rest).unwrap_or(Parsed::Noise);
    }
    if let Some(rest) = msg.strip_prefix(b"warning: ")
        && let Some(p) = sasl_failed(rest)
    {
        return p;
    }
    // `proxy-reject: END-OF-MESSAGE: ...` has no queue ID prefix at all.
    if let Some(p) = reject(None, msg) {
        return p;
    }
    if is_diagnostic(msg)
        || msg.starts_with(b"connect from ")
        || msg.starts_with(b"disconnect from ")
        || msg.starts_with(b"lost connection after ")
        || msg.starts_with(b"timeout after ")
        || msg.starts_with(b"too many errors after ")
        || msg.starts_with(b"Anonymous TLS connection")
        || msg.starts_with(b"Trusted TLS connection")
        || msg.starts_with(b"Untrusted TLS connection")
        || msg.starts_with(b"Verified TLS connection")
        || msg.starts_with(b"SSL_accept error")
        || msg.starts_with(b"improper command pipelining")
        || msg.starts_with(b"setting up TLS connection")
        || msg.starts_with(b"NOQUEUE")
        || msg.starts_with(b"proxy-accept: ")
    {
        return Parsed::Noise;
    }
    Parsed::Unknown
}

/// The value of `client=NAME[ADDR][:PORT][, key=value]...`.
fn client<'a>(qid: &'a [u8], v: &'a [u8]) -> Parsed<'a> {
    let Some((ip, rest)) = bracketed(v) else {
        return Parsed::Unknown;
    };
    let client_name = &v[..memchr::memchr(b'[', v).unwrap_or(0)];
    let mut sasl_user = None;
    let mut orig_queue_id = None;
    let mut orig_client_ip = None;
    for (k, val) in comma_fields(rest) {
        match k {
            b"sasl_username" => sasl_user = Some(val),
            b"orig_queue_id" => orig_queue_id = Some(val),
            b"orig_client" => orig_client_ip = bracketed(val).map(|(ip, _)| ip),
            _ => {}
        }
    }
    Parsed::Event(Event::Client {
        qid,
        client_name,
        client_ip: ip,
        sasl_user,
        orig_queue_id,
        orig_client_ip,
    })
}

/// `NAME[ADDR]rest` → (ADDR, rest after `]` and an optional `:PORT`).
#[inline]
fn bracketed(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let open = memchr::memchr(b'[', s)?;
    let close = open + memchr::memchr(b']', &s[open..])?;
    let mut rest = &s[close + 1..];
    if rest.first() == Some(&b':') {
        let n = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 {
            rest = &rest[1 + n..];
        }
    }
    Some((&s[open + 1..close], rest))
}

/// Iterates `, key=value` pairs (values end at the next `, `).
fn comma_fields(mut s: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        loop {
            s = s.strip_prefix(b", ")?;
            let end = find_pair(s, b',', b' ').unwrap_or(s.len());
            let field = &s[..end];
            s = &s[end..];
            if let Some(eq) = memchr::memchr(b'=', field) {
                return Some((&field[..eq], &field[eq + 1..]));
            }
        }
    })
}

/// `ACTION: STAGE from NAME[ADDR]: REPLY; from=<S> to=<R> proto=P helo=<H>`.
/// Returns `None` when the text is not an action line at all. `reject`,
/// `milter-reject` and `proxy-reject` refuse the submission; the other
/// actions (`reject_warning`, `filter`, `hold`, `discard`, `redirect`, ...)
/// refuse nothing and are noise.
fn reject<'a>(qid: Option<&'a [u8]>, s: &'a [u8]) -> Option<Parsed<'a>> {
    let colon = find_pair(s.get(..20.min(s.len()))?, b':', b' ')?;
    let action = &s[..colon];
    let body = &s[colon + 2..];
    match action {
        b"reject" | b"milter-reject" | b"proxy-reject" => {}
        b"hold" | b"milter-hold" | b"discard" | b"milter-discard" => {
            return Some(match qid {
                Some(qid) => kept(qid, action, body),
                None => Parsed::Noise,
            });
        }
        b"info" => {
            return Some(match qid.zip(body.strip_prefix(b"header Subject: ")) {
                Some((qid, v)) => {
                    // `TEXT from NAME[ADDR]; from=<S> ...`: the subject
                    // itself may hold ` from ` and `;`.
                    let end = memmem::rfind(v, b"; from=<")
                        .or_else(|| memmem::rfind(v, b"; to=<"))
                        .or_else(|| memmem::rfind(v, b"; proto="))
                        .unwrap_or(v.len());
                    let head = &v[..end];
                    let subject = match memmem::rfind(head, b" from ") {
                        Some(i) if head.ends_with(b"]") => &head[..i],
                        _ => head,
                    };
                    Parsed::Event(Event::Subject { qid, subject })
                }
                None => Parsed::Noise,
            });
        }
        b"reject_warning" | b"filter" | b"redirect" | b"proxy-accept" | b"warning" | b"replace"
        | b"prepend" | b"strip" | b"bcc" | b"delay" | b"pass" | b"milter-discard-to" => {
            return Some(Parsed::Noise);
        }
        _ => return None,
    }
    // The envelope is at the end; the reply text itself may hold `;`.
    let env_at = memmem::rfind(body, b"; from=<")
        .or_else(|| memmem::rfind(body, b"; to=<"))
        .or_else(|| memmem::rfind(body, b"; proto="))
        .unwrap_or(body.len());
    let (head, envelope) = (&body[..env_at], &body[env_at..]);
    // The client and the reply: `STAGE from NAME[ADDR]: REPLY` (smtpd),
    // `RCPT from [ADDR]:PORT: REPLY` (postscreen); cleanup's
    // `header ... from NAME[ADDR]` keeps its whole text as the reply.
    let from_at = memmem::find(head, b" from ");
    let (client_name, client_ip, reply) =
        match from_at.and_then(|i| Some((i, bracketed(&head[i + 6..])?))) {
            Some((i, (ip, rest))) => {
                let named = &head[i + 6..];
                let name = &named[..memchr::memchr(b'[', named).unwrap_or(0)];
                (
                    Some(name),
                    Some(ip),
                    rest.strip_prefix(b": ").unwrap_or(head),
                )
            }
            None => (None, None, head),
        };
    let stage = match from_at {
        Some(i) if !head[..i].contains(&b' ') => &head[..i],
        _ => b"",
    };
    Some(Parsed::Event(Event::Reject {
        qid,
        action,
        stage,
        client_name,
        client_ip,
        reply,
        from: angle_value(envelope, b"from=<"),
        to: angle_value(envelope, b"to=<"),
        sasl_user: sasl_suffix(envelope),
    }))
}

/// cleanup's `hold:`/`discard:` body: `WHAT from NAME[ADDR]; from=<S> to=<R> proto=P helo=<H>: REASON`.
fn kept<'a>(qid: &'a [u8], action: &'a [u8], body: &'a [u8]) -> Parsed<'a> {
    let env_at = memmem::rfind(body, b"; from=<")
        .or_else(|| memmem::rfind(body, b"; to=<"))
        .unwrap_or(body.len());
    let (head, envelope) = (&body[..env_at], &body[env_at..]);
    let matched = match memmem::rfind(head, b" from ") {
        Some(i) if head.ends_with(b"]") => &head[..i],
        _ => head,
    };
    // The reason follows the envelope's last field (`helo=<H>: REASON`).
    let reason = match memmem::rfind(envelope, b">: ") {
        Some(i) => &envelope[i + 3..],
        None => b"",
    };
    Parsed::Event(Event::Kept {
        qid,
        action,
        matched,
        reason,
        from: angle_value(envelope, b"from=<"),
        to: angle_value(envelope, b"to=<"),
    })
}

/// The text between `key` (ending in `<`) and the next `>`.
#[inline]
fn angle_value<'a>(s: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memmem::find(s, key)? + key.len();
    let end = memchr::memchr(b'>', &s[at..]).map_or(s.len(), |e| at + e);
    Some(&s[at..end])
}

/// ` sasl_username=U` (3.10+) or ` sasl_username=<U>` (milter path).
fn sasl_suffix(s: &[u8]) -> Option<&[u8]> {
    let at = memmem::find(s, b"sasl_username=")? + 14;
    let v = &s[at..];
    let v = v.strip_prefix(b"<").unwrap_or(v);
    let end = v
        .iter()
        .position(|&b| b == b' ' || b == b'>' || b == b',')
        .unwrap_or(v.len());
    (end > 0).then(|| &v[..end])
}

/// After `warning: `: `NAME[ADDR]: SASL MECH authentication failed: REASON[, sasl_username=U]`.
fn sasl_failed(s: &[u8]) -> Option<Parsed<'_>> {
    let (ip, rest) = bracketed(s)?;
    let rest = rest.strip_prefix(b": ")?;
    if !rest.starts_with(b"SASL ") || memmem::find(rest, b" authentication failed").is_none() {
        return None;
    }
    let (what, user) = match memmem::rfind(rest, b", sasl_username=") {
        Some(i) => (&rest[..i], Some(&rest[i + 16..])),
        None => (rest, None),
    };
    Some(Parsed::Event(Event::SaslFailed {
        client_ip: ip,
        what,
        sasl_user: user.filter(|u| !u.is_empty()),
    }))
}

/// qmgr: `from=... (queue active)`, `status=expired`, `removed`.
fn qmgr(msg: &[u8]) -> Parsed<'_> {
    let Some((qid, rest)) = qid_prefix(msg) else {
        return if is_diagnostic(msg) {
            Parsed::Noise
        } else {
            Parsed::Unknown
        };
    };
    if rest == b"removed" {
        return Parsed::Event(Event::Removed { qid });
    }
    if let Some(v) = rest.strip_prefix(b"from=<") {
        let Some(end) = find_pair(v, b'>', b',') else {
            return Parsed::Unknown;
        };
        let from = &v[..end];
        let tail = v.get(end + 3..).unwrap_or_default();
        if tail.starts_with(b"status=expired") || tail.starts_with(b"status=force-expired") {
            return Parsed::Event(Event::Expired { qid, from });
        }
        if let Some(t) = tail.strip_prefix(b"size=") {
            let n = t.iter().take_while(|b| b.is_ascii_digit()).count();
            let size = std::str::from_utf8(&t[..n])
                .ok()
                .and_then(|d| d.parse().ok());
            return Parsed::Event(Event::QueueActive { qid, from, size });
        }
        return Parsed::Unknown;
    }
    if rest.starts_with(b"skipped") || is_diagnostic(rest) {
        return Parsed::Noise;
    }
    Parsed::Unknown
}

/// Delivery agents: `QID: to=<R>[, orig_to=<O>], relay=..., ..., dsn=X, status=S (REASON)`.
/// Per-attempt chatter (`host ... said:`, `lost connection`, `connect to`,
/// TLS) is noise.
fn agent(msg: &[u8]) -> Parsed<'_> {
    let Some((qid, rest)) = qid_prefix(msg) else {
        return without_qid(msg, Parsed::Noise);
    };
    let Some(v) = rest.strip_prefix(b"to=") else {
        return Parsed::Noise;
    };
    // `to=<R>` normally; `to=R` from old versions and some agents.
    let (to, mut fields) = if let Some(v) = v.strip_prefix(b"<") {
        match find_pair(v, b'>', b',') {
            Some(e) => (&v[..e], &v[e + 1..]),
            None => return Parsed::Unknown,
        }
    } else {
        match find_pair(v, b',', b' ') {
            Some(e) => (&v[..e], &v[e..]),
            None => return Parsed::Unknown,
        }
    };
    let mut relay: &[u8] = b"";
    let mut dsn: &[u8] = b"";
    let mut orig_to = None;
    loop {
        let Some(f) = fields.strip_prefix(b", ") else {
            return Parsed::Unknown;
        };
        if let Some(st) = f.strip_prefix(b"status=") {
            let word_end = memchr::memchr(b' ', st).unwrap_or(st.len());
            let status = match &st[..word_end] {
                b"sent" => Status::Sent,
                b"bounced" => Status::Bounced,
                b"deferred" | b"SOFTBOUNCE" => Status::Deferred,
                // Address verification probes deliver nothing.
                b"deliverable" | b"undeliverable" | b"undeliverable-but-not-cached" => {
                    return Parsed::Noise;
                }
                _ => return Parsed::Unknown,
            };
            let reason = &st[word_end..];
            let reason = reason
                .strip_prefix(b" (")
                .unwrap_or(reason.trim_ascii_start());
            // A line cut at 2000 bytes loses its `)`; keep what is there.
            let response = reason.strip_suffix(b")").unwrap_or(reason);
            return Parsed::Event(Event::Delivery {
                qid,
                to,
                orig_to,
                relay,
                dsn,
                status,
                response,
            });
        }
        let end = find_pair(f, b',', b' ').unwrap_or(f.len());
        let field = &f[..end];
        if let Some(r) = field.strip_prefix(b"relay=") {
            relay = r;
        } else if let Some(o) = field.strip_prefix(b"orig_to=") {
            orig_to = Some(o.strip_prefix(b"<").unwrap_or(o));
            orig_to = orig_to.map(|o| o.strip_suffix(b">").unwrap_or(o));
        } else if let Some(d) = field.strip_prefix(b"dsn=") {
            dsn = d;
        }
        fields = &f[end..];
        if fields.is_empty() {
            // Cut before `status=`: nothing to count.
            return Parsed::Unknown;
        }
    }
}

/// cleanup: `message-id=`, header/body and milter rejects.
fn cleanup(msg: &[u8]) -> Parsed<'_> {
    let Some((qid, rest)) = qid_prefix(msg) else {
        return if is_diagnostic(msg) {
            Parsed::Noise
        } else {
            Parsed::Unknown
        };
    };
    if let Some(id) = rest.strip_prefix(b"message-id=") {
        return Parsed::Event(Event::MessageId { qid, id });
    }
    if rest.starts_with(b"resent-message-id=") {
        return Parsed::Noise;
    }
    reject(Some(qid), rest).unwrap_or(Parsed::Noise)
}

/// pickup: `QID: uid=N from=<S>`.
fn pickup(msg: &[u8]) -> Parsed<'_> {
    let Some((qid, rest)) = qid_prefix(msg) else {
        return without_qid(msg, Parsed::Noise);
    };
    let Some(v) = rest.strip_prefix(b"uid=") else {
        return Parsed::Unknown;
    };
    let sp = memchr::memchr(b' ', v).unwrap_or(v.len());
    let uid = &v[..sp];
    match angle_value(&v[sp..], b"from=<") {
        Some(from) => Parsed::Event(Event::Pickup { qid, uid, from }),
        None => Parsed::Unknown,
    }
}

/// postscreen: only its `NOQUEUE: reject:` lines count; the rest is noise.
fn postscreen(msg: &[u8]) -> Parsed<'_> {
    match msg.strip_prefix(b"NOQUEUE: ") {
        Some(rest) => reject(None, rest).unwrap_or(Parsed::Noise),
        None => Parsed::Noise,
    }
}

/// postsuper: `QID: removed` is an admin's deletion: it ends the lifecycle.
fn postsuper(msg: &[u8]) -> Parsed<'_> {
    match qid_prefix(msg) {
        Some((qid, b"removed")) => Parsed::Event(Event::Removed { qid }),
        Some(_) => Parsed::Noise,
        None => without_qid(msg, Parsed::Noise),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(daemon: &str, msg: &'a str) -> Parsed<'a> {
        parse(daemon.as_bytes(), msg.as_bytes())
    }

    fn ev<'a>(daemon: &str, msg: &'a str) -> Event<'a> {
        match p(daemon, msg) {
            Parsed::Event(e) => e,
            other => panic!("{msg}: {other:?}"),
        }
    }

    #[test]
    fn queue_ids() {
        for ok in [
            "4AA091855DA0",
            "3AA60B752",
            "3mPVKl0Mhjz7sXv",
            "44JCRG5tYPzCqt2",
            "48rT2v1hQrz1J0N",
            // `z` inside the time part, as real Postfix writes it.
            "4jXpzb4Y9Vz5cXH",
            "4jHfk65zFtz1Bfp",
        ] {
            assert!(is_qid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "NOQUEUE",
            "STATISTICS1",
            "warning",
            "123",
            "hello world",
            "aeiouaeiouzx",
        ] {
            assert!(!is_qid(bad.as_bytes()), "{bad}");
        }
        assert_eq!(daemon(b"postfix/submission/smtpd"), Some(&b"smtpd"[..]));
        assert_eq!(daemon(b"postfix-239.58.50.50/qmgr"), Some(&b"qmgr"[..]));
        assert_eq!(daemon(b"opendkim"), None);
    }

    #[test]
    fn smtpd_client_lines() {
        assert_eq!(
            ev(
                "smtpd",
                "4AA091855DA0: client=some.domain.name[1.2.3.4], sasl_method=PLAIN, sasl_username=user@sender.com"
            ),
            Event::Client {
                qid: b"4AA091855DA0",
                client_name: b"some.domain.name",
                client_ip: b"1.2.3.4",
                sasl_user: Some(b"user@sender.com"),
                orig_queue_id: None,
                orig_client_ip: None
            }
        );
        assert_eq!(
            ev(
                "smtpd",
                "ED01244770: client=localhost[127.0.0.1], orig_queue_id=4F5C64474F, orig_client=unknown[28.55.140.112]"
            ),
            Event::Client {
                qid: b"ED01244770",
                client_name: b"localhost",
                client_ip: b"127.0.0.1",
                sasl_user: None,
                orig_queue_id: Some(b"4F5C64474F"),
                orig_client_ip: Some(b"28.55.140.112")
            }
        );
        assert_eq!(
            ev(
                "smtpd",
                "3mPVKl0Mhjz7sXv: client=unknown[2a02:168:636a::15e2]:55729"
            ),
            Event::Client {
                qid: b"3mPVKl0Mhjz7sXv",
                client_name: b"unknown",
                client_ip: b"2a02:168:636a::15e2",
                sasl_user: None,
                orig_queue_id: None,
                orig_client_ip: None
            }
        );
        for noise in [
            "connect from localhost[127.0.0.1]",
            "disconnect from some.domain.name[1.2.3.4] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8",
            "lost connection after UNKNOWN from unknown[112.247.97.110]",
            "NOQUEUE: lost connection after CONNECT from unknown[192.0.2.25]",
            "Anonymous TLS connection established from x[1.2.3.4]: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
            "warning: hostname x does not resolve to address 1.2.3.4",
            "NOQUEUE: filter: RCPT from unknown[30.207.11.100]: <>: Sender address triggers FILTER smtp-amavis:[127.0.0.1]:10026; from=<> to=<h@x.com> proto=ESMTP helo=<localhost>",
            "NOQUEUE: reject_warning: RCPT from example.com[93.184.216.34]: 553 5.7.1 <s@e.com>: Sender address rejected: not owned by user ph123; from=<s@e.com> to=<r@e.com> proto=ESMTP helo=<example.com>",
        ] {
            assert_eq!(p("smtpd", noise), Parsed::Noise, "{noise}");
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(
            ev("smtpd", "NOQUEUE: reject: RCPT from badguy.example.com[93.184.216.34]: 454 4.7.1 Service unavailable; Client host [93.184.216.34] blocked using rbl.example.com; http://www.example.com/query?ip=93.184.216.34; from=<spammer@example.com> to=<goodguy@example.com> proto=ESMTP helo=<badguy.example.com>"),
            Event::Reject {
                qid: None,
                action: b"reject",
                stage: b"RCPT",
                client_name: Some(b"badguy.example.com"),
                client_ip: Some(b"93.184.216.34"),
                reply: b"454 4.7.1 Service unavailable; Client host [93.184.216.34] blocked using rbl.example.com; http://www.example.com/query?ip=93.184.216.34",
                from: Some(b"spammer@example.com"),
                to: Some(b"goodguy@example.com"),
                sasl_user: None,
            }
        );
        let Event::Reject {
            qid,
            from,
            sasl_user,
            ..
        } = ev(
            "smtpd",
            "D155CDC24C3: reject: RCPT from unknown[30.207.11.100]: 450 4.7.1 <>: Sender address rejected: You are sending too many emails; from=<> to=<h@x.com> proto=ESMTP helo=<localhost> sasl_method=LOGIN sasl_username=u@x.com",
        )
        else {
            panic!()
        };
        assert_eq!(
            (qid, from, sasl_user),
            (
                Some(&b"D155CDC24C3"[..]),
                Some(&b""[..]),
                Some(&b"u@x.com"[..])
            )
        );
        let Event::Reject {
            client_ip,
            reply,
            from,
            to,
            ..
        } = ev(
            "postscreen",
            "NOQUEUE: reject: RCPT from [192.0.2.213]:12641: 550 5.7.1 Service unavailable; client [192.0.2.213] blocked using zen.spamhaus.org; from=<contact@spammer1.example>, to=<list1@listserv.domain.example>, proto=ESMTP, helo=<spammer1.example>",
        )
        else {
            panic!()
        };
        assert_eq!(client_ip, Some(&b"192.0.2.213"[..]));
        assert!(
            reply.starts_with(b"550 5.7.1 Service unavailable"),
            "{}",
            String::from_utf8_lossy(reply)
        );
        assert_eq!(
            (from, to),
            (
                Some(&b"contact@spammer1.example"[..]),
                Some(&b"list1@listserv.domain.example"[..])
            )
        );
        let Event::Reject { from, .. } = ev(
            "cleanup",
            "906F418067A: reject: header Subject: Yusuf from mail-yb1-f174.google.com[209.85.219.174]; from=<testmaili34@gmail.com> to=<ugur@u.com.tr> proto=ESMTP helo=<mail-yb1-f174.google.com>: 5.7.1 message content rejected",
        ) else {
            panic!()
        };
        assert_eq!(from, Some(&b"testmaili34@gmail.com"[..]));
        assert!(matches!(
            ev(
                "smtpd",
                "proxy-reject: END-OF-MESSAGE: 554 5.7.1 Rejected for policy reasons (381C4E5DFA31DF9E90F); from=<a@localhost.localdomain> to=<b@localhost.localdomain> proto=ESMTP helo=<localhost.localdomain>"
            ),
            Event::Reject {
                from: Some(b"a@localhost.localdomain"),
                ..
            }
        ));
    }

    #[test]
    fn sasl_failures() {
        assert_eq!(
            ev(
                "smtpd",
                "warning: unknown[82.221.106.233]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
            ),
            Event::SaslFailed {
                client_ip: b"82.221.106.233",
                what: b"SASL LOGIN authentication failed: UGFzc3dvcmQ6",
                sasl_user: None
            }
        );
        assert_eq!(
            ev(
                "smtpd",
                "warning: unknown[192.0.2.152]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin"
            ),
            Event::SaslFailed {
                client_ip: b"192.0.2.152",
                what: b"SASL LOGIN authentication failed: (reason unavailable)",
                sasl_user: Some(b"admin")
            }
        );
        assert!(matches!(
            ev(
                "smtpd",
                "warning: unknown[192.0.2.237]:55729: SASL PLAIN authentication failed: authentication failure"
            ),
            Event::SaslFailed {
                client_ip: b"192.0.2.237",
                ..
            }
        ));
    }

    #[test]
    fn qmgr_lines() {
        assert_eq!(
            ev(
                "qmgr",
                "4AA091855DA0: from=<user@sender.com>, size=391, nrcpt=1 (queue active)"
            ),
            Event::QueueActive {
                qid: b"4AA091855DA0",
                from: b"user@sender.com",
                size: Some(391),
            }
        );
        assert_eq!(
            ev(
                "qmgr",
                "A48191855DA0: from=<>, size=3147, nrcpt=1 (queue active)"
            ),
            Event::QueueActive {
                qid: b"A48191855DA0",
                from: b"",
                size: Some(3147),
            }
        );
        assert_eq!(
            ev(
                "qmgr",
                "23EBE3D5C0: from=<h-498b@h-5e67.com>, status=expired, returned to sender"
            ),
            Event::Expired {
                qid: b"23EBE3D5C0",
                from: b"h-498b@h-5e67.com"
            }
        );
        assert_eq!(
            ev("qmgr", "4AA091855DA0: removed"),
            Event::Removed {
                qid: b"4AA091855DA0"
            }
        );
        assert_eq!(
            p("qmgr", "4AA091855DA0: skipped, still being delivered"),
            Parsed::Noise
        );
        assert_eq!(p("qmgr", "STATISTICS1: whatever"), Parsed::Unknown);
        assert_eq!(
            p("postsuper", "3nsRhm5bH5z306M: removed"),
            Parsed::Event(Event::Removed {
                qid: b"3nsRhm5bH5z306M"
            })
        );
    }

    #[test]
    fn holds_and_subjects_of_cleanup() {
        assert_eq!(
            ev(
                "cleanup",
                "9C1B8C6611: hold: header Subject: Contract draft HOLDME for review from mail.partner.test[127.0.0.35]; from=<legal@partner.test> to=<carol@example.edu> proto=ESMTP helo=<mail.partner.test>: held for review by the postmaster"
            ),
            Event::Kept {
                qid: b"9C1B8C6611",
                action: b"hold",
                matched: b"header Subject: Contract draft HOLDME for review",
                reason: b"held for review by the postmaster",
                from: Some(b"legal@partner.test"),
                to: Some(b"carol@example.edu"),
            }
        );
        // A subject that holds the envelope's words stays whole.
        assert_eq!(
            ev(
                "cleanup",
                "071A1C6A93: info: header Subject: re: from x[1.2.3.4]; from=<a@b> to=<c@d> from relay.odd.test[127.0.0.34]; from=<billing@odd.test> to=<alice@example.edu> proto=ESMTP helo=<relay.odd.test>"
            ),
            Event::Subject {
                qid: b"071A1C6A93",
                subject: b"re: from x[1.2.3.4]; from=<a@b> to=<c@d>",
            }
        );
        let Event::Reject {
            qid,
            action,
            stage,
            client_name,
            reply,
            to,
            ..
        } = ev(
            "cleanup",
            "15446C6601: milter-reject: END-OF-MESSAGE from relay.odd.test[127.0.0.34]: 5.7.1 Gtube pattern; from=<promo@odd.test> to=<alice@example.edu> proto=ESMTP helo=<relay.odd.test>",
        )
        else {
            panic!()
        };
        assert_eq!(
            (qid, action, stage, client_name, reply, to),
            (
                Some(&b"15446C6601"[..]),
                &b"milter-reject"[..],
                &b"END-OF-MESSAGE"[..],
                Some(&b"relay.odd.test"[..]),
                &b"5.7.1 Gtube pattern"[..],
                Some(&b"alice@example.edu"[..])
            )
        );
    }

    #[test]
    fn deliveries() {
        assert_eq!(
            ev("smtp", "776E41855DB2: to=<invalid.email@example.com>, relay=mx.example.com[11.22.33.44]:25, delay=1.9, delays=0/0/1.5/0.37, dsn=5.1.1, status=bounced (host mx.example.com[11.22.33.44] said: 550 5.1.1 <invalid.email@example.com> User unknown (in reply to RCPT TO command))"),
            Event::Delivery {
                qid: b"776E41855DB2",
                to: b"invalid.email@example.com",
                orig_to: None,
                relay: b"mx.example.com[11.22.33.44]:25",
                dsn: b"5.1.1",
                status: Status::Bounced,
                response: b"host mx.example.com[11.22.33.44] said: 550 5.1.1 <invalid.email@example.com> User unknown (in reply to RCPT TO command)",
            }
        );
        assert!(matches!(
            ev(
                "local",
                "95154657C: to=<h-493@h-ea3.com>, orig_to=<h-195@h-20b.com>, relay=local, delay=0.1, delays=0.09/0/0/0.01, dsn=2.0.0, status=sent (delivered to command: procmail -a \"$EXTENSION\" DEFAULT=$HOME/Maildir/)"
            ),
            Event::Delivery {
                to: b"h-493@h-ea3.com",
                orig_to: Some(b"h-195@h-20b.com"),
                relay: b"local",
                status: Status::Sent,
                ..
            }
        ));
        assert!(matches!(
            ev(
                "smtp",
                "BABABABABA: to=<h-629@h-05c.com>, relay=170.55.103.23[170.55.103.23]:2501, conn_use=5, delay=0.95, delays=0.17/0.75/0/0.03, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as CACACACACACA)"
            ),
            Event::Delivery {
                relay: b"170.55.103.23[170.55.103.23]:2501",
                response: b"250 2.0.0 Ok: queued as CACACACACACA",
                ..
            }
        ));
        assert!(matches!(
            ev(
                "local",
                "892A0205B6: to=ghdsgfhdslfh@localhost, relay=local, delay=0.05, delays=0.02/0/0/0.02, dsn=5.1.1, status=bounced (unknown user: \"ghdsgfhdslfh\")"
            ),
            Event::Delivery {
                to: b"ghdsgfhdslfh@localhost",
                status: Status::Bounced,
                ..
            }
        ));
        assert!(matches!(
            ev(
                "smtp",
                "7EE668039: to=<user@example.com>, relay=mail.example.com[1.2.3.4]:25, delay=3.6, delays=0.08/0.02/0.85/0.14, tls=dane/requiretls, dsn=2.1.5, status=sent (250 2.0.0 Ok: queued as 153053D)"
            ),
            Event::Delivery {
                dsn: b"2.1.5",
                status: Status::Sent,
                ..
            }
        ));
        // Cut short: the closing `)` is missing; the text is kept.
        assert!(matches!(
            ev(
                "smtp",
                "2DC5552A34: to=<user@yahoo.com>, relay=none, delay=63495, delays=63350/144/0/0, dsn=4.4.2, status=deferred (delivery temporarily suspended: lost connection with mta7"
            ),
            Event::Delivery {
                status: Status::Deferred,
                response: b"delivery temporarily suspended: lost connection with mta7",
                ..
            }
        ));
        // Cut before the status: nothing to count.
        assert_eq!(
            p(
                "smtp",
                "2DC5552A34: to=<user@yahoo.com>, relay=none, delay=63495, del"
            ),
            Parsed::Unknown
        );
        for noise in [
            "A17F830001CA: host mailin5.zih.example.com[11.22.33.44] said: 451-You have been greylisted (in reply to RCPT TO command)",
            "connect to michaela.com[176.74.176.167]:25: Connection refused",
            "1310930001DB: lost connection with hotmail-com.olc.protection.outlook.com[104.47.10.33] while sending RCPT TO",
        ] {
            assert_eq!(p("smtp", noise), Parsed::Noise, "{noise}");
        }
    }

    #[test]
    fn pickup_and_unknown_daemons() {
        assert_eq!(
            ev(
                "pickup",
                "69EADD0808B: uid=300 from=<triceratops@dinos.test>"
            ),
            Event::Pickup {
                qid: b"69EADD0808B",
                uid: b"300",
                from: b"triceratops@dinos.test"
            }
        );
        assert_eq!(
            p(
                "bounce",
                "776E41855DB2: sender non-delivery notification: A48191855DA0"
            ),
            Parsed::Noise
        );
        assert_eq!(p("frobnicator", "x"), Parsed::Unknown);
        assert_eq!(
            ev(
                "cleanup",
                "776E41855DB2: message-id=<ca10035e@mail.sender.com>"
            ),
            Event::MessageId {
                qid: b"776E41855DB2",
                id: b"<ca10035e@mail.sender.com>"
            }
        );
        assert_eq!(
            p(
                "cleanup",
                "776E41855DB2: resent-message-id=<ca10035e@mail.sender.com>"
            ),
            Parsed::Noise
        );
    }

    #[test]
    fn damaged_queue_ids_are_unrecognised_not_noise() {
        // An anonymised real line (FgForrest's log) and hand-damaged ones.
        for (d, l) in [
            (
                "smtp",
                "7E1AEC2C388XXXX: to=<k0i3u1e0v4@f1eh43i4.e0f>, relay=none, delay=71766, delays=71766/0.01/0.29/0, dsn=4.4.1, status=deferred (connect to michaela.com[176.74.176.167]:25: Connection refused)",
            ),
            ("qmgr", "7E1AEC2C388XXXX: removed"),
            ("postsuper", "7E1AEC2C388XXXX: removed"),
            (
                "pickup",
                "69EADD0808BQQ: uid=300 from=<triceratops@dinos.test>",
            ),
            ("smtpd", "4AA091855DA0XX: client=a[192.0.2.1]"),
            ("cleanup", "4AA091855DA0XX: message-id=<a@b>"),
        ] {
            assert_eq!(p(d, l), Parsed::Unknown, "{l}");
        }
        // Noise of the same daemons stays noise.
        for (d, l) in [
            (
                "smtp",
                "connect to michaela.com[176.74.176.167]:25: Connection refused",
            ),
            (
                "smtp",
                "warning: no MX host for x.test has a valid address record",
            ),
            ("postsuper", "Deleted: 3 messages"),
            (
                "pickup",
                "warning: 9F3E81855DA0: message has been queued for 1 days",
            ),
        ] {
            assert_eq!(p(d, l), Parsed::Noise, "{l}");
        }
    }

    #[test]
    fn never_panics_on_prefixes_of_real_lines() {
        let lines = [
            (
                "smtp",
                "776E41855DB2: to=<invalid.email@example.com>, relay=mx.example.com[11.22.33.44]:25, delay=1.9, delays=0/0/1.5/0.37, dsn=5.1.1, status=bounced (host said: 550)",
            ),
            (
                "smtpd",
                "NOQUEUE: reject: RCPT from a[1.2.3.4]: 554 5.7.1 <a@b>: Relay access denied; from=<j@e.com> to=<a@b> proto=SMTP helo=<x>",
            ),
            (
                "smtpd",
                "4AA091855DA0: client=some.domain.name[1.2.3.4], sasl_method=PLAIN, sasl_username=user@sender.com",
            ),
            (
                "smtpd",
                "warning: unknown[192.0.2.152]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin",
            ),
            (
                "qmgr",
                "23EBE3D5C0: from=<h-498b@h-5e67.com>, status=expired, returned to sender",
            ),
            (
                "pickup",
                "69EADD0808B: uid=300 from=<triceratops@dinos.test>",
            ),
            (
                "postscreen",
                "NOQUEUE: reject: RCPT from [192.0.2.213]:12641: 550 5.7.1 x; from=<c@s.example>, to=<l@d.example>, proto=ESMTP, helo=<s>",
            ),
        ];
        for (d, l) in lines {
            for cut in 0..=l.len() {
                let _ = parse(d.as_bytes(), &l.as_bytes()[..cut]);
            }
        }
    }
}
