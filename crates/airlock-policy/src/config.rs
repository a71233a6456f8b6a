//! `airlock.toml`: the one configuration file, with an embedded default.
//!
//! Types use `deny_unknown_fields` and snake_case; defaults are named constants; [`Config::validate`]
//! reports every problem at once with its key and line. A user's file is layered over the
//! embedded default (`rules/airlock.default.toml`) table by table, so a file that only sets
//! `[policy]` keeps the default upstreams.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalogue::Catalogue;
use crate::error::{ConfigError, ConfigIssue, PolicyError, issue_from_toml, line_of};

/// The embedded default configuration.
pub const EMBEDDED_DEFAULT_CONFIG: &str = include_str!("../../../rules/airlock.default.toml");

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;
/// Request bodies held in memory at once, all connections together (512 MiB).
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: u64 = 512 << 20;
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_AUDIT_QUEUE: usize = 16_384;
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1_000;
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_AUDIT_BODY_CAP: u64 = 256 * 1024;

const TOP_KEYS: &[&str] = &[
    "server",
    "upstream",
    "model",
    "policy",
    "audit",
    "detection",
    "redaction",
];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Models listed by `GET /v1/models`.
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// The detection engine's section (`airlock_detect`'s config types), kept as a table here
    /// and read by the engine's own typed parser.
    #[serde(default)]
    pub detection: toml::Table,
    /// Redaction actions (`airlock_wire`'s config types), likewise.
    #[serde(default)]
    pub redaction: toml::Table,
    /// Where this configuration came from (`<embedded>` or a path).
    #[serde(skip)]
    pub origin: String,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: Option<PathBuf>,
    pub max_body_bytes: u64,
    pub max_header_bytes: u64,
    pub max_connections: u32,
    /// Request bodies held in memory at once, all connections together; a request that would
    /// exceed it is answered 503 (retry-after) instead of buffered.
    pub max_inflight_body_bytes: u64,
    pub header_timeout_ms: u64,
    /// Environment variable holding the admin token for /metrics and /admin/* when the gateway
    /// is not bound to loopback.
    pub admin_token_env: Option<String>,
    /// PEM certificate chain and private key: the listener speaks TLS (HTTP/2 and HTTP/1.1 by
    /// ALPN). Both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES,
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            admin_token_env: Some("AIRLOCK_ADMIN_TOKEN".to_string()),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServerConfig {
    /// The listen address (validated by [`Config::validate`]).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// The data directory: this config's, else the default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(crate::paths::default_data_dir)
    }
}

/// The API format an upstream speaks. `openai` serves both Chat Completions and Responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamApi {
    Anthropic,
    #[serde(rename = "openai")]
    OpenAi,
    Gemini,
}

impl UpstreamApi {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
        }
    }
}

/// Where the upstream's credential comes from.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Credential {
    /// Environment variable holding the key.
    pub env: Option<String>,
    /// File holding the key (first line, trimmed).
    pub file: Option<PathBuf>,
    /// Forward the caller's own vendor key when the gateway holds none.
    pub passthrough: bool,
}

/// `[[upstream]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    pub api: UpstreamApi,
    /// API base as the vendor documents it, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model-name patterns this upstream serves; empty = any model of its API.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub credential: Credential,
    #[serde(default = "d_connect")]
    pub connect_timeout_ms: u64,
    #[serde(default = "d_first_byte")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "d_idle")]
    pub idle_timeout_ms: u64,
    #[serde(default = "d_retries")]
    pub retries: u32,
}

fn d_connect() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}
fn d_first_byte() -> u64 {
    DEFAULT_FIRST_BYTE_TIMEOUT_MS
}
fn d_idle() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}
fn d_retries() -> u32 {
    DEFAULT_RETRIES
}

impl UpstreamConfig {
    /// An upstream with defaults for everything but name, API and URL.
    pub fn new(name: &str, api: UpstreamApi, base_url: &str) -> Self {
        Self {
            name: name.to_string(),
            api,
            base_url: base_url.to_string(),
            models: Vec::new(),
            credential: Credential {
                passthrough: true,
                ..Credential::default()
            },
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            first_byte_timeout_ms: DEFAULT_FIRST_BYTE_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            retries: DEFAULT_RETRIES,
        }
    }

    /// Whether this upstream serves `model` (no patterns = any).
    pub fn serves(&self, model: Option<&str>) -> bool {
        self.models.is_empty()
            || model.is_some_and(|m| self.models.iter().any(|p| crate::glob::matches(p, m)))
    }
}

