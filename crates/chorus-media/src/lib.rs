//! Media primitives for Chorus: RTP packets, G.711 and Opus codecs, resampling between the
//! codec rates, the per-member adaptive jitter buffer and tone sources.
//!
//! Everything here is sans-IO and clock-free: the media threads of `chorus-mixer` own the
//! sockets and the clock and call into these types once per packet or per 20 ms tick. None of
//! the per-packet or per-tick paths allocate; buffers are sized when a leg is created.
//!
//! ```
//! use chorus_media::{g711, rtp::{RtpHeader, RtpPacket}};
//! let mut pcm = [0i16; 160];
//! chorus_media::tone::Sine::new(440.0, 8000, 8000.0).fill(&mut pcm);
//! let mut payload = [0u8; 160];
//! g711::Law::Mu.encode(&pcm, &mut payload);
//! let mut wire = [0u8; 172];
//! let n = RtpHeader { payload_type: 0, marker: true, sequence: 1, timestamp: 160, ssrc: 7 }
//!     .write_with_payload(&payload, &mut wire)
//!     .expect("buffer is large enough");
//! let packet = RtpPacket::parse(&wire[..n]).expect("valid packet");
//! assert_eq!(packet.payload.len(), 160);
//! ```
//!
//! Invariants: input from the network (RTP bytes, Opus payloads) never panics; malformed
//! packets are reported as [`RtpError`] or [`CodecError`] so the caller can count and drop
//! them.
//!
//! `unsafe` is denied in this crate except in three reviewed modules: [`opus`], the libopus FFI
//! boundary; [`udp`], batched reads with `recvmmsg(2)`; and [`sched`], the real-time policy of
//! media threads.

pub mod error;
pub mod g711;
pub mod jitter;
pub mod opus;
pub mod resample;
pub mod rtp;
pub mod sched;
pub mod tap;
pub mod tone;
pub mod udp;

pub use error::RtpError;
pub use opus::{CodecError, OpusConfig, OpusDecoder, OpusEncoder};
pub use resample::{ResampleError, Resampler};
pub use tap::AudioTap;

/// Samples in one 20 ms frame at 8 kHz, the narrowband room rate.
pub const NARROWBAND_FRAME: usize = 160;
/// The mixer's packetisation time, RFC 3551 §4.5 default for G.711 and ours for every codec.
pub const PTIME_MS: u32 = 20;
