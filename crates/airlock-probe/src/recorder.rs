//! The recorder: a real HTTP/1.1 server on 127.0.0.1 that plays the model API and the agent's
//! HTTP(S) proxy at once, and records every request it sees.
//!
//! - Origin-form requests (`POST /v1/messages`) are API calls, answered from [`crate::canned`].
//! - Absolute-URI requests (`POST http://api.corp-example.cn:PORT/v1/messages`, the agent
//!   using the recorder as plain-HTTP proxy) are API calls when the authority is one of the
//!   configured API hosts on the recorder's port; any other host is recorded and refused (403).
//! - `CONNECT host:port` to an API host on the recorder's port is accepted and the tunnel is
//!   served as plain HTTP (clients that always tunnel through a proxy, even for `http://`);
//!   every other CONNECT (telemetry, update checks, the real vendor over TLS) is recorded by
//!   host and refused with 403. Nothing ever leaves the machine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::canned::{self, Api};

/// Largest request body recorded; larger bodies are answered 413 and recorded truncated.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// At most this many requests are recorded per recorder (later ones are answered, not kept).
pub const MAX_RECORDS: usize = 10_000;
/// At most this many connections are served at once.
const MAX_CONNECTIONS: usize = 256;

/// How a request reached the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Straight to the recorder (origin-form target).
    Direct,
    /// Through the recorder acting as plain-HTTP proxy (absolute-URI target).
    Proxy,
    /// Inside an accepted CONNECT tunnel to an API host.
    Tunnel,
    /// A CONNECT request itself.
    Connect,
}

/// One recorded request.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub seq: u64,
    /// Unix time in milliseconds.
    pub ts_ms: u64,
    pub via: Via,
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The host (and port) the request was meant for.
    pub host: String,
    pub path: String,
    pub query: String,
    /// Header names (lower case) and values, in the order hyper delivers them.
    pub headers: Vec<(String, String)>,
    /// The body as sent (lossy UTF-8), possibly truncated.
    pub body: String,
    pub body_len: usize,
    pub body_truncated: bool,
    /// What the recorder answered.
    pub status: u16,
    pub note: String,
    /// Whether this is a model API call (answered from the canned responses).
    pub api: Option<Api>,
}

impl RecordedRequest {
    /// The host name without port.
    pub fn host_name(&self) -> &str {
        split_authority(&self.host).0
    }
}

/// Configuration of one recorder.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Host names (without port) that are treated as the model API when the agent reaches them
    /// through the proxy on the recorder's own port.
    pub api_hosts: Vec<String>,
    pub max_body: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            api_hosts: vec!["127.0.0.1".into(), "localhost".into()],
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

struct State {
    port: u16,
    cfg: RecorderConfig,
    records: Mutex<Vec<RecordedRequest>>,
    seq: std::sync::atomic::AtomicU64,
}

