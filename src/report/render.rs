//! The templates (minijinja) and the strings of each language.
//!
//! Templates and strings live in `templates/` and are compiled into the
//! binary, so a deployed mailtrail needs no files beside it. HTML templates
//! are auto-escaped (minijinja decides by the `.html` name); undefined
//! values are errors, so a misspelt key fails a test instead of printing
//! nothing. Every string a template prints, HTML or text, first shows its
//! control characters and bidirectional controls as code points
//! ([`crate::visible`]): log text cannot reorder what a person reads,
//! whichever template or filter it reaches the page through.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Kwargs, Object, Value};
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use unicode_width::UnicodeWidthStr;

use crate::config::Lang;
use crate::visible::visible;

/// Templates, by the name they are rendered under.
const TEMPLATES: &[(&str, &str)] = &[
    ("report.html", include_str!("../../templates/report.html")),
    ("report.txt", include_str!("../../templates/report.txt")),
    ("alert.html", include_str!("../../templates/alert.html")),
    ("alert.txt", include_str!("../../templates/alert.txt")),
    ("explain.html", include_str!("../../templates/explain.html")),
    ("explain.txt", include_str!("../../templates/explain.txt")),
    ("reasons.html", include_str!("../../templates/reasons.html")),
    ("reasons.txt", include_str!("../../templates/reasons.txt")),
    ("help.html", include_str!("../../templates/help.html")),
    ("help.txt", include_str!("../../templates/help.txt")),
    ("form.html", include_str!("../../templates/form.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("chart.html", include_str!("../../templates/chart.html")),
];

const EN: &str = include_str!("../../templates/i18n/en.toml");
const ZH_TW: &str = include_str!("../../templates/i18n/zh-TW.toml");

/// The strings of one language: key → text.
pub type Strings = BTreeMap<String, String>;

/// The strings of `lang`.
pub fn strings(lang: Lang) -> &'static Strings {
    static EN_S: OnceLock<Strings> = OnceLock::new();
    static ZH_S: OnceLock<Strings> = OnceLock::new();
    let (cell, text) = match lang {
        Lang::En => (&EN_S, EN),
        Lang::ZhTw => (&ZH_S, ZH_TW),
    };
    cell.get_or_init(|| toml::from_str(text).expect("the bundled strings are valid TOML"))
}

/// One string of `lang` with `{name}` placeholders filled.
pub fn text(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let s = strings(lang).get(key).map_or(key, String::as_str);
    fill_str(s, |name| {
        args.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

/// The `{name}` placeholders of a string.
fn placeholders(s: &str) -> impl Iterator<Item = &str> {
    s.split('{').skip(1).filter_map(|part| {
        let end = part.find('}')?;
        let name = &part[..end];
        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .then_some(name)
    })
}

/// Fills placeholders in one pass, so a value that itself holds `{x}`
/// (log text can) is never filled again.
fn fill_str(s: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len() + 32);
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after
            .find('}')
            .and_then(|j| value(&after[..j]).map(|v| (j, v)))
        {
            Some((j, v)) => {
                out.push_str(&v);
                rest = &after[j + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The shared environment.
pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_formatter(visible_formatter);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("constant syntax"),
        );
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
        env.add_filter("fill", fill);
        env.add_function("lookup", lookup);
        env.add_filter("ljust", |v: Value, w: usize| pad(&v, w, false));
        env.add_filter("rjust", |v: Value, w: usize| pad(&v, w, true));
        env.add_filter("short_time", |v: String| short_time(&v));
        env.add_filter("hop", |v: String| next_hop(&v));
        env.add_filter("size", |v: i64| size(v));
        env.add_filter("width", |v: Value| {
            UnicodeWidthStr::width(visible(&v.to_string()).as_ref())
        });
        env
    })
}

/// Prints a value as minijinja would (HTML-escaped in `.html`
/// templates), with control characters and bidirectional controls in
/// strings shown as their code points.
fn visible_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if let Some(s) = value.as_str()
        && let Cow::Owned(shown) = visible(s)
    {
        let shown = if value.is_safe() {
            Value::from_safe_string(shown)
        } else {
            Value::from(shown)
        };
        return minijinja::escape_formatter(out, state, &shown);
    }
    minijinja::escape_formatter(out, state, value)
}

/// `{{ t.key | fill(name=value) }}`: fills `{name}` placeholders. The
/// result is plain text, escaped like any value in HTML. A placeholder
/// without a value is a template bug, and an error.
fn fill(s: String, kwargs: Kwargs) -> Result<String, Error> {
    let mut args = Vec::new();
    for k in kwargs.args() {
        let v: Value = kwargs.get(k)?;
        args.push((k, v.to_string()));
    }
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fill_all(&s, &args).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
}

/// `s` with every `{name}` placeholder filled from `args`; a placeholder
/// without a value is a bug in a template or a string, and an error.
pub(crate) fn fill_all(s: &str, args: &[(&str, &str)]) -> Result<String, String> {
    if let Some(missing) = placeholders(s).find(|p| !args.iter().any(|(k, _)| k == p)) {
        return Err(format!("no value for {{{missing}}} in {s:?}"));
    }
    Ok(fill_str(s, |name| {
        args.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }))
}

/// `lookup(t, key, default)`: the string `key` of `t`, or `default` when
/// there is none (for values from logs that may have a translation).
fn lookup(t: Value, key: String, default: Value) -> Value {
    match t.get_attr(&key) {
        Ok(v) if !v.is_undefined() && !v.is_none() => v,
        _ => default,
    }
}

/// Pads to a display width (East Asian characters take two columns).
/// Measures the text as it will be printed (hidden characters shown).
fn pad(v: &Value, width: usize, right: bool) -> String {
    let s = visible(&v.to_string()).into_owned();
    let fill = " ".repeat(width.saturating_sub(UnicodeWidthStr::width(s.as_str())));
    if right { fill + &s } else { s + &fill }
}

/// `2026-11-23T10:07:11+08:00` (a row's time) as the report shows it,
/// `2026/11/23 10:07:11`, its zone said once in the header; a date
/// `2026-11-23` as `2026/11/23`. Anything else is left as it is.
/// The next hop as a person reads it: Postfix's `name[address]:port`
/// without the port, the address said once when the name is the address
/// (`127.0.0.2`), `name (address)` otherwise; a local socket
/// (`mail.example.edu[private/dovecot-lmtp]`) is its host's name; `none`
/// (no connection was made; the reply says why) is nothing.
pub(crate) fn next_hop(v: &str) -> String {
    let v = v.trim();
    if v.is_empty() || v == "none" {
        return String::new();
    }
    let Some((name, rest)) = v.split_once('[') else {
        return v.to_owned();
    };
    let Some((addr, _port)) = rest.split_once(']') else {
        return v.to_owned();
    };
    if addr.contains('/') || addr.is_empty() {
        // A local socket: its host.
        name.to_owned()
    } else if name.is_empty() || name == addr {
        addr.to_owned()
    } else {
        format!("{name} ({addr})")
    }
}

pub(crate) fn short_time(v: &str) -> String {
    let b = v.as_bytes();
    let date_like = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !date_like {
        return v.to_owned();
    }
    let date = v[..10].replace('-', "/");
    match v.get(10..19) {
        Some(t) if t.starts_with('T') => format!("{date} {}", &t[1..]),
        _ if b.len() == 10 => date,
        _ => v.to_owned(),
    }
}

/// A size in bytes as people read it: `950 B`, `12.3 KB`, `95.9 MB`
/// (1 KB = 1024 bytes).
pub(crate) fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Renders `name` with the strings of `lang` as `t`, and `r`.
pub fn render(name: &str, lang: Lang, r: Value) -> anyhow::Result<String> {
    render_page(name, lang, minijinja::context! { r => r })
}

/// The strings of one language as templates read them (`t.key`,
/// `t["col_" ~ c]`): looked up by hashing, as a report of 10,000 rows
/// looks up a few strings per row.
#[derive(Debug)]
struct Words(std::collections::HashMap<&'static str, Value>);

impl Object for Words {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().and_then(|k| self.0.get(k).cloned())
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<&'static str> = self.0.keys().copied().collect();
        keys.sort_unstable();
        Enumerator::Values(keys.into_iter().map(Value::from).collect())
    }
}

/// The strings of `lang` as the value `t`, built once per process.
fn words(lang: Lang) -> Value {
    static EN_W: OnceLock<Value> = OnceLock::new();
    static ZH_W: OnceLock<Value> = OnceLock::new();
    let cell = match lang {
        Lang::En => &EN_W,
        Lang::ZhTw => &ZH_W,
    };
    cell.get_or_init(|| {
        Value::from_object(Words(
            strings(lang)
                .iter()
                .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
                .collect(),
        ))
    })
    .clone()
}

/// Renders `name` with the strings of `lang` as `t`, `lang`, and `ctx`.
pub fn render_page(name: &str, lang: Lang, ctx: Value) -> anyhow::Result<String> {
    let tmpl = env().get_template(name)?;
    Ok(tmpl.render(minijinja::context! { t => words(lang), lang => lang.as_str(), ..ctx })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let en: Vec<&String> = strings(Lang::En).keys().collect();
        let zh: Vec<&String> = strings(Lang::ZhTw).keys().collect();
        assert_eq!(en, zh);
        for (k, v) in strings(Lang::ZhTw) {
            assert_ne!(v, &strings(Lang::En)[k], "{k} is not translated");
        }
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            text(
                Lang::En,
                "range_value",
                &[("from", "2026-11-01"), ("to", "2026-11-02")]
            ),
            "2026-11-01 to 2026-11-02"
        );
        assert_eq!(
            text(Lang::ZhTw, "range_value", &[("from", "a"), ("to", "b")]),
            "a 至 b"
        );
    }

    #[test]
    fn filled_values_are_not_filled_again() {
        assert_eq!(
            fill_str("{a} and {b}", |k| Some(if k == "a" {
                "{b}".into()
            } else {
                "B".into()
            })),
            "{b} and B"
        );
        assert_eq!(fill_str("{unknown} {", |_| None), "{unknown} {");
    }

    #[test]
    fn printed_strings_show_hidden_characters() {
        let mut env = Environment::new();
        env.set_formatter(visible_formatter);
        env.add_template("t.html", "<td>{{ v }}</td>").unwrap();
        env.add_template("t.txt", "{{ v }}").unwrap();
        let v = "a@\u{202E}tset.live\x1b<b>";
        assert_eq!(
            env.get_template("t.html")
                .unwrap()
                .render(minijinja::context! { v })
                .unwrap(),
            "<td>a@&lt;U+202E&gt;tset.live&lt;U+001B&gt;&lt;b&gt;</td>"
        );
        assert_eq!(
            env.get_template("t.txt")
                .unwrap()
                .render(minijinja::context! { v })
                .unwrap(),
            "a@<U+202E>tset.live<U+001B><b>"
        );
    }

    #[test]
    fn times_and_sizes_read_plainly() {
        assert_eq!(
            short_time("2026-11-23T10:07:11+08:00"),
            "2026/11/23 10:07:11"
        );
        assert_eq!(short_time("2026-11-01"), "2026/11/01");
        assert_eq!(short_time("not a time"), "not a time");
    }

    #[test]
    fn next_hops_read_plainly() {
        assert_eq!(next_hop("127.0.0.2[127.0.0.2]:2525"), "127.0.0.2");
        assert_eq!(
            next_hop("gmail-smtp-in.l.google.com[142.250.1.27]:25"),
            "gmail-smtp-in.l.google.com (142.250.1.27)"
        );
        assert_eq!(
            next_hop("mail.example.edu[private/dovecot-lmtp]"),
            "mail.example.edu"
        );
        assert_eq!(next_hop("none"), "");
        assert_eq!(next_hop("[2001:db8::1]:25"), "2001:db8::1");
        assert_eq!(next_hop("odd"), "odd");
        assert_eq!(size(950), "950 B");
        assert_eq!(size(55_676), "54.4 KB");
        assert_eq!(size(100_558_438), "95.9 MB");
    }

    #[test]
    fn padding_counts_display_columns() {
        assert_eq!(pad(&Value::from("日期"), 6, false), "日期  ");
        assert_eq!(pad(&Value::from(42), 5, true), "   42");
    }
}
