use thiserror::Error;

/// Why an RTP datagram was refused (RFC 3550 §5.1 header rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("datagram of {len} bytes is shorter than the RTP header it announces")]
    Truncated { len: usize },
    #[error("RTP version {version} is not 2")]
    BadVersion { version: u8 },
    #[error("padding length {padding} exceeds the payload")]
    BadPadding { padding: usize },
    #[error("output buffer of {capacity} bytes cannot hold {needed}")]
    BufferTooSmall { capacity: usize, needed: usize },
    #[error("payload type {0} is RTCP (RFC 5761 §4), not RTP")]
    RtcpPayloadType(u8),
}
