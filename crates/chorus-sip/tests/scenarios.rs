//! Endpoint scenarios: raw SIP in, responses, requests and events out, in virtual time.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use chorus_sip::{ConnectionId, EndReason, Endpoint, Error, Event, Peer, Transport};
use common::*;

const VIA: &str = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1";
const ALICE: &str = "192.0.2.10:5060";

fn invite_with(
    ep: &mut Endpoint,
    now: Instant,
    from: Peer,
    via: &str,
    extra: &str,
    sdp: &str,
) -> (chorus_sip::IncomingCall, Vec<chorus_sip::Transmit>) {
    let inv = request(
        "INVITE",
        "sip:room42@192.0.2.1",
        via,
        "a1",
        None,
        "call-1",
        1,
        extra,
        sdp,
    );
    ep.handle_input(now, from, &inv);
    let sent = drain(ep);
    let ev = events(ep);
    let [Event::IncomingCall(call)] = ev.as_slice() else {
        panic!("expected IncomingCall, got {ev:?}");
    };
    (call.clone(), sent)
}

fn invite(ep: &mut Endpoint, now: Instant) -> chorus_sip::IncomingCall {
    invite_with(ep, now, udp(ALICE), VIA, "", SDP_OFFER).0
}

/// Answers and ACKs; returns our To-tag.
fn confirm(ep: &mut Endpoint, now: Instant, call: &chorus_sip::IncomingCall) -> String {
    ep.answer(now, call.call, b"v=0\r\n".to_vec()).unwrap();
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
    assert_eq!(
        events(ep),
        vec![Event::CallConfirmed {
            call: call.call,
            sdp: None
        }]
    );
    to_tag
}

#[test]
fn basic_call_invite_trying_answer_ack_bye() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, sent) = invite_with(&mut ep, t0, udp(ALICE), VIA, "", SDP_OFFER);
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0]), Some(100));
    assert_eq!(
        tag(&header(&text(&sent[0]), "To").unwrap()),
        None,
        "100 carries no To-tag"
    );
    assert_eq!(call.request_user.as_deref(), Some("room42"));
    assert_eq!(call.request_host, "192.0.2.1");
    assert_eq!(call.from, "sip:alice@192.0.2.10");
    assert_eq!(call.call_id, "call-1");
    assert_eq!(call.sdp.as_deref(), Some(SDP_OFFER.as_bytes()));
    assert_eq!(ep.active_calls(), 1);

    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    let ok = drain(&mut ep);
    assert_eq!(ok.len(), 1);
    let ok_text = text(&ok[0]);
    assert_eq!(status(&ok[0]), Some(200));
    assert_eq!(ok[0].peer, udp(ALICE));
    let to_tag = tag(&header(&ok_text, "To").unwrap()).expect("200 has our To-tag");
    assert_eq!(header(&ok_text, "Contact").unwrap(), "<sip:192.0.2.1:5060>");
    assert_eq!(header(&ok_text, "Content-Type").unwrap(), "application/sdp");
    assert_eq!(header(&ok_text, "Content-Length").unwrap(), "5");
    assert_eq!(header(&ok_text, "CSeq").unwrap(), "1 INVITE");
    assert_eq!(header(&ok_text, "Server").unwrap(), "Chorus/test");
    assert_eq!(header(&ok_text, "Via").unwrap(), VIA);
    assert_eq!(body(&ok_text), "v=0\r\n");

    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0 + ms(100), udp(ALICE), &ack);
    assert!(drain(&mut ep).is_empty(), "ACK gets no response");
    assert_eq!(
        events(&mut ep),
        vec![Event::CallConfirmed {
            call: call.call,
            sdp: None
        }]
    );

    let bye = request(
        "BYE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1",
        "a1",
        Some(&to_tag),
        "call-1",
        2,
        "",
        "",
    );
    ep.handle_input(t0 + ms(5000), udp(ALICE), &bye);
    let r = drain(&mut ep);
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), vec![Some(200)]);
    assert_eq!(header(&text(&r[0]), "CSeq").unwrap(), "2 BYE");
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::RemoteBye
        }]
    );
    assert_eq!(ep.active_calls(), 0);
    assert_eq!(
        ep.answer(t0, call.call, vec![]),
        Err(Error::UnknownCall(call.call))
    );
}

