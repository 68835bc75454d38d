//! Recordings into real files in a temporary directory: formats, rates, the ways a recording
//! ends, failures, crashes and the directory's listing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_media::AudioTap;
use chorus_record::{
    delete, get, list, recover, start, EndReason, Format, RecordError, RecordingResult, Status,
};
use common::*;

fn record_tone(dir: &Path, id: &str, format: Format) -> RecordingResult {
    let (recording, mut tap) = start(spec(dir, id, format, 8000)).unwrap();
    Source::new().push(&mut tap, 8000, 150);
    recording.stop();
    let result = recording.wait();
    drop(tap);
    result
}

#[test]
fn wav_recording_of_a_3s_tone_is_a_3s_wav_holding_the_tone() {
    let dir = TempDir::new("wav");
    let result = record_tone(dir.path(), "rec-wav", Format::Wav);
    assert_eq!(result.status, Status::Completed);
    assert_eq!(result.ended_by, EndReason::Stopped);
    assert_eq!(result.path, dir.path().join("rec-wav.wav"));
    assert!(!dir.path().join("rec-wav.part").exists());
    assert_eq!(result.duration_ms, 3000);
    assert!(!result.dropped_audio());

    let (rate, samples) = read_wav(&result.path);
    assert_eq!(rate, 8000);
    assert!((duration_ms(rate, &samples) - 3000).abs() <= 20);
    assert_tone(middle(&samples, rate), rate, "wav");

    let sidecar = sidecar_json(dir.path(), "rec-wav");
    assert_eq!(sidecar["status"], "completed");
    assert_eq!(sidecar["format"], "wav");
    assert_eq!(sidecar["rate"], 8000);
    assert_eq!(sidecar["duration_ms"], 3000);
    assert_eq!(sidecar["account"], "MA123");
    assert_eq!(sidecar["conference_name"], "WeeklyStandup");
    assert_eq!(sidecar["callback_url"], "http://127.0.0.1:9/recorded");
    assert_eq!(sidecar["recovered"], false);
    assert!(sidecar["end_ms"].as_u64().unwrap() >= sidecar["start_ms"].as_u64().unwrap());
}

#[test]
fn mp3_recording_of_a_3s_tone_decodes_to_3s_holding_the_tone() {
    let dir = TempDir::new("mp3");
    let result = record_tone(dir.path(), "rec-mp3", Format::Mp3);
    assert_eq!(result.status, Status::Completed);
    assert_eq!(result.path, dir.path().join("rec-mp3.mp3"));
    assert_eq!(result.duration_ms, 3000);

    let (rate, samples) = decode_mp3(&result.path);
    assert_eq!(rate, 8000);
    let decoded = duration_ms(rate, &samples);
    assert!((decoded - 3000).abs() <= 100, "decoded {decoded} ms");
    assert_tone(middle(&samples, rate), rate, "mp3");
}

#[test]
fn a_48khz_mp3_recording_stays_at_48khz() {
    let dir = TempDir::new("mp3-48k");
    let (recording, mut tap) = start(spec(dir.path(), "wide", Format::Mp3, 48_000)).unwrap();
    Source::new().push(&mut tap, 48_000, 100);
    recording.stop();
    let result = recording.wait();
    let (rate, samples) = decode_mp3(&result.path);
    assert_eq!(rate, 48_000);
    assert!((duration_ms(rate, &samples) - 2000).abs() <= 100);
    assert_tone(middle(&samples, rate), rate, "48 kHz mp3");
}

#[test]
fn a_rate_change_mid_recording_keeps_the_timeline() {
    let dir = TempDir::new("rates");
    for format in [Format::Wav, Format::Mp3] {
        let id = format!("rates-{format}");
        let (recording, mut tap) = start(spec(dir.path(), &id, format, 8000)).unwrap();
        let mut source = Source::new();
        // 1.5 s narrowband, 1.5 s wideband (a wideband member joined), 1 s narrowband again.
        source.push(&mut tap, 8000, 75);
        source.push(&mut tap, 48_000, 75);
        source.push(&mut tap, 8000, 50);
        recording.stop();
        let result = recording.wait();
        assert_eq!(result.status, Status::Completed, "{format}");
        assert!(
            (result.duration_ms as i64 - 4000).abs() <= 20,
            "{format}: {} ms",
            result.duration_ms
        );
        let (rate, samples) = read_audio(&result.path, format);
        assert_eq!(rate, 8000);
        let tolerance = if format == Format::Wav { 20 } else { 100 };
        assert!((duration_ms(rate, &samples) - 4000).abs() <= tolerance);
        // The resampled part is the tone too.
        assert_tone(&samples[14_000..22_000], rate, "resampled from 48 kHz");
    }
}

