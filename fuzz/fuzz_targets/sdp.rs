//! The SDP parser offers and answers go through (`chorus_sip::parse_sdp`), then the
//! offer/answer negotiation and the answer we would build for whatever it accepts; the answer
//! must itself parse.
#![no_main]

use chorus_sip::{build_answer, negotiate, parse_sdp, Codec, LocalMedia};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(remote) = parse_sdp(data) else {
        return;
    };
    let local = LocalMedia {
        addr: "192.0.2.1:20000".parse().expect("literal address"),
        session_id: 42,
        session_version: 1,
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        telephone_event: true,
    };
    if let Ok(negotiated) = negotiate(&remote, &local) {
        let answer = build_answer(&local, &negotiated);
        parse_sdp(&answer).expect("our own answer parses");
    }
});
