//! A small, real SIP user agent for the tests, on raw sockets: requests are formatted by hand
//! (so the tests control every byte), messages from the engine are parsed with rsip.
//!
//! One `Ua` is one SIP socket (UDP) or connection (TCP). A background reader thread hands
//! responses to whoever runs the current client transaction and answers requests from the
//! engine by itself (BYE → 200, recorded), so an engine-initiated hangup is seen even while
//! the test thread sleeps.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::media::{Codec, Media, Source};
use super::sdp::{self, AudioSdp, Direction};
use super::LOCALHOST;

/// RFC 3261 §17.1.1.1 timer values.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long a test waits for a final response; far below Timer B (32 s) so a dead engine
/// fails the test quickly.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// A request the engine sent us.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub at: Instant,
    pub method: String,
    pub call_id: String,
    pub from: SocketAddr,
    pub text: String,
}

/// A response the engine sent us (provisional, final and retransmissions alike).
#[derive(Clone, Debug)]
pub struct ReceivedResponse {
    pub at: Instant,
    pub status: u16,
    /// The method of its CSeq (`INVITE`, `BYE` …).
    pub cseq_method: String,
    pub call_id: String,
    /// The body is SDP (`Content-Type: application/sdp`, non-empty).
    pub has_sdp: bool,
    pub response: rsip::Response,
}

enum Conn {
    Udp {
        socket: UdpSocket,
        server: SocketAddr,
    },
    Tcp {
        stream: Mutex<TcpStream>,
    },
}

impl Conn {
    fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp { socket, server } => socket.send_to(bytes, server).map(|_| ()),
            Conn::Tcp { stream } => lock(stream).write_all(bytes),
        }
    }

    fn send_to(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
        match self {
            Conn::Udp { socket, .. } => socket.send_to(bytes, to).map(|_| ()),
            Conn::Tcp { .. } => self.send(bytes),
        }
    }
}

