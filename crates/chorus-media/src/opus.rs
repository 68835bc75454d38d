//! Opus (RFC 6716) mono encoder and decoder for 20 ms frames, on the system libopus.
//!
//! # The reviewed `unsafe` exception
//!
//! The workspace forbids `unsafe`; this module is the one place in `chorus-media` that allows
//! it, because libopus is a C library and its calls are FFI. The rules that keep it sound:
//!
//! - Each codec owns its state memory: a `Box<[u64]>` of at least `opus_*_get_size(1)` bytes,
//!   initialised in place with `opus_*_init`. No libopus-allocated memory exists, so there is
//!   no destroy call to forget, `Drop` is the box's, and no raw pointer is ever stored: every
//!   call derives it from `&mut self`, so the borrow checker serialises access (the types are
//!   `Send` and `Sync` without an `unsafe impl`).
//! - `u64` words give the state the 8-byte alignment libopus assumes for its structs.
//! - Every length handed to libopus is the length of the Rust slice behind the pointer (capped
//!   to `i32::MAX`), so libopus can never read or write outside it.
//!
//! # Why the encoder state is ours
//!
//! libopus keeps every part of an encoder's state inside one contiguous block and addresses the
//! SILK and CELT sub-states by offset, not pointer, so the block is position-independent:
//! copying its bytes clones the encoder (measured in `FIELD-NOTES.md`; tested below). The mixer
//! relies on this to move a listener from the shared "everyone hears the same mix" encoder to a
//! private one without a glitch: the private encoder starts from a copy of the shared one, so
//! the listener's decoder sees one continuous stream.
//!
//! # RTP
//!
//! RFC 7587 §4.2: one Opus packet per RTP payload, timestamps always at 48 kHz whatever the
//! encoder's internal rate. At 20 ms that is 960 timestamp units per packet for every
//! `sample_rate` here; [`OpusEncoder::frame_samples`] is the PCM length at the codec's rate.

#![allow(unsafe_code)]

use std::os::raw::c_int;
use std::ptr;

use audiopus_sys as ffi;
use thiserror::Error;

/// Largest payload one 20 ms frame can produce: a TOC byte plus the 1275-byte frame limit of
/// RFC 6716 §3.2.1. An output buffer this big never makes [`OpusEncoder::encode`] fail.
pub const MAX_PACKET_BYTES: usize = 1276;

/// RTP timestamp units per 20 ms Opus packet: the RTP clock is always 48 kHz (RFC 7587 §4.1).
pub const RTP_FRAME_TICKS: u32 = 960;

/// Longest packet duration Opus allows (RFC 6716 §3.2.5), in samples at 48 kHz.
const MAX_PACKET_SAMPLES_48K: usize = 5760;

/// Why an Opus call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("Opus does not run at {0} Hz (8000, 12000, 16000, 24000 or 48000)")]
    UnsupportedSampleRate(u32),
    #[error("Opus {field} {value} is out of range")]
    InvalidConfig { field: &'static str, value: i32 },
    #[error("expected a {expected}-sample frame, got {got}")]
    FrameLength { expected: usize, got: usize },
    #[error("buffer of {capacity} samples or bytes is too small")]
    BufferTooSmall { capacity: usize },
    #[error("an empty payload is not an Opus packet (RFC 6716 §3.4 R1)")]
    EmptyPacket,
    #[error("corrupted or unsupported Opus packet")]
    InvalidPacket,
    #[error("cannot copy encoder state across sample rates ({ours} Hz from {theirs} Hz)")]
    SampleRateMismatch { ours: u32, theirs: u32 },
    #[error("libopus {call} failed with code {code}")]
    Libopus { call: &'static str, code: i32 },
}

/// Encoder settings (libopus CTLs). Mono, application VOIP, always.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusConfig {
    /// 0..=10; CPU cost roughly doubles from 0 to 5 and again to 10 (`FIELD-NOTES.md`).
    pub complexity: i32,
    /// Bits per second; `None` lets libopus choose from the rate and frame size.
    pub bitrate: Option<i32>,
    /// Send LBRR data for the previous frame in each packet (RFC 6716 §2.1.7); only takes
    /// effect when `expected_loss_pct` is above zero.
    pub inband_fec: bool,
    /// Discontinuous transmission: near-silent frames shrink to 1–2 bytes and most are not
    /// sent at all (`encode` returns a payload of length ≤ 2 that should not be sent).
    pub dtx: bool,
    /// 0..=100; how much loss the FEC and the encoder's robustness should plan for.
    pub expected_loss_pct: i32,
}

