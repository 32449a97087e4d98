//! A small SMTP server on loopback for the outbox tests: it speaks ESMTP
//! over TCP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA with dot-unstuffing, RSET,
//! NOOP, QUIT), keeps what it receives, and can be told to answer `451`
//! to the next N messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
    /// The user who authenticated, if any.
    pub auth_user: Option<String>,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Messages still to refuse with 451 after DATA.
    refuse_next: AtomicUsize,
    /// Every message whose DATA ended, refused or not.
    data_ends: AtomicUsize,
    /// Every line clients sent, for checking what crossed the wire.
    transcript: Mutex<Vec<String>>,
    auth: Option<(String, String)>,
}

pub struct SmtpServer {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Starts a server; `auth` makes it require AUTH PLAIN with that user
    /// and password.
    pub async fn start(auth: Option<(&str, &str)>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
            ..Shared::default()
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = session(sock, &s).await;
                });
            }
        });
        SmtpServer { port, shared, task }
    }

    /// Answer `451` to the next `n` messages.
    pub fn refuse_next(&self, n: usize) {
        self.shared.refuse_next.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Messages whose DATA ended, accepted or refused: one per attempt
    /// that got that far.
    pub fn data_ends(&self) -> usize {
        self.shared.data_ends.load(Ordering::SeqCst)
    }

    pub fn transcript(&self) -> Vec<String> {
        self.shared.transcript.lock().unwrap().clone()
    }
}

/// A port on loopback where nothing listens.
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

fn angle(arg: &str) -> String {
    let a = arg.trim();
    let a = a.split_once(' ').map_or(a, |(a, _)| a);
    a.trim_start_matches('<').trim_end_matches('>').to_owned()
}

fn b64decode(s: &str) -> Option<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        buf = (buf << 6) | A.iter().position(|&x| x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

async fn session(sock: TcpStream, s: &Shared) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 test.localhost ESMTP\r\n").await?;
    let mut from = None;
    let mut rcpts = Vec::new();
    let mut user = None;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        s.transcript.lock().unwrap().push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let auth = if s.auth.is_some() {
                "250-AUTH PLAIN\r\n"
            } else {
                ""
            };
            format!(
                "250-test.localhost\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n{auth}250 SMTPUTF8\r\n"
            )
        } else if upper.starts_with("HELO") {
            "250 test.localhost\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd[10..].trim();
            let creds = if arg.is_empty() {
                w.write_all(b"334 \r\n").await?;
                let mut l = String::new();
                r.read_line(&mut l).await?;
                s.transcript.lock().unwrap().push(l.trim_end().to_owned());
                l
            } else {
                arg.to_owned()
            };
            let parts: Vec<String> = b64decode(&creds)
                .unwrap_or_default()
                .split(|&b| b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            match (&s.auth, parts.as_slice()) {
                (Some((u, p)), [_, cu, cp]) if cu == u && cp == p => {
                    user = Some(u.clone());
                    "235 2.7.0 Authentication successful\r\n".into()
                }
                _ => "535 5.7.8 Authentication failed\r\n".into(),
            }
        } else if upper.starts_with("MAIL FROM:") {
            if s.auth.is_some() && user.is_none() {
                "530 5.7.0 Authentication required\r\n".into()
            } else {
                from = Some(angle(&cmd[10..]));
                rcpts.clear();
                "250 2.1.0 Ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            rcpts.push(angle(&cmd[8..]));
            "250 2.1.5 Ok\r\n".into()
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            s.data_ends.fetch_add(1, Ordering::SeqCst);
            let refuse = s
                .refuse_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                "451 4.3.0 Try again later\r\n".into()
            } else {
                s.received.lock().unwrap().push(Received {
                    mail_from: from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut rcpts),
                    data,
                    auth_user: user.clone(),
                });
                "250 2.0.0 Ok: queued\r\n".into()
            }
        } else if upper == "RSET" {
            from = None;
            rcpts.clear();
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        w.write_all(reply.as_bytes()).await?;
    }
}
