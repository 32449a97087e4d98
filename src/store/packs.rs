//! Complete days' access rows packed, a mailbox's day in one value.
//!
//! A row of `access_rows` pays for being a row: its key (day, mailbox,
//! second, hash) and, per column, a header byte (SQLite) or a tuple
//! header, line pointer and index entry (PostgreSQL), often more than its
//! own values. Once a day is complete (the nightly job, [`Store::pack_day`])
//! its access rows are moved, a range of mailboxes per transaction, into
//! `access_packs`: one row per mailbox and day holding all of that
//! mailbox's rows of the day, in report order, encoded here and deflated.
//! Nothing is lost or changed: a packed row decodes to exactly the values
//! the table held (NULL apart from the empty text), and reports read a
//! day's pack and its plain rows together ([`Store::access_day`]).
//!
//! Rows that reach a packed day later (logs read late) are stored as
//! plain rows, except those the day's pack holds already (the ingest checks
//! it, so a line read twice is still stored once: `packed_keys!`);
//! the next nightly tick packs them into the day's pack.
//!
//! The encoding of a pack: a format byte, then (deflated, unless that would
//! gain nothing or the pack is small) the row count and the rows, each a
//! bit mask of its non-NULL columns and those columns' values: integers as
//! the zigzag varint of their difference from the same column in the row
//! before (seconds, ids and counters mostly repeat or grow a little), the
//! key as its eight bytes, texts as a varint length and their bytes.

use std::io::Read as _;

use anyhow::Context as _;
use sqlx::Row as _;

use super::{Store, partitions};

