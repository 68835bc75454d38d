//! Offer/answer matrix (RFC 3264 §6, RFC 4566).
#![allow(clippy::unwrap_used)]
use std::net::SocketAddr;

use chorus_sip::{
    build_answer, build_offer, negotiate, parse_sdp, Codec, Direction, LocalMedia, OpusParams,
    SdpError, OFFER_OPUS_PT,
};

fn local(codecs: &[Codec]) -> LocalMedia {
    LocalMedia {
        addr: "192.0.2.1:20000".parse().unwrap(),
        session_id: 42,
        session_version: 1,
        codecs: codecs.to_vec(),
        telephone_event: true,
    }
}

fn offer(conn: &str, m: &str, attrs: &str) -> String {
    format!("v=0\r\no=- 7 9 IN IP4 192.0.2.10\r\ns=-\r\n{conn}t=0 0\r\n{m}\r\n{attrs}")
}

const C4: &str = "c=IN IP4 192.0.2.10\r\n";

/// (codec, payload type, telephone-event PT, remote direction, remote address)
type Expect = (Codec, u8, Option<u8>, Direction, Option<SocketAddr>);

#[test]
fn offer_answer_matrix() {
    struct Case {
        name: &'static str,
        sdp: String,
        local: Vec<Codec>,
        want: Result<Expect, ()>,
    }
    let both = vec![Codec::Pcmu, Codec::Pcma];
    let all = vec![Codec::Opus, Codec::Pcmu, Codec::Pcma];
    let addr = Some("192.0.2.10:4000".parse().unwrap());
    let cases = vec![
        Case {
            name: "Opus offered first is chosen at the offer's dynamic PT",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 111 0 8", "a=rtpmap:111 opus/48000/2\r\n"),
            local: all.clone(),
            want: Ok((Codec::Opus, 111, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "Opus after PCMU: the offerer's order wins over ours",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 opus/48000/2\r\n"),
            local: all.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "Opus encoding name is case-insensitive",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 98", "a=rtpmap:98 OPUS/48000/2\r\n"),
            local: all.clone(),
            want: Ok((Codec::Opus, 98, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "opus at a clock other than 48000 is not RFC 7587 Opus",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 97 8", "a=rtpmap:97 opus/16000\r\n"),
            local: all.clone(),
            want: Ok((Codec::Pcma, 8, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "Opus-only offer against a G.711-only engine",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 111", "a=rtpmap:111 opus/48000/2\r\n"),
            local: both.clone(),
            want: Err(()),
        },
        Case {
            name: "offerer's preference order wins over ours",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 8 0", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"),
            local: both.clone(),
            want: Ok((Codec::Pcma, 8, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "PCMA only",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000\r\n"),
            local: both.clone(),
            want: Ok((Codec::Pcma, 8, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "unknown codecs only",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 18 96", "a=rtpmap:96 opus/48000/2\r\n"),
            local: both.clone(),
            want: Err(()),
        },
        Case {
            name: "we lack the only offered codec",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 0", ""),
            local: vec![Codec::Pcma],
            want: Err(()),
        },
        Case {
            name: "static payload types without rtpmap",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 0 8", ""),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "dynamic telephone-event PT is kept",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, Some(96), Direction::SendRecv, addr)),
        },
        Case {
            name: "sendonly hold answered recvonly",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 0", "a=sendonly\r\n"),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendOnly, addr)),
        },
        Case {
            name: "session-level inactive",
            sdp: format!("v=0\r\no=- 7 9 IN IP4 192.0.2.10\r\ns=-\r\n{C4}t=0 0\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n"),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::Inactive, addr)),
        },
        Case {
            name: "RFC 2543 hold with c=0.0.0.0",
            sdp: offer("c=IN IP4 0.0.0.0\r\n", "m=audio 4000 RTP/AVP 0", ""),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendRecv, None)),
        },
        Case {
            name: "unhold back to sendrecv",
            sdp: offer(C4, "m=audio 4000 RTP/AVP 0", "a=sendrecv\r\n"),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendRecv, addr)),
        },
        Case {
            name: "IPv6 connection line",
            sdp: offer("c=IN IP6 2001:db8::10\r\n", "m=audio 4000 RTP/AVP 0", ""),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendRecv, Some("[2001:db8::10]:4000".parse().unwrap()))),
        },
        Case {
            name: "media-level c= overrides session-level",
            sdp: offer("c=IN IP4 198.51.100.1\r\n", "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.10", ""),
            local: both.clone(),
            want: Ok((Codec::Pcmu, 0, None, Direction::SendRecv, addr)),
        },
    ];
    for case in cases {
        let remote =
            parse_sdp(case.sdp.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = negotiate(&remote, &local(&case.local));
        match (got, case.want) {
            (Ok(n), Ok((codec, pt, te, dir, addr))) => {
                assert_eq!(
                    (
                        n.codec,
                        n.pt,
                        n.telephone_event_pt,
                        n.remote_direction,
                        n.remote_addr
                    ),
                    (codec, pt, te, dir, addr),
                    "{}",
                    case.name
                );
                assert_eq!(n.local_direction, dir.answer(), "{}", case.name);
                assert_eq!(n.ptime, 20);
            }
            (Err(SdpError::NoCommonCodec), Err(())) => {}
            (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
        }
    }
}

#[test]
fn answer_round_trips_through_parse_sdp() {
    let remote = parse_sdp(
        offer(
            C4,
            "m=audio 4000 RTP/AVP 8 0 96",
            "a=rtpmap:96 telephone-event/8000\r\na=sendonly\r\na=ptime:30\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(remote.ptime, Some(30));
    assert_eq!(remote.session_id, 7);
    assert_eq!(remote.session_version, 9);
    let l = local(&[Codec::Pcmu, Codec::Pcma]);
    let n = negotiate(&remote, &l).unwrap();
    let answer = build_answer(&l, &n);
    let text = String::from_utf8(answer.clone()).unwrap();
    assert!(text.contains("m=audio 20000 RTP/AVP 8 96\r\n"), "{text}");
    assert!(text.contains("a=fmtp:96 0-16\r\n"));
    assert!(text.contains("a=recvonly\r\n"));
    let back = parse_sdp(&answer).unwrap();
    assert_eq!(back.addr, Some(l.addr));
    assert_eq!(
        back.formats,
        vec![
            (8, "PCMA".to_string(), 8000),
            (96, "telephone-event".to_string(), 8000)
        ]
    );
    assert_eq!(back.telephone_event_pt, Some(96));
    assert_eq!(back.direction, Direction::RecvOnly);
    assert_eq!(back.ptime, Some(20));
    assert_eq!((back.session_id, back.session_version), (42, 1));
}

#[test]
fn telephone_event_is_dropped_when_we_do_not_want_it() {
    let remote = parse_sdp(
        offer(
            C4,
            "m=audio 4000 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let mut l = local(&[Codec::Pcmu]);
    l.telephone_event = false;
    let n = negotiate(&remote, &l).unwrap();
    assert_eq!(n.telephone_event_pt, None);
    assert!(!String::from_utf8(build_answer(&l, &n))
        .unwrap()
        .contains("telephone-event"));
}

#[test]
fn offer_for_late_offer_lists_every_codec_and_answer_in_ack_negotiates() {
    let l = local(&[Codec::Pcmu, Codec::Pcma]);
    let o = build_offer(&l);
    let parsed = parse_sdp(&o).unwrap();
    assert_eq!(
        parsed.formats,
        vec![
            (0, "PCMU".into(), 8000),
            (8, "PCMA".into(), 8000),
            (101, "telephone-event".into(), 8000)
        ]
    );
    assert_eq!(parsed.direction, Direction::SendRecv);
    // The answer from the ACK: first common codec wins.
    let ack_answer = offer(
        C4,
        "m=audio 4000 RTP/AVP 8 101",
        "a=rtpmap:101 telephone-event/8000\r\n",
    );
    let n = negotiate(&parse_sdp(ack_answer.as_bytes()).unwrap(), &l).unwrap();
    assert_eq!(
        (n.codec, n.pt, n.telephone_event_pt),
        (Codec::Pcma, 8, Some(101))
    );
}

#[test]
fn ipv6_local_address_gives_ip6_lines() {
    let mut l = local(&[Codec::Pcmu]);
    l.addr = "[2001:db8::1]:30000".parse().unwrap();
    let text = String::from_utf8(build_offer(&l)).unwrap();
    assert!(text.contains("c=IN IP6 2001:db8::1\r\n"));
    assert_eq!(parse_sdp(text.as_bytes()).unwrap().addr, Some(l.addr));
}

#[test]
fn invalid_sdp_is_an_error() {
    assert!(matches!(parse_sdp(b"garbage"), Err(SdpError::Syntax(_))));
    assert!(matches!(
        parse_sdp(offer(C4, "m=video 4000 RTP/AVP 31", "").as_bytes()),
        Err(SdpError::NoAudio)
    ));
    // The sdp crate already refuses out-of-range ports; either error is fine.
    assert!(matches!(
        parse_sdp(offer(C4, "m=audio 70000 RTP/AVP 0", "").as_bytes()),
        Err(SdpError::BadPort(_) | SdpError::Syntax(_))
    ));
    assert!(matches!(
        parse_sdp(offer("", "m=audio 4000 RTP/AVP 0", "").as_bytes()),
        Err(SdpError::NoConnection)
    ));
    assert!(matches!(
        parse_sdp(
            offer(
                "c=IN IP4 host.example.com\r\n",
                "m=audio 4000 RTP/AVP 0",
                ""
            )
            .as_bytes()
        ),
        Err(SdpError::BadAddress(_))
    ));
    // Port 0 means the stream is rejected: no address to send to.
    assert_eq!(
        parse_sdp(offer(C4, "m=audio 0 RTP/AVP 0", "").as_bytes())
            .unwrap()
            .addr,
        None
    );
}

#[test]
fn opus_fmtp_is_parsed_and_fec_and_dtx_are_answered() {
    let remote = parse_sdp(
        offer(
            C4,
            "m=audio 4000 RTP/AVP 111 0 101",
            "a=rtpmap:111 opus/48000/2\r\n\
             a=fmtp:111 minptime=10;useinbandfec=1; usedtx=1; maxplaybackrate=16000; stereo=1; sprop-stereo=1\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(remote.fmtp.len(), 2);
    assert_eq!(remote.fmtp_for(101), Some("0-15"));
    let l = local(&[Codec::Opus, Codec::Pcmu]);
    let n = negotiate(&remote, &l).unwrap();
    assert_eq!(
        (n.codec, n.pt, n.telephone_event_pt),
        (Codec::Opus, 111, Some(101))
    );
    assert_eq!(
        n.opus,
        Some(OpusParams {
            inband_fec: true,
            dtx: true,
            max_playback_rate: Some(16_000),
        })
    );
    let answer = build_answer(&l, &n);
    let text = String::from_utf8(answer.clone()).unwrap();
    assert!(text.contains("m=audio 20000 RTP/AVP 111 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"), "{text}");
    assert!(
        text.contains("a=fmtp:111 useinbandfec=1; usedtx=1\r\n"),
        "{text}"
    );
    assert!(text.contains("a=ptime:20\r\n"));
    let back = parse_sdp(&answer).unwrap();
    assert_eq!(back.formats[0], (111, "opus".to_string(), 48_000));
    assert_eq!(
        back.fmtp_for(111).map(OpusParams::parse),
        Some(OpusParams {
            inband_fec: true,
            dtx: true,
            max_playback_rate: None,
        })
    );
}

#[test]
fn opus_without_fmtp_gets_defaults_and_we_still_ask_for_fec_but_not_dtx() {
    let remote = parse_sdp(
        offer(
            C4,
            "m=audio 4000 RTP/AVP 96 0",
            // An fmtp for another payload type must not leak into Opus's parameters.
            "a=rtpmap:96 opus/48000/2\r\na=fmtp:0 useinbandfec=1; usedtx=1\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let l = local(&[Codec::Opus]);
    let n = negotiate(&remote, &l).unwrap();
    assert_eq!(n.opus, Some(OpusParams::default()));
    let text = String::from_utf8(build_answer(&l, &n)).unwrap();
    assert!(text.contains("a=fmtp:96 useinbandfec=1\r\n"), "{text}");
    assert!(!text.contains("usedtx"), "{text}");
}

#[test]
fn g711_negotiation_carries_no_opus_params() {
    let remote = parse_sdp(
        offer(
            C4,
            "m=audio 4000 RTP/AVP 0 111",
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let l = local(&[Codec::Opus, Codec::Pcmu]);
    let n = negotiate(&remote, &l).unwrap();
    assert_eq!((n.codec, n.opus), (Codec::Pcmu, None));
    let text = String::from_utf8(build_answer(&l, &n)).unwrap();
    assert!(
        !text.contains("opus") && !text.contains("a=fmtp:0"),
        "{text}"
    );
}

#[test]
fn malformed_opus_fmtp_values_fall_back_to_defaults() {
    let p = OpusParams::parse("useinbandfec=yes;usedtx;maxplaybackrate=lots;=1;;USEDTX = 1");
    assert_eq!(
        p,
        OpusParams {
            inband_fec: false,
            dtx: true,
            max_playback_rate: None,
        }
    );
}

#[test]
fn offer_with_opus_round_trips_and_negotiates_opus_from_the_answer() {
    let l = local(&[Codec::Opus, Codec::Pcmu, Codec::Pcma]);
    let o = build_offer(&l);
    let text = String::from_utf8(o.clone()).unwrap();
    assert!(
        text.contains("m=audio 20000 RTP/AVP 111 0 8 101\r\n"),
        "{text}"
    );
    let parsed = parse_sdp(&o).unwrap();
    assert_eq!(
        parsed.formats,
        vec![
            (OFFER_OPUS_PT, "opus".into(), 48_000),
            (0, "PCMU".into(), 8000),
            (8, "PCMA".into(), 8000),
            (101, "telephone-event".into(), 8000)
        ]
    );
    assert_eq!(parsed.fmtp_for(OFFER_OPUS_PT), Some("useinbandfec=1"));
    assert_eq!(parsed.ptime, Some(20));
    // The answer (in the ACK of a late offer) keeps our PT and turns DTX on.
    let ack_answer = offer(
        C4,
        "m=audio 4000 RTP/AVP 111 101",
        "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=0;usedtx=1\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
    );
    let n = negotiate(&parse_sdp(ack_answer.as_bytes()).unwrap(), &l).unwrap();
    assert_eq!((n.codec, n.pt), (Codec::Opus, OFFER_OPUS_PT));
    assert_eq!(
        n.opus,
        Some(OpusParams {
            inband_fec: false,
            dtx: true,
            max_playback_rate: None,
        })
    );
}

#[test]
fn audio_level_extension_is_accepted_and_echoed_receive_only() {
    let sdp = offer(
        C4,
        "m=audio 4000 RTP/AVP 0",
        "a=extmap:3 urn:ietf:params:rtp-hdrext:ssrc-audio-level vad=on\r\n",
    );
    let remote = parse_sdp(sdp.as_bytes()).unwrap();
    assert_eq!(remote.audio_level_ext, Some(3));
    let n = negotiate(&remote, &local(&[Codec::Pcmu])).unwrap();
    assert_eq!(n.audio_level_ext, Some(3));
    let answer = String::from_utf8(build_answer(&local(&[Codec::Pcmu]), &n)).unwrap();
    assert!(
        answer.contains("a=extmap:3/recvonly urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"),
        "{answer}"
    );
    // Other extensions and two-byte-only ids are not taken for the audio level.
    let sdp = offer(
        C4,
        "m=audio 4000 RTP/AVP 0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:20 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n",
    );
    assert_eq!(parse_sdp(sdp.as_bytes()).unwrap().audio_level_ext, None);
}
