//! Recording end to end: a real room of SIP callers sending known tones, recorded by REST and
//! by XML, the files downloaded over the REST API (with its auth and Range support) and
//! decoded by an independent decoder (symphonia); a SIGKILL mid-recording; and account
//! isolation.

mod common;

use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

use common::app::App;
use common::audio::level_db;
use common::rest::{http_request, Credentials, HttpResponse};
use common::{toml_account, wait_until, Call, Engine, EngineOptions, Source, TempDir};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

const A: &str = "MARECA0000000000000A";
const A_TOKEN: &str = "token-a";
const B: &str = "MARECB0000000000000B";
const B_TOKEN: &str = "token-b";
const WAIT: Duration = Duration::from_secs(10);

fn engine(recordings: &Path, answer_url: Option<&str>) -> Engine {
    let mut toml = format!("[recordings]\ndir = '{}'\n", recordings.display());
    if let Some(url) = answer_url {
        toml.push_str(&format!("[calls]\nanswer_url = '{url}'\n"));
    }
    toml.push_str(&toml_account(A, A_TOKEN, &[], &[]));
    toml.push_str(&toml_account(B, B_TOKEN, &["^b-"], &[]));
    Engine::start_with_config(&toml, EngineOptions::default())
}

fn rest(
    engine: &Engine,
    method: &str,
    path: &str,
    who: (&str, &str),
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    http_request(
        engine.http,
        method,
        path,
        Credentials::Basic(who.0, who.1),
        headers,
        body,
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Decodes a WAV or MP3 file: (sample rate, mono samples).
fn decode(bytes: &[u8]) -> (u32, Vec<i16>) {
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .expect("a WAV or MP3 file");
    let mut format = probed.format;
    let track = format.default_track().expect("an audio track").clone();
    let rate = track.codec_params.sample_rate.expect("a sample rate");
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &Default::default())
        .expect("a decoder");
    let mut samples = Vec::new();
    while let Ok(packet) = format.next_packet() {
        let Ok(decoded) = decoder.decode(&packet) else {
            continue;
        };
        let spec = *decoded.spec();
        let mut buffer = SampleBuffer::<i16>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        let channels = spec.channels.count().max(1);
        samples.extend(buffer.samples().iter().step_by(channels));
    }
    (rate, samples)
}

/// Levels in dBFS of `freqs` in the middle of the recording (the first and last half second
/// are joins and leaves).
fn levels(rate: u32, samples: &[i16], freqs: &[f64]) -> Vec<f64> {
    let skip = rate as usize / 2;
    let middle = &samples[skip.min(samples.len())..samples.len().saturating_sub(skip)];
    // The test audio helpers analyse 8 kHz audio: take every n-th sample of a 48 kHz file.
    let step = (rate / 8000).max(1) as usize;
    let at8k: Vec<i16> = middle.iter().step_by(step).copied().collect();
    freqs.iter().map(|&f| level_db(&at8k, f)).collect()
}

fn three_members(engine: &Engine, room: &str) -> Vec<Call> {
    let calls = vec![
        Call::dial(engine.sip, room, Source::tone(440.0)),
        Call::dial(engine.sip, room, Source::tone(1000.0)),
        Call::dial(engine.sip, room, Source::Silence),
    ];
    std::thread::sleep(Duration::from_millis(500));
    calls
}

/// REST start → `seconds` → REST stop; returns the callback and the downloaded file.
fn record_by_rest(format: &str, seconds: f64) -> (common::app::AppRequest, Vec<u8>, Duration) {
    let dir = TempDir::new("recordings");
    let app = App::start();
    app.respond("/recorded", 200, "text/plain", "ok");
    let engine = engine(dir.path(), None);
    let _calls = three_members(&engine, "rec");
    let body = format!(
        "{{\"file_format\":\"{format}\",\"callback_url\":\"{}\"}}",
        app.url("/recorded")
    );
    let started = Instant::now();
    let reply = rest(
        &engine,
        "POST",
        &format!("/v1/Account/{A}/Conference/rec/Record/"),
        (A, A_TOKEN),
        Some(&body),
        &[],
    );
    assert_eq!(reply.status, 202, "{reply}");
    let json = reply.json();
    let url = json
        .get("url")
        .and_then(|u| u.as_str())
        .expect("url")
        .to_owned();
    let id = json
        .get("recording_id")
        .and_then(|u| u.as_str())
        .expect("recording_id")
        .to_owned();
    assert!(
        url.ends_with(&format!("/v1/Account/{A}/Recording/{id}.{format}")),
        "{url}"
    );
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let reply = rest(
        &engine,
        "DELETE",
        &format!("/v1/Account/{A}/Conference/rec/Record/"),
        (A, A_TOKEN),
        None,
        &[],
    );
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 204, "{reply}");
    let callback = app
        .wait_request("/recorded", WAIT, |_| true)
        .expect("the recording callback");
    assert_eq!(callback.param("recording_id"), Some(id.as_str()));
    assert_eq!(callback.param("record_url"), Some(url.as_str()));
    assert_eq!(callback.param("conference_name"), Some("rec"));
    assert_eq!(callback.param("RecordingStatus"), Some("completed"));
    let path = url
        .split_once(&engine.http.to_string())
        .expect("our URL")
        .1
        .to_owned();
    let file = rest(&engine, "GET", &path, (A, A_TOKEN), None, &[]);
    assert_eq!(file.status, 200, "download: {}", file.status);
    // Range requests: the first 100 bytes.
    let part = rest(
        &engine,
        "GET",
        &path,
        (A, A_TOKEN),
        None,
        &[("Range", "bytes=0-99")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes, file.bytes[..100]);
    (callback, file.bytes, elapsed)
}

fn check_recording(
    format: &str,
    callback: &common::app::AppRequest,
    bytes: &[u8],
    elapsed: Duration,
) {
    let (rate, samples) = decode(bytes);
    let duration_ms = samples.len() as f64 * 1000.0 / f64::from(rate);
    let reported: f64 = callback
        .param("recording_duration_ms")
        .and_then(|d| d.parse().ok())
        .expect("recording_duration_ms");
    let lv = levels(rate, &samples, &[440.0, 1000.0]);
    eprintln!(
        "{format}: {rate} Hz, decoded {duration_ms:.0} ms, reported {reported} ms, REST start→stop {:?}; 440 Hz {:.1} dBFS, 1000 Hz {:.1} dBFS",
        elapsed, lv[0], lv[1]
    );
    assert!(
        (duration_ms - reported).abs() <= 100.0,
        "decoded {duration_ms:.0} ms vs reported {reported} ms"
    );
    assert!(
        (duration_ms - elapsed.as_millis() as f64).abs() <= 100.0 + 30.0,
        "{duration_ms:.0} ms recorded for {elapsed:?} between the REST start and stop"
    );
    assert!(
        lv[0] > -30.0 && lv[1] > -30.0,
        "both tones in the file: {lv:?}"
    );
}

#[test]
fn rest_recording_of_a_three_member_room_in_wav() {
    let (callback, bytes, elapsed) = record_by_rest("wav", 3.0);
    assert_eq!(&bytes[..4], b"RIFF");
    check_recording("wav", &callback, &bytes, elapsed);
}

#[test]
fn rest_recording_of_a_three_member_room_in_mp3() {
    let (callback, bytes, elapsed) = record_by_rest("mp3", 3.0);
    check_recording("mp3", &callback, &bytes, elapsed);
}

#[test]
fn a_recording_survives_sigkill_and_its_callback_says_recovered() {
    let dir = TempDir::new("recordings");
    let app = App::start();
    app.respond("/recorded", 200, "text/plain", "ok");
    let mut first = engine(dir.path(), None);
    let calls = three_members(&first, "crash");
    let body = format!(
        "{{\"file_format\":\"wav\",\"callback_url\":\"{}\"}}",
        app.url("/recorded")
    );
    let reply = rest(
        &first,
        "POST",
        &format!("/v1/Account/{A}/Conference/crash/Record/"),
        (A, A_TOKEN),
        Some(&body),
        &[],
    );
    assert_eq!(reply.status, 202, "{reply}");
    let id = reply
        .json()
        .get("recording_id")
        .and_then(|u| u.as_str())
        .expect("recording_id")
        .to_owned();
    std::thread::sleep(Duration::from_millis(3000));
    first.kill();
    drop(calls);
    assert!(
        app.requests_to("/recorded").is_empty(),
        "no callback before the restart"
    );

    let second = engine(dir.path(), None);
    let callback = app
        .wait_request("/recorded", WAIT, |_| true)
        .expect("the recovered recording's callback");
    assert_eq!(callback.param("recording_id"), Some(id.as_str()));
    assert_eq!(callback.param("Recovered"), Some("true"));
    let file = rest(
        &second,
        "GET",
        &format!("/v1/Account/{A}/Recording/{id}.wav"),
        (A, A_TOKEN),
        None,
        &[],
    );
    assert_eq!(file.status, 200);
    let (rate, samples) = decode(&file.bytes);
    let seconds = samples.len() as f64 / f64::from(rate);
    eprintln!("recovered {seconds:.2} s of the 3 s recorded before SIGKILL");
    assert!((1.9..=3.2).contains(&seconds), "{seconds:.2} s recovered");
    let lv = levels(rate, &samples, &[440.0, 1000.0]);
    assert!(
        lv[0] > -30.0 && lv[1] > -30.0,
        "tones in the recovered file: {lv:?}"
    );
}

#[test]
fn one_account_cannot_read_or_delete_another_accounts_recordings() {
    let dir = TempDir::new("recordings");
    let engine = engine(dir.path(), None);
    let _calls = three_members(&engine, "secret");
    let reply = rest(
        &engine,
        "POST",
        &format!("/v1/Account/{A}/Conference/secret/Record/"),
        (A, A_TOKEN),
        Some("{\"file_format\":\"wav\"}"),
        &[],
    );
    assert_eq!(reply.status, 202, "{reply}");
    let id = reply
        .json()
        .get("recording_id")
        .and_then(|u| u.as_str())
        .expect("recording_id")
        .to_owned();
    std::thread::sleep(Duration::from_millis(1000));
    let stop = rest(
        &engine,
        "DELETE",
        &format!("/v1/Account/{A}/Conference/secret/Record/"),
        (A, A_TOKEN),
        None,
        &[],
    );
    assert_eq!(stop.status, 204);
    assert!(wait_until(WAIT, || {
        rest(
            &engine,
            "GET",
            &format!("/v1/Account/{A}/Recording/{id}/"),
            (A, A_TOKEN),
            None,
            &[],
        )
        .json()
        .get("status")
        .and_then(|s| s.as_str())
            == Some("completed")
    }));
    // B under its own prefix: not found, whatever the route.
    for (method, path) in [
        ("GET", format!("/v1/Account/{B}/Recording/{id}/")),
        ("GET", format!("/v1/Account/{B}/Recording/{id}.wav")),
        ("DELETE", format!("/v1/Account/{B}/Recording/{id}/")),
        ("GET", format!("/api/v1/Account/{B}/Recording/{id}.wav")),
    ] {
        let reply = rest(&engine, method, &path, (B, B_TOKEN), None, &[]);
        assert_eq!(reply.status, 404, "{method} {path}: {reply}");
    }
    let list = rest(
        &engine,
        "GET",
        &format!("/v1/Account/{B}/Recording/"),
        (B, B_TOKEN),
        None,
        &[],
    );
    assert!(
        !list.body.contains(&id),
        "B's list shows A's recording: {list}"
    );
    // B's credentials on A's paths: refused.
    let reply = rest(
        &engine,
        "GET",
        &format!("/v1/Account/{A}/Recording/{id}.wav"),
        (B, B_TOKEN),
        None,
        &[],
    );
    assert_eq!(reply.status, 401);
    // A still has it, and can delete it.
    let list = rest(
        &engine,
        "GET",
        &format!("/v1/Account/{A}/Recording/"),
        (A, A_TOKEN),
        None,
        &[],
    );
    assert!(list.body.contains(&id), "{list}");
    let del = rest(
        &engine,
        "DELETE",
        &format!("/v1/Account/{A}/Recording/{id}/"),
        (A, A_TOKEN),
        None,
        &[],
    );
    assert_eq!(del.status, 204, "{del}");
    let gone = rest(
        &engine,
        "GET",
        &format!("/v1/Account/{A}/Recording/{id}.wav"),
        (A, A_TOKEN),
        None,
        &[],
    );
    assert_eq!(gone.status, 404);
}

#[test]
fn conference_record_attribute_records_the_room_until_it_ends() {
    let dir = TempDir::new("recordings");
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Conference record=\"true\" recordFileFormat=\"wav\" callbackUrl=\"{base}/cb\">xmlrec</Conference></Response>",
    );
    app.respond("/cb", 200, "text/plain", "ok");
    let engine = engine(dir.path(), Some(&app.url("/answer")));
    let mut calls = three_members(&engine, "xmlrec");
    std::thread::sleep(Duration::from_secs(2));
    for call in &mut calls {
        call.hangup().expect("BYE");
    }
    let record = app
        .wait_request("/cb", WAIT, |r| {
            r.param("ConferenceAction") == Some("record")
        })
        .expect("the record callback when the room ends");
    assert_eq!(record.param("Event"), Some("ConferenceRecord"));
    assert_eq!(record.param("ConferenceName"), Some("xmlrec"));
    let url = record.param("RecordUrl").expect("RecordUrl").to_owned();
    let path = url
        .split_once(&engine.http.to_string())
        .expect("our URL")
        .1
        .to_owned();
    let file = rest(&engine, "GET", &path, (A, A_TOKEN), None, &[]);
    assert_eq!(file.status, 200);
    let (rate, samples) = decode(&file.bytes);
    let seconds = samples.len() as f64 / f64::from(rate);
    assert!(seconds > 2.0, "{seconds:.2} s");
    let lv = levels(rate, &samples, &[440.0, 1000.0]);
    assert!(lv[0] > -30.0 && lv[1] > -30.0, "{lv:?}");
}

