//! Texts for rows a bench stores by SQL: `smtp_rows` and `access_rows`
//! refer to repeated text by its id in `texts` (see
//! `src/store/records.rs`).

use mailtrail::store::records::{split_reply, text_hash};
use sqlx::SqlitePool;

/// The id of `value` in `texts`, stored under its first hash as the
/// ingest stores a new text.
pub async fn text(pool: &SqlitePool, value: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO texts (hash, value) VALUES ($1, $2) RETURNING id")
        .bind(text_hash(value, 0))
        .bind(value)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A remote reply as stored: the id of its pattern, and its variable
/// words (`smtp_rows.reply`, `smtp_rows.reply_args`).
pub async fn reply(pool: &SqlitePool, reply: &str) -> (Option<i64>, Option<String>) {
    let (pattern, args) = split_reply(reply);
    let id = match pattern {
        Some(p) => Some(text(pool, &p).await),
        None => None,
    };
    (id, args.map(|a| a.into_owned()))
}
