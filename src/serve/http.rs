//! The web form's HTTP server: the router of [`crate::requests::web`],
//! served one connection at a time by hyper (HTTP/1.1), with every
//! connection bounded in time and their number bounded below the process's
//! file limit.
//!
//! The form is reachable from a whole campus, so it must stay reachable
//! whatever some clients do: open sockets and send nothing, send half a
//! request and stall (slowloris), keep connections alive and idle, or stop
//! reading what they asked for. Each connection therefore has a watchdog
//! that knows where the connection is:
//!
//! * **head**: waiting for a request's head, from the accept (or, on a
//!   kept-alive connection, from the request's first byte); cut off after
//!   `web.header_timeout_secs`;
//! * **busy**: a request is being answered; its body must have arrived
//!   `web.body_timeout_secs` after its head; then it has no deadline of
//!   its own (the handlers' own work is bounded: the database's, the
//!   renderer's);
//! * **idle**: the response is sent and no byte of another request has
//!   come; closed after `web.idle_timeout_secs`.
//!
//! In any state, a response the client does not read for
//! `web.idle_timeout_secs` (a write that cannot proceed) ends the
//! connection.
//!
//! At most `web.max_connections` connections are served at once. A
//! connection accepted over the limit is not left waiting (a full accept
//! queue is what makes a service unreachable): it takes the place of the
//! connection that has waited longest without a request under way, which
//! is closed; if every connection has a request under way, the new one is
//! closed at once. A flood of idle sockets thus only ever closes idle
//! sockets, and a client that sends its request promptly is served.
//!
//! On stop, the listener is closed, idle connections close at once, a
//! request under way gets `web.shutdown_grace_secs` to finish, and every
//! connection still open after that is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::WebConfig;

/// File descriptors kept for everything but the web form's connections:
/// database connections and files, followed logs, the relay, the runtime.
const RESERVED_FDS: u64 = 128;

/// The largest request head read (hyper's read buffer); larger heads are
/// refused. The form's own requests are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long the accept loop pauses after a failed accept (typically the
/// file limit reached by other files), so that it does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How often, at most, a full server or a failing accept is logged.
const FULL_LOG_EVERY: Duration = Duration::from_secs(60);

/// The bounds of the server, from `[web]` and the process's file limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to send a request's head.
    pub header: Duration,
    /// Time to send a request's body, after its head.
    pub body: Duration,
    /// Time idle between requests, and a stalled write's.
    pub idle: Duration,
    /// Time requests under way get on stop.
    pub grace: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// The configured bounds, with `max_connections` lowered to what the
    /// file limit (`RLIMIT_NOFILE`, its soft value) leaves.
    ///
    /// Returns `Err` when the file limit leaves no room for connections.
    pub fn from_config(web: &WebConfig) -> anyhow::Result<Limits> {
        let configured = u64::from(web.max_connections);
        let max = match open_files_limit() {
            Some(nofile) => {
                let room = nofile.saturating_sub(RESERVED_FDS);
                if room == 0 {
                    bail!(
                        "the file limit (RLIMIT_NOFILE) is {nofile}: too low to serve the web form; raise it (ulimit -n, systemd's LimitNOFILE) above {RESERVED_FDS}"
                    );
                }
                if configured > room {
                    tracing::warn!(
                        configured,
                        file_limit = nofile,
                        using = room,
                        "web.max_connections lowered to fit the file limit"
                    );
                }
                configured.min(room)
            }
            None => configured,
        };
        Ok(Limits {
            header: Duration::from_secs(web.header_timeout_secs),
            body: Duration::from_secs(web.body_timeout_secs),
            idle: Duration::from_secs(web.idle_timeout_secs),
            grace: Duration::from_secs(web.shutdown_grace_secs),
            max_connections: usize::try_from(max).unwrap_or(usize::MAX),
        })
    }
}

/// The soft limit on open files of this process; `None` when unlimited or
/// unknown.
fn open_files_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live,
    // properly aligned value and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(rl.rlim_cur)
}

/// Serves `app` on `listener` until `stop` resolves, then stops as the
/// module's documentation says. Returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open: Arc<Mutex<HashMap<u64, Arc<Conn>>>> = Arc::default();
    let (stopping_tx, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let mut full_logged: Option<Instant> = None;
    let mut accept_logged: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        if accept_logged.is_none_or(|t| t.elapsed() >= FULL_LOG_EVERY) {
                            tracing::warn!("web form: cannot accept a connection: {e}");
                            accept_logged = Some(Instant::now());
                        }
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                };
                let Some(permit) = admit(&slots, &open).await else {
                    // Every connection has a request under way: this one
                    // is closed (dropped) at once.
                    if full_logged.is_none_or(|t| t.elapsed() >= FULL_LOG_EVERY) {
                        tracing::warn!(
                            max = limits.max_connections,
                            "web form: every connection is busy; new ones are closed"
                        );
                        full_logged = Some(Instant::now());
                    }
                    continue;
                };
                next_id += 1;
                let conn = Arc::new(Conn::new());
                open.lock().expect("no panic while locked").insert(next_id, conn.clone());
                let registered = Registered { id: next_id, open: open.clone() };
                tasks.spawn(connection(
                    stream,
                    peer,
                    app.clone(),
                    conn,
                    limits.clone(),
                    stopping.clone(),
                    (permit, registered),
                ));
            }
            // Reap finished connections as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let grace = tokio::time::sleep(limits.grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut grace => {
                let left = tasks.len();
                if left > 0 {
                    tracing::info!(connections = left, "web form: dropping connections still open");
                }
                tasks.shutdown().await;
                break;
            }
        }
    }
    Ok(())
}

