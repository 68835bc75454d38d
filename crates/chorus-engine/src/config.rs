//! The engine's typed, validated configuration (the binary builds it from TOML and flags).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chorus_flow::Method;
use chorus_mixer::MixerConfig;
use chorus_sip::auth::DigestConfig;
use chorus_sip::guard::{GuardConfig, IpNet};

/// An API account. Inbound calls and rooms belong to one.
#[derive(Clone)]
pub struct Account {
    pub auth_id: String,
    pub auth_token: String,
    /// Inbound calls whose dialled user part (the Request-URI user, e.g. a number) matches one
    /// of these belong to this account.
    pub numbers: Vec<regex::Regex>,
    /// Inbound calls whose Request-URI host is one of these (case-insensitive) belong to this
    /// account.
    pub domains: Vec<String>,
    /// The account's XML call flow (API.md §9.1); without one the engine-wide
    /// [`EngineConfig::answer_url`] applies, and without that the default flow.
    pub answer_url: Option<String>,
    pub answer_method: Method,
    /// Fetched when the answer URL fails.
    pub fallback_url: Option<String>,
    pub fallback_method: Method,
    /// Told once when a call ends (API.md §9.2); the engine-wide one applies otherwise.
    pub hangup_url: Option<String>,
    pub hangup_method: Method,
    /// SIP digest credentials (RFC 3261 §22): when there are any, every INVITE routed to this
    /// account must authenticate as one of them.
    pub sip_users: Vec<SipUser>,
    /// Sources allowed to call this account (CIDR); empty = any. Others' INVITEs are
    /// dropped unanswered.
    pub sip_allow_from: Vec<IpNet>,
}

