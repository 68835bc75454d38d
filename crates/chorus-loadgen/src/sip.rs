//! A tiny SIP UAC over UDP (RFC 3261) for placing many calls from one socket: INVITE with an
//! SDP offer of one codec, retransmitted on Timer A until a response; ACK for every final
//! response (§17.1.1.3 for non-2xx, §13.2.2.4 for 2xx, resent when the 2xx is); BYE at the
//! end, retransmitted on Timer E until its final response. Requests from the engine (a BYE
//! when it shuts down) are answered 200. Messages are written by hand and parsed with simple
//! string handling (full and compact header names).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::audio::Codec;

const T1: Duration = Duration::from_millis(500);
const INVITE_TIMEOUT: Duration = Duration::from_secs(16);
const BYE_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallState {
    Idle,
    Inviting,
    Established,
    Failed(String),
    Byeing,
    Closed,
    /// The engine hung up first.
    RemoteBye,
}

pub struct Call {
    pub room: String,
    pub state: CallState,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    target: String,
    branch: String,
    last_sent: Vec<u8>,
    ack: Vec<u8>,
    first_sent: Instant,
    next_rtx: Instant,
    rtx_interval: Duration,
    pub rtp: Option<UdpSocket>,
    pub remote_rtp: Option<SocketAddr>,
    pub payload_type: u8,
}

/// One established call, for the media side.
pub struct Established {
    pub index: usize,
    pub socket: UdpSocket,
    pub remote: SocketAddr,
    pub payload_type: u8,
}

pub struct Uac {
    socket: UdpSocket,
    server: SocketAddr,
    local: SocketAddr,
    codec: Codec,
    run_id: u64,
    pub calls: Vec<Call>,
    by_call_id: HashMap<String, usize>,
    branches: u64,
    buf: Vec<u8>,
}