#[test]
fn record_element_records_the_caller_and_posts_to_its_action() {
    let dir = TempDir::new("recordings");
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Record action=\"{base}/done\" maxLength=\"2\" playBeep=\"false\" fileFormat=\"wav\"/></Response>",
    );
    app.xml("/done", "<Response><Hangup/></Response>");
    let engine = engine(dir.path(), Some(&app.url("/answer")));
    let call = Call::dial(engine.sip, "rec", Source::tone(440.0));
    let done = app
        .wait_request("/done", WAIT, |_| true)
        .expect("the action");
    let ms: u64 = done
        .param("RecordingDurationMs")
        .and_then(|d| d.parse().ok())
        .expect("RecordingDurationMs");
    assert!((1900..=2100).contains(&ms), "{ms} ms for maxLength=2");
    assert_eq!(done.param("RecordingDuration"), Some("2"));
    let url = done.param("RecordUrl").expect("RecordUrl").to_owned();
    let path = url
        .split_once(&engine.http.to_string())
        .expect("our URL")
        .1
        .to_owned();
    let file = rest(&engine, "GET", &path, (A, A_TOKEN), None, &[]);
    assert_eq!(file.status, 200);
    let (rate, samples) = decode(&file.bytes);
    let lv = levels(rate, &samples, &[440.0]);
    assert!(lv[0] > -30.0, "the caller's tone is in the file: {lv:?}");
    assert!(wait_until(WAIT, || call.bye_received().is_some()));
}
