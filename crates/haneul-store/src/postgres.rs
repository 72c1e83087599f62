//! The production backend: PostgreSQL. Several server processes may share one database (one
//! leads, the others stand by). Every write transaction first takes one advisory lock, so writes
//! commit one at a time in sequence order: the controller can tail the event table by sequence
//! number without missing a row committed late, and the audit chain has a single tip.

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// Advisory lock key that serialises writers ("haneul" in ASCII, folded into an i64).
const WRITE_LOCK: i64 = 0x68616e65756c;

/// A [`crate::Store`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
}

impl PostgresStore {
    const BACKEND: &'static str = "postgres";

    /// Connects to `url` (postgres://...) and brings the schema up to date. Concurrent servers
    /// may start together: sqlx serialises migrations with its own lock.
    pub async fn open(url: &str) -> crate::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore {
            write: pool.clone(),
            read: pool,
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

crate::backend::store_impl!(PostgresStore, sqlx::Postgres);
