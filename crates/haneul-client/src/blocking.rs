//! The same client for synchronous callers (the CLI's commands and the node agent's threads):
//! each call runs on a one-thread runtime the client owns, shared by its clones, so a process
//! still has one connection pool.

use crate::{Answer, Method, Options, Result, Retry};
use haneul_api::{Job, LogChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// A blocking [`crate::Client`]. Not for use inside an async runtime (it would block it).
#[derive(Clone)]
pub struct Client {
    rt: Arc<tokio::runtime::Runtime>,
    inner: crate::Client,
}

impl Client {
    pub fn new(opts: &Options) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("haneul-client")
            .enable_all()
            .build()
            .map_err(|e| crate::Error::Config {
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
