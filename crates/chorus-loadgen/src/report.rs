//! One row per run (engine × codec), kept as a JSON line so several runs (Chorus, then Janus)
//! can be printed as one table with the Janus/Chorus CPU ratio.

use std::fmt::Write as _;

use serde_json::{json, Value};

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub engine: String,
    pub codec: String,
    pub rooms: usize,
    pub members: usize,
    pub participants: usize,
    pub failed_calls: usize,
    pub window_s: f64,
    pub engine_cpu_s: Option<f64>,
    pub loss_pct: f64,
    pub deaf_members: usize,
    pub lat_p50_ms: Option<f64>,
    pub lat_p99_ms: Option<f64>,
    pub lat_n: usize,
    pub bursts: u64,
    pub tick_late_p99_ms: Option<f64>,
    pub tick_overruns: Option<f64>,
    pub gen_cpu_s: Option<f64>,
    pub gen_late_p99_ms: f64,
    pub gen_skipped_ticks: u64,
}

impl Row {
    /// Engine CPU in µs per participant-second.
    pub fn cpu_us(&self) -> Option<f64> {
        per_participant_us(self.engine_cpu_s?, self.participants, self.window_s)
    }

    pub fn gen_cpu_us(&self) -> Option<f64> {
        per_participant_us(self.gen_cpu_s?, self.participants, self.window_s)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "engine": self.engine, "codec": self.codec, "rooms": self.rooms,
            "members": self.members, "participants": self.participants,
            "failed_calls": self.failed_calls, "window_s": self.window_s,
            "engine_cpu_s": self.engine_cpu_s, "cpu_us_per_participant_s": self.cpu_us(),
            "loss_pct": self.loss_pct, "deaf_members": self.deaf_members,
            "lat_p50_ms": self.lat_p50_ms, "lat_p99_ms": self.lat_p99_ms, "lat_n": self.lat_n,
            "bursts": self.bursts, "tick_late_p99_ms": self.tick_late_p99_ms,
            "tick_overruns": self.tick_overruns, "gen_cpu_s": self.gen_cpu_s,
            "gen_late_p99_ms": self.gen_late_p99_ms, "gen_skipped_ticks": self.gen_skipped_ticks,
        })
    }

    pub fn from_json(v: &Value) -> Row {
        let f = |k: &str| v[k].as_f64();
        let u = |k: &str| v[k].as_u64().unwrap_or(0);
        Row {
            engine: v["engine"].as_str().unwrap_or("?").to_owned(),
            codec: v["codec"].as_str().unwrap_or("?").to_owned(),
            rooms: u("rooms") as usize,
            members: u("members") as usize,
            participants: u("participants") as usize,
            failed_calls: u("failed_calls") as usize,
            window_s: f("window_s").unwrap_or(0.0),
            engine_cpu_s: f("engine_cpu_s"),
            loss_pct: f("loss_pct").unwrap_or(0.0),
            deaf_members: u("deaf_members") as usize,
            lat_p50_ms: f("lat_p50_ms"),
            lat_p99_ms: f("lat_p99_ms"),
            lat_n: u("lat_n") as usize,
            bursts: u("bursts"),
            tick_late_p99_ms: f("tick_late_p99_ms"),
            tick_overruns: f("tick_overruns"),
            gen_cpu_s: f("gen_cpu_s"),
            gen_late_p99_ms: f("gen_late_p99_ms").unwrap_or(0.0),
            gen_skipped_ticks: u("gen_skipped_ticks"),
        }
    }
}

fn per_participant_us(cpu_s: f64, participants: usize, window_s: f64) -> Option<f64> {
    if participants == 0 || window_s <= 0.0 {
        return None;
    }
    Some(cpu_s * 1e6 / (participants as f64 * window_s))
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The summary table of `rows`, then the Janus/Chorus CPU ratio per codec where both ran.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "engine",
        "codec",
        "rooms",
        "parts",
        "window_s",
        "cpu_us/part-s",
        "parts/core",
        "loss_%",
        "lat_p50_ms",
        "lat_p99_ms",
        "probes",
        "tick_late_p99",
        "overruns",
        "gen_us/part-s",
        "gen_late_p99",
        "gen_skips",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let failed = if r.failed_calls > 0 {
            format!("{} ({} failed)", r.participants, r.failed_calls)
        } else {
            r.participants.to_string()
        };
        lines.push(vec![
            r.engine.clone(),
            r.codec.clone(),
            format!("{}x{}", r.rooms, r.members),
            failed,
            format!("{:.1}", r.window_s),
            opt(r.cpu_us(), 0),
            opt(r.cpu_us().filter(|c| *c > 0.0).map(|c| 1e6 / c), 0),
            format!("{:.3}", r.loss_pct),
            opt(r.lat_p50_ms, 1),
            opt(r.lat_p99_ms, 1),
            if r.bursts > 0 || r.lat_n > 0 {
                format!("{}/{}", r.lat_n, r.bursts)
            } else {
                "n/a".to_owned()
            },
            opt(r.tick_late_p99_ms, 2),
            opt(r.tick_overruns, 0),
            opt(r.gen_cpu_us(), 0),
            format!("{:.2}", r.gen_late_p99_ms),
            r.gen_skipped_ticks.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| {
                if c < 2 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    let mut codecs: Vec<&str> = rows.iter().map(|r| r.codec.as_str()).collect();
    codecs.dedup();
    codecs.sort_unstable();
    codecs.dedup();
    for codec in codecs {
        let cpu = |engine: &str| {
            rows.iter()
                .rev()
                .find(|r| r.codec == codec && r.engine == engine)
                .and_then(Row::cpu_us)
        };
        match (cpu("janus"), cpu("chorus")) {
            (Some(j), Some(c)) if c > 0.0 => {
                let _ = writeln!(
                    out,
                    "Janus/Chorus CPU ratio ({codec}): {:.1}x  (janus {j:.0} vs chorus {c:.0} us per participant-second)",
                    j / c
                );
            }
            (None, Some(_)) => {
                let _ = writeln!(out, "Janus/Chorus CPU ratio ({codec}): n/a (no Janus run)");
            }
            (Some(_), None) => {
                let _ = writeln!(out, "Janus/Chorus CPU ratio ({codec}): n/a (no Chorus run)");
            }
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "cpu = engine utime+stime (/proc/<pid>/stat) over the window; probes = detected/sent marker bursts; \
         tick_late_p99/overruns = engine's own tick metrics (n/a: not exposed); gen_* = the load generator itself"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_janus_over_chorus_per_codec() {
        let chorus = Row {
            engine: "chorus".into(),
            codec: "pcmu".into(),
            participants: 100,
            window_s: 10.0,
            engine_cpu_s: Some(0.5),
            ..Row::default()
        };
        let janus = Row {
            engine: "janus".into(),
            engine_cpu_s: Some(3.0),
            ..chorus.clone()
        };
        assert_eq!(chorus.cpu_us(), Some(500.0));
        let back = Row::from_json(&janus.to_json());
        assert_eq!(back.cpu_us(), Some(3000.0));
        let t = table(&[chorus, back]);
        assert!(t.contains("Janus/Chorus CPU ratio (pcmu): 6.0x"), "{t}");
        assert!(t.contains("| chorus"), "{t}");
    }
}
