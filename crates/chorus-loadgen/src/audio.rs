//! The load's audio, prepared once before any call is placed: real speech (espeak-ng → sox →
//! raw S16 at the codec's rate), cut into 20 ms frames and encoded up front (G.711 µ-law by
//! hand, Opus with libopus), plus the probe's 1 kHz marker tone and a silence payload. During
//! the run the generator only copies pre-encoded payloads, so it stays cheap.
//!
//! The probe side decodes what it hears and looks for the marker with a Goertzel filter at
//! 1 kHz: with 20 ms frames at 8 or 48 kHz, 1 kHz falls exactly on bin 20.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// The codec every participant of one run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    Pcmu,
    Opus,
}

impl Codec {
    pub fn rate(self) -> u32 {
        match self {
            Codec::Pcmu => 8_000,
            Codec::Opus => 48_000,
        }
    }

    /// Samples per 20 ms frame, also the RTP timestamp step (Opus' RTP clock is 48 kHz).
    pub fn frame_samples(self) -> usize {
        self.rate() as usize / 50
    }

    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Opus => 111,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu",
            Codec::Opus => "opus",
        }
    }
}

/// Peak amplitude of the probe marker tone (about −8.7 dBFS): loud enough to dominate the
/// other talker's speech in the probe room's mix.
const TONE_AMPLITUDE: f64 = 12_000.0;
pub const TONE_HZ: f64 = 1_000.0;

/// Everything a participant can send, pre-encoded.
pub struct Payloads {
    pub codec: Codec,
    /// Speech, one payload per 20 ms frame, looped by talkers.
    pub speech: Vec<Vec<u8>>,
    /// The marker tone, one payload per 20 ms frame of a burst.
    pub tone: Vec<Vec<u8>>,
    /// What listeners send every 20 ms.
    pub silence: Vec<u8>,
}

/// Speaks `text` with espeak-ng and returns 20 ms frames of S16 audio at `codec`'s rate.
fn speech_frames(dir: &Path, codec: Codec, text: &str) -> anyhow::Result<Vec<Vec<i16>>> {
    let wav = dir.join("speech.wav");
    let raw = dir.join(format!("speech-{}.s16", codec.rate()));
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .context("running espeak-ng (apt-get install espeak-ng)")?;
    if !status.success() {
        bail!("espeak-ng failed: {status}");
    }
    let status = Command::new("sox")
        .arg(&wav)
        .args([
            "-r",
            &codec.rate().to_string(),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
        ])
        .args(["-t", "raw"])
        .arg(&raw)
        // A little headroom so resampling espeak-ng's peaks doesn't clip.
        .args(["vol", "0.9"])
        .status()
        .context("running sox (apt-get install sox)")?;
    if !status.success() {
        bail!("sox failed: {status}");
    }
    let bytes = std::fs::read(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let n = codec.frame_samples();
    let frames: Vec<Vec<i16>> = samples.chunks_exact(n).map(<[i16]>::to_vec).collect();
    if frames.len() < 50 {
        bail!("espeak-ng produced only {} frames of speech", frames.len());
    }
    Ok(frames)
}

fn tone_frames(codec: Codec, frames: usize) -> Vec<Vec<i16>> {
    let n = codec.frame_samples();
    let step = 2.0 * std::f64::consts::PI * TONE_HZ / f64::from(codec.rate());
    (0..frames)
        .map(|f| {
            (0..n)
                .map(|i| {
                    let t = (f * n + i) as f64;
                    (TONE_AMPLITUDE * (step * t).sin()).round() as i16
                })
                .collect()
        })
        .collect()
}

fn opus_encoder() -> anyhow::Result<Encoder> {
    let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)
        .map_err(|e| anyhow::anyhow!("opus encoder: {e}"))?;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000))
        .map_err(|e| anyhow::anyhow!("opus bitrate: {e}"))?;
    Ok(enc)
}

fn opus_encode_all(frames: &[Vec<i16>]) -> anyhow::Result<Vec<Vec<u8>>> {
    let enc = opus_encoder()?;
    let mut out = vec![0u8; 1500];
    frames
        .iter()
        .map(|f| {
            let len = enc
                .encode(f, &mut out)
                .map_err(|e| anyhow::anyhow!("opus encode: {e}"))?;
            Ok(out[..len].to_vec())
        })
        .collect()
}

