//! Correlation: from parsed lines to per-mailbox rows.
//!
//! Postfix writes one line per step of a message's life, from several
//! processes, interleaved with other messages and other hosts, and syslog
//! relays reorder lines within a second or two. Lines are joined by
//! `(host, queue ID)`, never by adjacency or order:
//!
//! * a lifecycle starts at the first line naming a queue ID and ends a
//!   little after `removed` ([`lifecycle`]); the same ID may then start a
//!   new, unrelated lifecycle;
//! * smtpd's `client=` gives the client address and the SMTP AUTH user (one
//!   Auth_rcv), qmgr's `from=` or pickup's gives the envelope sender;
//! * each `status=` line is one Sent, Bounced or Deferred for the recipient;
//!   qmgr's `status=expired` turns every recipient still deferred into one
//!   Expired;
//! * a delivery to an internal relay (a content filter) is a hand-off, never
//!   a final delivery: it is followed to the filter's copy, whose deliveries
//!   count for the original sender, once; a filter's refusal is a row of
//!   its own, Blocked ([`links`]);
//! * rejects and failed SMTP AUTH are Auth_blk for the sender or user named.
//!
//! An event whose mailbox is not settled yet (its sender not read yet, its
//! `client=` line not read yet, or a message that may be a filter's copy) is
//! held in its lifecycle until it is, and released in the order it arrived,
//! so the same lines in any order within a few seconds give the same rows.
//! Waiting is measured on each host's own clock ([`clock`]).
//!
//! Rows are produced only for mailboxes in the local domains; every other
//! event is counted by why it has no mailbox ([`Unattributed`]). Each row
//! has a key derived from the line it came from (host, second, program, pid
//! and text), so a line read twice, from the same file or an overlapping
//! one, yields the same key and the store keeps one row.
//!
//! Everything the correlator remembers between lines is in [`State`], which
//! the ingest saves with each checkpoint, so an ingest stopped at any point
//! and resumed continues exactly as an uninterrupted one.

use std::cell::RefCell;

use ipnet::IpNet;
use memchr::memmem;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::access::{AccessRow, AccessSettings, AccessState, Line as AccessLine};
use super::dovecot;
use super::envelope::{Clock, LocalDays};
#[cfg(doc)]
use super::mailboxes::Mailboxes;
use super::postfix::{self, Event, Parsed, Status};
use super::received::{self, MessageRow};
use crate::domain::{
    LocalDomains, normalize_logged_address, normalize_logged_address_into, strip_extension,
};

mod clock;
mod emit;
mod inbound;
mod lifecycle;
mod links;
mod sweep;
#[cfg(test)]
mod tests_shapes;

use clock::*;
pub(crate) use emit::Phrases;
use emit::{Emitter, Relays};
use lifecycle::*;
use links::*;

/// How far apart Dovecot's password verdict and Postfix's `SASL ...
/// authentication failed` for the same attempt may be. Dovecot delays a
/// failure reply by `auth_failure_delay` (2 s by default) before Postfix sees
/// and logs it.
const SASL_JOIN_BEFORE_US: i64 = 15 * 1_000_000;
const SASL_JOIN_AFTER_US: i64 = 2 * 1_000_000;
/// How long either of the two waits for the other, on its host's clock.
const SASL_WAIT_US: i64 = SASL_JOIN_BEFORE_US + GRACE_US;
/// The longest address a mailbox can have (RFC 5321's 256-byte path, less
/// its angle brackets). A longer one in a log names no mailbox.
const MAX_ADDRESS: usize = 254;
/// How many unrecognised lines are kept as examples for the summary.
const MAX_EXAMPLES: usize = 5;
/// Longest example shown, in bytes.
const EXAMPLE_BYTES: usize = 200;

/// Text of rows and of the state: a mailbox, a host, a queue ID, a client's
/// address. Up to 23 bytes (hosts, addresses of clients, queue and session
/// IDs, most phrases, many mailboxes) it is held inline: made without
/// allocating, cloned by copying, dropped for nothing. Longer text is
/// shared: cloning it copies a pointer. The store binds it without copying.
pub type Text = smol_str::SmolStr;

/// What a row counts as; the stored integer is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Kind {
    Sent = 1,
    Bounced = 2,
    Deferred = 3,
    Expired = 4,
    AuthRcv = 5,
    AuthBlk = 6,
    /// A content filter of this mail system refused the message after it
    /// was queued (`250 2.7.0 BLOCKED`, a `5.7.x` refusal): a refusal,
    /// counted in Auth_blk beside the others.
    Blocked = 7,
}

impl Kind {
    /// Where a row of this kind comes among rows of the same instant: a
    /// message's submission (or its refusal) before its deliveries.
    pub fn order(self) -> u8 {
        match self {
            Kind::AuthRcv | Kind::AuthBlk => 0,
            Kind::Blocked => 1,
            Kind::Deferred => 2,
            Kind::Bounced | Kind::Sent => 3,
            Kind::Expired => 4,
        }
    }

    pub fn from_i64(v: i64) -> Option<Kind> {
        Some(match v {
            1 => Kind::Sent,
            2 => Kind::Bounced,
            3 => Kind::Deferred,
            4 => Kind::Expired,
            5 => Kind::AuthRcv,
            6 => Kind::AuthBlk,
            7 => Kind::Blocked,
            _ => return None,
        })
    }

    /// The name users see in the status column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sent => "sent",
            Kind::Bounced => "bounced",
            Kind::Deferred => "deferred",
            Kind::Expired => "expired",
            Kind::AuthRcv => "auth_rcv",
            Kind::AuthBlk => "auth_blk",
            Kind::Blocked => "blocked",
        }
    }
}

/// One stored fact about one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Identity of the source line (and recipient, and role): the store
    /// keeps one row per key.
    pub key: i64,
    /// The line's instant, µs since the epoch.
    pub time_us: i64,
    /// The local day of that instant, `YYYYMMDD`.
    pub day: i32,
    pub mailbox: Text,
    /// The mailbox's number among the ingest's mailboxes, by which the
    /// writer finds its database id: given when the row joins a batch
    /// ([`Mailboxes::prepare`]).
    pub mailbox_no: Option<u32>,
    pub kind: Kind,
    pub host: Text,
    pub queue_id: Option<Text>,
    /// The submitting client's address (or `local (uid N)` for sendmail).
    pub sender_ip: Option<Text>,
    pub relay: Option<Text>,
    pub recipient: Option<String>,
    pub dsn: Option<Text>,
    /// The remote server's answer or Postfix's reason, whole.
    pub response: Option<String>,
    /// `response` split for storage, once the row joins a batch
    /// ([`crate::store::records::ready_rows`]).
    pub reply_split: Option<crate::store::records::ReplySplit>,
}

/// What lines turn into: SMTP rows and mailbox access rows.
#[derive(Debug, Default)]
pub struct Rows {
    pub smtp: Vec<Row>,
    pub access: Vec<AccessRow>,
    /// Facts about mail received by local mailboxes.
    pub messages: Vec<MessageRow>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.smtp.len() + self.access.len() + self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the rows out. The next ones go into `spare`, rows already
    /// stored whose memory is reused (they are dropped here), or when there
    /// is none into new room for as many again.
    pub fn take(&mut self, spare: Option<Rows>) -> Rows {
        let next = match spare {
            Some(mut r) => {
                r.smtp.clear();
                r.access.clear();
                r.messages.clear();
                r
            }
            None => Rows {
                smtp: Vec::with_capacity(self.smtp.len()),
                access: Vec::with_capacity(self.access.len()),
                messages: Vec::with_capacity(self.messages.len()),
            },
        };
        std::mem::replace(self, next)
    }
}

