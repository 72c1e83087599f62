use std::path::PathBuf;
use thiserror::Error;

/// What went wrong reading or running a simulation; file errors name the file, line and field.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {field}: {reason}")]
    Row {
        path: PathBuf,
        line: u64,
        field: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Sched(#[from] haneul_sched::SchedError),
    #[error(transparent)]
    Model(#[from] haneul_model::ModelError),
}
