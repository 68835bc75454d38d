//! The conference registry: which media thread runs which room, keyed by (account, name),
//! and who is in it. Member ids come from one process-wide counter and are never reused
//! while the process runs (API.md §7.3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chorus_mixer::{LegId, MemberFlags, MixerHandle, RoomId};
use dashmap::DashMap;
use tokio::sync::mpsc;

/// Rooms are per account: two accounts may both have a room called `sales`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub account: String,
    pub name: String,
}

/// What the control plane can ask of a member's call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberCommand {
    /// End the call (BYE).
    Hangup,
    /// Leave the room; the call flow goes on (with the default flow, the call then ends).
    Kick,
}

/// A member of a live room.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: u64,
    pub leg: LegId,
    pub call_uuid: String,
    pub from: String,
    pub to: String,
    pub caller_name: String,
    pub inbound: bool,
    pub joined: Instant,
    pub flags: MemberFlags,
    /// The rate of the member's codec: what its private audio must be prepared at.
    pub codec_rate: u32,
    pub commands: mpsc::UnboundedSender<MemberCommand>,
}

#[derive(Debug, Clone)]
pub struct RoomEntry {
    pub id: RoomId,
    pub thread: usize,
    pub uuid: uuid::Uuid,
    pub created: Instant,
    pub members: Vec<Member>,
}

#[derive(Debug)]
pub struct Rooms {
    rooms: DashMap<RoomKey, RoomEntry>,
    next_room: AtomicU64,
    next_member: AtomicU64,
}

impl Default for Rooms {
    fn default() -> Self {
        Self {
            rooms: DashMap::new(),
            next_room: AtomicU64::new(1),
            next_member: AtomicU64::new(1),
        }
    }
}

impl Rooms {
    /// A fresh member id.
    pub fn next_member_id(&self) -> u64 {
        self.next_member.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a member, creating the room (on the least-loaded media thread) if it does not
    /// exist. Returns the room instance to join.
    pub fn join(&self, key: RoomKey, mixer: &MixerHandle, member: Member) -> (RoomId, usize) {
        let mut entry = self.rooms.entry(key).or_insert_with(|| RoomEntry {
            id: RoomId(self.next_room.fetch_add(1, Ordering::Relaxed)),
            thread: mixer.pick_thread(),
            uuid: uuid::Uuid::new_v4(),
            created: Instant::now(),
            members: Vec::new(),
        });
        entry.members.push(member);
        (entry.id, entry.thread)
    }

    /// Takes a member out of room instance `id`; the room is forgotten with its last member
    /// (API.md §7.3), so the next join creates a fresh instance.
    pub fn leave(&self, key: &RoomKey, id: RoomId, member: u64) {
        if let Some(mut entry) = self.rooms.get_mut(key) {
            if entry.id == id {
                entry.members.retain(|m| m.id != member);
            }
        }
        self.rooms
            .remove_if(key, |_, e| e.id == id && e.members.is_empty());
    }

    /// Changes one member's record in place.
    pub fn update_member(&self, key: &RoomKey, member: u64, f: impl FnOnce(&mut Member)) {
        if let Some(mut entry) = self.rooms.get_mut(key) {
            if let Some(m) = entry.members.iter_mut().find(|m| m.id == member) {
                f(m);
            }
        }
    }

    pub fn get(&self, key: &RoomKey) -> Option<RoomEntry> {
        self.rooms.get(key).map(|e| e.clone())
    }

    /// Names of an account's live rooms.
    pub fn names(&self, account: &str) -> Vec<String> {
        self.rooms
            .iter()
            .filter(|e| e.key().account == account)
            .map(|e| e.key().name.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}