#[test]
fn cancel_gets_200_and_invite_487_and_ack_is_absorbed() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = invite(&mut ep, t0);
    let cancel = request(
        "CANCEL",
        "sip:room42@192.0.2.1",
        VIA,
        "a1",
        None,
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0 + ms(200), udp(ALICE), &cancel);
    let sent = drain(&mut ep);
    assert_eq!(
        sent.iter().map(status).collect::<Vec<_>>(),
        vec![Some(200), Some(487)]
    );
    assert_eq!(header(&text(&sent[0]), "CSeq").unwrap(), "1 CANCEL");
    assert_eq!(header(&text(&sent[1]), "CSeq").unwrap(), "1 INVITE");
    let t487 = tag(&header(&text(&sent[1]), "To").unwrap()).expect("487 carries a To-tag");
    assert_eq!(
        tag(&header(&text(&sent[0]), "To").unwrap()),
        Some(t487.clone())
    );
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::Cancelled
        }]
    );

    // ACK for the 487 uses the INVITE's branch and stops Timer G.
    let ack = request(
        "ACK",
        "sip:room42@192.0.2.1",
        VIA,
        "a1",
        Some(&t487),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0 + ms(300), udp(ALICE), &ack);
    assert!(drain(&mut ep).is_empty());
    while let Some(t) = ep.poll_timeout() {
        ep.handle_timeout(t);
        assert!(drain(&mut ep).is_empty(), "no 487 retransmission after ACK");
    }
    assert!(events(&mut ep).is_empty());
}

#[test]
fn cancel_without_matching_invite_is_481() {
    let mut ep = endpoint();
    let cancel = request(
        "CANCEL",
        "sip:room42@192.0.2.1",
        VIA,
        "a1",
        None,
        "nope",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &cancel);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(481)]
    );
}

#[test]
fn options_is_200_with_allow_accept_and_supported() {
    let mut ep = endpoint();
    let opt = request(
        "OPTIONS",
        "sip:192.0.2.1",
        VIA,
        "o1",
        None,
        "opt-1",
        7,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &opt);
    let sent = drain(&mut ep);
    let t = text(&sent[0]);
    assert_eq!(status(&sent[0]), Some(200));
    assert_eq!(
        header(&t, "Allow").unwrap(),
        "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
    );
    assert_eq!(header(&t, "Accept").unwrap(), "application/sdp");
    assert_eq!(header(&t, "Supported").unwrap(), "timer");
    assert!(tag(&header(&t, "To").unwrap()).is_some());
    assert_eq!(header(&t, "Content-Length").unwrap(), "0");
}

#[test]
fn unknown_method_is_501_and_register_is_405_with_allow() {
    let mut ep = endpoint();
    let m = request(
        "FROBNICATE",
        "sip:192.0.2.1",
        VIA,
        "o1",
        None,
        "x-1",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &m);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(501)]
    );
    let reg = request(
        "REGISTER",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKreg",
        "o1",
        None,
        "x-2",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &reg);
    let sent = drain(&mut ep);
    assert_eq!(status(&sent[0]), Some(405));
    assert!(header(&text(&sent[0]), "Allow").unwrap().contains("INVITE"));
    for method in ["SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PRACK"] {
        let via = format!("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{method}");
        let r = request(method, "sip:192.0.2.1", &via, "o1", None, "x-3", 1, "", "");
        ep.handle_input(Instant::now(), udp(ALICE), &r);
        assert_eq!(
            drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
            vec![Some(405)],
            "{method}"
        );
    }
}

#[test]
fn rport_is_filled_and_response_goes_to_source_port() {
    let mut ep = endpoint();
    let via = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr1;rport";
    let opt = request(
        "OPTIONS",
        "sip:192.0.2.1",
        via,
        "o1",
        None,
        "r-1",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp("203.0.113.7:40000"), &opt);
    let sent = drain(&mut ep);
    assert_eq!(sent[0].peer, udp("203.0.113.7:40000"));
    assert_eq!(
        header(&text(&sent[0]), "Via").unwrap(),
        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr1;rport=40000;received=203.0.113.7"
    );
}

#[test]
fn without_rport_response_goes_to_source_ip_and_via_port() {
    let mut ep = endpoint();
    let via = "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKr2";
    let opt = request(
        "OPTIONS",
        "sip:192.0.2.1",
        via,
        "o1",
        None,
        "r-2",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp("203.0.113.7:40000"), &opt);
    let sent = drain(&mut ep);
    assert_eq!(sent[0].peer, udp("203.0.113.7:5070"));
    assert_eq!(
        header(&text(&sent[0]), "Via").unwrap(),
        format!("{via};received=203.0.113.7")
    );
    // Sent-by matching the source address needs no received parameter.
    let via = "SIP/2.0/UDP 203.0.113.7;branch=z9hG4bKr3";
    let opt = request(
        "OPTIONS",
        "sip:192.0.2.1",
        via,
        "o1",
        None,
        "r-3",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp("203.0.113.7:40000"), &opt);
    let sent = drain(&mut ep);
    assert_eq!(sent[0].peer, udp("203.0.113.7:5060"));
    assert_eq!(header(&text(&sent[0]), "Via").unwrap(), via);
}

