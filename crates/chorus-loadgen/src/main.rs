//! `chorus-loadgen`: an end-to-end load harness for conference engines. It fills rooms with
//! talkers (real speech) and listeners (silence, sent continuously like real phones), measures
//! the engine's CPU per participant-second from `/proc/<pid>/stat` over a steady window, the
//! loss each member sees, and the mixer-added latency of a marker tone through one probe room;
//! then prints one summary table. The same load runs against Chorus (SIP/RTP, a tiny UAC) and
//! Janus AudioBridge (HTTP API, plain-RTP participants), so the two can be compared in one run.
//!
//! All media for all participants is sent by one thread woken at absolute 20 ms deadlines, so
//! the generator stays cheap (one core drives thousands of participants). Every loop is bounded
//! in count and time, and only 127.0.0.1 is ever addressed.

mod audio;
mod cpu;
mod http;
mod janus;
mod media;
mod report;
mod sip;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use audio::{Codec, Payloads};
use media::{Command, MediaThread, NewMember, Probe, Role};
use report::Row;

const SPEECH: &str = "The quick brown fox jumps over the lazy dog. \
    A conference bridge mixes every voice in the room, and each member hears everyone but \
    themselves. Please hold while we measure how much work that takes. \
    Seven, eight, nine, ten. Thank you for calling, goodbye.";

#[derive(Debug, Parser)]
#[command(
    version,
    about = "End-to-end load harness for Chorus and Janus AudioBridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Load Chorus over SIP/RTP.
    Chorus {
        /// The engine's SIP address (UDP).
        #[arg(long, value_name = "IP:PORT")]
        sip: SocketAddr,
        /// Engine Prometheus endpoint to read tick lateness/overruns from, if it has one.
        #[arg(long, value_name = "URL")]
        metrics_url: Option<String>,
        #[command(flatten)]
        load: Load,
    },
    /// Load Janus AudioBridge through its HTTP API with plain-RTP participants.
    Janus {
        /// Janus' HTTP API base.
        #[arg(
            long,
            value_name = "URL",
            default_value = "http://127.0.0.1:8088/janus"
        )]
        janus_http: String,
        #[command(flatten)]
        load: Load,
    },
    /// Print the combined table of result files written with --results.
    Table { files: Vec<PathBuf> },
}

#[derive(Debug, Args)]
struct Load {
    /// Rooms to fill.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Talkers per room (stream speech); the other members send silence.
    #[arg(long, default_value_t = 2)]
    talkers: usize,
    #[arg(long, value_enum, default_value_t = Codec::Pcmu)]
    codec: Codec,
    /// Length of the measured steady window, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds between the last participant joining and the window start.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// The engine's process id, for its CPU time.
    #[arg(long)]
    engine_pid: Option<u32>,
    /// Time a marker tone through room 0 (talker 0 → the room's last member).
    #[arg(long)]
    probe: bool,
    /// Time between marker bursts, ms (multiple of 20).
    #[arg(long, default_value_t = 500)]
    probe_interval_ms: u64,
    /// Marker burst length, ms (multiple of 20).
    #[arg(long, default_value_t = 60)]
    burst_ms: u64,
    /// Call setup rate (calls or joins per second).
    #[arg(long, default_value_t = 50.0)]
    cps: f64,
    /// Append this run's row (one JSON line) to FILE.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// Engine name in the table (default: the subcommand).
    #[arg(long)]
    label: Option<String>,
}

impl Load {
    fn validate(&self) -> anyhow::Result<()> {
        if self.rooms == 0 || self.members < 2 || self.talkers > self.members {
            bail!("need rooms >= 1, members >= 2 and talkers <= members");
        }
        if self.rooms * self.members > 20_000 {
            bail!("at most 20,000 participants");
        }
        if !(1.0..=3_600.0).contains(&self.duration) || !(0.0..=600.0).contains(&self.warmup) {
            bail!("duration must be 1..3600 s and warmup 0..600 s");
        }
        if !(1.0..=1_000.0).contains(&self.cps) {
            bail!("cps must be 1..1000");
        }
        if self.probe_interval_ms < 100
            || self.burst_ms < 20
            || self.burst_ms * 2 > self.probe_interval_ms
        {
            bail!("probe interval must be >= 100 ms and at least twice the burst length");
        }
        Ok(())
    }