/// `[[model]]`: an entry of `GET /v1/models`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    pub api: UpstreamApi,
    #[serde(default)]
    pub owned_by: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// What to do with tools the catalogue does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTools {
    #[default]
    Allow,
    Deny,
}

/// Action of a policy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Allow,
    Deny,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Default for tools the catalogue does not recognise.
    pub unknown_tools: UnknownTools,
    /// Deny versions covered by an advisory of at least this severity (`low`, `medium`,
    /// `high`, `critical`, or `none` to never deny on advisories).
    pub deny_advisory_severity: String,
    /// Tools the company approves, named in refusal messages ("use ... instead").
    pub approved_alternatives: Vec<String>,
    /// Extra advisories file, added to the built-in ones.
    pub advisories_file: Option<PathBuf>,
    /// Rules, first match wins; they come before advisories, so an `allow` rule can relax one.
    #[serde(rename = "rule")]
    pub rules: Vec<PolicyRule>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            unknown_tools: UnknownTools::Allow,
            deny_advisory_severity: "high".to_string(),
            approved_alternatives: Vec::new(),
            advisories_file: None,
            rules: Vec::new(),
        }
    }
}

/// `[[policy.rule]]`: one rule on tool, version, model, team and user. Every condition given
/// must hold; absent conditions match anything.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub id: String,
    /// Catalogue ids, `unknown`, or `*`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Semver requirement, e.g. `>=2.1.91, <=2.1.197`. A request with no known version does
    /// not match a rule that has one.
    #[serde(default)]
    pub versions: Option<String>,
    /// Model-name glob patterns.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    pub action: RuleAction,
    /// Why, shown to the person.
    #[serde(default)]
    pub reason: Option<String>,
    /// The approved alternative, shown to the person.
    #[serde(default)]
    pub alternative: Option<String>,
}

/// What the gateway does when the audit queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuditOverflow {
    /// Refuse new requests with a clear error until the queue drains.
    #[default]
    FailClosed,
    /// Serve, count the lost records and alert; the chain records how many were lost.
    FailOpen,
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    pub overflow: AuditOverflow,
    pub queue_capacity: usize,
    /// Sign a checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or this many seconds, whichever comes first.
    pub checkpoint_interval_secs: u64,
    /// Keep the redacted request and response bodies, compressed.
    pub store_bodies: bool,
    /// Cap per stored body, in bytes (before compression).
    pub max_body_bytes: u64,
    /// Delete records older than this many days (signed anchor left behind).
    pub retention_days: Option<u64>,
    /// Keep at most this many records.
    pub retention_max_records: Option<u64>,
    /// Keep the newest records whose payload (record JSON plus stored bodies) fits in this
    /// many bytes.
    pub retention_max_bytes: Option<u64>,
    /// A pricing table replacing the embedded `rules/pricing.toml` (read at start).
    pub pricing_file: Option<std::path::PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            overflow: AuditOverflow::FailClosed,
            queue_capacity: DEFAULT_AUDIT_QUEUE,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval_secs: DEFAULT_CHECKPOINT_INTERVAL_SECS,
            store_bodies: false,
            max_body_bytes: DEFAULT_AUDIT_BODY_CAP,
            retention_days: None,
            retention_max_records: None,
            retention_max_bytes: None,
            pricing_file: None,
        }
    }
}

