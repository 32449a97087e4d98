//! What `serve` knows about its own parts, for `GET /health` and the log,
//! and how its long-running parts meet a fault.
//!
//! * [`Problems`]: what is wrong with one part right now, each problem
//!   logged once when it starts (or changes) and once when it ends, not on
//!   every poll.
//! * [`Health`]: the follower's passes and problems, how far it has read
//!   each file, and the relay's state as the worker last found it; judged
//!   by [`Health::judge`].
//! * [`Retry`]: a failing database write retried with a growing wait, for
//!   a bounded time; then the part gives up and the process exits with a
//!   failure status, for its service manager to restart it, instead of
//!   running on without ingesting or sending.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ingest::SourceReport;
use crate::ingest::source::FileId;

/// A follower whose last pass ended longer ago than this is stopped or
/// stuck. Passes come every half second; a pass over a large backlog (a
/// restart after downtime) takes longer, and says so by the bytes it has
/// left unread.
pub const STALE_PASS_SECS: i64 = 30;

/// What is wrong with one part of the service right now, by key (a path,
/// or the name of what failed).
#[derive(Debug)]
pub struct Problems {
    part: &'static str,
    now: Mutex<BTreeMap<String, String>>,
}

impl Problems {
    pub fn new(part: &'static str) -> Problems {
        Problems {
            part,
            now: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records a problem; logged when it is new or its reason changed.
    pub fn set(&self, key: &str, reason: &str) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if now.get(key).map(String::as_str) != Some(reason) {
            tracing::warn!(part = self.part, "{key}: {reason}");
            now.insert(key.to_owned(), reason.to_owned());
        }
    }

    /// Ends a problem; its end is logged.
    pub fn clear(&self, key: &str) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if now.remove(key).is_some() {
            tracing::info!(part = self.part, "{key}: recovered");
        }
    }

    /// Ends every problem whose key is not in `keep`.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = {
            let now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            now.keys().filter(|k| !keep(k)).cloned().collect()
        };
        for k in gone {
            self.clear(&k);
        }
    }

    /// Every problem, as `key: reason`.
    pub fn list(&self) -> Vec<String> {
        let now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        now.iter().map(|(k, r)| format!("{k}: {r}")).collect()
    }
}

/// What the service knows about its follower and its relay.
#[derive(Debug)]
pub struct Health {
    /// Unix seconds of the last follow pass that succeeded (0: none yet).
    pub last_pass: AtomicI64,
    /// Events read but waiting, after the last pass, for lines that may
    /// still decide them (a few seconds of log time, a minute at most).
    pub waiting: AtomicU64,
    /// How far the last pass read each file it read (in the file's bytes;
    /// `u64::MAX` for a compressed file, read whole).
    read_to: Mutex<HashMap<(u64, u64), u64>>,
    /// Followed paths that are missing or unreadable, damaged files,
    /// failing writes, a follower that stopped.
    pub follower: Problems,
    /// The relay, when the worker's last attempt to send through it failed.
    pub relay: Problems,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            last_pass: AtomicI64::new(0),
            waiting: AtomicU64::new(0),
            read_to: Mutex::new(HashMap::new()),
            follower: Problems::new("follower"),
            relay: Problems::new("relay"),
        }
    }
}

/// The key under which the relay's problem is kept.
pub const RELAY: &str = "relay";

impl Health {
    /// Records a successful pass: when, what waits, how far it read.
    pub fn passed(&self, sources: &[SourceReport], waiting: u64) {
        let mut read_to = self.read_to.lock().unwrap_or_else(|e| e.into_inner());
        // Only what this pass read: a file gone since is not followed.
        read_to.clear();
        for s in sources {
            if let Some(id) = s.file_id {
                let to = if id.plain { s.ended_at } else { u64::MAX };
                read_to.insert((id.dev, id.ino), to);
            }
        }
        drop(read_to);
        self.waiting.store(waiting, Ordering::Relaxed);
        self.last_pass
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }

    /// Bytes of the followed files (each path and its first rotation,
    /// `PATH.1`) that no pass has read: each file's size now, less how far
    /// the last pass read that very file (known by device and inode, so
    /// a rotated file keeps its count, and a new file counts from 0).
    /// Counted when asked, so a pass under way (a long backlog) or a
    /// follower that stopped does not leave it stale.
    pub fn unread(&self, paths: &[PathBuf]) -> u64 {
        let read_to = self.read_to.lock().unwrap_or_else(|e| e.into_inner());
        let mut unread = 0u64;
        for p in paths {
            let mut rotated = p.clone().into_os_string();
            rotated.push(".1");
            for f in [p.as_path(), Path::new(&rotated)] {
                let Ok(meta) = std::fs::metadata(f) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let id = FileId::of(&meta);
                let done = match read_to.get(&(id.dev, id.ino)) {
                    Some(&to) => to,
                    // A rotation never read (an old one, compressed) is
                    // not followed; the live file counts from its start.
                    None if f != p.as_path() => continue,
                    None => 0,
                };
                unread = unread.saturating_add(meta.len().saturating_sub(done));
            }
        }
        unread
    }

    /// The verdict for `/health`: healthy or not, and the JSON body, with
    /// every reason it is not. `outbox` is the queued and failed mail, or
    /// why they could not be counted.
    pub fn judge(
        &self,
        paths: &[PathBuf],
        now: i64,
        outbox: Result<(i64, i64), String>,
    ) -> (bool, serde_json::Value) {
        let last = self.last_pass.load(Ordering::Relaxed);
        let waiting = self.waiting.load(Ordering::Relaxed);
        let unread = self.unread(paths);
        let mut problems = self.follower.list();
        if last == 0 {
            problems.push("follower: no pass has finished yet".to_owned());
        } else if now - last > STALE_PASS_SECS {
            problems.push(format!(
                "follower: the last pass ended {} s ago",
                now - last
            ));
        }
        if unread > 0 {
            problems.push(format!(
                "follower: behind, {unread} bytes of the followed files unread"
            ));
        }
        let current = problems.is_empty();
        problems.extend(self.relay.list());
        let (queued, failed) = match &outbox {
            Ok((q, f)) => (Some(*q), Some(*f)),
            Err(e) => {
                problems.push(format!("database: cannot count the outbox: {e}"));
                (None, None)
            }
        };
        let ok = problems.is_empty();
        let body = serde_json::json!({
            "ok": ok,
            "problems": problems,
            "ingest": {
                "current": current,
                "last_pass": (last > 0).then_some(last),
                "seconds_since_last_pass": (last > 0).then_some(now - last),
                "unread_bytes": unread,
                "waiting_events": waiting,
            },
            "outbox": {
                "queued": queued,
                "failed": failed,
                "relay_error": self.relay.list().into_iter().next(),
            },
        });
        (ok, body)
    }
}

/// How long a failing database is retried when `database_retry_secs` is
/// not set: see [`crate::config::Config::database_retry_secs`].
pub const DEFAULT_RETRY_SECS: u64 = 120;

/// First wait after a failed database write: one follow poll. A lock
/// held by another writer (a nightly purge batch, a backup, a second
/// process) is usually gone by then.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between attempts: a fault that lasts (a full disk, a
/// database server restarting) costs an attempt and its error at most
/// this often, and its end is noticed within this long.
pub const RETRY_LONGEST: Duration = Duration::from_secs(10);

/// Retries of a failing part, for at most `budget` (`database_retry_secs`)
/// from the first failure in a row.
#[derive(Debug)]
pub struct Retry {
    budget: Duration,
    since: Option<Instant>,
    attempts: u32,
}

impl Retry {
    pub fn new(budget: Duration) -> Retry {
        Retry {
            budget,
            since: None,
            attempts: 0,
        }
    }

    /// The attempt succeeded: the next failure starts a new count.
    pub fn succeeded(&mut self) -> bool {
        let was_failing = self.since.is_some();
        self.since = None;
        self.attempts = 0;
        was_failing
    }