/// A column's value, as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The text, leaving NULL in its place.
    pub fn take_text(&mut self) -> Option<String> {
        match std::mem::replace(self, Val::Null) {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// How a column is kept in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// An integer, as the difference from the row before.
    Int,
    /// The row's key hash: eight bytes, which differences do not shrink.
    Key,
    Text,
}

/// The columns of `access_rows` a pack holds (all but `day` and
/// `mailbox_id`, which are the pack's), in this order; reads of plain rows
/// select them in the same order ([`ACCESS_SELECT`]).
const ACCESS_COLUMNS: [(&str, Ty); 26] = [
    ("key", Ty::Key),
    ("sec", Ty::Int),
    ("usec", Ty::Int),
    ("kind", Ty::Int),
    ("host", Ty::Int),
    ("protocol", Ty::Int),
    ("remote_ip", Ty::Int),
    ("local_ip", Ty::Int),
    ("tls", Ty::Int),
    ("session", Ty::Text),
    ("client", Ty::Int),
    ("deleted", Ty::Int),
    ("retained", Ty::Int),
    ("size_bytes", Ty::Int),
    ("in_bytes", Ty::Int),
    ("out_bytes", Ty::Int),
    ("expunged", Ty::Int),
    ("trashed", Ty::Int),
    ("downloaded", Ty::Int),
    ("uid", Ty::Int),
    ("message_id", Ty::Text),
    ("folder", Ty::Int),
    ("reason", Ty::Int),
    ("attempts", Ty::Int),
    ("master_user", Ty::Int),
    ("reason_args", Ty::Text),
];

/// Where each value is in a row of [`ACCESS_COLUMNS`].
pub mod col {
    pub const KEY: usize = 0;
    pub const SEC: usize = 1;
    pub const USEC: usize = 2;
    pub const KIND: usize = 3;
    pub const HOST: usize = 4;
    pub const PROTOCOL: usize = 5;
    pub const REMOTE_IP: usize = 6;
    pub const LOCAL_IP: usize = 7;
    pub const TLS: usize = 8;
    pub const SESSION: usize = 9;
    pub const CLIENT: usize = 10;
    pub const DELETED: usize = 11;
    pub const RETAINED: usize = 12;
    pub const SIZE_BYTES: usize = 13;
    pub const IN_BYTES: usize = 14;
    pub const OUT_BYTES: usize = 15;
    pub const EXPUNGED: usize = 16;
    pub const TRASHED: usize = 17;
    pub const DOWNLOADED: usize = 18;
    pub const UID: usize = 19;
    pub const MESSAGE_ID: usize = 20;
    pub const FOLDER: usize = 21;
    pub const REASON: usize = 22;
    pub const ATTEMPTS: usize = 23;
    pub const MASTER_USER: usize = 24;
    pub const REASON_ARGS: usize = 25;
}

/// An access row as a pack holds it: [`ACCESS_COLUMNS`]' values.
pub type AccessVals = Vec<Val>;

/// The select list of [`ACCESS_COLUMNS`] for both backends: integers as
/// BIGINT (PostgreSQL keeps some as INTEGER, SMALLINT or BOOLEAN).
fn access_select() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        ACCESS_COLUMNS
            .iter()
            .map(|&(name, ty)| match (name, ty) {
                ("tls", _) => "CAST(CAST(tls AS INTEGER) AS BIGINT)".to_owned(),
                (_, Ty::Text) => name.to_owned(),
                _ => format!("CAST({name} AS BIGINT)"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The values of a row read with [`access_select`], starting at column
/// `first` of the result.
fn access_vals<R: sqlx::Row>(r: &R, first: usize) -> anyhow::Result<AccessVals>
where
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let mut out = Vec::with_capacity(ACCESS_COLUMNS.len());
    for (i, &(_, ty)) in ACCESS_COLUMNS.iter().enumerate() {
        out.push(match ty {
            Ty::Text => r
                .try_get::<Option<String>, _>(first + i)?
                .map_or(Val::Null, Val::Text),
            Ty::Int | Ty::Key => r
                .try_get::<Option<i64>, _>(first + i)?
                .map_or(Val::Null, Val::Int),
        });
    }
    Ok(out)
}

/// The format byte of a pack: its bytes deflated, or as they are.
const FORMAT_DEFLATE: u8 = 1;
const FORMAT_RAW: u8 = 2;

/// Rows a pack may say it holds, at most (a bound on what a damaged value
/// can make [`decode`] allocate; a mailbox's day of a large site is far
/// below it).
const MAX_ROWS: u64 = 10_000_000;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes rows of [`ACCESS_COLUMNS`] (in the order they should come
/// back) into a pack.
pub(crate) fn encode(rows: &[AccessVals]) -> anyhow::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(rows.len() * 48 + 8);
    put_varint(&mut raw, rows.len() as u64);
    let mut prev = [0i64; ACCESS_COLUMNS.len()];
    for row in rows {
        anyhow::ensure!(
            row.len() == ACCESS_COLUMNS.len(),
            "an access row of {} values, not {}",
            row.len(),
            ACCESS_COLUMNS.len()
        );
        let mut mask = 0u64;
        for (i, v) in row.iter().enumerate() {
            if *v != Val::Null {
                mask |= 1 << i;
            }
        }
        put_varint(&mut raw, mask);
        for (i, (v, &(name, ty))) in row.iter().zip(&ACCESS_COLUMNS).enumerate() {
            match (v, ty) {
                (Val::Null, _) => {}
                (Val::Int(n), Ty::Key) => raw.extend_from_slice(&n.to_le_bytes()),
                (Val::Int(n), Ty::Int) => {
                    put_varint(&mut raw, zigzag(n.wrapping_sub(prev[i])));
                    prev[i] = *n;
                }
                (Val::Text(s), Ty::Text) => {
                    put_varint(&mut raw, s.len() as u64);
                    raw.extend_from_slice(s.as_bytes());
                }
                _ => anyhow::bail!("column {name} of an access row holds a value of another type"),
            }
        }
    }
    if raw.len() < DEFLATE_FROM {
        let mut out = Vec::with_capacity(raw.len() + 1);
        out.push(FORMAT_RAW);
        out.extend_from_slice(&raw);
        return Ok(out);
    }
    DEFLATE.with_borrow_mut(|z| {
        z.reset();
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        out.push(FORMAT_DEFLATE);
        loop {
            let read = z.total_in() as usize;
            match z.compress_vec(&raw[read..], &mut out, flate2::FlushCompress::Finish)? {
                flate2::Status::StreamEnd => break,
                _ => out.reserve(out.capacity().max(64)),
            }
        }
        if out.len() > raw.len() {
            // Incompressible: kept as it is.
            out.clear();
            out.push(FORMAT_RAW);
            out.extend_from_slice(&raw);
        }
        Ok(out)
    })
}

/// Packs with fewer bytes than this before deflating are kept as they are:
/// deflating a few rows gains little and costs a compressor's setting up.
const DEFLATE_FROM: usize = 256;

thread_local! {
    /// A compressor, reset for each pack rather than made anew (its tables
    /// take hundreds of kilobytes to set up).
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::new(6), false));
}

/// Reads what [`encode`] wrote; a damaged pack is an error, never a panic.
pub fn decode(pack: &[u8]) -> anyhow::Result<Vec<AccessVals>> {
    let (&format, body) = pack.split_first().context("an empty pack")?;
    let inflated;
    let raw: &[u8] = match format {
        FORMAT_RAW => body,
        FORMAT_DEFLATE => {
            let mut out = Vec::with_capacity(body.len() * 3);
            flate2::read::DeflateDecoder::new(body)
                .read_to_end(&mut out)
                .context("inflating a pack")?;
            inflated = out;
            &inflated
        }
        other => anyhow::bail!("a pack of format {other}, not {FORMAT_RAW} or {FORMAT_DEFLATE}"),
    };
    let mut r = Reader { buf: raw, at: 0 };
    let n = r.varint()?;
    anyhow::ensure!(n <= MAX_ROWS, "a pack of {n} rows");
    let mut rows = Vec::with_capacity((n as usize).min(raw.len()));
    let mut prev = [0i64; ACCESS_COLUMNS.len()];
    for _ in 0..n {
        let mask = r.varint()?;
        anyhow::ensure!(
            mask >> ACCESS_COLUMNS.len() == 0,
            "a pack's row names a column past the last"
        );
        let mut row = Vec::with_capacity(ACCESS_COLUMNS.len());
        for (i, &(_, ty)) in ACCESS_COLUMNS.iter().enumerate() {
            if mask & (1 << i) == 0 {
                row.push(Val::Null);
                continue;
            }
            row.push(match ty {
                Ty::Key => Val::Int(i64::from_le_bytes(
                    r.bytes(8)?.try_into().expect("eight bytes"),
                )),
                Ty::Int => {
                    let v = prev[i].wrapping_add(unzigzag(r.varint()?));
                    prev[i] = v;
                    Val::Int(v)
                }
                Ty::Text => {
                    let len = usize::try_from(r.varint()?).context("a text's length")?;
                    let s = std::str::from_utf8(r.bytes(len)?).context("a pack's text")?;
                    Val::Text(s.to_owned())
                }
            });
        }
        rows.push(row);
    }
    anyhow::ensure!(r.at == raw.len(), "bytes after a pack's last row");
    Ok(rows)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> anyhow::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.at).context("a pack cut short")?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        anyhow::bail!("a pack's number of more than 64 bits")
    }

    fn bytes(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self.at.checked_add(n).context("a pack's length")?;
        let s = self.buf.get(self.at..end).context("a pack cut short")?;
        self.at = end;
        Ok(s)
    }
}

