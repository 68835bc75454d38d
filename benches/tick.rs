//! Cost of one 20 ms media-thread tick for one room of N members with K talkers, PCMU and
//! Opus 48 kHz (complexity 5), with the *naive* strategy (one encode per member, what
//! FreeSWITCH does; kept as the baseline) and the *shared* one (one encode per distinct mix;
//! with exactly two talkers, each gets the other's packet forwarded without an encode).
//! Each iteration injects one packet per member (parse + jitter buffer, no syscalls) and runs
//! the tick: decode, talker selection, mix, encode, RTP packetisation. Listeners send silence,
//! the same bytes for all of them, so they share one set of packets, stamped with each one's
//! sequence number, timestamp and SSRC just before it is injected: like the engine's receive
//! buffers, which the kernel has just written when a packet is parsed, the datagram is in
//! cache. (Fifty cold packets per member would measure the harness's memory, not the tick.)
//!
//! `cargo bench --bench tick` (add a filter such as `pcmu/shared` to run a subset). Encodes and
//! decodes per tick are printed for every case.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_media::g711::Law;
use chorus_media::opus::{OpusConfig, OpusEncoder};
use chorus_media::rtp::RtpHeader;
use chorus_media::tone::Sine;
use chorus_mixer::{Codec, LegId, LegSpec, ManualThread, MixerConfig, RoomId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

struct Member {
    datagrams: Vec<Vec<u8>>,
}

fn member(talker: Option<f64>, opus: bool, ssrc: u32) -> Member {
    let (rate, pt, frame) = if opus {
        (48_000, 111, 960)
    } else {
        (8000, 0, 160)
    };
    let mut sine = talker.map(|f| Sine::new(f, rate, 6000.0));
    let mut encoder = OpusEncoder::new(48_000, OpusConfig::default()).expect("opus encoder");
    let datagrams = (0..50u16)
        .map(|i| {
            let mut pcm = vec![0i16; frame];
            if let Some(s) = sine.as_mut() {
                s.fill(&mut pcm);
            }
            let mut payload = vec![0u8; 1500];
            let len = if opus {
                encoder.encode(&pcm, &mut payload).expect("encode")
            } else {
                Law::Mu.encode(&pcm, &mut payload);
                frame
            };
            let mut wire = vec![0u8; 12 + len];
            RtpHeader {
                payload_type: pt,
                marker: false,
                sequence: i,
                timestamp: u32::from(i) * frame as u32,
                ssrc,
            }
            .write_with_payload(&payload[..len], &mut wire)
            .expect("fits");
            wire
        })
        .collect();
    Member { datagrams }
}

/// Rewrites sequence number, timestamp and SSRC so the looped packets keep counting up.
fn restamp(datagram: &mut [u8], sequence: u16, timestamp: u32, ssrc: u32) {
    datagram[2..4].copy_from_slice(&sequence.to_be_bytes());
    datagram[4..8].copy_from_slice(&timestamp.to_be_bytes());
    datagram[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

struct Case {
    thread: ManualThread,
    /// The talkers' own packets.
    members: Vec<Member>,
    /// What every listener sends.
    listeners: Member,
    n: usize,
    tick: u32,
    now: Instant,
    frame: u32,
}

impl Case {
    fn new(n: usize, k: usize, opus: bool, shared: bool) -> Self {
        let config = MixerConfig {
            shared_encoding: shared,
            jitter_target: 1,
            ..MixerConfig::default()
        };
        let mut thread = ManualThread::new(config);
        let handle = thread.handle();
        let codec = if opus {
            Codec::opus(111, false, false)
        } else {
            Codec::PCMU
        };
        for i in 0..n {
            handle
                .add_leg(0, RoomId(1), LegSpec::detached(LegId(i as u64), codec))
                .expect("queued");
        }
        let members = (0..k)
            .map(|i| member(Some(300.0 + 150.0 * i as f64), opus, i as u32 + 1))
            .collect();
        thread.apply_commands();
        let mut case = Self {
            thread,
            members,
            listeners: member(None, opus, 0),
            n,
            tick: 0,
            now: Instant::now(),
            frame: if opus { 960 } else { 160 },
        };
        for _ in 0..60 {
            case.step();
        }
        case
    }

    fn step(&mut self) {
        let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let i = self.tick as usize % 50;
        let (sequence, timestamp) = (self.tick as u16, self.tick.wrapping_mul(self.frame));
        for id in 0..self.n {
            let d = match self.members.get_mut(id) {
                Some(talker) => &mut talker.datagrams[i],
                None => &mut self.listeners.datagrams[i],
            };
            restamp(d, sequence, timestamp, id as u32 + 1);
            self.thread.inject(LegId(id as u64), d, peer, self.now);
        }
        self.thread.tick(self.now);
        self.tick += 1;
        self.now += Duration::from_millis(20);
    }
}

fn ticks(c: &mut Criterion) {
    // Building a case (pre-encoding its packets, filling its buffers) is slow for big Opus
    // rooms: skip the ones a command-line filter excludes.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    for (codec, opus) in [("pcmu", false), ("opus48", true)] {
        for (strategy, shared) in [("shared", true), ("naive", false)] {
            let mut group = c.benchmark_group(format!("tick/{codec}/{strategy}"));
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(2));
            group.sample_size(20);
            for &n in &[3usize, 10, 50, 200, 1000] {
                // A naive Opus room of 1000 is 1000 encodes (~170 ms) a tick: not a useful
                // number to wait for.
                if opus && !shared && n > 200 {
                    continue;
                }
                for &k in &[1usize, 2, 4] {
                    if k > n || !format!("tick/{codec}/{strategy}/K{k}/{n}").contains(&filter) {
                        continue;
                    }
                    let mut case = Case::new(n, k, opus, shared);
                    let before = case.thread.stats();
                    for _ in 0..10 {
                        case.step();
                    }
                    let after = case.thread.stats();
                    eprintln!(
                        "tick/{codec}/{strategy} N={n} K={k}: {:.1} encodes, {:.1} forwards, \
                         {:.1} decodes per tick",
                        (after.encodes - before.encodes) as f64 / 10.0,
                        (after.forwards - before.forwards) as f64 / 10.0,
                        (after.decodes - before.decodes) as f64 / 10.0
                    );
                    group.bench_with_input(BenchmarkId::new(format!("K{k}"), n), &n, |b, _| {
                        b.iter(|| case.step())
                    });
                }
            }
            group.finish();
        }
    }
}

criterion_group!(benches, ticks);
criterion_main!(benches);
