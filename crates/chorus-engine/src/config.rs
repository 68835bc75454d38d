//! The engine's typed, validated configuration (the binary builds it from TOML and flags).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chorus_mixer::MixerConfig;

/// An API account. Inbound calls and rooms belong to one.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub auth_id: String,
    pub auth_token: String,
}

impl std::fmt::Debug for Account {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("auth_id", &self.auth_id)
            .field("auth_token", &"<redacted>")
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
    /// Used by the XML call-flow work; without it the default flow runs.
    pub answer_url: Option<String>,
    pub recordings_dir: PathBuf,
    pub mixer: MixerConfig,
    /// How long shutdown waits for BYEs to be answered before giving up.
    pub hangup_timeout: Duration,
    pub user_agent: String,
    pub max_sip_message: usize,
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
            accounts: vec![Account {
                auth_id: "MA_DEMO".into(),
                auth_token: "demo".into(),
            }],
            answer_url: None,
            recordings_dir: PathBuf::from("recordings"),
            mixer: MixerConfig::default(),
            hangup_timeout: Duration::from_secs(5),
            user_agent: format!("Chorus/{}", env!("CARGO_PKG_VERSION")),
            max_sip_message: 64 * 1024,
        }
    }
}
