//! The real [`Transport`]: the agent API (`/v1/agent/*`) over the one HTTP client
//! (`haneul-client`), which brings TLS with the centre's CA, several servers and the leader
//! followed when a standby names it.

use super::Transport;
use crate::{AgentError, Result};
use haneul_api::{
    AgentRegister, AssignmentList, HealthReport, HeartbeatAck, LogUpload, TaskEndpoint, TaskReport,
    TelemetryBatch,
};
use haneul_client::{Method, Retry};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Most a call waits on the server beyond a long poll's own wait.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The agent's calls over HTTP(S). One call, one try: the node loop retries with its own
/// backoff, which knows when the agent is stopping.
#[derive(Clone)]
pub struct HttpTransport {
    client: haneul_client::blocking::Client,
}

impl HttpTransport {
    /// `servers`: one or more base URLs, comma-separated; `ca_file`: the CA to trust.
    pub fn new(
        servers: &str,
        token: String,
        ca_file: Option<std::path::PathBuf>,
    ) -> std::result::Result<Self, haneul_client::Error> {
        let client = haneul_client::blocking::Client::new(&haneul_client::Options {
            servers: servers.to_string(),
            token,
            ca_file,
            ..Default::default()
        })?;
        Ok(HttpTransport { client })
    }

    /// Over a client the caller made (shares its pool and its choice of server).
    pub fn with_client(client: haneul_client::blocking::Client) -> Self {
        HttpTransport { client }
    }

    fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        wait: Duration,
    ) -> Result<T> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let a = self
            .client
            .request(
                method.clone(),
                path,
                body,
                &[],
                Some(wait + ANSWER_WITHIN),
                &Retry::never(),
            )
            .map_err(outcome)?;
        parse(&method, path, &a)
    }
}

/// A call's answer read as `T`; an empty body reads as JSON `null`.
fn parse<T: DeserializeOwned>(method: &Method, path: &str, a: &haneul_client::Answer) -> Result<T> {
    let text: &[u8] = if a.body.is_empty() { b"null" } else { &a.body };
    serde_json::from_slice(text).map_err(|e| {
        AgentError::Transient(format!("{method} {path}: bad answer ({}): {e}", a.status))
    })
}

/// What the agent reads of the server's `Node` answer (the rest is the portal's business).
#[derive(serde::Deserialize)]
struct NodeAnswer {
    id: i64,
    #[serde(default)]
    state: String,
}

/// The agent's two outcomes of a failed call: worth retrying or not.
fn outcome(e: haneul_client::Error) -> AgentError {
    match e {
        haneul_client::Error::Status { status, body, .. } if status < 500 => AgentError::Refused {
            status,
            message: body,
        },
        e if e.is_transient() => AgentError::Transient(e.to_string()),
        e => AgentError::Refused {
            status: 0,
            message: e.to_string(),
        },
    }
}

impl Transport for HttpTransport {
    fn register(&self, node: &AgentRegister) -> Result<i64> {
        let n: NodeAnswer = self.call(
            Method::POST,
            "/v1/agent/register",
            Some(node),
            Duration::ZERO,
        )?;
        Ok(n.id)
    }

