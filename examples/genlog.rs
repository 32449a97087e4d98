//! Writes a large synthetic Postfix and Dovecot log for benchmarks and manual
//! testing.
//!
//! ```text
//! cargo run --release --example genlog -- --lines 3000000 [--seed 1] [--hosts 2]
//!     [--rate 12] [--dovecot-share 0.3] [--start UNIX_SECONDS] [--out FILE]
//! ```
//!
//! Writes to standard output unless `--out` is given, and prints the counts of
//! what was written (and the generation speed) to standard error. The same
//! arguments always produce the same bytes. See `benches/support/genlog.rs` for
//! the line shapes.

#[path = "../benches/support/genlog.rs"]
mod genlog;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "\
usage: genlog [--lines N] [--seed N] [--hosts N] [--rate N] [--dovecot-share F]
              [--start UNIX_SECONDS] [--out FILE]

  --lines N        lines to write (default 1000000; `_` separators allowed)
  --seed N         random seed (default 1)
  --hosts N        number of mail hosts mx1..mxN (default 2)
  --rate N         queued messages per second of log time (default 12)
  --dovecot-share F
                   fraction of lines that are Dovecot access lines, 0 to 0.95
                   (default 0.3; 0 gives the Postfix-only log)
  --start SECS     log time of the first line as a Unix timestamp
                   (default 1793548800 = 2026-11-02 00:00:00 +08:00)
  --out FILE       write to FILE instead of standard output";

fn main() -> ExitCode {
    let (opts, out_path) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("genlog: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let started = Instant::now();
    let result = match &out_path {
        Some(path) => match File::create(path) {
            Ok(file) => genlog::generate(&mut BufWriter::with_capacity(1 << 20, file), &opts),
            Err(e) => {
                eprintln!("genlog: cannot create {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => genlog::generate(
            &mut BufWriter::with_capacity(1 << 20, io::stdout().lock()),
            &opts,
        ),
    };
    let elapsed = started.elapsed().as_secs_f64();

    match result {
        Ok(stats) => {
            eprintln!("{stats}");
            eprintln!(
                "{} lines in {:.3} s ({:.2} M lines/s)",
                stats.lines,
                elapsed,
                stats.lines as f64 / elapsed.max(1e-9) / 1e6
            );
            let _ = io::stderr().flush();
            ExitCode::SUCCESS
        }
        // A closed pipe (e.g. `| head`) is not an error for a generator.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("genlog: write failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns `Ok(None)` when help was requested.
fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<Option<(genlog::Options, Option<String>)>, String> {
    let mut opts = genlog::Options::default();
    let mut out = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--lines" => opts.lines = number(&flag, &value()?)?,
            "--seed" => opts.seed = number(&flag, &value()?)?,
            "--hosts" => {
                opts.hosts = number(&flag, &value()?)?;
                if opts.hosts == 0 {
                    return Err("--hosts must be at least 1".into());
                }
            }
            "--rate" => {
                opts.messages_per_sec = number(&flag, &value()?)?;
                if opts.messages_per_sec == 0 {
                    return Err("--rate must be at least 1".into());
                }
            }
            "--dovecot-share" => {
                opts.dovecot_share = number(&flag, &value()?)?;
                if !(0.0..=0.95).contains(&opts.dovecot_share) {
                    return Err("--dovecot-share must be between 0 and 0.95".into());
                }
            }
            "--start" => opts.start_unix = number(&flag, &value()?)?,
            "--out" => out = Some(value()?),
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(Some((opts, out)))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: `{text}` is not a valid number"))
}
