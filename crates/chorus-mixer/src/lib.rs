//! Conference rooms mixed on dedicated media threads.
//!
//! A [`Mixer`] starts a fixed pool of named OS threads (`media-0`, `media-1`, …, one per core
//! by default). Each thread owns a set of rooms and every leg in them, including the leg's
//! RTP socket. Every 20 ms, at absolute deadlines, with rooms spread over up to `tick_slots`
//! slots of the period so their packets don't leave in one burst (a slot opens only when the
//! open ones carry about 2 ms of work: a wake-up costs CPU), it runs each room:
//!
//! 1. drain the command queue; read every leg's socket (`recvmmsg`: one call returns what is
//!    waiting) into the leg's
//!    jitter buffer (RFC 4733 telephone-events go instead to a DTMF receiver, which reports
//!    each digit once as [`MixerEvent::Dtmf`]). Only the peer's media is taken: the first
//!    packet from the address of its SDP ([`LegSpec::remote`]) locks the leg to that source;
//!    a peer behind NAT (media from elsewhere) is taken after three packets of one stream in
//!    sequence, and locked after [`MixerConfig::rtp_learning`] unless its SDP address speaks
//!    up meanwhile. Every other datagram is dropped and counted
//!    ([`LegStats::foreign_dropped`]), and we only ever send to the learned source — so a
//!    stranger spraying a live call's port (RTP bleed/injection) is neither mixed nor
//!    answered. A re-INVITE that moves the media re-opens learning; packets taken are
//!    mirrored into [`LegSpec::activity`] for RTP timeouts;
//! 2. pull one frame per leg and decode it (PLC or Opus FEC for a lost one), resampled to the
//!    room rate — 8 kHz while every member is narrowband, else the highest member rate;
//! 3. detect talkers (frame energy, or the RFC 6464 level the sender reports, with start
//!    hysteresis and a stop hangover) and keep the loudest `max_talkers` in the mix, so the
//!    cost of a room is bounded whatever its size;
//! 4. sum the mixed talkers in `i32`; every member that contributes nothing hears the whole
//!    total, encoded **once per encoding** and sent to each of them (only RTP headers
//!    differ); each mixed talker gets total-minus-own, clamped once, encoded privately (an
//!    Opus talker's private encoder is first forked from the shared encoder's state, so its
//!    peer's decoder sees one continuous stream) — except that with exactly two talkers, each
//!    is sent the other's packet as it came, with no encode at all; a silent room sends a
//!    cached silence payload instead of encoding; member-targeted audio ([`Playback`]) is
//!    added to that member's output only; a member being sent digits
//!    ([`MixerHandle::send_dtmf`]) gets telephone-event packets in place of its audio while
//!    each digit lasts;
//! 5. hand the clamped total — what a member that contributes nothing hears, never a
//!    member's playback — to the room's listen-only taps ([`MixerHandle::add_tap`], for
//!    recordings): one 20 ms frame at the room rate every tick, zeros while nobody is mixed.
//!
//! The control side (the engine) talks to the threads only through bounded lock-free queues:
//! commands in ([`MixerHandle`]), events out ([`MixerEvent`]); neither side ever blocks on the
//! other. Legs, codec state, playbacks and taps are built on the control side and removed ones
//! are handed back to be freed there.
//!
//! Invariants inside a tick: no lock, no blocking IO, no logging, no heap allocation in the
//! steady state (enforced by a test with a counting allocator); network input is counted,
//! never trusted.
//!
//! ```no_run
//! use chorus_mixer::{Mixer, MixerConfig, LegSpec, LegId, RoomId, Codec};
//! let mixer = Mixer::start(MixerConfig::default()).expect("threads start");
//! let handle = mixer.handle();
//! let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
//! let thread = handle.pick_thread();
//! handle.add_leg(thread, RoomId(1), LegSpec::new(LegId(1), socket, Codec::PCMU)).expect("queued");
//! ```

