//! A real crash: a child process records, is killed with SIGKILL, and `recover` makes its
//! files playable.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chorus_record::{recover, start, Format, Status};
use common::*;

/// Set in the child's environment: the directory it records into.
const CHILD_DIR: &str = "CHORUS_RECORD_CRASH_DIR";
const READY: &str = "CHILD-RECORDING-READY";

#[test]
#[ignore = "the process a_killed_recording_process_leaves_files_recover_makes_playable kills"]
fn child_records_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut live = Vec::new();
    for format in [Format::Wav, Format::Mp3] {
        let (recording, mut tap) =
            start(spec(&dir, &format!("killed-{format}"), format, 8000)).unwrap();
        Source::new().push(&mut tap, 8000, 100);
        wait_written(&recording, Duration::from_secs(2));
        live.push((recording, tap));
    }
    println!("{READY}");
    // Killed long before this ends.
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_recording_process_leaves_files_recover_makes_playable() {
    let dir = TempDir::new("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_records_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(READY) {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    ready.expect("the child started recording");

    for format in [Format::Wav, Format::Mp3] {
        assert!(dir.path().join(format!("killed-{format}.part")).exists());
    }
    let recovered = recover(dir.path()).unwrap();
    assert_eq!(recovered.len(), 2);
    for info in &recovered {
        let format = info.result.format;
        assert!(info.result.recovered);
        assert_eq!(info.result.status, Status::Completed);
        let (rate, samples) = read_audio(&info.result.path, format);
        let decoded = duration_ms(rate, &samples);
        // 2 s were written; a crash loses at most about a second.
        assert!((1000..=2100).contains(&decoded), "{format}: {decoded} ms");
        assert_tone(middle(&samples, rate), rate, "recovered after SIGKILL");
        assert_eq!(sidecar_json(dir.path(), &info.result.id)["recovered"], true);
    }
}