/// A running recorder. Dropping it stops it.
pub struct Recorder {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(cfg: RecorderConfig) -> std::io::Result<Recorder> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            port: addr.port(),
            cfg,
            records: Mutex::new(Vec::new()),
            seq: std::sync::atomic::AtomicU64::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (stream, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "recorder accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let st = st.clone();
                conns.spawn(async move {
                    serve(st, TokioIo::new(stream), false).await;
                    drop(permit);
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Recorder { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of everything recorded so far, in arrival order.
    pub fn records(&self) -> Vec<RecordedRequest> {
        let mut v = self
            .state
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        v.sort_by_key(|r| r.seq);
        v
    }
}

async fn serve<I>(state: Arc<State>, io: I, tunnel: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let st = state.clone();
    let svc = service_fn(move |req| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(handle(st, req, tunnel).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "recorder connection ended with an error");
    }
}

/// Serves the inside of an accepted CONNECT tunnel. Boxed to break the type cycle
/// serve → handle → serve.
fn serve_tunnel(
    state: Arc<State>,
    io: hyper::upgrade::Upgraded,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(serve(state, io, true))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Splits `host:port` / `[::1]:port` into host and optional port.
pub fn split_authority(a: &str) -> (&str, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (h, p.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (a, None);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (a, None),
    }
}

impl State {
    fn is_api_authority(&self, authority: &str) -> bool {
        let (h, p) = split_authority(authority);
        p == Some(self.port) && self.cfg.api_hosts.iter().any(|x| x.eq_ignore_ascii_case(h))
    }

    fn record(&self, mut r: RecordedRequest) {
        r.seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if let Ok(mut v) = self.records.lock()
            && v.len() < MAX_RECORDS
        {
            v.push(r);
        }
    }
}

fn text_response(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn error_json(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"type": "error", "error": {"type": "airlock_probe", "message": message}});
    text_response(status, "application/json", body.to_string())
}

async fn handle(
    state: Arc<State>,
    mut req: Request<Incoming>,
    tunnel: bool,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let target = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let host_header = req
        .headers()
        .get(http::header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut rec = RecordedRequest {
        seq: 0,
        ts_ms: now_ms(),
        via: Via::Direct,
        method: method.as_str().to_string(),
        target: target.clone(),
        host: host_header.clone(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers,
        body: String::new(),
        body_len: 0,
        body_truncated: false,
        status: 0,
        note: String::new(),
        api: None,
    };

    if method == Method::CONNECT {
        rec.via = Via::Connect;
        rec.path = String::new();
        rec.query = String::new();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or(target);
        rec.host = authority.clone();
        if state.is_api_authority(&authority) {
            rec.status = 200;
            rec.note = "connect-tunnel-to-api".into();
            let on_upgrade = hyper::upgrade::on(&mut req);
            let st = state.clone();
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => serve_tunnel(st, upgraded).await,
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            state.record(rec);
            return Response::new(Full::new(Bytes::new()));
        }
        rec.status = 403;
        rec.note = "connect-refused".into();
        state.record(rec);
        return error_json(
            StatusCode::FORBIDDEN,
            "airlock probe: outside connections are refused",
        );
    }

    // Where was it meant to go?
    let (parts, body) = req.into_parts();
    let is_api = if let Some(auth) = parts.uri.authority() {
        rec.via = Via::Proxy;
        rec.host = auth.to_string();
        state.is_api_authority(auth.as_str())
    } else {
        rec.via = if tunnel { Via::Tunnel } else { Via::Direct };
        true
    };

    // Read the body, bounded.
    let bytes = match Limited::new(body, state.cfg.max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            rec.body_truncated = true;
            rec.status = 413;
            rec.note = format!("body-not-read: {e}");
            state.record(rec);
            return error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "airlock probe: request body too large or unreadable",
            );
        }
    };
    rec.body_len = bytes.len();
    rec.body = String::from_utf8_lossy(&bytes).into_owned();

    if !is_api {
        rec.status = 403;
        rec.note = "proxy-refused".into();
        state.record(rec);
        return error_json(
            StatusCode::FORBIDDEN,
            "airlock probe: outside connections are refused",
        );
    }

    let Some(api) = Api::from_path(method.as_str(), &rec.path) else {
        rec.status = 404;
        rec.note = "unknown-endpoint".into();
        state.record(rec);
        return error_json(
            StatusCode::NOT_FOUND,
            "airlock probe: no canned answer for this endpoint",
        );
    };
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let canned = canned::answer(api, &rec.path, &rec.query, parsed.as_ref());
    rec.status = canned.status;
    rec.note = canned.note.to_string();
    rec.api = Some(api);
    state.record(rec);
    let status = StatusCode::from_u16(canned.status).unwrap_or(StatusCode::OK);
    let mut resp = text_response(status, canned.content_type, canned.body);
    resp.headers_mut().insert(
        "request-id",
        http::HeaderValue::from_static("req_airlock_probe"),
    );
    resp
}
