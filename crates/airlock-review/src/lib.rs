//! Static security review of agent packages and executables (`airlock review`).
//!
//! What it does: reads an npm package (fetched with the machine's npm, never installed), a local
//! `.tgz`, a directory, a JavaScript file or a native executable into memory with safety caps;
//! recovers the JavaScript embedded in Bun standalone executables and Node single-executable
//! applications; parses every JavaScript file once with oxc and reports capabilities (network,
//! process execution, dynamic code, credential stores, telemetry and remote-config SDKs,
//! environment fingerprinting), hosts classified from `rules/hosts.toml`, strings recovered from
//! obfuscated constant expressions, hidden text (the shared engine's covert-Unicode rules, and
//! code choosing look-alike characters by a condition), embedded secrets, and chains (an
//! environment read flowing into generated text or a request; a credential store next to a
//! network send). A verdict (approve / review / ban) comes from rules in `rules/review.toml`.
//! [`diff`] compares two reports.
//!
//! What it does not do: it never runs the reviewed code or its install scripts, never writes
//! package members to disk, and does not resolve the dependency tree (only the package itself
//! and its platform binary from `optionalDependencies`). Data flow is best effort within a
//! function and its enclosing scopes, by name; it is a reviewer's aid, not a proof.

mod collect;
pub mod diff;
mod engine;
mod fold;
mod js;
mod lookalike;
pub mod model;
pub mod native;
pub mod npm;
pub mod render;
pub mod rules;
pub mod unpack;

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::Digest;

pub use diff::{Diff, diff};
pub use model::*;
pub use rules::{HostClasses, ReviewRules};
pub use unpack::Limits;

use crate::collect::Collector;

/// Errors that stop a review. Problems with single members are notes, not errors.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Archive { origin: String, message: String },
    #[error("{file}: {message}")]
    Rules { file: String, message: String },
    #[error("fetching npm:{spec}: {message}")]
    Fetch { spec: String, message: String },
    #[error("{0}")]
    Input(String),
}

/// What to review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `npm:SPEC`, fetched with the machine's npm.
    Npm(String),
    /// A `.tgz`, a directory, a JavaScript file or an executable.
    Path(PathBuf),
}

impl Input {
    /// `npm:…` is an npm spec; anything else a path.
    pub fn parse(s: &str) -> Input {
        match s.strip_prefix("npm:") {
            Some(spec) => Input::Npm(spec.to_string()),
            None => Input::Path(PathBuf::from(s)),
        }
    }
}

/// Called with a short message at each long step (fetch, unpack, parse).
pub type Progress<'p> = &'p (dyn Fn(&str) + Sync);

/// Review options.
pub struct Options<'p> {
    pub limits: Limits,
    /// Replacement for the built-in rules/review.toml: (text, origin for messages).
    pub rules: Option<(String, String)>,
    /// Replacement for the built-in rules/hosts.toml.
    pub hosts: Option<(String, String)>,
    /// Follow `optionalDependencies` to this platform's package when fetching from npm.
    pub platform: Option<String>,
    /// The npm executable.
    pub npm: String,
    pub progress: Option<Progress<'p>>,
}

/// The platform followed by default.
pub const DEFAULT_PLATFORM: &str = "linux-x64";

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            rules: None,
            hosts: None,
            platform: Some(DEFAULT_PLATFORM.to_string()),
            npm: "npm".into(),
            progress: None,
        }
    }
}

