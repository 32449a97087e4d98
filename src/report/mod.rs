//! Reports: a mailbox's SMTP history or access history, rendered for a
//! person, in Traditional Chinese or English.
//!
//! A report is built from a [`Spec`] (whose records, which kind, which
//! days, which language, who asked): the rows are read ([`Data`]), rendered
//! by the templates ([`render`]) in the shape [`layout`] gives them (one
//! line per message with its recipients under it, quiet days in one line),
//! beside what [`Notes`] knows (the help contact, how fresh the records
//! are), and packed into one attachment: the HTML,
//! or a ZIP of the HTML and a CSV of the same rows when it is large
//! ([`archive`]). A report that would not fit the relay's size limit even
//! zipped keeps its first rows and says, in the mail and in the report,
//! how many it left out and where they start.
//!
//! Each report opens with a chart ([`chart`]), and may also carry a PDF of
//! the same rows ([`pdf`]): always, or when asked for, as `report.pdf`
//! says; the PDF too keeps its first rows when it would not fit.
//!
//! The mailbox a report is about is the only one it is ever mailed to:
//! [`Report::recipient`] is the one place that decides, and it answers the
//! mailbox whose rows were read.

pub mod archive;
pub mod chart;
pub mod layout;
pub mod pdf;
pub mod render;
pub mod rows;

use std::fmt;
use std::io::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::access::AccessHistory;
use crate::config::{Config, Lang};
use crate::domain::{DateRange, Mailbox};
use crate::history::{Format, History};
use crate::received::ReceivedMail;
use crate::store::Store;

/// What a report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The SMTP sending history.
    Smtp,
    /// The mailbox access history.
    Access,
    /// Mail received by the mailbox, and what became of it.
    Received,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Smtp => "smtp",
            Kind::Access => "access",
            Kind::Received => "received",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "smtp" => Some(Kind::Smtp),
            "access" => Some(Kind::Access),
            "received" => Some(Kind::Received),
            _ => None,
        }
    }
}

/// How a request reached mailtrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// `mailtrail report` at the server's console.
    Cli,
    /// The web form.
    Web,
    /// A request by mail.
    Mail,
    /// The system itself (threshold warnings).
    Automatic,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Web => "web",
            Channel::Mail => "mail",
            Channel::Automatic => "automatic",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        [
            Channel::Cli,
            Channel::Web,
            Channel::Mail,
            Channel::Automatic,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Who asked, how and when: shown in the report's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub channel: Channel,
    /// The client's address; `127.0.0.1` for the command line and for
    /// what the system sends by itself.
    pub client_ip: String,
    /// Unix seconds.
    pub at: i64,
}

impl Requester {
    /// A request made on this machine, now.
    pub fn local(channel: Channel) -> Requester {
        Requester {
            channel,
            client_ip: "127.0.0.1".to_owned(),
            at: Utc::now().timestamp(),
        }
    }
}

/// Everything that decides a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub mailbox: Mailbox,
    pub kind: Kind,
    pub range: DateRange,
    pub lang: Lang,
    pub requester: Requester,
}

/// The rows a report shows.
#[derive(Debug, Clone)]
pub enum Data {
    Smtp(History),
    Access(AccessHistory),
    Received(ReceivedMail),
}

impl Data {
    /// Reads the rows a report within `limits` can hold: SMTP details
    /// beyond [`Limits::max_rows`] are not read (one more is, to know when
    /// the rows left out start).
    pub async fn load_within(
        store: &Store,
        spec: &Spec,
        tz: Tz,
        limits: Limits,
    ) -> anyhow::Result<Data> {
        Ok(match spec.kind {
            Kind::Smtp => Data::Smtp(
                crate::history::load_limited(
                    store,
                    &spec.mailbox,
                    spec.range,
                    tz,
                    Some(limits.max_rows().saturating_add(1)),
                )
                .await?,
            ),
            Kind::Access => Data::load(store, spec, tz).await?,
            Kind::Received => Data::Received(
                crate::received::load_limited(
                    store,
                    &spec.mailbox,
                    spec.range,
                    tz,
                    limits.max_rows().saturating_add(1),
                )
                .await?,
            ),
        })
    }

