//! The upstream HTTP client and the streaming relay of upstream response bodies.
//!
//! The client is hyper-util's pooled client over rustls (ring provider, Mozilla roots) for
//! `https://` and plain TCP for `http://` (loopback tests, local model servers). The relay body
//! hands each upstream frame to the agent as soon as it arrives — no buffering — enforces the
//! idle timeout between frames, counts bytes, and tells the request's [`Exchange`] how the
//! stream ended. Dropping the relay (the agent hung up) drops the upstream body, which closes
//! the upstream connection: the upstream request is cancelled.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};

use crate::api::{self, ErrorKind};
use crate::pipeline::{Exchange, HeldCommit};
use airlock_audit::{BodyCapture, PriceTable};
use airlock_wire::UsageAccumulator;
use std::future::Future;

/// Boxed error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The pooled upstream client.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, PiecesBody>;

/// Most edits a rewritten body is sent as pieces for; beyond, it is built whole (a body with
/// thousands of placeholders would otherwise become thousands of tiny frames).
pub const MAX_EDITS_AS_PIECES: usize = 256;

/// A request body as it leaves for the upstream: pieces sent one after the other. A body
/// that redaction rewrote is the received body's unchanged stretches — slices sharing its
/// memory — with the rewritten literals between them, so a megabyte conversation with a few
/// placeholders is not copied again on every turn (that copy was 8 % of the gateway's CPU at
/// 1 MB per request). Cloning is cheap (for retries).
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    parts: Vec<Bytes>,
    len: u64,
}

impl Pieces {
    /// The received body, unchanged.
    pub fn whole(body: Bytes) -> Pieces {
        Pieces {
            len: body.len() as u64,
            parts: vec![body],
        }
    }

    /// `body` with `edits` applied: ordered and disjoint, as
    /// `airlock_wire::Request::inspect_edits` returns them. Edits that are not (out of order,
    /// overlapping or out of range) are skipped, as `airlock_wire::json::apply_edits` does.
    pub fn edited(body: &Bytes, edits: Vec<airlock_wire::json::Edit>) -> Pieces {
        let many = edits.len() > MAX_EDITS_AS_PIECES;
        let mut parts = Vec::with_capacity(edits.len() * 2 + 1);
        let mut pos = 0;
        for e in edits {
            if e.start < pos || e.end < e.start || e.end > body.len() {
                continue;
            }
            if e.start > pos {
                parts.push(body.slice(pos..e.start));
            }
            if !e.text.is_empty() {
                parts.push(Bytes::from(e.text));
            }
            pos = e.end;
        }
        if pos < body.len() {
            parts.push(body.slice(pos..));
        }
        let len = parts.iter().map(|p| p.len() as u64).sum();
        let pieces = Pieces { parts, len };
        if many {
            Pieces::whole(pieces.to_bytes())
        } else {
            pieces
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when there are no bytes to send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body in one buffer (a copy unless it is one piece), e.g. to store it in the audit
    /// log.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut all = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
                for p in many {
                    all.extend_from_slice(p);
                }
                Bytes::from(all)
            }
        }
    }

    /// The body hyper sends.
    pub fn into_body(self) -> PiecesBody {
        PiecesBody {
            remaining: self.len,
            parts: self.parts.into_iter(),
        }
    }
}

/// [`Pieces`] as an HTTP body of exactly known length (sent with `content-length`).
#[derive(Debug)]
pub struct PiecesBody {
    parts: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl Body for PiecesBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.parts.next().map(|p| {
            self.remaining = self.remaining.saturating_sub(p.len() as u64);
            Ok(Frame::data(p))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
/// How long an idle pooled upstream connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a failed event stream waits, after its error event, before it is cut.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(20);

/// Longest wait for an exchange's audit record to be committed before its answer is released
/// (beyond it, `[audit] overflow` decides: fail-closed fails the answer, fail-open serves it).
pub const AUDIT_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest SSE line kept while looking for usage (a Responses `response.completed` event holds
/// the whole answer); a longer line is skipped, never buffered further.
pub const MAX_USAGE_LINE_BYTES: usize = 4 << 20;
/// Largest non-streamed JSON response body kept to read its usage.
pub const MAX_USAGE_JSON_BYTES: usize = 4 << 20;

/// Builds a client with the given connect timeout.
pub fn build_client(connect_timeout: Duration) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .timer(TokioTimer::new())
        .build(https))
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones
/// the gateway sets itself. Everything else passes verbatim.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// Removes hop-by-hop headers (including those the `Connection` header names).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(h);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// How an upstream response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished yet.
    Pending,
    /// Every byte was relayed.
    Complete,
    /// The agent went away before the end (the upstream request was cancelled).
    ClientClosed,
    /// The upstream failed mid-body.
    UpstreamError,
    /// The upstream went quiet for longer than its idle timeout.
    IdleTimeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Complete => "complete",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::IdleTimeout => "upstream_idle_timeout",
        }
    }
}

