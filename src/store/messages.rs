//! `message_rows`: mail received by local mailboxes and what became of it
//! (migrations 0010; the rows come from [`crate::ingest::received`]).
//!
//! They are written by the bulk paths of the other event rows (SQLite's raw
//! handle, PostgreSQL's binary COPY: [`MessageRecord`]) in the ingest's
//! transaction, so they share its crash safety: a batch's rows, checkpoint
//! and state commit together, and a line read twice stores nothing twice
//! (same key).

use super::packs::Val;
use super::{Store, days_between, sqlite_bulk};
use crate::ingest::received::{MessageRow, MsgKind, msgid_hash};

/// The `msgid_hash` of a folder's event, so that `locate` finds them
/// beside a message's own rows.
pub const FOLDER_HASH: i64 = 1;

/// A message row as stored: its mailbox's id and the hash `locate` finds
/// it by.
pub(crate) struct MessageRecord<'a> {
    pub row: &'a MessageRow,
    pub mailbox_id: i64,
    pub msgid_hash: i64,
}

impl<'a> MessageRecord<'a> {
    pub(crate) fn new(row: &'a MessageRow, mailbox_id: i64) -> MessageRecord<'a> {
        MessageRecord {
            row,
            mailbox_id,
            // As the parser's thread hashed it (never 0 for a row with a
            // Message-ID or a folder's), or now.
            msgid_hash: if row.msgid_hash != 0 {
                row.msgid_hash
            } else {
                row_hash(row)
            },
        }
    }

    pub(crate) fn sec(&self) -> i64 {
        self.row.time_us.div_euclid(1_000_000)
    }

    pub(crate) fn usec(&self) -> i32 {
        self.row.time_us.rem_euclid(1_000_000) as i32
    }
}

/// The hash a row is found by (see [`FOLDER_HASH`]).
pub fn row_hash(r: &MessageRow) -> i64 {
    match r.kind() {
        Some(MsgKind::FolderCreated | MsgKind::FolderDeleted | MsgKind::FolderRenamed) => {
            FOLDER_HASH
        }
        _ => r.message_id.as_deref().map_or(0, msgid_hash),
    }
}

// `kind` is a SMALLINT on PostgreSQL: read as an INTEGER on both.
const SELECT: &str = "SELECT day, sec, usec, key, CAST(kind AS INTEGER) AS kind, host, queue_id, session, protocol, message_id, \
    sender, subject, client, folder, other, size, uid, status, reply FROM message_rows";

fn from_row<R>(mailbox: &str, r: &R) -> anyhow::Result<MessageRow>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let sec: i64 = r.try_get("sec")?;
    let usec: i32 = r.try_get("usec")?;
    let kind: i32 = r.try_get("kind")?;
    let text =
        |c: &str| -> anyhow::Result<Option<String>> { Ok(r.try_get::<Option<String>, _>(c)?) };
    Ok(MessageRow {
        key: r.try_get("key")?,
        time_us: sec * 1_000_000 + usec as i64,
        day: r.try_get("day")?,
        mailbox: mailbox.into(),
        mailbox_no: None,
        msgid_hash: 0,
        kind: kind as i16,
        host: r.try_get::<String, _>("host")?.into(),
        queue_id: text("queue_id")?.map(Into::into),
        session: text("session")?.map(Into::into),
        protocol: text("protocol")?.map(Into::into),
        message_id: text("message_id")?,
        sender: text("sender")?,
        subject: text("subject")?,
        client: text("client")?,
        folder: text("folder")?,
        other: text("other")?,
        size: r.try_get("size")?,
        uid: r.try_get("uid")?,
        status: text("status")?.map(Into::into),
        reply: text("reply")?,
    })
}

/// A row read through SQLite's raw handle ([`SELECT`]'s columns, in
/// order), as [`from_row`] reads one through sqlx.
fn from_vals(mailbox: &str, mut v: Vec<Val>) -> anyhow::Result<MessageRow> {
    anyhow::ensure!(v.len() == 19, "a message row of {} columns", v.len());
    let int = |v: &Val, c: &str| {
        v.int()
            .ok_or_else(|| anyhow::anyhow!("{c} is not an integer"))
    };
    let (day, sec, usec, key, kind) = (
        int(&v[0], "day")?,
        int(&v[1], "sec")?,
        int(&v[2], "usec")?,
        int(&v[3], "key")?,
        int(&v[4], "kind")?,
    );
    let (size, uid) = (v[15].int(), v[16].int());
    let mut text = |i: usize| v[i].take_text();
    Ok(MessageRow {
        key,
        time_us: sec * 1_000_000 + usec,
        day: i32::try_from(day)?,
        mailbox: mailbox.into(),
        mailbox_no: None,
        msgid_hash: 0,
        kind: i16::try_from(kind)?,
        host: text(5).unwrap_or_default().into(),
        queue_id: text(6).map(Into::into),
        session: text(7).map(Into::into),
        protocol: text(8).map(Into::into),
        message_id: text(9),
        sender: text(10),
        subject: text(11),
        client: text(12),
        folder: text(13),
        other: text(14),
        size,
        uid,
        status: text(17).map(Into::into),
        reply: text(18),
    })
}

