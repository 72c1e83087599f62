//! The one HTTP client of Haneul: the CLI's commands, the node agent, the swarm and the
//! benchmarks all talk to the server through it.
//!
//! It owns what every caller needed to get right by hand before: HTTP/1.1 and HTTP/2 (over TLS,
//! by ALPN) through reqwest on rustls, with no OpenSSL; trusting an organisation's own CA
//! (`--ca-file`); one connection pool per process; several servers, of which it uses one at a
//! time, moving to the next on a connection error and to the leader when a standby names it in
//! the [`LEADER_HEADER`]; retries with exponential backoff and full jitter, so that a thousand
//! agents cut off together do not come back in lockstep; and submits with an idempotency key,
//! so that a submit retried after a lost answer makes one job, not two.
//!
//! [`Client`] is async (the swarm holds 1,250 nodes on two threads); [`blocking::Client`] runs
//! the same calls on a small runtime of its own for the synchronous CLI and agent.

pub mod blocking;
pub mod ws;

use haneul_api::{Job, LogChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use reqwest::Method;

/// Sent by a server that does not hold the controller lease: the leader's advertised URL.
pub const LEADER_HEADER: &str = "haneul-leader";
/// The error code of a standby's 503 to a write or an agent call.
pub const NOT_LEADER: &str = "not_leader";
/// Leaders followed in one call at most, so that two servers naming each other cannot loop.
const MAX_HOPS: u32 = 3;
/// The header that makes a repeated `POST /v1/jobs` return the job the first one made.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How long a connection may take to open (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit of one request, answer included; long polls pass their own.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read into memory; the API's largest (a page of 1,000 jobs) is far below.
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad setting: `field` names the flag or config key, the message the fix.
    #[error("{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    /// No answer: the connection failed, broke or timed out. Worth retrying.
    #[error("cannot reach {server}: {message}")]
    Unreachable { server: String, message: String },
    /// The TLS handshake failed, usually a certificate this client does not trust.
    #[error("TLS with {server} failed: {message}")]
    Tls { server: String, message: String },
    /// The server answered with an error status. 5xx are worth retrying, 4xx are not.
    #[error("{server} answered {status}: {body}")]
    Status {
        server: String,
        status: u16,
        body: String,
    },
    /// A 2xx answer that is not what the API promises.
    #[error("{server}: unexpected answer to {what}: {message}")]
    Decode {
        server: String,
        what: String,
        message: String,
    },
    /// The caller asked the retries to stop (the agent or swarm is shutting down).
    #[error("stopped while retrying: {last}")]
    Stopped { last: Box<Error> },
}

