//! Lifecycles: one message per (host, queue ID), and what waits on it.
//!
//! A message's events are held until it is settled whom they count for
//! ([`Msg::attribution`]): its envelope sender is known, its own first line
//! (`client=`, pickup's `uid=`) has been read or had time to arrive, and it
//! is not waiting to be claimed as a content filter's copy. Until then they
//! wait in [`Msg::held`], in the order they arrived, so lines read in any
//! order within a few seconds give the same rows.

use super::*;

/// A queue ID, inline so map lookups need no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Qid {
    len: u8,
    bytes: [u8; 24],
}

impl Qid {
    pub(super) fn new(s: &[u8]) -> Qid {
        let mut bytes = [0u8; 24];
        let n = s.len().min(24);
        bytes[..n].copy_from_slice(&s[..n]);
        Qid {
            len: n as u8,
            bytes,
        }
    }

    pub(super) fn as_str(&self) -> &str {
        // Queue IDs are checked to be ASCII alphanumerics before they get here.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl std::fmt::Debug for Qid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Qid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Qid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Qid, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Qid::new(s.as_bytes()))
    }
}

/// (host number, queue ID): queue IDs are unique per host only.
pub(super) type MsgKey = (u32, Qid);

/// The envelope sender as far as it is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Sender {
    /// No `from=` seen yet.
    #[default]
    Unknown,
    /// `from=<>`: a bounce or notification, which counts for nobody.
    Null,
    /// Longer than any mailbox's address can be: counts for nobody.
    Bad,
    Addr(Text),
}

/// Who a message's events count for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Origin {
    pub(super) sender: Sender,
    pub(super) sasl_user: Option<Text>,
    pub(super) client_ip: Option<Text>,
}

/// An event waiting for its mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) key: i64,
    pub(super) time_us: i64,
    pub(super) kind: Kind,
    pub(super) relay: Option<Text>,
    pub(super) recipient: Option<String>,
    pub(super) dsn: Option<Text>,
    pub(super) response: Option<String>,
    /// Set for a hand-off to a content filter: then this is not a row but
    /// a link to follow once the message is settled (see [`super::links`]);
    /// the row only if no copy ever claims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) handoff: Option<Box<HandoffLine>>,
}

/// What a hand-off line says beyond its row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HandoffLine {
    /// Queue IDs the filter's reply may name for the copy (`queued as
    /// NEWID`, `sent <id> <NEWID>`...): every token of the reply that could
    /// be one. Only one that turns out to be a copy's ID links.
    pub(super) candidates: Vec<Qid>,
    /// The line was older than its host's log had already reached when it
    /// was read (read again, or from a file read out of order).
    pub(super) late: bool,
}

impl Pending {
    pub(super) fn new(key: i64, time_us: i64, kind: Kind) -> Pending {
        Pending {
            key,
            time_us,
            kind,
            relay: None,
            recipient: None,
            dsn: None,
            response: None,
            handoff: None,
        }
    }
}

/// Whether a message is a content filter's copy of another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Link {
    /// Not a copy, as far as is known.
    #[default]
    None,
    /// Came from an internal relay without SMTP AUTH: it may be a filter's
    /// re-injection whose hand-off has not been read yet, so its events
    /// wait, up to [`LINK_WINDOW_US`] of log time from its first line.
    Awaiting,
    /// A hand-off claimed it: its events count for the original's origin,
    /// or for its own sender when the original's was never read (the
    /// original began before the input).
    Claimed {
        orig: MsgKey,
        origin: Option<Origin>,
    },
    /// Waited its window, or the input ended, with no hand-off claiming
    /// it: a submission of its own.
    Own,
}

/// qmgr's `status=expired` line, settled a little later: a deferral of the
/// same moment may be read after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Expiry {
    pub(super) key: i64,
    pub(super) time_us: i64,
    /// The host's clock when it was read.
    pub(super) at_us: i64,
}