impl Default for OpusConfig {
    fn default() -> Self {
        Self {
            complexity: 5,
            bitrate: None,
            inband_fec: false,
            dtx: false,
            expected_loss_pct: 0,
        }
    }
}

/// A mono, 20 ms, VOIP-mode Opus encoder whose state lives in memory it owns.
#[derive(Debug)]
pub struct OpusEncoder {
    state: Box<[u64]>,
    sample_rate: u32,
    config: OpusConfig,
}

/// A mono Opus decoder producing PCM at a chosen rate (any packet decodes at any rate,
/// RFC 6716 §2).
#[derive(Debug)]
pub struct OpusDecoder {
    state: Box<[u64]>,
    sample_rate: u32,
}

impl OpusEncoder {
    pub fn new(sample_rate: u32, config: OpusConfig) -> Result<Self, CodecError> {
        check_rate(sample_rate)?;
        // SAFETY: a pure function of the channel count.
        let size = unsafe { ffi::opus_encoder_get_size(1) };
        let mut encoder = Self {
            state: state_words(size, "opus_encoder_get_size")?,
            sample_rate,
            config,
        };
        // SAFETY: the state box is at least `size` bytes (rounded up to whole u64 words),
        // 8-byte aligned, exclusively borrowed, and `opus_encoder_init` writes only inside it.
        let code = unsafe {
            ffi::opus_encoder_init(
                encoder.raw(),
                sample_rate as i32,
                1,
                ffi::OPUS_APPLICATION_VOIP as c_int,
            )
        };
        check(code, "opus_encoder_init")?;
        encoder.apply(config)?;
        Ok(encoder)
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn config(&self) -> OpusConfig {
        self.config
    }

    /// PCM samples in one 20 ms frame at [`Self::sample_rate`].
    pub fn frame_samples(&self) -> usize {
        frame_samples(self.sample_rate)
    }

    /// Encodes one 20 ms mono frame; returns payload length. No allocation.
    ///
    /// `pcm` must be exactly [`Self::frame_samples`] long; `out` of [`MAX_PACKET_BYTES`]
    /// always suffices.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let expected = self.frame_samples();
        if pcm.len() != expected {
            return Err(CodecError::FrameLength {
                expected,
                got: pcm.len(),
            });
        }
        // SAFETY: the state was initialised in `new`; `pcm` holds exactly `expected` samples
        // (one channel) and libopus writes at most `out.len()` bytes into `out`.
        let n = unsafe {
            ffi::opus_encode(
                self.raw(),
                pcm.as_ptr(),
                expected as c_int,
                out.as_mut_ptr(),
                clamp_len(out.len()),
            )
        };
        if n == ffi::OPUS_BUFFER_TOO_SMALL {
            return Err(CodecError::BufferTooSmall {
                capacity: out.len(),
            });
        }
        check(n, "opus_encode").map(|n| n as usize)
    }

