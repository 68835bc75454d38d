//! Graceful shutdown: on SIGTERM the engine hangs up every live call itself (BYE, waiting
//! for the 200s) and then exits with success.

mod common;

use std::time::{Duration, Instant};

use common::{Call, Engine, Source};

#[test]
fn sigterm_sends_bye_to_every_live_call_before_exit() {
    let mut engine = Engine::start(&[]);
    let calls = [
        Call::dial(engine.sip, "east", Source::tone(440.0)),
        Call::dial(engine.sip, "east", Source::Silence),
        Call::dial(engine.sip, "west", Source::tone(1000.0)),
    ];
    // The calls are really live (media flowing) before the signal.
    std::thread::sleep(Duration::from_millis(500));
    for (i, call) in calls.iter().enumerate() {
        assert!(
            call.media.packet_count() > 5,
            "call {i} receives no RTP before SIGTERM"
        );
    }

    let signalled = Instant::now();
    engine.sigterm();
    let status = engine
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("engine still running 10 s after SIGTERM"));
    let exited_by = Instant::now();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    for (i, call) in calls.iter().enumerate() {
        let bye = call.bye_received().unwrap_or_else(|| {
            panic!(
                "call {i} ({}) got no BYE before the engine exited; it received: {:?}",
                call.room,
                call.ua
                    .requests_received()
                    .iter()
                    .map(|r| &r.method)
                    .collect::<Vec<_>>()
            )
        });
        assert!(
            bye >= signalled && bye <= exited_by,
            "call {i}: BYE outside the shutdown"
        );
        assert!(
            call.ua.unparseable_messages().is_empty(),
            "{:?}",
            call.ua.unparseable_messages()
        );
    }
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
