//! One call's media on a media thread: its socket, jitter buffer, codec state, decoded frame,
//! talk state, private output and outgoing RTP clock.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use chorus_media::jitter::{JitterBuffer, Pop, Push};
use chorus_media::resample::Resampler;
use chorus_media::rtp::{RtpHeader, RtpPacket};
use chorus_media::udp::{self, RecvBatch};

use crate::codec::{Decoder, Encoder, MAX_FRAME, MAX_PAYLOAD};
use crate::dtmf::{DtmfQueue, DtmfReceiver, DtmfTick, EventPayload, ReceivedDigit};
use crate::talk::TalkDetector;
use crate::{
    Codec, Flow, LegActivity, LegId, LegSpec, LegStats, LegUpdate, MemberFlags, MixerConfig,
    MixerError, Playback, RoomId,
};

/// Consecutive frames G.711 concealment repeats (fading) before going silent.
const MAX_CONCEALED: u32 = 4;
/// Decoded samples waiting for playout, in frames of the codec: a 60 ms packet plus a
/// partial frame and room for concealment.
const FIFO_FRAMES: usize = 6;
/// Largest G.711 payload buffered: 60 ms. Sizing buffers per codec keeps a narrowband leg's
/// memory small, which is what lets a thousand of them stay in cache.
const MAX_G711_PAYLOAD: usize = 480;
/// Packets in sequence, of one SSRC, a source that is not the SDP address must send before
/// the leg takes its media (and sends it ours): the NAT case.
const PROBATION: u16 = 3;
/// How far the sequence number may jump forward between two packets of a probation (a lost
/// packet or two must not restart it).
const PROBATION_MAX_STEP: u16 = 4;
/// A probation candidate silent this long gives up its place to another source.
const PROBATION_STALE_US: u64 = 200_000;

/// Where a leg takes media from. A stranger spraying a live call's RTP port (RTP bleed or
/// injection, the CVE-2025-53399 class) is never mixed in nor sent audio: media from the
/// address the peer's SDP gave is taken at once and locks the leg to it; another address
/// (a peer behind NAT) must pass a probation, then is taken for a learning window in which
/// the SDP address may still take over, and is locked after it. Once locked, every other
/// source is dropped and counted ([`LegStats::foreign_dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceState {
    /// Nothing taken yet.
    Learning { candidate: Option<Candidate> },
    /// Taking media from `source` (not the SDP address) until `until_us`.
    Latched { source: SocketAddr, until_us: u64 },
    /// Only this source is taken.
    Locked(SocketAddr),
}

/// A source on probation: its last packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    source: SocketAddr,
    ssrc: u32,
    sequence: u16,
    count: u16,
    last_us: u64,
}

/// How a leg's output is produced this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The room's shared payload for its encoding.
    Shared,
    /// Its own encode (it is mixed, so it must not hear itself; or it has private audio).
    Private,
    /// The cached silence payload (deaf, or nothing to hear).
    Silence,
    /// The payload the leg in this slot of `legs` sent us this tick, as it came (the leg is a
    /// talker whose mix is that one other talker alone; see `Room::tick`).
    Forward(usize),
}

/// Codec state built on the control side, so a media thread never allocates it.
pub(crate) struct CodecState {
    pub codec: Codec,
    pub decoder: Decoder,
    pub encoder: Encoder,
    /// Buffers sized for the codec.
    pub jitter: JitterBuffer,
    pub fifo: Box<[i16]>,
}

impl CodecState {
    pub fn new(codec: Codec, config: &MixerConfig) -> Result<Self, MixerError> {
        let mut jitter = JitterBuffer::new(
            config.jitter_capacity,
            max_payload(codec),
            config.jitter_target,
        );
        jitter.set_clock_rate(codec.encoding.rate());
        Ok(Self {
            codec,
            decoder: Decoder::new(codec.encoding)?,
            encoder: Encoder::new(codec.encoding, config.opus_complexity)?,
            jitter,
            fifo: vec![0; FIFO_FRAMES * codec.encoding.frame_samples()].into_boxed_slice(),
        })
    }
}

/// How much of a member's audio this tick needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Need {
    /// The decoded frame: a talker, a member about to talk, or one that is not mixed but whose
    /// level can only be read from its samples.
    Frame,
    /// A quiet member: its level, and the frame only when the level reaches `start_dbov` (it
    /// may start talking). A whole G.711 frame at the room rate has its level read off its
    /// bytes (a table lookup per byte, nothing written), so a room's quiet listeners cost
    /// neither a decode nor the copies of a frame through the leg's buffers; in a room of a
    /// thousand that memory traffic was most of a listener's cost. Anything else decodes as
    /// for [`Need::Frame`]. A measured frame leaves `last` (what a loss repeats) behind, so a
    /// loss after one conceals as silence.
    Quiet { start_dbov: f32 },
    /// Nothing: the jitter buffer moves on without a decode (the sender reported a quiet
    /// level, or a quiet Opus member's unsampled tick).
    Nothing,
}

