//! The TOML configuration file and its command-line overrides, turned into the engine's typed
//! configuration. `config/chorus.toml` is embedded as the default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chorus_engine::{Account, EngineConfig, SipUser};
use chorus_sip::auth::Algorithm;
use chorus_sip::guard::{IpNet, RateLimit};
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = include_str!("../../../config/chorus.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub rtp: RtpSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub calls: CallsSection,
    #[serde(default)]
    pub recordings: RecordingsSection,
    #[serde(default)]
    pub shutdown: ShutdownSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    pub listen: Option<SocketAddr>,
    pub advertise: Option<IpAddr>,
    /// RFC 4028: the shortest session interval we accept, seconds (default 90, at least 90).
    pub min_se_s: Option<u32>,
    /// RFC 4028: the interval we ask of a UAC that supports session timers but asks for
    /// none, seconds (default 1800; 0 = none).
    pub session_expires_s: Option<u32>,
    /// Larger SIP messages are dropped (UDP) or close their TCP connection (default 65536).
    pub max_message_bytes: Option<usize>,
    /// Sources (CIDR or address) allowed to send SIP at all; absent or empty = any.
    pub allow_from: Option<Vec<String>>,
    /// `User-Agent` substrings dropped unanswered (default: well-known scanners; [] = none).
    pub scanner_user_agents: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit: RateLimitSection,
    #[serde(default)]
    pub auth: AuthSection,
}

/// `[sip.rate_limit]`: a token bucket per source address, and bans.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Average requests per second per source (default 50; 0 = no limit).
    pub requests_per_s: Option<u32>,
    /// Requests a source may send at once (default 100).
    pub burst: Option<u32>,
    /// How long a source over its rate is ignored (default 60; 0 = only drop the excess).
    pub ban_s: Option<u64>,
    /// Sources tracked at once (default 10000).
    pub max_sources: Option<usize>,
    /// Sources never limited (default loopback: `["127.0.0.0/8", "::1/128"]`).
    pub exempt: Option<Vec<String>>,
}

