//! Ingest: read log sources, correlate their lines, store the rows.
//!
//! * [`source`]: files (plain, rotated; gzip, bzip2, xz, zstd) and stdin as
//!   lines of bytes;
//! * [`envelope`]: the syslog envelope of each line (time, host, program);
//! * [`postfix`], [`dovecot`]: the messages of each program;
//! * [`correlate`]: lines joined into lifecycles and rows per mailbox;
//! * [`mailboxes`]: those rows readied for the writer: their mailboxes
//!   numbered, the rows ordered by mailbox.
//!
//! Crash safety: lines are handled in batches. A batch's rows, the offset
//! its source was read to and the correlator's state after its last line
//! are committed in one transaction (which a one-shot ingest lets take
//! several batches: see [`Batching`]). A process killed at any point leaves
//! the database as it was after some whole batch; the next run loads that
//! state, skips to that offset and goes on as if never stopped. Rows also
//! carry a key derived from their line, so input read twice (the same file
//! again, a rotated file overlapping its successor) stores nothing twice.
//!
//! Parsing runs on its own thread and hands batches to the writer through a
//! small channel, so reading and writing overlap.

pub mod access;
pub mod correlate;
pub mod dovecot;
pub mod envelope;
pub mod mailboxes;
pub mod postfix;
pub mod received;
pub mod source;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::health::{Health, Retry};
use crate::store::{Batch, Checkpoint, Store, Writer};
use correlate::{Correlator, Rows, Settings, Stats};
use envelope::{Clock, YearState};
use mailboxes::Mailboxes;
use source::{Damage, Line, LineReader, SourceSpec};

/// Name of the correlator state when `ingest.agent` is not set.
/// Ingests that write to one database at the same time (one per mail
/// host) each use their own name.
pub const DEFAULT_AGENT: &str = "default";

/// Checks an agent name: 1 to 64 letters, digits, `.`, `_` or `-` (it
/// names a lock file beside a SQLite database).
pub fn check_agent(agent: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&agent.len())
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !agent.starts_with('.');
    anyhow::ensure!(
        ok,
        "{agent:?} is not an agent name (1 to 64 letters, digits, '.', '_', '-')"
    );
    Ok(())
}

/// Held while an ingest runs under an agent name, so that a second
/// process with the same name is refused instead of overwriting the
/// first one's state. PostgreSQL: a session advisory lock on a connection
/// kept for the purpose. SQLite: an exclusive lock on the file
/// `DATABASE.ingest-AGENT.lock` beside the database. Released by
/// [`AgentLock::release`], or, failing that, when dropped (the PostgreSQL
/// connection is then closed rather than returned to the pool) or when
/// the process dies.
pub struct AgentLock {
    pg: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    _file: Option<std::fs::File>,
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        if let Some(conn) = self.pg.take() {
            // Still locked: closing the session is what releases it.
            drop(conn.detach());
        }
    }
}

