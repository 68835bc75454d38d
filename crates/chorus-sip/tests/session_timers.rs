//! RFC 4028 session timers in virtual time: 422 with Min-SE, who refreshes, refreshes by
//! re-INVITE and UPDATE restarting the session clock, our own UPDATE refreshes, and the BYE
//! when a session expires (§10).
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use chorus_sip::{CallHandle, EndReason, Endpoint, Event, Transmit};
use common::*;

const ALICE: &str = "192.0.2.10:5060";
const CALL_ID: &str = "st-1";
const TIMER: &str = "Supported: timer\r\n";
const ALLOW_UPDATE: &str = "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n";

fn via(branch: &str) -> String {
    format!("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{branch}")
}

/// Sends an INVITE with `extra` headers; returns what the endpoint sent and the new call.
fn invite(ep: &mut Endpoint, t: Instant, extra: &str) -> (Vec<Transmit>, Option<CallHandle>) {
    let inv = request(
        "INVITE",
        "sip:room42@192.0.2.1",
        &via("inv"),
        "a1",
        None,
        CALL_ID,
        1,
        extra,
        SDP_OFFER,
    );
    ep.handle_input(t, udp(ALICE), &inv);
    let sent = drain(ep);
    let call = events(ep).into_iter().find_map(|e| match e {
        Event::IncomingCall(c) => Some(c.call),
        _ => None,
    });
    (sent, call)
}

/// A confirmed call: INVITE with `extra`, our 200 (returned), the ACK.
fn established(ep: &mut Endpoint, t0: Instant, extra: &str) -> (CallHandle, String, String) {
    let (_, call) = invite(ep, t0, extra);
    let call = call.expect("the INVITE reaches the application");
    ep.answer(t0, call, b"v=0\r\n".to_vec()).unwrap();
    let ok = text(&drain(ep)[0]);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to_tag = tag(&header(&ok, "To").unwrap()).unwrap();
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        &via("ack1"),
        "a1",
        Some(&to_tag),
        CALL_ID,
        1,
        "",
        "",
    );
    ep.handle_input(t0, udp(ALICE), &ack);
    assert!(matches!(
        events(ep).as_slice(),
        [Event::CallConfirmed { .. }]
    ));
    (call, to_tag, ok)
}

/// Items stamped with seconds since the start of the test.
type Timed<T> = Vec<(f64, T)>;

/// Steps virtual time from timer to timer up to `end` seconds after `t0`.
fn run_until(ep: &mut Endpoint, t0: Instant, end: f64) -> (Timed<Transmit>, Timed<Event>) {
    let (mut sent, mut evs) = (Vec::new(), Vec::new());
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

fn at(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// The requests of `method` we sent, each once (retransmissions left out).
fn requests<'a>(sent: &'a [(f64, Transmit)], method: &str) -> Vec<(f64, &'a Transmit)> {
    let mut seen = std::collections::HashSet::new();
    sent.iter()
        .filter(|(_, t)| text(t).starts_with(&format!("{method} ")))
        .filter(|(_, t)| seen.insert(t.payload.clone()))
        .map(|(s, t)| (*s, t))
        .collect()
}

fn first_lines(sent: &[(f64, Transmit)]) -> Vec<(f64, String)> {
    sent.iter()
        .map(|(s, t)| (*s, text(t).lines().next().unwrap_or_default().to_string()))
        .collect()
}

fn ended(evs: &[(f64, Event)]) -> Vec<(f64, EndReason)> {
    evs.iter()
        .filter_map(|(s, e)| match e {
            Event::CallEnded { reason, .. } => Some((*s, reason.clone())),
            _ => None,
        })
        .collect()
}

/// Answers one of our in-dialog requests with `status` and extra header lines.
fn respond(ep: &mut Endpoint, t: Instant, request: &Transmit, status: u16, extra: &str) {
    let req = text(request);
    let copy = |name: &str| format!("{name}: {}\r\n", header(&req, name).unwrap());
    let response = format!(
        "SIP/2.0 {status} Whatever\r\n{}{}{}{}{}{extra}Content-Length: 0\r\n\r\n",
        copy("Via"),
        copy("From"),
        copy("To"),
        copy("Call-ID"),
        copy("CSeq"),
    );
    ep.handle_input(t, udp(ALICE), response.as_bytes());
}

#[test]
fn an_interval_below_our_min_se_is_refused_with_422_and_our_min_se() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (sent, call) = invite(
        &mut ep,
        t0,
        &format!("{TIMER}Session-Expires: 60\r\nMin-SE: 60\r\n"),
    );
    assert_eq!(call, None, "the application never sees it");
    let last = text(sent.last().unwrap());
    assert!(
        last.starts_with("SIP/2.0 422 Session Interval Too Small"),
        "{last}"
    );
    assert_eq!(header(&last, "Min-SE").as_deref(), Some("90"));
}

