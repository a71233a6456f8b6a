//! `airlock scan`: find secrets, personal data, custom markers and covert Unicode in files or
//! stdin with the shared detection engine.
//!
//! Exit codes: 2 if any usage, config or I/O error happened (the scan still covers every other
//! file and prints its findings), else 1 if any finding at or above `--fail-on` is not in the
//! baseline, else 0.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use airlock_detect::{Category, DetectConfig, Engine, Finding, Severity};
use anyhow::Context;
use serde::Serialize;

use crate::{Exit, Global};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// `path:line:col  severity  rule  [category]  preview` (colour on a terminal).
    #[default]
    Human,
    /// One JSON document: `{"findings": [...], "summary": {...}}`.
    Json,
    /// One JSON object per finding per line.
    Jsonl,
    /// SARIF 2.1.0 (GitHub code scanning).
    Sarif,
}

/// Scan files, directories or stdin for secrets, personal data, custom markers and covert
/// Unicode.
///
/// Directories are walked in parallel honouring .gitignore/.ignore (hidden files such as .env
/// and .npmrc are scanned; .git is not). Binary files (a NUL byte in the first 8 KiB) and files
/// over the size limit are skipped. Values are never printed: only redacted previews.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to scan; `-` reads stdin. Default: the current directory.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Only these categories (comma-separated): secret, pii, covert, custom.
    #[arg(long, value_delimiter = ',', value_parser = parse_category)]
    pub only: Vec<Category>,
    /// Exit 1 when a finding of this severity or higher is found: info, low, medium, high,
    /// critical.
    #[arg(long, default_value = "low", value_parser = parse_severity)]
    pub fail_on: Severity,
    /// Baseline file of accepted findings (JSON written by --write-baseline); findings whose
    /// fingerprint is in it are not reported.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write every finding's fingerprint (never the value) to FILE as a baseline and exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Skip files larger than this many bytes (default: detection.max_file_size, 10 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_file_size: Option<u64>,
    /// Turn off rules by id, tag, category or id prefix ending in `*` (repeatable).
    #[arg(long, value_name = "RULE")]
    pub disable: Vec<String>,
    /// Extra rule file(s) in the rules/*.toml format (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
    /// Also scan files that .gitignore/.ignore exclude.
    #[arg(long)]
    pub no_ignore: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn parse_category(s: &str) -> Result<Category, String> {
    s.parse()
        .map_err(|e: airlock_detect::DetectError| e.to_string())
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
        .map_err(|e: airlock_detect::DetectError| e.to_string())
}

/// A finding as printed: the engine's finding plus where it is.
#[derive(Debug, Clone, Serialize)]
struct OutFinding {
    path: String,
    line: u32,
    column: u32,
    start: usize,
    end: usize,
    rule: String,
    category: Category,
    severity: Severity,
    confidence: airlock_detect::Confidence,
    preview: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    fingerprint: String,
}

impl OutFinding {
    fn new(path: &str, f: Finding) -> Self {
        OutFinding {
            path: path.to_string(),
            line: f.line,
            column: f.column,
            start: f.start,
            end: f.end,
            rule: f.rule_id.to_string(),
            category: f.category,
            severity: f.severity,
            confidence: f.confidence,
            preview: f.preview,
            detail: f.detail,
            fingerprint: f.fingerprint,
        }
    }
}