impl Error {
    /// Whether the same request may succeed later: no answer, or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A standby's refusal (503, code `not_leader`): the call was not carried out.
    pub fn is_not_leader(&self) -> bool {
        matches!(self, Error::Status { status: 503, body, .. } if body.contains(NOT_LEADER))
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error answer's body (the API's `{"error": ...}` JSON), when there is one.
    pub fn body(&self) -> Option<&str> {
        match self {
            Error::Status { body, .. } => Some(body),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses `--server`: one or more `http://` or `https://` base URLs separated by commas.
pub fn parse_servers(list: &str) -> Result<Vec<reqwest::Url>> {
    let bad = |message: String| Error::Config {
        field: "--server",
        message,
    };
    let mut out = Vec::new();
    for one in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = reqwest::Url::parse(one).map_err(|e| {
            bad(format!(
                "`{one}` is not a URL ({e}); give http://HOST:PORT or https://HOST:PORT"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(format!(
                "`{one}`: give http://HOST:PORT or https://HOST:PORT"
            )));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(bad(format!(
                "`{one}`: give the server's base URL only (scheme, host and port), no path"
            )));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err(bad(
            "no server given; e.g. --server https://haneul.example:8470".into(),
        ));
    }
    Ok(out)
}

/// Exponential backoff with full jitter: try `n` waits a uniformly random time between zero
/// and `min(cap, base * 2^n)`, so that clients cut off together spread their retries over the
/// whole window instead of returning in waves.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rand::random::<f64>())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// How long a call keeps retrying.
#[derive(Clone)]
pub struct Retry {
    /// Tries in all; `None`: until it succeeds, fails for good, or `stop` says so.
    pub tries: Option<u32>,
    pub backoff: Backoff,
    /// Asked before each retry; true ends the retries with [`Error::Stopped`].
    pub stop: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Retry {
    /// At most `tries` tries with the default backoff.
    pub fn times(tries: u32) -> Self {
        Retry {
            tries: Some(tries.max(1)),
            backoff: Backoff::default(),
            stop: None,
        }
    }

    /// One try.
    pub fn never() -> Self {
        Retry::times(1)
    }

    pub fn until(mut self, stop: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Arc::new(stop));
        self
    }

    pub fn forever(mut self) -> Self {
        self.tries = None;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--server`: one or more base URLs, comma-separated.
    pub servers: String,
    /// The bearer token; empty for unauthenticated calls (`/healthz`).
    pub token: String,
    /// A PEM file of the CA(s) to trust instead of the built-in public roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// HTTP/1.1 only, a connection per request in flight, even where TLS offers HTTP/2: for
    /// a process that stands for many machines (the swarm), whose long polls would otherwise
    /// share one connection and queue behind the server's limit of streams per connection.
    pub http1_only: bool,
}

/// A client of one centre's servers; cheap to clone (clones share the connection pool and the
/// choice of server).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    servers: Vec<reqwest::Url>,
    /// The server in use: one of `servers`, or a leader a standby named.
    current: Mutex<reqwest::Url>,
    auth: Option<String>,
    /// TLS of websockets ([`ws`]), which reqwest does not open; `None` for plain HTTP.
    ws_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A 2xx answer's status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(opts: &Options) -> Result<Client> {
        let servers = parse_servers(&opts.servers)?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            // Answers name a leader explicitly; a redirect would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("haneul/", env!("CARGO_PKG_VERSION")));
        if opts.http1_only {
            http = http.http1_only();
        }
        let mut ca_pem = None;
        if let Some(path) = &opts.ca_file {
            http = http
                .tls_built_in_root_certs(false)
                .add_root_certificate(read_ca(path)?);
            ca_pem = std::fs::read(path).ok();
        }
        let ws_tls = if ca_pem.is_some() || servers.iter().any(|s| s.scheme() == "https") {
            Some(ws::tls_config(ca_pem.as_deref())?)
        } else {
            None
        };
        let http = http.build().map_err(|e| Error::Config {
            field: "--server",
            message: format!("cannot set up the HTTP client: {}", chain(&e)),
        })?;
        let auth = (!opts.token.is_empty()).then(|| format!("Bearer {}", opts.token));
        Ok(Client {
            inner: Arc::new(Inner {
                current: Mutex::new(servers[0].clone()),
                servers,
                http,
                auth,
                ws_tls,
            }),
        })
    }

    /// The server in use now (without a trailing slash).
    pub fn server(&self) -> String {
        let url = self.inner.current.lock().expect("not poisoned").clone();
        url.as_str().trim_end_matches('/').to_string()
    }

    /// The servers given, in order.
    pub fn servers(&self) -> Vec<String> {
        self.inner
            .servers
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .collect()
    }

    /// One request to the server in use, any status. A connection error moves to the next
    /// server given; an answer naming the leader moves to the leader.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<(u16, Vec<u8>)> {
        let base = self.inner.current.lock().expect("not poisoned").clone();
        let server = base.as_str().trim_end_matches('/').to_string();
        let url = base.join(path).map_err(|e| Error::Config {
            field: "path",
            message: format!("`{path}`: {e}"),
        })?;
        let mut req = self.inner.http.request(method, url);
        if let Some(auth) = &self.inner.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let answer = match req.send().await {
            Ok(a) => a,
            Err(e) => return Err(self.failed(&base, &server, &e)),
        };
        let status = answer.status().as_u16();
        if let Some(leader) = answer
            .headers()
            .get(LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            self.follow(&base, leader);
        }
        let body = read_limited(answer)
            .await
            .map_err(|e| self.failed(&base, &server, &e))?;
        Ok((status, body))
    }

    /// Records a failed connection: the next call goes to the next server given.
    fn failed(&self, base: &reqwest::Url, server: &str, e: &reqwest::Error) -> Error {
        let message = chain(e);
        if is_tls(&message) {
            return Error::Tls {
                server: server.to_string(),
                message: tls_hint(&message),
            };
        }
        self.next_server(base);
        Error::Unreachable {
            server: server.to_string(),
            message,
        }
    }

    /// Moves from `base`, which could not be reached, to the next server given (unless
    /// another call moved already).
    fn next_server(&self, base: &reqwest::Url) {
        let servers = &self.inner.servers;
        let next = servers
            .iter()
            .position(|s| s == base)
            .map_or(0, |i| (i + 1) % servers.len());
        let mut current = self.inner.current.lock().expect("not poisoned");
        if *current == *base {
            *current = servers[next].clone();
        }
    }

    /// Moves to the leader a standby named. Never from https to http: a standby's word is
    /// not worth sending the token in clear.
    fn follow(&self, base: &reqwest::Url, leader: &str) {
        let Ok(servers) = parse_servers(leader) else {
            tracing::warn!(%base, leader, "ignoring a leader address that is not a base URL");
            return;
        };
        let leader = &servers[0];
        if leader == base {
            return;
        }
        if base.scheme() == "https" && leader.scheme() != "https" {
            tracing::warn!(%base, %leader, "not following a leader over plain http");
            return;
        }
        let mut current = self.inner.current.lock().expect("not poisoned");
        if *current == *base {
            tracing::info!(from = %base, to = %leader, "following the leader");
            *current = leader.clone();
        }
    }

    /// One request; 2xx answers are `Ok`, others [`Error::Status`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Answer> {
        let server = self.server();
        let (status, body) = self.send(method, path, body, headers, timeout).await?;
        if (200..300).contains(&status) {
            Ok(Answer { status, body })
        } else {
            Err(Error::Status {
                server,
                status,
                body: String::from_utf8_lossy(&body).chars().take(2000).collect(),
            })
        }
    }

    /// [`Client::request`], retrying transient failures as `retry` allows.
    pub async fn request_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
        retry: &Retry,
    ) -> Result<Answer> {
        let mut backoff = retry.backoff;
        let mut tries = 0u32;
        let mut hops = 0u32;
        loop {
            tries += 1;
            let before = self.server();
            let e = match self
                .request(method.clone(), path, body.clone(), headers, timeout)
                .await
            {
                Ok(a) => return Ok(a),
                // A standby did nothing but name the leader: going there at once is safe for
                // any call, idempotent or not, and is not a retry.
                Err(e) if e.is_not_leader() && self.server() != before && hops < MAX_HOPS => {
                    hops += 1;
                    tries -= 1;
                    continue;
                }
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            if retry.tries.is_some_and(|t| tries >= t) {
                return Err(e);
            }
            if retry.stop.as_ref().is_some_and(|s| s()) {
                return Err(Error::Stopped { last: Box::new(e) });
            }
            let wait = backoff.next_wait();
            tracing::debug!(%method, path, ?wait, "{e}; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// A typed call, retried as `retry` allows (pass [`Retry::never`] for calls that are not
    /// idempotent).
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        retry: &Retry,
    ) -> Result<T> {
        let body = body.map(encode);
        let what = format!("{method} {path}");
        let a = self
            .request_retrying(method, path, body, &[], None, retry)
            .await?;
        self.decode(&what, &a.body)
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, body: &[u8]) -> Result<T> {
        let body = if body.is_empty() { b"null" } else { body };
        serde_json::from_slice(body).map_err(|e| Error::Decode {
            server: self.server(),
            what: what.to_string(),
            message: e.to_string(),
        })
    }

    /// Submits a job. One random idempotency key per call, sent with every try: a try whose
    /// answer was lost is retried (on connection errors and 5xx) and the server answers with
    /// the job the first try made.
    pub async fn submit<B: Serialize + ?Sized>(&self, job: &B, retry: &Retry) -> Result<Job> {
        let key = idempotency_key();
        self.submit_with_key(job, &key, retry).await
    }

    /// [`Client::submit`] with the caller's key (for callers that log it).
    pub async fn submit_with_key<B: Serialize + ?Sized>(
        &self,
        job: &B,
        key: &str,
        retry: &Retry,
    ) -> Result<Job> {
        let a = self
            .request_retrying(
                Method::POST,
                "/v1/jobs",
                Some(encode(job)),
                &[(IDEMPOTENCY_HEADER, key)],
                None,
                retry,
            )
            .await?;
        self.decode("POST /v1/jobs", &a.body)
    }

    /// A job's output after chunk `after`, in order. The answer is JSON, so the text of each
    /// chunk arrives whole however the HTTP body was cut on the way.
    pub async fn logs(&self, job: i64, after: i64, retry: &Retry) -> Result<Vec<LogChunk>> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/jobs/{job}/logs?after={after}"),
            None,
            retry,
        )
        .await
    }
}

/// A fresh idempotency key: 128 random bits in hex.
pub fn idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn encode<B: Serialize + ?Sized>(body: &B) -> Vec<u8> {
    // The API's request types are plain structs and JSON values: they always serialise.
    serde_json::to_vec(body).expect("request bodies serialise")
}

async fn read_limited(mut answer: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if out.len() + chunk.len() > ANSWER_LIMIT {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn read_ca(path: &Path) -> Result<reqwest::Certificate> {
    let bad = |message: String| Error::Config {
        field: "--ca-file",
        message,
    };
    let pem =
        std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(bad(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's certificate, \
             e.g. DATA_DIR/tls/ca.pem of `haneul up --tls`",
            path.display()
        )));
    }
    reqwest::Certificate::from_pem(&pem).map_err(|e| {
        bad(format!(
            "{}: not a PEM certificate: {}",
            path.display(),
            chain(&e)
        ))
    })
}

/// The error with its causes, which is where reqwest keeps what actually happened.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn is_tls(message: &str) -> bool {
    [
        "certificate",
        "InvalidCertificate",
        "tls handshake",
        "UnknownIssuer",
        "InvalidContentType",
    ]
    .iter()
    .any(|w| message.contains(w))
}

fn tls_hint(message: &str) -> String {
    if message.contains("UnknownIssuer") || message.contains("unknown issuer") {
        format!(
            "the server's certificate is not signed by a CA this client trusts ({message}); \
             give the centre's CA with --ca-file, ca_file in the client config or HANEUL_CA_FILE"
        )
    } else if message.contains("InvalidContentType") {
        format!(
            "the server does not answer in TLS ({message}); use its http:// URL, or serve TLS \
             (haneul server --tls-cert)"
        )
    } else if message.contains("NotValidForName") || message.contains("not valid for name") {
        format!(
            "the server's certificate does not name the host in --server ({message}); use the \
             name the certificate was issued for"
        )
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_and_bad_ones_name_the_flag() {
        let s = parse_servers("http://a:1, https://b:2/").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].as_str(), "https://b:2/");
        for bad in ["", "a:1", "ftp://a:1", "http://a:1/v1", "http://u@a:1"] {
            let e = parse_servers(bad).unwrap_err().to_string();
            assert!(e.starts_with("--server: "), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (w, c) in waits.iter().zip(ceilings) {
            assert!(*w <= Duration::from_millis(c), "{w:?} over {c} ms");
        }
        // Full jitter: many clients at the same step spread over the whole window, not
        // bunched at its top as with "half plus random half".
        let mut low = 0;
        for _ in 0..1000 {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
            b.next_wait();
            b.next_wait();
            if b.next_wait() < Duration::from_millis(200) {
                low += 1;
            }
        }
        assert!((350..650).contains(&low), "{low} of 1000 in the lower half");
    }

    #[test]
    fn keys_differ() {
        let (a, b) = (idempotency_key(), idempotency_key());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
