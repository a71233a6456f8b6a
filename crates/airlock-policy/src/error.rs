//! Errors of this crate. Config problems are collected, not thrown one at a time, so that a
//! person fixing `airlock.toml` sees every problem in one run.

use std::fmt;

/// One problem in a configuration or data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// File name or other origin, e.g. `airlock.toml` or `<embedded>`.
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `upstream[1].base_url`, when known.
    pub key: Option<String>,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// All problems found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Errors from loading data files or compiling a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// 1-based line number of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turn a `toml` deserialisation error into an issue with a line and a "did you mean".
pub(crate) fn issue_from_toml(
    origin: &str,
    text: &str,
    err: &toml::de::Error,
    known: &[&str],
) -> ConfigIssue {
    let line = err.span().map(|s| line_of(text, s.start));
    let mut message = err.message().trim().to_string();
    // serde: "unknown field `uptream`, expected one of `server`, `upstream`"
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        let field = rest[..end].to_string();
        let candidates: Vec<&str> = rest[end..]
            .split('`')
            .skip(2)
            .step_by(2)
            .chain(known.iter().copied())
            .collect();
        let best = candidates
            .iter()
            .map(|c| (strsim::levenshtein(&field, c), *c))
            .filter(|(d, _)| *d <= 3)
            .min();
        message = match best {
            Some((_, c)) => format!("unknown key \"{field}\" (did you mean \"{c}\"?)"),
            None => format!("unknown key \"{field}\""),
        };
    }
    ConfigIssue {
        origin: origin.to_string(),
        line,
        key: None,
        message,
    }
}
