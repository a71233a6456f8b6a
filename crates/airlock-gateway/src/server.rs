//! The listener, connection limits, graceful shutdown and live reload.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::budget::BodyBudget;
use crate::keys::{KeyError, KeySnapshot, KeyStore, store_stamp};
use crate::metrics::Metrics;
use crate::pipeline::handle;
use crate::redact::Redactor;
use crate::throttle::Throttle;
use airlock_audit::{AuditLog, AuditOptions, PriceTable, Retention};
use airlock_policy::{AuditConfig, AuditOverflow};

/// `[audit]` as the audit log's options.
fn audit_options(c: &AuditConfig) -> AuditOptions {
    AuditOptions {
        queue_capacity: c.queue_capacity.max(1),
        checkpoint_every_records: c.checkpoint_every.max(1),
        checkpoint_interval: Duration::from_secs(c.checkpoint_interval_secs.max(1)),
        retention: Retention {
            max_age: c
                .retention_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
            max_records: c.retention_max_records,
            max_bytes: c.retention_max_bytes,
        },
        ..AuditOptions::default()
    }
}
use crate::runtime::{ConfigSource, Runtime, RuntimeError};

/// How often the config file and the key store are checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);
/// How long in-flight requests get to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// HTTP/1 read buffer floor (hyper's minimum).
const MIN_BUF: usize = 8192;

