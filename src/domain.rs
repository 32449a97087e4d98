//! Values parsed once at the edge: mailboxes, local domains, days and ranges.
//!
//! Once a value has one of these types it is valid; code further in does not
//! check again.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use thiserror::Error;

/// A user's mistake in a value given on the command line or in a request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InputError {
    #[error("{0:?} is not a mail address (expected local@domain or a bare user name)")]
    BadMailbox(String),
    #[error("{0:?} is not a date (expected YYYY-MM-DD)")]
    BadDate(String),
    #[error("the range {from} .. {to} ends before it starts")]
    BadRange { from: Day, to: Day },
    #[error("language {0:?}: use zh-TW or en")]
    BadLanguage(String),
    #[error(
        "{0} is not in a local domain: mailtrail mails reports only to mailboxes of this mail service"
    )]
    NotLocal(String),
    #[error(
        "{0:?} is not a plain mailbox: %, !, a source route (@host:) or a quoted local part would let the relay deliver it to another address; give the plain address, such as alice@example.edu"
    )]
    RoutedMailbox(String),
    #[error("{0:?} names no mailbox: its local part begins with a recipient delimiter")]
    NoOwner(String),
}

/// True for a plausible DNS domain: dot-separated labels of letters, digits
/// and hyphens, none empty, none starting or ending with a hyphen.
pub fn is_valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// How this site's addresses are read: the domain of a bare user name, and
/// the recipient delimiters (Postfix's `recipient_delimiter`: each
/// character is one; `judy+tag@` is delivered to `judy@`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing<'a> {
    pub default_domain: &'a str,
    /// Each character a delimiter; empty: none.
    pub delimiters: &'a str,
}

/// The recipient delimiter when none is configured (Postfix's usual `+`).
pub const DEFAULT_DELIMITERS: &str = "+";

/// A bare domain takes the default delimiter, `+`.
impl<'a> From<&'a str> for Addressing<'a> {
    fn from(default_domain: &'a str) -> Self {
        Addressing {
            default_domain,
            delimiters: DEFAULT_DELIMITERS,
        }
    }
}

impl<'a> From<&'a crate::config::Config> for Addressing<'a> {
    fn from(c: &'a crate::config::Config) -> Self {
        Addressing {
            default_domain: &c.default_domain,
            delimiters: &c.recipient_delimiter,
        }
    }
}

/// Characters of a local part that route mail elsewhere on a relay with
/// Postfix's defaults: `%` (`allow_percent_hack`: `a%b@here` goes to
/// `a@b`) and `!` (`swap_bangpath`: `b!a@here` goes to `a@b`).
const ROUTING: &[u8] = b"%!";

/// True for a character of an RFC 5322 dot-atom (`atext`).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// A local mailbox: an address the site delivers to exactly one owner,
/// lowercased, always with a domain, and without a recipient delimiter's
/// extension (`judy+tag@` is `judy@`: the same owner, the same records,
/// the same limits).
///
/// Mail systems like the ones mailtrail serves treat local parts
/// case-insensitively, and users type their address in any case, so the whole
/// address is lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox(String);

impl Mailbox {
    /// Parses an address typed by a person (command line, web form, mail)
    /// or named by the system (a day's table, the outbox).
    ///
    /// Accepts `local@domain`, `<local@domain>` and a bare user name, which
    /// takes the default domain, where the local part is a plain dot-atom.
    /// Returns `Err` for anything else: spaces, several `@`, an empty
    /// part, a domain that is not a domain name, and every form that lets a
    /// relay deliver the mail somewhere else: `%` and `!` in the local part,
    /// a source route (`@a,@b:user@dom`), a quoted local part (`"a@b"@dom`).
    /// The extension after a recipient delimiter is dropped; a local part
    /// that starts with one is refused (it names nobody).
    pub fn parse<'a>(input: &str, rules: impl Into<Addressing<'a>>) -> Result<Mailbox, InputError> {
        let rules = rules.into();
        let bad = || InputError::BadMailbox(input.to_owned());
        let routed = || InputError::RoutedMailbox(input.to_owned());
        let s = input.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        if s.starts_with('@') || s.starts_with('"') || s.contains('"') {
            return Err(routed());
        }
        let (local, domain) = match s.rsplit_once('@') {
            Some((l, d)) => (l, d),
            None => (s, rules.default_domain),
        };
        if local.contains('@') || local.contains(':') || local.contains(',') {
            return Err(routed());
        }
        if local.bytes().any(|b| ROUTING.contains(&b)) {
            return Err(routed());
        }
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.bytes().all(|b| is_atext(b) || b == b'.')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok || !is_valid_domain(domain) {
            return Err(bad());
        }
        let base = match local.find(|c: char| rules.delimiters.contains(c)) {
            Some(0) => return Err(InputError::NoOwner(input.to_owned())),
            Some(i) => &local[..i],
            None => local,
        };
        // `judy.+x` is delivered to `judy.`, which is no dot-atom.
        if base.ends_with('.') {
            return Err(bad());
        }
        Ok(Mailbox(format!(
            "{}@{}",
            base.to_ascii_lowercase(),
            domain.to_ascii_lowercase()
        )))
    }

    /// The address as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Drops a recipient delimiter's extension from a normalised address in
