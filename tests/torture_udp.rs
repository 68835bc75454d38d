//! The 49 RFC 4475 torture messages through the real UDP path: each one is sent as one
//! datagram to a running engine and its verdict asserted — the exact status of the first
//! response, or no response at all and the drop counted in `/metrics`
//! (`chorus_sip_drops_total`). The table is the sans-IO reference of
//! `crates/chorus-sip/tests/torture.rs`, plus what the running engine then does with the
//! INVITEs it accepts (their final response); those dialogs are ACKed and hung up so the
//! engine ends clean.
//!
//! Several messages share a transaction key: the same Via branch (`z9hG4bKkdjuw`…) and
//! method. To the engine the second one is a retransmission of the first transaction (RFC 3261
//! §17.2.3), rightly absorbed by re-sending the first answer to the first sender. So that each
//! message is judged on its own bytes, a message whose key this engine has already seen is
//! sent to a fresh engine instead of being rewritten.
//!
//! Each message is sent from its own loopback address (127.x.y.z), bound at the port its top
//! Via names (5060 when absent), because RFC 3261 §18.2.2 sends a UDP response to the
//! source address at the Via port (the source port only with `rport`, RFC 3581).

mod common;
#[path = "common/rfc4475.rs"]
mod rfc4475;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::Engine;
use rfc4475::Verdict;

/// What the engine does with one message sent as one UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The first response has this status, and nothing follows it.
    Status(u16),
    /// An INVITE: `100 Trying`, then this final status.
    Invite(u16),
    /// No answer; `chorus_sip_drops_total` grows.
    Drop,
}
use Outcome::*;

/// One row per message, in `INDEX.md` order; the comments say why.
const EXPECTED: &[(&str, Outcome)] = &[
    ("wsinv.dat", Status(481)), // INVITE with a To tag for a dialog we don't know
    ("intmeth.dat", Status(501)), // extension method
    ("esc01.dat", Invite(200)), // joins a room
    ("escnull.dat", Status(405)), // REGISTER: not a registrar
    ("esc02.dat", Status(501)), // RE%47IST%45R is an unknown method, not REGISTER
    ("lwsdisp.dat", Status(200)), // OPTIONS
    ("longreq.dat", Invite(200)),
    ("dblreq.dat", Status(405)), // REGISTER; the trailing INVITE is ignored
    ("semiuri.dat", Status(200)),
    ("transports.dat", Status(200)),
    ("mpart01.dat", Status(405)), // MESSAGE
    ("unreason.dat", Drop),       // a response to nothing of ours
    ("noreason.dat", Drop),
    ("badinv01.dat", Status(400)),
    ("clerr.dat", Status(400)),
    ("ncl.dat", Status(400)),
    ("scalar02.dat", Status(400)),
    ("scalarlg.dat", Drop), // a response
    ("quotbal.dat", Status(400)),
    ("ltgtruri.dat", Status(400)),
    ("lwsruri.dat", Status(400)),
    ("lwsstart.dat", Status(400)),
    ("trws.dat", Status(400)),
    ("escruri.dat", Invite(200)),
    ("baddate.dat", Invite(200)),
    ("regbadct.dat", Status(405)),
    ("badaspec.dat", Status(200)),
    ("baddn.dat", Status(400)), // unquoted comma splits From in two (RFC 4475 allows 400)
    ("badvers.dat", Status(505)),
    ("mismatch01.dat", Status(400)),
    ("mismatch02.dat", Status(400)),
    ("bigcode.dat", Drop), // a response
    ("badbranch.dat", Status(200)),
    ("insuf.dat", Status(400)),
    ("unkscm.dat", Status(416)),
    ("novelsc.dat", Status(416)),
    ("unksm2.dat", Status(405)),
    ("bext01.dat", Status(420)),
    ("invut.dat", Status(415)),
    ("regaut01.dat", Status(405)),
    ("multi01.dat", Status(400)),
    ("mcl01.dat", Status(400)),
    ("bcast.dat", Drop), // a response
    ("zeromf.dat", Status(200)),
    ("cparam01.dat", Status(405)),
    ("cparam02.dat", Status(405)),
    ("regescrt.dat", Status(405)),
    ("sdp01.dat", Status(406)),
    ("inv2543.dat", Status(400)), // no From tag: cannot form a dialog
];

/// How long an unanswered message is watched before it counts as dropped, and how long
/// after a final response late extras (a second response) are looked for.
const QUIET: Duration = Duration::from_millis(300);
/// Longest wait for a final response.
const FINAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A response from the engine, reduced to what the table needs.
#[derive(Clone, Debug)]
struct Response {
    status: u16,
    text: String,
}