/// The order rows are kept and read in: by second, then key.
fn order(r: &AccessVals) -> (i64, i64) {
    (
        r[col::SEC].int().unwrap_or_default(),
        r[col::KEY].int().unwrap_or_default(),
    )
}

/// Puts rows in [`order`] and drops a second row of the same key.
fn sort_dedup(rows: &mut Vec<AccessVals>) {
    rows.sort_by_key(order);
    rows.dedup_by_key(|r| order(r));
}

/// Mailbox ids per transaction of [`Store::pack_day`]: a range's rows are
/// read, packed and deleted while the write lock is held (about 0.1 s for
/// a range of a large site's day), so the ingest waits no longer.
const PACK_RANGE: i64 = 1024;

/// What [`Store::pack_day`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// Plain rows moved into packs.
    pub rows: u64,
    /// Packs written (a mailbox's day each).
    pub packs: u64,
}

impl Store {
    /// Packs the plain access rows of `day` into the day's packs (with
    /// what those hold already), a range of mailboxes per transaction, so
    /// an interruption leaves every row either plain or packed, never
    /// both or neither; returns what was moved. Call it for a complete
    /// day: today's rows are still coming.
    pub async fn pack_day(&self, day: i32) -> anyhow::Result<Packed> {
        const BOUNDS: &str = "SELECT CAST(MIN(mailbox_id) AS BIGINT), CAST(MAX(mailbox_id) AS BIGINT) \
            FROM access_rows WHERE day = $1";
        let (lo, hi): (Option<i64>, Option<i64>) = on_pool!(self, p => sqlx::query_as(BOUNDS)
            .bind(day)
            .fetch_one(p)
            .await?);
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Packed::default());
        };
        let mut done = Packed::default();
        let mut from = lo;
        match self {
            Store::Sqlite(p) => {
                while from <= hi {
                    let to = from.saturating_add(PACK_RANGE);
                    let moved = pack_range_sqlite(p, day, from, to).await?;
                    done.rows += moved.rows;
                    done.packs += moved.packs;
                    from = to;
                    if to == i64::MAX {
                        break;
                    }
                }
            }
            Store::Postgres(p) => {
                // Days stored before packs existed have no pack partition yet.
                partitions::ensure_days(p, &[day]).await?;
                while from <= hi {
                    let to = from.saturating_add(PACK_RANGE);
                    let moved = pack_range_pg(p, day, from, to).await?;
                    done.rows += moved.rows;
                    done.packs += moved.packs;
                    from = to;
                    if to == i64::MAX {
                        break;
                    }
                }
                empty_partition_pg(p, day).await?;
            }
        }
        Ok(done)
    }

    /// Whether `day` has plain access rows (which [`Store::pack_day`]
    /// would pack).
    pub async fn has_plain_access(&self, day: i32) -> anyhow::Result<bool> {
        const SQL: &str = "SELECT 1 FROM access_rows WHERE day = $1 LIMIT 1";
        let any: Option<i32> =
            on_pool!(self, p => sqlx::query_scalar(SQL).bind(day).fetch_optional(p).await?);
        Ok(any.is_some())
    }

    /// The access rows of one mailbox's day, packed and plain together,
    /// by second and key.
    pub(crate) async fn access_day(
        &self,
        day: i32,
        mailbox_id: i64,
    ) -> anyhow::Result<Vec<AccessVals>> {
        const PACK: &str = "SELECT data FROM access_packs WHERE day = $1 AND mailbox_id = $2";
        let plain_sql = format!(
            "SELECT {} FROM access_rows WHERE day = $1 AND mailbox_id = $2 ORDER BY sec, key",
            access_select()
        );
        // The plain rows first, then the pack: a packing that commits in
        // between moved rows already read into the pack read after (read
        // twice, kept once), never rows not yet read out of the plain
        // table into a pack already read.
        on_pool!(self, p => {
            let mut rows = Vec::new();
            for r in sqlx::query(sqlx::AssertSqlSafe(plain_sql))
                .bind(day)
                .bind(mailbox_id)
                .fetch_all(p)
                .await?
            {
                rows.push(access_vals(&r, 0)?);
            }
            let pack: Option<Vec<u8>> = sqlx::query_scalar(PACK)
                .bind(day)
                .bind(mailbox_id)
                .fetch_optional(p)
                .await?;
            if let Some(pack) = pack {
                rows.extend(
                    decode(&pack)
                        .with_context(|| format!("the pack of mailbox {mailbox_id} on {day}"))?,
                );
                sort_dedup(&mut rows);
            }
            Ok(rows)
        })
    }
}

