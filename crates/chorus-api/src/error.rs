//! The REST error type: each variant maps to one status, and every body is JSON with `error`
//! and `api_id` (API.md §3, §4.2). The unknown-route 404 is not an [`ApiError`]: it is the
//! gateway's plain `{"message":"Not Found"}` (API.md §4).

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;

use crate::control::ControlError;
use crate::params::BodyError;
use crate::Dialect;

#[derive(Debug, Error)]
pub enum ApiError {
    /// Missing or wrong credentials, or a path naming another account: one answer for all, so
    /// a caller cannot tell which ids exist.
    #[error("authentication failed")]
    Unauthorized { dialect: Dialect },
    /// A known path with a method it does not serve.
    #[error("method not allowed")]
    MethodNotAllowed { allow: Vec<Method> },
    #[error("conference not found")]
    ConferenceNotFound,
    #[error("member not found")]
    MemberNotFound,
    /// Unknown id, another account's id, or a file name whose extension is not the format.
    #[error("recording not found")]
    RecordingNotFound,
    /// The recording is still being written: its file does not exist yet.
    #[error("recording not available yet")]
    RecordingNotReady,
    /// The recording ended without a file (failed), or the file is gone.
    #[error("recording file not available")]
    RecordingFileMissing,
    /// A well-formed byte range that starts past the end of the file (RFC 9110 §15.5.17).
    #[error("range not satisfiable")]
    RangeNotSatisfiable { length: u64 },
    #[error("missing parameter: {0}")]
    MissingParameter(&'static str),
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        name: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("request body too large (limit {limit} bytes)")]
    BodyTooLarge { limit: usize },
    #[error("could not read the request body")]
    BodyUnreadable,
    /// The engine refused a well-formed request ([`ControlError::Invalid`]).
    #[error("{0}")]
    Invalid(String),
    /// The engine cannot serve this now ([`ControlError::Unavailable`]); the message is shown.
    #[error("{0}")]
    Unavailable(String),
    /// The engine failed; the detail is logged, not shown.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ConferenceNotFound
            | ApiError::MemberNotFound
            | ApiError::RecordingNotFound
            | ApiError::RecordingNotReady
            | ApiError::RecordingFileMissing => StatusCode::NOT_FOUND,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::MissingParameter(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::Body(_)
            | ApiError::BodyUnreadable
            | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body, under the request's `api_id`.
    pub fn body(&self, api_id: &str) -> serde_json::Value {
        serde_json::json!({ "api_id": api_id, "error": self.to_string() })
    }

    /// The full response, under the request's `api_id`.
    pub fn response(&self, api_id: &str) -> Response {
        if let ApiError::Internal(detail) = self {
            tracing::error!(api_id, detail = %detail, "engine failed a REST request");
        }
        let mut response = (self.status(), Json(self.body(api_id))).into_response();
        match self {
            ApiError::Unauthorized {
                dialect: Dialect::Plivo,
            } => {
                // API.md §3 [DECISION]: challenge Basic on the Plivo prefix.
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"api\""),
                );
            }
            ApiError::MethodNotAllowed { allow } => {
                let allow: Vec<&str> = allow.iter().map(Method::as_str).collect();
                if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
            }
            ApiError::RangeNotSatisfiable { length } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::ConferenceNotFound => ApiError::ConferenceNotFound,
            ControlError::MemberNotFound => ApiError::MemberNotFound,
            ControlError::RecordingNotFound => ApiError::RecordingNotFound,
            ControlError::Invalid(m) => ApiError::Invalid(m),
            ControlError::Unavailable(m) => ApiError::Unavailable(m),
            ControlError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.response(&crate::new_api_id())
    }
}
