//! Test and prompt tone sources: a phase-continuous sine (beeps, probes, test tones).

/// A sine generator whose phase carries over from one frame to the next, so consecutive
/// frames join without clicks.
#[derive(Debug, Clone)]
pub struct Sine {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl Sine {
    /// `amplitude` is the peak in sample units (e.g. 8000.0 ≈ -12 dBFS).
    pub fn new(frequency_hz: f64, sample_rate: u32, amplitude: f64) -> Self {
        Self {
            phase: 0.0,
            step: std::f64::consts::TAU * frequency_hz / sample_rate as f64,
            amplitude,
        }
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            *s = (self.phase.sin() * self.amplitude) as i16;
            self.phase += self.step;
            if self.phase > std::f64::consts::TAU {
                self.phase -= std::f64::consts::TAU;
            }
        }
    }
}