#[derive(Default)]
struct Collected {
    findings: Vec<OutFinding>,
    errors: Vec<String>,
    warnings: Vec<String>,
    files_scanned: u64,
    bytes_scanned: u64,
    skipped_binary: u64,
    skipped_large: u64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct Baseline {
    airlock_baseline: u32,
    findings: Vec<BaselineEntry>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct BaselineEntry {
    fingerprint: String,
    rule: String,
    path: String,
}

/// Load `[detection]` from the config file, if any.
fn load_config(global: &Global) -> anyhow::Result<(DetectConfig, Option<PathBuf>)> {
    let Some(path) = &global.config else {
        return Ok((DetectConfig::default(), None));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read config", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    let cfg = match table.get("detection") {
        Some(v) => v
            .clone()
            .try_into::<DetectConfig>()
            .with_context(|| format!("{}: invalid [detection] section", path.display()))?,
        None => DetectConfig::default(),
    };
    cfg.validate()
        .with_context(|| format!("{}: invalid [detection] section", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf);
    Ok((cfg, dir))
}

fn build_engine(global: &Global, args: &Args) -> anyhow::Result<(Engine, DetectConfig)> {
    let (cfg, cfg_dir) = load_config(global)?;
    let mut b = Engine::builder().with_builtin();
    let mut files: Vec<PathBuf> = cfg
        .rule_files
        .iter()
        .map(|p| match (&cfg_dir, p.is_relative()) {
            (Some(d), true) => d.join(p),
            _ => p.clone(),
        })
        .collect();
    files.extend(args.rule_files.iter().cloned());
    for f in &files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("{}: cannot read rule file", f.display()))?;
        b = b.add_rules_toml(&text, &f.display().to_string());
    }
    b = b.custom(&cfg.custom);
    let mut disabled = cfg.disable.clone();
    disabled.extend(args.disable.iter().cloned());
    b = b.disable(&disabled).strict_disable(true);
    if !args.only.is_empty() {
        b = b.only(&args.only);
    }
    let engine = b.build().context("building the detection engine")?;
    Ok((engine, cfg))
}

/// Read at most `max` bytes; `Ok(None)` when the input is larger. `expected` (a file's size
/// from its metadata) sizes the buffer up front, so a file is read in one call and one probe
/// for its end, without the doubling reads and copies of an unsized buffer; it is only a hint
/// (a file may grow or shrink meanwhile) and is capped at `max`.
fn read_bounded(mut r: impl Read, max: u64, expected: u64) -> std::io::Result<Option<Vec<u8>>> {
    let cap = usize::try_from(expected.min(max).saturating_add(1)).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    r.by_ref()
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)?;
    Ok(if buf.len() as u64 > max {
        None
    } else {
        Some(buf)
    })
}

fn human_size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// The findings of one file (or stdin), and the warning for a scan that stopped at the engine's
/// cap on findings (so the rest of the file was not looked at).
fn scan_one(engine: &Engine, bytes: &[u8], display: &str) -> (Vec<OutFinding>, Option<String>) {
    let scan = engine.scan_bytes_all(bytes);
    let warning = scan.truncated.then(|| {
        format!(
            "{display}: scan stopped after {} findings; the rest of the file was not scanned",
            airlock_detect::MAX_FINDINGS
        )
    });
    let findings = scan
        .findings
        .into_iter()
        .map(|f| OutFinding::new(display, f))
        .collect();
    (findings, warning)
}

fn scan_file(engine: &Engine, path: &Path, display: &str, max: u64, out: &Mutex<Collected>) {
    type Scanned = (Vec<OutFinding>, Option<String>, u64);
    let result = (|| -> Result<Option<Scanned>, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            return Ok(None);
        }
        if meta.len() > max {
            return Err(format!("skip:{}", meta.len()));
        }
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let Some(bytes) = read_bounded(file, max, meta.len()).map_err(|e| e.to_string())? else {
            return Err(format!("skip:{}", max.saturating_add(1)));
        };
        if memchr_nul(&bytes[..bytes.len().min(8192)]) {
            return Err("binary".into());
        }
        let (findings, warning) = scan_one(engine, &bytes, display);
        Ok(Some((findings, warning, bytes.len() as u64)))
    })();
    let mut c = out.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(Some((f, warning, n))) => {
            c.files_scanned += 1;
            c.bytes_scanned += n;
            c.findings.extend(f);
            c.warnings.extend(warning);
        }
        Ok(None) => {}
        Err(e) if e == "binary" => c.skipped_binary += 1,
        Err(e) if e.starts_with("skip:") => {
            c.skipped_large += 1;
            let size: u64 = e[5..].parse().unwrap_or(0);
            c.warnings.push(format!(
                "{display}: skipped: {} is over the {} limit (--max-file-size)",
                human_size(size),
                human_size(max)
            ));
        }
        Err(e) => c.errors.push(format!("{display}: {e}")),
    }
}

