//! Encodes, forwards and decodes per tick, counted by the thread's own counters on a manually
//! driven media thread: the shared-encode strategy must encode once per distinct mix (two
//! talkers get each other's packets), the naive one once per member, a silent room not at all,
//! and the talker cap must bound the work.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_mixer::{Codec, LegId, LegSpec, ManualThread, MixerConfig, RoomId, ThreadStatsSnapshot};
use common::Source;

const PEER: &str = "127.0.0.1:9";

struct Room {
    thread: ManualThread,
    sources: Vec<Source>,
    now: Instant,
}

impl Room {
    fn new(config: MixerConfig, codec: Codec, sources: Vec<Source>) -> Self {
        let mut thread = ManualThread::new(config);
        let handle = thread.handle();
        for i in 0..sources.len() {
            handle
                .add_leg(0, RoomId(1), LegSpec::detached(LegId(i as u64), codec))
                .unwrap();
        }
        thread.apply_commands();
        Self {
            thread,
            sources,
            now: Instant::now(),
        }
    }

    fn run(&mut self, ticks: usize) -> ThreadStatsSnapshot {
        let before = self.thread.stats();
        let peer: SocketAddr = PEER.parse().unwrap();
        for _ in 0..ticks {
            for (i, source) in self.sources.iter_mut().enumerate() {
                let datagram = source.next_datagram();
                assert!(self
                    .thread
                    .inject(LegId(i as u64), &datagram, peer, self.now));
            }
            self.thread.tick(self.now);
            self.now += Duration::from_millis(20);
        }
        let after = self.thread.stats();
        ThreadStatsSnapshot {
            encodes: after.encodes - before.encodes,
            decodes: after.decodes - before.decodes,
            forks: after.forks - before.forks,
            forwards: after.forwards - before.forwards,
            silence_sends: after.silence_sends - before.silence_sends,
            packets_out: after.packets_out - before.packets_out,
            ..after
        }
    }
}

fn talkers(k: usize, n: usize, opus: bool) -> Vec<Source> {
    (0..n)
        .map(|i| {
            let tone = (i < k).then_some(300.0 + 170.0 * i as f64);
            if opus {
                Source::opus(tone, 8000.0)
            } else {
                Source::pcmu(tone, 8000.0)
            }
        })
        .collect()
}

#[test]
fn shared_strategy_encodes_once_for_the_listeners_and_forwards_between_two_talkers() {
    let mut room = Room::new(MixerConfig::default(), Codec::PCMU, talkers(2, 10, false));
    room.run(20);
    let s = room.run(50);
    assert_eq!(
        s.encodes, 50,
        "1 shared per tick; the 2 talkers get each other's packets: {s:?}"
    );
    assert_eq!(s.forwards, 50 * 2, "{s:?}");
    // The talkers are decoded; the quiet listeners' G.711 frames are only measured, on
    // their bytes, and found too quiet to start talking.
    assert_eq!(s.decodes, 50 * 2, "{s:?}");
    assert_eq!(s.packets_out, 50 * 10, "{s:?}");
}

#[test]
fn naive_strategy_encodes_once_per_member() {
    let config = MixerConfig {
        shared_encoding: false,
        ..MixerConfig::default()
    };
    let mut room = Room::new(config, Codec::PCMU, talkers(2, 10, false));
    room.run(20);
    let s = room.run(50);
    assert_eq!(s.encodes, 50 * 10, "{s:?}");
}

#[test]
fn silent_room_sends_cached_silence_without_encoding() {
    let mut room = Room::new(MixerConfig::default(), Codec::PCMU, talkers(0, 10, false));
    room.run(20);
    let s = room.run(50);
    assert_eq!(s.encodes, 0, "{s:?}");
    assert_eq!(s.silence_sends, 50 * 10, "{s:?}");
}

#[test]
fn talker_cap_bounds_the_private_encodes() {
    let config = MixerConfig {
        max_talkers: 4,
        ..MixerConfig::default()
    };
    let mut room = Room::new(config, Codec::PCMU, talkers(7, 12, false));
    room.run(20);
    let s = room.run(50);
    assert_eq!(
        s.encodes,
        50 * 5,
        "4 mixed talkers + 1 shared per tick: {s:?}"
    );
}

#[test]
fn opus_room_shares_the_listener_encode_and_forks_a_new_talker() {
    let codec = Codec::opus(111, false, false);
    let mut sources = talkers(2, 10, true);
    let mut room = Room::new(MixerConfig::default(), codec, std::mem::take(&mut sources));
    room.run(20);
    let s = room.run(25);
    assert_eq!(s.encodes, 25, "{s:?}");
    assert_eq!(
        s.forwards,
        25 * 2,
        "the two talkers hear each other forwarded: {s:?}"
    );
    assert_eq!(s.forks, 0, "{s:?}");
    // Talkers are decoded every tick, the 8 quiet members one tick in four.
    assert_eq!(s.decodes, 25 * (2 + 2), "{s:?}");
    // A listener starts talking: its private encoder continues the shared stream, and with
    // three talkers each needs its own mix.
    room.sources[5] = Source::opus(Some(2000.0), 8000.0);
    let s = room.run(25);
    assert_eq!(s.forks, 1, "exactly one fork, at the switch: {s:?}");
    assert!(s.encodes > 25 && s.encodes <= 25 * 4, "{s:?}");
    let s = room.run(25);
    assert_eq!(s.encodes, 25 * 4, "3 private + 1 shared: {s:?}");
    assert_eq!(s.forwards, 0, "{s:?}");
}
