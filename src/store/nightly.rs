//! The nightly job's queries: the daily table, alerts, job runs, and the
//! retention purge.

use super::Store;

/// Rows of the daily table per insert statement (9 values each).
const DAY_CHUNK: usize = 100;

fn day_insert(rows: usize) -> String {
    let mut s = String::from(
        "INSERT INTO daily_counts (day, mailbox_id, sum, auth_blk, auth_rcv, bounced, deferred, expired, sent) VALUES ",
    );
    for r in 0..rows {
        s.push_str(if r > 0 { ", (" } else { "(" });
        for c in 0..9 {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * 9 + c + 1));
        }
        s.push(')');
    }
    s
}

fn day_insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| day_insert(DAY_CHUNK))
}

fn day_insert_one_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| day_insert(1))
}

/// One mailbox's line of the daily table: Sum, Auth_blk, Auth_rcv,
/// Bounced, Deferred, Expired, Sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCounts {
    pub mailbox: String,
    pub counts: [i64; 7],
}

/// Tables the retention purge empties of old days, with their day column.
/// (The event tables lose whole days first: see [`Store::purge_batch`].)
const PURGES: &[&str] = &[
    "DELETE FROM daily_counts WHERE (day, mailbox_id) IN (SELECT day, mailbox_id FROM daily_counts WHERE day < $1 LIMIT $2)",
    "DELETE FROM alerts WHERE (day, mailbox, rule) IN (SELECT day, mailbox, rule FROM alerts WHERE day < $1 LIMIT $2)",
    "DELETE FROM job_runs WHERE (day, job) IN (SELECT day, job FROM job_runs WHERE day < $1 LIMIT $2)",
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE state <> 'pending' AND to_day < $1 LIMIT $2)",
];

/// Old mail: sent or failed, and created before the cut-off (unix seconds).
const PURGE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state <> 'queued' AND created_at < $1 LIMIT $2)";

