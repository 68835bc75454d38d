//! Talker detection: frame energy (or the RFC 6464 level the sender reports) with start
//! hysteresis and a stop hangover, and the choice of the loudest talkers a room mixes.

/// Thresholds in dBov (dB relative to the overload point, as RFC 6464 §3 defines levels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TalkConfig {
    /// A frame at or above this level counts towards starting to talk.
    pub start_dbov: f32,
    /// Consecutive loud frames needed to start (start hysteresis).
    pub start_frames: u32,
    /// A talker whose level stays below this for `hangover_frames` stops talking.
    pub stop_dbov: f32,
    pub hangover_frames: u32,
    /// A waiting talker displaces a mixed one only when louder by this much (hysteresis on
    /// the talker cap, so the mix doesn't flap between two similar voices).
    pub displace_db: f32,
}

impl Default for TalkConfig {
    fn default() -> Self {
        Self {
            start_dbov: -42.0,
            start_frames: 2,
            stop_dbov: -48.0,
            hangover_frames: 25,
            displace_db: 6.0,
        }
    }
}

/// Per-member talk state.
#[derive(Debug, Clone, Copy, Default)]
pub struct TalkDetector {
    talking: bool,
    loud_run: u32,
    quiet_run: u32,
    /// Smoothed level for ranking talkers, dBov.
    level: f32,
}

impl TalkDetector {
    pub fn new() -> Self {
        Self {
            level: -127.0,
            ..Self::default()
        }
    }

    pub fn talking(&self) -> bool {
        self.talking
    }

    /// Not talking yet, but the last frame was loud enough to start: the next frames decide.
    pub fn rising(&self) -> bool {
        !self.talking && self.loud_run > 0
    }

    pub fn level(&self) -> f32 {
        self.level
    }

    /// Feeds one frame's level; returns `Some(now_talking)` when the state flips.
    pub fn update(&mut self, dbov: f32, config: &TalkConfig) -> Option<bool> {
        // Fast attack, slow release: a voice ranks loud as soon as it is loud.
        let alpha = if dbov > self.level { 0.5 } else { 0.1 };
        self.level += alpha * (dbov - self.level);
        if self.talking {
            if dbov < config.stop_dbov {
                self.quiet_run += 1;
                if self.quiet_run >= config.hangover_frames {
                    self.talking = false;
                    self.loud_run = 0;
                    return Some(false);
                }
            } else {
                self.quiet_run = 0;
            }
        } else if dbov >= config.start_dbov {
            self.loud_run += 1;
            if self.loud_run >= config.start_frames {
                self.talking = true;
                self.quiet_run = 0;
                return Some(true);
            }
        } else {
            self.loud_run = 0;
        }
        None
    }

    /// A member that stops sending (hold, hangup, DTX) decays to silence.
    pub fn idle(&mut self, config: &TalkConfig) -> Option<bool> {
        self.update(-127.0, config)
    }
}

/// Level of a frame in dBov: 0 for a full-scale square wave, about -3 for a full-scale sine.
pub fn frame_dbov(frame: &[i16]) -> f32 {
    let energy: u64 = frame
        .iter()
        .map(|&s| (i64::from(s) * i64::from(s)) as u64)
        .sum();
    energy_dbov(energy, frame.len())
}

/// Level in dBov of `samples` samples whose squares sum to `energy`.
pub fn energy_dbov(energy: u64, samples: usize) -> f32 {
    if samples == 0 {
        return -127.0;
    }
    let mean = energy as f64 / samples as f64;
    if mean < 1.0 {
        return -127.0;
    }
    (10.0 * (mean / (32768.0 * 32768.0)).log10()) as f32
}

