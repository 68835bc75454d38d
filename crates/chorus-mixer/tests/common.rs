//! Helpers shared by the mixer's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use chorus_media::g711::Law;
use chorus_media::opus::{OpusConfig, OpusEncoder};
use chorus_media::rtp::RtpHeader;
use chorus_media::tone::Sine;

/// Pre-encoded 20 ms payloads of a source, replayed in a loop.
pub struct Source {
    payloads: Vec<Vec<u8>>,
    next: usize,
    pub payload_type: u8,
    pub ssrc: u32,
    sequence: u16,
    timestamp: u32,
    step: u32,
    /// 20 ms ticks each packet lasts (2 for 40 ms packets).
    pub ticks_per_packet: usize,
}

impl Source {
    /// `freq` None = digital silence; `amplitude` peak in sample units.
    pub fn pcmu(freq: Option<f64>, amplitude: f64) -> Self {
        let mut sine = freq.map(|f| Sine::new(f, 8000, amplitude));
        let payloads = (0..50)
            .map(|_| {
                let mut pcm = [0i16; 160];
                if let Some(s) = sine.as_mut() {
                    s.fill(&mut pcm);
                }
                let mut out = vec![0u8; 160];
                Law::Mu.encode(&pcm, &mut out);
                out
            })
            .collect();
        Self::with(payloads, 0, 160)
    }

    pub fn opus(freq: Option<f64>, amplitude: f64) -> Self {
        let mut sine = freq.map(|f| Sine::new(f, 48_000, amplitude));
        let mut encoder = OpusEncoder::new(48_000, OpusConfig::default()).unwrap();
        let payloads = (0..50)
            .map(|_| {
                let mut pcm = [0i16; 960];
                if let Some(s) = sine.as_mut() {
                    s.fill(&mut pcm);
                }
                let mut out = vec![0u8; 1500];
                let n = encoder.encode(&pcm, &mut out).unwrap();
                out.truncate(n);
                out
            })
            .collect();
        Self::with(payloads, 111, 960)
    }

    /// Opus at 40 ms a packet: two consecutive 20 ms frames of [`Source::opus`] in one
    /// code 3 packet with explicit frame lengths (RFC 6716 §3.2.5).
    pub fn opus_40ms(freq: Option<f64>, amplitude: f64) -> Self {
        let twenty = Self::opus(freq, amplitude);
        let payloads = twenty
            .payloads
            .chunks(2)
            .map(|pair| {
                let (a, b) = (&pair[0], &pair[1]);
                assert_eq!(a[0] & 0x03, 0, "one frame per 20 ms packet");
                assert_eq!(a[0], b[0], "both frames in the same configuration");
                let (fa, fb) = (&a[1..], &b[1..]);
                assert!(fa.len() < 252, "one-byte frame length");
                // TOC with code 3, then the frame count byte: VBR, no padding, 2 frames.
                let mut packet = vec![a[0] | 0x03, 0x80 | 2, fa.len() as u8];
                packet.extend_from_slice(fa);
                packet.extend_from_slice(fb);
                packet
            })
            .collect();
        let mut source = Self::with(payloads, 111, 1920);
        source.ticks_per_packet = 2;
        source
    }

    fn with(payloads: Vec<Vec<u8>>, payload_type: u8, step: u32) -> Self {
        Self {
            payloads,
            next: 0,
            payload_type,
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            step,
            ticks_per_packet: 1,
        }
    }

    /// Goes on with `other`'s payloads (e.g. a tone after silence) in the same stream: same
    /// SSRC, sequence numbers and timestamps counting on.
    pub fn switch_to(&mut self, other: &Source) {
        self.payloads = other.payloads.clone();
        self.next = 0;
    }

    /// Every payload the source cycles through.
    pub fn payloads(&self) -> &[Vec<u8>] {
        &self.payloads
    }

    /// An RFC 4733 telephone-event packet (`event`, still held) in place of the next audio
    /// packet: numbered with the audio, timestamped at the event's start (`start`, the audio
    /// timestamp when the key went down), its duration so far in `ticks` packets.
    pub fn next_event_datagram(
        &mut self,
        payload_type: u8,
        event: u8,
        start: u32,
        ticks: u16,
    ) -> Vec<u8> {
        let duration = (self.step as u16).saturating_mul(ticks);
        let payload = [event, 10, (duration >> 8) as u8, duration as u8];
        let mut wire = vec![0u8; 12 + payload.len()];
        RtpHeader {
            payload_type,
            marker: ticks == 1,
            sequence: self.sequence,
            timestamp: start,
            ssrc: self.ssrc,
        }
        .write_with_payload(&payload, &mut wire)
        .unwrap();
        self.next += 1;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.step);
        wire
    }

    /// The sender stops for `ticks` packets' time without losing any (a pause in a VAD/DTX
    /// stream): the next packet's timestamp jumps, its sequence number follows on.
    pub fn pause(&mut self, ticks: u32) {
        self.timestamp = self.timestamp.wrapping_add(self.step * ticks);
    }

    /// The timestamp the next audio packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The next RTP datagram.
    pub fn next_datagram(&mut self) -> Vec<u8> {
        let payload = &self.payloads[self.next % self.payloads.len()];
        self.next += 1;
        let mut wire = vec![0u8; 12 + payload.len()];
        RtpHeader {
            payload_type: self.payload_type,
            marker: false,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        }
        .write_with_payload(payload, &mut wire)
        .unwrap();
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.step);
        wire
    }
}