    /// Makes this encoder's state a byte copy of `other`'s (same sample rate required), so a
    /// stream that continues with `self` decodes seamlessly at a peer that was receiving
    /// `other`'s packets. The configuration is part of the state and is copied too. No
    /// allocation.
    pub fn copy_state_from(&mut self, other: &OpusEncoder) -> Result<(), CodecError> {
        if other.sample_rate != self.sample_rate {
            return Err(CodecError::SampleRateMismatch {
                ours: self.sample_rate,
                theirs: other.sample_rate,
            });
        }
        // Both boxes were sized by `opus_encoder_get_size(1)`, so the lengths always agree;
        // the state is position-independent (module docs), so a byte copy is a clone.
        self.state.copy_from_slice(&other.state);
        self.config = other.config;
        Ok(())
    }

    /// Forgets the signal history (`OPUS_RESET_STATE`), keeping the configuration: for a new
    /// stream to a peer whose decoder starts fresh.
    pub fn reset(&mut self) -> Result<(), CodecError> {
        // SAFETY: initialised state; the reset request takes no arguments.
        let code = unsafe { ffi::opus_encoder_ctl(self.raw(), ffi::OPUS_RESET_STATE as c_int) };
        check(code, "OPUS_RESET_STATE").map(drop)
    }

    fn apply(&mut self, config: OpusConfig) -> Result<(), CodecError> {
        if !(0..=10).contains(&config.complexity) {
            return Err(CodecError::InvalidConfig {
                field: "complexity",
                value: config.complexity,
            });
        }
        if !(0..=100).contains(&config.expected_loss_pct) {
            return Err(CodecError::InvalidConfig {
                field: "expected_loss_pct",
                value: config.expected_loss_pct,
            });
        }
        // libopus clamps bitrates to 500..=512000 bps itself; anything else is a caller bug.
        let bitrate = match config.bitrate {
            None => ffi::OPUS_AUTO as c_int,
            Some(b) if (500..=512_000).contains(&b) => b,
            Some(b) => {
                return Err(CodecError::InvalidConfig {
                    field: "bitrate",
                    value: b,
                })
            }
        };
        let requests = [
            (
                ffi::OPUS_SET_COMPLEXITY_REQUEST,
                config.complexity,
                "OPUS_SET_COMPLEXITY",
            ),
            (ffi::OPUS_SET_BITRATE_REQUEST, bitrate, "OPUS_SET_BITRATE"),
            (
                ffi::OPUS_SET_INBAND_FEC_REQUEST,
                i32::from(config.inband_fec),
                "OPUS_SET_INBAND_FEC",
            ),
            (
                ffi::OPUS_SET_DTX_REQUEST,
                i32::from(config.dtx),
                "OPUS_SET_DTX",
            ),
            (
                ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
                config.expected_loss_pct,
                "OPUS_SET_PACKET_LOSS_PERC",
            ),
        ];
        for (request, value, call) in requests {
            // SAFETY: initialised state; each of these SET requests takes exactly one
            // `opus_int32` argument by value, which is what we pass.
            let code = unsafe { ffi::opus_encoder_ctl(self.raw(), request as c_int, value) };
            check(code, call)?;
        }
        self.config = config;
        Ok(())
    }

    fn raw(&mut self) -> *mut ffi::OpusEncoder {
        self.state.as_mut_ptr().cast()
    }
}

impl Clone for OpusEncoder {
    /// A byte copy of the state: the clone's output is bit-identical to the original's for the
    /// same input.
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            sample_rate: self.sample_rate,
            config: self.config,
        }
    }
}

