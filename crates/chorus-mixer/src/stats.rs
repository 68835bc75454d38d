//! Counters the media threads update with relaxed atomics (no locks) and the control side
//! reads for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Per-thread counters.
#[derive(Debug, Default)]
pub struct ThreadStats {
    pub(crate) legs: AtomicU64,
    pub(crate) rooms: AtomicU64,
    pub(crate) ticks: AtomicU64,
    /// Tick slots whose work ended after the slot's next deadline, one period later: their
    /// rooms' next tick starts late.
    pub(crate) overruns: AtomicU64,
    /// Ticks skipped after a stall (the thread jumps ahead instead of bursting).
    pub(crate) skipped_ticks: AtomicU64,
    /// Rooms moved to another tick slot by the once-a-second rebalancing.
    pub(crate) room_moves: AtomicU64,
    pub(crate) late_us_total: AtomicU64,
    pub(crate) late_us_max: AtomicU64,
    /// Wake-up lateness histogram: < 1 ms, < 2 ms, < 5 ms, < 10 ms, ≥ 10 ms.
    pub(crate) late_buckets: [AtomicU64; 5],
    pub(crate) busy_us_total: AtomicU64,
    pub(crate) packets_in: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) malformed: AtomicU64,
    /// RTP datagrams dropped because they came from another source than the leg's peer.
    pub(crate) foreign_dropped: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) encodes: AtomicU64,
    pub(crate) decodes: AtomicU64,
    /// Opus encoders forked from a shared encoder's state.
    pub(crate) forks: AtomicU64,
    /// Packets sent as another talker's packet as it came, instead of an encode.
    pub(crate) forwards: AtomicU64,
    /// Packets sent from a cached silence payload instead of an encode.
    pub(crate) silence_sends: AtomicU64,
    pub(crate) codec_errors: AtomicU64,
    /// RTP packets lost on the way in (sequence numbers never received, RFC 3550 §6.4.1),
    /// sampled once a second from every leg's jitter buffer.
    pub(crate) packets_lost: AtomicU64,
    /// Pulls that found a playing jitter buffer empty (a packet late for its tick, or a
    /// sender that paused: DTX, hold), and frames discarded to bring a buffer's depth back
    /// to its target; sampled like the losses. Each is a gap or a skip in what a talker
    /// is heard saying.
    pub(crate) underruns: AtomicU64,
    pub(crate) frames_trimmed: AtomicU64,
    /// Legs' interarrival jitter (RFC 3550 §6.4.1), one sample per receiving leg per second:
    /// bucket counts for [`JITTER_BOUNDS_US`] and above, and their sum.
    pub(crate) jitter_buckets: [AtomicU64; JITTER_BUCKETS],
    pub(crate) jitter_us_total: AtomicU64,
    /// Legs' playout delay (jitter-buffer target depth × packet duration), sampled like the
    /// jitter: bucket counts for [`PLAYOUT_BOUNDS_US`] and above, and their sum.
    pub(crate) playout_buckets: [AtomicU64; PLAYOUT_BUCKETS],
    pub(crate) playout_us_total: AtomicU64,
    /// How long each tick slot's work took: bucket counts for [`TICK_BOUNDS_US`] and above
    /// (their sum is `busy_us_total`).
    pub(crate) tick_buckets: [AtomicU64; TICK_BUCKETS],
}

/// Upper bounds (µs) of the jitter histogram's buckets; the last bucket is everything above.
pub const JITTER_BOUNDS_US: [u64; 6] = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000];
const JITTER_BUCKETS: usize = JITTER_BOUNDS_US.len() + 1;
/// Upper bounds (µs) of the playout-delay histogram's buckets: one to five 20 ms frames, then
/// longer packets; the last bucket is everything above.
pub const PLAYOUT_BOUNDS_US: [u64; 6] = [20_000, 40_000, 60_000, 80_000, 100_000, 200_000];
const PLAYOUT_BUCKETS: usize = PLAYOUT_BOUNDS_US.len() + 1;
/// Upper bounds (µs) of the tick-duration histogram's buckets; the last is everything above.
pub const TICK_BOUNDS_US: [u64; 7] = [100, 250, 500, 1_000, 2_000, 5_000, 10_000];
const TICK_BUCKETS: usize = TICK_BOUNDS_US.len() + 1;

fn bucket(bounds: &[u64], value: u64) -> usize {
    bounds
        .iter()
        .position(|&b| value <= b)
        .unwrap_or(bounds.len())
}

