//! The server's one error type and its mapping to HTTP: a client's mistake is always 4xx with
//! the field at fault; only our own failures are 5xx.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use haneul_api::{ErrorBody, ErrorDetail};
use haneul_store::StoreError;
use serde::de::DeserializeOwned;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("missing or invalid token; send `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("send the body as JSON with `Content-Type: application/json` (got {0})")]
    UnsupportedMediaType(String),
    #[error("{field}: {reason}")]
    Unprocessable { field: String, reason: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The audit chain does not verify: our failure, but one whose place the caller must see.
    #[error("the audit chain is broken at entry {seq}: {reason}")]
    AuditBroken { seq: i64, reason: String },
    /// A standby's answer to a write or an agent call: go to the leader at this URL.
    #[error("this server stands by; the leader is {0}")]
    NotLeader(String),
    /// A token that was valid and is no more.
    #[error("{0}")]
    TokenEnded(String),
}

impl ApiError {
    pub fn bad(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }
    pub fn forbidden(what: impl Into<String>) -> Self {
        ApiError::Forbidden(what.into())
    }
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        ApiError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::BadRequest { field, .. } => {
                (StatusCode::BAD_REQUEST, "bad_request", Some(field.clone()))
            }
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict { field, .. } => {
                (StatusCode::CONFLICT, "conflict", Some(field.clone()))
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Some("content-type".into()),
            ),
            ApiError::Unprocessable { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                Some(field.clone()),
            ),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            ApiError::AuditBroken { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_chain_broken",
                Some("seq".into()),
            ),
            ApiError::TokenEnded(_) => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
            ApiError::NotLeader(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_leader", None),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => ApiError::NotFound { kind, id },
            StoreError::Conflict { field, reason } => ApiError::Conflict {
                field: field.into(),
                reason,
            },
            StoreError::Invalid { field, reason } => ApiError::BadRequest {
                field: field.into(),
                reason,
            },
            StoreError::Fenced(reason) => ApiError::Conflict {
                field: "fence".into(),
                reason,
            },
            StoreError::NotLeader => ApiError::Unavailable("this server does not lead".into()),
            StoreError::AuditBroken { seq, reason } => {
                tracing::error!(seq, %reason, "audit chain broken");
                ApiError::AuditBroken { seq, reason }
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl From<haneul_model::ModelError> for ApiError {
    fn from(e: haneul_model::ModelError) -> Self {
        match e {
            haneul_model::ModelError::Invalid { field, reason } => ApiError::bad(field, reason),
            haneul_model::ModelError::Unknown { field, kind, value } => {
                ApiError::bad(field, format!("unknown {kind} `{value}`"))
            }
            haneul_model::ModelError::Duplicate { field, kind, value } => {
                ApiError::bad(field, format!("duplicate {kind} `{value}`"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = match &self {
            ApiError::BadRequest { reason, .. }
            | ApiError::Conflict { reason, .. }
            | ApiError::Unprocessable { reason, .. } => reason.clone(),
            // Details of our own failures go to the log, not to the client.
            ApiError::Internal(_) => "internal error; the server log has details".into(),
            other => other.to_string(),
        };
        let leader = match &self {
            ApiError::NotLeader(url) => Some(url.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                field,
                leader,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// A JSON request body. Unlike `axum::Json`, a body that does not parse is answered with the
/// path of the field at fault (`field`), and a body over the limit with 413.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let limit = crate::BODY_LIMIT;
        check_json_type(req.headers())?;
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e {
                BytesRejection::FailedToBufferBody(_) => ApiError::TooLarge(limit),
                other => ApiError::bad("body", other.body_text()),
            })?;
        // serde would read a struct from an array by position and blame `[0]`; every body here
        // is an object, so say that instead.
        if bytes.trim_ascii_start().first() == Some(&b'[') {
            return Err(ApiError::bad(
                "body",
                "expected a JSON object, got an array",
            ));
        }
        crate::validate::check_body(&bytes)?;
        parse_json(&bytes).map(Body)
    }
}

/// A JSON body must say so: `application/json` or an `application/*+json` type. Anything else
/// (a form, plain text, none) is 415, so a body is never read as something it was not sent as.
pub fn check_json_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let raw = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(raw) = raw else {
        return Err(ApiError::UnsupportedMediaType("no Content-Type".into()));
    };
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        let shown: String = raw.chars().filter(|c| !c.is_control()).take(64).collect();
        Err(ApiError::UnsupportedMediaType(format!("`{shown}`")))
    }
}

/// Parses `bytes` as `T`, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad("body", format!("not valid JSON: {msg}"));
        }
        // serde reports missing and unknown fields at the enclosing object; name them instead.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| msg.split_once(p).and_then(|(_, rest)| rest.split_once('`')))
            .map(|(name, _)| name.to_string());
        let field = match (named, path.as_str()) {
            (Some(n), "." | "") => n,
            // An unknown field's path already ends at the field itself.
            (Some(n), p) if p == n || p.ends_with(&format!(".{n}")) => p.to_string(),
            (Some(n), p) => format!("{p}.{n}"),
            (None, "." | "") => "body".to_string(),
            (None, p) => p.to_string(),
        };
        let reason = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ApiError::bad(field, reason)
    })
}
