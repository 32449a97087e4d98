//! The form in a real browser: headless Chromium driven through
//! ChromeDriver (WebDriver over HTTP), on a phone-sized window, from the
//! form to the report arriving at the SMTP server, the page finding the
//! proof of work under its Content-Security-Policy at the default
//! difficulty. Screenshots are kept in `target/browser/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Ignored (with the
//! reason, in `cargo test`'s summary) unless `MAILTRAIL_BROWSER_TESTS=1`
//! was set when the tests were built (see build.rs); `.ci/run` installs
//! them and sets it, and then their absence is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::smtp_server::SmtpServer;
use crate::support::{Capture, TestDb, fixture};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    /// Chromium's profile, removed after the browser has quit.
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Driver {
            child,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    /// Ends the session, which closes Chromium; killing only ChromeDriver
    /// (as dropping the driver does) would leave the browser running.
    async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method.clone(), url);
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        if r["value"].get("error").is_some() {
            panic!("webdriver {path}: {r}");
        }
        r["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    async fn screenshot(&self, path: &Path) {
        use base64_png::decode;
        let v = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, decode(v.as_str().unwrap())).unwrap();
    }
}

/// Base64 as WebDriver sends screenshots.
mod base64_png {
    pub fn decode(s: &str) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let (mut buf, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()) {
            buf = (buf << 6) | A.iter().position(|&x| x == c).unwrap() as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
            }
        }
        out
    }
}

fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser")
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_browser),
    ignore = "needs chromium and chromium-driver, and MAILTRAIL_BROWSER_TESTS=1"
)]
async fn a_person_fills_the_form_in_chromium_on_a_phone_and_gets_the_report() {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "MAILTRAIL_BROWSER_TESTS is set but {CHROMEDRIVER} or {CHROMIUM} is missing"
    );
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::copy(fixture("mail.log"), &log).unwrap();
    Capture::Postfix.date(&log);
    let server = SmtpServer::start(None).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = db.config_text().replace(
        "[ingest]",
        &format!("[ingest]\npaths = [\"{}\"]", log.display()),
    );
    let cfg = mailtrail::config::Config::from_toml(&format!(
        "{text}\n[smtp]\nport = {}\nfrom = \"mailtrail@example.edu\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n",
        server.port
    ))
    .unwrap();
    let tz = cfg.tz().unwrap();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let svc = tokio::spawn(mailtrail::serve::run(cfg, db.store.clone(), async {
        let _ = stop_rx.await;
    }));
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let d = Driver::start().await;
    d.post("/window/rect", json!({"width": 390, "height": 844}))
        .await;
    d.post("/url", json!({"url": format!("{base}/?lang=en")}))
        .await;
    d.screenshot(&shots().join("form-phone.png")).await;
    // The page fits the phone's width: nothing to scroll sideways.
    let overflow = d
        .script(
            "return document.documentElement.scrollWidth - window.innerWidth",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow {overflow}"
    );
    // The code image loaded.
    let loaded = d
        .script(
            "const i = document.querySelector('img.code'); return i.complete && i.naturalWidth > 0",
            json!([]),
        )
        .await;
    assert_eq!(loaded, json!(true));

    d.type_into("#mailbox", "alice@example.edu").await;
    let access = d.element("input[name=kind][value=access]").await;
    d.post(&format!("/element/{access}/click"), json!({})).await;
    d.script(
        "document.getElementById('from').value = arguments[0]",
        json!([today.to_string()]),
    )
    .await;
    let lang = d.element("#lang option[value=en]").await;
    d.post(&format!("/element/{lang}/click"), json!({})).await;
    // The code sealed in this page's challenge, read with the server's key.
    let challenge = d
        .script(
            "return document.querySelector('input[name=challenge]').value",
            json!([]),
        )
        .await;
    let code = crate::web::code_of(&db.store, challenge.as_str().unwrap()).await;
    d.type_into("#code", &code).await;
    d.screenshot(&shots().join("form-filled.png")).await;
    // Sent at once, whether or not the page has found its proof of work
    // yet: it sends when it has. The service requires one (the default),
    // so the request is accepted only with the page's own answer.
    let submit = d.element("#submit").await;
    d.post(&format!("/element/{submit}/click"), json!({})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let message = loop {
        let m = d
            .script(
                "const m = document.getElementById('message'); return m ? m.textContent : null",
                json!([]),
            )
            .await;
        if !m.is_null() {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page did not send the form"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    d.screenshot(&shots().join("accepted.png")).await;
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("will be mailed to alice@example.edu"),
        "{message}"
    );

    for _ in 0..100 {
        if !server.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["alice@example.edu"]);
    let m = mail_parser::MessageParser::default()
        .parse(&got[0].data)
        .unwrap();
    assert!(m.subject().unwrap().contains("Mailbox access history"));

    // The page's own answer, in the other language: the first number
    // whose hash has the bits, exactly as the server counts them.
    d.post("/url", json!({"url": format!("{base}/?lang=zh-TW")}))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (challenge, answer) = loop {
        let v = d
            .script(
                "return [document.querySelector('input[name=challenge]').value, document.getElementById('pow').value]",
                json!([]),
            )
            .await;
        let (c, a) = (v[0].as_str().unwrap(), v[1].as_str().unwrap());
        if !a.is_empty() {
            break (c.to_owned(), a.to_owned());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page found no proof of work"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bits = mailtrail::config::WebConfig::default().proof_of_work_bits;
    assert_eq!(
        answer,
        mailtrail::requests::captcha::solve(&challenge, bits),
        "{challenge}"
    );
    d.quit().await;
    let _ = stop_tx.send(());
    svc.await.unwrap().unwrap();
    assert!(shots().join("accepted.png").exists());
}

/// What the measuring script finds on a page: how far it scrolls sideways,
/// the cells of data tables narrower than 20 characters of their own font,
/// numbers included (and number cells that spill), and how many rows are
/// laid out as tables and as stacked cards.
const MEASURE: &str = r#"
const ctx = document.createElement('canvas').getContext('2d');
const twenty = (el) => { ctx.font = getComputedStyle(el).font; return ctx.measureText('0'.repeat(20)).width; };
const narrow = [];
let cells = 0, cards = 0;
for (const c of document.querySelectorAll('table.rows th, table.rows td')) {
  const style = getComputedStyle(c);
  if (style.display === 'none' || c.getClientRects().length === 0) continue;
  if (style.display !== 'table-cell') { cards++; continue; }
  cells++;
  const w = c.getBoundingClientRect().width;
  if (w + 0.5 < twenty(c)) {
    narrow.push(c.tagName + ' ' + c.textContent.slice(0, 40) + ': ' + w.toFixed(0) + ' < ' + twenty(c).toFixed(0));
  }
  if (c.classList.contains('n') && c.scrollWidth > c.clientWidth + 1) {
    narrow.push('number ' + c.textContent.slice(0, 40) + ' spills: ' + w.toFixed(0));
  }
}
for (const c of document.querySelectorAll('table.rows tr.quiet td')) {
  const t = c.closest('table');
  if (getComputedStyle(c).display === 'table-cell' && c.getBoundingClientRect().width < t.getBoundingClientRect().width - 4)
    narrow.push('a quiet line does not span its table: ' + c.textContent.slice(0, 40));
}
return { overflow: document.documentElement.scrollWidth - window.innerWidth, narrow, cells, cards, width: window.innerWidth };
"#;

/// Both reports in both languages, at two laptop widths and a phone's:
/// nothing scrolls sideways; at the laptop widths every column of every
/// table, numbers included, is at least 20 characters wide; on the phone the rows are
/// stacked cards. The pages are the attachments mailtrail mails, opened
/// from files; screenshots are kept in `target/browser/`.
#[tokio::test]
#[cfg_attr(
    not(mailtrail_browser),
    ignore = "needs chromium and chromium-driver, and MAILTRAIL_BROWSER_TESTS=1"
)]
async fn reports_fit_laptops_and_phones_in_both_languages() {
    use mailtrail::config::Lang;
    use mailtrail::domain::Mailbox;
    use mailtrail::report::{self, Channel, Data, Kind, Limits, Notes, Requester, Spec};
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "MAILTRAIL_BROWSER_TESTS is set but {CHROMEDRIVER} or {CHROMIUM} is missing"
    );
    let db = TestDb::new().await;
    db.ingest(&[
        fixture("mail.log"),
        crate::support::dovecot("mail.log"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/received/mail-rfc3339.log"),
    ])
    .await
    .unwrap();
    let tz = db.config.tz().unwrap();
    let now = chrono::Utc::now();
    let notes = Notes {
        help_address: Some("help@example.edu".into()),
        help_url: Some("https://help.example.edu/mail/records".into()),
        ingested_us: Some(now.timestamp_micros() - 180_000_000),
    };
    let dir = shots().join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pages = Vec::new();
    for kind in [Kind::Smtp, Kind::Access, Kind::Received] {
        for lang in [Lang::En, Lang::ZhTw] {
            let spec = Spec {
                mailbox: Mailbox::parse("alice@example.edu", "example.edu").unwrap(),
                kind,
                range: crate::support::month(),
                lang,
                requester: Requester {
                    channel: Channel::Web,
                    client_ip: "192.0.2.7".into(),
                    at: now.timestamp(),
                },
            };
            let mut data = Data::load(&db.store, &spec, tz).await.unwrap();
            // With each failure's explanation, as reports are mailed.
            let classifier = mailtrail::replies::Classifier::shared(&db.config.replies).unwrap();
            data.explain(&classifier, lang);
            let render = |data: &Data| {
                let r = report::render_noted(
                    spec.clone(),
                    data,
                    Limits::from_config(&db.config),
                    tz,
                    now,
                    &notes,
                )
                .unwrap();
                assert_eq!(r.attachment.content_type, "text/html; charset=utf-8");
                r.attachment.bytes
            };
            let name = format!("{}-{}", kind.as_str(), lang.as_str());
            let path = dir.join(format!("{name}.html"));
            std::fs::write(&path, render(&data)).unwrap();
            pages.push((name, path));
            // The widest access report: logins by all four protocols, each
            // a column of its own.
            if let Data::Access(h) = &mut data {
                for d in &mut h.days {
                    for p in ["imap", "pop3", "submission", "managesieve"] {
                        d.logins.entry(p).or_insert(0);
                    }
                }
                let name = format!("access-all-protocols-{}", lang.as_str());
                let path = dir.join(format!("{name}.html"));
                std::fs::write(&path, render(&data)).unwrap();
                pages.push((name, path));
            }
        }
    }

    let d = Driver::start().await;
    let mut failures = Vec::new();
    for (name, path) in &pages {
        for width in [1280, 1366, 390] {
            d.post("/window/rect", json!({"width": width, "height": 900}))
                .await;
            d.post("/url", json!({"url": format!("file://{}", path.display())}))
                .await;
            let m = d.script(MEASURE, json!([])).await;
            d.screenshot(&shots().join(format!("report-{name}-{width}.png")))
                .await;
            d.script(
                "const t = document.querySelector('table.counts'); if (t) t.scrollIntoView();",
                json!([]),
            )
            .await;
            d.screenshot(&shots().join(format!("report-{name}-{width}-days.png")))
                .await;
            d.script(
                "const t = document.querySelector('table.msgs, table.events, table.received'); if (t) t.scrollIntoView();",
                json!([]),
            )
            .await;
            d.screenshot(&shots().join(format!("report-{name}-{width}-rows.png")))
                .await;
            let overflow = m["overflow"].as_f64().unwrap();
            if overflow > 0.0 {
                failures.push(format!(
                    "{name} at {width}px scrolls sideways by {overflow}px"
                ));
            }
            if width >= 1280 {
                if m["cells"].as_u64().unwrap() == 0 || m["cards"].as_u64().unwrap() > 0 {
                    failures.push(format!(
                        "{name} at {width}px is not laid out as tables: {m}"
                    ));
                }
                for n in m["narrow"].as_array().unwrap() {
                    failures.push(format!("{name} at {width}px: narrow cell {n}"));
                }
            } else if m["cells"].as_u64().unwrap() > 0 || m["cards"].as_u64().unwrap() == 0 {
                failures.push(format!(
                    "{name} at {width}px: rows are not stacked cards: {m}"
                ));
            }
        }
    }
    d.quit().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
