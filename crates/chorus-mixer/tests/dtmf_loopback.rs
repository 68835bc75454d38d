//! DTMF over real loopback sockets on a manually stepped media thread: RFC 4733
//! telephone-events a phone sends become one `MixerEvent::Dtmf` per digit without disturbing
//! the mix, and digits we send arrive as well-formed telephone-events on the leg's stream.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chorus_media::g711::Law;
use chorus_media::rtp::{RtpHeader, RtpPacket};
use chorus_media::tone::Sine;
use chorus_mixer::{
    Codec, LegId, LegSpec, LegStats, ManualThread, MixerConfig, MixerError, MixerEvent, RoomId,
};

const TE_PT: u8 = 101;
const PHONE: LegId = LegId(1);
const LISTENER: LegId = LegId(2);

/// Goertzel power of `freq` in `samples` (8 kHz), in dB relative to a full-scale sine.
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

/// A phone's RTP stream: a 440 Hz tone, and RFC 4733 events in place of it while a key is
/// pressed, with one SSRC and one sequence numbering as real phones do.
struct Phone {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    sine: Sine,
}

impl Phone {
    fn new() -> Self {
        Self {
            ssrc: 0x1234_5678,
            sequence: 65_500, // wraps during the test
            timestamp: 4_294_960_000,
            sine: Sine::new(440.0, 8000, 8000.0),
        }
    }

    fn packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut wire = vec![0u8; 12 + payload.len()];
        RtpHeader {
            payload_type,
            marker,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        }
        .write_with_payload(payload, &mut wire)
        .unwrap();
        self.sequence = self.sequence.wrapping_add(1);
        wire
    }

    /// One 20 ms audio packet; the clock always advances, as the sampling clock does.
    fn audio(&mut self) -> Vec<u8> {
        let mut pcm = [0i16; 160];
        self.sine.fill(&mut pcm);
        let mut payload = [0u8; 160];
        Law::Mu.encode(&pcm, &mut payload);
        let ts = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(160);
        self.packet(0, false, ts, &payload)
    }

    /// One telephone-event packet of the event that started at `start` (RFC 4733 §2.3).
    fn event(&mut self, start: u32, code: u8, end: bool, duration: u16) -> Vec<u8> {
        let first = self.timestamp == start;
        self.timestamp = self.timestamp.wrapping_add(160);
        let [d0, d1] = duration.to_be_bytes();
        let flags = if end { 0x80 | 10 } else { 10 };
        self.packet(TE_PT, first, start, &[code, flags, d0, d1])
    }
}

struct Peer {
    socket: UdpSocket,
    leg: SocketAddr,
}

fn bind_pair() -> (UdpSocket, UdpSocket) {
    let leg = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_nonblocking(true).unwrap();
    (leg, peer)
}

/// A room of a phone (PCMU with telephone-event) and a silent PCMU listener.
fn room(thread: &ManualThread, listener_te: bool) -> (Peer, Peer) {
    let handle = thread.handle();
    let mut peers = Vec::new();
    for (id, te) in [(PHONE, true), (LISTENER, listener_te)] {
        let (leg_socket, peer_socket) = bind_pair();
        let leg = leg_socket.local_addr().unwrap();
        let mut spec = LegSpec::new(id, leg_socket, Codec::PCMU);
        spec.telephone_event_pt = te.then_some(TE_PT);
        spec.remote = Some(peer_socket.local_addr().unwrap());
        handle.add_leg(0, RoomId(1), spec).unwrap();
        peers.push(Peer {
            socket: peer_socket,
            leg,
        });
    }
    let listener = peers.pop().unwrap();
    let phone = peers.pop().unwrap();
    (phone, listener)
}

/// Sends this tick's datagrams, lets loopback deliver them, runs one tick.
fn step(thread: &mut ManualThread, now: &mut Instant, to: &Peer, datagrams: &[Vec<u8>]) {
    for d in datagrams {
        to.socket.send_to(d, to.leg).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1));
    thread.tick(*now);
    *now += Duration::from_millis(20);
}

fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

struct PhoneRun {
    digits: Vec<(RoomId, LegId, char, u32)>,
    listener_heard: Vec<i16>,
    phone_stats: LegStats,
    audio_sent: u64,
    events_sent: u64,
}

