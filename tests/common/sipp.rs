//! Running SIPp (Debian `sip-tester` 3.6.1) as a peer: locate it, run it bounded in time with
//! its statistics and errors traced to files, and read the outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{free_udp_tcp_port, rtp_port_range, TempDir};

/// Our streaming UAC scenario (see the comment at its top).
pub fn stream_scenario() -> PathBuf {
    super::workspace_dir().join("tests/sipp/uac_pcmu_stream.xml")
}

/// `sipp` from PATH (or `$SIPP_BIN`); panics with the install hint when absent.
pub fn sipp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPP_BIN") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("sipp"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("sipp not found on PATH: apt-get install sip-tester"))
}

/// Final counters from SIPp's `-trace_stat` CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SippStats {
    pub successful: u64,
    pub failed: u64,
}

impl SippStats {
    /// Reads the cumulative counters of the last row of a `-trace_stat` file.
    pub fn parse(csv: &str) -> Option<SippStats> {
        let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = lines.next_back()?.split(';').collect();
        let column = |name: &str| -> Option<u64> {
            let i = header.iter().position(|h| h.trim() == name)?;
            last.get(i)?.trim().parse().ok()
        };
        Some(SippStats {
            successful: column("SuccessfulCall(C)")?,
            failed: column("FailedCall(C)")?,
        })
    }
}

/// The outcome of one SIPp run.
#[derive(Debug)]
pub struct SippRun {
    /// None when SIPp had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stats: Option<SippStats>,
    pub command_line: String,
    pub screen: String,
    pub errors: String,
}

impl SippRun {
    /// Everything useful for an assertion message.
    pub fn report(&self) -> String {
        let tail = |s: &str, n: usize| {
            let start = s.len().saturating_sub(n);
            let start = (start..s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s[start..].to_string()
        };
        format!(
            "sipp: {}\nstatus: {:?}, stats: {:?}\n--- screen (tail) ---\n{}\n--- errors (tail) ---\n{}",
            self.command_line,
            self.status,
            self.stats,
            tail(&self.screen, 6000),
            tail(&self.errors, 6000)
        )
    }
}

/// A SIPp invocation. Local SIP and media ports are picked free unless given; `-i 127.0.0.1`
/// keeps everything on loopback; `-nostdin` because there is no terminal.
pub struct Sipp {
    pub args: Vec<String>,
    pub dir: TempDir,
    pub deadline: Duration,
}

impl Sipp {
    pub fn new(args: &[&str]) -> Sipp {
        Sipp {
            args: args.iter().map(|s| s.to_string()).collect(),
            dir: TempDir::new("sipp"),
            deadline: Duration::from_secs(90),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The full argument list: ours, then loopback, ports, and tracing into `dir`.
    pub fn full_args(&self) -> Vec<String> {
        let has = |flag: &str| self.args.iter().any(|a| a == flag);
        let mut args = self.args.clone();
        if !has("-i") {
            args.extend(["-i".into(), "127.0.0.1".into()]);
        }
        if !has("-p") {
            args.extend(["-p".into(), free_udp_tcp_port().to_string()]);
        }
        if !has("-mp") {
            // SIPp uses the media port and the ones just above it (RTCP, video).
            args.extend(["-mp".into(), rtp_port_range(4).0.to_string()]);
        }
        let d = self.dir();
        args.extend([
            "-nostdin".into(),
            "-trace_stat".into(),
            "-stf".into(),
            d.join("stat.csv").display().to_string(),
            "-trace_err".into(),
            "-error_file".into(),
            d.join("errors.log").display().to_string(),
        ]);
        args
    }

    /// Starts SIPp in `dir` (the working directory resolves relative `rtp_stream` files).
    pub fn spawn(self) -> RunningSipp {
        let args = self.full_args();
        let bin = sipp_bin();
        let screen_path = self.dir().join("screen.log");
        let screen = std::fs::File::create(&screen_path).expect("create the sipp screen file");
        let child = Command::new(&bin)
            .args(&args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(screen.try_clone().expect("clone file handle"))
            .stderr(screen)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        RunningSipp {
            child: Some(child),
            command_line: format!("{} {}", bin.display(), args.join(" ")),
            deadline: Instant::now() + self.deadline,
            sipp: self,
        }
    }

    pub fn run(self) -> SippRun {
        self.spawn().wait()
    }
}

pub struct RunningSipp {
    child: Option<std::process::Child>,
    command_line: String,
    deadline: Instant,
    sipp: Sipp,
}

impl RunningSipp {
    /// Waits for SIPp to exit (killing it at the deadline) and collects its outcome.
    pub fn wait(mut self) -> SippRun {
        let mut child = self.child.take().expect("waited once");
        let status = loop {
            match child.try_wait().expect("poll sipp") {
                Some(status) => break Some(status),
                None if Instant::now() > self.deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let read =
            |name: &str| std::fs::read_to_string(self.sipp.dir().join(name)).unwrap_or_default();
        let stats = SippStats::parse(&read("stat.csv"));
        SippRun {
            status,
            stats,
            command_line: self.command_line.clone(),
            screen: read("screen.log"),
            errors: read("errors.log"),
        }
    }
}

impl Drop for RunningSipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub mod selftest {
    use super::*;

    pub fn stat_csv_final_counters_are_read() {
        let csv = "StartTime;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C)\n\
                   2026-11-22\t00:08:30.9;0;2;2;0;0\n\
                   2026-11-22\t00:08:33.2;0;1;200;0;3\n";
        assert_eq!(
            SippStats::parse(csv),
            Some(SippStats {
                successful: 200,
                failed: 3
            })
        );
        assert_eq!(SippStats::parse("StartTime;CurrentCall\n"), None);
    }
}
