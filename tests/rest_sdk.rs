//! The REST API end to end through the official SDKs: a real engine, real SIP calls from the
//! test user agent, and plivo-python / vobiz-python (installed by `scripts/bootstrap.sh` in
//! `target/sdk-venv`) driven by `tests/sdk/*_driver.py`. Every control is checked by what the
//! callers actually hear, and every call the engine ends by the BYE the caller receives.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::audio::{rms_db, Expectation, Tone, SAMPLE_RATE};
use common::json::Json;
use common::rest::{http_request, wav_bytes, Credentials, FileServer, Sdk, SdkReply};
use common::{assert_hears, steady_window, wait_until, Call, Engine, EngineOptions, Source};

/// plivo-python insists on 20 characters starting with MA or SA.
const PLIVO_ID: &str = "MATEST00000000000001";
const PLIVO_TOKEN: &str = "tok1";
/// vobiz-python takes any id; this one has Vobiz's shape.
const VOBIZ_ID: &str = "MA_VOBIZ0001";
const VOBIZ_TOKEN: &str = "tokv";

const SETTLE: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_millis(1500);
const BYE_TIMEOUT: Duration = Duration::from_secs(5);

fn engine_for(id: &str, token: &str) -> Engine {
    Engine::start_with_accounts(&[(id, token)], EngineOptions::default())
}

/// The member ids of a conference object, by the caller's user (`from`).
fn ids_by_caller(conference: &Json) -> BTreeMap<String, String> {
    members(conference)
        .iter()
        .map(|m| {
            (
                field_str(m, "from").to_owned(),
                field_str(m, "member_id").to_owned(),
            )
        })
        .collect()
}

fn members(conference: &Json) -> &[Json] {
    conference
        .get("members")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no members array in {conference}"))
}

fn field_str<'a>(object: &'a Json, key: &str) -> &'a str {
    object
        .get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("{key:?} is not a string in {object}"))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The member id of `call` in `conference`.
fn id_of(conference: &Json, call: &Call) -> String {
    ids_by_caller(conference)
        .remove(&call.ua.user)
        .unwrap_or_else(|| panic!("{} is not a member of {conference}", call.ua.user))
}

/// API.md §5.2: exactly the documented keys, numbers as strings, flags as booleans.
fn assert_conference_object(conference: &Json, name: &str, count: usize) {
    let mut keys = conference.keys();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "api_id",
            "conference_member_count",
            "conference_name",
            "conference_run_time",
            "members"
        ],
        "conference object keys: {conference}"
    );
    assert_eq!(field_str(conference, "conference_name"), name);
    assert_eq!(
        field_str(conference, "conference_member_count"),
        count.to_string(),
        "{conference}"
    );
    assert!(is_digits(field_str(conference, "conference_run_time")));
    let members = members(conference);
    assert_eq!(members.len(), count, "{conference}");
    let mut uuids = Vec::new();
    for m in members {
        let mut keys = m.keys();
        keys.sort_unstable();
        assert_eq!(
            keys,
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
            ],
            "member keys: {m}"
        );
        assert!(
            is_digits(field_str(m, "member_id")),
            "member_id is a string of digits: {m}"
        );
        assert!(is_digits(field_str(m, "join_time")), "join_time: {m}");
        assert_eq!(field_str(m, "direction"), "inbound", "{m}");
        field_str(m, "to");
        field_str(m, "caller_name");
        uuids.push(field_str(m, "call_uuid").to_owned());
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(
        uuids.len(),
        count,
        "every member has its own call_uuid: {conference}"
    );
}

fn flags_of(conference: &Json, member_id: &str) -> (bool, bool) {
    let m = members(conference)
        .iter()
        .find(|m| field_str(m, "member_id") == member_id)
        .unwrap_or_else(|| panic!("member {member_id} not in {conference}"));
    let flag = |k| {
        m.get(k)
            .and_then(Json::as_bool)
            .unwrap_or_else(|| panic!("{k} is not a boolean in {m}"))
    };
    (flag("muted"), flag("deaf"))
}

