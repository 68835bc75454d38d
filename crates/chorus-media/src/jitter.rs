//! Per-member jitter buffer: reorders by RTP sequence number (RFC 3550 §5.1, §A.1), drops
//! duplicates and late packets, survives sequence wrap and SSRC changes, and releases one
//! packet per pull once a target depth has built up.
//!
//! Storage is a fixed ring of `capacity` slots, each able to hold `max_payload` bytes, all
//! allocated at construction; `push`, `push_at`, `note_non_audio`, `peek` and `pop` never
//! allocate. Everything is clock-free: the caller says when a packet arrived, in RTP clock
//! units of its own clock.
//!
//! # Adaptive depth
//!
//! [`JitterBuffer::push`] knows nothing of time, so the target depth stays where
//! [`JitterBuffer::new`] or [`JitterBuffer::set_target`] put it. [`JitterBuffer::push_at`]
//! feeds the RFC 3550 §6.4.1 / §A.8 interarrival jitter estimator (`J += (|D| - J) / 16`, in
//! timestamp units) and makes the target follow it:
//! `target = clamp(ceil(2·J / frame) + 1, min, max)` with `frame` 20 ms at the clock rate and
//! bounds 1..=3 by default ([`JitterBuffer::set_target_bounds`]). Twice the mean deviation
//! covers most late packets; the `+ 1` is the packet being played. The target rises at once
//! (a late packet is an audible gap) and falls only after the estimate has stayed clearly
//! below the threshold for [`LOWER_AFTER`] packets, so it does not flap, and not within
//! [`HOLD_AFTER_LATE_S`] seconds of a late one (half a frame behind the typical transit, a
//! running median) that followed another within that time. The caller that reads at ticks
//! stamps arrivals with the tick, so `J` counts the packets that missed their tick and nothing
//! finer: the ceiling then adds a frame exactly when packets do miss it, and the hold keeps it
//! while they keep doing so now and then. The depth follows the target: upwards through
//! underruns (each one delays playout by a frame), downwards by dropping one frame when the
//! depth stayed above target for a whole second of pulls.
//!
//! # Talkspurts
//!
//! A packet starts a new talkspurt when its marker bit is set (RFC 3550 §5.1; RFC 3551 §4.1
//! after silence suppression, RFC 7587 §4.2 after Opus DTX) or when its timestamp is more than
//! one second away from what its sequence number implies (a sender that paused, held, or
//! restarted its clock, with contiguous numbering). Its arrival does not feed the estimator
//! (the pause is not network jitter), no loss is counted, and when it reaches the head of an
//! otherwise drained buffer playout waits for the target depth again, exactly as at the start.
//!
//! # Non-audio packets
//!
//! RFC 4733 §2.1: telephone-events travel on the audio's SSRC and take sequence numbers from
//! the same space, and while a key is pressed the sender sends them *instead* of audio; the
//! audio after the event resumes with a timestamp advanced by the time the event took. The
//! caller diverts those packets elsewhere but tells the buffer through
//! [`JitterBuffer::note_non_audio`], so that their sequence numbers are neither lost nor a
//! reason to restart. A noted number takes no playout time of its own: reaching it opens a
//! *gap*, in which playout follows the audio timestamps instead. Each pull yields
//! [`Pop::Silence`] and advances a playout clock by a frame until the clock reaches the
//! timestamp of the next audio packet, which then plays exactly as deep in the buffer as the
//! audio before the event did, however many event packets the sender chose to send for it.
//! A gap in which nothing at all arrives ends after [`GAP_IDLE_PULLS`] pulls (the sender
//! stopped; ordinary underruns follow).
//!
//! A sequence number that never arrived is judged by what follows it. Before a non-audio
//! packet whose event had already begun at the playout clock, or before audio inside a gap,
//! it is counted lost when its time comes but never concealed: the sender's audio around it
//! is silence. A non-audio packet that arrives after its number was counted lost takes that
//! loss back, so [`JitterStats::lost`] never counts a telephone-event that arrived.

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Stored,
    Duplicate,
    /// Its playout time has passed: dropped.
    Late,
    /// Larger than a slot: dropped.
    Oversize,
    /// A new SSRC or a sequence jump beyond the ring: the buffer restarted with this packet.
    Restarted,
    /// A non-audio packet outside the buffered stream (another SSRC, a sequence number far
    /// from the audio's, or no audio yet): ignored. Only audio restarts the buffer.
    Unrelated,
}

/// What a pull yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<'a> {
    Packet {
        sequence: u16,
        timestamp: u32,
        payload: &'a [u8],
    },
    /// The next packet in sequence never arrived although later ones did: conceal it.
    Lost,
    /// Nothing to play: still buffering, or the sender paused (hold, DTX, end of talk).
    Empty,
    /// The sender sent non-audio packets (RFC 4733 telephone-events) instead of audio for this
    /// frame: play 20 ms of silence. Nothing was lost, so nothing is to be concealed.
    Silence,
}

/// Counters for metrics and tests. They count audio packets and frames; non-audio packets
/// count only in `non_audio`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub stored: u64,
    pub duplicates: u64,
    pub late: u64,
    pub oversize: u64,
    pub lost: u64,
    pub restarts: u64,
    pub underruns: u64,
    /// Packets discarded to bring the depth back to target after a burst.
    pub trimmed: u64,
    /// Talkspurt starts seen (marker bit or timestamp jump).
    pub talkspurts: u64,
    /// Pulls that waited at the start of a talkspurt to rebuild the target depth.
    pub holds: u64,
    /// Sequence numbers noted as carrying non-audio packets (telephone-events).
    pub non_audio: u64,
    /// Pulls that yielded [`Pop::Silence`]: the sender was sending non-audio packets instead.
    pub silence: u64,
}

/// Packets the jitter estimate must stay clearly below a lower target before the target drops
/// (one second of 20 ms packets).
pub const LOWER_AFTER: u32 = 50;
/// Seconds for which a late packet (half a frame behind the typical transit) that came within
/// this time of another one keeps an extra frame: the target may not drop to its least until
/// this long after the last such packet (higher targets still follow the estimate down). The
/// estimate forgets a single late packet within a second or two, but a sender that has had
/// two will have more: typically a peer whose packets arrive close to the reading tick, so
/// that now and then one misses it. Lowering the target after each of them played a gap at
/// every miss and skipped a frame a second after it; holding the extra frame plays neither. A lone late packet (one stall of the network or of the host) does not hold,
/// so it costs the extra frame for the estimate's second or two, not for ten. Counted on the
/// arrival clock, not in packets, so that 40 ms packets or DTX do not stretch it.
pub const HOLD_AFTER_LATE_S: u32 = 10;
/// Pulls over which the depth is watched before one frame of excess latency is dropped.
const DEPTH_WINDOW: u32 = 50;
/// Default adaptive bounds, in packets.
const DEFAULT_BOUNDS: (usize, usize) = (1, 3);
/// Clock rate assumed until [`JitterBuffer::set_clock_rate`]: G.711's.
const DEFAULT_CLOCK_RATE: u32 = 8000;
/// Pulls of silence a gap lasts with nothing arriving at all (one second of 20 ms frames):
/// long enough for any RFC 4733 update interval, short enough that a sender that stopped
/// after an event is treated as paused.
pub const GAP_IDLE_PULLS: u32 = 50;
/// Longest audio packet whose duration is learnt from timestamps: 120 ms (RFC 6716 §2.1.4).
const MAX_PACKET_FRAMES: u32 = 6;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    filled: bool,
    /// Holds a sequence number noted by [`JitterBuffer::note_non_audio`]: no payload and no
    /// playout time of its own; `timestamp` is the packet's (an event's start).
    non_audio: bool,
    /// First packet of a talkspurt: playout re-aligns here.
    talkspurt: bool,
    /// Not filled: `sequence` was played out as lost, which a late non-audio packet for it
    /// takes back.
    lost: bool,
    sequence: u16,
    timestamp: u32,
    len: usize,
}

