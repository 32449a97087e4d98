//! The web server against clients that misbehave, over real sockets: a
//! head sent halfway and stalled (slowloris), a body that never comes,
//! kept-alive connections left idle, more idle sockets than the server
//! takes, a SIGTERM while such clients hold on; and IPv4 clients reaching
//! a dual-stack (`[::]`) listener, which must count as IPv4 for the
//! networks and limits they are checked against.

use std::time::{Duration, Instant};

use mailtrail::config::Config;
use mailtrail::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestDb;

/// How long any test here waits for what must happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// A free port on loopback.
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// The test database's config with a `[web]` table of `web`, listening on
/// `listen` and following an empty log.
fn config_text(db: &TestDb, listen: &str, web: &str) -> String {
    let log = db.dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let text = db.config_text().replace(
        "[ingest]",
        &format!("[ingest]\npaths = [\"{}\"]", log.display()),
    );
    format!(
        "{text}\n[smtp]\nhost = \"127.0.0.1\"\nport = 9\nfrom = \"mailtrail@example.edu\"\n[web]\nlisten = \"{listen}\"\n{web}\n"
    )
}

/// A running `serve` in this process, stopped on drop.
struct Service {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn start(config: Config, store: Store) -> Service {
        let port = config.web.listen.port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mailtrail::serve::run(config, store, async {
            let _ = rx.await;
        }));
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr).await;
        Service {
            addr,
            stop: Some(tx),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `addr` answers HTTP (with any status).
async fn wait_listening(addr: &str) {
    let start = Instant::now();
    while reqwest::get(format!("http://{addr}/health")).await.is_err() {
        assert!(start.elapsed() < PATIENCE, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads from `s` until the server closes the connection (end of stream or
/// a reset), and returns what it sent before; panics if it is still open
/// after [`PATIENCE`].
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole response (head and a `Content-Length` body) from `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .expect("a Content-Length");
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed mid-response: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The challenge token in a form page.
fn challenge_of(html: &str) -> String {
    let at = html.find("name=\"challenge\" value=\"").expect("a form") + 24;
    let len = html[at..].find('"').unwrap();
    html[at..at + len].to_owned()
}

#[tokio::test]
async fn a_client_that_trickles_a_request_head_is_cut_off_after_the_header_timeout() {
    let db = TestDb::new().await;
    let listen = format!("127.0.0.1:{}", free_port().await);
    let cfg = Config::from_toml(&config_text(
        &db,
        &listen,
        "header_timeout_secs = 1\nbody_timeout_secs = 60\nidle_timeout_secs = 60",
    ))
    .unwrap();
    let svc = Service::start(cfg, db.store.clone()).await;

    // Half a head, then a byte of a header line every 100 ms: each byte is
    // progress, but the head never ends, and the whole head has one
    // deadline.
    let mut s = TcpStream::connect(&svc.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        assert!(
            start.elapsed() < PATIENCE,
            "a trickled head was still open after {PATIENCE:?}"
        );
        if s.write_all(b"a").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => panic!(
                "an answer to half a head: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => continue,
        }
    };
    assert!(closed);

    // A client that sends its request at once is served.
    let r = reqwest::get(svc.url("/")).await.unwrap();
    assert_eq!(r.status(), 200);
    svc.stop().await;
}

#[tokio::test]
async fn a_request_body_that_stalls_is_cut_off_without_an_answer() {
    let db = TestDb::new().await;
    let listen = format!("127.0.0.1:{}", free_port().await);
    let cfg = Config::from_toml(&config_text(
        &db,
        &listen,
        "header_timeout_secs = 60\nbody_timeout_secs = 1\nidle_timeout_secs = 60",
    ))
    .unwrap();
    let svc = Service::start(cfg, db.store.clone()).await;

    let mut s = TcpStream::connect(&svc.addr).await.unwrap();
    s.write_all(
        b"POST /request HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nmailbox=al",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(
        got.is_empty(),
        "the handler answered a body it never had: {:?}",
        String::from_utf8_lossy(&got)
    );
    svc.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let db = TestDb::new().await;
    let listen = format!("127.0.0.1:{}", free_port().await);
    let cfg = Config::from_toml(&config_text(
        &db,
        &listen,
        "header_timeout_secs = 60\nbody_timeout_secs = 60\nidle_timeout_secs = 1",
    ))
    .unwrap();
    let svc = Service::start(cfg, db.store.clone()).await;

    let mut s = TcpStream::connect(&svc.addr).await.unwrap();
    // Two requests on the one connection: it is kept alive...
    for _ in 0..2 {
        s.write_all(b"GET /?lang=en HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut s).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // ... and closed when left idle, though the head timeout is a minute.
    let got = read_until_closed(&mut s).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    svc.stop().await;
}

#[tokio::test]
async fn the_form_answers_while_more_idle_sockets_are_held_than_it_takes() {
    let db = TestDb::new().await;
    let listen = format!("127.0.0.1:{}", free_port().await);
    // Timeouts far longer than the test: only the limit can make room.
    let cfg = Config::from_toml(&config_text(
        &db,
        &listen,
        "header_timeout_secs = 600\nbody_timeout_secs = 600\nidle_timeout_secs = 600\nmax_connections = 50",
    ))
    .unwrap();
    let svc = Service::start(cfg, db.store.clone()).await;

    // The red team's attack: 1,100 sockets opened and held, sending
    // nothing.
    let mut held = Vec::new();
    for _ in 0..1100 {
        let s = tokio::time::timeout(PATIENCE, TcpStream::connect(&svc.addr)).await;
        held.push(s.expect("connected in time").unwrap());
    }
    // A well-behaved client is served at once (within a few seconds, on
    // a loaded machine), not after the attackers give up.
    let c = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = c.get(svc.url("/?lang=en")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("challenge"));
    }
    // The server holds no more of them than its limit: at least the
    // oldest 1,000 were closed from its side.
    // One deadline for them all: a closed socket answers at once, even
    // once it has passed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut closed = 0;
    for s in held.iter_mut().take(1000) {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000, "the oldest idle sockets were closed");
    drop(held);
    svc.stop().await;
}

#[tokio::test]
async fn an_ipv4_client_of_a_dual_stack_listener_is_matched_as_ipv4() {
    let db = TestDb::new().await;
    let port = free_port().await;
    // Reachable from a campus network only, through a proxy on 127.0.0.1;
    // one request per client address an hour.
    let cfg = Config::from_toml(&config_text(
        &db,
        &format!("[::]:{port}"),
        &format!(
            "allowed_networks = [\"192.0.2.0/24\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\nmax_per_client_per_hour = 1\nproof_of_work_bits = {}",
            crate::web::POW_BITS
        ),
    ))
    .unwrap();
    let today = cfg.today().unwrap();
    let svc = Service::start(cfg, db.store.clone()).await;
    let c = reqwest::Client::new();

    // The proxy itself, which the listener sees as ::ffff:127.0.0.1, is
    // not on the campus: refused, and named as the IPv4 address it is.
    let r = c.get(svc.url("/?lang=en")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("Your address, 127.0.0.1,"), "{page}");
    assert!(!page.contains("ffff"), "{page}");

    // Through the proxy, matched as a trusted proxy: the campus client it
    // names, written either way, is let in.
    for client in ["192.0.2.5", "::ffff:192.0.2.5"] {
        let r = c
            .get(svc.url("/?lang=en"))
            .header("X-Forwarded-For", client)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{client}");
    }

    // One client is one key for the limits, whichever way it is written.
    let post = |client: &'static str| {
        let (c, store, url) = (c.clone(), db.store.clone(), svc.url(""));
        let day = today.to_string();
        async move {
            let html = c
                .get(format!("{url}/"))
                .header("X-Forwarded-For", client)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let id = challenge_of(&html);
            let code = crate::web::code_of(&store, &id).await;
            let pow = crate::web::pow_of(&id);
            let r = c
                .post(format!("{url}/request"))
                .header("X-Forwarded-For", client)
                .form(&[
                    ("mailbox", "alice"),
                    ("kind", "smtp"),
                    ("from", day.as_str()),
                    ("lang", "en"),
                    ("challenge", id.as_str()),
                    ("code", code.as_str()),
                    ("pow", pow.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, page) = post("::ffff:192.0.2.5").await;
    assert_eq!(status, 200, "{page}");
    let row = db.store.request(1).await.unwrap().unwrap();
    assert_eq!(row.request.client_ip, "192.0.2.5");
    let (status, page) = post("192.0.2.5").await;
    assert_eq!(status, 429, "the same client's second request: {page}");
    svc.stop().await;
}

#[test]
fn sigterm_stops_serve_within_seconds_whatever_its_clients_do() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let port = rt.block_on(free_port());
    let listen = format!("127.0.0.1:{port}");
    // Timeouts of a minute: only the stop itself may end these clients.
    let config = db.dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(
            &db,
            &listen,
            "header_timeout_secs = 60\nbody_timeout_secs = 60\nidle_timeout_secs = 60\nshutdown_grace_secs = 1",
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrail"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = rt.block_on(async {
        wait_listening(&listen).await;
        // Half a request head, held.
        let mut half = TcpStream::connect(&listen).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaa")
            .await
            .unwrap();
        // A body promised and never sent.
        let mut body = TcpStream::connect(&listen).await.unwrap();
        body.write_all(b"POST /request HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nmail")
            .await
            .unwrap();
        // A kept-alive connection, idle after its answer.
        let mut idle = TcpStream::connect(&listen).await.unwrap();
        idle.write_all(b"GET /?lang=en HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut idle).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // A socket that never sent a byte.
        let silent = TcpStream::connect(&listen).await.unwrap();
        vec![half, body, idle, silent]
    });

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill sends a signal to the child this test started and still
    // owns (not yet waited for, so its pid cannot have been reused).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve was still running {PATIENCE:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");
    drop(held);
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_closed_and_served_once_one_frees() {
    let db = TestDb::new().await;
    let listen = format!("127.0.0.1:{}", free_port().await);
    let cfg = Config::from_toml(&config_text(
        &db,
        &listen,
        "header_timeout_secs = 600\nbody_timeout_secs = 600\nidle_timeout_secs = 600\nmax_connections = 5",
    ))
    .unwrap();
    let svc = Service::start(cfg, db.store.clone()).await;

    // Five posts whose handlers wait for a body that does not come: the
    // server's 100 Continue says each is under way.
    let mut busy = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(&svc.addr).await.unwrap();
        s.write_all(b"POST /request HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.starts_with("HTTP/1.1 100"), "{got}");
        busy.push(s);
    }
    // None of them can be closed for a newcomer: it is closed at once,
    // unanswered, rather than left waiting.
    let mut s = TcpStream::connect(&svc.addr).await.unwrap();
    s.write_all(b"GET /?lang=en HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    // One client gives up: its slot is free, and the form answers again.
    drop(busy.pop());
    let c = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let start = Instant::now();
    loop {
        match c.get(svc.url("/?lang=en")).send().await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                break;
            }
            // The freed slot may not be given back yet.
            Err(e) => assert!(start.elapsed() < PATIENCE, "never served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(busy);
    svc.stop().await;
}
