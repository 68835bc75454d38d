//! The HTTP control plane of Chorus (axum).
//!
//! [`router`] builds the whole HTTP surface from [`ApiState`]; the binary serves it:
//! - `GET /healthz` (the process answers) and `GET /readyz` (every component — SIP, RTP,
//!   HTTP — is up and the engine is not draining);
//! - the REST dialects of API.md §4 under `/api/v1/Account/{auth_id}/` (Vobiz) and
//!   `/v1/Account/{auth_id}/` (Plivo), both taking `X-Auth-ID`/`X-Auth-Token` or HTTP Basic
//!   (see [`auth`]). So far: the conference list (§5.1).
//!
//! The engine is reached through the [`ConferenceDirectory`] trait; this crate never touches
//! SIP or RTP itself.
//!
//! ```
//! use chorus_api::{router, ApiState, Accounts, Readiness, ConferenceDirectory};
//! struct NoRooms;
//! impl ConferenceDirectory for NoRooms {
//!     fn list(&self, _account: &str) -> Vec<String> { Vec::new() }
//! }
//! let readiness = Readiness::new(&["sip", "rtp", "http"]);
//! let app: axum::Router = router(ApiState::new(readiness.clone(), Accounts::default(), NoRooms));
//! readiness.set_ready("sip");
//! ```

pub mod auth;
mod error;

pub use auth::{Accounts, Credential};
pub use error::ApiError;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
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
            && self.components.values().all(|f| f.load(Ordering::Acquire))
    }
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    draining: bool,
    components: BTreeMap<&'static str, bool>,
}

/// What the REST routes need to know about live conferences.
pub trait ConferenceDirectory: Send + Sync + 'static {
    /// Names of the account's running rooms.
    fn list(&self, account: &str) -> Vec<String>;
}

/// Everything the router serves from.
#[derive(Clone)]
pub struct ApiState {
    readiness: Readiness,
    accounts: Arc<Accounts>,
    conferences: Arc<dyn ConferenceDirectory>,
}

impl ApiState {
    pub fn new(
        readiness: Readiness,
        accounts: Accounts,
        conferences: impl ConferenceDirectory,
    ) -> Self {
        Self {
            readiness,
            accounts: Arc::new(accounts),
            conferences: Arc::new(conferences),
        }
    }
}

/// Which REST dialect a request came in on; decides dialect-specific details such as the
/// `WWW-Authenticate` challenge (API.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Vobiz,
    Plivo,
}

/// The HTTP router over the given state.
pub fn router(state: ApiState) -> Router {
    let rest = |dialect: Dialect| {
        Router::new()
            .route(
                "/Conference/",
                get(move |s, p, h| list_conferences(s, p, h, dialect)),
            )
            .route(
                "/Conference",
                get(move |s, p, h| list_conferences(s, p, h, dialect)),
            )
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/api/v1/Account/{auth_id}", rest(Dialect::Vobiz))
        .nest("/v1/Account/{auth_id}", rest(Dialect::Plivo))
        .fallback(not_found)
        .with_state(state)
}

fn new_api_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// API.md §4: an unknown route gets the gateway's plain 404, unlike an unknown room.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "message": "Not Found" })),
    )
        .into_response()
}

async fn list_conferences(
    State(state): State<ApiState>,
    Path(auth_id): Path<String>,
    headers: axum::http::HeaderMap,
    dialect: Dialect,
) -> Result<Response, ApiError> {
    let account = state
        .accounts
        .authenticate(&headers, &auth_id)
        .ok_or(ApiError::Unauthorized { dialect })?;
    let mut conferences = state.conferences.list(&account.auth_id);
    conferences.sort();
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "api_id": new_api_id(), "conferences": conferences })),
    )
        .into_response())
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

    struct Fixed(Vec<(&'static str, &'static str)>);
    impl ConferenceDirectory for Fixed {
        fn list(&self, account: &str) -> Vec<String> {
            self.0
                .iter()
                .filter(|(a, _)| *a == account)
                .map(|(_, n)| n.to_string())
                .collect()
        }
    }

    fn app(readiness: Readiness) -> Router {
        let accounts = Accounts::new(vec![
            Credential {
                auth_id: "MA_ONE".into(),
                auth_token: "one".into(),
            },
            Credential {
                auth_id: "MA_TWO".into(),
                auth_token: "two".into(),
            },
        ]);
        router(ApiState::new(
            readiness,
            accounts,
            Fixed(vec![
                ("MA_ONE", "sales"),
                ("MA_ONE", "My Room"),
                ("MA_TWO", "other"),
            ]),
        ))
    }

    async fn get_status(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        get_with(app, Request::get(path).body(Body::empty()).unwrap()).await
    }

    async fn get_with(app: Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
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
    async fn conference_list_shows_only_the_accounts_rooms_in_both_dialects() {
        let request = Request::get("/api/v1/Account/MA_ONE/Conference/")
            .header("X-Auth-ID", "MA_ONE")
            .header("X-Auth-Token", "one")
            .body(Body::empty())
            .unwrap();
        let (status, body) = get_with(app(Readiness::new(&[])), request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["conferences"], serde_json::json!(["My Room", "sales"]));
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "exactly api_id and conferences"
        );
        assert!(body["api_id"].is_string());

        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("MA_TWO:two");
        let request = Request::get("/v1/Account/MA_TWO/Conference")
            .header("Authorization", format!("Basic {basic}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = get_with(app(Readiness::new(&[])), request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["conferences"], serde_json::json!(["other"]));
    }

    #[tokio::test]
    async fn cross_account_or_bad_credentials_get_the_same_401() {
        use base64::Engine as _;
        for (creds, path) in [
            ("MA_TWO:two", "/v1/Account/MA_ONE/Conference/"),
            ("MA_ONE:wrong", "/v1/Account/MA_ONE/Conference/"),
            ("MA_NOBODY:one", "/v1/Account/MA_NOBODY/Conference/"),
        ] {
            let basic = base64::engine::general_purpose::STANDARD.encode(creds);
            let request = Request::get(path)
                .header("Authorization", format!("Basic {basic}"))
                .body(Body::empty())
                .unwrap();
            let (status, body) = get_with(app(Readiness::new(&[])), request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{creds} {path}");
            assert_eq!(body["error"], "authentication failed");
        }
        let (status, body) = get_status(
            app(Readiness::new(&[])),
            "/api/v1/Account/MA_ONE/Conference/",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["api_id"].is_string());
    }

    #[tokio::test]
    async fn unknown_route_is_the_plain_404() {
        let (status, body) = get_status(app(Readiness::new(&[])), "/v1/Account/MA_ONE/Nope/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, serde_json::json!({ "message": "Not Found" }));
    }
}