    fn role(&self, room: usize, member: usize) -> Role {
        let probe_room = self.probe && room == 0;
        if member < self.talkers {
            Role::Talker {
                offset: (room * 7919 + member * 3301) % 100_000,
                probe: probe_room && member == 0,
            }
        } else {
            Role::Listener {
                probe: probe_room && member == self.members - 1,
            }
        }
    }
}

/// What runs the load: the media thread and (with --probe) the probe listener thread.
struct Harness {
    commands: Sender<Command>,
    media: std::thread::JoinHandle<()>,
    probe: Arc<Probe>,
    probe_thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    codec: Codec,
}

impl Harness {
    fn start(load: &Load, payloads: Payloads) -> anyhow::Result<Harness> {
        let probe = Arc::new(Probe::new(
            (load.probe_interval_ms / 20).max(1),
            (load.burst_ms / 20).max(1),
        ));
        let (commands, rx) = mpsc::channel();
        let codec = payloads.codec;
        let thread = MediaThread {
            commands: rx,
            payloads: Arc::new(payloads),
            probe: Arc::clone(&probe),
            engine_pid: load.engine_pid,
            clk_tck: cpu::clk_tck(),
        };
        let media = std::thread::Builder::new()
            .name("loadgen-media".into())
            .spawn(move || thread.run())
            .context("spawning the media thread")?;
        Ok(Harness {
            commands,
            media,
            probe,
            probe_thread: None,
            codec,
        })
    }

    fn add(
        &mut self,
        socket: UdpSocket,
        remote: SocketAddr,
        payload_type: u8,
        role: Role,
    ) -> anyhow::Result<()> {
        // Only loopback is ever a target of this harness, whatever an engine's answer says.
        if !remote.ip().is_loopback() {
            bail!("refusing to send media to {remote}: not a loopback address (configure the engine to use 127.0.0.1)");
        }
        if role == (Role::Listener { probe: true }) {
            let listen = socket.try_clone()?;
            let probe = Arc::clone(&self.probe);
            let codec = self.codec;
            self.probe_thread = Some(
                std::thread::Builder::new()
                    .name("loadgen-probe".into())
                    .spawn(move || probe.listen(listen, codec))?,
            );
        } else {
            socket.set_nonblocking(true)?;
        }
        self.commands
            .send(Command::Add(NewMember {
                socket,
                remote,
                payload_type,
                role,
            }))
            .ok()
            .context("media thread gone")
    }

    fn stop(self) -> anyhow::Result<()> {
        let _ = self.commands.send(Command::Stop);
        self.probe.stop();
        let _ = self.media.join();
        if let Some(t) = self.probe_thread {
            match t.join() {
                Ok(r) => r.context("probe listener")?,
                Err(_) => bail!("probe listener panicked"),
            }
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Table { files } => {
            let mut rows = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    rows.push(Row::from_json(&serde_json::from_str(line)?));
                }
            }
            print!("{}", report::table(&rows));
            Ok(())
        }
        Cmd::Chorus {
            sip,
            metrics_url,
            load,
        } => {
            let metrics = metrics_url.as_deref().map(http::Url::parse).transpose()?;
            run("chorus", &load, |h, load| {
                chorus_signalling(h, load, sip, metrics.as_ref())
            })
        }
        Cmd::Janus { janus_http, load } => run("janus", &load, |h, load| {
            janus_signalling(h, load, &janus_http)
        }),
    }
}

/// Engine-specific signalling: joins every participant (handing each to the harness), runs the
/// window through `measure`, then hangs up.
trait Session {
    /// Keeps signalling alive for about `wait` (answers requests, retransmits).
    fn idle(&mut self, wait: Duration);
    fn tick_metrics(&mut self) -> Option<http::TickMetrics> {
        None
    }
    fn hangup(&mut self) -> anyhow::Result<()>;
    fn joined(&self) -> usize;
    fn failed(&self) -> usize;
}

