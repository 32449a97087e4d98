//! Scale: a database holding weeks of a large site, built through the real
//! ingest, then per-mailbox reports read from it.
//!
//! `cargo bench --bench scale` builds a database of `MAILTRAIL_SCALE_DAYS`
//! (default 30) days of a site with `MAILTRAIL_SCALE_PER_DAY` (default
//! 1,000,000) deliveries a day, the last day being yesterday (Asia/Taipei).
//! Each day is a log from `benches/support/genlog.rs` (Postfix with the
//! default 30% Dovecot lines, a seed of its own, `start_unix` at the day's
//! midnight), sized so that it holds about the wanted number of deliveries
//! (the generator's delivery lines per log line are measured first). Each
//! day's file is written to a temporary directory, ingested with
//! `mailtrail::ingest::run` (as `mailtrail ingest FILE` does) and deleted,
//! so the disk holds one day of log at a time. Then it prints:
//!
//! * ingest rate (lines/s, deliveries/s) of the whole load and of the last
//!   day alone, which goes into a database already holding the others;
//! * database size (SQLite: the file, WAL and shared-memory file after a
//!   checkpoint; PostgreSQL: `pg_database_size`), and per million stored
//!   delivery rows (`smtp_events` of kinds sent, bounced, deferred,
//!   expired), with the counts of every kind of row;
//! * report latency over all the days, for the busiest sender of the last
//!   day, its median sender and its median mailbox by access events:
//!   `Data::load_within` (what `report::build` reads: at most the rows
//!   the relay's size limit can carry), then render and compose as mailed (as
//!   `benches/report.rs` does); median and worst of `MAILTRAIL_SCALE_RUNS`
//!   (default 5) runs.
//!
//! Settings (environment):
//!
//! * `MAILTRAIL_SCALE_BACKEND`: `sqlite` (default) or `postgres`;
//! * `MAILTRAIL_SCALE_POSTGRES`: URL of a server and a role that may
//!   `CREATE DATABASE` (default `postgres://mt:mt@127.0.0.1:5432/postgres`);
//!   a database `mailtrail_scale_PID` is created for the run;
//! * `MAILTRAIL_SCALE_DIR`: where the SQLite database and the day's log
//!   go (default: the system's temporary directory);
//! * `MAILTRAIL_SCALE_KEEP=1`: keep the database at the end (it is
//!   dropped or deleted otherwise);
//! * `MAILTRAIL_SCALE_FILL`: `ingest` (default: every day through the
//!   ingest) or `copy` (the first and the last day through the ingest; each
//!   day between is a copy of the first day's stored rows, with its day and
//!   times shifted by whole days, by `INSERT ... SELECT`, on PostgreSQL
//!   `MAILTRAIL_SCALE_COPY_JOBS` (default 2) days at a time);
//! * `MAILTRAIL_SCALE_MIN_FREE_GB` (default 5): days stop being added (the
//!   last day is still ingested) when the file system of
//!   `MAILTRAIL_SCALE_DIR` has less free space than this.

#[allow(dead_code)]
#[path = "support/genlog.rs"]
mod genlog;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone};
use mailtrail::config::Lang;
use mailtrail::domain::{DateRange, Day, Mailbox};
use mailtrail::ingest::correlate::Settings;
use mailtrail::ingest::source::SourceSpec;
use mailtrail::report::{self, Channel, Data, Kind, Limits, Requester, Spec};
use mailtrail::store::Store;

/// The same allocator as the `mailtrail` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TZ: chrono_tz::Tz = chrono_tz::Asia::Taipei;
/// Lines generated to measure deliveries per line and log time per line.
const CALIBRATION_LINES: u64 = 2_000_000;
/// A day's log must end before this much log time has passed.
const DAY_SPAN_MAX_SECS: f64 = 23.0 * 3600.0;
/// `ingest.batch_lines` default.
const BATCH_LINES: usize = 200_000;

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn settings() -> Settings {
    Settings {
        local: mailtrail::domain::LocalDomains::new(&[".example.edu".into()], "example.edu"),
        internal_relays: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        tz: TZ,
        webmail_networks: vec![],
        agent: "default".into(),
    }
}