struct Shared {
    stop: AtomicBool,
    requests: Mutex<Vec<ReceivedRequest>>,
    /// Messages from the engine that rsip could not parse (the engine must not send any).
    unparseable: Mutex<Vec<String>>,
    /// ACKs already sent, by Call-ID, resent if the engine retransmits its 2xx (RFC 3261
    /// §13.2.2.4).
    acks: Mutex<HashMap<String, Vec<u8>>>,
    /// Every response received, in order of arrival.
    response_log: Mutex<Vec<ReceivedResponse>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Ua {
    pub transport: Transport,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub user: String,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    responses: Receiver<rsip::Response>,
    reader: Option<JoinHandle<()>>,
}

impl Ua {
    pub fn new(server: SocketAddr, transport: Transport) -> anyhow::Result<Ua> {
        static USERS: AtomicU32 = AtomicU32::new(0);
        let user = format!("tester{}", USERS.fetch_add(1, Ordering::Relaxed));
        let (tx, responses) = mpsc::channel();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            unparseable: Mutex::new(Vec::new()),
            acks: Mutex::new(HashMap::new()),
            response_log: Mutex::new(Vec::new()),
        });
        let (conn, local, reader) = match transport {
            Transport::Udp => {
                let socket = UdpSocket::bind((LOCALHOST, 0))?;
                socket.set_read_timeout(Some(Duration::from_millis(20)))?;
                let local = socket.local_addr()?;
                let rx = socket.try_clone()?;
                let conn = Arc::new(Conn::Udp { socket, server });
                let (c, s) = (Arc::clone(&conn), Arc::clone(&shared));
                let reader = std::thread::Builder::new()
                    .name(format!("sip-udp-{}", local.port()))
                    .spawn(move || udp_reader(rx, c, s, tx))?;
                (conn, local, reader)
            }
            Transport::Tcp => {
                let stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))
                    .with_context(|| format!("TCP connect to {server}"))?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_millis(20)))?;
                let local = stream.local_addr()?;
                let rx = stream.try_clone()?;
                let conn = Arc::new(Conn::Tcp {
                    stream: Mutex::new(stream),
                });
                let (c, s) = (Arc::clone(&conn), Arc::clone(&shared));
                let reader = std::thread::Builder::new()
                    .name(format!("sip-tcp-{}", local.port()))
                    .spawn(move || tcp_reader(rx, server, c, s, tx))?;
                (conn, local, reader)
            }
        };
        Ok(Ua {
            transport,
            local,
            server,
            user,
            conn,
            shared,
            responses,
            reader: Some(reader),
        })
    }

    pub fn send_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.send(bytes)
    }

    /// Requests the engine has sent to this UA so far.
    pub fn requests_received(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Responses the engine has sent to this UA so far, provisional ones included (the
    /// client transactions only hand out the final ones), in order of arrival.
    pub fn responses_received(&self) -> Vec<ReceivedResponse> {
        lock(&self.shared.response_log).clone()
    }

    pub fn unparseable_messages(&self) -> Vec<String> {
        lock(&self.shared.unparseable).clone()
    }

    pub fn new_branch() -> String {
        format!("z9hG4bK{:016x}", rand::random::<u64>())
    }

    pub fn new_tag() -> String {
        format!("{:08x}", rand::random::<u32>())
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.transport.via_name(),
            self.local
        )
    }

    pub fn contact(&self) -> String {
        match self.transport {
            Transport::Udp => format!("<sip:{}@{}>", self.user, self.local),
            Transport::Tcp => format!("<sip:{}@{};transport=tcp>", self.user, self.local),
        }
    }

    /// Formats a request with the mandatory headers of RFC 3261 §8.1.1.
    #[allow(clippy::too_many_arguments)]
    pub fn format_request(
        &self,
        method: &str,
        request_uri: &str,
        branch: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        extra_headers: &[String],
        body: Option<(&str, &str)>,
    ) -> String {
        let mut msg = format!(
            "{method} {request_uri} SIP/2.0\r\n\
             Via: {via}\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: {contact}\r\n\
             User-Agent: chorus-tests\r\n",
            via = self.via(branch),
            contact = self.contact(),
        );
        for h in extra_headers {
            msg.push_str(h);
            msg.push_str("\r\n");
        }
        match body {
            Some((content_type, body)) => {
                msg.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ));
            }
            None => msg.push_str("Content-Length: 0\r\n\r\n"),
        }
        msg
    }

    /// Runs a client transaction: sends `request`, retransmits it over UDP (T1 doubling; for
    /// INVITE until a provisional response, RFC 3261 §17.1.1.2; otherwise capped at T2,
    /// §17.1.2.2) and returns the final response whose top Via carries `branch`.
    pub fn transact(
        &self,
        request: &str,
        branch: &str,
        timeout: Duration,
    ) -> anyhow::Result<rsip::Response> {
        self.transact_with(request, branch, timeout, &mut |_| {})
    }

    /// [`Ua::transact`], handing every provisional response of the transaction to
    /// `on_provisional` as it arrives (e.g. to start early media on a 183 with SDP).
    pub fn transact_with(
        &self,
        request: &str,
        branch: &str,
        timeout: Duration,
        on_provisional: &mut dyn FnMut(&rsip::Response),
    ) -> anyhow::Result<rsip::Response> {
        let is_invite = request.starts_with("INVITE ");
        self.conn
            .send(request.as_bytes())
            .context("sending the request")?;
        let start = Instant::now();
        let deadline = start + timeout;
        let mut interval = T1;
        let mut next_retransmit = start + interval;
        let mut provisional = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no final response within {timeout:?} (provisional seen: {provisional}) to:\n{}",
                    first_line(request)
                );
            }
            let wake = if self.transport == Transport::Udp && !(is_invite && provisional) {
                next_retransmit.min(deadline)
            } else {
                deadline
            };
            match self
                .responses
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok(response) => {
                    if top_via_branch(&response.headers).as_deref() != Some(branch) {
                        continue; // a late retransmission from an earlier transaction
                    }
                    if response.status_code.code() < 200 {
                        provisional = true;
                        on_provisional(&response);
                        continue;
                    }
                    return Ok(response);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if self.transport == Transport::Udp
                        && !(is_invite && provisional)
                        && now >= next_retransmit
                    {
                        let _ = self.conn.send(request.as_bytes());
                        interval = if is_invite {
                            interval * 2
                        } else {
                            (interval * 2).min(T2)
                        };
                        next_retransmit = now + interval;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the SIP reader thread stopped"),
            }
        }
    }

    /// An out-of-dialog request (OPTIONS and the like) to `sip:{user}@server`.
    pub fn request(
        &self,
        method: &str,
        user: &str,
        extra: &[String],
    ) -> anyhow::Result<rsip::Response> {
        let branch = Self::new_branch();
        let uri = format!("sip:{user}@{}", self.server);
        let msg = self.format_request(
            method,
            &uri,
            &branch,
            &format!("<sip:{}@{}>;tag={}", self.user, self.local, Self::new_tag()),
            &format!("<{uri}>"),
            &format!("{:x}@chorus-tests", rand::random::<u64>()),
            1,
            extra,
            None,
        );
        self.transact(&msg, &branch, TRANSACTION_TIMEOUT)
    }

    fn remember_ack(&self, call_id: &str, ack: &[u8]) {
        lock(&self.shared.acks).insert(call_id.to_string(), ack.to_vec());
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Conn::Tcp { stream } = &*self.conn {
            let _ = lock(stream).shutdown(Shutdown::Both);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Values of every header called `name` (case-insensitive), in order, as text.
pub fn header_values(headers: &rsip::Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| {
            let line = h.to_string();
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .collect()
}

pub fn header(headers: &rsip::Headers, name: &str) -> Option<String> {
    header_values(headers, name).into_iter().next()
}

/// The value of parameter `name` (e.g. `tag`, `branch`) in a header value.
pub fn param(value: &str, name: &str) -> Option<String> {
    // Parameters of a name-addr follow its `>`; URI parameters inside `<…>` are not ours.
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_end_matches(',').to_string())
    })
}

