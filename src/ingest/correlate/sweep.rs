//! Deadlines and housekeeping in log time.

use super::*;

impl Correlator {
    /// Deadlines and stale lifecycles. `all` settles everything pending
    /// (end of a one-shot ingest).
    pub(super) fn sweep(&mut self, all: bool, out: &mut Vec<Row>) {
        let now = self.state.now_us;
        let due = |deadline: i64| all || deadline <= now;
        let sorted = |mut keys: Vec<MsgKey>| {
            keys.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
            keys
        };

        let keys = sorted(
            self.state
                .handoffs
                .iter()
                .filter(|(_, h)| due(h.deadline_us))
                .map(|(k, _)| *k)
                .collect(),
        );
        for k in keys {
            if let Some(h) = self.state.handoffs.remove(&k) {
                // The new ID never appeared: the relay was the destination.
                let host = &self.state.hosts[k.0 as usize];
                self.em
                    .emit(host, Some(&h.old_qid), &h.origin, h.fallback, out);
            }
        }

        let keys = sorted(
            self.state
                .orphans
                .iter()
                .filter(|(_, o)| due(o.deadline_us))
                .map(|(k, _)| *k)
                .collect(),
        );
        for k in keys {
            if let Some(mut o) = self.state.orphans.remove(&k) {
                // No hand-off named it: it was a submission of its own.
                o.msg.awaiting_link = false;
                if o.msg.attribution().is_none() {
                    self.em.unattributed += o.msg.held.len() as u64;
                    continue;
                }
                self.em
                    .release(&self.state.hosts[k.0 as usize], &mut o.msg, out);
            }
        }

        if !all {
            self.state.access.sweep(|_| now, all, &mut Vec::new());
        }
        let before = self.state.sasl_fails.len();
        self.state
            .sasl_fails
            .retain(|s| !all && s.time_us + SASL_JOIN_BEFORE_US > now);
        self.em.unattributed += (before - self.state.sasl_fails.len()) as u64;
        self.state
            .auth_fails
            .retain(|a| !all && a.time_us + SASL_JOIN_BEFORE_US > now);

        if !all {
            let stale: Vec<MsgKey> = self
                .state
                .messages
                .iter()
                .filter(|(_, m)| m.last_us + STALE_US < now)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(m) = self.state.messages.remove(&k) {
                    self.em.unattributed += m.held.len() as u64;
                }
            }
        }
    }
}
