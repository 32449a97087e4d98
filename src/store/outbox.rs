//! Report requests and the outbox: the rows that make mailing durable.
//!
//! A request is written first (by any channel), rendered by the worker,
//! and its mail is queued in the same transaction that marks the request
//! done, so a crash leaves either a pending request or a queued mail,
//! never both or neither.

use sqlx::Row;

use super::Store;

/// A request as it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub mailbox: String,
    pub kind: String,
    pub from_day: i32,
    pub to_day: i32,
    pub lang: String,
    pub channel: String,
    pub client_ip: String,
    pub requested_at: i64,
    /// The key its mail is queued under; `None` means `request:<id>`.
    pub idem_key: Option<String>,
    /// `report`, or `warning` (a threshold warning with the day's report).
    pub purpose: String,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub id: i64,
    pub request: NewRequest,
    pub state: String,
    pub error: Option<String>,
    pub outbox_id: Option<i64>,
}

/// A mail as it is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub idem_key: String,
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    /// The complete RFC 5322 message.
    pub message: Vec<u8>,
}

/// A stored mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub idem_key: String,
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    pub message: Vec<u8>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// How much mail one recipient may be queued in a day: mailtrail sends
/// only on its own initiative (reports asked for, warnings, help replies),
/// and whoever can make it send must not be able to make it send much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailCap {
    /// Mails queued to the recipient after this time (unix seconds) count.
    pub since: i64,
    /// At most this many mails of every kind.
    pub all: i64,
    /// At most this many whose key starts with this prefix (`help:`).
    pub same_kind: Option<(&'static str, i64)>,
}

/// What [`Store::queue_mail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The mail was added: its outbox id.
    Added(i64),
    /// A mail with the same key was queued before (or sent): its id.
    Already(i64),
    /// The recipient had had its mail for the day (how many were
    /// counted); nothing was queued.
    Limited(i64),
}

impl Queued {
    /// The outbox row, if the mail is there.
    pub fn id(self) -> Option<i64> {
        match self {
            Queued::Added(id) | Queued::Already(id) => Some(id),
            Queued::Limited(_) => None,
        }
    }
}

fn request_row<R>(r: &R) -> Result<RequestRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RequestRow {
        id: r.try_get(0)?,
        request: NewRequest {
            mailbox: r.try_get(1)?,
            kind: r.try_get(2)?,
            from_day: r.try_get(3)?,
            to_day: r.try_get(4)?,
            lang: r.try_get(5)?,
            channel: r.try_get(6)?,
            client_ip: r.try_get(7)?,
            requested_at: r.try_get(8)?,
            idem_key: r.try_get(12)?,
            purpose: r.try_get(13)?,
        },
        state: r.try_get(9)?,
        error: r.try_get(10)?,
        outbox_id: r.try_get(11)?,
    })
}

fn outbox_row<R>(r: &R) -> Result<OutboxRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(OutboxRow {
        id: r.try_get(0)?,
        idem_key: r.try_get(1)?,
        recipient: r.try_get(2)?,
        sender: r.try_get(3)?,
        subject: r.try_get(4)?,
        message: r.try_get(5)?,
        state: r.try_get(6)?,
        attempts: r.try_get(7)?,
        next_attempt_at: r.try_get(8)?,
        last_error: r.try_get(9)?,
        created_at: r.try_get(10)?,
        sent_at: r.try_get(11)?,
    })
}

impl Store {
    /// Writes a pending request; returns its id. A request whose key is
    /// already taken is not written again: the id of the one holding the
    /// key is returned.
    pub async fn insert_request(&self, r: &NewRequest) -> anyhow::Result<i64> {
        const SQL: &str = "INSERT INTO requests (mailbox, kind, from_day, to_day, lang, channel, client_ip, requested_at, idem_key, purpose, state) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending') ON CONFLICT (idem_key) DO NOTHING RETURNING id";
        const EXISTING: &str = "SELECT id FROM requests WHERE idem_key = $1";
        let id = on_writer!(self, p => {
            let added: Option<i64> = sqlx::query_scalar(SQL)
                .bind(&r.mailbox).bind(&r.kind).bind(r.from_day).bind(r.to_day).bind(&r.lang)
                .bind(&r.channel).bind(&r.client_ip).bind(r.requested_at).bind(&r.idem_key).bind(&r.purpose)
                .fetch_optional(p).await?;
            match added {
                Some(id) => id,
                None => sqlx::query_scalar::<_, i64>(EXISTING).bind(&r.idem_key).fetch_one(p).await?,
            }
        });
        Ok(id)
    }