/// A 202 member action (API.md §4 rows 6, 7, 9, 11, 13): message, `member_id` as an array of
/// strings echoing the request, and an `api_id`.
fn assert_accepted(reply: SdkReply, what: &str, message: &str, ids: &[&str]) {
    assert_eq!(reply.status, Some(202), "{what}: {}", reply.raw);
    let raw = reply.raw.clone();
    let body = reply.expect_ok(what);
    assert_eq!(
        body.get("message").and_then(Json::as_str),
        Some(message),
        "{what}: {raw}"
    );
    assert_eq!(
        body.get("member_id").and_then(Json::as_str_vec),
        Some(ids.iter().map(|s| s.to_string()).collect()),
        "{what}: member_id must be an array of strings echoing the request: {raw}"
    );
    assert!(
        body.get("api_id")
            .and_then(Json::as_str)
            .is_some_and(|s| !s.is_empty()),
        "{what}: api_id: {raw}"
    );
}

/// A DELETE answered 204 with no body, which the SDKs return as None.
fn assert_no_content(reply: SdkReply, what: &str) {
    assert_eq!(reply.status, Some(204), "{what}: {}", reply.raw);
    let raw = reply.raw.clone();
    assert!(reply.expect_ok(what).is_null(), "{what}: {raw}");
}

/// Neither tone reaches the call (below -50 dBFS). Packets may or may not flow: the engine
/// may send silence or nothing.
fn assert_hears_nothing(label: &str, call: &Call, window: (Instant, Instant), tones: &[f64]) {
    let audio = call.media.audio_between(window.0, window.1);
    if let Err(e) = Expectation::new(&[], tones).check(&audio) {
        panic!("{label} (room {}): {e}", call.room);
    }
    eprintln!(
        "{label}: {} packets, overall {:.1} dBFS: hears nothing",
        call.media.packets_between(window.0, window.1).len(),
        rms_db(&audio)
    );
}

fn rms_between(call: &Call, window: (Instant, Instant)) -> f64 {
    rms_db(&call.media.audio_between(window.0, window.1))
}

fn wait_for_bye(call: &Call, label: &str, engine: &Engine) {
    assert!(
        wait_until(BYE_TIMEOUT, || call.bye_received().is_some()),
        "{label} received no BYE within {BYE_TIMEOUT:?}\n{}",
        engine.logs()
    );
}

fn list(sdk: &mut Sdk, plivo: bool) -> Vec<String> {
    let reply = if plivo {
        sdk.conferences("list", &[])
    } else {
        sdk.request("GET", &["Conference"], None)
    };
    assert_eq!(reply.status, Some(200), "list: {}", reply.raw);
    let raw = reply.raw.clone();
    let body = reply.expect_ok("list");
    let mut keys = body.keys();
    keys.sort_unstable();
    assert_eq!(keys, ["api_id", "conferences"], "list keys: {raw}");
    body.get("conferences")
        .and_then(Json::as_str_vec)
        .unwrap_or_else(|| panic!("conferences is not an array of strings: {raw}"))
}

fn plivo_get(sdk: &mut Sdk, room: &str) -> Json {
    let reply = sdk.conferences("get", &[room]);
    assert_eq!(reply.status, Some(200), "get {room}: {}", reply.raw);
    reply.expect_ok("get")
}

fn vobiz_get(sdk: &mut Sdk, room: &str) -> Json {
    let reply = sdk.request("GET", &["Conference", room], None);
    assert_eq!(reply.status, Some(200), "get {room}: {}", reply.raw);
    reply.expect_ok("get")
}

/// A WAV of a steady tone at the test level, long enough to outlast the checks.
fn tone_wav(freq_hz: f64, seconds: u32) -> Vec<u8> {
    let tone = Tone::new(freq_hz, 0.3);
    let samples: Vec<i16> = (0..u64::from(SAMPLE_RATE * seconds))
        .map(|n| tone.sample(n))
        .collect();
    wav_bytes(SAMPLE_RATE, &samples)
}

