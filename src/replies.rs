//! Remote replies in plain words: every bounce, deferral, expiry and
//! refusal gets a category (recipient unknown, mailbox full, our server
//! blocked, ...), with one sentence saying what happened and one saying
//! what to do, in the report's language.
//!
//! The rules are data: `rules/replies.toml`, compiled into the binary, and
//! a site's own file (`[replies] rules_file`), whose rules are tried
//! first. The first rule that matches wins. A rule names a category and
//! any of: the row's statuses, where the reply came from (our content
//! filter, our own server, a remote one), enhanced status code prefixes
//! (RFC 3463) and a regular expression, matched against
//! `"<code> <enhanced> <text>"` in lower case.
//!
//! Before the rules, the "whose fault" check: a remote reply that names
//! this site's own sending address or host name (`[replies] own_addresses`,
//! `own_names`) says our server was refused, not that the address is
//! wrong, whatever its status code.
//!
//! Classifying costs the ingest nothing: rows are stored as logged and
//! explained when they are shown, each distinct reply once per report.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, bail};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::config::Lang;

/// The rules shipped with mailtrail.
const BUILTIN: &str = include_str!("../rules/replies.toml");

/// A site's rules file larger than this is refused: rules are a few
/// kilobytes, and each one is compiled.
const MAX_RULES_FILE_BYTES: u64 = 1024 * 1024;
/// At most this many rules in a site's file.
const MAX_RULES: usize = 2000;
/// Compiled size limit of one rule's expression (the `regex` crate's own
/// default is 10 MiB; a rule needs far less).
const MAX_REGEX_BYTES: usize = 1024 * 1024;
/// Replies are matched on their first this many bytes (Postfix keeps a
/// reply to a few hundred).
const MAX_REPLY_BYTES: usize = 4096;

/// Every category a rule may name, in the order the README lists them.
/// Each has `reply_<key>`, `reply_<key>_says` and `reply_<key>_advice` in
/// both languages' strings.
pub const CATEGORIES: &[&str] = &[
    "recipient_unknown",
    "domain_unknown",
    "mailbox_full",
    "mailbox_disabled",
    "message_too_large",
    "spam_content",
    "our_filter",
    "our_server_blocked",
    "rate_limited",
    "sender_authentication",
    "no_route",
    "tls_failure",
    "greylisted",
    "temporary_failure",
    "policy",
    "sender_rejected",
    "relay_denied",
    "login_failed",
    "expired",
    "unclassified",
];

/// Where a reply came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// This mail system's content filter (a `blocked` row).
    Filter,
    /// This mail system itself: its SMTP server refusing a submission, its
    /// local delivery, or Postfix finding no route.
    Local,
    /// The recipient's server.
    Remote,
}

/// The statuses a rule may be limited to (those of rows that are
/// explained).
const STATUSES: &[&str] = &["bounced", "deferred", "expired", "auth_blk", "blocked"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    category: String,
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    origin: Vec<Origin>,
    #[serde(default)]
    enhanced: Vec<String>,
    pattern: Option<String>,
}

#[derive(Debug)]
struct Rule {
    category: &'static str,
    status: Vec<String>,
    origin: Vec<Origin>,
    /// Prefixes of the enhanced code, each ending in `.` or whole
    /// (`5.1.` matches 5.1.1 and 5.1.10; `5.1.1` only 5.1.1).
    enhanced: Vec<String>,
    pattern: Option<Regex>,
}

impl Rule {
    fn compile(spec: RuleSpec, at: &str) -> anyhow::Result<Rule> {
        let Some(category) = CATEGORIES.iter().find(|c| **c == spec.category) else {
            bail!(
                "{at}: unknown category {:?} (known: {})",
                spec.category,
                CATEGORIES.join(", ")
            );
        };
        for s in &spec.status {
            if !STATUSES.contains(&s.as_str()) {
                bail!(
                    "{at}: unknown status {s:?} (known: {})",
                    STATUSES.join(", ")
                );
            }
        }
        let mut enhanced = Vec::new();
        for e in &spec.enhanced {
            if !valid_enhanced_prefix(e) {
                bail!(
                    "{at}: enhanced {e:?} is not a status code or prefix such as \"5.1.1\", \"5.7.\" or \"4.\""
                );
            }
            // "5.1.1" must not match 5.1.10.
            enhanced.push(if e.ends_with('.') || e.matches('.').count() == 2 {
                e.clone()
            } else {
                format!("{e}.")
            });
        }
        let pattern = match &spec.pattern {
            Some(p) => Some(
                regex::RegexBuilder::new(p)
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
                    .with_context(|| format!("{at}: pattern {p:?} is not a valid expression"))?,
            ),
            None => None,
        };
        if pattern.is_none() && enhanced.is_empty() {
            bail!("{at}: a rule needs a pattern, an enhanced code, or both");
        }
        Ok(Rule {
            category,
            status: spec.status,
            origin: spec.origin,
            enhanced,
            pattern,
        })
    }

