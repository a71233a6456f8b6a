//! Prometheus metrics, written out by hand in the text exposition format.
//!
//! Label values that come from callers (tool version, model name) are truncated, restricted to
//! a safe character set and the number of distinct series is capped, so a hostile client cannot
//! grow memory without bound by inventing model names.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Requests by api, tool, version, model, decision and status.
pub const REQUESTS_TOTAL: &str = "airlock_requests_total";
/// Whole request duration, from the first byte read to the last byte written.
pub const REQUEST_DURATION: &str = "airlock_request_duration_seconds";
/// Time spent in Airlock itself before forwarding (identification, policy, inspection, routing).
pub const GATEWAY_OVERHEAD: &str = "airlock_gateway_overhead_seconds";
/// Time from sending the request upstream to receiving the upstream's response headers.
pub const UPSTREAM_FIRST_BYTE: &str = "airlock_upstream_first_byte_seconds";
/// How long the end of an answer was held until its audit record was committed.
pub const AUDIT_COMMIT_WAIT: &str = "airlock_audit_commit_wait_seconds";
/// Audit records committed.
pub const AUDIT_RECORDS: &str = "airlock_audit_records_total";
/// Audit write transactions.
pub const AUDIT_TRANSACTIONS: &str = "airlock_audit_transactions_total";
/// Audit records refused by a full queue.
pub const AUDIT_LOST: &str = "airlock_audit_lost_records_total";
/// Audit records the store refused.
pub const AUDIT_FAILED: &str = "airlock_audit_failed_records_total";
/// Request body bytes received from agents.
pub const BYTES_IN: &str = "airlock_request_bytes_total";
/// Response body bytes sent to agents.
pub const BYTES_OUT: &str = "airlock_response_bytes_total";
/// Request-body bytes held right now, and the `server.max_inflight_body_bytes` budget.
pub const INFLIGHT_BODY_BYTES: &str = "airlock_inflight_body_bytes";
pub const INFLIGHT_BODY_LIMIT: &str = "airlock_inflight_body_limit_bytes";
/// Open client connections.
pub const CONNECTIONS_OPEN: &str = "airlock_connections_open";
/// Connections refused because `max_connections` was reached.
pub const CONNECTIONS_REFUSED: &str = "airlock_connections_refused_total";
/// Configuration reloads by result.
pub const CONFIG_RELOADS: &str = "airlock_config_reloads_total";
/// Upstream attempts that failed before a response, by upstream and reason.
pub const UPSTREAM_ERRORS: &str = "airlock_upstream_errors_total";

