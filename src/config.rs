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
    /// sqlx URL: `sqlite://path?mode=rwc` or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
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
}

/// The `[ingest]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Log files `serve` follows.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Relays that belong to this mail system, such as a content filter on
    /// loopback. A `status=sent (... queued as NEWID)` to one of them is a
    /// hand-off, not a delivery: the message is followed to NEWID.
    #[serde(default = "default_internal_relays")]
    pub internal_relays: Vec<IpNet>,
    /// Lines per database transaction. Larger batches ingest faster; smaller
    /// ones make new lines visible sooner.
    #[serde(default = "default_batch_lines")]
    pub batch_lines: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            paths: Vec::new(),
            internal_relays: default_internal_relays(),
            batch_lines: default_batch_lines(),
        }
    }
}

fn default_timezone() -> String {
    "UTC".to_owned()
}
fn default_database_url() -> String {
    "sqlite://var/mailtrail.db?mode=rwc".to_owned()
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
        if self.retention_days == 0 {
            bail!("retention_days must be at least 1");
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
        if self.ingest.batch_lines == 0 {
            bail!("ingest.batch_lines must be at least 1");
        }
        Ok(())
    }

    /// The configured zone.
    pub fn tz(&self) -> anyhow::Result<Tz> {
        self.timezone
            .parse::<Tz>()
            .map_err(|_| anyhow::anyhow!("timezone {:?} is not an IANA zone name", self.timezone))
    }

    /// The rules that decide which addresses are ours.
    pub fn local_domains(&self) -> crate::domain::LocalDomains {
        crate::domain::LocalDomains::new(&self.local_domains, &self.default_domain)
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
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        Config::load(&path).unwrap();
    }
}
