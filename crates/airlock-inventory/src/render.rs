//! Output: the human table, the remediation script, and the commands in it.
//!
//! Commands are printed, never run. Paths are quoted for a POSIX shell; every value that came
//! from the scanned tree is stripped of control characters before it reaches a terminal.

use std::fmt::Write as _;

use airlock_policy::Agent;

use crate::{Finding, Remedy, Report};

/// Quote for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Replace control characters (terminal escapes, newlines) with `?`.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The commands that would remove (or, when an advisory names a fixed version, update) a
/// denied finding.
pub(crate) fn remediation(remedy: &Remedy, agent: &Agent, fixed: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    match remedy {
        Remedy::Npm {
            manager,
            prefix,
            package,
        } => {
            let pkg = sh_quote(package);
            let at = |v: &str| sh_quote(&format!("{package}@{v}"));
            match *manager {
                "pnpm" => {
                    if let Some(v) = fixed {
                        out.push(format!("pnpm add -g {}", at(v)));
                    }
                    out.push(format!("pnpm remove -g {pkg}"));
                }
                "bun" => {
                    if let Some(v) = fixed {
                        out.push(format!("bun add -g {}", at(v)));
                    }
                    out.push(format!("bun remove -g {pkg}"));
                }
                "volta" => {
                    if let Some(v) = fixed {
                        out.push(format!("volta install {}", at(v)));
                    }
                    out.push(format!("volta uninstall {pkg}"));
                }
                _ => {
                    let p = sh_quote(prefix);
                    if let Some(v) = fixed {
                        out.push(format!("npm install -g --prefix {p} {}", at(v)));
                    }
                    out.push(format!("npm uninstall -g --prefix {p} {pkg}"));
                }
            }
        }
        Remedy::Path { path, dir } => {
            if let Some(v) = fixed {
                out.push(format!(
                    "# update {} to {v} or later with its own installer",
                    agent.name
                ));
            }
            let flag = if *dir { "-rf" } else { "-f" };
            out.push(format!("rm {flag} {}", sh_quote(path)));
        }
        Remedy::NpmOwned { path, package_dir } => {
            out.push(format!(
                "# {} is a launcher of the npm package at {}; remove or update that package",
                printable(path),
                printable(package_dir)
            ));
        }
        Remedy::Extension { cli, id } => {
            if let Some(v) = fixed {
                out.push(format!(
                    "{cli} --install-extension {}",
                    sh_quote(&format!("{id}@{v}"))
                ));
            }
            out.push(format!("{cli} --uninstall-extension {}", sh_quote(id)));
        }
        Remedy::Config { path } => {
            out.push(
                "# configuration (may hold credentials and history; back it up first)".to_string(),
            );
            out.push(format!("rm -rf {}", sh_quote(path)));
        }
        Remedy::Process { pid } => {
            out.push(format!("kill {pid}"));
        }
        Remedy::JetBrains { path, dir, ide } => {
            out.push(format!(
                "# quit {} first (or remove the plugin in its Settings | Plugins)",
                printable(ide)
            ));
            let flag = if *dir { "-rf" } else { "-f" };
            out.push(format!("rm {flag} {}", sh_quote(path)));
        }
    }
    // With an update available, the removal is an alternative: comment it out.
    if fixed.is_some() && out.len() > 1 {
        for line in out.iter_mut().skip(1) {
            if !line.starts_with('#') {
                *line = format!("# or: {line}");
            }
        }
    }
    out
}

/// The remediation script for every denied finding.
pub fn script(report: &Report) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let _ = writeln!(
        s,
        "# airlock inventory --remediate: review before running. Nothing has been run."
    );
    let _ = writeln!(
        s,
        "# machine {} ({}), scanned {}",
        printable(&report.hostname),
        printable(&report.machine_id),
        printable(&report.scanned_at)
    );
    let denied: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| !f.verdict.allow)
        .collect();
    if denied.is_empty() {
        let _ = writeln!(s, "# nothing to do: no finding is denied by policy");
        return s;
    }
    for f in denied {
        let _ = writeln!(s);
        let user = f
            .user
            .as_deref()
            .map(|u| format!(", user {}", printable(u)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "# {} {} ({}{}) at {}: {}",
            f.name,
            f.version
                .as_deref()
                .map(printable)
                .unwrap_or_else(|| "(version unknown)".into()),
            f.kind.as_str(),
            user,
            printable(&f.location),
            f.verdict.rule
        );
        for line in &f.remediation {
            let _ = writeln!(s, "{line}");
        }
    }
    s
}

/// The human table.
pub fn human(report: &Report) -> String {
    let header = [
        "TOOL",
        "VERSION",
        "KIND",
        "LOCATION",
        "ROUTING",
        "ADVISORIES",
        "VERDICT",
    ];
    let rows: Vec<[String; 7]> = report
        .findings
        .iter()
        .map(|f| {
            let mut routing = f.routing.via.as_str().to_string();
            if let Some(u) = f.routing.base_url.as_deref().or(f.routing.proxy.as_deref()) {
                routing = format!("{routing} ({})", printable(u));
            }
            if let Some(t) = &f.routing.telemetry {
                routing = format!("{routing}, telemetry {t}");
            }
            let location = match (f.pid, &f.manager) {
                (Some(pid), _) => format!("pid {pid} {}", printable(&f.location)),
                (None, Some(m)) => match &f.ide {
                    Some(ide) => format!(
                        "{} [{m} {} {}]",
                        printable(&f.location),
                        printable(&ide.product),
                        printable(&ide.version)
                    ),
                    None => format!("{} [{m}]", printable(&f.location)),
                },
                _ => printable(&f.location),
            };
            [
                f.tool.clone(),
                f.version
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "-".into()),
                f.kind.as_str().to_string(),
                location,
                routing,
                if f.advisories.is_empty() {
                    "-".into()
                } else {
                    f.advisories.join(",")
                },
                if f.verdict.allow {
                    "allowed".into()
                } else {
                    format!("DENIED ({})", f.verdict.rule)
                },
            ]
        })
        .collect();
    let mut w = header.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 7]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let pad = w[i] - c.chars().count();
                l.push_str(c);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    let _ = writeln!(
        out,
        "Inventory of {} (machine {}), user {}, root {}, {}",
        printable(&report.hostname),
        printable(&report.machine_id),
        printable(&report.user),
        printable(&report.root),
        printable(&report.scanned_at)
    );
    if rows.is_empty() {
        out.push_str("No AI coding agents found.\n");
    } else {
        line(&mut out, header);
        for r in &rows {
            line(&mut out, r.each_ref().map(String::as_str));
        }
    }
    let mut messages: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| !f.verdict.allow)
        .map(|f| f.verdict.message.as_str())
        .collect();
    messages.sort();
    messages.dedup();
    if !messages.is_empty() {
        out.push('\n');
        for m in messages {
            let _ = writeln!(out, "denied: {m}");
        }
    }
    let _ = writeln!(
        out,
        "\n{} finding(s), {} denied, {} error(s){}",
        report.summary.findings,
        report.summary.denied,
        report.summary.errors,
        if report.summary.denied > 0 {
            "; run with --remediate for the commands that would fix it"
        } else {
            ""
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/usr/lib"), "/usr/lib");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(printable("a\u{1b}[31mb\n"), "a?[31mb?");
    }
}
