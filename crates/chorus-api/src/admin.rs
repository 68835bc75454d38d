//! The operator's API, outside the account prefixes: `POST /admin/drain` starts a graceful
//! drain (as SIGTERM does) and `GET /admin/drain` tells how it is going. Both need the admin
//! token of the configuration as `Authorization: Bearer <token>`; a missing or wrong token is
//! 401 with a `WWW-Authenticate: Bearer` challenge, compared in constant time. Without an
//! admin token configured the routes do not exist (404, as any unknown path).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::ApiState;

/// Where the engine's drain is, as `/admin/drain` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DrainStatus {
    pub draining: bool,
    pub active_calls: usize,
}

/// What the admin routes drive.
pub trait AdminControl: Send + Sync + 'static {
    /// Starts draining (idempotent) and returns the state after it.
    fn drain(&self) -> DrainStatus;
    fn status(&self) -> DrainStatus;
}

/// The admin token and what it controls.
#[derive(Clone)]
pub(crate) struct Admin {
    token: String,
    control: Arc<dyn AdminControl>,
}

impl Admin {
    pub fn new(token: String, control: impl AdminControl) -> Self {
        Self {
            token,
            control: Arc::new(control),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) => bool::from(self.token.as_bytes().ct_eq(token.as_bytes())),
            None => false,
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "message": "Not Found" })),
    )
        .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"chorus-admin\"")],
        Json(serde_json::json!({ "error": "authentication failed" })),
    )
        .into_response()
}

/// `POST /admin/drain`: 202 with the drain status; `/readyz` turns 503 at once.
pub(crate) async fn start_drain(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let Some(admin) = state.admin.as_ref() else {
        return not_found();
    };
    if !admin.authorized(&headers) {
        tracing::warn!("admin drain request refused: bad or missing token");
        return unauthorized();
    }
    state.readiness.set_draining();
    let status = admin.control.drain();
    tracing::info!(
        active_calls = status.active_calls,
        "drain requested over HTTP"
    );
    (StatusCode::ACCEPTED, Json(status)).into_response()
}

/// `GET /admin/drain`: 200 with the drain status.
pub(crate) async fn drain_status(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let Some(admin) = state.admin.as_ref() else {
        return not_found();
    };
    if !admin.authorized(&headers) {
        return unauthorized();
    }
    (StatusCode::OK, Json(admin.control.status())).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{router, Accounts, ApiState, Readiness};

    #[derive(Default)]
    struct FakeEngine(AtomicBool);

    impl AdminControl for Arc<FakeEngine> {
        fn drain(&self) -> DrainStatus {
            self.0.store(true, Ordering::SeqCst);
            self.status()
        }
        fn status(&self) -> DrainStatus {
            DrainStatus {
                draining: self.0.load(Ordering::SeqCst),
                active_calls: 2,
            }
        }
    }

    fn app(admin: Option<(&str, Arc<FakeEngine>)>, readiness: Readiness) -> axum::Router {
        let mut state = ApiState::new(readiness, Accounts::default(), crate::tests::NoRooms);
        if let Some((token, engine)) = admin {
            state = state.with_admin(token.to_owned(), engine);
        }
        router(state)
    }

    async fn send(
        app: axum::Router,
        method: &str,
        path: &str,
        auth: Option<&str>,
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn drain_with_the_admin_token_starts_draining_and_fails_readiness() {
        let engine = Arc::new(FakeEngine::default());
        let readiness = Readiness::new(&[]);
        let app = app(Some(("s3cret", engine.clone())), readiness.clone());
        assert!(readiness.is_ready());
        let (status, _, body) =
            send(app.clone(), "POST", "/admin/drain", Some("Bearer s3cret")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["draining"], true);
        assert_eq!(body["active_calls"], 2);
        assert!(engine.0.load(Ordering::SeqCst));
        assert!(!readiness.is_ready());
        let (status, _, body) = send(app, "GET", "/admin/drain", Some("bearer s3cret")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["draining"], true);
    }

    #[tokio::test]
    async fn drain_without_or_with_a_wrong_token_is_401_and_changes_nothing() {
        let engine = Arc::new(FakeEngine::default());
        let readiness = Readiness::new(&[]);
        let app = app(Some(("s3cret", engine.clone())), readiness.clone());
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cre"),
            Some("Basic czNjcmV0"),
            Some("s3cret"),
        ] {
            let (status, headers, _) = send(app.clone(), "POST", "/admin/drain", auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert!(headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")));
        }
        assert!(!engine.0.load(Ordering::SeqCst));
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn admin_routes_do_not_exist_without_a_configured_token() {
        let readiness = Readiness::new(&[]);
        let (status, _, _) = send(
            app(None, readiness.clone()),
            "POST",
            "/admin/drain",
            Some("Bearer anything"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(readiness.is_ready());
    }
}