    /// Reads the rows of `spec`'s mailbox, kind and days.
    pub async fn load(store: &Store, spec: &Spec, tz: Tz) -> anyhow::Result<Data> {
        Ok(match spec.kind {
            Kind::Smtp => {
                Data::Smtp(crate::history::load(store, &spec.mailbox, spec.range, tz).await?)
            }
            Kind::Access => {
                Data::Access(crate::access::load(store, &spec.mailbox, spec.range, tz).await?)
            }
            Kind::Received => {
                Data::Received(crate::received::load(store, &spec.mailbox, spec.range, tz).await?)
            }
        })
    }

    fn mailbox(&self) -> &str {
        match self {
            Data::Smtp(h) => &h.mailbox,
            Data::Access(h) => &h.mailbox,
            Data::Received(h) => &h.mailbox,
        }
    }

    /// Detail rows stored for the range, read or not.
    fn total_rows(&self) -> usize {
        match self {
            Data::Smtp(h) => usize::try_from(h.total.counts.sum)
                .unwrap_or(0)
                .max(h.details.len()),
            Data::Access(h) => h.events.len(),
            Data::Received(h) => h.messages.len() + h.omitted,
        }
    }

    /// Detail rows read (deliveries, access events, received messages).
    fn rows(&self) -> usize {
        match self {
            Data::Smtp(h) => h.details.len(),
            Data::Access(h) => h.events.len(),
            Data::Received(h) => h.messages.len(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Data::Smtp(h) => h.is_empty(),
            Data::Access(h) => h.is_empty(),
            Data::Received(h) => h.is_empty(),
        }
    }

    /// The same data with only the first `n` detail rows; the time of the
    /// first row left out.
    fn first_rows(&self, n: usize) -> (Data, Option<String>) {
        match self {
            Data::Smtp(h) => {
                let next = h.details.get(n).map(|d| d.time.clone());
                let mut h = h.clone();
                h.details.truncate(n);
                (Data::Smtp(h), next)
            }
            Data::Access(h) => {
                let next = h.events.get(n).map(|e| e.time.clone());
                let mut h = h.clone();
                h.events.truncate(n);
                h.facts.truncate(n);
                (Data::Access(h), next)
            }
            Data::Received(h) => {
                let next = h.messages.get(n).map(|e| e.time.clone());
                let mut h = h.clone();
                h.messages.truncate(n);
                h.times_us.truncate(n);
                (Data::Received(h), next)
            }
        }
    }

    /// Gives each failed delivery of an SMTP report its category and
    /// words in `lang` ([`crate::replies`]); access reports have none.
    pub fn explain(&mut self, classifier: &crate::replies::Classifier, lang: Lang) {
        if let Data::Smtp(h) = self {
            h.explain(classifier, lang);
        }
    }

    /// The categories of the rows, each with how many rows it has, most
    /// first.
    fn reasons(&self) -> Vec<Reason> {
        let Data::Smtp(h) = self else {
            return Vec::new();
        };
        let mut out: Vec<Reason> = Vec::new();
        for d in &h.details {
            let (Some(category), Some(label), Some(says), Some(advice)) =
                (d.category, &d.category_label, &d.explanation, &d.advice)
            else {
                continue;
            };
            match out.iter_mut().find(|r| r.category == category) {
                Some(r) => r.rows += 1,
                None => out.push(Reason {
                    category,
                    label: label.clone(),
                    explanation: says.clone(),
                    advice: advice.clone(),
                    rows: 1,
                }),
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.rows));
        out
    }

    fn csv(&self) -> String {
        match self {
            Data::Smtp(h) => h.render(Format::Csv),
            Data::Access(h) => h.render(Format::Csv),
            Data::Received(h) => h.render(Format::Csv),
        }
    }
}

/// One category of failure in a report, with its rows counted: the
/// report's "why" summary.
#[derive(Debug, Clone, Serialize)]
struct Reason {
    category: &'static str,
    label: std::sync::Arc<str>,
    explanation: std::sync::Arc<str>,
    advice: std::sync::Arc<str>,
    rows: usize,
}

/// What decides the size and shape of the attachment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Zip when the HTML is larger than this.
    pub zip_over_bytes: u64,
    pub always_zip: bool,
    /// The relay's limit on a whole message.
    pub max_message_bytes: u64,
}