/// Rewrites a response stream chunk by chunk (e.g. restoring redacted values). It may hold
/// back bytes between chunks and must release them in `finish`.
pub trait StreamTransform: Send + Sync {
    fn chunk(&mut self, data: Bytes) -> Bytes;
    fn finish(&mut self) -> Bytes;
}

#[derive(Debug)]
struct IdleTimeout(Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream sent nothing for {} ms", self.0.as_millis())
    }
}

impl std::error::Error for IdleTimeout {}

/// How a response body is read for usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum BodyKind {
    /// Not observed (no response yet, compressed, or not JSON/SSE).
    #[default]
    Off,
    /// `text/event-stream`: usage from each event's `data:` line.
    Sse,
    /// JSON: usage from the whole body (bounded).
    Json,
}

/// What the audit record learns from an exchange's bodies as they pass: the provider's token
/// usage (Anthropic `message_start`/`message_delta`, OpenAI Chat `usage`, Responses
/// `response.completed`) and, with `[audit] store_bodies`, the redacted bodies up to the cap.
/// Streams are parsed line by line as they are relayed, never buffered whole.
#[derive(Default)]
pub struct Observed {
    kind: BodyKind,
    /// For a `gzip` or `deflate` body: inflates a copy for the usage reader (the agent gets
    /// the upstream's bytes untouched).
    inflate: Option<Inflate>,
    inflated: u64,
    line: Vec<u8>,
    line_skipping: bool,
    json: Vec<u8>,
    json_overflow: bool,
    acc: UsageAccumulator,
    capture_cap: Option<usize>,
    captured: Vec<u8>,
    response_total: u64,
    /// The request body as it left (after redaction), when `store_bodies` is on.
    pub request_body: Option<BodyCapture>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("kind", &self.kind)
            .field("inflating", &self.inflate.is_some())
            .field("response_total", &self.response_total)
            .finish_non_exhaustive()
    }
}

/// What a response head says about its body; read once, used by the relay and the observer.
#[derive(Debug)]
pub struct BodyShape {
    /// `content-encoding`, unless absent or `identity`.
    pub encoding: Option<http::HeaderValue>,
    /// `text/event-stream`.
    pub event_stream: bool,
    /// `application/json` or a `+json` type.
    pub json: bool,
}

impl BodyShape {
    pub fn of(headers: &http::HeaderMap) -> BodyShape {
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
            .cloned();
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start()
            .to_ascii_lowercase();
        BodyShape {
            encoding,
            event_stream: ct.starts_with("text/event-stream"),
            json: ct.starts_with("application/json") || ct.contains("+json"),
        }
    }

    pub fn encoded(&self) -> bool {
        self.encoding.is_some()
    }
}

/// Most bytes a compressed response is inflated to for usage (a small body that inflates past
/// it is a bomb, or not an answer whose usage matters); then its usage is not read.
const MAX_INFLATED_BYTES: u64 = 64 << 20;

/// A streaming decoder for `content-encoding: gzip` or `deflate` (zlib-wrapped, as HTTP says;
/// raw deflate as some servers send it).
enum Inflate {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Raw(flate2::write::DeflateDecoder<Vec<u8>>),
    /// `deflate` before its first bytes tell which of the two it is.
    Deflate(Vec<u8>),
}

impl Inflate {
    fn for_encoding(enc: &[u8]) -> Option<Inflate> {
        let enc = std::str::from_utf8(enc).ok()?.trim().to_ascii_lowercase();
        match enc.as_str() {
            "gzip" | "x-gzip" => Some(Inflate::Gzip(flate2::write::GzDecoder::new(Vec::new()))),
            "deflate" => Some(Inflate::Deflate(Vec::new())),
            _ => None,
        }
    }

