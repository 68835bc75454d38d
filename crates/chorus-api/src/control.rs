//! What the REST layer needs from the engine: read the account's rooms and recordings and act
//! on them. The engine implements [`ConferenceControl`]; router tests use a fake. Every method
//! is keyed by the authenticated account, so one account can never reach another's rooms or
//! recordings: an implementation answers for another account's recording exactly as for one
//! that does not exist.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

/// A boxed future, so the trait stays object-safe (`Arc<dyn ConferenceControl>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One member of a live room (API.md §5.2). Times are whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub member_id: String,
    pub muted: bool,
    pub deaf: bool,
    pub from: String,
    pub to: String,
    pub caller_name: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub call_uuid: String,
    /// Seconds since the member joined.
    pub join_time: u64,
}

/// A live room (API.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceInfo {
    pub name: String,
    /// Seconds since this room instance was created.
    pub run_time: u64,
    pub members: Vec<MemberInfo>,
}

/// Which members a member route targets (API.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberSelector {
    All,
    /// The listed ids, as given (trimmed, in order).
    Ids(Vec<String>),
}

/// TTS voice for Speak (API.md §4 row 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    Woman,
    Man,
}

/// What to do to the selected members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAction {
    /// Ends the member's call (BYE).
    Hangup,
    /// Removes the member from the room; its call flow continues.
    Kick,
    Mute,
    Unmute,
    Deaf,
    Undeaf,
    /// Plays a WAV or MP3 URL to the members only.
    Play {
        url: String,
    },
    StopPlay,
    /// Speaks text (TTS) to the members only.
    Speak {
        text: String,
        voice: Voice,
        language: String,
    },
    StopSpeak,
}

/// Parameters of a conference recording (API.md §4 row 15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    /// `mp3` (default) or `wav`.
    pub file_format: String,
    pub callback_url: Option<String>,
    pub callback_method: String,
    pub time_limit: Option<u64>,
}

/// A recording that started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStarted {
    pub recording_id: String,
    pub url: String,
}

/// A recording of the account, finished or not (the Recording API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub recording_id: String,
    /// Set for a conference recording; `recording_type` is then `conference`.
    pub conference_name: Option<String>,
    pub call_uuid: Option<String>,
    /// `mp3` or `wav`: the file is served at `{P}/Recording/{recording_id}.{format}`.
    pub format: String,
    pub duration_ms: u64,
    /// Epoch milliseconds.
    pub start_ms: u64,
    /// Epoch milliseconds; 0 while in progress.
    pub end_ms: u64,
    /// The URL given in the record-start answer and the recording callback.
    pub url: String,
    /// `completed`, `failed` or `in-progress`.
    pub status: String,
    /// The file was finished after a restart rather than by the recorder itself.
    pub recovered: bool,
    /// The finished file. Downloads serve exactly this path, never one built from the request;
    /// `None` while recording (or when no file was produced).
    pub path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    #[error("conference not found")]
    ConferenceNotFound,
    #[error("member not found")]
    MemberNotFound,
    #[error("recording not found")]
    RecordingNotFound,
    /// The request is well-formed but cannot be honoured (e.g. a media URL that is not
    /// http(s)).
    #[error("{0}")]
    Invalid(String),
    /// The feature exists in the API but this engine cannot serve it now.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The engine as the REST layer sees it.
pub trait ConferenceControl: Send + Sync + 'static {
    /// Names of the account's running rooms.
    fn list(&self, account: &str) -> Vec<String>;

    /// One running room, or `None`.
    fn get(&self, account: &str, name: &str) -> Option<ConferenceInfo>;

    /// Hangs up every member's call (API.md §15.6).
    fn hangup_conference<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Hangs up every room of the account; succeeds when there are none.
    fn hangup_all<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Applies `action` to every selected member present; returns the ids it was applied to.
    /// `MemberNotFound` only when none of the listed ids is in the room (API.md §4.1).
    fn member_action<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        members: MemberSelector,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<Vec<String>, ControlError>>;

    fn record_start<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        request: RecordRequest,
    ) -> BoxFuture<'a, Result<RecordingStarted, ControlError>>;

    fn record_stop<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>>;

    /// The account's recordings, in any order. The default (an engine that keeps none) is empty.
    fn recordings(&self, _account: &str) -> Vec<RecordingInfo> {
        Vec::new()
    }

    /// One recording of the account; `None` for an unknown id and for another account's.
    fn recording(&self, _account: &str, _id: &str) -> Option<RecordingInfo> {
        None
    }

    /// Deletes the recording and its file; `RecordingNotFound` for an unknown id and for
    /// another account's.
    fn delete_recording<'a>(
        &'a self,
        _account: &'a str,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async { Err(ControlError::RecordingNotFound) })
    }
}

/// A shared handle is a control too, so `ApiState::new` takes an `Arc<Engine…>` as is.
impl<T: ConferenceControl + ?Sized> ConferenceControl for std::sync::Arc<T> {
    fn list(&self, account: &str) -> Vec<String> {
        (**self).list(account)
    }

    fn get(&self, account: &str, name: &str) -> Option<ConferenceInfo> {
        (**self).get(account, name)
    }

    fn hangup_conference<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        (**self).hangup_conference(account, name)
    }

    fn hangup_all<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        (**self).hangup_all(account)
    }

    fn member_action<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        members: MemberSelector,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<Vec<String>, ControlError>> {
        (**self).member_action(account, name, members, action)
    }

    fn record_start<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
        request: RecordRequest,
    ) -> BoxFuture<'a, Result<RecordingStarted, ControlError>> {
        (**self).record_start(account, name, request)
    }

    fn record_stop<'a>(
        &'a self,
        account: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        (**self).record_stop(account, name)
    }

    fn recordings(&self, account: &str) -> Vec<RecordingInfo> {
        (**self).recordings(account)
    }

    fn recording(&self, account: &str, id: &str) -> Option<RecordingInfo> {
        (**self).recording(account, id)
    }

    fn delete_recording<'a>(
        &'a self,
        account: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        (**self).delete_recording(account, id)
    }
}
