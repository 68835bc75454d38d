//! SIP message syntax: normalisation in front of `rsip`, and the small typed
//! views (Via, name-addr, CSeq) the transaction and dialog layers need.
//!
//! rsip 0.4 neither unfolds header lines (RFC 3261 §7.3.1) nor expands
//! compact header names (RFC 3261 §7.3.3, §20), rejects extension methods
//! (RFC 3261 §27.4) and SIP versions other than 1 and 2, so [`parse`] first
//! rewrites the header section into the canonical form rsip accepts, keeps
//! its own ordered header list (raw values, needed to copy Via/From/To
//! byte-for-byte into responses, RFC 3261 §8.2.6.2), and uses rsip as the
//! grammar check for the whole message and for URIs.

use crate::error::ParseError;
use crate::transport::find_header_end;

/// Compact header names (RFC 3261 §7.3.3 and the IANA SIP header registry).
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Request methods. rsip has no variant for extension methods, which we must
/// still recognise to answer 501 (RFC 3261 §8.2.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Register,
    Subscribe,
    Notify,
    Refer,
    Message,
    Update,
    Prack,
    Publish,
    Extension(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        // Methods are case-sensitive (RFC 3261 §7.1).
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_string()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        uri: String,
        version: String,
    },
    Response {
        version: String,
        code: u16,
    },
}

/// A message split into start line, ordered headers (canonical names, raw
/// values) and the bytes after the blank line.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line; Content-Length is applied by the caller
    /// because its handling depends on the transport (RFC 3261 §18.3).
    pub body: Vec<u8>,
}

impl Message {
    /// Values of every header line called `name`, in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.all(name).count()
    }

    /// Comma-separated list values across all lines of `name` (RFC 3261 §7.3.1).
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.all(name).flat_map(split_commas).collect()
    }
}

/// Unfolds continuation lines and expands compact header names in the header
/// section (RFC 3261 §7.3.1, §7.3.3); the body is left untouched. Bare LF line
/// ends in the header section become CRLF, leading blank lines are dropped
/// (RFC 3261 §7.5).
pub fn normalize(data: &[u8]) -> Result<Vec<u8>, ParseError> {
    let split = split(data)?;
    Ok(split.to_bytes())
}

struct Split<'a> {
    start: &'a [u8],
    headers: Vec<(String, Vec<u8>)>,
    body: &'a [u8],
}

impl Split<'_> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.start.len() + self.body.len() + 64 * self.headers.len());
        out.extend_from_slice(self.start);
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
        out
    }
}

fn split(data: &[u8]) -> Result<Split<'_>, ParseError> {
    let lead = data
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let data = data.get(lead..).unwrap_or_default();
    if data.is_empty() {
        return Err(ParseError::Empty);
    }
    let (head_len, body_start) = find_header_end(data).ok_or(ParseError::UnterminatedHeaders)?;
    let head = data.get(..head_len).unwrap_or_default();
    let body = data.get(body_start..).unwrap_or_default();
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next().ok_or(ParseError::MalformedStartLine)?;
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, line) in lines.enumerate() {
        if let [b' ' | b'\t', ..] = line {
            // Folded line: the CRLF and leading whitespace collapse to one SP.
            let (_, value) = headers.last_mut().ok_or(ParseError::OrphanContinuation)?;
            let cont = trim_start(line);
            if !cont.is_empty() {
                if !value.is_empty() {
                    value.push(b' ');
                }
                value.extend_from_slice(cont);
            }
            continue;
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(ParseError::MalformedHeader { line: i + 2 })?;
        let (raw_name, rest) = line.split_at(colon);
        let raw_name = trim_end(raw_name);
        if raw_name.is_empty() || !raw_name.iter().all(|b| is_token_char(*b)) {
            return Err(ParseError::MalformedHeader { line: i + 2 });
        }
        let name = match raw_name {
            [c] => COMPACT
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(c))
                .map(|(_, full)| (*full).to_string()),
            _ => None,
        };
        let name = match name {
            Some(n) => n,
            None => String::from_utf8(raw_name.to_vec())
                .map_err(|_| ParseError::MalformedHeader { line: i + 2 })?,
        };
        let value = trim_start(rest.get(1..).unwrap_or_default());
        headers.push((name, value.to_vec()));
    }
    for (_, v) in &mut headers {
        let t = trim_end(v).len();
        v.truncate(t);
    }
    Ok(Split {
        start,
        headers,
        body,
    })
}

