//! Lifecycles: one message per (host, queue ID), and what waits on it.

use super::*;

/// A queue ID, inline so map lookups need no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Qid {
    pub(super) len: u8,
    pub(super) bytes: [u8; 24],
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
        }
    }
}

/// One queue-ID lifecycle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Msg {
    /// The queue ID as text, made once for all the rows of the message.
    pub(super) qid: Text,
    /// Time of the latest line, for dropping lifecycles that never end.
    pub(super) last_us: i64,
    /// What this message's own lines say.
    pub(super) own: Origin,
    /// Set when the message is a content filter's re-injection of another:
    /// then the events count for the original's sender, user and client.
    pub(super) origin: Option<Origin>,
    /// Came from an internal relay without AUTH: may be a re-injection
    /// whose hand-off line has not been read yet, so its events wait.
    pub(super) awaiting_link: bool,
    /// The `client=` line of an authenticated submission whose envelope
    /// sender was not known yet: (key, time), for the sender's Auth_rcv.
    pub(super) auth_line: Option<(i64, i64)>,
    /// Recipients whose latest status is `deferred`: qmgr's `expired` line
    /// names none, so this is how it is known who expired.
    pub(super) deferred: Vec<String>,
    /// Events waiting for the sender or the link, in arrival order.
    pub(super) held: Vec<Pending>,
}

impl Msg {
    /// Whom the events count for, once that is settled.
    pub(super) fn attribution(&self) -> Option<&Origin> {
        if let Some(o) = &self.origin {
            return Some(o);
        }
        (!self.awaiting_link && self.own.sender != Sender::Unknown).then_some(&self.own)
    }

    /// This message as the origin of a re-injected copy.
    pub(super) fn as_origin(&self) -> Origin {
        self.origin.clone().unwrap_or_else(|| self.own.clone())
    }
}

/// A hand-off to a content filter whose new queue ID has not shown up yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Handoff {
    pub(super) origin: Origin,
    pub(super) old_qid: Text,
    /// If the new ID never appears, the hand-off was a delivery after all.
    pub(super) fallback: Pending,
    pub(super) deadline_us: i64,
}

/// A re-injection candidate that ended before any hand-off named it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Orphan {
    pub(super) msg: Msg,
    pub(super) deadline_us: i64,
}

/// A Postfix SASL failure without a user name, waiting for Dovecot's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SaslFail {
    pub(super) host: u32,
    pub(super) ip: Text,
    pub(super) key: i64,
    pub(super) time_us: i64,
    pub(super) what: String,
}

/// A Dovecot password failure, waiting for Postfix's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuthFail {
    pub(super) host: u32,
    pub(super) ip: Text,
    pub(super) user: Text,
    pub(super) time_us: i64,
}

/// Everything remembered between lines; saved with each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Host names, numbered in order of appearance.
    pub(super) hosts: Vec<Text>,
    #[serde(with = "as_pairs")]
    pub(super) messages: FxHashMap<MsgKey, Msg>,
    #[serde(with = "as_pairs")]
    pub(super) handoffs: FxHashMap<MsgKey, Handoff>,
    #[serde(with = "as_pairs")]
    pub(super) orphans: FxHashMap<MsgKey, Orphan>,
    pub(super) sasl_fails: Vec<SaslFail>,
    pub(super) auth_fails: Vec<AuthFail>,
    /// Dovecot sessions in flight.
    pub(super) access: AccessState,
    /// Latest log time seen, µs.
    pub(super) now_us: i64,
    pub(super) last_sweep_us: i64,
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
        v.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        v.serialize(s)
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FxHashMap<MsgKey, V>, D::Error> {
        let v: Vec<(u32, Qid, V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|(h, q, v)| ((h, q), v)).collect())
    }
}
