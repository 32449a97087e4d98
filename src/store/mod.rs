//! The database: SQLite (one file, the default) or PostgreSQL.
//!
//! Queries are written once, in SQL both dialects accept (`$1`
//! placeholders, `ON CONFLICT ... DO NOTHING`, integer times), and run on
//! whichever pool the URL chose: the [`on_pool!`] macro expands the same body
//! for each backend, so the two cannot drift apart. The one exception is the
//! bulk insert of event rows, the ingest's hot path: SQLite's goes through
//! the raw connection handle ([`sqlite_bulk`]), PostgreSQL's through
//! multi-row statements.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::ingest::access::AccessRow;
use crate::ingest::correlate::{Kind, Rows, Text};
use crate::ingest::mailboxes::{Ids, Mailboxes, NewMailboxes};

mod partitions;
mod pg_copy;
#[doc(hidden)]
pub mod pg_hooks;
pub mod records;
mod sqlite_bulk;

/// A connection pool to either backend.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's own pool type.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

/// SQLite admits one writer at a time, and a connection that finds the
/// lock taken sleeps in SQLite's busy handler (1, 2, 5, 10 ... 100 ms) and
/// tries again, which under load turns a wait of microseconds into tens of
/// milliseconds. Write transactions of this process queue here instead,
/// in order, and find the lock free.
pub(crate) static SQLITE_WRITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `$body` inside a write transaction bound to `$tx`, committed when
/// the body succeeds. SQLite takes the write lock at `BEGIN IMMEDIATE`, so
/// a read-then-write transaction waits for the ingest instead of failing.
macro_rules! in_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match $store {
            Store::Sqlite(p) => {
                let _turn = $crate::store::SQLITE_WRITE.lock().await;
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let r = $body;
                $tx.commit().await?;
                r
            }
            Store::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let r = $body;
                $tx.commit().await?;
                r
            }
        }
    };
}

/// Like `on_pool!`, for a statement that writes: on SQLite it first waits
/// its turn on [`SQLITE_WRITE`].
macro_rules! on_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => {
                let _turn = $crate::store::SQLITE_WRITE.lock().await;
                $body
            }
            Store::Postgres($pool) => $body,
        }
    };
}

pub mod messages;
mod nightly;
#[macro_use]
pub mod packs;
pub use packs::Packed;
mod outbox;
pub use nightly::{DayCounts, Guess, Limits, Post, PostOutcome};
pub use outbox::{MailCap, NewMail, NewRequest, OutboxRow, Queued, RequestRow};

/// Where an input has been read to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub fingerprint: i64,
    pub path: String,
    pub offset: u64,
    /// The source's year inference (JSON), for year-less stamps.
    pub year_state: Option<String>,
}

/// One unit of ingest work, committed whole or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Rows,
    /// The mailboxes first numbered in these rows.
    pub mailboxes: NewMailboxes,
    /// The checkpoint of the source these rows came from, if any.
    pub checkpoint: Option<Checkpoint>,
    /// The correlator's state after the last line of this batch.
    pub state: Option<Vec<u8>>,
}

/// A detail row of a mailbox's SMTP history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub time_us: i64,
    pub day: i32,
    pub kind: Kind,
    pub host: String,
    pub queue_id: Option<String>,
    pub sender_ip: Option<String>,
    pub relay: Option<String>,
    pub recipient: Option<String>,
    pub dsn: Option<String>,
    pub response: Option<String>,
}

/// Texts resolved per statement when a batch brings new ones.
const TEXT_CHUNK: usize = 256;

/// `$1, $2, ...` (PostgreSQL) or `?, ?, ...` (SQLite) for `n` values.
fn placeholders(n: usize, numbered: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        if numbered {
            s.push_str(&format!("${}", i + 1));
        } else {
            s.push('?');
        }
    }
    s
}