/// A writer that keeps only the last bytes written (for the last line's time).
struct Tail(Vec<u8>);

impl Write for Tail {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        if self.0.len() > 1 << 20 {
            let cut = self.0.len() - 4096;
            self.0.drain(..cut);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn midnight(date: NaiveDate) -> i64 {
    TZ.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .timestamp()
}

/// Log time of the last complete line in `tail`, as a Unix timestamp.
fn last_line_time(tail: &[u8], year: i32) -> i64 {
    let text = String::from_utf8_lossy(tail);
    let line = text.lines().rev().find(|l| l.len() > 15).expect("a line");
    let t = NaiveDateTime::parse_from_str(&format!("{year} {}", &line[..15]), "%Y %b %e %H:%M:%S")
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    TZ.from_local_datetime(&t).earliest().unwrap().timestamp()
}

/// Lines per day and messages per second so a day holds about `per_day`
/// deliveries within `DAY_SPAN_MAX_SECS` of log time.
fn calibrate(per_day: u64, first: NaiveDate) -> (u64, u32) {
    let mut rate = genlog::Options::default().messages_per_sec;
    loop {
        let opts = genlog::Options {
            lines: CALIBRATION_LINES,
            seed: 7,
            start_unix: midnight(first),
            messages_per_sec: rate,
            ..Default::default()
        };
        let mut tail = Tail(Vec::new());
        let stats = genlog::generate(&mut tail, &opts).unwrap();
        let per_line = (stats.deliveries + stats.expired) as f64 / stats.lines as f64;
        let lines = (per_day as f64 / per_line).round() as u64;
        let span = (last_line_time(&tail.0, first.year()) - opts.start_unix) as f64;
        let day_span = span * lines as f64 / stats.lines as f64;
        println!(
            "calibration at {rate} messages/s: {:.4} deliveries per line ({stats}); \
             {lines} lines per day span {:.1} h of log time",
            per_line,
            day_span / 3600.0
        );
        if day_span <= DAY_SPAN_MAX_SECS {
            return (lines, rate);
        }
        rate = ((f64::from(rate) * day_span / DAY_SPAN_MAX_SECS).ceil() as u32).max(rate + 1);
    }
}

#[derive(Default, Clone, Copy)]
struct DayResult {
    lines: u64,
    gen_deliveries: u64,
    /// Stored `smtp_events` rows of kinds 1..=4, and of the other kinds.
    deliveries: u64,
    smtp_other: u64,
    access: u64,
    ingest: Duration,
    copied: bool,
    /// Largest `id` in `smtp_events` and `access_events` after this day.
    max_ids: [i64; 2],
}

/// `smtp_events` rows of a day: (deliveries, other kinds).
async fn smtp_counts(store: &Store, day: i32) -> (u64, u64) {
    const SQL: &str = "SELECT kind, COUNT(*) FROM smtp_events WHERE day = $1 GROUP BY kind";
    let rows: Vec<(i32, i64)> = match store {
        Store::Sqlite(p) => sqlx::query_as(SQL).bind(day).fetch_all(p).await,
        Store::Postgres(p) => sqlx::query_as(SQL).bind(day).fetch_all(p).await,
    }
    .unwrap();
    let mut d = 0;
    let mut o = 0;
    for (k, n) in rows {
        if (1..=4).contains(&k) {
            d += n as u64;
        } else {
            o += n as u64;
        }
    }
    (d, o)
}

async fn ingest_day(
    store: &Store,
    dir: &Path,
    date: NaiveDate,
    seed: u64,
    lines: u64,
    rate: u32,
) -> DayResult {
    let path = dir.join(format!("day-{date}.log"));
    let t = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let stats = genlog::generate(
        &mut w,
        &genlog::Options {
            lines,
            seed,
            start_unix: midnight(date),
            messages_per_sec: rate,
            ..Default::default()
        },
    )
    .unwrap();
    drop(w);
    let gen_secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).unwrap().len();
    let t = Instant::now();
    let report = mailtrail::ingest::run(
        store,
        settings(),
        &[SourceSpec::File(path.clone())],
        mailtrail::ingest::Batching {
            lines: BATCH_LINES,
            ..mailtrail::ingest::Batching::from_config(&Default::default())
        },
    )
    .await
    .unwrap();
    let ingest = t.elapsed();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(report.stats.lines_read, stats.lines);
    const MAX_IDS: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM smtp_events), \
                           (SELECT COALESCE(MAX(id), 0) FROM access_events)";
    let max_ids: (i64, i64) = match store {
        Store::Sqlite(p) => sqlx::query_as(MAX_IDS).fetch_one(p).await,
        Store::Postgres(p) => sqlx::query_as(MAX_IDS).fetch_one(p).await,
    }
    .unwrap();
    let key = Day::from_date(date).key();
    let (deliveries, smtp_other) = smtp_counts(store, key).await;
    let r = DayResult {
        lines: stats.lines,
        gen_deliveries: stats.deliveries + stats.expired,
        deliveries,
        smtp_other,
        access: report.rows_new.saturating_sub(deliveries + smtp_other),
        ingest,
        copied: false,
        max_ids: [max_ids.0, max_ids.1],
    };
    println!(
        "{date}: generated {} lines ({:.0} MB, {} delivery lines) in {:.1} s; ingested in {:.1} s = {:.0} lines/s, {:.0} deliveries/s; stored {} delivery rows, {} other smtp rows, {} access rows",
        stats.lines,
        size as f64 / 1e6,
        r.gen_deliveries,
        gen_secs,
        ingest.as_secs_f64(),
        stats.lines as f64 / ingest.as_secs_f64(),
        deliveries as f64 / ingest.as_secs_f64(),
        deliveries,
        smtp_other,
        r.access
    );
    r
}