    pub async fn request(&self, id: i64) -> anyhow::Result<Option<RequestRow>> {
        const SQL: &str = "SELECT id, mailbox, kind, from_day, to_day, lang, channel, client_ip, requested_at, state, error, outbox_id, idem_key, purpose \
            FROM requests WHERE id = $1";
        let row = on_pool!(self, p => sqlx::query(SQL).bind(id).fetch_optional(p).await?
            .map(|r| request_row(&r)).transpose()?);
        Ok(row)
    }

    /// Requests not yet rendered, oldest first.
    pub async fn pending_requests(&self, limit: i64) -> anyhow::Result<Vec<RequestRow>> {
        const SQL: &str = "SELECT id, mailbox, kind, from_day, to_day, lang, channel, client_ip, requested_at, state, error, outbox_id, idem_key, purpose \
            FROM requests WHERE state = 'pending' ORDER BY id LIMIT $1";
        let rows = on_pool!(self, p => sqlx::query(SQL).bind(limit).fetch_all(p).await?
            .iter().map(request_row).collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Marks a request as impossible to render, with the reason.
    pub async fn fail_request(&self, id: i64, error: &str) -> anyhow::Result<()> {
        const SQL: &str = "UPDATE requests SET state = 'failed', error = $2 WHERE id = $1";
        on_writer!(self, p => sqlx::query(SQL).bind(id).bind(error).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Queues a mail, unless a mail with the same key is already queued
    /// (or sent, or failed), or the recipient has had what `cap` allows
    /// since `cap.since`; when it answers a request and is (or was) queued,
    /// marks the request done in the same transaction.
    ///
    /// The count and the insert are one transaction, with the recipient
    /// locked (SQLite: the write lock; PostgreSQL: an advisory lock on the
    /// recipient), so mails queued at the same moment cannot pass the cap
    /// together.
    pub async fn queue_mail(
        &self,
        mail: &NewMail,
        request_id: Option<i64>,
        now: i64,
        cap: &MailCap,
    ) -> anyhow::Result<Queued> {
        const INSERT: &str = "INSERT INTO outbox (idem_key, recipient, sender, subject, message, state, attempts, next_attempt_at, created_at) \
            VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6) ON CONFLICT (idem_key) DO NOTHING RETURNING id";
        const EXISTING: &str = "SELECT id FROM outbox WHERE idem_key = $1";
        const DONE: &str =
            "UPDATE requests SET state = 'queued', outbox_id = $2, error = NULL WHERE id = $1";
        // The two-key form: a key space apart from the ingest's locks.
        const LOCK: &str = "SELECT pg_advisory_xact_lock(1836348020, hashtext($1))";
        const COUNT_ALL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE recipient = $1 AND created_at > $2 LIMIT $3) AS r";
        const COUNT_KIND: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE recipient = $1 AND created_at > $2 AND idem_key LIKE $4 LIMIT $3) AS r";
        let pg = matches!(self, Store::Postgres(_));
        let r = in_tx!(self, tx => {
            let existing: Option<i64> = sqlx::query_scalar(EXISTING).bind(&mail.idem_key).fetch_optional(&mut *tx).await?;
            let queued = match existing {
                Some(id) => Queued::Already(id),
                None => {
                    if pg {
                        sqlx::query(LOCK).bind(&mail.recipient).execute(&mut *tx).await?;
                    }
                    let all: i64 = sqlx::query_scalar(COUNT_ALL)
                        .bind(&mail.recipient).bind(cap.since).bind(cap.all)
                        .fetch_one(&mut *tx).await?;
                    let limited = if all >= cap.all {
                        Some(all)
                    } else if let Some((prefix, n)) = cap.same_kind {
                        let k: i64 = sqlx::query_scalar(COUNT_KIND)
                            .bind(&mail.recipient).bind(cap.since).bind(n).bind(format!("{prefix}%"))
                            .fetch_one(&mut *tx).await?;
                        (k >= n).then_some(k)
                    } else {
                        None
                    };
                    if let Some(n) = limited {
                        Queued::Limited(n)
                    } else {
                        let added: Option<i64> = sqlx::query_scalar(INSERT)
                            .bind(&mail.idem_key).bind(&mail.recipient).bind(&mail.sender)
                            .bind(&mail.subject).bind(&mail.message).bind(now)
                            .fetch_optional(&mut *tx).await?;
                        match added {
                            Some(id) => Queued::Added(id),
                            None => Queued::Already(sqlx::query_scalar::<_, i64>(EXISTING).bind(&mail.idem_key).fetch_one(&mut *tx).await?),
                        }
                    }
                }
            };
            if let (Some(req), Some(id)) = (request_id, queued.id()) {
                sqlx::query(DONE).bind(req).bind(id).execute(&mut *tx).await?;
            }
            queued
        });
        Ok(r)
    }

    pub async fn outbox_mail(&self, id: i64) -> anyhow::Result<Option<OutboxRow>> {
        const SQL: &str = "SELECT id, idem_key, recipient, sender, subject, message, state, attempts, next_attempt_at, last_error, created_at, sent_at \
            FROM outbox WHERE id = $1";
        let row = on_pool!(self, p => sqlx::query(SQL).bind(id).fetch_optional(p).await?
            .map(|r| outbox_row(&r)).transpose()?);
        Ok(row)
    }

    /// Every mail in the outbox, by id (for tests and operators).
    pub async fn outbox(&self) -> anyhow::Result<Vec<OutboxRow>> {
        const SQL: &str = "SELECT id, idem_key, recipient, sender, subject, message, state, attempts, next_attempt_at, last_error, created_at, sent_at \
            FROM outbox ORDER BY id";
        let rows = on_pool!(self, p => sqlx::query(SQL).fetch_all(p).await?
            .iter().map(outbox_row).collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Takes the next mail that is due at `now` for one attempt: counts the
    /// attempt and moves its next attempt to `lease_until`, so another
    /// worker (or this one after a crash) takes it again only after the
    /// lease. Returns `None` when nothing is due.
    pub async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
    ) -> anyhow::Result<Option<OutboxRow>> {
        // The outer conditions are checked again on the row itself, so two
        // workers racing for one row cannot both take it.
        const SQL: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2 \
            WHERE id = (SELECT id FROM outbox WHERE state = 'queued' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT 1) \
            AND state = 'queued' AND next_attempt_at <= $1 \
            RETURNING id, idem_key, recipient, sender, subject, message, state, attempts, next_attempt_at, last_error, created_at, sent_at";
        let row = on_writer!(self, p => sqlx::query(SQL).bind(now).bind(lease_until).fetch_optional(p).await?
            .map(|r| outbox_row(&r)).transpose()?);
        Ok(row)
    }

    /// Records that the relay accepted a mail.
    pub async fn mail_sent(&self, id: i64, now: i64) -> anyhow::Result<()> {
        const SQL: &str =
            "UPDATE outbox SET state = 'sent', sent_at = $2, last_error = NULL WHERE id = $1";
        on_writer!(self, p => sqlx::query(SQL).bind(id).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Records a failed attempt: another at `retry_at`, or none (`None`:
    /// the mail is failed for good).
    pub async fn mail_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> anyhow::Result<()> {
        const RETRY: &str = "UPDATE outbox SET last_error = $2, next_attempt_at = $3 WHERE id = $1";
        const GIVE_UP: &str = "UPDATE outbox SET state = 'failed', last_error = $2 WHERE id = $1";
        match retry_at {
            Some(t) => {
                on_writer!(self, p => sqlx::query(RETRY).bind(id).bind(error).bind(t).execute(p).await?.rows_affected())
            }
            None => {
                on_writer!(self, p => sqlx::query(GIVE_UP).bind(id).bind(error).execute(p).await?.rows_affected())
            }
        };
        Ok(())
    }
}