impl OpusDecoder {
    pub fn new(sample_rate: u32) -> Result<Self, CodecError> {
        check_rate(sample_rate)?;
        // SAFETY: a pure function of the channel count.
        let size = unsafe { ffi::opus_decoder_get_size(1) };
        let mut decoder = Self {
            state: state_words(size, "opus_decoder_get_size")?,
            sample_rate,
        };
        // SAFETY: as for the encoder: an owned, aligned block of at least `size` bytes.
        let code = unsafe { ffi::opus_decoder_init(decoder.raw(), sample_rate as i32, 1) };
        check(code, "opus_decoder_init")?;
        Ok(decoder)
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// PCM samples in one 20 ms frame at [`Self::sample_rate`].
    pub fn frame_samples(&self) -> usize {
        frame_samples(self.sample_rate)
    }

    /// Decodes one packet into `out` (returns samples). `fec = true` decodes the in-band FEC
    /// data of `packet` for the PREVIOUS (lost) frame (RFC 6716 §2.1.7, libopus
    /// `decode_fec=1`); `out` must hold the frame length, and exactly one 20 ms frame is
    /// produced. When `packet` carries no FEC data libopus conceals instead, so the call still
    /// yields a usable frame.
    ///
    /// Packets come from the network: any bytes give `Ok` or `Err`, never a panic or a write
    /// past `out`.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [i16],
        fec: bool,
    ) -> Result<usize, CodecError> {
        if packet.is_empty() {
            // libopus would treat a zero length as "conceal"; on the wire it is malformed.
            return Err(CodecError::EmptyPacket);
        }
        let frame_size = if fec {
            // The FEC frame size must be exactly the lost duration (libopus API contract).
            let frame = self.frame_samples();
            if out.len() < frame {
                return Err(CodecError::BufferTooSmall {
                    capacity: out.len(),
                });
            }
            frame
        } else {
            out.len().min(self.max_packet_samples())
        };
        // SAFETY: initialised state; libopus reads `packet.len()` bytes and writes at most
        // `frame_size` ≤ `out.len()` samples (mono).
        let n = unsafe {
            ffi::opus_decode(
                self.raw(),
                packet.as_ptr(),
                clamp_len(packet.len()),
                out.as_mut_ptr(),
                frame_size as c_int,
                c_int::from(fec),
            )
        };
        match n {
            ffi::OPUS_INVALID_PACKET => Err(CodecError::InvalidPacket),
            ffi::OPUS_BUFFER_TOO_SMALL => Err(CodecError::BufferTooSmall {
                capacity: out.len(),
            }),
            n => check(n, "opus_decode").map(|n| n as usize),
        }
    }

    /// Packet loss concealment for one lost 20 ms frame (libopus decode with NULL data).
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        let frame = self.frame_samples();
        if out.len() < frame {
            return Err(CodecError::BufferTooSmall {
                capacity: out.len(),
            });
        }
        // SAFETY: initialised state; a NULL packet of length 0 asks for concealment, and
        // libopus writes at most `frame` ≤ `out.len()` samples.
        let n = unsafe {
            ffi::opus_decode(
                self.raw(),
                ptr::null(),
                0,
                out.as_mut_ptr(),
                frame as c_int,
                0,
            )
        };
        check(n, "opus_decode (PLC)").map(|n| n as usize)
    }

    /// Forgets the stream (`OPUS_RESET_STATE`): for a new SSRC.
    pub fn reset(&mut self) -> Result<(), CodecError> {
        // SAFETY: initialised state; the reset request takes no arguments.
        let code = unsafe { ffi::opus_decoder_ctl(self.raw(), ffi::OPUS_RESET_STATE as c_int) };
        check(code, "OPUS_RESET_STATE").map(drop)
    }

    fn max_packet_samples(&self) -> usize {
        MAX_PACKET_SAMPLES_48K * self.sample_rate as usize / 48_000
    }

    fn raw(&mut self) -> *mut ffi::OpusDecoder {
        self.state.as_mut_ptr().cast()
    }
}

/// Samples in one 20 ms frame at `rate`.
fn frame_samples(rate: u32) -> usize {
    rate as usize / 50
}

fn check_rate(rate: u32) -> Result<(), CodecError> {
    match rate {
        8000 | 12_000 | 16_000 | 24_000 | 48_000 => Ok(()),
        _ => Err(CodecError::UnsupportedSampleRate(rate)),
    }
}

