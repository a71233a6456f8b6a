//! Black-box probing of an agent under varied environments, with a recording fake model API.
//!
//! Static review misses what an agent assembles at run time. This crate runs a real agent many
//! times against a [`recorder::Recorder`] that plays the model API (valid canned answers, so
//! the agent finishes one turn) and the agent's HTTP(S) proxy (so telemetry and update checks
//! are caught and listed by host, never sent). Each run changes one dimension of the
//! environment ([`matrix`]: time zone, locale, base-URL host class, HOME, user, hostname,
//! chosen variables) from a baseline; the [`differ`] compares the model requests of each run
//! with the baseline, ignoring what varies between identical baseline runs, names every
//! changed code point, and attributes each difference to the dimension and value that flips
//! it. [`report`] renders the result as text, JSON or HTML.
//!
//! What it does not do: it does not intercept TLS (a CONNECT to anything but the configured
//! API host is refused), it does not alter system files (base-URL hosts reach the recorder
//! through the proxy settings, not `/etc/hosts`), and it does not judge whether a difference
//! is malicious: it reports "covert" (look-alike or invisible characters) and "plain"
//! differences and leaves the verdict to a person. Hostname variation needs root and
//! `unshare`; otherwise it is skipped with a note.

use std::sync::Arc;
use std::time::Duration;

pub mod canned;
pub mod catalogue;
pub mod differ;
pub mod matrix;
pub mod recorder;
pub mod report;
pub mod runner;

pub use catalogue::{AgentProfile, Catalogue};
pub use matrix::{Dimension, HostClass, Matrix};
pub use report::{Finding, FindingKind, Report, RunInfo};

/// Everything that can go wrong while probing.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{origin}: invalid matrix: {message}")]
    Matrix { origin: String, message: String },
    #[error("rules/agents.toml: {0}")]
    Catalogue(String),
    #[error("agent program {0:?} not found (give a path, or a name on PATH)")]
    ProgramNotFound(String),
    #[error("unknown agent id {0:?} (known: {1})")]
    UnknownAgent(String, String),
    #[error("no agent command given: use `airlock probe -- <agent> [args…]`")]
    NoCommand,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the agent sent no model request in any baseline run (exit {exit}); is it pointed at the base URL? stderr starts: {stderr:?}"
    )]
    NoModelRequests { exit: String, stderr: String },
    #[error("invalid option: {0}")]
    Options(String),
}