impl Options<'_> {
    fn say(&self, m: &str) {
        tracing::debug!(step = m, "review");
        if let Some(p) = self.progress {
            p(m);
        }
    }

    fn load_rules(&self) -> Result<(ReviewRules, HostClasses), ReviewError> {
        let rules = match &self.rules {
            Some((t, o)) => ReviewRules::parse(t, o)?,
            None => ReviewRules::builtin()?,
        };
        let hosts = match &self.hosts {
            Some((t, o)) => HostClasses::parse(t, o)?,
            None => HostClasses::builtin()?,
        };
        Ok((rules, hosts))
    }
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// Review one input.
pub fn review(input: &Input, opts: &Options<'_>) -> Result<Report, ReviewError> {
    let started = Instant::now();
    let (rules, hosts) = opts.load_rules()?;
    let scanner = engine::Scanner::shared();
    let engine_error = scanner.as_ref().err().cloned();
    let mut col = Collector::new(rules.clone(), hosts, scanner.ok());
    if let Some(e) = engine_error {
        col.notes.push(format!(
            "detection engine unavailable ({e}): secrets and covert-Unicode rules were not applied"
        ));
    }
    let mut components = Vec::new();
    let target = match input {
        Input::Npm(spec) => {
            review_npm(&mut col, spec, opts, &mut components)?;
            format!("npm:{spec}")
        }
        Input::Path(p) => {
            review_path(&mut col, p, opts, &mut components)?;
            p.display().to_string()
        }
    };
    col.finish_stats();
    let mut stats = std::mem::take(&mut col.stats);
    stats.files_total = components.iter().map(|c: &Component| c.files).sum();
    stats.elapsed_ms = started.elapsed().as_millis() as u64;
    let capabilities = col.take_capabilities();
    let host_list = col.take_hosts();
    let mut findings = std::mem::take(&mut col.findings);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    let mut report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        tool: format!("airlock-review {}", env!("CARGO_PKG_VERSION")),
        target,
        components,
        capabilities,
        hosts: host_list,
        decoded: std::mem::take(&mut col.decoded),
        findings,
        notes: std::mem::take(&mut col.notes),
        stats,
        verdict: Verdict {
            decision: Decision::Approve,
            reasons: vec![],
        },
    };
    report.verdict = rules.decide(&report);
    Ok(report)
}