/// No detail row takes fewer bytes than this in a mailed report, even
/// zipped (measured: about 280 per delivery, zipped HTML and CSV).
const MIN_ROW_BYTES: u64 = 100;

impl Limits {
    /// The most detail rows a report can carry within the relay's limit:
    /// more are never read from the database, so that a mailbox with
    /// millions of rows (a web server's sender, say) costs a report no
    /// more time and memory than one that fills the mail.
    pub fn max_rows(&self) -> usize {
        usize::try_from(self.max_message_bytes / MIN_ROW_BYTES)
            .unwrap_or(usize::MAX)
            .max(1000)
    }

    pub fn from_config(c: &Config) -> Limits {
        Limits {
            zip_over_bytes: c.report.zip_over_bytes,
            always_zip: c.report.always_zip,
            max_message_bytes: c.smtp.max_message_bytes,
        }
    }
}

/// What a report says beside its rows: whom to ask about it, and how
/// fresh its records are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// The site's help contact (`[help] address`): shown in the report,
    /// and the Reply-To of its mail.
    pub help_address: Option<String>,
    /// The site's help pages (`[help] url`).
    pub help_url: Option<String>,
    /// When the ingest last stored what it read of the logs (unix
    /// microseconds); `None` when it never has.
    pub ingested_us: Option<i64>,
}

impl Notes {
    /// The help contact of `c`; no ingest time.
    pub fn from_config(c: &Config) -> Notes {
        Notes {
            help_address: c.help.address.clone(),
            help_url: c.help.url.clone(),
            ingested_us: None,
        }
    }

    /// How many minutes the records may be behind the logs at `now`, when
    /// the ingest has stored any: rounded up, so that "up to N minutes
    /// behind" is never less than the truth.
    pub fn behind_minutes(&self, now: DateTime<Utc>) -> Option<i64> {
        self.ingested_us
            .map(|us| (now.timestamp_micros().saturating_sub(us).max(0) + 59_999_999) / 60_000_000)
    }

    /// The help contact of `c`, and when the ingest last stored the logs.
    pub async fn load(store: &Store, c: &Config) -> anyhow::Result<Notes> {
        Ok(Notes {
            ingested_us: store.last_ingest_us().await?,
            ..Notes::from_config(c)
        })
    }
}

/// The report's file.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Rows left out so the mail fits the relay's limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truncation {
    pub shown: usize,
    pub total: usize,
    /// The time of the first row left out.
    pub next: String,
}

/// A rendered report, ready to be mailed to its owner.
#[derive(Debug, Clone)]
pub struct Report {
    /// Whose rows these are. Private: nothing outside this module can
    /// point a report at another mailbox.
    owner: Mailbox,
    pub spec: Spec,
    /// The mail's subject (plain text).
    pub subject: String,
    /// The mail's plain-text part: header and table.
    pub text: String,
    /// The mail's HTML part: the same as `text`, in HTML.
    pub html: String,
    pub attachment: Attachment,
    /// The same rows as a PDF, when the site or the request wants one.
    pub pdf: Option<Attachment>,
    pub truncated: Option<Truncation>,
    /// Where a reply to the report's mail goes: the site's help contact.
    pub reply_to: Option<String>,
}