/// Correlation settings taken from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub local: LocalDomains,
    pub internal_relays: Vec<IpNet>,
    pub tz: chrono_tz::Tz,
    /// Clients of the webmail front end (their logins are labelled).
    pub webmail_networks: Vec<IpNet>,
    /// The name the correlator's state is saved under.
    pub agent: String,
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> anyhow::Result<Settings> {
        Ok(Settings {
            local: c.local_domains(),
            internal_relays: c.ingest.internal_relays.clone(),
            tz: c.tz()?,
            webmail_networks: c.webmail_networks.clone(),
            agent: c.ingest.agent.clone(),
        })
    }
}

/// Counters for the summary an ingest prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub lines_read: u64,
    /// Lines that were part of a message, a reject, a mailbox session or a
    /// failed login.
    pub lines_used: u64,
    /// Lines of known shapes that count for nothing (connects, TLS, other
    /// programs' lines...).
    pub lines_noise: u64,
    /// Of the noise: lines from programs other than Postfix and Dovecot.
    pub lines_other_programs: u64,
    /// Lines with no envelope, or a Postfix line of an unknown shape.
    pub lines_unrecognised: u64,
    /// Lines longer than the reader takes ([`super::source::MAX_LINE`]):
    /// each counted once and skipped whole, never parsed.
    pub lines_too_long: u64,
    /// Rows produced for local mailboxes.
    pub rows: u64,
    /// Events that went to no mailbox, by cause.
    pub unattributed: Unattributed,
    /// Hand-offs to a content filter still waiting for their copy when the
    /// input ended: they stay in the saved state, and later lines settle
    /// them (see [`Correlator::finish`]).
    pub handoffs_waiting: u64,
    /// The first few unrecognised lines (secrets cut off).
    pub examples: Vec<String>,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.lines_read += o.lines_read;
        self.lines_used += o.lines_used;
        self.lines_noise += o.lines_noise;
        self.lines_other_programs += o.lines_other_programs;
        self.lines_unrecognised += o.lines_unrecognised;
        self.lines_too_long += o.lines_too_long;
        self.rows += o.rows;
        self.unattributed.add(&o.unattributed);
        self.handoffs_waiting = o.handoffs_waiting;
        for e in &o.examples {
            if self.examples.len() < MAX_EXAMPLES {
                self.examples.push(e.clone());
            }
        }
    }
}

/// Events that went to no mailbox, by why. Some go to none by rule (mail
/// of other domains, bounce notices); the others could not be given one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unattributed {
    /// The sender and the SMTP AUTH user are outside the local domains.
    pub not_local: u64,
    /// From the null sender (`from=<>`): bounce and delay notices, which
    /// count for nobody.
    pub null_sender: u64,
    /// The message's sender was never read: its lifecycle began before the
    /// input (or its `from=` line was lost).
    pub sender_unseen: u64,
    /// A failed SMTP AUTH that named no user: Postfix before 3.9 leaves the
    /// name out, and no Dovecot verdict for the same client came near it.
    pub auth_no_user: u64,
    /// An address longer than a mailbox's can be.
    pub bad_address: u64,
    /// A hand-off to a content filter read from a line its host's log had
    /// already passed (read again, or a file read out of order) that no
    /// copy claimed: not counted as a delivery, because its copy, if it
    /// was read before, counted already.
    pub handoff_late: u64,
}

impl Unattributed {
    pub fn add(&mut self, o: &Unattributed) {
        self.not_local += o.not_local;
        self.null_sender += o.null_sender;
        self.sender_unseen += o.sender_unseen;
        self.auth_no_user += o.auth_no_user;
        self.bad_address += o.bad_address;
        self.handoff_late += o.handoff_late;
    }

    pub fn total(&self) -> u64 {
        self.not_local
            + self.null_sender
            + self.sender_unseen
            + self.auth_no_user
            + self.bad_address
            + self.handoff_late
    }

    /// The causes with their counts, as the summary names them.
    pub fn causes(&self) -> [(&'static str, u64); 6] {
        [
            ("sender or user outside the local domains", self.not_local),
            ("null sender (bounce and delay notices)", self.null_sender),
            (
                "sender never read (message began before the input)",
                self.sender_unseen,
            ),
            ("failed SMTP AUTH that named no user", self.auth_no_user),
            ("address too long to be a mailbox", self.bad_address),
            (
                "hand-off from a line read before, no copy claimed it",
                self.handoff_late,
            ),
        ]
    }
}

/// The line being handled, for keys and rows.
struct LineCtx<'a> {
    host: u32,
    /// The line's own instant.
    time_us: i64,
    /// The host's clock after the line (see [`clock`]).
    now_us: i64,
    program: &'a [u8],
    pid: Option<u32>,
    message: &'a [u8],
}

/// Turns lines into rows.
pub struct Correlator {
    em: Emitter,
    access_settings: AccessSettings,
    state: State,
    /// The default domain, for bare user names in addresses.
    default_domain: Text,
    /// Recipient delimiters: a sender or user `judy+tag` counts for `judy`.
    delimiters: Text,
    /// Hashes of host names (same order as `state.hosts`), for line keys.
    host_hashes: Vec<u64>,
    /// The last host looked up: consecutive lines usually share it.
    last_host: Option<u32>,
    /// Relays and DSN codes, which recur from delivery to delivery.
    relays: Relays,
    dsns: Phrases,
    /// Room for normalising an address before it becomes shared text.
    scratch: RefCell<String>,
    /// Added to every host's clock while [`Correlator::idle`] sweeps.
    idle_us: i64,
    /// Rows about received mail made by the current call, moved into its
    /// output at the end of it.
    msg_out: Vec<MessageRow>,
    /// SMTP rows of lifecycles closed while received mail's rows were
    /// being made (see `inbound.rs`), moved into the output likewise.
    spill: Vec<Row>,
    pub stats: Stats,
}

impl Correlator {
    pub fn new(settings: Settings) -> Correlator {
        Correlator::with_state(settings, State::default())
    }

    pub fn with_state(settings: Settings, mut state: State) -> Correlator {
        let host_hashes = state.hosts.iter().map(|h| xxh3_64(h.as_bytes())).collect();
        // A state saved before clocks were kept per host has none.
        state.clocks.resize(state.hosts.len(), HostClock::default());
        state.copies = CopyIndex::build(&state.messages);
        Correlator {
            access_settings: AccessSettings {
                local: settings.local.clone(),
                webmail_networks: settings.webmail_networks.clone(),
            },
            default_domain: settings.local.default_domain.as_str().into(),
            delimiters: settings.local.delimiters.as_str().into(),
            em: Emitter {
                days: LocalDays::new(settings.tz),
                settings,
                noqueue: "NOQUEUE".into(),
                unattributed: Unattributed::default(),
            },
            state,
            host_hashes,
            last_host: None,
            relays: Relays::default(),
            dsns: Phrases::default(),
            scratch: RefCell::new(String::new()),
            idle_us: 0,
            msg_out: Vec::new(),
            spill: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The state to save with a checkpoint.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).expect("state serialises: plain data with string keys")
    }

