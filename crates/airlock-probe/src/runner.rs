//! One run of the agent: a fresh temporary HOME and working directory, a clean environment,
//! its own recorder as model API and proxy, a time bound (the whole process group is killed on
//! timeout) and bounded stdout/stderr capture.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::ProbeError;
use crate::matrix::{HostClass, Settings};
use crate::recorder::{RecordedRequest, Recorder, RecorderConfig};

/// Default bound on each of stdout and stderr kept per run.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;

/// The agent command and how to point it at the recorder.
#[derive(Debug, Clone)]
pub struct AgentCommand {
    /// Absolute path of the program.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment; `{base_url}` in a value is replaced by the run's base URL.
    pub env: Vec<(String, String)>,
}

/// How to run one agent invocation.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub settings: Settings,
    pub timeout: Duration,
    pub output_limit: usize,
    /// Absolute path of `unshare` when the hostname is set in a private UTS namespace.
    pub unshare: Option<PathBuf>,
}

/// What one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub base_url: String,
    pub port: u16,
    /// The temporary directory of the run (deleted when the run ends); used to normalise paths.
    pub run_dir: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(skip)]
    pub records: Vec<RecordedRequest>,
}

/// Finds `program` (a path, or a name looked up in `PATH`).
pub fn resolve_program(program: &str) -> Result<PathBuf, ProbeError> {
    if program.is_empty() {
        return Err(ProbeError::ProgramNotFound(program.to_string()));
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if p.is_file() {
            Ok(std::path::absolute(&p).unwrap_or(p))
        } else {
            Err(ProbeError::ProgramNotFound(program.to_string()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(program);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    Err(ProbeError::ProgramNotFound(program.to_string()))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the hostname can be varied: running as root and `unshare --uts` works. Returns the
/// path of `unshare`, or why not.
pub async fn uts_namespace_support() -> Result<PathBuf, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("not running as root".into());
    }
    let unshare =
        resolve_program("unshare").map_err(|_| "`unshare` not found in PATH".to_string())?;
    let out = tokio::process::Command::new(&unshare)
        .args([
            "--uts",
            "--",
            "/bin/sh",
            "-c",
            "printf probe > /proc/sys/kernel/hostname",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), out).await {
        Ok(Ok(o)) if o.status.success() => Ok(unshare),
        Ok(Ok(o)) => Err(format!(
            "`unshare --uts` failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .chars()
                .take(200)
                .collect::<String>()
        )),
        Ok(Err(e)) => Err(format!("`unshare --uts` could not run: {e}")),
        Err(_) => Err("`unshare --uts` timed out".into()),
    }
}

/// The script run inside the UTS namespace: set the host name, then exec the agent.
const UTS_SCRIPT: &str = "printf '%s' \"$1\" > /proc/sys/kernel/hostname 2>/dev/null || hostname \"$1\" || exit 126; shift; exec \"$@\"";

async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(mut r: R, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

fn kill_group(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(p), sig);
    }
}

/// Runs the agent once under `spec`.
pub async fn run_once(cmd: &AgentCommand, spec: &RunSpec) -> Result<RunOutcome, ProbeError> {
    let s = &spec.settings;
    let recorder = Recorder::start(RecorderConfig {
        api_hosts: vec![
            s.base_host.host.clone(),
            "127.0.0.1".into(),
            "localhost".into(),
        ],
        ..RecorderConfig::default()
    })
    .await
    .map_err(|e| ProbeError::io("starting the recorder on 127.0.0.1", e))?;
    let port = recorder.port();
    let base_url = format!("http://{}:{port}", s.base_host.host);
    let proxy = recorder.url();

    let root = tempfile::Builder::new()
        .prefix("airlock-probe-")
        .tempdir()
        .map_err(|e| ProbeError::io("creating the run's temporary directory", e))?;
    let run_dir = root.path().to_path_buf();
    let home = run_dir.join(&s.home);
    let cwd = run_dir.join("proj");
    let tmp = run_dir.join("tmp");
    for d in [&home, &cwd, &tmp] {
        std::fs::create_dir_all(d)
            .map_err(|e| ProbeError::io(format!("creating {}", d.display()), e))?;
    }

    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".into(), home.display().to_string()),
        ("USER".into(), s.user.clone()),
        ("LOGNAME".into(), s.user.clone()),
        ("LANG".into(), s.locale.clone()),
        ("LC_ALL".into(), s.locale.clone()),
        ("TZ".into(), s.tz.clone()),
        ("TERM".into(), "dumb".into()),
        ("TMPDIR".into(), tmp.display().to_string()),
    ];
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        env.push((k.into(), proxy.clone()));
    }
    if s.base_host.class == HostClass::Loopback {
        for k in ["NO_PROXY", "no_proxy"] {
            env.push((k.into(), "127.0.0.1,localhost,::1".into()));
        }
    }
    for (k, v) in &cmd.env {
        env.push((k.clone(), v.replace("{base_url}", &base_url)));
    }
    for (k, v) in &s.env {
        env.push((k.clone(), v.clone()));
    }

    let (program, args): (PathBuf, Vec<String>) = match &spec.unshare {
        Some(unshare) => {
            let mut a = vec![
                "--uts".to_string(),
                "--".into(),
                "/bin/sh".into(),
                "-c".into(),
                UTS_SCRIPT.into(),
                "sh".into(),
                s.hostname.clone(),
                cmd.program.display().to_string(),
            ];
            a.extend(cmd.args.iter().cloned());
            (unshare.clone(), a)
        }
        None => (cmd.program.clone(), cmd.args.clone()),
    };

    let started = Instant::now();
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .env_clear()
        .envs(env)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProbeError::io(format!("starting {}", cmd.program.display()), e))?;
    let pid = child.id();
    let limit = spec.output_limit;
    let out_task = child
        .stdout
        .take()
        .map(|o| tokio::spawn(read_bounded(o, limit)));
    let err_task = child
        .stderr
        .take()
        .map(|o| tokio::spawn(read_bounded(o, limit)));

    let (status, timed_out) = match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(r) => (r.ok(), false),
        Err(_) => {
            if let Some(p) = pid {
                kill_group(p, Signal::SIGTERM);
            }
            let st = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    if let Some(p) = pid {
                        kill_group(p, Signal::SIGKILL);
                    }
                    child.wait().await.ok()
                }
            };
            (st, true)
        }
    };
    // Whatever the agent left behind in its process group goes too.
    if let Some(p) = pid {
        kill_group(p, Signal::SIGKILL);
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    let collect = |t: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>| async move {
        match t {
            Some(t) => match tokio::time::timeout(Duration::from_secs(2), t).await {
                Ok(Ok(x)) => x,
                _ => (Vec::new(), true),
            },
            None => (Vec::new(), false),
        }
    };
    let (stdout, stdout_truncated) = collect(out_task).await;
    let (stderr, stderr_truncated) = collect(err_task).await;
    // Let in-flight connections finish recording.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let records = recorder.records();
    drop(recorder);

    Ok(RunOutcome {
        base_url,
        port,
        run_dir: run_dir.display().to_string(),
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        duration_ms,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        stdout_truncated,
        stderr_truncated,
        records,
    })
}
