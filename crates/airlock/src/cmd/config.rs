//! `airlock config`: check and show the configuration.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::{Exit, Global};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file (or the embedded default) and report every problem.
    Check {
        /// The file to check; defaults to --config, else the embedded default.
        file: Option<PathBuf>,
    },
    /// Print the effective configuration (file layered over the embedded default) as TOML.
    Show {
        /// The file to show; defaults to --config, else the embedded default.
        file: Option<PathBuf>,
    },
    /// Print the embedded default configuration, a starting point for airlock.toml.
    Default,
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Check { file } => {
            let file = file.or_else(|| global.config.clone());
            // The policy, then what `serve` builds from the rest: the redaction policy and the
            // detection engine (custom markers and rule files compiled), so a config that
            // passes here starts.
            let checked = airlock_policy::Config::load_or_default(file.as_deref())
                .and_then(|cfg| airlock_policy::Policy::from_config(&cfg).map(|_| cfg))
                .map_err(|e| e.to_string())
                .and_then(|cfg| {
                    airlock_gateway::runtime::check_redaction(&cfg).map_err(|e| e.to_string())?;
                    airlock_gateway::redact::Redactor::new(&cfg).map_err(|e| e.to_string())?;
                    Ok(cfg)
                });
            match checked {
                Ok(cfg) => {
                    if !global.quiet {
                        eprintln!(
                            "{}: ok ({} upstream(s), {} policy rule(s))",
                            cfg.origin,
                            cfg.upstreams.len(),
                            cfg.policy.rules.len()
                        );
                    }
                    Ok(Exit::Clean)
                }
                Err(e) => {
                    for line in e.lines() {
                        eprintln!("error: {line}");
                    }
                    Ok(Exit::Error)
                }
            }
        }
        Command::Show { file } => {
            let file = file.or_else(|| global.config.clone());
            let cfg = airlock_policy::Config::load_or_default(file.as_deref())?;
            print_toml(&cfg)
        }
        Command::Default => {
            use std::io::Write;
            std::io::stdout()
                .write_all(airlock_policy::EMBEDDED_DEFAULT_CONFIG.as_bytes())
                .context("writing to stdout")?;
            Ok(Exit::Clean)
        }
    }
}

fn print_toml<T: Serialize>(value: &T) -> anyhow::Result<Exit> {
    use std::io::Write;
    let text = toml::to_string_pretty(value).context("rendering the configuration")?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(Exit::Clean)
}
