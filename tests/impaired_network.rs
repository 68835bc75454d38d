//! Conference mixing over an impaired network: the hear-the-others test of
//! `three_party_mix.rs` with 5 % packet loss and 30 ms jitter on every hop.
//!
//! Two mechanisms inject the impairment; the test prints which one ran and checks, in both,
//! that it really was active before it applies the same assertions.
//!
//! **Kernel netem** (preferred, used whenever the kernel has it). The test creates its own
//! network namespace, brings up its `lo`, puts a netem qdisc on it ([`NETEM`]) and re-runs
//! itself inside the namespace (`ip netns exec`), where the child process starts the engine
//! and the three callers. Everything — SIP, RTP and the readiness probes — then crosses the
//! impaired loopback; the host's network is never touched. Adding that qdisc is also the probe:
//! when it fails because the kernel has no netem qdisc (`CONFIG_NET_SCH_NETEM` unset: "qdisc
//! kind is unknown"), the namespace is deleted and the test falls back to the relay.
//!
//! **Userspace relay** (fallback on kernels without netem). The test runs in its own process;
//! each caller's RTP goes through an [`ImpairingRelay`]: caller → relay → engine and engine →
//! relay → caller. The caller's SDP advertises the relay's engine-facing port, so the engine
//! sends there (and symmetric RTP latches on it); the caller sends to the relay's caller-facing
//! port. Each direction drops packets with probability [`LOSS`] and holds the others for a
//! uniformly drawn 0–[`MAX_DELAY`] in a delay queue, exactly netem's `delay 30ms 30ms loss 5%`,
//! so the engine sees real late, missing and reordered datagrams on the wire. The draws come
//! from seeded RNGs, a different seed per caller and direction ([`SEED`], or
//! `CHORUS_IMPAIR_SEED`), so the impairment pattern is reproducible. SIP is not impaired in this
//! mode (netem also delays SIP; the engine's SIP stack is not what this test is about).
//!
//! Why these parameters: `delay 30ms 30ms` sets netem's jitter to 30 ms around a 30 ms mean,
//! so each packet waits a uniformly drawn 0–60 ms (the mean equals the jitter so no delay is
//! clipped at zero); `loss 5%` drops one packet in twenty at random. On loopback each packet
//! crosses `lo` exactly once, so every one-way hop (caller → engine, engine → caller) sees 5 %
//! loss and 30 ms jitter, which is how a link's impairment is normally quoted; the relay
//! impairs each hop once in the same way. The spread (60 ms) is three packet intervals, so
//! packets are also reordered, as on real networks; the engine's jitter buffer has to put them
//! back in order. What a caller hears from another crossed two impaired hops (about 10 % loss
//! end to end). The engine's jitter buffer repairs the first; the listening test user agent
//! repairs the second the way a phone would, by playing packets out at their RTP timestamps
//! (see [`assert_hears_after_playout`]). The thresholds are those of the unimpaired test: own
//! tone at least 20 dB below the others.
//!
//! Creating a namespace (and so probing for netem) needs root (CI runs as root). Without it, or
//! without `ip`/`tc`, the test fails with a message saying so: it never passes silently without
//! the impairment.

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::media::{RxPacket, PCMU};
use common::{level_db, steady_window, Call, CallOptions, Engine, Expectation, Source, LOCALHOST};