#[test]
fn all_vias_are_copied_in_order() {
    let mut ep = endpoint();
    let opt = request("OPTIONS", "sip:192.0.2.1", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKv1, SIP/2.0/UDP 192.0.2.11;branch=z9hG4bKv0\r\nVia: SIP/2.0/TCP 192.0.2.12;branch=z9hG4bKvv", "o1", None, "v-1", 1, "", "");
    ep.handle_input(Instant::now(), udp(ALICE), &opt);
    let sent = drain(&mut ep);
    assert_eq!(
        headers(&text(&sent[0]), "Via"),
        vec![
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKv1",
            "SIP/2.0/UDP 192.0.2.11;branch=z9hG4bKv0",
            "SIP/2.0/TCP 192.0.2.12;branch=z9hG4bKvv"
        ]
    );
}

#[test]
fn record_route_is_copied_into_2xx_and_used_as_route_on_our_bye() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let rr = "Record-Route: <sip:192.0.2.50;lr>, <sip:p2.example.com;lr>\r\n";
    let (call, _) = invite_with(&mut ep, t0, udp(ALICE), VIA, rr, SDP_OFFER);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    let ok = text(&drain(&mut ep)[0]);
    assert_eq!(
        headers(&ok, "Record-Route"),
        vec!["<sip:192.0.2.50;lr>", "<sip:p2.example.com;lr>"]
    );
    let to_tag = tag(&header(&ok, "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &ack);
    events(&mut ep);

    ep.hangup(t0 + ms(1000), call.call).unwrap();
    let bye = drain(&mut ep);
    assert_eq!(bye.len(), 1);
    assert_eq!(
        bye[0].peer,
        udp("192.0.2.50:5060"),
        "BYE goes to the first route"
    );
    let b = text(&bye[0]);
    assert!(
        b.starts_with("BYE sip:alice@192.0.2.10:5060 SIP/2.0\r\n"),
        "{b}"
    );
    assert_eq!(
        headers(&b, "Route"),
        vec!["<sip:192.0.2.50;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(tag(&header(&b, "From").unwrap()), Some(to_tag.clone()));
    assert!(header(&b, "From").unwrap().contains("sip:room42@192.0.2.1"));
    assert_eq!(tag(&header(&b, "To").unwrap()).as_deref(), Some("a1"));
    assert!(header(&b, "Via").unwrap().contains(";branch=z9hG4bK"));
    assert!(header(&b, "CSeq").unwrap().ends_with(" BYE"));
    assert_eq!(header(&b, "Call-ID").unwrap(), "call-1");
    assert_eq!(header(&b, "Max-Forwards").unwrap(), "70");
    assert!(
        events(&mut ep).is_empty(),
        "call ends when the BYE completes"
    );
    assert_eq!(
        ep.hangup(t0, call.call),
        Err(Error::InvalidState {
            call: call.call,
            state: "terminating"
        })
    );

    let branch = header(&b, "Via").unwrap();
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: {branch}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&b, "From").unwrap(),
        header(&b, "To").unwrap(),
        header(&b, "CSeq").unwrap()
    );
    ep.handle_input(t0 + ms(1100), udp("192.0.2.50:5060"), resp.as_bytes());
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::LocalBye
        }]
    );
    assert!(drain(&mut ep).is_empty());
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn bye_goes_to_rport_source_or_contact_literal() {
    // rport: the INVITE's source address wins over the Contact.
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, _) = invite_with(
        &mut ep,
        t0,
        udp("198.51.100.9:6000"),
        "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKnat;rport",
        "",
        SDP_OFFER,
    );
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    drain(&mut ep);
    ep.hangup(t0, call.call).unwrap();
    let bye = drain(&mut ep);
    assert_eq!(bye[0].peer, udp("198.51.100.9:6000"));

    // No rport: the Contact's IP literal.
    let mut ep = endpoint();
    let (call, _) = invite_with(
        &mut ep,
        t0,
        udp("198.51.100.9:6000"),
        "SIP/2.0/UDP 198.51.100.9:6000;branch=z9hG4bKnonat",
        "",
        SDP_OFFER,
    );
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    drain(&mut ep);
    ep.hangup(t0, call.call).unwrap();
    let bye = drain(&mut ep);
    assert_eq!(
        bye[0].peer,
        udp("192.0.2.10:5060"),
        "Contact is sip:alice@192.0.2.10:5060"
    );
}

