//! A steady-state tick allocates nothing: a counting global allocator measures each tick of a
//! manually driven media thread running a G.711 room and an Opus room over real loopback
//! sockets, while talkers start and stop (exercising talker selection and encoder forks) and
//! DTMF digits are received and sent as RFC 4733 telephone-events, and each room's mix goes to a
//! listen-only tap.
//!
//! This file holds a single test: the allocator counts every thread of the process.

#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_media::rtp::RtpHeader;
use chorus_media::AudioTap;
use chorus_mixer::{Codec, LegId, LegSpec, ManualThread, MixerConfig, MixerEvent, RoomId};
use common::Source;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A tap that copies each frame into a buffer it owns, as a recorder's ring would.
struct CopyTap {
    buffer: Box<[i16; 960]>,
    frames: Arc<AtomicU64>,
}

impl AudioTap for CopyTap {
    fn push(&mut self, _rate: u32, samples: &[i16]) {
        self.buffer[..samples.len()].copy_from_slice(samples);
        self.frames.fetch_add(1, Ordering::Relaxed);
    }
}

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
    let mut tapped = Vec::new();
    for (room, codec, opus) in rooms {
        let frames = Arc::new(AtomicU64::new(0));
        let tap = CopyTap {
            buffer: Box::new([0; 960]),
            frames: frames.clone(),
        };
        handle.add_tap(0, room, 1, Box::new(tap)).unwrap();
        tapped.push(frames);
        for i in 0..10 {
            let leg_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let peer_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer_socket.set_nonblocking(true).unwrap();
            let leg_addr = leg_socket.local_addr().unwrap();
            let mut spec = LegSpec::new(LegId(id), leg_socket, codec);
            spec.remote = Some(peer_socket.local_addr().unwrap());
            spec.telephone_event_pt = Some(101);
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
        // A G.711 and an Opus member press a key every 200 ms: three updates, three ends.
        if t % 10 < 6 {
            for p in [3, 13] {
                let event = [
                    (t / 10 % 12) as u8,
                    if t % 10 >= 3 { 0x8a } else { 0x0a },
                    0,
                    160,
                ];
                let mut wire = [0u8; 16];
                RtpHeader {
                    payload_type: 101,
                    marker: t % 10 == 0,
                    sequence: t as u16,
                    timestamp: (t / 10) as u32 * 1600,
                    ssrc: peers[p].source.ssrc,
                }
                .write_with_payload(&event, &mut wire)
                .unwrap();
                peers[p].socket.send_to(&wire, peers[p].leg).unwrap();
            }
        }
        if t % 50 == 0 {
            // Queued outside the measured tick, as the control side does.
            handle.send_dtmf(0, LegId(4), "1#w").unwrap();
            handle.send_dtmf(0, LegId(14), "9*").unwrap();
            thread.apply_commands();
        }
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
    let (mut received, mut sent) = (0, 0);
    while let Ok(event) = thread.events().try_recv() {
        match event {
            MixerEvent::Dtmf { .. } => received += 1,
            MixerEvent::DtmfSent { .. } => sent += 1,
            _ => {}
        }
    }
    assert!(received >= 50, "digits received: {received}");
    assert!(sent >= 10, "digit strings sent: {sent}");
    for frames in &tapped {
        assert_eq!(
            frames.load(Ordering::Relaxed),
            400,
            "one tapped frame per tick"
        );
    }
    assert_eq!(allocations, 0, "heap allocations in 300 steady-state ticks");
}