impl AgentLock {
    pub async fn take(store: &Store, agent: &str) -> anyhow::Result<AgentLock> {
        check_agent(agent)?;
        let busy = || {
            anyhow::anyhow!(
                "another ingest with agent {agent:?} is running on this database; \
                 ingests that run at the same time (one per mail host) need their own \
                 ingest.agent (or --agent)"
            )
        };
        let mut lock = AgentLock {
            pg: None,
            _file: None,
        };
        match store {
            Store::Postgres(p) => {
                let mut conn = p.acquire().await?;
                let got: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtext('mailtrail-ingest:' || $1))",
                )
                .bind(agent)
                .fetch_one(&mut *conn)
                .await?;
                if !got {
                    return Err(busy());
                }
                lock.pg = Some(conn);
            }
            Store::Sqlite(p) => {
                if let Some(path) = crate::store::sqlite_lock_path(p, &format!("ingest-{agent}")) {
                    let f = crate::store::open_lock_file(&path)?;
                    match f.try_lock() {
                        Ok(()) => lock._file = Some(f),
                        Err(std::fs::TryLockError::WouldBlock) => return Err(busy()),
                        Err(std::fs::TryLockError::Error(e)) => {
                            return Err(anyhow::Error::new(e)
                                .context(format!("cannot lock {}", path.display())));
                        }
                    }
                }
            }
        }
        Ok(lock)
    }

    /// Releases the lock and gives the connection back to the pool.
    pub async fn release(mut self) -> anyhow::Result<()> {
        if let Some(mut conn) = self.pg.take() {
            sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Batches in flight between the parser and the writer: one being filled,
/// one being written.
const CHANNEL_BATCHES: usize = 2;

/// How a one-shot ingest groups lines into database transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Lines per batch: the rows of a batch's lines, the offset its source
    /// was read to and the correlator's state after it are stored
    /// together (`ingest.batch_lines`).
    pub lines: usize,
    /// How long one transaction goes on taking batches before it commits
    /// (`ingest.commit_after_ms`; zero commits every batch). Each commit
    /// writes every page its batches changed, and a batch of 200,000 lines
    /// changes pages all over the per-mailbox indexes, so the batches of
    /// one commit share most of that writing: on a 10,000,000-line log
    /// with Dovecot lines, a commit a second instead of one per batch took
    /// a quarter off the whole ingest. A crash costs the redoing of at most
    /// this much work. (A follower commits each batch at once: its lines
    /// should be readable soon, and the web form waits for the write lock.)
    pub commit_after: std::time::Duration,
}

impl Batching {
    pub fn from_config(c: &crate::config::IngestConfig) -> Batching {
        Batching {
            lines: c.batch_lines,
            commit_after: std::time::Duration::from_millis(c.commit_after_ms),
        }
    }
}

/// What one source contributed to an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub name: String,
    /// Byte offset reading started at (0, or a checkpoint).
    pub resumed_at: u64,
    /// Byte offset reading ended at: the end of the last line read.
    pub ended_at: u64,
    /// Set when the source could not be read to its end (a read error, a
    /// truncated or corrupt compressed file): the lines before the damage
    /// were read and stored, the rest of the source was not.
    pub damage: Option<Damage>,
    /// The file read (not stdin), to tell later how much of it is unread.
    pub file_id: Option<source::FileId>,
}

/// The outcome of an ingest.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sources: Vec<SourceReport>,
    pub stats: Stats,
    /// Rows the database did not have yet.
    pub rows_new: u64,
    /// Events read but not given out yet, waiting for lines that may still
    /// decide them (see [`Correlator::waiting`]).
    pub waiting: u64,
}

impl Report {
    /// The sources that could not be read to their end.
    pub fn damaged(&self) -> impl Iterator<Item = (&str, &Damage)> {
        self.sources
            .iter()
            .filter_map(|s| Some((s.name.as_str(), s.damage.as_ref()?)))
    }

