//! Finding installed AI coding agents on a machine and judging them against policy.
//!
//! [`scan`] walks a file tree (this machine's `/`, or a mounted image given as the root) for the
//! agents in the catalogue (`rules/agents.toml`): npm global installs in every common layout
//! (system, `~/.npm-global`, nvm, volta, pnpm, fnm, bun, asdf, mise), executables on `PATH` and
//! in native-installer locations, editor extensions (VS Code, VS Code Server, Insiders, Cursor,
//! Windsurf, VSCodium), JetBrains IDE plugins (the catalogue's `jetbrains_plugins`, identified
//! by each plugin jar's `META-INF/plugin.xml`, see [`jetbrains`]), agent config directories
//! with the settings in them that route traffic, and running processes (`/proc`, or a fake proc
//! directory in tests). Each finding gets its version, how the agent reaches its model
//! ([`routing::Via`]), the advisories covering that version and the verdict of the same
//! [`airlock_policy::Policy`] the gateway enforces.
//!
//! What it does not do: write anything, follow a symbolic link out of the scanned tree (see
//! [`root`]), touch the network, or run a found tool — except `<tool> --version` when the
//! caller asks for it, the catalogue marks it `version_safe`, and the root is this machine's
//! own `/`. It never reports a command line (it may hold prompt text) or an environment value
//! other than an agent's base URL or proxy, stripped of credentials.

pub mod jetbrains;
pub mod render;
pub mod root;
pub mod routing;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock_policy::{Agent, Catalogue, Decision, Identity, Policy, Subject};
use serde::Serialize;

pub use root::RootFs;
pub use routing::{AirlockAddrs, Routing, Via};

/// Version of the JSON report's schema (docs/inventory.md). Bumped only on breaking changes.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest package.json read.
pub const MAX_PACKAGE_JSON_BYTES: u64 = 1024 * 1024;
/// Bytes of a process command line read.
pub const MAX_CMDLINE_BYTES: u64 = 64 * 1024;
/// Bytes of a process environment read.
pub const MAX_ENVIRON_BYTES: u64 = 256 * 1024;
/// Processes looked at.
pub const MAX_PROCESSES: usize = 65_536;
/// Paths one glob pattern expands to.
pub const MAX_GLOB_MATCHES: usize = 1_000;
/// How long `<tool> --version` may run.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors that stop a scan before it starts.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot use scan root {path}: {source}")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--run-version runs found tools and is only allowed when the scan root is / (got {0})")]
    RunVersionOutsideRoot(String),
}

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// The tree to scan (`/` for this machine).
    pub root: PathBuf,
    /// Home directories, as paths on the scanned machine.
    pub homes: Vec<PathBuf>,
    /// Also scan every `/home/*` and `/root`.
    pub all_users: bool,
    /// Directories searched for executables, as paths on the scanned machine.
    pub path_dirs: Vec<PathBuf>,
    /// A proc directory on this machine; `None` means `/proc` when the root is `/`, else no
    /// process scan.
    pub proc_dir: Option<PathBuf>,
    /// Skip the process scan.
    pub no_processes: bool,
    /// Run `<tool> --version` when no version is found on disk (only with root `/`).
    pub run_version: bool,
    /// Where Airlock is reached.
    pub airlock: AirlockAddrs,
    /// The user reported at the top of the report; default: the single home's owner.
    pub user: Option<String>,
}

/// How a finding was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Npm,
    Binary,
    Native,
    Extension,
    Config,
    Process,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Npm => "npm",
            Kind::Binary => "binary",
            Kind::Native => "native",
            Kind::Extension => "extension",
            Kind::Config => "config",
            Kind::Process => "process",
        }
    }
}

/// The JetBrains IDE a plugin was found in, from its configuration directory's name
/// (`IntelliJIdea2024.3`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ide {
    /// `IntelliJIdea`, `IdeaIC`, `PyCharm`, `GoLand`, `AndroidStudio` ...
    pub product: String,
    /// The IDE's major version, e.g. `2024.3`.
    pub version: String,
}

/// The policy's answer for one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub allow: bool,
    /// What decided: a policy rule id, an advisory id, `unknown_tools` or `default`.
    pub rule: String,
    /// For the person; empty when allowed.
    pub message: String,
}

/// One installed agent, extension, config directory or process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Catalogue id, e.g. `claude-code`.
    pub tool: String,
    /// Display name, e.g. `Claude Code`.
    pub name: String,
    pub version: Option<String>,
    /// `package.json`, `path` (a versioned file or directory name), `plugin.xml` (a JetBrains
    /// plugin's descriptor) or `executed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_source: Option<String>,
    pub kind: Kind,
    /// The path on the scanned machine.
    pub location: String,
    /// The owner of the home directory it was found in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// npm package name, editor extension id or JetBrains plugin id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// `npm`, `pnpm`, `volta`, `bun` for npm findings; the editor for extensions (`jetbrains`
    /// for JetBrains plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// JetBrains plugins: the IDE product and version it is installed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ide: Option<Ide>,
    pub routing: Routing,
    /// Advisories covering this version.
    pub advisories: Vec<String>,
    pub verdict: Verdict,
    /// Commands that would remove or update the tool (denied findings only; never run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remediation: Vec<String>,
}

/// A problem that did not stop the scan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ScanError {
    pub path: String,
    pub message: String,
}

/// Counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub findings: usize,
    pub denied: usize,
    pub errors: usize,
}

