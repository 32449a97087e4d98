//! Time, per host.
//!
//! Waiting (for a late line, for a hand-off to claim a copy) and forgetting
//! are measured in log time, by the clock of the host whose state it is:
//! never by one line's stamp, and never by another host's clock. A central
//! syslog mixes hosts whose clocks differ; one host with a wrong clock, or
//! one garbled stamp weeks ahead, must not expire what any host has in
//! flight. Rows still carry their own line's time.

use super::*;

/// Lines may arrive this far out of order (multi-host syslog, UDP relays,
/// rsyslog queues reorder lines within a second or two). A lifecycle is
/// closed this long after `removed`, a message whose own first line has not
/// been read waits this long for it, and qmgr's `expired` is settled this
/// long after it is read.
pub(super) const GRACE_US: i64 = 10 * 1_000_000;
/// How long a hand-off waits for its copy, and a possible copy for the
/// hand-off that claims it. Content filters answer within seconds; a minute
/// leaves room for a slow one.
pub(super) const LINK_WINDOW_US: i64 = 60 * 1_000_000;
/// How long after its first line a possible copy that counted as its own
/// can still be claimed by a late hand-off (one read in the next run, when
/// a run ended between the copy and its hand-off).
pub(super) const RECLAIM_US: i64 = 2 * LINK_WINDOW_US;
/// A lifecycle with no line for this long is dropped: Postfix's
/// `maximal_queue_lifetime` is 5 days by default, so nothing legitimate is
/// silent longer. Keeps memory bounded when `removed` was never logged.
pub(super) const STALE_US: i64 = 10 * 86_400 * 1_000_000;
/// Housekeeping runs when a host's clock has moved on by this much since
/// the last.
pub(super) const SWEEP_EVERY_US: i64 = 10 * 1_000_000;
/// A line stamped this far behind its host's clock was read before, or
/// comes from a file read out of order: nothing is inferred from what
/// does not follow it (see [`HandoffLine::late`]).
pub(super) const LATE_US: i64 = LINK_WINDOW_US;
/// A step forward larger than this is believed only once later lines of
/// the same host agree with it.
const JUMP_US: i64 = 3600 * 1_000_000;
/// Lines in a row that must agree on a far step forward before the clock
/// takes it: one line or two stamped far ahead (a garbled stamp, a
/// program with its own wrong clock) leave it where it was, while a host
/// that really was silent for hours resumes after a few lines.
const CONFIRM_LINES: u32 = 3;

/// One host's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HostClock {
    /// The host's time as far as it is believed, µs; `i64::MIN` before
    /// its first line.
    now_us: i64,
    /// A far step forward seen but not yet confirmed: (the earliest of the
    /// agreeing stamps, how many lines agreed).
    ahead: Option<(i64, u32)>,
    /// The clock when housekeeping last ran for this host.
    pub(super) swept_us: i64,
}

impl Default for HostClock {
    fn default() -> HostClock {
        HostClock {
            now_us: i64::MIN,
            ahead: None,
            swept_us: i64::MIN,
        }
    }
}

impl HostClock {
    /// The host's time now.
    pub(super) fn now(&self) -> i64 {
        self.now_us
    }

    /// Reads one line's stamp; returns the host's time after it. Lines
    /// stamped earlier than the clock leave it where it is.
    pub(super) fn tick(&mut self, t: i64) -> i64 {
        if self.now_us == i64::MIN {
            self.now_us = t;
            self.swept_us = t;
            return t;
        }
        if t <= self.now_us.saturating_add(JUMP_US) {
            self.now_us = self.now_us.max(t);
            self.ahead = None;
            return self.now_us;
        }
        self.ahead = match self.ahead {
            Some((a, n)) if (t - a).abs() <= JUMP_US => {
                if n + 1 >= CONFIRM_LINES {
                    self.now_us = t.max(a);
                    None
                } else {
                    Some((a.min(t), n + 1))
                }
            }
            _ => Some((t, 1)),
        };
        self.now_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn follows_the_log_and_ignores_lines_behind() {
        let mut c = HostClock::default();
        assert_eq!(c.tick(100 * S), 100 * S);
        assert_eq!(c.tick(103 * S), 103 * S);
        assert_eq!(c.tick(101 * S), 103 * S, "a late line moves nothing");
        assert_eq!(c.tick(2000 * S), 2000 * S, "a quiet half hour is normal");
    }

    #[test]
    fn one_stamp_weeks_ahead_moves_nothing() {
        let mut c = HostClock::default();
        c.tick(100 * S);
        let weeks = 21 * 86_400 * S;
        assert_eq!(c.tick(100 * S + weeks), 100 * S);
        assert_eq!(c.tick(101 * S), 101 * S);
        // Two outliers, not in a row, are still outliers.
        assert_eq!(c.tick(102 * S + weeks), 101 * S);
        assert_eq!(c.tick(102 * S), 102 * S);
        assert_eq!(c.tick(103 * S + weeks), 102 * S);
    }

    #[test]
    fn a_host_back_after_hours_is_believed_after_a_few_lines() {
        let mut c = HostClock::default();
        c.tick(100 * S);
        let later = 100 * S + 5 * 3600 * S;
        assert_eq!(c.tick(later), 100 * S);
        assert_eq!(c.tick(later + S), 100 * S);
        assert_eq!(c.tick(later + 2 * S), later + 2 * S);
        assert_eq!(c.tick(later + 3 * S), later + 3 * S);
    }
}
