//! Shared helpers: a config and a fresh database per test, and the real
//! captures under `tests/fixtures/` with the dates they were made on.
//!
//! Classic syslog stamps carry no year: the ingest takes it from the
//! file's modification time, which in a checkout is the day of the
//! checkout. So the tests never read the committed year-less logs in
//! place: [`fixture`] and [`dovecot`] hand out copies whose modification
//! time is the capture's end, from its manifest, and a test that writes
//! its own file from a capture's lines dates it the same way
//! ([`Capture::date`]). Whatever today is, the captures' lines land on
//! the days they were captured on, which [`Capture::day`] names.
//!
//! The tests run on SQLite unless `MAILTRAIL_TEST_BACKEND=postgres`, in
//! which case every test gets a database of its own on the PostgreSQL
//! server at `MAILTRAIL_TEST_POSTGRES` (a URL naming a database the role
//! may connect to, such as `postgres://mt:mt@127.0.0.1/postgres`; the role
//! needs CREATEDB). The test that is about PostgreSQL itself (schema
//! parity) is ignored unless that URL was set when the tests were built
//! (build.rs).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset};
use mailtrail::config::Config;
use mailtrail::domain::{DateRange, Day, Mailbox};
use mailtrail::history::{self, History};
use mailtrail::ingest::{self, Report, correlate::Settings, source::SourceSpec};
use mailtrail::store::Store;
use serde_json::Value;

/// One of the two real captures under `tests/fixtures/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// `tests/fixtures/postfix/`: Postfix (and Dovecot SASL) lines.
    Postfix,
    /// `tests/fixtures/dovecot/`: Dovecot IMAP/POP3 lines.
    Dovecot,
    /// `tests/fixtures/received/`: mail received by local mailboxes
    /// (Postfix, Dovecot LMTP/Sieve/mail_log, rspamd, postgrey).
    Received,
}

