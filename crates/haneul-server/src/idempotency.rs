//! `Idempotency-Key` on creating POSTs: a client that lost an answer sends the same request
//! with the same key again and gets the first answer instead of a second object.
//!
//! Keys are per user and kept [`RETENTION_MS`] (24 hours). The same key with the same route and
//! body answers what the first request answered; with another route or body it is 422. A key
//! may be 1 to 255 printable ASCII characters (the CLI sends 32 hex digits).
//!
//! Job submits keep their key in the submit's own transaction (see
//! [`haneul_store::NewIdempotency`]), so no crash can leave a job without its key: a retried
//! submit answers the job as it is now. The other creating POSTs go through [`layer`], which
//! keeps the answer verbatim after the handler committed; a crash between the two commits is
//! the one window in which a retry creates a second object. `POST /v1/tokens` takes no key: its
//! answer holds the token's secret, which the server never stores.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use haneul_store::IdempotentAnswer;
use sha2::{Digest, Sha256};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer header that says an answer is a replay.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a key's answer is kept.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Creating POSTs whose answers [`layer`] keeps (`POST /v1/jobs` keeps its own).
const KEPT_ROUTES: &[&str] = &[
    "/v1/orgs",
    "/v1/projects",
    "/v1/users",
    "/v1/pools",
    "/v1/awards",
    "/v1/awards/{id}/adjust",
    "/v1/calls",
    "/v1/calls/{id}/applications",
    "/v1/applications/{id}/scores",
    "/v1/denied-parties",
];

/// Declares the `Idempotency-Key` header on every creating POST that honours it, so that
/// generated clients can send it: `POST /v1/jobs` and the routes [`layer`] keeps.
pub fn declare(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    let header = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A key of the client's choosing (for example a random UUID): the same key and \
             request within 24 hours answer the first result instead of creating again; the same \
             key with another request is 422",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    for route in std::iter::once("/v1/jobs").chain(KEPT_ROUTES.iter().copied()) {
        if let Some(op) = api.paths.paths.get_mut(route).and_then(|p| p.post.as_mut()) {
            op.parameters
                .get_or_insert_with(Vec::new)
                .push(header.clone());
        }
    }
}

/// The request's key, if it sent one.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad(
            "Idempotency-Key",
            "must be 1 to 255 printable ASCII characters (for example a random UUID)",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

/// The hash a key's request is recognised by.
pub fn request_hash(route: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// The start of the retention at `now`.
pub fn since(now: i64) -> i64 {
    now - RETENTION_MS
}

/// 422 for a key sent again with another request.
pub fn reused() -> ApiError {
    ApiError::Unprocessable {
        field: "Idempotency-Key".into(),
        reason: "this key was used with another request; use a new key for a new request".into(),
    }
}

/// A kept answer sent again.
pub fn replay(status: i64, body: String) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    r.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    r
}

/// For the creating POSTs other than submits (the innermost step of the router's front layer):
/// answers a known key from the store, and keeps the answer of a new one once the handler
/// succeeded.
pub async fn layer(s: &AppState, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let route = match req.extensions().get::<MatchedPath>() {
        Some(m) if KEPT_ROUTES.contains(&m.as_str()) => m.as_str().to_string(),
        _ => return next.run(req).await,
    };
    let key = match key_of(req.headers()) {
        Ok(Some(k)) => k,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let (mut parts, body) = req.into_parts();
    // Without a valid token the handler answers 401 itself; no key is kept.
    let Ok(caller) = Caller::from_request_parts(&mut parts, s).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let bytes = match axum::body::to_bytes(body, crate::BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return ApiError::TooLarge(crate::BODY_LIMIT).into_response(),
    };
    // The path is part of the request: the same body to /v1/calls/1/applications and
    // /v1/calls/2/applications are two requests.
    let hash = request_hash(parts.uri.path(), &bytes);
    let now = s.clock.now_ms();
    let user = caller.0.id;
    match s.store.idempotent_answer(user, &key, since(now)).await {
        Ok(Some(a)) if a.route == route && a.body_hash == hash => {
            return replay(a.status, a.answer);
        }
        Ok(Some(_)) => return reused().into_response(),
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if !resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(out) = axum::body::to_bytes(body, 16 << 20).await else {
        return ApiError::Internal("answer too large to keep".into()).into_response();
    };
    let kept = IdempotentAnswer {
        route,
        body_hash: hash,
        status: i64::from(parts.status.as_u16()),
        answer: String::from_utf8_lossy(&out).into_owned(),
        resource: None,
        created_at: now,
    };
    if let Err(e) = s
        .store
        .keep_idempotent_answer(user, &key, &kept, since(now))
        .await
    {
        // The object exists and the client gets its answer; only a retry would not find it.
        tracing::warn!(error = %e, "could not keep an idempotent answer");
    }
    Response::from_parts(parts, axum::body::Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii() {
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&h).unwrap(), None);
        h.insert(HEADER, HeaderValue::from_static("0f3a-b"));
        assert_eq!(key_of(&h).unwrap().as_deref(), Some("0f3a-b"));
        for bad in ["", "a b", &"x".repeat(256)] {
            h.insert(HEADER, HeaderValue::from_str(bad).unwrap());
            assert!(key_of(&h).is_err(), "{bad:?}");
        }
        assert_ne!(request_hash("/a", b"{}"), request_hash("/b", b"{}"));
    }
}
