//! The RTP side of a test call: one UDP socket (symmetric RTP: we send from the port we
//! advertise), a sender thread streaming 20 ms frames (PCMU unless told otherwise: PCMA or
//! Opus) at absolute deadlines, and a receiver thread that decodes and timestamps everything
//! that arrives.
//!
//! Received audio is stored at 8 kHz whatever the codec, so the analysis in `audio.rs` applies
//! to every call: Opus is decoded at 48 kHz and resampled to 8 kHz. Opus coding and that
//! resampling use `chorus-media` (there is no independent Opus implementation to use); G.711
//! stays the tests' own.

use std::collections::{HashSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus_media::opus::{OpusConfig, OpusDecoder, OpusEncoder, MAX_PACKET_BYTES};
use chorus_media::resample::Resampler;

use super::audio::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode, Tone, FRAME_SAMPLES};
use super::LOCALHOST;

pub const PCMU: u8 = 0;
pub const PCMA: u8 = 8;
/// Opus's RTP clock and the rate we encode and decode it at (RFC 7587 §4.1).
pub const OPUS_RATE: u32 = 48_000;
/// Samples (and RTP timestamp units) in one 20 ms Opus frame.
pub const OPUS_FRAME_SAMPLES: usize = 960;
const FRAME: Duration = Duration::from_millis(20);
const RTP_HEADER_LEN: usize = 12;

/// RFC 4733 timing of [`Media::send_dtmf`], in 20 ms packets: event updates for 100 ms, the
/// end packet three times, then normal audio for 60 ms before the next digit.
pub const DTMF_EVENT_PACKETS: u32 = 5;
pub const DTMF_END_PACKETS: u32 = 3;
pub const DTMF_GAP_PACKETS: u32 = 3;
/// The volume field of the events we send (-10 dBm0).
pub const DTMF_VOLUME: u8 = 10;

/// The RFC 4733 §3.2 event code of a DTMF digit: `0`-`9`, `*` = 10, `#` = 11, `A`-`D` =
/// 12-15 (lower case accepted).
pub fn dtmf_event_code(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The digit of an RFC 4733 event code; `'?'` for events that are not DTMF digits (16 is
/// flash, 32+ are tones and line events).
pub fn dtmf_digit(event: u8) -> char {
    match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => '?',
    }
}

/// An RFC 4733 §2.3 event payload: (event, end bit, volume, duration).
pub fn parse_dtmf_payload(payload: &[u8]) -> Option<(u8, bool, u8, u16)> {
    let p = payload.get(..4)?;
    Some((
        p[0],
        p[1] & 0x80 != 0,
        p[1] & 0x3F,
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

pub fn write_dtmf_payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let [hi, lo] = duration.to_be_bytes();
    [event, if end { 0x80 } else { 0 } | (volume & 0x3F), hi, lo]
}

/// One received RFC 4733 event packet (see [`Media::received_dtmf`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtmfPacket {
    pub at: Instant,
    pub from: SocketAddr,
    pub ssrc: u32,
    pub seq: u16,
    /// The RTP timestamp: the start of the event, the same in all of its packets.
    pub timestamp: u32,
    pub marker: bool,
    pub event: u8,
    /// [`dtmf_digit`] of `event`.
    pub digit: char,
    pub end: bool,
    pub volume: u8,
    /// In RTP timestamp units since `timestamp`.
    pub duration: u16,
}

/// What a test call sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    Silence,
    Tone(Tone),
}

impl Source {
    pub fn tone(freq_hz: f64) -> Source {
        // -10.5 dBFS: loud and clear, with headroom for a mix of several members.
        Source::Tone(Tone::new(freq_hz, 0.3))
    }

    fn sample(&self, n: u64) -> i16 {
        self.sample_at(n, super::audio::SAMPLE_RATE)
    }

    /// Sample `n` of the source at `rate` Hz.
    pub fn sample_at(&self, n: u64, rate: u32) -> i16 {
        match self {
            Source::Silence => 0,
            Source::Tone(t) => t.sample_at(n, rate),
        }
    }
}

/// The codec a media endpoint sends, and decodes besides PCMU and PCMA (which are always
/// decoded, by their static payload types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Opus at the dynamic payload type negotiated in SDP.
    Opus {
        pt: u8,
    },
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => PCMU,
            Codec::Pcma => PCMA,
            Codec::Opus { pt } => pt,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus { .. } => "Opus",
        }
    }

    /// RTP timestamp units per 20 ms packet.
    pub fn frame_ticks(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => FRAME_SAMPLES as u32,
            Codec::Opus { .. } => OPUS_FRAME_SAMPLES as u32,
        }
    }

    /// The codec for an SDP encoding name (as [`super::sdp::AudioSdp::encoding`] gives it)
    /// at payload type `pt`; None for anything else.
    pub fn from_encoding(encoding: &str, pt: u8) -> Option<Codec> {
        match encoding.to_ascii_uppercase().as_str() {
            "PCMU" => Some(Codec::Pcmu),
            "PCMA" => Some(Codec::Pcma),
            "OPUS" => Some(Codec::Opus { pt }),
            _ => None,
        }
    }
}