impl Store {
    /// Rebuilds the daily table of one day from the stored events, in one
    /// transaction; returns the number of mailboxes in it.
    pub async fn aggregate_day(&self, day: i32) -> anyhow::Result<u64> {
        // Kinds: 1 sent, 2 bounced, 3 deferred, 4 expired, 5 auth_rcv,
        // 6 auth_blk, 7 blocked by a content filter, which Auth_blk counts
        // too (see migrations/sqlite/0001_initial.sql, `Kind`).
        const COUNT: &str = "SELECT CAST(mailbox_id AS BIGINT), COUNT(*), \
            SUM(CASE WHEN kind IN (6, 7) THEN 1 ELSE 0 END), SUM(CASE WHEN kind = 5 THEN 1 ELSE 0 END), \
            SUM(CASE WHEN kind = 2 THEN 1 ELSE 0 END), SUM(CASE WHEN kind = 3 THEN 1 ELSE 0 END), \
            SUM(CASE WHEN kind = 4 THEN 1 ELSE 0 END), SUM(CASE WHEN kind = 1 THEN 1 ELSE 0 END) \
            FROM smtp_rows WHERE day = $1 GROUP BY mailbox_id";
        const CLEAR: &str = "DELETE FROM daily_counts WHERE day = $1";
        // The counting reads the whole day and holds no lock (readers do
        // not block the writer); only the short writing of the result
        // waits for, and holds, the write lock.
        type Counted = (i64, i64, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Counted> =
            on_pool!(self, p => sqlx::query_as(COUNT).bind(day).fetch_all(p).await?);
        in_tx!(self, tx => {
            sqlx::query(CLEAR).bind(day).execute(&mut *tx).await?;
            for chunk in rows.chunks(DAY_CHUNK) {
                // Whole chunks in one statement each, the rest one by one.
                let (sql, per) = if chunk.len() == DAY_CHUNK {
                    (day_insert_sql(), DAY_CHUNK)
                } else {
                    (day_insert_one_sql(), 1)
                };
                for part in chunk.chunks(per) {
                    let mut q = sqlx::query(sql);
                    for r in part {
                        q = q.bind(day).bind(r.0).bind(r.1).bind(r.2).bind(r.3).bind(r.4).bind(r.5).bind(r.6).bind(r.7);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
        });
        Ok(rows.len() as u64)
    }

    /// The daily table of one day, by mailbox.
    pub async fn day_table(&self, day: i32) -> anyhow::Result<Vec<DayCounts>> {
        const SQL: &str = "SELECT m.address, d.sum, d.auth_blk, d.auth_rcv, d.bounced, d.deferred, d.expired, d.sent \
            FROM daily_counts d JOIN mailboxes m ON m.id = d.mailbox_id WHERE d.day = $1 ORDER BY m.address";
        type Tuple = (String, i64, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Tuple> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(day).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|t| DayCounts {
                mailbox: t.0,
                counts: [t.1, t.2, t.3, t.4, t.5, t.6, t.7],
            })
            .collect())
    }

    /// Records that `job` finished for `day` (again, if it had).
    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Lays the rows of a complete `day` out in the order reports read
    /// them, where the backend keeps them in arrival order: PostgreSQL's
    /// day partitions are rewritten by their primary key (see
    /// `partitions::cluster_day`); SQLite's tables are in that order
    /// already. Returns whether anything was rewritten.
    pub async fn cluster_day(&self, day: i32) -> anyhow::Result<bool> {
        match self {
            Store::Sqlite(_) => Ok(false),
            Store::Postgres(p) => {
                super::partitions::cluster_day(p, day, std::time::Duration::from_secs(5)).await
            }
        }
    }

    pub async fn record_job(
        &self,
        day: i32,
        job: &str,
        detail: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        const SQL: &str = "INSERT INTO job_runs (day, job, finished_at, detail) VALUES ($1, $2, $3, $4) \
            ON CONFLICT (day, job) DO UPDATE SET finished_at = excluded.finished_at, detail = excluded.detail";
        on_writer!(self, p => sqlx::query(SQL).bind(day).bind(job).bind(now).bind(detail).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Jobs recorded for days from `from_day` on: (day, job).
    pub async fn jobs_since(&self, from_day: i32) -> anyhow::Result<Vec<(i32, String)>> {
        const SQL: &str = "SELECT day, job FROM job_runs WHERE day >= $1 ORDER BY day, job";
        let rows = on_pool!(self, p => sqlx::query_as(SQL).bind(from_day).fetch_all(p).await?);
        Ok(rows)
    }

    /// Every job run with its detail: (day, job, finished_at, detail).
    pub async fn job_runs(&self) -> anyhow::Result<Vec<(i32, String, i64, Option<String>)>> {
        const SQL: &str = "SELECT day, job, finished_at, detail FROM job_runs ORDER BY day, job";
        let rows = on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows)
    }

    /// The first day with SMTP or plain access rows, if any (a site that
    /// stores only Dovecot's logs has its days packed too).
    pub async fn first_event_day(&self) -> anyhow::Result<Option<i32>> {
        const SQL: &str = "SELECT MIN(d) FROM (SELECT MIN(day) AS d FROM smtp_rows \
            UNION ALL SELECT MIN(day) AS d FROM access_rows) AS firsts";
        let d: Option<i32> = on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await?);
        Ok(d)
    }

    /// Records a crossed threshold (once per day, mailbox and rule) and the
    /// outbox row of its warning.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_alert(
        &self,
        day: i32,
        mailbox: &str,
        rule: &str,
        value: i64,
        threshold: i64,
        outbox_id: Option<i64>,
        now: i64,
    ) -> anyhow::Result<()> {
        const SQL: &str = "INSERT INTO alerts (day, mailbox, rule, value, threshold, outbox_id, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (day, mailbox, rule) DO NOTHING";
        on_writer!(self, p => sqlx::query(SQL).bind(day).bind(mailbox).bind(rule).bind(value)
            .bind(threshold).bind(outbox_id).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Alerts recorded for a day: (mailbox, rule, value, threshold).
    pub async fn alerts_of(&self, day: i32) -> anyhow::Result<Vec<(String, String, i64, i64)>> {
        const SQL: &str = "SELECT mailbox, rule, value, threshold FROM alerts WHERE day = $1 ORDER BY mailbox, rule";
        let rows = on_pool!(self, p => sqlx::query_as(SQL).bind(day).fetch_all(p).await?);
        Ok(rows)
    }

    /// Deletes what is older than `before_day`, a step at a time; returns
    /// what the step deleted (0 when nothing old is left).
    ///
    /// The event tables lose whole days, the oldest first: on SQLite a
    /// day's rows of one table, which lie together, in one statement; on
    /// PostgreSQL every old day's partitions are dropped. Then at most
    /// `batch` rows of one table after another, each batch its own short
    /// transaction.
    pub async fn purge_batch(
        &self,
        before_day: i32,
        before_unix: i64,
        batch: i64,
    ) -> anyhow::Result<u64> {
        match self {
            Store::Sqlite(p) => {
                for table in ["smtp_rows", "access_rows", "message_rows", "access_packs"] {
                    let oldest = format!("SELECT MIN(day) FROM {table}");
                    let day: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(oldest))
                        .fetch_one(p)
                        .await?;
                    if let Some(day) = day.filter(|d| *d < before_day) {
                        let _turn = super::SQLITE_WRITE.lock().await;
                        let delete = format!("DELETE FROM {table} WHERE day = $1");
                        let n = sqlx::query(sqlx::AssertSqlSafe(delete))
                            .bind(day)
                            .execute(p)
                            .await?
                            .rows_affected();
                        // Nothing deleted means another purge took the day
                        // meanwhile: a step done all the same.
                        return Ok(n.max(1));
                    }
                }
            }
            Store::Postgres(p) => {
                let n = super::partitions::drop_days_before(p, before_day).await?;
                if n > 0 {
                    return Ok(n);
                }
            }
        }
        for sql in PURGES {
            let n = on_writer!(self, p => sqlx::query(*sql).bind(before_day).bind(batch).execute(p).await?.rows_affected());
            if n > 0 {
                return Ok(n);
            }
        }
        let n = on_writer!(self, p => sqlx::query(PURGE_OUTBOX).bind(before_unix).bind(batch).execute(p).await?.rows_affected());
        Ok(n)
    }
}

impl Store {
    /// Points a day's alerts of one mailbox at the outbox row of their
    /// warning.
    pub async fn link_alerts(&self, day: i32, mailbox: &str, outbox_id: i64) -> anyhow::Result<()> {
        const SQL: &str = "UPDATE alerts SET outbox_id = $3 WHERE day = $1 AND mailbox = $2";
        on_writer!(self, p => sqlx::query(SQL).bind(day).bind(mailbox).bind(outbox_id).execute(p).await?.rows_affected());
        Ok(())
    }
}

/// Requests by a client address since $2, counted up to $3.
const BY_CLIENT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE client_ip = $1 AND requested_at >= $2 AND channel <> 'automatic' LIMIT $3) AS r";
/// Requests for a mailbox since $2, counted up to $3.
const BY_MAILBOX: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE mailbox = $1 AND requested_at >= $2 AND channel <> 'automatic' LIMIT $3) AS r";

/// Posts per transaction at most (2,560 parameters in the requests'
/// insert, within both backends' limits).
const POST_CHUNK: usize = 256;

/// `PREFIX ($1, ..., $n TAIL), ($n+1, ...) ... SUFFIX`: `rows` rows of
/// `per_row` placeholders each, built from constant text and placeholders
/// only.
fn values_sql(prefix: &str, rows: usize, per_row: usize, tail: &str, suffix: &str) -> String {
    let mut s = String::from(prefix);
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..per_row {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * per_row + c + 1));
        }
        s.push_str(tail);
        s.push(')');
    }
    s.push_str(suffix);
    s
}

