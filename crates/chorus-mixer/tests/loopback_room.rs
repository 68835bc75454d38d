//! A media thread mixing a real room over loopback UDP: three peers send tones to their legs'
//! sockets, and what each peer receives is checked by frequency analysis.

#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chorus_media::g711::Law;
use chorus_media::rtp::{RtpHeader, RtpPacket};
use chorus_media::tone::Sine;
use chorus_mixer::{Codec, LegId, LegSpec, MemberFlags, Mixer, MixerConfig, RoomId};

/// Goertzel power of `freq` in `samples`, in dB relative to a full-scale sine.
fn level_db(samples: &[i16], freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.sqrt() / samples.len() as f64;
    20.0 * (amplitude / 32768.0).max(1e-9).log10()
}

struct Peer {
    received: Arc<Mutex<Vec<i16>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// A peer that streams `freq` (or silence) to `leg_addr` and records what comes back.
fn peer(socket: UdpSocket, leg_addr: std::net::SocketAddr, freq: Option<f64>) -> Peer {
    let received = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let rx_socket = socket.try_clone().unwrap();
    rx_socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let (rx_stop, rx_received) = (stop.clone(), received.clone());
    let receiver = thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let mut pcm = [0i16; 160];
        while !rx_stop.load(Ordering::Relaxed) {
            if let Ok(n) = rx_socket.recv(&mut buf) {
                let packet = RtpPacket::parse(&buf[..n]).unwrap();
                Law::Mu.decode(packet.payload, &mut pcm);
                rx_received
                    .lock()
                    .unwrap()
                    .extend_from_slice(&pcm[..packet.payload.len()]);
            }
        }
    });
    let tx_stop = stop.clone();
    let sender = thread::spawn(move || {
        let mut sine = freq.map(|f| Sine::new(f, 8000, 8000.0));
        let mut pcm = [0i16; 160];
        let mut payload = [0u8; 160];
        let mut wire = [0u8; 172];
        let start = Instant::now();
        for i in 0u16.. {
            if tx_stop.load(Ordering::Relaxed) {
                break;
            }
            match sine.as_mut() {
                Some(s) => s.fill(&mut pcm),
                None => pcm.fill(0),
            }
            Law::Mu.encode(&pcm, &mut payload);
            let n = RtpHeader {
                payload_type: 0,
                marker: i == 0,
                sequence: i,
                timestamp: u32::from(i) * 160,
                ssrc: 1234,
            }
            .write_with_payload(&payload, &mut wire)
            .unwrap();
            socket.send_to(&wire[..n], leg_addr).unwrap();
            let next = start + Duration::from_millis(20) * u32::from(i + 1);
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    Peer {
        received,
        stop,
        threads: vec![receiver, sender],
    }
}

impl Peer {
    fn window(&self) -> Vec<i16> {
        self.received.lock().unwrap().clear();
        thread::sleep(Duration::from_millis(1000));
        self.received.lock().unwrap().clone()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

struct Room {
    mixer: Mixer,
    peers: Vec<Peer>,
}

fn room(tones: &[Option<f64>]) -> Room {
    let placements: Vec<_> = tones.iter().map(|&t| (0, RoomId(1), t)).collect();
    rooms(1, &placements)
}

/// Members placed as (thread, room, tone); leg ids are their indices.
fn rooms(threads: usize, placements: &[(usize, RoomId, Option<f64>)]) -> Room {
    let mixer = Mixer::start(MixerConfig {
        threads,
        ..MixerConfig::default()
    })
    .unwrap();
    let handle = mixer.handle();
    let mut peers = Vec::new();
    for (i, &(thread, room, tone)) in placements.iter().enumerate() {
        let leg_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let leg_addr = leg_socket.local_addr().unwrap();
        let mut spec = LegSpec::new(LegId(i as u64), leg_socket, Codec::PCMU);
        spec.remote = Some(peer_socket.local_addr().unwrap());
        handle.add_leg(thread, room, spec).unwrap();
        peers.push(peer(peer_socket, leg_addr, tone));
    }
    // Let jitter buffers fill and the first frames flow.
    thread::sleep(Duration::from_millis(300));
    Room { mixer, peers }
}

impl Room {
    fn stop(self) {
        for p in self.peers {
            p.stop();
        }
        self.mixer.shutdown();
    }
}

#[test]
fn each_member_hears_the_others_and_not_itself() {
    let room = room(&[Some(440.0), Some(1000.0), None]);
    let a = room.peers[0].window();
    let b = room.peers[1].window();
    let c = room.peers[2].window();
    assert!(a.len() >= 7000, "A received {} samples in 1 s", a.len());
    assert!(level_db(&a, 1000.0) > -20.0, "A hears B");
    assert!(
        level_db(&a, 440.0) < level_db(&a, 1000.0) - 20.0,
        "A does not hear itself"
    );
    assert!(level_db(&b, 440.0) > -20.0, "B hears A");
    assert!(
        level_db(&b, 1000.0) < level_db(&b, 440.0) - 20.0,
        "B does not hear itself"
    );
    assert!(
        level_db(&c, 440.0) > -20.0 && level_db(&c, 1000.0) > -20.0,
        "C hears both"
    );
    let stats = room.mixer.handle().stats(0).unwrap();
    assert_eq!(stats.rooms, 1);
    assert_eq!(stats.legs, 3);
    room.stop();
}

#[test]
fn muted_member_is_not_heard_and_deaf_member_hears_nothing() {
    let room = room(&[Some(440.0), Some(1000.0), None]);
    let handle = room.mixer.handle();
    handle
        .set_flags(
            0,
            LegId(0),
            MemberFlags {
                muted: true,
                deaf: false,
            },
        )
        .unwrap();
    handle
        .set_flags(
            0,
            LegId(1),
            MemberFlags {
                muted: false,
                deaf: true,
            },
        )
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    let a = room.peers[0].window();
    let b = room.peers[1].window();
    let c = room.peers[2].window();
    assert!(level_db(&c, 440.0) < -50.0, "muted A is not heard by C");
    assert!(level_db(&c, 1000.0) > -20.0, "deaf B is still heard by C");
    assert!(level_db(&a, 1000.0) > -20.0, "muted A still hears B");
    assert!(b.len() >= 7000, "deaf B still receives a stream");
    assert!(
        level_db(&b, 440.0) < -50.0 && level_db(&b, 1000.0) < -50.0,
        "deaf B hears nothing"
    );
    room.stop();
}

#[test]
fn removed_leg_comes_back_as_an_event_and_the_empty_room_goes() {
    let room = room(&[Some(440.0)]);
    let handle = room.mixer.handle();
    let events = room.mixer.events();
    handle.remove_leg(0, LegId(0)).unwrap();
    // Talking events may come first; the removal must arrive within a second.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).unwrap() {
            chorus_mixer::MixerEvent::LegRemoved { leg, stats, .. } => {
                assert_eq!(leg, LegId(0));
                assert!(stats.packets_in > 10, "{stats:?}");
                assert!(stats.packets_out > 10, "{stats:?}");
                break;
            }
            _ => continue,
        }
    }
    let stats = handle.stats(0).unwrap();
    assert_eq!((stats.rooms, stats.legs), (0, 0));
    room.stop();
}

#[test]
fn leg_handed_over_to_another_thread_joins_the_room_there() {
    let room = rooms(
        2,
        &[(0, RoomId(1), Some(440.0)), (1, RoomId(2), Some(1000.0))],
    );
    let a = room.peers[0].window();
    assert!(
        level_db(&a, 1000.0) < -50.0,
        "A alone on thread 0 hears nothing"
    );
    let handle = room.mixer.handle();
    handle.move_leg(0, LegId(0), 1, RoomId(2)).unwrap();
    thread::sleep(Duration::from_millis(300));
    let a = room.peers[0].window();
    let b = room.peers[1].window();
    assert!(level_db(&a, 1000.0) > -20.0, "A hears B after the handover");
    assert!(level_db(&b, 440.0) > -20.0, "B hears A after the handover");
    assert_eq!(handle.stats(0).unwrap().legs, 0);
    assert_eq!(handle.stats(1).unwrap().legs, 2);
    room.stop();
}

#[test]
fn playback_is_heard_only_by_its_member() {
    let room = room(&[None, None, None]);
    let handle = room.mixer.handle();
    let mut samples = vec![0i16; 8000];
    Sine::new(700.0, 8000, 8000.0).fill(&mut samples);
    handle
        .play(
            0,
            LegId(0),
            chorus_mixer::Playback::new(7, 8000, samples, 0),
        )
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    let a = room.peers[0].window();
    let b = room.peers[1].window();
    let c = room.peers[2].window();
    assert!(level_db(&a, 700.0) > -20.0, "the target hears its playback");
    assert!(level_db(&b, 700.0) < -50.0, "others do not");
    assert!(level_db(&c, 700.0) < -50.0, "others do not");
    handle.stop_play(0, LegId(0)).unwrap();
    thread::sleep(Duration::from_millis(100));
    let a = room.peers[0].window();
    assert!(level_db(&a, 700.0) < -50.0, "stopped");
    room.stop();
}