// The map of open connections is locked only around inserts, removals
// and a scan, none of which can panic, so it is never poisoned: the
// `expect`s on its lock cannot fail.

/// A slot for a new connection: a free one, or the one of the connection
/// that has waited longest without a request under way, which is told to
/// close. `None` when every connection has a request under way.
async fn admit(
    slots: &Arc<Semaphore>,
    open: &Mutex<HashMap<u64, Arc<Conn>>>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = slots.clone().try_acquire_owned() {
        return Some(p);
    }
    let victim = {
        let open = open.lock().expect("no panic while locked");
        open.values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .filter_map(|c| {
                let (phase, since) = unpack(c.state.load(Ordering::Acquire));
                (phase != BUSY).then_some((since, c.born, c.clone()))
            })
            // The one whose wait began first.
            .min_by_key(|(since, born, _)| *born + Duration::from_millis(*since))
            .map(|(_, _, c)| c)
    };
    let victim = victim?;
    victim.evicted.store(true, Ordering::Relaxed);
    victim.kick.notify_one();
    // Its task ends at once and gives its slot back.
    tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Removes a connection from the open ones when its task ends, however it
/// ends (also when aborted).
struct Registered {
    id: u64,
    open: Arc<Mutex<HashMap<u64, Arc<Conn>>>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Where a connection is (see the module's documentation).
const HEAD: u64 = 0;
const BUSY: u64 = 1;
const IDLE: u64 = 2;

fn pack(phase: u64, since_ms: u64) -> u64 {
    since_ms << 2 | phase
}

fn unpack(state: u64) -> (u64, u64) {
    (state & 3, state >> 2)
}

/// One connection's state, shared by its I/O, its requests and its
/// watchdog. Times are milliseconds since `born`.
struct Conn {
    /// When the connection was accepted.
    born: Instant,
    /// The phase and when it began, in one word so that both change at once.
    state: AtomicU64,
    /// Whether the body of the request under way has been read whole.
    body_done: AtomicBool,
    /// When a write began to wait for the client, plus one; 0 when none
    /// waits.
    write_stalled: AtomicU64,
    /// Set to close the connection for a newcomer.
    evicted: AtomicBool,
    /// Wakes the watchdog when a deadline may have come nearer.
    kick: Notify,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            born: Instant::now(),
            state: AtomicU64::new(pack(HEAD, 0)),
            body_done: AtomicBool::new(true),
            write_stalled: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            kick: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX >> 2)
    }

    /// Bytes came in: on an idle connection, the next request's head has
    /// begun.
    fn on_read(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if unpack(state).0 == IDLE {
            let _ = self.state.compare_exchange(
                state,
                pack(HEAD, self.now_ms()),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            self.kick.notify_one();
        }
    }

    /// A request's head was read; `body_done` when it has no body.
    fn on_request(&self, body_done: bool) {
        self.body_done.store(body_done, Ordering::Relaxed);
        self.state
            .store(pack(BUSY, self.now_ms()), Ordering::Release);
        self.kick.notify_one();
    }

    /// The response was sent (or given up).
    fn on_response_done(&self) {
        self.state
            .store(pack(IDLE, self.now_ms()), Ordering::Release);
        self.kick.notify_one();
    }

    fn on_write(&self, pending: bool) {
        if pending {
            if self.write_stalled.load(Ordering::Relaxed) == 0 {
                self.write_stalled
                    .store(self.now_ms() + 1, Ordering::Relaxed);
                self.kick.notify_one();
            }
        } else {
            self.write_stalled.store(0, Ordering::Relaxed);
        }
    }

    /// When the connection is to be closed, in ms, and why, as things
    /// stand; `None`: no deadline.
    fn deadline(&self, l: &Limits) -> Option<(u64, &'static str)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> 4);
        let (phase, since) = unpack(self.state.load(Ordering::Acquire));
        let mut due = match phase {
            HEAD => Some((since + ms(l.header), "request head too slow")),
            IDLE => Some((since + ms(l.idle), "idle")),
            _ if !self.body_done.load(Ordering::Relaxed) => {
                Some((since + ms(l.body), "request body too slow"))
            }
            _ => None,
        };
        let stalled = self.write_stalled.load(Ordering::Relaxed);
        if stalled > 0 {
            let at = stalled - 1 + ms(l.idle);
            if due.is_none_or(|(d, _)| at < d) {
                due = Some((at, "client not reading"));
            }
        }
        due
    }
}

/// Resolves when the connection is to be closed, with the reason.
async fn watchdog(conn: &Conn, limits: &Limits) -> &'static str {
    loop {
        let kicked = conn.kick.notified();
        if conn.evicted.load(Ordering::Relaxed) {
            return "closed for a new connection";
        }
        let due = conn.deadline(limits);
        match due {
            Some((at, why)) if at <= conn.now_ms() => return why,
            Some((at, _)) => {
                let when = tokio::time::Instant::from_std(conn.born + Duration::from_millis(at));
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = kicked => {}
                }
            }
            None => kicked.await,
        }
    }
}

