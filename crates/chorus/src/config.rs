//! The TOML configuration file and its command-line overrides, turned into the engine's typed
//! configuration. `config/chorus.toml` is embedded as the default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chorus_engine::{Account, EngineConfig};
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
    pub accounts: Vec<AccountEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    pub listen: Option<SocketAddr>,
    pub advertise: Option<IpAddr>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    pub threads: Option<usize>,
    pub jitter_target: Option<usize>,
    pub max_talkers: Option<usize>,
    pub opus_complexity: Option<i32>,
    pub tick_slots: Option<usize>,
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
}

/// Everything the binary needs to run.
#[derive(Debug)]
pub struct Settings {
    pub engine: EngineConfig,
    pub http_listen: SocketAddr,
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
        if !(1..=20).contains(&slots) {
            bail!("media.tick_slots must be 1..=20, not {slots}");
        }
        engine.mixer.tick_slots = slots;
    }
    if let Some(ms) = file.rtp.learning_ms {
        engine.mixer.rtp_learning = Duration::from_millis(ms);
    }
    if let Some(ms) = file.shutdown.hangup_timeout_ms {
        engine.hangup_timeout = Duration::from_millis(ms);
    }
    Ok(Settings {
        engine,
        http_listen,
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
    fn tokens_are_never_printed() {
        let settings = resolve(parse_file(DEFAULT_CONFIG).unwrap(), Overrides::default()).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("demo-token-change-me"), "{printed}");
    }
}
