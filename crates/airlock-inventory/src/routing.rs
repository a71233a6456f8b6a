//! How an agent reaches its model: the routing settings (`routing` in `rules/agents.toml`) read
//! from its config files, and the verdict on them — through Airlock, direct to the vendor, or
//! somewhere else.
//!
//! URLs are parsed only as far as needed (scheme, host, port, path); user information and query
//! strings are dropped before a URL is reported, as proxies and base URLs can carry credentials.

use std::path::Path;

use airlock_policy::Agent;
use serde::Serialize;
use serde_json::Value;

use crate::root::RootFs;

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Where the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The base URL (or proxy) is a configured Airlock address.
    Airlock,
    /// No override, or an override naming one of the agent's vendor hosts.
    Direct,
    /// An override to an address that is neither Airlock nor the vendor.
    Other,
    /// Could not be told (unreadable config, or users' settings disagree).
    Unknown,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Airlock => "airlock",
            Via::Direct => "direct",
            Via::Other => "other",
            Via::Unknown => "unknown",
        }
    }
}

/// The routing of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routing {
    pub via: Via,
    /// The configured base URL, credentials and query removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The configured proxy, credentials removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// `off` or `on` when a telemetry switch is set; absent when left at the tool's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<String>,
    /// Where the setting was read (a config file, or `environment of pid N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Routing {
    pub fn unknown() -> Routing {
        Routing {
            via: Via::Unknown,
            base_url: None,
            proxy: None,
            telemetry: None,
            source: None,
        }
    }
}

/// A URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// Parse `scheme://[user@]host[:port][/path][?query]`; a missing scheme means `http`.
    pub fn parse(s: &str) -> Option<Url> {
        let s = s.trim();
        if s.is_empty() || s.len() > 4096 {
            return None;
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((sc, r)) => (sc.to_ascii_lowercase(), r),
            None => ("http".to_string(), s),
        };
        if !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (h.to_ascii_lowercase(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p.parse::<u16>().ok()?)),
                None => (hostport.to_ascii_lowercase(), None),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
        {
            return None;
        }
        let port = port.unwrap_or(match scheme.as_str() {
            "https" | "wss" => 443,
            "socks5" | "socks5h" | "socks" => 1080,
            _ => 80,
        });
        let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
        Some(Url {
            scheme,
            host,
            port,
            path: tail[..path_end].to_string(),
        })
    }

    /// The URL without credentials or query, for reports.
    pub fn redacted(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}{}", self.scheme, host, self.port, self.path)
    }

    fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "::1"
        || h.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

fn is_unspecified_host(h: &str) -> bool {
    h == "0.0.0.0" || h == "::"
}

/// The addresses at which Airlock is reached.
#[derive(Debug, Clone, Default)]
pub struct AirlockAddrs {
    addrs: Vec<Url>,
}

impl AirlockAddrs {
    /// From `--airlock-url` values (or the gateway's `server.listen`, e.g. `127.0.0.1:8787`).
    pub fn parse(urls: &[String]) -> Result<AirlockAddrs, String> {
        let mut addrs = Vec::new();
        for u in urls {
            match Url::parse(u) {
                Some(p) => addrs.push(p),
                None => return Err(u.clone()),
            }
        }
        Ok(AirlockAddrs { addrs })
    }

    /// Whether `url` points at Airlock: same port, and the same host — where every loopback
    /// name counts as one host, and a gateway listening on an unspecified address (`0.0.0.0`)
    /// matches any loopback URL.
    pub fn matches(&self, url: &Url) -> bool {
        self.addrs.iter().any(|a| {
            a.port == url.port
                && (a.host == url.host
                    || (a.is_loopback() && url.is_loopback())
                    || (is_unspecified_host(&a.host) && url.is_loopback()))
        })
    }
}

/// One agent's routing settings as found in one home's config files.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub base_url: Option<(String, String)>,
    pub proxy: Option<(String, String)>,
    pub telemetry: Vec<(String, Value)>,
    pub any_file: bool,
    pub errors: Vec<(String, String)>,
}

