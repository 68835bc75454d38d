//! Two mixed talkers hear each other's packets as they were sent, without an encode; the
//! listeners still share one encode. Driven by hand on a media thread whose legs send to real
//! loopback sockets the test reads. Also: how soon a quiet Opus member who starts talking is
//! mixed (the talkers a pair is made of).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chorus_media::rtp::RtpPacket;
use chorus_mixer::{
    Codec, LegId, LegSpec, ManualThread, MixerConfig, MixerEvent, RoomId, ThreadStatsSnapshot,
};
use common::Source;

struct Member {
    source: Source,
    /// Where the leg sends: the test's socket, standing for the member's phone.
    phone: UdpSocket,
    /// `events(tick)`: the key held at that tick and the tick it went down, sent as
    /// telephone-events instead of audio.
    events: Option<Box<KeyHeld>>,
    event_start: Option<u32>,
    /// Sends nothing (see [`Source::pause`]).
    absent: bool,
}

/// Given a tick: the key held then and the tick it went down.
type KeyHeld = dyn Fn(usize) -> Option<(u8, usize)>;

const TELEPHONE_EVENT: u8 = 101;

struct Room {
    thread: ManualThread,
    members: Vec<Member>,
    now: Instant,
}

/// What a phone received: (sequence number, payload) of each packet.
type Received = Vec<(u16, Vec<u8>)>;

impl Room {
    fn new(codec: Codec, sources: Vec<Source>) -> Self {
        let mut thread = ManualThread::new(MixerConfig::default());
        let handle = thread.handle();
        let mut members = Vec::new();
        for (i, source) in sources.into_iter().enumerate() {
            let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
            phone.set_nonblocking(true).unwrap();
            let mut spec = LegSpec::new(
                LegId(i as u64),
                UdpSocket::bind("127.0.0.1:0").unwrap(),
                codec,
            );
            spec.remote = Some(phone.local_addr().unwrap());
            spec.telephone_event_pt = Some(TELEPHONE_EVENT);
            handle.add_leg(0, RoomId(1), spec).unwrap();
            members.push(Member {
                source,
                phone,
                events: None,
                event_start: None,
                absent: false,
            });
        }
        thread.apply_commands();
        Self {
            thread,
            members,
            now: Instant::now(),
        }
    }

    /// `ticks` periods; `lose(member, tick)` drops that member's packet of that tick.
    fn run(
        &mut self,
        ticks: usize,
        lose: impl Fn(usize, usize) -> bool,
    ) -> (ThreadStatsSnapshot, Vec<Received>) {
        let before = self.thread.stats();
        let mut received: Vec<Received> = vec![Vec::new(); self.members.len()];
        for tick in 0..ticks {
            for (i, m) in self.members.iter_mut().enumerate() {
                if m.absent || tick % m.source.ticks_per_packet != 0 {
                    continue;
                }
                let datagram = match m.events.as_ref().map(|e| e(tick)) {
                    Some(Some((event, start_tick))) => {
                        let start = *m.event_start.get_or_insert(m.source.timestamp());
                        let held = (tick - start_tick + 1) as u16;
                        m.source
                            .next_event_datagram(TELEPHONE_EVENT, event, start, held)
                    }
                    _ => {
                        m.event_start = None;
                        m.source.next_datagram()
                    }
                };
                if lose(i, tick) {
                    continue;
                }
                let from: SocketAddr = m.phone.local_addr().unwrap();
                assert!(self
                    .thread
                    .inject(LegId(i as u64), &datagram, from, self.now));
            }
            self.thread.tick(self.now);
            self.now += Duration::from_millis(20);
            for (i, m) in self.members.iter().enumerate() {
                let mut buf = [0u8; 1500];
                while let Ok(n) = m.phone.recv(&mut buf) {
                    let packet = RtpPacket::parse(&buf[..n]).unwrap();
                    received[i].push((packet.sequence, packet.payload.to_vec()));
                }
            }
        }
        let after = self.thread.stats();
        let stats = ThreadStatsSnapshot {
            encodes: after.encodes - before.encodes,
            forwards: after.forwards - before.forwards,
            forks: after.forks - before.forks,
            packets_out: after.packets_out - before.packets_out,
            ..after
        };
        (stats, received)
    }