    fn matches(&self, r: &Normalized, status: &str, origin: Origin) -> bool {
        (self.status.is_empty() || self.status.iter().any(|s| s == status))
            && (self.origin.is_empty() || self.origin.contains(&origin))
            && (self.enhanced.is_empty()
                || self.enhanced.iter().any(|e| {
                    if e.matches('.').count() == 2 && !e.ends_with('.') {
                        r.enhanced == *e
                    } else {
                        r.enhanced.starts_with(e.as_str())
                    }
                }))
            && self.pattern.as_ref().is_none_or(|p| p.is_match(&r.line))
    }
}

/// `5.`, `5.1.`, `5.1.1`, `4.7.` ...: a class digit, then up to two
/// numbers, a trailing dot meaning "and anything after".
fn valid_enhanced_prefix(e: &str) -> bool {
    let body = e.strip_suffix('.').unwrap_or(e);
    let parts: Vec<&str> = body.split('.').collect();
    !parts.is_empty()
        && parts.len() <= 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_rules(text: &str, name: &str) -> anyhow::Result<Vec<Rule>> {
    let file: RulesFile = toml::from_str(text).with_context(|| format!("{name}: not valid"))?;
    if file.rule.len() > MAX_RULES {
        bail!("{name}: more than {MAX_RULES} rules");
    }
    file.rule
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Rule::compile(spec, &format!("{name}: rule {}", i + 1)))
        .collect()
}

/// The built-in rules, compiled once.
fn builtin() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        parse_rules(BUILTIN, "rules/replies.toml").expect("the bundled rules are valid")
    })
}

/// What decides a classifier: the `[replies]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// A TOML file of the site's own rules, tried before the built-in
    /// ones.
    #[serde(default)]
    pub rules_file: Option<PathBuf>,
    /// This site's sending addresses: a remote reply that names one says
    /// our server was refused.
    #[serde(default)]
    pub own_addresses: Vec<IpAddr>,
    /// This site's sending host names (HELO) and domains, for the same
    /// check. A name inside a mail address (`alice@example.edu`) does not
    /// count: replies quote the sender's address for other reasons.
    #[serde(default)]
    pub own_names: Vec<String>,
}

impl RepliesConfig {
    /// Checks the names and compiles the site's rules, so that
    /// `check-config` reports a bad rule.
    pub fn validate(&self) -> anyhow::Result<()> {
        for n in &self.own_names {
            if !crate::domain::is_valid_domain(n) {
                bail!("replies.own_names: {n:?} is not a host or domain name");
            }
        }
        Classifier::new(self).map(|_| ())
    }
}

/// A reply made comparable: `"<code> <enhanced> <text>"` in lower case.
#[derive(Debug)]
struct Normalized {
    enhanced: String,
    line: String,
}