impl Report {
    /// The one address this report may be mailed to: the mailbox whose
    /// records it holds. This is the whole security model of mailtrail; no
    /// option, request field or header takes part in it.
    pub fn recipient(&self) -> &Mailbox {
        &self.owner
    }

    /// Bytes of the whole mail as the relay will see it, at most: each
    /// part base64-encoded (4/3, plus line breaks), and headers.
    pub fn estimated_mail_bytes(&self) -> u64 {
        estimate(
            self.text.len()
                + self.html.len()
                + self.attachment.bytes.len()
                + self.pdf.as_ref().map_or(0, |p| p.bytes.len()),
        )
    }
}

fn estimate(payload: usize) -> u64 {
    // base64: 4 bytes per 3, and CRLF every 76 characters: 1.369x.
    (payload as u64) * 1369 / 1000 + 4096
}

/// Reads the rows of `spec` and renders them.
pub async fn build(store: &Store, config: &Config, spec: Spec) -> anyhow::Result<Report> {
    build_asked(store, config, spec, false).await
}

/// [`build`], for a request that asked for the PDF (`pdf_asked`), which
/// it gets where the site offers it (`report.pdf = "on_request"`).
pub async fn build_asked(
    store: &Store,
    config: &Config,
    spec: Spec,
    pdf_asked: bool,
) -> anyhow::Result<Report> {
    let tz = config.tz()?;
    let limits = Limits::from_config(config);
    let mut data = Data::load_within(store, &spec, tz, limits).await?;
    let classifier = crate::replies::Classifier::shared(&config.replies)?;
    let notes = Notes::load(store, config).await?;
    let now = Utc::now();
    let font = pdf_font(config, pdf_asked)?;
    // Rendering and zipping are CPU work: off the async threads, and behind
    // the web form's.
    crate::background::run(move || {
        data.explain(&classifier, spec.lang);
        let opts = Opts {
            warning: None,
            notes: &notes,
            font: font.as_ref(),
        };
        render_with(spec, &data, limits, tz, now, opts)
    })
    .await?
}

/// The font for this report's PDF, when it carries one: always, or when
/// asked for where the site offers the choice.
fn pdf_font(config: &Config, asked: bool) -> anyhow::Result<Option<pdf::PdfFont>> {
    use crate::config::PdfMode;
    match (config.report.pdf, asked) {
        (PdfMode::Always, _) | (PdfMode::OnRequest, true) => {
            Ok(Some(pdf::PdfFont::cached(&config.report.pdf_font)?))
        }
        _ => Ok(None),
    }
}

/// Reads the day of `spec` and renders it as a threshold warning.
pub async fn build_warning(
    store: &Store,
    config: &Config,
    spec: Spec,
    crossed: Vec<Crossed>,
) -> anyhow::Result<Report> {
    let tz = config.tz()?;
    let limits = Limits::from_config(config);
    let mut data = Data::load_within(store, &spec, tz, limits).await?;
    let classifier = crate::replies::Classifier::shared(&config.replies)?;
    let notes = Notes::load(store, config).await?;
    let now = Utc::now();
    let font = pdf_font(config, false)?;
    crate::background::run(move || {
        data.explain(&classifier, spec.lang);
        let opts = Opts {
            warning: Some(&crossed),
            notes: &notes,
            font: font.as_ref(),
        };
        warning_with(spec, &data, limits, tz, now, opts)
    })
    .await?
}

