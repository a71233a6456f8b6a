//! The probe report: attribution of differences to dimensions, and its renderings (terminal
//! text, JSON, self-contained HTML).
//!
//! JSON field names are stable and documented in docs/probe.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::differ::{Change, Difference, Hunk, is_invisible};
use crate::matrix::{HostClass, Settings, Variation};
use crate::recorder::Via;
use crate::runner::{AgentCommand, RunOutcome};

/// Report schema identifier.
pub const SCHEMA: &str = "airlock-probe/1";

/// What kind of difference a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Look-alike or invisible characters (or whitespace-only changes) in a string.
    Covert,
    /// Visible text changed (a date format, a time zone written in words).
    Plain,
    /// A field, a request or a value appeared, disappeared or changed type.
    Structural,
    /// Other hosts the agent tried to reach changed.
    Network,
    /// The agent's exit status changed.
    Behaviour,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Covert => "covert",
            FindingKind::Plain => "plain",
            FindingKind::Structural => "structural",
            FindingKind::Network => "network",
            FindingKind::Behaviour => "behaviour",
        }
    }
}

/// One value of a dimension that produces the difference, and what it changes.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<HostClass>,
    pub covert: bool,
    pub change: Change,
}

/// A difference attributed to one dimension.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// `TZ`, `LANG/LC_ALL`, `base-URL host`, `HOME`, `USER`, `hostname`, `env NAME`.
    pub dimension: String,
    /// `POST /v1/messages #1`, `(network)` or `(process)`.
    pub request: String,
    /// `messages[0].content[0].text`, `headers["user-agent"]`, `other hosts`, `exit status`.
    pub path: String,
    /// One line: the first change in words.
    pub summary: String,
    pub flipped_by: Vec<Flip>,
    /// Values of the same dimension that leave this place as in the baseline.
    pub not_flipped_by: Vec<String>,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: usize,
    /// `baseline #1`, `TZ=Asia/Shanghai`
    pub label: String,
    pub baseline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<HostClass>,
    pub base_url: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub model_requests: usize,
    /// How the model requests reached the recorder: direct, proxy, tunnel.
    pub api_via: Vec<Via>,
    /// Other hosts the agent tried to reach (refused), `host:port`, with counts.
    pub other_hosts: BTreeMap<String, usize>,
    pub differences: usize,
    /// The start of the agent's output (bounded).
    pub stdout_excerpt: String,
    pub stderr_excerpt: String,
}

const EXCERPT: usize = 400;

fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT).collect();
    if s.chars().nth(EXCERPT).is_some() {
        out.push('…');
    }
    out
}

impl RunInfo {
    pub(crate) fn new(
        id: usize,
        variation: Option<&Variation>,
        o: &RunOutcome,
        model_requests: usize,
        differences: usize,
    ) -> RunInfo {
        let mut other_hosts = BTreeMap::new();
        let mut api_via = BTreeSet::new();
        for r in &o.records {
            if r.api.is_some() {
                api_via.insert(r.via);
            } else if r.status == 403 {
                *other_hosts.entry(r.host.clone()).or_insert(0) += 1;
            }
        }
        let api_via: Vec<Via> = api_via.into_iter().collect();
        RunInfo {
            id: id + 1,
            label: match variation {
                Some(v) => format!("{}={}", v.dimension.label(), v.value),
                None => format!("baseline #{}", id + 1),
            },
            baseline: variation.is_none(),
            dimension: variation.map(|v| v.dimension.label()),
            value: variation.map(|v| v.value.clone()),
            class: variation.and_then(|v| v.class),
            base_url: o.base_url.clone(),
            exit_code: o.exit_code,
            timed_out: o.timed_out,
            duration_ms: o.duration_ms,
            model_requests,
            api_via,
            other_hosts,
            differences,
            stdout_excerpt: excerpt(&o.stdout),
            stderr_excerpt: excerpt(&o.stderr),
        }
    }

    fn status(&self) -> Value {
        if self.timed_out {
            Value::String("timed out".into())
        } else {
            match self.exit_code {
                Some(c) => Value::from(c),
                None => Value::String("killed by a signal".into()),
            }
        }
    }
}

fn kind_of(d: &Difference) -> FindingKind {
    if d.covert {
        FindingKind::Covert
    } else {
        match d.change {
            Change::Text { .. } => FindingKind::Plain,
            _ => FindingKind::Structural,
        }
    }
}

