//! Dovecot lines. For now only the auth process's verdicts on a password,
//! which name the user that Postfix before 3.9 leaves out of its own
//! `SASL ... authentication failed` line when Dovecot is its SASL server.

use memchr::memmem;

/// True when the program of a line is Dovecot's: `dovecot` through syslog, or
/// one of its processes (`auth`, `imap-login`, ...) in its own log file.
pub fn is_dovecot(program: &[u8], host: &[u8]) -> bool {
    program == b"dovecot"
        || (host.is_empty()
            && (program.starts_with(b"auth")
                || program.starts_with(b"imap")
                || program.starts_with(b"pop3")
                || program.starts_with(b"lmtp")
                || program.starts_with(b"master")))
}

/// A failed password check, as the auth process logs it with
/// `auth_verbose = yes`:
///
/// `auth: passwd-file(carol@example.edu,127.0.0.5): Password mismatch`
/// `auth-worker(304): pam(username,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)`
/// `auth: sql(admin@example.ru,192.168.144.226,<6rXunFtu493AqJDi>): Password mismatch`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure<'a> {
    pub user: &'a [u8],
    pub ip: &'a [u8],
}

/// Recognises [`AuthFailure`] in a Dovecot line (program and message as the
/// envelope split them). Anything after the reason, such as
/// `(given password: ...)`, is not looked at.
pub fn auth_failure<'a>(program: &[u8], msg: &'a [u8]) -> Option<AuthFailure<'a>> {
    let mut m = msg;
    if program == b"dovecot" {
        if !m.starts_with(b"auth") {
            return None;
        }
        m = &m[memmem::find(m, b": ")? + 2..];
    } else if !program.starts_with(b"auth") {
        return None;
    }
    m = m.strip_prefix(b"Info: ").unwrap_or(m);
    let open = memchr::memchr(b'(', m)?;
    if open == 0
        || open > 20
        || !m[..open]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    let close = open + memmem::find(&m[open..], b"): ")?;
    let inside = &m[open + 1..close];
    let reason = &m[close + 3..];
    let failed = memmem::find(reason, b"assword mismatch").is_some()
        || reason.starts_with(b"unknown user")
        || reason.starts_with(b"pam_authenticate() failed");
    if !failed {
        return None;
    }
    let mut parts = inside.split(|&b| b == b',');
    let user = parts.next().filter(|u| !u.is_empty() && *u != b"?")?;
    let ip = parts.next().filter(|i| !i.is_empty())?;
    Some(AuthFailure { user, ip })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures() {
        assert_eq!(
            auth_failure(
                b"dovecot",
                b"auth: passwd-file(carol@example.edu,127.0.0.5): Password mismatch"
            ),
            Some(AuthFailure {
                user: b"carol@example.edu",
                ip: b"127.0.0.5"
            })
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth-worker(304): pam(username,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)"),
            Some(AuthFailure { user: b"username", ip: b"1.2.3.4" })
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth: sql(admin@example.ru,192.168.144.226,<6rXunFtu493AqJDi>): Password mismatch"),
            Some(AuthFailure { user: b"admin@example.ru", ip: b"192.168.144.226" })
        );
        assert_eq!(
            auth_failure(
                b"auth-worker(22401)",
                b"Info: sql(admin@example.de,192.0.2.5,<n4JLdHNVngZGpV2j>): unknown user"
            ),
            Some(AuthFailure {
                user: b"admin@example.de",
                ip: b"192.0.2.5"
            })
        );
        assert_eq!(
            auth_failure(b"dovecot", b"imap-login: Login: user=<a>, method=PLAIN"),
            None
        );
        assert_eq!(
            auth_failure(b"dovecot", b"auth: passwd-file(a,1.2.3.4): unknown"),
            None
        );
    }
}