/// place (`judy+tag@example.edu` becomes `judy@example.edu`), so that what a
/// log says `judy+tag@` did counts for judy. A local part that starts with
/// a delimiter is left as it is: it names no owner.
pub fn strip_extension(addr: &mut String, delimiters: &str) {
    if delimiters.is_empty() {
        return;
    }
    let Some(at) = addr.rfind('@') else {
        return;
    };
    if let Some(i) = addr[..at].find(|c: char| delimiters.contains(c))
        && i > 0
    {
        addr.replace_range(i..at, "");
    }
}

/// Normalises an address as Postfix logs it (the inside of `from=<...>`),
/// leniently: logs hold quoted local parts, SMTPUTF8 and old unbracketed
/// forms that a person would never type. Returns `None` for the null sender.
pub fn normalize_logged_address(raw: &[u8], default_domain: &str) -> Option<String> {
    let mut s = String::new();
    normalize_logged_address_into(raw, default_domain, &mut s).then_some(s)
}

/// [`normalize_logged_address`] into `out` (cleared first), for callers that
/// keep one buffer for many lines; returns false for the null sender.
pub fn normalize_logged_address_into(raw: &[u8], default_domain: &str, out: &mut String) -> bool {
    out.clear();
    let raw = raw.strip_prefix(b"<").unwrap_or(raw);
    let raw = raw.strip_suffix(b">").unwrap_or(raw);
    if raw.is_empty() {
        return false;
    }
    match std::str::from_utf8(raw) {
        // ASCII (nearly every address): lowercase bytes, no decoding.
        Ok(a) if a.is_ascii() => {
            out.push_str(a);
            out.make_ascii_lowercase();
        }
        _ => out.push_str(&String::from_utf8_lossy(raw).to_lowercase()),
    }
    if !out.contains('@') {
        out.push('@');
        out.push_str(default_domain);
    }
    true
}

/// The configured local domains, ready for matching.
#[derive(Debug, Clone)]
pub struct LocalDomains {
    /// Domains matched exactly.
    exact: Vec<String>,
    /// Domains matched with all their subdomains (from `.example.edu`).
    suffixes: Vec<String>,
    /// For bare user names.
    pub default_domain: String,
    /// Recipient delimiters (see [`Addressing`]).
    pub delimiters: String,
}

impl LocalDomains {
    pub fn new(entries: &[String], default_domain: &str) -> LocalDomains {
        let mut exact = Vec::new();
        let mut suffixes = Vec::new();
        for e in entries {
            let e = e.to_ascii_lowercase();
            match e.strip_prefix('.') {
                Some(bare) => suffixes.push(bare.to_owned()),
                None => exact.push(e),
            }
        }
        LocalDomains {
            exact,
            suffixes,
            default_domain: default_domain.to_ascii_lowercase(),
            delimiters: DEFAULT_DELIMITERS.to_owned(),
        }
    }

    /// The same domains with other recipient delimiters.
    pub fn with_delimiters(mut self, delimiters: &str) -> LocalDomains {
        self.delimiters = delimiters.to_owned();
        self
    }

    /// How addresses are read here.
    pub fn addressing(&self) -> Addressing<'_> {
        Addressing {
            default_domain: &self.default_domain,
            delimiters: &self.delimiters,
        }
    }

    /// Parses an address that mail will go to, or whose records a report
    /// holds: a plain mailbox ([`Mailbox::parse`]) in a local domain.
    pub fn mailbox(&self, input: &str) -> Result<Mailbox, InputError> {
        let m = Mailbox::parse(input, self.addressing())?;
        if !self.is_local_address(m.as_str()) {
            return Err(InputError::NotLocal(m.to_string()));
        }
        Ok(m)
    }

    /// True when `addr` is exactly a local mailbox as [`LocalDomains::mailbox`]
    /// gives it: the only addresses mailtrail sends mail to.
    pub fn is_local_mailbox(&self, addr: &str) -> bool {
        self.mailbox(addr).is_ok_and(|m| m.as_str() == addr)
    }

    /// True when `domain` (lowercase) is one of ours. `.example.edu` matches
    /// `example.edu` itself and any name ending in `.example.edu`.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.exact.iter().any(|d| d == domain)
            || self.suffixes.iter().any(|s| {
                domain == s
                    || (domain.len() > s.len()
                        && domain.ends_with(s.as_str())
                        && domain.as_bytes()[domain.len() - s.len() - 1] == b'.')
            })
    }

    /// True when a normalised address belongs to a local domain.
    pub fn is_local_address(&self, addr: &str) -> bool {
        addr.rsplit_once('@')
            .is_some_and(|(_, d)| self.is_local_domain(d))
    }
}