fn top_via_branch(headers: &rsip::Headers) -> Option<String> {
    let via = header(headers, "Via").or_else(|| header(headers, "v"))?;
    let top = via.split(',').next()?;
    param(top, "branch")
}

/// The URI of a Contact or name-addr value: inside `<…>` if present.
pub fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value.split(';').next().unwrap_or(value).trim().to_string(),
    }
}

/// A response to `request` as a UAS sends it, copying the headers RFC 3261 §8.2.6.2 requires;
/// `to_tag` is added to a To that has none; `body` is sent as application/sdp.
pub fn response_to(
    request: &rsip::Request,
    status: &str,
    to_tag: Option<&str>,
    body: Option<&str>,
) -> String {
    let mut msg = format!("SIP/2.0 {status}\r\n");
    for h in request.headers.iter() {
        let line = h.to_string();
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "to" | "t" => {
                msg.push_str(&line);
                if let (Some(tag), None) = (to_tag, param(&line, "tag")) {
                    msg.push_str(&format!(";tag={tag}"));
                }
                msg.push_str("\r\n");
            }
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                msg.push_str(&line);
                msg.push_str("\r\n");
            }
            _ => {}
        }
    }
    msg.push_str("Server: chorus-tests\r\n");
    match body {
        Some(body) => msg.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => msg.push_str("Content-Length: 0\r\n\r\n"),
    }
    msg
}