#[test]
fn plivo_sdk_lists_retrieves_and_controls_a_live_room() {
    assert_eq!(PLIVO_ID.len(), 20);
    let engine = engine_for(PLIVO_ID, PLIVO_TOKEN);
    let a = Call::dial(engine.sip, "sdkroom", Source::tone(440.0));
    let b = Call::dial(engine.sip, "sdkroom", Source::tone(1000.0));
    let c = Call::dial(engine.sip, "sdkroom", Source::Silence);
    let mut sdk = Sdk::plivo(engine.http, PLIVO_ID, PLIVO_TOKEN);

    assert_eq!(list(&mut sdk, true), ["sdkroom"]);
    let room = plivo_get(&mut sdk, "sdkroom");
    assert_conference_object(&room, "sdkroom", 3);
    let (ida, idb, idc) = (id_of(&room, &a), id_of(&room, &b), id_of(&room, &c));
    for id in [&ida, &idb, &idc] {
        assert_eq!(flags_of(&room, id), (false, false), "{room}");
    }
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("C before any control", &c, window, &[440.0, 1000.0], &[]);

    // Mute A: the others stop hearing A; A still hears the room (API.md §11).
    assert_accepted(
        sdk.conferences("member_mute", &["sdkroom", &ida]),
        "mute A",
        "muted",
        &[&ida],
    );
    assert_eq!(
        flags_of(&plivo_get(&mut sdk, "sdkroom"), &ida),
        (true, false)
    );
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("C while A is muted", &c, window, &[1000.0], &[440.0]);
    assert_hears("B while A is muted", &b, window, &[], &[440.0, 1000.0]);
    assert_hears("A while muted", &a, window, &[1000.0], &[440.0]);

    assert_no_content(
        sdk.conferences("member_mute_stop", &["sdkroom", &ida]),
        "unmute A",
    );
    assert_eq!(
        flags_of(&plivo_get(&mut sdk, "sdkroom"), &ida),
        (false, false)
    );
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("C after A's unmute", &c, window, &[440.0, 1000.0], &[]);
    assert_hears("B after A's unmute", &b, window, &[440.0], &[1000.0]);

    // Deaf B: B hears nothing, and is still heard.
    assert_accepted(
        sdk.conferences("member_deaf", &["sdkroom", &idb]),
        "deaf B",
        "deaf",
        &[&idb],
    );
    assert_eq!(
        flags_of(&plivo_get(&mut sdk, "sdkroom"), &idb),
        (false, true)
    );
    let window = steady_window(SETTLE, WINDOW);
    assert_hears_nothing("B while deaf", &b, window, &[440.0, 1000.0]);
    assert_hears("C while B is deaf", &c, window, &[440.0, 1000.0], &[]);
    assert_hears("A while B is deaf", &a, window, &[1000.0], &[440.0]);

    assert_no_content(
        sdk.conferences("member_deaf_stop", &["sdkroom", &idb]),
        "undeaf B",
    );
    assert_eq!(
        flags_of(&plivo_get(&mut sdk, "sdkroom"), &idb),
        (false, false)
    );
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("B after undeaf", &b, window, &[440.0], &[1000.0]);

    // Member play: only C hears the file (API.md §11: a private whisper).
    let files = FileServer::serve("audio/wav", tone_wav(700.0, 12));
    let url = files.url("tone700.wav");
    assert_accepted(
        sdk.conferences("member_play", &["sdkroom", &idc, &url]),
        "play to C",
        "play queued into conference",
        &[&idc],
    );
    assert!(files.hits() >= 1, "the engine never fetched {url}");
    let window = steady_window(Duration::from_millis(300), WINDOW);
    assert_hears("C during play", &c, window, &[700.0, 440.0, 1000.0], &[]);
    assert_hears("A during C's play", &a, window, &[1000.0], &[700.0]);
    assert_hears("B during C's play", &b, window, &[440.0], &[700.0]);

    assert_no_content(
        sdk.conferences("member_play_stop", &["sdkroom", &idc]),
        "stop play to C",
    );
    let window = steady_window(Duration::from_millis(300), WINDOW);
    assert_hears("C after stop play", &c, window, &[440.0, 1000.0], &[700.0]);

    // Member speak: everyone falls silent, then only A hears speech.
    for call in [&a, &b, &c] {
        call.media.set_source(Source::Silence);
    }
    let quiet = steady_window(SETTLE, Duration::from_millis(500));
    for (label, call) in [("A", &a), ("B", &b), ("C", &c)] {
        let db = rms_between(call, quiet);
        assert!(db < -50.0, "{label} hears {db:.1} dBFS in a silent room");
    }
    assert_accepted(
        sdk.conferences(
            "member_speak",
            &[
                "sdkroom",
                &ida,
                "This is a test of the Chorus conference engine. Member speak whispers this long \
                 sentence to one member only, and nobody else in the room should hear any of it.",
            ],
        ),
        "speak to A",
        "speak queued into conference",
        &[&ida],
    );
    let window = steady_window(Duration::from_millis(200), WINDOW);
    let (speech_a, speech_b, speech_c) = (
        rms_between(&a, window),
        rms_between(&b, window),
        rms_between(&c, window),
    );
    eprintln!("speech RMS: A {speech_a:.1} dBFS, B {speech_b:.1} dBFS, C {speech_c:.1} dBFS");
    assert!(
        speech_a > -40.0,
        "A should hear speech, got {speech_a:.1} dBFS"
    );
    assert!(
        speech_b < -50.0,
        "B must not hear A's speech, got {speech_b:.1} dBFS"
    );
    assert!(
        speech_c < -50.0,
        "C must not hear A's speech, got {speech_c:.1} dBFS"
    );
    assert_no_content(
        sdk.conferences("member_speak_stop", &["sdkroom", &ida]),
        "stop speak to A",
    );
    let after = steady_window(Duration::from_millis(300), Duration::from_secs(1));
    let rest = rms_between(&a, after);
    assert!(
        rest < -50.0,
        "speech must stop after member_speak_stop, A still hears {rest:.1} dBFS"
    );

    // Kick C: it leaves the room, and with the default flow its call ends.
    assert_accepted(
        sdk.conferences("member_kick", &["sdkroom", &idc]),
        "kick C",
        "kicked",
        &[&idc],
    );
    wait_for_bye(&c, "C after kick", &engine);
    let mut room = Json::Null;
    assert!(
        wait_until(Duration::from_secs(3), || {
            room = plivo_get(&mut sdk, "sdkroom");
            members(&room).len() == 2
        }),
        "C still listed after the kick: {room}"
    );
    assert_conference_object(&room, "sdkroom", 2);
    let remaining = ids_by_caller(&room);
    assert_eq!(
        (remaining.get(&a.ua.user), remaining.get(&b.ua.user)),
        (Some(&ida), Some(&idb)),
        "A and B keep their ids after C's kick: {room}"
    );
    assert!(!remaining.values().any(|id| *id == idc), "{room}");

    assert_no_content(
        sdk.conferences("member_hangup", &["sdkroom", &idb]),
        "hang up B",
    );
    wait_for_bye(&b, "B after member hangup", &engine);
    assert!(a.bye_received().is_none(), "A must stay in the call");

    assert_no_content(sdk.conferences("delete", &["sdkroom"]), "hang up sdkroom");
    wait_for_bye(&a, "A after conference hangup", &engine);
    let mut rooms = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            rooms = list(&mut sdk, true);
            rooms.is_empty()
        }),
        "sdkroom still listed after its hangup: {rooms:?}"
    );
    assert_no_content(sdk.conferences("delete_all", &[]), "hang up all, no rooms");
}

