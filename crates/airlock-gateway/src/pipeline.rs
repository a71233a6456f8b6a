//! The request pipeline, one stage per function, in the order a request meets them:
//!
//! 1. **route** — which API (or admin endpoint) the path names;
//! 2. **read** — the whole body, bounded by `max_body_bytes` and a time limit, checked to be JSON;
//! 3. **authenticate** — Airlock key → user/team, or anonymous mode on loopback;
//! 4. **identify** — which agent at which version (the catalogue in `rules/agents.toml`);
//! 5. **decide** — the policy: allowed, or refused in the API's own error shape;
//! 6. **inspect** — the body as it will leave (redaction from `airlock-wire` plugs in here);
//! 7. **forward** — to the upstream chosen by API and model, with its credential, timeouts
//!    and retries before any byte reached the agent;
//! 8. **relay** — the response streamed back frame by frame through an optional transform;
//! 9. **record** — metrics and a structured log line when the exchange ends (the audit record
//!    of `airlock-audit` plugs into [`Exchange::finish`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use airlock_audit::{AuditRecord, Committed, Decision, FindingSummary, RecordKind};
use time::OffsetDateTime;

use airlock_policy::{Identity, Subject, UpstreamApi};
use airlock_wire::Api;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::admin;
use crate::api::{self, Endpoint, ErrorKind, Family, RouteError};
use crate::budget::{BodyBudget, Reservation};
use crate::keys::Principal;
use crate::metrics::RequestRecord;
use crate::redact::{self, Restore};
use crate::runtime::{Runtime, Upstream};
use crate::server::Gateway;
use crate::upstream::{
    AUDIT_COMMIT_TIMEOUT, BodyShape, BoxError, Observed, Outcome, Pieces, Relay, strip_hop_by_hop,
};

/// The response body type of the gateway.
pub type GatewayBody = BoxBody<Bytes, BoxError>;
/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-airlock-request-id";
/// Response header on errors Airlock itself wrote: `client`, `upstream` or `airlock`.
pub const ERROR_SOURCE_HEADER: &str = "x-airlock-error-source";

/// Most locations kept per rule in an exchange's findings summary.
pub const MAX_FINDING_LOCATIONS: usize = 64;

/// An error answered by the gateway itself.
#[derive(Debug, Clone)]
pub struct Reject {
    pub kind: ErrorKind,
    pub message: String,
}

impl Reject {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Reject {
            kind,
            message: message.into(),
        }
    }
}

/// The refusal when a record cannot be queued and the audit policy is fail-closed.
const AUDIT_FAIL_CLOSED: &str = "Airlock could not record this request in its audit log and policy is fail-closed ([audit] overflow); retry shortly";

/// The audit commit an answer's end is held for; reports the wait to the metrics
/// ([`crate::metrics::AUDIT_COMMIT_WAIT`]) when it resolves.
pub struct HeldCommit {
    commit: Committed,
    since: Instant,
    gw: Arc<Gateway>,
}

impl Future for HeldCommit {
    type Output = Result<u64, airlock_audit::CommitError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let r = std::pin::Pin::new(&mut self.commit).poll(cx);
        if r.is_ready() {
            self.gw.metrics().observe_audit_wait(self.since.elapsed());
        }
        r
    }
}

/// One request as logs, metrics (and later the audit log) see it. Recorded exactly once, when
/// the exchange ends — normally, with an error, or because the agent hung up.
pub struct Exchange {
    gw: Arc<Gateway>,
    pub id: String,
    pub api: &'static str,
    pub peer: SocketAddr,
    pub tool: String,
    pub version: String,
    pub signal: String,
    pub model: String,
    pub stream: bool,
    pub user: Option<String>,
    pub team: Option<String>,
    pub key_id: Option<String>,
    pub decision: &'static str,
    pub rule: String,
    pub upstream: Option<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub outcome: Outcome,
    pub error_source: Option<&'static str>,
    pub started: Instant,
    pub upstream_first_byte: Option<Duration>,
    /// The agent's session id from its headers (bounded, printable).
    pub session: Option<String>,
    /// Redaction findings in the request: count, how many were acted on, and the distinct
    /// rule ids (never values).
    pub findings: u32,
    pub findings_applied: u32,
    pub finding_summary: Vec<FindingSummary>,
    /// Wall-clock arrival time (for the audit record).
    pub arrived: SystemTime,
    /// Airlock's own time before forwarding.
    pub overhead: Option<Duration>,
    /// Token usage, cost and captured bodies observed for the audit record.
    pub observed: Observed,
    recorded: bool,
    /// The audit log was on but refused the record (queue full or closed).
    audit_lost: bool,
    /// The commit of this exchange's request record ([`Exchange::write_ahead`]), which the
    /// end of the answer waits for instead of the exchange record's.
    ahead: Option<HeldCommit>,
    /// Counted for a `throttled` summary instead of recorded (see `throttle`).
    throttled: bool,
}

