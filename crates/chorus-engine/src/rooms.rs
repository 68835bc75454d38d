//! The conference registry: which media thread runs which room, keyed by (account, name).

use std::sync::atomic::{AtomicU64, Ordering};

use chorus_mixer::{MixerHandle, RoomId};
use dashmap::DashMap;

/// Rooms are per account: two accounts may both have a room called `sales`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub account: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct RoomEntry {
    pub id: RoomId,
    pub thread: usize,
    pub members: usize,
    pub uuid: uuid::Uuid,
}

#[derive(Debug, Default)]
pub struct Rooms {
    rooms: DashMap<RoomKey, RoomEntry>,
    next_id: AtomicU64,
}

impl Rooms {
    /// Counts a new member in, creating the room (on the least-loaded media thread) if it
    /// does not exist. Returns the room instance to join.
    pub fn join(&self, key: RoomKey, mixer: &MixerHandle) -> RoomEntry {
        let mut entry = self.rooms.entry(key).or_insert_with(|| RoomEntry {
            id: RoomId(self.next_id.fetch_add(1, Ordering::Relaxed)),
            thread: mixer.pick_thread(),
            members: 0,
            uuid: uuid::Uuid::new_v4(),
        });
        entry.members += 1;
        entry.clone()
    }

    /// Counts a member out of room instance `id`; the room is forgotten with its last member
    /// (API.md §7.3), so the next join creates a fresh instance.
    pub fn leave(&self, key: &RoomKey, id: RoomId) {
        if let Some(mut entry) = self.rooms.get_mut(key) {
            if entry.id == id {
                entry.members = entry.members.saturating_sub(1);
            }
        }
        self.rooms
            .remove_if(key, |_, e| e.id == id && e.members == 0);
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