/// The RFC 3550 §A.8 estimator and the adaptive-target state.
#[derive(Debug, Clone, Copy)]
struct Adaptation {
    /// Set by the first `push_at`: only then does the buffer know about time.
    enabled: bool,
    clock_rate: u32,
    min_target: usize,
    max_target: usize,
    /// J scaled by 16, as in RFC 3550 §A.8 (u64: a hostile |D| near 2^31 cannot overflow).
    jitter_q4: u64,
    /// Relative transit time (arrival − timestamp) of the previous packet.
    last_transit: Option<u32>,
    /// The typical transit time: a running median that moves a sixteenth of a frame towards
    /// each packet's transit, restarted with each talkspurt.
    typical: Option<u32>,
    /// Highest sequence number seen and its timestamp: what later timestamps are checked
    /// against for jumps.
    highest: Option<(u16, u32)>,
    /// Consecutive packets for which a lower target would have sufficed.
    below: u32,
    /// Arrival (the caller's clock, RTP units) of the last late packet, for
    /// [`HOLD_AFTER_LATE_S`] after it.
    late_at: Option<u32>,
    /// Arrival of the late packet that started or renewed the hold, while the hold lasts.
    held_at: Option<u32>,
    /// Packets of the stream's first second still to come. Their late ones do not start the
    /// hold: a leg that joins with packets already queued, or a peer that sends its first
    /// packets in a burst, says nothing yet about the path.
    starting: u32,
    /// Pulls held at the current talkspurt start.
    hold: usize,
    window_pulls: u32,
    window_min_depth: usize,
}
#[derive(Debug)]
pub struct JitterBuffer {
    slots: Box<[Slot]>,
    data: Box<[u8]>,
    max_payload: usize,
    ssrc: Option<u32>,
    /// Sequence number of the next packet to release; `None` until the first packet.
    next: Option<u16>,
    /// Audio packets held (what the target depth counts).
    buffered: usize,
    /// Non-audio sequence numbers held.
    noted: usize,
    target: usize,
    playing: bool,
    /// The RTP timestamp the next pull stands for: just past what was last played.
    clock: Option<u32>,
    /// Timestamp units per audio packet, learnt from consecutive packets; 20 ms until then.
    packet_ticks: Option<u32>,
    /// Playout is inside a stretch the sender filled with non-audio packets: the number of
    /// silent pulls since the last of them, with nothing arriving.
    gap: Option<u32>,
    stats: JitterStats,
    adaptation: Adaptation,
    /// (slot, length) of the packet the last pull returned, until a push refills that slot.
    played: Option<(usize, usize)>,
}

/// Where a pull stands once the head of the ring has been sorted out.
enum Settle {
    /// The head is an audio packet to play, or a lost one to conceal.
    Play,
    /// A gap's silence.
    Silence,
    /// Nothing to play.
    Underrun,
}

