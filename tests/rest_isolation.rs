//! Authentication and account isolation of the REST API (API.md §2, §3, §4) against a live
//! engine with two accounts, over raw HTTP: every route under both prefixes refuses missing,
//! wrong, unknown and foreign credentials with one and the same 401, neither account can even
//! see the other's room, and afterwards both rooms are exactly as they were, down to their
//! audio.
//!
//! Both accounts own a live room: the engine runs on a config file in which account 2 claims
//! the dialled numbers matching `^acct2-`, so callers of `sip:acct2-room@…` land in account
//! 2's room and everybody else (`sip:isoroom@…`) in account 1's, the first account.

mod common;

use std::time::Duration;

use common::json::Json;
use common::rest::{http_request, Credentials, HttpResponse};
use common::{
    assert_hears, steady_window, toml_account, wait_until, Call, Engine, EngineOptions, Source,
};

const ID1: &str = "MATEST00000000000001";
const TOKEN1: &str = "tok1";
const ID2: &str = "MATEST00000000000002";
const TOKEN2: &str = "tok2";
const UNKNOWN_ID: &str = "MATEST00000000000009";
/// Account 1's room: any name its number pattern-less first account gets by default.
const ROOM1: &str = "isoroom";
/// Account 2's room: the name matches its `numbers = ["^acct2-"]`.
const ROOM2: &str = "acct2-room";
/// The tones of the two callers of each room.
const TONES1: [f64; 2] = [440.0, 1000.0];
const TONES2: [f64; 2] = [700.0, 1300.0];

const PREFIXES: [&str; 2] = ["/api/v1/Account", "/v1/Account"];

/// The 16 routes of API.md §4, relative to `{prefix}/{auth_id}/`, with a body that would be
/// valid for the route (so no 400 can stand in for the expected answer). `{room}` and `{mid}`
/// are filled in with the room the path names and one of its member ids.
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

/// One account's live room: its two callers and their member ids (sorted).
struct LiveRoom {
    account: &'static str,
    token: &'static str,
    name: &'static str,
    tones: [f64; 2],
    a: Call,
    b: Call,
    ids: Vec<String>,
}

struct Rooms {
    engine: Engine,
    one: LiveRoom,
    two: LiveRoom,
}

/// The engine's configuration: account 1 first (and so the default), account 2 claiming the
/// numbers that start with `acct2-`.
fn config() -> String {
    [
        toml_account(ID1, TOKEN1, &[], &[]),
        toml_account(ID2, TOKEN2, &["^acct2-"], &[]),
    ]
    .join("\n")
}