impl Exchange {
    fn new(gw: Arc<Gateway>, id: String, peer: SocketAddr, started: Instant) -> Self {
        Exchange {
            gw,
            id,
            api: "none",
            peer,
            tool: "unknown".into(),
            version: String::new(),
            signal: String::new(),
            model: String::new(),
            stream: false,
            user: None,
            team: None,
            key_id: None,
            decision: "none",
            rule: String::new(),
            upstream: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            outcome: Outcome::Pending,
            error_source: None,
            started,
            upstream_first_byte: None,
            session: None,
            findings: 0,
            findings_applied: 0,
            finding_summary: Vec::new(),
            arrived: SystemTime::now(),
            overhead: None,
            observed: Observed::default(),
            recorded: false,
            audit_lost: false,
            ahead: None,
            throttled: false,
        }
    }

    /// Records the exchange (see [`Exchange::finish`]) and waits, at most
    /// [`AUDIT_COMMIT_TIMEOUT`], until its audit record is durable. `Err` says why the record
    /// is not known to be committed (the caller applies the `[audit] overflow` policy). An
    /// exchange recorded before (e.g. handed to the relay) is `Ok`.
    pub async fn finish_committed(&mut self) -> Result<(), String> {
        if self.recorded {
            return Ok(());
        }
        match self.finish() {
            Some(c) => match tokio::time::timeout(AUDIT_COMMIT_TIMEOUT, c).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "audit record not committed within {} ms",
                    AUDIT_COMMIT_TIMEOUT.as_millis()
                )),
            },
            None if self.audit_lost => Err("audit queue refused the record".into()),
            None => Ok(()),
        }
    }

    /// True when the audit policy is fail-closed: an exchange whose record could not be
    /// committed must not be delivered as a success.
    pub fn audit_fail_closed(&self) -> bool {
        self.gw.audit_fail_closed()
    }

    /// True when the audit log refused this exchange's record (queue full or closed).
    pub fn audit_lost(&self) -> bool {
        self.audit_lost
    }

    /// `[audit] store_bodies`: the body cap when bodies are captured, else `None`.
    pub fn body_capture_cap(&self) -> Option<usize> {
        self.gw.audit()?;
        let rt = self.gw.runtime();
        let a = &rt.config.audit;
        a.store_bodies
            .then(|| usize::try_from(a.max_body_bytes).unwrap_or(usize::MAX))
    }

    /// Records metrics, the log line and the audit record. Idempotent. Returns the audit
    /// commit to await when the audit log is on and accepted the record.
    pub fn finish(&mut self) -> Option<HeldCommit> {
        if self.recorded {
            return None;
        }
        self.recorded = true;
        let duration = self.started.elapsed();
        self.gw.metrics().record_request(&RequestRecord {
            api: self.api,
            tool: &self.tool,
            version: &self.version,
            model: &self.model,
            decision: self.decision,
            status: self.status,
            duration,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        });
        if self.throttled {
            // Counted for a summary record (and its log line); not one line per request.
            return None;
        }
        tracing::info!(
            request_id = %self.id,
            api = self.api,
            client = %self.peer,
            tool = %self.tool,
            version = %self.version,
            signal = %self.signal,
            model = %self.model,
            stream = self.stream,
            user = self.user.as_deref().unwrap_or("-"),
            team = self.team.as_deref().unwrap_or("-"),
            key_id = self.key_id.as_deref().unwrap_or("-"),
            decision = self.decision,
            rule = %self.rule,
            session = self.session.as_deref().unwrap_or("-"),
            findings = self.findings,
            findings_applied = self.findings_applied,
            finding_rules = %self.finding_summary.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>().join(","),
            upstream = self.upstream.as_deref().unwrap_or("-"),
            status = self.status,
            outcome = self.outcome.as_str(),
            error_source = self.error_source.unwrap_or("-"),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            upstream_first_byte_ms = self.upstream_first_byte.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(-1.0),
            latency_ms = duration.as_secs_f64() * 1000.0,
            "request"
        );
        let audit = self.gw.audit()?.clone();
        let record = self.audit_record(duration);
        if let Some(mut ahead) = self.ahead.take() {
            // The request record is (being) committed: the end record needs no hold. A refusal
            // is counted by the log's overflow marker.
            if let Err(e) = audit.submit_detached(record) {
                tracing::warn!(request_id = %self.id, error = %e, "audit record of the exchange's end not queued (its request record was)");
            }
            ahead.since = Instant::now();
            return Some(ahead);
        }
        match audit.submit(record) {
            Ok(c) => Some(HeldCommit {
                commit: c,
                since: Instant::now(),
                gw: self.gw.clone(),
            }),
            Err(e) => {
                self.audit_lost = true;
                tracing::warn!(request_id = %self.id, error = %e, "audit record not queued");
                None
            }
        }
    }

    /// Write-ahead: queues the request record of an exchange about to be forwarded
    /// (`RecordKind::Request`: who, which tool and model, the decision and findings), so that
    /// the upstream round trip overlaps its commit and a process killed mid-answer still
    /// leaves the request on record. The answer's end then waits for this commit (usually done
    /// by then) and the exchange record that follows is queued without a hold. A refused
    /// record under `[audit] overflow = "fail_closed"` refuses the request before anything is
    /// sent.
    pub fn write_ahead(&mut self) -> Result<(), Reject> {
        let Some(audit) = self.gw.audit().cloned() else {
            return Ok(());
        };
        let mut r = self.request_record();
        r.kind = RecordKind::Request;
        match audit.submit(r) {
            Ok(commit) => {
                self.ahead = Some(HeldCommit {
                    commit,
                    since: Instant::now(),
                    gw: self.gw.clone(),
                });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(request_id = %self.id, error = %e, "audit request record not queued");
                if self.gw.audit_fail_closed() {
                    return Err(Reject::new(ErrorKind::Unavailable, AUDIT_FAIL_CLOSED));
                }
                Ok(())
            }
        }
    }

    /// The request side of the audit record: identity, decision, findings, bytes in.
    fn request_record(&self) -> AuditRecord {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let mut r = AuditRecord::new(OffsetDateTime::from(self.arrived), self.id.clone());
        r.user = self.user.clone();
        r.team = self.team.clone();
        r.key_id = self.key_id.clone();
        r.client_addr = Some(self.peer.to_string());
        r.tool = Some(self.tool.clone());
        r.tool_version = opt(&self.version);
        r.agent_session_id = self.session.clone();
        r.api = Some(self.api.to_string());
        r.upstream = self.upstream.clone();
        r.model = opt(&self.model);
        r.decision = Some(match self.decision {
            "allow" => Decision::Allowed,
            "blocked" => Decision::Blocked,
            _ => Decision::Denied,
        });
        r.decision_rule = opt(&self.rule);
        r.decision_reason = match (self.decision, self.error_source) {
            ("none", Some(src)) => Some(format!("refused before a policy decision ({src} error)")),
            _ => None,
        };
        r.findings = self.finding_summary.clone();
        r.request_bytes = self.bytes_in;
        r
    }

    /// The audit record of this exchange (no request content, except the redacted bodies
    /// when `[audit] store_bodies` is on).
    fn audit_record(&mut self, duration: Duration) -> AuditRecord {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut r = self.request_record();
        r.status = Some(self.status);
        r.latency_total_us = Some(us(duration));
        r.latency_overhead_us = self.overhead.map(us);
        r.latency_upstream_us = self
            .overhead
            .filter(|_| self.upstream_first_byte.is_some())
            .map(|o| us(duration.saturating_sub(o)));
        r.response_bytes = self.bytes_out;
        r.usage = self.observed.usage(&self.model, self.gw.pricing());
        r.request_body = self.observed.request_body.take();
        r.response_body = self.observed.response_body();
        r
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.outcome == Outcome::Pending {
            self.outcome = Outcome::ClientClosed;
        }
        // Drop cannot wait: the record is queued, its commit not awaited.
        let _ = self.finish();
    }
}

