//! Shared helpers: a fully populated record and a filled log in a temp dir.
#![allow(dead_code)]

use std::path::Path;

use airlock_audit::{
    AuditLog, AuditOptions, AuditRecord, BodyCapture, Decision, FindingSummary, Usage,
};
use time::OffsetDateTime;

/// A record with every field set, so that every field can be tampered with.
pub fn full_record(i: u64, time: OffsetDateTime) -> AuditRecord {
    let mut r = AuditRecord::new(time, format!("req-{i}"));
    r.user = Some(if i.is_multiple_of(2) { "alice" } else { "bob" }.into());
    r.team = Some("payments".into());
    r.key_id = Some("key_01".into());
    r.client_addr = Some("127.0.0.1:50000".into());
    r.tool = Some(
        if i.is_multiple_of(3) {
            "codex"
        } else {
            "claude-code"
        }
        .into(),
    );
    r.tool_version = Some("2.1.198".into());
    r.agent_session_id = Some(format!("sess-{i}"));
    r.api = Some("anthropic_messages".into());
    r.upstream = Some("anthropic".into());
    r.model = Some("claude-sonnet-4-5".into());
    r.decision = Some(if i.is_multiple_of(5) {
        Decision::Denied
    } else {
        Decision::Allowed
    });
    r.decision_rule = Some("policy.tools.claude-code".into());
    r.decision_reason = Some("reason text".into());
    r.findings = vec![FindingSummary {
        rule_id: "aws-access-key-id".into(),
        count: 2,
        locations: vec!["messages[0].content:10-30".into()],
    }];
    r.usage = Some(Usage {
        input_tokens: Some(100 + i),
        output_tokens: Some(20),
        cache_read_tokens: Some(5),
        cache_write_tokens: Some(6),
        reasoning_tokens: Some(7),
        cost_micro_usd: Some(1234),
    });
    r.status = Some(200);
    r.latency_total_us = Some(5000);
    r.latency_upstream_us = Some(4800);
    r.latency_overhead_us = Some(200);
    r.request_bytes = 4096;
    r.response_bytes = 1024;
    r.request_body = Some(BodyCapture::new(
        format!("{{\"redacted\":\"[REDACTED:aws]\",\"i\":{i}}}").as_bytes(),
        1 << 16,
    ));
    r.response_body = Some(BodyCapture::new(b"{\"content\":\"ok\"}", 1 << 16));
    r.lost_records = Some(0);
    r
}

/// Write `n` full records through a real `AuditLog`, then shut it down (final checkpoint).
pub fn fill(dir: &Path, n: u64, opts: AuditOptions) {
    let log = AuditLog::open(dir, opts).expect("open log");
    let now = OffsetDateTime::now_utc();
    let pending: Vec<_> = (1..=n)
        .map(|i| log.submit(full_record(i, now)).expect("queue"))
        .collect();
    for p in pending {
        p.wait().expect("committed");
    }
    log.shutdown();
}

/// A raw connection to the database, for tampering.
pub fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("audit.db")).expect("raw open")
}

/// What [`Wrapped`] does for `append`: given the SQLite store, the rows and the checkpoint.
pub type OnAppend = Box<
    dyn FnMut(
            &mut airlock_audit::SqliteStore,
            &[airlock_audit::StoredRow],
            Option<&airlock_audit::Checkpoint>,
        ) -> Result<(), airlock_audit::AuditError>
        + Send,
>;

/// SQLite behind the `Store` trait's required methods only (the trait's defaults for the
/// rest), with `append` going through `on_append`: a store a test can make fail.
pub struct Wrapped {
    pub inner: airlock_audit::SqliteStore,
    pub on_append: OnAppend,
}

impl Wrapped {
    /// Passes everything through.
    pub fn plain(inner: airlock_audit::SqliteStore) -> Wrapped {
        Wrapped {
            inner,
            on_append: Box::new(airlock_audit::Store::append),
        }
    }
}

impl airlock_audit::Store for Wrapped {
    fn head(&self) -> Result<airlock_audit::ChainHead, airlock_audit::AuditError> {
        self.inner.head()
    }
    fn append(
        &mut self,
        rows: &[airlock_audit::StoredRow],
        cp: Option<&airlock_audit::Checkpoint>,
    ) -> Result<(), airlock_audit::AuditError> {
        (self.on_append)(&mut self.inner, rows, cp)
    }
    fn add_checkpoint(
        &mut self,
        cp: &airlock_audit::Checkpoint,
    ) -> Result<(), airlock_audit::AuditError> {
        self.inner.add_checkpoint(cp)
    }
    fn scan(
        &self,
        from: u64,
        bodies: bool,
        sink: &mut airlock_audit::store::RowSink<'_>,
    ) -> Result<(), airlock_audit::AuditError> {
        self.inner.scan(from, bodies, sink)
    }
    fn scan_filtered(
        &self,
        f: &airlock_audit::AuditFilter,
        sink: &mut airlock_audit::store::RowSink<'_>,
    ) -> Result<(), airlock_audit::AuditError> {
        self.inner.scan_filtered(f, sink)
    }
    fn query_newest(
        &self,
        f: &airlock_audit::AuditFilter,
        limit: usize,
    ) -> Result<Vec<airlock_audit::StoredRow>, airlock_audit::AuditError> {
        self.inner.query_newest(f, limit)
    }
    fn row(
        &self,
        seq: u64,
        bodies: bool,
    ) -> Result<Option<airlock_audit::StoredRow>, airlock_audit::AuditError> {
        self.inner.row(seq, bodies)
    }
    fn body(
        &self,
        seq: u64,
        kind: airlock_audit::BodyKind,
    ) -> Result<Option<Vec<u8>>, airlock_audit::AuditError> {
        self.inner.body(seq, kind)
    }
    fn checkpoints(&self) -> Result<Vec<airlock_audit::Checkpoint>, airlock_audit::AuditError> {
        self.inner.checkpoints()
    }
    fn anchors(&self) -> Result<Vec<airlock_audit::Anchor>, airlock_audit::AuditError> {
        self.inner.anchors()
    }
    fn count(&self) -> Result<(u64, Option<u64>), airlock_audit::AuditError> {
        self.inner.count()
    }
    fn last_seq_before(&self, ms: i64) -> Result<Option<u64>, airlock_audit::AuditError> {
        self.inner.last_seq_before(ms)
    }
    fn prune(&mut self, a: &airlock_audit::Anchor) -> Result<u64, airlock_audit::AuditError> {
        self.inner.prune(a)
    }
}