const OLD_PACKS: &str = "SELECT CAST(mailbox_id AS BIGINT), data FROM access_packs \
    WHERE day = $1 AND mailbox_id >= $2 AND mailbox_id < $3";
const DELETE_RANGE: &str =
    "DELETE FROM access_rows WHERE day = $1 AND mailbox_id >= $2 AND mailbox_id < $3";

/// Packs written per statement (four values each).
const PUT_CHUNK: usize = 64;

fn put_sql(packs: usize) -> String {
    let mut s = String::from("INSERT INTO access_packs (day, mailbox_id, rows, data) VALUES ");
    for i in 0..packs {
        if i > 0 {
            s.push_str(", ");
        }
        let b = i * 4;
        s.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
    }
    s.push_str(
        " ON CONFLICT (day, mailbox_id) DO UPDATE SET rows = excluded.rows, data = excluded.data",
    );
    s
}

/// The rest of a range of [`Store::pack_day`], the same on both backends,
/// in the open transaction `$tx`: the range's plain rows `$plain`
/// ((mailbox id, values) each) merged with its packs, the packs written,
/// the plain rows deleted, and the transaction committed; evaluates to
/// what was moved.
macro_rules! finish_range {
    ($tx:expr, $day:expr, $from:expr, $to:expr, $plain:expr) => {{
        let plain: Vec<(i64, AccessVals)> = $plain;
        let moved = plain.len() as u64;
        let old: Vec<(i64, Vec<u8>)> = sqlx::query_as(OLD_PACKS)
            .bind($day)
            .bind($from)
            .bind($to)
            .fetch_all(&mut *$tx)
            .await?;
        let packs = build_packs($day, plain, old)?;
        let full = put_sql(PUT_CHUNK);
        for chunk in packs.chunks(PUT_CHUNK) {
            let sql = if chunk.len() == PUT_CHUNK {
                full.clone()
            } else {
                put_sql(chunk.len())
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, n, data) in chunk {
                q = q.bind($day).bind(*id).bind(*n).bind(data.as_slice());
            }
            q.execute(&mut *$tx).await?;
        }
        sqlx::query(DELETE_RANGE)
            .bind($day)
            .bind($from)
            .bind($to)
            .execute(&mut *$tx)
            .await?;
        $tx.commit().await?;
        Packed {
            rows: moved,
            packs: packs.len() as u64,
        }
    }};
}