/// Gives every text of `$values` (a `Vec<&str>` of texts `$texts` lacks,
/// each once) its id in `texts`, in the open transaction `$conn`: each is
/// looked up by its hash, and stored when absent; a text whose hash is
/// taken by another text tries the next probe ([`records::text_hash`]).
macro_rules! resolve_texts {
    ($conn:expr, $texts:expr, $values:expr, $numbered:expr) => {{
        // (text, probe) still without an id.
        let mut pending: Vec<(&str, u64)> = $values.into_iter().map(|v| (v, 0)).collect();
        let mut rounds = 0;
        while !pending.is_empty() {
            // In the order of their hashes, so that writers storing some
            // of the same texts at once lock them in one order and never
            // wait for each other in a circle.
            pending.sort_by_cached_key(|(v, p)| $crate::store::records::text_hash(v, *p));
            rounds += 1;
            anyhow::ensure!(rounds <= 64, "texts could not be stored: their hashes kept changing hands");
            let mut next = Vec::new();
            for chunk in pending.chunks($crate::store::TEXT_CHUNK) {
                // Past the last probe: stored without a hash.
                let (lost, hashed): (Vec<_>, Vec<_>) =
                    chunk.iter().partition(|(_, p)| *p >= $crate::store::records::PROBES);
                for (v, _) in lost {
                    let id: i64 = sqlx::query_scalar("INSERT INTO texts (hash, value) VALUES (NULL, $1) RETURNING id")
                        .bind(v)
                        .fetch_one(&mut *$conn)
                        .await?;
                    $texts.insert(v, id);
                }
                if hashed.is_empty() {
                    continue;
                }
                let hashes: Vec<i64> = hashed.iter().map(|(v, p)| $crate::store::records::text_hash(v, *p)).collect();
                let sql = format!(
                    "SELECT hash, id, value FROM texts WHERE hash IN ({})",
                    $crate::store::placeholders(hashes.len(), $numbered)
                );
                let mut q = sqlx::query_as::<_, (i64, i64, String)>(sqlx::AssertSqlSafe(sql));
                for h in &hashes {
                    q = q.bind(h);
                }
                let found: foldhash::HashMap<i64, (i64, String)> = q
                    .fetch_all(&mut *$conn)
                    .await?
                    .into_iter()
                    .map(|(h, id, v)| (h, (id, v)))
                    .collect();
                let mut absent = Vec::new();
                for (&(v, p), h) in hashed.iter().zip(&hashes) {
                    match found.get(h) {
                        Some((id, value)) if value == v => $texts.insert(v, *id),
                        Some(_) => next.push((v, p + 1)),
                        None => absent.push((v, p, *h)),
                    }
                }
                if absent.is_empty() {
                    continue;
                }
                let sql = format!(
                    "INSERT INTO texts (hash, value) VALUES {} ON CONFLICT (hash) DO NOTHING RETURNING hash, id",
                    $crate::store::pairs(absent.len(), $numbered)
                );
                let mut q = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(sql));
                for (v, _, h) in &absent {
                    q = q.bind(h).bind(*v);
                }
                let made: foldhash::HashMap<i64, i64> = q.fetch_all(&mut *$conn).await?.into_iter().collect();
                for (v, p, h) in absent {
                    match made.get(&h) {
                        Some(id) => $texts.insert(v, *id),
                        // Another writer stored this hash meanwhile: look
                        // again.
                        None => next.push((v, p)),
                    }
                }
            }
            pending = next;
        }
    }};
}

/// `($1, $2), ($3, $4), ...` or `(?, ?), ...` for `n` rows of two values.
fn pairs(n: usize, numbered: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        if numbered {
            s.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        } else {
            s.push_str("(?, ?)");
        }
    }
    s
}

/// Writes ingest batches; remembers the ids of the mailboxes it has seen
/// so that only new mailboxes cost a query.
pub struct Writer {
    store: Store,
    agent: String,
    /// Looked up for each mailbox new to the batches (not for each row),
    /// with a seeded hash, since log lines can name mailboxes an attacker
    /// chose.
    ids: MailboxIds,
    /// The database id of each mailbox number the batches have given
    /// (see [`crate::ingest::mailboxes`]), at its number: looked up for
    /// every row.
    by_no: Vec<i64>,
    /// The same, for the parser's thread, which orders rows by them.
    shared_ids: Ids,
    /// The numbering those batches use, while no pass has it.
    mailboxes: Option<Mailboxes>,
    /// SQLite: the transaction holding the batches written but not yet
    /// committed.
    open: Option<OpenTx>,
    /// How long a SQLite transaction takes batches.
    commit_after: Duration,
    /// Ids of the texts the batches have named.
    texts: records::Texts,
    /// The room the last batch's records took, empty, for the next.
    spare_smtp: Vec<records::SmtpRecord<'static>>,
    spare_access: Vec<records::AccessRecord<'static>>,
}

/// Mailbox id by address.
type MailboxIds = foldhash::HashMap<Text, i64>;

/// Mailboxes created per statement when a batch brings new ones.
const MAILBOX_CHUNK: usize = 256;

/// Resolves, in the open transaction, the ids of the mailboxes `names`
/// not in `known`, creating the missing ones in multi-row inserts.
macro_rules! new_mailbox_ids {
    ($conn:expr, $names:expr, $known:expr, $numbered:expr) => {{
        const GET: &str = "SELECT id FROM mailboxes WHERE address = $1";
        let mut new: Vec<&Text> = $names.filter(|m| !$known.contains_key(*m)).collect();
        new.sort_unstable();
        new.dedup();
        let mut fresh = MailboxIds::with_capacity_and_hasher(new.len(), Default::default());
        for chunk in new.chunks(MAILBOX_CHUNK) {
            let sql = add_mailboxes_sql(chunk.len(), $numbered);
            let mut q = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql));
            for m in chunk {
                q = q.bind(&***m);
            }
            for (id, address) in q.fetch_all(&mut *$conn).await? {
                fresh.insert(Text::from(address), id);
            }
            // Another writer may have created some of them meanwhile.
            for m in chunk {
                if !fresh.contains_key(*m) {
                    let id: i64 = sqlx::query_scalar(GET)
                        .bind(&***m)
                        .fetch_one(&mut *$conn)
                        .await?;
                    fresh.insert((*m).clone(), id);
                }
            }
        }
        fresh
    }};
}

/// `INSERT ... RETURNING` for `n` new mailboxes; built from constant text
/// and placeholders only.
fn add_mailboxes_sql(n: usize, numbered: bool) -> String {
    let mut s = String::from("INSERT INTO mailboxes (address) VALUES ");
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        if numbered {
            s.push_str(&format!("(${})", i + 1));
        } else {
            s.push_str("(?)");
        }
    }
    s.push_str(" ON CONFLICT (address) DO NOTHING RETURNING id, address");
    s
}

