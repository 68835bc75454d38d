//! Checks of the test support itself (µ-law, tone analysis, SDP/SIP/RTP helpers, SIPp
//! scenario and output parsing). None of these needs the engine, so they show that a failure
//! elsewhere is the engine's and not the harness's.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::audio::selftest as audio;
use common::sipp::{stream_scenario, Sipp};
use common::ua::response_to;
use common::{audio::Tone, media::Media, sdp, Expectation, Source, LOCALHOST};

#[test]
fn analysis_ulaw_known_code_words() {
    audio::ulaw_known_code_words();
}

#[test]
fn analysis_ulaw_round_trip_error_is_within_one_quantisation_step() {
    audio::ulaw_round_trip_error_is_within_one_quantisation_step();
}

#[test]
fn analysis_ulaw_decode_is_monotonic_within_each_sign() {
    audio::ulaw_decode_is_monotonic_within_each_sign();
}

#[test]
fn analysis_goertzel_measures_a_pure_tone_at_its_level() {
    audio::goertzel_measures_a_pure_tone_at_its_level();
}

#[test]
fn analysis_goertzel_separates_two_mixed_tones() {
    audio::goertzel_separates_two_mixed_tones();
}

#[test]
fn analysis_silence_and_noise_are_not_mistaken_for_a_tone() {
    audio::silence_and_noise_are_not_mistaken_for_a_tone();
}

#[test]
fn analysis_tone_survives_ulaw_coding() {
    audio::tone_survives_ulaw_coding();
}

#[test]
fn analysis_alaw_known_code_words_and_round_trip() {
    audio::alaw_known_code_words_and_round_trip();
}

#[test]
fn analysis_alaw_agrees_with_the_engines_tables() {
    audio::alaw_agrees_with_the_engines_tables();
}

#[test]
fn analysis_tone_survives_alaw_coding() {
    audio::tone_survives_alaw_coding();
}

#[test]
fn analysis_ulaw_tone_file_has_whole_packets_and_the_tone() {
    audio::ulaw_tone_file_has_whole_packets_and_the_tone();
}

#[test]
fn sdp_round_trips_and_media_level_wins() {
    common::sdp::selftest::sdp_round_trips_and_media_level_wins();
}

#[test]
fn rtp_header_round_trips_and_rejects_garbage() {
    common::media::selftest::rtp_header_round_trips_and_rejects_garbage();
}

#[test]
fn media_endpoints_exchange_tones_at_50_packets_per_second() {
    common::media::selftest::media_endpoints_exchange_tones_at_50_packets_per_second();
}

#[test]
fn media_endpoints_exchange_opus_and_pcma_tones() {
    common::media::selftest::media_endpoints_exchange_opus_and_pcma_tones();
}

#[test]
fn media_endpoints_exchange_rfc4733_dtmf() {
    common::media::selftest::media_endpoints_exchange_rfc4733_dtmf();
}

#[test]
fn rsip_headers_are_read_by_name_and_params() {
    common::ua::selftest::rsip_headers_are_read_by_name_and_params();
}

#[test]
fn bye_from_the_engine_is_answered_with_matching_headers() {
    common::ua::selftest::bye_from_the_engine_is_answered_with_matching_headers();
}

#[test]
fn our_requests_parse_and_frame() {
    common::ua::selftest::our_requests_parse_and_frame();
}

#[test]
fn base64_matches_rfc4648_vectors() {
    common::selftest::base64_matches_rfc4648_vectors();
}

#[test]
fn json_string_array_is_extracted() {
    common::selftest::json_string_array_is_extracted();
}

#[test]
fn rtp_ranges_are_even_disjoint_and_below_the_ephemeral_ports() {
    common::selftest::rtp_ranges_are_even_disjoint_and_below_the_ephemeral_ports();
}

#[test]
fn json_round_trips_rest_bodies() {
    common::json::selftest::json_round_trips_rest_bodies();
}

#[test]
fn http_responses_parse_chunked_and_plain() {
    common::rest::selftest::chunked_and_plain_responses_parse();
}

#[test]
fn file_server_serves_its_file() {
    common::rest::selftest::file_server_serves_its_file();
}