/// The phone talks, pressing 1, # and 5 in between: each press is two updates and three end
/// packets in place of the audio, and the last end packet is duplicated by the network one
/// tick later, among the audio.
fn phone_presses_1_hash_5() -> PhoneRun {
    let mut phone = Phone::new();
    let (mut audio_sent, mut events_sent) = (0, 0);
    // The datagrams of each tick.
    let mut plan: Vec<Vec<Vec<u8>>> = Vec::new();
    let talk = |phone: &mut Phone, plan: &mut Vec<Vec<Vec<u8>>>, ticks| {
        for _ in 0..ticks {
            plan.push(vec![phone.audio()]);
        }
        ticks
    };
    audio_sent += talk(&mut phone, &mut plan, 25);
    for (code, step) in [(1u8, 160u16), (11, 320), (5, 160)] {
        let start = phone.timestamp;
        for update in 1..=2 {
            plan.push(vec![phone.event(start, code, false, step * update)]);
        }
        let mut last = Vec::new();
        for _ in 0..3 {
            last = phone.event(start, code, true, step * 3);
            plan.push(vec![last.clone()]);
        }
        plan.push(vec![last, phone.audio()]);
        events_sent += 6;
        audio_sent += 1 + talk(&mut phone, &mut plan, 20);
    }

    let mut thread = ManualThread::new(MixerConfig::default());
    let (phone_peer, listener_peer) = room(&thread, false);
    thread.apply_commands();
    let mut now = Instant::now();
    let mut heard = Vec::new();
    let mut pcm = [0i16; 160];
    for datagrams in &plan {
        step(&mut thread, &mut now, &phone_peer, datagrams);
        for d in drain(&listener_peer.socket) {
            let packet = RtpPacket::parse(&d).unwrap();
            Law::Mu.decode(packet.payload, &mut pcm);
            heard.extend_from_slice(&pcm[..packet.payload.len()]);
        }
    }
    // It leaves, so its counters come back.
    thread.handle().remove_leg(0, PHONE).unwrap();
    thread.apply_commands();
    let mut digits = Vec::new();
    let mut phone_stats = None;
    while let Ok(event) = thread.events().try_recv() {
        match event {
            MixerEvent::Dtmf {
                room,
                leg,
                digit,
                duration_ms,
            } => digits.push((room, leg, digit, duration_ms)),
            MixerEvent::LegRemoved { leg, stats, .. } if leg == PHONE => phone_stats = Some(stats),
            _ => {}
        }
    }
    PhoneRun {
        digits,
        listener_heard: heard,
        phone_stats: phone_stats.unwrap(),
        audio_sent,
        events_sent,
    }
}

#[test]
fn telephone_events_are_reported_once_per_digit_in_order() {
    let run = phone_presses_1_hash_5();
    let r = RoomId(1);
    assert_eq!(
        run.digits,
        [
            (r, PHONE, '1', 60),
            (r, PHONE, '#', 120),
            (r, PHONE, '5', 60)
        ]
    );
    assert_eq!(run.phone_stats.telephone_events, run.events_sent);
}

#[test]
fn audio_around_telephone_events_is_still_mixed() {
    let run = phone_presses_1_hash_5();
    // Skip the jitter buffer filling and the talk-start hysteresis.
    let heard = &run.listener_heard[160 * 20..];
    assert!(heard.len() >= 160 * 80, "{} samples", heard.len());
    assert!(
        level_db(heard, 440.0) > -20.0,
        "the listener hears the phone: {:.1} dB",
        level_db(heard, 440.0)
    );
    // Events never reach the jitter buffer: only the audio packets were stored.
    assert_eq!(run.phone_stats.jitter.stored, run.audio_sent);
    assert_eq!(run.phone_stats.unexpected_pt, 0);
}

#[test]
fn telephone_events_cost_no_audio_and_the_phone_is_heard_again_after_each_digit() {
    let run = phone_presses_1_hash_5();
    let jitter = run.phone_stats.jitter;
    // RFC 4733 §2.1: the events took the audio's sequence numbers; none of them is a loss,
    // nothing was concealed, the buffer neither restarted nor ran dry, and every audio
    // packet played.
    assert_eq!(
        (
            jitter.lost,
            jitter.restarts,
            jitter.underruns,
            jitter.late,
            jitter.trimmed
        ),
        (0, 0, 0, 0, 0),
        "{jitter:?}"
    );
    assert_eq!(run.phone_stats.concealed_frames, 0);
    assert_eq!(jitter.stored, run.audio_sent);
    // Two updates and three ends per digit; the network's duplicate is not noted again.
    assert_eq!(jitter.non_audio, 3 * 5);
    // Each digit replaced five frames of audio, which play as silence.
    assert_eq!(jitter.silence, 3 * 5);
    // After the third digit the listener hears the phone's tone again.
    let tail = &run.listener_heard[run.listener_heard.len() - 160 * 10..];
    assert!(
        level_db(tail, 440.0) > -20.0,
        "the phone is heard after its digits: {:.1} dB",
        level_db(tail, 440.0)
    );
}

/// A received telephone-event packet: (sequence, marker, timestamp, ssrc, code, end, duration).
type EventPacket = (u16, bool, u32, u32, u8, bool, u16);

