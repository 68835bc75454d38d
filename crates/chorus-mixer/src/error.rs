use thiserror::Error;

use crate::LegId;

#[derive(Debug, Error)]
pub enum MixerError {
    /// The media thread's command queue is full: it is far behind, so refuse rather than block.
    #[error("media thread {thread} command queue is full")]
    QueueFull { thread: usize },
    #[error("media thread {thread} has stopped")]
    ThreadGone { thread: usize },
    #[error("no media thread {0}")]
    NoSuchThread(usize),
    #[error("cannot make the RTP socket of leg {leg:?} non-blocking")]
    Socket {
        leg: LegId,
        #[source]
        source: std::io::Error,
    },
    #[error("codec setup failed: {0}")]
    Codec(String),
    /// RFC 4733 events need a negotiated telephone-event payload type; a leg without one
    /// (or an unknown leg) cannot be sent digits.
    #[error("leg {leg:?} has no telephone-event payload type")]
    NoTelephoneEvent { leg: LegId },
    #[error("{0:?} is not a DTMF digit or pause (0-9, *, #, A-D, w, W)")]
    InvalidDtmfDigit(char),
    #[error("no DTMF digits to send")]
    NoDtmfDigits,
    #[error("cannot spawn media thread {thread}")]
    Spawn {
        thread: usize,
        #[source]
        source: std::io::Error,
    },
}
