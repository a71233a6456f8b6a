//! Adapter over the shared detection engine (airlock-detect): the review only needs secrets and
//! covert Unicode, with redacted previews.

use crate::model::Severity;

/// One engine hit, already reduced to what the review shows.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule_id: String,
    /// `secret` or `covert` (personal data and custom markers are not review findings).
    pub category: &'static str,
    pub severity: Severity,
    pub start: usize,
    pub end: usize,
    pub preview: String,
    pub detail: Option<String>,
    /// The engine's confidence is low (generic patterns such as `password = …`): in source
    /// code these are mostly identifiers, so the review drops them.
    pub low_confidence: bool,
}

/// The engine, built once per review.
pub struct Scanner {
    engine: airlock_detect::Engine,
}

fn sev(s: airlock_detect::Severity) -> Severity {
    match s {
        airlock_detect::Severity::Info => Severity::Info,
        airlock_detect::Severity::Low => Severity::Low,
        airlock_detect::Severity::Medium => Severity::Medium,
        airlock_detect::Severity::High => Severity::High,
        airlock_detect::Severity::Critical => Severity::Critical,
    }
}

impl Scanner {
    /// The built-in engine, built once per process (building compiles every rule).
    pub fn shared() -> Result<&'static Scanner, String> {
        static SHARED: std::sync::OnceLock<Result<Scanner, String>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                airlock_detect::Engine::builtin()
                    .map(|engine| Scanner { engine })
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Secrets and covert-Unicode hits in `text`.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        self.scan_all(text)
            .into_iter()
            .filter(|h| !(h.category == "secret" && h.low_confidence))
            .collect()
    }

    /// Every secret and covert hit, low-confidence ones included (used for redaction).
    pub fn scan_all(&self, text: &str) -> Vec<Hit> {
        self.hits(self.engine.scan_all(text)).0
    }

    /// The hits of a scan, and whether it stopped at the engine's cap on findings.
    fn hits(&self, scan: airlock_detect::Scan) -> (Vec<Hit>, bool) {
        let hits = scan
            .findings
            .into_iter()
            .filter_map(|f| {
                let category = match f.category {
                    airlock_detect::Category::Secret => "secret",
                    airlock_detect::Category::Covert => "covert",
                    _ => return None,
                };
                Some(Hit {
                    rule_id: f.rule_id.to_string(),
                    category,
                    severity: sev(f.severity),
                    start: f.start,
                    end: f.end,
                    preview: f.preview,
                    detail: f.detail,
                    low_confidence: f.confidence == airlock_detect::Confidence::Low,
                })
            })
            .collect();
        (hits, scan.truncated)
    }

    /// `text` with every secret replaced by its redacted preview. A text the engine could not
    /// scan whole (more findings than its cap) is withheld: a secret of one rule can hide past
    /// the cap that another rule's findings filled, and a report must never print one.
    pub fn redact(&self, text: &str) -> String {
        let (hits, truncated) = self.hits(self.engine.scan_all(text));
        if truncated {
            return format!(
                "[withheld: more than {} findings]",
                airlock_detect::MAX_FINDINGS
            );
        }
        let mut hits: Vec<Hit> = hits
            .into_iter()
            .filter(|h| h.category == "secret")
            .collect();
        if hits.is_empty() {
            return text.to_string();
        }
        hits.sort_by_key(|h| h.start);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in hits {
            if h.start < at
                || h.end > text.len()
                || !text.is_char_boundary(h.start)
                || !text.is_char_boundary(h.end)
            {
                continue;
            }
            out.push_str(&text[at..h.start]);
            out.push_str(&format!("[{}]", h.preview));
            at = h.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report never prints a secret that a capped scan missed. 100,001 AWS key ids fill the
    /// engine's cap before the GitHub rule is searched, so the token after them is not found;
    /// the text is withheld instead of printed with it.
    #[test]
    fn redact_withholds_a_text_it_could_not_scan_whole() {
        let s = Scanner::shared().unwrap();
        let random = "Zq8Lm2Nx4Pv6Rt8Bw0Cy2Dz4Fh6Jk8";
        let token = format!(
            "ghp_{random}{}",
            airlock_detect::validate::crc32_base62_suffix(random)
        );
        let small = format!("export GH={token}");
        let shown = s.redact(&small);
        assert!(
            !shown.contains(&token) && shown.starts_with("export GH=["),
            "{shown}"
        );
        let big = format!(
            "{}export GH={token}",
            "AKIAZ7QK3M2XW5P4TR6N ".repeat(airlock_detect::MAX_FINDINGS + 1)
        );
        let scan = s.engine.scan_all(&big);
        assert!(scan.truncated);
        assert!(
            !scan.findings.iter().any(|f| &*f.rule_id == "github-pat"),
            "the token is past the cap"
        );
        assert_eq!(s.redact(&big), "[withheld: more than 100000 findings]");
    }
}
