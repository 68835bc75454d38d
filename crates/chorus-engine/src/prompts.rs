//! Audio for member-targeted playback: WAV and MP3 fetched over HTTP(S) and decoded, and text
//! rendered by a real TTS engine (espeak-ng), both converted to mono at the rate a member's
//! codec runs at and cached. None of this runs on a media thread: the result is handed to the
//! mixer as a ready [`chorus_mixer::Playback`].

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use thiserror::Error;

/// Longest media file fetched (bytes) and longest clip kept (seconds): a prompt, not an album.
const MAX_FETCH_BYTES: usize = 32 * 1024 * 1024;
const MAX_CLIP_SECONDS: usize = 600;
/// Total samples the cache keeps before evicting the oldest clips.
const CACHE_SAMPLES: usize = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum PromptError {
    #[error("only http and https media URLs are supported: {0}")]
    Scheme(String),
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} is larger than {MAX_FETCH_BYTES} bytes")]
    TooLarge { url: String },
    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },
    #[error("text to speech failed: {0}")]
    Tts(String),
    #[error("resampling failed: {0}")]
    Resample(String),
}

/// Decoded mono audio.
#[derive(Debug)]
pub struct Clip {
    pub rate: u32,
    pub samples: Vec<i16>,
}

#[derive(Default)]
struct Cache {
    clips: HashMap<String, Arc<Clip>>,
    order: VecDeque<String>,
    samples: usize,
}

impl Cache {
    fn get(&self, key: &str) -> Option<Arc<Clip>> {
        self.clips.get(key).cloned()
    }

    fn put(&mut self, key: String, clip: Arc<Clip>) {
        self.samples += clip.samples.len();
        if self.clips.insert(key.clone(), clip).is_none() {
            self.order.push_back(key);
        }
        while self.samples > CACHE_SAMPLES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.clips.remove(&old) {
                self.samples -= c.samples.len();
            }
        }
    }
}

/// Fetches, renders, converts and caches prompt audio.
pub struct Prompts {
    http: reqwest::Client,
    cache: Mutex<Cache>,
    espeak: String,
}

impl Prompts {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .user_agent(concat!("Chorus/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            cache: Mutex::new(Cache::default()),
            espeak: std::env::var("CHORUS_ESPEAK").unwrap_or_else(|_| "espeak-ng".into()),
        }
    }

