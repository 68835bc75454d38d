//! Support shared by the end-to-end tests: start the `chorus` binary on free ports, talk to it
//! over HTTP, SIP and RTP with a hand-written user agent, and analyse what it sends back.
//!
//! Each test binary pulls this in with `mod common;` and uses a subset, hence the allow.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod audio;
pub mod json;
pub mod media;
pub mod rest;
pub mod sdp;
pub mod sipp;
pub mod ua;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use audio::{level_db, Expectation, Tone};
pub use media::Source;
pub use ua::{Call, CallOptions, Transport, Ua};

pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The account every test engine is started with (`--account ACCOUNT:TOKEN`).
pub const ACCOUNT: &str = "MA_TEST";
pub const TOKEN: &str = "secret";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Root of the workspace (the root package owns `tests/`).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `/work/shared`, which sits beside the repository root.
pub fn shared_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"))
}

/// The engine binary: `$CHORUS_BIN`, else the release build, else the debug build.
/// Panics (fails the test) when there is none: a missing engine must never look like a pass.
pub fn chorus_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CHORUS_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CHORUS_BIN={} does not name a file",
            path.display()
        );
        return path;
    }
    let target = workspace_dir().join("target");
    for profile in ["release", "debug"] {
        let candidate = target.join(profile).join("chorus");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the chorus binary was not found (looked at $CHORUS_BIN, {0}/release/chorus, \
         {0}/debug/chorus): run `cargo build --release -p chorus` first",
        target.display()
    );
}

/// A fresh directory under the system temp dir, removed on drop unless the thread is
/// panicking (so logs and traces of a failed test stay for inspection).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("chorus-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir must be creatable");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call (SIP listens on both).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((LOCALHOST, 0)).expect("bind an ephemeral UDP port");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind((LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP after 100 tries");
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind((LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral TCP port")
        .port()
}

/// Lowest and highest port of the area handed out for RTP ranges. It stays below Linux's
/// ephemeral range (32768+) so sockets the tests bind on port 0 never land inside an engine's
/// RTP range, and above the well-known ports.
const RTP_AREA: (u32, u32) = (20_000, 32_000);

/// An even range of `count` ports (rounded up to even), unique within this process and, since
/// the starting point depends on the pid, unlikely to meet one of a concurrently running test
/// binary. Each candidate is probed by binding every port of it; busy ones are skipped.
pub fn rtp_port_range(count: u16) -> (u16, u16) {
    static CURSOR: Mutex<Option<u32>> = Mutex::new(None);
    let count = u32::from(count.div_ceil(2) * 2);
    let area = RTP_AREA.1 - RTP_AREA.0;
    let mut cursor = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    let mut offset = cursor.unwrap_or_else(|| (std::process::id() * 40 * 7) % area) & !1;
    for _ in 0..(area / 2) {
        if offset + count > area {
            offset = 0;
        }
        let start = RTP_AREA.0 + offset;
        offset += count;
        let all_free =
            (start..start + count).all(|p| UdpSocket::bind((LOCALHOST, p as u16)).is_ok());
        if all_free {
            *cursor = Some(offset);
            return (start as u16, (start + count - 1) as u16);
        }
    }
    panic!("no free RTP port range of {count} ports in {RTP_AREA:?}");
}

/// Minimal HTTP/1.1 GET over a fresh connection; returns (status, body). The engine's HTTP
/// side is tested elsewhere; here it only tells readiness and lists rooms.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    auth_basic: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let auth = auth_basic
        .map(|b| format!("Authorization: Basic {b}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line in {text:?}")))?;
    let body = match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_owned(),
        None => String::new(),
    };
    Ok((status, body))
}

/// Standard base64 (RFC 4648) for the Basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Extra configuration for [`Engine::start_with`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub rtp_ports: u16,
    pub extra_args: Vec<String>,
    /// A TOML configuration (see config/chorus.toml), written to the engine's temp dir and
    /// passed as `--config`. When set, no `--account` flag is given, so the file's
    /// `[[accounts]]` (with their `numbers`/`domains` routing patterns) are the engine's; the
    /// listen addresses and RTP ports still come from flags, which override the file.
    pub config_toml: Option<String>,
    /// `RUST_LOG` of the engine; None = the test's own `RUST_LOG`, else `info`.
    pub rust_log: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            rtp_ports: 40,
            extra_args: Vec::new(),
            config_toml: None,
            rust_log: None,
        }
    }
}