const SMTP_COLS: &str = "mailbox_id, day, key, time_us, kind, host, queue_id, sender_ip, relay, recipient, dsn, response";
const ACCESS_COLS: &str = "mailbox_id, day, key, time_us, kind, host, protocol, remote_ip, local_ip, tls, session, client, \
     deleted, retained, size_bytes, in_bytes, out_bytes, expunged, trashed, downloaded, attempts, uid, message_id, folder, reason";

/// The stored rows of `from` again as day `to`, times shifted by the whole
/// days between. `source.max_ids` bounds the rows read to those of the
/// first ingest (`access_events` has no index on `day`).
async fn copy_day(store: &Store, from: NaiveDate, to: NaiveDate, source: &DayResult) -> DayResult {
    let shift_us = (to - from).num_days() * 86_400 * 1_000_000;
    let (fk, tk) = (Day::from_date(from).key(), Day::from_date(to).key());
    let t = Instant::now();
    let mut n = [0u64; 2];
    macro_rules! copy {
        ($p:expr) => {{
            let mut tx = $p.begin().await.unwrap();
    for (i, (table, cols)) in [("smtp_events", SMTP_COLS), ("access_events", ACCESS_COLS)]
        .iter()
        .enumerate()
    {
        let select = cols
            .replace("day, ", "$2, ")
            .replace("time_us,", "time_us + $3,");
        let sql = format!(
            "INSERT INTO {table} ({cols}) SELECT {select} FROM {table} WHERE id <= $4 AND day = $1"
        );
        n[i] = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(fk)
            .bind(tk)
            .bind(shift_us)
            .bind(source.max_ids[i])
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
    }
            tx.commit().await.unwrap();
        }};
    }
    match store {
        Store::Sqlite(p) => copy!(p),
        Store::Postgres(p) => copy!(p),
    }
    let el = t.elapsed();
    assert_eq!(n[0], source.deliveries + source.smtp_other);
    println!(
        "{to}: copied {} smtp rows and {} access rows from {from} in {:.1} s",
        n[0],
        n[1],
        el.as_secs_f64()
    );
    DayResult {
        access: n[1],
        ingest: el,
        copied: true,
        ..*source
    }
}