/// Writes a batch's records on a transaction's connection; evaluates to
/// the number of rows that were new. SQLite takes the raw bulk path
/// ([`sqlite_bulk`]); PostgreSQL COPY ([`pg_copy`]).
macro_rules! write_records {
    (@sqlite $tx:expr, $smtp:expr, $access:expr) => {{
        let mut handle = $tx.lock_handle().await?;
        // SAFETY: the handle lock gives this thread the connection alone,
        // and the transaction opened by `begin_with` is still open.
        unsafe {
            sqlite_bulk::insert_smtp(handle.as_raw_handle(), $smtp)?
                + sqlite_bulk::insert_access(handle.as_raw_handle(), $access)?
        }
    }};
    (@pg $tx:expr, $smtp:expr, $access:expr) => {{
        pg_copy::write_smtp(&mut **$tx, $smtp).await?
            + pg_copy::write_access(&mut **$tx, $access).await?
    }};
}

/// Writes the batch's received-mail rows ([`messages`]), by the bulk path
/// of the backend as the other event rows.
macro_rules! write_messages {
    (@sqlite $tx:expr, $rows:expr) => {{
        let mut handle = $tx.lock_handle().await?;
        // SAFETY: the handle lock gives this thread the connection alone,
        // and the transaction opened by `begin_with` is still open.
        unsafe { sqlite_bulk::insert_messages(handle.as_raw_handle(), $rows)? }
    }};
    (@pg $tx:expr, $rows:expr) => {
        pg_copy::write_messages(&mut **$tx, $rows).await?
    };
}

/// Gives the texts `$values` their ids in `$texts`, storing the new ones
/// in the transaction: on SQLite through the raw handle
/// ([`sqlite_bulk::resolve_texts`]), on PostgreSQL by [`resolve_texts!`].
macro_rules! store_texts {
    (@sqlite $tx:expr, $texts:expr, $values:expr, $numbered:expr) => {{
        let mut handle = $tx.lock_handle().await?;
        // SAFETY: the handle lock gives this thread the connection alone,
        // and the transaction opened by `begin_with` is still open.
        unsafe { sqlite_bulk::resolve_texts(handle.as_raw_handle(), $values, &mut $texts)? }
    }};
    (@pg $tx:expr, $texts:expr, $values:expr, $numbered:expr) => {{
        resolve_texts!(&mut **$tx, $texts, $values, $numbered);
    }};
}