/// A copy of [`ThreadStats`] at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ThreadStatsSnapshot {
    pub legs: u64,
    pub rooms: u64,
    pub ticks: u64,
    pub overruns: u64,
    pub skipped_ticks: u64,
    pub room_moves: u64,
    pub late_us_total: u64,
    pub late_us_max: u64,
    pub late_buckets: [u64; 5],
    pub busy_us_total: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub malformed: u64,
    pub foreign_dropped: u64,
    pub send_errors: u64,
    pub events_dropped: u64,
    pub encodes: u64,
    pub decodes: u64,
    pub forks: u64,
    pub forwards: u64,
    pub silence_sends: u64,
    pub codec_errors: u64,
    pub packets_lost: u64,
    pub underruns: u64,
    pub frames_trimmed: u64,
    /// Per-bucket (not cumulative) counts for [`JITTER_BOUNDS_US`] and above.
    pub jitter_buckets: [u64; JITTER_BUCKETS],
    pub jitter_us_total: u64,
    /// Per-bucket (not cumulative) counts for [`PLAYOUT_BOUNDS_US`] and above.
    pub playout_buckets: [u64; PLAYOUT_BUCKETS],
    pub playout_us_total: u64,
    /// Per-bucket (not cumulative) counts for [`TICK_BOUNDS_US`] and above.
    pub tick_buckets: [u64; TICK_BUCKETS],
}

impl ThreadStats {
    pub(crate) fn legs(&self) -> u64 {
        self.legs.load(Relaxed)
    }

    pub(crate) fn record_lateness(&self, late_us: u64) {
        self.late_us_total.fetch_add(late_us, Relaxed);
        self.late_us_max.fetch_max(late_us, Relaxed);
        let bucket = match late_us {
            0..1_000 => 0,
            1_000..2_000 => 1,
            2_000..5_000 => 2,
            5_000..10_000 => 3,
            _ => 4,
        };
        self.late_buckets[bucket].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_tick_duration(&self, busy_us: u64) {
        self.busy_us_total.fetch_add(busy_us, Relaxed);
        self.tick_buckets[bucket(&TICK_BOUNDS_US, busy_us)].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_jitter(&self, jitter_us: u64) {
        self.jitter_us_total.fetch_add(jitter_us, Relaxed);
        self.jitter_buckets[bucket(&JITTER_BOUNDS_US, jitter_us)].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_playout(&self, playout_us: u64) {
        self.playout_us_total.fetch_add(playout_us, Relaxed);
        self.playout_buckets[bucket(&PLAYOUT_BOUNDS_US, playout_us)].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> ThreadStatsSnapshot {
        ThreadStatsSnapshot {
            legs: self.legs.load(Relaxed),
            rooms: self.rooms.load(Relaxed),
            ticks: self.ticks.load(Relaxed),
            overruns: self.overruns.load(Relaxed),
            skipped_ticks: self.skipped_ticks.load(Relaxed),
            room_moves: self.room_moves.load(Relaxed),
            late_us_total: self.late_us_total.load(Relaxed),
            late_us_max: self.late_us_max.load(Relaxed),
            late_buckets: std::array::from_fn(|i| self.late_buckets[i].load(Relaxed)),
            busy_us_total: self.busy_us_total.load(Relaxed),
            packets_in: self.packets_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            foreign_dropped: self.foreign_dropped.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            encodes: self.encodes.load(Relaxed),
            decodes: self.decodes.load(Relaxed),
            forks: self.forks.load(Relaxed),
            forwards: self.forwards.load(Relaxed),
            silence_sends: self.silence_sends.load(Relaxed),
            codec_errors: self.codec_errors.load(Relaxed),
            packets_lost: self.packets_lost.load(Relaxed),
            underruns: self.underruns.load(Relaxed),
            frames_trimmed: self.frames_trimmed.load(Relaxed),
            jitter_buckets: std::array::from_fn(|i| self.jitter_buckets[i].load(Relaxed)),
            jitter_us_total: self.jitter_us_total.load(Relaxed),
            playout_buckets: std::array::from_fn(|i| self.playout_buckets[i].load(Relaxed)),
            playout_us_total: self.playout_us_total.load(Relaxed),
            tick_buckets: std::array::from_fn(|i| self.tick_buckets[i].load(Relaxed)),
        }
    }
}

/// Per-leg counters, reported when the leg is removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LegStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub malformed: u64,
    /// Datagrams dropped because they did not come from the leg's peer (or came while its
    /// source was still being learned, see the crate docs).
    pub foreign_dropped: u64,
    /// Packets of a payload type the leg did not negotiate.
    pub unexpected_pt: u64,
    pub telephone_events: u64,
    pub send_errors: u64,
    pub concealed_frames: u64,
    /// Lost frames rebuilt from the next packet's in-band FEC (Opus).
    pub fec_recovered: u64,
    pub jitter: chorus_media::jitter::JitterStats,
}