    /// The summary printed at the end of `mailtrail ingest`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let mut o = String::new();
        for src in &self.sources {
            let _ = writeln!(
                o,
                "{}: bytes {}..{}{}{}",
                src.name,
                src.resumed_at,
                src.ended_at,
                if src.resumed_at > 0 {
                    " (resumed from checkpoint)"
                } else {
                    ""
                },
                if src.damage.is_some() {
                    " (DAMAGED, see below)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(o, "lines read          {:>12}", s.lines_read);
        let _ = writeln!(o, "lines used          {:>12}", s.lines_used);
        let _ = writeln!(
            o,
            "lines ignored       {:>12}  (known noise; {} from other programs)",
            s.lines_noise, s.lines_other_programs
        );
        let _ = writeln!(o, "lines unrecognised  {:>12}", s.lines_unrecognised);
        if s.lines_too_long > 0 {
            let cut = self.damaged().filter(|(_, d)| d.cut > 0).count();
            let _ = writeln!(
                o,
                "lines too long      {:>12}  (over {} bytes: skipped whole{})",
                s.lines_too_long,
                source::MAX_LINE,
                match cut {
                    0 => String::new(),
                    n => format!("; {n} of them a last line cut short by damage"),
                }
            );
        }
        let _ = writeln!(
            o,
            "rows stored         {:>12}  ({} already stored)",
            self.rows_new,
            s.rows.saturating_sub(self.rows_new)
        );
        let u = &s.unattributed;
        if u.total() > 0 {
            let _ = writeln!(o, "events for no mailbox {:>10}", u.total());
            for (cause, n) in u.causes() {
                if n > 0 {
                    let _ = writeln!(o, "  {n:>10}  {cause}");
                }
            }
        }
        if s.handoffs_waiting > 0 {
            let _ = writeln!(
                o,
                "hand-offs waiting {:>14}  (to a content filter, for their copy: later lines settle them)",
                s.handoffs_waiting
            );
        }
        if !s.examples.is_empty() {
            let _ = writeln!(o, "first unrecognised lines:");
            for e in &s.examples {
                let _ = writeln!(o, "  {}", e.escape_debug());
            }
        }
        let mut damaged = self.damaged().peekable();
        if damaged.peek().is_some() {
            let _ = writeln!(
                o,
                "damaged sources (read up to the damage, the rest not read):"
            );
        }
        for (name, d) in damaged {
            // Decoders' messages, shown as text but never as control
            // characters.
            let error: String = d
                .error
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            let _ = writeln!(o, "  {name}: {error}");
            let _ = write!(
                o,
                "    read to uncompressed byte {}; the lines before it are stored",
                d.reached
            );
            if d.cut > 0 {
                let _ = write!(
                    o,
                    ", the last {} bytes (a line cut short) counted as a line too long",
                    d.cut
                );
            }
            let _ = writeln!(o);
        }
        o
    }
}

/// Ingests `specs` in order into `store`.
///
/// Every source is checked before anything is read: a missing or unreadable
/// path is an error naming it, and nothing is written.
pub async fn run(
    store: &Store,
    settings: Settings,
    specs: &[SourceSpec],
    batching: Batching,
) -> anyhow::Result<Report> {
    for s in specs {
        s.check()?;
    }
    let tz = settings.tz;
    let lock = AgentLock::take(store, &settings.agent).await?;
    let agent = settings.agent.clone();
    let correlator = restore(store, settings).await?;
    let mut writer = Writer::new(store, &agent).await?;
    // Copies SQLite's write-ahead log into the database beside the writer,
    // instead of in the commit that finds it long (see WalCheckpointer).
    let checkpointer = crate::store::WalCheckpointer::start(store);
    writer.commit_after(batching.commit_after);
    let passed = pass(
        store,
        &mut writer,
        correlator,
        tz,
        specs,
        batching.lines,
        Mode::Once,
    )
    .await;
    checkpointer.stop().await;
    let (_, report) = passed?;
    lock.release().await?;
    Ok(report)
}

/// The correlator as the last committed batch left it.
async fn restore(store: &Store, settings: Settings) -> anyhow::Result<Correlator> {
    Ok(match store.load_state(&settings.agent).await? {
        Some(bytes) => Correlator::restore(settings, &bytes)?,
        None => Correlator::new(settings),
    })
}

/// How a pass ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A one-shot ingest: what waits is settled at the end of the input.
    Once,
    /// A follower's pass: a last line still being written is left for the
    /// next pass, and what is in flight stays in flight (the next pass goes
    /// on with it). `idle` is how long no line has come: when this pass
    /// reads none either, waits that long are over (see
    /// [`Correlator::idle`]).
    Follow { idle: std::time::Duration },
}

/// One pass over `specs`: parse on a thread, write here.
async fn pass(
    store: &Store,
    writer: &mut Writer,
    correlator: Correlator,
    tz: chrono_tz::Tz,
    specs: &[SourceSpec],
    batch_lines: usize,
    mode: Mode,
) -> anyhow::Result<(Correlator, Report)> {
    // Checkpoints are looked up by the parser thread, which only knows a
    // source's fingerprint once it has opened it.
    let (cp_req_tx, mut cp_req_rx) = mpsc::channel::<CheckpointRequest>(1);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    // Stored rows go back to the parser, which drops them and fills their
    // vectors again: the writer's thread spends no time freeing, and no
    // batch needs fresh memory from the system (zeroed page by page).
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Rows>();
    let specs = specs.to_vec();
    let mut mailboxes = writer.lend_mailboxes();
    let parser = tokio::task::spawn_blocking(move || {
        let io = Channels {
            cp_req: &cp_req_tx,
            out: &batch_tx,
            spare: &spare_rx,
        };
        let r = parse_all(
            correlator,
            &mut mailboxes,
            tz,
            &specs,
            batch_lines,
            mode,
            &io,
        );
        r.map(|r| (r, mailboxes))
    });

    let mut rows_new = 0;
    let mut cp_open = true;
    let mut batches_open = true;
    while cp_open || batches_open {
        // Batches first: a checkpoint asked for after a batch was sent must
        // see that batch committed (the same file given twice, say).
        tokio::select! {
            biased;
            batch = batch_rx.recv(), if batches_open => match batch {
                Some(b) => {
                    let (n, spent) = writer.write(b).await?;
                    rows_new += n;
                    // The parser may have finished; then the rows drop here.
                    let _ = spare_tx.send(spent);
                }
                None => {
                    writer.flush().await?;
                    batches_open = false;
                }
            },
            req = cp_req_rx.recv(), if cp_open => match req {
                Some((fp, reply)) => {
                    writer.flush().await?;
                    let _ = reply.send(store.checkpoint(fp).await);
                }
                None => cp_open = false,
            },
        }
    }
    let ((correlator, stats, sources), mailboxes) =
        parser.await.context("the parser thread failed")??;
    writer.return_mailboxes(mailboxes);
    let waiting = correlator.waiting() as u64;
    Ok((
        correlator,
        Report {
            sources,
            stats,
            rows_new,
            waiting,
        },
    ))
}

/// The readers of a follow pass for the live files `specs`: for each,
/// its first rotation (`P.1`) and then `P`. A file renamed by rotation
/// keeps its checkpoint (it is known by its first line), so its last
/// lines are read from `P.1`; a file truncated in place (copytruncate)
/// has a new first line and is read from its start.
///
/// `P` is opened before `P.1` is looked for, so a rotation at any moment
/// cannot have the new file read before the old one's last lines: if the
/// rename came first, `P.1` is seen and read first; if it came after, the
/// handle on `P` is the old file itself. Files missing now (between a
/// rename and the new file's creation) are not read this time.
///
/// While `P.1` is still being written (changed in the last
/// [`ROTATED_SETTLE`]), `P` is left for a later pass: a copytruncate
/// copies `P` to `P.1` and then empties `P`, and a pass that found the
/// copy half written (its first line not whole yet, or its last lines not
/// there yet) and `P` already emptied and written again would read the
/// new lines before the old ones' tail, which reaches the correlator too
/// late to join its messages (rows were lost so). The old file's writer
/// (a logger not yet reopened after a rename) delays `P` the same way,
/// which is the order the lines were written in.
fn follow_readers(specs: &[SourceSpec]) -> Vec<(SourceSpec, LineReader)> {
    let mut out = Vec::new();
    for spec in specs {
        let SourceSpec::File(p) = spec else { continue };
        let Ok(live) = LineReader::open(spec) else {
            continue;
        };
        let mut rotated = p.clone().into_os_string();
        rotated.push(".1");
        let rotated = SourceSpec::File(rotated.into());
        let mut settling = false;
        if let Ok(old) = LineReader::open(&rotated) {
            // (A time in the future, a clock set back, counts as old.)
            settling = old
                .mtime
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age < ROTATED_SETTLE);
            out.push((rotated, old));
        }
        if !settling {
            out.push((spec.clone(), live));
        }
    }
    out
}