/// Set (to the namespace's name) in the re-executed child: run the scenario itself.
const CHILD_ENV: &str = "CHORUS_NETNS_CHILD";
/// The netem arguments after `tc qdisc add dev lo root netem`; see the module docs.
const NETEM: &[&str] = &["delay", "30ms", "30ms", "loss", "5%"];
/// How `tc qdisc show` prints them back; checked inside the child.
const NETEM_SHOWN: &[&str] = &["netem", "delay 30ms  30ms", "loss 5%"];
/// The relay's equivalent of [`NETEM`]: each packet is lost with this probability...
const LOSS: f64 = 0.05;
/// ...or else held for a uniformly drawn 0..=MAX_DELAY (30 ms ± 30 ms).
const MAX_DELAY: Duration = Duration::from_millis(60);
/// Base seed of the relays' RNGs; `CHORUS_IMPAIR_SEED` overrides it (to replay a pattern).
const SEED: u64 = 0x00C4_0505_1A55_0001;
const SEED_ENV: &str = "CHORUS_IMPAIR_SEED";
/// What a relay direction holds at most (60 ms of one 50 packet/s stream is 3 packets); past
/// this it drops and counts the packet, and the test fails.
const MAX_HELD: usize = 256;
/// How often an idle relay direction polls its socket; also the precision of its delays.
const RELAY_TICK: Duration = Duration::from_millis(1);
const SETTLE: Duration = Duration::from_secs(1);
/// Longer than the unimpaired test's 2 s: losses and reordering make short windows noisy.
const WINDOW: Duration = Duration::from_secs(3);
/// The whole child run (engine start, three calls over a lossy link, the window) fits well
/// within this; past it the child is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn three_member_room_hears_the_others_under_5_percent_loss_and_30_ms_jitter() {
    if let Some(namespace) = std::env::var_os(CHILD_ENV) {
        let namespace = namespace.to_string_lossy().into_owned();
        each_member_hears_the_others_and_not_itself_on_this_impaired_loopback(&namespace);
        return;
    }
    let namespace = Namespace::create(&format!("chorus-impaired-{}", std::process::id()));
    namespace.run(&["ip", "link", "set", "dev", "lo", "up"]);
    match namespace.add_netem_on_lo(NETEM) {
        Ok(()) => run_in_netem_namespace(&namespace),
        Err(NoNetem(tc_error)) => {
            drop(namespace);
            eprintln!(
                "impairment: userspace relay (kernel lacks netem: CONFIG_NET_SCH_NETEM)\n  \
                 `tc qdisc add dev lo root netem {}` said: {}\n  \
                 the relay applies the same 5 % loss and 0-60 ms uniform delay to each RTP \
                 hop in both directions",
                NETEM.join(" "),
                tc_error.trim()
            );
            each_member_hears_the_others_and_not_itself_through_impairing_relays();
        }
    }
}

/// Re-runs this test inside `namespace`, whose `lo` carries netem, and checks its outcome.
fn run_in_netem_namespace(namespace: &Namespace) {
    eprintln!(
        "impairment: kernel netem in namespace {} (`tc qdisc add dev lo root netem {}`)",
        namespace.name,
        NETEM.join(" ")
    );
    let test_name = "three_member_room_hears_the_others_under_5_percent_loss_and_30_ms_jitter";
    let exe = std::env::current_exe().expect("path of the running test binary");
    let child = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &namespace.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} in {}: {e}", exe.display(), namespace.name));
    let (status, stdout, stderr) = wait_with_timeout(child, CHILD_TIMEOUT, namespace);
    // Forwarded so `--nocapture` shows the measured levels, and a failure shows everything.
    println!("----- child in {} -----\n{stdout}", namespace.name);
    eprintln!("{stderr}\n----- end of child -----");
    let status =
        status.unwrap_or_else(|| panic!("the child did not finish within {CHILD_TIMEOUT:?}"));
    assert!(
        status.success(),
        "the scenario failed inside {} ({status}); its output is above",
        namespace.name
    );
    // libtest exits 0 when the filter matches nothing; the scenario must really have run.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child did not run the scenario: its output is above"
    );
}

/// The scenario, run inside the namespace (see the module docs).
fn each_member_hears_the_others_and_not_itself_on_this_impaired_loopback(namespace: &str) {
    let here = output_of(&["ip", "netns", "identify"]);
    assert_eq!(
        here.trim(),
        namespace,
        "the child must run inside the test's namespace"
    );
    let qdisc = output_of(&["tc", "qdisc", "show", "dev", "lo"]);
    for part in NETEM_SHOWN {
        assert!(
            qdisc.contains(part),
            "lo is not impaired as intended: no {part:?} in `tc qdisc show dev lo`: {qdisc}"
        );
    }
    eprintln!(
        "impairment: kernel netem in namespace {namespace}: {}",
        qdisc.trim()
    );

    let engine = Engine::start(&[]);
    let calls = sources().map(|source| Call::dial(engine.sip, "trio", source));
    let window = steady_window(SETTLE, WINDOW);
    assert_each_member_hears_the_others_and_not_itself(&calls, window, "is netem active?");
    eprintln!(
        "netem counters: {}",
        output_of(&["tc", "-s", "qdisc", "show", "dev", "lo"]).trim()
    );
}

