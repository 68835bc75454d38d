//! SIPp as the peer: the stock `uac` scenario as a load test, and our streaming scenario to
//! check that audio from a third-party RTP stack is mixed.

mod common;

use std::time::Duration;

use common::sipp::{stream_scenario, Sipp, SippRun};
use common::{assert_hears, steady_window, wait_until, Call, Engine, EngineOptions, Source, Tone};

/// Runs `sipp -sn uac -s room1 127.0.0.1:P -m 200 -r 20 -l 50` (plus `-t t1` for TCP) and
/// checks that every call succeeded and the engine is left idle and ready.
fn builtin_uac_200_calls(tcp: bool) {
    // 50 concurrent calls, each with its own RTP port, plus room for ports still being freed.
    let engine = Engine::start_with(EngineOptions {
        rtp_ports: 200,
        ..EngineOptions::default()
    });
    let target = engine.sip.to_string();
    let mut args = vec![
        "-sn",
        "uac",
        "-s",
        "room1",
        &target,
        "-m",
        "200",
        "-r",
        "20",
        "-l",
        "50",
        // A stuck call must fail the run, not hang it.
        "-timeout",
        "60s",
        "-timeout_error",
    ];
    if tcp {
        args.extend(["-t", "t1"]);
    }
    let run = Sipp::new(&args).run();
    assert_all_succeeded(&run, 200);

    let mut engine = engine;
    assert!(engine.is_alive(), "engine died under load");
    assert!(engine.is_ready(), "engine not ready after the load");
    assert!(
        wait_until(Duration::from_secs(5), || !engine
            .live_rooms()
            .contains(&"room1".to_string())),
        "room1 still live after every call hung up: {:?}",
        engine.live_rooms()
    );
}

fn assert_all_succeeded(run: &SippRun, calls: u64) {
    assert!(
        run.status.is_some_and(|s| s.code() == Some(0)),
        "SIPp did not exit 0 (0 = all calls succeeded)\n{}",
        run.report()
    );
    let stats = run
        .stats
        .unwrap_or_else(|| panic!("no SIPp statistics\n{}", run.report()));
    assert_eq!(
        (stats.successful, stats.failed),
        (calls, 0),
        "successful/failed calls\n{}",
        run.report()
    );
}

#[test]
fn sipp_builtin_uac_200_calls_succeed_over_udp() {
    builtin_uac_200_calls(false);
}

#[test]
fn sipp_builtin_uac_200_calls_succeed_over_tcp() {
    builtin_uac_200_calls(true);
}

#[test]
fn sipp_stream_scenario_is_mixed_to_a_listener() {
    let engine = Engine::start(&[]);
    let listener = Call::dial(engine.sip, "s1", Source::Silence);

    let scenario = stream_scenario().display().to_string();
    let target = engine.sip.to_string();
    let mut sipp = Sipp::new(&[
        "-sf",
        &scenario,
        "-s",
        "s1",
        &target,
        "-m",
        "2",
        "-l",
        "2",
        "-r",
        "10",
        // Each call streams for 6 s, then hangs up.
        "-d",
        "6000",
        "-timeout",
        "40s",
        "-timeout_error",
    ]);
    sipp.deadline = Duration::from_secs(60);
    common::audio::write_ulaw_tone_file(&sipp.dir().join("tone.ulaw"), Tone::new(440.0, 0.3), 1)
        .expect("write tone.ulaw");
    let running = sipp.spawn();

    // Both calls are up within a fraction of a second; analyse seconds 2–4 of the stream.
    let window = steady_window(Duration::from_secs(2), Duration::from_secs(2));
    assert_hears("listener in s1", &listener, window, &[440.0], &[1000.0]);

    let run = running.wait();
    assert_all_succeeded(&run, 2);
    // Once the SIPp members are gone, the listener is alone again: silence.
    let after = steady_window(Duration::from_millis(300), Duration::from_secs(1));
    assert_hears("listener after SIPp left", &listener, after, &[], &[440.0]);
}
