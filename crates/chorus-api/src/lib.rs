//! The HTTP control plane of Chorus (axum).
//!
//! [`router`] builds the whole HTTP surface from [`ApiState`]; the binary serves it:
//! - `GET /healthz` (the process answers) and `GET /readyz` (every component — SIP, RTP,
//!   HTTP — is up and the engine is not draining);
//! - `GET /openapi.json`: the OpenAPI 3.0 document of the REST surface (no auth);
//! - `GET /metrics`: Prometheus text (no auth: bind HTTP to a private address);
//! - `POST`/`GET /admin/drain`: start a graceful drain, or see how it goes, with the admin
//!   token as `Authorization: Bearer` (see [`admin`]; absent without a configured token);
//! - the 16 conference routes of API.md §4 under `/api/v1/Account/{auth_id}/` (Vobiz) and
//!   `/v1/Account/{auth_id}/` (Plivo), both taking `X-Auth-ID`/`X-Auth-Token` or HTTP Basic
//!   (see [`auth`]);
//! - under the same prefixes, the Recording API: `GET Recording/` (the account's recordings,
//!   newest first, `limit` 1–20 and `offset`), `GET`/`DELETE Recording/{recording_id}/`, and
//!   the file at `GET`/`HEAD Recording/{recording_id}.mp3` (or `.wav`) with single byte
//!   ranges (206/416). A recording is its owner's only: under another account it is
//!   `recording not found`, exactly as an unknown id. A recording still in progress has no
//!   file yet: its download is 404 `recording not available yet` (404 rather than 409, so a
//!   client polling the URL from the record-start answer sees what a CDN shows before the
//!   upload).
//!
//! The REST routes are not axum routes: one fallback handler matches the raw path against
//! the route table ([`routes::ROUTES`]), so fixed segments match in any case, the trailing
//! slash is optional and the percent-decoded conference name keeps its case (API.md §2,
//! §15.1). Unknown paths get the gateway's plain 404 `{"message":"Not Found"}`; a known path
//! with another method gets 405 with `Allow`; every other error is `{"error","api_id"}`
//! ([`ApiError`]). Bodies are parsed leniently ([`params`]); a request carrying
//! `callback_url` answers at once and its result is delivered through a [`CallbackSink`]
//! (API.md §6).
//!
//! The engine is reached through the [`ConferenceControl`] trait; this crate never touches
//! SIP or RTP itself. Invariant: no request input panics; bad input gets a 4xx.
//!
//! ```
//! use chorus_api::{router, ApiState, Accounts, Readiness, ConferenceControl, ConferenceInfo,
//!     ControlError, BoxFuture, MemberSelector, MemberAction, RecordRequest, RecordingStarted};
//! struct NoRooms;
//! impl ConferenceControl for NoRooms {
//!     fn list(&self, _account: &str) -> Vec<String> { Vec::new() }
//!     fn get(&self, _: &str, _: &str) -> Option<ConferenceInfo> { None }
//!     fn hangup_conference<'a>(&'a self, _: &'a str, _: &'a str)
//!         -> BoxFuture<'a, Result<(), ControlError>> {
//!         Box::pin(async { Err(ControlError::ConferenceNotFound) })
//!     }
//!     fn hangup_all<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn member_action<'a>(&'a self, _: &'a str, _: &'a str, _: MemberSelector, _: MemberAction)
//!         -> BoxFuture<'a, Result<Vec<String>, ControlError>> {
//!         Box::pin(async { Err(ControlError::ConferenceNotFound) })
//!     }
//!     fn record_start<'a>(&'a self, _: &'a str, _: &'a str, _: RecordRequest)
//!         -> BoxFuture<'a, Result<RecordingStarted, ControlError>> {
//!         Box::pin(async { Err(ControlError::ConferenceNotFound) })
//!     }
//!     fn record_stop<'a>(&'a self, _: &'a str, _: &'a str)
//!         -> BoxFuture<'a, Result<(), ControlError>> {
//!         Box::pin(async { Err(ControlError::ConferenceNotFound) })
//!     }
//! }
//! let readiness = Readiness::new(&["sip", "rtp", "http"]);
//! let app: axum::Router = router(ApiState::new(readiness.clone(), Accounts::default(), NoRooms));
//! readiness.set_ready("sip");
//! ```

pub mod admin;
pub mod auth;
pub mod callback;
pub mod control;
mod error;
pub mod openapi;
pub mod params;
mod recording;
mod rest;
pub mod routes;

pub use admin::{AdminControl, DrainStatus};
pub use auth::{Accounts, Credential};
pub use callback::{CallbackMethod, CallbackRequest, CallbackSink, HttpCallbackSink};
pub use control::{
    BoxFuture, ConferenceControl, ConferenceInfo, ControlError, MemberAction, MemberInfo,
    MemberSelector, RecordRequest, RecordingInfo, RecordingStarted, Voice,
};
pub use error::ApiError;
pub use rest::MAX_BODY_BYTES;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// Which components are up. Cheap to clone; every clone sees the same flags.
#[derive(Clone, Debug)]
pub struct Readiness {
    components: Arc<BTreeMap<&'static str, AtomicBool>>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(components: &[&'static str]) -> Self {
        Self {
            components: Arc::new(
                components
                    .iter()
                    .map(|&c| (c, AtomicBool::new(false)))
                    .collect(),
            ),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks a component ready; unknown names are ignored (they cannot make `/readyz` lie).
    pub fn set_ready(&self, component: &str) {
        if let Some(flag) = self.components.get(component) {
            flag.store(true, Ordering::Release);
        }
    }

    /// From now on `/readyz` answers 503: the engine is shutting down or draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
            && self.components.values().all(|f| f.load(Ordering::Acquire))
    }
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    draining: bool,
    components: BTreeMap<&'static str, bool>,
}

