//! The thread counters behind `chorus_rtp_packets_lost_total`, `chorus_rtp_jitter_seconds`,
//! `chorus_rtp_playout_delay_seconds` and `chorus_media_tick_duration_seconds`: sampled once a
//! second from the legs' jitter buffers, on a manually driven media thread.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_mixer::{Codec, LegId, LegSpec, ManualThread, MixerConfig, RoomId};
use common::Source;

fn room(legs: u64) -> ManualThread {
    let mut thread = ManualThread::new(MixerConfig::default());
    let handle = thread.handle();
    for i in 0..legs {
        handle
            .add_leg(0, RoomId(1), LegSpec::detached(LegId(i), Codec::PCMU))
            .unwrap();
    }
    thread.apply_commands();
    thread
}

#[test]
fn lost_packets_and_jitter_are_counted_once_a_second() {
    let mut thread = room(2);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut sources = [Source::pcmu(Some(440.0), 8000.0), Source::pcmu(None, 0.0)];
    let start = Instant::now();
    // 4 seconds; leg 0 loses every tenth packet and its packets arrive 0–8 ms late.
    for t in 0..200u32 {
        let now = start + Duration::from_millis(20 * u64::from(t));
        for (i, source) in sources.iter_mut().enumerate() {
            let datagram = source.next_datagram();
            if i == 0 && t % 10 == 5 {
                continue;
            }
            let late = if i == 0 {
                Duration::from_millis(u64::from(t * 7 % 9))
            } else {
                Duration::ZERO
            };
            assert!(thread.inject(LegId(i as u64), &datagram, peer, now + late));
        }
        thread.tick(now);
    }
    let stats = thread.stats();
    // 20 dropped; the last one or two may not have been noticed by the last sampling.
    assert!(
        (17..=20).contains(&stats.packets_lost),
        "lost {}",
        stats.packets_lost
    );
    let samples: u64 = stats.jitter_buckets.iter().sum();
    assert_eq!(samples, 2 * 4, "one sample per receiving leg per second");
    assert!(
        stats.jitter_us_total > 1_000,
        "leg 0 has jitter: {} µs in all",
        stats.jitter_us_total
    );
    // Playout delay: the target depth (2 frames to start with, adapting within 1-3) in time,
    // per receiving leg per second.
    let playouts: u64 = stats.playout_buckets.iter().sum();
    assert_eq!(playouts, 2 * 4);
    assert_eq!(
        stats.playout_buckets[..3].iter().sum::<u64>(),
        playouts,
        "1-3 frames of 20 ms: {:?}",
        stats.playout_buckets
    );
    assert!(
        (8 * 20_000..=8 * 60_000).contains(&stats.playout_us_total),
        "{} µs in all",
        stats.playout_us_total
    );
    let ticks: u64 = stats.tick_buckets.iter().sum();
    assert_eq!(ticks, 0, "manual ticks are not timed");
}

#[test]
fn a_leg_leaving_reports_its_last_losses() {
    let mut thread = room(1);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut source = Source::pcmu(Some(440.0), 8000.0);
    let start = Instant::now();
    // 30 periods (no sampling yet), losing 3 packets.
    for t in 0..30u64 {
        let now = start + Duration::from_millis(20 * t);
        let datagram = source.next_datagram();
        if t % 10 != 5 {
            assert!(thread.inject(LegId(0), &datagram, peer, now));
        }
        thread.tick(now);
    }
    assert_eq!(thread.stats().packets_lost, 0, "not sampled yet");
    thread.handle().remove_leg(0, LegId(0)).unwrap();
    thread.apply_commands();
    assert_eq!(thread.stats().packets_lost, 3);
}

#[test]
fn a_stall_then_a_burst_counts_underruns_and_trimmed_frames() {
    let mut thread = room(1);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut source = Source::pcmu(Some(440.0), 8000.0);
    let start = Instant::now();
    let mut held = Vec::new();
    let mut steady = thread.stats();
    // 4 seconds; the network stalls for 120 ms at 2 s, then delivers the six packets it held
    // at once with the seventh.
    for t in 0..200u64 {
        let now = start + Duration::from_millis(20 * t);
        held.push(source.next_datagram());
        if !(100..106).contains(&t) {
            for datagram in held.drain(..) {
                assert!(thread.inject(LegId(0), &datagram, peer, now));
            }
        }
        thread.tick(now);
        if t == 99 {
            // Steady: no underrun (the start's extra frame of depth may have been trimmed
            // once the buffer saw there was no jitter).
            steady = thread.stats();
            assert_eq!(steady.underruns, 0);
            assert!(steady.frames_trimmed <= 1, "{}", steady.frames_trimmed);
        }
    }
    let stats = thread.stats();
    assert_eq!(stats.packets_lost, 0, "nothing lost, only late");
    let underruns = stats.underruns - steady.underruns;
    assert!(
        (1..=6).contains(&underruns),
        "the stall drains the buffer: {underruns} underruns"
    );
    let trimmed = stats.frames_trimmed - steady.frames_trimmed;
    assert!(
        trimmed >= 1,
        "the burst is cut back to the target depth: {trimmed} trimmed"
    );
}