    fn heartbeat(&self, node: i64) -> Result<HeartbeatAck> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/agent/nodes/{node}/heartbeat"),
            None,
            Duration::ZERO,
        )
    }

    fn assignments(
        &self,
        node: i64,
        wait_ms: u64,
        etag: Option<&str>,
        stop: &super::Stop,
    ) -> Result<AssignmentList> {
        let path = match etag {
            // The tag is the server's own, passed back; encoded all the same.
            Some(tag) => format!(
                "/v1/agent/nodes/{node}/assignments?wait_ms={wait_ms}&etag={}",
                encode_query(tag)
            ),
            None => format!("/v1/agent/nodes/{node}/assignments?wait_ms={wait_ms}"),
        };
        let timeout = Duration::from_millis(wait_ms) + ANSWER_WITHIN;
        // Given up as well once another call moved the client (a heartbeat that could not
        // reach this server, or a standby naming the leader): a poll held by a server that
        // froze or stopped leading would otherwise keep the node from its new leader for the
        // rest of its wait.
        let sent_to = self.client.server();
        let moved = || self.client.server() != sent_to;
        let once = Retry::never();
        let poll = self.client.inner().request_retrying(
            Method::GET,
            &path,
            None,
            &[],
            Some(timeout),
            &once,
        );
        let answer = self
            .client
            .until(poll, &|| stop() || moved())
            .map_err(outcome)?
            .ok_or_else(|| {
                AgentError::Transient(if moved() {
                    format!("GET {path}: given up, the agent moved from {sent_to}")
                } else {
                    format!("GET {path}: given up, stopping")
                })
            })?;
        parse(&Method::GET, &path, &answer)
    }

    fn report(&self, node: i64, report: &TaskReport) -> Result<()> {
        self.call::<_, serde_json::Value>(
            Method::POST,
            &format!("/v1/agent/nodes/{node}/reports"),
            Some(report),
            Duration::ZERO,
        )
        .map(drop)
    }

    fn upload_log(&self, node: i64, log: &LogUpload) -> Result<()> {
        self.call::<_, serde_json::Value>(
            Method::POST,
            &format!("/v1/agent/nodes/{node}/logs"),
            Some(log),
            Duration::ZERO,
        )
        .map(drop)
    }

    fn endpoint(&self, node: i64, endpoint: &TaskEndpoint) -> Result<()> {
        self.call::<_, serde_json::Value>(
            Method::POST,
            &format!("/v1/agent/nodes/{node}/endpoints"),
            Some(endpoint),
            Duration::ZERO,
        )
        .map(drop)
    }

    fn health(&self, node: i64, report: &HealthReport) -> Result<String> {
        let n: NodeAnswer = self.call(
            Method::POST,
            &format!("/v1/agent/nodes/{node}/health"),
            Some(report),
            Duration::ZERO,
        )?;
        debug_assert_eq!(n.id, node);
        Ok(n.state)
    }

    fn telemetry(&self, node: i64, batch: &TelemetryBatch) -> Result<()> {
        self.call::<_, serde_json::Value>(
            Method::POST,
            &format!("/v1/agent/nodes/{node}/telemetry"),
            Some(batch),
            Duration::ZERO,
        )
        .map(drop)
    }

    fn server(&self) -> String {
        self.client.server()
    }

    fn terminal(
        &self,
        node: i64,
        job: i64,
        fence: i64,
        task: i64,
    ) -> Result<Box<dyn super::TerminalLink>> {
        let path = format!("/v1/agent/nodes/{node}/terminal?job={job}&fence={fence}&task={task}");
        let socket = self.client.websocket(&path).map_err(outcome)?;
        Ok(Box::new(WsLink(socket)))
    }
}

/// A terminal over the client's websocket.
struct WsLink(haneul_client::blocking::Websocket);

impl super::TerminalLink for WsLink {
    fn send(&mut self, frame: &haneul_api::terminal::Frame) -> bool {
        self.0.send(frame.encode())
    }

    fn recv(&mut self, wait: Duration) -> Option<super::LinkEvent> {
        use haneul_client::blocking::Incoming;
        loop {
            return match self.0.recv_timeout(wait)? {
                Incoming::Message(m) => match haneul_api::terminal::Frame::decode(&m) {
                    Ok(f) => Some(super::LinkEvent::Frame(f)),
                    Err(e) => {
                        tracing::debug!("bad terminal frame from the server: {e}");
                        continue;
                    }
                },
                Incoming::Closed(why) => {
                    tracing::debug!(?why, "terminal connection closed");
                    Some(super::LinkEvent::Closed)
                }
            };
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
