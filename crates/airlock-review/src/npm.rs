//! Fetching npm packages with the machine's own npm (its registry, proxy and auth settings):
//! `npm pack SPEC --json --ignore-scripts` into a temporary folder. Nothing is installed and no
//! package script ever runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ReviewError;

/// A fetched tarball.
#[derive(Debug, Clone)]
pub struct Packed {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
}

/// Reject specs that could be read as options or carry control characters.
pub fn validate_spec(spec: &str) -> Result<(), ReviewError> {
    let bad = |m: &str| {
        Err(ReviewError::Fetch {
            spec: spec.to_string(),
            message: m.to_string(),
        })
    };
    if spec.is_empty() || spec.len() > 512 {
        return bad("empty or too long");
    }
    if spec.starts_with('-') {
        return bad("a package spec cannot start with '-'");
    }
    if spec.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("a package spec cannot contain spaces or control characters");
    }
    Ok(())
}

/// Run `npm pack` with a timeout.
pub fn pack(npm: &str, spec: &str, dest: &Path, timeout: Duration) -> Result<Packed, ReviewError> {
    validate_spec(spec)?;
    let err = |message: String| ReviewError::Fetch {
        spec: spec.to_string(),
        message,
    };
    let mut child = Command::new(npm)
        .arg("pack")
        .arg(spec)
        .arg("--json")
        .arg("--ignore-scripts")
        .arg("--pack-destination")
        .arg(dest)
        .current_dir(dest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("could not run `{npm}`: {e} (is npm installed?)")))?;
    let mut stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| err("no stderr".into()))?;
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut stdout).take(16 << 20).read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut stderr).take(1 << 20).read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "npm pack did not finish within {} s",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(err(e.to_string())),
        }
    };
    let out = out_t.join().unwrap_or_default();
    let errb = err_t.join().unwrap_or_default();
    if !status.success() {
        let msg = String::from_utf8_lossy(&errb);
        let line = msg
            .lines()
            .filter(|l| l.contains("ERR"))
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(err(format!(
            "npm pack failed ({status}): {}",
            if line.is_empty() {
                msg.trim().chars().take(300).collect()
            } else {
                line
            }
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| err(format!("unexpected npm pack output: {e}")))?;
    let first = v
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| err("npm pack printed no package".into()))?;
    let filename = first
        .get("filename")
        .and_then(|f| f.as_str())
        .ok_or_else(|| err("npm pack output has no filename".into()))?;
    // npm prints the bare file name; never let it point elsewhere.
    let fname = Path::new(filename)
        .file_name()
        .ok_or_else(|| err("bad file name from npm".into()))?;
    let path = dest.join(fname);
    if !path.is_file() {
        return Err(err(format!(
            "npm pack reported {filename} but it is not in {}",
            dest.display()
        )));
    }
    Ok(Packed {
        path,
        name: first
            .get("name")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string(),
        version: first
            .get("version")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string(),
    })
}

/// Choose the platform package among `optionalDependencies` (e.g. `linux-x64`, not musl).
pub fn platform_dependency<'d>(
    deps: &'d [(String, String)],
    platform: &str,
) -> Option<&'d (String, String)> {
    let suffix = format!("-{platform}");
    deps.iter().find(|(n, _)| n.ends_with(&suffix)).or_else(|| {
        deps.iter()
            .find(|(n, _)| n.contains(platform) && !n.contains("musl"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(validate_spec("@anthropic-ai/claude-code@latest").is_ok());
        assert!(validate_spec("--registry=http://evil").is_err());
        assert!(validate_spec("a b").is_err());
        assert!(validate_spec("").is_err());
    }

    #[test]
    fn platform_choice() {
        let d = vec![
            ("@x/cli-linux-x64-musl".to_string(), "1".to_string()),
            ("@x/cli-linux-x64".to_string(), "1".to_string()),
            ("@x/cli-darwin-arm64".to_string(), "1".to_string()),
        ];
        assert_eq!(
            platform_dependency(&d, "linux-x64").unwrap().0,
            "@x/cli-linux-x64"
        );
        assert!(platform_dependency(&d, "win32-x64").is_none());
    }
}
