//! Bulk insert of event rows into SQLite through the raw connection handle
//! (and the one read that returns as many: a report's SMTP rows).
//!
//! Ingest writes hundreds of thousands of rows a second. Through sqlx each
//! value is boxed, sent to the connection's worker thread and copied again
//! by SQLite; here prepared statements are bound straight from the rows
//! (text by pointer, without a copy) and stepped on the calling thread,
//! inside the transaction sqlx has opened on the same connection. Each
//! statement inserts [`ROWS_PER_STATEMENT`] rows at once. The statements
//! and all bindings are released before the handle goes back to sqlx.

use std::ffi::{CStr, CString, c_int};
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

use super::records::{AccessRecord, PROBES, SmtpRecord, Texts, text_hash};

/// Rows per `INSERT` statement. A statement opens its cursors on the table
/// and its index, and closes them, once however many rows its `VALUES`
/// list holds; with one row each, that was about a fifth of the insert's
/// time. (32 rows of 28 parameters stay far below SQLite's limit on
/// parameters; larger groups measured no faster.)
const ROWS_PER_STATEMENT: usize = 32;

/// A table the bulk path inserts into, and its columns in binding order.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

impl Table {
    /// `INSERT OR IGNORE INTO name (columns) VALUES (?, ...), ...` for
    /// `rows` rows, made of the constant names and placeholders only.
    ///
    /// `OR IGNORE`: a row whose key is stored already is skipped. (It also
    /// makes every constraint's conflict action IGNORE, so SQLite keeps no
    /// statement journal; an upsert clause would.)
    fn insert_sql(&self, rows: usize) -> CString {
        let group = format!("({})", vec!["?"; self.columns.len()].join(", "));
        let sql = format!(
            "INSERT OR IGNORE INTO {} ({}) VALUES {}",
            self.name,
            self.columns.join(", "),
            vec![group; rows].join(", ")
        );
        CString::new(sql).expect("names and placeholders hold no NUL")
    }
}

const SMTP_ROWS: Table = Table {
    name: "smtp_rows",
    columns: &[
        "day",
        "mailbox_id",
        "sec",
        "key",
        "usec",
        "kind",
        "host",
        "queue_id",
        "sender_ip",
        "relay",
        "recipient",
        "dsn",
        "reply",
        "reply_args",
    ],
};

const MESSAGE_ROWS: Table = Table {
    name: "message_rows",
    columns: &[
        "day",
        "mailbox_id",
        "sec",
        "key",
        "usec",
        "kind",
        "msgid_hash",
        "host",
        "queue_id",
        "session",
        "protocol",
        "message_id",
        "sender",
        "subject",
        "client",
        "folder",
        "other",
        "size",
        "uid",
        "status",
        "reply",
    ],
};

/// A prepared statement, finalized when dropped (also on early return).
struct Stmt(*mut ffi::sqlite3_stmt);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sqlite3_prepare_v2 and is finalized
        // exactly once, here.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

fn error(db: *mut ffi::sqlite3, what: &str) -> anyhow::Error {
    // SAFETY: `db` is an open connection; sqlite3_errmsg returns a
    // NUL-terminated string owned by SQLite, copied out at once.
    let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) };
    anyhow::anyhow!("SQLite {what}: {}", msg.to_string_lossy())
}

/// Prepares `sql` on `db`.
///
/// # Safety
///
/// `db` must be an open connection that no other thread uses meanwhile.
unsafe fn prepare(db: *mut ffi::sqlite3, sql: &CStr) -> anyhow::Result<Stmt> {
    let mut raw = ptr::null_mut();
    // SAFETY: `db` is valid (caller's contract); `sql` is NUL-terminated.
    let rc = unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut raw, ptr::null_mut()) };
    if rc != ffi::SQLITE_OK {
        return Err(error(db, "prepare"));
    }
    Ok(Stmt(raw))
}