/// The view the templates see as `r`.
#[derive(Serialize)]
struct View<'a> {
    kind: &'static str,
    mailbox: &'a str,
    from: String,
    to: String,
    requested_at: String,
    client_ip: &'a str,
    channel: &'static str,
    generated_at: String,
    cover: bool,
    attachment_name: &'a str,
    zipped: bool,
    truncated: Option<&'a Truncation>,
    empty: bool,
    smtp: Option<SmtpTables<'a>>,
    access: Option<AccessTables<'a>>,
    received: Option<ReceivedTables<'a>>,
    /// The thresholds crossed, for a warning.
    warning: Option<&'a [Crossed]>,
    /// Why deliveries failed: each category of the rows shown, with its
    /// count, most first (empty for access reports).
    reasons: Vec<Reason>,
    /// The zone every time is in, said once: `Asia/Taipei (UTC+08:00)`.
    zone: String,
    help_address: Option<&'a str>,
    help_url: Option<&'a str>,
    /// Minutes the records may be behind the logs, when known.
    behind_minutes: Option<i64>,
    /// How many messages the SMTP details are (their rows are written by
    /// [`rows`]).
    message_count: usize,
    /// The daily table, runs of days with nothing collapsed into one line.
    day_lines: Vec<layout::DayLine>,
    /// The picture: days for SMTP, remote addresses for access.
    chart: Option<&'a chart::Chart>,
}

/// What the templates read of an SMTP history: the daily table, and how
/// many detail rows there are (the rows themselves are in `messages`).
/// Everything a template gets is copied into its own values first, so a
/// row is given once, and only to the rendering that shows it.
#[derive(Serialize)]
struct SmtpTables<'a> {
    days: &'a [crate::history::DayRow],
    total: &'a crate::history::TotalRow,
    rows: usize,
}

/// What the templates read of an access history: the daily summary, and
/// how many events there are (their rows are written by [`rows`]).
#[derive(Serialize)]
struct AccessTables<'a> {
    days: &'a [crate::access::DaySummary],
    count: usize,
}

/// What the templates read of received mail: the daily counts, and how
/// many messages there are (their rows are written by [`rows`]).
#[derive(Serialize)]
struct ReceivedTables<'a> {
    days: &'a [crate::received::DayCounts],
    total: usize,
}

/// An instant as the report shows it: `2026/11/23 10:07:11`, in the zone
/// the header names.
fn local_time(unix: i64, tz: Tz) -> String {
    DateTime::from_timestamp(unix, 0)
        .map(|t| t.with_timezone(&tz).format("%Y/%m/%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The zone as the header says it: `Asia/Taipei (UTC+08:00)`.
fn zone_name(tz: Tz, now: DateTime<Utc>) -> String {
    format!(
        "{} (UTC{})",
        tz.name(),
        now.with_timezone(&tz).format("%:z")
    )
}

/// A name for the attachment that any file system and mail client takes.
fn file_stem(spec: &Spec) -> String {
    let who: String = spec
        .mailbox
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "mailtrail-{}-{}-{}_{}",
        spec.kind.as_str(),
        who,
        spec.range.from,
        spec.range.to
    )
}

/// A threshold the day crossed, for a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crossed {
    pub metric: crate::config::Metric,
    /// The column's name as users know it (`Sum`, `Bounced`).
    pub label: &'static str,
    pub value: i64,
    pub threshold: i64,
}

/// Renders `data` for `spec`: subject, text and HTML parts, attachment.
///
/// Returns `Err` when `data` is not the rows of `spec`'s mailbox (a report
/// never shows one mailbox's rows to another) or a template fails.
pub fn render(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
    render_with(spec, data, limits, tz, now, Opts::plain())
}

/// [`render`], with the help contact and the records' freshness.
pub fn render_noted(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
    notes: &Notes,
) -> anyhow::Result<Report> {
    let opts = Opts {
        notes,
        ..Opts::plain()
    };
    render_with(spec, data, limits, tz, now, opts)
}

/// [`render`], with the same rows also as a PDF in `font`.
pub fn render_with_pdf(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
    font: &pdf::PdfFont,
) -> anyhow::Result<Report> {
    let opts = Opts {
        font: Some(font),
        ..Opts::plain()
    };
    render_with(spec, data, limits, tz, now, opts)
}

/// [`render`], with the help contact and the records' freshness, and the
/// same rows also as a PDF in `font`.
pub fn render_noted_with_pdf(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
    notes: &Notes,
    font: &pdf::PdfFont,
) -> anyhow::Result<Report> {
    let opts = Opts {
        warning: None,
        notes,
        font: Some(font),
    };
    render_with(spec, data, limits, tz, now, opts)
}

/// A threshold warning: the day's SMTP report attached, and the mail's
/// parts saying which thresholds the day crossed and what to do.
pub fn render_warning(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
    crossed: &[Crossed],
) -> anyhow::Result<Report> {
    let opts = Opts {
        warning: Some(crossed),
        ..Opts::plain()
    };
    warning_with(spec, data, limits, tz, now, opts)
}

/// What a rendering adds to the rows: the thresholds a warning is about,
/// the help contact and freshness, the PDF's font.
#[derive(Clone, Copy)]
struct Opts<'a> {
    warning: Option<&'a [Crossed]>,
    notes: &'a Notes,
    font: Option<&'a pdf::PdfFont>,
}