pub(crate) struct Leg {
    pub id: LegId,
    pub room: RoomId,
    /// `None` only for legs driven without IO (benchmarks).
    socket: Option<UdpSocket>,
    pub codec: Codec,
    pub decoder: Decoder,
    pub encoder: Encoder,
    telephone_event_pt: Option<u8>,
    audio_level_id: Option<u8>,
    /// Where we send: the SDP address until a source is learned, then that source
    /// (symmetric RTP, RFC 4961).
    pub remote: Option<SocketAddr>,
    /// The media address the peer's SDP gave.
    sdp_remote: Option<SocketAddr>,
    source: SourceState,
    /// Only the SDP address may be learned (after a re-INVITE moved the media of a peer whose
    /// media came from its SDP address).
    sdp_only: bool,
    /// How long a NAT-latched source stays open to the SDP address taking over.
    learning_us: u64,
    /// Packets taken from the peer, mirrored into `activity`.
    accepted: u64,
    activity: Option<Arc<LegActivity>>,
    pub flow: Flow,
    pub flags: MemberFlags,
    pub jitter: JitterBuffer,
    /// Codec rate → room rate, present while they differ.
    /// (Boxed, like `downsampler`: a resampler is hundreds of bytes, and most legs have none;
    /// inline they would spread every leg's hot fields over twice as many cache lines.)
    pub upsampler: Option<Box<Resampler>>,
    /// Room rate → codec rate, for this leg's private output.
    pub downsampler: Option<Box<Resampler>>,
    fifo: Box<[i16]>,
    fifo_len: usize,
    last: Box<[i16; MAX_FRAME]>,
    /// `last` is not the frame before this one: frames since were only measured or skipped.
    /// A loss (or a telephone-event's fade) then starts from silence: `last` may be a loud
    /// frame from before a pause, and repeating it would mix old speech.
    last_stale: bool,
    concealed_run: u32,
    /// What played since the last audio is already faded out: a gap's silence goes on as
    /// zeros.
    faded: bool,
    /// This tick's audio at the room rate, valid when `has_audio`.
    pub frame: Box<[i16; MAX_FRAME]>,
    pub has_audio: bool,
    /// This tick's frame is exactly one packet as received (still in the jitter buffer's
    /// slot), so a talker who hears only this leg can be sent it without an encode; false
    /// when concealed, recovered by FEC, made of several packets or a partial one, skipped or
    /// only measured.
    pub forwardable: bool,
    /// This tick's frame stands for exactly one packet that was lost on the way in (concealed,
    /// or rebuilt from the next packet's FEC), in a stream of one-frame packets: a listener
    /// forwarded this leg's packets can be sent a sequence gap for it instead. False for
    /// anything else that is not forwardable (telephone-events, packets of other durations).
    pub lost_one: bool,
    /// A frame (decoded, measured or skipped) came off the jitter buffer this tick.
    pub arrived: bool,
    /// Level the sender reported in its last packet (RFC 6464), dBov.
    pub reported_level: Option<f32>,
    /// This tick's level, measured on the payload instead of a decoded frame
    /// ([`Need::Quiet`]); `has_audio` is then false.
    pub measured_level: Option<f32>,
    /// Smoothed length of its payloads while quiet, in 1/16 bytes (0: none seen yet); see
    /// [`Leg::louder_than_quiet`].
    quiet_len_x16: u32,
    pub talk: TalkDetector,
    /// Its audio went into this tick's room total.
    pub contributed: bool,
    pub output: Output,
    pub previous_output: Output,
    pub playback: Option<Box<Playback>>,
    /// Index of its encoding's group in the room.
    pub group: usize,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    sent_any: bool,
    /// The next audio packet starts a talkspurt: telephone-events replaced the audio before it.
    resume_marker: bool,
    dtmf_in: DtmfReceiver,
    /// Digits being sent, and those queued after them (chained through `next`).
    dtmf_out: Option<Box<DtmfQueue>>,
    /// Digit strings finished (or abandoned) since the room last looked, to be reported and
    /// freed by the control side.
    dtmf_done: Option<Box<DtmfQueue>>,
    pub stats: LegStats,
}

impl Leg {
    pub fn new(room: RoomId, spec: LegSpec, config: &MixerConfig) -> Result<Self, MixerError> {
        let state = CodecState::new(spec.codec, config)?;
        Ok(Self {
            id: spec.id,
            room,
            socket: spec.socket,
            codec: spec.codec,
            decoder: state.decoder,
            encoder: state.encoder,
            telephone_event_pt: spec.telephone_event_pt,
            audio_level_id: spec.audio_level_id,
            remote: spec.remote,
            sdp_remote: spec.remote,
            source: SourceState::Learning { candidate: None },
            sdp_only: false,
            learning_us: config.rtp_learning.as_micros() as u64,
            accepted: 0,
            activity: spec.activity,
            flow: spec.flow,
            flags: MemberFlags::default(),
            jitter: state.jitter,
            upsampler: None,
            downsampler: None,
            fifo: state.fifo,
            fifo_len: 0,
            last: Box::new([0; MAX_FRAME]),
            last_stale: false,
            concealed_run: 0,
            faded: false,
            frame: Box::new([0; MAX_FRAME]),
            has_audio: false,
            forwardable: false,
            lost_one: false,
            arrived: false,
            reported_level: None,
            measured_level: None,
            quiet_len_x16: 0,
            talk: TalkDetector::new(),
            contributed: false,
            output: Output::Shared,
            previous_output: Output::Shared,
            playback: None,
            group: 0,
            // RFC 3550 §5.1: SSRC, first sequence number and timestamp are random.
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            sent_any: false,
            resume_marker: false,
            dtmf_in: DtmfReceiver::default(),
            dtmf_out: None,
            dtmf_done: None,
            stats: LegStats::default(),
        })
    }

    /// Applies a re-negotiation. A new codec swaps in the state built on the control side and
    /// returns the old one, to be freed off the media thread.
    pub fn update(
        &mut self,
        update: LegUpdate,
        state: Option<Box<CodecState>>,
    ) -> Option<Box<CodecState>> {
        let mut old = None;
        if let Some(mut state) = state {
            if state.codec != self.codec {
                std::mem::swap(&mut state.decoder, &mut self.decoder);
                std::mem::swap(&mut state.encoder, &mut self.encoder);
                std::mem::swap(&mut state.jitter, &mut self.jitter);
                std::mem::swap(&mut state.fifo, &mut self.fifo);
                state.codec = self.codec;
                self.codec = update.codec;
                self.fifo_len = 0;
                self.playback = None;
                old = Some(state);
            } else {
                old = Some(state);
            }
        }
        self.codec.payload_type = update.codec.payload_type;
        self.telephone_event_pt = update.telephone_event_pt;
        if self.telephone_event_pt.is_none() {
            self.abandon_dtmf();
        }
        if let Some(remote) = update.remote {
            if self.sdp_remote != Some(remote) {
                self.relearn(remote);
            }
        }
        self.flow = update.flow;
        old
    }

