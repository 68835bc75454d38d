//! One room on a media thread: its members, its rate, its mix set, and one output group per
//! distinct encoding among its members. A tick runs decode → talker selection → sum → one
//! shared encode per group for everyone who hears the plain mix → a private encode for each
//! member that must not hear itself or has audio of its own → send; and the clamped total to
//! the room's listen-only taps (recordings).

use chorus_media::resample::Resampler;
use chorus_media::AudioTap;

use crate::codec::{silence_payload, Encoder, MAX_FRAME, MAX_PAYLOAD};
use crate::dtmf::DtmfQueue;
use crate::kernel;
use crate::leg::{Leg, Need, Output};
use crate::talk::{frame_dbov, select_talkers};
use crate::{Encoding, LegId, MixerConfig, MixerError, RoomId};

/// Listen-only taps a room holds at most; more are refused ([`crate::MixerEvent::TapRefused`]).
pub(crate) const MAX_TAPS: usize = 4;

/// What a tap hears while nobody is mixed: pushed without clamping an all-zero total.
static SILENCE: [i16; MAX_FRAME] = [0; MAX_FRAME];

/// A listen-only tap on a room's mix, boxed on the control side so that the media thread
/// can hand it back ([`crate::Garbage`]) without allocating.
pub(crate) struct Tap {
    pub id: u64,
    pub sink: Box<dyn AudioTap>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("id", &self.id).finish()
    }
}

/// Everything the members of one encoding share.
pub(crate) struct Group {
    pub encoding: Encoding,
    pub members: usize,
    encoder: Encoder,
    /// Room rate → encoding rate, while they differ.
    resampler: Option<Box<Resampler>>,
    /// The clamped room total at the encoding's rate, valid when `pcm_ready`.
    pcm: Box<[i16; MAX_FRAME]>,
    pcm_ready: bool,
    payload: Box<[u8; MAX_PAYLOAD]>,
    payload_len: usize,
    payload_ready: bool,
    silence: Box<[u8]>,
}

impl Group {
    fn new(encoding: Encoding, room_rate: u32, config: &MixerConfig) -> Result<Self, MixerError> {
        Ok(Self {
            encoding,
            members: 0,
            encoder: Encoder::new(encoding, config.opus_complexity)?,
            resampler: resampler(room_rate, encoding.rate())?,
            pcm: Box::new([0; MAX_FRAME]),
            pcm_ready: false,
            payload: Box::new([0; MAX_PAYLOAD]),
            payload_len: 0,
            payload_ready: false,
            silence: silence_payload(encoding, config.opus_complexity)?,
        })
    }
}

fn resampler(from: u32, to: u32) -> Result<Option<Box<Resampler>>, MixerError> {
    if from == to {
        return Ok(None);
    }
    Resampler::new(from, to)
        .map(|r| Some(Box::new(r)))
        .map_err(|e| MixerError::Codec(e.to_string()))
}

/// Per-tick counters a room adds to its thread's.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TickCounts {
    pub encodes: u64,
    pub decodes: u64,
    pub forks: u64,
    /// Talkers sent the other talker's packet as it came instead of an encode.
    pub forwards: u64,
    pub silence_sends: u64,
    pub packets_out: u64,
    pub send_errors: u64,
}

/// Something a room tells the control side.
#[derive(Debug)]
pub(crate) enum RoomNotice {
    Talking {
        leg: LegId,
        talking: bool,
    },
    Floor {
        leg: LegId,
    },
    PlaybackDone {
        leg: LegId,
        id: u64,
    },
    /// Digit strings a leg finished sending, chained through their `next`.
    DtmfSent {
        leg: LegId,
        done: Box<DtmfQueue>,
    },
}

pub(crate) struct Room {
    pub id: RoomId,
    /// Which tick slot of the period this room runs in.
    pub tick_slot: usize,
    /// Its work per period (µs: receive, mix, encode, send), smoothed over about eight
    /// periods; what moving it to another slot would move.
    pub work_us: u32,
    pub rate: u32,
    pub legs: Vec<usize>,
    pub groups: Vec<Group>,
    mix_set: Vec<usize>,
    floor: Option<usize>,
    total: Box<[i32; MAX_FRAME]>,
    /// At most [`MAX_TAPS`]; each hears the clamped total once a tick. Boxed so a removed
    /// one goes back as `Garbage` without an allocation.
    #[allow(clippy::vec_box)]
    taps: Vec<Box<Tap>>,
    ticks: u64,
}

