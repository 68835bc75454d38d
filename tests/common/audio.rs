//! Audio helpers written independently of the engine: G.711 µ-law and A-law, tone synthesis,
//! and tone detection (Goertzel). The tests must not share code with what they check, so
//! nothing here comes from `chorus-media` (its A-law is only used to cross-check ours in a
//! self-test). Opus is the exception, in `media.rs`: there is no second implementation.

use std::f64::consts::PI;
use std::path::Path;

pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms narrowband frame.
pub const FRAME_SAMPLES: usize = 160;

/// Level assigned to a window with no energy at all (log of zero).
pub const FLOOR_DB: f64 = -120.0;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// ITU-T G.711 µ-law encoding of one linear 16-bit sample.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0x00
    };
    magnitude = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment (exponent) is the position of the highest set bit among bits 14..7.
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && magnitude & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    // The code word is transmitted inverted (G.711 §3.2).
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// ITU-T G.711 µ-law decoding of one code word to linear 16-bit.
pub fn ulaw_decode(code: u8) -> i16 {
    let code = !code;
    let exponent = (code >> 4) & 0x07;
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    let value = if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    value as i16
}

/// ITU-T G.711 A-law encoding of one linear 16-bit sample (13 significant bits).
pub fn alaw_encode(sample: i16) -> u8 {
    const SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut value = i32::from(sample) >> 3;
    // Even bits are inverted on the line (G.711 §2.3); the sign bit is 1 for positive.
    let mask: i32 = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    let Some(segment) = SEGMENT_END.iter().position(|&end| value <= end) else {
        return (0x7F ^ mask) as u8;
    };
    let shift = if segment < 2 { 1 } else { segment };
    let code = ((segment as i32) << 4) | ((value >> shift) & 0x0F);
    (code ^ mask) as u8
}

/// ITU-T G.711 A-law decoding of one code word to linear 16-bit.
pub fn alaw_decode(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut magnitude = i32::from(code & 0x0F) << 4;
    let segment = (code & 0x70) >> 4;
    match segment {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => {
            magnitude += 0x108;
            magnitude <<= segment - 1;
        }
    }
    let value = if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    value as i16
}

/// A steady sine tone; `amplitude` is a fraction of full scale (0.0–1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tone {
    pub freq_hz: f64,
    pub amplitude: f64,
}

impl Tone {
    pub fn new(freq_hz: f64, amplitude: f64) -> Self {
        Self { freq_hz, amplitude }
    }

    /// Sample `n` (counted from the start of the stream) of this tone at 8 kHz.
    pub fn sample(&self, n: u64) -> i16 {
        self.sample_at(n, SAMPLE_RATE)
    }

    /// Sample `n` of this tone at `rate` Hz (e.g. 48 kHz for Opus).
    pub fn sample_at(&self, n: u64, rate: u32) -> i16 {
        let phase = 2.0 * PI * self.freq_hz * (n as f64) / f64::from(rate);
        (self.amplitude * 32767.0 * phase.sin()).round() as i16
    }
}

/// Linear samples of `tone` from sample index `start`, `len` long.
pub fn tone_samples(tone: Tone, start: u64, len: usize) -> Vec<i16> {
    (0..len as u64).map(|i| tone.sample(start + i)).collect()
}

/// Raw 8 kHz µ-law of `tone`, `seconds` long, for SIPp's `rtp_stream`. Whole seconds keep
/// the size a multiple of 160 bytes (SIPp 3.6.1 pads a partial last packet with garbage) and,
/// for integer frequencies, an integral number of periods so the looped file has no click.
pub fn ulaw_tone_file_bytes(tone: Tone, seconds: u32) -> Vec<u8> {
    let len = (SAMPLE_RATE * seconds) as usize;
    tone_samples(tone, 0, len)
        .into_iter()
        .map(ulaw_encode)
        .collect()
}

