//! `airlock probe`: run an agent against a recording fake model API under varied environments
//! and report what it sends that depends on the environment.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use airlock_probe::{HostnameMode, Matrix, ProbeOptions};

use crate::{Exit, Global};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Html,
}

/// A dimension name for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum DimName {
    Tz,
    Locale,
    BaseHost,
    Home,
    User,
    Hostname,
    Env,
}

/// Run an agent many times against a recording fake model API, varying one part of the
/// environment per run, and report every difference in what it sends.
///
/// Example: `airlock probe -- claude -p hello`. Known agents (rules/agents.toml) are pointed
/// at the recorder automatically; give only the program to use the catalogue's arguments.
/// Exit status: 0 clean, 1 environment-dependent differences found, 2 error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Matrix file (TOML) applied on top of the embedded default (rules/probe-matrix.toml).
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
    /// Set the agent up as this catalogue id (default: detected from the program name).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// Do not use the agent catalogue; point the agent at the recorder with --env.
    #[arg(long, conflicts_with = "agent")]
    pub no_catalogue: bool,
    /// Prompt for the one turn (used when only the program is given).
    #[arg(long, default_value = airlock_probe::DEFAULT_PROMPT)]
    pub prompt: String,
    /// More environment for the agent, KEY=VALUE; `{base_url}` is replaced by the run's
    /// base URL (e.g. --env 'MY_AGENT_URL={base_url}/v1').
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Seconds before a run is killed (with its whole process group).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub timeout: u64,
    /// Baseline repetitions, used to learn what varies between identical runs (at least 2).
    #[arg(long, default_value_t = airlock_probe::DEFAULT_BASELINE_RUNS, value_name = "N")]
    pub baseline_runs: usize,
    /// Runs at the same time.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Do not vary the hostname (otherwise varied when root and `unshare` works).
    #[arg(long)]
    pub no_hostname: bool,
    /// Vary only these dimensions (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "DIM")]
    pub only: Vec<DimName>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Write the report to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The agent command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "AGENT_COMMAND")]
    pub command: Vec<String>,
}

fn restrict(m: &mut Matrix, only: &[DimName]) {
    if only.is_empty() {
        return;
    }
    let keep = |d: DimName| only.contains(&d);
    if !keep(DimName::Tz) {
        m.tz.values.clear();
    }
    if !keep(DimName::Locale) {
        m.locale.values.clear();
    }
    if !keep(DimName::BaseHost) {
        m.base_host.values.clear();
    }
    if !keep(DimName::Home) {
        m.home.values.clear();
    }
    if !keep(DimName::User) {
        m.user.values.clear();
    }
    if !keep(DimName::Hostname) {
        m.hostname.values.clear();
    }
    if !keep(DimName::Env) {
        for e in &mut m.env {
            e.values.clear();
        }
    }
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<Exit> {
    let mut matrix = Matrix::embedded().context("loading the embedded probe matrix")?;
    if let Some(path) = &args.matrix {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        matrix = matrix.with_overrides(&text, &path.display().to_string())?;
    }
    restrict(&mut matrix, &args.only);
    let mut extra_env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
        anyhow::ensure!(
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "--env {kv:?}: {k:?} is not a valid variable name"
        );
        extra_env.push((k.to_string(), v.to_string()));
    }
    anyhow::ensure!(args.timeout > 0, "--timeout must be at least 1 second");

    let mut opts = ProbeOptions::new(args.command.clone(), matrix);
    opts.agent = args.agent.clone();
    opts.no_catalogue = args.no_catalogue;
    opts.prompt = args.prompt.clone();
    opts.extra_env = extra_env;
    opts.timeout = Duration::from_secs(args.timeout);
    opts.baseline_runs = args.baseline_runs;
    opts.jobs = args.jobs.max(1);
    if args.no_hostname || (!args.only.is_empty() && !args.only.contains(&DimName::Hostname)) {
        opts.hostname = HostnameMode::Off;
    }
    if global.stderr_is_terminal() {
        opts.progress = Some(Arc::new(|done, total, label: &str| {
            eprintln!("[{done}/{total}] {label}");
        }));
    }

    let report = airlock_probe::probe_blocking(opts).context("airlock probe")?;
    let text = match args.format {
        Format::Human => report.to_human(args.output.is_none() && global.color_stdout()),
        Format::Json => {
            let mut s = report.to_json();
            s.push('\n');
            s
        }
        Format::Html => report.to_html(),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            if !global.quiet {
                eprintln!(
                    "airlock probe: {} ({} finding(s)); report written to {}",
                    if report.exit_code() == 0 {
                        "clean"
                    } else {
                        "environment-dependent"
                    },
                    report.summary.findings,
                    path.display()
                );
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .context("writing the report")?;
            out.flush().context("writing the report")?;
        }
    }
    Ok(if report.exit_code() == 0 {
        Exit::Clean
    } else {
        Exit::Findings
    })
}
