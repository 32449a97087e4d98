//! The connection to the relay (lettre), with a time limit on every send.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 4xx answer, a refused or lost connection, a timeout: try later.
    #[error("{0}")]
    Transient(String),
    /// A 5xx answer: the relay will not take this mail.
    #[error("{0}")]
    Permanent(String),
}

/// Sends complete messages to the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `[smtp]`. Connects only when sending.
    pub fn new(c: &SmtpConfig) -> anyhow::Result<Mailer> {
        let timeout = Duration::from_secs(c.timeout_secs);
        let helo = c
            .from
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d)
            .to_owned();
        let tls_params = || TlsParameters::new(c.host.clone());
        let tls = match c.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
            .port(c.port)
            .tls(tls)
            .hello_name(ClientId::Domain(helo))
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&c.username, c.password()) {
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: b.build(),
            timeout,
        })
    }

    /// Sends one message. The whole send (connect, dialogue, data) is
    /// limited to the configured timeout: lettre's own covers only parts.
    pub async fn send(&self, from: &str, to: &str, message: &[u8]) -> Result<(), SendError> {
        let parse = |a: &str| {
            a.parse::<Address>()
                .map_err(|e| SendError::Permanent(format!("bad address {a:?}: {e}")))
        };
        let envelope = Envelope::new(Some(parse(from)?), vec![parse(to)?])
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.transport.send_raw(&envelope, message)).await
        {
            Err(_) => Err(SendError::Transient(format!(
                "no answer from the relay within {} s",
                self.timeout.as_secs()
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Ok(Err(e)) => Err(SendError::Transient(e.to_string())),
        }
    }
}
