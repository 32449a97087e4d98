//! End to end, against a real mail system: Debian's Postfix and Dovecot on
//! loopback (`tests/e2e/setup.sh`), `mailtrail serve` following their live
//! log, and real traffic: SMTP submissions with AUTH (accepted, bounced,
//! deferred by this test's own "remote" servers), a failed AUTH, POP3 and
//! IMAP sessions that delete mail, a failed IMAP login. Then a report asked
//! for with the web form and one asked for by mail (through Postfix's pipe
//! to `mailtrail request`), and a threshold warning, each delivered by
//! Postfix into the owner's Dovecot mailbox, fetched by IMAP, unzipped, and
//! checked against what this test did and what its servers answered.
//!
//! Ignored (with the reason, in `cargo test`'s summary) unless
//! `MAILTRAIL_E2E=1` was set when the tests were built (see build.rs);
//! `.ci/run` sets it after running setup.sh. Each run uses mailboxes of
//! its own (Dovecot's virtual users), so it can run again on the same setup.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};

/// These paths and the password are setup.sh's (tests/e2e/common.sh).
const LOG: &str = "/var/tmp/mailtrail-e2e/log/mail.log";
const CURRENT: &str = "/var/tmp/mailtrail-e2e/test/current";
const PASSWORD: &str = "e2e-Secret-7";
const WRONG_PASSWORD: &str = "Not-the-Password-3";
/// The longest any one wait may take.
const WAIT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ waiting

/// Polls `ok` until it gives a value, for at most [`WAIT`].
fn wait_for<T>(what: &str, every: Duration, mut ok: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = ok() {
            return v;
        }
        if start.elapsed() > WAIT {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&std::fs::read(LOG).unwrap_or_default()).into_owned()
}

/// Waits until the live log has a line for which `ok` holds; returns it.
fn wait_log(what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_for(what, Duration::from_millis(250), || {
        log_text().lines().find(|l| ok(l)).map(str::to_owned)
    })
}

/// Waits for Postfix's final word on one recipient of one message and
/// checks it is `status` (sent, bounced, deferred).
fn wait_delivery(qid: &str, rcpt: &str, status: &str) {
    let needle = format!(" {qid}: to=<{rcpt}>,");
    let line = wait_log(&format!("Postfix to log {qid} to {rcpt}"), |l| {
        l.contains(&needle) && l.contains(" status=")
    });
    assert!(
        line.contains(&format!(" status={status} ")),
        "{rcpt}: expected status={status}:\n{line}"
    );
}

// ------------------------------------------------------ remote servers

/// What a test "remote" server answered, per recipient: 250 after DATA for
/// a delivery, or the code it refused RCPT with.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<HashMap<String, Vec<u16>>>>);

impl Answers {
    fn record(&self, rcpt: &str, code: u16) {
        self.0
            .lock()
            .unwrap()
            .entry(rcpt.to_ascii_lowercase())
            .or_default()
            .push(code);
    }

    /// How many times the server answered `code` for these recipients.
    fn count(&self, rcpts: &[String], code: u16) -> i64 {
        let m = self.0.lock().unwrap();
        rcpts
            .iter()
            .flat_map(|r| m.get(r).into_iter().flatten())
            .filter(|&&c| c == code)
            .count() as i64
    }
}

/// A "remote" mail server on `ip`:2525, where setup.sh's transport map
/// sends a test domain. It answers every RCPT with `rcpt_reply`.
fn remote(ip: &'static str, rcpt_reply: &'static str) -> Answers {
    let l = TcpListener::bind((ip, 2525)).unwrap_or_else(|e| {
        panic!("cannot listen on {ip}:2525 ({e}): is another run of this test going on?")
    });
    let answers = Answers::default();
    let a = answers.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let a = a.clone();
            std::thread::spawn(move || {
                let _ = remote_session(s, rcpt_reply, &a);
            });
        }
    });
    answers
}

fn angle(arg: &str) -> String {
    let a = arg.split_once('<').map_or(arg, |(_, a)| a);
    let a = a.split_once('>').map_or(a, |(a, _)| a);
    a.trim().to_ascii_lowercase()
}

