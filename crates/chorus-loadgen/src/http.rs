//! A minimal HTTP/1.1 client over `TcpStream` (one request per connection, `Connection:
//! close`), enough for Janus' REST API and a Prometheus scrape on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

/// `http://host:port/path` split into its address and path.
#[derive(Clone, Debug)]
pub struct Url {
    pub host_port: String,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> anyhow::Result<Url> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("only http:// URLs are supported: {url}"))?;
        let (host_port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Url {
            host_port: host_port.to_owned(),
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// This URL with `suffix` appended to its path.
    pub fn join(&self, suffix: &str) -> Url {
        Url {
            host_port: self.host_port.clone(),
            path: format!("{}{}", self.path, suffix),
        }
    }
}

/// Sends one request and returns the status code and body.
pub fn request(
    method: &str,
    url: &Url,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let addr = url
        .host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("resolving {}", url.host_port))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let path = if url.path.is_empty() { "/" } else { &url.path };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n",
        url.host_port
    );
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("truncated HTTP response ({} bytes)", raw.len());
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("HTTP status line")?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("truncated chunk")?);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

/// Counters and histograms an engine may expose on a Prometheus endpoint about its media
/// ticks. Names are matched loosely (`overrun`, `late`), so this keeps working as the engine's
/// metrics are named; anything absent is reported as "n/a".
#[derive(Clone, Debug, Default)]
pub struct TickMetrics {
    pub overruns: Option<f64>,
    /// (upper bound in the metric's unit, cumulative count) of a lateness histogram.
    pub late_buckets: Vec<(f64, f64)>,
    pub late_unit_ms: f64,
    /// Sum (s) and count of a playout-delay histogram (the jitter buffers' target delay).
    pub playout_sum_s: Option<f64>,
    pub playout_count: Option<f64>,
    /// Jitter-buffer underruns and trimmed frames (counters).
    pub underruns: Option<f64>,
    pub trimmed: Option<f64>,
}

