//! Graceful drain. SIGTERM (or `POST /admin/drain` with the admin token) turns `/readyz` 503
//! and answers new INVITEs and OPTIONS 503 with Retry-After, while the live calls carry on
//! (they still hear each other); the engine exits 0 once the last call has ended. At
//! `shutdown.drain_timeout_s`, or on a second SIGTERM, the calls left get a BYE with a
//! `Reason` header (RFC 3326), recordings in progress are finished into valid files and
//! their callbacks delivered before the exit.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::app::App;
use common::rest::{http_request, Credentials};
use common::ua::header;
use common::{
    assert_hears, steady_window, toml_account, wait_until, Call, CallOptions, Engine,
    EngineOptions, Source, Transport, Ua, ACCOUNT, TOKEN,
};

const RETRY_AFTER: u32 = 17;
const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// An engine whose drain lasts at most `drain_timeout_s`, refusing with Retry-After 17.
fn draining_engine(drain_timeout_s: u64) -> Engine {
    let toml = format!(
        "[shutdown]\ndrain_timeout_s = {drain_timeout_s}\nretry_after_s = {RETRY_AFTER}\n\
         [admin]\ntoken = '{ADMIN_TOKEN}'\n{}",
        toml_account(ACCOUNT, TOKEN, &[], &[])
    );
    Engine::start_with_config(&toml, EngineOptions::default())
}

fn readyz(engine: &Engine) -> u16 {
    engine.http_get("/readyz").map(|(s, _)| s).unwrap_or(0)
}

fn assert_new_invite_refused_with_retry_after(engine: &Engine) {
    let refused = Call::dial_with(engine.sip, CallOptions::new("latecomer", Source::Silence))
        .expect("the INVITE gets an answer")
        .err()
        .unwrap_or_else(|| panic!("a new call was answered while draining\n{}", engine.logs()));
    assert_eq!(refused.status_code.code(), 503, "{refused}");
    assert_eq!(
        header(&refused.headers, "Retry-After").as_deref(),
        Some(RETRY_AFTER.to_string().as_str()),
        "{refused}"
    );
}

fn assert_options_refused_with_retry_after(engine: &Engine) {
    let ua = Ua::new(engine.sip, Transport::Udp).expect("a UA");
    let response = ua
        .request("OPTIONS", "ping", &[])
        .expect("OPTIONS gets an answer");
    assert_eq!(response.status_code.code(), 503, "{response}");
    assert_eq!(
        header(&response.headers, "Retry-After").as_deref(),
        Some(RETRY_AFTER.to_string().as_str()),
        "{response}"
    );
}

fn no_bye_from_the_engine(calls: &[Call]) {
    for (i, call) in calls.iter().enumerate() {
        assert!(
            call.bye_received().is_none(),
            "call {i} got a BYE from the engine during the drain"
        );
    }
}

#[test]
fn sigterm_drains_refuses_newcomers_and_exits_when_the_last_call_hangs_up() {
    let mut engine = draining_engine(60);
    let mut calls = [
        Call::dial(engine.sip, "drain", Source::tone(440.0)),
        Call::dial(engine.sip, "drain", Source::tone(1000.0)),
    ];
    // Before the drain: OPTIONS is answered 200.
    let ua = Ua::new(engine.sip, Transport::Udp).expect("a UA");
    let options = ua.request("OPTIONS", "ping", &[]).expect("OPTIONS");
    assert_eq!(options.status_code.code(), 200, "{options}");

    engine.sigterm();
    assert!(
        wait_until(Duration::from_secs(3), || readyz(&engine) == 503),
        "/readyz still {} after SIGTERM\n{}",
        readyz(&engine),
        engine.logs()
    );
    assert_new_invite_refused_with_retry_after(&engine);
    assert_options_refused_with_retry_after(&engine);

    // The room carries on: each member still hears the other, and only the other.
    let window = steady_window(Duration::from_millis(300), Duration::from_millis(1500));
    assert_hears(
        "440 Hz caller during the drain",
        &calls[0],
        window,
        &[1000.0],
        &[440.0],
    );
    assert_hears(
        "1 kHz caller during the drain",
        &calls[1],
        window,
        &[440.0],
        &[1000.0],
    );
    assert!(engine.is_alive(), "the engine exited with calls up");
    no_bye_from_the_engine(&calls);

    assert_eq!(calls[0].hangup().expect("BYE"), 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(engine.is_alive(), "the engine exited with a call up");
    assert_eq!(calls[1].hangup().expect("BYE"), 200);
    let status = engine
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running after the last call\n{}", engine.logs()));
    assert!(status.success(), "exit status after the drain: {status}");
    no_bye_from_the_engine(&calls);
}

/// The finished recordings (`*.wav`) and leftovers (`*.part`) under `dir`.
fn recording_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut done, mut parts) = (Vec::new(), Vec::new());
    for account in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(account.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("wav") => done.push(path),
                Some("part") => parts.push(path),
                _ => {}
            }
        }
    }
    (done, parts)
}

/// Seconds of 16-bit mono audio in a complete WAV file (RIFF and data sizes consistent).
fn wav_seconds(path: &Path) -> f64 {
    let bytes = std::fs::read(path).expect("read the recording");
    assert!(
        bytes.len() >= 44 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV file"
    );
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    assert_eq!(
        u32_at(4) as usize,
        bytes.len() - 8,
        "RIFF size is the file's"
    );
    let rate = u32_at(24);
    // Walk the chunks to `data`.
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32_at(at + 4) as usize;
        if &bytes[at..at + 4] == b"data" {
            assert_eq!(at + 8 + size, bytes.len(), "the data chunk runs to the end");
            return size as f64 / 2.0 / f64::from(rate);
        }
        at += 8 + size + (size & 1);
    }
    panic!("no data chunk in {}", path.display());
}

