//! Typed access to one element's attributes, with errors naming element and attribute.

use std::ops::RangeInclusive;

use crate::ast::{ChannelType, Method, RecordFormat, SipHeader, Sound, TranscriptionType};
use crate::FlowError;

pub(crate) struct Attrs<'a> {
    element: &'a str,
    list: &'a [(String, String)],
}

impl<'a> Attrs<'a> {
    pub fn new(element: &'a str, list: &'a [(String, String)]) -> Self {
        Self { element, list }
    }

    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.list
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn bad(&self, attribute: &str, value: &str, reason: impl Into<String>) -> FlowError {
        FlowError::BadAttribute {
            element: self.element.to_owned(),
            attribute: attribute.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, FlowError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| self.bad(name, v, "expected true or false")),
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, FlowError> {
        self.raw(name)
            .map(|v| parse_bool(v).ok_or_else(|| self.bad(name, v, "expected true or false")))
            .transpose()
    }

    pub fn opt_u32(
        &self,
        name: &str,
        range: RangeInclusive<u32>,
    ) -> Result<Option<u32>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        let n: u32 = v.trim().parse().map_err(|_| {
            self.bad(
                name,
                v,
                format!("expected an integer in {}..={}", range.start(), range.end()),
            )
        })?;
        if !range.contains(&n) {
            return Err(self.bad(
                name,
                v,
                format!("out of range {}..={}", range.start(), range.end()),
            ));
        }
        Ok(Some(n))
    }

