//! Helpers shared by the recording tests: temporary directories, tones, decoding and
//! measuring what was recorded.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chorus_media::tone::Sine;
use chorus_media::AudioTap;
use chorus_record::{Format, Metadata, Recording, RecordingSpec};

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("chorus-record-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const AMPLITUDE: f64 = 8000.0;

pub fn spec(dir: &Path, id: &str, format: Format, rate: u32) -> RecordingSpec {
    RecordingSpec {
        dir: dir.to_owned(),
        id: id.to_owned(),
        format,
        rate,
        max_duration: None,
        meta: Metadata {
            account: "MA123".into(),
            conference_name: Some("WeeklyStandup".into()),
            callback_url: Some("http://127.0.0.1:9/recorded".into()),
            callback_method: Some("POST".into()),
            ..Metadata::default()
        },
    }
}

/// A 440 Hz tone pushed as 20 ms frames, continuous across calls and rates.
pub struct Source {
    tones: Vec<(u32, Sine)>,
    frame: Vec<i16>,
}

impl Source {
    pub fn new() -> Self {
        Source {
            tones: Vec::new(),
            frame: Vec::new(),
        }
    }

    pub fn push(&mut self, tap: &mut impl AudioTap, rate: u32, frames: usize) {
        if !self.tones.iter().any(|(r, _)| *r == rate) {
            self.tones.push((rate, Sine::new(440.0, rate, AMPLITUDE)));
        }
        let tone = &mut self.tones.iter_mut().find(|(r, _)| *r == rate).unwrap().1;
        self.frame.resize(rate as usize / 50, 0);
        for _ in 0..frames {
            tone.fill(&mut self.frame);
            tap.push(rate, &self.frame);
        }
    }
}

pub fn push_silence(tap: &mut impl AudioTap, rate: u32, frames: usize) {
    let frame = vec![0i16; rate as usize / 50];
    for _ in 0..frames {
        tap.push(rate, &frame);
    }
}

/// Waits until the writer has written `at_least` of audio.
pub fn wait_written(recording: &Recording, at_least: Duration) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while recording.written() < at_least {
        assert!(
            Instant::now() < deadline,
            "writer stuck at {:?}",
            recording.written()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a WAV back with hound: (rate, samples).
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    let samples = reader.samples::<i16>().map(Result::unwrap).collect();
    (spec.sample_rate, samples)
}

/// Decodes an MP3 with symphonia, as a player would: (rate, samples).
pub fn decode_mp3(path: &Path) -> (u32, Vec<i16>) {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::DecoderOptions;
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let file = std::fs::File::open(path).unwrap();
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .unwrap();
    let mut format = probed.format;
    let track = format.default_track().unwrap().clone();
    let rate = track.codec_params.sample_rate.unwrap();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .unwrap();
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        let decoded = decoder.decode(&packet).unwrap();
        assert_eq!(decoded.spec().channels.count(), 1);
        let mut buf = SampleBuffer::<i16>::new(decoded.capacity() as u64, *decoded.spec());
        buf.copy_interleaved_ref(decoded);
        samples.extend_from_slice(buf.samples());
    }
    (rate, samples)
}

pub fn read_audio(path: &Path, format: Format) -> (u32, Vec<i16>) {
    match format {
        Format::Wav => read_wav(path),
        Format::Mp3 => decode_mp3(path),
    }
}

pub fn duration_ms(rate: u32, samples: &[i16]) -> i64 {
    (samples.len() as u64 * 1000 / u64::from(rate)) as i64
}

/// Amplitude of `freq` in `x` (Goertzel).
pub fn amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2).sqrt() / x.len() as f64
}

pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The 440 Hz tone is there at about its level and is most of the signal.
pub fn assert_tone(samples: &[i16], rate: u32, what: &str) {
    assert!(samples.len() > rate as usize / 5, "{what}: too short");
    let a = amplitude(samples, rate, 440.0);
    let level_db = 20.0 * (a / AMPLITUDE).log10();
    assert!(level_db.abs() < 1.5, "{what}: 440 Hz at {level_db:.2} dB");
    let share = (a / std::f64::consts::SQRT_2 / rms(samples)).powi(2);
    assert!(share > 0.9, "{what}: the tone is {share:.3} of the power");
}

/// The middle of a recording, clear of start-up and end effects (resampler and encoder
/// delays, the fade of the last frame).
pub fn middle(samples: &[i16], rate: u32) -> &[i16] {
    let margin = rate as usize / 5;
    &samples[margin.min(samples.len())..samples.len().saturating_sub(margin)]
}

pub fn sidecar_json(dir: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json"))).unwrap()).unwrap()
}
