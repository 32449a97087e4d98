//! The command line: parse, load the config, call the library, map errors
//! to exit codes (0 done, 1 failed, 2 the user's input was wrong; 75 for
//! `request`'s own failures, which Postfix retries).
//!
//! Everything a command prints goes through [`write_stdout`]: when the
//! reader of its output goes away (`mailtrail history ... | head -1`), the
//! command stops printing and exits 0 without a word, as the reader took
//! what it wanted. Rust ignores SIGPIPE, so the write fails with
//! `BrokenPipe` instead of killing the process; `print!` would panic.
//! Messages go to standard error through [`write_stderr`], which does not
//! panic either when that is closed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::domain::{DateRange, Day, InputError, Mailbox};
use crate::history::{self, Format};
use crate::ingest::{self, correlate::Settings, source::SourceSpec};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "mailtrail",
    version,
    about = "Per-mailbox paper trail of Postfix and Dovecot logs"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Database URL; overrides `database_url` from the config.
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read Postfix/Dovecot logs (plain, rotated, .gz/.bz2/.xz/.zst; `-` for stdin) and store what they say.
    Ingest {
        /// Log files, in order (oldest first); `-` reads stdin.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Name of this ingest's saved state (overrides `ingest.agent`):
        /// ingests that write to one database at the same time, one per
        /// mail host, each need their own.
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
    },
    /// A mailbox's SMTP sending history: daily table and details.
    History(Query),
    /// A mailbox's access history (POP3/IMAP logins, logouts, deletions, failed logins).
    Access(Query),
    /// Mail received by a mailbox: delivered into which folder, forwarded, refused and why, held, spam verdict.
    Received(Query),
    /// Where a message received by a mailbox is now, and how it got there.
    Locate(LocateArgs),
    /// Render a report for a mailbox and queue it for mailing to that mailbox (or write it to a file).
    Report(ReportArgs),
    /// Render requested reports and send what the outbox holds.
    Worker {
        /// One pass, then exit: render pending requests, send what is due now.
        #[arg(long)]
        once: bool,
    },
    /// Build the per-mailbox daily table of one local day (idempotent).
    Aggregate {
        /// The day, YYYY-MM-DD (default: yesterday in the configured zone).
        #[arg(long)]
        date: Option<String>,
    },
    /// Evaluate the warning thresholds on one day and queue one warning per mailbox.
    Alerts {
        /// The day, YYYY-MM-DD (default: yesterday in the configured zone).
        #[arg(long)]
        date: Option<String>,
        /// Print who would be warned and why; queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the nightly job: aggregate, warn and purge every complete day not yet done.
    Nightly {
        /// Do what is due now and exit (for a timer); otherwise check every minute until SIGTERM.
        #[arg(long)]
        once: bool,
    },
    /// Take a request by mail: read the message on stdin (as a Postfix pipe or alias delivers it).
    Request {
        /// The envelope sender (Postfix: ${sender}); the report goes to this mailbox only.
        #[arg(long)]
        sender: String,
    },
    /// Run everything: follow the logs, the nightly scheduler, the outbox worker, the web form.
    Serve,
    /// Create or update the database schema.
    Migrate,
    /// Validate the configuration file and say what it sets.
    CheckConfig,
}

/// What `history` and `access` ask about.
#[derive(Debug, clap::Args)]
pub struct Query {
    /// The mailbox (address, or bare user name in the default domain).
    #[arg(long)]
    pub mailbox: String,
    /// First day, YYYY-MM-DD (default: the start of the retention window).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (default: today).
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// What `locate` asks about.
#[derive(Debug, clap::Args)]
pub struct LocateArgs {
    /// The mailbox (address, or bare user name in the default domain).
    #[arg(long)]
    pub mailbox: String,
    /// The message's Message-ID, with or without its angle brackets.
    #[arg(long, value_name = "ID")]
    pub message_id: String,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// What `report` asks for. There is deliberately no recipient option: a
/// report goes to the mailbox it is about.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The mailbox whose records the report holds, and the only one it is mailed to.
    #[arg(long)]
    pub mailbox: String,
    #[arg(long, value_enum)]
    pub kind: crate::report::Kind,
    /// First day, YYYY-MM-DD (default: the start of the retention window).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (default: today).
    #[arg(long)]
    pub to: Option<String>,
    /// zh-TW or en (default: report.default_language).
    #[arg(long)]
    pub lang: Option<String>,
    /// Write the attachment (HTML, or ZIP when large) to FILE (`-`: standard output) and mail nothing.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the report as a PDF to FILE, in the font of report.pdf_font, and mail nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    pub pdf: Option<PathBuf>,
    /// Queue the mail under this key; queueing the same key again sends no second copy.
    #[arg(long, conflicts_with = "out")]
    pub key: Option<String>,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // A service says what it does and what goes wrong and
                // right again; a command only what goes wrong.
                tracing_subscriber::EnvFilter::new(match cli.command {
                    Command::Serve | Command::Worker { once: false } => "warn,mailtrail=info",
                    _ => "warn",
                })
            }),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            write_stderr(&format!("mailtrail: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // `request` runs as Postfix's pipe: a failure of its own (config,
    // database) is temporary for Postfix (EX_TEMPFAIL), which keeps the
    // message and tries again later, instead of bouncing it (any other
    // status).
    let failed = match cli.command {
        Command::Request { .. } => ExitCode::from(EX_TEMPFAIL),
        _ => ExitCode::FAILURE,
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.is::<ClosedStdout>()) => ExitCode::SUCCESS,
        Err(e) => {
            write_stderr(&format!("mailtrail: {e:#}"));
            if e.chain()
                .any(|c| c.is::<InputError>() || c.is::<UsageError>())
            {
                ExitCode::from(2)
            } else {
                failed
            }
        }
    }
}

