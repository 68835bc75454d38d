//! The writer thread of one recording: drains the tap's ring, brings every frame to the
//! recording's rate, encodes, flushes every second, and finishes the file.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chorus_media::{ResampleError, Resampler};
use rtrb::Consumer;

use crate::encode::Encoder;
use crate::error::WriteError;
use crate::meta::{
    error_chain, final_path, now_ms, part_path, sync_dir, EndReason, RecordingResult, Sidecar,
    Status,
};
use crate::recorder::Shared;
use crate::repair::repair;
use crate::tap::{parse_header, HEADER};

/// How long the writer sleeps when the ring is empty. A stop wakes it at once; the tap does
/// not (waking a thread from the media thread is a syscall), so frames wait up to this long.
const POLL: Duration = Duration::from_millis(20);

/// A crash loses at most this much audio: what is written is flushed to the file (and the
/// WAV header updated) at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Writer {
    dir: PathBuf,
    sidecar: Sidecar,
    consumer: Consumer<i16>,
    shared: Arc<Shared>,
    /// A second handle on the `.part`, to sync it once the encoder is done with it.
    sync: File,
    output: Output,
    /// Set while frames arrive at a rate other than the recording's.
    rerate: Option<Rerate>,
    /// One frame read from the ring.
    frame: Vec<i16>,
    /// A pushed rate the resampler refused, warned about once.
    refused_rate: Option<u32>,
}

enum Outcome {
    Ended(EndReason),
    #[cfg(any(test, feature = "test-hooks"))]
    Abandoned,
}

impl Writer {
    pub fn new(
        dir: PathBuf,
        sidecar: Sidecar,
        consumer: Consumer<i16>,
        encoder: Encoder,
        sync: File,
        limit: Option<u64>,
        shared: Arc<Shared>,
    ) -> Self {
        let rate = sidecar.rate;
        Writer {
            dir,
            sidecar,
            consumer,
            sync,
            output: Output {
                encoder: Some(encoder),
                rate,
                limit,
                written: 0,
                unflushed: 0,
                last_flush: Instant::now(),
                shared: shared.clone(),
            },
            shared,
            rerate: None,
            frame: Vec::with_capacity(48_000 / 50),
            refused_rate: None,
        }
    }

    /// What to report if the thread dies.
    pub fn failed_result(&self, reason: &str) -> RecordingResult {
        let s = &self.sidecar;
        RecordingResult::failed(
            &s.recording_id,
            part_path(&self.dir, &s.recording_id),
            s.format,
            s.rate,
            s.start_ms,
            reason,
        )
    }

    pub fn run(mut self) {
        let span = tracing::info_span!("recording", id = %self.sidecar.recording_id);
        let _entered = span.enter();
        let outcome = self.record();
        let outcome = match outcome {
            Ok(Outcome::Ended(reason)) => Ok(reason),
            #[cfg(any(test, feature = "test-hooks"))]
            Ok(Outcome::Abandoned) => {
                if let Some(encoder) = self.output.encoder.take() {
                    encoder.abandon();
                }
                return;
            }
            Err(e) => Err(e),
        };
        let result = self.conclude(outcome);
        self.shared.complete(result);
    }

    fn record(&mut self) -> Result<Outcome, WriteError> {
        loop {
            #[cfg(any(test, feature = "test-hooks"))]
            {
                if self.shared.abandon.load(Ordering::Acquire) {
                    return Ok(Outcome::Abandoned);
                }
                if self.shared.paused.load(Ordering::Acquire) {
                    thread::park_timeout(POLL);
                    continue;
                }
            }
            // Read before draining: whatever was pushed before the stop (or before the tap
            // was dropped) is then in the ring and gets written.
            let stop = self.shared.stop.load(Ordering::Acquire);
            let closed = self.consumer.is_abandoned();
            if self.drain()? {
                return Ok(Outcome::Ended(EndReason::MaxDuration));
            }
            if stop {
                return Ok(Outcome::Ended(EndReason::Stopped));
            }
            if closed {
                return Ok(Outcome::Ended(EndReason::TapClosed));
            }
            if self.output.unflushed > 0 && self.output.last_flush.elapsed() >= FLUSH_EVERY {
                self.output.flush()?;
            }
            thread::park_timeout(POLL);
        }
    }

