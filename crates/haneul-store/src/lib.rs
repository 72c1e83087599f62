//! Persistence for the Haneul control plane.
//!
//! This crate owns the durable state of a centre: tenants, users and hashed API tokens, the fleet,
//! jobs with their attempts and tasks, logs, awards, the controller's event stream, the
//! hash-chained audit log and the leader lease. One [`Store`] trait, made of one trait per area
//! ([`TenantStore`], [`JobStore`], ...), has two backends, SQLite (embedded, the default) and
//! PostgreSQL (production, high availability), generated from one body of SQL so that they cannot
//! drift; `tests/suite.rs` runs one test suite against both.
//!
//! Every method that changes state does it in one transaction, and returns only after the commit:
//! a caller that acknowledges after a successful return never acknowledges something lost.

mod backend;
mod error;
mod gang_cache;
mod pg_targets;
mod postgres;
mod records;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

/// A store's background tasks (PostgreSQL's listener and host watcher, SQLite's checkpointer),
/// stopped with the last clone of the store that owns them.
#[derive(Debug)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

pub use backend::access::AccessStore;
pub use backend::attempts::AttemptStore;
pub use backend::audit::AuditStore;
pub use backend::awards::AwardStore;
pub use backend::controller::ControllerStore;
pub use backend::jobs::JobStore;
pub use backend::nodes::NodeStore;
pub use backend::programmes::ProgrammeStore;
pub use backend::telemetry::TelemetryStore;
pub use backend::tenants::TenantStore;
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

use sha2::{Digest, Sha256};

/// Result of every store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Hash of an API token as kept at rest. Tokens are 256-bit random strings, so one SHA-256 is
/// enough: there is nothing to brute-force, unlike a password.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The one persistence interface of the control plane: every area's trait together, so that a
/// caller holding an `Arc<dyn Store>` (or a `S: Store`) calls any method without importing the
/// area traits. Each area's trait and its SQL live in one file under `src/backend/`.
pub trait Store:
    TenantStore
    + AccessStore
    + NodeStore
    + JobStore
    + AttemptStore
    + ControllerStore
    + AwardStore
    + AuditStore
    + ProgrammeStore
    + TelemetryStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// What other servers sharing the database commit, as they commit it, for waking at once
    /// rather than at the next poll. `None` where no other server can share the database
    /// (SQLite). Missed notifications (a listener reconnecting) come as one of each kind, so a
    /// receiver never has to poll faster to be safe, only as a fallback.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }
}
