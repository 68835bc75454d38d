//! DTMF in SIP INFO (the fallback without RFC 4733 telephone-events): digits become
//! `Event::Dtmf`, unreadable DTMF bodies are still acknowledged, other bodies get 415.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Instant;

use chorus_sip::{CallHandle, Endpoint, Event};
use common::*;

const ALICE: &str = "192.0.2.10:5060";

/// An answered, ACKed call: its handle and our To-tag.
fn call(ep: &mut Endpoint, now: Instant) -> (CallHandle, String) {
    let via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1";
    let invite = request(
        "INVITE",
        "sip:room42@192.0.2.1",
        via,
        "a1",
        None,
        "call-1",
        1,
        "",
        SDP_OFFER,
    );
    ep.handle_input(now, udp(ALICE), &invite);
    drain(ep);
    let offered = events(ep);
    let [Event::IncomingCall(incoming)] = offered.as_slice() else {
        panic!("expected IncomingCall");
    };
    let call = incoming.call;
    ep.answer(now, call, b"v=0\r\n".to_vec()).unwrap();
    let ok = drain(ep);
    let to_tag = tag(&header(&text(&ok[0]), "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:alice@192.0.2.10",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(now, udp(ALICE), &ack);
    assert_eq!(events(ep), vec![Event::CallConfirmed { call, sdp: None }]);
    (call, to_tag)
}

fn info(to_tag: &str, cseq: u32, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "INFO sip:192.0.2.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinfo{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@192.0.2.10>;tag=a1\r\n\
         To: <sip:room42@192.0.2.1>;tag={to_tag}\r\n\
         Call-ID: call-1\r\nCSeq: {cseq} INFO\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends an INFO; returns the response statuses and the events it caused.
fn send(ep: &mut Endpoint, now: Instant, info: &[u8]) -> (Vec<Option<u16>>, Vec<Event>) {
    ep.handle_input(now, udp(ALICE), info);
    let statuses = drain(ep).iter().map(status).collect();
    (statuses, events(ep))
}

#[test]
fn dtmf_relay_info_is_200_and_a_dtmf_event() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, to_tag) = call(&mut ep, now);
    let body = "Signal=5\r\nDuration=160\r\n";
    let got = send(
        &mut ep,
        now,
        &info(&to_tag, 2, "application/dtmf-relay", body),
    );
    let dtmf = Event::Dtmf {
        call,
        digit: '5',
        duration_ms: 160,
    };
    assert_eq!(got, (vec![Some(200)], vec![dtmf]));
    let body = "Signal=#\r\nDuration=250\r\n";
    let got = send(
        &mut ep,
        now,
        &info(&to_tag, 3, "application/dtmf-relay", body),
    );
    let dtmf = Event::Dtmf {
        call,
        digit: '#',
        duration_ms: 250,
    };
    assert_eq!(got, (vec![Some(200)], vec![dtmf]));
}

#[test]
fn dtmf_info_body_is_the_digit() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, to_tag) = call(&mut ep, now);
    let got = send(&mut ep, now, &info(&to_tag, 2, "application/dtmf", "7"));
    let dtmf = Event::Dtmf {
        call,
        digit: '7',
        duration_ms: 0,
    };
    assert_eq!(got, (vec![Some(200)], vec![dtmf]));
}

#[test]
fn retransmitted_info_reports_its_digit_once() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_, to_tag) = call(&mut ep, now);
    let request = info(
        &to_tag,
        2,
        "application/dtmf-relay",
        "Signal=1\r\nDuration=100\r\n",
    );
    let (statuses, first) = send(&mut ep, now, &request);
    assert_eq!((statuses, first.len()), (vec![Some(200)], 1));
    let (statuses, again) = send(&mut ep, now, &request);
    assert_eq!(statuses, vec![Some(200)], "the 200 is resent");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn garbage_dtmf_body_is_200_without_an_event() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_, to_tag) = call(&mut ep, now);
    let bodies = [
        ("application/dtmf-relay", "Signal=x\r\nDuration=160\r\n"),
        ("application/dtmf-relay", "Signal=5\r\nDuration=forever\r\n"),
        ("application/dtmf-relay", "just some text"),
        ("application/dtmf", "99"),
    ];
    for (cseq, (content_type, body)) in (2..).zip(bodies) {
        let got = send(&mut ep, now, &info(&to_tag, cseq, content_type, body));
        assert_eq!(got, (vec![Some(200)], vec![]), "{body:?}");
    }
}

#[test]
fn info_of_another_content_type_is_415_with_accept_and_the_call_goes_on() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, to_tag) = call(&mut ep, now);
    let xml = "<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>";
    ep.handle_input(
        now,
        udp(ALICE),
        &info(&to_tag, 2, "application/media_control+xml", xml),
    );
    let sent = drain(&mut ep);
    assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![Some(415)]);
    assert_eq!(
        header(&text(&sent[0]), "Accept").as_deref(),
        Some("application/dtmf-relay, application/dtmf")
    );
    assert!(events(&mut ep).is_empty());
    let got = send(&mut ep, now, &info(&to_tag, 3, "application/dtmf", "*"));
    let dtmf = Event::Dtmf {
        call,
        digit: '*',
        duration_ms: 0,
    };
    assert_eq!(got, (vec![Some(200)], vec![dtmf]));
}