/// Parses one message: normalise, check the whole message with rsip, then
/// build the typed view.
pub(crate) fn parse(data: &[u8]) -> Result<Message, ParseError> {
    let split = split(data)?;
    let start_str = std::str::from_utf8(split.start).map_err(|_| ParseError::MalformedStartLine)?;
    let start = parse_start_line(start_str)?;

    // rsip knows neither extension methods nor versions beyond 2.0; hand it a
    // stand-in for those so it can still vet the rest. Both get their own
    // answers (501, 505) from the endpoint.
    let rsip_start = match &start {
        StartLine::Request { method, uri, .. } => {
            let m = match method {
                Method::Extension(_) => "OPTIONS",
                m => m.as_str(),
            };
            format!("{m} {uri} SIP/2.0")
        }
        StartLine::Response { .. } => {
            let rest = start_str
                .split_once(' ')
                .map(|(_, r)| r)
                .unwrap_or_default();
            format!("SIP/2.0 {rest}")
        }
    };
    let checked = Split {
        start: rsip_start.as_bytes(),
        headers: split.headers.clone(),
        body: split.body,
    };
    if let Err(err) = rsip::SipMessage::try_from(checked.to_bytes()) {
        // rsip's URI grammar is narrower than RFC 3261 §25.1 (escaped headers,
        // ';' and '?' in the user part, absolute URIs of other schemes), so
        // when our own URI check accepts the Request-URI, let rsip vet the rest
        // of the message with a stand-in URI.
        let StartLine::Request { method, uri, .. } = &start else {
            return Err(ParseError::Rsip(err));
        };
        if !request_uri_acceptable(uri) {
            return Err(ParseError::Rsip(err));
        }
        let m = match method {
            Method::Extension(_) => "OPTIONS",
            m => m.as_str(),
        };
        let stand_in = format!("{m} sip:stand-in.invalid SIP/2.0");
        let retry = Split {
            start: stand_in.as_bytes(),
            headers: checked.headers,
            body: split.body,
        };
        rsip::SipMessage::try_from(retry.to_bytes()).map_err(|_| ParseError::Rsip(err))?;
    }

    let mut headers = Vec::with_capacity(split.headers.len());
    for (i, (n, v)) in split.headers.into_iter().enumerate() {
        let v = String::from_utf8(v).map_err(|_| ParseError::MalformedHeader { line: i + 2 })?;
        headers.push((n, v));
    }
    Ok(Message {
        start,
        headers,
        body: split.body.to_vec(),
    })
}

/// A best-effort parse for inputs [`parse`] refused, to find out whether a 400
/// can be sent: no rsip check, a loose start line, lossy header values.
pub(crate) fn parse_lenient(data: &[u8]) -> Option<Message> {
    let split = split(data).ok()?;
    let start_line = String::from_utf8_lossy(split.start);
    let start = if start_line.starts_with("SIP/") {
        StartLine::Response {
            version: String::new(),
            code: 0,
        }
    } else {
        let mut parts = start_line.split_whitespace();
        let method = parts.next()?;
        if !method.bytes().all(is_token_char) {
            return None;
        }
        StartLine::Request {
            method: Method::from_token(method),
            uri: parts.next().unwrap_or_default().to_string(),
            version: String::new(),
        }
    };
    let headers = split
        .headers
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    Some(Message {
        start,
        headers,
        body: split.body.to_vec(),
    })
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §7.2)
        let (version, rest) = rest.split_once(' ').ok_or(ParseError::MalformedStartLine)?;
        let code = rest.split(' ').next().unwrap_or_default();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::MalformedStartLine);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::MalformedStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::MalformedStartLine);
        }
        return Ok(StartLine::Response {
            version: format!("SIP/{version}"),
            code,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §7.1): exactly
    // single spaces, so lwsstart/trws/lwsruri are rejected here.
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::MalformedStartLine);
    };
    if method.is_empty()
        || !method.bytes().all(is_token_char)
        || uri.is_empty()
        || !version.starts_with("SIP/")
    {
        return Err(ParseError::MalformedStartLine);
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri: uri.to_string(),
        version: version.to_string(),
    })
}

pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Splits a header value on commas that are outside quotes and angle brackets.
pub(crate) fn split_commas(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut escaped = false;
    let mut angle = 0u32;
    for ch in value.chars() {
        if in_quote {
            cur.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quote = false;
            }
            continue;
        }
        match ch {
            '"' => in_quote = true,
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            ',' if angle == 0 => {
                let t = cur.trim();
                if !t.is_empty() {
                    out.push(t.to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
    out
}

/// `;name=value` parameters; names lowercased, values as written.
pub(crate) fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect()
}

pub(crate) fn param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref())
}

/// One Via value (RFC 3261 §20.42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub(crate) fn parse(value: &str) -> Option<Via> {
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport,
        // where SLASH may carry LWS on both sides (RFC 3261 §25.1, RFC 4475 wsinv).
        let (name, rest) = value.trim().split_once('/')?;
        let (version, rest) = rest.split_once('/')?;
        let rest = rest.trim_start();
        let end = rest.find(|c: char| c.is_whitespace())?;
        let (transport, rest) = rest.split_at(end);
        let (name, version, transport) = (name.trim(), version.trim(), transport.trim());
        if !name.eq_ignore_ascii_case("SIP")
            || version.is_empty()
            || transport.is_empty()
            || !transport.bytes().all(is_token_char)
        {
            return None;
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.split_once(';') {
            Some((s, p)) => (s.trim(), parse_params(p)),
            None => (rest.trim(), Vec::new()),
        };
        let (host, port) = split_host_port(sent_by)?;
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub(crate) fn branch(&self) -> Option<&str> {
        param(&self.params, "branch").flatten()
    }

    /// `host[:port]` as written, used in transaction keys (RFC 3261 §17.2.3).
    pub(crate) fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }
}

/// Strict check of one Via header line: every comma-separated value parses
/// and no parameter or list element is empty (RFC 4475 §3.1.2.1 badinv01).
pub(crate) fn via_line_is_strict(value: &str) -> bool {
    value.split(',').all(|item| {
        let item = item.trim();
        !item.is_empty()
            && item.split(';').skip(1).all(|p| !p.trim().is_empty())
            && Via::parse(item).is_some_and(|v| {
                v.host.parse::<std::net::IpAddr>().is_ok()
                    || (!v.host.is_empty()
                        && v.host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            })
    })
}

/// Splits `host[:port]`, IPv6 references in brackets (RFC 3261 §25.1).
pub(crate) fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.trim().is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.split_once(':') {
        Some((h, p)) => {
            let p: u16 = p.trim().parse().ok()?;
            Some((h.trim().to_string(), Some(p)))
        }
        None => Some((s.to_string(), None)),
    }
}

/// A From/To/Contact/Route value (RFC 3261 §20.10, §20.20, §20.39).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NameAddr {
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub(crate) fn parse(value: &str) -> Option<NameAddr> {
        let value = value.trim();
        // Skip a quoted display name so '<' inside it is not taken for the URI.
        let mut search_from = 0;
        if let Some(rest) = value.strip_prefix('"') {
            let mut escaped = false;
            let mut end = None;
            for (i, ch) in rest.char_indices() {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    end = Some(i + 2);
                    break;
                }
            }
            search_from = end?;
        }
        let tail = value.get(search_from..)?;
        if let Some(lt) = tail.find('<') {
            let after = tail.get(lt + 1..)?;
            let gt = after.find('>')?;
            let uri = after.get(..gt)?.trim().to_string();
            let params = parse_params(after.get(gt + 1..)?);
            if uri.is_empty() {
                return None;
            }
            Some(NameAddr { uri, params })
        } else {
            // addr-spec form: parameters after ';' belong to the header (RFC 3261 §20).
            let (uri, params) = match tail.split_once(';') {
                Some((u, p)) => (u.trim(), parse_params(p)),
                None => (tail.trim(), Vec::new()),
            };
            if uri.is_empty() || uri.contains(' ') {
                return None;
            }
            Some(NameAddr {
                uri: uri.to_string(),
                params,
            })
        }
    }

    pub(crate) fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }
}

/// `CSeq: number method` (RFC 3261 §20.16); the number must be below 2**31.
pub(crate) fn parse_cseq(value: &str) -> Option<(u32, String)> {
    let mut it = value.split_whitespace();
    let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    if n >= 1 << 31 {
        return None;
    }
    Some((u32::try_from(n).ok()?, m.to_string()))
}

