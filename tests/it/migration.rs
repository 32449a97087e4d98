//! A database written by the release before the clustered tables migrates
//! in place and keeps every row.
//!
//! Each test builds a database with that release's schema (migrations
//! 0001 to 0008 of the backend under test) and fills every table the way
//! that release wrote them: event rows in `smtp_events` and
//! `access_events`, with every kind, NULL in every column that admits it,
//! and the awkward values the logs bring (U+0001, long replies and
//! recipients, non-Latin text, one key on several days and mailboxes,
//! several rows in one second); and rows in every other table. Then the
//! current code opens it, which moves the old rows into the new tables,
//! and every row is read back through the store's own readers (events)
//! or compared column by column with what the table held before (the
//! rest).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{FixedOffset, NaiveDate, TimeZone as _};
use mailtrail::config::Config;
use mailtrail::ingest::access::{AccessKind, AccessRow};
use mailtrail::ingest::correlate::{Correlator, Kind, Settings, Text};
use mailtrail::ingest::envelope::Clock;
use mailtrail::ingest::{self, Batching, source::SourceSpec};
use mailtrail::store::{EventRow, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Column as _, Row as _};

use crate::support::{config_text, database_url, dovecot, fixture};

/// The last migration of the release the tests migrate from.
const OLD_VERSION: i64 = 8;

/// The configured zone of the tests' config ([`config_text`]): Asia/Taipei,
/// which keeps no summer time.
fn taipei() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// The first of the days the event rows fall on; they span [`DAYS`] days
/// from here, and one day a year before.
fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()
}

const DAYS: i64 = 12;

fn day_number(d: NaiveDate) -> i32 {
    d.format("%Y%m%d").to_string().parse().unwrap()
}

/// One SMTP row as the old release stored it.
#[derive(Clone, Debug)]
struct OldSmtp {
    mailbox: String,
    key: i64,
    row: EventRow,
}

/// What a test put into the old database.
struct OldDb {
    dir: tempfile::TempDir,
    url: String,
    smtp: Vec<OldSmtp>,
    access: Vec<AccessRow>,
    /// Every mailbox address in `mailboxes`, including those with no rows.
    mailboxes: Vec<String>,
    /// The daily table as inserted: (day, mailbox) → counts.
    daily: BTreeMap<(i32, String), [i64; 7]>,
    /// Rows inserted per table other than the event tables.
    counts: BTreeMap<&'static str, usize>,
    /// Those tables as the old database held them (see [`dump_tables`]).
    before: Tables,
    from_day: i32,
    to_day: i32,
}

impl OldDb {
    fn events(&self) -> usize {
        self.smtp.len() + self.access.len()
    }
}

/// Every table other than the event tables, with the order that makes
/// its dump stable (its key; every column where it has none).
const TABLES: &[(&str, &str)] = &[
    ("mailboxes", "id"),
    ("daily_counts", "day, mailbox_id"),
    ("alerts", "day, mailbox, rule"),
    ("job_runs", "day, job"),
    ("requests", "id"),
    ("outbox", "id"),
    ("ingest_sources", "fingerprint"),
    ("ingest_state", "agent"),
    ("web_keys", "id"),
    ("used_challenges", "nonce"),
    ("web_guesses", "client_ip, mailbox, at"),
];

/// A table's columns and its rows, each cell as text.
type Dump = (Vec<String>, Vec<Vec<String>>);
type Tables = BTreeMap<&'static str, Dump>;

/// One cell of a row as text: integers of any width alike, so a column
/// widened by a migration still compares equal; text and bytes tagged.
macro_rules! cell {
    ($r:expr, $i:expr) => {{
        let (r, i) = (&$r, $i);
        if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
            format!("{v:?}")
        } else if let Ok(v) = r.try_get::<Option<i32>, _>(i) {
            format!("{:?}", v.map(i64::from))
        } else if let Ok(v) = r.try_get::<Option<i16>, _>(i) {
            format!("{:?}", v.map(i64::from))
        } else if let Ok(v) = r.try_get::<Option<bool>, _>(i) {
            format!("bool {v:?}")
        } else if let Ok(v) = r.try_get::<Option<String>, _>(i) {
            format!("text {v:?}")
        } else if let Ok(v) = r.try_get::<Option<Vec<u8>>, _>(i) {
            format!("bytes {v:?}")
        } else {
            panic!(
                "column {} of type {:?}: no way to compare it",
                r.column(i).name(),
                r.column(i).type_info()
            )
        }
    }};
}

