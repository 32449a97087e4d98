//! `config.toml`: the schema, its defaults, and the checks made at load.
//!
//! Every table rejects unknown keys, so a typo in an operator's file is an
//! error at start-up rather than a setting silently ignored. The top-level
//! names (`timezone`, `local_domains`, `default_domain`, `database_url`,
//! `retention_days`, `webmail_networks`) are a promise to operators: they keep
//! their meaning in every later version.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono_tz::Tz;
use ipnet::IpNet;
use serde::Deserialize;

/// Where `--config` points when it is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// The whole configuration, as read from `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// IANA zone name. Decides local day boundaries and the zone of log
    /// stamps that carry no offset (classic syslog, Postfix `maillog_file`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Domains whose mailboxes are ours. `example.edu` matches that domain
    /// only; `.example.edu` matches it and every subdomain.
    pub local_domains: Vec<String>,
    /// Domain given to bare user names (`alice`) found in logs and requests.
    pub default_domain: String,
    /// Postfix's `recipient_delimiter`: each character separates a local
    /// part from its extension (`judy+news@` is delivered to `judy@`), so
    /// an address with an extension is its base mailbox's, for records,
    /// reports and limits. Empty: no delimiter.
    #[serde(default = "default_recipient_delimiter")]
    pub recipient_delimiter: String,
    /// sqlx URL: `sqlite://path?mode=rwc` or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// How long `serve` (and `worker`) go on retrying a database that
    /// fails (full, gone, locked, unreadable), with a growing wait between
    /// attempts, before they exit with a failure status for the service
    /// manager to restart them. Two minutes outlast a database server's
    /// restart or a lock held by a backup, and keep a fault that lasts
    /// from looking like a running service for long.
    #[serde(default = "default_database_retry_secs")]
    pub database_retry_secs: u64,
    /// Days of records kept.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Client networks of the webmail front end; its logins are labelled
    /// webmail in access reports.
    #[serde(default)]
    pub webmail_networks: Vec<IpNet>,
    /// How logs are read.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The relay that mails reports and warnings.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// How reports are built.
    #[serde(default)]
    pub report: ReportConfig,
    /// The nightly aggregation and the warnings to senders.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The web form.
    #[serde(default)]
    pub web: WebConfig,
    /// How remote replies are explained: the site's own rules, and this
    /// site's sending addresses and names for the "whose fault" check.
    #[serde(default)]
    pub replies: crate::replies::RepliesConfig,
    /// Whom a mailbox owner asks about a report.
    #[serde(default)]
    pub help: HelpConfig,
}

/// The `[help]` table: the site's help contact, shown on the form, in
/// every report and warning, and the Reply-To of every mail mailtrail
/// sends (so a reply reaches people, not the request parser).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpConfig {
    /// The helpdesk's mail address.
    #[serde(default)]
    pub address: Option<String>,
    /// The help pages (`https://...`).
    #[serde(default)]
    pub url: Option<String>,
}

impl HelpConfig {
    /// The longest help URL accepted.
    pub const MAX_URL: usize = 512;

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(a) = &self.address {
            let ok = a.len() <= 254
                && a.split_once('@').is_some_and(|(l, d)| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"@".contains(&b))
                        && crate::domain::is_valid_domain(d)
                });
            if !ok {
                bail!("help.address: {a:?} is not a plain mail address (local@domain)");
            }
        }
        if let Some(u) = &self.url
            && (u.len() > Self::MAX_URL
                || !(u.starts_with("https://") || u.starts_with("http://"))
                || u.len() <= "https://".len()
                || !u
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>\"'`\\".contains(&b)))
        {
            bail!(
                "help.url: {u:?} is not an http(s) URL of at most {} characters without spaces, quotes or angle brackets",
                Self::MAX_URL
            );
        }
        Ok(())
    }
}

