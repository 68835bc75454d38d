//! The XML verbs one by one, end to end (API.md §7–§10): `<DTMF>`, `<Hangup>` (scheduled,
//! busy, rejected), `<PreAnswer>`, `<GetDigits>` retries, `<Speak loop>`, `<Redirect
//! method="GET">`, the verbs this engine does not run, and the conference sounds, floor
//! events and callback pacing. Like tests/xml_flows.rs: the real engine binary fetches its
//! documents from an HTTP app in the test, real calls come in from the test user agent, and
//! each test checks what the caller hears and every request the app receives.

mod common;

use std::time::{Duration, Instant};

use common::app::{wav_tone_bytes, App, AppRequest};
use common::audio::{level_db, rms_db};
use common::rest::{http_request, Credentials};
use common::ua::{CallOptions, Refused};
use common::{toml_account, wait_until, Call, Engine, EngineOptions, Source};

const ACCOUNT: &str = "MAVERBS0000000000000";
const TOKEN: &str = "verbs-token";
const WAIT: Duration = Duration::from_secs(10);
/// The telephone-event payload type the test UA offers.
const TE: u8 = common::sdp::TELEPHONE_EVENT_PT;
/// plivoframework's beep (API.md §7.1): 300 ms at 700 Hz, 200 ms apart.
const BEEP_HZ: f64 = 700.0;
/// Samples per 20 ms at the 8 kHz the test media decodes to.
const FRAME: usize = 160;

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

fn dial(engine: &Engine, to: &str, source: Source) -> Call {
    Call::dial(engine.sip, to, source)
}

/// Places a call that the engine is expected to refuse; keeps its UA and media.
fn dial_refused(engine: &Engine, options: CallOptions) -> Refused {
    match Call::dial_keep(engine.sip, options).expect("INVITE transaction") {
        Ok(call) => panic!(
            "the call was answered:\n{}",
            call.invite_response.status_code
        ),
        Err(refused) => refused,
    }
}

fn wait_for(app: &App, path: &str, what: &str, pred: impl Fn(&AppRequest) -> bool) -> AppRequest {
    app.wait_request(path, WAIT, pred).unwrap_or_else(|| {
        panic!(
            "no {what} request to {path}; the app saw:\n{:#?}",
            app.requests()
        )
    })
}

fn call_uuid_of(app: &App, call_index: usize) -> String {
    let answers = app.requests_to("/answer");
    answers[call_index]
        .param("CallUUID")
        .expect("CallUUID on the answer request")
        .to_owned()
}

/// The hangup webhook of the `call_index`-th call (by answer request).
fn hangup_of(app: &App, call_index: usize) -> AppRequest {
    let uuid = call_uuid_of(app, call_index);
    wait_for(app, "/hangup", "hangup", |r| {
        r.param("CallUUID") == Some(uuid.as_str())
    })
}

fn callbacks(app: &App, action: &str) -> Vec<AppRequest> {
    app.requests_to("/cb")
        .into_iter()
        .filter(|r| r.param("ConferenceAction") == Some(action))
        .collect()
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

fn assert_params(request: &AppRequest, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(request.param(name), Some(*value), "{name} in {request:#?}");
    }
}

/// Runs of 20 ms frames in which `freq_hz` is above `threshold_db`, as (first frame, length
/// in frames); a single quiet frame inside a run (a late packet) does not split it, and runs
/// shorter than 60 ms are ignored.
fn tone_bursts(audio: &[i16], freq_hz: f64, threshold_db: f64) -> Vec<(usize, usize)> {
    let on: Vec<bool> = audio
        .chunks(FRAME)
        .map(|f| f.len() == FRAME && level_db(f, freq_hz) > threshold_db)
        .collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &loud) in on.iter().enumerate() {
        if !loud {
            continue;
        }
        match runs.last_mut() {
            Some((start, len)) if i <= *start + *len + 1 => *len = i + 1 - *start,
            _ => runs.push((i, 1)),
        }
    }
    runs.retain(|&(_, len)| len >= 3);
    runs
}

