//! `mailtrail serve` as a process, meeting faults: a followed path that
//! is missing or cannot be read, a follower held behind, a relay that
//! cannot be reached, a disk that fills up. What it says about them (in
//! `/health` and in its log at the default level) and the state it ends
//! in.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailtrail::config::Config;
use mailtrail::store::Store;

use crate::support::{config_text, database_url, fixture, generated_log};

/// A port on loopback that nothing listens on (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file for `serve`: the test database at `url`, following
/// `paths`, the form on `web_port`, the relay on `smtp_port`.
fn write_config(
    dir: &Path,
    url: &str,
    paths: &[&Path],
    web_port: u16,
    smtp_port: u16,
    retry_secs: u64,
) -> PathBuf {
    let paths: Vec<String> = paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = config_text(url, 1000).replace(
        "[ingest]",
        &format!("[ingest]\npaths = [{}]", paths.join(", ")),
    );
    let text = format!(
        "database_retry_secs = {retry_secs}\n{text}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"mailtrail@example.edu\"\ntimeout_secs = 5\nretry_initial_secs = 1\nretry_max_secs = 1\n[web]\nlisten = \"127.0.0.1:{web_port}\"\n"
    );
    Config::from_toml(&text).expect("the test's config is valid");
    let path = dir.join(format!("config-{web_port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A `mailtrail` child process with its stderr in a file; killed on drop.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    /// Runs `mailtrail --config CONFIG ARGS...` at the default log level.
    fn start(config: &Path, args: &[&str]) -> Proc {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr = config.with_extension(format!("{}-{n}.stderr", args[0]));
        let err = std::fs::File::create(&stderr).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Proc { child, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits up to `within` for the process to end; its exit status.
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then waits for a clean end.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = self.wait(Duration::from_secs(60)).expect("serve stops");
        assert!(status.success(), "{status}: {}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/health` of the serve on `port`: status and body, once it answers.
fn health(port: u16) -> Option<(u16, serde_json::Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    })
}

/// Polls `/health` until `ok` holds of it (for at most a minute); the last
/// answer.
fn health_until(
    port: u16,
    what: &str,
    proc: &mut Proc,
    ok: impl Fn(u16, &serde_json::Value) -> bool,
) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = proc.child.try_wait().unwrap() {
            panic!("serve ended ({s}) waiting for {what}: {}", proc.log());
        }
        if let Some((status, body)) = health(port) {
            if ok(status, &body) {
                return (status, body);
            }
            last = Some((status, body));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}; last /health: {last:?}");
}

fn problems(body: &serde_json::Value) -> Vec<String> {
    body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// A missing followed path and one that cannot be read (a directory: the
/// tests may run as root, who can read any file) make `/health` 503 with
/// each path and why; each is logged once, not on every pass, and so is
/// its end. The start-up lines say what is followed, where the form
/// listens and which relay mail goes through.
#[test]
fn health_names_each_followed_path_that_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "t");
    let missing = dir.path().join("mail.log");
    let a_dir = dir.path().join("logdir");
    std::fs::create_dir(&a_dir).unwrap();
    let (web, smtp) = (free_port(), free_port());
    let config = write_config(dir.path(), &url, &[&missing, &a_dir], web, smtp, 120);
    let mut serve = Proc::start(&config, &["serve"]);

    let (status, body) = health_until(web, "both paths named", &mut serve, |_, b| {
        problems(b).len() >= 2
    });
    assert_eq!(status, 503, "{body}");
    let p = problems(&body);
    assert!(
        p.iter()
            .any(|p| p.starts_with(&missing.display().to_string()) && p.contains("No such file")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with(&a_dir.display().to_string()) && p.contains("directory")),
        "{p:?}"
    );
    assert_eq!(body["ingest"]["current"], false, "{body}");

    let log = serve.log();
    for said in [
        format!("following path={}", missing.display()),
        format!("following path={}", a_dir.display()),
        format!("listening listen=127.0.0.1:{web}"),
        format!("relay=127.0.0.1:{smtp}"),
    ] {
        assert!(log.contains(&said), "{said:?} not in the log:\n{log}");
    }

    // The missing file appears: its problem ends once a pass has read it;
    // the directory's stays.
    std::fs::copy(fixture("mail.log"), &missing).unwrap();
    let (status, body) = health_until(web, "the file to be read", &mut serve, |_, b| {
        problems(b)
            .iter()
            .all(|p| !p.starts_with(&missing.display().to_string()))
            && b["ingest"]["unread_bytes"] == 0
    });
    assert_eq!(status, 503, "{body}");
    assert_eq!(problems(&body).len(), 1, "{body}");
    // Passes go on (one every half second); each problem was logged once.
    let first = body["ingest"]["last_pass"].as_i64().unwrap();
    health_until(web, "passes two seconds on", &mut serve, |_, b| {
        b["ingest"]["last_pass"]
            .as_i64()
            .is_some_and(|t| t >= first + 2)
    });
    let log = serve.log();
    let warned = |path: &Path| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains(&format!("{}: ", path.display())))
            .count()
    };
    assert_eq!(warned(&missing), 1, "{log}");
    assert_eq!(warned(&a_dir), 1, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(&format!("{}: recovered", missing.display())))
            .count(),
        1,
        "{log}"
    );
    serve.stop();
}

