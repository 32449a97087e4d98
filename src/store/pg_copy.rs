//! The bulk write of event rows into PostgreSQL: `COPY ... FROM STDIN` in
//! binary format.
//!
//! A log read twice must store nothing twice, and COPY cannot skip a row
//! whose key is stored already: it fails. So a batch is first copied
//! straight into its table under a savepoint, which is all a batch of new
//! rows needs (a log read for the first time); when that fails on a stored
//! key (an error PostgreSQL writes to its log, with the key), the
//! savepoint takes it back and the batch goes the longer way: into
//! a temporary table of the connection (`pg_temp.mt_smtp_stage`,
//! `pg_temp.mt_access_stage`, made on first use, emptied at every commit
//! and before a second use in one transaction), and from there into
//! `smtp_rows` / `access_rows` with `INSERT ... ON CONFLICT DO NOTHING`,
//! which also keeps the first of two rows of one key in a batch.
//! Everything happens in the caller's transaction, which also holds the
//! checkpoint and the correlator's state: a crash leaves all of it or
//! none. The partitions of the rows' days must exist first
//! ([`super::partitions::ensure_days`], outside the transaction).
//!
//! The binary format (PostgreSQL's documentation, "COPY", "Binary
//! Format"): a signature, flags and header extension length; per row the
//! number of fields (int16), then per field its length in bytes (int32,
//! -1 for NULL) and its value as the type's binary "send" form (integers
//! big-endian, `bool` one byte, `text` its UTF-8 bytes); at the end the
//! field count -1. Each value must have its column's exact width, so the
//! ids the records carry as `i64` go into `INTEGER` columns as 4 bytes,
//! after a check.

use anyhow::Context;
use sqlx::PgConnection;

use super::messages::MessageRecord;
use super::records::{AccessRecord, SmtpRecord};

/// The 11-byte signature that opens a binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Bytes of encoded rows sent per message: large enough that messages cost
/// nothing, small enough that a batch is never held twice in memory.
const CHUNK_BYTES: usize = 1 << 20;