/// Every row of `table`, ordered by `order`: all its columns (`columns`
/// `None`), or the columns named.
async fn dump_table(store: &Store, table: &str, order: &str, columns: Option<&[String]>) -> Dump {
    let list = match columns {
        None => "*".to_owned(),
        Some(c) => c
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let sql = format!("SELECT {list} FROM {table} ORDER BY {order}");
    crate::on_any_pool!(store, p => {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await.unwrap();
        let names: Vec<String> = match (columns, rows.first()) {
            (Some(c), _) => c.to_vec(),
            (None, Some(r)) => r.columns().iter().map(|c| c.name().to_owned()).collect(),
            (None, None) => panic!("{table} is empty: the test fills every table"),
        };
        let cells = rows
            .iter()
            .map(|r| (0..r.len()).map(|i| cell!(r, i)).collect())
            .collect();
        (names, cells)
    })
}

async fn dump_tables(store: &Store, like: Option<&Tables>) -> Tables {
    let mut out = Tables::new();
    for (table, order) in TABLES {
        let columns = like.map(|t| t[table].0.as_slice());
        out.insert(*table, dump_table(store, table, order, columns).await);
    }
    out
}

/// Every migration of `store`'s backend, read from the source tree.
async fn migrator(store: &Store) -> sqlx::migrate::Migrator {
    let backend = match store {
        Store::Sqlite(_) => "sqlite",
        Store::Postgres(_) => "postgres",
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap()
}

/// Builds the old database of the backend under test: `events` event
/// rows (SMTP and access), made from `seed`, and rows in every other
/// table.
async fn old_database(events: usize, seed: u64) -> OldDb {
    old_database_with(Rows::Made { events, seed }).await
}

/// Where an old database's event rows come from.
enum Rows {
    /// `events` rows made from `seed`, with rows in every other table.
    Made { events: usize, seed: u64 },
    /// These rows, and nothing in the other tables.
    These(Vec<OldSmtp>, Vec<AccessRow>),
}

async fn old_database_with(rows: Rows) -> OldDb {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "old");
    let store = Store::connect(&url).await.unwrap();
    let migrator = migrator(&store).await;
    assert!(
        migrator.iter().any(|m| m.version > OLD_VERSION),
        "no migration after {OLD_VERSION}: nothing to test"
    );
    crate::on_any_pool!(&store, p => migrator.run_to(OLD_VERSION, p).await.unwrap());

    let (mut rng, mailboxes) = match &rows {
        Rows::Made { seed, .. } => (StdRng::seed_from_u64(*seed), mailbox_names()),
        Rows::These(smtp, access) => {
            let names: BTreeSet<String> = smtp
                .iter()
                .map(|s| s.mailbox.clone())
                .chain(access.iter().map(|a| a.mailbox.to_string()))
                .collect();
            // A mailbox with no rows, as for made rows.
            let none = "nobody-left@example.edu".to_owned();
            (
                StdRng::seed_from_u64(0),
                names.into_iter().chain([none]).collect(),
            )
        }
    };
    let mut ids = Vec::new();
    for m in &mailboxes {
        let id: i64 = crate::on_any_pool!(&store, p => sqlx::query_scalar(
            "INSERT INTO mailboxes (address) VALUES ($1) RETURNING id",
        )
        .bind(m)
        .fetch_one(p)
        .await
        .unwrap());
        ids.push(id);
    }
    // The last mailbox has no rows at all (its rows were purged, say).
    let with_rows = mailboxes.len() - 1;

    let fill = matches!(rows, Rows::Made { .. });
    let (smtp, access) = match rows {
        Rows::Made { events, .. } => make_events(&mut rng, &mailboxes[..with_rows], events),
        Rows::These(smtp, access) => (smtp, access),
    };
    let id_of: BTreeMap<&str, i64> = mailboxes
        .iter()
        .map(String::as_str)
        .zip(ids.iter().copied())
        .collect();
    insert_smtp(&store, &smtp, &id_of).await;
    insert_access(&store, &access, &id_of).await;

    let mut counts = BTreeMap::new();
    if fill {
        // Every table of the old schema is filled: those compared whole
        // below, and the event tables.
        let sql = match store {
            Store::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            }
            Store::Postgres(_) => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema()"
            }
        };
        let tables: Vec<String> =
            crate::on_any_pool!(&store, p => sqlx::query_scalar(sql).fetch_all(p).await.unwrap());
        for t in tables {
            assert!(
                TABLES.iter().any(|(name, _)| *name == t)
                    || ["smtp_events", "access_events", "_sqlx_migrations"].contains(&t.as_str()),
                "the old schema's table {t} is not filled"
            );
        }
    }
    let (daily, before) = if fill {
        let daily = fill_tables(&store, &mut rng, &mailboxes, &id_of, &smtp, &mut counts).await;
        (daily, dump_tables(&store, None).await)
    } else {
        (BTreeMap::new(), Tables::new())
    };
    for (table, n) in &counts {
        assert_eq!(before[table].1.len(), *n, "rows written to {table}");
    }
    let stored: i64 = crate::on_any_pool!(&store, p => sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM smtp_events) + (SELECT COUNT(*) FROM access_events)",
    )
    .fetch_one(p)
    .await
    .unwrap());
    assert_eq!(
        stored as usize,
        smtp.len() + access.len(),
        "event rows written"
    );
    store.close().await;

    let days: Vec<i32> = smtp
        .iter()
        .map(|s| s.row.day)
        .chain(access.iter().map(|a| a.day))
        .collect();
    OldDb {
        dir,
        url,
        smtp,
        access,
        mailboxes,
        daily,
        counts,
        before,
        from_day: *days.iter().min().unwrap(),
        to_day: *days.iter().max().unwrap(),
    }
}

fn mailbox_names() -> Vec<String> {
    let mut v: Vec<String> = (0..24).map(|i| format!("user{i:02}@example.edu")).collect();
    v.extend([
        "alice@example.edu".to_owned(),
        "bob.chen@cs.example.edu".to_owned(),
        "陳大文@example.edu".to_owned(),
        format!("{}@example.edu", "long".repeat(60)),
        "nobody-left@example.edu".to_owned(),
    ]);
    v
}

/// A word of `n` characters from `set`.
fn word(rng: &mut StdRng, set: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| set[rng.random_range(0..set.len())] as char)
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789ABCDEF";

fn pick<T: Clone>(rng: &mut StdRng, v: &[T]) -> T {
    v[rng.random_range(0..v.len())].clone()
}

/// A value made by `f` mostly, `None` about one time in `one_in`.
fn opt<T>(rng: &mut StdRng, one_in: u32, f: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    (rng.random_range(0..one_in) != 0).then(|| f(rng))
}

fn ip(rng: &mut StdRng) -> String {
    if rng.random_bool(0.8) {
        format!(
            "{}.{}.{}.{}",
            pick(rng, &[192, 198, 203, 140, 10]),
            rng.random_range(0..256),
            rng.random_range(0..256),
            rng.random_range(1..255)
        )
    } else {
        format!(
            "2001:db8:{:x}::{:x}",
            rng.random_range(0..0xffff),
            rng.random_range(1..0xffff)
        )
    }
}

/// A remote reply of the kind Postfix logs for `kind`, with words that
/// vary (queue IDs, addresses, numbers) and words that repeat.
fn reply(rng: &mut StdRng, kind: Kind) -> String {
    let len = rng.random_range(10..16);
    let qid = word(rng, ALNUM, len);
    let n = rng.random_range(1_000_000_000u64..2_000_000_000);
    let addr = format!(
        "{}@{}",
        word(rng, ALNUM, 6).to_lowercase(),
        pick(rng, &["gmail.com", "example.org", "yahoo.com.tw"])
    );
    let host = format!("mx{}.example.org", rng.random_range(1..5));
    let a = ip(rng);
    match kind {
        Kind::Sent => pick(
            rng,
            &[
                format!(
                    "250 2.0.0 OK  {n} d9443c01a7336-{qid}si.{} - gsmtp",
                    n % 1000
                ),
                format!("250 2.0.0 Ok: queued as {qid}"),
                format!("250 2.0.0 from MTA(smtp:[{a}]): 250 2.0.0 Ok: queued as {qid}"),
                "250 2.0.0 Ok".to_owned(),
                format!("250 ok {n} qp {}", n % 99999),
            ],
        ),
        Kind::Bounced => pick(
            rng,
            &[
                format!(
                    "host {host}[{a}] said: 550-5.1.1 <{addr}>: The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser {qid}.{n} - gsmtp (in reply to RCPT TO command)"
                ),
                format!(
                    "host {host}[{a}] said: 552 5.2.2 <{addr}>: Mailbox full (in reply to end of DATA command)"
                ),
                "unknown user: \"nosuch\"".to_owned(),
                format!(
                    "host {host}[{a}] said: 550 5.7.1 拒絕：收件者信箱已滿 ID={qid} (in reply to RCPT TO command)"
                ),
            ],
        ),
        Kind::Deferred | Kind::Expired => pick(
            rng,
            &[
                format!(
                    "host {host}[{a}] said: 450 4.7.1 <{addr}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html (in reply to RCPT TO command)"
                ),
                format!("connect to {host}[{a}]:25: Connection timed out"),
                format!(
                    "Host or domain name not found. Name service error for name={host} type=MX: Host not found, try again"
                ),
                format!(
                    "delivery temporarily suspended: connect to {host}[{a}]:25: Connection refused"
                ),
            ],
        ),
        Kind::AuthRcv | Kind::AuthBlk => pick(
            rng,
            &[
                format!("SASL LOGIN authentication failed: UGFzc3dvcmQ6 from unknown[{a}]"),
                format!(
                    "NOQUEUE: reject: RCPT from unknown[{a}]: 554 5.7.1 <{addr}>: Relay access denied"
                ),
                "authentication failed".to_owned(),
            ],
        ),
        Kind::Blocked => pick(
            rng,
            &[
                "250 2.7.0 BLOCKED".to_owned(),
                format!("550 5.7.1 Message content rejected, id={qid}"),
            ],
        ),
    }
}

