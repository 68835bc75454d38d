//! Starting a recording, and the control side's handle on it.

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use rtrb::RingBuffer;

use crate::encode::{Encoder, SinkFile};
use crate::error::RecordError;
use crate::meta::{
    final_path, part_path, sidecar_path, sync_dir, validate_id, EndReason, Format, Metadata,
    RecordingResult, Sidecar, Status,
};
use crate::tap::{Tap, RING_CAPACITY};
use crate::writer::Writer;

/// Sample rates a recording can have: the rates the mixer and the resampler know, all of
/// which are MP3 rates too.
pub const RATES: [u32; 5] = [8000, 12_000, 16_000, 24_000, 48_000];

/// A frame whose RMS level is above this (about -40 dBFS) counts as voice for
/// [`Recording::voice_activity`].
pub const VOICE_THRESHOLD_RMS: u16 = 330;

/// What to record, where.
#[derive(Clone, Debug)]
pub struct RecordingSpec {
    /// The account's recordings directory; it must exist.
    pub dir: PathBuf,
    /// Becomes the file names (`<id>.mp3`, `<id>.json`): see [`crate::validate_id`].
    pub id: String,
    pub format: Format,
    /// The file's sample rate, one of [`RATES`]; frames pushed at another rate are resampled.
    pub rate: u32,
    /// The recording ends by itself after this much audio (`time_limit`, `maxLength`).
    pub max_duration: Option<Duration>,
    pub meta: Metadata,
}

/// Starts a recording: creates `<id>.json` (the sidecar) and `<id>.part` in `spec.dir`, and a
/// writer thread `rec-<id>`. Returns the control handle and the [`Tap`] to give the media
/// thread.
///
/// Every problem with the directory or the files is reported here, synchronously; after
/// this, failures end the recording with [`Status::Failed`].
pub fn start(spec: RecordingSpec) -> Result<(Recording, Tap), RecordError> {
    validate_id(&spec.id)?;
    if !RATES.contains(&spec.rate) {
        return Err(RecordError::UnsupportedRate(spec.rate));
    }
    let dir = spec.dir.as_path();
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(RecordError::Directory {
                dir: dir.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            })
        }
        Err(source) => {
            return Err(RecordError::Directory {
                dir: dir.to_owned(),
                source,
            })
        }
    }
    let (part, sidecar_file) = (part_path(dir, &spec.id), sidecar_path(dir, &spec.id));
    let finished = final_path(dir, &spec.id, spec.format);
    if [&part, &sidecar_file, &finished]
        .iter()
        .any(|p| p.symlink_metadata().is_ok())
    {
        return Err(RecordError::AlreadyExists {
            id: spec.id,
            dir: dir.to_owned(),
        });
    }

    // The sidecar goes first: a `.part` is never on disk without the metadata that says
    // what to do with it after a crash.
    let sidecar = Sidecar::new(&spec.id, spec.format, spec.rate, spec.meta);
    sidecar.store(dir)?;
    let cleanup = || {
        let _ = fs::remove_file(&part);
        let _ = fs::remove_file(&sidecar_file);
    };

    let shared = Arc::new(Shared::new());
    let files = (|| {
        let create = |source| RecordError::Create {
            path: part.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(create)?;
        let sync = file.try_clone().map_err(create)?;
        let sink = SinkFile::new(
            file,
            #[cfg(any(test, feature = "test-hooks"))]
            shared.fail.clone(),
        );
        let encoder = Encoder::new(spec.format, spec.rate, sink, &part)?;
        sync_dir(dir).map_err(create)?;
        Ok((encoder, sync))
    })();
    let (encoder, sync) = files.inspect_err(|_| cleanup())?;

    let (producer, consumer) = RingBuffer::new(RING_CAPACITY);
    let limit = spec
        .max_duration
        .map(|d| (d.as_micros() * u128::from(spec.rate) / 1_000_000) as u64);
    let writer = Writer::new(
        dir.to_owned(),
        sidecar,
        consumer,
        encoder,
        sync,
        limit,
        shared.clone(),
    );
    let on_panic = writer.failed_result("the writer thread panicked");
    let thread_shared = shared.clone();
    let handle = thread::Builder::new()
        .name(format!("rec-{}", spec.id))
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| writer.run());
            if std::panic::catch_unwind(run).is_err() {
                let mut result = on_panic;
                result.end_ms = crate::meta::now_ms();
                thread_shared.complete(result);
            }
        })
        .map_err(RecordError::Spawn)
        .inspect_err(|_| cleanup())?;
    let _ = shared.writer.set(handle.thread().clone());
    #[cfg(any(test, feature = "test-hooks"))]
    {
        *lock(&shared.join) = Some(handle);
    }
    tracing::info!(id = %spec.id, format = %spec.format, rate = spec.rate, "recording started");

    let recording = Recording {
        id: spec.id.into(),
        path: finished.into(),
        rate: spec.rate,
        shared: shared.clone(),
    };
    Ok((recording, Tap::new(producer, shared, spec.rate)))
}

