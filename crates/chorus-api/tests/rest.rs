//! The REST surface of API.md §4–§6 through the router, with no server (oneshot), against a
//! fake engine that records the calls it gets.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;

use chorus_api::{
    router, Accounts, ApiState, BoxFuture, CallbackMethod, CallbackRequest, CallbackSink,
    ConferenceControl, ConferenceInfo, ControlError, Credential, MemberAction, MemberInfo,
    MemberSelector, Readiness, RecordRequest, RecordingInfo, RecordingStarted, Voice,
};

// ---------------------------------------------------------------- fake engine

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Hangup(String),
    HangupAll,
    Member(String, MemberSelector, MemberAction),
    RecordStart(String, RecordRequest),
    RecordStop(String),
    DeleteRecording(String),
}

/// Account MA_ONE has `room` (members 10, 11, 12), `My Conf Room` (20), `a+b` (30) and
/// `Sales` (40); MA_TWO has `other` (50). Recordings: see [`Fake::new`].
struct Fake {
    calls: Mutex<Vec<(String, Call)>>,
    /// When set, every acting method fails with it.
    failure: Mutex<Option<ControlError>>,
    /// (owning account, recording); the fake answers each account with its own only.
    recordings: Mutex<Vec<(String, RecordingInfo)>>,
    _files: Files,
}

/// The recordings' files, in a directory removed with the fake.
struct Files(PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 1000 bytes, each its index mod 251, so any slice is recognisable.
fn audio_bytes() -> Vec<u8> {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

fn recording_info(id: &str, format: &str, start_ms: u64, path: Option<PathBuf>) -> RecordingInfo {
    RecordingInfo {
        recording_id: id.to_owned(),
        conference_name: Some("room".to_owned()),
        call_uuid: Some(format!("call-{id}")),
        format: format.to_owned(),
        duration_ms: 345_100,
        start_ms,
        end_ms: start_ms + 345_100,
        url: format!("http://chorus/v1/Account/MA/Recording/{id}.{format}"),
        status: "completed".to_owned(),
        recovered: false,
        path,
    }
}

impl Fake {
    /// MA_ONE, newest first: `rec-live` (mp3, in progress, no file), `rec-failed` (mp3,
    /// failed, no file), `rec-a` (mp3, room, 1000 bytes), `rec-gone` (mp3, its file missing),
    /// `rec-b` (wav, a call recording, 1000 bytes). MA_TWO: `rec-two` (mp3, 1000 bytes).
    fn new() -> Arc<Self> {
        let dir = std::env::temp_dir().join(format!("chorus-api-rest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, audio_bytes()).unwrap();
            path
        };
        let mut live = recording_info("rec-live", "mp3", 1_700_000_004_000, None);
        live.status = "in-progress".to_owned();
        live.end_ms = 0;
        let mut failed = recording_info("rec-failed", "mp3", 1_700_000_003_000, None);
        failed.status = "failed".to_owned();
        let a = recording_info(
            "rec-a",
            "mp3",
            1_407_235_163_907,
            Some(file("stored-a.mp3")),
        );
        let mut gone = recording_info(
            "rec-gone",
            "mp3",
            1_400_000_000_000,
            Some(dir.join("never-written.mp3")),
        );
        gone.recovered = true;
        let mut b = recording_info("rec-b", "wav", 1_300_000_000_000, Some(file("stored-b")));
        b.conference_name = None;
        let two = recording_info(
            "rec-two",
            "mp3",
            1_700_000_000_000,
            Some(file("stored-two.mp3")),
        );
        let one = |r: RecordingInfo| ("MA_ONE".to_owned(), r);
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            recordings: Mutex::new(vec![
                one(b),
                one(a),
                one(live),
                one(gone),
                one(failed),
                ("MA_TWO".to_owned(), two),
            ]),
            _files: Files(dir),
        })
    }

    fn add_recording(&self, account: &str, info: RecordingInfo) {
        self.recordings
            .lock()
            .unwrap()
            .push((account.to_owned(), info));
    }

    fn rooms(account: &str) -> Vec<(&'static str, Vec<&'static str>)> {
        match account {
            "MA_ONE" => vec![
                ("room", vec!["10", "11", "12"]),
                ("My Conf Room", vec!["20"]),
                ("a+b", vec!["30"]),
                ("Sales", vec!["40"]),
            ],
            "MA_TWO" => vec![("other", vec!["50"])],
            _ => vec![],
        }
    }

    fn room(account: &str, name: &str) -> Option<Vec<&'static str>> {
        Self::rooms(account)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m)
    }

    fn calls(&self) -> Vec<(String, Call)> {
        self.calls.lock().unwrap().clone()
    }

    fn last(&self) -> Call {
        self.calls.lock().unwrap().last().unwrap().1.clone()
    }

    fn fail_with(&self, e: ControlError) {
        *self.failure.lock().unwrap() = Some(e);
    }

    fn act<T: Send + 'static>(
        &self,
        account: &str,
        call: Call,
        result: impl FnOnce() -> Result<T, ControlError>,
    ) -> BoxFuture<'static, Result<T, ControlError>> {
        self.calls.lock().unwrap().push((account.to_owned(), call));
        let outcome = match self.failure.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => result(),
        };
        Box::pin(async move { outcome })
    }
}

impl ConferenceControl for Fake {
    fn list(&self, account: &str) -> Vec<String> {
        Self::rooms(account)
            .into_iter()
            .map(|(n, _)| n.to_owned())
            .collect()
    }

    fn get(&self, account: &str, name: &str) -> Option<ConferenceInfo> {
        let members = Self::room(account, name)?;
        Some(ConferenceInfo {
            name: name.to_owned(),
            run_time: 590,
            members: members
                .into_iter()
                .map(|id| MemberInfo {
                    member_id: id.to_owned(),
                    muted: id == "11",
                    deaf: id == "12",
                    from: "+1456789903".to_owned(),
                    to: "1677889900".to_owned(),
                    caller_name: "John".to_owned(),
                    direction: "inbound".to_owned(),
                    call_uuid: format!("uuid-{id}"),
                    join_time: 42,
                })
                .collect(),
        })
    }

    fn hangup_conference<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        let exists = Self::room(account, name).is_some();
        self.act(account, Call::Hangup(name.to_owned()), move || {
            exists.then_some(()).ok_or(ControlError::ConferenceNotFound)
        })
    }

    fn hangup_all<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        self.act(account, Call::HangupAll, || Ok(()))
    }

    fn member_action<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        members: MemberSelector,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<Vec<String>, ControlError>> {
        let room = Self::room(account, name);
        let call = Call::Member(name.to_owned(), members.clone(), action);
        self.act(account, call, move || {
            let present = room.ok_or(ControlError::ConferenceNotFound)?;
            let applied: Vec<String> = match members {
                MemberSelector::All => present.iter().map(|s| s.to_string()).collect(),
                MemberSelector::Ids(ids) => ids
                    .into_iter()
                    .filter(|id| present.contains(&id.as_str()))
                    .collect(),
            };
            if applied.is_empty() {
                Err(ControlError::MemberNotFound)
            } else {
                Ok(applied)
            }
        })
    }

    fn record_start<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        request: RecordRequest,
    ) -> BoxFuture<'a, Result<RecordingStarted, ControlError>> {
        let exists = Self::room(account, name).is_some();
        self.act(
            account,
            Call::RecordStart(name.to_owned(), request),
            move || {
                exists
                    .then(|| RecordingStarted {
                        recording_id: "rec-1".to_owned(),
                        url: "http://media/rec-1.mp3".to_owned(),
                    })
                    .ok_or(ControlError::ConferenceNotFound)
            },
        )
    }

    fn record_stop<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        let exists = Self::room(account, name).is_some();
        self.act(account, Call::RecordStop(name.to_owned()), move || {
            exists.then_some(()).ok_or(ControlError::ConferenceNotFound)
        })
    }

    fn recordings(&self, account: &str) -> Vec<RecordingInfo> {
        self.recordings
            .lock()
            .unwrap()
            .iter()
            .filter(|(owner, _)| owner == account)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn recording(&self, account: &str, id: &str) -> Option<RecordingInfo> {
        self.recordings(account)
            .into_iter()
            .find(|r| r.recording_id == id)
    }

    fn delete_recording<'a>(
        &'a self,
        account: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        let mut recordings = self.recordings.lock().unwrap();
        let position = recordings
            .iter()
            .position(|(owner, r)| owner == account && r.recording_id == id);
        if let Some(i) = position {
            recordings.remove(i);
        }
        drop(recordings);
        self.act(account, Call::DeleteRecording(id.to_owned()), move || {
            position.map(drop).ok_or(ControlError::RecordingNotFound)
        })
    }
}

