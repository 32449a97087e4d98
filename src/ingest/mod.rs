//! Ingest: read log sources, correlate their lines, store the rows.
//!
//! * [`source`]: files (plain, rotated, `.gz`) and stdin as lines of bytes;
//! * [`envelope`]: the syslog envelope of each line (time, host, program);
//! * [`postfix`], [`dovecot`]: the messages of each program;
//! * [`correlate`]: lines joined into lifecycles and rows per mailbox.
//!
//! Crash safety: lines are handled in batches. A batch's rows, the offset
//! its source was read to and the correlator's state after its last line
//! are committed in one transaction. A process killed at any point leaves
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
pub mod postfix;
pub mod source;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::store::{Batch, Checkpoint, Store, Writer};
use correlate::{Correlator, Rows, Settings, Stats};
use envelope::{Clock, YearState};
use source::{LineReader, SourceSpec};

/// Name of the correlator state of a one-host ingest. (Several agents
/// writing to one database would each use their own.)
pub const DEFAULT_AGENT: &str = "default";

/// Batches in flight between the parser and the writer: one being filled,
/// one being written.
const CHANNEL_BATCHES: usize = 2;

/// What one source contributed to an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub name: String,
    /// Byte offset reading started at (0, or a checkpoint).
    pub resumed_at: u64,
    /// Byte offset reading ended at.
    pub ended_at: u64,
}

/// The outcome of an ingest.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sources: Vec<SourceReport>,
    pub stats: Stats,
    /// Rows the database did not have yet.
    pub rows_new: u64,
}

impl Report {
    /// The summary printed at the end of `mailtrail ingest`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let mut o = String::new();
        for src in &self.sources {
            let _ = writeln!(
                o,
                "{}: bytes {}..{}{}",
                src.name,
                src.resumed_at,
                src.ended_at,
                if src.resumed_at > 0 {
                    " (resumed from checkpoint)"
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
        let _ = writeln!(
            o,
            "rows stored         {:>12}  ({} already stored)",
            self.rows_new,
            s.rows.saturating_sub(self.rows_new)
        );
        if s.events_unattributed > 0 {
            let _ = writeln!(
                o,
                "events without a mailbox {:>7}  (lifecycle began before the input, or no user named)",
                s.events_unattributed
            );
        }
        if !s.examples.is_empty() {
            let _ = writeln!(o, "first unrecognised lines:");
            for e in &s.examples {
                let _ = writeln!(o, "  {}", e.escape_debug());
            }
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
    batch_lines: usize,
) -> anyhow::Result<Report> {
    for s in specs {
        s.check()?;
    }
    let correlator = match store.load_state(DEFAULT_AGENT).await? {
        Some(bytes) => Correlator::restore(settings.clone(), &bytes)?,
        None => Correlator::new(settings.clone()),
    };
    // Checkpoints are looked up by the parser thread, which only knows a
    // source's fingerprint once it has opened it.
    let (cp_req_tx, mut cp_req_rx) = mpsc::channel::<CheckpointRequest>(1);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    // Stored rows go back to the parser, which drops them and fills their
    // vectors again: the writer's thread spends no time freeing, and no
    // batch needs fresh memory from the system (zeroed page by page).
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Rows>();
    let specs = specs.to_vec();
    let tz = settings.tz;
    let parser = tokio::task::spawn_blocking(move || {
        let io = Channels {
            cp_req: &cp_req_tx,
            out: &batch_tx,
            spare: &spare_rx,
        };
        parse_all(correlator, tz, &specs, batch_lines, &io)
    });

    let mut writer = Writer::new(store, DEFAULT_AGENT).await?;
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
                    let (n, spent) = writer.commit(b).await?;
                    rows_new += n;
                    // The parser may have finished; then the rows drop here.
                    let _ = spare_tx.send(spent);
                }
                None => batches_open = false,
            },
            req = cp_req_rx.recv(), if cp_open => match req {
                Some((fp, reply)) => {
                    let _ = reply.send(store.checkpoint(fp).await);
                }
                None => cp_open = false,
            },
        }
    }
    let (stats, sources) = parser.await.context("the parser thread failed")??;
    Ok(Report {
        sources,
        stats,
        rows_new,
    })
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

/// The parser thread: reads every source, feeds the correlator, sends
/// batches.
fn parse_all(
    mut correlator: Correlator,
    tz: chrono_tz::Tz,
    specs: &[SourceSpec],
    batch_lines: usize,
    io: &Channels<'_>,
) -> anyhow::Result<(Stats, Vec<SourceReport>)> {
    let Channels { cp_req, out, spare } = *io;
    let send = |b: Batch| {
        out.blocking_send(b)
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))
    };
    let mut reports = Vec::new();
    let mut rows = Rows::default();
    for spec in specs {
        let mut reader = LineReader::open(spec)?;
        let Some(fp) = reader.fingerprint()? else {
            reports.push(SourceReport {
                name: spec.name(),
                resumed_at: 0,
                ended_at: 0,
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
            Some(c) => reader.skip(c.offset)?,
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
        while let Some((line, _complete)) = reader.next_line()? {
            correlator.feed(&mut clock, line, &mut rows);
            in_batch += 1;
            if in_batch >= batch_lines {
                send(Batch {
                    rows: rows.take(spare.try_recv().ok()),
                    checkpoint: Some(checkpoint(&reader, &clock)),
                    state: Some(correlator.snapshot()),
                })?;
                in_batch = 0;
            }
        }
        send(Batch {
            rows: rows.take(spare.try_recv().ok()),
            checkpoint: Some(checkpoint(&reader, &clock)),
            state: Some(correlator.snapshot()),
        })?;
        reports.push(SourceReport {
            name: spec.name(),
            resumed_at,
            ended_at: reader.offset(),
        });
    }
    correlator.finish(&mut rows);
    send(Batch {
        rows,
        checkpoint: None,
        state: Some(correlator.snapshot()),
    })?;
    Ok((correlator.stats.clone(), reports))
}
