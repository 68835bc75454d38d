//! A listen-only tap on a room's mix: what recordings (and any future monitor) receive from a
//! media thread.

/// Receives one room's mix, one 20 ms frame per tick, on the media thread.
///
/// Implementations must not block, lock, allocate or log in [`AudioTap::push`]: they hand the
/// samples over (typically into a lock-free ring drained by another thread) and return. When
/// they cannot keep up they drop the frame and remember it.
pub trait AudioTap: Send {
    /// The mix of one tick: mono, `rate` Hz (8,000 or 48,000), 20 ms of samples. Silence is
    /// pushed as zeros, so the tap's timeline stays continuous.
    fn push(&mut self, rate: u32, samples: &[i16]);
}