/// How long the first rotation of a followed file must have been left
/// unchanged before the file itself is read after it (see
/// [`follow_readers`]).
const ROTATED_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Follows `paths` until `shutdown`: a pass every `poll`, each committing
/// its rows with their checkpoints, so a stop or a crash between passes
/// (or within one) loses and repeats nothing. After each pass `on_pass`
/// gets its report and the bytes still unread. See [`follow_with`]; a
/// failing database is retried for [`crate::health::DEFAULT_RETRY_SECS`].
pub async fn follow<F>(
    store: &Store,
    settings: Settings,
    paths: &[std::path::PathBuf],
    batch_lines: usize,
    poll: std::time::Duration,
    mut on_pass: F,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: FnMut(&Report, u64),
{
    let health = Health::default();
    follow_with(
        store,
        settings,
        paths,
        batch_lines,
        poll,
        &health,
        std::time::Duration::from_secs(crate::health::DEFAULT_RETRY_SECS),
        |report| on_pass(report, health.unread(paths)),
        shutdown,
    )
    .await
}

/// The key of the follower's problem with the database.
const WRITES: &str = "database";

/// [`follow`], telling `health` how it goes: each pass, a followed path
/// that is missing or unreadable (checked before every pass; such a path
/// is read again once it is back), a damaged file.
///
/// A pass that fails (the database full, gone, locked or unreadable) is
/// tried again from the last committed batch, after a wait that grows
/// (see [`Retry`]); when passes have failed for `retry_for` in a row, it
/// returns the error, for the process to exit and be restarted, rather
/// than go on ingesting nothing.
#[allow(clippy::too_many_arguments)]
pub async fn follow_with<F>(
    store: &Store,
    settings: Settings,
    paths: &[std::path::PathBuf],
    batch_lines: usize,
    poll: std::time::Duration,
    health: &Health,
    retry_for: std::time::Duration,
    mut on_pass: F,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: FnMut(&Report),
{
    tokio::pin!(shutdown);
    let tz = settings.tz;
    let lock = AgentLock::take(store, &settings.agent).await?;
    let mut retry = Retry::new(retry_for);
    // The first error of failing passes in a row: the cause, when later
    // ones are its consequences.
    let mut first_error: Option<String> = None;
    let mut correlator: Option<Correlator> = None;
    let mut writer: Option<Writer> = None;
    // When a line last came.
    let mut lines_at = std::time::Instant::now();
    loop {
        check_paths(paths, &health.follower);
        let specs: Vec<SourceSpec> = paths.iter().cloned().map(SourceSpec::File).collect();
        let passed = async {
            let c = match correlator.take() {
                Some(c) => c,
                None => restore(store, settings.clone()).await?,
            };
            if writer.is_none() {
                writer = Some(Writer::new(store, &settings.agent).await?);
            }
            let w = writer.as_mut().expect("made above");
            let read_before = c.stats.lines_read;
            let mode = Mode::Follow {
                idle: lines_at.elapsed(),
            };
            let (c, report) = pass(store, w, c, tz, &specs, batch_lines, mode).await?;
            anyhow::Ok((c, report, read_before))
        }
        .await;
        let wait = match passed {
            Ok((c, report, read_before)) => {
                if c.stats.lines_read > read_before {
                    lines_at = std::time::Instant::now();
                }
                correlator = Some(c);
                if retry.succeeded() {
                    health.follower.clear(WRITES);
                }
                first_error = None;
                note_damage(&report, &health.follower);
                health.passed(&report.sources, report.waiting);
                on_pass(&report);
                poll
            }
            Err(e) => {
                // The database is as the last committed batch left it: the
                // next attempt starts again from there, with a new writer
                // and the correlator as committed.
                writer = None;
                let first = first_error.get_or_insert_with(|| format!("{e:#}"));
                match retry.failed() {
                    Ok(wait) => {
                        health
                            .follower
                            .set(WRITES, &format!("passes failing, retrying: {e:#}"));
                        wait
                    }
                    Err(why) => {
                        let e = e.context(format!(
                            "following stopped: passes {why} (the first failed with: {first}); \
                             exiting so that the service manager restarts mailtrail (it resumes \
                             from the last committed batch); the last failed with"
                        ));
                        return Err(e);
                    }
                }
            }
        };
        tokio::select! {
            _ = &mut shutdown => return lock.release().await,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Records each followed path that is missing or cannot be read as a
/// problem, and ends the problem of each that can be read again.
fn check_paths(paths: &[std::path::PathBuf], problems: &crate::health::Problems) {
    for p in paths {
        let key = p.display().to_string();
        match SourceSpec::File(p.clone()).check() {
            Ok(()) => problems.clear(&key),
            Err(e) => {
                // The path is in the key already.
                let why = e
                    .chain()
                    .skip(1)
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(": ");
                let why = if why.is_empty() { e.to_string() } else { why };
                problems.set(&key, &format!("cannot be followed: {why}"));
            }
        }
    }
}

/// Records the damaged sources of a pass as problems, and ends those of
/// sources read cleanly again.
fn note_damage(report: &Report, problems: &crate::health::Problems) {
    let keys: Vec<String> = report
        .damaged()
        .map(|(name, d)| {
            let key = format!("{name} (damaged)");
            let error: String = d
                .error
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            problems.set(
                &key,
                &format!("read to byte {}, not beyond: {error}", d.reached),
            );
            key
        })
        .collect();
    problems.retain(|k| !k.ends_with(" (damaged)") || keys.iter().any(|d| d == k));
}

/// The damage `reader` met, if any (a follower reports it as a problem of
/// its own: see [`note_damage`]).
fn damage_of(reader: &LineReader) -> Option<Damage> {
    reader.damage().cloned()
}

type CheckpointRequest = (
    i64,
    tokio::sync::oneshot::Sender<anyhow::Result<Option<Checkpoint>>>,
);

/// The parser thread's links to the writer.
struct Channels<'a> {
    /// Asks for a source's checkpoint.
    cp_req: &'a mpsc::Sender<CheckpointRequest>,
    /// Batches to commit.
    out: &'a mpsc::Sender<Batch>,
    /// Rows the writer has stored, to be reused.
    spare: &'a std::sync::mpsc::Receiver<Rows>,
}

/// Sets of rows in use at once: the one being filled, those in the
/// channel to the writer, the one being written.
const ROW_SETS: usize = CHANNEL_BATCHES + 2;

/// Where the parser's next rows go: a set the writer has stored and sent
/// back. Only the first [`ROW_SETS`] are new; after that the parser waits
/// for one to come back (it would wait for room in the channel anyway).
/// New memory costs the kernel a clearing of every page, and a set made
/// new for each batch grew again and again: that took a tenth of the
/// parser's time.
struct RowsPool<'a> {
    spare: &'a std::sync::mpsc::Receiver<Rows>,
    made: usize,
}

impl RowsPool<'_> {
    /// Rows to fill next, or `None` for new ones.
    fn next(&mut self) -> Option<Rows> {
        if self.made < ROW_SETS {
            let r = self.spare.try_recv().ok();
            if r.is_none() {
                self.made += 1;
            }
            r
        } else {
            // Err: the writer has stopped; sending will say so.
            self.spare.recv().ok()
        }
    }
}

/// The parser thread: reads every source, feeds the correlator, sends
/// batches, their rows readied for the writer with `mailboxes`.
fn parse_all(
    mut correlator: Correlator,
    mailboxes: &mut Mailboxes,
    tz: chrono_tz::Tz,
    specs: &[SourceSpec],
    batch_lines: usize,
    mode: Mode,
    io: &Channels<'_>,
) -> anyhow::Result<(Correlator, Stats, Vec<SourceReport>)> {
    let follow = mode != Mode::Once;
    let read_before = correlator.stats.lines_read;
    let Channels { cp_req, out, spare } = *io;
    let mut pool = RowsPool { spare, made: 1 };
    let mut send = |mut rows: Rows, checkpoint: Option<Checkpoint>, state: Vec<u8>| {
        crate::store::records::ready_rows(&mut rows);
        let new = mailboxes.prepare(&mut rows);
        out.blocking_send(Batch {
            rows,
            mailboxes: new,
            checkpoint,
            state: Some(state),
        })
        .map_err(|_| anyhow::anyhow!("the database writer stopped"))
    };
    let mut reports = Vec::new();
    let mut rows = Rows::default();
    // Following, every reader is opened first (see `follow_readers`);
    // otherwise each when its turn comes, so only one buffer is held.
    let mut opened = if follow {
        follow_readers(specs).into_iter()
    } else {
        Vec::new().into_iter()
    };
    let mut next = specs.iter();
    loop {
        let (spec, mut reader) = if follow {
            match opened.next() {
                Some(o) => o,
                None => break,
            }
        } else {
            match next.next() {
                Some(s) => (s.clone(), LineReader::open(s)?),
                None => break,
            }
        };
        let spec = &spec;
        if follow {
            reader.hold_partial_lines();
        }
        let Some(fp) = reader.fingerprint() else {
            reports.push(SourceReport {
                name: spec.name(),
                resumed_at: 0,
                ended_at: 0,
                damage: damage_of(&reader),
                file_id: reader.file_id,
            });
            continue;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        cp_req
            .blocking_send((fp, tx))
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))?;
        let cp = rx
            .blocking_recv()
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))??;
        let year: Option<YearState> = cp
            .as_ref()
            .and_then(|c| c.year_state.as_deref())
            .and_then(|y| serde_json::from_str(y).ok());
        let resumed_at = match &cp {
            Some(c) => reader.skip(c.offset),
            None => 0,
        };
        let mut clock = Clock::new(tz, source::reference_date(reader.mtime, tz), year);
        let checkpoint = |reader: &LineReader, clock: &Clock| Checkpoint {
            fingerprint: fp,
            path: spec.name(),
            offset: reader.offset(),
            year_state: clock.year.and_then(|y| serde_json::to_string(&y).ok()),
        };
        let mut in_batch = 0usize;
        while let Some(line) = reader.next_line() {
            match line {
                Line::Whole(l) | Line::Last(l) => correlator.feed(&mut clock, l, &mut rows),
                // Never parsed: its tail could be anyone's text shaped as
                // a line of its own.
                Line::TooLong => correlator.too_long(),
            }
            in_batch += 1;
            if in_batch >= batch_lines {
                correlator.seal(&mut rows);
                send(
                    rows.take(pool.next()),
                    Some(checkpoint(&reader, &clock)),
                    correlator.snapshot(),
                )?;
                in_batch = 0;
            }
        }
        let damage = damage_of(&reader);
        if damage.as_ref().is_some_and(|d| d.cut > 0) {
            // A last line the damage cut short: counted, not parsed.
            correlator.too_long();
        }
        // The checkpoint is the end of the last whole line: a run after
        // this one reads the damaged part again (and says so again), and
        // stores nothing twice.
        correlator.seal(&mut rows);
        send(
            rows.take(pool.next()),
            Some(checkpoint(&reader, &clock)),
            correlator.snapshot(),
        )?;
        reports.push(SourceReport {
            name: spec.name(),
            resumed_at,
            ended_at: reader.offset(),
            damage,
            file_id: reader.file_id,
        });
    }
    match mode {
        Mode::Once => correlator.finish(&mut rows),
        Mode::Follow { idle } if correlator.stats.lines_read == read_before => {
            correlator.idle(
                i64::try_from(idle.as_micros()).unwrap_or(i64::MAX),
                &mut rows,
            );
        }
        Mode::Follow { .. } => {}
    }
    correlator.seal(&mut rows);
    send(rows, None, correlator.snapshot())?;
    let stats = correlator.stats.clone();
    Ok((correlator, stats, reports))
}
