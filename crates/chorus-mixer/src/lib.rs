//! Conference rooms mixed on dedicated media threads.
//!
//! A [`Mixer`] starts a fixed pool of named OS threads (`media-0`, `media-1`, …). Each thread
//! owns a set of rooms and every leg in them, including the leg's RTP socket, and every 20 ms
//! at an absolute deadline it: drains its command queue → reads every leg's socket until it
//! would block, into the leg's jitter buffer → pulls one frame per leg and decodes it → sums
//! each room in `i32` → gives each listener the total minus its own contribution, clamped
//! once → encodes and sends. Listeners that contribute nothing share one encode per codec.
//!
//! The control side (the engine) talks to the threads only through bounded queues: commands
//! in ([`MixerHandle`]), events out ([`MixerEvent`]); neither side ever blocks on the other.
//! Legs removed from a thread are handed back as events so their memory and socket are freed
//! off the media thread.
//!
//! Invariants inside a tick: no lock, no blocking IO, no logging, no allocation in the steady
//! state (buffers are sized when a leg is added); network input is counted, never trusted.
//!
//! ```no_run
//! use chorus_mixer::{Mixer, MixerConfig, LegSpec, LegId, RoomId, Codec};
//! let mixer = Mixer::start(MixerConfig::default()).expect("threads start");
//! let handle = mixer.handle();
//! let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
//! let thread = handle.pick_thread();
//! handle.add_leg(thread, RoomId(1), LegSpec::new(LegId(1), socket, Codec::PCMU)).expect("queued");
//! ```

mod error;
pub mod kernel;
mod leg;
mod stats;
mod thread;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use chorus_media::g711::Law;
use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use error::MixerError;
pub use stats::{LegStats, ThreadStats, ThreadStatsSnapshot};

/// Identifies a leg (one call's media) across the engine and the media threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// Identifies one instance of a room on a media thread. A room that empties and is created
/// again under the same name gets a new id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// The negotiated audio format of a leg: a codec and the payload type the peer uses for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    pub law: Law,
    pub payload_type: u8,
}

impl Codec {
    pub const PCMU: Codec = Codec {
        law: Law::Mu,
        payload_type: 0,
    };
    pub const PCMA: Codec = Codec {
        law: Law::A,
        payload_type: 8,
    };
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
    pub socket: UdpSocket,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// Where to send until the peer's first packet shows its real address (symmetric RTP).
    pub remote: Option<SocketAddr>,
    pub flow: Flow,
}

impl LegSpec {
    pub fn new(id: LegId, socket: UdpSocket, codec: Codec) -> Self {
        Self {
            id,
            socket,
            codec,
            telephone_event_pt: None,
            remote: None,
            flow: Flow::SEND_RECV,
        }
    }
}

/// A change to a live leg after a re-INVITE or an ACK carrying the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegUpdate {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// `None` keeps what the leg has learned; `Some` re-targets it (and forgets the latch).
    pub remote: Option<SocketAddr>,
    pub flow: Flow,
}

/// Member controls (API.md §11): muted → others don't hear it; deaf → it hears nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberFlags {
    pub muted: bool,
    pub deaf: bool,
}

#[derive(Debug)]
pub(crate) enum Command {
    AddLeg { leg: Box<leg::Leg> },
    UpdateLeg { leg: LegId, update: LegUpdate },
    SetFlags { leg: LegId, flags: MemberFlags },
    RemoveLeg { leg: LegId },
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
}

/// The memory and socket of a removed leg, to be dropped by the control side.
pub struct LegResources(#[allow(dead_code)] Box<leg::Leg>);

impl std::fmt::Debug for LegResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegResources")
    }
}

#[derive(Debug, Clone)]
pub struct MixerConfig {
    /// Media threads; 0 means one per available core.
    pub threads: usize,
    pub tick: Duration,
    /// Packets buffered before playout starts.
    pub jitter_target: usize,
    pub jitter_capacity: usize,
    pub command_queue: usize,
    pub event_queue: usize,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            tick: Duration::from_millis(20),
            jitter_target: 2,
            jitter_capacity: 16,
            command_queue: 4096,
            event_queue: 4096,
        }
    }
}

/// The running pool of media threads. Dropping it (or [`Mixer::shutdown`]) stops them.
pub struct Mixer {
    handle: MixerHandle,
    events: Receiver<MixerEvent>,
    joins: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Cheap to clone; sends commands to the media threads without ever blocking.
#[derive(Clone)]
pub struct MixerHandle {
    senders: Arc<[Sender<Command>]>,
    stats: Arc<[ThreadStats]>,
    config: Arc<MixerConfig>,
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
        let mut senders = Vec::with_capacity(threads);
        let mut joins = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded(config.command_queue);
            senders.push(tx);
            let worker = thread::MediaThread::new(
                index,
                threads,
                config.clone(),
                rx,
                event_tx.clone(),
                stats.clone(),
                stop.clone(),
            );
            let join = std::thread::Builder::new()
                .name(format!("media-{index}"))
                .spawn(move || worker.run())
                .map_err(|source| MixerError::Spawn {
                    thread: index,
                    source,
                })?;
            joins.push(join);
        }
        Ok(Self {
            handle: MixerHandle {
                senders: senders.into(),
                stats,
                config: Arc::new(config),
            },
            events,
            joins,
            stop,
        })
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
        spec.socket
            .set_nonblocking(true)
            .map_err(|source| MixerError::Socket {
                leg: spec.id,
                source,
            })?;
        // Built here, on the control side, so the media thread never allocates a leg.
        let leg = Box::new(leg::Leg::new(room, spec, &self.config));
        self.send(thread, Command::AddLeg { leg })
    }

    pub fn update_leg(
        &self,
        thread: usize,
        leg: LegId,
        update: LegUpdate,
    ) -> Result<(), MixerError> {
        self.send(thread, Command::UpdateLeg { leg, update })
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
        self.send(thread, Command::RemoveLeg { leg })
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
