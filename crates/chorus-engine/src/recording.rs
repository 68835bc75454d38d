//! Recordings in the engine: conference recordings (REST start/stop, `<Conference record>`),
//! single-call recordings (`<Record>`), their callbacks, and crash recovery at start-up.
//!
//! A recording is a listen-only tap on a room's mix ([`chorus_mixer::MixerHandle::add_tap`]):
//! the media thread copies each tick's mix into the recording's lock-free ring and a writer
//! thread of `chorus-record` encodes it, so a slow disk never delays a tick. Files live in
//! `<recordings_dir>/<account>/<id>.{mp3,wav}` beside a JSON sidecar; the sidecar also keeps
//! what the callback needs, so a recording that outlived a crash still gets its callback
//! (flagged `recovered`). Callbacks go out only once the file is complete.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_flow::{Method, Params, Record, Target};
use chorus_mixer::RoomId;
use chorus_record::{Format, Metadata, RecordingInfo, RecordingResult, RecordingSpec, Status};
use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::flow::{CallCtx, Ending, Gone, Wake};
use crate::rooms::{MemberCommand, RoomKey};
use crate::Shared;

/// Tap ids, engine-wide (a room may carry several recordings).
static NEXT_TAP: AtomicU64 = AtomicU64::new(1);

/// `extra` keys of the sidecar that say which callback the recording owes.
const KIND: &str = "callback_kind";
const KIND_REST: &str = "rest";
const KIND_CONFERENCE: &str = "conference";
const KIND_CALL: &str = "record";

/// How often `<Record>` checks its silence timeout.
const RECORD_POLL: Duration = Duration::from_millis(100);

/// Who started a conference recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// REST `POST …/Record/`: stopped by REST or by the room ending.
    Rest,
    /// `<Conference record="true">`: runs until the room ends.
    Xml,
}

struct Active {
    recording: Arc<chorus_record::Recording>,
    key: RoomKey,
    origin: Origin,
    thread: usize,
    room: RoomId,
    tap: u64,
    url: String,
}

/// The engine's live recordings.
pub(crate) struct Recordings {
    root: PathBuf,
    public_url: String,
    max_duration: Option<Duration>,
    active: DashMap<String, Active>,
    /// Every recording still being written (conference and call alike), so shutdown can
    /// stop them and wait for their files.
    live: DashMap<String, Arc<chorus_record::Recording>>,
    live_changed: Notify,
    pub counters: RecordingCounters,
}

/// Outcomes, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct RecordingCounters {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Finished at start-up from what a crash left.
    pub recovered: AtomicU64,
    /// Recordings that lost audio because their writer fell behind, and the samples lost.
    pub dropped_audio: AtomicU64,
    pub dropped_samples: AtomicU64,
}

/// A recording that started.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub id: String,
    pub url: String,
}

impl Recordings {
    pub fn new(root: PathBuf, public_url: String, max_duration: Option<Duration>) -> Self {
        Self {
            root,
            public_url: public_url.trim_end_matches('/').to_owned(),
            max_duration,
            active: DashMap::new(),
            live: DashMap::new(),
            live_changed: Notify::new(),
            counters: RecordingCounters::default(),
        }
    }

    fn track(&self, id: &str, recording: Arc<chorus_record::Recording>) {
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        self.live.insert(id.to_owned(), recording);
    }

    fn untrack(&self, id: &str) {
        self.live.remove(id);
        self.live_changed.notify_waiters();
    }

