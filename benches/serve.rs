//! The service under load: `cargo bench --bench serve`.
//!
//! 1. Fills a SQLite database with 1,000,000 stored deliveries (50,000
//!    senders; rows in `smtp_rows` and their text in `texts`, stored by
//!    SQL as the ingest stores them), then starts the release binary's
//!    `mailtrail serve` (web form, follower, worker, scheduler) on
//!    loopback, in a process of its own as in production: the load comes
//!    from this process, on the same two cores.
//!    Its start-up catch-up (aggregating and warning about the 19
//!    complete days filled in, as after a long stop) is let finish first.
//! 2. For `MAILTRAIL_LOAD_SECS` (default 20) seconds, 50 concurrent
//!    clients each load the form and its code image and post it, over and
//!    over, behind a trusted proxy, at the default rate limits. Clients 1
//!    to 49 are one person after another: each round a new campus address
//!    asking for a new mailbox, so every post is accepted. Client 0 is one
//!    address asking for one mailbox over and over: after its first five
//!    it is refused (429), and what it costs must not grow with what it
//!    has asked. Meanwhile another task appends log lines in real Postfix
//!    and Dovecot shapes (`benches/support/genlog.rs`) to the followed
//!    file at 2,000 lines per second.
//! 3. Prints the form's latency (GET and POST: median, 99th percentile,
//!    worst) and the follower's lag: the unread bytes seen by /health
//!    during the run, and how long after the last line was written every
//!    line was stored.
//!
//! Targets: the form under 50 ms at the 99th percentile; ingest keeping up
//! (lag bounded, caught up within seconds of the last line).

#[allow(dead_code)]
#[path = "support/genlog.rs"]
mod genlog;
#[path = "support/stored.rs"]
mod stored;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mailtrail::config::Config;
use mailtrail::requests::captcha;
use mailtrail::store::Store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 50;
const LINES_PER_SEC: u64 = 2_000;
/// An address in `web.allowed_networks`, behind the trusted proxy: /health
/// tells its reasons and counts only to such clients.
const CAMPUS: &str = "140.114.0.1";
/// Leading zero bits of the form's proof of work here (see the config).
const POW_BITS: u8 = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn show(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<12} {:>7} requests: median {:>6.1} ms, p99 {:>6.1} ms, worst {:>6.1} ms",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(*v.last().unwrap_or(&Duration::ZERO))
    );
}