/// A follower held behind (here by a write lock another connection keeps
/// on the database) is 503 with exactly the bytes it has not read, counted
/// when asked, not as the last pass that succeeded left them; once the
/// lock goes it catches up and is 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    mailtrail_on_postgres,
    ignore = "SQLite only: the follower is held back with a SQLite write lock"
)]
async fn health_counts_the_bytes_a_follower_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "t");
    let log = dir.path().join("mail.log");
    let text = std::fs::read(fixture("mail.log")).unwrap();
    let half = text[..text.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    append(&log, &text[..half]);
    let (web, smtp) = (free_port(), free_port());
    let config = write_config(dir.path(), &url, &[&log], web, smtp, 120);
    let mut serve = Proc::start(&config, &["serve"]);
    let (status, body) = tokio::task::block_in_place(|| {
        health_until(web, "the first half read", &mut serve, |s, _| s == 200)
    });
    assert_eq!(body["ingest"]["unread_bytes"], 0, "{body}");
    assert_eq!(status, 200);

    // Another writer holds the database; the rest of the log comes.
    let store = Store::open(&url).await.unwrap();
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .unwrap();
    append(&log, &text[half..]);
    let rest = (text.len() - half) as u64;
    let (status, body) = tokio::task::block_in_place(|| {
        // Held back for two seconds of attempted passes: the count does
        // not go stale.
        health_until(web, "the follower held two seconds", &mut serve, |_, b| {
            b["ingest"]["seconds_since_last_pass"]
                .as_i64()
                .is_some_and(|s| s >= 2)
        })
    });
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ingest"]["unread_bytes"], rest, "{body}");
    assert!(
        problems(&body)
            .iter()
            .any(|p| p.contains(&format!("behind, {rest} bytes"))),
        "{body}"
    );

    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
    drop(conn);
    store.close().await;
    let (_, body) = tokio::task::block_in_place(|| {
        health_until(web, "the follower caught up", &mut serve, |s, _| s == 200)
    });
    assert_eq!(body["ingest"]["unread_bytes"], 0, "{body}");
    tokio::task::block_in_place(|| serve.stop());
}

/// A relay that cannot be reached (a port nothing listens on): once the
/// worker's attempt fails, `/health` is 503 and says so, naming the relay.
#[test]
fn health_says_when_the_relay_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "t");
    let log = dir.path().join("mail.log");
    std::fs::copy(fixture("mail.log"), &log).unwrap();
    let (web, smtp) = (free_port(), free_port());
    let config = write_config(dir.path(), &url, &[&log], web, smtp, 120);
    // A report queued for mailing, as from the command line.
    let mut queue = Proc::start(
        &config,
        &["report", "--mailbox", "alice@example.edu", "--kind", "smtp"],
    );
    let status = queue.wait(Duration::from_secs(60)).expect("report ends");
    assert!(status.success(), "{}", queue.log());

    let mut serve = Proc::start(&config, &["serve"]);
    let (status, body) = health_until(web, "the relay's failure", &mut serve, |_, b| {
        !b["outbox"]["relay_error"].is_null()
    });
    assert_eq!(status, 503, "{body}");
    let p = problems(&body);
    assert!(
        p.iter()
            .any(|p| p.starts_with("relay:") && p.contains(&format!("127.0.0.1:{smtp}"))),
        "{p:?}"
    );
    let log = serve.log();
    assert!(log.contains(&format!("127.0.0.1:{smtp} failed")), "{log}");
    serve.stop();
}