/// Read an agent's routing settings under one home.
pub(crate) fn read_settings(fs: &RootFs, agent: &Agent, home: &Path) -> Settings {
    let mut out = Settings::default();
    let mut files: Vec<&str> = agent.routing.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let vpath = airlock_policy::paths::expand_home(file, home);
        let shown = vpath.display().to_string();
        let bytes = match fs.read_bounded(&vpath, MAX_CONFIG_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.errors.push((shown, e.to_string()));
                continue;
            }
        };
        out.any_file = true;
        let doc = match parse_config(&vpath, &bytes) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push((shown, e));
                continue;
            }
        };
        for setting in agent.routing.iter().filter(|r| r.file == file) {
            let segs: Vec<&str> = setting.key.split('.').collect();
            let mut hits = Vec::new();
            lookup(&doc, &segs, String::new(), &mut hits);
            for (key, value) in hits {
                match setting.kind.as_str() {
                    "base_url" | "proxy" => {
                        let Some(s) = value.as_str().filter(|s| !s.trim().is_empty()) else {
                            continue;
                        };
                        let slot = if setting.kind == "base_url" {
                            &mut out.base_url
                        } else {
                            &mut out.proxy
                        };
                        if slot.is_none() {
                            *slot = Some((s.to_string(), shown.clone()));
                        }
                    }
                    _ => out.telemetry.push((key, value.clone())),
                }
            }
        }
    }
    out
}

/// Parse a JSON (comments and trailing commas tolerated) or TOML file.
fn parse_config(path: &Path, bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    if path.extension().is_some_and(|e| e == "toml") {
        let t: toml::Table =
            toml::from_str(text).map_err(|e| format!("invalid TOML: {}", e.message()))?;
        return serde_json::to_value(t).map_err(|e| format!("invalid TOML: {e}"));
    }
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => serde_json::from_str(&strip_jsonc(text))
            .map_err(|_| format!("invalid JSON: line {}: {}", first.line(), first)),
    }
}

/// Remove `//` and `/* */` comments and trailing commas outside strings.
fn strip_jsonc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == '\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
                i += 1;
            }
            '/' if b.get(i + 1) == Some(&'/') => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '/' if b.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            ',' => {
                let next = b[i + 1..].iter().find(|c| !c.is_whitespace());
                if !matches!(next, Some('}') | Some(']')) {
                    out.push(c);
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Values at a dotted key path; `*` matches any one key. Results in key order.
fn lookup<'a>(v: &'a Value, segs: &[&str], prefix: String, out: &mut Vec<(String, &'a Value)>) {
    let Some((first, rest)) = segs.split_first() else {
        out.push((prefix, v));
        return;
    };
    let Value::Object(map) = v else { return };
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    if *first == "*" {
        for (k, child) in map {
            lookup(child, rest, join(k), out);
        }
    } else if let Some(child) = map.get(*first) {
        lookup(child, rest, join(first), out);
    }
}

/// `on` or `off` for one telemetry setting, `None` when it cannot be read as either.
fn telemetry_state(key: &str, v: &Value) -> Option<bool> {
    let disable_switch = key.to_ascii_uppercase().contains("DISABLE");
    let truthy = match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "none" | "" => Some(false),
            _ => Some(true),
        },
        Value::Object(_) => Some(true),
        _ => None,
    }?;
    Some(if disable_switch { !truthy } else { truthy })
}

/// Judge settings: base URL first, then proxy, else the tool's default (direct).
pub(crate) fn judge(settings: &Settings, agent: &Agent, airlock: &AirlockAddrs) -> Routing {
    let telemetry = {
        let states: Vec<bool> = settings
            .telemetry
            .iter()
            .filter_map(|(k, v)| telemetry_state(k, v))
            .collect();
        if states.is_empty() {
            None
        } else if states.iter().any(|s| *s) {
            Some("on".to_string())
        } else {
            Some("off".to_string())
        }
    };
    let base = settings
        .base_url
        .as_ref()
        .map(|(u, src)| (Url::parse(u), src));
    let proxy = settings.proxy.as_ref().map(|(u, src)| (Url::parse(u), src));
    let shown = |u: &Option<Url>| {
        Some(
            u.as_ref()
                .map_or_else(|| "(unparseable)".to_string(), Url::redacted),
        )
    };
    let mut r = Routing {
        via: Via::Direct,
        base_url: base.as_ref().and_then(|(u, _)| shown(u)),
        proxy: proxy.as_ref().and_then(|(u, _)| shown(u)),
        telemetry,
        source: None,
    };
    if let Some((url, src)) = &base {
        r.source = Some((*src).clone());
        r.via = classify(url.as_ref(), agent, airlock);
    } else if let Some((url, src)) = &proxy {
        r.source = Some((*src).clone());
        r.via = match url {
            Some(u) if airlock.matches(u) => Via::Airlock,
            _ => Via::Other,
        };
    } else if !settings.errors.is_empty() {
        r.via = Via::Unknown;
    }
    r
}

