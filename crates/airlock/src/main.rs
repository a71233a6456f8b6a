//! The `airlock` command: CLI parsing and wiring only.
//!
//! Every subcommand lives in its own file under `cmd/` and delegates to a library crate.
//! Exit codes for every command: 0 clean, 1 findings or policy violations, 2 usage, config
//! or I/O error. Data goes to stdout, everything else to stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod global;

pub use global::{Exit, Global};

/// Airlock: review, enforce, prove and find AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan files or stdin for secrets, personal data, custom markers and covert Unicode.
    Scan(cmd::scan::Args),
    /// Run the gateway that coding agents are pointed at.
    Serve(cmd::serve::Args),
    /// Manage Airlock-issued API keys.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// Inspect and check the configuration.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// Query, export and verify the audit trail.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Statically review an agent package or executable.
    Review(cmd::review::Args),
    /// Run an agent against a recording fake model API under varied environments.
    Probe(cmd::probe::Args),
    /// Find AI coding agents installed on this machine and judge them against policy.
    Inventory(cmd::inventory::Args),
}

fn main() -> ExitCode {
    global::reset_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli.global.init_logging();
    let result = match cli.command {
        Command::Scan(args) => cmd::scan::run(&cli.global, args),
        Command::Serve(args) => cmd::serve::run(&cli.global, args),
        Command::Keys(c) => cmd::keys::run(&cli.global, c),
        Command::Config(c) => cmd::config::run(&cli.global, c),
        Command::Audit(c) => cmd::audit::run(&cli.global, c),
        Command::Review(args) => cmd::review::run(&cli.global, args),
        Command::Probe(args) => cmd::probe::run(&cli.global, args),
        Command::Inventory(args) => cmd::inventory::run(&cli.global, args),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            if global::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            Exit::Error.into()
        }
    }
}