/// Records every callback instead of sending it.
struct RecordingSink(mpsc::UnboundedSender<CallbackRequest>);

impl CallbackSink for RecordingSink {
    fn deliver(&self, request: CallbackRequest) -> BoxFuture<'static, ()> {
        let _ = self.0.send(request);
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------- harness

fn accounts() -> Accounts {
    Accounts::new(vec![
        Credential {
            auth_id: "MA_ONE".into(),
            auth_token: "one".into(),
        },
        Credential {
            auth_id: "MA_TWO".into(),
            auth_token: "two".into(),
        },
    ])
}

fn app(fake: &Arc<Fake>) -> Router {
    router(ApiState::new(Readiness::new(&[]), accounts(), fake.clone()))
}

fn app_with_sink(fake: &Arc<Fake>) -> (Router, mpsc::UnboundedReceiver<CallbackRequest>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = ApiState::new(Readiness::new(&[]), accounts(), fake.clone())
        .with_callback_sink(RecordingSink(tx));
    (router(state), rx)
}

#[derive(Clone, Copy, Debug)]
enum Auth {
    Headers,
    Basic,
    None,
    Creds(&'static str, &'static str),
}

const PREFIXES: [&str; 2] = ["/api/v1/Account/MA_ONE", "/v1/Account/MA_ONE"];
const AUTHS: [Auth; 2] = [Auth::Headers, Auth::Basic];

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.bytes)))
    }

    fn is_plain_404(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
            && serde_json::from_slice::<Value>(&self.bytes).ok()
                == Some(json!({"message": "Not Found"}))
    }

    /// Asserts the `{"error", "api_id"}` shape and returns the error text.
    fn error(&self) -> String {
        let body = self.json();
        let object = body.as_object().unwrap();
        assert_eq!(object.len(), 2, "{body}");
        assert!(body["api_id"].as_str().unwrap().len() >= 32);
        body["error"].as_str().unwrap().to_owned()
    }
}

fn request(
    method: Method,
    path: &str,
    auth: Auth,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    let basic = |id: &str, token: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{token}"))
        )
    };
    builder = match auth {
        Auth::Headers => builder
            .header("X-Auth-ID", "MA_ONE")
            .header("X-Auth-Token", "one"),
        Auth::Basic => builder.header(header::AUTHORIZATION, basic("MA_ONE", "one")),
        Auth::Creds(id, token) => builder.header(header::AUTHORIZATION, basic(id, token)),
        Auth::None => builder,
    };
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    builder.body(body.into()).unwrap()
}

async fn send_request(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        bytes,
    }
}

async fn send(app: &Router, method: Method, path: &str) -> Reply {
    send_request(
        app,
        request(method, path, Auth::Headers, None, Body::empty()),
    )
    .await
}

async fn send_json(app: &Router, method: Method, path: &str, body: Value) -> Reply {
    send_request(
        app,
        request(
            method,
            path,
            Auth::Basic,
            Some("application/json"),
            body.to_string(),
        ),
    )
    .await
}

// ---------------------------------------------------------------- every route

#[tokio::test]
async fn every_route_answers_on_both_prefixes_with_both_auth_schemes() {
    let cases: [(Method, &str, StatusCode, Option<&str>); 16] = [
        (Method::GET, "/Conference/", StatusCode::OK, None),
        (Method::GET, "/Conference/room/", StatusCode::OK, None),
        (
            Method::DELETE,
            "/Conference/room/",
            StatusCode::NO_CONTENT,
            None,
        ),
        (Method::DELETE, "/Conference/", StatusCode::NO_CONTENT, None),
        (
            Method::DELETE,
            "/Conference/room/Member/10/",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/Conference/room/Member/10/Kick/",
            StatusCode::ACCEPTED,
            Some("kicked"),
        ),
        (
            Method::POST,
            "/Conference/room/Member/10/Mute/",
            StatusCode::ACCEPTED,
            Some("muted"),
        ),
        (
            Method::DELETE,
            "/Conference/room/Member/10/Mute/",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/Conference/room/Member/10/Deaf/",
            StatusCode::ACCEPTED,
            Some("deaf"),
        ),
        (
            Method::DELETE,
            "/Conference/room/Member/10/Deaf/",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/Conference/room/Member/10/Play/?url=http://x/a.mp3",
            StatusCode::ACCEPTED,
            Some("play queued into conference"),
        ),
        (
            Method::DELETE,
            "/Conference/room/Member/10/Play/",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/Conference/room/Member/10/Speak/?text=hi",
            StatusCode::ACCEPTED,
            Some("speak queued into conference"),
        ),
        (
            Method::DELETE,
            "/Conference/room/Member/10/Speak/",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/Conference/room/Record/",
            StatusCode::OK,
            None,
        ),
        (
            Method::DELETE,
            "/Conference/room/Record/",
            StatusCode::NO_CONTENT,
            None,
        ),
    ];
    let fake = Fake::new();
    let app = app(&fake);
    for prefix in PREFIXES {
        for auth in AUTHS {
            for (method, path, status, message) in &cases {
                let uri = format!("{prefix}{path}");
                let reply = send_request(
                    &app,
                    request(method.clone(), &uri, auth, None, Body::empty()),
                )
                .await;
                let mut status = *status;
                if prefix.starts_with("/v1") && *method == Method::POST && path.ends_with("Record/")
                {
                    status = StatusCode::ACCEPTED;
                }
                assert_eq!(reply.status, status, "{method} {uri} {auth:?}");
                if status == StatusCode::NO_CONTENT {
                    assert!(reply.bytes.is_empty(), "{method} {uri}: 204 has no body");
                } else {
                    assert_eq!(
                        reply.headers[header::CONTENT_TYPE],
                        "application/json",
                        "{method} {uri}"
                    );
                    assert!(reply.json()["api_id"].is_string(), "{method} {uri}");
                }
                if let Some(message) = message {
                    let body = reply.json();
                    assert_eq!(body["message"], *message);
                    assert_eq!(body["member_id"], json!(["10"]));
                    assert_eq!(body.as_object().unwrap().len(), 3);
                }
            }
        }
    }
    // Every acting route reached the engine, on the account of the path.
    let calls = fake.calls();
    assert_eq!(calls.len(), 4 * 14);
    assert!(calls.iter().all(|(account, _)| account == "MA_ONE"));
}