    /// Recordings being written now.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Shutdown: stops every recording (each writes what it has, then finishes its file)
    /// and waits until all are finished, or `timeout`. True when none is left.
    pub async fn finish_all(&self, timeout: Duration) -> bool {
        for r in self.live.iter() {
            r.value().stop();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.live_changed.notified();
            if self.live.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.live.is_empty();
            }
        }
    }

    /// The account's directory (created on demand).
    pub fn dir(&self, account: &str) -> Result<PathBuf, String> {
        // Account ids come from our own configuration, but they become a path: refuse
        // anything that could climb out of the root.
        if account.is_empty() || account.contains(['/', '\\']) || account.contains("..") {
            return Err(format!("account id {account:?} cannot name a directory"));
        }
        let dir = self.root.join(account);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Where a recording is downloaded (API.md §6 `record_url`, §8.1 `RecordUrl`).
    pub fn url(&self, account: &str, id: &str, format: Format) -> String {
        format!(
            "{}/v1/Account/{account}/Recording/{id}.{}",
            self.public_url,
            format.extension()
        )
    }

    /// The recordings of a room instance started by `origin`, if any.
    pub fn of_room(&self, key: &RoomKey, room: RoomId, origin: Origin) -> Option<Started> {
        self.active
            .iter()
            .find(|a| a.key == *key && a.room == room && a.origin == origin)
            .map(|a| Started {
                id: a.key().clone(),
                url: a.url.clone(),
            })
    }

    /// In-progress recordings of an account, for listing.
    pub fn in_progress(&self, account: &str) -> Vec<(String, String, String)> {
        self.active
            .iter()
            .filter(|a| a.key.account == account)
            .map(|a| (a.key().clone(), a.key.name.clone(), a.url.clone()))
            .collect()
    }

    pub fn is_active(&self, id: &str) -> bool {
        self.active.contains_key(id)
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The mix rate a room runs at: 8 kHz while everyone is narrowband, else 48 kHz.
fn room_rate(shared: &Shared, key: &RoomKey) -> u32 {
    let wide = shared
        .rooms
        .get(key)
        .is_some_and(|e| e.members.iter().any(|m| m.codec_rate > 8000));
    if wide {
        48_000
    } else {
        8_000
    }
}

/// Starts recording room `key` (its current instance). `meta` says who gets the callback.
pub(crate) fn start_room(
    shared: &Arc<Shared>,
    key: &RoomKey,
    format: Format,
    max_duration: Option<Duration>,
    origin: Origin,
    meta: Metadata,
) -> Result<Started, String> {
    let entry = shared
        .rooms
        .get(key)
        .ok_or_else(|| "conference not found".to_owned())?;
    let recordings = &shared.recordings;
    let dir = recordings.dir(&key.account)?;
    let id = new_id();
    let max_duration = match (max_duration, recordings.max_duration) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (recording, tap) = chorus_record::start(RecordingSpec {
        dir,
        id: id.clone(),
        format,
        rate: room_rate(shared, key),
        max_duration,
        meta,
    })
    .map_err(|e| e.to_string())?;
    let tap_id = NEXT_TAP.fetch_add(1, Ordering::Relaxed);
    if let Err(error) = shared
        .mixer
        .add_tap(entry.thread, entry.id, tap_id, Box::new(tap))
    {
        recording.stop();
        return Err(format!("the media thread refused the recording: {error}"));
    }
    let url = recordings.url(&key.account, &id, format);
    let recording = Arc::new(recording);
    recordings.track(&id, recording.clone());
    recordings.active.insert(
        id.clone(),
        Active {
            recording: recording.clone(),
            key: key.clone(),
            origin,
            thread: entry.thread,
            room: entry.id,
            tap: tap_id,
            url: url.clone(),
        },
    );
    info!(room = %key.name, recording_id = %id, %format, ?origin, "recording started");
    let shared = shared.clone();
    let finished_id = id.clone();
    tokio::spawn(async move {
        let result = recording.finished().await;
        if let Some((_, active)) = shared.recordings.active.remove(&finished_id) {
            let _ = shared
                .mixer
                .remove_tap(active.thread, active.room, active.tap);
        }
        completed(&shared, &result, recording_meta(&shared, &result));
        shared.recordings.untrack(&finished_id);
    });
    Ok(Started { id, url })
}

/// Stops the REST-started recordings of `key`; false when there were none.
pub(crate) fn stop_room(shared: &Shared, key: &RoomKey) -> bool {
    let mut any = false;
    for a in shared.recordings.active.iter() {
        if a.key == *key && a.origin == Origin::Rest {
            a.recording.stop();
            any = true;
        }
    }
    any
}

/// The sidecar's metadata of a finished recording (it has the callback target).
fn recording_meta(shared: &Shared, result: &RecordingResult) -> Option<RecordingInfo> {
    let account = result
        .path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())?
        .to_owned();
    let dir = shared.recordings.dir(&account).ok()?;
    chorus_record::get(&dir, &result.id).ok().flatten()
}

/// Sends the callback a finished (or recovered) recording owes.
fn completed(shared: &Shared, result: &RecordingResult, info: Option<RecordingInfo>) {
    let counters = &shared.recordings.counters;
    match (&result.status, result.recovered) {
        (_, true) => &counters.recovered,
        (Status::Completed, false) => &counters.completed,
        (Status::Failed(_), false) => &counters.failed,
    }
    .fetch_add(1, Ordering::Relaxed);
    if result.dropped_audio() {
        counters.dropped_audio.fetch_add(1, Ordering::Relaxed);
        counters
            .dropped_samples
            .fetch_add(result.dropped_samples, Ordering::Relaxed);
    }
    match &result.status {
        Status::Completed => info!(
            recording_id = %result.id,
            duration_ms = result.duration_ms,
            dropped_samples = result.dropped_samples,
            recovered = result.recovered,
            "recording complete"
        ),
        Status::Failed(reason) => warn!(recording_id = %result.id, %reason, "recording failed"),
    }
    let Some(info) = info else {
        return;
    };
    let meta = &info.meta;
    let Some(url) = meta.callback_url.clone() else {
        return;
    };
    let method = match meta.callback_method.as_deref() {
        Some(m) if m.eq_ignore_ascii_case("GET") => Method::Get,
        _ => Method::Post,
    };
    let record_url = shared
        .recordings
        .url(&meta.account, &result.id, result.format);
    let mut params: Params = Vec::new();
    let kind = meta
        .extra
        .get(KIND)
        .map(String::as_str)
        .unwrap_or(KIND_REST);
    match kind {
        KIND_CONFERENCE | KIND_CALL => {
            if kind == KIND_CONFERENCE {
                params.push(("ConferenceAction".into(), "record".into()));
                params.push(("Event".into(), "ConferenceRecord".into()));
            }
            params.extend([
                ("RecordUrl".into(), record_url),
                ("RecordingID".into(), result.id.clone()),
                (
                    "RecordingDuration".into(),
                    (result.duration_ms / 1000).to_string(),
                ),
                ("RecordingDurationMs".into(), result.duration_ms.to_string()),
                ("RecordingStartMs".into(), result.start_ms.to_string()),
                ("RecordingEndMs".into(), result.end_ms.to_string()),
            ]);
        }
        _ => {
            params.extend([
                ("api_id".into(), new_id()),
                ("record_url".into(), record_url),
                ("recording_id".into(), result.id.clone()),
                (
                    "conference_name".into(),
                    meta.conference_name.clone().unwrap_or_default(),
                ),
                (
                    "recording_duration".into(),
                    (result.duration_ms / 1000).to_string(),
                ),
                (
                    "recording_duration_ms".into(),
                    result.duration_ms.to_string(),
                ),
                ("recording_start_ms".into(), result.start_ms.to_string()),
                ("recording_end_ms".into(), result.end_ms.to_string()),
            ]);
        }
    }
    // The rest of what the engine stored at start (call parameters, conference ids).
    for (k, v) in &meta.extra {
        if k != KIND && !params.iter().any(|(name, _)| name == k) {
            params.push((k.clone(), v.clone()));
        }
    }
    let (status, error) = match &result.status {
        Status::Completed => ("completed", String::new()),
        Status::Failed(reason) => ("failed", reason.clone()),
    };
    params.push(("RecordingStatus".into(), status.into()));
    if !error.is_empty() {
        params.push(("RecordingError".into(), error));
    }
    params.push(("Recovered".into(), result.recovered.to_string()));
    params.push(("DroppedAudio".into(), result.dropped_audio().to_string()));
    let token = shared
        .config
        .accounts
        .iter()
        .find(|a| a.auth_id == meta.account)
        .map(|a| a.auth_token.clone())
        .unwrap_or_default();
    shared
        .webhooks
        .notify(&result.id, &url, method, params, &token);
}

/// At start-up: every `.part` a crash left becomes a valid file, and its callback goes out
/// flagged `Recovered=true`.
pub(crate) fn recover_all(shared: &Shared) {
    let Ok(accounts) = std::fs::read_dir(&shared.recordings.root) else {
        return;
    };
    for account in accounts.flatten() {
        let dir = account.path();
        if !dir.is_dir() {
            continue;
        }
        match chorus_record::recover(&dir) {
            Ok(recovered) => {
                for info in recovered {
                    info!(recording_id = %info.result.id, duration_ms = info.result.duration_ms, "recovered a recording after a crash");
                    let result = info.result.clone();
                    completed(shared, &result, Some(info));
                }
            }
            Err(error) => warn!(dir = %dir.display(), %error, "cannot recover recordings"),
        }
    }
}

/// `<Conference record="true">`: the room's XML recording (started by the first member that
/// asks), with the `record` callback to that member's `callbackUrl`.
pub(crate) fn ensure_conference_recording(
    ctx: &CallCtx,
    key: &RoomKey,
    room: RoomId,
    format: Format,
    callback: Option<&Target>,
    conference_uuid: &str,
) -> Option<Started> {
    if let Some(existing) = ctx.shared.recordings.of_room(key, room, Origin::Xml) {
        return Some(existing);
    }
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(KIND.to_owned(), KIND_CONFERENCE.to_owned());
    extra.insert("ConferenceName".to_owned(), key.name.clone());
    extra.insert("ConferenceUUID".to_owned(), conference_uuid.to_owned());
    for (k, v) in ctx.call_params() {
        extra.insert(k, v);
    }
    let meta = Metadata {
        account: key.account.clone(),
        conference_name: Some(key.name.clone()),
        call_uuid: None,
        callback_url: callback.map(|t| t.url.clone()),
        callback_method: callback.map(|t| method_name(t.method).to_owned()),
        extra,
    };
    match start_room(&ctx.shared, key, format, None, Origin::Xml, meta) {
        Ok(started) => Some(started),
        Err(reason) => {
            warn!(%reason, "record=\"true\": cannot record the room; it runs unrecorded");
            None
        }
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
    }
}

pub(crate) fn format_of(f: chorus_flow::RecordFormat) -> Format {
    match f {
        chorus_flow::RecordFormat::Mp3 => Format::Mp3,
        chorus_flow::RecordFormat::Wav => Format::Wav,
    }
}

/// `<Record>`: records the caller until `finishOnKey`, `timeout` seconds of silence,
/// `maxLength` or the hangup; returns the `action` parameters (API.md §10). With
/// `recordSession="true"` the recording runs in the background for the rest of the call and
/// the flow goes on at once. `None` when no recording could be made.
pub(crate) async fn record_call(ctx: &mut CallCtx, spec: Record) -> Result<Option<Params>, Gone> {
    let format = format_of(spec.file_format);
    if spec.play_beep && !spec.record_session {
        let beep = crate::conference::beep(ctx.rate(), 1);
        ctx.play_and_wait(&beep).await?;
    }
    let dir = match ctx.shared.recordings.dir(&ctx.account.auth_id) {
        Ok(d) => d,
        Err(reason) => {
            warn!(%reason, "<Record>: no recordings directory");
            return Ok(None);
        }
    };
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(KIND.to_owned(), KIND_CALL.to_owned());
    for (k, v) in ctx.call_params() {
        extra.insert(k, v);
    }
    let id = new_id();
    let max = if spec.record_session {
        ctx.shared.recordings.max_duration
    } else {
        Some(Duration::from_secs(spec.max_length.max(1).into()))
    };
    let started = chorus_record::start(RecordingSpec {
        dir,
        id: id.clone(),
        format,
        rate: if ctx.rate() > 8000 { 48_000 } else { 8_000 },
        max_duration: max,
        meta: Metadata {
            account: ctx.account.auth_id.clone(),
            conference_name: None,
            call_uuid: Some(ctx.call_uuid.clone()),
            callback_url: spec.callback_url.clone(),
            callback_method: Some(method_name(spec.callback_method).to_owned()),
            extra,
        },
    });
    let (recording, tap) = match started {
        Ok(pair) => pair,
        Err(error) => {
            warn!(%error, "<Record>: cannot start the recording");
            return Ok(None);
        }
    };
    let tap_id = NEXT_TAP.fetch_add(1, Ordering::Relaxed);
    let (thread, room) = (ctx.thread, ctx.room);
    if let Err(error) = ctx
        .shared
        .mixer
        .add_tap(thread, room, tap_id, Box::new(tap))
    {
        warn!(%error, "<Record>: the media thread refused the recording");
        recording.stop();
        return Ok(None);
    }
    let url = ctx.shared.recordings.url(&ctx.account.auth_id, &id, format);
    let recording = Arc::new(recording);
    ctx.shared.recordings.track(&id, recording.clone());
    info!(recording_id = %id, session = spec.record_session, "recording the call");
    // Callbacks (recordings.rs `completed`) go out when the file is complete, whoever ends it.
    {
        let shared = ctx.shared.clone();
        let recording = recording.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let result = recording.finished().await;
            let _ = shared.mixer.remove_tap(thread, room, tap_id);
            completed(&shared, &result, recording_meta(&shared, &result));
            shared.recordings.untrack(&id);
        });
    }
    if spec.record_session {
        ctx.session_recordings.push(recording);
        return Ok(Some(vec![
            ("RecordUrl".into(), url),
            ("RecordingID".into(), id),
        ]));
    }
    let silence_limit = Duration::from_secs(spec.timeout.into());
    let mut key = String::new();
    let gone = loop {
        if recording.is_finished() {
            break false;
        }
        if spec.timeout > 0 {
            let activity = recording.voice_activity();
            if activity.silence() >= silence_limit && activity.heard >= silence_limit {
                info!("<Record>: silence timeout");
                break false;
            }
        }
        match ctx.pump(Some(Instant::now() + RECORD_POLL)).await {
            Err(Gone) => break true,
            Ok(Wake::Dtmf(d)) if spec.finish_on_key.contains(d) => {
                key.push(d);
                break false;
            }
            Ok(Wake::Member(MemberCommand::Hangup)) => {
                ctx.end_call(Ending::api(), 480);
                break true;
            }
            Ok(_) => {}
        }
    };
    recording.stop();
    let result = recording.finished().await;
    if gone {
        return Err(Gone);
    }
    let duration = if result.duration_ms == 0 {
        "-1".to_owned()
    } else {
        (result.duration_ms / 1000).to_string()
    };
    Ok(Some(vec![
        ("RecordUrl".into(), url),
        ("RecordingID".into(), id),
        ("RecordingDuration".into(), duration),
        ("RecordingDurationMs".into(), result.duration_ms.to_string()),
        ("RecordingStartMs".into(), result.start_ms.to_string()),
        ("RecordingEndMs".into(), result.end_ms.to_string()),
        ("Digits".into(), key),
    ]))
}