/// A tmpfs mounted for one test, unmounted when dropped, whatever the
/// test's end.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `kib` KiB at `dir`, or says why it cannot.
    fn tmpfs(dir: &Path, kib: u64) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Mount(dir.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a child not yet reaped): detach it now, gone
            // when the last user is.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills the filesystem under `dir` with a file `filler` until writes fail
/// for want of space.
fn fill(filler: &Path) {
    let mut f = std::fs::File::create(filler).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", filler.display()),
        }
    }
    // Whatever is left in the last partly written block too.
    while f.write_all(&[0]).is_ok() {}
}

/// Every stored row of the database at `url`, settled: a one-shot ingest
/// of `log` (which has nothing left to read) gives out what still waits
/// for later lines, as at the end of any ingest.
async fn settled_rows(config: &Path, url: &str, log: &Path) -> Vec<String> {
    let mut settle = Proc::start(config, &["ingest", &log.display().to_string()]);
    let status =
        tokio::task::block_in_place(|| settle.wait(Duration::from_secs(120))).expect("ingest ends");
    assert!(status.success(), "{}", settle.log());
    let store = Store::open(url).await.unwrap();
    let db = crate::support::TestDb {
        dir: tempfile::tempdir().unwrap(),
        url: url.to_owned(),
        config: Config::from_toml(&config_text(url, 1000)).unwrap(),
        store,
    };
    let mut rows = db.dump().await;
    rows.extend(db.dump_access().await);
    db.store.close().await;
    rows
}

/// A disk that fills up while `serve` follows a log: the follower's writes
/// fail, are retried for `database_retry_secs`, and the process ends with
/// a failure status and a line that says why (so systemd restarts it).
/// Once space is freed a new `serve` resumes from its checkpoint, and the
/// rows are exactly those of a run that never met the fault.
///
/// Needs root, to mount a small tmpfs for the database: it runs when the
/// tests were built with `MAILTRAIL_FAULT_TESTS=1` (as `.ci/run` does),
/// and then fails if it cannot mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(not(mailtrail_faults), mailtrail_on_postgres),
    ignore = "needs root to mount a tmpfs (MAILTRAIL_FAULT_TESTS=1), and SQLite, whose file fills it"
)]
async fn a_full_disk_ends_serve_and_a_restart_stores_every_row_once() {
    let work = tempfile::tempdir().unwrap();
    let whole = generated_log(work.path(), 8_000, 16);
    let text = std::fs::read(&whole).unwrap();
    // A small first part, read while there is room; the rest after the
    // disk is full.
    let cut = text[..text.len() / 20]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let (first, rest) = text.split_at(cut);

    // The run that meets no fault.
    let clean = {
        let dir = work.path().join("clean");
        std::fs::create_dir(&dir).unwrap();
        let url = database_url(&dir, "t");
        let log = dir.join("mail.log");
        append(&log, first);
        let web = free_port();
        let config = write_config(&dir, &url, &[&log], web, free_port(), 2);
        let mut serve = Proc::start(&config, &["serve"]);
        tokio::task::block_in_place(|| {
            health_until(web, "the first part read", &mut serve, |s, _| s == 200);
            append(&log, rest);
            health_until(web, "the rest read", &mut serve, |s, _| s == 200);
            serve.stop();
        });
        settled_rows(&config, &url, &log).await
    };
    assert!(clean.len() > 500, "{} rows", clean.len());

    let dir = work.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    let mount = Mount::tmpfs(&dir, 256 * 1024)
        .unwrap_or_else(|why| panic!("cannot mount a tmpfs ({why}): the test needs root"));
    let url = database_url(&dir, "t");
    // The log is elsewhere: only the database's disk fills.
    let log = work.path().join("mail.log");
    append(&log, first);
    let web = free_port();
    let config = write_config(work.path(), &url, &[&log], web, free_port(), 2);
    let mut serve = Proc::start(&config, &["serve"]);
    tokio::task::block_in_place(|| {
        health_until(web, "the first part read", &mut serve, |s, _| s == 200);
    });
    let filler = dir.join("filler");
    fill(&filler);
    append(&log, rest);
    let status = tokio::task::block_in_place(|| serve.wait(Duration::from_secs(120)))
        .unwrap_or_else(|| panic!("serve did not exit on a full disk: {}", serve.log()));
    let said = serve.log();
    assert_eq!(status.code(), Some(1), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("following stopped"))
        .unwrap_or_else(|| panic!("no line says why serve stopped:\n{said}"));
    assert!(line.contains("database or disk is full"), "{line}");
    assert!(line.contains("restarts mailtrail"), "{line}");
    drop(serve);

    // Room again: a new serve goes on from the last committed batch.
    std::fs::remove_file(&filler).unwrap();
    let mut serve = Proc::start(&config, &["serve"]);
    tokio::task::block_in_place(|| {
        health_until(web, "the rest read", &mut serve, |s, _| s == 200);
        serve.stop();
    });
    let after = settled_rows(&config, &url, &log).await;
    assert_eq!(after.len(), clean.len());
    let differ = after.iter().zip(&clean).position(|(a, b)| a != b);
    assert_eq!(differ, None, "rows differ from the clean run's");
    drop(mount);
}

