//! The report's picture: an inline SVG bar chart, written by hand.
//!
//! Inline (an `<svg>` element in the HTML body, not an image to fetch) so
//! that mail clients that block images from the web still show it; no
//! scripts, no styles from outside, no links. Some clients drop SVG
//! altogether, so each chart carries a `<title>` (its accessible name) and
//! a sentence that says the same in words, and the tables stay the source
//! of truth. Colours are told apart by more than colour: a legend with
//! words, bars always in the legend's order, and every bar's `<title>`
//! naming its day, series and value.
//!
//! Every text in the SVG is escaped here (the SVG is passed to the
//! templates as a safe string), after [`visible`] has shown control and
//! bidirectional characters as code points.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::access::Event;
use crate::config::Lang;
use crate::history::DayRow;
use crate::report::render::text;
use crate::visible::visible;

/// Width of the drawing, in SVG units (pixels at 100 %).
const WIDTH: f64 = 640.0;
/// Height of the bars' area in the daily chart.
pub const PLOT_HEIGHT: f64 = 160.0;
/// Left margin: room for the axis' numbers.
const LEFT: f64 = 44.0;
/// Top margin: room for the legend.
const TOP: f64 = 30.0;
/// Bars at most this wide, so that a short range does not draw slabs.
const MAX_BAR: f64 = 28.0;
/// The access chart shows this many addresses; the rest are one bar.
pub const MAX_ADDRESSES: usize = 12;
/// Longer address labels are cut (an address is at most 45 characters;
/// anything longer came from a strange log line).
const MAX_LABEL_CHARS: usize = 45;
/// Height of one bar's row in the access chart.
const ROW: f64 = 22.0;
/// Room for the address labels in the access chart.
const LABEL_WIDTH: f64 = 300.0;

/// Okabe–Ito colours, told apart with the common colour blindnesses.
const SENT: &str = "#0072b2";
const BOUNCED: &str = "#d55e00";
const DEFERRED: &str = "#e69f00";
const LOGINS: &str = "#0072b2";

/// A chart: the SVG, and the same in one sentence for whoever cannot see
/// it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chart {
    pub svg: String,
    pub text: String,
}

/// Text for an SVG text node or attribute: hidden characters shown, then
/// the five XML specials escaped.
pub fn escape(s: &str) -> String {
    let s = visible(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A bar's height for `value` on a scale whose top is `max`.
pub fn bar_height(value: i64, max: i64, full: f64) -> f64 {
    if max <= 0 || value <= 0 {
        return 0.0;
    }
    (value as f64 / max as f64 * full * 10.0).round() / 10.0
}

fn open_svg(out: &mut String, height: f64, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" style=\"max-width:100%;height:auto\" \
         font-family=\"sans-serif\" font-size=\"12\" aria-label=\"{t}\"><title>{t}</title>",
        t = escape(title),
    );
}

fn legend(out: &mut String, items: &[(&str, String)]) {
    let mut x = LEFT;
    for (colour, label) in items {
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"18\">{}</text>",
            x + 16.0,
            escape(label)
        );
        // Wide enough for a label in either language.
        x += 16.0 + 9.0 * label.chars().count().max(4) as f64 + 16.0;
    }
}