/// Parts of a stored reply: Postfix's `host NAME[ADDR] said: ` before it
/// and ` (in reply to ... command)` after it are not the remote's words.
fn normalize(response: &str, dsn: Option<&str>) -> Normalized {
    let mut s = response;
    if s.len() > MAX_REPLY_BYTES {
        let mut end = MAX_REPLY_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s = &s[..end];
    }
    // Postfix's words around the remote's: "delivery temporarily
    // suspended: " before a reason it saw earlier, "host NAME[ADDR] said: "
    // or "... refused to talk to me: " before the remote's reply.
    if let Some(rest) = s.strip_prefix("delivery temporarily suspended: ") {
        s = rest;
    }
    if s.starts_with("host ") {
        for sep in [" said: ", " refused to talk to me: "] {
            if let Some(i) = s.find(sep) {
                s = &s[i + sep.len()..];
                break;
            }
        }
    }
    if let Some(i) = s.rfind(" (in reply to ") {
        s = &s[..i];
    }
    let s = s.trim();
    let (code, rest) = match s.get(..3) {
        Some(c) if c.bytes().all(|b| b.is_ascii_digit()) && s[3..].starts_with([' ', '-']) => {
            (c, s[4..].trim_start())
        }
        _ => ("", s),
    };
    let word = rest.split(|c: char| c.is_whitespace()).next().unwrap_or("");
    let (enhanced, rest) = if is_enhanced(word) {
        (word.to_owned(), rest[word.len()..].trim_start())
    } else {
        (
            dsn.filter(|d| is_enhanced(d)).unwrap_or("").to_owned(),
            rest,
        )
    };
    let code = if code.is_empty() {
        match enhanced.as_bytes().first() {
            Some(b'2') => "250",
            Some(b'4') => "450",
            Some(b'5') => "550",
            _ => "000",
        }
    } else {
        code
    };
    let line = format!(
        "{code} {} {}",
        if enhanced.is_empty() {
            "0.0.0"
        } else {
            &enhanced
        },
        mask_addresses(rest)
    )
    .to_lowercase();
    Normalized { enhanced, line }
}

/// `<bob@example.org>` becomes `<>`: replies to different recipients
/// then read the same, and are classified once. No rule needs the
/// address, and our own names inside one do not count anyway.
fn mask_addresses(s: &str) -> Cow<'_, str> {
    if !s.contains('<') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(['>', '<']) {
            Some(j)
                if after.as_bytes()[j] == b'>'
                    && after[..j].contains('@')
                    && !after[..j].contains(char::is_whitespace) =>
            {
                out.push_str("<>");
                rest = &after[j + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn is_enhanced(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a row's reply came from, by its status, relay and reply.
pub fn origin(status: &str, relay: Option<&str>, response: &str) -> Origin {
    match status {
        "blocked" => return Origin::Filter,
        "auth_blk" => return Origin::Local,
        _ => {}
    }
    let relay = relay.unwrap_or("");
    let local = relay == "local"
        || relay == "virtual"
        || relay.contains("[private/")
        || relay.contains("[public/");
    // `relay=none` is Postfix itself (no route, a name not found), unless
    // what it says is about a remote server it tried.
    let nothing = relay.is_empty() || relay == "none";
    if local || (nothing && !(response.starts_with("connect to ") || response.starts_with("host ")))
    {
        Origin::Local
    } else {
        Origin::Remote
    }
}

/// The classifier of one configuration.
#[derive(Debug)]
pub struct Classifier {
    site: Vec<Rule>,
    own_addresses: Vec<String>,
    own_names: Vec<String>,
}

impl Classifier {
    /// Compiles the site's rules. Returns `Err` naming the file and the
    /// rule when the file cannot be read or a rule is wrong.
    pub fn new(c: &RepliesConfig) -> anyhow::Result<Classifier> {
        let site = match &c.rules_file {
            Some(path) => parse_rules(&read_rules(path)?, &path.display().to_string())?,
            None => Vec::new(),
        };
        Ok(Classifier {
            site,
            own_addresses: c.own_addresses.iter().map(|a| a.to_string()).collect(),
            own_names: c.own_names.iter().map(|n| n.to_lowercase()).collect(),
        })
    }

    /// How many rules the site's file holds.
    pub fn site_rules(&self) -> usize {
        self.site.len()
    }

    /// The classifier of `c`, compiled once per process for each distinct
    /// `[replies]` table (a site's rules file is read again on restart).
    pub fn shared(c: &RepliesConfig) -> anyhow::Result<Arc<Classifier>> {
        type Compiled = Vec<(RepliesConfig, Arc<Classifier>)>;
        static CACHE: OnceLock<Mutex<Compiled>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some((_, k)) = cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(k, _)| k == c)
        {
            return Ok(k.clone());
        }
        let k = Arc::new(Classifier::new(c)?);
        let mut v = cache.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= 8 {
            v.remove(0);
        }
        v.push((c.clone(), k.clone()));
        Ok(k)
    }

    /// The category of a row's reply. `status` is the row's status
    /// (`bounced`, ...); rows that are not failures have none.
    pub fn classify(
        &self,
        status: &str,
        relay: Option<&str>,
        dsn: Option<&str>,
        response: &str,
    ) -> Option<&'static str> {
        if !STATUSES.contains(&status) {
            return None;
        }
        let origin = origin(status, relay, response);
        Some(self.classify_normalized(status, origin, &normalize(response, dsn)))
    }

    fn classify_normalized(&self, status: &str, origin: Origin, r: &Normalized) -> &'static str {
        if origin == Origin::Remote && self.names_us(&r.line) {
            return "our_server_blocked";
        }
        self.site
            .iter()
            .chain(builtin())
            .find(|rule| rule.matches(r, status, origin))
            .map_or(
                if status == "expired" {
                    "expired"
                } else {
                    "unclassified"
                },
                |rule| rule.category,
            )
    }

    /// Whether a reply names one of our addresses or host names as a word
    /// of its own.
    fn names_us(&self, line: &str) -> bool {
        // A colon continues an IPv6 address, and ends anything else (a
        // port, "name: rejected").
        let word = |b: u8, v6: bool| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (v6 && b == b':')
        };
        let bytes = line.as_bytes();
        self.own_addresses
            .iter()
            .chain(&self.own_names)
            .any(|needle| {
                let v6 = needle.contains(':');
                line.match_indices(needle.as_str()).any(|(i, m)| {
                    let before = i.checked_sub(1).map(|j| bytes[j]);
                    let after = &bytes[i + m.len()..];
                    before.is_none_or(|b| !(word(b, v6) || b == b'.' || b == b'@'))
                        && match after.first() {
                            None => true,
                            // A sentence's full stop, not a longer name.
                            Some(b'.') => after.get(1).is_none_or(|&b| !word(b, v6)),
                            Some(&b) => !word(b, v6),
                        }
                })
            })
    }
}

