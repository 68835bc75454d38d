//! # chorus-sip
//!
//! The SIP side of Chorus: a sans-IO user agent server (UAS) built on `rsip`
//! for message syntax and the webrtc-rs `sdp` crate for session descriptions.
//! It owns message parsing and writing (RFC 3261 §7, §8.2), server transactions
//! (§17.2), the BYE client transaction (§17.1.2), dialogs (§12) and SDP
//! offer/answer for one audio stream (RFC 3264).
//!
//! ## Driving it
//!
//! [`Endpoint`] never does IO and never reads the clock. The driver (the
//! engine's socket task) feeds it and drains it:
//!
//! - in: [`Endpoint::handle_input`] for every UDP datagram or every message a
//!   [`StreamFramer`] pops from a TCP stream; [`Endpoint::handle_timeout`] when
//!   the clock passes [`Endpoint::poll_timeout`]; [`Endpoint::connection_closed`]
//!   when a TCP connection dies; and the application's decisions
//!   ([`Endpoint::answer`], [`Endpoint::reject`], [`Endpoint::hangup`], …);
//! - out: [`Endpoint::poll_transmit`] until `None` (send each payload to its
//!   [`Peer`]; for TCP on `peer.conn`), [`Endpoint::poll_event`] until `None`,
//!   then sleep until [`Endpoint::poll_timeout`].
//!
//! ## Security
//!
//! [`guard::SourceGuard`] admits or drops input per source address before it is parsed
//! (allow-list, token-bucket rate limit, temporary bans, bounded memory);
//! [`auth::DigestAuth`] challenges and verifies digest credentials (RFC 3261 §22, RFC 7616,
//! RFC 8760) for the application to apply with [`Endpoint::reject_with`] (401) or
//! [`Endpoint::discard`] (a silent drop). The endpoint itself drops requests from known
//! scanner user agents ([`EndpointConfig::scanner_user_agents`]). Every drop is counted by
//! [`DropReason`].
//!
//! ## Invariants
//!
//! - Input from the network never panics: malformed requests get a 400 when
//!   they parsed far enough to carry Via, Call-ID and CSeq, otherwise they are
//!   dropped and counted in [`Stats`]. A panic is a broken internal invariant.
//! - All timers (RFC 3261 Timers E, F, G, H, I, J, K, RFC 6026 Timer L and the
//!   2xx retransmission of §13.3.1.4) live in one table of absolute deadlines;
//!   `poll_timeout` is its minimum. Over TCP nothing is retransmitted.
//! - Every [`CallHandle`] gets exactly one [`Event::CallEnded`], after which it
//!   is dead.
//!
//! ## Example
//!
//! ```
//! use std::time::Instant;
//! use chorus_sip::{Endpoint, EndpointConfig, Event, Peer};
//!
//! let mut ep = Endpoint::new(EndpointConfig::default());
//! let now = Instant::now();
//! let caller = Peer::udp("192.0.2.10:5060".parse().unwrap());
//! let invite = "INVITE sip:room42@192.0.2.1 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKdoc1\r\n\
//!     From: <sip:alice@192.0.2.10>;tag=a1\r\n\
//!     To: <sip:room42@192.0.2.1>\r\n\
//!     Call-ID: doc-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
//!     Contact: <sip:alice@192.0.2.10>\r\nContent-Length: 0\r\n\r\n";
//! ep.handle_input(now, caller, invite.as_bytes());
//! let trying = ep.poll_transmit().unwrap();
//! assert!(trying.payload.starts_with(b"SIP/2.0 100 Trying"));
//! let Some(Event::IncomingCall(call)) = ep.poll_event() else { panic!() };
//! assert_eq!(call.request_user.as_deref(), Some("room42"));
//! ep.reject(now, call.call, 486).unwrap();
//! assert!(ep.poll_transmit().unwrap().payload.starts_with(b"SIP/2.0 486"));
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
mod drops;
pub mod endpoint;
pub mod error;
pub mod guard;
mod info;
mod message;
pub mod reason;
pub mod sdp_offer_answer;
pub mod session_timer;
mod timers;
pub mod transport;

pub use drops::{DropCounts, DropReason};
pub use endpoint::{
    CallHandle, EndReason, Endpoint, EndpointConfig, Event, IncomingCall, Stats, TimerConfig,
    KNOWN_SCANNERS,
};
pub use error::{Error, ParseError, SdpError};
pub use message::normalize;
pub use reason::{Reason, ReasonProtocol};
pub use sdp_offer_answer::{
    build_answer, build_offer, negotiate, parse_sdp, Codec, Direction, LocalMedia, Negotiated,
    OpusParams, RemoteMedia, OFFER_OPUS_PT,
};
pub use session_timer::SessionTimerConfig;
pub use transport::{ConnectionId, Peer, StreamFramer, Transmit, Transport};

/// Parses one message the way [`Endpoint::handle_input`] does (normalisation,
/// then rsip), for tests and diagnostics. `Ok` means the message is
/// syntactically acceptable.
pub fn check_syntax(data: &[u8]) -> Result<(), ParseError> {
    message::parse(data).map(|_| ())
}