impl TickMetrics {
    /// `Ok(None)` when the endpoint doesn't exist (404).
    pub fn scrape(url: &Url) -> anyhow::Result<Option<TickMetrics>> {
        let (status, body) = request("GET", url, None, Duration::from_secs(2))?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            bail!("metrics endpoint answered {status}");
        }
        Ok(Some(TickMetrics::parse(&body)))
    }

    fn parse(text: &str) -> TickMetrics {
        let mut m = TickMetrics {
            late_unit_ms: 1.0,
            ..TickMetrics::default()
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name_labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let name = name_labels.split('{').next().unwrap_or("");
            if name.contains("underrun") && !name.ends_with("_created") {
                *m.underruns.get_or_insert(0.0) += value;
            } else if name.contains("trimmed") && !name.ends_with("_created") {
                *m.trimmed.get_or_insert(0.0) += value;
            } else if name.contains("playout") && name.ends_with("_seconds_sum") {
                *m.playout_sum_s.get_or_insert(0.0) += value;
            } else if name.contains("playout") && name.ends_with("_seconds_count") {
                *m.playout_count.get_or_insert(0.0) += value;
            } else if name.contains("overrun") && !name.ends_with("_bucket") {
                *m.overruns.get_or_insert(0.0) += value;
            } else if name.contains("late") && name.ends_with("_bucket") {
                let le = name_labels
                    .split("le=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .and_then(|s| {
                        if s == "+Inf" {
                            Some(f64::INFINITY)
                        } else {
                            s.parse().ok()
                        }
                    });
                if let Some(le) = le {
                    m.late_unit_ms = if name.contains("seconds") {
                        1_000.0
                    } else if name.contains("micro") || name.contains("_us") {
                        0.001
                    } else {
                        1.0
                    };
                    match m.late_buckets.iter_mut().find(|(b, _)| *b == le) {
                        Some((_, c)) => *c += value,
                        None => m.late_buckets.push((le, value)),
                    }
                }
            }
        }
        m.late_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        m
    }

    /// Overruns between two scrapes.
    pub fn overruns_since(&self, before: &TickMetrics) -> Option<f64> {
        Some(self.overruns? - before.overruns?)
    }

    /// Jitter-buffer underruns and trimmed frames between two scrapes.
    pub fn playout_glitches_since(&self, before: &TickMetrics) -> Option<(f64, f64)> {
        Some((
            self.underruns? - before.underruns.unwrap_or(0.0),
            self.trimmed? - before.trimmed.unwrap_or(0.0),
        ))
    }

    /// Mean playout delay (ms) of the samples taken between two scrapes.
    pub fn playout_mean_ms_since(&self, before: &TickMetrics) -> Option<(f64, f64)> {
        let count = self.playout_count? - before.playout_count.unwrap_or(0.0);
        let sum = self.playout_sum_s? - before.playout_sum_s.unwrap_or(0.0);
        (count > 0.0).then(|| (sum / count * 1_000.0, count))
    }

    /// The bucket bound holding the 99th percentile of tick lateness between two scrapes, in ms.
    pub fn late_p99_ms_since(&self, before: &TickMetrics) -> Option<f64> {
        let deltas: Vec<(f64, f64)> = self
            .late_buckets
            .iter()
            .map(|(le, c)| {
                let b = before
                    .late_buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, c)| *c);
                (*le, c - b)
            })
            .collect();
        let total = deltas.last()?.1;
        if total <= 0.0 {
            return None;
        }
        deltas
            .iter()
            .find(|(_, c)| *c >= 0.99 * total)
            .map(|(le, _)| le * self.late_unit_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_body_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (status, body) = parse_response(raw).expect("parses");
        assert_eq!((status, body.as_str()), (200, "abcde"));
    }

    #[test]
    fn tick_metrics_are_found_by_loose_names() {
        let before = TickMetrics::parse(
            "chorus_media_tick_overruns_total{thread=\"0\"} 2\n\
             chorus_media_tick_lateness_seconds_bucket{le=\"0.001\"} 10\n\
             chorus_media_tick_lateness_seconds_bucket{le=\"0.005\"} 10\n\
             chorus_media_tick_lateness_seconds_bucket{le=\"+Inf\"} 10\n",
        );
        let after = TickMetrics::parse(
            "chorus_media_tick_overruns_total{thread=\"0\"} 5\n\
             chorus_media_tick_lateness_seconds_bucket{le=\"0.001\"} 105\n\
             chorus_media_tick_lateness_seconds_bucket{le=\"0.005\"} 110\n\
             chorus_media_tick_lateness_seconds_bucket{le=\"+Inf\"} 110\n",
        );
        assert_eq!(after.overruns_since(&before), Some(3.0));
        assert_eq!(after.late_p99_ms_since(&before), Some(5.0));
        assert_eq!(TickMetrics::default().overruns_since(&before), None);
    }

    #[test]
    fn playout_delay_mean_is_taken_between_scrapes() {
        let before = TickMetrics::parse(
            "chorus_rtp_playout_delay_seconds_sum{thread=\"0\"} 0.4\n\
             chorus_rtp_playout_delay_seconds_count{thread=\"0\"} 10\n\
             chorus_rtp_playout_delay_seconds_sum{thread=\"1\"} 0.2\n\
             chorus_rtp_playout_delay_seconds_count{thread=\"1\"} 10\n",
        );
        let after = TickMetrics::parse(
            "chorus_rtp_playout_delay_seconds_sum{thread=\"0\"} 1.0\n\
             chorus_rtp_playout_delay_seconds_count{thread=\"0\"} 30\n\
             chorus_rtp_playout_delay_seconds_sum{thread=\"1\"} 0.2\n\
             chorus_rtp_playout_delay_seconds_count{thread=\"1\"} 10\n",
        );
        let (mean_ms, samples) = after.playout_mean_ms_since(&before).expect("samples");
        assert_eq!(samples, 20.0);
        assert!((mean_ms - 30.0).abs() < 1e-9, "{mean_ms}");
        assert_eq!(before.playout_mean_ms_since(&before), None);
        assert_eq!(TickMetrics::default().playout_mean_ms_since(&before), None);
        let glitches = TickMetrics::parse(
            "chorus_rtp_underruns_total{thread=\"0\"} 7\n\
             chorus_rtp_frames_trimmed_total{thread=\"0\"} 2\n\
             chorus_rtp_underruns_total{thread=\"1\"} 1\n",
        );
        assert_eq!(glitches.playout_glitches_since(&before), Some((8.0, 2.0)));
        assert_eq!(before.playout_glitches_since(&before), None);
    }
}