    /// Failures in a row so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Another failure: the wait before the next attempt (doubling from
    /// [`RETRY_FIRST`] up to [`RETRY_LONGEST`]), or `Err` with what to say
    /// when the budget is spent.
    pub fn failed(&mut self) -> Result<Duration, String> {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.attempts += 1;
        let spent = since.elapsed();
        if spent >= self.budget {
            return Err(format!(
                "still failing after {} s and {} attempts",
                spent.as_secs(),
                self.attempts
            ));
        }
        let doublings = (self.attempts - 1).min(16);
        let wait = RETRY_FIRST
            .saturating_mul(1 << doublings)
            .min(RETRY_LONGEST)
            .min(self.budget - spent);
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_longer_each_time_and_gives_up_when_its_time_is_spent() {
        let mut r = Retry::new(Duration::from_secs(3600));
        let waits: Vec<_> = (0..7).map(|_| r.failed().unwrap()).collect();
        assert_eq!(waits[0], RETRY_FIRST);
        assert_eq!(waits[1], RETRY_FIRST * 2);
        assert_eq!(waits[6], RETRY_LONGEST);
        assert!(r.succeeded());
        assert_eq!(r.failed().unwrap(), RETRY_FIRST);

        let mut r = Retry::new(Duration::ZERO);
        let e = r.failed().unwrap_err();
        assert!(e.contains("1 attempts"), "{e}");
    }

    #[test]
    fn a_problem_is_listed_until_it_is_cleared() {
        let p = Problems::new("test");
        p.set("/var/log/mail.log", "missing");
        p.set("/var/log/mail.log", "missing");
        p.set("relay", "refused");
        assert_eq!(p.list(), ["/var/log/mail.log: missing", "relay: refused"]);
        p.retain(|k| k == "relay");
        assert_eq!(p.list(), ["relay: refused"]);
        p.clear("relay");
        assert!(p.list().is_empty());
    }

    fn read(path: &Path, to: u64) -> SourceReport {
        let meta = std::fs::metadata(path).unwrap();
        SourceReport {
            name: path.display().to_string(),
            resumed_at: 0,
            ended_at: to,
            damage: None,
            file_id: Some(FileId::of(&meta)),
        }
    }

    #[test]
    fn unread_bytes_follow_the_file_read_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail.log");
        std::fs::write(&log, vec![b'x'; 100]).unwrap();
        let h = Health::default();
        let paths = [log.clone()];
        // No pass yet: all of it.
        assert_eq!(h.unread(&paths), 100);
        h.passed(&[read(&log, 60)], 0);
        assert_eq!(h.unread(&paths), 40);
        // Rotated by rename, a new file begun: the old one's 40 bytes are
        // still unread under its new name, the new one's 7 too.
        std::fs::rename(&log, dir.path().join("mail.log.1")).unwrap();
        std::fs::write(&log, b"1234567").unwrap();
        assert_eq!(h.unread(&paths), 47);
    }

    #[test]
    fn health_is_not_ok_before_a_pass_after_a_stale_one_or_with_a_problem() {
        let h = Health::default();
        let now = 1_800_000_000;
        let (ok, body) = h.judge(&[], now, Ok((0, 0)));
        assert!(!ok);
        assert_eq!(body["problems"][0], "follower: no pass has finished yet");

        h.passed(&[], 0);
        let last = h.last_pass.load(Ordering::Relaxed);
        let (ok, body) = h.judge(&[], last + STALE_PASS_SECS + 1, Ok((0, 0)));
        assert!(!ok, "{body}");
        assert_eq!(body["ingest"]["current"], false);
        let (ok, body) = h.judge(&[], last, Ok((2, 1)));
        assert!(ok, "{body}");
        assert_eq!(body["outbox"]["queued"], 2);

        h.relay.set(RELAY, "refused");
        let (ok, body) = h.judge(&[], last, Ok((0, 0)));
        assert!(!ok);
        assert_eq!(body["ingest"]["current"], true);
        assert_eq!(body["outbox"]["relay_error"], "relay: refused");
        h.relay.clear(RELAY);
        let (ok, body) = h.judge(&[], last, Err("locked".into()));
        assert!(!ok);
        assert_eq!(
            body["problems"][0],
            "database: cannot count the outbox: locked"
        );
    }
}