fn handle_message(
    bytes: &[u8],
    from: SocketAddr,
    conn: &Conn,
    shared: &Shared,
    responses: &Sender<rsip::Response>,
) {
    let message = match rsip::SipMessage::try_from(bytes) {
        Ok(m) => m,
        Err(e) => {
            lock(&shared.unparseable).push(format!("{e:?}: {}", String::from_utf8_lossy(bytes)));
            return;
        }
    };
    match message {
        rsip::SipMessage::Response(response) => {
            let has_sdp = !response.body.is_empty()
                && header(&response.headers, "Content-Type")
                    .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
            lock(&shared.response_log).push(ReceivedResponse {
                at: Instant::now(),
                status: response.status_code.code(),
                cseq_method: header(&response.headers, "CSeq")
                    .and_then(|c| c.split_whitespace().nth(1).map(str::to_owned))
                    .unwrap_or_default(),
                call_id: header(&response.headers, "Call-ID").unwrap_or_default(),
                has_sdp,
                response: response.clone(),
            });
            let is_invite_2xx = (200..300).contains(&response.status_code.code())
                && header(&response.headers, "CSeq").is_some_and(|c| c.ends_with("INVITE"));
            if is_invite_2xx {
                let call_id = header(&response.headers, "Call-ID").unwrap_or_default();
                if let Some(ack) = lock(&shared.acks).get(&call_id) {
                    let _ = conn.send(ack);
                }
            }
            let _ = responses.send(response);
        }
        rsip::SipMessage::Request(request) => {
            let method = request.method.to_string();
            let call_id = header(&request.headers, "Call-ID").unwrap_or_default();
            lock(&shared.requests).push(ReceivedRequest {
                at: Instant::now(),
                method: method.clone(),
                call_id,
                from,
                text: String::from_utf8_lossy(bytes).into_owned(),
            });
            let status = match method.as_str() {
                "ACK" => return,
                "BYE" | "OPTIONS" | "INFO" | "NOTIFY" | "UPDATE" => "200 OK",
                // A re-INVITE from the engine is not part of the contract under test.
                "INVITE" => "488 Not Acceptable Here",
                _ => "501 Not Implemented",
            };
            let _ = conn.send_to(response_to(&request, status, None, None).as_bytes(), from);
        }
    }
}

fn udp_reader(socket: UdpSocket, conn: Arc<Conn>, shared: Arc<Shared>, tx: Sender<rsip::Response>) {
    let mut buf = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            // Keep-alive CRLFs (RFC 5626) are not messages.
            if buf[..len].iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            handle_message(&buf[..len], from, &conn, &shared, &tx);
        }
    }
}

fn tcp_reader(
    mut stream: TcpStream,
    server: SocketAddr,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    tx: Sender<rsip::Response>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        while let Some(len) = stream_frame_len(&pending) {
            let frame: Vec<u8> = pending.drain(..len).collect();
            if !frame.iter().all(|b| b.is_ascii_whitespace()) {
                handle_message(&frame, server, &conn, &shared, &tx);
            }
        }
    }
}

/// Length of the first complete message in a stream buffer (RFC 3261 §18.3: framing by
/// Content-Length), or None if more bytes are needed. Leading CRLFs count as a frame.
pub fn stream_frame_len(buf: &[u8]) -> Option<usize> {
    let leading = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if leading > 0 {
        return Some(leading);
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let content_length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| {
            let n = n.trim();
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l")
        })
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + content_length).then_some(head_end + content_length)
}

/// Codecs a call can offer, for [`CallOptions::codecs`]: G.711 at its static payload types,
/// Opus at a dynamic one (RFC 7587 §7). 109 rather than the engine's own 111, so an answer
/// that does not reuse the offer's number (RFC 3264 §6.1) shows.
pub const OFFER_PCMU: (u8, &str) = (0, "PCMU");
pub const OFFER_PCMA: (u8, &str) = (8, "PCMA");
pub const OFFER_OPUS: (u8, &str) = (109, "opus/48000/2");

/// The codec our media uses for an answer (or offer) from the engine: its first codec, if we
/// speak it.
fn media_codec(sdp: &AudioSdp) -> Option<Codec> {
    let pt = sdp.first_codec()?;
    Codec::from_encoding(&sdp.encoding(pt)?, pt)
}