impl JitterBuffer {
    /// `capacity` slots of `max_payload` bytes each; `target` packets are buffered before
    /// playout starts.
    pub fn new(capacity: usize, max_payload: usize, target: usize) -> Self {
        let capacity = capacity.clamp(2, 1024);
        Self {
            slots: vec![Slot::default(); capacity].into_boxed_slice(),
            data: vec![0u8; capacity * max_payload].into_boxed_slice(),
            max_payload,
            ssrc: None,
            next: None,
            buffered: 0,
            noted: 0,
            target: target.clamp(1, capacity - 1),
            playing: false,
            clock: None,
            packet_ticks: None,
            gap: None,
            played: None,
            stats: JitterStats::default(),
            adaptation: Adaptation {
                enabled: false,
                clock_rate: DEFAULT_CLOCK_RATE,
                min_target: DEFAULT_BOUNDS.0,
                max_target: DEFAULT_BOUNDS.1.min(capacity - 1),
                jitter_q4: 0,
                last_transit: None,
                typical: None,
                highest: None,
                below: 0,
                late_at: None,
                held_at: None,
                starting: LOWER_AFTER,
                hold: 0,
                window_pulls: 0,
                window_min_depth: usize::MAX,
            },
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The current target depth in packets.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The RFC 3550 §6.4.1 interarrival jitter estimate, in RTP timestamp units; zero until
    /// [`Self::push_at`] has seen two packets of one talkspurt.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.adaptation.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// The RTP clock rate of the stream (8000 for G.711, 48000 for Opus per RFC 7587 §4.1):
    /// it sizes a frame for the target formula and one second for timestamp-jump detection.
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.adaptation.clock_rate = clock_rate.max(50);
    }

    /// Bounds of the adaptive target in packets (default 1..=3), clamped to the ring.
    pub fn set_target_bounds(&mut self, min: usize, max: usize) {
        let ceiling = self.slots.len() - 1;
        let min = min.clamp(1, ceiling);
        self.adaptation.min_target = min;
        self.adaptation.max_target = max.clamp(min, ceiling);
        if self.adaptation.enabled {
            self.target = self.target.clamp(min, self.adaptation.max_target);
        }
    }

    pub fn buffered(&self) -> usize {
        self.buffered
    }

    pub fn set_target(&mut self, target: usize) {
        self.target = target.clamp(1, self.slots.len() - 1);
    }

    /// Forgets everything buffered (new source, or the caller re-negotiated).
    pub fn reset(&mut self) {
        self.slots.fill(Slot::default());
        self.ssrc = None;
        self.next = None;
        self.buffered = 0;
        self.noted = 0;
        self.playing = false;
        self.clock = None;
        self.gap = None;
        // A new source has its own clock: the transit baseline and timestamp history go; the
        // jitter estimate stays, it describes the network path.
        self.adaptation.last_transit = None;
        self.adaptation.typical = None;
        self.adaptation.highest = None;
        self.adaptation.starting = LOWER_AFTER;
        self.adaptation.hold = 0;
        self.restart_depth_window();
    }

    /// Stores a packet whose arrival time is unknown: no adaptation (see the module docs).
    pub fn push(&mut self, ssrc: u32, sequence: u16, timestamp: u32, payload: &[u8]) -> Push {
        self.push_inner(None, false, ssrc, sequence, timestamp, payload)
    }

    /// Notes that `sequence` of the stream `ssrc` carried a packet that is not audio (an
    /// RFC 4733 telephone-event, sent instead of the audio and numbered with it, §2.1) whose
    /// RTP timestamp is `timestamp`. The number then counts neither as lost nor as a jump,
    /// and playout across the event is silence timed by the audio timestamps (see the module
    /// docs). Never restarts the buffer: a packet outside the stream is [`Push::Unrelated`].
    pub fn note_non_audio(&mut self, ssrc: u32, sequence: u16, timestamp: u32) -> Push {
        let Some(next) = self.next else {
            return Push::Unrelated;
        };
        if self.ssrc != Some(ssrc) {
            return Push::Unrelated;
        }
        let capacity = self.slots.len();
        let ahead = sequence.wrapping_sub(next) as i16;
        if ahead < 0 {
            let behind = ahead.unsigned_abs() as usize;
            if !self.playing && behind < capacity - self.buffered - self.noted {
                self.next = Some(sequence);
            } else if behind < capacity {
                // Its number has been played out already; if as a loss, it was none.
                let slot = &mut self.slots[usize::from(sequence) % capacity];
                if !slot.filled && slot.lost && slot.sequence == sequence {
                    slot.lost = false;
                    self.stats.lost -= 1;
                }
                return Push::Late;
            } else {
                return Push::Unrelated;
            }
        } else if ahead as usize >= capacity {
            return Push::Unrelated;
        }
        let index = usize::from(sequence) % capacity;
        if self.vacate(index, sequence) {
            return Push::Duplicate;
        }
        self.slots[index] = Slot {
            filled: true,
            non_audio: true,
            talkspurt: false,
            lost: false,
            sequence,
            timestamp,
            len: 0,
        };
        self.noted += 1;
        self.stats.non_audio += 1;
        Push::Stored
    }

    /// Stores a packet that arrived at `arrival`, in RTP clock units counted by the caller's
    /// own clock (any origin, wrapping), and adapts the target depth to the measured jitter.
    /// `marker` is the RTP marker bit: the start of a talkspurt (RFC 3550 §5.1).
    pub fn push_at(
        &mut self,
        arrival: u32,
        marker: bool,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> Push {
        self.push_inner(Some(arrival), marker, ssrc, sequence, timestamp, payload)
    }

    /// The payload of the packet the last [`JitterBuffer::pop`] returned, as long as no push
    /// has refilled its slot since (a mixer forwarding it after the decode).
    pub fn played(&self) -> Option<&[u8]> {
        let (index, len) = self.played?;
        let start = index * self.max_payload;
        Some(&self.data[start..start + len])
    }

    /// The payload of the next packet in sequence, if it is here: after [`Pop::Lost`] this is
    /// the packet following the lost one, whose in-band FEC can rebuild it (RFC 6716 §2.1.7).
    pub fn peek(&self) -> Option<&[u8]> {
        let next = self.next?;
        let index = usize::from(next) % self.slots.len();
        let slot = self.slots[index];
        (slot.filled && !slot.non_audio && slot.sequence == next).then(|| {
            let start = index * self.max_payload;
            &self.data[start..start + slot.len]
        })
    }

    fn push_inner(
        &mut self,
        arrival: Option<u32>,
        marker: bool,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> Push {
        if payload.len() > self.max_payload {
            self.stats.oversize += 1;
            return Push::Oversize;
        }
        let mut outcome = Push::Stored;
        if self.ssrc.is_some_and(|s| s != ssrc) {
            // RFC 3550 §8.2: a new SSRC is a new source; its numbering has nothing to do with
            // the old one.
            self.reset();
            self.stats.restarts += 1;
            outcome = Push::Restarted;
        }
        self.ssrc = Some(ssrc);
        let talkspurt = marker || self.timestamp_jumps(sequence, timestamp);
        if talkspurt {
            self.stats.talkspurts += 1;
        }
        if let Some(arrival) = arrival {
            self.estimate(arrival, timestamp, talkspurt);
        }
        let capacity = self.slots.len();
        let next = *self.next.get_or_insert(sequence);
        // Signed distance in the 16-bit sequence space handles wrap (RFC 3550 §A.1).
        let ahead = sequence.wrapping_sub(next) as i16;
        if ahead < 0 {
            let held = self.buffered + self.noted;
            if !self.playing && (ahead.unsigned_abs() as usize) < capacity - held {
                // Still buffering: an earlier packet overtaken by a later one moves the start.
                self.next = Some(sequence);
            } else {
                self.stats.late += 1;
                return Push::Late;
            }
        } else if ahead as usize >= capacity {
            // A jump past the ring: the sender restarted its numbering or we fell far behind.
            let adaptation = self.adaptation;
            self.reset();
            // Same source, same clock: keep what the estimator knows.
            self.adaptation.last_transit = adaptation.last_transit;
            self.adaptation.typical = adaptation.typical;
            self.adaptation.highest = adaptation.highest;
            self.adaptation.starting = adaptation.starting;
            self.ssrc = Some(ssrc);
            self.next = Some(sequence);
            self.stats.restarts += 1;
            outcome = Push::Restarted;
        }
        match self.adaptation.highest {
            Some((high, high_ts)) if sequence.wrapping_sub(high) as i16 > 0 => {
                let step = timestamp.wrapping_sub(high_ts);
                if sequence == high.wrapping_add(1)
                    && !talkspurt
                    && (1..=MAX_PACKET_FRAMES * self.frame_ticks()).contains(&step)
                {
                    self.packet_ticks = Some(step);
                }
                self.adaptation.highest = Some((sequence, timestamp));
            }
            Some(_) => {}
            None => self.adaptation.highest = Some((sequence, timestamp)),
        }
        let index = usize::from(sequence) % capacity;
        if self.vacate(index, sequence) {
            self.stats.duplicates += 1;
            return Push::Duplicate;
        }
        if self.played.is_some_and(|(i, _)| i == index) {
            self.played = None;
        }
        self.slots[index] = Slot {
            filled: true,
            non_audio: false,
            talkspurt,
            lost: false,
            sequence,
            timestamp,
            len: payload.len(),
        };
        let start = index * self.max_payload;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        self.buffered += 1;
        self.stats.stored += 1;
        outcome
    }

    /// Releases the next packet in sequence, once per packet duration.
    pub fn pop(&mut self) -> Pop<'_> {
        self.played = None;
        if self.next.is_none() {
            return Pop::Empty;
        }
        if !self.playing {
            if self.buffered < self.target {
                return Pop::Empty;
            }
            self.playing = true;
        }
        // After a burst the depth can exceed the target: drop the oldest so latency does not
        // creep up for the rest of the call.
        while self.buffered > self.target + 2 {
            if self.discard_head() {
                self.stats.trimmed += 1;
            }
        }
        let capacity = self.slots.len();
        loop {
            match self.settle() {
                Settle::Play => {}
                Settle::Silence => return self.silence(),
                Settle::Underrun => {
                    self.stats.underruns += 1;
                    self.adaptation.window_min_depth = 0;
                    return Pop::Empty;
                }
            }
            let head = self.next_or(0);
            let head_slot = self.slots[usize::from(head) % capacity];
            if self.gap.is_none()
                && head_slot.filled
                && head_slot.sequence == head
                && head_slot.talkspurt
            {
                // A new talkspurt after the last one drained: rebuild the target depth before
                // playing it, as at the start of the stream. Bounded by the target in pulls,
                // so a talkspurt shorter than the target still plays. (In a gap the playout
                // clock already keeps the depth.)
                if self.buffered < self.target && self.adaptation.hold < self.target {
                    self.adaptation.hold += 1;
                    self.stats.holds += 1;
                    return Pop::Empty;
                }
            }
            self.adaptation.hold = 0;
            // Dropping a frame of excess latency moves the head: sort it out again.
            if !(self.adaptation.enabled && self.watch_depth()) {
                break;
            }
        }
        let next = self.next_or(0);
        let index = usize::from(next) % capacity;
        self.advance();
        let slot = self.slots[index];
        let packet_ticks = self.packet_ticks();
        if slot.filled && slot.sequence == next {
            self.slots[index].filled = false;
            self.buffered -= 1;
            self.gap = None;
            self.clock = Some(slot.timestamp.wrapping_add(packet_ticks));
            self.played = Some((index, slot.len));
            let start = index * self.max_payload;
            Pop::Packet {
                sequence: slot.sequence,
                timestamp: slot.timestamp,
                payload: &self.data[start..start + slot.len],
            }
        } else {
            self.mark_lost(next);
            self.clock = self.clock.map(|c| c.wrapping_add(packet_ticks));
            Pop::Lost
        }
    }

    /// Consumes the non-audio numbers at the head and decides what this pull is: the head
    /// (an audio packet, or a loss), a gap's silence, or nothing.
    fn settle(&mut self) -> Settle {
        let capacity = self.slots.len();
        let half_frame = (self.frame_ticks() / 2) as i32;
        loop {
            let Some(head) = self.next else {
                return Settle::Underrun;
            };
            let index = usize::from(head) % capacity;
            let slot = self.slots[index];
            if slot.filled && slot.sequence == head {
                if slot.non_audio {
                    self.slots[index].filled = false;
                    self.noted -= 1;
                    self.advance();
                    self.gap = Some(0);
                    continue;
                }
                if self.gap.is_some() {
                    match self.ahead_of_clock(slot.timestamp) {
                        // The sender's audio resumes later than the clock: silence until then,
                        // unless audio is piling up (the sender's clock runs ahead of ours).
                        Some(ahead) if ahead >= half_frame && self.buffered <= self.target => {
                            return Settle::Silence
                        }
                        Some(_) => {}
                        // Resumed after more than a second: a talkspurt like any other.
                        None => self.gap = None,
                    }
                }
                return Settle::Play;
            }
            // The head has not arrived: what follows it tells what it was.
            let Some((distance, later)) = self.first_held(head) else {
                return match self.gap {
                    Some(idle) if idle < GAP_IDLE_PULLS => {
                        self.gap = Some(idle + 1);
                        Settle::Silence
                    }
                    _ => {
                        self.gap = None;
                        Settle::Underrun
                    }
                };
            };
            if later.non_audio {
                // Before a non-audio packet whose event had begun by the playout clock, it
                // was one of the event's packets: missing, but with no time of its own to
                // conceal. Before one that begins later, it was the audio before the event.
                if self
                    .ahead_of_clock(later.timestamp)
                    .is_none_or(|a| a < half_frame)
                {
                    self.mark_lost(head);
                    self.advance();
                    continue;
                }
                return Settle::Play;
            }
            if self.gap.is_none() {
                return Settle::Play;
            }
            // Inside a gap, before audio: had it been audio, it would play at `implied`. It is
            // never concealed: whatever it was, the sender's audio around it is silence.
            let implied = later
                .timestamp
                .wrapping_sub(u32::from(distance).wrapping_mul(self.packet_ticks()));
            match self.ahead_of_clock(implied) {
                Some(ahead) if ahead >= half_frame && self.buffered <= self.target => {
                    return Settle::Silence;
                }
                Some(ahead) if ahead > -half_frame && ahead < half_frame => {
                    self.mark_lost(head);
                    self.advance();
                    return Settle::Silence;
                }
                // Its time went by as silence (or must, the audio behind it piling up).
                Some(_) => {
                    self.mark_lost(head);
                    self.advance();
                }
                None => {
                    self.gap = None;
                    return Settle::Play;
                }
            }
        }
    }

    /// The first sequence number after `head` that holds a packet, and how far it is.
    fn first_held(&self, head: u16) -> Option<(u16, Slot)> {
        if self.buffered + self.noted == 0 {
            return None;
        }
        let capacity = self.slots.len();
        (1..capacity as u16).find_map(|distance| {
            let sequence = head.wrapping_add(distance);
            let slot = self.slots[usize::from(sequence) % capacity];
            (slot.filled && slot.sequence == sequence).then_some((distance, slot))
        })
    }

    /// How far `timestamp` lies ahead of the playout clock, when it is within a second of it
    /// (0 before anything played).
    fn ahead_of_clock(&self, timestamp: u32) -> Option<i32> {
        let Some(clock) = self.clock else {
            return Some(0);
        };
        let ahead = timestamp.wrapping_sub(clock) as i32;
        (ahead.unsigned_abs() < self.adaptation.clock_rate).then_some(ahead)
    }

    fn silence(&mut self) -> Pop<'static> {
        let frame = self.frame_ticks();
        self.clock = self.clock.map(|c| c.wrapping_add(frame));
        self.stats.silence += 1;
        // The audio depth is low across a gap: no excess latency to drop after it.
        self.adaptation.window_min_depth = 0;
        Pop::Silence
    }

    /// Counts `sequence` lost and remembers it in its (empty) slot.
    fn mark_lost(&mut self, sequence: u16) {
        self.stats.lost += 1;
        let slot = &mut self.slots[usize::from(sequence) % self.slots.len()];
        if !slot.filled {
            slot.lost = true;
            slot.sequence = sequence;
        }
    }

    /// Empties slot `index` for `sequence`; true when it already holds `sequence`.
    fn vacate(&mut self, index: usize, sequence: u16) -> bool {
        let slot = self.slots[index];
        if !slot.filled {
            return false;
        }
        if slot.sequence == sequence {
            return true;
        }
        // A stale packet from a lap ago still sits here; the newer one wins.
        if slot.non_audio {
            self.noted -= 1;
        } else {
            self.buffered -= 1;
        }
        self.slots[index].filled = false;
        false
    }

    /// Drops whatever the head holds and moves past it; true when that was an audio packet.
    fn discard_head(&mut self) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        let index = usize::from(next) % self.slots.len();
        let slot = self.slots[index];
        self.advance();
        if !(slot.filled && slot.sequence == next) {
            return false;
        }
        self.slots[index].filled = false;
        if slot.non_audio {
            self.noted -= 1;
            false
        } else {
            self.buffered -= 1;
            true
        }
    }

