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
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};

use crate::pipeline::Exchange;
use airlock_audit::Committed;
use std::future::Future;

/// Boxed error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The pooled upstream client.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
/// How long an idle pooled upstream connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

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
    commit: Option<Committed>,
}

impl Relay {
    pub fn new(
        inner: Incoming,
        idle: Duration,
        exchange: Exchange,
        transform: Option<Box<dyn StreamTransform>>,
    ) -> Self {
        Relay {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            exchange: Some(exchange),
            transform,
            done: false,
            commit: None,
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.done = true;
        if let Some(mut ex) = self.exchange.take() {
            ex.outcome = outcome;
            let commit = ex.finish();
            if outcome == Outcome::Complete {
                self.commit = commit;
            }
        }
    }

    fn count(&mut self, n: usize) {
        if let Some(ex) = self.exchange.as_mut() {
            ex.bytes_out += n as u64;
        }
    }
}

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
        if let Some(c) = this.commit.as_mut() {
            match Pin::new(c).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => {
                    this.commit = None;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "audit record of a completed exchange not committed");
                    }
                }
            }
        }
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                let frame = match (frame.into_data(), this.transform.as_mut()) {
                    (Ok(data), Some(t)) => Frame::data(t.chunk(data)),
                    (Ok(data), None) => Frame::data(data),
                    (Err(other), _) => other,
                };
                if let Some(d) = frame.data_ref() {
                    this.count(d.len());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(Outcome::UpstreamError);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                if let Some(t) = this.transform.as_mut() {
                    let rest = t.finish();
                    this.transform = None;
                    if !rest.is_empty() {
                        this.count(rest.len());
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                }
                this.end(Outcome::Complete);
                if let Some(c) = this.commit.as_mut() {
                    match Pin::new(c).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => {
                            this.commit = None;
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "audit record of a completed exchange not committed");
                            }
                        }
                    }
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.end(Outcome::IdleTimeout);
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(this.idle)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not ended before the final poll: that poll waits for the audit commit.
        self.done && self.commit.is_none()
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