    /// Reads every datagram waiting on the socket (bounded, so a flood cannot starve the
    /// tick) into the jitter buffer; telephone-events become digits handed to `dtmf`. One
    /// `recvmmsg` per [`udp::BATCH`] datagrams: the usual tick costs one system call, not a
    /// read and a read that finds the socket empty.
    ///
    /// The socket is never `connect`ed: the kernel would then drop strangers' datagrams
    /// unseen, and every drop must be counted; the source check below is one comparison.
    pub fn receive(
        &mut self,
        batch: &mut RecvBatch,
        budget: usize,
        now_us: u64,
        dtmf: &mut impl FnMut(ReceivedDigit),
    ) -> Received {
        let mut received = Received::default();
        let foreign_before = self.stats.foreign_dropped;
        let mut left = budget;
        while left > 0 {
            let Some(socket) = self.socket.as_ref() else {
                break;
            };
            let want = left.min(udp::BATCH);
            // An error is an ICMP error from an earlier send surfacing: nothing to read.
            let n = batch.recv(socket, want).unwrap_or(0);
            left -= n;
            for i in 0..n {
                let Some(datagram) = batch.get(i) else {
                    break;
                };
                received.packets += 1;
                let Some(source) = datagram.source else {
                    received.malformed += 1;
                    continue;
                };
                if let SourceState::Locked(peer) = self.source {
                    if source != peer {
                        // Not even parsed: a flood from elsewhere costs a read per datagram.
                        self.stats.foreign_dropped += 1;
                        continue;
                    }
                }
                if datagram.truncated {
                    received.malformed += 1;
                    continue;
                }
                let Ok(packet) = RtpPacket::parse(datagram.payload) else {
                    received.malformed += 1;
                    continue;
                };
                self.on_packet(&packet, source, now_us, dtmf);
            }
            if n < want {
                break;
            }
        }
        self.dtmf_in.expire(now_us, dtmf);
        self.stats.packets_in += received.packets;
        self.stats.malformed += received.malformed;
        received.foreign = self.stats.foreign_dropped - foreign_before;
        received
    }

    /// Whether a packet from `source` is the peer's media, learning the source as it goes
    /// (see [`SourceState`]).
    fn admit(&mut self, packet: &RtpPacket<'_>, source: SocketAddr, now_us: u64) -> bool {
        let media = packet.payload_type == self.codec.payload_type
            || Some(packet.payload_type) == self.telephone_event_pt;
        let from_sdp = self.sdp_remote == Some(source);
        match self.source {
            SourceState::Locked(peer) => source == peer,
            SourceState::Latched { source: peer, .. } if media && from_sdp && peer != source => {
                // The address the peer's SDP gave beats a source learned without it.
                self.lock(source);
                true
            }
            SourceState::Latched {
                source: peer,
                until_us,
            } => {
                if source != peer {
                    return false;
                }
                if now_us >= until_us {
                    self.source = SourceState::Locked(peer);
                }
                true
            }
            SourceState::Learning { .. } if !media => false,
            SourceState::Learning { .. } if from_sdp => {
                self.lock(source);
                true
            }
            SourceState::Learning { .. } if self.sdp_only => false,
            SourceState::Learning { candidate } => {
                let next = match candidate {
                    Some(c)
                        if c.source == source
                            && c.ssrc == packet.ssrc
                            && (1..=PROBATION_MAX_STEP)
                                .contains(&packet.sequence.wrapping_sub(c.sequence)) =>
                    {
                        Candidate {
                            sequence: packet.sequence,
                            count: c.count + 1,
                            last_us: now_us,
                            ..c
                        }
                    }
                    // Another source holds the place while it keeps sending.
                    Some(c)
                        if c.source != source
                            && now_us.saturating_sub(c.last_us) < PROBATION_STALE_US =>
                    {
                        return false;
                    }
                    _ => Candidate {
                        source,
                        ssrc: packet.ssrc,
                        sequence: packet.sequence,
                        count: 1,
                        last_us: now_us,
                    },
                };
                if next.count < PROBATION {
                    self.source = SourceState::Learning {
                        candidate: Some(next),
                    };
                    return false;
                }
                self.remote = Some(source);
                self.source = if self.learning_us == 0 {
                    SourceState::Locked(source)
                } else {
                    SourceState::Latched {
                        source,
                        until_us: now_us + self.learning_us,
                    }
                };
                true
            }
        }
    }

    fn lock(&mut self, source: SocketAddr) {
        self.remote = Some(source);
        self.source = SourceState::Locked(source);
    }

    /// A re-INVITE moved the peer's media to `remote`: learning starts again. A peer whose
    /// media came from its SDP address may only be learned at its new SDP address; a peer
    /// behind NAT goes through probation again (its SDP address is likely private).
    fn relearn(&mut self, remote: SocketAddr) {
        let was_sdp =
            matches!(self.source, SourceState::Locked(peer) if Some(peer) == self.sdp_remote);
        self.sdp_remote = Some(remote);
        self.remote = Some(remote);
        self.sdp_only = was_sdp;
        self.source = SourceState::Learning { candidate: None };
    }

    /// One parsed packet: from the socket, or injected directly (benchmarks and tests).
    pub fn on_packet(
        &mut self,
        packet: &RtpPacket<'_>,
        source: SocketAddr,
        now_us: u64,
        dtmf: &mut impl FnMut(ReceivedDigit),
    ) {
        if !self.admit(packet, source, now_us) {
            self.stats.foreign_dropped += 1;
            return;
        }
        self.accepted += 1;
        if let Some(activity) = self.activity.as_deref() {
            activity.set_packets(self.accepted);
        }
        // Arrival on the codec's RTP clock, as the jitter estimator of RFC 3550 §A.8 wants.
        let arrival = (now_us * u64::from(self.codec.encoding.rate()) / 1_000_000) as u32;
        if packet.payload_type == self.codec.payload_type {
            if !self.flow.receive {
                return;
            }
            if let (Some(id), Some((profile, ext))) = (self.audio_level_id, packet.extension) {
                if let Some(level) = audio_level(profile, ext, id) {
                    self.reported_level = Some(level);
                }
            }
            let pushed = self.jitter.push_at(
                arrival,
                packet.marker,
                packet.ssrc,
                packet.sequence,
                packet.timestamp,
                packet.payload,
            );
            if pushed == Push::Oversize {
                self.stats.malformed += 1;
            }
        } else if Some(packet.payload_type) == self.telephone_event_pt {
            // Events never reach the jitter buffer: they are signalling, not audio to mix.
            self.stats.telephone_events += 1;
            if !self.flow.receive {
                return;
            }
            // RFC 4733 §2.1: but they are numbered with the audio, whose place they took.
            // Told so, the buffer neither conceals nor counts their numbers as lost, and
            // plays silence for as long as the audio timestamps say the key was held.
            self.jitter
                .note_non_audio(packet.ssrc, packet.sequence, packet.timestamp);
            match EventPayload::parse(packet.payload) {
                Some(event) => {
                    self.dtmf_in
                        .on_event(packet.ssrc, packet.timestamp, event, now_us, dtmf)
                }
                None => self.stats.malformed += 1,
            }
        } else {
            self.stats.unexpected_pt += 1;
        }
    }

