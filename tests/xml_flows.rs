//! XML call flows end to end (API.md §7–§10): the engine fetches its documents from a real
//! HTTP app in the test (axum on 127.0.0.1), real calls come in over SIP/RTP from the test
//! user agent, and the test checks what the callers hear and every request the app receives.

mod common;

use std::time::{Duration, Instant};

use common::app::{mp3_tone_bytes, wav_tone_bytes, App, AppRequest};
use common::audio::{level_db, rms_db};
use common::rest::{http_request, Credentials};
use common::{toml_account, wait_until, Call, Engine, EngineOptions, Source};

const ACCOUNT: &str = "MAFLOWS0000000000000";
const TOKEN: &str = "flow-token";
const WAIT: Duration = Duration::from_secs(10);
/// The telephone-event payload type the test UA offers.
const TE: u8 = common::sdp::TELEPHONE_EVENT_PT;

/// An engine whose calls run the app's `/answer` document and report to `/hangup`.
fn engine_for(app: &App) -> Engine {
    for path in ["/cb", "/hangup"] {
        app.respond(path, 200, "text/plain", "ok");
    }
    let toml = format!(
        "[calls]\nanswer_url = '{}'\nhangup_url = '{}'\n{}",
        app.url("/answer"),
        app.url("/hangup"),
        toml_account(ACCOUNT, TOKEN, &[], &[])
    );
    Engine::start_with_config(&toml, EngineOptions::default())
}

/// The account's live rooms, through the REST API.
fn live_rooms(engine: &Engine) -> Vec<String> {
    let reply = http_request(
        engine.http,
        "GET",
        &format!("/v1/Account/{ACCOUNT}/Conference/"),
        Credentials::Basic(ACCOUNT, TOKEN),
        &[],
        None,
    )
    .expect("REST list");
    assert_eq!(reply.status, 200, "{reply}");
    common::parse_json_string_array(&reply.body, "conferences").expect("conferences list")
}

fn dial(engine: &Engine, to: &str, source: Source) -> Call {
    Call::dial(engine.sip, to, source)
}

fn wait_for(app: &App, path: &str, what: &str, pred: impl Fn(&AppRequest) -> bool) -> AppRequest {
    app.wait_request(path, WAIT, pred).unwrap_or_else(|| {
        panic!(
            "no {what} request to {path}; the app saw:\n{:#?}",
            app.requests()
        )
    })
}

fn callbacks(app: &App, action: &str) -> Vec<AppRequest> {
    app.requests_to("/cb")
        .into_iter()
        .filter(|r| r.param("ConferenceAction") == Some(action))
        .collect()
}

fn call_uuid_of(app: &App, call_index: usize) -> String {
    let answers = app.requests_to("/answer");
    answers[call_index]
        .param("CallUUID")
        .expect("CallUUID on the answer request")
        .to_owned()
}

fn conference_doc(attrs: &str, after: &str) -> String {
    format!(
        "<Response><Conference callbackUrl=\"{{base}}/cb\" {attrs}>room</Conference>{after}</Response>"
    )
}

/// Audio received by `call` in the last `len`.
fn recent_audio(call: &Call, len: Duration) -> Vec<i16> {
    let now = Instant::now();
    call.media.audio_between(now - len, now)
}

#[test]
fn speak_is_audible_then_end_of_xml_hangs_up_and_hangup_url_reports_it() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Speak>Welcome to the conference engine. Please hold.</Speak></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let call = dial(&engine, "4155550100", Source::Silence);
    let answer = wait_for(&app, "/answer", "answer", |_| true);
    assert_eq!(answer.method, "POST");
    for (name, value) in [
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
        ("Event", "StartApp"),
        ("To", "4155550100"),
    ] {
        assert_eq!(answer.param(name), Some(value), "{name} in {answer:?}");
    }
    assert!(answer.param("CallUUID").is_some_and(|u| u.len() == 36));
    assert!(answer.param("From").is_some());
    assert!(
        answer.header("X-Plivo-Signature-V2").is_some()
            && answer.header("X-Vobiz-Signature-V3").is_some(),
        "fetches are signed: {answer:?}"
    );
    assert!(
        wait_until(WAIT, || call.bye_received().is_some()),
        "the engine hangs up when the document runs out"
    );
    let bye = call.bye_received().expect("BYE");
    let speech = call.media.audio_between(started, bye);
    let level = rms_db(&speech);
    eprintln!("Speak: {:.1} dBFS over {:?}", level, bye - started);
    assert!(level > -35.0, "the spoken text is audible: {level:.1} dBFS");
    let hangup = wait_for(&app, "/hangup", "hangup", |_| true);
    for (name, value) in [
        ("CallStatus", "completed"),
        ("HangupCause", "NORMAL_CLEARING"),
        ("HangupCauseCode", "4010"),
        ("HangupSource", "Answer XML"),
        ("Event", "Hangup"),
    ] {
        assert_eq!(hangup.param(name), Some(value), "{name} in {hangup:?}");
    }
    assert_eq!(hangup.param("CallUUID"), answer.param("CallUUID"));
    assert!(hangup
        .param("Duration")
        .is_some_and(|d| d.parse::<u64>().is_ok()));
    assert!(hangup.param("AnswerTime").is_some_and(|t| t.len() == 19));
}

