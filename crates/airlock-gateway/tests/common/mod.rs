//! Test harness: an in-process mock upstream written with hyper, a gateway on 127.0.0.1:0,
//! and a plain hyper client. Everything is real HTTP over loopback.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use airlock_gateway::{ConfigSource, Gateway};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the mock upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response body fed event by event from the test.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The mock upstream. Behaviour is chosen by the `x-mock` request header (which, like every
/// other non-hop-by-hop header, the gateway passes through):
/// - absent: 200 JSON echo of the path, or a 3-event SSE stream when the body has `"stream":true`
/// - `status-429`: 429 with an Anthropic-style rate-limit body and `retry-after`
/// - `channel`: 200 SSE whose events come from the test through [`Mock::take_stream`]
/// - `slow`: waits 5 s before answering
pub struct Mock {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    streams: Arc<Mutex<Vec<oneshot::Sender<mpsc::Sender<Bytes>>>>>,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let streams: Arc<Mutex<Vec<oneshot::Sender<mpsc::Sender<Bytes>>>>> =
            Arc::new(Mutex::new(Vec::new()));
        let (s2, st2) = (seen.clone(), streams.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, streams) = (s2.clone(), st2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (seen, streams) = (seen.clone(), streams.clone());
                        async move { Ok::<_, Infallible>(mock_handle(req, seen, streams).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Mock {
            addr,
            seen,
            streams,
        }
    }

    /// Registers interest in the next `x-mock: channel` request; resolves to the sender that
    /// feeds its response body.
    pub fn take_stream(&self) -> oneshot::Receiver<mpsc::Sender<Bytes>> {
        let (tx, rx) = oneshot::channel();
        self.streams.lock().unwrap().push(tx);
        rx
    }

    /// Sends a streaming `body` to `path` on the gateway at `gw` with `x-mock: channel` (and
    /// `headers`), and waits until the request reached this mock: returns the sender that
    /// feeds the mock's answer, and the gateway's response, which arrives once the first
    /// event is sent.
    pub async fn stream_through(
        &self,
        gw: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (
        mpsc::Sender<Bytes>,
        tokio::task::JoinHandle<Response<Incoming>>,
    ) {
        let feed = self.take_stream();
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("http://{gw}{path}"))
            .header("content-type", "application/json")
            .header("x-mock", "channel");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let c = client();
        let resp = tokio::spawn(async move { c.request(req).await.unwrap() });
        let tx = tokio::time::timeout(Duration::from_secs(5), feed)
            .await
            .expect("the request reached the mock upstream")
            .unwrap();
        (tx, resp)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the mock upstream saw no request")
    }
}

fn full(b: impl Into<Bytes>) -> MockBody {
    Full::new(b.into()).boxed()
}

async fn mock_handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    streams: Arc<Mutex<Vec<oneshot::Sender<mpsc::Sender<Bytes>>>>>,
) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let behaviour = parts
        .headers
        .get("x-mock")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let stream = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
        .unwrap_or(false)
        || parts.uri.path().ends_with(":streamGenerateContent");
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body,
    });
    if let Some(label) = behaviour.strip_prefix("echo-") {
        let body = seen.lock().unwrap().last().unwrap().body.clone();
        if parts.uri.path().contains("/models/") {
            return echo_placeholder_gemini(label, &body, stream);
        }
        return echo_placeholder(label, &body, stream);
    }
    match behaviour.as_str() {
        "status-429" => Response::builder()
            .status(429)
            .header("content-type", "application/json")
            .header("retry-after", "7")
            .header("anthropic-ratelimit-requests-remaining", "0")
            .body(full(
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            ))
            .unwrap(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::new(full("late"))
        }
        "channel" => {
            let (tx, rx) = mpsc::channel(16);
            let waiter = streams.lock().unwrap().pop();
            if let Some(w) = waiter {
                let _ = w.send(tx);
            }
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(ChannelBody(rx).boxed())
                .unwrap()
        }
        _ if stream => {
            let events = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
                          event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hello\"}}\n\n\
                          event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for chunk in events.split_inclusive("\n\n") {
                    if tx.send(Bytes::from(chunk.to_string())).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("x-upstream-marker", "sse")
                .body(ChannelBody(rx).boxed())
                .unwrap()
        }
        _ => Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream-marker", "json")
            .header("request-id", "req_upstream_1")
            .body(full(format!(
                "{{\"ok\":true,\"path\":{:?}}}",
                parts.uri.path()
            )))
            .unwrap(),
    }
}

