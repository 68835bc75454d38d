//! What a recording is: its format and metadata, its result, and the sidecar file that keeps
//! both next to the audio.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::RecordError;

/// The audio container of a recording.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The API's default (`file_format`, `recordFileFormat`, `fileFormat`): CBR MP3, mono.
    #[default]
    Mp3,
    /// 16-bit PCM, mono.
    Wav,
}

impl Format {
    /// The file extension, without the dot: `mp3` or `wav`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Mp3 => "mp3",
            Format::Wav => "wav",
        }
    }
}

impl FromStr for Format {
    type Err = RecordError;

    /// `mp3` or `wav`, in any case, as the API and XML attributes spell them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("mp3") {
            Ok(Format::Mp3)
        } else if s.eq_ignore_ascii_case("wav") {
            Ok(Format::Wav)
        } else {
            Err(RecordError::UnknownFormat(s.to_owned()))
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Who and what a recording is for: stored in the sidecar at start and handed back by
/// [`crate::list`] and [`crate::recover`], so the engine can send the callback of a recording
/// that outlived its process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub account: String,
    /// Set for a conference recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conference_name: Option<String>,
    /// Set for a call (leg) recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_method: Option<String>,
    /// Anything else the engine wants back (the callbacks are form-encoded, hence strings).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// How a recording ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Completed,
    /// A write failed (a full disk, an IO error): the reason. What was written before is kept
    /// as a valid file when possible.
    Failed(String),
}

/// What ended a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// [`crate::Recording::stop`].
    Stopped,
    /// The [`crate::Tap`] was dropped: the room or call it listened to ended.
    TapClosed,
    /// The recording reached its `max_duration`.
    MaxDuration,
    /// Writing failed; see [`Status::Failed`].
    WriteFailed,
    /// The process died while recording; [`crate::recover`] finished the file.
    Crashed,
}

/// The outcome of a recording, as its callback reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingResult {
    pub id: String,
    /// The finished file (`<id>.mp3` or `<id>.wav`); may not exist when `status` is failed.
    pub path: PathBuf,
    pub format: Format,
    /// Sample rate of the file.
    pub rate: u32,
    /// Audio in the file: samples written / rate. For a recovered MP3, whole frames.
    pub duration_ms: u64,
    /// Wall clock at start, milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Wall clock at the end; for a recovered recording, `start_ms + duration_ms`.
    pub end_ms: u64,
    pub status: Status,
    pub ended_by: EndReason,
    /// Audio lost because the writer fell behind, in samples at the recording's rate.
    pub dropped_samples: u64,
    /// Finished by [`crate::recover`] after a crash.
    pub recovered: bool,
}

impl RecordingResult {
    /// Whether any audio was lost because the writer could not keep up.
    pub fn dropped_audio(&self) -> bool {
        self.dropped_samples > 0
    }
}

/// A finished recording as the sidecar describes it: for listing, and for the callbacks of
/// recovered recordings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingInfo {
    pub meta: Metadata,
    pub result: RecordingResult,
}

/// The sidecar file `<id>.json`, written at start and rewritten at the end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub recording_id: String,
    #[serde(flatten)]
    pub meta: Metadata,
    pub format: Format,
    pub rate: u32,
    pub start_ms: u64,
    pub status: SidecarStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndReason>,
    #[serde(default)]
    pub dropped_samples: u64,
    #[serde(default)]
    pub dropped_audio: bool,
    #[serde(default)]
    pub recovered: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SidecarStatus {
    Recording,
    Completed,
    Failed,
}

impl Sidecar {
    pub fn new(id: &str, format: Format, rate: u32, meta: Metadata) -> Self {
        Sidecar {
            recording_id: id.to_owned(),
            meta,
            format,
            rate,
            start_ms: now_ms(),
            status: SidecarStatus::Recording,
            error: None,
            end_ms: None,
            duration_ms: None,
            ended_by: None,
            dropped_samples: 0,
            dropped_audio: false,
            recovered: false,
        }
    }

    /// Records the outcome in the sidecar.
    pub fn finish(&mut self, result: &RecordingResult) {
        self.status = match result.status {
            Status::Completed => SidecarStatus::Completed,
            Status::Failed(_) => SidecarStatus::Failed,
        };
        self.error = match &result.status {
            Status::Completed => None,
            Status::Failed(reason) => Some(reason.clone()),
        };
        self.end_ms = Some(result.end_ms);
        self.duration_ms = Some(result.duration_ms);
        self.ended_by = Some(result.ended_by);
        self.dropped_samples = result.dropped_samples;
        self.dropped_audio = result.dropped_samples > 0;
        self.recovered = result.recovered;
    }

    /// The result of a finished recording; `None` while it is still recording.
    pub fn info(&self, dir: &Path) -> Option<RecordingInfo> {
        let status = match self.status {
            SidecarStatus::Recording => return None,
            SidecarStatus::Completed => Status::Completed,
            SidecarStatus::Failed => Status::Failed(self.error.clone().unwrap_or_default()),
        };
        let duration_ms = self.duration_ms.unwrap_or(0);
        Some(RecordingInfo {
            meta: self.meta.clone(),
            result: RecordingResult {
                id: self.recording_id.clone(),
                path: final_path(dir, &self.recording_id, self.format),
                format: self.format,
                rate: self.rate,
                duration_ms,
                start_ms: self.start_ms,
                end_ms: self.end_ms.unwrap_or(self.start_ms + duration_ms),
                status,
                ended_by: self.ended_by.unwrap_or(EndReason::Stopped),
                dropped_samples: self.dropped_samples,
                recovered: self.recovered,
            },
        })
    }

    /// Writes the sidecar so that a crash leaves either the old or the new version: a
    /// temporary file, synced, renamed over the old one, then the directory synced.
    pub fn store(&self, dir: &Path) -> Result<(), RecordError> {
        let path = sidecar_path(dir, &self.recording_id);
        let tmp = dir.join(format!("{}.json.tmp", self.recording_id));
        let write = || -> std::io::Result<()> {
            let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            let mut file = File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            RecordError::WriteSidecar { path, source }
        })
    }

    pub fn load(path: &Path) -> Result<Self, RecordError> {
        let bytes = fs::read(path).map_err(|source| RecordError::ReadSidecar {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| RecordError::MalformedSidecar {
            path: path.to_owned(),
            source,
        })
    }
}

/// Recording ids become file names: only UUID-like tokens are accepted, so an id can never
/// name a path outside the directory (no separators, no `..`, no leading dot).
pub fn validate_id(id: &str) -> Result<(), RecordError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RecordError::InvalidId(id.to_owned()))
    }
}

pub(crate) fn sidecar_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

pub(crate) fn part_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.part"))
}

pub(crate) fn final_path(dir: &Path, id: &str, format: Format) -> PathBuf {
    dir.join(format!("{id}.{}", format.extension()))
}

/// Makes renames and creations in `dir` durable (POSIX: a rename is only persisted once the
/// directory itself is synced).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An error and its sources on one line, for [`Status::Failed`] and the sidecar.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
