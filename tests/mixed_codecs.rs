//! Rooms whose members speak different codecs: Opus (RFC 7587, mixed at 48 kHz), PCMU and
//! PCMA. Every member must hear the others in its own codec, never itself, and the room must
//! keep working when it reshapes between wideband and narrowband.

mod common;

use std::time::{Duration, Instant};

use common::media::{Codec, RxPacket, OPUS_FRAME_SAMPLES};
use common::sdp::AudioSdp;
use common::ua::{OFFER_OPUS, OFFER_PCMA, OFFER_PCMU};
use common::{assert_hears, steady_window, Call, CallOptions, Engine, Source};

/// Joins, talker detection (~40 ms hysteresis), jitter buffers and the 48 kHz room settle.
const SETTLE: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(2);

/// Places a call into `room` offering only `codec`; panics unless it is answered.
fn dial(engine: &Engine, room: &str, codec: (u8, &'static str), source: Source) -> Call {
    let mut options = CallOptions::new(room, source);
    options.codecs = vec![codec];
    Call::dial_with(engine.sip, options)
        .unwrap_or_else(|e| panic!("{codec:?} call into {room:?} failed: {e:#}"))
        .unwrap_or_else(|r| panic!("{codec:?} call into {room:?} rejected:\n{r}"))
}

/// The answer picks the one codec offered, at the offer's payload type, and nothing else.
fn assert_answered(label: &str, answer: &AudioSdp, (pt, name): (u8, &str)) {
    assert_eq!(answer.first_codec(), Some(pt), "{label}: answer {answer:?}");
    assert!(
        answer
            .payloads
            .iter()
            .all(|&p| p == pt || Some(p) == answer.telephone_event()),
        "{label}: only the offered payload types may be answered: {answer:?}"
    );
    if name.contains('/') {
        // RFC 7587 §7: `opus/48000/2` whatever is sent.
        assert!(
            answer
                .rtpmap(pt)
                .is_some_and(|m| m.eq_ignore_ascii_case(name)),
            "{label}: a=rtpmap:{pt} {name} expected: {answer:?}"
        );
        assert!(
            answer.fmtp(pt).is_some_and(|f| f
                .split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("useinbandfec=1"))),
            "{label}: a=fmtp:{pt} useinbandfec=1 expected: {answer:?}"
        );
    } else {
        assert_eq!(
            answer.encoding(pt).as_deref(),
            Some(name),
            "{label}: {answer:?}"
        );
    }
}