/// The body of [`Writer::commit`], the same for both backends.
macro_rules! commit_in {
    ($tx:expr, $self:expr, $batch:expr, $numbered:expr, $insert:tt) => {{
        const SAVE_CP: &str = "INSERT INTO ingest_sources (fingerprint, path, offset_bytes, year_state, updated_us) VALUES ($1, $2, $3, $4, $5) \
            ON CONFLICT (fingerprint) DO UPDATE SET path = excluded.path, offset_bytes = excluded.offset_bytes, year_state = excluded.year_state, updated_us = excluded.updated_us";
        const SAVE_STATE: &str = "INSERT INTO ingest_state (agent, state, updated_us) VALUES ($1, $2, $3) \
            ON CONFLICT (agent) DO UPDATE SET state = excluded.state, updated_us = excluded.updated_us";
        let now = chrono::Utc::now().timestamp_micros();
        let Batch {
            rows,
            mailboxes,
            checkpoint,
            state,
        } = $batch;
        let tx = &mut $tx;
        let fresh = new_mailbox_ids!(&mut **tx, mailboxes.names.iter(), $self.ids, $numbered);
        // Every name not in `ids` was just resolved into `fresh` (or the
        // transaction failed with `?`). The caller takes these back out if
        // the transaction fails.
        for m in &mailboxes.names {
            let id = $self.ids.get(m).or_else(|| fresh.get(m));
            $self.by_no.push(*id.context("a new mailbox was not resolved")?);
        }
        let by_no = &$self.by_no;
        let id_of = |no: Option<u32>| -> anyhow::Result<i64> {
            no.and_then(|n| by_no.get(n as usize).copied())
                .ok_or_else(|| anyhow::anyhow!("a row to store names mailbox number {no:?}, which no batch has given"))
        };
        let Rows { smtp, access, messages } = rows;
        let message_records = messages
            .iter()
            .map(|r| Ok(messages::MessageRecord::new(r, id_of(r.mailbox_no)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Each reply split once, for its pattern's id and for the record.
        let replies: Vec<_> = smtp.iter().map(records::reply_parts).collect();
        let reasons: Vec<_> = access
            .iter()
            .map(|r| r.reason.as_deref().map_or((None, None), records::split_reply))
            .collect();
        let missing = $self.texts.missing(
            smtp.iter()
                .flat_map(records::smtp_texts)
                .chain(replies.iter().filter_map(|(p, _)| p.as_deref()))
                .chain(access.iter().flat_map(records::access_texts))
                .chain(reasons.iter().filter_map(|(p, _)| p.as_deref())),
        );
        store_texts!(@ $insert tx, $self.texts, missing, $numbered);
        let texts = &$self.texts;
        // Into the room the batch before used: records of a batch take
        // tens of megabytes, which fresh memory makes the kernel clear.
        let mut smtp_records: Vec<records::SmtpRecord<'_>> = std::mem::take(&mut $self.spare_smtp);
        for (r, (pattern, args)) in smtp.iter().zip(replies) {
            smtp_records.push(records::SmtpRecord::new(r, id_of(r.mailbox_no)?, (pattern.as_deref(), args), texts)?);
        }
        let mut access_records: Vec<records::AccessRecord<'_>> = std::mem::take(&mut $self.spare_access);
        for (r, (pattern, args)) in access.iter().zip(reasons) {
            access_records.push(records::AccessRecord::new(r, id_of(r.mailbox_no)?, (pattern.as_deref(), args), texts)?);
        }
        // Rows of a day packed already (logs read late): a row its pack
        // holds is stored already.
        let mut access_days: Vec<i32> = access_records.iter().map(|r| r.day).collect();
        access_days.sort_unstable();
        access_days.dedup();
        for day in access_days {
            let held = packed_keys!(&mut **tx, day, {
                let mut ids: Vec<i64> = access_records.iter().filter(|r| r.day == day).map(|r| r.mailbox_id).collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            });
            if !held.is_empty() {
                access_records.retain(|r| r.day != day || !held.contains(&(r.mailbox_id, r.sec, r.key)));
            }
        }
        let n = write_records!(@ $insert tx, &smtp_records, &access_records)
            + write_messages!(@ $insert tx, &message_records);
        drop(message_records);
        // A complete day's table (`daily_counts`) is made by the nightly
        // job; rows that reach a day it has counted make it count again.
        let mut days: Vec<i32> = smtp.iter().map(|r| r.day).collect();
        days.sort_unstable();
        days.dedup();
        for day in days {
            sqlx::query("DELETE FROM job_runs WHERE day = $1 AND job = 'aggregate'")
                .bind(day)
                .execute(&mut **tx)
                .await?;
        }
        $self.spare_smtp = records::emptied(smtp_records);
        $self.spare_access = records::emptied(access_records);
        if let Some(cp) = checkpoint {
            sqlx::query(SAVE_CP)
                .bind(cp.fingerprint)
                .bind(cp.path)
                .bind(cp.offset as i64)
                .bind(cp.year_state)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        if let Some(st) = state {
            sqlx::query(SAVE_STATE)
                .bind(&$self.agent)
                .bind(st)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        (n, fresh, Rows { smtp, access, messages })
    }};
}

impl Writer {
    /// A writer for `agent`, knowing every mailbox already stored.
    pub async fn new(store: &Store, agent: &str) -> anyhow::Result<Writer> {
        const ALL: &str = "SELECT id, address FROM mailboxes";
        let known: Vec<(i64, String)> =
            on_pool!(store, p => sqlx::query_as(ALL).fetch_all(p).await?);
        Ok(Writer {
            store: store.clone(),
            agent: agent.to_owned(),
            ids: known
                .into_iter()
                .map(|(id, a)| (Text::from(a), id))
                .collect(),
            by_no: Vec::new(),
            shared_ids: Ids::default(),
            mailboxes: None,
            open: None,
            commit_after: Duration::ZERO,
            texts: records::Texts::default(),
            spare_smtp: Vec::new(),
            spare_access: Vec::new(),
        })
    }

    /// The numbering of mailboxes this writer's batches must use, for the
    /// parser of a pass, which gives it back with
    /// [`Writer::return_mailboxes`]. When it was not given back (the pass
    /// failed), numbering starts again.
    pub fn lend_mailboxes(&mut self) -> Mailboxes {
        self.mailboxes.take().unwrap_or_else(|| {
            // What a failed pass left uncommitted rolls back.
            self.open = None;
            self.by_no.clear();
            self.shared_ids = Ids::default();
            Mailboxes::new(self.shared_ids.clone())
        })
    }

    pub fn return_mailboxes(&mut self, mailboxes: Mailboxes) {
        self.mailboxes = Some(mailboxes);
    }

    /// How long a SQLite transaction may go on taking batches before it is
    /// committed, from now on (zero, the default, commits every batch):
    /// see [`Writer::write`].
    pub fn commit_after(&mut self, time: Duration) {
        self.commit_after = time;
    }

    /// Writes a batch: its rows (a row whose key is already stored is
    /// skipped), its checkpoint and the correlator state, in one
    /// transaction with the batches before it that are not committed yet.
    /// That transaction is committed after the batch that finds it open
    /// for [`Writer::commit_after`], or by [`Writer::flush`]; until then
    /// nothing of it is stored, and a failure rolls all of it back.
    /// (PostgreSQL commits every batch.) Returns how many rows were new,
    /// and the rows themselves (the inserts only borrowed them), so that
    /// the caller can reuse their memory.
    ///
    /// Batches come in the order they were made, their mailboxes numbered
    /// with what [`Writer::lend_mailboxes`] gave: each numbers its new
    /// mailboxes from where the one before stopped.
    pub async fn write(&mut self, batch: Batch) -> anyhow::Result<(u64, Rows)> {
        let known = self.by_no.len();
        anyhow::ensure!(
            batch.mailboxes.first as usize == known,
            "mailbox numbers out of step: the batch numbers from {}, the writer knows {known}",
            batch.mailboxes.first
        );
        // A failure rolls back the batches before this one that share its
        // transaction, and their new mailboxes.
        let from = self.open.as_ref().map_or(known, |open| open.from);
        let r = self.write_tx(batch).await;
        if r.is_err() {
            self.rolled_back(from);
        }
        r
    }

    /// Commits what [`Writer::write`] left uncommitted, if anything.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let from = open.from;
        match open.commit().await {
            Ok(fresh) => {
                self.committed(fresh);
                Ok(())
            }
            Err(e) => {
                self.rolled_back(from);
                Err(e)
            }
        }
    }

    async fn write_tx(&mut self, batch: Batch) -> anyhow::Result<(u64, Rows)> {
        match &self.store {
            Store::Sqlite(p) => {
                let mut open = match self.open.take() {
                    Some(open) => open,
                    None => OpenTx {
                        // IMMEDIATE takes the write lock up front: a
                        // deferred BEGIN that reads then writes fails with
                        // SQLITE_BUSY under a concurrent writer instead of
                        // waiting.
                        _turn: SQLITE_WRITE.lock().await,
                        tx: p.begin_with("BEGIN IMMEDIATE").await?,
                        began: std::time::Instant::now(),
                        from: self.by_no.len(),
                        fresh: MailboxIds::default(),
                    },
                };
                // On an error the transaction, dropped, rolls back.
                let (n, fresh, spent) = commit_in!(open.tx, self, batch, false, sqlite);
                open.fresh.extend(fresh);
                if open.began.elapsed() >= self.commit_after {
                    let fresh = open.commit().await?;
                    self.committed(fresh);
                } else {
                    self.open = Some(open);
                }
                Ok((n, spent))
            }
            Store::Postgres(p) => {
                let mut days: Vec<i32> = batch
                    .rows
                    .smtp
                    .iter()
                    .map(|r| r.day)
                    .chain(batch.rows.access.iter().map(|r| r.day))
                    .chain(batch.rows.messages.iter().map(|r| r.day))
                    .collect();
                days.sort_unstable();
                days.dedup();
                partitions::ensure_days(p, &days).await?;
                let mut tx = p.begin().await?;
                let (n, fresh, spent) = commit_in!(tx, self, batch, true, pg);
                tx.commit().await?;
                self.committed(fresh);
                Ok((n, spent))
            }
        }
    }

    /// A transaction committed: its new mailboxes exist.
    fn committed(&mut self, fresh: MailboxIds) {
        self.ids.extend(fresh);
        let published = self.shared_ids.read(<[i64]>::len);
        let new = &self.by_no[published.min(self.by_no.len())..];
        self.shared_ids.write(|ids| ids.extend_from_slice(new));
    }

    /// A transaction failed: the mailboxes numbered from `from` on may not
    /// exist after all.
    fn rolled_back(&mut self, from: usize) {
        self.open = None;
        // Texts it stored are gone again.
        self.texts.clear();
        // A day's partitions may have been dropped by another process
        // since this one made them: asked again next time.
        if let Store::Postgres(p) = &self.store {
            partitions::forget(p);
        }
        self.by_no.truncate(from);
    }
}

/// A SQLite transaction [`Writer::write`] has left open for more batches.
struct OpenTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    /// This process's turn at SQLite's write lock, for as long as the
    /// transaction lasts.
    _turn: tokio::sync::MutexGuard<'static, ()>,
    /// When it began.
    began: std::time::Instant,
    /// The mailbox numbers known before it.
    from: usize,
    /// The mailboxes it created, by address.
    fresh: MailboxIds,
}

impl OpenTx {
    /// Commits; returns the mailboxes it created.
    async fn commit(self) -> anyhow::Result<MailboxIds> {
        self.tx.commit().await?;
        Ok(self.fresh)
    }
}

/// The path `DATABASE.WHAT.lock` beside a SQLite database file, or
/// `None` for an in-memory database.
pub(crate) fn sqlite_lock_path(pool: &SqlitePool, what: &str) -> Option<std::path::PathBuf> {
    let db = pool.connect_options().get_filename().to_owned();
    if db.as_os_str().is_empty() || db.to_str() == Some(":memory:") {
        return None;
    }
    let mut path = db.into_os_string();
    path.push(format!(".{what}.lock"));
    Some(path.into())
}

/// Opens (creating it if need be) a file used only for its lock.
pub(crate) fn open_lock_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// Checkpoints SQLite's write-ahead log every [`WAL_CHECKPOINT_EVERY`] on a
/// connection of its own, until stopped.
///
/// Without it, the commit that finds the log past `wal_autocheckpoint`
/// pages copies it into the database and syncs both itself, while holding
/// the write lock: under the web form's load every writer stalled 100 ms
/// every two seconds. Done here, the copy runs beside the writers, and the
/// automatic checkpoint stays only as a backstop. `serve` runs one, and
/// so does a bulk `ingest`, whose writer stalled the same way, about
/// 200 ms at a time: there it took a twentieth off the whole ingest. On
/// PostgreSQL it does nothing.
pub struct WalCheckpointer {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How often [`WalCheckpointer`] checkpoints. One with nothing to copy
/// costs about a millisecond.
pub const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

impl WalCheckpointer {
    pub fn start(store: &Store) -> WalCheckpointer {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = matches!(store, Store::Sqlite(_)).then(|| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(WAL_CHECKPOINT_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Said once when checkpoints start failing and once when
                // they work again, not four times a second.
                let mut failing = false;
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                    match store.wal_checkpoint().await {
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!("checkpoint of the write-ahead log failed: {e:#}");
                        }
                        Err(_) => {}
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!("checkpoints of the write-ahead log work again");
                        }
                        Ok(_) => {}
                    }
                }
            })
        });
        WalCheckpointer { stop, task }
    }

    /// Stops after the checkpoint under way, if any.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Store {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// For SQLite, creates the file and its directory when missing, and uses
    /// WAL so readers (reports, the web form) never wait for the ingest.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without touching its schema.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("bad SQLite URL {url:?}"))?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .page_size(16384)
                .pragma("cache_size", "-65536")
                .pragma("temp_store", "memory")
                .pragma("wal_autocheckpoint", "8192");
            if let Some(dir) = Path::new(opts.get_filename()).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the database directory {}", dir.display())
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                // A connection whose COMMIT failed (a full disk) can be
                // left inside its transaction, and every transaction begun
                // on it after fails: closed instead of pooled, so writes
                // work again once the fault is gone.
                .after_release(|conn, _| {
                    Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                })
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open the SQLite database {url}"))?;
            Ok(Store::Sqlite(pool))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await
                .context("cannot connect to the PostgreSQL database")?;
            Ok(Store::Postgres(pool))
        }
    }

    /// Copies what SQLite's write-ahead log holds into the database file
    /// (a passive checkpoint: it waits for no reader nor writer, and
    /// writers go on appending meanwhile), so that the log restarts from
    /// its beginning. Returns the frames in the log and how many are now in
    /// the file; nothing to do on PostgreSQL. See [`WalCheckpointer`].
    pub async fn wal_checkpoint(&self) -> anyhow::Result<(i64, i64)> {
        match self {
            Store::Sqlite(p) => {
                let (_busy, log, done): (i64, i64, i64) =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(p)
                        .await?;
                Ok((log, done))
            }
            Store::Postgres(_) => Ok((0, 0)),
        }
    }

    /// Applies the migrations the database has not seen yet. Processes
    /// that start at once take turns: PostgreSQL's migrator holds an
    /// advisory lock; SQLite's holds none, so a lock file beside the
    /// database does it.
    ///
    /// Rows of the tables before migration 0009 are then moved into the
    /// day-clustered ones, a slice per transaction ([`Store::move_rows`]);
    /// how far it has come is logged.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut said = false;
        self.migrate_with(|m| {
            if !said {
                said = true;
                tracing::warn!(
                    "moving {} rows into the day-clustered tables (once, after an upgrade)",
                    m.total
                );
            }
            tracing::info!("moved {} of {} rows", m.moved, m.total);
        })
        .await
    }

    /// [`Store::migrate`], telling `progress` how the move of old rows goes.
    pub async fn migrate_with(&self, progress: impl FnMut(Moved)) -> anyhow::Result<()> {
        self.migrate_schema().await?;
        self.move_rows(progress).await?;
        Ok(())
    }

    async fn migrate_schema(&self) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(p) => {
                let _turn = match sqlite_lock_path(p, "migrate") {
                    Some(path) => Some(
                        tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
                            let f = open_lock_file(&path)?;
                            f.lock()
                                .with_context(|| format!("cannot lock {}", path.display()))?;
                            Ok(f)
                        })
                        .await??,
                    ),
                    None => None,
                };
                sqlx::migrate!("migrations/sqlite").run(p).await?
            }
            Store::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// Where the source with this fingerprint has been read to.
    pub async fn checkpoint(&self, fingerprint: i64) -> anyhow::Result<Option<Checkpoint>> {
        const SQL: &str =
            "SELECT path, offset_bytes, year_state FROM ingest_sources WHERE fingerprint = $1";
        let row = on_pool!(self, p => sqlx::query(SQL).bind(fingerprint).fetch_optional(p).await?
            .map(|r| -> Result<_, sqlx::Error> { Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<Option<String>, _>(2)?)) })
            .transpose()?);
        Ok(row.map(|(path, offset, year_state)| Checkpoint {
            fingerprint,
            path,
            offset: offset.max(0) as u64,
            year_state,
        }))
    }

    /// The correlator state saved by the last committed batch of `agent`.
    pub async fn load_state(&self, agent: &str) -> anyhow::Result<Option<Vec<u8>>> {
        const SQL: &str = "SELECT state FROM ingest_state WHERE agent = $1";
        let v = on_pool!(self, p => sqlx::query_scalar::<_, Vec<u8>>(SQL).bind(agent).fetch_optional(p).await?);
        Ok(v)
    }

    /// When the ingest last committed (unix microseconds), whichever agent:
    /// the records hold the logs up to about then. `None` before the first
    /// commit.
    pub async fn last_ingest_us(&self) -> anyhow::Result<Option<i64>> {
        const SQL: &str = "SELECT MAX(u) FROM (SELECT MAX(updated_us) AS u FROM ingest_state \
            UNION ALL SELECT MAX(updated_us) AS u FROM ingest_sources) AS x";
        let v = on_pool!(self, p => sqlx::query_scalar::<_, Option<i64>>(SQL).fetch_one(p).await?);
        Ok(v)
    }

    /// The id of a mailbox, if it has any rows.
    pub async fn mailbox_id(&self, mailbox: &str) -> anyhow::Result<Option<i64>> {
        const SQL: &str = "SELECT id FROM mailboxes WHERE address = $1";
        let id = on_pool!(self, p => sqlx::query_scalar::<_, i64>(SQL).bind(mailbox).fetch_optional(p).await?);
        Ok(id)
    }

    /// Per-day counts of each kind for one mailbox: (day, kind, count).
    ///
    /// A day the nightly job has counted (`daily_counts`, made once the day
    /// is over, made again when late rows reach it) is read from that
    /// table; the others, today's, are counted from the day's rows of the
    /// mailbox, which lie together.
    pub async fn daily_counts(
        &self,
        mailbox: &str,
        from_day: i32,
        to_day: i32,
    ) -> anyhow::Result<Vec<(i32, Kind, i64)>> {
        const COUNTED: &str = "SELECT d.day, d.auth_blk, d.auth_rcv, d.bounced, d.deferred, d.expired, d.sent \
            FROM daily_counts d JOIN job_runs j ON j.day = d.day AND j.job = 'aggregate' \
            WHERE d.mailbox_id = $1 AND d.day >= $2 AND d.day <= $3";
        const DONE: &str = "SELECT day FROM job_runs WHERE job = 'aggregate' AND day >= $1 AND day <= $2 ORDER BY day";
        const ROWS: &str = "SELECT CAST(kind AS INTEGER), COUNT(*) FROM smtp_rows WHERE day = $1 AND mailbox_id = $2 GROUP BY kind";
        let Some(id) = self.mailbox_id(mailbox).await? else {
            return Ok(Vec::new());
        };
        type Counted = (i32, i64, i64, i64, i64, i64, i64);
        let (counted, rest) = on_pool!(self, p => {
            let counted: Vec<Counted> = sqlx::query_as(COUNTED).bind(id).bind(from_day).bind(to_day).fetch_all(p).await?;
            let done: Vec<i32> = sqlx::query_scalar(DONE).bind(from_day).bind(to_day).fetch_all(p).await?;
            let mut rest = Vec::new();
            for day in days_between(from_day, to_day) {
                if done.binary_search(&day).is_err() {
                    let kinds: Vec<(i32, i64)> = sqlx::query_as(ROWS).bind(day).bind(id).fetch_all(p).await?;
                    rest.extend(kinds.into_iter().map(|(k, n)| (day, k, n)));
                }
            }
            (counted, rest)
        });
        let mut out: Vec<(i32, Kind, i64)> = Vec::new();
        for (day, blk, rcv, bounced, deferred, expired, sent) in counted {
            for (kind, n) in [
                (Kind::AuthBlk, blk),
                (Kind::AuthRcv, rcv),
                (Kind::Bounced, bounced),
                (Kind::Deferred, deferred),
                (Kind::Expired, expired),
                (Kind::Sent, sent),
            ] {
                if n > 0 {
                    out.push((day, kind, n));
                }
            }
        }
        out.extend(
            rest.into_iter()
                .filter_map(|(d, k, n)| Kind::from_i64(i64::from(k)).map(|k| (d, k, n))),
        );
        out.sort_by_key(|&(d, k, _)| (d, k as i32));
        Ok(out)
    }

    /// The values of the texts `ids` (any order, repeats and all), read
    /// in a few queries rather than joined to every row: a join per text
    /// column costs PostgreSQL milliseconds of planning per query.
    async fn text_values(
        &self,
        mut ids: Vec<i64>,
    ) -> anyhow::Result<std::collections::HashMap<i64, Text>> {
        ids.sort_unstable();
        ids.dedup();
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(20_000) {
            let rows: Vec<(i64, String)> = match self {
                Store::Sqlite(p) => {
                    let list = chunk
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    sqlx::query_as(
                        "SELECT id, value FROM texts WHERE id IN (SELECT value FROM json_each($1))",
                    )
                    .bind(format!("[{list}]"))
                    .fetch_all(p)
                    .await?
                }
                Store::Postgres(p) => {
                    sqlx::query_as("SELECT id, value FROM texts WHERE id = ANY($1)")
                        .bind(chunk)
                        .fetch_all(p)
                        .await?
                }
            };
            out.extend(rows.into_iter().map(|(id, v)| (id, Text::from(v))));
        }
        Ok(out)
    }

    /// The events of one mailbox in a day range, by time: the first
    /// `limit` of them, or all. Days are read in order, each as the one
    /// range of the table that holds the mailbox's rows of that day, until
    /// `limit` rows are read.
    pub async fn events(
        &self,
        mailbox: &str,
        from_day: i32,
        to_day: i32,
        limit: Option<usize>,
    ) -> anyhow::Result<Vec<EventRow>> {
        // PostgreSQL's; SQLite reads the same in sqlite_bulk::read_smtp.
        const SQL: &str = "SELECT day, sec, usec, CAST(kind AS INTEGER), CAST(host AS BIGINT), queue_id, \
            CAST(sender_ip AS BIGINT), CAST(relay AS BIGINT), recipient, CAST(dsn AS BIGINT), \
            CAST(reply AS BIGINT), reply_args \
            FROM smtp_rows WHERE day = $1 AND mailbox_id = $2 ORDER BY sec, key LIMIT $3";
        let Some(id) = self.mailbox_id(mailbox).await? else {
            return Ok(Vec::new());
        };
        let limit = limit.unwrap_or(usize::MAX);
        let days = days_between(from_day, to_day);
        let read: Vec<SmtpTuple> = match self {
            Store::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                let mut handle = conn.lock_handle().await?;
                // SAFETY: the handle lock gives this thread the connection
                // alone until the read returns.
                unsafe { sqlite_bulk::read_smtp(handle.as_raw_handle(), id, &days, limit)? }
            }
            Store::Postgres(p) => {
                let mut read = Vec::new();
                for day in days {
                    if read.len() >= limit {
                        break;
                    }
                    let left = i64::try_from(limit - read.len()).unwrap_or(i64::MAX);
                    let rows: Vec<SmtpTuple> = sqlx::query_as(SQL)
                        .bind(day)
                        .bind(id)
                        .bind(left)
                        .fetch_all(p)
                        .await?;
                    read.extend(rows);
                }
                read
            }
        };
        let ids = read
            .iter()
            .flat_map(|t| [Some(t.4), t.6, t.7, t.9, t.10])
            .flatten()
            .collect();
        let texts = self.text_values(ids).await?;
        let text = |id: Option<i64>| -> Option<String> {
            id.and_then(|id| texts.get(&id)).map(|t| t.to_string())
        };
        let mut out: Vec<EventRow> = Vec::with_capacity(read.len());
        for t in read {
            let Some(kind) = Kind::from_i64(i64::from(t.3)) else {
                continue;
            };
            out.push(EventRow {
                time_us: t.1 * 1_000_000 + i64::from(t.2),
                day: t.0,
                kind,
                host: text(Some(t.4)).unwrap_or_default(),
                queue_id: t.5,
                sender_ip: text(t.6),
                relay: text(t.7),
                recipient: t.8,
                dsn: text(t.9),
                response: records::join_reply(text(t.10).as_deref(), t.11.as_deref()),
            });
        }
        // Days in order; within a second, by the fraction the stamp
        // carried, and then in the order things happen to a message: its
        // submission before its deliveries.
        out.sort_by_key(|e| (e.day, e.time_us, e.kind.order()));
        Ok(out)
    }

    /// Every access event of one mailbox in a day range, by time.
    pub async fn access_events(
        &self,
        mailbox: &str,
        from_day: i32,
        to_day: i32,
    ) -> anyhow::Result<Vec<AccessRow>> {
        use packs::col;
        let Some(id) = self.mailbox_id(mailbox).await? else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        for day in days_between(from_day, to_day) {
            for mut r in self.access_day(day, id).await? {
                let ids = [
                    col::HOST,
                    col::PROTOCOL,
                    col::REMOTE_IP,
                    col::LOCAL_IP,
                    col::CLIENT,
                    col::FOLDER,
                    col::REASON,
                    col::MASTER_USER,
                ]
                .map(|i| r[i].int());
                rows.push((
                    ids,
                    AccessRow {
                        key: r[col::KEY].int().unwrap_or_default(),
                        day,
                        time_us: r[col::SEC].int().unwrap_or_default() * 1_000_000
                            + r[col::USEC].int().unwrap_or_default(),
                        mailbox: Text::from(mailbox),
                        mailbox_no: None,
                        kind: crate::ingest::access::AccessKind::from_i64(
                            r[col::KIND].int().unwrap_or_default(),
                        ),
                        host: Text::from(""),
                        protocol: None,
                        remote_ip: None,
                        local_ip: None,
                        tls: r[col::TLS].int().map(|t| t != 0),
                        session: r[col::SESSION].take_text().map(Text::from),
                        client: None,
                        deleted: r[col::DELETED].int(),
                        retained: r[col::RETAINED].int(),
                        size_bytes: r[col::SIZE_BYTES].int(),
                        in_bytes: r[col::IN_BYTES].int(),
                        out_bytes: r[col::OUT_BYTES].int(),
                        expunged: r[col::EXPUNGED].int(),
                        trashed: r[col::TRASHED].int(),
                        downloaded: r[col::DOWNLOADED].int(),
                        uid: r[col::UID].int(),
                        message_id: r[col::MESSAGE_ID].take_text(),
                        folder: None,
                        // The pattern is joined below, with the texts.
                        reason: r[col::REASON_ARGS].take_text().map(Text::from),
                        attempts: r[col::ATTEMPTS].int(),
                        master_user: None,
                    },
                ));
            }
        }
        let texts = self
            .text_values(
                rows.iter()
                    .flat_map(|(ids, _)| ids.iter().flatten().copied())
                    .collect(),
            )
            .await?;
        let text = |id: Option<i64>| id.and_then(|id| texts.get(&id)).cloned();
        let mut v: Vec<AccessRow> = Vec::with_capacity(rows.len());
        for (
            [
                host,
                protocol,
                remote_ip,
                local_ip,
                client,
                folder,
                reason,
                master_user,
            ],
            mut e,
        ) in rows
        {
            e.host = text(host).unwrap_or_else(|| Text::from(""));
            e.protocol = text(protocol)
                .as_deref()
                .and_then(crate::ingest::dovecot::Proto::from_name)
                .map(crate::ingest::dovecot::Proto::as_str);
            e.remote_ip = text(remote_ip);
            e.local_ip = text(local_ip);
            e.client = text(client);
            e.folder = text(folder);
            e.reason =
                records::join_reply(text(reason).as_deref(), e.reason.as_deref()).map(Text::from);
            e.master_user = text(master_user);
            v.push(e);
        }
        // Days in order; within a second, by the fraction the stamp
        // carried, and then in the order things happen in a session
        // (classic stamps have no fraction, and a session often lasts less
        // than a second): login, deletions, logout.
        v.sort_by_key(|e| (e.day, e.time_us, e.kind.map_or(0, |k| k.order())));
        Ok(v)
    }
}

/// An SMTP row as a report reads it: day, second, microsecond, kind, the
/// text id of the host, queue ID, the text ids of sender IP and relay,
/// recipient, the text ids of DSN and reply pattern, the reply's variable
/// words.
pub(crate) type SmtpTuple = (
    i32,
    i64,
    i32,
    i32,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// Every day from `from_day` to `to_day` (`YYYYMMDD`), in order.
pub(crate) fn days_between(from_day: i32, to_day: i32) -> Vec<i32> {
    let (Some(mut d), Some(to)) = (
        crate::domain::Day::from_key(from_day),
        crate::domain::Day::from_key(to_day),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while d <= to && out.len() < 100_000 {
        out.push(d.key());
        d = d.succ();
    }
    out
}

mod moving;
pub use moving::{MOVE_STEP, Moved};
