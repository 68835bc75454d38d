//! Sample-rate conversion of fixed 20 ms mono frames between the rates Opus and G.711 legs
//! run at, so a room can mix at one rate while its members speak others.
//!
//! Built on rubato's synchronous FFT resampler with both chunk sizes fixed
//! ([`rubato::FixedSync::Both`]): every call takes exactly `from_rate / 50` samples and returns
//! exactly `to_rate / 50`, which is what a 20 ms tick needs. All supported rates are multiples
//! of 4 kHz, so one 20 ms frame is always a whole number of the resampler's minimum blocks and
//! the FFT block is the frame itself. Its anti-aliasing filter is applied in the frequency
//! domain; the price is a constant delay of half an output frame (10 ms), reported by
//! [`Resampler::delay_samples`] for latency accounting.
//!
//! Buffers (the `f32` conversion scratch and rubato's own) are allocated in
//! [`Resampler::new`]; [`Resampler::process`] does not allocate.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};
use thiserror::Error;

/// Why a resampler could not be built or run.
#[derive(Debug, Error)]
pub enum ResampleError {
    #[error("unsupported sample rate {0} Hz (8000, 12000, 16000, 24000 or 48000)")]
    UnsupportedRate(u32),
    #[error("input frame of {got} samples, expected {expected}")]
    InputLength { expected: usize, got: usize },
    #[error("output frame of {got} samples, expected {expected}")]
    OutputLength { expected: usize, got: usize },
    #[error("building the resampler failed")]
    Construction(#[from] rubato::ResamplerConstructionError),
    #[error("resampling failed")]
    Process(#[from] rubato::ResampleError),
}

/// Converts fixed 20 ms mono frames between two rates with a rubato resampler; buffers
/// preallocated.
pub struct Resampler {
    from_rate: u32,
    to_rate: u32,
    /// `None` when both rates are equal: the frame is copied.
    fft: Option<Fft<f32>>,
    input: Box<[f32]>,
    output: Box<[f32]>,
}

impl Resampler {
    /// Rates from {8000, 12000, 16000, 24000, 48000}.
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        check_rate(from_rate)?;
        check_rate(to_rate)?;
        let (frame_in, frame_out) = (frame(from_rate), frame(to_rate));
        let fft = if from_rate == to_rate {
            None
        } else {
            let fft = Fft::<f32>::new(
                from_rate as usize,
                to_rate as usize,
                frame_in,
                1,
                FixedSync::Both,
            )?;
            // With rates that are multiples of 4 kHz rubato keeps the requested chunk exactly
            // (see the module docs); anything else would break the fixed-frame contract.
            debug_assert_eq!(
                (fft.input_frames_next(), fft.output_frames_next()),
                (frame_in, frame_out)
            );
            Some(fft)
        };
        Ok(Self {
            from_rate,
            to_rate,
            fft,
            input: vec![0.0; frame_in].into_boxed_slice(),
            output: vec![0.0; frame_out].into_boxed_slice(),
        })
    }

    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// Input exactly `from_rate / 50` samples, output exactly `to_rate / 50` samples. No
    /// allocation.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<(), ResampleError> {
        if input.len() != self.input.len() {
            return Err(ResampleError::InputLength {
                expected: self.input.len(),
                got: input.len(),
            });
        }
        if output.len() != self.output.len() {
            return Err(ResampleError::OutputLength {
                expected: self.output.len(),
                got: output.len(),
            });
        }
        let Some(fft) = self.fft.as_mut() else {
            output.copy_from_slice(input);
            return Ok(());
        };
        for (f, &s) in self.input.iter_mut().zip(input) {
            *f = f32::from(s) / 32768.0;
        }
        let frames_in = self.input.len();
        let frames_out = self.output.len();
        // Adapters over our own slices: plain structs holding a borrow, nothing allocated.
        let adapter_in = InterleavedSlice::new(&self.input[..], 1, frames_in).map_err(|_| {
            ResampleError::InputLength {
                expected: frames_in,
                got: input.len(),
            }
        })?;
        let mut adapter_out = InterleavedSlice::new_mut(&mut self.output[..], 1, frames_out)
            .map_err(|_| ResampleError::OutputLength {
                expected: frames_out,
                got: output.len(),
            })?;
        fft.process_into_buffer(&adapter_in, &mut adapter_out, None)?;
        for (s, &f) in output.iter_mut().zip(self.output.iter()) {
            // Ringing of the anti-aliasing filter can overshoot full scale: saturate.
            *s = (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        Ok(())
    }

    /// Output-side delay in samples at `to_rate`, for latency accounting.
    pub fn delay_samples(&self) -> usize {
        self.fft.as_ref().map_or(0, |f| f.output_delay())
    }

    /// Clears the filter history: for a new stream, so the old one does not bleed in.
    pub fn reset(&mut self) {
        if let Some(fft) = self.fft.as_mut() {
            fft.reset();
        }
    }
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_rate", &self.from_rate)
            .field("to_rate", &self.to_rate)
            .field("delay_samples", &self.delay_samples())
            .finish()
    }
}

fn frame(rate: u32) -> usize {
    rate as usize / 50
}

fn check_rate(rate: u32) -> Result<(), ResampleError> {
    match rate {
        8000 | 12_000 | 16_000 | 24_000 | 48_000 => Ok(()),
        _ => Err(ResampleError::UnsupportedRate(rate)),
    }
}

/// Converts a whole mono clip between any two rates (a prompt, a TTS rendering, a file): not
/// for the tick, it allocates its output. Returns the input unchanged when the rates agree.
pub fn convert(input: &[i16], from_rate: u32, to_rate: u32) -> Result<Vec<i16>, ResampleError> {
    if from_rate == 0 {
        return Err(ResampleError::UnsupportedRate(from_rate));
    }
    if to_rate == 0 {
        return Err(ResampleError::UnsupportedRate(to_rate));
    }
    if from_rate == to_rate || input.is_empty() {
        return Ok(input.to_vec());
    }
    let mut fft = Fft::<f32>::new(
        from_rate as usize,
        to_rate as usize,
        1024,
        1,
        FixedSync::Both,
    )?;
    let samples: Vec<f32> = input.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let needed = fft.process_all_needed_output_len(samples.len());
    let mut out = vec![0.0f32; needed];
    let adapter_in = InterleavedSlice::new(&samples[..], 1, samples.len()).map_err(|_| {
        ResampleError::InputLength {
            expected: samples.len(),
            got: input.len(),
        }
    })?;
    let mut adapter_out = InterleavedSlice::new_mut(&mut out[..], 1, needed).map_err(|_| {
        ResampleError::OutputLength {
            expected: needed,
            got: needed,
        }
    })?;
    let (_, produced) =
        fft.process_all_into_buffer(&adapter_in, &mut adapter_out, samples.len(), None)?;
    Ok(out[..produced]
        .iter()
        .map(|&f| (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tone::Sine;

    const RATES: [u32; 5] = [8000, 12_000, 16_000, 24_000, 48_000];

    /// Resamples `frames` 20 ms frames of a tone and returns the output after the start-up.
    fn resample_tone(from: u32, to: u32, freq: f64, frames: usize) -> Vec<i16> {
        let mut r = Resampler::new(from, to).unwrap();
        let mut tone = Sine::new(freq, from, 10_000.0);
        let mut input = vec![0i16; frame(from)];
        let mut output = vec![0i16; frame(to)];
        let mut all = Vec::new();
        for _ in 0..frames {
            tone.fill(&mut input);
            r.process(&input, &mut output).unwrap();
            all.extend_from_slice(&output);
        }
        // Drop the first 10 frames: the filter's delay line is filling.
        all.split_off(10 * frame(to))
    }

    /// Amplitude of `freq` in `x` (Goertzel); `x` should hold whole cycles.
    fn amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2).sqrt() / x.len() as f64
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    #[test]
    fn a_1khz_tone_keeps_its_frequency_and_level_up_and_down() {
        for (from, to) in [
            (8000, 48_000),
            (48_000, 8000),
            (16_000, 48_000),
            (8000, 16_000),
        ] {
            let out = resample_tone(from, to, 1000.0, 60);
            let a = amplitude(&out, to, 1000.0);
            assert!(
                db(a / 10_000.0).abs() < 0.5,
                "{from}->{to}: {:.2} dB",
                db(a / 10_000.0)
            );
            // The tone is all there is: no images or aliases beside it.
            let share = (a / std::f64::consts::SQRT_2 / rms(&out)).powi(2);
            assert!(share > 0.99, "{from}->{to}: tone share {share:.4}");
        }
    }

    #[test]
    fn a_3500hz_tone_survives_48k_to_8k() {
        let out = resample_tone(48_000, 8000, 3500.0, 60);
        let level = db(amplitude(&out, 8000, 3500.0) / 10_000.0);
        assert!(level > -3.0, "3.5 kHz came out at {level:.2} dB");
    }

    #[test]
    fn a_6khz_tone_is_filtered_not_aliased_at_48k_to_8k() {
        // Without a filter 6 kHz would fold to 2 kHz in the 8 kHz output.
        let out = resample_tone(48_000, 8000, 6000.0, 60);
        let aliased = db(amplitude(&out, 8000, 2000.0) / 10_000.0);
        let total = db(rms(&out) * std::f64::consts::SQRT_2 / 10_000.0);
        assert!(aliased < -30.0, "alias at {aliased:.1} dB");
        assert!(total < -30.0, "residue at {total:.1} dB");
    }

    #[test]
    fn every_rate_pair_gives_fixed_frame_lengths() {
        for from in RATES {
            for to in RATES {
                let mut r = Resampler::new(from, to).unwrap();
                let input = vec![1000i16; frame(from)];
                let mut output = vec![0i16; frame(to)];
                for _ in 0..5 {
                    r.process(&input, &mut output).unwrap();
                }
                assert!(matches!(
                    r.process(&input[1..], &mut output),
                    Err(ResampleError::InputLength { .. })
                ));
                assert!(matches!(
                    r.process(&input, &mut output[1..]),
                    Err(ResampleError::OutputLength { .. })
                ));
                if from == to {
                    assert_eq!(r.delay_samples(), 0);
                } else {
                    assert_eq!(r.delay_samples(), frame(to) / 2);
                }
            }
        }
    }

    #[test]
    fn the_reported_delay_is_the_measured_delay() {
        // An impulse through 8k -> 48k: the output peak sits `delay_samples` later than the
        // input position scaled to the output rate.
        let mut r = Resampler::new(8000, 48_000).unwrap();
        let mut input = vec![0i16; 160];
        input[40] = 20_000;
        let mut out = vec![0i16; 960 * 3];
        let (first, rest) = out.split_at_mut(960);
        r.process(&input, first).unwrap();
        input[40] = 0;
        r.process(&input, &mut rest[..960]).unwrap();
        r.process(&input, &mut rest[960..]).unwrap();
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, v)| v.unsigned_abs())
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(peak, 40 * 6 + r.delay_samples());
    }

    #[test]
    fn unsupported_rates_are_refused() {
        assert!(matches!(
            Resampler::new(44_100, 48_000),
            Err(ResampleError::UnsupportedRate(44_100))
        ));
        assert!(matches!(
            Resampler::new(8000, 22_050),
            Err(ResampleError::UnsupportedRate(22_050))
        ));
    }

    #[test]
    fn full_scale_input_saturates_instead_of_wrapping() {
        let mut r = Resampler::new(8000, 48_000).unwrap();
        // A full-scale square wave makes the filter ring past full scale.
        let input: Vec<i16> = (0..160)
            .map(|i| if (i / 8) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let mut output = vec![0i16; 960];
        let mut prev_sign_flips = 0;
        for _ in 0..5 {
            r.process(&input, &mut output).unwrap();
            // A wrap would flip a near-full-scale positive sample to negative: count abrupt
            // jumps larger than any band-limited step could make.
            prev_sign_flips += output
                .windows(2)
                .filter(|w| (i32::from(w[0]) - i32::from(w[1])).abs() > 40_000)
                .count();
        }
        assert_eq!(prev_sign_flips, 0);
    }

    #[test]
    fn whole_clip_converts_between_arbitrary_rates_keeping_its_length_and_tone() {
        let input: Vec<i16> = (0..22_050)
            .map(|i| {
                ((i as f64 * std::f64::consts::TAU * 440.0 / 22_050.0).sin() * 10_000.0) as i16
            })
            .collect();
        let out = convert(&input, 22_050, 8000).unwrap();
        let expected = 8000usize;
        assert!(out.len().abs_diff(expected) < 200, "{} samples", out.len());
        let peak = out[1000..7000]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((9000..11_000).contains(&peak), "peak {peak}");
        assert_eq!(convert(&input, 8000, 8000).unwrap(), input);
        assert!(convert(&input, 0, 8000).is_err());
    }
}