fn remote_session(s: TcpStream, rcpt_reply: &str, answers: &Answers) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let code: u16 = rcpt_reply[..3].parse().unwrap();
    w.write_all(b"220 mx.test ESMTP\r\n")?;
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-mx.test\r\n250-SIZE 10240000\r\n250 8BITMIME".to_owned()
        } else if upper.starts_with("HELO") {
            "250 mx.test".to_owned()
        } else if upper.starts_with("MAIL") {
            rcpts.clear();
            "250 2.1.0 Ok".to_owned()
        } else if upper.starts_with("RCPT") {
            let rcpt = angle(&line);
            if code == 250 {
                rcpts.push(rcpt.clone());
            } else {
                answers.record(&rcpt, code);
            }
            rcpt_reply.replace("RCPT", &rcpt)
        } else if upper.starts_with("DATA") {
            if rcpts.is_empty() {
                "554 5.5.1 Error: no valid recipients".to_owned()
            } else {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                }
                for rc in rcpts.drain(..) {
                    answers.record(&rc, 250);
                }
                "250 2.0.0 Ok: accepted".to_owned()
            }
        } else if upper.starts_with("RSET") {
            rcpts.clear();
            "250 2.0.0 Ok".to_owned()
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 Error: command not recognized".to_owned()
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

// ------------------------------------------------------------- clients

fn connect(port: u16) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| {
        panic!("connect to 127.0.0.1:{port}: {e} (did tests/e2e/setup.sh run?)")
    });
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let w = s.try_clone().unwrap();
    (BufReader::new(s), w)
}

fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("a line from the server");
    assert!(!l.is_empty(), "the server closed the connection");
    l
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An SMTP client session with Postfix.
struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(port: u16) -> Smtp {
        let (r, w) = connect(port);
        let mut s = Smtp { r, w };
        assert_eq!(s.reply().0, 220);
        let (code, text) = s.cmd("EHLO client.example.net");
        assert_eq!(code, 250, "{text}");
        s
    }

    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let l = read_line(&mut self.r);
            text.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return (l[..3].parse().unwrap(), text);
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    fn auth(&mut self, user: &str, password: &str) -> u16 {
        let token = b64(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {token}")).0
    }

    /// Sends one message; returns Postfix's queue ID.
    fn send(&mut self, from: &str, rcpts: &[String], subject: &str, msgid: &str) -> String {
        let (code, text) = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert_eq!(code, 250, "MAIL FROM:<{from}>: {text}");
        for r in rcpts {
            let (code, text) = self.cmd(&format!("RCPT TO:<{r}>"));
            assert_eq!(code, 250, "RCPT TO:<{r}>: {text}");
        }
        assert_eq!(self.cmd("DATA").0, 354);
        let body = format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\nDate: {}\r\n\r\nA test message of the mailtrail end-to-end test.\r\n.",
            rcpts.join(">, <"),
            chrono::Utc::now().to_rfc2822(),
        );
        let (code, text) = self.cmd(&body);
        assert_eq!(code, 250, "DATA: {text}");
        text.split("queued as ")
            .nth(1)
            .map(|q| q.trim().to_owned())
            .unwrap_or_else(|| panic!("no queue ID in {text:?}"))
    }

    fn quit(mut self) {
        let _ = self.cmd("QUIT");
    }
}

/// An IMAP session with Dovecot.
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

/// A command's answer: the tagged status (OK, NO, BAD), the untagged
/// lines, and the literals (message bodies) in them.
struct ImapAnswer {
    status: String,
    untagged: Vec<String>,
    literals: Vec<Vec<u8>>,
}

impl Imap {
    fn connect() -> Imap {
        let (mut r, w) = connect(143);
        let hello = read_line(&mut r);
        assert!(hello.starts_with("* OK"), "{hello}");
        Imap { r, w, tag: 0 }
    }

    fn cmd(&mut self, c: &str) -> ImapAnswer {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.w
            .write_all(format!("{tag} {c}\r\n").as_bytes())
            .unwrap();
        let mut a = ImapAnswer {
            status: String::new(),
            untagged: Vec::new(),
            literals: Vec::new(),
        };
        loop {
            let l = read_line(&mut self.r);
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                a.status = rest.split(' ').next().unwrap_or("").to_owned();
                return a;
            }
            // A literal: {n} at the end of the line, then n bytes.
            if let Some(n) = l
                .trim_end()
                .strip_suffix('}')
                .and_then(|x| x.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut buf = vec![0; n];
                self.r.read_exact(&mut buf).unwrap();
                a.literals.push(buf);
            }
            a.untagged.push(l);
        }
    }

    fn login(&mut self, user: &str, password: &str) -> String {
        self.cmd(&format!("LOGIN \"{user}\" \"{password}\"")).status
    }

    /// Selects INBOX; returns how many messages it holds.
    fn select_inbox(&mut self) -> usize {
        let a = self.cmd("SELECT INBOX");
        assert_eq!(a.status, "OK");
        a.untagged
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")?
                    .strip_suffix(" EXISTS\r\n")?
                    .parse()
                    .ok()
            })
            .expect("EXISTS in the SELECT answer")
    }

    fn logout(mut self) {
        let _ = self.cmd("LOGOUT");
    }
}