/// How a test call is placed.
#[derive(Clone, Debug)]
pub struct CallOptions {
    pub room: String,
    pub source: Source,
    pub transport: Transport,
    /// Codecs offered, as (static payload type, name) or (dynamic payload type, rtpmap), see
    /// [`OFFER_OPUS`]. Empty = late offer: an INVITE without SDP, the engine offers in its
    /// 200 and we answer in the ACK (PCMU). The media sends and decodes the codec the engine
    /// answers first when it is PCMU, PCMA or Opus (else PCMU).
    pub codecs: Vec<(u8, &'static str)>,
    pub telephone_event: bool,
    /// The RTP address our SDP advertises; None = the media socket's own. With
    /// [`CallOptions::send_rtp_to`] this puts something between the call and the engine, e.g.
    /// a relay that impairs the network: the engine then sends to (and latches on) the relay.
    pub advertised_rtp: Option<SocketAddr>,
    /// Where our media sends RTP; None = the address in the engine's SDP.
    pub send_rtp_to: Option<SocketAddr>,
    /// The host (optionally `host:port`) of the Request-URI and To, e.g. a domain an account
    /// claims; None = the engine's SIP address. The INVITE is still sent to the engine.
    pub request_host: Option<String>,
}

impl CallOptions {
    pub fn new(room: &str, source: Source) -> Self {
        Self {
            room: room.to_string(),
            source,
            transport: Transport::Udp,
            codecs: vec![(0, "PCMU")],
            telephone_event: true,
            advertised_rtp: None,
            send_rtp_to: None,
            request_host: None,
        }
    }
}

/// A call attempt that got a final non-2xx answer (already ACKed), with its UA and media
/// kept (see [`Call::dial_keep`]); our media no longer sends.
pub struct Refused {
    pub response: rsip::Response,
    pub ua: Ua,
    pub media: Media,
}

/// An established call: the SIP dialog (client side) and its media.
pub struct Call {
    pub ua: Ua,
    pub media: Media,
    /// The engine's SDP (its answer, or its offer for a late-offer call).
    pub remote_sdp: AudioSdp,
    pub invite_response: rsip::Response,
    pub room: String,
    call_id: String,
    local_from: String,
    remote_to: String,
    remote_target: String,
    cseq: u32,
    sdp_version: u64,
    codecs: Vec<(u8, &'static str)>,
    telephone_event: bool,
    /// See [`CallOptions::advertised_rtp`] and [`CallOptions::send_rtp_to`].
    advertised_rtp: SocketAddr,
    send_rtp_to: Option<SocketAddr>,
    ended: bool,
}

impl Call {
    /// Places a PCMU call into `room` playing `source`; panics if it is not answered.
    pub fn dial(server: SocketAddr, room: &str, source: Source) -> Call {
        Self::dial_with(server, CallOptions::new(room, source))
            .unwrap_or_else(|e| panic!("call into room {room:?} failed: {e:#}"))
            .unwrap_or_else(|r| panic!("call into room {room:?} rejected:\n{r}"))
    }

    /// Places a call. `Ok(Err(response))` is a final non-2xx answer (already ACKed).
    pub fn dial_with(
        server: SocketAddr,
        options: CallOptions,
    ) -> anyhow::Result<Result<Call, rsip::Response>> {
        Ok(Self::dial_keep(server, options)?.map_err(|refused| refused.response))
    }