fn summarize(change: &Change) -> String {
    match change {
        Change::Text { hunks } => {
            let Some(h) = hunks.first() else {
                return "text changed".into();
            };
            let more = if hunks.len() > 1 {
                format!(" (+{} more)", hunks.len() - 1)
            } else {
                String::new()
            };
            match h.chars.first() {
                Some(c) if h.chars.len() == 1 || h.covert => format!("{c} at :{}{more}", c.at),
                _ => format!("{} → {} at :{}{more}", quote(&h.old), quote(&h.new), h.at),
            }
        }
        Change::Added { new } => format!("added: {}", short_json(new)),
        Change::Removed { old } => format!("removed: {}", short_json(old)),
        Change::Value { old, new } => format!("{} → {}", short_json(old), short_json(new)),
    }
}

fn short_json(v: &Value) -> String {
    let s = match v {
        Value::String(s) => quote(s),
        other => other.to_string(),
    };
    let mut out: String = s.chars().take(120).collect();
    if s.chars().nth(120).is_some() {
        out.push('…');
    }
    out
}

/// Quotes a string for display, escaping invisible and control characters.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    out.push_str(&visible(s));
    out.push('"');
    out
}

/// Escapes invisible and control characters as `\u{…}` so they show.
pub fn visible(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:04X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Groups the differences of every variation run into findings per dimension and place.
pub(crate) fn attribute(
    variations: &[Option<Variation>],
    runs: &[RunInfo],
    diffs: &[Vec<Difference>],
    baseline_runs: usize,
) -> Vec<Finding> {
    let mut map: BTreeMap<(String, String, String), Finding> = BTreeMap::new();
    let mut add = |v: &Variation,
                   kind: FindingKind,
                   request: String,
                   path: String,
                   change: Change,
                   covert: bool| {
        let dim = v.dimension.label();
        let f = map
            .entry((dim.clone(), request.clone(), path.clone()))
            .or_insert_with(|| Finding {
                kind,
                dimension: dim,
                request,
                path,
                summary: summarize(&change),
                flipped_by: Vec::new(),
                not_flipped_by: Vec::new(),
            });
        f.kind = f.kind.min(kind);
        if covert && !f.flipped_by.iter().any(|x| x.covert) {
            f.summary = summarize(&change);
        }
        f.flipped_by.push(Flip {
            value: v.value.clone(),
            class: v.class,
            covert,
            change,
        });
    };

    let base = &runs[..baseline_runs.min(runs.len())];
    let base_hosts: BTreeSet<&String> = base.iter().flat_map(|r| r.other_hosts.keys()).collect();
    let always_hosts: BTreeSet<&String> = base_hosts
        .iter()
        .copied()
        .filter(|h| base.iter().all(|r| r.other_hosts.contains_key(*h)))
        .collect();
    let base_status: BTreeSet<String> = base.iter().map(|r| r.status().to_string()).collect();

    for (i, v) in variations.iter().enumerate() {
        let Some(v) = v else { continue };
        for d in &diffs[i] {
            add(
                v,
                kind_of(d),
                d.request.clone(),
                d.path.to_string(),
                d.change.clone(),
                d.covert,
            );
        }
        let run = &runs[i];
        let extra: Vec<Value> = run
            .other_hosts
            .keys()
            .filter(|h| !base_hosts.contains(h))
            .map(|h| Value::String(h.clone()))
            .collect();
        let missing: Vec<Value> = always_hosts
            .iter()
            .filter(|h| !run.other_hosts.contains_key(**h))
            .map(|h| Value::String((*h).clone()))
            .collect();
        if !extra.is_empty() {
            add(
                v,
                FindingKind::Network,
                "(network)".into(),
                "other hosts".into(),
                Change::Added {
                    new: Value::Array(extra),
                },
                false,
            );
        }
        if !missing.is_empty() {
            add(
                v,
                FindingKind::Network,
                "(network)".into(),
                "other hosts (not contacted)".into(),
                Change::Removed {
                    old: Value::Array(missing),
                },
                false,
            );
        }
        if base_status.len() == 1 {
            let st = run.status();
            if !base_status.contains(&st.to_string()) {
                add(
                    v,
                    FindingKind::Behaviour,
                    "(process)".into(),
                    "exit status".into(),
                    Change::Value {
                        old: base[0].status(),
                        new: st,
                    },
                    false,
                );
            }
        }
    }

    let mut findings: Vec<Finding> = map.into_values().collect();
    for f in &mut findings {
        let flipped: BTreeSet<&str> = f.flipped_by.iter().map(|x| x.value.as_str()).collect();
        f.not_flipped_by = variations
            .iter()
            .flatten()
            .filter(|v| v.dimension.label() == f.dimension && !flipped.contains(v.value.as_str()))
            .map(|v| v.value.clone())
            .collect();
    }
    findings.sort_by(|a, b| {
        (a.kind, &a.dimension, &a.request, &a.path).cmp(&(
            b.kind,
            &b.dimension,
            &b.request,
            &b.path,
        ))
    });
    findings
}

/// Overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing the agent sends depends on the environment (within this matrix).
    Clean,
    /// Some of what the agent sends depends on the environment.
    EnvironmentDependent,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub baseline_runs: usize,
    pub variations: usize,
    pub findings: usize,
    pub covert: usize,
    pub plain: usize,
    pub structural: usize,
    pub network: usize,
    pub behaviour: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub airlock_version: &'static str,
    /// The command as given.
    pub command: Vec<String>,
    /// What was run: program and arguments after catalogue set-up.
    pub program: String,
    pub args: Vec<String>,
    /// Names of the environment variables set from the catalogue and `--env` (values are not
    /// shown: they may hold keys).
    pub agent_env: Vec<String>,
    pub agent: Option<String>,
    pub baseline: Settings,
    pub verdict: Verdict,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    pub runs: Vec<RunInfo>,
    /// Places learned as volatile from the baseline repetitions.
    pub volatile: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        command: &[String],
        agent: Option<String>,
        cmd: &AgentCommand,
        baseline: Settings,
        runs: Vec<RunInfo>,
        volatile: Vec<String>,
        findings: Vec<Finding>,
        notes: Vec<String>,
    ) -> Report {
        let count = |k: FindingKind| findings.iter().filter(|f| f.kind == k).count();
        let baseline_runs = runs.iter().filter(|r| r.baseline).count();
        let summary = Summary {
            runs: runs.len(),
            baseline_runs,
            variations: runs.len() - baseline_runs,
            findings: findings.len(),
            covert: count(FindingKind::Covert),
            plain: count(FindingKind::Plain),
            structural: count(FindingKind::Structural),
            network: count(FindingKind::Network),
            behaviour: count(FindingKind::Behaviour),
        };
        Report {
            schema: SCHEMA,
            airlock_version: env!("CARGO_PKG_VERSION"),
            command: command.to_vec(),
            program: cmd.program.display().to_string(),
            args: cmd.args.clone(),
            agent_env: cmd.env.iter().map(|(k, _)| k.clone()).collect(),
            agent,
            baseline,
            verdict: if findings.is_empty() {
                Verdict::Clean
            } else {
                Verdict::EnvironmentDependent
            },
            summary,
            findings,
            runs,
            volatile,
            notes,
        }
    }

    /// 0 clean, 1 environment-dependent differences found.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Clean => 0,
            Verdict::EnvironmentDependent => 1,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    fn baseline_line(&self) -> String {
        let b = &self.baseline;
        let mut s = format!(
            "TZ={} LANG={} base-URL host={} ({}) HOME={{run_dir}}/{} USER={} hostname={}",
            b.tz, b.locale, b.base_host.host, b.base_host.class, b.home, b.user, b.hostname
        );
        for (k, v) in &b.env {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// Terminal text. `color` adds ANSI colours.
    pub fn to_human(&self, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} {}{}",
            paint("1", "airlock probe:"),
            self.program,
            if self.args.is_empty() {
                String::new()
            } else {
                format!(" {}", self.args.join(" "))
            }
        );
        if let Some(a) = &self.agent {
            let _ = writeln!(o, "agent: {a}");
        }
        let s = &self.summary;
        let _ = writeln!(
            o,
            "{} runs ({} baseline, {} variations); baseline: {}",
            s.runs,
            s.baseline_runs,
            s.variations,
            self.baseline_line()
        );
        let _ = writeln!(o);
        match self.verdict {
            Verdict::Clean => {
                let _ = writeln!(
                    o,
                    "{}",
                    paint(
                        "32;1",
                        "CLEAN: nothing the agent sent depends on the environment varied here"
                    )
                );
            }
            Verdict::EnvironmentDependent => {
                let _ = writeln!(
                    o,
                    "{} {} finding(s): {} covert, {} plain, {} structural, {} network, {} behaviour",
                    paint("31;1", "ENVIRONMENT-DEPENDENT:"),
                    s.findings,
                    s.covert,
                    s.plain,
                    s.structural,
                    s.network,
                    s.behaviour
                );
            }
        }
        for f in &self.findings {
            let _ = writeln!(o);
            let tag = match f.kind {
                FindingKind::Covert => paint("31;1", "[covert]"),
                FindingKind::Plain => paint("33;1", "[plain]"),
                k => paint("36;1", &format!("[{}]", k.as_str())),
            };
            let _ = writeln!(
                o,
                "{tag} {} flips {} {}",
                paint("1", &f.dimension),
                f.request,
                f.path
            );
            let _ = writeln!(o, "    {}", f.summary);
            for fl in &f.flipped_by {
                let class = fl.class.map(|c| format!(" ({c})")).unwrap_or_default();
                let _ = writeln!(o, "    {}={}{}:", f.dimension, fl.value, class);
                render_change_human(&mut o, &fl.change);
            }
            if !f.not_flipped_by.is_empty() {
                let _ = writeln!(o, "    not flipped by: {}", f.not_flipped_by.join(", "));
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{}",
            paint("1", "Other hosts contacted (refused by the recorder):")
        );
        let hosts_of = |r: &RunInfo| -> String {
            if r.other_hosts.is_empty() {
                "none".to_string()
            } else {
                r.other_hosts
                    .iter()
                    .map(|(h, n)| format!("{h} ({n}×)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        if let Some(first) = self.runs.first() {
            let same = self
                .runs
                .iter()
                .filter(|r| r.other_hosts == first.other_hosts)
                .count();
            let _ = writeln!(
                o,
                "  {:<40} {}",
                format!("{} ({same} of {} runs alike)", first.label, self.runs.len()),
                hosts_of(first)
            );
            for r in self
                .runs
                .iter()
                .filter(|r| r.other_hosts != first.other_hosts)
            {
                let _ = writeln!(o, "  {:<40} {}", r.label, hosts_of(r));
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "{}", paint("1", "Runs:"));
        for r in &self.runs {
            let st = if r.timed_out {
                "timed out".to_string()
            } else {
                r.exit_code
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| "killed".into())
            };
            let via: Vec<&str> = r
                .api_via
                .iter()
                .map(|v| match v {
                    Via::Direct => "direct",
                    Via::Proxy => "proxy",
                    Via::Tunnel => "tunnel",
                    Via::Connect => "connect",
                })
                .collect();
            let _ = writeln!(
                o,
                "  #{:<3} {:<40} {:<10} {:>6.1}s  {} model request(s){}  {} difference(s)",
                r.id,
                r.label,
                st,
                r.duration_ms as f64 / 1000.0,
                r.model_requests,
                if via.is_empty() {
                    String::new()
                } else {
                    format!(" via {}", via.join("+"))
                },
                r.differences
            );
        }
        if !self.volatile.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "{}",
                paint(
                    "1",
                    "Volatile between identical runs (ignored unless their shape changes):"
                )
            );
            for v in self.volatile.iter().take(40) {
                let _ = writeln!(o, "  {v}");
            }
            if self.volatile.len() > 40 {
                let _ = writeln!(o, "  … {} more", self.volatile.len() - 40);
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(o, "{}", paint("1", "Notes:"));
            for n in &self.notes {
                let _ = writeln!(o, "  - {n}");
            }
        }
        o
    }

    /// A self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut o = String::new();
        o.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>airlock probe report</title>\n<style>\n");
        o.push_str("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}code,pre,td.m{font-family:ui-monospace,monospace}\n");
        o.push_str("table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\n");
        o.push_str(".covert{background:#fdd}.plain{background:#ffd}.structural,.network,.behaviour{background:#def}\n");
        o.push_str("del{background:#fbb}ins{background:#bfb}.clean{color:#070}.dirty{color:#a00}\n</style></head><body>\n");
        let _ = writeln!(o, "<h1>airlock probe</h1>");
        let _ = writeln!(
            o,
            "<p><code>{} {}</code>{}</p>",
            esc(&self.program),
            esc(&self.args.join(" ")),
            self.agent
                .as_ref()
                .map(|a| format!(" — agent <b>{}</b>", esc(a)))
                .unwrap_or_default()
        );
        let s = &self.summary;
        let _ = writeln!(
            o,
            "<p>{} runs ({} baseline, {} variations). Baseline: <code>{}</code></p>",
            s.runs,
            s.baseline_runs,
            s.variations,
            esc(&self.baseline_line())
        );
        match self.verdict {
            Verdict::Clean => {
                let _ = writeln!(o, "<h2 class=\"clean\">Clean</h2>");
            }
            Verdict::EnvironmentDependent => {
                let _ = writeln!(
                    o,
                    "<h2 class=\"dirty\">Environment-dependent: {} finding(s) — {} covert, {} plain, {} structural, {} network, {} behaviour</h2>",
                    s.findings, s.covert, s.plain, s.structural, s.network, s.behaviour
                );
            }
        }
        if !self.findings.is_empty() {
            o.push_str("<table><tr><th>kind</th><th>dimension</th><th>where</th><th>flipped by</th><th>not flipped by</th></tr>\n");
            for f in &self.findings {
                let _ = write!(
                    o,
                    "<tr class=\"{k}\"><td>{k}</td><td>{}</td><td class=\"m\">{}<br>{}<br><small>{}</small></td><td>",
                    esc(&f.dimension),
                    esc(&f.request),
                    esc(&f.path),
                    esc(&f.summary),
                    k = f.kind.as_str()
                );
                for fl in &f.flipped_by {
                    let class = fl.class.map(|c| format!(" ({c})")).unwrap_or_default();
                    let _ = write!(o, "<p><b>{}</b>{}</p>", esc(&fl.value), esc(&class));
                    render_change_html(&mut o, &fl.change);
                }
                let _ = writeln!(
                    o,
                    "</td><td>{}</td></tr>",
                    esc(&f.not_flipped_by.join(", "))
                );
            }
            o.push_str("</table>\n");
        }
        o.push_str("<h2>Runs</h2><table><tr><th>#</th><th>run</th><th>status</th><th>time</th><th>model requests</th><th>differences</th><th>other hosts (refused)</th></tr>\n");
        for r in &self.runs {
            let hosts: Vec<String> = r
                .other_hosts
                .iter()
                .map(|(h, n)| format!("{h} ({n}×)"))
                .collect();
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}s</td><td>{}</td><td>{}</td><td class=\"m\">{}</td></tr>",
                r.id,
                esc(&r.label),
                esc(&r.status().to_string()),
                r.duration_ms as f64 / 1000.0,
                r.model_requests,
                r.differences,
                esc(&hosts.join(", "))
            );
        }
        o.push_str("</table>\n");
        if !self.volatile.is_empty() {
            o.push_str("<h2>Volatile between identical runs</h2><ul>\n");
            for v in &self.volatile {
                let _ = writeln!(o, "<li><code>{}</code></li>", esc(v));
            }
            o.push_str("</ul>\n");
        }
        if !self.notes.is_empty() {
            o.push_str("<h2>Notes</h2><ul>\n");
            for n in &self.notes {
                let _ = writeln!(o, "<li>{}</li>", esc(n));
            }
            o.push_str("</ul>\n");
        }
        o.push_str("</body></html>\n");
        o
    }
}