/// One queue-ID lifecycle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Msg {
    /// The queue ID as text, made once for all the rows of the message.
    pub(super) qid: Text,
    /// The host's clock at the first line read: the waits for the
    /// message's own first line and for a hand-off run from it.
    pub(super) first_us: i64,
    /// The host's clock at the latest line, for forgetting lifecycles that
    /// never end.
    pub(super) last_us: i64,
    /// What this message's own lines say.
    pub(super) own: Origin,
    /// Its own first line (`client=`, or pickup's `uid=`) was read.
    pub(super) started: bool,
    pub(super) link: Link,
    /// XFORWARD's `orig_queue_id=` on a copy's `client=` line.
    pub(super) xforward: Option<Qid>,
    /// A hash of cleanup's `message-id=`, which a content filter's copy
    /// shares with the original.
    pub(super) msgid: Option<u64>,
    /// The `client=` line of an authenticated submission whose envelope
    /// sender was not known yet: (key, time), for the sender's Auth_rcv.
    pub(super) auth_line: Option<(i64, i64)>,
    /// Recipients whose latest status is `deferred`: qmgr's `expired` line
    /// names none, so this is how it is known who expired.
    pub(super) deferred: Vec<String>,
    pub(super) expired: Option<Expiry>,
    /// `removed` (qmgr: done; postsuper: deleted): (the line's own time,
    /// the host's clock then). The lifecycle is closed a little later, so
    /// that its lines read after `removed` still join it.
    pub(super) removed: Option<(i64, i64)>,
    /// Events waiting for the sender or the link, in arrival order.
    pub(super) held: Vec<Pending>,
    /// A possible copy that counted as its own (its window passed, or the
    /// input ended): the events given out so, while a hand-off may still
    /// claim it. Then they are given out again for the original's origin,
    /// which adds the rows its own origin lacked (the AUTH user's) and
    /// nothing twice (the same lines' rows have the same keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) released: Vec<Pending>,
    /// What the message's lines say of it for its local recipients (see
    /// `inbound.rs`): the client's name, Message-ID, size, subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) msgid_text: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) subject: Option<String>,
    /// Rows for local recipients waiting for what the message's other
    /// lines say (its sender, Message-ID), for at most [`GRACE_US`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) inbound: Vec<crate::ingest::received::MessageRow>,
    /// The host's clock when the first of `inbound` was made.
    #[serde(default)]
    pub(super) inbound_at: i64,
}

impl Msg {
    /// Whom the events count for, once that is settled (`None`: wait).
    /// Never an origin whose sender is unknown.
    pub(super) fn attribution(&self, now_us: i64) -> Option<&Origin> {
        match &self.link {
            Link::Claimed {
                origin: Some(o), ..
            } => return Some(o),
            Link::Awaiting => return None,
            Link::None | Link::Own | Link::Claimed { origin: None, .. } => {}
        }
        if self.own.sender == Sender::Unknown {
            return None;
        }
        // Lines within a second may come in any order: an authenticated
        // submission's `client=` (which names the AUTH user and the client
        // address) may follow its deliveries. Give it the time to arrive.
        if !self.started && now_us < self.first_us.saturating_add(GRACE_US) {
            return None;
        }
        Some(&self.own)
    }

    /// Whom the events count for when nothing more will be waited for (the
    /// lifecycle closes): like [`Msg::attribution`] with every wait over.
    pub(super) fn final_attribution(&self) -> Option<&Origin> {
        match &self.link {
            Link::Claimed {
                origin: Some(o), ..
            } => Some(o),
            _ => (self.own.sender != Sender::Unknown).then_some(&self.own),
        }
    }

    /// May this message be a content filter's copy that a hand-off claims
    /// now? Those that came from an internal relay without AUTH (for a
    /// while after they counted as their own), and those whose own first
    /// line has not been read (a hand-off that names the queue ID is
    /// evidence enough).
    pub(super) fn claimable(&self, now_us: i64) -> bool {
        match self.link {
            Link::Awaiting => true,
            Link::Own => now_us < self.first_us.saturating_add(RECLAIM_US),
            Link::None => !self.started,
            Link::Claimed { .. } => false,
        }
    }
}

/// A lifecycle as the map holds it: boxed, so that the map itself stays
/// small (it is probed for nearly every Postfix line), beside the earliest
/// log time at which the sweep has anything to do with it (see
/// [`Slot::next_look`]). Any change to the lifecycle goes through
/// `DerefMut`, which makes the next sweep look at it again.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    msg: Box<Msg>,
    /// The sweep passes over the lifecycle while its host's clock is before
    /// this.
    pub(super) look_at: i64,
}

