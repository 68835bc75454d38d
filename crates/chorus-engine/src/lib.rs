//! The Chorus engine: the tokio shell around the sans-IO cores.
//!
//! [`Engine::start`] binds SIP (UDP and TCP on one port), starts the media threads of
//! `chorus-mixer` and the SIP driver task, and from then on runs one task per call. Without
//! an answer URL every call runs the default flow: it is answered and joins the room named
//! after the dialled user part (`INVITE sip:room42@host` → room `room42` of the first
//! account); the room ends with its last member.
//!
//! Stopping is a drain: [`Engine::start_drain`] refuses new INVITEs and OPTIONS with 503 and
//! `Retry-After` while the live calls carry on; [`Engine::idle`] resolves when the last one has
//! ended. [`Engine::shutdown`] then (or at the operator's deadline) hangs up whatever is left
//! with a BYE carrying `Reason: SIP;cause=503` (RFC 3326), waits (bounded) for the answers,
//! stops every recording and waits for its file, then stops the threads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chorus_engine::EngineError> {
//! let engine = chorus_engine::Engine::start(chorus_engine::EngineConfig::loopback(5060, (20000, 20999))).await?;
//! // ... serve calls ...
//! engine.start_drain();
//! engine.idle().await; // or a deadline
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Invariants: no lock is held across an `.await`; nothing here runs on a media thread; the
//! SIP driver is the only owner of the SIP endpoint.

mod call;
mod conference;
mod config;
mod control;
mod error;
mod flow;
mod media_watch;
mod metrics;
mod ports;
pub mod prompts;
mod recording;
mod rooms;
mod silence;
mod sip_driver;
mod sip_metrics;
mod sip_security;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chorus_mixer::{Mixer, MixerEvent, MixerHandle};
use chorus_sip::guard::SourceGuard;
use chorus_sip::{Endpoint, EndpointConfig, IncomingCall, TimerConfig};
use dashmap::DashMap;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

pub use config::{route_call, Account, EngineConfig, SipSecurity, SipUser};
pub use control::Control;
pub use error::EngineError;
pub use media_watch::MediaTimeouts;
pub use metrics::EngineCollector;
pub use ports::PortPool;
pub use rooms::{Member, MemberCommand, RoomEntry, RoomKey, Rooms};

use sip_driver::{CallEvent, CallSpawner, SipCommand, SipDriver};

/// State shared by the driver, the call tasks and the handle.
pub(crate) struct Shared {
    config: EngineConfig,
    ports: PortPool,
    rooms: Arc<Rooms>,
    mixer: MixerHandle,
    sip: mpsc::UnboundedSender<SipCommand>,
    active_calls: AtomicUsize,
    /// Calls ever started (INVITEs handed to a call task).
    calls_total: AtomicU64,
    calls_changed: Notify,
    next_leg: AtomicU64,
    /// New calls are refused: draining or stopping.
    refusing: AtomicBool,
    /// True once draining began (watchers learn of it at once).
    draining: watch::Sender<bool>,
    /// Set when shutdown hangs the remaining calls up: their BYEs carry it.
    shutdown_reason: std::sync::OnceLock<chorus_sip::Reason>,
    sip_metrics: Arc<sip_metrics::SipMetrics>,
    prompts: prompts::Prompts,
    webhooks: webhooks::Webhooks,
    recordings: recording::Recordings,
    /// Where each leg's media events go (its call task), for legs whose flow wants them.
    legs: Arc<DashMap<u64, mpsc::UnboundedSender<LegEvent>>>,
    /// SIP drops, bans and auth outcomes, for `/metrics`.
    sip_counters: Arc<sip_security::SipCounters>,
}

/// What a media thread reports about one leg, routed to that leg's call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegEvent {
    /// Served by `thread` in `room` (after an add or a move).
    Added {
        thread: usize,
        room: chorus_mixer::RoomId,
    },
    Dtmf {
        digit: char,
        duration_ms: u32,
    },
    PlaybackDone {
        id: u64,
        interrupted: bool,
    },
    /// The leg became the room's loudest talker.
    Floor,
}

/// Routes media-thread events to call tasks; everything else (removed legs, garbage) is
/// dropped here, off the media threads.
fn route_mixer_events(
    events: crossbeam_channel::Receiver<MixerEvent>,
    legs: Arc<DashMap<u64, mpsc::UnboundedSender<LegEvent>>>,
) {
    while let Ok(event) = events.recv() {
        let (leg, routed) = match event {
            MixerEvent::LegAdded { leg, room, thread } => (leg, LegEvent::Added { thread, room }),
            MixerEvent::Dtmf {
                leg,
                digit,
                duration_ms,
                ..
            } => (leg, LegEvent::Dtmf { digit, duration_ms }),
            MixerEvent::PlaybackDone {
                leg,
                id,
                interrupted,
            } => (leg, LegEvent::PlaybackDone { id, interrupted }),
            MixerEvent::Floor { leg, .. } => (leg, LegEvent::Floor),
            _ => continue,
        };
        if let Some(tx) = legs.get(&leg.0) {
            let _ = tx.send(routed);
        }
    }
}