#[test]
fn a_uac_without_timer_support_is_not_refused_but_its_interval_is_raised() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    // A proxy inserted Session-Expires; the UAC allows UPDATE, so we refresh.
    let (_, _, ok) = established(
        &mut ep,
        t0,
        &format!("{ALLOW_UPDATE}Session-Expires: 60\r\n"),
    );
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("90;refresher=uas")
    );
    assert_eq!(
        header(&ok, "Require"),
        None,
        "the UAC would not understand it"
    );
}

#[test]
fn the_uac_refreshes_when_asked_and_the_session_ends_with_bye_without_a_refresh() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, _, ok) = established(
        &mut ep,
        t0,
        &format!("{TIMER}Session-Expires: 120;refresher=uac\r\n"),
    );
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    assert_eq!(header(&ok, "Require").as_deref(), Some("timer"));
    assert_eq!(header(&ok, "Supported").as_deref(), Some("timer"));
    let (sent, evs) = run_until(&mut ep, t0, 200.0);
    // §10: the interval less a third of it, at most 32 s: 120 - 32.
    let byes = requests(&sent, "BYE");
    assert_eq!(byes.len(), 1, "{:?}", first_lines(&sent));
    assert_eq!(byes[0].0, 88.0);
    let bye = text(byes[0].1);
    assert!(header(&bye, "Reason").unwrap().starts_with("SIP;cause=408"));
    assert_eq!(ended(&evs), vec![(88.0, EndReason::SessionExpired)]);
    assert_eq!(ep.active_calls(), 0);
    let _ = call;
}

#[test]
fn a_uac_that_leaves_the_refresher_to_us_is_asked_to_refresh() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, _, ok) = established(
        &mut ep,
        t0,
        &format!("{TIMER}{ALLOW_UPDATE}Session-Expires: 1800\r\n"),
    );
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("1800;refresher=uac")
    );
    assert_eq!(header(&ok, "Require").as_deref(), Some("timer"));
}

#[test]
fn a_uac_supporting_timers_that_asks_for_none_gets_our_interval() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, _, ok) = established(&mut ep, t0, TIMER);
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("1800;refresher=uac")
    );
    let (sent, evs) = run_until(&mut ep, t0, 2000.0);
    assert_eq!(requests(&sent, "BYE")[0].0, 1768.0);
    assert_eq!(ended(&evs), vec![(1768.0, EndReason::SessionExpired)]);
}

#[test]
fn without_timer_support_or_session_expires_there_is_no_timer() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, _, ok) = established(&mut ep, t0, "");
    assert_eq!(header(&ok, "Session-Expires"), None);
    assert_eq!(header(&ok, "Require"), None);
    let (sent, evs) = run_until(&mut ep, t0, 7200.0);
    assert!(requests(&sent, "BYE").is_empty());
    assert!(evs.is_empty());
    assert_eq!(ep.active_calls(), 1);
}

#[test]
fn a_refresh_asked_of_us_without_update_in_allow_asserts_no_timer() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, _, ok) = established(
        &mut ep,
        t0,
        &format!("{TIMER}Session-Expires: 300;refresher=uas\r\n"),
    );
    // We cannot refresh by re-INVITE; §9 lets a UAS leave Session-Expires out.
    assert_eq!(header(&ok, "Session-Expires"), None);
    let (sent, evs) = run_until(&mut ep, t0, 7200.0);
    assert!(
        sent.is_empty() && evs.is_empty(),
        "{:?} {evs:?}",
        first_lines(&sent)
    );
}

#[test]
fn a_reinvite_refresh_restarts_the_session_clock() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, to_tag, _) = established(
        &mut ep,
        t0,
        &format!("{TIMER}Session-Expires: 120;refresher=uac\r\n"),
    );
    let (sent, _) = run_until(&mut ep, t0, 60.0);
    assert!(requests(&sent, "BYE").is_empty());
    let reinvite = request(
        "INVITE",
        "sip:192.0.2.1",
        &via("re1"),
        "a1",
        Some(&to_tag),
        CALL_ID,
        2,
        &format!("{TIMER}Session-Expires: 120;refresher=uac\r\n"),
        SDP_OFFER,
    );
    ep.handle_input(at(t0, 60), udp(ALICE), &reinvite);
    drain(&mut ep);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::ReInvite { .. }]
    ));
    ep.answer_reinvite(at(t0, 60), call, b"v=0\r\n".to_vec())
        .unwrap();
    let ok = text(&drain(&mut ep)[0]);
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    let ack = request(
        "ACK",
        "sip:192.0.2.1",
        &via("ack2"),
        "a1",
        Some(&to_tag),
        CALL_ID,
        2,
        "",
        "",
    );
    ep.handle_input(at(t0, 60), udp(ALICE), &ack);
    events(&mut ep);
    let (sent, evs) = run_until(&mut ep, t0, 300.0);
    let byes = requests(&sent, "BYE");
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].0, 148.0, "60 s + 88 s");
    assert_eq!(ended(&evs), vec![(148.0, EndReason::SessionExpired)]);
}

