//! `airlock inventory`: find AI coding agents on this machine (or a mounted tree) and judge
//! them against the same policy the gateway enforces. Read-only; see docs/inventory.md.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;

use airlock_inventory::{AirlockAddrs, ScanOptions, render};
use airlock_policy::{Catalogue, Config, Policy};

use crate::{Exit, Global};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// A table for people.
    #[default]
    Human,
    /// One JSON document (schema in docs/inventory.md), for fleet collection.
    Json,
    /// One JSON object per finding (and per error), each carrying the machine fields.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tree to scan, e.g. a mounted disk image. Every path is resolved under it; symbolic
    /// links never lead out of it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// A home directory to scan, as a path on the scanned machine (repeatable). Default: $HOME.
    #[arg(long, value_name = "DIR")]
    pub home: Vec<PathBuf>,
    /// Scan every home under <root>/home and <root>/root.
    #[arg(long)]
    pub all_users: bool,
    /// Directories searched for executables, colon-separated, as on the scanned machine.
    /// Default: $PATH.
    #[arg(long, value_name = "DIRS")]
    pub path: Option<String>,
    /// A proc directory to read processes from. Default: /proc when --root is /, otherwise
    /// processes are not scanned.
    #[arg(long, value_name = "DIR")]
    pub proc: Option<PathBuf>,
    /// Do not look at running processes.
    #[arg(long)]
    pub no_processes: bool,
    /// Run `<tool> --version` for executables whose version is not on disk, for tools the
    /// catalogue marks safe to run. Only with --root /.
    #[arg(long)]
    pub run_version: bool,
    /// An address at which Airlock is reached (repeatable), e.g. https://airlock.corp.example.
    /// Default: the configured `server.listen` address.
    #[arg(long, value_name = "URL")]
    pub airlock_url: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Print (never run) a shell script with the commands that would remove or update every
    /// denied tool, instead of the report.
    #[arg(long)]
    pub remediate: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<Exit> {
    let config = Config::load_or_default(global.config.as_deref())
        .context("cannot load the configuration")?;
    let policy = Policy::from_config(&config).context("cannot compile the policy")?;

    let airlock_urls = if args.airlock_url.is_empty() {
        vec![config.server.listen.clone()]
    } else {
        args.airlock_url.clone()
    };
    let airlock = AirlockAddrs::parse(&airlock_urls).map_err(|u| {
        anyhow::anyhow!("invalid --airlock-url \"{u}\": expected scheme://host[:port]")
    })?;

    let mut homes = args.home.clone();
    if homes.is_empty()
        && !args.all_users
        && let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        homes.push(PathBuf::from(h));
    }
    let path = args
        .path
        .clone()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let path_dirs: Vec<PathBuf> = path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from)
        .collect();

    let opts = ScanOptions {
        root: args.root.clone(),
        homes,
        all_users: args.all_users,
        path_dirs,
        proc_dir: args.proc.clone(),
        no_processes: args.no_processes,
        run_version: args.run_version,
        airlock,
        user: None,
    };
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let scanned_at = now
        .format(&time::format_description::well_known::Rfc3339)
        .context("cannot format the scan time")?;
    let report = airlock_inventory::scan(&opts, Catalogue::embedded(), &policy, &scanned_at)
        .context("inventory failed")?;

    for e in &report.errors {
        tracing::warn!(path = %render::printable(&e.path), "{}", render::printable(&e.message));
    }

    let mut out = std::io::stdout().lock();
    if args.remediate {
        out.write_all(render::script(&report).as_bytes())?;
    } else {
        match args.format {
            Format::Human => out.write_all(render::human(&report).as_bytes())?,
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            }
            Format::Jsonl => {
                for f in &report.findings {
                    let mut v = serde_json::to_value(f)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("type".into(), "finding".into());
                        add_machine_fields(obj, &report);
                    }
                    serde_json::to_writer(&mut out, &v)?;
                    writeln!(out)?;
                }
                for e in &report.errors {
                    let mut v = serde_json::to_value(e)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("type".into(), "error".into());
                        add_machine_fields(obj, &report);
                    }
                    serde_json::to_writer(&mut out, &v)?;
                    writeln!(out)?;
                }
            }
        }
    }
    out.flush()?;

    Ok(if report.has_violations() {
        Exit::Findings
    } else if !report.errors.is_empty() {
        Exit::Error
    } else {
        Exit::Clean
    })
}

fn add_machine_fields(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    report: &airlock_inventory::Report,
) {
    obj.insert("schema_version".into(), report.schema_version.into());
    obj.insert("machine_id".into(), report.machine_id.clone().into());
    obj.insert("hostname".into(), report.hostname.clone().into());
    obj.insert("scanned_at".into(), report.scanned_at.clone().into());
    obj.entry("user")
        .or_insert_with(|| report.user.clone().into());
}