fn run<F, S>(engine: &str, load: &Load, signalling: F) -> anyhow::Result<()>
where
    F: FnOnce(&mut Harness, &Load) -> anyhow::Result<S>,
    S: Session,
{
    load.validate()?;
    let dir = std::env::temp_dir().join(format!("chorus-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let payloads = Payloads::prepare(
        &dir,
        load.codec,
        SPEECH,
        (load.burst_ms / 20).max(1) as usize,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let payloads = payloads?;
    eprintln!(
        "loadgen: {} speech frames ({:.1} s) of {} prepared; joining {} rooms x {} ({} talkers) on {engine}",
        payloads.speech.len(),
        payloads.speech.len() as f64 / 50.0,
        load.codec.name(),
        load.rooms,
        load.members,
        load.talkers
    );
    let mut harness = Harness::start(load, payloads)?;
    let outcome = signalling(&mut harness, load).and_then(|mut session| {
        let result = measure(&mut harness, &mut session, load);
        let hangup = session.hangup();
        let row = result?;
        hangup?;
        Ok(row)
    });
    let stopped = harness.stop();
    let mut row = outcome?;
    stopped?;
    row.engine = load.label.clone().unwrap_or_else(|| engine.to_owned());
    if let Some(path) = &load.results {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", row.to_json())?;
    }
    print!("{}", report::table(std::slice::from_ref(&row)));
    Ok(())
}

fn measure<S: Session>(harness: &mut Harness, session: &mut S, load: &Load) -> anyhow::Result<Row> {
    let joined = session.joined();
    if joined == 0 {
        bail!("no participant could join");
    }
    eprintln!(
        "loadgen: {joined} joined ({} failed); warming up {:.0} s, measuring {:.0} s",
        session.failed(),
        load.warmup,
        load.duration
    );
    let start = Instant::now() + Duration::from_secs_f64(load.warmup);
    let end = start + Duration::from_secs_f64(load.duration);
    let (reply, results) = mpsc::channel();
    harness
        .commands
        .send(Command::Measure { start, end, reply })
        .ok()
        .context("media thread gone")?;
    let mut before: Option<http::TickMetrics> = None;
    let mut after: Option<http::TickMetrics> = None;
    let give_up = end + Duration::from_secs(10);
    let stats = loop {
        if let Ok(s) = results.try_recv() {
            break s;
        }
        let now = Instant::now();
        if now > give_up {
            bail!("the media thread never finished the window");
        }
        if before.is_none() && now >= start {
            before = session
                .tick_metrics()
                .or(Some(http::TickMetrics::default()));
        }
        if after.is_none() && now >= end {
            after = session
                .tick_metrics()
                .or(Some(http::TickMetrics::default()));
        }
        session.idle(Duration::from_millis(10));
    };
    // The media thread hands its figures over at `end`, usually before the loop above got
    // round to the closing scrape: take it now, or the engine's tick metrics would read n/a.
    if after.is_none() {
        after = session.tick_metrics();
    }
    let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
    if stats.gen_skipped_ticks > 0 || stats.send_errors > 0 {
        eprintln!(
            "loadgen: WARNING the generator skipped {} ticks and had {} send errors: it did not keep up",
            stats.gen_skipped_ticks, stats.send_errors
        );
    }
    if let (Some(core0), Some(engine)) = (stats.core0_busy_s, stats.engine_cpu_s) {
        let other = (core0 - engine).max(0.0) / stats.window_s * 100.0;
        let stolen = stats.core0_steal_s.unwrap_or(0.0) / stats.window_s * 100.0;
        let mut warnings = String::new();
        if other > 5.0 {
            warnings.push_str(" — WARNING other processes competed with the engine");
        }
        if stolen > 1.0 {
            // A vCPU the hypervisor does not run stalls every thread on it, real-time or not:
            // tick lateness and overruns in such a window are partly the host's.
            warnings.push_str(" — WARNING the hypervisor took time from the engine's core");
        }
        eprintln!(
            // /proc/stat samples cores at the tick, so a light engine's short wake-ups are
            // under-counted there: `other` is a lower bound, good for spotting real contention.
            "loadgen: core 0 (engine's core) busy {:.1} % of the window, other processes at least \
             {other:.1} %, stolen by the hypervisor {stolen:.1} %{warnings}",
            core0 / stats.window_s * 100.0,
        );
    }
    if !stats.latencies_ms.is_empty() {
        let q = |p| media::percentile(&stats.latencies_ms, p).unwrap_or(0.0);
        eprintln!(
            "loadgen: marker latency ms: min {:.1} p10 {:.1} p50 {:.1} p90 {:.1} max {:.1} ({} bursts)",
            q(0.0),
            q(0.1),
            q(0.5),
            q(0.9),
            q(1.0),
            stats.latencies_ms.len()
        );
    }
    if let Some((mean_ms, samples)) = after.playout_mean_ms_since(&before) {
        // What the engine's jitter buffers hold back: part of the marker latency above.
        let glitches = after
            .playout_glitches_since(&before)
            .map(|(u, t)| format!("; underruns {u:.0}, frames trimmed {t:.0}"))
            .unwrap_or_default();
        eprintln!(
            "loadgen: engine playout delay (jitter-buffer target) mean {mean_ms:.1} ms over \
             {samples:.0} leg-seconds{glitches}"
        );
    }
    if stats.unmatched_onsets > 0 {
        eprintln!(
            "loadgen: {} marker onsets matched no burst",
            stats.unmatched_onsets
        );
    }
    let loss = if stats.expected > 0 {
        (1.0 - stats.received as f64 / stats.expected as f64) * 100.0
    } else {
        100.0
    };
    Ok(Row {
        engine: String::new(),
        codec: load.codec.name().to_owned(),
        rooms: load.rooms,
        members: load.members,
        participants: stats.members,
        failed_calls: session.failed(),
        window_s: stats.window_s,
        engine_cpu_s: stats.engine_cpu_s,
        loss_pct: loss,
        deaf_members: stats.deaf_members,
        lat_p50_ms: media::percentile(&stats.latencies_ms, 0.50),
        lat_p99_ms: media::percentile(&stats.latencies_ms, 0.99),
        lat_n: stats.latencies_ms.len(),
        bursts: stats.bursts,
        tick_late_p99_ms: after.late_p99_ms_since(&before),
        tick_overruns: after.overruns_since(&before),
        gen_cpu_s: stats.gen_cpu_s,
        gen_late_p99_ms: stats.gen_late_p99_ms,
        gen_skipped_ticks: stats.gen_skipped_ticks,
    })
}

struct ChorusSession {
    uac: sip::Uac,
    metrics: Option<http::Url>,
    cps: f64,
}

fn chorus_signalling(
    harness: &mut Harness,
    load: &Load,
    server: SocketAddr,
    metrics: Option<&http::Url>,
) -> anyhow::Result<ChorusSession> {
    let run = std::process::id() % 10_000;
    let mut rooms = Vec::with_capacity(load.rooms * load.members);
    let mut roles = Vec::with_capacity(load.rooms * load.members);
    for r in 0..load.rooms {
        for m in 0..load.members {
            rooms.push(format!("lg{run}r{r}"));
            roles.push(load.role(r, m));
        }
    }
    let total = rooms.len();
    let mut uac = sip::Uac::new(server, load.codec, rooms)?;
    let gap = Duration::from_secs_f64(1.0 / load.cps);
    let began = Instant::now();
    let deadline = began + gap * total as u32 + Duration::from_secs(40);
    let mut next = 0usize;
    loop {
        let now = Instant::now();
        while next < total && now >= began + gap * next as u32 {
            uac.invite(next)?;
            next += 1;
        }
        for e in uac.poll(Duration::from_millis(2)) {
            harness.add(e.socket, e.remote, e.payload_type, roles[e.index])?;
        }
        let pending = uac.count(|s| matches!(s, sip::CallState::Idle | sip::CallState::Inviting));
        if next == total && pending == 0 {
            break;
        }
        if now > deadline {
            eprintln!("loadgen: gave up waiting for {pending} calls");
            break;
        }
    }
    for (i, c) in uac.calls.iter().enumerate() {
        if let sip::CallState::Failed(why) = &c.state {
            eprintln!("loadgen: call {i} to {} failed: {why}", c.room);
        }
    }
    Ok(ChorusSession {
        uac,
        metrics: metrics.cloned(),
        cps: load.cps,
    })
}

impl Session for ChorusSession {
    fn idle(&mut self, wait: Duration) {
        // Nothing is established mid-window; anything the engine sends is answered here.
        let _ = self.uac.poll(wait);
    }

    fn tick_metrics(&mut self) -> Option<http::TickMetrics> {
        let url = self.metrics.as_ref()?;
        match http::TickMetrics::scrape(url) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("loadgen: metrics scrape failed: {e:#}");
                None
            }
        }
    }

    fn hangup(&mut self) -> anyhow::Result<()> {
        let remote = self.uac.count(|s| *s == sip::CallState::RemoteBye);
        if remote > 0 {
            eprintln!("loadgen: WARNING the engine hung up {remote} calls during the run");
        }
        let gap = Duration::from_secs_f64(1.0 / (self.cps * 2.0));
        let began = Instant::now();
        let total = self.uac.calls.len();
        let deadline = began + gap * total as u32 + Duration::from_secs(20);
        let mut next = 0usize;
        loop {
            let now = Instant::now();
            while next < total && now >= began + gap * next as u32 {
                self.uac.bye(next)?;
                next += 1;
            }
            let _ = self.uac.poll(Duration::from_millis(2));
            let open = self
                .uac
                .count(|s| matches!(s, sip::CallState::Byeing | sip::CallState::Established));
            if next == total && open == 0 {
                break;
            }
            if now > deadline {
                eprintln!("loadgen: {open} BYEs unanswered");
                break;
            }
        }
        let failed = self
            .uac
            .count(|s| matches!(s, sip::CallState::Failed(w) if w.contains("BYE")));
        if failed > 0 {
            eprintln!("loadgen: {failed} BYEs got no final response");
        }
        Ok(())
    }

    fn joined(&self) -> usize {
        self.uac
            .calls
            .iter()
            .filter(|c| c.remote_rtp.is_some())
            .count()
    }

    fn failed(&self) -> usize {
        self.uac
            .calls
            .iter()
            .filter(|c| c.remote_rtp.is_none())
            .count()
    }
}

