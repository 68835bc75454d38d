//! DTMF as RFC 4733 telephone-events: the 4-byte event payload, a receiver that reports each
//! digit exactly once however many update and end packets carry it, and the send schedule a
//! leg steps once per tick.
//!
//! Both sides are clock-free: the receiver is told when packets arrive, the sender is stepped
//! once per 20 ms tick and told the leg's current RTP timestamp.

/// Clock rate of the telephone-event payload, in which durations are counted. Chorus only
/// negotiates `telephone-event/8000` (`chorus-sip`'s offer/answer ignores any other rate, and
/// offers and answers 8000), so this holds for Opus legs too, whose audio clock is 48 kHz.
pub(crate) const TELEPHONE_EVENT_RATE: u32 = 8000;

/// RFC 4733 §3.2: the DTMF digits in event-code order.
const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The digit of a DTMF event code; `None` for the other events (flash, modem tones, …).
pub(crate) fn digit_of(event: u8) -> Option<char> {
    DIGITS.get(usize::from(event)).copied()
}

/// The event code of a DTMF digit (`a`–`d` are taken as `A`–`D`).
pub(crate) fn event_of(digit: char) -> Option<u8> {
    let digit = digit.to_ascii_uppercase();
    DIGITS.iter().position(|&d| d == digit).map(|i| i as u8)
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventPayload {
    pub event: u8,
    /// E bit: the event has ended (§2.3.2).
    pub end: bool,
    /// Power level in −dBm0, 0–63 (§2.3.4).
    pub volume: u8,
    /// Duration so far in timestamp units of [`TELEPHONE_EVENT_RATE`] (§2.3.5).
    pub duration: u16,
}

impl EventPayload {
    pub const LEN: usize = 4;

    /// Reads the first event of a payload. A payload may hold more (§2.5.1.5, for events
    /// that overlap); DTMF digits never do, so the rest is ignored.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let &[event, flags, d0, d1, ..] = payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d0,
            d1,
        ]
    }
}

/// A digit received, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceivedDigit {
    pub digit: char,
    pub duration_ms: u32,
}

/// An unfinished event is reported after this long without a packet for it: otherwise a
/// digit whose three end packets were all lost would wait for the next digit to be heard.
const SILENT_EVENT_US: u64 = 1_000_000;
/// How far behind the current event (in RTP timestamp units, 10 s at 48 kHz) a packet's
/// timestamp may be and still count as a straggler of an earlier event rather than a sender
/// that restarted its clock.
const STALE_WINDOW: u32 = 480_000;

#[derive(Debug, Clone, Copy)]
struct CurrentEvent {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    duration: u16,
    reported: bool,
    last_packet_us: u64,
}

impl CurrentEvent {
    fn digit(&self) -> Option<ReceivedDigit> {
        Some(ReceivedDigit {
            digit: digit_of(self.event)?,
            duration_ms: u32::from(self.duration) * 1000 / TELEPHONE_EVENT_RATE,
        })
    }
}

/// Turns the packets of a telephone-event stream into digits.
///
/// RFC 4733 §2.5.1.2: all packets of one event share its RTP timestamp (the event's start)
/// and carry the duration so far; §2.5.1.4: the packet with the E bit is sent three times.
/// So the timestamp identifies the event: it is reported when its first end packet arrives,
/// or, if none ever does, when a packet of a later event arrives (§2.5.2.2: a new event ends
/// the previous one) or after [`SILENT_EVENT_US`] of silence. Packets of an event already
/// reported (the end's retransmissions, late updates) are ignored.
#[derive(Debug, Default)]
pub(crate) struct DtmfReceiver {
    current: Option<CurrentEvent>,
}

