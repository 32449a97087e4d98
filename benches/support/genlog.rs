//! Deterministic, streaming generator of large synthetic Postfix mail logs,
//! with Dovecot access lines mixed in.
//!
//! The output is meant for throughput benchmarks of the parser and correlator:
//! a seeded stream of lines in the shapes real Postfix 3.x writes through
//! classic syslog, e.g.
//!
//! ```text
//! Nov  2 00:00:01 mx1 postfix/smtpd[2211]: connect from unknown[203.0.113.7]
//! ```
//!
//! (Asia/Taipei local time, no year, space-padded day, hosts `mx1`, `mx2`, ...).
//! The same [`Options`] always produce byte-identical output.
//!
//! # What it produces
//!
//! * Authenticated submissions (`postfix/submission/smtpd`, sometimes port-25
//!   `postfix/smtpd`) with `client=..., sasl_method=..., sasl_username=...`,
//!   inbound mail from remote MTAs to local users, local mail injected by
//!   `postfix/pickup` (`uid=33 from=<www-data>`), and relay from trusted hosts.
//! * The full queue lifecycle: `cleanup` `message-id=`, `qmgr` `from=...
//!   (queue active)`, one `to=..., relay=..., delay=..., delays=..., dsn=...,
//!   status=...` line per recipient from `postfix/smtp`, `postfix/lmtp`
//!   (Dovecot) or `postfix/local`, and `qmgr` `removed`.
//! * Statuses `sent`, `bounced` (followed by a sender non-delivery notification:
//!   a new queue ID, `postfix/bounce`, `from=<>`, delivery back to the sender),
//!   `deferred` (retried minutes later; the `qmgr` `from=` line repeats on every
//!   retry) and, rarely, `status=expired, returned to sender`.
//! * Content-filter hand-offs (`relay=127.0.0.1[127.0.0.1]:10024 ... queued as
//!   NEW`, then `NEW: client=localhost[127.0.0.1], orig_queue_id=OLD, ...`),
//!   where the re-injected message usually shows up before the hand-off line.
//! * Sessions that never queue anything: `NOQUEUE: reject: RCPT from ...`,
//!   `SASL LOGIN authentication failed` warnings (with and without the
//!   Postfix 3.9 `, sasl_username=` suffix), dropped connections.
//! * Noise a correlator must skip: TLS `Anonymous TLS connection established`,
//!   `hostname ... does not resolve` warnings, `anvil` statistics, `lost
//!   connection after ...`, intermediate `host ... said: 4xx` lines that are not
//!   a delivery status, `opendkim` lines.
//! * Short (10 hex digit) queue IDs and, for about 1% of messages, Postfix
//!   "long" queue IDs (`4dKQ1x2Hc9z5Tq`).
//! * Dovecot 2.3 access lines through the same syslog envelope
//!   (`Nov  2 00:00:01 mx1 dovecot: imap-login: Login: user=<u42@example.edu>,
//!   ...`), about [`Options::dovecot_share`] of all lines: IMAP sessions
//!   (sometimes an `ID sent` line before the login, sometimes `delete:` /
//!   `expunge:` mail_log lines, then `Logged out` or a `Connection closed`
//!   during IDLE), POP3 sessions (login, one `expunge:` per deleted message,
//!   `Logged out top=..., retr=..., del=N/M, size=...`), failed logins (one
//!   `auth: passwd-file(...): Password mismatch` per attempt, then the login
//!   process's `auth failed` line with the same session ID) and connections
//!   with `no auth attempts`. Session IDs are unique. These lines come from a
//!   random stream of their own, so `dovecot_share = 0.0` gives exactly the
//!   Postfix-only output.
//!
//! Lines of concurrent sessions interleave in a causally plausible order, with
//! timestamps advancing monotonically at about `messages_per_sec` messages per
//! second of log time. Only documentation address ranges (192.0.2.0/24,
//! 198.51.100.0/24, 203.0.113.0/24) and `.test` domains are used remotely.
//!
//! # Bounded in-flight state
//!
//! Every lifecycle settles within a bounded span of log time: deferred mail is
//! retried at most twice, a few minutes apart, so any message is finished (sent,
//! bounced or expired) within about 30 minutes, and a Dovecot session lasts at
//! most four minutes. The number of messages in
//! flight therefore depends only on the message rate, never on how many lines
//! are generated. This keeps the generator itself constant-memory, and it lets a
//! benchmark check that the consumer's memory stays flat as the input grows:
//! with unbounded lifecycles, growth in the consumer would be indistinguishable
//! from a leak.
//!
//! The module uses only `std` and is included from both an example and a
//! benchmark with `#[path = "../benches/support/genlog.rs"] mod genlog;`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fmt;
use std::io::{self, Write};

// ---------------------------------------------------------------------------
// Public interface

/// 2026-11-02T00:00:00+08:00.
pub const DEFAULT_START_UNIX: i64 = 1_793_548_800;

/// Generator settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of lines to write.
    pub lines: u64,
    /// Seed; the same options always give the same output.
    pub seed: u64,
    /// Number of mail hosts (`mx1`, `mx2`, ...) interleaved in the output.
    pub hosts: usize,
    /// Log time of the first arrival, as a Unix timestamp.
    pub start_unix: i64,
    /// Queued messages per second of log time, over all hosts.
    pub messages_per_sec: u32,
    /// Fraction of all lines that are Dovecot access lines (`0.0` gives the
    /// Postfix-only stream, byte for byte; values are clamped to `0.0..=0.95`).
    pub dovecot_share: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lines: 1_000_000,
            seed: 1,
            hosts: 2,
            start_unix: DEFAULT_START_UNIX,
            messages_per_sec: 12,
            dovecot_share: 0.3,
        }
    }
}

/// Counts of what was actually written (lines cut off at the end are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines written.
    pub lines: u64,
    /// Queued messages: `cleanup` `message-id=` lines, one per queue ID,
    /// including bounce notices and content-filter re-injections.
    pub messages: u64,
    /// Delivery status lines (`to=<...>, ... status=sent|bounced|deferred`).
    pub deliveries: u64,
    /// Delivery lines with `status=sent`.
    pub sent: u64,
    /// Delivery lines with `status=bounced`.
    pub bounced: u64,
    /// Delivery lines with `status=deferred`.
    pub deferred: u64,
    /// `qmgr` lines with `status=expired, returned to sender`.
    pub expired: u64,
    /// `NOQUEUE: reject:` lines.
    pub rejects: u64,
    /// `SASL ... authentication failed` warnings.
    pub auth_failures: u64,
    /// Lines from Dovecot (`dovecot: ...`).
    pub dovecot_lines: u64,
    /// Dovecot `imap-login: Login:` / `pop3-login: Login:` lines.
    pub logins: u64,
    /// Dovecot login-process lines of a login that failed (`auth failed, N attempts`).
    pub failed_logins: u64,
    /// `pop3(...)...: expunge:` lines (messages deleted over POP3).
    pub pop3_deletes: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lines={} messages={} deliveries={} sent={} bounced={} deferred={} \
             expired={} rejects={} auth_failures={} dovecot_lines={} logins={} \
             failed_logins={} pop3_deletes={}",
            self.lines,
            self.messages,
            self.deliveries,
            self.sent,
            self.bounced,
            self.deferred,
            self.expired,
            self.rejects,
            self.auth_failures,
            self.dovecot_lines,
            self.logins,
            self.failed_logins,
            self.pop3_deletes
        )
    }
}

/// Writes exactly `opts.lines` log lines to `out` and returns what was written.
///
/// Output is buffered internally in 64 KiB chunks; lifecycles still open when
/// the line budget runs out are simply left open.
pub fn generate<W: Write>(out: &mut W, opts: &Options) -> io::Result<Stats> {
    let mut sim = Sim::new(opts);
    while sim.stats.lines < opts.lines {
        let top = sim
            .heap
            .peek()
            .map_or(u64::MAX, |Reverse((key, _))| key >> TIE_BITS);
        // Never true when there is no Dovecot traffic (`next_dove` is `u64::MAX`).
        if sim.next_dove <= top
            && sim.next_dove < sim.next_arrival
            && sim.next_dove < sim.next_anvil
        {
            sim.spawn_dove();
            continue;
        }
        if sim.next_anvil <= top && sim.next_anvil <= sim.next_arrival {
            sim.spawn_anvil();
            continue;
        }
        if sim.next_arrival <= top {
            sim.spawn_arrival();
            continue;
        }
        sim.emit_next();
        if sim.buf.len() >= FLUSH_AT {
            out.write_all(&sim.buf)?;
            sim.buf.clear();
        }
    }
    out.write_all(&sim.buf)?;
    out.flush()?;
    Ok(sim.stats)
}

// ---------------------------------------------------------------------------
// Traffic mix (fractions are probabilities per session, message or recipient)

/// Sessions rejected at RCPT time (`NOQUEUE: reject`).
const SESSION_REJECT: f64 = 0.012;
/// Sessions that only fail SASL authentication.
const SESSION_SASL_FAIL: f64 = 0.008;
/// Sessions that connect and drop without sending anything.
const SESSION_LOST: f64 = 0.02;

/// Queued messages submitted by authenticated local users.
const MSG_SUBMISSION: f64 = 0.60;
/// Queued messages received from remote MTAs for local users.
const MSG_INBOUND: f64 = 0.25;
/// Queued messages injected locally through `pickup`.
const MSG_PICKUP: f64 = 0.10;
// The remaining messages are relayed for trusted hosts (mynetworks) without SASL.

/// Authenticated submissions that use port 25 (`postfix/smtpd`) instead of 587.
const SUBMISSION_ON_PORT25: f64 = 0.15;
/// SMTP-received messages routed through a content filter (about 1% of all messages).
const CONTENT_FILTER: f64 = 0.011;
/// Content-filter hand-offs where the re-injected message is logged first.
const FILTER_NEW_FIRST: f64 = 0.7;
/// Relative weights of 1, 2, 3, 4 and 5 recipients per message.
const RCPT_COUNT_WEIGHTS: [u32; MAX_RCPT] = [82, 10, 4, 3, 1];
/// Recipients of a submission that are remote (the rest are local mailboxes).
const SUBMISSION_REMOTE_RCPT: f64 = 0.55;
/// Recipients of `pickup` mail from `www-data` that are remote.
const PICKUP_REMOTE_RCPT: f64 = 0.5;
/// Recipients of relayed mail that are remote.
const RELAY_REMOTE_RCPT: f64 = 0.7;

/// Recipients that bounce on the first attempt.
const P_BOUNCE: f64 = 0.03;
/// Recipients deferred at least once (then delivered on a retry).
const P_DEFER: f64 = 0.03;
/// Deferred recipients that are deferred a second time.
const P_SECOND_DEFERRAL: f64 = 0.3;
/// Messages with deferred recipients that end up expiring instead.
const EXPIRE_OF_DEFERRED: f64 = 0.003;
/// Retry interval bounds in log time; with at most two deferrals every message
/// settles within 2 * RETRY_MAX_MS plus two connect timeouts (under 30 minutes).
const RETRY_MIN_MS: u32 = 240_000;
const RETRY_MAX_MS: u32 = 720_000;
/// `smtp_connect_timeout`.
const CONNECT_TIMEOUT_MS: u32 = 30_000;

/// Messages that get a Postfix long queue ID.
const LONG_QUEUE_IDS: f64 = 0.01;

// Noise
/// SMTP sessions using TLS for which the TLS handshake is logged.
const TLS_LOGGED: f64 = 0.45;
/// Submissions signed by opendkim / inbound messages verified by it.
const DKIM_LOGGED: f64 = 0.3;
/// Unknown clients that trigger a `hostname ... does not resolve` warning.
const HOSTNAME_WARNING: f64 = 0.2;
/// Remote deliveries preceded by a non-final `host ... said: 4xx` line.
const HOST_SAID: f64 = 0.05;
/// Local deliveries that went through an alias (`orig_to=`).
const ORIG_TO: f64 = 0.03;
/// `anvil` statistics period per host.
const ANVIL_INTERVAL_MS: u64 = 600_000;

/// Distinct local mailboxes `u1` .. `u50000`; every tenth lives in `cs.example.edu`.
const LOCAL_MAILBOXES: u32 = 50_000;
/// A small set of busy mailboxes draws this share of all picks.
const BUSY_MAILBOXES: u32 = 500;
const BUSY_SHARE: f64 = 0.25;

/// smtpd processes exit after about `1 / SMTPD_EXIT` sessions (`max_use`).
const SMTPD_EXIT: f64 = 0.01;
/// Chance that a delivery agent or cleanup process is replaced on use.
const WORKER_RESPAWN: f64 = 0.002;

// Dovecot access (fractions are probabilities per Dovecot session)