impl Response {
    fn parse(datagram: &[u8]) -> Option<Response> {
        let text = String::from_utf8_lossy(datagram).into_owned();
        let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Response { status, text })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.text
            .split("\r\n\r\n")
            .next()?
            .lines()
            .skip(1)
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
    }
}

/// The sum of `chorus_sip_drops_total` over all reasons.
fn sip_drops(engine: &Engine) -> u64 {
    let (status, body) = engine.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics");
    let mut seen = false;
    let total = body
        .lines()
        .filter(|l| l.starts_with("chorus_sip_drops_total"))
        .filter_map(|l| {
            seen = true;
            l.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum::<f64>();
    assert!(seen, "no chorus_sip_drops_total in /metrics:\n{body}");
    total as u64
}

/// A socket on a loopback address of its own at `port`, so the responses to one message are
/// never confused with another's.
fn socket_at(port: u16, n: usize) -> UdpSocket {
    for attempt in 0..50u32 {
        let r: u32 = rand::random();
        let ip = Ipv4Addr::new(127, 10 + (n % 200) as u8, (r >> 8) as u8, (r as u8).max(1));
        match UdpSocket::bind((ip, port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("set_read_timeout");
                return s;
            }
            Err(e) if attempt == 49 => panic!("bind {ip}:{port}: {e}"),
            Err(_) => continue,
        }
    }
    unreachable!("the loop returns or panics")
}

/// Reads responses until `done` says so or `until` passes.
fn collect(
    socket: &UdpSocket,
    into: &mut Vec<Response>,
    until: Instant,
    done: impl Fn(&[Response]) -> bool,
) {
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < until && !done(into) {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if let Some(r) = Response::parse(&buf[..n]) {
                into.push(r);
            }
        }
    }
}

/// The request line's URI of the engine's Contact, for in-dialog requests.
fn contact_uri(r: &Response) -> String {
    let contact = r.header("Contact").expect("a 2xx to INVITE has a Contact");
    let inner = contact
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(uri, _)| uri.to_string())
        .unwrap_or(contact);
    inner
}

/// ACKs the INVITE's final response (RFC 3261 §17.1.1.3 for non-2xx: same branch; §13.2.2.4
/// for 2xx: a new transaction) and, after a 2xx, hangs up with BYE, waiting for its 200.
fn end_dialog(
    socket: &UdpSocket,
    engine: SocketAddr,
    invite: &rfc4475::Message,
    final_response: &Response,
) {
    let file = &invite.file;
    let local = socket.local_addr().expect("local addr");
    let via = final_response.header("Via").expect("Via");
    let from = final_response.header("From").expect("From");
    let to = final_response.header("To").expect("To");
    let call_id = final_response.header("Call-ID").expect("Call-ID");
    let cseq: u32 = final_response
        .header("CSeq")
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .expect("CSeq number");
    let is_2xx = final_response.status < 300;
    let (uri, ack_via) = if is_2xx {
        (
            contact_uri(final_response),
            format!(
                "SIP/2.0/UDP {local};branch=z9hG4bKack{cseq}{}",
                rand::random::<u32>()
            ),
        )
    } else {
        // The non-2xx ACK reuses the INVITE's Request-URI and top Via (branch included).
        let request_uri = String::from_utf8_lossy(&invite.bytes)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (
            request_uri,
            via.split(',').next().unwrap_or(&via).to_string(),
        )
    };
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: {ack_via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(ack.as_bytes(), engine).expect("send ACK");
    if !is_2xx {
        return;
    }
    let bye = format!(
        "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbye{}\r\nMax-Forwards: 70\r\n\
         From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
        rand::random::<u32>(),
        cseq + 1
    );
    let mut responses = Vec::new();
    let deadline = Instant::now() + FINAL_TIMEOUT;
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            socket.send_to(bye.as_bytes(), engine).expect("send BYE");
            next_send = Instant::now() + Duration::from_millis(500);
        }
        collect(socket, &mut responses, next_send.min(deadline), |rs| {
            rs.iter().any(|r| r.text.contains(" BYE\r\n"))
        });
        if let Some(r) = responses.iter().find(|r| r.text.contains(" BYE\r\n")) {
            assert_eq!(r.status, 200, "{file}: BYE answered {}", r.status);
            return;
        }
    }
    panic!("{file}: no answer to BYE within {FINAL_TIMEOUT:?}");
}

