//! DTMF carried in SIP INFO bodies (RFC 6086 "legacy INFO usage"): the fallback of peers
//! that did not negotiate RFC 4733 telephone-events.
//!
//! Two de-facto formats exist, neither with an RFC of its own:
//!
//! - `application/dtmf-relay` (Cisco): `Signal=5\r\nDuration=160\r\n`, the duration in
//!   milliseconds;
//! - `application/dtmf`: the body is the digit.

/// The content types we take DTMF from, for the `Accept` of a 415.
pub(crate) const ACCEPTED: &str = "application/dtmf-relay, application/dtmf";

/// What an INFO request's body means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InfoBody {
    /// A digit; `duration_ms` is 0 when the body does not say.
    Dtmf { digit: char, duration_ms: u32 },
    /// No body: an INFO used as a keep-alive or probe.
    Empty,
    /// A DTMF content type whose body makes no sense.
    Malformed,
    /// A content type we do not handle.
    Unsupported,
}

/// Reads an INFO body by its `Content-Type` (parameters and case ignored).
pub(crate) fn parse(content_type: Option<&str>, body: &[u8]) -> InfoBody {
    if body.iter().all(u8::is_ascii_whitespace) {
        return InfoBody::Empty;
    }
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .unwrap_or_default()
        .trim();
    let parsed = if media.eq_ignore_ascii_case("application/dtmf-relay") {
        dtmf_relay(body)
    } else if media.eq_ignore_ascii_case("application/dtmf") {
        std::str::from_utf8(body)
            .ok()
            .and_then(|b| signal(b.trim()))
            .map(|digit| (digit, 0))
    } else {
        return InfoBody::Unsupported;
    };
    match parsed {
        Some((digit, duration_ms)) => InfoBody::Dtmf { digit, duration_ms },
        None => InfoBody::Malformed,
    }
}

/// `Signal=<digit>` and an optional `Duration=<ms>`, one per line, keys in any case, blanks
/// around `=` tolerated, other keys ignored.
fn dtmf_relay(body: &[u8]) -> Option<(char, u32)> {
    let text = std::str::from_utf8(body).ok()?;
    let (mut digit, mut duration) = (None, 0);
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            if line.trim().is_empty() {
                continue;
            }
            return None;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("Signal") {
            digit = Some(signal(value)?);
        } else if key.eq_ignore_ascii_case("Duration") {
            duration = value.parse().ok()?;
        }
    }
    Some((digit?, duration))
}

/// A digit as `0`–`9`, `*`, `#`, `A`–`D` (any case), or as its RFC 4733 §3.2 event code
/// (`10` = `*`, `11` = `#`, `12`–`15` = `A`–`D`), which some gateways send instead.
fn signal(value: &str) -> Option<char> {
    let mut chars = value.chars();
    let (first, rest) = (chars.next()?, chars.as_str());
    if rest.is_empty() {
        let digit = first.to_ascii_uppercase();
        return matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D').then_some(digit);
    }
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        "12" => Some('A'),
        "13" => Some('B'),
        "14" => Some('C'),
        "15" => Some('D'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dtmf(digit: char, duration_ms: u32) -> InfoBody {
        InfoBody::Dtmf { digit, duration_ms }
    }

    #[test]
    fn dtmf_relay_bodies_are_read() {
        let cases: &[(&str, InfoBody)] = &[
            ("Signal=5\r\nDuration=160\r\n", dtmf('5', 160)),
            ("Signal= #\nDuration= 250", dtmf('#', 250)),
            ("signal=*\r\nduration=100\r\n", dtmf('*', 100)),
            ("Signal=11\r\nDuration=80\r\n", dtmf('#', 80)),
            ("Signal=d\r\n", dtmf('D', 0)),
            ("Duration=160\r\nSignal=0\r\nVolume=10\r\n", dtmf('0', 160)),
        ];
        for (body, expected) in cases {
            let got = parse(Some("application/dtmf-relay"), body.as_bytes());
            assert_eq!(got, *expected, "{body:?}");
        }
        assert_eq!(
            parse(
                Some("Application/DTMF-Relay; charset=utf-8"),
                b"Signal=7\r\n"
            ),
            dtmf('7', 0)
        );
    }

    #[test]
    fn dtmf_bodies_are_the_digit() {
        assert_eq!(parse(Some("application/dtmf"), b"5"), dtmf('5', 0));
        assert_eq!(parse(Some("application/dtmf"), b"#\r\n"), dtmf('#', 0));
        assert_eq!(parse(Some("application/dtmf"), b"10"), dtmf('*', 0));
    }

    #[test]
    fn garbage_bodies_are_malformed() {
        let relay = [
            "Signal=x\r\nDuration=160\r\n",
            "Signal=5\r\nDuration=long\r\n",
            "Duration=160\r\n",
            "hello world",
            "Signal=16\r\n",
            "Signal=55\r\n",
        ];
        for body in relay {
            let got = parse(Some("application/dtmf-relay"), body.as_bytes());
            assert_eq!(got, InfoBody::Malformed, "{body:?}");
        }
        assert_eq!(
            parse(Some("application/dtmf-relay"), &[0xff, 0xfe, b'=', 0x80]),
            InfoBody::Malformed
        );
        assert_eq!(parse(Some("application/dtmf"), b"55"), InfoBody::Malformed);
    }

    #[test]
    fn other_content_types_are_unsupported_and_empty_bodies_empty() {
        assert_eq!(
            parse(Some("application/media_control+xml"), b"<x/>"),
            InfoBody::Unsupported
        );
        assert_eq!(parse(None, b"Signal=5"), InfoBody::Unsupported);
        assert_eq!(parse(None, b""), InfoBody::Empty);
        assert_eq!(
            parse(Some("application/dtmf-relay"), b"\r\n"),
            InfoBody::Empty
        );
    }
}