    fn payloads_of(&self, member: usize) -> &[Vec<u8>] {
        self.members[member].source.payloads()
    }
}

fn sources(opus: bool, tones: &[Option<f64>]) -> Vec<Source> {
    tones
        .iter()
        .map(|&t| {
            if opus {
                Source::opus(t, 8000.0)
            } else {
                Source::pcmu(t, 8000.0)
            }
        })
        .collect()
}

/// Every packet of `got` carries one of `sent`'s payloads byte for byte.
fn all_from(got: &Received, sent: &[Vec<u8>]) -> bool {
    got.iter().all(|(_, p)| sent.contains(p))
}

#[test]
fn two_talkers_get_each_others_packets_as_sent() {
    // Tones that don't fit a whole number of cycles in 20 ms, so every payload differs.
    let tones = [Some(470.0), Some(1230.0), None, None];
    let mut room = Room::new(Codec::PCMU, sources(false, &tones));
    room.run(30, |_, _| false);
    let (stats, got) = room.run(50, |_, _| false);
    assert_eq!(stats.forwards, 50 * 2, "{stats:?}");
    assert_eq!(
        stats.encodes, 50,
        "one shared encode for the listeners: {stats:?}"
    );
    assert_eq!(got[0].len(), 50);
    assert_eq!(got[1].len(), 50);
    assert!(all_from(&got[0], room.payloads_of(1)), "A gets B's packets");
    assert!(all_from(&got[1], room.payloads_of(0)), "B gets A's packets");
    assert!(!all_from(&got[2], room.payloads_of(0)) && !all_from(&got[2], room.payloads_of(1)));
}

#[test]
fn opus_talkers_are_forwarded_and_a_lost_packet_reaches_the_peer_as_a_gap() {
    let tones = [Some(470.0), Some(1230.0), None, None, None];
    let mut room = Room::new(Codec::opus(111, true, false), sources(true, &tones));
    room.run(30, |_, _| false);
    // B's packet of tick 20 is lost on its way in.
    let (stats, got) = room.run(50, |member, tick| member == 1 && tick == 20);
    assert_eq!(
        stats.encodes, 50,
        "one shared encode, none for the talkers: {stats:?}"
    );
    assert_eq!(stats.forwards, 50 * 2 - 1, "{stats:?}");
    assert!(
        all_from(&got[0], room.payloads_of(1)),
        "A gets B's packets as sent"
    );
    assert!(
        all_from(&got[1], room.payloads_of(0)),
        "B gets A's packets as sent"
    );
    // A's stream: one packet fewer, and the sequence numbers say where it went missing.
    assert_eq!(got[0].len(), 49);
    let jumps: Vec<u16> = got[0]
        .windows(2)
        .map(|w| w[1].0.wrapping_sub(w[0].0))
        .filter(|&d| d != 1)
        .collect();
    assert_eq!(jumps, vec![2], "one gap of one packet");
    // The listeners' shared stream has no gap.
    assert_eq!(got[3].len(), 50);
    assert!(got[3].windows(2).all(|w| w[1].0.wrapping_sub(w[0].0) == 1));
}

#[test]
fn a_lost_g711_packet_is_concealed_and_encoded_instead() {
    let tones = [Some(470.0), Some(1230.0), None];
    let mut room = Room::new(Codec::PCMU, sources(false, &tones));
    room.run(30, |_, _| false);
    let (stats, got) = room.run(50, |member, tick| member == 1 && tick == 20);
    assert_eq!(
        got[0].len(),
        50,
        "G.711 has no decoder state to keep: no gap"
    );
    assert!(got[0].windows(2).all(|w| w[1].0.wrapping_sub(w[0].0) == 1));
    assert_eq!(stats.forwards, 50 * 2 - 1, "{stats:?}");
    assert_eq!(
        stats.encodes,
        50 + 1,
        "the concealed frame is encoded: {stats:?}"
    );
}