impl Payloads {
    /// Prepares the speech, tone and silence payloads for `codec` (working files in `dir`).
    pub fn prepare(
        dir: &Path,
        codec: Codec,
        text: &str,
        tone_burst_frames: usize,
    ) -> anyhow::Result<Payloads> {
        let speech = speech_frames(dir, codec, text)?;
        let tone = tone_frames(codec, tone_burst_frames);
        let silence_pcm = vec![vec![0i16; codec.frame_samples()]; 3];
        Ok(match codec {
            Codec::Pcmu => Payloads {
                codec,
                speech: speech.iter().map(|f| ulaw_encode_frame(f)).collect(),
                tone: tone.iter().map(|f| ulaw_encode_frame(f)).collect(),
                silence: vec![0xFF; codec.frame_samples()],
            },
            Codec::Opus => {
                let silence = opus_encode_all(&silence_pcm)?
                    .pop()
                    .context("opus silence frame")?;
                Payloads {
                    codec,
                    speech: opus_encode_all(&speech)?,
                    tone: opus_encode_all(&tone)?,
                    silence,
                }
            }
        })
    }
}

fn ulaw_encode_frame(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|&s| linear_to_ulaw(s)).collect()
}

/// ITU-T G.711 µ-law encoder.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let exponent = (31 - (s as u32).leading_zeros()) as i32 - 7;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// ITU-T G.711 µ-law decoder.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// ITU-T G.711 A-law decoder (in case an engine answers PCMA).
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let sign = a & 0x80;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

/// Turns received RTP payloads back into PCM for the probe's tone detector.
pub struct ProbeDecoder {
    opus: Option<Box<Decoder>>,
    /// The last payload decoded (5760 samples: the longest Opus packet at 48 kHz).
    pcm: Vec<i16>,
    len: usize,
    rate: f64,
}

