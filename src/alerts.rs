//! Threshold warnings: which local mailboxes' day crossed a rule, and one
//! warning per mailbox per day, however many rules it crossed and however
//! often this runs.
//!
//! Rules come from `[alerts]` in the config (default: Sum >= 250 or
//! Bounced >= 10), each with optional per-mailbox and per-domain
//! overrides: another threshold, or an exemption. A mailbox's own override
//! wins over its domain's; of several domains, the longest match wins.

use crate::config::{Config, Metric, Override, Rule};
use crate::domain::{Addressing, DateRange, Day, Mailbox};
use crate::report::{Channel, Crossed, Kind, Requester, Spec};
use crate::store::{DayCounts, Store};

/// Job name in `job_runs`.
pub const JOB: &str = "alerts";

/// A mailbox to warn, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub mailbox: Mailbox,
    pub counts: [i64; 7],
    pub crossed: Vec<Crossed>,
}

/// What `run` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub warnings: Vec<Warning>,
    /// Outbox rows of the warnings (empty for a dry run).
    pub queued: Vec<i64>,
    /// The admin digest's outbox row, if one was queued.
    pub digest: Option<i64>,
    /// Rows that crossed a rule but are no mailbox to warn; not mailed.
    pub refused: Vec<Refused>,
}

fn metric_value(m: Metric, c: &[i64; 7]) -> i64 {
    let i = match m {
        Metric::Sum => 0,
        Metric::AuthBlk => 1,
        Metric::AuthRcv => 2,
        Metric::Bounced => 3,
        Metric::Deferred => 4,
        Metric::Expired => 5,
        Metric::Sent => 6,
    };
    c[i]
}

fn domain_matches(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(base) => {
            domain.eq_ignore_ascii_case(base)
                || domain
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{}", base.to_ascii_lowercase()))
        }
        None => domain.eq_ignore_ascii_case(pattern),
    }
}

/// The threshold of `rule` for `mailbox`; `None` when it is exempt.
pub fn threshold(rule: &Rule, mailbox: &Mailbox, addressing: Addressing<'_>) -> Option<i64> {
    let own = rule.overrides.iter().find(|o| {
        o.mailbox
            .as_deref()
            .and_then(|m| Mailbox::parse(m, addressing).ok())
            .is_some_and(|m| &m == mailbox)
    });
    let domain = mailbox.as_str().rsplit_once('@').map_or("", |(_, d)| d);
    let by_domain = rule
        .overrides
        .iter()
        .filter(|o| {
            o.domain
                .as_deref()
                .is_some_and(|p| domain_matches(p, domain))
        })
        .max_by_key(|o| o.domain.as_deref().map_or(0, str::len));
    match own.or(by_domain) {
        Some(Override { exempt: true, .. }) => None,
        Some(Override {
            threshold: Some(t), ..
        }) => Some(*t),
        _ => Some(rule.threshold),
    }
}

/// A row of a day's table that crossed a rule but is not a mailbox that
/// can be mailed, and why: the logs name addresses that a relay would route
/// elsewhere (`alice%evil.test@example.edu`), and rows stored before
/// extensions were counted for their base mailbox (`judy+tag@`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub address: String,
    pub why: String,
}

/// The local mailboxes of a day's table that crossed at least one rule.
pub fn evaluate(config: &Config, table: &[DayCounts]) -> Vec<Warning> {
    evaluate_all(config, table).0
}