fn full(body: impl Into<Bytes>) -> GatewayBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<GatewayBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error_response(family: Family, reject: &Reject) -> Response<GatewayBody> {
    let mut r = plain(
        reject.kind.status(),
        "application/json",
        api::error_body(family, reject.kind, &reject.message),
    );
    r.headers_mut().insert(
        ERROR_SOURCE_HEADER,
        HeaderValue::from_static(reject.kind.cause().as_str()),
    );
    if reject.kind == ErrorKind::Unavailable {
        // Agents' retry logic reads it (Airlock is momentarily full, not broken).
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn with_request_id(mut r: Response<GatewayBody>, id: &str) -> Response<GatewayBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    r
}

/// Entry point for every request on every connection.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, Infallible> {
    let started = Instant::now();
    let id = gw.next_request_id();
    let path = req.uri().path();
    // Admin endpoints first: they are not model APIs and never reach an upstream.
    match (req.method(), path) {
        (&Method::GET, "/healthz") => {
            return Ok(with_request_id(
                plain(StatusCode::OK, "text/plain", "ok\n"),
                &id,
            ));
        }
        (&Method::GET, "/readyz") => {
            let r = if gw.is_ready() {
                plain(StatusCode::OK, "text/plain", "ready\n")
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
            };
            return Ok(with_request_id(r, &id));
        }
        (&Method::GET, "/metrics") => {
            let r = match gw.admin_allowed(req.headers()) {
                Ok(()) => {
                    let mut text = gw.metrics().render();
                    crate::metrics::render_body_budget(
                        &mut text,
                        gw.body_budget().in_use(),
                        gw.body_budget().bytes(),
                    );
                    if let Some(audit) = gw.audit() {
                        crate::metrics::render_audit(&mut text, &audit.stats());
                    }
                    plain(StatusCode::OK, "text/plain; version=0.0.4", text)
                }
                Err(msg) => plain(StatusCode::UNAUTHORIZED, "text/plain", msg),
            };
            return Ok(with_request_id(r, &id));
        }
        (&Method::GET, p) if p.starts_with("/admin/audit/") => {
            if let Some(which) = admin::AdminAudit::route(p) {
                // Reading the audit log is itself recorded (see `admin`).
                let r = admin::handle(&gw, which, &req, &id, peer).await;
                return Ok(with_request_id(r, &id));
            }
        }
        _ => {}
    }
    let mut ex = Exchange::new(gw.clone(), id.clone(), peer, started);
    let rt = gw.runtime();
    let family = match Endpoint::route(req.method(), path) {
        Ok(e) => e.family(),
        Err(_) => api::family_for_path(path),
    };
    let resp = match process(&gw, &rt, req, &mut ex).await {
        Ok(resp) => resp,
        Err(reject) => {
            ex.status = reject.kind.status().as_u16();
            ex.error_source = Some(reject.kind.cause().as_str());
            ex.outcome = Outcome::Complete;
            // Without a valid key: recorded one by one only within an allowance per address
            // (`throttle`), counted otherwise.
            if reject.kind == ErrorKind::Authentication
                && !gw.record_refusal(peer.ip(), ex.api, ex.status)
            {
                ex.throttled = true;
            }
            if reject.kind.cause() != api::Cause::Client {
                tracing::warn!(request_id = %ex.id, upstream = ex.upstream.as_deref().unwrap_or("-"), error = %reject.message, "request failed");
            }
            let r = error_response(family, &reject);
            ex.bytes_out = http_body::Body::size_hint(r.body()).exact().unwrap_or(0);
            r
        }
    };
    // Airlock's own answers (errors, denials, blocks, /v1/models) leave only once their record
    // is committed; a relayed answer's end waits for it in the relay.
    let resp = match ex.finish_committed().await {
        Ok(()) => resp,
        Err(why) => {
            tracing::warn!(request_id = %ex.id, error = %why, "audit record of Airlock's own answer not committed");
            if gw.audit_fail_closed() {
                error_response(
                    family,
                    &Reject::new(ErrorKind::Unavailable, AUDIT_FAIL_CLOSED),
                )
            } else {
                resp
            }
        }
    };
    Ok(with_request_id(resp, &id))
}