/// Sent, bounced and deferred per day, as grouped bars (in the legend's
/// order), or `None` when the range has none of them.
pub fn daily(days: &[DayRow], lang: Lang, from: &str, to: &str) -> Option<Chart> {
    let (mut sent, mut bounced, mut deferred) = (0, 0, 0);
    let mut max = 0;
    for d in days {
        let c = &d.counts;
        sent += c.sent;
        bounced += c.bounced;
        deferred += c.deferred;
        max = max.max(c.sent).max(c.bounced).max(c.deferred);
    }
    if max == 0 {
        return None;
    }
    let series = [
        (SENT, text(lang, "chart_sent", &[])),
        (BOUNCED, text(lang, "chart_bounced", &[])),
        (DEFERRED, text(lang, "chart_deferred", &[])),
    ];
    let title = text(lang, "chart_daily_title", &[("from", from), ("to", to)]);
    let height = TOP + PLOT_HEIGHT + 24.0;
    let base = TOP + PLOT_HEIGHT;
    let mut out = String::with_capacity(400 + days.len() * 3 * 160);
    open_svg(&mut out, height, &title);
    legend(&mut out, &series);
    // The scale: its top and zero, and a faint line at the top.
    let _ = write!(
        out,
        "<text x=\"{x}\" y=\"{y1}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{x}\" y=\"{y0}\" text-anchor=\"end\">0</text>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{WIDTH}\" y2=\"{TOP}\" stroke=\"#d0d7de\"/>\
         <line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" stroke=\"#57606a\"/>",
        x = LEFT - 6.0,
        y1 = TOP + 4.0,
        y0 = base,
    );
    let n = days.len().max(1) as f64;
    let group = (WIDTH - LEFT) / n;
    let bar = (group * 0.8 / 3.0).min(MAX_BAR);
    // At most about twelve dates under the axis, so they never overlap.
    let every = days.len().div_ceil(12).max(1);
    for (i, d) in days.iter().enumerate() {
        let x0 = LEFT + group * i as f64 + (group - bar * 3.0) / 2.0;
        let c = &d.counts;
        for (k, ((colour, label), value)) in series
            .iter()
            .zip([c.sent, c.bounced, c.deferred])
            .enumerate()
        {
            let h = bar_height(value, max, PLOT_HEIGHT);
            if h == 0.0 {
                continue;
            }
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h}\" fill=\"{colour}\">\
                 <title>{} {}: {value}</title></rect>",
                x0 + bar * k as f64,
                base - h,
                bar,
                escape(&d.date),
                escape(label),
            );
        }
        if i % every == 0 {
            // `MM-DD`: the year is in the title.
            let short = d.date.get(5..).unwrap_or(&d.date);
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                LEFT + group * (i as f64 + 0.5),
                base + 16.0,
                escape(short)
            );
        }
    }
    out.push_str("</svg>");
    let (s, b, d) = (sent.to_string(), bounced.to_string(), deferred.to_string());
    let text = format!(
        "{} {}",
        title,
        text(
            lang,
            "chart_daily_text",
            &[("sent", &s), ("bounced", &b), ("deferred", &d)]
        )
    );
    Some(Chart { svg: out, text })
}