#[test]
fn vobiz_sdk_drives_the_same_routes_with_header_auth() {
    let engine = engine_for(VOBIZ_ID, VOBIZ_TOKEN);
    let a = Call::dial(engine.sip, "vzroom", Source::tone(440.0));
    let b = Call::dial(engine.sip, "vzroom", Source::tone(1000.0));
    let c = Call::dial(engine.sip, "vzroom", Source::Silence);
    let mut sdk = Sdk::vobiz(engine.http, VOBIZ_ID, VOBIZ_TOKEN);

    assert_eq!(list(&mut sdk, false), ["vzroom"]);
    let room = vobiz_get(&mut sdk, "vzroom");
    assert_conference_object(&room, "vzroom", 3);
    let (ida, idb, idc) = (id_of(&room, &a), id_of(&room, &b), id_of(&room, &c));

    let call = |sdk: &mut Sdk, method: &str, id: &str, action: &str| {
        let mut path = vec!["Conference", "vzroom", "Member", id];
        if !action.is_empty() {
            path.push(action);
        }
        sdk.request(method, &path, None)
    };

    assert_accepted(
        call(&mut sdk, "POST", &ida, "Mute"),
        "mute A",
        "muted",
        &[&ida],
    );
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("C while A is muted", &c, window, &[1000.0], &[440.0]);
    assert_no_content(call(&mut sdk, "DELETE", &ida, "Mute"), "unmute A");
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("C after A's unmute", &c, window, &[440.0, 1000.0], &[]);

    // A comma list mutes both talkers; `all` unmutes everyone (API.md §4.1).
    let both = format!("{ida},{idb}");
    assert_accepted(
        call(&mut sdk, "POST", &both, "Mute"),
        "mute A,B",
        "muted",
        &[&ida, &idb],
    );
    let room = vobiz_get(&mut sdk, "vzroom");
    assert_eq!(flags_of(&room, &ida), (true, false), "{room}");
    assert_eq!(flags_of(&room, &idb), (true, false), "{room}");
    assert_eq!(flags_of(&room, &idc), (false, false), "{room}");
    let window = steady_window(SETTLE, WINDOW);
    assert_hears_nothing("C while A and B are muted", &c, window, &[440.0, 1000.0]);
    assert_no_content(call(&mut sdk, "DELETE", "all", "Mute"), "unmute all");
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("C after unmute all", &c, window, &[440.0, 1000.0], &[]);

    // A list with an id that is not in the room applies to the rest and echoes the request
    // as given; `all` is echoed literally (API.md §4.1).
    let unknown = (ida.parse::<u64>().expect("digits") + 1000).to_string();
    let partial = format!("{idb},{unknown}");
    assert_accepted(
        call(&mut sdk, "POST", &partial, "Deaf"),
        "deaf B and an unknown id",
        "deaf",
        &[&idb, &unknown],
    );
    let room = vobiz_get(&mut sdk, "vzroom");
    assert_eq!(flags_of(&room, &idb), (false, true), "{room}");
    assert_eq!(flags_of(&room, &ida), (false, false), "{room}");
    assert_accepted(
        call(&mut sdk, "POST", "all", "Deaf"),
        "deaf all",
        "deaf",
        &["all"],
    );
    let room = vobiz_get(&mut sdk, "vzroom");
    for id in [&ida, &idb, &idc] {
        assert_eq!(flags_of(&room, id), (false, true), "{room}");
    }
    assert_no_content(call(&mut sdk, "DELETE", "all", "Deaf"), "undeaf all");
    let room = vobiz_get(&mut sdk, "vzroom");
    for id in [&ida, &idc] {
        assert_eq!(flags_of(&room, id), (false, false), "{room}");
    }
    assert_no_content(call(&mut sdk, "DELETE", &idb, "Deaf"), "undeaf B");
    assert_eq!(
        flags_of(&vobiz_get(&mut sdk, "vzroom"), &idb),
        (false, false)
    );

    assert_accepted(
        call(&mut sdk, "POST", &idc, "Kick"),
        "kick C",
        "kicked",
        &[&idc],
    );
    wait_for_bye(&c, "C after kick", &engine);
    let mut room = Json::Null;
    assert!(
        wait_until(Duration::from_secs(3), || {
            room = vobiz_get(&mut sdk, "vzroom");
            members(&room).len() == 2
        }),
        "C still listed after the kick: {room}"
    );
    assert_conference_object(&room, "vzroom", 2);

    // Hang up all conferences of the account: every remaining call ends.
    assert_no_content(sdk.request("DELETE", &["Conference"], None), "hang up all");
    wait_for_bye(&a, "A after hang up all", &engine);
    wait_for_bye(&b, "B after hang up all", &engine);
    let mut rooms = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            rooms = list(&mut sdk, false);
            rooms.is_empty()
        }),
        "rooms still listed after hang up all: {rooms:?}"
    );
}