/// [`evaluate`], with the rows of local domains that crossed a rule but are
/// no mailbox to warn ([`Refused`]).
pub fn evaluate_all(config: &Config, table: &[DayCounts]) -> (Vec<Warning>, Vec<Refused>) {
    let local = config.local_domains();
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for row in table {
        if !local.is_local_address(&row.mailbox) {
            continue;
        }
        // Log text is a stranger's: the address is a warning's recipient
        // only when it is exactly a plain local mailbox.
        let mailbox = match local.mailbox(&row.mailbox) {
            Ok(m) if m.as_str() == row.mailbox => Ok(m),
            Ok(m) => Err(format!(
                "an address with an extension; its base mailbox is {m}"
            )),
            Err(e) => Err(e.to_string()),
        };
        let mut crossed: Vec<Crossed> = Vec::new();
        for rule in &config.alerts.rules {
            let t = match &mailbox {
                Ok(m) => threshold(rule, m, local.addressing()),
                Err(_) => Some(rule.threshold),
            };
            let Some(t) = t else {
                continue;
            };
            let value = metric_value(rule.metric, &row.counts);
            // Two rules on one metric: keep the one with the lower bar.
            if value >= t {
                match crossed.iter_mut().find(|c| c.metric == rule.metric) {
                    Some(c) => c.threshold = c.threshold.min(t),
                    None => crossed.push(Crossed {
                        metric: rule.metric,
                        label: rule.metric.label(),
                        value,
                        threshold: t,
                    }),
                }
            }
        }
        match mailbox {
            _ if crossed.is_empty() => {}
            Ok(mailbox) => out.push(Warning {
                mailbox,
                counts: row.counts,
                crossed,
            }),
            Err(why) => refused.push(Refused {
                address: row.mailbox.clone(),
                why,
            }),
        }
    }
    (out, refused)
}

/// The outbox key of a day's warning to a mailbox: one per (day, mailbox).
pub fn warning_key(day: Day, mailbox: &Mailbox) -> String {
    format!("alert:{day}:{mailbox}")
}

