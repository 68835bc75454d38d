//! The media thread: a loop over absolute 20 ms deadlines that runs every room it owns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chorus_media::g711::Law;
use chorus_media::NARROWBAND_FRAME as FRAME;
use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::kernel;
use crate::leg::Leg;
use crate::{Command, LegResources, MixerConfig, MixerEvent, RoomId, ThreadStats};

/// Datagrams read per leg per tick at most: a flood on one port cannot starve the others.
const RECV_BUDGET: usize = 32;
/// After a stall longer than this many periods, jump to the next deadline instead of
/// running the missed ticks back to back (which would burst packets at every peer).
const MAX_CATCH_UP: u32 = 5;

struct Room {
    id: RoomId,
    legs: Vec<usize>,
}

pub(crate) struct MediaThread {
    index: usize,
    threads: usize,
    config: MixerConfig,
    commands: Receiver<Command>,
    events: Sender<MixerEvent>,
    stats: Arc<[ThreadStats]>,
    stop: Arc<AtomicBool>,
    legs: Vec<Option<Box<Leg>>>,
    rooms: Vec<Room>,
    recv_buf: Box<[u8; 2048]>,
    send_buf: Box<[u8; 2048]>,
    total: [i32; FRAME],
    pcm: [i16; FRAME],
    payload: [u8; FRAME],
    shared: [[u8; FRAME]; 2],
    silence: [[u8; FRAME]; 2],
}

fn law_slot(law: Law) -> usize {
    match law {
        Law::Mu => 0,
        Law::A => 1,
    }
}

