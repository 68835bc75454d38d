//! The `Reason` header (RFC 3326): why a BYE (or CANCEL) ends a session, as a protocol, a
//! cause and an optional text, e.g. `Reason: SIP ;cause=503 ;text="Service Unavailable"`.

use std::fmt;

/// Which numbering the cause of a [`Reason`] belongs to (RFC 3326 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonProtocol {
    /// A SIP status code.
    Sip,
    /// An ITU-T Q.850 cause value.
    Q850,
}

impl ReasonProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonProtocol::Sip => "SIP",
            ReasonProtocol::Q850 => "Q.850",
        }
    }
}

/// One `Reason` header value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reason {
    pub protocol: ReasonProtocol,
    pub cause: u16,
    /// Free text; written as a quoted string with `"` and `\` escaped (RFC 3261 §25.1).
    pub text: Option<String>,
}

impl Reason {
    /// A SIP status code as the cause, e.g. `Reason::sip(503, "Server shutting down")`.
    pub fn sip(cause: u16, text: impl Into<String>) -> Self {
        Reason {
            protocol: ReasonProtocol::Sip,
            cause,
            text: Some(text.into()),
        }
    }

    /// A Q.850 cause, e.g. `Reason::q850(16, "Normal call clearing")`.
    pub fn q850(cause: u16, text: impl Into<String>) -> Self {
        Reason {
            protocol: ReasonProtocol::Q850,
            cause,
            text: Some(text.into()),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};cause={}", self.protocol.as_str(), self.cause)?;
        if let Some(text) = &self.text {
            f.write_str(";text=\"")?;
            // Control characters (CR/LF above all) would end the header: they are dropped.
            for c in text.chars().filter(|c| !c.is_control()) {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_values_follow_rfc_3326_syntax() {
        let cases = [
            (
                Reason::sip(503, "Server shutting down"),
                "SIP;cause=503;text=\"Server shutting down\"",
            ),
            (
                Reason::q850(16, "Normal call clearing"),
                "Q.850;cause=16;text=\"Normal call clearing\"",
            ),
            (
                Reason {
                    protocol: ReasonProtocol::Sip,
                    cause: 408,
                    text: None,
                },
                "SIP;cause=408",
            ),
            (
                Reason::sip(500, "a \"quoted\" \\ text\r\nInjected: x"),
                "SIP;cause=500;text=\"a \\\"quoted\\\" \\\\ textInjected: x\"",
            ),
        ];
        for (reason, wire) in cases {
            assert_eq!(reason.to_string(), wire);
        }
    }
}
