//! Turning settled events into rows, and texts shared between rows.

use super::*;

/// Most texts a [`Phrases`] keeps: far more than the login methods, server
/// addresses, folder names and logout reasons of a site, or the relays most
/// of its mail goes through, and little memory should a log hold many more.
const MAX_PHRASES: usize = 1024;

/// Shared copies of texts that recur, such as `INBOX`, `Logged out`, a
/// relay or a DSN code, so that rows clone a pointer instead of allocating
/// a string each. The first [`MAX_PHRASES`] texts are kept; later ones are
/// made anew each time. (Some of these texts come from other people's
/// servers and mail clients: the limit also bounds what hash collisions
/// could cost.)
#[derive(Debug, Clone, Default)]
pub(crate) struct Phrases(FxHashMap<Box<[u8]>, Text>);

impl Phrases {
    /// The shared text for `b`, made by `make` the first time.
    pub(crate) fn get_with(&mut self, b: &[u8], make: impl FnOnce() -> Text) -> Text {
        if let Some(t) = self.0.get(b) {
            return t.clone();
        }
        let t = make();
        if self.0.len() < MAX_PHRASES {
            self.0.insert(b.into(), t.clone());
        }
        t
    }

    pub(crate) fn get(&mut self, b: &[u8]) -> Text {
        self.get_with(b, || lossy_text(b))
    }
}

/// Relays as shared texts, each with whether it is one of this mail
/// system's own (`ingest.internal_relays`), so that the address in a relay
/// is parsed once, not on every delivery through it. Bounded like
/// [`Phrases`].
#[derive(Debug, Clone, Default)]
pub(super) struct Relays(FxHashMap<Box<[u8]>, (Text, bool)>);

impl Relays {
    /// The text of `relay` and whether it is internal, `internal` deciding
    /// the first time.
    pub(super) fn get(
        &mut self,
        relay: &[u8],
        internal: impl FnOnce(&[u8]) -> bool,
    ) -> (Text, bool) {
        if let Some(r) = self.0.get(relay) {
            return r.clone();
        }
        let r = (lossy_text(relay), internal(relay));
        if self.0.len() < MAX_PHRASES {
            self.0.insert(relay.into(), r.clone());
        }
        r
    }
}

/// Makes rows; kept apart from [`State`] so a lifecycle can be read while
/// its events are turned into rows.
pub(super) struct Emitter {
    pub(super) settings: Settings,
    pub(super) days: LocalDays,
    /// `NOQUEUE`, shared by every reject's row.
    pub(super) noqueue: Text,
    /// Events that went to no mailbox, by cause, since the caller last
    /// looked.
    pub(super) unattributed: Unattributed,
}

impl Emitter {
    /// Turns one event into rows: one for the envelope sender and one for
    /// the SMTP AUTH user when that is another local mailbox. An event
    /// that gives no row is counted by why.
    pub(super) fn emit(
        &mut self,
        host: &Text,
        queue_id: Option<&Text>,
        origin: &Origin,
        p: Pending,
        out: &mut Vec<Row>,
    ) {
        let local = &self.settings.local;
        let sender = match &origin.sender {
            Sender::Addr(s) if local.is_local_address(s) => Some(s),
            _ => None,
        };
        let user = origin
            .sasl_user
            .as_ref()
            .filter(|u| Some(*u) != sender && local.is_local_address(u));
        if sender.is_none() && user.is_none() {
            let u = &mut self.unattributed;
            match origin.sender {
                Sender::Unknown => u.sender_unseen += 1,
                Sender::Null => u.null_sender += 1,
                Sender::Bad => u.bad_address += 1,
                Sender::Addr(_) => u.not_local += 1,
            }
            return;
        }
        let day = self.days.day_key(p.time_us);
        let row = |mailbox: &Text, key: i64, p: Pending| Row {
            key,
            time_us: p.time_us,
            day,
            mailbox: mailbox.clone(),
            mailbox_no: None,
            kind: p.kind,
            host: host.clone(),
            queue_id: queue_id.cloned(),
            sender_ip: origin.client_ip.clone(),
            relay: p.relay,
            recipient: p.recipient,
            dsn: p.dsn,
            response: p.response,
            reply_split: None,
        };
        match (sender, user) {
            (Some(s), Some(u)) => {
                out.push(row(u, mix(p.key, 1), p.clone()));
                out.push(row(s, p.key, p));
            }
            (Some(s), None) => out.push(row(s, p.key, p)),
            (None, Some(u)) => out.push(row(u, mix(p.key, 1), p)),
            (None, None) => {}
        }
    }
}
