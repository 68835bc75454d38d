//! The HTTP control plane of Chorus (axum).
//!
//! [`router`] builds the whole HTTP surface from shared state; the binary serves it. So far it
//! holds the operational routes: `GET /healthz` (the process answers) and `GET /readyz` (every
//! component — SIP, RTP, HTTP — is up and the engine is not draining). The REST dialects of
//! API.md §4 are added here as routes over the same state; this crate never touches SIP or
//! RTP itself.
//!
//! ```
//! use chorus_api::{router, Readiness};
//! let readiness = Readiness::new(&["sip", "rtp", "http"]);
//! let app: axum::Router = router(readiness.clone());
//! readiness.set_ready("sip");
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
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
            && self
                .components
                .values()
                .all(|f| f.load(Ordering::Acquire))
    }
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    draining: bool,
    components: BTreeMap<&'static str, bool>,
}

/// The HTTP router over the given state.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
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

    async fn get_status(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn healthz_answers_while_components_start() {
        let readiness = Readiness::new(&["sip", "rtp", "http"]);
        let (status, _) = get_status(router(readiness), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_503_until_every_component_is_ready() {
        let readiness = Readiness::new(&["sip", "rtp", "http"]);
        readiness.set_ready("sip");
        readiness.set_ready("http");
        let (status, body) = get_status(router(readiness.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["components"]["rtp"], false);
        readiness.set_ready("rtp");
        let (status, body) = get_status(router(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ready"], true);
    }

    #[tokio::test]
    async fn readyz_is_503_while_draining() {
        let readiness = Readiness::new(&["sip"]);
        readiness.set_ready("sip");
        readiness.set_draining();
        let (status, body) = get_status(router(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["draining"], true);
    }
}
