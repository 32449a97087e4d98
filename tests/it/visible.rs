//! What a person reads: log text that carries control characters and
//! bidirectional controls (a right-to-left override in a recipient, ESC
//! sequences and NUL in a remote reply, isolates in a Message-ID) is shown
//! as code points in every rendering, never obeyed; and a command whose
//! reader closes the pipe early ends quietly.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailtrail::config::Lang;
use mailtrail::domain::Mailbox;
use mailtrail::history::Format;
use mailtrail::report::{self, Channel, Data, Kind, Limits, Requester, Spec};
use mailtrail::visible::is_hidden;

use crate::support::TestDb;

/// Lines in the shapes Postfix and Dovecot write (as in
/// `tests/fixtures/`), with a stranger's characters where strangers write:
/// the recipient (a bell, a right-to-left override that would show
/// `…evil.test` as another domain), the remote reply (ESC sequences, NUL,
/// a left-to-right isolate, a tab), the Message-ID, folders and the
/// client's name.
const HOSTILE: &str = "{day}T10:05:51+08:00 mail postfix/submission/smtpd[27017]: 9B1A8B6981: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice@example.edu
{day}T10:05:51+08:00 mail postfix/cleanup[27022]: 9B1A8B6981: message-id=<\u{202E}gpj.exe@evil.test>
{day}T10:05:51+08:00 mail postfix/qmgr[27002]: 9B1A8B6981: from=<alice@example.edu>, size=493, nrcpt=1 (queue active)
{day}T10:05:51+08:00 mail postfix/smtp[27028]: 9B1A8B6981: to=<bob\u{7}@\u{202E}tset.live>, relay=127.0.0.3[127.0.0.3]:2525, delay=0.13, delays=0/0.02/0.04/0.06, dsn=5.1.1, status=bounced (host 127.0.0.3[127.0.0.3] said: 550 5.1.1 \u{1b}[2J\u{1b}]0;owned\u{7} \0 \u{2066}isolated\u{2069}\tend (in reply to RCPT TO command))
{day}T10:05:51+08:00 mail postfix/qmgr[27002]: 9B1A8B6981: removed
{day}T11:23:03+08:00 mail dovecot: imap-login: Login: user=<alice@example.edu>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=23214, secured, session=<R6eQHOlgS5t/AAAB>
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: ID sent: name=Mail\u{2067}lient\u{1b}[1m, version=1
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: expunge: box=INBOX\u{202E}, uid=1, msgid=<\u{2066}\u{202E}fdp.exe\u{0}@evil.test>, size=248, from=<x@evil.test>, subject=x, flags=(\\Recent)
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: Mailbox deleted: Trash\u{1b}[8m\u{7f}\u{9b}
{day}T11:23:03+08:00 mail dovecot: imap(alice@example.edu)<23214><R6eQHOlgS5t/AAAB>: Disconnected: Logged out in=100 out=200 deleted=0 expunged=1 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0
{day}T12:00:01+08:00 mail postfix/smtpd[300]: 5A5A5A5A5A: client=evil.test[192.0.2.9]
{day}T12:00:01+08:00 mail postfix/cleanup[301]: 5A5A5A5A5A: message-id=<r\u{202E}x@evil.test>
{day}T12:00:01+08:00 mail postfix/qmgr[302]: 5A5A5A5A5A: from=<x@evil.test>, size=500, nrcpt=1 (queue active)
{day}T12:00:01+08:00 mail postfix/lmtp[303]: 5A5A5A5A5A: to=<alice@example.edu>, relay=mail.example.edu[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <alice@example.edu> QrStUvWx Saved)
{day}T12:00:01+08:00 mail dovecot: lmtp(alice@example.edu)<304><QrStUvWx>: save: box=Inbox\u{1b}[5m, uid=7, msgid=<r\u{202E}x@evil.test>, size=900, vsize=910, from=Eve <x@evil.test>, subject=Pay\u{2067}now\u{1b}[31m, flags=()
{day}T12:00:02+08:00 mail postfix/smtpd[300]: NOQUEUE: reject: RCPT from evil.test[192.0.2.9]: 554 5.7.1 <alice@example.edu>: Client host rejected: \u{1b}[2Jlisted\u{7}; from=<x@evil.test> to=<alice@example.edu> proto=ESMTP helo=<evil.test>
";

/// What each rendering must show, as code points, for each kind.
fn shown(kind: Kind) -> &'static [&'static str] {
    match kind {
        // The recipient's bell and override; the reply's ESC, isolates,
        // tab, and its NUL, which the ingest reads as `?` (PostgreSQL's
        // text cannot hold NUL).
        Kind::Smtp => &[
            "bob<U+0007>@<U+202E>tset.live",
            "<U+001B>[2J<U+001B>]0;owned<U+0007> ? <U+2066>isolated<U+2069><U+0009>end",
        ],
        // The Message-ID, the folders, the client's name.
        Kind::Access => &[
            "<U+2066><U+202E>fdp.exe?@evil.test",
            "INBOX<U+202E>",
            "Trash<U+001B>[8m<U+007F><U+009B>",
        ],
        // A received message's Message-ID, folder and subject (Dovecot's,
        // decoded), and a refusal's reply.
        Kind::Received => &[
            "r<U+202E>x@evil.test",
            "Inbox<U+001B>[5m",
            "Pay<U+2067>now<U+001B>[31m",
            "<U+001B>[2Jlisted<U+0007>",
        ],
    }
}

/// The client's name is in the access text and CSV; the report shows it
/// too.
const CLIENT: &str = "Mail<U+2067>lient<U+001B>[1m";

/// Fails when `s` holds a character [`is_hidden`] would show, other than
/// the line ends of the format itself.
fn assert_inert(what: &str, s: &str) {
    if let Some(c) = s.chars().find(|&c| is_hidden(c) && c != '\n' && c != '\r') {
        panic!("{what}: U+{:04X} reached the output:\n{s}", u32::from(c));
    }
    assert!(
        !s.contains("\r\r") && !s.replace("\r\n", "").contains('\r'),
        "{what}: a CR that is not a line end"
    );
}

async fn hostile_db() -> TestDb {
    let db = TestDb::new().await;
    let log = db.dir.path().join("hostile.log");
    let day = crate::support::month().to.to_string();
    std::fs::write(&log, HOSTILE.replace("{day}", &day)).unwrap();
    let r = db.ingest(&[log]).await.unwrap();
    assert_eq!(r.stats.lines_unrecognised, 0, "{}", r.render());
    db
}

fn spec(kind: Kind, lang: Lang) -> Spec {
    Spec {
        mailbox: Mailbox::parse("alice", "example.edu").unwrap(),
        kind,
        range: crate::support::month(),
        lang,
        requester: Requester {
            channel: Channel::Web,
            client_ip: "192.0.2.7".into(),
            at: 1_795_398_077,
        },
    }
}

/// The files of a ZIP, by name.
fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            (f.name().unwrap().into_owned(), s)
        })
        .collect()
}

#[tokio::test]
async fn controls_from_log_lines_are_shown_not_obeyed_in_reports_text_and_csv() {
    let db = hostile_db().await;
    let tz = db.config.tz().unwrap();
    for kind in [Kind::Smtp, Kind::Access, Kind::Received] {
        let data = Data::load(&db.store, &spec(kind, Lang::En), tz)
            .await
            .unwrap();

        // history / access as text and CSV (what the commands print).
        let (text, csv) = match &data {
            Data::Smtp(h) => (h.render(Format::Text), h.render(Format::Csv)),
            Data::Access(h) => (h.render(Format::Text), h.render(Format::Csv)),
            Data::Received(h) => (h.render(Format::Text), h.render(Format::Csv)),
        };
        for (what, out) in [("text", &text), ("CSV", &csv)] {
            assert_inert(&format!("{kind:?} {what}"), out);
            for want in shown(kind) {
                assert!(out.contains(*want), "{kind:?} {what}: no {want} in\n{out}");
            }
            if kind == Kind::Access {
                assert!(out.contains(CLIENT), "{kind:?} {what}: no {CLIENT}");
            }
        }

        // The mailed report, both languages: the HTML attachment, the
        // mail's parts, and the zipped HTML and CSV.
        for lang in [Lang::En, Lang::ZhTw] {
            let mut limits = Limits::from_config(&db.config);
            for always_zip in [false, true] {
                limits.always_zip = always_zip;
                let r = report::render(spec(kind, lang), &data, limits, tz, chrono::Utc::now())
                    .unwrap();
                let files = if always_zip {
                    unzip(&r.attachment.bytes)
                } else {
                    vec![(
                        r.attachment.filename.clone(),
                        String::from_utf8(r.attachment.bytes.clone()).unwrap(),
                    )]
                };
                assert_eq!(files.len(), if always_zip { 2 } else { 1 });
                for (name, body) in &files {
                    let what = format!("{kind:?} {lang:?} {name}");
                    assert_inert(&what, body);
                    for want in shown(kind) {
                        let want = if name.ends_with(".html") {
                            want.replace('<', "&lt;").replace('>', "&gt;")
                        } else {
                            want.to_string()
                        };
                        assert!(body.contains(&want), "{what}: no {want} in\n{body}");
                    }
                }
                assert_inert(&format!("{kind:?} {lang:?} text part"), &r.text);
                assert_inert(&format!("{kind:?} {lang:?} HTML part"), &r.html);
            }
        }
    }
}

/// A config file for the binary, on `db`'s database.
fn config_file(db: &TestDb) -> String {
    let path = db.dir.path().join("config.toml");
    std::fs::write(&path, db.config_text()).unwrap();
    path.display().to_string()
}

fn mailtrail(config: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailtrail"));
    c.arg("--config").arg(config).args(args);
    c
}

/// Waits for `child` to exit, polling; fails after a minute.
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the command did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[tokio::test]
async fn the_binary_shows_controls_as_code_points() {
    let db = hostile_db().await;
    let config = config_file(&db);
    let month = crate::support::month();
    let (from, to) = (month.from.to_string(), month.to.to_string());
    for (command, kind) in [("history", Kind::Smtp), ("access", Kind::Access)] {
        for format in ["text", "csv"] {
            let out = mailtrail(
                &config,
                &[
                    command,
                    "--mailbox",
                    "alice",
                    "--from",
                    &from,
                    "--to",
                    &to,
                    "--format",
                    format,
                ],
            )
            .output()
            .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_inert(&format!("{command} {format}"), &text);
            for want in shown(kind) {
                assert!(
                    text.contains(*want),
                    "{command} {format}: no {want} in\n{text}"
                );
            }
        }
    }
}

/// Many deliveries of alice's, so that `history` prints far more than a
/// pipe holds (64 KiB on Linux) and is still writing when its reader
/// goes.
fn busy_log(dir: &Path, deliveries: u32) -> std::path::PathBuf {
    let day = crate::support::month().to.to_string();
    let mut log = String::new();
    for i in 0..deliveries {
        let qid = format!("{:010X}", 0xC0_0000_0000_u64 + u64::from(i));
        let (h, m, s) = (10 + i / 3600, (i / 60) % 60, i % 60);
        let t = format!("{day}T{h:02}:{m:02}:{s:02}+08:00");
        log.push_str(&format!(
            "{t} mail postfix/submission/smtpd[2{i:05}]: {qid}: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice@example.edu\n\
             {t} mail postfix/cleanup[3{i:05}]: {qid}: message-id=<{i}@example.edu>\n\
             {t} mail postfix/qmgr[27002]: {qid}: from=<alice@example.edu>, size=493, nrcpt=1 (queue active)\n\
             {t} mail postfix/smtp[4{i:05}]: {qid}: to=<r{i}@remote.test>, relay=127.0.0.3[127.0.0.3]:2525, delay=0.13, delays=0/0.02/0.04/0.06, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {i})\n\
             {t} mail postfix/qmgr[27002]: {qid}: removed\n"
        ));
    }
    let path = dir.join("busy.log");
    std::fs::write(&path, log).unwrap();
    path
}

#[tokio::test]
async fn history_into_a_reader_that_stops_after_one_line_ends_quietly() {
    let db = TestDb::new().await;
    db.ingest(&[busy_log(db.dir.path(), 3000)]).await.unwrap();
    let config = config_file(&db);
    let month = crate::support::month();
    let (from, to) = (month.from.to_string(), month.to.to_string());
    let mut child = mailtrail(
        &config,
        &[
            "history",
            "--mailbox",
            "alice",
            "--from",
            &from,
            "--to",
            &to,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("SMTP sending history of alice@example.edu"),
        "{first}"
    );
    let status = exit_of(&mut child);
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
}

#[tokio::test]
async fn every_command_that_prints_ends_quietly_when_its_output_is_closed() {
    let db = hostile_db().await;
    let config = config_file(&db);
    let log = db.dir.path().join("hostile.log");
    let log = log.to_str().unwrap();
    let month = crate::support::month();
    let (from, to) = (month.from.to_string(), month.to.to_string());
    let range = ["--from", from.as_str(), "--to", to.as_str()];
    let mut commands: Vec<Vec<&str>> = vec![vec!["check-config"], vec!["ingest", log]];
    for format in ["text", "json", "csv"] {
        for command in ["history", "access"] {
            let mut c = vec![command, "--mailbox", "alice", "--format", format];
            c.extend(range);
            commands.push(c);
        }
    }
    for kind in ["smtp", "access"] {
        let mut c = vec!["report", "--mailbox", "alice", "--kind", kind, "--out", "-"];
        c.extend(range);
        commands.push(c);
    }
    for args in commands {
        // A pipe whose reader is gone before the command writes a byte.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = mailtrail(&config, &args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exit_of(&mut child);
        let err = stderr_of(&mut child);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        // Not even `report`'s "wrote ...": nothing was.
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn report_out_dash_writes_the_attachment_to_stdout() {
    let db = hostile_db().await;
    let config = config_file(&db);
    let month = crate::support::month();
    let (from, to) = (month.from.to_string(), month.to.to_string());
    let out = mailtrail(
        &config,
        &[
            "report",
            "--mailbox",
            "alice",
            "--kind",
            "smtp",
            "--lang",
            "en",
            "--out",
            "-",
            "--from",
            &from,
            "--to",
            &to,
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        err.contains(&format!(
            "wrote standard output (HTML, {} bytes)",
            html.len()
        )),
        "{err}"
    );
    assert_inert("report --out -", &html);
    assert!(
        html.contains("bob&lt;U+0007&gt;@&lt;U+202E&gt;tset.live"),
        "{html}"
    );
    assert!(!Path::new("-").exists(), "no file named -");
}

#[tokio::test]
async fn the_form_shows_controls_in_what_was_typed_as_code_points() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = db.config_text().replace(
        "[ingest]",
        &format!("[ingest]\npaths = [\"{}\"]", log.display()),
    );
    let cfg = mailtrail::config::Config::from_toml(&format!(
        "{text}\n[smtp]\nhost = \"127.0.0.1\"\nport = 1\nfrom = \"mailtrail@example.edu\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n"
    ))
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(mailtrail::serve::run(cfg, db.store.clone(), async {
        let _ = stopped.await;
    }));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An address that would read as `alice@example.edu` with its end
    // reversed, and a terminal sequence.
    let typed = "alice@\u{202E}ude.elpmaxe\u{1b}[2J";
    let r = http
        .post(format!("{base}/request"))
        .form(&[
            ("mailbox", typed),
            ("kind", "smtp"),
            ("lang", "en"),
            ("challenge", "x"),
            ("code", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let page = r.text().await.unwrap();
    assert_inert("the form page", &page);
    let shown = "alice@&lt;U+202E&gt;ude.elpmaxe&lt;U+001B&gt;[2J";
    // In the message that names it, and in the field that shows it again.
    assert!(page.matches(shown).count() >= 2, "{page}");
    let _ = stop.send(());
    service.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failure_whose_stderr_is_closed_keeps_its_exit_status() {
    let db = TestDb::new().await;
    let config = config_file(&db);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // A wrong argument is exit code 2, said or not.
    let mut child = mailtrail(&config, &["history", "--mailbox", "not an address"])
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    assert_eq!(exit_of(&mut child).code(), Some(2));
}