#[test]
fn member_ids_are_global_and_never_reused() {
    let engine = engine_for(PLIVO_ID, PLIVO_TOKEN);
    let mut sdk = Sdk::plivo(engine.http, PLIVO_ID, PLIVO_TOKEN);
    let number = |id: &str| -> u64 {
        assert!(is_digits(id), "member ids are digit strings: {id:?}");
        id.parse().expect("digits parse")
    };
    let mut seen: Vec<String> = Vec::new();
    let mut join = |sdk: &mut Sdk, call: &Call, room: &str| -> String {
        let id = id_of(&plivo_get(sdk, room), call);
        if let Some(last) = seen.last() {
            assert!(
                number(&id) > number(last),
                "a new member's id {id} must exceed every earlier one {seen:?}"
            );
        }
        seen.push(id.clone());
        id
    };

    let mut a = Call::dial(engine.sip, "ids-one", Source::Silence);
    let ida = join(&mut sdk, &a, "ids-one");
    let b = Call::dial(engine.sip, "ids-two", Source::Silence);
    let idb = join(&mut sdk, &b, "ids-two");
    // A third member keeps ids-one alive while A leaves and rejoins.
    let keeper = Call::dial(engine.sip, "ids-one", Source::Silence);
    let idk = join(&mut sdk, &keeper, "ids-one");

    assert_eq!(a.hangup().expect("BYE answered"), 200);
    assert!(
        wait_until(Duration::from_secs(3), || members(&plivo_get(
            &mut sdk, "ids-one"
        ))
        .len()
            == 1),
        "A still listed after hanging up"
    );
    let a2 = Call::dial(engine.sip, "ids-one", Source::Silence);
    let ida2 = join(&mut sdk, &a2, "ids-one");
    assert_ne!(ida, ida2);

    assert_accepted(
        sdk.conferences("member_kick", &["ids-two", &idb]),
        "kick B",
        "kicked",
        &[&idb],
    );
    wait_for_bye(&b, "B after kick", &engine);
    assert!(
        wait_until(Duration::from_secs(3), || !list(&mut sdk, true)
            .contains(&"ids-two".to_string())),
        "ids-two still listed after its only member was kicked"
    );
    let b2 = Call::dial(engine.sip, "ids-two", Source::Silence);
    let idb2 = join(&mut sdk, &b2, "ids-two");
    assert_ne!(idb, idb2);

    // The ids of members that left address nobody, in their old room or any other.
    for (room, old) in [("ids-one", &ida), ("ids-two", &idb), ("ids-one", &idb)] {
        let reply = sdk.conferences("member_mute", &[room, old]);
        assert_eq!(reply.status, Some(404), "{}", reply.raw);
        let message = reply.expect_exception("mute of a departed member", "ResourceNotFoundError");
        assert_eq!(message, "member not found");
    }
    let room = plivo_get(&mut sdk, "ids-one");
    let mut now: Vec<String> = ids_by_caller(&room).into_values().collect();
    now.sort();
    let mut expected = vec![idk, ida2];
    expected.sort();
    assert_eq!(
        now, expected,
        "ids-one holds the keeper and A's second call: {room}"
    );
}