/// The `[web]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address and port the form is served on.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// Client networks that may use the form (the campus). Loopback only
    /// by default.
    #[serde(default = "default_allowed_networks")]
    pub allowed_networks: Vec<IpNet>,
    /// Reverse proxies whose `X-Forwarded-For` is believed. From any other
    /// peer the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Requests accepted per client address in an hour (form and mail).
    #[serde(default = "default_per_client")]
    pub max_per_client_per_hour: u32,
    /// Requests accepted per mailbox in a day (form and mail).
    #[serde(default = "default_per_mailbox")]
    pub max_per_mailbox_per_day: u32,
    /// Seconds a verification code stays valid.
    #[serde(default = "default_code_ttl")]
    pub code_ttl_secs: u32,
    /// Posts whose verification failed (a wrong, used or expired code, a
    /// missing proof of work) accepted per client address in an hour;
    /// after that every post from it is refused (429) until the hour has
    /// passed.
    #[serde(default = "default_guesses_per_client")]
    pub max_guesses_per_client_per_hour: u32,
    /// The same, per mailbox asked for.
    #[serde(default = "default_guesses_per_mailbox")]
    pub max_guesses_per_mailbox_per_hour: u32,
    /// Leading zero bits the form's proof of work must find (about 2^bits
    /// hashes in the browser; each bit doubles the work).
    #[serde(default = "default_pow_bits")]
    pub proof_of_work_bits: u8,
    /// Whether a post with the right code but no proof of work (a browser
    /// without JavaScript) is accepted.
    #[serde(default)]
    pub code_alone_accepted: bool,
    /// Seconds a client has to send a request's head (method, path,
    /// headers), from its connection or, on a kept-alive connection, from
    /// the first byte of the request. A client that sends part of a head
    /// and stalls is cut off after this.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a request's body has to arrive, from the end of its head.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Seconds a connection may sit idle between requests (keep-alive), and
    /// the longest a response may wait for the client to read it.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Connections served at once. Lowered at start to what the process's
    /// file limit (`RLIMIT_NOFILE`) leaves after the files and database
    /// connections the rest of the service needs. When it is reached, a
    /// new connection closes the one that has waited longest without a
    /// request in progress; when every connection has one, the new
    /// connection is closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// On SIGTERM, seconds requests under way have to finish before every
    /// connection still open is dropped.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [web] key has a default")
    }
}

/// The `[alerts]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Each rule warns a mailbox whose day reached `threshold` in
    /// `metric`. Default: Sum >= 250, Bounced >= 10.
    #[serde(default = "default_rules")]
    pub rules: Vec<Rule>,
    /// Minutes past local midnight before a day counts as complete, so
    /// late lines (queue runs, log shipping) arrive first.
    #[serde(default = "default_settle_minutes")]
    pub settle_minutes: u32,
    /// After downtime, days older than this many days are aggregated but
    /// not warned about.
    #[serde(default = "default_catch_up_days")]
    pub catch_up_days: u32,
    /// Where one digest per night lists every mailbox warned; none when
    /// absent.
    pub admin_digest: Option<String>,
    /// Rows deleted per transaction by the retention purge.
    #[serde(default = "default_purge_batch")]
    pub purge_batch: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [alerts] key has a default")
    }
}

/// One threshold rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub metric: Metric,
    pub threshold: i64,
    /// Exceptions, most specific first: a mailbox's own entry wins over
    /// its domain's.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// A per-domain or per-mailbox exception to a rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// One mailbox (`list-owner@example.edu`).
    pub mailbox: Option<String>,
    /// A domain; a leading dot also matches subdomains.
    pub domain: Option<String>,
    /// Another threshold for these mailboxes.
    pub threshold: Option<i64>,
    /// Never warn these mailboxes under this rule.
    #[serde(default)]
    pub exempt: bool,
}

/// A column of the daily table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Sum,
    AuthBlk,
    AuthRcv,
    Bounced,
    Deferred,
    Expired,
    Sent,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Sum => "sum",
            Metric::AuthBlk => "auth_blk",
            Metric::AuthRcv => "auth_rcv",
            Metric::Bounced => "bounced",
            Metric::Deferred => "deferred",
            Metric::Expired => "expired",
            Metric::Sent => "sent",
        }
    }

    /// The column's name as users know it.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Sum => "Sum",
            Metric::AuthBlk => "Auth_blk",
            Metric::AuthRcv => "Auth_rcv",
            Metric::Bounced => "Bounced",
            Metric::Deferred => "Deferred",
            Metric::Expired => "Expired",
            Metric::Sent => "Sent",
        }
    }
}

