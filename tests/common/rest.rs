//! Support for the REST tests: a raw HTTP/1.1 client with both auth schemes of API.md §3,
//! the official Python SDKs driven through `tests/sdk/*_driver.py`, and a tiny HTTP server
//! that serves audio files to the engine's member play.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::json::Json;
use super::{base64, workspace_dir, LOCALHOST};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// One SDK operation; member play and speak fetch or render audio before they answer.
const SDK_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request authenticates (API.md §3).
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    None,
    /// `Authorization: Basic base64(id:token)` (Plivo style).
    Basic(&'a str, &'a str),
    /// `X-Auth-ID` and `X-Auth-Token` (Vobiz style).
    XAuth(&'a str, &'a str),
}

impl Credentials<'_> {
    fn headers(&self) -> Vec<(String, String)> {
        match *self {
            Credentials::None => Vec::new(),
            Credentials::Basic(id, token) => vec![(
                "Authorization".into(),
                format!("Basic {}", base64(format!("{id}:{token}").as_bytes())),
            )],
            Credentials::XAuth(id, token) => vec![
                ("X-Auth-ID".into(), id.into()),
                ("X-Auth-Token".into(), token.into()),
            ],
        }
    }
}

/// A complete HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as received (after de-chunking): files are binary.
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the whole response when it is not.
    pub fn json(&self) -> Json {
        Json::parse(&self.body).unwrap_or_else(|e| panic!("{e}: not JSON:\n{self}"))
    }
}

impl std::fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {v}")?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`). A JSON `body` is sent
/// with `Content-Type: application/json`.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Credentials<'_>,
    extra_headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n");
    for (n, v) in auth.headers() {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    for (n, v) in extra_headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    match body {
        Some(b) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => head.push_str("\r\n"),
    }
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad =
        |what: &str| std::io::Error::other(format!("{what} in {:?}", String::from_utf8_lossy(raw)));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).ok_or_else(|| bad("short chunk"))?);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    })
}

/// The Python of the SDK virtualenv: `$CHORUS_SDK_PYTHON`, else `target/sdk-venv/bin/python`.
/// Panics (fails the test) when it is missing: the SDK tests must never pass by not running.
pub fn sdk_python() -> PathBuf {
    let path = std::env::var_os("CHORUS_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/sdk-venv/bin/python"));
    assert!(
        path.is_file(),
        "the Python SDK environment is missing ({} does not exist): run scripts/bootstrap.sh, \
         which creates target/sdk-venv with the plivo and vobiz-python SDKs \
         (or point CHORUS_SDK_PYTHON at a python that has them)",
        path.display()
    );
    path
}

/// What one SDK operation did: see `tests/sdk/sdk_common.py`.
#[derive(Clone, Debug)]
pub struct SdkReply {
    pub ok: bool,
    /// The HTTP status the SDK received, if the request was sent.
    pub status: Option<u16>,
    /// The SDK's return value (`null` for a 204).
    pub result: Json,
    /// The exception's class name when `ok` is false.
    pub exception: Option<String>,
    pub message: String,
    pub raw: String,
}

impl SdkReply {
    /// The result of a successful operation; panics with the whole reply otherwise.
    pub fn expect_ok(self, what: &str) -> Json {
        assert!(self.ok, "{what}: the SDK raised: {}", self.raw);
        self.result
    }

    /// Panics unless the SDK raised `class`; returns the exception's message.
    pub fn expect_exception(&self, what: &str, class: &str) -> &str {
        assert!(
            !self.ok && self.exception.as_deref() == Some(class),
            "{what}: expected the SDK to raise {class}, got: {}",
            self.raw
        );
        &self.message
    }
}

/// A long-lived SDK driver process (`tests/sdk/{plivo,vobiz}_driver.py`): operations are
/// written to its stdin one JSON line each, and each is answered by one JSON line.
pub struct Sdk {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Sdk {
    /// plivo-python against the engine's `/v1` prefix (HTTP Basic).
    pub fn plivo(http: SocketAddr, auth_id: &str, token: &str) -> Sdk {
        Self::spawn("plivo", http, auth_id, token)
    }

    /// vobiz-python against the engine's `/api/v1` prefix (X-Auth headers).
    pub fn vobiz(http: SocketAddr, auth_id: &str, token: &str) -> Sdk {
        Self::spawn("vobiz", http, auth_id, token)
    }