/// The whole report (`--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub machine_id: String,
    pub hostname: String,
    pub user: String,
    pub scanned_at: String,
    pub root: String,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    pub errors: Vec<ScanError>,
}

impl Report {
    /// Whether any finding is denied.
    pub fn has_violations(&self) -> bool {
        self.findings.iter().any(|f| !f.verdict.allow)
    }
}

/// Scan and judge. `scanned_at` is written into the report as given (RFC 3339 UTC).
pub fn scan(
    opts: &ScanOptions,
    catalogue: &Catalogue,
    policy: &Policy,
    scanned_at: &str,
) -> Result<Report, InventoryError> {
    let fs = RootFs::new(&opts.root).map_err(|source| InventoryError::Root {
        path: opts.root.display().to_string(),
        source,
    })?;
    if opts.run_version && !fs.is_system_root() {
        return Err(InventoryError::RunVersionOutsideRoot(
            opts.root.display().to_string(),
        ));
    }
    let mut s = Scanner {
        fs,
        cat: catalogue,
        opts,
        homes: Vec::new(),
        raw: Vec::new(),
        errors: BTreeSet::new(),
        locations: BTreeSet::new(),
    };
    s.find_homes();
    let home_routing = s.read_routing();
    s.scan_npm();
    s.scan_native();
    s.scan_path();
    s.scan_extensions();
    s.scan_jetbrains();
    s.scan_configs();
    s.scan_processes();

    let mut findings: Vec<Finding> = Vec::with_capacity(s.raw.len());
    for raw in std::mem::take(&mut s.raw) {
        let routing = match (&raw.env_routing, raw.home) {
            (Some(r), _) => r.clone(),
            (None, Some(h)) => home_routing[h]
                .get(&raw.agent.id)
                .cloned()
                .unwrap_or_else(Routing::unknown),
            (None, None) => system_routing(&home_routing, &raw.agent.id),
        };
        let user = raw.home.map(|h| s.homes[h].user.clone());
        findings.push(judge(raw, routing, user, policy));
    }
    findings.sort_by(|a, b| {
        (&a.tool, a.kind, &a.location, a.pid).cmp(&(&b.tool, b.kind, &b.location, b.pid))
    });
    findings.dedup_by(|a, b| {
        a.tool == b.tool && a.kind == b.kind && a.location == b.location && a.pid == b.pid
    });

    let (machine_id, hostname) = machine_facts(&s.fs);
    let user = opts
        .user
        .clone()
        .or_else(|| (s.homes.len() == 1).then(|| s.homes[0].user.clone()))
        .unwrap_or_else(|| "unknown".to_string());
    let errors: Vec<ScanError> = s.errors.into_iter().collect();
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        machine_id,
        hostname,
        user,
        scanned_at: scanned_at.to_string(),
        root: opts.root.display().to_string(),
        summary: Summary {
            findings: findings.len(),
            denied: findings.iter().filter(|f| !f.verdict.allow).count(),
            errors: errors.len(),
        },
        findings,
        errors,
    })
}

/// The routing of a system-wide install: the users' routing when every scanned home agrees,
/// else unknown.
fn system_routing(homes: &[BTreeMap<String, Routing>], agent: &str) -> Routing {
    let mut all = homes.iter().filter_map(|h| h.get(agent));
    match all.next() {
        Some(first) if all.all(|r| r == first) => first.clone(),
        _ => Routing::unknown(),
    }
}

fn judge(raw: Raw<'_>, routing: Routing, user: Option<String>, policy: &Policy) -> Finding {
    // A JetBrains plugin's version is not the agent's: advisories and version-conditioned rules
    // are written against the agent's releases, so the plugin is judged as "version unknown".
    let judged_version = raw.version.clone().filter(|_| raw.agent_version);
    let identity = Identity {
        agent: Some(raw.agent.id.clone()),
        name: Some(raw.agent.name.clone()),
        version: judged_version.clone(),
        signal: format!("inventory:{}", raw.kind.as_str()),
    };
    let decision: Decision = policy.decide(&Subject {
        user: user.as_deref(),
        team: None,
        identity: &identity,
        model: None,
    });
    let advisories: Vec<String> = judged_version
        .as_deref()
        .map(|v| {
            policy
                .advisories()
                .matching(&raw.agent.id, v)
                .into_iter()
                .map(|a| a.id.clone())
                .collect()
        })
        .unwrap_or_default();
    let fixed = decision.advisory.as_deref().and_then(|id| {
        policy
            .advisories()
            .all()
            .iter()
            .find(|a| a.id == id)
            .and_then(|a| a.fixed.clone())
    });
    let remediation = if decision.allow {
        Vec::new()
    } else {
        render::remediation(&raw.remedy, raw.agent, fixed.as_deref())
    };
    Finding {
        tool: raw.agent.id.clone(),
        name: raw.agent.name.clone(),
        version: raw.version,
        version_source: raw.version_source.map(str::to_string),
        kind: raw.kind,
        location: raw.location,
        user,
        pid: raw.pid,
        package: raw.package,
        manager: raw.manager,
        ide: raw.ide,
        routing,
        advisories,
        verdict: Verdict {
            allow: decision.allow,
            rule: decision.rule,
            message: decision.message,
        },
        remediation,
    }
}