impl DtmfReceiver {
    pub fn on_event(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        payload: EventPayload,
        now_us: u64,
        report: &mut impl FnMut(ReceivedDigit),
    ) {
        if let Some(current) = self.current.as_mut() {
            if current.ssrc == ssrc && current.timestamp == timestamp {
                if current.reported {
                    return;
                }
                // Updates may arrive out of order: the longest duration is the latest.
                current.duration = current.duration.max(payload.duration);
                current.last_packet_us = now_us;
                if payload.end {
                    current.reported = true;
                    if let Some(digit) = current.digit() {
                        report(digit);
                    }
                }
                return;
            }
            let behind = current.timestamp.wrapping_sub(timestamp);
            if current.ssrc == ssrc && behind < STALE_WINDOW {
                // A late packet of an earlier event, already reported or superseded.
                return;
            }
            if !current.reported {
                current.reported = true;
                if let Some(digit) = current.digit() {
                    report(digit);
                }
            }
        }
        let current = CurrentEvent {
            ssrc,
            timestamp,
            event: payload.event,
            duration: payload.duration,
            reported: payload.end,
            last_packet_us: now_us,
        };
        if let Some(digit) = current.digit().filter(|_| payload.end) {
            report(digit);
        }
        self.current = Some(current);
    }

    /// Reports an unfinished event nothing has been heard of for [`SILENT_EVENT_US`].
    pub fn expire(&mut self, now_us: u64, report: &mut impl FnMut(ReceivedDigit)) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if !current.reported && now_us.saturating_sub(current.last_packet_us) >= SILENT_EVENT_US {
            current.reported = true;
            if let Some(digit) = current.digit() {
                report(digit);
            }
        }
    }
}

/// Packets of one digit's event before its end, one per 20 ms tick: 100 ms of tone.
const TONE_TICKS: u32 = 5;
/// RFC 4733 §2.5.1.4: the end packet is sent three times, at the update interval.
const END_TICKS: u32 = 3;
/// Audio between two digits: 60 ms.
const GAP_TICKS: u32 = 3;
/// Timestamp units one tick adds to an event's duration.
const TICK_DURATION: u16 = (TELEPHONE_EVENT_RATE / 50) as u16;
/// The level we send at, −10 dBm0: comfortably within what DTMF receivers accept.
const VOLUME: u8 = 10;

/// One step of a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Digit(u8),
    /// Audio continues for this many ticks (`w` = 0.5 s, `W` = 1 s).
    Pause(u32),
}

/// What a leg sends this tick while it has a [`DtmfQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DtmfTick {
    /// This telephone-event packet instead of the audio.
    Event {
        payload: [u8; EventPayload::LEN],
        /// RFC 4733 §2.5.1.2: set on the first packet of an event.
        marker: bool,
        timestamp: u32,
    },
    /// The audio, as usual.
    Audio,
    /// Every step is done: the queue can go.
    Done,
}

/// Digits to send on a leg, prepared on the control side so the media thread only steps
/// through them.
#[derive(Debug)]
pub(crate) struct DtmfQueue {
    steps: Box<[Step]>,
    index: usize,
    /// Ticks into the current step.
    tick: u32,
    /// RTP timestamp of the event being sent: the leg's timestamp at its first packet.
    timestamp: u32,
    /// Sending stopped early (the leg lost its telephone-event payload type).
    pub(crate) interrupted: bool,
    /// Digits queued after these by a later call: sent when these are done.
    pub(crate) next: Option<Box<DtmfQueue>>,
}

/// A character [`DtmfQueue::new`] does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownDigit(pub char);

impl DtmfQueue {
    /// `digits`: `0`–`9`, `*`, `#`, `A`–`D` (or `a`–`d`), `w` (0.5 s pause), `W` (1 s pause).
    pub(crate) fn new(digits: &str) -> Result<Self, UnknownDigit> {
        let steps = digits
            .chars()
            .map(|c| match c {
                'w' => Ok(Step::Pause(25)),
                'W' => Ok(Step::Pause(50)),
                _ => event_of(c).map(Step::Digit).ok_or(UnknownDigit(c)),
            })
            .collect::<Result<Box<[Step]>, _>>()?;
        Ok(Self {
            steps,
            index: 0,
            tick: 0,
            timestamp: 0,
            interrupted: false,
            next: None,
        })
    }