/// sysexits.h: a temporary failure; the caller should try again later.
const EX_TEMPFAIL: u8 = 75;

/// The reader of standard output closed it: the command stops printing
/// and exits 0, quietly.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
pub struct ClosedStdout;

/// Writes `bytes` to standard output. Returns [`ClosedStdout`] when the
/// reader has gone (a closed pipe), and any other failure (a full disk
/// under a redirection) as an error that names standard output.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedStdout.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// Writes a line to standard error. A closed standard error loses the
/// line, as there is nowhere left to say anything; `eprintln!` would panic.
fn write_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `println!` for the commands' output, through [`write_stdout`]; returns
/// from the function with its error.
macro_rules! say {
    ($($arg:tt)*) => {
        write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())?
    };
}

/// A wrong argument that is not a bad value (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(&cli.config)?;
    if let Some(url) = &cli.database {
        config.database_url = url.clone();
        config.validate().context("--database")?;
    }
    Ok(config)
}

/// `--date`, or yesterday in the configured zone.
fn day_or_yesterday(config: &Config, date: Option<&str>) -> anyhow::Result<Day> {
    match date {
        Some(d) => Ok(Day::parse(d)?),
        None => Ok(config.today()?.pred()),
    }
}

/// The range from `--from`/`--to`, defaulting to the retention window
/// ending today.
fn date_range(config: &Config, from: Option<&str>, to: Option<&str>) -> anyhow::Result<DateRange> {
    let to = match to {
        Some(t) => Day::parse(t)?,
        None => config.today()?,
    };
    let from = match from {
        Some(f) => Day::parse(f)?,
        None => config.retention_start(to),
    };
    Ok(DateRange::new(from, to)?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::CheckConfig => {
            let c = load_config(&cli)?;
            say!("{}: valid", cli.config.display());
            say!("  timezone        {}", c.timezone);
            say!("  local_domains   {}", c.local_domains.join(", "));
            say!("  default_domain  {}", c.default_domain);
            say!(
                "  delimiters      {}",
                if c.recipient_delimiter.is_empty() {
                    "none"
                } else {
                    &c.recipient_delimiter
                }
            );
            say!("  database_url    {}", redact_url(&c.database_url));
            say!("  retention_days  {}", c.retention_days);
            say!(
                "  smtp            {}:{} (tls {}){}, from {}",
                c.smtp.host,
                c.smtp.port,
                c.smtp.tls.as_str(),
                match (&c.smtp.username, c.smtp.password().is_some()) {
                    (Some(u), true) => format!(", AUTH as {u} (password set)"),
                    (Some(u), false) => format!(", AUTH as {u} (no password set)"),
                    _ => String::new(),
                },
                c.smtp.from
            );
            say!(
                "  mail limits     {} a day to one mailbox, {} of them help replies",
                c.smtp.max_mails_per_recipient_per_day,
                c.smtp.max_help_replies_per_recipient_per_day
            );
            say!(
                "  report          {}, zip over {} bytes{}",
                c.report.default_language.as_str(),
                c.report.zip_over_bytes,
                if c.report.always_zip {
                    " (always zip)"
                } else {
                    ""
                }
            );
            let k = crate::replies::Classifier::shared(&c.replies)?;
            say!(
                "  reply rules     {}{}; own addresses {}, own names {}",
                match &c.replies.rules_file {
                    Some(p) => format!("{} from {}, then ", k.site_rules(), p.display()),
                    None => String::new(),
                },
                "built-in",
                c.replies.own_addresses.len(),
                c.replies.own_names.len()
            );
            for p in &c.ingest.paths {
                let ok = crate::ingest::source::readable(p);
                say!(
                    "  ingest path     {}{}",
                    p.display(),
                    if ok { "" } else { "  (not readable now)" }
                );
            }
            Ok(())
        }
        Command::Migrate => {
            let c = load_config(&cli)?;
            let store = Store::connect(&c.database_url).await?;
            store
                .migrate_with(|m| {
                    // Progress goes to stderr, beside the logs; a closed
                    // terminal does not stop the move.
                    write_stderr(&format!(
                        "moved {} of {} event rows into the day-clustered tables",
                        m.moved, m.total
                    ));
                })
                .await?;
            store.close().await;
            say!("database schema is up to date");
            Ok(())
        }
        Command::Ingest { paths, agent } => {
            let c = load_config(&cli)?;
            let mut settings = Settings::from_config(&c)?;
            if let Some(a) = agent {
                ingest::check_agent(a).map_err(|e| UsageError(format!("--agent: {e:#}")))?;
                settings.agent = a.clone();
            }
            let specs: Vec<SourceSpec> = paths.iter().map(|p| SourceSpec::parse(p)).collect();
            if specs.iter().filter(|s| **s == SourceSpec::Stdin).count() > 1 {
                return Err(UsageError("`-` (stdin) can be given only once".into()).into());
            }
            for s in &specs {
                s.check().map_err(|e| UsageError(format!("{e:#}")))?;
            }
            let store = Store::open(&c.database_url).await?;
            let batching = ingest::Batching::from_config(&c.ingest);
            let report = ingest::run(&store, settings, &specs, batching).await;
            store.close().await;
            let report = report?;
            let printed = write_stdout(report.render().as_bytes());
            // What could be read is stored; the summary says what could
            // not. Exit 1 so that a script or a timer notices, even when
            // nobody read the summary.
            let damaged: Vec<&str> = report.damaged().map(|(name, _)| name).collect();
            anyhow::ensure!(
                damaged.is_empty(),
                "could not read to the end: {} (damaged; see the summary)",
                damaged.join(", ")
            );
            printed
        }
        Command::History(q) => {
            let (c, mailbox, range, store) = open_query(&cli, q).await?;
            let h = history::load(&store, &mailbox, range, c.tz()?).await;
            store.close().await;
            let mut h = h?;
            let classifier = crate::replies::Classifier::shared(&c.replies)?;
            h.explain(&classifier, c.report.default_language);
            write_stdout(h.render(q.format).as_bytes())
        }
        Command::Report(a) => report(&cli, a).await,
        Command::Request { sender } => {
            use std::io::Read;
            let c = load_config(&cli)?;
            // A message larger than this is not a request.
            let mut raw = Vec::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_end(&mut raw)
                .context("cannot read the message on stdin")?;
            let store = Store::open(&c.database_url).await?;
            let now = chrono::Utc::now().timestamp();
            let result = crate::requests::mail::intake(&store, &c, sender, &raw, now).await;
            store.close().await;
            // Exit 0 whatever was decided: a non-zero exit would make
            // Postfix bounce the request back to its sender.
            match result? {
                crate::requests::mail::Outcome::Requested(id) => say!("request {id} queued"),
                crate::requests::mail::Outcome::Helped(id) => {
                    say!("help reply queued as outbox {id}")
                }
                crate::requests::mail::Outcome::Ignored(why) => say!("ignored: {why}"),
                crate::requests::mail::Outcome::Limited(why) => say!("not accepted: {why}"),
            }
            Ok(())
        }
        Command::Serve => {
            let c = load_config(&cli)?;
            let store = Store::open(&c.database_url).await?;
            let result = crate::serve::run(c, store.clone(), shutdown_signal()?).await;
            store.close().await;
            result
        }
        Command::Aggregate { date } => {
            let c = load_config(&cli)?;
            let day = day_or_yesterday(&c, date.as_deref())?;
            let store = Store::open(&c.database_url).await?;
            let n = crate::aggregate::run(&store, day, chrono::Utc::now().timestamp()).await;
            store.close().await;
            say!("{day}: {} mailboxes in the daily table", n?);
            Ok(())
        }
        Command::Alerts { date, dry_run } => {
            let c = load_config(&cli)?;
            let day = day_or_yesterday(&c, date.as_deref())?;
            let store = Store::open(&c.database_url).await?;
            let now = chrono::Utc::now().timestamp();
            let result = async {
                let o = crate::alerts::run(&store, &c, day, *dry_run, now).await?;
                if !*dry_run {
                    store
                        .record_job(
                            day.key(),
                            crate::alerts::JOB,
                            &format!("{} warned", o.warnings.len()),
                            now,
                        )
                        .await?;
                }
                anyhow::Ok(o)
            }
            .await;
            store.close().await;
            let o = result?;
            for w in &o.warnings {
                let why: Vec<String> = w
                    .crossed
                    .iter()
                    .map(|x| format!("{} {} >= {}", x.label, x.value, x.threshold))
                    .collect();
                say!("{}  {}", w.mailbox, why.join("; "));
            }
            let verb = if *dry_run {
                "would be warned (dry run: nothing queued)"
            } else {
                "warned"
            };
            say!("{day}: {} mailbox(es) {verb}", o.warnings.len());
            for r in &o.refused {
                // The address came from a log line: printed escaped.
                say!("not warned: {:?}: {}", r.address, r.why);
            }
            if !*dry_run && !o.queued.is_empty() {
                let ids: Vec<String> = o.queued.iter().map(i64::to_string).collect();
                say!("outbox: {}", ids.join(", "));
            }
            Ok(())
        }
        Command::Nightly { once } => {
            let c = load_config(&cli)?;
            let store = Store::open(&c.database_url).await?;
            let result = if *once {
                match crate::schedule::tick(&store, &c, chrono::Utc::now()).await {
                    Ok(t) => write_stdout(
                        format!(
                            "aggregated {} day(s), evaluated alerts for {} ({} warning(s)), {} too old to warn, packed the access rows of {} day(s), purged {} row(s)\n",
                            t.aggregated.len(),
                            t.alerted.len(),
                            t.warnings,
                            t.not_warned.len(),
                            t.packed.len(),
                            t.purged
                        )
                        .as_bytes(),
                    ),
                    Err(e) => Err(e),
                }
            } else {
                let shutdown = shutdown_signal()?;
                let mut sched =
                    crate::schedule::start(store.clone(), std::sync::Arc::new(c.clone())).await?;
                let gave_up = tokio::select! {
                    _ = shutdown => None,
                    e = sched.gave_up() => Some(e),
                };
                sched.shutdown().await?;
                match gave_up {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            };
            store.close().await;
            result
        }
        Command::Worker { once } => {
            let c = load_config(&cli)?;
            let store = Store::open(&c.database_url).await?;
            let mailer = crate::mail::Mailer::new(&c.smtp)?;
            let result = if *once {
                crate::mail::run_once(&store, &c, &mailer).await
            } else {
                crate::mail::run(
                    &store,
                    &c,
                    &mailer,
                    std::time::Duration::from_secs(5),
                    std::time::Duration::from_secs(c.database_retry_secs),
                    |_| {},
                    shutdown_signal()?,
                )
                .await
            };
            store.close().await;
            let p = result?;
            say!(
                "rendered {} request(s); sent {}, retrying {}, failed {}, refused {}",
                p.rendered,
                p.sent,
                p.retrying,
                p.failed,
                p.refused
            );
            Ok(())
        }
        Command::Access(q) => {
            let (c, mailbox, range, store) = open_query(&cli, q).await?;
            let h = crate::access::load(&store, &mailbox, range, c.tz()?).await;
            store.close().await;
            write_stdout(h?.render(q.format).as_bytes())
        }
        Command::Received(q) => {
            let (c, mailbox, range, store) = open_query(&cli, q).await?;
            let h = crate::received::load(&store, &mailbox, range, c.tz()?).await;
            store.close().await;
            write_stdout(h?.render(q.format).as_bytes())
        }
        Command::Locate(a) => {
            let c = load_config(&cli)?;
            let mailbox = Mailbox::parse(&a.mailbox, &c)?;
            let id = a.message_id.trim();
            if id.is_empty() || id.len() > 998 || id.chars().any(char::is_control) {
                return Err(
                    UsageError("--message-id: 1 to 998 printable characters".into()).into(),
                );
            }
            let store = Store::open(&c.database_url).await?;
            let h = crate::received::locate(&store, &mailbox, id, c.tz()?).await;
            store.close().await;
            write_stdout(h?.render(a.format).as_bytes())
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed before it
/// returns, so a signal that comes early is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn report(cli: &Cli, a: &ReportArgs) -> anyhow::Result<()> {
    use crate::report::{Channel, Limits, Requester, Spec};
    let c = load_config(cli)?;
    // Only a local mailbox, which its report then goes to; `judy+tag` is
    // judy's.
    let mailbox = c.local_domains().mailbox(&a.mailbox)?;
    let range = date_range(&c, a.from.as_deref(), a.to.as_deref())?;
    let lang = match &a.lang {
        Some(l) => l.parse()?,
        None => c.report.default_language,
    };
    if let Some(key) = &a.key
        && (key.is_empty() || key.len() > 200 || key.chars().any(char::is_control))
    {
        return Err(UsageError("--key: 1 to 200 printable characters".into()).into());
    }
    let spec = Spec {
        mailbox,
        kind: a.kind,
        range,
        lang,
        requester: Requester::local(Channel::Cli),
    };
    let store = Store::open(&c.database_url).await?;
    let result = async {
        if let Some(path) = &a.pdf {
            let font = crate::report::pdf::PdfFont::cached(&c.report.pdf_font)?;
            let tz = c.tz()?;
            let mut data = crate::report::Data::load(&store, &spec, tz).await?;
            // As mailed: each failure explained, the help contact and the
            // records' freshness in the header.
            let classifier = crate::replies::Classifier::shared(&c.replies)?;
            data.explain(&classifier, spec.lang);
            let notes = crate::report::Notes::load(&store, &c).await?;
            let r = crate::report::render_noted_with_pdf(
                spec.clone(),
                &data,
                Limits::from_config(&c),
                tz,
                chrono::Utc::now(),
                &notes,
                &font,
            )?;
            let pdf = r.pdf.context("no PDF was rendered")?;
            std::fs::write(path, &pdf.bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            say!("wrote {} (PDF, {} bytes)", path.display(), pdf.bytes.len());
            if a.out.is_none() {
                return anyhow::Ok(());
            }
        }
        match &a.out {
            Some(out) => {
                let tz = c.tz()?;
                let mut data = crate::report::Data::load(&store, &spec, tz).await?;
                let classifier = crate::replies::Classifier::shared(&c.replies)?;
                data.explain(&classifier, spec.lang);
                let notes = crate::report::Notes::load(&store, &c).await?;
                let r = crate::report::render_noted(spec, &data, Limits::from_config(&c), tz, chrono::Utc::now(), &notes)?;
                // `-` is standard output: the attachment alone goes there,
                // and what was written is said on standard error.
                let to_stdout = out.as_os_str() == "-";
                if to_stdout {
                    write_stdout(&r.attachment.bytes)?;
                } else {
                    std::fs::write(out, &r.attachment.bytes)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                }
                let mut note = format!(
                    "wrote {} ({}, {} bytes)",
                    if to_stdout { "standard output".into() } else { out.display().to_string() },
                    if r.attachment.content_type == "application/zip" { "ZIP of HTML and CSV" } else { "HTML" },
                    r.attachment.bytes.len()
                );
                if let Some(t) = &r.truncated {
                    note.push_str(&format!("\ntruncated to fit smtp.max_message_bytes: {} of {} rows; the rest start at {}", t.shown, t.total, t.next));
                }
                if to_stdout {
                    write_stderr(&note);
                } else {
                    say!("{note}");
                }
            }
            None => {
                let id = crate::requests::submit(&store, &spec, a.key.as_deref()).await?;
                let row = store.request(id).await?.context("the request just written is gone")?;
                let outbox = crate::requests::process(&store, &c, &row).await?;
                let mail = store.outbox_mail(outbox).await?.context("the queued mail is gone")?;
                say!(
                    "queued outbox {outbox} for {} (request {id}, state {}); `mailtrail worker` sends it",
                    mail.recipient, mail.state
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

/// Checks a query's arguments (a wrong one is exit code 2), then opens the
/// database.
async fn open_query(cli: &Cli, q: &Query) -> anyhow::Result<(Config, Mailbox, DateRange, Store)> {
    let c = load_config(cli)?;
    let mailbox = Mailbox::parse(&q.mailbox, &c)?;
    let range = date_range(&c, q.from.as_deref(), q.to.as_deref())?;
    let store = Store::open(&c.database_url).await?;
    Ok((c, mailbox, range, store))
}

/// A database URL without its password, for printing.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact_url("postgres://mt:s3cret@db/mailtrail"),
            "postgres://mt:***@db/mailtrail"
        );
        assert_eq!(redact_url("sqlite://var/m.db"), "sqlite://var/m.db");
    }
}