impl Slot {
    pub(super) fn new(msg: Msg) -> Slot {
        Slot {
            msg: Box::new(msg),
            look_at: i64::MIN,
        }
    }

    pub(super) fn into_msg(self) -> Msg {
        *self.msg
    }

    /// When the sweep (see `sweep.rs`) next has anything to do with a
    /// lifecycle nothing changes meanwhile: forget it when stale, close it
    /// once `removed` is old enough, end the wait for a hand-off to claim
    /// it or for `expired` to settle; every time, while it holds events and
    /// its own first line has not been read.
    pub(super) fn next_look(&self) -> i64 {
        let m = &self.msg;
        if !m.held.is_empty() && !m.started {
            return i64::MIN;
        }
        let mut at = m.last_us.saturating_add(STALE_US).saturating_add(1);
        if let Some((_, removed_at)) = m.removed {
            at = at.min(removed_at.saturating_add(GRACE_US));
        }
        if m.link == Link::Awaiting {
            at = at.min(m.first_us.saturating_add(LINK_WINDOW_US));
        }
        if let Some(e) = &m.expired {
            at = at.min(e.at_us.saturating_add(GRACE_US));
        }
        if !m.inbound.is_empty() {
            at = at.min(m.inbound_at.saturating_add(GRACE_US));
        }
        at
    }
}

impl std::ops::Deref for Slot {
    type Target = Msg;
    fn deref(&self) -> &Msg {
        &self.msg
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut Msg {
        self.look_at = i64::MIN;
        &mut self.msg
    }
}

impl Serialize for Slot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.msg.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        Msg::deserialize(d).map(Slot::new)
    }
}

/// A Sieve redirect (Dovecot's line), waiting for Postfix's delivery of
/// the copy it sent: the same Message-ID, to the same address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Redirect {
    pub(super) host: u32,
    /// The redirected message's Message-ID, hashed as `Msg::msgid`.
    pub(super) msgid: u64,
    pub(super) to: Text,
    pub(super) mailbox: Text,
    /// The host's clock when it was read.
    pub(super) at_us: i64,
}

/// A Postfix SASL failure without a user name, waiting for Dovecot's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SaslFail {
    pub(super) host: u32,
    pub(super) ip: Text,
    pub(super) key: i64,
    pub(super) time_us: i64,
    /// The host's clock when it was read.
    #[serde(default)]
    pub(super) at_us: i64,
    pub(super) what: String,
}

/// A Dovecot password failure, waiting for Postfix's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuthFail {
    pub(super) host: u32,
    pub(super) ip: Text,
    pub(super) user: Text,
    pub(super) time_us: i64,
    /// The host's clock when it was read.
    #[serde(default)]
    pub(super) at_us: i64,
}

/// Everything remembered between lines; saved with each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Host names, numbered in order of appearance.
    pub(super) hosts: Vec<Text>,
    /// Each host's clock, by host number.
    #[serde(default)]
    pub(super) clocks: Vec<HostClock>,

    #[serde(with = "as_pairs")]
    pub(super) messages: FxHashMap<MsgKey, Slot>,
    /// Hand-offs no copy has claimed yet, in the order they were made.
    #[serde(default)]
    pub(super) handoffs: Vec<Handoff>,
    /// Copies that ended unclaimed, still claimable for a while.
    #[serde(default)]
    pub(super) closed_copies: Vec<ClosedCopy>,
    pub(super) sasl_fails: Vec<SaslFail>,
    pub(super) auth_fails: Vec<AuthFail>,
    /// Dovecot sessions in flight.
    pub(super) access: AccessState,
    /// Sieve redirects whose copy's delivery is still to come.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) redirects: Vec<Redirect>,
    /// Where copies are found by what links them; derived from
    /// `messages`, made again when a state is restored.
    #[serde(skip)]
    pub(super) copies: CopyIndex,
}

/// Maps with tuple keys are stored as lists of pairs, in key order so the
/// same state always serialises the same way.
pub(super) mod as_pairs {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<V: Serialize, S: Serializer>(
        m: &FxHashMap<MsgKey, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(u32, &Qid, &V)> = m.iter().map(|((h, q), v)| (*h, q, v)).collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v.serialize(s)
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FxHashMap<MsgKey, V>, D::Error> {
        let v: Vec<(u32, Qid, V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|(h, q, v)| ((h, q), v)).collect())
    }
}
