//! Persistence: positions with their risk state, orders and every status they went through,
//! fills, closed trades, the day's account totals, the trading state and an audit log.
//!
//! The engine's hot threads never touch a database. They call [`StoreHandle::record`], which
//! only enqueues a [`StoreEvent`]; the write-behind worker ([`writer::StoreWriter`]) applies
//! events in order and in batches through a [`Store`] backend ([`sqlite::SqliteStore`], the
//! embedded default, or [`postgres::PgStore`]). While the database is unreachable the worker
//! appends events to a local spill file and replays it, in order and without duplicates, when
//! the database returns. Applying an event is idempotent by its [`EventId`].
//!
//! **Idempotency** comes from an `applied_events` table keyed by event id: claiming the id and
//! applying the event happen in one transaction, so an event is applied at most once however
//! often it is replayed. Natural-key upserts alone would not do: appends (order history, audit
//! log) have no natural key, and replaying an old position upsert after a newer one would
//! roll the risk state back. The cost is one small insert per event (one round trip per batch
//! on PostgreSQL). The table grows by one row per event and is not pruned: a pruning horizon
//! would have to be older than any spill file can be.
//!
//! Schema: versioned migrations ([`MIGRATIONS`], SQL in `migrations/`) recorded in
//! `schema_migrations` and applied when a store opens. Money is BIGINT paise, instants BIGINT
//! epoch milliseconds (UTC), trading days `YYYY-MM-DD` text.
//!
//! Wiring (once per engine; the factory builds a fresh writer for every (re)spawn):
//!
//! ```no_run
//! use scalper::ops::{health::HealthBoard, metrics::Metrics};
//! use scalper::runtime::{Worker, WorkerCtx};
//! use scalper::store::{self, EventKind, StoreWriter, WriterConfig, WriterShared};
//!
//! let (metrics, health) = (Metrics::new(), HealthBoard::new());
//! let (handle, inbox) = store::queue(16_384);
//! let connector = store::sqlite::connector("data/store.db");
//! // or: store::postgres::connector(url, store::postgres::PgOptions::default())
//! let shared = WriterShared::new(
//!     inbox,
//!     connector,
//!     WriterConfig::new("data/store.spill"),
//!     &metrics,
//!     health.clone(),
//! );
//! let factory = move || StoreWriter::new(shared.clone());
//! // The supervisor runs factory() on its own thread; by hand:
//! let (_stop, ctx) = WorkerCtx::standalone("store-writer");
//! std::thread::spawn(move || factory().run(&ctx));
//! // Any hot thread, with a clone of `handle`:
//! # let record = scalper::store::AuditRecord {
//! #     at: scalper::domain::Timestamp(0), actor: scalper::store::Actor::Operator,
//! #     action: "resume".into(), detail: String::new() };
//! handle.record(EventKind::Audit(record));
//! ```
//!
//! Neighbours: `exec`/`risk` produce the events, startup reads [`Recovery`] (after
//! [`WriterShared::is_caught_up`]), `ops` shows the `store` health component and metrics.

mod backend;
mod observe;
mod pg_tls;
pub mod postgres;
pub mod queue;
pub mod records;
pub mod spill;
mod sql;
pub mod sqlite;
pub mod writer;

use chrono::NaiveDate;

pub use queue::{StoreHandle, StoreInbox, queue};
pub use records::*;
pub use writer::{Connector, StoreMetrics, StoreWriter, WriterConfig, WriterShared, WriterStats};

/// Why a store operation failed. What the writer does next depends on the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or the connection broke: retry later, spill meanwhile.
    #[error("{backend} database unavailable while {doing}: {detail}")]
    Unavailable { backend: &'static str, doing: String, detail: String },
    /// The database refused this data (a constraint, a bad value): retrying will not help.
    #[error("{backend} database refused {doing}: {detail}")]
    Rejected { backend: &'static str, doing: String, detail: String },
    /// A stored row could not be read back into a record.
    #[error("{backend} row in {table} is invalid: {detail}")]
    Corrupt { backend: &'static str, table: &'static str, detail: String },
    /// The store's configuration is unusable (a bad URL, a bad schema name).
    #[error("store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// What applying a batch did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Events applied now.
    pub applied: usize,
    /// Events skipped because they had been applied before.
    pub duplicates: usize,
}

/// A storage backend. Synchronous; one value per connection, owned by one thread.
pub trait Store: Send {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Applies `events` in order, in one transaction: all or nothing. An event whose id was
    /// applied before is skipped, so applying the same batch twice changes nothing.
    fn apply(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError>;

    /// What a restarting engine needs for `trading_day` (an IST date).
    fn load_recovery(&mut self, trading_day: NaiveDate) -> Result<Recovery, StoreError>;

    /// A cheap round trip, to tell whether the database is reachable.
    fn ping(&mut self) -> Result<(), StoreError>;

    /// The highest event id applied, if any.
    fn last_event_id(&mut self) -> Result<Option<EventId>, StoreError>;

    /// The migration versions applied, ascending.
    fn schema_versions(&mut self) -> Result<Vec<i64>, StoreError>;

    // Reads for tests and operations.
    fn positions(&mut self) -> Result<Vec<PositionRecord>, StoreError>;
    fn orders(&mut self) -> Result<Vec<OrderWithHistory>, StoreError>;
    fn fills(&mut self) -> Result<Vec<FillRecord>, StoreError>;
    fn closed_trades(&mut self) -> Result<Vec<ClosedTradeRecord>, StoreError>;
    fn daily_pnl(&mut self) -> Result<Vec<DailyPnlRecord>, StoreError>;
    fn trading_state(&mut self) -> Result<Option<TradingStateRecord>, StoreError>;
    fn audit(&mut self) -> Result<Vec<AuditEntry>, StoreError>;
}

/// The schema versions this build knows, with their SQL (valid for both backends).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (2, "entry_price_source", include_str!("migrations/0002_entry_price_source.sql")),
    (3, "exact_values", include_str!("migrations/0003_exact_values.sql")),
    (4, "order_limit_price", include_str!("migrations/0004_order_limit_price.sql")),
];