    /// For a quiet member whose frames are decoded only on sampled ticks (Opus): whether the
    /// packet about to play is clearly bigger than its quiet ones, as speech is with a
    /// variable bitrate. Such a packet is decoded at once, not at the next sampled tick: a
    /// talker who starts in a pause is then mixed after the start hysteresis, not up to
    /// `quiet_decode_interval` frames later, and, above all, the decoder sees the first loud
    /// frame. Opus codes each frame's band energies relative to the previous frame's
    /// (RFC 6716 §4.3.2.1), so a decoder that skipped the first frames of a talkspurt decodes
    /// the next ones tens of dB too quiet for several frames, and the detector would wait for
    /// it to converge. At a constant bitrate it never fires and sampling alone applies. The
    /// quiet size is learnt from the packets it lets pass.
    pub fn louder_than_quiet(&mut self) -> bool {
        let Some(len) = self.jitter.peek().map(|p| p.len() as u32) else {
            return false;
        };
        let quiet = self.quiet_len_x16;
        // A quarter bigger and 8 bytes more: libopus at its default bitrate codes silence in
        // about 60 bytes at 48 kHz and a voice or tone in 75-125.
        if quiet > 0 && len * 16 > quiet + (quiet / 4).max(8 * 16) {
            return true;
        }
        self.quiet_len_x16 = if quiet == 0 {
            len * 16
        } else {
            (quiet * 7 + len * 16) / 8
        };
        false
    }

    /// Produces this tick's frame at the room rate, or as much of it as `need` asks for:
    /// with [`Need::Nothing`] or a measured quiet frame, `has_audio` stays false and `arrived`
    /// tells whether anything came. `scratch` holds a frame at the codec rate. Returns the
    /// number of decoder runs.
    pub fn decode(&mut self, room_rate: u32, need: Need, scratch: &mut [i16; MAX_FRAME]) -> u64 {
        self.has_audio = false;
        self.arrived = false;
        self.forwardable = false;
        self.lost_one = false;
        self.measured_level = None;
        if !self.flow.receive {
            return 0;
        }
        let skip = need == Need::Nothing;
        let room_frame = (room_rate / 50) as usize;
        let codec_frame = self.codec.encoding.frame_samples();
        let mut decodes = 0;
        // Forwardable: the first pop is a packet holding exactly this tick's frame.
        let mut pops = 0u32;
        let mut first_lost = false;
        while self.fifo_len < codec_frame {
            let room = self.fifo.len() - self.fifo_len;
            let out = &mut self.fifo[self.fifo_len..];
            let first = pops == 0 && self.fifo_len == 0;
            pops += 1;
            match self.jitter.pop() {
                Pop::Packet { payload, .. } => {
                    if let (Need::Quiet { start_dbov }, true) =
                        (need, first && codec_frame == room_frame)
                    {
                        let level = self.decoder.level(payload, codec_frame);
                        if let Some(level) = level.filter(|&l| l < start_dbov) {
                            // The whole frame, measured and found too quiet to start a
                            // talker: nothing needs its samples.
                            self.measured_level = Some(level);
                            self.arrived = true;
                            self.last_stale = true;
                            self.concealed_run = 0;
                            self.faded = false;
                            return decodes;
                        }
                    }
                    if skip {
                        // Keep the buffer moving without paying for the decode.
                        out[..codec_frame].fill(0);
                        self.fifo_len += codec_frame.min(room);
                        continue;
                    }
                    decodes += 1;
                    let n = self.decoder.decode(payload, out, false);
                    if n == 0 {
                        self.stats.malformed += 1;
                        continue;
                    }
                    self.forwardable = first && n == codec_frame;
                    self.fifo_len += n;
                    self.concealed_run = 0;
                    self.faded = false;
                }
                Pop::Silence => {
                    // The sender sent telephone-events instead of audio: nothing was lost, so
                    // nothing is concealed (repeating speech through a key press is wrong).
                    // The audio before fades out over one frame, then silence.
                    let n = codec_frame.min(room);
                    if skip || self.faded || self.last_stale {
                        out[..n].fill(0);
                    } else {
                        let (fifo, out) = self.fifo.split_at_mut(self.fifo_len);
                        fade_out(fifo, &self.last[..codec_frame], &mut out[..n]);
                    }
                    self.faded = true;
                    self.fifo_len += n;
                }
                Pop::Lost => {
                    first_lost = first;
                    self.concealed_run += 1;
                    self.stats.concealed_frames += 1;
                    if skip {
                        out[..codec_frame].fill(0);
                        self.fifo_len += codec_frame.min(room);
                        continue;
                    }
                    // RFC 6716 §4.4 / libopus: the decoder's own PLC (or, when the next packet
                    // carries in-band FEC, that) beats anything we could do.
                    let fec = match (self.codec.encoding, self.jitter.peek()) {
                        (crate::Encoding::Opus { .. }, Some(next)) => {
                            decodes += 1;
                            self.decoder.decode(next, out, true)
                        }
                        _ => 0,
                    };
                    if fec > 0 {
                        self.stats.fec_recovered += 1;
                        self.fifo_len += fec;
                        continue;
                    }
                    if let Some(n) = self.decoder.conceal(out) {
                        decodes += 1;
                        self.fifo_len += n;
                        continue;
                    }
                    // G.711: repeat the last frame, fading out over MAX_CONCEALED frames.
                    let gain = if self.last_stale {
                        0
                    } else {
                        MAX_CONCEALED.saturating_sub(self.concealed_run) as i32
                    };
                    let n = codec_frame.min(room);
                    for (o, &s) in out[..n].iter_mut().zip(self.last.iter()) {
                        *o = (i32::from(s) * gain / MAX_CONCEALED as i32) as i16;
                    }
                    self.fifo_len += n;
                }
                Pop::Empty => break,
            }
        }
        if pops != 1 {
            self.forwardable = false;
        }
        // One pop that started from an empty FIFO: `fifo_len` is what the loss stood for.
        self.lost_one = pops == 1 && first_lost && self.fifo_len == codec_frame;
        if self.fifo_len == 0 {
            return decodes;
        }
        self.arrived = true;
        if skip {
            self.fifo_len = self.fifo_len.saturating_sub(codec_frame);
            self.last_stale = true;
            return decodes;
        }
        let take = self.fifo_len.min(codec_frame);
        scratch[..take].copy_from_slice(&self.fifo[..take]);
        scratch[take..codec_frame].fill(0);
        self.fifo.copy_within(take..self.fifo_len, 0);
        self.fifo_len -= take;
        self.last[..codec_frame].copy_from_slice(&scratch[..codec_frame]);
        self.last_stale = false;
        match self.upsampler.as_mut() {
            Some(up) => {
                if up
                    .process(&scratch[..codec_frame], &mut self.frame[..room_frame])
                    .is_err()
                {
                    return decodes;
                }
            }
            None => {
                // Same rate (the room follows its members' rates), so the lengths agree.
                let n = room_frame.min(codec_frame);
                self.frame[..n].copy_from_slice(&scratch[..n]);
                self.frame[n..room_frame].fill(0);
            }
        }
        self.has_audio = true;
        decodes
    }