#[test]
fn an_update_refresh_is_answered_by_the_endpoint_and_restarts_the_clock() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, to_tag, ok) = established(
        &mut ep,
        t0,
        &format!("{TIMER}Session-Expires: 120;refresher=uac\r\n"),
    );
    assert!(header(&ok, "Allow").unwrap().contains("UPDATE"));
    let update = request(
        "UPDATE",
        "sip:192.0.2.1",
        &via("up1"),
        "a1",
        Some(&to_tag),
        CALL_ID,
        2,
        &format!("{TIMER}Session-Expires: 120;refresher=uac\r\n"),
        "",
    );
    ep.handle_input(at(t0, 80), udp(ALICE), &update);
    let sent = drain(&mut ep);
    let ok = text(&sent[0]);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    assert_eq!(header(&ok, "Require").as_deref(), Some("timer"));
    assert!(header(&ok, "Contact").is_some());
    assert!(
        events(&mut ep).is_empty(),
        "a refresh without an offer needs no application"
    );
    let (sent, evs) = run_until(&mut ep, t0, 300.0);
    assert_eq!(requests(&sent, "BYE")[0].0, 168.0, "80 s + 88 s");
    assert_eq!(ended(&evs), vec![(168.0, EndReason::SessionExpired)]);
}

#[test]
fn a_refresh_below_our_min_se_is_422_and_the_session_keeps_its_clock() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, to_tag, _) = established(
        &mut ep,
        t0,
        &format!("{TIMER}Session-Expires: 120;refresher=uac\r\n"),
    );
    let update = request(
        "UPDATE",
        "sip:192.0.2.1",
        &via("up2"),
        "a1",
        Some(&to_tag),
        CALL_ID,
        2,
        &format!("{TIMER}Session-Expires: 30\r\n"),
        "",
    );
    ep.handle_input(at(t0, 50), udp(ALICE), &update);
    let refused = text(&drain(&mut ep)[0]);
    assert!(refused.starts_with("SIP/2.0 422"), "{refused}");
    assert_eq!(header(&refused, "Min-SE").as_deref(), Some("90"));
    let (sent, _) = run_until(&mut ep, t0, 300.0);
    assert_eq!(requests(&sent, "BYE")[0].0, 88.0);
}

#[test]
fn when_asked_to_refresh_we_send_update_at_half_the_interval() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (_, _, ok) = established(
        &mut ep,
        t0,
        &format!("{TIMER}{ALLOW_UPDATE}Session-Expires: 120;refresher=uas\r\n"),
    );
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("120;refresher=uas")
    );
    assert_eq!(header(&ok, "Require").as_deref(), Some("timer"));
    // First refresh at 60 s; the peer keeps us as refresher: the next one at 120 s.
    let (sent, evs) = run_until(&mut ep, t0, 60.0);
    let updates = requests(&sent, "UPDATE");
    assert_eq!(updates.len(), 1, "{:?}", first_lines(&sent));
    assert_eq!(updates[0].0, 60.0);
    let update = text(updates[0].1);
    assert!(update.starts_with("UPDATE sip:alice@192.0.2.10:5060 SIP/2.0"));
    assert_eq!(
        header(&update, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    assert_eq!(header(&update, "Supported").as_deref(), Some("timer"));
    assert!(header(&update, "Contact").is_some());
    assert!(header(&update, "CSeq").unwrap().ends_with(" UPDATE"));
    assert!(evs.is_empty());
    let first = updates[0].1;
    respond(
        &mut ep,
        at(t0, 60),
        first,
        200,
        "Session-Expires: 120;refresher=uac\r\n",
    );
    let (sent, evs) = run_until(&mut ep, t0, 120.0);
    let updates = requests(&sent, "UPDATE");
    assert_eq!(
        updates.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![120.0]
    );
    assert!(evs.is_empty(), "{evs:?}");
    // This refresh gets no answer: the session expires 88 s after the last one that
    // succeeded (§10), before the refresh's own transaction would time out (Timer F).
    let (sent, evs) = run_until(&mut ep, t0, 400.0);
    let byes = requests(&sent, "BYE");
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].0, 148.0);
    assert_eq!(ended(&evs), vec![(148.0, EndReason::SessionExpired)]);
}

