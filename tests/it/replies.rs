//! Remote replies explained: the table of real replies, the "whose fault"
//! check, a site's own rules, and the category where rows are shown.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailtrail::replies::{CATEGORIES, Classifier, RepliesConfig};

/// The relay Postfix logs for a reply from each origin in the table.
fn relay(origin: &str) -> Option<&'static str> {
    match origin {
        "remote" => Some("mx.example.org[198.51.100.7]:25"),
        "none" => Some("none"),
        "local" => Some("local"),
        "lmtp" => Some("mail.example.edu[private/dovecot-lmtp]"),
        "filter" => Some("127.0.0.1[127.0.0.1]:10024"),
        "smtpd" => None,
        other => panic!("unknown origin {other:?} in the table"),
    }
}

fn ours(rules_file: Option<PathBuf>) -> RepliesConfig {
    RepliesConfig {
        rules_file,
        own_addresses: vec!["192.0.2.25".parse().unwrap()],
        own_names: vec!["mail.example.edu".into()],
    }
}

fn table() -> Vec<(usize, [String; 5])> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replies/replies.tsv");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cells: Vec<&str> = l.split('\t').collect();
            assert_eq!(cells.len(), 5, "line {}: five cells: {l}", i + 1);
            let cells: Vec<String> = cells.into_iter().map(str::to_owned).collect();
            (i + 1, cells.try_into().unwrap())
        })
        .collect()
}