fn state_words(size: c_int, call: &'static str) -> Result<Box<[u64]>, CodecError> {
    let bytes = usize::try_from(size)
        .ok()
        .filter(|&b| b > 0)
        .ok_or(CodecError::Libopus { call, code: size })?;
    Ok(vec![0u64; bytes.div_ceil(8)].into_boxed_slice())
}

fn clamp_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn check(code: c_int, call: &'static str) -> Result<c_int, CodecError> {
    if code < 0 {
        Err(CodecError::Libopus { call, code })
    } else {
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A deterministic, speech-like test signal: a voiced harmonic series whose pitch glides,
    /// under a syllable-rate envelope, plus a little noise from a fixed-seed PRNG. Stationary
    /// tones would flatter packet loss concealment and barely exercise the encoder's state.
    struct Speechish {
        rate: f64,
        n: u64,
        phase: f64,
        rng: u32,
    }

    impl Speechish {
        fn new(rate: u32, seed: u32) -> Self {
            Self {
                rate: f64::from(rate),
                n: 0,
                phase: 0.0,
                rng: seed | 1,
            }
        }

        fn fill(&mut self, out: &mut [i16]) {
            for s in out {
                let t = self.n as f64 / self.rate;
                let f0 = 130.0 + 50.0 * (2.0 * std::f64::consts::PI * 0.9 * t).sin();
                self.phase += 2.0 * std::f64::consts::PI * f0 / self.rate;
                let envelope = (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.3 * t).sin()).powi(2);
                let mut voiced = 0.0;
                for h in 1..=12u32 {
                    let fh = f0 * f64::from(h);
                    if fh < self.rate / 2.0 - 200.0 {
                        voiced += (self.phase * f64::from(h)).sin() / f64::from(h);
                    }
                }
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 17;
                self.rng ^= self.rng << 5;
                let noise = f64::from(self.rng as i32) / f64::from(i32::MAX);
                *s = (9000.0 * envelope * voiced + 300.0 * noise) as i16;
                self.n += 1;
            }
        }
    }

    fn encode_frames(enc: &mut OpusEncoder, signal: &mut Speechish, frames: usize) -> Vec<Vec<u8>> {
        let mut pcm = vec![0i16; enc.frame_samples()];
        let mut out = [0u8; MAX_PACKET_BYTES];
        (0..frames)
            .map(|_| {
                signal.fill(&mut pcm);
                let n = enc.encode(&pcm, &mut out).unwrap();
                out[..n].to_vec()
            })
            .collect()
    }

    fn decode_all(dec: &mut OpusDecoder, packets: &[Vec<u8>]) -> Vec<i16> {
        let mut out = vec![0i16; dec.frame_samples()];
        let mut all = Vec::new();
        for p in packets {
            let n = dec.decode(p, &mut out, false).unwrap();
            assert_eq!(n, out.len());
            all.extend_from_slice(&out);
        }
        all
    }

    /// Amplitude of the `freq` component of `x` (Goertzel), for a tone of whole cycles.
    fn goertzel_amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power.sqrt() / x.len() as f64
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn error_energy(a: &[i16], b: &[i16]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum()
    }

    #[test]
    fn cloned_encoder_output_is_bit_identical_for_250_frames() {
        let config = OpusConfig {
            inband_fec: true,
            expected_loss_pct: 10,
            ..OpusConfig::default()
        };
        let mut original = OpusEncoder::new(48_000, config).unwrap();
        let mut signal = Speechish::new(48_000, 7);
        encode_frames(&mut original, &mut signal, 50);

        let mut by_clone = original.clone();
        // A separately created encoder with a different history and configuration: after the
        // copy nothing of that may survive.
        let mut by_copy = OpusEncoder::new(48_000, OpusConfig::default()).unwrap();
        encode_frames(&mut by_copy, &mut Speechish::new(48_000, 99), 13);
        by_copy.copy_state_from(&original).unwrap();
        assert_eq!(by_copy.config(), config);

        let mut pcm = vec![0i16; 960];
        let (mut a, mut b, mut c) = ([0u8; 1500], [0u8; 1500], [0u8; 1500]);
        for frame in 0..250 {
            signal.fill(&mut pcm);
            let na = original.encode(&pcm, &mut a).unwrap();
            let nb = by_clone.encode(&pcm, &mut b).unwrap();
            let nc = by_copy.encode(&pcm, &mut c).unwrap();
            assert_eq!(a[..na], b[..nb], "clone diverged at frame {frame}");
            assert_eq!(a[..na], c[..nc], "copy diverged at frame {frame}");
        }
    }

    #[test]
    fn forked_encoder_stream_decodes_continuously() {
        let k = 40;
        let mut signal = Speechish::new(16_000, 3);
        let mut pcm = vec![0i16; 320];
        let mut a = OpusEncoder::new(16_000, OpusConfig::default()).unwrap();
        // B has its own past; only the copy at frame k makes its packets continue A's stream.
        let mut b = OpusEncoder::new(16_000, OpusConfig::default()).unwrap();
        let mut unforked = OpusEncoder::new(16_000, OpusConfig::default()).unwrap();
        let mut other = Speechish::new(16_000, 11);
        encode_frames(&mut b, &mut other, 20);
        encode_frames(&mut unforked, &mut other, 20);

        let mut reference = OpusDecoder::new(16_000).unwrap();
        let mut forked = OpusDecoder::new(16_000).unwrap();
        let mut naive = OpusDecoder::new(16_000).unwrap();
        let (mut ref_out, mut fork_out, mut naive_out) = (vec![0; 320], vec![0; 320], vec![0; 320]);
        let mut buf = [0u8; MAX_PACKET_BYTES];
        let mut naive_error = 0.0;
        for frame in 0..150 {
            signal.fill(&mut pcm);
            if frame == k {
                b.copy_state_from(&a).unwrap();
            }
            let n = a.encode(&pcm, &mut buf).unwrap();
            reference.decode(&buf[..n], &mut ref_out, false).unwrap();
            if frame < k {
                forked.decode(&buf[..n], &mut fork_out, false).unwrap();
                naive.decode(&buf[..n], &mut naive_out, false).unwrap();
            } else {
                let n = b.encode(&pcm, &mut buf).unwrap();
                forked.decode(&buf[..n], &mut fork_out, false).unwrap();
                let n = unforked.encode(&pcm, &mut buf).unwrap();
                naive.decode(&buf[..n], &mut naive_out, false).unwrap();
                naive_error += error_energy(&ref_out, &naive_out);
            }
            assert_eq!(fork_out, ref_out, "forked stream differs at frame {frame}");
        }
        // The control: switching to an encoder that was not forked is audible at the decoder,
        // so the equality above is not an accident of the signal.
        assert!(naive_error > 0.0);
    }

    #[test]
    fn encode_decode_round_trip_keeps_a_tone() {
        for rate in [48_000u32, 8000] {
            let mut enc = OpusEncoder::new(rate, OpusConfig::default()).unwrap();
            let mut dec = OpusDecoder::new(rate).unwrap();
            let frame = enc.frame_samples();
            let mut tone = crate::tone::Sine::new(1000.0, rate, 8000.0);
            let mut pcm = vec![0i16; frame];
            let mut out = vec![0i16; frame];
            let mut buf = [0u8; MAX_PACKET_BYTES];
            let mut decoded = Vec::new();
            for _ in 0..60 {
                tone.fill(&mut pcm);
                let n = enc.encode(&pcm, &mut buf).unwrap();
                assert_eq!(dec.decode(&buf[..n], &mut out, false).unwrap(), frame);
                decoded.extend_from_slice(&out);
            }
            // Skip the codec's start-up; 40 frames hold a whole number of 1 kHz cycles.
            let steady = &decoded[20 * frame..];
            let amplitude = goertzel_amplitude(steady, rate, 1000.0);
            let level_db = 20.0 * (amplitude / 8000.0).log10();
            assert!(
                level_db.abs() < 2.0,
                "{rate} Hz: tone level {level_db:.2} dB"
            );
            // Nearly all the energy is the tone: RMS of a sine is amplitude/√2.
            let tone_share = (amplitude / std::f64::consts::SQRT_2 / rms(steady)).powi(2);
            assert!(tone_share > 0.95, "{rate} Hz: tone share {tone_share:.3}");
        }
    }

    /// Encodes `frames` of speech with the given FEC setting, then decodes them at a receiver
    /// that lost packet `lost`; returns the squared error of the frame recovered for `lost`
    /// against a receiver that lost nothing, and the reference frame's energy.
    fn loss_error(fec_enabled: bool, use_fec: bool, lost: usize) -> (f64, f64) {
        let config = OpusConfig {
            inband_fec: fec_enabled,
            expected_loss_pct: 20,
            bitrate: Some(24_000),
            ..OpusConfig::default()
        };
        let mut enc = OpusEncoder::new(16_000, config).unwrap();
        let packets = encode_frames(&mut enc, &mut Speechish::new(16_000, 5), lost + 2);
        let reference = decode_all(&mut OpusDecoder::new(16_000).unwrap(), &packets);
        let mut dec = OpusDecoder::new(16_000).unwrap();
        decode_all(&mut dec, &packets[..lost]);
        let mut recovered = vec![0i16; 320];
        if use_fec {
            dec.decode(&packets[lost + 1], &mut recovered, true)
                .unwrap();
        } else {
            dec.conceal(&mut recovered).unwrap();
        }
        let want = &reference[lost * 320..(lost + 1) * 320];
        (
            error_energy(&recovered, want),
            want.iter().map(|&v| f64::from(v).powi(2)).sum(),
        )
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_plc() {
        let mut fec_total = 0.0;
        let mut plc_total = 0.0;
        for lost in [30, 47, 61, 78, 95] {
            let (fec, energy) = loss_error(true, true, lost);
            let (plc, _) = loss_error(true, false, lost);
            // FEC is a low-bitrate copy of the lost frame: far closer than a guess.
            assert!(
                fec < 0.5 * energy,
                "frame {lost}: FEC error {fec:.3e} of {energy:.3e}"
            );
            fec_total += fec;
            plc_total += plc;
        }
        assert!(
            fec_total < 0.5 * plc_total,
            "FEC error {fec_total:.3e} vs PLC error {plc_total:.3e}"
        );
    }

    #[test]
    fn fec_decode_without_fec_data_still_produces_a_frame() {
        // A sender that did not enable FEC: libopus conceals, and the length is still a frame.
        let (error, energy) = loss_error(false, true, 40);
        assert!(error.is_finite() && energy > 0.0);
    }

    #[test]
    fn conceal_produces_a_frame() {
        let mut enc = OpusEncoder::new(48_000, OpusConfig::default()).unwrap();
        let packets = encode_frames(&mut enc, &mut Speechish::new(48_000, 1), 30);
        let mut dec = OpusDecoder::new(48_000).unwrap();
        decode_all(&mut dec, &packets);
        let mut out = vec![0i16; 960];
        assert_eq!(dec.conceal(&mut out).unwrap(), 960);
        // Concealment continues the voice rather than emitting silence.
        assert!(rms(&out) > 100.0, "concealed RMS {}", rms(&out));
        let mut short = vec![0i16; 959];
        assert_eq!(
            dec.conceal(&mut short),
            Err(CodecError::BufferTooSmall { capacity: 959 })
        );
    }

    #[test]
    fn random_bytes_are_refused_or_decoded_never_panic() {
        let mut dec = OpusDecoder::new(48_000).unwrap();
        let mut out = vec![0i16; 960];
        let mut rng = 0x9E37_79B9u32;
        let mut packet = [0u8; 200];
        let (mut refused, mut decoded) = (0, 0);
        for i in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let len = (rng % 200) as usize;
            for b in packet[..len].iter_mut() {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                *b = rng as u8;
            }
            match dec.decode(&packet[..len], &mut out, i % 7 == 0) {
                Ok(n) => {
                    assert!(n <= out.len());
                    decoded += 1;
                }
                Err(_) => refused += 1,
            }
        }
        // Both outcomes occur: the loop really reaches libopus's packet parser.
        assert!(
            refused > 0 && decoded > 0,
            "{refused} refused, {decoded} decoded"
        );
        assert_eq!(
            dec.decode(&[], &mut out, false),
            Err(CodecError::EmptyPacket)
        );
        // A valid 60 ms packet into a 20 ms buffer: refused, not overrun (code 0, config 3 =
        // SILK NB 60 ms, RFC 6716 §3.1).
        assert!(dec.decode(&[3 << 3, 0, 0], &mut out, false).is_err());
    }

    #[test]
    fn encoding_digital_silence_produces_a_small_packet() {
        for (rate, max_bytes) in [(8000u32, 10usize), (16_000, 10), (48_000, 64)] {
            let frame = rate as usize / 50;
            let mut enc = OpusEncoder::new(rate, OpusConfig::default()).unwrap();
            let speech = encode_frames(&mut enc, &mut Speechish::new(rate, 2), 25);
            let speech_bytes = speech.iter().map(Vec::len).sum::<usize>() / speech.len();
            let silence = vec![0i16; frame];
            let mut cached = [0u8; MAX_PACKET_BYTES];
            let mut len = 0;
            for _ in 0..10 {
                len = enc.encode(&silence, &mut cached).unwrap();
            }
            // libopus 1.3 still spends ~60 bytes on fullband silence at its automatic
            // bitrate (DTX would send 1-byte frames); narrowband and wideband need a few.
            assert!(len <= max_bytes, "{rate} Hz: silence packet of {len} bytes");
            assert!(
                2 * len < speech_bytes,
                "{rate} Hz: {len} vs {speech_bytes} bytes"
            );
            // The cached payload, sent again and again after speech, decodes to silence.
            let mut dec = OpusDecoder::new(rate).unwrap();
            decode_all(&mut dec, &speech);
            let mut out = vec![0i16; frame];
            for repeat in 0..10 {
                assert_eq!(dec.decode(&cached[..len], &mut out, false).unwrap(), frame);
                if repeat >= 3 {
                    let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
                    assert!(peak < 16, "{rate} Hz: repeat {repeat} peaks at {peak}");
                }
            }
        }
    }

    #[test]
    fn wrong_frame_length_and_bad_settings_are_errors() {
        let mut enc = OpusEncoder::new(8000, OpusConfig::default()).unwrap();
        assert_eq!(enc.frame_samples(), 160);
        let mut buf = [0u8; MAX_PACKET_BYTES];
        assert_eq!(
            enc.encode(&[0; 161], &mut buf),
            Err(CodecError::FrameLength {
                expected: 160,
                got: 161
            })
        );
        assert_eq!(
            OpusEncoder::new(44_100, OpusConfig::default()).err(),
            Some(CodecError::UnsupportedSampleRate(44_100))
        );
        let bad = OpusConfig {
            complexity: 11,
            ..OpusConfig::default()
        };
        assert!(matches!(
            OpusEncoder::new(8000, bad),
            Err(CodecError::InvalidConfig { .. })
        ));
        let other = OpusEncoder::new(16_000, OpusConfig::default()).unwrap();
        assert_eq!(
            enc.copy_state_from(&other),
            Err(CodecError::SampleRateMismatch {
                ours: 8000,
                theirs: 16_000
            })
        );
    }
}
