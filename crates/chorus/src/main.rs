//! `chorus`: the conference engine binary. Parses the configuration and flags, sets up
//! tracing (text or JSON lines), starts the engine and the HTTP listener, and drains on
//! SIGTERM/SIGINT or `POST /admin/drain`: `/readyz` turns 503, new INVITEs and OPTIONS get
//! 503 with Retry-After, live calls carry on; the process exits 0 when the last call has
//! ended, or at `shutdown.drain_timeout_s` (or a second signal), after hanging up what is
//! left with a BYE carrying a Reason and finishing the recordings.

mod config;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info};

/// Chorus: a self-hosted SIP conference engine.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (default: the embedded config/chorus.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP listen address, UDP and TCP on the same port.
    #[arg(long, value_name = "IP:PORT")]
    sip_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address (health, readiness, REST API).
    #[arg(long, value_name = "IP:PORT")]
    http_listen: Option<std::net::SocketAddr>,
    /// RTP port range, one even port per call leg.
    #[arg(long, value_name = "LOW-HIGH")]
    rtp_ports: Option<String>,
    /// API account; repeatable; replaces the accounts of the config file. With one account,
    /// every inbound call belongs to it.
    #[arg(long = "account", value_name = "AUTH_ID:AUTH_TOKEN")]
    accounts: Vec<String>,
    /// URL fetched for the XML call flow of each inbound call.
    #[arg(long, value_name = "URL")]
    answer_url: Option<String>,
    /// Where recordings are written.
    #[arg(long, value_name = "DIR")]
    recordings_dir: Option<PathBuf>,
    /// Media threads (0 = one per core).
    #[arg(long, value_name = "N")]
    media_threads: Option<usize>,
    /// Log lines as plain text or JSON objects (overrides `[log] format`).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<config::LogFormat>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let text = match &cli.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => config::DEFAULT_CONFIG.to_owned(),
    };
    let file = config::parse_file(&text).context("parsing the configuration")?;
    let settings = config::resolve(
        file,
        config::Overrides {
            sip_listen: cli.sip_listen,
            http_listen: cli.http_listen,
            rtp_ports: cli.rtp_ports,
            accounts: cli.accounts,
            answer_url: cli.answer_url,
            recordings_dir: cli.recordings_dir,
            media_threads: cli.media_threads,
            log_format: cli.log_format,
            admin_token: std::env::var("CHORUS_ADMIN_TOKEN").ok(),
        },
    )?;
    init_tracing(settings.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chorus-io")
        .build()
        .context("starting the async runtime")?
        .block_on(run(settings))
}

/// Logs to stderr; `RUST_LOG` filters (default `info`). JSON lines carry the fields of every
/// span the event is in (`call{call_uuid, call_id}`, `conference{room}`, `request{…}`).
fn init_tracing(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        config::LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// `/admin/drain` drives the engine's drain.
struct EngineAdmin(chorus_engine::DrainHandle);

impl chorus_api::AdminControl for EngineAdmin {
    fn drain(&self) -> chorus_api::DrainStatus {
        self.0.start();
        self.status()
    }

    fn status(&self) -> chorus_api::DrainStatus {
        chorus_api::DrainStatus {
            draining: self.0.is_draining(),
            active_calls: self.0.active_calls(),
        }
    }
}

async fn run(settings: config::Settings) -> anyhow::Result<()> {
    let readiness = chorus_api::Readiness::new(&["sip", "rtp", "http"]);
    let http = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("binding HTTP on {}", settings.http_listen))?;
    let accounts = chorus_api::Accounts::new(
        settings
            .engine
            .accounts
            .iter()
            .map(|a| chorus_api::Credential {
                auth_id: a.auth_id.clone(),
                auth_token: a.auth_token.clone(),
            })
            .collect(),
    );
    let engine = chorus_engine::Engine::start(settings.engine)
        .await
        .context("starting the engine")?;
    readiness.set_ready("sip");
    readiness.set_ready("rtp");
    let (http_stop_tx, http_stop) = tokio::sync::oneshot::channel::<()>();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(engine.metrics()));
    let mut state = chorus_api::ApiState::new(readiness.clone(), accounts, engine.control())
        .with_metrics(registry);
    if let Some(token) = &settings.admin_token {
        state = state.with_admin(
            token.expose().to_owned(),
            EngineAdmin(engine.drain_handle()),
        );
    }
    let app = chorus_api::router(state);
    let server = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async {
                let _ = http_stop.await;
            })
            .await
    });
    readiness.set_ready("http");
    info!(sip = %engine.sip_addr(), http = %settings.http_listen, "chorus ready");

    let mut signals = Signals::new()?;
    tokio::select! {
        signal = signals.recv() => {
            info!(signal, "draining");
            engine.start_drain();
        }
        () = engine.draining() => {}
    }
    readiness.set_draining();
    let timeout = settings.drain_timeout;
    info!(
        calls = engine.active_calls(),
        timeout_s = timeout.as_secs(),
        "waiting for the calls to end"
    );
    tokio::select! {
        () = engine.idle() => info!("drained: no call left"),
        () = tokio::time::sleep(timeout) => {
            info!(calls = engine.active_calls(), "drain timeout: hanging up the remaining calls");
        }
        signal = signals.recv() => {
            info!(signal, calls = engine.active_calls(), "second signal: hanging up the remaining calls");
        }
    }
    engine.shutdown().await;
    let _ = http_stop_tx.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(error = %e, "HTTP server failed"),
        Err(e) => error!(error = %e, "HTTP task failed"),
    }
    info!("chorus stopped");
    Ok(())
}

/// SIGTERM and SIGINT: the first starts the drain, the next ends it.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