/// Picks at most `max` members to mix among the `candidates` (talking, unmuted), keeping the
/// current ones unless a louder one displaces them. `current` is updated in place and never
/// reallocates beyond its capacity (`max`).
///
/// `level(i)` gives candidate `i`'s smoothed level; `is_candidate(i)` whether it may be mixed.
pub fn select_talkers(
    current: &mut Vec<usize>,
    candidates: impl Iterator<Item = usize> + Clone,
    max: usize,
    displace_db: f32,
    level: impl Fn(usize) -> f32,
    is_candidate: impl Fn(usize) -> bool,
) {
    current.retain(|&m| is_candidate(m));
    for c in candidates {
        if current.contains(&c) {
            continue;
        }
        if current.len() < max {
            current.push(c);
            continue;
        }
        // Full: displace the quietest mixed member if the newcomer is clearly louder.
        let Some((pos, quietest)) = current
            .iter()
            .enumerate()
            .min_by(|a, b| level(*a.1).total_cmp(&level(*b.1)))
            .map(|(p, &m)| (p, m))
        else {
            continue;
        };
        if level(c) > level(quietest) + displace_db {
            current[pos] = c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talking_starts_after_the_start_frames_and_stops_after_the_hangover() {
        let config = TalkConfig::default();
        let mut d = TalkDetector::new();
        assert_eq!(d.update(-20.0, &config), None);
        assert_eq!(d.update(-20.0, &config), Some(true));
        for _ in 0..config.hangover_frames - 1 {
            assert_eq!(d.update(-90.0, &config), None);
        }
        assert_eq!(d.update(-90.0, &config), Some(false));
    }

    #[test]
    fn a_single_click_does_not_start_talking() {
        let config = TalkConfig::default();
        let mut d = TalkDetector::new();
        assert_eq!(d.update(-10.0, &config), None);
        assert_eq!(d.update(-90.0, &config), None);
        assert_eq!(d.update(-10.0, &config), None);
        assert!(!d.talking());
    }

    #[test]
    fn short_pauses_inside_speech_keep_the_talker() {
        let config = TalkConfig::default();
        let mut d = TalkDetector::new();
        d.update(-20.0, &config);
        d.update(-20.0, &config);
        for _ in 0..10 {
            assert_eq!(d.update(-90.0, &config), None);
        }
        d.update(-20.0, &config);
        for _ in 0..config.hangover_frames - 1 {
            assert_eq!(d.update(-90.0, &config), None);
        }
        assert!(d.talking());
    }

    #[test]
    fn frame_level_of_a_full_scale_sine_is_about_minus_3_dbov() {
        let frame: Vec<i16> = (0..160)
            .map(|i| ((i as f64 * 0.3).sin() * 32767.0) as i16)
            .collect();
        let db = frame_dbov(&frame);
        assert!((db + 3.0).abs() < 0.5, "{db}");
        assert_eq!(frame_dbov(&[0; 160]), -127.0);
    }

    #[test]
    fn talker_cap_keeps_the_loudest_with_hysteresis() {
        let levels = [-10.0f32, -20.0, -30.0, -40.0, -12.0, -8.0];
        let mut current = Vec::with_capacity(3);
        select_talkers(&mut current, 0..4, 3, 6.0, |i| levels[i], |_| true);
        assert_eq!(current, [0, 1, 2]);
        // Member 4 (-12) is louder than the quietest (2 at -30) by more than 6 dB: displaces.
        select_talkers(&mut current, 0..5, 3, 6.0, |i| levels[i], |_| true);
        assert_eq!(current, [0, 1, 4]);
        // Member 3 (-40) is not louder than anyone: stays out.
        select_talkers(
            &mut current,
            [3].into_iter(),
            3,
            6.0,
            |i| levels[i],
            |_| true,
        );
        assert_eq!(current, [0, 1, 4]);
        // A mixed member that stops being a candidate leaves and frees its place.
        select_talkers(
            &mut current,
            [5].into_iter(),
            3,
            6.0,
            |i| levels[i],
            |i| i != 1,
        );
        assert_eq!(current, [0, 4, 5]);
    }
}