/// How a finding could be removed; turned into commands by [`render::remediation`].
#[derive(Debug, Clone)]
pub(crate) enum Remedy {
    Npm {
        manager: &'static str,
        prefix: String,
        package: String,
    },
    Path {
        path: String,
        dir: bool,
    },
    /// A launcher belonging to an npm package (removed with the package).
    NpmOwned {
        path: String,
        package_dir: String,
    },
    Extension {
        cli: &'static str,
        id: String,
    },
    Config {
        path: String,
    },
    Process {
        pid: u32,
    },
    /// A JetBrains plugin directory or jar, in the named IDE.
    JetBrains {
        path: String,
        dir: bool,
        ide: String,
    },
}

struct Raw<'a> {
    agent: &'a Agent,
    version: Option<String>,
    version_source: Option<&'static str>,
    kind: Kind,
    location: String,
    home: Option<usize>,
    pid: Option<u32>,
    package: Option<String>,
    manager: Option<String>,
    remedy: Remedy,
    env_routing: Option<Routing>,
    /// The JetBrains IDE a plugin was found in.
    ide: Option<Ide>,
    /// Whether `version` is the agent's own version, so that advisories and version-conditioned
    /// rules apply to it. A JetBrains plugin's version is its own release line, so it is not.
    agent_version: bool,
}

struct Home {
    vpath: PathBuf,
    user: String,
}

struct Scanner<'a> {
    fs: RootFs,
    cat: &'a Catalogue,
    opts: &'a ScanOptions,
    homes: Vec<Home>,
    raw: Vec<Raw<'a>>,
    errors: BTreeSet<ScanError>,
    /// (tool, location) already reported, so PATH does not repeat a native install.
    locations: BTreeSet<(String, String)>,
}

/// Global npm layouts: pattern (`~/` = each home), manager.
const SYSTEM_NPM: &[(&str, &str)] = &[
    ("/usr/lib/node_modules", "npm"),
    ("/usr/local/lib/node_modules", "npm"),
    ("/opt/homebrew/lib/node_modules", "npm"),
];
const HOME_NPM: &[(&str, &str)] = &[
    ("~/.npm-global/lib/node_modules", "npm"),
    ("~/.npm-packages/lib/node_modules", "npm"),
    ("~/.local/lib/node_modules", "npm"),
    ("~/.nvm/versions/node/*/lib/node_modules", "npm"),
    (
        "~/.local/share/fnm/node-versions/*/installation/lib/node_modules",
        "npm",
    ),
    (
        "~/.fnm/node-versions/*/installation/lib/node_modules",
        "npm",
    ),
    ("~/.asdf/installs/nodejs/*/lib/node_modules", "npm"),
    (
        "~/.local/share/mise/installs/node/*/lib/node_modules",
        "npm",
    ),
    ("~/.volta/tools/image/node/*/lib/node_modules", "npm"),
    ("~/.volta/tools/image/packages/*/lib/node_modules", "volta"),
    (
        "~/.volta/tools/image/packages/*/*/lib/node_modules",
        "volta",
    ),
    ("~/.local/share/pnpm/global/*/node_modules", "pnpm"),
    ("~/.bun/install/global/node_modules", "bun"),
];
/// Editor extension directories: path under home, editor, its command-line tool.
const EDITORS: &[(&str, &str, &str)] = &[
    ("~/.vscode/extensions", "vscode", "code"),
    ("~/.vscode-server/extensions", "vscode-server", "code"),
    (
        "~/.vscode-insiders/extensions",
        "vscode-insiders",
        "code-insiders",
    ),
    ("~/.vscode-oss/extensions", "vscodium", "codium"),
    ("~/.cursor/extensions", "cursor", "cursor"),
    ("~/.cursor-server/extensions", "cursor-server", "cursor"),
    ("~/.windsurf/extensions", "windsurf", "windsurf"),
    (
        "~/.windsurf-server/extensions",
        "windsurf-server",
        "windsurf",
    ),
];
/// JetBrains configuration roots under a home: the directory holding one directory per IDE
/// (`IntelliJIdea2024.3`), the product prefix required (Google's directory holds Android Studio
/// among others), and where the plugins are inside an IDE's directory.
const JETBRAINS: &[(&str, &str, &str)] = &[
    // Linux, 2020.1 and later: every subdirectory of the IDE's directory is a plugin.
    ("~/.local/share/JetBrains", "", ""),
    ("~/.local/share/Google", "AndroidStudio", ""),
    // macOS
    ("~/Library/Application Support/JetBrains", "", "plugins"),
    (
        "~/Library/Application Support/Google",
        "AndroidStudio",
        "plugins",
    ),
    // Windows, with the home as `C:\Users\<user>`
    ("~/AppData/Roaming/JetBrains", "", "plugins"),
    ("~/AppData/Roaming/Google", "AndroidStudio", "plugins"),
];
/// Platform suffixes of extension directory names.
const PLATFORMS: &[&str] = &[
    "linux-x64",
    "linux-arm64",
    "linux-armhf",
    "alpine-x64",
    "alpine-arm64",
    "darwin-x64",
    "darwin-arm64",
    "win32-x64",
    "win32-arm64",
    "web",
    "universal",
];

impl<'a> Scanner<'a> {
    fn error(&mut self, path: &Path, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        if matches!(e.kind(), NotFound | NotADirectory) {
            return;
        }
        self.errors.insert(ScanError {
            path: path.display().to_string(),
            message: e.to_string(),
        });
    }

    fn list(&mut self, dir: &Path) -> Vec<String> {
        match self.fs.list_dir(dir) {
            Ok((names, cut)) => {
                if cut {
                    self.errors.insert(ScanError {
                        path: dir.display().to_string(),
                        message: format!(
                            "more than {} entries; the rest were not looked at",
                            root::MAX_DIR_ENTRIES
                        ),
                    });
                }
                names
            }
            Err(e) => {
                self.error(dir, &e);
                Vec::new()
            }
        }
    }