/// Scratch buffers a thread lends to every room it runs.
pub(crate) struct Scratch {
    pub decode: Box<[i16; MAX_FRAME]>,
    pub pcm: Box<[i16; MAX_FRAME]>,
    pub codec_pcm: Box<[i16; MAX_FRAME]>,
    pub payload: Box<[u8; MAX_PAYLOAD]>,
    pub datagram: Box<[u8; MAX_PAYLOAD + 64]>,
    /// The clamped room total handed to taps.
    pub tap: Box<[i16; MAX_FRAME]>,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            decode: Box::new([0; MAX_FRAME]),
            pcm: Box::new([0; MAX_FRAME]),
            codec_pcm: Box::new([0; MAX_FRAME]),
            payload: Box::new([0; MAX_PAYLOAD]),
            datagram: Box::new([0; MAX_PAYLOAD + 64]),
            tap: Box::new([0; MAX_FRAME]),
        }
    }
}

impl Room {
    pub fn new(id: RoomId, tick_slot: usize, max_talkers: usize) -> Self {
        Self {
            id,
            tick_slot,
            work_us: 0,
            rate: 8000,
            legs: Vec::with_capacity(16),
            groups: Vec::with_capacity(2),
            mix_set: Vec::with_capacity(max_talkers),
            floor: None,
            total: Box::new([0; MAX_FRAME]),
            taps: Vec::new(),
            ticks: 0,
        }
    }

    /// Attaches a tap; refused (and handed back) when the room has [`MAX_TAPS`] already or
    /// one with the same id. Runs on a command, so it may allocate.
    pub fn add_tap(&mut self, tap: Box<Tap>) -> Result<(), Box<Tap>> {
        if self.taps.len() >= MAX_TAPS || self.taps.iter().any(|t| t.id == tap.id) {
            return Err(tap);
        }
        self.taps.reserve_exact(MAX_TAPS - self.taps.len());
        self.taps.push(tap);
        Ok(())
    }

    pub fn remove_tap(&mut self, id: u64) -> Option<Box<Tap>> {
        let index = self.taps.iter().position(|t| t.id == id)?;
        Some(self.taps.swap_remove(index))
    }

    /// Every tap, detached (the room is ending).
    #[allow(clippy::vec_box)]
    pub fn take_taps(&mut self) -> Vec<Box<Tap>> {
        std::mem::take(&mut self.taps)
    }

    /// Adds the leg in `slot` and re-derives the room's rate and groups. Runs on a command,
    /// not in a tick, so it may allocate (resamplers, a new group's encoder).
    pub fn add(
        &mut self,
        slot: usize,
        legs: &mut [Option<Box<Leg>>],
        config: &MixerConfig,
    ) -> Result<(), MixerError> {
        self.legs.push(slot);
        self.reshape(legs, config)
    }

    pub fn remove(
        &mut self,
        slot: usize,
        legs: &mut [Option<Box<Leg>>],
        config: &MixerConfig,
    ) -> Result<(), MixerError> {
        self.legs.retain(|&s| s != slot);
        self.mix_set.retain(|&s| s != slot);
        if self.floor == Some(slot) {
            self.floor = None;
        }
        self.reshape(legs, config)
    }

    /// The mix rate is 8 kHz while every member is narrowband (no resampling at all), else the
    /// highest member rate; each member's encoding gets a group.
    pub fn reshape(
        &mut self,
        legs: &mut [Option<Box<Leg>>],
        config: &MixerConfig,
    ) -> Result<(), MixerError> {
        let rate = self
            .legs
            .iter()
            .filter_map(|&s| legs[s].as_deref())
            .map(|l| l.codec.encoding.rate())
            .max()
            .unwrap_or(8000);
        let rate_changed = rate != self.rate;
        self.rate = rate;
        if rate_changed {
            self.groups.clear();
        }
        for group in &mut self.groups {
            group.members = 0;
        }
        for &s in &self.legs {
            let Some(leg) = legs[s].as_deref_mut() else {
                continue;
            };
            let encoding = leg.codec.encoding;
            let index = match self.groups.iter().position(|g| g.encoding == encoding) {
                Some(i) => i,
                None => {
                    self.groups.push(Group::new(encoding, rate, config)?);
                    self.groups.len() - 1
                }
            };
            self.groups[index].members += 1;
            leg.group = index;
            let codec_rate = encoding.rate();
            if rate_changed || (leg.upsampler.is_some() != (codec_rate != rate)) {
                leg.upsampler = resampler(codec_rate, rate)?;
                leg.downsampler = resampler(rate, codec_rate)?;
            }
        }
        // Groups nobody uses any more go; indices of the rest are re-pointed.
        if self.groups.iter().any(|g| g.members == 0) {
            self.groups.retain(|g| g.members > 0);
            for &s in &self.legs {
                if let Some(leg) = legs[s].as_deref_mut() {
                    let encoding = leg.codec.encoding;
                    leg.group = self
                        .groups
                        .iter()
                        .position(|g| g.encoding == encoding)
                        .unwrap_or(0);
                }
            }
        }
        Ok(())
    }

