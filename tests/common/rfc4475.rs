//! The 49 RFC 4475 torture messages of `../shared/rfc4475/` with the verdicts of its
//! `INDEX.md`, made safe to send to a local engine.
//!
//! Included with `#[path = "common/rfc4475.rs"] mod rfc4475;` by the tests that need it, so
//! the shared `common` module stays untouched.
#![allow(dead_code)]

use std::path::PathBuf;

/// The verdict column of `INDEX.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Odd but legal: a robust parser accepts it.
    Parse,
    /// Malformed: refused with a 400 where it parses far enough, otherwise dropped.
    Reject,
}

/// One torture message.
#[derive(Clone, Debug)]
pub struct Message {
    /// The file name, e.g. `wsinv.dat`.
    pub file: String,
    /// RFC 4475 section, e.g. `3.1.1.1`.
    pub section: String,
    pub verdict: Verdict,
    /// The bytes, with documentation addresses mapped onto loopback ([`keep_on_loopback`]).
    pub bytes: Vec<u8>,
}

pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/rfc4475"))
}

/// Every message listed in `INDEX.md`, in its order. Panics when the corpus is missing or
/// incomplete: a missing corpus must never look like a pass.
pub fn load() -> Vec<Message> {
    let dir = dir();
    let index = std::fs::read_to_string(dir.join("INDEX.md")).unwrap_or_else(|e| {
        panic!(
            "RFC 4475 torture messages missing at {}: {e}",
            dir.display()
        )
    });
    let mut out = Vec::new();
    for line in index.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(file), Some(section), Some(verdict)) = (cols.get(1), cols.get(2), cols.get(3))
        else {
            continue;
        };
        if !file.ends_with(".dat") {
            continue;
        }
        let verdict = match *verdict {
            "PARSE" => Verdict::Parse,
            "REJECT" => Verdict::Reject,
            other => panic!("{file}: unknown verdict {other:?} in INDEX.md"),
        };
        let path = dir.join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push(Message {
            file: file.to_string(),
            section: section.to_string(),
            verdict,
            bytes: keep_on_loopback(bytes),
        });
    }
    assert_eq!(
        out.len(),
        49,
        "INDEX.md in {} lists the 49 RFC 4475 messages",
        dir.display()
    );
    out
}

/// The torture messages name documentation addresses (192.0.2.0/24 and one public address)
/// in SDP, Via and Contact. The engine answers the INVITEs among them and would send RTP and
/// in-dialog requests there; tests may only send to this machine, so those addresses are
/// mapped into 127.0.0.0/8 with the same lengths (Content-Length stays exact).
pub fn keep_on_loopback(mut bytes: Vec<u8>) -> Vec<u8> {
    for (from, to) in [
        (&b"192.0.2."[..], &b"127.0.2."[..]),
        (&b"135.180.130.133"[..], &b"127.180.130.133"[..]),
    ] {
        let mut i = 0;
        while let Some(pos) = bytes[i..].windows(from.len()).position(|w| w == from) {
            let at = i + pos;
            bytes[at..at + from.len()].copy_from_slice(to);
            i = at + from.len();
        }
    }
    bytes
}

/// The port of the first Via's sent-by when it is written on the Via line itself (RFC 3261
/// §18.2.2: a UDP response goes to the source address at this port, 5060 when absent).
pub fn top_via_port(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let Some(line) = head.lines().skip(1).find(|l| {
        let name = l.split(':').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")
    }) else {
        return 5060;
    };
    let value = line.split_once(':').map(|(_, v)| v).unwrap_or_default();
    let sent_by = value
        .split([';', ','])
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .last()
        .unwrap_or_default();
    sent_by
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5060)
}