#[test]
fn play_of_a_wav_url_and_an_mp3_url_is_heard() {
    let app = App::start();
    app.file("/tone.wav", wav_tone_bytes(600.0, 1.5, 16_000), "audio/wav");
    app.file("/tone.mp3", mp3_tone_bytes(1_400.0, 1.5), "audio/mpeg");
    app.xml(
        "/answer",
        "<Response><Play>{base}/tone.wav</Play><Play>{base}/tone.mp3</Play></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let call = dial(&engine, "play", Source::Silence);
    assert!(wait_until(WAIT, || call.bye_received().is_some()));
    let bye = call.bye_received().expect("BYE");
    let audio = call.media.audio_between(started, bye);
    // The two files play one after the other: the first half has the WAV, the second the MP3.
    let half = audio.len() / 2;
    let (wav, mp3) = (
        level_db(&audio[..half], 600.0),
        level_db(&audio[half..], 1_400.0),
    );
    eprintln!("WAV 600 Hz {wav:.1} dBFS, MP3 1400 Hz {mp3:.1} dBFS");
    assert!(wav > -20.0, "WAV heard: {wav:.1} dBFS");
    assert!(mp3 > -20.0, "MP3 heard: {mp3:.1} dBFS");
    assert_eq!(app.requests_to("/tone.wav").len(), 1);
}

#[test]
fn hangup_on_star_kicks_and_the_flow_resumes_with_the_next_verb() {
    let app = App::start();
    app.xml(
        "/answer",
        &conference_doc("hangupOnStar=\"true\"", "<Redirect>{base}/after</Redirect>"),
    );
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let a = dial(&engine, "room", Source::tone(440.0));
    let b = dial(&engine, "room", Source::tone(1000.0));
    wait_for(&app, "/cb", "second enter", |r| {
        r.param("ConferenceAction") == Some("enter")
            && r.param("ConferenceFirstMember") == Some("false")
    });
    std::thread::sleep(Duration::from_millis(800));
    let heard = level_db(&recent_audio(&a, Duration::from_millis(500)), 1000.0);
    assert!(heard > -20.0, "A hears B in the room: {heard:.1} dBFS");

    a.media.send_dtmf("*", TE);
    let a_uuid = call_uuid_of(&app, 0);
    let after = wait_for(&app, "/after", "redirect after the kick", |r| {
        r.param("CallUUID") == Some(a_uuid.as_str())
    });
    assert_eq!(after.param("Event"), Some("Redirect"));
    assert!(
        wait_until(WAIT, || a.bye_received().is_some()),
        "A's flow hangs up"
    );
    // The exit callback for A, and B still in the room.
    let exit = wait_for(&app, "/cb", "exit", |r| {
        r.param("ConferenceAction") == Some("exit")
    });
    assert_eq!(exit.param("CallUUID"), Some(a_uuid.as_str()));
    assert_eq!(exit.param("ConferenceLastMember"), Some("false"));
    assert!(b.bye_received().is_none(), "B stays");
    assert_eq!(live_rooms(&engine), vec!["room".to_string()]);
}

#[test]
fn rest_kick_resumes_the_flow_and_callbacks_carry_every_parameter() {
    let app = App::start();
    app.xml(
        "/answer",
        &conference_doc(
            "",
            "<Speak>You were removed</Speak><Redirect>{base}/after</Redirect>",
        ),
    );
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let a = dial(&engine, "room", Source::Silence);
    let enter = wait_for(&app, "/cb", "enter", |r| {
        r.param("ConferenceAction") == Some("enter")
    });
    for name in [
        "ConferenceName",
        "ConferenceUUID",
        "ConferenceMemberID",
        "CallUUID",
        "From",
        "To",
        "Direction",
        "CallStatus",
    ] {
        assert!(enter.param(name).is_some(), "{name} missing from {enter:?}");
    }
    assert_eq!(enter.param("Event"), Some("ConferenceEnter"));
    assert_eq!(enter.param("ConferenceFirstMember"), Some("true"));
    assert_eq!(enter.param("CallStatus"), Some("in-progress"));
    let member = enter
        .param("ConferenceMemberID")
        .expect("member id")
        .to_owned();
    let path = format!("/v1/Account/{ACCOUNT}/Conference/room/Member/{member}/Kick/");
    let reply = http_request(
        engine.http,
        "POST",
        &path,
        Credentials::Basic(ACCOUNT, TOKEN),
        &[],
        None,
    )
    .expect("REST kick");
    assert_eq!(reply.status, 202, "{reply}");
    wait_for(&app, "/after", "redirect after the REST kick", |_| true);
    assert!(wait_until(WAIT, || a.bye_received().is_some()));
    let exit = wait_for(&app, "/cb", "exit", |r| {
        r.param("ConferenceAction") == Some("exit")
    });
    assert_eq!(exit.param("ConferenceLastMember"), Some("true"));
    assert_eq!(exit.param("Event"), Some("ConferenceExit"));
    assert_eq!(exit.param("ConferenceMemberID"), Some(member.as_str()));
}

#[test]
fn end_conference_on_exit_kicks_the_others_whose_flows_continue() {
    let app = App::start();
    let moderator = conference_doc("endConferenceOnExit=\"true\"", "");
    let others = conference_doc("", "<Redirect>{base}/after</Redirect>");
    app.xml_sequence("/answer", &[&moderator, &others]);
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let mut m = dial(&engine, "room", Source::tone(440.0));
    let b = dial(&engine, "room", Source::tone(1000.0));
    let c = dial(&engine, "room", Source::Silence);
    assert!(wait_until(WAIT, || callbacks(&app, "enter").len() == 3));
    m.hangup().expect("moderator hangs up");
    let (b_uuid, c_uuid) = (call_uuid_of(&app, 1), call_uuid_of(&app, 2));
    for uuid in [&b_uuid, &c_uuid] {
        wait_for(&app, "/after", "the kicked member's next verb", |r| {
            r.param("CallUUID") == Some(uuid.as_str())
        });
    }
    assert!(wait_until(WAIT, || b.bye_received().is_some()
        && c.bye_received().is_some()));
    assert!(wait_until(WAIT, || live_rooms(&engine).is_empty()));
    // Callbacks of one conference arrive in order: three enters, then three exits, the
    // last of which finds the room empty.
    let actions: Vec<_> = app
        .requests_to("/cb")
        .iter()
        .map(|r| r.param("ConferenceAction").unwrap_or("").to_owned())
        .collect();
    assert_eq!(actions, ["enter", "enter", "enter", "exit", "exit", "exit"]);
    let exits = callbacks(&app, "exit");
    assert_eq!(exits[2].param("ConferenceLastMember"), Some("true"));
}

#[test]
fn wait_sound_plays_until_a_moderator_joins() {
    let app = App::start();
    app.file("/music.wav", wav_tone_bytes(500.0, 1.0, 8_000), "audio/wav");
    app.xml(
        "/wait",
        "<Response><Play>{base}/music.wav</Play></Response>",
    );
    let waiting = conference_doc(
        "startConferenceOnEnter=\"false\" waitSound=\"{base}/wait\"",
        "",
    );
    let moderator = conference_doc("", "");
    app.xml_sequence("/answer", &[&waiting, &waiting, &moderator]);
    let engine = engine_for(&app);
    let a = dial(&engine, "room", Source::Silence);
    let c = dial(&engine, "room", Source::tone(700.0));
    let wait_fetch = wait_for(&app, "/wait", "wait sound", |_| true);
    assert_eq!(wait_fetch.param("ConferenceAction"), Some("waitSound"));
    std::thread::sleep(Duration::from_millis(1500));
    let before = recent_audio(&a, Duration::from_millis(800));
    let (music, other) = (level_db(&before, 500.0), level_db(&before, 700.0));
    eprintln!("waiting: music {music:.1} dBFS, other waiting member {other:.1} dBFS");
    assert!(
        music > -25.0,
        "the waiting member hears the wait sound: {music:.1}"
    );
    assert!(
        other < -45.0,
        "waiting members are not mixed together: {other:.1}"
    );

    let _moderator = dial(&engine, "room", Source::tone(1000.0));
    assert!(wait_until(WAIT, || callbacks(&app, "enter").len() == 3));
    std::thread::sleep(Duration::from_millis(1200));
    let after = recent_audio(&a, Duration::from_millis(800));
    let (music, moderator, other) = (
        level_db(&after, 500.0),
        level_db(&after, 1000.0),
        level_db(&after, 700.0),
    );
    eprintln!("started: music {music:.1}, moderator {moderator:.1}, other {other:.1} dBFS");
    assert!(moderator > -25.0, "the moderator is heard: {moderator:.1}");
    assert!(
        other > -25.0,
        "the other member is heard once started: {other:.1}"
    );
    assert!(music < -40.0, "the wait sound stopped: {music:.1}");
    drop(c);
}

#[test]
fn max_members_refuses_the_extra_member_whose_flow_continues() {
    let app = App::start();
    app.xml(
        "/answer",
        &conference_doc("maxMembers=\"2\"", "<Redirect>{base}/full</Redirect>"),
    );
    app.xml("/full", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let _a = dial(&engine, "room", Source::Silence);
    let _b = dial(&engine, "room", Source::Silence);
    assert!(wait_until(WAIT, || callbacks(&app, "enter").len() == 2));
    let c = dial(&engine, "room", Source::Silence);
    let c_uuid = call_uuid_of(&app, 2);
    wait_for(&app, "/full", "the refused member's next verb", |r| {
        r.param("CallUUID") == Some(c_uuid.as_str())
    });
    assert!(wait_until(WAIT, || c.bye_received().is_some()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        callbacks(&app, "enter").len(),
        2,
        "no enter callback for the refused member"
    );
    assert!(callbacks(&app, "exit").is_empty(), "nor an exit callback");
}

#[test]
fn time_limit_kicks_every_member() {
    let app = App::start();
    app.xml(
        "/answer",
        &conference_doc("timeLimit=\"2\"", "<Redirect>{base}/after</Redirect>"),
    );
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let started = Instant::now();
    let a = dial(&engine, "room", Source::Silence);
    let b = dial(&engine, "room", Source::Silence);
    assert!(wait_until(WAIT, || app.requests_to("/after").len() == 2));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "kicked after the 2 s limit, not {elapsed:?}"
    );
    assert!(wait_until(WAIT, || a.bye_received().is_some()
        && b.bye_received().is_some()));
}

#[test]
fn stay_alone_false_kicks_a_member_left_alone() {
    let app = App::start();
    app.xml(
        "/answer",
        &conference_doc("stayAlone=\"false\"", "<Redirect>{base}/after</Redirect>"),
    );
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    // Alone from the start: out at once (Vobiz behaviour), the flow goes on.
    let a = dial(&engine, "room", Source::Silence);
    wait_for(&app, "/after", "the lone member's next verb", |_| true);
    assert!(wait_until(WAIT, || a.bye_received().is_some()));
}

#[test]
fn digits_match_sends_its_callback_and_the_member_stays() {
    let app = App::start();
    app.xml("/answer", &conference_doc("digitsMatch=\"12,999\"", ""));
    let engine = engine_for(&app);
    let a = dial(&engine, "room", Source::Silence);
    wait_for(&app, "/cb", "enter", |r| {
        r.param("ConferenceAction") == Some("enter")
    });
    a.media.send_dtmf("12", TE);
    let digits = wait_for(&app, "/cb", "digits", |r| {
        r.param("ConferenceAction") == Some("digits")
    });
    assert_eq!(digits.param("ConferenceDigitsMatch"), Some("12"));
    assert_eq!(digits.param("Event"), Some("ConferenceDigitsMatch"));
    assert!(a.bye_received().is_none());
    assert_eq!(live_rooms(&engine), vec!["room".to_string()]);
}

#[test]
fn get_digits_collects_rfc4733_digits_and_posts_them_to_its_action() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><GetDigits action=\"{base}/digits\" numDigits=\"3\" timeout=\"10\"><Speak>Enter your code</Speak></GetDigits><Speak>nothing</Speak></Response>",
    );
    app.xml("/digits", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let a = dial(&engine, "menu", Source::Silence);
    std::thread::sleep(Duration::from_millis(300));
    a.media.send_dtmf("482", TE);
    let posted = wait_for(&app, "/digits", "digits", |_| true);
    assert_eq!(posted.param("Digits"), Some("482"));
    assert!(wait_until(WAIT, || a.bye_received().is_some()));
}

#[test]
fn get_digits_takes_sip_info_digits_too() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><GetDigits action=\"{base}/digits\" timeout=\"10\" finishOnKey=\"#\"/></Response>",
    );
    app.xml("/digits", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let mut a = dial(&engine, "menu", Source::Silence);
    for d in ["7", "3", "#"] {
        let status = a
            .send_info(
                "application/dtmf-relay",
                &format!("Signal={d}\r\nDuration=160\r\n"),
            )
            .expect("INFO");
        assert_eq!(status, 200);
    }
    let posted = wait_for(&app, "/digits", "digits", |_| true);
    assert_eq!(posted.param("Digits"), Some("73"));
}