impl Opts<'_> {
    fn plain() -> Opts<'static> {
        static NONE: Notes = Notes {
            help_address: None,
            help_url: None,
            ingested_us: None,
        };
        Opts {
            warning: None,
            notes: &NONE,
            font: None,
        }
    }
}

/// A warning's rendering: only of an SMTP day that crossed a threshold.
fn warning_with(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
    opts: Opts<'_>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        spec.kind == Kind::Smtp && opts.warning.is_some_and(|c| !c.is_empty()),
        "a warning is about an SMTP day that crossed a threshold"
    );
    render_with(spec, data, limits, tz, now, opts)
}

fn render_with(
    spec: Spec,
    data: &Data,
    limits: Limits,
    tz: Tz,
    now: DateTime<Utc>,
    opts: Opts<'_>,
) -> anyhow::Result<Report> {
    let Opts {
        warning,
        notes,
        font,
    } = opts;
    anyhow::ensure!(
        data.mailbox() == spec.mailbox.as_str(),
        "the rows read are of {}, not of {}",
        data.mailbox(),
        spec.mailbox
    );
    let (from, to) = (spec.range.from.to_string(), spec.range.to.to_string());
    // Drawn once, from every row read (before any is left out to fit),
    // and shown by every rendering below.
    let chart = match data {
        Data::Smtp(h) => chart::daily(&h.days, spec.lang, &from, &to),
        Data::Access(h) => chart::logins(&h.events, spec.lang, &from, &to),
        Data::Received(_) => None,
    };
    // Never more rows than could fit: beyond them, the report says where
    // the rows left out start, as when it is cut to fit below.
    let total = data.total_rows();
    let capped;
    let (data, mut truncated) = if data.rows() > limits.max_rows() {
        let shown = limits.max_rows();
        let (part, next) = data.first_rows(shown);
        capped = part;
        let t = Truncation {
            shown,
            total,
            next: next.unwrap_or_default(),
        };
        (&capped, Some(t))
    } else {
        (data, None)
    };
    let stem = file_stem(&spec);
    let generated_at = local_time(now.timestamp(), tz);
    let zone = zone_name(tz, now);
    let behind_minutes = notes.behind_minutes(now);
    let modified = now.with_timezone(&tz).naive_local();
    // `message_count`: the SMTP details' messages, when the rows are shown.
    let view = |data: &'_ Data,
                cover: bool,
                zipped: bool,
                truncated: Option<&Truncation>,
                message_count: usize| {
        let name = if zipped {
            format!("{stem}.zip")
        } else {
            format!("{stem}.html")
        };
        let (smtp, access, received) = match data {
            Data::Smtp(h) => (Some(h), None, None),
            Data::Access(h) => (None, Some(h), None),
            Data::Received(h) => (None, None, Some(h)),
        };
        let v = View {
            kind: spec.kind.as_str(),
            mailbox: spec.mailbox.as_str(),
            from: spec.range.from.to_string(),
            to: spec.range.to.to_string(),
            requested_at: local_time(spec.requester.at, tz),
            client_ip: &spec.requester.client_ip,
            channel: spec.requester.channel.as_str(),
            generated_at: generated_at.clone(),
            cover,
            attachment_name: &name,
            zipped,
            truncated,
            empty: data.is_empty(),
            smtp: smtp.map(|h| SmtpTables {
                days: &h.days,
                total: &h.total,
                rows: h.details.len(),
            }),
            access: access.map(|h| AccessTables {
                days: &h.days,
                count: h.events.len(),
            }),
            received: received.map(|h| ReceivedTables {
                days: &h.days,
                total: h.messages.len() + h.omitted,
            }),
            warning,
            reasons: data.reasons(),
            zone: zone.clone(),
            help_address: notes.help_address.as_deref(),
            help_url: notes.help_url.as_deref(),
            behind_minutes,
            message_count,
            day_lines: match data {
                Data::Smtp(h) => layout::smtp_days(&h.days),
                Data::Access(h) => layout::access_days(&h.days),
                Data::Received(h) => layout::received_days(&h.days),
            },
            chart: chart.as_ref(),
        };
        minijinja::Value::from(minijinja::value::Serde(&v))
    };
    // The attached page is the same zipped or not (only the mail's parts
    // name the attachment): rendered once, zipped when asked or large.
    // Zipped on a thread of its own as it is rendered, when large.
    let attach =
        |data: &Data, zip: bool, truncated: Option<&Truncation>| -> anyhow::Result<Attachment> {
            let zip_over = (!zip).then_some(limits.zip_over_bytes);
            let page = std::thread::scope(|s| {
                // The CSV goes in the ZIP too: made and deflated meanwhile on
                // a thread of its own when the rows are many (a small page is
                // sent as it is, and this CSV not used).
                let csv_zip = || {
                    archive::zip_files(
                        vec![(format!("{stem}.csv"), data.csv().into_bytes())],
                        modified,
                    )
                };
                let csv = (data.rows() >= 1000).then(|| s.spawn(csv_zip));
                let mut page = archive::Page::new(s, &format!("{stem}.html"), zip_over, modified);
                // The page around the rows, then the rows in their place.
                let messages = match data {
                    Data::Smtp(h) => layout::messages(&h.details),
                    _ => Vec::new(),
                };
                let shell = render::render(
                    "report.html",
                    spec.lang,
                    view(data, false, zip, truncated, messages.len()),
                )?;
                match shell.split_once(rows::MARK) {
                    Some((head, tail)) => {
                        page.write_all(head.as_bytes())?;
                        match data {
                            Data::Smtp(_) => rows::smtp(&mut page, spec.lang, &messages)?,
                            Data::Access(h) => rows::access(&mut page, spec.lang, h)?,
                            Data::Received(h) => rows::received(&mut page, spec.lang, h)?,
                        }
                        page.write_all(tail.as_bytes())?;
                    }
                    None => page.write_all(shell.as_bytes())?,
                }
                page.finish(|| match csv {
                    Some(t) => t.join().unwrap_or_else(|_| csv_zip()),
                    None => csv_zip(),
                })
            })?;
            Ok(match page {
                archive::Rendered::Plain(bytes) => Attachment {
                    filename: format!("{stem}.html"),
                    content_type: "text/html; charset=utf-8",
                    bytes,
                },
                archive::Rendered::Zipped(bytes) => Attachment {
                    filename: format!("{stem}.zip"),
                    content_type: "application/zip",
                    bytes,
                },
            })
        };

    // The whole report first; zipped when large or always.
    let mut attachment = attach(data, limits.always_zip, truncated.as_ref())?;
    let zipped = attachment.content_type == "application/zip";
    let parts =
        |zipped: bool, truncated: Option<&Truncation>| -> anyhow::Result<(String, String)> {
            // The parts show the header and the table of the whole range.
            let (txt, html) = match warning {
                Some(_) => ("alert.txt", "alert.html"),
                None => ("report.txt", "report.html"),
            };
            let text = render::render(txt, spec.lang, view(data, true, zipped, truncated, 0))?;
            let html = render::render(html, spec.lang, view(data, true, zipped, truncated, 0))?;
            Ok((text, html))
        };
    let (mut text, mut html) = parts(zipped, truncated.as_ref())?;

    // Too large even zipped: keep the first rows that fit, and say so.
    let budget = |text: &str, html: &str| {
        limits
            .max_message_bytes
            .saturating_sub(estimate(text.len() + html.len()))
            * 1000
            / 1369
    };
    let mut shown = data.rows();
    let mut tries = 0;
    while estimate(text.len() + html.len() + attachment.bytes.len()) > limits.max_message_bytes {
        tries += 1;
        anyhow::ensure!(
            shown > 0 && tries <= 12,
            "the report does not fit in {} bytes even without rows",
            limits.max_message_bytes
        );
        // Rows shrink roughly in proportion to the attachment; aim a little
        // below, and always drop at least one row.
        let want = budget(&text, &html) as f64 / attachment.bytes.len() as f64 * 0.95;
        shown = ((shown as f64 * want) as usize).min(shown - 1);
        let (part, next) = data.first_rows(shown);
        let t = Truncation {
            shown,
            total,
            next: next.unwrap_or_default(),
        };
        attachment = attach(&part, true, Some(&t))?;
        (text, html) = parts(true, Some(&t))?;
        truncated = Some(t);
    }

    let subject_key = match warning {
        Some(_) => "subject_warning".to_owned(),
        None => format!("subject_{}", spec.kind.as_str()),
    };
    let subject = render::text(
        spec.lang,
        &subject_key,
        &[
            ("mailbox", spec.mailbox.as_str()),
            ("from", &spec.range.from.to_string()),
            ("to", &spec.range.to.to_string()),
        ],
    );
    let pdf = match font {
        Some(font) => Some(pdf_attachment(
            &spec,
            data,
            truncated.as_ref(),
            total,
            &pdf::Header {
                requested_at: &local_time(spec.requester.at, tz),
                generated_at: &generated_at,
                zone: &zone,
                behind_minutes,
                notes,
            },
            font,
            limits
                .max_message_bytes
                .saturating_sub(estimate(text.len() + html.len() + attachment.bytes.len())),
        )?),
        None => None,
    };
    Ok(Report {
        owner: spec.mailbox.clone(),
        spec,
        subject,
        text,
        html,
        attachment,
        pdf,
        truncated,
        reply_to: notes.help_address.clone(),
    })
}

