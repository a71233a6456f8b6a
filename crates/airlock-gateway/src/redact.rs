//! Redaction in the gateway: the detection engine and the placeholder vault shared by every
//! request (and kept across reloads), and the response transforms that put original values
//! back before the agent sees them. The wire-format work itself is `airlock-wire`'s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airlock_detect::{DetectConfig, Engine};
use airlock_policy::Config;
use airlock_wire::{Api, CachedDetector, StreamRestorer, Vault, VaultScope};
use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::upstream::StreamTransform;

/// Largest non-streaming response body buffered for restoration. Beyond it the body is passed
/// through unrestored (and a warning logged): memory stays bounded.
pub const MAX_RESTORE_JSON_BYTES: usize = 32 << 20;

/// Headers agents use to send their session id, checked in order.
pub const SESSION_HEADERS: &[&str] = &[
    "x-claude-code-session-id",
    "session_id",
    "session-id",
    "x-session-id",
];

/// The engine (with its result cache) and the vault. One per gateway: the vault lives as long
/// as the gateway (placeholders stay stable across reloads); the engine is rebuilt when a reload
/// changes `[detection]` (a new engine is a new [`CachedDetector`], so nothing remembered under
/// the old rules is replayed).
pub struct Redactor {
    detector: ArcSwap<CachedDetector<Engine>>,
    /// What the engine in force was built from.
    built_from: Mutex<Built>,
    pub vault: Vault,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

/// Why `[detection]` cannot be used (names the origin and the problem).
#[derive(Debug, thiserror::Error)]
#[error("{origin}: [detection]: {message}")]
pub struct DetectionError {
    pub origin: String,
    pub message: String,
}

/// What an engine is built from: the `[detection]` table and the text of every rule file it
/// names (a security team edits a rule file without touching `airlock.toml`).
#[derive(Debug, Clone, PartialEq, Default)]
struct Built {
    table: toml::Table,
    rule_files: Vec<(PathBuf, String)>,
}

/// `config`'s `[detection]`, checked, and the rule files it names (relative to the config
/// file), read.
fn detection_inputs(config: &Config) -> Result<(DetectConfig, Built), DetectionError> {
    let err = |message: String| DetectionError {
        origin: config.origin.clone(),
        message,
    };
    let cfg: DetectConfig = toml::Value::Table(config.detection.clone())
        .try_into()
        .map_err(|e: toml::de::Error| err(e.message().to_string()))?;
    cfg.validate().map_err(|e| err(e.to_string()))?;
    let base = Path::new(&config.origin)
        .parent()
        .filter(|_| config.origin != "<embedded>");
    let mut rule_files = Vec::with_capacity(cfg.rule_files.len());
    for f in &cfg.rule_files {
        let path = match base {
            Some(d) if f.is_relative() => d.join(f),
            _ => f.clone(),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("rule_files: {}: {e}", path.display())))?;
        rule_files.push((path, text));
    }
    let built = Built {
        table: config.detection.clone(),
        rule_files,
    };
    Ok((cfg, built))
}

fn build_engine(
    config: &Config,
    cfg: &DetectConfig,
    built: &Built,
) -> Result<Engine, DetectionError> {
    let mut b = Engine::builder().with_builtin();
    for (path, text) in &built.rule_files {
        b = b.add_rules_toml(text, &path.display().to_string());
    }
    let engine = b
        .custom(&cfg.custom)
        .disable(&cfg.disable)
        .strict_disable(true)
        .build()
        .map_err(|e| DetectionError {
            origin: config.origin.clone(),
            message: e.to_string(),
        })?;
    // What the engine would compile on first use for ASCII text (the rules' ASCII-mode regexes,
    // the digit gate), compiled now, at start-up or reload, before the engine is put in force.
    engine.warm();
    Ok(engine)
}

/// An engine built by [`Redactor::prepare`], with what it was built from.
pub struct Prepared {
    engine: Engine,
    built: Built,
}

impl Redactor {
    /// The engine for `config`'s `[detection]` and an empty vault.
    pub fn new(config: &Config) -> Result<Redactor, DetectionError> {
        let (cfg, built) = detection_inputs(config)?;
        Ok(Redactor {
            detector: ArcSwap::from_pointee(CachedDetector::new(build_engine(
                config, &cfg, &built,
            )?)),
            built_from: Mutex::new(built),
            vault: Vault::default(),
        })
    }

    /// The detector in force.
    pub fn detector(&self) -> Arc<CachedDetector<Engine>> {
        self.detector.load_full()
    }

    /// The rule files the engine in force was built from (watched for changes).
    pub fn rule_files(&self) -> Vec<PathBuf> {
        self.built()
            .rule_files
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn built(&self) -> std::sync::MutexGuard<'_, Built> {
        self.built_from.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine `config` needs, when its `[detection]` or the text of a rule file it names
    /// differs from what the engine in force was built from (built here, swapped in by
    /// [`Redactor::install`] once the whole configuration is accepted).
    pub fn prepare(&self, config: &Config) -> Result<Option<Prepared>, DetectionError> {
        let (cfg, built) = detection_inputs(config)?;
        if *self.built() == built {
            return Ok(None);
        }
        let engine = build_engine(config, &cfg, &built)?;
        Ok(Some(Prepared { engine, built }))
    }

    /// Puts an engine from [`Redactor::prepare`] in force.
    pub fn install(&self, prepared: Prepared) {
        self.detector
            .store(Arc::new(CachedDetector::new(prepared.engine)));
        *self.built() = prepared.built;
    }
}

/// What the response needs when the request was rewritten: the API and the vault scope whose
/// placeholders it may contain.
pub struct Restore {
    pub api: Api,
    pub scope: VaultScope,
}

impl Restore {
    /// The transform for a response: SSE restored event by event, anything else buffered
    /// (bounded) and restored as one JSON document.
    pub fn transform(self, sse: bool) -> Box<dyn StreamTransform> {
        if sse {
            Box::new(SseRestore(StreamRestorer::new(self.api, self.scope)))
        } else {
            Box::new(JsonRestore {
                api: self.api,
                scope: self.scope,
                buf: Vec::new(),
                overflow: false,
            })
        }
    }
}

struct SseRestore(StreamRestorer);

impl StreamTransform for SseRestore {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        Bytes::from(self.0.push(&data))
    }
    fn finish(&mut self) -> Bytes {
        Bytes::from(self.0.finish())
    }
}

struct JsonRestore {
    api: Api,
    scope: VaultScope,
    buf: Vec<u8>,
    overflow: bool,
}

impl StreamTransform for JsonRestore {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        if self.overflow {
            return data;
        }
        if self.buf.len() + data.len() > MAX_RESTORE_JSON_BYTES {
            tracing::warn!(
                limit = MAX_RESTORE_JSON_BYTES,
                "response too large to restore placeholders; passed through unrestored"
            );
            self.overflow = true;
            let mut out = std::mem::take(&mut self.buf);
            out.extend_from_slice(&data);
            return Bytes::from(out);
        }
        self.buf.extend_from_slice(&data);
        Bytes::new()
    }

    fn finish(&mut self) -> Bytes {
        let buf = std::mem::take(&mut self.buf);
        if self.overflow || buf.is_empty() {
            return Bytes::from(buf);
        }
        match airlock_wire::restore_json(self.api, &buf, &self.scope) {
            Ok(Some(restored)) => Bytes::from(restored),
            Ok(None) => Bytes::from(buf),
            Err(e) => {
                tracing::debug!(error = %e, "response is not JSON; passed through unrestored");
                Bytes::from(buf)
            }
        }
    }
}