    /// Feeds compressed bytes; returns what they inflate to, or `None` once the body is not
    /// a valid stream of its encoding.
    fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        use std::io::Write;
        if let Inflate::Deflate(head) = self {
            head.extend_from_slice(chunk);
            if head.len() < 2 {
                return Some(Vec::new());
            }
            // A zlib header: CMF/FLG with a multiple-of-31 check and method 8.
            let zlib =
                head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            let head = std::mem::take(head);
            *self = if zlib {
                Inflate::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Inflate::Raw(flate2::write::DeflateDecoder::new(Vec::new()))
            };
            return self.feed(&head);
        }
        // `flush` moves what the decoder has inflated so far into its output vector.
        fn step<W: Write>(
            d: &mut W,
            chunk: &[u8],
            out: impl FnOnce(&mut W) -> Vec<u8>,
        ) -> Option<Vec<u8>> {
            d.write_all(chunk).and_then(|()| d.flush()).ok()?;
            Some(out(d))
        }
        match self {
            Inflate::Gzip(d) => step(d, chunk, |d| std::mem::take(d.get_mut())),
            Inflate::Zlib(d) => step(d, chunk, |d| std::mem::take(d.get_mut())),
            Inflate::Raw(d) => step(d, chunk, |d| std::mem::take(d.get_mut())),
            Inflate::Deflate(_) => None,
        }
    }
}

impl Observed {
    /// Starts observing a response of this shape; `capture_cap` = `store_bodies` cap.
    pub fn start_response(&mut self, shape: &BodyShape, capture_cap: Option<usize>) {
        self.capture_cap = capture_cap;
        // Encoded bodies are relayed as they are; gzip and deflate are inflated on the side for
        // usage, other encodings (br, zstd) are not read.
        self.inflate = shape
            .encoding
            .as_ref()
            .and_then(|v| Inflate::for_encoding(v.as_bytes()));
        self.kind = if shape.encoded() && self.inflate.is_none() {
            BodyKind::Off
        } else if shape.event_stream {
            BodyKind::Sse
        } else if shape.json {
            BodyKind::Json
        } else {
            BodyKind::Off
        };
    }

    /// Captures the request body as it leaves (already redacted).
    pub fn capture_request(&mut self, body: &[u8], cap: usize) {
        self.request_body = Some(BodyCapture::new(body, cap));
    }

    /// One chunk of the upstream response body, as the upstream sent it.
    pub fn data(&mut self, chunk: &[u8]) {
        self.response_total += chunk.len() as u64;
        if let Some(cap) = self.capture_cap {
            let room = cap.saturating_sub(self.captured.len());
            self.captured
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if self.kind == BodyKind::Off {
            return;
        }
        match self.inflate.as_mut() {
            None => self.read_usage(chunk),
            Some(inflate) => match inflate.feed(chunk) {
                Some(plain) => {
                    self.inflated += plain.len() as u64;
                    if self.inflated > MAX_INFLATED_BYTES {
                        self.stop_reading();
                    } else {
                        self.read_usage(&plain);
                    }
                }
                None => self.stop_reading(),
            },
        }
    }

    /// A body whose usage cannot be read (not valid for its encoding, or inflating too far).
    fn stop_reading(&mut self) {
        self.kind = BodyKind::Off;
        self.inflate = None;
        self.json = Vec::new();
        self.line = Vec::new();
    }

    /// Uncompressed body bytes, for the usage reader.
    fn read_usage(&mut self, chunk: &[u8]) {
        match self.kind {
            BodyKind::Off => {}
            BodyKind::Json => {
                if self.json_overflow {
                    return;
                }
                if self.json.len() + chunk.len() > MAX_USAGE_JSON_BYTES {
                    self.json_overflow = true;
                    self.json = Vec::new();
                } else {
                    self.json.extend_from_slice(chunk);
                }
            }
            BodyKind::Sse => {
                let mut rest = chunk;
                while let Some(i) = rest.iter().position(|&b| b == b'\n') {
                    let (head, tail) = rest.split_at(i);
                    rest = &tail[1..];
                    if self.line_skipping {
                        self.line_skipping = false;
                        self.line.clear();
                        continue;
                    }
                    if self.line.is_empty() {
                        Self::sse_line(&mut self.acc, head);
                    } else {
                        self.line.extend_from_slice(head);
                        let line = std::mem::take(&mut self.line);
                        Self::sse_line(&mut self.acc, &line);
                        self.line = line;
                        self.line.clear();
                    }
                }
                if !self.line_skipping {
                    if self.line.len() + rest.len() > MAX_USAGE_LINE_BYTES {
                        self.line_skipping = true;
                        self.line = Vec::new();
                    } else {
                        self.line.extend_from_slice(rest);
                    }
                }
            }
        }
    }

    fn sse_line(acc: &mut UsageAccumulator, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(data) = line.strip_prefix(b"data:") {
            let data = data.strip_prefix(b" ").unwrap_or(data);
            acc.feed_json(data);
        }
    }

    /// The usage seen so far (and its cost for `model`), `None` when the provider sent none.
    pub fn usage(&mut self, model: &str, prices: &PriceTable) -> Option<airlock_audit::Usage> {
        if self.kind == BodyKind::Json && !self.json.is_empty() {
            let json = std::mem::take(&mut self.json);
            self.acc.feed_json(&json);
        }
        if self.kind == BodyKind::Sse && !self.line.is_empty() && !self.line_skipping {
            // A last line without its newline.
            let line = std::mem::take(&mut self.line);
            Self::sse_line(&mut self.acc, &line);
        }
        let u = self.acc.usage();
        if u.is_empty() {
            return None;
        }
        let mut out = airlock_audit::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_write_tokens: u.cache_creation_tokens,
            reasoning_tokens: u.reasoning_tokens,
            cost_micro_usd: None,
        };
        out.cost_micro_usd = prices.cost_micro_usd(model, &out);
        Some(out)
    }

