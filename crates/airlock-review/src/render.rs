//! Report output: human terminal text (optional ANSI colour), JSON, SARIF 2.1.0 and a
//! standalone HTML page (inline CSS, every value escaped).

use std::fmt::Write as _;

use serde_json::json;

use crate::diff::Diff;
use crate::model::{Decision, Evidence, Report, Severity};

/// Decoded strings shown in the human report (all are in JSON/HTML).
pub const HUMAN_DECODED_LIMIT: usize = 40;

struct Paint(bool);

impl Paint {
    fn c(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn sev(&self, s: Severity) -> String {
        let code = match s {
            Severity::Critical => "1;35",
            Severity::High => "1;31",
            Severity::Medium => "33",
            Severity::Low => "36",
            Severity::Info => "2",
        };
        self.c(code, &format!("{:<8}", s.as_str().to_uppercase()))
    }
    fn decision(&self, d: Decision) -> String {
        let code = match d {
            Decision::Ban => "1;41;97",
            Decision::Review => "1;43;30",
            Decision::Approve => "1;42;30",
        };
        self.c(code, &format!(" {} ", d.as_str().to_uppercase()))
    }
}

fn at(e: &Evidence) -> String {
    format!("{}:{}:{}", e.file, e.line, e.column)
}

/// Terminal report.
pub fn human(r: &Report, color: bool) -> String {
    let p = Paint(color);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {}   verdict: {}",
        p.c("1", "airlock review"),
        r.target,
        p.decision(r.verdict.decision)
    );
    for c in &r.components {
        let _ = writeln!(
            o,
            "  {} {}{} — {} files, {} bytes{}{}",
            c.kind,
            c.name,
            c.version
                .as_deref()
                .map(|v| format!("@{v}"))
                .unwrap_or_default(),
            c.files,
            c.bytes,
            c.embedded_format
                .as_deref()
                .map(|f| format!(", embedded: {f}"))
                .unwrap_or_default(),
            c.sha256
                .as_deref()
                .map(|h| format!(", sha256 {}", &h[..16.min(h.len())]))
                .unwrap_or_default(),
        );
    }
    let s = &r.stats;
    let _ = writeln!(
        o,
        "  {} JS files parsed ({} failed), {} bytes analysed, {} string literals, {} ms",
        s.js_files_parsed, s.js_parse_failures, s.bytes_analysed, s.string_literals, s.elapsed_ms
    );
    let _ = writeln!(o, "\n{} ({})", p.c("1", "Findings"), r.findings.len());
    if r.findings.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for f in &r.findings {
        let _ = writeln!(
            o,
            "  {} {}  {}",
            p.sev(f.severity),
            p.c("1", &f.id),
            f.title
        );
        let _ = writeln!(o, "           {}", f.detail);
        for e in &f.evidence {
            let _ = writeln!(o, "           at {}  {}", p.c("2", &at(e)), e.snippet);
        }
    }
    let _ = writeln!(
        o,
        "\n{} ({})",
        p.c("1", "Capabilities"),
        r.capabilities.len()
    );
    for c in &r.capabilities {
        let first = c.evidence.first().map(at).unwrap_or_default();
        let _ = writeln!(
            o,
            "  {:<34} ×{:<6} {}  {}",
            c.id,
            c.count,
            c.description,
            p.c("2", &first)
        );
    }
    let _ = writeln!(o, "\n{} ({})", p.c("1", "Hosts"), r.hosts.len());
    for h in &r.hosts {
        let owner = h
            .owner
            .as_deref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default();
        let dec = if h.only_decoded {
            p.c("1;31", " [only in decoded strings]")
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  {:<17} {}{} ×{}{}",
            format!("[{}]", h.class),
            h.host,
            owner,
            h.count,
            dec
        );
    }
    let _ = writeln!(o, "\n{} ({})", p.c("1", "Decoded strings"), r.decoded.len());
    for d in r.decoded.iter().take(HUMAN_DECODED_LIMIT) {
        let _ = writeln!(
            o,
            "  [{}] {:?}  {}",
            d.method,
            d.text,
            p.c("2", &at(&d.evidence))
        );
    }
    if r.decoded.len() > HUMAN_DECODED_LIMIT {
        let _ = writeln!(
            o,
            "  … {} more (see --format json or html)",
            r.decoded.len() - HUMAN_DECODED_LIMIT
        );
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n{} ({})", p.c("1", "Notes"), r.notes.len());
        for n in &r.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    let _ = writeln!(
        o,
        "\n{} {}",
        p.c("1", "Verdict:"),
        p.decision(r.verdict.decision)
    );
    for reason in &r.verdict.reasons {
        let _ = writeln!(o, "  - {reason}");
    }
    o
}

/// JSON report (the model's field names are the stable format).
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// SARIF 2.1.0.
pub fn sarif(r: &Report) -> String {
    let mut rule_ids: Vec<(&str, &str)> = Vec::new();
    for f in &r.findings {
        if !rule_ids.iter().any(|(i, _)| *i == f.id) {
            rule_ids.push((&f.id, &f.title));
        }
    }
    let rules: Vec<_> = rule_ids
        .iter()
        .map(|(id, t)| json!({"id": id, "shortDescription": {"text": t}}))
        .collect();
    let results: Vec<_> = r
        .findings
        .iter()
        .map(|f| {
            let locs: Vec<_> = f
                .evidence
                .iter()
                .map(|e| {
                    json!({"physicalLocation": {
                        "artifactLocation": {"uri": e.file},
                        "region": {"startLine": e.line.max(1), "startColumn": e.column.max(1), "snippet": {"text": e.snippet}}
                    }})
                })
                .collect();
            json!({
                "ruleId": f.id,
                "level": sarif_level(f.severity),
                "message": {"text": format!("{}: {}", f.title, f.detail)},
                "locations": locs,
                "properties": {"severity": f.severity.as_str()}
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "airlock-review", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results,
            "properties": {
                "target": r.target,
                "verdict": r.verdict.decision.as_str(),
                "verdictReasons": r.verdict.reasons,
                "capabilities": r.capabilities.iter().map(|c| json!({"id": c.id, "count": c.count})).collect::<Vec<_>>(),
                "hosts": r.hosts.iter().map(|h| json!({"host": h.host, "class": h.class})).collect::<Vec<_>>(),
            }
        }]
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Escape for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}\
h1{font-size:1.4em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}\
.sev{font-weight:bold;border-radius:3px;padding:1px 5px;color:#fff}.critical{background:#7b1fa2}.high{background:#c62828}.medium{background:#ef6c00}.low{background:#0277bd}.info{background:#757575}\
.verdict{font-size:1.2em;font-weight:bold;padding:4px 10px;border-radius:4px;color:#fff}.ban{background:#b71c1c}.review{background:#f9a825;color:#000}.approve{background:#2e7d32}.muted{color:#777}";

/// Standalone HTML report.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let d = r.verdict.decision.as_str();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>airlock review: {t}</title><style>{CSS}</style></head><body><h1>airlock review: {t}</h1>\
<p><span class=\"verdict {d}\">{D}</span></p><ul>",
        t = esc(&r.target),
        D = d.to_uppercase()
    );
    for reason in &r.verdict.reasons {
        let _ = write!(o, "<li>{}</li>", esc(reason));
    }
    o.push_str("</ul><h2>Components</h2><table><tr><th>kind</th><th>name</th><th>version</th><th>files</th><th>bytes</th><th>embedded</th><th>sha256</th></tr>");
    for c in &r.components {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&c.kind),
            esc(&c.name),
            esc(c.version.as_deref().unwrap_or("")),
            c.files,
            c.bytes,
            esc(c.embedded_format.as_deref().unwrap_or("")),
            esc(c.sha256.as_deref().unwrap_or(""))
        );
    }
    let _ = write!(
        o,
        "</table><h2>Findings ({})</h2><table><tr><th>severity</th><th>finding</th><th>evidence</th></tr>",
        r.findings.len()
    );
    for f in &r.findings {
        let s = f.severity.as_str();
        let _ = write!(
            o,
            "<tr><td><span class=\"sev {s}\">{s}</span></td><td><b>{}</b><br><code>{}</code><br>{}</td><td>",
            esc(&f.title),
            esc(&f.id),
            esc(&f.detail)
        );
        for e in &f.evidence {
            let _ = write!(
                o,
                "<div class=\"muted\">{}</div><pre>{}</pre>",
                esc(&at(e)),
                esc(&e.snippet)
            );
        }
        o.push_str("</td></tr>");
    }
    let _ = write!(
        o,
        "</table><h2>Capabilities ({})</h2><table><tr><th>capability</th><th>count</th><th>description</th><th>first seen</th></tr>",
        r.capabilities.len()
    );
    for c in &r.capabilities {
        let first = c
            .evidence
            .first()
            .map(|e| format!("{}<pre>{}</pre>", esc(&at(e)), esc(&e.snippet)))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{first}</td></tr>",
            esc(&c.id),
            c.count,
            esc(&c.description)
        );
    }
    let _ = write!(
        o,
        "</table><h2>Hosts ({})</h2><table><tr><th>class</th><th>host</th><th>owner</th><th>count</th><th>first seen</th></tr>",
        r.hosts.len()
    );
    for h in &r.hosts {
        let first = h.evidence.first().map(|e| esc(&at(e))).unwrap_or_default();
        let flag = if h.only_decoded {
            " <b>(only in decoded strings)</b>"
        } else {
            ""
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td><code>{}</code>{flag}</td><td>{}</td><td>{}</td><td class=\"muted\">{first}</td></tr>",
            esc(&h.class),
            esc(&h.host),
            esc(h.owner.as_deref().unwrap_or("")),
            h.count
        );
    }
    let _ = write!(
        o,
        "</table><h2>Decoded strings ({})</h2><table><tr><th>method</th><th>text</th><th>where</th></tr>",
        r.decoded.len()
    );
    for d in &r.decoded {
        let _ = write!(
            o,
            "<tr><td>{}</td><td><pre>{}</pre></td><td class=\"muted\">{}</td></tr>",
            esc(&d.method),
            esc(&d.text),
            esc(&at(&d.evidence))
        );
    }
    o.push_str("</table>");
    if !r.notes.is_empty() {
        o.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(o, "<li>{}</li>", esc(n));
        }
        o.push_str("</ul>");
    }
    let s = &r.stats;
    let _ = write!(
        o,
        "<p class=\"muted\">{} · {} JS files parsed, {} failed, {} bytes, {} ms</p></body></html>",
        esc(&r.tool),
        s.js_files_parsed,
        s.js_parse_failures,
        s.bytes_analysed,
        s.elapsed_ms
    );
    o.push('\n');
    o
}