/// Encodes rows in COPY's binary format.
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder holding the stream's header.
    pub(crate) fn new() -> Encoder {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 3));
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Encoder { buf }
    }

    /// What is encoded and not yet taken.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets what [`Encoder::bytes`] gave (once it was sent).
    fn clear(&mut self) {
        self.buf.clear();
    }

    /// Starts a row of `fields` values.
    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    /// Ends the stream.
    pub(crate) fn end(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn value(&mut self, bytes: &[u8]) {
        // Callers give at most 8 bytes, or a text checked in `text`.
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn int8(&mut self, v: i64) {
        self.value(&v.to_be_bytes());
    }

    fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    fn int4(&mut self, v: i32) {
        self.value(&v.to_be_bytes());
    }

    fn int2(&mut self, v: i16) {
        self.value(&v.to_be_bytes());
    }

    /// An id for an `INTEGER` column (`column` names it in the error).
    fn id(&mut self, v: i64, column: &str) -> anyhow::Result<()> {
        let v = i32::try_from(v)
            .map_err(|_| anyhow::anyhow!("{column} id {v} is out of the range of its column"))?;
        self.int4(v);
        Ok(())
    }

    fn opt_id(&mut self, v: Option<i64>, column: &str) -> anyhow::Result<()> {
        match v {
            Some(v) => self.id(v, column),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    fn opt_bool(&mut self, v: Option<bool>) {
        match v {
            Some(v) => self.value(&[u8::from(v)]),
            None => self.null(),
        }
    }

    /// A `text` value. PostgreSQL's text holds no NUL character (the log
    /// reader replaces them, so one here is a fault of this program).
    fn text(&mut self, v: Option<&str>, column: &str) -> anyhow::Result<()> {
        match v {
            None => self.null(),
            Some(s) => {
                anyhow::ensure!(
                    !s.contains('\0'),
                    "{column} holds a NUL character, which PostgreSQL cannot store"
                );
                anyhow::ensure!(
                    i32::try_from(s.len()).is_ok(),
                    "{column} is longer than PostgreSQL can store"
                );
                self.value(s.as_bytes());
            }
        }
        Ok(())
    }
}

/// A row that [`write`] can store.
pub(crate) trait Stored {
    /// What the rows are, for errors.
    const WHAT: &'static str;
    /// Makes the staging table if this connection has none yet (without
    /// `IF NOT EXISTS`, whose notice would be logged at every batch), and
    /// makes sure it is empty.
    const STAGE: &'static str;
    /// `COPY` into the table itself, naming the columns in the order
    /// [`Stored::encode`] writes them.
    const COPY: &'static str;
    /// `COPY` into the staging table, the same columns.
    const COPY_STAGE: &'static str;
    /// Moves the staged rows into their table, skipping stored keys.
    const MOVE: &'static str;
    /// Fields per row.
    const FIELDS: i16;

    fn encode(&self, e: &mut Encoder) -> anyhow::Result<()>;
}

macro_rules! smtp_columns {
    () => {
        "sec, key, day, mailbox_id, usec, host, sender_ip, relay, dsn, reply, kind, queue_id, recipient, reply_args"
    };
}

macro_rules! access_columns {
    () => {
        "sec, key, deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, \
         day, mailbox_id, usec, host, protocol, remote_ip, local_ip, client, folder, reason, master_user, \
         kind, tls, session, message_id, reason_args"
    };
}

/// The statement that makes a staging table like `$table`, or empties it
/// if an earlier write of the same transaction left rows in it. (Commits
/// empty it in place; a TRUNCATE in a later transaction gives the table a
/// new file, a row changed in the catalog, so it is done only when
/// needed.)
macro_rules! stage_sql {
    ($stage:literal, $table:literal) => {
        concat!(
            "DO $$ BEGIN IF to_regclass('pg_temp.",
            $stage,
            "') IS NULL THEN ",
            "CREATE TEMPORARY TABLE ",
            $stage,
            " (LIKE ",
            $table,
            ") ON COMMIT DELETE ROWS; ",
            "ELSIF EXISTS (SELECT FROM pg_temp.",
            $stage,
            ") THEN TRUNCATE pg_temp.",
            $stage,
            "; ",
            "END IF; END $$"
        )
    };
}

impl Stored for SmtpRecord<'_> {
    const WHAT: &'static str = "SMTP rows";
    const STAGE: &'static str = stage_sql!("mt_smtp_stage", "smtp_rows");
    const COPY: &'static str = concat!(
        "COPY smtp_rows (",
        smtp_columns!(),
        ") FROM STDIN (FORMAT binary)"
    );
    const COPY_STAGE: &'static str = concat!(
        "COPY pg_temp.mt_smtp_stage (",
        smtp_columns!(),
        ") FROM STDIN (FORMAT binary)"
    );
    const MOVE: &'static str = concat!(
        "INSERT INTO smtp_rows (",
        smtp_columns!(),
        ") SELECT ",
        smtp_columns!(),
        " FROM pg_temp.mt_smtp_stage ON CONFLICT DO NOTHING"
    );
    const FIELDS: i16 = 14;

    fn encode(&self, e: &mut Encoder) -> anyhow::Result<()> {
        e.row(Self::FIELDS);
        e.int8(self.sec);
        e.int8(self.key);
        e.int4(self.day);
        e.id(self.mailbox_id, "mailbox_id")?;
        e.int4(self.usec);
        e.id(self.host, "host")?;
        e.opt_id(self.sender_ip, "sender_ip")?;
        e.opt_id(self.relay, "relay")?;
        e.opt_id(self.dsn, "dsn")?;
        e.opt_id(self.reply, "reply")?;
        e.int2(self.kind);
        e.text(self.queue_id, "queue_id")?;
        e.text(self.recipient, "recipient")?;
        e.text(self.reply_args.as_deref(), "reply_args")
    }
}