    /// Expand `*` components (one directory level each).
    fn glob(&mut self, pattern: &Path) -> Vec<PathBuf> {
        let mut acc = vec![PathBuf::from("/")];
        for comp in pattern
            .components()
            .skip_while(|c| matches!(c, std::path::Component::RootDir))
        {
            let c = comp.as_os_str();
            let mut next = Vec::new();
            for prefix in &acc {
                if c == "*" {
                    if !self.fs.is_dir(prefix) {
                        continue;
                    }
                    for name in self.list(prefix) {
                        if next.len() < MAX_GLOB_MATCHES {
                            next.push(prefix.join(name));
                        }
                    }
                } else {
                    next.push(prefix.join(c));
                }
            }
            acc = next;
        }
        acc
    }

    fn find_homes(&mut self) {
        let mut seen = BTreeSet::new();
        let mut homes: Vec<PathBuf> = self.opts.homes.iter().map(|h| normalise(h)).collect();
        if self.opts.all_users {
            for name in self.list(Path::new("/home")) {
                homes.push(PathBuf::from("/home").join(name));
            }
            homes.push(PathBuf::from("/root"));
        }
        for h in homes {
            if !self.fs.is_dir(&h) || !seen.insert(h.clone()) {
                continue;
            }
            let user = if h == Path::new("/root") {
                "root".to_string()
            } else {
                h.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "root".to_string())
            };
            self.homes.push(Home { vpath: h, user });
        }
    }

    fn read_routing(&mut self) -> Vec<BTreeMap<String, Routing>> {
        let mut out = Vec::new();
        for i in 0..self.homes.len() {
            let home = self.homes[i].vpath.clone();
            let mut map = BTreeMap::new();
            for agent in self.cat.agents() {
                let settings = routing::read_settings(&self.fs, agent, &home);
                for (path, message) in &settings.errors {
                    self.errors.insert(ScanError {
                        path: path.clone(),
                        message: message.clone(),
                    });
                }
                map.insert(
                    agent.id.clone(),
                    routing::judge(&settings, agent, &self.opts.airlock),
                );
            }
            out.push(map);
        }
        out
    }

    fn push(&mut self, raw: Raw<'a>) {
        self.locations
            .insert((raw.agent.id.clone(), raw.location.clone()));
        self.raw.push(raw);
    }

    fn scan_npm(&mut self) {
        let mut dirs: Vec<(PathBuf, &'static str, Option<usize>)> = Vec::new();
        for (p, m) in SYSTEM_NPM {
            dirs.push((PathBuf::from(p), m, None));
        }
        for (hi, home) in self.homes.iter().enumerate() {
            for (p, m) in HOME_NPM {
                dirs.push((
                    airlock_policy::paths::expand_home(p, &home.vpath),
                    m,
                    Some(hi),
                ));
            }
        }
        for (pattern, manager, home) in dirs {
            for nm in self.glob(&pattern) {
                if !self.fs.is_dir(&nm) {
                    continue;
                }
                for agent in self.cat.agents() {
                    for pkg in &agent.npm_packages {
                        self.npm_package(agent, &nm, pkg, manager, home);
                    }
                }
            }
        }
    }

    fn npm_package(
        &mut self,
        agent: &'a Agent,
        nm: &Path,
        pkg: &str,
        manager: &'static str,
        home: Option<usize>,
    ) {
        if !valid_package_name(pkg) {
            return;
        }
        let dir = nm.join(pkg);
        if !self.fs.is_dir(&dir) {
            return;
        }
        let (name, version) = self
            .package_json(&dir.join("package.json"))
            .unwrap_or_default();
        if name.as_deref().is_some_and(|n| n != pkg) {
            return;
        }
        let prefix = match nm.parent() {
            Some(lib) if lib.file_name().is_some_and(|n| n == "lib") => {
                lib.parent().unwrap_or(lib).to_path_buf()
            }
            Some(p) => p.to_path_buf(),
            None => nm.to_path_buf(),
        };
        let has_version = version.is_some();
        self.push(Raw {
            agent,
            version,
            version_source: has_version.then_some("package.json"),
            kind: Kind::Npm,
            location: dir.display().to_string(),
            home,
            pid: None,
            package: Some(pkg.to_string()),
            manager: Some(manager.to_string()),
            remedy: Remedy::Npm {
                manager,
                prefix: prefix.display().to_string(),
                package: pkg.to_string(),
            },
            env_routing: None,
            ide: None,
            agent_version: true,
        });
    }

    /// `name` and `version` of a package.json (version only when it looks like one).
    fn package_json(&mut self, path: &Path) -> Option<(Option<String>, Option<String>)> {
        let bytes = match self.fs.read_bounded(path, MAX_PACKAGE_JSON_BYTES) {
            Ok(b) => b,
            Err(e) => {
                self.error(path, &e);
                return None;
            }
        };
        let v: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.errors.insert(ScanError {
                    path: path.display().to_string(),
                    message: format!("invalid JSON: {e}"),
                });
                return None;
            }
        };
        let name = v.get("name").and_then(|n| n.as_str()).map(str::to_string);
        let version = v
            .get("version")
            .and_then(|n| n.as_str())
            .filter(|s| is_version(s))
            .map(str::to_string);
        Some((name, version))
    }

    /// The version of an executable from what is around it: a versioned file or directory
    /// name, or the package.json of the npm package it belongs to. Also returns that package's
    /// directory.
    fn version_near(
        &mut self,
        agent: &Agent,
        r: &root::Resolved,
    ) -> (Option<String>, Option<&'static str>, Option<PathBuf>) {
        for p in [Some(r.vpath.as_path()), r.vpath.parent()]
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.file_name().and_then(|n| n.to_str())
                && is_version(n)
            {
                return (Some(n.to_string()), Some("path"), None);
            }
        }
        let pkgs: Vec<&String> = agent
            .npm_packages
            .iter()
            .chain(agent.platform_packages.values())
            .collect();
        for (depth, anc) in r.vpath.ancestors().skip(1).take(6).enumerate() {
            let pj = anc.join("package.json");
            if self.fs.is_file(&pj)
                && let Some((Some(name), version)) = self.package_json(&pj)
                && pkgs.iter().any(|p| **p == name)
            {
                let src = version.as_ref().map(|_| "package.json");
                return (version, src, Some(anc.to_path_buf()));
            }
            if depth == 0 {
                for pkg in agent.npm_packages.iter().filter(|p| valid_package_name(p)) {
                    let dir = anc.join("node_modules").join(pkg);
                    let pj = dir.join("package.json");
                    if self.fs.is_file(&pj)
                        && let Some((_, Some(version))) = self.package_json(&pj)
                    {
                        return (Some(version), Some("package.json"), None);
                    }
                }
            }
        }
        (None, None, None)
    }

    fn scan_native(&mut self) {
        for hi in 0..self.homes.len() {
            let home = self.homes[hi].vpath.clone();
            for agent in self.cat.agents() {
                for pattern in &agent.install_paths {
                    let p = airlock_policy::paths::expand_home(pattern, &home);
                    if !p.starts_with(&home) {
                        continue;
                    }
                    if p.file_name().is_some_and(|n| n == "*") {
                        let Some(dir) = p.parent() else { continue };
                        if !self.fs.is_dir(dir) {
                            continue;
                        }
                        for name in self.list(dir) {
                            let entry = dir.join(&name);
                            let is_dir = self.fs.is_dir(&entry);
                            let version = is_version(&name).then(|| name.clone());
                            self.push(Raw {
                                agent,
                                version_source: version.as_ref().map(|_| "path"),
                                version,
                                kind: Kind::Native,
                                location: entry.display().to_string(),
                                home: Some(hi),
                                pid: None,
                                package: None,
                                manager: None,
                                remedy: Remedy::Path {
                                    path: entry.display().to_string(),
                                    dir: is_dir,
                                },
                                env_routing: None,
                                ide: None,
                                agent_version: true,
                            });
                        }
                    } else {
                        let r = match self.fs.metadata(&p) {
                            Ok((r, md)) if md.is_file() => r,
                            Ok(_) => continue,
                            Err(e) => {
                                self.error(&p, &e);
                                continue;
                            }
                        };
                        self.executable(agent, &p, &r, Kind::Native, Some(hi));
                    }
                }
            }
        }
    }

    /// Record an executable (native install or on PATH).
    fn executable(
        &mut self,
        agent: &'a Agent,
        p: &Path,
        r: &root::Resolved,
        kind: Kind,
        home: Option<usize>,
    ) {
        let (mut version, mut source, pkg_dir) = self.version_near(agent, r);
        if version.is_none()
            && self.opts.run_version
            && self.fs.is_system_root()
            && agent.version_safe
            && !agent.version_args.is_empty()
            && let Some(v) = run_version(&r.host, agent)
        {
            version = Some(v);
            source = Some("executed");
        }
        let remedy = match pkg_dir {
            Some(d) => Remedy::NpmOwned {
                path: p.display().to_string(),
                package_dir: d.display().to_string(),
            },
            None => Remedy::Path {
                path: p.display().to_string(),
                dir: false,
            },
        };
        self.push(Raw {
            agent,
            version,
            version_source: source,
            kind,
            location: p.display().to_string(),
            home,
            pid: None,
            package: None,
            manager: None,
            remedy,
            env_routing: None,
            ide: None,
            agent_version: true,
        });
    }

    fn scan_path(&mut self) {
        let mut seen_targets = BTreeSet::new();
        let dirs: Vec<PathBuf> = self.opts.path_dirs.iter().map(|d| normalise(d)).collect();
        for dir in dirs {
            if !self.fs.is_dir(&dir) {
                continue;
            }
            for agent in self.cat.agents() {
                for bin in &agent.binaries {
                    if bin.is_empty() || bin.contains('/') {
                        continue;
                    }
                    let p = dir.join(bin);
                    let loc = p.display().to_string();
                    if self.locations.contains(&(agent.id.clone(), loc)) {
                        continue;
                    }
                    let r = match self.fs.metadata(&p) {
                        Ok((r, md)) if md.is_file() => r,
                        Ok(_) => continue,
                        Err(e) => {
                            self.error(&p, &e);
                            continue;
                        }
                    };
                    // /bin and /usr/bin are often one directory: report each target once.
                    let real_dir = self
                        .fs
                        .resolve(&dir)
                        .map(|d| d.vpath)
                        .unwrap_or(dir.clone());
                    if !seen_targets.insert((agent.id.clone(), real_dir.join(bin))) {
                        continue;
                    }
                    let home = self.homes.iter().position(|h| p.starts_with(&h.vpath));
                    self.executable(agent, &p, &r, Kind::Binary, home);
                }
            }
        }
    }

    fn scan_extensions(&mut self) {
        for hi in 0..self.homes.len() {
            let home = self.homes[hi].vpath.clone();
            for (rel, editor, cli) in EDITORS {
                let dir = airlock_policy::paths::expand_home(rel, &home);
                if !self.fs.is_dir(&dir) {
                    continue;
                }
                let obsolete = self.obsolete(&dir.join(".obsolete"));
                for name in self.list(&dir) {
                    if obsolete.contains(&name) {
                        continue;
                    }
                    let lower = name.to_ascii_lowercase();
                    for agent in self.cat.agents() {
                        for id in &agent.editor_extensions {
                            let id_l = id.to_ascii_lowercase();
                            let Some(rest) = lower
                                .strip_prefix(&id_l)
                                .and_then(|r| r.strip_prefix('-'))
                                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                            else {
                                continue;
                            };
                            let entry = dir.join(&name);
                            let mut version = self
                                .package_json(&entry.join("package.json"))
                                .and_then(|(_, v)| v);
                            let source = if version.is_some() {
                                "package.json"
                            } else {
                                "path"
                            };
                            if version.is_none() {
                                let mut v = &name[name.len() - rest.len()..];
                                for p in PLATFORMS {
                                    if let Some(s) =
                                        v.strip_suffix(p).and_then(|s| s.strip_suffix('-'))
                                    {
                                        v = s;
                                        break;
                                    }
                                }
                                version = is_version(v).then(|| v.to_string());
                            }
                            self.push(Raw {
                                agent,
                                version_source: version.as_ref().map(|_| source),
                                version,
                                kind: Kind::Extension,
                                location: entry.display().to_string(),
                                home: Some(hi),
                                pid: None,
                                package: Some(id.clone()),
                                manager: Some((*editor).to_string()),
                                remedy: Remedy::Extension {
                                    cli,
                                    id: id.clone(),
                                },
                                env_routing: None,
                                ide: None,
                                agent_version: true,
                            });
                        }
                    }
                }
            }
        }
    }

    /// JetBrains IDE plugins in every known configuration layout, identified by the `<id>` of
    /// their `META-INF/plugin.xml`, or by their directory name when that cannot be read.
    fn scan_jetbrains(&mut self) {
        if self
            .cat
            .agents()
            .iter()
            .all(|a| a.jetbrains_plugins.is_empty())
        {
            return;
        }
        for hi in 0..self.homes.len() {
            let home = self.homes[hi].vpath.clone();
            // (plugins directory, IDE product, IDE version)
            let mut plugin_dirs: Vec<(PathBuf, String, String)> = Vec::new();
            for (rel, prefix, sub) in JETBRAINS {
                let base = airlock_policy::paths::expand_home(rel, &home);
                if !self.fs.is_dir(&base) {
                    continue;
                }
                for name in self.list(&base) {
                    let Some((product, version)) = jetbrains::ide_dir(&name) else {
                        continue;
                    };
                    if !product.starts_with(prefix) {
                        continue;
                    }
                    let dir = if sub.is_empty() {
                        base.join(&name)
                    } else {
                        base.join(&name).join(sub)
                    };
                    plugin_dirs.push((dir, product, version));
                }
            }
            // Before 2020.1: `~/.IntelliJIdea2019.3/config/plugins` (Linux, Windows).
            if self.fs.is_dir(&home) {
                for name in self.list(&home) {
                    if !name.starts_with('.') {
                        continue;
                    }
                    if let Some((product, version)) = jetbrains::ide_dir(&name) {
                        plugin_dirs.push((
                            home.join(&name).join("config/plugins"),
                            product,
                            version,
                        ));
                    }
                }
            }
            for (dir, product, version) in plugin_dirs {
                if !self.fs.is_dir(&dir) {
                    continue;
                }
                let ide = Ide { product, version };
                for name in self.list(&dir) {
                    self.jetbrains_plugin(hi, &dir.join(&name), &name, &ide);
                }
            }
        }
    }

    /// One entry of a JetBrains plugins directory.
    fn jetbrains_plugin(&mut self, hi: usize, entry: &Path, name: &str, ide: &Ide) {
        let Ok((_, md)) = self.fs.metadata(entry) else {
            return;
        };
        let is_jar = md.is_file() && jetbrains::strip_jar(name).is_some();
        if !md.is_dir() && !is_jar {
            return;
        }
        let jars: Vec<PathBuf> = if is_jar {
            vec![entry.to_path_buf()]
        } else {
            let lib = entry.join("lib");
            if !self.fs.is_dir(&lib) {
                return;
            }
            // The plugin's own jar is usually named after its directory: try it first.
            let lower = name.to_ascii_lowercase();
            let mut jars: Vec<(bool, String)> = self
                .list(&lib)
                .into_iter()
                .filter(|n| jetbrains::strip_jar(n).is_some())
                .map(|n| (!n.to_ascii_lowercase().starts_with(&lower), n))
                .collect();
            jars.sort();
            jars.into_iter()
                .take(jetbrains::MAX_JARS_PER_PLUGIN)
                .map(|(_, n)| lib.join(n))
                .collect()
        };
        let mut descriptor = None;
        let mut problem: Option<(PathBuf, String)> = None;
        for jar in jars {
            let host = match self.fs.metadata(&jar) {
                Ok((r, md)) if md.is_file() => r.host,
                Ok(_) => continue,
                Err(e) => {
                    problem.get_or_insert((jar.clone(), e.to_string()));
                    continue;
                }
            };
            match jetbrains::read_jar(&host) {
                Ok(Some(d)) => {
                    descriptor = Some(d);
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    problem.get_or_insert((jar.clone(), e.to_string()));
                }
            }
        }
        // A descriptor without `<id>` is identified by its `<name>` (as the IDE does).
        let id = descriptor
            .as_ref()
            .and_then(|d| d.id.clone().or_else(|| d.name.clone()));
        // The descriptor decides; the directory or jar name only when there is none.
        let key = id
            .clone()
            .unwrap_or_else(|| jetbrains::fallback_name(name, is_jar));
        let Some(agent) = self.cat.agents().iter().find(|a| {
            a.jetbrains_plugins
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&key))
        }) else {
            if descriptor.is_none()
                && let Some((path, message)) = &problem
            {
                tracing::debug!(path = %path.display(), %message, "unreadable JetBrains plugin");
            }
            return;
        };
        if descriptor.is_none() {
            let (path, message) = problem.unwrap_or_else(|| {
                (
                    entry.to_path_buf(),
                    "no jar with META-INF/plugin.xml; version unknown".to_string(),
                )
            });
            self.errors.insert(ScanError {
                path: path.display().to_string(),
                message: format!("JetBrains plugin descriptor not read: {message}"),
            });
        }
        let version = descriptor.and_then(|d| d.version).filter(|v| is_version(v));
        let location = entry.display().to_string();
        self.push(Raw {
            agent,
            version_source: version.as_ref().map(|_| "plugin.xml"),
            version,
            kind: Kind::Extension,
            location: location.clone(),
            home: Some(hi),
            pid: None,
            package: Some(key),
            manager: Some("jetbrains".to_string()),
            remedy: Remedy::JetBrains {
                path: location,
                dir: !is_jar,
                ide: format!("{} {}", ide.product, ide.version),
            },
            env_routing: None,
            ide: Some(ide.clone()),
            agent_version: false,
        });
    }

    /// Extension directories VS Code has marked for deletion.
    fn obsolete(&mut self, path: &Path) -> BTreeSet<String> {
        let Ok(bytes) = self.fs.read_bounded(path, MAX_PACKAGE_JSON_BYTES) else {
            return BTreeSet::new();
        };
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(m)) => m
                .into_iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k)
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    fn scan_configs(&mut self) {
        for hi in 0..self.homes.len() {
            let home = self.homes[hi].vpath.clone();
            for agent in self.cat.agents() {
                let dirs = agent.config_dirs.iter().map(|d| (d, true));
                let files = agent.config_files.iter().map(|f| (f, false));
                let found = dirs.chain(files).find_map(|(p, want_dir)| {
                    let v = airlock_policy::paths::expand_home(p, &home);
                    if !v.starts_with(&home) {
                        return None;
                    }
                    let ok = if !want_dir {
                        self.fs.is_file(&v)
                    } else if is_editor_dir(&v, &home) {
                        // `~/.cursor` is Cursor's own directory too: only one of the agent's
                        // config files inside it shows the agent.
                        self.fs.is_dir(&v)
                            && agent.config_files.iter().any(|f| {
                                let f = airlock_policy::paths::expand_home(f, &home);
                                f.starts_with(&v) && self.fs.is_file(&f)
                            })
                    } else {
                        self.fs.is_dir(&v)
                    };
                    ok.then_some((v, want_dir))
                });
                let Some((path, is_dir)) = found else {
                    continue;
                };
                let loc = path.display().to_string();
                self.push(Raw {
                    agent,
                    version: None,
                    version_source: None,
                    kind: Kind::Config,
                    location: loc.clone(),
                    home: Some(hi),
                    pid: None,
                    package: None,
                    manager: None,
                    remedy: Remedy::Config { path: loc },
                    env_routing: None,
                    ide: None,
                    agent_version: true,
                });
                let _ = is_dir;
            }
        }
    }

    fn scan_processes(&mut self) {
        if self.opts.no_processes {
            return;
        }
        let proc_dir = match &self.opts.proc_dir {
            Some(p) => p.clone(),
            None if self.fs.is_system_root() => PathBuf::from("/proc"),
            None => return,
        };
        let entries = match std::fs::read_dir(&proc_dir) {
            Ok(e) => e,
            Err(e) => {
                self.error(&proc_dir, &e);
                return;
            }
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .take(MAX_PROCESSES)
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let pdir = proc_dir.join(pid.to_string());
            let cmdline =
                read_host_bounded(&pdir.join("cmdline"), MAX_CMDLINE_BYTES).unwrap_or_default();
            let argv: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .take(8)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let exe = std::fs::read_link(pdir.join("exe")).ok().map(|p| {
                let s = p.to_string_lossy().into_owned();
                PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
            });
            if argv.is_empty() && exe.is_none() {
                continue;
            }
            let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
            let exe_name = exe
                .as_ref()
                .and_then(|e| e.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            let argv0 = argv.first().map(|a| base(a));
            let mut hit: Option<(&'a Agent, PathBuf)> = None;
            for agent in self.cat.agents() {
                let by_name = |n: &Option<String>| {
                    n.as_ref()
                        .is_some_and(|n| agent.process_names.iter().any(|p| p == n))
                };
                if by_name(&exe_name) {
                    hit = exe.clone().map(|e| (agent, e));
                } else if by_name(&argv0) {
                    let loc = exe.clone().unwrap_or_else(|| PathBuf::from(&argv[0]));
                    hit = Some((agent, loc));
                } else if matches!(
                    argv0.as_deref().or(exe_name.as_deref()),
                    Some("node" | "nodejs" | "bun" | "deno")
                ) {
                    let script = argv.iter().skip(1).take(3).find(|a| {
                        agent
                            .npm_packages
                            .iter()
                            .any(|p| a.contains(&format!("/node_modules/{p}/")))
                    });
                    if let Some(s) = script {
                        hit = Some((agent, PathBuf::from(s)));
                    }
                }
                if hit.is_some() {
                    break;
                }
            }
            let Some((agent, loc)) = hit else { continue };
            let (version, source) = match self.fs.resolve(&loc) {
                Ok(r) => {
                    let (v, s, _) = self.version_near(agent, &r);
                    (v, s)
                }
                Err(_) => (None, None),
            };
            let env_routing = read_host_bounded(&pdir.join("environ"), MAX_ENVIRON_BYTES)
                .ok()
                .and_then(|env| {
                    let wanted: Vec<&str> = agent
                        .base_url_env
                        .iter()
                        .map(String::as_str)
                        .chain(["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
                        .collect();
                    let vars: Vec<(String, String)> = env
                        .split(|b| *b == 0)
                        .filter_map(|kv| {
                            let kv = std::str::from_utf8(kv).ok()?;
                            let (k, v) = kv.split_once('=')?;
                            wanted.contains(&k).then(|| (k.to_string(), v.to_string()))
                        })
                        .collect();
                    routing::from_environment(
                        &vars,
                        agent,
                        &self.opts.airlock,
                        format!("environment of pid {pid}"),
                    )
                });
            self.push(Raw {
                agent,
                version_source: source,
                version,
                kind: Kind::Process,
                location: loc.display().to_string(),
                home: None,
                pid: Some(pid),
                package: None,
                manager: None,
                remedy: Remedy::Process { pid },
                env_routing,
                ide: None,
                agent_version: true,
            });
        }
    }
}

/// Whether `dir` is an editor's own directory (the parent of an extensions directory).
fn is_editor_dir(dir: &Path, home: &Path) -> bool {
    EDITORS.iter().any(|(rel, _, _)| {
        airlock_policy::paths::expand_home(rel, home)
            .parent()
            .is_some_and(|p| p == dir)
    })
}

fn read_host_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

/// An absolute, `/`-rooted path.
fn normalise(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new("/").join(p)
    }
}

/// npm package names as found in the catalogue: `name` or `@scope/name`, no traversal.
fn valid_package_name(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._@".contains(c))
    };
    match parts.as_slice() {
        [n] => ok(n),
        [scope, n] => scope.starts_with('@') && ok(scope) && ok(n),
        _ => false,
    }
}

/// `1.2`, `1.2.3`, `v1.2.3`, `1.2.3-beta.1`, `1.2.3+build`: short and harmless to print.
pub fn is_version(s: &str) -> bool {
    let s = s.strip_prefix('v').unwrap_or(s);
    if s.is_empty() || s.len() > 64 {
        return false;
    }
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(core_end);
    let nums: Vec<&str> = core.split('.').collect();
    (2..=4).contains(&nums.len())
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-+.".contains(c))
}

/// Run `<tool> <version_args>` with a cleared environment (PATH and HOME kept, the agent's
/// telemetry switched off), no stdin, a timeout, and at most 4 KiB of output read.
fn run_version(host: &Path, agent: &Agent) -> Option<String> {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(host);
    cmd.args(&agent.version_args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for k in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    for (k, v) in &agent.telemetry_env_off {
        cmd.env(k, v);
    }
    cmd.env("NO_COLOR", "1");
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(4096).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + VERSION_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(path = %host.display(), "version command timed out");
                return None;
            }
        }
    }
    let out = reader.join().ok()?;
    String::from_utf8_lossy(&out)
        .split(|c: char| c.is_whitespace() || "(),;".contains(c))
        .map(|t| t.trim_start_matches('v'))
        .find(|t| is_version(t) && t.contains('.'))
        .map(str::to_string)
}

