//! SDP offer/answer for one audio stream (RFC 3264 on RFC 4566 bodies).
//!
//! Parsing goes through the webrtc-rs `sdp` crate; answers and offers are
//! written as text because we emit a fixed, minimal shape.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use crate::error::SdpError;

/// Audio codecs the engine can mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static payload type (RFC 3551 §6).
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The rtpmap encoding name (RFC 3551 §6).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
        }
    }

    fn matches(self, name: &str, clock: u32) -> bool {
        name.eq_ignore_ascii_case(self.encoding_name()) && clock == self.clock_rate()
    }
}

/// Media direction attribute (RFC 3264 §5.1, §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(key: &str) -> Option<Direction> {
        match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer must carry for this offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// The first audio stream of a remote offer or answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMedia {
    /// `None` when c=0.0.0.0 (RFC 2543 hold, RFC 3264 §8.4) or port 0 (stream rejected).
    pub addr: Option<SocketAddr>,
    pub rtp_port: u16,
    /// (payload type, encoding name, clock rate) in the offer's order; static
    /// payload types are named without an rtpmap (RFC 3551 §6).
    pub formats: Vec<(u8, String, u32)>,
    pub telephone_event_pt: Option<u8>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub session_id: u64,
    pub session_version: u64,
}

/// What we can offer or answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP ip:port.
    pub addr: SocketAddr,
    pub session_id: u64,
    pub session_version: u64,
    /// What we support, in our preference order.
    pub codecs: Vec<Codec>,
    pub telephone_event: bool,
}

/// The outcome of offer/answer for one audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type number the remote side used for `codec`.
    pub pt: u8,
    pub telephone_event_pt: Option<u8>,
    pub remote_addr: Option<SocketAddr>,
    pub remote_direction: Direction,
    /// What we answer: the mirror of `remote_direction` (RFC 3264 §6.1).
    pub local_direction: Direction,
    /// Always 20 ms for us.
    pub ptime: u32,
}

const STATIC_PTS: &[(u8, &str, u32)] = &[
    (0, "PCMU", 8000),
    (3, "GSM", 8000),
    (4, "G723", 8000),
    (8, "PCMA", 8000),
    (9, "G722", 8000),
    (18, "G729", 8000),
];

/// Parses the first audio m= line of an SDP body (RFC 4566 §5.14).
pub fn parse_sdp(bytes: &[u8]) -> Result<RemoteMedia, SdpError> {
    let sd =
        sdp::SessionDescription::unmarshal(&mut Cursor::new(bytes)).map_err(SdpError::Syntax)?;
    let media = sd
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media.eq_ignore_ascii_case("audio"))
        .ok_or(SdpError::NoAudio)?;
    let port = media.media_name.port.value;
    let rtp_port = u16::try_from(port).map_err(|_| SdpError::BadPort(port))?;

    let conn = media
        .connection_information
        .as_ref()
        .or(sd.connection_information.as_ref())
        .ok_or(SdpError::NoConnection)?;
    let addr_text = conn
        .address
        .as_ref()
        .map(|a| a.address.clone())
        .ok_or(SdpError::NoConnection)?;
    let ip: IpAddr = addr_text
        .trim()
        .parse()
        .map_err(|_| SdpError::BadAddress(addr_text.clone()))?;
    let addr = if ip.is_unspecified() || rtp_port == 0 {
        None
    } else {
        Some(SocketAddr::new(ip, rtp_port))
    };

    let mut formats = Vec::new();
    for f in &media.media_name.formats {
        let Ok(pt) = f.trim().parse::<u8>() else {
            continue;
        };
        if pt > 127 {
            continue;
        }
        let mapped = media.attributes.iter().find_map(|a| {
            if a.key != "rtpmap" {
                return None;
            }
            let v = a.value.as_deref()?;
            let (p, enc) = v.trim().split_once(char::is_whitespace)?;
            if p.parse::<u8>().ok()? != pt {
                return None;
            }
            let mut parts = enc.trim().split('/');
            let name = parts.next()?.to_string();
            let clock = parts.next()?.trim().parse::<u32>().ok()?;
            Some((name, clock))
        });
        let (name, clock) = match mapped {
            Some(m) => m,
            None => STATIC_PTS
                .iter()
                .find(|(p, _, _)| *p == pt)
                .map(|(_, n, c)| ((*n).to_string(), *c))
                .unwrap_or_default(),
        };
        formats.push((pt, name, clock));
    }

    let telephone_event_pt = formats
        .iter()
        .find(|(_, n, c)| n.eq_ignore_ascii_case("telephone-event") && *c == 8000)
        .map(|(pt, _, _)| *pt);
    let direction = media
        .attributes
        .iter()
        .chain(sd.attributes.iter())
        .find_map(|a| Direction::from_attr(&a.key))
        .unwrap_or(Direction::SendRecv);
    let ptime = media
        .attributes
        .iter()
        .chain(sd.attributes.iter())
        .find(|a| a.key == "ptime")
        .and_then(|a| a.value.as_deref()?.trim().parse().ok());
    Ok(RemoteMedia {
        addr,
        rtp_port,
        formats,
        telephone_event_pt,
        direction,
        ptime,
        session_id: sd.origin.session_id,
        session_version: sd.origin.session_version,
    })
}

