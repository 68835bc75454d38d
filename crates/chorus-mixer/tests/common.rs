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

    fn with(payloads: Vec<Vec<u8>>, payload_type: u8, step: u32) -> Self {
        Self {
            payloads,
            next: 0,
            payload_type,
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            step,
        }
    }

    /// Every payload the source cycles through.
    pub fn payloads(&self) -> &[Vec<u8>] {
        &self.payloads
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
