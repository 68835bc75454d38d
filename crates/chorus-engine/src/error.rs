use std::net::SocketAddr;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot bind SIP {transport} on {addr}")]
    BindSip {
        transport: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the media threads")]
    Mixer(#[from] chorus_mixer::MixerError),
    #[error("invalid RTP port range {low}-{high}: need low <= high and at least two ports")]
    BadPortRange { low: u16, high: u16 },
    #[error("no accounts configured: inbound calls would belong to nobody")]
    NoAccounts,
}