    /// Writes every whole frame in the ring. True once the length limit is reached.
    fn drain(&mut self) -> Result<bool, WriteError> {
        while self.consumer.slots() >= HEADER {
            let mut header = [0i16; HEADER];
            self.consumer
                .pop_entire_slice(&mut header)
                .map_err(|_| WriteError::Framing)?;
            let (rate, len) = parse_header(header);
            self.frame.resize(len, 0);
            // The tap commits a header and its samples together.
            self.consumer
                .pop_entire_slice(&mut self.frame)
                .map_err(|_| WriteError::Framing)?;
            let frame = std::mem::take(&mut self.frame);
            let full = self.ingest(rate, &frame);
            self.frame = frame;
            if full? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One pushed frame, at whatever rate it came. True once the length limit is reached.
    fn ingest(&mut self, rate: u32, samples: &[i16]) -> Result<bool, WriteError> {
        let mut emit = |s: &[i16]| self.output.emit(s);
        let current = self.rerate.as_ref().map(Rerate::input_rate);
        if current.is_some() && current != Some(rate) {
            // The mix changed rate: what the old resampler still holds belongs before it.
            if let Some(mut old) = self.rerate.take() {
                if old.finish(&mut emit)? {
                    return Ok(true);
                }
            }
        }
        if rate == self.sidecar.rate {
            return emit(samples);
        }
        if self.rerate.is_none() {
            match Rerate::new(rate, self.sidecar.rate) {
                Ok(rerate) => self.rerate = Some(rerate),
                Err(e) => {
                    // Not a rate the mixer uses: the audio is lost, and said to be.
                    if self.refused_rate != Some(rate) {
                        tracing::warn!(rate, error = %e, "frames at an unsupported rate dropped");
                        self.refused_rate = Some(rate);
                    }
                    let lost =
                        samples.len() as u64 * u64::from(self.sidecar.rate) / u64::from(rate);
                    self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
                    return Ok(false);
                }
            }
        }
        match self.rerate.as_mut() {
            Some(rerate) => rerate.push(samples, &mut emit),
            None => Ok(false),
        }
    }

    /// Finishes the file whatever happened: on success the encoder's end, a sync and the
    /// rename; on failure the file is repaired from what reached the disk, as after a crash.
    /// Then the sidecar.
    fn conclude(&mut self, outcome: Result<EndReason, WriteError>) -> RecordingResult {
        let id = self.sidecar.recording_id.clone();
        let (format, rate) = (self.sidecar.format, self.sidecar.rate);
        let part = part_path(&self.dir, &id);
        let finished = final_path(&self.dir, &id, format);
        let outcome = outcome.and_then(|reason| {
            self.close(reason != EndReason::MaxDuration)?;
            Ok(reason)
        });
        let mut duration_ms = self.output.written * 1000 / u64::from(rate);
        let (mut ended_by, mut failure) = match outcome {
            Ok(reason) => (reason, None),
            Err(e) => (EndReason::WriteFailed, Some(error_chain(&e))),
        };
        let mut path = finished.clone();
        let mut usable = true;
        if failure.is_some() {
            // hound's Drop tries a last header update and ignores its error; the repair
            // below does not rely on it.
            drop(self.output.encoder.take());
            match repair(&part, format, rate) {
                Ok(audio) => duration_ms = audio.duration_ms(),
                Err(e) => {
                    tracing::error!(error = %e, "could not repair the file of a failed recording");
                    usable = false;
                    path = part.clone();
                }
            }
        }
        if usable {
            if let Err(e) = fs::rename(&part, &finished).and_then(|()| sync_dir(&self.dir)) {
                let reason = format!("renaming {} to {}: {e}", part.display(), finished.display());
                failure.get_or_insert(reason);
                ended_by = EndReason::WriteFailed;
            }
        }
        let mut result = RecordingResult {
            id,
            path,
            format,
            rate,
            duration_ms,
            start_ms: self.sidecar.start_ms,
            end_ms: now_ms(),
            status: failure.map_or(Status::Completed, Status::Failed),
            ended_by,
            dropped_samples: self.shared.dropped.load(Ordering::Relaxed),
            recovered: false,
        };
        self.sidecar.finish(&result);
        if let Err(e) = self.sidecar.store(&self.dir) {
            // Listing would show it as still recording, and the next start-up would recover
            // it a second time: the caller must know.
            let reason = error_chain(&e);
            result.status = match result.status {
                Status::Completed => Status::Failed(reason),
                Status::Failed(first) => Status::Failed(format!("{first}; {reason}")),
            };
        }
        match &result.status {
            Status::Completed => tracing::info!(
                duration_ms = result.duration_ms,
                ended_by = ?result.ended_by,
                dropped_samples = result.dropped_samples,
                "recording finished"
            ),
            Status::Failed(reason) => tracing::warn!(
                duration_ms = result.duration_ms,
                dropped_samples = result.dropped_samples,
                reason = %reason,
                "recording failed"
            ),
        }
        result
    }

    /// The normal end: what the resampler holds (unless the limit cut the recording), the
    /// encoder's last frames, a sync.
    fn close(&mut self, drain_resampler: bool) -> Result<(), WriteError> {
        if drain_resampler {
            if let Some(mut rerate) = self.rerate.take() {
                rerate.finish(&mut |s| self.output.emit(s))?;
            }
        }
        if let Some(encoder) = self.output.encoder.take() {
            encoder.finish()?;
        }
        self.sync.sync_all()?;
        Ok(())
    }
}

/// The encoder end: counts, caps at the length limit, flushes every second of audio.
struct Output {
    /// `None` once finished or dropped.
    encoder: Option<Encoder>,
    rate: u32,
    /// Samples at which the recording ends.
    limit: Option<u64>,
    written: u64,
    unflushed: u64,
    last_flush: Instant,
    shared: Arc<Shared>,
}

impl Output {
    /// True once the limit is reached.
    fn emit(&mut self, samples: &[i16]) -> Result<bool, WriteError> {
        let room = self
            .limit
            .map_or(samples.len(), |l| l.saturating_sub(self.written) as usize);
        let samples = &samples[..samples.len().min(room)];
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.write(samples)?;
        }
        self.written += samples.len() as u64;
        self.unflushed += samples.len() as u64;
        self.shared.written.store(self.written, Ordering::Relaxed);
        // By audio as well as by the clock: when the writer catches up on a backlog, a
        // crash still loses at most a second of it.
        if self.unflushed >= u64::from(self.rate) {
            self.flush()?;
        }
        Ok(self.limit.is_some_and(|l| self.written >= l))
    }

    fn flush(&mut self) -> Result<(), WriteError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.flush()?;
        }
        self.unflushed = 0;
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// Frames at another rate, brought to the recording's. One resampler per run of frames at
/// the same rate, so its filter state carries across frames (no click at each frame edge).
/// Each 20 ms in gives 20 ms out, so the timeline is kept across rate changes; the
/// resampler's 10 ms delay shifts the audio, it does not lengthen it.
struct Rerate {
    resampler: Resampler,
    /// Input not yet making a whole frame (only if a tap pushes frames of other lengths).
    pending: Vec<i16>,
    out: Vec<i16>,
    in_frame: usize,
}

impl Rerate {
    fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let resampler = Resampler::new(from, to)?;
        Ok(Rerate {
            resampler,
            pending: Vec::new(),
            out: vec![0; to as usize / 50],
            in_frame: from as usize / 50,
        })
    }

    fn input_rate(&self) -> u32 {
        self.resampler.from_rate()
    }

    /// True once `emit` says the limit is reached.
    fn push(
        &mut self,
        samples: &[i16],
        emit: &mut impl FnMut(&[i16]) -> Result<bool, WriteError>,
    ) -> Result<bool, WriteError> {
        if self.pending.is_empty() && samples.len() == self.in_frame {
            self.resampler.process(samples, &mut self.out)?;
            return emit(&self.out);
        }
        self.pending.extend_from_slice(samples);
        let mut start = 0;
        let mut full = false;
        while !full && self.pending.len() - start >= self.in_frame {
            let frame = &self.pending[start..start + self.in_frame];
            self.resampler.process(frame, &mut self.out)?;
            start += self.in_frame;
            full = emit(&self.out)?;
        }
        self.pending.drain(..start);
        Ok(full)
    }

    /// Pads a partial frame with silence and sends it through, so the time it stands for is
    /// kept.
    fn finish(
        &mut self,
        emit: &mut impl FnMut(&[i16]) -> Result<bool, WriteError>,
    ) -> Result<bool, WriteError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        self.pending.resize(self.in_frame, 0);
        self.push(&[], emit)
    }
}
