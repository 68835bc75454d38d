//! RTP timeouts end to end, with short timers from the configuration file (1 s without any
//! RTP after the answer, 2 s after the RTP stops): a call whose media stops and a call that
//! never sends get a BYE with a Q.850 `Reason` (RFC 3326); a held call does not, until it is
//! taken off hold; an XML flow's hangup webhook says MEDIA_TIMEOUT.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::app::App;
use common::sdp::Direction;
use common::ua::{header, ReceivedRequest};
use common::{toml_account, wait_until, Call, CallOptions, Engine, EngineOptions, Source};

const TIMEOUTS: &str = "[rtp]\nno_media_timeout_s = 1\nmedia_stopped_timeout_s = 2\n";
const WAIT: Duration = Duration::from_secs(8);

fn engine(calls_toml: &str) -> Engine {
    let toml = format!(
        "{TIMEOUTS}{calls_toml}{}",
        toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    );
    Engine::start_with_config(&toml, EngineOptions::default())
}

/// The engine's BYE for `call`, waiting for it.
fn bye(call: &Call) -> ReceivedRequest {
    assert!(
        wait_until(WAIT, || call.bye_received().is_some()),
        "no BYE from the engine"
    );
    call.ua
        .requests_received()
        .into_iter()
        .find(|r| r.method == "BYE" && r.call_id == call.call_id())
        .expect("the BYE")
}

fn reason_of(bye: &ReceivedRequest) -> String {
    let request = rsip::Request::try_from(bye.text.as_str()).expect("the BYE parses");
    header(&request.headers, "Reason").unwrap_or_else(|| panic!("no Reason in\n{}", bye.text))
}

fn assert_between(what: &str, elapsed: Duration, low: f64, high: f64) {
    let s = elapsed.as_secs_f64();
    assert!(
        (low..=high).contains(&s),
        "{what} after {s:.2} s, expected {low}-{high} s"
    );
}

#[test]
fn a_call_whose_rtp_stops_gets_a_bye_with_a_reason_after_the_stopped_timeout() {
    let engine = engine("");
    let call = Call::dial(engine.sip, "stops", Source::tone(440.0));
    // Longer than either timeout: a call that sends is left alone.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(call.bye_received().is_none(), "hung up while sending RTP");
    call.media.set_sending(false);
    let stopped = Instant::now();
    let bye = bye(&call);
    assert_between("BYE", bye.at - stopped, 1.8, 3.5);
    let reason = reason_of(&bye);
    assert!(
        reason.starts_with("Q.850;cause=102;") && reason.contains("RTP stopped"),
        "{reason}"
    );
}

#[test]
fn a_call_that_never_sends_rtp_gets_a_bye_after_the_no_media_timeout() {
    let engine = engine("");
    // Our media goes to a socket that nobody reads: the engine receives nothing.
    let nowhere = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut options = CallOptions::new("never", Source::tone(440.0));
    options.send_rtp_to = Some(nowhere.local_addr().expect("address"));
    let call = Call::dial_with(engine.sip, options)
        .expect("INVITE transaction")
        .expect("answered");
    let answered = Instant::now();
    let bye = bye(&call);
    assert_between("BYE", bye.at - answered, 0.8, 2.5);
    let reason = reason_of(&bye);
    assert!(
        reason.starts_with("Q.850;cause=102;") && reason.contains("no RTP received"),
        "{reason}"
    );
}

#[test]
fn a_held_call_does_not_time_out_until_it_is_taken_off_hold() {
    let engine = engine("");
    let mut call = Call::dial(engine.sip, "held", Source::tone(440.0));
    std::thread::sleep(Duration::from_millis(500));
    let (response, _) = call.reinvite(Direction::Inactive).expect("hold");
    assert_eq!(response.status_code.code(), 200);
    call.media.set_sending(false);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        call.bye_received().is_none(),
        "a held call was hung up for want of RTP"
    );
    // Off hold but still silent: the clock starts again from the re-INVITE.
    let (response, _) = call.reinvite(Direction::SendRecv).expect("unhold");
    assert_eq!(response.status_code.code(), 200);
    let unheld = Instant::now();
    let bye = bye(&call);
    assert_between("BYE", bye.at - unheld, 0.8, 2.5);
    assert!(reason_of(&bye).contains("no RTP received"));
}

#[test]
fn an_xml_flow_call_whose_rtp_stops_reports_media_timeout_to_its_hangup_url() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Conference>timeouts</Conference></Response>",
    );
    app.respond("/hangup", 200, "text/plain", "ok");
    let engine = engine(&format!(
        "[calls]\nanswer_url = '{}'\nhangup_url = '{}'\n",
        app.url("/answer"),
        app.url("/hangup")
    ));
    let call = Call::dial(engine.sip, "timeouts", Source::tone(440.0));
    std::thread::sleep(Duration::from_millis(1500));
    call.media.set_sending(false);
    let bye = bye(&call);
    assert!(reason_of(&bye).contains("RTP stopped"));
    let hangup = app
        .wait_request("/hangup", WAIT, |_| true)
        .unwrap_or_else(|| panic!("no hangup webhook; the app saw {:#?}", app.requests()));
    assert_eq!(hangup.param("HangupCause"), Some("MEDIA_TIMEOUT"));
    assert_eq!(hangup.param("HangupSource"), Some("Error"));
    assert_eq!(hangup.param("HangupCauseCode"), Some("8020"));
}