    /// The captured response body (redacted: as the upstream sent it, before placeholders are
    /// restored), when `store_bodies` is on and a response was seen.
    pub fn response_body(&mut self) -> Option<BodyCapture> {
        self.capture_cap?;
        if self.response_total == 0 && self.captured.is_empty() {
            return None;
        }
        let cap = BodyCapture::new(&self.captured, self.captured.len());
        let total = self.response_total;
        self.captured = Vec::new();
        Some(BodyCapture {
            original_bytes: total,
            truncated: cap.captured_bytes < total,
            ..cap
        })
    }
}

/// The streaming relay of an upstream response body.
pub struct Relay {
    inner: Incoming,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    exchange: Option<Exchange>,
    transform: Option<Box<dyn StreamTransform>>,
    done: bool,
    /// The audit commit of a completed exchange: the end of the body is released only once
    /// it resolves, so an agent that saw the end of its answer has a durable record.
    commit: Option<HeldCommit>,
    /// Body bytes still to come when the upstream announced a length (and nothing rewrites
    /// the body): the frame that completes it is the end the agent sees, so it is held.
    remaining: Option<u64>,
    /// The last frame of a known-length body, held until the audit commit resolves.
    held: Option<Frame<Bytes>>,
    /// `[audit] overflow = "fail_closed"`: a record that cannot be committed fails the body.
    fail_closed: bool,
    /// Why the record of a completed exchange is not committed (reported once).
    audit_failure: Option<String>,
    /// The API (endpoint label) when the response is an event stream: a failure mid-stream is
    /// then told to the agent as an error event of that API before the stream is cut.
    sse_api: Option<&'static str>,
    /// The error to end the body with, once the error event has gone out.
    failed: Option<BoxError>,
}