mod codec;
mod dtmf;
mod error;
pub mod kernel;
mod leg;
mod room;
mod stats;
pub mod talk;
mod thread;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chorus_media::g711::Law;
use chorus_media::AudioTap;
use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Highest `[media] realtime_priority` (`SCHED_FIFO` priority on Linux).
pub use chorus_media::sched::MAX_PRIORITY as MAX_REALTIME_PRIORITY;
pub use codec::{MAX_FRAME, MAX_PAYLOAD};
pub use error::MixerError;
pub use stats::{
    LegStats, ThreadStats, ThreadStatsSnapshot, JITTER_BOUNDS_US, PLAYOUT_BOUNDS_US, TICK_BOUNDS_US,
};
pub use talk::TalkConfig;
pub use thread::MAX_TICK_SLOTS;

/// Identifies a leg (one call's media) across the engine and the media threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// Identifies one instance of a room on a media thread. A room that empties and is created
/// again under the same name gets a new id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// What goes on the wire, down to the parameters that change the bytes: members with equal
/// encodings can share one encoded payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Pcmu,
    Pcma,
    /// Opus (RFC 7587) at 48 kHz mono; `fec` = in-band FEC the peer asked for
    /// (`useinbandfec=1`), `dtx` = discontinuous transmission (`usedtx=1`).
    Opus {
        fec: bool,
        dtx: bool,
    },
}

impl Encoding {
    /// The codec's sample rate (and RTP clock for G.711; Opus' RTP clock is always 48 kHz).
    pub fn rate(self) -> u32 {
        match self {
            Encoding::Pcmu | Encoding::Pcma => 8000,
            Encoding::Opus { .. } => 48_000,
        }
    }

    /// Samples in one 20 ms frame.
    pub fn frame_samples(self) -> usize {
        (self.rate() / 50) as usize
    }

    pub fn law(self) -> Option<Law> {
        match self {
            Encoding::Pcmu => Some(Law::Mu),
            Encoding::Pcma => Some(Law::A),
            Encoding::Opus { .. } => None,
        }
    }
}

/// The negotiated audio format of a leg: an encoding and the payload type the peer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    pub encoding: Encoding,
    pub payload_type: u8,
}

impl Codec {
    pub const PCMU: Codec = Codec {
        encoding: Encoding::Pcmu,
        payload_type: 0,
    };
    pub const PCMA: Codec = Codec {
        encoding: Encoding::Pcma,
        payload_type: 8,
    };

    pub fn opus(payload_type: u8, fec: bool, dtx: bool) -> Codec {
        Codec {
            encoding: Encoding::Opus { fec, dtx },
            payload_type,
        }
    }
}

/// Which ways media flows on a leg, from the engine's point of view (RFC 3264 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// We send the mix to the peer.
    pub send: bool,
    /// We take the peer's audio into the room.
    pub receive: bool,
}

impl Flow {
    pub const SEND_RECV: Flow = Flow {
        send: true,
        receive: true,
    };
}

/// Everything a media thread needs to run a leg.
#[derive(Debug)]
pub struct LegSpec {
    pub id: LegId,
    /// `None` drives the leg without IO (benchmarks, tests): packets are injected and sends
    /// are only counted.
    pub socket: Option<UdpSocket>,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// RFC 6464 audio-level header extension id, when negotiated (RFC 8285 `a=extmap`).
    pub audio_level_id: Option<u8>,
    /// The media address of the peer's SDP: where we send until the leg learns the source
    /// of the peer's media (symmetric RTP), and the source it prefers to learn.
    pub remote: Option<SocketAddr>,
    pub flow: Flow,
    /// Where the media thread counts the packets it takes from the peer, for the control
    /// side to watch (RTP timeouts).
    pub activity: Option<Arc<LegActivity>>,
}

/// A leg's incoming media as the control side sees it without asking the media thread: the
/// packets taken from the peer so far (from the learned source; strangers' packets are not
/// counted), stored by the media thread with one relaxed store per packet.
#[derive(Debug, Default)]
pub struct LegActivity {
    packets: AtomicU64,
}

impl LegActivity {
    /// Packets taken from the peer since the leg started; it only grows while the peer
    /// sends.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Stores the count: the media thread does, once per packet taken; public for tests
    /// that stand in for it.
    pub fn set_packets(&self, packets: u64) {
        self.packets.store(packets, Ordering::Relaxed);
    }
}

impl LegSpec {
    pub fn new(id: LegId, socket: UdpSocket, codec: Codec) -> Self {
        Self {
            socket: Some(socket),
            ..Self::detached(id, codec)
        }
    }