fn read_rules(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("replies.rules_file: cannot read {}", path.display()))?;
    if meta.len() > MAX_RULES_FILE_BYTES {
        bail!(
            "replies.rules_file: {} is larger than {MAX_RULES_FILE_BYTES} bytes",
            path.display()
        );
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("replies.rules_file: cannot read {}", path.display()))
}

/// A category in one language: what the report and the output show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The category's key (`recipient_unknown`), the same in every
    /// language.
    pub category: &'static str,
    /// Its name for people.
    pub category_label: String,
    /// One sentence: what happened.
    pub explanation: String,
    /// What to do.
    pub advice: String,
}

impl Explanation {
    /// `category` in `lang`.
    pub fn of(category: &'static str, lang: Lang) -> Explanation {
        let t = |suffix: &str| {
            crate::report::render::text(lang, &format!("reply_{category}{suffix}"), &[])
        };
        Explanation {
            category,
            category_label: t(""),
            explanation: t("_says"),
            advice: t("_advice"),
        }
    }
}

/// What decides a row's category: its status, where its reply came from,
/// and its reply as rules see it ([`normalize`]).
type ReplyKey = (&'static str, Origin, String);

/// Explains rows, each distinct reply once.
pub struct Explainer<'a> {
    classifier: &'a Classifier,
    lang: Lang,
    cache: HashMap<ReplyKey, Arc<Explanation>>,
    by_category: HashMap<&'static str, Arc<Explanation>>,
}

