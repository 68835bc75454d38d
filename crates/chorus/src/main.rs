//! `chorus`: the conference engine binary. Parses the configuration and flags, sets up
//! tracing, starts the engine and the HTTP listener, and stops cleanly on SIGTERM/SIGINT
//! (every live call is hung up with a BYE first).

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
        },
    )?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chorus-io")
        .build()
        .context("starting the async runtime")?
        .block_on(run(settings))
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
    let app = chorus_api::router(
        chorus_api::ApiState::new(readiness.clone(), accounts, engine.control())
            .with_metrics(registry),
    );
    let server = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async {
                let _ = http_stop.await;
            })
            .await
    });
    readiness.set_ready("http");
    info!(sip = %engine.sip_addr(), http = %settings.http_listen, "chorus ready");

    wait_for_signal().await?;
    readiness.set_draining();
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

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    Ok(())
}
