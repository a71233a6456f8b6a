//! The embedded SQLite store: `<data_dir>/audit.db`, WAL journal, `synchronous=NORMAL`.
//!
//! WAL with `synchronous=NORMAL` makes every committed transaction survive a crash of the
//! process (SIGKILL included); only an operating-system crash or power loss can lose the last
//! transactions. Schema versions are kept in `PRAGMA user_version` and applied in order by
//! [`MIGRATIONS`].
//!
//! **Checkpoints off the commit path.** SQLite's automatic WAL checkpoint runs inside the
//! committing transaction every 1,000 pages and syncs the files twice; the gateway holds each
//! answer until its record is committed, so that stall landed on one answer in a hundred (the
//! writer's submit→committed p99 was 5 ms on an idle machine, its p50 90 µs). The writer's store
//! therefore copies WAL frames into the database from its own thread and connection
//! ([`SqliteStore::checkpoint_in_background`]), woken by the writer's WAL hook every
//! [`CHECKPOINT_AFTER_FRAMES`] with PASSIVE checkpoints, which never block the writer. The writer
//! checkpoints by itself only past [`WRITER_CHECKPOINT_FRAMES`], which sustained load reaches
//! (see there).

use std::ops::ControlFlow;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::AuditError;
use crate::filter::AuditFilter;
use crate::record::GENESIS_HASH;
use crate::signing::{Anchor, Checkpoint};
use crate::store::{BodyKind, ChainHead, RowSink, Store, StoredRow};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "audit.db";

/// Schema migrations; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: records, checkpoints, anchors.
    "CREATE TABLE records (
        seq INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        user TEXT,
        team TEXT,
        tool TEXT,
        decision TEXT,
        model TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        record TEXT NOT NULL,
        request_body BLOB,
        response_body BLOB
    );
    CREATE INDEX records_time ON records(time_ms);
    CREATE INDEX records_user_time ON records(user, time_ms);
    CREATE INDEX records_tool_time ON records(tool, time_ms);
    CREATE TABLE checkpoints (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        public_key TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TABLE anchors (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        pruned INTEGER NOT NULL,
        public_key TEXT NOT NULL,
        signature TEXT NOT NULL
    );",
];

const ROW_COLS: &str = "seq, time_ms, user, team, tool, decision, model, prev_hash, hash, record";
const ROW_COLS_BODIES: &str = "seq, time_ms, user, team, tool, decision, model, prev_hash, hash, record, request_body, response_body";

/// WAL frames (pages of 4 KiB) after which the writer wakes the background checkpointer:
/// SQLite's own automatic-checkpoint threshold (about 4 MiB).
pub const CHECKPOINT_AFTER_FRAMES: c_int = 1000;
/// WAL frames above which the writer copies them itself, as SQLite's automatic checkpoint
/// would (64 MiB). Under sustained load the background checkpointer never quite catches up
/// (frames arrive while it copies) and only a checkpoint by the writer lets the WAL start over;
/// most frames are already copied by then, so this one is short.
pub const WRITER_CHECKPOINT_FRAMES: c_int = 16_384;

/// The SQLite store.
pub struct SqliteStore {
    /// Declared first so that it stops (and closes its connection) before `conn` closes.
    background: Option<BackgroundCheckpoints>,
    conn: Connection,
    path: PathBuf,
}

/// The checkpoint thread of [`SqliteStore::checkpoint_in_background`]; stopped on drop.
struct BackgroundCheckpoints {
    wake: SyncSender<Wake>,
    handle: Option<JoinHandle<()>>,
    rounds: Arc<AtomicU64>,
}

enum Wake {
    Checkpoint,
    Stop,
}