fn memchr_nul(b: &[u8]) -> bool {
    b.contains(&0)
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let (engine, cfg) = build_engine(global, &args)?;
    let engine = Arc::new(engine);
    let max = args.max_file_size.unwrap_or(cfg.max_file_size);
    if max == 0 {
        anyhow::bail!("--max-file-size must be greater than 0");
    }
    let baseline: HashSet<String> = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read baseline", p.display()))?;
            let b: Baseline = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an airlock baseline file (expected {{\"airlock_baseline\": 1, \"findings\": [...]}})", p.display()))?;
            b.findings.into_iter().map(|e| e.fingerprint).collect()
        }
        None => HashSet::new(),
    };

    let paths = if args.paths.is_empty() {
        vec![".".to_string()]
    } else {
        args.paths.clone()
    };
    let collected = Arc::new(Mutex::new(Collected::default()));
    let mut walk_roots = Vec::new();
    for p in &paths {
        if p == "-" {
            let stdin = std::io::stdin();
            match read_bounded(stdin.lock(), max, 0) {
                Ok(Some(bytes)) => {
                    let (findings, warning) = scan_one(&engine, &bytes, "-");
                    let mut c = collected.lock().unwrap_or_else(|p| p.into_inner());
                    c.files_scanned += 1;
                    c.bytes_scanned += bytes.len() as u64;
                    c.findings.extend(findings);
                    c.warnings.extend(warning);
                }
                Ok(None) => collected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .errors
                    .push(format!(
                        "-: stdin is larger than the {} limit (--max-file-size)",
                        human_size(max)
                    )),
                Err(e) => collected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .errors
                    .push(format!("-: {e}")),
            }
        } else {
            walk_roots.push(p.clone());
        }
    }
    if let Some((first, rest)) = walk_roots.split_first() {
        let mut wb = ignore::WalkBuilder::new(first);
        for r in rest {
            wb.add(r);
        }
        wb.hidden(false)
            .git_global(false)
            .require_git(false)
            .filter_entry(|e| e.file_name() != ".git");
        if args.no_ignore {
            wb.ignore(false)
                .git_ignore(false)
                .git_exclude(false)
                .parents(false);
        }
        if let Some(t) = args.threads {
            wb.threads(t);
        }
        wb.build_parallel().run(|| {
            let engine = Arc::clone(&engine);
            let collected = Arc::clone(&collected);
            Box::new(move |entry| {
                match entry {
                    Ok(e) => {
                        if e.file_type().is_some_and(|t| t.is_file())
                            || (e.depth() == 0 && !e.path().is_dir())
                        {
                            let display = e.path().display().to_string();
                            scan_file(&engine, e.path(), &display, max, &collected);
                        }
                    }
                    Err(err) => {
                        let msg = walk_error(&err);
                        collected
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .errors
                            .push(msg);
                    }
                }
                ignore::WalkState::Continue
            })
        });
    }

    let mut c = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
    c.findings.sort_by(|a, b| {
        (a.path.as_str(), a.start, &a.rule).cmp(&(b.path.as_str(), b.start, &b.rule))
    });
    c.errors.sort();
    c.warnings.sort();
    let total = c.findings.len();
    c.findings.retain(|f| !baseline.contains(&f.fingerprint));
    let baselined = total - c.findings.len();

    for w in &c.warnings {
        if !global.quiet {
            eprintln!("warning: {w}");
        }
    }
    for e in &c.errors {
        eprintln!("error: {e}");
    }

    if let Some(out) = &args.write_baseline {
        let b = Baseline {
            airlock_baseline: 1,
            findings: c
                .findings
                .iter()
                .map(|f| BaselineEntry {
                    fingerprint: f.fingerprint.clone(),
                    rule: f.rule.clone(),
                    path: f.path.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&b)?;
        std::fs::write(out, text + "\n")
            .with_context(|| format!("{}: cannot write baseline", out.display()))?;
        if !global.quiet {
            eprintln!(
                "wrote {} fingerprint(s) to {}",
                b.findings.len(),
                out.display()
            );
        }
        return Ok(if c.errors.is_empty() {
            Exit::Clean
        } else {
            Exit::Error
        });
    }

    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Human => write_human(&mut w, &c.findings, global.color_stdout())?,
        Format::Json => {
            let doc = serde_json::json!({
                "findings": c.findings,
                "summary": summary_json(&c, baselined, started),
                "errors": c.errors,
            });
            serde_json::to_writer_pretty(&mut w, &doc)?;
            writeln!(w)?;
        }
        Format::Jsonl => {
            for f in &c.findings {
                serde_json::to_writer(&mut w, f)?;
                writeln!(w)?;
            }
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut w, &sarif(&engine, &c.findings))?;
            writeln!(w)?;
        }
    }
    w.flush()?;

    let failing = c
        .findings
        .iter()
        .filter(|f| f.severity >= args.fail_on)
        .count();
    if !global.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{} finding(s) ({} at or above {}){} in {} file(s), {} scanned in {:.2}s{}{}",
            c.findings.len(),
            failing,
            args.fail_on,
            if baselined > 0 {
                format!(", {baselined} in baseline")
            } else {
                String::new()
            },
            c.files_scanned,
            human_size(c.bytes_scanned),
            secs,
            if c.skipped_binary > 0 {
                format!(", {} binary file(s) skipped", c.skipped_binary)
            } else {
                String::new()
            },
            if c.errors.is_empty() {
                String::new()
            } else {
                format!(", {} error(s)", c.errors.len())
            },
        );
    }
    Ok(if !c.errors.is_empty() {
        Exit::Error
    } else if failing > 0 {
        Exit::Findings
    } else {
        Exit::Clean
    })
}

