//! An in-test HTTP "customer app": the web application an XML call flow talks to. A real
//! axum server on 127.0.0.1 (its own thread and tokio runtime, so the synchronous tests just
//! call methods) that serves the XML documents, audio files and failures a test sets up per
//! path, and records every request it gets (webhooks, `action` callbacks, file fetches).
//!
//! Also the audio fixtures such an app serves: WAV written by hand and MP3 encoded with the
//! `lame` command-line encoder, and a tiny HTTP/1.1 client to check the app itself.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::{TempDir, LOCALHOST};

/// One request the app received.
#[derive(Clone, Debug)]
pub struct AppRequest {
    pub at: Instant,
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Query parameters, then the parameters of an `application/x-www-form-urlencoded` body,
    /// percent- and `+`-decoded, in order.
    pub params: Vec<(String, String)>,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl AppRequest {
    /// The first parameter of that name (exact, case-sensitive like Plivo's).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a path answers: the n-th request gets `bodies[n]`, the last one repeating.
struct Route {
    status: u16,
    content_type: String,
    bodies: Vec<Vec<u8>>,
    served: usize,
}

#[derive(Default)]
struct AppState {
    routes: HashMap<String, Route>,
    delays: HashMap<String, Duration>,
    requests: Vec<AppRequest>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not hide the test's own failure behind a poison error.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The customer app; the server stops when it is dropped.
pub struct App {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base: String,
    pub addr: SocketAddr,
    state: Arc<Mutex<AppState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl App {
    /// Starts the server on a free port of 127.0.0.1; it serves nothing (404) until told.
    pub fn start() -> App {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind the app's HTTP port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking app listener");
        let addr = listener.local_addr().expect("the app's address");
        let state = Arc::new(Mutex::new(AppState::default()));
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-app-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the app's tokio runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("the app's listener in tokio");
                    let serve = std::future::IntoFuture::into_future(axum::serve(listener, router));
                    // Not a graceful shutdown: a delayed answer must not hold up the drop.
                    // Open connections end with the runtime.
                    tokio::select! {
                        result = serve => {
                            if let Err(e) = result {
                                eprintln!("test app on {addr} stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the app thread");
        App {
            base: format!("http://{addr}"),
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `base` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serves `xml` (`application/xml`) at `path` to every request, replacing what was served
    /// there. `{base}` in the text becomes [`App::base`], so documents can point back here.
    pub fn xml(&self, path: &str, xml: &str) {
        self.xml_sequence(path, &[xml]);
    }

    /// Serves a sequence at `path`: the n-th request from now on gets `docs[n]`, and every
    /// one after the last gets the last. `{base}` is replaced as in [`App::xml`].
    pub fn xml_sequence(&self, path: &str, docs: &[&str]) {
        assert!(!docs.is_empty(), "xml_sequence({path:?}) needs a document");
        let bodies = docs
            .iter()
            .map(|d| d.replace("{base}", &self.base).into_bytes())
            .collect();
        self.route(path, 200, "application/xml", bodies);
    }

    /// Serves `bytes` as `content_type` at `path` (audio files: `audio/wav`, `audio/mpeg`).
    pub fn file(&self, path: &str, bytes: Vec<u8>, content_type: &str) {
        self.route(path, 200, content_type, vec![bytes]);
    }

    /// Answers `path` with `status` and a short plain-text body, replacing what was served.
    pub fn status(&self, path: &str, status: u16) {
        self.respond(path, status, "text/plain", &format!("status {status}"));
    }

    /// Answers `path` with exactly this status, content type and body.
    pub fn respond(&self, path: &str, status: u16, content_type: &str, body: &str) {
        self.route(path, status, content_type, vec![body.as_bytes().to_vec()]);
    }

    /// Holds every answer to `path` (served or 404) back by `delay`, until changed; the
    /// request is recorded when it arrives. `Duration::ZERO` removes the delay.
    pub fn delay(&self, path: &str, delay: Duration) {
        let mut state = lock(&self.state);
        if delay.is_zero() {
            state.delays.remove(path);
        } else {
            state.delays.insert(path.to_owned(), delay);
        }
    }

    fn route(&self, path: &str, status: u16, content_type: &str, bodies: Vec<Vec<u8>>) {
        assert!(path.starts_with('/'), "app paths start with '/': {path:?}");
        lock(&self.state).routes.insert(
            path.to_owned(),
            Route {
                status,
                content_type: content_type.to_owned(),
                bodies,
                served: 0,
            },
        );
    }

    /// Every request received so far (unknown paths too), in order of arrival.
    pub fn requests(&self) -> Vec<AppRequest> {
        lock(&self.state).requests.clone()
    }

    /// The requests received so far for `path` (without query string), in order.
    pub fn requests_to(&self, path: &str) -> Vec<AppRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Waits until a request to `path` satisfying `pred` has arrived (earlier ones count) and
    /// returns the first such; None after `timeout`.
    pub fn wait_request(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&AppRequest) -> bool,
    ) -> Option<AppRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = lock(&self.state)
                .requests
                .iter()
                .find(|r| r.path == path && pred(r))
                .cloned();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(state): State<Arc<Mutex<AppState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let mut params = uri.query().map(parse_form).unwrap_or_default();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let body = String::from_utf8_lossy(&body).into_owned();
    if is_form {
        params.extend(parse_form(&body));
    }
    let request = AppRequest {
        at,
        method: method.to_string(),
        path: path.clone(),
        params,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let (delay, status, content_type, bytes) = {
        let mut state = lock(&state);
        state.requests.push(request);
        let delay = state.delays.get(&path).copied();
        match state.routes.get_mut(&path) {
            Some(route) => {
                let n = route.served.min(route.bodies.len() - 1);
                route.served += 1;
                (
                    delay,
                    route.status,
                    route.content_type.clone(),
                    route.bodies[n].clone(),
                )
            }
            None => (
                delay,
                404,
                "text/plain".to_owned(),
                format!("the test app serves nothing at {path}").into_bytes(),
            ),
        }
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

/// `a=1&b=x+y%21` → `[("a", "1"), ("b", "x y!")]`.
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `http://host:port/path?query` → (address, `/path?query`).
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs are supported: {url:?}"));
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let addr = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve {host:?} (of {url:?}); give host:port"));
    (addr, path)
}

/// One HTTP/1.1 request (`Connection: close`); returns (status, body as text).
pub fn http_send(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let (addr, path) = split_url(url);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = || std::io::Error::other(format!("bad response {:?}", String::from_utf8_lossy(&raw)));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad())?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// GET `url`; (status, body). Panics when the request fails.
pub fn http_get_url(url: &str) -> (u16, String) {
    http_send("GET", url, None, &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// POSTs `params` as an `application/x-www-form-urlencoded` body to `url` (which may carry
/// a query string); (status, body). Panics when the request fails.
pub fn http_post_form(url: &str, params: &[(&str, &str)]) -> (u16, String) {
    let body = params
        .iter()
        .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    http_send(
        "POST",
        url,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// A 16-bit mono PCM WAV of a sine at `freq_hz`, amplitude half of full scale (-6 dBFS peak),
/// `seconds` long at `rate` Hz.
pub fn wav_tone_bytes(freq_hz: f64, seconds: f64, rate: u32) -> Vec<u8> {
    let n = (seconds * f64::from(rate)).round() as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * freq_hz * i as f64 / f64::from(rate);
            (0.5 * 32767.0 * phase.sin()).round() as i16
        })
        .collect();
    super::rest::wav_bytes(rate, &samples)
}

/// Sample rate of [`mp3_tone_bytes`]: 44.1 kHz, MPEG-1 Layer III like most real files.
pub const MP3_RATE: u32 = 44_100;

/// An MP3 (64 kbit/s, mono, 44.1 kHz) of the tone of [`wav_tone_bytes`], encoded by `lame`.
pub fn mp3_tone_bytes(freq_hz: f64, seconds: f64) -> Vec<u8> {
    mp3_from_wav(&wav_tone_bytes(freq_hz, seconds, MP3_RATE))
}

/// Encodes a WAV file to MP3 at 64 kbit/s with the `lame` command-line encoder (Debian
/// package `lame`). Panics when `lame` is missing or fails.
pub fn mp3_from_wav(wav: &[u8]) -> Vec<u8> {
    let dir = TempDir::new("mp3");
    let (wav_path, mp3_path) = (dir.path().join("in.wav"), dir.path().join("out.mp3"));
    std::fs::write(&wav_path, wav).expect("write the WAV for lame");
    let output = match Command::new("lame")
        .arg("--quiet")
        .args(["-b", "64"])
        .arg(&wav_path)
        .arg(&mp3_path)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `lame` MP3 encoder is not installed (the tests encode MP3 fixtures with it): \
             run ./scripts/bootstrap.sh"
        ),
        Err(e) => panic!("cannot run lame: {e}"),
    };
    assert!(
        output.status.success(),
        "lame failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&mp3_path).expect("read lame's MP3")
}

pub mod selftest {
    use super::*;

    /// The app serves XML (with `{base}` filled in), sequences, files, statuses and delays,
    /// and records every request with its query and form parameters merged.
    pub fn app_serves_and_records() {
        let app = App::start();
        assert!(app.base.starts_with("http://127.0.0.1:"));
        assert_eq!(app.url("/x"), format!("{}/x", app.base));

        app.xml(
            "/answer",
            "<Response><Redirect>{base}/next</Redirect></Response>",
        );
        app.xml_sequence("/seq", &["<A/>", "<B/>"]);
        app.file("/tone.wav", wav_tone_bytes(440.0, 0.1, 8000), "audio/wav");
        app.status("/broken", 500);

        let (status, body) = http_post_form(
            &app.url("/answer?CallUUID=abc&x=1%202"),
            &[("Digits", "12#"), ("From", "+1 555"), ("x", "3")],
        );
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!(
                "<Response><Redirect>{}/next</Redirect></Response>",
                app.base
            )
        );
        let seq: Vec<String> = (0..3).map(|_| http_get_url(&app.url("/seq")).1).collect();
        assert_eq!(seq, ["<A/>", "<B/>", "<B/>"]);
        let (status, wav) = http_get_url(&app.url("/tone.wav"));
        assert_eq!(status, 200);
        assert!(wav.starts_with("RIFF") && wav[8..].starts_with("WAVEfmt "));
        assert_eq!(http_get_url(&app.url("/broken")).0, 500);
        assert_eq!(http_get_url(&app.url("/nothing")).0, 404);

        // A sequence restarts when set again; xml() replaces a status.
        app.xml_sequence("/seq", &["<C/>", "<D/>"]);
        assert_eq!(http_get_url(&app.url("/seq")).1, "<C/>");
        app.xml("/broken", "<Ok/>");
        assert_eq!(http_get_url(&app.url("/broken")), (200, "<Ok/>".to_owned()));

        let requests = app.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/answer",
                "/seq",
                "/seq",
                "/seq",
                "/tone.wav",
                "/broken",
                "/nothing",
                "/seq",
                "/broken"
            ]
        );
        assert!(requests.windows(2).all(|w| w[0].at <= w[1].at));
        let post = &requests[0];
        assert_eq!(post.method, "POST");
        assert_eq!(
            post.params,
            [
                ("CallUUID", "abc"),
                ("x", "1 2"),
                ("Digits", "12#"),
                ("From", "+1 555"),
                ("x", "3")
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(post.param("Digits"), Some("12#"));
        assert_eq!(post.param("x"), Some("1 2"), "the first of a repeated name");
        assert_eq!(post.param("digits"), None);
        assert_eq!(
            post.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(post.body, "Digits=12%23&From=%2B1%20555&x=3");
        assert_eq!(app.requests_to("/seq").len(), 4);
        assert_eq!(requests[1].method, "GET");

        // wait_request sees earlier requests and waits for later ones.
        assert!(app
            .wait_request("/answer", Duration::ZERO, |r| r.param("CallUUID")
                == Some("abc"))
            .is_some());
        assert!(app
            .wait_request("/answer", Duration::from_millis(50), |r| r
                .param("CallUUID")
                == Some("zzz"))
            .is_none());
        let later = std::thread::spawn({
            let url = app.url("/hook?Event=late");
            move || {
                std::thread::sleep(Duration::from_millis(100));
                http_post_form(&url, &[])
            }
        });
        let hook = app
            .wait_request("/hook", Duration::from_secs(5), |r| {
                r.param("Event") == Some("late")
            })
            .expect("the late request arrives");
        assert_eq!(hook.method, "POST");
        assert_eq!(later.join().expect("client thread").0, 404);

        // A delay holds the answer back, not the recording.
        app.delay("/slow", Duration::from_millis(300));
        app.xml("/slow", "<Slow/>");
        let t0 = Instant::now();
        assert_eq!(http_get_url(&app.url("/slow")).1, "<Slow/>");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        let slow = app.requests_to("/slow");
        assert!(slow[0].at.duration_since(t0) < Duration::from_millis(200));
        app.delay("/slow", Duration::ZERO);
        let t0 = Instant::now();
        http_get_url(&app.url("/slow"));
        assert!(t0.elapsed() < Duration::from_millis(200));

        app.clear_requests();
        assert!(app.requests().is_empty());

        // Dropping the app stops the server, even with a request still being delayed.
        let addr = app.addr;
        app.delay("/hang", Duration::from_secs(60));
        let hanging = std::thread::spawn({
            let url = app.url("/hang");
            move || http_send("GET", &url, None, &[])
        });
        assert!(app
            .wait_request("/hang", Duration::from_secs(5), |_| true)
            .is_some());
        let t0 = Instant::now();
        drop(app);
        assert!(t0.elapsed() < Duration::from_secs(5), "drop took too long");
        assert!(
            hanging.join().expect("client thread").is_err(),
            "the delayed request is cut off"
        );
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "nothing listens after the drop"
        );
    }

    pub fn form_coding_round_trips() {
        let text = "a b+c&d=e%f/ü";
        assert_eq!(form_decode(&form_encode(text)), text);
        assert_eq!(
            parse_form("a=1&b=x+y%21&&c&d=%zz"),
            [("a", "1"), ("b", "x y!"), ("c", ""), ("d", "%zz")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    /// The fixtures: a WAV with the right header and level, and `lame`'s MP3 of it.
    pub fn audio_fixtures_are_wav_and_mp3() {
        let wav = wav_tone_bytes(1000.0, 0.5, 8000);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            8000
        );
        assert_eq!(wav.len(), 44 + 2 * 4000);
        let samples: Vec<i16> = wav[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((16_000..=16_384).contains(&peak), "peak {peak}");
        crate::common::Expectation::new(&[1000.0], &[440.0])
            .check(&samples)
            .expect("the WAV holds the tone");

        let mp3 = mp3_tone_bytes(440.0, 1.0);
        let id3 = mp3.starts_with(b"ID3");
        let sync = mp3.len() > 2 && mp3[0] == 0xFF && mp3[1] & 0xE0 == 0xE0;
        assert!(
            id3 || sync,
            "not an MP3: starts {:02X?}",
            &mp3[..mp3.len().min(4)]
        );
        // 64 kbit/s for a second: about 8 kB.
        assert!((6_000..=12_000).contains(&mp3.len()), "{} bytes", mp3.len());
    }
}
