//! Just enough SDP (RFC 4566 / RFC 3264) for one audio stream: write our offers and answers,
//! read the engine's.

use std::net::{IpAddr, SocketAddr};

/// The payload type our SDP offers telephone-event (RFC 4733, `telephone-event/8000`,
/// events 0-16) at when asked ([`write`], [`super::ua::CallOptions::telephone_event`]).
pub const TELEPHONE_EVENT_PT: u8 = 101;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// One `m=audio` description.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioSdp {
    pub addr: IpAddr,
    pub port: u16,
    /// Payload types in preference order, as listed on the m= line.
    pub payloads: Vec<u8>,
    /// `(payload type, "encoding/rate")` from a=rtpmap lines.
    pub rtpmaps: Vec<(u8, String)>,
    /// `(payload type, "parameters")` from a=fmtp lines.
    pub fmtps: Vec<(u8, String)>,
    pub direction: Direction,
    pub ptime: Option<u32>,
}

impl AudioSdp {
    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// Encoding name of a payload type: a=rtpmap if given, else the RFC 3551 static table.
    pub fn encoding(&self, pt: u8) -> Option<String> {
        if let Some((_, enc)) = self.rtpmaps.iter().find(|(p, _)| *p == pt) {
            return Some(enc.split('/').next().unwrap_or("").to_ascii_uppercase());
        }
        match pt {
            0 => Some("PCMU".into()),
            8 => Some("PCMA".into()),
            _ => None,
        }
    }

    /// The full a=rtpmap text of a payload type (`"opus/48000/2"`), if given.
    pub fn rtpmap(&self, pt: u8) -> Option<&str> {
        self.rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, m)| m.as_str())
    }

    /// The a=fmtp parameters of a payload type, if given.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
    }

    /// The first payload type on the m= line that is a codec rather than telephone-event.
    pub fn first_codec(&self) -> Option<u8> {
        self.payloads
            .iter()
            .copied()
            .find(|&pt| self.encoding(pt).as_deref() != Some("TELEPHONE-EVENT"))
    }

    pub fn telephone_event(&self) -> Option<u8> {
        self.payloads
            .iter()
            .copied()
            .find(|&pt| self.encoding(pt).as_deref() == Some("TELEPHONE-EVENT"))
    }

    /// Parses the first audio stream of `body`. Media-level `c=` overrides session-level.
    pub fn parse(body: &str) -> Result<AudioSdp, String> {
        let mut session_addr: Option<IpAddr> = None;
        let mut media_addr: Option<IpAddr> = None;
        let mut in_audio = false;
        let mut seen_audio = false;
        let mut port = None;
        let mut payloads = Vec::new();
        let mut rtpmaps = Vec::new();
        let mut fmtps = Vec::new();
        let mut session_direction = Direction::SendRecv;
        let mut media_direction = None;
        let mut ptime = None;
        for line in body.lines() {
            let line = line.trim_end();
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    if seen_audio {
                        in_audio = false;
                        continue;
                    }
                    let mut fields = value.split_whitespace();
                    in_audio = fields.next() == Some("audio");
                    if in_audio {
                        seen_audio = true;
                        port = fields.next().and_then(|p| p.parse::<u16>().ok());
                        let _proto = fields.next();
                        payloads = fields.filter_map(|p| p.parse().ok()).collect();
                    }
                }
                "c" => {
                    let addr = value
                        .split_whitespace()
                        .nth(2)
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse().ok());
                    if seen_audio && in_audio {
                        media_addr = addr;
                    } else if !seen_audio {
                        session_addr = addr;
                    }
                }
                "a" if !seen_audio || in_audio => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let direction = match name {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    if let Some(d) = direction {
                        if in_audio {
                            media_direction = Some(d);
                        } else {
                            session_direction = d;
                        }
                    } else if name == "rtpmap" && in_audio {
                        let mut parts = arg.split_whitespace();
                        if let (Some(pt), Some(enc)) = (parts.next(), parts.next()) {
                            if let Ok(pt) = pt.parse() {
                                rtpmaps.push((pt, enc.to_string()));
                            }
                        }
                    } else if name == "fmtp" && in_audio {
                        let arg = arg.trim();
                        let (pt, params) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
                        if let Ok(pt) = pt.parse() {
                            fmtps.push((pt, params.trim().to_string()));
                        }
                    } else if name == "ptime" {
                        ptime = arg.trim().parse().ok();
                    }
                }
                _ => {}
            }
        }
        if !seen_audio {
            return Err(format!("no m=audio line in SDP:\n{body}"));
        }
        Ok(AudioSdp {
            addr: media_addr
                .or(session_addr)
                .ok_or_else(|| format!("no c= address for audio in SDP:\n{body}"))?,
            port: port.ok_or_else(|| format!("bad m=audio port in SDP:\n{body}"))?,
            payloads,
            rtpmaps,
            fmtps,
            direction: media_direction.unwrap_or(session_direction),
            ptime,
        })
    }
}

