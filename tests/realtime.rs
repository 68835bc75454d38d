//! `[media] realtime_priority`: the media threads of a running engine take `SCHED_FIFO` at the
//! configured priority (read back from `/proc/<pid>/task/<tid>/stat`) and nothing else does;
//! where the kernel refuses (no root, `CAP_SYS_NICE` or `RLIMIT_RTPRIO`) the engine logs a
//! warning and mixes as usual. Either way the room works.

mod common;

use std::time::Duration;

use common::{
    assert_hears, steady_window, toml_account, Call, Engine, EngineOptions, Source, ACCOUNT, TOKEN,
};

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

/// (thread name, scheduling policy, real-time priority) of every thread of `pid`: fields 2, 41
/// and 40 of proc(5)'s `stat`.
fn threads(pid: u32) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task list");
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        // After the name, fields start at 3 (state).
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let field = |n: usize| rest[n - 3].parse::<u32>().expect("numeric stat field");
        out.push((name, field(41), field(40)));
    }
    out
}

/// The mixing threads are `media-0`, `media-1`, …; `media-events` routes their events.
fn is_mixer(name: &str) -> bool {
    name.strip_prefix("media-")
        .is_some_and(|n| n.parse::<usize>().is_ok())
}

#[test]
fn media_threads_run_under_sched_fifo_at_the_configured_priority_or_say_why_not() {
    let config = format!(
        "{}[media]\nthreads = 2\nrealtime_priority = 3\n",
        toml_account(ACCOUNT, TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(&config, EngineOptions::default());
    let a = Call::dial(engine.sip, "rt", Source::tone(440.0));
    let b = Call::dial(engine.sip, "rt", Source::tone(1000.0));
    let c = Call::dial(engine.sip, "rt", Source::Silence);

    let all = threads(engine.pid());
    let media: Vec<_> = all.iter().filter(|t| is_mixer(&t.0)).collect();
    let names: Vec<&str> = media.iter().map(|t| t.0.as_str()).collect();
    assert!(
        names.contains(&"media-0") && names.contains(&"media-1"),
        "{all:?}"
    );
    let refused = engine
        .logs()
        .contains("media thread runs without real-time priority");
    for (name, policy, priority) in &media {
        if refused {
            assert_eq!((*policy, *priority), (SCHED_OTHER, 0), "{name}");
        } else {
            assert_eq!((*policy, *priority), (SCHED_FIFO, 3), "{name}: {all:?}");
        }
    }
    // Only the mixing threads: not the SIP, HTTP or event-routing ones.
    for (name, policy, _) in all.iter().filter(|t| !is_mixer(&t.0)) {
        assert_eq!(
            *policy, SCHED_OTHER,
            "{name} is not a mixing thread: {all:?}"
        );
    }

    let window = steady_window(Duration::from_millis(600), Duration::from_millis(1000));
    assert_hears("A (sends 440 Hz)", &a, window, &[1000.0], &[440.0]);
    assert_hears("B (sends 1000 Hz)", &b, window, &[440.0], &[1000.0]);
    assert_hears("C (silent)", &c, window, &[440.0, 1000.0], &[]);
}
