//! The engine's side of the REST API: [`chorus_api::ConferenceControl`] over the room
//! registry, the media threads and the call tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chorus_api::{
    BoxFuture, ConferenceControl, ConferenceInfo, ControlError, MemberAction, MemberInfo,
    MemberSelector, RecordRequest, RecordingInfo, RecordingStarted, Voice,
};
use chorus_mixer::{MemberFlags, Playback};
use tracing::{info, warn};

use crate::rooms::{Member, MemberCommand, RoomEntry, RoomKey};
use crate::Shared;

/// A cheap handle; every clone controls the same engine.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

/// Playback ids, engine-wide, so a call task never mistakes a REST playback for its own.
pub(crate) static NEXT_PLAYBACK: AtomicU64 = AtomicU64::new(1);

impl Control {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn room(&self, account: &str, name: &str) -> Result<(RoomKey, RoomEntry), ControlError> {
        let key = RoomKey {
            account: account.to_owned(),
            name: name.to_owned(),
        };
        let entry = self
            .shared
            .rooms
            .get(&key)
            .ok_or(ControlError::ConferenceNotFound)?;
        Ok((key, entry))
    }

    fn hang_up_members(&self, entry: &RoomEntry) {
        for m in &entry.members {
            let _ = m.commands.send(MemberCommand::Hangup);
        }
    }

    fn set_flags(
        &self,
        key: &RoomKey,
        entry: &RoomEntry,
        member: &Member,
        change: impl Fn(&mut MemberFlags),
    ) -> Result<(), ControlError> {
        let mut flags = member.flags;
        change(&mut flags);
        self.shared
            .mixer
            .set_flags(entry.thread, member.leg, flags)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        self.shared
            .rooms
            .update_member(key, member.id, |m| m.flags = flags);
        Ok(())
    }

    async fn play_clip(
        &self,
        entry: &RoomEntry,
        members: &[&Member],
        clip_for_rate: impl AsyncClip,
    ) -> Result<(), ControlError> {
        for member in members {
            let clip = clip_for_rate.get(member.codec_rate).await?;
            let playback = Playback::new(
                NEXT_PLAYBACK.fetch_add(1, Ordering::Relaxed),
                clip.rate,
                clip.samples.clone(),
                1,
            );
            self.shared
                .mixer
                .play(entry.thread, member.leg, playback)
                .map_err(|e| ControlError::Internal(e.to_string()))?;
        }
        Ok(())
    }
}

/// Audio prepared at a member's rate.
trait AsyncClip {
    fn get(&self, rate: u32) -> BoxFuture<'_, Result<Arc<crate::prompts::Clip>, ControlError>>;
}

struct UrlClip<'a> {
    shared: &'a Shared,
    url: &'a str,
}

impl AsyncClip for UrlClip<'_> {
    fn get(&self, rate: u32) -> BoxFuture<'_, Result<Arc<crate::prompts::Clip>, ControlError>> {
        Box::pin(async move {
            self.shared
                .prompts
                .url(self.url, rate)
                .await
                .map_err(|e| ControlError::Invalid(e.to_string()))
        })
    }
}

struct SpeechClip<'a> {
    shared: &'a Shared,
    text: &'a str,
    woman: bool,
    language: &'a str,
}

impl AsyncClip for SpeechClip<'_> {
    fn get(&self, rate: u32) -> BoxFuture<'_, Result<Arc<crate::prompts::Clip>, ControlError>> {
        Box::pin(async move {
            self.shared
                .prompts
                .speech(self.text, self.woman, self.language, rate)
                .await
                .map_err(|e| ControlError::Invalid(e.to_string()))
        })
    }
}