/// Packets to `call` in `window` are all of its codec, about 50/s, one 20 ms frame apart in
/// RTP time (960 units for Opus, 160 for G.711: RFC 7587 §4.1, RFC 3551 §4.5.14).
fn assert_stream(label: &str, call: &Call, window: (Instant, Instant)) -> Vec<RxPacket> {
    let codec = call.media.codec();
    let packets = call.media.packets_between(window.0, window.1);
    let expected = window.1.duration_since(window.0).as_secs_f64() * 50.0;
    let others: Vec<u8> = packets
        .iter()
        .map(|p| p.payload_type)
        .filter(|&pt| pt != codec.payload_type())
        .collect();
    assert!(
        others.is_empty(),
        "{label}: {} packets of payload types {others:?} besides {codec:?}",
        others.len()
    );
    let n = packets.len() as f64;
    assert!(
        n >= 0.9 * expected && n <= 1.1 * expected + 2.0,
        "{label}: {n} {} packets in {:?}, expected {expected:.0} (50/s)",
        codec.name(),
        window.1.duration_since(window.0)
    );
    let ticks = codec.frame_ticks();
    let mut sorted = packets.clone();
    sorted.sort_by_key(|p| p.seq.wrapping_sub(packets[0].seq));
    let bad: Vec<(u16, u32)> = sorted
        .windows(2)
        .filter(|w| w[0].ssrc == w[1].ssrc)
        .map(|w| {
            (
                w[1].seq.wrapping_sub(w[0].seq),
                w[1].timestamp.wrapping_sub(w[0].timestamp),
            )
        })
        .filter(|&(dseq, dts)| dts != ticks * u32::from(dseq))
        .collect();
    assert!(
        bad.is_empty(),
        "{label}: RTP timestamps must step by {ticks} per packet; (Δseq, Δts) off: {:?}",
        &bad[..bad.len().min(10)]
    );
    let sizes: Vec<usize> = packets.iter().map(|p| p.payload_len).collect();
    eprintln!(
        "{label}: {} {} packets/{:.1} s, timestamps +{ticks}, payload {}..{} bytes",
        packets.len(),
        codec.name(),
        window.1.duration_since(window.0).as_secs_f64(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );
    packets
}

#[test]
fn opus_pcmu_and_pcma_members_hear_each_other() {
    let engine = Engine::start(&[]);
    let a = dial(&engine, "mixed", OFFER_OPUS, Source::tone(440.0));
    let b = dial(&engine, "mixed", OFFER_PCMU, Source::tone(1000.0));
    let c = dial(&engine, "mixed", OFFER_PCMA, Source::Silence);
    assert_answered("A (Opus)", &a.remote_sdp, OFFER_OPUS);
    assert_answered("B (PCMU)", &b.remote_sdp, OFFER_PCMU);
    assert_answered("C (PCMA)", &c.remote_sdp, OFFER_PCMA);
    assert_eq!(a.media.codec(), Codec::Opus { pt: OFFER_OPUS.0 });
    assert_eq!(c.media.codec(), Codec::Pcma);

    let window = steady_window(SETTLE, WINDOW);
    assert_hears("A (Opus, sends 440 Hz)", &a, window, &[1000.0], &[440.0]);
    assert_hears("B (PCMU, sends 1000 Hz)", &b, window, &[440.0], &[1000.0]);
    assert_hears("C (PCMA, silent)", &c, window, &[440.0, 1000.0], &[]);

    let to_a = assert_stream("to A", &a, window);
    assert!(
        to_a.iter()
            .all(|p| p.samples.len() == OPUS_FRAME_SAMPLES / 6),
        "every packet to A decodes as one 20 ms Opus frame"
    );
    assert_stream("to B", &b, window);
    assert_stream("to C", &c, window);
}

#[test]
fn two_opus_members_hear_each_other() {
    let engine = Engine::start(&[]);
    let a = dial(&engine, "wideband", OFFER_OPUS, Source::tone(600.0));
    let b = dial(&engine, "wideband", OFFER_OPUS, Source::tone(1300.0));
    assert_answered("A", &a.remote_sdp, OFFER_OPUS);
    assert_answered("B", &b.remote_sdp, OFFER_OPUS);
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("A (Opus, sends 600 Hz)", &a, window, &[1300.0], &[600.0]);
    assert_hears("B (Opus, sends 1300 Hz)", &b, window, &[600.0], &[1300.0]);
    assert_stream("to A", &a, window);
    assert_stream("to B", &b, window);
}

#[test]
fn room_returns_to_narrowband_after_the_opus_member_leaves() {
    let engine = Engine::start(&[]);
    let mut a = dial(&engine, "reshape", OFFER_OPUS, Source::tone(440.0));
    let b = dial(&engine, "reshape", OFFER_PCMU, Source::Silence);
    let c = dial(&engine, "reshape", OFFER_PCMU, Source::tone(700.0));
    assert_answered("A", &a.remote_sdp, OFFER_OPUS);

    // Wideband room: the PCMU members hear the Opus member through the resamplers.
    let window = steady_window(SETTLE, WINDOW);
    assert_hears("B with A in the room", &b, window, &[440.0, 700.0], &[]);
    assert_hears("C with A in the room", &c, window, &[440.0], &[700.0]);
    assert_hears("A (Opus)", &a, window, &[700.0], &[440.0]);

    let left = Instant::now();
    assert_eq!(a.hangup().expect("BYE answered"), 200);
    let window = steady_window(SETTLE, WINDOW);
    // Through the reshaping itself (from just before the BYE to well after it) every 20 ms
    // frame B receives still carries C's tone: no dropout, no burst of silence or noise.
    let transition = b
        .media
        .packets_between(left - Duration::from_millis(200), left + SETTLE);
    let frame_levels: Vec<f64> = transition
        .iter()
        .map(|p| common::level_db(&p.samples, 700.0))
        .collect();
    let quietest = frame_levels.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!(
        "B through the reshaping: {} frames, 700 Hz per frame {quietest:.1} dBFS at the quietest",
        frame_levels.len()
    );
    assert!(
        frame_levels.len() >= 50,
        "B: only {} packets in the 1.2 s around A's BYE",
        frame_levels.len()
    );
    assert!(
        quietest > -20.0,
        "B: C's 700 Hz drops to {quietest:.1} dBFS in a frame while the room reshapes \
         (per-frame levels: {frame_levels:.1?})"
    );
    assert_hears("B after A left", &b, window, &[700.0], &[440.0]);
    assert_hears("C after A left", &c, window, &[], &[440.0, 700.0]);
    assert_stream("to B after A left", &b, window);
    // Reshaping back to 8 kHz must not interrupt the others' streams.
    for (label, call) in [("B", &b), ("C", &c)] {
        let gap = call.media.max_gap_between(left, window.1);
        eprintln!("{label}: longest gap from A's BYE to the end of the window: {gap:?}");
        assert!(
            gap < Duration::from_millis(200),
            "{label}: {gap:?} without a packet while the room reshaped"
        );
    }
}