pub fn write_ulaw_tone_file(path: &Path, tone: Tone, seconds: u32) -> std::io::Result<()> {
    std::fs::write(path, ulaw_tone_file_bytes(tone, seconds))
}

/// Amplitude (fraction of full scale) of the component of `samples` at `freq_hz`, measured
/// with a Hann-windowed Goertzel filter. A full-scale sine reads 1.0.
pub fn tone_amplitude(samples: &[i16], freq_hz: f64) -> f64 {
    let n = samples.len();
    if n == 0 {
        return 0.0;
    }
    let omega = 2.0 * PI * freq_hz / f64::from(SAMPLE_RATE);
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0;
    for (i, &x) in samples.iter().enumerate() {
        // The window keeps a loud tone elsewhere in the spectrum from leaking into this bin.
        let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos();
        window_sum += w;
        let s0 = w * f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if window_sum == 0.0 {
        return 0.0;
    }
    2.0 * power.max(0.0).sqrt() / window_sum
}

/// Level of the component at `freq_hz` in dB relative to a full-scale sine (dBFS).
pub fn level_db(samples: &[i16], freq_hz: f64) -> f64 {
    amplitude_to_db(tone_amplitude(samples, freq_hz))
}

/// RMS level of the whole signal in dBFS (a full-scale sine reads about -3 dB).
pub fn rms_db(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return FLOOR_DB;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| {
            let x = f64::from(s) / 32768.0;
            x * x
        })
        .sum();
    amplitude_to_db((sum / samples.len() as f64).sqrt())
}

pub fn amplitude_to_db(amplitude: f64) -> f64 {
    if amplitude <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * amplitude.log10()).max(FLOOR_DB)
    }
}

/// What a listener must (and must not) hear in a window of received audio.
///
/// Every `hear` frequency must be at least `min_heard_db`. Every `not_hear` frequency must be
/// at least `rejection_db` below the quietest heard one or, when nothing must be heard, below
/// `silence_db`. Returns a readable verdict for assertion messages.
#[derive(Clone, Debug)]
pub struct Expectation<'a> {
    pub hear: &'a [f64],
    pub not_hear: &'a [f64],
    pub min_heard_db: f64,
    pub rejection_db: f64,
    pub silence_db: f64,
}

impl<'a> Expectation<'a> {
    pub fn new(hear: &'a [f64], not_hear: &'a [f64]) -> Self {
        Self {
            hear,
            not_hear,
            // Tests send tones at about -10 dBFS; a mixer may attenuate, not by 20 dB.
            min_heard_db: -30.0,
            rejection_db: 20.0,
            silence_db: -50.0,
        }
    }