impl Uac {
    pub fn new(server: SocketAddr, codec: Codec, rooms: Vec<String>) -> anyhow::Result<Uac> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the SIP socket")?;
        socket.set_read_timeout(Some(Duration::from_millis(2)))?;
        let local = socket.local_addr()?;
        let run_id = u64::from(std::process::id()) << 20
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
        let now = Instant::now();
        let calls = rooms
            .into_iter()
            .map(|room| Call {
                room,
                state: CallState::Idle,
                call_id: String::new(),
                from_tag: String::new(),
                to_tag: None,
                target: String::new(),
                branch: String::new(),
                last_sent: Vec::new(),
                ack: Vec::new(),
                first_sent: now,
                next_rtx: now,
                rtx_interval: T1,
                rtp: None,
                remote_rtp: None,
                payload_type: codec.payload_type(),
            })
            .collect();
        Ok(Uac {
            socket,
            server,
            local,
            codec,
            run_id,
            calls,
            by_call_id: HashMap::new(),
            branches: 0,
            buf: vec![0u8; 65_536],
        })
    }

    fn branch(&mut self) -> String {
        self.branches += 1;
        format!("z9hG4bK-lg{:x}-{}", self.run_id, self.branches)
    }

    fn sdp_offer(&self, rtp: SocketAddr, session: usize) -> String {
        let (pt, rtpmap) = match self.codec {
            Codec::Pcmu => (0, "a=rtpmap:0 PCMU/8000\r\n".to_owned()),
            Codec::Opus => (
                111,
                "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=20;useinbandfec=0\r\n".to_owned(),
            ),
        };
        format!(
            "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=chorus-loadgen\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt}\r\n{rtpmap}a=ptime:20\r\na=sendrecv\r\n",
            ip = rtp.ip(),
            port = rtp.port(),
        )
    }

    /// Sends the INVITE of call `i` (its RTP socket is bound here).
    pub fn invite(&mut self, i: usize) -> anyhow::Result<()> {
        let rtp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding an RTP socket")?;
        let rtp_addr = rtp.local_addr()?;
        let branch = self.branch();
        let call_id = format!("lg{:x}-{i}@127.0.0.1", self.run_id);
        let from_tag = format!("lgf{i}");
        let room = self.calls[i].room.clone();
        let uri = format!("sip:{room}@{}", self.server);
        let body = self.sdp_offer(rtp_addr, i);
        let msg = format!(
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:loadgen{i}@{lip}>;tag={from_tag}\r\n\
             To: <{uri}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:loadgen{i}@{local}>\r\n\
             User-Agent: chorus-loadgen\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{body}",
            local = self.local,
            lip = self.local.ip(),
            len = body.len(),
        );
        let now = Instant::now();
        let call = &mut self.calls[i];
        call.state = CallState::Inviting;
        call.call_id = call_id.clone();
        call.from_tag = from_tag;
        call.target = uri;
        call.branch = branch;
        call.last_sent = msg.into_bytes();
        call.first_sent = now;
        call.next_rtx = now + T1;
        call.rtx_interval = T1;
        call.rtp = Some(rtp);
        self.by_call_id.insert(call_id, i);
        self.socket.send_to(&self.calls[i].last_sent, self.server)?;
        Ok(())
    }

    /// Sends the BYE of an established call.
    pub fn bye(&mut self, i: usize) -> anyhow::Result<()> {
        if self.calls[i].state != CallState::Established {
            return Ok(());
        }
        let branch = self.branch();
        let c = &self.calls[i];
        let msg = format!(
            "BYE {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:loadgen{i}@{lip}>;tag={from_tag}\r\n\
             To: <sip:{room}@{server}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            target = c.target,
            local = self.local,
            lip = self.local.ip(),
            from_tag = c.from_tag,
            room = c.room,
            server = self.server,
            to_tag = c
                .to_tag
                .as_deref()
                .map(|t| format!(";tag={t}"))
                .unwrap_or_default(),
            call_id = c.call_id,
        );
        let now = Instant::now();
        let c = &mut self.calls[i];
        c.state = CallState::Byeing;
        c.branch = branch;
        c.last_sent = msg.into_bytes();
        c.first_sent = now;
        c.next_rtx = now + T1;
        c.rtx_interval = T1;
        self.socket.send_to(&c.last_sent, self.server)?;
        Ok(())
    }

    /// Handles whatever arrives within about `wait`, and retransmissions that are due.
    /// Returns the calls that became established.
    pub fn poll(&mut self, wait: Duration) -> Vec<Established> {
        let mut done = Vec::new();
        let until = Instant::now() + wait;
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    let text = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                    if let Some(e) = self.handle(&text, from) {
                        done.push(e);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {}
            }
            if Instant::now() >= until {
                break;
            }
        }
        self.retransmit();
        done
    }

    fn retransmit(&mut self) {
        let now = Instant::now();
        for c in &mut self.calls {
            let (timeout, cap) = match c.state {
                CallState::Inviting => (INVITE_TIMEOUT, Duration::from_secs(32)),
                CallState::Byeing => (BYE_TIMEOUT, Duration::from_secs(4)),
                _ => continue,
            };
            if now.duration_since(c.first_sent) > timeout {
                c.state = match c.state {
                    CallState::Inviting => CallState::Failed("no final response to INVITE".into()),
                    _ => CallState::Failed("no final response to BYE".into()),
                };
                continue;
            }
            if now >= c.next_rtx && !c.last_sent.is_empty() {
                let _ = self.socket.send_to(&c.last_sent, self.server);
                c.rtx_interval = (c.rtx_interval * 2).min(cap);
                c.next_rtx = now + c.rtx_interval;
            }
        }
    }

    fn handle(&mut self, text: &str, from: SocketAddr) -> Option<Established> {
        let msg = Message::parse(text)?;
        if !msg.first_line.starts_with("SIP/2.0 ") {
            self.answer_request(&msg, from);
            return None;
        }
        let status: u16 = msg.first_line.split_whitespace().nth(1)?.parse().ok()?;
        let i = *self.by_call_id.get(msg.header("call-id", "i")?)?;
        let cseq_method = msg
            .header("cseq", "")?
            .split_whitespace()
            .nth(1)?
            .to_owned();
        match (cseq_method.as_str(), &self.calls[i].state) {
            ("INVITE", CallState::Inviting) if status < 200 => {
                // A provisional response stops Timer A retransmissions (§17.1.1.2).
                let c = &mut self.calls[i];
                c.next_rtx = c.first_sent + Duration::from_secs(3600);
                None
            }
            ("INVITE", CallState::Inviting) if status < 300 => self.established(i, &msg),
            ("INVITE", CallState::Inviting) => {
                self.send_ack(i, &msg, status);
                self.calls[i].state = CallState::Failed(msg.first_line.clone());
                None
            }
            ("INVITE", _) if (200..300).contains(&status) => {
                // 2xx retransmission: our ACK was lost.
                let _ = self.socket.send_to(&self.calls[i].ack, self.server);
                None
            }
            ("BYE", CallState::Byeing) if status >= 200 => {
                self.calls[i].state = CallState::Closed;
                None
            }
            _ => None,
        }
    }

    fn established(&mut self, i: usize, msg: &Message) -> Option<Established> {
        let to_tag = tag_of(msg.header("to", "t")?);
        let target = msg
            .header("contact", "m")
            .map(|c| {
                let s = c.find('<').map_or(c, |p| &c[p + 1..]);
                s[..s.find('>').unwrap_or(s.len())].trim().to_owned()
            })
            .unwrap_or_else(|| self.calls[i].target.clone());
        let sdp = Sdp::parse(&msg.body);
        self.calls[i].to_tag = to_tag;
        self.calls[i].target = target;
        self.send_ack(i, msg, 200);
        let Some((addr, pt)) = sdp else {
            self.calls[i].state = CallState::Failed("200 without a usable SDP answer".into());
            return None;
        };
        let c = &mut self.calls[i];
        c.state = CallState::Established;
        c.remote_rtp = Some(addr);
        c.payload_type = pt;
        let socket = c.rtp.as_ref()?.try_clone().ok()?;
        Some(Established {
            index: i,
            socket,
            remote: addr,
            payload_type: pt,
        })
    }

    fn send_ack(&mut self, i: usize, msg: &Message, status: u16) {
        // §17.1.1.3: a non-2xx ACK reuses the INVITE's branch and Request-URI; a 2xx ACK is a
        // new transaction to the remote target.
        let branch = if status >= 300 {
            self.calls[i].branch.clone()
        } else {
            self.branch()
        };
        let c = &self.calls[i];
        let to = msg.header("to", "t").unwrap_or("").to_owned();
        let ack = format!(
            "ACK {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:loadgen{i}@{lip}>;tag={from_tag}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            target = c.target,
            local = self.local,
            lip = self.local.ip(),
            from_tag = c.from_tag,
            call_id = c.call_id,
        );
        let _ = self.socket.send_to(ack.as_bytes(), self.server);
        self.calls[i].ack = ack.into_bytes();
    }

    fn answer_request(&mut self, msg: &Message, from: SocketAddr) {
        let method = msg.first_line.split_whitespace().next().unwrap_or("");
        if method == "ACK" {
            return;
        }
        if method == "BYE" {
            if let Some(&i) = msg
                .header("call-id", "i")
                .and_then(|id| self.by_call_id.get(id))
            {
                self.calls[i].state = CallState::RemoteBye;
            }
        }
        let mut resp = String::from("SIP/2.0 200 OK\r\n");
        for (name, value) in &msg.headers {
            let n = name.to_ascii_lowercase();
            if matches!(
                n.as_str(),
                "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq"
            ) {
                resp.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        let _ = self.socket.send_to(resp.as_bytes(), from);
    }

    pub fn count(&self, pred: impl Fn(&CallState) -> bool) -> usize {
        self.calls.iter().filter(|c| pred(&c.state)).count()
    }
}

fn tag_of(header: &str) -> Option<String> {
    let after = header.rsplit('>').next().unwrap_or(header);
    after
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(str::to_owned)
}

struct Message {
    first_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Message {
    fn parse(text: &str) -> Option<Message> {
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (&text[..i], &text[i + 4..]),
            None => (text, ""),
        };
        let mut lines = head.split("\r\n");
        let first_line = lines.next()?.trim().to_owned();
        let headers = lines
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                Some((n.trim().to_owned(), v.trim().to_owned()))
            })
            .collect();
        Some(Message {
            first_line,
            headers,
            body: body.to_owned(),
        })
    }

    fn header(&self, name: &str, compact: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| {
                n.eq_ignore_ascii_case(name)
                    || (!compact.is_empty() && n.eq_ignore_ascii_case(compact))
            })
            .map(|(_, v)| v.as_str())
    }
}