    /// [`Call::dial_with`], keeping the UA and the media of a refused call so the test can
    /// look at what came before the final answer: provisional responses
    /// ([`Ua::responses_received`]) and early media. A provisional response with SDP (183
    /// Session Progress, RFC 3960) starts our media towards the address in it, as a phone
    /// playing early media does.
    pub fn dial_keep(
        server: SocketAddr,
        options: CallOptions,
    ) -> anyhow::Result<Result<Call, Refused>> {
        let ua = Ua::new(server, options.transport)?;
        let media = Media::start(options.source).context("start media")?;
        let call_id = format!("{:016x}@chorus-tests", rand::random::<u64>());
        let request_uri = match &options.request_host {
            Some(host) => format!("sip:{}@{host}", options.room),
            None => format!("sip:{}@{}", options.room, server),
        };
        let local_from = format!("<sip:{}@{}>;tag={}", ua.user, ua.local, Ua::new_tag());
        let late_offer = options.codecs.is_empty();
        let advertised_rtp = options.advertised_rtp.unwrap_or(media.local);
        let offer = (!late_offer).then(|| {
            sdp::write(
                advertised_rtp,
                1,
                &options.codecs,
                options.telephone_event,
                Direction::SendRecv,
            )
        });
        let branch = Ua::new_branch();
        let invite = ua.format_request(
            "INVITE",
            &request_uri,
            &branch,
            &local_from,
            &format!("<{request_uri}>"),
            &call_id,
            1,
            &["Allow: INVITE, ACK, BYE, CANCEL, OPTIONS".to_string()],
            offer.as_deref().map(|o| ("application/sdp", o)),
        );
        let mut early_media = |provisional: &rsip::Response| {
            if late_offer || provisional.body.is_empty() {
                return;
            }
            if let Ok(early) = AudioSdp::parse(&String::from_utf8_lossy(&provisional.body)) {
                if let Some(codec) = media_codec(&early) {
                    media.set_codec(codec);
                }
                media.set_dest(options.send_rtp_to.unwrap_or(early.rtp_addr()));
            }
        };
        let response = ua.transact_with(&invite, &branch, TRANSACTION_TIMEOUT, &mut early_media)?;
        let to = header(&response.headers, "To").ok_or_else(|| anyhow!("no To in {response}"))?;
        let code = response.status_code.code();
        if code >= 300 {
            // RFC 3261 §17.1.1.3: the ACK for a non-2xx is part of the INVITE transaction.
            let ack = ua.format_request(
                "ACK",
                &request_uri,
                &branch,
                &local_from,
                &to,
                &call_id,
                1,
                &[],
                None,
            );
            ua.send_raw(ack.as_bytes())?;
            media.set_sending(false);
            return Ok(Err(Refused {
                response,
                ua,
                media,
            }));
        }
        let remote_sdp = AudioSdp::parse(&String::from_utf8_lossy(&response.body))
            .map_err(|e| anyhow!("200 OK to INVITE without usable SDP: {e}"))?;
        let remote_target = header(&response.headers, "Contact")
            .map(|c| uri_of(&c))
            .unwrap_or_else(|| request_uri.clone());
        let answer = if late_offer {
            // We only speak PCMU; the engine must offer it.
            if remote_sdp.encoding(0).as_deref() != Some("PCMU")
                || !remote_sdp.payloads.contains(&0)
            {
                bail!("the engine's offer lacks PCMU: {remote_sdp:?}");
            }
            Some(sdp::write(
                advertised_rtp,
                1,
                &[(0, "PCMU")],
                false,
                Direction::SendRecv,
            ))
        } else {
            None
        };
        let ack = ua.format_request(
            "ACK",
            &remote_target,
            &Ua::new_branch(),
            &local_from,
            &to,
            &call_id,
            1,
            &[],
            answer.as_deref().map(|a| ("application/sdp", a)),
        );
        ua.send_raw(ack.as_bytes())?;
        ua.remember_ack(&call_id, ack.as_bytes());
        if !late_offer {
            if let Some(codec) = media_codec(&remote_sdp) {
                media.set_codec(codec);
            }
        }
        media.set_dest(options.send_rtp_to.unwrap_or(remote_sdp.rtp_addr()));
        Ok(Ok(Call {
            ua,
            media,
            remote_sdp,
            invite_response: response,
            room: options.room,
            call_id,
            local_from,
            remote_to: to,
            remote_target,
            cseq: 1,
            sdp_version: 1,
            codecs: if late_offer {
                vec![(0, "PCMU")]
            } else {
                options.codecs
            },
            telephone_event: options.telephone_event,
            advertised_rtp,
            send_rtp_to: options.send_rtp_to,
            ended: false,
        }))
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    fn in_dialog(&mut self, method: &str, body: Option<&str>) -> anyhow::Result<rsip::Response> {
        self.in_dialog_typed(method, body.map(|b| ("application/sdp", b)))
    }

    /// Sends SIP INFO with this body (e.g. `application/dtmf-relay`, RFC 6086); returns the
    /// engine's status code.
    pub fn send_info(&mut self, content_type: &str, body: &str) -> anyhow::Result<u16> {
        Ok(self
            .in_dialog_typed("INFO", Some((content_type, body)))?
            .status_code
            .code())
    }

    fn in_dialog_typed(
        &mut self,
        method: &str,
        body: Option<(&str, &str)>,
    ) -> anyhow::Result<rsip::Response> {
        self.cseq += 1;
        let branch = Ua::new_branch();
        let msg = self.ua.format_request(
            method,
            &self.remote_target,
            &branch,
            &self.local_from,
            &self.remote_to,
            &self.call_id,
            self.cseq,
            &[],
            body,
        );
        self.ua.transact(&msg, &branch, TRANSACTION_TIMEOUT)
    }

    /// Sends a re-INVITE with our SDP in `direction`; returns the engine's final response
    /// (ACKed when 2xx) and its SDP.
    pub fn reinvite(
        &mut self,
        direction: Direction,
    ) -> anyhow::Result<(rsip::Response, Option<AudioSdp>)> {
        self.sdp_version += 1;
        let offer = sdp::write(
            self.advertised_rtp,
            self.sdp_version,
            &self.codecs,
            self.telephone_event,
            direction,
        );
        let response = self.in_dialog("INVITE", Some(&offer))?;
        let code = response.status_code.code();
        if (200..300).contains(&code) {
            let ack = self.ua.format_request(
                "ACK",
                &self.remote_target,
                &Ua::new_branch(),
                &self.local_from,
                &self.remote_to,
                &self.call_id,
                self.cseq,
                &[],
                None,
            );
            self.ua.send_raw(ack.as_bytes())?;
            self.ua.remember_ack(&self.call_id, ack.as_bytes());
        } else if code >= 300 {
            // The non-2xx ACK reuses the INVITE's branch; not needed by the tests so far.
            bail!("re-INVITE rejected:\n{response}");
        }
        let sdp = AudioSdp::parse(&String::from_utf8_lossy(&response.body)).ok();
        if let Some(sdp) = &sdp {
            if let Some(codec) = media_codec(sdp) {
                self.media.set_codec(codec);
            }
            self.media
                .set_dest(self.send_rtp_to.unwrap_or(sdp.rtp_addr()));
        }
        Ok((response, sdp))
    }

    /// Sends BYE; returns the status of the final response.
    pub fn hangup(&mut self) -> anyhow::Result<u16> {
        self.ended = true;
        self.media.set_sending(false);
        let response = self.in_dialog("BYE", None)?;
        Ok(response.status_code.code())
    }

    /// When the engine's BYE for this call arrived (we answered it 200).
    pub fn bye_received(&self) -> Option<Instant> {
        self.ua
            .requests_received()
            .into_iter()
            .find(|r| r.method == "BYE" && r.call_id == self.call_id)
            .map(|r| r.at)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Leave the engine clean for tests sharing it; best effort, no waiting.
        if !self.ended && self.bye_received().is_none() {
            self.cseq += 1;
            let bye = self.ua.format_request(
                "BYE",
                &self.remote_target,
                &Ua::new_branch(),
                &self.local_from,
                &self.remote_to,
                &self.call_id,
                self.cseq,
                &[],
                None,
            );
            let _ = self.ua.send_raw(bye.as_bytes());
        }
    }
}

pub mod selftest {
    use super::*;