#[test]
fn app_serves_and_records() {
    common::app::selftest::app_serves_and_records();
}

#[test]
fn app_form_coding_round_trips() {
    common::app::selftest::form_coding_round_trips();
}

#[test]
fn app_audio_fixtures_are_wav_and_mp3() {
    common::app::selftest::audio_fixtures_are_wav_and_mp3();
}

#[test]
fn sipp_stat_csv_final_counters_are_read() {
    common::sipp::selftest::stat_csv_final_counters_are_read();
}

/// Our SIPp scenario against a minimal answerer of ours (no engine): SIPp must complete the
/// call (exit 0) and the RTP it streams must be the 440 Hz tone file as 50 packets/s PCMU.
#[test]
fn sipp_stream_scenario_streams_the_tone_file_to_the_answerer() {
    let sip = UdpSocket::bind((LOCALHOST, 0)).expect("bind SIP");
    sip.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let sip_addr = sip.local_addr().expect("addr");
    let media = Media::start(Source::Silence).expect("media");
    let answer = sdp::write(
        media.local,
        1,
        &[(0, "PCMU")],
        false,
        sdp::Direction::SendRecv,
    );

    let mut sipp = Sipp::new(&[
        "-sf",
        &stream_scenario().display().to_string(),
        "-s",
        "s1",
        &sip_addr.to_string(),
        "-m",
        "1",
        "-d",
        "3000",
        "-timeout",
        "30s",
        "-timeout_error",
    ]);
    sipp.deadline = Duration::from_secs(40);
    common::audio::write_ulaw_tone_file(&sipp.dir().join("tone.ulaw"), Tone::new(440.0, 0.3), 1)
        .expect("write tone.ulaw");
    let running = sipp.spawn();

    let (mut acked, mut bye) = (None, None);
    let mut invite_uri = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 65_536];
    while bye.is_none() && Instant::now() < deadline {
        let Ok((len, from)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let request = rsip::Request::try_from(&buf[..len])
            .unwrap_or_else(|e| panic!("SIPp sent an unparseable request ({e:?})"));
        let reply = match request.method.to_string().as_str() {
            "INVITE" => {
                invite_uri = Some(request.uri.to_string());
                let offer = sdp::AudioSdp::parse(&String::from_utf8_lossy(&request.body))
                    .expect("the scenario offers SDP");
                assert_eq!(offer.first_codec(), Some(0), "PCMU first: {offer:?}");
                assert_eq!(offer.telephone_event(), Some(101));
                Some(response_to(&request, "200 OK", Some("uas1"), Some(&answer)))
            }
            "ACK" => {
                acked.get_or_insert_with(Instant::now);
                None
            }
            "BYE" => {
                bye = Some(Instant::now());
                Some(response_to(&request, "200 OK", None, None))
            }
            other => panic!("unexpected {other} from SIPp"),
        };
        if let Some(reply) = reply {
            sip.send_to(reply.as_bytes(), from).expect("reply");
        }
    }
    let run = running.wait();
    assert_eq!(
        invite_uri.as_deref().map(|u| u.starts_with("sip:s1@")),
        Some(true)
    );
    let (acked, bye) = (acked.expect("SIPp ACKed"), bye.expect("SIPp sent BYE"));
    assert!(run.status.is_some_and(|s| s.success()), "{}", run.report());
    assert_eq!(
        run.stats.map(|s| (s.successful, s.failed)),
        Some((1, 0)),
        "{}",
        run.report()
    );

    let window = (
        acked + Duration::from_millis(300),
        bye - Duration::from_millis(200),
    );
    let packets = media.packets_between(window.0, window.1);
    let expected = window.1.duration_since(window.0).as_secs_f64() * 50.0;
    assert!(
        (packets.len() as f64 - expected).abs() <= 0.1 * expected + 2.0,
        "{} packets, expected about {expected:.0}",
        packets.len()
    );
    assert!(packets
        .iter()
        .all(|p| p.payload_type == 0 && p.samples.len() == 160));
    Expectation::new(&[440.0], &[1000.0])
        .check(&media.audio_between(window.0, window.1))
        .expect("SIPp streams the 440 Hz file");
}
