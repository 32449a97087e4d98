//! Reports as PDF: the text a reader extracts (Debian's `pdftotext`) holds
//! the report's headings and rows in both languages, Chinese included,
//! and the PDF reaches the owner's mailbox when the site asks for it.
//! A font that is missing or has no Chinese is a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailtrail::config::{Config, Lang, PdfMode};
use mailtrail::domain::Mailbox;
use mailtrail::report::pdf::PdfFont;
use mailtrail::report::{self, Channel, Data, Kind, Limits, Requester, Spec};

use crate::smtp_server::SmtpServer;
use crate::support::{TestDb, dovecot, fixture};

const FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";

fn spec(kind: Kind, lang: Lang) -> Spec {
    Spec {
        mailbox: Mailbox::parse("alice@example.edu", "example.edu").unwrap(),
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

fn font() -> PdfFont {
    assert!(
        Path::new(FONT).exists() && which("pdftotext"),
        "MAILTRAIL_PDF_TESTS is set but {FONT} (fonts-wqy-zenhei) or pdftotext (poppler-utils) is missing"
    );
    PdfFont::cached(Path::new(FONT)).unwrap()
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// The text of a PDF as a reader extracts it, without any whitespace
/// (cells wrap, and pdftotext spaces glyphs as it sees fit).
fn pdf_text(dir: &Path, bytes: &[u8]) -> String {
    assert!(bytes.starts_with(b"%PDF-"), "a PDF");
    let path: PathBuf = dir.join("report.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("pdftotext")
        .arg("-enc")
        .arg("UTF-8")
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    squeeze(&String::from_utf8(out.stdout).unwrap())
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The text of the HTML element that starts at each `<tag` (first line of
/// the element only), unescaped as a reader sees it.
fn texts_of(html: &str, tag: &str) -> Vec<String> {
    html.split(&format!("<{tag}"))
        .skip(1)
        // `<th>` or `<th class=...>`, not `<thead>`.
        .filter(|p| p.starts_with(['>', ' ']))
        .filter_map(|p| p.split_once('>').map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(&format!("</{tag}>")).next())
        .map(|t| {
            t.replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#x27;", "'")
                .replace("&#x2f;", "/")
        })
        .collect()
}

/// The text of an HTML fragment without its tags, unescaped.
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        rest = rest[i..].split_once('>').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn the_pdf_holds_the_htmls_headings_and_rows_in_both_languages() {
    let font = font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log"), dovecot("mail.log")])
        .await
        .unwrap();
    let tz = db.config.tz().unwrap();
    let limits = Limits::from_config(&db.config);
    for kind in [Kind::Smtp, Kind::Access] {
        for lang in [Lang::En, Lang::ZhTw] {
            let s = spec(kind, lang);
            let data = Data::load(&db.store, &s, tz).await.unwrap();
            let r =
                report::render_with_pdf(s, &data, limits, tz, chrono::Utc::now(), &font).unwrap();
            let pdf = r.pdf.as_ref().expect("a PDF");
            assert_eq!(pdf.content_type, "application/pdf");
            assert!(pdf.filename.ends_with(".pdf"));
            let text = pdf_text(db.dir.path(), &pdf.bytes);
            let html = String::from_utf8(r.attachment.bytes.clone()).unwrap();
            // The title and the tables' headings, as the HTML words them.
            let mut headings = texts_of(&html, "h1");
            headings.extend(
                texts_of(&html, "h2")
                    .into_iter()
                    .filter(|h| !h.is_empty())
                    .take(1),
            );
            let details = texts_of(&html, "h2")
                .into_iter()
                .find(|h| h.ends_with(')'))
                .expect("the details' heading");
            headings.push(details);
            let th = texts_of(&html, "th");
            headings.extend(th.iter().take(3).cloned());
            for h in &headings {
                assert!(
                    text.contains(&squeeze(h)),
                    "{kind:?} {lang:?}: {h:?} in\n{text}"
                );
            }
            if lang == Lang::ZhTw {
                let want = match kind {
                    Kind::Smtp => "每日統計",
                    Kind::Access => "每日摘要",
                };
                assert!(text.contains(want), "{want} in\n{text}");
            }
            // Every row's values that fit their cell whole.
            let tds = texts_of(&html, "td");
            let mut checked = 0;
            match &data {
                Data::Smtp(h) => {
                    // Times as the HTML shows them (`2026/12/07 12:51:43`);
                    // the queue ID (a tooltip there) and the client address
                    // (in the message's line) anywhere in it.
                    let shown = tds.join("\n").replace("&#x2f;", "/");
                    for d in &h.details {
                        let time = d.time[..19].replace('-', "/").replace('T', " ");
                        assert!(shown.contains(&time), "{time} is in the HTML");
                        assert!(text.contains(&squeeze(&time)), "{time} in the PDF");
                        checked += 1;
                        for v in [d.queue_id.as_ref(), d.sender_ip.as_ref()]
                            .into_iter()
                            .flatten()
                        {
                            assert!(html.contains(v.as_str()), "{v} is in the HTML");
                            assert!(text.contains(&squeeze(v)), "{v} in the PDF");
                            checked += 1;
                        }
                    }
                    for d in &h.days {
                        assert!(text.contains(&d.date), "{} in the PDF", d.date);
                    }
                }
                Data::Access(h) => {
                    // Every cell of every event as the HTML words it: the
                    // row number and time, the event and its protocol, the
                    // details in the report's language (POP3 counts as
                    // NTHU's, sizes in KB and MB, Dovecot's reasons).
                    let rows: Vec<&str> = html
                        .split("<tr class=\"ev-")
                        .skip(1)
                        .map(|r| r.split("</tr>").next().unwrap())
                        .collect();
                    assert_eq!(rows.len(), h.events.len(), "{kind:?} {lang:?}");
                    for row in rows {
                        for cell in texts_of(row, "td") {
                            let cell = squeeze(&strip_tags(&cell));
                            assert!(
                                text.contains(&cell),
                                "{kind:?} {lang:?}: the cell {cell:?} in\n{text}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
            // What the HTML explains, the PDF explains in the same words:
            // the tables' titles, what each column means, the legend of
            // the events and the notes on the days.
            let mut words = texts_of(&html, "h3");
            words.extend(texts_of(&html, "dt"));
            words.extend(texts_of(&html, "dd"));
            words.extend(
                html.split("<p class=\"legend\">")
                    .nth(1)
                    .map(|l| texts_of(l.split("</p>").next().unwrap(), "span"))
                    .unwrap_or_default(),
            );
            for class in ["note", "warn"] {
                words.extend(
                    html.split(&format!("<p class=\"{class}\">"))
                        .skip(1)
                        .map(|p| p.split("</p>").next().unwrap().to_owned()),
                );
            }
            assert!(words.len() > 5, "{kind:?} {lang:?}: {words:?}");
            for w in &words {
                let w = squeeze(&strip_tags(w));
                assert!(text.contains(&w), "{kind:?} {lang:?}: {w:?} in\n{text}");
                checked += 1;
            }
            assert!(checked > 20, "{kind:?}: {checked} values checked");
        }
    }
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn a_large_report_is_paginated_and_every_row_is_in_its_pdf() {
    let font = font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let s = spec(Kind::Smtp, Lang::ZhTw);
    let Data::Smtp(mut h) = Data::load(&db.store, &s, tz).await.unwrap() else {
        unreachable!()
    };
    // Many rows: the capture's, again and again, each with its own queue ID.
    let one = h.details.clone();
    h.details = (0..600)
        .map(|i| {
            let mut d = one[i % one.len()].clone();
            d.queue_id = Some(format!("Q{i:05}X"));
            d
        })
        .collect();
    let data = Data::Smtp(h);
    let limits = Limits::from_config(&db.config);
    let r = report::render_with_pdf(s, &data, limits, tz, chrono::Utc::now(), &font).unwrap();
    let pdf = r.pdf.unwrap();
    let text = pdf_text(db.dir.path(), &pdf.bytes);
    for i in 0..600 {
        assert!(text.contains(&format!("Q{i:05}X")), "row {i}");
    }
    let info = Command::new("pdfinfo")
        .arg(db.dir.path().join("report.pdf"))
        .output()
        .unwrap();
    let info = String::from_utf8(info.stdout).unwrap();
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pages > 5, "{pages} pages");
    // Only the glyphs used are embedded, not the 17 MB font.
    assert!(pdf.bytes.len() < 2_000_000, "{} bytes", pdf.bytes.len());
    // The details' header is on every page from the first of the details.
    let out = Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(db.dir.path().join("report.pdf"))
        .arg("-")
        .output()
        .unwrap();
    let pages_text: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\u{c}')
        .map(squeeze)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pages_text.len(), pages);
    let first = pages_text
        .iter()
        .position(|p| p.contains("佇列編號"))
        .expect("the details' header");
    assert!(first < 3, "the details start on page {}", first + 1);
    for (i, p) in pages_text.iter().enumerate().skip(first) {
        assert!(p.contains("佇列編號"), "page {} has the header", i + 1);
    }
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn the_pdf_is_mailed_to_the_owner_when_configured() {
    font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let server = SmtpServer::start(None).await;
    let mut c = db.config.clone();
    c.smtp.host = "127.0.0.1".into();
    c.smtp.port = server.port;
    c.smtp.from = "mailtrail@example.edu".into();
    c.smtp.timeout_secs = 10;
    c.report.pdf = PdfMode::Always;
    c.validate().unwrap();
    let s = spec(Kind::Smtp, Lang::ZhTw);
    let id = mailtrail::requests::submit(&db.store, &s, None)
        .await
        .unwrap();
    let row = db.store.request(id).await.unwrap().unwrap();
    mailtrail::requests::process(&db.store, &c, &row)
        .await
        .unwrap();
    let mailer = mailtrail::mail::Mailer::new(&c.smtp).unwrap();
    mailtrail::mail::run_once(&db.store, &c, &mailer)
        .await
        .unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["alice@example.edu"]);
    let msg = mail_parser::MessageParser::default()
        .parse(&got[0].data)
        .unwrap();
    use mail_parser::MimeHeaders;
    let pdf = msg
        .attachments()
        .find(|a| a.attachment_name().is_some_and(|n| n.ends_with(".pdf")))
        .expect("a PDF attached");
    let text = pdf_text(db.dir.path(), pdf.contents());
    assert!(text.contains("SMTP寄信紀錄"), "{text}");
    assert!(text.contains("alice@example.edu"));
}

#[test]
fn a_missing_font_or_one_without_chinese_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.ttc");
    let e = PdfFont::load(&missing).unwrap_err().to_string();
    assert!(
        e.contains("none.ttc") && e.contains("fonts-wqy-zenhei"),
        "{e}"
    );
    let junk = dir.path().join("junk.ttf");
    std::fs::write(&junk, b"not a font at all").unwrap();
    let e = PdfFont::load(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.ttf") && e.contains("not a TrueType"),
        "{e}"
    );
    // The config says so at load, before anything runs.
    let base = crate::support::config_text("sqlite://unused.sqlite", 1000);
    let text = if base.contains("[report]") {
        base.replace(
            "[report]",
            &format!(
                "[report]\npdf = \"always\"\npdf_font = \"{}\"",
                missing.display()
            ),
        )
    } else {
        format!(
            "{base}\n[report]\npdf = \"always\"\npdf_font = \"{}\"\n",
            missing.display()
        )
    };
    let e = format!("{:#}", Config::from_toml(&text).unwrap_err());
    assert!(e.contains("report.pdf_font"), "{e}");
    let e = format!(
        "{:#}",
        Config::from_toml(&text.replace("\"always\"", "\"sometimes\"")).unwrap_err()
    );
    assert!(e.contains("sometimes"), "{e}");
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn the_form_offers_the_pdf_and_mails_it_when_ticked() {
    use crate::web::{Service, config, filled_form, free_port, post, today, wait_for};
    font();
    let db = TestDb::new().await;
    let log = db.dir.path().join("mail.log");
    std::fs::copy(fixture("mail.log"), &log).unwrap();
    crate::support::Capture::Postfix.date(&log);
    let server = SmtpServer::start(None).await;
    let mut cfg = config(&db, &log, free_port().await, server.port, "");
    cfg.report.pdf = PdfMode::OnRequest;
    let t = today(&cfg);
    let svc = Service::start(cfg, db.store.clone()).await;
    let c = reqwest::Client::new();
    for (n, tick) in [(1, true), (2, false)] {
        let (id, code) = filled_form(&c, &svc.base, &db.store).await;
        let (from, to) = (t.pred().to_string(), t.to_string());
        let mut fields = vec![
            ("mailbox", "alice"),
            ("kind", "smtp"),
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("lang", "zh-TW"),
            ("challenge", id.as_str()),
            ("code", code.as_str()),
        ];
        if tick {
            fields.push(("pdf", "1"));
        }
        let (status, page) = post(&c, &svc.base, &fields).await;
        assert_eq!(status, 200, "{page}");
        wait_for("the report to arrive", || server.received().len() == n).await;
        let got = &server.received()[n - 1];
        assert_eq!(got.rcpt_to, ["alice@example.edu"]);
        let msg = mail_parser::MessageParser::default()
            .parse(&got.data)
            .unwrap();
        use mail_parser::MimeHeaders;
        let pdf = msg
            .attachments()
            .find(|a| a.attachment_name().is_some_and(|n| n.ends_with(".pdf")));
        assert_eq!(pdf.is_some(), tick, "a PDF only when ticked");
        if let Some(pdf) = pdf {
            let text = pdf_text(db.dir.path(), pdf.contents());
            assert!(text.contains("SMTP寄信紀錄"), "{text}");
        }
    }
    // The form shows the choice.
    let form = c
        .get(format!("{}/", svc.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("name=\"pdf\"") && form.contains("另附 PDF"),
        "{form}"
    );
    svc.stop().await;
}

#[test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
fn log_text_in_a_pdf_shows_its_hidden_characters() {
    use mailtrail::report::pdf::{Block, Column, Doc, write};
    let font = font();
    let dir = tempfile::tempdir().unwrap();
    let hostile = "550 \u{202e}moc.live\u{1b}[31m\u{7}<script>";
    let doc = Doc {
        title: "t".into(),
        lang: "en",
        footer: "f".into(),
        blocks: vec![Block::Table {
            columns: vec![Column {
                title: "Server response".into(),
                weight: 1.0,
                right: false,
            }],
            rows: vec![vec![hostile.into()]],
        }],
    };
    let text = pdf_text(dir.path(), &write(&doc, &font).unwrap());
    assert!(
        text.contains("550<U+202E>moc.live<U+001B>[31m<U+0007><script>"),
        "{text}"
    );
    assert!(!text.contains('\u{202e}') && !text.contains('\u{1b}'));
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn the_report_command_writes_the_pdf_and_mails_nothing() {
    font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let config = db.dir.path().join("config.toml");
    std::fs::write(&config, db.config_text()).unwrap();
    let out = db.dir.path().join("alice.pdf");
    let r = crate::support::month();
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "report",
        "--mailbox",
        "alice",
        "--kind",
        "smtp",
        "--from",
        &r.from.to_string(),
        "--to",
        &r.to.to_string(),
        "--lang",
        "en",
        "--pdf",
        out.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("(PDF,"), "{stdout}");
    let text = pdf_text(db.dir.path(), &std::fs::read(&out).unwrap());
    assert!(
        text.contains("SMTPsendinghistory") && text.contains("alice@example.edu"),
        "{text}"
    );
    assert_eq!(
        db.store.outbox_counts().await.unwrap(),
        (0, 0),
        "nothing queued"
    );
}
