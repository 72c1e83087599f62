//! Group commit: requests that arrive while a write is in flight are written together in the
//! next transaction. Each caller still gets its answer only after the commit that holds its
//! write, so durability is unchanged; what changes is one fsync per batch instead of per
//! request, which is what lets one SQLite file take thousands of submissions a second.

use crate::error::ApiError;
use std::future::Future;
use tokio::sync::{mpsc, oneshot};

type Reply<O> = oneshot::Sender<Result<O, ApiError>>;

/// Feeds items to one worker that handles them in batches of at most `max`.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the worker. `run` gets a batch and must answer each item, in order.
    pub fn spawn<F, Fut>(max: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<O, ApiError>>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(I, Reply<O>)>(max * 4);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(max);
            while rx.recv_many(&mut buf, max).await > 0 {
                let (items, replies): (Vec<I>, Vec<Reply<O>>) = buf.drain(..).unzip();
                let results = run(items).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        });
        Batcher { tx }
    }

    /// Hands one item to the worker and waits for its own result.
    pub async fn call(&self, item: I) -> Result<O, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Internal("a batch was dropped".into()))?
    }
}
