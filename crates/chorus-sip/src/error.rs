//! Error types: one enum per concern, variants named after the cause.

use crate::endpoint::CallHandle;

/// Why bytes from the network could not be turned into a SIP message.
///
/// These never escape as panics: the endpoint counts them and either answers
/// 400 (when the request parsed far enough, RFC 3261 §8.2) or drops the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("no blank line ends the header section")]
    UnterminatedHeaders,
    #[error("malformed start line")]
    MalformedStartLine,
    #[error("malformed header line {line}")]
    MalformedHeader { line: usize },
    #[error("continuation line with no header to continue")]
    OrphanContinuation,
    #[error("Content-Length is required on stream transports (RFC 3261 §18.3)")]
    MissingContentLength,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("Content-Length {declared} exceeds the {available} body bytes received")]
    TruncatedBody { declared: usize, available: usize },
    #[error("rsip rejected the message")]
    Rsip(#[source] rsip::Error),
}

/// Why an SDP body could not be used (RFC 4566, RFC 3264).
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    #[error("SDP does not parse")]
    Syntax(#[source] sdp::Error),
    #[error("SDP has no audio m= line")]
    NoAudio,
    #[error("invalid media port {0}")]
    BadPort(isize),
    #[error("invalid connection address {0:?}")]
    BadAddress(String),
    #[error("no connection (c=) line for the audio stream")]
    NoConnection,
    #[error("no codec in common with the offer (RFC 3264 §6: answer 488)")]
    NoCommonCodec,
}

/// Misuse of the [`crate::Endpoint`] API by the application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unknown or ended call {0:?}")]
    UnknownCall(CallHandle),
    #[error("call {call:?} cannot do this in state {state}")]
    InvalidState {
        call: CallHandle,
        state: &'static str,
    },
    #[error("status {0} is not valid here")]
    InvalidStatus(u16),
}
