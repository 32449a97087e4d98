//! The detail rows of a report's attachment, written as HTML here.
//!
//! A month of a busy mailbox is 30,000 to 100,000 rows; through the
//! template engine each cost a few microseconds of lookups and
//! conversions, most of a large report's time. `report.html` marks where
//! the rows go with [`MARK`]; the page is rendered around it and the rows
//! are written in its place, straight into the attachment as it is zipped.
//! Each row is the markup the template's own loops wrote before (the tests
//! read it the same way), and every value shown goes through the same two
//! steps as every value a template prints: [`visible`] (control and
//! bidirectional characters shown as code points), then HTML escaping.
//! Strings of the report's language are looked up strictly: a missing one
//! is an error, as in the templates.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;

use anyhow::{Context, anyhow};

use super::layout::Message;
use super::render::{Strings, fill_all, next_hop, short_time, size, strings};
use crate::access::{AccessHistory, Event, EventFacts};
use crate::config::Lang;
use crate::history::Detail;
use crate::received::{Received, ReceivedMail};
use crate::visible::visible;

/// Where `report.html` has the detail rows written: an HTML comment, which
/// nothing printed from a log or a string can be (their `<` is escaped).
pub const MARK: &str = "<!--rows-->";

/// Rows are handed on to the writer this many bytes at a time.
const CHUNK: usize = 1 << 16;

/// `s` HTML-escaped into `out`, as the templates escape (`&`, `<`, `>`,
/// both quotes and `/`).
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let with = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            b'/' => "&#x2f;",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(with);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Rows being written: a buffer, handed to `w` a chunk at a time.
struct Out<'w> {
    buf: String,
    w: &'w mut dyn io::Write,
}

impl<'w> Out<'w> {
    fn new(w: &'w mut dyn io::Write) -> Out<'w> {
        Out {
            buf: String::with_capacity(CHUNK + 4096),
            w,
        }
    }

    /// Markup, as it is.
    fn raw(&mut self, s: &str) -> &mut Self {
        self.buf.push_str(s);
        self
    }

    /// Text: shown as text, whatever it holds.
    fn text(&mut self, s: &str) -> &mut Self {
        escape_into(&mut self.buf, &visible(s));
        self
    }

    fn num(&mut self, n: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.buf, "{n}");
        self
    }

    /// The end of a row: the buffer handed on when it is large.
    fn row_done(&mut self) -> io::Result<()> {
        if self.buf.len() >= CHUNK {
            self.w.write_all(self.buf.as_bytes())?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        self.w.write_all(self.buf.as_bytes())
    }
}

/// The strings of the report's language, looked up strictly.
struct Words {
    s: &'static Strings,
    /// `prefix` + a fixed key (an event type, a status) → its string.
    memo: HashMap<(&'static str, &'static str), &'static str>,
}

impl Words {
    fn new(lang: Lang) -> Words {
        Words {
            s: strings(lang),
            memo: HashMap::new(),
        }
    }

    fn get(&self, key: &str) -> anyhow::Result<&'static str> {
        self.s
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the report's strings have no {key:?}"))
    }

    /// The string `prefix` + `key` (`ev_` + `login`).
    fn keyed(&mut self, prefix: &'static str, key: &'static str) -> anyhow::Result<&'static str> {
        if let Some(v) = self.memo.get(&(prefix, key)) {
            return Ok(v);
        }
        let v = self.get(&format!("{prefix}{key}"))?;
        self.memo.insert((prefix, key), v);
        Ok(v)
    }

    /// The string `key`, or `default` when the language has none (values
    /// from logs that may have a translation).
    fn lookup<'a>(&self, key: &str, default: &'a str) -> &'a str {
        match self.s.get(key) {
            Some(v) => v.as_str(),
            None => default,
        }
    }

    /// The string `key`, HTML-escaped: a column's name in an attribute.
    fn label(&self, key: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        escape_into(&mut out, &visible(self.get(key)?));
        Ok(out)
    }

    /// The string `key` with its placeholders filled.
    fn fill(&self, key: &str, args: &[(&str, &str)]) -> anyhow::Result<String> {
        fill_all(self.get(key)?, args).map_err(|e| anyhow!(e))
    }
}