    /// A leg without a socket.
    pub fn detached(id: LegId, codec: Codec) -> Self {
        Self {
            id,
            socket: None,
            codec,
            telephone_event_pt: None,
            audio_level_id: None,
            remote: None,
            flow: Flow::SEND_RECV,
            activity: None,
        }
    }
}

/// A change to a live leg after a re-INVITE or an ACK carrying the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegUpdate {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// `None` keeps what the leg has learned; `Some` re-targets it.
    pub remote: Option<SocketAddr>,
    pub flow: Flow,
}

/// Member controls (API.md §11): muted → others don't hear it; deaf → it hears nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberFlags {
    pub muted: bool,
    pub deaf: bool,
}

/// Audio for one member's ears only (a prompt, TTS, a beep, a file): mono samples at the
/// member's codec rate (`Encoding::rate`), prepared off the media thread.
#[derive(Debug)]
pub struct Playback {
    pub id: u64,
    pub rate: u32,
    samples: Box<[i16]>,
    position: usize,
    /// Plays left after the current one; `None` loops until stopped.
    loops_left: Option<u32>,
}

impl Playback {
    /// `loops` = how many times to play (`0` = until stopped).
    pub fn new(id: u64, rate: u32, samples: Vec<i16>, loops: u32) -> Self {
        Self {
            id,
            rate,
            samples: samples.into_boxed_slice(),
            position: 0,
            loops_left: (loops > 0).then(|| loops - 1),
        }
    }

    /// Adds the next `pcm.len()` samples (saturating); true when it has finished.
    fn mix_into(&mut self, pcm: &mut [i16]) -> bool {
        if self.samples.is_empty() {
            return true;
        }
        for out in pcm.iter_mut() {
            if self.position >= self.samples.len() {
                match self.loops_left {
                    Some(0) => return true,
                    Some(ref mut n) => *n -= 1,
                    None => {}
                }
                self.position = 0;
            }
            *out = out.saturating_add(self.samples[self.position]);
            self.position += 1;
        }
        self.position >= self.samples.len() && self.loops_left == Some(0)
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    AddLeg {
        leg: Box<leg::Leg>,
    },
    UpdateLeg {
        leg: LegId,
        update: LegUpdate,
        state: Option<Box<leg::CodecState>>,
    },
    SetFlags {
        leg: LegId,
        flags: MemberFlags,
    },
    RemoveLeg {
        leg: LegId,
    },
    MoveLeg {
        leg: LegId,
        to_thread: usize,
        to_room: RoomId,
    },
    Play {
        leg: LegId,
        playback: Box<Playback>,
    },
    StopPlay {
        leg: LegId,
    },
    SendDtmf {
        leg: LegId,
        digits: Box<dtmf::DtmfQueue>,
    },
    AddTap {
        room: RoomId,
        tap: Box<room::Tap>,
    },
    RemoveTap {
        room: RoomId,
        id: u64,
    },
}

impl std::fmt::Debug for leg::CodecState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecState")
            .field("codec", &self.codec)
            .finish()
    }
}

/// What the media threads report back.
#[derive(Debug)]
pub enum MixerEvent {
    /// The leg left its thread; dropping this frees its socket and buffers off the media
    /// thread.
    LegRemoved {
        leg: LegId,
        stats: LegStats,
        resources: LegResources,
    },
    /// A leg is now served by `thread` in `room` (after an add or a move).
    LegAdded {
        leg: LegId,
        room: RoomId,
        thread: usize,
    },
    /// A member started or stopped talking (for `floorEvent` and talker indications).
    Talking {
        room: RoomId,
        leg: LegId,
        talking: bool,
    },
    /// The loudest mixed talker changed.
    Floor { room: RoomId, leg: LegId },
    /// A DTMF digit received as an RFC 4733 telephone-event, reported once per event when
    /// it ends (or when a new event starts before an end packet was seen).
    Dtmf {
        room: RoomId,
        leg: LegId,
        digit: char,
        duration_ms: u32,
    },
    /// The digits of one [`MixerHandle::send_dtmf`] call have all been sent (the last digit's
    /// end packets and the 60 ms gap after it). `interrupted`: sending stopped early or never
    /// started, because the leg no longer has a telephone-event payload type (a re-INVITE)
    /// or is not on that thread. Digit strings still queued when a leg is removed end with
    /// its [`MixerEvent::LegRemoved`] instead.
    DtmfSent { leg: LegId, interrupted: bool },
    /// A member's playback ended (`interrupted`: stopped or replaced before its end).
    PlaybackDone {
        leg: LegId,
        id: u64,
        interrupted: bool,
    },
    /// A tap left because its room ended (its last leg left the thread, or the thread
    /// stopped); the tap itself follows in a [`MixerEvent::Dispose`], and dropping it ends
    /// its recording.
    TapRemoved { room: RoomId, id: u64 },
    /// A tap was not attached: its room already has [`MixerHandle::MAX_TAPS`] taps (counting
    /// those waiting for the room) or one with the same id. The tap follows in a
    /// [`MixerEvent::Dispose`] and never received a frame.
    TapRefused { room: RoomId, id: u64 },
    /// Memory a thread no longer needs, to be freed here (removed playbacks, codec state,
    /// digit strings, taps).
    Dispose(Garbage),
}

