//! Listen-only taps on a room's mix (recordings): one frame per tick at the room rate, silence
//! as zeros, the mix of talkers and never a member's playback, and the tap handed back to the
//! control side (never dropped on the media thread) when it is removed or its room ends.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_media::tone::Sine;
use chorus_media::AudioTap;
use chorus_mixer::{
    Codec, LegId, LegSpec, ManualThread, Mixer, MixerConfig, MixerEvent, MixerHandle, Playback,
    RoomId,
};
use common::Source;

const ROOM: RoomId = RoomId(1);

/// One pushed frame: its rate and samples.
type Frame = (u32, Vec<i16>);

/// What a test tap saw, shared with the test.
#[derive(Clone, Default)]
struct Recording {
    frames: Arc<Mutex<Vec<Frame>>>,
    dropped: Arc<AtomicBool>,
    dropped_on: Arc<Mutex<Option<String>>>,
}

impl Recording {
    fn tap(&self) -> Box<dyn AudioTap> {
        Box::new(TestTap(self.clone()))
    }

    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

struct TestTap(Recording);

impl AudioTap for TestTap {
    fn push(&mut self, rate: u32, samples: &[i16]) {
        self.0.frames.lock().unwrap().push((rate, samples.to_vec()));
    }
}

impl Drop for TestTap {
    fn drop(&mut self) {
        *self.0.dropped_on.lock().unwrap() = std::thread::current().name().map(String::from);
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// Goertzel power of `freq` in `samples`, in dB relative to a full-scale sine.
fn level_db(samples: &[i16], freq: f64, rate: u32) -> f64 {
    let w = std::f64::consts::TAU * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.sqrt() / samples.len() as f64;
    20.0 * (amplitude / 32768.0).max(1e-9).log10()
}

/// A manually driven thread with one room whose legs (ids = indices) play `sources`.
struct Room {
    thread: ManualThread,
    handle: MixerHandle,
    sources: Vec<Option<Source>>,
    now: Instant,
}

impl Room {
    fn new() -> Self {
        let thread = ManualThread::new(MixerConfig::default());
        Self {
            handle: thread.handle(),
            thread,
            sources: Vec::new(),
            now: Instant::now(),
        }
    }

    /// A leg that sends `source` (`None`: a leg that never sends).
    fn join(&mut self, codec: Codec, source: Option<Source>) -> LegId {
        let leg = LegId(self.sources.len() as u64);
        self.handle
            .add_leg(0, ROOM, LegSpec::detached(leg, codec))
            .unwrap();
        self.sources.push(source);
        self.thread.apply_commands();
        leg
    }

    fn run(&mut self, ticks: usize) {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..ticks {
            for (i, source) in self.sources.iter_mut().enumerate() {
                if let Some(source) = source {
                    let datagram = source.next_datagram();
                    self.thread
                        .inject(LegId(i as u64), &datagram, peer, self.now);
                }
            }
            self.thread.tick(self.now);
            self.now += Duration::from_millis(20);
        }
    }

    fn events(&self) -> Vec<MixerEvent> {
        self.thread.events().try_iter().collect()
    }
}

fn tap_removed(events: &[MixerEvent], id: u64) -> bool {
    events
        .iter()
        .any(|e| matches!(e, MixerEvent::TapRemoved { room, id: i } if *room == ROOM && *i == id))
}

fn tap_refused(events: &[MixerEvent], id: u64) -> bool {
    events
        .iter()
        .any(|e| matches!(e, MixerEvent::TapRefused { room, id: i } if *room == ROOM && *i == id))
}

fn disposals(events: &[MixerEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, MixerEvent::Dispose(_)))
        .count()
}

#[test]
fn tap_hears_both_talkers_one_narrowband_frame_per_tick() {
    let mut room = Room::new();
    room.join(Codec::PCMU, Some(Source::pcmu(Some(440.0), 8000.0)));
    room.join(Codec::PCMU, Some(Source::pcmu(Some(1000.0), 8000.0)));
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    room.thread.apply_commands();
    room.run(100);
    let frames = recording.frames();
    assert_eq!(frames.len(), 100, "one frame per tick");
    assert!(frames
        .iter()
        .all(|(rate, f)| *rate == 8000 && f.len() == 160));
    let last_second: Vec<i16> = frames[50..].iter().flat_map(|(_, f)| f.clone()).collect();
    assert!(level_db(&last_second, 440.0, 8000) > -20.0, "hears A");
    assert!(level_db(&last_second, 1000.0, 8000) > -20.0, "hears B");
    assert!(
        level_db(&last_second, 2500.0, 8000) < -50.0,
        "and nothing else"
    );
}

#[test]
fn silent_room_taps_one_zero_frame_per_tick() {
    let mut room = Room::new();
    room.join(Codec::PCMU, Some(Source::pcmu(None, 0.0)));
    // A member whose peer never sends: nobody contributes anything.
    room.join(Codec::PCMU, None);
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    room.thread.apply_commands();
    room.run(50);
    let frames = recording.frames();
    assert_eq!(frames.len(), 50);
    assert!(frames
        .iter()
        .all(|(rate, f)| *rate == 8000 && f.len() == 160 && f.iter().all(|&s| s == 0)));
}

#[test]
fn tap_does_not_hear_a_members_playback() {
    let mut room = Room::new();
    let a = room.join(Codec::PCMU, Some(Source::pcmu(None, 0.0)));
    room.join(Codec::PCMU, Some(Source::pcmu(None, 0.0)));
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    let mut samples = vec![0i16; 8000];
    Sine::new(700.0, 8000, 8000.0).fill(&mut samples);
    room.handle
        .play(0, a, Playback::new(7, 8000, samples, 0))
        .unwrap();
    room.thread.apply_commands();
    room.run(50);
    let frames = recording.frames();
    assert_eq!(frames.len(), 50);
    assert!(frames.iter().all(|(_, f)| f.iter().all(|&s| s == 0)));
}

#[test]
fn tap_follows_the_room_to_48_khz_when_an_opus_member_joins() {
    let mut room = Room::new();
    room.join(Codec::PCMU, Some(Source::pcmu(Some(440.0), 8000.0)));
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    room.thread.apply_commands();
    room.run(20);
    room.join(
        Codec::opus(111, false, false),
        Some(Source::opus(Some(1000.0), 8000.0)),
    );
    room.run(80);
    let frames = recording.frames();
    assert_eq!(frames.len(), 100, "one frame per tick across the switch");
    assert!(frames[..20]
        .iter()
        .all(|(rate, f)| *rate == 8000 && f.len() == 160));
    assert!(frames[20..]
        .iter()
        .all(|(rate, f)| *rate == 48_000 && f.len() == 960));
    let last_second: Vec<i16> = frames[50..].iter().flat_map(|(_, f)| f.clone()).collect();
    assert!(
        level_db(&last_second, 440.0, 48_000) > -20.0,
        "hears the G.711 member"
    );
    assert!(
        level_db(&last_second, 1000.0, 48_000) > -20.0,
        "hears the Opus member"
    );
}

#[test]
fn last_leg_leaving_hands_the_tap_back_to_be_dropped_off_the_media_thread() {
    let mut room = Room::new();
    let a = room.join(Codec::PCMU, Some(Source::pcmu(Some(440.0), 8000.0)));
    let b = room.join(Codec::PCMU, Some(Source::pcmu(None, 0.0)));
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    room.thread.apply_commands();
    room.run(10);
    room.handle.remove_leg(0, a).unwrap();
    room.thread.apply_commands();
    room.sources[0] = None;
    room.run(10);
    assert_eq!(recording.count(), 20, "the room goes on with one member");
    assert!(!recording.dropped());

    room.handle.remove_leg(0, b).unwrap();
    room.thread.apply_commands();
    room.sources[1] = None;
    room.run(5);
    assert_eq!(recording.count(), 20, "no frame after the room ended");
    assert!(
        !recording.dropped(),
        "the media thread did not drop the tap: it waits in the event queue"
    );
    let events = room.events();
    assert!(tap_removed(&events, 1), "{events:?}");
    assert!(disposals(&events) >= 1, "{events:?}");
    assert!(!recording.dropped(), "held by the undropped events");
    drop(events);
    assert!(recording.dropped(), "dropped with the drained events");
    assert_eq!(room.thread.stats().rooms, 0);
}

#[test]
fn ended_room_drops_its_tap_promptly_on_the_control_thread() {
    let mixer = Mixer::start(MixerConfig {
        threads: 1,
        ..MixerConfig::default()
    })
    .unwrap();
    let (handle, events) = (mixer.handle(), mixer.events());
    let recording = Recording::default();
    handle
        .add_leg(0, ROOM, LegSpec::detached(LegId(1), Codec::PCMU))
        .unwrap();
    handle.add_tap(0, ROOM, 9, recording.tap()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(recording.count() >= 5, "frames while the room lives");
    handle.remove_leg(0, LegId(1)).unwrap();
    let removed_at = Instant::now();
    let mut removed = false;
    loop {
        let event = events.recv_timeout(Duration::from_millis(500)).unwrap();
        match event {
            MixerEvent::TapRemoved { room, id } => {
                assert_eq!((room, id), (ROOM, 9));
                removed = true;
            }
            MixerEvent::Dispose(garbage) if removed => {
                drop(garbage);
                break;
            }
            _ => {}
        }
    }
    // Commands are applied at the start of each tick slot: well within a period or two.
    assert!(
        removed_at.elapsed() < Duration::from_millis(200),
        "{:?}",
        removed_at.elapsed()
    );
    assert!(recording.dropped());
    let here = std::thread::current().name().map(String::from);
    assert_eq!(*recording.dropped_on.lock().unwrap(), here);
    assert!(here.is_none_or(|name| !name.starts_with("media-")));
    mixer.shutdown();
}

#[test]
fn removed_tap_stops_receiving_frames_and_is_handed_back() {
    let mut room = Room::new();
    room.join(Codec::PCMU, Some(Source::pcmu(Some(440.0), 8000.0)));
    let (kept, removed) = (Recording::default(), Recording::default());
    room.handle.add_tap(0, ROOM, 1, kept.tap()).unwrap();
    room.handle.add_tap(0, ROOM, 2, removed.tap()).unwrap();
    room.thread.apply_commands();
    room.run(5);
    room.handle.remove_tap(0, ROOM, 2).unwrap();
    room.thread.apply_commands();
    assert!(!removed.dropped(), "handed back, not dropped in place");
    room.run(5);
    assert_eq!(removed.count(), 5);
    assert_eq!(kept.count(), 10);
    let events = room.events();
    assert!(!tap_removed(&events, 2), "the room did not end: {events:?}");
    assert_eq!(disposals(&events), 1, "{events:?}");
    drop(events);
    assert!(removed.dropped());
    assert!(!kept.dropped());
}

#[test]
fn tap_added_before_the_room_exists_hears_it_from_its_first_tick() {
    let mut room = Room::new();
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    room.thread.apply_commands();
    room.run(3);
    assert_eq!(recording.count(), 0, "no room on this thread yet");
    assert!(room.events().is_empty(), "waiting, not refused");
    room.join(Codec::PCMU, Some(Source::pcmu(Some(440.0), 8000.0)));
    room.run(5);
    assert_eq!(recording.count(), 5);
}

#[test]
fn tap_waiting_for_its_room_can_be_removed() {
    let mut room = Room::new();
    let recording = Recording::default();
    room.handle.add_tap(0, ROOM, 1, recording.tap()).unwrap();
    room.thread.apply_commands();
    room.handle.remove_tap(0, ROOM, 1).unwrap();
    room.thread.apply_commands();
    let events = room.events();
    assert_eq!(disposals(&events), 1, "{events:?}");
    drop(events);
    assert!(recording.dropped());
    room.join(Codec::PCMU, None);
    room.run(3);
    assert_eq!(recording.count(), 0);
}

#[test]
fn fifth_tap_and_a_duplicate_id_are_refused() {
    let mut room = Room::new();
    // Two wait for the room, two more are added once it exists.
    let recordings: Vec<Recording> = (0..6).map(|_| Recording::default()).collect();
    for (id, r) in recordings[..2].iter().enumerate() {
        room.handle.add_tap(0, ROOM, id as u64, r.tap()).unwrap();
    }
    room.thread.apply_commands();
    room.join(Codec::PCMU, None);
    // Id 0 is taken (the room has room for it).
    room.handle
        .add_tap(0, ROOM, 0, recordings[5].tap())
        .unwrap();
    for (id, r) in recordings[2..5].iter().enumerate() {
        room.handle
            .add_tap(0, ROOM, id as u64 + 2, r.tap())
            .unwrap();
    }
    room.thread.apply_commands();
    room.run(4);
    let events = room.events();
    assert!(tap_refused(&events, 4), "{events:?}");
    assert!(tap_refused(&events, 0), "{events:?}");
    assert_eq!(disposals(&events), 2, "{events:?}");
    drop(events);
    for r in &recordings[..4] {
        assert_eq!(r.count(), 4);
        assert!(!r.dropped());
    }
    for r in &recordings[4..] {
        assert_eq!(r.count(), 0);
        assert!(r.dropped());
    }
}