impl Capture {
    /// The directory of the capture in the source tree.
    pub fn dir(self) -> PathBuf {
        let name = match self {
            Capture::Postfix => "postfix",
            Capture::Dovecot => "dovecot",
            Capture::Received => "received",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// The capture's `manifest.json`: what its driver did.
    pub fn manifest(self) -> Value {
        let path = self.dir().join("manifest.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// When the capture ended: the manifest is written after the daemons
    /// stopped, so no line of the capture is later than this.
    pub fn ended(self) -> DateTime<FixedOffset> {
        rfc3339(&self.manifest()["generated"])
    }

    /// The local day (in the capture's zone, which its stamps' offset
    /// gives) that every line of the capture falls on. Panics if the
    /// capture started on another day: counting per day needs one day.
    pub fn day(self) -> Day {
        let m = self.manifest();
        let first = match self {
            Capture::Postfix => &m["submissions"][0]["submitted_at"],
            Capture::Dovecot => &m["runs"][0]["sessions"][0]["started"],
            Capture::Received => &m["envelopes"][0]["sent_at"],
        };
        let (start, end) = (rfc3339(first).date_naive(), self.ended().date_naive());
        assert_eq!(
            start, end,
            "the {self:?} capture spans midnight: rerun its generate.sh within one day"
        );
        Day::from_date(end)
    }

    /// The fixture file `name` of this capture. A log is handed out as a
    /// copy (made once per test process) whose modification time is the
    /// capture's end, so that year-less stamps take the capture's year
    /// whenever and wherever the tests run; other files are the originals.
    pub fn file(self, name: &str) -> PathBuf {
        let original = self.dir().join(name);
        if !name.ends_with(".log") {
            return original;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fixtures-{}",
            self.dir().file_name().unwrap().to_string_lossy()
        ));
        let copy = dir.join(name);
        static MADE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut made = MADE.lock().unwrap();
        if !made.contains(&copy) {
            // Another test process may be doing the same: each writes its
            // own file and renames it into place, so a reader only ever
            // opens a whole copy, with its date.
            std::fs::create_dir_all(&dir).unwrap();
            let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
            std::fs::copy(&original, &tmp)
                .unwrap_or_else(|e| panic!("{}: {e}", original.display()));
            self.date(&tmp);
            std::fs::rename(&tmp, &copy).unwrap();
            made.push(copy.clone());
        }
        copy
    }

    /// Sets the modification time of `path`, a file a test wrote from
    /// this capture's lines, to the capture's end, as [`Capture::file`]
    /// does for its copies.
    pub fn date(self, path: &Path) {
        let when = SystemTime::from(self.ended());
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(when))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn rfc3339(v: &Value) -> DateTime<FixedOffset> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A file of the Postfix capture (a dated copy for a log; see [`Capture::file`]).
pub fn fixture(name: &str) -> PathBuf {
    Capture::Postfix.file(name)
}

/// A file of the Dovecot capture (a dated copy for a log).
pub fn dovecot(name: &str) -> PathBuf {
    Capture::Dovecot.file(name)
}

/// The day of the Postfix capture.
pub fn sample_day() -> Day {
    Capture::Postfix.day()
}

/// The days a test's history covers: from a year before the earlier
/// capture's day through the later one's. That holds both captures, and
/// any line a test writes with a month and day of its own into a file
/// dated like a capture (a year-less stamp falls within the year before
/// its file's date).
pub fn range() -> DateRange {
    let (a, b) = (Capture::Postfix.day(), Capture::Dovecot.day());
    let (first, last) = if a <= b { (a, b) } else { (b, a) };
    DateRange::new(first.minus(366), last).unwrap()
}

/// The 30 days ending on the later capture's day, a report's usual range;
/// it holds both captures' days.
pub fn month() -> DateRange {
    let (a, b) = (Capture::Postfix.day(), Capture::Dovecot.day());
    let (first, last) = if a <= b { (a, b) } else { (b, a) };
    let r = DateRange::new(last.minus(29), last).unwrap();
    assert!(
        r.from <= first,
        "the captures are a month apart: {a} and {b}"
    );
    r
}

/// The config the fixture's Postfix matches: its content filter runs on
/// 127.0.0.1; its test destinations on 127.0.0.2-9 are other hosts.
pub fn config_text(database_url: &str, batch_lines: usize) -> String {
    format!(
        r#"
timezone = "Asia/Taipei"
local_domains = [".example.edu"]
default_domain = "example.edu"
database_url = "{database_url}"
[ingest]
internal_relays = ["127.0.0.1/32"]
batch_lines = {batch_lines}
# Several of the tests' small batches to a transaction, as in a real
# ingest's large ones.
commit_after_ms = 20
"#
    )
}

/// Whether the tests run on PostgreSQL (`MAILTRAIL_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("MAILTRAIL_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("MAILTRAIL_TEST_BACKEND={other}: sqlite or postgres"),
    }
}

/// The PostgreSQL server for tests, if one is configured.
pub fn postgres_server() -> Option<String> {
    let url = std::env::var("MAILTRAIL_TEST_POSTGRES").ok()?;
    (!url.trim().is_empty()).then(|| url.trim().to_owned())
}

/// A fresh, empty database of the backend under test: a file `NAME.db`
/// under `dir` on SQLite, a new database on PostgreSQL.
pub fn database_url(dir: &Path, name: &str) -> String {
    if on_postgres() {
        let server = postgres_server()
            .expect("MAILTRAIL_TEST_BACKEND=postgres needs MAILTRAIL_TEST_POSTGRES");
        fresh_postgres(&server)
    } else {
        format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("{name}.db")).display()
        )
    }
}

/// Creates a new, empty database on the PostgreSQL server at `server` and
/// returns its URL. The first call of a test run also drops what earlier
/// runs left behind. Works from synchronous and asynchronous tests alike:
/// the statements run on a thread of their own.
pub fn fresh_postgres(server: &str) -> String {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEPT: Mutex<bool> = Mutex::new(false);
    let pid = std::process::id();
    let name = format!("mtt_{pid}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let (base, _) = server
        .rsplit_once('/')
        .expect("MAILTRAIL_TEST_POSTGRES is a URL ending in /DATABASE");
    let url = format!("{base}/{name}");
    let server = server.to_owned();
    let mut swept = SWEPT.lock().unwrap();
    let sweep = !*swept;
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection as _;
                let mut c = sqlx::PgConnection::connect(&server)
                    .await
                    .expect("cannot connect to MAILTRAIL_TEST_POSTGRES");
                if sweep {
                    let old: Vec<String> = sqlx::query_scalar(
                        "SELECT datname FROM pg_database WHERE datname LIKE 'mtt\\_%' AND datname NOT LIKE $1",
                    )
                    .bind(format!("mtt\\_{pid}\\_%"))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                    for db in old {
                        // Another test run's, still going (two runs on one
                        // server: its databases are in use).
                        if running_test_process(&db) {
                            continue;
                        }
                        // Housekeeping only: a database that autovacuum is
                        // visiting (a backend this role may not end) is
                        // left for the next run.
                        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await
                        {
                            eprintln!("old test database {db} left: {e}");
                        }
                    }
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
            })
    })
    .join()
    .expect("creating a test database");
    *swept = true;
    url
}

