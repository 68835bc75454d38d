//! Transport-level types: who sent a message, where a message goes, and the
//! framing of SIP over byte streams (RFC 3261 §18.3).

use std::net::SocketAddr;

use crate::error::ParseError;

/// The transport a message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Reliable transports get no retransmissions (RFC 3261 §17.1.2.2, §17.2.1).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The token used in Via and `;transport=` (RFC 3261 §18.1.1).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Identifies one stream connection owned by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// Where a message came from or goes to. For TCP, `conn` names the connection
/// (responses and in-dialog requests go back on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<ConnectionId>,
}

impl Peer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Self {
        Peer {
            transport: Transport::Udp,
            addr,
            conn: None,
        }
    }

    /// A TCP peer on connection `conn`.
    pub fn tcp(addr: SocketAddr, conn: ConnectionId) -> Self {
        Peer {
            transport: Transport::Tcp,
            addr,
            conn: Some(conn),
        }
    }
}

/// One message for the driver to send.
#[derive(Debug)]
pub struct Transmit {
    pub peer: Peer,
    pub payload: Vec<u8>,
}

/// Splits a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3):
/// push bytes, then pop complete messages.
///
/// CRLF keep-alives (RFC 5626 §3.5.1) between messages are skipped. Content-Length
/// is mandatory on streams, so a message without it is an error; so is a message
/// larger than `max_message`. After an error the stream cannot be resynchronised
/// and the driver must close the connection.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_message: usize,
}

impl StreamFramer {
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            buf: Vec::new(),
            max_message,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if skip > 0 {
            self.buf.drain(..skip);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((head_len, body_start)) = find_header_end(&self.buf) else {
            if self.buf.len() > self.max_message {
                return Err(ParseError::TooLarge {
                    size: self.buf.len(),
                    max: self.max_message,
                });
            }
            return Ok(None);
        };
        let head = self.buf.get(..head_len).unwrap_or_default();
        let content_length = content_length_of(head)?.ok_or(ParseError::MissingContentLength)?;
        let total = body_start
            .checked_add(content_length)
            .ok_or(ParseError::InvalidContentLength)?;
        if total > self.max_message {
            return Err(ParseError::TooLarge {
                size: total,
                max: self.max_message,
            });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let msg = std::mem::replace(&mut self.buf, rest);
        Ok(Some(msg))
    }
}

/// Finds the blank line ending the header section. Returns (length of the
/// header section, offset of the body). Bare LF line ends are tolerated.
pub(crate) fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data.get(i) == Some(&b'\n') {
            // "\n\n" or "\n\r\n"
            match (data.get(i + 1), data.get(i + 2)) {
                (Some(b'\n'), _) => return Some((i, i + 2)),
                (Some(b'\r'), Some(b'\n')) => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The Content-Length of a header section (full or compact `l` name), `None`
/// when absent. Multiple differing values or non-numbers are errors.
pub(crate) fn content_length_of(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = trim_ascii(name);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = trim_ascii(value.get(1..).unwrap_or_default());
            let n = parse_decimal(value).ok_or(ParseError::InvalidContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::InvalidContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

pub(crate) fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Strict unsigned decimal: digits only, no sign, bounded so it can't overflow.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nabcd";

    #[test]
    fn framer_splits_back_to_back_messages_byte_by_byte() {
        let mut f = StreamFramer::new(65536);
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        let mut out = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(m) = f.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, vec![MSG.to_vec(), MSG.to_vec()]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn framer_requires_content_length_on_streams() {
        let mut f = StreamFramer::new(65536);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_message(), Err(ParseError::MissingContentLength));
    }

    #[test]
    fn framer_rejects_oversize_message_and_endless_headers() {
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert!(matches!(f.next_message(), Err(ParseError::TooLarge { .. })));
        let mut f = StreamFramer::new(100);
        f.push(&[b'a'; 200]);
        assert!(matches!(f.next_message(), Err(ParseError::TooLarge { .. })));
    }

    #[test]
    fn framer_rejects_negative_content_length() {
        let mut f = StreamFramer::new(1000);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert_eq!(f.next_message(), Err(ParseError::InvalidContentLength));
    }
}
