//! `airlock audit`: query, export, verify, checkpoints, prune, public-key.
//!
//! Every subcommand finds the store the way the gateway does: `--data-dir DIR`, else the
//! default data directory (`$AIRLOCK_DATA_DIR`, `$XDG_DATA_HOME/airlock`,
//! `~/.local/share/airlock`). Read-only subcommands never create a store, so they work on a
//! stopped gateway's data and fail clearly on a wrong directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_audit::{
    AuditFilter, AuditKey, AuditRecord, CheckpointExport, Decision, KEY_FILE, Retention,
    SqliteStore, VerifyReport,
};
use anyhow::{Context, bail};
use time::OffsetDateTime;

use crate::{Exit, Global};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show audit records matching a filter (newest N, oldest first).
    Query(QueryArgs),
    /// Stream matching records as JSON Lines, oldest first (for SIEM ingestion).
    Export(ExportArgs),
    /// Check the hash chain, checkpoint signatures and pruning anchors; name the first broken record.
    Verify(VerifyArgs),
    /// Export the signed checkpoints and anchors (with the public key) for an outside system to keep.
    Checkpoints(CheckpointsArgs),
    /// Delete the oldest records by age and/or count, leaving a signed anchor.
    Prune(PruneArgs),
    /// Print the public key that verifies this data directory's checkpoints.
    PublicKey(DirArgs),
}

#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// Data directory holding audit.db (default: the gateway's data directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Records at or after this time: an age (90s, 30m, 1h, 7d, 2w) or an RFC 3339 time.
    #[arg(long, value_name = "AGE|TIME")]
    pub since: Option<String>,
    /// Records before this time: an age or an RFC 3339 time.
    #[arg(long, value_name = "AGE|TIME")]
    pub until: Option<String>,
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Only this tool (agent id, e.g. claude-code, or unknown).
    #[arg(long)]
    pub tool: Option<String>,
    /// Only this decision.
    #[arg(long, value_parser = ["allowed", "denied", "blocked"])]
    pub decision: Option<String>,
    /// Only this model (exact name).
    #[arg(long)]
    pub model: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self, limit: Option<usize>) -> anyhow::Result<AuditFilter> {
        let now = OffsetDateTime::now_utc();
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("since", &self.since),
            ("until", &self.until),
            ("user", &self.user),
            ("team", &self.team),
            ("tool", &self.tool),
            ("decision", &self.decision),
            ("model", &self.model),
        ] {
            if let Some(v) = v {
                pairs.push((k, v.clone()));
            }
        }
        if let Some(l) = limit {
            pairs.push(("limit", l.to_string()));
        }
        let f = AuditFilter::from_query_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())), now)
            .map_err(|e| match e {
                airlock_audit::AuditError::Filter { key, reason } => {
                    anyhow::anyhow!("--{key}: {reason}")
                }
                other => anyhow::Error::new(other),
            })?;
        Ok(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// A table for people.
    #[value(alias = "human")]
    Table,
    /// One JSON array.
    Json,
    /// One JSON record per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many records (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Also trust this public key (hex), e.g. when checking a copy without its key file.
    #[arg(long, value_name = "HEX")]
    pub public_key: Vec<String>,
    /// Checkpoints exported earlier (`airlock audit checkpoints --export`) and kept outside:
    /// the chain must agree with every one of them.
    #[arg(long, value_name = "FILE")]
    pub checkpoints: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    pub format: ReportFormat,
}

#[derive(Debug, clap::Args)]
pub struct CheckpointsArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Write the export to FILE (default: stdout). A checkpoint over the current head is
    /// signed first if there is none, so the export covers every record so far.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Delete records older than this (e.g. 30d, 12w).
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<String>,
    /// Keep at most this many records (the newest).
    #[arg(long, value_name = "N")]
    pub max_records: Option<u64>,
    /// Keep the newest records whose payload (record JSON plus stored bodies) fits in this
    /// many bytes (suffixes k, M, G accepted, e.g. 500M).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_bytes: Option<u64>,
}

/// `1048576`, `512k`, `500M`, `2G` (binary multiples).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 1048576, 512k, 500M, 2G)"))
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<Exit> {
    // The data directory comes from --data-dir, else the config's `server.data_dir`, else the
    // default: the same order the gateway uses.
    let configured = airlock_policy::Config::load_or_default(global.config.as_deref())
        .context("cannot read the configuration to find the data directory")?
        .server
        .data_dir();
    let _ = CONFIGURED_DATA_DIR.set(configured);
    match command {
        Command::Query(a) => query(global, a),
        Command::Export(a) => export(a),
        Command::Verify(a) => verify(a),
        Command::Checkpoints(a) => checkpoints(a),
        Command::Prune(a) => prune(a),
        Command::PublicKey(a) => public_key(a),
    }
}

static CONFIGURED_DATA_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The data directory, found the way the gateway finds it.
fn data_dir(args: &DirArgs) -> PathBuf {
    args.data_dir.clone().unwrap_or_else(|| {
        CONFIGURED_DATA_DIR
            .get()
            .cloned()
            .unwrap_or_else(airlock_policy::paths::default_data_dir)
    })
}

