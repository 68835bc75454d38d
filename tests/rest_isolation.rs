//! Authentication and account isolation of the REST API (API.md §2, §3, §4) against a live
//! engine with two accounts, over raw HTTP: every route under both prefixes refuses missing,
//! wrong, unknown and foreign credentials with one and the same 401, another account cannot
//! even see the room, and afterwards the room is exactly as it was, down to its audio.
//!
//! With the default call flow every inbound call belongs to the first account, so the live
//! room is account 1's; account 2 owns no room, and the matrix checks it cannot reach
//! account 1's.

mod common;

use std::time::Duration;

use common::json::Json;
use common::rest::{http_request, Credentials, HttpResponse};
use common::{assert_hears, steady_window, Call, Engine, EngineOptions, Source};

const ID1: &str = "MAXXXXXXXXXXXXXXXXX1";
const TOKEN1: &str = "tok1";
const ID2: &str = "MAXXXXXXXXXXXXXXXXX2";
const TOKEN2: &str = "tok2";
const UNKNOWN_ID: &str = "MAXXXXXXXXXXXXXXXXX9";
const ROOM: &str = "isoroom";

const PREFIXES: [&str; 2] = ["/api/v1/Account", "/v1/Account"];

/// The 16 routes of API.md §4, relative to `{prefix}/{auth_id}/`, with a body that would be
/// valid for the route (so no 400 can stand in for the expected answer). `{room}` and `{mid}`
/// are filled in.
const ROUTES: [(&str, &str, Option<&str>); 16] = [
    ("GET", "Conference/", None),
    ("GET", "Conference/{room}/", None),
    ("DELETE", "Conference/{room}/", None),
    ("DELETE", "Conference/", None),
    ("DELETE", "Conference/{room}/Member/{mid}/", None),
    ("POST", "Conference/{room}/Member/{mid}/Kick/", Some("{}")),
    ("POST", "Conference/{room}/Member/{mid}/Mute/", Some("{}")),
    ("DELETE", "Conference/{room}/Member/{mid}/Mute/", None),
    ("POST", "Conference/{room}/Member/{mid}/Deaf/", Some("{}")),
    ("DELETE", "Conference/{room}/Member/{mid}/Deaf/", None),
    (
        "POST",
        "Conference/{room}/Member/{mid}/Play/",
        Some(r#"{"url":"http://127.0.0.1:9/never-fetched.wav"}"#),
    ),
    ("DELETE", "Conference/{room}/Member/{mid}/Play/", None),
    (
        "POST",
        "Conference/{room}/Member/{mid}/Speak/",
        Some(r#"{"text":"never spoken"}"#),
    ),
    ("DELETE", "Conference/{room}/Member/{mid}/Speak/", None),
    (
        "POST",
        "Conference/{room}/Record/",
        Some(r#"{"file_format":"wav"}"#),
    ),
    ("DELETE", "Conference/{room}/Record/", None),
];

struct Room {
    engine: Engine,
    a: Call,
    b: Call,
    ids: Vec<String>,
}

/// An engine with both accounts and account 1's room with A (440 Hz) and B (1000 Hz).
fn live_room() -> Room {
    let engine =
        Engine::start_with_accounts(&[(ID1, TOKEN1), (ID2, TOKEN2)], EngineOptions::default());
    let a = Call::dial(engine.sip, ROOM, Source::tone(440.0));
    let b = Call::dial(engine.sip, ROOM, Source::tone(1000.0));
    let room = get_room(&engine);
    let ids = member_ids(&room);
    assert_eq!(ids.len(), 2, "{room}");
    Room { engine, a, b, ids }
}

fn send(
    engine: &Engine,
    method: &str,
    path: &str,
    auth: Credentials<'_>,
    body: Option<&str>,
) -> HttpResponse {
    let response = http_request(engine.http, method, path, auth, &[], body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", engine.logs()));
    eprintln!(
        "{method} {path} [{auth:?}] -> {} {}",
        response.status, response.body
    );
    response
}

fn get_room(engine: &Engine) -> Json {
    let path = format!("/v1/Account/{ID1}/Conference/{ROOM}/");
    let response = send(engine, "GET", &path, Credentials::Basic(ID1, TOKEN1), None);
    assert_eq!(response.status, 200, "GET {path}:\n{response}");
    response.json()
}

fn member_ids(room: &Json) -> Vec<String> {
    let mut ids: Vec<String> = room
        .get("members")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no members in {room}"))
        .iter()
        .map(|m| {
            m.get("member_id")
                .and_then(Json::as_str)
                .unwrap_or_else(|| panic!("no member_id in {m}"))
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

fn conferences(response: &HttpResponse) -> Vec<String> {
    response
        .json()
        .get("conferences")
        .and_then(Json::as_str_vec)
        .unwrap_or_else(|| panic!("no conferences array in\n{response}"))
}

fn path_of(prefix: &str, account: &str, template: &str, mid: &str) -> String {
    format!(
        "{prefix}/{account}/{}",
        template.replace("{room}", ROOM).replace("{mid}", mid)
    )
}

/// Account 1's room is as it was: the same two members, neither muted nor deaf, nobody hung
/// up, and each still hears the other.
fn assert_untouched(room: &Room) {
    let now = get_room(&room.engine);
    assert_eq!(member_ids(&now), room.ids, "{now}");
    assert_eq!(
        now.get("conference_member_count").and_then(Json::as_str),
        Some("2"),
        "{now}"
    );
    for m in now
        .get("members")
        .and_then(Json::as_array)
        .unwrap_or_default()
    {
        assert_eq!(m.get("muted"), Some(&Json::Bool(false)), "{m}");
        assert_eq!(m.get("deaf"), Some(&Json::Bool(false)), "{m}");
    }
    assert!(room.a.bye_received().is_none(), "A was hung up");
    assert!(room.b.bye_received().is_none(), "B was hung up");
    let window = steady_window(Duration::from_millis(300), Duration::from_millis(1500));
    assert_hears("A at the end", &room.a, window, &[1000.0], &[440.0]);
    assert_hears("B at the end", &room.b, window, &[440.0], &[1000.0]);
}

#[test]
fn every_route_refuses_bad_or_foreign_credentials_and_leaves_the_room_untouched() {
    let room = live_room();
    let engine = &room.engine;
    let mid = room.ids[0].as_str();

    // (path account, credentials, what the case is)
    let refused: [(&str, Credentials<'_>, &str); 10] = [
        (ID1, Credentials::None, "no credentials"),
        (ID1, Credentials::Basic(ID1, "wrong"), "wrong token (Basic)"),
        (
            ID1,
            Credentials::XAuth(ID1, "wrong"),
            "wrong token (X-Auth)",
        ),
        (
            ID1,
            Credentials::Basic(UNKNOWN_ID, TOKEN1),
            "unknown id (Basic)",
        ),
        (
            ID1,
            Credentials::XAuth(UNKNOWN_ID, TOKEN1),
            "unknown id (X-Auth)",
        ),
        (
            UNKNOWN_ID,
            Credentials::Basic(UNKNOWN_ID, TOKEN1),
            "unknown id in path (Basic)",
        ),
        (
            UNKNOWN_ID,
            Credentials::XAuth(UNKNOWN_ID, TOKEN1),
            "unknown id in path (X-Auth)",
        ),
        (
            UNKNOWN_ID,
            Credentials::None,
            "unknown id in path, no credentials",
        ),
        (
            ID1,
            Credentials::Basic(ID2, TOKEN2),
            "account 2 on account 1's path (Basic)",
        ),
        (
            ID1,
            Credentials::XAuth(ID2, TOKEN2),
            "account 2 on account 1's path (X-Auth)",
        ),
    ];
    let mut error: Option<String> = None;
    let mut failures = Vec::new();
    for prefix in PREFIXES {
        for (method, template, body) in ROUTES {
            for (account, auth, case) in refused {
                let path = path_of(prefix, account, template, mid);
                let response = send(engine, method, &path, auth, body);
                let parsed = Json::parse(&response.body).ok();
                let this_error = parsed
                    .as_ref()
                    .and_then(|j| j.get("error"))
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                let has_api_id = parsed
                    .as_ref()
                    .and_then(|j| j.get("api_id"))
                    .and_then(Json::as_str)
                    .is_some_and(|s| !s.is_empty());
                let expected_error = error.get_or_insert_with(|| {
                    this_error
                        .clone()
                        .unwrap_or_else(|| "<an error string>".into())
                });
                let challenge_ok = prefix != "/v1/Account"
                    || response
                        .header("WWW-Authenticate")
                        .is_some_and(|v| v.to_ascii_lowercase().starts_with("basic"));
                if response.status != 401
                    || this_error.as_deref() != Some(expected_error.as_str())
                    || !has_api_id
                    || !challenge_ok
                {
                    failures.push(format!(
                        "{case}: {method} {path} answered (expected 401 with error {expected_error:?}, \
                         an api_id{}):\n{response}",
                        if prefix == "/v1/Account" {
                            " and WWW-Authenticate: Basic"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} refused requests were answered wrongly:\n\n{}",
        failures.len(),
        PREFIXES.len() * ROUTES.len() * refused.len(),
        failures.join("\n\n")
    );
    assert_untouched(&room);

    // Account 2's own valid credentials on its own path: account 1's room does not exist
    // there. Both schemes on both prefixes.
    let mut failures = Vec::new();
    for prefix in PREFIXES {
        for auth in [
            Credentials::Basic(ID2, TOKEN2),
            Credentials::XAuth(ID2, TOKEN2),
        ] {
            for (method, template, body) in ROUTES {
                let path = path_of(prefix, ID2, template, mid);
                let response = send(engine, method, &path, auth, body);
                let ok = match (method, template) {
                    ("GET", "Conference/") => {
                        response.status == 200 && conferences(&response).is_empty()
                    }
                    // Hanging up all of account 2's rooms: none, and never account 1's.
                    ("DELETE", "Conference/") => response.status == 204 && response.body.is_empty(),
                    _ => {
                        response.status == 404
                            && Json::parse(&response.body).ok().is_some_and(|j| {
                                j.get("error").and_then(Json::as_str)
                                    == Some("conference not found")
                                    && j.get("api_id").and_then(Json::as_str).is_some()
                            })
                    }
                };
                if !ok {
                    failures.push(format!(
                        "account 2 [{auth:?}] {method} {path} (expected 404 conference not found; \
                         200 [] for the list; 204 for hang up all):\n{response}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} requests of account 2 reached or revealed account 1's room:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_untouched(&room);
}

#[test]
fn both_auth_schemes_are_accepted_on_both_prefixes() {
    let room = live_room();
    let engine = &room.engine;
    let schemes = |id, token| {
        [
            ("Basic", Credentials::Basic(id, token)),
            ("X-Auth", Credentials::XAuth(id, token)),
        ]
    };
    for prefix in PREFIXES {
        for (scheme, auth) in schemes(ID1, TOKEN1) {
            let path = format!("{prefix}/{ID1}/Conference/");
            let response = send(engine, "GET", &path, auth, None);
            assert_eq!(response.status, 200, "{scheme} on {path}:\n{response}");
            assert_eq!(conferences(&response), [ROOM], "{scheme} on {path}");

            let path = format!("{prefix}/{ID1}/Conference/{ROOM}/");
            let response = send(engine, "GET", &path, auth, None);
            assert_eq!(response.status, 200, "{scheme} on {path}:\n{response}");
            assert_eq!(member_ids(&response.json()), room.ids, "{scheme} on {path}");
        }
        for (scheme, auth) in schemes(ID2, TOKEN2) {
            let path = format!("{prefix}/{ID2}/Conference/");
            let response = send(engine, "GET", &path, auth, None);
            assert_eq!(response.status, 200, "{scheme} on {path}:\n{response}");
            assert!(
                conferences(&response).is_empty(),
                "account 2 must not see account 1's room ({scheme} on {path}):\n{response}"
            );
        }
    }

    // API.md §0 and §3: the Fern SDK's extra `Authorization: Bearer` is ignored when the
    // X-Auth headers are valid, and X-Auth wins over a Basic header when both are present.
    let path = format!("/api/v1/Account/{ID1}/Conference/");
    for (what, extra) in [
        ("X-Auth plus Bearer", "Bearer some-fern-token"),
        (
            "X-Auth plus a wrong Basic",
            "Basic TUFYWFhYWFhYWFhYWFhYWFhYWDE6d3Jvbmc=",
        ),
    ] {
        let response = http_request(
            engine.http,
            "GET",
            &path,
            Credentials::XAuth(ID1, TOKEN1),
            &[("Authorization", extra)],
            None,
        )
        .expect("GET");
        assert_eq!(response.status, 200, "{what}:\n{response}");
        assert_eq!(conferences(&response), [ROOM], "{what}");
    }
    assert_untouched(&room);
}