#[test]
fn sent_digits_arrive_as_rfc4733_events_on_the_legs_stream() {
    let mut thread = ManualThread::new(MixerConfig::default());
    let (phone_peer, _listener) = room(&thread, false);
    thread.apply_commands();
    let mut now = Instant::now();
    let mut packets = Vec::new();
    for _ in 0..5 {
        step(&mut thread, &mut now, &phone_peer, &[]);
        packets.extend(drain(&phone_peer.socket));
    }
    let handle = thread.handle();
    handle.send_dtmf(0, PHONE, "1#").unwrap();
    handle.send_dtmf(0, PHONE, "9").unwrap();
    thread.apply_commands();
    for _ in 0..40 {
        step(&mut thread, &mut now, &phone_peer, &[]);
        packets.extend(drain(&phone_peer.socket));
    }

    let parsed: Vec<_> = packets
        .iter()
        .map(|d| RtpPacket::parse(d).unwrap())
        .collect();
    // One stream: one SSRC, sequence numbers without a gap across audio and events.
    assert!(parsed.iter().all(|p| p.ssrc == parsed[0].ssrc));
    for pair in parsed.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
    }
    let events: Vec<EventPacket> = parsed
        .iter()
        .filter(|p| p.payload_type == TE_PT)
        .map(|p| {
            let e = p.payload;
            assert_eq!(e.len(), 4);
            let duration = u16::from_be_bytes([e[2], e[3]]);
            (
                p.sequence,
                p.marker,
                p.timestamp,
                p.ssrc,
                e[0],
                e[1] & 0x80 != 0,
                duration,
            )
        })
        .collect();
    assert_eq!(events.len(), 3 * 8, "five updates and three ends per digit");
    for (digit, code) in events.chunks(8).zip([1u8, 11, 9]) {
        assert!(digit.iter().all(|e| e.4 == code), "event code {code}");
        assert!(digit[0].1, "marker on the first packet");
        assert!(
            digit[1..].iter().all(|e| !e.1),
            "marker on the first packet only"
        );
        assert!(
            digit.iter().all(|e| e.2 == digit[0].2),
            "one timestamp per event"
        );
        let ends: Vec<bool> = digit.iter().map(|e| e.5).collect();
        assert_eq!(ends, [false, false, false, false, false, true, true, true]);
        let durations: Vec<u16> = digit.iter().map(|e| e.6).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
        // Audio stops while the digit is sent: its packets are consecutive on the stream.
        assert_eq!(digit[7].0, digit[0].0.wrapping_add(7));
    }
    assert!(events[0].2 != events[8].2 && events[8].2 != events[16].2);
    // 60 ms of audio between digits, the first packet of it starting a talkspurt.
    let second_start = parsed
        .iter()
        .position(|p| p.sequence == events[8].0)
        .unwrap();
    let gap = &parsed[second_start - 3..second_start];
    assert!(
        gap.iter().all(|p| p.payload_type == 0),
        "audio between digits"
    );
    assert!(gap[0].marker && !gap[1].marker);
    // The audio clock ran on underneath: 11 ticks per digit at 160 samples each.
    assert_eq!(events[8].2.wrapping_sub(events[0].2), 11 * 160);

    let sent: Vec<_> = std::iter::from_fn(|| thread.events().try_recv().ok())
        .filter_map(|e| match e {
            MixerEvent::DtmfSent { leg, interrupted } => Some((leg, interrupted)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [(PHONE, false), (PHONE, false)], "one per call");
}

#[test]
fn digits_are_refused_without_telephone_event() {
    let thread = ManualThread::new(MixerConfig::default());
    let (_phone, _listener) = room(&thread, false);
    let handle = thread.handle();
    assert!(matches!(
        handle.send_dtmf(0, LISTENER, "1"),
        Err(MixerError::NoTelephoneEvent { leg }) if leg == LISTENER
    ));
    assert!(matches!(
        handle.send_dtmf(0, LegId(99), "1"),
        Err(MixerError::NoTelephoneEvent { .. })
    ));
    assert!(matches!(
        handle.send_dtmf(0, PHONE, "12x"),
        Err(MixerError::InvalidDtmfDigit('x'))
    ));
    assert!(matches!(
        handle.send_dtmf(0, PHONE, ""),
        Err(MixerError::NoDtmfDigits)
    ));
    handle.send_dtmf(0, PHONE, "1w2W*#ABCDabcd").unwrap();
}

#[test]
fn renegotiation_without_telephone_event_interrupts_digits_being_sent() {
    let mut thread = ManualThread::new(MixerConfig::default());
    let (phone_peer, _listener) = room(&thread, false);
    let handle = thread.handle();
    thread.apply_commands();
    let mut now = Instant::now();
    handle.send_dtmf(0, PHONE, "123").unwrap();
    thread.apply_commands();
    for _ in 0..4 {
        step(&mut thread, &mut now, &phone_peer, &[]);
    }
    let update = chorus_mixer::LegUpdate {
        codec: Codec::PCMU,
        telephone_event_pt: None,
        remote: None,
        flow: chorus_mixer::Flow::SEND_RECV,
    };
    handle.update_leg(0, PHONE, update).unwrap();
    assert!(matches!(
        handle.send_dtmf(0, PHONE, "4"),
        Err(MixerError::NoTelephoneEvent { .. })
    ));
    thread.apply_commands();
    drain(&phone_peer.socket);
    for _ in 0..4 {
        step(&mut thread, &mut now, &phone_peer, &[]);
    }
    let after = drain(&phone_peer.socket);
    assert!(after
        .iter()
        .all(|d| RtpPacket::parse(d).unwrap().payload_type == 0));
    let sent: Vec<_> = std::iter::from_fn(|| thread.events().try_recv().ok())
        .filter_map(|e| match e {
            MixerEvent::DtmfSent { leg, interrupted } => Some((leg, interrupted)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [(PHONE, true)]);
}