fn info_of(name: &str, entry: &RoomEntry) -> ConferenceInfo {
    ConferenceInfo {
        name: name.to_owned(),
        run_time: entry.created.elapsed().as_secs(),
        members: entry
            .members
            .iter()
            .map(|m| MemberInfo {
                member_id: m.id.to_string(),
                muted: m.flags.muted,
                deaf: m.flags.deaf,
                // plivoframework and Vobiz webhooks strip a leading `+` (API.md §5.2).
                from: m.from.trim_start_matches('+').to_owned(),
                to: m.to.clone(),
                caller_name: m.caller_name.clone(),
                direction: if m.inbound { "inbound" } else { "outbound" }.to_owned(),
                call_uuid: m.call_uuid.clone(),
                join_time: m.joined.elapsed().as_secs(),
            })
            .collect(),
    }
}

impl ConferenceControl for Control {
    fn list(&self, account: &str) -> Vec<String> {
        self.shared.rooms.names(account)
    }

    fn get(&self, account: &str, name: &str) -> Option<ConferenceInfo> {
        self.room(account, name)
            .ok()
            .map(|(_, e)| info_of(name, &e))
    }

    fn hangup_conference<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let (_, entry) = self.room(account, name)?;
            info!(
                account,
                room = name,
                members = entry.members.len(),
                "hanging up conference"
            );
            self.hang_up_members(&entry);
            Ok(())
        })
    }

    fn hangup_all<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            for name in self.shared.rooms.names(account) {
                if let Ok((_, entry)) = self.room(account, &name) {
                    self.hang_up_members(&entry);
                }
            }
            Ok(())
        })
    }

    fn member_action<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        selector: MemberSelector,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<Vec<String>, ControlError>> {
        Box::pin(async move {
            let (key, entry) = self.room(account, name)?;
            let members: Vec<&Member> = match &selector {
                MemberSelector::All => entry.members.iter().collect(),
                MemberSelector::Ids(ids) => entry
                    .members
                    .iter()
                    .filter(|m| ids.iter().any(|id| id.trim() == m.id.to_string()))
                    .collect(),
            };
            if members.is_empty() && selector != MemberSelector::All {
                return Err(ControlError::MemberNotFound);
            }
            match &action {
                MemberAction::Hangup | MemberAction::Kick => {
                    let command = if action == MemberAction::Hangup {
                        MemberCommand::Hangup
                    } else {
                        MemberCommand::Kick
                    };
                    for m in &members {
                        let _ = m.commands.send(command);
                    }
                }
                MemberAction::Mute => {
                    for m in &members {
                        self.set_flags(&key, &entry, m, |f| f.muted = true)?;
                    }
                }
                MemberAction::Unmute => {
                    for m in &members {
                        self.set_flags(&key, &entry, m, |f| f.muted = false)?;
                    }
                }
                MemberAction::Deaf => {
                    for m in &members {
                        self.set_flags(&key, &entry, m, |f| f.deaf = true)?;
                    }
                }
                MemberAction::Undeaf => {
                    for m in &members {
                        self.set_flags(&key, &entry, m, |f| f.deaf = false)?;
                    }
                }
                MemberAction::Play { url } => {
                    let clip = UrlClip {
                        shared: &self.shared,
                        url,
                    };
                    self.play_clip(&entry, &members, clip).await?;
                }
                MemberAction::Speak {
                    text,
                    voice,
                    language,
                } => {
                    let clip = SpeechClip {
                        shared: &self.shared,
                        text,
                        woman: *voice == Voice::Woman,
                        language,
                    };
                    self.play_clip(&entry, &members, clip).await?;
                }
                MemberAction::StopPlay | MemberAction::StopSpeak => {
                    for m in &members {
                        if let Err(e) = self.shared.mixer.stop_play(entry.thread, m.leg) {
                            warn!(error = %e, "cannot stop playback");
                        }
                    }
                }
            }
            Ok(members.iter().map(|m| m.id.to_string()).collect())
        })
    }

    fn record_start<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        request: RecordRequest,
    ) -> BoxFuture<'a, Result<RecordingStarted, ControlError>> {
        Box::pin(async move {
            let (key, _) = self.room(account, name)?;
            let format: chorus_record::Format = request
                .file_format
                .parse()
                .map_err(|e: chorus_record::RecordError| ControlError::Invalid(e.to_string()))?;
            let mut extra = std::collections::BTreeMap::new();
            extra.insert("callback_kind".to_owned(), "rest".to_owned());
            let meta = chorus_record::Metadata {
                account: account.to_owned(),
                conference_name: Some(name.to_owned()),
                call_uuid: None,
                callback_url: request.callback_url.clone(),
                callback_method: Some(request.callback_method.clone()),
                extra,
            };
            let started = crate::recording::start_room(
                &self.shared,
                &key,
                format,
                request.time_limit.map(std::time::Duration::from_secs),
                crate::recording::Origin::Rest,
                meta,
            )
            .map_err(|reason| {
                warn!(%reason, room = %name, "cannot start the recording");
                ControlError::Internal(reason)
            })?;
            Ok(RecordingStarted {
                recording_id: started.id,
                url: started.url,
            })
        })
    }

    fn record_stop<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let (key, _) = self.room(account, name)?;
            // Stopping a room that is not being recorded succeeds, like stop play.
            crate::recording::stop_room(&self.shared, &key);
            Ok(())
        })
    }

    fn recordings(&self, account: &str) -> Vec<RecordingInfo> {
        let mut all: Vec<RecordingInfo> = self
            .shared
            .recordings
            .in_progress(account)
            .into_iter()
            .map(|(id, room, url)| RecordingInfo {
                recording_id: id,
                conference_name: Some(room),
                call_uuid: None,
                format: url.rsplit('.').next().unwrap_or("mp3").to_owned(),
                duration_ms: 0,
                start_ms: 0,
                end_ms: 0,
                url,
                status: "in-progress".into(),
                recovered: false,
                path: None,
            })
            .collect();
        if let Ok(dir) = self.shared.recordings.dir(account) {
            if let Ok(done) = chorus_record::list(&dir) {
                all.extend(
                    done.into_iter()
                        .filter(|i| !self.shared.recordings.is_active(&i.result.id))
                        .map(|i| self.info(account, i)),
                );
            }
        }
        all
    }

    fn recording(&self, account: &str, id: &str) -> Option<RecordingInfo> {
        if chorus_record::validate_id(id).is_err() {
            return None;
        }
        if let Some(r) = self
            .recordings(account)
            .into_iter()
            .find(|r| r.recording_id == id && r.status == "in-progress")
        {
            return Some(r);
        }
        let dir = self.shared.recordings.dir(account).ok()?;
        let info = chorus_record::get(&dir, id).ok().flatten()?;
        Some(self.info(account, info))
    }

    fn delete_recording<'a>(
        &'a self,
        account: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            if chorus_record::validate_id(id).is_err() {
                return Err(ControlError::RecordingNotFound);
            }
            if self.shared.recordings.is_active(id) {
                return Err(ControlError::Invalid(
                    "the recording is in progress; stop it first".into(),
                ));
            }
            let dir = self
                .shared
                .recordings
                .dir(account)
                .map_err(ControlError::Internal)?;
            match chorus_record::delete(&dir, id) {
                Ok(true) => {
                    info!(recording_id = %id, "recording deleted");
                    Ok(())
                }
                Ok(false) => Err(ControlError::RecordingNotFound),
                Err(e) => Err(ControlError::Internal(e.to_string())),
            }
        })
    }
}

impl Control {
    fn info(&self, account: &str, i: chorus_record::RecordingInfo) -> RecordingInfo {
        let r = i.result;
        RecordingInfo {
            url: self.shared.recordings.url(account, &r.id, r.format),
            recording_id: r.id,
            conference_name: i.meta.conference_name,
            call_uuid: i.meta.call_uuid,
            format: r.format.extension().to_owned(),
            duration_ms: r.duration_ms,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            status: match r.status {
                chorus_record::Status::Completed => "completed".into(),
                chorus_record::Status::Failed(_) => "failed".into(),
            },
            recovered: r.recovered,
            path: r.path.is_file().then_some(r.path),
        }
    }
}
