//! The production backend: PostgreSQL. Several server processes may share one database (one
//! leads, the others stand by). Every write transaction first takes one advisory lock, so writes
//! commit one at a time in sequence order: the controller can tail the event table by sequence
//! number without missing a row committed late, and the audit chain has a single tip.
//!
//! Servers hear each other's commits through LISTEN/NOTIFY (migration 0016's triggers): one
//! connection of the pool listens and [`crate::Store::changes`] hands out what it hears.
//!
//! A URL may name several hosts (a primary and its replicas) with
//! `target_session_attrs=read-write`: the pool then follows whichever of them takes writes, so
//! the servers carry on by themselves when the database fails over.

use crate::Change;
use crate::pg_targets::Targets;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// Begins a write: the advisory lock that serialises writers, key "haneul" in ASCII folded
/// into an i64 (0x68616e65756c).
const BEGIN_WRITE: &str = "BEGIN; SELECT pg_advisory_xact_lock(114767673259372)";

/// A [`crate::Store`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
    /// What other servers commit, from the listener.
    changes: broadcast::Sender<Change>,
    /// Keeps the listener and the fail-over watcher alive as long as a clone of the store is;
    /// stops them after.
    _tasks: Arc<Tasks>,
    peers: Arc<crate::gang_cache::PeerCache>,
}

/// How often the watcher checks that the pool's host still takes writes.
const WATCH_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Connections in the pool. Writers queue on one lock, so more connections would only hold
/// more waiting writers; the rest serve reads (agents' long polls, the API) and the listener.
const POOL_SIZE: u32 = 16;

/// The `application_name` of this store's sessions, unique among the servers sharing the
/// database (process id and a count within the process), so that the listener can tell its own
/// notifications from others'. An `application_name` in the URL is kept as its prefix.
fn session_name(given: Option<&str>) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}/{}.{}",
        given.unwrap_or("haneul"),
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
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
        let mut targets = Targets::parse(url)?;
        let name = session_name(targets.hosts[0].get_application_name());
        for host in &mut targets.hosts {
            *host = host.clone().application_name(&name);
        }
        let options = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10));
        if targets.is_simple() {
            let pool = options.connect_with(targets.hosts[0].clone()).await?;
            return Self::ready(pool, name, None).await;
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
        Self::ready(pool, name, Some(watcher)).await
    }

    async fn ready(
        pool: PgPool,
        name: String,
        watcher: Option<tokio::task::JoinHandle<()>>,
    ) -> crate::Result<Self> {
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (changes, _) = broadcast::channel(64);
        // Listening before the store is handed out: nothing committed after `open` returns is
        // missed.
        let listener = start_listening(&pool).await?;
        let mut tasks: Vec<_> = watcher.into_iter().collect();
        tasks.push(tokio::spawn(listen(
            pool.clone(),
            listener,
            name,
            changes.clone(),
        )));
        Ok(PostgresStore {
            write: pool.clone(),
            read: pool,
            changes,
            _tasks: Arc::new(Tasks(tasks)),
            peers: Default::default(),
        })
    }

    /// What [`crate::Store::changes`] hands out.
    fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    /// A write transaction holding the writers' lock. `BEGIN` and the lock go in one message (a
    /// simple query of two statements), so starting a write costs one round trip, not two.
    async fn begin_write(&self) -> crate::Result<Tx<'static>> {
        Ok(self.write.begin_with(BEGIN_WRITE).await?)
    }

    /// A read-only transaction on one snapshot, begun in one round trip.
    async fn begin_read(&self) -> crate::Result<Tx<'static>> {
        Ok(self
            .read
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }
}

/// A connection of the pool listening on the channels of migration 0016.
async fn start_listening(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen_all(["haneul_events", "haneul_lease"]).await?;
    Ok(l)
}

/// Listens for other servers' notifications on a connection of the pool (which follows a fail
/// over) and passes them on; its own (`me` in the payload) are dropped. After a connection is
/// lost, anything may have been missed, so each kind is passed on once.
async fn listen(pool: PgPool, first: PgListener, me: String, changes: broadcast::Sender<Change>) {
    let mut first = Some(first);
    loop {
        let mut listener = match first.take() {
            Some(l) => l,
            None => match start_listening(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "database: cannot listen for other servers' changes; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == "haneul_lease" => {
                    let _ = changes.send(Change::Lease);
                }
                Ok(Some(n)) if n.payload() == me => {}
                Ok(Some(_)) => {
                    let _ = changes.send(Change::Events);
                }
                Ok(None) => {
                    let _ = changes.send(Change::Events);
                    let _ = changes.send(Change::Lease);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "database: lost the listening connection; reconnecting");
                    let _ = changes.send(Change::Events);
                    let _ = changes.send(Change::Lease);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