struct JanusSession {
    janus: janus::Janus,
    joined: usize,
    failed: usize,
}

fn janus_signalling(
    harness: &mut Harness,
    load: &Load,
    base: &str,
) -> anyhow::Result<JanusSession> {
    let mut janus = janus::Janus::connect(base).with_context(|| format!("Janus at {base}"))?;
    let first_room = 7_000_000 + u64::from(std::process::id() % 1_000) * 1_000;
    let (mut joined, mut failed) = (0usize, 0usize);
    let gap = Duration::from_secs_f64(1.0 / load.cps);
    let began = Instant::now();
    let mut n = 0u32;
    let mut join_all = || -> anyhow::Result<()> {
        for r in 0..load.rooms {
            let room = first_room + r as u64;
            janus.create_room(room, load.codec)?;
            for m in 0..load.members {
                let due = began + gap * n;
                n += 1;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                let ours = socket.local_addr()?;
                match janus.join(room, &format!("r{r}m{m}"), load.codec, ours) {
                    Ok((theirs, pt)) => {
                        harness.add(socket, theirs, pt, load.role(r, m))?;
                        joined += 1;
                    }
                    Err(e) => {
                        eprintln!("loadgen: janus join r{r}m{m} failed: {e:#}");
                        failed += 1;
                        if joined == 0 && failed >= 3 {
                            bail!("Janus refuses every join");
                        }
                    }
                }
            }
        }
        Ok(())
    };
    let result = join_all();
    if let Err(e) = result {
        let _ = janus.teardown();
        return Err(e);
    }
    Ok(JanusSession {
        janus,
        joined,
        failed,
    })
}

impl Session for JanusSession {
    fn idle(&mut self, wait: Duration) {
        std::thread::sleep(wait);
    }

    fn hangup(&mut self) -> anyhow::Result<()> {
        self.janus.teardown()
    }

    fn joined(&self) -> usize {
        self.joined
    }

    fn failed(&self) -> usize {
        self.failed
    }
}
