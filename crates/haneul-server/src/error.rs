//! The server's one error type and its mapping to HTTP: a client's mistake is always 4xx with
//! the field at fault; only our own failures are 5xx.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use haneul_api::i18n::ErrorCode;
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

    fn parts(&self) -> (StatusCode, ErrorCode, Option<String>) {
        match self {
            ApiError::BadRequest { field, .. } => (
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                Some(field.clone()),
            ),
            ApiError::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, None)
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, None),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            ApiError::Conflict { field, .. } => (
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                Some(field.clone()),
            ),
            ApiError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                None,
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                Some("content-type".into()),
            ),
            ApiError::Unprocessable { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::Unprocessable,
                Some(field.clone()),
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                None,
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None),
            ApiError::AuditBroken { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::AuditChainBroken,
                Some("seq".into()),
            ),
            ApiError::TokenEnded(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, None),
            ApiError::NotLeader(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotLeader, None),
        }
    }

    /// The message in English, as it has always been written.
    fn english(&self) -> String {
        match self {
            ApiError::BadRequest { reason, .. }
            | ApiError::Conflict { reason, .. }
            | ApiError::Unprocessable { reason, .. } => reason.clone(),
            // Details of our own failures go to the log, not to the client.
            ApiError::Internal(_) => "internal error; the server log has details".into(),
            other => other.to_string(),
        }
    }

    /// The message in Korean: the code's template filled with this error's specifics.
    pub fn korean(&self) -> String {
        let (_, code, _) = self.parts();
        let english = self.english();
        match self {
            ApiError::BadRequest { field, reason }
            | ApiError::Conflict { field, reason }
            | ApiError::Unprocessable { field, reason } => {
                code.korean_with(&[("field", field), ("detail", reason)])
            }
            ApiError::NotFound { kind, id } => code.korean_with(&[("kind", kind), ("id", id)]),
            ApiError::TooLarge(limit) => code.korean_with(&[("limit", &limit.to_string())]),
            ApiError::UnsupportedMediaType(got) => code.korean_with(&[("detail", got)]),
            ApiError::AuditBroken { seq, reason } => {
                code.korean_with(&[("seq", &seq.to_string()), ("detail", reason)])
            }
            ApiError::Unauthenticated
            | ApiError::Forbidden(_)
            | ApiError::Unavailable(_)
            | ApiError::TokenEnded(_) => code.korean_with(&[("detail", &english)]),
            ApiError::NotLeader(url) => code.korean_with(&[("leader", url)]),
            ApiError::Internal(_) => code.korean().to_string(),
        }
    }
}

/// The Korean form of an error answer, carried beside the English one until [`localise`]
/// knows which the request asked for.
#[derive(Debug, Clone)]
struct Korean(ErrorBody);