/// Terminal diff.
pub fn diff_human(d: &Diff, color: bool) -> String {
    let p = Paint(color);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {} → {}",
        p.c("1", "airlock review --diff"),
        d.old,
        d.new
    );
    if let (Some(a), Some(b)) = (d.old_verdict, d.new_verdict) {
        let _ = writeln!(o, "  verdict: {} → {}", p.decision(a), p.decision(b));
    }
    let sect = |o: &mut String, title: &str, add: &[String], rem: &[String]| {
        let _ = writeln!(o, "\n{} (+{} −{})", p.c("1", title), add.len(), rem.len());
        for a in add {
            let _ = writeln!(o, "  {} {a}", p.c("32", "+"));
        }
        for r in rem {
            let _ = writeln!(o, "  {} {r}", p.c("31", "-"));
        }
    };
    sect(
        &mut o,
        "Capabilities",
        &d.added_capabilities,
        &d.removed_capabilities,
    );
    sect(&mut o, "Hosts", &d.added_hosts, &d.removed_hosts);
    sect(
        &mut o,
        "Decoded strings",
        &d.added_decoded,
        &d.removed_decoded,
    );
    let f = |v: &[crate::diff::FindingKey]| {
        v.iter()
            .map(|k| format!("{} {} — {}", k.severity.as_str(), k.id, k.detail))
            .collect::<Vec<_>>()
    };
    sect(
        &mut o,
        "Findings",
        &f(&d.added_findings),
        &f(&d.removed_findings),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes() {
        assert_eq!(
            esc("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
    }
}
