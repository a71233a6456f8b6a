//! The batching writer: [`AuditLog`]. The request path only enqueues (`submit` never blocks);
//! one std thread drains the bounded queue and commits each batch in one transaction (group
//! commit), signing checkpoints as it goes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::AuditError;
use crate::chain::seal;
use crate::record::AuditRecord;
use crate::retention::{Retention, prune};
use crate::signing::AuditKey;
use crate::sqlite::SqliteStore;
use crate::store::{ChainHead, Store, StoredRow};

/// Default queue capacity (records waiting for the writer).
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
/// Default largest batch per transaction.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Default: sign a checkpoint at least every this many records...
pub const DEFAULT_CHECKPOINT_EVERY_RECORDS: u64 = 10_000;
/// ...and at least this often while records arrive.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Default: how long records nobody waits for may wait for company (see
/// [`AuditOptions::detached_linger`]).
pub const DEFAULT_DETACHED_LINGER: Duration = Duration::from_millis(100);
/// Default: apply retention this often (when configured).
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How the log writes. All fields have defaults ([`AuditOptions::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Records that may wait for the writer; beyond this `submit` returns
    /// [`SubmitError::QueueFull`].
    pub queue_capacity: usize,
    /// Most records per transaction.
    pub max_batch: usize,
    /// Sign a checkpoint after this many records...
    pub checkpoint_every_records: u64,
    /// ...or after this long with unsigned records, whichever comes first.
    pub checkpoint_interval: Duration,
    /// What to keep (unlimited by default).
    pub retention: Retention,
    /// How often retention runs (on its own thread and connection).
    pub retention_interval: Duration,
    /// Records nobody waits for ([`AuditLog::submit_detached`]) do not wake the writer: they
    /// are committed, in submission order, with the next record somebody waits for, or after
    /// at most about this long. With write-ahead, an exchange's end record then shares the
    /// transaction of the next request record instead of costing a wake-up and a transaction
    /// of its own. Also the writer's longest sleep while idle.
    pub detached_linger: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            checkpoint_every_records: DEFAULT_CHECKPOINT_EVERY_RECORDS,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            retention: Retention::default(),
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            detached_linger: DEFAULT_DETACHED_LINGER,
        }
    }
}

/// Why `submit` did not queue a record. The record is counted as lost and a marker record
/// saying how many were lost is written into the chain as soon as the queue drains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: the writer cannot keep up (slow disk?).
    #[error("audit queue full ({capacity} records waiting)")]
    QueueFull { capacity: usize },
    /// The log was shut down.
    #[error("audit log is shut down")]
    Closed,
}

/// The name the gateway brief uses for a refused submit.
pub type Overflow = SubmitError;

/// Why a queued record was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The store refused the batch (message names the file and the error).
    #[error("audit commit failed: {0}")]
    Store(String),
    /// The writer stopped before committing the record.
    #[error("the audit writer stopped before committing the record")]
    WriterStopped,
}

/// Resolves once the record is durably committed, with its sequence number.
///
/// `.await` it from async code, or call [`Committed::wait`] from a plain thread.
#[derive(Debug)]
#[must_use = "the record is only known to be durable once Committed resolves"]
pub struct Committed {
    rx: oneshot::Receiver<Result<u64, CommitError>>,
}

impl Committed {
    /// Block the current (non-async) thread until committed.
    pub fn wait(self) -> Result<u64, CommitError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(CommitError::WriterStopped))
    }
}

impl Future for Committed {
    type Output = Result<u64, CommitError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(CommitError::WriterStopped)))
    }
}

/// Counters for metrics (read with [`AuditLog::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records committed by this process.
    pub committed: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Records refused because the queue was full (ever).
    pub overflowed: u64,
    /// Overflowed records not yet accounted for by a marker record.
    pub overflow_pending: u64,
    /// Records whose batch the store refused.
    pub failed: u64,
    /// Checkpoints signed.
    pub checkpoints: u64,
    /// Sequence number of the last committed record.
    pub head_seq: u64,
}

#[derive(Default)]
struct Shared {
    /// Submission order of every record (channel and side buffer alike).
    order: AtomicU64,
    /// Records nobody waits for, in submission order, waiting for the writer's next batch.
    detached: Mutex<Detached>,
    committed: AtomicU64,
    batches: AtomicU64,
    overflowed: AtomicU64,
    overflow_pending: AtomicU64,
    failed: AtomicU64,
    checkpoints: AtomicU64,
    head_seq: AtomicU64,
}

type Ack = oneshot::Sender<Result<u64, CommitError>>;

/// A queued record: its submission order, and who waits for its commit (`None`:
/// [`AuditLog::submit_detached`]).
struct Pending {
    order: u64,
    record: Box<AuditRecord>,
    ack: Option<Ack>,
}

/// The side buffer of detached records. `closed` is set by the writer as it takes the last of
/// them, under the same lock, so a record is either taken or refused: never left behind.
#[derive(Default)]
struct Detached {
    records: Vec<Pending>,
    closed: bool,
}

enum Msg {
    Record(Pending),
    Shutdown,
}

/// The audit log of one data directory.
pub struct AuditLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    closed: AtomicBool,
    capacity: usize,
    writer: Mutex<Option<JoinHandle<()>>>,
    retention: Mutex<Option<(SyncSender<()>, JoinHandle<()>)>>,
    dir: PathBuf,
    public_key: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("public_key", &self.public_key)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Open (creating if needed) `<dir>/audit.db` and `<dir>/audit-signing.key`, and start
    /// the writer thread.
    pub fn open(dir: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let mut store = SqliteStore::create(dir)?;
        store.checkpoint_in_background()?;
        let key = AuditKey::load_or_create(dir)?;
        Self::with_store(dir, Box::new(store), key, options)
    }

    /// Start the writer on any store (e.g. a shared PostgreSQL one). `dir` is used for
    /// retention's own connection only when the store is SQLite in that directory.
    pub fn with_store(
        dir: &Path,
        store: Box<dyn Store>,
        key: AuditKey,
        options: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        let head = store.head()?;
        let shared = Arc::new(Shared::default());
        shared.head_seq.store(head.seq, Ordering::Relaxed);
        let capacity = options.queue_capacity.max(1);
        let (tx, rx) = sync_channel(capacity);
        let public_key = key.public_key_hex();
        let key = Arc::new(key);
        let writer = {
            let shared = shared.clone();
            let key = key.clone();
            let options = options.clone();
            std::thread::Builder::new()
                .name("airlock-audit-writer".into())
                .spawn(move || Writer::new(store, key, options, shared, head).run(rx))
                .map_err(|e| AuditError::io(dir, e))?
        };
        let retention = if options.retention.is_unlimited() {
            None
        } else {
            Some(spawn_retention(
                dir.to_path_buf(),
                key,
                options.retention,
                options.retention_interval,
            )?)
        };
        Ok(AuditLog {
            tx,
            shared,
            closed: AtomicBool::new(false),
            capacity,
            writer: Mutex::new(Some(writer)),
            retention: Mutex::new(retention),
            dir: dir.to_path_buf(),
            public_key,
        })
    }

    /// Queue a record. Never blocks. On `Ok`, await the returned [`Committed`] to know the
    /// record is durable. On `Err`, the record is counted as lost (see [`SubmitError`]).
    pub fn submit(&self, record: AuditRecord) -> Result<Committed, SubmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let (ack, rx) = oneshot::channel();
        let order = self.shared.order.fetch_add(1, Ordering::AcqRel);
        let pending = Pending {
            order,
            record: Box::new(record),
            ack: Some(ack),
        };
        match self.tx.try_send(Msg::Record(pending)) {
            Ok(()) => Ok(Committed { rx }),
            Err(TrySendError::Full(_)) => Err(self.overflow()),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }

    /// Queue a record nobody waits for (e.g. the end of an exchange whose request record is
    /// already held for). Never blocks and never wakes the writer: the record is committed in
    /// submission order with the next [`submit`]ted one, or within about
    /// [`AuditOptions::detached_linger`]. A commit failure is logged and counted in
    /// [`AuditStats::failed`]; a refusal is counted like [`submit`]'s.
    ///
    /// [`submit`]: AuditLog::submit
    pub fn submit_detached(&self, record: AuditRecord) -> Result<(), SubmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let Ok(mut side) = self.shared.detached.lock() else {
            return Err(SubmitError::Closed);
        };
        if side.closed {
            return Err(SubmitError::Closed);
        }
        if side.records.len() >= self.capacity {
            drop(side);
            return Err(self.overflow());
        }
        // Ordered under the lock: the writer, which takes the channel's records before this
        // buffer's, then never misses a detached record submitted before one it holds.
        let order = self.shared.order.fetch_add(1, Ordering::AcqRel);
        side.records.push(Pending {
            order,
            record: Box::new(record),
            ack: None,
        });
        Ok(())
    }

    /// Counts a record refused for a full queue (a marker record will say how many).
    fn overflow(&self) -> SubmitError {
        self.shared.overflowed.fetch_add(1, Ordering::Relaxed);
        if self.shared.overflow_pending.fetch_add(1, Ordering::AcqRel) == 0 {
            tracing::warn!(
                capacity = self.capacity,
                "audit queue full: records are being lost; a marker record will count them"
            );
        }
        SubmitError::QueueFull {
            capacity: self.capacity,
        }
    }

    /// Counters for metrics and alerts.
    pub fn stats(&self) -> AuditStats {
        let s = &self.shared;
        AuditStats {
            committed: s.committed.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            overflowed: s.overflowed.load(Ordering::Relaxed),
            overflow_pending: s.overflow_pending.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            head_seq: s.head_seq.load(Ordering::Relaxed),
        }
    }

    /// Hex Ed25519 public key that verifies this log's checkpoints.
    pub fn public_key_hex(&self) -> &str {
        &self.public_key
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A separate read connection for queries and exports (e.g. the admin HTTP endpoint; call
    /// it from a blocking thread).
    pub fn reader(&self) -> Result<SqliteStore, AuditError> {
        SqliteStore::open_existing(&self.dir)
    }

    /// Flush everything queued, sign a final checkpoint, and stop the writer. Records
    /// submitted afterwards get [`SubmitError::Closed`]. Idempotent.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let handle = self.writer.lock().ok().and_then(|mut g| g.take());
        if let Some(h) = handle {
            // Blocks only while the queue is full; the writer is draining it.
            let _ = self.tx.send(Msg::Shutdown);
            if h.join().is_err() {
                tracing::error!("audit writer thread panicked");
            }
        }
        let retention = self.retention.lock().ok().and_then(|mut g| g.take());
        if let Some((stop, h)) = retention {
            let _ = stop.try_send(());
            let _ = h.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn_retention(
    dir: PathBuf,
    key: Arc<AuditKey>,
    retention: Retention,
    interval: Duration,
) -> Result<(SyncSender<()>, JoinHandle<()>), AuditError> {
    let (stop_tx, stop_rx) = sync_channel::<()>(1);
    let h = std::thread::Builder::new()
        .name("airlock-audit-retention".into())
        .spawn(move || {
            loop {
                match SqliteStore::open_existing(&dir) {
                    Ok(mut store) => {
                        if let Err(e) =
                            prune(&mut store, &key, &retention, OffsetDateTime::now_utc())
                        {
                            tracing::error!(error = %e, "audit retention failed");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit retention could not open the store")
                    }
                }
                match stop_rx.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
        })
        .map_err(|e| AuditError::io("audit retention thread", e))?;
    Ok((stop_tx, h))
}

struct Writer {
    store: Box<dyn Store>,
    key: Arc<AuditKey>,
    opts: AuditOptions,
    shared: Arc<Shared>,
    head: ChainHead,
    unsigned: u64,
    last_checkpoint: Instant,
}

impl Writer {
    fn new(
        store: Box<dyn Store>,
        key: Arc<AuditKey>,
        opts: AuditOptions,
        shared: Arc<Shared>,
        head: ChainHead,
    ) -> Writer {
        // Records left unsigned by a crash are signed by the first checkpoint (within the interval).
        let signed = match (store.checkpoints(), store.anchors()) {
            (Ok(cps), Ok(anchors)) => cps
                .iter()
                .map(|c| c.seq)
                .chain(anchors.iter().map(|a| a.seq))
                .max()
                .unwrap_or(0),
            _ => 0,
        };
        let unsigned = head.seq.saturating_sub(signed);
        Writer {
            store,
            key,
            opts,
            shared,
            head,
            unsigned,
            last_checkpoint: Instant::now(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        // Idle, the writer still wakes every `detached_linger` to commit detached records.
        let tick = self
            .opts
            .checkpoint_interval
            .min(self.opts.detached_linger)
            .max(Duration::from_millis(1));
        let max_batch = self.opts.max_batch.max(1);
        let mut shutdown = false;
        let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
        while !shutdown {
            match rx.recv_timeout(tick) {
                Ok(Msg::Record(p)) => batch.push(p),
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => shutdown = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            loop {
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Msg::Record(p)) => batch.push(p),
                        Ok(Msg::Shutdown) => shutdown = true,
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                let full = batch.len() >= max_batch;
                self.take_detached(&mut batch, false);
                self.commit(&mut batch);
                // On shutdown keep draining until the queue is empty; otherwise one batch.
                if !(full || shutdown) {
                    break;
                }
                if shutdown && batch.is_empty() {
                    match rx.try_recv() {
                        Ok(Msg::Record(p)) => batch.push(p),
                        Ok(Msg::Shutdown) => {}
                        Err(_) => break,
                    }
                }
            }
            if self.unsigned > 0 && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval
            {
                self.checkpoint_now();
            }
        }
        // Detached records submitted up to now are taken; later ones are refused.
        self.take_detached(&mut batch, true);
        self.commit(&mut batch);
        if self.unsigned > 0 {
            self.checkpoint_now();
        }
        tracing::debug!(head = self.head.seq, "audit writer stopped");
    }

    /// Adds the detached records to `batch`, in submission order with the others; `close`
    /// refuses any submitted afterwards.
    fn take_detached(&self, batch: &mut Vec<Pending>, close: bool) {
        let taken = match self.shared.detached.lock() {
            Ok(mut side) => {
                side.closed |= close;
                std::mem::take(&mut side.records)
            }
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        batch.extend(taken);
        batch.sort_by_key(|p| p.order);
    }

    fn checkpoint_now(&mut self) {
        let cp = self
            .key
            .checkpoint(self.head.seq, &self.head.hash, now_ms());
        match self.store.add_checkpoint(&cp) {
            Ok(()) => {
                self.unsigned = 0;
                self.last_checkpoint = Instant::now();
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
        }
    }

    fn commit(&mut self, batch: &mut Vec<Pending>) {
        let lost = self.shared.overflow_pending.swap(0, Ordering::AcqRel);
        if batch.is_empty() && lost == 0 {
            return;
        }
        let mut rows: Vec<StoredRow> = Vec::with_capacity(batch.len() + 1);
        let mut acks = Vec::with_capacity(batch.len());
        let mut head = self.head.clone();
        let mut failed_early = Vec::new();
        for Pending { record, ack, .. } in batch.drain(..) {
            match seal(*record, &head) {
                Ok((row, h)) => {
                    acks.push((ack, row.seq));
                    rows.push(row);
                    head = h;
                }
                Err(e) => failed_early.push((ack, e.to_string())),
            }
        }
        for (ack, msg) in failed_early {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            match ack {
                Some(ack) => {
                    let _ = ack.send(Err(CommitError::Store(format!(
                        "record could not be encoded: {msg}"
                    ))));
                }
                None => tracing::error!(error = %msg, "audit record could not be encoded"),
            }
        }
        if lost > 0 {
            let marker = AuditRecord::overflow_marker(OffsetDateTime::now_utc(), lost);
            if let Ok((row, h)) = seal(marker, &head) {
                rows.push(row);
                head = h;
            }
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        let due = self.unsigned + n >= self.opts.checkpoint_every_records
            || self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval;
        let cp = due.then(|| self.key.checkpoint(head.seq, &head.hash, now_ms()));
        let mut result = self.store.append(&rows, cp.as_ref());
        if result.is_err() {
            // A commit reported as failed may still have happened (SQLite reports an error of
            // a hook that runs after the commit as the commit's; a connection can fail after
            // COMMIT reached the disk). Ask the store where its chain ends: this batch's last
            // row there means it is durable; anything else becomes the head the next batch
            // builds on, so one failure cannot make every later batch collide with rows
            // already stored.
            match self.store.head() {
                Ok(stored) if stored.seq == head.seq && stored.hash == head.hash => {
                    tracing::warn!(seq = head.seq, "audit batch reported failed was committed");
                    result = Ok(());
                }
                Ok(stored) => {
                    self.head = stored;
                    self.shared.head_seq.store(self.head.seq, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit chain head unreadable after a failed batch")
                }
            }
        }
        match result {
            Ok(()) => {
                self.head = head;
                self.shared.head_seq.store(self.head.seq, Ordering::Relaxed);
                self.shared.committed.fetch_add(n, Ordering::Relaxed);
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                if cp.is_some() {
                    self.unsigned = 0;
                    self.last_checkpoint = Instant::now();
                    self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.unsigned += n;
                }
                if lost > 0 {
                    tracing::warn!(lost, seq = self.head.seq, "audit overflow marker written");
                }
                for (ack, seq) in acks {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(seq));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = n, "audit batch commit failed");
                // The marker's count goes back so the next batch writes it.
                if lost > 0 {
                    self.shared
                        .overflow_pending
                        .fetch_add(lost, Ordering::AcqRel);
                }
                self.shared
                    .failed
                    .fetch_add(acks.len() as u64, Ordering::Relaxed);
                let msg = e.to_string();
                for (ack, _) in acks {
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(CommitError::Store(msg.clone())));
                    }
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
