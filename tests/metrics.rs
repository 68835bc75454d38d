//! `GET /metrics` reports the live engine in the Prometheus text format: calls, rooms and
//! members, RTP counters, and a well-formed tick-lateness histogram.

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
