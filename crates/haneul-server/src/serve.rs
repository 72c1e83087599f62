//! The listener: the accept loop, TLS (with the certificate reloaded on SIGHUP), and the
//! hygiene that keeps strangers from holding the server: a TLS handshake and a request header
//! must arrive in time, request bodies must keep flowing, idle connections are closed, the
//! number of connections is capped (503 past it), and writes are rate-limited per token (429).
//! It also owns what the kernel must allow for a fleet's connections: the listen queue's length
//! and the process's open-file limit.
//!
//! hyper does the HTTP: its header-read timer bounds a half-sent header, and on HTTP/1.1 the
//! same timer runs while a kept-alive connection waits for its next request. HTTP/2 is served
//! when TLS negotiates it by ALPN; plain connections are HTTP/1.1 only, so that no connection
//! waits in protocol detection, outside hyper's timers. HTTP/1.1 connections may be upgraded to
//! websockets (interactive jobs' terminals, [`crate::terminal`]); an upgraded connection leaves
//! these timers and keeps itself alive with pings.

use crate::clock::SharedClock;
use crate::tls::CertStore;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use haneul_api::i18n::ErrorCode;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Bounds on what one peer may hold or send. `haneul server` exposes each as a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A TLS handshake, and a request's header after the connection opens or after the
    /// previous answer (HTTP/1.1 keep-alive), must arrive within this.
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_timeout: Duration,
    /// A connection with no traffic and no request in progress is closed after this (HTTP/2;
    /// on HTTP/1.1 the header timeout closes it first).
    pub idle_timeout: Duration,
    /// Connections served at once; the next ones are answered 503 and closed.
    pub max_connections: usize,
    /// Writes (POST, PUT, PATCH, DELETE) per second per token, or per address without a
    /// token; 0 turns the limit off. The agent protocol is not limited (see [`limit_writes`]).
    pub writes_per_second: u32,
    /// Writes a token may make at once before the rate applies.
    pub write_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 8192,
            writes_per_second: 50,
            write_burst: 500,
        }
    }
}

/// Connections past the cap that still get their 503 (each holds a descriptor for at most
/// [`REFUSAL_DEADLINE`]); past these, a connection is closed without an answer.
const REFUSALS_AT_ONCE: usize = 256;
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// How long a stop waits for requests in progress (long polls end sooner, at their wait).
const DRAIN: Duration = Duration::from_secs(10);
/// Each HTTP/1.1 connection's read buffer, and so the largest request header block.
const MAX_BUF: usize = 8192;

/// Prepares TLS and the SIGHUP watch at once (so both are in place when the caller says the
/// server is up), and returns the future that serves `app` on `listener` until `stop` turns
/// true, then drains the connections.
pub(crate) fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<CertStore>>,
    limits: Limits,
    clock: SharedClock,
    stop: watch::Receiver<bool>,
) -> Result<impl std::future::Future<Output = std::io::Result<()>> + Send, crate::ServerError> {
    let acceptor = match &tls {
        Some(store) => Some(TlsAcceptor::from(Arc::new(store.server_config()?))),
        None => None,
    };
    if let Some(store) = tls {
        reload_on_sighup(store);
    }
    let app = with_limits(app, &limits, clock);
    Ok(accept_loop(listener, app, acceptor, limits, stop))
}

/// Connections the kernel may hold for the accept loop, asked of `listen`; Linux caps it at
/// `net.core.somaxconn` (4,096 by default). A fleet's agents connect together after a restart
/// or a network cut: 12,500 simulated nodes registering overflowed the queue tokio asks for
/// (1,024) 1,715 times in one start, and each overflow drops a SYN that the node sends again
/// only after 1, 3, 7, 15 or 31 s, past its request's own deadline for some.
const LISTEN_BACKLOG: u32 = 65_535;

