//! Admin HTTP endpoints over the audit log, guarded like `/metrics` (open on loopback, else
//! the admin token):
//!
//! - `GET /admin/audit/query?since=1h&user=alice&tool=claude-code&decision=denied&limit=50`:
//!   the newest matching records (oldest first) as a JSON array, or JSON Lines with
//!   `format=jsonl`. `limit` defaults to [`DEFAULT_QUERY_LIMIT`], at most [`MAX_QUERY_LIMIT`].
//! - `GET /admin/audit/export?since=...`: matching records oldest first as JSON Lines, streamed
//!   (never held whole in memory), at most `limit` (default and ceiling [`MAX_EXPORT_LIMIT`]);
//!   page on with `after_seq=<last seq>`.
//!
//! Every call (let in or not) is itself recorded in the audit log, as a record of kind `admin`,
//! committed before the log is read (an export includes its own record).
//!
//! Filters are those of `airlock audit query` ([`AuditFilter::from_query_pairs`]). SQLite is
//! read on a blocking thread with its own read connection, never on the async workers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use airlock_audit::{AuditError, AuditFilter, AuditLog, AuditRecord, export_jsonl, query_jsonl};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::pipeline::GatewayBody;
use crate::server::Gateway;
use crate::upstream::BoxError;

/// Path of the query endpoint.
pub const QUERY_PATH: &str = "/admin/audit/query";
/// Path of the export endpoint.
pub const EXPORT_PATH: &str = "/admin/audit/export";
/// Records a query returns without `limit`.
pub const DEFAULT_QUERY_LIMIT: usize = 1000;
/// Most records one query returns (it is built in memory).
pub const MAX_QUERY_LIMIT: usize = 10_000;
/// Most records one export streams (page on with `after_seq`).
pub const MAX_EXPORT_LIMIT: usize = 100_000;
/// Longest query string accepted.
pub const MAX_QUERY_STRING: usize = 4096;
/// Export chunk size sent to the client.
const EXPORT_CHUNK: usize = 64 * 1024;

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAudit {
    Query,
    Export,
}

impl AdminAudit {
    /// The endpoint a path names.
    pub fn route(path: &str) -> Option<AdminAudit> {
        match path {
            QUERY_PATH => Some(AdminAudit::Query),
            EXPORT_PATH => Some(AdminAudit::Export),
            _ => None,
        }
    }
}

/// Answers an admin audit request (the caller checked the method). The access is recorded in
/// the audit log (and committed) before anything is read from it, so an export includes its
/// own record.
pub async fn handle<B>(
    gw: &Arc<Gateway>,
    which: AdminAudit,
    req: &Request<B>,
    request_id: &str,
    peer: std::net::SocketAddr,
) -> Response<GatewayBody> {
    if let Err(msg) = gw.admin_allowed(req.headers()) {
        if gw.record_refusal(peer.ip(), "admin", StatusCode::UNAUTHORIZED.as_u16()) {
            record_access(gw, request_id, peer, req, StatusCode::UNAUTHORIZED).await;
        }
        return error(StatusCode::UNAUTHORIZED, msg.trim_end());
    }
    let Some(audit) = gw.audit().cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "the audit log is disabled on this Airlock ([audit] enabled = false)",
        );
    };
    let query = req.uri().query().unwrap_or("");
    let (filter, jsonl) = match parse(which, query) {
        Ok(x) => x,
        Err(msg) => {
            record_access(gw, request_id, peer, req, StatusCode::BAD_REQUEST).await;
            return error(StatusCode::BAD_REQUEST, &msg);
        }
    };
    record_access(gw, request_id, peer, req, StatusCode::OK).await;
    match which {
        AdminAudit::Query => run_query(audit, filter, jsonl).await,
        AdminAudit::Export => run_export(audit, filter),
    }
}

/// Records an access to an admin audit endpoint in the audit log itself, and waits (bounded)
/// for it to be committed. With the audit log off there is nothing to read and nothing to
/// record. The query string names filters (users, tools, times), never request content.
/// `status` is the answer's status as far as it is known before the log is read.
async fn record_access<B>(
    gw: &Arc<Gateway>,
    request_id: &str,
    peer: std::net::SocketAddr,
    req: &Request<B>,
    status: StatusCode,
) {
    let Some(audit) = gw.audit().cloned() else {
        return;
    };
    let query = req.uri().query().unwrap_or("");
    let query: String = query.chars().take(MAX_QUERY_STRING).collect();
    let rec = AuditRecord::admin_access(
        OffsetDateTime::now_utc(),
        request_id,
        peer.to_string(),
        req.uri().path(),
        &query,
        status.as_u16(),
    );
    match audit.submit(rec) {
        Ok(c) => {
            if tokio::time::timeout(crate::upstream::AUDIT_COMMIT_TIMEOUT, c)
                .await
                .is_err()
            {
                tracing::warn!(
                    request_id,
                    "audit record of an admin access not committed in time"
                );
            }
        }
        Err(e) => {
            tracing::warn!(request_id, error = %e, "audit record of an admin access not queued")
        }
    }
}

