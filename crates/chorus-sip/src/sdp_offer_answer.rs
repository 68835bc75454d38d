//! SDP offer/answer for one audio stream (RFC 3264 on RFC 4566 bodies).
//!
//! Parsing goes through the webrtc-rs `sdp` crate; answers and offers are
//! written as text because we emit a fixed, minimal shape.
//!
//! Codecs: G.711 µ-law and A-law at their static payload types (RFC 3551 §6) and
//! Opus at a dynamic one (RFC 7587 §7: `opus/48000/2` whatever the channel count
//! actually sent; we always send mono, which every Opus receiver decodes).

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use crate::error::SdpError;

/// Audio codecs the engine can mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Opus (RFC 6716) over RTP per RFC 7587.
    Opus,
}

/// Dynamic payload type we offer for Opus (RFC 3551 §3: 96–127 are dynamic; 111 is
/// what most WebRTC stacks and softphones use, so answers tend to keep it).
pub const OFFER_OPUS_PT: u8 = 111;

impl Codec {
    /// The payload type we offer: the static one for G.711 (RFC 3551 §6), the
    /// dynamic [`OFFER_OPUS_PT`] for Opus, which has no static number.
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::Opus => OFFER_OPUS_PT,
        }
    }

    /// The rtpmap encoding name (RFC 3551 §6, RFC 7587 §7).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate; Opus always uses 48 kHz whatever it encodes
    /// (RFC 7587 §4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// The rtpmap text after the payload type: Opus always declares two channels
    /// (RFC 7587 §7), whatever it sends.
    fn rtpmap(self) -> String {
        match self {
            Codec::Opus => format!("{}/{}/2", self.encoding_name(), self.clock_rate()),
            _ => format!("{}/{}", self.encoding_name(), self.clock_rate()),
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
    /// Every `a=fmtp:<pt> <parameters>` of the stream (RFC 4566 §6), in order.
    pub fmtp: Vec<(u8, String)>,
    /// The id the sender uses for the RFC 6464 client-to-mixer audio level header extension
    /// (`a=extmap:<id> urn:ietf:params:rtp-hdrext:ssrc-audio-level`, RFC 8285 §5), when it
    /// offers one we can read (one-byte form, ids 1–14).
    pub audio_level_ext: Option<u8>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub session_id: u64,
    pub session_version: u64,
}

impl RemoteMedia {
    /// The format parameters given for payload type `pt`, if any.
    pub fn fmtp_for(&self, pt: u8) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, params)| params.as_str())
    }
}

/// What the remote side asked of the Opus stream we send it (RFC 7587 §6.1: these
/// are receiver preferences of whoever wrote the SDP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpusParams {
    /// `useinbandfec=1`: it can use in-band FEC, so our encoder should send it.
    pub inband_fec: bool,
    /// `usedtx=1`: it prefers discontinuous transmission.
    pub dtx: bool,
    /// `maxplaybackrate`: the highest audio rate worth sending it, in Hz.
    pub max_playback_rate: Option<u32>,
}

impl OpusParams {
    /// Parses an Opus fmtp parameter list (`key=value` separated by `;`, RFC 7587
    /// §6.1). Unknown keys and malformed values are ignored: the defaults apply.
    /// `stereo` and `sprop-stereo` are read past on purpose: we send mono, which
    /// every Opus receiver must decode.
    pub fn parse(params: &str) -> OpusParams {
        let mut out = OpusParams::default();
        for param in params.split(';') {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "useinbandfec" => out.inband_fec = value == "1",
                "usedtx" => out.dtx = value == "1",
                "maxplaybackrate" => out.max_playback_rate = value.parse().ok(),
                _ => {}
            }
        }
        out
    }
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
    /// RFC 6464 audio level extension id the peer sends, if it offered one.
    pub audio_level_ext: Option<u8>,
    /// The remote side's Opus parameters; `None` unless `codec` is Opus.
    pub opus: Option<OpusParams>,
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
    let fmtp = media
        .attributes
        .iter()
        .filter(|a| a.key == "fmtp")
        .filter_map(|a| {
            let v = a.value.as_deref()?.trim();
            let (pt, params) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
            Some((pt.parse::<u8>().ok()?, params.trim().to_string()))
        })
        .collect();
    let audio_level_ext = media
        .attributes
        .iter()
        .chain(sd.attributes.iter())
        .filter(|a| a.key == "extmap")
        .find_map(|a| {
            let v = a.value.as_deref()?.trim();
            let (id, rest) = v.split_once(char::is_whitespace)?;
            let uri = rest.split_whitespace().next()?;
            if !uri.eq_ignore_ascii_case(AUDIO_LEVEL_URI) {
                return None;
            }
            // `id` may carry a direction: `1/sendonly`.
            let id: u8 = id.split('/').next()?.parse().ok()?;
            (1..=14).contains(&id).then_some(id)
        });
    Ok(RemoteMedia {
        addr,
        rtp_port,
        formats,
        telephone_event_pt,
        fmtp,
        audio_level_ext,
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
        audio_level_ext: remote.audio_level_ext,
        opus: (codec == Codec::Opus).then(|| {
            remote
                .fmtp_for(pt)
                .map(OpusParams::parse)
                .unwrap_or_default()
        }),
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
        "a=rtpmap:{} {}\r\n",
        negotiated.pt,
        negotiated.codec.rtpmap()
    );
    if negotiated.codec == Codec::Opus {
        // We can always decode in-band FEC, so ask for it (RFC 7587 §6.1); DTX only
        // when the peer asked for it, mirroring its preference.
        let dtx = negotiated.opus.is_some_and(|o| o.dtx);
        let _ = write!(
            out,
            "a=fmtp:{} useinbandfec=1{}\r\n",
            negotiated.pt,
            if dtx { "; usedtx=1" } else { "" }
        );
    }
    if let Some(te) = negotiated.telephone_event_pt {
        telephone_event_lines(&mut out, te);
    }
    if let Some(id) = negotiated.audio_level_ext {
        // RFC 8285 §6: accepting the extension means echoing its mapping; we only receive it.
        let _ = write!(out, "a=extmap:{id}/recvonly {AUDIO_LEVEL_URI}\r\n");
    }
    let _ = write!(
        out,
        "a=ptime:20\r\na={}\r\n",
        negotiated.local_direction.as_attr()
    );
    out.into_bytes()
}

/// RFC 6464 §4: the client-to-mixer audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Payload type we offer for telephone-event (RFC 4733).
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// An offer for late-offer INVITEs and re-INVITEs without SDP: every local
/// codec in our preference order at [`Codec::static_pt`] (Opus at
/// [`OFFER_OPUS_PT`] asking for in-band FEC), telephone-event 101, ptime 20,
/// sendrecv.
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
        let _ = write!(out, "a=rtpmap:{} {}\r\n", c.static_pt(), c.rtpmap());
        if *c == Codec::Opus {
            let _ = write!(out, "a=fmtp:{} useinbandfec=1\r\n", c.static_pt());
        }
    }
    if local.telephone_event {
        telephone_event_lines(&mut out, OFFER_TELEPHONE_EVENT_PT);
    }
    out.push_str("a=ptime:20\r\na=sendrecv\r\n");
    out.into_bytes()
}
