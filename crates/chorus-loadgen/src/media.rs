//! The generator's media thread: one loop for every participant, woken at absolute 20 ms
//! deadlines (like an engine's media thread), that drains each participant's non-blocking
//! socket and sends one pre-encoded packet per participant per tick. Lateness and skipped ticks
//! of the generator itself are counted, so a run can tell whether the generator kept up.
//!
//! The probe listener is the exception: its socket is read by a dedicated thread with a
//! blocking `recv`, so the receive time of the marker tone is exact instead of quantised to the
//! generator's tick. The onset is timed to the sample: a packet's samples count as heard from
//! its arrival on, one sample period apart, and the tone's first sample is found inside the
//! frame where it starts ([`tone_onset`]), which after an Opus encode is mid-frame.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audio::{tone_onset, Codec, Payloads, ProbeDecoder};
use crate::cpu;

pub const TICK: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Streams speech; `probe` marks the probe room's marker talker.
    Talker { offset: usize, probe: bool },
    /// Sends silence; `probe` marks the probe room's timing listener.
    Listener { probe: bool },
}

/// A connected participant handed from the signalling side to the media thread.
pub struct NewMember {
    pub socket: UdpSocket,
    pub remote: SocketAddr,
    pub payload_type: u8,
    pub role: Role,
}

pub enum Command {
    Add(NewMember),
    /// Measure from `start` to `end`; the result comes back on `reply`.
    Measure {
        start: Instant,
        end: Instant,
        reply: Sender<WindowStats>,
    },
    Stop,
}

/// What the probe talker and the probe listener share.
pub struct Probe {
    base: Instant,
    /// Nanoseconds since `base` when the latest burst's first packet was sent; 0 = none yet.
    burst_sent_ns: AtomicU64,
    pub rx: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    bursts_in_window: AtomicU64,
    unmatched_onsets: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// Ticks between burst starts, and burst length in ticks.
    pub interval_ticks: u64,
    pub burst_ticks: u64,
}