/// The control side's handle on a recording; cheap to clone.
///
/// The recording ends on [`Recording::stop`], when its [`Tap`] is dropped (the room or call
/// ended), at `max_duration`, or when a write fails. Dropping every `Recording` handle does
/// not end it.
#[derive(Clone)]
pub struct Recording {
    id: Arc<str>,
    path: Arc<Path>,
    rate: u32,
    shared: Arc<Shared>,
}

impl Recording {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the finished file will be.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the recording: everything pushed before this call is written, then the file is
    /// finished. Returns at once; see [`Recording::finished`] or [`Recording::wait`].
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_writer();
    }

    pub fn is_finished(&self) -> bool {
        self.shared.done().result.is_some()
    }

    /// How much has been heard, and when voice was last heard, in the tap's media time.
    pub fn voice_activity(&self) -> VoiceActivity {
        let heard = self.shared.heard_us.load(Ordering::Relaxed);
        let last = self.shared.last_voice_us.load(Ordering::Relaxed);
        VoiceActivity {
            heard: Duration::from_micros(heard),
            last_voice: (last != NO_VOICE).then(|| Duration::from_micros(last)),
        }
    }

    /// Audio written to the file so far.
    pub fn written(&self) -> Duration {
        let samples = self.shared.written.load(Ordering::Relaxed);
        Duration::from_micros(samples * 1_000_000 / u64::from(self.rate))
    }

    /// Audio lost so far because the writer could not keep up, in samples at the
    /// recording's rate.
    pub fn dropped_samples(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits for the end of the recording, blocking the thread.
    pub fn wait(&self) -> RecordingResult {
        let mut done = self.shared.done();
        loop {
            if let Some(result) = &done.result {
                return result.clone();
            }
            done = self
                .shared
                .cond
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Like [`Recording::wait`], giving up after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<RecordingResult> {
        let done = self.shared.done();
        let (done, _) = self
            .shared
            .cond
            .wait_timeout_while(done, timeout, |d| d.result.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        done.result.clone()
    }

    /// Waits for the end of the recording without blocking the executor.
    pub async fn finished(&self) -> RecordingResult {
        Finished {
            shared: &self.shared,
        }
        .await
    }
}

#[cfg(any(test, feature = "test-hooks"))]
impl Recording {
    /// Holds the writer: the ring fills and the tap starts dropping, as with a stalled disk.
    pub fn pause_writer_for_test(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Release);
        self.shared.wake_writer();
    }

    /// Makes every further write to the file fail with "no space left on device".
    pub fn fail_writes_for_test(&self) {
        self.shared.fail.store(true, Ordering::Release);
        self.shared.wake_writer();
    }

    /// Stops the writer thread the way a crash would: nothing more is written, the encoder's
    /// buffers are lost, the `.part` and the sidecar stay as they are. Returns when the thread
    /// has exited; the recording never finishes.
    pub fn abandon_for_test(self) {
        self.shared.abandon.store(true, Ordering::Release);
        self.shared.wake_writer();
        let handle = lock(&self.shared.join).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// What a recording has heard, in media time: the audio pushed into its tap, dropped frames
/// included. Media time rather than the wall clock, so a stalled media thread is not taken
/// for silence, and so it can be tested without a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoiceActivity {
    /// Audio pushed so far.
    pub heard: Duration,
    /// The end of the last frame above [`VOICE_THRESHOLD_RMS`]; `None` if there was none.
    pub last_voice: Option<Duration>,
}

impl VoiceActivity {
    /// Silence since the last voice, or since the start if there was none (`<Record
    /// timeout>`).
    pub fn silence(&self) -> Duration {
        self.heard
            .saturating_sub(self.last_voice.unwrap_or(Duration::ZERO))
    }
}

pub(crate) const NO_VOICE: u64 = u64::MAX;

/// State shared by the tap (media thread), the writer thread and the handles.
pub(crate) struct Shared {
    pub stop: AtomicBool,
    /// Media time pushed into the tap, µs.
    pub heard_us: AtomicU64,
    /// Media time at the end of the last voiced frame, µs; [`NO_VOICE`] if none.
    pub last_voice_us: AtomicU64,
    /// Samples (at the recording's rate) dropped because the ring was full.
    pub dropped: AtomicU64,
    /// Samples written to the file.
    pub written: AtomicU64,
    pub writer: OnceLock<Thread>,
    done: Mutex<Done>,
    cond: Condvar,
    #[cfg(any(test, feature = "test-hooks"))]
    pub paused: AtomicBool,
    #[cfg(any(test, feature = "test-hooks"))]
    pub abandon: AtomicBool,
    #[cfg(any(test, feature = "test-hooks"))]
    pub fail: crate::encode::FailSwitch,
    #[cfg(any(test, feature = "test-hooks"))]
    join: Mutex<Option<thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Done {
    result: Option<RecordingResult>,
    wakers: Vec<Waker>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            stop: AtomicBool::new(false),
            heard_us: AtomicU64::new(0),
            last_voice_us: AtomicU64::new(NO_VOICE),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            writer: OnceLock::new(),
            done: Mutex::new(Done::default()),
            cond: Condvar::new(),
            #[cfg(any(test, feature = "test-hooks"))]
            paused: AtomicBool::new(false),
            #[cfg(any(test, feature = "test-hooks"))]
            abandon: AtomicBool::new(false),
            #[cfg(any(test, feature = "test-hooks"))]
            fail: Default::default(),
            #[cfg(any(test, feature = "test-hooks"))]
            join: Mutex::new(None),
        }
    }

    fn done(&self) -> MutexGuard<'_, Done> {
        lock(&self.done)
    }

    fn wake_writer(&self) {
        if let Some(thread) = self.writer.get() {
            thread.unpark();
        }
    }

    /// Publishes the result to every waiter, blocking or async. The first result wins.
    pub fn complete(&self, result: RecordingResult) {
        let wakers = {
            let mut done = self.done();
            if done.result.is_some() {
                return;
            }
            done.result = Some(result);
            std::mem::take(&mut done.wakers)
        };
        self.cond.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// A poisoned lock only means a waiter panicked; the state it guards is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Finished<'a> {
    shared: &'a Shared,
}

impl Future for Finished<'_> {
    type Output = RecordingResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RecordingResult> {
        let mut done = self.shared.done();
        if let Some(result) = &done.result {
            return Poll::Ready(result.clone());
        }
        if !done.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            done.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl RecordingResult {
    pub(crate) fn failed(
        id: &str,
        path: PathBuf,
        format: Format,
        rate: u32,
        start_ms: u64,
        reason: &str,
    ) -> Self {
        RecordingResult {
            id: id.to_owned(),
            path,
            format,
            rate,
            duration_ms: 0,
            start_ms,
            end_ms: crate::meta::now_ms(),
            status: Status::Failed(reason.to_owned()),
            ended_by: EndReason::WriteFailed,
            dropped_samples: 0,
            recovered: false,
        }
    }
}