    /// One 20 ms period of this room. Legs have already received their packets.
    pub fn tick(
        &mut self,
        legs: &mut [Option<Box<Leg>>],
        config: &MixerConfig,
        scratch: &mut Scratch,
        notices: &mut impl FnMut(RoomNotice),
    ) -> TickCounts {
        let mut counts = TickCounts::default();
        let frame = (self.rate / 50) as usize;
        self.ticks += 1;
        let talk = &config.talk;

        // Decode and detect talkers.
        let mut any_rising = false;
        for &s in &self.legs {
            let Some(leg) = legs[s].as_deref_mut() else {
                continue;
            };
            // A quiet member that is not mixed needs no decode when it reports its level
            // (RFC 6464); without one, an expensive decoder (Opus) runs only on every
            // `quiet_decode_interval`-th tick to watch for speech. That is what keeps rooms
            // of listeners cheap. Once a sampled frame is loud, every frame is decoded until
            // the detector decides, so a new talker is heard a tick after the start
            // hysteresis allows, not `quiet_decode_interval` ticks later; and a packet clearly
            // bigger than the member's quiet ones is decoded at once (`louder_than_quiet`).
            // A quiet G.711 member is not decoded either while its frames, measured on their
            // bytes, stay below the start level (`Need::Quiet`).
            let quiet = !leg.talk.talking() && !leg.talk.rising() && !self.mix_set.contains(&s);
            let sampled = leg.reported_level.is_none()
                && quiet
                && leg.decoder.is_expensive()
                && config.quiet_decode_interval > 1
                && !(self.ticks + s as u64).is_multiple_of(u64::from(config.quiet_decode_interval))
                && !leg.louder_than_quiet();
            let need = match leg.reported_level {
                _ if sampled => Need::Nothing,
                Some(level) if quiet && level < talk.start_dbov => Need::Nothing,
                None if quiet => Need::Quiet {
                    start_dbov: talk.start_dbov,
                },
                _ => Need::Frame,
            };
            counts.decodes += leg.decode(self.rate, need, &mut scratch.decode);
            let level = match (leg.reported_level, leg.arrived, leg.has_audio) {
                _ if sampled => continue,
                (Some(level), true, _) => level,
                (None, true, true) => frame_dbov(&leg.frame[..frame]),
                (None, true, false) => leg.measured_level.unwrap_or(-127.0),
                _ => -127.0,
            };
            if let Some(talking) = leg.talk.update(level, talk) {
                notices(RoomNotice::Talking {
                    leg: leg.id,
                    talking,
                });
            }
            any_rising |= leg.talk.rising();
        }

        // The loudest talkers, capped.
        {
            let legs_ref = &*legs;
            let level = |s: usize| legs_ref[s].as_deref().map_or(-127.0, |l| l.talk.level());
            let candidate = |s: usize| {
                legs_ref[s]
                    .as_deref()
                    .is_some_and(|l| l.talk.talking() && !l.flags.muted && l.flow.receive)
            };
            select_talkers(
                &mut self.mix_set,
                self.legs.iter().copied().filter(|&s| candidate(s)),
                config.max_talkers,
                talk.displace_db,
                level,
                candidate,
            );
            let loudest = self
                .mix_set
                .iter()
                .copied()
                .max_by(|&a, &b| level(a).total_cmp(&level(b)));
            if loudest.is_some() && loudest != self.floor {
                self.floor = loudest;
                if let Some(leg) = loudest.and_then(|s| legs_ref[s].as_deref()) {
                    notices(RoomNotice::Floor { leg: leg.id });
                }
            }
            // A member whose frame is loud but who is not talking yet (start hysteresis) is
            // mixed while the cap leaves room: the hysteresis decides who talks (events, the
            // floor, who may displace whom), not whether a voice's first frame is heard.
            // Otherwise every talkspurt after a pause would lose its first 20 ms. Not beside
            // exactly two talkers, though: they are being forwarded each other's packets, and
            // a one-frame blip from a third member (a cough, a click) would switch both of
            // them to private encodes and back, whose Opus state their decoders have not
            // followed: a worse glitch than a clipped first frame.
            if any_rising && self.mix_set.len() != 2 {
                for &s in &self.legs {
                    if self.mix_set.len() >= config.max_talkers {
                        break;
                    }
                    let rising = legs_ref[s]
                        .as_deref()
                        .is_some_and(|l| l.talk.rising() && !l.flags.muted && l.flow.receive);
                    if rising && !self.mix_set.contains(&s) {
                        self.mix_set.push(s);
                    }
                }
            }
        }

        // Sum the mix set.
        let total = &mut self.total[..frame];
        total.fill(0);
        let mut contributors = 0usize;
        for &s in &self.legs {
            let Some(leg) = legs[s].as_deref_mut() else {
                continue;
            };
            leg.contributed = leg.has_audio && self.mix_set.contains(&s);
            if leg.contributed {
                kernel::accumulate(total, &leg.frame[..frame]);
                contributors += 1;
            }
        }

        // Taps hear what a silent listener hears: every mixed talker, no playback. With no
        // contributor the total is all zeros and nothing is clamped.
        if !self.taps.is_empty() {
            let mix = if contributors == 0 {
                &SILENCE[..frame]
            } else {
                kernel::clamp_total(&self.total[..frame], &mut scratch.tap[..frame]);
                &scratch.tap[..frame]
            };
            for tap in &mut self.taps {
                tap.sink.push(self.rate, mix);
            }
        }

        // Decide each member's output; fork Opus encoders of members leaving the shared
        // stream *before* the shared encoder moves on, so their peers' decoders continue
        // seamlessly.
        for group in &mut self.groups {
            group.pcm_ready = false;
            group.payload_ready = false;
        }
        let pair = if config.shared_encoding && contributors == 2 {
            forward_pair(&self.legs, legs)
        } else {
            [None, None]
        };
        for &s in &self.legs {
            let Some(leg) = legs[s].as_deref_mut() else {
                continue;
            };
            leg.previous_output = leg.output;
            let hears_something = if leg.contributed {
                contributors > 1
            } else {
                contributors > 0
            };
            leg.output = if leg.playback.is_some() {
                Output::Private
            } else if leg.flags.deaf || !hears_something {
                Output::Silence
            } else if let Some(&(_, from)) = pair.iter().flatten().find(|(to, _)| *to == s) {
                Output::Forward(from)
            } else if leg.contributed || !config.shared_encoding {
                Output::Private
            } else {
                Output::Shared
            };
            if leg.output == Output::Private
                && leg.previous_output == Output::Shared
                && leg.encoder.is_stateful()
            {
                if let Some(group) = self.groups.get(leg.group) {
                    if leg.encoder.fork_from(&group.encoder) {
                        counts.forks += 1;
                    }
                }
            }
        }

        // Produce and send.
        let rate = self.rate;
        for &s in &self.legs {
            // A forwarded payload comes from another slot of `legs`: copied out first.
            let forwarded = match legs[s].as_deref().map(|l| l.output) {
                Some(Output::Forward(from)) => legs[from]
                    .as_deref()
                    .and_then(Leg::forward_payload)
                    .map(|p| {
                        scratch.payload[..p.len()].copy_from_slice(p);
                        p.len()
                    }),
                _ => None,
            };
            let Some(leg) = legs[s].as_deref_mut() else {
                continue;
            };
            let Some(group) = self.groups.get_mut(leg.group) else {
                continue;
            };
            let codec_frame = group.encoding.frame_samples();
            let sent = match leg.output {
                Output::Forward(_) => match forwarded {
                    Some(len) => {
                        let sent = leg.send(&scratch.payload[..len], &mut scratch.datagram[..]);
                        // Counted when it went out (not to a held call).
                        if sent == Ok(true) {
                            counts.forwards += 1;
                        }
                        sent
                    }
                    None => leg.send_gap(&mut scratch.datagram[..]),
                },
                Output::Silence => {
                    counts.silence_sends += 1;
                    leg.send(&group.silence, &mut scratch.datagram[..])
                }
                Output::Shared => {
                    if !group.payload_ready {
                        ensure_group_pcm(group, &self.total[..frame], rate, &mut scratch.pcm);
                        group.payload_len = group
                            .encoder
                            .encode(&group.pcm[..codec_frame], &mut group.payload[..])
                            .unwrap_or(0);
                        group.payload_ready = true;
                        counts.encodes += 1;
                    }
                    leg.send(
                        &group.payload[..group.payload_len],
                        &mut scratch.datagram[..],
                    )
                }
                Output::Private => {
                    let pcm = &mut scratch.codec_pcm[..codec_frame];
                    if leg.contributed {
                        // Total minus own, clamped once, then to the leg's rate.
                        kernel::minus_own(
                            &self.total[..frame],
                            &leg.frame[..frame],
                            &mut scratch.pcm[..frame],
                        );
                        match leg.downsampler.as_mut() {
                            Some(down) => {
                                if down.process(&scratch.pcm[..frame], pcm).is_err() {
                                    pcm.fill(0);
                                }
                            }
                            None => pcm.copy_from_slice(&scratch.pcm[..codec_frame]),
                        }
                    } else if leg.flags.deaf || contributors == 0 {
                        pcm.fill(0);
                    } else {
                        ensure_group_pcm(group, &self.total[..frame], rate, &mut scratch.pcm);
                        pcm.copy_from_slice(&group.pcm[..codec_frame]);
                    }
                    if let Some(id) = leg.mix_playback(pcm) {
                        notices(RoomNotice::PlaybackDone { leg: leg.id, id });
                    }
                    let len = leg
                        .encoder
                        .encode(pcm, &mut scratch.payload[..])
                        .unwrap_or(0);
                    counts.encodes += 1;
                    leg.send(&scratch.payload[..len], &mut scratch.datagram[..])
                }
            };
            match sent {
                Ok(true) => counts.packets_out += 1,
                Ok(false) => {}
                Err(()) => counts.send_errors += 1,
            }
            if let Some(done) = leg.take_dtmf_done() {
                notices(RoomNotice::DtmfSent { leg: leg.id, done });
            }
        }
        counts
    }
}

