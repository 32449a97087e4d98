//! Hand-offs to content filters and the copies they re-inject.
//!
//! A delivery to a relay in `ingest.internal_relays` is never a final
//! delivery, whatever the relay answers:
//!
//! * refused (`250 2.7.0 BLOCKED (<id>)` from Proxmox Mail Gateway, amavis's
//!   `250 2.7.0 Ok, discarded`, a `5.7.x` refusal) it is a row of its own,
//!   [`Kind::Blocked`];
//! * accepted, it is a hand-off: the filter re-injects the message as a
//!   copy with a new queue ID, whose deliveries are the message's. The copy
//!   is found by what both share, never by adjacency: the new queue ID when
//!   the reply names it (`250 2.0.0 Ok: queued as NEWID`, older filters'
//!   `250 OK, sent <id> <NEWID>`; every token of the reply that could be a
//!   queue ID is a candidate, and only one that turns out to be a copy's
//!   links), XFORWARD's `orig_queue_id=` on the copy's `client=` line, or
//!   else the Message-ID and envelope sender (Proxmox's `250 2.5.0 OK
//!   (<id>)` names no queue ID);
//! * a copy is a message from an internal relay without SMTP AUTH (or one
//!   whose own first line was never read, when a reply names it). It waits
//!   for its hand-off up to [`LINK_WINDOW_US`] of log time from its first
//!   line, then counts as its own submission; once claimed, its events
//!   count for the original's sender, AUTH user and client, once;
//! * the hand-off is followed once the original is settled (its sender
//!   known): lines within a second come in any order, and the copy's own
//!   lines often come before the hand-off's reply. A hand-off that no copy
//!   claims within the window counts as the delivery it looked like; one
//!   read from a line already passed (see [`HandoffLine::late`]) does not,
//!   because the copy it was followed to was counted when the line was
//!   first read.
//!
//! Lines of this shape, from the fixture's Postfix:
//! `A6F3C1855DA9: to=<x@accept.test>, relay=127.0.0.1[127.0.0.1]:10025, delay=0.11, delays=0.05/0/0.03/0.03, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as B2C1D1855DB4)`
//! and the copy's
//! `B2C1D1855DB4: client=localhost[127.0.0.1], orig_queue_id=A6F3C1855DA9, orig_client=laptop.home.example.net[127.0.0.6]`.

use super::*;

/// A hand-off no copy has claimed yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Handoff {
    /// The original message.
    pub(super) orig: MsgKey,
    /// Whom the original's events count for; `None` when its sender was
    /// never read.
    pub(super) origin: Option<Origin>,
    pub(super) candidates: Vec<Qid>,
    /// [`Msg::content_key`] of the original.
    pub(super) content: Option<u64>,
    /// The hand-off line as a delivery, for when no copy claims it.
    pub(super) fallback: Pending,
    /// On the original host's clock.
    pub(super) deadline_us: i64,
    pub(super) late: bool,
}

/// A copy that ended unclaimed (counted as its own submission), still
/// there to be claimed for a while: a hand-off read later then finds its
/// copy counted, adds what its own origin lacked, and counts nothing more.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ClosedCopy {
    pub(super) key: MsgKey,
    pub(super) xforward: Option<Qid>,
    pub(super) content: Option<u64>,
    /// On the copy's host's clock.
    pub(super) deadline_us: i64,
    /// Its events as they were given out (see [`Msg::released`]).
    #[serde(default)]
    pub(super) released: Vec<Pending>,
    /// The original whose hand-off claimed it since.
    #[serde(default)]
    pub(super) claimed_by: Option<MsgKey>,
}

/// What a copy is found by, besides its own queue ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum LinkKey {
    /// XFORWARD named this original (same host).
    Orig(u32, Qid),
    /// Message-ID and envelope sender.
    Content(u64),
}

/// Open messages that may be copies, by [`LinkKey`]. Derived from the
/// messages (so not saved); kept as they change.
#[derive(Debug, Clone, Default)]
pub(super) struct CopyIndex(FxHashMap<LinkKey, Vec<MsgKey>>);

impl CopyIndex {
    fn add(&mut self, k: LinkKey, m: MsgKey) {
        let v = self.0.entry(k).or_default();
        if !v.contains(&m) {
            v.push(m);
        }
    }

    fn remove(&mut self, k: LinkKey, m: MsgKey) {
        if let Some(v) = self.0.get_mut(&k) {
            v.retain(|x| *x != m);
            if v.is_empty() {
                self.0.remove(&k);
            }
        }
    }

