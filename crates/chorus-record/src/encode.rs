//! The two encoders behind one interface, writing to the `.part` file.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::path::Path;

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, Mode, MonoPcm, Quality};

use crate::error::{RecordError, WriteError};
use crate::meta::Format;

/// The `.part` file. In test builds a switch makes every write fail as a full disk would.
pub(crate) struct SinkFile {
    file: File,
    #[cfg(any(test, feature = "test-hooks"))]
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SinkFile {
    pub fn new(file: File, #[cfg(any(test, feature = "test-hooks"))] fail: FailSwitch) -> Self {
        SinkFile {
            file,
            #[cfg(any(test, feature = "test-hooks"))]
            fail,
        }
    }

    fn check(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "test-hooks"))]
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected by a test)",
            ));
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "test-hooks"))]
pub(crate) type FailSwitch = std::sync::Arc<std::sync::atomic::AtomicBool>;

impl Write for SinkFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.file.flush()
    }
}

impl Seek for SinkFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Encodes mono 16-bit samples at the recording's rate into the `.part` file.
pub(crate) enum Encoder {
    Wav(hound::WavWriter<BufWriter<SinkFile>>),
    Mp3 {
        lame: mp3lame_encoder::Encoder,
        out: BufWriter<SinkFile>,
        /// Encoded bytes of one call; its capacity is kept, so encoding does not allocate
        /// once it has seen the largest input.
        scratch: Vec<u8>,
    },
}

impl Encoder {
    /// Starts the file: the WAV header is on disk when this returns, so a crash at any later
    /// point leaves something [`crate::recover`] can repair.
    pub fn new(
        format: Format,
        rate: u32,
        sink: SinkFile,
        path: &Path,
    ) -> Result<Self, RecordError> {
        let out = BufWriter::new(sink);
        match format {
            Format::Wav => {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: rate,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let header = |source| RecordError::WavHeader {
                    path: path.to_owned(),
                    source,
                };
                let mut writer = hound::WavWriter::new(out, spec).map_err(header)?;
                writer.flush().map_err(header)?;
                Ok(Encoder::Wav(writer))
            }
            Format::Mp3 => {
                let lame = mp3_encoder(rate)?;
                Ok(Encoder::Mp3 {
                    lame,
                    out,
                    scratch: Vec::new(),
                })
            }
        }
    }

    pub fn write(&mut self, samples: &[i16]) -> Result<(), WriteError> {
        match self {
            Encoder::Wav(writer) => {
                for &s in samples {
                    writer.write_sample(s)?;
                }
            }
            Encoder::Mp3 { lame, out, scratch } => {
                scratch.clear();
                scratch.reserve(mp3lame_encoder::max_required_buffer_size(samples.len()));
                lame.encode_to_vec(MonoPcm(samples), scratch)
                    .map_err(|e| WriteError::Mp3(e.to_string()))?;
                out.write_all(scratch)?;
            }
        }
        Ok(())
    }

    /// Puts everything written so far in the file (the WAV header updated to match), so a
    /// crash loses at most what came after. Not a sync: the data is in the page cache.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        match self {
            Encoder::Wav(writer) => writer.flush()?,
            Encoder::Mp3 { out, .. } => out.flush()?,
        }
        Ok(())
    }

    /// Ends the stream (LAME's last frames; the final WAV header) and flushes it.
    pub fn finish(self) -> Result<(), WriteError> {
        match self {
            Encoder::Wav(writer) => writer.finalize()?,
            Encoder::Mp3 {
                mut lame,
                mut out,
                mut scratch,
            } => {
                scratch.clear();
                // LAME's flush emits at most one frame plus its reservoir: 7200 bytes is its
                // documented bound.
                scratch.reserve(7200);
                lame.flush_to_vec::<FlushNoGap>(&mut scratch)
                    .map_err(|e| WriteError::Mp3(e.to_string()))?;
                out.write_all(&scratch)?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Lets the encoder go without writing anything more, as a crash would.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn abandon(self) {
        std::mem::forget(self);
    }
}

/// CBR, mono, at the recording's own rate (LAME would otherwise pick a lower one to suit the
/// bitrate), and no Xing/LAME tag frame: that frame is only filled in at the end, so a crashed
/// file would start with an empty one.
fn mp3_encoder(rate: u32) -> Result<mp3lame_encoder::Encoder, RecordError> {
    let err = |e: mp3lame_encoder::BuildError| RecordError::Mp3Encoder(e.to_string());
    // Speech: about what a G.711 leg carries for narrowband, more for wideband.
    let bitrate = match rate {
        ..=12_000 => Bitrate::Kbps32,
        12_001..=24_000 => Bitrate::Kbps48,
        _ => Bitrate::Kbps64,
    };
    let mut builder =
        Builder::new().ok_or_else(|| RecordError::Mp3Encoder("LAME could not allocate".into()))?;
    builder.set_num_channels(1).map_err(err)?;
    builder.set_sample_rate(rate).map_err(err)?;
    builder
        .set_output_sample_rate(NonZeroU32::new(rate))
        .map_err(err)?;
    builder.set_mode(Mode::Mono).map_err(err)?;
    builder.set_brate(bitrate).map_err(err)?;
    builder.set_quality(Quality::Good).map_err(err)?;
    builder.set_to_write_vbr_tag(false).map_err(err)?;
    builder.build().map_err(err)
}