#[tokio::test]
async fn member_actions_reach_the_engine_as_the_matching_action() {
    let fake = Fake::new();
    let app = app(&fake);
    let p = "/v1/Account/MA_ONE/Conference/room/Member/11";
    for (method, suffix, action) in [
        (Method::DELETE, "/", MemberAction::Hangup),
        (Method::POST, "/Kick/", MemberAction::Kick),
        (Method::POST, "/Mute/", MemberAction::Mute),
        (Method::DELETE, "/Mute/", MemberAction::Unmute),
        (Method::POST, "/Deaf/", MemberAction::Deaf),
        (Method::DELETE, "/Deaf/", MemberAction::Undeaf),
        (Method::DELETE, "/Play/", MemberAction::StopPlay),
        (Method::DELETE, "/Speak/", MemberAction::StopSpeak),
    ] {
        let reply = send(&app, method.clone(), &format!("{p}{suffix}")).await;
        assert!(reply.status.is_success(), "{method} {suffix}");
        assert_eq!(
            fake.last(),
            Call::Member(
                "room".into(),
                MemberSelector::Ids(vec!["11".into()]),
                action
            )
        );
    }
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn missing_wrong_unknown_or_foreign_credentials_get_the_same_401() {
    let fake = Fake::new();
    let app = app(&fake);
    for prefix in ["/api/v1/Account/MA_ONE", "/v1/Account/MA_ONE"] {
        for auth in [
            Auth::None,
            Auth::Creds("MA_ONE", "wrong"),
            Auth::Creds("MA_NOBODY", "one"),
            Auth::Creds("MA_TWO", "two"),
        ] {
            let uri = format!("{prefix}/Conference/room/Member/10/Kick/");
            let reply =
                send_request(&app, request(Method::POST, &uri, auth, None, Body::empty())).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
            assert_eq!(reply.error(), "authentication failed");
            assert_eq!(
                reply.headers.contains_key(header::WWW_AUTHENTICATE),
                prefix.starts_with("/v1"),
                "Basic challenge on the Plivo prefix only"
            );
        }
    }
    assert!(fake.calls().is_empty(), "nothing reached the engine");
}

#[tokio::test]
async fn a_bearer_header_beside_valid_x_auth_headers_is_ignored() {
    let fake = Fake::new();
    let app = app(&fake);
    let req = Request::get("/api/v1/Account/MA_ONE/Conference/")
        .header("X-Auth-ID", "MA_ONE")
        .header("X-Auth-Token", "one")
        .header(header::AUTHORIZATION, "Bearer fern-token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send_request(&app, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn each_account_sees_only_its_rooms() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send_request(
        &app,
        request(
            Method::GET,
            "/v1/Account/MA_TWO/Conference/",
            Auth::Creds("MA_TWO", "two"),
            None,
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(reply.json()["conferences"], json!(["other"]));
    let reply = send(&app, Method::GET, "/v1/Account/MA_ONE/Conference/other/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "conference not found");
}

// ---------------------------------------------------------------- paths

#[tokio::test]
async fn fixed_segments_match_in_any_case_but_names_keep_theirs() {
    let fake = Fake::new();
    let app = app(&fake);
    for path in [
        "/API/V1/ACCOUNT/MA_ONE/CONFERENCE/Sales/MEMBER/40/MUTE/",
        "/api/v1/account/MA_ONE/conference/Sales/member/40/mute",
        "/V1/aCCOUNT/MA_ONE/cOnFeReNcE/Sales/Member/40/Mute/",
    ] {
        let reply = send(&app, Method::POST, path).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{path}");
    }
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/sales/Member/40/Mute/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "conference not found");
}

#[tokio::test]
async fn trailing_slash_is_optional_on_every_route() {
    let fake = Fake::new();
    let app = app(&fake);
    for (method, path) in [
        (Method::GET, "/Conference"),
        (Method::GET, "/Conference/room"),
        (Method::DELETE, "/Conference/room/Member/10"),
        (Method::POST, "/Conference/room/Member/10/Kick"),
        (Method::POST, "/Conference/room/Record"),
    ] {
        for prefix in PREFIXES {
            let with = send(&app, method.clone(), &format!("{prefix}{path}/")).await;
            let without = send(&app, method.clone(), &format!("{prefix}{path}")).await;
            assert!(with.status.is_success(), "{method} {prefix}{path}/");
            assert_eq!(with.status, without.status, "{method} {prefix}{path}");
        }
    }
}

#[tokio::test]
async fn percent_encoded_names_are_decoded_and_plus_stays_plus() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send(
        &app,
        Method::GET,
        "/v1/Account/MA_ONE/Conference/My%20Conf%20Room/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["conference_name"], "My Conf Room");

    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/a+b/Member/30/Kick/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(
        fake.last(),
        Call::Member(
            "a+b".into(),
            MemberSelector::Ids(vec!["30".into()]),
            MemberAction::Kick
        )
    );
    let reply = send(&app, Method::DELETE, "/v1/Account/MA_ONE/Conference/a%2Bb/").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(fake.last(), Call::Hangup("a+b".into()));
}

#[tokio::test]
async fn a_name_that_is_not_utf8_is_conference_not_found() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send(&app, Method::GET, "/v1/Account/MA_ONE/Conference/%FF%FE/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "conference not found");
}

#[tokio::test]
async fn unknown_routes_get_the_plain_404_and_unknown_rooms_the_error_404() {
    let fake = Fake::new();
    let app = app(&fake);
    for path in [
        "/api/v1/Account/MA_ONE/Conference/room/Play/",
        "/api/v1/Account/MA_ONE/Conference/room/Speak/",
        "/v1/Account/MA_ONE/Conference/room/Member/",
        "/v1/Account/MA_ONE/Nope/",
        "/v2/Account/MA_ONE/Conference/",
        "/",
        "/api/v1/Account/MA_ONE/Conference//",
    ] {
        let reply = send(&app, Method::POST, path).await;
        assert!(reply.is_plain_404(), "{path}");
    }
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/nope/Member/10/Play/?url=http://a/b",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "conference not found");
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/99/Mute/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "member not found");
    let reply = send(&app, Method::DELETE, "/v1/Account/MA_ONE/Conference/nope/").await;
    assert_eq!(reply.error(), "conference not found");
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let fake = Fake::new();
    let app = app(&fake);
    for (method, path, allow) in [
        (Method::GET, "/Conference/room/Member/10/Kick/", "POST"),
        (
            Method::PUT,
            "/Conference/room/Member/10/Mute/",
            "POST, DELETE",
        ),
        (Method::POST, "/Conference/", "GET, DELETE"),
        (Method::PATCH, "/Conference/room", "GET, DELETE"),
        (Method::GET, "/Conference/room/Record", "POST, DELETE"),
    ] {
        for prefix in PREFIXES {
            let reply = send(&app, method.clone(), &format!("{prefix}{path}")).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(reply.headers[header::ALLOW], allow);
            assert_eq!(reply.error(), "method not allowed");
        }
    }
    assert!(fake.calls().is_empty());
}

// ---------------------------------------------------------------- member ids

#[tokio::test]
async fn member_id_forms_are_echoed_as_requested() {
    let fake = Fake::new();
    let app = app(&fake);
    let p = "/api/v1/Account/MA_ONE/Conference/room/Member";
    for (mid, echo, selector) in [
        ("10", json!(["10"]), MemberSelector::Ids(vec!["10".into()])),
        (
            "10,11,%2012",
            json!(["10", "11", "12"]),
            MemberSelector::Ids(vec!["10".into(), "11".into(), "12".into()]),
        ),
        ("all", json!(["all"]), MemberSelector::All),
    ] {
        let reply = send(&app, Method::POST, &format!("{p}/{mid}/Mute/")).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{mid}");
        assert_eq!(reply.json()["member_id"], echo, "{mid}");
        assert_eq!(
            fake.last(),
            Call::Member("room".into(), selector, MemberAction::Mute)
        );
    }
}

#[tokio::test]
async fn a_list_with_some_unknown_ids_is_applied_to_the_rest_and_echoed_whole() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/10,99/Deaf/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.json()["member_id"], json!(["10", "99"]));
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/98,99/Deaf/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "member not found");
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/,/Deaf/",
    )
    .await;
    assert_eq!(reply.error(), "member not found");
}