/// An engine with both accounts, account 1's room with A (440 Hz) and B (1000 Hz) and account
/// 2's room with A (700 Hz) and B (1300 Hz); each account lists exactly its own room.
fn live_rooms() -> Rooms {
    let engine = Engine::start_with_config(&config(), EngineOptions::default());
    let join = |account, token, name, tones: [f64; 2]| {
        let a = Call::dial(engine.sip, name, Source::tone(tones[0]));
        let b = Call::dial(engine.sip, name, Source::tone(tones[1]));
        let room = get_room(&engine, account, token, name);
        let ids = member_ids(&room);
        assert_eq!(ids.len(), 2, "{room}");
        LiveRoom {
            account,
            token,
            name,
            tones,
            a,
            b,
            ids,
        }
    };
    let one = join(ID1, TOKEN1, ROOM1, TONES1);
    let two = join(ID2, TOKEN2, ROOM2, TONES2);
    for room in [&one, &two] {
        assert_eq!(
            list(
                &engine,
                room.account,
                Credentials::Basic(room.account, room.token)
            ),
            [room.name],
            "{} must list exactly its own room (is the call routed by number pattern?)\n{}",
            room.account,
            engine.logs()
        );
    }
    Rooms { engine, one, two }
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

fn get_room(engine: &Engine, account: &str, token: &str, room: &str) -> Json {
    let path = format!("/v1/Account/{account}/Conference/{room}/");
    let response = send(
        engine,
        "GET",
        &path,
        Credentials::Basic(account, token),
        None,
    );
    assert_eq!(response.status, 200, "GET {path}:\n{response}");
    response.json()
}

/// `GET {prefix}/{account}/Conference/` with `auth`: the room names, sorted.
fn list(engine: &Engine, account: &str, auth: Credentials<'_>) -> Vec<String> {
    let path = format!("/v1/Account/{account}/Conference/");
    let response = send(engine, "GET", &path, auth, None);
    assert_eq!(response.status, 200, "GET {path}:\n{response}");
    let mut rooms = conferences(&response);
    rooms.sort();
    rooms
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

fn path_of(prefix: &str, account: &str, template: &str, room: &str, mid: &str) -> String {
    format!(
        "{prefix}/{account}/{}",
        template.replace("{room}", room).replace("{mid}", mid)
    )
}

/// These rooms are as they were: the same two members, neither muted nor deaf, nobody hung
/// up, and in each room A and B hear each other and no other tone (neither their own nor the
/// other room's).
fn assert_untouched(engine: &Engine, rooms: &[&LiveRoom]) {
    for room in rooms {
        let now = get_room(engine, room.account, room.token, room.name);
        assert_eq!(member_ids(&now), room.ids, "{} {now}", room.name);
        assert_eq!(
            now.get("conference_member_count").and_then(Json::as_str),
            Some("2"),
            "{} {now}",
            room.name
        );
        for m in now
            .get("members")
            .and_then(Json::as_array)
            .unwrap_or_default()
        {
            assert_eq!(m.get("muted"), Some(&Json::Bool(false)), "{m}");
            assert_eq!(m.get("deaf"), Some(&Json::Bool(false)), "{m}");
        }
        assert!(
            room.a.bye_received().is_none(),
            "A of {} was hung up",
            room.name
        );
        assert!(
            room.b.bye_received().is_none(),
            "B of {} was hung up",
            room.name
        );
    }
    let window = steady_window(Duration::from_millis(300), Duration::from_millis(1500));
    let all_tones: Vec<f64> = TONES1.iter().chain(&TONES2).copied().collect();
    let others =
        |heard: f64| -> Vec<f64> { all_tones.iter().copied().filter(|&f| f != heard).collect() };
    for room in rooms {
        let [tone_a, tone_b] = room.tones;
        let label = |who| format!("{who} of {} at the end", room.name);
        assert_hears(&label("A"), &room.a, window, &[tone_b], &others(tone_b));
        assert_hears(&label("B"), &room.b, window, &[tone_a], &others(tone_a));
    }
}

/// `account` hangs up all its rooms (`DELETE …/Conference/`, API.md §5.4): its room's callers
/// get BYEs and its list empties, while `survivor` (the other account's room) is untouched.
fn hang_up_all(engine: &Engine, gone: &LiveRoom, survivor: &LiveRoom) {
    let path = format!("/api/v1/Account/{}/Conference/", gone.account);
    let response = send(
        engine,
        "DELETE",
        &path,
        Credentials::XAuth(gone.account, gone.token),
        None,
    );
    assert_eq!(response.status, 204, "DELETE {path}:\n{response}");
    assert!(
        wait_until(Duration::from_secs(5), || gone.a.bye_received().is_some()
            && gone.b.bye_received().is_some()),
        "the callers of {} were not hung up\n{}",
        gone.name,
        engine.logs()
    );
    // The room goes once its calls have ended, which may be just after the BYEs.
    let gone_auth = Credentials::Basic(gone.account, gone.token);
    assert!(
        wait_until(Duration::from_secs(5), || list(
            engine,
            gone.account,
            gone_auth
        )
        .is_empty()),
        "{} still lists rooms 5 s after hanging up all\n{}",
        gone.account,
        engine.logs()
    );
    assert_eq!(
        list(
            engine,
            survivor.account,
            Credentials::Basic(survivor.account, survivor.token)
        ),
        [survivor.name],
        "{} hanging up all its rooms touched {}'s",
        gone.account,
        survivor.account
    );
    assert_untouched(engine, &[survivor]);
}

#[test]
fn every_route_refuses_bad_or_foreign_credentials_and_leaves_the_rooms_untouched() {
    let rooms = live_rooms();
    let engine = &rooms.engine;
    // The room a path names: account 2's on account 2's paths, else account 1's.
    let target = |account: &str| {
        let room = if account == ID2 {
            &rooms.two
        } else {
            &rooms.one
        };
        (room.name, room.ids[0].as_str())
    };

    // (path account, credentials, what the case is)
    let refused: [(&str, Credentials<'_>, &str); 16] = [
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
        (
            ID1,
            Credentials::Basic(ID1, TOKEN2),
            "account 1's id with account 2's token (Basic)",
        ),
        (ID2, Credentials::None, "no credentials on account 2's path"),
        (
            ID2,
            Credentials::XAuth(ID2, TOKEN1),
            "account 2's id with account 1's token (X-Auth)",
        ),
        (
            ID2,
            Credentials::Basic(ID1, TOKEN1),
            "account 1 on account 2's path (Basic)",
        ),
        (
            ID2,
            Credentials::XAuth(ID1, TOKEN1),
            "account 1 on account 2's path (X-Auth)",
        ),
        (
            ID2,
            Credentials::Basic(ID2, "wrong"),
            "wrong token for account 2 (Basic)",
        ),
    ];
    let mut error: Option<String> = None;
    let mut failures = Vec::new();
    for prefix in PREFIXES {
        for (method, template, body) in ROUTES {
            for (account, auth, case) in refused {
                let (room, mid) = target(account);
                let path = path_of(prefix, account, template, room, mid);
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
    assert_untouched(engine, &[&rooms.one, &rooms.two]);

    // Each account's own valid credentials on its own path, naming the other account's room
    // and one of its members: that room does not exist there. Both schemes on both prefixes.
    // Hanging up all of an account's rooms (`DELETE Conference/`) would rightly end its own
    // room, so it is checked last, by `hang_up_all`.
    let mut failures = Vec::new();
    for (own, foreign) in [(&rooms.two, &rooms.one), (&rooms.one, &rooms.two)] {
        for prefix in PREFIXES {
            for auth in [
                Credentials::Basic(own.account, own.token),
                Credentials::XAuth(own.account, own.token),
            ] {
                for (method, template, body) in ROUTES {
                    if (method, template) == ("DELETE", "Conference/") {
                        continue;
                    }
                    let path =
                        path_of(prefix, own.account, template, foreign.name, &foreign.ids[0]);
                    let response = send(engine, method, &path, auth, body);
                    let ok = if (method, template) == ("GET", "Conference/") {
                        response.status == 200 && conferences(&response) == [own.name]
                    } else {
                        response.status == 404
                            && Json::parse(&response.body).ok().is_some_and(|j| {
                                j.get("error").and_then(Json::as_str)
                                    == Some("conference not found")
                                    && j.get("api_id").and_then(Json::as_str).is_some()
                            })
                    };
                    if !ok {
                        failures.push(format!(
                            "{} [{auth:?}] {method} {path} (expected 404 conference not found; \
                             200 [{:?}] for the list):\n{response}",
                            own.account, own.name
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} requests of one account reached or revealed the other's room:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_untouched(engine, &[&rooms.one, &rooms.two]);

    // Account 2 hanging up all its rooms ends its own room only.
    hang_up_all(engine, &rooms.two, &rooms.one);
}

#[test]
fn both_auth_schemes_are_accepted_on_both_prefixes() {
    let rooms = live_rooms();
    let engine = &rooms.engine;
    let schemes = |id, token| {
        [
            ("Basic", Credentials::Basic(id, token)),
            ("X-Auth", Credentials::XAuth(id, token)),
        ]
    };
    for room in [&rooms.one, &rooms.two] {
        for prefix in PREFIXES {
            for (scheme, auth) in schemes(room.account, room.token) {
                let path = format!("{prefix}/{}/Conference/", room.account);
                let response = send(engine, "GET", &path, auth, None);
                assert_eq!(response.status, 200, "{scheme} on {path}:\n{response}");
                assert_eq!(
                    conferences(&response),
                    [room.name],
                    "{} must see its own room and only it ({scheme} on {path})",
                    room.account
                );

                let path = format!("{prefix}/{}/Conference/{}/", room.account, room.name);
                let response = send(engine, "GET", &path, auth, None);
                assert_eq!(response.status, 200, "{scheme} on {path}:\n{response}");
                assert_eq!(member_ids(&response.json()), room.ids, "{scheme} on {path}");
            }
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
        assert_eq!(conferences(&response), [ROOM1], "{what}");
    }
    assert_untouched(engine, &[&rooms.one, &rooms.two]);

    // Account 1 hanging up all its rooms ends its own room only.
    hang_up_all(engine, &rooms.one, &rooms.two);
}
