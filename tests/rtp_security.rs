//! Strict RTP source against RTP bleed and injection (the CVE-2025-53399 class): a stranger on
//! another address spraying a live call's RTP port is never mixed into the room, never sent
//! the room's audio, and every packet it sends is counted as dropped.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::audio::{ulaw_encode, Tone};
use common::media::{write_rtp, PCMU};
use common::{assert_hears, Call, Engine, Source};

const MEMBER_A_HZ: f64 = 440.0;
const MEMBER_B_HZ: f64 = 1000.0;
const STRANGER_HZ: f64 = 2600.0;
const SPRAY: Duration = Duration::from_secs(3);

/// What a stranger sent and got back.
struct Spray {
    sent: u64,
    received: u64,
}

/// From a socket on `from`, sends `target` two PCMU streams of a loud tone for `length`: one
/// with the SSRC of the victim's own stream (`copied_ssrc`) and steady sequence numbers, one
/// with a new random SSRC on every packet, 100 packets a second each. Counts whatever the
/// engine sends back, until half a second after the last packet.
fn spray(from: &str, target: SocketAddr, copied_ssrc: u32, length: Duration) -> Spray {
    let socket = UdpSocket::bind(from).expect("bind the stranger (any 127/8 address on Linux)");
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("read timeout");
    let reader = socket.try_clone().expect("clone the stranger socket");
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let listen = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if reader.recv_from(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Louder than the members, so a leak could not hide under their tones.
    let tone = Tone::new(STRANGER_HZ, 0.9);
    let start = Instant::now();
    let (mut sent, mut k) = (0u64, 0u64);
    let mut packet = Vec::with_capacity(200);
    let mut payload = [0u8; 160];
    while start.elapsed() < length {
        for (i, p) in payload.iter_mut().enumerate() {
            *p = ulaw_encode(tone.sample(k * 80 + i as u64));
        }
        let (sequence, timestamp) = (k as u16, (k * 80) as u32);
        write_rtp(
            &mut packet,
            k == 0,
            PCMU,
            sequence,
            timestamp,
            copied_ssrc,
            &payload,
        );
        sent += u64::from(socket.send_to(&packet, target).is_ok());
        write_rtp(
            &mut packet,
            true,
            PCMU,
            sequence,
            timestamp,
            rand::random(),
            &payload,
        );
        sent += u64::from(socket.send_to(&packet, target).is_ok());
        k += 1;
        let next = start + Duration::from_millis(10 * k);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Anything the engine would send the stranger has arrived by now.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    listen.join().expect("the stranger's reader");
    Spray {
        sent,
        received: received.load(Ordering::Relaxed),
    }
}

fn counter_total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_stranger_spraying_a_members_rtp_port_is_neither_mixed_nor_answered() {
    let engine = Engine::start(&[]);
    let a = Call::dial(engine.sip, "bleed", Source::tone(MEMBER_A_HZ));
    // The stranger starts at once, inside the learning window of both legs, and goes on past
    // it; the second member joins while it sprays.
    let target = a.remote_sdp.rtp_addr();
    let ssrc = a.media.ssrc();
    let sprayer = std::thread::spawn(move || spray("127.0.0.2:0", target, ssrc, SPRAY));
    let b = Call::dial(engine.sip, "bleed", Source::tone(MEMBER_B_HZ));
    let start = Instant::now();
    let result = sprayer.join().expect("the sprayer");
    // From once b's jitter buffer has filled to the end of the spray.
    let window = (
        start + Duration::from_millis(400),
        start + SPRAY - Duration::from_millis(200),
    );
    assert_hears(
        "b (the other member)",
        &b,
        window,
        &[MEMBER_A_HZ],
        &[STRANGER_HZ],
    );
    assert_hears(
        "a (the sprayed member)",
        &a,
        window,
        &[MEMBER_B_HZ],
        &[STRANGER_HZ],
    );
    assert_eq!(
        result.received, 0,
        "the engine sent the stranger {} packets",
        result.received
    );
    assert!(result.sent > 500, "the stranger sent {}", result.sent);
    let (status, metrics) = engine.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{metrics}");
    let dropped = counter_total(&metrics, "chorus_rtp_foreign_dropped_total");
    assert!(
        dropped >= result.sent as f64 * 0.95 && dropped <= result.sent as f64,
        "{dropped} foreign packets counted of {} sprayed",
        result.sent
    );
}
