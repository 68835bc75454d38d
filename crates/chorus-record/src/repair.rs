//! Turning a torn audio file (the writer died, or a write failed half-way) into a valid one,
//! in place, from what is on disk: the same code finishes a failed recording and recovers a
//! crashed one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::meta::Format;

/// What a repaired file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Audio {
    /// Mono samples (MP3: whole frames' worth, encoder delay included).
    pub samples: u64,
    pub rate: u32,
}

impl Audio {
    pub fn duration_ms(self) -> u64 {
        if self.rate == 0 {
            0
        } else {
            self.samples * 1000 / u64::from(self.rate)
        }
    }
}

/// Makes `path` a valid file of `format` and syncs it. `rate` is the recording's rate, used
/// when nothing in the file says otherwise. Idempotent: a valid file is left as it is.
pub(crate) fn repair(path: &Path, format: Format, rate: u32) -> io::Result<Audio> {
    match format {
        Format::Wav => repair_wav(path, rate),
        Format::Mp3 => repair_mp3(path, rate),
    }
}

/// The RIFF and data chunk sizes are only right after a header update; after a crash they
/// say whatever the last flush said. The file length is the truth: everything after the data
/// chunk header is samples (hound writes the data chunk last), up to the last whole one.
fn repair_wav(path: &Path, rate: u32) -> io::Result<Audio> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; len.min(4096) as usize];
    file.read_exact(&mut head)?;
    let Some(header) = parse_wav_header(&head) else {
        // Not even a header made it to disk: the recording holds nothing, say so validly.
        drop(file);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(path, spec)
            .and_then(hound::WavWriter::finalize)
            .map_err(|e| match e {
                hound::Error::IoError(e) => e,
                other => io::Error::other(other),
            })?;
        File::open(path)?.sync_all()?;
        return Ok(Audio { samples: 0, rate });
    };
    let align = u64::from(header.block_align);
    // RIFF sizes are 32-bit: a file past 4 GiB keeps what the header can describe.
    let max_data = (u64::from(u32::MAX) - (header.data_start - 8)) / align * align;
    let data_len = (len.saturating_sub(header.data_start) / align * align).min(max_data);
    let end = header.data_start + data_len;
    if end != len {
        file.set_len(end)?;
    }
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&((end - 8) as u32).to_le_bytes())?;
    file.seek(SeekFrom::Start(header.data_start - 4))?;
    file.write_all(&(data_len as u32).to_le_bytes())?;
    file.sync_all()?;
    Ok(Audio {
        samples: data_len / align,
        rate: header.rate,
    })
}

struct WavHeader {
    /// Offset of the first sample.
    data_start: u64,
    block_align: u16,
    rate: u32,
}

fn parse_wav_header(head: &[u8]) -> Option<WavHeader> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let mut pos = 12usize;
    let mut fmt = None;
    while pos + 8 <= head.len() {
        let id = &head[pos..pos + 4];
        let size = u32_at(pos + 4)? as usize;
        if id == b"fmt " {
            let rate = u32_at(pos + 12)?;
            let block_align = u16_at(pos + 20)?;
            if rate == 0 || block_align == 0 {
                return None;
            }
            fmt = Some((rate, block_align));
        } else if id == b"data" {
            let (rate, block_align) = fmt?;
            return Some(WavHeader {
                data_start: (pos + 8) as u64,
                block_align,
                rate,
            });
        }
        // Chunks are padded to an even length.
        pos = pos.checked_add(8 + size + (size & 1))?;
    }
    None
}

/// An MP3 stream is a sequence of self-delimiting frames, so a torn one is valid once the
/// torn last frame (and anything that is not a frame, such as the zeros a crash can leave)
/// is cut off.
fn repair_mp3(path: &Path, rate: u32) -> io::Result<Audio> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::new(&file);
    let mut pos = id3v2_len(&mut reader)?;
    reader.seek(SeekFrom::Start(pos))?;
    let mut audio = Audio { samples: 0, rate };
    let mut stream_rate = None;
    let mut header = [0u8; 4];
    while pos + 4 <= len {
        reader.read_exact(&mut header)?;
        let Some(frame) = FrameHeader::parse(header) else {
            break;
        };
        // A change of rate mid-stream is not something our encoder writes: garbage.
        if pos + frame.len > len || stream_rate.is_some_and(|r| r != frame.rate) {
            break;
        }
        stream_rate = Some(frame.rate);
        audio.samples += u64::from(frame.samples);
        audio.rate = frame.rate;
        pos += frame.len;
        reader.seek_relative(frame.len as i64 - 4)?;
    }
    drop(reader);
    if pos != len {
        file.set_len(pos)?;
    }
    file.sync_all()?;
    Ok(audio)
}