impl Relay {
    pub fn new(
        inner: Incoming,
        idle: Duration,
        exchange: Exchange,
        transform: Option<Box<dyn StreamTransform>>,
        is_event_stream: bool,
    ) -> Self {
        let remaining = if transform.is_none() {
            inner.size_hint().exact()
        } else {
            None
        };
        let sse_api = is_event_stream.then_some(exchange.api);
        Relay {
            sse_api,
            failed: None,
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            fail_closed: exchange.audit_fail_closed(),
            exchange: Some(exchange),
            transform,
            done: false,
            commit: None,
            remaining,
            held: None,
            audit_failure: None,
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.done = true;
        if let Some(mut ex) = self.exchange.take() {
            ex.outcome = outcome;
            let commit = ex.finish();
            if outcome == Outcome::Complete {
                if ex.audit_lost() {
                    self.audit_failure = Some("audit queue refused the record".into());
                }
                if commit.is_some() {
                    self.sleep
                        .as_mut()
                        .reset(Instant::now() + AUDIT_COMMIT_TIMEOUT);
                }
                self.commit = commit;
            }
        }
    }

    /// A failure after the head went out. An event stream first gets the error as an event of
    /// its API (agents show it; a bare cut reads as a network error), with whatever restored
    /// text was held back; the body then still ends in error, never cleanly, so no agent takes
    /// the answer for complete.
    fn fail(
        &mut self,
        kind: ErrorKind,
        message: &str,
        error: BoxError,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(event) = self
            .sse_api
            .take()
            .and_then(|api| api::sse_error_event(api, kind, message))
        else {
            return Poll::Ready(Some(Err(error)));
        };
        let mut out = Vec::new();
        if let Some(mut t) = self.transform.take() {
            out.extend_from_slice(&t.finish());
        }
        out.extend_from_slice(&event);
        self.count(out.len());
        self.failed = Some(error);
        self.sleep.as_mut().reset(Instant::now() + FLUSH_BEFORE_CUT);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }

    fn count(&mut self, n: usize) {
        if let Some(ex) = self.exchange.as_mut() {
            ex.bytes_out += n as u64;
        }
    }

    /// Waits (bounded) for the audit commit of a completed exchange. `Err` only when the
    /// record is not committed and the policy is fail-closed.
    fn poll_commit(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if let Some(c) = self.commit.as_mut() {
            let failure = match Pin::new(c).poll(cx) {
                Poll::Ready(Ok(_)) => None,
                Poll::Ready(Err(e)) => Some(e.to_string()),
                Poll::Pending => {
                    if self.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    Some(format!(
                        "audit record not committed within {} ms",
                        AUDIT_COMMIT_TIMEOUT.as_millis()
                    ))
                }
            };
            self.commit = None;
            if failure.is_some() {
                self.audit_failure = failure;
            }
        }
        if let Some(why) = self.audit_failure.take() {
            tracing::warn!(error = %why, "audit record of a completed exchange not committed");
            if self.fail_closed {
                self.held = None;
                return Poll::Ready(Err(Box::new(AuditNotCommitted(why))));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The body error when a completed exchange's record could not be committed under
/// `[audit] overflow = "fail_closed"`.
#[derive(Debug)]
struct AuditNotCommitted(String);

impl std::fmt::Display for AuditNotCommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "answer withheld: {} (audit policy is fail-closed)",
            self.0
        )
    }
}

impl std::error::Error for AuditNotCommitted {}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.done {
            // An empty body may be complete without ever being polled.
            let complete = self.transform.is_none() && self.inner.is_end_stream();
            self.end(if complete {
                Outcome::Complete
            } else {
                Outcome::ClientClosed
            });
        }
    }
}