/// Our SDP: one audio stream at `rtp` offering `codecs` (static payload types with their
/// names, e.g. `(0, "PCMU")`, or dynamic ones with their full rtpmap text, e.g.
/// `(109, "opus/48000/2")`), plus telephone-event 101 when asked. Opus is offered the way
/// browsers do, with `minptime=10;useinbandfec=1`.
pub fn write(
    rtp: SocketAddr,
    session_version: u64,
    codecs: &[(u8, &str)],
    telephone_event: bool,
    direction: Direction,
) -> String {
    let mut pts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    if telephone_event {
        pts.push(TELEPHONE_EVENT_PT.to_string());
    }
    let mut sdp = format!(
        "v=0\r\no=chorus-tests 4242 {session_version} IN IP4 {ip}\r\ns=chorus-tests\r\n\
         c=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n",
        ip = rtp.ip(),
        port = rtp.port(),
        pts = pts.join(" ")
    );
    for (pt, name) in codecs {
        if name.contains('/') {
            sdp.push_str(&format!("a=rtpmap:{pt} {name}\r\n"));
        } else {
            sdp.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
        }
        if name.to_ascii_lowercase().starts_with("opus/") {
            sdp.push_str(&format!("a=fmtp:{pt} minptime=10;useinbandfec=1\r\n"));
        }
    }
    if telephone_event {
        sdp.push_str(&format!(
            "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT_PT} 0-16\r\n"
        ));
    }
    sdp.push_str(&format!("a=ptime:20\r\na={}\r\n", direction.attribute()));
    sdp
}

pub mod selftest {
    use super::*;

    pub fn sdp_round_trips_and_media_level_wins() {
        let ours = write(
            "127.0.0.1:30000".parse().expect("literal"),
            1,
            &[(0, "PCMU"), (8, "PCMA")],
            true,
            Direction::SendOnly,
        );
        let parsed = AudioSdp::parse(&ours).expect("our own SDP parses");
        assert_eq!(
            parsed.rtp_addr(),
            "127.0.0.1:30000".parse().expect("literal")
        );
        assert_eq!(parsed.payloads, vec![0, 8, 101]);
        assert_eq!(parsed.first_codec(), Some(0));
        assert_eq!(parsed.telephone_event(), Some(101));
        assert_eq!(parsed.direction, Direction::SendOnly);
        assert_eq!(parsed.ptime, Some(20));

        let other = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     a=recvonly\r\nm=audio 4000 RTP/AVP 101 8\r\nc=IN IP4 127.0.0.2\r\n\
                     a=rtpmap:101 telephone-event/8000\r\nm=video 5000 RTP/AVP 96\r\na=sendonly\r\n";
        let parsed = AudioSdp::parse(other).expect("parses");
        assert_eq!(
            parsed.rtp_addr(),
            "127.0.0.2:4000".parse().expect("literal")
        );
        assert_eq!(
            parsed.first_codec(),
            Some(8),
            "telephone-event is not a codec"
        );
        assert_eq!(
            parsed.direction,
            Direction::RecvOnly,
            "session level applies, video ignored"
        );
        assert!(AudioSdp::parse("v=0\r\n").is_err());

        let opus = write(
            "127.0.0.1:30000".parse().expect("literal"),
            1,
            &[(109, "opus/48000/2"), (0, "PCMU")],
            false,
            Direction::SendRecv,
        );
        let parsed = AudioSdp::parse(&opus).expect("parses");
        assert_eq!(parsed.payloads, vec![109, 0]);
        assert_eq!(parsed.encoding(109).as_deref(), Some("OPUS"));
        assert_eq!(parsed.rtpmap(109), Some("opus/48000/2"));
        assert_eq!(parsed.rtpmap(0), Some("PCMU/8000"));
        assert_eq!(parsed.fmtp(109), Some("minptime=10;useinbandfec=1"));
        assert_eq!(parsed.fmtp(0), None);
    }
}
