//! The same client for synchronous callers (the CLI's commands and the node agent's threads):
//! each call runs on a runtime the client owns, shared by its clones, so a process still has
//! one connection pool: one worker thread for long-lived callers (the agent), none for a short
//! command ([`Client::for_command`]), whose calls run on the calling thread.

use crate::{Answer, Method, Options, Result, Retry};
use haneul_api::{Job, LogChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// How often [`Client::until`] asks whether to give up.
pub const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// A blocking [`crate::Client`]. Not for use inside an async runtime (it would block it).
#[derive(Clone)]
pub struct Client {
    rt: Arc<tokio::runtime::Runtime>,
    inner: crate::Client,
}

impl Client {
    pub fn new(opts: &Options) -> Result<Client> {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.worker_threads(1).thread_name("haneul-client");
        Self::on(rt, opts)
    }

    /// A client for one short command (the CLI's): its calls run on the calling thread, so
    /// starting it starts no thread, which is a measurable part of a `haneul submit` run in a
    /// shell loop. A websocket's messages then move on a thread of its own.
    pub fn for_command(opts: &Options) -> Result<Client> {
        Self::on(tokio::runtime::Builder::new_current_thread(), opts)
    }

    fn on(mut rt: tokio::runtime::Builder, opts: &Options) -> Result<Client> {
        let rt = rt.enable_all().build().map_err(|e| crate::Error::Config {
            field: "client",
            message: format!("cannot start the client's runtime: {e}"),
        })?;
        // Built inside the runtime, where reqwest expects to be.
        let inner = rt.block_on(async { crate::Client::new(opts) })?;
        Ok(Client {
            rt: Arc::new(rt),
            inner,
        })
    }

    /// The async client underneath (same pool, same choice of server).
    pub fn inner(&self) -> &crate::Client {
        &self.inner
    }

    pub fn server(&self) -> String {
        self.inner.server()
    }

    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<(u16, Vec<u8>)> {
        self.rt
            .block_on(self.inner.send(method, path, body, &[], timeout))
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
        retry: &Retry,
    ) -> Result<Answer> {
        self.rt.block_on(
            self.inner
                .request_retrying(method, path, body, headers, timeout, retry),
        )
    }

    /// `call` (one of the async client's, from [`Client::inner`]) run to its end, or given up
    /// once `cancelled` says so: `None` then. Asked every [`CANCEL_CHECK`], so a long poll held
    /// open for many seconds does not hold up a caller that was asked to stop (the agent's
    /// poll, on SIGTERM).
    pub fn until<T>(
        &self,
        call: impl std::future::Future<Output = Result<T>>,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<T>> {
        if cancelled() {
            return Ok(None);
        }
        self.rt.block_on(async {
            let watch = async {
                loop {
                    tokio::time::sleep(CANCEL_CHECK).await;
                    if cancelled() {
                        return;
                    }
                }
            };
            tokio::select! {
                answer = call => answer.map(Some),
                () = watch => Ok(None),
            }
        })
    }

    pub fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        retry: &Retry,
    ) -> Result<T> {
        self.rt.block_on(self.inner.call(method, path, body, retry))
    }

    pub fn submit<B: Serialize + ?Sized>(&self, job: &B, retry: &Retry) -> Result<Job> {
        self.rt.block_on(self.inner.submit(job, retry))
    }

    pub fn logs(&self, job: i64, after: i64, retry: &Retry) -> Result<Vec<LogChunk>> {
        self.rt.block_on(self.inner.logs(job, after, retry))
    }
}

/// What a [`Websocket`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A binary message.
    Message(Vec<u8>),
    /// The socket closed, with the peer's reason when it gave one; nothing more comes.
    Closed(Option<String>),
}

/// An open websocket for a synchronous caller: a task on the client's runtime moves messages
/// between it and the socket, pinging the server so that a dead path is noticed. Dropping it
/// closes the socket.
pub struct Websocket {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    rx: std::sync::mpsc::Receiver<Incoming>,
}

/// Messages queued towards the server before `send` waits.
const WS_QUEUE: usize = 64;
/// A ping this often keeps the path open and finds it broken.
const WS_PING: Duration = Duration::from_secs(20);

impl Client {
    /// Opens a websocket to `path` ([`crate::Client::websocket`]).
    pub fn websocket(&self, path: &str) -> Result<Websocket> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let mut socket = self.rt.block_on(self.inner.websocket(path))?;
        let (tx, mut outbox) = tokio::sync::mpsc::channel::<Vec<u8>>(WS_QUEUE);
        let (inbox, rx) = std::sync::mpsc::channel();
        let pump = async move {
            let mut ping = tokio::time::interval(WS_PING);
            ping.tick().await;
            let why = loop {
                tokio::select! {
                    msg = socket.next() => match msg {
                        Some(Ok(Message::Binary(b))) => {
                            if inbox.send(Incoming::Message(b.to_vec())).is_err() {
                                break None;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            break frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break Some(e.to_string()),
                        None => break None,
                    },
                    out = outbox.recv() => match out {
                        Some(b) => {
                            if let Err(e) = socket.send(Message::Binary(b.into())).await {
                                break Some(e.to_string());
                            }
                        }
                        None => {
                            let _ = socket.close(None).await;
                            break None;
                        }
                    },
                    _ = ping.tick() => {
                        if let Err(e) = socket.send(Message::Ping(Vec::new().into())).await {
                            break Some(e.to_string());
                        }
                    }
                }
            };
            let _ = inbox.send(Incoming::Closed(why));
        };
        match self.rt.handle().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => {
                // Nothing drives this runtime while the caller waits on the websocket's
                // channels, so the messages get a thread that does; the caller's own calls
                // meanwhile still make progress (tokio lets a second thread block on a
                // current-thread runtime, its I/O driven by the first).
                let rt = self.rt.clone();
                std::thread::Builder::new()
                    .name("haneul-websocket".into())
                    .spawn(move || rt.block_on(pump))
                    .map_err(|e| crate::Error::Config {
                        field: "client",
                        message: format!("cannot start the websocket's thread: {e}"),
                    })?;
            }
            _ => {
                self.rt.spawn(pump);
            }
        }
        Ok(Websocket { tx, rx })
    }
}

impl Websocket {
    /// Queues a binary message, waiting while the queue is full; false once the socket has
    /// closed.
    pub fn send(&self, message: Vec<u8>) -> bool {
        self.tx.blocking_send(message).is_ok()
    }

    /// The next message, waiting at most `wait`; `None` when none came in time.
    pub fn recv_timeout(&self, wait: Duration) -> Option<Incoming> {
        match self.rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Incoming::Closed(None)),
        }
    }
}
