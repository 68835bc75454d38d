//! Hostile input on the SIP port (random datagrams, the RFC 4475 torture messages, mangled
//! INVITEs, junk over TCP) must neither crash the engine nor disturb a call in progress.

mod common;
#[path = "common/rfc4475.rs"]
mod rfc4475;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use common::{assert_hears, steady_window, Call, Engine, Source, LOCALHOST};

/// Longest silence tolerated in a live call's RTP while the storm goes on.
const MAX_GAP: Duration = Duration::from_millis(200);

fn torture_messages() -> Vec<(String, Vec<u8>)> {
    rfc4475::load()
        .into_iter()
        .map(|m| (m.file, m.bytes))
        .collect()
}

/// A well-formed INVITE with SDP from `from` into room `room`, to be mangled.
fn valid_invite(target: std::net::SocketAddr, from: std::net::SocketAddr, room: &str) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        from.port() + 2
    );
    format!(
        "INVITE sip:{room}@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKmangled{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:mangler@{from}>;tag=m{n}\r\n\
         To: <sip:{room}@{target}>\r\n\
         Call-ID: mangled-{n}@chorus-tests\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:mangler@{from}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        n = rand::random::<u32>(),
        len = sdp.len()
    )
    .into_bytes()
}

#[test]
fn garbage_and_torture_messages_do_not_disturb_a_live_call() {
    let torture = torture_messages();
    let mut engine = Engine::start(&[]);
    let a = Call::dial(engine.sip, "steady", Source::tone(440.0));
    let b = Call::dial(engine.sip, "steady", Source::tone(1000.0));
    let before = steady_window(Duration::from_millis(500), Duration::from_secs(1));
    assert_hears("A before the storm", &a, before, &[1000.0], &[440.0]);

    let storm_start = std::time::Instant::now();
    let attacker = UdpSocket::bind((LOCALHOST, 0)).expect("bind attacker socket");
    let attacker_addr = attacker.local_addr().expect("addr");
    let mut rng = rand::rngs::StdRng::seed_from_u64(4475);
    let send = |bytes: &[u8]| {
        // A full socket buffer may refuse a datagram; that is not what is tested.
        let _ = attacker.send_to(bytes, engine.sip);
    };

    // 1. Random datagrams, 0 to 1500 bytes; paced a little so they reach the parser rather
    //    than just overflowing the receive buffer.
    for i in 0..2_000 {
        let len = rng.gen_range(0..=1500);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        send(&bytes);
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // 2. Every RFC 4475 torture message as a datagram.
    for (_, bytes) in &torture {
        send(bytes);
    }
    // 3. Truncated and bit-flipped versions of a valid INVITE.
    let invite = valid_invite(engine.sip, attacker_addr, "mangled");
    for _ in 0..300 {
        let cut = rng.gen_range(0..invite.len());
        send(&invite[..cut]);
        let mut flipped = invite.clone();
        for _ in 0..rng.gen_range(1..=8) {
            let at = rng.gen_range(0..flipped.len());
            flipped[at] ^= 1 << rng.gen_range(0..8);
        }
        send(&flipped);
    }
    // 4. The same kinds of input over TCP connections. The engine may close a connection
    //    on bad framing, so write errors are expected and ignored.
    let tcp_junk: Vec<Vec<u8>> = vec![
        (0..65_536).map(|_| rng.gen()).collect(),
        torture
            .iter()
            .flat_map(|(_, m)| m.iter().copied())
            .collect(),
        invite[..invite.len() / 2].to_vec(),
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 99999999\r\n\r\nabc".to_vec(),
        b"\r\n\r\n\r\n\r\nOPTIONS\r\n\r\n".repeat(1000),
    ];
    for junk in &tcp_junk {
        if let Ok(mut stream) = TcpStream::connect_timeout(&engine.sip, Duration::from_secs(1)) {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(junk);
        }
    }
    // A connection that opens and sends nothing more than half a header, then lingers.
    let idle = TcpStream::connect_timeout(&engine.sip, Duration::from_secs(1)).ok();
    if let Some(mut s) = idle.as_ref().and_then(|s| s.try_clone().ok()) {
        let _ = s.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0");
    }
    std::thread::sleep(Duration::from_millis(300));
    let storm_end = std::time::Instant::now();

    assert!(
        engine.is_alive(),
        "engine died during the storm: {:?}",
        engine.try_exit()
    );
    assert!(engine.is_ready(), "engine not ready after the storm");
    for (label, call) in [("A", &a), ("B", &b)] {
        let gap = call.media.max_gap_between(storm_start, storm_end);
        assert!(
            gap <= MAX_GAP,
            "{label}: {gap:?} without RTP during the storm ({:?} long)",
            storm_end - storm_start
        );
    }
    let after = steady_window(Duration::from_millis(200), Duration::from_secs(1));
    assert_hears("A after the storm", &a, after, &[1000.0], &[440.0]);
    assert_hears("B after the storm", &b, after, &[440.0], &[1000.0]);

    // New calls are still accepted and mixed.
    let c = Call::dial(engine.sip, "after-storm", Source::tone(440.0));
    let d = Call::dial(engine.sip, "after-storm", Source::Silence);
    let window = steady_window(Duration::from_millis(500), Duration::from_secs(1));
    assert_hears("D in a new room", &d, window, &[440.0], &[1000.0]);
    assert_hears("C in a new room", &c, window, &[], &[440.0, 1000.0]);
    drop(idle);
}