/// A listener on `addr` with room for a fleet connecting at once ([`LISTEN_BACKLOG`]), reusing
/// the address as tokio's own `bind` does (a restarted server is not refused the port its
/// predecessor's closed connections still hold).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises this process's soft open-file limit to its hard limit and returns the limit then in
/// force. The kernel's default soft limit (1,024) is less than a centre's agents: each holds a
/// long poll, on the server's side and on a swarm's.
pub fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    acceptor: Option<TlsAcceptor>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let builders = Arc::new(Builders::new(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken: neither
                    // ends the server. The pause lets closing connections free descriptors.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            tcp,
            peer,
            acceptor: acceptor.clone(),
            builders: builders.clone(),
            limits: limits.clone(),
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let (app, watcher) = (app.clone(), graceful.watcher());
                tokio::spawn(async move {
                    conn.serve(app, watcher).await;
                    drop(permit);
                });
            }
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_DEADLINE, conn.refuse()).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(conn),
            },
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {DRAIN:?} after the stop; closing them");
    }
    Ok(())
}

/// The router with the body timeout and the write limit around it.
fn with_limits(app: axum::Router, limits: &Limits, clock: SharedClock) -> axum::Router {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    match WriteLimiter::new(limits, clock) {
        Some(l) => app.layer(axum::middleware::from_fn_with_state(
            Arc::new(l),
            limit_writes,
        )),
        None => app,
    }
}

/// Watches SIGHUP. The handler is installed before this returns, so a SIGHUP sent once the
/// server is up never meets the default action (which ends the process).
fn reload_on_sighup(store: Arc<CertStore>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; the certificate will not be reloaded");
                return;
            }
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match store.reload() {
                    Ok(()) => tracing::info!(
                        cert = %store.files().cert.display(),
                        "reloaded the TLS certificate and key"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS reload failed; keeping the certificate in use"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = store;
}

/// One hyper builder per protocol, configured once.
struct Builders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        let configure = |mut b: auto::Builder<TokioExecutor>| {
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                // hyper's smallest read buffer. Its default lets a connection's buffer grow to
                // 400 KiB on a large header or a fast body, and keeps it at that size while
                // the connection lives: with a long poll held per node, that was 16 KiB or
                // more per node. A header block must fit in it (else 431); bodies stream
                // through it in pieces, so they are bounded by the body limit, not by this.
                .max_buf_size(MAX_BUF);
            b.http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                // Pings find peers that vanished without a FIN (a node that lost power).
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20));
            b
        };
        Builders {
            h1: configure(auto::Builder::new(TokioExecutor::new()).http1_only()),
            h2: configure(auto::Builder::new(TokioExecutor::new()).http2_only()),
        }
    }
}

/// An accepted TCP connection, before TLS and HTTP.
struct Conn {
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builders: Arc<Builders>,
    limits: Arc<Limits>,
}

/// What a connection has done: for the idle check.
struct Activity {
    opened: Instant,
    /// Milliseconds since `opened` of the last byte read or written.
    last: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        self.last
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether the connection should be closed now.
    fn expired(&self, limits: &Limits) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let age = self.opened.elapsed();
        // No request yet (an HTTP/2 peer that never sends its preface or first stream).
        if self.requests.load(Ordering::Relaxed) == 0 && age > limits.header_timeout {
            return true;
        }
        let quiet = age.saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
        quiet > limits.idle_timeout
    }

    /// The first moment [`Activity::expired`] could say yes if nothing happens before: the idle
    /// limit after the last byte, or the header limit after the opening while no request came.
    /// While a request is in flight, one idle limit from now, as its end restarts the count.
    fn next_check(&self, limits: &Limits) -> Instant {
        let now = Instant::now();
        let at = if self.in_flight.load(Ordering::Relaxed) > 0 {
            now + limits.idle_timeout
        } else {
            let last = self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let idle = last + limits.idle_timeout;
            if self.requests.load(Ordering::Relaxed) == 0 {
                idle.min(self.opened + limits.header_timeout)
            } else {
                idle
            }
        };
        // Just past the limit (`expired` wants more than it), and never a busy loop.
        (at + CHECK_SLACK).max(now + CHECK_SLACK)
    }
}

