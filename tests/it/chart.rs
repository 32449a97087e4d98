//! The reports' chart, from real ingested captures: the SMTP report's
//! bars are the daily table's numbers, the warning mail carries the day's
//! chart, and the access report's chart counts logins per remote address.

use std::collections::BTreeMap;

use mailtrail::config::{Lang, Metric};
use mailtrail::domain::{DateRange, Mailbox};
use mailtrail::report::{self, Channel, Crossed, Data, Kind, Limits, Requester, Spec};

use crate::support::{TestDb, dovecot, fixture};

fn spec(kind: Kind, lang: Lang, range: DateRange) -> Spec {
    Spec {
        mailbox: Mailbox::parse("alice@example.edu", "example.edu").unwrap(),
        kind,
        range,
        lang,
        requester: Requester::local(Channel::Cli),
    }
}

/// The one inline SVG of an HTML document.
fn svg(html: &str) -> &str {
    assert_eq!(html.matches("<svg").count(), 1, "one chart in\n{html}");
    let start = html.find("<svg").unwrap();
    let end = html.find("</svg>").expect("the chart is closed");
    &html[start..end + 6]
}

#[tokio::test]
async fn the_smtp_report_draws_the_daily_table() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let h = db.history("alice@example.edu").await;
    for lang in [Lang::En, Lang::ZhTw] {
        let s = spec(Kind::Smtp, lang, crate::support::month());
        let data = Data::load(&db.store, &s, tz).await.unwrap();
        let limits = Limits::from_config(&db.config);
        let r = report::render(s, &data, limits, tz, chrono::Utc::now()).unwrap();
        let attachment = String::from_utf8(r.attachment.bytes.clone()).unwrap();
        for html in [&r.html, &attachment] {
            let chart = svg(html);
            assert!(!chart.contains("<script") && !chart.contains("href"));
            let (sent, bounced, deferred) = match lang {
                Lang::En => ("Sent", "Bounced", "Deferred"),
                Lang::ZhTw => ("成功寄出", "退信", "延遲"),
            };
            let mut bars = 0;
            for d in &h.days {
                let c = &d.counts;
                for (label, n) in [(sent, c.sent), (bounced, c.bounced), (deferred, c.deferred)] {
                    let title = format!("<title>{} {label}: {n}</title>", d.date);
                    assert_eq!(chart.contains(&title), n > 0, "{title}");
                    bars += usize::from(n > 0);
                }
            }
            assert!(bars > 0, "the capture has sends");
            // The legend's three squares, and a bar per number.
            assert_eq!(chart.matches("<rect").count(), 3 + bars);
            // In words too, for clients that drop SVG.
            let t = &h.total.counts;
            let words = match lang {
                Lang::En => format!(
                    "{} sent, {} bounced, {} deferred",
                    t.sent, t.bounced, t.deferred
                ),
                Lang::ZhTw => format!(
                    "成功寄出 {} 封，退信 {} 封，延遲 {} 封",
                    t.sent, t.bounced, t.deferred
                ),
            };
            assert!(html.contains(&words), "{words}");
        }
    }
}

#[tokio::test]
async fn the_warning_mail_has_the_days_chart() {
    let db = TestDb::new().await;
    db.ingest(&[fixture("mail.log")]).await.unwrap();
    let h = db.history("alice@example.edu").await;
    let day = h
        .days
        .iter()
        .find(|d| d.counts.sent > 0)
        .expect("a day of sends");
    let date = mailtrail::domain::Day::parse(&day.date).unwrap();
    let s = spec(Kind::Smtp, Lang::En, DateRange::new(date, date).unwrap());
    let crossed = vec![Crossed {
        metric: Metric::Sum,
        label: "Sum",
        value: day.counts.sum,
        threshold: 1,
    }];
    let r = report::build_warning(&db.store, &db.config, s, crossed)
        .await
        .unwrap();
    let chart = svg(&r.html);
    assert!(
        chart.contains(&format!(
            "<title>{} Sent: {}</title>",
            day.date, day.counts.sent
        )),
        "{chart}"
    );
    assert!(
        r.html.find("<svg").unwrap() < r.html.find("Auth_blk").unwrap(),
        "near the top"
    );
}

#[tokio::test]
async fn the_access_report_counts_logins_per_remote_address() {
    let db = TestDb::new().await;
    db.ingest(&[dovecot("mail.log")]).await.unwrap();
    let tz = db.config.tz().unwrap();
    let s = spec(Kind::Access, Lang::En, crate::support::month());
    let data = Data::load(&db.store, &s, tz).await.unwrap();
    // Counted here from the access history's JSON, as a program would.
    let json = mailtrail::history::to_json(match &data {
        Data::Access(h) => h,
        Data::Smtp(_) | Data::Received(_) => unreachable!(),
    });
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for e in v["events"].as_array().unwrap() {
        if e["type"] == "login" {
            let ip = e["remote_ip"].as_str().unwrap_or("(no address)").to_owned();
            *want.entry(ip).or_default() += 1;
        }
    }
    assert!(!want.is_empty(), "the capture has logins");
    let limits = Limits::from_config(&db.config);
    let r = report::render(s, &data, limits, tz, chrono::Utc::now()).unwrap();
    let chart = svg(&r.html);
    for (ip, n) in &want {
        let title = format!("<title>{ip} Logins: {n}</title>");
        assert!(chart.contains(&title), "{title} in\n{chart}");
    }
    assert_eq!(chart.matches("<title>").count(), 1 + want.len().min(12));
}