/// Stages 1–8. Errors come back as a [`Reject`] for the caller's API shape.
async fn process(
    gw: &Arc<Gateway>,
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ex: &mut Exchange,
) -> Result<Response<GatewayBody>, Reject> {
    // 1. route
    let endpoint = Endpoint::route(req.method(), req.uri().path()).map_err(|e| match e {
        RouteError::NotFound => Reject::new(
            ErrorKind::NotFound,
            format!(
                "Airlock does not serve {} {}: it serves POST /v1/messages, POST /v1/chat/completions, POST /v1/responses and GET /v1/models",
                req.method(),
                truncate(req.uri().path(), 100)
            ),
        ),
        RouteError::MethodNotAllowed(m) => {
            Reject::new(ErrorKind::MethodNotAllowed, format!("{} needs method {m}", truncate(req.uri().path(), 100)))
        }
    })?;
    ex.api = endpoint.label();
    let (parts, body) = req.into_parts();

    if endpoint == Endpoint::Models {
        let principal = authenticate(gw, &parts.headers)?;
        set_principal(ex, principal.as_ref());
        let identity = rt.catalogue.identify(&parts.headers, &[]);
        set_identity(ex, &identity);
        ex.decision = "allow";
        ex.status = 200;
        ex.outcome = Outcome::Complete;
        let body = if parts.headers.contains_key("anthropic-version") {
            rt.models_anthropic.clone()
        } else {
            rt.models_openai.clone()
        };
        ex.bytes_out = body.len() as u64;
        return Ok(plain(StatusCode::OK, "application/json", body));
    }

    // 2. read
    // Held until this function returns: the body has been forwarded by then.
    let (body, _reservation) = read_body(rt, gw.body_budget(), &parts.headers, body).await?;
    ex.bytes_in = body.len() as u64;
    let t_overhead = Instant::now();
    check_json_content_type(&parts.headers)?;

    // 3. authenticate (before parsing: the caller's vault scope lets the parse step over what
    // it sent before, and an unauthenticated body is not parsed at all)
    let principal = authenticate(gw, &parts.headers)?;
    set_principal(ex, principal.as_ref());
    ex.session = redact::SESSION_HEADERS
        .iter()
        .find_map(|h| parts.headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(|v| truncate(v, 128));

    // Inspected APIs: parse once, for routing now and for inspection at stage 6.
    let parsed = match wire_api(endpoint) {
        Some(api) => {
            let scope = vault_scope(gw, ex);
            let request = parse_request(&body, api, &scope)?;
            Some((api, request, scope))
        }
        None => None,
    };
    let probe = match &parsed {
        Some((_, r, _)) => Probe {
            model: r.model().map_err(not_an_api_request)?,
            stream: r.stream().map_err(not_an_api_request)?,
        },
        None => probe_body(&body)?,
    };
    let model = match endpoint {
        Endpoint::Gemini => gemini_model(parts.uri.path()).map(str::to_string),
        _ => probe.model,
    };
    // Caller-supplied: printable and bounded before it reaches logs and metrics.
    ex.model = model
        .as_deref()
        .map(|m| truncate(m, 128))
        .unwrap_or_default();
    ex.stream =
        probe.stream.unwrap_or(false) || parts.uri.path().ends_with(":streamGenerateContent");

    // 4. identify
    let identity = rt.catalogue.identify(&parts.headers, &body);
    set_identity(ex, &identity);

    // 5. decide
    let decision = rt.policy.decide(&Subject {
        user: ex.user.as_deref(),
        team: ex.team.as_deref(),
        identity: &identity,
        model: model.as_deref(),
    });
    ex.rule = decision.rule.clone();
    if let Some(msg) = gw.audit_refusal() {
        return Err(Reject::new(ErrorKind::Unavailable, msg));
    }
    if !decision.allow {
        ex.decision = "deny";
        let message = if decision.message.is_empty() {
            format!("Blocked by company policy (rule {}).", decision.rule)
        } else {
            decision.message
        };
        return Err(Reject::new(ErrorKind::PolicyDenied, message));
    }
    ex.decision = "allow";

    // 6. inspect (a large body off the async worker: see `off_worker`)
    let inspected = match &parsed {
        Some((api, request, scope)) => off_worker(body.len(), || {
            inspect(gw, rt, ex, *api, request, scope, &body)
        }),
        None => Inspected::Forward {
            body: Pieces::whole(body.clone()),
            restore: None,
        },
    };
    // The parse tree is not needed while waiting for the upstream.
    drop(parsed);
    let (body, restore) = match inspected {
        Inspected::Forward { body, restore } => (body, restore),
        Inspected::Blocked(r) => return Ok(r),
    };

    // 7. forward
    let api = match endpoint.family() {
        Family::Anthropic => UpstreamApi::Anthropic,
        Family::OpenAi => UpstreamApi::OpenAi,
        Family::Google => UpstreamApi::Gemini,
    };
    let Some(upstream) = rt.upstream_for(api, model.as_deref()) else {
        return Err(Reject::new(
            ErrorKind::NotFound,
            match (&model, api) {
                (_, UpstreamApi::Gemini) => {
                    "This Airlock has no Gemini upstream configured; add one with --upstream gemini=https://generativelanguage.googleapis.com or an [[upstream]] with api = \"gemini\"".to_string()
                }
                (Some(m), _) => format!("No upstream of this Airlock serves model {:?} for the {} API", truncate(m, 100), api.as_str()),
                (None, _) => format!("No upstream of this Airlock serves the {} API", api.as_str()),
            },
        ));
    };
    ex.upstream = Some(upstream.name.clone());
    let mut headers = upstream_headers(&parts.headers, upstream, principal.is_some())?;
    if restore.is_some() {
        // Restoration reads the response: ask for it uncompressed.
        headers.remove(header::ACCEPT_ENCODING);
    }
    let path = match endpoint {
        Endpoint::Gemini => parts.uri.path(),
        e => e.upstream_path(),
    };
    let uri = upstream.uri(path, parts.uri.query()).map_err(|e| {
        Reject::new(
            ErrorKind::InvalidRequest,
            format!("cannot build the upstream URL from this request: {e}"),
        )
    })?;
    if let Some(cap) = ex.body_capture_cap() {
        // `[audit] store_bodies`: the body as it leaves, i.e. after redaction.
        ex.observed.capture_request(&body.to_bytes(), cap);
    }
    ex.write_ahead()?;
    ex.overhead = Some(t_overhead.elapsed());
    gw.metrics().observe_overhead(ex.api, t_overhead.elapsed());
    let t_sent = Instant::now();
    let resp = forward(gw, upstream, uri, headers, body).await?;
    let first_byte = t_sent.elapsed();
    ex.upstream_first_byte = Some(first_byte);
    gw.metrics().observe_first_byte(&upstream.name, first_byte);

    // 8. relay
    let (mut rparts, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    ex.status = rparts.status.as_u16();
    let capture = ex.body_capture_cap();
    let shape = BodyShape::of(&rparts.headers);
    ex.observed.start_response(&shape, capture);
    let encoded = shape.encoded();
    let sse = !encoded && shape.event_stream;
    let transform = restore.and_then(|r| {
        if encoded {
            tracing::warn!(request_id = %ex.id, "upstream compressed its response despite no accept-encoding; placeholders not restored");
            return None;
        }
        // The restored body's length differs from the upstream's.
        rparts.headers.remove(header::CONTENT_LENGTH);
        Some(r.transform(sse))
    });
    let idle = upstream.idle_timeout;
    let exchange = std::mem::replace(
        ex,
        Exchange::new(gw.clone(), ex.id.clone(), ex.peer, ex.started),
    );
    // The placeholder left in `ex` must not be recorded: only the relay records from now on.
    ex.recorded = true;
    let relay = Relay::new(incoming, idle, exchange, transform, sse);
    Ok(Response::from_parts(rparts, BodyExt::boxed(relay)))
}

fn truncate(s: &str, max: usize) -> String {
    let t: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        format!("{t}…")
    } else {
        t
    }
}

fn set_principal(ex: &mut Exchange, p: Option<&Principal>) {
    if let Some(p) = p {
        ex.user = Some(p.user.clone());
        ex.team = p.team.clone();
        ex.key_id = Some(p.key_id.clone());
    }
}

fn set_identity(ex: &mut Exchange, id: &Identity) {
    ex.tool = id.agent_id().to_string();
    ex.version = id
        .version
        .as_deref()
        .map(|v| truncate(v, 64))
        .unwrap_or_default();
    ex.signal = id.signal.clone();
}

/// Reads the whole body within `max_body_bytes`, the body time limit and the gateway's
/// in-flight budget ([`crate::budget`]); the returned reservation must live until the body has
/// been forwarded.
async fn read_body(
    rt: &Runtime,
    budget: &BodyBudget,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<(Bytes, Reservation), Reject> {
    let max = rt.limits.max_body_bytes;
    let too_large = || {
        Reject::new(
            ErrorKind::RequestTooLarge,
            format!(
                "Request body is larger than this Airlock's limit of {max} bytes (server.max_body_bytes)"
            ),
        )
    };
    let busy = || {
        Reject::new(
            ErrorKind::Unavailable,
            format!(
                "Airlock is holding as many request bodies as it may at once (server.max_inflight_body_bytes = {} bytes); retry shortly",
                budget.bytes()
            ),
        )
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    // Reserved as bytes arrive, not from `content-length`: a client that announces 32 MiB and
    // sends nothing must not hold the budget others need.
    let mut held = Reservation::default();
    let read = async {
        let mut body = body;
        let mut parts: Vec<Bytes> = Vec::new();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Reject::new(
                    ErrorKind::InvalidRequest,
                    format!("Could not read the request body: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            total += data.len() as u64;
            if total > max {
                return Err(too_large());
            }
            if !budget.grow(&mut held, data.len() as u64) {
                return Err(busy());
            }
            parts.push(data);
        }
        Ok(match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut all = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
                for p in parts {
                    all.extend_from_slice(&p);
                }
                all.freeze()
            }
        })
    };
    match tokio::time::timeout(rt.limits.body_timeout, read).await {
        Err(_) => Err(Reject::new(
            ErrorKind::RequestTimeout,
            format!(
                "Request body was not received within {} s",
                rt.limits.body_timeout.as_secs()
            ),
        )),
        Ok(r) => r.map(|b| (b, held)),
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), Reject> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let ok = ct.is_some_and(|v| {
        let media = v.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("application/json")
    });
    if ok {
        Ok(())
    } else {
        Err(Reject::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "Request body must be JSON with Content-Type: application/json (got {})",
                ct.map(|c| format!("{:?}", truncate(c, 60)))
                    .unwrap_or_else(|| "none".into())
            ),
        ))
    }
}