/// Replies whose splitting into pattern and words is easy to get wrong,
/// and values at the limits of what a column holds.
fn awkward_replies() -> Vec<String> {
    vec![
        // The separator of the stored form, in the reply itself.
        "250 2.0.0 ok\u{1}weird 4F2A1B0C3D".to_owned(),
        "\u{1}".to_owned(),
        // A 3,000-byte reply of variable and constant words.
        {
            let mut s = String::from("554 5.7.1 ");
            let mut i = 0;
            while s.len() < 3000 {
                s.push_str(&format!("part{i:06} of a long refusal; "));
                i += 1;
            }
            s.truncate(3000);
            s
        },
        // Only a variable word; variable words at both ends; delimiters
        // side by side; doubled spaces and a tab; a trailing space.
        "4F2A1B0C3D".to_owned(),
        "someone@example.org said 550 to 4F2A1B0C3D".to_owned(),
        "<<a@b>>[[1234567]]((x))".to_owned(),
        "250  2.0.0   OK\tqueued as  ABC123456 ".to_owned(),
        " leading space 123456789".to_owned(),
        "digits 1234567 and a word of twenty-four chars: abcdefghijklmnopqrstuvwx".to_owned(),
        // Control characters and bidirectional controls, as logs can carry.
        "550 \u{7}bell \u{1b}[31mred\u{1b}[0m \u{202e}cba\u{202c} 98765432".to_owned(),
        // Text outside the BMP.
        "550 5.7.1 😀 收件者 <用戶@例子.台灣> 0123456789".to_owned(),
        // Backslashes, and the text that bulk loaders read as NULL.
        "\\N".to_owned(),
        "550 5.1.1 <\\N@example.org>: C:\\Program Files\\MTA\\queue\\0123456789 \\N\\t \\\\"
            .to_owned(),
    ]
}

