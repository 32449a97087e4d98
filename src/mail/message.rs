//! A report as a MIME message: a text and an HTML part (header and table),
//! and the report attached.

use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox as Address, MultiPart};

use crate::report::{Channel, Report};
use crate::store::NewMail;

/// Composes the mail of `report`, from `from`, to the report's recipient
/// (the mailbox it is about; see [`Report::recipient`]).
///
/// `key` names what the mail is; the Message-ID derives from it, so a mail
/// queued twice under one key is the same message. `now` (unix seconds)
/// is its Date.
pub fn compose(report: &Report, from: &str, key: &str, now: i64) -> anyhow::Result<NewMail> {
    let to = report.recipient();
    let from_addr: Address = format!("mailtrail <{from}>")
        .parse()
        .map_err(|e| anyhow::anyhow!("smtp.from {from:?}: {e}"))?;
    let to_addr: Address = to
        .as_str()
        .parse()
        .map_err(|e| anyhow::anyhow!("recipient {to}: {e}"))?;
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let message_id = format!(
        "<{:016x}.{}@{}>",
        xxhash_rust::xxh3::xxh3_64(key.as_bytes()),
        report.spec.kind.as_str(),
        domain
    );
    // RFC 3834: mail the system sends by itself is auto-generated; a report
    // asked for is a reply. Either way, vacation responders stay quiet.
    let auto = match report.spec.requester.channel {
        Channel::Automatic => "auto-generated",
        _ => "auto-replied",
    };
    let attachment = Attachment::new(report.attachment.filename.clone()).body(
        report.attachment.bytes.clone(),
        ContentType::parse(report.attachment.content_type)?,
    );
    let message = Message::builder()
        .from(from_addr)
        .to(to_addr)
        .subject(report.subject.clone())
        .date(UNIX_EPOCH + Duration::from_secs(now.max(0) as u64))
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            auto.to_owned(),
        ))
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    report.text.clone(),
                    report.html.clone(),
                ))
                .singlepart(attachment),
        )?;
    Ok(NewMail {
        idem_key: key.to_owned(),
        recipient: to.to_string(),
        sender: from.to_owned(),
        subject: report.subject.clone(),
        message: message.formatted(),
    })
}