/// One received RTP packet.
#[derive(Clone, Debug)]
pub struct RxPacket {
    pub at: Instant,
    pub from: SocketAddr,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    /// Decoded audio at 8 kHz for PCMU, PCMA and (resampled) Opus packets; empty for any
    /// other payload type.
    pub samples: Vec<i16>,
    /// RTP payload length in bytes (after any padding is removed).
    pub payload_len: usize,
    /// The RTP payload of packets that are not decoded as audio (telephone-event, comfort
    /// noise, unknown types); empty for audio packets.
    pub payload: Vec<u8>,
}

/// A parsed RTP header (RFC 3550 §5.1) and the offset of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_offset: usize,
    pub payload_end: usize,
}

impl RtpHeader {
    pub fn parse(buf: &[u8]) -> Option<RtpHeader> {
        if buf.len() < RTP_HEADER_LEN || buf[0] >> 6 != 2 {
            return None;
        }
        let csrc_count = usize::from(buf[0] & 0x0F);
        let mut offset = RTP_HEADER_LEN + 4 * csrc_count;
        if buf[0] & 0x10 != 0 {
            let ext = buf.get(offset..offset + 4)?;
            offset += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = buf.len();
        if buf[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*buf.last()?))?;
        }
        if offset > end {
            return None;
        }
        Some(RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7F,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload_offset: offset,
            payload_end: end,
        })
    }
}

pub fn write_rtp(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (payload_type & 0x7F));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

struct Shared {
    stop: AtomicBool,
    /// Where the sender sends; None until the far end's SDP is known.
    dest: Mutex<Option<SocketAddr>>,
    source: Mutex<Source>,
    codec: Mutex<Codec>,
    sending: AtomicBool,
    sent: AtomicU64,
    /// The SSRC of what we send.
    ssrc: AtomicU32,
    received: Mutex<Vec<RxPacket>>,
    /// Digits [`Media::send_dtmf`] queued for the sender thread.
    dtmf_queue: Mutex<VecDeque<DtmfDigit>>,
    /// Digits queued or being sent (cleared after the last end packet of each).
    dtmf_pending: AtomicUsize,
}