/// The packs of a range: its plain rows (mailbox id, values; by mailbox),
/// with the rows of the range's packs (`old`), each mailbox's rows put in
/// order and encoded. Returns (mailbox id, rows, pack) for each mailbox
/// with plain rows.
fn build_packs(
    day: i32,
    plain: Vec<(i64, AccessVals)>,
    old: Vec<(i64, Vec<u8>)>,
) -> anyhow::Result<Vec<(i64, i64, Vec<u8>)>> {
    let mut by_mailbox: std::collections::BTreeMap<i64, Vec<AccessVals>> =
        std::collections::BTreeMap::new();
    for (id, row) in plain {
        by_mailbox.entry(id).or_default().push(row);
    }
    for (id, data) in old {
        if let Some(rows) = by_mailbox.get_mut(&id) {
            rows.extend(
                decode(&data).with_context(|| format!("the pack of mailbox {id} on {day}"))?,
            );
        }
    }
    by_mailbox
        .into_iter()
        .map(|(id, mut rows)| {
            sort_dedup(&mut rows);
            Ok((id, rows.len() as i64, encode(&rows)?))
        })
        .collect()
}

/// One range of [`Store::pack_day`] on SQLite: read, packed and deleted in
/// one write transaction (the ingest waits its turn meanwhile).
async fn pack_range_sqlite(
    p: &sqlx::SqlitePool,
    day: i32,
    from: i64,
    to: i64,
) -> anyhow::Result<Packed> {
    let sql = std::ffi::CString::new(format!(
        "SELECT mailbox_id, {} FROM access_rows WHERE day = ?1 AND mailbox_id >= ?2 AND mailbox_id < ?3 \
         ORDER BY mailbox_id, sec, key",
        access_select()
    ))
    .expect("no NUL in the query");
    let _turn = super::SQLITE_WRITE.lock().await;
    let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
    let plain = {
        let mut handle = tx.lock_handle().await?;
        // SAFETY: the handle lock gives this thread the connection alone
        // until the read returns; the transaction is open on it.
        unsafe {
            super::sqlite_bulk::read_vals(
                handle.as_raw_handle(),
                &sql,
                &[i64::from(day), from, to],
            )?
        }
    };
    if plain.is_empty() {
        return Ok(Packed::default());
    }
    let plain = plain
        .into_iter()
        .map(|mut r| {
            let id = r.remove(0).int().context("a row without its mailbox")?;
            Ok((id, r))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(finish_range!(tx, day, from, to, plain))
}

/// One range of [`Store::pack_day`] on PostgreSQL: the day's partition is
/// locked against writers (readers go on) while the range's rows are read,
/// packed and deleted, so the rows deleted are the rows read.
async fn pack_range_pg(p: &sqlx::PgPool, day: i32, from: i64, to: i64) -> anyhow::Result<Packed> {
    let sql = format!(
        "SELECT CAST(mailbox_id AS BIGINT), {} FROM access_rows WHERE day = $1 AND mailbox_id >= $2 AND mailbox_id < $3 \
         ORDER BY mailbox_id, sec, key",
        access_select()
    );
    // `day` went through `ensure_days`, a checked date: the name is the
    // table's and digits.
    let partition = format!("access_rows_{day}");
    let mut tx = p.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '30s'; LOCK TABLE {partition} IN EXCLUSIVE MODE"
    )))
    .execute(&mut *tx)
    .await
    .with_context(|| format!("locking {partition}"))?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(day)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        return Ok(Packed::default());
    }
    let plain = rows
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, access_vals(r, 1)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    drop(rows);
    Ok(finish_range!(tx, day, from, to, plain))
}

