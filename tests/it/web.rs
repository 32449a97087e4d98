//! The service as users meet it: `serve` following a log, the web form
//! over HTTP, the report arriving at an SMTP server; refusals; requests by
//! mail; following across rotation and restarts.

use std::path::Path;
use std::time::Duration;

use mail_parser::MessageParser;
use mailtrail::config::Config;
use mailtrail::domain::Day;
use mailtrail::store::Store;

use crate::smtp_server::SmtpServer;
use crate::support::{Capture, TestDb, fixture};

/// A free port on loopback.
pub(crate) async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub(crate) fn config(db: &TestDb, log: &Path, web_port: u16, smtp_port: u16, web: &str) -> Config {
    let text = db.config_text().replace(
        "[ingest]",
        &format!("[ingest]\npaths = [\"{}\"]", log.display()),
    );
    Config::from_toml(&format!(
        "{text}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"mailtrail@example.edu\"\ntimeout_secs = 10\n[web]\nlisten = \"127.0.0.1:{web_port}\"\nproof_of_work_bits = {POW_BITS}\n{web}\n"
    ))
    .unwrap()
}

/// The proof of work the tests' service asks for: small, as the tests
/// solve it in a debug build.
pub const POW_BITS: u8 = 8;

/// The proof of work for a form's token, found as the page finds it.
pub fn pow_of(token: &str) -> String {
    mailtrail::requests::captcha::solve(token, POW_BITS)
}

