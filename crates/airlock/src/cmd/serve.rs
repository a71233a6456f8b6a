//! `airlock serve`: run the gateway that coding agents are pointed at.

use std::path::PathBuf;

use airlock_gateway::{ConfigSource, Gateway};
use anyhow::Context;

use crate::{Exit, Global};

/// Run the gateway.
///
/// Point agents at it: Claude Code with `ANTHROPIC_BASE_URL=http://127.0.0.1:8787`; Codex, Qwen
/// Code, opencode and others with `OPENAI_BASE_URL=http://127.0.0.1:8787/v1`. With no Airlock
/// keys created and a loopback address, it runs in anonymous single-user mode and passes the
/// caller's own vendor key through. Reloads on SIGHUP and when the config file changes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (overrides server.listen; default 127.0.0.1:8787).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// An upstream as NAME=URL or NAME=API:URL (repeatable; overrides the config). Built-in
    /// names: `anthropic` (e.g. https://api.anthropic.com), `openai` (e.g.
    /// https://api.openai.com/v1), `gemini`.
    #[arg(long = "upstream", value_name = "NAME=URL")]
    pub upstreams: Vec<String>,
    /// Directory for keys and the audit log (overrides server.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The line printed on stderr once the listener is bound (tests and scripts read it).
pub const LISTENING_PREFIX: &str = "airlock serve: listening on http://";

pub fn run(global: &Global, args: Args) -> anyhow::Result<Exit> {
    let source = ConfigSource {
        path: global.config.clone(),
        cli_upstreams: args.upstreams,
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("airlock-serve")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let gateway = Gateway::new(source).context("cannot start the gateway")?;
        let listener = gateway.bind().await?;
        let local = listener.local_addr().context("listener address")?;
        eprintln!("{LISTENING_PREFIX}{local}");
        match gateway.audit() {
            Some(a) => tracing::info!(
                dir = %a.dir().display(),
                public_key = a.public_key_hex(),
                "audit log open"
            ),
            None => tracing::warn!("audit log disabled ([audit] enabled = false)"),
        }
        gateway.serve(listener, shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Exit::Clean)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
