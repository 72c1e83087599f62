//! Group commit: requests that arrive while a write is in flight are written together in the
//! next transaction. Each caller still gets its answer only after the commit that holds its
//! write, so durability is unchanged; what changes is one fsync per batch instead of per
//! request, which is what lets one SQLite file take thousands of submissions a second.

use crate::error::ApiError;
use std::future::Future;
use std::time::Duration;
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
        Self::gathering(max, Duration::ZERO, max, run)
    }

    /// [`Batcher::spawn`] for items whose answer may wait a little: a batch of fewer than
    /// `enough` items waits up to `gather` from its first item for more before it is written.
    /// Items that come steadily but far apart (a fleet's heartbeats) then share a transaction,
    /// where without it each went alone, a transaction of its own, as soon as the last one's
    /// ended. `enough` bounds the wait where items come fast and batches are large anyway: a
    /// caller that sends its items one after another on a few connections (the swarm, a proxy)
    /// must not get one answer per `gather` on each.
    pub fn gathering<F, Fut>(max: usize, gather: Duration, enough: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<O, ApiError>>> + Send,
    {
        let enough = enough.min(max);
        let (tx, mut rx) = mpsc::channel::<(I, Reply<O>)>(max * 4);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(max);
            while rx.recv_many(&mut buf, max).await > 0 {
                if !gather.is_zero() {
                    let until = tokio::time::Instant::now() + gather;
                    while buf.len() < enough {
                        let room = max - buf.len();
                        // `recv_many` is cancel safe: what the timeout cuts off stays queued.
                        match tokio::time::timeout_at(until, rx.recv_many(&mut buf, room)).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// A batcher whose worker records the size of every batch it gets and answers each item
    /// with itself.
    fn recording(
        max: usize,
        gather: Duration,
        enough: usize,
    ) -> (Batcher<u32, u32>, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::gathering(max, gather, enough, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move { items.into_iter().map(Ok).collect() }
        });
        (batcher, sizes)
    }

    #[tokio::test]
    async fn items_apart_within_the_window_share_a_batch() {
        let (b, sizes) = recording(16, Duration::from_secs(3), 8);
        let mut calls = Vec::new();
        for i in 0..3 {
            let b = b.clone();
            calls.push(tokio::spawn(async move { b.call(i).await }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), i as u32);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn enough_items_do_not_wait_for_the_window() {
        let (b, sizes) = recording(16, Duration::from_secs(30), 2);
        let started = Instant::now();
        let (x, y) = tokio::join!(b.call(1), b.call(2));
        assert_eq!((x.unwrap(), y.unwrap()), (1, 2));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(*sizes.lock().unwrap(), vec![2]);
    }

    #[tokio::test]
    async fn without_a_window_items_apart_go_alone() {
        let (b, sizes) = recording(16, Duration::ZERO, 16);
        for i in 0..3 {
            assert_eq!(b.call(i).await.unwrap(), i);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1, 1]);
    }
}