/// Length of a leading ID3v2 tag (0 if none); leaves the reader anywhere.
fn id3v2_len(reader: &mut impl Read) -> io::Result<u64> {
    let mut tag = [0u8; 10];
    match reader.read_exact(&mut tag) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
        Err(e) => return Err(e),
    }
    if &tag[0..3] != b"ID3" {
        return Ok(0);
    }
    let size = tag[6..10]
        .iter()
        .fold(0u64, |acc, &b| (acc << 7) | u64::from(b & 0x7f));
    let footer = if tag[5] & 0x10 != 0 { 10 } else { 0 };
    Ok(10 + size + footer)
}

/// An MPEG audio Layer III frame header (ISO/IEC 11172-3 §2.4.2.3, 13818-3, and the
/// MPEG 2.5 extension LAME writes for 8, 11.025 and 12 kHz).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub len: u64,
    pub rate: u32,
    pub samples: u32,
}

impl FrameHeader {
    pub fn parse(h: [u8; 4]) -> Option<Self> {
        if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
            return None;
        }
        let version = (h[1] >> 3) & 3; // 0: MPEG 2.5, 1: reserved, 2: MPEG 2, 3: MPEG 1
        let layer = (h[1] >> 1) & 3; // 1: Layer III
        if version == 1 || layer != 1 {
            return None;
        }
        let bitrate_index = usize::from(h[2] >> 4);
        let rate_index = usize::from((h[2] >> 2) & 3);
        let padding = u64::from((h[2] >> 1) & 1);
        // Free format (0) and the forbidden index (15) never come out of LAME in CBR.
        if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
            return None;
        }
        const MPEG1_KBPS: [u32; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const MPEG2_KBPS: [u32; 15] =
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let (kbps, rate, samples) = match version {
            3 => (
                MPEG1_KBPS[bitrate_index],
                [44_100, 48_000, 32_000][rate_index],
                1152,
            ),
            2 => (
                MPEG2_KBPS[bitrate_index],
                [22_050, 24_000, 16_000][rate_index],
                576,
            ),
            _ => (
                MPEG2_KBPS[bitrate_index],
                [11_025, 12_000, 8000][rate_index],
                576,
            ),
        };
        // Bytes per frame: samples / 8 bits * bitrate / rate, plus the padding byte.
        let len = u64::from(samples / 8) * u64::from(kbps) * 1000 / u64::from(rate) + padding;
        Some(FrameHeader { len, rate, samples })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frame_lengths_match_the_standard_formula() {
        // MPEG 1 Layer III, 128 kbps, 44.1 kHz, no padding: 417 bytes.
        assert_eq!(
            FrameHeader::parse([0xff, 0xfb, 0x90, 0x00]),
            Some(FrameHeader {
                len: 417,
                rate: 44_100,
                samples: 1152
            })
        );
        // MPEG 2.5 Layer III, 32 kbps, 8 kHz, padded: 72 * 32000 / 8000 + 1 = 289 bytes.
        assert_eq!(
            FrameHeader::parse([0xff, 0xe3, 0x4a, 0x00]),
            Some(FrameHeader {
                len: 289,
                rate: 8000,
                samples: 576
            })
        );
        // Layer II, reserved version, bad sync: not frames.
        assert_eq!(FrameHeader::parse([0xff, 0xfd, 0x90, 0x00]), None);
        assert_eq!(FrameHeader::parse([0xff, 0xeb, 0x90, 0x00]), None);
        assert_eq!(FrameHeader::parse([0x00, 0x00, 0x00, 0x00]), None);
    }

    #[test]
    fn wav_header_parser_finds_the_data_chunk_after_other_chunks() {
        let mut head = Vec::new();
        head.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        head.extend_from_slice(b"fmt \x10\0\0\0");
        head.extend_from_slice(&[1, 0, 1, 0]);
        head.extend_from_slice(&8000u32.to_le_bytes());
        head.extend_from_slice(&16000u32.to_le_bytes());
        head.extend_from_slice(&[2, 0, 16, 0]);
        head.extend_from_slice(b"LIST\x03\0\0\0abc\0");
        head.extend_from_slice(b"data\0\0\0\0");
        let header = parse_wav_header(&head).unwrap();
        assert_eq!(header.data_start, head.len() as u64);
        assert_eq!((header.rate, header.block_align), (8000, 2));
        assert!(parse_wav_header(b"RIFF\0\0\0\0WAVE").is_none());
        assert!(parse_wav_header(b"").is_none());
    }
}
