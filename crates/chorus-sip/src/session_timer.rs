//! RFC 4028 session timers, UAS side: what a dialog-creating INVITE, a re-INVITE or an UPDATE
//! asks for (`Session-Expires`, `Min-SE`, `Supported: timer`), what we answer, and when the
//! session expires.
//!
//! We never refresh with re-INVITE (there is no INVITE client transaction here); we refresh
//! with UPDATE (RFC 3311) when the peer allows it. Within that, RFC 4028 §9 is followed:
//!
//! | UAC supports `timer` | refresher asked | we answer                                   |
//! |----------------------|-----------------|---------------------------------------------|
//! | yes                  | none or `uac`   | `refresher=uac`, `Require: timer`           |
//! | yes                  | `uas`           | `refresher=uas` if it allows UPDATE, else no timer |
//! | no                   | (a proxy's)     | `refresher=uas` if it allows UPDATE, else no timer |
//!
//! "No timer" means no `Session-Expires` in the 2xx, which §7.2 and §8.1 read as "this UAS
//! does not do session timers": nobody refreshes and nothing expires. A UAC that supports
//! timers but asks for none gets our own interval with `refresher=uac` (§9: the UAS may
//! request one). An interval below our minimum is refused with 422 and our `Min-SE` when
//! the UAC supports timers, and raised to it otherwise (§8.1, §9).

use std::time::Duration;

use crate::message::{parse_params, split_commas, Message};

/// RFC 4028 §4: the recommended session interval.
pub const DEFAULT_SESSION_EXPIRES: u32 = 1800;
/// RFC 4028 §5: nobody may ask for less than 90 s.
pub const MIN_MIN_SE: u32 = 90;

/// Session-timer settings of an [`crate::Endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// The smallest session interval we accept, in seconds (our `Min-SE`); raised to 90 if
    /// lower.
    pub min_se: u32,
    /// The interval we ask for when the UAC supports session timers but asks for none, in
    /// seconds; 0 leaves such calls without a timer.
    pub session_expires: u32,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            min_se: MIN_MIN_SE,
            session_expires: DEFAULT_SESSION_EXPIRES,
        }
    }
}

impl SessionTimerConfig {
    fn min_se(&self) -> u32 {
        self.min_se.max(MIN_MIN_SE)
    }
}

/// Which side sends the refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresher {
    Us,
    Peer,
}

/// A session timer in force (or about to be, with our 2xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    /// The session interval, seconds.
    pub interval: u32,
    pub refresher: Refresher,
    /// Our 2xx carries `Require: timer` (the UAC supports timers, §9).
    pub require: bool,
}

impl SessionTimer {
    /// When we refresh, after the 2xx (§7.4: half the interval is recommended).
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval / 2))
    }

    /// When, without a refresh, the session is over and we send BYE (§10: the interval less
    /// a third of it, at most 32 s).
    pub fn expire_after(&self) -> Duration {
        let margin = (self.interval / 3).min(32);
        Duration::from_secs(u64::from(self.interval - margin))
    }

    /// The `Session-Expires` value of a response we send (we are the UAS).
    pub fn response_header(&self) -> String {
        let who = match self.refresher {
            Refresher::Us => "uas",
            Refresher::Peer => "uac",
        };
        format!("{};refresher={who}", self.interval)
    }

    /// The `Session-Expires` value of a refresh we send (we are the UAC).
    pub fn request_header(&self) -> String {
        format!("{};refresher=uac", self.interval)
    }
}

/// What we do with a session-refresh request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// 422 Session Interval Too Small, with this `Min-SE` (§6).
    TooSmall { min_se: u32 },
    /// Accept; `None`: no session timer for the dialog.
    Accept(Option<SessionTimer>),
}

/// The session-timer fields of a request or response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Asked {
    /// `Session-Expires` interval and its `refresher` ("uac" → `Some(true)`).
    pub interval: Option<u32>,
    pub refresher_uac: Option<bool>,
    pub min_se: Option<u32>,
    /// `timer` in Supported or Require.
    pub supported: bool,
    /// UPDATE in Allow: we can refresh with it.
    pub allows_update: bool,
}

impl Asked {
    pub fn of(msg: &Message) -> Asked {
        let (interval, refresher_uac) = match msg.first("Session-Expires").map(parse_expires) {
            Some(Some((interval, refresher))) => (Some(interval), refresher),
            _ => (None, None),
        };
        let min_se = msg
            .first("Min-SE")
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.trim().parse().ok());
        let has = |name: &str, token: &str| {
            msg.list(name)
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        Asked {
            interval,
            refresher_uac,
            min_se,
            supported: has("Supported", "timer") || has("Require", "timer"),
            allows_update: has("Allow", "UPDATE"),
        }
    }
}

/// `delta-seconds *(;param)` with `refresher=uac|uas` (RFC 4028 §4); `None` when the
/// interval is not a number (the header is then ignored, as if absent).
fn parse_expires(value: &str) -> Option<(u32, Option<bool>)> {
    let value = split_commas(value).into_iter().next()?;
    let (delta, params) = match value.split_once(';') {
        Some((d, p)) => (d, parse_params(p)),
        None => (value.as_str(), Vec::new()),
    };
    let interval = delta.trim().parse::<u32>().ok()?;
    let refresher = params.iter().find_map(|(name, v)| {
        (name == "refresher").then(|| v.as_deref().map(str::to_ascii_lowercase))?
    });
    let refresher = match refresher.as_deref() {
        Some("uac") => Some(true),
        Some("uas") => Some(false),
        _ => None,
    };
    Some((interval, refresher))
}