/// The few fields the gateway reads from a request body. Parsing into this validates the
/// whole JSON text without building a tree.
#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Stage 2 for inspected APIs: the body parsed once (see [`airlock_wire::Request`]).
fn parse_request<'b>(
    body: &'b [u8],
    api: Api,
    scope: &airlock_wire::VaultScope,
) -> Result<airlock_wire::Request<'b>, Reject> {
    airlock_wire::Request::parse_in(body, api, scope).map_err(|e| {
        let message = match e {
            airlock_wire::WireError::Json { offset, reason } => {
                format!("Request body is not valid JSON: {reason} at byte {offset}")
            }
            airlock_wire::WireError::NotUtf8 { offset } => {
                format!("Request body is not valid UTF-8 (at byte {offset})")
            }
            airlock_wire::WireError::NotAnObject => {
                "Request body is not a valid API request: expected a JSON object".to_string()
            }
        };
        Reject::new(ErrorKind::InvalidRequest, message)
    })
}

fn not_an_api_request(e: airlock_wire::FieldError) -> Reject {
    Reject::new(
        ErrorKind::InvalidRequest,
        format!("Request body is not a valid API request: {e}"),
    )
}

fn probe_body(body: &[u8]) -> Result<Probe, Reject> {
    serde_json::from_slice::<Probe>(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "Request body is not valid JSON"
        } else {
            "Request body is not a valid API request"
        };
        // serde_json's messages name the line and column, never the content.
        Reject::new(ErrorKind::InvalidRequest, format!("{what}: {e}"))
    })
}