#[test]
fn every_reply_in_the_table_gets_its_category() {
    let k = Classifier::new(&ours(None)).unwrap();
    let rows = table();
    assert!(rows.len() >= 200, "{} replies in the table", rows.len());
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for (line, [status, origin, dsn, reply, want]) in &rows {
        assert!(
            CATEGORIES.contains(&want.as_str()),
            "line {line}: unknown category {want}"
        );
        seen.insert(want.clone());
        let dsn = (dsn != "-").then_some(dsn.as_str());
        let got = k.classify(status, relay(origin), dsn, reply);
        if got != Some(want.as_str()) {
            wrong.push(format!(
                "line {line}: {got:?}, want {want}: {status} {reply}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} replies misclassified:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
    let missing: Vec<&&str> = CATEGORIES.iter().filter(|c| !seen.contains(**c)).collect();
    assert!(missing.is_empty(), "no reply in the table for {missing:?}");
}

#[test]
fn a_reply_naming_our_address_or_a_blocklist_blames_our_server() {
    let k = Classifier::new(&ours(None)).unwrap();
    let remote = relay("remote");
    // A 5.1.1 says "no such address", but the words name our server.
    for reply in [
        "host mx.example.org[198.51.100.7] said: 550 5.1.1 <bob@example.org>: Recipient address rejected: 192.0.2.25 is listed at zen.spamhaus.org (in reply to RCPT TO command)",
        "550 5.1.1 <bob@example.org>: Recipient address rejected: client [192.0.2.25] not permitted",
        "550 5.1.1 <bob@example.org>: rejected, see https://www.spamhaus.org/query/ip/198.51.100.200",
        "554 5.7.1 mail.example.edu: Helo command rejected: Host not found",
    ] {
        assert_eq!(
            k.classify("bounced", remote, Some("5.1.1"), reply),
            Some("our_server_blocked"),
            "{reply}"
        );
    }
    // Without our address or a blocklist, the same code is the address.
    assert_eq!(
        k.classify(
            "bounced",
            remote,
            Some("5.1.1"),
            "550 5.1.1 <bob@example.org>: Recipient address rejected: client [192.0.2.250] not permitted"
        ),
        Some("recipient_unknown")
    );
    // Our name inside the sender's address is not our server named.
    assert_eq!(
        k.classify(
            "bounced",
            remote,
            None,
            "550 5.1.1 <nosuch@example.org>: user unknown; from=<alice@mail.example.edu>"
        ),
        Some("recipient_unknown")
    );
    // Without our addresses configured, a blocklist still blames our server.
    let plain = Classifier::new(&RepliesConfig::default()).unwrap();
    assert_eq!(
        plain.classify(
            "bounced",
            remote,
            Some("5.1.1"),
            "550 5.1.1 <bob@example.org>: 192.0.2.25 is listed at zen.spamhaus.org"
        ),
        Some("our_server_blocked")
    );
    // Sent and accepted rows are not explained.
    assert_eq!(
        plain.classify("sent", remote, Some("2.0.0"), "250 2.0.0 Ok"),
        None
    );
    assert_eq!(plain.classify("auth_rcv", None, None, ""), None);
}

#[test]
fn a_sites_rules_are_tried_before_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(
        &file,
        r#"
# Our partner's gateway says "user unknown" when its own directory is down.
[[rule]]
category = "temporary_failure"
pattern = "partner-gw: user unknown"

[[rule]]
category = "policy"
status = ["bounced"]
enhanced = ["5.2.2"]
"#,
    )
    .unwrap();
    let k = Classifier::new(&ours(Some(file))).unwrap();
    let built_in = Classifier::new(&ours(None)).unwrap();
    let remote = relay("remote");
    let reply = "550 5.1.1 partner-gw: User unknown";
    assert_eq!(
        built_in.classify("bounced", remote, None, reply),
        Some("recipient_unknown")
    );
    assert_eq!(
        k.classify("bounced", remote, None, reply),
        Some("temporary_failure")
    );
    let full = "552 5.2.2 Mailbox full";
    assert_eq!(
        built_in.classify("bounced", remote, None, full),
        Some("mailbox_full")
    );
    assert_eq!(k.classify("bounced", remote, None, full), Some("policy"));
    // The status condition holds: a deferral keeps the built-in category.
    assert_eq!(
        k.classify("deferred", remote, Some("4.2.2"), "452 4.2.2 Mailbox full"),
        Some("mailbox_full")
    );
    // What the site's rules do not match still gets the built-in answer.
    assert_eq!(
        k.classify(
            "deferred",
            remote,
            Some("4.4.1"),
            "connect to mx.example.org[198.51.100.7]:25: Connection refused"
        ),
        Some("no_route")
    );
}

/// A config file for the command line, with `extra` appended.
fn cli_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = crate::support::config_text(&crate::support::database_url(dir, "cli"), 1000);
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    path
}

fn mailtrail(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_bad_site_rule_is_a_config_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("site.toml");
    let config = cli_config(
        dir.path(),
        &format!("[replies]\nrules_file = \"{}\"\n", rules.display()),
    );
    for (text, says) in [
        (
            "[[rule]]\ncategory = \"policy\"\npattern = \"fine\"\n\n[[rule]]\ncategory = \"policy\"\npattern = \"user (unknown\"\n",
            "rule 2: pattern \"user (unknown\" is not a valid expression",
        ),
        (
            "[[rule]]\ncategory = \"no_such_category\"\npattern = \"x\"\n",
            "rule 1: unknown category \"no_such_category\"",
        ),
        (
            "[[rule]]\ncategory = \"policy\"\n",
            "rule 1: a rule needs a pattern",
        ),
        (
            "[[rule]]\ncategory = \"policy\"\nenhanced = [\"5.1.x\"]\n",
            "enhanced \"5.1.x\" is not a status code",
        ),
        (
            "[[rule]]\ncategory = \"policy\"\npattern = \"x\"\ncolour = \"red\"\n",
            "unknown field `colour`",
        ),
    ] {
        std::fs::write(&rules, text).unwrap();
        let out = mailtrail(&config, &["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: accepted");
        assert!(
            err.contains(says) && err.contains(&rules.display().to_string()),
            "{text}: {err}"
        );
    }
    // A missing file is named too.
    std::fs::remove_file(&rules).unwrap();
    let out = mailtrail(&config, &["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("replies.rules_file"),
        "{err}"
    );
    // A good file is accepted, and check-config says how many rules it has.
    std::fs::write(&rules, "[[rule]]\ncategory = \"policy\"\npattern = \"x\"\n").unwrap();
    let out = mailtrail(&config, &["check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("reply rules     1 from"), "{said}");
}

#[test]
fn history_json_and_csv_carry_the_category() {
    let dir = tempfile::tempdir().unwrap();
    // The site's rule makes a refused connection a temporary failure, to
    // show that the output follows the site's rules; the other rows keep
    // the built-in ones.
    let rules = dir.path().join("site.toml");
    std::fs::write(
        &rules,
        "[[rule]]\ncategory = \"temporary_failure\"\npattern = \"connection refused\"\n",
    )
    .unwrap();
    let config = cli_config(
        dir.path(),
        &format!(
            "[report]\ndefault_language = \"en\"\n[replies]\nrules_file = \"{}\"\n",
            rules.display()
        ),
    );
    let log = crate::support::fixture("mail.log");
    assert!(
        mailtrail(&config, &["ingest", log.to_str().unwrap()])
            .status
            .success()
    );
    let day = crate::support::sample_day().to_string();
    let args = [
        "history",
        "--mailbox",
        "alice",
        "--from",
        &day,
        "--to",
        &day,
    ];
    let out = mailtrail(&config, &[&args[..], &["--format", "json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let details = json["details"].as_array().unwrap();
    let row = |recipient: &str, status: &str| {
        details
            .iter()
            .find(|d| d["recipient"] == recipient && d["status"] == status)
            .unwrap_or_else(|| panic!("no {status} row to {recipient} in {json:#}"))
    };
    let unknown = row("nobody@reject.test", "bounced");
    assert_eq!(unknown["category"], "recipient_unknown");
    assert_eq!(
        unknown["category_label"],
        "Recipient address does not exist"
    );
    assert!(
        unknown["explanation"]
            .as_str()
            .unwrap()
            .contains("no mailbox"),
        "{unknown}"
    );
    assert!(
        unknown["advice"].as_str().unwrap().contains("typing"),
        "{unknown}"
    );
    assert_eq!(
        row("gina@down.test", "deferred")["category"],
        "temporary_failure"
    );
    assert_eq!(row("rita@accept.test", "blocked")["category"], "our_filter");
    let sent = details.iter().find(|d| d["status"] == "sent").unwrap();
    assert!(
        sent["category"].is_null() && sent["explanation"].is_null(),
        "{sent}"
    );

    let out = mailtrail(&config, &[&args[..], &["--format", "csv"]].concat());
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.contains("Status,Response,Category,Category label,Explanation,Advice\r\n"),
        "{csv}"
    );
    let line = csv
        .lines()
        .find(|l| l.contains("nobody@reject.test") && l.contains(",bounced,"))
        .unwrap();
    assert!(
        line.contains(",recipient_unknown,Recipient address does not exist,"),
        "{line}"
    );

    // The text output says it under the row.
    let out = mailtrail(&config, &args);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("-> Recipient address does not exist: The receiving server says"),
        "{text}"
    );
}

/// A bounce whose reply is markup, and a deferral: both explained.
const BOUNCES: &str = r#"{day}T10:05:51+08:00 mail postfix/submission/smtpd[27017]: 9B1A8B6981: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice@example.edu
{day}T10:05:51+08:00 mail postfix/cleanup[27022]: 9B1A8B6981: message-id=<r1@example.edu>
{day}T10:05:51+08:00 mail postfix/qmgr[27002]: 9B1A8B6981: from=<alice@example.edu>, size=493, nrcpt=2 (queue active)
{day}T10:05:51+08:00 mail postfix/smtp[27028]: 9B1A8B6981: to=<nobody@example.org>, relay=mx.example.org[198.51.100.7]:25, delay=0.13, delays=0/0.02/0.04/0.06, dsn=5.1.1, status=bounced (host mx.example.org[198.51.100.7] said: 550 5.1.1 <script>alert("owned")</script> User unknown (in reply to RCPT TO command))
{day}T10:05:51+08:00 mail postfix/smtp[27029]: 9B1A8B6981: to=<bob@example.net>, relay=mx.example.net[198.51.100.8]:25, delay=0.13, delays=0/0.02/0.04/0.06, dsn=5.7.1, status=bounced (host mx.example.net[198.51.100.8] said: 554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org (in reply to RCPT TO command))
{day}T10:05:51+08:00 mail postfix/qmgr[27002]: 9B1A8B6981: removed
"#;

#[tokio::test]
async fn a_report_explains_each_failure_in_its_language() {
    use mailtrail::config::Lang;
    use mailtrail::domain::Mailbox;
    use mailtrail::report::{self, Channel, Kind, Requester, Spec};

    let db = crate::support::TestDb::new().await;
    let log = db.dir.path().join("bounces.log");
    let range = crate::support::month();
    std::fs::write(&log, BOUNCES.replace("{day}", &range.to.to_string())).unwrap();
    db.ingest(&[log]).await.unwrap();
    let mut config = db.config.clone();
    config.replies = ours(None);
    for (lang, unknown, blocked, heading) in [
        (
            Lang::En,
            "Recipient address does not exist",
            "Our mail server was blocked",
            "Why mail was not delivered",
        ),
        (
            Lang::ZhTw,
            "收件地址不存在",
            "本校郵件伺服器被封鎖",
            "郵件未送達的原因",
        ),
    ] {
        let spec = Spec {
            mailbox: Mailbox::parse("alice", "example.edu").unwrap(),
            kind: Kind::Smtp,
            range,
            lang,
            requester: Requester::local(Channel::Cli),
        };
        let r = report::build(&db.store, &config, spec).await.unwrap();
        let attachment = String::from_utf8(r.attachment.bytes.clone()).unwrap();
        let t = mailtrail::report::render::strings(lang);
        // Each row says why, under its reply, in the report's language.
        for (label, key) in [
            (unknown, "recipient_unknown"),
            (blocked, "our_server_blocked"),
        ] {
            // The category's name with the result, its sentence and
            // advice under the reply.
            let says = &t[&format!("reply_{key}_says")];
            let result = format!("<br>{}</td>", escape(label));
            let why = format!("<div class=\"why\">{}", escape(says));
            for part in [result, why] {
                assert!(
                    attachment.contains(&part),
                    "{lang:?}: {part} in\n{attachment}"
                );
            }
        }
        // The reply itself stays text.
        assert!(!attachment.contains("<script"), "{attachment}");
        assert!(attachment.contains("&lt;script&gt;alert(&quot;owned&quot;)"));
        // The mail's parts, which have no rows, sum the reasons up.
        assert!(
            r.html.contains(heading) && r.html.contains(unknown),
            "{}",
            r.html
        );
        assert!(
            r.text.contains(heading) && r.text.contains(blocked),
            "{}",
            r.text
        );
        let other = match lang {
            Lang::En => "收件地址不存在",
            Lang::ZhTw => "Recipient address does not exist",
        };
        assert!(!attachment.contains(other), "{lang:?}: the other language");
    }
}

/// minijinja's HTML escaping of the characters our sentences hold.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}