/// `[sip.auth]`: digest authentication of accounts that have SIP users.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The realm phones see (default "chorus").
    pub realm: Option<String>,
    /// How long a nonce may be used (default 300).
    pub nonce_ttl_s: Option<u64>,
    /// Offered in this order (default ["SHA-256", "MD5"]).
    pub algorithms: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: Option<SocketAddr>,
    /// How clients reach the API (recording URLs are built on it); default `http://LISTEN`.
    pub public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpSection {
    pub ports: Option<String>,
    pub bind: Option<IpAddr>,
    /// How long a source learned from media that did not come from the SDP address (NAT)
    /// stays open to the SDP address taking over, before the leg locks to it (default 2000).
    pub learning_ms: Option<u64>,
    /// Hang up a call that sent no RTP this long after the answer, seconds (default 30;
    /// 0 = never).
    pub no_media_timeout_s: Option<u64>,
    /// Hang up a call whose RTP stopped this long ago, seconds (default 60; 0 = never). Held
    /// calls never time out.
    pub media_stopped_timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    pub threads: Option<usize>,
    pub jitter_target: Option<usize>,
    pub max_talkers: Option<usize>,
    pub opus_complexity: Option<i32>,
    pub tick_slots: Option<usize>,
    /// `SCHED_FIFO` priority of the media threads, 1-99; 0 (default) = the normal policy.
    pub realtime_priority: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsSection {
    pub answer_url: Option<String>,
    /// `GET` or `POST` (default).
    pub answer_method: Option<String>,
    pub hangup_url: Option<String>,
    pub hangup_method: Option<String>,
    /// `stayAlone` of `<Conference>` elements that do not say (API.md §15.3; default true).
    pub stay_alone_default: Option<bool>,
    /// Largest room (`maxMembers` above it is clamped; default 200).
    pub max_members: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsSection {
    pub dir: Option<PathBuf>,
    /// Longest recording in seconds (0 = no limit; default 14400).
    pub max_duration_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSection {
    pub hangup_timeout_ms: Option<u64>,
    /// Longest drain after SIGTERM or `POST /admin/drain`, seconds (default 300); the calls
    /// still up then get a BYE with a Reason. 0 = hang up at once.
    pub drain_timeout_s: Option<u64>,
    /// `Retry-After` of the 503 new INVITEs and OPTIONS get while draining (default 60).
    pub retry_after_s: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json` (one object per line, with the span fields).
    pub format: Option<LogFormat>,
}

/// How log lines are written to stderr.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Bearer token of `/admin/*` (at least 16 characters); without it those routes are absent.
    /// `CHORUS_ADMIN_TOKEN` in the environment overrides it.
    pub token: Option<String>,
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    pub auth_id: String,
    pub auth_token: String,
    /// Regular expressions on the dialled user part (e.g. `"^\\+1555"`).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Request-URI hosts.
    #[serde(default)]
    pub domains: Vec<String>,
    /// This account's XML call flow (else `calls.answer_url`).
    pub answer_url: Option<String>,
    pub answer_method: Option<String>,
    /// Fetched when the answer URL fails.
    pub fallback_url: Option<String>,
    pub fallback_method: Option<String>,
    pub hangup_url: Option<String>,
    pub hangup_method: Option<String>,
    /// One SIP digest user: INVITEs routed to this account must authenticate.
    pub sip_username: Option<String>,
    pub sip_password: Option<String>,
    /// More SIP digest users (`[[accounts.sip_users]]`).
    #[serde(default)]
    pub sip_users: Vec<SipUserEntry>,
    /// Sources (CIDR or address) allowed to call this account; absent or empty = any.
    #[serde(default)]
    pub sip_allow_from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipUserEntry {
    pub username: String,
    pub password: String,
}

/// Command-line values that replace the file's.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub sip_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub rtp_ports: Option<String>,
    pub accounts: Vec<String>,
    pub answer_url: Option<String>,
    pub recordings_dir: Option<PathBuf>,
    pub media_threads: Option<usize>,
    pub log_format: Option<LogFormat>,
    /// From `CHORUS_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

/// Everything the binary needs to run.
#[derive(Debug)]
pub struct Settings {
    pub engine: EngineConfig,
    pub http_listen: SocketAddr,
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    pub admin_token: Option<Secret>,
}

pub fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
    Ok(toml::from_str(text)?)
}

/// `LOW-HIGH`, both inclusive.
pub fn parse_port_range(text: &str) -> anyhow::Result<(u16, u16)> {
    let (low, high) = text
        .split_once('-')
        .with_context(|| format!("port range {text:?} is not LOW-HIGH"))?;
    let low: u16 = low
        .trim()
        .parse()
        .with_context(|| format!("bad low port in {text:?}"))?;
    let high: u16 = high
        .trim()
        .parse()
        .with_context(|| format!("bad high port in {text:?}"))?;
    if low == 0 || high <= low {
        bail!("port range {text:?} must be 1..=65535 with LOW < HIGH");
    }
    Ok((low, high))
}

/// `AUTH_ID:AUTH_TOKEN`; the token may itself contain colons.
pub fn parse_account(text: &str) -> anyhow::Result<Account> {
    let (id, token) = text
        .split_once(':')
        .context("account must be AUTH_ID:AUTH_TOKEN")?;
    if id.is_empty() || token.is_empty() {
        bail!("account must be AUTH_ID:AUTH_TOKEN with both parts non-empty");
    }
    Ok(Account::new(id, token))
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
fn parse_nets(items: &[String], what: &str) -> anyhow::Result<Vec<IpNet>> {
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .with_context(|| format!("{what}: {item:?} is not an address or CIDR block"))
        })
        .collect()
}

/// An account's SIP users: `sip_username`/`sip_password` and `[[accounts.sip_users]]`.
fn sip_users(entry: &AccountEntry) -> anyhow::Result<Vec<SipUser>> {
    let id = &entry.auth_id;
    let mut users = Vec::new();
    match (&entry.sip_username, &entry.sip_password) {
        (Some(username), Some(password)) => users.push(SipUser {
            username: username.clone(),
            password: password.clone(),
        }),
        (None, None) => {}
        _ => bail!("account {id}: sip_username and sip_password go together"),
    }
    users.extend(entry.sip_users.iter().map(|u| SipUser {
        username: u.username.clone(),
        password: u.password.clone(),
    }));
    for (i, user) in users.iter().enumerate() {
        if user.username.is_empty() || user.password.is_empty() {
            bail!("account {id}: SIP users need a non-empty username and password");
        }
        if users[..i].iter().any(|u| u.username == user.username) {
            bail!("account {id}: SIP user {:?} is listed twice", user.username);
        }
    }
    Ok(users)
}

/// The `[sip]` security settings onto the engine's.
fn sip_security(sip: &SipSection, engine: &mut EngineConfig) -> anyhow::Result<()> {
    let security = &mut engine.sip_security;
    if let Some(max) = sip.max_message_bytes {
        if !(1024..=65536).contains(&max) {
            bail!("sip.max_message_bytes must be 1024..=65536, not {max}");
        }
        engine.max_sip_message = max;
    }
    security.guard.allow = parse_nets(
        sip.allow_from.as_deref().unwrap_or_default(),
        "sip.allow_from",
    )?;
    if let Some(agents) = &sip.scanner_user_agents {
        security.scanner_user_agents = agents.clone();
    }
    let rl = &sip.rate_limit;
    let per_second = rl.requests_per_s.unwrap_or(50);
    let burst = rl.burst.unwrap_or(100);
    if per_second > 0 && burst == 0 {
        bail!("sip.rate_limit.burst must be at least 1");
    }
    security.guard.rate = (per_second > 0).then(|| RateLimit {
        per_second,
        burst,
        ban: Duration::from_secs(rl.ban_s.unwrap_or(60)),
    });
    security.guard.max_sources = rl.max_sources.unwrap_or(10_000);
    if security.guard.max_sources < 2 {
        bail!("sip.rate_limit.max_sources must be at least 2");
    }
    let exempt = match &rl.exempt {
        Some(list) => list.clone(),
        None => vec!["127.0.0.0/8".into(), "::1/128".into()],
    };
    security.guard.exempt = parse_nets(&exempt, "sip.rate_limit.exempt")?;
    let auth = &sip.auth;
    if let Some(realm) = &auth.realm {
        if realm.is_empty() {
            bail!("sip.auth.realm must not be empty");
        }
        security.digest.realm = realm.clone();
    }
    if let Some(ttl) = auth.nonce_ttl_s {
        if ttl == 0 {
            bail!("sip.auth.nonce_ttl_s must be at least 1");
        }
        security.digest.nonce_ttl = Duration::from_secs(ttl);
    }
    if let Some(names) = &auth.algorithms {
        let mut algorithms = Vec::new();
        for name in names {
            let alg = Algorithm::parse(name)
                .with_context(|| format!("sip.auth.algorithms: {name:?} is not SHA-256 or MD5"))?;
            if algorithms.contains(&alg) {
                bail!("sip.auth.algorithms lists {name:?} twice");
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            bail!("sip.auth.algorithms must not be empty");
        }
        security.digest.algorithms = algorithms;
    }
    Ok(())
}

/// `GET` or `POST` (any case); absent = POST.
fn method(text: Option<&str>) -> anyhow::Result<chorus_flow::Method> {
    match text.map(str::to_ascii_uppercase).as_deref() {
        None | Some("POST") => Ok(chorus_flow::Method::Post),
        Some("GET") => Ok(chorus_flow::Method::Get),
        Some(other) => bail!("method must be GET or POST, not {other:?}"),
    }
}

/// Webhook URLs must be absolute http(s) URLs.
fn checked_url(url: Option<String>, what: &str) -> anyhow::Result<Option<String>> {
    match url {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            bail!("{what} must be an http:// or https:// URL, not {u:?}")
        }
        other => Ok(other),
    }
}

pub fn resolve(file: FileConfig, overrides: Overrides) -> anyhow::Result<Settings> {
    let sip_listen = overrides
        .sip_listen
        .or(file.sip.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
    let http_listen = overrides
        .http_listen
        .or(file.http.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let rtp_ports = match overrides.rtp_ports.or(file.rtp.ports) {
        Some(text) => parse_port_range(&text)?,
        None => (20000, 29999),
    };
    let advertise_ip = match file.sip.advertise {
        Some(ip) => ip,
        None if sip_listen.ip().is_unspecified() => {
            bail!("sip.advertise is required when sip.listen is {sip_listen}: peers need an address to send to")
        }
        None => sip_listen.ip(),
    };
    let accounts = if overrides.accounts.is_empty() {
        file.accounts
            .into_iter()
            .map(|a| {
                let mut account = parse_account(&format!("{}:{}", a.auth_id, a.auth_token))?;
                account.sip_users = sip_users(&a)?;
                account.sip_allow_from = parse_nets(
                    &a.sip_allow_from,
                    &format!("account {}: sip_allow_from", a.auth_id),
                )?;
                account.numbers = a
                    .numbers
                    .iter()
                    .map(|p| {
                        regex::Regex::new(p).with_context(|| {
                            format!("account {}: bad number pattern {p:?}", a.auth_id)
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                account.domains = a.domains;
                account.answer_url = checked_url(a.answer_url, "answer_url")?;
                account.answer_method = method(a.answer_method.as_deref())?;
                account.fallback_url = checked_url(a.fallback_url, "fallback_url")?;
                account.fallback_method = method(a.fallback_method.as_deref())?;
                account.hangup_url = checked_url(a.hangup_url, "hangup_url")?;
                account.hangup_method = method(a.hangup_method.as_deref())?;
                Ok(account)
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        overrides
            .accounts
            .iter()
            .map(|a| parse_account(a))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if accounts.is_empty() {
        bail!("no accounts: give [[accounts]] in the config or --account AUTH_ID:AUTH_TOKEN");
    }
    let mut engine = EngineConfig::loopback(sip_listen.port(), rtp_ports);
    engine.sip_listen = sip_listen;
    engine.advertise_ip = advertise_ip;
    engine.rtp_bind_ip = file.rtp.bind.unwrap_or(sip_listen.ip());
    sip_security(&file.sip, &mut engine)?;
    engine.accounts = accounts;
    engine.answer_url = checked_url(overrides.answer_url.or(file.calls.answer_url), "answer_url")?;
    engine.answer_method = method(file.calls.answer_method.as_deref())?;
    engine.hangup_url = checked_url(file.calls.hangup_url, "hangup_url")?;
    engine.hangup_method = method(file.calls.hangup_method.as_deref())?;
    if let Some(v) = file.calls.stay_alone_default {
        engine.stay_alone_default = v;
    }
    if let Some(m) = file.calls.max_members {
        if m == 0 {
            bail!("calls.max_members must be at least 1");
        }
        engine.max_members_cap = m;
    }
    engine.recordings_dir = overrides
        .recordings_dir
        .or(file.recordings.dir)
        .unwrap_or_else(|| PathBuf::from("recordings"));
    if let Some(secs) = file.recordings.max_duration_s {
        engine.max_recording = (secs > 0).then(|| Duration::from_secs(secs));
    }
    engine.public_url = match file.http.public_url {
        Some(u) => checked_url(Some(u), "http.public_url")?.unwrap_or_default(),
        None => format!("http://{http_listen}"),
    };
    if let Some(threads) = overrides.media_threads.or(file.media.threads) {
        engine.mixer.threads = threads;
    }
    if let Some(target) = file.media.jitter_target {
        engine.mixer.jitter_target = target;
    }
    if let Some(m) = file.media.max_talkers {
        if m == 0 {
            bail!("media.max_talkers must be at least 1");
        }
        engine.mixer.max_talkers = m;
    }
    if let Some(c) = file.media.opus_complexity {
        if !(0..=10).contains(&c) {
            bail!("media.opus_complexity must be 0..=10, not {c}");
        }
        engine.mixer.opus_complexity = c;
    }
    if let Some(slots) = file.media.tick_slots {
        let max = chorus_mixer::MAX_TICK_SLOTS;
        if !(1..=max).contains(&slots) {
            bail!("media.tick_slots must be 1..={max}, not {slots}");
        }
        engine.mixer.tick_slots = slots;
    }
    if let Some(priority) = file.media.realtime_priority {
        let max = chorus_mixer::MAX_REALTIME_PRIORITY;
        if priority > max {
            bail!("media.realtime_priority must be 0 (off) or 1..={max}, not {priority}");
        }
        engine.mixer.realtime_priority = priority;
    }
    if let Some(ms) = file.rtp.learning_ms {
        engine.mixer.rtp_learning = Duration::from_millis(ms);
    }
    let timeout = |secs: Option<u64>, default: Option<Duration>| match secs {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None => default,
    };
    engine.media_timeouts = chorus_engine::MediaTimeouts {
        no_media: timeout(file.rtp.no_media_timeout_s, engine.media_timeouts.no_media),
        stopped: timeout(
            file.rtp.media_stopped_timeout_s,
            engine.media_timeouts.stopped,
        ),
    };
    if let Some(min_se) = file.sip.min_se_s {
        if min_se < 90 {
            bail!("sip.min_se_s must be at least 90 (RFC 4028 §5), not {min_se}");
        }
        engine.session_timer.min_se = min_se;
    }
    if let Some(interval) = file.sip.session_expires_s {
        if interval != 0 && interval < engine.session_timer.min_se {
            bail!("sip.session_expires_s must be 0 or at least sip.min_se_s, not {interval}");
        }
        engine.session_timer.session_expires = interval;
    }
    if let Some(ms) = file.shutdown.hangup_timeout_ms {
        engine.hangup_timeout = Duration::from_millis(ms);
    }
    if let Some(secs) = file.shutdown.retry_after_s {
        engine.drain_retry_after = secs;
    }
    let admin_token = match overrides.admin_token.or(file.admin.token) {
        Some(t) if t.trim().len() < 16 || t.trim() != t => {
            bail!("admin.token must be at least 16 characters, without surrounding spaces")
        }
        other => other.map(Secret),
    };
    Ok(Settings {
        engine,
        http_listen,
        drain_timeout: Duration::from_secs(file.shutdown.drain_timeout_s.unwrap_or(300)),
        log_format: overrides.log_format.or(file.log.format).unwrap_or_default(),
        admin_token,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_config_parses_and_binds_loopback() {
        let file = parse_file(DEFAULT_CONFIG).unwrap();
        let settings = resolve(file, Overrides::default()).unwrap();
        assert!(settings.engine.sip_listen.ip().is_loopback());
        assert!(settings.http_listen.ip().is_loopback());
        assert_eq!(settings.engine.accounts.len(), 1);
        assert_eq!(settings.engine.rtp_ports, (20000, 29999));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse_file("[sip]\nlisten = \"127.0.0.1:5060\"\nlistn = 1\n").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn command_line_accounts_replace_the_file_accounts() {
        let file = parse_file(DEFAULT_CONFIG).unwrap();
        let overrides = Overrides {
            accounts: vec!["MA_X:tok:en".into(), "MA_Y:y".into()],
            sip_listen: Some("127.0.0.1:5999".parse().unwrap()),
            rtp_ports: Some("30000-30100".into()),
            ..Overrides::default()
        };
        let settings = resolve(file, overrides).unwrap();
        let ids: Vec<_> = settings
            .engine
            .accounts
            .iter()
            .map(|a| a.auth_id.as_str())
            .collect();
        assert_eq!(ids, ["MA_X", "MA_Y"]);
        assert_eq!(settings.engine.accounts[0].auth_token, "tok:en");
        assert_eq!(settings.engine.sip_listen.port(), 5999);
        assert_eq!(settings.engine.rtp_ports, (30000, 30100));
    }

    #[test]
    fn bad_port_ranges_and_accounts_are_errors() {
        assert!(parse_port_range("30000").is_err());
        assert!(parse_port_range("300-200").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_account("nocolon").is_err());
        assert!(parse_account(":x").is_err());
    }

    #[test]
    fn media_realtime_priority_is_off_by_default_and_bounded() {
        let accounts = "[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        let with = |media: &str| {
            parse_file(&format!("{accounts}[media]\n{media}\n"))
                .and_then(|file| resolve(file, Overrides::default()))
        };
        let default = resolve(parse_file(DEFAULT_CONFIG).unwrap(), Overrides::default());
        assert_eq!(default.unwrap().engine.mixer.realtime_priority, 0);
        let set = with("realtime_priority = 10").unwrap();
        assert_eq!(set.engine.mixer.realtime_priority, 10);
        let err = with("realtime_priority = 100").err().unwrap().to_string();
        assert!(err.contains("media.realtime_priority"), "{err}");
        assert!(with("realtime_priority = -1").is_err());
    }

    #[test]
    fn wildcard_listen_requires_an_advertised_address() {
        let file = parse_file(
            "[sip]\nlisten = \"0.0.0.0:5060\"\n[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n",
        )
        .unwrap();
        assert!(resolve(file, Overrides::default()).is_err());
    }

    #[test]
    fn account_routing_patterns_are_parsed_and_bad_ones_refused() {
        let text = "[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n[[accounts]]\nauth_id=\"c\"\nauth_token=\"d\"\nnumbers=[\"^b-\"]\ndomains=[\"c.example.com\"]\n";
        let settings = resolve(parse_file(text).unwrap(), Overrides::default()).unwrap();
        let c = &settings.engine.accounts[1];
        assert!(c.numbers[0].is_match("b-room"));
        assert_eq!(c.domains, ["c.example.com"]);
        let bad = "[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\nnumbers=[\"(\"]\n";
        assert!(resolve(parse_file(bad).unwrap(), Overrides::default()).is_err());
    }

    #[test]
    fn call_flow_urls_and_methods_are_checked() {
        let text = "[calls]\nanswer_url=\"http://127.0.0.1:9/a\"\nhangup_url=\"http://127.0.0.1:9/h\"\nhangup_method=\"get\"\nstay_alone_default=false\n[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\nanswer_url=\"https://app.example.com/x\"\nanswer_method=\"GET\"\n";
        let s = resolve(parse_file(text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(s.engine.answer_url.as_deref(), Some("http://127.0.0.1:9/a"));
        assert_eq!(s.engine.hangup_method, chorus_flow::Method::Get);
        assert!(!s.engine.stay_alone_default);
        assert_eq!(s.engine.accounts[0].answer_method, chorus_flow::Method::Get);
        let bad =
            "[calls]\nanswer_url=\"ftp://x\"\n[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        assert!(resolve(parse_file(bad).unwrap(), Overrides::default()).is_err());
        let bad = "[calls]\nanswer_method=\"PUT\"\n[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        assert!(resolve(parse_file(bad).unwrap(), Overrides::default()).is_err());
    }

    #[test]
    fn drain_log_and_admin_settings_have_defaults_and_overrides() {
        let s = resolve(parse_file(DEFAULT_CONFIG).unwrap(), Overrides::default()).unwrap();
        assert_eq!(s.drain_timeout, Duration::from_secs(300));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.engine.drain_retry_after, 60);
        assert!(s.admin_token.is_none());
        let text = "[shutdown]\ndrain_timeout_s = 5\nretry_after_s = 9\n[log]\nformat = \"json\"\n[admin]\ntoken = \"0123456789abcdef\"\n[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        let s = resolve(parse_file(text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(s.drain_timeout, Duration::from_secs(5));
        assert_eq!(s.engine.drain_retry_after, 9);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            s.admin_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        let overrides = Overrides {
            log_format: Some(LogFormat::Text),
            admin_token: Some("fedcba9876543210".into()),
            ..Overrides::default()
        };
        let s = resolve(parse_file(text).unwrap(), overrides).unwrap();
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(
            s.admin_token.as_ref().map(Secret::expose),
            Some("fedcba9876543210")
        );
        let short = "[admin]\ntoken = \"short\"\n[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        assert!(resolve(parse_file(short).unwrap(), Overrides::default()).is_err());
        assert!(parse_file("[log]\nformat = \"xml\"\n").is_err());
    }

    #[test]
    fn sip_security_defaults_limit_rates_except_loopback_and_offer_sha256_first() {
        let settings = resolve(parse_file(DEFAULT_CONFIG).unwrap(), Overrides::default()).unwrap();
        let security = &settings.engine.sip_security;
        let rate = security.guard.rate.unwrap();
        assert_eq!((rate.per_second, rate.burst), (50, 100));
        assert_eq!(rate.ban, Duration::from_secs(60));
        assert!(security.guard.allow.is_empty());
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(security.guard.exempt.iter().any(|n| n.contains(&loopback)));
        assert_eq!(
            security.digest.algorithms,
            [Algorithm::Sha256, Algorithm::Md5]
        );
        assert_eq!(security.digest.nonce_ttl, Duration::from_secs(300));
        assert!(security
            .scanner_user_agents
            .iter()
            .any(|s| s == "friendly-scanner"));
        assert_eq!(settings.engine.max_sip_message, 65536);
        // A file that says nothing gets the same.
        let bare = "[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        let bare = resolve(parse_file(bare).unwrap(), Overrides::default()).unwrap();
        assert_eq!(bare.engine.sip_security.guard, security.guard);
        assert_eq!(bare.engine.sip_security.digest, security.digest);
    }

    #[test]
    fn sip_security_settings_and_account_credentials_are_read() {
        let text = r#"
            [sip]
            max_message_bytes = 4096
            allow_from = ["10.0.0.0/8", "192.0.2.7"]
            scanner_user_agents = []
            [sip.rate_limit]
            requests_per_s = 0
            [sip.auth]
            realm = "example.com"
            nonce_ttl_s = 60
            algorithms = ["MD5"]
            [[accounts]]
            auth_id = "a"
            auth_token = "b"
            sip_username = "alice"
            sip_password = "pw1"
            sip_allow_from = ["203.0.113.0/24"]
            [[accounts.sip_users]]
            username = "bob"
            password = "pw2"
        "#;
        let s = resolve(parse_file(text).unwrap(), Overrides::default()).unwrap();
        let security = &s.engine.sip_security;
        assert_eq!(s.engine.max_sip_message, 4096);
        assert_eq!(security.guard.allow.len(), 2);
        assert!(security.guard.allow[1].contains(&"192.0.2.7".parse::<IpAddr>().unwrap()));
        assert!(security.scanner_user_agents.is_empty());
        assert!(security.guard.rate.is_none());
        assert_eq!(security.digest.realm, "example.com");
        assert_eq!(security.digest.nonce_ttl, Duration::from_secs(60));
        assert_eq!(security.digest.algorithms, [Algorithm::Md5]);
        let account = &s.engine.accounts[0];
        let users: Vec<_> = account
            .sip_users
            .iter()
            .map(|u| u.username.as_str())
            .collect();
        assert_eq!(users, ["alice", "bob"]);
        assert_eq!(account.sip_allow_from.len(), 1);
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("pw1") && !printed.contains("pw2"),
            "{printed}"
        );
    }

    #[test]
    fn bad_sip_security_settings_are_refused() {
        let account = "[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        for bad in [
            "[sip]\nallow_from = [\"10.0.0.0/33\"]\n",
            "[sip]\nallow_from = [\"example.com\"]\n",
            "[sip]\nmax_message_bytes = 100\n",
            "[sip.rate_limit]\nburst = 0\n",
            "[sip.rate_limit]\nexempt = [\"x\"]\n",
            "[sip.auth]\nalgorithms = [\"SHA-512\"]\n",
            "[sip.auth]\nalgorithms = []\n",
            "[sip.auth]\nalgorithms = [\"MD5\", \"md5\"]\n",
            "[sip.auth]\nnonce_ttl_s = 0\n",
            "[sip.auth]\nrealm = \"\"\n",
            "[sip.rate_limit]\nrequests_per_sec = 5\n",
        ] {
            let text = format!("{bad}{account}");
            let parsed = parse_file(&text).and_then(|f| resolve(f, Overrides::default()));
            assert!(parsed.is_err(), "accepted:\n{text}");
        }
        for bad in [
            "sip_username = \"alice\"\n",
            "sip_password = \"pw\"\n",
            "sip_username = \"\"\nsip_password = \"pw\"\n",
            "sip_username = \"a\"\nsip_password = \"pw\"\n[[accounts.sip_users]]\nusername = \"a\"\npassword = \"x\"\n",
            "sip_allow_from = [\"300.1.1.1\"]\n",
        ] {
            let text = format!("{account}{bad}");
            let parsed = parse_file(&text).and_then(|f| resolve(f, Overrides::default()));
            assert!(parsed.is_err(), "accepted:\n{text}");
        }
    }

    /// deploy/CONFIG.md has a table per section of the default configuration, and a row for
    /// every key in it (nested tables are sections of their own, `[[accounts]]` included).
    #[test]
    fn config_reference_documents_every_key_of_the_default_config() {
        let reference = include_str!("../../../deploy/CONFIG.md");
        let section = |name: &str| -> &str {
            let heading = format!("## `[{name}]`");
            let start = reference
                .find(&heading)
                .unwrap_or_else(|| panic!("deploy/CONFIG.md has no {heading} section"));
            let rest = &reference[start + heading.len()..];
            &rest[..rest.find("\n## ").unwrap_or(rest.len())]
        };
        fn walk(table: &toml::Table, path: &str, out: &mut Vec<(String, String)>) {
            for (key, value) in table {
                match value {
                    toml::Value::Table(t) => walk(t, &format!("{path}.{key}"), out),
                    toml::Value::Array(items)
                        if items.first().is_some_and(toml::Value::is_table) =>
                    {
                        for item in items.iter().filter_map(toml::Value::as_table) {
                            walk(item, &format!("{path}.[{key}]"), out);
                        }
                    }
                    _ => out.push((path.trim_start_matches('.').to_owned(), key.clone())),
                }
            }
        }
        let default: toml::Table = toml::from_str(DEFAULT_CONFIG).unwrap();
        let mut keys = Vec::new();
        walk(&default, "", &mut keys);
        assert!(keys.len() > 20, "{keys:?}");
        for (path, key) in keys {
            let name = match path.strip_prefix('[') {
                Some(array) => format!("[{}]", array.trim_end_matches(']')),
                None => path,
            };
            assert!(
                section(&name).contains(&format!("| `{key}`")),
                "deploy/CONFIG.md does not document `{key}` of [{name}]"
            );
        }
    }

    #[test]
    fn rtp_timeouts_and_session_timers_are_read_and_checked() {
        let account = "[[accounts]]\nauth_id=\"a\"\nauth_token=\"b\"\n";
        let defaults = resolve(parse_file(account).unwrap(), Overrides::default()).unwrap();
        assert_eq!(
            defaults.engine.media_timeouts.no_media,
            Some(Duration::from_secs(30))
        );
        assert_eq!(defaults.engine.session_timer.min_se, 90);
        let text = format!(
            "[sip]\nmin_se_s = 120\nsession_expires_s = 0\n[rtp]\nno_media_timeout_s = 0\nmedia_stopped_timeout_s = 5\n{account}"
        );
        let s = resolve(parse_file(&text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(s.engine.media_timeouts.no_media, None, "0 turns it off");
        assert_eq!(
            s.engine.media_timeouts.stopped,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            (
                s.engine.session_timer.min_se,
                s.engine.session_timer.session_expires
            ),
            (120, 0)
        );
        for bad in ["min_se_s = 60", "min_se_s = 120\nsession_expires_s = 100"] {
            let text = format!("[sip]\n{bad}\n{account}");
            assert!(
                resolve(parse_file(&text).unwrap(), Overrides::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tokens_are_never_printed() {
        let settings = resolve(parse_file(DEFAULT_CONFIG).unwrap(), Overrides::default()).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("demo-token-change-me"), "{printed}");
    }
}