/// Gives every text of `values` (each once, none of them in `texts`) its
/// id in `texts`, storing the absent ones, as the PostgreSQL path does
/// (see `resolve_texts!` in the module above) but a text at a time on
/// this thread: a text is inserted under its hash unless that hash is
/// stored already, and only then looked up, so a new text costs one
/// statement step and no round trip to sqlx's worker thread. Texts go in
/// in the order of their hashes, so the hash index is written in order.
///
/// # Safety
///
/// As for [`insert_each`].
pub unsafe fn resolve_texts(
    db: NonNull<ffi::sqlite3>,
    values: Vec<&str>,
    texts: &mut Texts,
) -> anyhow::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    // Each with its first probe's hash, which orders them.
    let mut values: Vec<(i64, &str)> = values.into_iter().map(|v| (text_hash(v, 0), v)).collect();
    values.sort_unstable();
    let db = db.as_ptr();
    // SAFETY: the caller's contract.
    let (add, find, lone) = unsafe {
        (
            prepare(
                db,
                c"INSERT INTO texts (hash, value) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
            )?,
            prepare(db, c"SELECT id, value FROM texts WHERE hash = ?1")?,
            prepare(db, c"INSERT INTO texts (hash, value) VALUES (NULL, ?1)")?,
        )
    };
    // Steps `stmt` once and resets it; SQLITE_ROW gives the row's id and
    // whether its value is `v`.
    let run = |stmt: &Stmt, v: &str| -> anyhow::Result<Option<(i64, bool)>> {
        // SAFETY: valid statement with its parameters bound; the row's
        // columns are read before the reset, the text copied out of
        // SQLite's buffer by the comparison.
        unsafe {
            let rc = ffi::sqlite3_step(stmt.0);
            let row = if rc == ffi::SQLITE_ROW {
                let id = ffi::sqlite3_column_int64(stmt.0, 0);
                let p = ffi::sqlite3_column_text(stmt.0, 1);
                let n = ffi::sqlite3_column_bytes(stmt.0, 1);
                let same = !p.is_null()
                    && std::slice::from_raw_parts(p, n.max(0) as usize) == v.as_bytes();
                Some((id, same))
            } else {
                None
            };
            ffi::sqlite3_reset(stmt.0);
            ffi::sqlite3_clear_bindings(stmt.0);
            if rc != ffi::SQLITE_ROW && rc != ffi::SQLITE_DONE {
                return Err(error(db, "texts"));
            }
            Ok(row)
        }
    };
    for (first, v) in values {
        let mut id = None;
        for probe in 0..PROBES {
            let h = if probe == 0 {
                first
            } else {
                text_hash(v, probe)
            };
            let (a, f) = (
                Binder {
                    stmt: &add,
                    base: 0,
                },
                Binder {
                    stmt: &find,
                    base: 0,
                },
            );
            if [a.int(1, Some(h)), a.text(2, Some(v))]
                .iter()
                .any(|&rc| rc != ffi::SQLITE_OK)
            {
                return Err(error(db, "bind"));
            }
            run(&add, v)?;
            // SAFETY: valid connection, ours.
            if unsafe { ffi::sqlite3_changes(db) } == 1 {
                // SAFETY: as above; the row just inserted.
                id = Some(unsafe { ffi::sqlite3_last_insert_rowid(db) });
                break;
            }
            // The hash is taken: by this text, or by another (next probe).
            if f.int(1, Some(h)) != ffi::SQLITE_OK {
                return Err(error(db, "bind"));
            }
            if let Some((found, true)) = run(&find, v)? {
                id = Some(found);
                break;
            }
        }
        let id = match id {
            Some(id) => id,
            // Every probe taken by other texts: stored without a hash.
            None => {
                if (Binder {
                    stmt: &lone,
                    base: 0,
                })
                .text(1, Some(v))
                    != ffi::SQLITE_OK
                {
                    return Err(error(db, "bind"));
                }
                run(&lone, v)?;
                // SAFETY: valid connection; the row just inserted.
                unsafe { ffi::sqlite3_last_insert_rowid(db) }
            }
        };
        texts.insert(v, id);
    }
    Ok(())
}