/// `/v1beta/models/gemini-3.8-flash:streamGenerateContent` → `gemini-3.8-flash`.
fn gemini_model(path: &str) -> Option<&str> {
    let rest = path.split("/models/").nth(1)?;
    let model = rest.split(':').next()?;
    (!model.is_empty()).then_some(model)
}

/// The caller's credential as sent: `x-api-key`, `Authorization: Bearer`, or `x-goog-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Stage 3: `Ok(None)` = anonymous mode, `Ok(Some)` = a valid Airlock key.
fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Option<Principal>, Reject> {
    let keys = gw.keys();
    if keys.allows_anonymous() && gw.is_loopback() {
        // Anonymous single-user mode: the caller's vendor key (if any) passes through.
        return Ok(None);
    }
    match presented_key(headers) {
        None => Err(Reject::new(
            ErrorKind::Authentication,
            "This Airlock needs an Airlock API key (x-api-key or Authorization: Bearer); ask your administrator for one (`airlock keys create`)",
        )),
        Some(k) => keys.lookup(k).cloned().map(Some).ok_or_else(|| {
            Reject::new(
                ErrorKind::Authentication,
                "Invalid or revoked Airlock API key",
            )
        }),
    }
}

/// What stage 6 decided.
enum Inspected {
    /// Forward `body`; when it was rewritten, `restore` says how to restore the response.
    Forward {
        body: Pieces,
        restore: Option<Restore>,
    },
    /// A `block` action fired: this answer (403 in the API's shape) goes back to the agent.
    Blocked(Response<GatewayBody>),
}

