use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a recording could not be started, listed, deleted or recovered.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("invalid recording id {0:?}: 1 to 64 characters from A-Z, a-z, 0-9, '-' and '_'")]
    InvalidId(String),
    #[error("unsupported recording rate {0} Hz (8000, 12000, 16000, 24000 or 48000)")]
    UnsupportedRate(u32),
    #[error("unknown recording format {0:?} (mp3 or wav)")]
    UnknownFormat(String),
    #[error("recordings directory {dir} is not usable")]
    Directory {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("recording {id} already exists in {dir}")]
    AlreadyExists { id: String, dir: PathBuf },
    #[error("recording {0} is still in progress")]
    InProgress(String),
    #[error("creating {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the WAV header of {path}")]
    WavHeader {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("configuring the MP3 encoder: {0}")]
    Mp3Encoder(String),
    #[error("writing the sidecar {path}")]
    WriteSidecar {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the sidecar {path}")]
    ReadSidecar {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed sidecar {path}")]
    MalformedSidecar {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("repairing {path}")]
    Repair {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("deleting {path}")]
    Delete {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting the writer thread")]
    Spawn(#[source] io::Error),
}

/// Why the writer thread gave up on a recording: becomes [`crate::Status::Failed`].
#[derive(Debug, Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Wav(#[from] hound::Error),
    #[error("MP3 encoder: {0}")]
    Mp3(String),
    #[error(transparent)]
    Sidecar(#[from] RecordError),
    #[error("resampling")]
    Resample(#[from] chorus_media::ResampleError),
    #[error("the ring from the media thread lost its framing")]
    Framing,
}