impl Drop for BackgroundCheckpoints {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open `<dir>/audit.db`, creating the directory (0700) and the database (0600) if needed.
    pub fn create(dir: &Path) -> Result<SqliteStore, AuditError> {
        if !dir.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(dir).map_err(|e| AuditError::io(dir, e))?;
        }
        let path = dir.join(DB_FILE);
        let fresh = !path.exists();
        let store = Self::open_path(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        #[cfg(unix)]
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| AuditError::io(&path, e))?;
        }
        let _ = fresh;
        Ok(store)
    }

    /// Open an existing `<dir>/audit.db` (never creates one: read-only commands use this).
    pub fn open_existing(dir: &Path) -> Result<SqliteStore, AuditError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(AuditError::NotFound(path));
        }
        Self::open_path(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    fn open_path(path: &Path, flags: OpenFlags) -> Result<SqliteStore, AuditError> {
        let err = |source| AuditError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let mut store = SqliteStore {
            background: None,
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Copy WAL frames into the database from a thread of its own, woken by the writer every
    /// [`CHECKPOINT_AFTER_FRAMES`], instead of inside committing transactions (see the module
    /// documentation). For the single writer.
    pub fn checkpoint_in_background(&mut self) -> Result<(), AuditError> {
        if self.background.is_some() {
            return Ok(());
        }
        let err = |source| AuditError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        let (wake, wake_rx) = sync_channel::<Wake>(1);
        let kick = wake.clone();
        // Replaces SQLite's automatic checkpoint (which is itself a WAL hook).
        self.conn
            .wal_hook(Some(move |wal: &mut Wal, frames: c_int| {
                if frames >= WRITER_CHECKPOINT_FRAMES {
                    // Never an error from here. SQLite calls this hook after the transaction
                    // has committed and reports the hook's error as the commit's: the writer
                    // then took a durable batch for a failed one, kept its old chain head, and
                    // every later batch failed on `records.seq` (seen under load, when this
                    // checkpoint met the background thread's and got SQLITE_BUSY). A checkpoint
                    // that fails here is tried again after the next commit.
                    if let Err(e) = wal.checkpoint() {
                        tracing::debug!(error = %e, frames, "audit WAL checkpoint by the writer deferred");
                    }
                } else if frames >= CHECKPOINT_AFTER_FRAMES {
                    // Already awake (the slot is full) is fine.
                    let _ = kick.try_send(Wake::Checkpoint);
                }
                Ok(())
            }))
            .map_err(err)?;
        let rounds = Arc::new(AtomicU64::new(0));
        let counted = rounds.clone();
        let path = self.path.clone();
        let handle = std::thread::Builder::new()
            .name("airlock-audit-checkpoint".into())
            .spawn(move || {
                let mut failing = false;
                while let Ok(Wake::Checkpoint) = wake_rx.recv() {
                    // PASSIVE: copies what it can without ever blocking the writer.
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    }) {
                        Ok((log, copied)) => {
                            failing = false;
                            counted.fetch_add(1, Ordering::Relaxed);
                            tracing::trace!(log, copied, "audit WAL checkpoint");
                        }
                        // Logged once per failing streak; the writer's own checkpoint still
                        // bounds the WAL.
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(path = %path.display(), error = %e, "audit WAL checkpoint failed");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| AuditError::io("audit checkpoint thread", e))?;
        self.background = Some(BackgroundCheckpoints {
            wake,
            handle: Some(handle),
            rounds,
        });
        Ok(())
    }

    /// Checkpoints the background thread has completed.
    pub fn background_checkpoints(&self) -> u64 {
        self.background
            .as_ref()
            .map_or(0, |b| b.rounds.load(Ordering::Relaxed))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, AuditError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), AuditError> {
        let supported = MIGRATIONS.len() as i64;
        let found = self.schema_version()?;
        if found > supported {
            return Err(AuditError::SchemaTooNew {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(found).unwrap_or(0))
        {
            let tx = self.conn.transaction().map_err(|e| AuditError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
            let to = i as i64 + 1;
            tx.execute_batch(sql)
                .and_then(|()| tx.pragma_update(None, "user_version", to))
                .and_then(|()| tx.commit())
                .map_err(|e| AuditError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            tracing::debug!(path = %self.path.display(), version = to, "audit schema migrated");
        }
        Ok(())
    }

    fn err(&self, source: rusqlite::Error) -> AuditError {
        AuditError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Direct access for tests and tools (e.g. tamper tests). Not for normal use.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(seq: i64) -> Result<u64, AuditError> {
    u64::try_from(seq).map_err(|_| AuditError::Corrupt {
        seq: 0,
        reason: format!("negative sequence number {seq}"),
    })
}

fn read_row(r: &rusqlite::Row<'_>, with_bodies: bool) -> rusqlite::Result<(i64, StoredRow)> {
    let seq: i64 = r.get(0)?;
    Ok((
        seq,
        StoredRow {
            seq: 0,
            time_ms: r.get(1)?,
            user: r.get(2)?,
            team: r.get(3)?,
            tool: r.get(4)?,
            decision: r.get(5)?,
            model: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
            record: r.get(9)?,
            request_body: if with_bodies { r.get(10)? } else { None },
            response_body: if with_bodies { r.get(11)? } else { None },
        },
    ))
}

fn where_clause(f: &AuditFilter) -> (String, Vec<Value>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut vals: Vec<Value> = Vec::new();
    if let Some(t) = f.since {
        conds.push("time_ms >= ?");
        vals.push(Value::Integer(time_ms(t)));
    }
    if let Some(t) = f.until {
        conds.push("time_ms < ?");
        vals.push(Value::Integer(time_ms(t)));
    }
    for (col, v) in [
        ("user = ?", &f.user),
        ("team = ?", &f.team),
        ("tool = ?", &f.tool),
        ("model = ?", &f.model),
    ] {
        if let Some(v) = v {
            conds.push(col);
            vals.push(Value::Text(v.clone()));
        }
    }
    if let Some(d) = f.decision {
        conds.push("decision = ?");
        vals.push(Value::Text(d.as_str().to_string()));
    }
    if let Some(s) = f.after_seq {
        conds.push("seq > ?");
        vals.push(Value::Integer(to_i64(s)));
    }
    if conds.is_empty() {
        (String::new(), vals)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), vals)
    }
}

fn time_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl SqliteStore {
    fn stream(
        &self,
        sql: &str,
        vals: &[Value],
        with_bodies: bool,
        sink: &mut RowSink<'_>,
    ) -> Result<(), AuditError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(vals.iter()))
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let (seq, mut row) = read_row(r, with_bodies).map_err(|e| self.err(e))?;
            row.seq = to_u64(seq)?;
            if sink(row)?.is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn head(&self) -> Result<ChainHead, AuditError> {
        let last: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let anchor: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM anchors ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let best = match (last, anchor) {
            (Some(l), Some(a)) => Some(if a.0 > l.0 { a } else { l }),
            (l, a) => l.or(a),
        };
        Ok(match best {
            Some((seq, hash)) => ChainHead {
                seq: to_u64(seq)?,
                hash,
            },
            None => ChainHead {
                seq: 0,
                hash: GENESIS_HASH.to_string(),
            },
        })
    }

    fn append(
        &mut self,
        rows: &[StoredRow],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), AuditError> {
        let path = self.path.clone();
        let err = |source| AuditError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO records (seq, time_ms, user, team, tool, decision, model, prev_hash, hash, record, request_body, response_body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(err)?;
            for r in rows {
                stmt.execute(params![
                    to_i64(r.seq),
                    r.time_ms,
                    r.user,
                    r.team,
                    r.tool,
                    r.decision,
                    r.model,
                    r.prev_hash,
                    r.hash,
                    r.record,
                    r.request_body,
                    r.response_body,
                ])
                .map_err(err)?;
            }
            if let Some(cp) = checkpoint {
                insert_checkpoint(&tx, cp).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn add_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), AuditError> {
        insert_checkpoint(&self.conn, checkpoint).map_err(|e| self.err(e))
    }

    fn scan(
        &self,
        from_seq: u64,
        with_bodies: bool,
        sink: &mut RowSink<'_>,
    ) -> Result<(), AuditError> {
        let cols = if with_bodies {
            ROW_COLS_BODIES
        } else {
            ROW_COLS
        };
        let sql = format!("SELECT {cols} FROM records WHERE seq >= ? ORDER BY seq");
        self.stream(&sql, &[Value::Integer(to_i64(from_seq))], with_bodies, sink)
    }

    fn scan_filtered(
        &self,
        filter: &AuditFilter,
        sink: &mut RowSink<'_>,
    ) -> Result<(), AuditError> {
        let (w, vals) = where_clause(filter);
        let sql = format!("SELECT {ROW_COLS} FROM records{w} ORDER BY seq");
        self.stream(&sql, &vals, false, sink)
    }

    fn query_newest(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<StoredRow>, AuditError> {
        let (w, mut vals) = where_clause(filter);
        vals.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!("SELECT {ROW_COLS} FROM records{w} ORDER BY seq DESC LIMIT ?");
        let mut out = Vec::new();
        self.stream(&sql, &vals, false, &mut |row| {
            out.push(row);
            Ok(ControlFlow::Continue(()))
        })?;
        out.reverse();
        Ok(out)
    }

    fn row(&self, seq: u64, with_bodies: bool) -> Result<Option<StoredRow>, AuditError> {
        let mut found = None;
        let cols = if with_bodies {
            ROW_COLS_BODIES
        } else {
            ROW_COLS
        };
        let sql = format!("SELECT {cols} FROM records WHERE seq = ?");
        self.stream(
            &sql,
            &[Value::Integer(to_i64(seq))],
            with_bodies,
            &mut |row| {
                found = Some(row);
                Ok(ControlFlow::Break(()))
            },
        )?;
        Ok(found)
    }

    fn body(&self, seq: u64, kind: BodyKind) -> Result<Option<Vec<u8>>, AuditError> {
        let col = match kind {
            BodyKind::Request => "request_body",
            BodyKind::Response => "response_body",
        };
        let v: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                &format!("SELECT {col} FROM records WHERE seq = ?"),
                [to_i64(seq)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.flatten())
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, hash, time_ms, public_key, signature FROM checkpoints ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (seq, hash, time_ms, public_key, signature) = r.map_err(|e| self.err(e))?;
            out.push(Checkpoint {
                seq: to_u64(seq)?,
                hash,
                time_ms,
                public_key,
                signature,
            });
        }
        Ok(out)
    }

    fn anchors(&self) -> Result<Vec<Anchor>, AuditError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, hash, time_ms, pruned, public_key, signature FROM anchors ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (seq, hash, time_ms, pruned, public_key, signature) = r.map_err(|e| self.err(e))?;
            out.push(Anchor {
                seq: to_u64(seq)?,
                hash,
                time_ms,
                pruned: to_u64(pruned)?,
                public_key,
                signature,
            });
        }
        Ok(out)
    }

    fn count(&self) -> Result<(u64, Option<u64>), AuditError> {
        let (n, min): (i64, Option<i64>) = self
            .conn
            .query_row("SELECT count(*), min(seq) FROM records", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.err(e))?;
        Ok((to_u64(n)?, min.map(to_u64).transpose()?))
    }

    fn last_seq_over_size(&self, max_bytes: u64) -> Result<Option<u64>, AuditError> {
        // Running payload size from the newest record back; the newest record whose suffix
        // no longer fits is the last one to go.
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT max(seq) FROM (
                    SELECT seq, sum(length(CAST(record AS BLOB)) + ifnull(length(request_body), 0)
                                    + ifnull(length(response_body), 0))
                           OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) AS suffix
                    FROM records)
                 WHERE suffix > ?",
                [to_i64(max_bytes)],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        v.map(to_u64).transpose()
    }

    fn last_seq_before(&self, time_ms: i64) -> Result<Option<u64>, AuditError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT max(seq) FROM records WHERE time_ms < ?",
                [time_ms],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        v.map(to_u64).transpose()
    }

    fn prune(&mut self, anchor: &Anchor) -> Result<u64, AuditError> {
        let path = self.path.clone();
        let err = |source| AuditError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let seq = to_i64(anchor.seq);
        let n = tx
            .execute("DELETE FROM records WHERE seq <= ?", [seq])
            .map_err(err)?;
        tx.execute("DELETE FROM checkpoints WHERE seq <= ?", [seq])
            .map_err(err)?;
        tx.execute(
            "INSERT INTO anchors (seq, hash, time_ms, pruned, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                seq,
                anchor.hash,
                anchor.time_ms,
                to_i64(anchor.pruned),
                anchor.public_key,
                anchor.signature
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n as u64)
    }
}

fn insert_checkpoint(conn: &Connection, cp: &Checkpoint) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO checkpoints (seq, hash, time_ms, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![to_i64(cp.seq), cp.hash, cp.time_ms, cp.public_key, cp.signature])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::create(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = SqliteStore::open_existing(dir.path()).unwrap();
        assert_eq!(s.head().unwrap().seq, 0);
        s.connection()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(s);
        let e = SqliteStore::open_existing(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema version 99"), "{e}");
    }

    /// With background checkpoints, the writer's connection no longer checkpoints every 1,000
    /// pages, and the frames it writes are copied into the database by the other thread.
    #[test]
    fn background_checkpoints_copy_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::create(dir.path()).unwrap();
        s.checkpoint_in_background().unwrap();
        // About 6 MB of WAL: more than SQLite's default automatic checkpoint would allow.
        let blob = vec![7u8; 3000];
        for seq in 1..=2000i64 {
            s.connection()
                .execute(
                    "INSERT INTO records (seq, time_ms, prev_hash, hash, record, request_body) VALUES (?1, 0, '', '', '{}', ?2)",
                    params![seq, blob],
                )
                .unwrap();
        }
        // The writer's own threshold is now 64 MiB, so only the background thread can have
        // copied the pages into the database file.
        let size = |f: &str| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size(DB_FILE) < 5_000_000 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            size(DB_FILE) > 5_000_000,
            "the database file never received the WAL's pages: db {} bytes, wal {} bytes",
            size(DB_FILE),
            size("audit.db-wal")
        );
        assert!(s.background_checkpoints() > 0);
        drop(s); // stops and joins the thread
    }

    #[test]
    fn open_existing_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteStore::open_existing(dir.path()).unwrap_err();
        assert!(matches!(e, AuditError::NotFound(_)));
        assert!(!dir.path().join(DB_FILE).exists());
    }
}
