//! Ingest throughput and memory.
//!
//! `cargo bench --bench ingest` generates logs in real Postfix shapes
//! (`benches/support/genlog.rs`) and measures:
//!
//! 1. read + parse + correlate alone, in this process on one thread:
//!    lines/s;
//! 2. the whole ingest into a fresh SQLite database by the release binary
//!    (`mailtrail ingest FILE`): wall time, CPU time and peak memory (the
//!    child's maximum resident set, from `getrusage`), median of three runs;
//! 3. the same whole ingest on a file ten times larger, to show that peak
//!    memory follows the messages in flight, not the size of the file.
//!
//! 1 and 2 run on Postfix lines alone and on a mix with 30% Dovecot lines
//! (logins, logouts, deletions, failed logins); 3 on the mix.
//!
//! Sizes: `MAILTRAIL_BENCH_LINES` (default 3,000,000) lines for 1 and 2,
//! `MAILTRAIL_BENCH_MEM_LINES` (default 1,000,000) and ten times that for 3.
//! Set `MAILTRAIL_BENCH_MEM_LINES=0` to skip 3, `MAILTRAIL_BENCH_WHOLE=0`
//! to skip 2 (for profiling 1 alone).
//!
//! `MAILTRAIL_BENCH_LOG=FILE` measures 1 and 2 on that file instead of
//! generated ones (mailboxes in `example.edu` and its subdomains are the
//! local ones), for a log of one's own or a generated one changed.

#[allow(dead_code)]
#[path = "support/genlog.rs"]
mod genlog;

use std::hint::black_box;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailtrail::ingest::correlate::{Correlator, Rows, Settings};
use mailtrail::ingest::envelope::Clock;
use mailtrail::ingest::source::{Line, LineReader, SourceSpec};

/// The same allocator as the `mailtrail` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn generate(dir: &Path, lines: u64, dovecot_share: f64) -> PathBuf {
    let path = dir.join(format!("bench-{lines}-{dovecot_share}.log"));
    let t = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let stats = genlog::generate(
        &mut w,
        &genlog::Options {
            lines,
            seed: 42,
            dovecot_share,
            ..Default::default()
        },
    )
    .unwrap();
    drop(w);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {} lines ({:.0} MB, {} messages, {} deliveries, {} Dovecot lines) in {:.1} s",
        stats.lines,
        size as f64 / 1e6,
        stats.messages,
        stats.deliveries,
        stats.dovecot_lines,
        t.elapsed().as_secs_f64()
    );
    path
}

fn settings() -> Settings {
    Settings {
        local: mailtrail::domain::LocalDomains::new(&[".example.edu".into()], "example.edu"),
        internal_relays: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        tz: chrono_tz::Asia::Taipei,
        webmail_networks: vec![],
        agent: "default".into(),
    }
}

/// Read + parse + correlate of a log file on this thread, as the ingest's
/// parser thread does it, without the database.
fn parse_correlate(log: &Path) -> (u64, u64, usize, Duration) {
    let mut c = Correlator::new(settings());
    let mut clock = Clock::new(
        chrono_tz::Asia::Taipei,
        chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        None,
    );
    let mut rows = Rows::default();
    let mut max_in_flight = 0;
    let mut n_rows = 0u64;
    let t = Instant::now();
    let mut reader = LineReader::open(&SourceSpec::File(log.to_owned())).unwrap();
    let mut i = 0u64;
    while let Some(line) = reader.next_line() {
        match line {
            Line::Whole(l) | Line::Last(l) => c.feed(&mut clock, l, &mut rows),
            Line::TooLong => c.too_long(),
        }
        if rows.len() >= 1 << 16 {
            // As the parser thread does before it sends a batch.
            c.seal(&mut rows);
            n_rows += rows.len() as u64;
            black_box(&rows);
            rows.smtp.clear();
            rows.access.clear();
            rows.messages.clear();
        }
        i += 1;
        if i.is_multiple_of(65_536) {
            max_in_flight = max_in_flight.max(c.in_flight());
        }
    }
    c.finish(&mut rows);
    n_rows += rows.len() as u64;
    let el = t.elapsed();
    (c.stats.lines_read, n_rows, max_in_flight, el)
}

struct Child {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
    stdout: String,
}

fn children_rusage() -> (Duration, i64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss)
}