/// Requests since `$since` (not counting automatic ones) for each of
/// `keys` in column `$col` (`client_ip` or `mailbox`), in the open
/// transaction `$conn`, each counted only up to `$cap`: what a key costs
/// is bounded by the limit, however many requests it has made. With
/// `guesses`, the failed verifications in `web_guesses` instead.
macro_rules! counts {
    (guesses $conn:expr, $col:literal, $since:expr, $cap:expr, $keys:expr) => {
        counts!(@rows $conn, concat!(
            "SELECT 1 FROM web_guesses g WHERE g.", $col, " = k.column1 AND g.at >= $1"
        ), $since, $cap, $keys)
    };
    (@rows $conn:expr, $rows:expr, $since:expr, $cap:expr, $keys:expr) => {{
        let mut keys: Vec<&str> = $keys;
        keys.sort_unstable();
        keys.dedup();
        let mut sql = String::from(concat!(
            "SELECT k.column1, (SELECT COUNT(*) FROM (",
            $rows,
            " LIMIT $2) AS c) FROM (VALUES "
        ));
        for i in 0..keys.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${})", i + 3));
        }
        sql.push_str(") AS k");
        let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind($since)
            .bind($cap);
        for k in keys {
            q = q.bind(k);
        }
        q.fetch_all($conn)
            .await?
            .into_iter()
            .collect::<rustc_hash::FxHashMap<String, i64>>()
    }};
    ($conn:expr, $col:literal, $since:expr, $cap:expr, $keys:expr) => {
        counts!(@rows $conn, concat!(
            "SELECT 1 FROM requests r WHERE r.", $col,
            " = k.column1 AND r.requested_at >= $1 AND r.channel <> 'automatic'"
        ), $since, $cap, $keys)
    };
}