    pub fn rsip_headers_are_read_by_name_and_params() {
        let text = "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport=5070;received=127.0.0.1\r\n\
            Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKother\r\n\
            From: <sip:a@127.0.0.1>;tag=111\r\n\
            To: \"Room\" <sip:room@127.0.0.1;transport=udp>;tag=222\r\n\
            Call-ID: xyz@host\r\n\
            CSeq: 1 INVITE\r\n\
            Contact: <sip:chorus@127.0.0.1:5060>\r\n\
            Allow: INVITE, ACK, BYE, OPTIONS\r\n\
            Content-Length: 0\r\n\r\n";
        let response = rsip::Response::try_from(text).expect("valid response parses");
        assert_eq!(response.status_code.code(), 200);
        assert_eq!(
            top_via_branch(&response.headers).as_deref(),
            Some("z9hG4bKabc")
        );
        assert_eq!(header_values(&response.headers, "via").len(), 2);
        let to = header(&response.headers, "To").expect("To");
        assert_eq!(param(&to, "tag").as_deref(), Some("222"));
        assert_eq!(
            param(&to, "transport"),
            None,
            "URI parameters are not header parameters"
        );
        assert_eq!(
            header(&response.headers, "call-id").as_deref(),
            Some("xyz@host")
        );
        assert_eq!(
            uri_of(&header(&response.headers, "Contact").expect("Contact")),
            "sip:chorus@127.0.0.1:5060"
        );
        assert!(header(&response.headers, "Allow")
            .expect("Allow")
            .contains("BYE"));
    }