impl Probe {
    pub fn new(interval_ticks: u64, burst_ticks: u64) -> Probe {
        Probe {
            base: Instant::now(),
            burst_sent_ns: AtomicU64::new(0),
            rx: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            bursts_in_window: AtomicU64::new(0),
            unmatched_onsets: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::new()),
            interval_ticks,
            burst_ticks,
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.base).as_nanos() as u64).max(1)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Reads the probe listener's socket until [`Probe::stop`]: counts packets, decodes them,
    /// and times the onset of each marker burst against the moment it was sent. The burst's
    /// first packet starts with the tone, so the tone's first sample leaves when that packet
    /// does; it is heard when the packet carrying it arrives, plus its place in that packet.
    pub fn listen(self: Arc<Self>, socket: UdpSocket, codec: Codec) -> anyhow::Result<()> {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut decoder = ProbeDecoder::new(codec)?;
        let mut buf = [0u8; 2048];
        let mut in_tone = false;
        // The previous packet's samples and arrival: a tone found dominant in one frame may
        // have started in the one before.
        let mut previous: Vec<i16> = Vec::new();
        let mut previous_ns = 0u64;
        let mut joined: Vec<i16> = Vec::new();
        let mut last_matched = 0u64;
        let mut matched_at = 0u64;
        let rematch_ns = (self.burst_ticks * 20 + 60) * 1_000_000;
        while !self.stop.load(Ordering::Relaxed) {
            let len = match socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            };
            let now_ns = self.ns(Instant::now());
            self.rx.fetch_add(1, Ordering::Relaxed);
            let Some((pt, payload)) = rtp_payload(&buf[..len]) else {
                continue;
            };
            let Some(verdict) = decoder.detect(pt, payload) else {
                continue;
            };
            let starts = verdict.is_marker() && !in_tone;
            in_tone = verdict.is_marker();
            let heard_ns = if starts {
                self.onset_ns(&decoder, (&previous, previous_ns), now_ns, &mut joined)
            } else {
                now_ns
            };
            previous.clear();
            previous.extend_from_slice(decoder.pcm());
            previous_ns = now_ns;
            if !starts {
                continue;
            }
            let sent = self.burst_sent_ns.load(Ordering::Acquire);
            let fresh = sent != 0 && sent != last_matched && now_ns > sent;
            if !fresh && sent == last_matched && now_ns - matched_at < rematch_ns {
                // The same burst again after a frame where the other talker masked the tone.
                continue;
            }
            if fresh && now_ns - sent < 2_000_000_000 {
                last_matched = sent;
                matched_at = now_ns;
                if self.measuring.load(Ordering::Relaxed) {
                    let mut l = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
                    l.push(heard_ns.saturating_sub(sent) / 1_000);
                }
            } else if self.measuring.load(Ordering::Relaxed) {
                self.unmatched_onsets.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// When the first sample of the tone just found dominant in `decoder`'s frame was heard:
    /// the arrival of the packet it is in plus its place there. The previous packet is searched
    /// too when it came just before (within two frames). An onset that would have been heard
    /// before the burst left is not one: the dominant frame's arrival is used instead.
    fn onset_ns(
        &self,
        decoder: &ProbeDecoder,
        (previous, previous_ns): (&[i16], u64),
        now_ns: u64,
        joined: &mut Vec<i16>,
    ) -> u64 {
        let rate = decoder.rate();
        let frame = decoder.pcm();
        let frame_ns = frame.len() as f64 * 1e9 / rate;
        let adjacent =
            !previous.is_empty() && now_ns.saturating_sub(previous_ns) as f64 <= 2.0 * frame_ns;
        joined.clear();
        if adjacent {
            joined.extend_from_slice(previous);
        }
        let before = joined.len();
        joined.extend_from_slice(frame);
        let onset = tone_onset(joined, rate);
        let (at_ns, offset) = if onset < before {
            (previous_ns, onset)
        } else {
            (now_ns, onset - before)
        };
        let heard = at_ns + (offset as f64 * 1e9 / rate) as u64;
        if heard > self.burst_sent_ns.load(Ordering::Acquire) {
            heard
        } else {
            now_ns
        }
    }
}

/// The RTP payload type and payload of a packet (RFC 3550 §5.1), skipping CSRCs and a header
/// extension.
fn rtp_payload(packet: &[u8]) -> Option<(u8, &[u8])> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(packet[0] & 0x0F);
    let mut at = 12 + 4 * cc;
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(at + 2..at + 4)?;
        at += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    Some((packet[1] & 0x7F, packet.get(at..end)?))
}

struct Member {
    socket: UdpSocket,
    remote: SocketAddr,
    payload_type: u8,
    role: Role,
    ssrc: u32,
    seq: u16,
    ts: u32,
    sent: u64,
    rx: u64,
    rx_at_start: Option<u64>,
    send_errors: u64,
}

impl Member {
    fn external_rx(&self) -> bool {
        self.role == Role::Listener { probe: true }
    }
}

/// One measurement window, as the media thread saw it.
#[derive(Clone, Debug, Default)]
pub struct WindowStats {
    pub members: usize,
    pub window_s: f64,
    pub engine_cpu_s: Option<f64>,
    /// Busy time of core 0 (the engine's core) in the window, all processes.
    pub core0_busy_s: Option<f64>,
    /// Time the hypervisor took from core 0 in the window (`steal`).
    pub core0_steal_s: Option<f64>,
    pub gen_cpu_s: Option<f64>,
    pub expected: u64,
    pub received: u64,
    /// Members that received nothing in the window.
    pub deaf_members: usize,
    pub latencies_ms: Vec<f64>,
    pub bursts: u64,
    pub unmatched_onsets: u64,
    pub gen_late_p99_ms: f64,
    pub gen_late_max_ms: f64,
    pub gen_skipped_ticks: u64,
    pub send_errors: u64,
}

struct Window {
    start: Instant,
    end: Instant,
    reply: Sender<WindowStats>,
    began: Option<Began>,
}

struct Began {
    at: Instant,
    engine_ticks: Option<u64>,
    core0_ticks: Option<cpu::CoreTicks>,
    gen_ticks: Option<u64>,
    lateness_us: Vec<u32>,
    skipped: u64,
    send_errors: u64,
}

