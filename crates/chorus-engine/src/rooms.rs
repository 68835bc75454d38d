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
    /// A moderator (`startConferenceOnEnter`) is present: waiting members join the mix.
    RoomStarted,
    /// Someone left: a `stayAlone="false"` member checks whether it is now alone.
    CheckAlone,
}

/// Room-wide settings of an XML `<Conference>` room (API.md §7.1, §7.3).
#[derive(Debug, Clone)]
pub struct ConfState {
    /// A `startConferenceOnEnter` member has been present (the default flow starts rooms at
    /// once).
    pub started: bool,
    /// Capacity set by the first member (it sticks, API.md §15.4).
    pub max_members: u32,
    /// Bumped whenever the `timeLimit` timer is (re)armed; a timer firing with an old value
    /// does nothing.
    pub timer_generation: u64,
}

impl Default for ConfState {
    fn default() -> Self {
        Self {
            started: true,
            max_members: u32::MAX,
            timer_generation: 0,
        }
    }
}

/// Why a member could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    /// The room is at its `maxMembers`.
    Full,
}

/// The result of [`Rooms::join_conference`].
#[derive(Debug, Clone)]
pub struct Joined {
    pub id: RoomId,
    pub thread: usize,
    pub uuid: uuid::Uuid,
    /// The room was created by this join.
    pub first: bool,
    /// Whether the room is started (after this join).
    pub started: bool,
    /// This join started the room (a moderator arrived while others waited).
    pub started_now: bool,
    /// The other members, as of the join.
    pub others: Vec<Member>,
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
    /// Waiting for a moderator: neither heard nor hearing the room.
    pub waiting: bool,
}

#[derive(Debug, Clone)]
pub struct RoomEntry {
    pub id: RoomId,
    pub thread: usize,
    pub uuid: uuid::Uuid,
    pub created: Instant,
    pub members: Vec<Member>,
    pub conf: ConfState,
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
            conf: ConfState::default(),
        });
        entry.members.push(member);
        (entry.id, entry.thread)
    }

    /// A room id for a call's private room (prompts before and after its conferences); it
    /// is never in the registry.
    pub fn private_room(&self) -> RoomId {
        RoomId(self.next_room.fetch_add(1, Ordering::Relaxed))
    }

    /// Joins an XML `<Conference>` room, creating it on `thread` (where the member's leg
    /// already is) if needed. `moderator` = `startConferenceOnEnter`; `max_members` sticks
    /// from the first member; a full room refuses the member (API.md §7.2 step 2).
    pub fn join_conference(
        &self,
        key: RoomKey,
        thread: usize,
        mut member: Member,
        moderator: bool,
        max_members: u32,
    ) -> Result<Joined, JoinRefused> {
        let mut first = false;
        let mut entry = self.rooms.entry(key).or_insert_with(|| {
            first = true;
            RoomEntry {
                id: RoomId(self.next_room.fetch_add(1, Ordering::Relaxed)),
                thread,
                uuid: uuid::Uuid::new_v4(),
                created: Instant::now(),
                members: Vec::new(),
                conf: ConfState {
                    started: false,
                    max_members: max_members.max(1),
                    timer_generation: 0,
                },
            }
        });
        if entry.members.len() as u64 >= u64::from(entry.conf.max_members) {
            return Err(JoinRefused::Full);
        }
        let started_now = moderator && !entry.conf.started;
        if moderator {
            entry.conf.started = true;
        }
        member.waiting = !entry.conf.started;
        if started_now {
            for m in &mut entry.members {
                m.waiting = false;
            }
        }
        let others = entry.members.clone();
        entry.members.push(member);
        Ok(Joined {
            id: entry.id,
            thread: entry.thread,
            uuid: entry.uuid,
            first,
            started: entry.conf.started,
            started_now,
            others,
        })
    }

    /// Leaves room instance `id`; returns the members still there. `then` runs with them
    /// while the room is still held, so whatever it queues (the exit callback) is ordered
    /// exactly like the leaves themselves.
    pub fn leave_conference(
        &self,
        key: &RoomKey,
        id: RoomId,
        member: u64,
        then: impl FnOnce(&[Member]),
    ) -> Vec<Member> {
        let mut remaining = Vec::new();
        if let Some(mut entry) = self.rooms.get_mut(key) {
            if entry.id == id {
                entry.members.retain(|m| m.id != member);
                remaining = entry.members.clone();
            }
            then(&remaining);
        } else {
            then(&remaining);
        }
        self.rooms
            .remove_if(key, |_, e| e.id == id && e.members.is_empty());
        remaining
    }

    /// Arms the room's `timeLimit` timer anew; returns its generation, or `None` when room
    /// instance `id` is gone.
    pub fn rearm_timer(&self, key: &RoomKey, id: RoomId) -> Option<u64> {
        let mut entry = self.rooms.get_mut(key)?;
        if entry.id != id {
            return None;
        }
        entry.conf.timer_generation += 1;
        Some(entry.conf.timer_generation)
    }

    /// The members of room instance `id` if its timer is still generation `generation`.
    pub fn timer_fired(&self, key: &RoomKey, id: RoomId, generation: u64) -> Vec<Member> {
        match self.rooms.get(key) {
            Some(e) if e.id == id && e.conf.timer_generation == generation => e.members.clone(),
            _ => Vec::new(),
        }
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