/// The same scenario in this process, each caller's RTP through its own [`ImpairingRelay`].
fn each_member_hears_the_others_and_not_itself_through_impairing_relays() {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => parse_seed(&text)
            .unwrap_or_else(|| panic!("{SEED_ENV}={text:?} is not a u64 (decimal or 0x hex)")),
        Err(_) => SEED,
    };
    let engine = Engine::start(&[]);
    let mut relays = Vec::new();
    let calls = sources().map(|source| {
        // Two RNG streams per caller (one per direction), none shared with another caller.
        let seeds = [0, 1].map(|hop| seed.wrapping_add(2 * relays.len() as u64 + hop));
        let relay = ImpairingRelay::start(seeds).expect("start an impairing RTP relay");
        let mut options = CallOptions::new("trio", source);
        options.advertised_rtp = Some(relay.engine_side);
        options.send_rtp_to = Some(relay.caller_side);
        let call = Call::dial_with(engine.sip, options)
            .unwrap_or_else(|e| panic!("call into room \"trio\" failed: {e:#}"))
            .unwrap_or_else(|r| panic!("call into room \"trio\" rejected:\n{r}"));
        relay.connect(call.media.local, call.remote_sdp.rtp_addr());
        eprintln!(
            "caller {}: media {} <-> relay {} | {} <-> engine {} (seeds {:#x}, {:#x})",
            LABELS[relays.len()],
            call.media.local,
            relay.caller_side,
            relay.engine_side,
            call.remote_sdp.rtp_addr(),
            seeds[0],
            seeds[1]
        );
        relays.push(relay);
        call
    });
    let window = steady_window(SETTLE, WINDOW);

    // The relays must really have impaired both directions, as netem would have.
    let mut totals = [HopTotals::default(), HopTotals::default()];
    for (label, relay) in LABELS.iter().zip(&relays) {
        for (total, (direction, hop)) in totals.iter_mut().zip(relay.hops()) {
            let hop = hop.snapshot();
            eprintln!("relay {label} {direction}: {hop}");
            total.add(&hop);
        }
    }
    for (total, direction) in totals.iter().zip(HOP_NAMES) {
        eprintln!("relays, all callers, {direction}: {total}");
        assert_eq!(
            total.overflowed, 0,
            "{direction}: the relay's delay queue overflowed"
        );
        let loss = total.dropped as f64 / (total.dropped + total.forwarded).max(1) as f64;
        assert!(
            total.dropped > 0 && (0.02..=0.10).contains(&loss),
            "{direction}: the relays dropped {} of {} packets ({:.1} %), not about {:.0} %",
            total.dropped,
            total.dropped + total.forwarded,
            100.0 * loss,
            100.0 * LOSS
        );
        assert!(
            total.reordered > 0,
            "{direction}: the relays reordered no packet: is the delay applied?"
        );
        let mean_hold = total.mean_hold();
        assert!(
            (Duration::from_millis(20)..=Duration::from_millis(45)).contains(&mean_hold),
            "{direction}: packets were held {mean_hold:?} on average, not about 30 ms"
        );
    }
    assert_each_member_hears_the_others_and_not_itself(&calls, window, "are the relays active?");
}

/// What the three members send: A a 440 Hz tone, B a 1000 Hz tone, C silence.
fn sources() -> [Source; 3] {
    [Source::tone(440.0), Source::tone(1000.0), Source::Silence]
}
const LABELS: [&str; 3] = ["A", "B", "C"];

/// The checks both mechanisms share, on the calls of [`sources`]: the impairment is visible in
/// what arrived from the engine, and each member hears the others and not itself.
fn assert_each_member_hears_the_others_and_not_itself(
    calls: &[Call; 3],
    window: (Instant, Instant),
    hint: &str,
) {
    // The impairment must be visible in what arrived, or the test proves nothing.
    let mut missing = 0;
    for (label, call) in LABELS.iter().zip(calls) {
        let stats = SequenceStats::of(&call.media.packets_between(window.0, window.1));
        eprintln!(
            "{label} from the engine: {} packets, {} missing, {} out of order",
            stats.received, stats.missing, stats.reordered
        );
        missing += stats.missing;
    }
    assert!(
        missing > 0,
        "not one packet from the engine was lost in the window: {hint}"
    );

    // N-1: a member's own tone must be absent (20 dB below what it hears from the others).
    let [a, b, c] = calls;
    assert_hears_after_playout("A (sends 440 Hz)", a, window, &[1000.0], &[440.0]);
    assert_hears_after_playout("B (sends 1000 Hz)", b, window, &[440.0], &[1000.0]);
    assert_hears_after_playout("C (silent)", c, window, &[440.0, 1000.0], &[]);
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => text.parse().ok(),
    }
}

