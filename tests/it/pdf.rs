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

/// The received-mail capture, with full stamps (no year to guess).
fn received_log() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/received/mail-rfc3339.log")
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

/// The rows of an HTML table that start with `start`, each up to its
/// `</tr>`.
fn rows_of<'a>(html: &'a str, start: &str) -> Vec<&'a str> {
    html.split(start)
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap())
        .collect()
}

/// The pieces of text of an HTML fragment, between its tags, unescaped,
/// without whitespace: what a reader sees, one line or block at a time.
fn fragments(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    loop {
        let (text, next) = match rest.find('<') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let t = squeeze(&strip_tags(text));
        if !t.is_empty() {
            out.push(t);
        }
        match next.and_then(|n| n.split_once('>')) {
            Some((_, r)) => rest = r,
            None => return out,
        }
    }
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
    db.ingest(&[fixture("mail.log"), dovecot("mail.log"), received_log()])
        .await
        .unwrap();
    let tz = db.config.tz().unwrap();
    let limits = Limits::from_config(&db.config);
    let classifier = mailtrail::replies::Classifier::shared(&db.config.replies).unwrap();
    for kind in [Kind::Smtp, Kind::Access, Kind::Received] {
        for lang in [Lang::En, Lang::ZhTw] {
            let s = spec(kind, lang);
            let mut data = Data::load(&db.store, &s, tz).await.unwrap();
            // With each failure's explanation, as reports are mailed.
            data.explain(&classifier, lang);
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
            // Every column's heading, the details' included.
            headings.extend(texts_of(&html, "th"));
            for h in &headings {
                assert!(
                    text.contains(&squeeze(h)),
                    "{kind:?} {lang:?}: {h:?} in\n{text}"
                );
            }
            // The header's dates and time zone (the rows' times are shown
            // without it), the introduction and the closing words.
            let head = html
                .split("<table class=\"head\">")
                .nth(1)
                .and_then(|h| h.split("</table>").next())
                .expect("the header");
            let head = texts_of(head, "td");
            let mut said = vec![head[3].clone(), head[7].clone()];
            said.extend(
                html.split("<p>")
                    .skip(1)
                    .map(|p| p.split("</p>").next().unwrap().to_owned()),
            );
            assert!(said.len() >= 4, "{kind:?} {lang:?}: {said:?}");
            for w in &said {
                let w = squeeze(&strip_tags(w));
                assert!(text.contains(&w), "{kind:?} {lang:?}: {w:?} in\n{text}");
            }
            if lang == Lang::ZhTw {
                let want = match kind {
                    Kind::Smtp => "每日統計",
                    Kind::Access => "每日摘要",
                    Kind::Received => "每日收信",
                };
                assert!(text.contains(want), "{want} in\n{text}");
            }
            // Every row's values, as the HTML words them.
            let mut checked = 0;
            match &data {
                Data::Smtp(h) => {
                    // Every message's line and every recipient's outcome as
                    // the HTML words them: the row number and time, the
                    // site's server, what it did with the message; the
                    // recipient, the status in words with its category, the
                    // next hop, the reply and what a failure means.
                    let messages = rows_of(&html, "<tr class=\"mline ");
                    let outcomes = rows_of(&html, "<tr class=\"st-");
                    assert!(!messages.is_empty(), "{lang:?}");
                    assert!(outcomes.len() >= messages.len() && outcomes.len() < h.details.len());
                    for (i, row) in messages.iter().enumerate() {
                        let first = texts_of(row, "td").into_iter().next().unwrap();
                        assert!(
                            first.starts_with(&format!("{}. ", i + 1)),
                            "the messages are numbered: {first:?}"
                        );
                    }
                    let mut explained = 0;
                    for row in messages.iter().chain(&outcomes) {
                        for cell in texts_of(row, "td") {
                            explained += usize::from(cell.contains("class=\"why\""));
                            for part in fragments(&cell) {
                                assert!(
                                    text.contains(&part),
                                    "{kind:?} {lang:?}: {part:?} of the row {row:?} in\n{text}"
                                );
                                checked += 1;
                            }
                        }
                    }
                    assert!(explained > 0, "{lang:?}: a failure explained");
                    // Runs of quiet days in one line, in both daily tables.
                    let quiet = rows_of(&html, "<tr class=\"quiet\"");
                    assert!(quiet.len() >= 2, "{lang:?}: quiet days folded");
                    for row in &quiet {
                        let line = squeeze(&strip_tags(&texts_of(row, "td")[0]));
                        assert!(text.contains(&line), "{lang:?}: {line:?} in\n{text}");
                        checked += 1;
                    }
                    // Every day shown on its own, with its counts.
                    for table in html.split("<table class=\"rows counts\">").skip(1) {
                        let table = table.split("</table>").next().unwrap();
                        for cell in texts_of(table, "td") {
                            let cell = squeeze(&strip_tags(&cell));
                            assert!(text.contains(&cell), "{lang:?}: {cell:?} in the PDF");
                        }
                    }
                    // Why mail was not delivered, as the HTML sums it up.
                    let reasons = texts_of(&html, "li");
                    assert!(!reasons.is_empty(), "{lang:?}: the reasons");
                    for r in &reasons {
                        let r = squeeze(&strip_tags(r));
                        assert!(text.contains(&r), "{lang:?}: {r:?} in\n{text}");
                        checked += 1;
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
                Data::Received(h) => {
                    // Every cell of every message as the HTML words it: the
                    // row number and time, the sender and server, the
                    // subject and Message-ID, what became of it and why.
                    let rows = rows_of(&html, "<tr class=\"out-");
                    assert_eq!(rows.len(), h.messages.len(), "{kind:?} {lang:?}");
                    assert!(rows.len() >= 8, "{lang:?}: alice's received mail");
                    for row in rows {
                        for cell in texts_of(row, "td") {
                            for part in fragments(&cell) {
                                assert!(
                                    text.contains(&part),
                                    "{kind:?} {lang:?}: {part:?} of the row {row:?} in\n{text}"
                                );
                                checked += 1;
                            }
                        }
                    }
                    // The day counts, and the quiet days folded.
                    for table in html.split("<table class=\"rows counts\">").skip(1) {
                        let table = table.split("</table>").next().unwrap();
                        for cell in texts_of(table, "td") {
                            let cell = squeeze(&strip_tags(&cell));
                            assert!(text.contains(&cell), "{lang:?}: {cell:?} in the PDF");
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
            // (A received-mail report has the two tables' titles only.)
            let least = if kind == Kind::Received { 2 } else { 6 };
            assert!(words.len() >= least, "{kind:?} {lang:?}: {words:?}");
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
async fn an_empty_reports_pdf_says_only_that_nothing_happened() {
    let font = font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log"), dovecot("mail.log")])
        .await
        .unwrap();
    let tz = db.config.tz().unwrap();
    let limits = Limits::from_config(&db.config);
    for kind in [Kind::Smtp, Kind::Access] {
        for lang in [Lang::En, Lang::ZhTw] {
            let mut s = spec(kind, lang);
            s.mailbox = Mailbox::parse("nobody@example.edu", "example.edu").unwrap();
            let data = Data::load(&db.store, &s, tz).await.unwrap();
            let r =
                report::render_with_pdf(s, &data, limits, tz, chrono::Utc::now(), &font).unwrap();
            let text = pdf_text(db.dir.path(), &r.pdf.unwrap().bytes);
            let html = String::from_utf8(r.attachment.bytes).unwrap();
            let said: Vec<&str> = html
                .split("<p>")
                .skip(1)
                .map(|p| p.split("</p>").next().unwrap())
                .collect();
            assert_eq!(said.len(), 2, "the introduction and the nothing: {said:?}");
            for p in said {
                let p = squeeze(&strip_tags(p));
                assert!(text.contains(&p), "{kind:?} {lang:?}: {p:?} in\n{text}");
            }
            // No tables of zeros, no change-your-password.
            for not in [
                "Dailycounts",
                "每日統計",
                "Dailysummary",
                "每日摘要",
                "changeyourpassword",
                "變更密碼",
            ] {
                assert!(!text.contains(not), "{kind:?} {lang:?}: {not} in\n{text}");
            }
        }
    }
}

/// The lines of the HTML's header (each label and its value) and of its
/// help paragraph, unescaped and without whitespace, with the help
/// paragraph's lines apart.
fn header_of(html: &str) -> (Vec<(String, String)>, Vec<String>) {
    let head = html
        .split("<table class=\"head\">")
        .nth(1)
        .and_then(|h| h.split("</table>").next())
        .expect("the header");
    let cells: Vec<String> = texts_of(head, "td")
        .iter()
        .map(|c| squeeze(&strip_tags(c)))
        .collect();
    let rows = cells
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let help = html
        .split("<p class=\"help\">")
        .nth(1)
        .and_then(|h| h.split("</p>").next())
        .expect("the help paragraph");
    let help = help
        .split("<br>")
        .map(|l| squeeze(&strip_tags(l)))
        .collect();
    (rows, help)
}

/// A report as the service builds and mails it, PDF included, with the
/// site's help contact.
async fn built(db: &TestDb, s: Spec) -> report::Report {
    let mut c: Config = db.config.clone();
    c.report.pdf = PdfMode::Always;
    c.report.pdf_font = FONT.into();
    c.help.address = Some("help@example.edu".into());
    c.help.url = Some("https://help.example.edu/mail?lang=zh-TW".into());
    report::build_asked(&db.store, &c, s, false).await.unwrap()
}

/// The PDF's header says what the HTML's says, in the same words: who
/// asked by which channel, the zone, how fresh the records are, whom to
/// ask and that the mail is automatic.
fn assert_same_header(r: &report::Report, text: &str, what: &str) {
    let html = String::from_utf8(r.attachment.bytes.clone()).unwrap();
    let (rows, help) = header_of(&html);
    assert!(rows.len() >= 6, "{what}: {rows:?}");
    for (label, value) in &rows {
        assert!(
            text.contains(&format!("{label}:{value}")),
            "{what}: {label:?} {value:?} in\n{text}"
        );
    }
    // The help paragraph holds the contact: a test of nothing otherwise.
    assert_eq!(help.len(), 3, "{what}: {help:?}");
    assert!(help[1].ends_with("help@example.edu"), "{what}: {help:?}");
    assert!(
        help[2].ends_with("https://help.example.edu/mail?lang=zh-TW"),
        "{what}: {help:?}"
    );
    for line in &help {
        assert!(text.contains(line), "{what}: {line:?} in\n{text}");
    }
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn the_pdf_names_the_help_contact_the_channel_and_how_fresh_as_the_html() {
    font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log"), dovecot("mail.log")])
        .await
        .unwrap();
    // Never ingested: the records' freshness is unknown, and said so.
    let never = TestDb::new().await;
    for kind in [Kind::Smtp, Kind::Access] {
        for lang in [Lang::En, Lang::ZhTw] {
            for channel in [Channel::Web, Channel::Mail] {
                let mut s = spec(kind, lang);
                if channel != Channel::Web {
                    s.requester = Requester::local(channel);
                }
                let r = built(&db, s).await;
                let text = pdf_text(db.dir.path(), &r.pdf.as_ref().expect("a PDF").bytes);
                let what = format!("{kind:?} {lang:?} {channel:?}");
                assert_same_header(&r, &text, &what);
                let (said, fresh) = match lang {
                    Lang::En => ("bythemailservice'sstaff", "Upto"),
                    Lang::ZhTw => ("由郵件服務管理人員", "最多落後郵件伺服器日誌"),
                };
                assert!(!text.contains(said), "{what}: not the CLI's words");
                assert!(text.contains(fresh), "{what}: how fresh, in\n{text}");
                // The address only where it means something.
                assert_eq!(
                    text.contains("192.0.2.7"),
                    channel == Channel::Web,
                    "{what}: {text}"
                );
                // (The rows may name 127.0.0.1 as a relay: the header
                // line alone, up to the next one.)
                let html = String::from_utf8(r.attachment.bytes.clone()).unwrap();
                let (rows, _) = header_of(&html);
                let (asked, next) = (&rows[2].0, &rows[3].0);
                let line = text
                    .split(&format!("{asked}:"))
                    .nth(1)
                    .and_then(|l| l.split(&format!("{next}:")).next())
                    .expect("the requested line");
                assert!(!line.contains("127.0.0.1"), "{what}: {line}");
            }
            // An empty report, of records never read: the same header.
            let mut s = spec(kind, lang);
            s.mailbox = Mailbox::parse("nobody@example.edu", "example.edu").unwrap();
            let r = built(&never, s).await;
            let text = pdf_text(never.dir.path(), &r.pdf.as_ref().expect("a PDF").bytes);
            assert_same_header(&r, &text, &format!("empty {kind:?} {lang:?}"));
            let unknown = match lang {
                Lang::En => "Notyetreadfromthemailservers'logs",
                Lang::ZhTw => "尚未讀取郵件伺服器的日誌",
            };
            assert!(text.contains(unknown), "{kind:?} {lang:?}: {text}");
        }
    }
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
async fn a_warnings_pdf_names_the_help_contact_as_its_html() {
    font();
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let day = crate::support::sample_day();
    for lang in [Lang::En, Lang::ZhTw] {
        let mut c: Config = db.config.clone();
        c.report.pdf = PdfMode::Always;
        c.report.pdf_font = FONT.into();
        c.help.address = Some("help@example.edu".into());
        c.help.url = Some("https://help.example.edu/mail?lang=zh-TW".into());
        let s = Spec {
            mailbox: Mailbox::parse("alice@example.edu", "example.edu").unwrap(),
            kind: Kind::Smtp,
            range: mailtrail::domain::DateRange { from: day, to: day },
            lang,
            requester: Requester::local(Channel::Automatic),
        };
        let crossed = vec![report::Crossed {
            metric: mailtrail::config::Metric::Sent,
            label: "Sent",
            value: 4,
            threshold: 1,
        }];
        let r = report::build_warning(&db.store, &c, s, crossed)
            .await
            .unwrap();
        let text = pdf_text(db.dir.path(), &r.pdf.as_ref().expect("a PDF").bytes);
        assert_same_header(&r, &text, &format!("warning {lang:?}"));
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
    // Log text with hidden characters, in a reply and a recipient.
    let shown = h
        .details
        .iter()
        .position(|d| d.status == "bounced")
        .expect("a bounce");
    h.details[shown].response = Some("550 \u{202e}moc.live\u{1b}[31m".into());
    h.details[shown].recipient = Some("a@\u{202e}tset.live\u{7}".into());
    let data = Data::Smtp(h);
    let limits = Limits::from_config(&db.config);
    let r = report::render_with_pdf(s, &data, limits, tz, chrono::Utc::now(), &font).unwrap();
    let pdf = r.pdf.unwrap();
    let text = pdf_text(db.dir.path(), &pdf.bytes);
    for i in 0..600 {
        assert!(text.contains(&format!("Q{i:05}X")), "row {i}");
    }
    assert!(text.contains("550<U+202E>moc.live<U+001B>[31m"), "{text}");
    assert!(text.contains("a@<U+202E>tset.live<U+0007>"), "{text}");
    assert!(!text.contains('\u{202e}') && !text.contains('\u{1b}') && !text.contains('\u{7}'));
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
    // The details' header is on every page from the first of the details:
    // laid out as on the page, one line of its own.
    let header = squeeze("時間 本校伺服器 收件者 結果 伺服器回應");
    let pages_text = layout_pages(&db.dir.path().join("report.pdf"));
    assert_eq!(pages_text.len(), pages);
    let has_header = |p: &Vec<String>| p.contains(&header);
    let first = pages_text
        .iter()
        .position(has_header)
        .expect("the details' header");
    assert!(first < 3, "the details start on page {}", first + 1);
    for (i, p) in pages_text.iter().enumerate().skip(first) {
        assert!(has_header(p), "page {} has the header: {p:?}", i + 1);
    }
}

/// The pages of a PDF as `pdftotext -layout` lays them out: each page's
/// lines, without whitespace.
fn layout_pages(path: &Path) -> Vec<Vec<String>> {
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\u{c}')
        .map(|p| p.lines().map(squeeze).filter(|l| !l.is_empty()).collect())
        .filter(|p: &Vec<String>| !p.is_empty())
        .collect()
}

#[test]
#[cfg_attr(
    not(mailtrail_pdf),
    ignore = "needs pdftotext (poppler-utils), fonts-wqy-zenhei, and MAILTRAIL_PDF_TESTS=1"
)]
fn long_replies_wrap_within_the_page_and_nothing_is_cut_off() {
    use mailtrail::report::pdf::{Block, Cell, Column, Doc, Row, Style, write};
    let font = font();
    let dir = tempfile::tempdir().unwrap();
    // A reply of many words, longer than a page holds in its column; an
    // unbroken token far wider than any column; Chinese, which has no
    // spaces.
    let words: Vec<String> = (0..900).map(|i| format!("w{i:03}")).collect();
    let long = format!("550 5.7.1 {}", words.join(" "));
    let token: String = (0..400).map(|i| format!("{}", i % 10)).collect();
    let token = format!("T{token}Z");
    let chinese = "收件者的信箱已滿，請稍後再寄。".repeat(20);
    let col = |title: &str, weight: f32| Column {
        title: title.into(),
        weight,
        right: false,
    };
    let doc = Doc {
        title: "t".into(),
        lang: "zh-TW",
        footer: "f".into(),
        blocks: vec![Block::Table {
            columns: vec![
                col("Time", 1.0),
                col("Result", 1.0),
                col("Server response", 3.0),
            ],
            rows: vec![
                Row {
                    cells: vec![
                        Cell::text("1. head"),
                        Cell {
                            paras: vec!["a message's line across two columns".into()],
                            span: 2,
                        },
                    ],
                    style: Style::Group,
                },
                vec!["x".to_owned(), token.clone(), "short".into()].into(),
                Row {
                    cells: vec![
                        Cell::text("y"),
                        Cell::text("bounced"),
                        Cell {
                            paras: vec![long.clone(), chinese.clone()],
                            span: 1,
                        },
                    ],
                    style: Style::Plain,
                },
            ],
        }],
    };
    let bytes = write(&doc, &font).unwrap();
    pdf_text(dir.path(), &bytes);
    // In the order drawn, each cell's lines one after another; without
    // the header and the footer of the pages a row goes on to.
    let path = dir.path().join("report.pdf");
    let out = Command::new("pdftotext")
        .args(["-raw", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    let mut text =
        squeeze(&String::from_utf8(out.stdout).unwrap()).replace("TimeResultServerresponse", "");
    for page in 1..10 {
        text = text.replace(&format!("f·{page}"), "");
    }
    for w in [&long, &token, &chinese] {
        assert!(
            text.contains(&squeeze(w)),
            "{} chars whole in\n{text}",
            w.len()
        );
    }
    assert!(!text.contains('…'), "nothing cut off");
    // Every word lies within the page's width, on every page.
    let out = Command::new("pdftotext")
        .args(["-bbox", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    let bbox = String::from_utf8(out.stdout).unwrap();
    let page_w: f32 = bbox
        .split("<page width=\"")
        .nth(1)
        .and_then(|p| p.split('"').next())
        .and_then(|w| w.parse().ok())
        .expect("the page's width");
    let mut words = 0;
    for w in bbox.split("<word ").skip(1) {
        let x_max: f32 = w
            .split("xMax=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .and_then(|x| x.parse().ok())
            .unwrap();
        assert!(x_max <= page_w - 30.0, "{x_max} of {page_w}: {w}");
        words += 1;
    }
    assert!(words > 900, "{words} words");
    assert!(
        bbox.matches("<page ").count() > 1,
        "the long row goes on on the next page"
    );
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
            rows: vec![vec![hostile.to_owned()].into()],
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
    std::fs::write(
        &config,
        format!(
            "{}\n[help]\naddress = \"help@example.edu\"\nurl = \"https://help.example.edu/mail\"\n",
            db.config_text()
        ),
    )
    .unwrap();
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
    // As mailed: the command line named, the help contact, how fresh.
    for said in [
        "bythemailservice'sstaffattheserver'scommandline",
        "Questionsaboutit:writetohelp@example.edu",
        "Helppages:https://help.example.edu/mail",
        "Thismailwassentautomatically;pleasedonotreplytoit.",
        "minbehindthemailservers'logs",
    ] {
        assert!(text.contains(said), "{said} in\n{text}");
    }
    assert_eq!(
        db.store.outbox_counts().await.unwrap(),
        (0, 0),
        "nothing queued"
    );
}
