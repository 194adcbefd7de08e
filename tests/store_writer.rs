//! The write-behind worker against real databases: a PostgreSQL outage in the middle of a run
//! (through a proxy the test cuts), a writer replaced while events sit in the spill, a writer
//! that panics mid-batch, a crash during replay, refused events, and a full queue. Every test
//! checks that each event reaches the database exactly once and in order.

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use scalper::ops::health::{HealthBoard, Status};
use scalper::ops::metrics::Metrics;
use scalper::runtime::{StopHandle, Worker, WorkerCtx};
use scalper::store::postgres::{PgOptions, connector as pg_connector};
use scalper::store::spill::SpillFiles;
use scalper::store::sqlite::SqliteStore;
use scalper::store::writer::HEALTH_COMPONENT;
use scalper::store::*;

const LONG: Duration = Duration::from_secs(30);

struct Running {
    stop: StopHandle,
    join: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn stop(self) {
        self.stop.stop();
        self.join.join().expect("writer thread").expect("writer returns Ok when stopped");
    }
}

/// Runs a fresh writer (as the supervisor's factory would build it) on its own thread.
fn run_writer(shared: &Arc<WriterShared>) -> Running {
    let (stop, ctx) = WorkerCtx::standalone("store-writer");
    let mut writer = StoreWriter::new(shared.clone());
    let join = std::thread::spawn(move || writer.run(&ctx));
    Running { stop, join }
}

fn config(dir: &tempfile::TempDir) -> WriterConfig {
    WriterConfig {
        batch_max: 128,
        linger: Duration::from_millis(1),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..WriterConfig::new(dir.path().join("spill/store.spill"))
    }
}

/// Checks that the audit log holds exactly the numbered events `0..n`, in id order.
fn assert_all_once_in_order(entries: &[AuditEntry], n: u64) {
    let seqs: Vec<u64> = entries.iter().map(seq_of).collect();
    assert!(entries.windows(2).all(|w| w[0].event_id < w[1].event_id));
    if seqs != (0..n).collect::<Vec<_>>() {
        let missing: Vec<u64> = (0..n).filter(|s| !seqs.contains(s)).take(10).collect();
        panic!(
            "expected 0..{n} once each in order; got {} entries, missing e.g. {missing:?}",
            seqs.len()
        );
    }
}

fn pg_writer(
    schema: &PgSchema,
    proxy: &Proxy,
    dir: &tempfile::TempDir,
    capacity: usize,
) -> (StoreHandle, Arc<WriterShared>, HealthBoard) {
    let (handle, inbox) = queue(capacity);
    let opts = PgOptions { connect_timeout: Duration::from_secs(1), ..schema.options() };
    let connector = pg_connector(via_port(&schema.url, proxy.port()), opts);
    let health = HealthBoard::new();
    let shared = WriterShared::new(inbox, connector, config(dir), &Metrics::new(), health.clone());
    (handle, shared, health)
}