#[test]
fn a_third_talker_ends_forwarding() {
    let tones = [Some(470.0), Some(1230.0), Some(2110.0), None, None];
    let mut room = Room::new(Codec::PCMU, sources(false, &tones));
    room.run(30, |_, _| false);
    let (stats, got) = room.run(50, |_, _| false);
    assert_eq!(stats.forwards, 0, "{stats:?}");
    assert_eq!(stats.encodes, 50 * 4, "3 private + 1 shared: {stats:?}");
    assert!(
        !all_from(&got[0], room.payloads_of(1)),
        "A hears B and C mixed"
    );
}

/// Sequence number steps other than 1 in what a phone received.
fn jumps(got: &Received) -> Vec<u16> {
    got.windows(2)
        .map(|w| w[1].0.wrapping_sub(w[0].0))
        .filter(|&d| d != 1)
        .collect()
}

#[test]
fn an_opus_talker_sending_40_ms_packets_is_encoded_for_its_peer_not_sent_gaps() {
    // A sends 40 ms packets: no tick's frame is one packet of 20 ms, so B hears a private
    // encode of A every tick; B's 20 ms packets still reach A as sent.
    let mut members = sources(true, &[None, Some(1230.0), None, None]);
    members[0] = Source::opus_40ms(Some(470.0), 8000.0);
    let mut room = Room::new(Codec::opus(111, true, false), members);
    room.run(30, |_, _| false);
    let (stats, got) = room.run(50, |_, _| false);
    assert_eq!(got[1].len(), 50, "B hears A every tick: {stats:?}");
    assert_eq!(jumps(&got[1]), Vec::<u16>::new(), "no gaps for B");
    assert!(
        got[1].iter().all(|(_, p)| !room.payloads_of(0).contains(p)),
        "B's packets are our encodes, not A's 40 ms packets"
    );
    assert_eq!(stats.forwards, 50, "A gets B's packets: {stats:?}");
    assert!(all_from(&got[0], room.payloads_of(1)));
    assert_eq!(stats.encodes, 50 * 2, "B's private + the shared: {stats:?}");
}

#[test]
fn a_key_press_of_one_opus_talker_reaches_the_other_as_audio_not_as_loss() {
    // B holds a key for 5 packets: telephone-events numbered with its audio. Nothing was
    // lost, so A must not be sent sequence gaps (its decoder would stretch B's last speech
    // over the key press); it gets encoded frames (B's speech fading out) instead.
    let mut room = Room::new(
        Codec::opus(111, true, false),
        sources(true, &[Some(470.0), Some(1230.0), None, None]),
    );
    room.run(30, |_, _| false);
    room.members[1].events = Some(Box::new(|tick| (20..25).contains(&tick).then_some((5, 20))));
    let (stats, got) = room.run(50, |_, _| false);
    assert_eq!(got[0].len(), 50, "A gets a packet every tick: {stats:?}");
    assert_eq!(jumps(&got[0]), Vec::<u16>::new(), "no gaps for A");
    let forwarded = got[0]
        .iter()
        .filter(|(_, p)| room.payloads_of(1).contains(p))
        .count();
    assert!(
        (40..50).contains(&forwarded),
        "B's audio is forwarded around the key press, not during it: {forwarded} of 50"
    );
}

#[test]
fn a_quiet_opus_member_who_starts_talking_is_mixed_after_the_jitter_buffer_and_hysteresis() {
    // Quiet Opus members are decoded one tick in four. B's first loud packet must not wait
    // for B's next sampled tick, nor be skipped: its decoder would then decode the next
    // frames far too quiet for a while. Whatever the phase of the sampling, B talks once its
    // first tone packet has crossed the jitter buffer (2 packets) and the start hysteresis
    // (2 loud frames), one tick of slack.
    for phase in 0..4 {
        let mut room = Room::new(
            Codec::opus(111, true, false),
            sources(true, &[Some(470.0), None, None, None]),
        );
        room.run(30 + phase, |_, _| false);
        while room.thread.events().try_recv().is_ok() {}
        room.members[1]
            .source
            .switch_to(&Source::opus(Some(1230.0), 8000.0));
        let mut talking_after = None;
        for tick in 1..=12 {
            room.run(1, |_, _| false);
            let started = room.thread.events().try_iter().any(
                |e| matches!(e, MixerEvent::Talking { leg, talking: true, .. } if leg == LegId(1)),
            );
            if started {
                talking_after = Some(tick);
                break;
            }
        }
        assert!(
            talking_after.is_some_and(|t| t <= 4),
            "phase {phase}: B talking after {talking_after:?} ticks"
        );
    }
}

