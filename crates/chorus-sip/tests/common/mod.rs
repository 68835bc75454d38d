#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_sip::{Endpoint, EndpointConfig, Event, Peer, Transmit};

pub fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig {
        user_agent: "Chorus/test".into(),
        contact_udp: "192.0.2.1:5060".parse().unwrap(),
        contact_tcp: "192.0.2.1:5060".parse().unwrap(),
        ..EndpointConfig::default()
    })
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn drain(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

pub fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

pub fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.payload).into_owned()
}

/// Status code of a response payload.
pub fn status(t: &Transmit) -> Option<u16> {
    let s = text(t);
    s.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// First value of header `name` in a message.
pub fn header(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n\r\n").next()?.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

pub fn headers(msg: &str, name: &str) -> Vec<String> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .collect()
}

pub fn body(msg: &str) -> String {
    msg.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The tag parameter of a From/To value.
pub fn tag(value: &str) -> Option<String> {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
}

pub const SDP_OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

#[allow(clippy::too_many_arguments)]
/// Builds a request. `extra` lines are inserted before Content-Length.
pub fn request(
    method: &str,
    uri: &str,
    via: &str,
    from_tag: &str,
    to_tag: Option<&str>,
    call_id: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let to = match to_tag {
        Some(t) => format!("<sip:room42@192.0.2.1>;tag={t}"),
        None => "<sip:room42@192.0.2.1>".to_string(),
    };
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@192.0.2.10>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:alice@192.0.2.10:5060>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn secs(t0: Instant, t: Instant) -> f64 {
    (t - t0).as_secs_f64()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn udp(a: &str) -> Peer {
    Peer::udp(addr(a))
}