/// The memory and socket of a removed leg, to be dropped by the control side.
pub struct LegResources(#[allow(dead_code)] Box<leg::Leg>);

impl std::fmt::Debug for LegResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegResources")
    }
}

/// Anything a media thread hands back to be dropped off the media thread.
pub struct Garbage(#[allow(dead_code)] Box<dyn Send>);

impl std::fmt::Debug for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Garbage")
    }
}

#[derive(Debug, Clone)]
pub struct MixerConfig {
    /// Media threads; 0 means one per available core.
    pub threads: usize,
    pub tick: Duration,
    /// Rooms of a thread are spread over this many slots of the period.
    pub tick_slots: usize,
    /// Packets buffered before playout starts (the jitter buffer adapts from there).
    pub jitter_target: usize,
    pub jitter_capacity: usize,
    pub command_queue: usize,
    pub event_queue: usize,
    /// Loudest talkers mixed per room.
    pub max_talkers: usize,
    pub talk: TalkConfig,
    /// libopus complexity (0–10) of our encoders.
    pub opus_complexity: i32,
    /// `false` encodes once per member (the baseline other mixers use), for benchmarks.
    pub shared_encoding: bool,
    /// A member that is neither talking nor mixed and reports no audio level has its Opus
    /// packets decoded only every this many ticks, to watch for speech (1 = every tick).
    pub quiet_decode_interval: u32,
    /// Capacity reserved up front for a thread's legs.
    pub legs_per_thread_hint: usize,
    /// How long a source learned without the SDP address (a peer behind NAT) stays open to
    /// media from the SDP address taking over before the leg locks to it; zero locks at
    /// once. Media from the SDP address locks the leg immediately.
    pub rtp_learning: Duration,
    /// `SCHED_FIFO` priority of the media threads (1–99); 0 leaves them under the default
    /// policy. See [`chorus_media::sched`].
    pub realtime_priority: u8,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            tick: Duration::from_millis(20),
            tick_slots: 4,
            jitter_target: 2,
            jitter_capacity: 8,
            command_queue: 4096,
            event_queue: 4096,
            max_talkers: 4,
            talk: TalkConfig::default(),
            opus_complexity: 5,
            shared_encoding: true,
            quiet_decode_interval: 4,
            legs_per_thread_hint: 1024,
            rtp_learning: Duration::from_secs(2),
            realtime_priority: 0,
        }
    }
}

/// The running pool of media threads. Dropping it (or [`Mixer::shutdown`]) stops them.
pub struct Mixer {
    handle: MixerHandle,
    events: Receiver<MixerEvent>,
    joins: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    realtime_refusals: Vec<RealtimeRefusal>,
}

/// A media thread that asked for `SCHED_FIFO` ([`MixerConfig::realtime_priority`]) and was
/// refused: it runs on under the default policy.
#[derive(Debug)]
pub struct RealtimeRefusal {
    pub thread: usize,
    pub error: std::io::Error,
}

/// Cheap to clone; sends commands to the media threads without ever blocking.
#[derive(Clone)]
pub struct MixerHandle {
    senders: Arc<[Sender<Command>]>,
    stats: Arc<[ThreadStats]>,
    config: Arc<MixerConfig>,
    /// Legs that negotiated telephone-event, so [`MixerHandle::send_dtmf`] can refuse the
    /// others at once. Only the control side touches it; media threads never lock.
    telephone_event_legs: Arc<Mutex<HashSet<LegId>>>,
}