/// Errors starting or running the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] RuntimeError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to run without Airlock keys on the non-loopback address {0}: anyone who can reach it could use \
         the upstream credentials. Create a key with `airlock keys create --user NAME`, or listen on 127.0.0.1"
    )]
    AnonymousNonLoopback(SocketAddr),
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] airlock_audit::AuditError),
    #[error("cannot build the detection engine: {0}")]
    Detect(#[from] airlock_detect::DetectError),
    #[error(transparent)]
    Detection(#[from] crate::redact::DetectionError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The gateway: configuration in force, key snapshot and metrics, shared by all connections.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    source: ConfigSource,
    keys: ArcSwap<KeySnapshot>,
    data_dir: PathBuf,
    metrics: Metrics,
    listen: SocketAddr,
    loopback: AtomicBool,
    ready: AtomicBool,
    id_base: u64,
    counter: AtomicU64,
    redactor: Arc<Redactor>,
    audit: Option<Arc<AuditLog>>,
    audit_fail_closed: bool,
    pricing: Arc<PriceTable>,
    /// `server.max_inflight_body_bytes`, sized at start (a reload does not resize it).
    body_budget: BodyBudget,
    /// `server.tls_cert`/`tls_key`, loaded at start.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Refused requests without a valid key recorded one by one ([`crate::throttle`]).
    throttle: Throttle,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads the configuration and the key store. Does not bind yet.
    pub fn new(source: ConfigSource) -> Result<Arc<Gateway>, GatewayError> {
        let config = source.load()?;
        let rt = Runtime::build(config)?;
        let data_dir = rt.data_dir().to_path_buf();
        let snapshot = KeyStore::open(&data_dir)?.snapshot()?;
        let listen = rt.listen;
        if snapshot.allows_anonymous() && !listen.ip().is_loopback() {
            return Err(GatewayError::AnonymousNonLoopback(listen));
        }
        let audit_cfg = &rt.config.audit;
        let audit = if audit_cfg.enabled {
            Some(Arc::new(AuditLog::open(
                &data_dir,
                audit_options(audit_cfg),
            )?))
        } else {
            None
        };
        let audit_fail_closed = audit_cfg.overflow == AuditOverflow::FailClosed;
        let pricing = match &audit_cfg.pricing_file {
            Some(path) => Arc::new(PriceTable::load(path)?),
            None => Arc::new(PriceTable::builtin().clone()),
        };
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        let redactor = Arc::new(Redactor::new(&rt.config)?);
        let body_budget = BodyBudget::new(rt.limits.max_inflight_body_bytes);
        let tls = match (&rt.config.server.tls_cert, &rt.config.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            _ => None,
        };
        if tls.is_none() && !listen.ip().is_loopback() {
            tracing::warn!(%listen, "listening off loopback without TLS: Airlock keys and prompts cross the network in the clear; set server.tls_cert and server.tls_key, or terminate TLS in front");
        }
        Ok(Arc::new(Gateway {
            tls,
            body_budget,
            runtime: ArcSwap::from_pointee(rt),
            source,
            keys: ArcSwap::from_pointee(snapshot),
            data_dir,
            metrics: Metrics::new(),
            listen,
            loopback: AtomicBool::new(listen.ip().is_loopback()),
            ready: AtomicBool::new(false),
            id_base: u64::from_le_bytes(seed) & 0xffff_ffff_0000_0000,
            counter: AtomicU64::new(0),
            redactor,
            audit,
            audit_fail_closed,
            pricing,
            throttle: Throttle::default(),
        }))
    }

    /// Whether a request refused for want of a valid key (`what`: the API family or admin
    /// endpoint, `status`) gets its own audit record, or is counted for a `throttled` summary.
    pub fn record_refusal(&self, ip: std::net::IpAddr, what: &'static str, status: u16) -> bool {
        self.audit.is_none()
            || self
                .throttle
                .record(ip, what, status, std::time::Instant::now())
    }

    /// Writes what [`Gateway::record_refusal`] counted as `throttled` audit records (queued,
    /// not awaited).
    pub fn write_throttled(&self) {
        let pending = self.throttle.take(std::time::Instant::now());
        let Some(audit) = &self.audit else { return };
        for p in pending {
            tracing::warn!(client = %p.source, api = p.what, status = p.status, count = p.count, "requests without a valid key refused; counted in one audit record");
            let rec = airlock_audit::AuditRecord::throttled(
                time::OffsetDateTime::now_utc(),
                p.source.to_string(),
                p.what,
                p.status,
                p.count,
            );
            if let Err(e) = audit.submit(rec) {
                tracing::warn!(error = %e, "throttled-requests record not queued");
            }
        }
    }

    /// The in-flight request-body budget ([`crate::budget`]).
    pub fn body_budget(&self) -> &BodyBudget {
        &self.body_budget
    }

    /// The configuration in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The active Airlock keys.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySnapshot>> {
        self.keys.load()
    }

    /// The detection engine and placeholder vault, shared by all requests and kept across
    /// reloads (placeholders handed out before a reload still restore after it).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The audit log, when `[audit] enabled` (opened at start; a reload does not reopen it).
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// Token prices for the audit record's cost (`[audit] pricing_file`, else the embedded
    /// `rules/pricing.toml`; read at start, not on reload).
    pub fn pricing(&self) -> &PriceTable {
        &self.pricing
    }

    /// True when `[audit] overflow = "fail_closed"` (and the audit log is on).
    pub fn audit_fail_closed(&self) -> bool {
        self.audit.is_some() && self.audit_fail_closed
    }

    /// `Some(message)` when new requests must be refused because the audit queue overflowed
    /// and the policy is fail-closed. Clears once the writer has drained the queue and
    /// recorded the loss.
    pub fn audit_refusal(&self) -> Option<&'static str> {
        let audit = self.audit.as_ref()?;
        (self.audit_fail_closed && audit.stats().overflow_pending > 0).then_some(
            "Airlock's audit log is full and policy is fail-closed ([audit] overflow); retry shortly",
        )
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// True when bound to a loopback address (anonymous mode and open metrics are possible).
    pub fn is_loopback(&self) -> bool {
        self.loopback.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("req_{:016x}", self.id_base | (n & 0xffff_ffff))
    }

    /// Whether an admin request may proceed: always on loopback, else with the admin token.
    pub fn admin_allowed(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        if self.is_loopback() {
            return Ok(());
        }
        let rt = self.runtime();
        let Some(token) = &rt.admin_token else {
            return Err(
                "admin endpoints are disabled: set the admin token (server.admin_token_env, default AIRLOCK_ADMIN_TOKEN)\n",
            );
        };
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .unwrap_or("");
        if token.constant_time_eq(presented.trim().as_bytes()) {
            Ok(())
        } else {
            Err("admin token required: Authorization: Bearer <token>\n")
        }
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener, GatewayError> {
        TcpListener::bind(self.listen)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: self.listen,
                source,
            })
    }

    /// Re-reads the configuration; on error the old one stays in force.
    pub fn reload(&self) -> Result<(), GatewayError> {
        // The whole new configuration is checked, `[detection]` included, before any of it is
        // put in force.
        let result = self
            .source
            .load()
            .and_then(Runtime::build)
            .map_err(GatewayError::from)
            .and_then(|rt| {
                let engine = self.redactor.prepare(&rt.config)?;
                Ok((rt, engine))
            });
        match result {
            Ok((rt, engine)) => {
                if let Some(engine) = engine {
                    self.redactor.install(engine);
                    tracing::info!("[detection] or a rule file changed: detection engine rebuilt");
                }
                if rt.listen != self.listen {
                    tracing::warn!(old = %self.listen, new = %rt.listen, "server.listen changed: takes effect after a restart");
                }
                if rt.data_dir() != self.data_dir {
                    tracing::warn!("server.data_dir changed: takes effect after a restart");
                }
                self.runtime.store(Arc::new(rt));
                self.metrics.config_reload("ok");
                tracing::info!(config = %self.source.path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "<embedded>".into()), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.config_reload("rejected");
                tracing::error!(error = %e, "new configuration rejected; the previous one stays in force");
                Err(e)
            }
        }
    }

    /// Re-reads the active keys.
    pub fn reload_keys(&self) -> Result<(), GatewayError> {
        let snap = KeyStore::open(&self.data_dir)?.snapshot()?;
        tracing::info!(active_keys = snap.active(), "key store reloaded");
        self.keys.store(Arc::new(snap));
        Ok(())
    }

    /// Serves connections on `listener` until `shutdown` completes, then waits up to
    /// [`SHUTDOWN_GRACE`] for in-flight requests. Watches the config file and key store, and
    /// reloads on SIGHUP.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let local = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: self.listen,
            source,
        })?;
        self.loopback
            .store(local.ip().is_loopback(), Ordering::Relaxed);
        let limits = self.runtime().limits;
        let conns = Arc::new(Semaphore::new(limits.max_connections));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256);
        let graceful = GracefulShutdown::new();
        let watcher = tokio::spawn(watch(self.clone()));
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(listen = %local, anonymous = self.keys().allows_anonymous(), "airlock gateway listening");
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = conns.clone().try_acquire_owned() else {
                self.metrics.connection_refused();
                tokio::spawn(refuse(stream));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let gw = self.clone();
            let service = service_fn(move |req| handle(gw.clone(), peer, req));
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            let handshake_timeout = limits.header_timeout;
            let gw = self.clone();
            gw.metrics.connection_opened();
            tokio::spawn(async move {
                let io: Box<dyn Io> = match tls {
                    None => Box::new(stream),
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(s)) => Box::new(s),
                            Ok(Err(e)) => {
                                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                                gw.metrics.connection_closed();
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(client = %peer, "TLS handshake timed out");
                                gw.metrics.connection_closed();
                                return;
                            }
                        }
                    }
                };
                let conn = builder.serve_connection(TokioIo::new(io), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                }
                gw.metrics.connection_closed();
                drop(permit);
            });
        }
        self.ready.store(false, Ordering::Relaxed);
        watcher.abort();
        self.write_throttled();
        drop(listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish within the grace period");
        }
        if let Some(audit) = self.audit.clone() {
            // Flushes the queue and signs a final checkpoint; joins the writer thread.
            let _ = tokio::task::spawn_blocking(move || audit.shutdown()).await;
        }
        Ok(())
    }
}

