//! Options shared by every subcommand, logging set-up and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

/// The exit status of a command: the same three codes for every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Nothing at or above the fail level.
    Clean,
    /// Findings or policy violations.
    Findings,
    /// Usage, configuration or I/O error.
    Error,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Clean => ExitCode::from(0),
            Exit::Findings => ExitCode::from(1),
            Exit::Error => ExitCode::from(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Color {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Options accepted by every subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// More log output (repeatable). `AIRLOCK_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to use colour.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "AIRLOCK_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Configuration file (airlock.toml). Without it, the embedded defaults apply.
    #[arg(long, global = true, env = "AIRLOCK_CONFIG")]
    pub config: Option<PathBuf>,
}

impl Global {
    /// Whether stdout gets ANSI colour.
    pub fn color_stdout(&self) -> bool {
        use std::io::IsTerminal;
        match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }

    /// Whether stderr is a terminal (progress bars only there).
    pub fn stderr_is_terminal(&self) -> bool {
        use std::io::IsTerminal;
        !self.quiet && std::io::stderr().is_terminal()
    }

    pub fn init_logging(&self) {
        use tracing_subscriber::EnvFilter;
        let default = if self.quiet {
            "error"
        } else {
            match self.verbose {
                0 => "warn,airlock=info,airlock_gateway=info",
                1 => "info",
                2 => "debug",
                _ => "trace",
            }
        };
        let filter =
            EnvFilter::try_from_env("AIRLOCK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            LogFormat::Human => builder
                .with_ansi(self.color != Color::Never && self.stderr_is_terminal())
                .try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
    }
}

/// Restore the default SIGPIPE behaviour is not possible without unsafe code; instead every
/// writer error is checked with [`is_broken_pipe`] so that `airlock ... | head` exits quietly.
pub fn reset_sigpipe() {}

/// True when the error chain holds an I/O broken-pipe error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
