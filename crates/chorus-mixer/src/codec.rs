//! The codecs a leg can use, behind one encoder and one decoder type, so the room code does
//! not care which it has. G.711 is stateless table lookups; Opus carries libopus state (whose
//! encoder can be forked by copying its bytes).

use chorus_media::g711::Law;
use chorus_media::opus::{OpusConfig, OpusDecoder, OpusEncoder};

use crate::talk::energy_dbov;
use crate::{Encoding, MixerError};

/// Samples in 20 ms at the highest rate we mix at (48 kHz).
pub const MAX_FRAME: usize = 960;
/// Largest encoded 20 ms payload: RFC 6716 §3.4 caps an Opus frame at 1275 bytes.
pub const MAX_PAYLOAD: usize = 1276;

pub(crate) enum Encoder {
    G711(Law),
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    pub fn new(encoding: Encoding, opus_complexity: i32) -> Result<Self, MixerError> {
        Ok(match encoding {
            Encoding::Pcmu => Encoder::G711(Law::Mu),
            Encoding::Pcma => Encoder::G711(Law::A),
            Encoding::Opus { fec, dtx } => {
                let config = OpusConfig {
                    complexity: opus_complexity,
                    inband_fec: fec,
                    dtx,
                    // With FEC on, libopus only spends bits on it when it expects loss.
                    expected_loss_pct: if fec { 5 } else { 0 },
                    ..OpusConfig::default()
                };
                Encoder::Opus(Box::new(
                    OpusEncoder::new(48_000, config)
                        .map_err(|e| MixerError::Codec(e.to_string()))?,
                ))
            }
        })
    }

    /// Encodes one 20 ms frame at the encoding's rate; returns the payload length.
    #[inline]
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Option<usize> {
        match self {
            Encoder::G711(law) => {
                let n = pcm.len().min(out.len());
                law.encode(&pcm[..n], &mut out[..n]);
                Some(n)
            }
            Encoder::Opus(enc) => enc.encode(pcm, out).ok(),
        }
    }

    /// Continues `other`'s stream: after this, our next packet decodes seamlessly at a peer
    /// that was receiving `other`'s packets. No allocation.
    pub fn fork_from(&mut self, other: &Encoder) -> bool {
        match (self, other) {
            (Encoder::Opus(mine), Encoder::Opus(theirs)) => mine.copy_state_from(theirs).is_ok(),
            // G.711 has no state: every packet stands alone.
            _ => false,
        }
    }

    pub fn is_stateful(&self) -> bool {
        matches!(self, Encoder::Opus(_))
    }
}

pub(crate) enum Decoder {
    G711(Law),
    Opus(Box<OpusDecoder>),
}

impl Decoder {
    pub fn new(encoding: Encoding) -> Result<Self, MixerError> {
        Ok(match encoding {
            Encoding::Pcmu => Decoder::G711(Law::Mu),
            Encoding::Pcma => Decoder::G711(Law::A),
            Encoding::Opus { .. } => Decoder::Opus(Box::new(
                OpusDecoder::new(48_000).map_err(|e| MixerError::Codec(e.to_string()))?,
            )),
        })
    }

    /// Decodes a payload into `out`; returns the number of samples (0 for an undecodable
    /// packet, which is then concealed).
    #[inline]
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16], fec: bool) -> usize {
        match self {
            Decoder::G711(law) => {
                let n = payload.len().min(out.len());
                law.decode(&payload[..n], &mut out[..n]);
                n
            }
            Decoder::Opus(dec) => dec.decode(payload, out, fec).unwrap_or(0),
        }
    }

    /// The level of a payload of `frame` samples in dBov, read off the payload without
    /// decoding it where the codec allows (G.711: one table lookup per byte), else `None`.
    pub fn level(&self, payload: &[u8], frame: usize) -> Option<f32> {
        match self {
            Decoder::G711(law) if payload.len() == frame => {
                Some(energy_dbov(law.energy(payload), frame))
            }
            _ => None,
        }
    }

    /// Decoding costs tens of microseconds (Opus), not tens of nanoseconds (G.711).
    pub fn is_expensive(&self) -> bool {
        matches!(self, Decoder::Opus(_))
    }

    /// Opus conceals a lost frame with its own PLC; G.711 has none (the caller repeats and
    /// fades the last frame instead), so this returns `None` for it.
    pub fn conceal(&mut self, out: &mut [i16]) -> Option<usize> {
        match self {
            Decoder::G711(_) => None,
            Decoder::Opus(dec) => dec.conceal(out).ok(),
        }
    }
}

/// The payload a listener gets while the room is silent: encoded once when the encoding
/// first appears in a room, then sent instead of running the encoder (encoding digital
/// silence with Opus still costs about as much as speech).
pub(crate) fn silence_payload(
    encoding: Encoding,
    opus_complexity: i32,
) -> Result<Box<[u8]>, MixerError> {
    let mut encoder = Encoder::new(encoding, opus_complexity)?;
    let pcm = [0i16; MAX_FRAME];
    let frame = encoding.frame_samples();
    let mut out = [0u8; MAX_PAYLOAD];
    let mut len = 0;
    // Opus settles after its look-ahead; take a packet from the steady state.
    for _ in 0..5 {
        len = encoder
            .encode(&pcm[..frame], &mut out)
            .ok_or_else(|| MixerError::Codec("cannot encode silence".into()))?;
    }
    Ok(out[..len].into())
}
