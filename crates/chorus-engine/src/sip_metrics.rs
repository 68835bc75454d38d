//! SIP traffic counters for `/metrics`, kept by the SIP driver as messages cross the socket:
//! requests by method and responses by status code, both ways, from the start line alone
//! (no parse). Label sets are bounded: the methods RFC 3261 and its extensions define plus
//! `other`, and a fixed list of status codes plus one class label (`4xx`, …) for the rest.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Methods counted by name; anything else is `other`.
pub(crate) const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "INFO",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "UPDATE",
    "PRACK",
    "PUBLISH",
];
const METHOD_SLOTS: usize = METHODS.len() + 1;

/// Status codes counted by number; any other valid code counts under its class.
pub(crate) const CODES: [u16; 36] = [
    100, 180, 181, 183, 200, 202, 400, 401, 403, 404, 405, 406, 407, 408, 413, 415, 416, 420, 422,
    423, 480, 481, 482, 483, 486, 487, 488, 489, 491, 500, 501, 503, 504, 505, 600, 603,
];
/// The codes, then `1xx` … `6xx`.
const CODE_SLOTS: usize = CODES.len() + 6;

/// What a message's start line says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartLine {
    /// Index into the method slots.
    Request(usize),
    /// Index into the code slots.
    Response(usize),
    Unknown,
}

fn classify(data: &[u8]) -> StartLine {
    let line_end = data
        .iter()
        .take(128)
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(data.len().min(128));
    let line = &data[..line_end];
    let mut words = line.split(|&b| b == b' ');
    let Some(first) = words.next() else {
        return StartLine::Unknown;
    };
    if first.eq_ignore_ascii_case(b"SIP/2.0") {
        let code = words
            .next()
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.parse::<u16>().ok());
        return match code {
            Some(code @ 100..=699) => StartLine::Response(code_slot(code)),
            _ => StartLine::Unknown,
        };
    }
    // A request line ends in the version (RFC 3261 §7.1).
    if !line.ends_with(b"SIP/2.0") || first.is_empty() {
        return StartLine::Unknown;
    }
    let slot = METHODS
        .iter()
        .position(|m| m.as_bytes() == first)
        .unwrap_or(METHODS.len());
    StartLine::Request(slot)
}

fn code_slot(code: u16) -> usize {
    CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or_else(|| CODES.len() + usize::from(code / 100 - 1))
}

/// The label of a method slot.
pub(crate) fn method_label(slot: usize) -> &'static str {
    METHODS.get(slot).copied().unwrap_or("other")
}

/// The label of a code slot: the code, or its class.
pub(crate) fn code_label(slot: usize) -> String {
    match CODES.get(slot) {
        Some(code) => code.to_string(),
        None => format!("{}xx", slot - CODES.len() + 1),
    }
}

/// One direction of traffic.
#[derive(Debug)]
pub(crate) struct Direction {
    pub requests: [AtomicU64; METHOD_SLOTS],
    pub responses: [AtomicU64; CODE_SLOTS],
    /// Neither a request nor a response line (garbage, keep-alives).
    pub unknown: AtomicU64,
}

impl Default for Direction {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
            unknown: AtomicU64::new(0),
        }
    }
}

impl Direction {
    pub fn count(&self, data: &[u8]) {
        match classify(data) {
            StartLine::Request(i) => self.requests[i].fetch_add(1, Relaxed),
            StartLine::Response(i) => self.responses[i].fetch_add(1, Relaxed),
            StartLine::Unknown => self.unknown.fetch_add(1, Relaxed),
        };
    }
}

/// The SIP driver's counters.
#[derive(Debug, Default)]
pub(crate) struct SipMetrics {
    pub received: Direction,
    pub sent: Direction,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_lines_map_to_bounded_labels() {
        let cases: [(&[u8], StartLine); 9] = [
            (
                b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n",
                StartLine::Request(0),
            ),
            (b"OPTIONS sip:b SIP/2.0\r\n", StartLine::Request(4)),
            (b"FOO sip:b SIP/2.0\r\n", StartLine::Request(METHODS.len())),
            (b"SIP/2.0 200 OK\r\n", StartLine::Response(4)),
            (
                b"SIP/2.0 503 Service Unavailable\r\n",
                StartLine::Response(31),
            ),
            (b"SIP/2.0 599 Odd\r\n", StartLine::Response(CODES.len() + 4)),
            (b"SIP/2.0 999 Bad\r\n", StartLine::Unknown),
            (b"\r\n\r\n", StartLine::Unknown),
            (b"GET / HTTP/1.1\r\n", StartLine::Unknown),
        ];
        for (data, expected) in cases {
            assert_eq!(
                classify(data),
                expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert_eq!(method_label(METHODS.len()), "other");
        assert_eq!(code_label(31), "503");
        assert_eq!(code_label(CODES.len() + 4), "5xx");
        assert_eq!(code_label(CODES.len()), "1xx");
    }

    #[test]
    fn directions_count_each_message_once() {
        let d = Direction::default();
        d.count(b"BYE sip:x SIP/2.0\r\n");
        d.count(b"SIP/2.0 481 Call Does Not Exist\r\n");
        d.count(b"\x00\x01garbage");
        assert_eq!(d.requests[2].load(Relaxed), 1);
        assert_eq!(d.responses[code_slot(481)].load(Relaxed), 1);
        assert_eq!(d.unknown.load(Relaxed), 1);
    }
}