/// One SIP digest user of an account.
#[derive(Clone, PartialEq, Eq)]
pub struct SipUser {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SipUser {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Who may send SIP and how much (see `chorus_sip::guard`), how INVITEs authenticate (see
/// `chorus_sip::auth`), and which user agents are scanners.
#[derive(Debug, Clone)]
pub struct SipSecurity {
    pub guard: GuardConfig,
    pub digest: DigestConfig,
    /// `User-Agent` substrings dropped unanswered (case-insensitive).
    pub scanner_user_agents: Vec<String>,
}

impl Default for SipSecurity {
    fn default() -> Self {
        Self {
            guard: GuardConfig::default(),
            digest: DigestConfig::default(),
            scanner_user_agents: chorus_sip::KNOWN_SCANNERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Account {
    /// An account that claims no calls by pattern (the first account still takes the rest).
    pub fn new(auth_id: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            auth_id: auth_id.into(),
            auth_token: auth_token.into(),
            numbers: Vec::new(),
            domains: Vec::new(),
            answer_url: None,
            answer_method: Method::Post,
            fallback_url: None,
            fallback_method: Method::Post,
            hangup_url: None,
            hangup_method: Method::Post,
            sip_users: Vec::new(),
            sip_allow_from: Vec::new(),
        }
    }

    fn claims(&self, user: Option<&str>, host: &str) -> bool {
        let host = host.split(':').next().unwrap_or(host);
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
            || user.is_some_and(|u| self.numbers.iter().any(|re| re.is_match(u)))
    }
}

/// Which account an inbound call belongs to: the first whose domain matches the Request-URI
/// host or whose number pattern matches its user part; else the first account.
pub fn route_call<'a>(
    accounts: &'a [Account],
    user: Option<&str>,
    host: &str,
) -> Option<&'a Account> {
    accounts
        .iter()
        .find(|a| a.claims(user, host))
        .or_else(|| accounts.first())
}

impl std::fmt::Debug for Account {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("auth_id", &self.auth_id)
            .field("auth_token", &"<redacted>")
            .field("sip_users", &self.sip_users)
            .field("sip_allow_from", &self.sip_allow_from)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// SIP over UDP and TCP on this address.
    pub sip_listen: SocketAddr,
    /// The address put in Contact and SDP `c=` lines.
    pub advertise_ip: IpAddr,
    /// Where RTP sockets are bound.
    pub rtp_bind_ip: IpAddr,
    pub rtp_ports: (u16, u16),
    pub accounts: Vec<Account>,
    /// The XML call flow of accounts that set none; without any the default flow runs.
    pub answer_url: Option<String>,
    pub answer_method: Method,
    /// The hangup webhook of accounts that set none.
    pub hangup_url: Option<String>,
    pub hangup_method: Method,
    /// `stayAlone` when a `<Conference>` does not say (API.md §15.3).
    pub stay_alone_default: bool,
    /// Engine-wide room capacity: `maxMembers` above it is clamped (API.md §15.4).
    pub max_members_cap: u32,
    pub recordings_dir: PathBuf,
    /// Longest recording (REST `time_limit` and `maxLength` are capped by it).
    pub max_recording: Option<Duration>,
    /// How clients reach the HTTP API (`http://host:port`): recording URLs are built on it.
    pub public_url: String,
    pub mixer: MixerConfig,
    /// RFC 4028 session timers: our Min-SE and the interval we ask for.
    pub session_timer: chorus_sip::SessionTimerConfig,
    /// RTP timeouts: calls without media are hung up.
    pub media_timeouts: crate::MediaTimeouts,
    /// How long shutdown waits for BYEs to be answered before giving up.
    pub hangup_timeout: Duration,
    /// While draining, new INVITEs and OPTIONS get 503 with this `Retry-After` (seconds).
    pub drain_retry_after: u32,
    /// How long shutdown waits for the recordings it stops to finish their files.
    pub recording_finish_timeout: Duration,
    /// How long shutdown waits for queued callbacks (hangups, recordings) to be delivered.
    pub webhook_flush_timeout: Duration,
    pub user_agent: String,
    /// Larger SIP messages are dropped (UDP) or close their connection (TCP), counted.
    pub max_sip_message: usize,
    pub sip_security: SipSecurity,
}

impl EngineConfig {
    /// A loopback configuration with one account, handy for tests.
    pub fn loopback(sip_port: u16, rtp_ports: (u16, u16)) -> Self {
        let ip: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        Self {
            sip_listen: SocketAddr::new(ip, sip_port),
            advertise_ip: ip,
            rtp_bind_ip: ip,
            rtp_ports,
            accounts: vec![Account::new("MA_DEMO", "demo")],
            answer_url: None,
            answer_method: Method::Post,
            hangup_url: None,
            hangup_method: Method::Post,
            stay_alone_default: true,
            max_members_cap: 200,
            recordings_dir: PathBuf::from("recordings"),
            max_recording: Some(Duration::from_secs(4 * 3600)),
            public_url: "http://127.0.0.1:8080".into(),
            mixer: MixerConfig::default(),
            session_timer: chorus_sip::SessionTimerConfig::default(),
            media_timeouts: crate::MediaTimeouts::default(),
            hangup_timeout: Duration::from_secs(5),
            drain_retry_after: 60,
            recording_finish_timeout: Duration::from_secs(10),
            webhook_flush_timeout: Duration::from_secs(5),
            user_agent: format!("Chorus/{}", env!("CARGO_PKG_VERSION")),
            max_sip_message: 64 * 1024,
            sip_security: SipSecurity::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn calls_route_by_domain_then_number_pattern_else_to_the_first_account() {
        let mut sales = Account::new("MA_SALES", "t");
        sales.domains = vec!["sales.example.com".into()];
        let mut support = Account::new("MA_SUPPORT", "t");
        support.numbers = vec![regex::Regex::new("^\\+?4420").unwrap()];
        let accounts = [Account::new("MA_FIRST", "t"), sales, support];
        let route = |user: Option<&str>, host: &str| {
            route_call(&accounts, user, host).unwrap().auth_id.clone()
        };
        assert_eq!(route(Some("room1"), "SALES.example.com:5060"), "MA_SALES");
        assert_eq!(route(Some("+442079460000"), "127.0.0.1"), "MA_SUPPORT");
        assert_eq!(route(Some("room1"), "127.0.0.1"), "MA_FIRST");
        assert_eq!(route(None, "other.example.com"), "MA_FIRST");
        assert!(route_call(&[], Some("x"), "h").is_none());
    }
}