impl<'a> Explainer<'a> {
    pub fn new(classifier: &'a Classifier, lang: Lang) -> Explainer<'a> {
        Explainer {
            classifier,
            lang,
            cache: HashMap::new(),
            by_category: HashMap::new(),
        }
    }

    /// The explanation of one row, or `None` for a row that is not a
    /// failure.
    pub fn explain(
        &mut self,
        status: &str,
        relay: Option<&str>,
        dsn: Option<&str>,
        response: &str,
    ) -> Option<Arc<Explanation>> {
        if !STATUSES.contains(&status) {
            return None;
        }
        let status = STATUSES
            .iter()
            .copied()
            .find(|s| *s == status)
            .unwrap_or("");
        let origin = origin(status, relay, response);
        let r = normalize(response, dsn);
        // The enhanced code is in the line ("0.0.0" when there is none,
        // which matches no rule's code either).
        let key = (status, origin, r.line);
        if let Some(e) = self.cache.get(&key) {
            return Some(e.clone());
        }
        let r = Normalized {
            enhanced: r.enhanced,
            line: key.2,
        };
        let c = self.classifier.classify_normalized(status, origin, &r);
        let e = self
            .by_category
            .entry(c)
            .or_insert_with(|| Arc::new(Explanation::of(c, self.lang)))
            .clone();
        self.cache.insert((status, origin, r.line), e.clone());
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_rules_compile() {
        assert!(!builtin().is_empty());
    }

    #[test]
    fn replies_are_normalized() {
        let n = normalize(
            "host mx.example.com[192.0.2.1] said: 550 5.1.1 <Bob@Example.com>: User unknown (in reply to RCPT TO command)",
            None,
        );
        assert_eq!(n.enhanced, "5.1.1");
        assert_eq!(n.line, "550 5.1.1 <>: user unknown");
        assert_eq!(
            normalize("550 5.1.1 <no such> <x@y.z>: a < b", None).line,
            "550 5.1.1 <no such> <>: a < b"
        );
        let n = normalize(
            "connect to mx.example.com[192.0.2.1]:25: Connection refused",
            Some("4.4.1"),
        );
        assert_eq!(
            n.line,
            "450 4.4.1 connect to mx.example.com[192.0.2.1]:25: connection refused"
        );
    }

    #[test]
    fn every_category_has_words_in_both_languages() {
        for lang in [Lang::En, Lang::ZhTw] {
            for c in CATEGORIES {
                for suffix in ["", "_says", "_advice"] {
                    let key = format!("reply_{c}{suffix}");
                    assert!(
                        crate::report::render::strings(lang).contains_key(&key),
                        "{key} missing in {}",
                        lang.as_str()
                    );
                }
            }
        }
    }

    #[test]
    fn enhanced_prefixes_match_whole_numbers() {
        let k = Classifier {
            site: parse_rules(
                "[[rule]]\ncategory = \"policy\"\nenhanced = [\"5.1.1\"]\n",
                "t",
            )
            .unwrap(),
            own_addresses: vec![],
            own_names: vec![],
        };
        assert_eq!(
            k.classify("bounced", Some("mx[192.0.2.1]:25"), None, "550 5.1.1 x"),
            Some("policy")
        );
        assert_ne!(
            k.classify("bounced", Some("mx[192.0.2.1]:25"), None, "550 5.1.10 x"),
            Some("policy")
        );
    }

    #[test]
    fn replies_to_different_recipients_are_classified_once() {
        let k = Classifier::new(&RepliesConfig::default()).unwrap();
        let mut ex = Explainer::new(&k, Lang::En);
        for i in 0..1000 {
            let reply = format!(
                "host mx{}.example.org[198.51.100.7] said: 550 5.1.1 <user{i}@example.org>: Recipient address rejected: User unknown (in reply to RCPT TO command)",
                i % 7
            );
            let e = ex
                .explain(
                    "bounced",
                    Some("mx.example.org[198.51.100.7]:25"),
                    Some("5.1.1"),
                    &reply,
                )
                .unwrap();
            assert_eq!(e.category, "recipient_unknown");
        }
        assert_eq!(ex.cache.len(), 1);
        assert!(ex.explain("sent", None, None, "250 2.0.0 Ok").is_none());
    }

    #[test]
    fn own_names_count_as_words_only() {
        let k = Classifier {
            site: vec![],
            own_addresses: vec!["192.0.2.9".into()],
            own_names: vec!["mail.example.edu".into()],
        };
        assert!(k.names_us("550 5.7.1 client 192.0.2.9 rejected"));
        assert!(k.names_us("550 5.7.1 [192.0.2.9] rejected"));
        assert!(!k.names_us("550 5.7.1 client 192.0.2.99 rejected"));
        assert!(!k.names_us("550 5.7.1 client 10.192.0.2.9 rejected"));
        assert!(k.names_us("554 mail.example.edu is blocked."));
        assert!(!k.names_us("550 5.1.1 <bob@mail.example.edu>: no such user"));
        assert!(!k.names_us("550 5.1.1 smail.example.edu.tw"));
    }
}