#[test]
fn the_first_frame_of_a_talkspurt_is_heard_not_clipped_by_the_start_hysteresis() {
    // B is silent, then speaks (a tone): its first loud frame is mixed although B only counts
    // as talking from its second (start hysteresis). A, the other talker, gets B's packets
    // forwarded as sent, so the first of B's tone packets A receives shows what was mixed.
    let mut room = Room::new(Codec::PCMU, sources(false, &[Some(470.0), None, None]));
    room.run(30, |_, _| false);
    let tone = Source::pcmu(Some(1230.0), 8000.0);
    room.members[1].source.switch_to(&tone);
    let (_, got) = room.run(10, |_, _| false);
    let first = got[0].iter().find(|(_, p)| tone.payloads().contains(p));
    assert_eq!(
        first.map(|(_, p)| p),
        Some(&tone.payloads()[0]),
        "A hears B from B's first tone packet"
    );
}

#[test]
fn a_one_frame_blip_from_a_third_member_does_not_break_the_forwarded_pair() {
    // A and B talk, forwarded to each other; C coughs: one loud frame, not enough to start
    // talking. Mixing C's frame would switch A and B to private encodes for a tick (with
    // Opus, from encoders their decoders have not followed). PCMU here, so the blip is
    // exactly one loud frame (an Opus decoder would ring on past it).
    let mut room = Room::new(
        Codec::PCMU,
        sources(false, &[Some(470.0), Some(1230.0), None, None]),
    );
    room.run(30, |_, _| false);
    let silence = Source::pcmu(None, 8000.0);
    room.members[2]
        .source
        .switch_to(&Source::pcmu(Some(2110.0), 8000.0));
    let (blip, _) = room.run(1, |_, _| false);
    room.members[2].source.switch_to(&silence);
    let (after, got) = room.run(10, |_, _| false);
    assert_eq!(blip.forwards + after.forwards, 2 * 11, "{blip:?} {after:?}");
    assert_eq!(blip.encodes + after.encodes, 11, "the shared encode only");
    assert!(all_from(&got[0], room.payloads_of(1)));
}

#[test]
fn a_loss_after_a_pause_does_not_replay_speech_from_before_it() {
    // C's last decoded frame is loud (one word), then C pauses, then sends quiet frames,
    // which are only measured (not decoded), then one of them is lost. The loss must not be
    // concealed by repeating the loud frame from before the pause: A would hear it again.
    let mut room = Room::new(Codec::PCMU, sources(false, &[None, None, None]));
    room.run(30, |_, _| false);
    let sounding = |got: &Received| {
        got.iter()
            .filter(|(_, p)| p.iter().any(|&b| b != 0xFF))
            .count()
    };
    room.members[2]
        .source
        .switch_to(&Source::pcmu(Some(1230.0), 8000.0));
    let (_, word) = room.run(1, |_, _| false);
    room.members[2].absent = true;
    let (_, pause) = room.run(5, |_, _| false);
    room.members[2].absent = false;
    room.members[2].source.pause(5);
    room.members[2]
        .source
        .switch_to(&Source::pcmu(None, 8000.0));
    let (_, quiet) = room.run(10, |_, _| false);
    let (_, lost) = room.run(10, |member, tick| member == 2 && tick == 3);
    let heard = [&word, &pause, &quiet, &lost].map(|got| sounding(&got[0]));
    assert_eq!(
        heard.iter().sum::<usize>(),
        1,
        "A hears C's one loud frame once (ticks with sound per phase: {heard:?})"
    );
}