#[test]
fn drain_timeout_hangs_up_with_a_reason_and_finishes_recordings() {
    let app = App::start();
    app.respond("/recorded", 200, "text/plain", "ok");
    let mut engine = draining_engine(2);
    let calls = [
        Call::dial(engine.sip, "late-night", Source::tone(440.0)),
        Call::dial(engine.sip, "late-night", Source::tone(1000.0)),
    ];
    let started = http_request(
        engine.http,
        "POST",
        &format!("/v1/Account/{ACCOUNT}/Conference/late-night/Record/"),
        Credentials::Basic(ACCOUNT, TOKEN),
        &[],
        Some(&format!(
            "{{\"file_format\":\"wav\",\"callback_url\":\"{}\"}}",
            app.url("/recorded")
        )),
    )
    .expect("record request");
    assert_eq!(started.status, 202, "{started}");
    std::thread::sleep(Duration::from_millis(1000));

    let signalled = Instant::now();
    engine.sigterm();
    let status = engine
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running 15 s after SIGTERM\n{}", engine.logs()));
    assert!(status.success(), "exit status: {status}\n{}", engine.logs());
    for (i, call) in calls.iter().enumerate() {
        let bye = call
            .ua
            .requests_received()
            .into_iter()
            .find(|r| r.method == "BYE")
            .unwrap_or_else(|| panic!("call {i} got no BYE\n{}", engine.logs()));
        let waited = bye.at.duration_since(signalled);
        assert!(
            waited >= Duration::from_millis(1800),
            "call {i} hung up {waited:?} after SIGTERM, before the 2 s drain timeout"
        );
        let reason = bye
            .text
            .lines()
            .find_map(|l| l.strip_prefix("Reason:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("call {i}: BYE without Reason:\n{}", bye.text));
        assert!(
            reason.starts_with("SIP;cause=503"),
            "call {i}: Reason {reason:?}"
        );
    }
    let (done, parts) = recording_files(&engine.dir().join("recordings"));
    assert!(parts.is_empty(), "unfinished recordings left: {parts:?}");
    assert_eq!(done.len(), 1, "one finished recording: {done:?}");
    let seconds = wav_seconds(&done[0]);
    // About 1 s before the signal and 2 s of drain.
    assert!((2.0..=5.0).contains(&seconds), "{seconds:.2} s recorded");
    // The recording's callback went out before the exit.
    let callbacks = app.requests_to("/recorded");
    assert_eq!(callbacks.len(), 1, "one recording callback before the exit");
    let duration_ms: u64 = callbacks[0]
        .param("recording_duration_ms")
        .and_then(|d| d.parse().ok())
        .expect("recording_duration_ms");
    assert!(duration_ms >= 2000, "callback says {duration_ms} ms");
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let mut engine = draining_engine(300);
    let calls = [Call::dial(engine.sip, "stubborn", Source::tone(440.0))];
    std::thread::sleep(Duration::from_millis(300));
    engine.sigterm();
    assert!(wait_until(Duration::from_secs(3), || readyz(&engine) == 503));
    std::thread::sleep(Duration::from_millis(500));
    assert!(engine.is_alive(), "the first SIGTERM only drains");
    no_bye_from_the_engine(&calls);
    engine.sigterm();
    let status = engine
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running after the second SIGTERM\n{}", engine.logs()));
    assert!(status.success(), "exit status: {status}");
    assert!(calls[0].bye_received().is_some(), "the call got its BYE");
}

#[test]
fn admin_drain_needs_the_token_then_drains_like_sigterm() {
    let mut engine = draining_engine(60);
    let mut call = Call::dial(engine.sip, "ops", Source::tone(440.0));
    let drain = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        http_request(
            engine.http,
            "POST",
            "/admin/drain",
            Credentials::None,
            &headers,
            None,
        )
        .expect("admin request")
    };
    // Neither no token, a wrong one, nor an account's REST credentials will do.
    for auth in [None, Some("Bearer wrong-token-0123456789")] {
        let refused = drain(auth);
        assert_eq!(refused.status, 401, "{refused}");
    }
    let basic = http_request(
        engine.http,
        "POST",
        "/admin/drain",
        Credentials::Basic(ACCOUNT, TOKEN),
        &[],
        None,
    )
    .expect("admin request");
    assert_eq!(basic.status, 401, "{basic}");
    assert_eq!(readyz(&engine), 200, "refused requests change nothing");

    let accepted = drain(Some(&format!("Bearer {ADMIN_TOKEN}")));
    assert_eq!(accepted.status, 202, "{accepted}");
    assert!(accepted.body.contains("\"draining\":true"), "{accepted}");
    assert_eq!(readyz(&engine), 503);
    assert_options_refused_with_retry_after(&engine);
    assert_new_invite_refused_with_retry_after(&engine);
    std::thread::sleep(Duration::from_millis(300));
    assert!(engine.is_alive(), "draining with a call up");
    assert!(call.bye_received().is_none());
    assert_eq!(call.hangup().expect("BYE"), 200);
    let status = engine
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running after the last call\n{}", engine.logs()));
    assert!(status.success(), "exit status: {status}");
}

#[test]
fn sigterm_without_calls_exits_promptly_with_success() {
    let mut engine = Engine::start(&[]);
    engine.sigterm();
    let status = engine
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("idle engine still running 5 s after SIGTERM"));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