/// The `airlock-wire` API of an endpoint; `None` for endpoints whose bodies are not inspected.
fn wire_api(endpoint: Endpoint) -> Option<Api> {
    match endpoint {
        Endpoint::AnthropicMessages => Some(Api::AnthropicMessages),
        Endpoint::AnthropicCountTokens => Some(Api::AnthropicCountTokens),
        Endpoint::OpenAiChat => Some(Api::OpenAiChat),
        Endpoint::OpenAiResponses => Some(Api::OpenAiResponses),
        Endpoint::Gemini => Some(Api::GeminiGenerateContent),
        Endpoint::Models => None,
    }
}

/// Bodies from this size on are inspected with [`tokio::task::block_in_place`].
const OFF_WORKER_BYTES: usize = 256 << 10;

/// Runs `f`, for a body of `len` bytes of at least [`OFF_WORKER_BYTES`], with the async worker's
/// other tasks handed to another thread first. Inspection is CPU work: typically 0.1-2.5 ms for
/// a megabyte, but a hostile body of covert characters or decoy secrets costs about half a
/// second per 100,000 findings (bounded by `airlock_wire::MAX_REQUEST_FINDINGS`); on the
/// gateway's few workers that stalled every other connection, health checks and streams
/// included, for as long. Small bodies (the common case, microseconds) stay inline: a hand-off
/// costs more than their inspection. Inline as well outside a multi-threaded runtime, where
/// `block_in_place` is not available.
fn off_worker<R>(len: usize, f: impl FnOnce() -> R) -> R {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if len >= OFF_WORKER_BYTES && multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Stage 6: the body as it will leave. Runs `airlock-wire` over every text-bearing part of the
/// request with the policy's actions. Nothing changed → the original bytes, no transform.
/// Rewritten → the new body and a [`Restore`] for the response. Blocked → the API's 403.
/// (A body the inspector cannot read never gets here: stage 2 refused it, fail closed.)
fn inspect(
    gw: &Gateway,
    rt: &Runtime,
    ex: &mut Exchange,
    api: Api,
    request: &airlock_wire::Request<'_>,
    scope: &airlock_wire::VaultScope,
    body: &Bytes,
) -> Inspected {
    let redactor = gw.redactor();
    let scope = scope.clone();
    let actions = rt.redaction.for_subject(ex.team.as_deref(), &ex.tool);
    let detector = redactor.detector();
    let (result, edits) = request.inspect_edits(api, &*detector, &actions, &scope);
    if result.limited {
        // Counts and places only: never content.
        tracing::warn!(
            request_id = %ex.id,
            findings = result.findings.len(),
            limit = actions.max_findings,
            blocked = result.blocked.is_some(),
            "request past the inspection's limit on findings; the rest was not inspected"
        );
    }
    ex.findings = u32::try_from(result.findings.len()).unwrap_or(u32::MAX);
    ex.findings_applied =
        u32::try_from(result.findings.iter().filter(|f| f.applied).count()).unwrap_or(u32::MAX);
    let mut summary: Vec<FindingSummary> = Vec::new();
    for f in &result.findings {
        let loc = f.location.path.clone();
        match summary.iter_mut().find(|s| s.rule_id == f.rule_id) {
            Some(s) => {
                s.count += 1;
                if s.locations.len() < MAX_FINDING_LOCATIONS {
                    s.locations.push(loc);
                }
            }
            None => summary.push(FindingSummary {
                rule_id: f.rule_id.clone(),
                count: 1,
                locations: vec![loc],
            }),
        }
    }
    ex.finding_summary = summary;
    if let Some(block) = &result.blocked {
        let (status, bytes) = airlock_wire::block_error(api, block);
        ex.decision = "blocked";
        ex.rule = block.rule_id.clone();
        ex.status = status;
        ex.error_source = Some(api::Cause::Client.as_str());
        ex.outcome = Outcome::Complete;
        ex.bytes_out = bytes.len() as u64;
        let mut r = plain(
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            "application/json",
            bytes,
        );
        r.headers_mut().insert(
            ERROR_SOURCE_HEADER,
            HeaderValue::from_static(api::Cause::Client.as_str()),
        );
        return Inspected::Blocked(r);
    }
    if edits.is_empty() {
        Inspected::Forward {
            body: Pieces::whole(body.clone()),
            restore: None,
        }
    } else {
        Inspected::Forward {
            body: Pieces::edited(body, edits),
            restore: Some(Restore { api, scope }),
        }
    }
}

/// The vault scope of the caller: its key, else its agent session, else the anonymous one.
/// Placeholders, and what the scope remembers of earlier requests, are shared within it.
fn vault_scope(gw: &Gateway, ex: &Exchange) -> airlock_wire::VaultScope {
    let key = match (&ex.key_id, &ex.session) {
        (Some(k), _) => format!("key:{k}"),
        (None, Some(s)) => format!("session:{s}"),
        (None, None) => "anonymous".to_string(),
    };
    gw.redactor().vault.scope(&key)
}

/// The headers sent upstream: the caller's, minus hop-by-hop headers, with the credential
/// replaced when the gateway holds the upstream's key.
fn upstream_headers(incoming: &HeaderMap, up: &Upstream, keyed: bool) -> Result<HeaderMap, Reject> {
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h);
    let replace = match (&up.credential, keyed) {
        (Some(_), _) => true,
        // Anonymous mode without a configured credential: pass the caller's own key through.
        (None, false) => false,
        (None, true) => {
            return Err(Reject::new(
                ErrorKind::Internal,
                format!(
                    "Upstream {:?} has no credential configured; set upstream.credential.env or .file in airlock.toml",
                    up.name
                ),
            ));
        }
    };
    if replace {
        h.remove("x-api-key");
        h.remove(header::AUTHORIZATION);
        h.remove("x-goog-api-key");
        if let Some(secret) = &up.credential {
            let (name, value) = match up.api {
                UpstreamApi::Anthropic => ("x-api-key", secret.expose().to_string()),
                UpstreamApi::OpenAi => ("authorization", format!("Bearer {}", secret.expose())),
                UpstreamApi::Gemini => ("x-goog-api-key", secret.expose().to_string()),
            };
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                Reject::new(
                    ErrorKind::Internal,
                    format!(
                        "Upstream {:?} credential contains characters not allowed in a header",
                        up.name
                    ),
                )
            })?;
            v.set_sensitive(true);
            h.insert(name, v);
        }
    }
    Ok(h)
}

