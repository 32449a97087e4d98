//! Requests for reports: one durable row per request, whatever the channel
//! (command line, web form, mail, the nightly warnings), rendered by one
//! function into one queued mail.

pub mod captcha;
pub mod mail;
pub mod web;

use anyhow::Context;

use crate::config::{Config, Lang};
use crate::domain::{DateRange, Day};
use crate::mail::message;
use crate::report::{self, Channel, Kind, Requester, Spec};
use crate::store::{NewRequest, RequestRow, Store};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A report.
    Report,
    /// A report with its PDF, asked for on the form where the site offers
    /// the choice (`report.pdf = "on_request"`).
    ReportPdf,
    /// A threshold warning: the day's SMTP report, with the thresholds the
    /// day crossed (recorded in `alerts`).
    Warning,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Report => "report",
            Purpose::ReportPdf => "report_pdf",
            Purpose::Warning => "warning",
        }
    }
}

/// Writes a request for a report of `spec`; the worker (or the caller,
/// with [`process`]) renders and queues it. `key` names the mail for
/// idempotence; `None` makes every request its own mail. A key already
/// taken returns the request that holds it.
pub async fn submit(store: &Store, spec: &Spec, key: Option<&str>) -> anyhow::Result<i64> {
    submit_as(store, spec, key, Purpose::Report).await
}

/// [`submit`], for either purpose.
pub async fn submit_as(
    store: &Store,
    spec: &Spec,
    key: Option<&str>,
    purpose: Purpose,
) -> anyhow::Result<i64> {
    store.insert_request(&new_request(spec, key, purpose)).await
}

/// The row a request for `spec` is stored as.
pub fn new_request(spec: &Spec, key: Option<&str>, purpose: Purpose) -> NewRequest {
    NewRequest {
        mailbox: spec.mailbox.to_string(),
        kind: spec.kind.as_str().to_owned(),
        from_day: spec.range.from.key(),
        to_day: spec.range.to.key(),
        lang: spec.lang.as_str().to_owned(),
        channel: spec.requester.channel.as_str().to_owned(),
        client_ip: spec.requester.client_ip.clone(),
        requested_at: spec.requester.at,
        idem_key: key.map(str::to_owned),
        purpose: purpose.as_str().to_owned(),
    }
}

/// The spec a stored request describes.
pub fn spec_of(row: &RequestRow, config: &Config) -> anyhow::Result<Spec> {
    let r = &row.request;
    let day = |k: i32| Day::from_key(k).with_context(|| format!("bad day {k}"));
    Ok(Spec {
        // Parsed again as a recipient: a request stored before the rules
        // for addresses changed is still mailed only to a local mailbox.
        mailbox: config.local_domains().mailbox(&r.mailbox)?,
        kind: Kind::parse(&r.kind).with_context(|| format!("bad kind {:?}", r.kind))?,
        range: DateRange::new(day(r.from_day)?, day(r.to_day)?)?,
        lang: r.lang.parse::<Lang>()?,
        requester: Requester {
            channel: Channel::parse(&r.channel)
                .with_context(|| format!("bad channel {:?}", r.channel))?,
            client_ip: r.client_ip.clone(),
            at: r.requested_at,
        },
    })
}

/// The key a request's mail is queued under.
pub fn mail_key(row: &RequestRow) -> String {
    row.request
        .idem_key
        .clone()
        .unwrap_or_else(|| format!("request:{}", row.id))
}

/// Renders one request and queues its mail (to the report's owner, and
/// nobody else); marks the request done in the same transaction. Returns
/// the outbox id. A request that cannot be rendered is marked failed with
/// the reason.
pub async fn process(store: &Store, config: &Config, row: &RequestRow) -> anyhow::Result<i64> {
    let result = async {
        let spec = spec_of(row, config)?;
        let report = match row.request.purpose.as_str() {
            "warning" => {
                let crossed =
                    crate::alerts::recorded(store, spec.range.from, &spec.mailbox).await?;
                anyhow::ensure!(
                    !crossed.is_empty(),
                    "no threshold recorded for this warning"
                );
                report::build_warning(store, config, spec, crossed).await?
            }
            "report_pdf" => report::build_asked(store, config, spec, true).await?,
            _ => report::build(store, config, spec).await?,
        };
        let now = chrono::Utc::now().timestamp();
        let (from, key) = (config.smtp.from.clone(), mail_key(row));
        let mail =
            crate::background::run(move || message::compose(&report, &from, &key, now)).await??;
        crate::mail::queue(store, config, &mail, Some(row.id), now).await
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!(request = row.id, "cannot render the request: {e:#}");
        store.fail_request(row.id, &format!("{e:#}")).await?;
    }
    result
}

/// Processes pending requests, oldest first, at most `limit` of them
/// (all when `None`); returns how many were queued.
pub async fn process_pending(
    store: &Store,
    config: &Config,
    limit: Option<usize>,
) -> anyhow::Result<usize> {
    let mut queued = 0;
    let mut seen = 0;
    loop {
        let want = limit.map_or(50, |l| l.saturating_sub(seen).min(50));
        if want == 0 {
            return Ok(queued);
        }
        let rows = store.pending_requests(want as i64).await?;
        if rows.is_empty() {
            return Ok(queued);
        }
        for row in &rows {
            seen += 1;
            if process(store, config, row).await.is_ok() {
                queued += 1;
            }
        }
    }
}
