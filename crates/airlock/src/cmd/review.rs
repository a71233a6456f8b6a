//! `airlock review`: static security review of an agent package or executable.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use airlock_review::{Decision, Input, Limits, Options, render};
use anyhow::Context;

use crate::{Exit, Global};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Terminal report (colour on a terminal).
    #[default]
    Human,
    /// The full report as JSON (field names documented in docs/review.md).
    Json,
    /// SARIF 2.1.0 for code-scanning tools.
    Sarif,
    /// A standalone HTML page to read and share.
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 1 on a `review` or `ban` verdict.
    Review,
    /// Exit 1 only on a `ban` verdict.
    Ban,
    /// Always exit 0 when the review ran.
    Never,
}

/// Statically review an agent package or executable.
///
/// TARGET is `npm:SPEC` (fetched with this machine's npm configuration; install scripts never
/// run; the linux-x64 platform package in optionalDependencies is reviewed too), a `.tgz`, a
/// directory, a JavaScript file, or a native executable (Bun and Node SEA executables are
/// unpacked; others are reviewed by their strings).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to review; with --diff, OLD and NEW.
    #[arg(value_name = "TARGET", required = true, num_args = 1..=2)]
    pub targets: Vec<String>,
    /// Compare two versions: what appeared and disappeared.
    #[arg(long)]
    pub diff: bool,
    /// Output format (--diff supports human and json).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Write the report to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Verdict at which the exit code is 1.
    #[arg(long, value_enum, default_value_t = FailOn::Review)]
    pub fail_on: FailOn,
    /// Capability markers and verdict rules replacing the built-in rules/review.toml.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Host classes replacing the built-in rules/hosts.toml.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Platform package to follow in optionalDependencies (npm targets).
    #[arg(long, default_value = airlock_review::DEFAULT_PLATFORM)]
    pub platform: String,
    /// Do not fetch the platform package.
    #[arg(long)]
    pub no_platform: bool,
    /// npm executable used to fetch `npm:` targets.
    #[arg(long, env = "AIRLOCK_NPM", default_value = "npm")]
    pub npm: String,
    /// Seconds allowed for one `npm pack`.
    #[arg(long, default_value_t = 300)]
    pub fetch_timeout: u64,
    /// Largest single file or member, in MiB.
    #[arg(long, default_value_t = airlock_review::unpack::DEFAULT_MAX_FILE_BYTES >> 20)]
    pub max_file_mib: u64,
}

fn read_rules(p: &Option<PathBuf>) -> anyhow::Result<Option<(String, String)>> {
    match p {
        Some(p) => {
            let t =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Some((t, p.display().to_string())))
        }
        None => Ok(None),
    }
}

fn emit(args: &Args, text: &str) -> anyhow::Result<()> {
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(())
        }
    }
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<Exit> {
    if args.diff != (args.targets.len() == 2) {
        eprintln!("error: give one TARGET, or --diff OLD NEW");
        return Ok(Exit::Error);
    }
    if args.diff && matches!(args.format, Format::Sarif | Format::Html) {
        eprintln!("error: --diff supports --format human or json");
        return Ok(Exit::Error);
    }
    let bar = global.stderr_is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let say = |m: &str| {
        if let Some(b) = &bar {
            b.set_message(m.to_string());
        }
    };
    let opts = Options {
        limits: Limits {
            fetch_timeout: Duration::from_secs(args.fetch_timeout),
            max_file_bytes: args.max_file_mib.saturating_mul(1 << 20),
            ..Limits::default()
        },
        rules: read_rules(&args.rules)?,
        hosts: read_rules(&args.hosts)?,
        platform: (!args.no_platform).then(|| args.platform.clone()),
        npm: args.npm.clone(),
        progress: Some(&say),
    };
    let color = args.output.is_none() && global.color_stdout();
    let mut reports = Vec::new();
    for t in &args.targets {
        let r = airlock_review::review(&Input::parse(t), &opts)
            .with_context(|| format!("reviewing {t}"))?;
        reports.push(r);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if args.diff {
        let d = airlock_review::diff(&reports[0], &reports[1]);
        let text = match args.format {
            Format::Json => serde_json::to_string_pretty(&d)?,
            _ => render::diff_human(&d, color),
        };
        emit(&args, &text)?;
        return Ok(if d.nothing_added() {
            Exit::Clean
        } else {
            Exit::Findings
        });
    }
    let r = &reports[0];
    let text = match args.format {
        Format::Human => render::human(r, color),
        Format::Json => render::json(r),
        Format::Sarif => render::sarif(r),
        Format::Html => render::html(r),
    };
    emit(&args, &text)?;
    if args.output.is_some() && !global.quiet {
        eprintln!(
            "verdict: {} ({} findings)",
            r.verdict.decision.as_str(),
            r.findings.len()
        );
    }
    let fail = match args.fail_on {
        FailOn::Review => r.verdict.decision >= Decision::Review,
        FailOn::Ban => r.verdict.decision == Decision::Ban,
        FailOn::Never => false,
    };
    Ok(if fail { Exit::Findings } else { Exit::Clean })
}
