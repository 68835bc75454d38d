//! Per-member jitter buffer: reorders by RTP sequence number (RFC 3550 §5.1, §A.1), drops
//! duplicates and late packets, survives sequence wrap and SSRC changes, and releases one
//! packet per pull once a target depth has built up.
//!
//! Storage is a fixed ring of `capacity` slots, each able to hold `max_payload` bytes, all
//! allocated at construction; `push` and `pop` never allocate. The target depth is fixed here
//! (default 2 frames); the adaptive target belongs to the media-core work and plugs in at
//! [`JitterBuffer::set_target`].

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
}

/// Counters for metrics and tests.
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
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    filled: bool,
    sequence: u16,
    timestamp: u32,
    len: usize,
}

#[derive(Debug)]
pub struct JitterBuffer {
    slots: Box<[Slot]>,
    data: Box<[u8]>,
    max_payload: usize,
    ssrc: Option<u32>,
    /// Sequence number of the next packet to release; `None` until the first packet.
    next: Option<u16>,
    buffered: usize,
    target: usize,
    playing: bool,
    stats: JitterStats,
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
            target: target.clamp(1, capacity - 1),
            playing: false,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    pub fn buffered(&self) -> usize {
        self.buffered
    }

    pub fn set_target(&mut self, target: usize) {
        self.target = target.clamp(1, self.slots.len() - 1);
    }

    /// Forgets everything buffered (new source, or the caller re-negotiated).
    pub fn reset(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.filled = false;
        }
        self.ssrc = None;
        self.next = None;
        self.buffered = 0;
        self.playing = false;
    }

    pub fn push(&mut self, ssrc: u32, sequence: u16, timestamp: u32, payload: &[u8]) -> Push {
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
        let capacity = self.slots.len();
        let next = *self.next.get_or_insert(sequence);
        // Signed distance in the 16-bit sequence space handles wrap (RFC 3550 §A.1).
        let ahead = sequence.wrapping_sub(next) as i16;
        if ahead < 0 {
            if !self.playing && (ahead.unsigned_abs() as usize) < capacity - self.buffered {
                // Still buffering: an earlier packet overtaken by a later one moves the start.
                self.next = Some(sequence);
            } else {
                self.stats.late += 1;
                return Push::Late;
            }
        } else if ahead as usize >= capacity {
            // A jump past the ring: the sender restarted its numbering or we fell far behind.
            self.reset();
            self.ssrc = Some(ssrc);
            self.next = Some(sequence);
            self.stats.restarts += 1;
            outcome = Push::Restarted;
        }
        let index = usize::from(sequence) % capacity;
        let slot = &mut self.slots[index];
        if slot.filled {
            if slot.sequence == sequence {
                self.stats.duplicates += 1;
                return Push::Duplicate;
            }
            // A stale packet from a lap ago still sits here; the newer one wins.
            self.buffered -= 1;
        }
        *slot = Slot {
            filled: true,
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
        let Some(next) = self.next else {
            return Pop::Empty;
        };
        if !self.playing {
            if self.buffered < self.target {
                return Pop::Empty;
            }
            self.playing = true;
        }
        if self.buffered == 0 {
            self.stats.underruns += 1;
            return Pop::Empty;
        }
        let capacity = self.slots.len();
        // After a burst the depth can exceed the target: drop the oldest so latency does not
        // creep up for the rest of the call.
        while self.buffered > self.target + 2 {
            let index = usize::from(self.next_or(next)) % capacity;
            if self.slots[index].filled && self.slots[index].sequence == self.next_or(next) {
                self.slots[index].filled = false;
                self.buffered -= 1;
                self.stats.trimmed += 1;
            }
            self.advance();
        }
        let next = self.next_or(next);
        let index = usize::from(next) % capacity;
        self.advance();
        let slot = self.slots[index];
        if slot.filled && slot.sequence == next {
            self.slots[index].filled = false;
            self.buffered -= 1;
            let start = index * self.max_payload;
            Pop::Packet {
                sequence: slot.sequence,
                timestamp: slot.timestamp,
                payload: &self.data[start..start + slot.len],
            }
        } else {
            self.stats.lost += 1;
            Pop::Lost
        }
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
}