/// The Via branch and the method (first word) of a message: what RFC 3261 §17.2.3 matches
/// server transactions on (with the sent-by, left out here to err on the side of caution).
fn transaction_key(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes);
    let method = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let branch = text
        .split_once("branch=")
        .map(|(_, rest)| {
            rest.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    (branch, method)
}

/// Sends one message and observes what the engine does with it.
fn run_one(engine: &Engine, n: usize, message: &rfc4475::Message) -> (Outcome, u64) {
    let socket = socket_at(rfc4475::top_via_port(&message.bytes), n);
    let drops_before = sip_drops(engine);
    socket
        .send_to(&message.bytes, engine.sip)
        .unwrap_or_else(|e| panic!("{}: send: {e}", message.file));
    let mut responses = Vec::new();
    let is_final = |rs: &[Response]| rs.iter().any(|r| r.status >= 200);
    collect(&socket, &mut responses, Instant::now() + QUIET, |rs| {
        !rs.is_empty()
    });
    if responses.is_empty() {
        // Let the counter catch up with the datagram (it is read on another task).
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut drops = sip_drops(engine) - drops_before;
        while drops == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            drops = sip_drops(engine) - drops_before;
        }
        return (Drop, drops);
    }
    collect(
        &socket,
        &mut responses,
        Instant::now() + FINAL_TIMEOUT,
        is_final,
    );
    // Anything more than one transaction's worth of answers would show up here.
    collect(&socket, &mut responses, Instant::now() + QUIET, |_| false);
    let drops = sip_drops(engine) - drops_before;
    let first = &responses[0];
    let outcome = if first.status == 100 {
        let last = responses
            .iter()
            .find(|r| r.status >= 200)
            .unwrap_or_else(|| panic!("{}: 100 Trying and no final response", message.file));
        end_dialog(&socket, engine.sip, message, last);
        Invite(last.status)
    } else {
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert!(
            statuses.iter().all(|&s| s == first.status),
            "{}: one answer expected, got {statuses:?}",
            message.file
        );
        if first.status < 200 {
            panic!("{}: only a provisional {}", message.file, first.status);
        }
        Status(first.status)
    };
    // Every response is well-formed SIP with a Content-Length.
    for r in &responses {
        assert!(
            r.header("Content-Length").is_some() || r.header("l").is_some(),
            "{}: response without Content-Length:\n{}",
            message.file,
            r.text
        );
        assert!(
            rsip::Response::try_from(r.text.as_bytes()).is_ok(),
            "{}: unparseable response:\n{}",
            message.file,
            r.text
        );
    }
    (outcome, drops)
}

#[test]
fn every_rfc4475_message_gets_its_verdict_over_udp() {
    let messages = rfc4475::load();
    let table: Vec<&str> = EXPECTED.iter().map(|(f, _)| *f).collect();
    let corpus: Vec<&str> = messages.iter().map(|m| m.file.as_str()).collect();
    assert_eq!(
        table, corpus,
        "one table row per INDEX.md message, same order"
    );

    let mut engine = Engine::start(&[]);
    let mut seen_keys = HashSet::new();
    let mut engines = 1;
    let mut failures = Vec::new();
    for (n, (message, (_, expected))) in messages.iter().zip(EXPECTED).enumerate() {
        if !seen_keys.insert(transaction_key(&message.bytes)) {
            assert_engine_clean(&engine);
            engine = Engine::start(&[]);
            engines += 1;
            seen_keys.clear();
            seen_keys.insert(transaction_key(&message.bytes));
        }
        let (got, drops) = run_one(&engine, n, message);
        eprintln!(
            "{:<15} {:<9} {:?}  expected {expected:?}, got {got:?} (drops counted: {drops})",
            message.file, message.section, message.verdict
        );
        if got != *expected {
            failures.push(format!(
                "{}: expected {expected:?}, got {got:?}",
                message.file
            ));
        }
        match got {
            Drop if drops == 0 => {
                failures.push(format!("{}: dropped but not counted", message.file))
            }
            Drop => {}
            _ if drops != 0 => {
                failures.push(format!("{}: answered and counted as a drop", message.file))
            }
            _ => {}
        }
        if message.verdict == Verdict::Reject && !matches!(got, Drop | Status(400..)) {
            failures.push(format!("{}: a REJECT message was accepted", message.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 49 messages off their verdict:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        engine.logs()
    );

    eprintln!("{} messages over {engines} engines", messages.len());
    assert_engine_clean(&engine);
}

/// The dialogs the INVITEs created are gone and the engine still serves.
fn assert_engine_clean(engine: &Engine) {
    let clean = common::wait_until(Duration::from_secs(5), || engine.live_rooms().is_empty());
    assert!(
        clean,
        "rooms left after the torture: {:?}",
        engine.live_rooms()
    );
    assert!(engine.is_ready(), "engine not ready after the torture");
    let ua = common::Ua::new(engine.sip, common::Transport::Udp).expect("UA");
    let options = ua.request("OPTIONS", "probe", &[]).expect("OPTIONS");
    assert_eq!(options.status_code.code(), 200);
}