/// Postfix lines per second of log time for each queued message per second
/// (measured over the mix above, noise and `anvil` included); sets the rate of
/// Dovecot sessions that gives `Options::dovecot_share`.
const POSTFIX_LINES_PER_MESSAGE: f64 = 8.33;
/// Sessions whose login fails (`Password mismatch`, then `auth failed`).
const DOVE_FAILED: f64 = 0.05;
/// Connections that close without trying to log in (`no auth attempts`).
const DOVE_NO_AUTH: f64 = 0.04;
/// Sessions (of all kinds) that speak POP3 rather than IMAP.
const DOVE_POP3: f64 = 0.25;
/// IMAP sessions whose client sends `ID` before logging in.
const IMAP_ID: f64 = 0.2;
/// IMAP sessions coming from the webmail hosts (`secured`, no `TLS`).
const IMAP_WEBMAIL: f64 = 0.15;
/// Sessions that log in with `AUTHENTICATE LOGIN` rather than PLAIN.
const DOVE_METHOD_LOGIN: f64 = 0.1;
/// IMAP sessions that delete 1-3 messages (`delete:` then `expunge:` each).
const IMAP_DELETES: f64 = 0.25;
/// IMAP sessions that delete a mailbox (`Mailbox deleted: Old`).
const IMAP_BOX_DELETED: f64 = 0.01;
/// IMAP sessions that end with the connection closed during IDLE.
const IMAP_IDLE_CLOSED: f64 = 0.3;
/// POP3 sessions that leave every message on the server.
const POP3_KEEP: f64 = 0.3;
/// Most messages a POP3 client deletes in one session.
const POP3_MAX_DELETES: u32 = 5;
/// Relative weights of 1, 2 and 3 attempts in a failed login.
const DOVE_ATTEMPT_WEIGHTS: [u32; 3] = [70, 20, 10];
/// Longest IMAP session in log time (every Dovecot session ends within it).
const IMAP_MAX_MS: u32 = 240_000;

/// Mean lines per Dovecot session, from the fractions above.
fn dove_lines_per_session() -> f64 {
    let ok = 1.0 - DOVE_FAILED - DOVE_NO_AUTH;
    let total: u32 = DOVE_ATTEMPT_WEIGHTS.iter().sum();
    let attempts: f64 = DOVE_ATTEMPT_WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, &w)| (i + 1) as f64 * f64::from(w) / f64::from(total))
        .sum();
    let imap = 2.0 + IMAP_ID + IMAP_DELETES * 4.0 + IMAP_BOX_DELETED;
    let pop3 = 2.0 + (1.0 - POP3_KEEP) * f64::from(POP3_MAX_DELETES + 1) / 2.0;
    ok * (DOVE_POP3 * pop3 + (1.0 - DOVE_POP3) * imap)
        + DOVE_FAILED * (attempts + 1.0)
        + DOVE_NO_AUTH
}

// ---------------------------------------------------------------------------
// Internal limits

const MAX_RCPT: usize = 5;
/// Upper bound on lines per session: smtpd 7, content filter 11, queue with two
/// retries 33, bounce notice 6.
const MAX_STEPS: usize = 64;
/// Recipient index that stands for "the original sender" (bounce notices).
const NOTICE_RCPT: u8 = 7;
/// Low bits of a heap key that randomise the order of same-millisecond lines.
const TIE_BITS: u32 = 20;
const FLUSH_AT: usize = 1 << 16;
const TZ_OFFSET_SECS: i64 = 8 * 3600;

// Delivery outcome, stored in the high nibble of `Step::b`.
const ST_SENT: u8 = 0;
const ST_BOUNCED: u8 = 1;
const ST_DEFERRED: u8 = 2;
const ST_FILTER: u8 = 3;

/// Set in `Step::b` of a delivery that went to the domain's backup MX.
const VIA_ALT_MX: u8 = 0x08;
/// Mask of the recipient index in `Step::b`.
const RCPT_MASK: u8 = 0x07;

// Per-recipient flavour bits.
const FL_VARIANT: u8 = 0b0011;
const FL_TIMEOUT: u8 = 0b0100;
const FL_ORIG_TO: u8 = 0b1000;

// Message-ID styles.
const MID_POSTFIX: u8 = 0;
const MID_MUA: u8 = 1;
const MID_REMOTE: u8 = 2;

const SASL_PLAIN: u8 = 1;
const SASL_LOGIN: u8 = 2;

// Stages after which a connection is lost.
const LOST_CONNECT: u8 = 0;
const LOST_EHLO: u8 = 1;
const LOST_STARTTLS: u8 = 2;
const LOST_AUTH: u8 = 3;

// Process pools per host.
const ROLE_CLEANUP: usize = 0;
const ROLE_SMTP: usize = 1;
const ROLE_LMTP: usize = 2;
const ROLE_LOCAL: usize = 3;
const ROLE_BOUNCE: usize = 4;
const POOL_SIZES: [usize; 5] = [4, 24, 6, 3, 2];
const POOL_MAX: usize = 24;

// ---------------------------------------------------------------------------
// Remote world

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Gmail,
    Yahoo,
    Outlook,
    Generic,
    Postfix,
}

struct Remote {
    domain: &'static [u8],
    mx: &'static [u8],
    mx_ip: u32,
    alt_mx: &'static [u8],
    alt_ip: u32,
    /// Name of the host this domain sends from.
    client: &'static [u8],
    client_ip: u32,
    style: Style,
    /// Weight as a recipient / sender domain.
    weight: u32,
}

const fn ip4(a: u32, b: u32, c: u32, d: u32) -> u32 {
    (a << 24) | (b << 16) | (c << 8) | d
}

const D_SLOW: u8 = 5;
const D_GREYLIST: u8 = 6;
const D_REMOTE_TEST: u8 = 7;
const D_SPAM: u8 = 8;
const REMOTE_WEIGHT_TOTAL: u32 = 100;

static REMOTES: [Remote; 9] = [
    Remote {
        domain: b"gmail.test",
        mx: b"gmail-smtp-in.l.google.test",
        mx_ip: ip4(198, 51, 100, 26),
        alt_mx: b"alt1.gmail-smtp-in.l.google.test",
        alt_ip: ip4(198, 51, 100, 27),
        client: b"mail-sor-f41.google.test",
        client_ip: ip4(198, 51, 100, 41),
        style: Style::Gmail,
        weight: 38,
    },
    Remote {
        domain: b"yahoo.test",
        mx: b"mta7.am0.yahoodns.test",
        mx_ip: ip4(198, 51, 100, 22),
        alt_mx: b"mta5.am0.yahoodns.test",
        alt_ip: ip4(198, 51, 100, 23),
        client: b"sonic305-20.consmr.mail.yahoo.test",
        client_ip: ip4(198, 51, 100, 120),
        style: Style::Yahoo,
        weight: 8,
    },
    Remote {
        domain: b"outlook.test",
        mx: b"exampleedu.mail.protection.outlook.test",
        mx_ip: ip4(198, 51, 100, 40),
        alt_mx: b"exampleedu-1.mail.protection.outlook.test",
        alt_ip: ip4(198, 51, 100, 42),
        client: b"mail-tyzapc01on2101.outbound.protection.outlook.test",
        client_ip: ip4(198, 51, 100, 101),
        style: Style::Outlook,
        weight: 20,
    },
    Remote {
        domain: b"hinet.test",
        mx: b"ms1.hinet.test",
        mx_ip: ip4(198, 51, 100, 61),
        alt_mx: b"ms2.hinet.test",
        alt_ip: ip4(198, 51, 100, 63),
        client: b"msr1.hinet.test",
        client_ip: ip4(198, 51, 100, 62),
        style: Style::Generic,
        weight: 10,
    },
    Remote {
        domain: b"partner.test",
        mx: b"mx.partner.test",
        mx_ip: ip4(198, 51, 100, 80),
        alt_mx: b"mx2.partner.test",
        alt_ip: ip4(198, 51, 100, 82),
        client: b"mail.partner.test",
        client_ip: ip4(198, 51, 100, 81),
        style: Style::Postfix,
        weight: 12,
    },
    Remote {
        domain: b"slow.test",
        mx: b"mx.slow.test",
        mx_ip: ip4(192, 0, 2, 55),
        alt_mx: b"mx2.slow.test",
        alt_ip: ip4(192, 0, 2, 59),
        client: b"mail.slow.test",
        client_ip: ip4(192, 0, 2, 57),
        style: Style::Postfix,
        weight: 6,
    },
    Remote {
        domain: b"greylist.test",
        mx: b"mx.greylist.test",
        mx_ip: ip4(192, 0, 2, 56),
        alt_mx: b"mx2.greylist.test",
        alt_ip: ip4(192, 0, 2, 60),
        client: b"out.greylist.test",
        client_ip: ip4(192, 0, 2, 58),
        style: Style::Postfix,
        weight: 6,
    },
    Remote {
        domain: b"remote.test",
        mx: b"mx.remote.test",
        mx_ip: ip4(198, 51, 100, 90),
        alt_mx: b"mx2.remote.test",
        alt_ip: ip4(198, 51, 100, 91),
        client: b"mail.remote.test",
        client_ip: ip4(198, 51, 100, 92),
        style: Style::Postfix,
        weight: 0,
    },
    Remote {
        domain: b"spam.test",
        mx: b"mx.spam.test",
        mx_ip: ip4(192, 0, 2, 66),
        alt_mx: b"mx2.spam.test",
        alt_ip: ip4(192, 0, 2, 67),
        client: b"bulk.spam.test",
        client_ip: ip4(192, 0, 2, 68),
        style: Style::Generic,
        weight: 0,
    },
];