/// Most distinct request series kept; further new label sets are folded into `_other_`.
pub const MAX_SERIES: usize = 4096;
const MAX_LABEL_LEN: usize = 64;
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RequestLabels {
    api: &'static str,
    tool: String,
    version: String,
    model: String,
    decision: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    requests: HashMap<RequestLabels, u64>,
    duration: HashMap<(&'static str, String), Histogram>,
    overhead: HashMap<&'static str, Histogram>,
    first_byte: HashMap<String, Histogram>,
    audit_wait: Histogram,
    bytes_in: HashMap<(&'static str, String), u64>,
    bytes_out: HashMap<(&'static str, String), u64>,
    upstream_errors: HashMap<(String, &'static str), u64>,
    reloads: HashMap<&'static str, u64>,
}

/// One finished request, as metrics see it.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    pub api: &'static str,
    pub tool: &'a str,
    pub version: &'a str,
    pub model: &'a str,
    pub decision: &'static str,
    pub status: u16,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The gateway's metrics registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    connections_open: AtomicI64,
    connections_refused: AtomicU64,
}

fn label(v: &str) -> String {
    let mut s: String = v
        .chars()
        .filter(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '+' | '@')
        })
        .take(MAX_LABEL_LEN)
        .collect();
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock would only leave counters half-updated: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_request(&self, r: &RequestRecord<'_>) {
        let tool = label(r.tool);
        let mut key = RequestLabels {
            api: r.api,
            tool: tool.clone(),
            version: label(r.version),
            model: label(r.model),
            decision: r.decision,
            status: r.status,
        };
        let mut g = self.lock();
        if !g.requests.contains_key(&key) && g.requests.len() >= MAX_SERIES {
            key.version = "_other_".into();
            key.model = "_other_".into();
        }
        *g.requests.entry(key).or_insert(0) += 1;
        // `tool` is bounded: it is a catalogue id or "unknown".
        g.duration
            .entry((r.api, tool.clone()))
            .or_default()
            .observe(r.duration.as_secs_f64());
        *g.bytes_in.entry((r.api, tool.clone())).or_insert(0) += r.bytes_in;
        *g.bytes_out.entry((r.api, tool)).or_insert(0) += r.bytes_out;
    }

    pub fn observe_overhead(&self, api: &'static str, d: Duration) {
        self.lock()
            .overhead
            .entry(api)
            .or_default()
            .observe(d.as_secs_f64());
    }

    pub fn observe_first_byte(&self, upstream: &str, d: Duration) {
        let mut g = self.lock();
        if let Some(h) = g.first_byte.get_mut(upstream) {
            h.observe(d.as_secs_f64());
        } else if g.first_byte.len() < MAX_SERIES {
            g.first_byte
                .entry(label(upstream))
                .or_default()
                .observe(d.as_secs_f64());
        }
    }

    pub fn observe_audit_wait(&self, d: Duration) {
        self.lock().audit_wait.observe(d.as_secs_f64());
    }

    pub fn upstream_error(&self, upstream: &str, reason: &'static str) {
        let mut g = self.lock();
        if g.upstream_errors.len() < MAX_SERIES {
            *g.upstream_errors
                .entry((label(upstream), reason))
                .or_insert(0) += 1;
        }
    }

    pub fn config_reload(&self, result: &'static str) {
        *self.lock().reloads.entry(result).or_insert(0) += 1;
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::with_capacity(8192);
        header(
            &mut out,
            REQUESTS_TOTAL,
            "counter",
            "Requests by API, tool, tool version, model, decision and status.",
        );
        let mut reqs: Vec<_> = g.requests.iter().collect();
        reqs.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        for (k, v) in reqs {
            let _ = writeln!(
                out,
                "{REQUESTS_TOTAL}{{api=\"{}\",tool=\"{}\",version=\"{}\",model=\"{}\",decision=\"{}\",status=\"{}\"}} {v}",
                k.api, k.tool, k.version, k.model, k.decision, k.status
            );
        }
        header(
            &mut out,
            REQUEST_DURATION,
            "histogram",
            "Request duration from first byte read to last byte written.",
        );
        for ((api, tool), h) in sorted(&g.duration) {
            hist(
                &mut out,
                REQUEST_DURATION,
                &format!("api=\"{api}\",tool=\"{tool}\""),
                h,
            );
        }
        header(
            &mut out,
            GATEWAY_OVERHEAD,
            "histogram",
            "Time spent in Airlock before forwarding (after the body is read).",
        );
        for (api, h) in sorted(&g.overhead) {
            hist(&mut out, GATEWAY_OVERHEAD, &format!("api=\"{api}\""), h);
        }
        header(
            &mut out,
            UPSTREAM_FIRST_BYTE,
            "histogram",
            "Time from forwarding to upstream response headers.",
        );
        for (up, h) in sorted(&g.first_byte) {
            hist(
                &mut out,
                UPSTREAM_FIRST_BYTE,
                &format!("upstream=\"{up}\""),
                h,
            );
        }
        header(
            &mut out,
            AUDIT_COMMIT_WAIT,
            "histogram",
            "Time the end of an answer was held until its audit record was committed.",
        );
        if g.audit_wait.count > 0 {
            hist(&mut out, AUDIT_COMMIT_WAIT, "", &g.audit_wait);
        }
        header(
            &mut out,
            BYTES_IN,
            "counter",
            "Request body bytes received from agents.",
        );
        for ((api, tool), v) in sorted(&g.bytes_in) {
            let _ = writeln!(out, "{BYTES_IN}{{api=\"{api}\",tool=\"{tool}\"}} {v}");
        }
        header(
            &mut out,
            BYTES_OUT,
            "counter",
            "Response body bytes sent to agents.",
        );
        for ((api, tool), v) in sorted(&g.bytes_out) {
            let _ = writeln!(out, "{BYTES_OUT}{{api=\"{api}\",tool=\"{tool}\"}} {v}");
        }
        header(
            &mut out,
            UPSTREAM_ERRORS,
            "counter",
            "Upstream attempts that failed before a response.",
        );
        for ((up, reason), v) in sorted(&g.upstream_errors) {
            let _ = writeln!(
                out,
                "{UPSTREAM_ERRORS}{{upstream=\"{up}\",reason=\"{reason}\"}} {v}"
            );
        }
        header(
            &mut out,
            CONFIG_RELOADS,
            "counter",
            "Configuration reloads by result.",
        );
        for (result, v) in sorted(&g.reloads) {
            let _ = writeln!(out, "{CONFIG_RELOADS}{{result=\"{result}\"}} {v}");
        }
        header(
            &mut out,
            CONNECTIONS_OPEN,
            "gauge",
            "Open client connections.",
        );
        let _ = writeln!(
            out,
            "{CONNECTIONS_OPEN} {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            CONNECTIONS_REFUSED,
            "counter",
            "Connections refused at the max_connections limit.",
        );
        let _ = writeln!(
            out,
            "{CONNECTIONS_REFUSED} {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        out
    }
}

fn sorted<K: Ord + Clone, V>(m: &HashMap<K, V>) -> Vec<(K, &V)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The in-flight body budget's gauges (the budget lives in the gateway, not in [`Metrics`]).
pub fn render_body_budget(out: &mut String, in_use: u64, limit: u64) {
    header(
        out,
        INFLIGHT_BODY_BYTES,
        "gauge",
        "Request-body bytes held in memory right now (reserved, KiB granularity).",
    );
    let _ = writeln!(out, "{INFLIGHT_BODY_BYTES} {in_use}");
    header(
        out,
        INFLIGHT_BODY_LIMIT,
        "gauge",
        "server.max_inflight_body_bytes.",
    );
    let _ = writeln!(out, "{INFLIGHT_BODY_LIMIT} {limit}");
}

/// The audit log's own counters (`AuditLog::stats`): what an operator alerts on (records
/// lost to a full queue or a failing store) and what the writer costs (transactions).
pub fn render_audit(out: &mut String, s: &airlock_audit::AuditStats) {
    for (name, help, v) in [
        (
            AUDIT_RECORDS,
            "Audit records committed by this process.",
            s.committed,
        ),
        (
            AUDIT_TRANSACTIONS,
            "Audit write transactions committed (records share them).",
            s.batches,
        ),
        (
            AUDIT_LOST,
            "Audit records refused because the queue was full (each counted in the chain by an overflow record).",
            s.overflowed,
        ),
        (
            AUDIT_FAILED,
            "Audit records the store refused to commit.",
            s.failed,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
}

fn hist(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (sep, braced) = if labels.is_empty() {
        ("", String::new())
    } else {
        (",", format!("{{{labels}}}"))
    };
    for (i, b) in BUCKETS.iter().enumerate() {
        let c = h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{braced} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braced} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(model: &'a str) -> RequestRecord<'a> {
        RequestRecord {
            api: "openai_chat",
            tool: "qwen-code",
            version: "0.24.4",
            model,
            decision: "allow",
            status: 200,
            duration: Duration::from_millis(3),
            bytes_in: 10,
            bytes_out: 20,
        }
    }

    #[test]
    fn renders_and_sanitises_labels() {
        let m = Metrics::new();
        m.record_request(&rec("gpt\"}\nevil 1"));
        m.observe_overhead("openai_chat", Duration::from_micros(200));
        let text = m.render();
        assert!(text.contains(
            "airlock_requests_total{api=\"openai_chat\",tool=\"qwen-code\",version=\"0.24.4\",model=\"gptevil1\",decision=\"allow\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "airlock_gateway_overhead_seconds_bucket{api=\"openai_chat\",le=\"0.00025\"} 1"
        ));
        assert!(
            text.contains("airlock_request_bytes_total{api=\"openai_chat\",tool=\"qwen-code\"} 10")
        );
        assert!(!text.contains("evil 1"));
    }

    #[test]
    fn series_are_capped() {
        let m = Metrics::new();
        for i in 0..(MAX_SERIES + 100) {
            m.record_request(&rec(&format!("model-{i}")));
        }
        let g = m.lock();
        assert!(g.requests.len() <= MAX_SERIES + 1);
    }
}
