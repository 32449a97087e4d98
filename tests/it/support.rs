//! Shared helpers: a config and a fresh SQLite database per test.

use std::path::{Path, PathBuf};

use mailtrail::config::Config;
use mailtrail::domain::{DateRange, Day, Mailbox};
use mailtrail::history::{self, History};
use mailtrail::ingest::{self, Report, correlate::Settings, source::SourceSpec};
use mailtrail::store::Store;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/postfix")
        .join(name)
}

pub fn dovecot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dovecot")
        .join(name)
}

/// The config the fixture's Postfix matches: its content filter runs on
/// 127.0.0.1; its test destinations on 127.0.0.2-9 are other hosts.
pub fn config_text(db: &Path, batch_lines: usize) -> String {
    format!(
        r#"
timezone = "Asia/Taipei"
local_domains = [".example.edu"]
default_domain = "example.edu"
database_url = "sqlite://{}?mode=rwc"
[ingest]
internal_relays = ["127.0.0.1/32"]
batch_lines = {batch_lines}
"#,
        db.display()
    )
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
    pub config: Config,
    pub store: Store,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_batch(1000).await
    }

    pub async fn with_batch(batch_lines: usize) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let config = Config::from_toml(&config_text(&db, batch_lines)).unwrap();
        let store = Store::open(&config.database_url).await.unwrap();
        TestDb { dir, config, store }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("t.db")
    }

    pub async fn ingest(&self, paths: &[PathBuf]) -> anyhow::Result<Report> {
        let specs: Vec<SourceSpec> = paths.iter().map(|p| SourceSpec::File(p.clone())).collect();
        ingest::run(
            &self.store,
            Settings::from_config(&self.config).unwrap(),
            &specs,
            self.config.ingest.batch_lines,
        )
        .await
    }

    pub async fn history(&self, mailbox: &str) -> History {
        let range = DateRange::new(
            Day::parse("2026-01-01").unwrap(),
            Day::parse("2027-12-31").unwrap(),
        )
        .unwrap();
        let m = Mailbox::parse(mailbox, "example.edu").unwrap();
        history::load(&self.store, &m, range, self.config.tz().unwrap())
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
        let Store::Sqlite(pool) = &self.store else {
            panic!("tests use SQLite")
        };
        let rows: Vec<DumpRow> =
            sqlx::query_as("SELECT e.key, e.day, e.time_us, m.address, e.kind, e.host, e.queue_id, e.sender_ip, e.relay, e.recipient, e.dsn, e.response FROM smtp_events e JOIN mailboxes m ON m.id = e.mailbox_id ORDER BY e.day, e.key")
                .fetch_all(pool)
                .await
                .unwrap();
        rows.into_iter()
            .map(|mut r| {
                if !exact_time {
                    r.2 -= r.2.rem_euclid(1_000_000);
                }
                format!("{r:?}")
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