/// Answers errors in Korean to requests whose `Accept-Language` prefers `ko`. Only answers
/// made from an [`ApiError`] carry a Korean form; everything else passes unchanged.
pub async fn localise<F: std::future::Future<Output = Response>>(
    req: axum::extract::Request,
    next: impl FnOnce(axum::extract::Request) -> F,
) -> Response {
    let korean = request_prefers_korean(req.headers());
    let mut answer = next(req).await;
    let Some(Korean(body)) = answer.extensions_mut().remove::<Korean>() else {
        return answer;
    };
    if !korean {
        return answer;
    }
    let (mut parts, _) = answer.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Whether the request's `Accept-Language` prefers Korean.
pub fn request_prefers_korean(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(haneul_api::i18n::prefers_korean)
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
        let leader = match &self {
            ApiError::NotLeader(url) => Some(url.clone()),
            _ => None,
        };
        let body = |message| ErrorBody {
            error: ErrorDetail {
                code: code.as_str().into(),
                message,
                field: field.clone(),
                leader: leader.clone(),
            },
        };
        let korean = Korean(body(self.korean()));
        let mut answer = (status, Json(body(self.english()))).into_response();
        answer.extensions_mut().insert(korean);
        answer
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

/// A JSON body a request may leave out: no body at all (no bytes and no Content-Type) is
/// `T::default()`; anything else is read as [`Body`] reads it.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let declared_empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let untyped = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none();
        if untyped && declared_empty {
            return Ok(OptionalBody(T::default()));
        }
        if untyped {
            // No type and no declared length: empty only if nothing arrives.
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|_| ApiError::TooLarge(crate::BODY_LIMIT))?;
            if bytes.is_empty() {
                return Ok(OptionalBody(T::default()));
            }
            return Err(ApiError::UnsupportedMediaType("no Content-Type".into()));
        }
        Body::<T>::from_request(req, state)
            .await
            .map(|Body(b)| OptionalBody(b))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};
    use http_body_util::BodyExt;

    fn every_variant() -> Vec<ApiError> {
        let all = vec![
            ApiError::bad("gpus", "must be above 0"),
            ApiError::Unauthenticated,
            ApiError::forbidden("only operators may do this"),
            ApiError::not_found("job", 42),
            ApiError::Conflict {
                field: "name".into(),
                reason: "already taken".into(),
            },
            ApiError::TooLarge(1024),
            ApiError::UnsupportedMediaType("`text/plain`".into()),
            ApiError::Unprocessable {
                field: "award".into(),
                reason: "window ended".into(),
            },
            ApiError::Unavailable("this server does not lead".into()),
            ApiError::Internal("disk on fire".into()),
            ApiError::AuditBroken {
                seq: 7,
                reason: "hash mismatch".into(),
            },
            ApiError::TokenEnded("this token expired".into()),
            ApiError::NotLeader("https://leader.example:8470".into()),
        ];
        // A new variant must be added above: this match has no wildcard.
        for e in &all {
            match e {
                ApiError::BadRequest { .. }
                | ApiError::Unauthenticated
                | ApiError::Forbidden(_)
                | ApiError::NotFound { .. }
                | ApiError::Conflict { .. }
                | ApiError::TooLarge(_)
                | ApiError::UnsupportedMediaType(_)
                | ApiError::Unprocessable { .. }
                | ApiError::Unavailable(_)
                | ApiError::Internal(_)
                | ApiError::AuditBroken { .. }
                | ApiError::TokenEnded(_)
                | ApiError::NotLeader(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_error_has_a_korean_message_naming_the_same_specifics() {
        for e in every_variant() {
            let ko = e.korean();
            assert!(!ko.contains('{'), "{e:?}: unfilled placeholder in {ko}");
            assert!(
                ko.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)),
                "{e:?}: no Korean in {ko}"
            );
            // A refused request field is named in the message; `content-type` and `seq` are
            // named by the sentence itself.
            let (_, _, field) = e.parts();
            if let Some(f) = field.filter(|f| f != "content-type" && f != "seq") {
                assert!(ko.contains(&f), "{e:?}: {ko} does not name {f}");
            }
        }
        assert!(ApiError::not_found("job", 42).korean().contains("job `42`"));
        assert!(ApiError::TooLarge(1024).korean().contains("1024"));
        // Our own failures stay in the log in both languages.
        assert!(
            !ApiError::Internal("disk on fire".into())
                .korean()
                .contains("disk")
        );
    }

    async fn answer(
        make: fn() -> ApiError,
        accept: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::new(axum::body::Body::empty());
        if let Some(a) = accept {
            req.headers_mut()
                .insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(a).unwrap());
        }
        let app = axum::Router::new()
            .fallback(move || async move { make() })
            .layer(axum::middleware::from_fn(
                |req, next: axum::middleware::Next| localise(req, |req| next.run(req)),
            ));
        let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_answer_follows_accept_language() {
        let e = || ApiError::bad("gpus", "must be above 0");
        let (status, en) = answer(e, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(en["error"]["message"], "must be above 0");
        let (_, en) = answer(e, Some("en-US,ko;q=0.5")).await;
        assert_eq!(en["error"]["message"], "must be above 0");
        let (status, ko) = answer(e, Some("ko-KR,ko;q=0.9,en;q=0.8")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(ko["error"]["code"], "bad_request");
        assert_eq!(ko["error"]["field"], "gpus");
        assert_eq!(ko["error"]["message"], e().korean());
    }
}