/// RFC 4028 §9 for a request we are about to answer 2xx (see the module docs).
pub(crate) fn decide(asked: &Asked, config: &SessionTimerConfig) -> Decision {
    let ours = config.min_se();
    let floor = ours.max(asked.min_se.unwrap_or(0));
    let Some(interval) = asked.interval else {
        if asked.supported && config.session_expires > 0 {
            return Decision::Accept(Some(SessionTimer {
                interval: config.session_expires.max(floor),
                refresher: Refresher::Peer,
                require: true,
            }));
        }
        return Decision::Accept(None);
    };
    if interval < ours && asked.supported {
        return Decision::TooSmall { min_se: ours };
    }
    // §8.1: a UAC that does not support timers cannot retry; its interval is raised instead.
    let interval = interval.max(floor);
    let timer = match (asked.supported, asked.refresher_uac) {
        (true, Some(true) | None) => Some(SessionTimer {
            interval,
            refresher: Refresher::Peer,
            require: true,
        }),
        (true, Some(false)) => asked.allows_update.then_some(SessionTimer {
            interval,
            refresher: Refresher::Us,
            require: true,
        }),
        // The UAC knows nothing of timers: only we can refresh (§9's table).
        (false, _) => asked.allows_update.then_some(SessionTimer {
            interval,
            refresher: Refresher::Us,
            require: false,
        }),
    };
    Decision::Accept(timer)
}

/// The timer a 2xx to our own refresh puts in force (§7.2, we are the UAC): `None` when it
/// has no `Session-Expires` (the peer dropped the timer).
pub(crate) fn from_refresh_response(asked: &Asked) -> Option<SessionTimer> {
    let interval = asked.interval?;
    Some(SessionTimer {
        interval,
        refresher: match asked.refresher_uac {
            Some(false) => Refresher::Peer,
            _ => Refresher::Us,
        },
        require: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(
        interval: Option<u32>,
        refresher_uac: Option<bool>,
        supported: bool,
        allows_update: bool,
    ) -> Asked {
        Asked {
            interval,
            refresher_uac,
            min_se: None,
            supported,
            allows_update,
        }
    }

    fn timer(interval: u32, refresher: Refresher, require: bool) -> Decision {
        Decision::Accept(Some(SessionTimer {
            interval,
            refresher,
            require,
        }))
    }

    #[test]
    fn the_uas_answers_rfc_4028_section_9s_table() {
        use Refresher::{Peer, Us};
        let config = SessionTimerConfig::default();
        let cases = [
            // (Session-Expires, refresher=uac?, Supported: timer, Allow: UPDATE) → decision
            (
                (Some(1800), Some(true), true, false),
                timer(1800, Peer, true),
            ),
            ((Some(1800), None, true, false), timer(1800, Peer, true)),
            ((Some(1800), Some(false), true, true), timer(1800, Us, true)),
            (
                (Some(1800), Some(false), true, false),
                Decision::Accept(None),
            ),
            ((Some(1800), None, false, true), timer(1800, Us, false)),
            ((Some(1800), None, false, false), Decision::Accept(None)),
            ((None, None, true, false), timer(1800, Peer, true)),
            ((None, None, false, true), Decision::Accept(None)),
            // Below our Min-SE: refused when the UAC can retry, raised when it cannot.
            (
                (Some(60), None, true, true),
                Decision::TooSmall { min_se: 90 },
            ),
            ((Some(60), None, false, true), timer(90, Us, false)),
            ((Some(90), Some(true), true, false), timer(90, Peer, true)),
        ];
        for ((interval, refresher, supported, update), want) in cases {
            let a = asked(interval, refresher, supported, update);
            assert_eq!(decide(&a, &config), want, "{a:?}");
        }
    }

    #[test]
    fn our_minimum_and_the_requests_min_se_bound_the_interval() {
        let config = SessionTimerConfig {
            min_se: 600,
            session_expires: 300,
        };
        let mut a = asked(Some(300), None, true, false);
        assert_eq!(decide(&a, &config), Decision::TooSmall { min_se: 600 });
        // Our own interval is raised to what the request's Min-SE allows.
        a = asked(None, None, true, false);
        a.min_se = Some(1200);
        assert_eq!(decide(&a, &config), timer(1200, Refresher::Peer, true));
        // Min-SE below 90 is never ours.
        let low = SessionTimerConfig {
            min_se: 30,
            session_expires: 0,
        };
        assert_eq!(
            decide(&asked(Some(60), None, true, false), &low),
            Decision::TooSmall { min_se: 90 }
        );
        assert_eq!(
            decide(&asked(None, None, true, false), &low),
            Decision::Accept(None),
            "session_expires = 0 asks for no timer"
        );
    }

    #[test]
    fn expiry_leaves_a_third_of_the_interval_at_most_32_seconds() {
        let t = |interval| SessionTimer {
            interval,
            refresher: Refresher::Peer,
            require: true,
        };
        assert_eq!(t(90).expire_after(), Duration::from_secs(60));
        assert_eq!(t(1800).expire_after(), Duration::from_secs(1768));
        assert_eq!(t(1800).refresh_after(), Duration::from_secs(900));
        assert_eq!(t(1800).response_header(), "1800;refresher=uac");
    }

    #[test]
    fn session_expires_values_parse_leniently() {
        assert_eq!(parse_expires("1800"), Some((1800, None)));
        assert_eq!(
            parse_expires("1800;refresher=uac"),
            Some((1800, Some(true)))
        );
        assert_eq!(
            parse_expires(" 90 ; Refresher=UAS ;x=y"),
            Some((90, Some(false)))
        );
        assert_eq!(parse_expires("90;refresher=other"), Some((90, None)));
        assert_eq!(parse_expires("soon"), None);
        assert_eq!(parse_expires("99999999999"), None);
    }
}
