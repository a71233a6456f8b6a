//! The environment matrix: which dimensions are varied, their baseline and their values.
//!
//! The default matrix is `rules/probe-matrix.toml`, compiled in. A user file of the same shape
//! overrides it table by table (see [`Matrix::with_overrides`]).

use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::ProbeError;

/// The default matrix, embedded at build time.
pub const DEFAULT_MATRIX_TOML: &str = include_str!("../../../rules/probe-matrix.toml");

/// The only matrix schema version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Placeholder in `base_host` values expanded to the agent's own API hosts.
pub const VENDOR_PLACEHOLDER: &str = "{vendor}";

/// The class of a base-URL host, used in reports to say what kind of endpoint flips a
/// difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostClass {
    Loopback,
    VendorLike,
    NationalTld,
    CompanyLike,
    AiLabLike,
}

impl HostClass {
    pub fn as_str(self) -> &'static str {
        match self {
            HostClass::Loopback => "loopback",
            HostClass::VendorLike => "vendor-like",
            HostClass::NationalTld => "national-tld",
            HostClass::CompanyLike => "company-like",
            HostClass::AiLabLike => "ai-lab-like",
        }
    }
}

impl fmt::Display for HostClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One base-URL host with its class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostValue {
    pub host: String,
    pub class: HostClass,
}

/// A dimension with a single baseline string value and variations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringDim {
    pub baseline: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// The base-URL host dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDim {
    pub baseline: HostValue,
    #[serde(default)]
    pub values: Vec<HostValue>,
}

/// An arbitrary environment variable dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvDim {
    pub name: String,
    /// Absent: the variable is unset in the baseline.
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
}

/// The whole matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub schema_version: u32,
    pub tz: StringDim,
    pub locale: StringDim,
    pub base_host: HostDim,
    pub home: StringDim,
    pub user: StringDim,
    pub hostname: StringDim,
    #[serde(default)]
    pub env: Vec<EnvDim>,
}

/// A user matrix file: every table optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixOverride {
    schema_version: Option<u32>,
    tz: Option<StringDim>,
    locale: Option<StringDim>,
    base_host: Option<HostDim>,
    home: Option<StringDim>,
    user: Option<StringDim>,
    hostname: Option<StringDim>,
    #[serde(default)]
    env: Vec<EnvDim>,
}

/// Environment variables the runner sets itself; a matrix `[[env]]` entry may not name them.
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// Which dimension a run varies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Tz,
    Locale,
    BaseHost,
    Home,
    User,
    Hostname,
    /// An environment variable, by name.
    Env(String),
}

