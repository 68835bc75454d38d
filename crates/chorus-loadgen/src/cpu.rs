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

/// Time of one core, in clock ticks, from `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreTicks {
    /// Running anything in the guest (user, nice, system, irq, softirq).
    pub busy: u64,
    /// Ready to run but not run by the hypervisor (`steal`): time the guest lost.
    pub steal: u64,
}

impl CoreTicks {
    pub fn since(self, before: CoreTicks) -> CoreTicks {
        CoreTicks {
            busy: self.busy.saturating_sub(before.busy),
            steal: self.steal.saturating_sub(before.steal),
        }
    }
}

/// Busy and stolen ticks of one core.
pub fn core_ticks(core: usize) -> Option<CoreTicks> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_core_ticks(&text, core)
}

/// proc(5): `cpuN user nice system idle iowait irq softirq steal guest guest_nice`; guest time
/// is already counted in user and nice.
fn parse_core_ticks(text: &str, core: usize) -> Option<CoreTicks> {
    let name = format!("cpu{core}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let field = |i: usize| v.get(i).copied();
    Some(CoreTicks {
        busy: field(0)? + field(1)? + field(2)? + field(5)? + field(6)?,
        steal: field(7).unwrap_or(0),
    })
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
        assert!(core_ticks(0).is_some());
    }

    #[test]
    fn core_time_separates_what_the_guest_ran_from_what_the_hypervisor_stole() {
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\n\
                    cpu0 100 2 30 500 7 1 4 25 0 0\n\
                    cpu1 1 1 1 1 1 1 1 1 0 0\n";
        let t = parse_core_ticks(stat, 0).expect("cpu0");
        assert_eq!(
            t,
            CoreTicks {
                busy: 137,
                steal: 25
            }
        );
        let later = CoreTicks {
            busy: 200,
            steal: 40,
        };
        assert_eq!(
            later.since(t),
            CoreTicks {
                busy: 63,
                steal: 15
            }
        );
        assert_eq!(parse_core_ticks(stat, 5), None);
    }
}
