//! Requests by mail: `mailtrail request --sender ADDR` reads a message on
//! stdin, as a Postfix pipe transport or alias delivers it.
//!
//! The subject, or else the first line of the body, says what is wanted:
//! `smtp` or `access`, then zero, one or two dates, and optionally `en` or
//! `zh-TW` (`smtp 2026-11-01 2026-11-20`, `access 2026-11-20`). Nothing at
//! all asks for the SMTP history of the last 7 days. Anything else gets a
//! short help reply. The report goes only to the sender's own mailbox, and
//! only when the sender is local; automatic mail (bounces, vacation
//! replies, lists) is never answered, so no loop can start.

use mail_parser::MessageParser;

use crate::config::{Config, Lang};
use crate::domain::{DateRange, Day, Mailbox};
use crate::report::render::text;
use crate::report::{Channel, Kind, Requester, Spec};
use crate::store::{NewMail, Store};

/// What a message asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Report {
        kind: Kind,
        from: Option<Day>,
        to: Option<Day>,
        lang: Option<Lang>,
    },
    /// Not a request; the words that could not be read.
    Unreadable(String),
}

/// Reads one line of request words.
pub fn parse_words(line: &str) -> Ask {
    let mut kind = None;
    let mut days = Vec::new();
    let mut lang = None;
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter(|w| !w.is_empty())
        .collect();
    // A reply's "Re:" prefix is not a word of the request.
    let words = match words.first() {
        Some(w) if w.eq_ignore_ascii_case("re") || w.eq_ignore_ascii_case("fwd") => &words[1..],
        _ => &words[..],
    };
    for w in words {
        let lower = w.to_ascii_lowercase();
        match lower.as_str() {
            "smtp" | "history" | "sent" if kind.is_none() => kind = Some(Kind::Smtp),
            "access" | "pop3" | "imap" | "login" if kind.is_none() => kind = Some(Kind::Access),
            "received" | "inbox" | "incoming" | "收信" if kind.is_none() => {
                kind = Some(Kind::Received)
            }
            "en" | "english" if lang.is_none() => lang = Some(Lang::En),
            "zh-tw" | "zh" | "中文" if lang.is_none() => lang = Some(Lang::ZhTw),
            _ => match Day::parse(w) {
                Ok(d) if days.len() < 2 => days.push(d),
                _ => return Ask::Unreadable((*w).to_owned()),
            },
        }
    }
    match kind {
        Some(kind) => Ask::Report {
            kind,
            from: days.first().copied(),
            to: days.get(1).copied(),
            lang,
        },
        None if words.is_empty() => Ask::Report {
            kind: Kind::Smtp,
            from: None,
            to: None,
            lang: None,
        },
        None => Ask::Unreadable(words.join(" ")),
    }
}

/// What `request` did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A request was written (its id); the worker mails the report.
    Requested(i64),
    /// A help reply was queued (its outbox id).
    Helped(i64),
    /// Nothing: the sender is not local, or the message is automatic.
    Ignored(String),
    /// Too many requests; nothing is sent (a reply would be mail too).
    Limited(String),
}