#[test]
fn reinvite_for_hold_is_answered_and_session_continues() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = invite(&mut ep, t0);
    let to_tag = confirm(&mut ep, t0, &call);
    let hold = SDP_OFFER.replace("a=sendrecv", "a=sendonly");
    let re = request(
        "INVITE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre1",
        "a1",
        Some(&to_tag),
        "call-1",
        2,
        "",
        &hold,
    );
    ep.handle_input(t0 + ms(1000), udp(ALICE), &re);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(100)]
    );
    assert_eq!(
        events(&mut ep),
        vec![Event::ReInvite {
            call: call.call,
            sdp: Some(hold.clone().into_bytes())
        }]
    );
    ep.answer_reinvite(t0 + ms(1000), call.call, b"v=0 hold\r\n".to_vec())
        .unwrap();
    let ok = drain(&mut ep);
    let okt = text(&ok[0]);
    assert_eq!(status(&ok[0]), Some(200));
    assert_eq!(header(&okt, "CSeq").unwrap(), "2 INVITE");
    assert_eq!(
        tag(&header(&okt, "To").unwrap()),
        Some(to_tag.clone()),
        "same dialog tag"
    );
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack2",
        "a1",
        Some(&to_tag),
        "call-1",
        2,
        "",
        "",
    );
    ep.handle_input(t0 + ms(1100), udp(ALICE), &ack);
    assert_eq!(
        events(&mut ep),
        vec![Event::ReInviteConfirmed {
            call: call.call,
            sdp: None
        }]
    );
    assert_eq!(ep.active_calls(), 1);

    // A re-INVITE with an old CSeq is out of order: 500.
    let old = request(
        "INVITE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre0",
        "a1",
        Some(&to_tag),
        "call-1",
        2,
        "",
        &hold,
    );
    ep.handle_input(t0 + ms(1200), udp(ALICE), &old);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(500)]
    );

    // Rejecting a re-INVITE keeps the dialog.
    let re3 = request(
        "INVITE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre3",
        "a1",
        Some(&to_tag),
        "call-1",
        3,
        "",
        &hold,
    );
    ep.handle_input(t0 + ms(1300), udp(ALICE), &re3);
    drain(&mut ep);
    events(&mut ep);
    ep.reject_reinvite(t0 + ms(1300), call.call, 488).unwrap();
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(488)]
    );
    let info = request(
        "INFO",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinfo",
        "a1",
        Some(&to_tag),
        "call-1",
        4,
        "",
        "",
    );
    ep.handle_input(t0 + ms(1400), udp(ALICE), &info);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(200)]
    );
    assert!(events(&mut ep).is_empty());
}

#[test]
fn reinvite_while_2xx_unacked_is_491_and_while_pending_is_500() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = invite(&mut ep, t0);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    let to_tag = tag(&header(&text(&drain(&mut ep)[0]), "To").unwrap()).unwrap();
    let re = request(
        "INVITE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre1",
        "a1",
        Some(&to_tag),
        "call-1",
        2,
        "",
        SDP_OFFER,
    );
    ep.handle_input(t0, udp(ALICE), &re);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(491)]
    );

    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &ack);
    events(&mut ep);
    let re = request(
        "INVITE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre3",
        "a1",
        Some(&to_tag),
        "call-1",
        3,
        "",
        SDP_OFFER,
    );
    ep.handle_input(t0, udp(ALICE), &re);
    drain(&mut ep);
    let re = request(
        "INVITE",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre4",
        "a1",
        Some(&to_tag),
        "call-1",
        4,
        "",
        SDP_OFFER,
    );
    ep.handle_input(t0, udp(ALICE), &re);
    let r = drain(&mut ep);
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), vec![Some(500)]);
    assert!(header(&text(&r[0]), "Retry-After").is_some());
}

#[test]
fn late_offer_answer_arrives_in_ack() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, _) = invite_with(&mut ep, t0, udp(ALICE), VIA, "", "");
    assert_eq!(call.sdp, None);
    ep.answer(t0, call.call, b"v=0 offer\r\n".to_vec()).unwrap();
    let to_tag = tag(&header(&text(&drain(&mut ep)[0]), "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        SDP_OFFER,
    );
    ep.handle_input(t0, udp(ALICE), &ack);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallConfirmed {
            call: call.call,
            sdp: Some(SDP_OFFER.as_bytes().to_vec())
        }]
    );
}