/// A calendar day in the configured zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(NaiveDate);

impl Day {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Day, InputError> {
        let t = s.trim();
        if t.len() != 10 {
            return Err(InputError::BadDate(s.to_owned()));
        }
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Day)
            .map_err(|_| InputError::BadDate(s.to_owned()))
    }

    pub fn from_date(d: NaiveDate) -> Day {
        Day(d)
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// The day `n` days earlier.
    pub fn minus(self, n: u32) -> Day {
        Day(self.0 - chrono::Days::new(u64::from(n)))
    }

    /// The stored form: the integer `YYYYMMDD`, which sorts like the date.
    pub fn key(self) -> i32 {
        self.0.year() * 10_000 + self.0.month() as i32 * 100 + self.0.day() as i32
    }

    /// Inverse of [`Day::key`].
    pub fn from_key(k: i32) -> Option<Day> {
        NaiveDate::from_ymd_opt(k / 10_000, (k / 100 % 100) as u32, (k % 100) as u32).map(Day)
    }

    pub fn succ(self) -> Day {
        Day(self.0.succ_opt().unwrap_or(self.0))
    }

    pub fn pred(self) -> Day {
        Day(self.0.pred_opt().unwrap_or(self.0))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// An inclusive range of days, `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub from: Day,
    pub to: Day,
}

impl DateRange {
    pub fn new(from: Day, to: Day) -> Result<DateRange, InputError> {
        if to < from {
            return Err(InputError::BadRange { from, to });
        }
        Ok(DateRange { from, to })
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = Day> + '_ {
        let mut d = Some(self.from);
        std::iter::from_fn(move || {
            let cur = d?;
            d = if cur < self.to {
                Some(cur.succ())
            } else {
                None
            };
            Some(cur)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_parsing() {
        let m = Mailbox::parse(" Alice@Example.EDU ", "example.edu").unwrap();
        assert_eq!(m.as_str(), "alice@example.edu");
        assert_eq!(
            Mailbox::parse("bob", "example.edu").unwrap().as_str(),
            "bob@example.edu"
        );
        assert_eq!(
            Mailbox::parse("<c.d@cs.example.edu>", "x.y")
                .unwrap()
                .as_str(),
            "c.d@cs.example.edu"
        );
        for bad in [
            "",
            "@example.edu",
            "a@",
            "a b@example.edu",
            "a@b@example.edu",
            "a@exa mple.edu",
            "a@-x.edu",
            "a@x..edu",
            "<script>@x.edu",
            ".a@x.edu",
            "a..b@x.edu",
            "a@[192.0.2.1]",
        ] {
            assert!(Mailbox::parse(bad, "example.edu").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routing_operators_are_no_mailbox() {
        for routed in [
            "alice%evil.test@example.edu",
            "evil.test!alice@example.edu",
            "alice%evil.test",
            "@relay.evil.test:alice@example.edu",
            "<@a.test,@b.test:alice@example.edu>",
            "\"a@evil.test\"@example.edu",
            "\"alice\"@example.edu",
        ] {
            assert_eq!(
                Mailbox::parse(routed, "example.edu"),
                Err(InputError::RoutedMailbox(routed.to_owned())),
                "{routed:?}"
            );
        }
        let e = Mailbox::parse("a%b@example.edu", "example.edu").unwrap_err();
        assert!(e.to_string().contains("plain"), "{e}");
    }

    #[test]
    fn extensions_belong_to_the_base_mailbox() {
        let plus = |s: &str| Mailbox::parse(s, "example.edu").map(|m| m.to_string());
        assert_eq!(plus("judy+0@example.edu").unwrap(), "judy@example.edu");
        assert_eq!(plus("Judy+Tag+More").unwrap(), "judy@example.edu");
        assert_eq!(plus("judy+@example.edu").unwrap(), "judy@example.edu");
        assert_eq!(plus("j.doe-x@example.edu").unwrap(), "j.doe-x@example.edu");
        assert!(matches!(
            plus("+x@example.edu"),
            Err(InputError::NoOwner(_))
        ));
        assert!(matches!(
            plus("judy.+x@example.edu"),
            Err(InputError::BadMailbox(_))
        ));
        // Several delimiters, each one; none at all.
        let site = |d| Addressing {
            default_domain: "example.edu",
            delimiters: d,
        };
        let m = |s: &str, d| Mailbox::parse(s, site(d)).map(|m| m.to_string());
        assert_eq!(
            m("judy-news@example.edu", "+-").unwrap(),
            "judy@example.edu"
        );
        assert_eq!(
            m("judy+news@example.edu", "+-").unwrap(),
            "judy@example.edu"
        );
        assert_eq!(m("j.doe-x@example.edu", "").unwrap(), "j.doe-x@example.edu");
        assert_eq!(m("judy+x@example.edu", "").unwrap(), "judy+x@example.edu");
    }

    #[test]
    fn recipients_are_local_plain_mailboxes() {
        let ld = LocalDomains::new(&[".example.edu".into()], "example.edu");
        assert_eq!(ld.mailbox("judy+x").unwrap().as_str(), "judy@example.edu");
        assert!(matches!(
            ld.mailbox("judy@evil.test"),
            Err(InputError::NotLocal(_))
        ));
        assert!(ld.is_local_mailbox("judy@example.edu"));
        for not in [
            "judy+x@example.edu",
            "Judy@example.edu",
            "alice%evil.test@example.edu",
            "evil.test!alice@example.edu",
            "judy@evil.test",
            "judy",
        ] {
            assert!(!ld.is_local_mailbox(not), "{not:?}");
        }
        let mut a = String::from("judy+tag+x@example.edu");
        strip_extension(&mut a, "+");
        assert_eq!(a, "judy@example.edu");
        let mut a = String::from("+tag@example.edu");
        strip_extension(&mut a, "+");
        assert_eq!(a, "+tag@example.edu");
    }

    #[test]
    fn days_back_cross_months_and_years() {
        let d = Day::parse("2026-03-01").unwrap();
        assert_eq!(d.minus(0), d);
        assert_eq!(d.minus(1).to_string(), "2026-02-28");
        assert_eq!(d.minus(30).to_string(), "2026-01-30");
        assert_eq!(d.minus(60).to_string(), "2025-12-31");
    }

    #[test]
    fn local_domain_matching() {
        let ld = LocalDomains::new(&[".example.edu".into(), "other.org".into()], "example.edu");
        assert!(ld.is_local_domain("example.edu"));
        assert!(ld.is_local_domain("cs.example.edu"));
        assert!(ld.is_local_domain("a.b.example.edu"));
        assert!(!ld.is_local_domain("badexample.edu"));
        assert!(!ld.is_local_domain("example.edu.evil.com"));
        assert!(ld.is_local_domain("other.org"));
        assert!(!ld.is_local_domain("sub.other.org"));
        assert!(ld.is_local_address("x@cs.example.edu"));
        assert!(!ld.is_local_address("x@gmail.com"));
    }

    #[test]
    fn logged_addresses() {
        assert_eq!(normalize_logged_address(b"<>", "e.edu"), None);
        assert_eq!(normalize_logged_address(b"", "e.edu"), None);
        assert_eq!(
            normalize_logged_address(b"<Bob@E.edu>", "e.edu").as_deref(),
            Some("bob@e.edu")
        );
        assert_eq!(
            normalize_logged_address(b"www-data", "e.edu").as_deref(),
            Some("www-data@e.edu")
        );
    }

    #[test]
    fn days_and_ranges() {
        let d = Day::parse("2026-11-23").unwrap();
        assert_eq!(d.key(), 20261123);
        assert_eq!(Day::from_key(20261123), Some(d));
        assert!(Day::parse("2026-13-01").is_err());
        assert!(Day::parse("2026-1-1").is_err());
        assert!(Day::parse("yesterday").is_err());
        let r = DateRange::new(
            Day::parse("2026-12-30").unwrap(),
            Day::parse("2027-01-02").unwrap(),
        )
        .unwrap();
        let days: Vec<String> = r.days().map(|d| d.to_string()).collect();
        assert_eq!(
            days,
            ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]
        );
        assert!(
            DateRange::new(
                Day::parse("2026-01-02").unwrap(),
                Day::parse("2026-01-01").unwrap()
            )
            .is_err()
        );
    }
}
