//! A report as a MIME message: a text and an HTML part (header and table),
//! and the report attached.

use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, MessageBuilder, MultiPart};

use crate::report::{Channel, Report};
use crate::store::NewMail;

/// The headers every mail of mailtrail has: From (`from`, named
/// mailtrail), To, Subject, Date (`now`), a Message-ID derived from `key`
/// (so a mail queued twice under one key is the same message),
/// Auto-Submitted (RFC 3834), which keeps vacation responders quiet, and,
/// when the site has a help contact, Reply-To it: a reply to a report
/// reaches people, not the parser of requests by mail.
fn headers(
    from: &str,
    to: &str,
    subject: &str,
    key: &str,
    auto_submitted: &str,
    now: i64,
    reply_to: Option<&str>,
) -> anyhow::Result<MessageBuilder> {
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut b = Message::builder();
    if let Some(r) = reply_to {
        b = b.reply_to(
            r.parse()
                .map_err(|e| anyhow::anyhow!("help.address {r:?}: {e}"))?,
        );
    }
    Ok(b.from(
        format!("mailtrail <{from}>")
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp.from {from:?}: {e}"))?,
    )
    .to(to
        .parse()
        .map_err(|e| anyhow::anyhow!("recipient {to:?}: {e}"))?)
    .subject(subject)
    .date(UNIX_EPOCH + Duration::from_secs(now.max(0) as u64))
    .message_id(Some(format!(
        "<{:016x}.mailtrail@{domain}>",
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    )))
    .raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("Auto-Submitted"),
        auto_submitted.to_owned(),
    )))
}

/// Composes the mail of `report`, from `from`, to the report's recipient
/// (the mailbox it is about; see [`Report::recipient`]).
///
/// `key` names what the mail is; the Message-ID derives from it, so a mail
/// queued twice under one key is the same message. `now` (unix seconds)
/// is its Date.
pub fn compose(report: &Report, from: &str, key: &str, now: i64) -> anyhow::Result<NewMail> {
    let to = report.recipient();
    // A report asked for is a reply; what the system sends by itself is
    // auto-generated.
    let auto = match report.spec.requester.channel {
        Channel::Automatic => "auto-generated",
        _ => "auto-replied",
    };
    let attachment = Attachment::new(report.attachment.filename.clone()).body(
        report.attachment.bytes.clone(),
        ContentType::parse(report.attachment.content_type)?,
    );
    let mut mixed = MultiPart::mixed()
        .multipart(MultiPart::alternative_plain_html(
            report.text.clone(),
            report.html.clone(),
        ))
        .singlepart(attachment);
    if let Some(pdf) = &report.pdf {
        mixed = mixed.singlepart(
            Attachment::new(pdf.filename.clone())
                .body(pdf.bytes.clone(), ContentType::parse(pdf.content_type)?),
        );
    }
    let message = headers(
        from,
        to.as_str(),
        &report.subject,
        key,
        auto,
        now,
        report.reply_to.as_deref(),
    )?
    .multipart(mixed)?;
    Ok(NewMail {
        idem_key: key.to_owned(),
        recipient: to.to_string(),
        sender: from.to_owned(),
        subject: report.subject.clone(),
        message: message.formatted(),
    })
}

/// The admin's nightly digest: every mailbox warned for `day`, and why.
/// Plain text; its key makes it one per day.
pub fn compose_digest(
    config: &crate::config::Config,
    admin: &str,
    day: crate::domain::Day,
    warnings: &[crate::alerts::Warning],
    now: i64,
) -> anyhow::Result<NewMail> {
    use crate::report::render::text;
    let lang = config.report.default_language;
    let from = &config.smtp.from;
    let day_s = day.to_string();
    let n = warnings.len().to_string();
    let subject = text(lang, "digest_subject", &[("n", &n), ("day", &day_s)]);
    let mut body = text(lang, "digest_intro", &[("day", &day_s)]);
    body.push_str("\n\n");
    for w in warnings {
        let why: Vec<String> = w
            .crossed
            .iter()
            .map(|c| format!("{} {} >= {}", c.label, c.value, c.threshold))
            .collect();
        let c = &w.counts;
        body.push_str(&format!(
            "{}\n    {}\n    Sum {}, Auth_blk {}, Auth_rcv {}, Bounced {}, Deferred {}, Expired {}, Sent {}\n",
            w.mailbox,
            why.join("; "),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6]
        ));
    }
    let key = format!("digest:{day}");
    let reply_to = config.help.address.as_deref();
    plain(
        from,
        admin,
        &subject,
        body,
        &key,
        "auto-generated",
        now,
        reply_to,
    )
}

/// A plain-text message, its Message-ID derived from `key`.
#[allow(clippy::too_many_arguments)]
fn plain(
    from: &str,
    to: &str,
    subject: &str,
    body: String,
    key: &str,
    auto_submitted: &str,
    now: i64,
    reply_to: Option<&str>,
) -> anyhow::Result<NewMail> {
    let message = headers(from, to, subject, key, auto_submitted, now, reply_to)?
        .header(ContentType::TEXT_PLAIN)
        .body(body)?;
    Ok(NewMail {
        idem_key: key.to_owned(),
        recipient: to.to_owned(),
        sender: from.to_owned(),
        subject: subject.to_owned(),
        message: message.formatted(),
    })
}

/// A plain-text mail to a local mailbox (the help reply to a request by
/// mail, which goes to the requester's own mailbox).
pub fn compose_text(
    config: &crate::config::Config,
    to: &crate::domain::Mailbox,
    subject: &str,
    body: &str,
    key: &str,
    now: i64,
) -> anyhow::Result<NewMail> {
    plain(
        &config.smtp.from,
        to.as_str(),
        subject,
        body.to_owned(),
        key,
        "auto-replied",
        now,
        config.help.address.as_deref(),
    )
}