    pub fn check(&self, samples: &[i16]) -> Result<(), String> {
        let heard: Vec<(f64, f64)> = self
            .hear
            .iter()
            .map(|&f| (f, level_db(samples, f)))
            .collect();
        let unwanted: Vec<(f64, f64)> = self
            .not_hear
            .iter()
            .map(|&f| (f, level_db(samples, f)))
            .collect();
        let describe = || {
            let fmt = |v: &[(f64, f64)]| {
                v.iter()
                    .map(|(f, db)| format!("{f} Hz: {db:.1} dBFS"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{} samples ({:.2} s), overall {:.1} dBFS; wanted [{}]; unwanted [{}]",
                samples.len(),
                samples.len() as f64 / f64::from(SAMPLE_RATE),
                rms_db(samples),
                fmt(&heard),
                fmt(&unwanted)
            )
        };
        let mut problems = Vec::new();
        for &(f, db) in &heard {
            if db < self.min_heard_db {
                problems.push(format!(
                    "{f} Hz should be heard at >= {} dBFS but is {db:.1}",
                    self.min_heard_db
                ));
            }
        }
        let ceiling = heard
            .iter()
            .map(|&(_, db)| db - self.rejection_db)
            .reduce(f64::min)
            .unwrap_or(self.silence_db);
        for &(f, db) in &unwanted {
            if db > ceiling {
                problems.push(format!(
                    "{f} Hz should not be heard (<= {ceiling:.1} dBFS) but is {db:.1}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n  ({})", problems.join("; "), describe()))
        }
    }
}

/// Self-checks of this module, run by `tests/support_selftest.rs` (kept here so that every
/// binary including `common` does not run them again).
pub mod selftest {
    use super::*;

    pub fn ulaw_known_code_words() {
        assert_eq!(ulaw_encode(0), 0xFF, "zero encodes to 0xFF");
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0, "negative zero decodes to 0");
        assert_eq!(ulaw_decode(0x80), 32124, "largest positive code word");
        assert_eq!(ulaw_decode(0x00), -32124, "largest negative code word");
        assert_eq!(ulaw_encode(i16::MAX), 0x80, "clipped to the top segment");
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
    }

    pub fn ulaw_round_trip_error_is_within_one_quantisation_step() {
        for x in i16::MIN..=i16::MAX {
            let y = ulaw_decode(ulaw_encode(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            let clipped = i32::from(x).abs() > 32124;
            // The step doubles with each segment; half a step is 1/32 of the magnitude + bias.
            let bound = (i32::from(x).abs() + ULAW_BIAS) / 16 + 1;
            assert!(
                clipped || err <= bound,
                "x={x} decoded to {y}, error {err} > {bound}"
            );
            // Re-coding a decoded value is lossless (the two zero code words both decode to 0).
            assert_eq!(
                ulaw_decode(ulaw_encode(y)),
                y,
                "re-coding is stable for {x}"
            );
        }
    }

    pub fn ulaw_decode_is_monotonic_within_each_sign() {
        // Positive code words 0xFF (0) down to 0x80 (max) increase in value.
        let positive: Vec<i16> = (0x80u8..=0xFF).rev().map(ulaw_decode).collect();
        assert!(positive.windows(2).all(|w| w[0] < w[1]), "{positive:?}");
        let negative: Vec<i16> = (0x00u8..=0x7F).rev().map(ulaw_decode).collect();
        assert!(negative.windows(2).all(|w| w[0] > w[1]), "{negative:?}");
    }

    pub fn goertzel_measures_a_pure_tone_at_its_level() {
        let samples = tone_samples(Tone::new(440.0, 0.5), 0, 16_000);
        let db = level_db(&samples, 440.0);
        assert!((db - (-6.02)).abs() < 0.3, "0.5 FS sine reads {db:.2} dBFS");
        let off = level_db(&samples, 1000.0);
        assert!(off < -80.0, "440 Hz leaks into 1000 Hz at {off:.1} dBFS");
    }

    pub fn goertzel_separates_two_mixed_tones() {
        let a = tone_samples(Tone::new(440.0, 0.3), 0, 16_000);
        let b = tone_samples(Tone::new(1000.0, 0.04), 0, 16_000);
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let (la, lb) = (level_db(&mix, 440.0), level_db(&mix, 1000.0));
        assert!((la - (-10.46)).abs() < 0.3, "440 Hz at {la:.2}");
        assert!((lb - (-27.96)).abs() < 0.5, "1000 Hz at {lb:.2}");
        assert!(
            Expectation::new(&[440.0], &[1000.0]).check(&mix).is_err(),
            "a tone only 17.5 dB down must not pass as rejected by 20 dB"
        );
        let mut quiet = Expectation::new(&[440.0], &[1000.0]);
        quiet.rejection_db = 15.0;
        quiet.check(&mix).expect("15 dB rejection holds");
    }

    pub fn silence_and_noise_are_not_mistaken_for_a_tone() {
        let silence = vec![0i16; 16_000];
        assert_eq!(level_db(&silence, 440.0), FLOOR_DB);
        Expectation::new(&[], &[440.0, 1000.0])
            .check(&silence)
            .expect("digital silence holds no tone");
        assert!(Expectation::new(&[440.0], &[]).check(&silence).is_err());
        // Deterministic white-ish noise at about -20 dBFS RMS spreads over 8,000 bins.
        let mut state = 0x1234_5678u32;
        let noise: Vec<i16> = (0..16_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((state >> 16) as i16) / 6
            })
            .collect();
        let db = level_db(&noise, 440.0);
        assert!(db < -45.0, "noise reads {db:.1} dBFS at 440 Hz");
    }

    pub fn tone_survives_ulaw_coding() {
        let samples: Vec<i16> = tone_samples(Tone::new(1000.0, 0.3), 0, 16_000)
            .into_iter()
            .map(|s| ulaw_decode(ulaw_encode(s)))
            .collect();
        let db = level_db(&samples, 1000.0);
        assert!(
            (db - (-10.46)).abs() < 0.3,
            "1000 Hz through µ-law reads {db:.2}"
        );
        Expectation::new(&[1000.0], &[440.0])
            .check(&samples)
            .expect("µ-law noise stays far below the tone");
    }

    pub fn alaw_known_code_words_and_round_trip() {
        assert_eq!(alaw_encode(0), 0xD5, "zero encodes to 0xD5");
        assert_eq!(alaw_decode(0xD5), 8, "smallest positive step");
        assert_eq!(alaw_decode(0x55), -8, "smallest negative step");
        assert_eq!(alaw_encode(i16::MAX), 0xAA, "largest positive code word");
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_encode(i16::MIN), 0x2A, "largest negative code word");
        assert_eq!(alaw_decode(0x2A), -32256);
        for x in i16::MIN..=i16::MAX {
            let y = alaw_decode(alaw_encode(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            // A-law keeps 4 mantissa bits: half a step is at most 1/32 of the magnitude,
            // and 8 in the two linear segments.
            let bound = (i32::from(x).abs() / 32).max(8) + 1;
            assert!(
                err <= bound || i32::from(x).abs() > 32256,
                "x={x} decoded to {y}, error {err} > {bound}"
            );
            assert_eq!(
                alaw_decode(alaw_encode(y)),
                y,
                "re-coding is stable for {x}"
            );
        }
    }

    /// Our A-law and the engine's (`ezk-g711` tables) are written independently; they must
    /// agree bit for bit, so a PCMA failure in an end-to-end test is not a harness artefact.
    pub fn alaw_agrees_with_the_engines_tables() {
        use chorus_media::g711::Law;
        for code in 0..=255u8 {
            assert_eq!(
                alaw_decode(code),
                Law::A.decode_sample(code),
                "decode {code:#04x}"
            );
        }
        for x in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(x), Law::A.encode_sample(x), "encode {x}");
        }
    }

    pub fn tone_survives_alaw_coding() {
        let samples: Vec<i16> = tone_samples(Tone::new(1000.0, 0.3), 0, 16_000)
            .into_iter()
            .map(|s| alaw_decode(alaw_encode(s)))
            .collect();
        let db = level_db(&samples, 1000.0);
        assert!(
            (db - (-10.46)).abs() < 0.3,
            "1000 Hz through A-law reads {db:.2}"
        );
        Expectation::new(&[1000.0], &[440.0])
            .check(&samples)
            .expect("A-law noise stays far below the tone");
    }

    pub fn ulaw_tone_file_has_whole_packets_and_the_tone() {
        let bytes = ulaw_tone_file_bytes(Tone::new(440.0, 0.3), 2);
        assert_eq!(bytes.len() % FRAME_SAMPLES, 0, "size is a multiple of 160");
        assert_eq!(bytes.len(), 16_000);
        let decoded: Vec<i16> = bytes.iter().map(|&b| ulaw_decode(b)).collect();
        let db = level_db(&decoded, 440.0);
        assert!((db - (-10.46)).abs() < 0.3, "file tone reads {db:.2}");
        // Looping must not click: the sample after the last one is the first one again.
        let next = Tone::new(440.0, 0.3).sample(bytes.len() as u64);
        assert_eq!(ulaw_encode(next), bytes[0], "the file holds whole periods");
    }
}