    /// Queues `later` after everything already queued (without allocating: both are boxed).
    pub(crate) fn append(&mut self, later: Box<DtmfQueue>) {
        let mut tail = &mut self.next;
        while let Some(queue) = tail {
            tail = &mut queue.next;
        }
        *tail = Some(later);
    }

    /// What to send this tick; `timestamp` is the one the leg's audio would carry.
    pub(crate) fn tick(&mut self, timestamp: u32) -> DtmfTick {
        let Some(&step) = self.steps.get(self.index) else {
            return DtmfTick::Done;
        };
        let tick = self.tick;
        self.tick += 1;
        let (out, length) = match step {
            Step::Pause(ticks) => (DtmfTick::Audio, ticks),
            Step::Digit(event) => {
                if tick == 0 {
                    self.timestamp = timestamp;
                }
                let out = if tick < TONE_TICKS + END_TICKS {
                    let end = tick >= TONE_TICKS;
                    let ticks = (tick + 1).min(TONE_TICKS) as u16;
                    DtmfTick::Event {
                        payload: EventPayload {
                            event,
                            end,
                            volume: VOLUME,
                            duration: ticks * TICK_DURATION,
                        }
                        .to_bytes(),
                        marker: tick == 0,
                        timestamp: self.timestamp,
                    }
                } else {
                    DtmfTick::Audio
                };
                (out, TONE_TICKS + END_TICKS + GAP_TICKS)
            }
        };
        if self.tick >= length {
            self.index += 1;
            self.tick = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(event: u8, duration: u16) -> EventPayload {
        EventPayload {
            event,
            end: true,
            volume: 10,
            duration,
        }
    }

    fn update(event: u8, duration: u16) -> EventPayload {
        EventPayload {
            end: false,
            ..end(event, duration)
        }
    }

    fn digits(packets: &[(u32, EventPayload)]) -> Vec<(char, u32)> {
        let mut receiver = DtmfReceiver::default();
        let mut out = Vec::new();
        for (i, &(ts, p)) in packets.iter().enumerate() {
            receiver.on_event(7, ts, p, i as u64 * 20_000, &mut |d| {
                out.push((d.digit, d.duration_ms))
            });
        }
        out
    }

    #[test]
    fn event_codes_map_to_digits_and_back() {
        for (code, digit) in DIGITS.iter().enumerate() {
            assert_eq!(digit_of(code as u8), Some(*digit));
            assert_eq!(event_of(*digit), Some(code as u8));
        }
        assert_eq!(digit_of(16), None, "flash is not a digit");
        assert_eq!(event_of('b'), Some(13));
        assert_eq!(event_of('x'), None);
    }

    #[test]
    fn payload_round_trips_and_short_payload_is_refused() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 63,
            duration: 0x1234,
        };
        assert_eq!(p.to_bytes(), [11, 0xbf, 0x12, 0x34]);
        assert_eq!(EventPayload::parse(&p.to_bytes()), Some(p));
        // The R bit is ignored.
        assert_eq!(
            EventPayload::parse(&[5, 0x4a, 0, 160]),
            Some(update(5, 160))
        );
        assert_eq!(EventPayload::parse(&[5, 0x80, 0]), None);
    }

    #[test]
    fn digit_is_reported_once_at_its_first_end_packet() {
        let got = digits(&[
            (100, update(1, 160)),
            (100, update(1, 320)),
            (100, end(1, 800)),
            (100, end(1, 800)),
            (100, end(1, 800)),
            (100, update(1, 480)),
        ]);
        assert_eq!(got, [('1', 100)]);
    }

    #[test]
    fn new_event_reports_a_previous_one_that_never_ended() {
        let got = digits(&[
            (100, update(2, 160)),
            (100, update(2, 400)),
            (900, update(11, 160)),
            (900, end(11, 320)),
        ]);
        assert_eq!(got, [('2', 50), ('#', 40)]);
    }