#[test]
fn invite_retransmission_is_absorbed_and_last_response_resent() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let inv = request(
        "INVITE",
        "sip:room42@192.0.2.1",
        VIA,
        "a1",
        None,
        "call-1",
        1,
        "",
        SDP_OFFER,
    );
    ep.handle_input(t0, udp(ALICE), &inv);
    let first = drain(&mut ep);
    let Some(Event::IncomingCall(call)) = ep.poll_event() else {
        panic!()
    };
    ep.handle_input(t0 + ms(500), udp(ALICE), &inv);
    let again = drain(&mut ep);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, first[0].payload, "same 100 resent");
    assert!(events(&mut ep).is_empty(), "no second IncomingCall");

    ep.answer(t0 + ms(600), call.call, b"v=0\r\n".to_vec())
        .unwrap();
    let ok = drain(&mut ep);
    ep.handle_input(t0 + ms(700), udp(ALICE), &inv);
    let again = drain(&mut ep);
    assert_eq!(again[0].payload, ok[0].payload, "same 200 resent");
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.active_calls(), 1);
}

#[test]
fn bye_outside_a_dialog_is_481_and_info_too() {
    let mut ep = endpoint();
    let bye = request(
        "BYE",
        "sip:192.0.2.1",
        VIA,
        "a1",
        Some("nope"),
        "zzz",
        2,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &bye);
    let info = request(
        "INFO",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKi",
        "a1",
        Some("nope"),
        "zzz",
        3,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &info);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(481), Some(481)]
    );
}

#[test]
fn hangup_before_answer_rejects_with_480_and_reject_ends_call() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = invite(&mut ep, t0);
    ep.hangup(t0, call.call).unwrap();
    let r = drain(&mut ep);
    assert_eq!(status(&r[0]), Some(480));
    assert!(tag(&header(&text(&r[0]), "To").unwrap()).is_some());
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::Rejected(480)
        }]
    );
    assert_eq!(ep.hangup(t0, call.call), Err(Error::UnknownCall(call.call)));
    assert_eq!(
        ep.reject(t0, call.call, 200),
        Err(Error::InvalidStatus(200))
    );
}

#[test]
fn tcp_responses_go_to_the_connection_without_retransmissions() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let peer = Peer::tcp(addr("192.0.2.10:50123"), ConnectionId(7));
    let (call, sent) = invite_with(
        &mut ep,
        t0,
        peer,
        "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKtcp1",
        "",
        SDP_OFFER,
    );
    assert_eq!(sent[0].peer, peer);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    let ok = drain(&mut ep);
    assert_eq!(ok[0].peer, peer);
    assert_eq!(ok[0].peer.transport, Transport::Tcp);
    assert!(header(&text(&ok[0]), "Contact")
        .unwrap()
        .contains(";transport=tcp"));
    let mut t = t0;
    while let Some(next) = ep.poll_timeout() {
        if next > t0 + Duration::from_secs(20) {
            break;
        }
        t = next;
        ep.handle_timeout(t);
        assert!(drain(&mut ep).is_empty(), "no 2xx retransmission over TCP");
    }
    let _ = t;
    ep.connection_closed(ConnectionId(7));
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::TransportError
        }]
    );
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn udp_request_with_content_length_beyond_body_is_400() {
    let mut ep = endpoint();
    let mut inv = request(
        "INVITE",
        "sip:room42@192.0.2.1",
        VIA,
        "a1",
        None,
        "call-1",
        1,
        "",
        SDP_OFFER,
    );
    inv.truncate(inv.len() - 10);
    ep.handle_input(Instant::now(), udp(ALICE), &inv);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(400)]
    );
    assert_eq!(ep.stats().rejected_400, 1);
    assert!(events(&mut ep).is_empty());
}

#[test]
fn request_without_via_is_dropped_and_counted() {
    let mut ep = endpoint();
    let msg = b"OPTIONS sip:192.0.2.1 SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    ep.handle_input(Instant::now(), udp(ALICE), msg);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(ep.stats().dropped_other, 1);
}

#[test]
fn compact_and_folded_headers_are_understood() {
    let mut ep = endpoint();
    let msg = "OPTIONS sip:192.0.2.1 SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.10:5060\r\n ;branch=z9hG4bKcf\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: cf-1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
    ep.handle_input(Instant::now(), udp(ALICE), msg.as_bytes());
    let sent = drain(&mut ep);
    assert_eq!(status(&sent[0]), Some(200));
    assert_eq!(
        header(&text(&sent[0]), "Via").unwrap(),
        "SIP/2.0/UDP 192.0.2.10:5060 ;branch=z9hG4bKcf"
    );
    assert_eq!(header(&text(&sent[0]), "Call-ID").unwrap(), "cf-1");
}