fn render_hunk_human(o: &mut String, h: &Hunk) {
    let tag = if h.covert { "covert" } else { "plain" };
    let vol = if h.in_volatile {
        ", shape change inside a varying value"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "      :{} [{tag}{vol}] …{}[{} → {}]{}…",
        h.at,
        visible(&h.before),
        quote(&h.old),
        quote(&h.new),
        visible(&h.after)
    );
    for c in h.chars.iter().take(6) {
        let _ = writeln!(o, "         {c} at :{}", c.at);
    }
    let more = h.more_chars + h.chars.len().saturating_sub(6);
    if more > 0 {
        let _ = writeln!(o, "         … {more} more character change(s)");
    }
}

fn render_change_human(o: &mut String, c: &Change) {
    match c {
        Change::Text { hunks } => {
            for h in hunks.iter().take(8) {
                render_hunk_human(o, h);
            }
            if hunks.len() > 8 {
                let _ = writeln!(o, "      … {} more change(s)", hunks.len() - 8);
            }
        }
        other => {
            let _ = writeln!(o, "      {}", summarize(other));
        }
    }
}

fn render_change_html(o: &mut String, c: &Change) {
    match c {
        Change::Text { hunks } => {
            for h in hunks.iter().take(8) {
                let _ = write!(
                    o,
                    "<div class=\"m\">:{} …{}<del>{}</del><ins>{}</ins>{}…</div><ul>",
                    h.at,
                    esc(&visible(&h.before)),
                    esc(&visible(&h.old)),
                    esc(&visible(&h.new)),
                    esc(&visible(&h.after))
                );
                for ch in &h.chars {
                    let _ = write!(
                        o,
                        "<li class=\"m\">{} at :{}</li>",
                        esc(&ch.to_string()),
                        ch.at
                    );
                }
                o.push_str("</ul>");
            }
        }
        other => {
            let _ = write!(o, "<div class=\"m\">{}</div>", esc(&summarize(other)));
        }
    }
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(visible("a\u{200B}b\n"), "a\\u{200B}b\\n");
    }
}