struct Sdp;

impl Sdp {
    /// The media address and first payload type of an SDP answer's audio stream.
    fn parse(body: &str) -> Option<(SocketAddr, u8)> {
        let mut ip: Option<IpAddr> = None;
        let mut media: Option<(u16, u8)> = None;
        for line in body.lines().map(str::trim) {
            if let Some(c) = line.strip_prefix("c=IN IP4 ") {
                if media.is_none() || ip.is_none() {
                    ip = c.split_whitespace().next()?.split('/').next()?.parse().ok();
                }
            } else if let Some(m) = line.strip_prefix("m=audio ") {
                let mut parts = m.split_whitespace();
                let port: u16 = parts.next()?.parse().ok()?;
                let pt: u8 = parts.nth(1)?.parse().ok()?;
                media = Some((port, pt));
            }
        }
        let (port, pt) = media?;
        if port == 0 {
            return None;
        }
        Some((SocketAddr::new(ip?, port), pt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_answer_gives_address_and_payload_type() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 20002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(
            Sdp::parse(sdp),
            Some(("127.0.0.1:20002".parse().expect("addr"), 0))
        );
        assert_eq!(
            Sdp::parse("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"),
            None
        );
    }

    #[test]
    fn to_tag_is_read_after_the_uri() {
        assert_eq!(
            tag_of("<sip:room@127.0.0.1:5060;tag=uri>;tag=abc"),
            Some("abc".to_owned())
        );
        assert_eq!(tag_of("<sip:room@127.0.0.1>"), None);
    }

    #[test]
    fn compact_headers_are_found() {
        let m =
            Message::parse("SIP/2.0 200 OK\r\ni: x@y\r\nCSeq: 1 INVITE\r\n\r\n").expect("parses");
        assert_eq!(m.header("call-id", "i"), Some("x@y"));
        assert_eq!(m.header("cseq", ""), Some("1 INVITE"));
    }
}
