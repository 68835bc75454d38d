//! The media thread: a loop over absolute deadlines that runs every room it owns once per
//! 20 ms period, rooms spread over `tick_slots` slots so their packets don't all leave at the
//! same instant.
//!
//! Slots are opened as the work needs them, not all at once: each wake-up of the thread costs
//! about as much CPU as the packets of 10–30 G.711 members on a VM (timer, context switch, the
//! idle core's exit), so a lightly loaded thread wakes once per period for all its rooms. A new
//! room joins the open slot with the least work while that work is under [`SLOT_BUDGET_US`];
//! then the next slot opens. Slots without rooms are not woken for (slot 0 always is: commands
//! are applied at every wake-up).
//!
//! Rooms grow after they are placed, and rooms created together all see the same slot work:
//! once a second a slot over the budget with two rooms or more hands one room (the largest
//! that fits) to a slot with room to spare, opening one if need be ([`pick_move`]), at the
//! start of the next period. The moved room's next period is longer or shorter by the slots'
//! distance, once. Its members' packets are stamped with the period they are read in (see
//! [`MediaThread::tick_slot`]), so only members whose packets arrive between the two slots see
//! a change, which their jitter buffers absorb like any network jitter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chorus_media::rtp::RtpPacket;
use chorus_media::udp::RecvBatch;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::dtmf::ReceivedDigit;
use crate::leg::Leg;
use crate::room::{Room, RoomNotice, Scratch, Tap, MAX_TAPS};
use crate::{Command, Garbage, LegId, LegResources, MixerConfig, MixerEvent, RoomId, ThreadStats};

/// Datagrams read per leg per tick at most: a flood on one port cannot starve the others.
const RECV_BUDGET: usize = 32;
/// After a stall longer than this many periods, jump to the next deadline instead of
/// running the missed ticks back to back (which would burst packets at every peer).
const MAX_CATCH_UP: u32 = 5;
/// Periods between two samplings of the legs' loss and jitter (one second).
const SAMPLE_EVERY: u64 = 50;
/// Work per period (µs) a slot takes before new rooms go to another slot: a tenth of the
/// period, about 250 G.711 members or four Opus rooms of 10 here.
const SLOT_BUDGET_US: u32 = 2_000;
/// The most slots a period is divided into (`media.tick_slots` is checked against it).
pub const MAX_TICK_SLOTS: usize = 20;

/// What the last sampling saw of the leg in the same slot of `legs`.
#[derive(Clone, Copy, Default)]
struct Seen {
    lost: u64,
    underruns: u64,
    trimmed: u64,
    /// Packets the jitter buffer took (received or injected).
    stored: u64,
}

pub(crate) struct MediaThread {
    index: usize,
    threads: usize,
    config: MixerConfig,
    commands: Receiver<Command>,
    peers: Arc<[Sender<Command>]>,
    events: Sender<MixerEvent>,
    stats: Arc<[ThreadStats]>,
    stop: Arc<AtomicBool>,
    legs: Vec<Option<Box<Leg>>>,
    /// Parallel to `legs`: counters already reported, so each sampling adds only what is new.
    seen: Vec<Seen>,
    /// Where each leg sits in `legs`: commands and injected packets find it in O(1).
    by_id: HashMap<LegId, usize>,
    rooms: Vec<Room>,
    /// Taps added for a room that has no leg on this thread yet: adopted by the room when its
    /// first leg arrives (at most [`MAX_TAPS`] per room).
    pending_taps: Vec<(RoomId, Box<Tap>)>,
    /// Rooms in each tick slot.
    slot_rooms: [u32; MAX_TICK_SLOTS],
    /// Each slot's work per period (µs), smoothed over about eight periods.
    slot_work_us: [u32; MAX_TICK_SLOTS],
    /// The last sampling asked for a room move, made at the next period's start.
    rebalance_due: bool,
    recv: RecvBatch,
    scratch: Scratch,
    /// Origin of the arrival times handed to jitter buffers.
    started: Instant,
}

