//! The playout depth a real media thread settles at, over loopback UDP. The thread reads a
//! leg's socket once per period, so what decides the depth a leg needs is whether its packets
//! make the tick they are read at, not when within the period they came: a peer that answers
//! every packet of the mix at once is always in time for the next tick, and must be played
//! one frame deep however much the thread's own wake-ups wobble.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use chorus_mixer::{Codec, LegId, LegSpec, Mixer, MixerConfig, RoomId};
use common::Source;

/// A peer that sends its next packet the moment a packet of the mix reaches it.
fn answering_peer(
    socket: UdpSocket,
    leg: std::net::SocketAddr,
    mut source: Source,
) -> impl FnOnce() {
    let stop = Arc::new(AtomicBool::new(false));
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let flag = stop.clone();
    let peer = thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !flag.load(Ordering::Relaxed) {
            if socket.recv(&mut buf).is_ok() {
                socket.send_to(&source.next_datagram(), leg).unwrap();
            }
        }
    });
    move || {
        stop.store(true, Ordering::Relaxed);
        peer.join().unwrap();
    }
}

fn settles_one_frame_deep(codec: Codec, source: fn() -> Source) {
    let mixer = Mixer::start(MixerConfig {
        threads: 1,
        ..MixerConfig::default()
    })
    .unwrap();
    let handle = mixer.handle();
    let mut stops = Vec::new();
    for i in 0..2u64 {
        let leg_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let leg_addr = leg_socket.local_addr().unwrap();
        let mut spec = LegSpec::new(LegId(i), leg_socket, codec);
        spec.remote = Some(peer_socket.local_addr().unwrap());
        handle.add_leg(0, RoomId(1), spec).unwrap();
        // The first packet starts the exchange; every later one answers the mix.
        let mut source = source();
        peer_socket
            .send_to(&source.next_datagram(), leg_addr)
            .unwrap();
        stops.push(answering_peer(peer_socket, leg_addr, source));
    }
    // A leg starts two frames deep. The start's irregular packets (the first one queued
    // before the leg's first tick) lift the estimate for a second or two; a clean second
    // later the target drops to one frame, and a second after that the extra frame is
    // trimmed: by 5 s it has settled.
    thread::sleep(Duration::from_secs(5));
    let settled = handle.stats(0).unwrap();
    thread::sleep(Duration::from_secs(2));
    let end = handle.stats(0).unwrap();
    for stop in stops {
        stop();
    }
    mixer.shutdown();
    let samples: u64 =
        end.playout_buckets.iter().sum::<u64>() - settled.playout_buckets.iter().sum::<u64>();
    let total_us = end.playout_us_total - settled.playout_us_total;
    assert!(samples >= 2, "{samples} playout samples in 2 s");
    assert_eq!(
        total_us,
        samples * 20_000,
        "every leg plays one 20 ms frame deep: {} µs mean; buckets {:?} then {:?}; jitter {:?} {} µs",
        total_us / samples,
        settled.playout_buckets,
        end.playout_buckets,
        end.jitter_buckets,
        end.jitter_us_total - settled.jitter_us_total,
    );
    assert_eq!(end.underruns, settled.underruns, "no gap once settled");
    assert_eq!(
        end.frames_trimmed, settled.frames_trimmed,
        "no skip once settled"
    );
}

#[test]
fn an_opus_peer_in_time_for_every_tick_is_played_one_frame_deep() {
    settles_one_frame_deep(Codec::opus(111, false, false), || {
        Source::opus(Some(440.0), 8000.0)
    });
}

#[test]
fn a_pcmu_peer_in_time_for_every_tick_is_played_one_frame_deep() {
    settles_one_frame_deep(Codec::PCMU, || Source::pcmu(Some(440.0), 8000.0));
}