/// Whether the test database `db` (`mtt_PID_N`) belongs to a process still
/// running on this machine (the server is on loopback). Where `/proc` is
/// not there to say, no process is taken for running.
fn running_test_process(db: &str) -> bool {
    db.strip_prefix("mtt_")
        .and_then(|r| r.split_once('_'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
        .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Runs `$body` with `$pool` bound to the test store's own pool, whichever
/// backend it is.
#[macro_export]
macro_rules! on_any_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            mailtrail::store::Store::Sqlite($pool) => $body,
            mailtrail::store::Store::Postgres($pool) => $body,
        }
    };
}

/// One stored row, every column, for comparisons.
type DumpRow = (
    i64,
    i64,
    i64,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub config: Config,
    pub store: Store,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_batch(1000).await
    }

    pub async fn with_batch(batch_lines: usize) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(dir.path(), "t");
        let config = Config::from_toml(&config_text(&url, batch_lines)).unwrap();
        let store = Store::open(&config.database_url).await.unwrap();
        TestDb {
            dir,
            url,
            config,
            store,
        }
    }

    /// The config text of this database, to extend.
    pub fn config_text(&self) -> String {
        config_text(&self.url, self.config.ingest.batch_lines)
    }

    pub async fn ingest(&self, paths: &[PathBuf]) -> anyhow::Result<Report> {
        let specs: Vec<SourceSpec> = paths.iter().map(|p| SourceSpec::File(p.clone())).collect();
        ingest::run(
            &self.store,
            Settings::from_config(&self.config).unwrap(),
            &specs,
            mailtrail::ingest::Batching::from_config(&self.config.ingest),
        )
        .await
    }

    /// The SMTP history of `mailbox` over [`range`].
    pub async fn history(&self, mailbox: &str) -> History {
        let m = Mailbox::parse(mailbox, "example.edu").unwrap();
        history::load(&self.store, &m, range(), self.config.tz().unwrap())
            .await
            .unwrap()
    }

    /// Every stored row, in a stable order, for comparing databases.
    pub async fn dump(&self) -> Vec<String> {
        self.dump_rows(true).await
    }

    /// Like [`TestDb::dump`], optionally without the sub-second part of
    /// times (which only RFC 3339 stamps carry).
    pub async fn dump_rows(&self, exact_time: bool) -> Vec<String> {
        const SQL: &str = "SELECT e.key, CAST(e.day AS BIGINT), e.sec * 1000000 + e.usec, m.address, CAST(e.kind AS BIGINT), h.value, e.queue_id, s.value, r.value, e.recipient, d.value, p.value, e.reply_args \
            FROM smtp_rows e JOIN mailboxes m ON m.id = e.mailbox_id JOIN texts h ON h.id = e.host LEFT JOIN texts s ON s.id = e.sender_ip \
            LEFT JOIN texts r ON r.id = e.relay LEFT JOIN texts d ON d.id = e.dsn LEFT JOIN texts p ON p.id = e.reply \
            ORDER BY e.day, e.key";
        type Stored = (
            i64,
            i64,
            i64,
            String,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let stored: Vec<Stored> = crate::on_any_pool!(&self.store, p => sqlx::query_as(SQL)
            .fetch_all(p)
            .await
            .unwrap());
        let rows: Vec<DumpRow> = stored
            .into_iter()
            .map(|r| {
                let response =
                    mailtrail::store::records::join_reply(r.11.as_deref(), r.12.as_deref());
                (
                    r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, response,
                )
            })
            .collect();
        rows.into_iter()
            .map(|mut r| {
                if !exact_time {
                    r.2 -= r.2.rem_euclid(1_000_000);
                }
                format!("{r:?}")
            })
            .collect()
    }

    /// Every stored row of received mail (`message_rows`), for comparing
    /// databases.
    pub async fn dump_messages(&self) -> Vec<String> {
        type Head = (i64, i64, i64, String, i64, String);
        type Texts = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        const SQL: &str = "SELECT e.key, CAST(e.day AS BIGINT), e.sec * 1000000 + e.usec, m.address, CAST(e.kind AS BIGINT), e.host, \
            e.queue_id, e.session, e.protocol, e.message_id, e.sender, e.subject, e.client, e.folder, e.other, e.status, e.reply, e.size, e.uid \
            FROM message_rows e JOIN mailboxes m ON m.id = e.mailbox_id ORDER BY e.day, m.address, e.key";
        let got: Vec<(String,)> = crate::on_any_pool!(&self.store, p => {
            let rows = sqlx::query(SQL).fetch_all(p).await.unwrap();
            rows.iter()
                .map(|r| {
                    use sqlx::Row as _;
                    let head: Head = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                    let texts: Texts = (
                        r.get(6), r.get(7), r.get(8), r.get(9), r.get(10), r.get(11),
                        r.get(12), r.get(13), r.get(14), r.get(15), r.get(16),
                    );
                    let nums: (Option<i64>, Option<i64>) = (r.get(17), r.get(18));
                    (format!("{head:?} {texts:?} {nums:?}"),)
                })
                .collect()
        });
        got.into_iter().map(|(s,)| s).collect()
    }

    /// Every stored access row, plain or packed, for comparing databases.
    pub async fn dump_access(&self) -> Vec<String> {
        type AccessDump = (
            i64,
            i64,
            i64,
            String,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        const SQL: &str = "SELECT e.key, CAST(e.day AS BIGINT), e.sec * 1000000 + e.usec, m.address, CAST(e.kind AS BIGINT), h.value, pr.value, ri.value, e.session, e.deleted, e.retained, e.message_id, f.value, re.value \
            FROM access_rows e JOIN mailboxes m ON m.id = e.mailbox_id JOIN texts h ON h.id = e.host LEFT JOIN texts pr ON pr.id = e.protocol \
            LEFT JOIN texts ri ON ri.id = e.remote_ip LEFT JOIN texts f ON f.id = e.folder LEFT JOIN texts re ON re.id = e.reason \
            ORDER BY e.day, e.key";
        let mut rows: Vec<AccessDump> = crate::on_any_pool!(&self.store, p => sqlx::query_as(SQL)
            .fetch_all(p)
            .await
            .unwrap());
        // And the rows of packed days (the nightly job packs a complete
        // day's access rows), decoded into the same shape.
        let packs: Vec<(i64, String, Vec<u8>)> = crate::on_any_pool!(&self.store, p => sqlx::query_as(
            "SELECT CAST(p.day AS BIGINT), m.address, p.data FROM access_packs p JOIN mailboxes m ON m.id = p.mailbox_id",
        )
        .fetch_all(p)
        .await
        .unwrap());
        if !packs.is_empty() {
            let texts: std::collections::HashMap<i64, String> =
                crate::on_any_pool!(&self.store, p => sqlx::query_as::<_, (i64, String)>(
                    "SELECT CAST(id AS BIGINT), value FROM texts"
                )
                .fetch_all(p)
                .await
                .unwrap())
                .into_iter()
                .collect();
            let text = |v: &mailtrail::store::packs::Val| v.int().map(|id| texts[&id].clone());
            use mailtrail::store::packs::col;
            for (day, address, data) in packs {
                for mut r in mailtrail::store::packs::decode(&data).unwrap() {
                    rows.push((
                        r[col::KEY].int().unwrap(),
                        day,
                        r[col::SEC].int().unwrap() * 1_000_000 + r[col::USEC].int().unwrap(),
                        address.clone(),
                        r[col::KIND].int().unwrap(),
                        text(&r[col::HOST]).unwrap(),
                        text(&r[col::PROTOCOL]),
                        text(&r[col::REMOTE_IP]),
                        r[col::SESSION].take_text(),
                        r[col::DELETED].int(),
                        r[col::RETAINED].int(),
                        r[col::MESSAGE_ID].take_text(),
                        text(&r[col::FOLDER]),
                        text(&r[col::REASON]),
                    ));
                }
            }
            rows.sort_by_key(|r| (r.1, r.0));
        }
        rows.into_iter()
            .map(|r| {
                let a = (r.0, r.1, r.2, r.3, r.4, r.5, r.6);
                let b = (r.7, r.8, r.9, r.10, r.11, r.12, r.13);
                format!("{a:?} {b:?}")
            })
            .collect()
    }
}

/// A log file of `lines` lines in real Postfix shapes, made by the
/// benchmark generator.
pub fn generated_log(dir: &Path, lines: u64, seed: u64) -> PathBuf {
    #[allow(dead_code)]
    #[path = "../../benches/support/genlog.rs"]
    mod genlog;
    let path = dir.join(format!("gen-{lines}-{seed}.log"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    genlog::generate(
        &mut w,
        &genlog::Options {
            lines,
            seed,
            ..Default::default()
        },
    )
    .unwrap();
    drop(w);
    path
}

#[test]
fn a_running_test_process_keeps_its_databases_from_the_sweep() {
    let own = format!("mtt_{}_0", std::process::id());
    assert!(running_test_process(&own), "{own}");
    // No process has this number (Linux's pids stay below 2^22).
    assert!(!running_test_process("mtt_4194305_0"));
    assert!(!running_test_process("mtt_notapid_0"));
    assert!(!running_test_process("other_1_0"));
}