impl Stored for AccessRecord<'_> {
    const WHAT: &'static str = "access rows";
    const STAGE: &'static str = stage_sql!("mt_access_stage", "access_rows");
    const COPY: &'static str = concat!(
        "COPY access_rows (",
        access_columns!(),
        ") FROM STDIN (FORMAT binary)"
    );
    const COPY_STAGE: &'static str = concat!(
        "COPY pg_temp.mt_access_stage (",
        access_columns!(),
        ") FROM STDIN (FORMAT binary)"
    );
    const MOVE: &'static str = concat!(
        "INSERT INTO access_rows (",
        access_columns!(),
        ") SELECT ",
        access_columns!(),
        " FROM pg_temp.mt_access_stage ON CONFLICT DO NOTHING"
    );
    const FIELDS: i16 = 28;

    fn encode(&self, e: &mut Encoder) -> anyhow::Result<()> {
        e.row(Self::FIELDS);
        e.int8(self.sec);
        e.int8(self.key);
        e.opt_int8(self.deleted);
        e.opt_int8(self.retained);
        e.opt_int8(self.size_bytes);
        e.opt_int8(self.in_bytes);
        e.opt_int8(self.out_bytes);
        e.opt_int8(self.expunged);
        e.opt_int8(self.trashed);
        e.opt_int8(self.downloaded);
        e.opt_int8(self.attempts);
        e.opt_int8(self.uid);
        e.int4(self.day);
        e.id(self.mailbox_id, "mailbox_id")?;
        e.int4(self.usec);
        e.id(self.host, "host")?;
        e.opt_id(self.protocol, "protocol")?;
        e.opt_id(self.remote_ip, "remote_ip")?;
        e.opt_id(self.local_ip, "local_ip")?;
        e.opt_id(self.client, "client")?;
        e.opt_id(self.folder, "folder")?;
        e.opt_id(self.reason, "reason")?;
        e.opt_id(self.master_user, "master_user")?;
        e.int2(self.kind);
        e.opt_bool(self.tls);
        e.text(self.session, "session")?;
        e.text(self.message_id, "message_id")?;
        e.text(self.reason_args.as_deref(), "reason_args")
    }
}

macro_rules! message_columns {
    () => {
        "sec, key, msgid_hash, size, uid, day, mailbox_id, usec, kind, host, queue_id, session, protocol, \
         message_id, sender, subject, client, folder, other, status, reply"
    };
}

impl Stored for MessageRecord<'_> {
    const WHAT: &'static str = "received-mail rows";
    const STAGE: &'static str = stage_sql!("mt_message_stage", "message_rows");
    const COPY: &'static str = concat!(
        "COPY message_rows (",
        message_columns!(),
        ") FROM STDIN (FORMAT binary)"
    );
    const COPY_STAGE: &'static str = concat!(
        "COPY pg_temp.mt_message_stage (",
        message_columns!(),
        ") FROM STDIN (FORMAT binary)"
    );
    const MOVE: &'static str = concat!(
        "INSERT INTO message_rows (",
        message_columns!(),
        ") SELECT ",
        message_columns!(),
        " FROM pg_temp.mt_message_stage ON CONFLICT DO NOTHING"
    );
    const FIELDS: i16 = 21;

    fn encode(&self, e: &mut Encoder) -> anyhow::Result<()> {
        let m = self.row;
        e.row(Self::FIELDS);
        e.int8(self.sec());
        e.int8(m.key);
        e.int8(self.msgid_hash);
        e.opt_int8(m.size);
        e.opt_int8(m.uid);
        e.int4(m.day);
        e.id(self.mailbox_id, "mailbox_id")?;
        e.int4(self.usec());
        e.int2(m.kind);
        e.text(Some(m.host.as_str()), "host")?;
        e.text(m.queue_id.as_deref(), "queue_id")?;
        e.text(m.session.as_deref(), "session")?;
        e.text(m.protocol.as_deref(), "protocol")?;
        e.text(m.message_id.as_deref(), "message_id")?;
        e.text(m.sender.as_deref(), "sender")?;
        e.text(m.subject.as_deref(), "subject")?;
        e.text(m.client.as_deref(), "client")?;
        e.text(m.folder.as_deref(), "folder")?;
        e.text(m.other.as_deref(), "other")?;
        e.text(m.status.as_deref(), "status")?;
        e.text(m.reply.as_deref(), "reply")
    }
}