/// How the outbox reaches the mail relay: the `[smtp]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name or address.
    #[serde(default = "default_smtp_host")]
    pub host: String,
    /// Its port: 25 for a local relay, 587 for submission with STARTTLS,
    /// 465 for implicit TLS.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name for SMTP AUTH; no AUTH when absent.
    pub username: Option<String>,
    /// Password for SMTP AUTH. The environment variable
    /// `MAILTRAIL_SMTP_PASSWORD` overrides it, so it need not be in the file.
    pub password: Option<String>,
    /// The From address of every mail mailtrail sends, and the envelope
    /// sender.
    #[serde(default = "default_smtp_from")]
    pub from: String,
    /// Limit on one whole send (connect, dialogue, data).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The relay's size limit (Postfix's `message_size_limit`). A report
    /// that would not fit even zipped is truncated, and says so.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Attempts before a mail is given up as failed.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each further
    /// one, up to `retry_max_secs`.
    #[serde(default = "default_retry_initial_secs")]
    pub retry_initial_secs: u64,
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// Mails of every kind (reports, warnings, help replies) queued to one
    /// mailbox in 24 hours, at most.
    #[serde(default = "default_max_mails_per_recipient")]
    pub max_mails_per_recipient_per_day: u32,
    /// Help replies to unreadable requests by mail queued to one mailbox
    /// in 24 hours, at most: anyone can forge a request's sender.
    #[serde(default = "default_max_help_per_recipient")]
    pub max_help_replies_per_recipient_per_day: u32,
}

/// `tls` in `[smtp]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP; for a relay on loopback or a trusted network only.
    #[default]
    None,
    /// STARTTLS, required (the connection fails without it).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }
}

/// The password is never printed, even in debug output.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_attempts", &self.max_attempts)
            .field(
                "max_mails_per_recipient_per_day",
                &self.max_mails_per_recipient_per_day,
            )
            .field(
                "max_help_replies_per_recipient_per_day",
                &self.max_help_replies_per_recipient_per_day,
            )
            .finish_non_exhaustive()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [smtp] key has a default")
    }
}

impl SmtpConfig {
    /// The password: `MAILTRAIL_SMTP_PASSWORD` when set, else the file's.
    pub fn password(&self) -> Option<String> {
        std::env::var("MAILTRAIL_SMTP_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| self.password.clone())
    }
}

/// The `[report]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Reports whose HTML is larger than this are mailed as a ZIP holding
    /// the HTML and a CSV of the same rows.
    #[serde(default = "default_zip_over_bytes")]
    pub zip_over_bytes: u64,
    /// Zip every report, whatever its size.
    #[serde(default)]
    pub always_zip: bool,
    /// `zh-TW` or `en`, for reports that do not name a language.
    #[serde(default)]
    pub default_language: Lang,
    /// Whether reports also carry a PDF of the same rows.
    #[serde(default)]
    pub pdf: PdfMode,
    /// A TrueType or OpenType font (or collection: its first font) with
    /// Chinese glyphs, embedded in the PDFs.
    #[serde(default = "default_pdf_font")]
    pub pdf_font: std::path::PathBuf,
}

/// When a report carries a PDF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PdfMode {
    /// Every report and warning.
    Always,
    /// Only when the request asks for one.
    OnRequest,
    /// Never (the font need not be installed).
    #[default]
    Never,
}

fn default_pdf_font() -> std::path::PathBuf {
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc".into()
}

impl Default for ReportConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [report] key has a default")
    }
}

/// The languages reports are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Lang {
    /// Traditional Chinese.
    #[default]
    #[serde(rename = "zh-TW")]
    ZhTw,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::ZhTw => "zh-TW",
            Lang::En => "en",
        }
    }
}

impl std::str::FromStr for Lang {
    type Err = crate::domain::InputError;
    fn from_str(s: &str) -> Result<Lang, Self::Err> {
        match s {
            "zh-TW" | "zh-tw" | "zh_TW" | "zh" => Ok(Lang::ZhTw),
            "en" | "EN" => Ok(Lang::En),
            _ => Err(crate::domain::InputError::BadLanguage(s.to_owned())),
        }
    }
}