#[test]
fn a_48khz_recording_of_narrowband_frames_is_upsampled() {
    let dir = TempDir::new("up");
    let (recording, mut tap) = start(spec(dir.path(), "up", Format::Wav, 48_000)).unwrap();
    Source::new().push(&mut tap, 8000, 100);
    recording.stop();
    let result = recording.wait();
    assert_eq!(result.duration_ms, 2000);
    let (rate, samples) = read_wav(&result.path);
    assert_eq!((rate, samples.len()), (48_000, 96_000));
    assert_tone(middle(&samples, rate), rate, "upsampled");
}

#[test]
fn dropping_the_tap_ends_the_recording() {
    let dir = TempDir::new("tap-dropped");
    let (recording, mut tap) = start(spec(dir.path(), "room-ended", Format::Wav, 8000)).unwrap();
    Source::new().push(&mut tap, 8000, 50);
    drop(tap);
    let result = recording.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(result.ended_by, EndReason::TapClosed);
    assert_eq!(result.status, Status::Completed);
    assert_eq!(result.duration_ms, 1000);
    assert!(recording.is_finished());
}

#[test]
fn max_duration_ends_the_recording_at_exactly_that_length() {
    let dir = TempDir::new("limit");
    let mut spec = spec(dir.path(), "limited", Format::Wav, 8000);
    spec.max_duration = Some(Duration::from_millis(1500));
    let (recording, mut tap) = start(spec).unwrap();
    Source::new().push(&mut tap, 8000, 150);
    let result = recording.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(result.ended_by, EndReason::MaxDuration);
    assert_eq!(result.duration_ms, 1500);
    let (_, samples) = read_wav(&result.path);
    assert_eq!(samples.len(), 12_000);
    // Pushing into a finished recording is ignored, not counted as lost.
    Source::new().push(&mut tap, 8000, 10);
    assert_eq!(recording.dropped_samples(), 0);
}

#[test]
fn voice_activity_reports_the_silence_since_the_last_voiced_frame() {
    let dir = TempDir::new("voice");
    let (recording, mut tap) = start(spec(dir.path(), "voice", Format::Wav, 8000)).unwrap();
    push_silence(&mut tap, 8000, 25);
    let activity = recording.voice_activity();
    assert_eq!(activity.last_voice, None);
    assert_eq!(activity.silence(), Duration::from_millis(500));
    Source::new().push(&mut tap, 8000, 50);
    push_silence(&mut tap, 8000, 100);
    let activity = recording.voice_activity();
    assert_eq!(activity.heard, Duration::from_millis(3500));
    assert_eq!(activity.last_voice, Some(Duration::from_millis(1500)));
    assert_eq!(activity.silence(), Duration::from_secs(2));
    // Comfort-noise-level hiss is not voice.
    let hiss: Vec<i16> = (0..160)
        .map(|i| if i % 2 == 0 { 50 } else { -50 })
        .collect();
    tap.push(8000, &hiss);
    assert_eq!(
        recording.voice_activity().last_voice,
        Some(Duration::from_millis(1500))
    );
    recording.stop();
    recording.wait();
}

#[test]
fn a_full_ring_drops_frames_without_blocking_the_pushing_thread() {
    let dir = TempDir::new("full");
    let (recording, mut tap) = start(spec(dir.path(), "stalled", Format::Wav, 48_000)).unwrap();
    recording.pause_writer_for_test(true);
    let mut source = Source::new();
    // The ring holds 4 s at 48 kHz; push 6 s while the writer is held.
    let started = Instant::now();
    source.push(&mut tap, 48_000, 300);
    let pushing = started.elapsed();
    assert!(
        pushing < Duration::from_secs(1),
        "300 pushes took {pushing:?}"
    );
    assert_eq!(recording.dropped_samples(), 100 * 960);
    recording.pause_writer_for_test(false);
    recording.stop();
    let result = recording.wait();
    assert_eq!(result.status, Status::Completed);
    assert_eq!(result.dropped_samples, 100 * 960);
    assert!(result.dropped_audio());
    assert_eq!(result.duration_ms, 4000);
    let sidecar = sidecar_json(dir.path(), "stalled");
    assert_eq!(sidecar["dropped_audio"], true);
    assert_eq!(sidecar["dropped_samples"], 96_000);
}