    /// Restores a saved state.
    pub fn restore(settings: Settings, bytes: &[u8]) -> anyhow::Result<Correlator> {
        let state: State = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("saved ingest state is unreadable: {e}"))?;
        Ok(Correlator::with_state(settings, state))
    }

    /// What is in memory waiting for later lines now: messages, hand-offs
    /// waiting for their copy, mailbox sessions (for the memory benchmark,
    /// tests and the summary).
    pub fn in_flight(&self) -> usize {
        self.state.messages.len() + self.state.handoffs.len() + self.state.access.in_flight()
    }

    /// Events read but not given out yet, because later lines may still
    /// decide them: a message's events waiting to be settled, hand-offs
    /// waiting for their copy, and mailbox access rows within their wait.
    pub fn waiting(&self) -> usize {
        self.state
            .messages
            .values()
            .map(|m| m.held.len())
            .sum::<usize>()
            + self.state.handoffs.len()
            + self.state.access.rows_waiting()
    }

    fn host_id(&mut self, host: &[u8]) -> u32 {
        if let Some(id) = self.last_host
            && self.state.hosts[id as usize].as_bytes() == host
        {
            return id;
        }
        // Names are kept as text: one that is not UTF-8 is found by its
        // lossy form.
        let found = self
            .state
            .hosts
            .iter()
            .position(|h| h.as_bytes() == host)
            .or_else(|| {
                let name = String::from_utf8_lossy(host);
                self.state.hosts.iter().position(|h| **h == *name)
            });
        let id = match found {
            Some(i) => i as u32,
            None => {
                let name = String::from_utf8_lossy(host);
                self.state.hosts.push(name.as_ref().into());
                self.state.clocks.push(HostClock::default());
                self.host_hashes.push(xxh3_64(host));
                (self.state.hosts.len() - 1) as u32
            }
        };
        self.last_host = Some(id);
        id
    }

    /// Whether housekeeping is due after a line of `host`, whose clock is
    /// now `now_us`: when that clock has moved [`SWEEP_EVERY_US`] since the
    /// last one. One sweep looks at every host's state, each by its own
    /// clock, so it counts for every host: hosts whose clocks agree sweep
    /// once between them, and a host whose clock is far off neither
    /// hurries nor holds up the others'.
    fn sweep_due(&mut self, host: u32, now_us: i64) -> bool {
        let clocks = &mut self.state.clocks;
        let due = now_us
            >= clocks[host as usize]
                .swept_us
                .saturating_add(SWEEP_EVERY_US);
        if due {
            for c in clocks.iter_mut() {
                c.swept_us = c.now();
            }
        }
        due
    }

    /// The clock of host `h`.
    fn now_of(&self, h: u32) -> i64 {
        self.state.clocks[h as usize]
            .now()
            .saturating_add(self.idle_us)
    }

    /// Reads one line (without its newline). Rows it completes are pushed to
    /// `out`.
    pub fn feed(&mut self, clock: &mut Clock, line: &[u8], out: &mut Rows) {
        let before = out.smtp.len();
        self.feed_line(clock, line, out);
        self.count(before, out);
    }

    /// Counts a line that was too long to read (the reader skipped it
    /// whole): it is read, and nothing else.
    pub fn too_long(&mut self) {
        self.stats.lines_read += 1;
        self.stats.lines_too_long += 1;
    }

    /// End of input for a one-shot ingest: every wait of a message is over
    /// (possible copies no hand-off claimed count as their own, lifecycles
    /// removed are closed, `expired` lines settled). Hand-offs still
    /// waiting for their copy stay in the state, for the next run's lines.
    /// (A follower does not call this: more lines may come.)
    pub fn finish(&mut self, out: &mut Rows) {
        let before = out.smtp.len();
        self.sweep(true, out);
        self.seal(out);
        self.count(before, out);
        self.stats.handoffs_waiting = self.state.handoffs.len() as u64;
    }

    /// Makes the rows in `out` final before they leave (a batch is sent,
    /// the state saved): mailbox access rows still waiting for lines that
    /// may change them are taken back into the state, which they are saved
    /// with. (They wait in `out` itself until then, so that they are not
    /// moved for waiting.) Rows in `out` are final only after this.
    pub fn seal(&mut self, out: &mut Rows) {
        self.state.access.seal(&mut out.access);
    }

    /// The input has been quiet for `for_us` (a follower of live logs sees
    /// no new line): waits are over as if that much log time had passed on
    /// every host. The clocks themselves do not move, so the lines that
    /// come next are read as they would have been.
    pub fn idle(&mut self, for_us: i64, out: &mut Rows) {
        if for_us <= 0 {
            return;
        }
        let before = out.smtp.len();
        self.idle_us = for_us;
        self.sweep(false, out);
        self.idle_us = 0;
        self.count(before, out);
    }

    /// Counts what the last call gave: its SMTP rows (`out.smtp` had
    /// `before` then), and the mailbox access rows made final.
    fn count(&mut self, before: usize, out: &mut Rows) {
        out.smtp.append(&mut self.spill);
        self.stats.rows += out.smtp.len().saturating_sub(before) as u64;
        self.stats.rows += self.msg_out.len() as u64;
        out.messages.append(&mut self.msg_out);
        self.stats.rows += self.state.access.take_given();
        let u = std::mem::take(&mut self.em.unattributed);
        self.stats.unattributed.add(&u);
    }

    fn feed_line(&mut self, clock: &mut Clock, line: &[u8], out: &mut Rows) {
        self.stats.lines_read += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let env = match clock.split(line) {
            Ok(e) => e,
            Err(_) => {
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    self.stats.lines_noise += 1;
                } else {
                    self.unrecognised(line);
                }
                return;
            }
        };
        let postfix = postfix::daemon(env.program);
        if postfix.is_none() && !dovecot::is_dovecot(env.program, env.host) {
            if let Some(v) = received::filter_verdict(env.program, env.message) {
                let host = self.host_id(env.host);
                let now_us = self.state.clocks[host as usize].tick(env.time_us);
                let ctx = LineCtx {
                    host,
                    time_us: env.time_us,
                    now_us,
                    program: env.program,
                    pid: env.pid,
                    message: env.message,
                };
                self.stats.lines_used += 1;
                self.filter_line(&ctx, v);
                return;
            }
            self.stats.lines_noise += 1;
            self.stats.lines_other_programs += 1;
            return;
        }
        let host = self.host_id(env.host);
        let now_us = self.state.clocks[host as usize].tick(env.time_us);
        if self.sweep_due(host, now_us) {
            self.sweep(false, out);
        }
        let ctx = LineCtx {
            host,
            time_us: env.time_us,
            now_us,
            program: env.program,
            pid: env.pid,
            message: env.message,
        };
        if let Some(daemon) = postfix {
            match postfix::parse(daemon, env.message) {
                Parsed::Event(ev) => {
                    self.stats.lines_used += 1;
                    self.postfix_event(&ctx, ev, &mut out.smtp);
                    self.inbound(&ctx, ev);
                }
                Parsed::Noise => self.stats.lines_noise += 1,
                Parsed::Unknown => self.unrecognised(line),
            }
            return;
        }
        let message_fact = self.dovecot_message(&ctx, env.message);
        let line = AccessLine {
            host_id: host,
            host: &self.state.hosts[host as usize],
            key: self.line_key(&ctx),
            time_us: env.time_us,
            now_us,
            day: self.em.days.day_key(env.time_us),
        };
        if let Some(f) = dovecot::auth_failure(env.program, env.message) {
            self.stats.lines_used += 1;
            self.state.access.verdict(&self.access_settings, &line, &f);
            self.dovecot_auth_failure(&ctx, f, &mut out.smtp);
        } else if message_fact {
            self.stats.lines_used += 1;
            self.state.access.feed(
                &self.access_settings,
                &line,
                env.program,
                env.message,
                &mut out.access,
            );
        } else if self.state.access.feed(
            &self.access_settings,
            &line,
            env.program,
            env.message,
            &mut out.access,
        ) {
            self.stats.lines_used += 1;
        } else {
            self.stats.lines_noise += 1;
        }
    }

    fn unrecognised(&mut self, line: &[u8]) {
        self.stats.lines_unrecognised += 1;
        if self.stats.examples.len() < MAX_EXAMPLES {
            self.stats.examples.push(example_text(line));
        }
    }

    fn line_key(&self, ctx: &LineCtx<'_>) -> i64 {
        // Whole seconds: the same line written by two envelopes (a classic
        // file and an RFC 3339 one) has the same key.
        let secs = ctx.time_us.div_euclid(1_000_000) as u64;
        let seed = self.host_hashes[ctx.host as usize]
            ^ secs.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (ctx.pid.unwrap_or(0) as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ xxh3_64(ctx.program);
        xxh3_64_with_seed(ctx.message, seed) as i64
    }

    /// The lifecycle a line of `key` belongs to, made at its first line.
    ///
    /// A lifecycle `removed` stays open a while for its own late lines. A
    /// line stamped after its `removed` that starts a submission
    /// (`client=`, pickup's `uid=`, cleanup's `message-id=`), or any line
    /// stamped after it once the wait is over, belongs to a new lifecycle
    /// of the same queue ID (IDs are reused): the old one is closed first.
    fn msg(
        &mut self,
        key: MsgKey,
        ctx: &LineCtx<'_>,
        starts: bool,
        out: &mut Vec<Row>,
    ) -> &mut Msg {
        if let Some((removed_us, removed_at)) =
            self.state.messages.get(&key).and_then(|m| m.removed)
            && ctx.time_us > removed_us
            && (starts || ctx.now_us >= removed_at.saturating_add(GRACE_US))
        {
            self.close(key, out);
        }
        let m = self.state.messages.entry(key).or_insert_with(|| {
            Slot::new(Msg {
                qid: key.1.as_str().into(),
                first_us: ctx.now_us,
                ..Msg::default()
            })
        });
        m.last_us = m.last_us.max(ctx.now_us);
        m
    }

    /// Emits what the lifecycle of `key` holds, if it is settled whom its
    /// events count for; follows its hand-offs.
    fn release(&mut self, key: MsgKey, out: &mut Vec<Row>) {
        let now = self.now_of(key.0);
        let Some(m) = self.state.messages.get_mut(&key) else {
            return;
        };
        if m.held.is_empty() || m.attribution(now).is_none() {
            return;
        }
        let held = std::mem::take(&mut m.held);
        let Some(origin) = m.attribution(now) else {
            m.held = held;
            return;
        };
        let host = &self.state.hosts[key.0 as usize];
        // A copy counted as its own may still be claimed: keep what it
        // gives out (see `Msg::released`).
        let keep = m.link == Link::Own && now < m.first_us.saturating_add(RECLAIM_US);
        let mut kept = Vec::new();
        let mut handoffs = Vec::new();
        for p in held {
            if p.handoff.is_some() {
                handoffs.push(p);
            } else {
                if keep {
                    kept.push(p.clone());
                }
                self.em.emit(host, Some(&m.qid), origin, p, out);
            }
        }
        let origin = (!handoffs.is_empty()).then(|| origin.clone());
        m.released.append(&mut kept);
        for p in handoffs {
            self.handoff(key, origin.clone(), p, out);
        }
    }

    /// A logged address as a mailbox's: `None` for the null sender, and
    /// for one longer than any mailbox's (see [`Correlator::sender`]).
    /// An extension is dropped, as for [`Correlator::sender`].
    fn address(&self, raw: &[u8]) -> Option<Text> {
        let mut s = self.scratch.borrow_mut();
        (normalize_logged_address_into(raw, &self.default_domain, &mut s) && s.len() <= MAX_ADDRESS)
            .then(|| {
                strip_extension(&mut s, &self.delimiters);
                Text::from(s.as_str())
            })
    }

    /// An envelope sender from `from=<...>`, as the mailbox it counts for:
    /// Postfix delivers `judy+tag@` to judy, and what judy sent as
    /// `judy+tag@` is hers to see (recipients stay as logged: they are
    /// records, not owners).
    fn sender(&self, from: &[u8]) -> Sender {
        let mut s = self.scratch.borrow_mut();
        if !normalize_logged_address_into(from, &self.default_domain, &mut s) {
            Sender::Null
        } else if s.len() > MAX_ADDRESS {
            Sender::Bad
        } else {
            strip_extension(&mut s, &self.delimiters);
            Sender::Addr(Text::from(s.as_str()))
        }
    }

    fn postfix_event(&mut self, ctx: &LineCtx<'_>, ev: Event<'_>, out: &mut Vec<Row>) {
        match ev {
            Event::Client {
                qid,
                client_ip,
                client_name: _,
                sasl_user,
                orig_queue_id,
                orig_client_ip,
            } => {
                let key = (ctx.host, Qid::new(qid));
                let line_key = self.line_key(ctx);
                let internal = self.is_internal(client_ip);
                let user = sasl_user.and_then(|u| self.address(u));
                let xforward = orig_queue_id.filter(|o| postfix::is_qid(o)).map(Qid::new);
                let m = self.msg(key, ctx, true, out);
                m.started = true;
                m.own.client_ip = Some(lossy_text(client_ip));
                m.own.sasl_user = user;
                if m.own.sasl_user.is_some() {
                    m.auth_line = Some((line_key, ctx.time_us));
                } else if internal && m.link == Link::None {
                    // A content filter's copy comes back this way, with no
                    // AUTH; so does mail from a web application on the mail
                    // host. Either waits for a hand-off to claim it.
                    m.link = Link::Awaiting;
                    m.xforward = xforward;
                    // XFORWARD names the client the original came from:
                    // the copy's own client, should no hand-off claim it.
                    if let Some(ip) = orig_client_ip {
                        m.own.client_ip = Some(lossy_text(ip));
                    }
                }
                let offer = m.claimable(ctx.now_us);
                self.auth_rcv(key, true, out);
                if offer {
                    self.offer_copy(key, out);
                }
                self.release(key, out);
            }
            Event::Pickup { qid, uid, from } => {
                let key = (ctx.host, Qid::new(qid));
                let sender = self.sender(from);
                let m = self.msg(key, ctx, true, out);
                m.started = true;
                m.own.client_ip = Some(format!("local (uid {})", lossy(uid)).into());
                set_sender(&mut m.own.sender, sender);
                self.auth_rcv(key, false, out);
                self.release(key, out);
            }
            Event::MessageId { qid, id } => {
                let key = (ctx.host, Qid::new(qid));
                let m = self.msg(key, ctx, true, out);
                if id.len() > 2 && m.msgid.is_none() {
                    m.msgid = Some(xxh3_64(id));
                    if m.claimable(ctx.now_us) {
                        self.offer_copy(key, out);
                    }
                    if !self.state.handoffs.is_empty() {
                        self.retry_handoffs(key, out);
                    }
                }
            }
            Event::QueueActive { qid, from, .. } => {
                let key = (ctx.host, Qid::new(qid));
                let sender = self.sender(from);
                let m = self.msg(key, ctx, false, out);
                let offer = m.own.sender == Sender::Unknown && m.claimable(ctx.now_us);
                set_sender(&mut m.own.sender, sender);
                self.auth_rcv(key, false, out);
                if offer {
                    self.offer_copy(key, out);
                }
                self.release(key, out);
            }
            Event::Expired { qid, from } => {
                let key = (ctx.host, Qid::new(qid));
                let line_key = self.line_key(ctx);
                let sender = self.sender(from);
                let m = self.msg(key, ctx, false, out);
                set_sender(&mut m.own.sender, sender);
                // Settled a moment later (see `sweep`): a deferral logged in
                // the same second may be read after this line.
                m.expired = Some(Expiry {
                    key: line_key,
                    time_us: ctx.time_us,
                    at_us: ctx.now_us,
                });
                if m.claimable(ctx.now_us) {
                    self.offer_copy(key, out);
                }
                self.release(key, out);
            }
            Event::Removed { qid } => {
                let key = (ctx.host, Qid::new(qid));
                let m = self.msg(key, ctx, false, out);
                if m.removed.is_none() {
                    m.removed = Some((ctx.time_us, ctx.now_us));
                }
                if m.claimable(ctx.now_us) {
                    self.offer_copy(key, out);
                }
            }
            Event::Delivery {
                qid,
                to,
                relay,
                dsn,
                status,
                response,
                ..
            } => {
                let key = (ctx.host, Qid::new(qid));
                let nets = &self.em.settings.internal_relays;
                let (relay_text, internal) = self.relays.get(relay, |r| relay_is_internal(nets, r));
                let kind = match status {
                    // A content filter's refusal, answered with 2.7.x
                    // (Proxmox's `250 2.7.0 BLOCKED`, amavis's `250 2.7.0
                    // Ok, discarded`) or 5.7.x.
                    Status::Sent if internal && dsn.starts_with(b"2.7.") => Kind::Blocked,
                    Status::Bounced if internal && dsn.starts_with(b"5.7.") => Kind::Blocked,
                    Status::Sent => Kind::Sent,
                    Status::Bounced => Kind::Bounced,
                    Status::Deferred => Kind::Deferred,
                };
                let handoff = (internal && kind == Kind::Sent).then(|| {
                    Box::new(HandoffLine {
                        candidates: candidates(response),
                        late: ctx.time_us.saturating_add(LATE_US) < ctx.now_us,
                    })
                });
                let pending = Pending {
                    relay: Some(relay_text),
                    recipient: normalize_logged_address(to, &self.default_domain),
                    dsn: Some(self.dsns.get(dsn)),
                    response: Some(lossy(response)),
                    handoff,
                    ..Pending::new(self.line_key(ctx), ctx.time_us, kind)
                };
                let m = self.msg(key, ctx, false, out);
                // Who is still deferred, for a later `expired`.
                if let Some(r) = &pending.recipient {
                    if kind == Kind::Deferred {
                        if !m.deferred.contains(r) {
                            m.deferred.push(r.clone());
                        }
                    } else if !m.deferred.is_empty() {
                        m.deferred.retain(|d| d != r);
                    }
                }
                m.held.push(pending);
                if m.claimable(ctx.now_us) {
                    self.offer_copy(key, out);
                }
                self.release(key, out);
            }
            Event::Reject {
                qid,
                client_ip,
                reply,
                from,
                to,
                sasl_user,
                ..
            } => {
                let origin = Origin {
                    sender: from.map_or(Sender::Null, |f| self.sender(f)),
                    sasl_user: sasl_user.and_then(|u| self.address(u)),
                    client_ip: client_ip.map(lossy_text),
                };
                let p = Pending {
                    recipient: to.and_then(|t| normalize_logged_address(t, &self.default_domain)),
                    response: Some(lossy(reply)),
                    ..Pending::new(self.line_key(ctx), ctx.time_us, Kind::AuthBlk)
                };
                let qid: Text = qid.map_or_else(|| self.em.noqueue.clone(), |q| lossy(q).into());
                self.em.emit(
                    &self.state.hosts[ctx.host as usize],
                    Some(&qid),
                    &origin,
                    p,
                    out,
                );
            }
            // Only for local recipients (see `inbound.rs`).
            Event::Kept { .. } | Event::Subject { .. } => {}
            Event::SaslFailed {
                client_ip,
                what,
                sasl_user,
            } => {
                let fail = SaslFail {
                    host: ctx.host,
                    ip: lossy_text(client_ip),
                    key: self.line_key(ctx),
                    time_us: ctx.time_us,
                    at_us: ctx.now_us,
                    what: lossy(what),
                };
                let named = sasl_user.and_then(|u| self.address(u));
                // Dovecot's verdict on the same attempt names the user; when
                // Postfix names it too, the verdict is used up all the same,
                // so it cannot name a later, nameless failure. Of several,
                // the earliest: the choice must not depend on the order in
                // which lines of the same moment were read.
                let found = self
                    .state
                    .auth_fails
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| {
                        a.host == fail.host
                            && a.ip == fail.ip
                            && a.time_us >= fail.time_us - SASL_JOIN_BEFORE_US
                            && a.time_us <= fail.time_us + SASL_JOIN_AFTER_US
                            && named.as_ref().is_none_or(|n| *n == a.user)
                    })
                    .min_by_key(|(_, a)| a.time_us)
                    .map(|(i, _)| i);
                let verdict = found.map(|i| self.state.auth_fails.remove(i));
                match named.or(verdict.map(|a| a.user)) {
                    Some(user) => self.emit_sasl_failure(fail, user, out),
                    None => self.state.sasl_fails.push(fail),
                }
            }
        }
    }

    fn dovecot_auth_failure(
        &mut self,
        ctx: &LineCtx<'_>,
        f: dovecot::AuthFailure<'_>,
        out: &mut Vec<Row>,
    ) {
        let Some(user) = self.address(f.user) else {
            return;
        };
        let (host, time_us) = (ctx.host, ctx.time_us);
        let ip = lossy_text(f.ip);
        let own_file = self.state.hosts[host as usize].is_empty();
        let found = self
            .state
            .sasl_fails
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.ip == ip
                    && (s.host == host || own_file)
                    && time_us >= s.time_us - SASL_JOIN_BEFORE_US
                    && time_us <= s.time_us + SASL_JOIN_AFTER_US
            })
            .min_by_key(|(_, s)| s.time_us)
            .map(|(i, _)| i);
        match found {
            Some(i) => {
                let s = self.state.sasl_fails.remove(i);
                self.emit_sasl_failure(s, user, out);
            }
            None => self.state.auth_fails.push(AuthFail {
                host,
                ip,
                user,
                time_us,
                at_us: ctx.now_us,
            }),
        }
    }

    fn emit_sasl_failure(&mut self, f: SaslFail, user: Text, out: &mut Vec<Row>) {
        let origin = Origin {
            sender: Sender::Addr(user),
            sasl_user: None,
            client_ip: Some(f.ip),
        };
        let p = Pending {
            response: Some(f.what),
            ..Pending::new(f.key, f.time_us, Kind::AuthBlk)
        };
        let host = &self.state.hosts[f.host as usize];
        self.em
            .emit(host, Some(&self.em.noqueue.clone()), &origin, p, out);
    }

    /// Counts Auth_rcv for an authenticated submission: for the user when its
    /// `client=` line is read (`at_client_line`), and for the envelope sender,
    /// when that is another mailbox, as soon as the sender is known. Both rows
    /// carry the time of the `client=` line.
    fn auth_rcv(&mut self, key: MsgKey, at_client_line: bool, out: &mut Vec<Row>) {
        let Some(m) = self.state.messages.get_mut(&key) else {
            return;
        };
        let (Some((line_key, time_us)), Some(user)) = (m.auth_line, m.own.sasl_user.clone()) else {
            return;
        };
        if m.own.sender != Sender::Unknown {
            m.auth_line = None;
        }
        let host = &self.state.hosts[key.0 as usize];
        let p = Pending::new(line_key, time_us, Kind::AuthRcv);
        if at_client_line {
            let as_user = Origin {
                sender: Sender::Addr(user.clone()),
                sasl_user: None,
                client_ip: m.own.client_ip.clone(),
            };
            self.em.emit(host, Some(&m.qid), &as_user, p.clone(), out);
        }
        if let Sender::Addr(s) = &m.own.sender
            && *s != user
        {
            let as_sender = Origin {
                sender: m.own.sender.clone(),
                sasl_user: None,
                client_ip: m.own.client_ip.clone(),
            };
            let p = Pending {
                key: mix(line_key, 1),
                ..p
            };
            self.em.emit(host, Some(&m.qid), &as_sender, p, out);
        }
    }
}

