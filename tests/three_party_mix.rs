//! Conference mixing end to end: real UDP SIP calls from the test user agent, real RTP, and
//! tone analysis of what each member receives.

mod common;

use std::time::Duration;

use common::sdp::Direction;
use common::ua::{header, CallOptions, Transport, Ua};
use common::{assert_hears, steady_window, wait_until, Call, Engine, Source};

const SETTLE: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(2);

#[test]
fn each_member_hears_the_others_and_not_itself() {
    let engine = Engine::start(&[]);
    let a = Call::dial(engine.sip, "trio", Source::tone(440.0));
    let b = Call::dial(engine.sip, "trio", Source::tone(1000.0));
    let c = Call::dial(engine.sip, "trio", Source::Silence);
    for call in [&a, &b, &c] {
        assert_eq!(
            call.remote_sdp.first_codec(),
            Some(0),
            "PCMU answered: {:?}",
            call.remote_sdp
        );
    }
    let window = steady_window(SETTLE, WINDOW);
    // N-1: a member's own tone must be absent (20 dB below what it hears from the others).
    assert_hears("A (sends 440 Hz)", &a, window, &[1000.0], &[440.0]);
    assert_hears("B (sends 1000 Hz)", &b, window, &[440.0], &[1000.0]);
    assert_hears("C (silent)", &c, window, &[440.0, 1000.0], &[]);
}

#[test]
fn answer_follows_the_callers_codec_preference_and_keeps_telephone_event() {
    let engine = Engine::start(&[]);
    for (codecs, preferred) in [
        (vec![(0, "PCMU"), (8, "PCMA")], 0u8),
        (vec![(8, "PCMA"), (0, "PCMU")], 8u8),
    ] {
        let mut options = CallOptions::new("codecs", Source::Silence);
        options.codecs = codecs.clone();
        let mut call = Call::dial_with(engine.sip, options)
            .expect("INVITE transaction completes")
            .unwrap_or_else(|r| panic!("offer {codecs:?} rejected:\n{r}"));
        let answer = &call.remote_sdp;
        assert_eq!(
            answer.first_codec(),
            Some(preferred),
            "offer {codecs:?}, answer {answer:?}"
        );
        assert!(
            answer
                .payloads
                .iter()
                .all(|pt| [0, 8].contains(pt) || Some(*pt) == answer.telephone_event()),
            "only offered payload types may be answered: {answer:?}"
        );
        assert!(
            answer.telephone_event().is_some(),
            "telephone-event was offered: {answer:?}"
        );
        assert!(answer.ptime.is_none_or(|p| p == 20), "ptime 20: {answer:?}");
        assert_eq!(
            answer.addr,
            std::net::Ipv4Addr::LOCALHOST,
            "answer c= on loopback"
        );
        let range = engine.rtp_range.0..=engine.rtp_range.1;
        assert!(
            range.contains(&answer.port),
            "RTP port {} outside {range:?}",
            answer.port
        );
        assert_eq!(call.hangup().expect("BYE answered"), 200);
    }
}

#[test]
fn members_of_different_rooms_do_not_hear_each_other() {
    let engine = Engine::start(&[]);
    let red_talker = Call::dial(engine.sip, "red", Source::tone(440.0));
    let red_listener = Call::dial(engine.sip, "red", Source::Silence);
    let blue_talker = Call::dial(engine.sip, "blue", Source::tone(1000.0));
    assert_ne!(
        red_talker.remote_sdp.rtp_addr(),
        blue_talker.remote_sdp.rtp_addr(),
        "each leg has its own RTP port"
    );
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("red listener", &red_listener, window, &[440.0], &[1000.0]);
    // The talkers are alone in their rooms apart from silence: they must hear no tone at all.
    assert_hears("red talker", &red_talker, window, &[], &[440.0, 1000.0]);
    assert_hears(
        "blue talker (alone)",
        &blue_talker,
        window,
        &[],
        &[440.0, 1000.0],
    );
}

#[test]
fn room_disappears_when_last_member_leaves_and_can_be_recreated() {
    let engine = Engine::start(&[]);
    let mut a = Call::dial(engine.sip, "phoenix", Source::tone(440.0));
    let mut b = Call::dial(engine.sip, "phoenix", Source::Silence);
    let window = steady_window(SETTLE, Duration::from_secs(1));
    assert_hears("B, first instance", &b, window, &[440.0], &[]);
    assert!(
        engine.live_rooms().contains(&"phoenix".to_string()),
        "room listed while live"
    );

    assert_eq!(a.hangup().expect("BYE answered"), 200);
    assert_eq!(b.hangup().expect("BYE answered"), 200);
    assert!(
        wait_until(Duration::from_secs(3), || !engine
            .live_rooms()
            .contains(&"phoenix".to_string())),
        "room still listed after its last member left: {:?}",
        engine.live_rooms()
    );
    let (from, to) = steady_window(Duration::from_millis(200), Duration::from_millis(500));
    assert!(
        b.media.packets_between(from, to).is_empty(),
        "the engine still sends RTP to a member that hung up"
    );

    let c = Call::dial(engine.sip, "phoenix", Source::tone(1000.0));
    let d = Call::dial(engine.sip, "phoenix", Source::Silence);
    let window = steady_window(SETTLE, Duration::from_secs(1));
    // The new instance carries only the new members: nothing of the old talker remains.
    assert_hears("D, second instance", &d, window, &[1000.0], &[440.0]);
    assert_hears("C, second instance", &c, window, &[], &[440.0, 1000.0]);
}