fn open(args: &DirArgs) -> anyhow::Result<(PathBuf, SqliteStore)> {
    let dir = data_dir(args);
    let store = SqliteStore::open_existing(&dir).context("opening the audit log")?;
    Ok((dir, store))
}

fn query(global: &Global, a: QueryArgs) -> anyhow::Result<Exit> {
    let filter = a.filter.to_filter(Some(a.limit))?;
    let (_, store) = open(&a.dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match a.format {
        QueryFormat::Jsonl => {
            airlock_audit::query_jsonl(&store, &filter, &mut out).context("writing records")?;
        }
        QueryFormat::Json => {
            let recs = airlock_audit::query(&store, &filter)?;
            serde_json::to_writer_pretty(&mut out, &recs).context("writing records")?;
            writeln!(out)?;
        }
        QueryFormat::Table => {
            let recs = airlock_audit::query(&store, &filter)?;
            write_table(&mut out, &recs, global.color_stdout())?;
            if recs.is_empty() {
                eprintln!("no matching records");
            }
        }
    }
    out.flush()?;
    Ok(Exit::Clean)
}

/// Strip control characters (a hostile User-Agent must not drive the terminal) and cut.
fn cell(s: Option<&str>, max: usize) -> String {
    let s: String = s
        .unwrap_or("-")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        s
    }
}

fn write_table(out: &mut dyn Write, recs: &[AuditRecord], color: bool) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:>8}  {:<24}  {:<12}  {:<24}  {:<24}  {:<8}  {:>6}  {:>15}  {:>9}  FINDINGS",
        "SEQ", "TIME", "USER", "TOOL", "MODEL", "DECISION", "STATUS", "TOKENS IN/OUT", "MS"
    )?;
    // A forwarded request has two records: `request` when it was sent, `exchange` when it
    // ended. Show one row per exchange: the request record only when no end is listed.
    let ended: std::collections::HashSet<&str> = recs
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Exchange)
        .map(|r| r.request_id.as_str())
        .collect();
    for r in recs {
        if r.kind == airlock_audit::RecordKind::Request && ended.contains(r.request_id.as_str()) {
            continue;
        }
        let time = r
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let tool = match (&r.tool, &r.tool_version) {
            (Some(t), Some(v)) => format!("{t} {v}"),
            (Some(t), None) => t.clone(),
            _ => "-".into(),
        };
        let decision = match (r.kind, r.decision) {
            (airlock_audit::RecordKind::Overflow, _) => "LOST".to_string(),
            (airlock_audit::RecordKind::Admin, Some(Decision::Allowed)) => "admin".to_string(),
            (_, Some(d)) => d.as_str().to_string(),
            (_, None) => "-".into(),
        };
        let decision_cell = format!("{decision:<8}");
        let decision_cell = if color {
            match r.decision {
                Some(Decision::Denied | Decision::Blocked) => {
                    format!("\x1b[31m{decision_cell}\x1b[0m")
                }
                _ if r.kind == airlock_audit::RecordKind::Overflow => {
                    format!("\x1b[33m{decision_cell}\x1b[0m")
                }
                _ => decision_cell,
            }
        } else {
            decision_cell
        };
        let tokens = match &r.usage {
            Some(u) => format!(
                "{}/{}",
                u.input_tokens.map_or("-".into(), |v| v.to_string()),
                u.output_tokens.map_or("-".into(), |v| v.to_string())
            ),
            None => "-".into(),
        };
        let ms = r
            .latency_total_us
            .map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0));
        let findings = if r.kind == airlock_audit::RecordKind::Overflow {
            format!(
                "{} record(s) lost to a full queue",
                r.lost_records.unwrap_or(0)
            )
        } else if r.kind == airlock_audit::RecordKind::Request {
            "sent upstream; no end recorded (yet)".to_string()
        } else if r.kind == airlock_audit::RecordKind::Throttled {
            format!(
                "{} refused request(s) without a valid key, counted",
                r.lost_records.unwrap_or(0)
            )
        } else if r.findings.is_empty() {
            "-".into()
        } else {
            r.findings
                .iter()
                .map(|f| format!("{}×{}", cell(Some(&f.rule_id), 40), f.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            out,
            "{:>8}  {:<24}  {:<12}  {:<24}  {:<24}  {}  {:>6}  {:>15}  {:>9}  {}",
            r.seq,
            time,
            cell(r.user.as_deref(), 12),
            cell(Some(&tool), 24),
            cell(r.model.as_deref(), 24),
            decision_cell,
            r.status.map_or("-".into(), |s| s.to_string()),
            tokens,
            ms,
            findings
        )?;
    }
    Ok(())
}

