//! Hand-offs to content filters and the copies they re-inject.

use super::*;

impl Correlator {
    /// `status=sent (... queued as NEW)` to an internal relay names NEW.
    pub(super) fn handoff_target(&self, relay: &[u8], response: &[u8]) -> Option<Qid> {
        let open = memchr::memchr(b'[', relay)?;
        let close = open + memchr::memchr(b']', &relay[open..])?;
        if !self.is_internal(&relay[open + 1..close]) {
            return None;
        }
        let at = memmem::rfind(response, b"queued as ")? + 10;
        let id = &response[at..];
        let end = id
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .unwrap_or(id.len());
        postfix::is_qid(&id[..end]).then(|| Qid::new(&id[..end]))
    }

    pub(super) fn is_internal(&self, ip: &[u8]) -> bool {
        std::str::from_utf8(ip)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_some_and(|ip| {
                self.em
                    .settings
                    .internal_relays
                    .iter()
                    .any(|n| n.contains(&ip))
            })
    }

    /// A message went to a content filter that re-queued it as `new`.
    pub(super) fn handoff(
        &mut self,
        host: u32,
        old: Text,
        new: Qid,
        origin: Origin,
        fallback: Pending,
        out: &mut Vec<Row>,
    ) {
        let key = (host, new);
        let host_name = &self.state.hosts[host as usize];
        if let Some(m) = self.state.messages.get_mut(&key) {
            if m.origin.is_none() {
                m.origin = Some(origin);
            }
            m.awaiting_link = false;
            self.em.release(host_name, m, out);
        } else if let Some(mut o) = self.state.orphans.remove(&key) {
            o.msg.origin = Some(origin);
            o.msg.awaiting_link = false;
            self.em.release(host_name, &mut o.msg, out);
        } else {
            self.state.handoffs.insert(
                key,
                Handoff {
                    origin,
                    old_qid: old,
                    deadline_us: fallback.time_us + LINK_WINDOW_US,
                    fallback,
                },
            );
        }
    }
}
