//! A SIP flood must not touch a live room: while 10,000 malformed or scanner datagrams a
//! second hit the SIP port from two source addresses (127.0.0.3 and 127.0.0.4), a 3-member
//! room goes on with every frame (each member receives about 50 packets/s with no sequence
//! gap and no silence over 60 ms, and hears the other two), the engine's resident memory stays
//! bounded, and it is ready afterwards.
//!
//! Run twice: with the default configuration (loopback is exempt from rate limits, so every
//! datagram is parsed or filtered) and with the flood sources rate limited and banned.
//! The suite floods for 10 s; `CHORUS_FLOOD_SECS=30` gives the 30 s run of issue 7. The
//! flood sources may be rate limited and banned (`[sip.rate_limit]`) or not: both pass.
//!
//! Measured with `CHORUS_FLOOD_SECS=30` on the shared 2-CPU development host (release engine,
//! load average about 8 from concurrent builds), 2026-11-22: 300,300 datagrams in 30.0 s
//! (9,998/s), all dropped and counted (malformed 276,460, scanner 14,304, stray 9,536; no ban
//! with the default configuration); each member received 1,502 packets (50.0/s), 0 lost,
//! longest gap 27 ms, and heard the other two at -10.5 dBFS; VmRSS 11,456 kB before, 11,492 kB
//! at most (+36 kB). With the flood sources banned (both tests at once, 30 s): 300,175
//! datagrams, 2 bans, 299,971 dropped as banned; 1,501 packets per member, 0 lost, longest gap
//! 25 ms; +12 kB. The 10 s suite run: 100,100 datagrams, 0 lost, longest gap 21–47 ms, +8–36 kB.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::{assert_hears, Call, Engine, Source, Transport, Ua};

/// Datagrams per second, all sources together.
const RATE: u64 = 10_000;
/// The flood's source addresses.
const SOURCES: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)];
/// Longest tolerated silence in a member's RTP (one 20 ms frame late is 40 ms).
const MAX_GAP: Duration = Duration::from_millis(60);
/// Resident memory growth tolerated over the flood.
const MAX_RSS_GROWTH_KB: u64 = 20 * 1024;

fn flood_duration() -> Duration {
    let secs = std::env::var("CHORUS_FLOOD_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|e| panic!("CHORUS_FLOOD_SECS={s:?}: {e}"))
        })
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// `VmRSS` of a process, in kB.
fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The flood's payloads: what scanners and broken stacks send.
fn payloads(target: SocketAddr, source: Ipv4Addr) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(u32::from(source)));
    let scanner = |method: &str, ua: &str, n: u32| {
        format!(
            "{method} sip:100@{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {source}:5060;branch=z9hG4bKscan{n};rport\r\n\
             From: \"sipvicious\"<sip:100@1.1.1.1>;tag=scan{n}\r\n\
             To: \"sipvicious\"<sip:100@1.1.1.1>\r\n\
             Call-ID: scan{n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
             User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let mut out = vec![
        scanner("OPTIONS", "friendly-scanner", 1),
        scanner("REGISTER", "sipvicious", 2),
        scanner("INVITE", "sipcli/v1.8", 3),
        b"\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\nabc".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.9\r\n\r\n".to_vec(),
    ];
    let invite = scanner("INVITE", "chorus-flood", 4);
    for _ in 0..24 {
        let cut = rng.gen_range(1..invite.len());
        out.push(invite[..cut].to_vec());
    }
    for _ in 0..32 {
        let len = rng.gen_range(1..1400);
        out.push((0..len).map(|_| rng.gen()).collect());
    }
    out
}

/// Sends `RATE / SOURCES.len()` datagrams a second from `source` until `stop`, paced on a
/// fixed schedule (no drift); returns the datagrams sent.
fn flood_from(source: Ipv4Addr, target: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let socket = UdpSocket::bind((source, 0)).unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let payloads = payloads(target, source);
    let per_source = RATE / SOURCES.len() as u64;
    const BATCH: u64 = 25;
    let interval = Duration::from_secs_f64(BATCH as f64 / per_source as f64);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut batches = 0u32;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            let p = &payloads[sent as usize % payloads.len()];
            // A full socket buffer may refuse a datagram; the rate is what matters.
            let _ = socket.send_to(p, target);
            sent += 1;
        }
        batches += 1;
        let next = start + interval * batches;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    sent
}

/// Sequence numbers missing from a stream (RFC 3550 §A.3 style, on arrival order).
fn lost_frames(seqs: &[u16]) -> u64 {
    seqs.windows(2)
        .map(|w| u64::from(w[1].wrapping_sub(w[0]).saturating_sub(1)))
        .filter(|&gap| gap < 1000) // a reordering shows as a huge forward jump
        .sum()
}

fn metric_lines(engine: &Engine, prefix: &str) -> String {
    engine
        .http_get("/metrics")
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with(prefix))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn live_room_keeps_every_frame_under_a_sip_flood() {
    flood_a_live_room(Engine::start(&[]));
}