/// The first placeholder `[REDACTED_<label>...]` in `body`, if any.
pub fn find_placeholder(body: &[u8], label: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("[REDACTED_{label}"))?;
    let end = start + text[start..].find(']')?;
    Some(text[start..=end].to_string())
}

/// `x-mock: echo-<LABEL>`: the model "uses" the placeholder it was given. Streaming: an
/// Anthropic SSE answer whose placeholder is split across two text deltas; otherwise an OpenAI
/// chat completion with the placeholder in the message content.
fn echo_placeholder(label: &str, body: &[u8], stream: bool) -> Response<MockBody> {
    let ph = find_placeholder(body, label).unwrap_or_else(|| "NO_PLACEHOLDER".into());
    if stream {
        let mid = ph.len() / 2;
        let (a, b) = ph.split_at(mid);
        let events = vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n".to_string(),
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
            format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"export TOKEN={a}\"}}}}\n\n"),
            format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{b} done\"}}}}\n\n"),
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".to_string(),
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\n\n".to_string(),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_string(),
        ];
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            for e in events {
                if tx.send(Bytes::from(e)).await.is_err() {
                    return;
                }
            }
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(ChannelBody(rx).boxed())
            .unwrap();
    }
    let answer = serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-5",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("export TOKEN={ph}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    });
    let bytes = serde_json::to_vec(&answer).unwrap();
    Response::builder()
        .header("content-type", "application/json")
        .header("content-length", bytes.len().to_string())
        .body(full(bytes))
        .unwrap()
}