/// The filter and whether JSON Lines was asked for.
fn parse(which: AdminAudit, query: &str) -> Result<(AuditFilter, bool), String> {
    if query.len() > MAX_QUERY_STRING {
        return Err(format!("query string longer than {MAX_QUERY_STRING} bytes"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k =
            percent_decode(k).ok_or_else(|| "malformed percent-encoding in a key".to_string())?;
        let v = percent_decode(v).ok_or_else(|| format!("{k}: malformed percent-encoding"))?;
        pairs.push((k, v));
    }
    let mut jsonl = which == AdminAudit::Export;
    let mut limit: Option<usize> = None;
    let mut rest: Vec<(&str, &str)> = Vec::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "format" => match (which, v.as_str()) {
                (AdminAudit::Query, "json") => jsonl = false,
                (_, "jsonl") => jsonl = true,
                _ => {
                    return Err(format!(
                        "format: {:?} is not supported here (expected {})",
                        truncate(v),
                        if which == AdminAudit::Query {
                            "json or jsonl"
                        } else {
                            "jsonl"
                        }
                    ));
                }
            },
            "limit" => {
                if limit.is_some() {
                    return Err("limit: given more than once".into());
                }
                let max = match which {
                    AdminAudit::Query => MAX_QUERY_LIMIT,
                    AdminAudit::Export => MAX_EXPORT_LIMIT,
                };
                let n: usize =
                    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("limit: {:?} is not a positive number", truncate(v))
                    })?;
                if n > max {
                    return Err(format!(
                        "limit: at most {max} here (page on with after_seq)"
                    ));
                }
                limit = Some(n);
            }
            _ => rest.push((k.as_str(), v.as_str())),
        }
    }
    let mut filter = AuditFilter::from_query_pairs(rest, OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    filter.limit = Some(limit.unwrap_or(match which {
        AdminAudit::Query => DEFAULT_QUERY_LIMIT,
        AdminAudit::Export => MAX_EXPORT_LIMIT,
    }));
    Ok((filter, jsonl))
}

async fn run_query(
    audit: Arc<AuditLog>,
    filter: AuditFilter,
    jsonl: bool,
) -> Response<GatewayBody> {
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, AuditError> {
        let store = audit.reader()?;
        let mut out = Vec::new();
        query_jsonl(&store, &filter, &mut out)?;
        Ok(out)
    })
    .await;
    let lines = match result {
        Ok(Ok(lines)) => lines,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "admin audit query failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("audit query failed: {e}"),
            );
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "audit query task failed"),
    };
    if jsonl {
        return ok("application/jsonl", lines);
    }
    let mut out = Vec::with_capacity(lines.len() + 2);
    out.push(b'[');
    for (i, line) in lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(line);
    }
    out.push(b']');
    ok("application/json", out)
}

fn run_export(audit: Arc<AuditLog>, filter: AuditFilter) -> Response<GatewayBody> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(EXPORT_CHUNK),
        };
        let result = audit
            .reader()
            .and_then(|store| export_jsonl(&store, &filter, &mut w));
        if let Err(e) = result {
            // Headers are gone already: end the body with an error so the client sees a
            // truncated export, never a silently short one.
            tracing::error!(error = %e, "admin audit export failed");
            let _ = tx.blocking_send(Err(format!("audit export failed: {e}").into()));
        }
    });
    let mut r = Response::new(ChannelBody(rx).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl"),
    );
    r
}

/// Sends what is written in chunks to the response body; fails when the client went away.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(EXPORT_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= EXPORT_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

struct ChannelBody(mpsc::Receiver<Result<Bytes, BoxError>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn full(body: impl Into<Bytes>) -> GatewayBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn ok(content_type: &'static str, body: Vec<u8>) -> Response<GatewayBody> {
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error(status: StatusCode, message: &str) -> Response<GatewayBody> {
    let body = serde_json::json!({ "error": { "message": message } }).to_string();
    let mut r = ok("application/json", body.into_bytes());
    *r.status_mut() = status;
    r
}

fn truncate(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

/// Decodes `%XX` and `+` (form encoding). `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_limits_and_formats() {
        let (f, jsonl) = parse(
            AdminAudit::Query,
            "since=1h&user=al%69ce&tool=claude-code&decision=denied",
        )
        .unwrap();
        assert!(!jsonl);
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.limit, Some(DEFAULT_QUERY_LIMIT));
        assert!(f.since.is_some());
        let (f, jsonl) = parse(AdminAudit::Query, "format=jsonl&limit=5").unwrap();
        assert!(jsonl);
        assert_eq!(f.limit, Some(5));
        assert!(
            parse(AdminAudit::Query, "limit=10001")
                .unwrap_err()
                .contains("at most")
        );
        assert!(parse(AdminAudit::Query, "limit=0").is_err());
        assert!(parse(AdminAudit::Query, "format=csv").is_err());
        assert!(parse(AdminAudit::Export, "format=json").is_err());
        assert!(
            parse(AdminAudit::Query, "colour=red")
                .unwrap_err()
                .contains("colour")
        );
        assert!(parse(AdminAudit::Query, "user=%zz").is_err());
        let (f, jsonl) = parse(AdminAudit::Export, "").unwrap();
        assert!(jsonl);
        assert_eq!(f.limit, Some(MAX_EXPORT_LIMIT));
        assert!(parse(AdminAudit::Query, &"a".repeat(5000)).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