/// After packing on PostgreSQL: the deletes left the day's partition full
/// of dead rows, so an empty partition is emptied for good (a row that
/// came meanwhile keeps it as it is, until the next packing).
async fn empty_partition_pg(p: &sqlx::PgPool, day: i32) -> anyhow::Result<()> {
    let partition = format!("access_rows_{day}");
    let mut tx = p.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '5s'; LOCK TABLE {partition} IN EXCLUSIVE MODE"
    )))
    .execute(&mut *tx)
    .await?;
    let any: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {partition} LIMIT 1"
    )))
    .fetch_optional(&mut *tx)
    .await?;
    if any.is_none() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("TRUNCATE {partition}")))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The (mailbox, second, key) of every row the packs of `$day` hold for
/// the mailbox ids `$ids` (an expression evaluated only when the day has
/// packs), read in the open transaction `$conn`: for the
/// ingest, which stores a row of a packed day only when its pack does not
/// hold it (a line read twice is stored once). One query for a day
/// without packs, the ingest's usual case (today's rows).
macro_rules! packed_keys {
    ($conn:expr, $day:expr, $ids:expr) => {{
        const ANY: &str = "SELECT 1 FROM access_packs WHERE day = $1 LIMIT 1";
        const PACK: &str = "SELECT data FROM access_packs WHERE day = $1 AND mailbox_id = $2";
        let day: i32 = $day;
        let mut out = std::collections::HashSet::<(i64, i64, i64)>::new();
        let any: Option<i32> = sqlx::query_scalar(ANY)
            .bind(day)
            .fetch_optional(&mut *$conn)
            .await?;
        if any.is_some() {
            let ids: Vec<i64> = $ids;
            for &id in &ids {
                let pack: Option<Vec<u8>> = sqlx::query_scalar(PACK)
                    .bind(day)
                    .bind(id)
                    .fetch_optional(&mut *$conn)
                    .await?;
                if let Some(pack) = pack {
                    out.extend($crate::store::packs::keys(&pack, id, day)?);
                }
            }
        }
        out
    }};
}

