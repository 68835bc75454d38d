//! Retransmission schedules in virtual time (RFC 3261 §13.3.1.4, §17.1.2.2, §17.2.1, §17.2.2).
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use chorus_sip::{ConnectionId, EndReason, Endpoint, Event, IncomingCall, Peer, Transmit};
use common::*;

const VIA: &str = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1";
const ALICE: &str = "192.0.2.10:5060";

/// Items stamped with seconds since the start of the test.
type Timed<T> = Vec<(f64, T)>;

/// Steps virtual time from timer to timer up to `end`, collecting what is sent
/// (seconds since `t0`) and the events.
fn run_until(ep: &mut Endpoint, t0: Instant, end: f64) -> (Timed<Transmit>, Timed<Event>) {
    let mut sent = Vec::new();
    let mut evs = Vec::new();
    while let Some(t) = ep.poll_timeout() {
        if secs(t0, t) > end + 1e-9 {
            break;
        }
        ep.handle_timeout(t);
        sent.extend(drain(ep).into_iter().map(|x| (secs(t0, t), x)));
        evs.extend(events(ep).into_iter().map(|e| (secs(t0, t), e)));
    }
    (sent, evs)
}

fn times(sent: &[(f64, Transmit)]) -> Vec<f64> {
    sent.iter()
        .map(|(t, _)| (t * 1000.0).round() / 1000.0)
        .collect()
}

fn incoming(ep: &mut Endpoint, t0: Instant, peer: Peer, via: &str) -> IncomingCall {
    let inv = request(
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
    ep.handle_input(t0, peer, &inv);
    drain(ep);
    match events(ep).pop() {
        Some(Event::IncomingCall(c)) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn invite_2xx_retransmits_at_t1_doubling_capped_at_t2_until_ack() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = incoming(&mut ep, t0, udp(ALICE), VIA);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    let ok = drain(&mut ep);
    let (sent, evs) = run_until(&mut ep, t0, 20.0);
    assert_eq!(times(&sent), vec![0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]);
    assert!(sent
        .iter()
        .all(|(_, t)| t.payload == ok[0].payload && t.peer == udp(ALICE)));
    assert!(evs.is_empty());
    assert_eq!(ep.stats().retransmissions, 7);

    let to_tag = tag(&header(&text(&ok[0]), "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0 + Duration::from_secs(20), udp(ALICE), &ack);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallConfirmed {
            call: call.call,
            sdp: None
        }]
    );
    let (sent, evs) = run_until(&mut ep, t0, 120.0);
    assert!(sent.is_empty(), "ACK stops the 2xx retransmissions");
    assert!(evs.is_empty());
    assert_eq!(ep.active_calls(), 1);
}

#[test]
fn unacked_2xx_gives_up_after_64_t1_and_sends_bye() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = incoming(&mut ep, t0, udp(ALICE), VIA);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    drain(&mut ep);
    let (sent, evs) = run_until(&mut ep, t0, 32.0);
    let (resends, bye): (Vec<_>, Vec<_>) =
        sent.into_iter().partition(|(_, t)| status(t) == Some(200));
    assert_eq!(
        times(&resends),
        vec![0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(times(&bye), vec![32.0]);
    assert!(text(&bye[0].1).starts_with("BYE sip:alice@192.0.2.10:5060 SIP/2.0"));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, 32.0);
    assert_eq!(
        evs[0].1,
        Event::CallEnded {
            call: call.call,
            reason: EndReason::AckTimeout
        }
    );
    // The BYE still runs its own transaction but reports nothing more.
    let (_, evs) = run_until(&mut ep, t0, 200.0);
    assert!(evs.is_empty());
    assert_eq!(ep.poll_timeout(), None, "every timer is gone at the end");
}

#[test]
fn bye_retransmits_per_timer_e_until_timer_f() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = incoming(&mut ep, t0, udp(ALICE), VIA);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    let ok = drain(&mut ep);
    let to_tag = tag(&header(&text(&ok[0]), "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack",
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &ack);
    events(&mut ep);
    ep.hangup(t0, call.call).unwrap();
    let bye = drain(&mut ep);
    assert_eq!(bye.len(), 1);
    let (sent, evs) = run_until(&mut ep, t0, 40.0);
    assert_eq!(
        times(&sent),
        vec![0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert!(sent.iter().all(|(_, t)| t.payload == bye[0].payload));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, 32.0);
    assert_eq!(
        evs[0].1,
        Event::CallEnded {
            call: call.call,
            reason: EndReason::LocalByeTimeout
        }
    );
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn bye_provisional_response_slows_timer_e_to_t2() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = incoming(&mut ep, t0, udp(ALICE), VIA);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    drain(&mut ep);
    ep.hangup(t0, call.call).unwrap();
    let b = text(&drain(&mut ep)[0]);
    let resp = format!(
        "SIP/2.0 100 Trying\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&b, "Via").unwrap(),
        header(&b, "From").unwrap(),
        header(&b, "To").unwrap(),
        header(&b, "CSeq").unwrap()
    );
    ep.handle_input(t0 + Duration::from_millis(100), udp(ALICE), resp.as_bytes());
    let (sent, _) = run_until(&mut ep, t0, 16.0);
    // Timer E fired at 0.5 was already armed; from then on every T2.
    assert_eq!(times(&sent), vec![0.5, 4.5, 8.5, 12.5]);
}

#[test]
fn non_2xx_final_retransmits_per_timer_g_until_timer_h() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = incoming(&mut ep, t0, udp(ALICE), VIA);
    ep.reject(t0, call.call, 486).unwrap();
    let busy = drain(&mut ep);
    assert_eq!(status(&busy[0]), Some(486));
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call: call.call,
            reason: EndReason::Rejected(486)
        }]
    );
    let (sent, evs) = run_until(&mut ep, t0, 100.0);
    assert_eq!(
        times(&sent),
        vec![0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert!(sent.iter().all(|(_, t)| t.payload == busy[0].payload));
    assert!(evs.is_empty());
    assert_eq!(ep.poll_timeout(), None, "Timer H ended the transaction");
}

#[test]
fn ack_for_non_2xx_stops_timer_g_and_timer_i_absorbs_ack_retransmissions() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let call = incoming(&mut ep, t0, udp(ALICE), VIA);
    ep.reject(t0, call.call, 488).unwrap();
    let r = drain(&mut ep);
    let to_tag = tag(&header(&text(&r[0]), "To").unwrap()).unwrap();
    let (sent, _) = run_until(&mut ep, t0, 2.0);
    assert_eq!(times(&sent), vec![0.5, 1.5]);
    let ack = request(
        "ACK",
        "sip:room42@192.0.2.1",
        VIA,
        "a1",
        Some(&to_tag),
        "call-1",
        1,
        "",
        "",
    );
    ep.handle_input(t0 + Duration::from_secs(2), udp(ALICE), &ack);
    ep.handle_input(t0 + Duration::from_secs(3), udp(ALICE), &ack);
    assert!(drain(&mut ep).is_empty());
    // Timer I = T4 after the first ACK.
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(7)));
    let (sent, _) = run_until(&mut ep, t0, 100.0);
    assert!(sent.is_empty());
    assert_eq!(ep.poll_timeout(), None);
    assert_eq!(
        ep.stats().dropped_other,
        0,
        "ACK retransmission absorbed, not dropped"
    );
}