/// Event rows: about `n` of them, two thirds SMTP and one third access,
/// on the mailboxes `mailboxes`, spread over the test's days, with every
/// special case at least once.
fn make_events(rng: &mut StdRng, mailboxes: &[String], n: usize) -> (Vec<OldSmtp>, Vec<AccessRow>) {
    let tz = taipei();
    let mut days: Vec<NaiveDate> = (0..DAYS)
        .map(|i| first_day() + chrono::Duration::days(i))
        .collect();
    days.push(first_day() - chrono::Duration::days(365));
    // Keys already used per (mailbox, day): the old tables' unique index.
    let mut used = BTreeSet::new();
    let mut key_for = |rng: &mut StdRng, mailbox: &str, day: i32, wanted: Option<i64>| -> i64 {
        let mut k = wanted.unwrap_or_else(|| rng.random());
        while !used.insert((mailbox.to_owned(), day, k)) {
            k = rng.random();
        }
        k
    };
    let time_on = |rng: &mut StdRng, d: NaiveDate| -> i64 {
        let midnight = tz
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .timestamp_micros();
        let sec = rng.random_range(0..86_400i64);
        // Some stamps have no fraction (classic syslog), some do.
        let usec = if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(0..1_000_000)
        };
        midnight + sec * 1_000_000 + usec
    };
    let day_of = |time_us: i64| -> i32 {
        day_number(tz.timestamp_micros(time_us).single().unwrap().date_naive())
    };
    // A few rows were stored while the site's zone was UTC: their day is
    // the UTC day of their instant, which is another day in the first
    // eight hours of a Taipei day. The move keeps the day a row was
    // stored with.
    let midnight = |d: NaiveDate| -> i64 {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .timestamp_micros()
    };
    let utc_day = |time_us: i64| -> i32 {
        day_number(
            chrono::DateTime::from_timestamp_micros(time_us)
                .unwrap()
                .date_naive(),
        )
    };

    let awkward = awkward_replies();
    let long_recipient = format!("{}@example.org", "r".repeat(1000));
    let kinds = [
        Kind::Sent,
        Kind::Bounced,
        Kind::Deferred,
        Kind::Expired,
        Kind::AuthRcv,
        Kind::AuthBlk,
        Kind::Blocked,
    ];
    let n_smtp = (n * 2 / 3).max(awkward.len() + 40);
    let mut smtp = Vec::with_capacity(n_smtp);
    for i in 0..n_smtp {
        // Most rows on one of the last days; a few on the day a year before.
        let d = if i % 97 == 5 {
            days[days.len() - 1]
        } else {
            days[i % DAYS as usize]
        };
        let mut time_us = time_on(rng, d);
        // Several rows in one second: the same instant, and the same
        // second with other fractions.
        if i % 10 == 1 && !smtp.is_empty() {
            let prev: &OldSmtp = &smtp[smtp.len() - 1];
            time_us = if i % 20 == 1 {
                prev.row.time_us
            } else {
                prev.row.time_us - prev.row.time_us.rem_euclid(1_000_000)
                    + rng.random_range(0..1_000_000)
            };
        }
        // The first and last microsecond of a local day.
        if i == 7 {
            time_us = tz
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
                .unwrap()
                .timestamp_micros();
        }
        if i == 8 {
            time_us = tz
                .from_local_datetime(&d.and_hms_micro_opt(23, 59, 59, 999_999).unwrap())
                .unwrap()
                .timestamp_micros();
        }
        let day = if i % 331 == 17 {
            // Into the first eight hours of its local day.
            let start = time_us - (time_us - midnight(d)).rem_euclid(86_400_000_000);
            time_us = start + (time_us - start) / 3;
            utc_day(time_us)
        } else {
            day_of(time_us)
        };
        let mailbox = if i < 3 {
            mailboxes[mailboxes.len() - 2].clone()
        } else {
            pick(rng, mailboxes)
        };
        let kind = kinds[i % kinds.len()];
        let auth = matches!(kind, Kind::AuthRcv | Kind::AuthBlk);
        // One key on other days and mailboxes: the previous row's key.
        let wanted = match i {
            0 => Some(i64::MIN),
            1 => Some(i64::MAX),
            2 => Some(0),
            _ if i % 50 == 3 => smtp.last().map(|p: &OldSmtp| p.key),
            _ => None,
        };
        let key = key_for(rng, &mailbox, day, wanted);
        let response = if i < awkward.len() {
            Some(awkward[i].clone())
        } else {
            opt(rng, 8, |rng| reply(rng, kind))
        };
        let recipient = if i == awkward.len() {
            Some(long_recipient.clone())
        } else if i == awkward.len() + 1 {
            Some("\\N".to_owned())
        } else if i == awkward.len() + 2 {
            Some("\"a\\\\b\tc\"@example.org".to_owned())
        } else if auth {
            opt(rng, 2, |rng| {
                format!("{}@example.org", word(rng, ALNUM, 8).to_lowercase())
            })
        } else {
            opt(rng, 10, |rng| {
                let other = format!("{}@yahoo.com.tw", word(rng, ALNUM, 7).to_lowercase());
                pick(
                    rng,
                    &[
                        "bob@gmail.com".to_owned(),
                        "張三@example.com.tw".to_owned(),
                        other,
                    ],
                )
            })
        };
        let row = EventRow {
            time_us,
            day,
            kind,
            host: pick(rng, &["mail", "mx1", "smtp-out.example.edu", "mail2"]).to_owned(),
            queue_id: if auth && rng.random_bool(0.7) {
                None
            } else {
                opt(rng, 10, |rng| {
                    let set = if rng.random_bool(0.5) { HEX } else { ALNUM };
                    let len = rng.random_range(10..16);
                    word(rng, set, len)
                })
            },
            sender_ip: opt(rng, 4, ip),
            relay: opt(rng, 5, |rng| {
                let (a, b, n) = (ip(rng), ip(rng), rng.random_range(1..9));
                pick(
                    rng,
                    &[
                        format!("gmail-smtp-in.l.google.com[{a}]:25"),
                        "127.0.0.1[127.0.0.1]:10025".to_owned(),
                        "none".to_owned(),
                        format!("mx{n}.example.org[{b}]:25"),
                    ],
                )
            }),
            recipient,
            dsn: opt(rng, 6, |rng| {
                pick(
                    rng,
                    &[
                        "2.0.0", "5.1.1", "4.4.1", "4.7.1", "5.7.1", "5.2.2", "2.6.0",
                    ],
                )
                .to_owned()
            }),
            response,
        };
        smtp.push(OldSmtp { mailbox, key, row });
    }

    let access_kinds = [
        AccessKind::Login,
        AccessKind::Logout,
        AccessKind::AuthFailed,
        AccessKind::MessageDeleted,
        AccessKind::MessageMarkedDeleted,
        AccessKind::MailboxDeleted,
    ];
    let n_access = (n - n.min(n_smtp)).max(60);
    let mut access: Vec<AccessRow> = Vec::with_capacity(n_access);
    for i in 0..n_access {
        let d = if i % 89 == 4 {
            days[days.len() - 1]
        } else {
            days[(i * 7) % DAYS as usize]
        };
        let mut time_us = time_on(rng, d);
        if i % 10 == 1 && !access.is_empty() {
            let prev = &access[access.len() - 1];
            time_us = if i % 20 == 1 {
                prev.time_us
            } else {
                prev.time_us - prev.time_us.rem_euclid(1_000_000) + rng.random_range(0..1_000_000)
            };
        }
        let day = if i % 331 == 17 {
            // Into the first eight hours of its local day.
            let start = time_us - (time_us - midnight(d)).rem_euclid(86_400_000_000);
            time_us = start + (time_us - start) / 3;
            utc_day(time_us)
        } else {
            day_of(time_us)
        };
        let mailbox = pick(rng, mailboxes);
        // Keys shared with SMTP rows, and with other access rows.
        let wanted = match i {
            0 => Some(i64::MIN),
            _ if i % 40 == 2 => access.last().map(|p| p.key),
            _ if i % 40 == 3 => Some(smtp[i % smtp.len()].key),
            _ => None,
        };
        let key = key_for(rng, &format!("access {mailbox}"), day, wanted);
        let num = |rng: &mut StdRng, max: i64| opt(rng, 3, |rng| rng.random_range(0..max));
        let row = AccessRow {
            key,
            time_us,
            day,
            mailbox: Text::from(mailbox.as_str()),
            mailbox_no: None,
            kind: Some(access_kinds[i % access_kinds.len()]),
            host: Text::from(pick(rng, &["imap1", "imap2", "mail"])),
            protocol: opt(rng, 6, |rng| {
                pick(rng, &["imap", "pop3", "submission", "managesieve"])
            }),
            remote_ip: opt(rng, 5, |rng| Text::from(ip(rng))),
            local_ip: opt(rng, 3, |rng| Text::from(ip(rng))),
            tls: opt(rng, 3, |rng| rng.random_bool(0.7)),
            session: opt(rng, 4, |rng| {
                Text::from(format!("{}+/=", word(rng, ALNUM, 16)))
            }),
            client: opt(rng, 3, |rng| {
                Text::from(pick(
                    rng,
                    &[
                        "Thunderbird",
                        "webmail",
                        "iPhone Mail (20A362)",
                        "郵件 App",
                        "Outlook\u{1}16.0",
                        "\\N",
                        "Evil\tClient\\x",
                    ],
                ))
            }),
            deleted: num(rng, 1000),
            retained: num(rng, 100_000),
            size_bytes: num(rng, 1 << 40),
            in_bytes: num(rng, 1 << 30),
            out_bytes: num(rng, 1 << 36),
            expunged: num(rng, 500),
            trashed: num(rng, 500),
            downloaded: num(rng, 5000),
            attempts: num(rng, 20),
            uid: num(rng, 1 << 31),
            // Message IDs come from the mail itself: anything a sender
            // wrote, including what the bulk paths treat specially.
            message_id: match i {
                9 => Some(format!("<{}@example.org>", "m".repeat(900))),
                10 => Some("\\N".to_owned()),
                11 => Some("<a\\b\tc\\\\.\\N@example.org>".to_owned()),
                _ => opt(rng, 3, |rng| {
                    let n = rng.random_range(0..1_000_000);
                    format!("<{}.{n}@mail.example.org>", word(rng, HEX, 12))
                }),
            },
            folder: opt(rng, 3, |rng| {
                Text::from(pick(
                    rng,
                    &[
                        "INBOX",
                        "Trash",
                        "Sent Messages",
                        "收件匣/專案 2026",
                        "&U,BTFw-",
                        "INBOX.\u{1}odd",
                        "\\N",
                        "Work\\2026\tQ4",
                    ],
                ))
            }),
            reason: opt(rng, 3, |rng| {
                let secs = rng.random_range(0..600);
                Text::from(pick(
                    rng,
                    &[
                        "auth failed, 3 attempts in 12 secs".to_owned(),
                        "Disconnected: Logged out".to_owned(),
                        format!("Connection closed (UID FETCH finished {secs} secs ago)"),
                        "Disconnected for inactivity in reply to IDLE".to_owned(),
                    ],
                ))
            }),
            master_user: opt(rng, 5, |rng| {
                Text::from(pick(rng, &["admin", "backup*master", "管理員"]))
            }),
        };
        access.push(row);
    }
    assert_covers(&smtp, &access);
    assert!(
        smtp.iter().any(|s| s.row.day != day_of(s.row.time_us))
            && access.iter().any(|a| a.day != day_of(a.time_us)),
        "rows stored under the UTC day"
    );
    (smtp, access)
}