/// A running `serve`, stopped on drop.
pub(crate) struct Service {
    pub(crate) base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    pub(crate) async fn start(config: Config, store: Store) -> Service {
        let base = format!("http://{}", config.web.listen);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mailtrail::serve::run(config, store, async {
            let _ = rx.await;
        }));
        // Wait for the listener.
        for _ in 0..100 {
            if reqwest::get(format!("{base}/health")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Service {
            base,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The challenge token in a form page.
fn challenge_of(html: &str) -> String {
    let at = html.find("name=\"challenge\" value=\"").unwrap() + 24;
    let len = html[at..].find('"').unwrap();
    html[at..at + len].to_owned()
}

/// The code sealed in a challenge token, read as any test may: with the
/// key the server keeps in the database.
pub async fn code_of(store: &Store, token: &str) -> String {
    use mailtrail::requests::captcha;
    let key = store.web_key(&captcha::new_key()).await.unwrap();
    captcha::open(&key, token)
        .expect("a token of this server")
        .code
}

/// Loads the form and answers its code.
pub(crate) async fn filled_form(
    c: &reqwest::Client,
    base: &str,
    store: &Store,
) -> (String, String) {
    let html = c
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = challenge_of(&html);
    let code = code_of(store, &id).await;
    (id, code)
}

pub(crate) fn today(c: &Config) -> Day {
    Day::from_date(
        chrono::Utc::now()
            .with_timezone(&c.tz().unwrap())
            .date_naive(),
    )
}

/// Posts a form, with the proof of work for its challenge as the page
/// would add it.
pub(crate) async fn post(
    c: &reqwest::Client,
    base: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let mut fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
    if let Some((_, token)) = fields.iter().find(|(k, _)| *k == "challenge") {
        let pow = pow_of(token);
        fields.push(("pow", pow));
    }
    let r = c
        .post(format!("{base}/request"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_form_request_over_http_arrives_as_a_report_in_the_mailbox() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::copy(fixture("mail.log"), &log).unwrap();
    Capture::Postfix.date(&log);
    let server = SmtpServer::start(None).await;
    let cfg = config(&db, &log, free_port().await, server.port, "");
    let t = today(&cfg);
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();

    // The service follows the log: the fixture's rows are stored.
    let store = db.store.clone();
    let mut stored = false;
    for _ in 0..100 {
        if !db.history("alice").await.details.is_empty() {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "the followed log is ingested");
    // Rows are committed before the pass that wrote them reports: /health
    // says current once that pass has ended.
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        health = c
            .get(format!("{}/health", svc.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["ingest"]["current"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health["ingest"]["current"], true, "{health}");

    let (id, code) = filled_form(&c, &svc.base, &store).await;
    let (status, page) = post(
        &c,
        &svc.base,
        &[
            ("mailbox", "Alice@Example.edu"),
            ("kind", "smtp"),
            ("from", &t.pred().to_string()),
            ("to", &t.to_string()),
            ("lang", "en"),
            ("challenge", &id),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("will be mailed to alice@example.edu"),
        "{page}"
    );

    wait_for("the report to arrive", || !server.received().is_empty()).await;
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["alice@example.edu"]);
    let m = MessageParser::default().parse(&got[0].data).unwrap();
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("on the web form from 127.0.0.1"),
        "the channel and client: {text}"
    );
    let row = store.request(1).await.unwrap().unwrap();
    assert_eq!(
        (row.request.channel.as_str(), row.request.client_ip.as_str()),
        ("web", "127.0.0.1")
    );

    // The code was used: the same answer again is refused.
    let (status, page) = post(
        &c,
        &svc.base,
        &[
            ("mailbox", "alice"),
            ("kind", "smtp"),
            ("from", &t.to_string()),
            ("lang", "en"),
            ("challenge", &id),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("verification code is wrong"), "{page}");
    svc.stop().await;
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn the_form_refuses_what_it_must_with_a_clear_page() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cfg = config(
        &db,
        &log,
        free_port().await,
        1,
        "max_per_mailbox_per_day = 1\nmax_per_client_per_hour = 3\n",
    );
    let t = today(&cfg);
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();
    let base = svc.base.clone();
    let s = db.store.clone();
    let today_s = t.to_string();
    let ok_fields = |id: &str, code: &str, mailbox: &'static str| {
        vec![
            ("mailbox".to_owned(), mailbox.to_owned()),
            ("kind".to_owned(), "access".to_owned()),
            ("from".to_owned(), today_s.clone()),
            ("lang".to_owned(), "en".to_owned()),
            ("challenge".to_owned(), id.to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("pow".to_owned(), pow_of(id)),
        ]
    };
    let send = |fields: Vec<(String, String)>| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let r = c
                .post(format!("{base}/request"))
                .form(&fields)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // A mailbox of another domain.
    let (id, code) = filled_form(&c, &base, &s).await;
    let (st, page) = send(ok_fields(&id, &code, "alice@gmail.com")).await;
    assert_eq!(st, 422);
    assert!(
        page.contains("not a mailbox of this mail service"),
        "{page}"
    );
    // A wrong code.
    let (id, _) = filled_form(&c, &base, &s).await;
    let (st, page) = send(ok_fields(&id, "00000x", "alice")).await;
    assert_eq!(st, 422);
    assert!(page.contains("verification code is wrong"));
    // An expired code, and a token this server did not make.
    {
        use mailtrail::requests::captcha;
        let key = s.web_key(&captcha::new_key()).await.unwrap();
        let old = captcha::seal(&key, "12345", chrono::Utc::now().timestamp() - 1);
        let (st, page) = send(ok_fields(&old, "12345", "alice")).await;
        assert_eq!(st, 422);
        assert!(page.contains("verification code is wrong"), "{page}");
        let forged = captcha::seal(&captcha::new_key(), "12345", i64::MAX);
        assert_eq!(send(ok_fields(&forged, "12345", "alice")).await.0, 422);
    }
    // Dates outside the retention window, and nonsense dates.
    let (id, code) = filled_form(&c, &base, &s).await;
    let mut f = ok_fields(&id, &code, "alice");
    f[2].1 = "2001-01-01".into();
    let (st, page) = send(f).await;
    assert_eq!(st, 422);
    assert!(page.contains("within the last 31 days"), "{page}");
    let (id, code) = filled_form(&c, &base, &s).await;
    let mut f = ok_fields(&id, &code, "alice");
    f[2].1 = "yesterday".into();
    let (st, page) = send(f).await;
    assert_eq!(st, 422);
    assert!(page.contains("dates are not valid"));
    // What was typed is kept, escaped.
    let (id, code) = filled_form(&c, &base, &s).await;
    let (st, page) = send(ok_fields(&id, &code, "\"><script>x</script>")).await;
    assert_eq!(st, 422);
    assert!(!page.contains("<script>x"), "{page}");

    // One request per mailbox per day here.
    let (id, code) = filled_form(&c, &base, &s).await;
    assert_eq!(send(ok_fields(&id, &code, "bob")).await.0, 200);
    let (id, code) = filled_form(&c, &base, &s).await;
    let (st, page) = send(ok_fields(&id, &code, "bob")).await;
    assert_eq!(st, 429);
    assert!(
        page.contains("Too many requests for bob@example.edu"),
        "{page}"
    );
    // Three per client address per hour.
    for who in ["carol", "dave"] {
        let (id, code) = filled_form(&c, &base, &s).await;
        let mailbox: &'static str = if who == "carol" {
            "carol"
        } else {
            "dave@cs.example.edu"
        };
        assert_eq!(send(ok_fields(&id, &code, mailbox)).await.0, 200);
    }
    let (id, code) = filled_form(&c, &base, &s).await;
    let (st, page) = send(ok_fields(&id, &code, "erin")).await;
    assert_eq!(st, 429);
    assert!(
        page.contains("Too many requests from your address (127.0.0.1)"),
        "{page}"
    );

    // A post from another site.
    let (id, code) = filled_form(&c, &base, &s).await;
    let r = c
        .post(format!("{base}/request"))
        .header("Origin", "https://evil.test")
        .header("Sec-Fetch-Site", "cross-site")
        .form(&ok_fields(&id, &code, "frank"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // X-Forwarded-For from a peer that is not a trusted proxy is ignored.
    let r = c
        .get(format!("{base}/"))
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    svc.stop().await;
    let n: Vec<String> = crate::on_any_pool!(&db.store, p => sqlx::query_scalar("SELECT mailbox FROM requests ORDER BY id")
        .fetch_all(p)
        .await
        .unwrap());
    assert_eq!(
        n,
        [
            "bob@example.edu",
            "carol@example.edu",
            "dave@cs.example.edu"
        ]
    );
}

#[tokio::test]
async fn clients_outside_the_allowed_networks_are_refused_also_behind_a_proxy() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cfg = config(
        &db,
        &log,
        free_port().await,
        1,
        "allowed_networks = [\"140.114.0.0/16\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    );
    let svc = Service::start(cfg, db.store.clone()).await;
    let c = reqwest::Client::new();
    // The peer, 127.0.0.1, is a trusted proxy: the forwarded address counts.
    let r = c
        .get(format!("{}/?lang=en", svc.base))
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("campus network only") && page.contains("203.0.113.5"),
        "{page}"
    );
    let r = c
        .get(format!("{}/", svc.base))
        .header("X-Forwarded-For", "140.114.20.30")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Without the header the client is the proxy itself: outside.
    let r = c.get(format!("{}/", svc.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    svc.stop().await;
}

/// A message as a Postfix pipe hands it over.
pub(crate) fn message(from: &str, subject: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: reports@example.edu\r\nSubject: {subject}\r\nMessage-ID: <{}@client.example.edu>\r\n{extra}\r\n{body}\r\n",
        xxhash_rust::xxh3::xxh3_64(format!("{from}{subject}{body}{extra}").as_bytes())
    )
    .into_bytes()
}

#[tokio::test]
async fn requests_by_mail_go_to_the_local_sender_only() {
    use mailtrail::requests::mail::{Outcome, intake};
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let c = db.config.clone();
    let now = chrono::Utc::now().timestamp();
    let t = today(&c);

    // An explicit range.
    let m = message(
        "alice@example.edu",
        &format!("smtp {} {}", t.pred(), t),
        "",
        "",
    );
    let Outcome::Requested(id) = intake(&db.store, &c, "alice@example.edu", &m, now)
        .await
        .unwrap()
    else {
        panic!("a request")
    };
    let r = db.store.request(id).await.unwrap().unwrap().request;
    assert_eq!(
        (r.kind.as_str(), r.channel.as_str(), r.mailbox.as_str()),
        ("smtp", "mail", "alice@example.edu")
    );
    assert_eq!((r.from_day, r.to_day), (t.pred().key(), t.key()));
    // The same message delivered twice is one request.
    assert_eq!(
        intake(&db.store, &c, "alice@example.edu", &m, now)
            .await
            .unwrap(),
        Outcome::Requested(id)
    );
    // Nothing at all: the last 7 days of SMTP history.
    let m = message("bob@example.edu", "", "", "");
    let Outcome::Requested(id) = intake(&db.store, &c, "bob", &m, now).await.unwrap() else {
        panic!()
    };
    let r = db.store.request(id).await.unwrap().unwrap().request;
    assert_eq!(r.kind, "smtp");
    assert_eq!(r.to_day, t.key());
    assert_eq!(Day::from_key(r.from_day).unwrap(), {
        let mut d = t;
        for _ in 0..6 {
            d = d.pred();
        }
        d
    });
    // The first body line, when the subject says nothing useful.
    let m = message(
        "carol@example.edu",
        "hello",
        &format!("access {t} en\r\n\r\nthanks"),
        "",
    );
    let Outcome::Requested(id) = intake(&db.store, &c, "carol@example.edu", &m, now)
        .await
        .unwrap()
    else {
        panic!()
    };
    let r = db.store.request(id).await.unwrap().unwrap().request;
    assert_eq!((r.kind.as_str(), r.lang.as_str()), ("access", "en"));

    // Unreadable: a help reply, to the sender's own mailbox.
    let m = message("dave@cs.example.edu", "please send me everything", "", "");
    let Outcome::Helped(outbox) = intake(&db.store, &c, "dave@cs.example.edu", &m, now)
        .await
        .unwrap()
    else {
        panic!("a help reply")
    };
    let mail = db.store.outbox_mail(outbox).await.unwrap().unwrap();
    assert_eq!(mail.recipient, "dave@cs.example.edu");
    let body = MessageParser::default()
        .parse(&mail.message)
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    // The help, and nothing of what the message said.
    assert!(
        body.contains("smtp 2026-11-01 2026-11-20") && !body.contains("please"),
        "{body}"
    );

    // Not local, and automatic mail: nothing at all.
    for (sender, m) in [
        (
            "mallory@evil.test",
            message("mallory@evil.test", "smtp", "", ""),
        ),
        (
            "alice@example.edu",
            message(
                "alice@example.edu",
                "smtp",
                "",
                "Auto-Submitted: auto-replied\r\n",
            ),
        ),
        (
            "alice@example.edu",
            message("alice@example.edu", "smtp", "", "Precedence: bulk\r\n"),
        ),
    ] {
        assert!(matches!(
            intake(&db.store, &c, sender, &m, now).await.unwrap(),
            Outcome::Ignored(_)
        ));
    }
    // A header naming someone else changes nothing: the report is for the
    // envelope sender's own mailbox.
    let m = message(
        "bob@example.edu",
        "smtp",
        "",
        "Reply-To: mallory@evil.test\r\n",
    );
    let Outcome::Requested(id) = intake(&db.store, &c, "erin@example.edu", &m, now)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        db.store.request(id).await.unwrap().unwrap().request.mailbox,
        "erin@example.edu"
    );
    let n = db.store.pending_requests(100).await.unwrap().len();
    assert_eq!(n, 4);
}

#[test]
fn the_request_command_reads_stdin_and_exits_zero() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        crate::support::config_text(&crate::support::database_url(dir.path(), "t"), 1000),
    )
    .unwrap();
    let run = |sender: &str, msg: &[u8]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "request",
                "--sender",
                sender,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(msg).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(
        "alice@example.edu",
        &message("alice@example.edu", "smtp", "", ""),
    );
    assert_eq!((code, out.trim()), (Some(0), "request 1 queued"));
    let (code, out) = run("x@evil.test", &message("x@evil.test", "smtp", "", ""));
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ignored"), "{out}");
    // Its own failure (here a database it cannot open) is temporary for
    // Postfix's pipe: 75, EX_TEMPFAIL, so the message is kept and retried.
    std::fs::write(
        &cfg,
        crate::support::config_text("sqlite:///proc/mailtrail-none/t.db?mode=rwc", 1000),
    )
    .unwrap();
    let (code, _) = run(
        "alice@example.edu",
        &message("alice@example.edu", "smtp", "", ""),
    );
    assert_eq!(code, Some(75));
}

#[tokio::test]
async fn following_survives_rotation_copytruncate_and_restart() {
    // The capture with RFC 3339 stamps. The files this test writes as it
    // goes are dated today, and the follower takes a new file's date when
    // it first reads from it, which a file written in steps cannot have
    // set beforehand: year-less stamps would take today's year.
    let capture = fixture("mail-rfc3339.log");
    // The whole fixture ingested at once: what following must end with.
    let clean = TestDb::new().await;
    clean.ingest(std::slice::from_ref(&capture)).await.unwrap();
    let want = clean.dump().await;

    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    let rotated = db.dir.path().join("mail.log.1");
    let all = std::fs::read_to_string(&capture).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let chunk = |a: usize, b: usize| {
        lines[a..b]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let n = lines.len();
    let append = |path: &Path, text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let settings = mailtrail::ingest::correlate::Settings::from_config(&db.config).unwrap();
    let paths = vec![log.clone()];
    let passes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = |stop: tokio::sync::oneshot::Receiver<()>| {
        let (store, settings, paths, passes) = (
            db.store.clone(),
            settings.clone(),
            paths.clone(),
            passes.clone(),
        );
        tokio::spawn(async move {
            mailtrail::ingest::follow(
                &store,
                settings,
                &paths,
                50,
                Duration::from_millis(20),
                move |_, _| {
                    passes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                },
                async {
                    let _ = stop.await;
                },
            )
            .await
        })
    };
    let settle = || async {
        let p = passes.load(std::sync::atomic::Ordering::SeqCst);
        wait_for("two passes", || {
            passes.load(std::sync::atomic::Ordering::SeqCst) >= p + 2
        })
        .await;
    };

    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = start(rx);
    // Half of a delivery's line: not read until its newline comes.
    let h = (n / 4..n)
        .find(|&i| lines[i].contains("postfix/smtp[") && lines[i].contains("status=sent"))
        .unwrap();
    append(&log, &chunk(0, h));
    let half = lines[h];
    append(&log, &half[..half.len() / 2]);
    settle().await;
    append(&log, &format!("{}\n", &half[half.len() / 2..]));
    append(&log, &chunk(h + 1, n / 2));
    // Rotation by rename, with lines the follower has not read yet.
    append(&log, &chunk(n / 2, n / 2 + 10));
    std::fs::rename(&log, &rotated).unwrap();
    append(&log, &chunk(n / 2 + 10, 3 * n / 4));
    settle().await;
    // A restart.
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    append(&log, &chunk(3 * n / 4, 3 * n / 4 + 5));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = start(rx);
    settle().await;
    // copytruncate, at once after lines the follower has not read: the
    // file is copied to .1 and emptied in place, and written again.
    append(&log, &chunk(3 * n / 4 + 5, 3 * n / 4 + 15));
    std::fs::copy(&log, &rotated).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append(&log, &chunk(3 * n / 4 + 15, n));
    // What waits for later lines (a lifecycle is closed a little after
    // `removed`, an `expired` settled a little after it is read) is
    // settled when the log moves on: a line two minutes later.
    let last = lines[n - 1];
    let stamp = chrono::DateTime::parse_from_rfc3339(last.split(' ').next().unwrap()).unwrap()
        + chrono::Duration::minutes(2);
    let stamp = stamp.to_rfc3339();
    append(
        &log,
        &format!("{stamp} mail postfix/anvil[1]: statistics: max cache size 1 at {stamp}\n"),
    );
    // The live file is read once its copy has been left alone for a
    // second (the copy's tail first): wait for the rows, within a limit.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while db.dump().await != want && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle().await;
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();

    assert_eq!(db.dump().await, want, "the same rows as one clean ingest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_arriving_together_cannot_pass_a_limit_together() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cfg = config(
        &db,
        &log,
        free_port().await,
        1,
        "max_per_mailbox_per_day = 2\nmax_per_client_per_hour = 100\n",
    );
    let day = today(&cfg).to_string();
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();
    // Twelve forms filled in first, then posted at once.
    let mut forms = Vec::new();
    for _ in 0..12 {
        forms.push(filled_form(&c, &svc.base, &db.store).await);
    }
    let posts: Vec<_> = forms
        .into_iter()
        .map(|(id, code)| {
            let (c, base, day) = (c.clone(), svc.base.clone(), day.clone());
            tokio::spawn(async move {
                let fields = [
                    ("mailbox", "bob"),
                    ("kind", "smtp"),
                    ("from", day.as_str()),
                    ("lang", "en"),
                    ("challenge", id.as_str()),
                    ("code", code.as_str()),
                ];
                post(&c, &base, &fields).await.0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [[200; 2].as_slice(), &[429; 10]].concat());
    let stored = db
        .store
        .requests_for("bob@example.edu", 0, 100)
        .await
        .unwrap();
    assert_eq!(stored, 2);
    svc.stop().await;
}

/// Posts `fields` as they are (no proof of work added), from `client`
/// when given (an `X-Forwarded-For` the service believes of loopback).
async fn post_raw(
    c: &reqwest::Client,
    base: &str,
    client: Option<&str>,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let mut r = c.post(format!("{base}/request")).form(fields);
    if let Some(ip) = client {
        r = r.header("X-Forwarded-For", ip);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn request_count(db: &TestDb) -> i64 {
    crate::on_any_pool!(&db.store, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM requests")
        .fetch_one(p)
        .await
        .unwrap())
}

#[tokio::test]
async fn a_solved_code_is_accepted_once_whatever_its_spelling() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    // Limits far above the posts made: only the code can refuse them.
    let cfg = config(
        &db,
        &log,
        free_port().await,
        1,
        "max_per_mailbox_per_day = 1000\nmax_per_client_per_hour = 1000\nmax_guesses_per_client_per_hour = 1000\nmax_guesses_per_mailbox_per_hour = 1000\n",
    );
    let day = today(&cfg).to_string();
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let pow = pow_of(&id);
    // The red team's case: the nonce's letters in the other case, one by
    // one and all at once; then padding, a sign, other digits.
    let mut spellings = vec![id.to_uppercase(), id.clone()];
    for (i, ch) in id[..16]
        .char_indices()
        .filter(|(_, ch)| ch.is_ascii_alphabetic())
    {
        spellings.push(format!(
            "{}{}{}",
            &id[..i],
            ch.to_ascii_uppercase(),
            &id[i + 1..]
        ));
    }
    spellings.push(format!("{}{}", id[..16].to_uppercase(), &id[16..]));
    spellings.push(format!("  {id}\t"));
    spellings.push(format!("0{id}"));
    spellings.push(format!("{id}00"));
    if let Some(i) = (0..id.len()).step_by(2).find(|&i| &id[i..i + 1] == "0") {
        spellings.push(format!("{}+{}", &id[..i], &id[i + 1..]));
    }
    spellings.push(id.replacen(|ch: char| ch.is_ascii_digit(), "\u{ff11}", 1));
    let mut accepted = Vec::new();
    for s in &spellings {
        let (st, page) = post_raw(
            &c,
            &svc.base,
            None,
            &[
                ("mailbox", "alice"),
                ("kind", "smtp"),
                ("from", &day),
                ("lang", "en"),
                ("challenge", s),
                ("code", &code),
                ("pow", &pow),
            ],
        )
        .await;
        if st == 200 {
            accepted.push(s.clone());
        } else {
            assert_eq!(st, 422, "{s:?}: {page}");
            assert!(page.contains("verification code is wrong"), "{page}");
        }
    }
    // Surrounding whitespace is trimmed, so that spelling is the token
    // itself, posted after it was used.
    assert_eq!(
        accepted,
        std::slice::from_ref(&id),
        "of {} spellings",
        spellings.len()
    );
    assert_eq!(request_count(&db).await, 1);
    svc.stop().await;
}

#[tokio::test]
async fn guess_floods_get_429_per_token_address_and_mailbox_and_across_a_restart() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let port = free_port().await;
    let cfg = config(
        &db,
        &log,
        port,
        1,
        "allowed_networks = [\"127.0.0.0/8\", \"192.0.2.0/24\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\nmax_per_client_per_hour = 100\nmax_per_mailbox_per_day = 100\nmax_guesses_per_client_per_hour = 5\nmax_guesses_per_mailbox_per_hour = 3\n",
    );
    let day = today(&cfg).to_string();
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();
    let base = svc.base.clone();
    let fields = |mailbox: &'static str, id: &str, code: &str| {
        vec![
            ("mailbox", mailbox.to_owned()),
            ("kind", "smtp".to_owned()),
            ("from", day.clone()),
            ("lang", "en".to_owned()),
            ("challenge", id.to_owned()),
            ("code", code.to_owned()),
            ("pow", pow_of(id)),
        ]
    };
    let send = |client: &'static str, f: Vec<(&'static str, String)>| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_raw(&c, &base, Some(client), &f).await
        }
    };
    let wrong = |code: &str| {
        let d = (code.as_bytes()[0] - b'0' + 1) % 10;
        format!("{d}{}", &code[1..])
    };

    // Per token: one guess. A wrong code uses it up; the right code after
    // it is refused.
    let (id, code) = filled_form(&c, &base, &db.store).await;
    let (st, page) = send("192.0.2.50", fields("zoe", &id, &wrong(&code))).await;
    assert_eq!(st, 422, "{page}");
    let (st, page) = send("192.0.2.51", fields("yann", &id, &code)).await;
    assert_eq!(st, 422, "{page}");
    assert!(page.contains("verification code is wrong"), "{page}");

    // Per mailbox: three failed guesses for bob, each from another address,
    // and then even the right code for bob is refused, from anywhere.
    for (n, client) in ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
        .into_iter()
        .enumerate()
    {
        let (id, code) = filled_form(&c, &base, &db.store).await;
        let (st, page) = send(client, fields("bob", &id, &wrong(&code))).await;
        assert_eq!(st, 422, "guess {n}: {page}");
    }
    let (id, code) = filled_form(&c, &base, &db.store).await;
    let (st, page) = send("192.0.2.13", fields("Bob@Example.edu", &id, &code)).await;
    assert_eq!(st, 429, "{page}");
    assert!(
        page.contains("Too many failed verification attempts for bob@example.edu"),
        "{page}"
    );
    // Another mailbox from that address is still served.
    let (id, code) = filled_form(&c, &base, &db.store).await;
    assert_eq!(send("192.0.2.13", fields("carol", &id, &code)).await.0, 200);

    // Per address: five failed guesses from one address, each for another
    // mailbox (and one with no token at all), then the right code for a
    // sixth is refused; another address is still served.
    for mailbox in ["m1", "m2", "m3", "m4"] {
        let (id, code) = filled_form(&c, &base, &db.store).await;
        let (st, page) = send("192.0.2.20", fields(mailbox, &id, &wrong(&code))).await;
        assert_eq!(st, 422, "{page}");
    }
    let (st, _) = send("192.0.2.20", fields("m5", "nonsense", "12345")).await;
    assert_eq!(st, 422);
    let (id, code) = filled_form(&c, &base, &db.store).await;
    let (st, page) = send("192.0.2.20", fields("dave", &id, &code)).await;
    assert_eq!(st, 429, "{page}");
    assert!(
        page.contains("Too many failed verification attempts from your address (192.0.2.20)"),
        "{page}"
    );
    let (id, code) = filled_form(&c, &base, &db.store).await;
    assert_eq!(send("192.0.2.21", fields("dave", &id, &code)).await.0, 200);

    // The counts are in the database: a restarted service still refuses.
    svc.stop().await;
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let f: Vec<(&str, String)> = fields("erin", &id, &code);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (st, page) = post_raw(&c, &svc.base, Some("192.0.2.20"), &f).await;
    assert_eq!(st, 429, "{page}");
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let f: Vec<(&str, String)> = fields("bob", &id, &code);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (st, page) = post_raw(&c, &svc.base, Some("192.0.2.30"), &f).await;
    assert_eq!(st, 429, "{page}");
    svc.stop().await;
    let who: Vec<String> = crate::on_any_pool!(&db.store, p => sqlx::query_scalar("SELECT mailbox FROM requests ORDER BY id")
        .fetch_all(p)
        .await
        .unwrap());
    assert_eq!(who, ["carol@example.edu", "dave@example.edu"]);
}

#[tokio::test]
async fn the_proof_of_work_is_required_unless_the_site_accepts_the_code_alone() {
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cfg = config(&db, &log, free_port().await, 1, "");
    let day = today(&cfg).to_string();
    let svc = Service::start(cfg.clone(), db.store.clone()).await;
    let c = reqwest::Client::new();

    // The page: its script and style run by a nonce of the policy, and
    // nothing else; without JavaScript it says why it cannot be sent.
    let r = c
        .get(format!("{}/?lang=en", svc.base))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    let nonce = csp
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or_else(|| panic!("{csp}"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        html.contains(&format!("<script nonce=\"{nonce}\">")),
        "{html}"
    );
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(&format!("data-pow-bits=\"{POW_BITS}\"")));
    assert!(html.contains("<noscript>") && html.contains("needs JavaScript"));
    let again = c.get(format!("{}/", svc.base)).send().await.unwrap();
    assert_ne!(
        again.headers()["content-security-policy"].to_str().unwrap(),
        csp,
        "a fresh nonce for each page"
    );

    let fields = |id: &str, code: &str, pow: &str| {
        vec![
            ("mailbox".to_owned(), "alice".to_owned()),
            ("kind".to_owned(), "smtp".to_owned()),
            ("from".to_owned(), day.clone()),
            ("lang".to_owned(), "en".to_owned()),
            ("challenge".to_owned(), id.to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("pow".to_owned(), pow.to_owned()),
        ]
    };
    let send = |base: String, f: Vec<(String, String)>| {
        let c = c.clone();
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            post_raw(&c, &base, None, &f).await
        }
    };
    // The right code without a proof of work, and with one found for
    // another token: refused, saying why.
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let (st, page) = send(svc.base.clone(), fields(&id, &code, "")).await;
    assert_eq!(st, 422, "{page}");
    assert!(
        page.contains("did not finish the verification step"),
        "{page}"
    );
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let other = loop {
        let (o, _) = filled_form(&c, &svc.base, &db.store).await;
        let answer = pow_of(&o);
        if !mailtrail::requests::captcha::pow_ok(&id, &answer, POW_BITS) {
            break answer;
        }
    };
    let (st, page) = send(svc.base.clone(), fields(&id, &code, &other)).await;
    assert_eq!(st, 422, "{page}");
    assert!(
        page.contains("did not finish the verification step"),
        "{page}"
    );
    assert_eq!(request_count(&db).await, 0);
    // With its own proof of work: accepted.
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let (st, page) = send(svc.base.clone(), fields(&id, &code, &pow_of(&id))).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(request_count(&db).await, 1);
    svc.stop().await;

    // A site that accepts the code alone: the form without JavaScript.
    let cfg = config(
        &db,
        &log,
        free_port().await,
        1,
        "code_alone_accepted = true\n",
    );
    let svc = Service::start(cfg, db.store.clone()).await;
    let html = c
        .get(format!("{}/?lang=en", svc.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<noscript>"), "{html}");
    let (id, code) = filled_form(&c, &svc.base, &db.store).await;
    let (st, page) = send(svc.base.clone(), fields(&id, &code, "")).await;
    assert_eq!(st, 200, "{page}");
    // Still one code, one request.
    let (st, _) = send(svc.base.clone(), fields(&id, &code, "")).await;
    assert_eq!(st, 422);
    assert_eq!(request_count(&db).await, 2);
    svc.stop().await;
}