fn classify(url: Option<&Url>, agent: &Agent, airlock: &AirlockAddrs) -> Via {
    let Some(u) = url else { return Via::Other };
    if airlock.matches(u) {
        Via::Airlock
    } else if agent
        .vendor_hosts
        .iter()
        .any(|h| u.host == *h || u.host.ends_with(&format!(".{h}")))
    {
        Via::Direct
    } else {
        Via::Other
    }
}

/// Routing from a process environment (only the agent's base-URL variables and proxies).
pub(crate) fn from_environment(
    env: &[(String, String)],
    agent: &Agent,
    airlock: &AirlockAddrs,
    source: String,
) -> Option<Routing> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let base = agent
        .base_url_env
        .iter()
        .find_map(|k| get(k).filter(|v| !v.trim().is_empty()));
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|k| get(k).filter(|v| !v.trim().is_empty()));
    if base.is_none() && proxy.is_none() {
        return None;
    }
    let s = Settings {
        base_url: base.map(|b| (b.to_string(), source.clone())),
        proxy: proxy.map(|p| (p.to_string(), source.clone())),
        ..Settings::default()
    };
    Some(judge(&s, agent, airlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        let u = Url::parse("https://user:secret@Proxy.Corp:3128/x?key=abc").unwrap();
        assert_eq!(u.host, "proxy.corp");
        assert_eq!(u.port, 3128);
        assert_eq!(u.redacted(), "https://proxy.corp:3128/x");
        assert_eq!(Url::parse("http://[::1]:8787").unwrap().host, "::1");
        assert_eq!(Url::parse("127.0.0.1:8787").unwrap().port, 8787);
        assert!(Url::parse("http://bad host/").is_none());
        assert!(Url::parse("http://h:99999/").is_none());
    }

    #[test]
    fn airlock_addresses_match_loopback_aliases() {
        let a = AirlockAddrs::parse(&["127.0.0.1:8787".to_string()]).unwrap();
        assert!(a.matches(&Url::parse("http://localhost:8787/v1").unwrap()));
        assert!(a.matches(&Url::parse("http://[::1]:8787").unwrap()));
        assert!(!a.matches(&Url::parse("http://localhost:9999").unwrap()));
        assert!(!a.matches(&Url::parse("https://airlock.corp:8787").unwrap()));
        let b = AirlockAddrs::parse(&["https://airlock.corp".to_string()]).unwrap();
        assert!(b.matches(&Url::parse("https://AIRLOCK.corp/anthropic").unwrap()));
        assert!(!b.matches(&Url::parse("http://airlock.corp").unwrap()));
    }

    #[test]
    fn jsonc_is_tolerated() {
        let v = parse_config(
            Path::new("settings.json"),
            br#"{ // c
              "a": "http://x//y", /* b */ "t": [1,2,],
            }"#,
        )
        .unwrap();
        assert_eq!(v["a"], "http://x//y");
        assert_eq!(v["t"][1], 2);
    }

    #[test]
    fn wildcard_lookup() {
        let v: Value = serde_json::json!({"p": {"a": {"u": 1}, "b": {"u": 2}, "c": {}}});
        let mut out = Vec::new();
        lookup(&v, &["p", "*", "u"], String::new(), &mut out);
        let keys: Vec<_> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["p.a.u", "p.b.u"]);
    }

    #[test]
    fn telemetry_switches() {
        assert_eq!(
            telemetry_state("env.DISABLE_TELEMETRY", &Value::from("1")),
            Some(false)
        );
        assert_eq!(
            telemetry_state("telemetry.enabled", &Value::from(false)),
            Some(false)
        );
        assert_eq!(
            telemetry_state("usageStatisticsEnabled", &Value::from(true)),
            Some(true)
        );
        assert_eq!(
            telemetry_state("otel.exporter", &Value::from("none")),
            Some(false)
        );
        assert_eq!(
            telemetry_state("otel.exporter", &Value::from("otlp-http")),
            Some(true)
        );
    }
}
