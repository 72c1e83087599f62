use thiserror::Error;

/// A value that is not meaningful on its own; each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{field}: unknown {kind} `{value}`")]
    Unknown {
        field: &'static str,
        kind: &'static str,
        value: String,
    },
    #[error("{field}: duplicate {kind} `{value}`")]
    Duplicate {
        field: &'static str,
        kind: &'static str,
        value: String,
    },
}

impl ModelError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ModelError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
