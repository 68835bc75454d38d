//! Process CPU time from `/proc/<pid>/stat` (proc(5)): utime + stime, fields 14 and 15, in
//! clock ticks, summed over every thread of the process.

use std::process::Command;

use anyhow::Context;

/// utime + stime of `pid`, in clock ticks.
pub fn process_ticks(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat_ticks(&text).with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// The comm field (2) is parenthesised and may hold spaces or parentheses, so fields are
/// counted from the last `)`: field 3 (state) is the first after it.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks (everything but idle and iowait) of one core, from `/proc/stat`.
pub fn core_busy_ticks(core: usize) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4)?)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when that can't be asked.
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "4242 (media) (x) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9 0 100 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
    }

    #[test]
    fn own_process_and_core_zero_have_readable_ticks() {
        assert!(process_ticks(std::process::id()).is_ok());
        assert!(core_busy_ticks(0).is_some());
    }
}