/// [`common::assert_hears`] for a listener behind an impaired link: the same packet-rate check
/// and the same [`Expectation`], applied to what a phone's playout buffer would play rather
/// than to the packets in arrival order.
///
/// `assert_hears` concatenates payloads as they arrive. Behind this link, packets the engine
/// sent arrive reordered or not at all, and every such splice puts a phase jump into a tone
/// whose period does not divide 20 ms (440 Hz: 8.8 periods a frame). The long-window tone
/// measurement then reads the 440 Hz tone 5–40 dB low even though the engine sent it intact
/// (measured: a clean caller → engine hop with an impaired engine → caller hop alone costs
/// that much). That is a fault of the listener, not of the engine, so this listener places
/// each payload at its RTP timestamp and plays silence for the gaps, as a receiver's jitter
/// buffer does. The engine's timestamps must then be consistent for the tones to survive.
fn assert_hears_after_playout(
    label: &str,
    call: &Call,
    window: (Instant, Instant),
    hear: &[f64],
    not_hear: &[f64],
) {
    let (from, to) = window;
    let expected = to.duration_since(from).as_secs_f64() * 50.0;
    let packets: Vec<RxPacket> = call
        .media
        .packets_between(from, to)
        .into_iter()
        .filter(|p| p.payload_type == PCMU)
        .collect();
    assert!(
        packets.len() as f64 >= 0.8 * expected,
        "{label}: {} PCMU packets in {:?}, expected about {expected:.0}",
        packets.len(),
        to.duration_since(from)
    );
    let audio = play_out(label, &packets, to.duration_since(from));
    if let Err(e) = Expectation::new(hear, not_hear).check(&audio) {
        panic!("{label} (room {}): {e}", call.room);
    }
    let levels = |fs: &[f64]| {
        fs.iter()
            .map(|&f| format!("{f} Hz {:.1} dBFS", level_db(&audio, f)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "{label}: {} packets; hears [{}]; not [{}]",
        packets.len(),
        levels(hear),
        levels(not_hear)
    );
}

/// The audio of `packets` (one stream, any arrival order) laid out by RTP timestamp, gaps
/// silent. Panics if the stream changes SSRC or its timestamps span far more than `window`.
fn play_out(label: &str, packets: &[RxPacket], window: Duration) -> Vec<i16> {
    let Some(first) = packets.first() else {
        return Vec::new();
    };
    assert!(
        packets.iter().all(|p| p.ssrc == first.ssrc),
        "{label}: the engine's stream changed SSRC within the window"
    );
    // Wrap-safe offsets (RFC 3550 timestamps are modulo 2^32) from the first arrival.
    let offsets: Vec<i64> = packets
        .iter()
        .map(|p| i64::from(p.timestamp.wrapping_sub(first.timestamp) as i32))
        .collect();
    let lowest = offsets.iter().copied().min().unwrap_or(0);
    let end = packets
        .iter()
        .zip(&offsets)
        .map(|(p, &o)| o - lowest + p.samples.len() as i64)
        .max()
        .unwrap_or(0);
    // Arrival jitter widens the span a little; a timestamp jump widens it a lot.
    let limit = (window.as_secs_f64() + 1.0) * f64::from(common::audio::SAMPLE_RATE);
    assert!(
        (end as f64) <= limit,
        "{label}: the RTP timestamps of {} packets received in {window:?} span {end} samples",
        packets.len()
    );
    let mut audio = vec![0i16; end as usize];
    for (p, &o) in packets.iter().zip(&offsets) {
        let at = (o - lowest) as usize;
        audio[at..at + p.samples.len()].copy_from_slice(&p.samples);
    }
    audio
}

/// Loss and reordering seen in packets of one stream, in arrival order.
struct SequenceStats {
    received: usize,
    /// Sequence numbers between the lowest and highest received that never arrived.
    missing: usize,
    /// Packets that arrived after one with a higher sequence number.
    reordered: usize,
}

impl SequenceStats {
    fn of(packets: &[RxPacket]) -> Self {
        let Some(first) = packets.first() else {
            return Self {
                received: 0,
                missing: 0,
                reordered: 0,
            };
        };
        // Offsets from the first packet, wrap-safe for a window far shorter than 2^15 packets.
        let offset = |seq: u16| i32::from(seq.wrapping_sub(first.seq) as i16);
        let mut offsets: Vec<i32> = packets.iter().map(|p| offset(p.seq)).collect();
        let mut highest = i32::MIN;
        let mut reordered = 0;
        for &o in &offsets {
            if o < highest {
                reordered += 1;
            }
            highest = highest.max(o);
        }
        offsets.sort_unstable();
        offsets.dedup();
        let span = (offsets[offsets.len() - 1] - offsets[0] + 1) as usize;
        Self {
            received: packets.len(),
            missing: span - offsets.len(),
            reordered,
        }
    }
}

/// A userspace stand-in for netem on one caller's RTP path (see the module docs): two UDP
/// sockets and one thread per direction, each with a delay queue ordered by due time.
///
/// Nothing in the datagrams is rewritten; the relay only decides, per packet, whether it is
/// lost and how long it is held. Everything it holds is bounded ([`MAX_HELD`] packets of at
/// most 2 kB, for at most [`MAX_DELAY`]), and its threads stop within [`RELAY_TICK`] of a drop.
struct ImpairingRelay {
    /// Where the caller sends its RTP (and whence it receives the engine's).
    caller_side: SocketAddr,
    /// What the caller's SDP advertises: where the engine sends (and whence it receives).
    engine_side: SocketAddr,
    /// Where each direction forwards to: [to the engine, to the caller]; None until
    /// [`ImpairingRelay::connect`], and packets arriving before are discarded (and counted).
    dests: [Arc<Mutex<Option<SocketAddr>>>; 2],
    counters: [Arc<HopCounters>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The relay's directions, in the order of its `dests` and `counters`.
const HOP_NAMES: [&str; 2] = ["caller -> engine", "engine -> caller"];

impl ImpairingRelay {
    /// Binds both sockets and starts both directions, seeded with `seeds` [to the engine, to
    /// the caller].
    fn start(seeds: [u64; 2]) -> std::io::Result<Self> {
        let caller_socket = UdpSocket::bind((LOCALHOST, 0))?;
        let engine_socket = UdpSocket::bind((LOCALHOST, 0))?;
        caller_socket.set_nonblocking(true)?;
        engine_socket.set_nonblocking(true)?;
        let caller_side = caller_socket.local_addr()?;
        let engine_side = engine_socket.local_addr()?;
        let dests = [(); 2].map(|_| Arc::new(Mutex::new(None)));
        let counters = [(); 2].map(|_| Arc::new(HopCounters::default()));
        let stop = Arc::new(AtomicBool::new(false));
        // Caller -> engine: received on the caller side, sent from the engine side; and back.
        let wiring = [
            (caller_socket.try_clone()?, engine_socket.try_clone()?),
            (engine_socket, caller_socket),
        ];
        let mut threads = Vec::new();
        for (i, (rx, tx)) in wiring.into_iter().enumerate() {
            let hop = Hop {
                rx,
                tx,
                dest: Arc::clone(&dests[i]),
                rng: StdRng::seed_from_u64(seeds[i]),
                counters: Arc::clone(&counters[i]),
                stop: Arc::clone(&stop),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("impair-{}-{i}", caller_side.port()))
                    .spawn(move || hop.run())?,
            );
        }
        Ok(Self {
            caller_side,
            engine_side,
            dests,
            counters,
            stop,
            threads,
        })
    }

    /// Starts forwarding: to `engine` what the caller sends, to `caller` what the engine sends.
    fn connect(&self, caller: SocketAddr, engine: SocketAddr) {
        *lock(&self.dests[0]) = Some(engine);
        *lock(&self.dests[1]) = Some(caller);
    }

    /// The counters of both directions, named.
    fn hops(&self) -> [(&'static str, &HopCounters); 2] {
        [
            (HOP_NAMES[0], &*self.counters[0]),
            (HOP_NAMES[1], &*self.counters[1]),
        ]
    }
}

impl Drop for ImpairingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One direction of an [`ImpairingRelay`].
struct Hop {
    rx: UdpSocket,
    tx: UdpSocket,
    dest: Arc<Mutex<Option<SocketAddr>>>,
    rng: StdRng,
    counters: Arc<HopCounters>,
    stop: Arc<AtomicBool>,
}

/// A datagram waiting in a delay queue: ordered by due time, then by arrival.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    arrival: u64,
    arrived: Instant,
    bytes: Vec<u8>,
}

impl Hop {
    fn run(mut self) {
        let mut queue: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
        let mut buf = [0u8; 2048];
        let mut arrivals: u64 = 0;
        // Arrival number of the latest-arrived packet sent so far.
        let mut latest_sent: Option<u64> = None;
        while !self.stop.load(Ordering::Relaxed) {
            // Take in everything that has arrived (the socket is non-blocking).
            while let Ok((len, _)) = self.rx.recv_from(&mut buf) {
                let now = Instant::now();
                // Both draws for every packet, so a seed always gives the same pattern.
                let lost = self.rng.gen_bool(LOSS);
                let delay = MAX_DELAY.mul_f64(self.rng.gen_range(0.0..=1.0));
                let c = &self.counters;
                c.received.fetch_add(1, Ordering::Relaxed);
                if lock(&self.dest).is_none() {
                    c.unconnected.fetch_add(1, Ordering::Relaxed);
                } else if lost {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                } else if queue.len() >= MAX_HELD {
                    c.overflowed.fetch_add(1, Ordering::Relaxed);
                } else {
                    queue.push(Reverse(Held {
                        due: now + delay,
                        arrival: arrivals,
                        arrived: now,
                        bytes: buf[..len].to_vec(),
                    }));
                    arrivals += 1;
                }
            }
            // Send what is due, earliest first.
            let now = Instant::now();
            while queue.peek().is_some_and(|Reverse(h)| h.due <= now) {
                let Some(Reverse(held)) = queue.pop() else {
                    break;
                };
                let Some(dest) = *lock(&self.dest) else {
                    continue;
                };
                let _ = self.tx.send_to(&held.bytes, dest);
                let c = &self.counters;
                c.forwarded.fetch_add(1, Ordering::Relaxed);
                let hold = now.duration_since(held.arrived);
                c.held_us
                    .fetch_add(hold.as_micros() as u64, Ordering::Relaxed);
                c.max_held_us
                    .fetch_max(hold.as_micros() as u64, Ordering::Relaxed);
                if latest_sent.is_some_and(|latest| latest > held.arrival) {
                    c.reordered.fetch_add(1, Ordering::Relaxed);
                } else {
                    latest_sent = Some(held.arrival);
                }
            }
            let next = queue.peek().map_or(RELAY_TICK, |Reverse(h)| {
                h.due.saturating_duration_since(now)
            });
            std::thread::sleep(next.min(RELAY_TICK));
        }
    }
}

/// What one relay direction did with the packets it received.
#[derive(Default)]
struct HopCounters {
    received: AtomicU64,
    /// Lost on purpose (probability [`LOSS`]).
    dropped: AtomicU64,
    forwarded: AtomicU64,
    /// Forwarded after a packet that arrived later than it.
    reordered: AtomicU64,
    /// Arrived before [`ImpairingRelay::connect`] (the call's first packet or so), discarded.
    unconnected: AtomicU64,
    /// Discarded because [`MAX_HELD`] packets were already held; must stay 0.
    overflowed: AtomicU64,
    /// Total and longest time forwarded packets were held, in microseconds.
    held_us: AtomicU64,
    max_held_us: AtomicU64,
}

impl HopCounters {
    fn snapshot(&self) -> HopTotals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HopTotals {
            received: get(&self.received),
            dropped: get(&self.dropped),
            forwarded: get(&self.forwarded),
            reordered: get(&self.reordered),
            unconnected: get(&self.unconnected),
            overflowed: get(&self.overflowed),
            held_us: get(&self.held_us),
            max_held_us: get(&self.max_held_us),
        }
    }
}

/// A snapshot of [`HopCounters`], or their sum over several relays.
#[derive(Default)]
struct HopTotals {
    received: u64,
    dropped: u64,
    forwarded: u64,
    reordered: u64,
    unconnected: u64,
    overflowed: u64,
    held_us: u64,
    max_held_us: u64,
}

impl HopTotals {
    fn add(&mut self, other: &HopTotals) {
        self.received += other.received;
        self.dropped += other.dropped;
        self.forwarded += other.forwarded;
        self.reordered += other.reordered;
        self.unconnected += other.unconnected;
        self.overflowed += other.overflowed;
        self.held_us += other.held_us;
        self.max_held_us = self.max_held_us.max(other.max_held_us);
    }

    fn mean_hold(&self) -> Duration {
        Duration::from_micros(self.held_us / self.forwarded.max(1))
    }
}

impl std::fmt::Display for HopTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in, {} dropped ({:.1} %), {} forwarded, {} reordered, held {:.1} ms mean / \
             {:.1} ms max, {} before connect, {} overflowed",
            self.received,
            self.dropped,
            100.0 * self.dropped as f64 / (self.dropped + self.forwarded).max(1) as f64,
            self.forwarded,
            self.reordered,
            self.mean_hold().as_secs_f64() * 1e3,
            self.max_held_us as f64 / 1e3,
            self.unconnected,
            self.overflowed
        )
    }
}

