//! Bulk writes of event rows into PostgreSQL.

use super::records::{AccessRecord, SmtpRecord};

/// Writes SMTP rows in the caller's transaction; returns how many were new.
pub(crate) async fn write_smtp(
    conn: &mut sqlx::PgConnection,
    rows: &[SmtpRecord<'_>],
) -> anyhow::Result<u64> {
    const SQL: &str = "INSERT INTO smtp_rows (day, mailbox_id, sec, key, usec, kind, host, queue_id, sender_ip, relay, recipient, dsn, reply, reply_args) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING";
    let mut n = 0;
    for r in rows {
        n += sqlx::query(SQL)
            .bind(r.day)
            .bind(r.mailbox_id as i32)
            .bind(r.sec)
            .bind(r.key)
            .bind(r.usec)
            .bind(r.kind)
            .bind(r.host as i32)
            .bind(r.queue_id)
            .bind(r.sender_ip.map(|v| v as i32))
            .bind(r.relay.map(|v| v as i32))
            .bind(r.recipient.map(|v| v as i32))
            .bind(r.dsn.map(|v| v as i32))
            .bind(r.reply.map(|v| v as i32))
            .bind(r.reply_args.as_deref())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(n)
}

/// Writes access rows in the caller's transaction; returns how many were new.
pub(crate) async fn write_access(
    conn: &mut sqlx::PgConnection,
    rows: &[AccessRecord<'_>],
) -> anyhow::Result<u64> {
    const SQL: &str = "INSERT INTO access_rows (day, mailbox_id, sec, key, usec, kind, host, protocol, remote_ip, local_ip, tls, session, client, deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, folder, reason, master_user) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27) ON CONFLICT DO NOTHING";
    let id = |v: Option<i64>| v.map(|v| v as i32);
    let mut n = 0;
    for r in rows {
        n += sqlx::query(SQL)
            .bind(r.day)
            .bind(r.mailbox_id as i32)
            .bind(r.sec)
            .bind(r.key)
            .bind(r.usec)
            .bind(r.kind)
            .bind(r.host as i32)
            .bind(id(r.protocol))
            .bind(id(r.remote_ip))
            .bind(id(r.local_ip))
            .bind(r.tls)
            .bind(r.session)
            .bind(id(r.client))
            .bind(r.deleted)
            .bind(r.retained)
            .bind(r.size_bytes)
            .bind(r.in_bytes)
            .bind(r.out_bytes)
            .bind(r.expunged)
            .bind(r.trashed)
            .bind(r.downloaded)
            .bind(r.attempts)
            .bind(r.uid)
            .bind(r.message_id)
            .bind(id(r.folder))
            .bind(id(r.reason))
            .bind(id(r.master_user))
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(n)
}