impl MediaThread {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        threads: usize,
        config: MixerConfig,
        commands: Receiver<Command>,
        peers: Arc<[Sender<Command>]>,
        events: Sender<MixerEvent>,
        stats: Arc<[ThreadStats]>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            index,
            threads,
            commands,
            peers,
            events,
            stats,
            stop,
            legs: Vec::with_capacity(config.legs_per_thread_hint),
            seen: Vec::with_capacity(config.legs_per_thread_hint),
            by_id: HashMap::with_capacity(config.legs_per_thread_hint),
            rooms: Vec::with_capacity(config.legs_per_thread_hint / 2 + 1),
            pending_taps: Vec::new(),
            slot_rooms: [0; MAX_TICK_SLOTS],
            slot_work_us: [0; MAX_TICK_SLOTS],
            rebalance_due: false,
            recv: RecvBatch::new(),
            scratch: Scratch::new(),
            started: Instant::now(),
            config,
        }
    }

    fn stats(&self) -> &ThreadStats {
        &self.stats[self.index]
    }

    fn slots(&self) -> usize {
        self.config.tick_slots.clamp(1, MAX_TICK_SLOTS)
    }

    pub fn run(mut self) {
        let slots = self.slots() as u32;
        let step = self.config.tick / slots;
        // Threads start at staggered offsets so their sends don't land at the same instant.
        let offset = step * self.index as u32 / self.threads.max(1) as u32;
        let mut deadline = Instant::now() + step + offset;
        let mut slot = 0usize;
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if now < deadline {
                std::thread::sleep(deadline - now);
            }
            let woke = Instant::now();
            self.stats()
                .record_lateness(woke.saturating_duration_since(deadline).as_micros() as u64);
            if !self.drain_commands() {
                break;
            }
            // Rooms change slots at a period's start, before any of its slots ran: a room moved
            // out of slot 0 after it ran there would run again in the same period, and one
            // moved into it would miss a period.
            if slot == 0 && self.rebalance_due {
                self.rebalance_due = false;
                self.rebalance_slots();
            }
            // Packets are stamped with the period they are read in, not the wall clock: see
            // `tick_slot`.
            self.tick_slot(slot, deadline - step * slot as u32);
            let done = Instant::now();
            let stats = &self.stats[self.index];
            if slot == 0 {
                let ticks = stats.ticks.fetch_add(1, Ordering::Relaxed) + 1;
                if ticks.is_multiple_of(SAMPLE_EVERY) {
                    self.sample_legs();
                    self.rebalance_due = true;
                }
            }
            let work_us = done.duration_since(woke).as_micros() as u64;
            let work = work_us.min(u64::from(u32::MAX)) as u32;
            self.slot_work_us[slot] = smooth(self.slot_work_us[slot], work);
            let stats = &self.stats[self.index];
            stats.record_tick_duration(work_us);
            // An overrun is a room tick that ends after the same slot's next deadline: its
            // rooms' next period then starts late. Ending after the *following slot's*
            // deadline (a quarter period) only delays other rooms, and shows in the lateness
            // histogram instead.
            if done > deadline + self.config.tick {
                stats.overruns.fetch_add(1, Ordering::Relaxed);
            }
            // The next slot with rooms, or slot 0 (commands) when the others are empty.
            loop {
                deadline += step;
                slot = (slot + 1) % slots as usize;
                if slot == 0 || self.slot_rooms[slot] > 0 {
                    break;
                }
            }
            if done > deadline + self.config.tick * MAX_CATCH_UP {
                let behind = done.duration_since(deadline);
                let skip = (behind.as_nanos() / self.config.tick.as_nanos()) as u32;
                deadline += self.config.tick * skip;
                stats
                    .skipped_ticks
                    .fetch_add(u64::from(skip), Ordering::Relaxed);
            }
        }
        // The rooms end with the thread: their recordings hear so from the control side.
        for mut room in std::mem::take(&mut self.rooms) {
            for tap in room.take_taps() {
                self.end_tap(room.id, tap);
            }
        }
        for (_, tap) in std::mem::take(&mut self.pending_taps) {
            self.emit(MixerEvent::Dispose(Garbage(tap)));
        }
    }

    /// Applies queued commands; false when the control side is gone.
    pub fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn emit(&self, event: MixerEvent) {
        send_event(&self.events, self.stats(), event);
    }

    /// A playback that ends before its end: tell the control side, and hand the samples back
    /// to be freed there.
    fn interrupted(&self, leg: LegId, playback: Box<crate::Playback>) {
        self.emit(MixerEvent::PlaybackDone {
            leg,
            id: playback.id,
            interrupted: true,
        });
        self.emit(MixerEvent::Dispose(Garbage(playback)));
    }

    /// A tap the room cannot take: the control side hears so and frees it.
    fn refuse_tap(&self, room: RoomId, tap: Box<Tap>) {
        self.emit(MixerEvent::TapRefused { room, id: tap.id });
        self.emit(MixerEvent::Dispose(Garbage(tap)));
    }

    /// A tap whose room ended: reported, and handed back to be dropped off this thread.
    fn end_tap(&self, room: RoomId, tap: Box<Tap>) {
        self.emit(MixerEvent::TapRemoved { room, id: tap.id });
        self.emit(MixerEvent::Dispose(Garbage(tap)));
    }

    fn add_tap(&mut self, room: RoomId, tap: Box<Tap>) {
        if let Some(r) = self.rooms.iter_mut().find(|r| r.id == room) {
            if let Err(tap) = r.add_tap(tap) {
                self.refuse_tap(room, tap);
            }
            return;
        }
        let waiting = self.pending_taps.iter().filter(|(r, _)| *r == room);
        let (count, duplicate) = waiting.fold((0, false), |(n, dup), (_, t)| {
            (n + 1, dup || t.id == tap.id)
        });
        if count >= MAX_TAPS || duplicate {
            self.refuse_tap(room, tap);
            return;
        }
        self.pending_taps.push((room, tap));
    }

    fn remove_tap(&mut self, room: RoomId, id: u64) {
        let tap = match self.rooms.iter_mut().find(|r| r.id == room) {
            Some(r) => r.remove_tap(id),
            None => self
                .pending_taps
                .iter()
                .position(|(r, t)| *r == room && t.id == id)
                .map(|i| self.pending_taps.swap_remove(i).1),
        };
        if let Some(tap) = tap {
            self.emit(MixerEvent::Dispose(Garbage(tap)));
        }
    }

    fn slot_of(&self, id: LegId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::AddLeg { leg } => self.add_leg(leg),
            Command::AddTap { room, tap } => self.add_tap(room, tap),
            Command::RemoveTap { room, id } => self.remove_tap(room, id),
            Command::UpdateLeg { leg, update, state } => {
                if let Some(slot) = self.slot_of(leg) {
                    let room = self.legs[slot].as_ref().map(|l| l.room);
                    let old = self.legs[slot]
                        .as_mut()
                        .and_then(|l| l.update(update, state));
                    if let Some(old) = old {
                        self.emit(MixerEvent::Dispose(Garbage(Box::new(old))));
                    }
                    if let Some(room) = room {
                        self.reshape(room);
                    }
                }
            }
            Command::SetFlags { leg, flags } => {
                if let Some(slot) = self.slot_of(leg) {
                    if let Some(l) = self.legs[slot].as_mut() {
                        l.flags = flags;
                    }
                }
            }
            Command::Play { leg, playback } => {
                let Some(slot) = self.slot_of(leg) else {
                    return;
                };
                let Some(l) = self.legs[slot].as_mut() else {
                    return;
                };
                if playback.rate != l.codec.encoding.rate() {
                    // Prepared for another codec rate (a re-INVITE crossed it): refuse it.
                    self.interrupted(leg, playback);
                    return;
                }
                if let Some(old) = l.playback.replace(playback) {
                    self.interrupted(leg, old);
                }
            }
            Command::SendDtmf { leg, digits } => {
                let refused = match self.slot_of(leg).and_then(|s| self.legs[s].as_mut()) {
                    Some(l) => l.queue_dtmf(digits).err(),
                    None => Some(digits),
                };
                // No telephone-event any more (a re-INVITE crossed the command) or the leg
                // has gone: nothing is sent, and whoever waits for the digits hears so.
                if let Some(mut digits) = refused {
                    digits.interrupted = true;
                    self.emit(MixerEvent::DtmfSent {
                        leg,
                        interrupted: true,
                    });
                    self.emit(MixerEvent::Dispose(Garbage(digits)));
                }
            }
            Command::StopPlay { leg } => {
                let Some(slot) = self.slot_of(leg) else {
                    return;
                };
                if let Some(old) = self.legs[slot].as_mut().and_then(|l| l.playback.take()) {
                    self.interrupted(leg, old);
                }
            }
            Command::RemoveLeg { leg } => {
                if let Some(leg) = self.take_leg(leg) {
                    let event = MixerEvent::LegRemoved {
                        leg: leg.id,
                        stats: leg.final_stats(),
                        resources: LegResources(leg),
                    };
                    self.emit(event);
                }
            }
            Command::MoveLeg {
                leg,
                to_thread,
                to_room,
            } => {
                let Some(mut moving) = self.take_leg(leg) else {
                    return;
                };
                moving.room = to_room;
                if to_thread == self.index {
                    self.add_leg(moving);
                    return;
                }
                let Some(peer) = self.peers.get(to_thread) else {
                    self.emit(lost(moving));
                    return;
                };
                // Handed over by message: the other thread adopts the leg at its next tick.
                match peer.try_send(Command::AddLeg { leg: moving }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(Command::AddLeg { leg }))
                    | Err(TrySendError::Disconnected(Command::AddLeg { leg })) => {
                        self.emit(lost(leg));
                    }
                    Err(_) => {}
                }
            }
        }
    }

    fn add_leg(&mut self, leg: Box<Leg>) {
        let room_id = leg.room;
        let id = leg.id;
        let slot = match self.legs.iter().position(Option::is_none) {
            Some(free) => {
                self.legs[free] = Some(leg);
                free
            }
            None => {
                self.legs.push(Some(leg));
                self.legs.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        if self.seen.len() < self.legs.len() {
            self.seen.resize(self.legs.len(), Seen::default());
        }
        // What the leg counted before it came here (another thread) was reported there.
        self.seen[slot] = self.legs[slot].as_deref().map_or(Seen::default(), seen_of);
        let index = match self.rooms.iter().position(|r| r.id == room_id) {
            Some(i) => i,
            None => {
                let tick_slot = self.pick_tick_slot();
                self.slot_rooms[tick_slot] += 1;
                let mut room = Room::new(room_id, tick_slot, self.config.max_talkers);
                // Taps that were waiting for this room start hearing it now.
                let mut i = 0;
                while i < self.pending_taps.len() {
                    if self.pending_taps[i].0 == room_id {
                        let (_, tap) = self.pending_taps.remove(i);
                        if let Err(tap) = room.add_tap(tap) {
                            self.refuse_tap(room_id, tap);
                        }
                    } else {
                        i += 1;
                    }
                }
                self.rooms.push(room);
                self.rooms.len() - 1
            }
        };
        if self.rooms[index]
            .add(slot, &mut self.legs, &self.config)
            .is_err()
        {
            self.stats().codec_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.publish_counts();
        // The control side waits for this after a move before it sends the leg's new thread
        // more commands, which would otherwise overtake the handover.
        self.emit(MixerEvent::LegAdded {
            leg: id,
            room: room_id,
            thread: self.index,
        });
    }

    fn pick_tick_slot(&self) -> usize {
        let slots = self.slots();
        pick_slot(&self.slot_rooms[..slots], &self.slot_work_us[..slots])
    }

    /// Moves at most one room out of an overloaded slot (see the module docs).
    fn rebalance_slots(&mut self) {
        let slots = self.slots();
        let rooms = self.rooms.iter().map(|r| (r.tick_slot, r.work_us));
        let Some((index, to)) = pick_move(
            &self.slot_rooms[..slots],
            &self.slot_work_us[..slots],
            rooms,
        ) else {
            return;
        };
        let room = &mut self.rooms[index];
        let from = room.tick_slot;
        room.tick_slot = to;
        self.slot_rooms[from] -= 1;
        self.slot_rooms[to] += 1;
        self.slot_work_us[from] = self.slot_work_us[from].saturating_sub(room.work_us);
        self.slot_work_us[to] += room.work_us;
        self.stats[self.index]
            .room_moves
            .fetch_add(1, Ordering::Relaxed);
    }

    fn reshape(&mut self, room: RoomId) {
        if let Some(r) = self.rooms.iter_mut().find(|r| r.id == room) {
            if r.reshape(&mut self.legs, &self.config).is_err() {
                self.stats[self.index]
                    .codec_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Detaches a leg from its room (the room ends with its last member, API.md §7.3, and
    /// its taps go back to the control side, whose dropping them ends their recordings).
    fn take_leg(&mut self, id: LegId) -> Option<Box<Leg>> {
        let slot = self.by_id.remove(&id)?;
        self.sample_leg(slot);
        let leg = self.legs[slot].take()?;
        if let Some(r) = self.rooms.iter().position(|r| r.id == leg.room) {
            let _ = self.rooms[r].remove(slot, &mut self.legs, &self.config);
            if self.rooms[r].legs.is_empty() {
                let mut ended = self.rooms.swap_remove(r);
                self.slot_rooms[ended.tick_slot] -= 1;
                if self.slot_rooms[ended.tick_slot] == 0 {
                    self.slot_work_us[ended.tick_slot] = 0;
                }
                for tap in ended.take_taps() {
                    self.end_tap(ended.id, tap);
                }
            }
        }
        self.publish_counts();
        Some(leg)
    }

    /// Once a second: the packets each leg lost since the last sampling, and its current
    /// interarrival jitter (legs that received nothing since then have none to report).
    fn sample_legs(&mut self) {
        for slot in 0..self.legs.len() {
            self.sample_leg(slot);
        }
    }

    fn sample_leg(&mut self, slot: usize) {
        let (Some(leg), Some(seen)) = (self.legs[slot].as_deref(), self.seen.get_mut(slot)) else {
            return;
        };
        let now = seen_of(leg);
        let stats = &self.stats[self.index];
        add_since(&stats.packets_lost, now.lost, seen.lost);
        add_since(&stats.underruns, now.underruns, seen.underruns);
        add_since(&stats.frames_trimmed, now.trimmed, seen.trimmed);
        if now.stored != seen.stored {
            let rate = u64::from(leg.codec.encoding.rate().max(1));
            stats.record_jitter(u64::from(leg.jitter.jitter()) * 1_000_000 / rate);
            stats.record_playout(u64::from(leg.jitter.target_delay()) * 1_000_000 / rate);
        }
        *seen = now;
    }

    fn publish_counts(&self) {
        let legs = self.legs.iter().flatten().count() as u64;
        self.stats().legs.store(legs, Ordering::Relaxed);
        self.stats()
            .rooms
            .store(self.rooms.len() as u64, Ordering::Relaxed);
    }

    /// Runs the rooms of one tick slot: receive, decode, mix, encode, send.
    ///
    /// `period` is the nominal start of the 20 ms period being run (slot 0's deadline), and
    /// it is the arrival time given to every packet read now. What a buffer read at ticks must
    /// know is the tick from which each packet could be played, and that is exactly what this
    /// stamp varies with: a packet that misses its room's tick moves by a whole period. The
    /// wall clock at the read would add the host's wake-up noise (tens to hundreds of µs
    /// here, nothing to do with the network), and at 48 kHz, where one RTP unit is 21 µs,
    /// that noise alone made the RFC 3550 estimate non-zero and held every Opus leg one frame
    /// deeper than it needs. Stamping with the period rather than the slot's own deadline
    /// also keeps a room's move to another slot from looking like jitter on every leg: only
    /// legs whose packets land between the two slots see their tick change.
    pub fn tick_slot(&mut self, slot: usize, period: Instant) {
        let now_us = period.duration_since(self.started).as_micros() as u64;
        let (mut packets_in, mut malformed, mut foreign) = (0u64, 0u64, 0u64);
        let mut totals = crate::room::TickCounts::default();
        let events = &self.events;
        let stats = &self.stats[self.index];
        // Each room's work runs from the previous room's end: one clock read per room.
        let mut mark = Instant::now();
        for room in self.rooms.iter_mut().filter(|r| r.tick_slot == slot) {
            let room_id = room.id;
            for &s in &room.legs {
                if let Some(leg) = self.legs[s].as_deref_mut() {
                    let id = leg.id;
                    let received = leg.receive(&mut self.recv, RECV_BUDGET, now_us, &mut |digit| {
                        send_event(events, stats, dtmf_event(room_id, id, digit))
                    });
                    packets_in += received.packets;
                    malformed += received.malformed;
                    foreign += received.foreign;
                }
            }
            let counts = room.tick(
                &mut self.legs,
                &self.config,
                &mut self.scratch,
                &mut |notice| {
                    let event = match notice {
                        RoomNotice::Talking { leg, talking } => MixerEvent::Talking {
                            room: room_id,
                            leg,
                            talking,
                        },
                        RoomNotice::Floor { leg } => MixerEvent::Floor { room: room_id, leg },
                        RoomNotice::PlaybackDone { leg, id } => MixerEvent::PlaybackDone {
                            leg,
                            id,
                            interrupted: false,
                        },
                        RoomNotice::DtmfSent { leg, done } => {
                            let mut queue = Some(&done);
                            while let Some(q) = queue {
                                let interrupted = q.interrupted;
                                send_event(
                                    events,
                                    stats,
                                    MixerEvent::DtmfSent { leg, interrupted },
                                );
                                queue = q.next.as_ref();
                            }
                            MixerEvent::Dispose(Garbage(done))
                        }
                    };
                    send_event(events, stats, event);
                },
            );
            let end = Instant::now();
            let work_us = end
                .duration_since(mark)
                .as_micros()
                .min(u128::from(u32::MAX)) as u32;
            mark = end;
            room.work_us = smooth(room.work_us, work_us);
            totals.encodes += counts.encodes;
            totals.decodes += counts.decodes;
            totals.forks += counts.forks;
            totals.forwards += counts.forwards;
            totals.silence_sends += counts.silence_sends;
            totals.packets_out += counts.packets_out;
            totals.send_errors += counts.send_errors;
        }
        stats.packets_in.fetch_add(packets_in, Ordering::Relaxed);
        stats.malformed.fetch_add(malformed, Ordering::Relaxed);
        stats.foreign_dropped.fetch_add(foreign, Ordering::Relaxed);
        stats
            .packets_out
            .fetch_add(totals.packets_out, Ordering::Relaxed);
        stats
            .send_errors
            .fetch_add(totals.send_errors, Ordering::Relaxed);
        stats.encodes.fetch_add(totals.encodes, Ordering::Relaxed);
        stats.decodes.fetch_add(totals.decodes, Ordering::Relaxed);
        stats.forks.fetch_add(totals.forks, Ordering::Relaxed);
        stats.forwards.fetch_add(totals.forwards, Ordering::Relaxed);
        stats
            .silence_sends
            .fetch_add(totals.silence_sends, Ordering::Relaxed);
    }

    /// Every slot once: one whole 20 ms period (manual driving in tests and benchmarks).
    pub fn tick_all(&mut self, now: Instant) {
        for slot in 0..self.slots() {
            self.tick_slot(slot, now);
        }
        let ticks = self.stats().ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if ticks.is_multiple_of(SAMPLE_EVERY) {
            self.sample_legs();
        }
    }

    /// Hands a packet straight to a leg, as if it had arrived on its socket.
    pub fn inject(&mut self, leg: LegId, packet: &RtpPacket<'_>, source: SocketAddr, now: Instant) {
        let now_us = now.duration_since(self.started).as_micros() as u64;
        let (events, stats) = (&self.events, &self.stats[self.index]);
        if let Some(slot) = self.by_id.get(&leg).copied() {
            if let Some(l) = self.legs[slot].as_deref_mut() {
                let (room, id) = (l.room, l.id);
                let foreign = l.stats.foreign_dropped;
                l.on_packet(packet, source, now_us, &mut |digit| {
                    send_event(events, stats, dtmf_event(room, id, digit))
                });
                stats
                    .foreign_dropped
                    .fetch_add(l.stats.foreign_dropped - foreign, Ordering::Relaxed);
            }
        }
    }
}

/// Adds what a leg's jitter-buffer count grew by since it was last seen. A new codec brings a
/// new jitter buffer whose counts start again from zero: all of `now` is then new.
fn add_since(counter: &AtomicU64, now: u64, seen: u64) {
    let grown = now.checked_sub(seen).unwrap_or(now);
    if grown > 0 {
        counter.fetch_add(grown, Ordering::Relaxed);
    }
}

fn seen_of(leg: &Leg) -> Seen {
    let jitter = leg.jitter.stats();
    Seen {
        lost: jitter.lost,
        underruns: jitter.underruns,
        trimmed: jitter.trimmed,
        stored: jitter.stored,
    }
}

/// Queues an event for the control side without ever blocking: when it is far behind, the
/// event is dropped (and freed here) and counted.
fn send_event(events: &Sender<MixerEvent>, stats: &ThreadStats, event: MixerEvent) {
    if events.try_send(event).is_err() {
        stats.events_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn dtmf_event(room: RoomId, leg: LegId, digit: ReceivedDigit) -> MixerEvent {
    MixerEvent::Dtmf {
        room,
        leg,
        digit: digit.digit,
        duration_ms: digit.duration_ms,
    }
}

fn lost(leg: Box<Leg>) -> MixerEvent {
    MixerEvent::LegRemoved {
        leg: leg.id,
        stats: leg.final_stats(),
        resources: LegResources(leg),
    }
}

/// An average over about eight samples, without keeping them.
fn smooth(average: u32, sample: u32) -> u32 {
    ((u64::from(average) * 7 + u64::from(sample)) / 8) as u32
}

/// Which room (index into `rooms`, each `(slot, work µs)`) to move to which slot, if any: the
/// busiest slot over [`SLOT_BUDGET_US`] that holds two rooms or more gives its largest room
/// that fits under the budget of the least busy other open slot, or else of an empty one
/// (which opens it). A slot that receives stays under the budget, so it never gives the room
/// back.
fn pick_move(
    slot_rooms: &[u32],
    work_us: &[u32],
    rooms: impl Iterator<Item = (usize, u32)> + Clone,
) -> Option<(usize, usize)> {
    let from = (0..slot_rooms.len())
        .filter(|&s| slot_rooms[s] >= 2 && work_us[s] > SLOT_BUDGET_US)
        .max_by_key(|&s| work_us[s])?;
    let fits = |to: usize| {
        let headroom = SLOT_BUDGET_US.saturating_sub(work_us[to]);
        rooms
            .clone()
            .enumerate()
            .filter(|&(_, (slot, work))| slot == from && work <= headroom)
            .max_by_key(|&(_, (_, work))| work)
            .map(|(index, _)| (index, to))
    };
    // The least busy open slot has the most headroom of the open ones: if nothing fits there,
    // nothing fits in the others.
    let least_busy_open = (0..slot_rooms.len())
        .filter(|&s| s != from && slot_rooms[s] > 0 && work_us[s] < SLOT_BUDGET_US)
        .min_by_key(|&s| work_us[s]);
    least_busy_open.and_then(fits).or_else(|| {
        (0..slot_rooms.len())
            .find(|&s| slot_rooms[s] == 0)
            .and_then(fits)
    })
}

/// The slot a new room ticks in, given each slot's rooms and smoothed work: the open slot with
/// the least work while that is under [`SLOT_BUDGET_US`], else the first empty slot, else
/// (every slot open and busy) the one with the least work.
fn pick_slot(rooms: &[u32], work_us: &[u32]) -> usize {
    let least_busy = (0..rooms.len())
        .filter(|&s| rooms[s] > 0)
        .min_by_key(|&s| work_us[s]);
    match least_busy {
        Some(s) if work_us[s] < SLOT_BUDGET_US => s,
        _ => (0..rooms.len())
            .find(|&s| rooms[s] == 0)
            .or(least_busy)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::{pick_move, pick_slot, SLOT_BUDGET_US};

    const UNDER: u32 = SLOT_BUDGET_US / 4;
    const OVER: u32 = SLOT_BUDGET_US + 1;

    #[test]
    fn first_room_ticks_in_slot_zero() {
        assert_eq!(pick_slot(&[0, 0, 0, 0], &[0, 0, 0, 0]), 0);
    }

    #[test]
    fn rooms_share_a_slot_while_its_work_is_under_budget() {
        assert_eq!(pick_slot(&[7, 0, 0, 0], &[UNDER, 0, 0, 0]), 0);
    }

    #[test]
    fn a_busy_slot_opens_the_next() {
        assert_eq!(pick_slot(&[25, 0, 0, 0], &[OVER, 0, 0, 0]), 1);
        assert_eq!(pick_slot(&[25, 20, 0, 0], &[OVER, UNDER, 0, 0]), 1);
    }

    #[test]
    fn an_open_slot_under_budget_beats_an_empty_one() {
        // Slot 1 emptied when its rooms ended; slot 2 still has room for more.
        assert_eq!(pick_slot(&[25, 0, 3, 0], &[OVER, 0, UNDER, 0]), 2);
    }

    #[test]
    fn when_every_slot_is_busy_the_least_busy_takes_it() {
        assert_eq!(
            pick_slot(&[9, 9, 9, 9], &[OVER + 30, OVER, OVER + 10, OVER + 20]),
            1
        );
    }

    #[test]
    fn a_single_slot_takes_every_room() {
        assert_eq!(pick_slot(&[40], &[OVER]), 0);
    }

    #[test]
    fn rooms_that_grew_in_one_slot_are_spread_one_at_a_time() {
        // Ten rooms created while small all sat in slot 0; each now takes 400 µs.
        let rooms: Vec<(usize, u32)> = (0..10).map(|_| (0, 400)).collect();
        let mut slot_rooms = [10, 0, 0, 0];
        let mut work = [4_000, 0, 0, 0];
        let mut moves = 0;
        while let Some((index, to)) = pick_move(&slot_rooms, &work, rooms.iter().copied()) {
            assert_eq!(rooms[index].0, 0);
            slot_rooms[0] -= 1;
            slot_rooms[to] += 1;
            work[0] -= 400;
            work[to] += 400;
            moves += 1;
            assert!(moves < 10, "converges");
            if work[0] <= SLOT_BUDGET_US {
                break;
            }
        }
        assert_eq!(work[0], SLOT_BUDGET_US, "slot 0 back at the budget");
        assert!(work[1..].iter().all(|&w| w <= SLOT_BUDGET_US), "{work:?}");
        assert_eq!(slot_rooms.iter().sum::<u32>(), 10);
    }

    #[test]
    fn nothing_moves_while_every_slot_is_under_budget_or_holds_one_room() {
        let rooms = [(0, UNDER), (0, UNDER), (1, 5 * SLOT_BUDGET_US)];
        assert_eq!(
            pick_move(
                &[2, 1, 0, 0],
                &[2 * UNDER, 5 * SLOT_BUDGET_US, 0, 0],
                rooms.iter().copied()
            ),
            None,
            "slot 0 is under budget; slot 1's one room has nowhere better to go"
        );
    }

    #[test]
    fn the_largest_room_that_fits_moves_to_the_least_busy_open_slot() {
        // Slot 0 is over; slot 2 has 1,000 µs to spare, slot 1 only 100.
        let rooms = [(0, 1_500), (0, 900), (0, 300), (1, 1_900), (2, 1_000)];
        let got = pick_move(
            &[3, 1, 1, 0],
            &[2_700, 1_900, 1_000, 0],
            rooms.iter().copied(),
        );
        assert_eq!(got, Some((1, 2)), "the 900 µs room into slot 2");
    }

    #[test]
    fn a_room_too_big_for_the_open_slots_opens_an_empty_one() {
        let rooms = [(0, 1_800), (0, 600), (1, 1_900)];
        let got = pick_move(&[2, 1, 0, 0], &[2_400, 1_900, 0, 0], rooms.iter().copied());
        assert_eq!(got, Some((0, 2)), "the 1,800 µs room opens slot 2");
    }
}
