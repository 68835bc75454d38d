//! A steady-state tick allocates nothing: a counting global allocator measures each tick of a
//! manually driven media thread running a G.711 room and an Opus room over real loopback
//! sockets, while talkers start and stop (exercising talker selection and encoder forks).
//!
//! This file holds a single test: the allocator counts every thread of the process.

#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use chorus_mixer::{Codec, LegId, LegSpec, ManualThread, MixerConfig, RoomId};
use common::Source;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

struct Peer {
    socket: UdpSocket,
    leg: std::net::SocketAddr,
    source: Source,
}

#[test]
fn steady_state_ticks_do_not_allocate() {
    let mut thread = ManualThread::new(MixerConfig::default());
    let handle = thread.handle();
    let mut peers = Vec::new();
    let rooms = [
        (RoomId(1), Codec::PCMU, false),
        (RoomId(2), Codec::opus(111, true, false), true),
    ];
    let mut id = 0;
    for (room, codec, opus) in rooms {
        for i in 0..10 {
            let leg_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let peer_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer_socket.set_nonblocking(true).unwrap();
            let leg_addr = leg_socket.local_addr().unwrap();
            let mut spec = LegSpec::new(LegId(id), leg_socket, codec);
            spec.remote = Some(peer_socket.local_addr().unwrap());
            handle.add_leg(0, room, spec).unwrap();
            let tone = (i < 2).then_some(400.0 + 300.0 * i as f64);
            let source = if opus {
                Source::opus(tone, 8000.0)
            } else {
                Source::pcmu(tone, 8000.0)
            };
            peers.push(Peer {
                socket: peer_socket,
                leg: leg_addr,
                source,
            });
            id += 1;
        }
    }
    thread.apply_commands();
    let mut now = Instant::now();
    let mut drain = [0u8; 2048];
    let mut step = |thread: &mut ManualThread, peers: &mut Vec<Peer>, now: Instant| -> u64 {
        for peer in peers.iter_mut() {
            let datagram = peer.source.next_datagram();
            peer.socket.send_to(&datagram, peer.leg).unwrap();
            while peer.socket.recv(&mut drain).is_ok() {}
        }
        // Let loopback deliver before the tick reads.
        std::thread::sleep(Duration::from_millis(1));
        let region = Region::new(GLOBAL);
        thread.tick(now);
        region.change().allocations as u64
    };
    // Warm-up: jitter buffers fill, groups and talkers settle.
    for _ in 0..100 {
        step(&mut thread, &mut peers, now);
        now += Duration::from_millis(20);
    }
    let mut allocations = 0;
    for t in 0..300 {
        if t == 100 {
            // A listener in each room starts talking (Opus: a fork), a talker stops.
            peers[5].source = Source::pcmu(Some(1500.0), 8000.0);
            peers[15].source = Source::opus(Some(1500.0), 8000.0);
            peers[0].source = Source::pcmu(None, 0.0);
            peers[10].source = Source::opus(None, 0.0);
        }
        allocations += step(&mut thread, &mut peers, now);
        now += Duration::from_millis(20);
    }
    let stats = thread.stats();
    assert!(stats.packets_in >= 20 * 350, "{stats:?}");
    assert!(stats.packets_out >= 20 * 350, "{stats:?}");
    assert!(
        stats.forks >= 1,
        "the Opus listener that started talking was forked: {stats:?}"
    );
    assert_eq!(allocations, 0, "heap allocations in 300 steady-state ticks");
}