fn review_npm(
    col: &mut Collector,
    spec: &str,
    opts: &Options<'_>,
    comps: &mut Vec<Component>,
) -> Result<(), ReviewError> {
    let tmp = tempfile::tempdir().map_err(|e| ReviewError::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    opts.say(&format!("fetching npm:{spec}"));
    let packed = npm::pack(&opts.npm, spec, tmp.path(), opts.limits.fetch_timeout)?;
    let main = review_tgz_file(col, &packed.path, &format!("npm:{spec}"), "npm", opts)?;
    let deps = main.optional_dependencies.clone();
    comps.push(main);
    if let Some(platform) = &opts.platform
        && let Some((name, version)) = npm::platform_dependency(&deps, platform)
    {
        let pspec = format!("{name}@{version}");
        opts.say(&format!("fetching platform package npm:{pspec}"));
        match npm::pack(&opts.npm, &pspec, tmp.path(), opts.limits.fetch_timeout) {
            Ok(p) => {
                let c = review_tgz_file(col, &p.path, &format!("npm:{pspec}"), "npm", opts)?;
                comps.push(c);
            }
            Err(e) => col
                .notes
                .push(format!("platform package {pspec} not reviewed: {e}")),
        }
    }
    Ok(())
}

fn read_capped(path: &Path, limits: &Limits) -> Result<Vec<u8>, ReviewError> {
    let md = std::fs::metadata(path).map_err(|e| ReviewError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if md.len() > limits.max_file_bytes {
        return Err(ReviewError::Input(format!(
            "{}: {} bytes is over the cap of {}",
            path.display(),
            md.len(),
            limits.max_file_bytes
        )));
    }
    std::fs::read(path).map_err(|e| ReviewError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn review_tgz_file(
    col: &mut Collector,
    path: &Path,
    source: &str,
    kind: &str,
    opts: &Options<'_>,
) -> Result<Component, ReviewError> {
    let data = read_capped(path, &opts.limits)?;
    opts.say(&format!("unpacking {source}"));
    let un = unpack::read_tgz(source, &data, &opts.limits)?;
    let mut comp = Component {
        kind: kind.to_string(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        version: None,
        source: source.to_string(),
        sha256: Some(sha256(&data)),
        files: 0,
        bytes: 0,
        install_scripts: vec![],
        optional_dependencies: vec![],
        embedded_format: None,
    };
    drop(data);
    review_members(col, &mut comp, un, opts);
    Ok(comp)
}

fn review_path(
    col: &mut Collector,
    p: &Path,
    opts: &Options<'_>,
    comps: &mut Vec<Component>,
) -> Result<(), ReviewError> {
    let md = std::fs::metadata(p).map_err(|e| ReviewError::Io {
        path: p.to_path_buf(),
        source: e,
    })?;
    let source = p.display().to_string();
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.clone());
    let mut comp = Component {
        kind: String::new(),
        name,
        version: None,
        source: source.clone(),
        sha256: None,
        files: 0,
        bytes: 0,
        install_scripts: vec![],
        optional_dependencies: vec![],
        embedded_format: None,
    };
    if md.is_dir() {
        opts.say(&format!("reading {source}"));
        comp.kind = "directory".into();
        let un = unpack::read_dir(p, &opts.limits)?;
        review_members(col, &mut comp, un, opts);
        comps.push(comp);
        return Ok(());
    }
    let data = read_capped(p, &opts.limits)?;
    if data.starts_with(&[0x1f, 0x8b]) {
        comps.push(review_tgz_file(col, p, &source, "tarball", opts)?);
        return Ok(());
    }
    comp.sha256 = Some(sha256(&data));
    comp.files = 1;
    comp.bytes = data.len() as u64;
    comp.kind = if native::is_executable(&data) {
        "executable".into()
    } else {
        "file".into()
    };
    let un = unpack::Unpacked {
        members: vec![unpack::Member {
            path: comp.name.clone(),
            data,
        }],
        ..Default::default()
    };
    review_members(col, &mut comp, un, opts);
    comps.push(comp);
    Ok(())
}

fn is_js_name(n: &str) -> bool {
    let l = n.to_ascii_lowercase();
    [".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx"]
        .iter()
        .any(|e| l.ends_with(e))
        && !l.ends_with(".d.ts")
}

const INSTALL_SCRIPTS: &[&str] = &[
    "preinstall",
    "install",
    "postinstall",
    "prepare",
    "preuninstall",
    "uninstall",
    "postuninstall",
];

fn package_json(col: &mut Collector, comp: &mut Component, path: &str, data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        col.notes.push(format!("{path}: not valid JSON"));
        return;
    };
    if let Some(n) = v.get("name").and_then(|x| x.as_str()) {
        comp.name = n.to_string();
    }
    comp.version = v
        .get("version")
        .and_then(|x| x.as_str())
        .map(str::to_string);
    if let Some(deps) = v.get("optionalDependencies").and_then(|x| x.as_object()) {
        comp.optional_dependencies = deps
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
    }
    let text = String::from_utf8_lossy(data);
    let ctx = collect::FileCtx::new(path.to_string(), &text);
    if let Some(scripts) = v.get("scripts").and_then(|x| x.as_object()) {
        for s in INSTALL_SCRIPTS {
            if let Some(cmd) = scripts.get(*s).and_then(|x| x.as_str()) {
                comp.install_scripts
                    .push((s.to_string(), cmd.chars().take(300).collect()));
                let at = text.find(&format!("\"{s}\"")).unwrap_or(0);
                let ev = col.evidence(&ctx, at, at + s.len() + 2);
                col.cap(
                    "install.script",
                    "npm install scripts (never run by airlock)",
                    &ctx,
                    at,
                    at + s.len() + 2,
                );
                let sev = if *s == "prepare" {
                    Severity::Low
                } else {
                    Severity::Medium
                };
                col.finding(
                    "install.script",
                    sev,
                    "npm install script",
                    format!(
                        "`{s}` runs on install: {}",
                        collect::escape_invisible(&cmd.chars().take(200).collect::<String>())
                    ),
                    vec![ev],
                );
            }
        }
    }
    // Hosts and markers named in the manifest (homepage, repository, bugs...).
    let strings: Vec<String> = ["homepage"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
        .collect();
    for s in strings {
        if let Some(at) = text.find(&s) {
            col.on_string(&ctx, &s, at, at + s.len(), collect::Origin::Extracted);
        }
    }
}

fn source_map(col: &mut Collector, path: &str, data: &[u8], opts: &Options<'_>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        col.notes
            .push(format!("{path}: source map is not valid JSON"));
        return;
    };
    let (Some(sources), Some(contents)) = (
        v.get("sources").and_then(|x| x.as_array()),
        v.get("sourcesContent").and_then(|x| x.as_array()),
    ) else {
        return;
    };
    for (i, c) in contents.iter().enumerate() {
        let Some(text) = c.as_str() else { continue };
        let src = sources.get(i).and_then(|s| s.as_str()).unwrap_or("source");
        // Third-party sources inside the map are reviewed too: they ship in the bundle.
        let name = format!("{path}!/{}", src.replace("../", ""));
        col.cap(
            "source_map.original_sources",
            "Source maps with original sources (reviewed too)",
            &collect::FileCtx::new(path.to_string(), ""),
            0,
            0,
        );
        js::analyse(col, name, text, opts.limits.max_parse_bytes);
    }
}

fn review_native(
    col: &mut Collector,
    comp: &mut Component,
    path: &str,
    data: &[u8],
    opts: &Options<'_>,
) {
    opts.say(&format!("extracting {path}"));
    let ex = native::extract(data);
    if comp.embedded_format.is_none() {
        comp.embedded_format = Some(ex.format.to_string());
    }
    for n in &ex.notes {
        col.notes.push(format!("{path}: {n}"));
    }
    let total = ex.modules.len();
    for (i, m) in ex.modules.into_iter().enumerate() {
        let name = format!("{path}!{}", m.name);
        if ex.format == "strings" {
            opts.say(&format!("scanning strings of {path}"));
            let text = String::from_utf8_lossy(&m.data);
            js::analyse_strings(col, name, &text);
            continue;
        }
        let lower = m.name.to_ascii_lowercase();
        if lower.ends_with(".node") {
            let ctx = collect::FileCtx::new(name.clone(), "");
            col.cap("native.addon", "Loads native addons", &ctx, 0, 0);
            continue;
        }
        let looks_text = !m.data.iter().take(4096).any(|&b| b == 0);
        if is_js_name(&m.name) || (looks_text && !lower.contains('.')) || ex.format == "node-sea" {
            opts.say(&format!(
                "parsing {name} ({}/{total}, {} KiB)",
                i + 1,
                m.data.len() / 1024
            ));
            let text = String::from_utf8_lossy(&m.data);
            js::analyse(col, name, &text, opts.limits.max_parse_bytes);
        } else if lower.ends_with(".map") {
            source_map(col, &name, &m.data, opts);
        } else if lower.ends_with(".wasm") {
            let ctx = collect::FileCtx::new(name.clone(), "");
            col.cap("code.wasm", "WebAssembly modules", &ctx, 0, 0);
        }
    }
}

fn review_members(
    col: &mut Collector,
    comp: &mut Component,
    un: unpack::Unpacked,
    opts: &Options<'_>,
) {
    comp.files = un.members.len() as u64;
    comp.bytes = un
        .bytes
        .max(un.members.iter().map(|m| m.data.len() as u64).sum());
    col.notes.extend(un.notes);
    let prefix = if comp.kind == "npm" {
        format!("{}/", comp.source.trim_start_matches("npm:"))
    } else {
        String::new()
    };
    for (raw, why) in un.refused {
        let ctx = collect::FileCtx::new(format!("{prefix}{}", collect::escape_invisible(&raw)), "");
        let ev = col.evidence(&ctx, 0, 0);
        col.finding(
            "package.unsafe_member",
            Severity::High,
            "Unsafe archive member",
            format!(
                "member {:?}: {why}; it was not extracted",
                collect::escape_invisible(&raw)
            ),
            vec![ev],
        );
    }
    // package.json first: the component's name and version.
    let mut members = un.members;
    members.sort_by_key(|m| (m.path != "package.json", m.path.clone()));
    let total = members.len();
    for (i, m) in members.into_iter().enumerate() {
        let name = format!("{prefix}{}", m.path);
        let lower = m.path.to_ascii_lowercase();
        if m.path == "package.json" {
            package_json(col, comp, &name, &m.data);
        } else if native::is_executable(&m.data) && !lower.ends_with(".node") {
            review_native(col, comp, &name, &m.data, opts);
        } else if lower.ends_with(".node") {
            let ctx = collect::FileCtx::new(name.clone(), "");
            col.cap("native.addon", "Loads native addons", &ctx, 0, 0);
        } else if is_js_name(&m.path) {
            if m.data.len() > 256 * 1024 {
                opts.say(&format!(
                    "parsing {name} ({}/{total}, {} KiB)",
                    i + 1,
                    m.data.len() / 1024
                ));
            }
            let text = String::from_utf8_lossy(&m.data);
            js::analyse(col, name, &text, opts.limits.max_parse_bytes);
        } else if lower.ends_with(".map") {
            source_map(col, &name, &m.data, opts);
        } else if lower.ends_with(".wasm") {
            let ctx = collect::FileCtx::new(name.clone(), "");
            col.cap("code.wasm", "WebAssembly modules", &ctx, 0, 0);
        }
    }
}
