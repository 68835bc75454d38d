//! The media thread's side of a recording allocates nothing: a counting global allocator
//! measures pushes into a tap, queued, dropped on a full ring, and after the recording ended.
//!
//! This file holds a single test: the allocator counts every thread of the process.

#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;
use std::time::Duration;

use chorus_media::tone::Sine;
use chorus_media::AudioTap;
use chorus_record::{start, Format};
use common::{spec, TempDir};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn pushing_frames_into_a_tap_does_not_allocate() {
    let dir = TempDir::new("alloc");
    let (recording, mut tap) = start(spec(dir.path(), "alloc", Format::Mp3, 8000)).unwrap();
    // Held, so the measurement sees the tap alone (the writer is another thread); and so the
    // ring fills.
    recording.pause_writer_for_test(true);
    let mut narrow = vec![0i16; 160];
    let mut wide = vec![0i16; 960];
    Sine::new(440.0, 8000, 8000.0).fill(&mut narrow);
    Sine::new(440.0, 48_000, 8000.0).fill(&mut wide);
    // Let the writer thread finish starting up before counting.
    std::thread::sleep(Duration::from_millis(100));

    let region = Region::new(GLOBAL);
    for i in 0..100 {
        if i % 2 == 0 {
            tap.push(8000, &narrow);
        } else {
            tap.push(48_000, &wide);
        }
    }
    let queued = region.change();
    assert_eq!(recording.dropped_samples(), 0);

    // 4 s of 48 kHz fill the ring: the rest is dropped.
    let region = Region::new(GLOBAL);
    for _ in 0..300 {
        tap.push(48_000, &wide);
    }
    let dropping = region.change();
    assert!(recording.dropped_samples() > 0);

    recording.pause_writer_for_test(false);
    recording.stop();
    recording.wait();
    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        tap.push(8000, &narrow);
    }
    let ended = region.change();

    for (what, stats) in [("queued", queued), ("dropping", dropping), ("ended", ended)] {
        assert_eq!(
            (stats.allocations, stats.reallocations),
            (0, 0),
            "{what}: {stats:?}"
        );
    }
}