    fn spawn(name: &'static str, http: SocketAddr, auth_id: &str, token: &str) -> Sdk {
        let python = sdk_python();
        let dir = workspace_dir().join("tests/sdk");
        let script = dir.join(format!("{name}_driver.py"));
        let mut child = Command::new(&python)
            .arg("-u")
            .arg(&script)
            .arg(format!("http://{http}"))
            .arg(auth_id)
            .arg(token)
            .current_dir(&dir)
            // Only the engine on loopback: no proxy from the environment may get in between.
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {} {}: {e}", python.display(), script.display())
            });
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr_pipe = child.stderr.take().expect("stderr was piped");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_sink = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut sink = err_sink.lock().unwrap_or_else(|e| e.into_inner());
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Sdk {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Performs one operation and returns its reply; panics on a driver failure or timeout.
    pub fn call(&mut self, op: Json) -> SdkReply {
        let line = format!("{op}\n");
        let stdin = self.stdin.as_mut().expect("driver stdin is open");
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()) {
            panic!(
                "{} driver is gone ({e}) before {op}; its stderr:\n{}",
                self.name,
                self.stderr_text()
            );
        }
        let raw = match self.lines.recv_timeout(SDK_TIMEOUT) {
            Ok(raw) => raw,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} driver did not answer {op} within {SDK_TIMEOUT:?}; its stderr:\n{}",
                self.name,
                self.stderr_text()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} driver exited before answering {op}; its stderr:\n{}",
                    self.name,
                    self.stderr_text()
                )
            }
        };
        let reply = Json::parse(&raw).unwrap_or_else(|e| {
            panic!("{} driver printed non-JSON for {op}: {e}: {raw}", self.name)
        });
        let ok = reply.get("ok").and_then(Json::as_bool).unwrap_or(false);
        let status = match reply.get("status") {
            Some(Json::Num(n)) => Some(*n as u16),
            _ => None,
        };
        let reply = SdkReply {
            ok,
            status,
            result: reply.get("result").cloned().unwrap_or(Json::Null),
            exception: reply
                .get("exception")
                .and_then(Json::as_str)
                .map(str::to_owned),
            message: reply
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            raw: format!("{op} -> {raw}"),
        };
        eprintln!("{} SDK: {}", self.name, reply.raw);
        reply
    }

    /// A plivo-python `client.conferences.<op>(*args)`.
    pub fn conferences(&mut self, op: &str, args: &[&str]) -> SdkReply {
        self.call(Json::obj([
            ("op", Json::str(op)),
            ("args", Json::strs(args)),
        ]))
    }

    /// A vobiz-python `client.request(method, path, data)`.
    pub fn request(&mut self, method: &str, path: &[&str], data: Option<Json>) -> SdkReply {
        let mut op = vec![
            ("method".to_owned(), Json::str(method)),
            ("path".to_owned(), Json::strs(path)),
        ];
        if let Some(data) = data {
            op.push(("data".to_owned(), data));
        }
        self.call(Json::Obj(op))
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        // Closing stdin ends the driver's loop; kill it anyway in case it hangs in a request.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// A 16-bit mono PCM WAV file.
pub fn wav_bytes(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
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

/// An HTTP server on 127.0.0.1 that answers every GET with one file; stopped on drop.
pub struct FileServer {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn serve(content_type: &'static str, body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind the file server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("file server address");
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        h.fetch_add(1, Ordering::Relaxed);
                        let _ = answer(stream, content_type, &body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FileServer {
            addr,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

fn answer(stream: TcpStream, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // Read the request head; the body of a GET is empty.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub mod selftest {
    use super::*;

    pub fn chunked_and_plain_responses_parse() {
        let plain = parse_response(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 22\r\n\r\n{\"message\":\"Not Found\"}",
        )
        .expect("parses");
        assert_eq!(plain.status, 404);
        assert_eq!(plain.header("Content-Type"), Some("application/json"));
        assert_eq!(plain.body, "{\"message\":\"Not Found\"}");
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(chunked.body, "{\"a\":1}");
    }

    pub fn file_server_serves_its_file() {
        let server = FileServer::serve("audio/wav", wav_bytes(8000, &[1, -1, 2]));
        let response = http_request(
            server.addr,
            "GET",
            "/tone.wav",
            Credentials::None,
            &[],
            None,
        )
        .expect("GET");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("audio/wav"));
        assert!(response.body.starts_with("RIFF"));
        assert_eq!(server.hits(), 1);
    }
}