// ---------------------------------------------------------------- bodies

#[tokio::test]
async fn play_takes_url_from_json_form_or_query_and_400s_without_it() {
    let fake = Fake::new();
    let app = app(&fake);
    let path = "/v1/Account/MA_ONE/Conference/room/Member/10/Play/";
    let play = |url: &str| {
        Call::Member(
            "room".into(),
            MemberSelector::Ids(vec!["10".into()]),
            MemberAction::Play { url: url.into() },
        )
    };
    let reply = send_json(
        &app,
        Method::POST,
        path,
        json!({"url": "http://a/json.mp3", "conference_name": "room", "member_id": "10"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(fake.last(), play("http://a/json.mp3"));

    let reply = send_request(
        &app,
        request(
            Method::POST,
            path,
            Auth::Headers,
            Some("application/x-www-form-urlencoded"),
            "url=http%3A%2F%2Fa%2Fform.wav",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(fake.last(), play("http://a/form.wav"));

    // JSON without a Content-Type (looks like JSON) is still JSON.
    let reply = send_request(
        &app,
        request(
            Method::POST,
            path,
            Auth::Headers,
            None,
            r#"{"url":"http://a/bare.mp3"}"#,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(fake.last(), play("http://a/bare.mp3"));

    let calls = fake.calls().len();
    for body in ["", "{}", r#"{"url": ""}"#] {
        let reply = send_request(
            &app,
            request(
                Method::POST,
                path,
                Auth::Headers,
                Some("application/json"),
                body,
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(reply.error(), "missing parameter: url");
    }
    assert_eq!(
        fake.calls().len(),
        calls,
        "a refused Play never reaches the engine"
    );
}

#[tokio::test]
async fn speak_defaults_to_woman_en_us_and_takes_voice_in_any_case() {
    let fake = Fake::new();
    let app = app(&fake);
    let path = "/api/v1/Account/MA_ONE/Conference/room/Member/all/Speak/";
    let speak = |text: &str, voice, language: &str| {
        Call::Member(
            "room".into(),
            MemberSelector::All,
            MemberAction::Speak {
                text: text.into(),
                voice,
                language: language.into(),
            },
        )
    };
    let reply = send_json(&app, Method::POST, path, json!({"text": "hello"})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.json()["message"], "speak queued into conference");
    assert_eq!(fake.last(), speak("hello", Voice::Woman, "en-US"));

    let reply = send_request(
        &app,
        request(
            Method::POST,
            path,
            Auth::Headers,
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            "text=hola+amigo&voice=man&language=es-ES",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(fake.last(), speak("hola amigo", Voice::Man, "es-ES"));

    let reply = send_json(
        &app,
        Method::POST,
        path,
        json!({"text": "x", "voice": "ROBOT"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error().contains("voice"));

    let reply = send_json(&app, Method::POST, path, json!({"voice": "MAN"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "missing parameter: text");
}

#[tokio::test]
async fn deletes_accept_the_json_bodies_the_plivo_sdk_sends() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send_json(
        &app,
        Method::DELETE,
        "/v1/Account/MA_ONE/Conference/room/",
        json!({"conference_name": "room"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = send_json(
        &app,
        Method::DELETE,
        "/v1/Account/MA_ONE/Conference/",
        json!({}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = send_json(
        &app,
        Method::DELETE,
        "/v1/Account/MA_ONE/Conference/room/Member/10/Mute/",
        json!({"conference_name": "room", "member_id": "10"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.bytes.is_empty());
    assert_eq!(fake.calls().len(), 3);
}

#[tokio::test]
async fn empty_bodies_are_never_an_error_whatever_the_content_type() {
    let fake = Fake::new();
    let app = app(&fake);
    for ct in [None, Some("application/json"), Some("text/plain")] {
        let reply = send_request(
            &app,
            request(
                Method::POST,
                "/api/v1/Account/MA_ONE/Conference/room/Member/10/Kick/",
                Auth::Headers,
                ct,
                Body::empty(),
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{ct:?}");
    }
}

#[tokio::test]
async fn malformed_json_is_400_and_never_reaches_the_engine() {
    let fake = Fake::new();
    let app = app(&fake);
    for (ct, body) in [
        (None, "{\"url\": "),
        (Some("application/json"), "url=x"),
        (None, "[1,2]"),
    ] {
        let reply = send_request(
            &app,
            request(
                Method::POST,
                "/v1/Account/MA_ONE/Conference/room/Member/10/Kick/",
                Auth::Basic,
                ct,
                body,
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.error().contains("JSON"), "{body}");
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let fake = Fake::new();
    let app = app(&fake);
    let text = "a".repeat(chorus_api::MAX_BODY_BYTES);
    let reply = send_json(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/10/Speak/",
        json!({ "text": text }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error().contains("too large"));
    assert!(fake.calls().is_empty());
}

// ---------------------------------------------------------------- list and retrieve

#[tokio::test]
async fn list_has_exactly_api_id_and_sorted_conferences() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send(
        &app,
        Method::GET,
        "/api/v1/Account/MA_ONE/Conference/?callback_method=POST",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["api_id", "conferences"]);
    assert_eq!(
        body["conferences"],
        json!(["My Conf Room", "Sales", "a+b", "room"])
    );
}

#[tokio::test]
async fn retrieve_has_exactly_the_documented_keys_with_string_numbers() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send(
        &app,
        Method::GET,
        "/v1/Account/MA_ONE/Conference/room/?conference_name=room",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&body),
        [
            "api_id",
            "conference_member_count",
            "conference_name",
            "conference_run_time",
            "members"
        ]
    );
    assert_eq!(body["conference_name"], "room");
    assert_eq!(body["conference_run_time"], "590");
    assert_eq!(body["conference_member_count"], "3");
    let members = body["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for member in members {
        assert_eq!(
            keys(member),
            [
                "call_uuid",
                "caller_name",
                "deaf",
                "direction",
                "from",
                "join_time",
                "member_id",
                "muted",
                "to"
            ]
        );
        assert!(member["member_id"].is_string());
        assert_eq!(member["join_time"], "42");
        assert!(member["muted"].is_boolean() && member["deaf"].is_boolean());
        assert_eq!(member["from"], "1456789903", "leading + stripped");
    }
    assert_eq!(members[1]["muted"], true);
    assert_eq!(members[2]["deaf"], true);
}

// ---------------------------------------------------------------- record

#[tokio::test]
async fn record_start_answers_in_each_dialects_shape() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send_json(
        &app,
        Method::POST,
        "/api/v1/Account/MA_ONE/Conference/room/Record/",
        json!({"file_format": "WAV", "time_limit": 60, "callback_url": "http://hook/rec"}),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "callback_url on Record is not async mode"
    );
    let body = reply.json();
    assert_eq!(body["message"], "async api spawned");
    assert_eq!(body.as_object().unwrap().len(), 2);
    assert_eq!(
        fake.last(),
        Call::RecordStart(
            "room".into(),
            RecordRequest {
                file_format: "wav".into(),
                callback_url: Some("http://hook/rec".into()),
                callback_method: "POST".into(),
                time_limit: Some(60),
            }
        )
    );

    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Record/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let body = reply.json();
    assert_eq!(body["message"], "conference recording started");
    assert_eq!(body["recording_id"], "rec-1");
    assert_eq!(body["url"], "http://media/rec-1.mp3");
    assert_eq!(body.as_object().unwrap().len(), 4);
    assert_eq!(
        fake.last(),
        Call::RecordStart(
            "room".into(),
            RecordRequest {
                file_format: "mp3".into(),
                callback_url: None,
                callback_method: "POST".into(),
                time_limit: None,
            }
        )
    );

    let reply = send(
        &app,
        Method::DELETE,
        "/v1/Account/MA_ONE/Conference/room/Record/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(fake.last(), Call::RecordStop("room".into()));

    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/none/Record/",
    )
    .await;
    assert_eq!(reply.error(), "conference not found");
    for bad in [
        json!({"file_format": "ogg"}),
        json!({"time_limit": "soon"}),
        json!({"callback_method": "PUT"}),
    ] {
        let reply = send_json(
            &app,
            Method::POST,
            "/v1/Account/MA_ONE/Conference/room/Record/",
            bad.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn engine_errors_map_to_400_503_and_500() {
    let fake = Fake::new();
    let app = app(&fake);
    fake.fail_with(ControlError::Unavailable(
        "recording is not available yet".into(),
    ));
    let reply = send(
        &app,
        Method::POST,
        "/api/v1/Account/MA_ONE/Conference/room/Record/",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error(), "recording is not available yet");

    fake.fail_with(ControlError::Invalid("url must be http(s)".into()));
    let reply = send(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/10/Play/?url=ftp://x",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "url must be http(s)");

    fake.fail_with(ControlError::Internal("mixer thread gone".into()));
    let reply = send(&app, Method::DELETE, "/v1/Account/MA_ONE/Conference/").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reply.error(),
        "internal error",
        "internal detail is logged, not shown"
    );
}

// ---------------------------------------------------------------- async mode

async fn next_callback(rx: &mut mpsc::UnboundedReceiver<CallbackRequest>) -> CallbackRequest {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("callback delivered")
        .unwrap()
}

fn field<'a>(cb: &'a CallbackRequest, name: &str) -> &'a str {
    cb.fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {:?}", cb.fields))
}

#[tokio::test]
async fn callback_url_answers_at_once_and_delivers_the_result() {
    let fake = Fake::new();
    let (app, mut rx) = app_with_sink(&fake);
    let reply = send_json(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/10,11/Kick/",
        json!({"callback_url": "http://hook.example/done"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["message"], "async api spawned");
    assert_eq!(body.as_object().unwrap().len(), 2);
    let api_id = body["api_id"].as_str().unwrap().to_owned();

    let cb = next_callback(&mut rx).await;
    assert_eq!(cb.url, "http://hook.example/done");
    assert_eq!(cb.method, CallbackMethod::Post);
    assert_eq!(field(&cb, "message"), "kicked");
    assert_eq!(field(&cb, "member_id"), "10,11");
    assert_eq!(field(&cb, "api_id"), api_id);
    assert_eq!(field(&cb, "status"), "success");
    assert_eq!(field(&cb, "http_status"), "202");
    assert_eq!(
        fake.last(),
        Call::Member(
            "room".into(),
            MemberSelector::Ids(vec!["10".into(), "11".into()]),
            MemberAction::Kick
        )
    );
}

#[tokio::test]
async fn async_failures_and_204s_are_delivered_with_their_status() {
    let fake = Fake::new();
    let (app, mut rx) = app_with_sink(&fake);
    let reply = send(
        &app,
        Method::DELETE,
        "/api/v1/Account/MA_ONE/Conference/nope/Member/1/Mute/?callback_url=http://hook/x&callback_method=get",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cb = next_callback(&mut rx).await;
    assert_eq!(cb.method, CallbackMethod::Get);
    assert_eq!(field(&cb, "status"), "failure");
    assert_eq!(field(&cb, "http_status"), "404");
    assert_eq!(field(&cb, "error"), "conference not found");

    let reply = send(
        &app,
        Method::DELETE,
        "/v1/Account/MA_ONE/Conference/room/?callback_url=http://hook/y",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cb = next_callback(&mut rx).await;
    assert_eq!(field(&cb, "status"), "success");
    assert_eq!(field(&cb, "http_status"), "204");
    assert_eq!(cb.fields.len(), 3);

    let reply = send(
        &app,
        Method::GET,
        "/v1/Account/MA_ONE/Conference/?callback_url=http://hook/z",
    )
    .await;
    assert_eq!(reply.json()["message"], "async api spawned");
    let cb = next_callback(&mut rx).await;
    assert_eq!(field(&cb, "conferences"), "My Conf Room,Sales,a+b,room");
}

#[tokio::test]
async fn an_invalid_callback_is_refused_before_anything_runs() {
    let fake = Fake::new();
    let (app, _rx) = app_with_sink(&fake);
    for query in [
        "callback_url=ftp://x/y",
        "callback_url=http://x/&callback_method=PUT",
    ] {
        let reply = send(
            &app,
            Method::POST,
            &format!("/v1/Account/MA_ONE/Conference/room/Member/10/Kick/?{query}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
    assert!(fake.calls().is_empty());
}

/// A real HTTP listener on 127.0.0.1 that forwards each callback it gets.
async fn callback_server() -> (
    String,
    mpsc::UnboundedReceiver<(Method, Vec<(String, String)>)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |method: Method, uri: axum::http::Uri, body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let raw = if method == Method::GET {
                uri.query().unwrap_or_default().as_bytes().to_vec()
            } else {
                body.to_vec()
            };
            let fields = form_urlencoded::parse(&raw).into_owned().collect();
            let _ = tx.send((method, fields));
            StatusCode::OK
        }
    };
    let app = Router::new().route("/hook", axum::routing::any(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn async_results_reach_a_real_http_server_by_post_and_get() {
    let (url, mut received) = callback_server().await;
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send_json(
        &app,
        Method::POST,
        "/v1/Account/MA_ONE/Conference/room/Member/all/Mute/",
        json!({ "callback_url": url }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let api_id = reply.json()["api_id"].as_str().unwrap().to_owned();
    let (method, fields) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(method, Method::POST);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("api_id"), api_id);
    assert_eq!(get("message"), "muted");
    assert_eq!(get("member_id"), "all");
    assert_eq!(get("status"), "success");
    assert_eq!(get("http_status"), "202");

    let reply = send(
        &app,
        Method::POST,
        &format!("/api/v1/Account/MA_ONE/Conference/room/Member/99/Deaf/?callback_url={url}&callback_method=GET"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let (method, fields) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(method, Method::GET);
    assert!(fields.contains(&("http_status".into(), "404".into())));
    assert!(fields.contains(&("error".into(), "member not found".into())));
}

#[tokio::test]
async fn an_unreachable_callback_url_does_not_delay_the_answer() {
    // Bind then drop a listener so the port refuses connections.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fake = Fake::new();
    let app = app(&fake);
    let started = std::time::Instant::now();
    let reply = send(
        &app,
        Method::POST,
        &format!("/v1/Account/MA_ONE/Conference/room/Member/10/Kick/?callback_url=http://127.0.0.1:{port}/x"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------- recordings

const TWO: Auth = Auth::Creds("MA_TWO", "two");

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

async fn send_auth(app: &Router, method: Method, path: &str, auth: Auth) -> Reply {
    send_request(app, request(method, path, auth, None, Body::empty())).await
}

async fn get_range(app: &Router, path: &str, range: &str) -> Reply {
    let mut req = request(Method::GET, path, Auth::Headers, None, Body::empty());
    req.headers_mut()
        .insert(header::RANGE, range.parse().unwrap());
    send_request(app, req).await
}

fn ids(body: &Value) -> Vec<String> {
    body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["recording_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn recording_list_is_the_accounts_own_newest_first_on_both_prefixes_and_auths() {
    let fake = Fake::new();
    let app = app(&fake);
    for prefix in PREFIXES {
        for auth in AUTHS {
            let uri = format!("{prefix}/Recording/");
            let reply = send_auth(&app, Method::GET, &uri, auth).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri} {auth:?}");
            assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
            let body = reply.json();
            assert_eq!(keys(&body), ["api_id", "meta", "objects"]);
            assert!(body["api_id"].as_str().unwrap().len() >= 32);
            assert_eq!(
                body["meta"],
                json!({"count": 5, "limit": 20, "offset": 0, "next": null, "previous": null})
            );
            assert_eq!(
                ids(&body),
                ["rec-live", "rec-failed", "rec-a", "rec-gone", "rec-b"]
            );
        }
    }
    let reply = send_auth(&app, Method::GET, "/v1/Account/MA_TWO/Recording", TWO).await;
    assert_eq!(ids(&reply.json()), ["rec-two"]);
}

#[tokio::test]
async fn recording_objects_have_plivos_keys_and_millisecond_strings() {
    let fake = Fake::new();
    let app = app(&fake);
    let body = send(&app, Method::GET, "/v1/Account/MA_ONE/Recording/")
        .await
        .json();
    let objects = body["objects"].as_array().unwrap();
    for object in objects {
        assert_eq!(
            keys(object),
            [
                "add_time",
                "call_uuid",
                "conference_name",
                "recording_duration_ms",
                "recording_end_ms",
                "recording_format",
                "recording_id",
                "recording_start_ms",
                "recording_type",
                "recording_url",
                "recovered",
                "status"
            ]
        );
    }
    let a = &objects[2];
    assert_eq!(
        *a,
        json!({
            "recording_id": "rec-a",
            "recording_url": "http://chorus/v1/Account/MA/Recording/rec-a.mp3",
            "recording_format": "mp3",
            "recording_type": "conference",
            "conference_name": "room",
            "call_uuid": "call-rec-a",
            "recording_duration_ms": "345100.00000",
            "recording_start_ms": "1407235163907.00000",
            "recording_end_ms": "1407235509007.00000",
            "add_time": "2014-08-05 10:39:23+00:00",
            "status": "completed",
            "recovered": false,
        })
    );
    assert_eq!(objects[0]["status"], "in-progress");
    assert_eq!(objects[0]["recording_end_ms"], "0.00000");
    assert_eq!(objects[3]["recovered"], true);
    let b = &objects[4];
    assert_eq!(b["recording_type"], "normal");
    assert_eq!(b["conference_name"], Value::Null);
    assert_eq!(b["recording_format"], "wav");
}

#[tokio::test]
async fn recording_list_pages_with_limit_and_offset() {
    let fake = Fake::new();
    let app = app(&fake);
    let p = "/api/v1/Account/MA_ONE/Recording/";
    let body = send(&app, Method::GET, &format!("{p}?limit=2"))
        .await
        .json();
    assert_eq!(ids(&body), ["rec-live", "rec-failed"]);
    assert_eq!(
        body["meta"],
        json!({"count": 5, "limit": 2, "offset": 0,
               "next": format!("{p}?limit=2&offset=2"), "previous": null})
    );
    let body = send(&app, Method::GET, &format!("{p}?limit=2&offset=3"))
        .await
        .json();
    assert_eq!(ids(&body), ["rec-gone", "rec-b"]);
    assert_eq!(body["meta"]["next"], Value::Null);
    assert_eq!(body["meta"]["previous"], format!("{p}?limit=2&offset=1"));
    let body = send(&app, Method::GET, &format!("{p}?offset=1&limit=1"))
        .await
        .json();
    assert_eq!(ids(&body), ["rec-failed"]);
    assert_eq!(body["meta"]["previous"], format!("{p}?limit=1&offset=0"));
    // Past the end: no objects, the total still counted.
    let body = send(&app, Method::GET, &format!("{p}?offset=10"))
        .await
        .json();
    assert_eq!(ids(&body), Vec::<String>::new());
    assert_eq!(body["meta"]["count"], 5);
    // A JSON body works as well as the query (lenient bodies).
    let reply = send_json(&app, Method::GET, p, json!({"limit": 1, "offset": 2})).await;
    assert_eq!(ids(&reply.json()), ["rec-a"]);

    for bad in [
        "limit=0",
        "limit=21",
        "limit=abc",
        "limit=-1",
        "offset=-1",
        "offset=x",
    ] {
        let reply = send(&app, Method::GET, &format!("{p}?{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        let error = reply.error();
        assert!(error.starts_with("invalid parameter"), "{bad}: {error}");
    }
}

#[tokio::test]
async fn recording_list_defaults_to_pages_of_20() {
    let fake = Fake::new();
    let app = app(&fake);
    for i in 0..24 {
        fake.add_recording(
            "MA_TWO",
            recording_info(&format!("extra-{i:02}"), "mp3", 1_000 + i, None),
        );
    }
    let p = "/v1/Account/MA_TWO/Recording/";
    let body = send_auth(&app, Method::GET, p, TWO).await.json();
    assert_eq!(body["meta"]["count"], 25);
    assert_eq!(body["meta"]["limit"], 20);
    assert_eq!(body["objects"].as_array().unwrap().len(), 20);
    assert_eq!(body["objects"][0]["recording_id"], "rec-two");
    assert_eq!(body["objects"][1]["recording_id"], "extra-23");
    assert_eq!(body["meta"]["next"], format!("{p}?limit=20&offset=20"));
    let body = send_auth(&app, Method::GET, &format!("{p}?offset=20"), TWO)
        .await
        .json();
    assert_eq!(
        ids(&body),
        ["extra-04", "extra-03", "extra-02", "extra-01", "extra-00"]
    );
    assert_eq!(body["meta"]["next"], Value::Null);
    assert_eq!(body["meta"]["previous"], format!("{p}?limit=20&offset=0"));
}

#[tokio::test]
async fn recording_retrieve_is_the_object_with_api_id() {
    let fake = Fake::new();
    let app = app(&fake);
    for prefix in PREFIXES {
        for auth in AUTHS {
            for path in [
                "/Recording/rec-a/",
                "/recording/rec-a",
                "/RECORDING/rec%2Da/",
            ] {
                let uri = format!("{prefix}{path}");
                let reply = send_auth(&app, Method::GET, &uri, auth).await;
                assert_eq!(reply.status, StatusCode::OK, "{uri} {auth:?}");
                let body = reply.json();
                assert_eq!(body.as_object().unwrap().len(), 13);
                assert!(body["api_id"].as_str().unwrap().len() >= 32);
                assert_eq!(body["recording_id"], "rec-a");
                assert_eq!(body["recording_duration_ms"], "345100.00000");
            }
        }
    }
    for id in ["nope", "REC-A", "rec-a.ogg", "%FF"] {
        let reply = send(
            &app,
            Method::GET,
            &format!("/v1/Account/MA_ONE/Recording/{id}/"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(reply.error(), "recording not found");
    }
}

#[tokio::test]
async fn recording_delete_is_204_then_gone_and_404_when_unknown() {
    let fake = Fake::new();
    let app = app(&fake);
    for (prefix, auth, id) in [
        ("/api/v1/Account/MA_ONE", Auth::Headers, "rec-a"),
        ("/v1/Account/MA_ONE", Auth::Basic, "rec-b"),
        ("/api/v1/Account/MA_ONE", Auth::Basic, "rec-failed"),
        ("/v1/Account/MA_ONE", Auth::Headers, "rec-gone"),
    ] {
        let uri = format!("{prefix}/Recording/{id}/");
        let reply = send_auth(&app, Method::DELETE, &uri, auth).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{uri}");
        assert!(reply.bytes.is_empty());
        assert_eq!(fake.last(), Call::DeleteRecording(id.to_owned()));
        let reply = send_auth(&app, Method::GET, &uri, auth).await;
        assert_eq!(reply.error(), "recording not found", "{uri} after delete");
        let reply = send_auth(&app, Method::DELETE, &uri, auth).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.error(), "recording not found");
    }
    let body = send(&app, Method::GET, "/v1/Account/MA_ONE/Recording/")
        .await
        .json();
    assert_eq!(ids(&body), ["rec-live"]);
    // A callback_url is no async mode here: the answer is the result.
    let reply = send(
        &app,
        Method::DELETE,
        "/v1/Account/MA_ONE/Recording/nope/?callback_url=http://hook/x",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "recording not found");
}

#[tokio::test]
async fn recording_file_downloads_whole_with_its_type_and_length() {
    let fake = Fake::new();
    let app = app(&fake);
    for prefix in PREFIXES {
        for auth in AUTHS {
            for (path, content_type) in [
                ("/Recording/rec-a.mp3", "audio/mpeg"),
                ("/recording/rec-a.MP3", "audio/mpeg"),
                ("/Recording/rec-b.wav", "audio/wav"),
                ("/Recording/rec-b.wav/", "audio/wav"),
            ] {
                let uri = format!("{prefix}{path}");
                let reply = send_auth(&app, Method::GET, &uri, auth).await;
                assert_eq!(reply.status, StatusCode::OK, "{uri} {auth:?}");
                assert_eq!(reply.headers[header::CONTENT_TYPE], content_type, "{uri}");
                assert_eq!(reply.headers[header::ACCEPT_RANGES], "bytes");
                assert_eq!(reply.headers[header::CONTENT_LENGTH], "1000");
                assert_eq!(reply.bytes, audio_bytes(), "{uri}");
            }
        }
    }
    let reply = send_auth(
        &app,
        Method::GET,
        "/v1/Account/MA_TWO/Recording/rec-two.mp3",
        TWO,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.bytes, audio_bytes());
}

#[tokio::test]
async fn recording_file_head_has_the_headers_and_no_body() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send(&app, Method::HEAD, "/v1/Account/MA_ONE/Recording/rec-a.mp3").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "audio/mpeg");
    assert_eq!(reply.headers[header::CONTENT_LENGTH], "1000");
    assert_eq!(reply.headers[header::ACCEPT_RANGES], "bytes");
    assert!(reply.bytes.is_empty());
}

#[tokio::test]
async fn recording_file_serves_single_byte_ranges_as_206() {
    let fake = Fake::new();
    let app = app(&fake);
    let all = audio_bytes();
    for prefix in PREFIXES {
        let uri = format!("{prefix}/Recording/rec-a.mp3");
        for (range, first, last) in [
            ("bytes=0-99", 0usize, 99usize),
            ("bytes=900-", 900, 999),
            ("bytes=-100", 900, 999),
            ("bytes=10-10", 10, 10),
            ("bytes=950-5000", 950, 999),
            ("bytes=-5000", 0, 999),
        ] {
            let reply = get_range(&app, &uri, range).await;
            assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                reply.headers[header::CONTENT_RANGE],
                format!("bytes {first}-{last}/1000").as_str(),
                "{range}"
            );
            assert_eq!(
                reply.headers[header::CONTENT_LENGTH],
                (last - first + 1).to_string().as_str()
            );
            assert_eq!(reply.headers[header::CONTENT_TYPE], "audio/mpeg");
            assert_eq!(reply.bytes, all[first..=last], "{range}");
        }
    }
}

#[tokio::test]
async fn recording_file_range_past_the_end_is_416_with_the_length() {
    let fake = Fake::new();
    let app = app(&fake);
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let reply = get_range(&app, "/v1/Account/MA_ONE/Recording/rec-a.mp3", range).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(reply.headers[header::CONTENT_RANGE], "bytes */1000");
        assert_eq!(reply.error(), "range not satisfiable");
    }
}

#[tokio::test]
async fn recording_file_ignores_multiple_malformed_or_conditional_ranges() {
    let fake = Fake::new();
    let app = app(&fake);
    let uri = "/api/v1/Account/MA_ONE/Recording/rec-b.wav";
    for range in ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-"] {
        let reply = get_range(&app, uri, range).await;
        assert_eq!(reply.status, StatusCode::OK, "{range}");
        assert_eq!(reply.bytes, audio_bytes(), "{range}");
        assert!(!reply.headers.contains_key(header::CONTENT_RANGE));
    }
    let mut req = request(Method::GET, uri, Auth::Headers, None, Body::empty());
    req.headers_mut()
        .insert(header::RANGE, "bytes=0-9".parse().unwrap());
    req.headers_mut()
        .insert(header::IF_RANGE, "\"some-etag\"".parse().unwrap());
    let reply = send_request(&app, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.bytes.len(), 1000);
}

#[tokio::test]
async fn recording_file_without_a_file_is_404_saying_why() {
    let fake = Fake::new();
    let app = app(&fake);
    let p = "/v1/Account/MA_ONE/Recording";
    for (path, error) in [
        ("rec-live.mp3", "recording not available yet"),
        ("rec-failed.mp3", "recording file not available"),
        ("rec-gone.mp3", "recording file not available"),
        ("rec-a.wav", "recording not found"),
        ("rec-b.mp3", "recording not found"),
        ("nope.mp3", "recording not found"),
        ("%FF.mp3", "recording not found"),
    ] {
        let reply = send(&app, Method::GET, &format!("{p}/{path}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.error(), error, "{path}");
    }
    // A range on a missing file changes nothing.
    let reply = get_range(&app, &format!("{p}/rec-live.mp3"), "bytes=0-9").await;
    assert_eq!(reply.error(), "recording not available yet");
}

#[tokio::test]
async fn another_accounts_recording_is_not_found_for_every_operation() {
    let fake = Fake::new();
    let app = app(&fake);
    // MA_TWO asks, on its own path, for MA_ONE's recordings, and the reverse.
    for (prefix, auth, id) in [
        ("/v1/Account/MA_TWO", TWO, "rec-a"),
        ("/api/v1/Account/MA_TWO", TWO, "rec-b"),
        ("/v1/Account/MA_ONE", Auth::Basic, "rec-two"),
        ("/api/v1/Account/MA_ONE", Auth::Headers, "rec-two"),
    ] {
        for (method, path) in [
            (Method::GET, format!("{prefix}/Recording/{id}/")),
            (Method::GET, format!("{prefix}/Recording/{id}.mp3")),
            (Method::GET, format!("{prefix}/Recording/{id}.wav")),
            (Method::DELETE, format!("{prefix}/Recording/{id}/")),
        ] {
            let reply = send_auth(&app, method.clone(), &path, auth).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(reply.error(), "recording not found", "{method} {path}");
        }
        let reply = send_auth(
            &app,
            Method::HEAD,
            &format!("{prefix}/Recording/{id}.mp3"),
            auth,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    // The engine was asked on the authenticated account, and nothing was deleted.
    let calls = fake.calls();
    assert_eq!(
        calls,
        vec![
            ("MA_TWO".to_owned(), Call::DeleteRecording("rec-a".into())),
            ("MA_TWO".to_owned(), Call::DeleteRecording("rec-b".into())),
            ("MA_ONE".to_owned(), Call::DeleteRecording("rec-two".into())),
            ("MA_ONE".to_owned(), Call::DeleteRecording("rec-two".into())),
        ]
    );
    assert_eq!(fake.recordings("MA_ONE").len(), 5);
    assert_eq!(fake.recordings("MA_TWO").len(), 1);
    // Another account's path with one's own credentials is the usual 401.
    let reply = send_auth(
        &app,
        Method::GET,
        "/v1/Account/MA_ONE/Recording/rec-a.mp3",
        TWO,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = send_auth(
        &app,
        Method::GET,
        "/v1/Account/MA_ONE/Recording/",
        Auth::None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn recording_route_shapes_outside_the_table_are_the_plain_404() {
    let fake = Fake::new();
    let app = app(&fake);
    for path in [
        "/v1/Account/MA_ONE/Recording/rec-a/extra",
        "/v1/Account/MA_ONE/Recording/rec-a.mp3/extra",
        "/v1/Account/MA_ONE/Recordings/",
        "/api/v1/Account/MA_ONE/Recording//",
        "/v1/Account/MA_ONE/Conference/room/Recording/",
        "/Recording/rec-a.mp3",
    ] {
        let reply = send(&app, Method::GET, path).await;
        assert!(reply.is_plain_404(), "{path}: {}", reply.status);
    }
}

#[tokio::test]
async fn recording_routes_with_another_method_are_405_with_allow() {
    let fake = Fake::new();
    let app = app(&fake);
    for (method, path, allow) in [
        (Method::PUT, "/Recording/", "GET"),
        (Method::DELETE, "/Recording/", "GET"),
        (Method::PUT, "/Recording/rec-a/", "GET, DELETE"),
        (Method::POST, "/Recording/rec-a", "GET, DELETE"),
        (Method::PUT, "/Recording/rec-a.mp3", "GET, HEAD"),
        (Method::DELETE, "/Recording/rec-a.wav", "GET, HEAD"),
    ] {
        for prefix in PREFIXES {
            let reply = send(&app, method.clone(), &format!("{prefix}{path}")).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(reply.headers[header::ALLOW], allow, "{method} {path}");
            assert_eq!(reply.error(), "method not allowed");
        }
    }
    assert!(fake.calls().is_empty());
    assert_eq!(fake.recordings("MA_ONE").len(), 5);
}

// ---------------------------------------------------------------- OpenAPI

#[tokio::test]
async fn the_openapi_document_and_the_router_serve_the_same_routes() {
    let fake = Fake::new();
    let app = app(&fake);
    let reply = send_request(
        &app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basicAuth"]["scheme"], "basic");
    assert_eq!(schemes["authId"]["name"], "X-Auth-ID");
    assert_eq!(schemes["authToken"]["name"], "X-Auth-Token");

    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            documented.push((method.clone(), path.clone()));
            assert!(op["responses"].as_object().unwrap().len() >= 2);
            for param in op["parameters"].as_array().unwrap() {
                if param["in"] == "path" {
                    let name = param["name"].as_str().unwrap();
                    assert!(path.contains(&format!("{{{name}}}")), "{path} {name}");
                }
            }
            let concrete = path
                .replace("{auth_id}", "MA_ONE")
                .replace("{conference_name}", "room")
                .replace("{member_id}", "10")
                .replace("{recording_id}", "rec-a");
            let reply = send(&app, method.clone(), &concrete).await;
            assert!(
                !reply.is_plain_404(),
                "{method} {path} is documented but not served"
            );
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
    let mut served = Vec::new();
    for (_, prefix) in chorus_api::routes::PREFIXES {
        for route in &chorus_api::routes::ROUTES {
            served.push((route.method.clone(), format!("{prefix}{}", route.template)));
        }
    }
    documented.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    served.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    assert_eq!(documented, served);
    assert_eq!(served.len(), 46);
    let recording_paths: Vec<_> = served
        .iter()
        .filter(|(_, p)| p.starts_with("/v1/") && p.contains("/Recording/"))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        recording_paths,
        [
            "DELETE /v1/Account/{auth_id}/Recording/{recording_id}/",
            "GET /v1/Account/{auth_id}/Recording/",
            "GET /v1/Account/{auth_id}/Recording/{recording_id}.mp3",
            "GET /v1/Account/{auth_id}/Recording/{recording_id}.wav",
            "GET /v1/Account/{auth_id}/Recording/{recording_id}/",
            "HEAD /v1/Account/{auth_id}/Recording/{recording_id}.mp3",
            "HEAD /v1/Account/{auth_id}/Recording/{recording_id}.wav",
        ]
    );
    let download = &doc["paths"]["/v1/Account/{auth_id}/Recording/{recording_id}.wav"]["get"];
    assert!(download["responses"]["200"]["content"]["audio/wav"].is_object());
    assert!(download["responses"]["206"].is_object());
    assert!(download["responses"]["416"].is_object());
    let list = &doc["paths"]["/api/v1/Account/{auth_id}/Recording/"]["get"];
    let query: Vec<_> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(query, ["limit", "offset"]);
    let mut operation_ids: Vec<_> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    let total = operation_ids.len();
    operation_ids.sort();
    operation_ids.dedup();
    assert_eq!(operation_ids.len(), total, "operationIds are unique");
}

// ---------------------------------------------------------------- robustness

#[tokio::test]
async fn random_requests_never_panic_or_fail_inside() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    let fake = Fake::new();
    let (app, _rx) = app_with_sink(&fake);
    let words = [
        "api",
        "v1",
        "V1",
        "Account",
        "account",
        "MA_ONE",
        "Conference",
        "room",
        "Member",
        "10",
        "all",
        "Kick",
        "mute",
        "Deaf",
        "Play",
        "Speak",
        "Record",
        "Recording",
        "rec-a",
        "rec-a.mp3",
        "rec-live.wav",
        "rec-b.WAV",
        "",
        "%20",
        "%FF",
        "a+b",
        "%",
        "..",
        "%2F",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::HEAD,
    ];
    let types = [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
    ];
    let mut sent = 0;
    for _ in 0..3_000 {
        let mut path = String::new();
        for _ in 0..rng.gen_range(0..9) {
            path.push('/');
            path.push_str(words[rng.gen_range(0..words.len())]);
        }
        if rng.gen_bool(0.3) {
            path.push('/');
        }
        if rng.gen_bool(0.3) {
            path.push_str("?url=http://a/b&text=x&voice=MAN");
        }
        if path.is_empty() {
            path.push('/');
        }
        if path.parse::<axum::http::Uri>().is_err() {
            continue; // not a request a client could send
        }
        sent += 1;
        let body: Vec<u8> = match rng.gen_range(0..3) {
            0 => Vec::new(),
            1 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
            _ => {
                let mut b = b"{\"text\":".to_vec();
                b.extend((0..rng.gen_range(0..20)).map(|_| rng.gen::<u8>()));
                b
            }
        };
        let auth = if rng.gen_bool(0.8) {
            Auth::Headers
        } else {
            Auth::None
        };
        let method = methods[rng.gen_range(0..methods.len())].clone();
        let ct = types[rng.gen_range(0..types.len())];
        let reply = send_request(&app, request(method.clone(), &path, auth, ct, body)).await;
        assert!(
            !reply.status.is_server_error(),
            "{method} {path}: {}",
            reply.status
        );
    }
    assert!(sent > 1_000, "only {sent} requests were valid URIs");
}