async fn fill(store: &Store) {
    let Store::Sqlite(pool) = store else {
        unreachable!()
    };
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) \
         INSERT INTO mailboxes (id, address) SELECT i, 'user' || i || '@example.edu' FROM n",
    )
    .execute(pool)
    .await
    .unwrap();
    // The texts the rows refer to, as the ingest stores them.
    let host = stored::text(pool, "mx1").await;
    let sender_ip = stored::text(pool, "140.114.1.2").await;
    let relay = stored::text(pool, "mx.example.com[203.0.113.9]:25").await;
    let dsn = stored::text(pool, "2.0.0").await;
    let (reply, reply_args) = stored::reply(pool, "250 2.0.0 Ok: queued").await;
    // Each delivery to a recipient of its own, `rcptN@example.com`.
    const RECIPIENTS: i64 = 1000;
    // 1,000,000 deliveries over the last 20 days.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999999) \
         INSERT INTO smtp_rows (day, mailbox_id, sec, key, usec, kind, host, queue_id, sender_ip, relay, recipient, dsn, reply, reply_args) \
         SELECT CAST(strftime('%Y%m%d', 'now', '-' || (i % 20) || ' days') AS INTEGER), 1 + (i * 7919) % 50000, \
           unixepoch('now') - (i % 20) * 86400, i, 0, 1 + i % 6, $1, printf('4jXq6n%09d', i), $2, $3, 'rcpt' || ($4 + i) || '@example.com', $5, $6, $7 FROM n",
    )
    .bind(host)
    .bind(sender_ip)
    .bind(relay)
    .bind(RECIPIENTS)
    .bind(dsn)
    .bind(reply)
    .bind(reply_args.as_deref())
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("MAILTRAIL_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let log = dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let smtp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config_text = format!(
        r#"
timezone = "Asia/Taipei"
local_domains = [".example.edu"]
default_domain = "example.edu"
database_url = "sqlite://{}?mode=rwc"
[ingest]
paths = ["{}"]
batch_lines = 20000
[smtp]
port = {smtp_port}
from = "mailtrail@example.edu"
timeout_secs = 5
[web]
listen = "127.0.0.1:{port}"
allowed_networks = ["140.114.0.0/16"]
trusted_proxies = ["127.0.0.1/32"]
# The page's proof of work is the person's cost, not the service's: a
# small one, solved by each client before its timed post.
proof_of_work_bits = {POW_BITS}
"#,
        db.display(),
        log.display()
    );
    let config = Config::from_toml(&config_text).unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &config_text).unwrap();
    let store = Store::open(&config.database_url).await.unwrap();
    let t = Instant::now();
    fill(&store).await;
    println!(
        "stored 1,000,000 deliveries of 50,000 senders in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The live log: generated lines, written at LINES_PER_SEC.
    let total_lines = LINES_PER_SEC * secs;
    let mut generated = Vec::new();
    genlog::generate(
        &mut generated,
        &genlog::Options {
            lines: total_lines,
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let lines: Vec<Vec<u8>> = generated
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();

    let mut svc = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mailtrail serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    for _ in 0..200 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The start-up catch-up: done when the recorded jobs stop growing.
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let t = Instant::now();
    let mut seen = -1i64;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_runs")
            .fetch_one(pool)
            .await
            .unwrap();
        if n > 0 && n == seen {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no end to the catch-up"
        );
        seen = n;
    }
    println!(
        "start-up catch-up ({seen} nightly jobs) done after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let start = Instant::now();
            // 20 writes a second, 100 lines each.
            for (i, chunk) in lines.chunks((LINES_PER_SEC / 20) as usize).enumerate() {
                let due = start + Duration::from_millis(50 * i as u64);
                tokio::time::sleep_until(due.into()).await;
                for l in chunk {
                    f.write_all(l).unwrap();
                }
                f.flush().unwrap();
            }
            Instant::now()
        })
    };
    let lag_probe = {
        let (http, base, running) = (http.clone(), base.clone(), running.clone());
        tokio::spawn(async move {
            let mut worst = 0u64;
            while running.load(Ordering::Relaxed) {
                if let Ok(r) = http
                    .get(format!("{base}/health"))
                    .header("X-Forwarded-For", CAMPUS)
                    .send()
                    .await
                    && let Ok(v) = r.json::<serde_json::Value>().await
                {
                    worst = worst.max(v["ingest"]["unread_bytes"].as_u64().unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            worst
        })
    };
    let key = Arc::new(store.web_key(&captcha::new_key()).await.unwrap());
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, running, key) = (http.clone(), base.clone(), running.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            let (mut gets, mut images, mut posts) = (Vec::new(), Vec::new(), Vec::new());
            let (mut n, mut refused) = (0u64, 0u64);
            while running.load(Ordering::Relaxed) {
                // Round n of client c is person c + 50 n: a campus address
                // and a mailbox of their own (client 0: always the same).
                let person = if c == 0 {
                    0
                } else {
                    c as u64 + CLIENTS as u64 * n
                };
                n += 1;
                let me = format!("140.114.{}.{}", person / 250 % 250, person % 250 + 1);
                let t = Instant::now();
                let html = http
                    .get(format!("{base}/?lang=en"))
                    .header("X-Forwarded-For", &me)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                gets.push(t.elapsed());
                let at = html.find("name=\"challenge\" value=\"").unwrap_or_else(|| {
                    panic!("not the form: {}", &html[html.len().saturating_sub(400)..])
                }) + 24;
                let len = html[at..].find('"').unwrap();
                let id = &html[at..at + len];
                let t = Instant::now();
                let png = http
                    .get(format!("{base}/captcha/{id}"))
                    .header("X-Forwarded-For", &me)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                images.push(t.elapsed());
                assert!(png.starts_with(b"\x89PNG"));
                // The code, read with the server's key: what a person reads
                // from the image.
                let code = captcha::open(&key, id).unwrap().code;
                let pow = captcha::solve(id, POW_BITS);
                let mailbox = format!("user{}@example.edu", 1 + person % 50000);
                let today = chrono::Utc::now()
                    .with_timezone(&chrono_tz::Asia::Taipei)
                    .date_naive()
                    .to_string();
                let form = [
                    ("mailbox", mailbox.as_str()),
                    ("kind", "smtp"),
                    ("from", today.as_str()),
                    ("lang", "en"),
                    ("challenge", id),
                    ("code", code.as_str()),
                    ("pow", pow.as_str()),
                ];
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/request"))
                    .header("X-Forwarded-For", &me)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let _ = r.bytes().await;
                posts.push(t.elapsed());
                if c == 0 && status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    refused += 1;
                } else {
                    assert!(status.is_success(), "a valid form is accepted: {status}");
                }
            }
            (gets, images, posts, refused)
        }));
    }
    let written_at = writer.await.unwrap();
    running.store(false, Ordering::Relaxed);
    let (mut gets, mut images, mut posts, mut refused) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for c in clients {
        let (g, i, p, r) = c.await.unwrap();
        gets.extend(g);
        images.extend(i);
        posts.extend(p);
        refused += r;
    }
    let worst_unread = lag_probe.await.unwrap();
    // Caught up: every line of the file read.
    let size = std::fs::metadata(&log).unwrap().len();
    let caught_up = loop {
        let v: serde_json::Value = http
            .get(format!("{base}/health"))
            .header("X-Forwarded-For", CAMPUS)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["ingest"]["unread_bytes"] == 0 && v["ingest"]["current"] == true {
            break written_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "{CLIENTS} clients for {secs} s, with {LINES_PER_SEC} log lines/s arriving (target: p99 < 50 ms)"
    );
    show("GET /", gets);
    show("GET code", images);
    let accepted = posts.len() as u64 - refused;
    show("POST form", posts);
    println!(
        "posts: {accepted} accepted ({:.0}/s), {refused} refused by the limits",
        accepted as f64 / secs as f64
    );
    println!(
        "follower: {total_lines} lines ({size} bytes) written at {LINES_PER_SEC}/s; most unread at any probe {worst_unread} bytes; all read {:.2} s after the last write",
        caught_up.as_secs_f64()
    );
    // SIGTERM, as systemd stops it: it must finish cleanly.
    // SAFETY: kill sends a signal to the child we started.
    unsafe { libc::kill(svc.id() as libc::pid_t, libc::SIGTERM) };
    let status = svc.wait().unwrap();
    assert!(status.success(), "serve stopped with {status}");
}