impl Store {
    /// The message rows `{SELECT} WHERE {filter}` picks, `params` bound to
    /// its `$1`, `$2` ... in order. SQLite's are read on this thread as
    /// the statement steps (through sqlx, each value is boxed and handed
    /// over from its worker thread: most of a large received report's
    /// load).
    async fn message_rows_where(
        &self,
        mailbox: &str,
        filter: &str,
        params: &[i64],
    ) -> anyhow::Result<Vec<MessageRow>> {
        let sql = format!("{SELECT} WHERE {filter}");
        match self {
            Store::Sqlite(p) => {
                let sql = std::ffi::CString::new(sql)?;
                let mut conn = p.acquire().await?;
                let mut handle = conn.lock_handle().await?;
                // SAFETY: the handle lock gives this thread the connection
                // alone until the read returns.
                let vals = unsafe { sqlite_bulk::read_vals(handle.as_raw_handle(), &sql, params)? };
                vals.into_iter().map(|v| from_vals(mailbox, v)).collect()
            }
            Store::Postgres(p) => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for &v in params {
                    q = q.bind(v);
                }
                let got = q.fetch_all(p).await?;
                got.iter().map(|r| from_row(mailbox, r)).collect()
            }
        }
    }

    /// A mailbox's rows of the newest days of `from_day..=to_day` until
    /// they hold more than `max_entries` rows that are entries of a
    /// received report (deliveries, forwards, refusals, holds), in time
    /// order; and for each older day, its rows counted by kind, unread.
    pub async fn message_rows_newest(
        &self,
        mailbox: &str,
        from_day: i32,
        to_day: i32,
        max_entries: usize,
    ) -> anyhow::Result<(Vec<MessageRow>, Vec<(i32, Vec<(i32, i64)>)>)> {
        let Some(id) = self.mailbox_id(mailbox).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        const COUNTS: &str = "SELECT CAST(kind AS INTEGER), COUNT(*) FROM message_rows \
            WHERE day = $1 AND mailbox_id = $2 GROUP BY kind";
        let mut rows = Vec::new();
        let mut counted = Vec::new();
        let mut entries = 0usize;
        for day in days_between(from_day, to_day).into_iter().rev() {
            if entries > max_entries {
                let c: Vec<(i32, i64)> = on_pool!(self, p => sqlx::query_as(COUNTS).bind(day).bind(id).fetch_all(p).await?);
                counted.push((day, c));
                continue;
            }
            let got = self
                .message_rows_where(
                    mailbox,
                    "day = $1 AND mailbox_id = $2",
                    &[i64::from(day), id],
                )
                .await?;
            entries += got
                .iter()
                .filter(|r| r.kind().is_some_and(MsgKind::is_entry))
                .count();
            rows.extend(got);
        }
        rows.sort_by_key(|r| (r.time_us, r.key));
        Ok((rows, counted))
    }

    /// A mailbox's rows that name the Message-ID `id`, and its folders'
    /// events, over all days kept, in time order: a seek of (day, mailbox,
    /// hash) in each day's part of the primary key.
    pub async fn message_trail(&self, mailbox: &str, id: &str) -> anyhow::Result<Vec<MessageRow>> {
        let Some(mid) = self.mailbox_id(mailbox).await? else {
            return Ok(Vec::new());
        };
        // Two statements: SQLite answers a lone MIN or MAX of the key's
        // first column from the key's end, but both in one statement by
        // reading every row.
        const FIRST: &str = "SELECT MIN(day) FROM message_rows";
        const LAST: &str = "SELECT MAX(day) FROM message_rows";
        let first: Option<i32> = on_pool!(self, p => sqlx::query_scalar(FIRST).fetch_one(p).await?);
        let last: Option<i32> = on_pool!(self, p => sqlx::query_scalar(LAST).fetch_one(p).await?);
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(Vec::new());
        };
        let hash = msgid_hash(id);
        let mut rows = Vec::new();
        for day in days_between(first, last) {
            let got = self
                .message_rows_where(
                    mailbox,
                    "day = $1 AND mailbox_id = $2 AND msgid_hash IN ($3, $4)",
                    &[i64::from(day), mid, hash, FOLDER_HASH],
                )
                .await?;
            rows.extend(got);
        }
        rows.sort_by_key(|r| (r.time_us, r.key));
        Ok(rows)
    }

    /// The login rows (session, remote IP, client) of the given Dovecot
    /// sessions of a mailbox, from the access rows of the days given
    /// (those of the sessions' events, and the day before each, for a
    /// session that began before midnight).
    pub async fn session_logins(
        &self,
        mailbox: &str,
        sessions: &[String],
        days: &[i32],
    ) -> anyhow::Result<Vec<(String, Option<String>, Option<String>)>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        // A session's login is on its first event's day, or the day
        // before; each day is read once, and no more once every session
        // is found.
        let mut wanted: Vec<i32> = days
            .iter()
            .flat_map(|&d| {
                let before = crate::domain::Day::from_key(d).map(|x| x.minus(1).key());
                std::iter::once(d).chain(before)
            })
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        for d in wanted.into_iter().rev() {
            if sessions.iter().all(|s| out.iter().any(|(o, _, _)| o == s)) {
                break;
            }
            for e in self.access_events(mailbox, d, d).await? {
                if e.kind == Some(crate::ingest::access::AccessKind::Login)
                    && let Some(s) = &e.session
                    && sessions.iter().any(|x| x == s.as_str())
                    && !out.iter().any(|(o, _, _)| o == s.as_str())
                {
                    out.push((
                        s.to_string(),
                        e.remote_ip.as_ref().map(|t| t.to_string()),
                        e.client.as_ref().map(|t| t.to_string()),
                    ));
                }
            }
        }
        Ok(out)
    }
}