#[test]
fn postgres_outage_mid_run_spills_and_replays_every_event_once_in_order() {
    let schema = PgSchema::new("outage");
    let proxy = Proxy::start(pg_addr(&schema.url));
    let dir = tempfile::tempdir().unwrap();
    let (handle, shared, health) = pg_writer(&schema, &proxy, &dir, 4096);
    let writer = run_writer(&shared);

    // A producer records events throughout, as the engine's hot threads would.
    let stop_producing = Arc::new(AtomicBool::new(false));
    let producer = {
        let (handle, stop) = (handle.clone(), stop_producing.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                handle.record(numbered(seq));
                worst = worst.max(t.elapsed());
                seq += 1;
                if seq.is_multiple_of(16) {
                    std::thread::sleep(Duration::from_millis(1)); // pacing, not synchronisation
                }
            }
            (seq, worst)
        })
    };

    assert!(wait_until(LONG, || shared.stats().written >= 200), "writes before the outage");
    proxy.cut();
    let cut_at = Instant::now();
    assert!(
        wait_until(LONG, || shared.stats().spilled >= 300
            && cut_at.elapsed() >= Duration::from_secs(1)),
        "the spill is used during the outage: {:?}",
        shared.stats()
    );
    let during = health.get(HEALTH_COMPONENT).unwrap();
    assert_eq!(during.status, Status::Degraded, "{during:?}");
    assert!(during.reason.contains("database unavailable"), "{}", during.reason);
    assert!(!shared.stats().database_up);
    let spilled_during_outage = shared.stats().spilled;

    proxy.restore();
    assert!(
        wait_until(LONG, || {
            let s = shared.stats();
            s.database_up && s.spill_events == 0 && s.replayed >= spilled_during_outage
        }),
        "the spill is replayed when the database returns: {:?}",
        shared.stats()
    );
    // Keep producing a little after the replay, then stop and let everything land.
    let resumed_at = shared.stats().written;
    assert!(wait_until(LONG, || shared.stats().written >= resumed_at + 100));
    stop_producing.store(true, Ordering::Release);
    let (produced, worst) = producer.join().unwrap();
    // A batch whose commit reached the database just as the link was cut has an unknown
    // outcome for the writer: it is spilled and replayed, and the replay finds those events
    // already applied (counted as duplicates, not applied twice). So every event is either
    // written or a skipped duplicate, and the database holds each one once.
    assert!(
        wait_until(LONG, || {
            let s = shared.stats();
            s.written + s.duplicates == produced && handle.depth() == 0
        }),
        "all {produced} events written: {:?}",
        shared.stats()
    );

    let mut store = schema.open();
    assert_all_once_in_order(&store.audit().unwrap(), produced);
    let stats = shared.stats();
    assert!(stats.written <= produced, "no event applied twice: {stats:?}");
    assert!(stats.replayed >= spilled_during_outage);
    assert!(!SpillFiles::new(shared.config().spill_path.clone()).pending(), "spill emptied");
    assert!(
        wait_until(LONG, || health.get(HEALTH_COMPONENT).unwrap().status == Status::Ok),
        "{:?}",
        health.get(HEALTH_COMPONENT)
    );
    // The outage lasted over a second; recording never waited for it.
    assert!(worst < Duration::from_millis(100), "record() took {worst:?} at worst");
    eprintln!(
        "outage test: {produced} events, {} spilled, {} replayed, {} duplicates skipped, worst record() {worst:?}",
        stats.spilled, stats.replayed, stats.duplicates
    );
    writer.stop();
}

#[test]
fn a_writer_stopped_mid_spill_is_replaced_by_a_fresh_one_that_loses_nothing() {
    let schema = PgSchema::new("restart");
    let proxy = Proxy::start(pg_addr(&schema.url));
    let dir = tempfile::tempdir().unwrap();
    let (handle, shared, _health) = pg_writer(&schema, &proxy, &dir, 4096);
    let first = run_writer(&shared);
    for seq in 0..100 {
        handle.record(numbered(seq));
    }
    assert!(wait_until(LONG, || shared.stats().written == 100));
    proxy.cut();
    for seq in 100..300 {
        handle.record(numbered(seq));
    }
    assert!(
        wait_until(LONG, || shared.stats().spilled >= 200 && handle.depth() == 0),
        "{:?}",
        shared.stats()
    );
    // Stopped while the database is down and the spill holds 200 events.
    first.stop();
    assert_eq!(shared.stats().spill_events, 200);
    // Recorded while no writer runs: they wait in the queue.
    for seq in 300..400 {
        handle.record(numbered(seq));
    }
    proxy.restore();
    let second = run_writer(&shared);
    assert!(
        wait_until(LONG, || shared.stats().written == 400 && handle.depth() == 0),
        "{:?}",
        shared.stats()
    );
    assert_all_once_in_order(&schema.open().audit().unwrap(), 400);
    assert!(!shared.spill_files().pending());
    second.stop();
}