/// Evaluates the rules on `day` (aggregating it first if it never was)
/// and, unless `dry_run`, queues one warning per mailbox with the day's
/// SMTP report attached, and the admin digest when one is configured.
/// Safe to run again: nothing is queued twice.
pub async fn run(
    store: &Store,
    config: &Config,
    day: Day,
    dry_run: bool,
    now: i64,
) -> anyhow::Result<Outcome> {
    let aggregated = store
        .jobs_since(day.key())
        .await?
        .iter()
        .any(|(d, j)| *d == day.key() && j == crate::aggregate::JOB);
    if !aggregated {
        crate::aggregate::run(store, day, now).await?;
    }
    let table = store.day_table(day.key()).await?;
    let (warnings, refused) = evaluate_all(config, &table);
    for r in &refused {
        tracing::warn!(%day, "no warning for {:?}: {}", r.address, r.why);
    }
    let mut outcome = Outcome {
        warnings,
        refused,
        ..Outcome::default()
    };
    if dry_run {
        return Ok(outcome);
    }
    for w in &outcome.warnings {
        for c in &w.crossed {
            store
                .record_alert(
                    day.key(),
                    w.mailbox.as_str(),
                    c.metric.as_str(),
                    c.value,
                    c.threshold,
                    None,
                    now,
                )
                .await?;
        }
        let spec = Spec {
            mailbox: w.mailbox.clone(),
            kind: Kind::Smtp,
            range: DateRange::new(day, day)?,
            lang: config.report.default_language,
            requester: Requester {
                channel: Channel::Automatic,
                client_ip: "127.0.0.1".to_owned(),
                at: now,
            },
        };
        let key = warning_key(day, &w.mailbox);
        let id =
            crate::requests::submit_as(store, &spec, Some(&key), crate::requests::Purpose::Warning)
                .await?;
        let row = store
            .request(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("request {id} is gone"))?;
        let outbox = match row.outbox_id {
            Some(o) => o,
            None => match crate::requests::process(store, config, &row).await {
                Ok(o) => o,
                // Refused or over its limit: logged, and no reason to
                // hold up the other mailboxes' warnings.
                Err(e) if e.downcast_ref::<crate::mail::Refused>().is_some() => {
                    outcome.refused.push(Refused {
                        address: w.mailbox.to_string(),
                        why: e.to_string(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        store
            .link_alerts(day.key(), w.mailbox.as_str(), outbox)
            .await?;
        outcome.queued.push(outbox);
    }
    if let Some(admin) = &config.alerts.admin_digest
        && !outcome.warnings.is_empty()
    {
        // To the mailbox itself: `postmaster+mailtrail` is postmaster.
        let admin = config.local_domains().mailbox(admin)?;
        let mail = crate::mail::message::compose_digest(
            config,
            admin.as_str(),
            day,
            &outcome.warnings,
            now,
        )?;
        match crate::mail::queue(store, config, &mail, None, now).await {
            Ok(id) => outcome.digest = Some(id),
            Err(e) if e.downcast_ref::<crate::mail::Refused>().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(%day, warned = outcome.warnings.len(), "alerts evaluated");
    Ok(outcome)
}

/// The crossed rules recorded for a mailbox's day, as a warning shows them.
pub async fn recorded(store: &Store, day: Day, mailbox: &Mailbox) -> anyhow::Result<Vec<Crossed>> {
    let mut out = Vec::new();
    for (m, rule, value, threshold) in store.alerts_of(day.key()).await? {
        if m != mailbox.as_str() {
            continue;
        }
        let metric: Metric = serde_json::from_value(serde_json::Value::String(rule.clone()))
            .map_err(|_| anyhow::anyhow!("unknown metric {rule:?} in alerts"))?;
        out.push(Crossed {
            metric,
            label: metric.label(),
            value,
            threshold,
        });
    }
    out.sort_by_key(|c| c.metric);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!(
            "timezone = \"Asia/Taipei\"\nlocal_domains = [\".example.edu\"]\ndefault_domain = \"example.edu\"\n{extra}"
        ))
        .unwrap()
    }

    fn row(m: &str, sum: i64, bounced: i64) -> DayCounts {
        DayCounts {
            mailbox: m.into(),
            counts: [sum, 0, 0, bounced, 0, 0, sum - bounced],
        }
    }

    #[test]
    fn default_rules_warn_at_250_sum_or_10_bounced() {
        let c = config("");
        let table = [
            row("a@example.edu", 249, 9),
            row("b@example.edu", 250, 0),
            row("c@cs.example.edu", 20, 10),
            row("d@example.edu", 400, 40),
            row("x@gmail.com", 9999, 999),
        ];
        let w = evaluate(&c, &table);
        let who: Vec<(&str, Vec<&str>)> = w
            .iter()
            .map(|w| {
                (
                    w.mailbox.as_str(),
                    w.crossed.iter().map(|c| c.label).collect(),
                )
            })
            .collect();
        assert_eq!(
            who,
            [
                ("b@example.edu", vec!["Sum"]),
                ("c@cs.example.edu", vec!["Bounced"]),
                ("d@example.edu", vec!["Sum", "Bounced"]),
            ]
        );
    }

    #[test]
    fn overrides_raise_or_exempt() {
        let c = config(
            r#"
[[alerts.rules]]
metric = "sum"
threshold = 250
overrides = [
  { domain = ".lists.example.edu", threshold = 5000 },
  { domain = "big.lists.example.edu", threshold = 100000 },
  { mailbox = "noreply", exempt = true },
  { mailbox = "owner@lists.example.edu", threshold = 300 },
]
"#,
        );
        let table = [
            row("noreply@example.edu", 100_000, 0),
            row("news@lists.example.edu", 4_000, 0),
            row("news@sub.lists.example.edu", 6_000, 0),
            row("huge@big.lists.example.edu", 50_000, 0),
            row("owner@lists.example.edu", 301, 0),
        ];
        let w: Vec<String> = evaluate(&c, &table)
            .iter()
            .map(|w| format!("{} {}", w.mailbox, w.crossed[0].threshold))
            .collect();
        assert_eq!(
            w,
            [
                "news@sub.lists.example.edu 5000",
                "owner@lists.example.edu 300"
            ]
        );
    }
}