/// A form post to write: its verification code (nonce and expiry; none
/// when the token was not genuine or had expired), who posted it and
/// whether its verification failed, and the request when the form was
/// right, with the limits it must fit.
#[derive(Debug, Clone)]
pub struct Post {
    pub nonce: Option<String>,
    pub expires_at: i64,
    pub guess: Guess,
    pub request: Option<(super::NewRequest, Limits)>,
}

/// A post as a guess at a code: from which client address, for which
/// mailbox, and whether it failed (a wrong code, no proof of work; a code
/// used before, or no genuine token, fails whatever this says). Failed
/// guesses are counted per client address and per mailbox since `since`,
/// and a post from a client or for a mailbox that has had its `*_cap`
/// is refused whatever it holds.
#[derive(Debug, Clone)]
pub struct Guess {
    pub client_ip: String,
    pub mailbox: Option<String>,
    pub failed: bool,
    pub at: i64,
    pub since: i64,
    pub client_cap: i64,
    pub mailbox_cap: i64,
}

/// Request limits: at most `client_cap` requests from the client address
/// since `client_since`, and `mailbox_cap` for the mailbox since
/// `mailbox_since` (unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub client_since: i64,
    pub client_cap: i64,
    pub mailbox_since: i64,
    pub mailbox_cap: i64,
}

/// What became of a [`Post`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// The code was used before: nothing written.
    CodeUsed,
    /// The code is now used; there was no request to write.
    NoRequest,
    /// The request was written, with this id.
    Written(i64),
    /// The client address has had its requests.
    ClientLimited,
    /// The mailbox has had its requests.
    MailboxLimited,
    /// The client address has had its failed guesses: nothing written.
    GuessesFromClient,
    /// The mailbox asked for has had its failed guesses.
    GuessesForMailbox,
}

impl Store {
    /// The key the form's verification codes are sealed with, made on
    /// first use (`fresh` is only stored if there is none yet).
    pub async fn web_key(&self, fresh: &[u8; 32]) -> anyhow::Result<[u8; 32]> {
        const MAKE: &str =
            "INSERT INTO web_keys (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING";
        const GET: &str = "SELECT key FROM web_keys WHERE id = 1";
        let key: Vec<u8> = on_writer!(self, p => {
            sqlx::query(MAKE).bind(&fresh[..]).execute(p).await?;
            sqlx::query_scalar(GET).fetch_one(p).await?
        });
        key.try_into()
            .map_err(|_| anyhow::anyhow!("the stored web key is not 32 bytes"))
    }

