//! Garbage never panics and is always counted.
#![allow(clippy::unwrap_used)]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_sip::{ConnectionId, Peer, StreamFramer};
use common::*;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/rfc4475"
    ));
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("RFC 4475 fixtures missing (shared/ beside the repo root)")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    out.sort();
    out.push(request(
        "INVITE",
        "sip:room42@192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf1;rport",
        "a",
        None,
        "f-1",
        1,
        "Record-Route: <sip:192.0.2.50;lr>\r\n",
        SDP_OFFER,
    ));
    out.push(request(
        "ACK",
        "sip:room42@192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf2",
        "a",
        Some("x"),
        "f-1",
        1,
        "",
        "",
    ));
    out.push(request(
        "BYE",
        "sip:room42@192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf3",
        "a",
        Some("x"),
        "f-1",
        2,
        "",
        "",
    ));
    out.push(request(
        "CANCEL",
        "sip:room42@192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf1;rport",
        "a",
        None,
        "f-1",
        1,
        "",
        "",
    ));
    out
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"%",
    b"\r\n ",
    b"\0",
    b"\xff",
    b"=",
    b"@",
    b"[",
    b"]",
    b"z9hG4bK",
    b"Content-Length: 99999999999\r\n",
    b"\r\n\r\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(m.len() + 1);
                let tok = TOKENS[rng.below(TOKENS.len())];
                m.splice(i..i, tok.iter().copied());
            }
            2 if !m.is_empty() => {
                let a = rng.below(m.len());
                let b = (a + rng.below(40)).min(m.len());
                m.drain(a..b);
            }
            3 => {
                let n = rng.below(m.len() + 1);
                m.truncate(n);
            }
            4 if !m.is_empty() => {
                // Duplicate a slice somewhere else (repeated headers).
                let a = rng.below(m.len());
                let b = (a + rng.below(80)).min(m.len());
                let chunk = m[a..b].to_vec();
                let i = rng.below(m.len() + 1);
                m.splice(i..i, chunk);
            }
            _ => {
                let n = rng.below(64);
                for _ in 0..n {
                    m.push(rng.next() as u8);
                }
            }
        }
    }
    m
}

#[test]
fn mutated_torture_messages_never_panic_and_are_counted() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ep = endpoint();
    let mut framer = StreamFramer::new(64 * 1024);
    let t0 = Instant::now();
    let mut now = t0;
    let n = 20_000;
    for i in 0..n {
        let seed = &seeds[rng.below(seeds.len())];
        let data = mutate(&mut rng, seed);
        let peer = if i % 5 == 0 {
            Peer::tcp(addr("192.0.2.10:40000"), ConnectionId(i % 3))
        } else {
            udp("192.0.2.10:5060")
        };
        ep.handle_input(now, peer, &data);
        framer.push(&data);
        loop {
            match framer.next_message() {
                Ok(Some(m)) => ep.handle_input(now, peer, &m),
                Ok(None) => break,
                Err(_) => {
                    framer = StreamFramer::new(64 * 1024);
                    break;
                }
            }
        }
        // Exercise the application API against whatever calls exist.
        for ev in events(&mut ep) {
            if let chorus_sip::Event::IncomingCall(c) = ev {
                match rng.below(4) {
                    0 => drop(ep.answer(now, c.call, b"v=0\r\n".to_vec())),
                    1 => drop(ep.reject(now, c.call, 486)),
                    2 => drop(ep.hangup(now, c.call)),
                    _ => {}
                }
            }
        }
        drain(&mut ep);
        now += Duration::from_millis(rng.below(300) as u64);
        ep.handle_timeout(now);
        if i % 1000 == 0 {
            ep.connection_closed(ConnectionId(i % 3));
        }
    }
    let s = ep.stats();
    assert!(s.received >= n);
    assert!(s.parse_errors > 0 && s.rejected_400 > 0, "{s:?}");
}

#[test]
fn empty_binary_and_huge_inputs_are_dropped_and_counted() {
    let mut ep = endpoint();
    let now = Instant::now();
    let p = udp("192.0.2.10:5060");
    ep.handle_input(now, p, b"");
    ep.handle_input(now, p, b"\r\n\r\n");
    ep.handle_input(now, p, &[0u8; 300]);
    let mut rng = Rng(1);
    let binary: Vec<u8> = (0..1500).map(|_| rng.next() as u8).collect();
    ep.handle_input(now, p, &binary);
    ep.handle_input(now, p, &vec![b'A'; 70 * 1024]);
    assert!(drain(&mut ep).is_empty());
    let s = ep.stats();
    assert_eq!(s.received, 5);
    assert_eq!(s.oversize, 1);
    assert_eq!(s.parse_errors, 4);
}
