//! Moving the rows of the tables before migration 0009 (`smtp_events`,
//! `access_events`) into the day-clustered ones.
//!
//! A slice at a time ([`Store::move_rows_step`]): one transaction reads the
//! oldest rows by id, stores them in their new form and deletes them from
//! the old table, so a move that is interrupted (stopped, crashed, the disk
//! full) goes on exactly where it stopped when the database is opened
//! again, with no row lost or doubled. An emptied old table is dropped.

use std::borrow::Cow;

use super::records::{self, AccessRecord, SmtpRecord, Texts};
use super::{SQLITE_WRITE, Store, partitions, pg_copy, sqlite_bulk};
use sqlx::Row as _;

/// Rows per step of the move.
pub const MOVE_STEP: i64 = 50_000;

/// How far a move has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub moved: u64,
    /// Rows there were to move when it began.
    pub total: u64,
}

type OldSmtp = (
    i64,
    i64,
    i32,
    i64,
    i64,
    i32,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const OLD_SMTP: &str = "SELECT id, key, day, time_us, mailbox_id, CAST(kind AS INTEGER), host, queue_id, sender_ip, relay, recipient, dsn, response \
    FROM smtp_events ORDER BY id LIMIT $1";

const OLD_ACCESS: &str = "SELECT id, key, day, time_us, mailbox_id, CAST(kind AS INTEGER), host, protocol, remote_ip, local_ip, tls, session, client, \
    deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, folder, reason, master_user \
    FROM access_events ORDER BY id LIMIT $1";

impl Store {
    /// Whether an old event table is still there.
    async fn old_tables(&self) -> anyhow::Result<(bool, bool)> {
        let names: Vec<String> = match self {
            Store::Sqlite(p) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('smtp_events', 'access_events')",
            )
            .fetch_all(p)
            .await?,
            Store::Postgres(p) => sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_name IN ('smtp_events', 'access_events')",
            )
            .fetch_all(p)
            .await?,
        };
        Ok((
            names.iter().any(|n| n == "smtp_events"),
            names.iter().any(|n| n == "access_events"),
        ))
    }

    /// Rows left in the old event tables (0 when they are gone).
    pub async fn rows_to_move(&self) -> anyhow::Result<u64> {
        let (smtp, access) = self.old_tables().await?;
        let mut n = 0i64;
        for (there, table) in [(smtp, "smtp_events"), (access, "access_events")] {
            if there {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                // (0 if another process has just moved and dropped it.)
                n += on_pool!(self, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(p).await.unwrap_or(0));
            }
        }
        Ok(n.max(0) as u64)
    }

    /// Moves at most `limit` rows of the old event tables into the new
    /// ones, in one transaction that also deletes them from the old table;
    /// drops an old table found empty. Returns the rows moved: 0 when
    /// nothing is left to move.
    pub async fn move_rows_step(&self, limit: i64) -> anyhow::Result<u64> {
        for table in ["smtp_events", "access_events"] {
            if let Some(n) = self.move_slice(table, limit.max(1)).await?
                && n > 0
            {
                return Ok(n);
            }
        }
        Ok(0)
    }

    /// Moves every row of the old event tables, telling `progress` after
    /// each step.
    pub async fn move_rows(&self, mut progress: impl FnMut(Moved)) -> anyhow::Result<u64> {
        let total = self.rows_to_move().await?;
        let mut moved = 0;
        loop {
            let n = self.move_rows_step(MOVE_STEP).await?;
            if n == 0 {
                return Ok(moved);
            }
            moved += n;
            progress(Moved { moved, total });
        }
    }

    /// Moves a slice of `table`, or drops it when it is empty: `None` when
    /// it is gone already. Processes that move at once take turns: a
    /// slice's transaction holds SQLite's write lock, or an advisory lock
    /// on PostgreSQL, from its look at the table to its commit.
    async fn move_slice(&self, table: &str, limit: i64) -> anyhow::Result<Option<u64>> {
        const THERE_SQLITE: &str =
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1";
        const THERE_PG: &str = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1";
        let drop = format!("DROP TABLE IF EXISTS {table}");
        let days =
            format!("SELECT DISTINCT day FROM (SELECT day FROM {table} ORDER BY id LIMIT $1) AS s");
        let smtp = table == "smtp_events";
        macro_rules! slice {
            ($tx:expr, $numbered:expr, $write:tt) => {{
                let tx = &mut $tx;
                let mut texts = Texts::default();
                if smtp {
                    let rows: Vec<OldSmtp> = sqlx::query_as(OLD_SMTP).bind(limit).fetch_all(&mut **tx).await?;
                    match rows.last().map(|r| r.0) {
                        None => 0,
                        Some(last) => {
                    let replies: Vec<_> = rows
                        .iter()
                        .map(|r| r.12.as_deref().map_or((None, None), records::split_reply))
                        .collect();
                    let missing = texts.missing(
                        rows.iter()
                            .flat_map(|r| [Some(r.6.as_str()), r.8.as_deref(), r.9.as_deref(), r.11.as_deref()].into_iter().flatten())
                            .chain(replies.iter().filter_map(|(p, _)| p.as_deref())),
                    );
                    resolve_texts!(&mut **tx, texts, missing, $numbered);
                    let id = |v: Option<&str>| v.and_then(|v| texts.get(v));
                    let mut records = Vec::with_capacity(rows.len());
                    for (r, (pattern, args)) in rows.iter().zip(&replies) {
                        let (sec, usec) = records::split_time(r.3);
                        records.push(SmtpRecord {
                            day: r.2,
                            mailbox_id: r.4,
                            sec,
                            key: r.1,
                            usec,
                            kind: r.5 as i16,
                            host: id(Some(&r.6)).ok_or_else(|| anyhow::anyhow!("a moved row's host has no id"))?,
                            queue_id: r.7.as_deref(),
                            sender_ip: id(r.8.as_deref()),
                            relay: id(r.9.as_deref()),
                            recipient: r.10.as_deref(),
                            dsn: id(r.11.as_deref()),
                            reply: id(pattern.as_deref()),
                            reply_args: args.as_deref().map(Cow::Borrowed),
                        });
                    }
                    let n = records.len() as u64;
                    slice!(@write $write tx, &records[..], &[][..]);
                    sqlx::query("DELETE FROM smtp_events WHERE id <= $1").bind(last).execute(&mut **tx).await?;
                    n
                        }
                    }
                } else {
                    let rows = sqlx::query(OLD_ACCESS).bind(limit).fetch_all(&mut **tx).await?;
                    match rows.last().map(|r| r.try_get::<i64, _>(0)).transpose()? {
                        None => 0,
                        Some(last) => {
                    let text = |r: &_, i: usize| -> Result<Option<String>, sqlx::Error> { sqlx::Row::try_get(r, i) };
                    let mut old = Vec::with_capacity(rows.len());
                    for r in &rows {
                        old.push((
                            [text(r, 6)?, text(r, 7)?, text(r, 8)?, text(r, 9)?, text(r, 12)?, text(r, 24)?, text(r, 25)?, text(r, 26)?],
                            text(r, 11)?,
                            text(r, 23)?,
                        ));
                    }
                    // Reasons are split like replies ([`records::split_reply`]).
                    let reasons: Vec<_> = old
                        .iter()
                        .map(|(t, _, _)| t[6].as_deref().map_or((None, None), records::split_reply))
                        .collect();
                    let missing = texts.missing(
                        old.iter()
                            .flat_map(|(t, _, _)| t.iter().enumerate().filter(|(i, _)| *i != 6).filter_map(|(_, v)| v.as_deref()))
                            .chain(reasons.iter().filter_map(|(p, _)| p.as_deref())),
                    );
                    resolve_texts!(&mut **tx, texts, missing, $numbered);
                    let id = |v: &Option<String>| v.as_deref().and_then(|v| texts.get(v));
                    let mut records = Vec::with_capacity(rows.len());
                    for ((r, (t, session, message_id)), (pattern, args)) in rows.iter().zip(&old).zip(&reasons) {
                        let num = |i: usize| r.try_get::<Option<i64>, _>(i);
                        let (sec, usec) = records::split_time(r.try_get(3)?);
                        records.push(AccessRecord {
                            day: r.try_get(2)?,
                            mailbox_id: r.try_get(4)?,
                            sec,
                            key: r.try_get(1)?,
                            usec,
                            kind: r.try_get::<i32, _>(5)? as i16,
                            host: id(&t[0]).ok_or_else(|| anyhow::anyhow!("a moved row's host has no id"))?,
                            protocol: id(&t[1]),
                            remote_ip: id(&t[2]),
                            local_ip: id(&t[3]),
                            tls: r.try_get(10)?,
                            session: session.as_deref(),
                            client: id(&t[4]),
                            deleted: num(13)?,
                            retained: num(14)?,
                            size_bytes: num(15)?,
                            in_bytes: num(16)?,
                            out_bytes: num(17)?,
                            expunged: num(18)?,
                            trashed: num(19)?,
                            downloaded: num(20)?,
                            attempts: num(21)?,
                            uid: num(22)?,
                            message_id: message_id.as_deref(),
                            folder: id(&t[5]),
                            reason: pattern.as_deref().and_then(|v| texts.get(v)),
                            reason_args: args.as_deref().map(Cow::Borrowed),
                            master_user: id(&t[7]),
                        });
                    }
                    let n = records.len() as u64;
                    slice!(@write $write tx, &[][..], &records[..]);
                    sqlx::query("DELETE FROM access_events WHERE id <= $1").bind(last).execute(&mut **tx).await?;
                    n
                        }
                    }
                }
            }};
            (@write sqlite $tx:expr, $smtp:expr, $access:expr) => {{
                let mut handle = $tx.lock_handle().await?;
                // SAFETY: the handle lock gives this thread the connection
                // alone, inside the open transaction.
                unsafe {
                    sqlite_bulk::insert_smtp(handle.as_raw_handle(), $smtp)?;
                    sqlite_bulk::insert_access(handle.as_raw_handle(), $access)?;
                }
            }};
            (@write pg $tx:expr, $smtp:expr, $access:expr) => {{
                pg_copy::write_smtp(&mut **$tx, $smtp).await?;
                pg_copy::write_access(&mut **$tx, $access).await?;
            }};
        }
        match self {
            Store::Sqlite(p) => {
                let _turn = SQLITE_WRITE.lock().await;
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let there: i64 = sqlx::query_scalar(THERE_SQLITE)
                    .bind(table)
                    .fetch_one(&mut *tx)
                    .await?;
                if there == 0 {
                    return Ok(None);
                }
                let n = slice!(tx, false, sqlite);
                if n == 0 {
                    sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(n))
            }
            Store::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7235312862519276393)")
                    .execute(&mut *tx)
                    .await?;
                let there: i64 = sqlx::query_scalar(THERE_PG)
                    .bind(table)
                    .fetch_one(&mut *tx)
                    .await?;
                if there == 0 {
                    return Ok(None);
                }
                let days: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(days))
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                partitions::ensure_days(p, &days).await?;
                let n = slice!(tx, true, pg);
                if n == 0 {
                    sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(n))
            }
        }
    }
}
