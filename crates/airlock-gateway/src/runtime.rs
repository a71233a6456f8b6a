//! The configuration in force, resolved for serving: upstream clients built, credentials read,
//! the policy compiled, the `/v1/models` answers rendered. Built whole and swapped atomically on
//! reload, so a request sees one consistent configuration from start to end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_policy::{Catalogue, Config, Policy, UpstreamApi, UpstreamConfig};
use bytes::Bytes;
use http::Uri;
use serde_json::json;

use crate::secret::Secret;
use crate::upstream::{HttpClient, build_client};

/// Errors building a runtime from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Policy(#[from] airlock_policy::PolicyError),
    #[error("{origin}: server.listen: {value:?} is not an address:port")]
    Listen { origin: String, value: String },
    #[error("upstream {name:?}: base_url {url:?}: {reason}")]
    BaseUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error("upstream {name:?}: credential environment variable {var} is not set or empty")]
    CredentialEnv { name: String, var: String },
    #[error("upstream {name:?}: cannot read credential file {path}: {source}")]
    CredentialFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {name:?}: credential file {path} is empty")]
    CredentialEmpty { name: String, path: PathBuf },
    #[error("{origin}: [redaction]: {message}")]
    Redaction { origin: String, message: String },
    #[error("upstream {name:?}: cannot set up TLS: {reason}")]
    Tls { name: String, reason: String },
}

/// Where the configuration comes from, so that a reload re-reads it the same way.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `airlock.toml`; `None` = the embedded default.
    pub path: Option<PathBuf>,
    /// `--upstream NAME=URL`, applied on top of the file, in order.
    pub cli_upstreams: Vec<String>,
    /// `--listen`
    pub listen: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
}

impl ConfigSource {
    /// Reads and validates the configuration with the command-line overrides applied.
    pub fn load(&self) -> Result<Config, RuntimeError> {
        let mut cfg = Config::load_or_default(self.path.as_deref())?;
        for spec in &self.cli_upstreams {
            cfg.apply_cli_upstream(spec)
                .map_err(airlock_policy::PolicyError::from)?;
        }
        if let Some(l) = &self.listen {
            cfg.server.listen = l.clone();
        }
        if let Some(d) = &self.data_dir {
            cfg.server.data_dir = Some(d.clone());
        }
        cfg.validate().map_err(airlock_policy::PolicyError::from)?;
        Ok(cfg)
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_inflight_body_bytes: u64,
    pub header_timeout: Duration,
    /// Time allowed to receive the whole request body.
    pub body_timeout: Duration,
}

/// Time allowed for a client to send its whole request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// One upstream, ready to forward to.
pub struct Upstream {
    pub name: String,
    pub api: UpstreamApi,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the base URL without a trailing slash (`/v1` for OpenAI, `` for Anthropic).
    pub base_path: String,
    pub config: UpstreamConfig,
    pub credential: Option<Secret>,
    pub passthrough: bool,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub retries: u32,
    pub client: HttpClient,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("api", &self.api)
            .field(
                "base",
                &format_args!("{}://{}{}", self.scheme, self.authority, self.base_path),
            )
            .field("credential", &self.credential)
            .field("passthrough", &self.passthrough)
            .finish()
    }
}

impl Upstream {
    /// The full upstream URI for an API path (e.g. `/chat/completions`) and the caller's query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

/// Everything a request needs from the configuration.
pub struct Runtime {
    pub config: Arc<Config>,
    pub policy: Policy,
    pub catalogue: &'static Catalogue,
    pub upstreams: Vec<Upstream>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub admin_token: Option<Secret>,
    /// The redaction policy from `[redaction]` (defaults when the table is empty).
    /// What redaction does with each finding, with its per-tool and per-team overrides.
    pub redaction: airlock_wire::RedactionPolicy,
    /// `GET /v1/models` in OpenAI's shape.
    pub models_openai: Bytes,
    /// `GET /v1/models` in Anthropic's shape (when the caller sends `anthropic-version`).
    pub models_anthropic: Bytes,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("listen", &self.listen)
            .field("upstreams", &self.upstreams)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn read_credential(u: &UpstreamConfig) -> Result<Option<Secret>, RuntimeError> {
    if let Some(var) = &u.credential.env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            _ => Err(RuntimeError::CredentialEnv {
                name: u.name.clone(),
                var: var.clone(),
            }),
        };
    }
    if let Some(path) = &u.credential.file {
        let text =
            std::fs::read_to_string(path).map_err(|source| RuntimeError::CredentialFile {
                name: u.name.clone(),
                path: path.clone(),
                source,
            })?;
        let v = text.trim();
        if v.is_empty() {
            return Err(RuntimeError::CredentialEmpty {
                name: u.name.clone(),
                path: path.clone(),
            });
        }
        return Ok(Some(Secret::new(v)));
    }
    Ok(None)
}