/// Every message in a mailbox's INBOX, read by IMAP (BODY.PEEK: nothing
/// is marked read).
fn inbox(user: &str) -> Vec<Vec<u8>> {
    let mut m = Imap::connect();
    assert_eq!(m.login(user, PASSWORD), "OK", "IMAP login as {user}");
    let n = m.select_inbox();
    let got = if n == 0 {
        Vec::new()
    } else {
        let a = m.cmd("FETCH 1:* (BODY.PEEK[])");
        assert_eq!(a.status, "OK");
        a.literals
    };
    m.logout();
    got
}

fn subject(raw: &[u8]) -> String {
    MessageParser::default()
        .parse(raw)
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until `user`'s INBOX holds a message whose subject is `subj`.
fn wait_mail(user: &str, subj: &str) -> Vec<u8> {
    wait_for(
        &format!("\"{subj}\" in {user}'s mailbox"),
        Duration::from_secs(2),
        || inbox(user).into_iter().find(|m| subject(m) == subj),
    )
}

/// A POP3 session with Dovecot.
struct Pop3 {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop3 {
    fn connect() -> Pop3 {
        let (mut r, w) = connect(110);
        let hello = read_line(&mut r);
        assert!(hello.starts_with("+OK"), "{hello}");
        Pop3 { r, w }
    }

    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        let l = read_line(&mut self.r);
        assert!(l.starts_with("+OK"), "POP3 {c}: {l}");
        l
    }

    /// RETR: the message, dot-unstuffed.
    fn retr(&mut self, n: usize) -> Vec<u8> {
        self.cmd(&format!("RETR {n}"));
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut self.r);
            if l == ".\r\n" {
                return out;
            }
            out.extend_from_slice(l.strip_prefix('.').unwrap_or(&l).as_bytes());
        }
    }
}

fn message_id(raw: &[u8]) -> String {
    let m = MessageParser::default().parse(raw).unwrap();
    format!("<{}>", m.message_id().expect("a Message-ID"))
}

// ------------------------------------------------------------- reports

/// The HTML and the CSV in a report mail's ZIP attachment, and its text
/// part. Checks that it went to `owner` and nobody else.
fn unzip_report(raw: &[u8], owner: &str) -> (String, String, String) {
    let m = MessageParser::default().parse(raw).unwrap();
    let to: Vec<String> = m
        .to()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(to, [owner], "the mail is addressed to its owner only");
    let text = m.body_text(0).expect("a text part").into_owned();
    let zip = m
        .attachments()
        .find(|p| p.content_type().and_then(|c| c.subtype()) == Some("zip"))
        .unwrap_or_else(|| panic!("no ZIP attached to the mail for {owner}"))
        .contents()
        .to_vec();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a readable ZIP");
    let mut html = String::new();
    let mut csv = String::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        if name.ends_with(".html") {
            f.read_to_string(&mut html).unwrap();
        } else if name.ends_with(".csv") {
            f.read_to_string(&mut csv).unwrap();
        }
    }
    assert!(
        !html.is_empty() && !csv.is_empty(),
        "HTML and CSV in the ZIP"
    );
    (text, html, csv)
}

