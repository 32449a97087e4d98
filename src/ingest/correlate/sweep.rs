//! Deadlines and housekeeping in log time, and the end of a lifecycle.

use super::*;

impl Correlator {
    /// Everything whose wait is over, each by its own host's clock:
    /// possible copies no hand-off claimed, messages whose own first line
    /// never came, `expired` lines to settle, lifecycles `removed` a while
    /// ago, hand-offs no copy claimed, and what is stale. With `all` (the
    /// end of a one-shot ingest) every wait of a message is over; hand-offs
    /// and SASL failures still waiting stay in the saved state, since the
    /// next lines (in the next run) may be theirs.
    pub(super) fn sweep(&mut self, all: bool, out: &mut Rows) {
        let (clocks, idle) = (&self.state.clocks, self.idle_us);
        let now_of = |h: u32| clocks[h as usize].now().saturating_add(idle);
        let mut settle = Vec::new();
        let mut close = Vec::new();
        let mut stale = Vec::new();
        let mut inbound = Vec::new();
        self.state.messages.retain(|k, m| {
            let now = now_of(k.0);
            // Nothing of it is due (and nothing changed since it was last
            // looked at): passed over without reading it.
            if !all && now < m.look_at {
                return true;
            }
            // A lifecycle that holds nothing and was never a possible copy
            // ends here, in place: nothing of it can make a row.
            let bare = m.held.is_empty()
                && m.link == Link::None
                && m.expired.is_none()
                && m.inbound.is_empty();
            // Rows for local recipients wait for the message's other lines
            // a little while only.
            if !m.inbound.is_empty() && (all || now >= m.inbound_at.saturating_add(GRACE_US)) {
                inbound.push(*k);
            }
            if !all && m.last_us.saturating_add(STALE_US) < now {
                if bare {
                    return false;
                }
                stale.push(*k);
                return true;
            }
            let waiting_link =
                m.link == Link::Awaiting && now < m.first_us.saturating_add(LINK_WINDOW_US);
            if m.removed
                .is_some_and(|(_, at)| all || now >= at.saturating_add(GRACE_US))
                && (all || !waiting_link)
            {
                if bare {
                    return false;
                }
                close.push(*k);
            } else if (m.link == Link::Awaiting && (all || !waiting_link))
                || m.expired
                    .is_some_and(|e| all || now >= e.at_us.saturating_add(GRACE_US))
                || (!m.held.is_empty() && !m.started)
            {
                settle.push(*k);
            }
            m.look_at = m.next_look();
            true
        });
        // The same order whatever the map's: a restored state must go on
        // exactly as the uninterrupted one.
        for v in [&mut inbound, &mut settle, &mut close, &mut stale] {
            v.sort_unstable();
        }
        for k in inbound {
            self.release_inbound(k, true);
        }
        for k in settle {
            self.settle(k, all, &mut out.smtp);
        }
        for k in close {
            self.close(k, &mut out.smtp);
        }
        for k in stale {
            self.release_inbound(k, true);
            if let Some(m) = self.state.messages.remove(&k) {
                self.state.copies.unfile(k, &m);
                self.em.unattributed.sender_unseen += m.held.len() as u64;
            }
        }
        if !all {
            self.expire_handoffs(&mut out.smtp);
            self.expire_redirects();
        }
        self.expire_sasl(all);
        let (clocks, idle) = (&self.state.clocks, self.idle_us);
        self.state.access.sweep(
            |h| clocks[h as usize].now().saturating_add(idle),
            all,
            &mut out.access,
        );
    }

    /// Ends the waits of message `k` that are over (all of them with
    /// `all`), and gives out what that settles.
    fn settle(&mut self, k: MsgKey, all: bool, out: &mut Vec<Row>) {
        let now = self.now_of(k.0);
        let Some(m) = self.state.messages.get_mut(&k) else {
            return;
        };
        if m.link == Link::Awaiting && (all || now >= m.first_us.saturating_add(LINK_WINDOW_US)) {
            // No hand-off claimed it: a submission of its own.
            m.link = Link::Own;
        }
        if let Some(e) = m.expired
            && (all || now >= e.at_us.saturating_add(GRACE_US))
        {
            m.expired = None;
            for rcpt in std::mem::take(&mut m.deferred) {
                m.held.push(Pending {
                    response: Some("expired, returned to sender".to_owned()),
                    recipient: Some(rcpt.clone()),
                    ..Pending::new(
                        mix(e.key, xxh3_64(rcpt.as_bytes())),
                        e.time_us,
                        Kind::Expired,
                    )
                });
            }
        }
        if all {
            m.started = true;
        }
        self.release(k, out);
    }

    /// Ends the lifecycle of `k`: what is still held is settled now,
    /// counted for nobody if the sender was never read, and a copy that
    /// counted as its own stays claimable a while.
    pub(super) fn close(&mut self, k: MsgKey, out: &mut Vec<Row>) {
        self.settle(k, true, out);
        self.release_inbound(k, true);
        let Some(m) = self.state.messages.remove(&k).map(Slot::into_msg) else {
            return;
        };
        self.state.copies.unfile(k, &m);
        let origin = m.final_attribution().cloned();
        let host = self.state.hosts[k.0 as usize].clone();
        let content = m.content_key();
        let mut handoffs = Vec::new();
        for p in m.held {
            if p.handoff.is_some() {
                handoffs.push(p);
            } else {
                let o = origin.clone().unwrap_or_default();
                self.em.emit(&host, Some(&m.qid), &o, p, out);
            }
        }
        for p in handoffs {
            self.handoff(k, origin.clone(), p, out);
        }
        let now = self.now_of(k.0);
        if m.link == Link::Own && now < m.first_us.saturating_add(RECLAIM_US) {
            self.state.closed_copies.push(ClosedCopy {
                key: k,
                xforward: m.xforward,
                content,
                deadline_us: m.first_us.saturating_add(RECLAIM_US),
                released: m.released,
                claimed_by: None,
            });
        }
    }

    /// Postfix SASL failures no Dovecot verdict named in time count for
    /// nobody; verdicts no failure used are forgotten. At the end of input
    /// (`all`) the verdict of a waiting failure, which comes before it,
    /// will not come.
    fn expire_sasl(&mut self, all: bool) {
        let (clocks, idle) = (&self.state.clocks, self.idle_us);
        let now_of = |h: u32| clocks[h as usize].now().saturating_add(idle);
        let before = self.state.sasl_fails.len();
        self.state
            .sasl_fails
            .retain(|s| !all && s.at_us.saturating_add(SASL_WAIT_US) > now_of(s.host));
        self.em.unattributed.auth_no_user += (before - self.state.sasl_fails.len()) as u64;
        self.state
            .auth_fails
            .retain(|a| !all && a.at_us.saturating_add(SASL_WAIT_US) > now_of(a.host));
    }
}