#[test]
fn tcp_sends_no_retransmissions() {
    let t0 = Instant::now();
    let peer = Peer::tcp(addr("192.0.2.10:50123"), ConnectionId(1));
    let via = "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKtcp";

    // Unacked 2xx: nothing until Timer-H-like give-up at 64*T1, then one BYE.
    let mut ep = endpoint();
    let call = incoming(&mut ep, t0, peer, via);
    ep.answer(t0, call.call, b"v=0\r\n".to_vec()).unwrap();
    assert_eq!(drain(&mut ep).len(), 1);
    let (sent, evs) = run_until(&mut ep, t0, 100.0);
    assert_eq!(times(&sent), vec![32.0]);
    assert!(text(&sent[0].1).starts_with("BYE "));
    assert!(text(&sent[0].1).contains("SIP/2.0/TCP"));
    assert_eq!(sent[0].1.peer, peer);
    assert_eq!(
        evs[0].1,
        Event::CallEnded {
            call: call.call,
            reason: EndReason::AckTimeout
        }
    );

    // Non-2xx final: no Timer G over TCP; Timer H still ends the transaction.
    let mut ep = endpoint();
    let call = incoming(&mut ep, t0, peer, via);
    ep.reject(t0, call.call, 486).unwrap();
    drain(&mut ep);
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    let (sent, _) = run_until(&mut ep, t0, 100.0);
    assert!(sent.is_empty());

    // Non-INVITE: Timer J is zero, so a repeat is a new transaction.
    let mut ep = endpoint();
    let opt = request("OPTIONS", "sip:192.0.2.1", via, "o", None, "o-1", 1, "", "");
    ep.handle_input(t0, peer, &opt);
    assert_eq!(drain(&mut ep).len(), 1);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn non_invite_server_transaction_absorbs_retransmission_and_expires_after_timer_j() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let opt = request("OPTIONS", "sip:192.0.2.1", VIA, "o", None, "o-1", 1, "", "");
    ep.handle_input(t0, udp(ALICE), &opt);
    let first = drain(&mut ep);
    assert_eq!(
        ep.poll_timeout(),
        Some(t0 + Duration::from_secs(32)),
        "Timer J = 64*T1"
    );
    ep.handle_input(t0 + Duration::from_secs(1), udp(ALICE), &opt);
    let again = drain(&mut ep);
    assert_eq!(
        again[0].payload, first[0].payload,
        "retransmission gets the same response"
    );
    assert_eq!(ep.stats().retransmissions, 1);
    assert_eq!(ep.stats().responses_sent, 1);
    let (sent, _) = run_until(&mut ep, t0, 32.0);
    assert!(
        sent.is_empty(),
        "server transactions never retransmit non-INVITE responses"
    );
    assert_eq!(ep.poll_timeout(), None);
    ep.handle_input(t0 + Duration::from_secs(33), udp(ALICE), &opt);
    let late = drain(&mut ep);
    assert_ne!(
        late[0].payload, first[0].payload,
        "a new transaction with a new To-tag"
    );
    assert_eq!(ep.stats().responses_sent, 2);
}