    pub fn bye_from_the_engine_is_answered_with_matching_headers() {
        let text = "BYE sip:tester@127.0.0.1:5070 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbye\r\n\
            From: <sip:room@127.0.0.1:5060>;tag=222\r\n\
            To: <sip:tester@127.0.0.1:5070>;tag=111\r\n\
            Call-ID: xyz@host\r\n\
            CSeq: 7 BYE\r\n\
            Max-Forwards: 70\r\n\
            Content-Length: 0\r\n\r\n";
        let request = rsip::Request::try_from(text).expect("valid request parses");
        let response = response_to(&request, "200 OK", Some("ignored"), None);
        let parsed = rsip::Response::try_from(response.as_str()).expect("our response parses");
        assert_eq!(parsed.status_code.code(), 200);
        assert_eq!(
            top_via_branch(&parsed.headers).as_deref(),
            Some("z9hG4bKbye")
        );
        assert_eq!(header(&parsed.headers, "CSeq").as_deref(), Some("7 BYE"));
        assert!(header(&parsed.headers, "Max-Forwards").is_none());
        let to = header(&parsed.headers, "To").expect("To");
        assert_eq!(
            param(&to, "tag").as_deref(),
            Some("111"),
            "an existing To tag is kept"
        );
    }

    pub fn our_requests_parse_and_frame() {
        let ua = Ua::new("127.0.0.1:9".parse().expect("literal"), Transport::Udp).expect("ua");
        let branch = Ua::new_branch();
        let msg = ua.format_request(
            "INVITE",
            "sip:room@127.0.0.1:9",
            &branch,
            "<sip:a@127.0.0.1>;tag=1",
            "<sip:room@127.0.0.1:9>",
            "cid",
            1,
            &[],
            Some(("application/sdp", "v=0\r\n")),
        );
        let request = rsip::Request::try_from(msg.as_str()).expect("our INVITE parses");
        assert_eq!(request.method.to_string(), "INVITE");
        assert_eq!(request.body, b"v=0\r\n");
        assert_eq!(top_via_branch(&request.headers), Some(branch));
        let two = format!("\r\n\r\n{msg}{msg}");
        assert_eq!(
            stream_frame_len(two.as_bytes()),
            Some(4),
            "keep-alive CRLFs first"
        );
        assert_eq!(stream_frame_len(&two.as_bytes()[4..]), Some(msg.len()));
        assert_eq!(stream_frame_len(&msg.as_bytes()[..msg.len() - 1]), None);
    }
}
