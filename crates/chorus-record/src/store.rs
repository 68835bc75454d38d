//! The recordings directory as the HTTP layer and start-up see it: listing, retrieving and
//! deleting finished recordings, and recovering the ones a crash interrupted.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::RecordError;
use crate::meta::{
    final_path, part_path, sidecar_path, sync_dir, validate_id, EndReason, Format, RecordingInfo,
    RecordingResult, Sidecar, SidecarStatus, Status,
};
use crate::repair::{repair, Audio};

/// Finished recordings (completed or failed) in `dir`, oldest first, read from their
/// sidecars. Recordings in progress are left out; a missing directory is an empty list; a
/// malformed sidecar is skipped with a warning.
pub fn list(dir: &Path) -> Result<Vec<RecordingInfo>, RecordError> {
    let mut found: Vec<RecordingInfo> = sidecars(dir, false)?
        .into_iter()
        .filter_map(|sidecar| sidecar.info(dir))
        .collect();
    found.sort_by(|a, b| (a.result.start_ms, &a.result.id).cmp(&(b.result.start_ms, &b.result.id)));
    Ok(found)
}

/// One finished recording; `None` if there is none by that id or it is still in progress.
pub fn get(dir: &Path, id: &str) -> Result<Option<RecordingInfo>, RecordError> {
    validate_id(id)?;
    match load(dir, id)? {
        Some(sidecar) => Ok(sidecar.info(dir)),
        None => Ok(None),
    }
}

/// Deletes a finished recording's audio file and sidecar. `Ok(false)` if there was nothing
/// by that id; refuses ids that are not recording ids (so no path can escape `dir`) and
/// recordings still in progress.
pub fn delete(dir: &Path, id: &str) -> Result<bool, RecordError> {
    validate_id(id)?;
    let sidecar = load(dir, id).unwrap_or_else(|e| {
        // A sidecar nobody can read still goes, with its audio.
        tracing::warn!(error = %crate::meta::error_chain(&e), "deleting a recording with a malformed sidecar");
        None
    });
    if sidecar
        .as_ref()
        .is_some_and(|s| s.status == SidecarStatus::Recording)
        || part_path(dir, id).exists()
    {
        return Err(RecordError::InProgress(id.to_owned()));
    }
    let mut removed = false;
    // Audio first: an interrupted delete leaves a sidecar without audio, which lists as a
    // recording whose file is gone, never an audio file nothing describes.
    for path in [
        final_path(dir, id, Format::Mp3),
        final_path(dir, id, Format::Wav),
        sidecar_path(dir, id),
    ] {
        match fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(RecordError::Delete { path, source }),
        }
    }
    Ok(removed)
}

/// Finishes the recordings a crash interrupted, at start-up, before any recording starts in
/// `dir`: every sidecar still saying "recording" gets its `.part` repaired (WAV: sizes
/// rewritten from the file length, cut to whole samples; MP3: cut after the last whole
/// frame) and renamed, and is marked `recovered`. Returns them so the engine can send their
/// callbacks. A recording that cannot be recovered is logged and left as it is.
pub fn recover(dir: &Path) -> Result<Vec<RecordingInfo>, RecordError> {
    let mut recovered = Vec::new();
    for sidecar in sidecars(dir, true)? {
        if sidecar.status != SidecarStatus::Recording {
            continue;
        }
        let id = sidecar.recording_id.clone();
        match recover_one(dir, sidecar) {
            Ok(info) => {
                tracing::info!(
                    id = %id,
                    duration_ms = info.result.duration_ms,
                    "recording recovered after a crash"
                );
                recovered.push(info);
            }
            Err(e) => tracing::error!(
                id = %id,
                error = %crate::meta::error_chain(&e),
                "could not recover a recording"
            ),
        }
    }
    recovered
        .sort_by(|a, b| (a.result.start_ms, &a.result.id).cmp(&(b.result.start_ms, &b.result.id)));
    Ok(recovered)
}

fn recover_one(dir: &Path, mut sidecar: Sidecar) -> Result<RecordingInfo, RecordError> {
    let id = sidecar.recording_id.clone();
    let (format, rate) = (sidecar.format, sidecar.rate);
    let part = part_path(dir, &id);
    let finished = final_path(dir, &id, format);
    let fix = |path: &Path| {
        repair(path, format, rate).map_err(|source| RecordError::Repair {
            path: path.to_owned(),
            source,
        })
    };
    let (status, audio) = if part.exists() {
        let audio = fix(&part)?;
        fs::rename(&part, &finished)
            .and_then(|()| sync_dir(dir))
            .map_err(|source| RecordError::Repair {
                path: part.clone(),
                source,
            })?;
        (Status::Completed, audio)
    } else if finished.exists() {
        // The writer renamed the file and died before rewriting the sidecar.
        (Status::Completed, fix(&finished)?)
    } else {
        let reason = "the process stopped before any audio reached the disk".to_owned();
        (Status::Failed(reason), Audio { samples: 0, rate })
    };
    let duration_ms = audio.duration_ms();
    let result = RecordingResult {
        id,
        path: finished,
        format,
        rate,
        duration_ms,
        start_ms: sidecar.start_ms,
        // When the process died is unknown: the audio says how long it ran at least.
        end_ms: sidecar.start_ms + duration_ms,
        status,
        ended_by: EndReason::Crashed,
        dropped_samples: sidecar.dropped_samples,
        recovered: true,
    };
    sidecar.finish(&result);
    sidecar.store(dir)?;
    Ok(RecordingInfo {
        meta: sidecar.meta,
        result,
    })
}

fn load(dir: &Path, id: &str) -> Result<Option<Sidecar>, RecordError> {
    match Sidecar::load(&sidecar_path(dir, id)) {
        Ok(sidecar) => Ok(Some(sidecar)),
        Err(RecordError::ReadSidecar { source, .. })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every readable sidecar in `dir` whose name is `<valid id>.json` and whose content agrees
/// with its name. With `remove_temporary` (at start-up only: a live recording may be
/// rewriting its sidecar), leftovers of a crash while a sidecar was rewritten are removed;
/// the old sidecar is still in place.
fn sidecars(dir: &Path, remove_temporary: bool) -> Result<Vec<Sidecar>, RecordError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RecordError::Directory {
                dir: dir.to_owned(),
                source,
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(id) = name.strip_suffix(".json.tmp") {
            if remove_temporary && validate_id(id).is_ok() {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if validate_id(id).is_err() {
            continue;
        }
        match Sidecar::load(&entry.path()) {
            Ok(sidecar) if sidecar.recording_id == id => found.push(sidecar),
            Ok(_) => tracing::warn!(file = %name, "sidecar names another recording; skipped"),
            Err(e) => tracing::warn!(
                file = %name,
                error = %crate::meta::error_chain(&e),
                "unreadable sidecar skipped"
            ),
        }
    }
    Ok(found)
}
