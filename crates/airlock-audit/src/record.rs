//! The audit record, its canonical encoding and its hash.
//!
//! The JSON field names are stable (snake_case, documented in docs/audit.md). The hash is
//! computed over a canonical binary encoding, not over the JSON, so that a serializer change
//! can never break old chains: see [`canonical_bytes`].

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Version tag mixed into every record hash. Bump only with a new canonical encoding.
pub const RECORD_HASH_DOMAIN: &[u8] = b"airlock-audit/record/v1\0";

/// The `prev_hash` of the first record of a chain: 32 zero bytes, hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest string kept in any text field of a record; longer values are cut (at a character
/// boundary) before hashing, so a hostile header cannot blow up the store.
pub const MAX_FIELD_CHARS: usize = 1024;
/// Most findings summaries kept per record.
pub const MAX_FINDINGS: usize = 256;
/// Most locations kept per finding summary.
pub const MAX_LOCATIONS: usize = 64;
/// Default cap for a captured (redacted) body, before compression.
pub const DEFAULT_BODY_CAP: usize = 256 * 1024;

/// What kind of event a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// One request through the gateway and what happened to it, written when the exchange
    /// ends. For a forwarded request it follows that request's [`RecordKind::Request`] record
    /// (same `request_id`).
    #[default]
    Exchange,
    /// The request side of a forwarded exchange (who, which tool, which model, the decision
    /// and the findings; no status, usage or timings), written when the request is sent
    /// upstream. The end of the answer is released only once it is committed. Its
    /// `exchange` record follows when the exchange ends; a `request` without one is an
    /// exchange the gateway did not see end (the process was killed), or whose end record was
    /// lost (counted by an `overflow` marker).
    Request,
    /// Written by the log itself: `lost_records` exchanges could not be queued because the
    /// queue was full. Never a silent drop.
    Overflow,
    /// Someone read the audit log over the gateway's admin endpoints (`api` names the
    /// endpoint, `decision_reason` the query string, `decision` whether it was let in).
    Admin,
    /// Written by the gateway in place of one record per refused request when one client
    /// address sends more requests without a valid key than are recorded one by one:
    /// `lost_records` of them (refused with `status`, on `api`) from `client_addr` since its
    /// previous record of this kind. Never a silent drop.
    Throttled,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Exchange => "exchange",
            RecordKind::Request => "request",
            RecordKind::Overflow => "overflow",
            RecordKind::Admin => "admin",
            RecordKind::Throttled => "throttled",
        }
    }
}

/// What Airlock did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Forwarded (possibly with redactions: see `findings`).
    Allowed,
    /// Refused by policy on who/which tool/which model.
    Denied,
    /// Refused because of its content (a finding whose action is block).
    Blocked,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "allowed" => Some(Decision::Allowed),
            "denied" => Some(Decision::Denied),
            "blocked" => Some(Decision::Blocked),
            _ => None,
        }
    }
}

/// One detection rule's hits in an exchange: never the matched value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingSummary {
    /// The rule id, e.g. `aws-access-key-id`.
    pub rule_id: String,
    /// How many times it hit.
    pub count: u64,
    /// Where, as locations inside the request (e.g. `messages[3].content[0].text:120-160`).
    #[serde(default)]
    pub locations: Vec<String>,
}

/// Token usage and cost, from the provider's own usage fields (streaming included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Anthropic `cache_read_input_tokens` / OpenAI `cached_tokens`.
    pub cache_read_tokens: Option<u64>,
    /// Anthropic `cache_creation_input_tokens`.
    pub cache_write_tokens: Option<u64>,
    /// OpenAI `reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
    /// Cost in millionths of a US dollar (integer: no float in a hashed record).
    pub cost_micro_usd: Option<u64>,
}

/// Metadata of a captured (redacted, size-capped) body. The deflate-compressed bytes are
/// stored beside the record (not in its JSON) and bound to it by `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyCapture {
    /// Size of the body the gateway saw (after redaction), in bytes.
    pub original_bytes: u64,
    /// Bytes kept (at most the cap).
    pub captured_bytes: u64,
    /// True when `captured_bytes < original_bytes`.
    pub truncated: bool,
    /// SHA-256 (hex) of the kept bytes, before compression.
    pub sha256: String,
    /// The kept bytes, deflate-compressed. Not part of the record's JSON.
    #[serde(skip)]
    pub compressed: Vec<u8>,
}

