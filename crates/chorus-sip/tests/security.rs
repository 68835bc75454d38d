//! The endpoint's part of SIP security, in virtual time: scanners dropped unanswered, digest
//! challenges (401 on its own INVITE transaction, ACK and CANCEL after it, the retried INVITE
//! as a new call) and silent discards.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Instant;

use chorus_sip::auth::{authorization, DigestAuth, DigestConfig, DigestRequest};
use chorus_sip::{DropReason, EndReason, Endpoint, EndpointConfig, Event, IncomingCall};
use common::*;

const ALICE: &str = "192.0.2.10:5060";
const URI: &str = "sip:room42@192.0.2.1";

fn via(branch: &str) -> String {
    format!("SIP/2.0/UDP 192.0.2.10:5060;branch={branch}")
}

fn invite(branch: &str, cseq: u32, extra: &str) -> Vec<u8> {
    request(
        "INVITE",
        URI,
        &via(branch),
        "a1",
        None,
        "call-sec",
        cseq,
        extra,
        SDP_OFFER,
    )
}

fn incoming(ep: &mut Endpoint) -> IncomingCall {
    let ev = events(ep);
    let [Event::IncomingCall(call)] = ev.as_slice() else {
        panic!("expected IncomingCall, got {ev:?}");
    };
    call.clone()
}

#[test]
fn scanner_user_agents_are_dropped_unanswered_and_counted() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    for (i, ua) in [
        "friendly-scanner",
        "SIPVicious 0.3.4",
        "VaxSIPUserAgent/3.1",
    ]
    .iter()
    .enumerate()
    {
        let branch = format!("z9hG4bKscan{i}");
        let extra = format!("User-Agent: {ua}\r\n");
        ep.handle_input(t0, udp(ALICE), &invite(&branch, 1, &extra));
        let options = request(
            "OPTIONS",
            URI,
            &via(&format!("{branch}o")),
            "a1",
            None,
            "scan-o",
            1,
            &extra,
            "",
        );
        ep.handle_input(t0, udp(ALICE), &options);
    }
    // Even a malformed request from a scanner gets no 400.
    ep.handle_input(
        t0,
        udp(ALICE),
        b"OPTIONS sip:x@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKm\r\n\
          Call-ID: m\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: x\r\n\r\n",
    );
    assert!(drain(&mut ep).is_empty(), "no answer at all");
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.stats().scanner, 7);
    assert_eq!(ep.stats().drops().get(DropReason::Scanner), 7);
    // A legitimate UA is served.
    ep.handle_input(
        t0,
        udp(ALICE),
        &invite("z9hG4bKok", 1, "User-Agent: Linphone/5.2\r\n"),
    );
    assert_eq!(status(&drain(&mut ep)[0]), Some(100));
}

#[test]
fn an_empty_scanner_list_disables_the_filter() {
    let mut ep = Endpoint::new(EndpointConfig {
        scanner_user_agents: Vec::new(),
        ..EndpointConfig::default()
    });
    ep.handle_input(
        Instant::now(),
        udp(ALICE),
        &invite("z9hG4bKs", 1, "User-Agent: friendly-scanner\r\n"),
    );
    assert_eq!(status(&drain(&mut ep)[0]), Some(100));
}

#[test]
fn challenge_then_authenticated_retry_is_a_new_call() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let mut auth = DigestAuth::new(DigestConfig::default(), t0);

    ep.handle_input(t0, udp(ALICE), &invite("z9hG4bKc1", 1, ""));
    let first = incoming(&mut ep);
    assert!(first.authorization.is_empty());
    assert_eq!(first.request_uri, URI);
    let challenge = auth.challenge(t0, false);
    let headers: Vec<(&str, String)> = challenge
        .iter()
        .map(|c| ("WWW-Authenticate", c.clone()))
        .collect();
    ep.reject_with(t0, first.call, 401, &headers).unwrap();
    let sent = drain(&mut ep);
    let unauthorized = text(sent.last().unwrap());
    assert!(unauthorized.starts_with("SIP/2.0 401 Unauthorized\r\n"));
    assert_eq!(headers_of(&unauthorized), challenge);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: first.call,
            reason: EndReason::Rejected(401)
        }]
    );
    let to_tag = tag(&header(&unauthorized, "To").unwrap()).unwrap();

    // The ACK for the 401 belongs to its INVITE transaction (RFC 3261 §17.2.1).
    let ack = request(
        "ACK",
        URI,
        &via("z9hG4bKc1"),
        "a1",
        Some(&to_tag),
        "call-sec",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &ack);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(ep.stats().dropped_other, 0, "the ACK was matched");
    // A late CANCEL for the challenged INVITE: 200, but no 487 (it already has its final).
    let cancel = request(
        "CANCEL",
        URI,
        &via("z9hG4bKc1"),
        "a1",
        None,
        "call-sec",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &cancel);
    let sent = drain(&mut ep);
    assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), [Some(200)]);

    // The retry: same Call-ID and From tag, next CSeq, new branch, with credentials.
    let credentials =
        authorization(&challenge[0], "INVITE", URI, "alice", "pw", "cafe0001", 1).unwrap();
    let extra = format!("Authorization: {credentials}\r\n");
    ep.handle_input(t0, udp(ALICE), &invite("z9hG4bKc2", 2, &extra));
    let second = incoming(&mut ep);
    assert_ne!(second.call, first.call);
    assert_eq!(second.authorization, vec![credentials]);
    let request = DigestRequest {
        method: "INVITE",
        authorization: &second.authorization,
    };
    let ok = auth
        .verify(t0, &request, |u| (u == "alice").then_some("pw"))
        .unwrap();
    assert_eq!(ok.username, "alice");
    ep.answer(t0, second.call, b"v=0\r\n".to_vec()).unwrap();
    assert_eq!(status(&drain(&mut ep)[1]), Some(200));
}

fn headers_of(msg: &str) -> Vec<String> {
    headers(msg, "WWW-Authenticate")
}

#[test]
fn a_discarded_invite_gets_no_answer_not_even_its_retransmissions() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.handle_input(t0, udp(ALICE), &invite("z9hG4bKd1", 1, ""));
    let call = incoming(&mut ep);
    // The driver decides before it flushes: the queued 100 Trying is withdrawn.
    ep.discard(t0, call.call).unwrap();
    assert!(drain(&mut ep).is_empty());
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::Discarded
        }]
    );
    assert_eq!(ep.stats().responses_sent, 0);
    for n in 1..=6u64 {
        let at = t0 + ms(500 * n);
        ep.handle_timeout(at);
        ep.handle_input(at, udp(ALICE), &invite("z9hG4bKd1", 1, ""));
        assert!(drain(&mut ep).is_empty(), "retransmission {n} answered");
        assert!(
            events(&mut ep).is_empty(),
            "retransmission {n} became a call"
        );
    }
    // After 64*T1 the transaction is forgotten.
    ep.handle_timeout(t0 + ms(32_001));
    assert_eq!(ep.poll_timeout(), None);
}
