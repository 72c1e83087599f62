//! The embedded backend: one SQLite file in WAL mode. Writes go through a single connection, so
//! transactions never contend for the write lock and commit in the order they began; reads use a
//! small pool of read-only connections that WAL lets run beside the writer.

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

/// A [`crate::Store`] in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    peers: std::sync::Arc<crate::gang_cache::PeerCache>,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// Commits are fsynced (`synchronous = FULL`): an acknowledged write survives a power cut,
    /// not only a killed process.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore {
            write,
            read,
            peers: Default::default(),
        })
    }

    async fn begin_write(&self) -> crate::Result<Tx<'static>> {
        Ok(self.write.begin().await?)
    }

    /// No other server shares the file: nothing to hear.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<crate::Change>> {
        None
    }

    async fn begin_read(&self) -> crate::Result<Tx<'static>> {
        Ok(self.read.begin().await?)
    }
}

crate::backend::store_impl!(SqliteStore, sqlx::Sqlite);