/// A client connection: plain TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Answers a connection over the limit with a minimal 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "{\"error\":{\"message\":\"Airlock is at its connection limit (server.max_connections); retry shortly\",\"type\":\"server_error\",\"param\":null,\"code\":\"unavailable\"}}";
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nx-airlock-error-source: airlock\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

fn mtime(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// [`Gateway::reload`] on a blocking thread: a changed `[detection]` rebuilds the engine (about
/// 0.3 s of CPU), which must not stall an async worker and the connections it serves. Errors
/// are logged by `reload` itself.
async fn reload_off_workers(gw: &Arc<Gateway>) {
    let gw = gw.clone();
    let _ = tokio::task::spawn_blocking(move || gw.reload()).await;
}

/// Reloads on SIGHUP and when the config file or the key store changes.
async fn watch(gw: Arc<Gateway>) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let config_path = gw.source.path.clone();
    // The config file and the rule files the engine in force was built from.
    let stamp = |gw: &Gateway| -> Vec<Option<(SystemTime, u64)>> {
        let mut v = vec![config_path.as_deref().and_then(mtime)];
        v.extend(gw.redactor.rule_files().iter().map(|p| mtime(p)));
        v
    };
    let mut config_stamp = stamp(&gw);
    let mut keys_stamp = store_stamp(&gw.data_dir);
    let mut tick = tokio::time::interval(RELOAD_POLL);
    let mut summarised = std::time::Instant::now();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup_fut = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup_fut = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = hup_fut => {
                tracing::info!("SIGHUP: reloading configuration and keys");
                reload_off_workers(&gw).await;
                if let Err(e) = gw.reload_keys() {
                    tracing::error!(error = %e, "cannot reload keys; the previous ones stay in force");
                }
                config_stamp = stamp(&gw);
                keys_stamp = store_stamp(&gw.data_dir);
            }
            _ = tick.tick() => {
                if summarised.elapsed() >= crate::throttle::SUMMARY_EVERY {
                    summarised = std::time::Instant::now();
                    gw.write_throttled();
                }
                let now = stamp(&gw);
                if now != config_stamp {
                    // A config file that vanished is not a new configuration.
                    if now[0].is_some() {
                        reload_off_workers(&gw).await;
                    }
                    // Read again: the reload may have put other rule files in force.
                    config_stamp = stamp(&gw);
                }
                let k = store_stamp(&gw.data_dir);
                if k != keys_stamp {
                    keys_stamp = k;
                    if let Err(e) = gw.reload_keys() {
                        tracing::error!(error = %e, "cannot reload keys; the previous ones stay in force");
                    }
                }
            }
        }
    }
}
