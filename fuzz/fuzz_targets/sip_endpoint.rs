//! One datagram into a fresh sans-IO endpoint, exactly as the UDP driver hands it over,
//! then everything the endpoint wants to send, its events, and its timers to the end:
//! no input may panic, whatever it makes the endpoint do.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_sip::{Endpoint, EndpointConfig, Peer};
use libfuzzer_sys::fuzz_target;

fn endpoint() -> Endpoint {
    let contact: SocketAddr = "192.0.2.1:5060".parse().expect("literal address");
    Endpoint::new(EndpointConfig {
        user_agent: "Chorus/fuzz".into(),
        contact_udp: contact,
        contact_tcp: contact,
        ..EndpointConfig::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut ep = endpoint();
    let peer = Peer::udp("192.0.2.99:5060".parse().expect("literal address"));
    let start = Instant::now();
    ep.handle_input(start, peer, data);
    // The same datagram again: a retransmission.
    ep.handle_input(start + Duration::from_millis(10), peer, data);
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    // Run the timers out (bounded: a timer table that never empties would be a bug too).
    for _ in 0..64 {
        let Some(at) = ep.poll_timeout() else { break };
        ep.handle_timeout(at);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
});