/// A value a template would test as true: present and not empty.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// The access events, each with its facts, as rows of the events table.
pub fn access(w: &mut dyn io::Write, lang: Lang, h: &AccessHistory) -> anyhow::Result<()> {
    let mut t = Words::new(lang);
    let l_time = t.label("col_time")?;
    let l_event = t.label("col_event")?;
    let l_ip = t.label("col_remote_ip")?;
    let l_client = t.label("col_client")?;
    let l_what = t.label("col_what")?;
    let mut out = Out::new(w);
    for (i, (e, f)) in h.events.iter().zip(&h.facts).enumerate() {
        out.raw("\n<tr class=\"ev-").text(e.kind);
        if e.master_user.is_some() {
            out.raw(" master");
        }
        out.raw("\"><td class=\"t\" data-label=\"")
            .raw(&l_time)
            .raw("\"");
        if let Some(session) = given(&e.session) {
            let tip = t.fill("session_tip", &[("id", session)])?;
            out.raw(" title=\"").text(&tip).raw("\"");
        }
        out.raw(">")
            .num(i + 1)
            .raw(". ")
            .text(&short_time(&e.time))
            .raw("</td><td data-label=\"")
            .raw(&l_event)
            .raw("\">")
            .text(t.keyed("ev_", e.kind)?);
        if let Some(p) = e.protocol.filter(|p| !p.is_empty()) {
            out.raw(" (").text(t.keyed("proto_", p)?).raw(")");
        }
        out.raw("</td><td data-label=\"")
            .raw(&l_ip)
            .raw("\">")
            .text(e.remote_ip.as_deref().unwrap_or(""))
            .raw("</td><td data-label=\"")
            .raw(&l_client)
            .raw("\">")
            .text(e.client.as_deref().unwrap_or(""))
            .raw("</td><td data-label=\"")
            .raw(&l_what)
            .raw("\">");
        what(&mut out, &mut t, e, f)?;
        out.raw("</td></tr>");
        out.row_done()?;
    }
    Ok(out.finish()?)
}

/// The "what" cell of an access event.
fn what(out: &mut Out<'_>, t: &mut Words, e: &Event, f: &EventFacts) -> anyhow::Result<()> {
    let n = |v: i64| v.to_string();
    match e.kind {
        "logout" => {
            if e.protocol == Some("pop3") {
                match (e.deleted, e.retained) {
                    (Some(d), Some(r)) => {
                        let total = (i128::from(d) + i128::from(r)).to_string();
                        let s = t.fill(
                            "w_pop3_kept",
                            &[("total", &total), ("deleted", &n(d)), ("left", &n(r))],
                        )?;
                        out.text(&s).raw("; ");
                    }
                    (Some(d), None) => {
                        let s = t.fill("w_pop3_deleted", &[("deleted", &n(d))])?;
                        out.text(&s).raw("; ");
                    }
                    _ => {}
                }
                if let Some(b) = e.size_bytes {
                    let s = t.fill("w_mailbox_size", &[("size", &size(b))])?;
                    out.text(&s).raw("; ");
                }
            } else {
                for (v, key) in [
                    (e.expunged, "w_removed"),
                    (e.deleted, "w_marked_deleted"),
                    (e.trashed, "w_moved_trash"),
                ] {
                    if let Some(v) = v {
                        let s = t.fill(key, &[("n", &n(v))])?;
                        out.text(&s).raw("; ");
                    }
                }
                if let Some(b) = e.size_bytes {
                    out.text(t.get("w_size")?).raw(" ").text(&size(b)).raw("; ");
                }
            }
            if let (Some(up), Some(down)) = (e.in_bytes, e.out_bytes) {
                let s = t.fill("w_traffic", &[("up", &size(up)), ("down", &size(down))])?;
                out.text(&s).raw("; ");
            }
            let reason = e.reason.as_deref().unwrap_or("");
            match f.reason_key.filter(|k| !k.is_empty()) {
                Some(k) => {
                    out.raw("<abbr title=\"")
                        .text(reason)
                        .raw("\">")
                        .text(t.keyed("reason_", k)?)
                        .raw("</abbr>");
                }
                None => {
                    out.text(reason);
                }
            }
        }
        "message_deleted" | "message_marked_deleted" => {
            let s = t.fill(
                "w_in_folder",
                &[("folder", e.folder.as_deref().unwrap_or(""))],
            )?;
            out.raw("<code class=\"resp\">")
                .text(e.message_id.as_deref().unwrap_or(""))
                .raw("</code> ")
                .text(&s);
        }
        "mailbox_deleted" => {
            out.text(e.folder.as_deref().unwrap_or(""));
        }
        "login" => {
            if let Some(m) = given(&f.method) {
                let s = t.fill("w_method", &[("m", m)])?;
                out.text(&s).raw(", ");
            }
            if let Some(tls) = f.tls {
                out.text(t.get(if tls { "w_tls" } else { "w_no_tls" })?)
                    .raw(", ");
            }
            if let Some(ip) = given(&f.local_ip) {
                let s = t.fill("w_to", &[("ip", ip)])?;
                out.text(&s);
            }
            if let Some(user) = &e.master_user {
                let user = if user.is_empty() {
                    t.get("master_unnamed")?
                } else {
                    user
                };
                let s = t.fill("w_master_user", &[("user", user)])?;
                out.raw("<br><strong>").text(&s).raw("</strong>");
            }
        }
        "auth_failed" => {
            let failure = f.failure.as_deref().unwrap_or("");
            let key = format!("fail_{}", failure.replace(' ', "_"));
            out.text(t.lookup(&key, failure));
            if let Some(a) = f.attempts {
                let s = t.fill("w_attempts", &[("n", &n(a))])?;
                out.raw(" (").text(&s).raw(")");
            }
        }
        _ => {
            out.text(e.reason.as_deref().unwrap_or(""));
        }
    }
    Ok(())
}