/// With exactly two mixed talkers, each hears the other alone: rather than decode, mix and
/// re-encode, each can be sent the other's packet as it came — no encode, no transcoding loss,
/// and end to end the peer's own FEC and loss concealment work on the original stream. Returns
/// the (listener slot, talker slot) pairs where that applies:
/// - both legs use the same encoding (any Opus packet decodes in any Opus decoder: for Opus,
///   any two Opus legs), and the listener has no playback of its own and isn't deaf (those
///   take the private path earlier);
/// - the talker's frame this tick is one packet as received. When that one packet was lost
///   on the way in, a stateless encoder (G.711) encodes the concealed frame as before; an
///   Opus listener keeps the forward and gets a gap in our sequence numbers instead, so its
///   decoder conceals the loss itself rather than hear a frame from our own encoder, whose
///   state its decoder has not followed. Anything else (packets of 10, 40 or 60 ms, or
///   telephone-events in place of audio) goes to the private encode: a gap there would be a
///   loss that never happened, and a talker sending 40 ms packets would be heard as nothing
///   but gaps.
///
/// What this trades: a talker moving between forwarded and encoded audio (a third talker
/// starts, or it stops talking) switches its Opus decoder to another encoder's stream, which
/// can smear the first frame after the switch, as already happens when a talker returns to
/// the shared stream.
fn forward_pair(room_legs: &[usize], legs: &[Option<Box<Leg>>]) -> [Option<(usize, usize)>; 2] {
    let mut talkers = room_legs
        .iter()
        .copied()
        .filter(|&s| legs[s].as_deref().is_some_and(|l| l.contributed));
    let (Some(a), Some(b)) = (talkers.next(), talkers.next()) else {
        return [None, None];
    };
    let forwardable = |to: usize, from: usize| {
        let (Some(to_leg), Some(from_leg)) = (legs[to].as_deref(), legs[from].as_deref()) else {
            return false;
        };
        let same = match (to_leg.codec.encoding, from_leg.codec.encoding) {
            (Encoding::Opus { .. }, Encoding::Opus { .. }) => true,
            (x, y) => x == y,
        };
        same && to_leg.playback.is_none()
            && !to_leg.flags.deaf
            && (from_leg.forwardable || (from_leg.lost_one && to_leg.encoder.is_stateful()))
    };
    [
        forwardable(a, b).then_some((a, b)),
        forwardable(b, a).then_some((b, a)),
    ]
}

/// The room total clamped once and brought to the group's rate; computed at most once a tick.
fn ensure_group_pcm(
    group: &mut Group,
    total: &[i32],
    room_rate: u32,
    scratch: &mut [i16; MAX_FRAME],
) {
    if group.pcm_ready {
        return;
    }
    let frame = (room_rate / 50) as usize;
    let codec_frame = group.encoding.frame_samples();
    match group.resampler.as_mut() {
        Some(down) => {
            kernel::clamp_total(total, &mut scratch[..frame]);
            if down
                .process(&scratch[..frame], &mut group.pcm[..codec_frame])
                .is_err()
            {
                group.pcm[..codec_frame].fill(0);
            }
        }
        None => kernel::clamp_total(total, &mut group.pcm[..codec_frame]),
    }
    group.pcm_ready = true;
}
