//! Startup before any trading: a spill the previous run left is replayed into the database
//! before recovery reads it; a spill another instance has overtaken is set aside instead; and
//! when recovery cannot complete (the store unreachable, a stored position that makes no sense)
//! the engine is not built, with an error that says why.

mod common;
mod engine_support;
mod persist_support;

use std::sync::Arc;
use std::time::Duration;

use common::{T0, exiting_position, position};
use engine_support::*;
use persist_support::*;
use scalper::config::Secrets;
use scalper::domain::{ManualClock, PositionId, Timestamp};
use scalper::engine::EngineEnv;
use scalper::engine::persist::{self, PaperRestart, StoreSetup};
use scalper::engine::seams::Seams;
use scalper::instance::OrderGate;
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::Supervisor;
use scalper::store::spill::SpillFiles;
use scalper::store::*;

/// The harness clock's day (2025-11-24, 10:00 IST); T0 is 10:30:15 the same day.
fn open_at(id: &str) -> PositionRecord {
    PositionRecord { opened_at: Timestamp(T0 - 3_600_000), ..position(id) }
}

fn event(id: i64, kind: EventKind) -> StoreEvent {
    StoreEvent { id: EventId(id), at: Timestamp(T0), kind }
}

#[test]
fn a_spill_left_by_the_previous_run_is_replayed_before_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let spill = SpillFiles::new(dir.path().join("store.spill"));
    // The previous run wrote one position, then spilled the next during an outage.
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[event(10, EventKind::PositionUpsert(open_at("P-written")))])
        .unwrap();
    spill.append(&[event(11, EventKind::PositionUpsert(open_at("P-spilled")))]).unwrap();

    let h = start("", sqlite_setup(&db, dir.path()));
    let core = h.shared.core.lock();
    for id in ["P-written", "P-spilled"] {
        assert!(core.position(&PositionId::new(id)).is_some(), "{id} recovered");
    }
    drop(core);
    assert!(!spill.pending(), "the spill was replayed");
    h.stop();
}

#[test]
fn a_spill_older_than_what_another_instance_wrote_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let spill = SpillFiles::new(dir.path().join("store.spill"));
    spill.append(&[event(11, EventKind::PositionUpsert(open_at("P-stale")))]).unwrap();
    // Another instance took over and wrote later events.
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[event(50, EventKind::PositionUpsert(open_at("P-current")))])
        .unwrap();

    let h = start("", sqlite_setup(&db, dir.path()));
    {
        let core = h.shared.core.lock();
        assert!(core.position(&PositionId::new("P-current")).is_some());
        assert!(
            core.position(&PositionId::new("P-stale")).is_none(),
            "not replayed over newer state"
        );
    }
    assert!(!spill.pending());
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("store.spill.stale-"));
    assert!(kept, "the overtaken spill is kept for an operator");
    h.stop();
    let audit = sqlite::SqliteStore::open(&db).unwrap().audit().unwrap();
    assert!(audit.iter().any(|a| a.record.action == "spill_set_aside"));
}

/// Builds an engine with the store `setup` outside any harness (the build is expected to fail).
fn build(setup: StoreSetup) -> anyhow::Result<scalper::engine::Engine> {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), "ws://127.0.0.1:9/", "");
    let secrets = Secrets::resolve(&config, |_| None).unwrap();
    let metrics = Metrics::new();
    let env = EngineEnv {
        config,
        secrets,
        metrics: metrics.clone(),
        health: HealthBoard::new(),
        workers: Supervisor::new(supervisor_config(), metrics).status_table(),
        clock: Arc::new(ManualClock::new(ist("10:00:00"))),
    };
    persist::build_with_setup(env, setup, Seams::paper(), &mut PaperRestart, OrderGate::open())
}

#[test]
fn an_unreachable_store_stops_the_startup_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = sqlite_setup(&dir.path().join("s.db"), dir.path());
    setup.connector = Arc::new(|| {
        Err(StoreError::Unavailable {
            backend: "postgres",
            doing: "connecting to 127.0.0.1:1/db".into(),
            detail: "connection refused".into(),
        })
    });
    setup.startup_wait = Duration::from_millis(300);
    let err = build(setup).err().expect("no engine without its state").to_string();
    assert!(
        err.starts_with("recovery:")
            && err.contains("not reachable")
            && err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn a_stored_position_that_cannot_be_restored_stops_the_startup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let broken = PositionRecord {
        exit_reason: None,
        opened_at: Timestamp(T0 - 3_600_000),
        ..exiting_position("P-broken")
    };
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[event(1, EventKind::PositionUpsert(broken))])
        .unwrap();
    let err = build(sqlite_setup(&db, dir.path())).err().expect("no engine").to_string();
    assert!(err.contains("P-broken") && err.contains("exit reason"), "{err}");
}