#[test]
fn refused_events_are_kept_aside_and_do_not_block_the_rest() {
    let schema = PgSchema::new("refused");
    let proxy = Proxy::start(pg_addr(&schema.url));
    let dir = tempfile::tempdir().unwrap();
    let (handle, shared, health) = pg_writer(&schema, &proxy, &dir, 1024);
    let writer = run_writer(&shared);
    handle.record(numbered(0));
    // PostgreSQL cannot store text with a NUL character: a refusal, not an outage.
    let bad = handle.record(EventKind::Audit(audit(Actor::Operator, "note", "a\0b")));
    handle.record(numbered(1));
    assert!(
        wait_until(LONG, || shared.stats().written == 2 && shared.stats().rejected == 1),
        "{:?}",
        shared.stats()
    );
    let entries = schema.open().audit().unwrap();
    assert_all_once_in_order(&entries, 2);
    let rejected = std::fs::read_to_string(&shared.spill_files().rejected).unwrap();
    let line: serde_json::Value = serde_json::from_str(rejected.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"]["id"], bad.0);
    assert!(line["reason"].as_str().unwrap().contains("refused"), "{line}");
    assert!(wait_until(LONG, || health.get(HEALTH_COMPONENT).unwrap().reason.contains("refused")));
    assert_eq!(health.get(HEALTH_COMPONENT).unwrap().status, Status::Degraded);
    writer.stop();
}

/// A store that panics once, right after committing its `panic_on`-th batch: the writer dies
/// between the commit and forgetting the batch.
struct PanicsAfterCommit {
    inner: SqliteStore,
    calls: Arc<AtomicUsize>,
    panic_on: usize,
}

impl Store for PanicsAfterCommit {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    fn apply(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError> {
        let outcome = self.inner.apply(events)?;
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.panic_on {
            panic!("injected failure after commit");
        }
        Ok(outcome)
    }
    fn load_recovery(&mut self, d: chrono::NaiveDate) -> Result<Recovery, StoreError> {
        self.inner.load_recovery(d)
    }
    fn ping(&mut self) -> Result<(), StoreError> {
        self.inner.ping()
    }
    fn last_event_id(&mut self) -> Result<Option<EventId>, StoreError> {
        self.inner.last_event_id()
    }
    fn schema_versions(&mut self) -> Result<Vec<i64>, StoreError> {
        self.inner.schema_versions()
    }
    fn positions(&mut self) -> Result<Vec<PositionRecord>, StoreError> {
        self.inner.positions()
    }
    fn orders(&mut self) -> Result<Vec<OrderWithHistory>, StoreError> {
        self.inner.orders()
    }
    fn fills(&mut self) -> Result<Vec<FillRecord>, StoreError> {
        self.inner.fills()
    }
    fn closed_trades(&mut self) -> Result<Vec<ClosedTradeRecord>, StoreError> {
        self.inner.closed_trades()
    }
    fn daily_pnl(&mut self) -> Result<Vec<DailyPnlRecord>, StoreError> {
        self.inner.daily_pnl()
    }
    fn trading_state(&mut self) -> Result<Option<TradingStateRecord>, StoreError> {
        self.inner.trading_state()
    }
    fn audit(&mut self) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit()
    }
}

#[test]
fn a_writer_that_panics_mid_batch_leaves_the_batch_to_the_next_one() {
    let db = SqliteFile::new();
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let connector: Connector = {
        let (path, calls) = (db.path.clone(), calls.clone());
        Arc::new(move || {
            Ok(Box::new(PanicsAfterCommit {
                inner: SqliteStore::open(&path)?,
                calls: calls.clone(),
                panic_on: 3,
            }) as Box<dyn Store>)
        })
    };
    let (handle, inbox) = queue(1024);
    let cfg = WriterConfig { batch_max: 10, linger: Duration::ZERO, ..config(&dir) };
    let shared = WriterShared::new(inbox, connector, cfg, &Metrics::new(), HealthBoard::new());
    for seq in 0..100 {
        handle.record(numbered(seq));
    }
    // As the supervisor does: run inside catch_unwind, then build a fresh writer.
    let (_stop, ctx) = WorkerCtx::standalone("store-writer");
    let mut first = StoreWriter::new(shared.clone());
    let died = std::panic::catch_unwind(AssertUnwindSafe(|| first.run(&ctx)));
    assert!(died.is_err(), "the injected panic");
    assert_eq!(shared.stats().in_flight, 10, "the committed batch is still held");
    let second = run_writer(&shared);
    // The batch committed just before the panic is offered again and skipped as a duplicate
    // (the first writer died before counting it as written).
    assert!(
        wait_until(LONG, || {
            let s = shared.stats();
            s.written + s.duplicates == 100 && handle.depth() == 0
        }),
        "{:?}",
        shared.stats()
    );
    assert_eq!((shared.stats().written, shared.stats().duplicates), (90, 10));
    assert_all_once_in_order(&db.open().audit().unwrap(), 100);
    second.stop();
}

#[test]
fn a_crash_during_replay_replays_again_without_duplicates() {
    let db = SqliteFile::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let spill = SpillFiles::new(cfg.spill_path.clone());
    // What a crash in the middle of a replay leaves: a replay file whose first half is already
    // committed, a newer active spill, and a torn line at the end of the active spill.
    let replaying = events(1, (0..100).map(numbered).collect());
    let newer = events(101, (100..150).map(numbered).collect());
    db.open().apply(&replaying[..50]).unwrap();
    spill.append(&replaying).unwrap();
    std::fs::rename(&spill.active, &spill.replay).unwrap();
    spill.append(&newer).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&spill.active).unwrap();
        f.write_all(b"{\"id\":151,\"at\":17639").unwrap();
    }
    let (handle, inbox) = queue(1024);
    let shared = WriterShared::new(
        inbox,
        scalper::store::sqlite::connector(db.path.clone()),
        cfg,
        &Metrics::new(),
        HealthBoard::new(),
    );
    // New events recorded after the restart come after everything spilled.
    for seq in 150..160 {
        handle.record(numbered(seq));
    }
    assert!(!shared.is_caught_up());
    let writer = run_writer(&shared);
    // What startup waits for before reading recovery.
    assert!(wait_until(LONG, || shared.is_caught_up()));
    let s = shared.stats();
    assert!(s.written + s.duplicates >= 150, "the spill was replayed first: {s:?}");
    assert!(
        wait_until(LONG, || shared.stats().written == 110 && handle.depth() == 0),
        "{:?}",
        shared.stats()
    );
    assert_eq!(shared.stats().duplicates, 50);
    assert_eq!(shared.stats().rejected, 0, "the torn line is cut, not reported");
    assert_all_once_in_order(&db.open().audit().unwrap(), 160);
    assert!(!spill.pending());
    writer.stop();
}