const REMOTE_LOCALPARTS: [&[u8]; 6] = [b"r", b"a.lin", b"chen.w", b"info", b"m.wang", b"sales"];
const ALIASES: [&[u8]; 3] = [
    b"info@example.edu",
    b"postmaster@example.edu",
    b"staff@cs.example.edu",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
/// Postfix long queue ID alphabet: digits and letters without vowels. Base 51
/// (the inode part) drops the final `z`, which serves as a separator.
const B52: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// `ID` values sent by IMAP clients.
const IMAP_CLIENTS: [(&[u8], &[u8]); 4] = [
    (b"Thunderbird", b"115.16.0"),
    (b"K-9 Mail", b"6.802"),
    (b"FairEmail", b"1.2160"),
    (b"iPhone Mail", b"20H19"),
];

// ---------------------------------------------------------------------------
// Random numbers (wyrand, seeded through splitmix64)

/// The splitmix64 finaliser: a bijection of `u64`.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng(z ^ (z >> 31))
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0).wrapping_mul(u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB));
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n`.
    #[inline]
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform in `lo..hi`.
    #[inline]
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo)
    }

    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    #[inline]
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

// ---------------------------------------------------------------------------
// Log time

struct Clock {
    sec: i64,
    /// `Nov  2 00:00:01 `
    syslog: [u8; 16],
    /// `20261102000001`
    stamp: [u8; 14],
}

impl Clock {
    fn new() -> Clock {
        Clock {
            sec: i64::MIN,
            syslog: [b' '; 16],
            stamp: [b'0'; 14],
        }
    }

    #[inline]
    fn set(&mut self, unix: i64) {
        if unix == self.sec {
            return;
        }
        self.sec = unix;
        let t = Civil::from_unix(unix);
        t.syslog(&mut self.syslog[..15]);
        t.stamp(&mut self.stamp);
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
}

impl Civil {
    /// Local (Asia/Taipei) civil time of a Unix timestamp.
    fn from_unix(unix: i64) -> Civil {
        let local = unix + TZ_OFFSET_SECS;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400) as u32;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            min: secs / 60 % 60,
            sec: secs % 60,
        }
    }

    /// `Mmm dd HH:MM:SS` (15 bytes, day padded with a space).
    fn syslog(&self, out: &mut [u8]) {
        out[..3].copy_from_slice(MONTHS[(self.month - 1) as usize]);
        out[3] = b' ';
        out[4] = if self.day < 10 {
            b' '
        } else {
            b'0' + (self.day / 10) as u8
        };
        out[5] = b'0' + (self.day % 10) as u8;
        out[6] = b' ';
        two(&mut out[7..9], self.hour);
        out[9] = b':';
        two(&mut out[10..12], self.min);
        out[12] = b':';
        two(&mut out[13..15], self.sec);
    }

    /// `YYYYMMDDHHMMSS`
    fn stamp(&self, out: &mut [u8; 14]) {
        let y = self.year.clamp(0, 9999) as u32;
        two(&mut out[0..2], y / 100);
        two(&mut out[2..4], y % 100);
        two(&mut out[4..6], self.month);
        two(&mut out[6..8], self.day);
        two(&mut out[8..10], self.hour);
        two(&mut out[10..12], self.min);
        two(&mut out[12..14], self.sec);
    }
}

#[inline]
fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

// ---------------------------------------------------------------------------
// Sessions and their scripted lines

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Warn,
    Connect,
    Tls,
    Client,
    Pickup,
    Cleanup,
    Dkim,
    Qmgr,
    HostSaid,
    Deliver,
    Expired,
    Bounce,
    Removed,
    Disconnect,
    Reject,
    SaslFail,
    Lost,
    Anvil,
    /// Dovecot: `imap-login: ID sent: ...`.
    DId,
    /// Dovecot: `imap-login: Login: ...`.
    DLogin,
    /// Dovecot mail_log line; `a` 0 is `delete:`, 1 `expunge:`; `b` the message index.
    DMail,
    DBoxDeleted,
    DLogout,
    /// Dovecot: `auth: passwd-file(...): Password mismatch`.
    DAuth,
    /// Dovecot: `imap-login: Disconnected: ... (auth failed, ...)`.
    DLoginFail,
    /// Dovecot: `pop3-login: Disconnected: ... (no auth attempts ...)`.
    DNoAuth,
}

/// One line of a session's script. `at` is milliseconds after session start;
/// `a` is usually a queue-ID slot (0 original, 1 content-filter copy, 2 bounce
/// notice) and `b` a recipient index plus, for deliveries, the outcome.
#[derive(Clone, Copy)]
struct Step {
    at: u32,
    kind: Kind,
    a: u8,
    b: u8,
}

const NO_STEP: Step = Step {
    at: 0,
    kind: Kind::Removed,
    a: 0,
    b: 0,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Submission,
    Inbound,
    Pickup,
    Relay,
    Reject,
    SaslFail,
    Lost,
    Anvil,
    /// A Dovecot IMAP or POP3 connection.
    Dovecot,
}

// Dovecot session flags, in `Session::x[0]`.
const DF_POP3: u32 = 1;
const DF_TLS: u32 = 2;
const DF_METHOD_LOGIN: u32 = 4;
const DF_IDLE: u32 = 8;
const DF_ABORTED: u32 = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum AddrKind {
    Local,
    Remote,
    WwwData,
    Root,
    NoReply,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Addr {
    kind: AddrKind,
    dom: u8,
    num: u32,
}

const NO_ADDR: Addr = Addr {
    kind: AddrKind::NoReply,
    dom: 0,
    num: 0,
};

impl Addr {
    fn local(num: u32) -> Addr {
        Addr {
            kind: AddrKind::Local,
            dom: 0,
            num,
        }
    }
    fn remote(dom: u8, num: u32) -> Addr {
        Addr {
            kind: AddrKind::Remote,
            dom,
            num,
        }
    }
    fn in_cs(&self) -> bool {
        self.num % 10 == 7
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Unknown,
    Mta,
    Campus,
    Web,
}

#[derive(Clone, Copy)]
struct Client {
    kind: ClientKind,
    idx: u16,
    ip: u32,
}

const NO_CLIENT: Client = Client {
    kind: ClientKind::Unknown,
    idx: 0,
    ip: 0,
};

#[derive(Clone, Copy)]
struct Qid {
    b: [u8; 20],
    len: u8,
}

const NO_QID: Qid = Qid { b: [0; 20], len: 0 };

#[derive(Clone, Copy, PartialEq, Eq)]
enum Agent {
    Smtp,
    Lmtp,
    Local,
}

fn agent_of(a: &Addr) -> Agent {
    match a.kind {
        AddrKind::Remote => Agent::Smtp,
        AddrKind::Local if !a.in_cs() => Agent::Lmtp,
        _ => Agent::Local,
    }
}

struct Session {
    host: usize,
    flow: Flow,
    /// Log time of the first line, in ms since the generator's start.
    start: u64,
    /// Unix time of the first line, in ms.
    unix0: i64,
    n: u8,
    cur: u8,
    steps: [Step; MAX_STEPS],
    /// Submission service (port 587) rather than port 25.
    sub: bool,
    tls: bool,
    quit: bool,
    sasl: u8,
    sasl_bare: bool,
    smtpd_pid: u32,
    filter_pid: u32,
    client: Client,
    sender: Addr,
    nrcpt: u8,
    rcpt: [Addr; MAX_RCPT],
    flavor: [u8; MAX_RCPT],
    qid: [Qid; 3],
    /// Per queue-ID slot: arrival and latest activation, ms after session start.
    arrived: [u32; 3],
    active: [u32; 3],
    size: [u32; 3],
    msgid: u64,
    msgid_style: u8,
    /// Timestamps embedded in Postfix-generated Message-IDs (slot 0 and notice).
    stamps: [[u8; 14]; 2],
    /// Flow-specific parameters.
    x: [u32; 4],
    /// Dovecot session ID (16 base64 characters).
    dsid: [u8; 16],
}

impl Session {
    fn blank() -> Session {
        Session {
            host: 0,
            flow: Flow::Lost,
            start: 0,
            unix0: 0,
            n: 0,
            cur: 0,
            steps: [NO_STEP; MAX_STEPS],
            sub: false,
            tls: false,
            quit: true,
            sasl: 0,
            sasl_bare: false,
            smtpd_pid: 0,
            filter_pid: 0,
            client: NO_CLIENT,
            sender: NO_ADDR,
            nrcpt: 0,
            rcpt: [NO_ADDR; MAX_RCPT],
            flavor: [0; MAX_RCPT],
            qid: [NO_QID; 3],
            arrived: [0; 3],
            active: [0; 3],
            size: [0; 3],
            msgid: 0,
            msgid_style: 0,
            stamps: [[b'0'; 14]; 2],
            x: [0; 4],
            dsid: [b'A'; 16],
        }
    }

    fn push(&mut self, at: u32, kind: Kind, a: u8, b: u8) {
        let n = self.n as usize;
        debug_assert!(n < MAX_STEPS, "session script overflow");
        if n < MAX_STEPS {
            self.steps[n] = Step { at, kind, a, b };
            self.n += 1;
        }
    }

    /// UID of the `i`th message a Dovecot session deletes (POP3: the oldest first).
    fn dove_uid(&self, i: u32) -> u32 {
        if self.x[0] & DF_POP3 != 0 {
            self.x[2] + i
        } else {
            self.x[2] + i * (1 + (self.msgid as u32 & 7))
        }
    }

    /// A hash of a Dovecot session's message that gives its size and Message-ID.
    fn dove_msg(&self, uid: u32) -> u64 {
        mix64(self.msgid ^ u64::from(uid).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Stable sort by time: steps pushed earlier win ties, which keeps causal order.
    fn sort_steps(&mut self) {
        let steps = &mut self.steps[..self.n as usize];
        for i in 1..steps.len() {
            let s = steps[i];
            let mut j = i;
            while j > 0 && steps[j - 1].at > s.at {
                steps[j] = steps[j - 1];
                j -= 1;
            }
            steps[j] = s;
        }
    }
}

// ---------------------------------------------------------------------------
// Hosts: queue IDs and process IDs

struct Host {
    name: Vec<u8>,
    qid_salt: u64,
    inode_base: u64,
    counter: u64,
    next_pid: u32,
    qmgr: u32,
    pickup: u32,
    anvil: u32,
    opendkim: u32,
    /// Address Dovecot listens on (`lip=`).
    lip: u32,
    pools: [[u32; POOL_MAX]; 5],
    /// Idle smtpd processes for port 25 and for submission. A session holds its
    /// pid from planning until its `disconnect` line, so concurrently open
    /// sessions on a host never share a pid.
    idle: [Vec<u32>; 2],
}

impl Host {
    fn new(index: usize, rng: &mut Rng) -> Host {
        let mut h = Host {
            name: format!("mx{}", index + 1).into_bytes(),
            qid_salt: rng.next(),
            inode_base: u64::from(rng.range(10_000, 400_000)),
            counter: 0,
            next_pid: rng.range(2_000, 30_000),
            qmgr: rng.range(800, 1_500),
            pickup: 0,
            anvil: 0,
            opendkim: rng.range(250, 700),
            lip: ip4(198, 51, 100, 2 + (index % 18) as u32),
            pools: [[0; POOL_MAX]; 5],
            idle: [Vec::with_capacity(64), Vec::with_capacity(64)],
        };
        h.pickup = h.qmgr + rng.range(1, 4);
        h.anvil = h.spawn(rng);
        for (role, &size) in POOL_SIZES.iter().enumerate() {
            for i in 0..size {
                h.pools[role][i] = h.spawn(rng);
            }
        }
        h
    }

    fn spawn(&mut self, rng: &mut Rng) -> u32 {
        self.next_pid += rng.range(1, 40);
        if self.next_pid > 99_999 {
            self.next_pid = rng.range(300, 1_000);
        }
        self.next_pid
    }

    /// A delivery agent or cleanup process, now and then replaced by a new one.
    fn worker(&mut self, role: usize, rng: &mut Rng) -> u32 {
        let i = rng.below(POOL_SIZES[role] as u32) as usize;
        if rng.chance(WORKER_RESPAWN) {
            let pid = self.spawn(rng);
            self.pools[role][i] = pid;
        }
        self.pools[role][i]
    }

    fn take_smtpd(&mut self, sub: bool, rng: &mut Rng) -> u32 {
        let idle = &mut self.idle[usize::from(sub)];
        if idle.is_empty() {
            return self.spawn(rng);
        }
        let i = rng.below(idle.len() as u32) as usize;
        idle.swap_remove(i)
    }

    fn release_smtpd(&mut self, sub: bool, pid: u32, rng: &mut Rng) {
        if !rng.chance(SMTPD_EXIT) {
            self.idle[usize::from(sub)].push(pid);
        }
    }

    /// A queue ID that no other message of this host has used.
    fn new_qid(&mut self, rng: &mut Rng, unix_ms: i64) -> Qid {
        self.counter += 1;
        let mut q = NO_QID;
        if rng.chance(LONG_QUEUE_IDS) {
            // Seconds (base 52, six digits), microseconds (base 52, four
            // digits), 'z', then the inode number in base 51.
            let secs = unix_ms.max(0) as u64 / 1000;
            let usec = (unix_ms.max(0) as u64 % 1000) * 1000 + u64::from(rng.below(1000));
            let mut n = 0;
            n = put_base(&mut q.b, n, secs, 52, 6);
            n = put_base(&mut q.b, n, usec, 52, 4);
            q.b[n] = b'z';
            n += 1;
            n = put_base(&mut q.b, n, self.inode_base + self.counter, 51, 1);
            q.len = n as u8;
        } else {
            // A bijection of the 40-bit counter, so IDs never repeat.
            const MASK: u64 = (1 << 40) - 1;
            let mut x = self.counter.wrapping_add(self.qid_salt) & MASK;
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) & MASK;
            x ^= x >> 21;
            x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93) & MASK;
            x ^= x >> 19;
            for i in 0..10 {
                q.b[i] = HEX_UPPER[((x >> (36 - 4 * i)) & 0xF) as usize];
            }
            q.len = 10;
        }
        q
    }
}

/// Writes `v` in `base` with at least `min` digits into `out[n..]`.
fn put_base(out: &mut [u8; 20], n: usize, mut v: u64, base: u64, min: usize) -> usize {
    let mut tmp = [0u8; 16];
    let mut k = 0;
    while v > 0 || k < min {
        tmp[k] = B52[(v % base) as usize];
        v /= base;
        k += 1;
    }
    for i in 0..k {
        out[n + i] = tmp[k - 1 - i];
    }
    n + k
}

// ---------------------------------------------------------------------------
// Planning: each session's whole script is laid out when it starts.

struct Plan<'a> {
    rng: &'a mut Rng,
    h: &'a mut Host,
    s: &'a mut Session,
}

impl Plan<'_> {
    fn push(&mut self, at: u32, kind: Kind, a: u8, b: u8) {
        self.s.push(at, kind, a, b);
    }

    fn local_user(&mut self) -> Addr {
        let num = if self.rng.chance(BUSY_SHARE) {
            self.rng.range(1, BUSY_MAILBOXES + 1)
        } else {
            self.rng.range(1, LOCAL_MAILBOXES + 1)
        };
        Addr::local(num)
    }

    fn remote_domain(&mut self) -> u8 {
        let mut x = self.rng.below(REMOTE_WEIGHT_TOTAL);
        for (i, r) in REMOTES.iter().enumerate() {
            if x < r.weight {
                return i as u8;
            }
            x -= r.weight;
        }
        0
    }

    fn remote_addr(&mut self) -> Addr {
        let dom = self.remote_domain();
        Addr::remote(dom, self.rng.range(1, 100_000))
    }

    fn unknown_client(&mut self, net: u32) -> Client {
        Client {
            kind: ClientKind::Unknown,
            idx: 0,
            ip: net | self.rng.range(1, 255),
        }
    }

    fn qid(&mut self, slot: usize, at: u32) {
        let unix_ms = self.s.unix0 + i64::from(at);
        self.s.qid[slot] = self.h.new_qid(self.rng, unix_ms);
    }

    fn message_size(&mut self) -> u32 {
        let mut size = self.rng.range(700, 6_000);
        if self.rng.chance(0.2) {
            size += self.rng.below(200_000);
        }
        if self.rng.chance(0.02) {
            size += self.rng.below(12_000_000);
        }
        size
    }

    fn rcpts(&mut self, p_remote: f64) {
        let n = 1 + self.rng.weighted(&RCPT_COUNT_WEIGHTS);
        for i in 0..n {
            let addr = loop {
                let a = if self.rng.chance(p_remote) {
                    self.remote_addr()
                } else {
                    self.local_user()
                };
                if !self.s.rcpt[..i].contains(&a) {
                    break a;
                }
            };
            self.s.rcpt[i] = addr;
        }
        self.s.nrcpt = n as u8;
    }

    fn plan(&mut self) {
        match self.s.flow {
            Flow::Submission => {
                self.s.sub = !self.rng.chance(SUBMISSION_ON_PORT25);
                self.s.tls = self.s.sub || self.rng.chance(0.9);
                self.s.sasl = if self.rng.chance(0.7) {
                    SASL_PLAIN
                } else {
                    SASL_LOGIN
                };
                self.s.sasl_bare = self.rng.chance(0.2);
                self.s.client = if self.rng.chance(0.7) {
                    self.unknown_client(ip4(203, 0, 113, 0))
                } else {
                    let idx = self.rng.range(1, 400) as u16;
                    Client {
                        kind: ClientKind::Campus,
                        idx,
                        ip: ip4(198, 51, 100, 128 + u32::from(idx) % 72),
                    }
                };
                self.s.sender = self.local_user();
                self.rcpts(SUBMISSION_REMOTE_RCPT);
                self.s.msgid_style = if self.rng.chance(0.05) {
                    MID_POSTFIX
                } else {
                    MID_MUA
                };
                self.smtp_message();
            }
            Flow::Inbound => {
                self.s.tls = self.rng.chance(0.8);
                self.s.sender = self.remote_addr();
                let dom = self.s.sender.dom;
                self.s.client = if self.rng.chance(0.8) {
                    Client {
                        kind: ClientKind::Mta,
                        idx: u16::from(dom),
                        ip: REMOTES[dom as usize].client_ip,
                    }
                } else {
                    self.unknown_client(ip4(203, 0, 113, 0))
                };
                self.rcpts(0.0);
                self.s.msgid_style = MID_REMOTE;
                self.smtp_message();
            }
            Flow::Relay => {
                let idx = self.rng.range(1, 10) as u16;
                self.s.client = Client {
                    kind: ClientKind::Web,
                    idx,
                    ip: ip4(198, 51, 100, 200 + u32::from(idx)),
                };
                self.s.sender = Addr {
                    kind: AddrKind::NoReply,
                    dom: 0,
                    num: 0,
                };
                self.rcpts(RELAY_REMOTE_RCPT);
                self.s.msgid_style = MID_POSTFIX;
                self.smtp_message();
            }
            Flow::Pickup => self.pickup(),
            Flow::Reject => self.reject(),
            Flow::SaslFail => self.sasl_fail(),
            Flow::Lost => self.lost(),
            Flow::Anvil => self.anvil(),
            Flow::Dovecot => self.dovecot(),
        }
        self.s.sort_steps();
    }

    /// connect ... client= ... cleanup ... qmgr, disconnect, then the queue.
    fn smtp_message(&mut self) {
        self.s.smtpd_pid = self.h.take_smtpd(self.s.sub, self.rng);
        self.s.msgid = self.rng.next();
        self.s.size[0] = self.message_size();
        if self.s.client.kind == ClientKind::Unknown && self.rng.chance(HOSTNAME_WARNING) {
            self.push(0, Kind::Warn, 0, 0);
        }
        self.push(0, Kind::Connect, 0, 0);
        let mut t = self.rng.range(5, 80);
        if self.s.tls && self.rng.chance(TLS_LOGGED) {
            self.push(t, Kind::Tls, 0, 0);
        }
        t += self.rng.range(150, 2_500);
        self.push(t, Kind::Client, 0, 0);
        self.qid(0, t);
        self.s.arrived[0] = t;
        t += self.rng.range(30, 600);
        self.push(t, Kind::Cleanup, 0, 0);
        if self.rng.chance(DKIM_LOGGED) {
            let at = t + self.rng.range(2, 40);
            self.push(at, Kind::Dkim, 0, 0);
        }
        t += self.rng.range(45, 1_500);
        self.s.quit = self.rng.chance(0.95);
        let at = t + self.rng.range(3, 300);
        self.push(at, Kind::Disconnect, 0, 0);
        if self.rng.chance(CONTENT_FILTER) {
            self.content_filter(t);
        } else {
            self.queue(0, t);
        }
    }

    fn pickup(&mut self) {
        if self.rng.chance(0.7) {
            self.s.sender = Addr {
                kind: AddrKind::WwwData,
                dom: 0,
                num: 0,
            };
            self.rcpts(PICKUP_REMOTE_RCPT);
        } else {
            self.s.sender = Addr {
                kind: AddrKind::Root,
                dom: 0,
                num: 0,
            };
            self.s.rcpt[0] = Addr {
                kind: AddrKind::Root,
                dom: 0,
                num: 0,
            };
            self.s.nrcpt = 1;
        }
        self.s.msgid_style = MID_POSTFIX;
        self.s.size[0] = self.rng.range(400, 3_000);
        self.push(0, Kind::Pickup, 0, 0);
        self.qid(0, 0);
        let mut t = self.rng.range(2, 30);
        self.push(t, Kind::Cleanup, 0, 0);
        t += self.rng.range(5, 60);
        self.queue(0, t);
    }

    /// Delivery passes for queue-ID slot `sel` starting at `t0`, then `removed`
    /// or a bounce notice.
    fn queue(&mut self, sel: u8, t0: u32) {
        let n = self.s.nrcpt as usize;
        let mut finals = [ST_SENT; MAX_RCPT];
        let mut defers = [0u8; MAX_RCPT];
        for r in 0..n {
            let addr = self.s.rcpt[r];
            let mut fl = (self.rng.next() as u8) & FL_VARIANT;
            if agent_of(&addr) == Agent::Smtp {
                let timeout = match addr.dom {
                    D_SLOW => true,
                    D_GREYLIST => false,
                    _ => self.rng.chance(0.5),
                };
                if timeout {
                    fl |= FL_TIMEOUT;
                }
            } else if addr.kind == AddrKind::Local && self.rng.chance(ORIG_TO) {
                fl |= FL_ORIG_TO;
            }
            self.s.flavor[r] = fl;
            let u = self.rng.unit();
            if u < P_BOUNCE {
                finals[r] = ST_BOUNCED;
            } else if u < P_BOUNCE + P_DEFER {
                defers[r] = if self.rng.chance(P_SECOND_DEFERRAL) {
                    2
                } else {
                    1
                };
            }
        }
        let passes = defers[..n].iter().copied().max().unwrap_or(0);
        let expire = passes > 0 && self.rng.chance(EXPIRE_OF_DEFERRED);

        self.push(t0, Kind::Qmgr, sel, 0);
        let mut tp = t0;
        let mut last = t0;
        let mut bounced = false;
        let mut expired = false;
        for pass in 0..=passes {
            if pass > 0 {
                tp = last + self.rng.range(RETRY_MIN_MS, RETRY_MAX_MS);
                last = tp;
                if expire && pass == passes {
                    self.push(tp, Kind::Expired, sel, 0);
                    expired = true;
                    break;
                }
                self.push(tp, Kind::Qmgr, sel, 0);
            }
            for r in 0..n {
                if defers[r] < pass {
                    continue;
                }
                let st = if pass < defers[r] {
                    ST_DEFERRED
                } else {
                    finals[r]
                };
                bounced |= st == ST_BOUNCED;
                let addr = self.s.rcpt[r];
                let agent = agent_of(&addr);
                let timeout =
                    agent == Agent::Smtp && st == ST_DEFERRED && self.s.flavor[r] & FL_TIMEOUT != 0;
                let td = tp + self.latency(agent, timeout);
                let mut b = r as u8 | (st << 4);
                if agent == Agent::Smtp && !timeout && self.rng.chance(HOST_SAID) {
                    // The primary MX turns us away; the delivery goes to the backup.
                    self.push(tp + (td - tp) / 2, Kind::HostSaid, sel, r as u8);
                    b |= VIA_ALT_MX;
                }
                self.push(td, Kind::Deliver, sel, b);
                last = last.max(td);
            }
        }
        let tb = last + self.rng.range(1, 30);
        if bounced || expired {
            self.notice(sel, tb);
        } else {
            self.push(tb, Kind::Removed, sel, 0);
        }
    }

    fn latency(&mut self, agent: Agent, timeout: bool) -> u32 {
        match agent {
            Agent::Smtp if timeout => CONNECT_TIMEOUT_MS + self.rng.below(40),
            Agent::Smtp => self.rng.range(150, 2_500),
            Agent::Lmtp => self.rng.range(5, 150),
            Agent::Local => self.rng.range(3, 80),
        }
    }

    /// Sender non-delivery notification for slot `src`, delivered to the sender.
    fn notice(&mut self, src: u8, tb: u32) {
        self.qid(2, tb);
        self.s.arrived[2] = tb;
        self.s.size[2] = self.rng.range(2_500, 6_000);
        self.push(tb, Kind::Cleanup, 2, 0);
        let mut t = tb + self.rng.range(1, 8);
        self.push(t, Kind::Bounce, src, 0);
        t += self.rng.range(0, 5);
        self.push(t, Kind::Removed, src, 0);
        let tq = tb + self.rng.range(2, 15);
        self.push(tq, Kind::Qmgr, 2, 0);
        let sender = self.s.sender;
        let td = tq + self.latency(agent_of(&sender), false);
        self.push(td, Kind::Deliver, 2, NOTICE_RCPT | (ST_SENT << 4));
        let tr = td + self.rng.range(1, 10);
        self.push(tr, Kind::Removed, 2, 0);
    }

    /// Hand-off to a content filter on 127.0.0.1:10024 which re-injects the
    /// message through an smtpd on port 10025 under a new queue ID (slot 1).
    fn content_filter(&mut self, tq: u32) {
        let n = self.s.nrcpt;
        self.s.filter_pid = self.h.take_smtpd(false, self.rng);
        self.s.size[1] = self.s.size[0] + self.rng.range(600, 1_600);
        self.push(tq, Kind::Qmgr, 0, 0);
        let tf = tq + self.rng.range(400, 4_000);
        let (tc, tnew) = if self.rng.chance(FILTER_NEW_FIRST) {
            let tc = tf - self.rng.range(150, 350);
            self.push(tc - 20, Kind::Connect, 1, 0);
            self.push(tc, Kind::Client, 1, 0);
            let at = tc + self.rng.range(5, 60);
            self.push(at, Kind::Cleanup, 1, 0);
            (tc, tf - self.rng.range(1, 20))
        } else {
            let at = tf - self.rng.range(100, 200);
            self.push(at, Kind::Connect, 1, 0);
            let tc = tf + self.rng.range(1 + u32::from(n), 10 + u32::from(n));
            self.push(tc, Kind::Client, 1, 0);
            let at = tc + self.rng.range(5, 30);
            self.push(at, Kind::Cleanup, 1, 0);
            (tc, tc + self.rng.range(40, 100))
        };
        self.qid(1, tc);
        self.s.arrived[1] = tc;
        for r in 0..n {
            self.push(tf + u32::from(r), Kind::Deliver, 0, r | (ST_FILTER << 4));
        }
        let at = tf + u32::from(n) + self.rng.range(1, 10);
        self.push(at, Kind::Removed, 0, 0);
        let at = tnew + self.rng.range(1, 30);
        self.push(at, Kind::Disconnect, 1, 0);
        self.queue(1, tnew);
    }

    /// `NOQUEUE: reject: RCPT from ...` for 1-3 recipients.
    fn reject(&mut self) {
        let kind = self.rng.weighted(&[40, 35, 25]) as u32;
        self.s.smtpd_pid = self.h.take_smtpd(false, self.rng);
        let n = 1 + self.rng.weighted(&[80, 15, 5]);
        match kind {
            0 => {
                // Relay attempt from an unauthenticated client.
                self.s.client = self.unknown_client(ip4(192, 0, 2, 0));
                self.s.sender = self.local_user();
                for i in 0..n {
                    self.s.rcpt[i] = if self.rng.chance(0.5) {
                        Addr::remote(D_REMOTE_TEST, self.rng.range(1, 1000))
                    } else {
                        self.remote_addr()
                    };
                }
            }
            1 => {
                // Listed in a DNSBL.
                self.s.client = self.unknown_client(ip4(192, 0, 2, 0));
                self.s.sender = Addr::remote(D_SPAM, self.rng.range(1, 100_000));
                for i in 0..n {
                    self.s.rcpt[i] = self.local_user();
                }
            }
            _ => {
                // Unknown local recipient from a real MTA.
                let dom = self.remote_domain();
                self.s.client = Client {
                    kind: ClientKind::Mta,
                    idx: u16::from(dom),
                    ip: REMOTES[dom as usize].client_ip,
                };
                self.s.sender = Addr::remote(dom, self.rng.range(1, 100_000));
                for i in 0..n {
                    self.s.rcpt[i] = Addr::local(self.rng.range(LOCAL_MAILBOXES + 1, 100_000));
                }
            }
        }
        self.s.nrcpt = n as u8;
        self.s.tls = kind == 2 && self.rng.chance(0.7);
        self.s.x = [
            kind,
            u32::from(self.rng.chance(0.4)),
            self.rng.range(1, 250),
            0,
        ];
        if self.s.client.kind == ClientKind::Unknown && self.rng.chance(HOSTNAME_WARNING) {
            self.push(0, Kind::Warn, 0, 0);
        }
        self.push(0, Kind::Connect, 0, 0);
        let mut t = self.rng.range(5, 80);
        if self.s.tls && self.rng.chance(TLS_LOGGED) {
            self.push(t, Kind::Tls, 0, 0);
        }
        for i in 0..n {
            t += self.rng.range(100, 900);
            self.push(t, Kind::Reject, 0, i as u8);
        }
        t += self.rng.range(20, 400);
        self.push(t, Kind::Disconnect, 0, 0);
    }

    /// Password guessing: 1-3 failed AUTH attempts.
    fn sasl_fail(&mut self) {
        self.s.sub = self.rng.chance(0.6);
        self.s.tls = self.s.sub || self.rng.chance(0.3);
        self.s.client = self.unknown_client(ip4(192, 0, 2, 0));
        self.s.smtpd_pid = self.h.take_smtpd(self.s.sub, self.rng);
        let k = 1 + self.rng.weighted(&[70, 20, 10]);
        self.s.nrcpt = k as u8;
        self.s.sasl = if self.rng.chance(0.8) {
            SASL_LOGIN
        } else {
            SASL_PLAIN
        };
        self.s.rcpt[0] = self.local_user();
        self.s.sasl_bare = self.rng.chance(0.3);
        let lost = self.rng.chance(0.5);
        self.s.x = [u32::from(self.rng.chance(0.4)), u32::from(lost), 0, 0];
        if self.rng.chance(HOSTNAME_WARNING) {
            self.push(0, Kind::Warn, 0, 0);
        }
        self.push(0, Kind::Connect, 0, 0);
        let mut t = self.rng.range(5, 80);
        if self.s.tls && self.rng.chance(TLS_LOGGED) {
            self.push(t, Kind::Tls, 0, 0);
        }
        for i in 0..k {
            t += self.rng.range(1_500, 6_000);
            self.push(t, Kind::SaslFail, 0, i as u8);
        }
        if lost {
            t += self.rng.range(1, 50);
            self.push(t, Kind::Lost, 0, LOST_AUTH);
        }
        t += self.rng.range(1, 20);
        self.push(t, Kind::Disconnect, 0, 0);
    }

    /// A client that connects and goes away.
    fn lost(&mut self) {
        self.s.sub = self.rng.chance(0.3);
        let net = if self.rng.chance(0.6) {
            ip4(192, 0, 2, 0)
        } else {
            ip4(203, 0, 113, 0)
        };
        self.s.client = self.unknown_client(net);
        self.s.smtpd_pid = self.h.take_smtpd(self.s.sub, self.rng);
        let stage = self.rng.weighted(&[40, 30, 15, 15]) as u8;
        self.s.x[0] = u32::from(stage);
        if self.rng.chance(HOSTNAME_WARNING) {
            self.push(0, Kind::Warn, 0, 0);
        }
        self.push(0, Kind::Connect, 0, 0);
        let mut t = self.rng.range(50, 8_000);
        self.push(t, Kind::Lost, 0, stage);
        t += self.rng.range(0, 3);
        self.push(t, Kind::Disconnect, 0, 0);
    }

    /// Periodic `anvil` statistics (three lines).
    fn anvil(&mut self) {
        self.s.sub = self.rng.chance(0.3);
        let net = if self.rng.chance(0.5) {
            ip4(192, 0, 2, 0)
        } else {
            ip4(203, 0, 113, 0)
        };
        self.s.client = self.unknown_client(net);
        self.s.x = [
            self.rng.range(1, 30),
            self.rng.range(1, 10),
            self.rng.range(1, 40),
            // When the maximum was seen; never before the log starts.
            self.rng.range(1, 600).min((self.s.start / 1000) as u32),
        ];
        for b in 0..3 {
            self.push(0, Kind::Anvil, 0, b);
        }
    }

    /// A Dovecot IMAP or POP3 connection. On entry `s.msgid` holds a tag no
    /// other Dovecot session has; it becomes part of the session ID.
    fn dovecot(&mut self) {
        let tag = self.s.msgid;
        self.s.msgid = self.rng.next();
        let u = self.rng.unit();
        let (failed, no_auth) = (
            u < DOVE_FAILED,
            (DOVE_FAILED..DOVE_FAILED + DOVE_NO_AUTH).contains(&u),
        );
        let mut flags = 0;
        if self.rng.chance(DOVE_POP3) {
            flags |= DF_POP3;
        }
        if self.rng.chance(DOVE_METHOD_LOGIN) {
            flags |= DF_METHOD_LOGIN;
        }
        let mut user = self.local_user();
        if user.in_cs() {
            // cs.example.edu mailboxes are delivered by `local`, not Dovecot.
            user.num += 1;
        }
        self.s.rcpt[0] = user;
        let ip = if failed || no_auth {
            flags |= if self.rng.chance(0.7) { DF_TLS } else { 0 };
            ip4(192, 0, 2, self.rng.range(1, 255))
        } else if flags & DF_POP3 == 0 && self.rng.chance(IMAP_WEBMAIL) {
            // The webmail hosts (also the relay clients) are trusted: `secured`.
            ip4(198, 51, 100, 200 + self.rng.range(1, 10))
        } else {
            flags |= DF_TLS;
            if self.rng.chance(0.3) {
                ip4(198, 51, 100, 128 + self.rng.below(72))
            } else {
                ip4(203, 0, 113, self.rng.range(1, 255))
            }
        };
        self.s.client = Client {
            kind: ClientKind::Unknown,
            idx: 0,
            ip,
        };
        // Like Dovecot's own: 12 bytes (here a unique tag and the client
        // address) in base64.
        let mut raw = [0u8; 12];
        raw[..8].copy_from_slice(&tag.to_be_bytes());
        raw[8..].copy_from_slice(&ip.to_be_bytes());
        for (i, c) in raw.chunks_exact(3).enumerate() {
            let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            for j in 0..4 {
                self.s.dsid[4 * i + j] = B64[((v >> (18 - 6 * j)) & 63) as usize];
            }
        }
        self.s.x[2] = self.rng.range(1, 20_000);
        if failed {
            let k = 1 + self.rng.weighted(&DOVE_ATTEMPT_WEIGHTS);
            let mut t = self.rng.range(300, 3_000);
            for i in 0..k {
                if i > 0 {
                    t += self.rng.range(2_000, 5_000);
                }
                self.push(t, Kind::DAuth, 0, i as u8);
            }
            t += self.rng.range(5, 8_000);
            self.push(t, Kind::DLoginFail, 0, 0);
            if self.rng.chance(0.5) {
                flags |= DF_ABORTED;
            }
            self.s.x[1] = k as u32;
            self.s.x[3] = t / 1000;
        } else if no_auth {
            self.push(0, Kind::DNoAuth, 0, 0);
            self.s.x[3] = if self.rng.chance(0.8) {
                self.rng.below(3)
            } else {
                self.rng.range(3, 180)
            };
        } else if flags & DF_POP3 != 0 {
            self.s.smtpd_pid = self.h.spawn(self.rng);
            self.push(0, Kind::DLogin, 0, 0);
            let m = self.rng.range(1, 40);
            let n = if self.rng.chance(POP3_KEEP) {
                0
            } else {
                self.rng.range(1, m.min(POP3_MAX_DELETES) + 1)
            };
            // POP3 expunges at QUIT, just before the logout line.
            let quit = self.rng.range(300, 30_000);
            for i in 0..n {
                self.push(quit + i, Kind::DMail, 1, i as u8);
            }
            let at = quit + n + self.rng.range(1, 20);
            self.push(at, Kind::DLogout, 0, 0);
            self.s.x[1] = m;
            self.s.nrcpt = n as u8;
        } else {
            let mut t = 0;
            if self.rng.chance(IMAP_ID) {
                self.push(0, Kind::DId, 0, 0);
                t = self.rng.range(30, 400);
            }
            self.s.smtpd_pid = self.h.spawn(self.rng);
            self.push(t, Kind::DLogin, 0, 0);
            let span = self.rng.range(3_000, IMAP_MAX_MS);
            let end = t + span;
            let mut last = t;
            let k = if self.rng.chance(IMAP_DELETES) {
                1 + self.rng.below(3)
            } else {
                0
            };
            for i in 0..k {
                let d = t + self.rng.range(100, span - 2_000);
                let e = d + self.rng.range(1, 1_500);
                self.push(d, Kind::DMail, 0, i as u8);
                self.push(e, Kind::DMail, 1, i as u8);
                last = last.max(e);
            }
            if self.rng.chance(IMAP_BOX_DELETED) {
                let d = t + self.rng.range(100, span - 100);
                self.push(d, Kind::DBoxDeleted, 0, 0);
                last = last.max(d);
            }
            if self.rng.chance(IMAP_IDLE_CLOSED) {
                flags |= DF_IDLE;
            }
            self.push(end, Kind::DLogout, 0, 0);
            self.s.nrcpt = k as u8;
            self.s.x[3] = end - last;
        }
        self.s.x[0] = flags;
    }
}

// ---------------------------------------------------------------------------
// Output helpers

#[inline]
fn put(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(b);
}

/// "00" .. "99", for formatting two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

#[inline]
fn put_u(buf: &mut Vec<u8>, mut n: u64) {
    if n < 10 {
        buf.push(b'0' + n as u8);
        return;
    }
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[inline]
fn put_octet(buf: &mut Vec<u8>, o: u32) {
    if o >= 100 {
        buf.push(b'0' + (o / 100) as u8);
        let d = (o % 100) as usize * 2;
        buf.extend_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else if o >= 10 {
        let d = o as usize * 2;
        buf.extend_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        buf.push(b'0' + o as u8);
    }
}

fn put_ip(buf: &mut Vec<u8>, ip: u32) {
    put_octet(buf, ip >> 24);
    buf.push(b'.');
    put_octet(buf, (ip >> 16) & 0xFF);
    buf.push(b'.');
    put_octet(buf, (ip >> 8) & 0xFF);
    buf.push(b'.');
    put_octet(buf, ip & 0xFF);
}

fn put_hex(buf: &mut Vec<u8>, v: u64, digits: usize, alphabet: &[u8; 16]) {
    for i in (0..digits).rev() {
        buf.push(alphabet[((v >> (4 * i)) & 0xF) as usize]);
    }
}

fn put_b64(buf: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    let mut bits = 0u64;
    for i in 0..len {
        if i % 10 == 0 {
            bits = rng.next();
        }
        buf.push(B64[(bits & 63) as usize]);
        bits >>= 6;
    }
}

#[inline]
fn put_qid(buf: &mut Vec<u8>, q: &Qid) {
    buf.extend_from_slice(&q.b[..q.len as usize]);
}

fn put_localpart(buf: &mut Vec<u8>, a: &Addr) {
    match a.kind {
        AddrKind::Local => {
            buf.push(b'u');
            put_u(buf, u64::from(a.num));
        }
        AddrKind::Remote => {
            put(
                buf,
                REMOTE_LOCALPARTS[(a.num % REMOTE_LOCALPARTS.len() as u32) as usize],
            );
            put_u(buf, u64::from(a.num));
        }
        AddrKind::WwwData => put(buf, b"www-data"),
        AddrKind::Root => put(buf, b"root"),
        AddrKind::NoReply => put(buf, b"noreply"),
    }
}

fn put_domain(buf: &mut Vec<u8>, a: &Addr) {
    match a.kind {
        AddrKind::Remote => put(buf, REMOTES[a.dom as usize].domain),
        AddrKind::Local if a.in_cs() => put(buf, b"cs.example.edu"),
        _ => put(buf, b"example.edu"),
    }
}

fn put_addr(buf: &mut Vec<u8>, a: &Addr) {
    put_localpart(buf, a);
    buf.push(b'@');
    put_domain(buf, a);
}

fn put_client(buf: &mut Vec<u8>, c: &Client) {
    match c.kind {
        ClientKind::Unknown => put(buf, b"unknown"),
        ClientKind::Mta => put(buf, REMOTES[c.idx as usize].client),
        ClientKind::Campus => {
            put(buf, b"ws");
            put_u(buf, u64::from(c.idx));
            put(buf, b".cs.example.edu");
        }
        ClientKind::Web => {
            put(buf, b"web");
            put_u(buf, u64::from(c.idx));
            put(buf, b".example.edu");
        }
    }
    buf.push(b'[');
    put_ip(buf, c.ip);
    buf.push(b']');
}

/// Dovecot's `user=<...>, method=..., rip=..., lip=..., mpid=..., TLS, session=<...>`;
/// without `full`, only `user=<>, rip=..., lip=..., session=<...>`.
fn put_login_fields(buf: &mut Vec<u8>, s: &Session, lip: u32, full: bool) {
    put(buf, b"user=<");
    if full {
        put_addr(buf, &s.rcpt[0]);
        put(
            buf,
            if s.x[0] & DF_METHOD_LOGIN != 0 {
                b">, method=LOGIN"
            } else {
                b">, method=PLAIN"
            },
        );
    } else {
        buf.push(b'>');
    }
    put(buf, b", rip=");
    put_ip(buf, s.client.ip);
    put(buf, b", lip=");
    put_ip(buf, lip);
    if full {
        if s.smtpd_pid != 0 {
            put(buf, b", mpid=");
            put_u(buf, u64::from(s.smtpd_pid));
        }
        put(
            buf,
            if s.x[0] & DF_TLS != 0 {
                b", TLS"
            } else {
                b", secured"
            },
        );
    }
    put(buf, b", session=<");
    put(buf, &s.dsid);
    buf.push(b'>');
}

/// `imap(user)<mpid><session>: `
fn put_dove_session(buf: &mut Vec<u8>, s: &Session, proto: &[u8]) {
    put(buf, proto);
    buf.push(b'(');
    put_addr(buf, &s.rcpt[0]);
    put(buf, b")<");
    put_u(buf, u64::from(s.smtpd_pid));
    put(buf, b"><");
    put(buf, &s.dsid);
    put(buf, b">: ");
}

/// Milliseconds as seconds with three decimals: `82.885`.
fn put_secs3(buf: &mut Vec<u8>, ms: u32) {
    put_u(buf, u64::from(ms / 1000));
    let f = ms % 1000;
    buf.push(b'.');
    buf.push(b'0' + (f / 100) as u8);
    let d = (f % 100) as usize * 2;
    buf.extend_from_slice(&DIGIT_PAIRS[d..d + 2]);
}

/// Size in bytes of a Dovecot session's message, from its hash.
fn dove_size(h: u64) -> u32 {
    let mut size = 600 + ((h >> 32) % 30_000) as u32;
    if h & 0xF == 0 {
        size += ((h >> 8) % 2_000_000) as u32;
    }
    size
}

/// Postfix's delay format: two significant digits below 10 s, whole seconds above.
fn put_delay(buf: &mut Vec<u8>, ms: u32) {
    if ms < 995 {
        let h = (ms + 5) / 10;
        if h == 0 {
            buf.push(b'0');
        } else if h < 10 {
            put(buf, b"0.0");
            buf.push(b'0' + h as u8);
        } else {
            let (tens, units) = (h / 10, h % 10);
            put(buf, b"0.");
            buf.push(b'0' + tens as u8);
            if units != 0 {
                buf.push(b'0' + units as u8);
            }
        }
    } else if ms < 9_950 {
        let tenths = (ms + 50) / 100;
        let (whole, frac) = (tenths / 10, tenths % 10);
        put_u(buf, u64::from(whole));
        if frac != 0 {
            buf.push(b'.');
            buf.push(b'0' + frac as u8);
        }
    } else {
        put_u(buf, u64::from((ms + 500) / 1000));
    }
}

/// smtpd's per-command summary: `ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`.
fn put_cmds(buf: &mut Vec<u8>, cmds: &[(&[u8], u32, u32)]) {
    let (mut ok, mut total) = (0, 0);
    for &(name, good, all) in cmds {
        if all == 0 {
            continue;
        }
        put(buf, name);
        buf.push(b'=');
        put_u(buf, u64::from(good));
        if good != all {
            buf.push(b'/');
            put_u(buf, u64::from(all));
        }
        buf.push(b' ');
        ok += good;
        total += all;
    }
    put(buf, b"commands=");
    put_u(buf, u64::from(ok));
    if ok != total || total == 0 {
        buf.push(b'/');
        put_u(buf, u64::from(total));
    }
}

// ---------------------------------------------------------------------------
// The simulation

struct Sim {
    rng: Rng,
    clock: Clock,
    buf: Vec<u8>,
    hosts: Vec<Host>,
    sessions: Vec<Session>,
    free: Vec<u32>,
    /// `(time_ms << TIE_BITS | random, session)`, earliest first.
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    stats: Stats,
    start_unix: i64,
    gap_ms: f64,
    arrival_f: f64,
    next_arrival: u64,
    next_anvil: u64,
    anvil_host: usize,
    /// Dovecot sessions draw from their own generator, so that without them
    /// the Postfix stream is exactly what it is with `dovecot_share = 0`.
    drng: Rng,
    dove_gap_ms: f64,
    dove_f: f64,
    /// Next Dovecot session, or `u64::MAX` when there are none.
    next_dove: u64,
    /// Dovecot sessions started; a bijection of it makes session IDs unique.
    dove_seq: u64,
    dove_salt: u64,
}

impl Sim {
    fn new(opts: &Options) -> Sim {
        let mut rng = Rng::new(opts.seed);
        let nhosts = opts.hosts.max(1);
        let hosts = (0..nhosts).map(|i| Host::new(i, &mut rng)).collect();
        let message_share = 1.0 - SESSION_REJECT - SESSION_SASL_FAIL - SESSION_LOST;
        let sessions_per_sec = f64::from(opts.messages_per_sec.max(1)) / message_share;
        let first_anvil = u64::from(rng.range(1_000, 60_000));
        let mut drng = Rng::new(opts.seed ^ 0x646F_7665_636F_7400);
        let dove_salt = drng.next();
        let share = if opts.dovecot_share.is_nan() {
            0.0
        } else {
            opts.dovecot_share.clamp(0.0, 0.95)
        };
        let (mut dove_gap_ms, mut dove_f, mut next_dove) = (0.0, 0.0, u64::MAX);
        if share > 0.0 {
            let postfix_per_ms =
                f64::from(opts.messages_per_sec.max(1)) * POSTFIX_LINES_PER_MESSAGE / 1000.0;
            let dove_per_ms = postfix_per_ms * share / (1.0 - share);
            dove_gap_ms = dove_lines_per_session() / dove_per_ms;
            dove_f = -(1.0 - drng.unit()).ln() * dove_gap_ms;
            next_dove = dove_f as u64;
        }
        Sim {
            rng,
            clock: Clock::new(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            hosts,
            sessions: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            stats: Stats::default(),
            start_unix: opts.start_unix,
            gap_ms: 1000.0 / sessions_per_sec,
            arrival_f: 0.0,
            next_arrival: 0,
            next_anvil: first_anvil,
            anvil_host: 0,
            drng,
            dove_gap_ms,
            dove_f,
            next_dove,
            dove_seq: 0,
            dove_salt,
        }
    }

    fn choose_flow(&mut self) -> Flow {
        let u = self.rng.unit();
        if u < SESSION_REJECT {
            Flow::Reject
        } else if u < SESSION_REJECT + SESSION_SASL_FAIL {
            Flow::SaslFail
        } else if u < SESSION_REJECT + SESSION_SASL_FAIL + SESSION_LOST {
            Flow::Lost
        } else {
            let m = self.rng.unit();
            if m < MSG_SUBMISSION {
                Flow::Submission
            } else if m < MSG_SUBMISSION + MSG_INBOUND {
                Flow::Inbound
            } else if m < MSG_SUBMISSION + MSG_INBOUND + MSG_PICKUP {
                Flow::Pickup
            } else {
                Flow::Relay
            }
        }
    }

    fn spawn_arrival(&mut self) {
        let at = self.next_arrival;
        let host = self.rng.below(self.hosts.len() as u32) as usize;
        let flow = self.choose_flow();
        self.spawn(at, host, flow);
        // Exponential inter-arrival times (a Poisson process).
        self.arrival_f += -(1.0 - self.rng.unit()).ln() * self.gap_ms;
        self.next_arrival = self.arrival_f as u64;
    }

    fn spawn_anvil(&mut self) {
        let at = self.next_anvil;
        let host = self.anvil_host;
        self.spawn(at, host, Flow::Anvil);
        self.anvil_host = (host + 1) % self.hosts.len();
        self.next_anvil += ANVIL_INTERVAL_MS / self.hosts.len() as u64;
    }

    fn spawn_dove(&mut self) {
        let at = self.next_dove;
        let host = self.drng.below(self.hosts.len() as u32) as usize;
        self.spawn(at, host, Flow::Dovecot);
        self.dove_f += -(1.0 - self.drng.unit()).ln() * self.dove_gap_ms;
        self.next_dove = self.dove_f as u64;
    }

    fn spawn(&mut self, at: u64, host: usize, flow: Flow) {
        let sid = match self.free.pop() {
            Some(sid) => sid,
            None => {
                self.sessions.push(Session::blank());
                (self.sessions.len() - 1) as u32
            }
        };
        let s = &mut self.sessions[sid as usize];
        *s = Session::blank();
        s.host = host;
        s.flow = flow;
        s.start = at;
        s.unix0 = self.start_unix * 1000 + at as i64;
        let rng = if flow == Flow::Dovecot {
            self.dove_seq += 1;
            s.msgid = mix64(self.dove_seq.wrapping_add(self.dove_salt));
            &mut self.drng
        } else {
            &mut self.rng
        };
        Plan {
            rng: &mut *rng,
            h: &mut self.hosts[host],
            s: &mut *s,
        }
        .plan();
        let t = at + u64::from(s.steps[0].at);
        let key = (t << TIE_BITS) | u64::from(rng.below(1 << TIE_BITS));
        self.heap.push(Reverse((key, sid)));
    }

    /// Writes the earliest pending line and reschedules its session in place
    /// (one sift instead of a pop and a push).
    fn emit_next(&mut self) {
        let Some(mut top) = self.heap.peek_mut() else {
            return;
        };
        let Reverse((key, sid)) = *top;
        let t = key >> TIE_BITS;
        self.clock.set(self.start_unix + (t / 1000) as i64);
        let s = &mut self.sessions[sid as usize];
        let step = s.steps[s.cur as usize];
        s.cur += 1;
        let now = (t - s.start) as u32;
        let rng = if s.flow == Flow::Dovecot {
            &mut self.drng
        } else {
            &mut self.rng
        };
        Line {
            buf: &mut self.buf,
            rng: &mut *rng,
            clock: &self.clock,
            h: &mut self.hosts[s.host],
            s: &mut *s,
            stats: &mut self.stats,
            now,
        }
        .write(step);
        self.stats.lines += 1;
        if s.cur < s.n {
            let next = s.start + u64::from(s.steps[s.cur as usize].at);
            let tie = u64::from(rng.below(1 << TIE_BITS));
            *top = Reverse(((next << TIE_BITS) | tie, sid));
        } else {
            PeekMut::pop(top);
            self.free.push(sid);
        }
    }
}

/// Everything needed to format one line.
struct Line<'a> {
    buf: &'a mut Vec<u8>,
    rng: &'a mut Rng,
    clock: &'a Clock,
    h: &'a mut Host,
    s: &'a mut Session,
    stats: &'a mut Stats,
    /// Ms after session start.
    now: u32,
}

impl Line<'_> {
    fn prefix(&mut self, prog: &[u8], pid: u32) {
        let buf = &mut *self.buf;
        put(buf, &self.clock.syslog);
        put(buf, &self.h.name);
        buf.push(b' ');
        put(buf, prog);
        buf.push(b'[');
        put_u(buf, u64::from(pid));
        put(buf, b"]: ");
    }

    fn smtpd_prefix(&mut self) {
        let prog: &[u8] = if self.s.sub {
            b"postfix/submission/smtpd"
        } else {
            b"postfix/smtpd"
        };
        let pid = self.s.smtpd_pid;
        self.prefix(prog, pid);
    }

    fn qid_prefix(&mut self, prog: &[u8], pid: u32, sel: u8) {
        self.prefix(prog, pid);
        put_qid(self.buf, &self.s.qid[sel as usize]);
        put(self.buf, b": ");
    }

    fn sender(&mut self, sel: u8) {
        if sel != 2 {
            put_addr(self.buf, &self.s.sender);
        }
    }

    fn message_id(&mut self, sel: u8) {
        let buf = &mut *self.buf;
        let s = &*self.s;
        buf.push(b'<');
        let style = if sel == 2 { MID_POSTFIX } else { s.msgid_style };
        match style {
            MID_POSTFIX => {
                let (stamp, q) = if sel == 2 {
                    (&s.stamps[1], &s.qid[2])
                } else {
                    (&s.stamps[0], &s.qid[0])
                };
                put(buf, stamp);
                buf.push(b'.');
                put_qid(buf, q);
                buf.push(b'@');
                put(buf, &self.h.name);
                put(buf, b".example.edu");
            }
            MID_MUA => {
                let a = s.msgid;
                let b = s.msgid.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
                put_hex(buf, a >> 32, 8, HEX_LOWER);
                buf.push(b'-');
                put_hex(buf, a >> 16, 4, HEX_LOWER);
                buf.push(b'-');
                put_hex(buf, 0x4000 | (a & 0x0FFF), 4, HEX_LOWER);
                buf.push(b'-');
                put_hex(buf, 0x8000 | (b >> 50), 4, HEX_LOWER);
                buf.push(b'-');
                put_hex(buf, b, 12, HEX_LOWER);
                put(buf, b"@example.edu");
            }
            _ => {
                put_hex(buf, s.msgid, 16, HEX_LOWER);
                buf.push(b'.');
                put_hex(
                    buf,
                    s.msgid.rotate_left(23) ^ u64::from(s.size[0]),
                    6,
                    HEX_LOWER,
                );
                put(buf, b"@mail.");
                put_domain(buf, &s.sender);
            }
        }
        buf.push(b'>');
    }

    fn write(&mut self, step: Step) {
        match step.kind {
            Kind::Warn => {
                self.smtpd_prefix();
                let ip = self.s.client.ip;
                let buf = &mut *self.buf;
                put(buf, b"warning: hostname host-");
                put_octet(buf, ip >> 24);
                buf.push(b'-');
                put_octet(buf, (ip >> 16) & 0xFF);
                buf.push(b'-');
                put_octet(buf, (ip >> 8) & 0xFF);
                buf.push(b'-');
                put_octet(buf, ip & 0xFF);
                put(buf, b".dyn.isp.test does not resolve to address ");
                put_ip(buf, ip);
                put(buf, b": Name or service not known");
            }
            Kind::Connect => {
                if step.a == 1 {
                    let pid = self.s.filter_pid;
                    self.prefix(b"postfix/smtpd", pid);
                    put(self.buf, b"connect from localhost[127.0.0.1]");
                } else {
                    self.smtpd_prefix();
                    put(self.buf, b"connect from ");
                    put_client(self.buf, &self.s.client);
                }
            }
            Kind::Tls => {
                self.smtpd_prefix();
                put(self.buf, b"Anonymous TLS connection established from ");
                put_client(self.buf, &self.s.client);
                if self.s.client.ip & 3 == 0 {
                    put(
                        self.buf,
                        b": TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
                    );
                } else {
                    put(
                        self.buf,
                        b": TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
                    );
                }
            }
            Kind::Client => {
                if step.a == 1 {
                    let pid = self.s.filter_pid;
                    self.qid_prefix(b"postfix/smtpd", pid, 1);
                    put(self.buf, b"client=localhost[127.0.0.1], orig_queue_id=");
                    put_qid(self.buf, &self.s.qid[0]);
                    put(self.buf, b", orig_client=");
                    put_client(self.buf, &self.s.client);
                } else {
                    let prog: &[u8] = if self.s.sub {
                        b"postfix/submission/smtpd"
                    } else {
                        b"postfix/smtpd"
                    };
                    let pid = self.s.smtpd_pid;
                    self.qid_prefix(prog, pid, 0);
                    put(self.buf, b"client=");
                    put_client(self.buf, &self.s.client);
                    if self.s.sasl != 0 {
                        self.sasl_fields();
                    }
                }
            }
            Kind::Pickup => {
                let pid = self.h.pickup;
                self.qid_prefix(b"postfix/pickup", pid, 0);
                if self.s.sender.kind == AddrKind::Root {
                    put(self.buf, b"uid=0 from=<root>");
                } else {
                    put(self.buf, b"uid=33 from=<www-data>");
                }
            }
            Kind::Cleanup => {
                let pid = self.h.worker(ROLE_CLEANUP, self.rng);
                self.qid_prefix(b"postfix/cleanup", pid, step.a);
                match step.a {
                    0 => self.s.stamps[0] = self.clock.stamp,
                    2 => self.s.stamps[1] = self.clock.stamp,
                    _ => {}
                }
                put(self.buf, b"message-id=");
                self.message_id(step.a);
                self.stats.messages += 1;
            }
            Kind::Dkim => {
                let pid = self.h.opendkim;
                self.qid_prefix(b"opendkim", pid, step.a);
                if self.s.flow == Flow::Inbound {
                    put(self.buf, b"DKIM verification successful");
                } else {
                    put(
                        self.buf,
                        b"DKIM-Signature field added (s=mail, d=example.edu)",
                    );
                }
            }
            Kind::Qmgr => {
                let sel = step.a;
                self.s.active[sel as usize] = self.now;
                let pid = self.h.qmgr;
                self.qid_prefix(b"postfix/qmgr", pid, sel);
                put(self.buf, b"from=<");
                self.sender(sel);
                put(self.buf, b">, size=");
                put_u(self.buf, u64::from(self.s.size[sel as usize]));
                put(self.buf, b", nrcpt=");
                let n = if sel == 2 { 1 } else { self.s.nrcpt };
                put_u(self.buf, u64::from(n));
                put(self.buf, b" (queue active)");
            }
            Kind::HostSaid => {
                let pid = self.h.worker(ROLE_SMTP, self.rng);
                self.qid_prefix(b"postfix/smtp", pid, step.a);
                let rcpt = self.s.rcpt[step.b as usize];
                let d = &REMOTES[rcpt.dom as usize];
                let buf = &mut *self.buf;
                put(buf, b"host ");
                put(buf, d.mx);
                buf.push(b'[');
                put_ip(buf, d.mx_ip);
                if self.s.flavor[step.b as usize] & 1 == 0 {
                    put(
                        buf,
                        b"] said: 421 4.7.0 Try again later, closing connection. \
                          (in reply to MAIL FROM command)",
                    );
                } else {
                    put(buf, b"] said: 450 4.7.1 <");
                    put_addr(buf, &rcpt);
                    put(
                        buf,
                        b">: Recipient address rejected: Service is unavailable \
                          (in reply to RCPT TO command)",
                    );
                }
            }
            Kind::Deliver => self.deliver(step),
            Kind::Expired => {
                let pid = self.h.qmgr;
                self.qid_prefix(b"postfix/qmgr", pid, step.a);
                put(self.buf, b"from=<");
                self.sender(step.a);
                put(self.buf, b">, status=expired, returned to sender");
                self.stats.expired += 1;
            }
            Kind::Bounce => {
                let pid = self.h.worker(ROLE_BOUNCE, self.rng);
                self.qid_prefix(b"postfix/bounce", pid, step.a);
                put(self.buf, b"sender non-delivery notification: ");
                put_qid(self.buf, &self.s.qid[2]);
            }
            Kind::Removed => {
                let pid = self.h.qmgr;
                self.qid_prefix(b"postfix/qmgr", pid, step.a);
                put(self.buf, b"removed");
            }
            Kind::Disconnect => self.disconnect(step),
            Kind::Reject => self.reject(step),
            Kind::SaslFail => {
                self.smtpd_prefix();
                put(self.buf, b"warning: ");
                put_client(self.buf, &self.s.client);
                if self.s.sasl == SASL_LOGIN {
                    put(
                        self.buf,
                        b": SASL LOGIN authentication failed: UGFzc3dvcmQ6",
                    );
                } else {
                    put(
                        self.buf,
                        b": SASL PLAIN authentication failed: authentication failure",
                    );
                }
                if self.s.x[0] != 0 {
                    put(self.buf, b", sasl_username=");
                    let user = self.s.rcpt[0];
                    if self.s.sasl_bare {
                        put_localpart(self.buf, &user);
                    } else {
                        put_addr(self.buf, &user);
                    }
                }
                self.stats.auth_failures += 1;
            }
            Kind::Lost => {
                self.smtpd_prefix();
                let stage: &[u8] = match step.b {
                    LOST_CONNECT => b"CONNECT",
                    LOST_EHLO => b"EHLO",
                    LOST_STARTTLS => b"STARTTLS",
                    _ => b"AUTH",
                };
                put(self.buf, b"lost connection after ");
                put(self.buf, stage);
                put(self.buf, b" from ");
                put_client(self.buf, &self.s.client);
            }
            Kind::DId
            | Kind::DLogin
            | Kind::DMail
            | Kind::DBoxDeleted
            | Kind::DLogout
            | Kind::DAuth
            | Kind::DLoginFail
            | Kind::DNoAuth => self.dovecot(step),
            Kind::Anvil => {
                let pid = self.h.anvil;
                self.prefix(b"postfix/anvil", pid);
                let service: &[u8] = if self.s.sub { b"submission:" } else { b"smtp:" };
                let buf = &mut *self.buf;
                match step.b {
                    0 => {
                        put(buf, b"statistics: max connection rate ");
                        put_u(buf, u64::from(self.s.x[0]));
                        put(buf, b"/60s for (");
                        put(buf, service);
                        put_ip(buf, self.s.client.ip);
                        put(buf, b") at ");
                    }
                    1 => {
                        put(buf, b"statistics: max connection count ");
                        put_u(buf, u64::from(self.s.x[1]));
                        put(buf, b" for (");
                        put(buf, service);
                        put_ip(buf, self.s.client.ip);
                        put(buf, b") at ");
                    }
                    _ => {
                        put(buf, b"statistics: max cache size ");
                        put_u(buf, u64::from(self.s.x[2]));
                        put(buf, b" at ");
                    }
                }
                let mut at = [0u8; 15];
                Civil::from_unix(self.clock.sec - i64::from(self.s.x[3])).syslog(&mut at);
                put(buf, &at);
            }
        }
        self.buf.push(b'\n');
    }

    fn dovecot(&mut self, step: Step) {
        self.stats.dovecot_lines += 1;
        let buf = &mut *self.buf;
        let s = &*self.s;
        let lip = self.h.lip;
        put(buf, &self.clock.syslog);
        put(buf, &self.h.name);
        put(buf, b" dovecot: ");
        let pop3 = s.x[0] & DF_POP3 != 0;
        let proto: &[u8] = if pop3 { b"pop3" } else { b"imap" };
        match step.kind {
            Kind::DId => {
                let (name, version) = IMAP_CLIENTS[(s.msgid % IMAP_CLIENTS.len() as u64) as usize];
                put(buf, b"imap-login: ID sent: name=");
                put(buf, name);
                put(buf, b", version=");
                put(buf, version);
                put(buf, b": ");
                put_login_fields(buf, s, lip, false);
            }
            Kind::DLogin => {
                self.stats.logins += 1;
                put(buf, proto);
                put(buf, b"-login: Login: ");
                put_login_fields(buf, s, lip, true);
            }
            Kind::DLoginFail => {
                self.stats.failed_logins += 1;
                put(buf, proto);
                if s.x[0] & DF_ABORTED != 0 {
                    put(
                        buf,
                        b"-login: Disconnected: Aborted login by logging out (auth failed, ",
                    );
                } else {
                    put(
                        buf,
                        b"-login: Disconnected: Connection closed (auth failed, ",
                    );
                }
                put_u(buf, u64::from(s.x[1]));
                put(buf, b" attempts in ");
                put_u(buf, u64::from(s.x[3]));
                put(buf, b" secs): ");
                put_login_fields(buf, s, lip, true);
            }
            Kind::DNoAuth => {
                put(buf, proto);
                put(
                    buf,
                    b"-login: Disconnected: Connection closed (no auth attempts in ",
                );
                put_u(buf, u64::from(s.x[3]));
                put(buf, b" secs): ");
                put_login_fields(buf, s, lip, false);
            }
            Kind::DAuth => {
                put(buf, b"auth: passwd-file(");
                put_addr(buf, &s.rcpt[0]);
                buf.push(b',');
                put_ip(buf, s.client.ip);
                put(buf, b",<");
                put(buf, &s.dsid);
                put(buf, b">): Password mismatch");
            }
            Kind::DMail => {
                put_dove_session(buf, s, proto);
                let uid = s.dove_uid(u32::from(step.b));
                let h = s.dove_msg(uid);
                put(
                    buf,
                    if step.a == 0 {
                        b"delete: box="
                    } else {
                        b"expunge: box="
                    },
                );
                put(
                    buf,
                    if pop3 || !h.is_multiple_of(5) {
                        b"INBOX"
                    } else {
                        b"Junk"
                    },
                );
                put(buf, b", uid=");
                put_u(buf, u64::from(uid));
                put(buf, b", msgid=<");
                put_hex(buf, h, 16, HEX_LOWER);
                put(buf, b"@mail.");
                put(buf, REMOTES[(h >> 60) as usize % 5].domain);
                put(buf, b">, size=");
                put_u(buf, u64::from(dove_size(h)));
                if pop3 && step.a == 1 {
                    self.stats.pop3_deletes += 1;
                }
            }
            Kind::DBoxDeleted => {
                put_dove_session(buf, s, proto);
                put(buf, b"Mailbox deleted: Old");
            }
            _ => {
                put_dove_session(buf, s, proto);
                let rng = &mut *self.rng;
                let k = u64::from(s.nrcpt);
                if pop3 {
                    let m = s.x[1];
                    let r = u32::from(s.nrcpt) + rng.below(m - u32::from(s.nrcpt) + 1);
                    let (mut retr, mut size) = (0u64, 0u64);
                    for i in 0..m {
                        let uid = s.dove_uid(i);
                        let b = u64::from(dove_size(s.dove_msg(uid)));
                        size += b;
                        if i < r {
                            retr += b;
                        }
                    }
                    put(buf, b"Disconnected: Logged out top=0/0, retr=");
                    put_u(buf, u64::from(r));
                    buf.push(b'/');
                    put_u(buf, retr);
                    put(buf, b", del=");
                    put_u(buf, k);
                    buf.push(b'/');
                    put_u(buf, u64::from(m));
                    put(buf, b", size=");
                    put_u(buf, size);
                } else {
                    if s.x[0] & DF_IDLE != 0 {
                        put(buf, b"Disconnected: Connection closed (IDLE running for ");
                        put_secs3(buf, rng.range(1, 500));
                        put(buf, b" + waiting input for ");
                        put_secs3(buf, s.x[3]);
                        put(buf, b" secs, ");
                        put_u(buf, u64::from(rng.below(3) * 2));
                        put(buf, b" B in + ");
                        put_u(buf, u64::from(10 + 14 * rng.below(4)));
                        put(buf, b" B out, state=wait-input) in=");
                    } else {
                        put(buf, b"Disconnected: Logged out in=");
                    }
                    let hdr = rng.below(20);
                    let body = rng.below(4);
                    put_u(buf, u64::from(rng.range(40, 3_000)) + 60 * k);
                    put(buf, b" out=");
                    put_u(buf, u64::from(rng.range(300, 60_000)));
                    put(buf, b" deleted=");
                    put_u(buf, k);
                    put(buf, b" expunged=");
                    put_u(buf, k);
                    put(buf, b" trashed=0 hdr_count=");
                    put_u(buf, u64::from(hdr));
                    put(buf, b" hdr_bytes=");
                    put_u(buf, u64::from(hdr * rng.range(30, 900)));
                    put(buf, b" body_count=");
                    put_u(buf, u64::from(body));
                    put(buf, b" body_bytes=");
                    put_u(buf, u64::from(body * rng.range(200, 40_000)));
                }
            }
        }
    }

    fn sasl_fields(&mut self) {
        let buf = &mut *self.buf;
        let method: &[u8] = if self.s.sasl == SASL_LOGIN {
            b", sasl_method=LOGIN"
        } else {
            b", sasl_method=PLAIN"
        };
        put(buf, method);
        put(buf, b", sasl_username=");
        if self.s.sasl_bare {
            put_localpart(buf, &self.s.sender);
        } else {
            put_addr(buf, &self.s.sender);
        }
    }

    fn deliver(&mut self, step: Step) {
        let sel = step.a;
        let r = step.b & RCPT_MASK;
        let st = step.b >> 4;
        let (addr, flavor) = if r == NOTICE_RCPT {
            (self.s.sender, 0)
        } else {
            (self.s.rcpt[r as usize], self.s.flavor[r as usize])
        };
        let agent = if st == ST_FILTER {
            Agent::Smtp
        } else {
            agent_of(&addr)
        };
        let (prog, role): (&[u8], usize) = match agent {
            Agent::Smtp => (b"postfix/smtp", ROLE_SMTP),
            Agent::Lmtp => (b"postfix/lmtp", ROLE_LMTP),
            Agent::Local => (b"postfix/local", ROLE_LOCAL),
        };
        let pid = self.h.worker(role, self.rng);
        self.qid_prefix(prog, pid, sel);
        let buf = &mut *self.buf;
        put(buf, b"to=<");
        put_addr(buf, &addr);
        put(buf, b">, ");
        if flavor & FL_ORIG_TO != 0 {
            put(buf, b"orig_to=<");
            put(buf, ALIASES[(addr.num % ALIASES.len() as u32) as usize]);
            put(buf, b">, ");
        }
        let timeout = agent == Agent::Smtp && st == ST_DEFERRED && flavor & FL_TIMEOUT != 0;
        let remote = &REMOTES[addr.dom as usize];
        let (mx, mx_ip) = if step.b & VIA_ALT_MX != 0 {
            (remote.alt_mx, remote.alt_ip)
        } else {
            (remote.mx, remote.mx_ip)
        };
        put(buf, b"relay=");
        match agent {
            _ if st == ST_FILTER => put(buf, b"127.0.0.1[127.0.0.1]:10024"),
            Agent::Smtp if timeout => put(buf, b"none"),
            Agent::Smtp => {
                put(buf, mx);
                buf.push(b'[');
                put_ip(buf, mx_ip);
                put(buf, b"]:25");
            }
            Agent::Lmtp => put(buf, b"mail.example.edu[/var/run/dovecot/lmtp]"),
            Agent::Local => put(buf, b"local"),
        }

        // delay=total, delays=before-qmgr/in-qmgr/connection-setup/transmission
        let s = &*self.s;
        let arrived = s.arrived[sel as usize];
        let active = s.active[sel as usize].max(arrived);
        let total = self.now.saturating_sub(arrived);
        let before = active - arrived;
        let rest = self.now.saturating_sub(active);
        let in_qmgr = rest.min(self.rng.below(12));
        let rest = rest - in_qmgr;
        let (setup, xfer) = match agent {
            Agent::Smtp if timeout => (rest, 0),
            Agent::Smtp => {
                let c = rest * self.rng.range(20, 60) / 100;
                (c, rest - c)
            }
            Agent::Lmtp => {
                let c = rest / 4;
                (c, rest - c)
            }
            Agent::Local => (0, rest),
        };
        put(buf, b", delay=");
        put_delay(buf, total);
        put(buf, b", delays=");
        put_delay(buf, before);
        buf.push(b'/');
        put_delay(buf, in_qmgr);
        buf.push(b'/');
        put_delay(buf, setup);
        buf.push(b'/');
        put_delay(buf, xfer);
        put(buf, b", dsn=");

        self.stats.deliveries += 1;
        let variant = flavor & FL_VARIANT;
        match st {
            ST_FILTER => {
                self.stats.sent += 1;
                put(buf, b"2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as ");
                put_qid(buf, &s.qid[1]);
                buf.push(b')');
            }
            ST_SENT => {
                self.stats.sent += 1;
                match agent {
                    Agent::Smtp => match remote.style {
                        Style::Gmail => {
                            put(buf, b"2.0.0, status=sent (250 2.0.0 OK  ");
                            put_u(buf, self.clock.sec.max(0) as u64);
                            buf.push(b' ');
                            put_hex(buf, self.rng.next(), 13, HEX_LOWER);
                            buf.push(b'-');
                            put_hex(buf, self.rng.next(), 10, HEX_LOWER);
                            put(buf, b"si");
                            put_u(buf, u64::from(self.rng.range(1_000_000, 9_999_999)));
                            buf.push(b'.');
                            put_u(buf, u64::from(self.rng.range(100, 999)));
                            put(buf, b" - gsmtp)");
                        }
                        Style::Yahoo => put(buf, b"2.0.0, status=sent (250 ok dirdel)"),
                        Style::Outlook => {
                            put(buf, b"2.6.0, status=sent (250 2.6.0 ");
                            self.message_id(sel);
                            let buf = &mut *self.buf;
                            put(buf, b" [InternalId=");
                            put_u(buf, self.rng.next() % 100_000_000_000_000);
                            put(buf, b", Hostname=TYZPR01MB");
                            put_u(buf, u64::from(self.rng.range(1_000, 9_999)));
                            put(
                                buf,
                                b".apcprd01.prod.outlook.test] Queued mail for delivery)",
                            );
                        }
                        Style::Generic => put(
                            buf,
                            b"2.0.0, status=sent (250 2.0.0 Message accepted for delivery)",
                        ),
                        Style::Postfix => {
                            put(buf, b"2.0.0, status=sent (250 2.0.0 Ok: queued as ");
                            put_hex(buf, self.rng.next(), 11, HEX_UPPER);
                            buf.push(b')');
                        }
                    },
                    Agent::Lmtp => {
                        put(buf, b"2.0.0, status=sent (250 2.0.0 <");
                        put_addr(buf, &addr);
                        put(buf, b"> ");
                        put_b64(buf, self.rng, 22);
                        put(buf, b" Saved)");
                    }
                    Agent::Local => put(buf, b"2.0.0, status=sent (delivered to mailbox)"),
                }
            }
            ST_BOUNCED => {
                self.stats.bounced += 1;
                match agent {
                    Agent::Smtp => {
                        let (dsn, said): (&[u8], &[u8]) = match variant {
                            2 => (b"5.2.2", b"552 5.2.2 Mailbox full (in reply to end of DATA command)"),
                            3 => (
                                b"5.7.1",
                                b"550 5.7.1 Message rejected as spam by Content Filtering. (in reply to end of DATA command)",
                            ),
                            _ => (b"5.1.1", b""),
                        };
                        put(buf, dsn);
                        put(buf, b", status=bounced (host ");
                        put(buf, mx);
                        buf.push(b'[');
                        put_ip(buf, mx_ip);
                        put(buf, b"] said: ");
                        if !said.is_empty() {
                            put(buf, said);
                        } else if remote.style == Style::Gmail {
                            put(
                                buf,
                                b"550-5.1.1 The email account that you tried to reach does not exist. Please try \
                                  550-5.1.1 double-checking the recipient's email address for typos or \
                                  550-5.1.1 unnecessary spaces. For more information, go to \
                                  550 5.1.1  https://support.google.test/mail/?p=NoSuchUser ",
                            );
                            put_hex(buf, self.rng.next(), 13, HEX_LOWER);
                            put(buf, b"si");
                            put_u(buf, u64::from(self.rng.range(1_000_000, 9_999_999)));
                            put(buf, b" - gsmtp (in reply to RCPT TO command)");
                        } else {
                            put(buf, b"550 5.1.1 <");
                            put_addr(buf, &addr);
                            put(buf, b">: Recipient address rejected: User unknown (in reply to RCPT TO command)");
                        }
                        self.buf.push(b')');
                    }
                    Agent::Lmtp => {
                        if variant & 1 == 0 {
                            put(buf, b"5.1.1, status=bounced (host mail.example.edu[/var/run/dovecot/lmtp] said: 550 5.1.1 <");
                            put_addr(buf, &addr);
                            put(buf, b"> User doesn't exist: ");
                            put_addr(buf, &addr);
                            put(buf, b" (in reply to RCPT TO command))");
                        } else {
                            put(buf, b"5.2.2, status=bounced (host mail.example.edu[/var/run/dovecot/lmtp] said: 552 5.2.2 <");
                            put_addr(buf, &addr);
                            put(buf, b"> Quota exceeded (mailbox for user is full) (in reply to end of DATA command))");
                        }
                    }
                    Agent::Local => {
                        put(buf, b"5.1.1, status=bounced (unknown user: \"");
                        put_localpart(buf, &addr);
                        put(buf, b"\")");
                    }
                }
            }
            _ => {
                self.stats.deferred += 1;
                match agent {
                    Agent::Smtp if timeout => {
                        put(buf, b"4.4.1, status=deferred (connect to ");
                        put(buf, mx);
                        buf.push(b'[');
                        put_ip(buf, mx_ip);
                        put(buf, b"]:25: Connection timed out)");
                    }
                    Agent::Smtp => {
                        put(buf, b"4.7.1, status=deferred (host ");
                        put(buf, mx);
                        buf.push(b'[');
                        put_ip(buf, mx_ip);
                        put(buf, b"] said: 450 4.7.1 <");
                        put_addr(buf, &addr);
                        put(buf, b">: Recipient address rejected: Greylisted, see http://postgrey.test/ (in reply to RCPT TO command))");
                    }
                    Agent::Lmtp => {
                        put(buf, b"4.3.0, status=deferred (host mail.example.edu[/var/run/dovecot/lmtp] said: 451 4.3.0 <");
                        put_addr(buf, &addr);
                        put(
                            buf,
                            b"> Temporary internal error (in reply to end of DATA command))",
                        );
                    }
                    Agent::Local => {
                        put(
                            buf,
                            b"4.2.0, status=deferred (cannot update mailbox /var/mail/",
                        );
                        put_localpart(buf, &addr);
                        put(buf, b" for user ");
                        put_localpart(buf, &addr);
                        put(buf, b". unable to lock for exclusive access: Resource temporarily unavailable)");
                    }
                }
            }
        }
    }

    fn disconnect(&mut self, step: Step) {
        if step.a == 1 {
            let pid = self.s.filter_pid;
            self.prefix(b"postfix/smtpd", pid);
            self.h.release_smtpd(false, pid, self.rng);
            let n = u32::from(self.s.nrcpt);
            put(self.buf, b"disconnect from localhost[127.0.0.1] ");
            put_cmds(
                self.buf,
                &[
                    (b"ehlo", 1, 1),
                    (b"mail", 1, 1),
                    (b"rcpt", n, n),
                    (b"data", 1, 1),
                    (b"quit", 1, 1),
                ],
            );
            return;
        }
        self.smtpd_prefix();
        let (sub, pid) = (self.s.sub, self.s.smtpd_pid);
        self.h.release_smtpd(sub, pid, self.rng);
        put(self.buf, b"disconnect from ");
        put_client(self.buf, &self.s.client);
        self.buf.push(b' ');
        let s = &*self.s;
        let tls = u32::from(s.tls);
        let n = u32::from(s.nrcpt);
        match s.flow {
            Flow::Reject => {
                let full = s.x[1];
                put_cmds(
                    self.buf,
                    &[
                        (b"ehlo", 1 + tls, 1 + tls),
                        (b"starttls", tls, tls),
                        (b"mail", 1, 1),
                        (b"rcpt", 0, n),
                        (b"data", 0, full),
                        (b"rset", full, full),
                        (b"quit", 1, 1),
                    ],
                );
            }
            Flow::SaslFail => {
                let quit = u32::from(s.x[1] == 0);
                put_cmds(
                    self.buf,
                    &[
                        (b"ehlo", 1 + tls, 1 + tls),
                        (b"starttls", tls, tls),
                        (b"auth", 0, n),
                        (b"quit", quit, quit),
                    ],
                );
            }
            Flow::Lost => {
                let cmds: &[(&[u8], u32, u32)] = match s.x[0] as u8 {
                    LOST_CONNECT => &[],
                    LOST_EHLO => &[(b"ehlo", 1, 1)],
                    LOST_STARTTLS => &[(b"ehlo", 1, 1), (b"starttls", 0, 1)],
                    _ => &[(b"ehlo", 1, 1), (b"auth", 0, 1)],
                };
                put_cmds(self.buf, cmds);
            }
            _ => {
                let auth = u32::from(s.sasl != 0);
                let quit = u32::from(s.quit);
                put_cmds(
                    self.buf,
                    &[
                        (b"ehlo", 1 + tls, 1 + tls),
                        (b"starttls", tls, tls),
                        (b"auth", auth, auth),
                        (b"mail", 1, 1),
                        (b"rcpt", n, n),
                        (b"data", 1, 1),
                        (b"quit", quit, quit),
                    ],
                );
            }
        }
    }

    fn reject(&mut self, step: Step) {
        self.smtpd_prefix();
        let s = &*self.s;
        let rcpt = s.rcpt[step.b as usize];
        let buf = &mut *self.buf;
        put(buf, b"NOQUEUE: reject: RCPT from ");
        put_client(buf, &s.client);
        match s.x[0] {
            0 => {
                put(buf, b": 454 4.7.1 <");
                put_addr(buf, &rcpt);
                put(buf, b">: Relay access denied");
            }
            1 => {
                put(buf, b": 554 5.7.1 Service unavailable; Client host [");
                put_ip(buf, s.client.ip);
                put(buf, b"] blocked using zen.dnsbl.test");
            }
            _ => {
                put(buf, b": 550 5.1.1 <");
                put_addr(buf, &rcpt);
                put(
                    buf,
                    b">: Recipient address rejected: User unknown in virtual mailbox table",
                );
            }
        }
        put(buf, b"; from=<");
        put_addr(buf, &s.sender);
        put(buf, b"> to=<");
        put_addr(buf, &rcpt);
        put(buf, b"> proto=ESMTP helo=<");
        match s.x[0] {
            0 => {
                put(buf, b"pc");
                put_u(buf, u64::from(s.x[2]));
            }
            1 => put(buf, REMOTES[D_SPAM as usize].domain),
            _ => put(buf, REMOTES[s.client.idx as usize].client),
        }
        buf.push(b'>');
        self.stats.rejects += 1;
    }
}