/// The (mailbox `id`, second, key) of each row of a pack.
pub(crate) fn keys(pack: &[u8], id: i64, day: i32) -> anyhow::Result<Vec<(i64, i64, i64)>> {
    Ok(decode(pack)
        .with_context(|| format!("the pack of mailbox {id} on {day}"))?
        .iter()
        .map(|r| {
            let (sec, key) = order(r);
            (id, sec, key)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sec: i64, key: i64) -> AccessVals {
        let mut r = vec![Val::Null; ACCESS_COLUMNS.len()];
        r[col::KEY] = Val::Int(key);
        r[col::SEC] = Val::Int(sec);
        r[col::USEC] = Val::Int(0);
        r[col::KIND] = Val::Int(1);
        r[col::HOST] = Val::Int(7);
        r
    }

    #[test]
    fn every_value_comes_back() {
        let mut a = row(1_793_548_870, i64::MIN);
        a[col::SESSION] = Val::Text("ByiiL+hfXPHLAHGy".into());
        a[col::MESSAGE_ID] = Val::Text(String::new());
        a[col::REASON_ARGS] = Val::Text("\u{1b}[31m<script>\0\u{202e}名".into());
        a[col::TLS] = Val::Int(0);
        a[col::DELETED] = Val::Int(i64::MAX);
        a[col::RETAINED] = Val::Int(i64::MIN);
        let mut b = row(1_793_548_870, i64::MAX);
        b[col::DELETED] = Val::Int(-1);
        b[col::UID] = Val::Int(0);
        let mut c = row(0, 0);
        for (i, &(_, ty)) in ACCESS_COLUMNS.iter().enumerate() {
            c[i] = match ty {
                Ty::Text => Val::Text(format!("t{i}")),
                _ => Val::Int(-(i as i64) * 1_000_003),
            };
        }
        let rows = vec![a, b, c, row(5, 5)];
        // A few rows are kept as they are, many deflated: both read back.
        let pack = encode(&rows).unwrap();
        assert_eq!(pack[0], FORMAT_RAW);
        assert_eq!(decode(&pack).unwrap(), rows);
        let many: Vec<AccessVals> = rows.iter().cycle().take(400).cloned().collect();
        let pack = encode(&many).unwrap();
        assert_eq!(pack[0], FORMAT_DEFLATE);
        assert_eq!(decode(&pack).unwrap(), many);
        assert_eq!(
            decode(&encode(&[]).unwrap()).unwrap(),
            Vec::<AccessVals>::new()
        );
    }

    #[test]
    fn a_damaged_pack_is_an_error() {
        let rows: Vec<AccessVals> = (0..50).map(|i| row(i, i * 31)).collect();
        let pack = encode(&rows).unwrap();
        assert_eq!(pack[0], FORMAT_DEFLATE);
        assert!(decode(&[]).is_err());
        assert!(decode(&[FORMAT_DEFLATE]).is_err());
        assert!(decode(&[FORMAT_RAW]).is_err());
        assert!(decode(&[3, 0]).is_err());
        let small = encode(&rows[..2]).unwrap();
        assert_eq!(small[0], FORMAT_RAW);
        for cut in 1..small.len() {
            assert!(decode(&small[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = small.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        for cut in [1, 2, pack.len() / 2, pack.len() - 1] {
            assert!(decode(&pack[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = pack.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        // A flipped byte inflates to other bytes or fails; either way no
        // panic, and never the same rows back.
        if let Ok(back) = decode(&flipped) {
            assert_ne!(back, rows);
        }
    }

    #[test]
    fn a_row_of_another_shape_is_refused() {
        assert!(encode(&[vec![Val::Null; 3]]).is_err());
        let mut r = row(1, 1);
        r[col::SESSION] = Val::Int(3);
        assert!(encode(&[r]).is_err());
    }

    #[test]
    fn sorting_drops_repeats() {
        let mut rows = vec![row(5, 2), row(5, 1), row(4, 9), row(5, 1)];
        sort_dedup(&mut rows);
        let keys: Vec<_> = rows.iter().map(order).collect();
        assert_eq!(keys, [(4, 9), (5, 1), (5, 2)]);
    }
}