impl BodyCapture {
    /// Capture an already-redacted body: keep at most `cap` bytes, hash and compress them.
    pub fn new(redacted: &[u8], cap: usize) -> BodyCapture {
        let kept = &redacted[..redacted.len().min(cap)];
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing to a Vec cannot fail.
        let compressed: Vec<u8> = enc
            .write_all(kept)
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        BodyCapture {
            original_bytes: redacted.len() as u64,
            captured_bytes: kept.len() as u64,
            truncated: kept.len() < redacted.len(),
            sha256: hex::encode(Sha256::digest(kept)),
            compressed,
        }
    }

    /// Decompress stored bytes, reading at most `captured_bytes + 1` (a hostile blob cannot
    /// expand without bound).
    pub fn decompress(compressed: &[u8], captured_bytes: u64) -> std::io::Result<Vec<u8>> {
        let limit = captured_bytes.saturating_add(1);
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(compressed)
            .take(limit)
            .read_to_end(&mut out)?;
        Ok(out)
    }
}

/// One audit record: an exchange through the gateway, the request side of one written ahead,
/// or a record of the log itself (overflow, admin access, throttled refusals).
///
/// `seq`, `prev_hash` and `hash` are assigned by the writer; whatever the caller puts there is
/// overwritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    #[serde(default)]
    pub seq: u64,
    /// When the request arrived (UTC, RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    #[serde(default)]
    pub kind: RecordKind,
    /// The gateway's request id (also sent to the agent as `x-request-id`).
    #[serde(default)]
    pub request_id: String,
    pub user: Option<String>,
    pub team: Option<String>,
    /// Id (not the secret) of the Airlock key used.
    pub key_id: Option<String>,
    /// Client address, `ip:port`.
    pub client_addr: Option<String>,
    /// Agent id from rules/agents.toml, or `unknown`.
    pub tool: Option<String>,
    pub tool_version: Option<String>,
    /// The agent's own session id (e.g. `x-claude-code-session-id`).
    pub agent_session_id: Option<String>,
    /// `anthropic_messages`, `openai_chat`, `openai_responses`, ...
    pub api: Option<String>,
    /// Upstream name from the config.
    pub upstream: Option<String>,
    pub model: Option<String>,
    /// None only for overflow markers.
    pub decision: Option<Decision>,
    /// The rule that decided (policy rule or detection rule id).
    pub decision_rule: Option<String>,
    /// The reason shown to the person (policy text; never request content).
    pub decision_reason: Option<String>,
    #[serde(default)]
    pub findings: Vec<FindingSummary>,
    pub usage: Option<Usage>,
    /// HTTP status returned to the agent.
    pub status: Option<u16>,
    /// Request arrival to last response byte, microseconds.
    pub latency_total_us: Option<u64>,
    /// Time spent waiting on the upstream, microseconds.
    pub latency_upstream_us: Option<u64>,
    /// Airlock's own share (total minus upstream), microseconds.
    pub latency_overhead_us: Option<u64>,
    #[serde(default)]
    pub request_bytes: u64,
    #[serde(default)]
    pub response_bytes: u64,
    pub request_body: Option<BodyCapture>,
    pub response_body: Option<BodyCapture>,
    /// Overflow markers: how many records could not be queued. Throttle summaries: how many
    /// refused requests they stand for.
    pub lost_records: Option<u64>,
    /// Hash (hex SHA-256) of the previous record, or of the pruning anchor.
    #[serde(default)]
    pub prev_hash: String,
    /// Hash (hex SHA-256) of this record's canonical encoding.
    #[serde(default)]
    pub hash: String,
}