/// The same with the flood sources rate limited and banned (only 127.0.0.1, where the room's
/// members call from, is exempt): dropping unparsed must not disturb the room either.
#[test]
fn live_room_keeps_every_frame_while_flood_sources_are_banned() {
    let config = format!(
        "[sip.rate_limit]\nrequests_per_s = 50\nburst = 100\nban_s = 60\n\
         exempt = [\"127.0.0.1/32\"]\n\n{}",
        common::toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    );
    flood_a_live_room(Engine::start_with_config(
        &config,
        common::EngineOptions::default(),
    ));
}

fn flood_a_live_room(mut engine: Engine) {
    let duration = flood_duration();
    let pid = engine.pid();
    let members = [
        (
            "A",
            Call::dial(engine.sip, "flooded", Source::tone(440.0)),
            440.0,
        ),
        (
            "B",
            Call::dial(engine.sip, "flooded", Source::tone(1000.0)),
            1000.0,
        ),
        (
            "C",
            Call::dial(engine.sip, "flooded", Source::tone(1600.0)),
            1600.0,
        ),
    ];
    let tones = [440.0, 1000.0, 1600.0];
    // Settle (joins, jitter buffers), then check the room before the flood.
    std::thread::sleep(Duration::from_millis(1500));
    let rss_before = vm_rss_kb(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let flood_start = Instant::now();
    let senders: Vec<_> = SOURCES
        .iter()
        .map(|&source| {
            let (stop, target) = (Arc::clone(&stop), engine.sip);
            std::thread::Builder::new()
                .name(format!("flood-{source}"))
                .spawn(move || flood_from(source, target, stop))
                .expect("spawn a flood thread")
        })
        .collect();
    let rss_max = AtomicU64::new(rss_before);
    while flood_start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            engine.is_alive(),
            "engine died in the flood: {:?}",
            engine.try_exit()
        );
        rss_max.fetch_max(vm_rss_kb(pid), Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = senders
        .into_iter()
        .map(|h| h.join().expect("flood thread"))
        .sum();
    let flood_end = Instant::now();
    let flood_secs = (flood_end - flood_start).as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = vm_rss_kb(pid);
    let rss_max = rss_max.load(Ordering::Relaxed).max(rss_after);

    eprintln!(
        "flood: {sent} datagrams in {flood_secs:.1} s ({:.0}/s) from {SOURCES:?}",
        sent as f64 / flood_secs
    );
    eprintln!(
        "flood: VmRSS before {rss_before} kB, max {rss_max} kB, after {rss_after} kB (growth {} kB)",
        rss_max.saturating_sub(rss_before)
    );
    eprintln!(
        "flood: {}\n{}",
        metric_lines(&engine, "chorus_sip_drops_total"),
        metric_lines(&engine, "chorus_sip_bans_total")
    );
    assert!(
        sent as f64 >= 0.9 * RATE as f64 * flood_secs,
        "the flood itself fell short: {sent} datagrams in {flood_secs:.1} s"
    );

    // Every member: a full stream with no lost frame and no silence, during the flood.
    let mut problems = Vec::new();
    for (label, call, _) in &members {
        let packets = call.media.packets_between(flood_start, flood_end);
        let seqs: Vec<u16> = packets.iter().map(|p| p.seq).collect();
        let lost = lost_frames(&seqs);
        let gap = call.media.max_gap_between(flood_start, flood_end);
        let rate = packets.len() as f64 / flood_secs;
        eprintln!(
            "flood: {label} received {} packets ({rate:.1}/s), {lost} lost, max gap {gap:?}",
            packets.len()
        );
        if !(47.5..=52.5).contains(&rate) {
            problems.push(format!("{label}: {rate:.1} packets/s, expected 50"));
        }
        if lost != 0 {
            problems.push(format!("{label}: {lost} frames lost"));
        }
        if gap >= MAX_GAP {
            problems.push(format!("{label}: {gap:?} without RTP"));
        }
    }
    assert!(
        problems.is_empty(),
        "the room suffered from the flood:\n{}",
        problems.join("\n")
    );
    // Each hears the other two and not itself, in the flood's last seconds.
    let window = (flood_end - Duration::from_secs(2), flood_end);
    for (label, call, own) in &members {
        let others: Vec<f64> = tones.iter().copied().filter(|f| f != own).collect();
        assert_hears(
            &format!("{label} in the flood"),
            call,
            window,
            &others,
            &[*own],
        );
    }

    assert!(
        rss_max.saturating_sub(rss_before) < MAX_RSS_GROWTH_KB,
        "VmRSS grew from {rss_before} kB to {rss_max} kB in the flood"
    );
    assert!(engine.is_alive(), "engine died: {:?}", engine.try_exit());
    assert!(engine.is_ready(), "engine not ready after the flood");
    // A caller from an address that did not flood is served at once.
    let ua = Ua::new(engine.sip, Transport::Udp).expect("UA");
    let options = ua
        .request("OPTIONS", "probe", &[])
        .expect("OPTIONS after the flood");
    assert_eq!(options.status_code.code(), 200);
    let d = Call::dial(engine.sip, "flooded", Source::Silence);
    let window = common::steady_window(Duration::from_millis(500), Duration::from_secs(1));
    assert_hears("D, joining after the flood", &d, window, &tones, &[]);
}
