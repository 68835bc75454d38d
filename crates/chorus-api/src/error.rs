//! The REST error type: each variant maps to one status, and every body is JSON with `error`
//! and `api_id` (API.md §3, §4.2).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;

use crate::Dialect;

#[derive(Debug, Error)]
pub enum ApiError {
    /// Missing or wrong credentials, or a path naming another account: one answer for all, so
    /// a caller cannot tell which ids exist.
    #[error("authentication failed")]
    Unauthorized { dialect: Dialect },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        };
        let body = serde_json::json!({
            "api_id": crate::new_api_id(),
            "error": self.to_string(),
        });
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Unauthorized {
            dialect: Dialect::Plivo,
        } = self
        {
            // API.md §3 [DECISION]: challenge Basic on the Plivo prefix.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"api\""),
            );
        }
        response
    }
}