/// Where (sample offset) both tones of a DTMF pair are loudest together in 50 ms windows,
/// and how loud the weaker of the two is there.
fn strongest_pair(audio: &[i16], low: f64, high: f64) -> (usize, f64) {
    const WINDOW: usize = 400;
    const STEP: usize = 80;
    let mut best = (0, f64::NEG_INFINITY);
    let mut start = 0;
    while start + WINDOW <= audio.len() {
        let w = &audio[start..start + WINDOW];
        let level = level_db(w, low).min(level_db(w, high));
        if level > best.1 {
            best = (start, level);
        }
        start += STEP;
    }
    best
}

// 1. <DTMF> ------------------------------------------------------------------------------------

#[test]
fn dtmf_verb_sends_rfc4733_events_to_a_caller_that_offered_telephone_event() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><DTMF>12#</DTMF><Wait length=\"2\"/></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let call = dial(&engine, "dtmf", Source::Silence);
    assert!(
        wait_until(WAIT, || call.bye_received().is_some()),
        "the call ends after the Wait"
    );
    let bye = call.bye_received().expect("BYE");
    let digits = call.media.received_dtmf_digits(TE);
    eprintln!(
        "RFC 4733 digits {digits:?}, call lasted {:?}",
        bye - started
    );
    assert_eq!(digits, "12#", "the digits arrive as telephone-events");
    let events = call.media.received_dtmf(TE);
    assert!(
        events.iter().filter(|e| e.end).count() >= 3,
        "each digit has its end packet: {events:#?}"
    );
    // Not sent twice: no in-band tones besides the events.
    let audio = call.media.audio_between(started, bye);
    let (_, inband) = strongest_pair(&audio, 697.0, 1209.0);
    assert!(
        inband < -35.0,
        "no in-band '1' when telephone-event was negotiated: {inband:.1} dBFS"
    );
    let hangup = hangup_of(&app, 0);
    assert_params(&hangup, &[("HangupCauseCode", "4010")]);
}

#[test]
fn dtmf_verb_plays_inband_tones_to_a_caller_without_telephone_event() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><DTMF>12#</DTMF><Wait length=\"2\"/></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let mut options = CallOptions::new("dtmf", Source::Silence);
    options.telephone_event = false;
    let call = Call::dial_with(engine.sip, options)
        .expect("INVITE transaction")
        .expect("answered");
    assert!(
        call.remote_sdp.telephone_event().is_none(),
        "the engine's answer has no telephone-event: {:?}",
        call.remote_sdp
    );
    assert!(wait_until(WAIT, || call.bye_received().is_some()));
    let bye = call.bye_received().expect("BYE");
    let audio = call.media.audio_between(started, bye);
    let mut last = None;
    for (digit, low, high) in [
        ('1', 697.0, 1209.0),
        ('2', 697.0, 1336.0),
        ('#', 941.0, 1477.0),
    ] {
        let (at, level) = strongest_pair(&audio, low, high);
        eprintln!(
            "'{digit}' ({low}+{high} Hz): {level:.1} dBFS at {} ms",
            at / 8
        );
        assert!(
            level > -22.0,
            "'{digit}' is heard in band as {low}+{high} Hz: {level:.1} dBFS"
        );
        if let Some(previous) = last {
            assert!(at > previous, "'{digit}' comes after the digit before it");
        }
        last = Some(at);
    }
    assert!(
        call.media.received_dtmf(TE).is_empty(),
        "no telephone-events to a caller that did not offer them"
    );
}

// 2. <Hangup schedule> ------------------------------------------------------------------------

