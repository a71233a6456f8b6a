//! `airlock keys`: create, list and revoke Airlock-issued API keys.

use std::io::Write;
use std::path::PathBuf;

use airlock_gateway::keys::{KeyInfo, KeyStore};
use anyhow::Context;
use serde::Serialize;

use crate::{Exit, Global};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Directory holding keys.db (overrides server.data_dir of the config).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key for a user and print it once (it is stored hashed and cannot be shown again).
    Create {
        /// Who the key is for (appears in logs, metrics and the audit trail).
        #[arg(long)]
        user: String,
        /// The user's team (policy rules can target teams).
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List keys: id, prefix, user, team, created, revoked. Never the keys themselves.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key by id (`key_...`); a running gateway stops accepting it within a second.
    Revoke {
        /// The key id as shown by `airlock keys list`.
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

fn data_dir(global: &Global, common: &Common) -> anyhow::Result<PathBuf> {
    if let Some(d) = &common.data_dir {
        return Ok(d.clone());
    }
    let cfg = airlock_policy::Config::load_or_default(global.config.as_deref())
        .context("cannot read the configuration to find the data directory")?;
    Ok(cfg.server.data_dir())
}

fn open(global: &Global, common: &Common) -> anyhow::Result<KeyStore> {
    let dir = data_dir(global, common)?;
    KeyStore::open(&dir).with_context(|| format!("cannot open the key store in {}", dir.display()))
}

fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[derive(Serialize)]
struct Created<'a> {
    key: &'a str,
    #[serde(flatten)]
    info: &'a KeyInfo,
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Create { user, team, common } => {
            let store = open(global, &common)?;
            let new = store.create(&user, team.as_deref())?;
            match common.format {
                Format::Human => {
                    writeln!(out, "{}", new.key.expose())?;
                    if !global.quiet {
                        eprintln!(
                            "created {} for user {}{} in {}; it is shown only this once",
                            new.info.id,
                            new.info.user,
                            new.info
                                .team
                                .as_deref()
                                .map(|t| format!(" (team {t})"))
                                .unwrap_or_default(),
                            store.path().display()
                        );
                    }
                }
                Format::Json | Format::Jsonl => {
                    serde_json::to_writer(
                        &mut out,
                        &Created {
                            key: new.key.expose(),
                            info: &new.info,
                        },
                    )?;
                    writeln!(out)?;
                }
            }
        }
        Command::List { common } => {
            let keys = open(global, &common)?.list()?;
            match common.format {
                Format::Human => {
                    writeln!(
                        out,
                        "{:<17} {:<13} {:<20} {:<16} {:<21} REVOKED",
                        "ID", "PREFIX", "USER", "TEAM", "CREATED"
                    )?;
                    for k in &keys {
                        writeln!(
                            out,
                            "{:<17} {:<13} {:<20} {:<16} {:<21} {}",
                            k.id,
                            format!("{}…", k.prefix),
                            k.user,
                            k.team.as_deref().unwrap_or("-"),
                            when(k.created_at),
                            k.revoked_at.map(when).unwrap_or_else(|| "-".into())
                        )?;
                    }
                }
                Format::Json => {
                    serde_json::to_writer_pretty(&mut out, &keys)?;
                    writeln!(out)?;
                }
                Format::Jsonl => {
                    for k in &keys {
                        serde_json::to_writer(&mut out, k)?;
                        writeln!(out)?;
                    }
                }
            }
        }
        Command::Revoke { id, common } => {
            let store = open(global, &common)?;
            match store.revoke(&id) {
                Ok(info) => match common.format {
                    Format::Human => {
                        if !global.quiet {
                            eprintln!("revoked {} (user {})", info.id, info.user);
                        }
                    }
                    Format::Json | Format::Jsonl => {
                        serde_json::to_writer(&mut out, &info)?;
                        writeln!(out)?;
                    }
                },
                Err(airlock_gateway::keys::KeyError::NotFound(id)) => {
                    eprintln!("error: no key with id {id:?} (see `airlock keys list`)");
                    return Ok(Exit::Error);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Exit::Clean)
}
