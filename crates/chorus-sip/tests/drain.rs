//! Draining (RFC 3261 §21.5.4): an unavailable endpoint refuses new INVITEs and OPTIONS with
//! 503 + Retry-After and keeps serving its dialogs; its BYEs can carry a Reason (RFC 3326).
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Instant;

use chorus_sip::{EndReason, Event, Reason};
use common::*;

const ALICE: &str = "192.0.2.10:5060";

fn invite(call_id: &str, branch: &str) -> Vec<u8> {
    request(
        "INVITE",
        "sip:room42@192.0.2.1",
        &format!("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{branch}"),
        "a1",
        None,
        call_id,
        1,
        "",
        SDP_OFFER,
    )
}

/// A confirmed call on `ep`; returns its handle and our To-tag.
fn confirmed_call(ep: &mut chorus_sip::Endpoint, now: Instant) -> (chorus_sip::CallHandle, String) {
    ep.handle_input(now, udp(ALICE), &invite("live-1", "live1"));
    drain(ep);
    let Some(Event::IncomingCall(call)) = events(ep).into_iter().next() else {
        panic!("no IncomingCall");
    };
    ep.answer(now, call.call, b"v=0\r\n".to_vec()).unwrap();
    let ok = text(&drain(ep)[0]);
    let to_tag = tag(&header(&ok, "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:alice@192.0.2.10",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1",
        "a1",
        Some(&to_tag),
        "live-1",
        1,
        "",
        "",
    );
    ep.handle_input(now, udp(ALICE), &ack);
    assert!(matches!(
        events(ep).as_slice(),
        [Event::CallConfirmed { .. }]
    ));
    (call.call, to_tag)
}

#[test]
fn unavailable_endpoint_refuses_new_invite_and_options_with_503_and_retry_after() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.set_unavailable(Some(120));
    assert_eq!(ep.unavailable(), Some(120));

    ep.handle_input(t0, udp(ALICE), &invite("new-1", "new1"));
    let sent = drain(&mut ep);
    assert_eq!(sent.len(), 1, "a 503 and no 100 Trying");
    assert_eq!(status(&sent[0]), Some(503));
    assert_eq!(
        header(&text(&sent[0]), "Retry-After").as_deref(),
        Some("120")
    );
    assert!(events(&mut ep).is_empty(), "the application never sees it");

    let options = request(
        "OPTIONS",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKopt1",
        "o1",
        None,
        "opt-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &options);
    let sent = drain(&mut ep);
    assert_eq!(status(&sent[0]), Some(503));
    assert_eq!(
        header(&text(&sent[0]), "Retry-After").as_deref(),
        Some("120")
    );

    // Available again: OPTIONS is 200 once more.
    ep.set_unavailable(None);
    let options = request(
        "OPTIONS",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKopt2",
        "o1",
        None,
        "opt-2",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &options);
    assert_eq!(status(&drain(&mut ep)[0]), Some(200));
}

#[test]
fn unavailable_endpoint_keeps_serving_existing_dialogs() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, to_tag) = confirmed_call(&mut ep, t0);
    ep.set_unavailable(Some(30));

    // A re-INVITE (session refresh) of the live call is still handled by the application.
    let reinvite = request(
        "INVITE",
        "sip:room42@192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre1",
        "a1",
        Some(&to_tag),
        "live-1",
        2,
        "",
        SDP_OFFER,
    );
    ep.handle_input(t0, udp(ALICE), &reinvite);
    let sent = drain(&mut ep);
    assert_eq!(status(&sent[0]), Some(100));
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::ReInvite { .. }]
    ));
    ep.answer_reinvite(t0, call, b"v=0\r\n".to_vec()).unwrap();
    assert_eq!(status(&drain(&mut ep)[0]), Some(200));

    // The caller's BYE ends it normally.
    let bye = request(
        "BYE",
        "sip:room42@192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1",
        "a1",
        Some(&to_tag),
        "live-1",
        3,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &bye);
    assert_eq!(status(&drain(&mut ep)[0]), Some(200));
    assert!(events(&mut ep).contains(&Event::CallEnded {
        call,
        reason: EndReason::RemoteBye
    }));
}

#[test]
fn application_503_while_unavailable_carries_retry_after() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.handle_input(t0, udp(ALICE), &invite("race-1", "race1"));
    drain(&mut ep);
    let Some(Event::IncomingCall(call)) = events(&mut ep).into_iter().next() else {
        panic!("no IncomingCall");
    };
    // The drain began after the INVITE reached the application.
    ep.set_unavailable(Some(60));
    ep.reject(t0, call.call, 503).unwrap();
    let sent = drain(&mut ep);
    assert_eq!(status(&sent[0]), Some(503));
    assert_eq!(
        header(&text(&sent[0]), "Retry-After").as_deref(),
        Some("60")
    );
}

#[test]
fn hangup_with_reason_puts_a_reason_header_on_the_bye() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, _) = confirmed_call(&mut ep, t0);
    ep.hangup_with_reason(t0, call, &Reason::sip(503, "Server shutting down"))
        .unwrap();
    let sent = drain(&mut ep);
    assert_eq!(sent.len(), 1);
    let bye = text(&sent[0]);
    assert!(bye.starts_with("BYE "), "{bye}");
    assert_eq!(
        header(&bye, "Reason").as_deref(),
        Some("SIP;cause=503;text=\"Server shutting down\"")
    );
    // A plain hangup has none.
    let mut ep = endpoint();
    let (call, _) = confirmed_call(&mut ep, t0);
    ep.hangup(t0, call).unwrap();
    assert_eq!(header(&text(&drain(&mut ep)[0]), "Reason"), None);
}