/// Stage 7: send, retrying connection failures (nothing reached the upstream, nothing reached
/// the agent). Timeouts and other errors are not retried: the upstream may have started work.
async fn forward(
    gw: &Gateway,
    up: &Upstream,
    uri: http::Uri,
    headers: HeaderMap,
    body: Pieces,
) -> Result<Response<Incoming>, Reject> {
    let host = up.authority.as_str();
    let mut attempt = 0u32;
    loop {
        let mut req = Request::new(body.clone().into_body());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        match tokio::time::timeout(up.first_byte_timeout, up.client.request(req)).await {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) if e.is_connect() => {
                gw.metrics().upstream_error(&up.name, "connect");
                if attempt < up.retries {
                    tokio::time::sleep(Duration::from_millis(50u64 << attempt.min(5))).await;
                    attempt += 1;
                    continue;
                }
                return Err(Reject::new(
                    ErrorKind::UpstreamUnavailable,
                    format!(
                        "Airlock could not connect to upstream {:?} ({host}) after {} attempt(s): {}",
                        up.name,
                        attempt + 1,
                        error_chain(&e)
                    ),
                ));
            }
            Ok(Err(e)) => {
                gw.metrics().upstream_error(&up.name, "protocol");
                return Err(Reject::new(
                    ErrorKind::UpstreamUnavailable,
                    format!(
                        "Upstream {:?} ({host}) failed to answer with a valid HTTP response: {}",
                        up.name,
                        error_chain(&e)
                    ),
                ));
            }
            Err(_) => {
                gw.metrics().upstream_error(&up.name, "first_byte_timeout");
                return Err(Reject::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "Upstream {:?} ({host}) sent no response within {} ms",
                        up.name,
                        up.first_byte_timeout.as_millis()
                    ),
                ));
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_model_from_path() {
        assert_eq!(
            gemini_model("/v1beta/models/gemini-3.8-flash:streamGenerateContent"),
            Some("gemini-3.8-flash")
        );
        assert_eq!(gemini_model("/v1beta/models/:x"), None);
    }

    #[test]
    fn presented_key_sources() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer ak_live_x".parse().unwrap());
        assert_eq!(presented_key(&h), Some("ak_live_x"));
        h.insert("x-api-key", "ak_live_y".parse().unwrap());
        assert_eq!(presented_key(&h), Some("ak_live_y"));
        let mut g = HeaderMap::new();
        g.insert("x-goog-api-key", "k".parse().unwrap());
        assert_eq!(presented_key(&g), Some("k"));
        let mut b = HeaderMap::new();
        b.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&b), None);
    }

    #[test]
    fn probe_rejects_bad_json_without_echoing() {
        let e = probe_body(b"{\"model\": \"x\", \"secret\": sk-live-123").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(!e.message.contains("sk-live"));
        let e = probe_body(b"[1,2]").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let p = probe_body(br#"{"model":"claude-x","stream":true,"messages":[]}"#).unwrap();
        assert_eq!(p.model.as_deref(), Some("claude-x"));
        assert_eq!(p.stream, Some(true));
    }
}