    /// Whether `timestamp` is more than a second away from what `sequence` implies, given the
    /// highest packet so far and 20 ms per packet (RFC 3550 §5.1: timestamps advance with
    /// sampling time, sequence numbers by one per packet).
    fn timestamp_jumps(&self, sequence: u16, timestamp: u32) -> bool {
        let Some((high_seq, high_ts)) = self.adaptation.highest else {
            return false;
        };
        let packets = i64::from(sequence.wrapping_sub(high_seq) as i16);
        let expected = i64::from(high_ts) + packets * i64::from(self.frame_ticks());
        let drift = (timestamp.wrapping_sub(expected as u32) as i32).unsigned_abs();
        drift > self.adaptation.clock_rate
    }

    /// RFC 3550 §A.8: `J += (|D| - J) / 16` in fixed point, then the target follows `J`.
    fn estimate(&mut self, arrival: u32, timestamp: u32, talkspurt: bool) {
        let frame = u64::from(self.frame_ticks());
        let a = &mut self.adaptation;
        if !a.enabled {
            a.enabled = true;
            self.target = self.target.clamp(a.min_target, a.max_target);
        }
        let transit = arrival.wrapping_sub(timestamp);
        let previous = a.last_transit.replace(transit);
        match previous {
            // The gap before a talkspurt is the sender's silence, not the network's jitter.
            Some(_) if talkspurt => a.typical = Some(transit),
            None => a.typical = Some(transit),
            Some(previous) => {
                let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
                a.jitter_q4 = a.jitter_q4 + d - ((a.jitter_q4 + 8) >> 4);
                // Late: half a frame behind the typical transit, not just behind the previous
                // packet. A packet read a tick early (a late wake-up, or the catch-up after a
                // stall) makes the next one look late against it, though it is on time; and
                // a sender that misses its tick often is late against the typical transit
                // every time, even right after another miss.
                let typical = a.typical.unwrap_or(previous);
                let behind = transit.wrapping_sub(typical) as i32;
                if 2 * i64::from(behind) >= frame as i64 && a.starting == 0 {
                    // A second late packet within the hold's time: the sender misses its
                    // tick now and then, not once.
                    if a.late_at.is_some() {
                        a.held_at = Some(arrival);
                    }
                    a.late_at = Some(arrival);
                }
                a.starting = a.starting.saturating_sub(1);
                let step = i32::try_from(frame / 16).unwrap_or(i32::MAX).max(1);
                a.typical = Some(typical.wrapping_add_signed(behind.clamp(-step, step)));
            }
        }
        let hold = HOLD_AFTER_LATE_S * a.clock_rate;
        let recent = |at: Option<u32>| at.filter(|&t| arrival.wrapping_sub(t) < hold);
        a.late_at = recent(a.late_at);
        a.held_at = recent(a.held_at);
        self.adapt_target();
    }