/// The generator's promise: every kind, and NULL and a value in every
/// column that admits NULL.
fn assert_covers(smtp: &[OldSmtp], access: &[AccessRow]) {
    let kinds: BTreeSet<i32> = smtp.iter().map(|s| s.row.kind as i32).collect();
    assert_eq!(kinds, (1..=7).collect(), "every SMTP kind");
    let kinds: BTreeSet<i32> = access
        .iter()
        .filter_map(|a| a.kind.map(|k| k as i32))
        .collect();
    assert_eq!(kinds, (1..=6).collect(), "every access kind");
    let both = |name: &str, nulls: Vec<bool>| {
        assert!(
            nulls.iter().any(|n| *n) && nulls.iter().any(|n| !*n),
            "{name}: the rows need a NULL and a value"
        )
    };
    let r = |f: fn(&EventRow) -> bool| smtp.iter().map(|s| f(&s.row)).collect::<Vec<_>>();
    both("queue_id", r(|e| e.queue_id.is_none()));
    both("sender_ip", r(|e| e.sender_ip.is_none()));
    both("relay", r(|e| e.relay.is_none()));
    both("recipient", r(|e| e.recipient.is_none()));
    both("dsn", r(|e| e.dsn.is_none()));
    both("response", r(|e| e.response.is_none()));
    let a = |f: fn(&AccessRow) -> bool| access.iter().map(f).collect::<Vec<_>>();
    both("protocol", a(|e| e.protocol.is_none()));
    both("remote_ip", a(|e| e.remote_ip.is_none()));
    both("local_ip", a(|e| e.local_ip.is_none()));
    both("tls", a(|e| e.tls.is_none()));
    both("session", a(|e| e.session.is_none()));
    both("client", a(|e| e.client.is_none()));
    both("deleted", a(|e| e.deleted.is_none()));
    both("retained", a(|e| e.retained.is_none()));
    both("size_bytes", a(|e| e.size_bytes.is_none()));
    both("in_bytes", a(|e| e.in_bytes.is_none()));
    both("out_bytes", a(|e| e.out_bytes.is_none()));
    both("expunged", a(|e| e.expunged.is_none()));
    both("trashed", a(|e| e.trashed.is_none()));
    both("downloaded", a(|e| e.downloaded.is_none()));
    both("attempts", a(|e| e.attempts.is_none()));
    both("uid", a(|e| e.uid.is_none()));
    both("message_id", a(|e| e.message_id.is_none()));
    both("folder", a(|e| e.folder.is_none()));
    both("reason", a(|e| e.reason.is_none()));
    both("master_user", a(|e| e.master_user.is_none()));
}

/// Rows per INSERT statement: far below either backend's limit on
/// parameters (26 x 200 = 5,200).
const CHUNK: usize = 200;

fn values_sql(head: &str, columns: usize, rows: usize) -> String {
    let mut s = String::from(head);
    s.push_str(" VALUES ");
    for r in 0..rows {
        s.push_str(if r > 0 { ", (" } else { "(" });
        for c in 0..columns {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * columns + c + 1));
        }
        s.push(')');
    }
    s
}