/// Binds one row's values to the statement, by 1-based position. Every
/// call returns SQLite's result code; the caller checks them all.
///
/// Parameter `i` of the row is the statement's parameter `base + i`: the
/// row's place in a multi-row `VALUES` list.
///
/// A `None` binds nothing: a fresh statement's parameters are NULL, and
/// [`insert_each`] clears the bindings after every step, so the parameter
/// is NULL already. (Most access rows leave half their columns empty, and
/// a bind costs about as much as clearing all of them.)
struct Binder<'s> {
    stmt: &'s Stmt,
    base: c_int,
}

impl Binder<'_> {
    fn text(&self, i: c_int, s: Option<&str>) -> c_int {
        match s {
            // SAFETY: the text is borrowed from the rows, which outlive the
            // step that reads it, so SQLite may use it without copying
            // (SQLITE_STATIC); bindings are cleared right after the step.
            Some(s) => unsafe {
                ffi::sqlite3_bind_text(
                    self.stmt.0,
                    self.base + i,
                    s.as_ptr().cast(),
                    s.len() as c_int,
                    ffi::SQLITE_STATIC(),
                )
            },
            None => ffi::SQLITE_OK,
        }
    }

    fn int(&self, i: c_int, v: Option<i64>) -> c_int {
        match v {
            // SAFETY: binding an integer to a valid statement.
            Some(v) => unsafe { ffi::sqlite3_bind_int64(self.stmt.0, self.base + i, v) },
            None => ffi::SQLITE_OK,
        }
    }
}