    pub fn u32(
        &self,
        name: &str,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> Result<u32, FlowError> {
        Ok(self.opt_u32(name, range)?.unwrap_or(default))
    }

    /// An integer that may also be the word `auto` (meaning `None`).
    pub fn auto_u32(
        &self,
        name: &str,
        range: RangeInclusive<u32>,
    ) -> Result<Option<u32>, FlowError> {
        match self.raw(name) {
            Some(v) if v.trim().eq_ignore_ascii_case("auto") => Ok(None),
            _ => self.opt_u32(name, range),
        }
    }

    pub fn method(&self, name: &str) -> Result<Method, FlowError> {
        match self.raw(name) {
            None => Ok(Method::Post),
            Some(v) if v.trim().eq_ignore_ascii_case("GET") => Ok(Method::Get),
            Some(v) if v.trim().eq_ignore_ascii_case("POST") => Ok(Method::Post),
            Some(v) => Err(self.bad(name, v, "expected GET or POST")),
        }
    }

    /// An absolute http(s) URL; empty counts as absent.
    pub fn url(&self, name: &str) -> Result<Option<String>, FlowError> {
        match self.raw(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if is_http_url(v) => Ok(Some(v.to_owned())),
            Some(v) => Err(self.bad(name, v, "expected an absolute http:// or https:// URL")),
        }
    }

    /// Free text; empty counts as absent.
    pub fn string(&self, name: &str) -> Option<String> {
        match self.raw(name).map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.to_owned()),
        }
    }

    pub fn record_format(&self, name: &str) -> Result<RecordFormat, FlowError> {
        match self.raw(name) {
            None => Ok(RecordFormat::Mp3),
            Some(v) if v.trim().eq_ignore_ascii_case("mp3") => Ok(RecordFormat::Mp3),
            Some(v) if v.trim().eq_ignore_ascii_case("wav") => Ok(RecordFormat::Wav),
            Some(v) => Err(self.bad(name, v, "expected mp3 or wav")),
        }
    }

    pub fn transcription_type(&self, name: &str) -> Result<Option<TranscriptionType>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "auto" => Ok(Some(TranscriptionType::Auto)),
            "hybrid" => Ok(Some(TranscriptionType::Hybrid)),
            "manual" => Ok(Some(TranscriptionType::Manual)),
            _ => Err(self.bad(name, v, "expected auto, hybrid or manual")),
        }
    }

    pub fn channel_type(&self, name: &str) -> Result<Option<ChannelType>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "mono" => Ok(Some(ChannelType::Mono)),
            "stereo" => Ok(Some(ChannelType::Stereo)),
            _ => Err(self.bad(name, v, "expected mono or stereo")),
        }
    }

    /// `""`, `beep:1`, `beep:2`, or an absolute URL.
    pub fn sound(&self, name: &str) -> Result<Option<Sound>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        let t = v.trim();
        if t.is_empty() {
            Ok(None)
        } else if t.eq_ignore_ascii_case("beep:1") {
            Ok(Some(Sound::Beep1))
        } else if t.eq_ignore_ascii_case("beep:2") {
            Ok(Some(Sound::Beep2))
        } else if is_http_url(t) {
            Ok(Some(Sound::Url(t.to_owned())))
        } else {
            Err(self.bad(
                name,
                v,
                "expected beep:1, beep:2 or an absolute http(s) URL",
            ))
        }
    }

    /// DTMF digits to send: `0-9 * # A-D` and `w`/`W` pauses; empty counts as absent.
    pub fn digits(&self, name: &str) -> Result<Option<String>, FlowError> {
        match self.raw(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => check_dtmf(v)
                .map(|()| Some(v.to_owned()))
                .map_err(|reason| self.bad(name, v, reason)),
        }
    }

    /// A single key (`0-9 * #`), or `None` for absent / empty / `none`.
    pub fn key(&self, name: &str, default: Option<char>) -> Result<Option<char>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        let t = v.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let mut chars = t.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if is_key(c) => Ok(Some(c)),
            _ => Err(self.bad(name, v, "expected one key of 0-9, * or #")),
        }
    }

    /// A set of keys (`0-9 * #`); empty allowed.
    pub fn keys(&self, name: &str, default: &str) -> Result<String, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(default.to_owned());
        };
        let t = v.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(String::new());
        }
        if t.chars().all(is_key) {
            Ok(t.to_owned())
        } else {
            Err(self.bad(name, v, "expected only the keys 0-9, * and #"))
        }
    }

    /// Comma-separated digit patterns (`digitsMatch`).
    pub fn patterns(&self, name: &str) -> Result<Vec<String>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(Vec::new());
        };
        if v.trim().is_empty() {
            return Ok(Vec::new());
        }
        v.split(',')
            .map(|p| {
                let p = p.trim();
                if !p.is_empty() && p.chars().all(is_key) {
                    Ok(p.to_owned())
                } else {
                    Err(self.bad(
                        name,
                        v,
                        "expected a comma list of non-empty patterns of 0-9, * and #",
                    ))
                }
            })
            .collect()
    }

    /// `sipHeaders="name=value,name2=value2"`.
    pub fn sip_headers(&self, name: &str) -> Result<Vec<SipHeader>, FlowError> {
        let Some(v) = self.raw(name) else {
            return Ok(Vec::new());
        };
        if v.trim().is_empty() {
            return Ok(Vec::new());
        }
        v.split(',')
            .map(|pair| {
                let (k, val) = pair.split_once('=').ok_or_else(|| {
                    self.bad(name, v, "expected name=value pairs separated by commas")
                })?;
                let k = k.trim();
                let token = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
                if k.is_empty() || !k.chars().all(token) {
                    return Err(self.bad(name, v, "header name must be letters, digits, - or _"));
                }
                if val.chars().any(|c| c.is_control()) {
                    return Err(self.bad(name, v, "header value contains a control character"));
                }
                Ok(SipHeader {
                    name: k.to_owned(),
                    value: val.trim().to_owned(),
                })
            })
            .collect()
    }
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    let t = v.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

pub(crate) fn is_http_url(v: &str) -> bool {
    let rest = if v.len() >= 8 && v.is_char_boundary(8) && v[..8].eq_ignore_ascii_case("https://") {
        &v[8..]
    } else if v.len() >= 7 && v.is_char_boundary(7) && v[..7].eq_ignore_ascii_case("http://") {
        &v[7..]
    } else {
        return false;
    };
    !rest.is_empty() && !rest.starts_with('/') && !v.chars().any(char::is_whitespace)
}

fn is_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

pub(crate) fn check_dtmf(v: &str) -> Result<(), &'static str> {
    if v.chars()
        .all(|c| is_key(c) || matches!(c, 'A'..='D' | 'a'..='d' | 'w' | 'W'))
    {
        Ok(())
    } else {
        Err("expected only 0-9, *, #, A-D and w/W pauses")
    }
}
