//! One call's media on a media thread: its socket, jitter buffer, decoded frame and outgoing
//! RTP clock.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

use chorus_media::jitter::{JitterBuffer, Pop, Push};
use chorus_media::rtp::{RtpHeader, RtpPacket};
use chorus_media::NARROWBAND_FRAME as FRAME;

use crate::{Codec, Flow, LegId, LegSpec, LegStats, LegUpdate, MemberFlags, MixerConfig, RoomId};

/// Decoded samples waiting for playout: room for a 60 ms packet on top of a partial frame.
const FIFO: usize = 6 * FRAME;
/// Largest payload a leg buffers: 60 ms of G.711, or any Opus packet later.
const MAX_PAYLOAD: usize = 1500;
/// Consecutive frames concealed before the member is treated as silent.
const MAX_CONCEALED: u32 = 4;

pub(crate) struct Leg {
    pub id: LegId,
    pub room: RoomId,
    socket: UdpSocket,
    pub codec: Codec,
    telephone_event_pt: Option<u8>,
    pub remote: Option<SocketAddr>,
    pub flow: Flow,
    pub flags: MemberFlags,
    jitter: JitterBuffer,
    fifo: [i16; FIFO],
    fifo_len: usize,
    last: [i16; FRAME],
    concealed_run: u32,
    /// This tick's decoded audio, valid when `has_audio`.
    pub frame: [i16; FRAME],
    pub has_audio: bool,
    /// Whether `frame` went into this tick's room total.
    pub in_mix: bool,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    sent_any: bool,
    pub stats: LegStats,
}

impl Leg {
    pub fn new(room: RoomId, spec: LegSpec, config: &MixerConfig) -> Self {
        Self {
            id: spec.id,
            room,
            socket: spec.socket,
            codec: spec.codec,
            telephone_event_pt: spec.telephone_event_pt,
            remote: spec.remote,
            flow: spec.flow,
            flags: MemberFlags::default(),
            jitter: JitterBuffer::new(config.jitter_capacity, MAX_PAYLOAD, config.jitter_target),
            fifo: [0; FIFO],
            fifo_len: 0,
            last: [0; FRAME],
            concealed_run: 0,
            frame: [0; FRAME],
            has_audio: false,
            in_mix: false,
            // RFC 3550 §5.1: SSRC, first sequence number and timestamp are random.
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            sent_any: false,
            stats: LegStats::default(),
        }
    }

    pub fn update(&mut self, update: LegUpdate) {
        if update.codec != self.codec {
            self.jitter.reset();
            self.fifo_len = 0;
        }
        self.codec = update.codec;
        self.telephone_event_pt = update.telephone_event_pt;
        if update.remote.is_some() {
            self.remote = update.remote;
        }
        self.flow = update.flow;
    }

    /// Reads every datagram waiting on the socket (bounded, so a flood cannot starve the
    /// tick) into the jitter buffer. Returns (packets, malformed).
    pub fn receive(&mut self, buf: &mut [u8], budget: usize) -> (u64, u64) {
        let (mut packets, mut malformed) = (0, 0);
        for _ in 0..budget {
            let (len, source) = match self.socket.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here on some systems; nothing to read.
                Err(_) => break,
            };
            packets += 1;
            let Ok(packet) = RtpPacket::parse(&buf[..len]) else {
                malformed += 1;
                continue;
            };
            self.on_packet(&packet, source);
        }
        self.stats.packets_in += packets;
        self.stats.malformed += malformed;
        (packets, malformed)
    }

    fn on_packet(&mut self, packet: &RtpPacket<'_>, source: SocketAddr) {
        if packet.payload_type == self.codec.payload_type {
            // Symmetric RTP (RFC 4961): answer to where the peer's media comes from, which is
            // what gets through NATs and what SIPp expects.
            if self.remote != Some(source) {
                self.remote = Some(source);
            }
            if !self.flow.receive {
                return;
            }
            if self.jitter.push(
                packet.ssrc,
                packet.sequence,
                packet.timestamp,
                packet.payload,
            ) == Push::Oversize
            {
                self.stats.malformed += 1;
            }
        } else if Some(packet.payload_type) == self.telephone_event_pt {
            self.stats.telephone_events += 1;
        } else {
            self.stats.unexpected_pt += 1;
        }
    }

    /// Produces this tick's frame from the jitter buffer, concealing a lost packet by
    /// repeating the last frame with a fade (G.711 has no decoder PLC of its own).
    pub fn decode(&mut self) {
        self.has_audio = false;
        if !self.flow.receive {
            return;
        }
        let law = self.codec.law;
        while self.fifo_len < FRAME {
            match self.jitter.pop() {
                Pop::Packet { payload, .. } => {
                    let n = payload.len().min(FIFO - self.fifo_len);
                    law.decode(
                        &payload[..n],
                        &mut self.fifo[self.fifo_len..self.fifo_len + n],
                    );
                    self.fifo_len += n;
                    self.concealed_run = 0;
                }
                Pop::Lost => {
                    self.concealed_run += 1;
                    self.stats.concealed_frames += 1;
                    let gain = MAX_CONCEALED.saturating_sub(self.concealed_run) as i32;
                    let room = (FIFO - self.fifo_len).min(FRAME);
                    for (o, &s) in self.fifo[self.fifo_len..self.fifo_len + room]
                        .iter_mut()
                        .zip(&self.last)
                    {
                        *o = (i32::from(s) * gain / MAX_CONCEALED as i32) as i16;
                    }
                    self.fifo_len += room;
                }
                Pop::Empty => break,
            }
        }
        if self.fifo_len == 0 {
            return;
        }
        let take = self.fifo_len.min(FRAME);
        self.frame[..take].copy_from_slice(&self.fifo[..take]);
        self.frame[take..].fill(0);
        self.fifo.copy_within(take..self.fifo_len, 0);
        self.fifo_len -= take;
        self.last = self.frame;
        self.has_audio = true;
    }

    /// Sends one frame's payload, or only advances the clock when the leg must not send.
    /// `out` is scratch for the datagram.
    pub fn send(&mut self, payload: Option<&[u8]>, out: &mut [u8]) -> Result<bool, ()> {
        let timestamp = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        let (Some(payload), Some(remote)) = (payload, self.remote) else {
            return Ok(false);
        };
        if !self.flow.send {
            return Ok(false);
        }
        let header = RtpHeader {
            payload_type: self.codec.payload_type,
            // RFC 3551 §4.1: the marker flags the first packet of a talkspurt; our stream is
            // continuous, so only the very first packet carries it.
            marker: !self.sent_any,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        let Ok(len) = header.write_with_payload(payload, out) else {
            return Err(());
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.sent_any = true;
        match self.socket.send_to(&out[..len], remote) {
            Ok(_) => {
                self.stats.packets_out += 1;
                Ok(true)
            }
            Err(_) => {
                self.stats.send_errors += 1;
                Err(())
            }
        }
    }

    pub fn final_stats(&self) -> LegStats {
        LegStats {
            jitter: self.jitter.stats(),
            ..self.stats
        }
    }
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("id", &self.id)
            .field("room", &self.room)
            .field("codec", &self.codec)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}