/// `/etc/machine-id` under the root (else the hostname) and the hostname.
pub fn machine_facts(fs: &RootFs) -> (String, String) {
    let read = |p: &str| {
        fs.read_bounded(Path::new(p), 4096)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let clean_host = |s: String| -> Option<String> {
        let s: String = s.lines().next().unwrap_or("").trim().to_string();
        (!s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)))
        .then_some(s)
    };
    let mut hostname = None;
    if fs.is_system_root() {
        hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(clean_host);
    }
    let hostname = hostname
        .or_else(|| read("/etc/hostname").and_then(clean_host))
        .unwrap_or_else(|| "unknown".to_string());
    let machine_id = read("/etc/machine-id")
        .filter(|s| s.len() <= 64 && !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| hostname.clone());
    (machine_id, hostname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in ["2.1.150", "v0.24.4", "1.2", "1.2.3-beta.1", "2.1.150+linux"] {
            assert!(is_version(v), "{v}");
        }
        for v in ["latest", "1", "1..2", "2.1.150\u{1b}[31m", "", "1.2.3 x"] {
            assert!(!is_version(v), "{v}");
        }
    }

    #[test]
    fn package_names() {
        assert!(valid_package_name("@anthropic-ai/claude-code"));
        assert!(valid_package_name("opencode-ai"));
        assert!(!valid_package_name("../../etc"));
        assert!(!valid_package_name("a/b/c"));
    }
}