    fn adapt_target(&mut self) {
        let frame = u64::from(self.frame_ticks());
        let jitter = self.adaptation.jitter_q4 >> 4;
        let wanted = self.target_for(jitter, frame);
        if wanted > self.target {
            self.target = wanted;
            self.adaptation.below = 0;
            return;
        }
        // Lower only when a quarter more jitter would still fit the lower target, and only
        // after that held for LOWER_AFTER packets: a jitter hovering at a threshold would
        // otherwise move the depth up and down every few packets.
        if self.target_for(jitter + jitter / 4, frame) < self.target {
            let a = &mut self.adaptation;
            a.below = a.below.saturating_add(1);
            // The hold keeps one frame over the least depth, not whatever the target was:
            // the estimate still takes back what a burst of larger jitter added.
            let held = a.held_at.is_some() && self.target <= a.min_target + 1;
            if a.below >= LOWER_AFTER && !held {
                self.target -= 1;
                self.adaptation.below = 0;
            }
        } else {
            self.adaptation.below = 0;
        }
    }

    fn target_for(&self, jitter: u64, frame: u64) -> usize {
        let packets = (2 * jitter).div_ceil(frame.max(1)) + 1;
        usize::try_from(packets)
            .unwrap_or(usize::MAX)
            .clamp(self.adaptation.min_target, self.adaptation.max_target)
    }

    /// Drops one frame of latency when the depth at every pull of the last second stayed
    /// above target: the jitter that built it up has gone. True when the head moved.
    fn watch_depth(&mut self) -> bool {
        let a = &mut self.adaptation;
        a.window_min_depth = a.window_min_depth.min(self.buffered);
        a.window_pulls += 1;
        if a.window_pulls < DEPTH_WINDOW {
            return false;
        }
        let excess = a.window_min_depth > self.target;
        self.restart_depth_window();
        if !excess || self.next.is_none() {
            return false;
        }
        if self.discard_head() {
            self.stats.trimmed += 1;
        }
        true
    }

    fn restart_depth_window(&mut self) {
        self.adaptation.window_pulls = 0;
        self.adaptation.window_min_depth = usize::MAX;
    }

    /// RTP timestamp units in one 20 ms packet.
    fn frame_ticks(&self) -> u32 {
        self.adaptation.clock_rate / (1000 / crate::PTIME_MS)
    }

    /// The delay the buffer holds audio for before playing it, in RTP timestamp units: the
    /// target depth in packets times the packet duration.
    pub fn target_delay(&self) -> u32 {
        self.packet_ticks().saturating_mul(self.target as u32)
    }

    /// RTP timestamp units in one audio packet of the stream.
    fn packet_ticks(&self) -> u32 {
        self.packet_ticks.unwrap_or_else(|| self.frame_ticks())
    }

    fn next_or(&self, fallback: u16) -> u16 {
        self.next.unwrap_or(fallback)
    }

    fn advance(&mut self) {
        if let Some(n) = self.next.as_mut() {
            *n = n.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u16) -> [u8; 4] {
        let b = seq.to_be_bytes();
        [b[0], b[1], 0, 0]
    }

    fn seq_of(pop: Pop<'_>) -> Option<u16> {
        match pop {
            Pop::Packet {
                sequence, payload, ..
            } => {
                assert_eq!(payload, &payload_for(sequence)[..]);
                Some(sequence)
            }
            _ => None,
        }
    }

    fn payload_for(seq: u16) -> [u8; 4] {
        payload(seq)
    }

    fn push(jb: &mut JitterBuffer, seq: u16) -> Push {
        jb.push(7, seq, u32::from(seq) * 160, &payload(seq))
    }

    #[test]
    fn waits_for_target_depth_then_releases_in_order() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        push(&mut jb, 10);
        assert_eq!(jb.pop(), Pop::Empty);
        push(&mut jb, 11);
        assert_eq!(seq_of(jb.pop()), Some(10));
        assert_eq!(seq_of(jb.pop()), Some(11));
        assert_eq!(jb.pop(), Pop::Empty);
        assert_eq!(jb.stats().underruns, 1);
    }

    #[test]
    fn played_payload_stays_readable_until_its_slot_is_refilled() {
        // 4 slots: sequence 14 lands in the slot 10 was played from.
        let mut jb = JitterBuffer::new(4, 8, 2);
        push(&mut jb, 10);
        push(&mut jb, 11);
        assert_eq!(jb.played(), None);
        assert_eq!(seq_of(jb.pop()), Some(10));
        assert_eq!(jb.played(), Some(&payload(10)[..]));
        push(&mut jb, 12);
        assert_eq!(
            jb.played(),
            Some(&payload(10)[..]),
            "another slot was filled"
        );
        push(&mut jb, 14);
        assert_eq!(jb.played(), None, "its slot now holds 14");
        assert_eq!(seq_of(jb.pop()), Some(11));
        assert_eq!(seq_of(jb.pop()), Some(12));
        assert_eq!(jb.pop(), Pop::Lost);
        assert_eq!(jb.played(), None, "a loss plays no packet");
    }

    #[test]
    fn reordered_packets_come_out_in_sequence() {
        let mut jb = JitterBuffer::new(16, 8, 3);
        for s in [102, 100, 101, 104, 103] {
            assert_eq!(push(&mut jb, s), Push::Stored);
        }
        let out: Vec<_> = (0..5).map(|_| seq_of(jb.pop())).collect();
        assert_eq!(out, [100, 101, 102, 103, 104].map(Some));
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        push(&mut jb, 1);
        assert_eq!(push(&mut jb, 1), Push::Duplicate);
        push(&mut jb, 2);
        assert_eq!(seq_of(jb.pop()), Some(1));
        assert_eq!(seq_of(jb.pop()), Some(2));
        assert_eq!(jb.stats().duplicates, 1);
    }