fn set_sender(s: &mut Sender, from: Sender) {
    if *s == Sender::Unknown {
        *s = from;
    }
}

/// Combines a key with a discriminator (recipient hash, role).
fn mix(key: i64, extra: u64) -> i64 {
    xxh3_64_with_seed(&key.to_le_bytes(), extra) as i64
}

/// Log bytes as text; invalid UTF-8 becomes U+FFFD. (Checking first is
/// much faster than the lossy decoder on the valid text that is the rule.)
pub(crate) fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Like [`lossy`], straight into shared text (one allocation, not two).
pub(crate) fn lossy_text(b: &[u8]) -> Text {
    match std::str::from_utf8(b) {
        Ok(s) => Text::from(s),
        Err(_) => Text::from(String::from_utf8_lossy(b).as_ref()),
    }
}

/// An unrecognised line as shown in the summary: lossy text, cut short, and
/// never a password Dovecot may have logged.
fn example_text(line: &[u8]) -> String {
    let cut = memmem::find(line, b"given password").unwrap_or(line.len());
    let end = cut.min(EXAMPLE_BYTES);
    let mut s = String::from_utf8_lossy(&line[..end]).into_owned();
    if end < line.len() {
        s.push_str(" [...]");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    pub(super) fn settings() -> Settings {
        Settings {
            local: LocalDomains::new(&[".example.edu".into()], "example.edu"),
            internal_relays: vec!["127.0.0.0/8".parse().unwrap()],
            tz: chrono_tz::Asia::Taipei,
            webmail_networks: vec![],
            agent: "default".into(),
        }
    }

    pub(super) fn clock() -> Clock {
        Clock::new(
            chrono_tz::Asia::Taipei,
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            None,
        )
    }

    /// Feeds lines (and the end of input); returns (mailbox, kind, recipient) per row.
    pub(super) fn run(lines: &str) -> (Vec<(String, Kind, Option<String>)>, Correlator) {
        let mut c = Correlator::new(settings());
        let mut clk = clock();
        let mut out = Rows::default();
        for l in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            c.feed(&mut clk, l.as_bytes(), &mut out);
        }
        c.finish(&mut out);
        let v = out
            .smtp
            .iter()
            .map(|r| (r.mailbox.to_string(), r.kind, r.recipient.clone()))
            .collect();
        (v, c)
    }

    pub(super) fn count(
        rows: &[(String, Kind, Option<String>)],
        mailbox: &str,
        kind: Kind,
    ) -> usize {
        rows.iter()
            .filter(|r| r.0 == mailbox && r.1 == kind)
            .count()
    }

    const BOUNCE: &str = "
        Nov  3 10:40:57 mail postfix/submission/smtpd[9708]: connect from some.domain.name[1.2.3.4]
        Nov  3 10:40:57 mail postfix/submission/smtpd[9708]: 776E41855DB2: client=some.domain.name[1.2.3.4], sasl_method=PLAIN, sasl_username=alice@example.edu
        Nov  3 10:40:57 mail postfix/cleanup[9716]: 776E41855DB2: message-id=<ca10035e@mail.example.edu>
        Nov  3 10:40:57 mail postfix/qmgr[1005]: 776E41855DB2: from=<alice@example.edu>, size=391, nrcpt=2 (queue active)
        Nov  3 10:40:57 mail postfix/submission/smtpd[9708]: disconnect from some.domain.name[1.2.3.4] ehlo=2 auth=1 mail=1 rcpt=2 data=1 quit=1 commands=8
        Nov  3 10:40:59 mail postfix/smtp[9890]: 776E41855DB2: to=<invalid.email@example.com>, relay=mx.example.com[11.22.33.44]:25, delay=1.9, delays=0/0/1.5/0.37, dsn=5.1.1, status=bounced (host mx.example.com[11.22.33.44] said: 550 5.1.1 <invalid.email@example.com> User unknown (in reply to RCPT TO command))
        Nov  3 10:40:59 mail postfix/smtp[9891]: 776E41855DB2: to=<ok@example.com>, relay=mx.example.com[11.22.33.44]:25, delay=1.9, delays=0/0/1.5/0.37, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4F00)
        Nov  3 10:40:59 mail postfix/cleanup[9716]: A48191855DA0: message-id=<20261103104059.A48191855DA0@mail.example.edu>
        Nov  3 10:40:59 mail postfix/qmgr[1005]: A48191855DA0: from=<>, size=3147, nrcpt=1 (queue active)
        Nov  3 10:40:59 mail postfix/bounce[9719]: 776E41855DB2: sender non-delivery notification: A48191855DA0
        Nov  3 10:40:59 mail postfix/qmgr[1005]: 776E41855DB2: removed
        Nov  3 10:40:59 mail postfix/local[9720]: A48191855DA0: to=<alice@example.edu>, relay=local, delay=0.03, delays=0.01/0/0/0.02, dsn=2.0.0, status=sent (delivered to mailbox)
        Nov  3 10:40:59 mail postfix/qmgr[1005]: A48191855DA0: removed
    ";

    #[test]
    fn bounce_and_its_notice() {
        let (rows, c) = run(BOUNCE);
        let a = "alice@example.edu";
        assert_eq!(count(&rows, a, Kind::AuthRcv), 1);
        assert_eq!(count(&rows, a, Kind::Bounced), 1);
        assert_eq!(
            count(&rows, a, Kind::Sent),
            1,
            "the notice (from=<>) counts for nobody"
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(c.stats.lines_unrecognised, 0);
        assert_eq!(c.stats.lines_read, 13);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn response_and_client_are_kept() {
        let mut c = Correlator::new(settings());
        let mut clk = clock();
        let mut out = Rows::default();
        for l in BOUNCE.lines().map(str::trim).filter(|l| !l.is_empty()) {
            c.feed(&mut clk, l.as_bytes(), &mut out);
        }
        let b = out.smtp.iter().find(|r| r.kind == Kind::Bounced).unwrap();
        assert_eq!(
            b.response.as_deref(),
            Some(
                "host mx.example.com[11.22.33.44] said: 550 5.1.1 <invalid.email@example.com> User unknown (in reply to RCPT TO command)"
            )
        );
        assert_eq!(b.sender_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(b.queue_id.as_deref(), Some("776E41855DB2"));
        assert_eq!(b.relay.as_deref(), Some("mx.example.com[11.22.33.44]:25"));
        assert_eq!(b.day, 20261103);
        assert_eq!(&*b.host, "mail");
    }

    #[test]
    fn deferred_then_sent_and_expired() {
        let (rows, _) = run("
            Nov  3 10:00:00 mail postfix/pickup[1]: AAAA1: uid=0 from=<bob>
            Nov  3 10:00:00 mail postfix/qmgr[2]: AAAA1: from=<bob@example.edu>, size=300, nrcpt=3 (queue active)
            Nov  3 10:00:01 mail postfix/smtp[3]: AAAA1: to=<a@slow.test>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to slow.test[192.0.2.1]:25: Connection refused)
            Nov  3 10:00:01 mail postfix/smtp[4]: AAAA1: to=<b@slow.test>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to slow.test[192.0.2.1]:25: Connection refused)
            Nov  3 10:00:01 mail postfix/smtp[5]: AAAA1: to=<c@fine.test>, relay=fine.test[192.0.2.2]:25, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 ok)
            Nov  3 10:10:00 mail postfix/qmgr[2]: AAAA1: from=<bob@example.edu>, size=300, nrcpt=3 (queue active)
            Nov  3 10:10:01 mail postfix/smtp[3]: AAAA1: to=<a@slow.test>, relay=slow.test[192.0.2.1]:25, delay=601, delays=600/0/0/1, dsn=2.0.0, status=sent (250 finally)
            Nov  3 10:10:01 mail postfix/smtp[4]: AAAA1: to=<b@slow.test>, relay=none, delay=601, delays=601/0/0/0, dsn=4.4.1, status=deferred (connect to slow.test[192.0.2.1]:25: Connection refused)
            Nov  4 10:00:00 mail postfix/qmgr[2]: AAAA1: from=<bob@example.edu>, status=expired, returned to sender
            Nov  4 10:00:00 mail postfix/qmgr[2]: AAAA1: removed
        ");
        let b = "bob@example.edu";
        assert_eq!(count(&rows, b, Kind::Deferred), 3);
        assert_eq!(count(&rows, b, Kind::Sent), 2);
        assert_eq!(count(&rows, b, Kind::AuthRcv), 0);
        let expired: Vec<_> = rows.iter().filter(|r| r.1 == Kind::Expired).collect();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].2.as_deref(), Some("b@slow.test"));
    }

    #[test]
    fn content_filter_is_followed_and_counted_once() {
        // The re-injected NEW logs client= before OLD logs its hand-off.
        let (rows, c) = run("
            Nov  3 11:00:00 mail postfix/submission/smtpd[10]: BBBB1: client=pc[192.0.2.7], sasl_method=PLAIN, sasl_username=carol@example.edu
            Nov  3 11:00:00 mail postfix/qmgr[2]: BBBB1: from=<carol@example.edu>, size=300, nrcpt=1 (queue active)
            Nov  3 11:00:01 mail postfix/smtpd[11]: CCCC2: client=localhost[127.0.0.1]
            Nov  3 11:00:01 mail postfix/qmgr[2]: CCCC2: from=<carol@example.edu>, size=400, nrcpt=1 (queue active)
            Nov  3 11:00:01 mail postfix/smtp[12]: BBBB1: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:10025, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as CCCC2)
            Nov  3 11:00:01 mail postfix/qmgr[2]: BBBB1: removed
            Nov  3 11:00:02 mail postfix/smtp[13]: CCCC2: to=<x@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
            Nov  3 11:00:02 mail postfix/qmgr[2]: CCCC2: removed
        ");
        let m = "carol@example.edu";
        assert_eq!(count(&rows, m, Kind::Sent), 1);
        assert_eq!(count(&rows, m, Kind::AuthRcv), 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn content_filter_with_handoff_first_and_origin_kept() {
        let mut c = Correlator::new(settings());
        let mut clk = clock();
        let mut out = Rows::default();
        for l in "
            Nov  3 11:00:00 mail postfix/smtpd[10]: BBBB1: client=pc[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu
            Nov  3 11:00:00 mail postfix/qmgr[2]: BBBB1: from=<carol@example.edu>, size=300, nrcpt=1 (queue active)
            Nov  3 11:00:01 mail postfix/smtp[12]: BBBB1: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:10025, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10026): 250 2.0.0 Ok: queued as CCCC2)
            Nov  3 11:00:01 mail postfix/smtpd[11]: CCCC2: client=localhost[127.0.0.1]
            Nov  3 11:00:01 mail postfix/qmgr[2]: CCCC2: from=<carol@example.edu>, size=400, nrcpt=1 (queue active)
            Nov  3 11:00:02 mail postfix/smtp[13]: CCCC2: to=<x@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
        ".lines().map(str::trim).filter(|l| !l.is_empty()) {
            c.feed(&mut clk, l.as_bytes(), &mut out);
        }
        // Sent for the sender and for the authenticated user, from the
        // original client, without waiting for the end of input.
        let sent: Vec<_> = out.smtp.iter().filter(|r| r.kind == Kind::Sent).collect();
        assert_eq!(sent.len(), 2);
        assert!(
            sent.iter()
                .all(|r| r.sender_ip.as_deref() == Some("192.0.2.7"))
        );
        let mut who: Vec<_> = sent.iter().map(|r| &*r.mailbox).collect();
        who.sort();
        assert_eq!(who, ["alice@example.edu", "carol@example.edu"]);
        assert_ne!(sent[0].key, sent[1].key);
        assert_eq!(
            out.smtp.iter().filter(|r| r.kind == Kind::AuthRcv).count(),
            2
        );
    }

    #[test]
    fn handoff_whose_id_never_appears_is_a_delivery() {
        const LINES: &str = "
            Nov  3 11:00:00 mail postfix/smtpd[10]: BBBB1: client=pc[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu
            Nov  3 11:00:00 mail postfix/qmgr[2]: BBBB1: from=<alice@example.edu>, size=300, nrcpt=1 (queue active)
            Nov  3 11:00:01 mail postfix/smtp[12]: BBBB1: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9999ABCD)
            Nov  3 11:00:01 mail postfix/qmgr[2]: BBBB1: removed
        ";
        // The input ends inside the window: the copy may still come with
        // the next lines, so nothing is counted yet, and it is in flight.
        let (rows, c) = run(LINES);
        assert_eq!(count(&rows, "alice@example.edu", Kind::Sent), 0);
        assert_eq!(c.stats.handoffs_waiting, 1);
        // A minute of log later with no copy, it was a delivery.
        let later =
            format!("{LINES}\n Nov  3 11:01:05 mail postfix/smtpd[10]: connect from pc[192.0.2.7]");
        let (rows, c) = run(&later);
        assert_eq!(count(&rows, "alice@example.edu", Kind::Sent), 1);
        assert_eq!(c.stats.handoffs_waiting, 0);
    }

    #[test]
    fn queue_id_reuse_and_hosts() {
        let (rows, _) = run("
            Nov  3 12:00:00 mx1 postfix/qmgr[2]: BABABABABA: from=<alice@example.edu>, size=1, nrcpt=1 (queue active)
            Nov  3 12:00:00 mx2 postfix/qmgr[2]: BABABABABA: from=<bob@example.edu>, size=1, nrcpt=1 (queue active)
            Nov  3 12:00:01 mx1 postfix/smtp[3]: BABABABABA: to=<x@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
            Nov  3 12:00:01 mx1 postfix/qmgr[2]: BABABABABA: removed
            Nov  3 12:01:00 mx1 postfix/qmgr[2]: BABABABABA: from=<carol@example.edu>, size=1, nrcpt=1 (queue active)
            Nov  3 12:01:01 mx1 postfix/smtp[3]: BABABABABA: to=<y@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.0.0, status=bounced (550 no)
            Nov  3 12:01:02 mx2 postfix/smtp[3]: BABABABABA: to=<z@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
        ");
        assert_eq!(count(&rows, "alice@example.edu", Kind::Sent), 1);
        assert_eq!(count(&rows, "carol@example.edu", Kind::Bounced), 1);
        assert_eq!(count(&rows, "bob@example.edu", Kind::Sent), 1);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn lines_out_of_order_wait_for_the_sender() {
        let (rows, _) = run("
            Nov  3 12:00:01 mail postfix/smtp[3]: DDDD1: to=<x@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
            Nov  3 12:00:00 mail postfix/qmgr[2]: DDDD1: from=<alice@example.edu>, size=1, nrcpt=1 (queue active)
            Nov  3 12:00:00 mail postfix/smtpd[1]: DDDD1: client=pc[192.0.2.5]
            Nov  3 12:00:02 mail postfix/qmgr[2]: DDDD1: removed
        ");
        assert_eq!(count(&rows, "alice@example.edu", Kind::Sent), 1);
    }

    #[test]
    fn rejects_and_failed_auth() {
        let (rows, c) = run("
            Nov  3 13:00:00 mail postfix/smtpd[8]: NOQUEUE: reject: RCPT from x[192.0.2.8]: 454 4.7.1 <a@r.test>: Relay access denied; from=<dave@cs.example.edu> to=<a@r.test> proto=ESMTP helo=<x>
            Nov  3 13:00:00 mail postfix/smtpd[8]: NOQUEUE: reject: RCPT from x[192.0.2.8]: 454 4.7.1 <b@r.test>: Relay access denied; from=<dave@cs.example.edu> to=<b@r.test> proto=ESMTP helo=<x>
            Nov  3 13:00:00 mail postfix/smtpd[8]: NOQUEUE: reject: RCPT from x[192.0.2.8]: 454 4.7.1 <b@r.test>: Relay access denied; from=<spam@elsewhere.test> to=<b@r.test> proto=ESMTP helo=<x>
            Nov  3 13:00:00 mail postfix/smtpd[8]: NOQUEUE: reject_warning: RCPT from x[192.0.2.8]: 454 4.7.1 test; from=<dave@cs.example.edu> to=<c@r.test> proto=ESMTP helo=<x>
            Nov  3 13:00:05 mail dovecot: auth: passwd-file(carol@example.edu,192.0.2.9): Password mismatch
            Nov  3 13:00:07 mail postfix/submission/smtpd[9]: warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: authentication failure
            Nov  3 13:00:08 mail postfix/smtpd[9]: warning: unknown[192.0.2.10]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=bob
            Nov  3 13:00:09 mail postfix/smtpd[9]: warning: unknown[192.0.2.11]: SASL LOGIN authentication failed: UGFzc3dvcmQ6
        ");
        assert_eq!(count(&rows, "dave@cs.example.edu", Kind::AuthBlk), 2);
        assert_eq!(count(&rows, "carol@example.edu", Kind::AuthBlk), 1);
        assert_eq!(count(&rows, "bob@example.edu", Kind::AuthBlk), 1);
        assert_eq!(rows.len(), 4);
        // The non-local sender's reject is not ours; the nameless failure
        // has no mailbox.
        assert_eq!(c.stats.unattributed.not_local, 1);
        assert_eq!(c.stats.unattributed.auth_no_user, 1);
        assert_eq!(c.stats.unattributed.total(), 2);
    }

    #[test]
    fn interrupted_run_resumes_exactly() {
        let lines: Vec<&str> = BOUNCE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let (whole, _) = run(BOUNCE);
        for cut in 0..lines.len() {
            let mut c = Correlator::new(settings());
            let mut clk = clock();
            let mut out = Rows::default();
            for l in &lines[..cut] {
                c.feed(&mut clk, l.as_bytes(), &mut out);
            }
            let saved = c.snapshot();
            let year = clk.year;
            let mut c = Correlator::restore(settings(), &saved).unwrap();
            let mut clk = Clock::new(
                chrono_tz::Asia::Taipei,
                NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
                year,
            );
            for l in &lines[cut..] {
                c.feed(&mut clk, l.as_bytes(), &mut out);
            }
            c.finish(&mut out);
            let got: Vec<_> = out
                .smtp
                .iter()
                .map(|r| (r.mailbox.to_string(), r.kind, r.recipient.clone()))
                .collect();
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn bad_input_is_counted_not_fatal() {
        let mut c = Correlator::new(settings());
        let mut clk = clock();
        let mut out = Rows::default();
        let garbage: [&[u8]; 6] = [
            b"\x00\x01\x02\xff\xfe binary",
            b"Nov  3 13:00:00 mail postfix/smtp[3]: EEEE1: to=<a@b.test>, relay=none, del",
            b"Nov  3 13:00:00 mail postfix/smtp[3]: EEEE1: to=<a@b.test>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to b.test[192.0.2.1]:25: Connection re",
            b"Nov  3 13:00:00 mail postfix/qmgr[2]: STATISTICS1: x",
            b"Nov  3 13:00:00 mail opendkim[289]: 8BD903012026: DKIM-Signature field added",
            b"Nov  3 13:00:00 mail postfix/smtpd[1]: \xe4\xb8\xad\xff\xfe weird",
        ];
        for g in garbage {
            c.feed(&mut clk, g, &mut out);
        }
        assert_eq!(c.stats.lines_read, 6);
        assert_eq!(c.stats.lines_unrecognised, 4);
        assert_eq!(c.stats.lines_used, 1);
        assert_eq!(c.stats.lines_other_programs, 1);
        assert_eq!(c.stats.examples.len(), 4);
    }
}
