//! mailtrail: the paper trail of a mail service, per mailbox.
//!
//! It reads the logs Postfix (and Dovecot) already write, joins their lines
//! into messages and deliveries, keeps them in a database, and answers one
//! mailbox owner's questions (what happened to the mail I sent? who
//! touched my mailbox?) with reports mailed to that mailbox only.
//!
//! Module map, in the order data flows:
//!
//! * [`config`]: `config.toml`, validated at load, unknown keys rejected.
//! * [`domain`]: values parsed once at the edge: [`domain::Mailbox`],
//!   [`domain::Day`], [`domain::DateRange`], local domains.
//! * [`ingest`]: sources (files, compressed ones, stdin) → syslog envelope → Postfix /
//!   Dovecot message shapes → correlation into per-mailbox rows (SMTP
//!   events, access events from Dovecot sessions, and received mail's
//!   facts from Postfix, Dovecot LMTP/Sieve/mail_log and the spam filter:
//!   [`ingest::received`]), committed
//!   in batches with the checkpoints and state that make it crash-safe.
//! * [`store`]: the database (SQLite by default, PostgreSQL for large
//!   sites): migrations, inserts, queries.
//! * [`history`]: a mailbox's SMTP sending history as text, JSON or CSV.
//! * [`access`]: a mailbox's access history (Dovecot logins, logouts,
//!   deletions, failed logins) with a per-day summary.
//! * [`received`]: mail received by a mailbox, one entry per message
//!   (delivered into which folder, forwarded, auto-replied, discarded,
//!   refused and why, held, the spam verdict), and where one message is
//!   now (`locate`).
//! * [`replies`]: remote replies in plain words: each bounce, deferral,
//!   expiry and refusal given a category, a sentence and advice, by rules
//!   that are data (`rules/replies.toml`, and a site's own file).
//! * [`report`]: either history rendered for a person (minijinja HTML and
//!   text, Traditional Chinese or English, with an inline SVG chart),
//!   zipped with a CSV when large, and as a PDF with its font embedded.
//! * [`requests`]: one durable row per report request, whatever the
//!   channel (the web form, mail, the command line, the nightly
//!   warnings), rendered into one queued mail to the report's own mailbox.
//! * [`mail`]: the MIME message, the relay (lettre), and the outbox worker
//!   with its retries.
//! * [`aggregate`], [`alerts`], [`schedule`]: the nightly job: each
//!   complete local day's per-mailbox table, threshold warnings once per
//!   mailbox and day, catch-up after downtime, retention.
//! * [`background`]: the thread, at a lower CPU priority, that renders and
//!   composes reports, so that the web form is served first.
//! * [`health`]: what `serve` knows of its own parts (`/health`), and the
//!   bounded retries after which a failing part ends the process.
//! * [`serve`]: all of it in one process: the follower, the scheduler, the
//!   worker and the web form, whose connections are bounded in number and
//!   in time.
//! * [`visible`]: log text made safe to show: control characters and
//!   bidirectional controls shown as their code points, everywhere a
//!   person reads log text (reports, pages, text output, CSV).
//! * [`net`]: client addresses against configured networks, IPv4-mapped
//!   IPv6 addresses as IPv4.
//! * [`cli`]: the command line; `main.rs` only calls [`cli::main`].

pub mod access;
pub mod aggregate;
pub mod alerts;
pub mod background;
pub mod cli;
pub mod config;
pub mod domain;
pub mod health;
pub mod history;
pub mod ingest;
pub mod mail;
pub mod net;
pub mod received;
pub mod replies;
pub mod report;
pub mod requests;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod visible;