#[test]
fn starting_in_a_missing_directory_or_on_a_file_fails_at_once() {
    let dir = TempDir::new("bad-dir");
    let missing = dir.path().join("no-such-account");
    let err = start(spec(&missing, "r1", Format::Mp3, 8000)).unwrap_err();
    assert!(matches!(err, RecordError::Directory { .. }), "{err:?}");
    assert!(!missing.exists());

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = start(spec(&file, "r1", Format::Wav, 8000)).unwrap_err();
    assert!(matches!(err, RecordError::Directory { .. }), "{err:?}");
}

#[test]
fn invalid_ids_rates_and_duplicates_are_refused() {
    let dir = TempDir::new("refused");
    for id in [
        "",
        "../escape",
        "a/b",
        "a\\b",
        "..",
        ".hidden",
        "a b",
        &"x".repeat(65),
    ] {
        let err = start(spec(dir.path(), id, Format::Wav, 8000)).unwrap_err();
        assert!(matches!(err, RecordError::InvalidId(_)), "{id:?}: {err:?}");
    }
    let err = start(spec(dir.path(), "r", Format::Wav, 44_100)).unwrap_err();
    assert!(matches!(err, RecordError::UnsupportedRate(44_100)));
    let (recording, _tap) = start(spec(dir.path(), "r", Format::Wav, 8000)).unwrap();
    let err = start(spec(dir.path(), "r", Format::Mp3, 8000)).unwrap_err();
    assert!(matches!(err, RecordError::AlreadyExists { .. }), "{err:?}");
    recording.stop();
    recording.wait();
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn a_failing_disk_fails_the_recording_and_keeps_a_valid_file_of_what_was_written() {
    let dir = TempDir::new("disk-full");
    for format in [Format::Wav, Format::Mp3] {
        let id = format!("full-{format}");
        let (recording, mut tap) = start(spec(dir.path(), &id, format, 8000)).unwrap();
        let mut source = Source::new();
        source.push(&mut tap, 8000, 100);
        wait_written(&recording, Duration::from_secs(2));
        recording.fail_writes_for_test();
        // The writer hits the failure on its next write or flush; the tap never notices.
        let started = Instant::now();
        for _ in 0..100 {
            source.push(&mut tap, 8000, 1);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        recording.stop();
        let result = recording.wait();
        let Status::Failed(reason) = &result.status else {
            panic!("{format}: {:?}", result.status);
        };
        assert!(reason.contains("no space left"), "{format}: {reason}");
        assert_eq!(result.ended_by, EndReason::WriteFailed);
        let sidecar = sidecar_json(dir.path(), &id);
        assert_eq!(sidecar["status"], "failed");
        assert!(sidecar["error"].as_str().unwrap().contains("no space left"));
        // The two seconds flushed before the failure are a valid file.
        assert_eq!(result.path, dir.path().join(format!("{id}.{format}")));
        let (rate, samples) = read_audio(&result.path, format);
        let decoded = duration_ms(rate, &samples);
        // LAME holds back up to a few frames (72 ms each at 8 kHz) until its next output.
        assert!((1700..=3100).contains(&decoded), "{format}: {decoded} ms");
        assert!((result.duration_ms as i64 - decoded).abs() <= 150);
        assert_tone(middle(&samples, rate), rate, "kept after the failure");
    }
}

#[test]
fn a_crash_leaves_files_that_recover_makes_valid_missing_at_most_a_second() {
    let dir = TempDir::new("crash");
    let mut ids = Vec::new();
    for format in [Format::Wav, Format::Mp3] {
        let id = format!("crashed-{format}");
        let (recording, mut tap) = start(spec(dir.path(), &id, format, 8000)).unwrap();
        let mut source = Source::new();
        source.push(&mut tap, 8000, 100);
        wait_written(&recording, Duration::from_secs(2));
        // A little more that never reaches the disk.
        source.push(&mut tap, 8000, 10);
        recording.abandon_for_test();
        drop(tap);
        assert!(dir.path().join(format!("{id}.part")).exists());
        assert_eq!(sidecar_json(dir.path(), &id)["status"], "recording");
        ids.push((id, format));
    }
    // Not listed while they look in progress.
    assert!(list(dir.path()).unwrap().is_empty());

    let recovered = recover(dir.path()).unwrap();
    assert_eq!(recovered.len(), 2);
    for (id, format) in &ids {
        let info = recovered.iter().find(|i| &i.result.id == id).unwrap();
        assert!(info.result.recovered);
        assert_eq!(info.result.status, Status::Completed);
        assert_eq!(info.result.ended_by, EndReason::Crashed);
        assert_eq!(info.meta.account, "MA123");
        assert_eq!(
            info.meta.callback_url.as_deref(),
            Some("http://127.0.0.1:9/recorded")
        );
        assert!(!dir.path().join(format!("{id}.part")).exists());
        assert_eq!(info.result.path, dir.path().join(format!("{id}.{format}")));
        let (rate, samples) = read_audio(&info.result.path, *format);
        let decoded = duration_ms(rate, &samples);
        assert!((1000..=2300).contains(&decoded), "{format}: {decoded} ms");
        assert!(
            (info.result.duration_ms as i64 - decoded).abs() <= 100,
            "{format}"
        );
        assert_tone(middle(&samples, rate), rate, "recovered");
        let sidecar = sidecar_json(dir.path(), id);
        assert_eq!(sidecar["recovered"], true);
        assert_eq!(sidecar["status"], "completed");
    }
    // Recovery is done once: a second start-up finds nothing to do, and listing shows them.
    assert!(recover(dir.path()).unwrap().is_empty());
    assert_eq!(list(dir.path()).unwrap().len(), 2);
}

/// Puts `audio` back as the `.part` of a recording in progress, as a crash leaves it.
fn as_crashed(dir: &Path, id: &str, audio: &[u8]) {
    std::fs::write(dir.join(format!("{id}.part")), audio).unwrap();
    for format in [Format::Wav, Format::Mp3] {
        let _ = std::fs::remove_file(dir.join(format!("{id}.{format}")));
    }
    let mut sidecar = sidecar_json(dir, id);
    sidecar["status"] = "recording".into();
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec(&sidecar).unwrap(),
    )
    .unwrap();
}

#[test]
fn an_mp3_torn_mid_frame_is_cut_to_whole_frames_and_decodes() {
    let dir = TempDir::new("torn");
    let result = record_tone(dir.path(), "torn", Format::Mp3);
    let bytes = std::fs::read(&result.path).unwrap();
    // 8 kHz, 32 kbps: 288-byte frames; the last one loses its end.
    let torn = &bytes[..bytes.len() - 150];
    as_crashed(dir.path(), "torn", torn);
    let recovered = recover(dir.path()).unwrap();
    assert_eq!(recovered.len(), 1);
    let repaired = std::fs::read(&result.path).unwrap();
    assert!(
        repaired.len() < torn.len() && repaired.len() >= torn.len() - 290,
        "{} of {} bytes kept",
        repaired.len(),
        torn.len()
    );
    assert_eq!(&repaired[..], &bytes[..repaired.len()]);
    let (rate, samples) = decode_mp3(&result.path);
    let decoded = duration_ms(rate, &samples);
    assert!((2800..=3100).contains(&decoded), "{decoded} ms");
    assert!((recovered[0].result.duration_ms as i64 - decoded).abs() <= 100);

    // Whole frames followed by zeros (the file grew, its data never reached the disk): the
    // zeros go.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0u8; 700]);
    as_crashed(dir.path(), "torn", &padded);
    recover(dir.path()).unwrap();
    assert_eq!(std::fs::read(&result.path).unwrap(), bytes);
}

#[test]
fn a_wav_with_stale_sizes_and_a_torn_sample_is_repaired_from_its_length() {
    let dir = TempDir::new("torn-wav");
    let result = record_tone(dir.path(), "w", Format::Wav);
    let mut bytes = std::fs::read(&result.path).unwrap();
    // Sizes as of an earlier flush, and half a sample at the end.
    bytes[4..8].copy_from_slice(&1000u32.to_le_bytes());
    bytes[40..44].copy_from_slice(&964u32.to_le_bytes());
    bytes.push(0x7f);
    as_crashed(dir.path(), "w", &bytes);

    let recovered = recover(dir.path()).unwrap();
    assert_eq!(recovered[0].result.duration_ms, 3000);
    let (_, samples) = read_wav(&result.path);
    assert_eq!(samples.len(), 24_000);
}

#[test]
fn recover_marks_a_recording_whose_audio_never_reached_the_disk_as_failed() {
    let dir = TempDir::new("no-audio");
    let (recording, tap) = start(spec(dir.path(), "gone", Format::Wav, 8000)).unwrap();
    recording.abandon_for_test();
    drop(tap);
    std::fs::remove_file(dir.path().join("gone.part")).unwrap();
    let recovered = recover(dir.path()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert!(matches!(recovered[0].result.status, Status::Failed(_)));
    assert!(recovered[0].result.recovered);
    assert_eq!(sidecar_json(dir.path(), "gone")["status"], "failed");
}

#[test]
fn list_get_and_delete_work_on_finished_recordings_with_validated_ids() {
    let dir = TempDir::new("list");
    let a = record_tone(dir.path(), "aaaa-1111", Format::Wav);
    let b = record_tone(dir.path(), "bbbb-2222", Format::Mp3);
    let (live, _tap) = start(spec(dir.path(), "cccc-3333", Format::Wav, 8000)).unwrap();

    let listed = list(dir.path()).unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.result.id.as_str()).collect();
    assert_eq!(
        ids,
        ["aaaa-1111", "bbbb-2222"],
        "the live one is not listed"
    );
    assert_eq!(listed[0].result, a);
    assert_eq!(listed[1].result, b);
    assert_eq!(
        listed[1].meta.conference_name.as_deref(),
        Some("WeeklyStandup")
    );
    assert_eq!(get(dir.path(), "bbbb-2222").unwrap().unwrap().result, b);
    assert_eq!(get(dir.path(), "cccc-3333").unwrap(), None);
    assert_eq!(get(dir.path(), "nope").unwrap(), None);

    for bad in ["../aaaa-1111", "a/b", "..", "", "aaaa-1111.wav"] {
        assert!(
            matches!(delete(dir.path(), bad), Err(RecordError::InvalidId(_))),
            "{bad:?}"
        );
        assert!(matches!(
            get(dir.path(), bad),
            Err(RecordError::InvalidId(_))
        ));
    }
    assert!(matches!(
        delete(dir.path(), "cccc-3333"),
        Err(RecordError::InProgress(_))
    ));
    assert!(!delete(dir.path(), "dddd-4444").unwrap());
    assert!(delete(dir.path(), "aaaa-1111").unwrap());
    assert!(!a.path.exists());
    assert!(!dir.path().join("aaaa-1111.json").exists());
    assert!(!delete(dir.path(), "aaaa-1111").unwrap());
    let ids: Vec<String> = list(dir.path())
        .unwrap()
        .into_iter()
        .map(|i| i.result.id)
        .collect();
    assert_eq!(ids, ["bbbb-2222"]);
    assert!(b.path.exists());

    live.stop();
    live.wait();
    assert_eq!(list(dir.path()).unwrap().len(), 2);
    assert!(list(&dir.path().join("missing")).unwrap().is_empty());
}

#[tokio::test]
async fn finished_resolves_on_an_async_runtime_when_the_recording_stops() {
    let dir = TempDir::new("async");
    let (recording, mut tap) = start(spec(dir.path(), "async", Format::Mp3, 8000)).unwrap();
    Source::new().push(&mut tap, 8000, 25);
    let waiter = {
        let recording = recording.clone();
        tokio::spawn(async move { recording.finished().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    recording.stop();
    let result = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, Status::Completed);
    assert_eq!(result.duration_ms, 500);
}
