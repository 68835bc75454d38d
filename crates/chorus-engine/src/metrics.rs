//! Prometheus metrics of the engine, read at scrape time from the counters the media threads
//! keep in relaxed atomics (so a tick never touches a metrics library) and from the registry.
//! Labels are low-cardinality: the media thread index, never call ids or room names.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::sip_security::SipCounters;
use crate::Shared;

/// Upper bounds (seconds) of the tick-lateness buckets the media threads count.
const LATENESS_BOUNDS: [f64; 4] = [0.001, 0.002, 0.005, 0.010];

#[derive(Clone)]
pub struct EngineCollector {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl EngineCollector {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.shared;
        gauge(
            &mut encoder,
            "chorus_active_calls",
            "Calls in progress",
            shared
                .active_calls
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        )?;
        gauge(
            &mut encoder,
            "chorus_rooms",
            "Live conference rooms",
            shared.rooms.len() as i64,
        )?;
        let threads = shared.mixer.threads();
        let snapshots: Vec<_> = (0..threads).filter_map(|t| shared.mixer.stats(t)).collect();
        gauge(
            &mut encoder,
            "chorus_members",
            "Call legs on the media threads",
            snapshots.iter().map(|s| s.legs as i64).sum(),
        )?;
        type Field = fn(&chorus_mixer::ThreadStatsSnapshot) -> u64;
        let counters: [(&str, &str, Field); 12] = [
            ("chorus_media_ticks", "20 ms periods run", |s| s.ticks),
            (
                "chorus_media_tick_overruns",
                "Tick slots whose work ended after their next period's deadline",
                |s| s.overruns,
            ),
            (
                "chorus_media_skipped_ticks",
                "Periods skipped after a stall",
                |s| s.skipped_ticks,
            ),
            ("chorus_rtp_packets_in", "RTP datagrams received", |s| {
                s.packets_in
            }),
            ("chorus_rtp_packets_out", "RTP packets sent", |s| {
                s.packets_out
            }),
            (
                "chorus_rtp_malformed",
                "RTP datagrams dropped as malformed",
                |s| s.malformed,
            ),
            (
                "chorus_rtp_foreign_dropped",
                "RTP datagrams dropped for not coming from the leg's learned peer",
                |s| s.foreign_dropped,
            ),
            ("chorus_rtp_send_errors", "RTP sends that failed", |s| {
                s.send_errors
            }),
            ("chorus_media_encodes", "Frames encoded", |s| s.encodes),
            ("chorus_media_decodes", "Frames decoded", |s| s.decodes),
            (
                "chorus_media_encoder_forks",
                "Opus encoders forked from a shared encoder",
                |s| s.forks,
            ),
            (
                "chorus_media_silence_sends",
                "Packets sent from the cached silence payload",
                |s| s.silence_sends,
            ),
        ];
        for (name, help, field) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (t, s) in snapshots.iter().enumerate() {
                let thread = t.to_string();
                let labels = [("thread", thread.as_str())];
                let m = family.encode_family(&labels)?;
                ConstCounter::new(field(s)).encode(m)?;
            }
        }
        encode_sip(&mut encoder, &shared.sip_counters)?;
        let mut family = encoder.encode_descriptor(
            "chorus_media_tick_lateness_seconds",
            "How late a media thread woke for its tick slots",
            None,
            MetricType::Histogram,
        )?;
        for (t, s) in snapshots.iter().enumerate() {
            let thread = t.to_string();
            let labels = [("thread", thread.as_str())];
            // prometheus-client takes per-bucket counts and accumulates them itself.
            let mut buckets = Vec::with_capacity(5);
            for (i, bound) in LATENESS_BOUNDS.iter().enumerate() {
                buckets.push((*bound, s.late_buckets[i]));
            }
            buckets.push((f64::INFINITY, s.late_buckets[4]));
            let count: u64 = s.late_buckets.iter().sum();
            let mut m = family.encode_family(&labels)?;
            m.encode_histogram::<Vec<(String, String)>>(
                s.late_us_total as f64 / 1e6,
                count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

/// SIP input dropped unanswered (by reason), sources banned, and digest outcomes.
fn encode_sip(
    encoder: &mut DescriptorEncoder,
    counters: &SipCounters,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "chorus_sip_drops",
        "SIP messages dropped without an answer, by reason",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in counters.drops() {
        let labels = [("reason", reason)];
        let m = family.encode_family(&labels)?;
        ConstCounter::new(n).encode(m)?;
    }
    let c = ConstCounter::new(counters.bans());
    let m = encoder.encode_descriptor(
        "chorus_sip_bans",
        "SIP sources banned for exceeding their request rate",
        None,
        c.metric_type(),
    )?;
    c.encode(m)?;
    let mut family = encoder.encode_descriptor(
        "chorus_sip_auth",
        "Digest authentications of INVITEs, by outcome",
        None,
        MetricType::Counter,
    )?;
    for (outcome, n) in counters.auth() {
        let labels = [("outcome", outcome)];
        let m = family.encode_family(&labels)?;
        ConstCounter::new(n).encode(m)?;
    }
    Ok(())
}