impl Shared {
    fn next_leg(&self) -> u64 {
        self.next_leg.fetch_add(1, Ordering::Relaxed)
    }

    fn calls_started(&self) {
        self.active_calls.fetch_add(1, Ordering::AcqRel);
        self.calls_total.fetch_add(1, Ordering::Relaxed);
    }

    fn calls_ended(&self) {
        self.active_calls.fetch_sub(1, Ordering::AcqRel);
        self.calls_changed.notify_waiters();
    }
}

struct Spawner {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl CallSpawner for Spawner {
    fn spawn(&mut self, incoming: IncomingCall, events: mpsc::UnboundedReceiver<CallEvent>) {
        call::spawn(self.shared.clone(), incoming, events, self.stop.clone());
    }

    fn refusing(&self) -> bool {
        self.shared.refusing.load(Ordering::Acquire)
    }

    fn unavailable(&self) -> Option<u32> {
        self.refusing()
            .then_some(self.shared.config.drain_retry_after)
    }

    fn hangup_reason(&self) -> Option<chorus_sip::Reason> {
        self.shared.shutdown_reason.get().cloned()
    }
}

/// Starts the drain of a running engine; see [`Engine::start_drain`].
#[derive(Clone)]
pub struct DrainHandle(Arc<Shared>);

impl DrainHandle {
    /// Starts draining; true the first time.
    pub fn start(&self) -> bool {
        self.0.refusing.store(true, Ordering::Release);
        let first = !self.0.draining.send_replace(true);
        if first {
            info!(
                calls = self.0.active_calls.load(Ordering::Acquire),
                retry_after = self.0.config.drain_retry_after,
                "draining: new calls are refused, live calls carry on"
            );
        }
        first
    }

    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    pub fn active_calls(&self) -> usize {
        self.0.active_calls.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for DrainHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainHandle")
            .field("draining", &self.is_draining())
            .finish()
    }
}

/// A running engine.
pub struct Engine {
    shared: Arc<Shared>,
    sip_addr: SocketAddr,
    hang_up_calls: watch::Sender<bool>,
    stop_driver: watch::Sender<bool>,
    driver: tokio::task::JoinHandle<()>,
    mixer: Mixer,
    reaper: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let (low, high) = config.rtp_ports;
        if low >= high {
            return Err(EngineError::BadPortRange { low, high });
        }
        if config.accounts.is_empty() {
            return Err(EngineError::NoAccounts);
        }
        let udp =
            UdpSocket::bind(config.sip_listen)
                .await
                .map_err(|source| EngineError::BindSip {
                    transport: "UDP",
                    addr: config.sip_listen,
                    source,
                })?;
        let sip_addr = udp.local_addr().map_err(|source| EngineError::BindSip {
            transport: "UDP",
            addr: config.sip_listen,
            source,
        })?;
        // TCP on the very port UDP got, also when the configured port was 0.
        let tcp = TcpListener::bind(sip_addr)
            .await
            .map_err(|source| EngineError::BindSip {
                transport: "TCP",
                addr: sip_addr,
                source,
            })?;
        let mixer = Mixer::start(config.mixer.clone())?;
        for refusal in mixer.realtime_refusals() {
            warn!(
                thread = refusal.thread,
                priority = config.mixer.realtime_priority,
                error = %refusal.error,
                "media thread runs without real-time priority (needs root, CAP_SYS_NICE or RLIMIT_RTPRIO)"
            );
        }
        let events = mixer.events();
        let legs = Arc::new(DashMap::new());
        let router_legs = Arc::clone(&legs);
        // Removed legs come back here to be freed off the media threads; DTMF, playback and
        // floor events go on to the call tasks.
        let reaper = std::thread::Builder::new()
            .name("media-events".into())
            .spawn(move || route_mixer_events(events, router_legs))
            .ok();
        let contact = SocketAddr::new(config.advertise_ip, sip_addr.port());
        let endpoint = Endpoint::new(EndpointConfig {
            user_agent: config.user_agent.clone(),
            contact_udp: contact,
            contact_tcp: contact,
            timers: TimerConfig::default(),
            session_timer: config.session_timer,
            max_message_size: config.max_sip_message,
            scanner_user_agents: config.sip_security.scanner_user_agents.clone(),
        });
        let guard = Arc::new(std::sync::Mutex::new(SourceGuard::new(
            config.sip_security.guard.clone(),
        )));
        let admission = sip_security::Admission::new(&config, std::time::Instant::now());
        let sip_counters = Arc::new(sip_security::SipCounters::default());
        let (sip_tx, sip_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            ports: PortPool::new(config.rtp_bind_ip, low, high),
            rooms: Arc::new(Rooms::default()),
            mixer: mixer.handle(),
            sip: sip_tx,
            active_calls: AtomicUsize::new(0),
            calls_total: AtomicU64::new(0),
            calls_changed: Notify::new(),
            next_leg: AtomicU64::new(1),
            refusing: AtomicBool::new(false),
            draining: watch::channel(false).0,
            shutdown_reason: std::sync::OnceLock::new(),
            sip_metrics: Arc::default(),
            prompts: prompts::Prompts::new(),
            webhooks: webhooks::Webhooks::new(webhooks::WebhookConfig {
                user_agent: config.user_agent.clone(),
                ..webhooks::WebhookConfig::default()
            }),
            legs,
            sip_counters: Arc::clone(&sip_counters),
            recordings: recording::Recordings::new(
                config.recordings_dir.clone(),
                config.public_url.clone(),
                config.max_recording,
            ),
            config,
        });
        let (hang_up_calls, calls_stop) = watch::channel(false);
        let (stop_driver, driver_stop) = watch::channel(false);
        let driver = SipDriver {
            endpoint,
            udp,
            commands: sip_rx,
            spawner: Spawner {
                shared: shared.clone(),
                stop: calls_stop,
            },
            stop: driver_stop,
            max_message: shared.config.max_sip_message,
            metrics: shared.sip_metrics.clone(),
            guard,
            admission,
            counters: sip_counters,
            drops: chorus_sip::DropCounts::default(),
        };
        let driver = tokio::spawn(driver.run(tcp));
        info!(sip = %sip_addr, rtp = ?shared.config.rtp_ports, threads = shared.mixer.threads(), "engine started");
        // Recordings a crash interrupted: made whole, and their callbacks sent (flagged).
        recording::recover_all(&shared);
        Ok(Self {
            shared,
            sip_addr,
            hang_up_calls,
            stop_driver,
            driver,
            mixer,
            reaper,
        })
    }

    /// The SIP address actually bound (UDP and TCP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    pub fn active_calls(&self) -> usize {
        self.shared.active_calls.load(Ordering::Acquire)
    }

    /// The live-room registry.
    pub fn rooms(&self) -> Arc<Rooms> {
        self.shared.rooms.clone()
    }

    /// The engine's Prometheus metrics, for a registry.
    pub fn metrics(&self) -> EngineCollector {
        EngineCollector::new(self.shared.clone())
    }

    /// The handle the REST API drives the engine through.
    pub fn control(&self) -> Control {
        Control::new(self.shared.clone())
    }

    pub fn mixer(&self) -> &MixerHandle {
        &self.shared.mixer
    }

    /// A handle that starts the drain from elsewhere (an admin request).
    pub fn drain_handle(&self) -> DrainHandle {
        DrainHandle(self.shared.clone())
    }

    /// Starts draining (idempotent): from now on new INVITEs and OPTIONS are answered 503
    /// with `Retry-After` (RFC 3261 §21.5.4); live calls, rooms and recordings carry on.
    pub fn start_drain(&self) {
        self.drain_handle().start();
    }

    pub fn is_draining(&self) -> bool {
        *self.shared.draining.borrow()
    }

    /// Resolves once draining has begun (by [`Engine::start_drain`] or a [`DrainHandle`]).
    pub async fn draining(&self) {
        let mut rx = self.shared.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Resolves when no call is left.
    pub async fn idle(&self) {
        loop {
            let notified = self.shared.calls_changed.notified();
            if self.active_calls() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Refuses new calls (503), hangs up every live call with a BYE carrying
    /// `Reason: SIP;cause=503` and waits for them to end (at most the configured hangup
    /// timeout), stops every recording and waits for its file (at most the recording finish
    /// timeout), lets the queued callbacks go out (at most the webhook flush timeout), then
    /// stops SIP and the media threads.
    pub async fn shutdown(self) {
        self.start_drain();
        let _ = self
            .shared
            .shutdown_reason
            .set(chorus_sip::Reason::sip(503, "Server shutting down"));
        let _ = self.hang_up_calls.send(true);
        let live = self.active_calls();
        if live > 0 {
            info!(live, "hanging up the remaining calls");
        }
        let deadline = tokio::time::Instant::now() + self.shared.config.hangup_timeout;
        loop {
            let notified = self.shared.calls_changed.notified();
            if self.active_calls() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                warn!(
                    left = self.active_calls(),
                    "calls still up at the hangup timeout"
                );
                break;
            }
        }
        let recordings = self.shared.recordings.live_count();
        if recordings > 0 {
            info!(recordings, "finishing the recordings");
        }
        let timeout = self.shared.config.recording_finish_timeout;
        if !self.shared.recordings.finish_all(timeout).await {
            warn!(
                left = self.shared.recordings.live_count(),
                "recordings still being written at the timeout"
            );
        }
        // The callbacks the ends of calls and recordings queued.
        let timeout = self.shared.config.webhook_flush_timeout;
        if !self.shared.webhooks.flush(timeout).await {
            warn!(
                pending = self.shared.webhooks.stats().pending,
                "callbacks still undelivered at the timeout"
            );
        }
        let _ = self.stop_driver.send(true);
        let _ = self.driver.await;
        let mixer = self.mixer;
        let _ = tokio::task::spawn_blocking(move || mixer.shutdown()).await;
        if let Some(reaper) = self.reaper {
            let _ = tokio::task::spawn_blocking(move || reaper.join()).await;
        }
        info!("engine stopped");
    }
}
