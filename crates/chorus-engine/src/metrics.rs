//! Prometheus metrics of the engine, read at scrape time from the counters the media threads
//! keep in relaxed atomics (so a tick never touches a metrics library) and from the registry.
//! Labels are low-cardinality: the media thread index, SIP methods and status codes from
//! fixed lists, outcome names; never call ids, room names, accounts or addresses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::sip_metrics::{code_label, method_label, SipMetrics};
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
        let counters: [(&str, &str, Field); 14] = [
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
            (
                "chorus_media_room_moves",
                "Rooms moved to another tick slot to even out the slots' work",
                |s| s.room_moves,
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
                "chorus_media_forwards",
                "Packets sent to a talker as the other talker's packet, without an encode",
                |s| s.forwards,
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
        encode_media_histograms(&mut encoder, &snapshots)?;
        encode_calls(&mut encoder, shared)?;
        encode_sip_traffic(&mut encoder, &shared.sip_metrics)?;
        encode_webhooks(&mut encoder, &shared.webhooks.stats())?;
        encode_recordings(&mut encoder, &shared.recordings)?;
        Ok(())
    }
}

fn counter_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (std::borrow::Cow<'a, str>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value.as_ref())];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

/// A histogram per media thread from per-bucket (not cumulative) counts over `bounds_us`
/// plus one overflow bucket, and the sum in µs.
fn thread_histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds_us: &[u64],
    per_thread: impl Iterator<Item = (usize, Vec<u64>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (t, counts, sum_us) in per_thread {
        let thread = t.to_string();
        let labels = [("thread", thread.as_str())];
        let buckets: Vec<(f64, u64)> = bounds_us
            .iter()
            .map(|&b| b as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        let count = counts.iter().sum();
        let mut m = family.encode_family(&labels)?;
        m.encode_histogram::<Vec<(String, String)>>(sum_us as f64 / 1e6, count, &buckets, None)?;
    }
    Ok(())
}

fn encode_media_histograms(
    encoder: &mut DescriptorEncoder,
    snapshots: &[chorus_mixer::ThreadStatsSnapshot],
) -> Result<(), std::fmt::Error> {
    counter_family(
        encoder,
        "chorus_rtp_packets_lost",
        "RTP packets that never arrived (sequence gaps), sampled once a second",
        "thread",
        snapshots
            .iter()
            .enumerate()
            .map(|(t, s)| (t.to_string().into(), s.packets_lost)),
    )?;
    counter_family(
        encoder,
        "chorus_rtp_underruns",
        "Ticks a playing jitter buffer had nothing to play (a packet late for its tick, or a \
         sender that paused: DTX, hold), sampled once a second",
        "thread",
        snapshots
            .iter()
            .enumerate()
            .map(|(t, s)| (t.to_string().into(), s.underruns)),
    )?;
    counter_family(
        encoder,
        "chorus_rtp_frames_trimmed",
        "Frames a jitter buffer discarded to bring its depth back to target (latency cut \
         after a burst or when the jitter has gone), sampled once a second",
        "thread",
        snapshots
            .iter()
            .enumerate()
            .map(|(t, s)| (t.to_string().into(), s.frames_trimmed)),
    )?;
    thread_histogram(
        encoder,
        "chorus_rtp_jitter_seconds",
        "Interarrival jitter of the receiving legs (RFC 3550), one sample per leg per second",
        &chorus_mixer::JITTER_BOUNDS_US,
        snapshots
            .iter()
            .enumerate()
            .map(|(t, s)| (t, s.jitter_buckets.to_vec(), s.jitter_us_total)),
    )?;
    thread_histogram(
        encoder,
        "chorus_rtp_playout_delay_seconds",
        "Jitter-buffer playout delay of the receiving legs (target depth times packet duration), \
         one sample per leg per second",
        &chorus_mixer::PLAYOUT_BOUNDS_US,
        snapshots
            .iter()
            .enumerate()
            .map(|(t, s)| (t, s.playout_buckets.to_vec(), s.playout_us_total)),
    )?;
    thread_histogram(
        encoder,
        "chorus_media_tick_duration_seconds",
        "Work time of each tick slot (receive, decode, mix, encode, send)",
        &chorus_mixer::TICK_BOUNDS_US,
        snapshots
            .iter()
            .enumerate()
            .map(|(t, s)| (t, s.tick_buckets.to_vec(), s.busy_us_total)),
    )
}

fn encode_calls(encoder: &mut DescriptorEncoder, shared: &Shared) -> Result<(), std::fmt::Error> {
    counter(
        encoder,
        "chorus_calls",
        "Inbound calls handed to a call flow",
        shared.calls_total.load(Ordering::Relaxed),
    )?;
    gauge(
        encoder,
        "chorus_draining",
        "1 while the engine drains (new calls refused with 503)",
        i64::from(*shared.draining.borrow()),
    )
}

fn encode_sip_traffic(
    encoder: &mut DescriptorEncoder,
    sip: &SipMetrics,
) -> Result<(), std::fmt::Error> {
    let methods = |counts: &[AtomicU64]| {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| (method_label(i).into(), n.load(Ordering::Relaxed)))
            .collect::<Vec<_>>()
    };
    // Only codes seen: the fixed list is long and most of it never happens.
    let codes = |counts: &[AtomicU64]| {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .map(|(i, n)| (code_label(i).into(), n))
            .collect::<Vec<_>>()
    };
    counter_family(
        encoder,
        "chorus_sip_requests_received",
        "SIP requests received (retransmissions included), by method",
        "method",
        methods(&sip.received.requests),
    )?;
    counter_family(
        encoder,
        "chorus_sip_responses_sent",
        "SIP responses sent (retransmissions included), by status code",
        "code",
        codes(&sip.sent.responses),
    )?;
    counter_family(
        encoder,
        "chorus_sip_requests_sent",
        "SIP requests sent (BYE), by method",
        "method",
        methods(&sip.sent.requests),
    )?;
    counter_family(
        encoder,
        "chorus_sip_responses_received",
        "SIP responses received, by status code",
        "code",
        codes(&sip.received.responses),
    )
}

fn encode_webhooks(
    encoder: &mut DescriptorEncoder,
    stats: &crate::webhooks::WebhookStats,
) -> Result<(), std::fmt::Error> {
    counter_family(
        encoder,
        "chorus_webhooks",
        "Callbacks finished: delivered (2xx), failed (given up on) or dropped (queue full)",
        "outcome",
        [
            ("delivered".into(), stats.delivered),
            ("failed".into(), stats.failed),
            ("dropped".into(), stats.dropped),
        ],
    )?;
    counter(
        encoder,
        "chorus_webhook_retries",
        "Callback attempts retried after a 5xx or a transport error",
        stats.retried,
    )?;
    gauge(
        encoder,
        "chorus_webhooks_pending",
        "Callbacks queued and not started yet",
        stats.pending as i64,
    )
}

fn encode_recordings(
    encoder: &mut DescriptorEncoder,
    recordings: &crate::recording::Recordings,
) -> Result<(), std::fmt::Error> {
    let c = &recordings.counters;
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    gauge(
        encoder,
        "chorus_recordings_active",
        "Recordings being written",
        recordings.live_count() as i64,
    )?;
    counter(
        encoder,
        "chorus_recordings_started",
        "Recordings started",
        load(&c.started),
    )?;
    counter_family(
        encoder,
        "chorus_recordings_finished",
        "Recordings finished: completed, failed, or recovered at start-up after a crash",
        "outcome",
        [
            ("completed".into(), load(&c.completed)),
            ("failed".into(), load(&c.failed)),
            ("recovered".into(), load(&c.recovered)),
        ],
    )?;
    counter(
        encoder,
        "chorus_recordings_dropped_audio",
        "Recordings that lost audio because their writer fell behind",
        load(&c.dropped_audio),
    )?;
    counter(
        encoder,
        "chorus_recording_dropped_samples",
        "Samples recordings lost because their writer fell behind",
        load(&c.dropped_samples),
    )
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