#[test]
fn a_422_to_our_refresh_is_retried_with_the_peers_min_se() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    established(
        &mut ep,
        t0,
        &format!("{TIMER}{ALLOW_UPDATE}Session-Expires: 120;refresher=uas\r\n"),
    );
    let (sent, _) = run_until(&mut ep, t0, 60.0);
    let first = requests(&sent, "UPDATE")[0].1;
    respond(&mut ep, at(t0, 60), first, 422, "Min-SE: 600\r\n");
    let retry = drain(&mut ep);
    let retry = text(&retry[0]);
    assert!(retry.starts_with("UPDATE "), "{retry}");
    assert_eq!(
        header(&retry, "Session-Expires").as_deref(),
        Some("600;refresher=uac")
    );
}

#[test]
fn a_peer_that_takes_over_refreshing_stops_our_updates() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    established(
        &mut ep,
        t0,
        &format!("{TIMER}{ALLOW_UPDATE}Session-Expires: 120;refresher=uas\r\n"),
    );
    let (sent, _) = run_until(&mut ep, t0, 60.0);
    let first = requests(&sent, "UPDATE")[0].1;
    respond(
        &mut ep,
        at(t0, 60),
        first,
        200,
        "Session-Expires: 120;refresher=uas\r\n",
    );
    let (sent, evs) = run_until(&mut ep, t0, 400.0);
    assert!(requests(&sent, "UPDATE").is_empty());
    assert_eq!(requests(&sent, "BYE")[0].0, 148.0);
    assert_eq!(ended(&evs), vec![(148.0, EndReason::SessionExpired)]);
}

#[test]
fn require_timer_is_understood() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (sent, call) = invite(
        &mut ep,
        t0,
        &format!("{TIMER}Require: timer\r\nSession-Expires: 600\r\n"),
    );
    assert!(call.is_some(), "not refused with 420: {:?}", text(&sent[0]));
}

#[test]
fn update_outside_a_dialog_is_481() {
    let mut ep = endpoint();
    let update = request(
        "UPDATE",
        "sip:192.0.2.1",
        &via("stray"),
        "a1",
        None,
        "nowhere",
        1,
        "",
        "",
    );
    ep.handle_input(Instant::now(), udp(ALICE), &update);
    assert_eq!(
        drain(&mut ep).iter().map(status).collect::<Vec<_>>(),
        vec![Some(481)]
    );
}

#[test]
fn an_update_with_an_offer_is_answered_by_the_application_without_an_ack() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, to_tag, _) = established(&mut ep, t0, "");
    let update = request(
        "UPDATE",
        "sip:192.0.2.1",
        &via("up3"),
        "a1",
        Some(&to_tag),
        CALL_ID,
        2,
        "",
        SDP_OFFER,
    );
    ep.handle_input(at(t0, 5), udp(ALICE), &update);
    assert!(drain(&mut ep).is_empty(), "no 100 for a non-INVITE");
    assert_eq!(
        events(&mut ep),
        vec![Event::ReInvite {
            call,
            sdp: Some(SDP_OFFER.as_bytes().to_vec())
        }]
    );
    ep.answer_reinvite(at(t0, 5), call, b"v=0\r\n".to_vec())
        .unwrap();
    let ok = drain(&mut ep);
    assert_eq!(ok.len(), 1);
    let ok = text(&ok[0]);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(header(&ok, "CSeq").unwrap().ends_with("UPDATE"));
    assert_eq!(body(&ok), "v=0\r\n");
    // Nothing is retransmitted waiting for an ACK, and the call goes on.
    let (sent, evs) = run_until(&mut ep, t0, 120.0);
    assert!(
        sent.is_empty() && evs.is_empty(),
        "{:?} {evs:?}",
        first_lines(&sent)
    );
    assert_eq!(ep.active_calls(), 1);
}

#[test]
fn a_refresh_that_times_out_or_gets_481_ends_the_session() {
    for answer in [None, Some(481)] {
        let mut ep = endpoint();
        let t0 = Instant::now();
        established(
            &mut ep,
            t0,
            &format!("{TIMER}{ALLOW_UPDATE}Session-Expires: 1800;refresher=uas\r\n"),
        );
        let (sent, _) = run_until(&mut ep, t0, 900.0);
        let update = requests(&sent, "UPDATE")[0].1;
        let end = match answer {
            Some(status) => {
                respond(&mut ep, at(t0, 901), update, status, "");
                events(&mut ep)
                    .into_iter()
                    .map(|e| (901.0, e))
                    .collect::<Vec<_>>()
            }
            None => run_until(&mut ep, t0, 1000.0).1,
        };
        // RFC 4028 §10, RFC 3261 §12.2.1.2; Timer F is 64*T1 after the UPDATE.
        let when = if answer.is_some() { 901.0 } else { 932.0 };
        assert_eq!(
            ended(&end),
            vec![(when, EndReason::SessionExpired)],
            "{answer:?}"
        );
        assert_eq!(ep.active_calls(), 0);
    }
}