/// Bytes the database takes.
async fn db_size(store: &Store, sqlite_path: Option<&Path>) -> u64 {
    match store {
        Store::Sqlite(p) => {
            let path = sqlite_path.unwrap();
            let file = |suffix: &str| {
                let mut s = path.as_os_str().to_owned();
                s.push(suffix);
                std::fs::metadata(PathBuf::from(s)).map_or(0, |m| m.len())
            };
            println!(
                "SQLite before checkpoint: file {} bytes, WAL {} bytes",
                file(""),
                file("-wal")
            );
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(p)
                .await
                .unwrap();
            let (db, wal, shm) = (file(""), file("-wal"), file("-shm"));
            println!("SQLite after checkpoint: file {db} bytes, WAL {wal} bytes, shm {shm} bytes");
            db + wal + shm
        }
        Store::Postgres(p) => {
            let (db, smtp, access): (i64, i64, i64) = sqlx::query_as(
                "SELECT pg_database_size(current_database()), pg_total_relation_size('smtp_events'), \
                 pg_total_relation_size('access_events')",
            )
            .fetch_one(p)
            .await
            .unwrap();
            println!(
                "PostgreSQL: database {db} bytes; smtp_events with indexes {smtp} bytes, access_events with indexes {access} bytes"
            );
            db as u64
        }
    }
}

/// Addresses of a day's mailboxes with their row counts, most first.
async fn ranked(store: &Store, table: &str, kinds: &str, day: i32) -> Vec<(String, i64)> {
    let sql = format!(
        "SELECT m.address, COUNT(*) AS n FROM {table} e JOIN mailboxes m ON m.id = e.mailbox_id \
         WHERE e.day = $1 {kinds} GROUP BY m.address ORDER BY n DESC, m.address"
    );
    match store {
        Store::Sqlite(p) => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(day)
                .fetch_all(p)
                .await
        }
        Store::Postgres(p) => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(day)
                .fetch_all(p)
                .await
        }
    }
    .unwrap()
}

