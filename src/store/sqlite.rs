//! The embedded backend: one SQLite file in WAL mode, opened by the thread that writes it.
//! Commits are fully synced (`synchronous = FULL`): the writer batches events, so the cost is
//! paid once per batch, and a committed event survives a power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params_from_iter};

use super::backend::Backend;
use super::sql::{self, Reader, Value};
use super::{ApplyOutcome, Connector, MIGRATIONS, Store, StoreError, StoreEvent};

const BACKEND: &str = "sqlite";

/// A SQLite store. Not shared between threads: each owner opens its own.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// `$n` statements rewritten to `?n`, by their original text.
    rewritten: HashMap<&'static str, String>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn classify(doing: &str, e: rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    let transient = match &e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::ReadOnly
        ),
        _ => false,
    };
    if transient {
        StoreError::Unavailable { backend: BACKEND, doing: doing.to_string(), detail }
    } else {
        StoreError::Rejected { backend: BACKEND, doing: doing.to_string(), detail }
    }
}

fn to_sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Int(Some(i)) => SqlValue::Integer(*i),
        Value::Text(Some(s)) => SqlValue::Text(s.clone()),
        Value::Int(None) | Value::Text(None) => SqlValue::Null,
    }
}

struct SqliteRow<'a, 'b>(&'a rusqlite::Row<'b>);

impl sql::Row for SqliteRow<'_, '_> {
    fn int(&self, idx: usize) -> Result<Option<i64>, String> {
        match self.0.get_ref(idx).map_err(|e| e.to_string())? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(i) => Ok(Some(i)),
            other => Err(format!("expected an integer, found {:?}", other.data_type())),
        }
    }

    fn text(&self, idx: usize) -> Result<Option<String>, String> {
        match self.0.get_ref(idx).map_err(|e| e.to_string())? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => {
                std::str::from_utf8(t).map(|s| Some(s.to_string())).map_err(|e| e.to_string())
            }
            other => Err(format!("expected text, found {:?}", other.data_type())),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let doing = format!("opening {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
                backend: BACKEND,
                doing: doing.clone(),
                detail: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| classify(&doing, e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| classify(&doing, e))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| classify(&doing, e))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| classify(&doing, e))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| classify(&doing, e))?;
        let mut store = SqliteStore { conn, path, rewritten: HashMap::new() };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies every migration not yet recorded in `schema_migrations`. Re-running it does
    /// nothing.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        let doing = "migrating the schema";
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .map_err(|e| classify(doing, e))?;
        for &(version, name, sql) in MIGRATIONS {
            // IMMEDIATE takes the write lock first, so two processes cannot both apply it.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| classify(doing, e))?;
            let done: Option<i64> = tx
                .query_row(
                    "SELECT version FROM schema_migrations WHERE version = ?1",
                    [version],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| classify(doing, e))?;
            if done.is_none() {
                let doing = format!("applying migration {version} ({name})");
                tx.execute_batch(sql).map_err(|e| classify(&doing, e))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![version, name, chrono::Utc::now().timestamp_millis()],
                )
                .map_err(|e| classify(&doing, e))?;
                log::info!(target: "store", "sqlite {}: applied migration {version} ({name})", self.path.display());
            }
            tx.commit().map_err(|e| classify(doing, e))?;
        }
        Ok(())
    }

    fn sql(&mut self, pg_sql: &'static str) -> String {
        self.rewritten.entry(pg_sql).or_insert_with(|| sql::to_sqlite(pg_sql)).clone()
    }
}

impl Backend for SqliteStore {
    const NAME: &'static str = BACKEND;

    fn write_events(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError> {
        let doing = format!("applying {} events", events.len());
        let claim = self.sql(sql::CLAIM_EVENT);
        let mut texts: Vec<Vec<(String, Vec<Value>)>> = Vec::with_capacity(events.len());
        for ev in events {
            let ops = sql::event_ops(ev);
            texts.push(ops.into_iter().map(|op| (self.sql(op.sql), op.params)).collect());
        }
        let tx = self.conn.transaction().map_err(|e| classify(&doing, e))?;
        let mut outcome = ApplyOutcome::default();
        for (ev, ops) in events.iter().zip(texts) {
            let claimed = {
                let mut stmt = tx.prepare_cached(&claim).map_err(|e| classify(&doing, e))?;
                stmt.execute(params_from_iter(sql::claim_params(ev).iter().map(to_sql_value)))
                    .map_err(|e| classify(&doing, e))?
            };
            if claimed == 0 {
                outcome.duplicates += 1;
                continue;
            }
            for (text, params) in ops {
                let doing = format!("applying event {} ({})", ev.id, ev.kind.name());
                let mut stmt = tx.prepare_cached(&text).map_err(|e| classify(&doing, e))?;
                stmt.execute(params_from_iter(params.iter().map(to_sql_value)))
                    .map_err(|e| classify(&doing, e))?;
            }
            outcome.applied += 1;
        }
        tx.commit().map_err(|e| classify(&doing, e))?;
        Ok(outcome)
    }

    fn round_trip(&mut self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(())).map_err(|e| classify("pinging", e))
    }

    fn each_row(
        &mut self,
        table: &'static str,
        pg_sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Reader<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let doing = format!("reading {table}");
        let text = sql::to_sqlite(pg_sql);
        let mut stmt = self.conn.prepare_cached(&text).map_err(|e| classify(&doing, e))?;
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(to_sql_value)))
            .map_err(|e| classify(&doing, e))?;
        while let Some(row) = rows.next().map_err(|e| classify(&doing, e))? {
            each(&Reader { backend: BACKEND, table, row: &SqliteRow(row) })?;
        }
        Ok(())
    }

    /// One connection, one writer: the recovery read happens before any writer runs, so the
    /// statements see one state without a transaction.
    fn snapshot<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        read(self)
    }
}

/// A connector for the writer: each call opens the file on the calling thread.
pub fn connector(path: impl Into<PathBuf>) -> Connector {
    let path = path.into();
    Arc::new(move || SqliteStore::open(&path).map(|s| Box::new(s) as Box<dyn Store>))
}