/// Picks the first of the remote side's formats that we support, keeping the
/// offerer's order (RFC 3264 §6.1). Works the same on an answer received in an
/// ACK for a late offer. `Err(SdpError::NoCommonCodec)` means answer 488.
pub fn negotiate(remote: &RemoteMedia, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let (codec, pt) = remote
        .formats
        .iter()
        .find_map(|(pt, name, clock)| {
            local
                .codecs
                .iter()
                .find(|c| c.matches(name, *clock))
                .map(|c| (*c, *pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    Ok(Negotiated {
        codec,
        pt,
        telephone_event_pt: remote.telephone_event_pt.filter(|_| local.telephone_event),
        remote_addr: remote.addr,
        remote_direction: remote.direction,
        local_direction: remote.direction.answer(),
        ptime: 20,
    })
}

fn session_header(out: &mut String, local: &LocalMedia) {
    let (family, ip) = match local.addr.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let _ = write!(
        out,
        "v=0\r\no=chorus {} {} IN {family} {ip}\r\ns=chorus\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        local.session_id, local.session_version
    );
}

fn telephone_event_lines(out: &mut String, pt: u8) {
    let _ = write!(
        out,
        "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
    );
}

/// The answer: one audio m= line with the chosen payload type (the offer's
/// number, RFC 3264 §6.1), telephone-event if both sides have it, ptime 20 and
/// the mirrored direction.
pub fn build_answer(local: &LocalMedia, negotiated: &Negotiated) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    session_header(&mut out, local);
    let _ = write!(
        out,
        "m=audio {} RTP/AVP {}",
        local.addr.port(),
        negotiated.pt
    );
    if let Some(te) = negotiated.telephone_event_pt {
        let _ = write!(out, " {te}");
    }
    out.push_str("\r\n");
    let _ = write!(
        out,
        "a=rtpmap:{} {}/{}\r\n",
        negotiated.pt,
        negotiated.codec.encoding_name(),
        negotiated.codec.clock_rate()
    );
    if let Some(te) = negotiated.telephone_event_pt {
        telephone_event_lines(&mut out, te);
    }
    let _ = write!(
        out,
        "a=ptime:20\r\na={}\r\n",
        negotiated.local_direction.as_attr()
    );
    out.into_bytes()
}

/// Payload type we offer for telephone-event (RFC 4733).
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// An offer for late-offer INVITEs and re-INVITEs without SDP: every local
/// codec at its static PT, telephone-event 101, ptime 20, sendrecv.
pub fn build_offer(local: &LocalMedia) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    session_header(&mut out, local);
    let _ = write!(out, "m=audio {} RTP/AVP", local.addr.port());
    for c in &local.codecs {
        let _ = write!(out, " {}", c.static_pt());
    }
    if local.telephone_event {
        let _ = write!(out, " {OFFER_TELEPHONE_EVENT_PT}");
    }
    out.push_str("\r\n");
    for c in &local.codecs {
        let _ = write!(
            out,
            "a=rtpmap:{} {}/{}\r\n",
            c.static_pt(),
            c.encoding_name(),
            c.clock_rate()
        );
    }
    if local.telephone_event {
        telephone_event_lines(&mut out, OFFER_TELEPHONE_EVENT_PT);
    }
    out.push_str("a=ptime:20\r\na=sendrecv\r\n");
    out.into_bytes()
}