/// The PDF of the rows the report shows, within `budget` bytes of mail
/// (as [`estimate`] counts them): fewer rows, said at its top, when the
/// rows the HTML carries do not fit as a PDF too.
fn pdf_attachment(
    spec: &Spec,
    data: &Data,
    truncated: Option<&Truncation>,
    total: usize,
    head: &pdf::Header<'_>,
    font: &pdf::PdfFont,
    budget: u64,
) -> anyhow::Result<Attachment> {
    let mut shown = truncated.map_or(data.rows(), |t| t.shown);
    let mut cut = truncated.cloned();
    for _ in 0..12 {
        let (part, next) = data.first_rows(shown);
        if shown < data.rows() {
            cut = Some(Truncation {
                shown,
                total,
                next: next.unwrap_or_default(),
            });
        }
        let doc = pdf::document(spec, &part, cut.as_ref(), head);
        let bytes = pdf::write(&doc, font)?;
        if estimate(bytes.len()) <= budget || shown == 0 {
            return Ok(Attachment {
                filename: format!("{}.pdf", file_stem(spec)),
                content_type: "application/pdf",
                bytes,
            });
        }
        let want = budget as f64 / estimate(bytes.len()) as f64 * 0.9;
        shown = ((shown as f64 * want) as usize).min(shown - 1);
    }
    anyhow::bail!("the report's PDF does not fit in the mail")
}