    fn cached(&self, key: &str) -> Option<Arc<Clip>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
    }

    fn store(&self, key: String, clip: Arc<Clip>) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, clip);
    }

    /// A WAV or MP3 URL as mono audio at `rate`.
    pub async fn url(&self, url: &str, rate: u32) -> Result<Arc<Clip>, PromptError> {
        let key = format!("url\u{0}{rate}\u{0}{url}");
        if let Some(clip) = self.cached(&key) {
            return Ok(clip);
        }
        let source_key = format!("url\u{0}{url}");
        let source = match self.cached(&source_key) {
            Some(c) => c,
            None => {
                let bytes = self.fetch(url).await?;
                let what = url.to_owned();
                let clip = tokio::task::spawn_blocking(move || decode(&bytes, &what))
                    .await
                    .map_err(|e| PromptError::Decode {
                        what: url.to_owned(),
                        reason: e.to_string(),
                    })??;
                let clip = Arc::new(clip);
                self.store(source_key, clip.clone());
                clip
            }
        };
        let clip = convert(source, rate).await?;
        self.store(key, clip.clone());
        Ok(clip)
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, PromptError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| PromptError::Scheme(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PromptError::Scheme(url.to_owned()));
        }
        let fail = |reason: String| PromptError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_FETCH_BYTES {
                return Err(PromptError::TooLarge {
                    url: url.to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Text rendered by espeak-ng (which always writes 22,050 Hz) as mono audio at `rate`.
    /// `voice` is `WOMAN` or `MAN`; `language` a tag such as `en-US`.
    pub async fn speech(
        &self,
        text: &str,
        woman: bool,
        language: &str,
        rate: u32,
    ) -> Result<Arc<Clip>, PromptError> {
        let espeak_voice = format!(
            "{}+{}",
            language.to_ascii_lowercase(),
            if woman { "f3" } else { "m3" }
        );
        let key = format!("tts\u{0}{rate}\u{0}{espeak_voice}\u{0}{text}");
        if let Some(clip) = self.cached(&key) {
            return Ok(clip);
        }
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(&self.espeak)
                .arg("-v")
                .arg(&espeak_voice)
                .arg("--stdout")
                // The text goes after `--` so it can never be taken for an option.
                .arg("--")
                .arg(text)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| PromptError::Tts("espeak-ng took longer than 30 s".into()))?
        .map_err(|e| PromptError::Tts(format!("cannot run {}: {e}", self.espeak)))?;
        if !output.status.success() || output.stdout.is_empty() {
            return Err(PromptError::Tts(format!(
                "espeak-ng failed for voice {espeak_voice}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let wav = output.stdout;
        let clip = tokio::task::spawn_blocking(move || decode(&wav, "speech"))
            .await
            .map_err(|e| PromptError::Tts(e.to_string()))??;
        let clip = convert(Arc::new(clip), rate).await?;
        self.store(key, clip.clone());
        Ok(clip)
    }
}

impl Default for Prompts {
    fn default() -> Self {
        Self::new()
    }
}

async fn convert(source: Arc<Clip>, rate: u32) -> Result<Arc<Clip>, PromptError> {
    if source.rate == rate {
        return Ok(source);
    }
    tokio::task::spawn_blocking(move || {
        chorus_media::resample::convert(&source.samples, source.rate, rate)
            .map(|samples| Arc::new(Clip { rate, samples }))
            .map_err(|e| PromptError::Resample(e.to_string()))
    })
    .await
    .map_err(|e| PromptError::Resample(e.to_string()))?
}

/// Decodes a WAV or MP3 file (symphonia probes which) to mono, averaging channels.
pub fn decode(bytes: &[u8], what: &str) -> Result<Clip, PromptError> {
    let fail = |reason: String| PromptError::Decode {
        what: what.to_owned(),
        reason,
    };
    // espeak-ng --stdout writes a WAV whose size fields say "unknown" (0x7fffffff): fix them so
    // the parser reads to the end of what is there.
    let mut data = bytes.to_vec();
    if data.len() >= 44 && &data[0..4] == b"RIFF" && &data[8..12] == b"WAVE" {
        let riff = (data.len() - 8) as u32;
        data[4..8].copy_from_slice(&riff.to_le_bytes());
        if let Some(pos) = data.windows(4).position(|w| w == b"data") {
            if pos + 8 <= data.len() {
                let len = (data.len() - pos - 8) as u32;
                data[pos + 4..pos + 8].copy_from_slice(&len.to_le_bytes());
            }
        }
    }
    let stream = MediaSourceStream::new(Box::new(Cursor::new(data)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| fail(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| fail("no audio track".into()))?;
    let track_id = track.id;
    let rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| fail("unknown sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| fail(e.to_string()))?;
    let mut samples = Vec::new();
    let limit = MAX_CLIP_SECONDS * rate as usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(fail(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged frame in an MP3 is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let mut buffer = SampleBuffer::<i16>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        for frame in buffer.samples().chunks(channels) {
            let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
            samples.push((sum / channels as i32) as i16);
        }
        if samples.len() > limit {
            samples.truncate(limit);
            break;
        }
    }
    if samples.is_empty() {
        return Err(fail("no audio in the file".into()));
    }
    Ok(Clip { rate, samples })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        let data_len = (samples.len() * 2) as u32;
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    #[test]
    fn wav_decodes_to_its_samples() {
        let samples: Vec<i16> = (0..1600).map(|i| (i * 7 % 3000) as i16).collect();
        let clip = decode(&wav(16_000, &samples), "test").unwrap();
        assert_eq!(clip.rate, 16_000);
        assert_eq!(clip.samples, samples);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(decode(b"not audio at all", "garbage").is_err());
        assert!(decode(&[], "empty").is_err());
        let mut truncated = wav(8000, &[1, 2, 3, 4]);
        truncated.truncate(30);
        assert!(decode(&truncated, "truncated").is_err());
    }

    #[tokio::test]
    async fn non_http_urls_are_refused() {
        let prompts = Prompts::new();
        assert!(matches!(
            prompts.url("file:///etc/passwd", 8000).await,
            Err(PromptError::Scheme(_))
        ));
    }

    #[tokio::test]
    async fn espeak_renders_audible_speech_at_the_asked_rate() {
        let prompts = Prompts::new();
        let clip = prompts
            .speech("Hello from Chorus", true, "en-US", 8000)
            .await
            .unwrap();
        assert_eq!(clip.rate, 8000);
        assert!(clip.samples.len() > 4000, "{} samples", clip.samples.len());
        let energy: f64 = clip
            .samples
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / clip.samples.len() as f64;
        assert!(
            energy.sqrt() > 300.0,
            "speech is audible: rms {}",
            energy.sqrt()
        );
        // Cached: the second call returns the same clip.
        let again = prompts
            .speech("Hello from Chorus", true, "en-US", 8000)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&clip, &again));
    }
}
