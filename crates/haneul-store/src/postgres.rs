//! The production backend: PostgreSQL. Several server processes may share one database (one
//! leads, the others stand by). Every write transaction first takes one advisory lock, so writes
//! commit one at a time in sequence order: the controller can tail the event table by sequence
//! number without missing a row committed late, and the audit chain has a single tip.
//!
//! A URL may name several hosts (a primary and its replicas) with
//! `target_session_attrs=read-write`: the pool then follows whichever of them takes writes, so
//! the servers carry on by themselves when the database fails over.

use crate::pg_targets::Targets;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::sync::Arc;
use std::time::Duration;

/// Advisory lock key that serialises writers ("haneul" in ASCII, folded into an i64).
const WRITE_LOCK: i64 = 0x68616e65756c;

/// A [`crate::Store`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
    /// Keeps the fail-over watcher alive as long as a clone of the store is; stops it after.
    _watcher: Option<Arc<Watcher>>,
    peers: Arc<crate::gang_cache::PeerCache>,
}

/// How often the watcher checks that the pool's host still takes writes.
const WATCH_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresStore {
    const BACKEND: &'static str = "postgres";

    /// Connects to `url` (postgres://...) and brings the schema up to date. Concurrent servers
    /// may start together: sqlx serialises migrations with its own lock.
    ///
    /// With several hosts, or `target_session_attrs=read-write`, the first acceptable host in
    /// the URL's order serves the pool; every new connection is checked to take writes (a
    /// refused one is retried by the pool), and a watcher moves the pool to another host when
    /// its own stops answering or turns read-only.
    pub async fn open(url: &str) -> crate::Result<Self> {
        let targets = Targets::parse(url)?;
        let options = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10));
        if targets.is_simple() {
            let pool = options.connect_with(targets.hosts[0].clone()).await?;
            return Self::ready(pool, None).await;
        }
        let first = targets.pick().await?;
        let check = targets.clone();
        let pool = options
            .after_connect(move |conn, _| {
                let check = check.clone();
                Box::pin(async move {
                    check.acceptable(conn).await.map_err(|why| {
                        sqlx::Error::Configuration(
                            format!("target_session_attrs=read-write: {why}").into(),
                        )
                    })
                })
            })
            .connect_with(first)
            .await?;
        let watcher = tokio::spawn(watch(pool.clone(), targets));
        Self::ready(pool, Some(Arc::new(Watcher(watcher)))).await
    }

    async fn ready(pool: PgPool, watcher: Option<Arc<Watcher>>) -> crate::Result<Self> {
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore {
            write: pool.clone(),
            read: pool,
            _watcher: watcher,
            peers: Default::default(),
        })
    }

    async fn begin_write(&self) -> crate::Result<Tx<'static>> {
        let mut tx = self.write.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn begin_read(&self) -> crate::Result<Tx<'static>> {
        let mut tx = self.read.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Keeps one connection to the pool's host and checks on it every [`WATCH_EVERY`]; when it
/// breaks or the host turns read-only, tries the URL's hosts in order and points the pool's new
/// connections at the first acceptable one. Connections to a dead host fail their next use and
/// the pool replaces them from the new host.
async fn watch(pool: PgPool, targets: Targets) {
    let mut current: PgConnectOptions = (*pool.connect_options()).clone();
    let mut monitor: Option<PgConnection> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if monitor.is_none() {
            monitor = tokio::time::timeout(WATCH_EVERY * 4, current.connect())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let healthy = match monitor.as_mut() {
            Some(conn) => tokio::time::timeout(WATCH_EVERY * 4, targets.acceptable(conn))
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        if healthy {
            continue;
        }
        if let Some(conn) = monitor.take() {
            let _ = conn.close_hard().await;
        }
        let Ok(next) = targets.pick().await else {
            continue;
        };
        if (next.get_host(), next.get_port()) != (current.get_host(), current.get_port()) {
            tracing::warn!(
                from = %format!("{}:{}", current.get_host(), current.get_port()),
                to = %format!("{}:{}", next.get_host(), next.get_port()),
                "database: the read-write server moved; new connections go to the new one"
            );
            pool.set_connect_options(next.clone());
            current = next;
        }
    }
}

crate::backend::store_impl!(PostgresStore, sqlx::Postgres);