#[derive(Clone, Copy, Debug)]
struct DtmfDigit {
    event: u8,
    payload_type: u8,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking media thread must not hide the test's own failure behind a poison error.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Media {
    pub local: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Media {
    /// Binds the RTP socket and starts both threads; nothing is sent until [`Media::set_dest`].
    pub fn start(source: Source) -> std::io::Result<Media> {
        let socket = UdpSocket::bind((LOCALHOST, 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            dest: Mutex::new(None),
            source: Mutex::new(source),
            codec: Mutex::new(Codec::Pcmu),
            sending: AtomicBool::new(true),
            sent: AtomicU64::new(0),
            ssrc: AtomicU32::new(0),
            received: Mutex::new(Vec::new()),
            dtmf_queue: Mutex::new(VecDeque::new()),
            dtmf_pending: AtomicUsize::new(0),
        });
        let rx_socket = socket.try_clone()?;
        let rx_shared = Arc::clone(&shared);
        let receiver = std::thread::Builder::new()
            .name(format!("rtp-rx-{}", local.port()))
            .spawn(move || receive_loop(rx_socket, rx_shared))?;
        let tx_shared = Arc::clone(&shared);
        let sender = std::thread::Builder::new()
            .name(format!("rtp-tx-{}", local.port()))
            .spawn(move || send_loop(socket, tx_shared))?;
        Ok(Media {
            local,
            shared,
            threads: vec![receiver, sender],
        })
    }

    /// The SSRC of the stream we send (RFC 3550 §5.1; random, fixed for the endpoint's life).
    pub fn ssrc(&self) -> u32 {
        self.shared.ssrc.load(Ordering::Relaxed)
    }

    pub fn set_dest(&self, dest: SocketAddr) {
        *lock(&self.shared.dest) = Some(dest);
    }

    /// What we send from now on (and which dynamic payload type is decoded as Opus).
    pub fn set_codec(&self, codec: Codec) {
        *lock(&self.shared.codec) = codec;
    }

    pub fn codec(&self) -> Codec {
        *lock(&self.shared.codec)
    }

    pub fn set_source(&self, source: Source) {
        *lock(&self.shared.source) = source;
    }

    pub fn set_sending(&self, on: bool) {
        self.shared.sending.store(on, Ordering::Relaxed);
    }

    /// RTP packets sent so far, audio and DTMF events.
    pub fn sent_packets(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Queues `digits` (`0`-`9`, `*`, `#`, `A`-`D`) for the sender thread, which sends each as
    /// an RFC 4733 event of `payload_type` in its own stream (same SSRC, continuing sequence
    /// numbers, timestamps at the codec's clock: 8 kHz, 48 kHz for Opus): an update every
    /// 20 ms for 100 ms (the first with the marker bit, all with the timestamp of the event's
    /// start and a duration growing by one packet's worth), the end packet three times at the
    /// same 20 ms pace with the final duration (800 at 8 kHz), then 60 ms of audio before the
    /// next digit. No audio is sent during an event. Returns at once; see
    /// [`Media::wait_dtmf_sent`]. Like audio, events are only sent while the media has a
    /// destination and is sending. Panics on a character that is not a DTMF digit.
    pub fn send_dtmf(&self, digits: &str, payload_type: u8) {
        let queued: Vec<DtmfDigit> = digits
            .chars()
            .map(|c| DtmfDigit {
                event: dtmf_event_code(c)
                    .unwrap_or_else(|| panic!("{c:?} in {digits:?} is not a DTMF digit")),
                payload_type,
            })
            .collect();
        let mut queue = lock(&self.shared.dtmf_queue);
        self.shared
            .dtmf_pending
            .fetch_add(queued.len(), Ordering::Relaxed);
        queue.extend(queued);
    }

    /// Some queued digit has not had all its end packets sent yet.
    pub fn dtmf_in_progress(&self) -> bool {
        self.shared.dtmf_pending.load(Ordering::Relaxed) > 0
    }

    /// Waits until every queued digit has been sent (its last end packet); false on timeout.
    pub fn wait_dtmf_sent(&self, timeout: Duration) -> bool {
        super::wait_until(timeout, || !self.dtmf_in_progress())
    }

    /// Every received RFC 4733 packet of `payload_type`, in arrival order.
    pub fn received_dtmf(&self, payload_type: u8) -> Vec<DtmfPacket> {
        lock(&self.shared.received)
            .iter()
            .filter(|p| p.payload_type == payload_type)
            .filter_map(|p| {
                let (event, end, volume, duration) = parse_dtmf_payload(&p.payload)?;
                Some(DtmfPacket {
                    at: p.at,
                    from: p.from,
                    ssrc: p.ssrc,
                    seq: p.seq,
                    timestamp: p.timestamp,
                    marker: p.marker,
                    event,
                    digit: dtmf_digit(event),
                    end,
                    volume,
                    duration,
                })
            })
            .collect()
    }

    /// The digits received as RFC 4733 events of `payload_type`: one per distinct (SSRC,
    /// event timestamp), in order of arrival, so updates and end retransmissions count once.
    pub fn received_dtmf_digits(&self, payload_type: u8) -> String {
        let mut seen = HashSet::new();
        self.received_dtmf(payload_type)
            .into_iter()
            .filter(|p| seen.insert((p.ssrc, p.timestamp)))
            .map(|p| p.digit)
            .collect()
    }

    pub fn clear_received(&self) {
        lock(&self.shared.received).clear();
    }

    /// Copies of the packets that arrived in `[from, to)`.
    pub fn packets_between(&self, from: Instant, to: Instant) -> Vec<RxPacket> {
        lock(&self.shared.received)
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .cloned()
            .collect()
    }

    pub fn packet_count(&self) -> usize {
        lock(&self.shared.received).len()
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        lock(&self.shared.received).last().map(|p| p.at)
    }

    /// Decoded audio (8 kHz) that arrived in `[from, to)`, in arrival order.
    pub fn audio_between(&self, from: Instant, to: Instant) -> Vec<i16> {
        lock(&self.shared.received)
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .flat_map(|p| p.samples.iter().copied())
            .collect()
    }

    /// The longest time in `[from, to)` without a packet arriving, counting the edges.
    pub fn max_gap_between(&self, from: Instant, to: Instant) -> Duration {
        let arrivals: Vec<Instant> = self
            .packets_between(from, to)
            .into_iter()
            .map(|p| p.at)
            .collect();
        std::iter::once(from)
            .chain(arrivals)
            .chain(std::iter::once(to))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }

    pub fn sources(&self) -> Vec<SocketAddr> {
        let mut from: Vec<SocketAddr> =
            lock(&self.shared.received).iter().map(|p| p.from).collect();
        from.sort();
        from.dedup();
        from
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Decodes received Opus to 8 kHz: libopus at 48 kHz, then the 48 → 8 kHz resampler.
struct OpusReceiver {
    ssrc: u32,
    decoder: OpusDecoder,
    resampler: Resampler,
    wide: Vec<i16>,
}

impl OpusReceiver {
    fn new(ssrc: u32) -> OpusReceiver {
        OpusReceiver {
            ssrc,
            decoder: OpusDecoder::new(OPUS_RATE).expect("Opus decoder at 48 kHz"),
            resampler: Resampler::new(OPUS_RATE, super::audio::SAMPLE_RATE)
                .expect("48 kHz to 8 kHz resampler"),
            // Room for the longest Opus packet (120 ms).
            wide: vec![0; 6 * OPUS_FRAME_SAMPLES],
        }
    }

    /// 8 kHz audio of one packet; empty if it does not decode (the test then hears a gap).
    fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        let Ok(n) = self.decoder.decode(payload, &mut self.wide, false) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(n / 6);
        for frame in self.wide[..n].chunks_exact(OPUS_FRAME_SAMPLES) {
            let mut narrow = [0i16; FRAME_SAMPLES];
            if self.resampler.process(frame, &mut narrow).is_ok() {
                out.extend_from_slice(&narrow);
            }
        }
        out
    }
}

fn receive_loop(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = [0u8; 2048];
    let mut opus: Option<OpusReceiver> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue, // read timeout: check the stop flag
        };
        let at = Instant::now();
        let Some(h) = RtpHeader::parse(&buf[..len]) else {
            continue; // RTCP or garbage is not audio
        };
        let payload = &buf[h.payload_offset..h.payload_end];
        let codec = *lock(&shared.codec);
        let samples: Vec<i16> = match h.payload_type {
            PCMU => payload.iter().map(|&b| ulaw_decode(b)).collect(),
            PCMA => payload.iter().map(|&b| alaw_decode(b)).collect(),
            pt if codec == (Codec::Opus { pt }) => {
                // A new SSRC is a new stream: start from fresh decoder and filter state.
                if opus.as_ref().is_none_or(|o| o.ssrc != h.ssrc) {
                    opus = Some(OpusReceiver::new(h.ssrc));
                }
                opus.as_mut().map(|o| o.decode(payload)).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let is_audio =
            matches!(h.payload_type, PCMU | PCMA) || codec == (Codec::Opus { pt: h.payload_type });
        lock(&shared.received).push(RxPacket {
            at,
            from,
            payload_type: h.payload_type,
            seq: h.seq,
            timestamp: h.timestamp,
            ssrc: h.ssrc,
            marker: h.marker,
            samples,
            payload_len: payload.len(),
            payload: if is_audio {
                Vec::new()
            } else {
                payload.to_vec()
            },
        });
    }
}

/// Where the sender is in [`Media::send_dtmf`]'s digit sequence.
#[derive(Clone, Copy, Debug)]
enum DtmfState {
    Idle,
    /// Sending `digit`'s event: `sent` of its packets (updates, then end packets) are out.
    Event {
        digit: DtmfDigit,
        timestamp: u32,
        ticks: u32,
        sent: u32,
    },
    /// Audio until tick `until`, then the next digit.
    Gap {
        until: u64,
    },
}

fn send_loop(socket: UdpSocket, shared: Arc<Shared>) {
    let ssrc: u32 = rand::random();
    shared.ssrc.store(ssrc, Ordering::Relaxed);
    let seq0: u16 = rand::random();
    let ts0: u32 = rand::random();
    let mut packet = Vec::with_capacity(RTP_HEADER_LEN + MAX_PACKET_BYTES);
    let mut payload = [0u8; MAX_PACKET_BYTES];
    let mut pcm = [0i16; OPUS_FRAME_SAMPLES];
    // Created on the first Opus frame; recreated after a switch away from and back to Opus.
    let mut encoder: Option<OpusEncoder> = None;
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut first = true;
    let mut dtmf = DtmfState::Idle;
    while !shared.stop.load(Ordering::Relaxed) {
        // Absolute deadlines: a late wake-up does not push every later packet back.
        let deadline = start + FRAME * k as u32;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        } else if now - deadline > FRAME * 10 {
            // After a long stall, skip ahead rather than burst; timestamps follow real time.
            k = (now - start).as_millis() as u64 / 20;
            continue;
        }
        let dest = *lock(&shared.dest);
        if let (Some(dest), true) = (dest, shared.sending.load(Ordering::Relaxed)) {
            let source = *lock(&shared.source);
            let codec = *lock(&shared.codec);
            // The stream's timestamps run at the codec's RTP clock: 8 kHz, or 48 kHz for Opus.
            let base = k * u64::from(codec.frame_ticks());
            // One packet per 20 ms tick, audio or event, so sequence numbers and timestamps
            // keep following the tick count across events.
            let seq = seq0.wrapping_add(k as u16);
            if matches!(dtmf, DtmfState::Idle)
                || matches!(dtmf, DtmfState::Gap { until } if k >= until)
            {
                dtmf = match lock(&shared.dtmf_queue).pop_front() {
                    Some(digit) => DtmfState::Event {
                        digit,
                        timestamp: ts0.wrapping_add(base as u32),
                        ticks: codec.frame_ticks(),
                        sent: 0,
                    },
                    None => DtmfState::Idle,
                };
            }
            if let DtmfState::Event {
                digit,
                timestamp,
                ticks,
                sent,
            } = dtmf
            {
                let end = sent >= DTMF_EVENT_PACKETS;
                let duration = ticks * (sent + 1).min(DTMF_EVENT_PACKETS);
                let event = write_dtmf_payload(digit.event, end, DTMF_VOLUME, duration as u16);
                write_rtp(
                    &mut packet,
                    sent == 0,
                    digit.payload_type,
                    seq,
                    timestamp,
                    ssrc,
                    &event,
                );
                if socket.send_to(&packet, dest).is_ok() {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                dtmf = if sent + 1 == DTMF_EVENT_PACKETS + DTMF_END_PACKETS {
                    shared.dtmf_pending.fetch_sub(1, Ordering::Relaxed);
                    DtmfState::Gap {
                        until: k + 1 + u64::from(DTMF_GAP_PACKETS),
                    }
                } else {
                    DtmfState::Event {
                        digit,
                        timestamp,
                        ticks,
                        sent: sent + 1,
                    }
                };
                k += 1;
                continue;
            }
            let len = match codec {
                Codec::Pcmu | Codec::Pcma => {
                    encoder = None;
                    let encode = if codec == Codec::Pcmu {
                        ulaw_encode
                    } else {
                        alaw_encode
                    };
                    for (i, b) in payload[..FRAME_SAMPLES].iter_mut().enumerate() {
                        *b = encode(source.sample(base + i as u64));
                    }
                    FRAME_SAMPLES
                }
                Codec::Opus { .. } => {
                    for (i, s) in pcm.iter_mut().enumerate() {
                        *s = source.sample_at(base + i as u64, OPUS_RATE);
                    }
                    let encoder = encoder.get_or_insert_with(|| {
                        OpusEncoder::new(OPUS_RATE, OpusConfig::default())
                            .expect("Opus encoder at 48 kHz")
                    });
                    encoder
                        .encode(&pcm, &mut payload)
                        .expect("a 960-sample frame encodes into MAX_PACKET_BYTES")
                }
            };
            write_rtp(
                &mut packet,
                first,
                codec.payload_type(),
                seq,
                ts0.wrapping_add(base as u32),
                ssrc,
                &payload[..len],
            );
            if socket.send_to(&packet, dest).is_ok() {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                first = false;
            }
        }
        k += 1;
    }
}

pub mod selftest {
    use super::*;

    pub fn rtp_header_round_trips_and_rejects_garbage() {
        let mut buf = Vec::new();
        write_rtp(&mut buf, true, 0, 65535, 0xDEAD_BEEF, 42, &[1, 2, 3]);
        let h = RtpHeader::parse(&buf).expect("our packet parses");
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.seq, h.timestamp, h.ssrc),
            (0, 65535, 0xDEAD_BEEF, 42)
        );
        assert_eq!(&buf[h.payload_offset..h.payload_end], &[1, 2, 3]);
        assert!(RtpHeader::parse(&buf[..11]).is_none(), "short");
        assert!(RtpHeader::parse(&[0x40; 20]).is_none(), "version 1");
        // Padding longer than the packet must not underflow.
        let mut padded = buf.clone();
        padded[0] |= 0x20;
        *padded.last_mut().expect("non-empty") = 200;
        assert!(RtpHeader::parse(&padded).is_none());
    }

    /// Two media endpoints on loopback hear each other's tone at the expected level and pace.
    pub fn media_endpoints_exchange_tones_at_50_packets_per_second() {
        let a = Media::start(Source::tone(440.0)).expect("media a");
        let b = Media::start(Source::tone(1000.0)).expect("media b");
        a.set_dest(b.local);
        b.set_dest(a.local);
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(1000));
        let t1 = Instant::now();
        let n = b.packets_between(t0, t1).len();
        assert!((45..=55).contains(&n), "{n} packets in 1 s");
        assert!(b.max_gap_between(t0, t1) < Duration::from_millis(120));
        crate::common::Expectation::new(&[440.0], &[1000.0])
            .check(&b.audio_between(t0, t1))
            .expect("b hears a");
        crate::common::Expectation::new(&[1000.0], &[440.0])
            .check(&a.audio_between(t0, t1))
            .expect("a hears b");
        assert_eq!(
            a.sources(),
            vec![b.local],
            "symmetric RTP: b sends from its own port"
        );
    }

