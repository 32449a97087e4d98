//! The command line as an operator uses it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Capture, config_text, database_url, dovecot, fixture, sample_day};

struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_text(&database_url(dir.path(), "cli"), 1000)).unwrap();
        Cli { _dir: dir, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mailtrail"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn ingest_prints_its_summary_and_history_answers() {
    let cli = Cli::new();
    let log = fixture("mail.log");
    let out = cli.ok(&["ingest", path(&log)]);
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    let read: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("lines read"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(read, lines);
    for label in [
        "lines used",
        "lines ignored",
        "lines unrecognised",
        "rows stored",
    ] {
        assert!(out.contains(label), "{out}");
    }

    // The 30 days ending on the capture's day.
    let day = sample_day();
    let (first, last) = (day.minus(29).to_string(), day.to_string());
    let text = cli.ok(&[
        "history",
        "--mailbox",
        "alice@example.edu",
        "--from",
        &first,
        "--to",
        &last,
    ]);
    assert!(
        text.contains("Date") && text.contains("Auth_blk") && text.contains("Total"),
        "{text}"
    );
    assert!(text.contains("Details ("), "{text}");

    let json = cli.ok(&[
        "history",
        "--mailbox",
        "ALICE",
        "--from",
        &first,
        "--to",
        &last,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = |o: &serde_json::Value| {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        ["days", "details", "from", "mailbox", "to", "total"]
    );
    assert_eq!(v["mailbox"], "alice@example.edu");
    assert_eq!(v["days"].as_array().unwrap().len(), 30);
    let day_keys = [
        "auth_blk", "auth_rcv", "bounced", "date", "deferred", "expired", "sent", "sum",
    ];
    assert_eq!(keys(&v["days"][0]), day_keys);
    assert_eq!(keys(&v["total"]), day_keys);
    let d = &v["details"][0];
    assert_eq!(
        keys(d),
        [
            "advice",
            "category",
            "category_label",
            "explanation",
            "host",
            "queue_id",
            "recipient",
            "relay",
            "response",
            "sender_ip",
            "status",
            "time"
        ]
    );
    assert!(d["time"].as_str().unwrap().ends_with("+08:00"));

    let csv = cli.ok(&[
        "history",
        "--mailbox",
        "alice",
        "--from",
        &last,
        "--to",
        &last,
        "--format",
        "csv",
    ]);
    assert!(
        csv.starts_with(&format!(
            "Date,Sum,Auth_blk,Auth_rcv,Bounced,Deferred,Expired,Sent\r\n{last},"
        )),
        "{csv}"
    );
    assert!(csv.contains("\r\nTotal,"));
    assert!(csv.contains("Time,Host,Sender IP,Relay,Queue ID,Recipient,Status,Response,Category,Category label,Explanation,Advice\r\n"));
}

#[test]
fn a_mailbox_without_records_gets_an_empty_table() {
    let cli = Cli::new();
    cli.ok(&["ingest", path(&fixture("mail.log"))]);
    let day = sample_day();
    let (first, last) = (day.pred().to_string(), day.to_string());
    let text = cli.ok(&[
        "history",
        "--mailbox",
        "nobody@example.edu",
        "--from",
        &first,
        "--to",
        &last,
    ]);
    assert!(text.contains("No records for nobody@example.edu"), "{text}");
    assert!(text.contains("Total"));
    let json = cli.ok(&[
        "history",
        "--mailbox",
        "nobody@example.edu",
        "--from",
        &first,
        "--to",
        &last,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["total"]["sum"], 0);
    assert_eq!(v["details"].as_array().unwrap().len(), 0);
    assert_eq!(v["days"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_arguments_exit_with_code_2() {
    let cli = Cli::new();
    for args in [
        &["history", "--mailbox", "not an address"][..],
        &["history", "--mailbox", "a@b@c"],
        &["history", "--mailbox", "alice", "--from", "2026-13-01"],
        &["history", "--mailbox", "alice", "--to", "yesterday"],
        &[
            "history",
            "--mailbox",
            "alice",
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-01",
        ],
        &["history", "--mailbox", "alice", "--format", "xml"],
        &["ingest", "/nonexistent/mail.log"],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.is_empty(), "{args:?} says why");
        if args[0] == "ingest" {
            assert!(err.contains("/nonexistent/mail.log"), "{err}");
        }
    }
}

#[test]
fn check_config_validates() {
    let cli = Cli::new();
    let out = cli.ok(&["check-config"]);
    assert!(out.contains("valid"), "{out}");
    assert!(
        out.contains("delimiters      +")
            && out.contains("10 a day to one mailbox, 2 of them help replies"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "timezone = \"UTC\"\nlocal_domains = [\"x.edu\"]\ndefault_domain = \"x.edu\"\nretention = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .args(["--config", path(&bad), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("retention"));
}

#[test]
fn database_flag_overrides_the_config() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path(), "other");
    cli.ok(&["--database", &url, "ingest", path(&fixture("mail.log"))]);
    // The rows are in the other database, and none in the configured one.
    let rows = |url: String| async move {
        let store = mailtrail::store::Store::connect(&url).await.unwrap();
        let n: i64 = crate::on_any_pool!(&store, p => sqlx::query_scalar("SELECT COUNT(*) FROM smtp_rows")
            .fetch_one(p)
            .await
            .unwrap_or(0));
        store.close().await;
        n
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(rows(url)) > 0);
    let configured = std::fs::read_to_string(&cli.config).unwrap();
    let configured = configured
        .lines()
        .find_map(|l| l.strip_prefix("database_url = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    assert_eq!(rt.block_on(rows(configured)), 0);
}

/// Stdin has no modification time: year-less stamps read from it are
/// taken as not after today, so the capture's lines land on its month and
/// day in this year, or last year if that day is still to come.
#[test]
fn stdin_is_a_source() {
    use chrono::Datelike;
    let cli = Cli::new();
    // The capture's month and day in the last year that does not put it
    // after today (in the configured zone), as the ingest saw today.
    let sample = sample_day().date();
    let landed = || {
        let today = chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Taipei)
            .date_naive();
        let this_year = sample.with_year(today.year()).unwrap();
        if this_year <= today {
            this_year
        } else {
            sample.with_year(today.year() - 1).unwrap()
        }
    };
    let before = landed();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .arg("--config")
        .arg(&cli.config)
        .args(["ingest", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let data = std::fs::read(fixture("mail.log")).unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rows stored"), "{text}");
    // Both ends of the ingest, in case midnight passed during it.
    let (from, to) = (before.to_string(), landed().to_string());
    let h = cli.ok(&[
        "history",
        "--mailbox",
        "alice",
        "--from",
        &from,
        "--to",
        &to,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert!(v["total"]["sum"].as_i64().unwrap() > 0);
}

#[test]
fn access_history_from_the_command_line() {
    let cli = Cli::new();
    cli.ok(&["ingest", path(&dovecot("mail.log"))]);
    let day = Capture::Dovecot.day().to_string();
    let (first, last) = (Capture::Dovecot.day().minus(29).to_string(), &day);
    let json = cli.ok(&[
        "access",
        "--mailbox",
        "alice",
        "--from",
        &first,
        "--to",
        last,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = |o: &serde_json::Value| {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v), ["days", "events", "from", "mailbox", "to"]);
    let e = &v["events"][0];
    assert_eq!(
        keys(e),
        [
            "client",
            "deleted",
            "expunged",
            "folder",
            "in_bytes",
            "master_user",
            "message_id",
            "out_bytes",
            "protocol",
            "reason",
            "remote_ip",
            "retained",
            "session",
            "size_bytes",
            "time",
            "trashed",
            "type"
        ]
    );
    let text = cli.ok(&["access", "--mailbox", "alice", "--from", &day, "--to", &day]);
    assert!(text.contains(&format!("Note: On {day}")), "{text}");
    let csv = cli.ok(&[
        "access",
        "--mailbox",
        "alice",
        "--from",
        &day,
        "--to",
        &day,
        "--format",
        "csv",
    ]);
    // alice failed a ManageSieve login in the capture: its column is there.
    assert!(
        csv.starts_with(
            "Date,IMAP logins,POP3 logins,ManageSieve logins,Failed logins,Messages deleted,Addresses,Note\r\n"
        ),
        "{csv}"
    );
    let empty = cli.ok(&[
        "access",
        "--mailbox",
        "nobody",
        "--from",
        &day,
        "--to",
        &day,
    ]);
    assert!(
        empty.contains("No records for nobody@example.edu"),
        "{empty}"
    );
    for args in [
        &["access", "--mailbox", "a b"][..],
        &["access", "--mailbox", "alice", "--from", "23-11-2026"],
    ] {
        assert_eq!(cli.run(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn postfix_and_dovecot_lines_mixed_in_one_file() {
    let (pf_log, dv_log) = (fixture("mail.log"), dovecot("mail.log"));
    let pf = std::fs::read_to_string(&pf_log).unwrap();
    let dv = std::fs::read_to_string(&dv_log).unwrap();
    // Alternate the two logs' lines, as one syslog file would hold them.
    let (mut a, mut b) = (pf.lines(), dv.lines());
    let mut mixed = String::new();
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => {
                for l in [x, y].into_iter().flatten() {
                    mixed.push_str(l);
                    mixed.push('\n');
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.log");
    std::fs::write(&file, mixed).unwrap();
    // Dated by the later capture, which no line of either is after.
    let later = [Capture::Postfix, Capture::Dovecot]
        .into_iter()
        .max_by_key(|c| c.ended())
        .unwrap();
    later.date(&file);

    let separate = Cli::new();
    separate.ok(&["ingest", path(&pf_log), path(&dv_log)]);
    let together = Cli::new();
    let out = together.ok(&["ingest", path(&file)]);
    assert!(out.contains("lines unrecognised             0"), "{out}");
    let days = crate::support::month();
    let (from, to) = (days.from.to_string(), days.to.to_string());
    for (cmd, mailbox) in [
        ("history", "alice"),
        ("history", "bob"),
        ("access", "alice"),
        ("access", "bob"),
    ] {
        let args = [
            cmd,
            "--mailbox",
            mailbox,
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "json",
        ];
        let alone = separate.ok(&args);
        // Not two empty answers: the captures' days are in the range.
        let v: serde_json::Value = serde_json::from_str(&alone).unwrap();
        let rows = &v[if cmd == "history" {
            "details"
        } else {
            "events"
        }];
        assert!(!rows.as_array().unwrap().is_empty(), "{cmd} {mailbox}");
        assert_eq!(alone, together.ok(&args), "{cmd} {mailbox}");
    }
}

#[test]
fn a_damaged_file_is_summarised_and_exits_1() {
    let cli = Cli::new();
    let gz = std::fs::read(fixture("mail.log.gz")).unwrap();
    let truncated = cli._dir.path().join("mail.log.2.gz");
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    let good = fixture("mail-rfc3339.log");
    let out = cli.run(&["ingest", path(&truncated), path(&good)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("lines read"), "{stdout}");
    assert!(stdout.contains("damaged sources"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}: gzip data: the data ends too soon",
            path(&truncated)
        )),
        "{stdout}"
    );
    let len = std::fs::metadata(&good).unwrap().len();
    assert!(
        stdout.contains(&format!("{}: bytes 0..{len}\n", path(&good))),
        "the good file was read whole: {stdout}"
    );
    assert!(stderr.contains(path(&truncated)), "{stderr}");
}

#[test]
fn an_unsupported_compression_is_a_wrong_argument() {
    let cli = Cli::new();
    let lz4 = cli._dir.path().join("mail.log.2.lz4");
    let mut bytes = vec![0x04, 0x22, 0x4d, 0x18];
    bytes.extend_from_slice(&[0x60; 64]);
    std::fs::write(&lz4, bytes).unwrap();
    let out = cli.run(&["ingest", path(&fixture("mail.log")), path(&lz4)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(path(&lz4)) && stderr.contains("lz4"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing was read");
}