#[test]
fn late_offer_invite_gets_offer_and_audio_flows() {
    let engine = Engine::start(&[]);
    let mut options = CallOptions::new("late", Source::tone(440.0));
    options.codecs.clear();
    let late = Call::dial_with(engine.sip, options)
        .expect("INVITE transaction completes")
        .unwrap_or_else(|r| panic!("INVITE without SDP rejected:\n{r}"));
    let offer = &late.remote_sdp;
    assert!(
        offer.payloads.contains(&0),
        "the engine's offer includes PCMU: {offer:?}"
    );
    assert!(
        header(&late.invite_response.headers, "Content-Type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp")),
        "200 carries an SDP offer"
    );
    let early = Call::dial(engine.sip, "late", Source::tone(1000.0));
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("late-offer caller", &late, window, &[1000.0], &[440.0]);
    assert_hears("early-offer caller", &early, window, &[440.0], &[1000.0]);
}

#[test]
fn no_common_codec_is_rejected_with_488() {
    let engine = Engine::start(&[]);
    let mut options = CallOptions::new("codecless", Source::Silence);
    options.codecs = vec![(18, "G729"), (3, "GSM")];
    options.telephone_event = false;
    match Call::dial_with(engine.sip, options).expect("INVITE transaction completes") {
        Ok(call) => panic!("answered without a common codec: {:?}", call.remote_sdp),
        Err(response) => assert_eq!(response.status_code.code(), 488, "{response}"),
    }
    assert!(engine.is_ready());
    // The rejection leaves nothing behind: a normal call still works.
    let _talker = Call::dial(engine.sip, "codecless", Source::tone(440.0));
    let listener = Call::dial(engine.sip, "codecless", Source::Silence);
    assert_hears(
        "listener",
        &listener,
        steady_window(SETTLE, Duration::from_secs(1)),
        &[440.0],
        &[],
    );
}

#[test]
fn hold_reinvite_is_answered_recvonly_and_unhold_restores_audio() {
    let engine = Engine::start(&[]);
    let mut a = Call::dial(engine.sip, "hold", Source::tone(440.0));
    let b = Call::dial(engine.sip, "hold", Source::tone(1000.0));
    assert_hears(
        "A before hold",
        &a,
        steady_window(SETTLE, Duration::from_secs(1)),
        &[1000.0],
        &[440.0],
    );

    let (response, sdp) = a
        .reinvite(Direction::SendOnly)
        .expect("hold re-INVITE completes");
    assert_eq!(response.status_code.code(), 200, "{response}");
    let sdp = sdp.unwrap_or_else(|| panic!("200 to re-INVITE without SDP:\n{response}"));
    assert_eq!(
        sdp.direction,
        Direction::RecvOnly,
        "RFC 3264 §6.1: sendonly → recvonly"
    );
    // Having answered recvonly, the engine must not send media to A (RFC 3264 §6.1). It gets
    // a moment to stop before the window opens.
    let (from, to) = steady_window(Duration::from_millis(150), Duration::from_secs(1));
    let leaked = a.media.packets_between(from, to).len();
    assert_eq!(leaked, 0, "{leaked} RTP packets sent to a member on hold");
    // A still talks (sendonly), so B keeps hearing it.
    assert_hears("B while A is on hold", &b, (from, to), &[440.0], &[1000.0]);

    let (response, sdp) = a
        .reinvite(Direction::SendRecv)
        .expect("unhold re-INVITE completes");
    assert_eq!(response.status_code.code(), 200, "{response}");
    let sdp = sdp.unwrap_or_else(|| panic!("200 to re-INVITE without SDP:\n{response}"));
    assert_eq!(sdp.direction, Direction::SendRecv);
    assert_hears(
        "A after unhold",
        &a,
        steady_window(SETTLE, Duration::from_secs(1)),
        &[1000.0],
        &[440.0],
    );
}

#[test]
fn options_is_answered_with_allow_over_udp_and_tcp() {
    let engine = Engine::start(&[]);
    for transport in [Transport::Udp, Transport::Tcp] {
        let ua = Ua::new(engine.sip, transport).expect("user agent");
        let response = ua
            .request(
                "OPTIONS",
                "anyroom",
                &["Accept: application/sdp".to_string()],
            )
            .unwrap_or_else(|e| panic!("OPTIONS over {transport:?}: {e:#}"));
        assert_eq!(
            response.status_code.code(),
            200,
            "{transport:?}: {response}"
        );
        let allow = header(&response.headers, "Allow")
            .unwrap_or_else(|| panic!("{transport:?}: no Allow in\n{response}"))
            .to_ascii_uppercase();
        for method in ["INVITE", "ACK", "BYE", "OPTIONS"] {
            assert!(
                allow.split(',').any(|m| m.trim() == method),
                "{transport:?}: Allow lacks {method}: {allow}"
            );
        }
    }
}
