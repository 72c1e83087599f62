use thiserror::Error;

/// What a store call can fail with. The first variants are the caller's mistake (the server maps
/// them to 4xx); `Database` and `Corrupt` are ours (5xx).
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{field}: {reason}")]
    Conflict { field: &'static str, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("fence: {0}")]
    Fenced(String),
    #[error("lease: this server no longer leads")]
    NotLeader,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The audit hash chain does not hold from entry `seq` on.
    #[error("the audit chain is broken at entry {seq}: {reason}")]
    AuditBroken { seq: i64, reason: String },
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
    pub(crate) fn conflict(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Conflict {
            field,
            reason: reason.into(),
        }
    }
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