    #[test]
    fn lost_packet_is_reported_once_later_packets_exist() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        for s in [1, 2, 4, 5] {
            push(&mut jb, s);
        }
        assert_eq!(seq_of(jb.pop()), Some(1));
        assert_eq!(seq_of(jb.pop()), Some(2));
        assert_eq!(jb.pop(), Pop::Lost);
        assert_eq!(seq_of(jb.pop()), Some(4));
        assert_eq!(jb.stats().lost, 1);
        // The lost packet arriving now is late.
        assert_eq!(push(&mut jb, 3), Push::Late);
    }

    #[test]
    fn sequence_wrap_is_seamless() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        for s in [65534, 65535, 0, 1] {
            push(&mut jb, s);
        }
        let out: Vec<_> = (0..4).map(|_| seq_of(jb.pop())).collect();
        assert_eq!(out, [65534, 65535, 0, 1].map(Some));
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn ssrc_change_restarts_the_buffer() {
        let mut jb = JitterBuffer::new(16, 8, 1);
        push(&mut jb, 500);
        assert_eq!(jb.push(8, 9, 0, &payload(9)), Push::Restarted);
        assert_eq!(seq_of(jb.pop()), Some(9));
    }

    #[test]
    fn a_jump_beyond_the_ring_restarts_at_the_new_sequence() {
        let mut jb = JitterBuffer::new(16, 8, 1);
        push(&mut jb, 1);
        assert_eq!(seq_of(jb.pop()), Some(1));
        assert_eq!(push(&mut jb, 30_000), Push::Restarted);
        assert_eq!(seq_of(jb.pop()), Some(30_000));
    }

    #[test]
    fn depth_after_a_burst_is_trimmed_back_towards_target() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        for s in 0..10 {
            push(&mut jb, s);
        }
        // The first pull drops the oldest until at most target + 2 remain.
        let first = seq_of(jb.pop()).expect("a packet");
        assert_eq!(first, 6);
        assert_eq!(jb.stats().trimmed, 6);
    }

    #[test]
    fn oversize_payload_is_refused() {
        let mut jb = JitterBuffer::new(4, 2, 1);
        assert_eq!(jb.push(1, 1, 0, &[0; 3]), Push::Oversize);
    }

    /// xorshift32: a fixed-seed PRNG so the network impairment is the same on every run.
    struct Rng(u32);

    impl Rng {
        fn below(&mut self, n: u32) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0 % n
        }
    }

    /// A packet on the simulated wire: (arrival, marker, sequence, timestamp).
    type Wire = (u32, bool, u16, u32);

    /// Drives the buffer the way a media thread does: every 20 ms (160 units at 8 kHz) it
    /// pushes whatever has arrived, then pulls once.
    struct Sim {
        wire: Vec<Wire>,
        next: usize,
        now: u32,
    }

    impl Sim {
        fn new(mut wire: Vec<Wire>) -> Self {
            wire.sort_by_key(|w| w.0);
            Self {
                wire,
                next: 0,
                now: 80,
            }
        }

        /// Runs until `until`; returns what each pull gave: `Some(seq)` for a packet, `None`
        /// for Lost (Empty is skipped).
        fn run(&mut self, jb: &mut JitterBuffer, until: u32) -> Vec<Option<u16>> {
            let mut out = Vec::new();
            while self.now < until {
                while self.next < self.wire.len() && self.wire[self.next].0 <= self.now {
                    let (arrival, marker, seq, ts) = self.wire[self.next];
                    jb.push_at(arrival, marker, 7, seq, ts, &payload(seq));
                    self.next += 1;
                }
                match jb.pop() {
                    Pop::Packet { sequence, .. } => out.push(Some(sequence)),
                    Pop::Lost => out.push(None),
                    Pop::Empty | Pop::Silence => {}
                }
                self.now += 160;
            }
            out
        }
    }

    #[test]
    fn adaptive_target_rises_under_40ms_jitter_and_falls_back_when_it_stops() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        let mut rng = Rng(0x1234_5678);
        // 10 s of packets delayed by 0..40 ms, then 15 s on time.
        let mut sim = Sim::new(
            (0..1250u32)
                .map(|i| {
                    let delay = if i < 500 { rng.below(321) } else { 0 };
                    (i * 160 + delay, i == 0, i as u16, i * 160)
                })
                .collect(),
        );
        let jittery = sim.run(&mut jb, 500 * 160);
        // Uniform 0..40 ms delays: E|D| = 40/3 ms ≈ 107 units, so 2J/160 rounds up to 2.
        assert!((70..=150).contains(&jb.jitter()), "jitter {}", jb.jitter());
        assert_eq!(jb.target(), 3);
        // Ten seconds after the last late packet the target may fall: it does not before.
        let held = sim.run(&mut jb, 900 * 160);
        assert_eq!(jb.jitter(), 0);
        assert_eq!(
            jb.target(),
            2,
            "one frame over the least held for {HOLD_AFTER_LATE_S} s after the last late one"
        );
        let calm = sim.run(&mut jb, 1250 * 160 + 2000);
        assert_eq!(jb.target(), 1);
        // The depth followed the target down, one dropped frame per calm second at most.
        assert!(jb.buffered() <= 2, "depth {}", jb.buffered());
        assert!(jb.stats().trimmed >= 1);
        // Nothing was lost; at most a few packets came too late at the jittery start,
        // before the target had risen.
        let late = jb.stats().late;
        assert!(late <= 5, "{late} late");
        let played: Vec<_> = jittery.iter().chain(&held).chain(&calm).flatten().collect();
        assert_eq!(played.len() as u64 + late + jb.stats().trimmed, 1250);
        assert!(played.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn adaptive_target_rises_to_2_under_30ms_jitter() {
        let mut jb = JitterBuffer::new(32, 8, 1);
        let mut rng = Rng(99);
        let wire = (0..300u32)
            .map(|i| (i * 160 + rng.below(241), false, i as u16, i * 160))
            .collect();
        Sim::new(wire).run(&mut jb, 300 * 160);
        assert!(
            jb.target() >= 2,
            "target {} at jitter {}",
            jb.target(),
            jb.jitter()
        );
    }

    /// A sender whose packets reach the reader right at its tick, stamped with the tick they
    /// are read at (as the media thread does); the packets `missed` picks miss it by one.
    fn near_the_tick(packets: u32, mut missed: impl FnMut(u32) -> bool) -> Vec<Wire> {
        (0..packets)
            .map(|i| {
                let tick = if missed(i) { i + 1 } else { i };
                (tick * 160 + 80, i == 0, i as u16, i * 160)
            })
            .collect()
    }

    #[test]
    fn a_sender_missing_its_tick_every_few_seconds_keeps_one_more_frame_without_gaps() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        // 60 s; one packet in 150 (every 3 s) comes a tick late.
        let wire = near_the_tick(3000, |i| i > 0 && i % 150 == 0);
        let played = Sim::new(wire).run(&mut jb, 3000 * 160);
        let stats = jb.stats();
        assert_eq!(jb.target(), 2);
        // The start's second frame goes once the buffer has seen a clean second. The first
        // miss is a gap and, alone, is forgotten (a skip later); the second is a gap and,
        // following the first within the hold's time, keeps its frame: no gap or skip again.
        assert!(stats.underruns <= 2, "{} underruns", stats.underruns);
        assert!(stats.trimmed <= 2, "{} trimmed", stats.trimmed);
        assert_eq!(stats.late + stats.lost, 0);
        // All played but the one or two still held at the end.
        let out = played.iter().flatten().count() as u64 + stats.trimmed;
        assert!((3000 - 2..3000).contains(&out), "{out} played or trimmed");
    }

    #[test]
    fn a_sender_missing_its_tick_often_keeps_one_more_frame() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        let mut rng = Rng(77);
        // 60 s; a third of the packets come a tick late, at random (a sender whose packets
        // straddle the reading tick).
        let wire = near_the_tick(3000, |i| i > 50 && rng.below(3) == 0);
        let played = Sim::new(wire).run(&mut jb, 3000 * 160);
        let stats = jb.stats();
        assert!(jb.target() >= 2, "target {}", jb.target());
        assert!(stats.underruns <= 2, "{} underruns", stats.underruns);
        assert!(stats.trimmed <= 2, "{} trimmed", stats.trimmed);
        let out = played.iter().flatten().count() as u64 + stats.trimmed + stats.late;
        assert!(out >= 3000 - 3, "{out} played, trimmed or late");
    }

    #[test]
    fn packets_read_a_tick_early_do_not_start_the_hold() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        // 60 s; every 3 s one packet is read a tick before its time (the reader woke late,
        // after it had come), and once two in a row are (the catch-up after a stall).
        let wire: Vec<Wire> = (0..3000u32)
            .map(|i| {
                let early = i > 0 && (i % 150 == 0 || i == 1501);
                let tick = if early { i - 1 } else { i };
                (tick * 160 + 80, i == 0, i as u16, i * 160)
            })
            .collect();
        let mut sim = Sim::new(wire);
        sim.run(&mut jb, 3000 * 160);
        // Early packets move the RFC 3550 estimate, so the target rises briefly each time;
        // but no hold keeps it there, and nothing was ever missing.
        assert_eq!(jb.target(), 1);
        let stats = jb.stats();
        assert_eq!(stats.underruns, 0);
        assert_eq!(stats.late + stats.lost, 0);
    }

    #[test]
    fn a_sender_that_stopped_missing_its_tick_gets_the_frame_back_after_the_hold() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        // Misses at 3 s and 6 s, then none.
        let mut sim = Sim::new(near_the_tick(1500, |i| i == 150 || i == 300));
        let hold = HOLD_AFTER_LATE_S * 50;
        // Held until ten seconds after the last miss, then one clean second more.
        sim.run(&mut jb, (300 + hold - 10) * 160);
        assert_eq!(jb.target(), 2);
        sim.run(&mut jb, (300 + hold + LOWER_AFTER + 100) * 160);
        assert_eq!(jb.target(), 1);
        let stats = jb.stats();
        assert!(stats.underruns <= 2, "{} underruns", stats.underruns);
        assert!(stats.trimmed <= 3, "{} trimmed", stats.trimmed);
    }

    #[test]
    fn a_lone_late_packet_does_not_hold_the_extra_frame() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        // One miss at 3 s (a stall), then none: the frame it added goes within seconds.
        let mut sim = Sim::new(near_the_tick(1000, |i| i == 150));
        sim.run(&mut jb, 152 * 160);
        assert_eq!(jb.target(), 2, "the miss raises the target");
        sim.run(&mut jb, 400 * 160);
        assert_eq!(jb.target(), 1, "5 s after a lone miss");
        assert!(jb.stats().underruns <= 1);
    }

    #[test]
    fn target_does_not_flap_when_jitter_hovers_at_a_threshold() {
        let mut jb = JitterBuffer::new(32, 8, 2);
        let mut rng = Rng(4242);
        let mut changes = 0;
        let mut last = jb.target();
        for i in 0..3000u32 {
            // Uniform 0..30 ms: J hovers around 80 units, the 2 ↔ 3 threshold.
            jb.push_at(i * 160 + rng.below(241), false, 7, i as u16, i * 160, &[0]);
            let _ = jb.pop();
            if jb.target() != last {
                changes += 1;
                last = jb.target();
            }
        }
        assert!(changes <= 4, "{changes} target changes in 60 s");
    }

    #[test]
    fn timestamp_jump_with_contiguous_sequence_is_a_talkspurt_not_loss() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        // 1 s of speech, 5 s of silence (not sent), 1 s of speech: the sequence number runs
        // on, the timestamp and the arrival time jump.
        let gap = 5 * 8000;
        let wire = (0..100u32)
            .map(|i| {
                let shift = if i < 50 { 0 } else { gap };
                (i * 160 + shift + 40, false, i as u16, i * 160 + shift)
            })
            .collect();
        let played = Sim::new(wire).run(&mut jb, 100 * 160 + gap + 2000);
        assert_eq!(played, (0..100).map(Some).collect::<Vec<_>>());
        let stats = jb.stats();
        assert_eq!((stats.lost, stats.talkspurts, stats.restarts), (0, 1, 0));
        // The silence was not taken for network jitter.
        assert_eq!(jb.jitter(), 0);
        assert_eq!(jb.target(), 1);
    }

    #[test]
    fn timestamp_jump_without_arrival_times_is_not_loss_either() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        let mut out = Vec::new();
        for i in 0..8u16 {
            let ts = if i < 3 {
                u32::from(i) * 160
            } else {
                1_000_000 + u32::from(i) * 160
            };
            if i < 6 {
                assert_eq!(jb.push(7, i, ts, &payload(i)), Push::Stored);
            }
            out.extend(seq_of(jb.pop()));
        }
        assert_eq!(out, (0..6).collect::<Vec<_>>());
        assert_eq!((jb.stats().lost, jb.stats().talkspurts), (0, 1));
    }

    #[test]
    fn marker_bit_realigns_playout_after_a_pause() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        jb.set_target_bounds(2, 3);
        for seq in 0..3u16 {
            let t = u32::from(seq) * 160;
            jb.push_at(t, seq == 0, 7, seq, t, &payload(seq));
        }
        for seq in 0..3 {
            assert_eq!(seq_of(jb.pop()), Some(seq));
        }
        // 400 ms of silence suppression (under the 1 s jump rule): only the marker tells.
        assert_eq!(jb.pop(), Pop::Empty);
        let t = 3 * 160 + 3200;
        jb.push_at(t, true, 7, 3, t, &payload(3));
        // Held: one packet is less than the target depth of 2.
        assert_eq!(jb.pop(), Pop::Empty);
        jb.push_at(t + 160, false, 7, 4, t + 160, &payload(4));
        assert_eq!(seq_of(jb.pop()), Some(3));
        assert_eq!(seq_of(jb.pop()), Some(4));
        let stats = jb.stats();
        assert_eq!((stats.talkspurts, stats.holds, stats.lost), (2, 1, 0));
        assert_eq!(jb.jitter(), 0);
    }

    #[test]
    fn a_one_packet_talkspurt_is_not_held_forever() {
        let mut jb = JitterBuffer::new(16, 8, 3);
        jb.set_target_bounds(3, 3);
        for seq in 0..3u16 {
            let t = u32::from(seq) * 160;
            jb.push_at(t, false, 7, seq, t, &payload(seq));
        }
        for _ in 0..4 {
            let _ = jb.pop();
        }
        jb.push_at(50_000, true, 7, 3, 50_000, &payload(3));
        let pulls = (0..5).position(|_| seq_of(jb.pop()) == Some(3));
        assert_eq!(pulls, Some(3), "held for the target, then played");
    }

    #[test]
    fn peek_shows_the_packet_after_a_loss_for_fec() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        for s in [1, 3, 4] {
            push(&mut jb, s);
        }
        assert_eq!(seq_of(jb.pop()), Some(1));
        assert_eq!(jb.peek(), None);
        assert_eq!(jb.pop(), Pop::Lost);
        assert_eq!(jb.peek(), Some(&payload(3)[..]));
        assert_eq!(seq_of(jb.pop()), Some(3));
    }

    /// What a pull gave, in a stream that carries telephone-events.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Heard {
        Audio(u16),
        Lost,
        Silence,
        Nothing,
    }

    /// A packet of such a stream: (arrival, audio or not, sequence, timestamp).
    type Mixed = (u32, bool, u16, u32);

    /// Every 20 ms (160 units, ticks at `k·160 + 80`) pushes what has arrived, events through
    /// `note_non_audio`, then pulls once; returns what each tick's pull gave. Audio numbered
    /// `marked` carries the marker bit.
    fn run_marked(
        jb: &mut JitterBuffer,
        mut wire: Vec<Mixed>,
        ticks: u32,
        marked: Option<u16>,
    ) -> Vec<Heard> {
        wire.sort_by_key(|w| w.0);
        let mut next = 0;
        (0..ticks)
            .map(|tick| {
                let now = tick * 160 + 80;
                while next < wire.len() && wire[next].0 <= now {
                    let (arrival, audio, seq, ts) = wire[next];
                    if audio {
                        let marker = marked == Some(seq);
                        jb.push_at(arrival, marker, 7, seq, ts, &payload(seq));
                    } else {
                        jb.note_non_audio(7, seq, ts);
                    }
                    next += 1;
                }
                match jb.pop() {
                    Pop::Packet { sequence, .. } => Heard::Audio(sequence),
                    Pop::Lost => Heard::Lost,
                    Pop::Silence => Heard::Silence,
                    Pop::Empty => Heard::Nothing,
                }
            })
            .collect()
    }

    fn run_mixed(jb: &mut JitterBuffer, wire: Vec<Mixed>, ticks: u32) -> Vec<Heard> {
        run_marked(jb, wire, ticks, None)
    }

    /// 50 audio packets, 8 telephone-event packets numbered on (their timestamp frozen at the
    /// event's start, RFC 4733 §2.5.1.2), then audio whose timestamp ran on 8 frames; every
    /// packet arrives 5 ms after it was sent.
    fn digit_stream() -> Vec<Mixed> {
        (0..100u16)
            .map(|seq| {
                let sent = u32::from(seq) * 160;
                let audio = !(50..58).contains(&seq);
                let ts = if audio { sent } else { 50 * 160 };
                (sent + 40, audio, seq, ts)
            })
            .collect()
    }

    fn fixed_depth_2() -> JitterBuffer {
        let mut jb = JitterBuffer::new(8, 8, 2);
        jb.set_target_bounds(2, 2);
        jb
    }

    /// What a depth of two gives for [`digit_stream`]: each audio packet one tick after it
    /// arrived, before the event and after it alike, and silence in between.
    fn expected_digit_playout() -> Vec<Heard> {
        let mut expected = vec![Heard::Nothing];
        expected.extend((0..50).map(Heard::Audio));
        expected.extend([Heard::Silence; 8]);
        expected.extend((58..99).map(Heard::Audio));
        expected
    }

    fn assert_clean(stats: JitterStats) {
        assert_eq!(
            (stats.lost, stats.restarts, stats.underruns, stats.holds),
            (0, 0, 0, 0),
            "{stats:?}"
        );
        assert_eq!((stats.stored, stats.non_audio, stats.trimmed), (92, 8, 0));
    }

    #[test]
    fn telephone_event_numbers_play_as_silence_without_loss_or_delay() {
        let mut jb = fixed_depth_2();
        let heard = run_mixed(&mut jb, digit_stream(), 100);
        assert_eq!(heard, expected_digit_playout());
        assert_clean(jb.stats());
        assert_eq!(jb.stats().silence, 8);
    }

    #[test]
    fn audio_resuming_with_a_marker_after_events_is_not_held() {
        // RFC 4733 senders often mark the first audio after an event as a talkspurt start;
        // the playout clock already keeps the depth, so waiting to rebuild it would add delay.
        let mut jb = fixed_depth_2();
        let heard = run_marked(&mut jb, digit_stream(), 100, Some(58));
        assert_eq!(heard, expected_digit_playout());
        assert_eq!((jb.stats().holds, jb.stats().talkspurts), (0, 1));
    }

    #[test]
    fn the_same_digit_without_noting_the_events_is_concealed_and_delayed() {
        // What the notes fix: the event numbers look lost, and the audio after plays late.
        let mut jb = fixed_depth_2();
        let audio_only = digit_stream().into_iter().filter(|w| w.1).collect();
        let heard = run_mixed(&mut jb, audio_only, 100);
        assert!(heard.contains(&Heard::Lost) || jb.stats().restarts > 0);
        assert_ne!(heard, expected_digit_playout());
    }

    #[test]
    fn an_event_packet_overtaking_the_last_audio_packet_changes_nothing() {
        let mut jb = fixed_depth_2();
        let mut wire = digit_stream();
        // The first event packet arrives in the last audio packet's place and vice versa.
        let (a, e) = (wire[49].0, wire[50].0);
        wire[49].0 = e;
        wire[50].0 = a;
        let heard = run_mixed(&mut jb, wire, 100);
        assert_eq!(heard, expected_digit_playout());
        assert_clean(jb.stats());
    }

    #[test]
    fn an_event_packet_arriving_before_the_audio_it_interrupts_is_not_mistaken_for_it() {
        // The event's first packet comes 30 ms early, ahead of the last two audio packets.
        let mut jb = fixed_depth_2();
        let mut wire = digit_stream();
        wire[50].0 = 48 * 160 + 20;
        let heard = run_mixed(&mut jb, wire, 100);
        assert_eq!(heard, expected_digit_playout());
        assert_clean(jb.stats());
    }

    #[test]
    fn a_late_final_event_packet_takes_back_its_loss_and_nothing_is_concealed() {
        // The last end packet comes 60 ms late, after the audio that followed it.
        let mut jb = fixed_depth_2();
        let mut wire = digit_stream();
        wire[57].0 += 3 * 160;
        let heard = run_mixed(&mut jb, wire, 100);
        assert_eq!(heard, expected_digit_playout());
        let stats = jb.stats();
        assert_eq!((stats.lost, stats.restarts, stats.underruns), (0, 0, 0));
        assert_eq!(stats.non_audio, 7, "the late one is not noted twice");
    }

    #[test]
    fn a_lost_event_packet_is_counted_but_never_concealed() {
        let mut jb = fixed_depth_2();
        let wire = digit_stream().into_iter().filter(|w| w.2 != 53).collect();
        let heard = run_mixed(&mut jb, wire, 100);
        assert_eq!(heard, expected_digit_playout());
        assert_eq!((jb.stats().lost, jb.stats().restarts), (1, 0));
    }

    #[test]
    fn silence_follows_the_audio_timestamps_not_the_number_of_event_packets() {
        // One sender sends an update every 60 ms, another its three end packets at once:
        // either way the audio timestamps say 8 frames went by, and 8 frames of silence play.
        let sparse: Vec<Mixed> = digit_stream()
            .into_iter()
            .filter(|w| w.1 || w.2 == 50 || w.2 == 53)
            .collect();
        let burst: Vec<Mixed> = digit_stream()
            .into_iter()
            .map(|mut w| {
                if (55..58).contains(&w.2) {
                    w.0 = 55 * 160 + 40;
                }
                w
            })
            .collect();
        for (name, wire, events) in [("sparse", sparse, 2), ("burst", burst, 8)] {
            let mut jb = fixed_depth_2();
            let heard = run_mixed(&mut jb, wire, 100);
            // The audio is numbered without the missing updates in the sparse stream.
            let mut expected = vec![Heard::Nothing];
            expected.extend((0..50).map(Heard::Audio));
            expected.extend([Heard::Silence; 8]);
            expected.extend((58..99).map(Heard::Audio));
            assert_eq!(heard, expected, "{name}");
            let stats = jb.stats();
            assert_eq!(stats.non_audio, events, "{name}");
            assert_eq!((stats.restarts, stats.underruns), (0, 0), "{name}");
        }
    }

    #[test]
    fn a_sender_silent_after_an_event_becomes_an_underrun_after_a_second() {
        let mut jb = fixed_depth_2();
        let wire = digit_stream().into_iter().filter(|w| w.2 < 58).collect();
        let heard = run_mixed(&mut jb, wire, 200);
        let silent = heard.iter().filter(|h| **h == Heard::Silence).count();
        // Six pulls while event packets kept coming, then GAP_IDLE_PULLS from the last one.
        assert_eq!(silent, 6 + GAP_IDLE_PULLS as usize);
        assert_eq!(heard.last(), Some(&Heard::Nothing));
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn event_packets_outside_the_stream_never_restart_it() {
        let mut jb = JitterBuffer::new(8, 8, 1);
        push(&mut jb, 100);
        assert_eq!(jb.note_non_audio(7, 30_000, 0), Push::Unrelated);
        assert_eq!(jb.note_non_audio(8, 101, 0), Push::Unrelated);
        assert_eq!(jb.note_non_audio(7, 101, 16_160), Push::Stored);
        assert_eq!(jb.note_non_audio(7, 101, 16_160), Push::Duplicate);
        push(&mut jb, 102);
        assert_eq!(seq_of(jb.pop()), Some(100));
        // The event took 101's frame of time.
        assert_eq!(jb.pop(), Pop::Silence);
        assert_eq!(seq_of(jb.pop()), Some(102));
        assert_eq!(jb.peek(), None);
        let stats = jb.stats();
        assert_eq!((stats.restarts, stats.lost, stats.non_audio), (0, 0, 1));
    }

    #[test]
    fn hostile_timestamps_and_arrivals_never_panic() {
        let mut jb = JitterBuffer::new(16, 8, 2);
        let mut rng = Rng(1);
        for _ in 0..20_000 {
            let arrival = rng.below(u32::MAX);
            let ts = rng.below(u32::MAX);
            let seq = rng.below(65_536) as u16;
            jb.push_at(arrival, rng.below(2) == 0, rng.below(3), seq, ts, &[1, 2]);
            let near = seq.wrapping_add(rng.below(24) as u16).wrapping_sub(12);
            jb.note_non_audio(rng.below(3), near, rng.below(u32::MAX));
            let _ = jb.pop();
            let _ = jb.peek();
        }
        assert!(jb.target() <= 3);
    }
}