/// A relay that answers 451 once: `/health` is 503 with the relay's
/// answer while the mail waits for its retry, and 200 once the retry went
/// through; the log says each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_well_again_once_the_relay_takes_the_mail() {
    let server = crate::smtp_server::SmtpServer::start(None).await;
    server.refuse_next(1);
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "t");
    let log = dir.path().join("mail.log");
    std::fs::copy(fixture("mail.log"), &log).unwrap();
    let web = free_port();
    let config = write_config(dir.path(), &url, &[&log], web, server.port, 120);
    tokio::task::block_in_place(|| {
        let mut queue = Proc::start(
            &config,
            &["report", "--mailbox", "alice@example.edu", "--kind", "smtp"],
        );
        let status = queue.wait(Duration::from_secs(60)).expect("report ends");
        assert!(status.success(), "{}", queue.log());
    });

    let mut serve = Proc::start(&config, &["serve"]);
    let (status, body) = tokio::task::block_in_place(|| {
        health_until(web, "the relay's refusal", &mut serve, |_, b| {
            !b["outbox"]["relay_error"].is_null()
        })
    });
    assert_eq!(status, 503, "{body}");
    assert!(
        body["outbox"]["relay_error"]
            .as_str()
            .unwrap()
            .contains("451"),
        "{body}"
    );
    let (_, body) = tokio::task::block_in_place(|| {
        health_until(web, "the retry sent", &mut serve, |s, _| s == 200)
    });
    assert!(body["outbox"]["relay_error"].is_null(), "{body}");
    assert_eq!(server.received().len(), 1);
    let said = serve.log();
    assert_eq!(said.matches("relay: the last attempt").count(), 1, "{said}");
    assert_eq!(said.matches("relay: recovered").count(), 1, "{said}");
    tokio::task::block_in_place(|| serve.stop());
}

/// The reasons name paths and errors: a client outside
/// `web.allowed_networks` gets the status and `ok`, nothing else.
#[test]
fn health_tells_its_reasons_only_inside_the_allowed_networks() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "t");
    let missing = dir.path().join("secret-name.log");
    let web = free_port();
    let config = write_config(dir.path(), &url, &[&missing], web, free_port(), 120);
    // The [web] table is the file's last: this key lands in it.
    append(&config, b"allowed_networks = [\"192.0.2.0/24\"]\n");
    let mut serve = Proc::start(&config, &["serve"]);
    // The path's problem is logged once the first pass has looked.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !serve.log().contains("secret-name.log: cannot be followed") {
        assert!(Instant::now() < deadline, "{}", serve.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = health_until(web, "an answer", &mut serve, |_, _| true);
    assert_eq!(status, 503);
    assert_eq!(body, serde_json::json!({ "ok": false }));
    serve.stop();
}