/// Stores received-mail rows, as [`write_smtp`] does SMTP rows.
pub(crate) async fn write_messages(
    conn: &mut PgConnection,
    rows: &[MessageRecord<'_>],
) -> anyhow::Result<u64> {
    write(conn, rows).await
}

/// Stores SMTP rows in the connection's open transaction; returns how many
/// were new (a row whose key is stored already is skipped). Does not
/// commit.
pub(crate) async fn write_smtp(
    conn: &mut PgConnection,
    rows: &[SmtpRecord<'_>],
) -> anyhow::Result<u64> {
    write(conn, rows).await
}

/// Stores access rows, as [`write_smtp`] does SMTP rows.
pub(crate) async fn write_access(
    conn: &mut PgConnection,
    rows: &[AccessRecord<'_>],
) -> anyhow::Result<u64> {
    write(conn, rows).await
}

async fn write<R: Stored>(conn: &mut PgConnection, rows: &[R]) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    // Outside a transaction each statement would commit on its own: the
    // savepoint would not hold, and the commit after the COPY would empty
    // the staging table.
    anyhow::ensure!(
        sqlx::Connection::is_in_transaction(conn),
        "{} are written in an open transaction",
        R::WHAT
    );
    let what = || {
        format!(
            "storing {} {} (a row of a day without its partition is refused: see ensure_days)",
            rows.len(),
            R::WHAT
        )
    };
    // Most batches hold only new rows (a log read for the first time), and
    // a COPY straight into the table is several times faster than one into
    // the staging table and an INSERT from there: try it first, under a
    // savepoint that takes it back if a key is stored already.
    sqlx::raw_sql(SAVEPOINT)
        .execute(&mut *conn)
        .await
        .with_context(what)?;
    match copy(conn, R::COPY, rows).await {
        Ok(n) => {
            sqlx::raw_sql(RELEASE)
                .execute(&mut *conn)
                .await
                .with_context(what)?;
            return Ok(n);
        }
        Err(e) if stored_already(&e) => {
            sqlx::raw_sql(UNDO)
                .execute(&mut *conn)
                .await
                .with_context(what)?;
        }
        Err(e) => return Err(e).with_context(what),
    }
    sqlx::raw_sql(R::STAGE)
        .execute(&mut *conn)
        .await
        .with_context(what)?;
    copy(conn, R::COPY_STAGE, rows).await.with_context(what)?;
    let moved = sqlx::query(R::MOVE)
        .execute(&mut *conn)
        .await
        .with_context(what)?;
    Ok(moved.rows_affected())
}

/// The savepoint of the direct COPY. A released savepoint's
/// subtransaction stays in PostgreSQL's per-transaction cache of 64
/// subtransactions; a transaction that writes more often than that slows
/// every session's snapshots until it ends. The writer commits every
/// batch.
const SAVEPOINT: &str = "SAVEPOINT mt_copy_rows";
const RELEASE: &str = "RELEASE SAVEPOINT mt_copy_rows";
const UNDO: &str = "ROLLBACK TO SAVEPOINT mt_copy_rows; RELEASE SAVEPOINT mt_copy_rows";

/// Whether a COPY failed on a key stored already (or given twice).
fn stored_already(e: &anyhow::Error) -> bool {
    e.downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .is_some_and(|e| e.code().as_deref() == Some("23505"))
}

/// Sends `rows` with `statement` (a COPY of the columns [`Stored::encode`]
/// writes, in binary); returns how many rows it stored. After an error,
/// the transaction has failed.
async fn copy<R: Stored>(
    conn: &mut PgConnection,
    statement: &str,
    rows: &[R],
) -> anyhow::Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    if copy.num_columns() != R::FIELDS as usize || copy.is_textual() {
        copy.abort("unexpected columns").await?;
        anyhow::bail!("the table has other columns than {} have", R::WHAT);
    }
    let mut e = Encoder::new();
    for r in rows {
        if let Err(err) = r.encode(&mut e) {
            copy.abort("a row could not be encoded").await.ok();
            return Err(err);
        }
        if e.bytes().len() >= CHUNK_BYTES {
            copy.send(e.bytes()).await?;
            e.clear();
        }
    }
    e.end();
    copy.send(e.bytes()).await?;
    Ok(copy.finish().await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn smtp() -> SmtpRecord<'static> {
        SmtpRecord {
            day: 20260107,
            mailbox_id: 7,
            sec: 1_767_744_000,
            key: -2,
            usec: 999_999,
            kind: 3,
            host: 1,
            queue_id: Some("4F1A"),
            sender_ip: None,
            relay: Some(2),
            recipient: Some("a@b"),
            dsn: None,
            reply: None,
            reply_args: Some(Cow::Borrowed("é")),
        }
    }

    #[test]
    fn the_stream_has_the_documented_layout() {
        let mut e = Encoder::new();
        smtp().encode(&mut e).unwrap();
        e.end();
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend([0, 14]);
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0x69, 0x5d, 0xa2, 0x00]); // sec
        want.extend([0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]); // key -2
        want.extend([0, 0, 0, 4, 0x01, 0x35, 0x25, 0x0b]); // day 20260107
        want.extend([0, 0, 0, 4, 0, 0, 0, 7]); // mailbox_id
        want.extend([0, 0, 0, 4, 0, 0x0f, 0x42, 0x3f]); // usec 999999
        want.extend([0, 0, 0, 4, 0, 0, 0, 1]); // host
        want.extend([0xff; 4]); // sender_ip NULL
        want.extend([0, 0, 0, 4, 0, 0, 0, 2]); // relay
        want.extend([0xff; 8]); // dsn, reply NULL
        want.extend([0, 0, 0, 2, 0, 3]); // kind
        want.extend([0, 0, 0, 4, b'4', b'F', b'1', b'A']); // queue_id
        want.extend([0, 0, 0, 3, b'a', b'@', b'b']); // recipient
        want.extend([0, 0, 0, 2, 0xc3, 0xa9]); // "é" in UTF-8
        want.extend([0xff, 0xff]); // end
        assert_eq!(e.bytes(), &want[..]);
    }

    #[test]
    fn ids_too_large_for_their_column_are_refused() {
        let mut r = smtp();
        r.relay = Some(i64::from(i32::MAX) + 1);
        let err = r.encode(&mut Encoder::new()).unwrap_err().to_string();
        assert!(err.contains("relay"), "{err}");
        r.relay = Some(i64::from(i32::MAX));
        r.encode(&mut Encoder::new()).unwrap();
    }

    #[test]
    fn a_nul_character_is_refused() {
        let mut r = smtp();
        r.queue_id = Some("4F\u{0}1A");
        let err = r.encode(&mut Encoder::new()).unwrap_err().to_string();
        assert!(err.contains("queue_id") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn the_column_lists_match_the_field_counts() {
        let count = |s: &str| s.split(',').count() as i16;
        assert_eq!(count(smtp_columns!()), SmtpRecord::FIELDS);
        assert_eq!(count(access_columns!()), AccessRecord::FIELDS);
    }
}
