//! The media thread's side of a recording.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chorus_media::AudioTap;
use rtrb::Producer;

use crate::recorder::{Shared, VOICE_THRESHOLD_RMS};

/// Each frame goes into the ring as a header (the rate in two words, the length) followed by
/// its samples, committed together, so the writer always sees whole frames.
pub(crate) const HEADER: usize = 3;

/// Seconds of 48 kHz audio (the highest rate the mixer pushes) the ring holds: room for the
/// writer to be held up by a slow disk or a busy machine without losing anything.
const RING_SECONDS: usize = 4;
pub(crate) const RING_CAPACITY: usize = RING_SECONDS * 50 * (HEADER + 48_000 / 50);

/// A recording's [`AudioTap`]: give it to the media thread that mixes the room.
///
/// [`AudioTap::push`] copies the frame into a wait-free ring and returns: no allocation, no
/// lock, no blocking, no logging. When the ring is full the frame is dropped and counted
/// ([`crate::RecordingResult::dropped_samples`]); once the recording has ended, frames are
/// ignored. Dropping the tap ends the recording.
pub struct Tap {
    producer: Producer<i16>,
    shared: Arc<Shared>,
    /// The recording's rate, to count dropped audio in its samples.
    rate: u32,
    /// Media time pushed, µs; the tap is its only writer.
    heard_us: u64,
}

impl Tap {
    pub(crate) fn new(producer: Producer<i16>, shared: Arc<Shared>, rate: u32) -> Self {
        Tap {
            producer,
            shared,
            rate,
            heard_us: 0,
        }
    }
}

impl AudioTap for Tap {
    fn push(&mut self, rate: u32, samples: &[i16]) {
        if rate == 0 || samples.is_empty() {
            return;
        }
        self.heard_us += samples.len() as u64 * 1_000_000 / u64::from(rate);
        self.shared.heard_us.store(self.heard_us, Ordering::Relaxed);
        if is_voice(samples) {
            self.shared
                .last_voice_us
                .store(self.heard_us, Ordering::Relaxed);
        }
        if self.producer.is_abandoned() {
            // The writer has finished (stopped, limit reached, or failed).
            return;
        }
        let len = samples.len();
        let queued = u16::try_from(len).is_ok()
            && match self.producer.write_chunk_uninit(HEADER + len) {
                Ok(chunk) => {
                    let header = [(rate >> 16) as u16, rate as u16, len as u16].map(|w| w as i16);
                    chunk.fill_from_iter(header.into_iter().chain(samples.iter().copied()));
                    true
                }
                Err(_) => false,
            };
        if !queued {
            let lost = len as u64 * u64::from(self.rate) / u64::from(rate);
            self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("rate", &self.rate)
            .field("heard_us", &self.heard_us)
            .finish()
    }
}

/// Reads back a header written by [`Tap::push`]: (rate, samples).
pub(crate) fn parse_header(header: [i16; HEADER]) -> (u32, usize) {
    let [high, low, len] = header.map(|w| w as u16);
    ((u32::from(high) << 16) | u32::from(low), usize::from(len))
}

fn is_voice(samples: &[i16]) -> bool {
    let energy: i64 = samples.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    let threshold = i64::from(VOICE_THRESHOLD_RMS);
    energy > threshold * threshold * samples.len() as i64
}
