//! A listen-only level meter on a room's mix, for `<Wait silence="true">`: the media thread
//! stores, per 20 ms frame, how much audio it has heard and when it last heard a voice, in
//! two atomics (no allocation, no lock), and the call task reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_media::AudioTap;

/// Frames whose RMS is above this (about -40 dBFS) count as voice.
const VOICE_RMS: f64 = 330.0;

/// Tap ids for meters come from the top half, away from recordings' ids.
static NEXT: AtomicU64 = AtomicU64::new(1 << 62);

pub(crate) fn next_tap_id() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the meter has heard, in milliseconds of media time.
#[derive(Debug, Default)]
pub(crate) struct Levels {
    heard_ms: AtomicU64,
    /// End of the last voiced frame; 0 = none yet.
    last_voice_ms: AtomicU64,
}

impl Levels {
    /// Silent for at least `d`, after at least `d` of audio.
    pub fn silent_for(&self, d: Duration) -> bool {
        let heard = self.heard_ms.load(Ordering::Acquire);
        let voice = self.last_voice_ms.load(Ordering::Acquire);
        let d = d.as_millis() as u64;
        heard >= d && heard - voice >= d
    }
}

pub(crate) struct LevelTap {
    levels: Arc<Levels>,
}

impl LevelTap {
    pub fn new(levels: Arc<Levels>) -> Self {
        Self { levels }
    }
}

impl AudioTap for LevelTap {
    fn push(&mut self, rate: u32, samples: &[i16]) {
        if samples.is_empty() || rate == 0 {
            return;
        }
        let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (energy / samples.len() as f64).sqrt();
        let ms = samples.len() as u64 * 1000 / u64::from(rate);
        let heard = self.levels.heard_ms.fetch_add(ms, Ordering::AcqRel) + ms;
        if rms > VOICE_RMS {
            self.levels.last_voice_ms.store(heard, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_reported_only_after_enough_quiet_audio() {
        let levels = Arc::new(Levels::default());
        let mut tap = LevelTap::new(levels.clone());
        let loud: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 8000 } else { -8000 })
            .collect();
        let quiet = [0i16; 160];
        let min = Duration::from_millis(500);
        for _ in 0..10 {
            tap.push(8000, &loud);
        }
        assert!(!levels.silent_for(min), "voice just now");
        for _ in 0..24 {
            tap.push(8000, &quiet);
        }
        assert!(!levels.silent_for(min), "480 ms of quiet is not 500");
        tap.push(8000, &quiet);
        assert!(levels.silent_for(min));
        tap.push(8000, &loud);
        assert!(!levels.silent_for(min), "a voice resets it");
    }
}