/// Serves one connection until it ends, its watchdog fires, or the grace
/// period after a stop is over (the task is then aborted).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    conn: Arc<Conn>,
    limits: Arc<Limits>,
    mut stopping: watch::Receiver<bool>,
    _slot: (OwnedSemaphorePermit, Registered),
) {
    let _ = stream.set_nodelay(true);
    let peer = SocketAddr::new(crate::net::canonical(peer.ip()), peer.port());
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        conn: conn.clone(),
    });
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            let conn = conn.clone();
            conn.on_request(http_body::Body::is_end_stream(req.body()));
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let req = hyper::Request::from_parts(
                parts,
                Body::new(RequestBody {
                    inner: body,
                    conn: conn.clone(),
                }),
            );
            async move {
                let response = tower_service::Service::call(&mut app, req).await?;
                let done = ResponseDone(conn);
                Ok::<_, Infallible>(response.map(|inner| ResponseBody { inner, _done: done }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(MAX_HEAD_BYTES)
        // The watchdog keeps the time; hyper's own header timer would
        // count idle time as head time.
        .header_read_timeout(None);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let watch = watchdog(&conn, &limits);
    tokio::pin!(watch);
    let mut told_to_stop = false;
    loop {
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "web connection ended: {e}");
                }
                return;
            }
            why = &mut watch => {
                tracing::debug!(%peer, "web connection closed: {why}");
                return;
            }
            _ = stopping.wait_for(|s| *s), if !told_to_stop => {
                // Idle: closes now; a request under way: closes after its
                // response.
                served.as_mut().graceful_shutdown();
                told_to_stop = true;
            }
        }
    }
}

/// The socket, telling the connection's state what moves on it.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.conn.on_write(r.is_pending());
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.conn.on_write(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request's body, telling the connection when it has been read whole.
struct RequestBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.conn.body_done.store(true, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks the connection idle when hyper is done with a response's body.
struct ResponseDone(Arc<Conn>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.on_response_done();
    }
}

/// A response's body, carrying its [`ResponseDone`].
struct ResponseBody {
    inner: Body,
    _done: ResponseDone,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header: Duration::from_secs(10),
            body: Duration::from_secs(20),
            idle: Duration::from_secs(30),
            grace: Duration::from_secs(1),
            max_connections: 4,
        }
    }

    #[test]
    fn each_phase_has_its_own_deadline() {
        let l = limits();
        let c = Conn::new();
        assert_eq!(c.deadline(&l), Some((10_000, "request head too slow")));
        c.on_request(false);
        let (at, why) = c.deadline(&l).unwrap();
        assert_eq!(why, "request body too slow");
        assert!((20_000..21_000).contains(&at));
        // Body read: a handler at work has no deadline of its own...
        c.body_done.store(true, Ordering::Relaxed);
        assert_eq!(c.deadline(&l), None);
        // ... but a response the client does not read has.
        c.on_write(true);
        assert_eq!(c.deadline(&l).unwrap().1, "client not reading");
        c.on_write(false);
        c.on_response_done();
        assert_eq!(c.deadline(&l).unwrap().1, "idle");
        // The next request's first byte starts its head's clock.
        c.on_read();
        assert_eq!(c.deadline(&l).unwrap().1, "request head too slow");
    }

    #[test]
    fn the_connection_limit_fits_the_file_limit() {
        let nofile = open_files_limit();
        let web = WebConfig {
            max_connections: u32::MAX,
            ..WebConfig::default()
        };
        let l = Limits::from_config(&web).unwrap();
        match nofile {
            Some(n) => assert_eq!(l.max_connections as u64, n - RESERVED_FDS),
            None => assert_eq!(l.max_connections, u32::MAX as usize),
        }
        let small = WebConfig {
            max_connections: 3,
            ..WebConfig::default()
        };
        assert_eq!(Limits::from_config(&small).unwrap().max_connections, 3);
    }
}