/// `echo-<LABEL>` for a Gemini request: the placeholder split across two text parts of an SSE
/// stream (with a function call using it whole in the last event), or in one JSON answer.
fn echo_placeholder_gemini(label: &str, body: &[u8], stream: bool) -> Response<MockBody> {
    let ph = find_placeholder(body, label).unwrap_or_else(|| "NO_PLACEHOLDER".into());
    let text = |t: &str| serde_json::json!({"content": {"parts": [{"text": t}], "role": "model"}, "index": 0});
    if !stream {
        let answer = serde_json::json!({
            "candidates": [{"content": {"parts": [{"text": format!("export TOKEN={ph}")}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(full(serde_json::to_vec(&answer).unwrap()))
            .unwrap();
    }
    let (a, b) = ph.split_at(ph.len() / 2);
    let last = serde_json::json!({
        "candidates": [{"content": {"parts": [{"text": format!("{b} done")}, {"functionCall": {"name": "run_shell_command", "args": {"command": format!("echo {ph}")}}}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 12},
    });
    let events = vec![
        format!(
            "data: {}\r\n\r\n",
            serde_json::json!({"candidates": [text(&format!("export TOKEN={a}"))]})
        ),
        format!("data: {last}\r\n\r\n"),
    ];
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        for e in events {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody(rx).boxed())
        .unwrap()
}

/// A running gateway.
pub struct Gw {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    /// Graceful shutdown: in-flight requests finish, the audit log is flushed and closed.
    pub async fn stop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("gateway stops within 20 s")
                .expect("serve task");
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The config used by most tests: all three APIs on the mock, short timeouts.
pub fn base_config(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 1048576
max_header_bytes = 16384
header_timeout_ms = 500

[[upstream]]
name = "anthropic"
api = "anthropic"
base_url = "http://{mock}"
credential = {{ passthrough = true }}
first_byte_timeout_ms = 1500
idle_timeout_ms = 3000
retries = 1

[[upstream]]
name = "openai"
api = "openai"
base_url = "http://{mock}/v1"
credential = {{ passthrough = true }}
first_byte_timeout_ms = 1500
idle_timeout_ms = 3000

[[upstream]]
name = "gemini"
api = "gemini"
base_url = "http://{mock}"
credential = {{ passthrough = true }}

[[model]]
id = "claude-sonnet-4-5"
api = "anthropic"

[[model]]
id = "gpt-5"
api = "openai"
owned_by = "openai"

{extra}
"#
    )
}

/// Starts a gateway with `config` (TOML text) and a fresh data directory. `prepare` runs on the
/// data directory before start (e.g. to create keys).
pub async fn start_gateway_with(config: &str, prepare: impl FnOnce(&std::path::Path)) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("airlock.toml");
    std::fs::write(&config_path, config).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    prepare(&data);
    let source = ConfigSource {
        path: Some(config_path.clone()),
        data_dir: Some(data),
        ..ConfigSource::default()
    };
    let gateway = Gateway::new(source).expect("gateway starts");
    let listener = gateway.bind().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let g = gateway.clone();
    let task = tokio::spawn(async move {
        g.serve(listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Gw {
        addr,
        gateway,
        dir,
        config_path,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// The error `Gateway::new` gives for `config` (TOML text); panics if the gateway starts.
pub fn start_error(config: &str) -> airlock_gateway::GatewayError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.toml");
    std::fs::write(&path, config).unwrap();
    Gateway::new(ConfigSource {
        path: Some(path),
        data_dir: Some(dir.path().join("data")),
        ..ConfigSource::default()
    })
    .unwrap_err()
}

pub async fn start_gateway(config: &str) -> Gw {
    start_gateway_with(config, |_| {}).await
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends a request and collects the whole answer.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, HeaderMap, Bytes) {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    exchange(b.body(Full::new(body.into())).unwrap()).await
}

/// Replays a captured agent request to `addr` and collects the whole answer.
pub async fn replay(c: &Captured, addr: SocketAddr) -> (u16, HeaderMap, Bytes) {
    exchange(captured_request(c, addr)).await
}

async fn exchange(req: Request<Full<Bytes>>) -> (u16, HeaderMap, Bytes) {
    let resp = client().request(req).await.expect("gateway answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("body within 10 s")
        .expect("body")
        .to_bytes();
    (status, headers, body)
}

pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

pub const JSON: (&str, &str) = ("content-type", "application/json");

/// One `via == "direct"` request from the real agent captures.
#[derive(Debug, Clone)]
pub struct Captured {
    pub file: String,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/agents"
    ))
}

pub fn captured(file: &str) -> Vec<Captured> {
    let path = fixtures_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["via"] == "direct")
        .map(|v| Captured {
            file: file.to_string(),
            method: v["method"].as_str().unwrap().to_string(),
            target: v["target"].as_str().unwrap().to_string(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        h[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: v["body"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// Headers the gateway (or any HTTP hop) legitimately re-writes.
pub fn is_hop_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Builds the captured request against the gateway (hop headers dropped; the client sets them).
pub fn captured_request(c: &Captured, addr: SocketAddr) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(c.method.as_str())
        .uri(format!("http://{addr}{}", c.target));
    for (k, v) in &c.headers {
        if !is_hop_header(k) {
            b = b.header(k.as_str(), v.as_str());
        }
    }
    b.body(Full::new(Bytes::from(c.body.clone()))).unwrap()
}

pub async fn metrics(addr: SocketAddr) -> String {
    let (status, _, body) = send(addr, "GET", "/metrics", &[], Bytes::new()).await;
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}

// Injected values (shared by the redaction, audit and no-leak tests).

pub const AWS_KEY_ID: &str = "AKIAZ7QK3M2XW5P4TR6N";
pub const ZW: &str = "\u{200B}";

/// A GitHub classic token with a valid CRC32 checksum.
pub fn github_token() -> String {
    let random = "Zq8T2vLmW4xR9sKp3NbY7cHd1FgJ6u";
    format!(
        "ghp_{random}{}",
        airlock_detect::validate::crc32_base62_suffix(random)
    )
}

/// The first claude-code capture with a user message carrying an AWS key id, a GitHub token
/// and a zero-width space appended.
pub fn claude_with_secrets() -> Captured {
    let mut c = captured("claude-code-2.1.332.jsonl")
        .into_iter()
        .find(|c| c.target.starts_with("/v1/messages"))
        .expect("a claude-code messages request");
    let mut v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    let text = format!(
        "deploy with AWS_ACCESS_KEY_ID={AWS_KEY_ID} and GITHUB_TOKEN={} to pro{ZW}duction",
        github_token()
    );
    v["messages"]
        .as_array_mut()
        .expect("messages")
        .push(serde_json::json!({"role": "user", "content": [{"type": "text", "text": text}]}));
    c.body = serde_json::to_string(&v).unwrap();
    c
}

pub fn with_mock(c: &Captured, behaviour: &str) -> Captured {
    let mut c = c.clone();
    c.headers.push(("x-mock".into(), behaviour.into()));
    c
}

/// The text of every Anthropic `text_delta` in an SSE stream, concatenated.
pub fn sse_text(body: &[u8]) -> String {
    let mut out = String::new();
    for line in String::from_utf8_lossy(body).lines() {
        if let Some(data) = line.strip_prefix("data: ")
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
            && let Some(t) = v["delta"]["text"].as_str()
        {
            out.push_str(t);
        }
    }
    out
}