#[test]
fn unknown_room_and_member_are_404_with_error_body() {
    let engine = engine_for(PLIVO_ID, PLIVO_TOKEN);
    let present = Call::dial(engine.sip, "present", Source::Silence);
    let mut plivo = Sdk::plivo(engine.http, PLIVO_ID, PLIVO_TOKEN);
    let mut vobiz = Sdk::vobiz(engine.http, PLIVO_ID, PLIVO_TOKEN);
    let idp = id_of(&plivo_get(&mut plivo, "present"), &present);
    let unknown_member = (idp.parse::<u64>().expect("digits") + 1000).to_string();

    let not_found = |reply: SdkReply, what: &str, error: &str| {
        assert_eq!(reply.status, Some(404), "{what}: {}", reply.raw);
        let message = reply.expect_exception(what, "ResourceNotFoundError");
        assert_eq!(message, error, "{what}: {}", reply.raw);
    };
    not_found(
        plivo.conferences("get", &["absent"]),
        "plivo get absent",
        "conference not found",
    );
    not_found(
        plivo.conferences("delete", &["absent"]),
        "plivo delete absent",
        "conference not found",
    );
    not_found(
        plivo.conferences("member_mute", &["absent", &idp]),
        "plivo mute in absent room",
        "conference not found",
    );
    not_found(
        plivo.conferences("member_kick", &["present", &unknown_member]),
        "plivo kick of an unknown member",
        "member not found",
    );
    not_found(
        plivo.conferences("member_hangup", &["present", &unknown_member]),
        "plivo hangup of an unknown member",
        "member not found",
    );
    not_found(
        vobiz.request("GET", &["Conference", "absent"], None),
        "vobiz get absent",
        "conference not found",
    );
    not_found(
        vobiz.request(
            "POST",
            &["Conference", "present", "Member", &unknown_member, "Deaf"],
            None,
        ),
        "vobiz deaf of an unknown member",
        "member not found",
    );
    not_found(
        vobiz.request(
            "POST",
            &["Conference", "absent", "Member", "all", "Play"],
            Some(Json::obj([(
                "url",
                Json::str("http://127.0.0.1:9/never.wav"),
            )])),
        ),
        "vobiz play in an absent room",
        "conference not found",
    );

    // Raw HTTP: a known route answers with the API error body, a fresh api_id each time.
    let basic = Credentials::Basic(PLIVO_ID, PLIVO_TOKEN);
    let xauth = Credentials::XAuth(PLIVO_ID, PLIVO_TOKEN);
    let mut api_ids = Vec::new();
    for (path, auth, error) in [
        (
            format!("/v1/Account/{PLIVO_ID}/Conference/absent/"),
            basic,
            "conference not found",
        ),
        (
            format!("/api/v1/Account/{PLIVO_ID}/Conference/absent/"),
            xauth,
            "conference not found",
        ),
        (
            format!("/api/v1/Account/{PLIVO_ID}/Conference/absent/"),
            xauth,
            "conference not found",
        ),
    ] {
        let response = http_request(engine.http, "GET", &path, auth, &[], None).expect("GET");
        assert_eq!(response.status, 404, "GET {path}:\n{response}");
        let body = response.json();
        assert_eq!(
            body.get("error").and_then(Json::as_str),
            Some(error),
            "{response}"
        );
        let api_id = body
            .get("api_id")
            .and_then(Json::as_str)
            .unwrap_or_else(|| panic!("no api_id in {response}"));
        assert!(!api_id.is_empty());
        api_ids.push(api_id.to_owned());
    }
    for (method, path) in [
        (
            "POST",
            format!("/v1/Account/{PLIVO_ID}/Conference/present/Member/{unknown_member}/Mute/"),
        ),
        (
            "DELETE",
            format!("/api/v1/Account/{PLIVO_ID}/Conference/present/Member/{unknown_member}/"),
        ),
    ] {
        let response = http_request(engine.http, method, &path, basic, &[], None).expect("request");
        assert_eq!(response.status, 404, "{method} {path}:\n{response}");
        let body = response.json();
        assert_eq!(
            body.get("error").and_then(Json::as_str),
            Some("member not found"),
            "{response}"
        );
        assert!(
            body.get("api_id").and_then(Json::as_str).is_some(),
            "{response}"
        );
    }
    api_ids.sort();
    api_ids.dedup();
    assert_eq!(api_ids.len(), 3, "every response has its own api_id");

    // An unknown route is the gateway's plain 404, not an API error (API.md §4).
    for (method, path) in [
        (
            "POST",
            format!("/api/v1/Account/{PLIVO_ID}/Conference/present/Play/"),
        ),
        (
            "POST",
            format!("/v1/Account/{PLIVO_ID}/Conference/present/Speak/"),
        ),
        ("GET", format!("/v1/Account/{PLIVO_ID}/Nonsense/")),
        (
            "GET",
            format!("/api/v1/Account/{PLIVO_ID}/Conference/present/Member/{idp}/Nonsense/"),
        ),
    ] {
        let response = http_request(
            engine.http,
            method,
            &path,
            xauth,
            &[],
            (method == "POST").then_some(r#"{"url":"http://127.0.0.1:9/x.wav","text":"x"}"#),
        )
        .expect("request");
        assert_eq!(response.status, 404, "{method} {path}:\n{response}");
        assert_eq!(
            response.json(),
            Json::obj([("message", Json::str("Not Found"))]),
            "{method} {path}:\n{response}"
        );
    }

    // None of that touched the live room.
    let room = plivo_get(&mut plivo, "present");
    assert_conference_object(&room, "present", 1);
    assert_eq!(flags_of(&room, &idp), (false, false));
    assert!(present.bye_received().is_none());
}