    /// The same through Opus (48 kHz, resampled to 8 kHz on receipt) and A-law: the
    /// endpoints' own coding must not cost a test its tone or its 20 dB rejection.
    pub fn media_endpoints_exchange_opus_and_pcma_tones() {
        for (codec, ticks) in [(Codec::Opus { pt: 109 }, 960u32), (Codec::Pcma, 160)] {
            let a = Media::start(Source::tone(440.0)).expect("media a");
            let b = Media::start(Source::tone(1000.0)).expect("media b");
            a.set_codec(codec);
            b.set_codec(codec);
            a.set_dest(b.local);
            b.set_dest(a.local);
            std::thread::sleep(Duration::from_millis(200));
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(1000));
            let t1 = Instant::now();
            let packets = b.packets_between(t0, t1);
            assert!(
                (45..=55).contains(&packets.len()),
                "{codec:?}: {} packets",
                packets.len()
            );
            assert!(packets.iter().all(
                |p| p.payload_type == codec.payload_type() && p.samples.len() == FRAME_SAMPLES
            ));
            assert!(
                packets
                    .windows(2)
                    .all(|w| w[1].timestamp.wrapping_sub(w[0].timestamp)
                        == ticks * u32::from(w[1].seq.wrapping_sub(w[0].seq))),
                "{codec:?}: timestamps step by {ticks}"
            );
            for (listener, hear, not) in [(&b, 440.0, 1000.0), (&a, 1000.0, 440.0)] {
                let audio = listener.audio_between(t0, t1);
                crate::common::Expectation::new(&[hear], &[not])
                    .check(&audio)
                    .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
                let db = crate::common::level_db(&audio, hear);
                assert!(
                    (db - (-10.46)).abs() < 1.5,
                    "{codec:?}: {hear} Hz reads {db:.2} dBFS"
                );
            }
        }
    }

    /// RFC 4733 events from one endpoint to another: the digits decode, each event has its
    /// marker, timestamp, growing durations and three end packets, and they sit in the audio
    /// stream's own sequence and timestamp space with 60 ms of audio between digits.
    pub fn media_endpoints_exchange_rfc4733_dtmf() {
        let pt = crate::common::sdp::TELEPHONE_EVENT_PT;
        assert_eq!(
            "0123456789*#ABCDabcd"
                .chars()
                .map(|c| dtmf_event_code(c).expect("a digit"))
                .collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 12, 13, 14, 15]
        );
        assert_eq!(
            (0..=16).map(dtmf_digit).collect::<String>(),
            "0123456789*#ABCD?"
        );
        assert_eq!(dtmf_event_code('x'), None);
        for (codec, ticks) in [(Codec::Pcmu, 160u32), (Codec::Opus { pt: 109 }, 960)] {
            let t0 = Instant::now();
            let a = Media::start(Source::tone(440.0)).expect("media a");
            let b = Media::start(Source::Silence).expect("media b");
            a.set_codec(codec);
            b.set_codec(codec);
            a.set_dest(b.local);
            std::thread::sleep(Duration::from_millis(100));
            assert!(!a.dtmf_in_progress());
            a.send_dtmf("12#", pt);
            assert!(a.dtmf_in_progress());
            assert!(
                a.wait_dtmf_sent(Duration::from_secs(3)),
                "{codec:?}: DTMF not sent in 3 s"
            );
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(b.received_dtmf_digits(pt), "12#", "{codec:?}");

            let events = b.received_dtmf(pt);
            let per_event = (DTMF_EVENT_PACKETS + DTMF_END_PACKETS) as usize;
            assert_eq!(events.len(), 3 * per_event, "{codec:?}: {events:#?}");
            for (group, digit) in events.chunks(per_event).zip(['1', '2', '#']) {
                let summary: Vec<(char, bool, bool, u16, u8)> = group
                    .iter()
                    .map(|e| (e.digit, e.marker, e.end, e.duration, e.volume))
                    .collect();
                let expected: Vec<(char, bool, bool, u16, u8)> = (0..per_event as u32)
                    .map(|i| {
                        let n = (i + 1).min(DTMF_EVENT_PACKETS);
                        (
                            digit,
                            i == 0,
                            i >= DTMF_EVENT_PACKETS,
                            (n * ticks) as u16,
                            DTMF_VOLUME,
                        )
                    })
                    .collect();
                assert_eq!(summary, expected, "{codec:?}: event {digit}");
                assert!(
                    group.iter().all(|e| e.timestamp == group[0].timestamp),
                    "{codec:?}: one timestamp per event"
                );
            }

            // The whole stream: one SSRC, consecutive sequence numbers, one timestamp clock;
            // no audio during an event and three audio packets between events.
            let packets = b.packets_between(t0, Instant::now());
            assert!(packets.iter().all(|p| p.ssrc == packets[0].ssrc));
            assert!(
                packets
                    .windows(2)
                    .all(|w| w[1].seq == w[0].seq.wrapping_add(1)),
                "{codec:?}: sequence numbers continue through the events"
            );
            let tick_ts = |p: &RxPacket| {
                packets[0]
                    .timestamp
                    .wrapping_add(ticks * u32::from(p.seq.wrapping_sub(packets[0].seq)))
            };
            let mut kinds = String::new();
            for (i, p) in packets.iter().enumerate() {
                if p.payload_type == pt {
                    kinds.push('e');
                    if p.marker {
                        assert_eq!(p.timestamp, tick_ts(p), "{codec:?}: event start");
                    } else {
                        assert_eq!(p.timestamp, packets[i - 1].timestamp, "{codec:?}");
                    }
                } else {
                    assert_eq!(p.payload_type, codec.payload_type());
                    assert_eq!(p.timestamp, tick_ts(p), "{codec:?}: audio timestamps");
                    assert!(p.payload.is_empty(), "audio payloads are decoded, not kept");
                    kinds.push('a');
                }
            }
            let event = "e".repeat(per_event);
            let gap = "a".repeat(DTMF_GAP_PACKETS as usize);
            let expected = format!("a{event}{gap}{event}{gap}{event}a");
            let core = kinds.trim_start_matches('a').trim_end_matches('a');
            assert!(
                kinds.starts_with('a') && kinds.ends_with('a'),
                "{codec:?}: {kinds}"
            );
            assert_eq!(format!("a{core}a"), expected, "{codec:?}: {kinds}");
        }
    }
}