fn walk_error(err: &ignore::Error) -> String {
    // ignore::Error displays as "<path>: <reason>" for path errors; keep that shape.
    let s = err.to_string();
    if s.contains(": ") {
        s
    } else {
        format!("walk: {s}")
    }
}

fn summary_json(c: &Collected, baselined: usize, started: Instant) -> serde_json::Value {
    let mut by_cat: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &c.findings {
        *by_cat.entry(f.category.as_str()).or_default() += 1;
    }
    serde_json::json!({
        "findings": c.findings.len(),
        "by_category": by_cat,
        "baselined": baselined,
        "files_scanned": c.files_scanned,
        "bytes_scanned": c.bytes_scanned,
        "skipped_binary": c.skipped_binary,
        "skipped_large": c.skipped_large,
        "errors": c.errors.len(),
        "elapsed_ms": started.elapsed().as_millis() as u64,
    })
}

fn write_human(w: &mut impl Write, findings: &[OutFinding], color: bool) -> std::io::Result<()> {
    let (bold, dim, reset) = if color {
        ("\x1b[1m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    for f in findings {
        let sev_color = if !color {
            ""
        } else {
            match f.severity {
                Severity::Critical => "\x1b[1;31m",
                Severity::High => "\x1b[31m",
                Severity::Medium => "\x1b[33m",
                Severity::Low => "\x1b[36m",
                Severity::Info => "\x1b[2m",
            }
        };
        write!(
            w,
            "{bold}{}:{}:{}{reset}  {sev_color}{:<8}{reset}  {}  {dim}[{}]{reset}  {}",
            f.path, f.line, f.column, f.severity, f.rule, f.category, f.preview
        )?;
        if let Some(d) = &f.detail {
            write!(w, "  {dim}({}){reset}", sanitize(d))?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// Keep terminal control characters out of human output.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

fn sarif_uri(path: &str) -> String {
    let p = path.strip_prefix("./").unwrap_or(path);
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            '\\' => out.push('/'),
            ' ' => out.push_str("%20"),
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            _ => out.push(c),
        }
    }
    out
}

fn sarif(engine: &Engine, findings: &[OutFinding]) -> serde_json::Value {
    let mut used: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
    used.sort_unstable();
    used.dedup();
    let index: BTreeMap<&str, usize> = used.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let rules: Vec<serde_json::Value> = used
        .iter()
        .map(|id| {
            let r = engine.rules().iter().find(|r| &*r.id == *id);
            let (desc, sev, cat) = r
                .map(|r| (r.description.clone(), r.severity, r.category))
                .unwrap_or_else(|| (String::new(), Severity::Medium, Category::Custom));
            serde_json::json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": if desc.is_empty() { id.to_string() } else { desc.clone() }},
                "fullDescription": {"text": if desc.is_empty() { id.to_string() } else { desc }},
                "defaultConfiguration": {"level": sarif_level(sev)},
                "properties": {"tags": ["security", cat.as_str()], "security-severity": security_severity(sev)},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut msg = format!("{} ({}): {}", f.rule, f.category, f.preview);
            if let Some(d) = &f.detail {
                msg.push_str(&format!(" — {}", sanitize(d)));
            }
            serde_json::json!({
                "ruleId": f.rule,
                "ruleIndex": index.get(f.rule.as_str()).copied().unwrap_or(0),
                "level": sarif_level(f.severity),
                "message": {"text": msg},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(&f.path)},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }],
                "partialFingerprints": {"airlockFingerprint/v1": f.fingerprint},
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "airlock",
                "informationUri": "https://example.invalid/airlock",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}