#[test]
fn a_full_queue_overflows_without_blocking_and_drains_in_order() {
    let db = SqliteFile::new();
    let dir = tempfile::tempdir().unwrap();
    let (handle, inbox) = queue(16);
    let metrics = Metrics::new();
    let shared = WriterShared::new(
        inbox,
        scalper::store::sqlite::connector(db.path.clone()),
        config(&dir),
        &metrics,
        HealthBoard::new(),
    );
    // No writer yet: the queue fills and overflows; recording still returns at once.
    let started = Instant::now();
    for seq in 0..20_000 {
        handle.record(numbered(seq));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(handle.stats().overflow, 20_000 - 16);
    let writer = run_writer(&shared);
    assert!(wait_until(LONG, || shared.stats().written == 20_000), "{:?}", shared.stats());
    assert_all_once_in_order(&db.open().audit().unwrap(), 20_000);
    writer.stop();
    let text = metrics.render();
    assert!(text.contains("scalper_store_overflowed_events_total 19984"), "{text}");
    assert!(text.contains("scalper_store_written_events_total 20000"), "{text}");
    assert!(text.contains("scalper_store_queue_depth 0"), "{text}");
}

#[test]
fn stopping_the_writer_persists_what_is_already_queued() {
    let db = SqliteFile::new();
    let dir = tempfile::tempdir().unwrap();
    let (handle, inbox) = queue(64);
    let shared = WriterShared::new(
        inbox,
        scalper::store::sqlite::connector(db.path.clone()),
        config(&dir),
        &Metrics::new(),
        HealthBoard::new(),
    );
    let writer = run_writer(&shared);
    for seq in 0..500 {
        handle.record(numbered(seq));
    }
    writer.stop();
    assert_eq!(handle.depth(), 0);
    assert_all_once_in_order(&db.open().audit().unwrap(), 500);
}

#[test]
fn an_idle_writer_connects_and_reports_ok_and_an_unreachable_one_degraded() {
    let db = SqliteFile::new();
    let dir = tempfile::tempdir().unwrap();
    let (_handle, inbox) = queue(64);
    let health = HealthBoard::new();
    let shared = WriterShared::new(
        inbox,
        scalper::store::sqlite::connector(db.path.clone()),
        config(&dir),
        &Metrics::new(),
        health.clone(),
    );
    assert_eq!(health.get(HEALTH_COMPONENT).unwrap().status, Status::Degraded, "starting");
    let writer = run_writer(&shared);
    assert!(wait_until(LONG, || shared.stats().database_up
        && health.get(HEALTH_COMPONENT).unwrap().status == Status::Ok));
    writer.stop();

    // A database that cannot be opened (its directory is a file).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let (_handle, inbox) = queue(64);
    let health = HealthBoard::new();
    let shared = WriterShared::new(
        inbox,
        scalper::store::sqlite::connector(blocker.join("store.db")),
        config(&dir),
        &Metrics::new(),
        health.clone(),
    );
    let writer = run_writer(&shared);
    assert!(wait_until(LONG, || health
        .get(HEALTH_COMPONENT)
        .unwrap()
        .reason
        .contains("database unavailable")));
    assert!(!shared.stats().database_up);
    writer.stop();
}

#[test]
fn with_neither_database_nor_spill_events_are_held_and_health_is_down_until_one_returns() {
    let dir = tempfile::tempdir().unwrap();
    // Both the database and the spill live under a path that is, for now, a file.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, b"x").unwrap();
    let (handle, inbox) = queue(64);
    let health = HealthBoard::new();
    let cfg = WriterConfig {
        spill_path: blocker.join("store.spill"),
        retry_max: Duration::from_millis(50),
        ..config(&dir)
    };
    let shared = WriterShared::new(
        inbox,
        scalper::store::sqlite::connector(blocker.join("db/store.db")),
        cfg,
        &Metrics::new(),
        health.clone(),
    );
    let writer = run_writer(&shared);
    for seq in 0..50 {
        handle.record(numbered(seq));
    }
    assert!(
        wait_until(LONG, || health.get(HEALTH_COMPONENT).unwrap().status == Status::Down),
        "{:?}",
        health.get(HEALTH_COMPONENT)
    );
    let down = health.get(HEALTH_COMPONENT).unwrap();
    assert!(down.reason.contains("held in memory"), "{down:?}");
    for seq in 50..100 {
        handle.record(numbered(seq));
    }
    // The disk comes back: the held batch and the queue go to the spill, then the database.
    std::fs::remove_file(&blocker).unwrap();
    assert!(
        wait_until(LONG, || shared.stats().written == 100 && handle.depth() == 0),
        "{:?}",
        shared.stats()
    );
    assert_all_once_in_order(
        &SqliteStore::open(blocker.join("db/store.db")).unwrap().audit().unwrap(),
        100,
    );
    assert!(wait_until(LONG, || health.get(HEALTH_COMPONENT).unwrap().status == Status::Ok));
    writer.stop();
}