/// A network namespace owned by this test: deleted on drop (also when the test fails), after
/// killing whatever still runs in it (an engine left by a child that was killed).
struct Namespace {
    name: String,
}

/// `tc` could not add the netem qdisc because the kernel has none (`CONFIG_NET_SCH_NETEM`
/// unset, no `sch_netem` module); holds what `tc` said.
struct NoNetem(String);

impl Namespace {
    fn create(name: &str) -> Self {
        let uid = output_of(&["id", "-u"]);
        assert_eq!(
            uid.trim(),
            "0",
            "this test creates a network namespace and needs root (CI runs as root); \
             it cannot be skipped without losing the impaired-network check"
        );
        // A namespace left behind by an earlier process with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "delete", name])
            .stderr(Stdio::null())
            .status();
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip` (package iproute2): {e}"));
        assert!(
            out.status.success(),
            "`ip netns add {name}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            name: name.to_string(),
        }
    }

    /// Runs `command` inside the namespace; panics unless it succeeds.
    fn run(&self, command: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec` (package iproute2): {e}"));
        assert!(
            out.status.success(),
            "`{}` in namespace {} failed ({}): {}{}",
            command.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds netem with `params` on the namespace's `lo`. This is also the probe for netem:
    /// `Err` when the kernel has no netem qdisc; any other failure panics.
    fn add_netem_on_lo(&self, params: &[&str]) -> Result<(), NoNetem> {
        let mut command = vec!["tc", "qdisc", "add", "dev", "lo", "root", "netem"];
        command.extend_from_slice(params);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(&command)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec` (package iproute2): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("qdisc kind is unknown") {
            // The kernel has no netem qdisc: it needs CONFIG_NET_SCH_NETEM (the sch_netem
            // module, which stock distribution kernels ship and `tc` loads on demand).
            return Err(NoNetem(stderr.into_owned()));
        }
        assert!(
            out.status.success(),
            "`{}` in namespace {} failed ({}): {stderr}",
            command.join(" "),
            self.name,
            out.status,
        );
        Ok(())
    }

    fn kill_remaining_processes(&self) {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.kill_remaining_processes();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Waits for `child` at most `timeout`, killing it (and everything in `namespace`) past that.
/// Returns its exit status (None on timeout) and what it wrote.
fn wait_with_timeout(
    mut child: std::process::Child,
    timeout: Duration,
    namespace: &Namespace,
) -> (Option<ExitStatus>, String, String) {
    let stdout = read_all_in_background(child.stdout.take());
    let stderr = read_all_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("poll the child test process") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                namespace.kill_remaining_processes();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let text = |h: std::thread::JoinHandle<String>| h.join().unwrap_or_default();
    (status, text(stdout), text(stderr))
}

fn read_all_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut raw = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut raw);
        }
        String::from_utf8_lossy(&raw).into_owned()
    })
}

/// Standard output of a host command that must succeed.
fn output_of(command: &[&str]) -> String {
    let out = Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", command.join(" ")));
    assert!(
        out.status.success(),
        "`{}` failed ({}): {}",
        command.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
