//! Mail out: composing ([`message`]), the relay ([`mailer`]), and the
//! outbox worker that sends what is queued.
//!
//! Every mail is an outbox row before it is sent. The worker takes a due
//! row for one attempt (a lease: a crashed attempt is retried after it
//! runs out), sends it with a time limit, and records the outcome. A 4xx
//! answer, a refused connection or a timeout is tried again after a wait
//! that doubles each time; after `smtp.max_attempts` attempts, or at once
//! on a 5xx answer, the mail is failed and stays in the table with the
//! relay's last answer. A crash between the relay's acceptance and the
//! record of it sends the mail once more, never more.
//!
//! Mail goes only to plain local mailboxes ([`crate::domain::LocalDomains::mailbox`]),
//! and only so much to each in a day: [`queue`] refuses any other
//! recipient and counts the recipient's mail of the last 24 hours in the
//! database, and the worker checks the recipient again before it sends, as
//! a last line of defence.

pub mod mailer;
pub mod message;

use std::time::Duration;

use crate::config::{Config, SmtpConfig};
use crate::store::{MailCap, NewMail, Queued, Store};

pub use mailer::{Mailer, SendError};

/// What one pass of the worker did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Requests rendered and queued.
    pub rendered: usize,
    pub sent: usize,
    /// Attempts that failed and will be retried.
    pub retrying: usize,
    /// Mails given up for good.
    pub failed: usize,
    /// How the pass's last attempt to send went, if it made one: `Err`
    /// with the error when it failed (the relay refused, answered 4xx or
    /// 5xx, or could not be reached in time).
    pub last_attempt: Option<Result<(), String>>,
    /// Mails not sent because their recipient is not a plain local
    /// mailbox (failed, with the reason).
    pub refused: usize,
}

impl Pass {
    fn add(&mut self, o: Pass) {
        self.rendered += o.rendered;
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.refused += o.refused;
        if o.last_attempt.is_some() {
            self.last_attempt = o.last_attempt;
        }
    }
}

/// Why a mail was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a plain local mailbox: mailtrail mails nobody else.
    #[error("{0:?} is not a plain mailbox of this mail service: not mailed")]
    NotLocal(String),
    /// The recipient has had the day's mail.
    #[error(
        "{recipient} has been sent {count} mails in 24 hours, the limit (smtp.{key}): not mailed"
    )]
    Limited {
        recipient: String,
        count: i64,
        key: &'static str,
    },
}

/// Key prefix of help replies to unreadable requests by mail.
pub const HELP_KEY_PREFIX: &str = "help:";