    /// Sends one payload — or, while digits are being sent, this tick's telephone-event
    /// instead — or only advances the clock when the leg must not send. `out` is scratch for
    /// the datagram.
    pub fn send(&mut self, payload: &[u8], out: &mut [u8]) -> Result<bool, ()> {
        self.send_or_gap(Some(payload), out)
    }

    /// This tick's packet was lost before it reached us (a forwarded talker's): nothing goes
    /// out, but the sequence number moves on so the peer's decoder knows a packet is missing
    /// and conceals it (or recovers it from the next packet's in-band FEC). Telephone-events
    /// due this tick still go.
    pub fn send_gap(&mut self, out: &mut [u8]) -> Result<bool, ()> {
        self.send_or_gap(None, out)
    }

    /// The payload this tick's frame arrived in, when it can be forwarded as it is.
    pub fn forward_payload(&self) -> Option<&[u8]> {
        self.jitter.played().filter(|_| self.forwardable)
    }

    fn send_or_gap(&mut self, payload: Option<&[u8]>, out: &mut [u8]) -> Result<bool, ()> {
        let timestamp = self.timestamp;
        self.timestamp = self
            .timestamp
            .wrapping_add(self.codec.encoding.frame_samples() as u32);
        // Stepped even when nothing goes out (hold), like the audio clock.
        let event = self.dtmf_tick(timestamp);
        let Some(remote) = self.remote else {
            return Ok(false);
        };
        if !self.flow.send {
            return Ok(false);
        }
        let event_payload;
        let (header, payload) = match event {
            // RFC 4733 §2.5.1.2: the event's packets share its start timestamp, on our stream
            // (same SSRC, same sequence numbering); the first one carries the marker.
            Some((payload_type, bytes, marker, event_timestamp)) => {
                event_payload = bytes;
                let header = RtpHeader {
                    payload_type,
                    marker,
                    sequence: self.sequence,
                    timestamp: event_timestamp,
                    ssrc: self.ssrc,
                };
                (header, &event_payload[..])
            }
            None => {
                let Some(payload) = payload else {
                    self.sequence = self.sequence.wrapping_add(1);
                    return Ok(false);
                };
                let header = RtpHeader {
                    payload_type: self.codec.payload_type,
                    // RFC 3551 §4.1: the marker flags the first packet of a talkspurt; our
                    // stream is continuous, so only the very first packet carries it, and the
                    // first after telephone-events took the audio's place.
                    marker: !self.sent_any || self.resume_marker,
                    sequence: self.sequence,
                    timestamp,
                    ssrc: self.ssrc,
                };
                self.resume_marker = false;
                (header, payload)
            }
        };
        let Ok(len) = header.write_with_payload(payload, out) else {
            return Err(());
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.sent_any = true;
        let Some(socket) = self.socket.as_ref() else {
            self.stats.packets_out += 1;
            return Ok(true);
        };
        match socket.send_to(&out[..len], remote) {
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

    /// This tick's telephone-event while digits are being sent: (payload type, payload,
    /// marker, timestamp). RFC 4733 §3.1: events are sent instead of the audio, never over it.
    fn dtmf_tick(&mut self, timestamp: u32) -> Option<(u8, [u8; EventPayload::LEN], bool, u32)> {
        loop {
            let Some(payload_type) = self.telephone_event_pt else {
                self.abandon_dtmf();
                return None;
            };
            let queue = self.dtmf_out.as_mut()?;
            match queue.tick(timestamp) {
                DtmfTick::Event {
                    payload,
                    marker,
                    timestamp,
                } => {
                    self.resume_marker = true;
                    return Some((payload_type, payload, marker, timestamp));
                }
                DtmfTick::Audio => return None,
                DtmfTick::Done => {
                    let mut done = self.dtmf_out.take()?;
                    self.dtmf_out = done.next.take();
                    self.finish_dtmf(done);
                }
            }
        }
    }

    /// Queues digits after any being sent; refused (handed back) without a telephone-event
    /// payload type.
    pub fn queue_dtmf(&mut self, queue: Box<DtmfQueue>) -> Result<(), Box<DtmfQueue>> {
        if self.telephone_event_pt.is_none() {
            return Err(queue);
        }
        match self.dtmf_out.as_mut() {
            Some(sending) => sending.append(queue),
            None => self.dtmf_out = Some(queue),
        }
        Ok(())
    }

    /// Digit strings finished since the last call, chained through `next`.
    pub fn take_dtmf_done(&mut self) -> Option<Box<DtmfQueue>> {
        self.dtmf_done.take()
    }

    fn finish_dtmf(&mut self, done: Box<DtmfQueue>) {
        match self.dtmf_done.as_mut() {
            Some(earlier) => earlier.append(done),
            None => self.dtmf_done = Some(done),
        }
    }

    /// The peer no longer takes telephone-events (a re-INVITE): everything queued ends.
    fn abandon_dtmf(&mut self) {
        let mut next = self.dtmf_out.take();
        while let Some(mut queue) = next {
            next = queue.next.take();
            queue.interrupted = true;
            self.finish_dtmf(queue);
        }
    }

    /// Adds the next chunk of the member-targeted playback to `pcm` (at the codec rate).
    /// Returns `Some(id)` when the playback just finished.
    pub fn mix_playback(&mut self, pcm: &mut [i16]) -> Option<u64> {
        let playback = self.playback.as_mut()?;
        let done = playback.mix_into(pcm);
        if done {
            let id = playback.id;
            self.playback = None;
            return Some(id);
        }
        None
    }

    pub fn final_stats(&self) -> LegStats {
        LegStats {
            jitter: self.jitter.stats(),
            ..self.stats
        }
    }
}

/// What one [`Leg::receive`] read.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    /// Datagrams read.
    pub packets: u64,
    pub malformed: u64,
    /// Dropped: not from the learned source.
    pub foreign: u64,
}

/// Fills `out` with the audio before it (`history`, then `pending` which follows it) played
/// backwards and faded linearly to zero: the first sample continues from the last one heard,
/// so there is no click, and no tone is stretched.
fn fade_out(pending: &[i16], history: &[i16], out: &mut [i16]) {
    let n = out.len() as i32;
    let before = pending.iter().rev().chain(history.iter().rev());
    for (i, (o, &s)) in out.iter_mut().zip(before).enumerate() {
        *o = (i32::from(s) * (n - 1 - i as i32) / n) as i16;
    }
}

fn max_payload(codec: Codec) -> usize {
    match codec.encoding {
        crate::Encoding::Pcmu | crate::Encoding::Pcma => MAX_G711_PAYLOAD,
        crate::Encoding::Opus { .. } => MAX_PAYLOAD,
    }
}

/// RFC 6464 §3 in an RFC 8285 one-byte header extension block: the level is `-level` dBov.
fn audio_level(profile: u16, block: &[u8], id: u8) -> Option<f32> {
    if profile != 0xBEDE {
        return None;
    }
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        if b == 0 {
            i += 1;
            continue;
        }
        let element = b >> 4;
        let len = usize::from(b & 0x0f) + 1;
        if element == 15 {
            return None;
        }
        if element == id {
            let value = *block.get(i + 1)?;
            return Some(-f32::from(value & 0x7f));
        }
        i += 1 + len;
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCMU leg that takes telephone-events, fed a 440 Hz tone with a key press in the
    /// middle (five event packets in place of five audio packets, numbered with them, the
    /// audio clock running on); returns the frame each tick produced.
    fn frames_around_a_key_press() -> (Vec<[i16; 160]>, LegStats) {
        use chorus_media::g711::Law;
        use chorus_media::tone::Sine;

        let source: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
        let mut spec = LegSpec::detached(LegId(1), Codec::PCMU);
        spec.telephone_event_pt = Some(101);
        spec.remote = Some(source);
        let mut leg = Leg::new(RoomId(1), spec, &MixerConfig::default()).expect("a PCMU leg");
        let mut sine = Sine::new(440.0, 8000, 8000.0);
        let mut scratch = [0i16; MAX_FRAME];
        let mut frames = Vec::new();
        for seq in 0..60u16 {
            let event = (30..35).contains(&seq);
            let mut pcm = [0i16; 160];
            sine.fill(&mut pcm);
            let mut payload = [0u8; 160];
            Law::Mu.encode(&pcm, &mut payload);
            let (payload_type, timestamp, payload) = if event {
                let duration = (seq - 29) * 160;
                let [d0, d1] = duration.to_be_bytes();
                (101, 30 * 160, &[5, 10, d0, d1][..])
            } else {
                (0, u32::from(seq) * 160, &payload[..])
            };
            let mut wire = [0u8; 200];
            let header = RtpHeader {
                payload_type,
                marker: seq == 30,
                sequence: seq,
                timestamp,
                ssrc: 9,
            };
            let len = header.write_with_payload(payload, &mut wire).expect("fits");
            let packet = RtpPacket::parse(&wire[..len]).expect("well-formed");
            let now_us = u64::from(seq) * 20_000;
            leg.on_packet(&packet, source, now_us, &mut |_| {});
            leg.decode(8000, Need::Frame, &mut scratch);
            let mut frame = [0i16; 160];
            if leg.has_audio {
                frame.copy_from_slice(&leg.frame[..160]);
            }
            frames.push(frame);
        }
        (frames, leg.final_stats())
    }

    #[test]
    fn a_measured_quiet_frame_has_exactly_the_level_of_its_decoded_samples() {
        use crate::talk::frame_dbov;
        use chorus_media::g711::Law;
        use chorus_media::tone::Sine;

        const START_DBOV: f32 = -42.0;
        for (codec, law) in [(Codec::PCMU, Law::Mu), (Codec::PCMA, Law::A)] {
            let source: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
            let leg = |codec| {
                let mut spec = LegSpec::detached(LegId(1), codec);
                spec.remote = Some(source);
                Leg::new(RoomId(1), spec, &MixerConfig::default()).expect("a G.711 leg")
            };
            let (mut decoded, mut measured) = (leg(codec), leg(codec));
            let mut scratch = [0i16; MAX_FRAME];
            let mut seen = (0, 0);
            // Tones from far below the start level to far above it, a step per frame.
            for seq in 0..80u16 {
                let amplitude = 4.0 * 1.12f64.powi(i32::from(seq));
                let mut pcm = [0i16; 160];
                Sine::new(300.0 + f64::from(seq) * 20.0, 8000, amplitude).fill(&mut pcm);
                let mut payload = [0u8; 160];
                law.encode(&pcm, &mut payload);
                let mut wire = [0u8; 200];
                let header = RtpHeader {
                    payload_type: law.payload_type(),
                    marker: false,
                    sequence: seq,
                    timestamp: u32::from(seq) * 160,
                    ssrc: 9,
                };
                let len = header
                    .write_with_payload(&payload, &mut wire)
                    .expect("fits");
                let packet = RtpPacket::parse(&wire[..len]).expect("well-formed");
                let now_us = u64::from(seq) * 20_000;
                for leg in [&mut decoded, &mut measured] {
                    leg.on_packet(&packet, source, now_us, &mut |_| {});
                }
                decoded.decode(8000, Need::Frame, &mut scratch);
                measured.decode(
                    8000,
                    Need::Quiet {
                        start_dbov: START_DBOV,
                    },
                    &mut scratch,
                );
                assert_eq!(decoded.arrived, measured.arrived, "{seq}");
                if !decoded.arrived {
                    continue;
                }
                let level = frame_dbov(&decoded.frame[..160]);
                match measured.measured_level {
                    Some(m) => {
                        assert_eq!(m.to_bits(), level.to_bits(), "{codec:?} {seq}");
                        assert!(m < START_DBOV && !measured.has_audio);
                        seen.0 += 1;
                    }
                    None => {
                        // Loud enough to start a talker: decoded, the same samples.
                        assert!(level >= START_DBOV, "{codec:?} {seq}: {level}");
                        assert_eq!(measured.frame[..160], decoded.frame[..160]);
                        seen.1 += 1;
                    }
                }
            }
            assert!(
                seen.0 > 10 && seen.1 > 10,
                "both sides of the threshold: {seen:?}"
            );
        }
    }

    #[test]
    fn a_key_press_fades_the_audio_to_silence_instead_of_concealing_it() {
        let (frames, stats) = frames_around_a_key_press();
        assert_eq!((stats.concealed_frames, stats.jitter.lost), (0, 0));
        let peak = |f: &[i16; 160]| f.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let quiet: Vec<usize> = (0..frames.len())
            .filter(|&i| peak(&frames[i]) == 0)
            .collect();
        // The buffer's start, then exactly the four frames after the fade: not one frame of
        // the tone is repeated into the key press.
        let first = quiet[quiet.len() - 4];
        assert_eq!(
            &quiet[quiet.len() - 4..],
            [first, first + 1, first + 2, first + 3]
        );
        assert!(quiet[..quiet.len() - 4].iter().all(|&i| i < 2), "{quiet:?}");
        // The fade continues from the last sample heard, without a click, down to zero.
        let (before, fade) = (&frames[first - 2], &frames[first - 1]);
        assert!(peak(before) > 6000, "tone before the key press");
        assert!((i32::from(fade[0]) - i32::from(before[159])).abs() < 1500);
        assert_eq!(fade[159], 0);
        let energy = |s: &[i16]| s.iter().map(|&x| i64::from(x).pow(2)).sum::<i64>();
        assert!(energy(&fade[..80]) > 4 * energy(&fade[80..]));
        // Then the tone is back, and it stays.
        assert!(frames[first + 4..].iter().all(|f| peak(f) > 6000));
    }

    /// A PCMU leg whose peer's SDP gave `sdp`, with a 2 s learning window.
    fn leg_with_sdp(sdp: Option<SocketAddr>) -> Leg {
        let mut spec = LegSpec::detached(LegId(1), Codec::PCMU);
        spec.remote = sdp;
        spec.telephone_event_pt = Some(101);
        Leg::new(RoomId(1), spec, &MixerConfig::default()).expect("a PCMU leg")
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    /// Hands the leg one PCMU packet; true when it was taken as the peer's media.
    fn feed(leg: &mut Leg, from: SocketAddr, ssrc: u32, sequence: u16, now_us: u64) -> bool {
        feed_pt(leg, from, 0, ssrc, sequence, now_us)
    }

    fn feed_pt(
        leg: &mut Leg,
        from: SocketAddr,
        payload_type: u8,
        ssrc: u32,
        sequence: u16,
        now_us: u64,
    ) -> bool {
        let mut wire = [0u8; 200];
        let header = RtpHeader {
            payload_type,
            marker: false,
            sequence,
            timestamp: u32::from(sequence) * 160,
            ssrc,
        };
        let len = header
            .write_with_payload(&[0xff; 160], &mut wire)
            .expect("fits");
        let packet = RtpPacket::parse(&wire[..len]).expect("well-formed");
        let before = leg.accepted;
        leg.on_packet(&packet, from, now_us, &mut |_| {});
        leg.accepted > before
    }

    const PEER: &str = "192.0.2.10:4000";
    const STRANGER: &str = "198.51.100.66:5555";

    #[test]
    fn media_from_the_sdp_address_locks_the_leg_and_strangers_are_dropped() {
        let (peer, stranger) = (addr(PEER), addr(STRANGER));
        let mut leg = leg_with_sdp(Some(peer));
        assert!(feed(&mut leg, peer, 7, 100, 0));
        // During what would be a learning window, with the SSRC and sequence of the peer's
        // stream copied, and afterwards: never taken, never answered.
        for (i, now_us) in [(1u16, 20_000u64), (2, 40_000), (3, 60_000), (4, 9_000_000)] {
            assert!(!feed(&mut leg, stranger, 7, 100 + i, now_us));
            assert!(!feed(&mut leg, stranger, rand::random(), i, now_us));
        }
        assert_eq!(leg.remote, Some(peer));
        assert_eq!(leg.stats.foreign_dropped, 8);
        assert!(feed(&mut leg, peer, 7, 101, 9_020_000));
    }

    #[test]
    fn a_stranger_with_random_ssrcs_never_passes_probation() {
        let (peer, stranger) = (addr(PEER), addr(STRANGER));
        let mut leg = leg_with_sdp(Some(peer));
        for i in 0..50u16 {
            assert!(!feed(
                &mut leg,
                stranger,
                rand::random(),
                i,
                u64::from(i) * 1000
            ));
        }
        assert_eq!(leg.remote, Some(peer), "nothing is sent to the stranger");
        assert_eq!(leg.stats.foreign_dropped, 50);
        assert!(feed(&mut leg, peer, 9, 1, 60_000));
    }

    #[test]
    fn a_peer_behind_nat_is_latched_after_probation_and_locked_after_the_window() {
        let (sdp, nat, stranger) = (addr(PEER), addr("203.0.113.7:31000"), addr(STRANGER));
        let mut leg = leg_with_sdp(Some(sdp));
        assert!(!feed(&mut leg, nat, 5, 10, 0));
        assert!(!feed(&mut leg, nat, 5, 11, 20_000));
        assert_eq!(
            leg.remote,
            Some(sdp),
            "probation: still sending to the SDP address"
        );
        // Another source cannot take the place of a candidate that keeps sending.
        assert!(!feed(&mut leg, stranger, 1, 1, 30_000));
        assert!(!feed(&mut leg, stranger, 1, 2, 35_000));
        assert!(!feed(&mut leg, stranger, 1, 3, 38_000));
        // A lost packet does not restart the probation.
        assert!(feed(&mut leg, nat, 5, 13, 60_000));
        assert_eq!(leg.remote, Some(nat));
        assert!(!feed(&mut leg, stranger, 1, 4, 80_000));
        assert!(feed(&mut leg, nat, 5, 14, 2_100_000));
        // Locked after the window: the SDP address no longer takes over.
        assert!(!feed(&mut leg, sdp, 6, 1, 2_120_000));
        assert_eq!(leg.remote, Some(nat));
    }

    #[test]
    fn the_sdp_address_takes_over_from_a_source_latched_during_the_window() {
        let (sdp, early) = (addr(PEER), addr(STRANGER));
        let mut leg = leg_with_sdp(Some(sdp));
        for i in 0..3u16 {
            feed(&mut leg, early, 3, i, u64::from(i) * 20_000);
        }
        assert_eq!(
            leg.remote,
            Some(early),
            "latched as a peer behind NAT would be"
        );
        // A payload type the peer did not negotiate does not take over.
        assert!(!feed_pt(&mut leg, sdp, 96, 4, 1, 70_000));
        assert!(feed(&mut leg, sdp, 4, 1, 80_000));
        assert_eq!(leg.remote, Some(sdp));
        assert!(!feed(&mut leg, early, 3, 4, 100_000));
    }

    #[test]
    fn telephone_events_from_the_sdp_address_lock_the_leg_too() {
        let (peer, stranger) = (addr(PEER), addr(STRANGER));
        let mut leg = leg_with_sdp(Some(peer));
        assert!(!feed_pt(&mut leg, stranger, 101, 1, 1, 0));
        assert!(feed_pt(&mut leg, peer, 101, 2, 1, 1000));
        assert!(!feed(&mut leg, stranger, 1, 2, 2000));
    }

    #[test]
    fn a_reinvite_to_a_new_address_relearns_that_address_only() {
        let (old, new, stranger) = (addr(PEER), addr("192.0.2.20:4100"), addr(STRANGER));
        let mut leg = leg_with_sdp(Some(old));
        assert!(feed(&mut leg, old, 1, 1, 0));
        let update = |remote| LegUpdate {
            codec: Codec::PCMU,
            telephone_event_pt: Some(101),
            remote: Some(remote),
            flow: Flow::SEND_RECV,
        };
        // The same address (hold, unhold, a session refresh) keeps the lock.
        leg.update(update(old), None);
        assert!(feed(&mut leg, old, 1, 2, 20_000));
        leg.update(update(new), None);
        assert_eq!(leg.remote, Some(new));
        for i in 0..5u16 {
            assert!(!feed(
                &mut leg,
                old,
                1,
                3 + i,
                40_000 + u64::from(i) * 20_000
            ));
            assert!(!feed(
                &mut leg,
                stranger,
                8,
                i,
                40_000 + u64::from(i) * 20_000
            ));
        }
        assert!(feed(&mut leg, new, 2, 1, 200_000));
        assert!(!feed(&mut leg, old, 1, 9, 220_000));
        assert_eq!(leg.remote, Some(new));
    }

    #[test]
    fn a_reinvite_from_a_peer_behind_nat_reopens_probation() {
        let (sdp, nat, moved) = (
            addr("10.0.0.5:4000"),
            addr("203.0.113.7:31000"),
            addr("203.0.113.7:31002"),
        );
        let mut leg = leg_with_sdp(Some(sdp));
        for i in 0..3u16 {
            feed(&mut leg, nat, 5, i, u64::from(i) * 20_000);
        }
        assert_eq!(leg.remote, Some(nat));
        leg.update(
            LegUpdate {
                codec: Codec::PCMU,
                telephone_event_pt: Some(101),
                remote: Some(addr("10.0.0.5:4002")),
                flow: Flow::SEND_RECV,
            },
            None,
        );
        for i in 0..3u16 {
            feed(&mut leg, moved, 6, i, 3_000_000 + u64::from(i) * 20_000);
        }
        assert_eq!(leg.remote, Some(moved));
    }

    #[test]
    fn without_an_sdp_address_the_first_steady_stream_is_learned() {
        let (peer, stranger) = (addr(PEER), addr(STRANGER));
        let activity = Arc::new(LegActivity::default());
        let mut spec = LegSpec::detached(LegId(1), Codec::PCMU);
        spec.activity = Some(activity.clone());
        let mut leg = Leg::new(RoomId(1), spec, &MixerConfig::default()).expect("a PCMU leg");
        assert_eq!(leg.remote, None);
        let taken: Vec<bool> = (0..4u16)
            .map(|i| feed(&mut leg, peer, 1, i, u64::from(i) * 20_000))
            .collect();
        assert_eq!(taken, [false, false, true, true]);
        assert_eq!(leg.remote, Some(peer));
        assert!(!feed(&mut leg, stranger, 1, 4, 100_000));
        assert_eq!(
            activity.packets(),
            2,
            "only the peer's media counts as activity"
        );
    }

    #[test]
    fn audio_level_is_read_from_a_one_byte_extension() {
        // id 1, len 0 (1 byte): V=1, level 30 → -30 dBov; then padding.
        let block = [0x10, 0x80 | 30, 0, 0];
        assert_eq!(audio_level(0xBEDE, &block, 1), Some(-30.0));
        assert_eq!(audio_level(0xBEDE, &block, 2), None);
        assert_eq!(audio_level(0x1000, &block, 1), None);
        // Truncated element: no panic.
        assert_eq!(audio_level(0xBEDE, &[0x10], 1), None);
    }
}