/// One `[[accounts]]` entry of a TOML configuration: `auth_id`, `auth_token` and the optional
/// routing patterns (`numbers`: regular expressions on the dialled user part, `domains`:
/// Request-URI hosts). Strings are written as TOML literal strings, so regex backslashes need
/// no escaping (they must not contain `'`).
pub fn toml_account(id: &str, token: &str, numbers: &[&str], domains: &[&str]) -> String {
    let literal = |s: &str| {
        assert!(
            !s.contains('\'') && !s.contains('\n'),
            "{s:?} cannot be a TOML literal string"
        );
        format!("'{s}'")
    };
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| literal(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut entry = format!(
        "[[accounts]]\nauth_id = {}\nauth_token = {}\n",
        literal(id),
        literal(token)
    );
    if !numbers.is_empty() {
        entry.push_str(&format!("numbers = [{}]\n", list(numbers)));
    }
    if !domains.is_empty() {
        entry.push_str(&format!("domains = [{}]\n", list(domains)));
    }
    entry
}

/// A running `chorus` process on 127.0.0.1, killed on drop. Its stderr goes to a file that is
/// printed when the owning test panics.
pub struct Engine {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub rtp_range: (u16, u16),
    log_path: PathBuf,
    exit: Option<ExitStatus>,
    dir: TempDir,
}

impl Engine {
    pub fn start(extra_args: &[&str]) -> Engine {
        Self::start_with(EngineOptions {
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ..EngineOptions::default()
        })
    }

    /// Starts the engine with [`ACCOUNT`], or, when `options.config_toml` is set, with the
    /// accounts of that configuration.
    pub fn start_with(options: EngineOptions) -> Engine {
        Self::launch(options, &[(ACCOUNT, TOKEN)])
    }

    /// Starts the engine on this TOML configuration (its `[[accounts]]`, e.g. from
    /// [`toml_account`], are the engine's accounts); see [`EngineOptions::config_toml`].
    pub fn start_with_config(toml: &str, options: EngineOptions) -> Engine {
        Self::launch(
            EngineOptions {
                config_toml: Some(toml.to_owned()),
                ..options
            },
            &[],
        )
    }

    /// Starts the engine with these API accounts instead of [`ACCOUNT`]; with the default
    /// call flow every inbound call belongs to the first one.
    pub fn start_with_accounts(accounts: &[(&str, &str)], options: EngineOptions) -> Engine {
        assert!(!accounts.is_empty(), "the engine needs an account");
        Self::launch(options, accounts)
    }

    fn launch(options: EngineOptions, accounts: &[(&str, &str)]) -> Engine {
        let bin = chorus_bin();
        let dir = TempDir::new("engine");
        let sip = SocketAddr::from((LOCALHOST, free_udp_tcp_port()));
        let http = SocketAddr::from((LOCALHOST, free_tcp_port()));
        let rtp_range = rtp_port_range(options.rtp_ports);
        let log_path = dir.path().join("chorus.stderr.log");
        let log = std::fs::File::create(&log_path).expect("create the engine log file");
        let (config_args, account_args): (Vec<String>, Vec<String>) = match &options.config_toml {
            Some(toml) => {
                let path = dir.path().join("chorus.toml");
                std::fs::write(&path, toml).expect("write the engine config file");
                (
                    vec!["--config".into(), path.display().to_string()],
                    Vec::new(),
                )
            }
            None => (
                Vec::new(),
                accounts
                    .iter()
                    .flat_map(|(id, token)| ["--account".to_string(), format!("{id}:{token}")])
                    .collect(),
            ),
        };
        // Recordings go to the engine's temp dir unless the configuration says where.
        let recordings_args: Vec<String> = match &options.config_toml {
            Some(toml) if toml.contains("[recordings]") => Vec::new(),
            _ => vec![
                "--recordings-dir".into(),
                dir.path().join("recordings").display().to_string(),
            ],
        };
        let child = Command::new(&bin)
            .args(&config_args)
            .args(&recordings_args)
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--rtp-ports")
            .arg(format!("{}-{}", rtp_range.0, rtp_range.1))
            .args(&account_args)
            .args(&options.extra_args)
            .env(
                "RUST_LOG",
                options
                    .rust_log
                    .clone()
                    .or_else(|| std::env::var("RUST_LOG").ok())
                    .unwrap_or_else(|| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut engine = Engine {
            child,
            sip,
            http,
            rtp_range,
            log_path,
            exit: None,
            dir,
        };
        engine.wait_ready(READY_TIMEOUT, &bin);
        engine
    }

    fn wait_ready(&mut self, timeout: Duration, bin: &Path) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited with {status} before becoming ready\n{}",
                    bin.display(),
                    self.logs()
                );
            }
            if self.is_ready() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready (GET {}/readyz != 200) within {timeout:?}\n{}",
                    bin.display(),
                    self.http,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        matches!(http_get(self.http, "/readyz", None), Ok((200, _)))
    }

    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.http, path, None)
    }

    /// GET on the Plivo-dialect REST root of the test account, authenticated.
    pub fn rest_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let creds = base64(format!("{ACCOUNT}:{TOKEN}").as_bytes());
        http_get(
            self.http,
            &format!("/v1/Account/{ACCOUNT}{path}"),
            Some(&creds),
        )
    }

    /// Names of the live rooms, from `GET /v1/Account/{id}/Conference/` (API.md §5.1).
    pub fn live_rooms(&self) -> Vec<String> {
        let (status, body) = self
            .rest_get("/Conference/")
            .unwrap_or_else(|e| panic!("conference list request failed: {e}\n{}", self.logs()));
        assert_eq!(status, 200, "conference list: {body}\n{}", self.logs());
        parse_json_string_array(&body, "conferences")
            .unwrap_or_else(|| panic!("no \"conferences\" array in {body}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a crash, nothing is cleaned up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    pub fn sigterm(&self) {
        // `kill(1)` rather than libc: the workspace forbids unsafe code.
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// The exit status if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("poll the engine process");
        }
        self.exit
    }

    pub fn is_alive(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the engine wrote to stderr/stdout so far, for failure messages.
    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        const MAX: usize = 60_000;
        let tail = if text.len() > MAX {
            let mut cut = text.len() - MAX;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            &text[cut..]
        } else {
            &text[..]
        };
        format!(
            "----- chorus log ({}) -----\n{tail}\n----- end of chorus log -----",
            self.log_path.display()
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The strings of the JSON array under `"key"` — enough for `{"conferences":["a","b"]}`
/// without a JSON dependency. Returns None when the key or array is missing.
pub fn parse_json_string_array(body: &str, key: &str) -> Option<Vec<String>> {
    let at = body.find(&format!("\"{key}\""))?;
    let rest = &body[at + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('[')?;
    let mut items = Vec::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            ']' => return Some(items),
            '"' => {
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => item.push(chars.next()?),
                        c => item.push(c),
                    }
                }
                items.push(item);
            }
            _ => {}
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub mod selftest {
    use super::*;

    pub fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"MA_TEST:secret"), "TUFfVEVTVDpzZWNyZXQ=");
    }

    pub fn json_string_array_is_extracted() {
        assert_eq!(
            parse_json_string_array(
                r#"{"api_id":"x","conferences":["a b","c\"d"]}"#,
                "conferences"
            ),
            Some(vec!["a b".to_string(), "c\"d".to_string()])
        );
        assert_eq!(
            parse_json_string_array(r#"{"conferences": [ ]}"#, "conferences"),
            Some(vec![])
        );
        assert_eq!(
            parse_json_string_array(r#"{"error":"x"}"#, "conferences"),
            None
        );
    }

    pub fn rtp_ranges_are_even_disjoint_and_below_the_ephemeral_ports() {
        let a = rtp_port_range(40);
        let b = rtp_port_range(40);
        let c = rtp_port_range(7);
        for (lo, hi) in [a, b, c] {
            assert_eq!(lo % 2, 0, "{lo} is even");
            assert!(u32::from(lo) >= RTP_AREA.0 && u32::from(hi) < RTP_AREA.1);
        }
        assert_eq!(a.1 - a.0 + 1, 40);
        assert_eq!(c.1 - c.0 + 1, 8, "odd counts round up to even");
        assert!(a.1 < b.0 || b.1 < a.0, "{a:?} and {b:?} overlap");
        assert!(b.1 < c.0 || c.1 < b.0, "{b:?} and {c:?} overlap");
    }
}

/// Waits `settle` (for joins and jitter buffers to fill), then `len`, and returns the
/// `[start, end)` window that tests analyse: steady state only.
pub fn steady_window(settle: Duration, len: Duration) -> (Instant, Instant) {
    std::thread::sleep(settle);
    let start = Instant::now();
    std::thread::sleep(len);
    (start, Instant::now())
}

/// Asserts that `call` received a steady 50 packets/s stream of its negotiated codec in
/// `window` and heard every frequency of `hear` clearly and none of `not_hear` (see
/// [`Expectation`]).
pub fn assert_hears(
    label: &str,
    call: &Call,
    window: (Instant, Instant),
    hear: &[f64],
    not_hear: &[f64],
) {
    let (from, to) = window;
    let expected = to.duration_since(from).as_secs_f64() * 50.0;
    let packets = call.media.packets_between(from, to);
    let codec = call.media.codec();
    let in_codec = packets
        .iter()
        .filter(|p| p.payload_type == codec.payload_type())
        .count();
    assert!(
        in_codec as f64 >= 0.8 * expected,
        "{label}: {in_codec} {} packets ({} in all) in {:?}, expected about {expected:.0}",
        codec.name(),
        packets.len(),
        to.duration_since(from)
    );
    let audio = call.media.audio_between(from, to);
    if let Err(e) = Expectation::new(hear, not_hear).check(&audio) {
        panic!("{label} (room {}): {e}", call.room);
    }
    // The measured figures, for reports (`--nocapture`).
    let levels = |fs: &[f64]| {
        fs.iter()
            .map(|&f| format!("{f} Hz {:.1} dBFS", audio::level_db(&audio, f)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "{label}: {in_codec} {} packets; hears [{}]; not [{}]",
        codec.name(),
        levels(hear),
        levels(not_hear)
    );
}