/// How far past a limit an idle connection is looked at again.
const CHECK_SLACK: Duration = Duration::from_millis(10);

/// Counts a request from the moment its header is read until its answer's body is dropped,
/// so that a long poll or a log stream waiting for output is not "idle".
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// The socket, noting when bytes move.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The stream after the TLS handshake, or the bare socket without TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// The TLS handshake, bounded by the header timeout; `None` when it fails or stalls.
    async fn handshake(self) -> Option<(Stream, bool, SocketAddr, Arc<Builders>, Arc<Limits>)> {
        let Conn {
            tcp,
            peer,
            acceptor,
            builders,
            limits,
        } = self;
        let Some(acceptor) = acceptor else {
            return Some((Stream::Plain(tcp), false, peer, builders, limits));
        };
        // Boxed: the handshake's state is kilobytes, and inline it would size the task of
        // every connection, plain ones included, for as long as the connection lives.
        match tokio::time::timeout(limits.header_timeout, Box::pin(acceptor.accept(tcp))).await {
            Ok(Ok(tls)) => {
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                Some((Stream::Tls(Box::new(tls)), h2, peer, builders, limits))
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }

    async fn serve(self, app: axum::Router, watcher: Watcher) {
        let Some((stream, h2, peer, builders, limits)) = self.handshake().await else {
            return;
        };
        let activity = Activity::new();
        let svc = {
            let activity = activity.clone();
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let guard = InFlight::start(&activity);
                let app = app.clone();
                async move {
                    let mut req = req.map(Body::new);
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let resp = app.oneshot(req).await?;
                    // The guard lives as long as the answer's body is being sent.
                    Ok::<_, std::convert::Infallible>(resp.map(|b| {
                        Body::new(b.map_err(move |e| {
                            let _ = &guard;
                            e
                        }))
                    }))
                }
            })
        };
        let builder = if h2 { &builders.h2 } else { &builders.h1 };
        // Each arm's connection is boxed at its own size: inline, every plain connection's
        // task would be as large as a TLS one (the TLS session state is kilobytes), and a
        // centre holds a connection per node for its long polls.
        let done = match stream {
            Stream::Plain(s) => {
                let io = TokioIo::new(Tracked {
                    inner: s,
                    activity: activity.clone(),
                });
                Box::pin(watch_idle(
                    watcher.watch(builder.serve_connection_with_upgrades(io, svc)),
                    &activity,
                    &limits,
                ))
                .await
            }
            Stream::Tls(s) => {
                let io = TokioIo::new(Tracked {
                    inner: *s,
                    activity: activity.clone(),
                });
                Box::pin(watch_idle(
                    watcher.watch(builder.serve_connection_with_upgrades(io, svc)),
                    &activity,
                    &limits,
                ))
                .await
            }
        };
        if let Some(Err(e)) = done {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// Past the cap: one 503 with Retry-After, then the connection is closed.
    async fn refuse(self) {
        let Some((stream, h2, _, builders, _)) = self.handshake().await else {
            return;
        };
        let svc =
            hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let mut resp = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Overloaded,
                    "the server is at its connection limit; retry shortly",
                    crate::error::request_prefers_korean(req.headers()),
                    1,
                );
                if req.version() < Version::HTTP_2 {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(resp)
            });
        let builder = if h2 { &builders.h2 } else { &builders.h1 };
        let r = match stream {
            Stream::Plain(s) => builder.serve_connection(TokioIo::new(s), svc).await,
            Stream::Tls(s) => builder.serve_connection(TokioIo::new(*s), svc).await,
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "refused connection ended with an error");
        }
    }
}