/// Writes SMTP rows into `smtp_events` as the old release's writer did.
async fn insert_smtp(store: &Store, rows: &[OldSmtp], id_of: &BTreeMap<&str, i64>) {
    const HEAD: &str = "INSERT INTO smtp_events (key, day, time_us, mailbox_id, kind, host, queue_id, sender_ip, relay, recipient, dsn, response)";
    crate::on_any_pool!(store, p => {
        let mut tx = p.begin().await.unwrap();
        for chunk in rows.chunks(CHUNK) {
            let sql = values_sql(HEAD, 12, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                let e = &s.row;
                q = q
                    .bind(s.key)
                    .bind(e.day)
                    .bind(e.time_us)
                    .bind(id_of[s.mailbox.as_str()])
                    .bind(e.kind as i32)
                    .bind(e.host.clone())
                    .bind(e.queue_id.clone())
                    .bind(e.sender_ip.clone())
                    .bind(e.relay.clone())
                    .bind(e.recipient.clone())
                    .bind(e.dsn.clone())
                    .bind(e.response.clone());
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    })
}

/// Writes access rows into `access_events` as the old release's writer did.
async fn insert_access(store: &Store, rows: &[AccessRow], id_of: &BTreeMap<&str, i64>) {
    const HEAD: &str = "INSERT INTO access_events (key, day, time_us, mailbox_id, kind, host, protocol, remote_ip, local_ip, tls, session, client, deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, folder, reason, master_user)";
    let text = |t: &Option<Text>| t.as_ref().map(|t| t.to_string());
    crate::on_any_pool!(store, p => {
        let mut tx = p.begin().await.unwrap();
        for chunk in rows.chunks(CHUNK) {
            let sql = values_sql(HEAD, 26, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.key)
                    .bind(r.day)
                    .bind(r.time_us)
                    .bind(id_of[r.mailbox.as_str()])
                    .bind(r.kind.map(|k| k as i32))
                    .bind(r.host.to_string())
                    .bind(r.protocol)
                    .bind(text(&r.remote_ip))
                    .bind(text(&r.local_ip))
                    .bind(r.tls)
                    .bind(text(&r.session))
                    .bind(text(&r.client))
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
                    .bind(r.message_id.clone())
                    .bind(text(&r.folder))
                    .bind(text(&r.reason))
                    .bind(text(&r.master_user));
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    })
}

/// The column of `daily_counts` (after `day`, `mailbox_id`, `sum`, in
/// the order of the migration) that counts `kind`: Auth_blk counts the
/// refusals of a content filter too.
fn daily_column(kind: Kind) -> usize {
    match kind {
        Kind::AuthBlk | Kind::Blocked => 1,
        Kind::AuthRcv => 2,
        Kind::Bounced => 3,
        Kind::Deferred => 4,
        Kind::Expired => 5,
        Kind::Sent => 6,
    }
}

/// Fills the tables other than the event tables, as the old release
/// wrote them, counting the rows in `counts`; returns the daily table.
async fn fill_tables(
    store: &Store,
    rng: &mut StdRng,
    mailboxes: &[String],
    id_of: &BTreeMap<&str, i64>,
    smtp: &[OldSmtp],
    counts: &mut BTreeMap<&'static str, usize>,
) -> BTreeMap<(i32, String), [i64; 7]> {
    macro_rules! exec {
        ($table:literal, $sql:expr, $($v:expr),+) => {{
            let n = crate::on_any_pool!(store, p => sqlx::query($sql)$(.bind($v))+.execute(p).await.unwrap().rows_affected());
            assert_eq!(n, 1, "{}", $table);
            *counts.entry($table).or_default() += 1;
        }};
    }
    counts.insert("mailboxes", mailboxes.len());
    let now = 1_796_000_000i64;

    // The nightly table of the first days, counted from their rows as
    // `aggregate` counts them, and its job runs.
    let mut daily = BTreeMap::new();
    for i in 0..4 {
        let day = day_number(first_day() + chrono::Duration::days(i));
        let mut of_day: BTreeMap<&str, [i64; 7]> = BTreeMap::new();
        for s in smtp.iter().filter(|s| s.row.day == day) {
            let c = of_day.entry(s.mailbox.as_str()).or_default();
            c[0] += 1;
            c[daily_column(s.row.kind)] += 1;
        }
        let mailboxes_of_day = of_day.len();
        for (m, c) in of_day {
            exec!(
                "daily_counts",
                "INSERT INTO daily_counts (day, mailbox_id, sum, auth_blk, auth_rcv, bounced, deferred, expired, sent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                day,
                id_of[m],
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                c[6]
            );
            daily.insert((day, m.to_owned()), c);
        }
        exec!(
            "job_runs",
            "INSERT INTO job_runs (day, job, finished_at, detail) VALUES ($1, $2, $3, $4)",
            day,
            "aggregate",
            now + i,
            Some(format!("{mailboxes_of_day} mailboxes"))
        );
        exec!(
            "job_runs",
            "INSERT INTO job_runs (day, job, finished_at, detail) VALUES ($1, $2, $3, $4)",
            day,
            "alerts",
            now + i + 1,
            (i % 2 == 0).then_some("2 warned")
        );
    }

    // Mail: queued, sent and failed, one with bytes that are not UTF-8.
    let states = ["queued", "sent", "failed", "sent", "queued", "sent"];
    for (i, state) in states.iter().enumerate() {
        let recipient = &mailboxes[i];
        let mut message = format!("From: mailtrail <mailtrail@example.edu>\r\nTo: {recipient}\r\nSubject: =?UTF-8?B?5aCx5ZGK?=\r\n\r\nbody {i}\r\n").into_bytes();
        if i == 2 {
            message.extend_from_slice(&[0, 0xff, 0xfe, 0x80, b'\r', b'\n']);
        }
        let key = if i % 2 == 0 {
            format!("request:{}", i + 1)
        } else {
            format!("alert:20261025:{recipient}")
        };
        exec!(
            "outbox",
            "INSERT INTO outbox (idem_key, recipient, sender, subject, message, state, attempts, next_attempt_at, last_error, created_at, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            key,
            recipient.clone(),
            "mailtrail@example.edu",
            format!("寄件紀錄 / Sending record {i}"),
            message,
            *state,
            i as i32,
            now + 60 * i as i64,
            (*state == "failed").then_some("550 5.1.1 relay refused: \u{1b}[31m"),
            now - 100,
            (*state == "sent").then_some(now - 50)
        );
    }

    // Requests of every state, purpose, channel and kind.
    let states = ["pending", "queued", "failed"];
    let purposes = ["report", "report_pdf", "warning"];
    let channels = ["cli", "web", "mail", "automatic"];
    for i in 0..12usize {
        let state = states[i % 3];
        let purpose = purposes[(i / 3) % 3];
        exec!(
            "requests",
            "INSERT INTO requests (mailbox, kind, from_day, to_day, lang, channel, client_ip, requested_at, state, idem_key, error, outbox_id, purpose) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            mailboxes[i % mailboxes.len()].clone(),
            if i % 2 == 0 { "smtp" } else { "access" },
            20261001 + i as i32,
            20261030,
            if i % 2 == 0 { "zh-TW" } else { "en" },
            channels[i % 4],
            if i % 4 == 0 {
                "127.0.0.1".to_owned()
            } else {
                ip(rng)
            },
            now + i as i64,
            state,
            (purpose == "warning").then(|| format!(
                "alert:2026102{}:{}",
                i % 10,
                mailboxes[i % mailboxes.len()]
            )),
            (state == "failed").then_some("the report could not be rendered: 資料庫忙碌"),
            (state == "queued").then_some(1i64 + (i % 6) as i64),
            purpose
        );
    }

    for i in 0..3i64 {
        exec!(
            "alerts",
            "INSERT INTO alerts (day, mailbox, rule, value, threshold, outbox_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            20261025 + i as i32,
            mailboxes[i as usize].clone(),
            if i == 1 { "auth_blk" } else { "sum" },
            500 + i,
            400i64,
            (i != 2).then_some(i + 1),
            now + i
        );
    }

    exec!(
        "ingest_sources",
        "INSERT INTO ingest_sources (fingerprint, path, offset_bytes, year_state, updated_us) VALUES ($1, $2, $3, $4, $5)",
        -8_070_450_532_247_928_832i64,
        "/var/log/mail.log",
        123_456_789i64,
        Some(r#"{"year":2026,"last":[10,31]}"#),
        now * 1_000_000
    );
    exec!(
        "ingest_sources",
        "INSERT INTO ingest_sources (fingerprint, path, offset_bytes, year_state, updated_us) VALUES ($1, $2, $3, $4, $5)",
        42i64,
        "/var/log/dovecot.log.2.gz",
        0i64,
        None::<&str>,
        now * 1_000_000 + 1
    );
    let state: Vec<u8> = (0..4096)
        .map(|_| rng.random())
        .chain([0, 0xff, 1])
        .collect();
    exec!(
        "ingest_state",
        "INSERT INTO ingest_state (agent, state, updated_us) VALUES ($1, $2, $3)",
        "default",
        state,
        now * 1_000_000
    );
    exec!(
        "ingest_state",
        "INSERT INTO ingest_state (agent, state, updated_us) VALUES ($1, $2, $3)",
        "mx2",
        vec![0u8; 0],
        now * 1_000_000 + 2
    );

    let key: Vec<u8> = (0..32).map(|_| rng.random()).collect();
    exec!(
        "web_keys",
        "INSERT INTO web_keys (id, key) VALUES ($1, $2)",
        1i32,
        key
    );
    for i in 0..3i64 {
        exec!(
            "used_challenges",
            "INSERT INTO used_challenges (nonce, expires_at) VALUES ($1, $2)",
            word(rng, ALNUM, 22),
            now + 600 + i
        );
    }
    for i in 0..4i64 {
        exec!(
            "web_guesses",
            "INSERT INTO web_guesses (client_ip, mailbox, at) VALUES ($1, $2, $3)",
            if i < 2 {
                "203.0.113.9".to_owned()
            } else {
                "2001:db8::9".to_owned()
            },
            (i != 1).then(|| mailboxes[i as usize].clone()),
            now + i
        );
    }
    daily
}

/// Sorts rows by `order`, and rows of one place in it by all their
/// fields: the readers order by day and time only.
fn in_order<T: std::fmt::Debug>(rows: &mut [T], order: impl Fn(&T) -> (i32, i64)) {
    rows.sort_by_cached_key(|r| (order(r), format!("{r:?}")));
}

/// Asserts that `got` is `want`: ordered by `order` (day, then time), and
/// the same rows, those of one instant in any order.
///
/// By day, then time: that is time order wherever a row's day is the
/// local day of its instant. The rows stored while the zone was another
/// (see `make_events`) are the exception, and a report lists them under
/// the day they were stored with.
fn same_rows<T: std::fmt::Debug + PartialEq>(
    what: &str,
    mut got: Vec<T>,
    mut want: Vec<T>,
    order: impl Fn(&T) -> (i32, i64) + Copy,
) {
    if let Some(w) = got.windows(2).find(|w| order(&w[0]) > order(&w[1])) {
        panic!("{what}: not in order:\n{:?}\nbefore\n{:?}", w[0], w[1]);
    }
    assert_eq!(got.len(), want.len(), "{what}: rows");
    in_order(&mut got, order);
    in_order(&mut want, order);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{what}: row {i} of {}", want.len());
    }
}

/// Checks that `store`, opened on the migrated database, holds every row
/// `old` held: events through the store's readers, every other table
/// column by column, and the old event tables gone.
async fn check(store: &Store, old: &OldDb) {
    let mut smtp_seen = 0;
    let mut access_seen = 0;
    for mailbox in &old.mailboxes {
        let want: Vec<EventRow> = old
            .smtp
            .iter()
            .filter(|s| &s.mailbox == mailbox)
            .map(|s| s.row.clone())
            .collect();
        let got = store
            .events(mailbox, old.from_day, old.to_day, None)
            .await
            .unwrap();
        smtp_seen += got.len();
        same_rows(&format!("SMTP rows of {mailbox}"), got, want.clone(), |e| {
            (e.day, e.time_us)
        });

        // The per-day counts come from the same rows (or, for days
        // `aggregate` has done, from the daily table counted from them,
        // which keeps a content filter's refusals with Auth_blk).
        let mut counts: BTreeMap<(i32, usize), i64> = BTreeMap::new();
        for e in &want {
            *counts.entry((e.day, daily_column(e.kind))).or_default() += 1;
        }
        let got = store
            .daily_counts(mailbox, old.from_day, old.to_day)
            .await
            .unwrap()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (d, k, n)| {
                *m.entry((d, daily_column(k))).or_default() += n;
                m
            });
        assert_eq!(got, counts, "daily counts of {mailbox}");

        let want: Vec<AccessRow> = old
            .access
            .iter()
            .filter(|a| a.mailbox == mailbox.as_str())
            .cloned()
            .collect();
        let got = store
            .access_events(mailbox, old.from_day, old.to_day)
            .await
            .unwrap();
        access_seen += got.len();
        same_rows(&format!("access rows of {mailbox}"), got, want, |a| {
            (a.day, a.time_us)
        });
    }
    assert_eq!(smtp_seen, old.smtp.len(), "SMTP rows");
    assert_eq!(access_seen, old.access.len(), "access rows");

    // The nightly table, through its reader.
    let days: BTreeSet<i32> = old.daily.keys().map(|(d, _)| *d).collect();
    for day in days {
        let got: BTreeMap<String, [i64; 7]> = store
            .day_table(day)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.mailbox, c.counts))
            .collect();
        let want: BTreeMap<String, [i64; 7]> = old
            .daily
            .iter()
            .filter(|((d, _), _)| *d == day)
            .map(|((_, m), c)| (m.clone(), *c))
            .collect();
        assert_eq!(got, want, "daily table of {day}");
    }

    // Every other table, row by row and column by column.
    let after = if old.before.is_empty() {
        Tables::new()
    } else {
        dump_tables(store, Some(&old.before)).await
    };
    for (table, (columns, rows)) in &old.before {
        assert_eq!(rows.len(), old.counts[table], "{table}: rows before");
        let got = &after[table].1;
        assert_eq!(got.len(), rows.len(), "{table}: rows after");
        for (i, (g, w)) in got.iter().zip(rows).enumerate() {
            assert_eq!(g, w, "{table}: row {i} ({columns:?})");
        }
    }

    // Nothing left behind in the old tables.
    for table in ["smtp_events", "access_events"] {
        assert!(!has_table(store, table).await, "{table} is still there");
    }
}