    fn get(&self, k: LinkKey) -> &[MsgKey] {
        self.0.get(&k).map_or(&[], Vec::as_slice)
    }

    /// The keys a message is found by.
    pub(super) fn keys_of(key: MsgKey, m: &Msg) -> [Option<LinkKey>; 2] {
        [
            m.xforward.map(|o| LinkKey::Orig(key.0, o)),
            m.content_key().map(LinkKey::Content),
        ]
    }

    /// Files a possible copy under what it is found by (again, if it
    /// learnt more).
    pub(super) fn file(&mut self, key: MsgKey, m: &Msg) {
        if m.link == Link::None {
            return;
        }
        for k in Self::keys_of(key, m).into_iter().flatten() {
            self.add(k, key);
        }
    }

    pub(super) fn unfile(&mut self, key: MsgKey, m: &Msg) {
        for k in Self::keys_of(key, m).into_iter().flatten() {
            self.remove(k, key);
        }
    }

    /// The index of every open message.
    pub(super) fn build(messages: &FxHashMap<MsgKey, Slot>) -> CopyIndex {
        let mut keys: Vec<&MsgKey> = messages.keys().collect();
        keys.sort();
        let mut ix = CopyIndex::default();
        for k in keys {
            ix.file(*k, &messages[k]);
        }
        ix
    }
}

impl Msg {
    /// What an original and its copy share when no queue ID links them:
    /// the Message-ID and the envelope sender. `None` while either is
    /// unknown.
    pub(super) fn content_key(&self) -> Option<u64> {
        let id = self.msgid?;
        let who = match &self.own.sender {
            Sender::Addr(a) => xxh3_64(a.as_bytes()),
            Sender::Null => 0,
            Sender::Unknown | Sender::Bad => return None,
        };
        Some(mix(id as i64, who) as u64)
    }
}

/// Every token of a filter's reply that could be the copy's queue ID, the
/// one after `queued as` first. Short tokens (status codes, octets, ports)
/// are left out; at most a few are kept.
pub(super) fn candidates(response: &[u8]) -> Vec<Qid> {
    const MAX: usize = 4;
    let mut v = Vec::new();
    if let Some(at) = memmem::rfind(response, b"queued as ") {
        let id = &response[at + 10..];
        let end = id
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .unwrap_or(id.len());
        if postfix::is_qid(&id[..end]) {
            v.push(Qid::new(&id[..end]));
        }
    }
    for t in response.split(|b| !b.is_ascii_alphanumeric()) {
        if v.len() >= MAX {
            break;
        }
        if t.len() >= 6 && postfix::is_qid(t) {
            let q = Qid::new(t);
            if !v.contains(&q) {
                v.push(q);
            }
        }
    }
    v
}

/// True when the relay of a delivery (`name[addr]:port`) is one of this
/// mail system's own (`ingest.internal_relays`).
pub(super) fn relay_is_internal(nets: &[IpNet], relay: &[u8]) -> bool {
    let Some(open) = memchr::memchr(b'[', relay) else {
        return false;
    };
    let Some(close) = memchr::memchr(b']', &relay[open..]) else {
        return false;
    };
    is_internal(nets, &relay[open + 1..open + close])
}

/// True when `ip` is in one of `nets` (an IPv4-mapped address as its IPv4
/// address: Postfix logs an IPv4 peer so on a `[::]` listener).
fn is_internal(nets: &[IpNet], ip: &[u8]) -> bool {
    !nets.is_empty()
        && crate::net::parse_canonical(ip).is_some_and(|ip| crate::net::in_networks(nets, ip))
}

/// Where a hand-off's copy was found.
enum Found {
    Open(MsgKey),
    /// Index in `closed_copies`.
    Closed(usize),
}

impl Correlator {
    pub(super) fn is_internal(&self, ip: &[u8]) -> bool {
        is_internal(&self.em.settings.internal_relays, ip)
    }

    /// Follows a hand-off of the settled message `orig`, whose events count
    /// for `origin`.
    pub(super) fn handoff(
        &mut self,
        orig: MsgKey,
        origin: Option<Origin>,
        mut p: Pending,
        out: &mut Vec<Row>,
    ) {
        let Some(line) = p.handoff.take() else {
            return;
        };
        let content = self.state.messages.get(&orig).and_then(|m| m.content_key());
        let h = Handoff {
            orig,
            origin,
            candidates: line.candidates,
            content,
            deadline_us: self.now_of(orig.0).saturating_add(LINK_WINDOW_US),
            fallback: p,
            late: line.late,
        };
        match self.find_copy(&h) {
            Some(Found::Open(copy)) => self.claim(copy, h.orig, h.origin, out),
            Some(Found::Closed(i)) => self.claim_closed(i, h.orig, h.origin, out),
            None => self.state.handoffs.push(h),
        }
    }