/// Drives the connection; drops it (closing the socket) once it is idle past the limits.
/// The connection is looked at when it could first have expired, not on a clock: a centre
/// holds a connection per node for its long polls, and a tick a second on each was as many
/// wake-ups a second as there are nodes, each polling the connection for nothing.
async fn watch_idle<F: std::future::Future>(
    conn: F,
    activity: &Activity,
    limits: &Limits,
) -> Option<F::Output> {
    tokio::pin!(conn);
    let check = tokio::time::sleep_until(activity.next_check(limits).into());
    tokio::pin!(check);
    loop {
        tokio::select! {
            r = &mut conn => return Some(r),
            () = &mut check => {
                if activity.expired(limits) {
                    return None;
                }
                check.as_mut().reset(activity.next_check(limits).into());
            }
        }
    }
}

/// A JSON error in the API's usual shape, with Retry-After; in Korean when asked for. These
/// answers are made below the router, so [`crate::error::localise`] never sees them.
fn error_response(
    status: StatusCode,
    code: ErrorCode,
    english: &str,
    korean: bool,
    retry_s: u64,
) -> Response {
    let message = if korean {
        code.korean().to_string()
    } else {
        english.to_string()
    };
    let body = haneul_api::ErrorBody {
        error: haneul_api::ErrorDetail {
            code: code.as_str().into(),
            message,
            field: None,
            leader: None,
        },
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_s.max(1)));
    resp
}

/// The server's clock as the rate limiter's time source: its monotonic scale, so that a test's
/// manual clock refills budgets when moved and the system's is never set back.
#[derive(Debug, Clone)]
struct RateClock(SharedClock);

impl governor::clock::Clock for RateClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

type Keyed = governor::RateLimiter<
    [u8; 32],
    governor::state::keyed::DefaultKeyedStateStore<[u8; 32]>,
    RateClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Per-token write budgets. Keys are SHA-256 of the token (never the token itself), or of the
/// peer's address for requests without one.
pub(crate) struct WriteLimiter {
    keyed: Keyed,
    /// Forgetting keys that are back at full budget, now and then, bounds the map's memory
    /// when a stranger sends many made-up tokens.
    swept: std::sync::Mutex<Instant>,
}

/// Keys kept before a sweep is forced ahead of schedule.
const MAX_KEYS: usize = 100_000;

impl WriteLimiter {
    fn new(limits: &Limits, clock: SharedClock) -> Option<Self> {
        let rate = NonZeroU32::new(limits.writes_per_second)?;
        let burst = NonZeroU32::new(limits.write_burst.max(limits.writes_per_second))?;
        let quota = governor::Quota::per_second(rate).allow_burst(burst);
        Some(WriteLimiter {
            keyed: governor::RateLimiter::new(quota, Default::default(), RateClock(clock)),
            swept: std::sync::Mutex::new(Instant::now()),
        })
    }

    fn sweep(&self) {
        let Ok(mut at) = self.swept.lock() else {
            return;
        };
        if at.elapsed() > Duration::from_secs(60) || self.keyed.len() > MAX_KEYS {
            self.keyed.retain_recent();
            self.keyed.shrink_to_fit();
            *at = Instant::now();
        }
    }
}

fn key_of(req: &Request) -> [u8; 32] {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let mut h = Sha256::new();
    match token {
        Some(t) => h.update(t.as_bytes()),
        None => {
            let ip = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default();
            h.update(b"addr:");
            h.update(ip.as_bytes());
        }
    }
    h.finalize().into()
}

/// 429 with Retry-After once a token spends its write budget. Reads are not limited, and
/// neither is the agent protocol: one agent token may serve a whole fleet (1,250 nodes
/// heartbeat about 250 times a second), agent tokens are issued by operators, and a tenant
/// token there is refused by authentication before anything is written.
async fn limit_writes(State(l): State<Arc<WriteLimiter>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.uri().path().starts_with("/v1/agent/")
    {
        return next.run(req).await;
    }
    l.sweep();
    match l.keyed.check_key(&key_of(&req)) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(l.keyed.clock().now());
            error_response(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many writes with this token; retry after the time in Retry-After",
                crate::error::request_prefers_korean(req.headers()),
                wait.as_secs_f64().ceil() as u64,
            )
        }
    }
}