#[test]
fn bad_documents_fail_only_their_own_call_with_the_documented_cause() {
    let app = App::start();
    let huge = format!(
        "<Response><Speak>{}</Speak></Response>",
        "x".repeat(120 * 1024)
    );
    app.xml_sequence(
        "/answer",
        &[
            "<Response><Bogus/></Response>",
            "this is not xml",
            &huge,
            "<Response><Redirect>{base}/loop</Redirect></Response>",
        ],
    );
    app.xml(
        "/loop",
        "<Response><Redirect>{base}/loop</Redirect></Response>",
    );
    let engine = engine_for(&app);
    for n in 0..4 {
        let outcome = Call::dial_with(
            engine.sip,
            common::ua::CallOptions::new("x", Source::Silence),
        )
        .expect("INVITE transaction");
        match outcome {
            // A bad first document: refused before any answer.
            Err(_) => assert!(n < 3, "call {n} was refused"),
            // A <Redirect> answers the call first (API.md §9.1); the loop then ends it.
            Ok(call) => {
                assert_eq!(n, 3, "call {n} was answered");
                assert!(wait_until(WAIT, || call.bye_received().is_some()));
            }
        }
        let uuid = call_uuid_of(&app, n);
        let hangup = wait_for(&app, "/hangup", "hangup", |r| {
            r.param("CallUUID") == Some(uuid.as_str())
        });
        assert_eq!(
            hangup.param("HangupCauseCode"),
            Some("8011"),
            "call {n}: {hangup:?}"
        );
        assert_eq!(hangup.param("HangupSource"), Some("Error"));
    }
    // A failed fetch (HTTP 500) is its own cause.
    app.status("/answer", 500);
    let refused = Call::dial_with(
        engine.sip,
        common::ua::CallOptions::new("x", Source::Silence),
    )
    .expect("INVITE transaction");
    assert!(refused.is_err());
    let hangup = wait_for(&app, "/hangup", "hangup", |r| {
        r.param("HangupCauseCode") == Some("8001")
    });
    assert_eq!(
        hangup.param("HangupCauseName"),
        Some("Answer URL Fetch Failed")
    );
    assert!(engine.is_ready(), "the engine is unaffected");
}

#[test]
fn wait_with_silence_ends_once_the_caller_falls_silent() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Speak>hello</Speak><Wait length=\"15\" silence=\"true\" minSilence=\"800\"/><Redirect>{base}/after</Redirect></Response>",
    );
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let started = Instant::now();
    let call = dial(&engine, "quiet", Source::tone(440.0));
    std::thread::sleep(Duration::from_secs(3));
    call.media.set_source(Source::Silence);
    let quiet_from = started.elapsed();
    let after = wait_for(&app, "/after", "the verb after the Wait", |_| true);
    let ended = after.at.duration_since(started);
    eprintln!("caller silent from {quiet_from:?}; Wait ended at {ended:?}");
    assert!(
        ended >= quiet_from + Duration::from_millis(700)
            && ended <= quiet_from + Duration::from_millis(2500),
        "the Wait ends about minSilence after the caller falls silent, not at its 15 s length"
    );
}