/// Queues `mail` (answering request `request_id`, if any) when its
/// recipient is a plain local mailbox and has not had its mail for the
/// day: at most `smtp.max_mails_per_recipient_per_day` in 24 hours, of
/// which at most `smtp.max_help_replies_per_recipient_per_day` help
/// replies. Returns the outbox id (a mail queued before under the same key
/// is not queued again), or [`Refused`] as the error, logged.
pub async fn queue(
    store: &Store,
    config: &Config,
    mail: &NewMail,
    request_id: Option<i64>,
    now: i64,
) -> anyhow::Result<i64> {
    if !config.local_domains().is_local_mailbox(&mail.recipient) {
        let e = Refused::NotLocal(mail.recipient.clone());
        tracing::warn!(key = ?mail.idem_key, "{e}");
        return Err(e.into());
    }
    let help = mail.idem_key.starts_with(HELP_KEY_PREFIX);
    let c = &config.smtp;
    let cap = MailCap {
        since: now - 86_400,
        all: i64::from(c.max_mails_per_recipient_per_day),
        same_kind: help.then_some((
            HELP_KEY_PREFIX,
            i64::from(c.max_help_replies_per_recipient_per_day),
        )),
    };
    match store.queue_mail(mail, request_id, now, &cap).await? {
        Queued::Added(id) | Queued::Already(id) => Ok(id),
        Queued::Limited(count) => {
            let key = if help && count < cap.all {
                "max_help_replies_per_recipient_per_day"
            } else {
                "max_mails_per_recipient_per_day"
            };
            let e = Refused::Limited {
                recipient: mail.recipient.clone(),
                count,
                key,
            };
            tracing::warn!(key = ?mail.idem_key, "{e}");
            Err(e.into())
        }
    }
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones.
pub fn backoff(c: &SmtpConfig, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    c.retry_initial_secs
        .saturating_mul(1u64 << doublings)
        .min(c.retry_max_secs)
}

/// Sends every mail due at `now` (unix seconds), one at a time. A mail
/// whose recipient is not a plain local mailbox (queued by an older
/// version, or written into the table by hand) is failed, not sent.
pub async fn send_due(
    store: &Store,
    mailer: &Mailer,
    config: &Config,
    now: i64,
) -> anyhow::Result<Pass> {
    let c = &config.smtp;
    let local = config.local_domains();
    let mut pass = Pass::default();
    let lease = now + c.timeout_secs as i64 + 60;
    while let Some(mail) = store.claim_mail(now, lease).await? {
        let attempts = u32::try_from(mail.attempts).unwrap_or(u32::MAX);
        if !local.is_local_mailbox(&mail.recipient) {
            let e = Refused::NotLocal(mail.recipient.clone());
            store.mail_failed(mail.id, &e.to_string(), None).await?;
            tracing::error!(outbox = mail.id, "{e}");
            pass.refused += 1;
            continue;
        }
        match mailer
            .send(&mail.sender, &mail.recipient, &mail.message)
            .await
        {
            Ok(()) => {
                store
                    .mail_sent(mail.id, chrono::Utc::now().timestamp())
                    .await?;
                tracing::info!(outbox = mail.id, to = %mail.recipient, attempts, "sent");
                pass.sent += 1;
                pass.last_attempt = Some(Ok(()));
            }
            Err(e) => {
                let retry = match &e {
                    SendError::Transient(_) if attempts < c.max_attempts => {
                        Some(now + backoff(c, attempts) as i64)
                    }
                    _ => None,
                };
                let error = format!("attempt {attempts}: {e}");
                pass.last_attempt = Some(Err(e.to_string()));
                store.mail_failed(mail.id, &error, retry).await?;
                if retry.is_some() {
                    tracing::warn!(outbox = mail.id, to = %mail.recipient, "{error}; will retry");
                    pass.retrying += 1;
                } else {
                    tracing::error!(outbox = mail.id, to = %mail.recipient, "{error}; given up");
                    pass.failed += 1;
                }
            }
        }
    }
    Ok(pass)
}

/// Requests rendered per pass of a running worker: under a burst the
/// backlog waits in the table instead of taking every core from the web
/// form and the ingest.
pub const RENDER_PER_PASS: usize = 20;

/// One pass: render pending requests, then send what is due now.
pub async fn run_once(store: &Store, config: &Config, mailer: &Mailer) -> anyhow::Result<Pass> {
    pass(store, config, mailer, None).await
}

/// A pass rendering at most `limit` requests (all when `None`).
async fn pass(
    store: &Store,
    config: &Config,
    mailer: &Mailer,
    limit: Option<usize>,
) -> anyhow::Result<Pass> {
    let mut pass = Pass {
        rendered: crate::requests::process_pending(store, config, limit).await?,
        ..Pass::default()
    };
    let now = chrono::Utc::now().timestamp();
    pass.add(send_due(store, mailer, config, now).await?);
    Ok(pass)
}

/// Passes every `poll` until `shutdown` resolves. A pass under way when
/// it does finishes first, so no send is cut off. `on_pass` gets each
/// pass that ran.
///
/// A pass that fails (the database full, gone, locked or unreadable) is
/// tried again after a wait that grows (see [`crate::health::Retry`]);
/// when passes have failed for `retry_for` in a row, the error is
/// returned, for the process to exit and be restarted.
pub async fn run(
    store: &Store,
    config: &Config,
    mailer: &Mailer,
    poll: Duration,
    retry_for: Duration,
    mut on_pass: impl FnMut(&Pass),
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Pass> {
    tokio::pin!(shutdown);
    let mut total = Pass::default();
    let mut retry = crate::health::Retry::new(retry_for);
    loop {
        let wait = match pass(store, config, mailer, Some(RENDER_PER_PASS)).await {
            Ok(p) => {
                if retry.succeeded() {
                    tracing::info!("outbox passes work again");
                }
                on_pass(&p);
                total.add(p);
                poll
            }
            Err(e) => match retry.failed() {
                Ok(wait) => {
                    if retry.attempts() == 1 {
                        tracing::warn!("outbox pass failed, retrying: {e:#}");
                    }
                    wait
                }
                Err(why) => {
                    return Err(e.context(format!(
                        "the outbox worker stopped: passes {why}; exiting so that the \
                         service manager restarts mailtrail (queued mail stays queued)"
                    )));
                }
            },
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(total),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
