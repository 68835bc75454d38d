//! `GET /metrics` reports the live engine in the Prometheus text format: calls, rooms and
//! members, RTP counters, a well-formed tick-lateness histogram, and the operations families
//! (SIP by method and code, drops, loss and jitter, tick durations, webhooks, recordings),
//! which move when calls are made.

mod common;

use std::time::Duration;

use common::{Call, Engine, Source};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_calls_rooms_packets_and_tick_lateness() {
    let engine = Engine::start(&[]);
    let a = Call::dial(engine.sip, "metrics", Source::tone(440.0));
    let b = Call::dial(engine.sip, "metrics", Source::tone(1000.0));
    std::thread::sleep(Duration::from_millis(1500));
    let (status, text) = engine.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    assert_eq!(value(&text, "chorus_active_calls"), Some(2.0), "{text}");
    assert_eq!(value(&text, "chorus_rooms"), Some(1.0), "{text}");
    assert_eq!(value(&text, "chorus_members"), Some(2.0), "{text}");
    let packets_in: f64 = text
        .lines()
        .filter(|l| l.starts_with("chorus_rtp_packets_in_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        packets_in >= 100.0,
        "2 callers for 1.5 s: {packets_in} packets in"
    );
    // Every thread's histogram: cumulative buckets never decrease and +Inf equals the count.
    let threads: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("chorus_media_tick_lateness_seconds_count{"))
        .filter_map(|l| l.split('}').next())
        .collect();
    assert!(!threads.is_empty(), "{text}");
    for labels in threads {
        let count = value(
            &text,
            &format!("chorus_media_tick_lateness_seconds_count{{{labels}}}"),
        )
        .expect("count");
        let mut last = 0.0;
        for le in ["0.001", "0.002", "0.005", "0.01", "+Inf"] {
            let series =
                format!("chorus_media_tick_lateness_seconds_bucket{{le=\"{le}\",{labels}}}");
            let bucket =
                value(&text, &series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
            assert!(bucket >= last, "{series} decreases");
            last = bucket;
        }
        assert_eq!(last, count, "+Inf bucket equals the count for {labels}");
        assert!(count > 50.0, "ticks were counted: {count}");
    }
    drop((a, b));
}

/// The value of `series` (exact name with labels), or 0 when absent.
fn or_zero(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or(0.0)
}

/// Sum of every series of `family` (any labels).
fn family_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(engine: &Engine) -> String {
    let (status, text) = engine.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    text
}

#[test]
fn operations_families_are_exported_and_move_with_a_call() {
    let engine = Engine::start(&[]);
    let before = scrape(&engine);
    for family in [
        "chorus_calls",
        "chorus_draining",
        "chorus_sip_requests_received",
        "chorus_sip_responses_sent",
        "chorus_sip_requests_sent",
        "chorus_sip_responses_received",
        "chorus_sip_drops",
        "chorus_sip_bans",
        "chorus_sip_auth",
        "chorus_rtp_packets_lost",
        "chorus_rtp_jitter_seconds",
        "chorus_rtp_playout_delay_seconds",
        "chorus_rtp_underruns",
        "chorus_rtp_frames_trimmed",
        "chorus_media_tick_duration_seconds",
        "chorus_media_encodes",
        "chorus_media_decodes",
        "chorus_media_forwards",
        "chorus_webhooks",
        "chorus_webhook_retries",
        "chorus_webhooks_pending",
        "chorus_recordings_active",
        "chorus_recordings_started",
        "chorus_recordings_finished",
        "chorus_recordings_dropped_audio",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family} ")),
            "family {family} missing:\n{before}"
        );
    }
    assert_eq!(value(&before, "chorus_draining"), Some(0.0));
    // Low cardinality: no label names a call, a room, an account or an address.
    for forbidden in [
        "call_id=",
        "call_uuid=",
        "room=",
        "conference=",
        "account=",
        "addr=",
    ] {
        assert!(
            !before.contains(forbidden),
            "{forbidden} label in:\n{before}"
        );
    }

    let mut a = Call::dial(engine.sip, "moving", Source::tone(440.0));
    let mut b = Call::dial(engine.sip, "moving", Source::tone(1000.0));
    // Two talkers are each sent the other's packets as they came (forwards); the silent
    // listener hears the shared mix of both (one encode per tick).
    let mut c = Call::dial(engine.sip, "moving", Source::Silence);
    let recording = common::rest::http_request(
        engine.http,
        "POST",
        &format!("/v1/Account/{}/Conference/moving/Record/", common::ACCOUNT),
        common::rest::Credentials::Basic(common::ACCOUNT, common::TOKEN),
        &[],
        Some("{\"file_format\":\"wav\"}"),
    )
    .expect("record request");
    assert_eq!(recording.status, 202, "{recording}");
    std::thread::sleep(Duration::from_millis(1500));
    let during = scrape(&engine);
    assert_eq!(
        or_zero(&during, "chorus_calls_total") - or_zero(&before, "chorus_calls_total"),
        3.0,
        "{during}"
    );
    let invites = "chorus_sip_requests_received_total{method=\"INVITE\"}";
    assert!(
        or_zero(&during, invites) - or_zero(&before, invites) >= 3.0,
        "{during}"
    );
    let acks = "chorus_sip_requests_received_total{method=\"ACK\"}";
    assert!(or_zero(&during, acks) >= 2.0, "{during}");
    for code in ["100", "200"] {
        let series = format!("chorus_sip_responses_sent_total{{code=\"{code}\"}}");
        assert!(or_zero(&during, &series) >= 2.0, "{series}:\n{during}");
    }
    assert!(family_sum(&during, "chorus_media_encodes_total") > 50.0);
    assert!(family_sum(&during, "chorus_media_forwards_total") > 50.0);
    assert!(family_sum(&during, "chorus_media_decodes_total") > 50.0);
    // Each receiving leg's jitter is sampled once a second.
    assert!(
        family_sum(&during, "chorus_rtp_jitter_seconds_count") >= 2.0,
        "{during}"
    );
    // And its playout delay: at least one 20 ms frame per sample.
    let playouts = family_sum(&during, "chorus_rtp_playout_delay_seconds_count");
    assert!(playouts >= 2.0, "{during}");
    assert!(
        family_sum(&during, "chorus_rtp_playout_delay_seconds_sum") >= playouts * 0.020,
        "{during}"
    );
    let ticks = family_sum(&during, "chorus_media_tick_duration_seconds_count");
    assert!(ticks > 50.0, "tick durations counted: {ticks}");
    assert_eq!(
        value(&during, "chorus_recordings_active"),
        Some(1.0),
        "{during}"
    );
    assert_eq!(value(&during, "chorus_recordings_started_total"), Some(1.0));

    assert_eq!(a.hangup().expect("BYE"), 200);
    assert_eq!(b.hangup().expect("BYE"), 200);
    assert_eq!(c.hangup().expect("BYE"), 200);
    let done = "chorus_recordings_finished_total{outcome=\"completed\"}";
    let mut after = String::new();
    let finished = common::wait_until(Duration::from_secs(5), || {
        after = scrape(&engine);
        or_zero(&after, done) == 1.0
    });
    assert!(finished, "the room's end finishes its recording:\n{after}");
    assert_eq!(value(&after, "chorus_recordings_active"), Some(0.0));
    assert_eq!(value(&after, "chorus_active_calls"), Some(0.0));
    let byes = "chorus_sip_requests_received_total{method=\"BYE\"}";
    assert!(or_zero(&after, byes) >= 2.0, "{after}");
}