fn build_upstream(u: &UpstreamConfig) -> Result<Upstream, RuntimeError> {
    let bad = |reason: &str| RuntimeError::BaseUrl {
        name: u.name.clone(),
        url: u.base_url.clone(),
        reason: reason.into(),
    };
    let uri: Uri = u.base_url.parse().map_err(|_| bad("not a valid URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| bad("missing http:// or https://"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(bad("only http:// and https:// are supported"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad("missing host"))?;
    if uri.query().is_some() {
        return Err(bad("must not contain a query string"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    let connect_timeout = Duration::from_millis(u.connect_timeout_ms.max(1));
    let client = build_client(connect_timeout).map_err(|reason| RuntimeError::Tls {
        name: u.name.clone(),
        reason,
    })?;
    Ok(Upstream {
        name: u.name.clone(),
        api: u.api,
        scheme,
        authority,
        base_path,
        credential: read_credential(u)?,
        passthrough: u.credential.passthrough,
        connect_timeout,
        first_byte_timeout: Duration::from_millis(u.first_byte_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(u.idle_timeout_ms.max(1)),
        retries: u.retries.min(10),
        config: u.clone(),
        client,
    })
}

fn render_models(cfg: &Config) -> (Bytes, Bytes) {
    let openai: Vec<_> = cfg
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.owned_by.clone().unwrap_or_else(|| m.api.as_str().to_string()),
            })
        })
        .collect();
    let anthropic: Vec<_> = cfg
        .models
        .iter()
        .map(|m| {
            json!({
                "type": "model",
                "id": m.id,
                "display_name": m.display_name.clone().unwrap_or_else(|| m.id.clone()),
                "created_at": "1970-01-01T00:00:00Z",
            })
        })
        .collect();
    let first = cfg.models.first().map(|m| m.id.clone());
    let last = cfg.models.last().map(|m| m.id.clone());
    (
        Bytes::from(json!({ "object": "list", "data": openai }).to_string()),
        Bytes::from(
            json!({ "data": anthropic, "has_more": false, "first_id": first, "last_id": last })
                .to_string(),
        ),
    )
}

/// The `[redaction]` table as [`airlock_wire::RedactionPolicy`]; empty → the built-in defaults
/// (secrets redact, covert Unicode normalize, personal data log). Tool overrides must name an
/// agent of the catalogue (or `unknown`): a typo would silently never apply.
fn parse_redaction(
    config: &Config,
    catalogue: &Catalogue,
) -> Result<airlock_wire::RedactionPolicy, RuntimeError> {
    let err = |message: String| RuntimeError::Redaction {
        origin: config.origin.clone(),
        message,
    };
    let policy = airlock_wire::RedactionPolicy::from_table(&config.redaction).map_err(err)?;
    for tool in policy.tool.keys() {
        if tool != "unknown" && catalogue.get(tool).is_none() {
            let known: Vec<&str> = catalogue.agents().iter().map(|a| a.id.as_str()).collect();
            return Err(err(format!(
                "tool.{tool}: no agent with id {tool:?} in rules/agents.toml (known: {}, unknown)",
                known.join(", ")
            )));
        }
    }
    Ok(policy)
}

/// Checks what `airlock serve` reads beyond the policy: the `[redaction]` table (actions, its
/// tool and team overrides, `max_findings`). For `airlock config check`.
pub fn check_redaction(config: &Config) -> Result<(), RuntimeError> {
    parse_redaction(config, Catalogue::embedded()).map(|_| ())
}

impl Runtime {
    /// Builds a runtime from a validated configuration.
    pub fn build(config: Config) -> Result<Runtime, RuntimeError> {
        let policy = Policy::from_config(&config)?;
        let listen = config
            .server
            .listen_addr()
            .ok_or_else(|| RuntimeError::Listen {
                origin: config.origin.clone(),
                value: config.server.listen.clone(),
            })?;
        let upstreams = config
            .upstreams
            .iter()
            .map(build_upstream)
            .collect::<Result<Vec<_>, _>>()?;
        let admin_token = config
            .server
            .admin_token_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        let s = &config.server;
        let limits = Limits {
            max_body_bytes: s.max_body_bytes,
            max_header_bytes: usize::try_from(s.max_header_bytes).unwrap_or(usize::MAX),
            max_connections: s.max_connections as usize,
            max_inflight_body_bytes: s.max_inflight_body_bytes,
            header_timeout: Duration::from_millis(s.header_timeout_ms.max(1)),
            body_timeout: BODY_TIMEOUT,
        };
        let (models_openai, models_anthropic) = render_models(&config);
        let catalogue = Catalogue::embedded();
        let redaction = parse_redaction(&config, catalogue)?;
        Ok(Runtime {
            redaction,
            data_dir: config.server.data_dir(),
            policy,
            catalogue,
            upstreams,
            listen,
            limits,
            admin_token,
            models_openai,
            models_anthropic,
            config: Arc::new(config),
        })
    }

    /// The first upstream speaking `api` whose model patterns match `model`.
    pub fn upstream_for(&self, api: UpstreamApi, model: Option<&str>) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .find(|u| u.api == api && u.config.serves(model))
    }

    /// The data directory (key store, audit log).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}