pub struct MediaThread {
    pub commands: Receiver<Command>,
    pub payloads: Arc<Payloads>,
    pub probe: Arc<Probe>,
    pub engine_pid: Option<u32>,
    pub clk_tck: f64,
}

impl MediaThread {
    pub fn run(self) {
        let MediaThread {
            commands,
            payloads,
            probe,
            engine_pid,
            clk_tck,
        } = self;
        let mut members: Vec<Member> = Vec::with_capacity(4096);
        let mut buf = [0u8; 2048];
        let mut out = [0u8; 1500];
        let mut window: Option<Window> = None;
        let step = payloads.codec.frame_samples() as u32;
        let origin = Instant::now();
        let mut tick: u64 = 0;
        let mut skipped_total: u64 = 0;
        let mut send_errors_total: u64 = 0;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
        loop {
            let deadline = origin + TICK * tick as u32;
            let now = Instant::now();
            if now < deadline {
                std::thread::sleep(deadline - now);
            }
            let woke = Instant::now();
            let late = woke.saturating_duration_since(deadline);
            if late >= TICK {
                // Stalled: skip the ticks we missed rather than bursting them out.
                let missed = (late.as_micros() / TICK.as_micros()) as u64;
                tick += missed;
                skipped_total += missed;
            }
            if let Some(Window { began: Some(b), .. }) = &mut window {
                b.lateness_us
                    .push(late.as_micros().min(u128::from(u32::MAX)) as u32);
            }

            loop {
                match commands.try_recv() {
                    Ok(Command::Add(m)) => {
                        rng = xorshift(rng);
                        members.push(Member {
                            socket: m.socket,
                            remote: m.remote,
                            payload_type: m.payload_type,
                            role: m.role,
                            ssrc: rng as u32,
                            seq: (rng >> 32) as u16,
                            ts: (rng >> 16) as u32,
                            sent: 0,
                            rx: 0,
                            rx_at_start: None,
                            send_errors: 0,
                        });
                    }
                    Ok(Command::Measure { start, end, reply }) => {
                        window = Some(Window {
                            start,
                            end,
                            reply,
                            began: None,
                        })
                    }
                    Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => break,
                }
            }

            for m in members.iter_mut().filter(|m| !m.external_rx()) {
                loop {
                    match m.socket.recv(&mut buf) {
                        Ok(_) => m.rx += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        // ICMP port unreachable from an earlier send: keep going.
                        Err(_) => break,
                    }
                }
            }

            let measuring = probe.measuring.load(Ordering::Relaxed);
            for m in &mut members {
                let payload: &[u8] = match m.role {
                    Role::Listener { .. } => &payloads.silence,
                    Role::Talker { offset, probe: p } => {
                        let phase = m.sent % probe.interval_ticks;
                        if p && phase < probe.burst_ticks {
                            &payloads.tone[phase as usize % payloads.tone.len()]
                        } else {
                            let i = (m.sent as usize + offset) % payloads.speech.len();
                            &payloads.speech[i]
                        }
                    }
                };
                out[0] = 0x80;
                out[1] = m.payload_type | if m.sent == 0 { 0x80 } else { 0 };
                out[2..4].copy_from_slice(&m.seq.to_be_bytes());
                out[4..8].copy_from_slice(&m.ts.to_be_bytes());
                out[8..12].copy_from_slice(&m.ssrc.to_be_bytes());
                out[12..12 + payload.len()].copy_from_slice(payload);
                if let Role::Talker { probe: true, .. } = m.role {
                    if m.sent % probe.interval_ticks == 0 {
                        probe
                            .burst_sent_ns
                            .store(probe.ns(Instant::now()), Ordering::Release);
                        if measuring {
                            probe.bursts_in_window.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if m.socket
                    .send_to(&out[..12 + payload.len()], m.remote)
                    .is_err()
                {
                    m.send_errors += 1;
                    send_errors_total += 1;
                }
                m.sent += 1;
                m.seq = m.seq.wrapping_add(1);
                m.ts = m.ts.wrapping_add(step);
            }

            if let Some(w) = &mut window {
                let now = Instant::now();
                if w.began.is_none() && now >= w.start {
                    for m in &mut members {
                        m.rx_at_start = Some(member_rx(m, &probe));
                    }
                    probe.measuring.store(true, Ordering::Relaxed);
                    let ticks =
                        (w.end.saturating_duration_since(w.start).as_millis() / 20) as usize;
                    w.began = Some(Began {
                        at: now,
                        engine_ticks: engine_pid.and_then(|p| cpu::process_ticks(p).ok()),
                        core0_ticks: cpu::core_ticks(0),
                        gen_ticks: cpu::process_ticks(std::process::id()).ok(),
                        lateness_us: Vec::with_capacity(ticks + 64),
                        skipped: skipped_total,
                        send_errors: send_errors_total,
                    });
                } else if now >= w.end {
                    if let Some(b) = w.began.take() {
                        let b0 = b.core0_ticks;
                        let engine_end = engine_pid.and_then(|p| cpu::process_ticks(p).ok());
                        let gen_end = cpu::process_ticks(std::process::id()).ok();
                        let core0_end = cpu::core_ticks(0);
                        probe.measuring.store(false, Ordering::Relaxed);
                        let mut stats = finish(
                            &members,
                            &probe,
                            b,
                            now,
                            engine_end,
                            gen_end,
                            clk_tck,
                            skipped_total,
                            send_errors_total,
                        );
                        let core0 = b0.zip(core0_end).map(|(a, e)| e.since(a));
                        stats.core0_busy_s = core0.map(|t| t.busy as f64 / clk_tck);
                        stats.core0_steal_s = core0.map(|t| t.steal as f64 / clk_tck);
                        let _ = w.reply.send(stats);
                        window = None;
                    }
                }
            }
            tick += 1;
        }
    }
}

fn member_rx(m: &Member, probe: &Probe) -> u64 {
    if m.external_rx() {
        probe.rx.load(Ordering::Relaxed)
    } else {
        m.rx
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    members: &[Member],
    probe: &Probe,
    b: Began,
    now: Instant,
    engine_end: Option<u64>,
    gen_end: Option<u64>,
    clk_tck: f64,
    skipped_total: u64,
    send_errors_total: u64,
) -> WindowStats {
    let window_s = now.duration_since(b.at).as_secs_f64();
    let per_member = (window_s * 50.0).round() as u64;
    let mut stats = WindowStats {
        window_s,
        ..WindowStats::default()
    };
    for m in members {
        let Some(start) = m.rx_at_start else { continue };
        let got = member_rx(m, probe).saturating_sub(start);
        stats.members += 1;
        stats.expected += per_member;
        stats.received += got;
        if got == 0 {
            stats.deaf_members += 1;
        }
    }
    stats.engine_cpu_s = match (b.engine_ticks, engine_end) {
        (Some(a), Some(e)) => Some(e.saturating_sub(a) as f64 / clk_tck),
        _ => None,
    };
    stats.gen_cpu_s = match (b.gen_ticks, gen_end) {
        (Some(a), Some(e)) => Some(e.saturating_sub(a) as f64 / clk_tck),
        _ => None,
    };
    let mut lat = probe
        .latencies_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .map(|us| us as f64 / 1_000.0)
        .collect::<Vec<_>>();
    lat.sort_by(f64::total_cmp);
    stats.latencies_ms = lat;
    stats.bursts = probe.bursts_in_window.swap(0, Ordering::Relaxed);
    stats.unmatched_onsets = probe.unmatched_onsets.swap(0, Ordering::Relaxed);
    let mut late = b.lateness_us;
    late.sort_unstable();
    stats.gen_late_p99_ms = percentile_u32(&late, 0.99) / 1_000.0;
    stats.gen_late_max_ms = late.last().copied().map_or(0.0, |v| f64::from(v) / 1_000.0);
    stats.gen_skipped_ticks = skipped_total - b.skipped;
    stats.send_errors = send_errors_total - b.send_errors;
    stats
}

fn percentile_u32(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i])
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_payload_skips_csrcs_and_extension() {
        let mut p = vec![0x80 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        p.extend_from_slice(&[0xAA, 0xBB]);
        assert_eq!(rtp_payload(&p), Some((0, &[0xAA, 0xBB][..])));
        assert_eq!(rtp_payload(&p[..5]), None);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