/// Inserts `rows` into `table`, binding each with `bind`; returns how many
/// rows were inserted (`OR IGNORE` skips the others).
///
/// Rows go in in the table's own order, by primary key (day, mailbox,
/// second, key): the table is clustered on it, so rows inserted together
/// land side by side on the same pages while those are in the processor's
/// cache, instead of jumping across the day's part of the table for every
/// row. (The parser's thread has put a batch in nearly this order already,
/// see [`crate::ingest::mailboxes`], so the sort here finds little to do.)
///
/// # Safety
///
/// `db` must be an open connection that no other thread uses for the
/// duration of the call (the caller holds sqlx's handle lock), with a write
/// transaction open.
unsafe fn insert_each<T, K: Ord, const N: usize>(
    db: NonNull<ffi::sqlite3>,
    table: &Table,
    rows: &[T],
    primary_key: impl Fn(&T) -> K,
    bind: impl Fn(&Binder<'_>, &T) -> [c_int; N],
) -> anyhow::Result<u64> {
    debug_assert_eq!(N, table.columns.len());
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_by_cached_key(|&i| primary_key(&rows[i as usize]));
    let db = db.as_ptr();
    // SAFETY: `db` is valid and ours (caller's contract).
    let prepare = |rows: usize| unsafe { prepare(db, &table.insert_sql(rows)) };
    // Binds a group of rows to a statement made for that many, steps it
    // once, and clears it; returns the rows inserted.
    let step = |stmt: &Stmt, group: &[u32]| -> anyhow::Result<u64> {
        for (at, &i) in group.iter().enumerate() {
            let binder = Binder {
                stmt,
                base: (at * N) as c_int,
            };
            if bind(&binder, &rows[i as usize])
                .iter()
                .any(|&rc| rc != ffi::SQLITE_OK)
            {
                return Err(error(db, "bind"));
            }
        }
        // SAFETY: valid statement, bound above; the connection is ours.
        let rc = unsafe { ffi::sqlite3_step(stmt.0) };
        // SAFETY: as above; reset and unbind so no pointer into `rows`
        // stays with the statement, and every parameter is NULL for the
        // next group (see [`Binder`]).
        unsafe {
            ffi::sqlite3_reset(stmt.0);
            ffi::sqlite3_clear_bindings(stmt.0);
        }
        if rc != ffi::SQLITE_DONE {
            return Err(error(db, "insert"));
        }
        // SAFETY: valid connection.
        Ok(unsafe { ffi::sqlite3_changes(db) } as u64)
    };
    let mut inserted = 0u64;
    let mut groups = order.chunks_exact(ROWS_PER_STATEMENT);
    if groups.len() > 0 {
        let many = prepare(ROWS_PER_STATEMENT)?;
        for group in groups.by_ref() {
            inserted += step(&many, group)?;
        }
    }
    if !groups.remainder().is_empty() {
        let one = prepare(1)?;
        for row in groups.remainder().chunks(1) {
            inserted += step(&one, row)?;
        }
    }
    Ok(inserted)
}

/// Inserts SMTP rows, skipping keys already stored; returns how many were
/// new.
///
/// # Safety
///
/// As for [`insert_each`].
pub unsafe fn insert_smtp(
    db: NonNull<ffi::sqlite3>,
    rows: &[SmtpRecord<'_>],
) -> anyhow::Result<u64> {
    // SAFETY: the caller's contract is the one insert_each needs.
    unsafe {
        insert_each(
            db,
            &SMTP_ROWS,
            rows,
            |r| (r.day, r.mailbox_id, r.sec, r.key),
            |b, r| {
                [
                    b.int(1, Some(i64::from(r.day))),
                    b.int(2, Some(r.mailbox_id)),
                    b.int(3, Some(r.sec)),
                    b.int(4, Some(r.key)),
                    b.int(5, Some(i64::from(r.usec))),
                    b.int(6, Some(i64::from(r.kind))),
                    b.int(7, Some(r.host)),
                    b.text(8, r.queue_id),
                    b.int(9, r.sender_ip),
                    b.int(10, r.relay),
                    b.text(11, r.recipient),
                    b.int(12, r.dsn),
                    b.int(13, r.reply),
                    b.text(14, r.reply_args.as_deref()),
                ]
            },
        )
    }
}

const ACCESS_ROWS: Table = Table {
    name: "access_rows",
    columns: &[
        "day",
        "mailbox_id",
        "sec",
        "key",
        "usec",
        "kind",
        "host",
        "protocol",
        "remote_ip",
        "local_ip",
        "tls",
        "session",
        "client",
        "deleted",
        "retained",
        "size_bytes",
        "in_bytes",
        "out_bytes",
        "expunged",
        "trashed",
        "downloaded",
        "attempts",
        "uid",
        "message_id",
        "folder",
        "reason",
        "reason_args",
        "master_user",
    ],
};

/// Inserts access rows, skipping keys already stored; returns how many were
/// new.
///
/// # Safety
///
/// As for [`insert_each`].
pub unsafe fn insert_access(
    db: NonNull<ffi::sqlite3>,
    rows: &[AccessRecord<'_>],
) -> anyhow::Result<u64> {
    // SAFETY: the caller's contract is the one insert_each needs.
    unsafe {
        insert_each(
            db,
            &ACCESS_ROWS,
            rows,
            |r| (r.day, r.mailbox_id, r.sec, r.key),
            |b, r| {
                [
                    b.int(1, Some(i64::from(r.day))),
                    b.int(2, Some(r.mailbox_id)),
                    b.int(3, Some(r.sec)),
                    b.int(4, Some(r.key)),
                    b.int(5, Some(i64::from(r.usec))),
                    b.int(6, Some(i64::from(r.kind))),
                    b.int(7, Some(r.host)),
                    b.int(8, r.protocol),
                    b.int(9, r.remote_ip),
                    b.int(10, r.local_ip),
                    b.int(11, r.tls.map(i64::from)),
                    b.text(12, r.session),
                    b.int(13, r.client),
                    b.int(14, r.deleted),
                    b.int(15, r.retained),
                    b.int(16, r.size_bytes),
                    b.int(17, r.in_bytes),
                    b.int(18, r.out_bytes),
                    b.int(19, r.expunged),
                    b.int(20, r.trashed),
                    b.int(21, r.downloaded),
                    b.int(22, r.attempts),
                    b.int(23, r.uid),
                    b.text(24, r.message_id),
                    b.int(25, r.folder),
                    b.int(26, r.reason),
                    b.text(27, r.reason_args.as_deref()),
                    b.int(28, r.master_user),
                ]
            },
        )
    }
}

/// Inserts received-mail rows, as [`insert_smtp`] does SMTP rows.
///
/// # Safety
///
/// As for [`insert_each`].
pub unsafe fn insert_messages(
    db: NonNull<ffi::sqlite3>,
    rows: &[super::messages::MessageRecord<'_>],
) -> anyhow::Result<u64> {
    // SAFETY: the caller's contract.
    unsafe {
        insert_each(
            db,
            &MESSAGE_ROWS,
            rows,
            |r| (r.row.day, r.mailbox_id, r.msgid_hash, r.sec(), r.row.key),
            |b, r| {
                let m = r.row;
                [
                    b.int(1, Some(i64::from(m.day))),
                    b.int(2, Some(r.mailbox_id)),
                    b.int(3, Some(r.sec())),
                    b.int(4, Some(m.key)),
                    b.int(5, Some(i64::from(r.usec()))),
                    b.int(6, Some(i64::from(m.kind))),
                    b.int(7, Some(r.msgid_hash)),
                    b.text(8, Some(m.host.as_str())),
                    b.text(9, m.queue_id.as_deref()),
                    b.text(10, m.session.as_deref()),
                    b.text(11, m.protocol.as_deref()),
                    b.text(12, m.message_id.as_deref()),
                    b.text(13, m.sender.as_deref()),
                    b.text(14, m.subject.as_deref()),
                    b.text(15, m.client.as_deref()),
                    b.text(16, m.folder.as_deref()),
                    b.text(17, m.other.as_deref()),
                    b.int(18, m.size),
                    b.int(19, m.uid),
                    b.text(20, m.status.as_deref()),
                    b.text(21, m.reply.as_deref()),
                ]
            },
        )
    }
}

/// A column of the current row: an integer, or `None` for NULL.
///
/// # Safety
///
/// `stmt` has a row (its last step returned `SQLITE_ROW`).
unsafe fn opt_int(stmt: &Stmt, i: c_int) -> Option<i64> {
    // SAFETY: the caller's contract.
    unsafe {
        (ffi::sqlite3_column_type(stmt.0, i) != ffi::SQLITE_NULL)
            .then(|| ffi::sqlite3_column_int64(stmt.0, i))
    }
}

/// A column of the current row as text, or `None` for NULL.
///
/// # Safety
///
/// As for [`opt_int`].
unsafe fn opt_text(stmt: &Stmt, i: c_int) -> Option<String> {
    // SAFETY: the caller's contract; the text is copied out before the
    // next step, and its length comes from SQLite.
    unsafe {
        let p = ffi::sqlite3_column_text(stmt.0, i);
        if p.is_null() {
            return None;
        }
        let n = ffi::sqlite3_column_bytes(stmt.0, i).max(0) as usize;
        Some(String::from_utf8_lossy(std::slice::from_raw_parts(p, n)).into_owned())
    }
}

/// The SMTP rows of mailbox `mailbox_id` on `days`, in that order and by
/// time within each day, at most `limit` of them: what a report reads,
/// up to a hundred thousand rows for the busiest sender. Read on this
/// thread, as the statement steps: through sqlx each row would be boxed
/// value by value and handed over from its worker thread, which took most
/// of such a report's load.
///
/// # Safety
///
/// `db` must be an open connection that no other thread uses for the
/// duration of the call (the caller holds sqlx's handle lock).
pub unsafe fn read_smtp(
    db: NonNull<ffi::sqlite3>,
    mailbox_id: i64,
    days: &[i32],
    limit: usize,
) -> anyhow::Result<Vec<super::SmtpTuple>> {
    let db = db.as_ptr();
    // SAFETY: the caller's contract.
    let stmt = unsafe {
        prepare(
            db,
            c"SELECT day, sec, usec, kind, host, queue_id, sender_ip, relay, recipient, dsn, reply, reply_args \
              FROM smtp_rows WHERE day = ?1 AND mailbox_id = ?2 ORDER BY sec, key",
        )?
    };
    let mut out = Vec::new();
    for &day in days {
        if out.len() >= limit {
            break;
        }
        let b = Binder {
            stmt: &stmt,
            base: 0,
        };
        if [b.int(1, Some(i64::from(day))), b.int(2, Some(mailbox_id))]
            .iter()
            .any(|&rc| rc != ffi::SQLITE_OK)
        {
            return Err(error(db, "bind"));
        }
        loop {
            if out.len() >= limit {
                break;
            }
            // SAFETY: a valid statement with its parameters bound.
            let rc = unsafe { ffi::sqlite3_step(stmt.0) };
            if rc == ffi::SQLITE_DONE {
                break;
            }
            if rc != ffi::SQLITE_ROW {
                // SAFETY: as above.
                unsafe { ffi::sqlite3_reset(stmt.0) };
                return Err(error(db, "read"));
            }
            // SAFETY: the step above gave a row; every column is read
            // before the next step.
            unsafe {
                let int = |i| ffi::sqlite3_column_int64(stmt.0, i);
                out.push((
                    int(0) as i32,
                    int(1),
                    int(2) as i32,
                    int(3) as i32,
                    int(4),
                    opt_text(&stmt, 5),
                    opt_int(&stmt, 6),
                    opt_int(&stmt, 7),
                    opt_text(&stmt, 8),
                    opt_int(&stmt, 9),
                    opt_int(&stmt, 10),
                    opt_text(&stmt, 11),
                ));
            }
        }
        // SAFETY: as above; ready for the next day.
        unsafe {
            ffi::sqlite3_reset(stmt.0);
            ffi::sqlite3_clear_bindings(stmt.0);
        }
    }
    Ok(out)
}

/// Every row of `sql` (its `?N` parameters bound to `params` in order),
/// each as its values in column order: an integer, a text or NULL, as
/// stored. Read on this thread as the statement steps, like
/// [`read_smtp`]: packing a day reads millions of values.
///
/// # Safety
///
/// As for [`read_smtp`].
pub unsafe fn read_vals(
    db: NonNull<ffi::sqlite3>,
    sql: &CStr,
    params: &[i64],
) -> anyhow::Result<Vec<Vec<super::packs::Val>>> {
    use super::packs::Val;
    let db = db.as_ptr();
    // SAFETY: the caller's contract.
    let stmt = unsafe { prepare(db, sql)? };
    let b = Binder {
        stmt: &stmt,
        base: 0,
    };
    for (i, &v) in params.iter().enumerate() {
        if b.int(i as c_int + 1, Some(v)) != ffi::SQLITE_OK {
            return Err(error(db, "bind"));
        }
    }
    // SAFETY: a prepared statement.
    let columns = unsafe { ffi::sqlite3_column_count(stmt.0) };
    let mut out = Vec::new();
    loop {
        // SAFETY: a valid statement with its parameters bound.
        let rc = unsafe { ffi::sqlite3_step(stmt.0) };
        if rc == ffi::SQLITE_DONE {
            break;
        }
        if rc != ffi::SQLITE_ROW {
            return Err(error(db, "read"));
        }
        let mut row = Vec::with_capacity(columns as usize);
        for i in 0..columns {
            // SAFETY: the step above gave a row; each column is read (and
            // its text copied) before the next step.
            row.push(unsafe {
                match ffi::sqlite3_column_type(stmt.0, i) {
                    ffi::SQLITE_NULL => Val::Null,
                    ffi::SQLITE_INTEGER => Val::Int(ffi::sqlite3_column_int64(stmt.0, i)),
                    ffi::SQLITE_TEXT => Val::Text(opt_text(&stmt, i).unwrap_or_default()),
                    other => anyhow::bail!(
                        "a value of SQLite type {other} where an integer or text was stored"
                    ),
                }
            });
        }
        out.push(row);
    }
    Ok(out)
}