/// Logins per remote address, most first (the first [`MAX_ADDRESSES`],
/// then the rest as one bar), or `None` when the range has no login.
pub fn logins(events: &[Event], lang: Lang, from: &str, to: &str) -> Option<Chart> {
    let mut counts: HashMap<Option<&str>, i64> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == "login") {
        *counts.entry(e.remote_ip.as_deref()).or_default() += 1;
    }
    if counts.is_empty() {
        return None;
    }
    let total: i64 = counts.values().sum();
    let addresses = counts.len();
    let mut rows: Vec<(String, i64)> = counts
        .into_iter()
        .map(|(ip, n)| {
            let label = match ip {
                Some(ip) if ip.chars().count() > MAX_LABEL_CHARS => {
                    let cut: String = ip.chars().take(MAX_LABEL_CHARS - 1).collect();
                    cut + "…"
                }
                Some(ip) => ip.to_owned(),
                None => text(lang, "chart_no_address", &[]),
            };
            (label, n)
        })
        .collect();
    // Most first; equal counts by address, so the order is stable.
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if rows.len() > MAX_ADDRESSES {
        let rest: Vec<(String, i64)> = rows.split_off(MAX_ADDRESSES - 1);
        let n = rest.len().to_string();
        rows.push((
            text(lang, "chart_other_addresses", &[("n", &n)]),
            rest.iter().map(|r| r.1).sum(),
        ));
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let label = text(lang, "chart_logins", &[]);
    let title = text(lang, "chart_logins_title", &[("from", from), ("to", to)]);
    let height = TOP + ROW * rows.len() as f64 + 8.0;
    let full = WIDTH - LABEL_WIDTH - 50.0;
    let mut out = String::with_capacity(400 + rows.len() * 220);
    open_svg(&mut out, height, &title);
    legend(&mut out, &[(LOGINS, label.clone())]);
    for (i, (addr, n)) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let w = bar_height(*n, max, full);
        let _ = write!(
            out,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{a}</text>\
             <rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{w}\" height=\"{bh}\" fill=\"{LOGINS}\">\
             <title>{a} {l}: {n}</title></rect>\
             <text x=\"{vx}\" y=\"{ty}\">{n}</text>",
            lx = LABEL_WIDTH - 6.0,
            ty = y + 14.0,
            a = escape(addr),
            bh = ROW - 6.0,
            l = escape(&label),
            vx = LABEL_WIDTH + w + 4.0,
        );
    }
    out.push_str("</svg>");
    let (t, a) = (total.to_string(), addresses.to_string());
    let text = format!(
        "{} {}",
        title,
        text(lang, "chart_logins_text", &[("n", &t), ("addresses", &a)])
    );
    Some(Chart { svg: out, text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Counts;

    /// Checks that `s` is well-formed XML as far as this module writes it:
    /// tags nest and close, attributes are quoted, and every `&` starts
    /// one of the five entities.
    pub(crate) fn well_formed(s: &str) -> Result<(), String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find(['<', '&']) {
            let text = &rest[..i];
            if text.contains('>') {
                return Err(format!("a bare > in {text:?}"));
            }
            rest = &rest[i..];
            if rest.starts_with('&') {
                let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|e| rest.starts_with(e));
                if !ok {
                    return Err(format!("a bare & at {:?}", &rest[..rest.len().min(20)]));
                }
                rest = &rest[1..];
                continue;
            }
            let end = rest.find('>').ok_or("an unclosed tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if tag.contains('<') {
                return Err(format!("a < inside the tag {tag:?}"));
            }
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("an unbalanced quote in {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') {
                let name = tag.split([' ', '/']).next().unwrap_or("");
                stack.push(name);
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed: {stack:?}"))
        }
    }

    fn day(date: &str, sent: i64, bounced: i64, deferred: i64) -> DayRow {
        DayRow {
            date: date.to_owned(),
            counts: Counts {
                sum: sent + bounced + deferred,
                sent,
                bounced,
                deferred,
                ..Counts::default()
            },
        }
    }

    /// The `height` of the bar whose `<title>` is `title`.
    fn bar(svg: &str, title: &str) -> Option<f64> {
        let at = svg.find(&format!("<title>{title}</title>"))?;
        let rect = &svg[svg[..at].rfind("<rect")?..at];
        let h = rect.split("height=\"").nth(1)?.split('"').next()?;
        h.parse().ok()
    }

    #[test]
    fn daily_bars_are_in_proportion() {
        let days = [
            day("2026-11-22", 10, 0, 5),
            day("2026-11-23", 4, 2, 0),
            day("2026-11-24", 0, 0, 0),
        ];
        let c = daily(&days, Lang::En, "2026-11-22", "2026-11-24").unwrap();
        well_formed(&c.svg).unwrap();
        assert_eq!(bar(&c.svg, "2026-11-22 Sent: 10"), Some(PLOT_HEIGHT));
        assert_eq!(bar(&c.svg, "2026-11-22 Deferred: 5"), Some(80.0));
        assert_eq!(bar(&c.svg, "2026-11-23 Sent: 4"), Some(64.0));
        assert_eq!(bar(&c.svg, "2026-11-23 Bounced: 2"), Some(32.0));
        // No bar for nothing.
        assert_eq!(c.svg.matches("<rect").count(), 3 + 4, "legend and bars");
        assert!(
            c.text.contains("14 sent, 2 bounced, 5 deferred"),
            "{}",
            c.text
        );
        assert!(c.svg.contains("<title>Sent, bounced and deferred per day"));
        for date in ["11-22", "11-23", "11-24"] {
            assert!(c.svg.contains(&format!(">{date}</text>")), "{date}");
        }
    }

    #[test]
    fn daily_chart_speaks_chinese() {
        let c = daily(&[day("2026-11-23", 1, 1, 1)], Lang::ZhTw, "a", "b").unwrap();
        well_formed(&c.svg).unwrap();
        for label in ["成功寄出", "退信", "延遲"] {
            assert!(c.svg.contains(&format!(">{label}</text>")), "{label}");
        }
    }

    #[test]
    fn nothing_sent_draws_nothing() {
        assert_eq!(
            daily(&[day("2026-11-23", 0, 0, 0)], Lang::En, "a", "b"),
            None
        );
        assert_eq!(logins(&[], Lang::En, "a", "b"), None);
    }

    #[test]
    fn a_long_range_labels_some_days_only() {
        let days: Vec<DayRow> = (1..=60)
            .map(|i| {
                day(
                    &format!("2026-{:02}-{:02}", 10 + i / 31, 1 + i % 31),
                    i,
                    0,
                    0,
                )
            })
            .collect();
        let c = daily(&days, Lang::En, "a", "b").unwrap();
        well_formed(&c.svg).unwrap();
        let labels = c.svg.matches("text-anchor=\"middle\"").count();
        assert!((10..=12).contains(&labels), "{labels} date labels");
    }

    fn login(ip: Option<&str>) -> Event {
        Event {
            time: "2026-11-23T10:00:00+08:00".into(),
            kind: "login",
            protocol: Some("imap"),
            remote_ip: ip.map(str::to_owned),
            session: None,
            client: None,
            deleted: None,
            retained: None,
            size_bytes: None,
            in_bytes: None,
            out_bytes: None,
            expunged: None,
            trashed: None,
            message_id: None,
            folder: None,
            reason: None,
            master_user: None,
        }
    }

    #[test]
    fn logins_are_counted_per_address_and_escaped() {
        let mut events = vec![login(Some("192.0.2.1")); 3];
        events.push(login(Some("<script>\u{202e}\"'&")));
        events.push(login(None));
        let mut logout = login(Some("198.51.100.9"));
        logout.kind = "logout";
        events.push(logout);
        let c = logins(&events, Lang::En, "a", "b").unwrap();
        well_formed(&c.svg).unwrap();
        assert!(!c.svg.contains("<script"));
        assert!(!c.svg.contains('\u{202e}'));
        assert!(
            c.svg
                .contains("&lt;script&gt;&lt;U+202E&gt;&quot;&#39;&amp;")
        );
        assert!(!c.svg.contains("198.51.100.9"), "a logout is no login");
        let full = WIDTH - LABEL_WIDTH - 50.0;
        assert_eq!(bar(&c.svg, "192.0.2.1 Logins: 3"), Some(ROW - 6.0));
        let w = |t: &str| {
            let at = c.svg.find(&format!("<title>{t}</title>")).unwrap();
            let rect = &c.svg[c.svg[..at].rfind("<rect").unwrap()..at];
            rect.split("width=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(w("192.0.2.1 Logins: 3"), full);
        assert_eq!(w("(no address) Logins: 1"), bar_height(1, 3, full));
        assert!(c.text.contains("5 logins from 3 addresses"), "{}", c.text);
    }

    #[test]
    fn many_addresses_end_in_one_bar() {
        let events: Vec<Event> = (0..40)
            .flat_map(|i| vec![login(Some(&format!("10.0.0.{i}"))); 1 + i % 3])
            .collect();
        let c = logins(&events, Lang::En, "a", "b").unwrap();
        well_formed(&c.svg).unwrap();
        assert_eq!(c.svg.matches("<rect").count(), 1 + MAX_ADDRESSES);
        assert!(c.svg.contains("29 other addresses"), "{}", c.svg);
    }

    #[test]
    fn the_checker_finds_broken_xml() {
        assert!(well_formed("<svg><rect/></svg>").is_ok());
        assert!(well_formed("<svg><text>a & b</text></svg>").is_err());
        assert!(well_formed("<svg><text>a</svg>").is_err());
        assert!(well_formed("<svg><text>a</text>").is_err());
    }
}