impl Mixer {
    pub fn start(config: MixerConfig) -> Result<Self, MixerError> {
        Law::warm_up();
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        };
        let (event_tx, events) = crossbeam_channel::bounded(config.event_queue);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stats: Arc<[ThreadStats]> = (0..threads).map(|_| ThreadStats::default()).collect();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| crossbeam_channel::bounded(config.command_queue))
            .unzip();
        let senders: Arc<[Sender<Command>]> = senders.into();
        let mut joins = Vec::with_capacity(threads);
        // Each thread sets its own policy (it is per thread) before its first tick and says
        // how that went, so the caller can report a refusal at start-up.
        let (policy_tx, policy_rx) = std::sync::mpsc::channel();
        let priority = config.realtime_priority;
        for (index, rx) in receivers.into_iter().enumerate() {
            let worker = thread::MediaThread::new(
                index,
                threads,
                config.clone(),
                rx,
                senders.clone(),
                event_tx.clone(),
                stats.clone(),
                stop.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("media-{index}"))
                .spawn({
                    let policy_tx = policy_tx.clone();
                    move || {
                        let outcome = match priority {
                            0 => Ok(()),
                            p => chorus_media::sched::set_current_thread_fifo(p),
                        };
                        let _ = policy_tx.send((index, outcome));
                        drop(policy_tx);
                        worker.run()
                    }
                });
            match spawned {
                Ok(join) => joins.push(join),
                Err(source) => {
                    // The threads already running would tick (and hold their legs' sockets)
                    // forever: their command channels never close, since each holds senders.
                    stop.store(true, std::sync::atomic::Ordering::Release);
                    for join in joins {
                        let _ = join.join();
                    }
                    return Err(MixerError::Spawn {
                        thread: index,
                        source,
                    });
                }
            }
        }
        drop(policy_tx);
        let realtime_refusals = policy_rx
            .iter()
            .filter_map(|(thread, outcome)| {
                outcome.err().map(|error| RealtimeRefusal { thread, error })
            })
            .collect();
        Ok(Self {
            handle: MixerHandle::new(senders, stats, config),
            events,
            joins,
            stop,
            realtime_refusals,
        })
    }

    /// The media threads whose [`MixerConfig::realtime_priority`] the kernel refused.
    pub fn realtime_refusals(&self) -> &[RealtimeRefusal] {
        &self.realtime_refusals
    }

    pub fn handle(&self) -> MixerHandle {
        self.handle.clone()
    }

    /// The queue of events from every media thread.
    pub fn events(&self) -> Receiver<MixerEvent> {
        self.events.clone()
    }

    /// Stops the threads after their current tick and waits for them.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        for join in self.joins.drain(..) {
            let _ = join.join();
        }
    }
}

impl Drop for Mixer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl MixerHandle {
    fn new(
        senders: Arc<[Sender<Command>]>,
        stats: Arc<[ThreadStats]>,
        config: MixerConfig,
    ) -> Self {
        Self {
            senders,
            stats,
            config: Arc::new(config),
            telephone_event_legs: Arc::default(),
        }
    }

    pub fn threads(&self) -> usize {
        self.senders.len()
    }

    /// The thread with the fewest legs: where a new room should live.
    pub fn pick_thread(&self) -> usize {
        (0..self.stats.len())
            .min_by_key(|&i| self.stats[i].legs())
            .unwrap_or(0)
    }

    pub fn add_leg(&self, thread: usize, room: RoomId, spec: LegSpec) -> Result<(), MixerError> {
        if let Some(socket) = spec.socket.as_ref() {
            socket
                .set_nonblocking(true)
                .map_err(|source| MixerError::Socket {
                    leg: spec.id,
                    source,
                })?;
        }
        let (id, telephone_event) = (spec.id, spec.telephone_event_pt.is_some());
        // Built here, on the control side, so the media thread never allocates a leg.
        let leg = Box::new(leg::Leg::new(room, spec, &self.config)?);
        self.send(thread, Command::AddLeg { leg })?;
        self.note_telephone_event(id, telephone_event);
        Ok(())
    }