/// The `[ingest]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Log files `serve` follows.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Relays that belong to this mail system, such as a content filter on
    /// loopback. A delivery to one of them is never final: accepted, it is a
    /// hand-off, and the message is followed to the copy the relay
    /// re-injects; refused, it is a row of its own (blocked).
    #[serde(default = "default_internal_relays")]
    pub internal_relays: Vec<IpNet>,
    /// Lines per database transaction. Larger batches ingest faster; smaller
    /// ones make new lines visible sooner.
    #[serde(default = "default_batch_lines")]
    pub batch_lines: usize,
    /// How long a one-shot `mailtrail ingest` goes on adding batches to one
    /// transaction before it commits; 0 commits every batch. (`serve`
    /// commits every batch.)
    #[serde(default = "default_commit_after_ms")]
    pub commit_after_ms: u64,
    /// Name under which this ingest keeps its state (messages in flight)
    /// in the database. Ingests that share one database, one per mail
    /// host, each need their own; only one process at a time may use a
    /// name.
    #[serde(default = "default_agent")]
    pub agent: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            paths: Vec::new(),
            internal_relays: default_internal_relays(),
            batch_lines: default_batch_lines(),
            commit_after_ms: default_commit_after_ms(),
            agent: default_agent(),
        }
    }
}

fn default_timezone() -> String {
    "UTC".to_owned()
}
fn default_recipient_delimiter() -> String {
    crate::domain::DEFAULT_DELIMITERS.to_owned()
}
fn default_database_url() -> String {
    "sqlite://var/mailtrail.db?mode=rwc".to_owned()
}
fn default_database_retry_secs() -> u64 {
    crate::health::DEFAULT_RETRY_SECS
}
fn default_retention_days() -> u32 {
    31
}
fn default_internal_relays() -> Vec<IpNet> {
    // Content filters (amavis, rspamd proxies, PMG) listen on loopback.
    vec![
        "127.0.0.0/8".parse().expect("constant network"),
        "::1/128".parse().expect("constant network"),
    ]
}
fn default_batch_lines() -> usize {
    200_000
}
fn default_commit_after_ms() -> u64 {
    1000
}
fn default_agent() -> String {
    crate::ingest::DEFAULT_AGENT.to_owned()
}
fn default_smtp_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_smtp_port() -> u16 {
    25
}
fn default_smtp_from() -> String {
    "mailtrail@localhost".to_owned()
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_max_message_bytes() -> u64 {
    // Postfix's default message_size_limit.
    10_240_000
}
fn default_max_attempts() -> u32 {
    8
}
fn default_retry_initial_secs() -> u64 {
    60
}
fn default_retry_max_secs() -> u64 {
    6 * 3600
}
fn default_max_mails_per_recipient() -> u32 {
    // Five reports asked for (web.max_per_mailbox_per_day), a warning,
    // help replies, and room to spare.
    10
}
fn default_max_help_per_recipient() -> u32 {
    2
}
fn default_listen() -> std::net::SocketAddr {
    "127.0.0.1:8080".parse().expect("constant address")
}
fn default_allowed_networks() -> Vec<IpNet> {
    default_internal_relays()
}
fn default_per_client() -> u32 {
    10
}
fn default_per_mailbox() -> u32 {
    5
}
fn default_code_ttl() -> u32 {
    600
}
fn default_guesses_per_client() -> u32 {
    30
}
fn default_guesses_per_mailbox() -> u32 {
    10
}
fn default_pow_bits() -> u8 {
    18
}
fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    30
}
fn default_max_connections() -> u32 {
    512
}
fn default_shutdown_grace() -> u64 {
    3
}
fn default_rules() -> Vec<Rule> {
    vec![
        Rule {
            metric: Metric::Sum,
            threshold: 250,
            overrides: Vec::new(),
        },
        Rule {
            metric: Metric::Bounced,
            threshold: 10,
            overrides: Vec::new(),
        },
    ]
}
fn default_settle_minutes() -> u32 {
    30
}
fn default_catch_up_days() -> u32 {
    3
}
fn default_purge_batch() -> u32 {
    5000
}
fn default_zip_over_bytes() -> u64 {
    1024 * 1024
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// Returns `Err` naming the file when it cannot be read, does not parse,
    /// has an unknown key, or fails a check of [`Config::validate`].
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config = Config::from_toml(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.tz()?;
        if self.local_domains.is_empty() {
            bail!("local_domains is empty: no mailbox would be ours");
        }
        for d in &self.local_domains {
            let bare = d.strip_prefix('.').unwrap_or(d);
            if !crate::domain::is_valid_domain(bare) {
                bail!("local_domains: {d:?} is not a domain name");
            }
        }
        if !crate::domain::is_valid_domain(&self.default_domain) {
            bail!(
                "default_domain: {:?} is not a domain name",
                self.default_domain
            );
        }
        if self.recipient_delimiter.len() > 16 {
            bail!("recipient_delimiter: at most 16 characters");
        }
        if let Some(c) = self
            .recipient_delimiter
            .chars()
            .find(|&c| !"#$&'*+-/=?^_`{|}~".contains(c))
        {
            bail!(
                "recipient_delimiter: {c:?} cannot separate an extension (use characters such as + - _ =)"
            );
        }
        if self.retention_days == 0 {
            bail!("retention_days must be at least 1");
        }
        if self.report.pdf != PdfMode::Never {
            // Read once per process: the reports use the same copy.
            crate::report::pdf::PdfFont::cached(&self.report.pdf_font)?;
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres:")
            || self.database_url.starts_with("postgresql:"))
        {
            bail!(
                "database_url must start with sqlite: or postgres: (got {:?})",
                self.database_url
            );
        }
        if !(1..=3600).contains(&self.database_retry_secs) {
            bail!(
                "database_retry_secs must be 1 to 3600 (got {})",
                self.database_retry_secs
            );
        }
        if self.ingest.batch_lines == 0 {
            bail!("ingest.batch_lines must be at least 1");
        }
        crate::ingest::check_agent(&self.ingest.agent).context("ingest.agent")?;
        self.replies.validate()?;
        self.help.validate()?;
        let smtp = &self.smtp;
        if smtp.host.trim().is_empty() {
            bail!("smtp.host is empty");
        }
        if crate::domain::Mailbox::parse(&smtp.from, self).is_err() {
            bail!("smtp.from: {:?} is not a mail address", smtp.from);
        }
        if smtp.password.is_some() && smtp.username.is_none() {
            bail!("smtp.password is set but smtp.username is not");
        }
        if smtp.timeout_secs == 0 {
            bail!("smtp.timeout_secs must be at least 1");
        }
        if smtp.max_attempts == 0 {
            bail!("smtp.max_attempts must be at least 1");
        }
        if smtp.retry_initial_secs == 0 || smtp.retry_max_secs < smtp.retry_initial_secs {
            bail!("smtp.retry_initial_secs must be at least 1 and at most smtp.retry_max_secs");
        }
        if smtp.max_mails_per_recipient_per_day == 0 {
            bail!("smtp.max_mails_per_recipient_per_day must be at least 1");
        }
        if smtp.max_mails_per_recipient_per_day > 10_000
            || smtp.max_help_replies_per_recipient_per_day > 10_000
        {
            bail!(
                "smtp.max_mails_per_recipient_per_day and smtp.max_help_replies_per_recipient_per_day are at most 10000"
            );
        }
        if smtp.max_message_bytes < 64 * 1024 {
            bail!("smtp.max_message_bytes must be at least 65536");
        }
        let w = &self.web;
        for (name, secs) in [
            ("web.header_timeout_secs", w.header_timeout_secs),
            ("web.body_timeout_secs", w.body_timeout_secs),
            ("web.idle_timeout_secs", w.idle_timeout_secs),
        ] {
            if !(1..=3600).contains(&secs) {
                bail!("{name} must be from 1 to 3600 (got {secs})");
            }
        }
        if w.shutdown_grace_secs > 60 {
            bail!(
                "web.shutdown_grace_secs must be at most 60 (got {})",
                w.shutdown_grace_secs
            );
        }
        if w.max_connections == 0 {
            bail!("web.max_connections must be at least 1");
        }
        let a = &self.alerts;
        for (i, r) in a.rules.iter().enumerate() {
            let name = format!("alerts.rules[{i}] ({})", r.metric.as_str());
            if r.threshold < 1 {
                bail!("{name}: threshold must be at least 1");
            }
            for o in &r.overrides {
                match (&o.mailbox, &o.domain) {
                    (Some(m), None) => {
                        crate::domain::Mailbox::parse(m, self)
                            .with_context(|| format!("{name}: override mailbox"))?;
                    }
                    (None, Some(d)) => {
                        if !crate::domain::is_valid_domain(d.strip_prefix('.').unwrap_or(d)) {
                            bail!("{name}: override domain {d:?} is not a domain name");
                        }
                    }
                    _ => bail!("{name}: an override names exactly one of mailbox or domain"),
                }
                if o.exempt == o.threshold.is_some() {
                    bail!("{name}: an override sets either threshold or exempt = true");
                }
                if o.threshold.is_some_and(|t| t < 1) {
                    bail!("{name}: override threshold must be at least 1");
                }
            }
        }
        if a.settle_minutes >= 24 * 60 {
            bail!("alerts.settle_minutes must be less than a day");
        }
        if let Some(d) = &a.admin_digest
            && let Err(e) = self.local_domains().mailbox(d)
        {
            bail!("alerts.admin_digest: {e} (mailtrail mails only mailboxes of this mail service)");
        }
        if a.purge_batch == 0 {
            bail!("alerts.purge_batch must be at least 1");
        }
        let w = &self.web;
        if w.max_guesses_per_client_per_hour == 0 || w.max_guesses_per_mailbox_per_hour == 0 {
            bail!(
                "web.max_guesses_per_client_per_hour and web.max_guesses_per_mailbox_per_hour must be at least 1"
            );
        }
        if !(1..=30).contains(&w.proof_of_work_bits) {
            bail!("web.proof_of_work_bits must be from 1 to 30");
        }
        Ok(())
    }

    /// The configured zone.
    pub fn tz(&self) -> anyhow::Result<Tz> {
        self.timezone
            .parse::<Tz>()
            .map_err(|_| anyhow::anyhow!("timezone {:?} is not an IANA zone name", self.timezone))
    }

    /// The local day of `unix` (seconds) in the configured zone.
    pub fn day_of(&self, unix: i64) -> anyhow::Result<crate::domain::Day> {
        let t = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
        Ok(crate::domain::Day::from_date(
            t.with_timezone(&self.tz()?).date_naive(),
        ))
    }

    /// Today in the configured zone.
    pub fn today(&self) -> anyhow::Result<crate::domain::Day> {
        self.day_of(chrono::Utc::now().timestamp())
    }

    /// The first day of the retention window that ends on `last`.
    pub fn retention_start(&self, last: crate::domain::Day) -> crate::domain::Day {
        last.minus(self.retention_days - 1)
    }

    /// The rules that decide which addresses are ours.
    pub fn local_domains(&self) -> crate::domain::LocalDomains {
        crate::domain::LocalDomains::new(&self.local_domains, &self.default_domain)
            .with_delimiters(&self.recipient_delimiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
timezone = "Asia/Taipei"
local_domains = [".example.edu"]
default_domain = "example.edu"
"#;

    #[test]
    fn minimal_file_takes_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.retention_days, 31);
        assert_eq!(c.tz().unwrap(), chrono_tz::Asia::Taipei);
        assert!(c.database_url.starts_with("sqlite:"));
        assert_eq!(c.ingest.internal_relays.len(), 2);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = Config::from_toml(&format!("{MINIMAL}\nretention_dayz = 3\n")).unwrap_err();
        assert!(format!("{err:#}").contains("retention_dayz"), "{err:#}");
        let err = Config::from_toml(&format!("{MINIMAL}\n[ingest]\npath = []\n")).unwrap_err();
        assert!(format!("{err:#}").contains("path"), "{err:#}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let bad_tz = MINIMAL.replace("Asia/Taipei", "Mars/Olympus");
        assert!(Config::from_toml(&bad_tz).is_err());
        let bad_domain = MINIMAL.replace("\".example.edu\"", "\"not a domain\"");
        assert!(Config::from_toml(&bad_domain).is_err());
        let no_domains = MINIMAL.replace("[\".example.edu\"]", "[]");
        assert!(Config::from_toml(&no_domains).is_err());
        let bad_db = format!("{MINIMAL}database_url = \"mysql://x\"\n");
        assert!(Config::from_toml(&bad_db).is_err());
    }

    #[test]
    fn the_form_verification_settings_are_checked() {
        let web = |line: &str| Config::from_toml(&format!("{MINIMAL}[web]\n{line}\n"));
        let c = web("").unwrap();
        assert_eq!(
            (
                c.web.proof_of_work_bits,
                c.web.code_alone_accepted,
                c.web.max_guesses_per_client_per_hour,
                c.web.max_guesses_per_mailbox_per_hour
            ),
            (18, false, 30, 10)
        );
        for bad in [
            "proof_of_work_bits = 0",
            "proof_of_work_bits = 31",
            "proof_of_work_bits = 300",
            "max_guesses_per_client_per_hour = 0",
            "max_guesses_per_mailbox_per_hour = 0",
            "code_alone_accepted = \"yes\"",
        ] {
            assert!(web(bad).is_err(), "{bad}");
        }
        assert_eq!(
            web("proof_of_work_bits = 30")
                .unwrap()
                .web
                .proof_of_work_bits,
            30
        );
    }

    #[test]
    fn alert_rules_are_checked() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(
            c.alerts.rules.len(),
            2,
            "Sum >= 250 and Bounced >= 10 by default"
        );
        let bad_metric =
            format!("{MINIMAL}[[alerts.rules]]\nmetric = \"recieved\"\nthreshold = 5\n");
        let err = format!("{:#}", Config::from_toml(&bad_metric).unwrap_err());
        assert!(
            err.contains("recieved") && err.contains("unknown variant"),
            "{err}"
        );
        let ok = format!(
            "{MINIMAL}[[alerts.rules]]\nmetric = \"sum\"\nthreshold = 250\noverrides = [{{ domain = \"lists.example.edu\", threshold = 2000 }}, {{ mailbox = \"noreply\", exempt = true }}]\n"
        );
        let c = Config::from_toml(&ok).unwrap();
        assert_eq!(c.alerts.rules[0].overrides.len(), 2);
        let both = ok.replace("exempt = true", "exempt = true, threshold = 3");
        assert!(Config::from_toml(&both).is_err());
    }

    #[test]
    fn addresses_and_mail_limits_are_checked() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.recipient_delimiter, "+");
        assert_eq!(
            (
                c.smtp.max_mails_per_recipient_per_day,
                c.smtp.max_help_replies_per_recipient_per_day
            ),
            (10, 2)
        );
        let with = |extra: &str| Config::from_toml(&format!("{MINIMAL}{extra}\n"));
        let c = with("recipient_delimiter = \"+-\"").unwrap();
        assert_eq!(
            crate::domain::Mailbox::parse("judy-news", &c)
                .unwrap()
                .as_str(),
            "judy@example.edu"
        );
        assert!(with("recipient_delimiter = \"\"").is_ok());
        for bad in ["%", "!", "@", ".", "+%", "\\\"", " "] {
            let err = with(&format!("recipient_delimiter = \"{bad}\""))
                .map(|_| ())
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("recipient_delimiter"),
                "{bad:?}: {err:#}"
            );
        }
        assert!(with("[smtp]\nmax_mails_per_recipient_per_day = 0").is_err());
        assert!(with("[smtp]\nmax_help_replies_per_recipient_per_day = 0").is_ok());
        assert!(with("[alerts]\nadmin_digest = \"postmaster@example.edu\"").is_ok());
        for far in ["postmaster@elsewhere.test", "pm%elsewhere.test@example.edu"] {
            let err = with(&format!("[alerts]\nadmin_digest = \"{far}\""))
                .map(|_| ())
                .unwrap_err();
            assert!(format!("{err:#}").contains("admin_digest"), "{err:#}");
        }
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        Config::load(&path).unwrap();
    }
}