impl Config {
    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        // The embedded file is checked by this crate's tests; should it ever fail to parse, the
        // compiled-in defaults are used rather than panicking.
        Self::from_toml_layered(EMBEDDED_DEFAULT_CONFIG, "<embedded>", None).unwrap_or_else(|e| {
            eprintln!("error: the embedded default configuration is invalid (a build defect): {e}");
            Config {
                server: ServerConfig::default(),
                upstreams: vec![
                    UpstreamConfig::new(
                        "anthropic",
                        UpstreamApi::Anthropic,
                        "https://api.anthropic.com",
                    ),
                    UpstreamConfig::new("openai", UpstreamApi::OpenAi, "https://api.openai.com/v1"),
                ],
                models: Vec::new(),
                policy: PolicyConfig::default(),
                audit: AuditConfig::default(),
                detection: toml::Table::new(),
                redaction: toml::Table::new(),
                origin: "<embedded>".into(),
            }
        })
    }

    /// Load a file layered over the embedded default, and validate it.
    pub fn load(path: &Path) -> Result<Config, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Load the file if given, else the embedded default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, PolicyError> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Self::embedded_default()),
        }
    }

    /// Parse `text` (named `origin` in messages) over the embedded default, and validate.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, PolicyError> {
        let base: toml::Table = toml::from_str(EMBEDDED_DEFAULT_CONFIG).unwrap_or_default();
        Self::from_toml_layered(text, origin, Some(base))
    }

    fn from_toml_layered(
        text: &str,
        origin: &str,
        base: Option<toml::Table>,
    ) -> Result<Config, PolicyError> {
        let user: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            issues: vec![issue_from_toml(origin, text, &e, TOP_KEYS)],
        })?;
        // Check the user's own file on its own first, so that errors point at its lines.
        if let Err(e) = toml::from_str::<Config>(text) {
            return Err(ConfigError {
                issues: vec![issue_from_toml(origin, text, &e, TOP_KEYS)],
            }
            .into());
        }
        let mut merged = base.unwrap_or_default();
        for (k, v) in user {
            match (merged.get_mut(&k), v) {
                (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => {
                    for (k2, v2) in src {
                        dst.insert(k2, v2);
                    }
                }
                (_, v) => {
                    merged.insert(k, v);
                }
            }
        }
        let mut cfg: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError {
                issues: vec![ConfigIssue {
                    origin: origin.to_string(),
                    line: None,
                    key: None,
                    message: e.message().to_string(),
                }],
            })?;
        cfg.origin = origin.to_string();
        cfg.validate_text(Some(text))?;
        Ok(cfg)
    }

    /// Check the whole configuration against the embedded catalogue; every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_text(None)
    }

    fn validate_text(&self, text: Option<&str>) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let mut push = |key: String, message: String| {
            let line = text.and_then(|t| locate(t, &key));
            issues.push(ConfigIssue {
                origin: self.origin.clone(),
                line,
                key: Some(key),
                message,
            });
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            push(
                "server.listen".into(),
                format!(
                    "\"{}\" is not an address:port such as 127.0.0.1:8787",
                    self.server.listen
                ),
            );
        }
        if self.server.max_body_bytes == 0 {
            push(
                "server.max_body_bytes".into(),
                "must be greater than 0".into(),
            );
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => push(
                "server.tls_key".into(),
                "missing: server.tls_cert is set, and TLS needs both".into(),
            ),
            (None, Some(_)) => push(
                "server.tls_cert".into(),
                "missing: server.tls_key is set, and TLS needs both".into(),
            ),
            _ => {}
        }
        if self.server.max_inflight_body_bytes < self.server.max_body_bytes {
            push(
                "server.max_inflight_body_bytes".into(),
                format!(
                    "must be at least server.max_body_bytes ({}), or no request of that size could ever be read",
                    self.server.max_body_bytes
                ),
            );
        }
        if self.server.max_connections == 0 {
            push(
                "server.max_connections".into(),
                "must be greater than 0".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if !names.insert(u.name.as_str()) {
                push(
                    format!("upstream[{i}].name"),
                    format!("duplicate upstream name \"{}\"", u.name),
                );
            }
            if !(u.base_url.starts_with("http://") || u.base_url.starts_with("https://"))
                || u.base_url.parse::<http::Uri>().is_err()
            {
                push(
                    format!("upstream[{i}].base_url"),
                    format!("\"{}\" is not an http:// or https:// URL", u.base_url),
                );
            }
            if u.credential.env.is_some() && u.credential.file.is_some() {
                push(
                    format!("upstream[{i}].credential"),
                    "set either `env` or `file`, not both".into(),
                );
            }
        }
        match self.policy.deny_advisory_severity.as_str() {
            "none" | "low" | "medium" | "high" | "critical" => {}
            other => push(
                "policy.deny_advisory_severity".into(),
                format!("\"{other}\" is not one of none, low, medium, high, critical"),
            ),
        }
        let catalogue = Catalogue::embedded();
        let mut ids = std::collections::HashSet::new();
        for (i, r) in self.policy.rules.iter().enumerate() {
            if !ids.insert(r.id.as_str()) {
                push(
                    format!("policy.rule[{i}].id"),
                    format!("duplicate rule id \"{}\"", r.id),
                );
            }
            for t in &r.tools {
                if t != "*" && t != crate::catalogue::UNKNOWN && catalogue.get(t).is_none() {
                    let best = catalogue
                        .agents()
                        .iter()
                        .map(|a| (strsim::levenshtein(t, &a.id), a.id.as_str()))
                        .filter(|(d, _)| *d <= 3)
                        .min();
                    let hint = best
                        .map(|(_, id)| format!(" (did you mean \"{id}\"?)"))
                        .unwrap_or_default();
                    push(
                        format!("policy.rule[{i}].tools"),
                        format!("unknown tool \"{t}\"{hint}; known tools are in rules/agents.toml"),
                    );
                }
            }
            if let Some(v) = &r.versions
                && let Err(e) = semver::VersionReq::parse(v)
            {
                push(
                    format!("policy.rule[{i}].versions"),
                    format!("invalid version range \"{v}\": {e}"),
                );
            }
        }
        if self.audit.queue_capacity == 0 {
            push(
                "audit.queue_capacity".into(),
                "must be greater than 0".into(),
            );
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { issues })
        }
    }

    /// Apply a `--upstream NAME=URL` option: replace the base URL of the upstream of that name,
    /// or add one. The built-in names are `anthropic` (Anthropic Messages) and `openai` (Chat
    /// Completions and Responses); `NAME=API:URL` (e.g. `corp=openai:http://...`) adds others.
    pub fn apply_cli_upstream(&mut self, spec: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError {
            issues: vec![ConfigIssue {
                origin: "--upstream".into(),
                line: None,
                key: None,
                message,
            }],
        };
        let (name, rest) = spec.split_once('=').ok_or_else(|| {
            bad(format!(
                "\"{spec}\" is not NAME=URL (e.g. anthropic=https://api.anthropic.com)"
            ))
        })?;
        let (api, url) = match rest.split_once(':') {
            Some((a, u)) if !u.starts_with("//") => {
                let api = match a {
                    "anthropic" => UpstreamApi::Anthropic,
                    "openai" => UpstreamApi::OpenAi,
                    "gemini" => UpstreamApi::Gemini,
                    other => {
                        return Err(bad(format!(
                            "unknown API \"{other}\" in \"{spec}\" (anthropic, openai, gemini)"
                        )));
                    }
                };
                (Some(api), u)
            }
            _ => (None, rest),
        };
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.parse::<http::Uri>().is_err()
        {
            return Err(bad(format!("\"{url}\" is not an http:// or https:// URL")));
        }
        let url = url.trim_end_matches('/');
        if let Some(u) = self.upstreams.iter_mut().find(|u| u.name == name) {
            u.base_url = url.to_string();
            if let Some(api) = api {
                u.api = api;
            }
            return Ok(());
        }
        let api = match (api, name) {
            (Some(a), _) => a,
            (None, "anthropic") => UpstreamApi::Anthropic,
            (None, "openai") => UpstreamApi::OpenAi,
            (None, "gemini") => UpstreamApi::Gemini,
            (None, other) => {
                return Err(bad(format!(
                    "unknown upstream \"{other}\": the built-in names are anthropic and openai; write {other}=openai:URL or {other}=anthropic:URL"
                )));
            }
        };
        self.upstreams.push(UpstreamConfig::new(name, api, url));
        Ok(())
    }

    /// The upstream for an API and model: the first one of that API whose patterns match.
    pub fn upstream_for(&self, api: UpstreamApi, model: Option<&str>) -> Option<&UpstreamConfig> {
        self.upstreams
            .iter()
            .find(|u| u.api == api && u.serves(model))
    }
}

/// Find the line of a dotted key path such as `upstream[1].base_url` or `policy.rule[0].tools`
/// in a TOML text. Best effort: scans table headers and keys line by line.
fn locate(text: &str, key: &str) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    let (leaf, tables) = parts.split_last()?;
    // Build the header we look for: `upstream[1]` → the second `[[upstream]]`.
    let mut header = String::new();
    let mut index = 0usize;
    for t in tables {
        let (name, idx) = match t.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*t, None),
        };
        if !header.is_empty() {
            header.push('.');
        }
        header.push_str(name);
        if let Some(i) = idx {
            index = i;
        }
    }
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    let mut seen = 0usize;
    let mut inside = tables.is_empty();
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            if name == header {
                inside = seen == index || !t.starts_with("[[");
                seen += usize::from(t.starts_with("[["));
            } else {
                inside = false;
            }
        } else if inside
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == leaf
        {
            return Some(line_of(text, offset));
        }
        offset += line.len();
    }
    None
}