#[test]
fn scheduled_hangup_ends_an_answered_call_with_bye_after_its_delay() {
    let app = App::start();
    // The Speak answers the call (Hangup and Wait do not, API.md §9.1); the flow goes on
    // after the schedule is set.
    app.xml(
        "/answer",
        "<Response><Hangup schedule=\"2\"/><Speak>One moment</Speak><Wait length=\"30\"/></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let call = dial(&engine, "sched", Source::Silence);
    assert!(
        wait_until(WAIT, || call.bye_received().is_some()),
        "the scheduled hangup sends BYE"
    );
    let bye = call.bye_received().expect("BYE");
    let after = bye - started;
    eprintln!("BYE {after:?} after the INVITE");
    assert!(
        after >= Duration::from_millis(1800) && after <= Duration::from_secs(4),
        "BYE about 2 s after the schedule, not {after:?}"
    );
    let speech = rms_db(&call.media.audio_between(started, bye));
    assert!(
        speech > -35.0,
        "the verb after the schedule ran: {speech:.1} dBFS"
    );
    let hangup = hangup_of(&app, 0);
    assert_params(
        &hangup,
        &[
            ("HangupCauseCode", "6000"),
            ("CallStatus", "completed"),
            ("Event", "Hangup"),
        ],
    );
}

#[test]
fn scheduled_hangup_before_a_wait_refuses_the_unanswered_call_after_its_delay() {
    let app = App::start();
    // Neither <Hangup> nor <Wait> answers an inbound call (API.md §9.1, plivoframework's
    // NO_ANSWER_ELEMENTS): the call rings through the Wait and the schedule ends it then.
    app.xml(
        "/answer",
        "<Response><Hangup schedule=\"2\"/><Wait length=\"30\"/></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let refused = dial_refused(&engine, CallOptions::new("sched", Source::Silence));
    let after = started.elapsed();
    let status = refused.response.status_code.code();
    eprintln!("final {status} {after:?} after the INVITE");
    assert!(status >= 300, "never answered: {status}");
    assert!(
        after >= Duration::from_millis(1800) && after <= Duration::from_secs(4),
        "ended about 2 s after the schedule, not {after:?}"
    );
    assert!(
        refused
            .ua
            .requests_received()
            .iter()
            .all(|r| r.method != "BYE"),
        "no BYE for a call that was never answered"
    );
    let hangup = hangup_of(&app, 0);
    assert_params(
        &hangup,
        &[("HangupCauseCode", "6000"), ("CallStatus", "completed")],
    );
    assert_eq!(hangup.param("AnswerTime"), Some(""), "{hangup:#?}");
}

#[test]
fn a_ringing_call_gets_no_rtp_before_the_engine_has_sent_sdp() {
    let app = App::start();
    // Rings through the Wait (nothing answers it), then is refused.
    app.xml(
        "/answer",
        "<Response><Wait length=\"2\"/><Hangup/></Response>",
    );
    let engine = engine_for(&app);
    let refused = dial_refused(&engine, CallOptions::new("ringing", Source::Silence));
    let responses = refused.ua.responses_received();
    assert!(
        responses.iter().all(|r| !r.has_sdp),
        "no SDP was sent: {responses:#?}"
    );
    let packets = refused.media.packet_count();
    eprintln!(
        "final {} after ringing; RTP packets received meanwhile: {packets}",
        refused.response.status_code.code()
    );
    // RFC 3261 §13.2.1/RFC 3960: media flows once the answerer has sent its SDP (183 or
    // 200). RTP towards a caller that is still ringing makes phones that play early media
    // drop their local ringback for the engine's silence.
    assert_eq!(
        packets, 0,
        "the engine sent RTP to a ringing caller it never sent SDP to"
    );
    assert_params(&hangup_of(&app, 0), &[("CallStatus", "completed")]);
}

// 3. <Hangup reason> --------------------------------------------------------------------------

#[test]
fn hangup_reason_busy_and_rejected_refuse_the_call_with_486_and_603() {
    let app = App::start();
    app.xml_sequence(
        "/answer",
        &[
            "<Response><Hangup reason=\"busy\"/></Response>",
            "<Response><Hangup reason=\"rejected\"/></Response>",
        ],
    );
    let engine = engine_for(&app);
    for (n, (status, cause)) in [(486, "USER_BUSY"), (603, "CALL_REJECTED")]
        .into_iter()
        .enumerate()
    {
        let refused = dial_refused(&engine, CallOptions::new("refuse", Source::Silence));
        assert_eq!(
            refused.response.status_code.code(),
            status,
            "{}",
            refused.response
        );
        let answered = refused
            .ua
            .responses_received()
            .iter()
            .any(|r| r.cseq_method == "INVITE" && (200..300).contains(&r.status));
        assert!(!answered, "no 2xx before the refusal");
        let hangup = hangup_of(&app, n);
        assert_params(
            &hangup,
            &[
                ("HangupCause", cause),
                ("CallStatus", "completed"),
                ("HangupSource", "Answer XML"),
                ("Duration", "0"),
            ],
        );
        eprintln!(
            "{status}: {cause} code {:?} name {:?}",
            hangup.param("HangupCauseCode"),
            hangup.param("HangupCauseName")
        );
    }
    assert_eq!(
        hangup_of(&app, 0).param("HangupCauseCode"),
        Some("3010"),
        "busy is Vobiz 3010 (API.md §9.2)"
    );
}

// 4. <PreAnswer> ------------------------------------------------------------------------------

#[test]
fn pre_answer_sends_183_with_sdp_and_early_media_and_never_answers() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><PreAnswer><Speak>Please hold while we try to connect you</Speak></PreAnswer><Hangup/></Response>",
    );
    let engine = engine_for(&app);
    let started = Instant::now();
    let refused = dial_refused(&engine, CallOptions::new("early", Source::Silence));
    let responses = refused.ua.responses_received();
    for r in &responses {
        eprintln!(
            "{:>5} ms: {} {} (SDP: {})",
            (r.at - started).as_millis(),
            r.status,
            r.cseq_method,
            r.has_sdp
        );
    }
    let progress = responses
        .iter()
        .find(|r| r.status == 183)
        .unwrap_or_else(|| panic!("no 183 Session Progress: {responses:#?}"));
    assert!(
        progress.has_sdp,
        "the 183 carries SDP: {:?}",
        progress.response
    );
    assert!(
        !responses
            .iter()
            .any(|r| r.cseq_method == "INVITE" && (200..300).contains(&r.status)),
        "the call is never answered"
    );
    let final_status = refused.response.status_code.code();
    assert!(final_status >= 300, "final answer {final_status}");
    let last = responses
        .iter()
        .rfind(|r| r.status >= 300)
        .expect("the final response is logged");
    let early = refused.media.audio_between(progress.at, last.at);
    let level = rms_db(&early);
    eprintln!(
        "early media: {level:.1} dBFS over {:?}, final {final_status}",
        last.at - progress.at
    );
    assert!(
        level > -35.0,
        "the spoken prompt is heard as early media: {level:.1} dBFS"
    );
    assert!(
        refused.media.audio_between(started, progress.at).is_empty()
            || rms_db(&refused.media.audio_between(started, progress.at)) < -50.0,
        "no audio before the 183"
    );
    let hangup = hangup_of(&app, 0);
    assert_params(&hangup, &[("CallStatus", "completed"), ("Duration", "0")]);
    assert_eq!(hangup.param("AnswerTime"), Some(""), "{hangup:#?}");
}