/// The SMTP details, one `<tbody>` per message: its own line, then its
/// recipients' outcomes.
pub fn smtp(w: &mut dyn io::Write, lang: Lang, messages: &[Message<'_>]) -> anyhow::Result<()> {
    let mut t = Words::new(lang);
    let l_message = t.label("col_message")?;
    let l_host = t.label("col_host")?;
    let l_result = t.label("col_result")?;
    let l_time = t.label("col_time")?;
    let l_recipient = t.label("col_recipient")?;
    let l_response = t.label("col_response")?;
    let ip_unknown = t.get("ip_unknown")?;
    let next_hop_word = t.get("col_next_hop")?;
    let mut out = Out::new(w);
    for m in messages {
        out.raw("\n<tbody>\n<tr class=\"mline ")
            .text(m.status)
            .raw("\"><td class=\"t\" data-label=\"")
            .raw(&l_message)
            .raw("\">")
            .num(m.n)
            .raw(". ")
            .text(&short_time(m.time))
            .raw("</td><td data-label=\"")
            .raw(&l_host)
            .raw("\"");
        if let Some(q) = m.queue_id.filter(|q| !q.is_empty()) {
            let tip = t.fill("queue_id_tip", &[("id", q)])?;
            out.raw(" title=\"").text(&tip).raw("\"");
        }
        out.raw(">")
            .text(m.host)
            .raw("</td><td colspan=\"3\" data-label=\"")
            .raw(&l_result)
            .raw("\">");
        let ip = m.sender_ip.filter(|s| !s.is_empty());
        if m.refused_after_accept || m.status == "accepted" {
            let key = if m.refused_after_accept {
                "msg_refused_after"
            } else {
                "msg_accepted"
            };
            let s = t.fill(key, &[("ip", ip.unwrap_or(ip_unknown))])?;
            out.text(&s);
        } else {
            let key = if m.status == "refused" {
                "msg_refused"
            } else {
                "msg_relayed"
            };
            out.text(t.get(key)?);
            if let Some(ip) = ip {
                let s = t.fill("msg_from", &[("ip", ip)])?;
                out.raw(" ").text(&s);
            }
        }
        out.raw("</td></tr>");
        for o in &m.outcomes {
            outcome(
                &mut out,
                &mut t,
                m,
                o,
                [&l_time, &l_host, &l_recipient, &l_result],
            )?;
            out.raw("<td data-label=\"").raw(&l_response).raw("\">");
            let hop = next_hop(o.relay.as_deref().unwrap_or(""));
            if !hop.is_empty() {
                out.raw("<div class=\"hop\" title=\"")
                    .text(o.relay.as_deref().unwrap_or(""))
                    .raw("\">")
                    .text(next_hop_word)
                    .raw(": ")
                    .text(&hop)
                    .raw("</div>");
            }
            out.raw("<code class=\"resp\">")
                .text(o.response.as_deref().unwrap_or(""))
                .raw("</code>");
            if let Some(x) = o.explanation.as_deref().filter(|s| !s.is_empty()) {
                out.raw("<div class=\"why\">").text(x);
                if let Some(a) = o.advice.as_deref().filter(|s| !s.is_empty()) {
                    out.raw(" ").text(a);
                }
                out.raw("</div>");
            }
            out.raw("</td></tr>");
        }
        out.raw("\n</tbody>");
        out.row_done()?;
    }
    Ok(out.finish()?)
}

/// An outcome's row up to its response cell.
fn outcome(
    out: &mut Out<'_>,
    t: &mut Words,
    m: &Message<'_>,
    o: &Detail,
    [l_time, l_host, l_recipient, l_result]: [&str; 4],
) -> anyhow::Result<()> {
    out.raw("\n<tr class=\"st-")
        .text(o.status)
        .raw("\"><td class=\"t\" data-label=\"")
        .raw(l_time)
        .raw("\">")
        .text(&short_time(&o.time))
        .raw("</td><td data-label=\"")
        .raw(l_host)
        .raw("\">");
    if o.host != m.host {
        out.text(&o.host);
    }
    out.raw("</td><td data-label=\"")
        .raw(l_recipient)
        .raw("\">")
        .text(o.recipient.as_deref().unwrap_or(""))
        .raw("</td><td data-label=\"")
        .raw(l_result)
        .raw("\">")
        .text(t.keyed("status_", o.status)?);
    if let Some(c) = o.category_label.as_deref().filter(|s| !s.is_empty()) {
        out.raw("<br>").text(c);
    }
    out.raw("</td>");
    Ok(())
}

/// The received messages, one row each.
pub fn received(w: &mut dyn io::Write, lang: Lang, h: &ReceivedMail) -> anyhow::Result<()> {
    let mut t = Words::new(lang);
    let l_time = t.label("col_time")?;
    let l_sender = t.label("col_sender")?;
    let l_subject = t.label("col_subject")?;
    let l_outcome = t.label("col_outcome")?;
    let mut out = Out::new(w);
    for (i, e) in h.messages.iter().enumerate() {
        received_row(
            &mut out,
            &mut t,
            i + 1,
            e,
            [&l_time, &l_sender, &l_subject, &l_outcome],
        )
        .with_context(|| format!("received message {}", i + 1))?;
        out.row_done()?;
    }
    Ok(out.finish()?)
}

fn received_row(
    out: &mut Out<'_>,
    t: &mut Words,
    n: usize,
    e: &Received,
    [l_time, l_sender, l_subject, l_outcome]: [&str; 4],
) -> anyhow::Result<()> {
    out.raw("\n<tr class=\"out-")
        .text(e.outcome)
        .raw("\"><td class=\"t\" data-label=\"")
        .raw(l_time)
        .raw("\"");
    if let Some(q) = given(&e.queue_id) {
        let tip = t.fill("queue_id_tip", &[("id", q)])?;
        out.raw(" title=\"").text(&tip).raw("\"");
    }
    out.raw(">")
        .num(n)
        .raw(". ")
        .text(&short_time(&e.time))
        .raw("</td>\n<td data-label=\"")
        .raw(l_sender)
        .raw("\">");
    if e.bounce_notice {
        out.text(t.get("w_bounce_notice")?);
    } else {
        out.text(e.sender.as_deref().unwrap_or(""));
    }
    if let Some(s) = given(&e.server) {
        out.raw("<div class=\"hop\">")
            .text(t.get("col_server")?)
            .raw(": ")
            .text(s)
            .raw("</div>");
    }
    out.raw("</td>\n<td data-label=\"")
        .raw(l_subject)
        .raw("\">")
        .text(e.subject.as_deref().unwrap_or(""));
    if let Some(id) = given(&e.message_id) {
        out.raw("<div class=\"hop\"><code class=\"resp\">")
            .text(id)
            .raw("</code></div>");
    }
    if let Some(b) = e.size {
        out.raw("<div class=\"hop\">")
            .text(t.get("w_size")?)
            .raw(" ")
            .text(&size(b))
            .raw("</div>");
    }
    out.raw("</td>\n<td data-label=\"")
        .raw(l_outcome)
        .raw("\"><b>")
        .text(t.keyed("out_", e.outcome)?)
        .raw("</b>");
    if e.deferrals > 0 {
        let s = t.fill("w_deferrals", &[("n", &e.deferrals.to_string())])?;
        out.raw("<br>").text(&s);
    }
    if let Some(f) = given(&e.folder) {
        let s = t.fill("w_folder", &[("folder", f)])?;
        out.raw("<br>").text(&s);
    }
    if let Some(rule) = given(&e.rule) {
        let key = format!("rule_{}", rule.replace(' ', "_"));
        let s = t.fill("w_by", &[("rule", t.lookup(&key, rule))])?;
        out.raw("<br>").text(&s);
    }
    if let Some(to) = given(&e.forwarded_to) {
        if e.outcome == "auto_replied" {
            let s = t.fill("w_vacation_to", &[("to", to)])?;
            out.raw("<br>").text(&s);
        } else {
            let s = t.fill("w_forwarded_to", &[("to", to)])?;
            out.raw("<br>").text(&s);
            if let Some(st) = given(&e.forward_status) {
                out.raw(": ").text(t.lookup(&format!("w_forward_{st}"), st));
            }
        }
    }
    if let Some(stage) = given(&e.stage) {
        let s = t.fill("w_stage", &[("stage", stage)])?;
        out.raw("<br>").text(&s);
    }
    if let Some(reason) = e.reason.filter(|r| !r.is_empty()) {
        let why = t.lookup(
            &format!("rcv_reason_{reason}"),
            e.explanation.as_deref().unwrap_or(""),
        );
        out.raw("<div class=\"why\">").text(why).raw("</div>");
    }
    if let Some(action) = given(&e.spam_action) {
        let s = match given(&e.spam_score) {
            Some(score) => t.fill("w_spam", &[("action", action), ("score", score)])?,
            None => t.fill("w_spam_action", &[("action", action)])?,
        };
        out.raw("<br>").text(&s);
    }
    if let Some(reply) = given(&e.reply).or(given(&e.forward_reply)) {
        out.raw("<div class=\"hop\">")
            .text(t.get("w_reply")?)
            .raw(": <code class=\"resp\">")
            .text(reply)
            .raw("</code></div>");
    }
    out.raw("\n</td></tr>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<img src=x onerror=alert('1')>&\"/\u{202E}\x1b[2J{id}";

    fn written(f: impl FnOnce(&mut dyn io::Write) -> anyhow::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The markup of hostile text: escaped, its controls shown.
    fn assert_inert(html: &str) {
        assert!(!html.contains("<img"), "markup from a log: {html}");
        assert!(!html.contains('\u{202E}') && !html.contains('\x1b'));
        assert!(html.contains("&lt;img src=x onerror=alert(&#x27;1&#x27;)&gt;&amp;&quot;&#x2f;&lt;U+202E&gt;&lt;U+001B&gt;[2J{id}"));
    }

    #[test]
    fn text_is_escaped_as_the_templates_escape_it() {
        let mut env = minijinja::Environment::new();
        env.add_template("t.html", "{{ v }}").unwrap();
        let v = "<a href='x'>&amp;\"/</a> 日程表";
        let by_template = env
            .get_template("t.html")
            .unwrap()
            .render(minijinja::context! { v })
            .unwrap();
        let mut here = String::new();
        escape_into(&mut here, v);
        assert_eq!(here, by_template);
    }

    #[test]
    fn access_rows_show_log_text_as_text() {
        let s = Some(HOSTILE.to_owned());
        let mut h = AccessHistory {
            mailbox: "a@example.edu".into(),
            from: "2026-11-01".into(),
            to: "2026-11-01".into(),
            days: Vec::new(),
            events: Vec::new(),
            facts: Vec::new(),
        };
        for kind in [
            "login",
            "logout",
            "auth_failed",
            "message_deleted",
            "mailbox_deleted",
        ] {
            h.events.push(Event {
                time: "2026-11-01T10:00:00+08:00".into(),
                kind,
                protocol: Some("imap"),
                remote_ip: s.clone(),
                session: s.clone(),
                client: s.clone(),
                deleted: None,
                retained: None,
                size_bytes: None,
                in_bytes: None,
                out_bytes: None,
                expunged: None,
                trashed: None,
                message_id: s.clone(),
                folder: s.clone(),
                reason: s.clone(),
                master_user: s.clone(),
            });
            h.facts.push(EventFacts {
                method: s.clone(),
                tls: Some(true),
                local_ip: s.clone(),
                attempts: Some(2),
                failure: s.clone(),
                reason_key: None,
            });
        }
        for lang in [Lang::En, Lang::ZhTw] {
            let html = written(|w| access(w, lang, &h));
            assert_inert(&html);
            assert_eq!(html.matches("\n<tr class=\"ev-").count(), 5);
            assert_eq!(html.matches("</td></tr>").count(), 5);
            assert!(
                html.contains(">5. 2026&#x2f;11&#x2f;01 10:00:00</td>"),
                "{html}"
            );
        }
    }

    #[test]
    fn received_rows_show_log_text_as_text() {
        let s = Some(HOSTILE.to_owned());
        let e = Received {
            time: "2026-11-01T10:00:00+08:00".into(),
            outcome: "forwarded",
            sender: s.clone(),
            server: s.clone(),
            message_id: s.clone(),
            subject: s.clone(),
            size: Some(2048),
            queue_id: s.clone(),
            folder: s.clone(),
            rule: s.clone(),
            forwarded_to: s.clone(),
            forward_status: s.clone(),
            stage: s.clone(),
            reason: Some("spam"),
            spam_action: s.clone(),
            spam_score: s.clone(),
            reply: s.clone(),
            deferrals: 1,
            ..Received::default()
        };
        let h = ReceivedMail {
            mailbox: "a@example.edu".into(),
            from: "2026-11-01".into(),
            to: "2026-11-01".into(),
            days: Vec::new(),
            messages: vec![e],
            omitted: 0,
            times_us: vec![0],
        };
        let html = written(|w| received(w, Lang::En, &h));
        assert_inert(&html);
        assert!(html.contains("2.0 KB"), "{html}");
    }

    #[test]
    fn smtp_rows_group_a_message_and_show_log_text_as_text() {
        let d = |status, recipient: &str| Detail {
            time: "2026-11-01T10:00:00+08:00".into(),
            host: "smtp1".into(),
            sender_ip: Some(HOSTILE.into()),
            relay: Some(format!("{HOSTILE}[192.0.2.1]:25")),
            queue_id: Some(HOSTILE.into()),
            recipient: Some(recipient.into()),
            status,
            response: Some(HOSTILE.into()),
            dsn: None,
            category: None,
            category_label: Some(HOSTILE.into()),
            explanation: Some(HOSTILE.into()),
            advice: None,
        };
        let details = vec![
            d("auth_rcv", ""),
            d("sent", "x@example.com"),
            d("bounced", HOSTILE),
        ];
        let messages = super::super::layout::messages(&details);
        let html = written(|w| smtp(w, Lang::ZhTw, &messages));
        assert_inert(&html);
        assert_eq!(html.matches("<tbody>").count(), 1);
        assert_eq!(html.matches("<tr class=\"st-").count(), 2);
        assert!(html.contains("<tr class=\"mline accepted\">"), "{html}");
    }
}