/// Runs the release binary's ingest of `log` into a fresh database.
fn ingest_child(dir: &Path, log: &Path) -> Child {
    let db = dir.join(format!("{}.db", log.file_stem().unwrap().to_string_lossy()));
    let _ = std::fs::remove_file(&db);
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"Asia/Taipei\"\nlocal_domains = [\".example.edu\"]\ndefault_domain = \"example.edu\"\ndatabase_url = \"sqlite://{}?mode=rwc\"\n",
            db.display()
        ),
    )
    .unwrap();
    let (cpu0, _) = children_rusage();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .arg(log)
        .output()
        .unwrap();
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cpu1, rss) = children_rusage();
    Child {
        wall,
        cpu: cpu1 - cpu0,
        max_rss_kb: rss,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Read + parse + correlate, then the whole ingest, of `log`; prints both.
fn measure(dir: &Path, log: &Path) {
    // A first run warms the page cache for the file; then three timed
    // runs, of which the median is reported (this machine is shared
    // and noisy) with the spread.
    parse_correlate(log);
    let mut runs: Vec<_> = (0..3).map(|_| parse_correlate(log)).collect();
    runs.sort_by_key(|r| r.3);
    let (read, rows, in_flight, el) = runs[1];
    let rate = |d: Duration| read as f64 / d.as_secs_f64();
    println!(
        "read + parse + correlate: {read} lines, {rows} rows in {:.2} s = {:.0} lines/s median of 3 (best {:.0}, worst {:.0}; one thread; at most {in_flight} lifecycles and sessions in flight)",
        el.as_secs_f64(),
        rate(el),
        rate(runs[0].3),
        rate(runs[2].3)
    );
    if std::env::var_os("MAILTRAIL_BENCH_WHOLE").is_some_and(|v| v == "0") {
        return;
    }
    // Three runs, each into a fresh database; the median by wall time
    // is reported, with the spread.
    let mut runs: Vec<Child> = (0..3).map(|_| ingest_child(dir, log)).collect();
    runs.sort_by_key(|c| c.wall);
    let c = &runs[1];
    let rate = |d: Duration| read as f64 / d.as_secs_f64();
    println!(
        "whole ingest into SQLite: {read} lines in {:.2} s wall = {:.0} lines/s median of 3 (best {:.0}, worst {:.0}); CPU {:.2} s = {:.0} lines per CPU-second; peak RSS {} MiB (largest run so far)",
        c.wall.as_secs_f64(),
        rate(c.wall),
        rate(runs[0].wall),
        rate(runs[2].wall),
        c.cpu.as_secs_f64(),
        read as f64 / c.cpu.as_secs_f64(),
        c.max_rss_kb / 1024
    );
    if let Some(l) = c.stdout.lines().find(|l| l.starts_with("rows stored")) {
        println!("  {l}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--measure-one" {
        let c = ingest_child(Path::new(&args[3]), Path::new(&args[2]));
        println!("{}", c.max_rss_kb);
        return;
    }
    // `cargo test --benches` runs this with `--bench` absent: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest benchmark: run with `cargo bench --bench ingest`");
        return;
    }
    let lines = env_u64("MAILTRAIL_BENCH_LINES", 3_000_000);
    let mem_lines = env_u64("MAILTRAIL_BENCH_MEM_LINES", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    if let Some(log) = std::env::var_os("MAILTRAIL_BENCH_LOG") {
        // A log of one's own (or one rewritten from a generated one):
        // measured the same way; mailboxes in example.edu and its
        // subdomains are the local ones.
        println!("== {}", Path::new(&log).display());
        measure(dir.path(), Path::new(&log));
        return;
    }
    // Postfix lines alone, then a mail host's mix with Dovecot sessions.
    for (label, share) in [("Postfix only", 0.0), ("Postfix + 30% Dovecot", 0.3)] {
        println!("== {label}");
        let log = generate(dir.path(), lines, share);
        measure(dir.path(), &log);
        std::fs::remove_file(&log).ok();
    }

    if mem_lines > 0 {
        let mut peaks = Vec::new();
        for n in [mem_lines, mem_lines * 10] {
            let log = generate(dir.path(), n, 0.3);
            // RUSAGE_CHILDREN keeps the largest child's peak: measure each
            // size in its own process so the numbers are separate.
            let out = Command::new(std::env::current_exe().unwrap())
                .arg("--measure-one")
                .arg(&log)
                .arg(dir.path())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let kb: i64 = text.trim().parse().unwrap_or_else(|_| panic!("{text}"));
            println!(
                "peak RSS of the whole ingest of {n} lines: {} MiB",
                kb / 1024
            );
            peaks.push(kb);
            std::fs::remove_file(&log).ok();
        }
        println!(
            "10x the lines needs {:.2}x the memory",
            peaks[1] as f64 / peaks[0] as f64
        );
    }
}
