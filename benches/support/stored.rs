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

/// Stores the recipients `rcptI@example.com` for `I` in `0..n` as the
/// texts `first + I`, each a text of its own, as distinct recipients are.
/// They are stored without a hash (which `texts` allows): no ingest of
/// the bench meets them, so none looks them up.
pub async fn recipients(pool: &SqlitePool, n: i64, first: i64) {
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
         INSERT INTO texts (id, hash, value) SELECT $2 + i, NULL, 'rcpt' || i || '@example.com' FROM n",
    )
    .bind(n)
    .bind(first)
    .execute(pool)
    .await
    .unwrap();
}