    /// Uses verification codes up and, for each form that was accepted,
    /// checks the request limits and writes its request, all in one
    /// transaction (posts that arrive together share one commit). The
    /// limits are counted in the transaction that writes, after the posts
    /// before it in the group, so concurrent posts cannot slip past them
    /// together.
    pub async fn use_challenges(&self, posts: &[Post]) -> anyhow::Result<Vec<PostOutcome>> {
        // A group's statements are few and do not grow with it, but for the
        // requests' own rows: each statement is a round trip to the
        // database, and under load a group holds dozens of posts.
        let mut out = Vec::with_capacity(posts.len());
        for group in posts.chunks(POST_CHUNK) {
            let r = in_tx!(self, tx => {
                // 1. Use the codes up, learning which were still unused.
                let nonces: Vec<(&str, i64)> = group
                    .iter()
                    .filter_map(|p| p.nonce.as_deref().map(|n| (n, p.expires_at)))
                    .collect();
                let mut fresh = rustc_hash::FxHashSet::<String>::default();
                if !nonces.is_empty() {
                    let sql = values_sql(
                        "INSERT INTO used_challenges (nonce, expires_at) VALUES ",
                        nonces.len(),
                        2,
                        "",
                        " ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
                    );
                    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).persistent(false);
                    for (n, e) in &nonces {
                        q = q.bind(*n).bind(*e);
                    }
                    fresh = q.fetch_all(&mut *tx).await?.into_iter().collect();
                }
                // 2. The failed guesses of this group's clients and
                // mailboxes, counted as the requests are below.
                let since = group.iter().map(|p| p.guess.since).min().unwrap_or(0);
                let cap = group.iter().map(|p| p.guess.client_cap).max().unwrap_or(0);
                let keys = group.iter().map(|p| p.guess.client_ip.as_str()).collect();
                let mut guesses_by_client = counts!(guesses &mut *tx, "client_ip", since, cap, keys);
                let mut guesses_by_mailbox = rustc_hash::FxHashMap::<String, i64>::default();
                let keys: Vec<&str> = group.iter().filter_map(|p| p.guess.mailbox.as_deref()).collect();
                if !keys.is_empty() {
                    let cap = group.iter().map(|p| p.guess.mailbox_cap).max().unwrap_or(0);
                    guesses_by_mailbox = counts!(guesses &mut *tx, "mailbox", since, cap, keys);
                }
                // 3. What the clients and mailboxes of this group have had.
                let wanted: Vec<(&super::NewRequest, Limits)> = group
                    .iter()
                    .filter(|p| p.nonce.as_ref().is_some_and(|n| fresh.contains(n)) && !p.guess.failed)
                    .filter_map(|p| p.request.as_ref().map(|(r, l)| (r, *l)))
                    .collect();
                let mut by_client = rustc_hash::FxHashMap::<String, i64>::default();
                let mut by_mailbox = rustc_hash::FxHashMap::<String, i64>::default();
                // Each key is counted from the earliest start and up to the
                // highest cap of the group's posts: enough to decide each.
                if let Some(since) = wanted.iter().map(|(_, l)| l.client_since).min() {
                    let cap = wanted.iter().map(|(_, l)| l.client_cap).max().unwrap_or(0);
                    let keys = wanted.iter().map(|(r, _)| r.client_ip.as_str()).collect();
                    by_client = counts!(&mut *tx, "client_ip", since, cap, keys);
                }
                if let Some(since) = wanted.iter().map(|(_, l)| l.mailbox_since).min() {
                    let cap = wanted.iter().map(|(_, l)| l.mailbox_cap).max().unwrap_or(0);
                    let keys = wanted.iter().map(|(r, _)| r.mailbox.as_str()).collect();
                    by_mailbox = counts!(&mut *tx, "mailbox", since, cap, keys);
                }
                // 4. Decide each post in order, counting the ones before it.
                let mut decided = Vec::with_capacity(group.len());
                let mut accepted: Vec<&super::NewRequest> = Vec::new();
                let mut failed: Vec<&Guess> = Vec::new();
                for p in group {
                    let g = &p.guess;
                    // A client or mailbox that has guessed enough gets no
                    // answer about its code, right or wrong.
                    let from_client = guesses_by_client.entry(g.client_ip.clone()).or_default();
                    if *from_client >= g.client_cap {
                        decided.push(PostOutcome::GuessesFromClient);
                        continue;
                    }
                    if let Some(m) = &g.mailbox
                        && guesses_by_mailbox.get(m).is_some_and(|n| *n >= g.mailbox_cap)
                    {
                        decided.push(PostOutcome::GuessesForMailbox);
                        continue;
                    }
                    // A nonce twice in one group: the first post has it.
                    let unused = p.nonce.as_ref().is_some_and(|n| fresh.remove(n));
                    if !unused || g.failed {
                        *from_client += 1;
                        if let Some(m) = &g.mailbox {
                            *guesses_by_mailbox.entry(m.clone()).or_default() += 1;
                        }
                        failed.push(g);
                        decided.push(if unused { PostOutcome::NoRequest } else { PostOutcome::CodeUsed });
                        continue;
                    }
                    let Some((r, limits)) = &p.request else {
                        decided.push(PostOutcome::NoRequest);
                        continue;
                    };
                    let c = by_client.entry(r.client_ip.clone()).or_default();
                    if *c >= limits.client_cap {
                        decided.push(PostOutcome::ClientLimited);
                        continue;
                    }
                    let m = by_mailbox.entry(r.mailbox.clone()).or_default();
                    if *m >= limits.mailbox_cap {
                        decided.push(PostOutcome::MailboxLimited);
                        continue;
                    }
                    *c += 1;
                    *m += 1;
                    decided.push(PostOutcome::Written(0));
                    accepted.push(r);
                }
                // 5. The failed guesses, to count against the next posts.
                if !failed.is_empty() {
                    let sql = values_sql(
                        "INSERT INTO web_guesses (client_ip, mailbox, at) VALUES ",
                        failed.len(),
                        3,
                        "",
                        "",
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                    for g in &failed {
                        q = q.bind(&g.client_ip).bind(&g.mailbox).bind(g.at);
                    }
                    q.execute(&mut *tx).await?;
                }
                // 6. The accepted requests, in one statement. Their ids are
                // given in the order of the rows (SQLite's rowids and
                // PostgreSQL's identity both count up row by row); RETURNING
                // may list them in any order, so they are sorted.
                if !accepted.is_empty() {
                    let sql = values_sql(
                        "INSERT INTO requests (mailbox, kind, from_day, to_day, lang, channel, client_ip, requested_at, idem_key, purpose, state) VALUES ",
                        accepted.len(),
                        10,
                        ", 'pending'",
                        " RETURNING id",
                    );
                    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).persistent(false);
                    for r in &accepted {
                        q = q.bind(&r.mailbox).bind(&r.kind).bind(r.from_day).bind(r.to_day).bind(&r.lang)
                            .bind(&r.channel).bind(&r.client_ip).bind(r.requested_at).bind(&r.idem_key).bind(&r.purpose);
                    }
                    let mut ids = q.fetch_all(&mut *tx).await?;
                    anyhow::ensure!(ids.len() == accepted.len(), "{} requests written, {} ids", accepted.len(), ids.len());
                    ids.sort_unstable();
                    let mut ids = ids.into_iter();
                    for d in decided.iter_mut() {
                        if let PostOutcome::Written(id) = d {
                            *id = ids.next().unwrap_or_default();
                        }
                    }
                }
                decided
            });
            out.extend(r);
        }
        Ok(out)
    }

    /// Forgets used codes that expired before `now`, and failed guesses
    /// older than a day (the guess limits look back an hour).
    pub async fn purge_challenges(&self, now: i64) -> anyhow::Result<u64> {
        const SQL: &str = "DELETE FROM used_challenges WHERE expires_at <= $1";
        const GUESSES: &str = "DELETE FROM web_guesses WHERE at < $1";
        let n = on_writer!(self, p => sqlx::query(SQL).bind(now).execute(p).await?.rows_affected());
        let g = on_writer!(self, p => sqlx::query(GUESSES).bind(now - 86_400).execute(p).await?.rows_affected());
        Ok(n + g)
    }

    /// Requests by a client address since `since` (unix seconds), for the
    /// rate limits. Counting stops at `cap` (the limit): a busy client
    /// costs no more than a quiet one.
    pub async fn requests_from(
        &self,
        client_ip: &str,
        since: i64,
        cap: i64,
    ) -> anyhow::Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar(BY_CLIENT).bind(client_ip).bind(since).bind(cap).fetch_one(p).await?),
        )
    }

    /// Requests for a mailbox since `since`, counted up to `cap`.
    pub async fn requests_for(&self, mailbox: &str, since: i64, cap: i64) -> anyhow::Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar(BY_MAILBOX).bind(mailbox).bind(since).bind(cap).fetch_one(p).await?),
        )
    }

    /// Mails waiting and mails given up, for the health endpoint.
    pub async fn outbox_counts(&self) -> anyhow::Result<(i64, i64)> {
        const SQL: &str = "SELECT COALESCE(SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) FROM outbox";
        let r: (i64, i64) = on_pool!(self, p => sqlx::query_as(SQL).fetch_one(p).await?);
        Ok(r)
    }
}