impl Dimension {
    /// A short label: `TZ`, `LANG/LC_ALL`, `base-URL host`, `HOME`, `USER`, `hostname`, `env CI`.
    pub fn label(&self) -> String {
        match self {
            Dimension::Tz => "TZ".into(),
            Dimension::Locale => "LANG/LC_ALL".into(),
            Dimension::BaseHost => "base-URL host".into(),
            Dimension::Home => "HOME".into(),
            Dimension::User => "USER".into(),
            Dimension::Hostname => "hostname".into(),
            Dimension::Env(n) => format!("env {n}"),
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The settings of one run: the baseline with at most one dimension changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub tz: String,
    pub locale: String,
    pub base_host: HostValue,
    pub home: String,
    pub user: String,
    pub hostname: String,
    /// Matrix environment variables that are set (name, value).
    pub env: Vec<(String, String)>,
}

/// One variation: a dimension, the value it takes, and the full settings.
#[derive(Debug, Clone, Serialize)]
pub struct Variation {
    pub dimension: Dimension,
    /// The value as shown in reports (`Asia/Shanghai`, `api.corp-example.cn`, `<unset>`).
    pub value: String,
    /// For base-URL hosts, the host class.
    pub class: Option<HostClass>,
    #[serde(skip)]
    pub settings: Settings,
}

impl Matrix {
    /// The embedded default matrix.
    pub fn embedded() -> Result<Matrix, ProbeError> {
        Matrix::parse(DEFAULT_MATRIX_TOML, "rules/probe-matrix.toml (embedded)")
    }

    /// Parses a complete matrix.
    pub fn parse(text: &str, origin: &str) -> Result<Matrix, ProbeError> {
        let m: Matrix = toml::from_str(text).map_err(|e| ProbeError::Matrix {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        m.validate(origin)?;
        Ok(m)
    }

    /// The embedded default with a user file applied on top: a table given in `text` replaces
    /// that dimension; `[[env]]` entries replace the default entry of the same name or are added.
    pub fn with_overrides(mut self, text: &str, origin: &str) -> Result<Matrix, ProbeError> {
        let o: MatrixOverride = toml::from_str(text).map_err(|e| ProbeError::Matrix {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        if let Some(v) = o.schema_version {
            self.schema_version = v;
        }
        if let Some(d) = o.tz {
            self.tz = d;
        }
        if let Some(d) = o.locale {
            self.locale = d;
        }
        if let Some(d) = o.base_host {
            self.base_host = d;
        }
        if let Some(d) = o.home {
            self.home = d;
        }
        if let Some(d) = o.user {
            self.user = d;
        }
        if let Some(d) = o.hostname {
            self.hostname = d;
        }
        for e in o.env {
            if let Some(slot) = self.env.iter_mut().find(|x| x.name == e.name) {
                *slot = e;
            } else {
                self.env.push(e);
            }
        }
        self.validate(origin)?;
        Ok(self)
    }

    /// Checks every value; reports all problems at once.
    pub fn validate(&self, origin: &str) -> Result<(), ProbeError> {
        let mut problems = Vec::new();
        if self.schema_version != SCHEMA_VERSION {
            problems.push(format!(
                "schema_version = {} is not supported (expected {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        fn check(problems: &mut Vec<String>, key: &str, v: &str, ok: fn(&str) -> bool, what: &str) {
            if !ok(v) {
                problems.push(format!("{key}: {v:?} is not a valid {what}"));
            }
        }
        for v in std::iter::once(&self.tz.baseline).chain(&self.tz.values) {
            check(&mut problems, "tz", v, valid_tz, "time zone name");
        }
        for v in std::iter::once(&self.locale.baseline).chain(&self.locale.values) {
            check(&mut problems, "locale", v, valid_locale, "locale name");
        }
        for v in std::iter::once(&self.base_host.baseline).chain(&self.base_host.values) {
            check(
                &mut problems,
                "base_host",
                &v.host,
                valid_host_or_vendor,
                "host name",
            );
        }
        if self.base_host.baseline.host == VENDOR_PLACEHOLDER {
            problems.push("base_host.baseline: {vendor} cannot be the baseline".into());
        }
        for v in std::iter::once(&self.home.baseline).chain(&self.home.values) {
            if !valid_home(v) {
                problems.push(format!(
                    "home: {v:?} must be a relative path without `..` (it is created inside the run's temporary directory)"
                ));
            }
        }
        for v in std::iter::once(&self.user.baseline).chain(&self.user.values) {
            check(&mut problems, "user", v, valid_user, "user name");
        }
        for v in std::iter::once(&self.hostname.baseline).chain(&self.hostname.values) {
            check(&mut problems, "hostname", v, valid_hostname, "host name");
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &self.env {
            if !valid_env_name(&e.name) {
                problems.push(format!("env: {:?} is not a valid variable name", e.name));
            } else if RESERVED_ENV.contains(&e.name.as_str()) {
                problems.push(format!(
                    "env: {:?} is set by the probe itself; use the matching dimension instead",
                    e.name
                ));
            }
            if !seen.insert(e.name.clone()) {
                problems.push(format!("env: {:?} is listed twice", e.name));
            }
            for v in e.baseline.iter().chain(&e.values) {
                if v.contains('\0') || v.len() > 4096 {
                    problems.push(format!(
                        "env.{}: value must be under 4 KiB without NUL",
                        e.name
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ProbeError::Matrix {
                origin: origin.to_string(),
                message: problems.join("; "),
            })
        }
    }

    /// The baseline settings.
    pub fn baseline(&self) -> Settings {
        Settings {
            tz: self.tz.baseline.clone(),
            locale: self.locale.baseline.clone(),
            base_host: self.base_host.baseline.clone(),
            home: self.home.baseline.clone(),
            user: self.user.baseline.clone(),
            hostname: self.hostname.baseline.clone(),
            env: self
                .env
                .iter()
                .filter_map(|e| e.baseline.clone().map(|v| (e.name.clone(), v)))
                .collect(),
        }
    }

    /// Every single-dimension variation. `vendor_hosts` expands `{vendor}`; with none known,
    /// `{vendor}` entries are dropped. `with_hostname` false leaves the hostname dimension out.
    pub fn variations(&self, vendor_hosts: &[String], with_hostname: bool) -> Vec<Variation> {
        let base = self.baseline();
        let mut out = Vec::new();
        let mut push =
            |dimension: Dimension, value: String, class: Option<HostClass>, settings: Settings| {
                if settings != base {
                    out.push(Variation {
                        dimension,
                        value,
                        class,
                        settings,
                    });
                }
            };
        for v in &self.tz.values {
            push(
                Dimension::Tz,
                v.clone(),
                None,
                Settings {
                    tz: v.clone(),
                    ..base.clone()
                },
            );
        }
        for v in &self.locale.values {
            push(
                Dimension::Locale,
                v.clone(),
                None,
                Settings {
                    locale: v.clone(),
                    ..base.clone()
                },
            );
        }
        let mut hosts: Vec<HostValue> = Vec::new();
        for v in &self.base_host.values {
            if v.host == VENDOR_PLACEHOLDER {
                for h in vendor_hosts {
                    hosts.push(HostValue {
                        host: h.clone(),
                        class: v.class,
                    });
                }
            } else {
                hosts.push(v.clone());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for h in hosts {
            if valid_host(&h.host) && seen.insert(h.host.clone()) {
                push(
                    Dimension::BaseHost,
                    h.host.clone(),
                    Some(h.class),
                    Settings {
                        base_host: h,
                        ..base.clone()
                    },
                );
            }
        }
        for v in &self.home.values {
            push(
                Dimension::Home,
                v.clone(),
                None,
                Settings {
                    home: v.clone(),
                    ..base.clone()
                },
            );
        }
        for v in &self.user.values {
            push(
                Dimension::User,
                v.clone(),
                None,
                Settings {
                    user: v.clone(),
                    ..base.clone()
                },
            );
        }
        if with_hostname {
            for v in &self.hostname.values {
                push(
                    Dimension::Hostname,
                    v.clone(),
                    None,
                    Settings {
                        hostname: v.clone(),
                        ..base.clone()
                    },
                );
            }
        }
        for e in &self.env {
            for v in &e.values {
                let mut env: Vec<(String, String)> = base
                    .env
                    .iter()
                    .filter(|(n, _)| n != &e.name)
                    .cloned()
                    .collect();
                env.push((e.name.clone(), v.clone()));
                push(
                    Dimension::Env(e.name.clone()),
                    v.clone(),
                    None,
                    Settings {
                        env,
                        ..base.clone()
                    },
                );
            }
            if e.baseline.is_some() && e.values.is_empty() {
                // nothing to vary
            }
        }
        out
    }
}

fn valid_tz(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_/+-:".contains(c))
        && !v.split('/').any(|s| s == "..")
}

fn valid_locale(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
}

/// A DNS name or IP literal usable in `http://HOST:PORT`.
pub fn valid_host(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !v.starts_with(['-', '.'])
        && !v.ends_with('-')
}

fn valid_host_or_vendor(v: &str) -> bool {
    v == VENDOR_PLACEHOLDER || valid_host(v)
}

fn valid_home(v: &str) -> bool {
    let p = Path::new(v);
    !v.is_empty()
        && v.len() <= 200
        && !v.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn valid_user(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn valid_hostname(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn valid_env_name(v: &str) -> bool {
    let mut chars = v.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && v.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_matrix_parses_and_has_the_issue_time_zones() {
        let m = Matrix::embedded().unwrap();
        let all: Vec<&str> = std::iter::once(m.tz.baseline.as_str())
            .chain(m.tz.values.iter().map(String::as_str))
            .collect();
        for tz in [
            "Asia/Shanghai",
            "Asia/Urumqi",
            "Europe/Berlin",
            "America/New_York",
            "UTC",
        ] {
            assert!(all.contains(&tz), "{tz} missing");
        }
        let classes: std::collections::BTreeSet<HostClass> =
            m.base_host.values.iter().map(|h| h.class).collect();
        assert_eq!(
            classes.len(),
            5,
            "every host class is represented: {classes:?}"
        );
    }

    #[test]
    fn variations_change_exactly_one_dimension() {
        let m = Matrix::embedded().unwrap();
        let base = m.baseline();
        let vars = m.variations(&["api.anthropic.com".into()], true);
        assert!(
            vars.iter()
                .any(|v| v.value == "api.anthropic.com" && v.class == Some(HostClass::VendorLike))
        );
        for v in &vars {
            let s = &v.settings;
            let changed = [
                s.tz != base.tz,
                s.locale != base.locale,
                s.base_host != base.base_host,
                s.home != base.home,
                s.user != base.user,
                s.hostname != base.hostname,
                s.env != base.env,
            ];
            assert_eq!(changed.iter().filter(|c| **c).count(), 1, "{v:?}");
        }
        let without = m.variations(&[], false);
        assert!(without.iter().all(|v| v.dimension != Dimension::Hostname));
        assert!(
            without
                .iter()
                .all(|v| v.class != Some(HostClass::VendorLike))
        );
    }

    #[test]
    fn overrides_replace_tables_and_merge_env() {
        let m = Matrix::embedded()
            .unwrap()
            .with_overrides(
                "[tz]\nbaseline = \"UTC\"\nvalues = [\"Asia/Tokyo\"]\n[[env]]\nname = \"CI\"\nvalues = [\"1\"]\n[[env]]\nname = \"EDITOR\"\nvalues = [\"vim\"]\n",
                "user.toml",
            )
            .unwrap();
        assert_eq!(m.tz.values, vec!["Asia/Tokyo".to_string()]);
        assert_eq!(
            m.env.iter().find(|e| e.name == "CI").unwrap().values,
            vec!["1".to_string()]
        );
        assert!(m.env.iter().any(|e| e.name == "EDITOR"));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let err = Matrix::embedded()
            .unwrap()
            .with_overrides(
                "[home]\nbaseline = \"../etc\"\n[[env]]\nname = \"PATH\"\nvalues = [\"/x\"]\n[user]\nbaseline = \"a b\"\n",
                "bad.toml",
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("home"), "{err}");
        assert!(err.contains("PATH"), "{err}");
        assert!(err.contains("user"), "{err}");
        let err = Matrix::embedded()
            .unwrap()
            .with_overrides("[tzz]\n", "typo.toml")
            .unwrap_err();
        assert!(err.to_string().contains("tzz"), "{err}");
    }
}