fn is_automatic(m: &mail_parser::Message<'_>) -> bool {
    let header = |name: &str| {
        m.header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let auto = header("Auto-Submitted");
    let precedence = header("Precedence");
    (!auto.is_empty() && auto != "no")
        || ["bulk", "list", "junk"].contains(&precedence.as_str())
        || m.header_raw("List-Id").is_some()
}

/// Handles one message from `sender` (the envelope sender Postfix gives).
pub async fn intake(
    store: &Store,
    config: &Config,
    sender: &str,
    raw: &[u8],
    now: i64,
) -> anyhow::Result<Outcome> {
    // The sender is who the report (or the help) goes to: only a plain
    // local mailbox, never one that a relay would route elsewhere.
    let mailbox = match config.local_domains().mailbox(sender) {
        Ok(m) => m,
        Err(e) => {
            // Mail from other sites is common; an address made to be
            // routed elsewhere is someone trying.
            match e {
                crate::domain::InputError::NotLocal(_) => {
                    tracing::info!("request by mail ignored: {e}")
                }
                _ => tracing::warn!("request by mail ignored: {e}"),
            }
            return Ok(Outcome::Ignored(e.to_string()));
        }
    };
    let Some(m) = MessageParser::default().parse(raw) else {
        return Ok(Outcome::Ignored("not a mail message".into()));
    };
    if is_automatic(&m) || mailbox.as_str().starts_with("mailer-daemon@") {
        return Ok(Outcome::Ignored("automatic mail is not answered".into()));
    }
    let subject = m.subject().unwrap_or("").trim().to_owned();
    let first_line = m
        .body_text(0)
        .map(|b| {
            b.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('>'))
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let ask = match parse_words(&subject) {
        Ask::Report { .. } if subject.is_empty() => parse_words(&first_line),
        Ask::Unreadable(_) if !first_line.is_empty() => match parse_words(&first_line) {
            r @ Ask::Report { .. } => r,
            Ask::Unreadable(_) => parse_words(&subject),
        },
        a => a,
    };
    let today = config.day_of(now)?;
    let first = config.retention_start(today);
    let lang = config.report.default_language;
    let (kind, range, lang) = match ask {
        Ask::Report {
            kind,
            from,
            to,
            lang: l,
        } => {
            let range = match (from, to) {
                (None, _) => DateRange::new(today.minus(6).max(first), today),
                (Some(f), None) => DateRange::new(f, f),
                (Some(f), Some(t)) => DateRange::new(f, t),
            };
            match range {
                Ok(r) if r.from >= first && r.to <= today => (kind, r, l.unwrap_or(lang)),
                _ => return help(store, config, &mailbox, &m, now).await,
            }
        }
        Ask::Unreadable(_) => return help(store, config, &mailbox, &m, now).await,
    };
    if let Some(limited) = over_limit(store, config, &mailbox, now).await? {
        return Ok(limited);
    }
    let spec = Spec {
        mailbox,
        kind,
        range,
        lang,
        requester: Requester {
            channel: Channel::Mail,
            client_ip: "127.0.0.1".to_owned(),
            at: now,
        },
    };
    // The message's own ID makes a message delivered twice one request.
    let key = m
        .message_id()
        .map(|id| format!("mail:{}:{}", spec.mailbox, id_hash(id)));
    Ok(Outcome::Requested(
        super::submit(store, &spec, key.as_deref()).await?,
    ))
}

/// A stranger's Message-ID as a key's part: a hash, so that the key has a
/// bounded length and holds none of the stranger's text (keys are logged).
fn id_hash(id: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
}

/// `Limited` when `mailbox` has had its requests for the day.
async fn over_limit(
    store: &Store,
    config: &Config,
    mailbox: &Mailbox,
    now: i64,
) -> anyhow::Result<Option<Outcome>> {
    let limit = i64::from(config.web.max_per_mailbox_per_day);
    // Mail has no client address: only the mailbox's limit applies.
    let n = store
        .requests_for(mailbox.as_str(), now - 86_400, limit)
        .await?;
    Ok((n >= limit).then(|| Outcome::Limited(format!("{mailbox}: {n} requests today"))))
}

/// Queues the help reply, once per message, and at most
/// `smtp.max_help_replies_per_recipient_per_day` a day to one mailbox.
///
/// The reply is the same fixed text for every message: anyone can forge a
/// request's sender, so nothing of what the message says (its subject, its
/// words, its dates) is written back.
async fn help(
    store: &Store,
    config: &Config,
    to: &Mailbox,
    m: &mail_parser::Message<'_>,
    now: i64,
) -> anyhow::Result<Outcome> {
    if let Some(limited) = over_limit(store, config, to, now).await? {
        return Ok(limited);
    }
    let days = config.retention_days.to_string();
    let mut body = String::new();
    for lang in [Lang::En, Lang::ZhTw] {
        body.push_str(&text(
            lang,
            "help_body",
            &[("days", &days), ("mailbox", to.as_str())],
        ));
        body.push_str("\n\n");
    }
    let subject = format!(
        "{} / {}",
        text(Lang::En, "help_subject", &[]),
        text(Lang::ZhTw, "help_subject", &[])
    );
    let id = m.message_id().map_or_else(|| format!("{now}"), id_hash);
    let key = format!("{}{to}:{id}", crate::mail::HELP_KEY_PREFIX);
    let mail: NewMail = crate::mail::message::compose_text(config, to, &subject, &body, &key, now)?;
    match crate::mail::queue(store, config, &mail, None, now).await {
        Ok(outbox) => Ok(Outcome::Helped(outbox)),
        Err(e) => match e.downcast::<crate::mail::Refused>() {
            Ok(refused) => Ok(Outcome::Limited(refused.to_string())),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_words() {
        let d = |s: &str| Some(Day::parse(s).unwrap());
        assert_eq!(
            parse_words("smtp 2026-11-01 2026-11-20"),
            Ask::Report {
                kind: Kind::Smtp,
                from: d("2026-11-01"),
                to: d("2026-11-20"),
                lang: None
            }
        );
        assert_eq!(
            parse_words("Re: ACCESS 2026-11-20 en"),
            Ask::Report {
                kind: Kind::Access,
                from: d("2026-11-20"),
                to: None,
                lang: Some(Lang::En)
            }
        );
        assert_eq!(
            parse_words("received 2026-11-01 2026-11-20 zh-TW"),
            Ask::Report {
                kind: Kind::Received,
                from: d("2026-11-01"),
                to: d("2026-11-20"),
                lang: Some(Lang::ZhTw)
            }
        );
        assert_eq!(
            parse_words(""),
            Ask::Report {
                kind: Kind::Smtp,
                from: None,
                to: None,
                lang: None
            }
        );
        assert_eq!(
            parse_words("please send my logs"),
            Ask::Unreadable("please".into())
        );
        assert_eq!(
            parse_words("smtp 2026-13-01"),
            Ask::Unreadable("2026-13-01".into())
        );
        assert_eq!(
            parse_words("smtp 2026-11-01 2026-11-02 2026-11-03"),
            Ask::Unreadable("2026-11-03".into())
        );
    }
}