impl ProbeDecoder {
    pub fn new(codec: Codec) -> anyhow::Result<ProbeDecoder> {
        let opus = match codec {
            Codec::Pcmu => None,
            Codec::Opus => Some(Box::new(
                Decoder::new(SampleRate::Hz48000, Channels::Mono)
                    .map_err(|e| anyhow::anyhow!("opus decoder: {e}"))?,
            )),
        };
        Ok(ProbeDecoder {
            opus,
            pcm: vec![0i16; 5760],
            len: 0,
            rate: f64::from(codec.rate()),
        })
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The samples of the last payload [`ProbeDecoder::detect`] decoded.
    pub fn pcm(&self) -> &[i16] {
        &self.pcm[..self.len]
    }

    /// Returns the tone detector's verdict for one received payload, or `None` when it could
    /// not be decoded.
    pub fn detect(&mut self, payload_type: u8, payload: &[u8]) -> Option<ToneVerdict> {
        self.len = 0;
        match self.opus.as_mut() {
            None => {
                let n = payload.len().min(160);
                for (o, &b) in self.pcm.iter_mut().zip(&payload[..n]) {
                    *o = if payload_type == 8 {
                        alaw_to_linear(b)
                    } else {
                        ulaw_to_linear(b)
                    };
                }
                self.len = n;
            }
            Some(dec) => {
                let packet = audiopus::packet::Packet::try_from(payload).ok()?;
                let signals = audiopus::MutSignals::try_from(&mut self.pcm[..]).ok()?;
                self.len = dec.decode(Some(packet), signals, false).ok()?;
            }
        }
        Some(tone_verdict(self.pcm(), self.rate))
    }
}

/// Where the marker tone starts in `pcm`, in samples from its start, given that it sounds
/// through the last 5 ms of `pcm` (the caller passes the frame where the detector found it
/// dominant, after the frame before it). 0 when it sounds throughout.
///
/// A change-point search (CUSUM) on the tone's coherent amplitude: each sample is projected on
/// a 1 kHz phasor with the phase the tone has in the last 5 ms, where it contributes `s` per
/// sample on average. Summed back from the end with `s / 2` taken off each sample, the total
/// grows through the tone and falls before it (where the projection averages 0, whatever else
/// sounds), so it peaks at the onset. Summing over the whole tone, not thresholding short
/// windows, is what keeps the other talker's speech from moving it.
///
/// Why not the frame: a codec with look-ahead (each Opus encode delays by 6.5 ms) moves the
/// onset into the middle of a frame, and a frame-level detector then reports the arrival of
/// that frame, early by up to its length, or of the next one, late by up to its length.
pub fn tone_onset(pcm: &[i16], rate: f64) -> usize {
    let tail = ((rate / 200.0).round() as usize).max(1);
    if pcm.len() <= tail {
        return 0;
    }
    let step = 2.0 * std::f64::consts::PI * TONE_HZ / rate;
    let cos = |k: usize| (step * k as f64).cos();
    let sin = |k: usize| (step * k as f64).sin();
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (k, &x) in pcm.iter().enumerate().skip(pcm.len() - tail) {
        re += f64::from(x) * cos(k);
        im += f64::from(x) * sin(k);
    }
    let magnitude = re.hypot(im);
    if magnitude == 0.0 {
        return 0;
    }
    let (ur, ui) = (re / magnitude, im / magnitude);
    let half_slope = magnitude / tail as f64 / 2.0;
    let (mut sum, mut best, mut onset) = (0.0f64, f64::MIN, 0);
    for (k, &x) in pcm.iter().enumerate().rev() {
        sum += f64::from(x) * (ur * cos(k) + ui * sin(k)) - half_slope;
        if sum > best {
            best = sum;
            onset = k;
        }
    }
    onset
}

#[derive(Clone, Copy, Debug)]
pub struct ToneVerdict {
    /// Share of the frame's energy at 1 kHz (1.0 for a pure tone).
    pub ratio: f64,
    /// RMS level of the frame.
    pub rms: f64,
}

impl ToneVerdict {
    pub fn is_marker(self) -> bool {
        self.ratio > 0.6 && self.rms > 2_000.0
    }
}

/// Goertzel power at 1 kHz relative to the frame's total power.
pub fn tone_verdict(pcm: &[i16], rate: f64) -> ToneVerdict {
    if pcm.is_empty() {
        return ToneVerdict {
            ratio: 0.0,
            rms: 0.0,
        };
    }
    let n = pcm.len() as f64;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * TONE_HZ / rate).cos();
    let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
    for &x in pcm {
        let x = f64::from(x);
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let ratio = if energy > 0.0 {
        2.0 * power / n / energy
    } else {
        0.0
    };
    ToneVerdict {
        ratio,
        rms: (energy / n).sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trip_is_close() {
        for s in (-32_000i32..32_000).step_by(97) {
            let d = i32::from(ulaw_to_linear(linear_to_ulaw(s as i16)));
            assert!((d - s).abs() <= (s.abs() / 16).max(8), "{s} -> {d}");
        }
        assert_eq!(linear_to_ulaw(0), 0xFF);
    }

    #[test]
    fn marker_tone_is_detected_and_silence_is_not() {
        for codec in [Codec::Pcmu, Codec::Opus] {
            let tone = tone_frames(codec, 1);
            assert!(tone_verdict(&tone[0], f64::from(codec.rate())).is_marker());
        }
        let quiet = vec![0i16; 160];
        assert!(!tone_verdict(&quiet, 8_000.0).is_marker());
        // A 300 Hz tone of the same level is not the marker.
        let other: Vec<i16> = (0..160)
            .map(|i| {
                (12_000.0 * (2.0 * std::f64::consts::PI * 300.0 * i as f64 / 8_000.0).sin()) as i16
            })
            .collect();
        assert!(!tone_verdict(&other, 8_000.0).is_marker());
    }

    #[test]
    fn marker_survives_ulaw() {
        let tone = tone_frames(Codec::Pcmu, 1);
        let payload = ulaw_encode_frame(&tone[0]);
        let mut dec = ProbeDecoder::new(Codec::Pcmu).expect("g711 decoder");
        assert!(dec.detect(0, &payload).expect("decodes").is_marker());
        assert_eq!(dec.pcm().len(), 160);
    }

    /// Two frames: `under` (another talker's sound, or silence) throughout, and the marker
    /// from sample `onset` on.
    fn onset_at(codec: Codec, onset: usize, under: impl Fn(usize) -> f64) -> Vec<i16> {
        let n = 2 * codec.frame_samples();
        let tone = tone_frames(codec, 2).concat();
        (0..n)
            .map(|i| {
                let t = if i >= onset {
                    f64::from(tone[i - onset])
                } else {
                    0.0
                };
                (t + under(i)).round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn error_ms(found: usize, onset: usize, codec: Codec) -> f64 {
        (found as f64 - onset as f64).abs() * 1000.0 / f64::from(codec.rate())
    }

    #[test]
    fn the_onset_is_found_to_within_half_a_millisecond_anywhere_in_two_frames() {
        for codec in [Codec::Pcmu, Codec::Opus] {
            let n = codec.frame_samples();
            for onset in [0, 3, n / 3, n - 1, n, n + 7, 3 * n / 2] {
                let found = tone_onset(&onset_at(codec, onset, |_| 0.0), f64::from(codec.rate()));
                let error = error_ms(found, onset, codec);
                assert!(error <= 0.5, "{codec:?} onset {onset}: found {found}");
            }
        }
    }

    #[test]
    fn the_onset_is_found_under_another_talkers_sound() {
        for codec in [Codec::Pcmu, Codec::Opus] {
            let rate = f64::from(codec.rate());
            // Two tones near the marker's band (900 Hz, 1.15 kHz) and one below it, each at
            // a third of the marker's level, as the other talker's vowels add to the mix.
            let tones = |i: usize| {
                let t = 2.0 * std::f64::consts::PI * i as f64 / rate;
                4_000.0 * ((300.0 * t).sin() + (900.0 * t + 1.0).sin() + (1_150.0 * t + 2.0).sin())
            };
            // White noise at a quarter of the marker's RMS.
            let noise = |i: usize| {
                let mut x = (i as u32).wrapping_mul(2_654_435_761) ^ 0x9e37_79b9;
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (f64::from(x) / f64::from(u32::MAX) - 0.5) * 2.0 * 3_700.0
            };
            for onset in [codec.frame_samples() * 13 / 20, codec.frame_samples() + 11] {
                // Tones 100-150 Hz from the marker beat with it slowly and can shift the
                // change point by up to about a fifth of their beat period; noise averages out.
                for (name, under, bound) in [
                    ("tones", &tones as &dyn Fn(usize) -> f64, 2.5),
                    ("noise", &noise, 0.5),
                ] {
                    let found = tone_onset(&onset_at(codec, onset, under), rate);
                    let error = error_ms(found, onset, codec);
                    assert!(
                        error <= bound,
                        "{codec:?} {name}: found {found}, onset {onset} ({error:.2} ms off)"
                    );
                }
            }
        }
    }

    #[test]
    fn through_opus_the_onset_lands_mid_frame_by_the_codec_delay() {
        // A frame of silence, then the marker from the second frame's first sample, through a
        // real libopus encode and decode: the decoded tone starts 6.5 ms (the encoder's
        // look-ahead) into the marker's first frame, where a frame-level detector cannot
        // place it.
        let enc = opus_encoder().expect("opus encoder");
        let mut dec = ProbeDecoder::new(Codec::Opus).expect("opus decoder");
        let mut frames = vec![vec![0i16; 960]; 3];
        frames.extend(tone_frames(Codec::Opus, 3));
        let mut decoded = Vec::new();
        let mut packet = vec![0u8; 1500];
        for frame in &frames {
            let len = enc.encode(frame, &mut packet).expect("encodes");
            dec.detect(111, &packet[..len]).expect("decodes");
            decoded.push(dec.pcm().to_vec());
        }
        // The marker's first frame (index 3) and the one before it.
        let joined = [decoded[2].clone(), decoded[3].clone()].concat();
        let onset_ms = tone_onset(&joined, 48_000.0) as f64 / 48.0 - 20.0;
        assert!(
            (5.0..=8.0).contains(&onset_ms),
            "decoded tone starts {onset_ms} ms into its frame"
        );
    }
}