/// The cells of the CSV row that starts with `first`.
fn csv_row(csv: &str, first: &str) -> Vec<String> {
    csv.lines()
        .find(|l| l.split(',').next() == Some(first))
        .unwrap_or_else(|| panic!("no {first} row in the CSV:\n{csv}"))
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn numbers(cells: &[String], n: usize) -> Vec<i64> {
    cells[1..=n]
        .iter()
        .map(|c| c.parse().unwrap_or_else(|_| panic!("a number: {c:?}")))
        .collect()
}

/// The rows after the CSV's second header (the details or events).
fn csv_details(csv: &str) -> Vec<Vec<String>> {
    csv.split("\r\n\r\n")
        .nth(1)
        .expect("a second CSV section")
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

// ------------------------------------------------------------- service

/// `mailtrail serve` as a child process, stopped with SIGTERM.
struct Serve(Option<Child>);

impl Serve {
    /// SIGTERM, then waits; None if it did not exit within [`WAIT`] (it is
    /// killed then).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mailtrail(args: &[&str]) -> String {
    let out = Command::new(format!("{CURRENT}/mailtrail"))
        .arg("--config")
        .arg(format!("{CURRENT}/config.toml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mailtrail {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The web form and `/health` over HTTP, from this (synchronous) test.
struct Http {
    rt: tokio::runtime::Runtime,
    c: reqwest::Client,
    base: String,
}

impl Http {
    /// `/health`'s JSON, or None while serve does not answer.
    fn health(&self) -> Option<serde_json::Value> {
        self.rt.block_on(async {
            let r = self
                .c
                .get(format!("{}/health", self.base))
                .send()
                .await
                .ok()?;
            r.json().await.ok()
        })
    }

    fn get(&self, path: &str) -> String {
        self.rt.block_on(async {
            let r = self
                .c
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "GET {path}");
            r.text().await.unwrap()
        })
    }

    fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        self.rt.block_on(async {
            let r = self
                .c
                .post(format!("{}{path}", self.base))
                .form(fields)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }
}

/// Waits until serve has read the whole log as it was at `since` (a Unix
/// time): a pass ended after it, left nothing unread, and nothing it read
/// waits for later lines any more (it waits a few seconds at most once the
/// log is quiet).
fn wait_ingested(http: &Http, since: i64) {
    wait_for(
        "serve to read the whole log",
        Duration::from_millis(250),
        || {
            let h = http.health()?;
            let ing = &h["ingest"];
            (ing["current"] == true
                && ing["unread_bytes"] == 0
                && ing["waiting_events"] == 0
                && ing["last_pass"].as_i64()? > since)
                .then_some(())
        },
    );
}

fn config_toml(web_port: u16) -> String {
    format!(
        r#"# Written by tests/it/e2e.rs.
# rsyslogd (setup.sh) writes RFC 3339 stamps in UTC.
timezone = "UTC"
local_domains = ["example.edu"]
default_domain = "example.edu"
database_url = "sqlite://{CURRENT}/mailtrail.db?mode=rwc"
retention_days = 31

[ingest]
paths = ["{LOG}"]
# No content filter in this mail system: no hand-offs to follow.
internal_relays = []

[smtp]
host = "127.0.0.1"
port = 25
tls = "none"
from = "mailtrail@example.edu"
timeout_secs = 30
retry_initial_secs = 5
retry_max_secs = 10

[report]
always_zip = true
default_language = "en"

[alerts]
# The reports mailtrail sends are counted for its own address.
[[alerts.rules]]
metric = "bounced"
threshold = {BOUNCED_THRESHOLD}
overrides = [{{ mailbox = "mailtrail@example.edu", exempt = true }}]
[[alerts.rules]]
metric = "sum"
threshold = 40
overrides = [{{ mailbox = "mailtrail@example.edu", exempt = true }}]

[web]
listen = "127.0.0.1:{web_port}"
allowed_networks = ["127.0.0.0/8"]
proof_of_work_bits = {pow_bits}
"#,
        pow_bits = crate::web::POW_BITS,
    )
}

const BOUNCED_THRESHOLD: i64 = 5;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Puts the binary, the config and a fresh database where the Postfix pipe
/// (an unprivileged user) can use them too; returns the web form's port.
fn prepare_current() -> u16 {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(CURRENT);
    std::fs::create_dir_all(CURRENT).unwrap_or_else(|e| {
        panic!("cannot create {CURRENT} ({e}): run tests/e2e/setup.sh (as root) first")
    });
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(CURRENT, 0o777);
    let bin = format!("{CURRENT}/mailtrail");
    std::fs::copy(env!("CARGO_BIN_EXE_mailtrail"), &bin).unwrap();
    mode(&bin, 0o755);
    let port = free_port();
    let cfg = format!("{CURRENT}/config.toml");
    std::fs::write(&cfg, config_toml(port)).unwrap();
    mode(&cfg, 0o644);
    mailtrail(&["migrate"]);
    // SQLite gives the -wal and -shm files the database file's mode.
    for f in std::fs::read_dir(CURRENT).unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().contains("mailtrail.db") {
            mode(p.to_str().unwrap(), 0o666);
        }
    }
    port
}

#[test]
#[cfg_attr(
    not(mailtrail_e2e),
    ignore = "needs tests/e2e/setup.sh (as root) and MAILTRAIL_E2E=1"
)]
fn real_mail_traffic_comes_back_as_reports_and_a_warning_in_real_mailboxes() {
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:5.1}s] {what}", started.elapsed().as_secs_f64());
    let now = || chrono::Utc::now().timestamp();
    // The day's numbers are checked: start in the day the test will end in.
    let left = 86_400 - chrono::Utc::now().timestamp().rem_euclid(86_400);
    if left < 90 {
        eprintln!("waiting {left} s for midnight UTC, so the test runs within one day");
        std::thread::sleep(Duration::from_secs(left as u64 + 1));
    }
    let today = chrono::Utc::now().date_naive().to_string();
    assert!(
        std::path::Path::new(LOG).exists(),
        "{LOG} is missing: run tests/e2e/setup.sh (as root) first"
    );

    // This run's mailboxes: any local part of example.edu is a Dovecot
    // mailbox, so earlier runs' lines in the log are other people's.
    let run = format!(
        "{:x}{:x}",
        std::process::id(),
        chrono::Utc::now().timestamp_subsec_micros()
    );
    let alice = format!("alice-{run}@example.edu"); // sends: the SMTP report
    let bob = format!("bob-{run}@example.edu"); // reads mail: the access report
    let carol = format!("carol-{run}@example.edu"); // pushed over the threshold
    let rcpt = |what: &str, n: usize, domain: &str| -> Vec<String> {
        (1..=n)
            .map(|i| format!("{what}{i}-{run}@{domain}"))
            .collect()
    };

    let ok = remote("127.0.0.2", "250 2.1.5 Ok");
    let bounce = remote(
        "127.0.0.3",
        "550 5.1.1 <RCPT>: Recipient address rejected: User unknown",
    );
    let defer = remote(
        "127.0.0.4",
        "450 4.2.0 <RCPT>: Recipient address rejected: Greylisted, try again later",
    );

    let web_port = prepare_current();
    let serve_log = std::fs::File::create(format!("{CURRENT}/serve.log")).unwrap();
    let mut serve = Serve(Some(
        Command::new(format!("{CURRENT}/mailtrail"))
            .arg("--config")
            .arg(format!("{CURRENT}/config.toml"))
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdout(serve_log.try_clone().unwrap())
            .stderr(serve_log)
            .stdin(Stdio::null())
            .spawn()
            .expect("mailtrail serve starts"),
    ));
    let http = Http {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        c: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{web_port}"),
    };
    wait_for(
        "serve to answer /health",
        Duration::from_millis(200),
        || http.health(),
    );
    step(&format!("serve is up; its log is {CURRENT}/serve.log"));

    // ---------------------------------------------------------- traffic
    // Mail for bob from outside, to read and delete by POP3 and IMAP.
    let mut deliveries: Vec<(String, String, &str)> = Vec::new(); // (queue ID, rcpt, status)
    let mut s = Smtp::connect(25);
    for i in 1..=3 {
        let q = s.send(
            "someone@outside.test",
            std::slice::from_ref(&bob),
            &format!("inbound {i}"),
            &format!("<in{i}-{run}@outside.test>"),
        );
        deliveries.push((q, bob.clone(), "sent"));
    }
    s.quit();

    // alice: a wrong password first, then eight messages with AUTH on the
    // submission port: three delivered, two bounced, two deferred by the
    // test servers, one delivered into bob's mailbox.
    let mut s = Smtp::connect(587);
    let mut auth_refused = 0;
    if s.auth(&alice, WRONG_PASSWORD) == 535 {
        auth_refused += 1;
    }
    s.quit();
    let mut s = Smtp::connect(587);
    assert_eq!(s.auth(&alice, PASSWORD), 235, "AUTH as {alice}");
    let alice_ok = rcpt("ok", 3, "ok.test");
    let alice_bounced = rcpt("nobody", 2, "bounce.test");
    let alice_deferred = rcpt("later", 2, "defer.test");
    let to_bob = vec![bob.clone()];
    // What alice sends, by what should become of it.
    let alice_plan = [
        (&alice_ok, "sent"),
        (&alice_bounced, "bounced"),
        (&alice_deferred, "deferred"),
        (&to_bob, "sent"),
    ];
    let mut alice_accepted = 0; // messages Postfix took from alice with AUTH
    let mut n = 0;
    for (list, status) in alice_plan {
        for r in list {
            n += 1;
            let q = s.send(
                &alice,
                std::slice::from_ref(r),
                &format!("message {n}"),
                &format!("<m{n}-{run}@client.example.net>"),
            );
            alice_accepted += 1;
            deliveries.push((q, r.clone(), status));
        }
    }
    s.quit();

    // carol: one message to six addresses that do not exist.
    let carol_bounced = rcpt("gone", 6, "bounce.test");
    let mut s = Smtp::connect(587);
    assert_eq!(s.auth(&carol, PASSWORD), 235, "AUTH as {carol}");
    let q = s.send(
        &carol,
        &carol_bounced,
        "to many",
        &format!("<c1-{run}@client.example.net>"),
    );
    for r in &carol_bounced {
        deliveries.push((q.clone(), r.clone(), "bounced"));
    }
    s.quit();
    step("submitted; waiting for Postfix to deliver");
    for (q, r, status) in &deliveries {
        wait_delivery(q, r, status);
    }
    wait_log("Postfix to log alice's failed AUTH", |l| {
        l.contains("authentication failed") && l.contains(&format!("sasl_username={alice}"))
    });

    // What the test servers answered is what alice's day must show.
    assert_eq!(ok.count(&alice_ok, 250), 3, "ok.test took alice's mail");
    assert_eq!(bounce.count(&alice_bounced, 550), 2);
    assert_eq!(defer.count(&alice_deferred, 450), 2);
    assert_eq!(bounce.count(&carol_bounced, 550), 6);

    // bob reads his mail: POP3 takes and deletes the first message, IMAP
    // deletes and expunges the (new) first one; then a wrong password.
    let mut p = Pop3::connect();
    p.cmd(&format!("USER {bob}"));
    p.cmd(&format!("PASS {PASSWORD}"));
    let stat = p.cmd("STAT");
    assert!(
        stat.starts_with("+OK 4 "),
        "three mails from outside and one from alice in bob's mailbox: {stat}"
    );
    let pop3_deleted = message_id(&p.retr(1));
    p.cmd("DELE 1");
    p.cmd("QUIT");

    let mut m = Imap::connect();
    assert_eq!(m.login(&bob, PASSWORD), "OK");
    assert_eq!(m.cmd("ID (\"name\" \"e2e-mail-client\")").status, "OK");
    assert_eq!(m.select_inbox(), 3);
    let a = m.cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    assert_eq!(a.status, "OK");
    let imap_deleted = message_id(&a.literals[0]);
    assert_eq!(m.cmd("STORE 1 +FLAGS (\\Deleted)").status, "OK");
    assert_eq!(m.cmd("EXPUNGE").status, "OK");
    m.logout();

    let mut m = Imap::connect();
    let refused = m.login(&bob, WRONG_PASSWORD);
    assert_eq!(refused, "NO", "a wrong password is refused");
    m.logout();

    for (what, needle) in [
        ("bob's POP3 logout", format!("pop3({bob})")),
        ("bob's IMAP logout", format!("imap({bob})")),
    ] {
        wait_log(what, |l| l.contains(&needle) && l.contains("Logged out"));
    }
    wait_log("bob's failed IMAP login", |l| {
        l.contains("imap-login") && l.contains("auth failed") && l.contains(&format!("<{bob}>"))
    });
    let logged = now();
    step("traffic done and logged; waiting for serve to read it");
    wait_ingested(&http, logged);

    // ---------------------------------------------------- the web form
    // A request as a person makes it: a fresh challenge, its code read as
    // web.rs reads it (with the key serve keeps in the database, opening
    // the sealed token), and the browser's proof of work.
    let ask = |mailbox: &str, kind: &str| -> (u16, String) {
        let form = http.get("/?lang=en");
        let at = form
            .find("name=\"challenge\" value=\"")
            .expect("a challenge")
            + 24;
        let token = form[at..].split('"').next().unwrap().to_owned();
        let code = http.rt.block_on(async {
            let store = mailtrail::store::Store::connect(&format!(
                "sqlite://{CURRENT}/mailtrail.db?mode=rw"
            ))
            .await
            .unwrap();
            let code = crate::web::code_of(&store, &token).await;
            store.close().await;
            code
        });
        http.post(
            "/request",
            &[
                ("mailbox", mailbox),
                ("kind", kind),
                ("from", &today),
                ("to", &today),
                ("lang", "en"),
                ("challenge", &token),
                ("code", &code),
                ("pow", &crate::web::pow_of(&token)),
            ],
        )
    };
    let (status, page) = ask(&alice, "smtp");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("will be mailed to {alice}")),
        "{page}"
    );
    step("asked for alice's SMTP report with the form");

    // ---------------------------------------------------- a mail request
    let mut s = Smtp::connect(25);
    let q = s.send(
        &bob,
        &["mailtrail@example.edu".to_owned()],
        &format!("access {today} en"),
        &format!("<req-{run}@client.example.net>"),
    );
    s.quit();
    let piped = wait_log("Postfix to pipe the request to mailtrail", |l| {
        l.contains(&format!(" {q}: to=<mailtrail@example.edu>,")) && l.contains(" status=")
    });
    assert!(
        piped.contains("status=sent") && piped.contains("relay=mailtrail"),
        "the pipe to `mailtrail request` failed:\n{piped}"
    );
    step("asked for bob's access report by mail");

    // ------------------------------------------------- the SMTP report
    let subj = format!("SMTP sending history of {alice}, {today} to {today}");
    let raw = wait_mail(&alice, &subj);
    let (text, html, csv) = unzip_report(&raw, &alice);
    assert!(text.contains("on the web form from 127.0.0.1"), "{text}");
    let sent = ok.count(&alice_ok, 250) + 1; // and the one into bob's mailbox
    let bounced = bounce.count(&alice_bounced, 550);
    let deferred = defer.count(&alice_deferred, 450);
    let sum = auth_refused + alice_accepted + bounced + deferred + sent;
    // Sum, Auth_blk, Auth_rcv, Bounced, Deferred, Expired, Sent
    let want = vec![
        sum,
        auth_refused,
        alice_accepted,
        bounced,
        deferred,
        0,
        sent,
    ];
    assert_eq!(
        numbers(&csv_row(&csv, &today), 7),
        want,
        "alice's day in the CSV:\n{csv}"
    );
    assert_eq!(numbers(&csv_row(&csv, "Total"), 7), want);
    // Every recipient with what happened to it.
    let details = csv_details(&csv);
    for (list, status) in alice_plan {
        for r in list {
            let n = details
                .iter()
                .filter(|d| d[5] == *r && d[6] == status)
                .count();
            assert_eq!(n, 1, "one {status} row for {r}:\n{csv}");
        }
    }
    for r in &alice_bounced {
        assert!(html.contains(r), "{r} in the HTML report");
    }
    step("alice's SMTP report arrived in her mailbox and holds what she sent");

    // ----------------------------------------------- the access report
    let subj = format!("Mailbox access history of {bob}, {today} to {today}");
    let raw = wait_mail(&bob, &subj);
    let (text, _html, csv) = unzip_report(&raw, &bob);
    assert!(
        text.contains("by a request mailed from this mailbox"),
        "{text}"
    );
    // IMAP logins, POP3 logins, failed logins, messages deleted.
    assert_eq!(
        numbers(&csv_row(&csv, &today), 4),
        [1, 1, 1, 2],
        "bob's day in the CSV:\n{csv}"
    );
    let events = csv_details(&csv);
    let kinds = |k: &str| events.iter().filter(|e| e[1] == k).count();
    assert_eq!(kinds("login"), 2, "{csv}");
    assert_eq!(kinds("auth_failed"), 1, "{csv}");
    assert!(
        events
            .iter()
            .any(|e| e[2] == "imap" && e[5] == "e2e-mail-client"),
        "the IMAP session's client, from its IMAP ID:\n{csv}"
    );
    let deleted: BTreeSet<&str> = events
        .iter()
        .filter(|e| e[1] == "message_deleted")
        .map(|e| e[13].as_str())
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from([pop3_deleted.as_str(), imap_deleted.as_str()]),
        "the Message-IDs bob deleted:\n{csv}"
    );
    step("bob's access report arrived in his mailbox and holds his sessions");

    // ------------------------------------------ the received-mail report
    let (status, page) = ask(&bob, "received");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("will be mailed to {bob}")), "{page}");
    step("asked for bob's received-mail report with the form");
    let subj = format!("Mail received by {bob}, {today} to {today}");
    let raw = wait_mail(&bob, &subj);
    let (text, html, csv) = unzip_report(&raw, &bob);
    assert!(text.contains("on the web form from 127.0.0.1"), "{text}");
    // What the test sent to bob: three mails from outside and one from
    // alice, each delivered by LMTP into his INBOX, with its sender; the
    // report mails mailtrail itself sent him may be there too.
    let mut sent_to_bob: Vec<(String, String)> = (1..=3)
        .map(|i| {
            (
                format!("<in{i}-{run}@outside.test>"),
                "someone@outside.test".to_owned(),
            )
        })
        .collect();
    sent_to_bob.push((format!("<m{n}-{run}@client.example.net>"), alice.clone()));
    let rows = csv_details(&csv);
    for (msgid, sender) in &sent_to_bob {
        let found: Vec<&Vec<String>> = rows.iter().filter(|r| r[5] == *msgid).collect();
        assert_eq!(found.len(), 1, "one row for {msgid}:\n{csv}");
        let r = found[0];
        assert_eq!(
            (r[1].as_str(), r[2].as_str(), r[9].as_str()),
            ("delivered", sender.as_str(), "INBOX"),
            "{msgid}: outcome, sender, folder:\n{csv}"
        );
        assert!(
            html.contains(&msgid.replace('<', "&lt;").replace('>', "&gt;")),
            "{msgid} in the HTML"
        );
    }
    let day = csv_row(&csv, &today);
    let delivered = numbers(&day, 2)[1];
    assert!(
        delivered >= sent_to_bob.len() as i64,
        "bob's day counts every delivery:\n{csv}"
    );
    // Where they are now, by `mailtrail locate`: one downloaded and
    // deleted by POP3, one expunged by IMAP, the others still in INBOX.
    for (msgid, _) in &sent_to_bob {
        let out = mailtrail(&[
            "locate",
            "--mailbox",
            &bob,
            "--message-id",
            msgid,
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let want = if *msgid == pop3_deleted {
            "pop3_deleted"
        } else if *msgid == imap_deleted {
            "expunged"
        } else {
            "still_in_folder"
        };
        assert_eq!(v["state"], want, "{msgid}: {out}");
        assert_eq!(v["saved_to"], "INBOX", "{msgid}: {out}");
    }
    step("bob's received-mail report arrived and locate says where each mail is");

    // -------------------------------------------------- the warning
    // The scheduler does complete past days only; the same work for today
    // through the command line.
    mailtrail(&["aggregate", "--date", &today]);
    mailtrail(&["alerts", "--date", &today]);
    let subj = format!("Warning: unusual sending from {carol} on {today}");
    let raw = wait_mail(&carol, &subj);
    let (text, _html, csv) = unzip_report(&raw, &carol);
    let carol_bounces = bounce.count(&carol_bounced, 550);
    assert!(
        text.contains(&format!(
            ": {carol_bounces} (threshold {BOUNCED_THRESHOLD})"
        )),
        "the threshold carol crossed: {text}"
    );
    assert!(
        text.contains(&format!(
            "Sum {}, Auth_blk 0, Auth_rcv 1, Bounced {carol_bounces}, Deferred 0, Expired 0, Sent 0",
            1 + carol_bounces
        )),
        "carol's counts: {text}"
    );
    assert_eq!(
        numbers(&csv_row(&csv, &today), 7),
        [1 + carol_bounces, 0, 1, carol_bounces, 0, 0, 0],
        "carol's day in the attached report:\n{csv}"
    );
    // alice stayed under every threshold: once everything queued is sent,
    // her mailbox holds no warning.
    wait_for("the outbox to be sent", Duration::from_millis(500), || {
        let h = http.health()?;
        (h["outbox"]["queued"] == 0).then_some(())
    });
    let warned_alice = inbox(&alice)
        .iter()
        .map(|m| subject(m))
        .filter(|s| s.starts_with("Warning"))
        .count();
    assert_eq!(warned_alice, 0, "alice was under the thresholds");
    step("carol's warning arrived in her mailbox; alice got none");

    let status = serve
        .stop()
        .expect("serve stops within a minute of SIGTERM");
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
    assert_eq!(
        chrono::Utc::now().date_naive().to_string(),
        today,
        "the UTC day changed while the test ran: run it again"
    );
    step("serve stopped");
}