/// Everything the router serves from.
#[derive(Clone)]
pub struct ApiState {
    readiness: Readiness,
    accounts: Arc<Accounts>,
    control: Arc<dyn ConferenceControl>,
    callbacks: Arc<dyn CallbackSink>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    admin: Option<admin::Admin>,
}

impl ApiState {
    /// Async-mode results go out over HTTP ([`HttpCallbackSink`]); see
    /// [`ApiState::with_callback_sink`] to replace it.
    pub fn new(readiness: Readiness, accounts: Accounts, control: impl ConferenceControl) -> Self {
        let callbacks: Arc<dyn CallbackSink> = match HttpCallbackSink::new() {
            Ok(sink) => Arc::new(sink),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the callback HTTP client; async-mode results will be dropped");
                Arc::new(callback::DroppingSink)
            }
        };
        Self {
            readiness,
            accounts: Arc::new(accounts),
            control: Arc::new(control),
            callbacks,
            metrics: None,
            admin: None,
        }
    }

    /// Serves `/admin/drain` to holders of `token` (see [`admin`]).
    pub fn with_admin(mut self, token: String, control: impl AdminControl) -> Self {
        self.admin = Some(admin::Admin::new(token, control));
        self
    }

    /// Serves `registry` at `GET /metrics` in the Prometheus text format.
    pub fn with_metrics(mut self, registry: prometheus_client::registry::Registry) -> Self {
        self.metrics = Some(Arc::new(registry));
        self
    }

    /// Sends async-mode results (API.md §6) to `sink` instead.
    pub fn with_callback_sink(mut self, sink: impl CallbackSink) -> Self {
        self.callbacks = Arc::new(sink);
        self
    }
}

/// Which REST dialect a request came in on; decides dialect-specific details such as the
/// `WWW-Authenticate` challenge (API.md §3) and the record-start answer (§15.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Vobiz,
    Plivo,
}

/// The HTTP router over the given state.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .route(
            "/admin/drain",
            axum::routing::post(admin::start_drain).get(admin::drain_status),
        )
        .fallback(rest::dispatch)
        .with_state(state)
}

fn new_api_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

static OPENAPI: LazyLock<String> = LazyLock::new(|| openapi::document().to_string());

async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.as_str(),
    )
        .into_response()
}

/// Prometheus scrape (no auth, like every exporter: bind HTTP to a private address).
async fn metrics(State(state): State<ApiState>) -> Response {
    let Some(registry) = state.metrics.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "message": "Not Found" })),
        )
            .into_response();
    };
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let readiness = state.readiness;
    let body = ReadyBody {
        ready: readiness.is_ready(),
        draining: readiness.draining.load(Ordering::Acquire),
        components: readiness
            .components
            .iter()
            .map(|(&k, v)| (k, v.load(Ordering::Acquire)))
            .collect(),
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    pub(crate) struct NoRooms;
    impl ConferenceControl for NoRooms {
        fn list(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
        fn get(&self, _: &str, _: &str) -> Option<ConferenceInfo> {
            None
        }
        fn hangup_conference<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), ControlError>> {
            Box::pin(async { Err(ControlError::ConferenceNotFound) })
        }
        fn hangup_all<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
            Box::pin(async { Ok(()) })
        }
        fn member_action<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: MemberSelector,
            _: MemberAction,
        ) -> BoxFuture<'a, Result<Vec<String>, ControlError>> {
            Box::pin(async { Err(ControlError::ConferenceNotFound) })
        }
        fn record_start<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: RecordRequest,
        ) -> BoxFuture<'a, Result<RecordingStarted, ControlError>> {
            Box::pin(async { Err(ControlError::ConferenceNotFound) })
        }
        fn record_stop<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), ControlError>> {
            Box::pin(async { Err(ControlError::ConferenceNotFound) })
        }
    }

    fn app(readiness: Readiness) -> Router {
        router(ApiState::new(readiness, Accounts::default(), NoRooms))
    }

    async fn get_status(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn healthz_answers_while_components_start() {
        let readiness = Readiness::new(&["sip", "rtp", "http"]);
        let (status, _) = get_status(app(readiness), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_503_until_every_component_is_ready() {
        let readiness = Readiness::new(&["sip", "rtp", "http"]);
        readiness.set_ready("sip");
        readiness.set_ready("http");
        let (status, body) = get_status(app(readiness.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["components"]["rtp"], false);
        readiness.set_ready("rtp");
        let (status, body) = get_status(app(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ready"], true);
    }

    #[tokio::test]
    async fn readyz_is_503_while_draining() {
        let readiness = Readiness::new(&["sip"]);
        readiness.set_ready("sip");
        readiness.set_draining();
        let (status, body) = get_status(app(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["draining"], true);
    }

    #[tokio::test]
    async fn openapi_document_is_served_without_auth() {
        let (status, body) = get_status(app(Readiness::new(&[])), "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["openapi"], "3.0.3");
        assert_eq!(body["paths"].as_object().unwrap().len(), 26);
    }
}