async fn has_table(store: &Store, table: &str) -> bool {
    let n: i64 = match store {
        Store::Sqlite(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        )
        .bind(table)
        .fetch_one(p)
        .await
        .unwrap(),
        Store::Postgres(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_one(p)
        .await
        .unwrap(),
    };
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_release_keeps_every_row() {
    let old = old_database(6000, 0x6d69_6772_6174_6531).await;
    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;
    store.close().await;

    // Opening it again changes nothing.
    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;

    // The nightly job, run again on the moved rows of a day it had
    // counted, makes the same daily table.
    let days: BTreeSet<i32> = old.daily.keys().map(|(d, _)| *d).collect();
    for day in days {
        store.aggregate_day(day).await.unwrap();
        let got: BTreeMap<String, [i64; 7]> = store
            .day_table(day)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.mailbox, c.counts))
            .collect();
        let want: BTreeMap<String, [i64; 7]> = old
            .daily
            .iter()
            .filter(|((d, _), _)| *d == day)
            .map(|((_, m), c)| (m.clone(), *c))
            .collect();
        assert_eq!(got, want, "daily table of {day} counted again");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_at_once_move_each_row_once() {
    let old = old_database(60_000, 0x6d69_6772_6174_6535).await;
    // Say `serve` and `ingest` started together after the upgrade.
    let mut a = migrate_command(&old);
    let mut b = migrate_command(&old);
    let (a, b) = tokio::task::spawn_blocking(move || {
        let start = |c: &mut std::process::Command| {
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (start(&mut a), start(&mut b));
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_goes_on_where_it_stopped() {
    let old = old_database(50_000, 0x6d69_6772_6174_6532).await;
    // The new schema, without the move that opening the store makes.
    let store = Store::connect(&old.url).await.unwrap();
    let migrator = migrator(&store).await;
    crate::on_any_pool!(&store, p => migrator.run(p).await.unwrap());
    let mut moved = 0;
    for _ in 0..2 {
        let n = store.move_rows_step(7_000).await.unwrap();
        assert!(n > 0 && n <= 7_000, "one step moved {n} rows");
        moved += n;
    }
    assert!(moved < old.events() as u64, "the move ended in two steps");
    // Stopped there, without closing, as a crash would.
    drop(store);

    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;
    store.close().await;
}

/// `mailtrail migrate` with a config naming `old`'s database.
fn migrate_command(old: &OldDb) -> std::process::Command {
    let config = old.dir.path().join("config.toml");
    std::fs::write(&config, config_text(&old.url, 1000)).unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"));
    c.arg("--config").arg(&config).arg("migrate");
    c
}

/// The progress lines in `text`: (rows moved, rows to move) of each
/// `moved N of T event rows` line.
fn progress(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("moved ")?;
            let (n, rest) = rest.split_once(" of ")?;
            let (t, _) = rest.split_once(' ')?;
            Some((n.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_says_how_far_the_move_has_gone() {
    let old = old_database(20_000, 0x6d69_6772_6174_6533).await;
    let mut command = migrate_command(&old);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let total = old.events() as u64;
    let steps = progress(&text);
    assert!(
        !steps.is_empty()
            && steps.iter().all(|(_, t)| *t == total)
            && steps.windows(2).all(|w| w[0].0 < w[1].0)
            && steps.last().unwrap().0 == total,
        "the progress of moving {total} rows, in:\n{text}"
    );

    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_killed_during_the_move_and_run_again_keeps_every_row() {
    use std::io::BufRead as _;
    // The move takes a step per old table at least: killed after the
    // first, it has more to do.
    let old = old_database(60_000, 0x6d69_6772_6174_6534).await;
    let mut command = migrate_command(&old);
    let (first, killed) = tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        // Killed (SIGKILL: no cleanup of any kind) as soon as it says it
        // has moved a step, which is when the next step's transaction
        // begins.
        let first = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| !progress(l).is_empty());
        child.kill().unwrap();
        (first, child.wait().unwrap())
    })
    .await
    .unwrap();
    let first = first.expect("migrate said nothing of its progress");
    let (moved, total) = progress(&first)[0];
    assert_eq!(total, old.events() as u64, "{first}");
    assert!(
        !killed.success() && moved < total,
        "migrate ended before it was killed: {first}"
    );

    // The rerun finishes the move and says so.
    let mut command = migrate_command(&old);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    let steps = progress(&text);
    let left = steps.last().map(|s| s.1);
    assert!(
        left.is_some_and(|t| t > 0 && t <= total - moved) && steps.last().map(|s| s.0) == left,
        "the rerun's progress, after {moved} of {total} were moved:\n{text}"
    );

    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;
    store.close().await;
}

/// The rows today's parser makes of the log at `path`, read alone to its
/// end, as the release before stored them.
fn rows_of_log(settings: &Settings, path: &Path) -> (Vec<OldSmtp>, Vec<AccessRow>) {
    let tz = chrono_tz::Asia::Taipei;
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let reference = mailtrail::ingest::source::reference_date(Some(mtime), tz);
    let mut clock = Clock::new(tz, reference, None);
    let mut c = Correlator::new(settings.clone());
    let mut out = mailtrail::ingest::correlate::Rows::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        c.feed(&mut clock, line.as_bytes(), &mut out);
    }
    c.finish(&mut out);
    let smtp = out
        .smtp
        .into_iter()
        .map(|r| OldSmtp {
            mailbox: r.mailbox.to_string(),
            key: r.key,
            row: EventRow {
                time_us: r.time_us,
                day: r.day,
                kind: r.kind,
                host: r.host.to_string(),
                queue_id: r.queue_id.map(|t| t.to_string()),
                sender_ip: r.sender_ip.map(|t| t.to_string()),
                relay: r.relay.map(|t| t.to_string()),
                recipient: r.recipient,
                dsn: r.dsn.map(|t| t.to_string()),
                response: r.response,
            },
        })
        .collect();
    (smtp, out.access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_read_again_after_the_move_add_no_row() {
    // The old database holds what the release before stored of the real
    // captures: Postfix's log in two envelopes (one with fractions of
    // seconds), and Dovecot's through syslog and in its own file.
    let logs = [
        fixture("mail.log"),
        fixture("mail-rfc3339.log"),
        dovecot("mail.log"),
        dovecot("dovecot.log"),
    ];
    let config = Config::from_toml(&config_text("sqlite::memory:", 1000)).unwrap();
    let settings = Settings::from_config(&config).unwrap();
    let (mut smtp, mut access) = (Vec::new(), Vec::new());
    // One row per (mailbox, day, key), the first, as the old writer kept
    // (the two envelopes of a line give it the same key).
    let (mut seen_smtp, mut seen_access) = (BTreeSet::new(), BTreeSet::new());
    for log in &logs {
        let (s, a) = rows_of_log(&settings, log);
        smtp.extend(
            s.into_iter()
                .filter(|r| seen_smtp.insert((r.mailbox.clone(), r.row.day, r.key))),
        );
        access.extend(
            a.into_iter()
                .filter(|r| seen_access.insert((r.mailbox.clone(), r.day, r.key))),
        );
    }
    assert!(!smtp.is_empty() && !access.is_empty());
    let old = old_database_with(Rows::These(smtp, access)).await;

    let store = Store::open(&old.url).await.unwrap();
    check(&store, &old).await;
    // Read again from their start (after a lost checkpoint, say), each by
    // an agent of its own, every line is one the database has: the only
    // new rows are of mail received by local mailboxes, which the release
    // before did not keep; read a second time, not even those.
    let received = || async {
        crate::on_any_pool!(&store, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM message_rows")
            .fetch_one(p)
            .await
            .unwrap()) as u64
    };
    for round in 0..2 {
        for (i, log) in logs.iter().enumerate() {
            let mut settings = settings.clone();
            settings.agent = format!("again{round}-{i}");
            let before = received().await;
            let report = ingest::run(
                &store,
                settings,
                &[SourceSpec::File(log.clone())],
                Batching::from_config(&config.ingest),
            )
            .await
            .unwrap();
            let added = received().await - before;
            assert_eq!(report.rows_new, added, "{} read again", log.display());
            if round == 1 {
                assert_eq!(added, 0, "{} read a third time", log.display());
            }
        }
    }
    check(&store, &old).await;
    store.close().await;
}
