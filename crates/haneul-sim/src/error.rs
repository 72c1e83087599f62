use std::path::{Path, PathBuf};
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
    #[error("variant `{name}`: {reason}")]
    Variant { name: String, reason: String },
    /// A planner input (a command-line option or a sweep) that names no file.
    #[error("{field}: {reason}")]
    Plan { field: String, reason: String },
    #[error(transparent)]
    Sched(#[from] haneul_sched::SchedError),
    #[error(transparent)]
    Model(#[from] haneul_model::ModelError),
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> u64 {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}

/// A TOML parse error as a row error: the line from the span, the field from the message when it
/// names one.
pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> SimError {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    let msg = e.message().trim().to_string();
    // toml's messages read "missing field `x`" or "unknown field `x`, expected ..."
    let field = msg
        .split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "toml".to_string());
    SimError::Row {
        path: path.to_path_buf(),
        line,
        field,
        reason: msg.replace('\n', " "),
    }
}