impl ProbeError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ProbeError {
        ProbeError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Whether to vary the hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostnameMode {
    /// When running as root and `unshare --uts` works.
    #[default]
    Auto,
    Off,
}

/// Called after each run: (runs done, runs total, what ran).
pub type Progress = Arc<dyn Fn(usize, usize, &str) + Send + Sync>;

/// What to probe and how.
#[derive(Clone)]
pub struct ProbeOptions {
    /// The agent program and its arguments, as given by the user.
    pub command: Vec<String>,
    /// Use this catalogue entry instead of detecting the agent from the program name.
    pub agent: Option<String>,
    /// Do not use the catalogue at all (only `extra_env` points the agent at the recorder).
    pub no_catalogue: bool,
    /// The prompt for `{prompt}` in the catalogue's arguments (used when only the program is
    /// given).
    pub prompt: String,
    /// More environment for the agent; `{base_url}` is replaced.
    pub extra_env: Vec<(String, String)>,
    pub matrix: Matrix,
    pub timeout: Duration,
    /// Baseline repetitions (at least 2) used to learn volatile fields.
    pub baseline_runs: usize,
    /// Runs at the same time.
    pub jobs: usize,
    pub output_limit: usize,
    pub hostname: HostnameMode,
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("command", &self.command)
            .field("agent", &self.agent)
            .field("timeout", &self.timeout)
            .field("baseline_runs", &self.baseline_runs)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// Default prompt: one short turn.
pub const DEFAULT_PROMPT: &str = "say hello";
/// Default time bound per run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time between the starts of baseline repetitions: more than a second, so that even
/// second-granular timestamps differ between them.
pub const BASELINE_STAGGER: Duration = Duration::from_millis(1100);

/// Default baseline repetitions.
pub const DEFAULT_BASELINE_RUNS: usize = 3;

impl ProbeOptions {
    /// Options with defaults for `command`.
    pub fn new(command: Vec<String>, matrix: Matrix) -> ProbeOptions {
        ProbeOptions {
            command,
            agent: None,
            no_catalogue: false,
            prompt: DEFAULT_PROMPT.to_string(),
            extra_env: Vec::new(),
            matrix,
            timeout: DEFAULT_TIMEOUT,
            baseline_runs: DEFAULT_BASELINE_RUNS,
            jobs: 2,
            output_limit: runner::DEFAULT_OUTPUT_LIMIT,
            hostname: HostnameMode::Auto,
            progress: None,
        }
    }
}

/// The resolved command, the agent profile used (if any) and the vendor hosts.
struct Prepared {
    cmd: runner::AgentCommand,
    profile: Option<AgentProfile>,
}

fn prepare(opts: &ProbeOptions) -> Result<Prepared, ProbeError> {
    let (program, user_args) = opts.command.split_first().ok_or(ProbeError::NoCommand)?;
    let catalogue = Catalogue::embedded()?;
    let profile = if opts.no_catalogue {
        None
    } else if let Some(id) = &opts.agent {
        Some(catalogue.by_id(id).cloned().ok_or_else(|| {
            let known: Vec<&str> = catalogue.agents().iter().map(|a| a.id.as_str()).collect();
            ProbeError::UnknownAgent(id.clone(), known.join(", "))
        })?)
    } else {
        catalogue.by_program(program).cloned()
    };
    let resolved = runner::resolve_program(program)?;
    let args = match (&profile, user_args.is_empty()) {
        (Some(p), true) => p
            .args
            .iter()
            .map(|a| a.replace("{prompt}", &opts.prompt))
            .collect(),
        _ => user_args.to_vec(),
    };
    let mut env: Vec<(String, String)> = profile
        .as_ref()
        .map(|p| p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for (k, v) in &opts.extra_env {
        if matrix::RESERVED_ENV.contains(&k.as_str()) {
            return Err(ProbeError::Options(format!(
                "--env {k}=… is set by the probe itself; use the matrix instead"
            )));
        }
        env.retain(|(x, _)| x != k);
        env.push((k.clone(), v.clone()));
    }
    Ok(Prepared {
        cmd: runner::AgentCommand {
            program: resolved,
            args,
            env,
        },
        profile,
    })
}

/// Runs the whole probe on a fresh Tokio runtime and returns the report.
pub fn probe_blocking(opts: ProbeOptions) -> Result<Report, ProbeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ProbeError::io("starting the async runtime", e))?;
    rt.block_on(probe(opts))
}

struct Planned {
    label: String,
    variation: Option<matrix::Variation>,
    settings: matrix::Settings,
}

/// Runs the whole probe: baseline repetitions, one run per variation, diff and attribution.
pub async fn probe(opts: ProbeOptions) -> Result<Report, ProbeError> {
    if opts.baseline_runs < 2 {
        return Err(ProbeError::Options(
            "at least 2 baseline runs are needed to learn what varies between identical runs"
                .into(),
        ));
    }
    let prepared = prepare(&opts)?;
    let mut notes = Vec::new();

    let unshare = match opts.hostname {
        HostnameMode::Off => {
            notes.push("hostname variation switched off".to_string());
            None
        }
        HostnameMode::Auto => match runner::uts_namespace_support().await {
            Ok(p) => Some(p),
            Err(why) => {
                notes.push(format!("hostname variation skipped: {why}"));
                None
            }
        },
    };
    let vendor_hosts: Vec<String> = prepared
        .profile
        .as_ref()
        .map(|p| p.vendor_hosts.clone())
        .unwrap_or_default();
    if vendor_hosts.is_empty() {
        notes.push("vendor-like base-URL hosts skipped: the agent is not in the catalogue".into());
    }
    match &prepared.profile {
        Some(p) => notes.push(format!(
            "agent: {} ({}), set-up from rules/agents.toml",
            p.name, p.id
        )),
        None => {
            notes.push("agent not in the catalogue: only --env points it at the recorder".into())
        }
    }

    let baseline = opts.matrix.baseline();
    let mut plan: Vec<Planned> = (0..opts.baseline_runs)
        .map(|i| Planned {
            label: format!("baseline #{}", i + 1),
            variation: None,
            settings: baseline.clone(),
        })
        .collect();
    for v in opts.matrix.variations(&vendor_hosts, unshare.is_some()) {
        plan.push(Planned {
            label: format!("{}={}", v.dimension.label(), v.value),
            settings: v.settings.clone(),
            variation: Some(v),
        });
    }

    let total = plan.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in plan.iter().enumerate() {
        let spec = runner::RunSpec {
            settings: p.settings.clone(),
            timeout: opts.timeout,
            output_limit: opts.output_limit,
            unshare: unshare.clone(),
        };
        let cmd = prepared.cmd.clone();
        let sem = sem.clone();
        let done = done.clone();
        let progress = opts.progress.clone();
        let label = p.label.clone();
        // Baseline repetitions start apart: two started in the same instant carry the same
        // timestamps, so what varies between identical runs (a session start time) would not be
        // learned, and every later run would differ there.
        let stagger = if p.variation.is_none() {
            BASELINE_STAGGER * u32::try_from(i).unwrap_or(u32::MAX)
        } else {
            Duration::ZERO
        };
        set.spawn(async move {
            tokio::time::sleep(stagger).await;
            let _permit = sem.acquire_owned().await;
            let r = runner::run_once(&cmd, &spec).await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            tracing::info!(run = %label, done = n, total, "probe run finished");
            if let Some(cb) = progress {
                cb(n, total, &label);
            }
            (i, r)
        });
    }
    let mut outcomes: Vec<Option<runner::RunOutcome>> = vec![None; total];
    while let Some(j) = set.join_next().await {
        let (i, r) =
            j.map_err(|e| ProbeError::io("a probe run", std::io::Error::other(e.to_string())))?;
        outcomes[i] = Some(r?);
    }
    let outcomes: Vec<runner::RunOutcome> = outcomes.into_iter().flatten().collect();
    if outcomes.len() != total {
        return Err(ProbeError::io(
            "a probe run",
            std::io::Error::other("run result missing"),
        ));
    }

    let docs: Vec<Vec<differ::RequestDoc>> = outcomes
        .iter()
        .map(|o| differ::normalise(&o.records, &o.run_dir, o.port))
        .collect();
    let nb = opts.baseline_runs;
    // The first baseline run with model requests is the reference.
    let Some(reference) = (0..nb).find(|&i| !docs[i].is_empty()) else {
        let o = &outcomes[0];
        return Err(ProbeError::NoModelRequests {
            exit: if o.timed_out {
                "timed out".into()
            } else {
                o.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "killed".into())
            },
            stderr: o.stderr.chars().take(300).collect(),
        });
    };
    let repeats: Vec<Vec<differ::RequestDoc>> = (0..nb)
        .filter(|&i| i != reference)
        .map(|i| docs[i].clone())
        .collect();
    let volatile = differ::Volatile::learn(&docs[reference], &repeats);

    let mut runs = Vec::with_capacity(total);
    let mut diffs: Vec<Vec<differ::Difference>> = Vec::with_capacity(total);
    for (i, (p, o)) in plan.iter().zip(&outcomes).enumerate() {
        let d = if p.variation.is_some() {
            differ::compare(&docs[reference], &docs[i], &volatile)
        } else {
            Vec::new()
        };
        runs.push(RunInfo::new(
            i,
            p.variation.as_ref(),
            o,
            docs[i].len(),
            d.len(),
        ));
        diffs.push(d);
    }
    let findings = report::attribute(&plan_variations(&plan), &runs, &diffs, nb);
    Ok(Report::new(
        &opts.command,
        prepared.profile.as_ref().map(|p| p.id.clone()),
        &prepared.cmd,
        baseline,
        runs,
        volatile.describe(),
        findings,
        notes,
    ))
}

fn plan_variations(plan: &[Planned]) -> Vec<Option<matrix::Variation>> {
    plan.iter().map(|p| p.variation.clone()).collect()
}