    pub fn update_leg(
        &self,
        thread: usize,
        leg: LegId,
        update: LegUpdate,
    ) -> Result<(), MixerError> {
        // Codec state for the (possibly new) codec is built here; the thread keeps whichever
        // it needs and hands the other back.
        let state = Some(Box::new(leg::CodecState::new(update.codec, &self.config)?));
        self.send(thread, Command::UpdateLeg { leg, update, state })?;
        self.note_telephone_event(leg, update.telephone_event_pt.is_some());
        Ok(())
    }

    pub fn set_flags(
        &self,
        thread: usize,
        leg: LegId,
        flags: MemberFlags,
    ) -> Result<(), MixerError> {
        self.send(thread, Command::SetFlags { leg, flags })
    }

    pub fn remove_leg(&self, thread: usize, leg: LegId) -> Result<(), MixerError> {
        self.send(thread, Command::RemoveLeg { leg })?;
        self.note_telephone_event(leg, false);
        Ok(())
    }

    /// Moves a leg to another room, on the same or another media thread (handed over by
    /// message: it misses at most one tick).
    pub fn move_leg(
        &self,
        thread: usize,
        leg: LegId,
        to_thread: usize,
        to_room: RoomId,
    ) -> Result<(), MixerError> {
        if to_thread >= self.threads() {
            return Err(MixerError::NoSuchThread(to_thread));
        }
        self.send(
            thread,
            Command::MoveLeg {
                leg,
                to_thread,
                to_room,
            },
        )
    }

    /// Starts audio heard by this member only, replacing any playing.
    pub fn play(&self, thread: usize, leg: LegId, playback: Playback) -> Result<(), MixerError> {
        self.send(
            thread,
            Command::Play {
                leg,
                playback: Box::new(playback),
            },
        )
    }

    pub fn stop_play(&self, thread: usize, leg: LegId) -> Result<(), MixerError> {
        self.send(thread, Command::StopPlay { leg })
    }

    /// Sends `digits` to the member as RFC 4733 telephone-events (the XML `<DTMF>` element):
    /// `0`–`9`, `*`, `#`, `A`–`D` (or `a`–`d`), `w` for a 0.5 s pause, `W` for 1 s.
    ///
    /// Each digit is 100 ms of event packets, one per 20 ms tick (RFC 4733 §2.5.1.2: one
    /// timestamp for the whole event, marker on its first packet, growing duration), then
    /// the end packet three times (§2.5.1.4), then 60 ms before the next digit. They go on
    /// the leg's own stream (same SSRC, its sequence numbers continuing), in place of its
    /// audio while a digit lasts. Digits sent while earlier ones are still going wait for
    /// them. [`MixerEvent::DtmfSent`] reports the end of each call's digits.
    ///
    /// Refused with [`MixerError::NoTelephoneEvent`] when the leg did not negotiate
    /// telephone-event (or is unknown): then nothing is sent.
    pub fn send_dtmf(&self, thread: usize, leg: LegId, digits: &str) -> Result<(), MixerError> {
        if digits.is_empty() {
            return Err(MixerError::NoDtmfDigits);
        }
        // Prepared here so the media thread only steps through it.
        let queue = dtmf::DtmfQueue::new(digits)
            .map_err(|dtmf::UnknownDigit(digit)| MixerError::InvalidDtmfDigit(digit))?;
        if !self.telephone_events().contains(&leg) {
            return Err(MixerError::NoTelephoneEvent { leg });
        }
        self.send(
            thread,
            Command::SendDtmf {
                leg,
                digits: Box::new(queue),
            },
        )
    }

    /// Taps one room holds at most.
    pub const MAX_TAPS: usize = room::MAX_TAPS;