    /// The copy a hand-off leads to, if it is in: by a queue ID the reply
    /// names, by XFORWARD, by Message-ID and sender. A copy claimed by
    /// another message is not this one's; one claimed by this message
    /// already (a second recipient's hand-off line) is.
    fn find_copy(&self, h: &Handoff) -> Option<Found> {
        let host = h.orig.0;
        let ours = |k: &MsgKey| {
            self.state.messages.get(k).is_some_and(|m| match &m.link {
                Link::Claimed { orig, .. } => *orig == h.orig,
                _ => m.claimable(self.now_of(k.0)),
            })
        };
        let closed = |f: &dyn Fn(&ClosedCopy) -> bool| {
            self.state
                .closed_copies
                .iter()
                .position(|cc| cc.claimed_by.is_none_or(|o| o == h.orig) && f(cc))
                .map(Found::Closed)
        };
        for c in &h.candidates {
            let k = (host, *c);
            if ours(&k) {
                return Some(Found::Open(k));
            }
            if let Some(f) = closed(&|cc| cc.key == k) {
                return Some(f);
            }
        }
        let mut keys: Vec<LinkKey> = vec![LinkKey::Orig(host, h.orig.1)];
        keys.extend(h.content.map(LinkKey::Content));
        for lk in keys {
            // Of several, the earliest (then the lowest key): the choice
            // must not depend on the order the index was filled in.
            let best = self
                .state
                .copies
                .get(lk)
                .iter()
                .filter(|k| ours(k))
                .min_by_key(|k| {
                    let m = &self.state.messages[*k];
                    (m.first_us, **k)
                });
            if let Some(k) = best {
                return Some(Found::Open(*k));
            }
            let found = closed(&|cc| match lk {
                LinkKey::Orig(h2, o) => cc.key.0 == h2 && cc.xforward == Some(o),
                LinkKey::Content(c) => cc.content == Some(c),
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// `copy` is the copy of `orig`: its events (held and to come) count
    /// for `origin`. If it counted as its own already, what it gave out is
    /// given out again for `origin` (see [`Msg::released`]).
    fn claim(&mut self, copy: MsgKey, orig: MsgKey, origin: Option<Origin>, out: &mut Vec<Row>) {
        let Some(m) = self.state.messages.get_mut(&copy) else {
            return;
        };
        if let Link::Claimed { .. } = m.link {
            return;
        }
        let released = std::mem::take(&mut m.released);
        m.link = Link::Claimed {
            orig,
            origin: origin.clone(),
        };
        self.state.copies.file(copy, m);
        if !self.state.handoffs.is_empty() {
            self.use_up_handoffs(orig, copy);
        }
        self.emit_again(copy, origin.as_ref(), released, out);
        self.release(copy, out);
    }

    /// Like [`Correlator::claim`], for a copy whose lifecycle has ended.
    fn claim_closed(&mut self, i: usize, orig: MsgKey, origin: Option<Origin>, out: &mut Vec<Row>) {
        let cc = &mut self.state.closed_copies[i];
        if cc.claimed_by.is_some() {
            return;
        }
        cc.claimed_by = Some(orig);
        let (key, released) = (cc.key, std::mem::take(&mut cc.released));
        self.emit_again(key, origin.as_ref(), released, out);
    }

    /// A copy's events, given out before as its own, given out for the
    /// original's `origin`: the rows the copy's own origin lacked are new,
    /// the others the same rows again (same keys), which the store keeps
    /// once.
    fn emit_again(
        &mut self,
        copy: MsgKey,
        origin: Option<&Origin>,
        released: Vec<Pending>,
        out: &mut Vec<Row>,
    ) {
        let Some(origin) = origin else {
            return;
        };
        let host = self.state.hosts[copy.0 as usize].clone();
        let qid: Text = copy.1.as_str().into();
        for p in released {
            self.em.emit(&host, Some(&qid), origin, p, out);
        }
    }

    /// A possible copy learnt something it may be found by: the hand-offs
    /// already waiting for it claim it.
    pub(super) fn offer_copy(&mut self, key: MsgKey, out: &mut Vec<Row>) {
        let Some(m) = self.state.messages.get(&key) else {
            return;
        };
        if !m.claimable(self.now_of(key.0)) {
            return;
        }
        self.state.copies.file(key, m);
        let Some(first) = self
            .state
            .handoffs
            .iter()
            .position(|h| self.leads_to(h, key))
        else {
            return;
        };
        let orig = self.state.handoffs[first].orig;
        let origin = self.state.handoffs[first].origin.clone();
        self.claim(key, orig, origin, out);
    }

    /// Whether waiting hand-off `h` leads to message `key`: by a queue ID
    /// its reply names (any message whose own first line is unread), or,
    /// for a message from an internal relay without AUTH, by XFORWARD or
    /// Message-ID and sender.
    fn leads_to(&self, h: &Handoff, key: MsgKey) -> bool {
        let Some(m) = self.state.messages.get(&key) else {
            return false;
        };
        let possible = m.link != Link::None;
        (h.orig.0 == key.0 && h.candidates.contains(&key.1))
            || (possible && h.orig.0 == key.0 && m.xforward == Some(h.orig.1))
            || (possible && h.content.is_some() && h.content == m.content_key())
    }

    /// Every waiting hand-off of `orig` that leads to `copy` is used up by
    /// it (one line per recipient, read in any order around the copy's).
    fn use_up_handoffs(&mut self, orig: MsgKey, copy: MsgKey) {
        let mut i = 0;
        while i < self.state.handoffs.len() {
            let h = &self.state.handoffs[i];
            if h.orig == orig && self.leads_to(h, copy) {
                self.state.handoffs.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The original `orig` learnt its Message-ID after its hand-offs were
    /// followed (lines of one second read out of order): those still
    /// waiting take it, and look for their copy again.
    pub(super) fn retry_handoffs(&mut self, orig: MsgKey, out: &mut Vec<Row>) {
        if !self.state.handoffs.iter().any(|h| h.orig == orig) {
            return;
        }
        let content = self.state.messages.get(&orig).and_then(|m| m.content_key());
        let (mine, rest): (Vec<Handoff>, Vec<Handoff>) = std::mem::take(&mut self.state.handoffs)
            .into_iter()
            .partition(|h| h.orig == orig);
        self.state.handoffs = rest;
        for mut h in mine {
            h.content = h.content.or(content);
            match self.find_copy(&h) {
                Some(Found::Open(copy)) => self.claim(copy, h.orig, h.origin, out),
                Some(Found::Closed(i)) => self.claim_closed(i, h.orig, h.origin, out),
                None => self.state.handoffs.push(h),
            }
        }
    }

    /// Hand-offs whose window has passed with no copy: the relay was the
    /// destination after all, and the hand-off counts as the delivery it
    /// looked like; unless it was read late (see [`HandoffLine::late`]).
    pub(super) fn expire_handoffs(&mut self, out: &mut Vec<Row>) {
        let mut i = 0;
        while i < self.state.handoffs.len() {
            let h = &self.state.handoffs[i];
            if self.now_of(h.orig.0) < h.deadline_us {
                i += 1;
                continue;
            }
            let h = self.state.handoffs.remove(i);
            if h.late {
                self.em.unattributed.handoff_late += 1;
                continue;
            }
            let host = self.state.hosts[h.orig.0 as usize].clone();
            let qid: Text = h.orig.1.as_str().into();
            let origin = h.origin.unwrap_or_default();
            self.em.emit(&host, Some(&qid), &origin, h.fallback, out);
        }
        let (clocks, idle) = (&self.state.clocks, self.idle_us);
        self.state
            .closed_copies
            .retain(|c| clocks[c.key.0 as usize].now().saturating_add(idle) < c.deadline_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_logged_at_a_mapped_address_is_matched_as_ipv4() {
        let nets: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(relay_is_internal(&nets, b"127.0.0.1[127.0.0.1]:10025"));
        // Postfix on a [::] socket logs an IPv4 peer so.
        assert!(relay_is_internal(
            &nets,
            b"localhost[::ffff:127.0.0.1]:10025"
        ));
        assert!(!relay_is_internal(
            &nets,
            b"mx.example.net[::ffff:192.0.2.1]:25"
        ));
        assert!(is_internal(&nets, b"::ffff:127.0.0.1"));
        assert!(!is_internal(&nets, b"::1"));
    }
}
