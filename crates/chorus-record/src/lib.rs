//! Recording a room's (or a call's) mix to MP3 or WAV files, crash-safely, without ever
//! getting in the way of the mix.
//!
//! [`start`] creates `<id>.json` (a sidecar with the recording's metadata) and `<id>.part` in
//! the account's recordings directory, and returns a [`Recording`] (the control side's handle)
//! and a [`Tap`], the [`chorus_media::AudioTap`] to give the media thread. The tap copies each
//! 20 ms frame into a wait-free ring and returns; a writer thread `rec-<id>` drains it,
//! resamples frames pushed at another rate than the recording's, encodes (hound for WAV,
//! LAME for MP3) and flushes the file every second. At the end the file is synced and renamed
//! to `<id>.mp3` / `<id>.wav`, and the sidecar gets the outcome.
//!
//! ```no_run
//! use chorus_media::AudioTap;
//! use chorus_record::{start, Format, Metadata, RecordingSpec, Status};
//! let (recording, mut tap) = start(RecordingSpec {
//!     dir: "/var/lib/chorus/recordings/MA123".into(),
//!     id: "3f1c0a9e-5b7d-4e21-9a44-0c6e2f8d1b23".into(),
//!     format: Format::Mp3,
//!     rate: 8000,
//!     max_duration: None,
//!     meta: Metadata { account: "MA123".into(), ..Metadata::default() },
//! })?;
//! tap.push(8000, &[0; 160]); // on the media thread, every tick
//! recording.stop();
//! let result = recording.wait(); // or `recording.finished().await`
//! assert_eq!(result.status, Status::Completed);
//! # Ok::<(), chorus_record::RecordError>(())
//! ```
//!
//! Invariants:
//! - [`Tap`]'s `push` never allocates, locks, blocks or logs. When the writer falls behind
//!   the frame is dropped and counted ([`RecordingResult::dropped_samples`]).
//! - The recording ends on [`Recording::stop`], when the tap is dropped, at `max_duration`,
//!   or on the first failed write. A failure never panics and never reaches the tap: the
//!   recording ends as [`Status::Failed`], and the file is still made valid from what reached
//!   the disk.
//! - Duration = samples written / rate. A rate change in the mix keeps the timeline (each
//!   20 ms in is 20 ms out).
//! - A crash loses at most about a second of audio: [`recover`] at start-up makes every
//!   `.part` a valid file and returns the recordings so their callbacks can still be sent.
//! - Ids are validated ([`validate_id`]): they are file names and never a path.

mod encode;
mod error;
mod meta;
mod recorder;
mod repair;
mod store;
mod tap;
mod writer;

pub use error::RecordError;
pub use meta::{validate_id, EndReason, Format, Metadata, RecordingInfo, RecordingResult, Status};
pub use recorder::{start, Recording, RecordingSpec, VoiceActivity, RATES, VOICE_THRESHOLD_RMS};
pub use store::{delete, get, list, recover};
pub use tap::Tap;