impl MediaThread {
    pub fn new(
        index: usize,
        threads: usize,
        config: MixerConfig,
        commands: Receiver<Command>,
        events: Sender<MixerEvent>,
        stats: Arc<[ThreadStats]>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            index,
            threads,
            config,
            commands,
            events,
            stats,
            stop,
            legs: Vec::with_capacity(256),
            rooms: Vec::with_capacity(64),
            recv_buf: Box::new([0; 2048]),
            send_buf: Box::new([0; 2048]),
            total: [0; FRAME],
            pcm: [0; FRAME],
            payload: [0; FRAME],
            shared: [[0; FRAME]; 2],
            silence: [[Law::Mu.silence(); FRAME], [Law::A.silence(); FRAME]],
        }
    }

    fn stats(&self) -> &ThreadStats {
        &self.stats[self.index]
    }

    pub fn run(mut self) {
        let period = self.config.tick;
        // Threads start at staggered offsets so their sends don't all land at the same
        // instant of the period.
        let offset = period * self.index as u32 / self.threads.max(1) as u32;
        let mut deadline = Instant::now() + period + offset;
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if now < deadline {
                std::thread::sleep(deadline - now);
            }
            let woke = Instant::now();
            let late = woke.saturating_duration_since(deadline);
            self.stats().record_lateness(late.as_micros() as u64);
            if !self.drain_commands() {
                break;
            }
            self.tick();
            let done = Instant::now();
            let stats = &self.stats[self.index];
            stats.ticks.fetch_add(1, Ordering::Relaxed);
            stats.busy_us_total.fetch_add(
                done.duration_since(woke).as_micros() as u64,
                Ordering::Relaxed,
            );
            deadline += period;
            if done > deadline {
                stats.overruns.fetch_add(1, Ordering::Relaxed);
            }
            if done > deadline + period * MAX_CATCH_UP {
                let behind = done.duration_since(deadline);
                let skip = (behind.as_nanos() / period.as_nanos()) as u32;
                deadline += period * skip;
                stats
                    .skipped_ticks
                    .fetch_add(u64::from(skip), Ordering::Relaxed);
            }
        }
    }

    /// Applies queued commands; false when the control side is gone.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::AddLeg { leg } => self.add_leg(leg),
            Command::UpdateLeg { leg, update } => {
                if let Some(l) = self.find_leg(leg) {
                    l.update(update);
                }
            }
            Command::SetFlags { leg, flags } => {
                if let Some(l) = self.find_leg(leg) {
                    l.flags = flags;
                }
            }
            Command::RemoveLeg { leg } => self.remove_leg(leg),
        }
    }

    fn find_leg(&mut self, id: crate::LegId) -> Option<&mut Leg> {
        self.legs
            .iter_mut()
            .flatten()
            .find(|l| l.id == id)
            .map(|b| &mut **b)
    }

    fn add_leg(&mut self, leg: Box<Leg>) {
        let room_id = leg.room;
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
        match self.rooms.iter_mut().find(|r| r.id == room_id) {
            Some(room) => room.legs.push(slot),
            None => {
                let mut legs = Vec::with_capacity(16);
                legs.push(slot);
                self.rooms.push(Room { id: room_id, legs });
            }
        }
        self.publish_counts();
    }

    fn remove_leg(&mut self, id: crate::LegId) {
        let Some(slot) = self
            .legs
            .iter()
            .position(|l| l.as_ref().is_some_and(|l| l.id == id))
        else {
            return;
        };
        let Some(leg) = self.legs[slot].take() else {
            return;
        };
        if let Some(r) = self.rooms.iter().position(|r| r.id == leg.room) {
            let room = &mut self.rooms[r];
            room.legs.retain(|&s| s != slot);
            if room.legs.is_empty() {
                // The room ends with its last member (API.md §7.3).
                self.rooms.swap_remove(r);
            }
        }
        let event = MixerEvent::LegRemoved {
            leg: leg.id,
            stats: leg.final_stats(),
            resources: LegResources(leg),
        };
        if self.events.try_send(event).is_err() {
            // The control side is far behind; the leg is dropped here instead, which is
            // slower but never blocks.
            self.stats().events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.publish_counts();
    }

    fn publish_counts(&self) {
        let legs = self.legs.iter().flatten().count() as u64;
        self.stats().legs.store(legs, Ordering::Relaxed);
        self.stats()
            .rooms
            .store(self.rooms.len() as u64, Ordering::Relaxed);
    }

    /// One 20 ms period: receive, decode, mix, encode, send for every room of this thread.
    fn tick(&mut self) {
        let (mut packets_in, mut malformed) = (0u64, 0u64);
        for leg in self.legs.iter_mut().flatten() {
            let (p, m) = leg.receive(&mut self.recv_buf[..], RECV_BUDGET);
            packets_in += p;
            malformed += m;
            leg.decode();
        }
        let mut packets_out = 0u64;
        let mut send_errors = 0u64;
        for room in &self.rooms {
            self.total.fill(0);
            for &slot in &room.legs {
                let Some(leg) = self.legs[slot].as_deref_mut() else {
                    continue;
                };
                leg.in_mix = leg.has_audio && !leg.flags.muted;
                if leg.in_mix {
                    kernel::accumulate(&mut self.total, &leg.frame);
                }
            }
            // Listeners that put nothing into the total all hear the same thing: encode it
            // once per codec, lazily.
            let mut shared_ready = [false; 2];
            for &slot in &room.legs {
                let Some(leg) = self.legs[slot].as_deref_mut() else {
                    continue;
                };
                let law = leg.codec.law;
                let s = law_slot(law);
                let payload: &[u8] = if leg.flags.deaf {
                    &self.silence[s]
                } else if leg.in_mix {
                    kernel::minus_own(&self.total, &leg.frame, &mut self.pcm);
                    law.encode(&self.pcm, &mut self.payload);
                    &self.payload
                } else {
                    if !shared_ready[s] {
                        kernel::clamp_total(&self.total, &mut self.pcm);
                        law.encode(&self.pcm, &mut self.shared[s]);
                        shared_ready[s] = true;
                    }
                    &self.shared[s]
                };
                match leg.send(Some(payload), &mut self.send_buf[..]) {
                    Ok(true) => packets_out += 1,
                    Ok(false) => {}
                    Err(()) => send_errors += 1,
                }
            }
        }
        let stats = &self.stats[self.index];
        stats.packets_in.fetch_add(packets_in, Ordering::Relaxed);
        stats.packets_out.fetch_add(packets_out, Ordering::Relaxed);
        stats.malformed.fetch_add(malformed, Ordering::Relaxed);
        stats.send_errors.fetch_add(send_errors, Ordering::Relaxed);
    }
}
