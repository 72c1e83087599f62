//! Path and query extractors whose rejections are JSON errors naming the parameter, like bodies.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// The `{id}` path parameter, a positive integer.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad("id", e.body_text()))?;
        match raw.parse::<i64>() {
            Ok(v) if v > 0 => Ok(Id(v)),
            _ => Err(ApiError::bad(
                "id",
                format!("`{raw}` is not an id (a positive integer)"),
            )),
        }
    }
}

/// Query parameters; an unknown or malformed one is a 400 naming it.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                let text = e.body_text();
                let field = ["unknown field `", "missing field `", "invalid digit"]
                    .iter()
                    .find_map(|p| text.split_once(p).and_then(|(_, r)| r.split_once('`')))
                    .map(|(f, _)| f.to_string())
                    .unwrap_or_else(|| "query".into());
                ApiError::bad(
                    field,
                    text.replace("Failed to deserialize query string: ", ""),
                )
            })?;
        Ok(Q(v))
    }
}