fn export(a: ExportArgs) -> anyhow::Result<Exit> {
    let ExportFormat::Jsonl = a.format;
    let filter = a.filter.to_filter(None)?;
    let filter = AuditFilter {
        limit: a.limit,
        ..filter
    };
    let (_, store) = open(&a.dir)?;
    let n = match &a.output {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(f);
            airlock_audit::export_jsonl(&store, &filter, &mut w)
                .with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            airlock_audit::export_jsonl(&store, &filter, &mut w).context("writing records")?
        }
    };
    tracing::info!(records = n, "audit export done");
    Ok(Exit::Clean)
}

fn verify(a: VerifyArgs) -> anyhow::Result<Exit> {
    let dir = data_dir(&a.dir);
    let mut keys = Vec::new();
    for k in &a.public_key {
        keys.push(
            airlock_audit::signing::parse_public_key(k)
                .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?,
        );
    }
    let external = match &a.checkpoints {
        Some(p) => Some(CheckpointExport::read(p).context("reading --checkpoints")?),
        None => None,
    };
    let report =
        airlock_audit::verify_dir(&dir, &keys, external).context("verifying the audit log")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match a.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        ReportFormat::Human => write_report(&mut out, &dir, &report)?,
    }
    out.flush()?;
    Ok(if report.ok() {
        Exit::Clean
    } else {
        Exit::Findings
    })
}

fn write_report(out: &mut dyn Write, dir: &Path, r: &VerifyReport) -> anyhow::Result<()> {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!(" ({a}..{b})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "audit log {}: {} records{range}, {} checkpoints, {} anchors{}",
        dir.join(airlock_audit::DB_FILE).display(),
        r.records,
        r.checkpoints,
        r.anchors,
        if r.external_checkpoints > 0 {
            format!(", {} exported checkpoints", r.external_checkpoints)
        } else {
            String::new()
        }
    )?;
    match r.first_problem() {
        None => {
            writeln!(
                out,
                "OK: the chain is intact; signed through record {}",
                r.signed_through
            )?;
            if r.unsigned_tail > 0 {
                writeln!(
                    out,
                    "note: {} record(s) after the last checkpoint are chained but not yet signed",
                    r.unsigned_tail
                )?;
            }
        }
        Some(first) => {
            match first.seq {
                Some(seq) => writeln!(out, "FAILED: first broken record {seq}: {}", first.message)?,
                None => writeln!(out, "FAILED: {}", first.message)?,
            }
            for p in r.problems.iter().skip(1).take(19) {
                writeln!(out, "  also: {}", p.message)?;
            }
            if r.problem_count > 20 {
                writeln!(
                    out,
                    "  ... {} problems in all (--format json lists them)",
                    r.problem_count
                )?;
            }
        }
    }
    Ok(())
}

fn checkpoints(a: CheckpointsArgs) -> anyhow::Result<Exit> {
    let (dir, mut store) = open(&a.dir)?;
    let key_path = dir.join(KEY_FILE);
    let key = if key_path.exists() {
        Some(AuditKey::load(&key_path)?)
    } else {
        eprintln!(
            "warning: no {} in {}: exporting the stored checkpoints without signing a new one",
            KEY_FILE,
            dir.display()
        );
        None
    };
    let export = CheckpointExport::gather(&mut store, key.as_ref(), OffsetDateTime::now_utc())?;
    let json = serde_json::to_string_pretty(&export)?;
    match &a.export {
        Some(path) => {
            std::fs::write(path, format!("{json}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "exported {} checkpoints and {} anchors to {}",
                export.checkpoints.len(),
                export.anchors.len(),
                path.display()
            );
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            writeln!(out, "{json}")?;
            out.flush()?;
        }
    }
    Ok(Exit::Clean)
}

fn prune(a: PruneArgs) -> anyhow::Result<Exit> {
    if a.max_age.is_none() && a.max_records.is_none() && a.max_bytes.is_none() {
        bail!("give --max-age AGE, --max-records N and/or --max-bytes BYTES");
    }
    let max_age = match &a.max_age {
        Some(s) => Some(airlock_audit::parse_age(s).map_err(|e| anyhow::anyhow!("--max-age {e}"))?),
        None => None,
    };
    let (dir, mut store) = open(&a.dir)?;
    let key_path = dir.join(KEY_FILE);
    if !key_path.exists() {
        bail!(
            "{} is missing: pruning must sign an anchor with the gateway's key",
            key_path.display()
        );
    }
    let key = AuditKey::load(&key_path)?;
    let retention = Retention {
        max_age,
        max_records: a.max_records,
        max_bytes: a.max_bytes,
    };
    let outcome = airlock_audit::prune(&mut store, &key, &retention, OffsetDateTime::now_utc())?;
    match outcome.anchors.last() {
        Some(anchor) => eprintln!(
            "pruned {} records; the chain now starts after record {} (signed anchor)",
            outcome.pruned, anchor.seq
        ),
        None => eprintln!("nothing to prune"),
    }
    Ok(Exit::Clean)
}

fn public_key(a: DirArgs) -> anyhow::Result<Exit> {
    let dir = data_dir(&a);
    let key = AuditKey::load(&dir.join(KEY_FILE)).context("reading the audit signing key")?;
    println!("{}", key.public_key_hex());
    Ok(Exit::Clean)
}