// 5. enterSound / exitSound ---------------------------------------------------------------------

#[test]
fn enter_sound_beep_2_and_exit_sound_beep_1_are_heard_by_the_other_member() {
    let app = App::start();
    let plain = conference_doc("", "");
    let beeper = conference_doc("enterSound=\"beep:2\" exitSound=\"beep:1\"", "");
    app.xml_sequence("/answer", &[&plain, &beeper]);
    let engine = engine_for(&app);
    let a = dial(&engine, "room", Source::Silence);
    wait_for(&app, "/cb", "first enter", |r| {
        r.param("ConferenceAction") == Some("enter")
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = recent_audio(&a, Duration::from_millis(400));
    assert!(
        level_db(&before, BEEP_HZ) < -40.0,
        "no beep before the second member"
    );

    let joining = Instant::now();
    let mut b = dial(&engine, "room", Source::Silence);
    wait_for(&app, "/cb", "second enter", |r| {
        r.param("ConferenceAction") == Some("enter")
            && r.param("ConferenceFirstMember") == Some("false")
    });
    std::thread::sleep(Duration::from_millis(2000));
    let entered = a.media.audio_between(joining, Instant::now());
    let bursts = tone_bursts(&entered, BEEP_HZ, -25.0);
    eprintln!("enter: 700 Hz bursts (frame, frames) {bursts:?}");
    assert_eq!(bursts.len(), 2, "two beeps when B enters: {bursts:?}");
    for (_, len) in &bursts {
        assert!(
            (12..=19).contains(len),
            "each beep lasts about 300 ms: {bursts:?}"
        );
    }
    let gap = bursts[1].0 - (bursts[0].0 + bursts[0].1);
    assert!(
        (7..=14).contains(&gap),
        "about 200 ms between the beeps: {bursts:?}"
    );

    let leaving = Instant::now();
    b.hangup().expect("B hangs up");
    wait_for(&app, "/cb", "exit", |r| {
        r.param("ConferenceAction") == Some("exit")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let exited = a.media.audio_between(leaving, Instant::now());
    let bursts = tone_bursts(&exited, BEEP_HZ, -25.0);
    eprintln!("exit: 700 Hz bursts {bursts:?}");
    assert_eq!(bursts.len(), 1, "one beep when B leaves: {bursts:?}");
    assert!(a.bye_received().is_none(), "A stays");
}

// 6. floorEvent -------------------------------------------------------------------------------

#[test]
fn floor_event_reports_the_member_who_starts_talking() {
    let app = App::start();
    app.xml("/answer", &conference_doc("floorEvent=\"true\"", ""));
    let engine = engine_for(&app);
    let _a = dial(&engine, "room", Source::Silence);
    let a_uuid = call_uuid_of(&app, 0);
    wait_for(&app, "/cb", "first enter", |r| {
        r.param("ConferenceAction") == Some("enter")
    });
    // The first member gets the floor on entering (API.md §7.2 step 3).
    let first_floor = wait_for(&app, "/cb", "first member's floor", |r| {
        r.param("ConferenceAction") == Some("floor")
    });
    assert_eq!(first_floor.param("CallUUID"), Some(a_uuid.as_str()));

    let _b = dial(&engine, "room", Source::tone(1000.0));
    let b_uuid = call_uuid_of(&app, 1);
    let b_enter = wait_for(&app, "/cb", "second enter", |r| {
        r.param("ConferenceAction") == Some("enter") && r.param("CallUUID") == Some(b_uuid.as_str())
    });
    let floor = wait_for(&app, "/cb", "floor for the talker", |r| {
        r.param("ConferenceAction") == Some("floor") && r.param("CallUUID") == Some(b_uuid.as_str())
    });
    assert_params(
        &floor,
        &[
            ("Event", "ConferenceFloor"),
            ("ConferenceName", "room"),
            ("CallStatus", "in-progress"),
        ],
    );
    assert_eq!(
        floor.param("ConferenceMemberID"),
        b_enter.param("ConferenceMemberID")
    );
    assert_eq!(
        floor.param("ConferenceUUID"),
        first_floor.param("ConferenceUUID")
    );
    // Callbacks of one room are ordered: B's enter before its floor.
    let actions: Vec<_> = app
        .requests_to("/cb")
        .iter()
        .map(|r| r.param("ConferenceAction").unwrap_or("").to_owned())
        .collect();
    eprintln!("callbacks: {actions:?}");
    assert_eq!(&actions[..4], ["enter", "floor", "enter", "floor"]);
}

// 7. <GetDigits> retries ----------------------------------------------------------------------

const RETRY_MENU: &str = "<Response><GetDigits action=\"{base}/digits\" retries=\"2\" timeout=\"2\" validDigits=\"12\" invalidDigitsSound=\"{base}/bad.wav\"/><Redirect>{base}/none</Redirect></Response>";

fn retry_menu_app() -> App {
    let app = App::start();
    app.xml("/answer", RETRY_MENU);
    app.file("/bad.wav", wav_tone_bytes(500.0, 0.5, 8_000), "audio/wav");
    app.xml("/digits", "<Response><Hangup/></Response>");
    app.xml("/none", "<Response><Hangup/></Response>");
    app
}

#[test]
fn get_digits_invalid_digit_plays_the_invalid_sound_and_retries() {
    let app = retry_menu_app();
    let engine = engine_for(&app);
    let a = dial(&engine, "menu", Source::Silence);
    std::thread::sleep(Duration::from_millis(300));
    a.media.send_dtmf("9", TE);
    let bad = wait_for(&app, "/bad.wav", "invalid digits sound", |_| true);
    // The sound plays (0.5 s), then the second attempt listens: wait for the end of it
    // (100 ms of quiet after the 500 Hz burst).
    let played = || {
        let audio = a.media.audio_between(bad.at, Instant::now());
        let frames = audio.len() / FRAME;
        tone_bursts(&audio, 500.0, -25.0)
            .last()
            .is_some_and(|&(start, len)| frames >= start + len + 5)
    };
    assert!(
        wait_until(Duration::from_secs(4), played),
        "the invalid digits sound is heard, then ends: {:?}",
        tone_bursts(&a.media.audio_between(bad.at, Instant::now()), 500.0, -25.0)
    );
    let heard = level_db(&a.media.audio_between(bad.at, Instant::now()), 500.0);
    eprintln!(
        "invalid digits sound: {heard:.1} dBFS, over {:?} after its fetch",
        bad.at.elapsed()
    );
    assert!(
        app.requests_to("/digits").is_empty(),
        "an invalid digit is not posted"
    );
    a.media.send_dtmf("1#", TE);
    let posted = wait_for(&app, "/digits", "digits", |_| true);
    assert_eq!(posted.method, "POST");
    assert_eq!(posted.param("Digits"), Some("1"), "{posted:#?}");
    assert_eq!(posted.param("CallStatus"), Some("in-progress"));
    assert!(wait_until(WAIT, || a.bye_received().is_some()));
    assert!(
        app.requests_to("/none").is_empty(),
        "the action replaced the document"
    );
    assert_eq!(app.requests_to("/bad.wav").len(), 1);
}

#[test]
fn get_digits_without_input_runs_the_next_verb_after_the_retries() {
    let app = retry_menu_app();
    let engine = engine_for(&app);
    let started = Instant::now();
    let a = dial(&engine, "menu", Source::Silence);
    let none = wait_for(&app, "/none", "the verb after GetDigits", |_| true);
    let after = none.at - started;
    eprintln!("next verb {after:?} after the INVITE");
    assert!(
        after >= Duration::from_millis(3800) && after <= Duration::from_secs(7),
        "two attempts of 2 s each, not {after:?}"
    );
    assert_eq!(none.param("Event"), Some("Redirect"));
    assert!(wait_until(WAIT, || a.bye_received().is_some()));
    assert!(
        app.requests_to("/digits").is_empty(),
        "no action request without input"
    );
    assert!(
        app.requests_to("/bad.wav").is_empty(),
        "no invalid digits sound without input"
    );
}

// 8. <Speak loop> -----------------------------------------------------------------------------

#[test]
fn speak_loop_2_lasts_about_twice_as_long_as_loop_1() {
    let app = App::start();
    let speak = |n: u32| {
        format!("<Response><Speak voice=\"MAN\" language=\"en-GB\" loop=\"{n}\">Good morning</Speak></Response>")
    };
    // The first call renders the text; the second (loop="1") plays it from the cache, so the
    // rendering time can only make loop="2" look longer, never shorter.
    app.xml_sequence("/answer", &[&speak(2), &speak(1)]);
    let engine = engine_for(&app);
    let mut lengths = Vec::new();
    for loops in [2, 1] {
        let call = dial(&engine, "speak", Source::Silence);
        let answered = Instant::now();
        assert!(wait_until(WAIT, || call.bye_received().is_some()));
        let bye = call.bye_received().expect("BYE");
        let audio = call
            .media
            .audio_between(answered - Duration::from_millis(100), bye);
        let level = rms_db(&audio);
        // The spoken part: the 20 ms frames with speech in them.
        let loud = audio.chunks(FRAME).filter(|f| rms_db(f) > -40.0).count();
        let spoken = Duration::from_millis(20 * loud as u64);
        eprintln!(
            "loop={loops}: {level:.1} dBFS, answer to BYE {:?}, spoken {spoken:?}",
            bye - answered
        );
        assert!(level > -35.0, "loop={loops} is audible: {level:.1} dBFS");
        lengths.push((bye - answered, spoken));
    }
    let (twice, once) = (lengths[0], lengths[1]);
    let ratio = twice.0.as_secs_f64() / once.0.as_secs_f64();
    let spoken_ratio = twice.1.as_secs_f64() / once.1.as_secs_f64();
    eprintln!("ratio answer-to-BYE {ratio:.2}, spoken {spoken_ratio:.2}");
    assert!(
        (1.6..=2.6).contains(&ratio),
        "loop=\"2\" lasts about twice as long: {ratio:.2}"
    );
    assert!(
        (1.8..=2.2).contains(&spoken_ratio),
        "the text is spoken twice: {spoken_ratio:.2}"
    );
}

// 9. <Redirect method="GET"> --------------------------------------------------------------------

#[test]
fn redirect_with_get_fetches_the_next_document_with_its_method_and_event() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Redirect method=\"GET\">{base}/next</Redirect></Response>",
    );
    app.xml(
        "/next",
        "<Response><Speak>Next</Speak><Redirect method=\"GET\">{base}/last</Redirect></Response>",
    );
    app.xml("/last", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    let call = dial(&engine, "redirect", Source::Silence);
    let uuid = call_uuid_of(&app, 0);
    let next = wait_for(&app, "/next", "redirect", |_| true);
    let last = wait_for(&app, "/last", "second redirect", |_| true);
    assert!(wait_until(WAIT, || call.bye_received().is_some()));
    for fetch in [&next, &last] {
        assert_eq!(fetch.method, "GET", "{fetch:#?}");
        assert_params(fetch, &[("Event", "Redirect"), ("CallUUID", uuid.as_str())]);
        assert!(
            fetch.body.is_empty(),
            "GET parameters go in the query string"
        );
    }
    assert_eq!(
        last.param("CallStatus"),
        Some("in-progress"),
        "after the Speak answered the call"
    );
    // Whether the first element, a <Redirect>, answers the call: API.md §9.1 lists the
    // elements that do not force an answer (Wait, PreAnswer, Hangup, Dial, Notify, as in
    // plivoframework's NO_ANSWER_ELEMENTS, which answers and sets CallStatus=in-progress
    // before any other element). <Redirect> is not among them.
    let answered_at = call
        .ua
        .responses_received()
        .into_iter()
        .find(|r| r.cseq_method == "INVITE" && r.status == 200)
        .expect("the 200 OK")
        .at;
    let status = next.param("CallStatus").unwrap_or("");
    eprintln!(
        "first Redirect fetched with CallStatus={status:?}, {} the 200 OK",
        if next.at < answered_at {
            "before"
        } else {
            "after"
        }
    );
    // The engine sends the 200 before it fetches, but the two travel different sockets, so
    // their arrival order here says nothing; CallStatus is what tells.
    assert_eq!(
        status, "in-progress",
        "API.md §9.1: <Redirect> is not a no-answer element, so an inbound call is answered \
         before it and the fetch carries CallStatus=in-progress"
    );
}

// 10. Unsupported verbs -------------------------------------------------------------------------
//
// `<Record>` was one of them until call recording: it is no longer checked here.

#[test]
fn dial_and_speech_input_fail_the_call_with_8011() {
    let app = App::start();
    app.xml_sequence(
        "/answer",
        &[
            "<Response><Dial><Number>1234</Number></Dial></Response>",
            "<Response><GetInput action=\"{base}/input\" inputType=\"speech\"/></Response>",
        ],
    );
    let engine = engine_for(&app);
    for (n, verb) in ["Dial", "GetInput speech"].into_iter().enumerate() {
        let started = Instant::now();
        let outcome = Call::dial_keep(engine.sip, CallOptions::new("x", Source::Silence))
            .expect("INVITE transaction");
        let how = match &outcome {
            Ok(call) => {
                assert!(
                    wait_until(WAIT, || call.bye_received().is_some()),
                    "{verb}: the answered call is hung up"
                );
                format!("answered, then BYE after {:?}", started.elapsed())
            }
            Err(refused) => format!("refused with {}", refused.response.status_code.code()),
        };
        let hangup = hangup_of(&app, n);
        eprintln!("{verb}: {how}; {:?}", hangup.param("HangupCauseName"));
        assert_params(
            &hangup,
            &[
                ("HangupCauseCode", "8011"),
                ("HangupCauseName", "Unsupported XML Element"),
                ("HangupSource", "Error"),
                ("CallStatus", "completed"),
            ],
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{verb} fails at once"
        );
    }
    assert!(
        app.requests_to("/input").is_empty(),
        "no action request for an input that was never collected"
    );
    assert!(engine.is_ready());
}

// 11. Slow callback receiver --------------------------------------------------------------------

#[test]
fn slow_callback_receiver_does_not_hold_up_the_call_or_the_flow() {
    let app = App::start();
    app.xml(
        "/answer",
        &conference_doc("", "<Redirect>{base}/after</Redirect>"),
    );
    app.xml("/after", "<Response><Hangup/></Response>");
    let engine = engine_for(&app);
    app.delay("/cb", Duration::from_secs(3));
    let t0 = Instant::now();
    let a = dial(&engine, "room", Source::tone(440.0));
    let b = dial(&engine, "room", Source::tone(1000.0));
    // A hears B long before the first callback has been answered.
    let heard = wait_until(Duration::from_millis(2500), || {
        level_db(&recent_audio(&a, Duration::from_millis(300)), 1000.0) > -20.0
    });
    let hearing = t0.elapsed();
    eprintln!("A hears B {hearing:?} after the first INVITE");
    assert!(heard, "A hears B while the enter callbacks are pending");
    assert!(hearing < Duration::from_millis(2800));
    // Callbacks of one room go one at a time: the second enter waits behind the first (held
    // 3 s by the app).
    let sent = app.requests_to("/cb");
    assert_eq!(
        sent.len(),
        1,
        "only the first enter callback is out: {sent:#?}"
    );
    // Whoever joined first (normally A; under load the second call can overtake it).
    let first_uuid = sent[0].param("CallUUID").expect("CallUUID").to_owned();
    let first_member = sent[0]
        .param("ConferenceMemberID")
        .expect("member id")
        .to_owned();
    let uuids = [call_uuid_of(&app, 0), call_uuid_of(&app, 1)];
    let first = uuids
        .iter()
        .position(|u| *u == first_uuid)
        .expect("the callback is for one of the calls");
    let (first_call, second_uuid) = if first == 0 {
        (&a, uuids[1].clone())
    } else {
        (&b, uuids[0].clone())
    };

    // The REST API and the flow go on meanwhile.
    let rest = Instant::now();
    let reply = http_request(
        engine.http,
        "POST",
        &format!("/v1/Account/{ACCOUNT}/Conference/room/Member/{first_member}/Kick/"),
        Credentials::Basic(ACCOUNT, TOKEN),
        &[],
        None,
    )
    .expect("REST kick");
    assert_eq!(reply.status, 202, "{reply}");
    assert!(
        rest.elapsed() < Duration::from_secs(1),
        "REST answers at once"
    );
    let after = wait_for(&app, "/after", "the next verb after the kick", |r| {
        r.param("CallUUID") == Some(first_uuid.as_str())
    });
    assert!(
        after.at - rest < Duration::from_secs(1),
        "the flow continues at once: {:?}",
        after.at - rest
    );
    assert!(wait_until(WAIT, || first_call.bye_received().is_some()));
    // The hangup webhook is per call, not queued behind the room's callbacks.
    let hangup = hangup_of(&app, first);
    let pending = app
        .requests_to("/cb")
        .iter()
        .filter(|r| r.at <= hangup.at)
        .count();
    assert_eq!(
        pending, 1,
        "the hangup webhook did not wait for the room's callbacks"
    );
    assert!(hangup.at - t0 < Duration::from_millis(2900));

    // Eventually every callback arrives, in order.
    assert!(wait_until(WAIT, || app.requests_to("/cb").len() >= 3));
    let cbs = app.requests_to("/cb");
    let seen: Vec<_> = cbs
        .iter()
        .map(|r| {
            (
                r.param("ConferenceAction").unwrap_or("").to_owned(),
                r.param("CallUUID").unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen[..3],
        [
            ("enter".to_owned(), first_uuid.clone()),
            ("enter".to_owned(), second_uuid),
            ("exit".to_owned(), first_uuid),
        ]
    );
    for pair in cbs.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(2900),
            "one at a time: the next is sent once the previous was answered"
        );
    }
    assert_eq!(
        callbacks(&app, "exit").len(),
        1,
        "one member is still in the room"
    );
}