/// The scheme of a URI, lowercased (RFC 3986 §3.1).
pub(crate) fn uri_scheme(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    if !first.is_ascii_alphabetic()
        || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    Some(scheme.to_ascii_lowercase())
}

/// The parts of a sip/sips URI the endpoint uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SipUri {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub ip: Option<std::net::IpAddr>,
    pub transport: Option<String>,
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

/// Parses a sip/sips URI per the RFC 3261 §25.1 grammar (SIP-URI, SIPS-URI),
/// leniently where real peers differ but never accepting whitespace or the
/// delimiters of name-addr.
pub(crate) fn parse_sip_uri(uri: &str) -> Option<SipUri> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    if rest.is_empty()
        || rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    {
        return None;
    }
    let (userinfo, rest) = match rest.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let user = match userinfo {
        Some(u) => {
            if !u
                .chars()
                .all(|c| is_unreserved(c) || "%&=+$,;?/:".contains(c))
            {
                return None;
            }
            let user = u.split_once(':').map_or(u, |(user, _)| user);
            if user.is_empty() {
                return None;
            }
            Some(percent_decode(user))
        }
        None => None,
    };
    let (hostport, params) = match rest.find([';', '?']) {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(hostport)?;
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    if ip.is_none()
        && (host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return None;
    }
    let params = params.split('?').next().unwrap_or_default();
    let params = parse_params(params);
    if params.iter().any(|(n, _)| n.is_empty()) {
        return None;
    }
    let transport = param(&params, "transport")
        .flatten()
        .map(str::to_ascii_lowercase);
    Some(SipUri {
        user,
        host,
        port,
        ip,
        transport,
    })
}

/// Whether a Request-URI is acceptable syntax: a SIP URI we can parse, or
/// another scheme's absolute URI (answered 416 later, RFC 3261 §8.2.2.1).
fn request_uri_acceptable(uri: &str) -> bool {
    match uri_scheme(uri).as_deref() {
        Some("sip" | "sips") => parse_sip_uri(uri).is_some(),
        Some(_) => !uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c)),
        None => false,
    }
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.2); malformed escapes stay literal
/// (RFC 4475 §3.1.1.5 esc02).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or_default();
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn normalize_unfolds_and_expands_compact_names_but_leaves_body() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: one\r\n  two\r\n\tthree\r\ni: x\r\n\r\nf: body\r\n";
        let out = normalize(raw).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: one two three\r\nCall-ID: x\r\n\r\nf: body\r\n"
        );
    }

    #[test]
    fn normalize_tolerates_bare_lf() {
        let out = normalize(b"OPTIONS sip:a@b SIP/2.0\nl: 0\n\n").unwrap();
        assert_eq!(out, b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn normalize_rejects_continuation_without_header() {
        assert_eq!(
            normalize(b"OPTIONS sip:a@b SIP/2.0\r\n  x\r\n\r\n"),
            Err(ParseError::OrphanContinuation)
        );
    }

    #[test]
    fn commas_inside_quotes_and_brackets_do_not_split() {
        assert_eq!(
            split_commas(r#""a, b" <sip:x@y;p=1,2>, <sip:z>"#),
            vec![
                r#""a, b" <sip:x@y;p=1,2>"#.to_string(),
                "<sip:z>".to_string()
            ]
        );
    }

    #[test]
    fn via_parses_ipv6_sent_by_and_params() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKx;rport").unwrap();
        assert_eq!(v.host, "2001:db8::9");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(param(&v.params, "rport"), Some(None));
    }

    #[test]
    fn name_addr_handles_display_names_with_brackets() {
        let n = NameAddr::parse(r#""<weird>" <sip:a@b>;tag=7"#).unwrap();
        assert_eq!(n.uri, "sip:a@b");
        assert_eq!(n.tag(), Some("7"));
        let n = NameAddr::parse("sip:a@b;tag=9").unwrap();
        assert_eq!(n.uri, "sip:a@b");
        assert_eq!(n.tag(), Some("9"));
    }

    #[test]
    fn cseq_rejects_overlarge_numbers() {
        assert_eq!(parse_cseq("5 INVITE"), Some((5, "INVITE".into())));
        assert_eq!(parse_cseq("2147483648 INVITE"), None);
        assert_eq!(parse_cseq("-1 INVITE"), None);
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("room%2042"), "room 42");
        assert_eq!(percent_decode("a%zzb%4"), "a%zzb%4");
    }
}