    #[test]
    fn late_packet_of_an_earlier_event_is_ignored() {
        let got = digits(&[
            (100, end(3, 800)),
            (900, update(4, 160)),
            (100, end(3, 800)),
            (900, end(4, 800)),
        ]);
        assert_eq!(got, [('3', 100), ('4', 100)]);
    }

    #[test]
    fn timestamp_wrap_starts_a_new_event() {
        let got = digits(&[(u32::MAX - 10, end(6, 800)), (150, end(7, 800))]);
        assert_eq!(got, [('6', 100), ('7', 100)]);
    }

    #[test]
    fn end_packet_alone_is_a_digit_and_other_events_are_not() {
        let got = digits(&[(100, end(9, 1600)), (500, end(16, 800))]);
        assert_eq!(got, [('9', 200)]);
    }

    #[test]
    fn unfinished_event_is_reported_after_a_second_of_silence() {
        let mut receiver = DtmfReceiver::default();
        let mut out = Vec::new();
        let mut report = |d: ReceivedDigit| out.push(d.digit);
        receiver.on_event(1, 100, update(0, 160), 0, &mut report);
        receiver.expire(500_000, &mut report);
        receiver.on_event(1, 100, update(0, 320), 600_000, &mut report);
        receiver.expire(1_500_000, &mut report);
        receiver.expire(1_600_000, &mut report);
        receiver.on_event(1, 100, end(0, 800), 1_700_000, &mut report);
        assert_eq!(out, ['0']);
    }

    /// (tick, event code, end, marker, duration, timestamp) of an event packet.
    type Sent = (u32, u8, bool, bool, u16, u32);

    /// Every event packet of `digits`, and the tick at which the queue is done.
    fn schedule(digits: &str) -> (Vec<Sent>, u32) {
        let mut queue = DtmfQueue::new(digits).expect("valid digits");
        let mut packets = Vec::new();
        for tick in 0u32.. {
            match queue.tick(1000 + tick * 160) {
                DtmfTick::Event {
                    payload,
                    marker,
                    timestamp,
                } => {
                    let p = EventPayload::parse(&payload).expect("4 bytes");
                    packets.push((tick, p.event, p.end, marker, p.duration, timestamp));
                }
                DtmfTick::Audio => {}
                DtmfTick::Done => return (packets, tick),
            }
        }
        unreachable!()
    }

    #[test]
    fn digit_is_sent_as_five_updates_then_three_ends_then_a_gap() {
        let (packets, ticks) = schedule("#");
        let expected: Vec<_> = [160, 320, 480, 640, 800, 800, 800, 800]
            .into_iter()
            .enumerate()
            .map(|(i, d)| (i as u32, 11, i >= 5, i == 0, d, 1000))
            .collect();
        assert_eq!(packets, expected);
        assert_eq!(ticks, 11, "8 event ticks and 3 gap ticks");
    }

    #[test]
    fn pauses_and_digits_follow_one_another() {
        let (packets, ticks) = schedule("1w2W");
        let starts: Vec<_> = packets.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
        assert_eq!(starts, [(0, 1), (11 + 25, 2)]);
        assert_eq!(
            packets[8].5,
            1000 + 36 * 160,
            "the second event's own timestamp"
        );
        assert_eq!(ticks, 11 + 25 + 11 + 50);
    }

    #[test]
    fn unknown_digit_is_refused() {
        assert_eq!(DtmfQueue::new("12x").err(), Some(UnknownDigit('x')));
    }

    #[test]
    fn appended_queue_runs_after_the_first() {
        let mut first = DtmfQueue::new("1").expect("valid");
        first.append(Box::new(DtmfQueue::new("2").expect("valid")));
        first.append(Box::new(DtmfQueue::new("3").expect("valid")));
        let mut order = Vec::new();
        let mut q = Some(Box::new(first));
        while let Some(mut queue) = q {
            order.push(queue.steps[0]);
            q = queue.next.take();
        }
        assert_eq!(order, [Step::Digit(1), Step::Digit(2), Step::Digit(3)]);
    }
}