    /// Attaches a listen-only tap to `room` on `thread` (a recording, as a "ghost member"):
    /// from the next tick it gets [`AudioTap::push`] once per tick with 20 ms of the room's
    /// clamped total at the room rate (8,000 Hz while every member is narrowband, else
    /// 48,000), zeros while nobody is mixed. It hears every mixed talker, as a silent member
    /// would; never a member's [`Playback`].
    ///
    /// A room has no entry on a thread until its first leg arrives; a tap added before that
    /// waits for the room (counting towards its [`Self::MAX_TAPS`]) and hears from the
    /// room's first tick. A tap that never sees its room waits until [`Self::remove_tap`].
    ///
    /// The tap comes back to the control side in a [`MixerEvent::Dispose`], never dropped on
    /// the media thread: after [`Self::remove_tap`], when the room ends (its last leg is
    /// removed or moved away, or the mixer stops; [`MixerEvent::TapRemoved`] first), or when
    /// it is refused ([`MixerEvent::TapRefused`]: the room is full or `id` is taken). Its
    /// `Drop` is how a recording learns it has ended. (Only when the event queue is full is
    /// an event, and so the tap, dropped where it is.)
    pub fn add_tap(
        &self,
        thread: usize,
        room: RoomId,
        id: u64,
        tap: Box<dyn AudioTap>,
    ) -> Result<(), MixerError> {
        let tap = Box::new(room::Tap { id, sink: tap });
        self.send(thread, Command::AddTap { room, tap })
    }

    /// Detaches a tap (attached or still waiting for its room); it comes back in a
    /// [`MixerEvent::Dispose`]. Unknown ids are ignored.
    pub fn remove_tap(&self, thread: usize, room: RoomId, id: u64) -> Result<(), MixerError> {
        self.send(thread, Command::RemoveTap { room, id })
    }

    fn telephone_events(&self) -> std::sync::MutexGuard<'_, HashSet<LegId>> {
        // The set stays consistent whatever panicked while holding it: one insert or remove.
        self.telephone_event_legs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn note_telephone_event(&self, leg: LegId, negotiated: bool) {
        let mut legs = self.telephone_events();
        if negotiated {
            legs.insert(leg);
        } else {
            legs.remove(&leg);
        }
    }

    pub fn stats(&self, thread: usize) -> Option<ThreadStatsSnapshot> {
        self.stats.get(thread).map(ThreadStats::snapshot)
    }

    fn send(&self, thread: usize, command: Command) -> Result<(), MixerError> {
        let sender = self
            .senders
            .get(thread)
            .ok_or(MixerError::NoSuchThread(thread))?;
        sender.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => MixerError::QueueFull { thread },
            TrySendError::Disconnected(_) => MixerError::ThreadGone { thread },
        })
    }
}

/// A media thread driven by hand, without its own OS thread or clock: for benchmarks and
/// tests that must step ticks deterministically (and count what a tick allocates).
pub struct ManualThread {
    thread: thread::MediaThread,
    handle: MixerHandle,
    events: Receiver<MixerEvent>,
}

impl ManualThread {
    pub fn new(config: MixerConfig) -> Self {
        Law::warm_up();
        let (event_tx, events) = crossbeam_channel::bounded(config.event_queue);
        let (tx, rx) = crossbeam_channel::bounded(config.command_queue);
        let senders: Arc<[Sender<Command>]> = vec![tx].into();
        let stats: Arc<[ThreadStats]> = vec![ThreadStats::default()].into();
        let thread = thread::MediaThread::new(
            0,
            1,
            config.clone(),
            rx,
            senders.clone(),
            event_tx,
            stats.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        Self {
            thread,
            handle: MixerHandle::new(senders, stats, config),
            events,
        }
    }

    /// The handle that queues commands for this thread (thread index 0).
    pub fn handle(&self) -> MixerHandle {
        self.handle.clone()
    }

    pub fn events(&self) -> &Receiver<MixerEvent> {
        &self.events
    }

    /// Applies queued commands.
    pub fn apply_commands(&mut self) {
        self.thread.drain_commands();
    }

    /// Hands `packet` (a whole RTP datagram) to a leg as if it had arrived on its socket.
    pub fn inject(
        &mut self,
        leg: LegId,
        datagram: &[u8],
        source: SocketAddr,
        now: Instant,
    ) -> bool {
        match chorus_media::rtp::RtpPacket::parse(datagram) {
            Ok(packet) => {
                self.thread.inject(leg, &packet, source, now);
                true
            }
            Err(_) => false,
        }
    }

    /// One whole 20 ms period: every tick slot, with socket receives and sends.
    pub fn tick(&mut self, now: Instant) {
        self.thread.tick_all(now);
    }

    pub fn stats(&self) -> ThreadStatsSnapshot {
        self.handle.stats[0].snapshot()
    }
}
