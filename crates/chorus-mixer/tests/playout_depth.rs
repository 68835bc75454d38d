//! The playout depth a real media thread settles at, over loopback UDP. The thread reads a
//! leg's socket once per period, so what decides the depth a leg needs is whether its packets
//! make the tick they are read at, not when within the period they came: a peer that answers
//! every packet of the mix at once is always in time for the next tick, and must be played
//! one frame deep however much the thread's own wake-ups wobble.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// The two tests share the machine's two cores with everything else: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Legs per room: one leg's peer delayed past a tick (a loaded host) holds that leg a frame
/// deeper for ten seconds, which the assertion below tolerates for one leg in four.
const LEGS: u64 = 4;

fn settles_one_frame_deep(codec: Codec, source: fn() -> Source) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mixer = Mixer::start(MixerConfig {
        threads: 1,
        ..MixerConfig::default()
    })
    .unwrap();
    let handle = mixer.handle();
    let mut stops = Vec::new();
    for i in 0..LEGS {
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
    // A media thread that woke half a period late or skipped ticks broke the premise (every
    // answer in time for the next tick): say so rather than blame the jitter buffer.
    if end.skipped_ticks > 0 || end.late_us_max >= 10_000 {
        eprintln!(
            "inconclusive: the host stalled the media thread ({} skipped ticks, {} µs late)",
            end.skipped_ticks, end.late_us_max
        );
        return;
    }
    let one_frame = end.playout_buckets[0] - settled.playout_buckets[0];
    let samples: u64 =
        end.playout_buckets.iter().sum::<u64>() - settled.playout_buckets.iter().sum::<u64>();
    assert!(samples >= LEGS, "{samples} playout samples in 2 s");
    assert!(
        4 * one_frame >= 3 * samples,
        "{one_frame} of {samples} playout samples at one 20 ms frame (buckets {:?} then {:?})",
        settled.playout_buckets,
        end.playout_buckets,
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