impl AuditRecord {
    /// An exchange record with only the time and request id set.
    pub fn new(time: OffsetDateTime, request_id: impl Into<String>) -> AuditRecord {
        AuditRecord {
            seq: 0,
            time,
            kind: RecordKind::Exchange,
            request_id: request_id.into(),
            user: None,
            team: None,
            key_id: None,
            client_addr: None,
            tool: None,
            tool_version: None,
            agent_session_id: None,
            api: None,
            upstream: None,
            model: None,
            decision: Some(Decision::Allowed),
            decision_rule: None,
            decision_reason: None,
            findings: Vec::new(),
            usage: None,
            status: None,
            latency_total_us: None,
            latency_upstream_us: None,
            latency_overhead_us: None,
            request_bytes: 0,
            response_bytes: 0,
            request_body: None,
            response_body: None,
            lost_records: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// A read of the audit log through an admin endpoint: who asked (address, and key id when
    /// one was used), which endpoint with which query string, and the answer's status. Denied
    /// when the caller was not let in.
    pub fn admin_access(
        time: OffsetDateTime,
        request_id: impl Into<String>,
        client_addr: String,
        endpoint: &str,
        query: &str,
        status: u16,
    ) -> AuditRecord {
        let mut r = AuditRecord::new(time, request_id);
        r.kind = RecordKind::Admin;
        r.client_addr = Some(client_addr);
        r.api = Some(endpoint.to_string());
        r.status = Some(status);
        r.decision = Some(if status == 401 || status == 403 {
            Decision::Denied
        } else {
            Decision::Allowed
        });
        r.decision_reason = Some(if query.is_empty() {
            "(no query string)".to_string()
        } else {
            format!("query: {query}")
        });
        r
    }

    /// The summary the gateway writes instead of `count` records of requests refused (with
    /// `status`) because they carried no valid key, from one client address.
    pub fn throttled(
        time: OffsetDateTime,
        client_addr: String,
        what: &str,
        status: u16,
        count: u64,
    ) -> AuditRecord {
        let mut r = AuditRecord::new(time, "");
        r.kind = RecordKind::Throttled;
        r.client_addr = Some(client_addr);
        r.api = Some(what.to_string());
        r.status = Some(status);
        r.decision = Some(Decision::Denied);
        r.decision_reason = Some(format!(
            "{count} request(s) without a valid key from this address, refused and not recorded one by one"
        ));
        r.lost_records = Some(count);
        r
    }

    /// The marker written into the chain when `lost` records could not be queued.
    pub fn overflow_marker(time: OffsetDateTime, lost: u64) -> AuditRecord {
        let mut r = AuditRecord::new(time, "");
        r.kind = RecordKind::Overflow;
        r.decision = None;
        r.lost_records = Some(lost);
        r.decision_reason = Some(format!(
            "{lost} audit record(s) lost: the audit queue was full"
        ));
        r
    }

    /// Bound every field (cut long strings, cap lists) and put the time in UTC with
    /// millisecond precision, so the stored form is exactly what gets hashed.
    pub fn normalize(&mut self) {
        let t = self.time.to_offset(time::UtcOffset::UTC);
        let ms = t.millisecond();
        self.time = t.replace_millisecond(ms).unwrap_or(t);
        cut(&mut self.request_id);
        for f in [
            &mut self.user,
            &mut self.team,
            &mut self.key_id,
            &mut self.client_addr,
            &mut self.tool,
            &mut self.tool_version,
            &mut self.agent_session_id,
            &mut self.api,
            &mut self.upstream,
            &mut self.model,
            &mut self.decision_rule,
            &mut self.decision_reason,
        ]
        .into_iter()
        .flatten()
        {
            cut(f);
        }
        self.findings.truncate(MAX_FINDINGS);
        for f in &mut self.findings {
            cut(&mut f.rule_id);
            f.locations.truncate(MAX_LOCATIONS);
            for l in &mut f.locations {
                cut(l);
            }
        }
    }

    /// Unix time in milliseconds (the indexed time column).
    pub fn time_ms(&self) -> i64 {
        i64::try_from(self.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// The hash this record must have, given its `seq` and `prev_hash`.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(canonical_bytes(self)))
    }
}

fn cut(s: &mut String) {
    if s.len() > MAX_FIELD_CHARS {
        let mut end = MAX_FIELD_CHARS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The canonical encoding that is hashed: a domain tag, then every field in declaration
/// order. Integers are big-endian fixed width; strings are a u32 length then UTF-8 bytes;
/// `Option` is one byte (0 absent, 1 present) then the value; lists are a u32 count then the
/// items; enums are their snake_case name as a string; the time is Unix nanoseconds as i128.
/// `hash` itself is excluded; `prev_hash` is included (that is the chain).
pub fn canonical_bytes(r: &AuditRecord) -> Vec<u8> {
    let mut e = Enc(Vec::with_capacity(512));
    e.0.extend_from_slice(RECORD_HASH_DOMAIN);
    e.u64(r.seq);
    e.str(&r.prev_hash);
    e.0.extend_from_slice(&r.time.unix_timestamp_nanos().to_be_bytes());
    e.str(r.kind.as_str());
    e.str(&r.request_id);
    for f in [
        &r.user,
        &r.team,
        &r.key_id,
        &r.client_addr,
        &r.tool,
        &r.tool_version,
        &r.agent_session_id,
        &r.api,
        &r.upstream,
        &r.model,
    ] {
        e.opt_str(f.as_deref());
    }
    e.opt_str(r.decision.map(Decision::as_str));
    e.opt_str(r.decision_rule.as_deref());
    e.opt_str(r.decision_reason.as_deref());
    e.len(r.findings.len());
    for f in &r.findings {
        e.str(&f.rule_id);
        e.u64(f.count);
        e.len(f.locations.len());
        for l in &f.locations {
            e.str(l);
        }
    }
    match &r.usage {
        None => e.0.push(0),
        Some(u) => {
            e.0.push(1);
            for v in [
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens,
                u.cost_micro_usd,
            ] {
                e.opt_u64(v);
            }
        }
    }
    e.opt_u64(r.status.map(u64::from));
    e.opt_u64(r.latency_total_us);
    e.opt_u64(r.latency_upstream_us);
    e.opt_u64(r.latency_overhead_us);
    e.u64(r.request_bytes);
    e.u64(r.response_bytes);
    for b in [&r.request_body, &r.response_body] {
        match b {
            None => e.0.push(0),
            Some(b) => {
                e.0.push(1);
                e.u64(b.original_bytes);
                e.u64(b.captured_bytes);
                e.0.push(u8::from(b.truncated));
                e.str(&b.sha256);
            }
        }
    }
    e.opt_u64(r.lost_records);
    e.0
}

struct Enc(Vec<u8>);

impl Enc {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn len(&mut self, n: usize) {
        self.0
            .extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.u64(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecord {
        let mut r = AuditRecord::new(OffsetDateTime::UNIX_EPOCH, "req-1");
        r.user = Some("alice".into());
        r.seq = 1;
        r.prev_hash = GENESIS_HASH.into();
        r
    }

    #[test]
    fn absent_and_empty_hash_differently() {
        let a = sample();
        let mut b = sample();
        b.team = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = sample();
        a.user = Some("ab".into());
        a.team = Some("c".into());
        let mut b = sample();
        b.user = Some("a".into());
        b.team = Some("bc".into());
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn seq_and_prev_hash_are_hashed() {
        let a = sample();
        let mut b = sample();
        b.seq = 2;
        assert_ne!(a.compute_hash(), b.compute_hash());
        let mut c = sample();
        c.prev_hash = "1".repeat(64);
        assert_ne!(a.compute_hash(), c.compute_hash());
    }

    #[test]
    fn normalize_cuts_at_char_boundary() {
        let mut r = sample();
        r.user = Some("é".repeat(MAX_FIELD_CHARS));
        r.normalize();
        let u = r.user.unwrap_or_default();
        assert!(u.len() <= MAX_FIELD_CHARS);
        assert!(u.chars().all(|c| c == 'é'));
    }

    #[test]
    fn body_capture_caps_and_round_trips() {
        let body = b"hello world ".repeat(100);
        let c = BodyCapture::new(&body, 100);
        assert!(c.truncated);
        assert_eq!(c.captured_bytes, 100);
        let back = BodyCapture::decompress(&c.compressed, c.captured_bytes).unwrap_or_default();
        assert_eq!(back, &body[..100]);
        assert_eq!(hex::encode(Sha256::digest(&back)), c.sha256);
    }

    #[test]
    fn json_round_trip_keeps_hash() {
        let mut r = sample();
        r.time = OffsetDateTime::now_utc();
        r.normalize();
        r.hash = r.compute_hash();
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: AuditRecord = serde_json::from_str(&json).unwrap_or_else(|_| sample());
        assert_eq!(back.compute_hash(), r.hash);
    }
}
