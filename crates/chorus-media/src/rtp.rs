//! RTP fixed header (RFC 3550 §5.1) parsing and writing without allocation.
//!
//! The webrtc-rs `rtp` crate is the reference we test against, but its `Header::unmarshal`
//! allocates for every CSRC list and header extension and can be driven past the end of its
//! buffer by a crafted one-byte extension. A media thread reads every packet of every leg, so
//! its parser must be a borrowed view that neither allocates nor panics on any input.

use crate::RtpError;

/// Size of the fixed header without CSRCs or extension.
pub const FIXED_HEADER: usize = 12;

/// The fields of an outgoing RTP header; we never send CSRCs, padding or extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes header and payload into `out`, returning the datagram length.
    pub fn write_with_payload(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        let needed = FIXED_HEADER + payload.len();
        if out.len() < needed {
            return Err(RtpError::BufferTooSmall {
                capacity: out.len(),
                needed,
            });
        }
        self.write_header(out)?;
        out[FIXED_HEADER..needed].copy_from_slice(payload);
        Ok(needed)
    }

    /// Writes only the 12-byte header, for payloads already placed after it.
    pub fn write_header(&self, out: &mut [u8]) -> Result<(), RtpError> {
        let Some(h) = out.get_mut(..FIXED_HEADER) else {
            return Err(RtpError::BufferTooSmall {
                capacity: out.len(),
                needed: FIXED_HEADER,
            });
        };
        h[0] = 0x80; // V=2, no padding, no extension, no CSRC
        h[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(())
    }
}

/// A received RTP packet, borrowed from the datagram it was read into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The header extension block (RFC 3550 §5.3.1) after its 4-byte preamble, if any: RFC 6464
    /// audio levels live here.
    pub extension: Option<(u16, &'a [u8])>,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, RtpError> {
        let truncated = RtpError::Truncated { len: data.len() };
        if data.len() < FIXED_HEADER {
            return Err(truncated);
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version });
        }
        let payload_type = data[1] & 0x7f;
        // RFC 5761 §4: 72–76 (with the marker bit: RTCP packet types 200–204) are RTCP when
        // multiplexed on one port.
        if (72..=76).contains(&payload_type) {
            return Err(RtpError::RtcpPayloadType(payload_type));
        }
        let csrc_count = usize::from(data[0] & 0x0f);
        let mut offset = FIXED_HEADER + 4 * csrc_count;
        if data.len() < offset {
            return Err(truncated);
        }
        let extension = if data[0] & 0x10 != 0 {
            let preamble = data.get(offset..offset + 4).ok_or(truncated)?;
            let profile = u16::from_be_bytes([preamble[0], preamble[1]]);
            let words = usize::from(u16::from_be_bytes([preamble[2], preamble[3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            let body = data.get(start..end).ok_or(truncated)?;
            offset = end;
            Some((profile, body))
        } else {
            None
        };
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            // RFC 3550 §5.1: the last octet counts the padding, itself included.
            let padding = usize::from(data[end - 1]);
            if padding == 0 || offset + padding > end {
                return Err(RtpError::BadPadding { padding });
            }
            end -= padding;
        }
        Ok(Self {
            payload_type,
            marker: data[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            extension,
            payload: &data[offset..end],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::rtp::header::Header;
    use ::rtp::packet::Packet;
    use webrtc_util::marshal::Marshal;

    #[test]
    fn parses_what_the_reference_crate_writes() {
        let mut header = Header {
            version: 2,
            marker: true,
            payload_type: 8,
            sequence_number: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
            csrc: vec![1, 2],
            ..Default::default()
        };
        header
            .set_extension(1, bytes::Bytes::from_static(&[0x80]))
            .expect("one-byte extension");
        let packet = Packet {
            header,
            payload: bytes::Bytes::from_static(&[9; 160]),
        };
        let wire = packet.marshal().expect("marshal");
        let parsed = RtpPacket::parse(&wire).expect("parse");
        assert_eq!(parsed.payload_type, 8);
        assert!(parsed.marker);
        assert_eq!(parsed.sequence, 65535);
        assert_eq!(parsed.timestamp, 0xdead_beef);
        assert_eq!(parsed.ssrc, 0x1234_5678);
        assert_eq!(parsed.payload, &[9; 160][..]);
        let (profile, ext) = parsed.extension.expect("extension present");
        assert_eq!(profile, 0xBEDE);
        assert_eq!(ext[0] >> 4, 1);
    }

    #[test]
    fn what_we_write_the_reference_crate_reads() {
        use webrtc_util::marshal::Unmarshal;
        let mut wire = [0u8; 200];
        let n = RtpHeader {
            payload_type: 0,
            marker: false,
            sequence: 42,
            timestamp: 160,
            ssrc: 99,
        }
        .write_with_payload(&[0xff; 160], &mut wire)
        .expect("fits");
        let packet = Packet::unmarshal(&mut &wire[..n]).expect("reference parses");
        assert_eq!(packet.header.sequence_number, 42);
        assert_eq!(packet.header.timestamp, 160);
        assert_eq!(packet.header.ssrc, 99);
        assert_eq!(packet.payload.len(), 160);
    }

    #[test]
    fn truncated_and_malformed_packets_are_errors_not_panics() {
        assert!(RtpPacket::parse(&[]).is_err());
        assert!(RtpPacket::parse(&[0x80; 11]).is_err());
        assert_eq!(
            RtpPacket::parse(&[0x40; 12]),
            Err(RtpError::BadVersion { version: 1 })
        );
        // CSRC count larger than the packet.
        assert!(RtpPacket::parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Extension announcing more words than present.
        let mut p = [0u8; 16];
        p[0] = 0x90;
        p[12..16].copy_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        assert!(RtpPacket::parse(&p).is_err());
        // Padding longer than the payload.
        let mut p = [0u8; 14];
        p[0] = 0xa0;
        p[13] = 200;
        assert!(RtpPacket::parse(&p).is_err());
        // Every length and every first byte: no panic.
        let mut buf = [0u8; 64];
        for first in 0..=255u8 {
            for len in 0..buf.len() {
                buf[0] = first;
                buf[len.saturating_sub(1)] = first;
                let _ = RtpPacket::parse(&buf[..len]);
            }
        }
    }

    #[test]
    fn rtcp_multiplexed_on_the_port_is_not_taken_for_audio() {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = 200; // RTCP SR: marker bit + 72
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::RtcpPayloadType(72)));
    }
}