/// Whether the file system of `dir` (which here holds the SQLite database,
/// and usually PostgreSQL's too) has `MAILTRAIL_SCALE_MIN_FREE_GB` (default
/// 5) free; adding days stops otherwise.
fn room(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs only writes into the struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    let ok = free >= env_u64("MAILTRAIL_SCALE_MIN_FREE_GB", 5) << 30;
    if !ok {
        println!(
            "only {:.1} GB free: no more days are added",
            free as f64 / 1e9
        );
    }
    ok
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn report_latency(store: &Store, label: &str, mailbox: &str, kind: Kind, range: DateRange) {
    let runs = env_u64("MAILTRAIL_SCALE_RUNS", 5).max(1) as usize;
    let spec = Spec {
        mailbox: Mailbox::parse(mailbox, "example.edu").unwrap(),
        kind,
        range,
        lang: Lang::ZhTw,
        requester: Requester {
            channel: Channel::Web,
            client_ip: "140.114.1.2".into(),
            at: chrono::Utc::now().timestamp(),
        },
    };
    // As benches/report.rs: zipped over 1 MiB, a 10,240,000-byte relay limit.
    let limits = Limits {
        zip_over_bytes: 1 << 20,
        always_zip: false,
        max_message_bytes: 10_240_000,
    };
    let mut load = Vec::new();
    let mut total = Vec::new();
    let mut shape = (0, 0, 0);
    for _ in 0..runs {
        let t = Instant::now();
        // What a mailed report reads: no more rows than the mail can carry.
        let data = Data::load_within(store, &spec, TZ, limits).await.unwrap();
        let loaded = t.elapsed();
        let r = report::render(spec.clone(), &data, limits, TZ, chrono::Utc::now()).unwrap();
        let mail =
            mailtrail::mail::message::compose(&r, "mailtrail@example.edu", "bench", 0).unwrap();
        total.push(t.elapsed());
        load.push(loaded);
        // One run can take minutes for a busy mailbox: show each.
        println!(
            "  run: load {:.0} ms, load + render + compose {:.0} ms",
            ms(loaded),
            ms(t.elapsed())
        );
        let rows = match &data {
            Data::Smtp(h) => h.details.len(),
            Data::Access(h) => h.events.len(),
        };
        shape = (rows, r.attachment.bytes.len(), mail.message.len());
    }
    load.sort();
    total.sort();
    println!(
        "{label} {mailbox}: {} rows over {} days; load median {:.0} ms, worst {:.0} ms; \
         load + render + compose median {:.0} ms, worst {:.0} ms ({runs} runs); attachment {} bytes, mail {} bytes",
        shape.0,
        range.days().count(),
        ms(load[runs / 2]),
        ms(load[runs - 1]),
        ms(total[runs / 2]),
        ms(total[runs - 1]),
        shape.1,
        shape.2
    );
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs this with `--bench` absent: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale benchmark: run with `cargo bench --bench scale`");
        return;
    }
    let days = env_u64("MAILTRAIL_SCALE_DAYS", 30).max(1) as u32;
    let per_day = env_u64("MAILTRAIL_SCALE_PER_DAY", 1_000_000);
    let backend = env_str("MAILTRAIL_SCALE_BACKEND", "sqlite");
    let keep = env_str("MAILTRAIL_SCALE_KEEP", "0") == "1";
    let copy = match env_str("MAILTRAIL_SCALE_FILL", "ingest").as_str() {
        "ingest" => false,
        "copy" => true,
        other => panic!("MAILTRAIL_SCALE_FILL: {other:?} is not ingest or copy"),
    };
    let base = std::env::var_os("MAILTRAIL_SCALE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();

    let today = chrono::Utc::now().with_timezone(&TZ).date_naive();
    let last = today.pred_opt().unwrap();
    let first = last - chrono::Days::new(u64::from(days - 1));
    println!(
        "scale: {days} days ({first} to {last}) of about {per_day} deliveries a day, backend {backend}, fill {}",
        if copy { "copy" } else { "ingest" }
    );
    let (lines, rate) = calibrate(per_day, first);

    let mut sqlite_path = None;
    let mut pg_admin = None;
    let store = match backend.as_str() {
        "sqlite" => {
            let path = dir.path().join("scale.db");
            let store = Store::open(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
            sqlite_path = Some(path);
            store
        }
        "postgres" => {
            let admin_url = env_str(
                "MAILTRAIL_SCALE_POSTGRES",
                "postgres://mt:mt@127.0.0.1:5432/postgres",
            );
            let name = format!("mailtrail_scale_{}", std::process::id());
            let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            let (head, query) = match admin_url.split_once('?') {
                Some((h, q)) => (h, format!("?{q}")),
                None => (admin_url.as_str(), String::new()),
            };
            let (server, _) = head.rsplit_once('/').unwrap();
            println!("PostgreSQL database {name}");
            let store = Store::open(&format!("{server}/{name}{query}"))
                .await
                .unwrap();
            pg_admin = Some((admin, name));
            store
        }
        other => panic!("MAILTRAIL_SCALE_BACKEND: {other:?} is not sqlite or postgres"),
    };

    let started = Instant::now();
    let mut results: Vec<DayResult> = Vec::new();
    let mut copy_wall = None;
    let mut i = 0;
    while i < days {
        if copy && i > 0 && i + 1 < days {
            // The days between, `jobs` at a time, each in its own transaction.
            // SQLite takes one writer at a time.
            let jobs = match store {
                Store::Sqlite(_) => 1,
                Store::Postgres(_) => env_u64("MAILTRAIL_SCALE_COPY_JOBS", 2).max(1) as usize,
            };
            let t = Instant::now();
            let todo: Vec<NaiveDate> = (i..days - 1)
                .map(|j| first + chrono::Days::new(u64::from(j)))
                .collect();
            for chunk in todo.chunks(jobs) {
                if !room(dir.path()) {
                    break;
                }
                let mut set = tokio::task::JoinSet::new();
                for &d in chunk {
                    let (store, source) = (store.clone(), results[0]);
                    set.spawn(async move { (d, copy_day(&store, first, d, &source).await) });
                }
                let mut done: Vec<(NaiveDate, DayResult)> = set.join_all().await;
                done.sort_by_key(|(d, _)| *d);
                results.extend(done.into_iter().map(|(_, r)| r));
                println!("  elapsed {:.0} s", started.elapsed().as_secs_f64());
            }
            copy_wall = Some(t.elapsed());
            println!(
                "copied {} days in {:.0} s ({jobs} at a time)",
                results.len() - 1,
                t.elapsed().as_secs_f64()
            );
            i = days - 1;
            continue;
        }
        if i > 0 && !room(dir.path()) {
            // Still ingest the last day into what is there.
            i = days - 1;
        }
        let date = first + chrono::Days::new(u64::from(i));
        let r = ingest_day(&store, dir.path(), date, 1000 + u64::from(i), lines, rate).await;
        results.push(r);
        println!("  elapsed {:.0} s", started.elapsed().as_secs_f64());
        i += 1;
    }
    let load_wall = started.elapsed();

    let sum = |f: fn(&DayResult) -> u64| results.iter().map(f).sum::<u64>();
    let (lines_all, deliveries) = (sum(|r| r.lines), sum(|r| r.deliveries));
    let ingest_time: Duration = results
        .iter()
        .filter(|r| !r.copied)
        .map(|r| r.ingest)
        .sum::<Duration>()
        + copy_wall.unwrap_or_default();
    let lastr = results.last().unwrap();
    println!("== results");
    println!(
        "whole load: {} days, {lines_all} lines, {deliveries} delivery rows, {} other smtp rows, {} access rows; \
         {:.0} s in ingest/copy ({:.0} s wall incl. generating and counting)",
        results.len(),
        sum(|r| r.smtp_other),
        sum(|r| r.access),
        ingest_time.as_secs_f64(),
        load_wall.as_secs_f64()
    );
    let real: Vec<&DayResult> = results.iter().filter(|r| !r.copied).collect();
    let real_time: Duration = real.iter().map(|r| r.ingest).sum();
    let real_lines: u64 = real.iter().map(|r| r.lines).sum();
    let real_deliv: u64 = real.iter().map(|r| r.deliveries).sum();
    println!(
        "ingest rate, {} days through the ingest: {:.0} lines/s, {:.0} deliveries/s",
        real.len(),
        real_lines as f64 / real_time.as_secs_f64(),
        real_deliv as f64 / real_time.as_secs_f64()
    );
    println!(
        "ingest rate, last day (into {} days already stored): {:.0} lines/s, {:.0} deliveries/s ({:.1} s)",
        results.len() - 1,
        lastr.lines as f64 / lastr.ingest.as_secs_f64(),
        lastr.deliveries as f64 / lastr.ingest.as_secs_f64(),
        lastr.ingest.as_secs_f64()
    );
    if let Store::Postgres(p) = &store {
        // What autovacuum does after bulk loads, done now so plans are the
        // ones a running server would use.
        let t = Instant::now();
        sqlx::query("ANALYZE").execute(p).await.unwrap();
        println!("ANALYZE in {:.1} s", t.elapsed().as_secs_f64());
    }
    let size = db_size(&store, sqlite_path.as_deref()).await;
    println!(
        "database size: {size} bytes ({:.2} GB) = {:.0} MB per million delivery rows ({:.0} bytes per stored row)",
        size as f64 / 1e9,
        size as f64 / 1e6 / (deliveries as f64 / 1e6),
        size as f64 / (deliveries + sum(|r| r.smtp_other) + sum(|r| r.access)) as f64
    );

    let range = DateRange::new(Day::from_date(first), Day::from_date(last)).unwrap();
    let last_key = Day::from_date(last).key();
    let t = Instant::now();
    let senders = ranked(
        &store,
        "smtp_events",
        "AND e.kind BETWEEN 1 AND 4",
        last_key,
    )
    .await;
    let mailboxes = ranked(&store, "access_events", "", last_key).await;
    println!(
        "sample: {} senders and {} mailboxes with access events on {last} (found in {:.1} s)",
        senders.len(),
        mailboxes.len(),
        t.elapsed().as_secs_f64()
    );
    let samples = [
        ("busiest sender", &senders[0], Kind::Smtp),
        ("median sender", &senders[senders.len() / 2], Kind::Smtp),
        (
            "median mailbox (access)",
            &mailboxes[mailboxes.len() / 2],
            Kind::Access,
        ),
    ];
    for (label, (address, n), kind) in samples {
        println!("{label} {address}: {n} rows on {last}");
        report_latency(&store, label, address, kind, range).await;
    }

    store.close().await;
    if let Some((admin, name)) = pg_admin {
        if keep {
            println!("kept PostgreSQL database {name}");
        } else {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
        admin.close().await;
    }
    if keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
