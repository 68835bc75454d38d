//! The allocation-free RTP header view every media thread runs on every datagram
//! (`chorus_media::rtp::RtpPacket::parse`): no panic, and what it accepts is consistent
//! (the payload lies inside the datagram, after the header, CSRCs and extension).
#![no_main]

use chorus_media::rtp::{RtpHeader, RtpPacket, FIXED_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = RtpPacket::parse(data) else {
        return;
    };
    assert!(packet.payload_type < 128);
    let csrcs = usize::from(data[0] & 0x0f);
    let ext = packet.extension.map_or(0, |(_, body)| 4 + body.len());
    assert!(FIXED_HEADER + 4 * csrcs + ext + packet.payload.len() <= data.len());
    // What we write from the parsed fields parses back to the same fields.
    let header = RtpHeader {
        payload_type: packet.payload_type,
        marker: packet.marker,
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        ssrc: packet.ssrc,
    };
    let mut out = vec![0u8; FIXED_HEADER + packet.payload.len()];
    let len = header
        .write_with_payload(packet.payload, &mut out)
        .expect("buffer sized for header and payload");
    let again = RtpPacket::parse(&out[..len]).expect("our own packet parses");
    assert_eq!(
        (
            again.payload_type,
            again.marker,
            again.sequence,
            again.timestamp,
            again.ssrc
        ),
        (
            packet.payload_type,
            packet.marker,
            packet.sequence,
            packet.timestamp,
            packet.ssrc
        )
    );
    assert_eq!(again.payload, packet.payload);
});