impl Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed.is_some() {
            // The error event is written; give the connection a moment to flush it (the cut
            // that follows may drop unflushed bytes), then end the body in error.
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(this.failed.take().map(Err));
        }
        loop {
            if this.commit.is_some() || this.audit_failure.is_some() {
                match this.poll_commit(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {}
                }
            }
            if let Some(f) = this.held.take() {
                return Poll::Ready(Some(Ok(f)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                    let mut last = false;
                    if let (Some(d), Some(ex)) = (frame.data_ref(), this.exchange.as_mut()) {
                        ex.observed.data(d);
                    }
                    if let (Some(d), Some(rem)) = (frame.data_ref(), this.remaining.as_mut()) {
                        *rem = rem.saturating_sub(d.len() as u64);
                        last = *rem == 0;
                    }
                    let frame = match (frame.into_data(), this.transform.as_mut()) {
                        (Ok(data), Some(t)) => Frame::data(t.chunk(data)),
                        (Ok(data), None) => Frame::data(data),
                        (Err(other), _) => other,
                    };
                    if let Some(d) = frame.data_ref() {
                        this.count(d.len());
                    }
                    if last {
                        // The agent has its whole answer with this frame: record first.
                        this.end(Outcome::Complete);
                        this.held = Some(frame);
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.end(Outcome::UpstreamError);
                    let msg = format!("Airlock: the upstream connection failed mid-stream ({e})");
                    return this.fail(ErrorKind::UpstreamUnavailable, &msg, Box::new(e));
                }
                Poll::Ready(None) => {
                    if let Some(t) = this.transform.as_mut() {
                        let rest = t.finish();
                        this.transform = None;
                        if !rest.is_empty() {
                            this.count(rest.len());
                            // Released after the commit, like the end of the body.
                            this.end(Outcome::Complete);
                            this.held = Some(Frame::data(rest));
                            continue;
                        }
                    }
                    this.end(Outcome::Complete);
                    continue;
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.end(Outcome::IdleTimeout);
                        let e = IdleTimeout(this.idle);
                        let msg = format!(
                            "Airlock: the {e}, so the stream was stopped (upstream idle_timeout_ms)"
                        );
                        return this.fail(ErrorKind::UpstreamTimeout, &msg, Box::new(e));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not ended before the final poll: that poll waits for the audit commit.
        self.done && self.commit.is_none() && self.held.is_none() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.transform.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_wire::json::{Edit, apply_edits, order_edits};
    use proptest::prelude::*;

    fn sent(p: Pieces) -> (Vec<u8>, u64) {
        let mut body = p.into_body();
        let announced = body.size_hint().exact().unwrap();
        let mut out = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.extend_from_slice(f.data_ref().unwrap());
        }
        assert!(body.is_end_stream());
        (out, announced)
    }

    proptest! {
        /// The pieces send exactly what the whole rewritten body would be, with the right
        /// length announced: few edits (slices of the body) and many (one buffer) alike, and
        /// edits out of range are skipped like `apply_edits` skips them.
        #[test]
        fn pieces_send_the_rewritten_body(
            src in "[a-z\"{}:,]{0,3000}",
            raw in proptest::collection::vec((0usize..3100, 0usize..40, "[A-Z_]{0,12}"), 0..400),
        ) {
            let edits: Vec<Edit> = raw
                .into_iter()
                .map(|(start, n, text)| Edit { start, end: start + n, text })
                .collect();
            let in_range: Vec<Edit> =
                edits.iter().filter(|e| e.end <= src.len()).cloned().collect();
            let want = apply_edits(&src, &mut in_range.clone());
            let mut ordered = in_range;
            order_edits(&mut ordered);
            // Out-of-range edits mixed back in at the end must be skipped.
            ordered.extend(edits.into_iter().filter(|e| e.end > src.len()));
            let body = Bytes::from(src.clone());
            let pieces = Pieces::edited(&body, ordered);
            prop_assert_eq!(pieces.len(), want.len() as u64);
            prop_assert_eq!(&pieces.to_bytes()[..], want.as_bytes());
            let (out, announced) = sent(pieces);
            prop_assert_eq!(announced, want.len() as u64);
            prop_assert_eq!(out, want.into_bytes());
        }
    }

    #[test]
    fn many_edits_are_sent_as_one_buffer() {
        let src = "ab".repeat(400);
        let edits: Vec<Edit> = (0..300)
            .map(|i| Edit {
                start: 2 * i,
                end: 2 * i + 1,
                text: "X".into(),
            })
            .collect();
        let want = apply_edits(&src, &mut edits.clone());
        let p = Pieces::edited(&Bytes::from(src), edits);
        assert_eq!(p.parts.len(), 1);
        assert_eq!(sent(p).0, want.into_bytes());
    }

    #[test]
    fn unedited_body_is_sent_as_it_came() {
        let body = Bytes::from_static(b"{\"model\":\"gpt-5\"}");
        let p = Pieces::whole(body.clone());
        assert_eq!(p.to_bytes().as_ptr(), body.as_ptr(), "no copy");
        assert_eq!(sent(p), (body.to_vec(), body.len() as u64));
        assert_eq!(sent(Pieces::default()), (Vec::new(), 0));
    }

    #[test]
    fn strips_hop_by_hop_only() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-drop-me".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-drop-me", "1".parse().unwrap());
        h.insert("anthropic-beta", "claude-code-20250219".parse().unwrap());
        h.insert("x-stainless-retry-count", "0".parse().unwrap());
        h.insert("content-length", "10".parse().unwrap());
        h.insert("host", "127.0.0.1:8787".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(h.contains_key("anthropic-beta"));
        assert!(h.contains_key("x-stainless-retry-count"));
    }
}
